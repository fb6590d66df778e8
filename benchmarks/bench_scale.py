"""Scale-out benchmark: CG and Nyström against exact Cholesky and scikit-learn's KernelRidge, N = 200 000 with
Nyström under a memory ceiling, and CG on 1 vs 2 Dask worker processes. Prints tables; timings are wall-clock
seconds of one run on this machine (noisy when other work shares it).

    .venv/bin/python benchmarks/bench_scale.py            # full: N = 20 000, N = 200 000, scaling at N = 8 000
    .venv/bin/python benchmarks/bench_scale.py --quick    # N = 3 000, N = 30 000, scaling at N = 2 000

Accuracy is "relative RMSE to the exact solution": ‖f_method(X_test) − f_cholesky(X_test)‖ / ‖f_cholesky(X_test)‖,
and the test RMSE against the held-out targets is printed beside it. The accuracy section runs on two input
spectra (``--decay``): isotropic inputs (a flat spectrum: the kernel matrix has nearly N effective dimensions at
this ridge, so no M ≪ N centres can match exact kernel ridge) and inputs whose variances fall like i^-2 (real
data's power law: few effective dimensions for the RBF kernel, where Nyström is meant to be used; the ReLU NTK's
spectrum stays flat there too). The ``span_floor`` column measures how far the centres' span itself is from the
exact predictor: the best that any coefficients on those centres reach, fitted to the exact predictions on 2·M
fresh points; when it is above 1%, no Nyström solver with those centres can be within 1% on those points.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
import warnings

import numpy as np
import psutil
import torch

from kernelscope import data, kernels, scale
from kernelscope._arrays import MemoryBudgetError, check_memory, format_bytes
from kernelscope.solvers import SOLVERS, cholesky_bytes
from kernelscope.solvers.cg import cg_solve
from kernelscope.solvers.nystrom import default_n_centers, nystrom_solve

D = 64
GAMMA = 0.1  # RBF exp(−γ‖x − x'‖²) on inputs with ‖x‖ ≈ 1 (data.regression_nd)
RIDGE = 1e-2  # relative to the mean of k(x, x)


def ntk_kernel():
    """The depth-3 ReLU network's NTK (THEORY.md §4), as a picklable callable, or None without kernelscope.nets."""
    try:
        from kernelscope import nets
    except ImportError:
        return None
    net = nets.serial(*[layer for _ in range(3) for layer in (nets.Dense(512, w_std=1.5, b_std=0.05), nets.ReLU())],
                      nets.Dense(1, w_std=1.5, b_std=0.05))
    return NTK(net)


class NTK:
    def __init__(self, net):
        self.net = net

    def __call__(self, A, B=None):
        return self.net.kernel(A, B).ntk


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def rmse(a, y):
    return float(np.sqrt(np.mean((a - y) ** 2)))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def table(rows, cols):
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))
    print(flush=True)


def span_floor(k, C: np.ndarray, X_fresh: np.ndarray, exact_fresh: np.ndarray) -> float:
    """The best relative RMSE to the exact predictions that ANY predictor ``Σ_j β_j k(x, c_j)`` on the centres C
    reaches on the fresh points (β fitted by least squares to the exact predictions there, more points than
    centres): a floor under the Nyström estimator with these centres, whatever its solver."""
    Kfc = scale.evaluate(k, X_fresh, C)
    beta = torch.linalg.lstsq(Kfc, torch.as_tensor(exact_fresh)[:, None]).solution
    return rel((Kfc @ beta)[:, 0].numpy(), exact_fresh)


