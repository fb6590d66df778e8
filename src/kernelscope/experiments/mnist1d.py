"""MNIST-1D with infinite-width networks, against the paper's trained ones (Greydanus & Kobak 2024).

- The NNGP and NTK of three architectures as kernel classifiers (:class:`~kernelscope.KernelClassifier`: kernel
  regression on centred one-hot targets, the class of the largest output): a two-hidden-layer ReLU MLP, and three
  circular 5-tap ReLU convolutions read out through Flatten or through global average pooling
  (:mod:`kernelscope.nets.conv`; Novak et al. 2019, Arora et al. 2019), on the paper's 4000 training and 1000 test
  signals (:func:`kernelscope.data.mnist1d`).
- Learning curves from one kernel computation per architecture: the train × train and test × train matrices hold
  both kernels (one pass gives the NNGP and the NTK), and the fits on the first n training signals use their
  leading blocks (``kernel='precomputed'``). The matrices are computed in panels of rows, each one saved through
  ``panels`` (a checkpoint callable) so an interrupted computation resumes.
- What pooling buys: the kernel between a signal and its own circular shifts. Circular convolutions and global
  average pooling make the kernel invariant to shifting either input; Flatten only to shifting both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import data, nets
from .._arrays import ValidationError, check_int, check_positive
from .._threads import free_cores
from ..regression import KernelClassifier
from .architectures import compared_networks

__all__ = ["PRECISION", "PAPER_ACCURACY", "RELATIVE_RIDGE", "mnist1d_networks", "KernelPanel", "kernel_panels",
           "ArchitectureResult", "classify_architecture", "ShiftResult", "shift_experiment", "signal_examples"]

#: the ridge as a fraction of the mean of the kernel's diagonal (so NNGP and NTK, whose scales differ, get the
#: same regularisation); chosen on 200 held-out training signals (rows 3000-3199), never on the test set
RELATIVE_RIDGE = 1e-5
#: test accuracy of the trained networks, 4000 training and 1000 test signals (Greydanus & Kobak 2024, Table 1
#: and the mnist1d README): quoted, not computed here
PAPER_ACCURACY = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91}

#: the arithmetic of each architecture's kernel in the story: the pooled CNN's (its position pairs make it ~100×
#: the cost of the others) in float32, half the CPU time; on all of MNIST-1D its largest difference to float64 is 2.4e-7
#: of the largest entry and the test accuracies are the same (``benchmarks/bench_conv.py --full``)
PRECISION = {"MLP": "float64", "CNN + Flatten": "float64", "CNN + GlobalAvgPool": "float32"}


def mnist1d_networks(width: int = 64) -> dict[str, nets.Layer]:
    """The compared architectures (:func:`kernelscope.experiments.architectures.compared_networks`): a two-hidden-layer
    ReLU MLP, and three circular 5-tap ReLU convolutions read out by Flatten or by GlobalAvgPool; each takes rows
    (N, 40) (the CNNs declare ``input_shape=(1, 40)``). σ_w = 1.4, σ_b = 0.1."""
    return compared_networks(width, input_shape=(1, 40), depth=3, kernel_size=5, padding="circular")


# ------------------------------------------------------------------------------------------------------------
# Kernel matrices in panels
# ------------------------------------------------------------------------------------------------------------
@dataclass
class KernelPanel:
    """Rows ``start:stop`` of the kernels against the first ``nngp.shape[1]`` training signals: the NNGP and
    the NTK, (stop − start, columns) each, and the seconds they took."""

    part: str  # "train" (columns 0:stop, the lower triangle) or "test" (all training columns)
    start: int
    stop: int
    nngp: np.ndarray
    ntk: np.ndarray
    seconds: float


def _panel(net: nets.Layer, part: str, start: int, stop: int, X_train: np.ndarray, X_test: np.ndarray,
           threads: int | None, precision: str) -> KernelPanel:
    t0 = time.perf_counter()
    threads = free_cores() if threads is None else threads  # the cores other work leaves now (a tour's other chapter)
    if part == "train":  # rows start:stop against columns 0:stop: the rectangle before the diagonal, the square on it
        rows = X_train[start:stop]
        square = net.kernel(rows, threads=threads, precision=precision)
        if start > 0:
            rect = net.kernel(rows, X_train[:start], threads=threads, precision=precision)
            nngp, ntk = (np.concatenate([getattr(rect, k), getattr(square, k)], 1) for k in ("nngp", "ntk"))
        else:
            nngp, ntk = square.nngp, square.ntk
    else:
        k = net.kernel(X_test[start:stop], X_train, threads=threads, precision=precision)
        nngp, ntk = k.nngp, k.ntk
    return KernelPanel(part, start, stop, np.asarray(nngp), np.asarray(ntk), time.perf_counter() - t0)


def kernel_panels(net: nets.Layer, X_train: np.ndarray, X_test: np.ndarray, *, block: int = 1000,
                  panels: Callable[[str, Callable[[], Any]], Any] | None = None,
                  track: Callable[[Iterable, str], Iterable] | None = None, threads: int | None = None,
                  precision: str = "float64") -> dict[str, Any]:
    """The kernels of ``net`` between the training signals (N, N) and between the test and the training signals
    (T, N), NNGP and NTK, from one pass: in panels of ``block`` rows (for train × train the lower triangle only,
    mirrored: about N²/2 + T·N pairs of signals in all).

    Parameters
    ----------
    net : a network taking the rows of X_train (N, d) and X_test (T, d).
    block : rows per panel.
    panels : ``panels(name, compute)`` returns a saved :class:`KernelPanel` or computes and saves it (the tour's
        checkpoints), so an interrupted computation resumes; None computes them all.
    track : ``track(iterable, description)`` wraps the loop over panels (progress).
    threads : the engine's tile workers for each panel; None: the cores that other work leaves free when the panel
        starts (:func:`kernelscope._threads.free_cores`), so a panel of a tour that runs chapters side by side takes
        both cores once the other chapters are done.
    precision : the arithmetic of the recursion, ``'float64'`` or ``'float32'`` (float32 runs 2–3× faster for
        pooled CNNs; its error: :meth:`kernelscope.nets.Layer.kernel`).

    Returns
    -------
    dict with ``train_nngp``, ``train_ntk`` (N, N), ``test_nngp``, ``test_ntk`` (T, N) and ``seconds`` (the sum
    over the panels, as computed: a resumed run reports the time of the run that computed each panel).
    """
    block = check_int(block, "block", minimum=1)
    threads = None if threads is None else check_int(threads, "threads", minimum=1)
    n, t = X_train.shape[0], X_test.shape[0]
    jobs = [("train", r, min(n, r + block)) for r in range(0, n, block)] + \
           [("test", r, min(t, r + block)) for r in range(0, t, block)]
    out = {"train_nngp": np.empty((n, n)), "train_ntk": np.empty((n, n)),
           "test_nngp": np.empty((t, n)), "test_ntk": np.empty((t, n)), "seconds": 0.0}
    for part, r0, r1 in (track(jobs, "kernel panels") if track is not None else jobs):
        compute = lambda part=part, r0=r0, r1=r1: _panel(  # noqa: E731
            net, part, r0, r1, X_train, X_test, threads, precision)
        p = panels(f"{part}-{r0}-{r1}", compute) if panels is not None else compute()
        for kind in ("nngp", "ntk"):
            values = getattr(p, kind)
            if part == "train":
                out[f"train_{kind}"][r0:r1, :r1] = values
                out[f"train_{kind}"][:r0, r0:r1] = values[:, :r0].T  # the mirror of the rectangle
            else:
                out[f"test_{kind}"][r0:r1] = values
        out["seconds"] += p.seconds
    return out


# ------------------------------------------------------------------------------------------------------------
# Classifiers and learning curves
# ------------------------------------------------------------------------------------------------------------
@dataclass
class ArchitectureResult:
    """Test accuracy of one architecture's NNGP and NTK classifiers on the first n training signals, for each n
    of ``sizes``, with the time of the kernels and of the fits, and the calibration at the largest n."""

    name: str
    sizes: list[int]
    accuracy: dict[str, list[float]]  # "NNGP"/"NTK" -> accuracy per size
    kernel_seconds: float
    fit_seconds: float
    # at the largest size, with probability=True: the temperature, the mean probability of the predicted class
    # and the expected calibration error (10 equal-width confidence bins)
    temperature: dict[str, float] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    calibration_error: dict[str, float] = field(default_factory=dict)


def _calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: Σ_b (|b|/N) |accuracy(b) − confidence(b)| over equal-width confidence bins
    (Guo et al. 2017)."""
    conf, pred = proba.max(1), proba.argmax(1)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(np.abs((pred[which == b] == y[which == b]).mean() - conf[which == b].mean()) * np.mean(which == b)
                     for b in range(bins) if np.any(which == b)))


