"""torch's intra-op thread count, set for a block by the *application* (the tour runner, the CLI).

torch has one process-wide intra-op thread pool and no thread-local setting, so a library function never changes
it (tests/test_global_state.py holds every public call to that). The application may: a chapter declares the
count it runs best on (``Chapter.threads``) and the tour runner sets it for that chapter alone; CLI commands take
``--threads``. Small-matrix training (N × 100 activations, thousands of steps) runs several times faster on one
thread on a 2-core machine: a second thread mostly adds a barrier per op (measured 3.6 vs 19.8 ms per spiral
epoch, N = 1000, float64).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_threads"]


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
