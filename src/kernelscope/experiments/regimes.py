"""Where the kernel picture stops: kernel classifiers against finite networks of growing width (THEORY.md 4, 5, 7).

On the same spiral data:

- the analytic NNGP and NTK of the architecture ``2 -> n (ReLU) -> K`` in the NTK parameterisation
  (THEORY.md section 4, from :mod:`kernelscope.nets`),
  used as kernel classifiers: ``F(x) = k(x, X) (k(X, X) + ridge I)^-1 Y`` on centred one-hot targets ``Y``,
  prediction ``argmax_k F_k``; and the NTK prediction after exactly the gradient-descent steps the finite nets
  take (the linearised network, THEORY.md section 5);
- finite networks of widths 16 ... 4096 with the same parameterisation, trained by full-batch gradient descent on
  ``L = (1/2N) sum_i |f(x_i) - Y_i|^2``.

For each finite net: test accuracy, the relative NTK change ``|Theta_T - Theta_0|_F / |Theta_0|_F`` on the
training points, the relative weight change, and the centred kernel-target alignment
``A(K) = <HKH, Y Y^T>_F / (|HKH|_F |Y Y^T|_F)`` (``H = I - 11^T/N``; Cortes, Mohri & Rostamizadeh 2012) of
``Theta_0`` and ``Theta_T``. In the lazy (kernel) regime the NTK stays put and its alignment does not change;
feature learning is exactly the NTK moving towards the targets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from .._arrays import (ValidationError, as_generator, as_numpy, check_int, check_nonnegative, check_positive)
from ..data import spirals
from .spirals import one_thread

__all__ = ["ntk_two_layer", "analytic_kernels", "kernel_target_alignment", "kernel_classifier",
           "gd_kernel_predict", "train_ntk_net", "RegimeRow", "RegimeTable", "regime_table", "REGIME_WIDTHS"]

#: Widths of the finite networks in the regime table.
REGIME_WIDTHS = (16, 64, 256, 1024, 4096)


# ---------------------------------------------------------------------------------------------------------------
# Kernels of the two-layer ReLU net in the NTK parameterisation
# ---------------------------------------------------------------------------------------------------------------

def _relu(z: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(z, 0.0)


def ntk_two_layer(params: dict[str, torch.Tensor], X1: torch.Tensor, X2: torch.Tensor | None = None, *,
                  w_std: float = 1.0, b_std: float = 0.1) -> torch.Tensor:
    """Empirical NTK of the finite net ``f(x) = (w/sqrt(n)) W2 relu(z) + b b2``, ``z = (w/sqrt(d)) W1 x + b b1``.

    With K outputs the kernel is the per-output NTK averaged over the outputs,
    ``Theta(x, x') = (1/K) sum_k grad f_k(x) . grad f_k(x')`` =
    ``b^2 + (w^2/n) relu(z).relu(z') + Sigma1(x, x') (w^2/n) sum_i mean_k(W2_ki^2) 1[z_i>0] 1[z'_i>0]``
    with ``Sigma1(x, x') = w^2 x.x'/d + b^2`` (THEORY.md section 5 with biases). Shapes: X1 (N1, d), X2 (N2, d)
    -> (N1, N2).
    """
    X2 = X1 if X2 is None else X2
    W1, b1, W2 = params["W1"], params["b1"], params["W2"]
    n, d = W1.shape
    z1 = (w_std / math.sqrt(d)) * X1 @ W1.T + b_std * b1  # (N1, n)
    z2 = (w_std / math.sqrt(d)) * X2 @ W1.T + b_std * b1  # (N2, n)
    readout = (W2**2).mean(0)  # (n,) mean over outputs of W2_ki^2
    sigma1 = w_std**2 * (X1 @ X2.T) / d + b_std**2
    last = (w_std**2 / n) * _relu(z1) @ _relu(z2).T + b_std**2
    first = (w_std**2 / n) * ((z1 > 0).to(X1.dtype) * readout) @ (z2 > 0).to(X1.dtype).T
    return last + sigma1 * first


def analytic_kernels(X1: torch.Tensor, X2: torch.Tensor | None = None, *, w_std: float = 1.0, b_std: float = 0.1
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Infinite-width ``(nngp, ntk)`` of ``Dense(n) -> ReLU -> Dense(out)`` from :mod:`kernelscope.nets`.

    Closed form (THEORY.md sections 3-4): ``Sigma1 = w^2 x.x'/d + b^2``, ``theta`` the angle of ``Sigma1``,
    ``Sigma2 = w^2 sqrt(Sigma1(x,x) Sigma1(x',x')) (sin theta + (pi - theta) cos theta)/(2 pi) + b^2``,
    ``Theta2 = Sigma2 + w^2 (pi - theta)/(2 pi) Sigma1``. Shapes: (N1, d), (N2, d) -> two (N1, N2).
    """
    from .. import nets

    net = nets.serial(nets.Dense(512, w_std=w_std, b_std=b_std), nets.ReLU(), nets.Dense(1, w_std=w_std, b_std=b_std))
    k = net.kernel(X1, X2)
    return torch.as_tensor(k.nngp, dtype=torch.float64), torch.as_tensor(k.ntk, dtype=torch.float64)


def kernel_target_alignment(K: Any, y: Any, classes: int | None = None) -> float:
    """Centred kernel-target alignment ``<HKH, T>_F / (|HKH|_F |T|_F)``, ``T = Y Y^T`` of one-hot labels.

    ``K`` of shape (N, N), ``y`` of shape (N,) integer labels. 1 means the kernel's geometry is exactly the
    labels' (same class similar, other classes not); near 0 means unrelated.
    """
    K = as_numpy(K, "K", ndim=2)
    y = as_numpy(y, "y", ndim=1, dtype=np.int64)
    if K.shape != (len(y), len(y)):
        raise ValidationError("K", f"a square matrix of shape ({len(y)}, {len(y)})", f"shape {K.shape}")
    classes = int(y.max()) + 1 if classes is None else classes
    Y = np.eye(classes)[y]
    T = Y @ Y.T
    Kc = K - K.mean(0, keepdims=True) - K.mean(1, keepdims=True) + K.mean()
    # <HKH, T> = <HKH, HTH> since H is a projection; normalise by the centred target too
    Tc = T - T.mean(0, keepdims=True) - T.mean(1, keepdims=True) + T.mean()
    denom = np.linalg.norm(Kc) * np.linalg.norm(Tc)
    return float((Kc * Tc).sum() / denom) if denom > 0 else 0.0


def _one_hot_centred(y: np.ndarray, classes: int) -> torch.Tensor:
    return torch.as_tensor(np.eye(classes)[y] - 1.0 / classes)


def kernel_classifier(K_train: torch.Tensor, K_test: torch.Tensor, y: np.ndarray, classes: int,
                      ridge: float = 1e-6) -> np.ndarray:
    """Kernel regression on centred one-hot targets, ``argmax_k [K_test (K_train + ridge I)^-1 Y]_k``.

    ``ridge`` is relative to the mean of ``diag(K_train)``. Returns the predicted labels, shape (N_test,).
    """
    Y = _one_hot_centred(y, classes)
    lam = ridge * float(torch.diagonal(K_train).mean())
    A = K_train + lam * torch.eye(len(y), dtype=K_train.dtype)
    alpha = torch.linalg.lstsq(A, Y).solution if lam == 0 else torch.linalg.solve(A, Y)
    return (K_test @ alpha).argmax(1).numpy()


def gd_kernel_predict(K_train: torch.Tensor, K_test: torch.Tensor, Y: torch.Tensor, lr: float, steps: int
                      ) -> torch.Tensor:
    """Prediction of the linearised net after ``steps`` of full-batch GD on ``(1/2N) |f - Y|^2`` from ``f = 0``.

    ``f_T(x) = K(x, X) K^-1 (I - (I - lr K / N)^T) Y`` (THEORY.md section 5, in discrete steps), computed in the
    eigenbasis of ``K`` so that zero eigenvalues take their limit ``lr T / N``. Shapes: K_train (N, N),
    K_test (M, N), Y (N, C) -> (M, C).
    """
    N = K_train.shape[0]
    lam, V = torch.linalg.eigh(K_train)
    g = lr * lam / N
    safe = lam.abs() > 1e-12 * lam.abs().max()
    factor = torch.where(safe, (1.0 - (1.0 - g) ** steps) / torch.where(safe, lam, torch.ones_like(lam)),
                         torch.full_like(lam, lr * steps / N))
    return K_test @ (V @ (factor[:, None] * (V.T @ Y)))


# ---------------------------------------------------------------------------------------------------------------
# Finite networks in the NTK parameterisation
# ---------------------------------------------------------------------------------------------------------------

def _init_ntk(width: int, d: int, out: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    p = {"W1": torch.randn(width, d, generator=gen, dtype=torch.float64),
         "b1": torch.randn(width, generator=gen, dtype=torch.float64),
         "W2": torch.randn(out, width, generator=gen, dtype=torch.float64),
         "b2": torch.randn(out, generator=gen, dtype=torch.float64)}
    return {k: v.requires_grad_() for k, v in p.items()}


def _ntk_forward(p: dict[str, torch.Tensor], X: torch.Tensor, w_std: float, b_std: float) -> torch.Tensor:
    n, d = p["W1"].shape
    z = (w_std / math.sqrt(d)) * X @ p["W1"].T + b_std * p["b1"]  # (N, n)
    return (w_std / math.sqrt(n)) * _relu(z) @ p["W2"].T + b_std * p["b2"]  # (N, K)


def train_ntk_net(X: Any, y: Any, X_test: Any, width: int, *, classes: int | None = None, w_std: float = 1.0,
                  b_std: float = 0.1, lr: float = 1.0, steps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Train ``2 -> width (ReLU) -> K`` (NTK parameterisation) by full-batch GD on ``(1/2N) |f - Y|^2``.

    Returns a dict: ``params0``, ``paramsT`` (dicts of tensors), ``loss`` (steps + 1,), ``test_pred`` (M,) labels,
    ``train_pred`` (N,) labels, ``diverged_at`` (None or the step).
    """
    X = torch.as_tensor(as_numpy(X, "X", ndim=2))
    Xt = torch.as_tensor(as_numpy(X_test, "X_test", ndim=2))
    y = as_numpy(y, "y", ndim=1, dtype=np.int64)
    width = check_int(width, "width", minimum=1)
    steps = check_int(steps, "steps", minimum=1)
    lr = check_positive(lr, "lr")
    classes = int(y.max()) + 1 if classes is None else classes
    Y = _one_hot_centred(y, classes)
    p = _init_ntk(width, X.shape[1], classes, as_generator(seed))
    with one_thread():
        return _gd(p, X, Xt, Y, w_std, b_std, lr, steps)


def _gd(p, X, Xt, Y, w_std, b_std, lr, steps) -> dict[str, Any]:
    p0 = {k: v.detach().clone() for k, v in p.items()}
    opt = torch.optim.SGD(list(p.values()), lr=lr)
    losses = np.full(steps + 1, np.nan)
    diverged_at = None
    for step in range(steps + 1):
        loss = 0.5 * ((_ntk_forward(p, X, w_std, b_std) - Y) ** 2).sum(1).mean()
        losses[step] = float(loss.detach())
        if not math.isfinite(losses[step]):
            diverged_at = step
            break
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    pT = {k: v.detach().clone() for k, v in p.items()}
    with torch.no_grad():
        test_pred = _ntk_forward(pT, Xt, w_std, b_std).argmax(1).numpy()
        train_pred = _ntk_forward(pT, X, w_std, b_std).argmax(1).numpy()
    return {"params0": p0, "paramsT": pT, "loss": losses, "test_pred": test_pred, "train_pred": train_pred,
            "diverged_at": diverged_at}


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
    rows: list[RegimeRow]
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "rows": [asdict(r) for r in self.rows]}

    @staticmethod
    def from_json(d: dict[str, Any]) -> "RegimeTable":
        def num(v):  # JSON keeps NaN as null and inf as "inf"
            return float("nan") if v is None else float(v)
        rows = [RegimeRow(**{k: (v if k == "model" else num(v)) for k, v in r.items()}) for r in d["rows"]]
        return RegimeTable(rows, dict(d.get("config", {})))

    def finite_rows(self) -> list[RegimeRow]:
        return [r for r in self.rows if math.isfinite(r.width)]


def regime_table(widths: Sequence[int] = REGIME_WIDTHS, classes: int = 3, n_per_class: int = 100,
                 noise: float = 0.2, *, n_test_per_class: int = 200, w_std: float = 1.0, b_std: float = 0.1,
                 steps: int = 2000, lr: float | None = None, ridge: float = 1e-6, seed: int = 0,
                 run_one: Callable[[str, Callable[[], dict[str, Any]]], dict[str, Any]] | None = None,
                 track: Callable[[Iterable[int], str], Iterable[int]] | None = None) -> RegimeTable:
    """Kernel classifiers (analytic NNGP, NTK) vs finite NTK-parameterised nets of each width, on one spiral.

    The training set is ``spirals(n_per_class, classes, noise, seed)``, the test set a second draw (seed + 1).
    ``lr`` defaults to ``1 / lambda_max(Theta / N)`` of the analytic NTK (stable for every width, the same for
    all). ``run_one(name, compute)`` may wrap each finite width (the tour's checkpoint).
    """
    widths = [check_int(w, "widths", minimum=1) for w in widths]
    classes = check_int(classes, "classes", minimum=2)
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    noise = check_nonnegative(noise, "noise")
    n_test_per_class = check_int(n_test_per_class, "n_test_per_class", minimum=1)
    steps = check_int(steps, "steps", minimum=1)
    ridge = check_nonnegative(ridge, "ridge")
    seed = check_int(seed, "seed", minimum=0)
    X, y = spirals(n_per_class, classes, noise, seed)
    Xt, yt = spirals(n_test_per_class, classes, noise, seed + 1)
    Xtr, Xte = torch.as_tensor(X), torch.as_tensor(Xt)
    N = len(y)
    nngp, ntk = analytic_kernels(Xtr, None, w_std=w_std, b_std=b_std)
    nngp_t, ntk_t = analytic_kernels(Xte, Xtr, w_std=w_std, b_std=b_std)
    if lr is None:
        lr = float(N / torch.linalg.eigvalsh(ntk)[-1])
    lr = check_positive(lr, "lr")
    Y = _one_hot_centred(y, classes)
    rows: list[RegimeRow] = []
    for name, Ktr, Kte in (("NNGP kernel regression", nngp, nngp_t), ("NTK kernel regression", ntk, ntk_t)):
        pred_te = kernel_classifier(Ktr, Kte, y, classes, ridge)
        pred_tr = kernel_classifier(Ktr, Ktr, y, classes, ridge)
        a = kernel_target_alignment(Ktr.numpy(), y, classes)
        rows.append(RegimeRow(name, float("inf"), float((pred_tr == y).mean()), float((pred_te == yt).mean()),
                              alignment_0=a, alignment_T=a))
    f_te = gd_kernel_predict(ntk, ntk_t, Y, lr, steps).argmax(1).numpy()
    f_tr = gd_kernel_predict(ntk, ntk, Y, lr, steps).argmax(1).numpy()
    a = kernel_target_alignment(ntk.numpy(), y, classes)
    rows.append(RegimeRow(f"NTK linearised, {steps} GD steps", float("inf"), float((f_tr == y).mean()),
                          float((f_te == yt).mean()), 0.0, alignment_0=a, alignment_T=a))

    def compute(width: int) -> dict[str, Any]:
        r = train_ntk_net(X, y, Xt, width, classes=classes, w_std=w_std, b_std=b_std, lr=lr, steps=steps,
                          seed=seed)
        th0 = ntk_two_layer(r["params0"], Xtr, w_std=w_std, b_std=b_std)
        thT = ntk_two_layer(r["paramsT"], Xtr, w_std=w_std, b_std=b_std)
        w0 = torch.cat([v.ravel() for v in r["params0"].values()])
        wT = torch.cat([v.ravel() for v in r["paramsT"].values()])
        return asdict(RegimeRow(
            f"finite net, width {width}", float(width), float((r["train_pred"] == y).mean()),
            float((r["test_pred"] == yt).mean()),
            ntk_change=float(torch.linalg.norm(thT - th0) / torch.linalg.norm(th0)),
            weight_change=float(torch.linalg.norm(wT - w0) / torch.linalg.norm(w0)),
            alignment_0=kernel_target_alignment(th0.numpy(), y, classes),
            alignment_T=kernel_target_alignment(thT.numpy(), y, classes)))

    it: Iterable[int] = widths if track is None else track(widths, "regime widths")
    for w in it:
        d = run_one(f"regime_width_{w}", lambda w=w: compute(w)) if run_one is not None else compute(w)
        rows.append(RegimeRow(**{k: (v if k == "model" else float("nan") if v is None else float(v))
                                 for k, v in d.items()}))
    config = dict(classes=classes, n_per_class=n_per_class, n_test_per_class=n_test_per_class, noise=noise,
                  w_std=w_std, b_std=b_std, steps=steps, lr=lr, ridge=ridge, seed=seed, widths=widths)
    return RegimeTable(rows, config)
