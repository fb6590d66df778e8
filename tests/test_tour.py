"""The tour runner: the chapter list, resume after interruption, --force, saved work keyed by its configuration,
file modes, progress off a terminal, the report page."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from kernelscope import tour as T
from kernelscope._io import from_json, to_json
from kernelscope.report import format_cell, render_report
from kernelscope.story import Progress, json_checkpoint


def _fake_chapter(key, calls, fail=False, pieces=3, interrupt_at=None):
    def run(ctx):
        import matplotlib.pyplot as plt

        done = [100 if ctx.quick else 0]
        for i in ctx.track(range(pieces), "pieces"):
            if interrupt_at is not None and i == interrupt_at:
                raise KeyboardInterrupt
            done.append(ctx.checkpoint(f"piece{i}", lambda i=i: (calls.append((key, i)), {"i": i})[1])["i"])
        if fail:
            raise RuntimeError("boom")
        fig, ax = plt.subplots()
        ax.plot(done)
        figure = ctx.savefig(fig, "curve.png", "a curve")
        return T.ChapterResult(numbers={"sum": sum(done)}, figures=[figure],
                               tables=[T.Table("t", ["a", "b"], [[1, 2.5]])], findings=["it works"])

    return T.Chapter(key=key, order=1, title=f"Chapter {key}", intro="<p>intro</p>", run=run)


@pytest.fixture
def fake_chapters(monkeypatch):
    calls: list = []
    registry = {"a": _fake_chapter("a", calls), "b": _fake_chapter("b", calls)}
    monkeypatch.setattr(T, "chapters", lambda: list(registry.values()))
    return registry, calls


def test_the_story_chapters_in_order():
    chs = T.chapters()
    keys = [c.key for c in chs]
    assert keys[0] == "primer"
    assert [c.order for c in chs] == sorted(c.order for c in chs)
    assert len(set(keys)) == len(keys)


def test_run_writes_report_and_resumes(tmp_path, fake_chapters):
    registry, calls = fake_chapters
    res = T.run_tour(tmp_path, progress=False)
    assert res.ok and res.done == ["a", "b"]
    assert (tmp_path / "index.html").exists() and (tmp_path / "figures" / "full-seed0" / "a_curve.png").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["chapters"]["a"]["numbers"] == {"sum": 3} and data["chapters"]["a"]["quick"] is False
    n_calls = len(calls)
    res2 = T.run_tour(tmp_path, progress=False)  # nothing is redone
    assert res2.skipped == ["a", "b"] and res2.done == [] and len(calls) == n_calls
    res3 = T.run_tour(tmp_path, progress=False, force=True, only=["b"])
    assert res3.done == ["b"] and len(calls) == n_calls + 3


def test_interrupted_chapter_resumes_from_checkpoints(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(T, "chapters", lambda: [_fake_chapter("a", calls, interrupt_at=2)])
    with pytest.raises(KeyboardInterrupt):
        T.run_tour(tmp_path, progress=False)
    assert calls == [("a", 0), ("a", 1)]
    assert not (tmp_path / "steps" / "a-full-seed0.json").exists()
    monkeypatch.setattr(T, "chapters", lambda: [_fake_chapter("a", calls)])
    res = T.run_tour(tmp_path, progress=False)
    assert res.done == ["a"] and calls == [("a", 0), ("a", 1), ("a", 2)]  # pieces 0, 1 were not redone


def test_a_failing_chapter_does_not_lose_the_others(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(T, "chapters", lambda: [_fake_chapter("a", calls, fail=True), _fake_chapter("b", calls)])
    res = T.run_tour(tmp_path, progress=False)
    assert not res.ok and "boom" in res.failed["a"] and res.done == ["b"]
    html = (tmp_path / "index.html").read_text()
    assert "This chapter failed" in html and "Chapter b" in html
    assert (tmp_path / "steps" / "a-full-seed0.error.txt").read_text().count("RuntimeError") >= 1


def _page(out):
    return json.loads((out / "results.json").read_text()), (out / "index.html").read_text()


def test_quick_and_full_runs_into_one_folder_keep_their_own_numbers(tmp_path, fake_chapters):
    _, calls = fake_chapters
    T.run_tour(tmp_path, quick=False, progress=False)  # "make demo"
    data, html = _page(tmp_path)
    assert data["quick"] is False and {c["numbers"]["sum"] for c in data["chapters"].values()} == {3}
    # a quick run of one chapter after the full run: that chapter quick, the other still there, labelled full
    res = T.run_tour(tmp_path, quick=True, only=["b"], progress=False)
    assert res.done == ["b"] and len(calls) == 9 and res.other_config == {"a": "full run, seed 0"}
    data, html = _page(tmp_path)
    assert data["quick"] is True and "quick run" in html
    assert data["chapters"]["a"]["numbers"] == {"sum": 3} and data["chapters"]["a"]["quick"] is False
    assert data["chapters"]["b"]["numbers"] == {"sum": 103} and data["chapters"]["b"]["quick"] is True
    assert "not run yet" not in html
    assert re.search(r"id='a'>.*earlier <strong>full run, seed 0</strong>", html, re.S)
    assert "earlier <strong>" not in html.split("id='b'>")[1]
    # both runs' figures coexist
    assert (tmp_path / "figures" / "quick-seed0" / "b_curve.png").exists()
    assert (tmp_path / "figures" / "full-seed0" / "b_curve.png").exists()
    # the whole quick run: b is resumed, a computed quick (the full checkpoints are not reused)
    res = T.run_tour(tmp_path, quick=True, progress=False)
    assert res.done == ["a"] and res.skipped == ["b"] and len(calls) == 12 and res.other_config == {}
    data, html = _page(tmp_path)
    assert {c["numbers"]["sum"] for c in data["chapters"].values()} == {103} and "earlier" not in html
    # and the full run is still whole: nothing redone, full numbers and full figures only
    res = T.run_tour(tmp_path, quick=False, progress=False)
    assert res.skipped == ["a", "b"] and len(calls) == 12 and res.other_config == {}
    data, html = _page(tmp_path)
    assert {c["numbers"]["sum"] for c in data["chapters"].values()} == {3} and "earlier" not in html
    assert "quick run" not in html
    assert all(f.startswith("figures/full-seed0/") for c in data["chapters"].values() for f in c["figures"])


def test_files_respect_the_umask(tmp_path, fake_chapters):
    old = os.umask(0o027)
    try:
        T.run_tour(tmp_path, progress=False)
    finally:
        os.umask(old)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 7  # report, results, two figures, two steps, checkpoints
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p
    old = os.umask(0o002)
    try:
        T.run_tour(tmp_path, progress=False, force=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "index.html").stat().st_mode) == 0o664


def test_progress_off_a_terminal_prints_plain_lines_while_work_runs():
    buf = io.StringIO()  # not a tty
    with Progress(True, file=buf, interval=0.2) as bar:
        for _ in bar.track(range(2), "slow pieces"):
            time.sleep(0.7)  # longer than the interval: the heartbeat must speak in between
    lines = buf.getvalue().splitlines()
    assert lines[0] == "slow pieces: 0/2"  # the count the heartbeat lines continue
    beats = [ln for ln in lines if ln.startswith("  ... slow pieces: ")]
    assert len(beats) >= 3 and any("1/2" in ln for ln in beats)
    assert "\x1b" not in buf.getvalue()  # no terminal control codes in a log file


def test_tour_off_a_terminal_reports_each_chapter(tmp_path, fake_chapters, capsys):
    T.run_tour(tmp_path, progress=True)
    out = capsys.readouterr().out
    assert "> [1/2] Chapter a ..." in out and "v [2/2] Chapter b" in out and "a: pieces: 0/3" in out


def test_unknown_chapter_is_a_clear_error(tmp_path, fake_chapters):
    with pytest.raises(ValueError, match="^only: expected chapter keys among a, b, got zzz"):
        T.run_tour(tmp_path, only=["zzz"], progress=False)


def test_report_escapes_and_formats():
    assert format_cell(0.000012345) == "1.234e-05" and format_cell(3) == "3" and format_cell(True) == "yes"
    ch = T.Chapter("x", 1, "X <title>", "<p>i</p>", run=lambda c: None)
    res = T.ChapterResult(tables=[T.Table("<t>", ["a"], [["<b>"]])])
    html = render_report([ch], {"x": res}, {})
    assert "X &lt;title&gt;" in html and "&lt;b&gt;" in html and "<b>" not in html
    assert "<div class='scroll'><table>" in html and "overflow-x:auto" in html
    assert format_cell(-0.0) == "0" and format_cell(-1e-12) == "-1.000e-12" and format_cell(-0.00001) != "-0"
    assert format_cell(-4e-5) == "-4.000e-05" and format_cell(-2.5) == "-2.5"


def test_linsys_chapter_end_to_end(tmp_path):
    res = T.run_tour(tmp_path, only=["linsys"], quick=True, progress=False)
    assert res.ok
    nums = json.loads((tmp_path / "results.json").read_text())["chapters"]["linsys"]["numbers"]
    assert nums["line"]["distance"] == pytest.approx(12 / 5, rel=1e-14)
    assert nums["line"]["x"] == pytest.approx([36 / 25, 48 / 25], rel=1e-14)
    assert nums["rank4"]["dims"] == {"row": 4, "null": 4, "col": 4, "left_null": 4}
    assert nums["rank4"]["kind_in"] == "least_norm" and nums["rank4"]["kind_out"] == "least_squares"
    assert nums["power_iteration"]["eigenvalue"] == pytest.approx(10.0, rel=1e-10)
    for f in json.loads((tmp_path / "results.json").read_text())["chapters"]["linsys"]["figures"]:
        assert (tmp_path / f).stat().st_size > 5000


def test_fmt_never_shows_a_signed_zero():
    """story.fmt: the one formatting of numbers on the page (findings and table cells)."""
    from kernelscope.story import fmt

    assert fmt(-0.0004, "+.3f") == "0.000" and fmt(-0.0004, ".3f") == "0.000" and fmt(0.0, "+.2f") == "0.00"
    assert fmt(-0.0, ".2e") == "0.00e+00" and fmt(-0.0, ".3g") == "0" and fmt(-1e-9, ".1%") == "0.0%"
    assert fmt(0.25, "+.2f") == "+0.25" and fmt(-0.25, "+.2f") == "-0.25" and fmt(-0.006, ".2f") == "-0.01"
    assert fmt(-1e-12, ".1e") == "-1.0e-12" and fmt(-3.0, ".0f") == "-3" and fmt(-0.4, ".0f") == "0"
    assert fmt(float("-inf"), "+.2f") == "-inf" and fmt(float("nan"), ".2f") == "nan"
    assert format_cell(-0.00001) == "-1.000e-05" and format_cell(-0.0) == "0"


def test_chapters_side_by_side_give_the_same_numbers(tmp_path, capsys):
    """jobs=2: the registered chapters run in two spawned processes (progress relayed to this one) with the same
    numbers as one after the other here."""
    one, two = tmp_path / "one", tmp_path / "two"
    a = T.run_tour(one, only=["linsys", "kernels"], quick=True, progress=False, jobs=1)
    b = T.run_tour(two, only=["linsys", "kernels"], quick=True, progress=True, jobs=2)
    assert a.ok and b.ok and sorted(a.done) == sorted(b.done) == ["kernels", "linsys"]
    out = capsys.readouterr().out
    assert "in 2 processes" in out and "> [1/2] 1. Linear systems" in out and "kernels: random features" in out
    na = json.loads((one / "results.json").read_text())["chapters"]
    nb = json.loads((two / "results.json").read_text())["chapters"]
    for key in ("linsys", "kernels"):
        assert set(na[key]["numbers"]) == set(nb[key]["numbers"])
        for name, v in na[key]["numbers"].items():
            if name != "seconds" and isinstance(v, float):
                assert nb[key]["numbers"][name] == pytest.approx(v, rel=1e-9, abs=1e-12), (key, name)
    assert (two / "steps" / "linsys-quick-seed0.json").exists()
    assert T.run_tour(two, quick=True, only=["linsys"], progress=False, jobs=2).skipped == ["linsys"]


def test_jobs_with_chapters_not_in_the_registry_run_here(tmp_path, fake_chapters):
    res = T.run_tour(tmp_path, progress=False, jobs=2)  # the fixture's chapters cannot be found by a worker
    assert res.ok and res.done == ["a", "b"]
    with pytest.raises(ValueError, match="^jobs: expected a whole number"):
        T.run_tour(tmp_path, progress=False, jobs=1.5)
    with pytest.raises(ValueError, match="jobs"):
        T.run_tour(tmp_path, progress=False, jobs=-1)


@pytest.mark.slow
def test_ctrl_c_stops_the_worker_processes_and_says_how_to_resume(tmp_path):
    """kernelscope tour --jobs 2, Ctrl-C (SIGINT to the process group, as a terminal sends it): exit status 130 at
    once, the resume command printed, no worker process left running."""
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "kernelscope", "tour", "--quick", "--only", "lazy", "--only", "spirals",
           "--jobs", "2", "--out", str(tmp_path)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while len(workers) < 2 and time.monotonic() < deadline:  # wait until both workers run a chapter
        time.sleep(0.5)
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(p.pid)], capture_output=True, text=True).stdout
        workers = {int(x) for x in out.split()}
    assert len(workers) >= 2, "the workers did not start"
    time.sleep(4)
    os.killpg(p.pid, signal.SIGINT)
    try:
        output, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise
    assert p.returncode == 130
    assert "interrupted: run the same command again to resume" in output
    time.sleep(0.5)
    for pid in workers:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        with open(f"/proc/{pid}/stat") as f:  # gone, or at most a zombie waiting to be reaped
            assert f.read().split()[2] == "Z", f"worker {pid} still running"


@dataclass
class _Piece:
    width: int
    values: np.ndarray
    note: str | None = None


@dataclass
class _Result:
    pieces: list[_Piece]
    by_width: dict[int, _Piece]
    lims: tuple[float, float]
    kernel: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)
    anything: object = None


def _result() -> _Result:
    pieces = [_Piece(8, np.array([[1.0, np.nan], [np.inf, -0.1]], dtype=np.float32)),
              _Piece(16, np.arange(6, dtype=np.int64).reshape(2, 3), "wide"),
              _Piece(32, np.zeros((0, 2))), _Piece(64, np.array([True, False]))]
    return _Result(pieces, {p.width: p for p in pieces}, (-1.5, float("inf")),
                   torch.tensor([[1.0, 2.0]], dtype=torch.float64), {"slope": float("nan"), "lr": 0.1 + 0.2},
                   anything=[_Piece(1, np.ones(1)), (1, "a")])


def _same(a, b) -> None:
    """Equal values of equal types all the way down (NaN equal to NaN, dtypes and shapes included)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b) and all(_same(x, y) is None for x, y in zip(a, b))
    elif isinstance(a, dict):
        assert list(a) == list(b) and all(_same(a[k], b[k]) is None for k in a)
    elif hasattr(a, "__dataclass_fields__"):
        _same(vars(a), vars(b))
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def test_checkpoints_give_back_the_same_dataclass(tmp_path):
    """Typed checkpoints: a dataclass is saved as JSON and comes back as the same dataclass, with nested
    dataclasses, NumPy arrays (dtype and shape), torch tensors, tuples, int dict keys, NaN and inf; a fresh and a
    resumed run get the same value."""
    value = _result()
    _same(from_json(json.loads(json.dumps(to_json(value)))), value)
    calls = []

    def compute():
        calls.append(1)
        return _result()

    fresh = json_checkpoint(tmp_path, "p_")("result", compute)
    resumed = json_checkpoint(tmp_path, "p_")("result", compute)
    assert calls == [1] and (tmp_path / "p_result.json").exists()
    _same(fresh, value)
    _same(resumed, fresh)


