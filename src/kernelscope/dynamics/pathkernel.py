"""Every model trained by gradient descent is a kernel machine: Domingos' path kernel (THEORY.md §6).

Gradient descent on ``L = Σ_i ℓ(f(x_i), y_i)`` takes steps ``Δw_s = −η Σ_{i∈B_s} ℓ'_{i,s} ∇f(x_i; w_s)``
(``ℓ'`` = ∂ℓ/∂f, ``B_s`` the step's batch). Along the segment ``w_s + τ Δw_s`` the change of the output at x is
exactly::

    f_{s+1}(x) − f_s(x) = ∫₀¹ ∇f(x; w_s + τ Δw_s) dτ · Δw_s = −η Σ_{i∈B_s} ℓ'_{i,s} k_s(x, x_i),
    k_s(x, x_i) = ∫₀¹ ∇f(x; w_s + τ Δw_s) dτ · ∇f(x_i; w_s).

Summing over the steps, ``f_T(x) = b + Σ_i a_i K(x, x_i)`` with ``b = f₀(x)``, the path kernel
``K(x, x_i) = η Σ_{s: i∈B_s} k_s(x, x_i)`` and ``a_i = −Σ_s η k_s(x, x_i) ℓ'_{i,s} / K(x, x_i)``, the
kernel-weighted path average of the loss derivative (Domingos, arXiv 2012.00152, Theorem 1, made exact for
discrete steps). ``exact=True`` integrates each segment with Gauss–Legendre quadrature (exact up to rounding
for smooth activations); ``exact=False`` is Domingos' left-endpoint sum ``k_s = Θ_{w_s}(x, x_i)``, first order
in the step size. For O outputs (a classifier's per-class scores) ``k_s`` is an O×O block
``[∇f_o(x) · ∇f_c(x_i)]`` and ``a_i`` a vector of O numbers.

Only per-step quantities are held (the gradients of the N training and M test points at the current weights,
or their per-layer factors for ``nn.Linear``/``nn.Conv2d`` models): memory O((N + M)·P), never the trajectory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import empirical
from .._arrays import ArrayKind, ValidationError, as_generator, as_tensor, check_choice, check_int, check_positive, warn
from .train import LOSSES, diverged, loss_value

__all__ = ["path_kernel", "PathKernelResult", "top_contributions", "LOSSES"]



@dataclass
class PathKernelResult:
    """What :func:`path_kernel` returns (arrays of the kind ``X_test`` came as).

    model : the trained copy of the model
    f_model : (M,) or (M, O) outputs of the trained model on X_test
    f_kernel : same shape, ``b + Σ_i a_i K(x, x_i)``
    K : (M, N) path kernel, or (M, N, O, O) ; a : (M, N) or (M, N, O) ; b : (M,) or (M, O), ``f₀(X_test)``
    contributions : (M, N) or (M, N, O), ``a_i K(x, x_i)`` (what each training point adds to f(x))
    ntk0, ntkT : (M, N) (or (M, N, O, O)) empirical NTK Θ(X_test, X) at the start and at the end
    T : ``η · steps_done``, the training time ; losses : training loss before each step
    steps_done : steps taken ; stopped_at : step where the loss became NaN/inf (training stopped), else None
    """

    model: nn.Module
    f_model: Any
    f_kernel: Any
    K: Any
    a: Any
    b: Any
    contributions: Any
    ntk0: Any
    ntkT: Any
    T: float
    steps_done: int
    exact: bool
    nodes: int
    losses: list[float] = field(default_factory=list)
    stopped_at: int | None = None

    @property
    def rel_error(self) -> float:
        """``‖f_kernel − f_model‖ / ‖f_model‖`` over the test points."""
        fk, fm = torch.as_tensor(self.f_kernel), torch.as_tensor(self.f_model)
        return float(torch.linalg.norm(fk - fm) / torch.linalg.norm(fm))


def _loss_and_derivative(out: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss over the batch (:func:`kernelscope.dynamics.train.loss_value`) and ``ℓ' = ∂ℓ/∂f`` of shape
    (B, O) (no graph through ℓ')."""
    total = loss_value(out, y, loss, "sum")
    if loss == "mse":
        return total, (out - y).detach()
    p = torch.softmax(out.detach(), dim=1)
    return total, p - torch.nn.functional.one_hot(y, out.shape[1]).to(p.dtype)


class _Gradients:
    """Per-example gradients of the model outputs at given weights: per-layer factors for nn.Linear/nn.Conv2d models
    (``empirical.layer_features``), else per-example Jacobians (N, O, P)."""

    def __init__(self, model: nn.Module, n_out: int, structured: bool):
        self.model, self.n_out, self.structured = model, n_out, structured

    def __call__(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None):
        if self.structured:
            return empirical.layer_features(self.model, x, self.n_out, params)
        return empirical.jacobian(self.model, x, self.n_out, params)

    def gram(self, g1, g2) -> torch.Tensor:
        """(n1, n2, O, O) inner products ``∇f_o(x) · ∇f_c(x')``."""
        if self.structured:
            return empirical.structured_gram(g1, g2)
        return torch.einsum("mop,icp->mioc", g1, g2)


