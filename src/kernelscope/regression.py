"""Kernel regression (THEORY.md §2) and the NTK gradient-flow predictions (THEORY.md §5).

- :class:`KernelRegressor`: a scikit-learn estimator for kernel ridge regression
  ``f(x) = k(x, X) α``, ``α = (K + λI)⁻¹ Y`` (``α = K⁺Y``, the least-norm interpolant, for λ = 0), with the
  Gaussian-process posterior standard deviation of the latent function. The linear system is solved by a
  solver from :data:`kernelscope.solvers.SOLVERS` (``'cholesky'``, ``'cg'``, ``'nystrom'``).
- :func:`gradient_flow`: the function a kernel machine (a linearised network) has after training time t of
  gradient flow on the squared loss, on the training set and at test points, for one or many t.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _arrays
from . import kernels as _kernels
from . import solvers as _solvers
from ._arrays import ArrayKind, ValidationError, as_tensor, check_choice, check_nonnegative, check_positive

__all__ = ["KernelRegressor", "gradient_flow", "GradientFlow", "resolve_kernel"]


# ------------------------------------------------------------------------------------------------------------
# Kernels from what users pass
# ------------------------------------------------------------------------------------------------------------
def _is_network(obj: Any) -> bool:
    """Duck typing for a ``kernelscope.nets`` network: a ``.kernel(x1, x2)`` method returning ``.ntk``/``.nngp``."""
    return (not isinstance(obj, (str, _kernels.Kernel)) and callable(getattr(obj, "kernel", None))
            and not isinstance(obj, type))


class NetworkKernel(_kernels.Kernel):
    """The NTK (or, with ``nngp=True``, the NNGP) of an infinite-width network as a :class:`Kernel`."""

    block_factor = 4

    def __init__(self, net: Any, nngp: bool = False):
        self.net, self.nngp = net, bool(nngp)

    def params(self):
        return {"net": self.net, "nngp": self.nngp}

    def __repr__(self):
        return f"NetworkKernel({'nngp' if self.nngp else 'ntk'} of {type(self.net).__name__})"

    def _fill(self, A, B, out):
        k = self.net.kernel(A, B)
        K = getattr(k, "nngp" if self.nngp else "ntk")
        out.copy_(torch.as_tensor(K, dtype=torch.float64))

    def _diag(self, A):
        try:  # kernelscope.nets computes k(x, x) alone in diag mode
            k = self.net.kernel(A, diag=True)
        except TypeError:
            return super()._diag(A)
        return torch.as_tensor(getattr(k, "nngp" if self.nngp else "ntk"), dtype=torch.float64).reshape(-1)


def resolve_kernel(kernel: Any, kernel_params: dict | None = None, nngp: bool = False) -> _kernels.Kernel:
    """A kernel object from a name, a kernel object, a callable ``k(A, B)`` or a ``nets`` network."""
    params = dict(kernel_params or {})
    if _is_network(kernel):
        if params:
            raise ValidationError("kernel_params", "no parameters with a network kernel", repr(params))
        return NetworkKernel(kernel, nngp)
    return _kernels.get(kernel, **params)


# ------------------------------------------------------------------------------------------------------------
# The estimator
# ------------------------------------------------------------------------------------------------------------
class KernelRegressor(RegressorMixin, BaseEstimator):
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
        ``.ntk``/``.nngp``).
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

    Attributes
    ----------
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
    """

    def __init__(self, kernel: Any = "rbf", ridge: float = 1e-6, kernel_params: dict | None = None,
                 nngp: bool = False, solver: str = "auto", solver_options: dict | None = None):
        self.kernel = kernel
        self.ridge = ridge
        self.kernel_params = kernel_params
        self.nngp = nngp
        self.solver = solver
        self.solver_options = solver_options

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _kernel_object(self) -> _kernels.Kernel:
        return resolve_kernel(self.kernel, self.kernel_params, self.nngp)

    @staticmethod
    def _tensor(a: np.ndarray) -> torch.Tensor:
        # torch.from_numpy shares memory; read-only input (memmaps) is copied rather than warned about.
        return torch.from_numpy(a if a.flags.writeable else a.copy())

    def fit(self, X: Any, y: Any) -> KernelRegressor:
        """Solve ``(K + λI) α = y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self
        """
        # Validated here, once: the solvers and their Dask tiles take the data, the ridge and the memory budget
        # as given (Kernel.matrix, not the validating Kernel.__call__).
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        ridge = check_nonnegative(self.ridge, "ridge")
        kernel = self._kernel_object()
        options = dict(self.solver_options or {})
        name = check_choice(self.solver, "solver", ["auto", *_solvers.SOLVERS])
        budget = options.get("memory_budget")
        budget = _arrays.memory_budget_bytes() if budget is None else int(budget)  # read once per fit
        if name == "auto":
            name = _solvers.choose(X.shape[0], d=X.shape[1], n_outputs=1 if y.ndim == 1 else y.shape[1],
                                   budget=budget)
        fit = _solvers.SOLVERS[name]
        if _solvers.takes_memory_budget(fit):
            options["memory_budget"] = budget
        Y = self._tensor(np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=np.float64))  # (N, O)
        result = fit(kernel, self._tensor(X), Y, ridge, **options)
        coef = result.coef.detach().cpu().numpy()
        self.dual_coef_ = coef[:, 0] if y.ndim == 1 else coef
        self.X_fit_ = result.centers.detach().cpu().numpy()
        self.solver_ = name
        self.solver_info_ = dict(result.info)
        self._result = result
        self._y_ndim = y.ndim
        return self

    def predict(self, X: Any, return_std: bool = False) -> Any:
        """Posterior mean ``k(x, X) α`` (and std ``√(k(x,x) − k(x,X)(K + λI)⁻¹k(X,x))`` if ``return_std``).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        return_std : bool - also return the posterior standard deviation of the latent function
            (scikit-learn's ``GaussianProcessRegressor`` convention: the noise λ is not added).

        Returns
        -------
        y_mean : ndarray of shape (n_queries,) or (n_queries, n_targets)
        y_std : ndarray of the same shape (the std is the same for every target), if ``return_std``.
        """
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        kernel = self._kernel_object()
        res = self._result
        if return_std and res.variance is None:
            raise ValidationError("return_std", f"a solver that gives the posterior variance ('{self.solver_}' "
                                  "does not)", "return_std=True", "Use solver='cholesky' for error bars.")
        Xt = self._tensor(X)
        centers, coef = res.centers, res.coef  # (M, d), (M, O)
        rows = max(1, _kernels.BLOCK_ELEMENTS // (4 * max(1, centers.shape[0])))
        budget = _arrays.memory_budget_bytes()  # read once, for every block
        means, variances = [], []
        for i in range(0, Xt.shape[0], rows):
            Xb = Xt[i:i + rows]
            Kb = kernel.matrix(Xb, centers, budget=budget)  # (B, M); X validated above
            means.append(Kb @ coef)
            if return_std:
                variances.append(res.variance(Kb, kernel._diag(Xb)))
        mean = torch.cat(means).cpu().numpy()  # (T, O)
        if self._y_ndim == 1:
            mean = mean[:, 0]
        if not return_std:
            return mean
        std = torch.sqrt(torch.cat(variances)).cpu().numpy()  # (T,)
        if self._y_ndim == 2:
            std = np.repeat(std[:, None], mean.shape[1], axis=1)
        return mean, std


# ------------------------------------------------------------------------------------------------------------
# Gradient flow of a kernel machine (THEORY.md §5)
# ------------------------------------------------------------------------------------------------------------
class GradientFlow(NamedTuple):
    """Predictions after gradient flow: ``train`` (.., N[, O]) and ``test`` (.., M[, O]) or None."""

    train: Any
    test: Any


def gradient_flow(k_train: Any, k_test_train: Any, y_train: Any, t: Any, lr: float = 1.0,
                  f0_train: Any = None, f0_test: Any = None, rcond: float | None = None, *,
                  discrete: bool = False, ridge: float = 0.0) -> GradientFlow:
    """Function values after training time t of gradient flow ``df/dt = −η Θ (f − y)`` on ``½‖f − y‖²``
    (or, with ``discrete=True``, after t steps of gradient descent ``f ← f − η Θ (f − y)``).

    With ``Θ = V diag(w) Vᵀ`` (one eigendecomposition) and ``E(t) = I − e^{−ηΘt} = −V expm1(−ηwt) Vᵀ``
    (discrete: ``E(t) = I − (I − ηΘ)^t``, computed as ``−expm1(t·log1p(−ηw))`` while ``ηw < 1``):

    - train:  ``f_t(X) = f₀(X) + E(t) (y − f₀(X))``
    - test:   ``f_t(x) = f₀(x) + Θ(x, X) Θ⁻¹ E(t) (y − f₀(X))``, where ``Θ⁻¹E(t) = V diag(−expm1(−ηwt)/w) Vᵀ``

    ``expm1`` keeps small t accurate; eigenvalues below ``rcond · w_max`` (default ``eps · N``) count as zero,
    i.e. Θ⁻¹ is the pseudoinverse on the range of Θ (for a PSD kernel ``Θ(x, X)`` has no component in the null
    space of ``Θ(X, X)``, so nothing is lost). At t = 0 this is f₀; as t → ∞ it is kernel regression
    with ridge 0 (the least-norm interpolant) added to f₀ — the lazy-training limit of a wide network (and of
    gradient descent with ``η < 2/w_max``). A loss averaged over the N points, ``(1/2N)‖f − y‖²``, is
    ``lr = η/N`` here.

    With ``ridge`` λ > 0, Θ(X, X) + λI stands for Θ(X, X) throughout (neural-tangents' ``diag_reg``, in absolute
    units): as t → ∞ the test predictions become kernel ridge regression ``Θ(x, X)(Θ + λI)⁻¹(y − f₀)``; the
    training-set output is that of the regularised system (pass ``k_test_train=k_train`` for the ridge fit on the
    training points). The MSE special case of :func:`kernelscope.predict.gradient_descent`, and the engine of
    :func:`kernelscope.predict.ensemble`.

    Parameters
    ----------
    k_train : array-like of shape (N, N) - Θ(X, X), symmetric PSD.
    k_test_train : array-like of shape (M, N) - Θ(x, X) for M test points, or None (train only).
    y_train : array-like of shape (N,) or (N, O).
    t : float or array-like of shape (T,) - training times (≥ 0; ``inf`` allowed); with ``discrete``, numbers
        of gradient-descent steps.
    lr : float > 0 - the learning rate η.
    f0_train : array-like like y_train, optional - the initial function on X (default 0).
    f0_test : array-like of shape (M,) or (M, O), optional - the initial function at the test points.
    rcond : float, optional - relative cut-off for the eigenvalues of Θ.
    discrete : gradient descent in steps of size η instead of gradient flow.
    ridge : float >= 0 - λ added to the diagonal of Θ(X, X).

    Returns
    -------
    GradientFlow(train, test): ``train`` of shape (N,)/(N, O) for scalar t and (T, N)/(T, N, O) for an array
    of times; ``test`` likewise with M (None when ``k_test_train`` is None). NumPy in -> NumPy out.
    """
    kind = ArrayKind.of(k_train, k_test_train, y_train, f0_train, f0_test)
    Theta = as_tensor(k_train, "k_train", ndim=2, shape_hint="(n_train, n_train)")
    n = Theta.shape[0]
    if Theta.shape[1] != n:
        raise ValidationError("k_train", "a square matrix (n_train, n_train)", f"shape {tuple(Theta.shape)}")
    dev = Theta.device
    y = as_tensor(y_train, "y_train", ndim=(1, 2), device=dev)
    if y.shape[0] != n:
        raise ValidationError("y_train", f"{n} rows (as many as k_train)", f"shape {tuple(y.shape)}")
    Y = y.reshape(n, -1)  # (N, O)
    Kx = None
    if k_test_train is not None:
        Kx = as_tensor(k_test_train, "k_test_train", ndim=2, shape_hint="(n_test, n_train)", device=dev)
        if Kx.shape[1] != n:
            raise ValidationError("k_test_train", f"{n} columns (as many as k_train)", f"shape {tuple(Kx.shape)}")
    times = as_tensor(t, "t", ndim=(0, 1), finite=False, device=dev)
    if bool(torch.isnan(times).any()) or bool((times < 0).any()):
        raise ValidationError("t", "times >= 0 (inf allowed)", f"{t!r}")
    eta = check_positive(lr, "lr")
    lam = check_nonnegative(ridge, "ridge")
    if lam > 0:
        Theta = Theta + lam * torch.eye(n, dtype=Theta.dtype, device=dev)

    def initial(f0: Any, name: str, rows: int) -> torch.Tensor:
        if f0 is None:
            return torch.zeros(rows, Y.shape[1], dtype=torch.float64, device=dev)
        f = as_tensor(f0, name, ndim=(1, 2), device=dev)
        if f.shape[0] != rows or f.reshape(rows, -1).shape[1] != Y.shape[1]:
            want = f"shape ({rows},)" if y.ndim == 1 else f"shape ({rows}, {Y.shape[1]})"
            raise ValidationError(name, want, f"shape {tuple(f.shape)}")
        return f.reshape(rows, -1)

    F0 = initial(f0_train, "f0_train", n)  # (N, O)
    F0x = None if Kx is None else initial(f0_test, "f0_test", Kx.shape[0])  # (M, O)

    w, V = torch.linalg.eigh((Theta + Theta.T) / 2)  # (N,), (N, N)
    cutoff = (rcond if rcond is not None else torch.finfo(torch.float64).eps * n) * float(w.abs().max())
    keep = w > cutoff
    w = torch.where(keep, w, torch.zeros_like(w))
    R = V.T @ (Y - F0)  # (N, O): residual in the eigenbasis
    T = times.reshape(-1, 1)  # (T, 1)
    if discrete:  # 1 − (1 − ηw)^t, through log1p while 1 − ηw > 0 (accurate for small ηw)
        g = eta * w
        log_contraction = torch.log1p(-torch.clamp(g, max=0.5))
        steps_power = torch.where(g < 0.5, -torch.expm1(torch.where(keep, T * log_contraction, 0.0 * T)),
                                  1.0 - torch.pow(1.0 - g, T))
        decayed = torch.where(keep, steps_power, torch.zeros((), dtype=torch.float64, device=dev))  # (T, N)
    else:
        # ηwt, with 0 (not 0·inf = nan) on the null space of Θ, which gradient flow never moves
        ewt = torch.where(keep, eta * w * T, torch.zeros((), dtype=torch.float64, device=dev))  # (T, N)
        decayed = -torch.expm1(-ewt)  # (T, N): 1 − e^{−ηwt}, accurate for small ηwt
    train = F0 + V @ (decayed[:, :, None] * R)  # (T, N, O)
    test = None
    if Kx is not None:
        safe_w = torch.where(keep, w, torch.ones_like(w))
        gain = torch.where(keep, decayed / safe_w, torch.zeros_like(decayed))  # (T, N): Θ⁻¹(I − e^{−ηΘt})
        test = F0x + (Kx @ V) @ (gain[:, :, None] * R)  # (T, M, O)

    def shape(f: torch.Tensor | None) -> Any:
        if f is None:
            return None
        if y.ndim == 1:
            f = f[..., 0]
        if times.ndim == 0:
            f = f[0]
        return kind.wrap(f)

    return GradientFlow(shape(train), shape(test))
