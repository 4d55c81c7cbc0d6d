"""Linear memory capacity and Fisher memory curve (rnnperturb.stats.memory)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnperturb as rp
from rnnperturb.stats.memory import (delay_linearisation, fisher_memory_curve, input_jacobian,
                               linear_memory, memory_capacity, simulated_memory_curve)
from rnnperturb.cells.random import random_cell


def _random_system(N, rho, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N, N))
    A *= rho / np.max(np.abs(np.linalg.eigvals(A)))
    return A, rng.standard_normal(N)


def test_capacity_matches_least_squares_simulation():
    A, v = _random_system(5, 0.8, 1)
    lm = linear_memory(A, v, noise=0.05, kmax=30)
    sim = simulated_memory_curve(A, v, noise=0.05, kmax=30, steps=40000, seed=2)
    # in-sample least-squares r^2 is biased up by ~N/steps = 1.5e-4; sampling sd ~ 1/sqrt(steps)
    np.testing.assert_allclose(sim, lm.r2, atol=0.012)
    assert sim.sum() == pytest.approx(lm.r2.sum(), rel=0.03)
    assert lm.r2.sum() == pytest.approx(lm.capacity, rel=1e-3)   # curve nearly exhausted


def test_noiseless_capacity_is_rank():
    A, v = _random_system(4, 0.6, 3)
    assert memory_capacity(A, v) == pytest.approx(4.0, rel=1e-6)
    # not controllable: v an eigenvector of a symmetric A -> rank-one Gramian
    S = A + A.T
    S *= 0.5 / np.max(np.abs(np.linalg.eigvalsh(S)))
    w, Q = np.linalg.eigh(S)
    assert memory_capacity(S, Q[:, 0]) == pytest.approx(1.0, rel=1e-6)
    # finite horizon K < N: at most K independent inputs
    assert memory_capacity(A, v, horizon=2) == pytest.approx(2.0, rel=1e-6)


def _normal_matrix(N, seed, rho=0.9):
    """Real normal matrix: orthogonal Q times 2x2 rotation-scaling blocks."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    Bm = np.zeros((N, N))
    for i in range(0, N - 1, 2):
        r, th = rho * rng.uniform(0.2, 1), rng.uniform(0, np.pi)
        Bm[i:i + 2, i:i + 2] = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    if N % 2:
        Bm[-1, -1] = rho * rng.uniform(-1, 1)
    return Q @ Bm @ Q.T


@pytest.mark.parametrize("horizon", [None, 7, 50])
def test_fisher_total_is_one_for_normal_matrices(horizon):
    A = _normal_matrix(7, 4)
    assert np.allclose(A @ A.T, A.T @ A)
    v = np.random.default_rng(1).standard_normal(7)
    v /= np.linalg.norm(v)
    lm = linear_memory(A, v, noise=1.0, horizon=horizon, kmax=horizon or 400)
    assert lm.fisher_total == pytest.approx(1.0, rel=1e-9)
    assert lm.fisher.sum() == pytest.approx(1.0, rel=1e-6)
    # general normalisation: ||v||^2 / eps
    lm2 = linear_memory(A, 3 * v, noise=0.5, horizon=horizon, kmax=3)
    assert lm2.fisher_total == pytest.approx(9 / 0.5, rel=1e-9)


def test_delay_line_fisher_curve_closed_form():
    """Shift chain A e_i = e_{i+1}, v = e_1, eps = 1: C_n = diag(1..N) (horizon N),
    J(k) = 1/(k+1), J_tot = H_N > 1 (non-normal networks can beat normal ones)."""
    N = 6
    A = np.diag(np.ones(N - 1), -1)
    v = np.eye(N)[0]
    lm = linear_memory(A, v, noise=1.0, horizon=N)
    np.testing.assert_allclose(lm.fisher, 1.0 / np.arange(1, N + 1), rtol=1e-12)
    assert lm.fisher_total == pytest.approx(np.sum(1.0 / np.arange(1, N + 1)))
    assert lm.fisher_total > 1


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 6), seed=st.integers(0, 10 ** 6), rho=st.floats(0.05, 0.97),
       noise=st.floats(1e-3, 10.0), horizon=st.one_of(st.none(), st.integers(1, 30)))
