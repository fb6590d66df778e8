"""The one contract every kernel passes (classic, infinite-width, empirical, Dask-blocked).

    check_kernel_contract(full, X, Y, diag=None, blocks=None)

- ``full(A, B)`` -> (len(A), len(B)) matrix, and ``full(A, None)`` (or ``full(A)``) -> k(A, A);
- symmetric, PSD up to rounding on k(X, X);
- ``diag(A)`` (if given) equals the diagonal of k(A, A);
- k(X) equals k(X, X);
- ``blocks(A, B)`` (if given: a block-wise evaluation, e.g. on Dask) equals the dense k(A, B).
Tolerances come from the dtype (float64 eps), scaled by the size of the matrix.
"""

from __future__ import annotations

import numpy as np
import torch


def _np(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def check_kernel_contract(full, X, Y, diag=None, blocks=None, *, rtol: float | None = None, psd: bool = True):
    eps = np.finfo(np.float64).eps
    KXX = _np(full(X, X))
    KX = _np(full(X))
    KXY = _np(full(X, Y))
    n, m = len(X), len(Y)
    assert KXX.shape == (n, n), f"k(X, X) has shape {KXX.shape}, expected {(n, n)}"
    assert KXY.shape == (n, m), f"k(X, Y) has shape {KXY.shape}, expected {(n, m)}"
    scale = max(np.abs(KXX).max(), 1e-300)
    tol = rtol if rtol is not None else 1e3 * eps * max(n, 8)
    assert np.all(np.isfinite(KXX)) and np.all(np.isfinite(KXY)), "kernel has non-finite entries"
    np.testing.assert_allclose(KX, KXX, rtol=0, atol=tol * scale, err_msg="k(X) != k(X, X)")
    np.testing.assert_allclose(KXX, KXX.T, rtol=0, atol=tol * scale, err_msg="k(X, X) is not symmetric")
    if psd:
        w = np.linalg.eigvalsh((KXX + KXX.T) / 2)
        assert w.min() >= -tol * scale * n, f"k(X, X) is not PSD: smallest eigenvalue {w.min():.3e}"
    if diag is not None:
        d = _np(diag(X))
        np.testing.assert_allclose(d, np.diag(KXX), rtol=0, atol=tol * scale, err_msg="diag != diagonal")
    if blocks is not None:
        B = _np(blocks(X, Y))
        np.testing.assert_allclose(B, KXY, rtol=0, atol=tol * scale, err_msg="blocks != dense matrix")
    return KXX, KXY
