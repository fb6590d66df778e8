"""The tour: every chapter of the story as a resumable step, rendered into one HTML report.

The chapters are listed, in story order, in :data:`kernelscope.chapters.CHAPTERS`; the framework they are written
in (:class:`Chapter`, :class:`StepContext`, :class:`ChapterResult`...) is :mod:`kernelscope.story`. This module
only runs them. Layout of the output folder ``DIR``::

    DIR/index.html                    the report (story text, figures, tables)
    DIR/results.json                  every chapter's numbers, with the configuration they come from
    DIR/figures/<config>/*.png|gif    the figures of each configuration
    DIR/steps/<key>-<config>.json     one finished chapter in one configuration (``quick-seed0``, ``full-seed0``)
    DIR/steps/<key>-<config>/*.json   checkpoints inside a chapter (each finished width of a sweep, say)

Running the tour again skips the chapters finished in the same configuration (``force=True`` redoes them); a
chapter interrupted half way resumes from its checkpoints. A quick run and a full run into the same folder keep
their pieces apart; the page shows the configuration asked for, and a chapter not run in it (``--only``) is shown
from the latest other configuration that finished it, labelled as such.

One tour at a time per folder: a run holds ``DIR/.lock`` (an advisory ``flock``, released by the operating system
however the run ends) and a second run into the same folder is refused with the first one's pid. Locking rather
than merging: two runs would not only race on ``results.json`` but also compute the same chapters, figures and
checkpoints twice, and interleave them. While it runs, SIGTERM (``timeout``, ``docker stop``, a cancelled CI job)
stops the tour as Ctrl-C does - the workers are stopped, what is finished is written - and the previous handler
is restored afterwards; chapter processes exit on their own when the tour's process dies (even by SIGKILL).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._io import atomic_write_json, atomic_write_text, folder_lock, remove_temporaries
from ._threads import torch_threads
from .story import Chapter, ChapterResult, Figure, Progress, StepContext, Table, config_id, config_label

__all__ = ["Chapter", "ChapterResult", "Figure", "Table", "StepContext", "chapters", "run_tour", "TourResult"]


def chapters() -> list[Chapter]:
    """All chapters of the story, in story order."""
    from .chapters import CHAPTERS

    keys = [c.key for c in CHAPTERS]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise RuntimeError(f"two chapters share the key(s) {sorted(dup)}")
    return sorted(CHAPTERS, key=lambda c: (c.order, c.key))


@dataclass
class TourResult:
    """What :func:`run_tour` did: the chapters computed, resumed and failed, and where the report is."""

    out: Path
    done: list[str]  # chapters computed in this run
    skipped: list[str]  # chapters already done in this configuration (resumed)
    failed: dict[str, str]  # key -> error message
    other_config: dict[str, str] = field(default_factory=dict)  # key -> configuration its shown numbers come from

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Saved:
    result: ChapterResult
    quick: bool
    seed: int


def _read_step(path: Path) -> _Saved | None:
    """A finished chapter's step file, or None when it is missing, cut short or not one (computed again)."""
    try:
        d = json.loads(path.read_text())
        if d.get("status") != "done" or "result" not in d:
            return None
        return _Saved(ChapterResult.from_json(d["result"]), bool(d.get("quick")), int(d.get("seed", 0)))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


