"""High-precision propagation against float64 where float64 is fine, against
exact products where it under/overflows, and a case where float64 is
visibly wrong: the detector must warn there and stay silent where it is right."""
import warnings

import mpmath
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells import CELL_TYPES
from rnnperturb.cells.random import random_cell
from rnnperturb.verified import highprec as hp

from conftest import make_pair


def test_run_and_deviation_agree_with_float64_when_well_conditioned(kind):
    cell, other = make_pair(kind, n=6, m=2, spectral_norm=0.9, rel=1e-2, seed=1)
    X = np.random.default_rng(2).standard_normal((25, 3, 2))
    np.testing.assert_allclose(hp.run_mp(cell, X, dps=30), cell.run(X), rtol=0, atol=1e-14)
    E = rp.deviation(cell, other, X)
    Em = hp.deviation_mp(cell, other, X, dps=30)
    assert Em.shape == E.shape == (25, 3, 6)
    np.testing.assert_allclose(Em, E, rtol=0, atol=1e-14)
    np.testing.assert_allclose(hp.first_order_mp(cell, other, X, dps=30),
                               rp.first_order(cell, other, X), rtol=0, atol=1e-14)
    # single sequence and h0
    h0 = np.full(6, 0.3)
    np.testing.assert_allclose(hp.run_mp(cell, X[:, 0], h0, dps=20), cell.run(X[:, 0], h0),
                               rtol=0, atol=1e-14)


def test_precision_is_converged(kind):
    cell, other = make_pair(kind, n=5, m=2, spectral_norm=1.5, rel=1e-3, seed=3)
    X = np.random.default_rng(4).standard_normal((20, 2))
    a = hp.deviation_mp(cell, other, X, dps=40, as_float=False)
    b = hp.deviation_mp(cell, other, X, dps=70, as_float=False)
    assert a.dtype == object
    with mpmath.workdps(70):
        assert max(abs(x - y) for x, y in zip(a.ravel(), b.ravel())) < mpmath.mpf(10) ** -35


def test_propagator_matches_float64_product(kind):
    cell = random_cell(kind, 4, 2, spectral_norm=1.3, seed=5)
    X = np.random.default_rng(6).standard_normal((12, 2))
    H = cell.run(X)
    Hprev = np.vstack([np.zeros((1, 4)), H[:-1]])
    Phi = np.eye(4)
    for t in range(3, 12):
        Phi = cell.jacobian(Hprev[t], X[t]) @ Phi
    P = hp.propagator_mp(cell, X, start=3, stop=12, dps=30)
    np.testing.assert_allclose(np.array(P.tolist(), dtype=float), Phi, rtol=1e-13, atol=1e-15)
    nrm = hp.propagator_norm_mp(cell, X, start=3, stop=12, dps=30)
    assert float(nrm) == pytest.approx(np.linalg.norm(Phi, 2), rel=1e-12)
    assert float(hp.propagator_norm_mp(cell, X, start=7, stop=7)) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_mp_layer_runs_every_registered_cell(kind):
    """Step, tangent and Jacobian in mpmath come from the cell's own forward
    and tangent: any registered cell agrees with its float64 protocol."""
    cls = CELL_TYPES[kind]
    rng = np.random.default_rng(1)
    cell = cls(**{k: 0.8 * rng.standard_normal(s) for k, s in cls.param_shapes(4, 2).items()})
    dW = {k: 1e-2 * rng.standard_normal((4, 4)) for k in cls.recurrent_names}
    other = cell.replace(**{k: cell.recurrent[k] + dW[k] for k in dW})
    X = rng.standard_normal((8, 2, 2))
    np.testing.assert_allclose(hp.run_mp(cell, X, dps=30), cell.run(X), rtol=0, atol=1e-14)
    N = cell.state_size                     # the full state (the LSTM's [h, c])
    h, ell, L = np.zeros((2, N)), np.zeros((2, N)), []
    for t in range(8):
        h, ell = cell.jvp(h, X[t], ell, dW)
        L.append(ell)
    np.testing.assert_allclose(hp.first_order_mp(cell, other, X, dps=30, state="full"),
                               np.array(L), rtol=0, atol=1e-15)
    H = cell.run(X[:, 1], state="full")
    P = hp.propagator_mp(cell, X, start=4, stop=5, batch=1, dps=30)
    np.testing.assert_allclose(np.array(P.tolist(), dtype=float), cell.jacobian(H[3], X[4, 1]),
                               rtol=0, atol=1e-15)


def _linear_diag_cell(lams):
    """An Elman cell that stays at h = 0 (no input, no bias): J_t = W = diag(lams)."""
    n = len(lams)
    return rp.ElmanRNN(W=np.diag(lams), U=np.zeros((n, 1)), b=np.zeros(n))


