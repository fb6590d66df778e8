"""Kernel regression (THEORY.md §2).

- :class:`KernelRegressor`: a scikit-learn estimator for kernel ridge regression
  ``f(x) = k(x, X) α``, ``α = (K + λI)⁻¹ Y`` (``α = K⁺Y``, the least-norm interpolant, for λ = 0), with the
  Gaussian-process posterior standard deviation of the latent function and the exact leave-one-out predictions.
  The linear system is solved by a solver from :data:`kernelscope.solvers.SOLVERS` (``'cholesky'``, ``'cg'``,
  ``'nystrom'``). ``kernel='precomputed'`` takes kernel matrices instead of points (scikit-learn's convention).
- :class:`KernelClassifier`: the same regression on centred one-hot targets, the class of the largest output
  (``predict``), the outputs (``decision_function``) and calibrated probabilities (``predict_proba``).
- :class:`NetworkKernel`: a ``kernelscope.nets`` network's NTK or NNGP as a kernel object.
- :func:`gradient_flow` (defined in :mod:`kernelscope.predict`, re-exported here): the function a kernel machine
  has after training time t of gradient flow on the squared loss; at t = ∞ kernel regression with ridge 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _arrays
from . import kernels as _kernels
from . import solvers as _solvers
from ._arrays import ArrayKind, ValidationError, as_tensor, check_choice, check_nonnegative, check_positive
from ._model import value_and_grad
from .predict import GradientFlow, gradient_flow

__all__ = ["KernelRegressor", "KernelClassifier", "NetworkKernel", "gradient_flow", "GradientFlow",
           "resolve_kernel", "MLPKernel", "log_marginal_likelihood", "fit_hyperparameters", "HyperparameterFit",
           "fit_temperature"]


# ------------------------------------------------------------------------------------------------------------
# Kernels from what users pass
# ------------------------------------------------------------------------------------------------------------
def _is_network(obj: Any) -> bool:
    """Duck typing for a ``kernelscope.nets`` network: a ``.kernel(x1, x2)`` method returning ``.ntk``/``.nngp``."""
    return (not isinstance(obj, (str, _kernels.Kernel)) and callable(getattr(obj, "kernel", None))
            and not isinstance(obj, type))


class NetworkKernel(_kernels.Kernel):
    """The NTK (or, with ``nngp=True``, the NNGP) of an infinite-width network as a :class:`Kernel`.

    ``net`` is a :mod:`kernelscope.nets` network (or anything with ``.kernel(x1, x2)`` returning ``.ntk`` and
    ``.nngp``). A convolutional network that declares its input shape (``nets.serial(..., input_shape=(1, 40))``)
    takes the rows (N, C·L) every kernel object gets, so it works wherever a kernel does: the estimators, the
    solvers, :func:`kernelscope.scale.block_kernel` tiles on a Dask cluster. Its parameters nest the network's
    (``net__w_std``, ``net__layers__0__b_std``); its :meth:`hyperparameters` (what ``optimize=True`` tunes, by
    central differences) are the ``w_std`` and ``b_std`` its weight layers share, or each layer's own when they
    differ (only positive values: they are optimised in log space).
    """

    block_factor = 4

    def __init__(self, net: Any, nngp: bool = False):
        self.net, self.nngp = net, bool(nngp)

    def params(self):
        return {"net": self.net, "nngp": self.nngp}

    def __repr__(self):
        return f"NetworkKernel({'nngp' if self.nngp else 'ntk'} of {self.net!r})"

    def hyperparameters(self, d):
        if not hasattr(self.net, "get_params"):  # a duck-typed network: nothing to tune
            return {}
        params = self.net.get_params(deep=True)
        weights = {id(layer) for layer in getattr(self.net, "dense_layers", lambda: [])()}
        out = {}
        for name in ("w_std", "b_std"):
            if params.get(name) is not None:  # shared by every weight layer (or the network is one layer)
                found = {name: params[name]}
            else:  # each weight layer's own: keys "<path to the layer>__<name>"
                found = {key: value for key, value in params.items()
                         if key.rpartition("__")[2] == name and id(params.get(key.rpartition("__")[0])) in weights}
            out.update({f"net__{key}": float(v) for key, v in found.items() if isinstance(v, (int, float)) and v > 0})
        return out

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        if theta:  # no closed form in w_std, b_std: central differences in the backward pass
            return _kernels.finite_difference_formula(self, A, B, theta, out=out, paired=paired)
        which = "nngp" if self.nngp else "ntk"
        if paired:
            if B is not A:
                return super().formula(A, B, out=out, paired=True)
            try:  # kernelscope.nets computes k(x, x) alone in diag mode
                K = torch.as_tensor(getattr(self.net.kernel(A, diag=True), which), dtype=torch.float64).reshape(-1)
            except TypeError:
                return super().formula(A, B, out=out, paired=True)
        else:
            K = torch.as_tensor(getattr(self.net.kernel(A, B), which), dtype=torch.float64)
        # a copy: the caller owns the result (the network may keep its own)
        return (out if out is not None else torch.empty(K.shape, dtype=torch.float64, device=A.device)).copy_(K)


class _WeightedKernel(_kernels.Kernel):
    """``k_w(a, b) = a_w k(a_x, b_x) b_w`` on rows ``a = (a_x, a_w)`` whose last column is √(sample weight)."""

    def __init__(self, kernel: _kernels.Kernel):
        self.kernel = kernel
        self.block_factor = kernel.block_factor

    def params(self):
        return {"kernel": self.kernel}

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        # theta is not passed on: a weighted fit never optimises hyperparameters (fit refuses optimize=True)
        Ax = A[:, :-1]
        K = self.kernel.formula(Ax, Ax if B is A else B[:, :-1], out=out, paired=paired)  # B is A: the diagonal
        return K.mul_(A[:, -1] if paired else A[:, -1:]).mul_(B[:, -1])


class _PrecomputedKernel(_kernels.Kernel):
    """``k(i, j) = K[i, j]`` for training points given by their index (a float column (N, 1)): how
    ``kernel='precomputed'`` reaches the solvers, which take a kernel and points."""

    def __init__(self, K: torch.Tensor):
        self.K = K  # (N, N)

    def __repr__(self):
        return f"precomputed({self.K.shape[0]}×{self.K.shape[1]})"

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        i, j = A[:, 0].long(), B[:, 0].long()
        K = self.K[i, j] if paired else self.K[i][:, j]
        return K if out is None else out.copy_(K)


def _is_precomputed(kernel: Any) -> bool:
    return isinstance(kernel, str) and kernel == "precomputed"


def resolve_kernel(kernel: Any, kernel_params: dict | None = None, nngp: bool = False) -> _kernels.Kernel:
    """A kernel object from a name, a kernel object, a callable ``k(A, B)`` or a ``nets`` network.

    ``nngp=True`` picks a network's NNGP instead of its NTK; with any other kernel it is refused (it would change
    nothing, and a user who asked for it expects an NNGP)."""
    params = dict(kernel_params or {})
    if _is_network(kernel):
        if params:
            raise ValidationError("kernel_params", "no parameters with a network kernel", repr(params))
        return NetworkKernel(kernel, nngp)
    if nngp:
        name = kernel if isinstance(kernel, str) else type(kernel).__name__
        raise ValidationError("nngp", "False unless the kernel is a kernelscope.nets network (nngp=True picks its "
                              "NNGP instead of its NTK)", f"True with the kernel {name!r}",
                              "Leave out nngp=True, pass a network (nets.serial(...)), or use "
                              "MLPKernel(..., nngp=True).")
    return _kernels.get(kernel, **params)


class MLPKernel(_kernels.Kernel):
    """NTK (or NNGP) of ``serial(Dense(w_std, b_std), activation) × depth + Dense(w_std, b_std)`` of
    :mod:`kernelscope.nets` (THEORY.md §4), as a kernel with hyperparameters ``w_std``, ``b_std`` (continuous,
    optimisable by :func:`fit_hyperparameters` through finite-difference gradients) and ``depth``.

    Parameters
    ----------
    depth : int >= 0 - hidden layers.  w_std : float > 0.  b_std : float >= 0.
    activation : a name of :data:`kernelscope.nets.finite.ACTIVATIONS` with a closed-form or quadrature dual.
    nngp : bool - the NNGP instead of the NTK.
    """

    block_factor = 4

    def __init__(self, depth: int = 2, w_std: float = 1.0, b_std: float = 0.0, activation: str = "relu",
                 nngp: bool = False):
        from .nets import finite as _finite

        self.depth = _arrays.check_int(depth, "depth", minimum=0)
        self.w_std = check_positive(w_std, "w_std")
        self.b_std = check_nonnegative(b_std, "b_std")
        self.activation = check_choice(activation, "activation", list(_finite.ACTIVATIONS))
        self.nngp = bool(nngp)

    def params(self):
        return {"depth": self.depth, "w_std": self.w_std, "b_std": self.b_std, "activation": self.activation,
                "nngp": self.nngp}

    def hyperparameters(self, d):
        return {"w_std": self.w_std, **({"b_std": self.b_std} if self.b_std > 0 else {})}

    def network(self) -> Any:
        """The :mod:`kernelscope.nets` description."""
        from . import nets
        from .nets import finite as _finite

        fn, layer = _finite.ACTIVATIONS[self.activation]
        act = getattr(nets, layer) if layer != "Elementwise" else (lambda: nets.Elementwise(fn))
        layers: list = []
        for _ in range(self.depth):
            layers += [nets.Dense(1, self.w_std, self.b_std), act()]
        return nets.serial(*layers, nets.Dense(1, self.w_std, self.b_std))

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        if theta:  # no closed form in w_std, b_std: central differences in the backward pass
            return _kernels.finite_difference_formula(self, A, B, theta, out=out, paired=paired)
        return NetworkKernel(self.network(), self.nngp).formula(A, B, out=out, paired=paired)


# ------------------------------------------------------------------------------------------------------------
# Gaussian-process evidence (THEORY.md §2): log marginal likelihood and its maximisation
# ------------------------------------------------------------------------------------------------------------
_LOG_2PI = float(np.log(2 * np.pi))


def log_marginal_likelihood(K: torch.Tensor, Y: torch.Tensor, ridge: Any) -> torch.Tensor:
    """``log p(Y | X) = Σ_o [−½ y_oᵀ (K + λI)⁻¹ y_o − ½ log|K + λI| − (N/2) log 2π]`` (Rasmussen & Williams
    2006, eq. 2.30 and Algorithm 2.1), differentiable in K and λ (torch autograd).

    The model: f ~ GP(0, k), y = f + ε, ε ~ N(0, λI) — scikit-learn's ``GaussianProcessRegressor(kernel=k +
    WhiteKernel(λ), alpha=0)`` (or ``kernel=k, alpha=λ``), with ``normalize_y=False``; a sum over the targets.

    Parameters
    ----------
    K : tensor (N, N), PSD.  Y : tensor (N,) or (N, O).  ridge : float or 0-d tensor λ ≥ 0 (K + λI must be PD).

    Returns
    -------
    0-d float64 tensor.
    """
    n = K.shape[0]
    Y = Y.reshape(n, -1)
    Kr = K + ridge * torch.eye(n, dtype=K.dtype, device=K.device)
    L, info = torch.linalg.cholesky_ex(Kr)
    if int(info) != 0:
        raise ValidationError("ridge", "a ridge making K + ridge·I positive definite", f"ridge={float(ridge):g}",
                              "Use a larger ridge (noise variance).")
    alpha = torch.cholesky_solve(Y, L)  # (N, O)
    o = Y.shape[1]
    return -0.5 * (Y * alpha).sum() - o * torch.log(torch.diagonal(L)).sum() - 0.5 * n * o * _LOG_2PI


class HyperparameterFit(NamedTuple):
    """Result of :func:`fit_hyperparameters`: the ``kernel`` (a new object) and ``ridge`` at the optimum, the
    ``log_marginal_likelihood`` there and at the start (``initial``), the optimised values ``params`` (name ->
    value, ``'ridge'`` included) and the optimiser's number of iterations (summed over a grid)."""

    kernel: _kernels.Kernel
    ridge: float
    log_marginal_likelihood: float
    initial: float
    params: dict
    n_iter: int


