"""Learning the feature vector on spirals (THEORY.md section 7; the NYU Deep Learning lecture 20).

A network is a feature extractor followed by a linear classifier::

    x (2) -> Linear -> ReLU (H features) -> Linear -> e (2-D embedding) -> s = W e + c (K scores) -> softmax

trained with cross-entropy ``L = -(1/N) sum_i log softmax(s_i)[y_i]``. Prediction is ``argmax_k s_k``: the colour
of a decision region is the argmax over a grid. With small initial weights the embedding starts collapsed at 0,
grows, then un-warps the spiral until the K arms are linearly separable in the 2-D embedding.

Public functions (each returns a dataclass the figures draw from):

- :func:`train_spiral` - the lecture's network, with snapshots of the embedding, the class vectors (rows of W)
  and the loss/accuracy along training; the input-plane decision regions and the input -> embedding grid.
- :func:`spiral_width_sweep` - the same network for hidden widths 2, 4, ..., 100: loss and accuracy curves.
- :func:`train_folding_net` - a narrow deep net (2 units per layer, leaky ReLU), layer by layer, and
  :func:`count_linear_pieces` - ReLU nets are piecewise-linear maps of the plane.
- :func:`from_params` - the torch network holding a run's weights.

The lecture's pictures as numbers (class vectors, phases of training, layers as rotation · scaling · rotation,
the drag of one pulled point, linear pieces against width) are :mod:`kernelscope.experiments.anatomy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._arrays import (
    ValidationError,
    as_generator,
    as_numpy,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
)
from ..data import spirals
from ..dynamics.pathkernel import PathKernelResult, path_kernel
from ..dynamics.train import train
from ..nets.finite import DenseModule, stack

__all__ = ["SpiralRun", "train_spiral", "decision_regions", "interpolation_grid", "embed", "scores",
           "embedding_radius", "WidthCurves", "WidthSweep", "spiral_width_sweep", "FoldingRun", "train_folding_net",
           "count_linear_pieces", "WIDTHS", "Params", "linear_baseline", "SpiralKernelMachine",
           "spiral_kernel_machine", "from_params"]

#: The hidden widths of the lecture's suggested sweep.
WIDTHS = (2, 4, 8, 16, 32, 64, 100)

#: Network parameters as float64 NumPy arrays: a list of ``(W, b)`` per linear layer, ``W`` of shape (out, in).
Params = list[tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------------------------------------------------
# The network: DenseModules of kernelscope.nets.finite (standard parameterisation, one std per layer)
# ---------------------------------------------------------------------------------------------------------------

def _net(sizes: Sequence[int], w_stds: Sequence[float], b_stds: Sequence[float], gen: torch.Generator, *,
         slope: float = 0.0) -> nn.Sequential:
    """``[Linear, act] * (L-2), Linear (embedding), Linear (classifier)`` with ``W ~ N(0, w_std^2)`` (out, in) and
    ``b ~ N(0, b_std^2)`` drawn layer by layer from ``gen``; ``act`` is ReLU (``slope = 0``) or leaky ReLU
    ``max(z, slope z)``."""
    return stack(sizes, "relu" if slope == 0.0 else "leaky_relu", w_std=list(w_stds), b_std=list(b_stds),
                 parameterization="standard", fan_in=False, linear_tail=2, slope=slope, seed=gen)


def _forward(model: nn.Sequential, x: torch.Tensor, stages: list[torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``s`` (N, K) and embedding ``e`` (N, 2) of inputs ``x`` (N, 2). If ``stages`` is a list, every
    intermediate (N, width) is appended to it: after each linear map and after each activation, up to ``e``."""
    h = x
    for m in model[:-1]:
        h = m(h)
        if stages is not None:
            stages.append(h)
    return model[-1](h), h  # rows of the classifier's weight are the class vectors


