"""The command line: `kernelscope solve` and `kernelscope tour`; bad input is one line on stderr and exit 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kernelscope.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_help_lists_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "solve" in out and "tour" in out


def test_solve_csv_line(tmp_path, capsys):
    (tmp_path / "A.csv").write_text("3,4\n")
    (tmp_path / "b.csv").write_text("12\n")
    png = tmp_path / "line.png"
    code, out, err = run(["solve", str(tmp_path / "A.csv"), str(tmp_path / "b.csv"), "--plot", str(png)], capsys)
    assert code == 0, err
    assert "kind: least_norm" in out and "rank: 1" in out and "[1.44 1.92]" in out
    assert png.stat().st_size > 5000


def test_solve_plot_draws_a_square_system_as_lines(tmp_path, capsys, monkeypatch):
    """A 2×2 system is two lines crossing at x (issue 17: it was drawn as bars)."""
    from kernelscope.plots import linsys as P

    drawn = []
    real = P.plot_lines
    monkeypatch.setattr(P, "plot_lines", lambda system, ax=None: drawn.append(real(system, ax)) or drawn[-1])
    (tmp_path / "A.csv").write_text("1,1\n1,-1\n")
    (tmp_path / "b.csv").write_text("2\n0\n")
    png = tmp_path / "two.png"
    code, out, err = run(["solve", str(tmp_path / "A.csv"), str(tmp_path / "b.csv"), "--plot", str(png)], capsys)
    assert code == 0, err
    assert "kind: unique" in out and png.stat().st_size > 5000
    (ax,) = drawn
    labelled = [line for line in ax.lines if not line.get_label().startswith("_")]
    assert len(labelled) == 2 and not ax.patches  # two lines (the axes aside), no bars
    np.testing.assert_allclose(ax.collections[0].get_offsets()[0], [1.0, 1.0])  # the crossing


def test_solve_npy_and_mtx(tmp_path, capsys):
    import scipy.io
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 3))
    b = rng.standard_normal(6)
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "b.npy", b)
    code, out, _ = run(["solve", str(tmp_path / "A.npy"), str(tmp_path / "b.npy"), "--save", str(tmp_path / "x.npy")],
                       capsys)
    assert code == 0 and "kind: least_squares" in out
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-12)
    scipy.io.mmwrite(tmp_path / "S.mtx", sp.csr_matrix(A))
    code, out, _ = run(["solve", str(tmp_path / "S.mtx"), str(tmp_path / "b.npy")], capsys)
    assert code == 0 and "method lsmr" in out


@pytest.mark.parametrize(
    "a_text, b_text, message",
    [
        (None, "1\n", "A: expected an existing file"),
        ("1,nan\n", "1\n", "A: expected finite values, got NaN"),
        ("1,2\n3,4\n5,6\n", "1\n", "b: expected 3 rows"),
        ("x,y\n", "1\n", "A: expected a readable numeric file"),
    ],
)
def test_solve_errors_are_one_line_exit_2(tmp_path, capsys, a_text, b_text, message):
    if a_text is not None:
        (tmp_path / "A.csv").write_text(a_text)
    (tmp_path / "b.csv").write_text(b_text)
    code, out, err = run(["solve", str(tmp_path / "A.csv"), str(tmp_path / "b.csv")], capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err


def test_plot_needs_two_or_three_unknowns(tmp_path, capsys):
    np.save(tmp_path / "A.npy", np.eye(4))
    np.save(tmp_path / "b.npy", np.ones(4))
    code, _, err = run(["solve", str(tmp_path / "A.npy"), str(tmp_path / "b.npy"), "--plot", str(tmp_path / "p.png")],
                       capsys)
    assert code == 2 and "2 or 3 unknowns" in err


def test_console_script_runs_as_a_process(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kernelscope", "tour", "--list"], capture_output=True, text=True)
    assert out.returncode == 0 and "linsys" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "kernelscope", "solve", str(tmp_path / "nope.npy"), "x.npy"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_library_validation_error_is_one_clean_line(tmp_path, capsys):
    """A ValidationError raised inside the library (not by the CLI) reaches the user as one line, exit 2."""
    from kernelscope.cli import main

    np.save(tmp_path / "A.npy", np.eye(2))
    np.save(tmp_path / "b.npy", np.ones(3))  # 3 values for 2 equations: linsys.solve refuses it
    with pytest.raises(SystemExit) as exc:
        main(["solve", str(tmp_path / "A.npy"), str(tmp_path / "b.npy")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("kernelscope: error: b") and "expected" in err and "Traceback" not in err


def _ctrl_c(*a, **k):
    raise KeyboardInterrupt


@pytest.mark.parametrize("target, argv, resumes_from", [
    ("kernelscope.tour.run_tour", ["tour", "--quick"], ""),
    ("kernelscope.experiments.lazy.lazy_width_sweep", ["lazy", "--widths", "4"], "steps"),
    ("kernelscope.experiments.pathkernel.path_kernel", ["pathkernel", "--width", "4", "--steps", "1"], None),
    ("kernelscope.experiments.spirals.train_spiral", ["spiral", "--no-progress"], None),
])
def test_ctrl_c_exits_130_and_says_how_to_resume_where_a_command_checkpoints(tmp_path, capsys, monkeypatch, target,
                                                                            argv, resumes_from):
    """Ctrl-C inside a long command (simulated where its work happens): exit 130, no traceback; commands that
    save finished pieces say where and that the same command resumes, the others just say 'interrupted'."""
    monkeypatch.setattr(target, _ctrl_c)
    argv = [*argv, "--out", str(tmp_path / "o")]
    code, _, err = run(argv, capsys)
    assert code == 130 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if resumes_from is None:
        assert lines == ["kernelscope: interrupted"]
    else:
        saved = tmp_path / "o" / resumes_from if resumes_from else tmp_path / "o"
        assert lines[0] == ("kernelscope: interrupted: run the same command again to resume (finished pieces are "
                            f"saved in {saved}):")
        assert lines[1].strip() == "kernelscope " + " ".join(argv)


def test_resumable_marks_only_the_interrupts_inside_it(tmp_path):
    from kernelscope.cli import Interrupted, resumable

    with pytest.raises(Interrupted) as exc, resumable(tmp_path):
        raise KeyboardInterrupt
    assert exc.value.saved_in == tmp_path and not isinstance(exc.value, Exception)
    with pytest.raises(Interrupted) as inner, resumable(tmp_path / "outer"), resumable(tmp_path / "inner"):
        raise KeyboardInterrupt
    assert inner.value.saved_in == tmp_path / "inner"  # the innermost folder is the one that was being written
    with pytest.raises(ValueError), resumable(tmp_path):  # other errors pass through unchanged
        raise ValueError("x")


# ------------------------------------------------------------------------------------------------------------
# Issue 17: regress options, --version, story order
# ------------------------------------------------------------------------------------------------------------
def _regress_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    train = tmp_path / "train.csv"
    np.savetxt(train, np.c_[X, np.sin(X[:, 0])], delimiter=",")
    test = tmp_path / "test.csv"
    np.savetxt(test, X[:5], delimiter=",")
    return ["regress", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "p.csv")]


def test_regress_prints_resolved_parameters_and_refuses_foreign_ones(tmp_path, capsys):
    base = _regress_files(tmp_path)
    code, out, _ = run(base + ["--kernel", "rbf"], capsys)
    assert code == 0 and "gamma=0.5" in out and "None" not in out  # γ = 1/d with d = 2
    code, out, err = run(base + ["--kernel", "laplace", "--lengthscale", "0.5"], capsys)
    assert code == 2 and "--lengthscale" in err and "laplace takes: --gamma" in err
    assert "unexpected keyword" not in err


@pytest.mark.parametrize("name", ["ntk", "nngp"])
def test_regress_with_a_network_kernel(tmp_path, capsys, name):
    code, out, err = run(_regress_files(tmp_path) + ["--kernel", name, "--depth", "2", "--w-std", "1.5",
                                                     "--b-std", "0.1", "--activation", "erf"], capsys)
    assert code == 0, err
    assert f"nngp={name == 'nngp'}" in out and "depth=2" in out and "w_std=1.5" in out


def test_version_and_story_order(capsys):
    import kernelscope

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and kernelscope.__version__ in out
    code, out, _ = run(["--help"], capsys)
    pos = [out.index(f"\n  {c}  ") for c in ("solve", "regress", "lazy", "tour")]
    assert pos == sorted(pos)


# ------------------------------------------------------------------------------------------------------------
# Issue 24: one convention for names, lists, depth, notes and progress
# ------------------------------------------------------------------------------------------------------------
def test_spirals_is_the_command_and_spiral_still_works(capsys, monkeypatch, tmp_path):
    """The command is named like its chapter; the older name is accepted (hidden from the help)."""
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "\n  spirals  " in out and "\n  spiral  " not in out
    for name in ("spirals", "spiral"):
        code, out, _ = run([name, "--help"], capsys)
        assert code == 0 and "--sweep" in out


def test_tour_only_takes_commas_repeats_and_command_names(monkeypatch, tmp_path, capsys):
    import kernelscope.tour as T

    seen = {}

    def fake_run_tour(out, **kwargs):
        seen.update(kwargs)
        return T.TourResult(out=tmp_path, done=[], skipped=[], failed={})

    monkeypatch.setattr(T, "run_tour", fake_run_tour)
    code, _, err = run(["tour", "--out", str(tmp_path), "--only", "lazy,pathkernel", "--only", "spiral"], capsys)
    assert code == 0, err
    assert seen["only"] == ["lazy", "pathkernel", "spirals"]


def test_list_options_accept_commas_and_repeats():
    from kernelscope._arrays import ValidationError
    from kernelscope.cli._options import int_list, split_list

    assert int_list(["16,64", "256"], "--widths") == int_list(["16", "64", "256"], "--widths") == [16, 64, 256]
    assert int_list("8, 32", "--sweep") == [8, 32] and split_list(None, "--only") == []
    for bad in (["8,x"], ["0"], [","]):
        with pytest.raises(ValidationError, match="^--widths: expected integers"):
            int_list(bad, "--widths")


def test_kernel_has_its_own_option_and_regress_the_same_defaults(tmp_path, capsys):
    """`kernel --kernel` names a kernel (the older `--activation rbf` still works, with a note); `regress --kernel
    nngp` uses the network of `kernel`, with the same defaults (3 hidden layers, σ_w 1.5, σ_b 0.05)."""
    from kernelscope import kernels, nets
    from kernelscope.regression import KernelRegressor, MLPKernel

    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 3))
    np.save(tmp_path / "x.npy", X)
    code, _, err = run(["kernel", "--x", str(tmp_path / "x.npy"), "--kernel", "rbf", "--gamma", "0.3",
                        "--out", str(tmp_path / "r.npy")], capsys)
    assert code == 0 and not err
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), kernels.rbf(X, gamma=0.3), rtol=1e-13)
    code, _, err = run(["kernel", "--x", str(tmp_path / "x.npy"), "-a", "rbf", "--gamma", "0.3",
                        "--out", str(tmp_path / "r2.npy")], capsys)
    assert code == 0 and err.startswith("kernelscope: note: --activation rbf is read as --kernel rbf")
    np.testing.assert_array_equal(np.load(tmp_path / "r2.npy"), np.load(tmp_path / "r.npy"))
    code, out, _ = run(["kernel", "--x", str(tmp_path / "x.npy"), "--kernel", "nngp",
                        "--out", str(tmp_path / "k.npy")], capsys)
    assert code == 0 and "3 hidden layers" in out
    layers = []
    for _ in range(3):
        layers += [nets.Dense(1, 1.5, 0.05), nets.ReLU()]
    want = nets.serial(*layers, nets.Dense(1, 1.5, 0.05)).kernel(X).nngp
    np.testing.assert_allclose(np.load(tmp_path / "k.npy"), want, rtol=1e-12)

    base = _regress_files(tmp_path)
    code, out, err = run(base + ["--kernel", "nngp", "--activation", "erf"], capsys)
    assert code == 0, err
    assert "depth=3" in out and "w_std=1.5" in out and "b_std=0.05" in out
    train = np.loadtxt(tmp_path / "train.csv", delimiter=",")
    ref = KernelRegressor(MLPKernel(3, 1.5, 0.05, "erf", nngp=True), ridge=1e-3).fit(train[:, :2], train[:, 2])
    pred = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(pred, ref.predict(np.loadtxt(tmp_path / "test.csv", delimiter=",")), rtol=1e-10)


def test_warnings_are_note_lines_and_adam_has_no_training_time(tmp_path, capsys):
    """A diverging run's warning is one `note:` line (no file name, no source line); with Adam, lr × steps is not
    reported as a training time and the distances to T·Θ are not printed."""
    code, out, err = run(["pathkernel", "--out", str(tmp_path / "a"), "--width", "16", "--steps", "40", "--lr", "5"],
                         capsys)
    assert code == 1 and "DIVERGED" in err
    assert "note: " in err and "Warning" not in err and ".py:" not in err
    code, out, err = run(["pathkernel", "--out", str(tmp_path / "b"), "--width", "16", "--steps", "5",
                          "--nodes", "3", "--optimizer", "adam", "--lr", "0.01"], capsys)
    assert code == 0, err
    assert "adam, lr × steps = 0.05" in out and "(T = " not in out
    assert "vs T·Θ" not in out and "up to scale" in out


def test_lazy_names_its_slopes_like_its_table_and_says_when_it_resumed(tmp_path, capsys):
    argv = ["lazy", "--out", str(tmp_path), "--widths", "8", "--widths", "32", "--steps", "5"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    header = out.splitlines()[0].split()
    slopes = next(ln for ln in out.splitlines() if ln.startswith("log-log slopes"))
    assert header[:3] == ["m", "Δw", "rel"] and all(name in slopes for name in ("Δw rel", "ΔΘ rel", "net−lin"))
    assert "dist_net" not in out and "resumed" not in err
    code, out, err = run(argv, capsys)
    assert code == 0 and "note: resumed: 3 saved piece(s) read from" in err
