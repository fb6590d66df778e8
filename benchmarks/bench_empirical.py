"""Empirical NTK against neural-tangents' structured derivatives, on the same weights: time, ratio and peak memory.

Rows (float64, k(X, X), the kernel of every pair of outputs unless ``--trace``):

- ``mlp``: MLP 64 -> 512 -> 512 -> 512 -> 1 (ReLU, torch's nn.Linear), N = 256 and 1024 (``--mlp-sizes``);
- ``digits``: the CNN of issue 22 on 8×8 digits, ``nets.serial(Conv(W, 3, 'same'), ReLU, Conv(W, 3, 'same'), ReLU,
  Flatten, Dense(10))`` made finite at width W = 256 (``--digits-width``), N = 64, traced over the 10 outputs as
  the issue's call ``empirical.ntk(cnn.finite(width=256), X[:64], trace=True)``;
- ``myrtle``: Myrtle-5 on 3×32×32 inputs, ``Conv(W)-ReLU ×2, AvgPool 2, Conv(W)-ReLU, AvgPool 2, Conv(W)-ReLU,
  AvgPool 8, Flatten, Dense(10)`` (all 3×3 'same'), W = 64 (``--myrtle-width``), N = 256, traced.

Ours: ``kernelscope.empirical.ntk(model, X, method='auto')`` (``--method``). The peer: neural-tangents 0.6.5
``jit(empirical_ntk_fn(f, trace_axes=(-1,) or (), vmap_axes=0, implementation=3))`` where ``f`` is the same network
written in JAX (``lax.conv_general_dilated`` in NCHW/OIHW, explicit paddings, the NTK scales as multipliers) on the
weights exported from our torch model into the .npz the peer script loads; the traces of the two kernels are
compared (neural-tangents' ``trace_axes`` averages over the outputs where ours sums: multiplied by O). Each side
runs in its own process (peak memory: the growth of the resident set's high-water mark over
the resident set after the model and data are made; the peer's includes XLA's compilation), the sides alternate
for ``--rounds`` rounds, and each process times ``--repeats`` calls after a warm-up call (median).

    .venv/bin/python benchmarks/bench_empirical.py                         # every row (long: the peer is slow on CNNs)
    .venv/bin/python benchmarks/bench_empirical.py --rows mlp --rounds 3
    .venv/bin/python benchmarks/bench_empirical.py --rows digits --digits-width 64
    .venv/bin/python benchmarks/bench_empirical.py --rows mlp --method jacobian   # another method of ours
    .venv/bin/python benchmarks/bench_empirical.py --rows mlp --busy 2            # a busy machine (2 spinners)

Without the peer (``KERNELSCOPE_PEER_PYTHON`` unset and no ``.venv-nt``) it says so and prints our side.
``--device cuda`` times our side on a GPU (the peer stays on the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import resource
import statistics
import time

import numpy as np
from peer import PeakCUDA, busy, peer_python, run_peer

PEER = '''
import re, resource
import jax.numpy as jnp
from jax import lax
import neural_tangents as nt

def rss():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\\s+(\\d+)", f.read()).group(1)) * 1024

spec = json.loads(str(inputs["spec"]))
params = [{k: jnp.asarray(inputs[f"{k}{i}"]) for k in ("W", "b") if f"{k}{i}" in inputs} for i in range(len(spec))]
x = jnp.asarray(inputs["x"])

def f(params, h):
    for layer, p in zip(spec, params):
        kind = layer["kind"]
        if kind == "conv":
            h = lax.conv_general_dilated(h, p["W"], layer["stride"], [tuple(v) for v in layer["pads"]],
                                         dimension_numbers=("NCHW", "OIHW", "NCHW")) * layer["ws"]
            if "b" in p:
                h = h + layer["bs"] * p["b"][None, :, None, None]
        elif kind == "dense":
            h = layer["ws"] * (h @ p["W"].T) + (layer["bs"] * p["b"] if "b" in p else 0.0)
        elif kind == "relu":
            h = jnp.maximum(h, 0.0)
        elif kind == "flatten":
            h = h.reshape(h.shape[0], -1)
        elif kind == "avgpool":
            k, s = layer["kernel"], layer["stride"]
            h = lax.reduce_window(h, 0.0, lax.add, (1, 1, *k), (1, 1, *s), "VALID") / (k[0] * k[1])
    return h

trace_axes = (-1,) if bool(inputs["trace"]) else ()
fn = jax.jit(nt.empirical_ntk_fn(f, trace_axes=trace_axes, vmap_axes=0, implementation=3))
before = rss()
seconds, K = timed(lambda: fn(x, None, params))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
K = np.asarray(K).reshape(x.shape[0], x.shape[0], -1)
n_out = f(params, x[:1]).shape[-1] if trace_axes else 1  # neural-tangents' trace is the mean over the outputs
result.update(seconds=seconds, peak_mb=(peak - before) / 1e6, trace=float(np.einsum("iik->", K)) * n_out)
'''


# ---------------------------------------------------------------------------------------------------------------
# The models, built the same way in every process
# ---------------------------------------------------------------------------------------------------------------

def build(row: str, width: int, n: int):
    """(model, x as a NumPy array) for a row: the same weights and data in every process (fixed seeds)."""
    import torch
    from torch import nn

    from kernelscope import data, nets

    if row == "mlp":
        torch.manual_seed(0)  # nn.Linear draws from the global generator: the same weights in every process
        model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512),
                              nn.ReLU(), nn.Linear(512, 1)).double()
        return model, np.random.default_rng(0).standard_normal((n, 64))
    conv = lambda: [nets.Conv(width, 3, padding="same", w_std=1.4, b_std=0.1), nets.ReLU()]  # noqa: E731
    if row == "digits":
        X, _ = data.digits(n, seed=0)
        net = nets.serial(*conv(), *conv(), nets.Flatten(), nets.Dense(10, w_std=1.4, b_std=0.1))
        return net.finite(seed=0, in_dim=(1, 8, 8)), X.reshape(n, 1, 8, 8)
    net = nets.serial(*conv(), *conv(), nets.AvgPool(2), *conv(), nets.AvgPool(2), *conv(), nets.AvgPool(8),
                      nets.Flatten(), nets.Dense(10, w_std=1.4, b_std=0.1))  # Myrtle-5
    return net.finite(seed=0, in_dim=(3, 32, 32)), np.random.default_rng(0).standard_normal((n, 3, 32, 32))


def export(model) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The layers of our model as a JSON spec and its weights as arrays, for the peer's JAX function."""
    from torch import nn

    from kernelscope.nets import finite, finite_conv

    body = model.body if hasattr(model, "body") else model
    spec, arrays = [], {}
    for i, m in enumerate(body):
        if isinstance(m, finite_conv.NTKConv2d):
            spec.append({"kind": "conv", "stride": list(m.stride), "pads": [list(p) for p in m.pads],
                         "ws": m.w_scale, "bs": m.b_scale})
            arrays[f"W{i}"], arrays[f"b{i}"] = m.weight.detach().numpy(), m.bias.detach().numpy()
        elif isinstance(m, (finite.DenseModule, nn.Linear)):
            lin = m.linear if isinstance(m, finite.DenseModule) else m
            out, inn = (m.out_scale, m.in_scale) if isinstance(m, finite.DenseModule) else (1.0, 1.0)
            spec.append({"kind": "dense", "ws": out * inn, "bs": out})  # out·(in·x Wᵀ + b)
            arrays[f"W{i}"] = lin.weight.detach().numpy()
            if lin.bias is not None:
                arrays[f"b{i}"] = lin.bias.detach().numpy()
        elif isinstance(m, nn.ReLU) or (isinstance(m, finite.ActivationModule) and m.name == "ReLU()"):
            spec.append({"kind": "relu"})
        elif isinstance(m, nn.Flatten):
            spec.append({"kind": "flatten"})
        elif isinstance(m, finite_conv.PoolModule):
            spec.append({"kind": "avgpool", "kernel": list(m.kernel_size), "stride": list(m.stride)})
        else:
            raise TypeError(f"no JAX counterpart for {m!r}")
    return spec, arrays


