"""The peak memory of each empirical-NTK method, estimated before any work, and the chunk of examples that fits.

Every estimate is a sum of what the method holds at its peak, from per-example byte counts read off one forward
pass on two examples (:func:`kernelscope._model.forward_profile`; for 'structured' also its plan,
:mod:`kernelscope.empirical.capture`) and the sizes of the parameters. With ``t`` the bytes per example of
everything the forward pass produces, ``m`` the largest single tensor, O outputs, P parameters, item the bytes of
one number and c examples per chunk:

- the kernel itself: ``N1·N2·item`` (with ``trace=True`` or O = 1) or ``N1·N2·O²·item``;
- 'jacobian': the Jacobians of x2 (``N2·O·P·item``) when they fit a quarter of the budget (else one chunk's), and
  per chunk ``4·c·O·P·item`` (the vmapped per-parameter Jacobians, their concatenation, the other chunk's, and
  what ``vmap(jacrev)`` holds besides: measured) plus ``c·(t + 4·O·m)`` for the forward and the O backward passes;
- 'ntvp': per block of c columns, ``c·t`` (the VJP's graph), ``3·c·O·P·item`` (the products ``J₂ᵀ e`` and the
  batched backward pass's buffers: measured) and ``c²·O·(3t + 4m)`` for the backward and forward-mode passes
  batched over the c·O basis vectors (measured);
- 'structured': the features of x2 when the whole fits with them (else one chunk's), and per chunk
  ``c·(t + 2z + O·(z + 4m) + features)`` (z the outputs that get an ``ε``; their O gradients are kept) plus the
  per-example vector-Jacobian products of the modules whose parameters do not factorise and the Gram blocks.

:func:`choose_chunk` then takes the largest chunk that fits the budget (at most :data:`MAX_CHUNK`), or checks the
user's ``chunk_size``, and refuses up front, naming the bytes and the way out, when nothing fits. A test measures
the real peak of each method against these estimates (``tests/test_empirical_memory.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._arrays import MemoryBudgetError, format_bytes
from .._model import ForwardProfile
from .capture import Plan
from .features import feature_sizes

__all__ = ["Footprint", "MAX_CHUNK", "choose_chunk", "jacobian_bytes", "ntvp_bytes", "structured_bytes",
           "refuse_kernel"]

#: The largest chunk chosen automatically: larger ones gain nothing on the GEMMs and hold more memory.
MAX_CHUNK = 512


@dataclass(frozen=True)
class Footprint:
    """What an empirical-NTK call will do and hold, decided before it starts.

    method : the method that runs ('jacobian', 'ntvp' or 'structured').
    chunk_size : examples per chunk.
    peak_bytes : the estimated peak of the memory the call allocates (the inputs and the model not counted).
    budget_bytes : the memory budget it was sized against.
    keep : whether the Jacobians or features of x2 are kept (else recomputed for each chunk of x1).
    """

    method: str
    chunk_size: int
    peak_bytes: float
    budget_bytes: int
    keep: bool


def _largest(bytes_at: Callable[[int], float], hi: int, limit: float) -> int:
    """The largest c in [1, hi] with ``bytes_at(c) <= limit`` (``bytes_at`` grows with c), 0 if none."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if bytes_at(mid) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def choose_chunk(bytes_at: Callable[[int], float], n: int, chunk_size: int | None, limit: int, what: str,
                 way_out: str) -> int:
    """The chunk of examples: ``chunk_size`` (at most n) if ``bytes_at`` of it fits ``limit``, else a
    :class:`MemoryBudgetError` naming the bytes and the chunk_size that fits; None: the largest that fits (at most
    :data:`MAX_CHUNK`). Refused, with ``way_out``, when not even one example at a time fits."""
    if chunk_size is not None:
        c = min(chunk_size, n)
        need = bytes_at(c)
        if need > limit:
            fit = _largest(bytes_at, c - 1, limit)
            hint = (f"Pass chunk_size={fit} (or chunk_size=None, which chooses it)." if fit
                    else f"Not even one example at a time fits. {way_out}")
            raise MemoryBudgetError(f"{what} with chunk_size={chunk_size} needs {format_bytes(need)} but the memory "
                                    f"budget is {format_bytes(limit)}. {hint}")
        return c
    c = _largest(bytes_at, min(n, MAX_CHUNK), limit)
    if c == 0:
        raise MemoryBudgetError(f"{what} needs {format_bytes(bytes_at(1))} even one example at a time, but the memory "
                                f"budget is {format_bytes(limit)}. {way_out}")
    return c


