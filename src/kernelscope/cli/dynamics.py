"""``kernelscope lazy`` and ``kernelscope pathkernel``: the training-dynamics chapters from the command line.

Both write ``OUT/<name>.json`` (the numbers) and ``OUT/*.png`` (the figures). ``lazy`` saves each finished width
under ``OUT/steps/`` and resumes from there when run again with the same options.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .._arrays import ValidationError
from .._io import fmt

#: the lazy command's columns: the name each lazy-training metric has in its table, its slopes and its JSON key
_LAZY_COLUMNS = {"weight_change": "Δw rel", "ntk_change": "ΔΘ rel", "dist_net_lin": "net−lin",
                 "dist_net_flow": "net−flowΘ₀", "dist_net_inf": "net−flowΘ∞"}


# what the pathkernel command prints for each number it saves (the JSON keeps the short keys)
_LABELS = {
    "vs_T_theta0": "path kernel vs T·Θ₀ (initial NTK), relative Frobenius distance",
    "vs_T_thetaT": "path kernel vs T·Θ_T (final NTK), relative Frobenius distance",
    "T": "training time T = lr × steps",
    "T_preconditioned": "lr × steps (not a training time: this optimiser's steps are preconditioned or carry "
                        "momentum, so only the kernel's shape is compared with the tangent kernels)",
    "shape_vs_theta0": "path kernel vs initial NTK up to scale (min over c of ‖K − cΘ₀‖/‖K‖)",
    "shape_vs_thetaT": "path kernel vs final NTK up to scale",
    "test_accuracy": "test accuracy of the trained model",
}


def register(app: typer.Typer) -> None:
    @app.command()
    def lazy(
        out: Path = typer.Option(Path("lazy-out"), "--out", "-o", help="Folder for lazy.json and the figures."),
        dataset: str = typer.Option("1d", "--dataset", help="'1d' (two-layer erf, 20 points) or 'digits' "
                                    "(three-layer ReLU, parity of 64 digits)."),
        widths: list[str] = typer.Option(["16,64,256,1024"], "--widths",
                                         help="Widths m, comma-separated or repeated (--widths 16,64 --widths 256)."),
        steps: int = typer.Option(200, "--steps", help="Full-batch gradient-descent steps."),
        lr: float = typer.Option(0.0, "--lr", help="Step size (0: 0.5/λ_max(Θ₀) of the widest net)."),
        seed: int = typer.Option(0, "--seed", help="Random seed (data and weights)."),
    ) -> None:
        """Train nets of several widths next to their linearisations; print the lazy-training slopes."""
        from .._io import atomic_savefig, atomic_write_json
        from ..experiments.lazy import lazy_sweep
        from ..plots import dynamics as P
        from ..story import Progress, json_checkpoint
        from . import resumable
        from ._options import int_list, note

        if dataset not in ("1d", "digits"):
            raise ValidationError("--dataset", "'1d' or 'digits'", f"'{dataset}'")
        if steps < 1:
            raise ValidationError("--steps", "a positive integer", f"{steps}")
        if lr < 0:
            raise ValidationError("--lr", "a positive number (or 0 for automatic)", f"{lr}")
        ws = int_list(widths, "--widths")
        out.mkdir(parents=True, exist_ok=True)
        key = f"{dataset}_s{seed}_t{steps}_lr{lr:g}"
        saved = json_checkpoint(out / "steps", f"{key}_")
        loaded: list[str] = []

        def checkpoint(name, compute):  # the saved pieces, counted: a resumed run says what it did not redo
            fresh = []
            value = saved(name, lambda: fresh.append(True) or compute())
            if not fresh:
                loaded.append(name)
            return value

        with resumable(out / "steps"), Progress(file=sys.stderr) as bar:
            study = lazy_sweep(dataset, ws, steps=steps, lr=lr or None, seed=seed, track=bar.track, tag="w",
                               checkpoint=checkpoint)
        if loaded:
            note(f"resumed: {len(loaded)} saved piece(s) read from {out / 'steps'} instead of computed again "
                 f"({', '.join(loaded)}); delete that folder (or use another --out) to recompute them")
        sweep = study.sweep
        atomic_write_json(out / "lazy.json", sweep)
        atomic_savefig(P.plot_width_sweep(sweep).figure, out / "lazy_sweep.png", dpi=120)
        if dataset == "1d":
            ax = P.plot_lazy_functions(sweep.runs[-1], study.X, study.y, study.X_test)
            atomic_savefig(ax.figure, out / "lazy_functions.png", dpi=120)
        # one name per metric, the same in the table, the slopes and the legend of lazy_sweep.png
        columns = {k: name for k, name in _LAZY_COLUMNS.items()
                   if all(getattr(r, k) is not None for r in sweep.runs)}
        typer.echo(f"{'m':>6} " + " ".join(f"{name:>12}" for name in columns.values()))
        for r in sweep.runs:
            values = [getattr(r, k) for k in columns]
            typer.echo(f"{r.width:>6} " + " ".join(f"{(v[-1] if isinstance(v, list) else v):>12.3g}" for v in values))
        if len(ws) < 2:
            typer.echo("log-log slopes: n/a (they need at least 2 widths)")
        else:
            typer.echo("log-log slopes against m (lazy-training theory ≈ −0.5): "
                       + ", ".join(f"{name} {fmt(sweep.slopes[k], '+.2f')}" for k, name in columns.items()
                                   if k in sweep.slopes))
        typer.echo("columns: Δw rel = ‖w_T − w₀‖/‖w₀‖, ΔΘ rel = ‖Θ_T − Θ₀‖/‖Θ₀‖, net−lin = RMS(net − its "
                   "linearisation), net−flowΘ₀ and net−flowΘ∞ = RMS(net − the gradient-flow prediction with the "
                   "net's own Θ₀, with the infinite-width Θ∞)")
        typer.echo(f"wrote {out / 'lazy.json'} and figures in {out}")

    @app.command()
    def pathkernel(
        out: Path = typer.Option(Path("pathkernel-out"), "--out", "-o", help="Folder for pathkernel.json and figures."),
        dataset: str = typer.Option("1d", "--dataset", help="'1d' (MSE regression) or 'digits' (cross-entropy)."),
        width: int = typer.Option(256, "--width", help="Hidden width of the two-layer tanh net."),
        steps: int = typer.Option(100, "--steps", help="Gradient-descent steps."),
        lr: float = typer.Option(0.0, "--lr", help="Step size (0: 0.5/λ_max(Θ₀) for 1d, 0.05 for digits)."),
        exact: bool = typer.Option(True, "--exact/--left-endpoint", help="Gauss–Legendre per step, or Domingos' "
                                   "left-endpoint sum."),
        nodes: int = typer.Option(4, "--nodes", help="Gauss–Legendre nodes per step."),
        batch_size: int = typer.Option(0, "--batch-size", help="Mini-batch size (0: full batch)."),
        seed: int = typer.Option(0, "--seed", help="Random seed (data, weights, batches)."),
        optimizer: str = typer.Option("sgd", "--optimizer", help="sgd, momentum, adam or adamw (torch.optim's)."),
        weight_decay: float = typer.Option(0.0, "--weight-decay", help="Weight decay λ (its part is reported "
                                           "separately: it belongs to no training point)."),
    ) -> None:
        """Train a net by gradient descent and rewrite it as a kernel machine Σ a_i K(x, x_i) + b."""
        from dataclasses import asdict

        from .._io import atomic_savefig, atomic_write_json
        from ..experiments.pathkernel import kernel_machine
        from ..plots import dynamics as P
        from ..story import Progress

        if dataset not in ("1d", "digits"):
            raise ValidationError("--dataset", "'1d' or 'digits'", f"'{dataset}'")
        for name, v in (("--width", width), ("--steps", steps), ("--nodes", nodes)):
            if v < 1:
                raise ValidationError(f"{name}", "a positive integer", f"{v}")
        if lr < 0 or batch_size < 0:
            raise ValidationError("--lr and --batch-size", "non-negative numbers", f"{lr} and {batch_size}")
        out.mkdir(parents=True, exist_ok=True)
        with Progress(file=sys.stderr) as bar:
            run = kernel_machine(dataset, width=width, steps=steps, lr=lr or None, exact=exact, nodes=nodes,
                                 batch_size=batch_size or None, seed=seed, optimizer=optimizer,
                                 weight_decay=weight_decay, track=bar.track)
        res = run.result
        if dataset == "1d":
            figure = P.plot_path_agreement(res, run.X_test).figure
            summary = asdict(run.distance)
        else:
            figure = P.plot_explanations(res, run.X_train, run.X_test, indices=list(range(4)),
                                         labels_train=run.y_train)[0, 0].figure
            summary = {"test_accuracy": run.test_accuracy}
        atomic_savefig(figure, out / "pathkernel.png", dpi=120)
        payload = {"dataset": dataset, "width": width, "steps_done": res.steps_done, "stopped_at": res.stopped_at,
                   "diverged": res.diverged, "optimizer": optimizer,
                   "T": res.T, "exact": exact, "nodes": nodes, "rel_error": res.rel_error,
                   "f_model": res.f_model, "f_kernel": res.f_kernel, "losses": res.losses, **summary}
        atomic_write_json(out / "pathkernel.json", payload)
        how = "exact quadrature" if exact else "left-endpoint sum"
        plain = optimizer == "sgd"  # T = lr × steps is a training time (gradient flow's) only for plain SGD
        when = f"T = {res.T:.4g}" if plain else f"{optimizer}, lr × steps = {res.T:.4g}"
        typer.echo(f"trained {res.steps_done} steps ({when}); loss {res.losses[0]:.4g} -> {res.losses[-1]:.4g}")
        typer.echo(f"kernel machine ({how}) vs model: relative error {res.rel_error:.3e}")
        for k, v in summary.items():
            if not plain and k in ("vs_T_theta0", "vs_T_thetaT"):
                continue  # distances to T·Θ: meaningless when the steps are preconditioned (the JSON keeps them)
            label = _LABELS["T_preconditioned"] if (k == "T" and not plain) else _LABELS.get(k, k.replace("_", " "))
            typer.echo(f"{label}: {v:.4g}")
        typer.echo(f"wrote {out / 'pathkernel.json'} and {out / 'pathkernel.png'}")
        if res.diverged:
            typer.echo(f"training DIVERGED at step {res.stopped_at} (loss {res.losses[-1]:.4g}): the numbers above "
                       "describe the steps before it; use a smaller --lr.", err=True)
            raise typer.Exit(1)
