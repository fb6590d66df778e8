"""Benchmark: an infinitely wide classifier trained on cross-entropy in function space, N = 5000, 10 classes.

``kernelscope.predict.gradient_descent(loss='cross_entropy')`` on the analytic NTK of ``2 -> 512 (ReLU) -> 10``
(NTK parameterisation) over 10-arm spirals, from f0 = 0 to the time where the training accuracy saturates
(η = 1/λ_max(Θ); accuracy recorded on a log grid of times), against peers measured in the same run:

- scipy's RK45 (the same ODE, the same tolerances, through ``method='RK45'``);
- classical RK4 at a fixed step, as many right-hand-side evaluations as DOP853 used (its distance to DOP853 shows
  what the same work buys without error control).

Run:  PYTHONPATH=src python benchmarks/bench_predict.py [--n 5000] [--classes 10] [--t-end 3000] [--rtol 1e-6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from kernelscope import data, nets, predict


def rk4_fixed(K: torch.Tensor, Y: torch.Tensor, s_end: float, n_steps: int) -> torch.Tensor:
    """Classical RK4 for df/ds = −Θ (softmax(f) − Y) from f = 0, ``n_steps`` equal steps to ``s_end``."""
    f = torch.zeros_like(Y)
    h = s_end / n_steps

    def rhs(f):
        return -(K @ (torch.softmax(f, 1) - Y))

    for _ in range(n_steps):
        k1 = rhs(f)
        k2 = rhs(f + 0.5 * h * k1)
        k3 = rhs(f + 0.5 * h * k2)
        k4 = rhs(f + h * k3)
        f = f + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return f


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--t-end", type=float, default=3000.0, help="training time in steps of η = 1/λ_max(Θ)")
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--atol", type=float, default=1e-8)
    p.add_argument("--skip-rk45", action="store_true")
    a = p.parse_args()

    X, y = data.spirals(a.n // a.classes, a.classes, noise=0.1, seed=0)
    net = nets.serial(nets.Dense(512, w_std=1.0, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.0, b_std=0.1))
    t0 = time.perf_counter()
    K = torch.as_tensor(net.kernel(X).ntk)
    lam = float(torch.linalg.eigvalsh(K)[-1])
    print(f"N = {len(y)}, classes = {a.classes}, NTK in {time.perf_counter() - t0:.1f} s, λ_max = {lam:.4g}; "
          f"threads {torch.get_num_threads()}")
    lr = 1.0 / lam
    times = np.concatenate([[0.0], np.geomspace(1.0, a.t_end, 13)])
    yt = torch.as_tensor(y)

    rows = []
    t0 = time.perf_counter()
    ref = predict.gradient_descent(K, yt, times, loss="cross_entropy", lr=lr, rtol=a.rtol, atol=a.atol)
    dt = time.perf_counter() - t0
    acc = (ref.train.argmax(2) == yt).double().mean(1).numpy()
    print("training accuracy along t:", ", ".join(f"t={t:.3g}: {v:.4f}" for t, v in zip(times, acc)))
    gain = acc[-1] - acc[-2]
    print(f"final training accuracy {acc[-1]:.4f}; gain over the last grid interval {gain:+.4f} ("
          + ("saturated" if gain < 2e-3 else "still rising: pass a larger --t-end") + ")")
    rows.append(("kernelscope DOP853", dt, ref.info["steps"], ref.info["nfev"], 0.0))
    if not a.skip_rk45:
        t0 = time.perf_counter()
        r45 = predict.gradient_descent(K, yt, times, loss="cross_entropy", lr=lr, method="RK45", rtol=a.rtol,
                                       atol=a.atol)
        rows.append(("peer: scipy RK45", time.perf_counter() - t0, r45.info["steps"], r45.info["nfev"],
                     float((r45.train[-1] - ref.train[-1]).abs().max())))
    Y = torch.nn.functional.one_hot(yt, a.classes).double()
    n4 = max(1, ref.info["nfev"] // 4)
    t0 = time.perf_counter()
    f4 = rk4_fixed(K, Y, lr * times[-1], n4)
    rows.append(("peer: fixed-step RK4 (same f-evals)", time.perf_counter() - t0, n4, 4 * n4,
                 float((f4 - ref.train[-1]).abs().max()) if torch.isfinite(f4).all() else float("inf")))
    scale = float(ref.train[-1].abs().max())
    print(f"\n{'solver':38s} {'seconds':>8s} {'steps':>6s} {'f-evals':>8s} {'max|Δf| vs DOP853':>18s} {'ratio':>6s}")
    for name, sec, st, nf, err in rows:
        print(f"{name:38s} {sec:8.1f} {st:6d} {nf:8d} {err:18.3g} {sec / rows[0][1]:6.2f}")
    print(f"(|f| up to {scale:.3g} at the end; rtol {a.rtol:g}, atol {a.atol:g})")


if __name__ == "__main__":
    main()