def classify_architecture(name: str, kernels: dict[str, Any], y_train: np.ndarray, y_test: np.ndarray,
                          sizes: Iterable[int], *, relative_ridge: float = RELATIVE_RIDGE) -> ArchitectureResult:
    """NNGP and NTK kernel classifiers on the leading n × n blocks of precomputed kernels (:func:`kernel_panels`),
    for every n of ``sizes``; at the largest n also with calibrated probabilities (``probability=True``).

    The ridge is ``relative_ridge`` times the mean diagonal of the n × n training kernel.
    """
    relative_ridge = check_positive(relative_ridge, "relative_ridge")
    n_all = kernels["train_ntk"].shape[0]
    sizes = [check_int(s, "sizes", minimum=2, maximum=n_all) for s in sizes]
    if not sizes:
        raise ValidationError("sizes", "at least one training-set size", "none")
    out = ArchitectureResult(name, sizes, {"NNGP": [], "NTK": []}, float(kernels["seconds"]), 0.0)
    t0 = time.perf_counter()
    for kind in ("NNGP", "NTK"):
        K, Kt = kernels[f"train_{kind.lower()}"], kernels[f"test_{kind.lower()}"]
        for n in sizes:
            ridge = relative_ridge * float(np.mean(np.diag(K[:n, :n])))
            last = n == max(sizes)
            clf = KernelClassifier("precomputed", ridge=ridge, probability=last).fit(K[:n, :n], y_train[:n])
            out.accuracy[kind].append(float(clf.score(Kt[:, :n], y_test)))
            if last:
                proba = clf.predict_proba(Kt[:, :n])
                out.temperature[kind] = clf.temperature_
                out.confidence[kind] = float(proba.max(1).mean())
                out.calibration_error[kind] = _calibration_error(proba, np.searchsorted(clf.classes_, y_test))
    out.fit_seconds = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------------------------
