"""kernelscope.linsys against closed forms (THEORY.md §1), NumPy/SciPy, and the pseudoinverse identities."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kernelscope import linsys
from kernelscope._arrays import KernelscopeWarning, ValidationError

EPS = np.finfo(np.float64).eps


@pytest.fixture(autouse=True)
def _no_rank_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelscopeWarning)
        yield


class TestClosedForms:
    def test_line_3x_4y_12(self):
        r = linsys.solve([[3.0, 4.0]], [12.0])
        np.testing.assert_allclose(r.x, [36 / 25, 48 / 25], rtol=0, atol=4 * EPS * 2)
        assert np.linalg.norm(r.x) == pytest.approx(12 / 5, rel=1e-15, abs=4 * EPS)
        assert r.kind == "least_norm" and r.rank == 1 and r.nullity == 1

    def test_plane_least_norm_on_normal(self):
        r = linsys.solve([[1.0, 2.0, 2.0]], [9.0])
        np.testing.assert_allclose(r.x, [1.0, 2.0, 2.0], atol=1e-14)

    def test_two_planes_in_span_of_normals(self):
        A = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 2.0]])
        b = np.array([3.0, 2.0])
        r = linsys.solve(A, b)
        np.testing.assert_allclose(r.x, A.T @ np.linalg.solve(A @ A.T, b), atol=1e-14)
        null = linsys.subspaces(A).null[:, 0]
        assert abs(null @ r.x) < 1e-14  # perpendicular to the line of intersection

    def test_unique_square(self):
        rng = np.random.default_rng(1)
        A = rng.standard_normal((6, 6)) + 6 * np.eye(6)
        b = rng.standard_normal(6)
        r = linsys.solve(A, b)
        assert r.kind == "unique" and r.rank == 6
        np.testing.assert_allclose(r.x, np.linalg.solve(A, b), rtol=1e-13)


def _rank4(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 4)) @ rng.standard_normal((4, 8)), rng


class TestRankDeficient:
    def test_b_in_column_space(self):
        A, rng = _rank4()
        b = A @ rng.standard_normal(8)
        r = linsys.solve(A, b)
        assert r.kind == "least_norm" and r.rank == 4 and r.method == "svd"
        np.testing.assert_allclose(r.x, np.linalg.pinv(A) @ b, rtol=1e-12, atol=1e-12)
        assert r.residual_norm < 1e-12 * np.linalg.norm(b)
        assert np.linalg.norm(r.null_part) < 1e-12

    def test_b_not_in_column_space(self):
        A, rng = _rank4()
        b = rng.standard_normal(8)
        r = linsys.solve(A, b)
        assert r.kind == "least_squares"
        S = linsys.subspaces(A)
        # the residual lies in the left null space: orthogonal to the column space
        assert np.linalg.norm(S.col.T @ r.residual) < 1e-12 * np.linalg.norm(b)
        np.testing.assert_allclose(r.x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-12, atol=1e-12)

    def test_several_right_hand_sides(self):
        A, rng = _rank4()
        B = np.column_stack([A @ rng.standard_normal(8), rng.standard_normal(8)])
        r = linsys.solve(A, B)
        assert r.x.shape == (8, 2) and r.kinds == ("least_norm", "least_squares") and r.kind == "least_squares"
        np.testing.assert_allclose(r.x, np.linalg.pinv(A) @ B, rtol=1e-12, atol=1e-12)

    def test_warns_when_rank_deficient(self):
        A, rng = _rank4()
        with warnings.catch_warnings():
            warnings.simplefilter("error", KernelscopeWarning)
            with pytest.raises(KernelscopeWarning, match="rank deficient"):
                linsys.solve(A, rng.standard_normal(8))

    def test_zero_matrix(self):
        r = linsys.solve(np.zeros((3, 2)), np.ones(3))
        assert r.rank == 0 and r.kind == "least_squares"
        np.testing.assert_array_equal(r.x, np.zeros(2))

    def test_decompose_any_solution(self):
        A, rng = _rank4(3)
        b = A @ rng.standard_normal(8)
        x_star = linsys.solve(A, b).x
        S = linsys.subspaces(A)
        other = x_star + S.null @ rng.standard_normal(S.null.shape[1])  # another solution
        row, null = linsys.decompose(A, other)
        np.testing.assert_allclose(row, x_star, atol=1e-12)
        np.testing.assert_allclose(A @ null, 0, atol=1e-12)
        assert np.linalg.norm(other) > np.linalg.norm(x_star)


@pytest.mark.parametrize("shape", [(40, 25), (25, 40), (30, 30)])
def test_agrees_with_numpy_well_conditioned(shape):
    rng = np.random.default_rng(sum(shape))
    A = rng.standard_normal(shape)
    b = rng.standard_normal(shape[0])
    ref = np.linalg.lstsq(A, b, rcond=None)[0]
    r = linsys.solve(A, b)
    assert np.linalg.norm(r.x - ref) <= 1e-12 * np.linalg.norm(ref)
    np.testing.assert_allclose(linsys.pinv(A), np.linalg.pinv(A), rtol=0, atol=1e-12 * np.abs(np.linalg.pinv(A)).max())


@pytest.mark.parametrize("n", [8, 12, 16])
def test_hilbert_at_least_as_accurate_as_lstsq(n):
    H = sla.hilbert(n)
    b = H @ np.ones(n)
    r = linsys.solve(H, b)
    x_np = np.linalg.lstsq(H, b, rcond=None)[0]
    res_ks = np.linalg.norm(b - H @ r.x)
    res_np = np.linalg.norm(b - H @ x_np)
    assert res_ks <= 1.5 * res_np + 10 * EPS * np.linalg.norm(b)
    # same numerical rank rule as NumPy (eps·max(m, n) cut-off)
    s = np.linalg.svd(H, compute_uv=False)
    assert r.rank == int(np.sum(s > EPS * n * s[0]))
    # the least-norm property is not traded away for the small residual
    assert np.linalg.norm(r.x) <= 1.5 * np.linalg.norm(x_np)


def test_rcond_convention_matches_numpy():
    A = np.diag([1.0, 1e-3, 1e-9])
    b = np.ones(3)
    for rcond in (None, 1e-6, 1e-2):
        x_np = np.linalg.lstsq(A, b, rcond=rcond)[0]
        np.testing.assert_allclose(linsys.solve(A, b, rcond=rcond).x, x_np, rtol=1e-12)
        np.testing.assert_allclose(linsys.pinv(A, rcond=rcond), np.linalg.pinv(A, rcond=rcond or 3 * EPS), rtol=1e-12)
    assert linsys.default_rcond((5, 7)) == EPS * 7


class TestSparse:
    def test_lsmr_matches_dense(self):
        A = sp.random(300, 80, density=0.05, random_state=0, format="csr") + sp.eye(300, 80)
        b = np.random.default_rng(0).standard_normal(300)
        r = linsys.solve(A, b, atol=1e-14, btol=1e-14)
        assert r.method == "lsmr" and r.rank is None and r.kind == "least_squares"
        np.testing.assert_allclose(r.x, np.linalg.lstsq(A.toarray(), b, rcond=None)[0], rtol=1e-8, atol=1e-10)

    def test_linear_operator_underdetermined_least_norm(self):
        rng = np.random.default_rng(2)
        M = rng.standard_normal((20, 50))
        op = spla.aslinearoperator(M)
        b = rng.standard_normal(20)
        r = linsys.solve(op, b, atol=1e-14, btol=1e-14)
        assert r.kind == "least_norm"
        np.testing.assert_allclose(r.x, np.linalg.pinv(M) @ b, rtol=1e-8, atol=1e-10)


class TestPowerIteration:
    def test_symmetric_known_spectrum(self):
        rng = np.random.default_rng(0)
        Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
        ev = np.linspace(1, 10, 30)
        A = (Q * ev) @ Q.T
        p = linsys.power_iteration(A, seed=1, tol=1e-12, max_iter=2000)
        assert p.converged and p.eigenvalue == pytest.approx(10.0, rel=1e-12)
        v = Q[:, -1] * np.sign(Q[np.argmax(np.abs(Q[:, -1])), -1])
        np.testing.assert_allclose(p.eigenvector, v, atol=1e-6)

    def test_matvec_callable(self):
        A = np.diag([5.0, 2.0, 1.0])
        p = linsys.power_iteration(lambda v: A @ v, n=3, seed=0)
        assert p.eigenvalue == pytest.approx(5.0)

    def test_warns_when_not_converged(self):
        A = np.diag([1.0, -1.0])  # ±1: power iteration oscillates
        with pytest.warns(KernelscopeWarning, match="did not converge"):
            p = linsys.power_iteration(A, v0=[1.0, 1.0], max_iter=50)
        assert not p.converged
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a budgeted estimate (RKC's radius) asks for silence and reads converged
            q = linsys.power_iteration(A, v0=[1.0, 1.0], max_iter=50, warn_unconverged=False)
        assert not q.converged and q.iterations == 50

    def test_callable_needs_dimension(self):
        with pytest.raises(ValueError, match="^n: "):
            linsys.power_iteration(lambda v: v)


class TestValidation:
    @pytest.mark.parametrize(
        "A, b, match",
        [
            ([1.0, 2.0], [1.0], r"^A: expected a 2-D array"),
            ([[1.0, np.nan]], [1.0], r"^A: expected finite values, got NaN"),
            ([[1.0, np.inf]], [1.0], r"^A: expected finite values, got inf"),
            (np.zeros((0, 3)), np.zeros(0), r"^A: expected at least 1 row"),
            ([["a", "b"]], [1.0], r"^A: expected numeric data"),
            ([[1.0, 2.0]], [1.0, 2.0], r"^b: expected 1 rows"),
            ([[1.0, 2.0]], [np.nan], r"^b: expected finite values"),
        ],
    )
    def test_bad_input_names_the_argument(self, A, b, match):
        with pytest.raises(ValueError, match=match):
            linsys.solve(A, b)

    def test_negative_rcond(self):
        with pytest.raises(ValueError, match="^rcond: "):
            linsys.pinv(np.eye(2), rcond=-1.0)


def test_torch_in_torch_out():
    A = torch.tensor([[3.0, 4.0]], dtype=torch.float32)
    r = linsys.solve(A, torch.tensor([12.0]))
    assert isinstance(r.x, torch.Tensor) and r.x.device == A.device
    assert isinstance(linsys.pinv(A), torch.Tensor)
    S = linsys.subspaces(A)
    assert isinstance(S.null, torch.Tensor) and S.null.shape == (2, 1)


# -- properties of the pseudoinverse -------------------------------------------------------------------------
# Entries below 1e-100 in magnitude are rounded to 0: for a matrix of such entries A⁺b is of order 1e100+ and
# ‖x‖² (in the checks, as in NumPy's norm) overflows float64 — a limit of the arithmetic, not of the identities.
entries = st.floats(-10, 10, allow_nan=False, width=64).map(lambda v: v if abs(v) >= 1e-100 else 0.0)
matrices = st.integers(1, 7).flatmap(
    lambda m: st.integers(1, 7).flatmap(lambda n: arrays(np.float64, (m, n), elements=entries)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(A=matrices, data=st.data())
def test_penrose_identities_and_subspaces(A, data):
    P = linsys.pinv(A)
    scale = max(np.abs(A).max(), 1.0)
    cond_tol = 1e-8 * scale * max(np.abs(P).max(), 1.0) * scale
    np.testing.assert_allclose(A @ P @ A, A, atol=cond_tol)
    b = data.draw(arrays(np.float64, A.shape[0], elements=st.floats(-10, 10, allow_nan=False, width=64)))
    r = linsys.solve(A, b)
    S = linsys.subspaces(A)
    assert S.row.shape[1] + S.null.shape[1] == A.shape[1]
    assert S.col.shape[1] + S.left_null.shape[1] == A.shape[0]
    tol = 1e-8 * (np.linalg.norm(b) + 1.0) * max(1.0, np.abs(P).max() * scale)
    # x lies in the row space: no component along the null space
    assert np.linalg.norm(S.null.T @ r.x) <= tol
    # the residual is orthogonal to the column space
    assert np.linalg.norm(S.col.T @ r.residual) <= tol * scale


# ------------------------------------------------------------------------------------------------------------
# Issue 17: the LSMR kind by a relative residual test; power_iteration's n documented
# ------------------------------------------------------------------------------------------------------------
def test_lsmr_kind_by_relative_residual_and_rank_unknown():
    from kernelscope import linsys

    A = sp.random(200, 300, density=0.02, random_state=0, format="csr")  # full row rank 200: consistent
    assert np.linalg.matrix_rank(A.toarray()) == 200
    b = np.random.default_rng(0).normal(size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = linsys.solve(A, b)
    assert np.linalg.norm(res.residual) < 1e-8 * np.linalg.norm(b)
    assert res.kind == "least_norm" and res.rank is None and res.info["rank"] == "unknown"
    A1 = sp.random(200, 300, density=0.02, random_state=1, format="csr")  # rank 198: b is not in the range
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert linsys.solve(A1, np.random.default_rng(1).normal(size=200)).kind == "least_squares"


def test_power_iteration_documents_n_for_a_callable():
    import inspect

    from kernelscope import linsys

    doc = inspect.getdoc(linsys.power_iteration)
    assert "\nn : " in doc and "v0 : " in doc
    with pytest.raises(ValidationError, match=r"^n: .*callable.*Give n="):
        linsys.power_iteration(lambda v: 2 * v)