def from_params(params: Params, slope: float = 0.0) -> nn.Sequential:
    """The torch network of :func:`train_spiral` / :func:`train_folding_net` holding ``params`` (``[(W, b)]`` per
    linear layer; ``slope`` for leaky ReLU): ``net[:-1]`` is the feature extractor (input to embedding), ``net[-1]``
    the linear classifier."""
    sizes = [np.shape(params[0][0])[1]] + [np.shape(W)[0] for W, _ in params]
    model = _net(sizes, [1.0] * len(params), [1.0] * len(params), torch.Generator(), slope=slope)
    with torch.no_grad():
        for dense, (W, b) in zip(_dense(model), params):
            dense.weight.copy_(torch.as_tensor(np.asarray(W, dtype=np.float64)))
            dense.bias.copy_(torch.as_tensor(np.asarray(b, dtype=np.float64)))
    return model


def _dense(model: nn.Sequential) -> list[DenseModule]:
    return [m for m in model if isinstance(m, DenseModule)]


def _to_params(model: nn.Sequential) -> Params:
    return [(d.weight.detach().cpu().numpy().copy(), d.bias.detach().cpu().numpy().copy()) for d in _dense(model)]


def embed(params: Params, X: Any, *, slope: float = 0.0) -> np.ndarray:
    """Embedding ``e(x)`` of shape (N, 2) of inputs ``X`` (N, 2) under a trained net's ``params``."""
    X = as_numpy(X, "X", ndim=2)
    with torch.no_grad():
        _, e = _forward(from_params(params, slope), torch.as_tensor(X))
    return e.numpy()


def scores(params: Params, X: Any, *, slope: float = 0.0) -> np.ndarray:
    """Class scores ``s = W e(x) + c`` of shape (N, K) of inputs ``X`` (N, 2)."""
    X = as_numpy(X, "X", ndim=2)
    with torch.no_grad():
        s, _ = _forward(from_params(params, slope), torch.as_tensor(X))
    return s.numpy()


def decision_regions(params: Params, lims: Sequence[float], resolution: int = 200, *, slope: float = 0.0
                     ) -> np.ndarray:
    """``argmax_k s_k(x)`` over a ``resolution x resolution`` grid of ``[x0, x1] x [y0, y1]`` (``lims``).

    Returns an int array of shape (resolution, resolution), row ``i`` at ``y = linspace(y0, y1)[i]`` (the
    ``origin="lower"`` layout of ``imshow``).
    """
    x0, x1, y0, y1 = (float(v) for v in lims)
    resolution = check_int(resolution, "resolution", minimum=2)
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    s = scores(params, np.stack([gx.ravel(), gy.ravel()], axis=1), slope=slope)
    return s.argmax(axis=1).reshape(resolution, resolution)


def embedding_radius(e: np.ndarray) -> float:
    """``mean_i ‖e_i‖``: how far the embedded points (N, 2) are from the origin on average (NaN if one is not
    finite). Small weights start it collapsed near 0; training grows it."""
    return float(np.sqrt((e**2).sum(1)).mean()) if np.isfinite(e).all() else float("nan")


def _grid_lines(lims: Sequence[float], n_lines: int, n_points: int) -> np.ndarray:
    """Horizontal and vertical lines of the box ``lims``: an array of shape (2 n_lines, n_points, 2)."""
    x0, x1, y0, y1 = lims
    xs, ys = np.linspace(x0, x1, n_lines), np.linspace(y0, y1, n_lines)
    t_x, t_y = np.linspace(x0, x1, n_points), np.linspace(y0, y1, n_points)
    horizontal = [np.stack([t_x, np.full(n_points, y)], axis=1) for y in ys]
    vertical = [np.stack([np.full(n_points, x), t_y], axis=1) for x in xs]
    return np.array(horizontal + vertical)


