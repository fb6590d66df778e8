"""Every model trained by gradient descent is a kernel machine: Domingos' path kernel (THEORY.md §6), for plain
SGD, SGD with momentum, Adam and AdamW, exactly.

**Plain SGD.** On ``L = Σ_i ℓ(f(x_i), y_i)`` a step is ``Δw_s = −η Σ_{i∈B_s} ℓ'_{i,s} ∇f(x_i; w_s)`` (``ℓ'`` =
∂ℓ/∂f, ``B_s`` the step's batch). Along the segment ``w_s + τ Δw_s`` the output at x changes by exactly::

    f_{s+1}(x) − f_s(x) = ḡ_s(x) · Δw_s,   ḡ_s(x) = ∫₀¹ ∇f(x; w_s + τ Δw_s) dτ
                        = −η Σ_{i∈B_s} ℓ'_{i,s} k_s(x, x_i),   k_s(x, x_i) = ḡ_s(x) · ∇f(x_i; w_s).

Summing over the steps, ``f_T(x) = b + Σ_i a_i K(x, x_i)`` with ``b = f₀(x)``, the path kernel
``K(x, x_i) = η Σ_{s: i∈B_s} k_s(x, x_i)`` and ``a_i = −Σ_s η k_s(x, x_i) ℓ'_{i,s} / K(x, x_i)``, the
kernel-weighted path average of the loss derivative (Domingos, arXiv 2012.00152, Theorem 1, made exact for
discrete steps).

**Momentum, Adam, AdamW** (``torch.optim``'s own rules; the trajectory *is* torch.optim's). The step is still
linear in the per-example gradients of *past* steps r ≤ s, through a history weight ``c_{s,r}`` and, for Adam, a
diagonal preconditioner ``P_s`` (fixed within step s)::

    SGD + momentum μ:  Δw_s = −η Σ_{r≤s} μ^{s−r} (g_r + λ w_r)                       (c_{s,r} = μ^{s−r})
    Adam:              Δw_s = −(η / (1 − β₁^{s+1})) P_s Σ_{r≤s} (1 − β₁) β₁^{s−r} (g_r + λ w_r)
    AdamW:             Δw_s = −η λ w_s − (η / (1 − β₁^{s+1})) P_s Σ_{r≤s} (1 − β₁) β₁^{s−r} g_r
    P_s = diag(1 / (√(v_s / (1 − β₂^{s+1})) + ε)),  v_s = β₂ v_{s−1} + (1 − β₂) (g_s [+ λ w_s])²,
    g_r = Σ_{i∈B_r} ℓ'_{i,r} ∇f(x_i; w_r)   (λ = weight_decay)

so with the per-example history buffers ``G_{i,s} = Σ_{r≤s, i∈B_r} c_{s,r} ∇f(x_i; w_r)`` and the scale
``S_s = η`` (SGD) or ``η P_s / (1 − β₁^{s+1})`` (Adam), the change of the output splits over the training points::

    f_{s+1}(x) − f_s(x) = −Σ_i ⟨ḡ_s(x), S_s Σ_{r≤s, i∈B_r} c_{s,r} ℓ'_{i,r} ∇f(x_i; w_r)⟩ + d_s(x),

``K(x, x_i) = Σ_s ⟨ḡ_s(x), S_s G_{i,s}⟩`` is the preconditioned, history-weighted path kernel (for plain SGD the
one above), ``a_i`` the matching average of −ℓ', and the **weight-decay part** ``d(x) = Σ_s d_s(x)`` (``d_s = −⟨ḡ_s,
S_s Σ_r c_{s,r} λ w_r⟩``, or ``−η λ ⟨ḡ_s, w_s⟩`` for AdamW) belongs to no training point: it is reported
separately and ``f_T(x) = b + Σ_i a_i K(x, x_i) + d(x)``.

``exact=True`` integrates each segment with Gauss–Legendre quadrature (exact up to rounding for smooth
activations); ``exact=False`` is Domingos' left-endpoint sum ``ḡ_s = ∇f(x; w_s)``, first order in the step size.
For O outputs (a classifier's per-class scores) ``K`` is an O×O block per pair and ``a_i`` a vector of O numbers.

The kernel is a sum over parameter tensors: ``per_layer=True`` also returns each layer's kernel and its
contributions (which layers carry the prediction; :func:`layer_shares`), ``record_every`` the kernel's history,
``ntk_every`` the tangent kernel Θ_s(X_test, X) along the path.

**The path kernel as a kernel.** Without ``X_test`` the kernel machine is evaluated on the training points
themselves: ``K`` is the N × N (or NO × NO) matrix :func:`gram_properties` examines (symmetry, smallest
eigenvalue). Domingos' continuous-time kernel ``∫ ∇f(x)·∇f(x') dt`` is symmetric and positive semi-definite; the
left-endpoint sum of plain SGD is a sum of Gram matrices, so it is too (to rounding); exact quadrature pairs the
segment average ``ḡ_s(x)`` with the left endpoint ``∇f(x_i; w_s)``, so it is symmetric only to O(η); momentum and
Adam pair gradients of different steps through ``c_{s,r}`` and ``P_s`` and are in general neither.
:meth:`PathKernelResult.rows` splits a result evaluated on ``[X_test; X]`` into its test and training parts.

Memory: plain SGD holds only per-step quantities (per-layer factors for ``nn.Linear``/``nn.Conv2d`` models, or
per-example Jacobians): O((N + M)·P). Momentum, Adam, weight decay and ``per_layer`` hold the history buffers in
parameter space: O(N·O·P + M·O·P).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import empirical
from .._arrays import (
    ArrayKind,
    DivergenceWarning,
    KernelscopeWarning,
    ValidationError,
    as_tensor,
    check_choice,
    check_int,
    check_memory,
    check_positive,
    warn,
)
from .._model import (
    LOSSES,
    Weights,
    check_fixed_function,
    check_module,
    loss_derivative,
    model_device,
    model_dtype,
    output_dim,
    targets,
    trainable_parameters,
)
from .train import OPTIMIZERS, TrainOptions, train

__all__ = ["path_kernel", "PathKernelResult", "top_contributions", "layer_shares", "gram_properties", "GramProperties",
           "block_matrix", "LOSSES", "OPTIMIZERS"]


@dataclass
class PathKernelResult:
    """What :func:`path_kernel` returns (arrays of the kind ``X_test`` came as).

    model : the trained copy of the model
    f_model : (M,) or (M, O) outputs of the trained model on X_test
    f_kernel : same shape, ``b + Σ_i a_i K(x, x_i) + decay``
    K : (M, N) path kernel, or (M, N, O, O) ; a : (M, N) or (M, N, O) ; b : (M,) or (M, O), ``f₀(X_test)``
    contributions : (M, N) or (M, N, O), ``a_i K(x, x_i)`` (what each training point adds to f(x))
    decay : (M,) or (M, O), the weight-decay part (zero without weight decay): it belongs to no training point
    ntk0, ntkT : (M, N) (or (M, N, O, O)) empirical NTK Θ(X_test, X) at the start and at the end
    T : ``η · steps_done`` ; losses : training loss before each step and after the last (``steps_done + 1``
        values; with divergence the last is the bad one)
    steps_done : steps taken ; stopped_at : the step whose loss was NaN/inf or exploded (training stopped there)
    optimizer : the update rule ; layers : names of the layers (modules owning trainable parameters)
    K_layers, contributions_layers : with ``per_layer=True``, (L, ...) each layer's part of K and of the
        contributions (they sum to K and contributions), else None
    history_steps, K_history, contributions_history : with ``record_every``, the path kernel and contributions
        after those steps ((R, ...) arrays), else empty / None
    ntk_steps, ntk_history : with ``ntk_every``, the empirical NTK Θ_s(X_test, X) at the weights after those steps
        ((R, M, N) or (R, M, N, O, O)), the first at step 0 (Θ₀) and the last after the last step (Θ_T)
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
    decay: Any = None
    optimizer: str = "sgd"
    layers: list[str] = field(default_factory=list)
    K_layers: Any = None
    contributions_layers: Any = None
    history_steps: list[int] = field(default_factory=list)
    K_history: Any = None
    contributions_history: Any = None
    ntk_steps: list[int] = field(default_factory=list)
    ntk_history: Any = None

    @property
    def diverged(self) -> bool:
        """True when training stopped at a NaN/inf or exploding loss."""
        return self.stopped_at is not None

    @property
    def loss_growth(self) -> float:
        """Largest loss along training over the initial one (> 1: the loss rose somewhere, a sign of steps too
        large for the kernel machine to be exact with kinked activations)."""
        ls = np.asarray(self.losses, float)
        return float(np.nanmax(ls) / ls[0]) if len(ls) and ls[0] > 0 else float("nan")

    @property
    def rel_error(self) -> float:
        """``‖f_kernel − f_model‖ / ‖f_model‖`` over the test points (NaN if the model's outputs are not finite)."""
        fk, fm = torch.as_tensor(self.f_kernel), torch.as_tensor(self.f_model)
        return float(torch.linalg.norm(fk - fm) / torch.linalg.norm(fm))

    def rows(self, index: Any) -> PathKernelResult:
        """The same kernel machine at some of its evaluation points: every per-point field restricted to the rows
        ``index`` (a slice, integer indices or a boolean mask over the M points of ``X_test``); the trained model,
        the losses and the layer names are shared. ``path_kernel(model, X, y, np.vstack([X_test, X]))`` followed by
        ``.rows(slice(0, M))`` and ``.rows(slice(M, None))`` gives the test × train and the train × train kernel
        machines of one training."""
        def pick(v: Any, axis: int) -> Any:
            if v is None:
                return None
            idx = index if isinstance(index, slice) else (
                torch.as_tensor(np.asarray(index)) if isinstance(v, torch.Tensor) else np.asarray(index))
            return v[(slice(None),) * axis + (idx,)]

        lead = ("f_model", "f_kernel", "K", "a", "b", "contributions", "decay", "ntk0", "ntkT")
        second = ("K_layers", "contributions_layers", "K_history", "contributions_history", "ntk_history")
        return replace(self, **{k: pick(getattr(self, k), 0) for k in lead},
                       **{k: pick(getattr(self, k), 1) for k in second})


