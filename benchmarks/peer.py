"""What the benchmarks share: the peer (neural-tangents in its own virtual environment), timing, peak memory, and a
busy machine.

The peer is neural-tangents 0.6.5 with JAX 0.4.23 (``../shared/peers/README.md``), never a dependency of the
package: a benchmark writes a small script and its inputs, runs it with the peer's Python as a subprocess, and reads
back what it printed as JSON. The peer's Python is ``$KERNELSCOPE_PEER_PYTHON``, else ``<repo>/.venv-nt/bin/python``;
:func:`peer_python` is None when neither exists (the benchmark then says so and prints our side only).

    from peer import peer_python, run_peer, timed, busy, PeakRSS
    out = run_peer(SCRIPT, {"x": X}, repeats=3)        # SCRIPT reads `inputs` (a dict of arrays), sets `result`
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Run before the peer's script: float64 JAX, TensorFlow quiet, the inputs loaded, and a timer that blocks on JAX's
# asynchronous results (the median of `repeats` calls after one warm-up call that compiles).
_PRELUDE = '''
import os, sys, json, time, statistics
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
inputs = dict(np.load(sys.argv[1]))
repeats = int(sys.argv[2])

def timed(fn):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); out = jax.block_until_ready(fn()); times.append(time.perf_counter() - t0)
    return statistics.median(times), out

result = {}
'''


def peer_python() -> str | None:
    """The peer environment's Python, or None when there is none here."""
    env = os.environ.get("KERNELSCOPE_PEER_PYTHON")
    if env:
        return env if Path(env).exists() else None
    default = REPO / ".venv-nt" / "bin" / "python"
    return str(default) if default.exists() else None


def run_peer(script: str, inputs: dict[str, np.ndarray], *, repeats: int = 3, timeout: float = 1800) -> dict:
    """Run ``script`` (Python for the peer; it reads ``inputs``, may call ``timed(fn) -> (median seconds,
    output)``, and fills the dict ``result`` with JSON-able values) and return ``result``. Arrays in the result:
    lists. Raises RuntimeError with the peer's stderr when it fails."""
    python = peer_python()
    if python is None:
        raise RuntimeError("no peer here: set KERNELSCOPE_PEER_PYTHON or create .venv-nt (../shared/peers/README.md)")
    body = _PRELUDE + textwrap.dedent(script) + "\nprint('@@RESULT@@' + json.dumps(result))\n"
    with tempfile.TemporaryDirectory() as tmp:
        data, code = Path(tmp) / "inputs.npz", Path(tmp) / "peer_script.py"
        np.savez(data, **inputs)
        code.write_text(body)
        proc = subprocess.run([python, str(code), str(data), str(repeats)], capture_output=True, text=True,
                              timeout=timeout)
    marker = [line for line in proc.stdout.splitlines() if line.startswith("@@RESULT@@")]
    if proc.returncode != 0 or not marker:
        raise RuntimeError(f"the peer failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(marker[-1][len("@@RESULT@@"):])


def timed(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls, and its last output."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


class PeakRSS:
    """Peak resident memory of this process during the block, sampled by a thread every ``interval`` seconds
    (torch's allocations are invisible to tracemalloc): ``.peak`` in bytes, ``.delta`` above the level at entry."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval

    def __enter__(self) -> PeakRSS:
        import psutil

        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta(self) -> int:
        return self.peak - self.base


def _spin(stop: Any) -> None:  # pragma: no cover - runs in a child process
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


@contextlib.contextmanager
def busy(processes: int | None = None) -> Iterator[int]:
    """A busy machine for the duration of the block: ``processes`` busy-loop processes (default: one per core),
    stopped on exit. Yields the number started. Timings inside compare both sides on the same loaded machine."""
    n = (os.cpu_count() or 1) if processes is None else processes
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_spin, args=(stop,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        time.sleep(0.5)  # let the load settle
        yield n
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


if __name__ == "__main__":  # a smoke check: the peer answers and times a tiny kernel
    print("peer:", peer_python())
    if peer_python():
        res = run_peer('''
from neural_tangents import stax
_, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
seconds, k = timed(lambda: kernel_fn(inputs["x"], None, "ntk"))
result["seconds"] = seconds
result["ntk00"] = float(k[0, 0])
''', {"x": np.random.default_rng(0).standard_normal((64, 8))})
        print(res, file=sys.stdout)


class PeakCUDA:
    """Peak CUDA memory torch allocated during the block: ``.peak`` in bytes, ``.delta`` above the level at entry."""

    def __enter__(self) -> PeakCUDA:
        import torch

        torch.cuda.synchronize()
        self.base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        torch.cuda.synchronize()
        self.peak = torch.cuda.max_memory_allocated()
        self.delta = self.peak - self.base
