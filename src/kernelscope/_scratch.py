"""Scratch buffers reused from one tile to the next, so that the kernel engines do not pay the operating system for
fresh memory on every tile.

torch allocates CPU tensors with the C allocator, which maps a large block (above a few hundred KB) fresh from the
kernel and unmaps it when freed: every first touch of each 4 KB page is then a page fault, and the recursion of a
kernel tile allocates a dozen such blocks per layer. Measured on this project's machine: filling a fresh 8 MB
tensor costs 2.8–3.6 ms (≈ 1000–1500 page faults), refilling a reused one 0.4 ms — for the convolutional kernels
this was most of the time spent outside ``acos``.

A :class:`Workspace` belongs to one thread (the nets engine gives each worker its own). Inside ``with ws.round():``
every :func:`empty` call of that thread gets a buffer from the workspace — one left free by an earlier round when
one is large enough, else a new one — and when the round ends every buffer handed out during it is free again.
Outside a round :func:`empty` is ``torch.empty``. So the rule for a round: nothing handed out during it may be used
after it (the engine copies each tile's results into the output matrices before the round closes). Within a round,
:func:`release` frees a buffer early (a temporary, or a donated input once consumed): the next request of that
size gets it back while it is still in cache, and a tile needs a handful of buffers instead of one per step.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import torch

from ._threads import thread_value

__all__ = ["Workspace", "empty", "empty_like", "output", "release"]

_local = threading.local()
_HUGE_FROM = 4 << 20  # bytes: results from this size get huge pages (two 2 MB pages at least)


class Workspace:
    """Buffers of one thread, handed out by :func:`empty` during :meth:`round` and all taken back at its end."""

    def __init__(self) -> None:
        self._free: list[torch.Tensor] = []  # flat buffers, free to hand out
        self._used: list[torch.Tensor] = []  # handed out during the current round

    @contextmanager
    def round(self) -> Iterator[Workspace]:
        """Serve this thread's :func:`empty` calls from the workspace for the block; take all back after it."""
        try:
            with thread_value(_local, "workspace", self):
                yield self
        finally:
            self._free.extend(self._used)
            self._used.clear()

    def take(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A tensor of ``shape`` from the smallest free buffer that holds it (a new buffer if none does)."""
        numel = 1
        for s in shape:
            numel *= int(s)
        best = None
        for i, buf in enumerate(self._free):
            if buf.dtype == dtype and buf.device == device and buf.numel() >= numel and (
                    best is None or buf.numel() < self._free[best].numel()):
                best = i
        buf = self._free.pop(best) if best is not None else torch.empty(numel, dtype=dtype, device=device)
        self._used.append(buf)
        return buf[:numel].view(tuple(shape))

    def give_back(self, t: torch.Tensor) -> None:
        """Free the buffer under ``t`` now, within the round (nothing may use ``t`` or a view of it after)."""
        ptr = t.untyped_storage().data_ptr()
        for i, buf in enumerate(self._used):
            if buf.untyped_storage().data_ptr() == ptr:
                self._free.append(self._used.pop(i))
                return

    @property
    def nbytes(self) -> int:
        """Bytes held (free and handed out)."""
        return sum(b.numel() * b.element_size() for b in self._free + self._used)


def empty(shape: Sequence[int], *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
          ) -> torch.Tensor:
    """An uninitialised tensor: from the calling thread's workspace inside a round, else ``torch.empty``."""
    ws = getattr(_local, "workspace", None)
    device = torch.device("cpu") if device is None else torch.device(device)
    if ws is None:
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    return ws.take(shape, dtype, device)


def output(shape: Sequence[int], *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
           ) -> torch.Tensor:
    """An uninitialised tensor for a large result (a kernel matrix), on 2 MB pages where the system allows it.

    A result matrix is written once, tile by tile, and every first touch of a fresh 4 KB page is a page fault:
    measured on this project's machine, filling a fresh 128 MB tensor (a 4000 × 4000 float64 kernel) costs 53 ms,
    13 ms on memory asked for in huge pages (Linux's transparent huge pages, ``madvise`` mode), 6 ms refilling it.
    Below 4 MB, or off the CPU, it is ``torch.empty``. The memory goes back to the system when the tensor (or a
    NumPy array of it) is freed.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    numel = math.prod(int(s) for s in shape)
    nbytes = numel * dtype.itemsize
    if device.type != "cpu" or nbytes < _HUGE_FROM or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError):  # huge pages are a hint: a kernel without them gives 4 KB pages
        memory.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(memory, dtype=dtype, count=numel).view(tuple(shape))  # keeps ``memory`` alive


def outside() -> AbstractContextManager[None]:
    """Fresh memory for the block, not the workspace's: for tensors that must outlive the round (a cache)."""
    return thread_value(_local, "workspace", None)


def release(*ts: torch.Tensor | None) -> None:
    """Hand buffers back to the calling thread's workspace before the round ends, so that the rest of the round
    reuses them while they are still in cache (no-op outside a round, or for tensors not from the workspace).
    Only for tensors that nothing will read again: a temporary, or a donated input a layer has consumed."""
    ws = getattr(_local, "workspace", None)
    if ws is not None:
        for t in ts:
            if t is not None:
                ws.give_back(t)


def empty_like(t: torch.Tensor, shape: Sequence[int] | None = None) -> torch.Tensor:
    """:func:`empty` with the dtype, device and *memory order* of ``t`` (its axes laid out in the order of its
    strides, as ``torch.empty_like`` does), and ``t``'s shape or ``shape`` (as many axes)."""
    shape = tuple(t.shape) if shape is None else tuple(shape)
    order = sorted(range(t.ndim), key=lambda d: (-t.stride(d), d))  # outermost axis in memory first
    if order == list(range(t.ndim)):
        return empty(shape, dtype=t.dtype, device=t.device)
    phys = empty([shape[d] for d in order], dtype=t.dtype, device=t.device)
    return phys.permute([order.index(d) for d in range(t.ndim)])
