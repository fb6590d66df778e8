"""The empirical NTK of any torch model: :func:`ntk`, what it will run and hold (:func:`footprint`), and which
method runs (:func:`resolve_method`). The methods themselves: :mod:`~kernelscope.empirical.structured`,
:mod:`~kernelscope.empirical.autodiff`; their memory: :mod:`~kernelscope.empirical.memory`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import _arrays
from .._arrays import check_choice, check_int
from .._model import check_fixed_function, check_module, forward_profile, output_dim, trainable_parameters
from .autodiff import ntk_jacobian, ntk_ntvp
from .capture import Plan, StructuredUnsupported, plan
from .inputs import inputs
from .memory import (
    Footprint,
    choose_chunk,
    jacobian_bytes,
    ntvp_bytes,
    refuse_kernel,
    structured_bytes,
)
from .structured import ntk_structured

__all__ = ["ntk", "footprint", "resolve_method", "METHODS"]

METHODS = ("auto", "jacobian", "ntvp", "structured")


def resolve_method(model: nn.Module, method: str) -> str:
    """The method :func:`ntk` runs for ``method``: ``'auto'`` is ``'structured'``, which handles every model whose
    modules compute each example on its own (it falls back to ``'jacobian'`` at run time otherwise)."""
    method = check_choice(method, "method", METHODS)
    check_module(model)
    return "structured" if method == "auto" else method


def _decide(model: nn.Module, t1: torch.Tensor, t2: torch.Tensor | None, n_out: int, method: str, trace: bool,
            chunk: int | None, params: dict[str, torch.Tensor]) -> tuple[Footprint, Plan | None]:
    """The footprint of the call (and the structured plan), or a MemoryBudgetError before any work."""
    n1 = t1.shape[0]
    n2 = n1 if t2 is None else t2.shape[0]
    item = next(iter(params.values())).element_size()
    limit = _arrays.memory_budget_bytes(next(iter(params.values())).device)  # RAM, or the CUDA device's
    trace = trace or n_out == 1
    refuse_kernel(n1, n2, n_out, item, trace, limit)
    prof = forward_profile(model, t1, params)
    P = sum(p.numel() for p in params.values())
    n = max(n1, n2)
    if method == "structured":
        the_plan = plan(model, t1, params)
        # keep the features of x2 when the whole fits with them (even in small chunks: recomputing them for every
        # block of rows costs more), else recompute them per block
        for keep in (True, False):
            bytes_at = structured_bytes(the_plan, prof, n1, n2, n_out, item, trace, n2, keep)
            try:
                c = choose_chunk(bytes_at, n, chunk, limit, "method='structured'",
                                 "Use fewer examples" + (" or outputs." if trace else ", or trace=True."))
            except MemoryError:
                if keep:
                    continue
                raise
            return Footprint("structured", c, bytes_at(c), limit, keep), the_plan
    if method == "jacobian":
        keep = n2 * n_out * P * item <= limit / 4
        bytes_at = jacobian_bytes(prof, P, n1, n2, n_out, item, trace, keep)
        c = choose_chunk(bytes_at, n, chunk, limit, "method='jacobian'",
                         f"Its Jacobians take {n_out * P * item / 1e9:.2g} GB per example: use method='structured'.")
        return Footprint("jacobian", c, bytes_at(c), limit, keep), None
    bytes_at = ntvp_bytes(prof, P, n1, n2, n_out, item, trace)
    c = choose_chunk(bytes_at, n, chunk, limit, "method='ntvp'", "Use method='structured'.")
    return Footprint("ntvp", c, bytes_at(c), limit, False), None


def _prepare(model: nn.Module, x1: Any, x2: Any, method: str, chunk_size: int | None):
    method = resolve_method(model, method)
    chunk = None if chunk_size is None else check_int(chunk_size, "chunk_size", minimum=1)
    check_fixed_function(check_module(model))
    t1, t2, kind = inputs(model, x1, x2)
    n_out = output_dim(model, t1, "x1")
    params = trainable_parameters(model)
    return method, chunk, t1, t2, kind, n_out, params


def footprint(model: nn.Module, x1: Any, x2: Any = None, method: str = "auto", *, trace: bool = False,
              chunk_size: int | None = None) -> Footprint:
    """What :func:`ntk` with these arguments will run and hold: the method, the chunk of examples, the estimated
    peak memory and the budget (:class:`~kernelscope.empirical.memory.Footprint`); a MemoryBudgetError, naming the
    bytes and the way out, for a call that would be refused. Costs a forward pass on two examples."""
    method, chunk, t1, t2, _, n_out, params = _prepare(model, x1, x2, method, chunk_size)
    return _decide(model, t1, t2, n_out, method, trace, chunk, params)[0]


def ntk(model: nn.Module, x1: Any, x2: Any = None, method: str = "auto", *, trace: bool = False,
        chunk_size: int | None = None) -> Any:
    """Empirical neural tangent kernel ``Θ(x, x') = J(x) J(x')ᵀ`` of a torch model at its current weights.

    Parameters
    ----------
    model : torch.nn.Module mapping inputs of shape (N, ...) to outputs of shape (N,) or (N, O). Every trainable
        parameter (``requires_grad=True``) counts. BatchNorm and Dropout layers must be in eval mode (a fixed
        function).
    x1 : array of shape (N1, ...) ; x2 : array of shape (N2, ...) or None (meaning x1).
    method : 'auto', 'jacobian', 'ntvp' or 'structured' (see the module docstring).
    trace : for O outputs, return the trace over outputs ``Σ_o Θ[o, o]`` of shape (N1, N2).
    chunk_size : examples per chunk, which bounds the memory of every method; None (default) takes the largest
        chunk that fits the memory budget (at most 512). A chunk_size that does not fit is refused before any
        work, naming the one that does (:func:`footprint` tells both without computing).

    Returns
    -------
    Θ of shape (N1, N2) for a scalar-output model (or with ``trace=True``), else (N1, N2, O, O); NumPy in ->
    NumPy out, a tensor in -> a tensor out (in the model's dtype, on its device).
    """
    asked = method
    method, chunk, t1, t2, kind, n_out, params = _prepare(model, x1, x2, method, chunk_size)
    fp, the_plan = _decide(model, t1, t2, n_out, method, trace, chunk, params)
    flat = trace or n_out == 1  # one output: its trace is the kernel
    if fp.method == "structured":
        try:
            K = ntk_structured(model, t1, t2, n_out, flat, fp.chunk_size, fp.keep, the_plan, params)
        except StructuredUnsupported:
            if check_choice(asked, "method", METHODS) == "structured":
                raise
            return ntk(model, x1, x2, "jacobian", trace=trace, chunk_size=chunk_size)
    elif fp.method == "jacobian":
        K = ntk_jacobian(model, t1, t2, n_out, flat, fp.chunk_size, fp.keep, params)
    else:
        K = ntk_ntvp(model, t1, t2, n_out, flat, fp.chunk_size, params)
    return kind.wrap(K.detach())