def section_accuracy(n: int, n_test: int, m_big: int, decay: float) -> None:
    X, y = data.regression_nd(n + n_test, D, noise=0.1, decay=decay, seed=0)
    X, Xt, y, yt = X[:n], X[n:], y[:n], y[n:]
    # 2·M fresh inputs of the same distribution (the first n + n_test rows equal X, Xt) for span_floor
    X_fresh = data.regression_nd(n + n_test + 2 * m_big, D, noise=0.1, decay=decay, seed=0)[0][n + n_test:]
    Xtt = torch.as_tensor(X)
    candidates = [("rbf", kernels.get("rbf", gamma=GAMMA)), ("ntk-relu-3", ntk_kernel())]
    for name, k in candidates:
        if k is None:
            print(f"({name}: kernelscope.nets not available, skipped)\n")
            continue
        lam = RIDGE * float(np.mean(np.asarray(k(Xtt[:256], Xtt[:256])).diagonal()))
        rows = []
        # exact Cholesky (kernelscope's dense solver), the reference
        res, t_fit = timed(lambda: SOLVERS["cholesky"](k, Xtt, torch.as_tensor(y[:, None]), lam))
        exact, t_pred = timed(lambda: scale.block_predict(k, Xt, res.centers.numpy(), res.coef.numpy())[:, 0])
        exact_fresh = scale.block_predict(k, X_fresh, res.centers.numpy(), res.coef.numpy())[:, 0]
        res = None  # the N×N factor goes before the next solver runs
        rows.append(dict(method="cholesky (kernelscope)", fit_s=f"{t_fit:.1f}", predict_s=f"{t_pred:.2f}",
                         total=t_fit + t_pred, rel_to_exact="0", test_rmse=f"{rmse(exact, yt):.4f}"))
        # scikit-learn KernelRidge in the same run, in a subprocess: at N = 20 000 the SciPy OpenBLAS behind
        # KernelRidge's scipy.linalg.solve has been seen to segfault here, and a crash must not end the benchmark
        sk = _run_sklearn_child(n, n_test, name, lam, decay)
        if sk is None:
            sk_total = None
            rows.append(dict(method="sklearn KernelRidge", fit_s="crashed", predict_s="(segfault in SciPy)"))
        else:
            pred, t_fit, t_pred, label = sk
            sk_total = t_fit + t_pred
            rows.append(dict(method=label, fit_s=f"{t_fit:.1f}", predict_s=f"{t_pred:.2f}", total=sk_total,
                             rel_to_exact=f"{rel(pred, exact):.1e}", test_rmse=f"{rmse(pred, yt):.4f}"))
        # CG: matrix-free for the cheap RBF; tiles persisted for the costly NTK (recomputing it each iteration
        # costs more than storing it at this N)
        persist = name != "rbf"
        sol, t_fit = timed(lambda: cg_solve(k, X, y, lam, tol=1e-8, max_iter=300, persist=persist))
        pred, t_pred = timed(lambda: scale.block_predict(k, Xt, sol.centers, sol.coef)[:, 0])
        rows.append(dict(method="cg" + (" (persisted tiles)" if persist else " (matrix-free)"),
                         fit_s=f"{t_fit:.1f}", predict_s=f"{t_pred:.2f}", total=t_fit + t_pred,
                         iters=sol.info["n_iter"], residual=f"{sol.info['residual']:.1e}",
                         rel_to_exact=f"{rel(pred, exact):.1e}", test_rmse=f"{rmse(pred, yt):.4f}"))
        for m in (default_n_centers(n), m_big, min(n, 2 * m_big)):
            for sampling in ("uniform", "leverage") if m == m_big else ("uniform",):
                with warnings.catch_warnings():  # the saturation warning: its number is the d_eff/M column
                    warnings.simplefilter("ignore")
                    sol, t_fit = timed(lambda: nystrom_solve(k, X, y, lam, n_centers=m, sampling=sampling))
                pred, t_pred = timed(lambda: scale.block_predict(k, Xt, sol.centers, sol.coef)[:, 0])
                rows.append(dict(method=f"nystrom M={m} {sampling}", fit_s=f"{t_fit:.1f}", predict_s=f"{t_pred:.2f}",
                                 total=t_fit + t_pred, rel_to_exact=f"{rel(pred, exact):.1e}",
                                 test_rmse=f"{rmse(pred, yt):.4f}", d_eff_over_M=f"{sol.info['saturation']:.2f}"))
                if m == m_big and sampling == "uniform":
                    rows[-1]["span_floor"] = f"{span_floor(k, sol.centers, X_fresh, exact_fresh):.1e}"
        for r in rows:
            if "total" in r:
                r["vs_sklearn"] = f"{r['total'] / sk_total:.2f}x" if sk_total else "n/a"
                r["total"] = f"{r['total']:.1f}"
        inputs = "isotropic inputs" if decay == 0 else f"inputs with variances ∝ i^-{decay:g}"
        print(f"== {name}: N = {n}, d = {D} ({inputs}), {n_test} test points, ridge = {lam:.3g} ==")
        table(rows, ["method", "fit_s", "predict_s", "total", "vs_sklearn", "iters", "residual", "rel_to_exact",
                     "test_rmse", "d_eff_over_M", "span_floor"])
        print("d_eff_over_M: effective dimension of the Nyström model at this ridge over M; near 1 the centres' span "
              "is saturated and the estimator cannot match exact kernel ridge (more centres, or CG).\n"
              f"span_floor: the best relative RMSE to exact that any Σ_j β_j k(x, c_j) on those centres reaches on "
              f"{2 * m_big} fresh points (β fitted by least squares to the exact predictions there): on those points "
              "no Nyström solver with these centres does better.\n")


