"""Analytic NNGP+NTK of serial(Dense, ReLU) × 3 + Dense(1), N×N float64: kernelscope against neural-tangents.

    .venv/bin/python benchmarks/bench_nets.py [--n 4000] [--dims 64 784] [--repeats 3] [--rounds 2] [--busy]
                                              [--device cpu|cuda] [--naive]

Measured in the same run, the two sides alternating (``--rounds`` rounds; each side the median of ``--repeats``
calls after a warm-up; the table shows the median over rounds):
- neural-tangents 0.6.5 (``stax.serial(...)``, ``jax.jit(kernel_fn)(x, None, ('nngp', 'ntk'))``, float64, CPU) in
  its own environment (``benchmarks/peer.py``); without it the table says so and shows our side;
- the floor: one N×N×d float64 GEMM (torch, all threads) plus 6 in-place passes over an N×N float64 buffer (one
  per kernel per hidden layer) — what any implementation must at least do;
- kernelscope's engine as the library runs it (tiles on single-threaded workers); the same call with the
  arc-cosine dual as torch operations instead of its compiled loop (:mod:`kernelscope._jit`); and with one
  worker whose ops use torch's intra-op threads (``threads=1``): the scheme that collapses on a busy machine.
``--busy`` runs everything with two busy-loop processes on the machine (``peer.busy(2)``): both sides measured
on the same loaded machine. Where a CUDA device is present the table also has rows for it (``--device cuda``
for those only); the peer stays on CPU. ``--naive`` adds the textbook recursion on whole N×N tensors (slow) and
checks our kernels against it. Peak memory: the peak RSS above the level before the call (CUDA: torch's peak),
in N×N float64 buffers.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import PeakCUDA, PeakRSS, busy, peer_python, run_peer  # noqa: E402

from kernelscope import _jit, nets  # noqa: E402

W, B, DEPTH = 1.5, 0.05, 3

PEER = f'''
from neural_tangents import stax
layers = []
for _ in range({DEPTH}):
    layers += [stax.Dense(512, {W}, {B}), stax.Relu()]
_, _, kernel_fn = stax.serial(*layers, stax.Dense(1, {W}, {B}))
kernel_fn = jax.jit(kernel_fn, static_argnames="get")
x = inputs["x"]
jax.block_until_ready(kernel_fn(x, None, ("nngp", "ntk")))  # compile
cpu0 = time.process_time()
seconds, k = timed(lambda: kernel_fn(x, None, ("nngp", "ntk")))
result["cpu"] = (time.process_time() - cpu0) / (repeats + 1)  # CPU seconds of all threads, per call
result["seconds"] = seconds
result["ntk"] = np.asarray(k.ntk[:8, :8]).tolist()
'''


def network():
    layers = []
    for _ in range(DEPTH):
        layers += [nets.Dense(512, W, B), nets.ReLU()]
    return nets.serial(*layers, nets.Dense(1, W, B))


def naive(X: torch.Tensor):
    """The textbook recursion on whole matrices (THEORY.md §4), no blocking, no in-place tricks."""
    d = X.shape[1]
    S = W**2 * (X @ X.T) / d + B**2
    T = S.clone()
    for _ in range(DEPTH):
        v = torch.diagonal(S)
        norm = torch.sqrt(torch.outer(v, v))
        cos = torch.clamp(S / norm, -1.0, 1.0)
        th = torch.acos(cos)
        E = norm / (2 * math.pi) * (torch.sin(th) + (math.pi - th) * cos)
        Ed = (math.pi - th) / (2 * math.pi)
        S = W**2 * E + B**2
        T = S + W**2 * Ed * T
    return S, T


def torch_ops(net, X: torch.Tensor):
    """``net.kernel(X)`` with the arc-cosine dual as torch operations, not the compiled loop (kernelscope._jit)."""
    with _jit.disabled():
        return net.kernel(X)


def floor(X: torch.Tensor):
    K = X @ X.T
    for _ in range(2 * DEPTH):
        K.mul_(1.0)
    return K


def measure(fn, X, repeats):
    """(median seconds, CPU seconds per call, peak memory bytes, output) of ``fn(X)`` over ``repeats`` calls after
    a warm-up. CPU seconds: of all the process's threads (``time.process_time``), a measure of the work done that
    a busy machine inflates less than the wall time (spinning threads count too)."""
    cuda = X.device.type == "cuda"
    out = fn(X)  # warm-up: kernels loaded, buffers primed
    times, peaks, cpu = [], [], 0.0
    for _ in range(repeats):
        out = None
        with (PeakCUDA() if cuda else PeakRSS()) as m:
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(X)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
        peaks.append(m.delta)
    return statistics.median(times), cpu / repeats, max(peaks), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 784])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of our side and the peer's")
    ap.add_argument("--busy", action="store_true", help="two busy-loop processes load the machine meanwhile")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda too where present)")
    ap.add_argument("--naive", action="store_true", help="also the whole-matrix recursion (slow), as a check")
    args = ap.parse_args()
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    n, net, buf = args.n, network(), 8 * args.n * args.n
    have_peer = peer_python() is not None
    with busy(2) if args.busy else nullcontext():
        print(f"N = {n}, float64, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
              + (" (with 2 busy-loop processes started by --busy)" if args.busy else "")
              + ("" if have_peer else "; neural-tangents: not found (set KERNELSCOPE_PEER_PYTHON, see peer.py)"))
        print(f"{'device':>6} {'d':>4} {'method':<42} {'median s':>9} {'÷ floor':>8} {'÷ NT':>6} {'CPU s':>7} "
              f"{'÷ NT':>6} {'peak mem':>9}")
        for device in devices:
            for d in args.dims:
                X64 = np.random.default_rng(0).standard_normal((n, d))
                X = torch.as_tensor(X64, device=device)
                sides = {"floor (GEMM + 6 passes over N×N)": lambda A: floor(A),
                         "kernelscope.nets (tile workers)": lambda A: net.kernel(A)}
                if device == "cpu":
                    sides["kernelscope.nets, torch ops for the dual"] = lambda A: torch_ops(net, A)
                    sides["kernelscope.nets, threads=1 (intra-op)"] = lambda A: net.kernel(A, threads=1)
                if args.naive:
                    sides["naive torch (whole N×N)"] = naive
                rows = {name: [] for name in sides}
                peer_rows, outs = [], {}
                for _ in range(args.rounds):
                    for name, fn in sides.items():
                        t, cpu, peak, outs[name] = measure(fn, X, args.repeats)
                        rows[name].append((t, cpu, peak))
                    if have_peer and (device == "cpu" or not peer_rows):
                        res = run_peer(PEER, {"x": X64}, repeats=args.repeats)
                        peer_rows.append((res["seconds"], res["cpu"]))
                        peer_ntk = np.array(res["ntk"])
                t_floor = statistics.median(v[0] for v in rows["floor (GEMM + 6 passes over N×N)"])
                t_nt = statistics.median(v[0] for v in peer_rows) if peer_rows else None
                c_nt = statistics.median(v[1] for v in peer_rows) if peer_rows else None
                for name, vals in rows.items():
                    t, cpu = statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals)
                    peak = max(v[2] for v in vals)
                    ratio = f"{t / t_nt:6.2f}" if t_nt else f"{'–':>6}"
                    cratio = f"{cpu / c_nt:6.2f}" if c_nt else f"{'–':>6}"
                    print(f"{device:>6} {d:>4} {name:<42} {t:>9.3f} {t / t_floor:>8.2f} {ratio} {cpu:>7.2f} "
                          f"{cratio} {peak / buf:>6.1f} N²")
                if t_nt:
                    print(f"{'cpu':>6} {d:>4} {'neural-tangents 0.6.5 (jit, CPU)':<42} {t_nt:>9.3f} "
                          f"{t_nt / t_floor:>8.2f} {1.0:>6.2f} {c_nt:>7.2f} {1.0:>6.2f}")
                    k = outs["kernelscope.nets (tile workers)"]
                    diff = float(np.abs(k.ntk[:8, :8].cpu().numpy() - peer_ntk).max() / np.abs(peer_ntk).max())
                    print(f"{'':>6} {d:>4} kernelscope vs neural-tangents (NTK, 8×8 corner): max relative "
                          f"difference {diff:.1e}")
                if args.naive:
                    k, (S, T) = outs["kernelscope.nets (tile workers)"], outs["naive torch (whole N×N)"]
                    err = max(float((k.nngp - S).abs().max() / S.abs().max()),
                              float((k.ntk - T).abs().max() / T.abs().max()))
                    print(f"{'':>6} {d:>4} kernelscope vs naive: max relative difference {err:.1e}")


if __name__ == "__main__":
    main()