def test_thousands_of_jacobians_no_under_or_overflow():
    T = 2000
    X = np.zeros((T, 1))
    # 0.5^2000 = 2^-2000 underflows to 0 in float64; 1.5^2000 ~ 1e352 overflows
    for lam in (0.5, 1.5):
        cell = _linear_diag_cell([lam, lam / 2])
        P = np.eye(2)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            for _ in range(T):
                P = cell.W @ P
            f64 = np.linalg.norm(P, 2) if np.all(np.isfinite(P)) else np.inf
        assert f64 in (0.0, np.inf)                        # float64 is visibly wrong
        nrm = hp.propagator_norm_mp(cell, X, dps=30)
        with mpmath.workdps(30):
            exact = mpmath.mpf(lam) ** T
            assert abs(nrm / exact - 1) < mpmath.mpf(10) ** -25


def test_slow_mode_long_horizon():
    """|λ| → 1: λ = 1 - 2^-30 over 3000 steps; mp equals the exact power."""
    lam = 1 - 2.0 ** -30
    cell = _linear_diag_cell([lam, 0.25])
    T = 3000
    nrm = hp.propagator_norm_mp(cell, np.zeros((T, 1)), dps=40)
    with mpmath.workdps(40):
        exact = mpmath.mpf(lam) ** T
        assert abs(nrm / exact - 1) < mpmath.mpf(10) ** -35
    # float64 is fine here (relative error ~ T·eps), as the detector should say
    P = np.linalg.matrix_power(cell.W, T)
    assert np.linalg.norm(P, 2) == pytest.approx(float(exact), rel=1e-11)


# ------------------------------------------------- float64 visibly wrong + detector
def _chaotic_case():
    """Elman, n = 16, ‖W‖₂ = 6 (spectral radius ≈ 3.7), T = 100, ‖ΔW‖₂ = 1e-15·‖W‖₂."""
    cell = random_cell("elman", 16, 3, spectral_norm=6.0, seed=3)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 3))
    dW = rng.standard_normal((16, 16))
    dW *= 1e-15 * np.linalg.norm(cell.W, 2) / np.linalg.norm(dW, 2)
    return cell, cell.replace(W=cell.W + dW), X


def test_float64_visibly_wrong_and_detected():
    cell, other, X = _chaotic_case()
    E64 = rp.deviation(cell, other, X)
    Emp = hp.deviation_mp(cell, other, X, dps=50)
    Emp2 = hp.deviation_mp(cell, other, X, dps=80)
    final = np.linalg.norm(Emp[-1])
    # mpmath is converged: 50 and 80 digits agree to float64 rounding of the result
    assert np.linalg.norm(Emp[-1] - Emp2[-1]) <= 1e-15 * final
    # float64 is off by more than the size of the answer itself
    err = np.linalg.norm(E64[-1] - Emp[-1])
    assert err > final
    with pytest.warns(RuntimeWarning, match="deviation"):
        chk = hp.check_float64(cell, other, X)
    assert not chk.reliable and chk.first_bad_step is not None
    # the Monte Carlo arithmetic estimate is within a factor 10 of the true error
    true = np.linalg.norm(E64 - Emp, axis=-1)
    late = slice(50, 100)
    ratio = chk.error[late] / true[late]
    assert np.all(ratio > 0.1) and np.all(ratio < 10)


def test_detector_silent_when_float64_is_right(kind):
    cell, other = make_pair(kind, n=16, m=3, spectral_norm=0.9, rel=1e-3, seed=7)
    X = np.random.default_rng(8).standard_normal((100, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chk = hp.check_float64(cell, other, X, rtol=1e-6)
        chk_traj = hp.check_float64(cell, None, X, rtol=1e-6)
    assert chk.reliable and chk.first_bad_step is None
    assert chk_traj.reliable and chk_traj.quantity == "trajectory"
    # and the claim holds: float64 agrees with mpmath to the tolerance
    Emp = hp.deviation_mp(cell, other, X, dps=30)
    E64 = rp.deviation(cell, other, X)
    assert np.all(np.linalg.norm(E64 - Emp, axis=-1) <= 1e-6 * np.linalg.norm(Emp, axis=-1))
    assert np.all(chk.error <= 1e-6 * chk.scale)


def test_detector_identical_history_is_exact():
    """With h0 = 0 the first deviation is exactly 0 in float64 and in truth."""
    cell, other = make_pair("elman", n=6, rel=1e-15, seed=2)
    X = np.random.default_rng(0).standard_normal((3, 3))
    chk = hp.check_float64(cell, other, X, warn=False)
    assert chk.error[0] == 0 and chk.scale[0] == 0


def test_errors():
    cell, other = make_pair("elman", n=4, seed=0)
    X = np.zeros((5, 3))
    with pytest.raises(ValueError, match="dps"):
        hp.run_mp(cell, X, dps=5)
    with pytest.raises(ValueError, match="other"):
        hp.deviation_mp(cell, random_cell("mgru", 4, 3, seed=0), X)
    with pytest.raises(ValueError, match="start"):
        hp.propagator_mp(cell, X, start=4, stop=2)
    with pytest.raises(ValueError, match="batch"):
        hp.propagator_mp(cell, X, batch=1)
    with pytest.raises(ValueError, match="rtol"):
        hp.check_float64(cell, other, X, rtol=0)
    with pytest.raises(ValueError, match="X"):
        hp.run_mp(cell, np.zeros((5, 2)))