def _kernel_bytes(n1: int, n2: int, n_out: int, item: int, trace: bool) -> float:
    return n1 * n2 * (1 if trace else n_out * n_out) * item


def jacobian_bytes(prof: ForwardProfile, P: int, n1: int, n2: int, n_out: int, item: int, trace: bool,
                   keep: bool) -> Callable[[int], float]:
    """Peak bytes of 'jacobian' as a function of the chunk c (module docstring)."""
    out = _kernel_bytes(n1, n2, n_out, item, trace)
    og = 1 if trace else n_out * n_out

    def bytes_at(c: int) -> float:
        J = c * n_out * P * item
        kept = n2 * n_out * P * item if keep else J
        return out + kept + 4 * J + c * (prof.total + 4 * n_out * prof.largest) + c * min(c, n2) * og * item

    return bytes_at


def ntvp_bytes(prof: ForwardProfile, P: int, n1: int, n2: int, n_out: int, item: int, trace: bool
               ) -> Callable[[int], float]:
    """Peak bytes of 'ntvp' as a function of the chunk c (module docstring)."""
    out = _kernel_bytes(n1, n2, n_out, item, trace)

    def bytes_at(c: int) -> float:
        basis = (c * n_out) ** 2 * item
        return out + c * prof.total + 3 * c * n_out * P * item + c * c * n_out * (3 * prof.total + 4 * prof.largest) \
            + 3 * basis

    return bytes_at


def structured_bytes(the_plan: Plan, prof: ForwardProfile, n1: int, n2: int, n_out: int, item: int, trace: bool,
                     partners: int, keep: bool) -> Callable[[int], float]:
    """Peak bytes of 'structured' as a function of the chunk c (module docstring)."""
    out = _kernel_bytes(n1, n2, n_out, item, trace)
    og = 1 if trace else n_out * n_out
    feat, uses, patches = feature_sizes(the_plan, n_out, item, trace, partners)
    z = sum(b for _, b in the_plan.group_bytes) + sum(o for o, _ in the_plan.fallback_bytes.values())
    vjp = max((n_out * (ops + 2 * o) + ops for o, ops in the_plan.fallback_bytes.values()), default=0.0)

    def bytes_at(c: int) -> float:
        per_chunk = c * (prof.total + 2 * z + n_out * (z + 4 * prof.largest) + feat + vjp)
        per_chunk += 2 * min(c * patches, 8 << 20)  # the convolutions' patches, formed in blocks
        kept = n2 * feat if keep else c * feat
        columns = n2 if keep else min(c, n2)
        gram = 2 * c * columns * og * item + 2 * c * columns * uses * uses * item
        return out + kept + per_chunk + gram

    return bytes_at


def refuse_kernel(n1: int, n2: int, n_out: int, item: int, trace: bool, limit: int) -> None:
    """The kernel matrix itself must fit: else a :class:`MemoryBudgetError` naming its size."""
    need = _kernel_bytes(n1, n2, n_out, item, trace)
    if need > limit:
        way = "Compute it in blocks of rows of x1" + ("." if trace or n_out == 1 else ", or use trace=True.")
        raise MemoryBudgetError(f"the NTK matrix ({n1}×{n2}{'' if trace or n_out == 1 else f'×{n_out}×{n_out}'}) "
                                f"needs {format_bytes(need)} but the memory budget is {format_bytes(limit)}. {way}")
