"""Chapter 1's experiments (kernelscope.experiments.linsys) against closed forms and NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

from kernelscope.experiments import linsys as E


def test_check_least_norm_line_matches_closed_form():
    c = E.check_least_norm(np.array([[3.0, 4.0]]), np.array([12.0]), expected=[36 / 25, 48 / 25])
    assert c.max_error < 1e-14 and abs(c.norm - 12 / 5) < 1e-14 and c.null_component < 1e-14
    assert c.system.result.kind == "least_norm"


def test_check_least_norm_defaults_to_pinv_and_sees_a_non_minimal_solution():
    A = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 2.0]])
    b = np.array([3.0, 2.0])
    c = E.check_least_norm(A, b)
    np.testing.assert_allclose(c.expected, np.linalg.pinv(A) @ b, rtol=0, atol=0)
    assert c.max_error < 1e-13
    # a solution off the row space has a null-space component: the check would show it
    other = c.system.result.x + c.system.subspaces.null[:, 0]
    assert np.linalg.norm(c.system.subspaces.null.T @ other) == pytest.approx(1.0)


def test_rank_deficient_example_in_and_out_of_the_column_space():
    ex = E.rank_deficient_example(np.random.default_rng(3), n=6, rank=3)
    assert np.linalg.matrix_rank(ex.A) == 3 and ex.inside.system.subspaces.dims["null"] == 3
    assert ex.inside.system.result.kind == "least_norm" and ex.inside.system.result.residual_norm < 1e-10
    assert ex.outside.system.result.kind == "least_squares" and ex.outside.system.result.residual_norm > 0.1
    assert ex.residual_in_col_space < 1e-10  # the least-squares residual lies in the left null space
    assert ex.inside.max_error < 1e-10 and ex.outside.max_error < 1e-10  # both are pinv(A) b
    again = E.rank_deficient_example(np.random.default_rng(3), n=6, rank=3)
    np.testing.assert_array_equal(again.A, ex.A)


def test_hilbert_study_truncates_and_matches_lstsq_residuals():
    rows = E.hilbert_study([4, 12])
    small, big = rows
    assert small.rank == 4 and big.rank < 12  # cond(H_12) ≈ 1.7e16 > 1/(eps·n): tiny singular values cut
    assert big.cond == pytest.approx(np.linalg.cond(1.0 / (np.arange(12)[:, None] + np.arange(12) + 1)))
    for r in rows:
        assert r.residual < 1e-8 and r.residual_lstsq < 1e-8


def test_power_iteration_study_finds_the_known_top_eigenvalue():
    st = E.power_iteration_study(np.random.default_rng(0), n=20, seed=1)
    assert st.eigenvalues[0] == 10.0 and st.result.converged
    assert st.result.eigenvalue == pytest.approx(10.0, rel=1e-10)
