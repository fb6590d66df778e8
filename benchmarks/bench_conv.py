"""Convolutional NNGP + NTK against neural-tangents, and the CNN-GlobalAvgPool kernel of all of MNIST-1D.

    .venv/bin/python benchmarks/bench_conv.py [--n 128] [--repeats 2] [--rounds 2] [--busy] [--device cuda]
    .venv/bin/python benchmarks/bench_conv.py --full [--precision float64 float32]

The MNIST-1D network (Greydanus & Kobak 2024; signals of length 40, one channel, inputs (N, 1, 40)): three
circular Conv(64, 5) + ReLU layers (w_std √2, b_std 0.1), GlobalAvgPool, Dense(10). The 8×8-digits networks: two
3×3 'same' Conv(256) + ReLU layers (w_std 1.4, b_std 0.1), then GlobalAvgPool or Flatten, Dense(1).

Default: each network on a subset (``--n`` MNIST-1D signals; 128 and 256 digits), kernelscope (float64, and
``precision='float32'``) and neural-tangents 0.6.5 (``jax.jit(kernel_fn)``, float64, CPU, in its own environment,
``benchmarks/peer.py``) measured in the same run, the two sides alternating (``--rounds``; each side the median of
``--repeats`` calls after a warm-up); the largest relative difference between the two is printed with each.
``--busy``: with two busy-loop processes on the machine. Where a CUDA device is present our side also runs there.

``--full``: the kernels a researcher needs for MNIST-1D — train × train (4000²) and test × train (1000 × 4000) —
timed once per precision, with the process's CPU time (all threads: on a machine other work keeps busy, CPU s / 2
is what the wall time would be on two free cores), peak memory (RSS), and for each the test accuracy of kernel
regression on one-hot targets (ridge 1e-4 × the mean diagonal); with both precisions, float32's largest relative
difference to float64.
MNIST-1D comes from the ``mnist1d`` package (``pip install mnist1d==0.0.2.post1``: it generates the data set, no
download).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import PeakCUDA, PeakRSS, busy, peer_python, run_peer, timed  # noqa: E402

from kernelscope import data, nets  # noqa: E402

W1, B1 = 2**0.5, 0.1  # MNIST-1D network
W2, B2 = 1.4, 0.1  # digits networks


def mnist1d_network():
    layers = [l for _ in range(3) for l in (nets.Conv(64, 5, padding="circular", w_std=W1, b_std=B1), nets.ReLU())]
    return nets.serial(*layers, nets.GlobalAvgPool(), nets.Dense(10, 1.0, 0.0))


def digits_network(readout: str):
    head = nets.GlobalAvgPool() if readout == "gap" else nets.Flatten()
    return nets.serial(nets.Conv(256, 3, padding="same", w_std=W2, b_std=B2), nets.ReLU(),
                       nets.Conv(256, 3, padding="same", w_std=W2, b_std=B2), nets.ReLU(), head,
                       nets.Dense(1, W2, B2))


PEER_MNIST1D = f'''
from neural_tangents import stax
layers = []
for _ in range(3):
    layers += [stax.Conv(64, (5,), padding="CIRCULAR", W_std={W1}, b_std={B1}), stax.Relu()]
_, _, kernel_fn = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(10, 1.0, 0.0))
'''
PEER_DIGITS = f'''
from neural_tangents import stax
head = stax.GlobalAvgPool() if inputs["readout"] == 0 else stax.Flatten()
_, _, kernel_fn = stax.serial(stax.Conv(256, (3, 3), padding="SAME", W_std={W2}, b_std={B2}), stax.Relu(),
                              stax.Conv(256, (3, 3), padding="SAME", W_std={W2}, b_std={B2}), stax.Relu(), head,
                              stax.Dense(1, {W2}, {B2}))
'''
PEER_RUN = '''
kernel_fn = jax.jit(kernel_fn, static_argnames="get")
x = np.moveaxis(inputs["x"], 1, -1)  # torch layout (N, C, *S) -> channels last
seconds, k = timed(lambda: kernel_fn(x, None, ("nngp", "ntk")))
result["seconds"] = seconds
result["nngp"] = np.asarray(k.nngp).tolist()
result["ntk"] = np.asarray(k.ntk).tolist()
'''


def load_mnist1d():
    """(x_train (4000, 1, 40), y_train, x_test (1000, 1, 40), y_test) from the ``mnist1d`` package."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        sys.exit("MNIST-1D needs the mnist1d package: .venv/bin/pip install mnist1d==0.0.2.post1 "
                 "(it generates the data set; no download)")
    d = make_dataset(get_dataset_args())
    return d["x"][:, None, :], d["y"], d["x_test"][:, None, :], d["y_test"]


