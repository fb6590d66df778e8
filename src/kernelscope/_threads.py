"""torch's intra-op thread count, set for a block by the *application* (the tour runner, the CLI).

torch has one process-wide intra-op thread pool and no thread-local setting, so a library function never changes
it (tests/test_global_state.py holds every public call to that). The application may: a chapter declares the
count it runs best on (``Chapter.threads``) and the tour runner sets it for that chapter alone; CLI commands take
``--threads``. Small-matrix training (N × 100 activations, thousands of steps) runs several times faster on one
thread on a 2-core machine: a second thread mostly adds a barrier per op (measured 3.6 vs 19.8 ms per spiral
epoch, N = 1000, float64).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_threads", "Cancelled", "cancellable", "check_cancelled"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: leave the setting alone), then restore it."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------------------
# Stopping worker threads: only the main thread receives Ctrl-C, so a worker learns of it from an event its pool
# sets, checked between pieces of work (a tile; a quadrature node of a slow activation).
# --------------------------------------------------------------------------------------------------------------
class Cancelled(Exception):
    """Raised in a worker thread by :func:`check_cancelled` once its pool's ``stop`` event is set."""


_local = threading.local()


@contextmanager
def cancellable(stop: threading.Event) -> Iterator[None]:
    """Run the block (in a worker thread) under ``stop``: :func:`check_cancelled` inside it raises once it is set."""
    before = getattr(_local, "stop", None)
    _local.stop = stop
    try:
        yield
    finally:
        _local.stop = before


def check_cancelled() -> None:
    """Raise :class:`Cancelled` when the calling thread runs under a ``stop`` event that is set (costs a lookup)."""
    stop = getattr(_local, "stop", None)
    if stop is not None and stop.is_set():
        raise Cancelled