def fit_hyperparameters(kernel: Any, X: Any, y: Any, ridge: float = 1e-2, *, params: Any = None,
                        optimize_ridge: bool = True, grid: dict | None = None,
                        bounds: tuple[float, float] = (1e-5, 1e5), max_iter: int = 200) -> HyperparameterFit:
    """Maximise the log marginal likelihood over the kernel's hyperparameters and the ridge (noise variance).

    Each positive hyperparameter θ is optimised as log θ (within ``bounds``, scikit-learn's defaults) by
    L-BFGS-B (``scipy.optimize.minimize``) with the gradient from torch autograd through
    :func:`log_marginal_likelihood` and :meth:`Kernel.formula` (exact for the closed-form kernels, central
    differences for e.g. :class:`MLPKernel`'s ``w_std``/``b_std``). Discrete choices (an MLPKernel's ``depth``)
    go in ``grid``: every combination is optimised and the largest marginal likelihood wins.

    Parameters
    ----------
    kernel : a kernel name, object or network (as :class:`KernelRegressor` takes it).
    X : array-like (N, d).  y : array-like (N,) or (N, O).  ridge : the initial λ > 0.
    params : names (as in ``kernel.get_params()``) to optimise; default every ``kernel.hyperparameters(d)``.
    optimize_ridge : optimise λ too.  grid : name -> list of values tried (``{"depth": [1, 2, 3]}``).
    bounds : (low, high) for every optimised value.  max_iter : L-BFGS-B iterations per start.

    Returns
    -------
    HyperparameterFit(kernel, ridge, log_marginal_likelihood, initial, params, n_iter).
    """
    import itertools

    from scipy.optimize import minimize
    from sklearn.base import clone

    base = resolve_kernel(kernel)
    Xt = as_tensor(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    Yt = as_tensor(y, "y", ndim=(1, 2), device=Xt.device).reshape(Xt.shape[0], -1)
    if Yt.shape[0] != Xt.shape[0]:
        raise ValidationError("y", f"{Xt.shape[0]} rows (as many as X)", f"shape {tuple(Yt.shape)}")
    _arrays.check_magnitude(Yt.T, "y", fix="Scale y (divide it by its standard deviation) and the predictions "
                            "back: the likelihood holds yᵀ(K + λI)⁻¹y.")
    lam0 = check_positive(ridge, "ridge")
    max_iter = _arrays.check_int(max_iter, "max_iter", minimum=1)
    lo, hi = (np.log(check_positive(b, "bounds")) for b in bounds)
    best: HyperparameterFit | None = None
    initial, total_iter = None, 0
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())] if grid else [{}]
    for combo in combos:
        k0 = clone(base).set_params(**combo) if combo else base
        start = k0.hyperparameters(Xt.shape[1])
        names = list(start) if params is None else list(params)
        unknown = [n for n in names if n not in start]
        if unknown:
            raise ValidationError("params", "continuous hyperparameters of the kernel: " + ", ".join(start),
                                  repr(unknown))
        x0 = np.log([start[n] for n in names] + ([lam0] if optimize_ridge else []))

        def objective(z: np.ndarray, k0=k0, names=names) -> tuple[float, np.ndarray]:
            def negative_lml(zt: torch.Tensor) -> torch.Tensor:  # of the log hyperparameters z
                vals = torch.exp(zt)
                theta = {n: vals[i] for i, n in enumerate(names)}
                lam = vals[-1] if optimize_ridge else lam0
                return -log_marginal_likelihood(k0.formula(Xt, Xt, theta), Yt, lam)

            value, g = value_and_grad(negative_lml, torch.tensor(z, dtype=torch.float64))
            return float(value), g.numpy()

        value0 = -objective(x0)[0]
        if initial is None:
            initial = value0
        res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=[(lo, hi)] * len(x0),
                       options={"maxiter": max_iter})
        total_iter += int(res.nit)
        z = res.x if -res.fun >= value0 else x0
        found = dict(zip(names, np.exp(z[:len(names)]).tolist()))
        lam = float(np.exp(z[-1])) if optimize_ridge else lam0
        fitted = clone(k0).set_params(**found)
        lml = max(-float(res.fun), value0)
        if best is None or lml > best.log_marginal_likelihood:
            best = HyperparameterFit(fitted, lam, lml, initial, {**combo, **found, "ridge": lam}, 0)
    return best._replace(initial=initial, n_iter=total_iter)


