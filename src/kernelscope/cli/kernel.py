"""``kernelscope kernel``: a kernel matrix for the rows of a data file, written as ``.npy``.

    kernelscope kernel --x data.npy [--x2 other.npy] --depth 3 --activation relu --w-std 1.5 --b-std 0.05 \\
                       --which ntk --out K.npy

The network is ``serial(Dense(width, w_std, b_std), activation) × depth + Dense(1, w_std, b_std)``
(``kernelscope.nets``). ``--activation`` also takes the classic kernels ``rbf``, ``poly``, ``linear``,
``laplace`` (``kernelscope.kernels.get``; ``--gamma``, ``--degree``, ``--coef0`` set them). ``--diag`` writes
k(x, x) only, of shape (N,).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import typer

from .._arrays import ValidationError

NET_ACTIVATIONS = ("relu", "leaky_relu", "erf", "gelu", "tanh", "sigmoid", "identity")
CLASSIC = ("rbf", "poly", "linear", "laplace")


def _activation(name: str, slope: float):
    from .. import nets

    return {"relu": nets.ReLU, "leaky_relu": lambda: nets.LeakyReLU(slope), "erf": nets.Erf,
            "gelu": nets.GELU, "tanh": nets.Tanh, "sigmoid": nets.Sigmoid, "identity": nets.Identity}[name]


def _read(path: Path, what: str) -> np.ndarray:
    from ._files import read_table

    return read_table(path, what)


def register(app: typer.Typer) -> None:
    @app.command("kernel")
    def kernel_cmd(
        x: Path = typer.Option(..., "--x", help="Data file (.npy/.csv/.txt), rows = samples."),
        out: Path = typer.Option(..., "--out", "-o", help="Where to write the kernel matrix (.npy)."),
        x2: Path | None = typer.Option(None, "--x2", help="Second data file: k(x, x2) of shape (N1, N2)."),
        activation: str = typer.Option("relu", "--activation", "-a",
                                       help="relu, leaky_relu, erf, gelu, tanh, sigmoid, identity; "
                                            "or a classic kernel: rbf, poly, linear, laplace."),
        depth: int = typer.Option(3, "--depth", help="Number of hidden (Dense, activation) layers."),
        w_std: float = typer.Option(1.5, "--w-std", help="Weight scale σ_w > 0."),
        b_std: float = typer.Option(0.05, "--b-std", help="Bias scale σ_b >= 0."),
        width: int = typer.Option(512, "--width", help="Hidden width (matters for --parameterization standard)."),
        parameterization: str = typer.Option("ntk", "--parameterization", help="ntk or standard."),
        which: str = typer.Option("ntk", "--which", help="ntk or nngp (networks only)."),
        slope: float = typer.Option(0.01, "--slope", help="Negative slope of leaky_relu."),
        gamma: float | None = typer.Option(None, "--gamma", help="γ of rbf/laplace/poly (default 1/d)."),
        degree: int = typer.Option(3, "--degree", help="Degree of poly."),
        coef0: float = typer.Option(1.0, "--coef0", help="c₀ of poly."),
        diag: bool = typer.Option(False, "--diag", help="Only k(x, x) for the rows of --x: shape (N,)."),
    ) -> None:
        """Compute an NNGP/NTK (or classic) kernel matrix for data in a file and write it as .npy."""
        from .._io import atomic_write_bytes

        act = activation.lower()
        if act not in NET_ACTIVATIONS + CLASSIC:
            raise ValidationError("--activation", f"one of {', '.join(NET_ACTIVATIONS + CLASSIC)}", f"{activation!r}")
        if which not in ("ntk", "nngp"):
            raise ValidationError("--which", "'ntk' or 'nngp'", f"{which!r}")
        if depth < 0:
            raise ValidationError("--depth", "an integer >= 0", f"{depth}")
        if out.suffix.lower() != ".npy":
            raise ValidationError("--out", "a .npy file name", f"{out.name}")
        if diag and x2 is not None:
            raise ValidationError("--diag", "no --x2 (it computes k(x, x) for --x only)", "--x2", "Leave out --x2.")
        X1 = _read(x, "--x")
        X2 = None if x2 is None else _read(x2, "--x2")
        if X2 is not None and X2.shape[1] != X1.shape[1]:
            raise ValidationError("--x2", f"{X1.shape[1]} columns (as many as --x)", f"{X2.shape[1]}")
        t0 = time.perf_counter()
        if act in CLASSIC:
            from .. import kernels

            params = {"poly": {"degree": degree, "gamma": gamma, "coef0": coef0}, "rbf": {"gamma": gamma},
                      "laplace": {"gamma": gamma}, "linear": {}}[act]
            k = kernels.get(act, **params)
            K = k.diag(X1) if diag else k(X1, X2)
            what = act
        else:
            from .. import nets

            layers = []
            for _ in range(depth):
                layers += [nets.Dense(width, w_std, b_std, parameterization), _activation(act, slope)()]
            net = nets.serial(*layers, nets.Dense(1, w_std, b_std, parameterization))
            res = net.kernel(X1, diag=True) if diag else net.kernel(X1, X2)
            K = getattr(res, which)
            what = (f"{which.upper()} of a depth-{depth} {act} network "
                    f"(w_std={w_std}, b_std={b_std}, {parameterization})")
        K = np.asarray(K, dtype=np.float64)
        buf = io.BytesIO()
        np.save(buf, K)
        atomic_write_bytes(out, buf.getvalue())
        typer.echo(f"wrote {out}: {what}, shape {K.shape}, {time.perf_counter() - t0:.2f} s")
