"""``kernelscope spirals`` (also ``spiral``): train the lecture's spiral network and write its figures and a JSON
of results. Named like the chapter of the story (``kernelscope tour --only spirals``)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    def spirals(
        out: Path = typer.Option(Path("spiral-out"), "--out", "-o", help="Folder for the figures and results.json."),
        classes: int = typer.Option(5, "--classes", "-k", help="Number of spiral arms K (>= 2)."),
        n_per_class: int = typer.Option(1000, "--n-per-class", "-n", help="Training points per arm."),
        noise: float = typer.Option(0.2, "--noise", help="Angular noise of the spiral (>= 0)."),
        width: int = typer.Option(100, "--width", "-w", help="Hidden width H of 2 -> H (ReLU) -> 2 -> K."),
        epochs: int = typer.Option(2000, "--epochs", "-e", help="Full-batch training epochs."),
        lr: float = typer.Option(1e-3, "--lr", help="Learning rate."),
        weight_decay: float = typer.Option(1e-5, "--weight-decay", help="Weight decay."),
        optimizer: str = typer.Option("adam", "--optimizer", help="adam, or sgd (with momentum 0.9)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the data and the initial weights."),
        sweep: list[str] | None = typer.Option(None, "--sweep",
                                                  help="Also train these hidden widths and plot the curves "
                                                       "(comma-separated or repeated: --sweep 2,8 --sweep 32)."),
        no_gif: bool = typer.Option(False, "--no-gif", help="Skip the two GIFs (faster)."),
        no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    ) -> None:
        """Train 2 -> H (ReLU) -> 2 (embedding) -> K on K spiral arms; write embedding/regions/interpolation figures."""
        import sys
        import warnings

        from .._arrays import KernelscopeWarning
        from .._io import atomic_savefig, atomic_write_json
        from ..experiments import spirals as sp
        from ..plots import spirals as ps
        from ..story import Progress
        from ._options import int_list, note

        sweep = int_list(sweep, "--sweep") if sweep else None
        out.mkdir(parents=True, exist_ok=True)
        with Progress(not no_progress, file=sys.stderr) as bar, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KernelscopeWarning)
            track = bar.track
            run = sp.train_spiral(classes, n_per_class, noise, width=width, epochs=epochs, lr=lr,
                                  weight_decay=weight_decay, optimizer=optimizer, seed=seed, track=track)
            sweep_res = None
            if sweep:
                sweep_res = sp.spiral_width_sweep(sweep, classes, n_per_class, noise, epochs=epochs, lr=lr,
                                           weight_decay=weight_decay, optimizer=optimizer, seed=seed, track=track)
        for w in caught:
            note(str(w.message))

        written = []

        def save(ax, name):
            atomic_savefig(ax.figure, out / name)
            written.append(name)

        save(ps.plot_embedding_panels(run, 6)[0], "embedding.png")
        save(ps.plot_input_regions(run), "input_regions.png")
        save(ps.plot_interpolation_panels(run)[0], "interpolation.png")
        save(ps.plot_training_curves(run)[0], "curves.png")
        if not no_gif and run.diverged_at is None:
            ps.animate_embedding(run, out / "embedding.gif")
            ps.animate_interpolation(run, out / "interpolation.gif")
            written += ["embedding.gif", "interpolation.gif"]
        results = run.summary()
        results["figures"] = written
        if sweep_res is not None:
            save(ps.plot_width_sweep(sweep_res)[0], "width_sweep.png")
            results["width_sweep"] = sweep_res.summary()
            results["figures"] = written
        atomic_write_json(out / "results.json", results)
        state = f"diverged at epoch {run.diverged_at}" if run.diverged_at is not None else "done"
        typer.echo(f"{state}: train accuracy {run.final_train_accuracy:.1%}, test accuracy "
                   f"{run.final_test_accuracy:.1%}, final loss {run.final_loss:.4g}")
        typer.echo(f"wrote {len(written)} figure(s) and results.json to {out}")
        if run.diverged_at is not None:  # the files describe a failed run: say so in the exit status
            typer.echo(f"kernelscope: error: training diverged at epoch {run.diverged_at}: use a smaller --lr.",
                       err=True)
            raise typer.Exit(1)

    app.command("spirals")(spirals)
    app.command("spiral", hidden=True, help="The same as `kernelscope spirals`.")(spirals)
