"""The kernel state that flows from layer to layer: immutable, as neural-tangents' ``Kernel``.

A layer's kernel map takes a :class:`KState` and returns a new one (``k.replace(nngp=..., ...)``); it never
changes the state it was given — unless that state was *donated*: the engine builds each tile's input state
itself, hands it to the network and reads only what comes back, so the layers may overwrite that tile's
buffers in place (memory and speed: the whole recursion runs in a few tile-sized buffers). A layer writes only
into the state that :meth:`KState.writable` or :meth:`KState.materialized` gives it: the donated state itself,
or copies of a state that was not donated.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from .. import _scratch

__all__ = ["KState", "Pending", "VarMemo", "position_diagonal"]


def position_diagonal(t: torch.Tensor, nb: int, ns: int) -> torch.Tensor:
    """The view of ``t`` (``nb`` batch axes, then S, then S) with both positions equal: shape batch + S."""
    for k in range(ns):
        t = t.diagonal(0, nb, nb + ns - k)  # pairs the leading axis of each set; the diagonal goes last
    return t


class VarMemo:
    """The per-point variances of one :meth:`~kernelscope.nets.engine.Layer.kernel` call, shared by its tiles.

    A layer maps the variances Σ(x, x) of a tile's rows and columns with a function of each point alone (a filter,
    an affine map, an activation's dual on a point with itself). The tiles of one row of tiles share those rows,
    so without a memo each tile would redo its rows' and columns' whole chain: for a CNN on pairs of positions
    that is 2·B·|S|² numbers per layer per tile, a fifth of the time of MNIST-1D's 25×25 tiles. With it, each
    block of rows goes through each layer once per call.

    A result is reused only for the *same* input, known by its place in memory: a slice of a tensor the memo holds
    (the engine's input variances, or a result it keeps), so no freed and reused address can be mistaken for it;
    anything else is mapped afresh. Results are computed outside the tile's scratch workspace (they outlive the
    tile), under a lock (the tiles' worker threads share the memo), and kept up to ``limit_bytes`` (the memory
    budget's share the engine leaves it); past it they are mapped afresh each time, as without a memo."""

    def __init__(self, *held: torch.Tensor, limit_bytes: float = float("inf")):
        self._lock = threading.Lock()
        self._held = {t.untyped_storage().data_ptr(): t for t in held}
        self._cache: dict[tuple, torch.Tensor] = {}
        self.limit_bytes, self.nbytes = limit_bytes, 0

    def map(self, key: Hashable, v: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn(v)``, computed once per ``key`` (what ``fn`` computes) and input ``v``."""
        base = v.untyped_storage().data_ptr()
        if base not in self._held:
            return fn(v)
        where = (key, base, v.storage_offset(), tuple(v.shape), v.stride(), v.dtype)
        with self._lock:
            out = self._cache.get(where)
            if out is None:
                with _scratch.outside():
                    out = fn(v)
                size = out.untyped_storage().nbytes()
                if self.nbytes + size <= self.limit_bytes:  # past the limit: mapped afresh each time, not kept
                    self.nbytes += size
                    self._cache[where] = out
                    self._held.setdefault(out.untyped_storage().data_ptr(), out)
        return out


@dataclass(frozen=True, eq=False)
class Pending:
    """Multipliers not yet applied to a full-mode state's kernels: ``Σ = nngp·scale1·scale2`` and
    ``Θ = ntk·ntk_factor·ntk_scale``. An activation leaves them so that a following Dense fuses them into its
    own pass over the tile (2 passes instead of 4); any other layer applies them first (:meth:`KState.materialized`).

    scale1 : (B, 1) + ..., or None (1).   scale2 : (1, T) + ..., or None.   Both broadcast against ``nngp``.
    ntk_factor : ``ntk``'s shape, or None (1).   ntk_scale : a number.
    """

    scale1: torch.Tensor | None = None
    scale2: torch.Tensor | None = None
    ntk_factor: torch.Tensor | None = None
    ntk_scale: float = 1.0


@dataclass(frozen=True, eq=False)
class KState:
    """The kernels between two sets of inputs at one point of the network (immutable; see the module docstring).

    Full mode (B rows x against T columns x'): ``nngp`` = Σ(x, x') and ``ntk`` = Θ(x, x') of shape (B, T) + P,
    ``var1`` = Σ(x, x) of shape (B,) + P, ``var2`` = Σ(x', x') of shape (T,) + P. Diag mode (each of N points
    with itself): ``nngp``, ``ntk`` of shape (N,) + P and ``var1 = var2 = nngp``. ``ntk=None`` stands for Θ = 0
    (the input).

    Positions (convolutional kernels, S the positions' shape (L,) or (H, W); () for vectors): ``P = S``, the
    diagonal of positions Σ(x_p, x'_p), when ``pairs`` is False; ``P = S + S``, all pairs Σ(x_p, x'_q), when it
    is True (pooling mixes positions, so it needs them; the variances then hold each point's own pairs).

    Fields
    ------
    nngp, ntk, var1, var2 : the tensors above (float64).
    width : the number of channels here (the input dimension d before the first Dense): a Dense's fan-in.
    self_block : full mode: the leading B×B square pairs each point with itself (k(X, X) tiles on the diagonal),
        where the activations set cosines to exactly 1.
    pairs : whether the positions come in pairs (above).
    pending : multipliers not yet applied (:class:`Pending`), or None.
    donated : the caller gives up ``nngp``, ``ntk`` and the pending factors: the layer it is passed to may
        overwrite them (the engine's tiles). ``var1`` and ``var2`` are never written in full mode: tiles share them.
    memo : the tiles' shared :class:`VarMemo`, or None; layers map the variances through :meth:`map_vars`.
    """

    nngp: torch.Tensor
    ntk: torch.Tensor | None
    var1: torch.Tensor
    var2: torch.Tensor
    width: int
    self_block: bool = False
    pairs: bool = False
    pending: Pending | None = None
    donated: bool = False
    memo: VarMemo | None = None

    # -- layout, read from the shapes ----------------------------------------------------------------------------
    @property
    def diag(self) -> bool:
        """Diag mode: the kernels of points with themselves, shaped like the variances (full mode has one more
        batch axis)."""
        return self.nngp.ndim == self.var1.ndim

    @property
    def spatial(self) -> tuple[int, ...]:
        """The positions' shape S (() without positions), from ``var1`` ((B,) + S, or (B,) + S + S with pairs)."""
        s = tuple(self.var1.shape[1:])
        return s[:len(s) // 2] if self.pairs else s

    # -- new states ----------------------------------------------------------------------------------------------
    def replace(self, **changes) -> KState:
        """A new state with ``changes`` (as ``dataclasses.replace``); in diag mode the variances follow ``nngp``."""
        if self.diag and "nngp" in changes:
            changes.setdefault("var1", changes["nngp"])
            changes.setdefault("var2", changes["nngp"])
        return KState(**{**vars(self), **changes})  # dataclasses.replace at half the cost (all are init fields)

    def writable(self) -> KState:
        """The same kernels in buffers the caller may overwrite: this state if it was donated, else one with copies
        of ``nngp``, ``ntk`` and the pending factors (the state given stays as it was). The flag ``donated`` is
        kept, so that what a layer returns is donated exactly when what it got was."""
        if self.donated:
            return self
        nngp = self.nngp.clone()
        ntk = None if self.ntk is None else self.ntk.clone()
        pending = self.pending
        if pending is not None and pending.ntk_factor is not None:
            pending = dataclasses.replace(pending, ntk_factor=pending.ntk_factor.clone())
        return self.replace(nngp=nngp, ntk=ntk, pending=pending)

    def materialized(self) -> KState:
        """:meth:`writable`, with the pending multipliers applied (in those buffers)."""
        k = self.writable()
        p = k.pending
        if p is None:
            return k
        nngp = k.nngp if p.scale1 is None else k.nngp.mul_(p.scale1).mul_(p.scale2)
        ntk = k.ntk
        if ntk is not None and p.ntk_factor is not None:
            ntk = ntk.mul_(p.ntk_factor if p.ntk_scale == 1.0 else p.ntk_factor.mul_(p.ntk_scale))
        if k.donated:  # the factor was given up with the state, and is used: its buffer may be reused
            _scratch.release(p.ntk_factor)
        return k.replace(nngp=nngp, ntk=ntk, pending=None)

    def clone(self) -> KState:
        """A state with its own copies of ``nngp`` and ``ntk`` (for another branch); nothing may be pending."""
        if self.pending is not None:
            raise RuntimeError("clone() of a KState with pending multipliers; call materialized() first")
        return self.replace(nngp=self.nngp.clone(), ntk=None if self.ntk is None else self.ntk.clone())

    def map_vars(self, key: Hashable, fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fn(var1), fn(var2))`` for a per-point map ``fn`` that ``key`` names (equal keys: equal maps), through
        the tiles' :class:`VarMemo` when there is one; ``var2`` is ``var1`` when they were the same."""
        if self.memo is None:
            v1 = fn(self.var1)
            return v1, (v1 if self.var2 is self.var1 else fn(self.var2))
        v1 = self.memo.map(key, self.var1, fn)
        return v1, (v1 if self.var2 is self.var1 else self.memo.map(key, self.var2, fn))

    def self_state(self, v: torch.Tensor) -> KState:
        """The diag-mode state of a variance tensor ``v`` (var1 or var2): layers map it the way they map nngp.
        Not donated: ``v`` is shared."""
        return KState(v, None, v, v, self.width, pairs=self.pairs)

    def unpaired(self) -> KState:
        """The same kernels on the diagonal of positions only (once no pooling is left downstream)."""
        k = self.materialized()
        nb, ns = (1 if k.diag else 2), len(k.spatial)
        nngp = position_diagonal(k.nngp, nb, ns).contiguous()
        ntk = None if k.ntk is None else position_diagonal(k.ntk, nb, ns).contiguous()
        if k.diag:
            return k.replace(nngp=nngp, ntk=ntk, pairs=False)
        v1, v2 = k.map_vars(("unpaired", ns), lambda v: position_diagonal(v, 1, ns).contiguous())
        return k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2, pairs=False)

    # -- views for the elementwise maps -------------------------------------------------------------------------
    def variances(self, v: torch.Tensor) -> torch.Tensor:
        """The variances Σ(x_p, x_p) in a diag-mode kernel ``v`` ((B,) + S, or the positions' diagonal of
        (B,) + S + S with pairs)."""
        return position_diagonal(v, 1, len(self.spatial)) if self.pairs else v

    def a_view(self) -> torch.Tensor:
        """Σ(x, x) of the rows, broadcasting against ``nngp``."""
        return self.var_view(self.variances(self.var1), first=True)

    def b_view(self) -> torch.Tensor:
        """Σ(x', x') of the columns, broadcasting against ``nngp``."""
        return self.var_view(self.variances(self.var2), first=False)

    def var_view(self, v: torch.Tensor, first: bool) -> torch.Tensor:
        """A per-point, per-position tensor ``v`` ((B,) + S) of the rows (``first``) or the columns, shaped to
        broadcast against ``nngp``."""
        diag = self.diag
        if not diag:
            v = v.unsqueeze(1) if first else v.unsqueeze(0)
        if self.pairs:  # rows' positions first, columns' positions second
            nb, ns = (1 if diag else 2), len(self.spatial)
            shape = v.shape[:nb] + ((v.shape[nb:] + (1,) * ns) if first else ((1,) * ns + v.shape[nb:]))
            v = v.reshape(shape)
        return v

    def same(self):
        """Which entries pair a point with itself (at the same position): the ``same`` of
        :mod:`kernelscope.duals`."""
        if not self.pairs:
            return "all" if self.diag else ("diagonal" if self.self_block else None)
        ns = len(self.spatial)
        if self.diag:
            return lambda t: position_diagonal(t, 1, ns)
        if self.self_block:
            return lambda t: position_diagonal(t.diagonal().movedim(-1, 0), 1, ns)
        return None
