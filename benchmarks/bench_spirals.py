"""Benchmarks of the spiral chapter's hot spots, each against its peer measured in the same run.

1. The NTK of the finite two-layer net (regime table): the closed form ``ntk_two_layer`` against
   ``kernelscope.empirical.ntk`` (autograd Jacobians, trace over outputs) on the same weights and points.
2. One full-batch Adam epoch of the lecture's net (N = 1000, width 100, float64): one intra-op thread (what the
   experiments use) against torch's default thread count.

Run: ``.venv/bin/python benchmarks/bench_spirals.py [--repeat 3]``. Timings are medians of ``--repeat`` runs; on a
shared machine they are noisy, compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from kernelscope import empirical
from kernelscope.data import spirals
from kernelscope.experiments import regimes as rg
from kernelscope.experiments import spirals as sp


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class _Net(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        self.p = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone()) for k, v in params.items()})

    def forward(self, x):
        return rg._ntk_forward(dict(self.p), x, 1.0, 0.1)


def bench_ntk(repeat: int) -> list[tuple]:
    X = torch.as_tensor(spirals(60, 5, 0.2, 0)[0])  # N = 300, as in the quick regime table
    rows = []
    for width in (256, 4096):
        p = {k: v.detach() for k, v in rg._init_ntk(width, 2, 5, torch.Generator().manual_seed(0)).items()}
        model = _Net(p)
        ours = rg.ntk_two_layer(p, X)
        ref = empirical.ntk(model, X, trace=True) / 5
        err = float((ours - ref).abs().max() / ref.abs().max())
        t_ours = _median_time(lambda: rg.ntk_two_layer(p, X), repeat)
        t_ref = _median_time(lambda: empirical.ntk(model, X, trace=True), repeat)
        rows.append((f"NTK, width {width}, N=300", "closed form", t_ours, "empirical.ntk (autograd)", t_ref,
                     t_ref / t_ours, f"max rel. diff {err:.1e}"))
    return rows


def bench_epoch(repeat: int, epochs: int = 100) -> list[tuple]:
    X, y = spirals(200, 5, 0.2, 0)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def run():
        params = sp._init_params([2, 100, 2, 5], [0.1] * 3, torch.Generator().manual_seed(0))
        sp._train_loop(params, Xt, yt, epochs=epochs, lr=1e-2, weight_decay=1e-5, optimizer="adam", momentum=0.9,
                       slope=0.0, snapshots=0, track=None, desc="")

    default = torch.get_num_threads()
    t_default = _median_time(run, repeat) / epochs
    with sp.one_thread():
        t_one = _median_time(run, repeat) / epochs
    return [("Adam epoch, N=1000, H=100", "1 thread", t_one, f"{default} threads (default)", t_default,
             t_default / t_one, "")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = bench_ntk(args.repeat) + bench_epoch(args.repeat)
    print(f"{'case':28s} {'ours':>14s} {'s':>9s}   {'peer':>26s} {'s':>9s}  {'peer/ours':>9s}  note")
    for case, name, t, peer, tp, ratio, note in rows:
        print(f"{case:28s} {name:>14s} {t:9.4f}   {peer:>26s} {tp:9.4f}  {ratio:9.1f}  {note}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads by default, "
          f"numpy {np.__version__}; medians of {args.repeat} runs")


if __name__ == "__main__":
    main()
