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
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._io import atomic_write_json, atomic_write_text
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
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if d.get("status") != "done" or "result" not in d:
        return None
    return _Saved(ChapterResult.from_json(d["result"]), bool(d.get("quick")), int(d.get("seed", 0)))


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
             seed: int = 0, progress: bool = True) -> TourResult:
    """Run the chapters (all, or ``only`` those keys), resuming finished ones, and write the report.

    Parameters
    ----------
    out : folder to write ``index.html``, ``results.json`` and ``figures/`` into (created if missing).
    quick : smaller sizes for a fast look (and for tests); saved apart from full ones.
    force : redo the selected chapters even when they are already done in this configuration.
    only : chapter keys to run (the others stay on the page as they were finished before).
    seed : base seed handed to every chapter.
    progress : show progress (bars on a terminal, plain lines at least every ~10 s otherwise).

    An interruption (Ctrl-C) loses nothing finished: the report is written with what is done, and running the
    same call again resumes.
    """
    from ._arrays import ValidationError
    from .report import render_report

    out = Path(out)
    all_chapters = chapters()
    known = [c.key for c in all_chapters]
    if only:
        bad = [k for k in only if k not in known]
        if bad:
            raise ValidationError("only", "chapter keys among " + ", ".join(known), ", ".join(bad))
    out.mkdir(parents=True, exist_ok=True)
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

    with Progress(progress) as bar:
        try:
            for i, ch in enumerate(selected, 1):
                here = f"[{i}/{len(selected)}] {ch.title}"
                saved = shown.get(ch.key)
                if not force and saved is not None and (saved.quick, saved.seed) == (quick, seed):
                    skipped.append(ch.key)
                    bar.print(f"- {here}: already done, skipped (--force to redo)", "dim")
                    continue
                ctx = StepContext(out, ch, quick=quick, seed=seed, progress=bar, base_threads=torch.get_num_threads())
                if force:
                    shutil.rmtree(ctx.ckpt_dir, ignore_errors=True)
                bar.print(f"> {here} ...")
                t0 = time.perf_counter()
                try:
                    with torch_threads(ch.threads):
                        res = ch.run(ctx)
                except Exception as exc:  # one chapter failing must not lose the others
                    failed[ch.key] = f"{type(exc).__name__}: {exc}"
                    atomic_write_text(out / "steps" / f"{ch.key}-{config_id(quick, seed)}.error.txt",
                                      traceback.format_exc())
                    shown.pop(ch.key, None)
                    bar.print(f"x {here}: {failed[ch.key]}", "red")
                    write()
                    continue
                seconds = time.perf_counter() - t0
                atomic_write_json(out / "steps" / f"{ch.key}-{config_id(quick, seed)}.json",
                                  {"key": ch.key, "title": ch.title, "status": "done", "quick": quick, "seed": seed,
                                   "seconds": round(seconds, 3), "result": res.to_json()})
                shown[ch.key] = _Saved(ChapterResult.from_json(res.to_json()), quick, seed)
                done.append(ch.key)
                bar.print(f"v {here} ({seconds:.1f} s)", "green")
                write()
        finally:  # also on Ctrl-C: the page shows everything finished so far
            write()
    other = {k: config_label(s.quick, s.seed) for k, s in shown.items() if (s.quick, s.seed) != (quick, seed)}
    return TourResult(out=out, done=done, skipped=skipped, failed=failed, other_config=other)


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