def test_checkpoints_that_do_not_read_back_are_computed_again(tmp_path):
    """A file cut short, of an older layout (plain JSON), or naming a class that is gone is computed again."""
    checkpoint = json_checkpoint(tmp_path)
    (tmp_path / "cut.json").write_text('{"format": "kernelscope checkpoint 1", "value": {"__data')
    (tmp_path / "old.json").write_text(json.dumps({"width": 8}))
    gone = {"format": "kernelscope checkpoint 1", "value": {"__dataclass__": "test_tour:_Gone", "width": 8}}
    (tmp_path / "gone.json").write_text(json.dumps(gone))
    for name in ("cut", "old", "gone"):
        assert checkpoint(name, lambda: _Piece(8, np.ones(2))).width == 8
        assert isinstance(checkpoint(name, lambda: None), _Piece)  # saved anew, read back now
    with pytest.raises(TypeError, match="torch.nn.modules.linear.Linear has no JSON form"):
        to_json(torch.nn.Linear(1, 1))


# ------------------------------------------------------------------------------------------------------------
# Signals, orphans, one run per folder, leftovers (issue 26)
# ------------------------------------------------------------------------------------------------------------
def _start_parallel_tour(out, log):
    """``kernelscope tour --jobs 2`` into ``out`` with two chapters, its output into the file ``log``; returns the
    process and its children (the workers and the resource tracker) once both workers run a chapter."""
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "kernelscope", "tour", "--quick", "--only", "lazy", "--only", "spirals",
           "--jobs", "2", "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and open(log).read().count("\n> ") + open(log).read().startswith("> ") < 2:
        time.sleep(0.5)  # "> [i/2] title ..." once a worker starts its chapter
    procs = _children(p.pid)
    assert len(procs - _resource_trackers(procs)) >= 2, "the workers did not start:\n" + open(log).read()
    time.sleep(3)  # both inside a chapter
    return p, procs


