"""Monte Carlo NNGP/NTK from finite random networks: the estimates the infinite-width kernels are the limits of.

For ``S`` independent draws of a network with ``k`` outputs ``f_o`` (a :mod:`kernelscope.nets` network made finite
at some width, or any torch model a factory draws):

- NNGP estimate ``K̂_s(x, x') = (1/k) Σ_o f_o(x) f_o(x')`` (the prior has mean zero, so this is the output
  covariance over draws), averaged over s;
- NTK estimate ``Θ̂_s(x, x') = (1/k) Σ_o ∇_w f_o(x) · ∇_w f_o(x')`` (the empirical NTK,
  :func:`kernelscope.empirical.ntk`), averaged over s;

with standard errors ``std_s(·)/√S``. As ``n → ∞`` the empirical NTK of one draw converges to the analytic NTK
(error ∝ n^{-1/2}). A factory makes the same estimates for networks without a closed-form kernel (max pooling,
batch normalisation in eval mode, any activation).

Memory: the estimates and their running sums take ``4·N1·N2`` numbers per kernel; they are refused up front when
they do not fit the budget, the forward passes run in chunks of rows that fit it, and the NTK of each draw is
:func:`kernelscope.empirical.ntk`'s, which sizes its own chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import _arrays
from .._arrays import ArrayKind, ValidationError, as_generator, as_tensor, check_int, check_memory
from .._model import check_fixed_function, forward_profile, model_device, model_dtype
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


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` (N, k) in float64, in chunks of rows whose forward pass fits a quarter of the budget."""
    per_example = max(forward_profile(model, x).total, 1.0)
    rows = max(1, int(_arrays.memory_budget_bytes() / 4 / per_example))
    with torch.no_grad():
        return torch.cat([model(x[i:i + rows]).reshape(min(rows, x.shape[0] - i), -1).double()
                          for i in range(0, x.shape[0], rows)])


def monte_carlo(net: Any, x1: Any, x2: Any = None, width: int | None = None, n_samples: int = 100,
                seed: int | torch.Generator = 0, *, ntk: bool = True) -> MonteCarloKernel:
    """NNGP and NTK estimates (with standard errors) from ``n_samples`` random finite networks.

    Parameters
    ----------
    net : a :mod:`kernelscope.nets` network (``serial(...)``, made finite at ``width``), or a factory
        ``factory(seed: int) -> torch.nn.Module`` drawing a network (any torch model in eval mode: max pooling,
        batch normalisation...); each draw gets its own seed from ``seed``.
    x1 : array of shape (N1, d) or (N1, C, *S).   x2 : array of shape (N2, ...) or None (= x1).
    width : hidden width of the finite networks (None: the widths in the description); nets networks only.
    n_samples : number of independent draws S >= 2.
    seed : int or torch.Generator (draw s uses the generator's next numbers; no global state).
    ntk : also estimate the NTK (the empirical NTK of each draw, :func:`kernelscope.empirical.ntk`).

    Returns
    -------
    MonteCarloKernel with ``nngp``, ``ntk``, ``nngp_se``, ``ntk_se`` of shape (N1, N2) (NumPy in -> NumPy out),
    float64; ``ntk``/``ntk_se`` are None when ``ntk=False``.
    """
    factory = not isinstance(net, Layer)
    if factory and not callable(net):
        raise ValidationError("net", "a kernelscope.nets network (e.g. nets.serial(...)) or a factory "
                              "seed -> torch.nn.Module", type(net).__name__)
    if factory and width is not None:
        raise ValidationError("width", "None with a factory (the factory chooses the widths)", repr(width))
    kind = ArrayKind.of(x1, x2)
    X1 = as_tensor(x1, "x1", ndim=(2, 3, 4), device=kind.device if kind.is_torch else None)
    X2 = None if x2 is None else as_tensor(x2, "x2", ndim=X1.ndim, device=X1.device)
    if X2 is not None and X2.shape[1:] != X1.shape[1:]:
        raise ValidationError("x2", f"inputs of shape {tuple(X1.shape[1:])} (as x1)", f"shape {tuple(X2.shape)}")
    S = check_int(n_samples, "n_samples", minimum=2)
    n1, n2 = X1.shape[0], X1.shape[0] if X2 is None else X2.shape[0]
    kernels = 2 if ntk else 1
    check_memory(4 * kernels * n1 * n2 * 8, f"nets.monte_carlo's estimates and running sums ({4 * kernels}×N1×N2)",
                 "Estimate the kernel in blocks of rows of x1 (x2 fixed), or pass ntk=False.")
    gen = as_generator(seed)
    sums = {"nngp": 0.0, "ntk": 0.0}
    sq = {"nngp": 0.0, "ntk": 0.0}
    for _ in range(S):
        model = _draw(net, gen, width, X1, factory)
        x1s = X1.to(model_device(model), model_dtype(model))
        x2s = None if X2 is None else X2.to(model_device(model), model_dtype(model))
        f1 = _outputs(model, x1s)  # (N1, k)
        f2 = f1 if x2s is None else _outputs(model, x2s)  # (N2, k)
        est = {"nngp": (f1 @ f2.T).div_(f1.shape[1]).to(X1.device)}
        del f1, f2
        if ntk:
            est["ntk"] = empirical_ntk(model, x1s, x2s).double().to(X1.device)
        for key, v in est.items():
            sums[key] = v.clone() if isinstance(sums[key], float) else sums[key].add_(v)
            sq[key] = v.mul_(v) if isinstance(sq[key], float) else sq[key].add_(v.mul_(v))
        del est
    out = {}
    for key in ("nngp", "ntk") if ntk else ("nngp",):
        mean = sums[key].div_(S)
        var = sq[key].sub_(mean * mean, alpha=S).div_(S - 1).clamp_min_(0.0)  # (Σ v² − S·mean²)/(S − 1)
        out[key], out[key + "_se"] = kind.wrap(mean), kind.wrap(var.div_(S).sqrt_())
    return MonteCarloKernel(out["nngp"], out.get("ntk"), out["nngp_se"], out.get("ntk_se"), width, S)


def _draw(net: Any, gen: torch.Generator, width: int | None, X1: torch.Tensor, factory: bool) -> torch.nn.Module:
    """One random network: ``net.finite`` at ``width`` from the generator, or the factory's at a seed drawn from it."""
    if not factory:
        in_dim = X1.shape[1] if X1.ndim == 2 else tuple(X1.shape[1:])
        return net.finite(seed=gen, width=width).materialize(in_dim).to(X1.device)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    model = net(seed)
    if not isinstance(model, torch.nn.Module):
        raise ValidationError("net", "a factory returning a torch.nn.Module", f"{type(model).__name__}")
    check_fixed_function(model)
    return model