# ------------------------------------------------------------------------------------------------------------
# The estimator
# ------------------------------------------------------------------------------------------------------------
class _KernelModel(BaseEstimator):
    """The parameters KernelRegressor and KernelClassifier share (scikit-learn reads them off ``__init__``)."""

    def __init__(self, kernel: Any = "rbf", ridge: float = 1e-6, kernel_params: dict | None = None,
                 nngp: bool = False, solver: str = "auto", solver_options: dict | None = None,
                 optimize: bool = False):
        self.kernel = kernel
        self.ridge = ridge
        self.kernel_params = kernel_params
        self.nngp = nngp
        self.solver = solver
        self.solver_options = solver_options
        self.optimize = optimize

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = _is_precomputed(self.kernel)  # cross-validation splits rows and columns
        return tags


class KernelRegressor(RegressorMixin, _KernelModel):
    """Kernel ridge regression with Gaussian-process error bars (THEORY.md §2).

    ``f(x) = Σ_i α_i k(x, x_i)``, ``α = (K + λI)⁻¹ Y``, ``K_ij = k(x_i, x_j)``; λ = 0 gives the minimum-RKHS-norm
    interpolant ``α = K⁺Y`` (pseudoinverse, also for singular K). The same numbers are scikit-learn's
    ``KernelRidge(alpha=λ)`` prediction and the posterior mean of a Gaussian process with noise variance λ.

    Parameters
    ----------
    kernel : str, Kernel, callable or network, default='rbf'
        A name from :data:`kernelscope.kernels.KERNELS` ('linear', 'poly', 'rbf', 'laplace', 'arccos', 'erf'),
        a :class:`kernelscope.kernels.Kernel`, a callable ``k(A, B) -> (len(A), len(B))`` (it gets float64
        torch tensors), or a ``kernelscope.nets`` network (anything with ``.kernel(x1, x2)`` returning
        ``.ntk``/``.nngp``; a convolutional one declares its input shape, ``nets.serial(..., input_shape=(C, L))``,
        to take rows). ``'precomputed'``: ``fit(K, y)`` takes the (N, N) training kernel matrix and ``predict``
        the (T, N) kernel between the queries and the training points (scikit-learn's convention; no ``std``).
    ridge : float >= 0, default=1e-6
        λ, the regularisation (the noise variance in the GP reading).
    kernel_params : dict, optional
        Hyperparameters of a named kernel (``gamma``, ``degree``, ``coef0``, ``lengthscale``), as in
        scikit-learn's ``KernelRidge``.
    nngp : bool, default=False
        For a network kernel: use its NNGP instead of its NTK.
    solver : str, default='auto'
        A key of :data:`kernelscope.solvers.SOLVERS`; 'auto' asks :func:`kernelscope.solvers.choose`.
    solver_options : dict, optional
        Extra keyword arguments of the solver's fit function.
    optimize : bool, default=False
        Before solving, maximise the Gaussian-process log marginal likelihood over the kernel's continuous
        hyperparameters and the ridge (:func:`fit_hyperparameters`, from the given values); the result is in
        ``kernel_`` and ``ridge_``.

    Attributes
    ----------
    kernel_ : Kernel - the kernel used (optimised if ``optimize``). ridge_ : float - the λ used.
    dual_coef_ : ndarray of shape (n_centers,) or (n_centers, n_targets) - α.
    X_fit_ : ndarray of shape (n_centers, n_features) - the points predictions are made from.
    solver_ : str - the solver used. solver_info_ : dict - its report (method, timings...).
    n_features_in_ : int.

    Examples
    --------
    >>> import numpy as np, kernelscope as ks
    >>> X = np.linspace(-1, 1, 20)[:, None]; y = np.sin(3 * X[:, 0])
    >>> model = ks.KernelRegressor("rbf", ridge=1e-6, kernel_params={"gamma": 10.0}).fit(X, y)
    >>> mean, std = model.predict(X, return_std=True)

    The Gaussian-process reading: ``log_marginal_likelihood()`` equals scikit-learn's
    ``GaussianProcessRegressor(kernel=k + WhiteKernel(λ), alpha=0).log_marginal_likelihood_value_`` (with
    ``ConstantKernel(c) * k`` ↔ ``c * k``, ``RBF(length_scale=ℓ)`` ↔ ``RBF(lengthscale=ℓ)``), and ``sample_y``
    draws from the prior (unfitted) or the posterior of the latent function, as ``GaussianProcessRegressor``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _kernel_object(self) -> _kernels.Kernel:
        if _is_precomputed(self.kernel):
            raise ValidationError("kernel", "a kernel function here (sample_y draws at new points)",
                                  "'precomputed'", "Use the kernel itself, not its matrix.")
        return resolve_kernel(self.kernel, self.kernel_params, self.nngp)

    @staticmethod
    def _tensor(a: np.ndarray) -> torch.Tensor:
        # torch.from_numpy shares memory; read-only input (memmaps) is copied rather than warned about.
        return torch.from_numpy(a if a.flags.writeable else a.copy())

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> KernelRegressor:
        """Solve ``(K + λI) α = y`` (with weights w: ``(K + λW⁻¹) α = y``, scikit-learn's ``KernelRidge``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,) or float, optional - w_i ≥ 0; the point i gets the noise
            variance λ/w_i (weight 2 is the point counted twice). Solved as ``W^½ K W^½ + λI`` by any solver.

        Returns
        -------
        self
        """
        # Validated here, once: the solvers and their Dask tiles take the data, the ridge and the memory budget
        # as given (Kernel.matrix, not the validating Kernel.__call__).
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        ridge = check_nonnegative(self.ridge, "ridge")
        precomputed = _is_precomputed(self.kernel)
        if precomputed:  # the points are the training indices; the kernel looks them up in X = K (N, N)
            if X.shape[0] != X.shape[1] or self.optimize or self.kernel_params:
                raise ValidationError("X", "the square (n_samples, n_samples) training kernel matrix, without "
                                      "kernel_params or optimize (kernel='precomputed')",
                                      f"shape {X.shape}" + (", optimize=True" if self.optimize else ""))
            kernel = _PrecomputedKernel(self._tensor(X))
            X = np.arange(X.shape[0], dtype=np.float64)[:, None]  # (N, 1)
        else:
            kernel = self._kernel_object()
        if self.optimize:
            if sample_weight is not None:
                raise ValidationError("sample_weight", "None with optimize=True", "weights",
                                      "Fit the hyperparameters without weights (fit_hyperparameters).")
            found = fit_hyperparameters(kernel, X, y, ridge=max(ridge, 1e-10))
            kernel, ridge = found.kernel, found.ridge
        self.kernel_, self.ridge_ = kernel, ridge
        self._X_train, self._y_train = X, y  # for log_marginal_likelihood / sample_y
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if np.all(sw == 1.0):
                sw = None
        options = dict(self.solver_options or {})
        name = check_choice(self.solver, "solver", ["auto", *_solvers.SOLVERS])
        budget = options.get("memory_budget")
        budget = _arrays.memory_budget_bytes() if budget is None else int(budget)  # read once per fit
        if name == "auto":
            name = _solvers.choose(X.shape[0], d=X.shape[1], n_outputs=1 if y.ndim == 1 else y.shape[1],
                                   budget=budget, ridge=ridge)
        fit = _solvers.SOLVERS[name]
        if _solvers.takes_memory_budget(fit):
            options["memory_budget"] = budget
        Y = self._tensor(np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=np.float64))  # (N, O)
        Xt = self._tensor(X)
        self._center_weights = None
        if sw is None:
            result = fit(kernel, Xt, Y, ridge, **options)
        else:
            # The weights ride along as a last column: k_w(a, b) = √w_a k(a, b) √w_b, y_w = √w y, so any solver
            # solves (W^½ K W^½ + λI) β = W^½ y, and α = W^½ β (what scikit-learn's KernelRidge does).
            root = torch.from_numpy(np.sqrt(sw))
            result = fit(_WeightedKernel(kernel), torch.cat([Xt, root[:, None]], dim=1), Y * root[:, None], ridge,
                         **options)
            self._center_weights = result.centers[:, -1].clone()  # (M,) √w of each center
            result.centers = result.centers[:, :-1].contiguous()
            result.coef = result.coef * self._center_weights[:, None]
        coef = result.coef.detach().cpu().numpy()
        self.dual_coef_ = coef[:, 0] if y.ndim == 1 else coef
        self.X_fit_ = result.centers.detach().cpu().numpy()
        self.solver_ = name
        self.solver_info_ = dict(result.info)
        self._result = result
        self._y_ndim = y.ndim
        self._precomputed = precomputed
        return self

    def predict(self, X: Any, return_std: bool = False) -> Any:
        """Posterior mean ``k(x, X) α`` (and std ``√(k(x,x) − k(x,X)(K + λI)⁻¹k(X,x))`` if ``return_std``).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features); with ``kernel='precomputed'`` the kernel between the
            queries and the training points, (n_queries, n_samples).
        return_std : bool - also return the posterior standard deviation of the latent function
            (scikit-learn's ``GaussianProcessRegressor`` convention: the noise λ is not added).

        Returns
        -------
        y_mean : ndarray of shape (n_queries,) or (n_queries, n_targets)
        y_std : ndarray of the same shape (the std is the same for every target), if ``return_std``.
        """
        check_is_fitted(self, "dual_coef_")
        kind = ArrayKind.of(X)  # tensor in -> tensor out, on the input's device
        X = validate_data(self, X.detach().cpu() if kind.is_torch else X, reset=False, dtype=np.float64)
        kernel = self.kernel_
        res = self._result
        if return_std and res.variance is None:
            raise ValidationError("return_std", f"a solver that gives the posterior variance ('{self.solver_}' "
                                  "does not)", "return_std=True", "Use solver='cholesky' for error bars.")
        precomputed = getattr(self, "_precomputed", False)
        if return_std and precomputed:
            raise ValidationError("return_std", "a kernel function (the std needs k(x, x) of the queries)",
                                  "return_std=True with kernel='precomputed'", "Pass the kernel itself.")
        Xt = self._tensor(X)
        centers, coef = res.centers, res.coef  # (M, d), (M, O)
        root_w = getattr(self, "_center_weights", None)  # (M,) √w of the centers of a weighted fit, or None
        rows = max(1, _kernels.BLOCK_ELEMENTS // (4 * max(1, centers.shape[0])))
        budget = _arrays.memory_budget_bytes()  # read once, for every block
        means, variances = [], []
        for i in range(0, Xt.shape[0], rows):
            Xb = Xt[i:i + rows]
            if precomputed:  # the queries' kernel rows, at the centers' indices
                Kb = Xb[:, centers[:, 0].long()]  # (B, M)
            else:
                Kb = kernel.matrix(Xb, centers, budget=budget)  # (B, M); X validated above
            means.append(Kb @ coef)
            if return_std:
                k_diag = kernel.formula(Xb, Xb, paired=True)  # (B,) k(x, x)
                variances.append(res.variance(Kb if root_w is None else Kb * root_w, k_diag))
        mean = torch.cat(means)  # (T, O)
        if self._y_ndim == 1:
            mean = mean[:, 0]
        if not return_std:
            return kind.wrap(mean)
        std = torch.sqrt(torch.cat(variances))  # (T,)
        if self._y_ndim == 2:
            std = std[:, None].expand(-1, mean.shape[1]).contiguous()
        return kind.wrap(mean), kind.wrap(std)

    def leave_one_out(self) -> Any:
        """The exact leave-one-out predictions at the training points: what the model fitted without point i
        predicts at x_i, for every i at once (Rasmussen & Williams 2006, eq. 5.12)::

            μ₋ᵢ = y_i − α_i / [(K + λW⁻¹)⁻¹]_ii,     α = (K + λW⁻¹)⁻¹ y     (W = diag(sample_weight), else I).

        ``[(K + λW⁻¹)⁻¹]_ii`` comes from the solver's posterior variance with the unit vectors as queries,
        ``w_i (1/λ − e_iᵀ (W^½KW^½ + λI)⁻¹ e_i)``, a row block at a time (O(N³) like the fit, no kernel
        evaluations). Needs λ > 0 and a solver that gives the variance ('cholesky'); points of weight 0 give NaN.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets), like ``y``.
        """
        check_is_fitted(self, "dual_coef_")
        res, lam = self._result, self.ridge_
        n = self._X_train.shape[0]
        if res.variance is None or lam <= 0 or res.coef.shape[0] != n:
            raise ValidationError("leave_one_out", "a fit with ridge > 0 by a solver that gives the posterior "
                                  "variance (solver='cholesky')", f"solver={self.solver_!r}, ridge={lam:g}",
                                  "Refit with solver='cholesky' and a positive ridge.")
        w = self._center_weights  # (N,) √w of a weighted fit, or None
        diag = []
        for r0 in range(0, n, 512):
            unit = torch.eye(n, dtype=torch.float64)[r0:r0 + 512]  # (B, N) rows e_iᵀ
            v = res.variance(unit, torch.full((unit.shape[0],), 1.0 / lam, dtype=torch.float64))  # 1/λ − [M⁻¹]_ii
            diag.append(1.0 / lam - v)
        inv_diag = torch.cat(diag)  # (N,) [M⁻¹]_ii
        if w is not None:
            inv_diag = inv_diag * w**2  # [(K + λW⁻¹)⁻¹]_ii = w_i [M⁻¹]_ii
        loo = self._y_train.reshape(n, -1) - (res.coef / inv_diag[:, None]).numpy()  # (N, O)
        if w is not None:
            loo[(w == 0).numpy()] = np.nan
        return loo[:, 0] if self._y_ndim == 1 else loo

    def log_marginal_likelihood(self) -> float:
        """``log p(y | X)`` of the training data under the fitted kernel and ridge (:func:`log_marginal_likelihood`;
        sample weights are not part of it)."""
        check_is_fitted(self, "dual_coef_")
        Xt = self._tensor(self._X_train)
        K = self.kernel_.matrix(Xt, Xt)
        return float(log_marginal_likelihood(K, self._tensor(np.ascontiguousarray(self._y_train)), self.ridge_))

    def sample_y(self, X: Any, n_samples: int = 1, random_state: Any = 0) -> Any:
        """Draws of the latent function at X: from the prior ``N(0, k(X, X))`` before ``fit``, from the posterior
        ``N(k(X, X_t)α, k(X, X) − k(X, X_t)(K + λI)⁻¹k(X_t, X))`` after (scikit-learn's ``sample_y``).

        Parameters
        ----------
        X : array-like (T, d).  n_samples : int ≥ 1.  random_state : int seed or torch.Generator.

        Returns
        -------
        (T, n_samples), or (T, n_targets, n_samples) for a multi-target fit. NumPy in -> NumPy out.
        """
        kind = ArrayKind.of(X)
        n_samples = _arrays.check_int(n_samples, "n_samples", minimum=1)
        fitted = hasattr(self, "dual_coef_")
        if _is_precomputed(self.kernel):
            raise ValidationError("kernel", "a kernel function (sample_y evaluates it at new points)",
                                  "'precomputed'", "Use the kernel itself, not its matrix.")
        Xn = validate_data(self, X.detach().cpu() if kind.is_torch else X, reset=False, dtype=np.float64) \
            if fitted else np.asarray(as_tensor(X, "X", ndim=2).cpu())
        Xq = self._tensor(np.ascontiguousarray(Xn))
        T, N = Xq.shape[0], (self._X_train.shape[0] if fitted else 0)
        O = 1 if not fitted or self._y_ndim == 1 else int(np.shape(self._y_train)[1])
        # k(X, X), its update and symmetrised copy, eigh's V and workspace, the root: about 6 T×T; with a fit K, its
        # pseudoinverse (N×N each) and k(X, X_t), Ks P (T×N each); the normal draws, the mean and the result
        need = 8.0 * (6 * T * T + 2 * N * N + 3 * T * N + 3 * T * O * n_samples)
        _arrays.check_memory(need, f"sample_y's {T}×{T} covariance and {T}×{O * n_samples} draws",
                             "Ask for fewer points X (the covariance is T×T) or fewer n_samples per call.")
        kernel = self.kernel_ if fitted else self._kernel_object()
        cov = kernel.matrix(Xq, Xq)  # (T, T)
        mean = torch.zeros(Xq.shape[0], 1, dtype=torch.float64)
        if fitted:
            Xt = self._tensor(self._X_train)
            Kr = kernel.matrix(Xt, Xt)
            Kr.diagonal().add_(self.ridge_)
            Ks = kernel.matrix(Xq, Xt)  # (T, N)
            P = torch.linalg.pinv(Kr, hermitian=True)
            mean = Ks @ (P @ self._tensor(np.ascontiguousarray(self._y_train)).reshape(Xt.shape[0], -1))
            cov = cov - Ks @ P @ Ks.T
        w, V = torch.linalg.eigh((cov + cov.T) / 2)  # a PSD root, also for a singular covariance
        root = V * torch.sqrt(w.clamp(min=0.0))
        gen = _arrays.as_generator(random_state)
        Z = torch.randn(Xq.shape[0], mean.shape[1] * n_samples, generator=gen, dtype=torch.float64)
        draws = (mean.repeat_interleave(n_samples, 1) + root @ Z).reshape(Xq.shape[0], mean.shape[1], n_samples)
        if not fitted or self._y_ndim == 1:
            draws = draws[:, 0]
        return kind.wrap(draws)


# ------------------------------------------------------------------------------------------------------------
# The classifier: the regressor on centred one-hot targets
# ------------------------------------------------------------------------------------------------------------
def fit_temperature(F: Any, y: Any, sample_weight: Any = None) -> float:
    """The temperature T > 0 whose ``softmax(F / T)`` has the least cross-entropy on the labels y:
    ``min_T Σ_i w_i [log Σ_c exp(F_ic/T) − F_{i,y_i}/T] / Σ_i w_i`` (Guo et al. 2017, "On calibration of modern
    neural networks": temperature scaling), by bounded Brent on log(1/T) (the loss is convex in 1/T).

    Parameters
    ----------
    F : array (N, C) of scores (held-out or leave-one-out ones: on the training points themselves a kernel
        machine's scores are nearly the targets and T would go to 0).  y : int array (N,) in 0..C-1.
    sample_weight : array (N,) ≥ 0 or None; points of weight 0 (and any NaN score) are left out.

    Returns
    -------
    float T; within [1e-6, 1e6] times the spread of the scores (at a bound when the scores separate the classes
    perfectly, or carry no information).
    """
    from scipy.optimize import minimize_scalar

    from ._model import loss_value

    F = torch.as_tensor(np.asarray(F, dtype=np.float64))  # (N, C)
    labels = torch.as_tensor(np.asarray(y, dtype=np.int64))
    w = torch.ones(F.shape[0], dtype=torch.float64) if sample_weight is None else \
        torch.as_tensor(np.asarray(sample_weight, dtype=np.float64))
    keep = (w > 0) & torch.isfinite(F).all(1)
    F, labels, w = F[keep], labels[keep], w[keep]
    scale = float(F.std()) if F.numel() > 1 else 0.0
    if F.shape[0] == 0 or F.shape[1] < 2 or not scale > 0:
        return 1.0  # one class, or no scores to learn from: any T gives the same probabilities
    others = F.clone()
    others[torch.arange(F.shape[0]), labels] = -torch.inf
    if bool((F[torch.arange(F.shape[0]), labels] > others.max(1).values).all()):
        return 1e-6 * scale  # every point's own class scores highest: the loss falls all the way to T → 0

    def cross_entropy(log_beta: float) -> float:
        per_point = loss_value(F * float(np.exp(log_beta)), labels, "cross_entropy", reduction="none")
        return float((w * per_point).sum() / w.sum())

    found = minimize_scalar(cross_entropy, bounds=(np.log(1e-6 / scale), np.log(1e6 / scale)), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(-found.x))


def _has_probabilities(clf: KernelClassifier) -> bool:
    if not clf.probability:
        raise AttributeError("predict_proba is available with probability=True (the temperature is fitted on the "
                             "leave-one-out scores during fit)")
    return True


class KernelClassifier(ClassifierMixin, _KernelModel):
    """Kernel classification as regression: :class:`KernelRegressor` on centred one-hot targets, the class of the
    largest output (the kernel classifier of THEORY.md §2 and of the infinite-width networks of §4).

    Class c of K gets the target row ``e_c − 1/K`` (:func:`kernelscope.data.one_hot_centred`); the K outputs
    ``F(x) = k(x, X)(K + λI)⁻¹ Y`` are the ``decision_function`` (for two classes, ``F_1 − F_0``) and
    ``predict`` is the class of the largest. It is the regressor, not a copy: ``regressor_`` is the fitted
    :class:`KernelRegressor`, with the same solvers, ``kernel='precomputed'``, sample weights, ``optimize`` and
    Gaussian-process error bars (``decision_function(X, return_std=True)``: the posterior std of each output).

    Probabilities (``probability=True``): ``softmax(F(x) / T)``, with the temperature T fitted during ``fit`` by
    minimising the cross-entropy of the exact *leave-one-out* outputs of the training points
    (:meth:`KernelRegressor.leave_one_out`, :func:`fit_temperature`): each point scored by the model fitted
    without it, so T reflects how the outputs behave on points the model has not seen. It needs ridge > 0 and the
    'cholesky' solver, and costs about a second Cholesky solve; scikit-learn's ``SVC(probability=True)`` is the
    precedent for asking in advance.

    Parameters
    ----------
    kernel, ridge, kernel_params, nngp, solver, solver_options, optimize
        As :class:`KernelRegressor` (a ``kernelscope.nets`` network as ``kernel``: its NTK, or its NNGP with
        ``nngp=True``; its ``w_std``/``b_std`` are the parameters ``kernel__w_std``... of a grid search).
    probability : bool, default=False
        Fit the temperature of ``predict_proba`` (above).

    Attributes
    ----------
    classes_ : ndarray (n_classes,) - the labels, sorted (integers or strings).
    regressor_ : KernelRegressor - fitted on the centred one-hot targets (N, n_classes).
    temperature_ : float - T (with ``probability=True``).
    n_features_in_ : int.

    Examples
    --------
    >>> import kernelscope as ks
    >>> X, y = ks.data.spirals(50, classes=3, seed=0)
    >>> clf = ks.KernelClassifier("rbf", ridge=1e-3, kernel_params={"gamma": 10.0}, probability=True).fit(X, y)
    >>> proba = clf.predict_proba(X[:5])              # rows sum to 1
    """

    def __init__(self, kernel: Any = "rbf", ridge: float = 1e-6, kernel_params: dict | None = None,
                 nngp: bool = False, solver: str = "auto", solver_options: dict | None = None,
                 optimize: bool = False, probability: bool = False):
        super().__init__(kernel, ridge, kernel_params, nngp, solver, solver_options, optimize)
        self.probability = probability

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> KernelClassifier:
        """Fit the regressor on the centred one-hot rows of ``y`` (and the temperature, with ``probability``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) (the (n_samples, n_samples) kernel with 'precomputed').
        y : array-like of shape (n_samples,) - class labels (integers or strings).
        sample_weight : array-like of shape (n_samples,), optional - as :meth:`KernelRegressor.fit`.

        Returns
        -------
        self
        """
        from .data import one_hot_centred

        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        params = {name: getattr(self, name) for name in _KernelModel().get_params(deep=False)}
        if self.probability and (check_nonnegative(self.ridge, "ridge") == 0 or self.solver not in
                                 ("auto", "cholesky")):
            raise ValidationError("probability", "ridge > 0 and solver 'cholesky' (or 'auto'), for the "
                                  "leave-one-out scores the temperature is fitted on",
                                  f"ridge={self.ridge!r}, solver={self.solver!r}", "Or use probability=False.")
        Y = one_hot_centred(codes, len(self.classes_))  # (N, K), rows sum to 0
        self.regressor_ = KernelRegressor(**params).fit(X, Y, sample_weight=sample_weight)
        if self.probability:
            if self.regressor_.solver_ != "cholesky":
                raise ValidationError("probability", "the 'cholesky' solver (the leave-one-out scores need it)",
                                      f"solver 'auto' chose {self.regressor_.solver_!r} for {X.shape[0]} points",
                                      "Use probability=False, or fewer points.")
            weights = None if sample_weight is None else _check_sample_weight(sample_weight, X, dtype=np.float64)
            self.temperature_ = fit_temperature(self.regressor_.leave_one_out(), codes, weights)
        return self

    def _scores(self, X: Any, return_std: bool = False) -> Any:
        """The K outputs F (n, K) (and their posterior std (n, K)), as torch tensors, and the input's kind."""
        check_is_fitted(self, "regressor_")
        kind = ArrayKind.of(X)
        out = self.regressor_.predict(X, return_std=return_std)
        F, std = out if return_std else (out, None)
        F = torch.as_tensor(F)
        return F, (None if std is None else torch.as_tensor(std)), kind

    def decision_function(self, X: Any, return_std: bool = False) -> Any:
        """The outputs ``F(x)`` (n_queries, n_classes); for two classes ``F_1 − F_0`` (n_queries,), positive for
        ``classes_[1]``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) (the (n_queries, n_samples) kernel with 'precomputed').
        return_std : also return the posterior standard deviation of each output (the same for every class:
            the Gaussian-process variance of the latent function, :meth:`KernelRegressor.predict`; for two classes
            that of ``F_1 − F_0``, twice it).

        Returns
        -------
        scores : ndarray (n_queries, n_classes) or (n_queries,); std of the same shape, if ``return_std``.
        NumPy in -> NumPy out, a tensor in -> a tensor out.
        """
        F, std, kind = self._scores(X, return_std)
        if len(self.classes_) == 2:  # F_0 = −F_1: the targets' rows sum to 0
            F, std = F[:, 1] - F[:, 0], None if std is None else 2.0 * std[:, 1]
        elif len(self.classes_) == 1:
            F, std = F[:, 0], None if std is None else std[:, 0]
        return (kind.wrap(F), kind.wrap(std)) if return_std else kind.wrap(F)

    def predict(self, X: Any) -> np.ndarray:
        """The class of the largest output: ndarray (n_queries,) of labels from ``classes_``."""
        F, _, _ = self._scores(X)
        return self.classes_[F.argmax(1).cpu().numpy()]

    @available_if(_has_probabilities)
    def predict_proba(self, X: Any) -> Any:
        """``softmax(F(x) / T)``: (n_queries, n_classes), rows summing to 1, columns in the order of ``classes_``
        (``probability=True``; the class docstring says how T is fitted)."""
        F, _, kind = self._scores(X)
        return kind.wrap(torch.softmax(F / self.temperature_, dim=1))

    @available_if(_has_probabilities)
    def predict_log_proba(self, X: Any) -> Any:
        """``log_softmax(F(x) / T)`` (n_queries, n_classes)."""
        F, _, kind = self._scores(X)
        return kind.wrap(torch.log_softmax(F / self.temperature_, dim=1))


# ------------------------------------------------------------------------------------------------------------
# Gradient flow of a kernel machine (THEORY.md §5)
# ------------------------------------------------------------------------------------------------------------
