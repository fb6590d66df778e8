"""``kernelscope kernel``: the kernel matrix written to .npy equals the library's; bad input is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kernelscope import kernels, nets


def _cli(*args):
    from kernelscope.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code
    return 0


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(12, 4)), rng.normal(size=(5, 4))
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "y.csv", Y, delimiter=",")
    return tmp_path, X, Y


def test_ntk_matches_library(data):
    tmp, X, Y = data
    out = tmp / "K.npy"
    assert _cli("kernel", "--x", str(tmp / "x.npy"), "--x2", str(tmp / "y.csv"), "--depth", "3", "--activation",
                "relu", "--w-std", "1.5", "--b-std", "0.05", "--which", "ntk", "--out", str(out)) == 0
    layers = []
    for _ in range(3):
        layers += [nets.Dense(512, 1.5, 0.05), nets.ReLU()]
    want = nets.serial(*layers, nets.Dense(1, 1.5, 0.05)).kernel(X, Y).ntk
    np.testing.assert_allclose(np.load(out), want, rtol=1e-13)


def test_nngp_diag_erf_and_classic_kernel(data):
    tmp, X, _ = data
    assert _cli("kernel", "--x", str(tmp / "x.npy"), "--activation", "erf", "--depth", "1", "--which", "nngp",
                "--diag", "--out", str(tmp / "d.npy")) == 0
    net = nets.serial(nets.Dense(512, 1.5, 0.05), nets.Erf(), nets.Dense(1, 1.5, 0.05))
    np.testing.assert_allclose(np.load(tmp / "d.npy"), net.kernel(X, diag=True).nngp, rtol=1e-13)
    assert _cli("kernel", "--x", str(tmp / "x.npy"), "--activation", "rbf", "--gamma", "0.3",
                "--out", str(tmp / "r.npy")) == 0
    np.testing.assert_allclose(np.load(tmp / "r.npy"), kernels.rbf(X, gamma=0.3), rtol=1e-13)


@pytest.mark.parametrize("args,msg", [
    (["--activation", "softplus"], "--activation"),
    (["--which", "both"], "--which"),
    (["--w-std", "0"], "w_std"),
    (["--x2", "MISSING.npy"], "expected an existing file"),
    (["--diag", "--x2", "y.csv"], "--diag"),
])
def test_bad_input_one_line_exit_2(data, args, msg):
    tmp, _, _ = data
    args = [a if not a.endswith((".npy", ".csv")) else str(tmp / a) for a in args]
    proc = subprocess.run([sys.executable, "-m", "kernelscope", "kernel", "--x", str(tmp / "x.npy"),
                           "--out", str(tmp / "K.npy"), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], proc.stderr
    assert not (tmp / "K.npy").exists()


def test_shape_mismatch(data, tmp_path):
    tmp, _, _ = data
    np.save(tmp / "bad.npy", np.zeros((3, 7)))
    proc = subprocess.run([sys.executable, "-m", "kernelscope", "kernel", "--x", str(tmp / "x.npy"), "--x2",
                           str(tmp / "bad.npy"), "--out", str(tmp / "K.npy")], capture_output=True, text=True)
    assert proc.returncode == 2 and "columns" in proc.stderr