def test_bounds_for_any_matrix(N, seed, rho, noise, horizon):
    A, v = _random_system(N, rho, seed)
    lm = linear_memory(A, v, noise=noise, horizon=horizon, kmax=min(horizon or 30, 30))
    vv = v @ v
    assert lm.fisher_total <= N * vv / noise * (1 + 1e-8)
    assert 0 <= lm.capacity <= N * (1 + 1e-8)
    assert lm.capacity <= lm.fisher_total * (1 + 1e-8)
    assert np.all(lm.r2 <= 1 + 1e-8) and np.all(lm.r2 >= -1e-12)
    assert np.all(lm.r2 <= lm.fisher * (1 + 1e-8) + 1e-15)


def test_fisher_curve_sums_to_total_and_scales_with_noise():
    A, v = _random_system(5, 0.7, 9)
    J1 = fisher_memory_curve(A, v, noise=1.0, kmax=300)
    lm = linear_memory(A, v, noise=1.0)
    assert J1.sum() == pytest.approx(lm.fisher_total, rel=1e-9)
    np.testing.assert_allclose(fisher_memory_curve(A, v, noise=0.1, kmax=300), 10 * J1,
                               rtol=1e-9)


def test_input_jacobian_matches_finite_differences(kind):
    cell = random_cell(kind, 6, 3, spectral_norm=1.2, seed=3)
    rng = np.random.default_rng(0)
    h = np.tanh(rng.standard_normal((2, 6)))
    x = rng.standard_normal((2, 3))
    J = input_jacobian(cell, h, x)
    eps = 1e-6
    for j in range(3):
        dx = np.zeros(3)
        dx[j] = eps
        fd = (cell.step(h, x + dx) - cell.step(h, x - dx)) / (2 * eps)
        np.testing.assert_allclose(J[:, :, j], fd, atol=1e-9)


def test_delay_linearisation_averages_cell_jacobians(kind):
    cell = random_cell(kind, 5, 4, seed=2)
    task = rp.tasks.memorization_all(K=2, L=3, D=6)
    X = task.X[:, :4]
    steps = np.arange(4, 10)                           # L+1 .. L+D
    dl = delay_linearisation(cell, X, steps, np.array([-1, 1, 0, 0]) / np.sqrt(2))
    H = cell.run(X)
    Hp = np.concatenate([np.zeros((1,) + H.shape[1:]), H[:-1]])
    Js = [cell.jacobian(Hp[t - 1], X[t - 1]) for t in steps]
    np.testing.assert_allclose(dl.A, np.mean(np.concatenate(Js), 0), atol=1e-13)
    if kind == "mgru":
        f = [rp.cells.sigmoid(Hp[t - 1] @ cell.Wf.T + X[t - 1] @ cell.Uf.T + cell.bf)
             for t in steps]
        assert dl.gate_mean == pytest.approx(np.mean(f))
    else:
        assert dl.gate_mean is None
    assert dl.jacobian_spread >= 0


def test_bad_input_raises():
    A, v = _random_system(3, 1.2, 0)
    with pytest.raises(ValueError, match="spectral radius"):
        linear_memory(A, v)
    with pytest.raises(ValueError, match="v"):
        linear_memory(A, np.ones(4))
    with pytest.raises(ValueError, match="A"):
        linear_memory(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="noise"):
        linear_memory(A, v, noise=-1.0, horizon=3)
    with pytest.raises(ValueError, match="kmax"):
        linear_memory(A, v, horizon=3, kmax=5)
    with pytest.raises(ValueError, match="noise"):
        fisher_memory_curve(A, v, noise=0.0, horizon=3)
    cell = random_cell("elman", 3, 2, seed=0)
    with pytest.raises(ValueError, match="steps"):
        delay_linearisation(cell, np.zeros((4, 2)), np.array([0, 9]), np.ones(2))
    with pytest.raises(ValueError, match="direction"):
        delay_linearisation(cell, np.zeros((4, 2)), np.array([1]), np.ones(3))