class Terminated(KeyboardInterrupt):
    """SIGTERM while the tour runs: handled as Ctrl-C (the workers stopped, what is finished written); ``signum``
    says which signal, for the exit status ``128 + signum``."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM raises :class:`Terminated`; the previous handler is put
    back afterwards. Elsewhere (a worker thread) signals cannot be handled and the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _load(out: Path, ch: Chapter, quick: bool, seed: int) -> tuple[_Saved | None, _Saved | None]:
    """(the chapter done in this configuration, the latest one done in any other configuration)."""
    steps = out / "steps"
    mine = _read_step(steps / f"{ch.key}-{config_id(quick, seed)}.json")
    others = sorted((p for p in steps.glob(f"{ch.key}-*.json")
                     if p.name != f"{ch.key}-{config_id(quick, seed)}.json" and not p.name.endswith(".error.json")),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for p in others:
        saved = _read_step(p)
        if saved is not None and p.name == f"{ch.key}-{config_id(saved.quick, saved.seed)}.json":
            return mine, saved
    return mine, None


def run_tour(out: str | Path, *, quick: bool = False, force: bool = False, only: Sequence[str] | None = None,
             seed: int = 0, progress: bool = True, jobs: int = 1) -> TourResult:
    """Run the chapters (all, or ``only`` those keys), resuming finished ones, and write the report.

    Parameters
    ----------
    out : folder to write ``index.html``, ``results.json`` and ``figures/`` into (created if missing).
    quick : smaller sizes for a fast look (and for tests); saved apart from full ones.
    force : redo the selected chapters even when they are already done in this configuration.
    only : chapter keys to run (the others stay on the page as they were finished before).
    seed : base seed handed to every chapter.
    progress : show progress (bars on a terminal, plain lines at least every ~10 s otherwise).
    jobs : chapters run at once, each in its own process (``0``: as many as torch has threads, at most one per
        chapter). The chapters are independent; the torch threads are shared out among the processes and the
        longest chapters start first (``Chapter.seconds``). Many chapters train small networks whose ops are too
        short for two threads to share, so on a 2-core machine two chapters side by side finish the tour sooner
        than one chapter on both cores. ``1``: one after the other in this process.

    An interruption (Ctrl-C) loses nothing finished: the report is written with what is done, and running the
    same call again resumes.
    """
    from ._arrays import ValidationError, check_int, check_nonnegative

    out = Path(out)
    all_chapters = chapters()
    known = [c.key for c in all_chapters]
    if only:
        bad = [k for k in only if k not in known]
        if bad:
            raise ValidationError("only", "chapter keys among " + ", ".join(known), ", ".join(bad))
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise ValidationError("jobs", "a whole number >= 0 (0: automatic)", repr(jobs))
    check_nonnegative(jobs, "jobs")
    seed = check_int(seed, "seed", minimum=0, maximum=2**32 - 1)  # every chapter's generators take it as it is
    with folder_lock(out, "kernelscope tour"), _terminate_as_interrupt():
        remove_temporaries(out)  # left by a run killed before it could clean up; no one else writes here now
        return _run_locked(out, all_chapters, known, quick=quick, force=force, only=only, seed=seed,
                           progress=progress, jobs=jobs)


def _run_locked(out: Path, all_chapters: list[Chapter], known: list[str], *, quick: bool, force: bool,
                only: Sequence[str] | None, seed: int, progress: bool, jobs: int) -> TourResult:
    from .report import render_report

    selected = [c for c in all_chapters if not only or c.key in only]

    done: list[str] = []
    skipped: list[str] = []
    failed: dict[str, str] = {}
    shown: dict[str, _Saved] = {}
    for ch in all_chapters:
        mine, other = _load(out, ch, quick, seed)
        if mine is not None:
            shown[ch.key] = mine
        elif other is not None:
            shown[ch.key] = other

    def write() -> None:
        _write_outputs(out, all_chapters, shown, failed, quick, seed, render_report)

    number = {ch.key: f"[{i}/{len(selected)}] {ch.title}" for i, ch in enumerate(selected, 1)}
    base_threads = torch.get_num_threads()

    def finished(ch: Chapter, outcome: tuple, bar: Progress) -> None:
        status, payload = outcome
        if status == "error":
            failed[ch.key] = payload
            shown.pop(ch.key, None)
            bar.print(f"x {number[ch.key]}: {payload}", "red")
        else:
            seconds, result = payload
            shown[ch.key] = _Saved(ChapterResult.from_json(result), quick, seed)
            done.append(ch.key)
            bar.print(f"v {number[ch.key]} ({seconds:.1f} s)", "green")
        write()

    with Progress(progress) as bar:
        try:
            todo = []
            for ch in selected:
                saved = shown.get(ch.key)
                if not force and saved is not None and (saved.quick, saved.seed) == (quick, seed):
                    skipped.append(ch.key)
                    bar.print(f"- {number[ch.key]}: already done, skipped (--force to redo)", "dim")
                else:
                    todo.append(ch)
            n_jobs = min(len(todo), jobs if jobs > 0 else base_threads)
            if n_jobs > 1:
                _run_parallel(todo, n_jobs, out, quick, seed, force, base_threads, bar, finished, number)
            else:
                for ch in todo:
                    bar.print(f"> {number[ch.key]} ...")
                    finished(ch, _execute(out, ch, quick, seed, force, bar, base_threads), bar)
        finally:  # also on Ctrl-C: the page shows everything finished so far
            write()
    done.sort(key=known.index)
    other = {k: config_label(s.quick, s.seed) for k, s in shown.items() if (s.quick, s.seed) != (quick, seed)}
    return TourResult(out=out, done=done, skipped=skipped, failed=failed, other_config=other)


def _execute(out: Path, ch: Chapter, quick: bool, seed: int, force: bool, bar, base_threads: int) -> tuple:
    """Run one chapter and save it: ("done", (seconds, result JSON)) or ("error", message)."""
    ctx = StepContext(out, ch, quick=quick, seed=seed, progress=bar, base_threads=base_threads)
    if force:
        shutil.rmtree(ctx.ckpt_dir, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        with torch_threads(ch.threads):
            res = ch.run(ctx)
    except Exception as exc:  # one chapter failing must not lose the others
        atomic_write_text(out / "steps" / f"{ch.key}-{config_id(quick, seed)}.error.txt", traceback.format_exc())
        return "error", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    result = res.to_json()
    atomic_write_json(out / "steps" / f"{ch.key}-{config_id(quick, seed)}.json",
                      {"key": ch.key, "title": ch.title, "status": "done", "quick": quick, "seed": seed,
                       "seconds": round(seconds, 3), "result": result})
    return "done", (seconds, result)


# ------------------------------------------------------------------------------------------------------------
# Chapters side by side: one process each (spawned: a fresh interpreter, no forked torch thread pool)
# ------------------------------------------------------------------------------------------------------------
class _QueuedProgress:
    """What a chapter in a worker process reports progress to: the calls of :class:`Progress` that a chapter makes,
    each sent to the parent's :class:`Progress` through a queue, so bars (or plain lines) stay in one place."""

    enabled = True

    def __init__(self, queue):
        self.queue = queue
        self._ids = itertools.count()

    def print(self, message: str, style: str | None = None) -> None:
        self.queue.put(("print", message, style))

    def add_task(self, description: str, total: int | None = None) -> tuple[int, int]:
        task = (os.getpid(), next(self._ids))
        self.queue.put(("add", task, description, total))
        return task

    def advance(self, task: tuple[int, int]) -> None:
        self.queue.put(("advance", task))

    def remove_task(self, task: tuple[int, int]) -> None:
        self.queue.put(("remove", task))

    track = Progress.track  # the same iteration, on the methods above


