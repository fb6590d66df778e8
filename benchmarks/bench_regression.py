"""Benchmark: KernelRegressor fit + predict against scikit-learn's KernelRidge, in the same run.

    python benchmarks/bench_regression.py [--n 10000] [--d 64] [--n-test 2000] [--ridge 1e-3] [--repeat 3]

RBF kernel (γ = 1/d, scikit-learn's default) on ``kernelscope.data.regression_nd``. Prints the median wall time of
fit + predict for each, the ratio kernelscope / KernelRidge (target ≤ 0.8), kernelscope's own split (kernel matrix,
Cholesky, solve, predict), the GFLOP/s of its Cholesky, and the largest relative difference between the two
predictions (must be ≤ 1e-8). Timings on a shared machine are noisy: compare ratios from the same run.

Where the time goes: K (N² d flops by one GEMM, then in-place ``exp``), the Cholesky of K + λI (N³/3 flops,
MKL's potrf through ``torch.linalg.cholesky_ex`` writing the factor over K — no copy), two triangular solves,
and predictions in row blocks. KernelRidge does the same mathematics through SciPy (``linalg.solve`` with
``assume_a='pos'`` on a copy of K).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.kernel_ridge import KernelRidge

from kernelscope.data import regression_nd
from kernelscope.regression import KernelRegressor


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--n-test", type=int, default=2_000)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    X, y = regression_nd(args.n + args.n_test, args.d, seed=0)
    Xtr, ytr, Xte = X[: args.n], y[: args.n], X[args.n:]
    print(f"N = {args.n}, d = {args.d}, test points = {args.n_test}, RBF (gamma = 1/d), ridge = {args.ridge}, "
          f"torch threads = {torch.get_num_threads()}")

    def sklearn_run():
        return KernelRidge(alpha=args.ridge, kernel="rbf").fit(Xtr, ytr).predict(Xte)

    def ours_run():
        model = KernelRegressor("rbf", ridge=args.ridge, solver="cholesky").fit(Xtr, ytr)
        t_pred, pred = timed(lambda: model.predict(Xte))
        return pred, model.solver_info_, t_pred

    rows = {"sklearn KernelRidge": [], "kernelscope KernelRegressor": []}
    splits = []
    for _ in range(args.repeat):  # alternate so that background load hits both alike
        t, ref = timed(sklearn_run)
        rows["sklearn KernelRidge"].append(t)
        t, (pred, info, t_pred) = timed(ours_run)
        rows["kernelscope KernelRegressor"].append(t)
        splits.append((info["seconds_kernel"], info["seconds_factor"], info["seconds_solve"], t_pred))

    rel = float(np.max(np.abs(pred - ref)) / np.max(np.abs(ref)))
    t_sk = float(np.median(rows["sklearn KernelRidge"]))
    t_ks = float(np.median(rows["kernelscope KernelRegressor"]))
    print(f"\n{'method':30s} {'median s':>9s} {'runs (s)':>26s} {'ratio':>7s}")
    for name, ts in rows.items():
        med = float(np.median(ts))
        print(f"{name:30s} {med:9.2f} {' '.join(f'{t:.2f}' for t in ts):>26s} {med / t_sk:7.2f}")
    k, f, s, p = np.median(np.array(splits), axis=0)
    gflops = args.n**3 / 3 / f / 1e9
    print(f"\nkernelscope split (median): kernel {k:.2f} s, Cholesky {f:.2f} s ({gflops:.0f} GFLOP/s), "
          f"solve {s:.3f} s, predict {p:.2f} s")
    print(f"ratio kernelscope / KernelRidge = {t_ks / t_sk:.2f} (target <= 0.8): "
          f"{'MET' if t_ks / t_sk <= 0.8 else 'NOT MET'}")
    print(f"max relative difference of the predictions = {rel:.2e} (must be <= 1e-8): "
          f"{'OK' if rel <= 1e-8 else 'FAIL'}")


if __name__ == "__main__":
    main()