def _sklearn_child(n: int, n_test: int, name: str, lam: float, decay: float, out: str) -> None:
    """scikit-learn's KernelRidge on the accuracy section's data; predictions to ``out``, times as JSON."""
    from sklearn.kernel_ridge import KernelRidge

    X, y = data.regression_nd(n + n_test, D, noise=0.1, decay=decay, seed=0)
    X, Xt, y = X[:n], X[n:], y[:n]
    if name == "rbf":
        kr = KernelRidge(alpha=lam, kernel="rbf", gamma=GAMMA)
        _, t_fit = timed(lambda: kr.fit(X, y))
        pred, t_pred = timed(lambda: kr.predict(Xt))
        label = "sklearn KernelRidge"
    else:  # KernelRidge has no NTK: give it the matrix (its time includes computing it with kernelscope)
        k, Xtt = ntk_kernel(), torch.as_tensor(X)
        kr = KernelRidge(alpha=lam, kernel="precomputed")
        _, t_fit = timed(lambda: kr.fit(np.asarray(k(Xtt, Xtt)), y))
        pred, t_pred = timed(lambda: kr.predict(np.asarray(k(torch.as_tensor(Xt), Xtt))))
        label = "sklearn KernelRidge (precomputed)"
    np.save(out, pred)
    print(json.dumps(dict(fit_s=t_fit, predict_s=t_pred, label=label)))