def interpolation_grid(params: Params, lims: Sequence[float] = (-1.2, 1.2, -1.2, 1.2), n_lines: int = 21,
                       n_points: int = 200, *, slope: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A grid of the input plane and its image in the embedding: ``(lines, embedded)``, each (2 n_lines, P, 2).

    The morph of the lecture's video is ``(1 - a) * lines + a * embedded`` for ``a`` from 0 to 1.
    """
    lines = _grid_lines(lims, check_int(n_lines, "n_lines", minimum=2), check_int(n_points, "n_points", minimum=2))
    emb = embed(params, lines.reshape(-1, 2), slope=slope).reshape(lines.shape)
    return lines, emb


# ---------------------------------------------------------------------------------------------------------------
# Training loop shared by every experiment here
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Fit:
    epochs: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    snapshot_epochs: list[int]
    embeddings: list[np.ndarray]
    class_vectors: list[np.ndarray]
    class_biases: list[np.ndarray]
    diverged_at: int | None


def _snapshot_schedule(epochs: int, n: int) -> list[int]:
    """Epochs at which to snapshot: half geometric (the early growth), half linear (the un-warping)."""
    if n <= 1:
        return [epochs]
    geo = np.geomspace(1, epochs, max(n // 2, 1))
    lin = np.linspace(0, epochs, max(n - n // 2, 2))
    return sorted({int(round(v)) for v in np.concatenate([[0], geo, lin])})


def _train(model: nn.Sequential, X: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, weight_decay: float,
           optimizer: str, momentum: float, snapshots: int,
           track: Callable[[Iterable[int], str], Iterable[int]] | None, desc: str) -> _Fit:
    """Full-batch training on cross-entropy (:func:`kernelscope.dynamics.train`), with the accuracy of every epoch
    and snapshots of the embedding and the classifier; stops (with a warning) where the loss diverges."""
    schedule = set(_snapshot_schedule(epochs, snapshots)) if snapshots > 0 else set()
    accs = np.full(epochs + 1, np.nan)
    snap_epochs: list[int] = []
    embs: list[np.ndarray] = []
    cvs: list[np.ndarray] = []
    cbs: list[np.ndarray] = []
    head = model[-1]

    def record(epoch: int, loss: float, s: torch.Tensor, diverged: bool) -> None:
        # epoch 0 is the initial network; the last epoch only evaluates
        accs[epoch] = float((s.argmax(1) == y).double().mean())
        if epoch in schedule or diverged:
            with torch.no_grad():
                e = model[:-1](X)
            snap_epochs.append(epoch)
            embs.append(e.numpy().copy())
            cvs.append(head.weight.detach().numpy().copy())
            cbs.append(head.bias.detach().numpy().copy())

    res = train(model, X, y, loss="cross_entropy", reduction="mean", optimizer=optimizer, lr=lr, momentum=momentum,
                weight_decay=weight_decay, steps=epochs, callback=record, track=track, desc=desc,
                what="spiral training")
    stop = len(res.losses)
    return _Fit(np.arange(stop), res.losses, accs[:stop], snap_epochs, embs, cvs, cbs, res.diverged_at)


def _accuracy(model: nn.Sequential, X: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        s, _ = _forward(model, torch.as_tensor(X))
    return float((s.argmax(1).numpy() == y).mean())


def _check_common(classes, n_per_class, noise, epochs, lr, weight_decay, optimizer, momentum, seed):
    classes = check_int(classes, "classes", minimum=2)
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    noise = check_nonnegative(noise, "noise")
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_positive(lr, "lr")
    weight_decay = check_nonnegative(weight_decay, "weight_decay")
    optimizer = check_choice(optimizer, "optimizer", ("adam", "sgd"))
    momentum = check_nonnegative(momentum, "momentum")
    seed = check_int(seed, "seed", minimum=0)
    return classes, n_per_class, noise, epochs, lr, weight_decay, optimizer, momentum, seed


# ---------------------------------------------------------------------------------------------------------------
# The lecture's network
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class SpiralRun:
    """What :func:`train_spiral` returns.

    Attributes
    ----------
    config : the arguments of the run (classes, width, epochs, lr, ...).
    X_train, y_train : (N, 2) float, (N,) int - the training spiral; X_test, y_test the held-out draw.
    epochs, loss, train_accuracy : (E + 1,) - per epoch, epoch 0 being the initial network (full batch).
    snapshot_epochs : (S,) ints; embeddings (S, N, 2); class_vectors (S, K, 2) the rows of the classifier's W;
        class_biases (S, K); embedding_radius (S,) the mean distance of the embedded points to the origin
        (:func:`embedding_radius`).
    params : the final weights, ``[(W, b)]`` per linear layer (2 -> H, H -> 2, 2 -> K).
    final_train_accuracy, final_test_accuracy, final_loss : floats at the last epoch reached.
    diverged_at : the epoch of the first non-finite loss, or None.
    input_lims : (x0, x1, y0, y1) of the input plane; input_regions (R, R) int argmax over that grid.
    grid_input, grid_embedding : (2L, P, 2) grid lines of the input plane and their embedding.
    params_init : the initial weights (same layout as ``params``).
    """

    config: dict[str, Any]
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    epochs: np.ndarray
    loss: np.ndarray
    train_accuracy: np.ndarray
    snapshot_epochs: np.ndarray
    embeddings: np.ndarray
    class_vectors: np.ndarray
    class_biases: np.ndarray
    embedding_radius: np.ndarray
    params: Params
    final_train_accuracy: float
    final_test_accuracy: float
    final_loss: float
    diverged_at: int | None
    input_lims: tuple[float, float, float, float]
    input_regions: np.ndarray
    grid_input: np.ndarray
    grid_embedding: np.ndarray
    params_init: Params | None = None

    @property
    def classes(self) -> int:
        return int(self.config["classes"])

    def summary(self) -> dict[str, Any]:
        """The run's numbers as plain JSON types (no per-point arrays)."""
        return {"config": dict(self.config), "final_train_accuracy": self.final_train_accuracy,
                "final_test_accuracy": self.final_test_accuracy, "final_loss": self.final_loss,
                "diverged_at": self.diverged_at, "epochs_run": int(self.epochs[-1]),
                "linear_pieces": count_linear_pieces(self.params[:1], self.input_lims, 300)}


def train_spiral(classes: int = 5, n_per_class: int = 1000, noise: float = 0.2, *, width: int = 100,
                 epochs: int = 2000, lr: float = 1e-3, weight_decay: float = 1e-5, optimizer: str = "adam",
                 momentum: float = 0.9, init_std: float = 0.1, snapshots: int = 40, seed: int = 0,
                 n_test_per_class: int | None = None, regions_resolution: int = 200,
                 track: Callable[[Iterable[int], str], Iterable[int]] | None = None) -> SpiralRun:
    """Train ``2 -> width (ReLU) -> 2 (embedding) -> classes`` on spirals, full batch, and record the story.

    Parameters
    ----------
    classes, n_per_class, noise : the spiral (:func:`kernelscope.data.spirals`, drawn with ``seed``); the
        held-out test set is a second draw (seed ``seed + 1``) with ``n_test_per_class`` points per arm
        (default ``n_per_class``).
    width : hidden width H (>= 1).
    epochs, lr, weight_decay : full-batch steps; Adam by default (the course: lr 1e-3, weight decay 1e-5,
        2000 epochs); ``optimizer="sgd"`` uses SGD with ``momentum``.
    init_std : every weight and bias starts ``N(0, init_std^2)`` - small, so the embedding starts collapsed.
    snapshots : about how many snapshots of the embedding and class vectors to keep (geometric + linear in
        the epoch, so both the early growth and the later un-warping are seen).
    seed : data and initial weights.
    track : optional ``track(iterable, description)`` progress wrapper (the tour's ``ctx.track``).

    Returns
    -------
    SpiralRun. Training whose loss becomes NaN/inf stops there (``diverged_at``, with a warning) and keeps
    the snapshots up to that epoch.
    """
    classes, n_per_class, noise, epochs, lr, weight_decay, optimizer, momentum, seed = _check_common(
        classes, n_per_class, noise, epochs, lr, weight_decay, optimizer, momentum, seed)
    width = check_int(width, "width", minimum=1)
    init_std = check_positive(init_std, "init_std")
    snapshots = check_int(snapshots, "snapshots", minimum=0)
    n_test = n_per_class if n_test_per_class is None else check_int(n_test_per_class, "n_test_per_class", minimum=1)

    X, y = spirals(n_per_class, classes, noise, seed)
    Xt, yt = spirals(n_test, classes, noise, seed + 1)
    gen = as_generator(seed)
    model = _net([2, width, 2, classes], [init_std] * 3, [init_std] * 3, gen)
    initial = _to_params(model)
    fit = _train(model, torch.as_tensor(X), torch.as_tensor(y), epochs=epochs, lr=lr, weight_decay=weight_decay,
                 optimizer=optimizer, momentum=momentum, snapshots=snapshots, track=track,
                 desc=f"spiral width {width}")
    final = _to_params(model)
    lim = 1.2 * float(np.abs(X).max())
    lims = (-lim, lim, -lim, lim)
    finite = fit.diverged_at is None
    regions = (decision_regions(final, lims, regions_resolution) if finite
               else np.zeros((regions_resolution, regions_resolution), dtype=np.int64))
    if finite:
        grid_in, grid_emb = interpolation_grid(final, lims)
    else:
        grid_in = _grid_lines(lims, 21, 200)
        grid_emb = np.full_like(grid_in, np.nan)
    config = dict(classes=classes, n_per_class=n_per_class, noise=noise, width=width, epochs=epochs, lr=lr,
                  weight_decay=weight_decay, optimizer=optimizer, momentum=momentum, init_std=init_std, seed=seed,
                  n_test_per_class=n_test)
    last = len(fit.loss) - 1
    return SpiralRun(
        config=config, X_train=X, y_train=y, X_test=Xt, y_test=yt,
        epochs=fit.epochs, loss=fit.loss, train_accuracy=fit.accuracy,
        snapshot_epochs=np.array(fit.snapshot_epochs), embeddings=np.array(fit.embeddings),
        class_vectors=np.array(fit.class_vectors), class_biases=np.array(fit.class_biases),
        embedding_radius=np.array([embedding_radius(e) for e in fit.embeddings]), params=final,
        final_train_accuracy=float(fit.accuracy[last]),
        final_test_accuracy=_accuracy(model, Xt, yt) if finite else float("nan"),
        final_loss=float(fit.loss[last]), diverged_at=fit.diverged_at, input_lims=lims, input_regions=regions,
        grid_input=grid_in, grid_embedding=grid_emb, params_init=initial)


def linear_baseline(X: Any, y: Any, X_test: Any, y_test: Any) -> float:
    """Test accuracy of a linear classifier on the raw inputs (multinomial logistic regression, scikit-learn):
    what the network's learned features are compared with (the lecture: a linear model stays near 50%)."""
    from sklearn.linear_model import LogisticRegression

    X = as_numpy(X, "X", ndim=2)
    X_test = as_numpy(X_test, "X_test", ndim=2)
    y = as_numpy(y, "y", ndim=1, dtype=np.int64)
    y_test = as_numpy(y_test, "y_test", ndim=1, dtype=np.int64)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    return float((clf.predict(X_test) == y_test).mean())


# ---------------------------------------------------------------------------------------------------------------
# Hidden-width sweep
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class WidthCurves:
    """One hidden width of :func:`spiral_width_sweep`: loss and training accuracy per epoch, (E + 1,) each
    (shorter if the run diverged), the accuracy on the held-out draw, and the initial and final weights."""

    width: int
    loss: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: float
    params: Params | None = None
    params_init: Params | None = None


@dataclass
class WidthSweep:
    """What :func:`spiral_width_sweep` returns: per hidden width, loss and training-accuracy curves and test accuracy.

    ``loss[i]``, ``train_accuracy[i]`` are (E + 1,) arrays for ``widths[i]`` (shorter if that run diverged);
    ``params[i]``, ``params_init[i]`` the trained and the initial weights (None where a checkpoint of an older
    layout had none), and ``X_train``, ``y_train`` the training spiral they share.
    """

    widths: list[int]
    epochs: int
    loss: list[np.ndarray]
    train_accuracy: list[np.ndarray]
    test_accuracy: list[float]
    config: dict[str, Any] = field(default_factory=dict)
    params: list[Params | None] = field(default_factory=list)
    params_init: list[Params | None] = field(default_factory=list)
    X_train: np.ndarray | None = None
    y_train: np.ndarray | None = None

    def final_train_accuracy(self) -> list[float]:
        return [float(a[-1]) for a in self.train_accuracy]

    def final_loss(self) -> list[float]:
        return [float(v[-1]) for v in self.loss]

    def summary(self) -> dict[str, Any]:
        """The sweep's numbers without the curves: widths, final training accuracy and loss, test accuracy."""
        return {"widths": self.widths, "final_train_accuracy": self.final_train_accuracy(),
                "test_accuracy": self.test_accuracy, "final_loss": self.final_loss(), "epochs": self.epochs}


def spiral_width_sweep(widths: Sequence[int] = WIDTHS, classes: int = 5, n_per_class: int = 1000,
                       noise: float = 0.2, *, epochs: int = 2000, lr: float = 1e-3, weight_decay: float = 1e-5,
                       optimizer: str = "adam", momentum: float = 0.9, init_std: float = 0.1, seed: int = 0,
                       run_one: Callable[[int, Callable[[], WidthCurves]], WidthCurves] | None = None,
                       track: Callable[[Iterable[int], str], Iterable[int]] | None = None) -> WidthSweep:
    """Train the lecture's network for each hidden width (same data, same seed) and keep the curves.

    ``run_one(width, compute)`` may wrap each width's computation (the tour passes a checkpoint so an interrupted
    sweep resumes); ``compute()`` returns that width's :class:`WidthCurves`.
    """
    widths = [check_int(w, "widths", minimum=1) for w in widths]
    if not widths:
        raise ValidationError("widths", "at least one hidden width", "an empty list")
    _check_common(classes, n_per_class, noise, epochs, lr, weight_decay, optimizer, momentum, seed)

    def compute(width: int) -> WidthCurves:
        run = train_spiral(classes, n_per_class, noise, width=width, epochs=epochs, lr=lr,
                           weight_decay=weight_decay, optimizer=optimizer, momentum=momentum, init_std=init_std,
                           snapshots=0, seed=seed, regions_resolution=2)
        return WidthCurves(width, np.asarray(run.loss, dtype=float), np.asarray(run.train_accuracy, dtype=float),
                           float(run.final_test_accuracy), run.params, run.params_init)

    it: Iterable[int] = widths if track is None else track(widths, "width sweep")
    curves = [run_one(w, lambda w=w: compute(w)) if run_one is not None else compute(w) for w in it]
    config = dict(classes=classes, n_per_class=n_per_class, noise=noise, lr=lr, weight_decay=weight_decay,
                  optimizer=optimizer, init_std=init_std, seed=seed)
    X, y = spirals(n_per_class, classes, noise, seed)
    return WidthSweep(widths, epochs, [c.loss for c in curves], [c.train_accuracy for c in curves],
                      [c.test_accuracy for c in curves], config, [c.params for c in curves],
                      [c.params_init for c in curves], X, y)




# ---------------------------------------------------------------------------------------------------------------
# Narrow deep net: the plane folded layer by layer
# ---------------------------------------------------------------------------------------------------------------

def count_linear_pieces(layers: Params, lims: Sequence[float], resolution: int = 400, *,
                        slope: float = 0.0) -> int:
    """Number of linear pieces of a (leaky-)ReLU net on the box ``lims``, counted on a grid.

    ``layers`` are the hidden layers ``[(W_1, b_1), ..., (W_L, b_L)]`` (each followed by the activation). On the
    set of inputs sharing one activation pattern (the sign of every pre-activation) the net is one affine map,
    and that set is convex (an intersection of half-planes, each pre-activation being affine there), so the
    number of distinct patterns met on a ``resolution x resolution`` grid counts the pieces (a lower bound: a
    piece thinner than the grid spacing may be missed). One layer of ``n`` lines in general position whose
    crossings all lie in the box gives ``1 + n + n(n - 1)/2``.
    """
    resolution = check_int(resolution, "resolution", minimum=2)
    x0, x1, y0, y1 = (float(v) for v in lims)
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    h = np.stack([gx.ravel(), gy.ravel()], axis=1)
    patterns = []
    for W, b in layers:
        z = h @ np.asarray(W, dtype=np.float64).T + np.asarray(b, dtype=np.float64)
        patterns.append(z > 0)
        h = np.where(z > 0, z, slope * z)
    if not patterns:
        return 1
    bits = np.packbits(np.concatenate(patterns, axis=1), axis=1)  # (resolution², bytes)
    # one opaque row per point: np.unique sorts it by memcmp, 3-4x faster than axis=0 (compares field by field)
    rows = np.ascontiguousarray(bits).view(np.dtype((np.void, bits.shape[1]))).ravel()
    return int(len(np.unique(rows)))


@dataclass
class FoldingRun:
    """What :func:`train_folding_net` returns: the narrow deep net, stage by stage.

    stage_names : ["input", "linear 1", "leaky ReLU 1", ..., "embedding"] (S stages).
    stage_points : (S, N, 2) the training points after each stage; stage_grid : (S, 2L, P, 2) a grid of the
        input plane after each stage; pieces : (S,) linear pieces of the map input -> that stage (on the box).
    params : final weights; loss, train_accuracy : (E + 1,) curves; final_train_accuracy, diverged_at.
    """

    config: dict[str, Any]
    X_train: np.ndarray
    y_train: np.ndarray
    stage_names: list[str]
    stage_points: list[np.ndarray]
    stage_grid: list[np.ndarray]
    pieces: list[int]
    params: Params
    loss: np.ndarray
    train_accuracy: np.ndarray
    final_train_accuracy: float
    diverged_at: int | None
    input_lims: tuple[float, float, float, float]


def train_folding_net(depth: int = 4, classes: int = 3, n_per_class: int = 300, noise: float = 0.2, *,
                      slope: float = 0.1, epochs: int = 3000, lr: float = 1e-2, weight_decay: float = 0.0,
                      optimizer: str = "adam", momentum: float = 0.9, seed: int = 0, restarts: int = 3,
                      track: Callable[[Iterable[int], str], Iterable[int]] | None = None) -> FoldingRun:
    """Train ``2 -> [2 (leaky ReLU)] * depth -> 2 (embedding) -> classes`` and record every stage.

    Narrow nets often get stuck, so ``restarts`` initialisations (seeds ``seed, seed + 1, ...``) are tried and the
    best final training accuracy is kept. Weights start He-scaled for leaky ReLU,
    ``N(0, 2 / ((1 + slope^2) fan_in))``, biases ``N(0, 0.1^2)``.
    """
    depth = check_int(depth, "depth", minimum=1)
    classes, n_per_class, noise, epochs, lr, weight_decay, optimizer, momentum, seed = _check_common(
        classes, n_per_class, noise, epochs, lr, weight_decay, optimizer, momentum, seed)
    slope = check_nonnegative(slope, "slope")
    restarts = check_int(restarts, "restarts", minimum=1)
    X, y = spirals(n_per_class, classes, noise, seed)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    best: tuple[float, nn.Sequential, _Fit] | None = None
    sizes = [2] + [2] * depth + [2, classes]
    w_stds = [math.sqrt(2.0 / ((1.0 + slope**2) * n_in)) for n_in in sizes[:-1]]
    for r in range(restarts):
        model = _net(sizes, w_stds, [0.1] * len(w_stds), as_generator(seed + r), slope=slope)
        fit = _train(model, Xt, yt, epochs=epochs, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                     momentum=momentum, snapshots=0, track=track, desc=f"narrow net, start {r + 1}")
        acc = float(fit.accuracy[-1]) if fit.diverged_at is None else -1.0
        if best is None or acc > best[0]:
            best = (acc, model, fit)
    assert best is not None
    _, model, fit = best
    lim = 1.2 * float(np.abs(X).max())
    lims = (-lim, lim, -lim, lim)
    grid = _grid_lines(lims, 17, 300)
    stages_pts: list[torch.Tensor] = []
    stages_grid: list[torch.Tensor] = []
    with torch.no_grad():
        _forward(model, Xt, stages=stages_pts)
        _forward(model, torch.as_tensor(grid.reshape(-1, 2)), stages=stages_grid)
    names = ["input"]
    for i in range(1, depth + 1):
        names += [f"linear {i}", f"leaky ReLU {i}"]
    names.append("embedding (linear)")
    final = _to_params(model)
    hidden = final[:depth]
    # a linear map adds no piece; the l-th activation cuts along the lines where layer l's pre-activations vanish
    pieces = [1]
    for i in range(1, depth + 1):
        pieces += [pieces[-1], count_linear_pieces(hidden[:i], lims, 500, slope=slope)]
    pieces.append(pieces[-1])
    config = dict(depth=depth, classes=classes, n_per_class=n_per_class, noise=noise, slope=slope, epochs=epochs,
                  lr=lr, weight_decay=weight_decay, optimizer=optimizer, seed=seed, restarts=restarts)
    return FoldingRun(
        config=config, X_train=X, y_train=y, stage_names=names,
        stage_points=[X] + [s.numpy() for s in stages_pts],
        stage_grid=[grid] + [s.numpy().reshape(grid.shape[0], grid.shape[1], 2) for s in stages_grid],
        pieces=pieces, params=final, loss=fit.loss, train_accuracy=fit.accuracy,
        final_train_accuracy=float(fit.accuracy[-1]), diverged_at=fit.diverged_at, input_lims=lims)


# ---------------------------------------------------------------------------------------------------------------
# The Adam-trained spiral net as a kernel machine (chapter 'pathkernel', issue 15)
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class SpiralKernelMachine:
    """The spiral net trained by Adam (as :func:`train_spiral`: mean cross-entropy, weight decay, small init) and
    rewritten exactly as ``f(x) = b + Σ_i a_i K(x, x_i) + decay`` (:func:`kernelscope.dynamics.path_kernel`).

    X_train (N, 2), y_train (N,), X_test (M, 2), y_test (M,) ; result : the PathKernelResult (K (M, N, K, K),
    contributions (M, N, K), per-layer kernels) ; test_accuracy ; config : the settings ; train_result : with
    ``with_train``, the same kernel machine on the training points (K (N, N, K, K): the path kernel on train ×
    train, and with ``ntk_every`` the tangent kernel's path Θ_s(X_train, X_train)), else None.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    result: PathKernelResult
    test_accuracy: float
    config: dict = field(default_factory=dict)
    train_result: PathKernelResult | None = None


def spiral_kernel_machine(classes: int = 3, n_per_class: int = 40, noise: float = 0.2, *, width: int = 100,
                          epochs: int = 300, lr: float = 1e-2, weight_decay: float = 1e-5, init_std: float = 0.1,
                          n_test_per_class: int = 8, nodes: int = 4, seed: int = 0, tol: float = 1e-2,
                          with_train: bool = False, ntk_every: int | None = None,
                          track: Callable[[Iterable[int], str], Iterable[int]] | None = None) -> SpiralKernelMachine:
    """The network of :func:`train_spiral` (``2 -> width (ReLU) -> 2 -> classes``, same builder and init), trained
    full batch by Adam on the mean cross-entropy with ``weight_decay``, as a kernel machine over its training points.

    A smaller problem than the chapter-7 run (``n_per_class`` points per arm, ``epochs`` steps at a larger ``lr``)
    so that the per-step kernel bookkeeping stays cheap. ReLU has kinks, so the identity holds to the quadrature
    error at the kinks crossed within a step (~1e-4 relative here), not to rounding: ``tol`` is set accordingly.

    ``with_train`` also evaluates the kernel machine on the training points (one training: the path kernel is
    evaluated on ``[X_test; X_train]`` and split, :meth:`~kernelscope.dynamics.PathKernelResult.rows`), and
    ``ntk_every`` records the tangent kernel every that many steps.
    """
    width = check_int(width, "width", minimum=1)
    n_test = check_int(n_test_per_class, "n_test_per_class", minimum=1)
    classes, n_per_class, noise, epochs, lr, weight_decay, _, _, seed = _check_common(
        classes, n_per_class, noise, epochs, lr, weight_decay, "adam", 0.0, seed)
    X, y = spirals(n_per_class, classes, noise, seed)
    Xt, yt = spirals(n_test, classes, noise, seed + 1)
    model = _net([2, width, 2, classes], [init_std] * 3, [init_std] * 3, as_generator(seed))
    m = len(Xt)
    res = path_kernel(model, X, y, np.vstack([Xt, X]) if with_train else Xt, lr=lr, steps=epochs,
                      loss="cross_entropy", reduction="mean", optimizer="adam", weight_decay=weight_decay, nodes=nodes,
                      per_layer=True, ntk_every=ntk_every, tol=tol, track=track)
    res, train_res = (res.rows(slice(0, m)), res.rows(slice(m, None))) if with_train else (res, None)
    acc = float(np.mean(np.argmax(res.f_model, 1) == yt))
    config = dict(classes=classes, n_per_class=n_per_class, noise=noise, width=width, epochs=epochs, lr=lr,
                  weight_decay=weight_decay, init_std=init_std, n_test_per_class=n_test, nodes=nodes, seed=seed)
    return SpiralKernelMachine(X, y, Xt, yt, res, acc, config, train_res)