def compare(name: str, net, X: np.ndarray, peer_script: str, extra: dict, args, devices) -> None:
    """One network on one input set: our sides and the peer's, alternating; prints a row per side."""
    ours = {f"kernelscope {p}, {dev}": (dev, p) for dev in devices for p in ("float64", "float32")}
    times = {k: [] for k in ours}
    peer_times, outs = [], {}
    for _ in range(args.rounds):
        for label, (dev, prec) in ours.items():
            Xd = torch.as_tensor(X, device=dev)
            t, k = timed(lambda: net.kernel(Xd, precision=prec), repeats=args.repeats)
            times[label].append(t)
            outs[label] = k
        if peer_python() is not None:
            res = run_peer(peer_script + PEER_RUN, {"x": X, **extra}, repeats=args.repeats)
            peer_times.append(res["seconds"])
            ref = (np.array(res["nngp"]), np.array(res["ntk"]))
    t_nt = statistics.median(peer_times) if peer_times else None
    for label, vals in times.items():
        t = statistics.median(vals)
        diff = ""
        if t_nt is not None:
            k = outs[label]
            diff = max(float(np.abs(getattr(k, m).cpu().numpy() - r).max() / np.abs(r).max())
                       for m, r in zip(("nngp", "ntk"), ref))
            diff = f"{diff:.1e}"
        ratio = f"{t / t_nt:.3f}" if t_nt else "–"
        print(f"{name:<28}{label:<30}{t:>10.3f}{ratio:>9}{diff:>14}")
    if t_nt is not None:
        print(f"{name:<28}{'neural-tangents (jit, CPU)':<30}{t_nt:>10.3f}{1.0:>9.3f}")


def accuracy(k_train: np.ndarray, k_test: np.ndarray, y: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of kernel regression on centred one-hot targets, ridge 1e-4 × the mean diagonal."""
    Y = np.eye(int(y.max()) + 1)[y]
    Y -= Y.mean(0)
    K = torch.as_tensor(k_train)
    ridge = 1e-4 * float(K.diagonal().mean())
    L = torch.linalg.cholesky(K + ridge * torch.eye(K.shape[0], dtype=K.dtype))
    alpha = torch.cholesky_solve(torch.as_tensor(Y), L)
    return float(((torch.as_tensor(k_test) @ alpha).argmax(1).numpy() == y_test).mean())


def full(args) -> None:
    x, y, x_test, y_test = load_mnist1d()
    net = mnist1d_network()
    print(f"MNIST-1D, all of it, on {args.device or 'cpu'}: train × train {len(x)}² and test × train "
          f"{len(x_test)} × {len(x)}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'precision':<11}{'train×train s':>14}{'test×train s':>14}{'total s':>9}{'CPU s':>8}{'peak RSS':>10}"
          f"{'NNGP acc':>10}{'NTK acc':>9}")
    kernels = {}
    device = args.device or "cpu"
    cuda = device.startswith("cuda")
    xd, xd_test = (torch.as_tensor(a, device=device) for a in (x, x_test)) if cuda else (x, x_test)
    for prec in args.precision:
        with PeakRSS(0.01) if not cuda else PeakCUDA() as m:
            t0, c0 = time.perf_counter(), time.process_time()
            k_tr = net.kernel(xd, precision=prec)
            t1 = time.perf_counter()
            k_te = net.kernel(xd_test, xd, precision=prec)
            if cuda:
                torch.cuda.synchronize()
                k_tr, k_te = (type(k)(k.nngp.cpu().numpy(), k.ntk.cpu().numpy()) for k in (k_tr, k_te))
            t2, cpu = time.perf_counter(), time.process_time() - c0
        acc = [accuracy(getattr(k_tr, w), getattr(k_te, w), y, y_test) for w in ("nngp", "ntk")]
        kernels[prec] = (k_tr, k_te)
        print(f"{prec:<11}{t1 - t0:>14.1f}{t2 - t1:>14.1f}{t2 - t0:>9.1f}{cpu:>8.0f}{m.peak / 1e9:>8.2f} GB"
              + (" (GPU)" if cuda else "")
              + f"{acc[0]:>10.3f}{acc[1]:>9.3f}   (load average {os.getloadavg()[0]:.1f})")
    if {"float64", "float32"} <= set(kernels):
        worst = max(float(np.abs(getattr(a, w) - getattr(b, w)).max() / np.abs(getattr(b, w)).max())
                    for a, b in zip(kernels["float32"], kernels["float64"]) for w in ("nngp", "ntk"))
        print(f"float32 against float64: largest difference {worst:.1e} of the largest entry (NNGP and NTK, "
              "train × train and test × train)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="MNIST-1D signals in the comparison with the peer")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of our sides and the peer's")
    ap.add_argument("--busy", action="store_true", help="two busy-loop processes load the machine meanwhile")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda too where present)")
    ap.add_argument("--full", action="store_true", help="all of MNIST-1D (train × train and test × train)")
    ap.add_argument("--precision", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    args = ap.parse_args()
    if args.full:
        with busy(2) if args.busy else nullcontext():
            full(args)
        return
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with busy(2) if args.busy else nullcontext():
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}" + (" (with 2 busy-loop processes started by --busy)" if args.busy else "")
              + ("" if peer_python() else "; neural-tangents: not found (set KERNELSCOPE_PEER_PYTHON, see peer.py)"))
        print(f"{'network, inputs':<28}{'side':<30}{'median s':>10}{'÷ NT':>9}{'max rel diff':>14}")
        x, *_ = load_mnist1d()
        compare(f"MNIST-1D GAP, N = {args.n}", mnist1d_network(), np.ascontiguousarray(x[:args.n]), PEER_MNIST1D,
                {}, args, devices)
        for readout, n in (("gap", 128), ("flatten", 256)):
            Xf, _ = data.digits(n, seed=0)
            X = np.asarray(Xf, dtype=np.float64).reshape(-1, 1, 8, 8)
            compare(f"digits {'GAP' if readout == 'gap' else 'Flatten'}, N = {n}", digits_network(readout), X,
                    PEER_DIGITS, {"readout": np.array(0 if readout == "gap" else 1)}, args, devices)


if __name__ == "__main__":
    main()
