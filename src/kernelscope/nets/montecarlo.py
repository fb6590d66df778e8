"""Monte Carlo NNGP/NTK from finite random networks: the estimates the infinite-width kernels are the limits of.

For ``S`` independent draws of a width-``n`` network with ``k`` outputs ``f_o``:

- NNGP estimate ``K̂_s(x, x') = (1/k) Σ_o f_o(x) f_o(x')`` (the prior has mean zero, so this is the output
  covariance over draws), averaged over s;
- NTK estimate ``Θ̂_s(x, x') = (1/k) Σ_o ∇_w f_o(x) · ∇_w f_o(x')`` (the empirical NTK,
  :func:`kernelscope.empirical.ntk`), averaged over s;

with standard errors ``std_s(·)/√S``. As ``n → ∞`` the empirical NTK of one draw converges to the analytic NTK
(error ∝ n^{-1/2}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .._arrays import ArrayKind, ValidationError, as_generator, as_tensor, check_int
from .engine import Layer

__all__ = ["MonteCarloKernel", "monte_carlo", "empirical_ntk"]


@dataclass
class MonteCarloKernel:
    """Monte Carlo estimates of shape (N1, N2) with their standard errors (same shape)."""

    nngp: Any
    ntk: Any
    nngp_se: Any
    ntk_se: Any
    width: int | None
    n_samples: int


def empirical_ntk(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """Empirical NTK averaged over the outputs, ``(1/k) Σ_o ∇_w f_o(x1) · ∇_w f_o(x2)``, shape (N1, N2).

    :func:`kernelscope.empirical.ntk` with ``trace=True`` divided by the number of outputs ``k`` (tensors in/out).
    """
    from .. import empirical

    K = empirical.ntk(model, x1, x2, trace=True)  # (N1, N2) Σ_o Θ[o, o]; builds a lazy network first
    with torch.no_grad():
        k_out = model(x1[:1]).reshape(1, -1).shape[1]
    return K / k_out


def monte_carlo(net: Any, x1: Any, x2: Any = None, width: int | None = None, n_samples: int = 100,
                seed: int | torch.Generator = 0, *, ntk: bool = True) -> MonteCarloKernel:
    """NNGP and NTK estimates (with standard errors) from ``n_samples`` random finite networks.

    Parameters
    ----------
    net : a :mod:`kernelscope.nets` network (``serial(...)``).
    x1 : array of shape (N1, d).   x2 : array of shape (N2, d) or None (= x1).
    width : hidden width of the finite networks (None: the widths in the description).
    n_samples : number of independent draws S >= 2.
    seed : int or torch.Generator (draw s uses the generator's next numbers; no global state).
    ntk : also estimate the NTK (costs per-example Jacobians, ``(N1+N2)·k·P`` floats per draw).

    Returns
    -------
    MonteCarloKernel with ``nngp``, ``ntk``, ``nngp_se``, ``ntk_se`` of shape (N1, N2) (NumPy in -> NumPy out);
    ``ntk``/``ntk_se`` are None when ``ntk=False``.
    """
    if not isinstance(net, Layer):
        raise ValidationError("net", "a kernelscope.nets network (e.g. nets.serial(...))", type(net).__name__)
    kind = ArrayKind.of(x1, x2)
    X1 = as_tensor(x1, "x1", ndim=(2, 3, 4), device=kind.device if kind.is_torch else None)
    X2 = None if x2 is None else as_tensor(x2, "x2", ndim=X1.ndim, device=X1.device)
    if X2 is not None and X2.shape[1:] != X1.shape[1:]:
        raise ValidationError("x2", f"inputs of shape {tuple(X1.shape[1:])} (as x1)", f"shape {tuple(X2.shape)}")
    S = check_int(n_samples, "n_samples", minimum=2)
    gen = as_generator(seed)
    sums = {"nngp": 0.0, "ntk": 0.0}
    sq = {"nngp": 0.0, "ntk": 0.0}
    for _ in range(S):
        in_dim = X1.shape[1] if X1.ndim == 2 else tuple(X1.shape[1:])
        model = net.finite(seed=gen, width=width).materialize(in_dim).to(X1.device)
        with torch.no_grad():
            f1 = model(X1)  # (N1, k)
            f2 = f1 if X2 is None else model(X2)  # (N2, k)
        est = {"nngp": f1 @ f2.T / f1.shape[1]}
        if ntk:
            est["ntk"] = empirical_ntk(model, X1, X2)
        for key, v in est.items():
            sums[key] = sums[key] + v
            sq[key] = sq[key] + v * v
    out = {}
    for key in ("nngp", "ntk") if ntk else ("nngp",):
        mean = sums[key] / S
        var = ((sq[key] - S * mean * mean) / (S - 1)).clamp_min(0.0)
        out[key], out[key + "_se"] = kind.wrap(mean), kind.wrap((var / S).sqrt())
    return MonteCarloKernel(out["nngp"], out.get("ntk"), out["nngp_se"], out.get("ntk_se"), width, S)
