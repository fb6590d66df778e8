"""Benchmark: kernelscope.linsys.solve against NumPy lstsq and SciPy's LAPACK drivers, and LSMR on a big sparse system.

    python benchmarks/bench_linsys.py [--repeat 5]

Prints, for dense 2000×1000 and 1000×2000 systems, the median time of each driver, whether it gives the same answer
as the pseudoinverse (relative difference ≤ 1e-10), and the ratio of `solve` to the fastest driver giving the same
answer (target ≤ 1.1). Then LSMR on a sparse 100 000 × 10 000 system with 10⁶ non-zeros: time, iterations and
peak memory (RSS growth). Then the least-ℓ1 solution (basis pursuit, ``min_norm(p=1)``) of a random m×n system
(``--l1 500x2000``; default 300x1200): ``min_norm``'s sparse program (x = u − v, u, v ≥ 0, r equations) against the
program it replaced (variables (x, t), 2n dense inequality rows ±x − t ≤ 0, from the full SVD), one HiGHS solve
each, alternating, with the same optimum.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import psutil
import scipy.linalg as sla
import scipy.sparse as sp

from kernelscope import linsys


def median_time(fn, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), out


def dense_case(m, n, repeat, rng):
    A = rng.standard_normal((m, n))
    b = rng.standard_normal(m)
    ref = np.linalg.pinv(A) @ b
    drivers = {
        "numpy.linalg.lstsq (gelsd)": lambda: np.linalg.lstsq(A, b, rcond=None)[0],
        "scipy gelsd": lambda: sla.lstsq(A, b, lapack_driver="gelsd", check_finite=False)[0],
        "scipy gelsy": lambda: sla.lstsq(A, b, lapack_driver="gelsy", check_finite=False)[0],
        "scipy gelss": lambda: sla.lstsq(A, b, lapack_driver="gelss", check_finite=False)[0],
    }
    rows = []
    for name, fn in drivers.items():
        t, x = median_time(fn, repeat)
        same = np.linalg.norm(x - ref) <= 1e-10 * np.linalg.norm(ref)
        rows.append((name, t, same))
    t_ks, res = median_time(lambda: linsys.solve(A, b), repeat)
    same = np.linalg.norm(res.x - ref) <= 1e-10 * np.linalg.norm(ref)
    fastest = min(t for _, t, s in rows if s)
    print(f"\nDense {m}×{n} (kind of solution: {res.kind}, path: {res.method}), median of {repeat}")
    print(f"{'method':32s} {'time [s]':>10s} {'same answer':>12s} {'ratio':>8s}")
    for name, t, s in rows:
        print(f"{name:32s} {t:10.4f} {str(s):>12s} {t / fastest:8.2f}")
    ratio = t_ks / fastest
    print(f"{'kernelscope.linsys.solve':32s} {t_ks:10.4f} {str(same):>12s} {ratio:8.2f}   "
          f"(target <= 1.10: {'met' if ratio <= 1.1 else 'NOT met'})")
    return ratio


def sparse_case(rng):
    m, n, nnz = 100_000, 10_000, 1_000_000
    rows = rng.integers(0, m, nnz)
    cols = rng.integers(0, n, nnz)
    vals = rng.standard_normal(nnz)
    A = sp.csr_matrix((vals, (rows, cols)), shape=(m, n))
    b = rng.standard_normal(m)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    res = linsys.solve(A, b, atol=1e-8, btol=1e-8)
    t = time.perf_counter() - t0
    rss1 = proc.memory_info().rss
    dense_gb = m * n * 8 / 1e9
    grad = np.linalg.norm(A.T @ res.residual) / (sp.linalg.norm(A) * np.linalg.norm(res.residual))
    print(f"\nSparse {m:,}×{n:,} with {A.nnz:,} non-zeros: LSMR")
    print(f"  time {t:.2f} s, iterations {res.info['iterations'][0]}, kind {res.kind}, "
          f"relative ‖Aᵀr‖ {grad:.1e}, RSS growth {(rss1 - rss0) / 1e6:.0f} MB "
          f"(a dense copy of A alone would be {dense_gb:.0f} GB)")


def _l1_dense_program(A: np.ndarray, b: np.ndarray) -> float:
    """The least-ℓ1 program as min_norm wrote it before: (x, t) ∈ R^{2n}, min Σ t, [[I, −I], [−I, −I]] (x, t) ≤ 0
    as dense blocks, V_rᵀ x = V_rᵀ A⁺b from the full SVD. Returns the optimum ‖x‖₁."""
    from scipy.optimize import linprog

    m, n = A.shape
    U, s, Vt = sla.svd(A, full_matrices=True)
    r = int(np.sum(s > s[0] * n * np.finfo(float).eps))
    Vr = Vt[:r].T
    c_eq = Vr.T @ (Vr @ ((U[:, :r].T @ b) / s[:r]))
    eye = np.eye(n)
    lp = linprog(np.concatenate([np.zeros(n), np.ones(n)]), A_ub=np.block([[eye, -eye], [-eye, -eye]]),
                 b_ub=np.zeros(2 * n), A_eq=np.hstack([Vr.T, np.zeros((r, n))]), b_eq=c_eq,
                 bounds=[(None, None)] * n + [(0, None)] * n, method="highs")
    return float(lp.fun)


def l1_case(m, n, repeat, rng):
    A = rng.standard_normal((m, n))
    b = rng.standard_normal(m)
    ours, old = [], []
    for _ in range(repeat):  # alternating: the machine's load hits both sides alike
        t0 = time.perf_counter()
        res = linsys.min_norm(A, b, p=1, check_unique=False)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = _l1_dense_program(A, b)
        old.append(time.perf_counter() - t0)
    t_ours, t_old = float(np.median(ours)), float(np.median(old))
    print(f"\nLeast-ℓ1 solution of a random {m}×{n} system (one LP each, median of {repeat}, alternating)")
    print(f"  min_norm(p=1) sparse program {t_ours:8.2f} s   ‖x‖₁ = {res.norm:.10g}")
    print(f"  former dense program         {t_old:8.2f} s   ‖x‖₁ = {ref:.10g}   same optimum: "
          f"{abs(res.norm - ref) <= 1e-7 * ref}")
    print(f"  ratio dense / sparse {t_old / t_ours:.1f}x  (check_unique adds four LPs of the same size)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--l1", default="300x1200", help="size m×n of the least-ℓ1 case, e.g. 500x2000")
    ap.add_argument("--only-l1", action="store_true", help="run the least-ℓ1 case alone")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    m, n = (int(v) for v in args.l1.lower().split("x"))
    if args.only_l1:
        l1_case(m, n, max(1, min(args.repeat, 3)), rng)
        return
    r1 = dense_case(2000, 1000, args.repeat, rng)
    r2 = dense_case(1000, 2000, args.repeat, rng)
    sparse_case(rng)
    l1_case(m, n, max(1, min(args.repeat, 3)), rng)
    print(f"\nsummary: solve / fastest same-answer driver = {r1:.2f} (2000×1000), {r2:.2f} (1000×2000)")


if __name__ == "__main__":
    main()
