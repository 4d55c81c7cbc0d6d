"""The LSTM cell (PyTorch's equations, state [h, c]): against a real torch.nn.LSTM, finite
differences, the exact deviation and the generic algorithms of the protocol."""
from __future__ import annotations

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells import LSTM, cell_type
from rnnperturb.cells.random import random_cell


def _lstm_from_torch(mod):
    """Our LSTM from a one-layer torch.nn.LSTM, block by block (independent of io/pytorch)."""
    sd = {k: v.detach().double().numpy() for k, v in mod.state_dict().items()}
    n = mod.hidden_size
    kw = {}
    for j, g in enumerate("ifgo"):
        rows = slice(j * n, (j + 1) * n)
        kw["W" + g] = sd["weight_hh_l0"][rows]
        kw["U" + g] = sd["weight_ih_l0"][rows]
        kw["b" + g] = sd["bias_ih_l0"][rows] + sd["bias_hh_l0"][rows]
    return LSTM(**kw)


def test_lstm_matches_torch_h_and_c_in_float64():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    mod = torch.nn.LSTM(3, 6, dtype=torch.float64)
    with torch.no_grad():                       # a saturating regime too
        mod.weight_hh_l0.mul_(3.0)
    cell = _lstm_from_torch(mod)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 4, 3)) * 2
    s0 = rng.uniform(-1, 1, (4, 12))
    with torch.no_grad():
        H, (hT, cT) = mod(torch.tensor(X), (torch.tensor(s0[:, :6])[None],
                                           torch.tensor(s0[:, 6:])[None]))
    S = cell.run(X, s0, state="full")
    assert S.shape == (12, 4, 12) and cell.run(X, s0).shape == (12, 4, 6)
    np.testing.assert_allclose(cell.run(X, s0), H.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(S[-1, :, :6], hT[0].numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(S[-1, :, 6:], cT[0].numpy(), rtol=0, atol=1e-10)
    assert np.abs(cell.run(X, s0) - H.numpy()).max() < 1e-14


def test_lstm_is_registered_and_its_derivatives_match_finite_differences():
    assert cell_type("lstm") is LSTM
    n, m = 5, 2
    cell = random_cell("lstm", n, m, spectral_norm=1.2, seed=0)
    assert cell.state_size == 2 * n and cell.n_params == 4 * n * (n + m) + 4 * n
    rng = np.random.default_rng(2)
    s, x = np.concatenate([rng.uniform(-1, 1, (3, n)), rng.normal(size=(3, n))], 1), \
        rng.normal(size=(3, m))
    eps = 1e-6
    Jfd = np.stack([(cell.step(s + eps * e, x) - cell.step(s - eps * e, x)) / (2 * eps)
                    for e in np.eye(2 * n)], -1)
    np.testing.assert_allclose(cell.jacobian(s, x), Jfd, atol=1e-9)
    Gfd = np.stack([(cell.step(s, x + eps * e) - cell.step(s, x - eps * e)) / (2 * eps)
                    for e in np.eye(m)], -1)
    np.testing.assert_allclose(cell.input_jacobian(s, x), Gfd, atol=1e-9)
    hn, J, forcing = cell.linearise(s, x)
    np.testing.assert_allclose(J, Jfd, atol=1e-9)
    ds = rng.normal(size=s.shape)
    for k in cell.recurrent_names:
        dW = rng.normal(size=(n, n))
        fd = (cell.replace(**{k: getattr(cell, k) + eps * dW}).step(s, x)
              - cell.replace(**{k: getattr(cell, k) - eps * dW}).step(s, x)) / (2 * eps)
        diag, Bt, a = forcing[k]
        assert not diag and Bt.shape == (3, 2 * n, n)
        np.testing.assert_allclose(np.einsum("bij,bj->bi", Bt, a @ dW.T), fd, atol=1e-9)
        np.testing.assert_allclose(cell.directional(s, x, {k: dW}), fd, atol=1e-9)
        # the JVP along a state tangent and a matrix direction together
        fd2 = (cell.replace(**{k: getattr(cell, k) + eps * dW}).step(s + eps * ds, x)
               - cell.replace(**{k: getattr(cell, k) - eps * dW}).step(s - eps * ds, x)) / (2 * eps)
        np.testing.assert_allclose(cell.jvp(s, x, ds, {k: dW})[1], fd2, atol=1e-8)


def test_lstm_first_order_follows_the_square_law_for_h_and_the_full_state():
    cell = random_cell("lstm", 8, 2, spectral_norm=1.5, seed=3)
    X = np.random.default_rng(4).normal(size=(20, 3, 2))
    small = rp.truncate_svd(cell, rank=3)
    assert all(np.linalg.matrix_rank(W) == 3 for W in small.recurrent.values())
    E = rp.deviation(cell, small, X)
    np.testing.assert_allclose(E, small.run(X) - cell.run(X), atol=0)
    Ef = rp.deviation(cell, small, X, state="full")
    np.testing.assert_array_equal(Ef[..., :8], E)
    for state in ("h", "full"):
        errs = []
        for s in (1e-2, 1e-3):
            other = cell.replace(**{k: cell.recurrent[k] + s * (small.recurrent[k]
                                                                - cell.recurrent[k])
                                    for k in cell.recurrent_names})
            L = rp.first_order(cell, other, X, state=state)
            D = rp.deviation(cell, other, X, state=state)
            errs.append(np.abs(L - D).max() / np.abs(D).max())
        assert errs[1] < errs[0] / 5      # relative error O(s): a factor ~10 per decade
    with pytest.raises(ValueError, match="state: expected 'h'.*found 'c'"):
        rp.deviation(cell, small, X, state="c")


def test_lstm_rank_sweep_equals_the_deviation_at_every_rank():
    cell = random_cell("lstm", 6, 2, spectral_norm=1.2, seed=5)
    X = np.random.default_rng(6).normal(size=(10, 3, 2))
    sw = rp.rank_sweep(cell, X, ranks=[0, 2, 4, 6])
    swf = rp.rank_sweep(cell, X, ranks=[2], state="full")
    for i, r in enumerate([0, 2, 4, 6]):
        other = rp.truncate_svd(cell, rank=r)
        np.testing.assert_allclose(sw.exact[i], np.linalg.norm(rp.deviation(cell, other, X),
                                                               axis=-1), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(sw.first_order[i],
                                   np.linalg.norm(rp.first_order(cell, other, X), axis=-1),
                                   rtol=1e-10, atol=1e-14)
    other = rp.truncate_svd(cell, rank=2)
    np.testing.assert_allclose(swf.exact[0], np.linalg.norm(
        rp.deviation(cell, other, X, state="full"), axis=-1), rtol=1e-10, atol=1e-14)
    sd = rp.rank_sweep(cell, X, ranks={"Wg": [1, 6]})
    np.testing.assert_allclose(sd.exact[0], np.linalg.norm(rp.deviation(
        cell, rp.truncate_svd(cell, rank={"Wg": 1}), X), axis=-1), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("frozen", [True, False])
def test_lstm_noise_response_against_monte_carlo(frozen):
    cell = random_cell("lstm", 5, 2, seed=7)
    X = np.random.default_rng(8).normal(size=(8, 2))
    for state in ("h", "full"):
        S = rp.noise_response(cell, X, std=1e-4, frozen=frozen, state=state)
        mc = rp.monte_carlo_noise(cell, X, std=1e-4, frozen=frozen, draws=400, seed=0,
                                  state=state)
        ok = S > 0
        assert ok.sum() >= 6
        assert np.all(np.abs(mc.mean - S)[ok] <= np.maximum(0.05 * S, 3.3 * mc.sem)[ok])
    full = rp.noise_response(cell, X, std=1e-4, frozen=frozen, state="full")
    assert np.all(full >= rp.noise_response(cell, X, std=1e-4, frozen=frozen))
    if frozen:   # the adjoint sums at chosen steps equal the forward recursion
        np.testing.assert_allclose(rp.noise_response(cell, X, std=1e-4, times=[3, 8]),
                                   rp.noise_response(cell, X, std=1e-4)[[2, 7]], rtol=1e-10)


def test_lstm_data_aware_truncation_uses_the_regressors_of_its_matrices():
    cell = random_cell("lstm", 6, 2, seed=9)
    X = np.random.default_rng(10).normal(size=(12, 4, 2))
    M = rp.forcing_moments(cell, X)
    H = cell.run(X, state="full")
    Hprev = np.concatenate([np.zeros((1, 4, 12)), H[:-1]])[..., :6]    # h_{t-1}: the regressor
    np.testing.assert_allclose(M["Wf"], np.einsum("tbi,tbj->ij", Hprev, Hprev) / 48,
                               rtol=1e-12)
    for weighting in ("forcing", "propagation"):
        small = rp.truncate_svd(cell, rank=2, data=X, weighting=weighting)
        assert all(np.linalg.matrix_rank(W) == 2 for W in small.recurrent.values())
        assert np.isfinite(rp.deviation(cell, small, X)).all()


def test_lstm_state_bounds_hold_and_interval_step_encloses_the_step():
    from rnnperturb.verified.interval import IV, interval_params, interval_step, iv_lower, \
        iv_upper, to_iv
    rng = np.random.default_rng(11)
    cell = random_cell("lstm", 4, 2, spectral_norm=6.0, bias_scale=3.0, seed=12)
    s0 = np.concatenate([rng.uniform(-1, 1, (5, 4)), rng.normal(size=(5, 4)) * 3], 1)
    X = rng.normal(size=(30, 5, 2)) * 3
    S = cell.run(X, s0, state="full")
    lo, hi = cell.state_bounds(s0, steps=30)
    assert np.all((S >= lo) & (S <= hi))
    lo_inf, hi_inf = cell.state_bounds(s0)
    assert np.all(hi_inf[:, 4:] == np.inf) and np.all(hi_inf[:, :4] == 1.0)
    assert np.all(np.isinf(cell.trivial_cap(s0, 5)[:, 4:]))
    P = interval_params(cell)
    out = interval_step(cell, P, to_iv(s0), to_iv(X[0]))
    step = cell.step(s0, X[0])
    assert out.shape == step.shape
    assert np.all(iv_lower(out) <= step) and np.all(step <= iv_upper(out))
    assert IV.split(to_iv(s0), 2)[1].shape == (5, 4)


def test_lstm_overwrite_gate_and_bad_input():
    cell = random_cell("lstm", 3, 2, seed=13)
    _, aux, regs = cell.nominal(np.zeros((2, 6)), np.ones((2, 2)))
    assert set(regs) == set(cell.recurrent_names) and regs["Wi"].shape == (2, 3)
    np.testing.assert_allclose(cell.overwrite_gate(aux), 1 - aux["f"])
    with pytest.raises(ValueError, match=r"h0: expected shape \(6\)"):
        cell.run(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"Wf: expected shape \(3, 3\)"):
        cell.replace(Wf=np.zeros((3, 4)))


def test_lstm_hoisted_input_terms_equal_the_step():
    """The training simulator's form (all input terms precomputed, biases folded) runs the
    same forward: equal to rounding."""
    from rnnperturb.cells.namespace import FLOAT
    cell = random_cell("lstm", 5, 3, seed=14)
    X = np.random.default_rng(15).normal(size=(6, 2, 3))
    P = cell._matrices()
    ns_t, P_t = LSTM.hoisted(FLOAT, P, X)
    s = np.zeros((2, 10))
    for t in range(6):
        s_h = LSTM.forward(ns_t, P_t, s, t, lambda k, a: a @ P[k].T)[0]
        s = cell.step(s, X[t])
        np.testing.assert_allclose(s_h, s, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lstm_cell_state_bound_holds_when_every_gate_saturates(dtype):
    """f = i = g = 1 in floating point: c grows by exactly 1 per step, the worst case."""
    n = 3
    big = np.full(n, 60.0)
    cell = LSTM(**{k: np.zeros((n, n)) for k in ("Wi", "Wf", "Wg", "Wo")},
                **{k: np.zeros((n, 1)) for k in ("Ui", "Uf", "Ug", "Uo")},
                bi=big, bf=big, bg=big, bo=big, dtype=dtype)
    s0 = np.concatenate([np.zeros(n), np.array([1e6, -3.0, 0.5])]).astype(dtype)
    T = 500
    S = cell.run(np.zeros((T, 1), dtype), s0, state="full")
    lo, hi = cell.state_bounds(s0[None], steps=T)
    assert np.all((S >= lo) & (S <= hi))
    assert S[-1, 2 * n - 1] == 0.5 + T            # the bound is reached (to rounding)
