"""Convolutional kernels on the 8×8 digits: CNN-GP / CNTK against the MLP kernels, and finite CNNs converging.

- Kernel regression (:class:`~kernelscope.regression.KernelRegressor`, centred one-hot targets, prediction
  ``argmax``) with the NNGP and NTK of a two-hidden-layer ReLU MLP and of two 3×3 ReLU convolutions read out
  through Flatten or GlobalAvgPool (:mod:`kernelscope.nets.conv`; Novak et al. 2019, Arora et al. 2019).
- The empirical NTK (:func:`kernelscope.empirical.ntk`) of finite CNNs of growing width, drawn from the same
  description (``net.finite``), against the analytic CNTK: the relative Frobenius error and its log-log slope
  in the width (≈ −½ expected, the Monte Carlo rate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import data, empirical
from .._arrays import check_int, check_nonnegative
from ..regression import KernelRegressor
from ..stats import fit_slope
from .architectures import compared_networks

__all__ = ["ConvDigitsResult", "conv_digits", "digit_networks"]

def digit_networks(width: int = 256) -> dict[str, Any]:
    """The architectures compared on the 8×8 digits: an MLP, and two 3×3 'same' convolutions read out by Flatten
    or GlobalAvgPool (:func:`kernelscope.experiments.architectures.compared_networks`)."""
    return compared_networks(width)


@dataclass
class ConvDigitsResult:
    """Accuracy table and finite-CNN convergence (all plain numbers and lists, JSON-ready)."""

    n_train: int
    n_test: int
    ridge: float
    # architecture, kernel, test_accuracy, kernel_seconds (the NNGP and NTK matrices, one pass for both), seconds
    # (the fit and the prediction)
    rows: list[dict] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    ntk_errors: list[float] = field(default_factory=list)  # mean relative Frobenius error over seeds
    ntk_errors_se: list[float] = field(default_factory=list)
    slope: float = float("nan")
    convergence_net: str = ""


def conv_digits(n_train: int = 200, n_test: int = 200, *, ridge: float = 1e-3, widths=(8, 32, 128, 512),
                seeds: int = 4, n_convergence: int = 8, seed: int = 0) -> ConvDigitsResult:
    """Run both parts (see the module docstring). About a minute on 2 cores at the defaults.

    Parameters
    ----------
    n_train, n_test : digits for fitting and scoring (disjoint, drawn with ``seed``).
    ridge : KernelRegressor's ridge.
    widths, seeds : finite CNN channel counts and draws per width; ``n_convergence`` images for that part.
    """
    n_train = check_int(n_train, "n_train", minimum=10)
    n_test = check_int(n_test, "n_test", minimum=1)
    ridge = check_nonnegative(ridge, "ridge")
    X, y = data.digits(n_train + n_test, seed=seed)
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    Y = data.one_hot_centred(ytr, 10)
    out = ConvDigitsResult(n_train, n_test, ridge)
    for name, net in digit_networks().items():
        t = time.perf_counter()  # NNGP and NTK come from one pass: train × train and test × train, once
        k_train, k_test = net.kernel(Xtr), net.kernel(Xte, Xtr)
        kernel_seconds = time.perf_counter() - t
        for which in ("NNGP", "NTK"):
            t = time.perf_counter()
            K, K_test = (k.nngp if which == "NNGP" else k.ntk for k in (k_train, k_test))
            model = KernelRegressor("precomputed", ridge=ridge).fit(K, Y)
            acc = float(np.mean(np.argmax(model.predict(K_test), 1) == yte))
            out.rows.append({"architecture": name, "kernel": which, "test_accuracy": acc,
                             "kernel_seconds": kernel_seconds, "seconds": time.perf_counter() - t})
    # finite CNNs of growing width against the CNTK
    net = digit_networks()["CNN + GlobalAvgPool"]
    out.convergence_net = repr(net)
    Xc = torch.as_tensor(Xtr[:n_convergence]).reshape(-1, 1, 8, 8)
    theta = net.kernel(Xc).ntk
    norm = float(torch.linalg.norm(theta))
    for w in widths:
        errs = [float(torch.linalg.norm(empirical.ntk(net.finite(seed=1000 * w + s, width=int(w)), Xc) - theta))
                / norm for s in range(seeds)]
        out.widths.append(int(w))
        out.ntk_errors.append(float(np.mean(errs)))
        out.ntk_errors_se.append(float(np.std(errs, ddof=1) / np.sqrt(len(errs))) if len(errs) > 1 else 0.0)
    out.slope = fit_slope(out.widths, out.ntk_errors)[0]
    return out