_QUEUE = None
#: seconds between a worker's checks that the tour's process is still its parent; and how long it lets the chapter
#: unwind (temporary files removed) before it exits regardless
_WATCH_EVERY, _UNWIND_GRACE = 0.5, 10.0


class _Stop(SystemExit):
    """Raised in a worker's main thread by SIGTERM (sent by the tour to stop it, or by the watchdog when the tour's
    process died): unwinds the chapter, so that ``atomic_path`` removes its temporary file, then the worker exits
    (a SystemExit: a worker stopped between chapters exits quietly, with status 128 + SIGTERM)."""


def _raise_stop(signum, _frame) -> None:
    raise _Stop(128 + signum)


def _watch_parent(parent: int) -> None:
    """A worker's watchdog thread: once the tour's process is gone (the worker re-parented, e.g. after SIGKILL),
    stop the chapter as SIGTERM would, and exit for good if it has not unwound within the grace period."""
    import _thread

    while os.getppid() == parent:
        time.sleep(_WATCH_EVERY)
    _thread.interrupt_main(signal.SIGTERM)
    time.sleep(_UNWIND_GRACE)
    os._exit(128 + signal.SIGTERM)


def _exit_now() -> None:
    """A worker's last exit handler: leave without tearing the interpreter down. Every chapter's results are
    written and sent by then; the teardown of torch (with ``torch._dynamo``, which torch's first optimiser
    imports) and matplotlib took 0.7–1.3 s per worker, all of it added to the tour's wall time, since the tour
    waits for its workers to exit. The status is 0: the tour reads its workers' results (and notices a worker
    that died), never their exit status; a worker stopped by SIGTERM leaves earlier, with 143."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _worker_start(queue, threads: int, parent: int) -> None:
    """A worker's start: the progress queue, signals, the watchdog on ``parent`` (the tour's pid, passed in: a
    worker that starts slowly on a busy machine may find its parent already gone), torch's thread count, and a quick
    exit (:func:`_exit_now`, registered now so that the exit handlers registered later, by the libraries the
    chapters import, still run before it)."""
    global _QUEUE
    _QUEUE = queue
    atexit.register(_exit_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    signal.signal(signal.SIGTERM, _raise_stop)  # the parent stops a worker with SIGTERM: unwind, then exit
    threading.Thread(target=_watch_parent, args=(parent,), name="kernelscope-watchdog", daemon=True).start()
    torch.set_num_threads(threads)


def _worker_run(out: str, key: str, quick: bool, seed: int, force: bool, threads: int) -> tuple:
    ch = {c.key: c for c in chapters()}[key]
    _QUEUE.put(("start", key))
    try:
        return _execute(Path(out), ch, quick, seed, force, _QueuedProgress(_QUEUE), threads)
    except _Stop:  # unwound (temporary files removed): leave at once, no result to send to a tour that stopped
        os._exit(128 + signal.SIGTERM)


def _run_parallel(todo: list[Chapter], n_jobs: int, out: Path, quick: bool, seed: int, force: bool,
                  base_threads: int, bar: Progress, finished, number: dict[str, str]) -> None:
    import multiprocessing
    import threading
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .chapters import CHAPTERS

    # a chapter a worker can find by its key runs there; another one (a test's, say) runs here afterwards
    registered = {id(c) for c in CHAPTERS}
    here = [ch for ch in todo if id(ch) not in registered]
    there = sorted((ch for ch in todo if id(ch) in registered), key=lambda c: -c.seconds)
    threads = max(1, base_threads // n_jobs)
    mp = multiprocessing.get_context("spawn")
    queue = mp.Queue()
    tasks: dict = {}

    def relay() -> None:  # the workers' progress, into this process's bars
        while (msg := queue.get()) is not None:
            kind = msg[0]
            if kind == "start":
                bar.print(f"> {number[msg[1]]} ...")
            elif kind == "print":
                bar.print(msg[1], msg[2])
            elif kind == "add":
                tasks[msg[1]] = bar.add_task(msg[2], total=msg[3])
            elif kind == "advance" and msg[1] in tasks:
                bar.advance(tasks[msg[1]])
            elif kind == "remove" and msg[1] in tasks:
                bar.remove_task(tasks.pop(msg[1]))

    listener = threading.Thread(target=relay, name="kernelscope-tour-progress", daemon=True)
    listener.start()
    pool = ProcessPoolExecutor(n_jobs, mp_context=mp, initializer=_worker_start,
                               initargs=(queue, threads, os.getpid()))
    try:
        bar.print(f"running {len(there)} chapters in {n_jobs} processes, {threads} torch thread(s) each")
        futures = {pool.submit(_worker_run, str(out), ch.key, quick, seed, force, threads): ch for ch in there}
        waiting = set(futures)
        while waiting:
            complete, waiting = wait(waiting, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in complete:
                ch = futures[fut]
                try:
                    outcome = fut.result()
                except Exception as exc:  # the worker process died (killed, out of memory)
                    outcome = ("error", f"{type(exc).__name__}: {exc}")
                finished(ch, outcome, bar)
    except BaseException:  # Ctrl-C (the workers ignore it): stop them; what they finished is saved
        stop = getattr(pool, "terminate_workers", None)  # Python >= 3.14
        if stop is not None:
            stop()
        else:  # before shutdown(), which forgets the processes
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        queue.put(None)
        listener.join(timeout=5.0)
    for ch in here:
        bar.print(f"> {number[ch.key]} ...")
        finished(ch, _execute(out, ch, quick, seed, force, bar, base_threads), bar)


def _write_outputs(out: Path, all_chapters: list[Chapter], shown: dict[str, _Saved], failed: dict[str, str],
                   quick: bool, seed: int, render_report) -> None:
    payload: dict = {"quick": quick, "seed": seed, "chapters": {}}
    configs: dict[str, str] = {}
    for ch in all_chapters:
        if ch.key in failed:
            payload["chapters"][ch.key] = {"title": ch.title, "error": failed[ch.key]}
        elif ch.key in shown:
            s = shown[ch.key]
            r = s.result
            payload["chapters"][ch.key] = {"title": ch.title, "quick": s.quick, "seed": s.seed,
                                           "numbers": r.numbers, "figures": [f.file for f in r.figures],
                                           "findings": r.findings}
            if (s.quick, s.seed) != (quick, seed):
                configs[ch.key] = config_label(s.quick, s.seed)
    atomic_write_json(out / "results.json", payload)
    results = {k: s.result for k, s in shown.items() if k not in failed}
    atomic_write_text(out / "index.html", render_report(all_chapters, results, failed, quick=quick,
                                                        other_config=configs))
