"""``kernelscope tour``: the whole story into one report."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def tour(
        out: Path = typer.Option(Path("tour-out"), "--out", "-o",
                                 help="Folder for index.html, results.json, figures/."),
        quick: bool = typer.Option(False, "--quick", help="Small sizes: the whole story in a few minutes."),
        force: bool = typer.Option(False, "--force", help="Redo chapters that are already done."),
        only: list[str] | None = typer.Option(None, "--only", help="Run only these chapters (keys from --list; "
                                              "comma-separated or repeated: --only lazy,pathkernel --only spirals)."),
        seed: int = typer.Option(0, "--seed", help="Base random seed."),
        no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
        jobs: int = typer.Option(0, "--jobs", "-j", min=0,
                                 help="Chapters run at once, each in its own process (0: one per torch thread; "
                                      "1: one after the other)."),
        list_chapters: bool = typer.Option(False, "--list", help="List the chapters and exit."),
    ) -> None:
        """Run every chapter (resuming what is done) and write OUT/index.html, OUT/results.json and figures."""
        from ..tour import chapters, run_tour

        if list_chapters:
            for ch in chapters():
                typer.echo(f"{ch.key:12s} {ch.title}")
            return
        from . import resumable
        from ._options import ALIASES, split_list

        # a subcommand's name is accepted for its chapter (`--only spiral` is the chapter `spirals`)
        only = [ALIASES.get(k, k) for k in split_list(only, "--only")] or None
        with resumable(out):
            res = run_tour(out, quick=quick, force=force, only=only, seed=seed, progress=not no_progress,
                           jobs=jobs)
        typer.echo(f"report: {res.out / 'index.html'}  (done {len(res.done)}, resumed {len(res.skipped)}, "
                   f"failed {len(res.failed)})")
        if res.failed:
            for key, msg in res.failed.items():
                typer.echo(f"chapter {key} failed: {msg} (details in {res.out}/steps/{key}-*.error.txt)", err=True)
            raise typer.Exit(1)