def _children(pid: int) -> set[int]:
    import subprocess

    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def _resource_trackers(pids: set[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"resource_tracker" in f.read():
                    found.add(pid)
        except OSError:
            pass
    return found


def _running(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:  # gone, or at most a zombie waiting to be reaped
                if f.read().split()[2] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def _temporaries(folder) -> list:
    from kernelscope._io import _TEMPORARY

    return [p for p in folder.rglob(".*") if _TEMPORARY.match(p.name)]


def test_sigterm_stops_the_tour_as_ctrl_c_does(tmp_path):
    """SIGTERM to the tour's process alone (what `timeout`, `docker stop` or a cancelled CI job sends): exit status
    143 with the resume command, the workers stopped (they went on writing chapters for minutes), no temporary
    file left, the report written."""
    import signal

    out, log = tmp_path / "out", tmp_path / "log.txt"
    p, procs = _start_parallel_tour(out, log)
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        raise
    output = log.read_text()
    assert p.returncode == 143, output
    assert "stopped by signal 15: run the same command again to resume" in output
    deadline = time.monotonic() + 20
    while _running(procs) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _running(procs), "processes of the tour still running"
    assert _temporaries(out) == []
    assert (out / "index.html").exists() and (out / "results.json").exists()


def test_workers_exit_when_the_tour_is_killed(tmp_path):
    """SIGKILL to the tour's process (no chance to stop anything): the workers notice they were re-parented and
    exit, removing their temporary files; the resource tracker follows them."""
    import signal

    out, log = tmp_path / "out", tmp_path / "log.txt"
    p, procs = _start_parallel_tour(out, log)
    p.kill()
    p.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _running(procs) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _running(procs)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "orphaned processes still running"
    assert _temporaries(out) == []


def test_one_tour_per_folder(tmp_path, fake_chapters):
    """A second tour into a folder in use is refused at once, naming the first one's pid; the lock goes with the
    run (the operating system releases it however the run ends)."""
    from kernelscope._io import FolderInUseError, folder_lock

    with folder_lock(tmp_path, "kernelscope tour"):
        with pytest.raises(FolderInUseError, match=rf"in use by another kernelscope tour run \(pid {os.getpid()}"):
            T.run_tour(tmp_path, progress=False)
        assert not (tmp_path / "results.json").exists()
    assert T.run_tour(tmp_path, progress=False).done == ["a", "b"]
    assert T.run_tour(tmp_path, progress=False).skipped == ["a", "b"]


def test_two_tours_at_once_on_the_command_line(tmp_path, capsys):
    """The second run says so in one line (exit 2) while the first holds the folder."""
    import subprocess
    import sys

    from kernelscope.cli import main

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from kernelscope._io import folder_lock\n"
                               f"with folder_lock({str(tmp_path)!r}, 'kernelscope tour'):\n"
                               "    print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit) as exc:
            main(["tour", "--quick", "--only", "linsys", "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"pid {holder.pid}" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()


def test_temporaries_of_a_killed_run_are_removed(tmp_path, fake_chapters):
    left = [tmp_path / "figures" / "full-seed0" / ".a_curve.png.k3j_x9q2.tmp.png",
            tmp_path / ".results.json.abcdefgh.tmp.json", tmp_path / "steps" / ".a-full-seed0.json.12345678.tmp.json"]
    for f in left:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half a file")
    (tmp_path / "figures" / "notes.tmp.txt").write_text("a user's file")  # not one of ours
    T.run_tour(tmp_path, progress=False)
    assert not any(f.exists() for f in left)
    assert (tmp_path / "figures" / "notes.tmp.txt").exists()


def test_step_files_that_are_not_steps_are_computed_again(tmp_path, fake_chapters):
    """A step file that parses but is not a step (a list, a result of the wrong shape) is computed again."""
    T.run_tour(tmp_path, progress=False)
    (tmp_path / "steps" / "a-full-seed0.json").write_text("[1, 2]")
    (tmp_path / "steps" / "b-full-seed0.json").write_text('{"status": "done", "result": {"figures": [3]}}')
    res = T.run_tour(tmp_path, progress=False)
    assert res.done == ["a", "b"] and res.ok


def test_sigterm_handler_is_restored(tmp_path, fake_chapters):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    T.run_tour(tmp_path, progress=False)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_worker_leaves_without_teardown_after_the_handlers_registered_later(tmp_path):
    """A parallel tour's worker registers tour._exit_now at its start: the exit handlers that libraries register
    later still run, buffered output is flushed, and the exit status is 0."""
    import subprocess
    import sys
    import textwrap

    marker = tmp_path / "later-handler-ran"
    code = textwrap.dedent(f"""
        import atexit, sys
        from kernelscope import tour
        atexit.register(tour._exit_now)
        atexit.register(lambda: open({str(marker)!r}, "w").close())  # a library's handler, registered later
        sys.stdout.write("buffered, no newline")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert marker.exists()