def path_kernel(model: nn.Module, X: Any, y: Any, X_test: Any, *, lr: float, steps: int, loss: str = "mse",
                exact: bool = True, batch_size: int | None = None, seed: int = 0, nodes: int = 4,
                method: str = "auto", track: Callable | None = None, explode: float = 1e12) -> PathKernelResult:
    """Train a copy of ``model`` by gradient descent and write it as a kernel machine over its training points.

    Parameters
    ----------
    model : ``nn.Module``, (N, ...) -> (N,) or (N, O); left untouched (a copy is trained).
    X : (N, ...) training inputs. y : (N,) targets for ``'mse'`` with one output, (N, O) for O outputs; (N,)
        integer class labels in [0, O) for ``'cross_entropy'``.
    X_test : (M, ...) inputs where the kernel machine is evaluated.
    lr : step size η; the training is exactly ``torch.optim.SGD(lr=η)`` on the summed loss
        (``'mse'``: ``ℓ = ½‖f − y‖²``; ``'cross_entropy'``: ``ℓ = −log softmax(f)_y``).
    steps : number of steps. batch_size : None for full-batch; else each step uses the next ``batch_size`` points
        of a seeded permutation (a new one per epoch) and sums over them only.
    exact : Gauss–Legendre quadrature of each segment (``nodes`` nodes) vs Domingos' left-endpoint sum.
    method : 'auto' (per-layer factors when every trainable parameter is in an nn.Linear or nn.Conv2d), 'structured' or
        'jacobian' (per-example Jacobians).
    track : optional progress wrapper ``track(iterable, description)``.
    explode : a loss above ``explode`` times the first step's counts as divergence (as in
        :func:`kernelscope.dynamics.train`).

    Returns
    -------
    PathKernelResult. A NaN/inf (or exploding) loss stops training with a warning naming the step; the kernel
    machine of the steps taken so far is returned.

    Notes
    -----
    Gauss–Legendre with q nodes integrates polynomials of degree 2q − 1 exactly, and along one small step the
    integrand ``∇f(x; w_s + τΔw_s)·∇f(x_i; w_s)`` of a smooth network (tanh, erf, GELU) is very nearly one:
    float64 rounding (~1e-15) is reached. With ReLU the integrand jumps where a unit's pre-activation changes
    sign inside the step, so the identity holds only to about 1e-5–1e-4 relative (measured 7e-5 for a
    three-layer ReLU net of width 64, 100 steps); the left-endpoint sum has the same kinks plus its O(η) error.
    """
    kind = ArrayKind.of(X_test)
    loss = check_choice(loss, "loss", LOSSES)
    lr = check_positive(lr, "lr")
    steps = check_int(steps, "steps", minimum=1)
    nodes = check_int(nodes, "nodes", minimum=1, maximum=64)
    explode = check_positive(explode, "explode")
    method = check_choice(method, "method", ("auto", "structured", "jacobian"))
    if not isinstance(model, nn.Module):
        raise ValidationError("model", "a torch.nn.Module", type(model).__name__)
    empirical._check_fixed_function(model)
    net = copy.deepcopy(model)
    dtype, device = empirical._model_dtype(net), empirical._model_device(net)
    Xt = as_tensor(X, "X", dtype=dtype, device=device)
    Xs = as_tensor(X_test, "X_test", dtype=dtype, device=device)
    if Xt.ndim == 0 or tuple(Xs.shape[1:]) != tuple(Xt.shape[1:]):
        raise ValidationError("X_test", f"examples of shape {tuple(Xt.shape[1:])} (like X)",
                              f"shape {tuple(Xs.shape)}")
    n, m = Xt.shape[0], Xs.shape[0]
    n_out = empirical._output_dim(net, Xt)
    params = [p for p in net.parameters() if p.requires_grad]
    names = [k for k, p in net.named_parameters() if p.requires_grad]
    if not params:
        empirical.trainable_parameters(net)
    if loss == "mse":
        yt = as_tensor(y, "y", ndim=(1, 2), dtype=Xt.dtype, device=Xt.device)
        want = (n,) if n_out == 1 else (n, n_out)
        if yt.numel() != n * n_out or yt.shape[0] != n:
            raise ValidationError("y", f"targets of shape {want} for a model with {n_out} output(s)",
                                  f"shape {tuple(yt.shape)}")
        yt = yt.reshape(n, n_out)
    else:
        if n_out < 2:
            raise ValidationError("model", "per-class outputs (N, O) with O >= 2 for loss='cross_entropy'",
                                  f"{n_out} output")
        yt = as_tensor(y, "y", ndim=1, dtype=None, device=Xt.device)
        if yt.is_floating_point() and not bool((yt == yt.round()).all()):
            raise ValidationError("y", "integer class labels for loss='cross_entropy'", "non-integer values")
        yt = yt.long()
        if yt.shape[0] != n or int(yt.min()) < 0 or int(yt.max()) >= n_out:
            raise ValidationError("y", f"{n} labels in [0, {n_out})",
                                  f"shape {tuple(yt.shape)}, range [{int(yt.min())}, {int(yt.max())}]")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=n)
    if method == "auto":
        method = empirical._resolve(net, "auto")
    if method == "structured":
        empirical._structured_layers(net)  # a clear error if it does not apply
    grads = _Gradients(net, n_out, method == "structured")

    tau, omega = np.polynomial.legendre.leggauss(nodes)
    tau, omega = (tau + 1) / 2, omega / 2  # nodes and weights on [0, 1]
    gen = as_generator(seed)
    order = torch.arange(n)
    cursor = n  # forces a fresh permutation at the first mini-batch step

    with torch.no_grad():
        b = net(Xs).reshape(m, n_out)  # (M, O) = f₀(X_test)
    ntk0 = torch.as_tensor(empirical.ntk(net, Xs, Xt, method=_ntk_method(method)))
    K = Xt.new_zeros(m, n, n_out, n_out)  # (M, N, O, O) path kernel
    C = Xt.new_zeros(m, n, n_out)  # (M, N, O) contributions a_i K(x, x_i)
    opt = torch.optim.SGD(params, lr=lr)
    losses: list[float] = []
    stopped_at, done = None, 0
    it = track(range(steps), "gradient-descent steps") if track else range(steps)
    for s in it:
        if batch_size is None:
            idx = slice(None)  # full batch: views, no gathers or scatters
        else:
            if cursor + batch_size > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor:cursor + batch_size]
            cursor += batch_size
        xb = Xt[idx]
        out = net(xb).reshape(xb.shape[0], n_out)
        total, dl = _loss_and_derivative(out, yt[idx], loss)  # dl (B, O)
        lv = float(total.detach())
        if diverged(lv, losses[0] if losses else lv, explode):
            stopped_at = s
            warn(f"path_kernel: the loss became {lv:.4g} at step {s} (lr={lr:.3g}); stopped there and kept "
                 f"the kernel machine of the {s} steps taken. Use a smaller lr.")
            break
        losses.append(lv)
        g_train = grads(xb)  # per-example gradients at w_s
        w_s = [p.detach().clone() for p in params]
        if not exact:
            k_s = grads.gram(grads(Xs), g_train)  # (M, B, O, O) tangent kernel at w_s
        opt.zero_grad()
        total.backward()
        opt.step()
        if exact:
            dw = [p.detach() - w for p, w in zip(params, w_s)]
            k_s = None
            for t_k, o_k in zip(tau, omega):
                at = {nm: w + float(t_k) * d for nm, w, d in zip(names, w_s, dw)}
                part = grads.gram(grads(Xs, at), g_train) * float(o_k)
                k_s = part if k_s is None else k_s + part
        K[:, idx] += lr * k_s
        C[:, idx] -= lr * torch.einsum("mioc,ic->mio", k_s, dl)
        done = s + 1

    with torch.no_grad():
        f_model = net(Xs).reshape(m, n_out)
    ntkT = torch.as_tensor(empirical.ntk(net, Xs, Xt, method=_ntk_method(method)))
    if n_out == 1:
        Kk, Cc = K[:, :, 0, 0], C[:, :, 0]
        a = torch.where(Kk != 0, Cc / torch.where(Kk != 0, Kk, torch.ones_like(Kk)), torch.zeros_like(Kk))
        f_kernel = b[:, 0] + (a * Kk).sum(1)
        out = dict(f_model=f_model[:, 0], f_kernel=f_kernel, K=Kk, a=a, b=b[:, 0], contributions=Cc)
    else:
        a = (torch.linalg.pinv(K) @ C[..., None])[..., 0]  # (M, N, O): K a = C per pair
        f_kernel = b + torch.einsum("mioc,mic->mo", K, a)
        out = dict(f_model=f_model, f_kernel=f_kernel, K=K, a=a, b=b, contributions=C)
    out = {k: kind.wrap(v.detach()) for k, v in out.items()}
    return PathKernelResult(model=net, ntk0=kind.wrap(ntk0), ntkT=kind.wrap(ntkT), T=lr * done, steps_done=done,
                            exact=bool(exact), nodes=nodes, losses=losses, stopped_at=stopped_at, **out)


def _ntk_method(method: str) -> str:
    return "structured" if method == "structured" else "jacobian"


def top_contributions(result: PathKernelResult, index: int, k: int = 5, output: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` training points with the largest ``|a_i K(x, x_i)|`` for test point ``index``.

    For O outputs, the contributions to output ``output`` (default: the model's predicted class at that point).
    Returns (indices (k,), contributions (k,)) sorted by decreasing magnitude.
    """
    C = np.asarray(torch.as_tensor(result.contributions).detach().cpu())
    M = C.shape[0]
    index = check_int(index, "index", minimum=0, maximum=M - 1)
    k = check_int(k, "k", minimum=1)
    c = C[index]
    if c.ndim == 2:
        if output is None:
            output = int(np.argmax(np.asarray(torch.as_tensor(result.f_model).detach().cpu())[index]))
        c = c[:, check_int(output, "output", minimum=0, maximum=c.shape[1] - 1)]
    top = np.argsort(-np.abs(c))[:k]
    return top, c[top]
