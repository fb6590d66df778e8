"""The story framework: what a chapter is, what it gets to work with, and what it returns.

A chapter (a module of :mod:`kernelscope.chapters`) holds the story's text and assembles figures and tables from
the results of :mod:`kernelscope.experiments`; the runner (:mod:`kernelscope.tour`) runs chapters and writes the
report. This module knows neither the chapters nor the runner.

Saved work is keyed by its configuration (:func:`config_id`: quick or full sizes, and the seed), so a quick run
and a full run into the same folder never mix their pieces::

    DIR/steps/<key>-<config>.json   one finished chapter (written atomically, last): its presence means "done"
    DIR/steps/<key>-<config>/*.json checkpoints inside a chapter (each finished width of a sweep, say)
    DIR/figures/<config>/*.png      the figures
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._io import atomic_savefig, atomic_write_text, fmt, from_json, to_json, to_jsonable

__all__ = ["Chapter", "ChapterResult", "Figure", "Table", "StepContext", "config_id", "config_label", "Progress",
           "json_checkpoint", "fmt"]


def config_id(quick: bool, seed: int) -> str:
    """Name of a run's configuration in file names: ``"quick-seed0"``, ``"full-seed3"``."""
    return f"{'quick' if quick else 'full'}-seed{int(seed)}"


def config_label(quick: bool, seed: int) -> str:
    """The configuration as a reader sees it on the page."""
    return f"{'quick run (small sizes)' if quick else 'full run'}, seed {int(seed)}"


#: what a checkpoint file says it is; a file without it (an older layout) is computed again
CHECKPOINT_FORMAT = "kernelscope checkpoint 1"


