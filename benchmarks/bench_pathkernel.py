"""Cost of the path kernel: ``path_kernel(exact=True)`` (and the left-endpoint sum) against plain
``torch.optim.SGD`` training of the same model for the same steps, measured in the same run; then Adam:
``path_kernel(optimizer='adam')`` against plain ``torch.optim.Adam`` training and against path_kernel with SGD.

    .venv/bin/python benchmarks/bench_pathkernel.py
    .venv/bin/python benchmarks/bench_pathkernel.py --steps 100 --nodes 3

Issue 4's budget: exact costs at most (nodes + 2)x plain training plus the per-step gradient products (the
N x M kernel contractions). Here one step of plain training is one forward + backward over the N training points;
exact adds per-example output gradients of the N training points and (forward + O backward passes) of the M test
points at each of the ``nodes`` quadrature points, then the per-layer Gram products.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from kernelscope import data
from kernelscope.dynamics import mlp, path_kernel


def plain_training(model, X, y, lr, steps, loss, optimizer="sgd"):
    net = copy.deepcopy(model)
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        out = net(X)
        if loss == "mse":
            L = 0.5 * ((out.reshape(-1) - y) ** 2).sum()
        else:
            L = torch.nn.functional.cross_entropy(out, y, reduction="sum")
        L.backward()
        opt.step()
    return net


def best(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    cases = []
    X, y = data.regression_1d(64, seed=0)
    cases.append(("1-D MSE, 2-layer tanh m=512, N=64, M=64", mlp(1, 512, activation="tanh", b_std=0.5),
                  X, y, np.linspace(-1, 1, 64)[:, None], 0.01, "mse"))
    Xd, lab = data.digits(300, seed=0)
    cases.append(("digits CE, 64-256-256-10 tanh, N=256, M=44", mlp(64, 256, depth=3, d_out=10, activation="tanh",
                                                                   b_std=0.1), Xd[:256], lab[:256], Xd[256:], 0.02,
                  "cross_entropy"))
    print(f"{args.steps} steps, {args.nodes} Gauss–Legendre nodes, best of {args.repeats}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    head = f"{'case':44s} | {'plain SGD':>10s} | {'left-endpoint':>13s} | {'exact':>10s} | {'left/plain':>10s} | " \
           f"{'exact/plain':>11s} | {'rel. error exact':>16s}"
    print(head)
    print("-" * len(head))
    for name, model, X, y, Xs, lr, loss in cases:
        Xt = torch.as_tensor(X)
        yt = torch.as_tensor(y)
        t_plain, _ = best(lambda: plain_training(model, Xt, yt, lr, args.steps, loss), args.repeats)
        t_left, _ = best(lambda: path_kernel(model, X, y, Xs, lr=lr, steps=args.steps, loss=loss, exact=False),
                         args.repeats)
        t_exact, res = best(lambda: path_kernel(model, X, y, Xs, lr=lr, steps=args.steps, loss=loss, exact=True,
                                                nodes=args.nodes), args.repeats)
        print(f"{name:44s} | {t_plain:8.3f} s | {t_left:11.3f} s | {t_exact:8.3f} s | {t_left / t_plain:9.1f}x | "
              f"{t_exact / t_plain:10.1f}x | {res.rel_error:16.1e}", flush=True)
    print(f"\nAdam (history buffers in parameter space, preconditioned kernel), {args.steps} steps, exact")
    head = f"{'case':44s} | {'plain Adam':>10s} | {'pk SGD':>8s} | {'pk Adam':>8s} | {'Adam/plain':>10s} | " \
           f"{'pk Adam/pk SGD':>14s} | {'rel. error':>10s}"
    print(head)
    print("-" * len(head))
    # The history buffers G (N, O, P) and the kernel update (M·N·O²·P per step) make the 10-class 64-256-256-10
    # case above far too heavy for Adam (measured ~25 s per step, 1.7 GB of buffers); a smaller classifier instead.
    adam_cases = [cases[0], ("digits CE, 64-64-10 tanh, N=128, M=44", mlp(64, 64, d_out=10, activation="tanh",
                                                                        b_std=0.1), Xd[:128], lab[:128], Xd[256:],
                             0.02, "cross_entropy")]
    for name, model, X, y, Xs, lr, loss in adam_cases:
        Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
        alr = lr / 5
        t_plain, _ = best(lambda: plain_training(model, Xt, yt, alr, args.steps, loss, "adam"), args.repeats)
        t_sgd, _ = best(lambda: path_kernel(model, X, y, Xs, lr=alr, steps=args.steps, loss=loss,
                                            nodes=args.nodes), args.repeats)
        t_adam, res = best(lambda: path_kernel(model, X, y, Xs, lr=alr, steps=args.steps, loss=loss, nodes=args.nodes,
                                               optimizer="adam", tol=1.0), args.repeats)
        print(f"{name:44s} | {t_plain:8.3f} s | {t_sgd:6.2f} s | {t_adam:6.2f} s | {t_adam / t_plain:9.1f}x | "
              f"{t_adam / t_sgd:13.2f}x | {res.rel_error:10.1e}", flush=True)
    print(f"\nbudget from the issue: (nodes + 2) = {args.nodes + 2}x plain training plus the per-step Gram products; "
          "the test points' passes (M of them, O backward passes each for O outputs) come on top for O > 1.")


if __name__ == "__main__":
    main()