class _Machine:
    """The bookkeeping of :func:`path_kernel`, driven by :func:`kernelscope.dynamics.train`'s callback: at the
    evaluation before step s it stores ``ℓ'_s`` and the training gradients at ``w_s``; at the next evaluation (the
    weights are now ``w_{s+1}``) it integrates the segment and adds step s to the kernel machine."""

    def __init__(self, net, Xt, yt, Xs, n_out, options: TrainOptions, *, exact, nodes, structured, per_layer,
                 record_every, batches, ntk_every=None, ntk_method="jacobian"):
        self.net, self.weights, self.Xt, self.yt, self.Xs = net, Weights.of(net), Xt, yt, Xs
        o = options
        self.O, self.loss, self.mean, self.lr, self.rule = n_out, o.loss, o.reduction == "mean", o.lr, o.rule
        self.mu, self.betas, self.eps = o.effective_momentum, o.betas, o.eps
        self.wd, self.exact, self.structured, self.batches = o.weight_decay, exact, structured, batches
        self.record_every = record_every
        tau, omega = np.polynomial.legendre.leggauss(nodes)
        self.tau, self.omega = (tau + 1) / 2, omega / 2  # nodes and weights on [0, 1]
        n, m, O = Xt.shape[0], Xs.shape[0], n_out
        z = Xt.new_zeros
        self.K, self.C, self.D = z(m, n, O, O), z(m, n, O), z(m, O)
        self.layers, self.slices = self.weights.layers()
        L = len(self.layers)
        self.KL = z(L, m, n, O, O) if per_layer else None
        self.CL = z(L, m, n, O) if per_layer else None
        if not structured:
            P = self.weights.size
            self.G, self.H, self.Dbuf = z(n, O, P), z(n, P), z(P)  # history buffers: kernel, contributions, decay
            self.v = z(P)  # Adam's second moment
        self.pending = None
        self.plan = None  # the structured features' plan (empirical.plan), from the first call
        self.history: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.ntk_every, self.ntk_method = ntk_every, ntk_method
        self.ntk_history: list[tuple[int, torch.Tensor]] = []

    def flat(self) -> torch.Tensor:
        return self.weights.read(self.net)

    def at(self, w_flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.weights.unflatten(w_flat)

    def jac(self, x, w_flat=None) -> torch.Tensor:
        return empirical.jacobian(self.net, x, self.O, None if w_flat is None else self.at(w_flat))

    def feats(self, x, w_flat=None):
        params = trainable_parameters(self.net) if w_flat is None else self.at(w_flat)
        if self.plan is None:  # how the model uses its weights, read once: along the path their values change, not that
            self.plan = empirical.plan(self.net, x, params)
        return empirical.layer_features(self.net, x, self.O, params, the_plan=self.plan)

    def __call__(self, step: int, value: float, out: torch.Tensor, bad: bool) -> None:
        if self.pending is not None:
            self.finish()
        if bad:
            return
        last = step == len(self.batches)
        if self.ntk_every and (step % self.ntk_every == 0 or last):
            # Θ_s(X_test, X) at the weights after s steps: the tangent kernel's path
            self.ntk_history.append((step, torch.as_tensor(empirical.ntk(self.net, self.Xs, self.Xt,
                                                                          method=self.ntk_method))))
        if last:
            return
        self.start(step, out)

    # -- before step s: the gradients at w_s -------------------------------------------------------------------
    def start(self, s: int, out: torch.Tensor) -> None:
        idx = self.batches[s]
        sel = slice(None) if idx is None else idx
        xb = self.Xt[sel]
        dl = loss_derivative(out.reshape(xb.shape[0], self.O), self.yt[sel], self.loss)  # (B, O)
        if self.mean:
            dl = dl / xb.shape[0]
        w_s = self.flat()
        p = dict(s=s, sel=sel, dl=dl, w=w_s)
        if self.structured:
            p["train"] = self.feats(xb)
            if not self.exact:
                p["test"] = self.feats(self.Xs)
        else:
            J = self.jac(xb)  # (B, O, P) per-example gradients at w_s
            c_old, c_new = (self.mu, 1.0) if self.rule == "sgd" else (self.betas[0], 1.0 - self.betas[0])
            self.G.mul_(c_old)
            self.H.mul_(c_old)
            self.Dbuf.mul_(c_old)
            self.G[sel] += c_new * J
            self.H[sel] += c_new * torch.einsum("bo,bop->bp", dl, J)
            if self.wd and self.rule != "adamw":
                self.Dbuf += c_new * self.wd * w_s
            if self.rule != "sgd":
                g = torch.einsum("bo,bop->p", dl, J)
                if self.rule == "adam" and self.wd:
                    g = g + self.wd * w_s
                self.v.mul_(self.betas[1]).add_((1.0 - self.betas[1]) * g * g)
            if not self.exact:
                p["test"] = self.jac(self.Xs)
        self.pending = p

    # -- after step s: integrate the segment w_s -> w_{s+1} ----------------------------------------------------
    def finish(self) -> None:
        p, self.pending = self.pending, None
        s, sel, dl, w_s = p["s"], p["sel"], p["dl"], p["w"]
        dw = self.flat() - w_s
        points = [(0.0, 1.0)] if not self.exact else list(zip(self.tau, self.omega))
        if self.structured:
            k_s = None
            for t_k, o_k in points:
                test = p["test"] if not self.exact else self.feats(self.Xs, w_s + float(t_k) * dw)
                part = empirical.structured_gram(test, p["train"]) * float(o_k)
                k_s = part if k_s is None else k_s + part
            self.K[:, sel] += self.lr * k_s
            self.C[:, sel] -= self.lr * torch.einsum("mioc,ic->mio", k_s, dl)
        else:
            if self.exact:
                gbar = sum(float(o_k) * self.jac(self.Xs, w_s + float(t_k) * dw) for t_k, o_k in points)
            else:
                gbar = p["test"]  # (M, O, P)
            if self.rule == "sgd":
                scale = self.lr
            else:
                b1, b2 = self.betas
                bc1, bc2 = 1.0 - b1 ** (s + 1), 1.0 - b2 ** (s + 1)
                scale = (self.lr / bc1) / ((self.v / bc2).sqrt() + self.eps)  # (P,) S_s
            gs = gbar * scale  # (M, O, P) ḡ_s S_s
            self.K += torch.einsum("mop,icp->mioc", gs, self.G)
            self.C -= torch.einsum("mop,ip->mio", gs, self.H)
            if self.wd:
                self.D -= gs @ self.Dbuf if self.rule != "adamw" else self.lr * self.wd * (gbar @ w_s)
            if self.KL is not None:
                for k, sl in enumerate(self.slices):
                    self.KL[k] += torch.einsum("mop,icp->mioc", gs[..., sl], self.G[..., sl])
                    self.CL[k] -= torch.einsum("mop,ip->mio", gs[..., sl], self.H[:, sl])
        if self.record_every and (s + 1) % self.record_every == 0:
            self.history.append((s + 1, self.K.clone(), self.C.clone()))


def path_kernel(model: nn.Module, X: Any, y: Any, X_test: Any = None, *, lr: float, steps: int, loss: str = "mse",
                reduction: str = "sum",
                optimizer: str = "sgd", momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                eps: float = 1e-8, weight_decay: float = 0.0, exact: bool = True, batch_size: int | None = None,
                seed: int = 0, nodes: int = 4, method: str = "auto", per_layer: bool = False,
                record_every: int | None = None, ntk_every: int | None = None, track: Callable | None = None,
                explode: float = 1e12, tol: float = 1e-6) -> PathKernelResult:
    """Train a copy of ``model`` with ``torch.optim`` and write it as a kernel machine over its training points.

    Parameters
    ----------
    model : ``nn.Module``, (N, ...) -> (N,) or (N, O); left untouched (a copy is trained).
    X : (N, ...) training inputs. y : (N,) targets for ``'mse'`` with one output, (N, O) for O outputs; (N,)
        integer class labels in [0, O) for ``'cross_entropy'``.
    X_test : (M, ...) inputs where the kernel machine is evaluated; None: the training inputs X (the path kernel on
        train × train, N × N).
    lr : step size η. steps : number of steps. The loss is summed over the batch (``'mse'``: ``ℓ = ½‖f − y‖²``;
        ``'cross_entropy'``: ``ℓ = −log softmax(f)_y``), or averaged (``reduction='mean'``: ℓ' divided by the
        batch size); training is :func:`kernelscope.dynamics.train`, i.e. exactly ``torch.optim``'s update of the
        chosen rule.
    optimizer : ``'sgd'`` (``momentum`` if > 0), ``'momentum'`` (SGD, momentum 0.9 unless given), ``'adam'``,
        ``'adamw'`` (``betas``, ``eps``); ``weight_decay`` λ as torch defines it (L2 in the gradient for SGD and
        Adam, decoupled for AdamW).
    batch_size : None for full-batch; else each step uses the next ``batch_size`` points of a seeded permutation
        (:func:`kernelscope.dynamics.train.batch_indices`) and sums over them only.
    exact : Gauss–Legendre quadrature of each segment (``nodes`` nodes) vs Domingos' left-endpoint sum.
    method : plain SGD only: 'auto' (per-layer factors when every trainable parameter is in an nn.Linear or
        nn.Conv2d), 'structured' or 'jacobian' (per-example Jacobians). Momentum, Adam, weight decay and
        ``per_layer`` always use per-example Jacobians and history buffers.
    per_layer : also return each layer's kernel and contributions (``K_layers``, ``contributions_layers``).
    record_every : also keep K and the contributions after every ``record_every`` steps (and the last).
    ntk_every : also keep the empirical NTK Θ_s(X_test, X) after every ``ntk_every`` steps (step 0 and the last
        included): the tangent kernel's path, of which K is the (preconditioned) time integral.
    track : optional progress wrapper ``track(iterable, description)``.
    explode : a loss above ``explode`` times the initial one counts as divergence (as in ``train``).
    tol : after training, a relative error of the kernel machine above ``tol`` (exact quadrature only) is warned
        about: the identity is exact for smooth activations, so a larger error means kinks crossed by large steps.

    Returns
    -------
    PathKernelResult. A NaN/inf or exploding loss stops training with a
    :class:`~kernelscope._arrays.KernelscopeWarning` naming the step (``stopped_at``, ``diverged``); the kernel
    machine of the steps taken so far is returned.

    Notes
    -----
    Gauss–Legendre with q nodes integrates polynomials of degree 2q − 1 exactly, and along one small step the
    integrand ``∇f(x; w_s + τΔw_s)`` of a smooth network (tanh, erf, GELU) is very nearly a low-degree polynomial
    in τ: float64 rounding (~1e-15) is reached, for every optimiser (the history buffers and Adam's ``P_s`` are
    fixed within a step; only ``ḡ_s`` is integrated). With ReLU the integrand jumps where a unit's pre-activation
    changes sign inside the step, so the identity holds only to about 1e-5–1e-4 relative for small steps
    (measured 7e-5 for a three-layer ReLU net of width 64, 100 SGD steps) and can fail entirely when large steps
    (the loss rising, ``loss_growth`` > 1) flip many units at once - the ``tol`` warning says so. Adam's
    normalised steps flip units more often than SGD's at the same loss decrease. The left-endpoint sum has the
    same kinks plus its O(η) error. Cost: plain training × (nodes + 2) plus the gradient products; the history
    path adds O(N·O·P) per step for the buffers and O(M·N·O²·P) for the kernel update.
    """
    if X_test is None:
        X_test = X
    kind = ArrayKind.of(X_test)
    options = TrainOptions(steps=steps, lr=lr, loss=loss, reduction=reduction, optimizer=optimizer,
                           momentum=momentum, weight_decay=weight_decay, betas=betas, eps=eps, batch_size=batch_size,
                           seed=seed, explode=explode)
    if options.steps < 1:
        raise ValidationError("steps", "an integer >= 1", repr(steps))
    nodes = check_int(nodes, "nodes", minimum=1, maximum=64)
    tol = check_positive(tol, "tol")
    if record_every is not None:
        record_every = check_int(record_every, "record_every", minimum=1)
    if ntk_every is not None:
        ntk_every = check_int(ntk_every, "ntk_every", minimum=1)
    method = check_choice(method, "method", ("auto", "structured", "jacobian"))
    check_fixed_function(check_module(model))
    net = copy.deepcopy(model)
    dtype, device = model_dtype(net), model_device(net)
    Xt = as_tensor(X, "X", dtype=dtype, device=device)
    Xs = as_tensor(X_test, "X_test", dtype=dtype, device=device)
    if Xt.ndim == 0 or tuple(Xs.shape[1:]) != tuple(Xt.shape[1:]):
        raise ValidationError("X_test", f"examples of shape {tuple(Xt.shape[1:])} (like X)",
                              f"shape {tuple(Xs.shape)}")
    n, m = Xt.shape[0], Xs.shape[0]
    n_out = output_dim(net, Xt, "X")
    P = Weights.of(net).size
    yt = targets(y, options.loss, n, n_out, dtype=dtype, device=device)
    batches = options.batches(n)
    plain = options.rule == "sgd" and options.effective_momentum == 0 and options.weight_decay == 0 and not per_layer
    if method == "structured" and not plain:
        raise ValidationError("method", "'auto' or 'jacobian' with momentum, Adam, weight decay or per_layer",
                              "'structured'", "The history buffers live in parameter space: use method='auto'.")
    # the structured factors need plain SGD; 'structured' asked for on a model it cannot handle is an error here
    method = empirical.resolve_method(net, method if plain else "jacobian")
    if method != "structured":
        check_memory((n + 2 * m) * n_out * P * Xt.element_size(), "path_kernel's per-example gradients "
                     "(N + 2M)·O·P", "Use fewer training or test points, or a smaller model.")
    if ntk_every:
        check_memory((options.steps // ntk_every + 2) * m * n * n_out * n_out * Xt.element_size(),
                     "the tangent kernel's path (steps / ntk_every + 2) · M·N·O²", "Use a larger ntk_every.")
    if record_every:
        # each record keeps K (M, N, O, O) and the contributions (M, N, O); stacked at the end (twice the size)
        records = options.steps // record_every + 2
        check_memory(2.0 * records * m * n * n_out * (n_out + 1) * Xt.element_size(),
                     f"path_kernel's history ({records} records of the {m}×{n} kernel and contributions, "
                     f"record_every={record_every})", "Record less often (a larger record_every), or fewer test "
                     "points.")

    with torch.no_grad():
        b = net(Xs).reshape(m, n_out)  # (M, O) = f₀(X_test)
    ntk_method = "structured" if method == "structured" else "jacobian"
    ntk0 = torch.as_tensor(empirical.ntk(net, Xs, Xt, method=ntk_method))
    mach = _Machine(net, Xt, yt, Xs, n_out, options, exact=exact, nodes=nodes, structured=method == "structured",
                    per_layer=per_layer, record_every=record_every, batches=batches, ntk_every=ntk_every,
                    ntk_method=ntk_method)
    tr = train(net, Xt, yt, options, batches=batches, callback=mach, track=track, desc="gradient-descent steps",
               what="path_kernel training")
    done = tr.steps_done
    if record_every and (not mach.history or mach.history[-1][0] != done):
        mach.history.append((done, mach.K.clone(), mach.C.clone()))

    with torch.no_grad():
        f_model = net(Xs).reshape(m, n_out)
    ntkT = torch.as_tensor(empirical.ntk(net, Xs, Xt, method=ntk_method))
    K, C, D = mach.K, mach.C, mach.D
    hist_K = torch.stack([h[1] for h in mach.history]) if mach.history else None
    hist_C = torch.stack([h[2] for h in mach.history]) if mach.history else None
    if n_out == 1:
        Kk, Cc = K[:, :, 0, 0], C[:, :, 0]
        a = torch.where(Kk != 0, Cc / torch.where(Kk != 0, Kk, torch.ones_like(Kk)), torch.zeros_like(Kk))
        f_kernel = b[:, 0] + (a * Kk).sum(1) + D[:, 0]
        out = dict(f_model=f_model[:, 0], f_kernel=f_kernel, K=Kk, a=a, b=b[:, 0], contributions=Cc, decay=D[:, 0])
        sq = (lambda t: t[..., 0, 0], lambda t: t[..., 0])
    else:
        a = (torch.linalg.pinv(K) @ C[..., None])[..., 0]  # (M, N, O): K a = C per pair
        f_kernel = b + torch.einsum("mioc,mic->mo", K, a) + D
        out = dict(f_model=f_model, f_kernel=f_kernel, K=K, a=a, b=b, contributions=C, decay=D)
        sq = (lambda t: t, lambda t: t)
    if mach.KL is not None:
        out.update(K_layers=sq[0](mach.KL), contributions_layers=sq[1](mach.CL))
    if hist_K is not None:
        out.update(K_history=sq[0](hist_K), contributions_history=sq[1](hist_C))
    if mach.ntk_history:
        out.update(ntk_history=torch.stack([h[1] for h in mach.ntk_history]))
    out = {k: kind.wrap(v.detach()) for k, v in out.items()}
    res = PathKernelResult(model=net, ntk0=kind.wrap(ntk0), ntkT=kind.wrap(ntkT), T=options.lr * done, steps_done=done,
                           exact=bool(exact), nodes=nodes, losses=[float(v) for v in tr.losses],
                           stopped_at=tr.diverged_at, optimizer=optimizer, layers=mach.layers,
                           history_steps=[h[0] for h in mach.history],
                           ntk_steps=[h[0] for h in mach.ntk_history], **out)
    err = res.rel_error
    if exact and not res.diverged and not err <= tol:
        rose = (f" and the loss rose to {res.loss_growth:.3g}x its initial value along the way (steps too large)"
                if res.loss_growth > 1 else "")
        warn(f"path_kernel: the kernel machine reproduces the trained model only to a relative error of {err:.3g} "
             f"(tol={tol:g}){rose}. Exact quadrature is exact to rounding for smooth activations; kinks (ReLU) "
             "crossed inside a step limit it. Use a smaller lr, more nodes, a smooth activation (tanh, GELU), or "
             "a larger tol if this is the kink error you expect.",
             DivergenceWarning if res.loss_growth > 1 else KernelscopeWarning)  # a rising loss: steps too large
    return res


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


def layer_shares(result: PathKernelResult) -> dict[str, dict[str, float]]:
    """Which layers carry the prediction: for each layer l (a result of ``path_kernel(..., per_layer=True)``),

    - ``'prediction'``: ``‖F_l‖ / Σ_l' ‖F_l'‖`` with ``F_l(x) = Σ_i C_l(x, x_i)`` the layer's part of
      ``f_T(x) − f₀(x) − decay(x)`` over the test points (the F_l sum exactly to it);
    - ``'kernel'``: ``Σ K_l / Σ K`` over all (test, training) pairs (and the output diagonal): the layer's share of
      the path kernel's total mass (per-layer kernels of one tensor are Gram-like, so the shares are mostly in
      [0, 1] and sum to 1).
    """
    if result.K_layers is None:
        raise ValidationError("result", "a PathKernelResult from path_kernel(..., per_layer=True)",
                              "one without per-layer kernels", "Call path_kernel with per_layer=True.")
    KL = np.asarray(torch.as_tensor(result.K_layers).detach().cpu())
    CL = np.asarray(torch.as_tensor(result.contributions_layers).detach().cpu())
    F = CL.sum(2)  # (L, M[, O])
    norms = np.array([np.linalg.norm(f) for f in F])
    if KL.ndim == 5:  # trace over outputs
        KL = np.einsum("lmioo->lmi", KL)
    mass = KL.reshape(len(KL), -1).sum(1)
    return {name: {"prediction": float(norms[k] / norms.sum()), "kernel": float(mass[k] / mass.sum())}
            for k, name in enumerate(result.layers)}


@dataclass
class GramProperties:
    """What :func:`gram_properties` measures of a square kernel matrix K (n × n, blocks flattened).

    n : the matrix size. asymmetry : ``‖K − Kᵀ‖_F / ‖K‖_F`` (0 for a kernel). eig_min, eig_max : the extreme
    eigenvalues of the symmetric part ``(K + Kᵀ)/2`` (the part a quadratic form ``vᵀKv`` sees). negative : how many
    eigenvalues of the symmetric part are below ``−tol``, ``tol = n · eps · |eig_max|`` (rounding): 0 means positive
    semi-definite to rounding.
    """

    n: int
    asymmetry: float
    eig_min: float
    eig_max: float
    negative: int
    tol: float

    @property
    def rel_eig_min(self) -> float:
        """``eig_min / eig_max``: the smallest eigenvalue relative to the largest."""
        return self.eig_min / self.eig_max if self.eig_max != 0 else float("nan")


def block_matrix(K: Any) -> np.ndarray:
    """A kernel between two point sets as one matrix: (N1, N2) as it is, (N1, N2, O, O) blocks as the
    (N1·O, N2·O) matrix ``M[(m, o), (i, c)] = K[m, i, o, c]`` (the operator-valued kernel's Gram matrix)."""
    K = np.asarray(torch.as_tensor(K).detach().cpu(), dtype=np.float64)
    if K.ndim == 2:
        return K
    if K.ndim != 4 or K.shape[2] != K.shape[3]:
        raise ValidationError("K", "an (N1, N2) matrix or (N1, N2, O, O) blocks", f"shape {K.shape}")
    n1, n2, o, _ = K.shape
    return K.transpose(0, 2, 1, 3).reshape(n1 * o, n2 * o)  # (N1·O, N2·O)


def gram_properties(K: Any) -> GramProperties:
    """Is ``K`` (the path kernel on train × train, a tangent kernel...) a kernel? Its asymmetry
    ``‖K − Kᵀ‖_F/‖K‖_F`` and the spectrum of its symmetric part (``numpy.linalg.eigvalsh``).

    A Mercer kernel's Gram matrix is symmetric and positive semi-definite (Schölkopf & Smola 2002, §2.2): its
    smallest eigenvalue is ≥ 0 up to rounding. ``K`` of shape (N, N) or (N, N, O, O) (flattened by
    :func:`block_matrix`).
    """
    M = block_matrix(K)
    if M.shape[0] != M.shape[1]:
        raise ValidationError("K", "a square kernel matrix (the kernel of a point set with itself)",
                              f"shape {M.shape}", "Evaluate the path kernel on the training points (X_test=None).")
    if not np.isfinite(M).all():
        raise ValidationError("K", "finite entries", "NaN or inf")
    S = (M + M.T) / 2
    ev = np.linalg.eigvalsh(S)
    n = M.shape[0]
    norm = np.linalg.norm(M)
    tol = float(n * np.finfo(np.float64).eps * np.abs(ev).max(initial=0.0))
    return GramProperties(n, float(np.linalg.norm(M - M.T) / norm) if norm > 0 else 0.0, float(ev[0]),
                          float(ev[-1]), int((ev < -tol).sum()), tol)
