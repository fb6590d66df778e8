"""Empirical NTK of an MLP (3 hidden layers of width 512, ReLU, scalar output, d = 64): time and peak memory of
each ``kernelscope.empirical.ntk`` method and of the textbook torch ``vmap(jacrev)`` contraction, measured in the
same run, plus the neural-tangents numbers recorded in issue 4 (measured on this machine earlier; JAX is not
installed here).

    .venv/bin/python benchmarks/bench_empirical.py                 # N = 256, 512, 1024
    .venv/bin/python benchmarks/bench_empirical.py --sizes 256 --methods structured,jacobian

``--cnn``: a small CNN on 8×8 one-channel (digits-size) images instead, Conv2d(1, 32, 3, padding=1) - ReLU -
Conv2d(32, 32, 3, padding=1) - ReLU - Flatten - [Linear(2048, H) - ReLU, with ``--hidden H``] - Linear(., O), with
``--outputs O``; 'structured' forms the per-example conv gradients, 'jacobian' the whole Jacobian (every method
best of ``--repeats`` here: none is slow)::

    .venv/bin/python benchmarks/bench_empirical.py --cnn           # N = 256, 512; structured vs jacobian
    .venv/bin/python benchmarks/bench_empirical.py --cnn --hidden 128      # a dense layer: P = 272k
    .venv/bin/python benchmarks/bench_empirical.py --cnn --outputs 10 --sizes 256

Every (method, N) runs in a fresh subprocess so that its peak resident memory (``ru_maxrss`` minus the memory
after the model and data were made) is its own. Timings: after a warm-up call on 16 examples, best of
``--repeats`` for 'structured' and one timed call for the slow methods.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

# neural-tangents on this machine (issue 4): structured derivatives and Jacobian contraction, N = 1024
NT_RECORDED = {"nt structured (recorded)": {1024: 0.23}, "nt jacobian (recorded)": {1024: 18.8},
               "hand-written per-layer (recorded)": {1024: 0.12}}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def _model_and_data(n: int, dt, cnn: dict | None):
    """The benchmarked model and N inputs: the MLP, or with ``cnn`` = {outputs, hidden} the CNN."""
    import torch
    from torch import nn

    torch.manual_seed(0)  # the same weights in every subprocess (nn.Linear/Conv2d draw from the global generator)
    g = torch.Generator().manual_seed(0)
    if cnn is None:
        model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512),
                              nn.ReLU(), nn.Linear(512, 1)).to(dt)
        return model, torch.randn(n, 64, generator=g, dtype=dt)
    head = ([nn.Linear(32 * 64, cnn["hidden"]), nn.ReLU(), nn.Linear(cnn["hidden"], cnn["outputs"])] if cnn["hidden"]
            else [nn.Linear(32 * 64, cnn["outputs"])])
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), *head).to(dt)
    return model, torch.randn(n, 1, 8, 8, generator=g, dtype=dt)


def _worker(method: str, n: int, dtype: str, repeats: int, cnn: dict | None, q, device: str = "cpu") -> None:
    import torch
    from torch.func import functional_call, jacrev, vmap

    from kernelscope import empirical

    torch.set_num_threads(torch.get_num_threads())
    dt = getattr(torch, dtype)
    model, x = _model_and_data(n, dt, cnn)
    model, x = model.to(device), x.to(device)
    cuda = x.device.type == "cuda"
    n_out = 1 if cnn is None else cnn["outputs"]

    if method == "torch vmap(jacrev)":
        params = {k: v.detach() for k, v in model.named_parameters()}

        def f_single(p, xi):
            return functional_call(model, p, (xi.unsqueeze(0),)).reshape(n_out)

        def run(x):
            jac = vmap(jacrev(f_single), (None, 0))(params, x)  # dict: (N, O, *shape) per parameter
            jac = [j.flatten(2) for j in jac.values()]  # (N, O, P_l)
            return torch.stack([torch.einsum("Naf,Mbf->NMab", j, j) for j in jac]).sum(0)  # (N, N, O, O)
    else:
        def run(x):
            return empirical.ntk(model, x, method=method, chunk_size=len(x) if method == "structured" else 256)

    base = _rss_mb()
    run(x[:16])  # warm-up on a few examples (first-call overheads), then time the full size
    if cuda:  # peak memory on the GPU: torch's allocator peak above what the model and data hold
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats if method == "structured" or cnn is not None or cuda else 1):
        t0 = time.perf_counter()
        K = run(x)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    K = K.reshape(n, n, -1)  # (N, N) or (N, N, O·O)
    q.put({"seconds": min(times), "peak_mb": peak - base, "trace": float(torch.diagonal(K.double()).sum())})


def measure(method: str, n: int, dtype: str, repeats: int, cnn: dict | None = None, device: str = "cpu") -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(method, n, dtype, repeats, cnn, q, device))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="default 256,512,1024 (MLP), 256,512 (CNN)")
    ap.add_argument("--methods", default=None,
                    help="default 'structured,jacobian,torch vmap(jacrev),ntvp' (MLP), 'structured,jacobian' (CNN)")
    ap.add_argument("--cnn", action="store_true", help="the two-conv-layer CNN on 8x8 images instead of the MLP")
    ap.add_argument("--outputs", type=int, default=1, help="CNN: number of outputs O")
    ap.add_argument("--hidden", type=int, default=0, help="CNN: width of a dense hidden layer after Flatten (0: none)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ntvp-max", type=int, default=256, help="largest N for 'ntvp' (one VJP+JVP per example)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: torch's CUDA allocator peak)")
    args = ap.parse_args()
    cnn = {"outputs": args.outputs, "hidden": args.hidden} if args.cnn else None
    sizes = [int(s) for s in (args.sizes or ("256,512" if cnn else "256,512,1024")).split(",")]
    methods = [m.strip() for m in (args.methods or ("structured,jacobian" if cnn
                                                     else "structured,jacobian,torch vmap(jacrev),ntvp")).split(",")]
    import torch

    if cnn:
        hidden = f"Linear(2048, {args.hidden}) - ReLU - Linear({args.hidden}, {args.outputs})" if args.hidden \
            else f"Linear(2048, {args.outputs})"
        model, _ = _model_and_data(1, torch.float32, cnn)
        arch = (f"CNN on 1x8x8: Conv2d(1, 32, 3, p=1) - ReLU - Conv2d(32, 32, 3, p=1) - ReLU - Flatten - {hidden} "
                f"(P = {sum(p.numel() for p in model.parameters())})")
    else:
        arch = "MLP 64 -> 512 -> 512 -> 512 -> 1 (ReLU)"
    timing = f"best of {args.repeats}" if cnn else f"structured: best of {args.repeats}, others: one call"
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"{arch}, {args.dtype}, torch {torch.__version__}, {where}; {timing} (after warm-up)")
    results: dict[str, dict[int, dict]] = {m: {} for m in methods}
    for n in sizes:
        for m in methods:
            if m == "ntvp" and n > args.ntvp_max:
                continue
            results[m][n] = measure(m, n, args.dtype, args.repeats, cnn, args.device)
            r = results[m][n]
            print(f"  N={n:5d} {m:20s} {r['seconds']:9.3f} s   peak +{r['peak_mb']:8.1f} MB", flush=True)
    # agreement between methods (trace of the kernel)
    for n in sizes:
        tr = {m: results[m][n]["trace"] for m in methods if n in results[m]}
        ref = tr.get("structured")
        if ref:
            worst = max(abs(v - ref) / abs(ref) for v in tr.values())
            print(f"  N={n}: traces agree to {worst:.1e} relative")
    print()
    head = (f"{'N':>6} | " + " | ".join(f"{m:>20s}" for m in methods)
            + " | jacobian/structured | vmap(jacrev)/structured")
    print(head)
    print("-" * len(head))
    for n in sizes:
        cells = [f"{results[m][n]['seconds']:17.3f} s" if n in results[m] else f"{'-':>20s}" for m in methods]
        s = results.get("structured", {}).get(n, {}).get("seconds")
        j = results.get("jacobian", {}).get(n, {}).get("seconds")
        v = results.get("torch vmap(jacrev)", {}).get(n, {}).get("seconds")
        r1 = f"{j / s:19.1f}x" if s and j else f"{'-':>20s}"
        r2 = f"{v / s:23.1f}x" if s and v else f"{'-':>24s}"
        print(f"{n:>6} | " + " | ".join(cells) + f" | {r1} | {r2}")
    print("\npeak memory above the baseline (MB):")
    for n in sizes:
        print(f"  N={n:5d} " + ", ".join(f"{m}: {results[m][n]['peak_mb']:.0f}" for m in methods if n in results[m]))
    if not cnn:
        print("\nrecorded peers (issue 4, same machine class, N = 1024):")
        s = results.get("structured", {}).get(1024, {}).get("seconds")
        for name, vals in NT_RECORDED.items():
            ratio = f"  -> ratio peer / kernelscope structured = {vals[1024] / s:.2f}" if s else ""
            print(f"  {name:36s} {vals[1024]:7.2f} s{ratio}")
    print(json.dumps({m: {str(n): r for n, r in v.items()} for m, v in results.items()}))


if __name__ == "__main__":
    main()
