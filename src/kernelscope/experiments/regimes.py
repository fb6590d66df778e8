"""Where the kernel picture stops: kernel classifiers against finite networks of growing width (THEORY.md 4, 5, 7).

On the same spiral data:

- the analytic NNGP and NTK of the architecture ``2 -> n (ReLU) -> K`` in the NTK parameterisation
  (THEORY.md section 4, from :mod:`kernelscope.nets`),
  used as kernel classifiers: ``F(x) = k(x, X) (k(X, X) + ridge I)^-1 Y`` on centred one-hot targets ``Y``,
  prediction ``argmax_k F_k``; the NTK prediction after exactly the gradient-descent steps the finite nets
  take (the linearised network, THEORY.md section 5); and the infinitely wide network trained by gradient flow on
  the cross-entropy ``-sum_i log softmax(f(x_i))_{y_i}`` (:func:`kernelscope.predict.gradient_descent`) for
  ``ce_time`` times the nets' training time;
- finite networks of widths 16 ... 4096 with the same parameterisation, trained by full-batch gradient descent on
  ``L = (1/2N) sum_i |f(x_i) - Y_i|^2``.

For each finite net: test accuracy, the relative NTK change ``|Theta_T - Theta_0|_F / |Theta_0|_F`` on the
training points, the relative weight change, and the centred kernel-target alignment
``A(K) = <HKH, Y Y^T>_F / (|HKH|_F |Y Y^T|_F)`` (``H = I - 11^T/N``; Cortes, Mohri & Rostamizadeh 2012) of
``Theta_0`` and ``Theta_T``. In the lazy (kernel) regime the NTK stays put and its alignment does not change;
feature learning is exactly the NTK moving towards the targets.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import empirical
from .._arrays import ValidationError, as_generator, as_numpy, check_int, check_nonnegative
from .._model import flat_weights, lambda_max
from ..data import one_hot_centred, spirals
from ..dynamics.train import TrainOptions, train
from ..nets.finite import mlp
from ..predict import gradient_descent, gradient_flow
from ..regression import KernelRegressor
from ..stats import fit_slope, kernel_target_alignment

__all__ = ["analytic_kernels", "kernel_target_alignment", "NTKNetRun", "train_ntk_net", "finite_ntk", "RegimeRow",
           "RegimeTable", "regime_table", "REGIME_WIDTHS"]

#: Widths of the finite networks in the regime table.
REGIME_WIDTHS = (16, 64, 256, 1024, 4096)


def _architecture(w_std: float, b_std: float, width: int = 512):
    """``Dense(width) -> ReLU -> Dense(1)`` in the NTK parameterisation, as a :mod:`kernelscope.nets` network."""
    from .. import nets

    return nets.serial(nets.Dense(width, w_std=w_std, b_std=b_std), nets.ReLU(),
                       nets.Dense(1, w_std=w_std, b_std=b_std))


def analytic_kernels(X1: torch.Tensor, X2: torch.Tensor | None = None, *, w_std: float = 1.0, b_std: float = 0.1
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Infinite-width ``(nngp, ntk)`` of ``Dense(n) -> ReLU -> Dense(out)`` from :mod:`kernelscope.nets`.

    Closed form (THEORY.md sections 3-4): ``Sigma1 = w^2 x.x'/d + b^2``, ``theta`` the angle of ``Sigma1``,
    ``Sigma2 = w^2 sqrt(Sigma1(x,x) Sigma1(x',x')) (sin theta + (pi - theta) cos theta)/(2 pi) + b^2``,
    ``Theta2 = Sigma2 + w^2 (pi - theta)/(2 pi) Sigma1``. Shapes: (N1, d), (N2, d) -> two (N1, N2).
    """
    k = _architecture(w_std, b_std).kernel(X1, X2)
    return torch.as_tensor(k.nngp, dtype=torch.float64), torch.as_tensor(k.ntk, dtype=torch.float64)


def _one_hot_centred(y: np.ndarray, classes: int) -> torch.Tensor:
    return torch.as_tensor(one_hot_centred(y, classes))


