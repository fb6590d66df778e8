"""``kernelscope kernel``: a kernel matrix for the rows of a data file, written as ``.npy``.

    kernelscope kernel --x data.npy [--x2 other.npy] --kernel ntk --depth 3 --activation relu --w-std 1.5 \\
                       --b-std 0.05 --out K.npy

``--kernel ntk`` (the default) or ``nngp`` is the kernel of the network
``serial(Dense(width, w_std, b_std), activation) × depth + Dense(1, w_std, b_std)`` (``kernelscope.nets``;
``--depth`` counts hidden layers); the classic kernels ``rbf``, ``poly``, ``linear``, ``laplace``, ``arccos``,
``erf`` (``kernelscope.kernels.get``; ``--gamma``, ``--degree``, ``--coef0`` set them) are chosen the same way,
with the same names and network defaults as ``kernelscope regress --kernel``. ``--diag`` writes k(x, x) only, of
shape (N,).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import typer

from .._arrays import ValidationError
from ._options import NETWORK_DEFAULTS

NET_ACTIVATIONS = ("relu", "leaky_relu", "erf", "gelu", "tanh", "sigmoid", "identity")
NETWORK_KERNELS = ("ntk", "nngp")
CLASSIC = ("rbf", "poly", "linear", "laplace", "arccos", "erf")


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
        kernel: str | None = typer.Option(None, "--kernel",
                                          help="ntk (default) or nngp of the network; or a classic kernel: "
                                               + ", ".join(CLASSIC) + " (the names of `regress --kernel`)."),
        activation: str = typer.Option(NETWORK_DEFAULTS["activation"], "--activation", "-a",
                                       help="Activation of the network: " + ", ".join(NET_ACTIVATIONS) + "."),
        depth: int = typer.Option(NETWORK_DEFAULTS["depth"], "--depth",
                                  help="Hidden layers (Dense + activation) of the network; the readout is not "
                                       "counted."),
        w_std: float = typer.Option(NETWORK_DEFAULTS["w_std"], "--w-std", help="Weight scale σ_w > 0."),
        b_std: float = typer.Option(NETWORK_DEFAULTS["b_std"], "--b-std", help="Bias scale σ_b >= 0."),
        width: int = typer.Option(512, "--width", help="Hidden width (matters for --parameterization standard)."),
        parameterization: str = typer.Option("ntk", "--parameterization", help="ntk or standard."),
        which: str | None = typer.Option(None, "--which", hidden=True, help="Older name of --kernel ntk|nngp."),
        slope: float = typer.Option(0.01, "--slope", help="Negative slope of leaky_relu."),
        gamma: float | None = typer.Option(None, "--gamma", help="γ of rbf/laplace/poly (default 1/d)."),
        degree: int = typer.Option(3, "--degree", help="Degree of poly."),
        coef0: float = typer.Option(1.0, "--coef0", help="c₀ of poly."),
        diag: bool = typer.Option(False, "--diag", help="Only k(x, x) for the rows of --x: shape (N,)."),
    ) -> None:
        """Compute an NTK/NNGP (or classic) kernel matrix for data in a file and write it as .npy."""
        from .._io import atomic_write_bytes
        from ._options import note

        act = activation.lower()
        if act in CLASSIC and act not in NET_ACTIVATIONS and kernel is None:
            # the older spelling `--activation rbf` chose a classic kernel: still understood, with the new one
            note(f"--activation {act} is read as --kernel {act} ({act} is a kernel, not an activation); "
                 f"write --kernel {act}")
            kernel, act = act, NETWORK_DEFAULTS["activation"]
        if which is not None:
            if which not in NETWORK_KERNELS:
                raise ValidationError("--which", "'ntk' or 'nngp'", f"{which!r}", "Write --kernel ntk|nngp.")
            if kernel is not None and kernel != which:
                raise ValidationError("--which", f"the same kernel as --kernel ({kernel})", f"{which!r}",
                                      "Leave out --which: --kernel ntk|nngp says it.")
            kernel = which
        kernel = (kernel or "ntk").lower()
        if kernel not in NETWORK_KERNELS + CLASSIC:
            raise ValidationError("--kernel", f"one of {', '.join(NETWORK_KERNELS + CLASSIC)}", f"{kernel!r}")
        if act not in NET_ACTIVATIONS:
            raise ValidationError("--activation", f"one of {', '.join(NET_ACTIVATIONS)}", f"{activation!r}")
        if depth < 0:
            raise ValidationError("--depth", "an integer >= 0 (hidden layers)", f"{depth}")
        if out.suffix.lower() != ".npy":
            raise ValidationError("--out", "a .npy file name", f"{out.name}")
        if diag and x2 is not None:
            raise ValidationError("--diag", "no --x2 (it computes k(x, x) for --x only)", "--x2", "Leave out --x2.")
        X1 = _read(x, "--x")
        X2 = None if x2 is None else _read(x2, "--x2")
        if X2 is not None and X2.shape[1] != X1.shape[1]:
            raise ValidationError("--x2", f"{X1.shape[1]} columns (as many as --x)", f"{X2.shape[1]}")
        t0 = time.perf_counter()
        if kernel in CLASSIC:
            from .. import kernels

            params = {"poly": {"degree": degree, "gamma": gamma, "coef0": coef0}, "rbf": {"gamma": gamma},
                      "laplace": {"gamma": gamma}}.get(kernel, {})
            k = kernels.get(kernel, **params)
            K = k.diag(X1) if diag else k(X1, X2)
            what = kernel
        else:
            from .. import nets

            layers = []
            for _ in range(depth):
                layers += [nets.Dense(width, w_std, b_std, parameterization), _activation(act, slope)()]
            net = nets.serial(*layers, nets.Dense(1, w_std, b_std, parameterization))
            res = net.kernel(X1, diag=True) if diag else net.kernel(X1, X2)
            K = getattr(res, kernel)
            what = (f"{kernel.upper()} of a {act} network with {depth} hidden layer{'s' if depth != 1 else ''} "
                    f"(w_std={w_std}, b_std={b_std}, {parameterization})")
        K = np.asarray(K, dtype=np.float64)
        buf = io.BytesIO()
        np.save(buf, K)
        atomic_write_bytes(out, buf.getvalue())
        typer.echo(f"wrote {out}: {what}, shape {K.shape}, {time.perf_counter() - t0:.2f} s")