# ---------------------------------------------------------------------------------------------------------------
# Our side, in its own process
# ---------------------------------------------------------------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _ours(row: str, width: int, n: int, trace: bool, method: str, repeats: int, device: str, q) -> None:
    import torch

    from kernelscope import empirical

    model, x = build(row, width, n)
    model, x = model.to(device), torch.as_tensor(x, device=device)
    empirical.ntk(model, x[:4], method=method, trace=trace)  # warm-up: libraries, kernels, lazy modules
    cuda = x.device.type == "cuda"
    fp = empirical.footprint(model, x, method=method, trace=trace)
    before, times = _rss(), []
    with PeakCUDA() if cuda else contextlib.nullcontext() as m:
        for _ in range(repeats):
            t0 = time.perf_counter()
            K = empirical.ntk(model, x, method=method, trace=trace)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    peak = m.peak if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    K = K.reshape(n, n, -1)
    q.put({"seconds": statistics.median(times), "peak_mb": (peak - (0 if cuda else before)) / 1e6,
           "estimate_mb": fp.peak_bytes / 1e6, "chunk": fp.chunk_size, "method": fp.method,
           "trace": float(torch.einsum("iik->", K.double()))})


def ours(row, width, n, trace, method, repeats, device) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_ours, args=(row, width, n, trace, method, repeats, device, q))
    p.start()
    out = q.get()
    p.join()
    return out


