"""``kernelscope regress``: kernel regression from files.

    kernelscope regress --train train.csv --test test.csv --kernel rbf --ridge 1e-3 --out pred.csv [--std]

``--kernel ntk|nngp`` is the network kernel of ``kernelscope kernel``, with the same options and defaults
(``--depth`` counts hidden layers).

Files are ``.npy`` (a 2-D array) or text (``.csv``/``.txt``/``.tsv``: numbers, an optional header line), read by
:func:`kernelscope.cli._files.read_table`. The target is
the column ``--target-col`` of the training file (default the last). A test file with as many columns as the
training file carries its targets too (the test RMSE is printed); one with a column fewer is features only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from .._arrays import ValidationError
from ._files import read_table
from ._options import NETWORK_DEFAULTS

KERNEL_CHOICES = ("rbf", "laplace", "poly", "linear", "arccos", "erf", "ntk", "nngp")
#: the options each --kernel takes (the rest are refused by name, not by a Python TypeError)
KERNEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "rbf": ("gamma", "lengthscale"), "laplace": ("gamma",), "poly": ("degree", "gamma", "coef0"), "linear": (),
    "arccos": (), "erf": (), "ntk": ("depth", "w_std", "b_std", "activation"),
    "nngp": ("depth", "w_std", "b_std", "activation"),
}


def kernel_from_options(kernel: str, options: dict):
    """The kernel object of ``--kernel`` and its options (those given, i.e. not None); a network kernel (``ntk``,
    ``nngp``) takes what is not given from :data:`~kernelscope.cli._options.NETWORK_DEFAULTS`."""
    from .. import kernels as _kernels
    from ..regression import MLPKernel

    if kernel not in KERNEL_CHOICES:
        raise ValidationError("--kernel", f"one of {', '.join(KERNEL_CHOICES)}", f"{kernel!r}")
    given = {k: v for k, v in options.items() if v is not None}
    allowed = KERNEL_OPTIONS[kernel]
    for name, value in given.items():
        if name not in allowed:
            takes = ", ".join("--" + a.replace("_", "-") for a in allowed) or "no options"
            raise ValidationError("--" + name.replace("_", "-"), f"an option of the chosen kernel ({kernel} takes: "
                                  f"{takes})", f"--{name.replace('_', '-')} {value}")
    if kernel in ("ntk", "nngp"):  # the network of `kernelscope kernel`, with the same defaults
        return MLPKernel(**{**NETWORK_DEFAULTS, **given}, nngp=kernel == "nngp")
    return _kernels.get(kernel, **given)


def split_target(table: np.ndarray, col: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    n_cols = table.shape[1]
    if n_cols < 2:
        raise ValidationError(f"{what}", "at least 2 columns (features and a target)", f"{n_cols}")
    if not -n_cols <= col < n_cols:
        raise ValidationError("--target-col", f"a column index in [{-n_cols}, {n_cols - 1}]", f"{col}")
    col = col % n_cols
    return np.delete(table, col, axis=1), table[:, col]


#: what write_predictions writes: NumPy's .npy, or comma-separated text
PREDICTION_SUFFIXES = (".csv", ".npy", ".txt")


def write_predictions(path: Path, mean: np.ndarray, std: np.ndarray | None) -> None:
    """Write ``mean`` (and ``std``) as columns, atomically: ``.npy`` (N, 1|2) or ``.csv`` with a header."""
    import io

    from .._io import atomic_write_bytes, atomic_write_text

    table = np.column_stack([mean] if std is None else [mean, std])
    path = Path(path)
    if path.suffix.lower() == ".npy":
        buf = io.BytesIO()
        np.save(buf, table)
        atomic_write_bytes(path, buf.getvalue())
        return
    header = "prediction" + (",std" if std is not None else "")
    lines = [header] + [",".join(f"{v:.17g}" for v in row) for row in table]
    atomic_write_text(path, "\n".join(lines) + "\n")


def register(app: typer.Typer) -> None:
    @app.command()
    def regress(
        train: Path = typer.Option(..., "--train", help="Training table (.npy or .csv): features and target."),
        test: Path = typer.Option(..., "--test", help="Test table: features (and optionally the target)."),
        out: Path = typer.Option(Path("pred.csv"), "--out", "-o", help="Where to write predictions (.csv/.npy)."),
        kernel: str = typer.Option("rbf", "--kernel", help="One of " + ", ".join(KERNEL_CHOICES) + "."),
        ridge: float = typer.Option(1e-3, "--ridge", help="Ridge λ >= 0 (0: least-norm interpolant)."),
        gamma: float | None = typer.Option(None, "--gamma", help="γ of rbf/laplace/poly (default 1/d)."),
        lengthscale: float | None = typer.Option(None, "--lengthscale", help="ℓ of rbf (γ = 1/(2ℓ²))."),
        degree: int | None = typer.Option(None, "--degree", help="Degree of poly (default 3)."),
        coef0: float | None = typer.Option(None, "--coef0", help="c₀ of poly (default 1)."),
        depth: int | None = typer.Option(None, "--depth", help="Hidden layers of the ntk/nngp network (default "
                                         f"{NETWORK_DEFAULTS['depth']}, as `kernelscope kernel`)."),
        w_std: float | None = typer.Option(None, "--w-std", help="σ_w of the ntk/nngp network (default "
                                           f"{NETWORK_DEFAULTS['w_std']})."),
        b_std: float | None = typer.Option(None, "--b-std", help="σ_b of the ntk/nngp network (default "
                                           f"{NETWORK_DEFAULTS['b_std']})."),
        activation: str | None = typer.Option(None, "--activation", "-a", help="Activation of the ntk/nngp network "
                                              "(relu, erf, tanh, gelu, ...; default "
                                              f"{NETWORK_DEFAULTS['activation']})."),
        target_col: int = typer.Option(-1, "--target-col", help="Column of the target in the training file."),
        std: bool = typer.Option(False, "--std", help="Also write the GP posterior std of each prediction."),
        solver: str = typer.Option("auto", "--solver", help="auto, or a solver of kernelscope.solvers.SOLVERS "
                                   "(cholesky, cg, nystrom as shipped; auto: Cholesky when K fits the memory "
                                   "budget, else CG or Nyström, and says which)."),
        scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler tcp://host:port "
                                                "(from `dask scheduler`): compute the kernel blocks on that "
                                                "cluster. Default: local threads."),
    ) -> None:
        """Fit kernel ridge regression on TRAIN, predict TEST, print the RMSE and write the predictions."""
        from ..regression import KernelRegressor
        from ..solvers import SOLVERS

        kernel_obj = kernel_from_options(kernel, {"gamma": gamma, "lengthscale": lengthscale, "degree": degree,
                                                  "coef0": coef0, "depth": depth, "w_std": w_std, "b_std": b_std,
                                                  "activation": activation})
        if solver != "auto" and solver not in SOLVERS:
            raise ValidationError("--solver", f"one of {', '.join(['auto', *SOLVERS])}", f"{solver!r}")
        if not ridge >= 0:
            raise ValidationError("--ridge", "a number >= 0", f"{ridge}")
        if out.suffix.lower() not in PREDICTION_SUFFIXES:
            raise ValidationError("--out", "a file name ending in " + " or ".join(PREDICTION_SUFFIXES)
                                  + " (the format of the predictions)", f"'{out.name}'")
        X, y = split_target(read_table(train, "--train"), target_col, "--train")
        T = read_table(test, "--test")
        y_test = None
        if T.shape[1] == X.shape[1] + 1:
            T, y_test = split_target(T, target_col, "--test")
        elif T.shape[1] != X.shape[1]:
            raise ValidationError("--test", f"{X.shape[1]} feature columns (or {X.shape[1] + 1} with the target) "
                                  "like the training file", f"{T.shape[1]}")
        from ..scale import scheduler as dask_scheduler

        with dask_scheduler(scheduler, timeout=5.0):  # None: local threads; else a Client, closed at the end
            model = KernelRegressor(kernel_obj, ridge=ridge, solver=solver).fit(X, y)
            rmse = float(np.sqrt(np.mean((model.predict(X) - y) ** 2)))
            if std:
                mean, sd = model.predict(T, return_std=True)
            else:
                mean, sd = model.predict(T), None
        write_predictions(out, mean, sd)
        used = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in kernel_obj.resolved_params(X.shape[1]).items())
        typer.echo(f"kernel {type(kernel_obj).__name__}({used}), ridge {ridge:g}, solver {model.solver_}: "
                   f"{len(y)} training points, {X.shape[1]} features")
        typer.echo(f"train RMSE: {rmse:.6g}")
        if y_test is not None:
            typer.echo(f"test RMSE: {float(np.sqrt(np.mean((mean - y_test) ** 2))):.6g}")
        typer.echo(f"predictions{' and std' if std else ''} for {len(mean)} test points written to {out}")