def finite_ntk(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """Empirical NTK averaged over the K outputs, ``(1/K) sum_k grad f_k(x) . grad f_k(x')`` (N, N):
    :func:`kernelscope.empirical.ntk` with ``trace=True`` over K."""
    K = empirical.ntk(model, X, trace=True)
    with torch.no_grad():
        return K / model(X[:1]).shape[1]


@dataclass
class NTKNetRun:
    """What :func:`train_ntk_net` returns: ``model0``, ``modelT`` (the network at initialisation and trained),
    ``loss`` (steps + 1,) (NaN after a stop), ``test_pred`` (M,) and ``train_pred`` (N,) predicted labels,
    ``diverged_at`` (None or the step where the loss became NaN/inf and training stopped, with a warning)."""

    model0: nn.Module
    modelT: nn.Module
    loss: np.ndarray
    test_pred: np.ndarray
    train_pred: np.ndarray
    diverged_at: int | None


def _gradient_descent(lr: Any, steps: Any) -> TrainOptions:
    """Full-batch gradient descent on the mean squared loss ``(1/2N) |f - Y|^2``, checked once."""
    options = TrainOptions(lr=lr, steps=steps, loss="mse", reduction="mean")
    if options.steps < 1:
        raise ValidationError("steps", "an integer >= 1", repr(steps))
    return options


def train_ntk_net(X: Any, y: Any, X_test: Any, width: int, *, classes: int | None = None, w_std: float = 1.0,
                  b_std: float = 0.1, lr: float = 1.0, steps: int = 2000, seed: int = 0,
                  options: TrainOptions | None = None) -> NTKNetRun:
    """Train ``2 -> width (ReLU) -> K`` (NTK parameterisation, :func:`kernelscope.nets.finite.mlp`) by full-batch
    gradient descent on ``(1/2N) |f - Y|^2`` (centred one-hot ``Y``) with :func:`kernelscope.dynamics.train`:
    ``lr`` and ``steps``, or ``options`` (a :class:`~kernelscope.dynamics.TrainOptions` made once by a caller that
    trains several nets, such as :func:`regime_table`)."""
    X = torch.as_tensor(as_numpy(X, "X", ndim=2))
    Xt = torch.as_tensor(as_numpy(X_test, "X_test", ndim=2))
    y = as_numpy(y, "y", ndim=1, dtype=np.int64)
    width = check_int(width, "width", minimum=1)
    options = _gradient_descent(lr, steps) if options is None else options
    steps = options.steps
    classes = int(y.max()) + 1 if classes is None else classes
    Y = _one_hot_centred(y, classes)
    model = mlp(X.shape[1], width, depth=2, d_out=classes, activation="relu", w_std=w_std, b_std=b_std,
                seed=as_generator(seed))
    model0 = copy.deepcopy(model)
    res = train(model, X, Y, options, what=f"the width-{width} network")
    losses = np.full(steps + 1, np.nan)
    losses[:len(res.losses)] = res.losses
    with torch.no_grad():
        test_pred = model(Xt).argmax(1).numpy()
        train_pred = model(X).argmax(1).numpy()
    return NTKNetRun(model0=model0, modelT=model, loss=losses, test_pred=test_pred, train_pred=train_pred,
                     diverged_at=res.diverged_at)


# ---------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class RegimeRow:
    """One model of the regime table. Kernel rows leave the finite-net columns as NaN."""

    model: str
    width: float  # inf for the analytic kernels
    train_accuracy: float
    test_accuracy: float
    ntk_change: float = float("nan")  # |Theta_T - Theta_0|_F / |Theta_0|_F on the training points
    weight_change: float = float("nan")  # |w_T - w_0| / |w_0|
    alignment_0: float = float("nan")  # centred kernel-target alignment of Theta_0 (analytic: of the kernel)
    alignment_T: float = float("nan")  # ... of Theta_T


@dataclass
class RegimeTable:
    """The kernel rows (width inf) and the finite nets' rows (by width) of :func:`regime_table`, and its settings."""

    rows: list[RegimeRow]
    config: dict[str, Any] = field(default_factory=dict)

    def finite_rows(self) -> list[RegimeRow]:
        return [r for r in self.rows if math.isfinite(r.width)]

    def __str__(self) -> str:
        """The table as text, one model per row (what ``print(table)`` shows; the dataclass keeps the numbers)."""
        head = ["model", "width", "train acc", "test acc", "NTK change", "weight change", "align Θ₀", "align Θ_T"]

        def cell(v: Any, kind: str) -> str:
            if isinstance(v, str):
                return v
            if not math.isfinite(v):
                return "∞" if kind == "width" and v > 0 else "—"
            return f"{v:.0f}" if kind == "width" else (f"{v:.1%}" if kind == "acc" else f"{v:.3g}")

        kinds = ["str", "width", "acc", "acc", "num", "num", "num", "num"]
        body = [[cell(v, k) for v, k in zip((r.model, r.width, r.train_accuracy, r.test_accuracy, r.ntk_change,
                                              r.weight_change, r.alignment_0, r.alignment_T), kinds)]
                for r in self.rows]
        widths = [max(len(row[j]) for row in [head, *body]) for j in range(len(head))]
        line = lambda row: "  ".join(c.ljust(w) if j == 0 else c.rjust(w)  # noqa: E731
                                     for j, (c, w) in enumerate(zip(row, widths)))
        steps = self.config.get("steps")
        title = "Where the kernel picture stops" + (f" (finite nets: {steps} gradient-descent steps)" if steps else "")
        return "\n".join([title, line(head), line(["-" * w for w in widths]), *map(line, body)])

    def tail_slope(self, metric: str) -> float:
        """Log-log slope of a finite-net column (``"ntk_change"``, ``"weight_change"``) between the two widest nets
        (:func:`kernelscope.stats.fit_slope`; lazy-training theory: −½). NaN with fewer than two positive values."""
        widest = self.finite_rows()[-2:]
        return fit_slope([r.width for r in widest], [getattr(r, metric) for r in widest])[0]


def regime_table(widths: Sequence[int] = REGIME_WIDTHS, classes: int = 3, n_per_class: int = 100,
                 noise: float = 0.2, *, n_test_per_class: int = 200, w_std: float = 1.0, b_std: float = 0.1,
                 steps: int = 2000, lr: float | None = None, ridge: float = 1e-6, seed: int = 0,
                 ce_time: float = 10.0,
                 run_one: Callable[[str, Callable[[], RegimeRow]], RegimeRow] | None = None,
                 track: Callable[[Iterable[int], str], Iterable[int]] | None = None) -> RegimeTable:
    """Kernel classifiers (analytic NNGP, NTK) vs finite NTK-parameterised nets of each width, on one spiral.

    The training set is ``spirals(n_per_class, classes, noise, seed)``, the test set a second draw (seed + 1).
    ``lr`` defaults to ``1 / lambda_max(Theta / N)`` of the analytic NTK (stable for every width, the same for
    all). ``run_one(name, compute)`` may wrap each finite width (the tour's checkpoint). The cross-entropy row
    integrates the NTK's function-space flow with step ``lr / N`` for ``ce_time * steps`` steps (0: no such row).
    """
    widths = [check_int(w, "widths", minimum=1) for w in widths]
    classes = check_int(classes, "classes", minimum=2)
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    noise = check_nonnegative(noise, "noise")
    n_test_per_class = check_int(n_test_per_class, "n_test_per_class", minimum=1)
    options = None if lr is None else _gradient_descent(lr, steps)  # refused before the kernels are computed
    ridge = check_nonnegative(ridge, "ridge")
    seed = check_int(seed, "seed", minimum=0)
    X, y = spirals(n_per_class, classes, noise, seed)
    Xt, yt = spirals(n_test_per_class, classes, noise, seed + 1)
    Xtr, Xte = torch.as_tensor(X), torch.as_tensor(Xt)
    N = len(y)
    nngp, ntk = analytic_kernels(Xtr, None, w_std=w_std, b_std=b_std)
    ntk_t = analytic_kernels(Xte, Xtr, w_std=w_std, b_std=b_std)[1]
    if options is None:  # the mean loss (1/2N)|f − Y|²: N times the summed loss's 1/λ_max
        options = _gradient_descent(N / lambda_max(ntk), steps)
    lr, steps = options.lr, options.steps
    Y = _one_hot_centred(y, classes).numpy()
    rows: list[RegimeRow] = []
    for name, Ktr in (("NNGP kernel regression", nngp), ("NTK kernel regression", ntk)):
        # ridge relative to the kernel's scale: lambda = ridge * mean(diag K)
        reg = KernelRegressor(_architecture(w_std, b_std), ridge=ridge * float(torch.diagonal(Ktr).mean()),
                              nngp=name.startswith("NNGP"), solver="cholesky").fit(X, Y)
        pred_tr, pred_te = reg.predict(X).argmax(1), reg.predict(Xt).argmax(1)
        a = kernel_target_alignment(Ktr.numpy(), y, classes)
        rows.append(RegimeRow(name, float("inf"), float((pred_tr == y).mean()), float((pred_te == yt).mean()),
                              alignment_0=a, alignment_T=a))
    # the linearised net after the same gradient-descent steps on (1/2N)|f - Y|^2: step size lr/N on the sum
    flow = gradient_flow(ntk, ntk_t, Y, steps, lr=lr / N, discrete=True)
    f_tr, f_te = np.asarray(flow.train).argmax(1), np.asarray(flow.test).argmax(1)
    a = kernel_target_alignment(ntk.numpy(), y, classes)
    rows.append(RegimeRow(f"NTK linearised, {steps} GD steps", float("inf"), float((f_tr == y).mean()),
                          float((f_te == yt).mean()), 0.0, alignment_0=a, alignment_T=a))
    ce_time = check_nonnegative(ce_time, "ce_time")
    if ce_time > 0:  # the infinitely wide net trained on the cross-entropy (summed), from f0 = 0
        ce = gradient_descent(ntk, torch.as_tensor(y), ce_time * steps, loss="cross_entropy", lr=lr / N,
                              k_test_train=ntk_t, rtol=1e-6, atol=1e-8)
        c_tr, c_te = ce.train.argmax(1).numpy(), ce.test.argmax(1).numpy()
        rows.append(RegimeRow(f"NTK cross-entropy flow, {ce_time:g}x the nets' time", float("inf"),
                              float((c_tr == y).mean()), float((c_te == yt).mean()), 0.0, alignment_0=a,
                              alignment_T=a))

    def compute(width: int) -> RegimeRow:
        r = train_ntk_net(X, y, Xt, width, classes=classes, w_std=w_std, b_std=b_std, seed=seed, options=options)
        th0, thT = finite_ntk(r.model0, Xtr), finite_ntk(r.modelT, Xtr)
        w0, wT = flat_weights(r.model0), flat_weights(r.modelT)
        return RegimeRow(
            f"finite net, width {width}", float(width), float((r.train_pred == y).mean()),
            float((r.test_pred == yt).mean()),
            ntk_change=float(torch.linalg.norm(thT - th0) / torch.linalg.norm(th0)),
            weight_change=float(torch.linalg.norm(wT - w0) / torch.linalg.norm(w0)),
            alignment_0=kernel_target_alignment(th0.numpy(), y, classes),
            alignment_T=kernel_target_alignment(thT.numpy(), y, classes))

    it: Iterable[int] = widths if track is None else track(widths, "regime widths")
    for w in it:
        rows.append(run_one(f"regime_width_{w}", lambda w=w: compute(w)) if run_one is not None else compute(w))
    config = dict(classes=classes, n_per_class=n_per_class, n_test_per_class=n_test_per_class, noise=noise,
                  w_std=w_std, b_std=b_std, steps=steps, lr=lr, ridge=ridge, seed=seed, widths=widths,
                  ce_time=ce_time)
    return RegimeTable(rows, config)