def peer(row, width, n, trace, repeats) -> dict:
    model, x = build(row, width, n)
    spec, arrays = export(model)
    return run_peer(PEER, {"spec": np.array(json.dumps(spec)), "x": x, "trace": np.array(trace), **arrays},
                    repeats=repeats, timeout=7200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="mlp,digits,myrtle")
    ap.add_argument("--mlp-sizes", default="256,1024")
    ap.add_argument("--digits-width", type=int, default=256)
    ap.add_argument("--digits-n", type=int, default=64)
    ap.add_argument("--myrtle-width", type=int, default=64)
    ap.add_argument("--myrtle-n", type=int, default=256)
    ap.add_argument("--trace", choices=["auto", "yes", "no"], default="auto",
                    help="trace over the outputs (auto: the CNN rows yes, as the issue's call; the MLP has one output)")
    ap.add_argument("--method", default="auto", help="our method: auto, structured, jacobian, ntvp")
    ap.add_argument("--rounds", type=int, default=1, help="alternations of the two sides")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per process (median), after a warm-up")
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes loading the machine meanwhile")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch

    has_peer = peer_python() is not None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64; ours: empirical.ntk(method="
          f"{args.method!r}); peer: neural-tangents implementation=3 "
          + ("" if has_peer else "(NOT FOUND: set KERNELSCOPE_PEER_PYTHON; our side only)")
          + (f"; {args.busy} busy-loop processes" if args.busy else ""))
    cases = []
    for row in args.rows.split(","):
        if row == "mlp":
            cases += [("mlp", 0, int(n)) for n in args.mlp_sizes.split(",")]
        elif row == "digits":
            cases.append(("digits", args.digits_width, args.digits_n))
        elif row == "myrtle":
            cases.append(("myrtle", args.myrtle_width, args.myrtle_n))
    head = (f"{'row':>8} {'W':>4} {'N':>5} {'trace':>5} | {'ours s':>8} {'peer s':>8} {'ours/peer':>9} | "
            f"{'ours MB':>8} {'(est.)':>8} {'peer MB':>8} | traces agree")
    print(head + "\n" + "-" * len(head))
    with busy(args.busy) if args.busy else _nothing():
        for row, width, n in cases:
            trace = row != "mlp" if args.trace == "auto" else args.trace == "yes"
            a, b = [], []
            for _ in range(args.rounds):  # alternate the sides
                a.append(ours(row, width, n, trace, args.method, args.repeats, args.device))
                if has_peer:
                    b.append(peer(row, width, n, trace, args.repeats if row == "mlp" else 1))
            s = statistics.median(r["seconds"] for r in a)
            line = f"{row:>8} {width or '':>4} {n:>5} {str(trace):>5} | {s:8.3f} "
            mem = f"{max(r['peak_mb'] for r in a):8.0f} {a[0]['estimate_mb']:8.0f} "
            if b:
                sp = statistics.median(r["seconds"] for r in b)
                agree = abs(a[0]["trace"] - b[0]["trace"]) / abs(b[0]["trace"])
                line += f"{sp:8.3f} {s / sp:9.3f} | " + mem + f"{max(r['peak_mb'] for r in b):8.0f} | {agree:.1e}"
            else:
                line += f"{'-':>8} {'-':>9} | " + mem + f"{'-':>8} |"
            print(line, flush=True)


class _nothing:
    def __enter__(self):
        return 0

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
