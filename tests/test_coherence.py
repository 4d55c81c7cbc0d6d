"""Coherence metrics and scaling laws (rnnperturb.stats.coherence)."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.stats.coherence import (coherence_ratio, coherence_time, fixed_coherence,
                                  normalised_gram, predicted_coherence, propagator_decay,
                                  scalar_coherence, scalar_response, scalar_saturation,
                                  trajectory_coherence)
from rnnperturb.cells.random import random_cell
from rnnperturb.stats.noise import noise_response


def _inputs(T, B, m, seed):
    return np.random.default_rng(seed).standard_normal((T, B, m))


def test_coherence_ratio_is_frozen_over_fresh_and_bounded(kind):
    cell = random_cell(kind, 8, 3, spectral_norm=1.0, seed=3)
    X = _inputs(25, 3, 3, 1)
    C = coherence_ratio(cell, X, std=0.3)
    fz = noise_response(cell, X, std=0.3)
    fr = noise_response(cell, X, std=0.3, frozen=False)
    assert np.all(np.isnan(C[0]))                       # h0 = 0: nothing forced at t = 1
    np.testing.assert_allclose(C[1:], fz[1:] / fr[1:], rtol=1e-12)
    # Cauchy-Schwarz: 0 <= C_t <= number of forcing steps (t - 1 with h0 = 0)
    t = np.arange(1, 26)[:, None]
    assert np.all(C[1:] >= 0) and np.all(C[1:] <= (t[1:] - 1) * (1 + 1e-12))


def _incoherent_bruteforce(cell, dW, X):
    """sum_k ||Phi(t,k) f_k||^2, each forcing propagated alone with cell.jvp."""
    T = X.shape[0]
    H = cell.run(X)
    hprev = np.vstack([np.zeros((1, cell.n)), H[:-1]])
    out = np.zeros(T)
    for k in range(T):
        _, ell = cell.jvp(hprev[k], X[k], None, dW)
        out[k] += ell @ ell
        for t in range(k + 1, T):
            _, ell = cell.jvp(hprev[t], X[t], ell, None)
            out[t] += ell @ ell
    return out


def test_fixed_coherence_against_first_order_and_bruteforce(kind):
    cell = random_cell(kind, 6, 2, spectral_norm=1.2, seed=5)
    rng = np.random.default_rng(2)
    dW = {k: 0.01 * rng.standard_normal((6, 6)) for k in cell.recurrent_names}
    other = cell.replace(**{k: cell.recurrent[k] + dW[k] for k in dW})
    X = _inputs(15, 1, 2, 4)[:, 0]
    fc = fixed_coherence(cell, other, X)
    L = rp.first_order(cell, other, X)
    np.testing.assert_allclose(fc.coherent, np.sum(L ** 2, -1), rtol=1e-9, atol=1e-20)
    np.testing.assert_allclose(fc.incoherent, _incoherent_bruteforce(cell, dW, X), rtol=1e-9)
    fc2 = fixed_coherence(cell, dW, X)                  # dict form
    np.testing.assert_allclose(fc2.ratio, fc.ratio, rtol=1e-9)


def _linear_regime_cell(lam, n=5, m=2, seed=0):
    """Elman cell with W = lam I and tiny inputs: D_t = 1 - O(1e-9), so
    Phi(t,k) D_k = lam^{t-k} I up to 1e-8 relative."""
    rng = np.random.default_rng(seed)
    return rp.ElmanRNN(W=lam * np.eye(n), U=1e-6 * rng.standard_normal((n, m)),
                       b=np.zeros(n))


@pytest.mark.parametrize("lam", [0.5, 0.9, 1.0])
@pytest.mark.parametrize("rep", [0.0, 0.8])
def test_trajectory_coherence_exact_for_isotropic_propagator(lam, rep):
    cell = _linear_regime_cell(lam)
    task = rp.tasks.kback(K=2, k=1, T=40, repeat=rep, batch=2, seed=3)
    X = task.X
    H = cell.run(X)
    C = coherence_ratio(cell, X)
    mem = np.inf if lam == 1.0 else -1.0 / np.log(lam)
    Ct = trajectory_coherence(H, memory=mem)
    np.testing.assert_allclose(Ct[1:], C[1:], rtol=1e-5)
    # the scalar memory is recovered from the propagator
    np.testing.assert_allclose(propagator_decay(cell, X), lam, rtol=1e-6)
    np.testing.assert_allclose(predicted_coherence(cell, X)[1:], C[1:], rtol=1e-5)


def test_predicted_coherence_against_double_sum(kind):
    """Isotropic-propagator prediction: sum lam^{2t-k-l} K_kl / sum lam^{2(t-k)} K_kk with the
    forcing Gram K_kl = sum_m (a_k.a_l) tr(B_k^T B_l), built here from cell.jvp columns."""
    cell = random_cell(kind, 4, 2, spectral_norm=1.1, seed=6)
    X = _inputs(12, 1, 2, 3)[:, 0]
    lam = 0.8
    h = np.zeros((1, 4))
    vecs = []
    for t in range(12):
        hn, _, forc = cell.linearise(h, X[t][None])
        # B_k columns from the cell's own jvp: B e_i = d h_t / d(preact) along e_i
        per = {}
        for k, (_, _, a) in forc.items():
            cols = []
            for i in range(4):
                dW = np.zeros((4, 4))
                dW[i] = a[0] / (a[0] @ a[0]) if a[0] @ a[0] > 0 else 0.0   # dW a = e_i
                cols.append(cell.jvp(h[0], X[t], None, {k: dW})[1])
            per[k] = (a[0], np.array(cols).T if a[0] @ a[0] > 0 else np.zeros((4, 4)))
        vecs.append(per)
        h = hn
    K = np.array([[sum((vecs[k][m][0] @ vecs[l][m][0]) * np.trace(vecs[k][m][1].T @ vecs[l][m][1])
                       for m in cell.recurrent_names) for l in range(12)] for k in range(12)])
    ref = []
    for t in range(12):
        w = lam ** (t - np.arange(t + 1))
        Kt = K[:t + 1, :t + 1]
        den = np.sum(w ** 2 * np.diag(Kt))
        ref.append(w @ Kt @ w / den if den > 0 else np.nan)
    got = predicted_coherence(cell, X, lam=lam)
    np.testing.assert_allclose(got[1:], np.array(ref)[1:], rtol=1e-9)


def test_trajectory_coherence_limits():
    T, n = 30, 4
    const = np.ones((T, n))
    np.testing.assert_allclose(trajectory_coherence(const)[1:], np.arange(1, T), rtol=1e-12)
    assert coherence_time(const) == pytest.approx(T - 1)   # h0 = 0 is skipped
    # mutually orthogonal states: no coherence at all
    orth = np.zeros((T, 2 * T))
    orth[np.arange(T), np.arange(T)] = 1.0
    np.testing.assert_allclose(trajectory_coherence(orth)[1:], 1.0, rtol=1e-12)
    assert coherence_time(orth) == pytest.approx(1.0)
    # alternating signs: anti-correlated, C < 1
    alt = np.outer((-1.0) ** np.arange(T), np.ones(n))
    Ca = trajectory_coherence(alt)
    assert np.all(Ca[2::2] < 1)
    R = normalised_gram(alt)
    np.testing.assert_allclose(np.abs(R[1:, 1:]), 1.0)


def test_coherence_time_of_ar1_trajectory():
    """Stationary correlation r^|d| -> tau_c ~ (1+r)/(1-r) for T >> tau_c."""
    r, T, n = 0.6, 300, 4000        # relative sampling sd ~ sqrt(2/n) = 2 %
    rng = np.random.default_rng(0)
    a = np.empty((T, n))
    a[0] = rng.standard_normal(n)
    for t in range(1, T):
        a[t] = r * a[t - 1] + np.sqrt(1 - r * r) * rng.standard_normal(n)
    tau = coherence_time(a[:, None, :])[0]
    exact = (1 + r) / (1 - r) - 2 * r * (1 - r ** T) / (T * (1 - r) ** 2)
    assert tau == pytest.approx(exact, rel=0.08)


def _double_sum(lam, t, r):
    u = np.arange(t)
    return np.sum(lam ** (u[:, None] + u[None, :]) * r ** np.abs(u[:, None] - u[None, :]))


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.9, 0.99, 1.0, 1.05])
@pytest.mark.parametrize("r", [0.0, 0.5, 0.9, 1.0])
def test_scalar_closed_form_against_double_sum(lam, r):
    t = np.arange(0, 40)
    got = scalar_response(lam, t, eps=0.7, r=r)
    ref = 0.49 * np.array([_double_sum(lam, int(k), r) if k else 0.0 for k in t])
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-300)


def test_scalar_closed_form_special_cases():
    t = np.arange(1, 50)
    np.testing.assert_allclose(scalar_response(1.0, t, r=1.0), t ** 2.0)       # coherent
    np.testing.assert_allclose(scalar_response(1.0, t, r=0.0), t * 1.0)        # incoherent
    np.testing.assert_allclose(scalar_response(0.9, t, r=0.9), [_double_sum(0.9, k, 0.9) for k in t],
                               rtol=1e-10)                                     # lam^2 = q
    np.testing.assert_allclose(scalar_response(2.0, t[:20], r=0.5),            # q = 1, lam > 1
                               [_double_sum(2.0, k, 0.5) for k in t[:20]], rtol=1e-10)
    # saturation levels of contractive propagators
    for lam in (0.5, 0.9):
        assert scalar_saturation(lam, r=1.0) == pytest.approx(1 / (1 - lam) ** 2)
        assert scalar_saturation(lam, r=0.0) == pytest.approx(1 / (1 - lam ** 2))
        big = scalar_response(lam, np.array([2000]), r=0.7)[0]
        assert big == pytest.approx(scalar_saturation(lam, r=0.7), rel=1e-10)
        assert scalar_coherence(lam, np.array([2000]), r=0.7)[0] == pytest.approx(
            (1 + 0.7 * lam) / (1 - 0.7 * lam), rel=1e-10)
    assert scalar_saturation(1.0, r=0.0) == np.inf


def test_scaling_exponents_d_versus_sqrt_d():
    """RMS deviation through a non-decaying propagator: slope 1 (coherent) vs 1/2."""
    D = np.array([10, 20, 40, 80, 160])
    for r, slope in ((1.0, 1.0), (0.0, 0.5)):
        rms = np.sqrt(scalar_response(1.0, D, r=r))
        fit = np.polyfit(np.log(D), np.log(rms), 1)[0]
        assert fit == pytest.approx(slope, abs=1e-12)
    # a slowly decaying propagator follows the law for D << 1/(1-lam), then saturates
    rms = np.sqrt(scalar_response(0.999, D, r=1.0))
    fit = np.polyfit(np.log(D[:2]), np.log(rms[:2]), 1)[0]
    assert 0.97 < fit <= 1.0
    rms = np.sqrt(scalar_response(0.5, np.array([100, 200]), r=1.0))
    assert rms[1] / rms[0] == pytest.approx(1.0, abs=1e-12)


def test_scalar_model_against_simulation():
    """Monte Carlo of l_t = lam l_{t-1} + eps f_t with AR(1) forcing of correlation r."""
    rng = np.random.default_rng(7)
    N, T, lam, r, eps = 20000, 60, 0.95, 0.8, 0.3
    f = rng.standard_normal(N)
    ell = np.zeros(N)
    out = np.empty((T, N))
    for t in range(T):
        if t:
            f = r * f + np.sqrt(1 - r * r) * rng.standard_normal(N)
        ell = lam * ell + eps * f
        out[t] = ell ** 2
    mean, sem = out.mean(1), out.std(1, ddof=1) / np.sqrt(N)
    pred = scalar_response(lam, np.arange(1, T + 1), eps=eps, r=r)
    assert np.all(np.abs(mean - pred) <= 3.5 * sem)


def test_scalar_law_predicts_net_coherence_in_linear_regime():
    """A net in its linear regime, W = lam I, driven by white input: h is AR(1)
    with lag correlation lam, so (ratio of batch means) C_t -> (1+lam^2)/(1-lam^2)."""
    lam, n, T = 0.8, 3, 200
    cell = _linear_regime_cell(lam, n=n, m=n, seed=1)
    X = np.random.default_rng(3).standard_normal((T, 400, n))
    fz = noise_response(cell, X, std=1.0).mean(1)
    fr = noise_response(cell, X, std=1.0, frozen=False).mean(1)
    pred = scalar_coherence(lam, np.array([T]), r=lam)[0]
    assert pred == pytest.approx((1 + lam ** 2) / (1 - lam ** 2))
    assert fz[-1] / fr[-1] == pytest.approx(pred, rel=0.05)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="r"):
        scalar_response(0.5, np.arange(3), r=1.5)
    with pytest.raises(ValueError, match="lam"):
        scalar_response(-0.5, np.arange(3))
    with pytest.raises(ValueError, match="t"):
        scalar_response(0.5, np.array([1.5]))
    with pytest.raises(ValueError, match="memory"):
        trajectory_coherence(np.ones((4, 2)), memory=-1.0)
    with pytest.raises(ValueError, match="H"):
        trajectory_coherence(np.ones(4))
    cell = random_cell("elman", 4, 2, seed=0)
    with pytest.raises(ValueError, match="dW"):
        fixed_coherence(cell, {"Wx": np.zeros((4, 4))}, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="other"):
        fixed_coherence(cell, random_cell("mgru", 4, 2, seed=0), np.zeros((3, 2)))
