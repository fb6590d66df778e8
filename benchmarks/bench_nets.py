"""Analytic NNGP+NTK of serial(Dense, ReLU) × 3 + Dense(1), N×N float64: kernelscope vs its peers.

    .venv/bin/python benchmarks/bench_nets.py [--n 4000] [--repeats 5] [--device cuda]

Peers, all measured in this run except neural-tangents:
- neural-tangents: cannot run here (archived, broken on current JAX); its times measured on this machine are
  recorded in issue 3 (median of runs: 0.85–1.33 s at d = 64, 1.06–1.16 s at d = 784) and printed as the peer;
- the floor: one N×N×d float64 GEMM (torch, all threads) plus 6 in-place passes over an N×N float64 buffer
  (one per kernel per hidden layer) — the least any implementation must do;
- a naive implementation: the same recursion written directly on whole N×N tensors (one temporary per op).
Peak memory is the peak RSS above the baseline, sampled every 2 ms by a thread (torch's allocations are
invisible to tracemalloc), in units of one N×N float64 buffer.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import threading
import time

import psutil
import torch

from kernelscope import nets

NT_RECORDED = {64: (0.85, 1.33), 784: (1.06, 1.16)}  # seconds, issue 3
W, B, DEPTH = 1.5, 0.05, 3


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


def floor(X: torch.Tensor):
    K = X @ X.T
    for _ in range(2 * DEPTH):
        K.mul_(1.0)
    return K


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta(self):
        return self.peak - self.base


class PeakCUDA:
    """Peak CUDA memory allocated by torch above the level at entry (for --device cuda)."""

    def __enter__(self):
        torch.cuda.synchronize()
        self.base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        torch.cuda.synchronize()
        self.delta = torch.cuda.max_memory_allocated() - self.base


def timed(fn, X, repeats):
    times, peaks, out = [], [], None
    cuda = X.device.type == "cuda"
    if cuda:  # warm-up: kernels loaded, allocator primed
        fn(X)
    for _ in range(repeats):
        out = None
        with (PeakCUDA() if cuda else PeakRSS()) as m:
            t0 = time.perf_counter()
            out = fn(X)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        peaks.append(m.delta)
    return statistics.median(times), min(times), max(peaks), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (then peak memory is torch's CUDA peak)")
    args = ap.parse_args()
    device = torch.device(args.device)
    n = args.n
    buf = 8 * n * n
    net = network()
    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
             "(other work on the machine makes timings noisy)")
    print(f"N = {n}, float64, torch {torch.__version__}, {where}")
    print(f"{'d':>4} {'method':<26} {'median s':>9} {'min s':>7} {'peak mem':>10} {'÷ floor':>8} "
          f"{'÷ NT (low–high)':>16}")
    for d in (64, 784):
        X = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(device)
        t_floor, m_floor, p_floor, _ = timed(floor, X, args.repeats)
        rows = [("floor (GEMM + 6 passes)", t_floor, m_floor, p_floor)]
        t_ks, m_ks, p_ks, k = timed(lambda A: net.kernel(A), X, args.repeats)
        rows.append(("kernelscope.nets", t_ks, m_ks, p_ks))
        t_nv, m_nv, p_nv, (S, T) = timed(naive, X, max(1, args.repeats // 2))
        rows.append(("naive torch (whole N×N)", t_nv, m_nv, p_nv))
        lo, hi = NT_RECORDED[d]
        for name, t, tmin, p in rows:
            print(f"{d:>4} {name:<26} {t:>9.3f} {tmin:>7.3f} {p / buf:>7.1f} N² {t / t_floor:>8.2f} "
                  f"{t / hi:>7.2f}–{t / lo:.2f}")
        print(f"{d:>4} {'neural-tangents (issue)':<26} {lo:>4.2f}–{hi:.2f} {'':>7} {'':>10} "
              f"{lo / t_floor:>8.2f}")
        err = max(float((k.nngp - S).abs().max() / S.abs().max()), float((k.ntk - T).abs().max() / T.abs().max()))
        print(f"{d:>4} kernelscope vs naive: max relative difference {err:.1e}; speed-up over naive "
              f"{t_nv / t_ks:.1f}×")
        del S, T, k


if __name__ == "__main__":
    main()
