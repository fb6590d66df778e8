"""'jacobian' and 'ntvp': the empirical NTK of any model through ``torch.func``, chunk by chunk.

``'jacobian'``: the per-example Jacobians of a chunk (``vmap(jacrev)``), contracted by one GEMM per pair of chunks;
those of x2 are kept when they fit (:mod:`kernelscope.empirical.memory`), else recomputed per block of rows.
``'ntvp'``: NTK-vector products ``Θ e = J₁ (J₂ᵀ e)`` for the basis vectors e of a chunk of x2's outputs: a VJP on
the chunk of x2 (vmapped over the c·O basis vectors), then JVPs on each chunk of x1 — no Jacobian of x1 is formed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from .._model import trainable_parameters
from .features import contract
from .structured import fill_blocks

__all__ = ["jacobian", "ntk_jacobian", "ntk_ntvp"]


def jacobian(model: nn.Module, x: torch.Tensor, n_out: int, params: dict[str, torch.Tensor] | None = None
             ) -> torch.Tensor:
    """Per-example Jacobians ``∂f(x_n)/∂w`` of a batch: (n, O, P), parameters flattened in ``named_parameters``
    order. ``vmap(jacrev(f))`` over the examples (each example is a batch of one inside the model)."""
    params = trainable_parameters(model) if params is None else params

    def f_single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(n_out)

    J = vmap(jacrev(f_single), in_dims=(None, 0))(params, x)  # dict name -> (n, O, *shape)
    n = x.shape[0]
    return torch.cat([J[k].reshape(n, n_out, -1) for k in params], dim=2)  # (n, O, P)


def _kernel(x1: torch.Tensor, n1: int, n2: int, n_out: int, trace: bool, params: dict) -> torch.Tensor:
    return x1.new_empty((n1, n2) if trace else (n1, n2, n_out, n_out), dtype=next(iter(params.values())).dtype)


def ntk_jacobian(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, n_out: int, trace: bool, chunk: int,
                 keep: bool, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Θ (N1, N2) with ``trace`` (pass it for O = 1), else (N1, N2, O, O), from Jacobians of ``chunk`` examples."""
    xs2 = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], xs2.shape[0]
    cache: dict[int, torch.Tensor] = {}

    def J2(j):
        if j in cache:
            return cache[j]
        J = jacobian(model, xs2[j:j + chunk], n_out, params)
        if keep:
            cache[j] = J
        return J

    def block(i0, i1, j0, out):
        J1 = J2(i0) if x2 is None else jacobian(model, x1[i0:i1], n_out, params)
        for j in range(j0, n2, chunk):
            part = contract(J1, J1 if x2 is None and j == i0 else J2(j), trace)
            out[:, j - j0:j - j0 + part.shape[1]] = part

    return fill_blocks(_kernel(x1, n1, n2, n_out, trace, params), x2 is None, chunk, block)


def ntk_ntvp(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, n_out: int, trace: bool, chunk: int,
             params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Columns of Θ as NTK-vector products: for the basis vector e_(j,q) of x2's outputs, ``J₁ (J₂ᵀ e)``, in
    blocks of ``chunk`` examples of x2 and of x1."""

    def f(p, x):
        return functional_call(model, p, (x,)).reshape(x.shape[0], n_out)

    xs2 = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], xs2.shape[0]
    K = _kernel(x1, n1, n2, n_out, trace, params)
    for j in range(0, n2, chunk):
        xb = xs2[j:j + chunk]
        nb = xb.shape[0]
        _, vjp_fn = vjp(lambda p, xb=xb: f(p, xb), params)
        basis = torch.eye(nb * n_out, dtype=K.dtype, device=K.device).reshape(nb * n_out, nb, n_out)
        (tangents,) = vmap(vjp_fn)(basis)  # dict name -> (nb·O, *shape): J₂ᵀ e for each basis vector
        for i in range(0, n1, chunk):
            xa = x1[i:i + chunk]

            def jvp_x1(t, xa=xa):
                return jvp(lambda p: f(p, xa), (params,), (t,))[1]  # (na, O)

            col = vmap(jvp_x1)(tangents)  # (nb·O, na, O)
            col = col.reshape(nb, n_out, xa.shape[0], n_out).permute(2, 0, 3, 1)  # (na, nb, O, O')
            K[i:i + chunk, j:j + nb] = torch.diagonal(col, dim1=2, dim2=3).sum(-1) if trace else col
    return K
