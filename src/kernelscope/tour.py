"""The tour: every chapter of the story as a resumable step, rendered into one HTML report.

A chapter is a module in :mod:`kernelscope.chapters` that defines ``CHAPTER = Chapter(...)``; the tour finds
them itself (ordered by ``Chapter.order``), so a new chapter plugs in without touching the others.

Layout of the output folder ``DIR``::

    DIR/index.html          the report (story text, figures, tables)
    DIR/results.json        every chapter's numbers
    DIR/figures/*.png|gif   the figures
    DIR/steps/<key>.json    one finished chapter (written atomically, last): its presence means "done"
    DIR/steps/<key>/*.json  checkpoints inside a chapter (e.g. each finished width of a sweep)

Running the tour again skips the finished chapters (``force=True`` redoes them); a chapter interrupted half
way resumes from its checkpoints.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ._io import atomic_savefig, atomic_write_json, atomic_write_text, to_jsonable

__all__ = ["Chapter", "ChapterResult", "Figure", "Table", "StepContext", "chapters", "run_tour", "TourResult"]


@dataclass
class Figure:
    file: str  # path relative to DIR, e.g. "figures/linsys_line.png"
    caption: str


@dataclass
class Table:
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
    def from_json(d: dict[str, Any]) -> "ChapterResult":
        return ChapterResult(
            numbers=d.get("numbers", {}),
            figures=[Figure(**f) for f in d.get("figures", [])],
            tables=[Table(**t) for t in d.get("tables", [])],
            findings=list(d.get("findings", [])),
        )


@dataclass
class Chapter:
    key: str  # short id, used in file names and on the command line: "linsys"
    order: int  # position in the story (10, 20, ...)
    title: str
    intro: str  # the story's text for this chapter (HTML paragraphs allowed)
    run: Callable[["StepContext"], ChapterResult]


class StepContext:
    """What a chapter step gets: where to write, quick or full, a seed, progress and checkpoints."""

    def __init__(self, out: Path, chapter: Chapter, *, quick: bool, seed: int, progress: Any = None):
        self.out = Path(out)
        self.chapter = chapter
        self.quick = quick
        self.seed = seed
        self._progress = progress
        self.fig_dir = self.out / "figures"
        self.ckpt_dir = self.out / "steps" / chapter.key
        self.fig_dir.mkdir(parents=True, exist_ok=True)

    # -- figures ---------------------------------------------------------------------------------------------
    def figure_path(self, name: str) -> Path:
        """Absolute path of a figure file of this chapter (``name`` with its suffix, e.g. ``"line.png"``)."""
        return self.fig_dir / f"{self.chapter.key}_{name}"

    def savefig(self, fig, name: str, caption: str, **kwargs: Any) -> Figure:
        """Save a matplotlib figure atomically, close it, and return the report entry for it."""
        import matplotlib.pyplot as plt

        path = self.figure_path(name)
        atomic_savefig(fig, path, **kwargs)
        plt.close(fig)
        return Figure(file=str(path.relative_to(self.out)), caption=caption)

    def figure(self, path: Path, caption: str) -> Figure:
        """Report entry for a figure file written by other means (a GIF, say) under ``figures/``."""
        return Figure(file=str(Path(path).relative_to(self.out)), caption=caption)

    # -- checkpoints -----------------------------------------------------------------------------------------
    def checkpoint(self, name: str, compute: Callable[[], Any]) -> Any:
        """Return the saved JSON result ``name`` of this chapter, computing and saving it (atomically) if absent.

        Use it for each expensive piece (each width of a sweep), so an interrupted chapter resumes.
        """
        path = self.ckpt_dir / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        value = to_jsonable(compute())
        atomic_write_json(path, value)
        return value

    # -- progress --------------------------------------------------------------------------------------------
    def track(self, iterable: Iterable[Any], description: str, total: int | None = None) -> Iterator[Any]:
        """Iterate with a progress bar (rich) when the tour shows progress."""
        if self._progress is None:
            yield from iterable
            return
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        task = self._progress.add_task(f"  {self.chapter.key}: {description}", total=total)
        try:
            for item in iterable:
                yield item
                self._progress.advance(task)
        finally:
            self._progress.remove_task(task)


def chapters() -> list[Chapter]:
    """All chapters found in :mod:`kernelscope.chapters`, in story order."""
    from . import chapters as pkg

    found: list[Chapter] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        ch = getattr(mod, "CHAPTER", None)
        if isinstance(ch, Chapter):
            found.append(ch)
    keys = [c.key for c in found]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise RuntimeError(f"two chapters share the key(s) {sorted(dup)}")
    return sorted(found, key=lambda c: (c.order, c.key))


@dataclass
class TourResult:
    out: Path
    done: list[str]  # chapters computed in this run
    skipped: list[str]  # chapters already done (resumed)
    failed: dict[str, str]  # key -> error message

    @property
    def ok(self) -> bool:
        return not self.failed


def _load_done(out: Path, ch: Chapter, quick: bool) -> ChapterResult | None:
    path = out / "steps" / f"{ch.key}.json"
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    # A quick result does not stand in for a full one, nor a full one for a quick one.
    if d.get("status") != "done" or bool(d.get("quick")) != bool(quick):
        return None
    return ChapterResult.from_json(d["result"])


def run_tour(out: str | Path, *, quick: bool = False, force: bool = False, only: Sequence[str] | None = None,
             seed: int = 0, progress: bool = True) -> TourResult:
    """Run the chapters (all, or ``only`` those keys), resuming finished ones, and write the report.

    Parameters
    ----------
    out : folder to write ``index.html``, ``results.json`` and ``figures/`` into (created if missing).
    quick : smaller sizes for a fast look (and for tests); results are kept apart from full ones.
    force : redo chapters even when they are already done.
    only : chapter keys to run (others already done are still shown in the report).
    seed : base seed handed to every chapter.
    progress : show rich progress bars.
    """
    from ._arrays import ValidationError
    from .report import render_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_chapters = chapters()
    known = [c.key for c in all_chapters]
    if only:
        bad = [k for k in only if k not in known]
        if bad:
            raise ValidationError("only", "chapter keys among " + ", ".join(known), ", ".join(bad))
    selected = [c for c in all_chapters if not only or c.key in only]

    done: list[str] = []
    skipped: list[str] = []
    failed: dict[str, str] = {}
    results: dict[str, ChapterResult] = {}
    for ch in all_chapters:  # what is already there shows in the report even if not selected
        prev = _load_done(out, ch, quick)
        if prev is not None:
            results[ch.key] = prev

    bar_ctx = nullcontext(None)
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar_ctx = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), transient=False)
    with bar_ctx as bar:
        overall = bar.add_task("tour", total=len(selected)) if bar is not None else None
        for ch in selected:
            if not force and ch.key in results:
                skipped.append(ch.key)
                if bar is not None:
                    bar.console.print(f"[dim]- {ch.title}: already done, skipped (--force to redo)[/dim]")
                    bar.advance(overall)
                continue
            if force:
                import shutil

                shutil.rmtree(out / "steps" / ch.key, ignore_errors=True)
            ctx = StepContext(out, ch, quick=quick, seed=seed, progress=bar)
            t0 = time.perf_counter()
            try:
                res = ch.run(ctx)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one chapter failing must not lose the others
                failed[ch.key] = f"{type(exc).__name__}: {exc}"
                (out / "steps").mkdir(parents=True, exist_ok=True)
                atomic_write_text(out / "steps" / f"{ch.key}.error.txt", traceback.format_exc())
                results.pop(ch.key, None)
                if bar is not None:
                    bar.console.print(f"[red]x {ch.title}: {failed[ch.key]}[/red]")
                    bar.advance(overall)
                continue
            seconds = time.perf_counter() - t0
            atomic_write_json(out / "steps" / f"{ch.key}.json",
                              {"key": ch.key, "title": ch.title, "status": "done", "quick": quick,
                               "seed": seed, "seconds": round(seconds, 3), "result": res.to_json()})
            results[ch.key] = ChapterResult.from_json(res.to_json())
            done.append(ch.key)
            if bar is not None:
                bar.console.print(f"[green]v {ch.title}[/green] ({seconds:.1f} s)")
                bar.advance(overall)
            _write_outputs(out, all_chapters, results, failed, quick, render_report)
    _write_outputs(out, all_chapters, results, failed, quick, render_report)
    return TourResult(out=out, done=done, skipped=skipped, failed=failed)


def _write_outputs(out: Path, all_chapters: list[Chapter], results: dict[str, ChapterResult],
                   failed: dict[str, str], quick: bool, render_report) -> None:
    payload = {"quick": quick, "chapters": {}}
    for ch in all_chapters:
        if ch.key in results:
            r = results[ch.key]
            payload["chapters"][ch.key] = {"title": ch.title, "numbers": r.numbers,
                                           "figures": [f.file for f in r.figures],
                                           "findings": r.findings}
        elif ch.key in failed:
            payload["chapters"][ch.key] = {"title": ch.title, "error": failed[ch.key]}
    atomic_write_json(out / "results.json", payload)
    atomic_write_text(out / "index.html", render_report(all_chapters, results, failed, quick=quick))