def _run_sklearn_child(n: int, n_test: int, name: str, lam: float, decay: float):
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "pred.npy")
        cmd = [sys.executable, __file__, "--_sklearn-child", str(n), str(n_test), name, repr(lam), repr(decay), out]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        note = ""
        if proc.returncode != 0:  # seen here: SIGSEGV in multithreaded OpenBLAS (scipy.linalg.solve) at N = 20 000
            print(f"  (scikit-learn KernelRidge exited with status {proc.returncode}; "
                  "retrying with OPENBLAS_NUM_THREADS=1)", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
            note = " [1 BLAS thread]"
        if proc.returncode != 0:
            print(f"  (scikit-learn KernelRidge failed again, status {proc.returncode}: "
                  f"{(proc.stderr.strip().splitlines() or ['no message'])[-1][:200]})", flush=True)
            return None
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        return np.load(out), res["fit_s"], res["predict_s"], res["label"] + note


def _nystrom_child(n: int, m: int, n_test: int) -> None:
    """Runs in a subprocess whose peak RSS the parent measures."""
    X, y = data.regression_nd(n + n_test, D, noise=0.1, seed=1)
    X, Xt, y, yt = X[:n], X[n:], y[:n], y[n:]
    k = kernels.get("rbf", gamma=GAMMA)
    sol, t_fit = timed(lambda: nystrom_solve(k, X, y, RIDGE, n_centers=m))
    pred, t_pred = timed(lambda: scale.block_predict(k, Xt, sol.centers, sol.coef)[:, 0])
    print(json.dumps(dict(fit_s=t_fit, predict_s=t_pred, test_rmse=rmse(pred, yt), y_std=float(np.std(yt)),
                          block=sol.info["block"], estimate=sol.info["memory_bytes_estimate"])))


def section_large(n: int, m: int, n_test: int) -> None:
    print(f"== N = {n}, d = {D}: exact methods refused up front ==")
    for what, need in [("dense Cholesky (kernelscope)", cholesky_bytes(n)),
                       ("scikit-learn KernelRidge (K and its factor)", 2 * 8.0 * n * n)]:
        try:
            check_memory(need, f"{what} for N = {n}", "Use solver='nystrom' or 'cg'.")
            print(f"  {what}: would fit ({format_bytes(need)})")
        except MemoryBudgetError as exc:
            print(f"  refused: {exc}")
    proc = subprocess.Popen([sys.executable, __file__, "--_nystrom-child", str(n), str(m), str(n_test)],
                            stdout=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True)))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = json.loads(proc.stdout.read().strip().splitlines()[-1])
    print(f"\n== Nyström, N = {n}, M = {m}, {n_test} test points, local threads (subprocess, RSS polled) ==")
    table([dict(fit_s=f"{out['fit_s']:.1f}", predict_s=f"{out['predict_s']:.1f}", peak_rss=format_bytes(peak),
                target="< 6.0 GB", estimate=format_bytes(out["estimate"]), test_rmse=f"{out['test_rmse']:.4f}",
                y_std=f"{out['y_std']:.4f}")],
          ["fit_s", "predict_s", "peak_rss", "target", "estimate", "test_rmse", "y_std"])


def section_scaling(n: int) -> None:
    from distributed import Client, LocalCluster

    X, y = data.regression_nd(n, D, noise=0.1, seed=2)
    k = kernels.get("rbf", gamma=GAMMA)
    rows = []
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster):
            # same work on both: fixed iterations (tol unreachable), same centres
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cg_solve(k, X[:500], y[:500], RIDGE, max_iter=2, n_centers=50, block=100)  # warm the workers up
                sol, t = timed(lambda: cg_solve(k, X, y, RIDGE, tol=1e-30, max_iter=10, n_centers=200, block=1000))
        rows.append(dict(workers=workers, seconds=t, matvecs=sol.info["n_matvecs"]))
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = f"{base / r['seconds']:.2f}x"
        r["seconds"] = f"{r['seconds']:.1f}"
    print(f"== CG fit (10 iterations, rank-200 preconditioner), N = {n}, on 1 vs 2 Dask worker processes ==")
    table(rows, ["workers", "seconds", "matvecs", "speedup"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (well under a minute or two)")
    ap.add_argument("--only", choices=["accuracy", "large", "scaling"], default=None)
    ap.add_argument("--_nystrom-child", nargs=3, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--decay", type=float, nargs="+", default=[0.0, 2.0],
                    help="input spectra of the accuracy section: 0 = isotropic (flat), p = variances ∝ i^-p")
    ap.add_argument("--_sklearn-child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._sklearn_child:
        n, n_test, name, lam, decay, out = args._sklearn_child
        _sklearn_child(int(n), int(n_test), name, float(lam), float(decay), out)
        return
    if args._nystrom_child:
        _nystrom_child(*args._nystrom_child)
        return
    torch.set_num_threads(max(1, psutil.cpu_count(logical=True) or 1))
    print(f"machine: {psutil.cpu_count()} cores, {format_bytes(psutil.virtual_memory().total)} RAM, "
          f"torch {torch.__version__}\n", flush=True)
    quick = args.quick
    if args.only in (None, "accuracy"):
        for decay in args.decay:
            section_accuracy(3000 if quick else 20_000, 500 if quick else 2000, 1000 if quick else 5000, decay)
    if args.only in (None, "large"):
        section_large(30_000 if quick else 200_000, 1000 if quick else 5000, 2000 if quick else 10_000)
    if args.only in (None, "scaling"):
        section_scaling(2000 if quick else 8000)


if __name__ == "__main__":
    main()
