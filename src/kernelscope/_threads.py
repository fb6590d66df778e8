"""Threads: torch's intra-op count for a block of the *application*, for one thread of the *library*, and the cores
that are free.

torch has one process-wide intra-op count (``torch.set_num_threads``), and a library function never changes it
(tests/test_global_state.py holds every public call to that). Two tools here respect that rule:

- :func:`torch_threads` is for the application (the tour runner, the CLI): a chapter declares the count it runs
  best on (``Chapter.threads``) and the runner sets it for that chapter alone; CLI commands take ``--threads``.
  Small-matrix training (N × 100 activations, thousands of steps) runs several times faster on one thread on a
  2-core machine: a second thread mostly adds a barrier per op (measured 3.6 vs 19.8 ms per spiral epoch).
- :func:`thread_local_threads` is for the library: it sets the intra-op count *of the calling thread only* —
  OpenMP's per-thread ``nthreads-var`` (what ``torch.get_num_threads()`` reads in that thread) and MKL's
  thread-local count (MKL's vector math — acos, sqrt, … — and its GEMMs) — and puts both back after. Other
  threads, and threads started later, see torch's count unchanged.

Why it matters on a busy machine: every parallel torch op ends on a barrier where its OpenMP threads wait for the
slowest one (spinning first), so when other processes hold the cores, a thread that loses its core stalls all the
others at each op. Work split into independent tasks on single-threaded workers (the nets engine's tiles) never
waits on a descheduled thread but at the very end; work that must stay one stream of parallel ops (the empirical
NTK's GEMMs) runs best with as many threads as there are cores actually free (:func:`free_cores`).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["free_cores", "single_threaded_worker", "thread_local_threads", "torch_threads", "Cancelled", "cancellable",
           "check_cancelled", "thread_value"]


@contextmanager
def thread_value(local: threading.local, name: str, value) -> Iterator[None]:
    """``local.<name>`` set to ``value`` in the calling thread for the block, and what was there (or nothing) put
    back after: the one way the library binds a per-thread setting (a stop event, a scratch workspace)."""
    before = getattr(local, name, None)
    setattr(local, name, value)
    try:
        yield
    finally:
        setattr(local, name, before)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: leave the setting alone), then restore it.
    Process-wide: for the application (tour runner, CLI), never inside a library function."""
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
# One thread's own intra-op count
# --------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _runtimes() -> tuple[list[tuple[Callable, Callable]], Callable | None]:
    """The OpenMP runtimes loaded in this process, as ``(omp_get_max_threads, omp_set_num_threads)`` pairs (found by
    threadpoolctl, which lists the loaded shared libraries), and MKL's ``mkl_set_num_threads_local`` (exported by
    torch's own library when MKL is linked into it; else by a loaded ``libmkl_rt``), or None."""
    omp: list[tuple[Callable, Callable]] = []
    mkl_paths = [Path(torch.__file__).parent / "lib" / name for name in ("libtorch_cpu.so", "libtorch_cpu.dylib")]
    try:
        from threadpoolctl import ThreadpoolController

        for lib in ThreadpoolController().lib_controllers:
            if lib.user_api == "openmp":
                dll = ctypes.CDLL(lib.filepath)
                omp.append((dll.omp_get_max_threads, dll.omp_set_num_threads))
            elif lib.internal_api == "mkl":
                mkl_paths.append(Path(lib.filepath))
    except Exception:  # noqa: BLE001 - no threadpoolctl, or a runtime it cannot read: nothing to set
        omp = []
    mkl = None
    for path in mkl_paths:
        try:  # the C entry point (mkl_set_num_threads_local is a macro for it; the lowercase symbol is Fortran's)
            mkl = ctypes.CDLL(str(path)).MKL_Set_Num_Threads_Local
            break
        except (OSError, AttributeError):
            continue
    if mkl is not None:
        mkl.restype = ctypes.c_int
        mkl.argtypes = [ctypes.c_int]
    return omp, mkl


def _set_here(n: int | None, previous=None):
    """Set the calling thread's OpenMP and MKL counts to ``n`` (or back to ``previous``, what an earlier call
    returned); returns what they were."""
    omp, mkl = _runtimes()
    if previous is None:
        torch.get_num_threads()  # torch sets a thread's counts at its first parallel op: let that happen now
        previous = ([get() for get, _ in omp], 0)
        values = ([n] * len(omp), n)
    else:
        values = previous
    for (_, set_), v in zip(omp, values[0]):
        set_(v)
    mkl_before = mkl(values[1]) if mkl is not None else 0  # 0: MKL's global count
    return previous[0], mkl_before


@contextmanager
def thread_local_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads *in the calling thread only*, then restore that thread's counts.

    torch's process-wide setting is neither read nor written; ``torch.get_num_threads()`` in this thread reads
    ``n`` during the block. Sets OpenMP's per-thread count and MKL's thread-local count (both exist for this:
    a thread of a server, say, that should not fan out).
    """
    before = _set_here(max(1, int(n)))
    try:
        yield
    finally:
        _set_here(None, before)


def single_threaded_worker() -> None:
    """A ``ThreadPoolExecutor(initializer=...)``: the worker thread runs torch ops on one thread for its whole life
    (its counts die with it), so that workers running side by side never wait on one another inside an op."""
    _set_here(1)


# --------------------------------------------------------------------------------------------------------------
# Free cores
# --------------------------------------------------------------------------------------------------------------
def _busy_and_total() -> tuple[float, float] | None:
    """Busy and total CPU time (all cores, in clock ticks) since boot, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return total - idle, total


def free_cores(window: float = 0.05) -> int:
    """The number of cores (of those this process may run on) that other work leaves free now, at least 1.

    Measured from /proc/stat over ``window`` seconds (the busy share of all CPUs, times their number); where
    /proc/stat is missing, from the 1-minute load average. Work of this process's own other threads counts as
    busy too, so call it before starting the work it sizes.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    n_cpu = os.cpu_count() or cores
    first = _busy_and_total()
    if first is None:  # pragma: no cover - not Linux
        try:
            busy = os.getloadavg()[0]
        except OSError:
            return cores
    else:
        time.sleep(window)
        second = _busy_and_total()
        busy_t, total_t = second[0] - first[0], second[1] - first[1]
        busy = n_cpu * busy_t / total_t if total_t > 0 else 0.0
    return max(1, min(cores, round(cores - busy * cores / n_cpu)))


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
    with thread_value(_local, "stop", stop):
        yield


def check_cancelled() -> None:
    """Raise :class:`Cancelled` when the calling thread runs under a ``stop`` event that is set (costs a lookup)."""
    stop = getattr(_local, "stop", None)
    if stop is not None and stop.is_set():
        raise Cancelled