# What pooling buys: the kernel under circular shifts
# ------------------------------------------------------------------------------------------------------------
@dataclass
class ShiftResult:
    """``k(x, roll(x, s)) / k(x, x)`` for shifts s = 0..L−1, averaged over ``n_signals`` test signals, per
    architecture and kernel (``"CNN + Flatten NTK"`` -> L values)."""

    shifts: list[int]
    n_signals: int
    ratio: dict[str, list[float]]


def shift_experiment(networks: dict[str, nets.Layer], X: np.ndarray) -> ShiftResult:
    """The normalised kernel between each signal of X (m, L) and its circular shifts by 0..L−1 places."""
    m, length = X.shape
    out = ShiftResult(list(range(length)), m, {})
    for name, net in networks.items():
        ks = [net.kernel(x[None], np.stack([np.roll(x, s) for s in range(length)])) for x in X]  # (1, L) each
        for kind in ("nngp", "ntk"):
            own = np.concatenate([np.asarray(getattr(k, kind)) for k in ks])  # (m, L): k(x, roll(x, s))
            out.ratio[f"{name} {kind.upper()}"] = (own / own[:, :1]).mean(0).tolist()
    return out


def signal_examples(seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """One training signal of each digit 0-9 (the first of its class): X (10, 40), y (10,)."""
    X, y, _, _ = data.mnist1d(200, 1, seed=seed)
    first = [int(np.flatnonzero(y == c)[0]) for c in range(10)]
    return X[first], y[first]
