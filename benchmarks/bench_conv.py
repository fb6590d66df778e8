"""CNN-GP + CNTK of Conv(3×3) → ReLU → Conv(3×3) → ReLU → {GlobalAvgPool | Flatten} → Dense on 8×8 digits.

    .venv/bin/python benchmarks/bench_conv.py [--n 256] [--repeats 3] [--device cuda]

The peer, measured in this run: neural-tangents cannot run here (it fails to import on current JAX, issue 3),
so the peer is a straightforward torch implementation written below — the textbook recursion (Novak et al.
2019; Arora et al. 2019) on whole tensors, each 3×3 filter average a sum of 9 shifted slices of a zero-padded
copy, one temporary per op. For GlobalAvgPool it needs all pairs of positions: (rows, N, 8, 8, 8, 8) tensors,
done 64 rows at a time to stay within memory; for Flatten only the diagonal of positions, (N, N, 8, 8).
Both are checked against kernelscope (largest relative difference printed), then timed (median of repeats).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from kernelscope import data, nets

W, B = 1.4, 0.1


def network(readout: str):
    head = nets.GlobalAvgPool() if readout == "gap" else nets.Flatten()
    return nets.serial(nets.Conv(256, 3, padding="same", w_std=W, b_std=B), nets.ReLU(),
                       nets.Conv(256, 3, padding="same", w_std=W, b_std=B), nets.ReLU(), head, nets.Dense(1, W, B))


def _box(K: torch.Tensor, ns: int) -> torch.Tensor:
    """3×3 'same' filter average: pairs (ns = 4 trailing axes h, w, h', w') or diagonal (ns = 2, h, w)."""
    Kp = F.pad(K, (1, 1) * ns)
    H = K.shape[-1]
    out = torch.zeros_like(K)
    for dh in range(3):
        for dw in range(3):
            if ns == 4:
                out += Kp[..., dh:dh + H, dw:dw + H, dh:dh + H, dw:dw + H]
            else:
                out += Kp[..., dh:dh + H, dw:dw + H]
    return out / 9


def _relu(K, va, vb):
    norm = torch.sqrt(va * vb)
    cos = torch.clamp(K / norm, -1.0, 1.0)
    th = torch.acos(cos)
    return norm / (2 * math.pi) * (torch.sin(th) + (math.pi - th) * cos), (math.pi - th) / (2 * math.pi)


def naive(X: torch.Tensor, readout: str, rows: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """X (N, 1, 8, 8) -> (NNGP, NTK) (N, N), the recursion on whole tensors (64 rows at a time for pooling)."""
    N, C, H, _ = X.shape
    A = X.reshape(N, C, H, H)
    pairs = readout == "gap"
    ns = 4 if pairs else 2
    if pairs:
        self0 = torch.einsum("ichw,icxy->ihwxy", A, A) / C
    else:
        self0 = torch.einsum("ichw,ichw->ihw", A, A) / C

    def var_of(S):  # the variances at positions, from a per-point self kernel
        return torch.diagonal(torch.diagonal(S, 0, 1, 3), 0, 1, 2) if pairs else S

    def self_recursion():  # the self kernels after each conv, for the activations' variances
        S1 = W**2 * _box(self0, ns) + B**2
        v = var_of(S1)
        vv = (v[:, :, :, None, None], v[:, None, None, :, :]) if pairs else (v, v)
        E, _ = _relu(S1, *vv)
        S2 = W**2 * _box(E, ns) + B**2
        return var_of(S1), var_of(S2)

    v1, v2 = self_recursion()
    nngp = torch.empty(N, N, dtype=X.dtype)
    ntk = torch.empty(N, N, dtype=X.dtype)
    for r0 in range(0, N, rows if pairs else N):
        r1 = min(N, r0 + (rows if pairs else N))
        if pairs:
            K0 = torch.einsum("ichw,jcxy->ijhwxy", A[r0:r1], A) / C
            views = lambda v, r0=r0, r1=r1: (v[r0:r1, None, :, :, None, None], v[None, :, None, None, :, :])
        else:
            K0 = torch.einsum("ichw,jchw->ijhw", A[r0:r1], A) / C
            views = lambda v, r0=r0, r1=r1: (v[r0:r1, None], v[None])
        S1 = W**2 * _box(K0, ns) + B**2
        T1 = S1
        E, Ed = _relu(S1, *views(v1))
        S2 = W**2 * _box(E, ns) + B**2
        T2 = S2 + W**2 * _box(Ed * T1, ns)
        E, Ed = _relu(S2, *views(v2))
        T = Ed * T2
        if pairs:
            m, mt = E.mean(dim=(2, 3, 4, 5)), T.mean(dim=(2, 3, 4, 5))
        else:
            m, mt = E.mean(dim=(2, 3)), T.mean(dim=(2, 3))
        nngp[r0:r1] = W**2 * m + B**2
        ntk[r0:r1] = nngp[r0:r1] + W**2 * mt
    return nngp, ntk


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    Xf, _ = data.digits(args.n, seed=0)
    X = torch.as_tensor(Xf, dtype=torch.float64, device=args.device).reshape(-1, 1, 8, 8)
    print(f"N = {args.n} digits (1×8×8), float64, {args.device}, torch threads {torch.get_num_threads()}; "
          "peer: naive torch recursion written in this script (neural-tangents does not run here)")
    print(f"{'readout':<14}{'kernelscope s':>15}{'naive peer s':>15}{'ratio':>9}{'max rel diff':>15}")
    for readout in ("gap", "flatten"):
        net = network(readout)
        ours = net.kernel(X)
        ref = naive(X.cpu(), readout)
        diff = max(float(((o.cpu() - r).abs() / r.abs().max()).max()) for o, r in
                   ((ours.nngp, ref[0]), (ours.ntk, ref[1])))
        t_ours = timed(lambda net=net: net.kernel(X), args.repeats)
        t_peer = timed(lambda readout=readout: naive(X.cpu(), readout), args.repeats)
        name = "GlobalAvgPool" if readout == "gap" else "Flatten"
        print(f"{name:<14}{t_ours:>15.3f}{t_peer:>15.3f}{t_ours / t_peer:>9.2f}{diff:>15.1e}")


if __name__ == "__main__":
    main()
