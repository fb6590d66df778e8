"""Benchmark: an infinitely wide classifier trained on cross-entropy in function space, N = 5000, 10 classes.

``kernelscope.predict.gradient_descent(loss='cross_entropy')`` on the analytic NTK of ``2 -> 512 (ReLU) -> 1``
(NTK parameterisation; Θ ⊗ I over the 10 outputs) over 10-arm spirals, from f0 = 0, η = 1/λ_max(Θ), the training
accuracy recorded on a log grid of times up to ``--t-end`` (by default far enough for it to saturate). The flow is
stiff: its Jacobian −ηΘ∇²L has real eigenvalues down to −λ_max(Θ)/2·η, so 'auto' integrates it by Runge–Kutta–
Chebyshev (RKC) with the radius re-estimated along the way.

Peers, measured in the same run on the same problem over ``[0, --peer-t-end]`` (a classical explicit method is held
to steps of ≈ 6/ρ by stability, so running it to ``--t-end`` would take hours):

- scipy's DOP853 (kernelscope's solver before RKC), the same tolerances, through ``method='DOP853'``;
- scipy's RK45, likewise (``--rk45``);
- kernelscope's RKC over the same shorter interval, for the head-to-head ratio;
- classical RK4 at a fixed step with as many evaluations as RKC used (what the same work buys without
  stabilisation: it blows up).

Accuracy: the RKC solution against one at 10× tighter tolerances (max |Δf| over the grid), so the stated tolerance
is checked, not assumed. The whole script takes about 7 minutes on a 2-core machine.

Run:  PYTHONPATH=src python benchmarks/bench_predict.py [--n 5000] [--classes 10] [--t-end 3e5] [--rtol 1e-5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.sparse.linalg import eigsh

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
    p.add_argument("--t-end", type=float, default=3e5, help="training time in steps of η = 1/λ_max(Θ)")
    p.add_argument("--peer-t-end", type=float, default=3e3, help="the interval the peers are timed on")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-7)
    p.add_argument("--rk45", action="store_true", help="also time scipy's RK45")
    p.add_argument("--no-reference", action="store_true", help="skip the 10x tighter accuracy reference")
    a = p.parse_args()

    X, y = data.spirals(a.n // a.classes, a.classes, noise=0.1, seed=0)
    net = nets.serial(nets.Dense(512, w_std=1.0, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.0, b_std=0.1))
    t0 = time.perf_counter()
    K = torch.as_tensor(net.kernel(X).ntk)
    lam = float(eigsh(K.numpy(), k=1, which="LA", return_eigenvectors=False)[0])
    print(f"N = {len(y)}, classes = {a.classes}, NTK in {time.perf_counter() - t0:.1f} s, λ_max = {lam:.4g}; "
          f"threads {torch.get_num_threads()}")
    lr = 1.0 / lam
    yt = torch.as_tensor(y)
    Y = torch.nn.functional.one_hot(yt, a.classes).double()

    # 1. the whole run, to saturation
    times = np.concatenate([[0.0], np.geomspace(1.0, a.t_end, 4 * int(round(np.log10(a.t_end))) + 1)])
    t0 = time.perf_counter()
    ref = predict.gradient_descent(K, yt, times, loss="cross_entropy", lr=lr, rtol=a.rtol, atol=a.atol)
    dt = time.perf_counter() - t0
    acc = (ref.train.argmax(2) == yt).double().mean(1).numpy()
    print("training accuracy along t:", ", ".join(f"{t:.3g}: {v:.4f}" for t, v in zip(times, acc)))
    gain = acc[-1] - acc[-2]  # over the last quarter of a decade
    print(f"final training accuracy {acc[-1]:.4f}; gain over the last quarter-decade of t {gain:+.4f} ("
          + ("saturated" if gain < 1e-3 else "still rising: pass a larger --t-end") + ")")
    info = ref.info
    print(f"kernelscope gradient_descent (auto -> {info['method']}): {dt:.1f} s to t = {a.t_end:g}, "
          f"{info['steps']} steps ({info.get('rejected', 0)} rejected), {info['nfev']} products Θ·g "
          f"(stages ≤ {info.get('max_stages', '-')}, {info.get('radius_estimates', 0)} radius estimates), "
          f"rtol {a.rtol:g}, atol {a.atol:g}")
    if not a.no_reference:
        t0 = time.perf_counter()
        tight = predict.gradient_descent(K, yt, times, loss="cross_entropy", lr=lr, rtol=a.rtol / 10,
                                         atol=a.atol / 10)
        err = float((ref.train - tight.train).abs().max())
        scale = float(tight.train.abs().max())
        print(f"accuracy: max |Δf| over the grid against rtol {a.rtol / 10:g} ({time.perf_counter() - t0:.1f} s, "
              f"{tight.info['steps']} steps): {err:.3g} (|f| up to {scale:.3g}: {err / scale:.2g} relative)")

    # 2. head to head on [0, peer_t_end]
    pt = np.concatenate([[0.0], np.geomspace(1.0, a.peer_t_end, 4 * int(round(np.log10(a.peer_t_end))) + 1)])
    rows = []
    t0 = time.perf_counter()
    mine = predict.gradient_descent(K, yt, pt, loss="cross_entropy", lr=lr, method="RKC", rtol=a.rtol, atol=a.atol)
    rows.append(("kernelscope RKC", time.perf_counter() - t0, mine.info["steps"], mine.info["nfev"], 0.0))
    peers = ["DOP853"] + (["RK45"] if a.rk45 else [])
    for method in peers:
        t0 = time.perf_counter()
        r = predict.gradient_descent(K, yt, pt, loss="cross_entropy", lr=lr, method=method, rtol=a.rtol, atol=a.atol)
        rows.append((f"peer: scipy {method}", time.perf_counter() - t0, r.info["steps"], r.info["nfev"],
                     float((r.train[-1] - mine.train[-1]).abs().max())))
    n4 = max(1, mine.info["nfev"] // 4)
    t0 = time.perf_counter()
    f4 = rk4_fixed(K, Y, lr * pt[-1], n4)
    rows.append(("peer: fixed-step RK4 (same products)", time.perf_counter() - t0, n4, 4 * n4,
                 float((f4 - mine.train[-1]).abs().max()) if torch.isfinite(f4).all() else float("inf")))
    print(f"\nhead to head on t in [0, {a.peer_t_end:g}], rtol {a.rtol:g}, atol {a.atol:g}:")
    print(f"{'solver':38s} {'seconds':>8s} {'steps':>6s} {'Θ·g':>8s} {'max|Δf| vs RKC':>15s} {'time ratio':>10s}")
    for name, sec, st, nf, err in rows:
        print(f"{name:38s} {sec:8.1f} {st:6d} {nf:8d} {err:15.3g} {sec / rows[0][1]:10.2f}")


if __name__ == "__main__":
    main()
