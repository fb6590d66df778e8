"""``kernelscope solve A b``: the least-norm (least-squares) solution of a linear system from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from .._arrays import ValidationError


def _fmt(v) -> str:
    return np.array2string(np.asarray(v), precision=6, suppress_small=True, max_line_width=100)


def register(app: typer.Typer) -> None:
    @app.command()
    def solve(
        a_file: Path = typer.Argument(..., metavar="A", help="Matrix A (.npy, .csv/.txt, Matrix Market .mtx)."),
        b_file: Path = typer.Argument(..., metavar="B", help="Right-hand side b (.npy, .csv/.txt): m values or m×k."),
        rcond: float | None = typer.Option(None, help="Cut-off for small singular values (default eps·max(m, n))."),
        plot: Path | None = typer.Option(None, "--plot", help="Draw the system (2 or 3 unknowns) into this PNG."),
        save: Path | None = typer.Option(None, "--save", help="Write x to this .npy file."),
    ) -> None:
        """Solve Ax = b: the exact, least-norm or least-squares solution, with its rank and row/null parts."""
        import warnings

        from .._arrays import KernelscopeWarning
        from ..experiments.linsys import solve_system
        from ._files import read_array

        A = read_array(a_file, "A", allow_sparse=True)
        b = read_array(b_file, "b")
        if b.ndim == 2 and 1 in b.shape and b.shape[0] == 1 and getattr(A, "shape", (0,))[0] != 1:
            b = b.ravel()  # a row of numbers in a CSV is the vector b
        if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ValidationError("--plot", "a .png, .svg or .pdf file name", f"'{plot.name}'")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KernelscopeWarning)
            system = solve_system(A, b, rcond=rcond)
        res = system.result
        m, n = res.shape
        typer.echo(f"system: {m} equation(s), {n} unknown(s); method {res.method}")
        typer.echo(f"kind: {res.kind}" + (f" (per column: {', '.join(res.kinds)})" if len(res.kinds) > 1 else ""))
        typer.echo(f"rank: {res.rank if res.rank is not None else 'not computed (LSMR)'}")
        typer.echo(f"x = {_fmt(res.x)}")
        typer.echo(f"residual norm ‖b − Ax‖ = {res.residual_norm:.6e}")
        typer.echo(f"row-space part  = {_fmt(res.row_part)}")
        typer.echo(f"null-space part = {_fmt(res.null_part)}  (the least-norm solution has none)")
        if res.nullity:
            typer.echo(f"null space dimension {res.nullity}: any x + (null-space vector) solves it equally well")
        for w in caught:
            typer.echo(f"note: {w.message}", err=True)
        if save is not None:
            import io

            from .._io import atomic_write_bytes

            buf = io.BytesIO()
            np.save(buf, np.asarray(res.x))
            atomic_write_bytes(save, buf.getvalue())
            typer.echo(f"saved x to {save}")
        if plot is not None:
            if not isinstance(A, np.ndarray) or n not in (2, 3):
                raise ValidationError("--plot", "a dense system with 2 or 3 unknowns to draw", f"{n} unknowns")
            from .._io import atomic_savefig
            from ..plots.linsys import plot_system

            atomic_savefig(plot_system(system).figure, plot)
            typer.echo(f"plot: {plot}")