def json_checkpoint(folder: Path, prefix: str = "") -> Callable[[str, Callable[[], Any]], Any]:
    """``checkpoint(name, compute)``: the value saved in ``folder/<prefix><name>.json`` if it is there, else
    ``compute()``, saved atomically, so a long computation interrupted half way resumes.

    Typed: the value is saved in its lossless JSON form (:func:`kernelscope._io.to_json`), so a dataclass comes
    back as the same dataclass, with its nested dataclasses, NumPy arrays and torch tensors. Both a fresh and a
    resumed run get the value read back from that form, so they continue from exactly the same numbers. A file
    that does not read back (cut short, or written by a version whose classes have changed) is computed again.
    """
    folder = Path(folder)

    def checkpoint(name: str, compute: Callable[[], Any]) -> Any:
        path = folder / f"{prefix}{name}.json"
        try:
            saved = json.loads(path.read_text())
            if saved.get("format") == CHECKPOINT_FORMAT:
                return from_json(saved["value"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass  # missing, cut short or of another layout: computed again below
        value = to_json(compute())
        atomic_write_text(path, json.dumps({"format": CHECKPOINT_FORMAT, "value": value}) + "\n")
        return from_json(value)

    return checkpoint


@dataclass
class Figure:
    """A figure of a chapter on the page: its file (relative to the tour folder) and its caption."""

    file: str  # path relative to DIR, e.g. "figures/full-seed0/linsys_line.png"
    caption: str


@dataclass
class Table:
    """A table of a chapter on the page: a title, column names, rows of cells (:func:`kernelscope.report.format_cell`)
    and a note under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass
class ChapterResult:
    """What a chapter step returns: its numbers (JSON), figures, tables and what the numbers show."""

    numbers: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    @staticmethod
    def from_json(d: dict[str, Any]) -> ChapterResult:
        return ChapterResult(
            numbers=d.get("numbers", {}),
            figures=[Figure(**f) for f in d.get("figures", [])],
            tables=[Table(**t) for t in d.get("tables", [])],
            findings=list(d.get("findings", [])),
        )


@dataclass
class Chapter:
    """One chapter of the story: its key (file names, ``--only``), place, title, text, and the step that runs its
    experiments and returns a :class:`ChapterResult`."""

    key: str  # short id, used in file names and on the command line: "linsys"
    order: int  # position in the story (10, 20, ...)
    title: str
    intro: str  # the story's text for this chapter (HTML paragraphs allowed)
    run: Callable[[StepContext], ChapterResult]
    threads: int | None = None  # torch intra-op threads the runner gives this chapter (None: as they are)
    #: roughly how long the full chapter runs, in seconds on a 2-core machine: a parallel tour (``jobs > 1``)
    #: starts the longest chapters first, so that no worker is left with a long one at the end
    seconds: float = 30.0


class Progress:
    """Progress of long work, on a terminal (rich bars) or not (plain lines, at least one every ``interval`` s).

    Off a terminal (a log file, CI, a pipe) rich draws nothing until the end, so this prints a line when work
    starts and finishes, and a heartbeat line with the current count while a piece of work runs.
    """

    def __init__(self, enabled: bool = True, *, file=None, interval: float = 10.0, force_plain: bool = False):
        self.enabled = enabled
        self.file = file if file is not None else sys.stdout
        self.interval = interval
        self.plain = force_plain or not getattr(self.file, "isatty", lambda: False)()
        self._rich = None
        self._tasks: dict[int, list[Any]] = {}  # id -> [description, done, total, t0]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = 0.0
        self._ids = itertools.count()

    # -- lifetime ----------------------------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        if self.plain:
            self._thread = threading.Thread(target=self._heartbeat, name="kernelscope-progress", daemon=True)
            self._thread.start()
        else:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(file=self.file), transient=False)
            self._rich.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._rich is not None:
            self._rich.__exit__(*exc)

    # -- output ------------------------------------------------------------------------------------------------
    def print(self, message: str, style: str | None = None) -> None:
        """One line of news (a chapter done, skipped, failed)."""
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(f"[{style}]{message}[/{style}]" if style else message, highlight=False,
                                     markup=bool(style))
        else:
            self._line(message)

    def _line(self, message: str) -> None:
        with self._lock:
            print(message, file=self.file, flush=True)
            self._last = time.monotonic()

    def _status(self, task: list[Any]) -> str:
        desc, done, total, t0 = task
        count = f"{done}/{total}" if total is not None else f"{done}"
        return f"{desc}: {count} ({time.monotonic() - t0:.0f} s)"

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            if time.monotonic() - self._last < self.interval:
                continue
            with self._lock:
                tasks = [list(t) for t in self._tasks.values()]
            if tasks:
                self._line("  ... " + "; ".join(self._status(t) for t in tasks))

    # -- tasks -------------------------------------------------------------------------------------------------
    def add_task(self, description: str, total: int | None = None) -> int:
        if self._rich is not None:
            return self._rich.add_task(description, total=total)
        tid = next(self._ids)
        with self._lock:
            self._tasks[tid] = [description, 0, total, time.monotonic()]
        if self.enabled:  # the same count as the heartbeat lines that follow: "widths: 0/4", then "widths: 2/4 (9 s)"
            self._line(f"{description}: " + (f"0/{total}" if total is not None else "started"))
        return tid

    def advance(self, task: int) -> None:
        if self._rich is not None:
            self._rich.advance(task)
            return
        with self._lock:
            t = self._tasks.get(task)
            if t is not None:
                t[1] += 1
        if self.enabled and t is not None and time.monotonic() - self._last >= self.interval:
            self._line("  " + self._status(t))

    def remove_task(self, task: int) -> None:
        if self._rich is not None:
            self._rich.remove_task(task)
            return
        with self._lock:
            self._tasks.pop(task, None)

    def track(self, iterable: Iterable[Any], description: str, total: int | None = None) -> Iterator[Any]:
        """Iterate with progress: a bar on a terminal, plain lines otherwise."""
        if not self.enabled:
            yield from iterable
            return
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        task = self.add_task(description, total=total)
        try:
            for item in iterable:
                yield item
                self.advance(task)
        finally:
            self.remove_task(task)


class StepContext:
    """What a chapter step gets: where to write, quick or full, a seed, progress and checkpoints."""

    def __init__(self, out: Path, chapter: Chapter, *, quick: bool, seed: int, progress: Progress | None = None,
                 base_threads: int | None = None):
        self.out = Path(out)
        self.base_threads = base_threads  # torch's thread count before the runner applied Chapter.threads
        self.chapter = chapter
        self.quick = quick
        self.seed = seed
        self._progress = progress
        self.fig_dir = self.out / "figures" / config_id(quick, seed)  # a full run's figures survive a quick one
        self.ckpt_dir = self.out / "steps" / f"{chapter.key}-{config_id(quick, seed)}"
        self.fig_dir.mkdir(parents=True, exist_ok=True)

    # -- figures ---------------------------------------------------------------------------------------------
    def threads(self, n: int | None = None):
        """Context: run a block of the chapter on ``n`` torch threads (None: the count from before the chapter's
        ``Chapter.threads``), e.g. the widest networks of a chapter that otherwise runs on one thread."""
        from ._threads import torch_threads

        return torch_threads(self.base_threads if n is None else n)

    def figure_path(self, name: str) -> Path:
        """Absolute path of a figure file of this chapter (``name`` with its suffix, e.g. ``"line.png"``)."""
        return self.fig_dir / f"{self.chapter.key}_{name}"

    def savefig(self, fig, name: str, caption: str, **kwargs: Any) -> Figure:
        """Save a matplotlib figure atomically and return the report entry for it.

        The library's figures belong to no pyplot window (:func:`kernelscope.plots.new_figure`); one made through
        pyplot (a chapter of your own, say) is closed there once saved.
        """
        path = self.figure_path(name)
        atomic_savefig(fig, path, **kwargs)
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None and getattr(fig.canvas, "manager", None) is not None:
            pyplot.close(fig)
        return Figure(file=str(path.relative_to(self.out)), caption=caption)

    def figure(self, path: Path, caption: str) -> Figure:
        """Report entry for a figure file written by other means (a GIF, say) under ``figures/``."""
        return Figure(file=str(Path(path).relative_to(self.out)), caption=caption)

    # -- checkpoints -----------------------------------------------------------------------------------------
    def checkpoint(self, name: str, compute: Callable[[], Any]) -> Any:
        """Return the saved result ``name`` of this chapter, computing and saving it (atomically) if absent; a
        dataclass comes back as the same dataclass (:func:`json_checkpoint`).

        Use it for each expensive piece (each width of a sweep), so an interrupted chapter resumes. Checkpoints
        live under this run's configuration: a quick run never reads a full run's pieces.
        """
        return json_checkpoint(self.ckpt_dir)(name, compute)

    # -- progress --------------------------------------------------------------------------------------------
    def track(self, iterable: Iterable[Any], description: str, total: int | None = None) -> Iterator[Any]:
        """Iterate with progress when the tour shows progress."""
        if self._progress is None:
            return iter(iterable)
        return self._progress.track(iterable, f"  {self.chapter.key}: {description}", total=total)
