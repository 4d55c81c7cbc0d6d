"""Stacked networks of any cells: against the manual composition of their layers, finite
differences, the exact deviation, and the generic algorithms of the protocol."""
from __future__ import annotations

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells import Stacked, random_stacked
from rnnperturb.cells.random import random_cell


def _manual(layers, X, s0=None):
    """Run layer by layer: layer l's inputs are layer l-1's outputs (h) at every step."""
    inp, pieces, start = X, [], 0
    for layer in layers:
        N = layer.state_size
        h0 = None if s0 is None else s0[..., start:start + N]
        start += N
        S = layer.run(inp, h0, state="full")
        pieces.append(S)
        inp = layer.hidden_of(S)
    return inp, np.concatenate(pieces, axis=-1)


def test_two_elman_layers_equal_the_manual_composition():
    a = random_cell("elman", 6, 3, spectral_norm=1.1, seed=0)
    b = random_cell("elman", 6, 6, spectral_norm=0.8, seed=1)
    st = Stacked(layers=(a, b))
    assert st.recurrent_names == ("l0.W", "l1.W") and st.state_size == 12
    assert st.input_params == ("l0.U", "l0.b", "l1.U", "l1.b")
    X = np.random.default_rng(2).normal(size=(15, 4, 3))
    s0 = np.random.default_rng(3).uniform(-1, 1, (4, 12))
    top, full = _manual((a, b), X, s0)
    np.testing.assert_array_equal(st.run(X, s0), top)
    np.testing.assert_array_equal(st.run(X, s0, state="full"), full)
    np.testing.assert_array_equal(st.run(X[:, 0], s0[0]), _manual((a, b), X[:, 0], s0[0])[0])


def test_mixed_stack_equals_the_manual_composition_and_its_readout():
    st = random_stacked(["lstm", "gru", "mgru"], 5, 2, seed=4, n_out=3)
    X = np.random.default_rng(5).normal(size=(9, 3, 2))
    top, full = _manual(st.layers, X)
    np.testing.assert_array_equal(st.run(X), top)
    np.testing.assert_array_equal(st.run(X, state="full"), full)
    np.testing.assert_allclose(st.readout(st.run(X)), top @ st.V.T + st.c, atol=1e-15)
    assert st.state_size == 10 + 5 + 5 and len(st.recurrent_names) == 4 + 3 + 2
    assert np.array_equal(st.layer_state(st.run(X, state="full"), 1), full[..., 10:15])


def test_a_stack_of_one_layer_is_the_layer():
    for kind in ("elman", "gru", "lstm"):
        cell = random_cell(kind, 6, 2, spectral_norm=1.3, seed=6)
        st = Stacked(layers=(cell,))
        X = np.random.default_rng(7).normal(size=(12, 3, 2))
        np.testing.assert_array_equal(st.run(X), cell.run(X))
        other = rp.truncate_svd(st, rank=2)
        assert isinstance(other, Stacked)
        small = rp.truncate_svd(cell, rank=2)
        np.testing.assert_array_equal(rp.deviation(st, other, X), rp.deviation(cell, small, X))
        np.testing.assert_array_equal(rp.first_order(st, other, X),
                                      rp.first_order(cell, small, X))
        np.testing.assert_array_equal(rp.rank_sweep(st, X, ranks=[1, 4]).exact,
                                      rp.rank_sweep(cell, X, ranks=[1, 4]).exact)
        s = cell.run(X, state="full")[3]
        np.testing.assert_array_equal(st.jacobian(s, X[4]), cell.jacobian(s, X[4]))


def test_stack_derivatives_match_finite_differences():
    st = random_stacked(["gru", "lstm"], 4, 2, spectral_norm=1.2, seed=8)
    rng = np.random.default_rng(9)
    N = st.state_size
    s = st.run(rng.normal(size=(5, 3, 2)), state="full")[-1] + 0.1 * rng.normal(size=(3, N))
    x = rng.normal(size=(3, 2))
    eps = 1e-6
    Jfd = np.stack([(st.step(s + eps * e, x) - st.step(s - eps * e, x)) / (2 * eps)
                    for e in np.eye(N)], -1)
    np.testing.assert_allclose(st.jacobian(s, x), Jfd, atol=1e-9)
    Gfd = np.stack([(st.step(s, x + eps * e) - st.step(s, x - eps * e)) / (2 * eps)
                    for e in np.eye(2)], -1)
    np.testing.assert_allclose(st.input_jacobian(s, x), Gfd, atol=1e-9)
    _, J, forcing = st.linearise(s, x)
    np.testing.assert_allclose(J, Jfd, atol=1e-9)
    for k in st.recurrent_names:
        dW = rng.normal(size=(4, 4))
        fd = (st.replace(**{k: getattr(st, k) + eps * dW}).step(s, x)
              - st.replace(**{k: getattr(st, k) - eps * dW}).step(s, x)) / (2 * eps)
        np.testing.assert_allclose(st.directional(s, x, {k: dW}), fd, atol=1e-9)
        diag, Bt, a = forcing[k]
        assert not diag
        np.testing.assert_allclose(np.einsum("bij,bj->bi", Bt, a @ dW.T), fd, atol=1e-9)
    # a change of a lower layer moves the layers above within the same step
    lo = st.directional(s, x, {"l0.Wz": rng.normal(size=(4, 4))})
    assert np.abs(lo[:, 4:]).max() > 0


def test_stack_first_order_rank_sweep_and_named_truncation():
    st = random_stacked(["elman", "lstm"], 6, 2, spectral_norm=1.4, seed=10)
    X = np.random.default_rng(11).normal(size=(16, 3, 2))
    small = rp.truncate_svd(st, rank=3)
    assert all(np.linalg.matrix_rank(W) == 3 for W in small.recurrent.values())
    only = rp.truncate_svd(st, rank={"l1.Wg": 2})
    assert np.linalg.matrix_rank(only.recurrent["l1.Wg"]) == 2
    assert all(np.array_equal(only.recurrent[k], st.recurrent[k])
               for k in st.recurrent_names if k != "l1.Wg")
    for state in ("h", "full"):
        errs = []
        for s in (1e-2, 1e-3):
            other = st.replace(**{k: st.recurrent[k] + s * (small.recurrent[k] - st.recurrent[k])
                                  for k in st.recurrent_names})
            L = rp.first_order(st, other, X, state=state)
            D = rp.deviation(st, other, X, state=state)
            errs.append(np.abs(L - D).max() / np.abs(D).max())
        assert errs[1] < errs[0] / 5
    sw = rp.rank_sweep(st, X, ranks=[0, 3, 6])
    for i, r in enumerate([0, 3, 6]):
        o = rp.truncate_svd(st, rank=r)
        np.testing.assert_allclose(sw.exact[i], np.linalg.norm(rp.deviation(st, o, X), axis=-1),
                                   rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(sw.first_order[i], np.linalg.norm(
            rp.first_order(st, o, X), axis=-1), rtol=1e-10, atol=1e-14)
    sd = rp.rank_sweep(st, X, ranks={"l0.W": [2], "l1.Wo": [1]})
    np.testing.assert_allclose(sd.exact[0], np.linalg.norm(rp.deviation(
        st, rp.truncate_svd(st, rank={"l0.W": 2, "l1.Wo": 1}), X), axis=-1), rtol=1e-10,
        atol=1e-14)
    for weighting in ("forcing", "propagation"):
        w = rp.truncate_svd(st, rank=3, data=X, weighting=weighting)
        assert np.isfinite(rp.deviation(st, w, X)).all()


def test_stack_noise_response_against_monte_carlo():
    st = random_stacked(["gru", "elman"], 4, 2, seed=12)
    X = np.random.default_rng(13).normal(size=(8, 2))
    for frozen in (True, False):
        S = rp.noise_response(st, X, std=1e-4, frozen=frozen)
        mc = rp.monte_carlo_noise(st, X, std=1e-4, frozen=frozen, draws=400, seed=0)
        ok = S > 0
        assert ok.sum() >= 6
        assert np.all(np.abs(mc.mean - S)[ok] <= np.maximum(0.05 * S, 3.3 * mc.sem)[ok])
    np.testing.assert_allclose(rp.noise_response(st, X, std=1e-4, times=[2, 8]),
                               rp.noise_response(st, X, std=1e-4)[[1, 7]], rtol=1e-10)


def test_stack_state_bounds_and_the_set_bound_of_one_layer():
    from rnnperturb.perturb import sets
    st = random_stacked(["elman", "gru"], 4, 2, spectral_norm=3.0, seed=14)
    s0 = np.concatenate([np.zeros((2, 4)), np.full((2, 4), 1.5)], 1)
    X = np.random.default_rng(15).normal(size=(20, 2, 2)) * 3
    lo, hi = st.state_bounds(s0)
    S = st.run(X, s0, state="full")
    assert np.all((S >= lo) & (S <= hi)) and np.all(hi[:, 4:] == 1.5)
    np.testing.assert_array_equal(st.trivial_cap(s0, 2)[:, :4], 2.0)
    one = Stacked(layers=(random_cell("elman", 5, 2, seed=16),))
    X = X[:6, :, :]
    np.testing.assert_array_equal(rp.set_bound(one, sets.drift(one, rel=1e-3), X),
                                  rp.set_bound(one.layers[0], sets.drift(one.layers[0], rel=1e-3),
                                               X))


def test_stack_bad_input_is_refused_by_name():
    a = random_cell("elman", 4, 2, seed=0)
    with pytest.raises(ValueError, match="layers: expected a non-empty sequence"):
        Stacked(layers=())
    with pytest.raises(ValueError, match=r"layers\[1\].m: expected 4 \(the output of layer 0\), "
                                         r"found 2"):
        Stacked(layers=(a, a))
    with pytest.raises(ValueError, match=r"layers\[1\].n: expected the hidden size"):
        Stacked(layers=(a, random_cell("elman", 5, 4, seed=1)))
    with pytest.raises(ValueError, match=r"layers\[0\].V: expected None"):
        Stacked(layers=(random_cell("elman", 4, 2, n_out=2, seed=2),))
    st = Stacked(layers=(a, random_cell("elman", 4, 4, seed=3)))
    with pytest.raises(ValueError, match=r"replace: expected parameter names.*found \['l2.W'\]"):
        st.replace(**{"l2.W": np.eye(4)})
    with pytest.raises(ValueError, match=r"rank: expected keys among"):
        rp.truncate_svd(st, rank={"W": 1})
    with pytest.raises(AttributeError):
        st.l0.W                     # noqa: B018  (the name is the string "l0.W")
    assert st.astype(np.float32).layers[1].dtype == np.float32


def test_memory_and_coherence_statistics_run_over_the_full_state():
    from rnnperturb.stats.coherence import propagator_decay
    from rnnperturb.stats.memory import finite_time_lyapunov
    X = np.random.default_rng(17).normal(size=(10, 3, 2))
    one = Stacked(layers=(random_cell("gru", 4, 2, seed=18),))
    np.testing.assert_array_equal(finite_time_lyapunov(one, X),
                                  finite_time_lyapunov(one.layers[0], X))
    for model in (random_cell("lstm", 4, 2, seed=19), random_stacked(["gru", "elman"], 4, 2,
                                                                      seed=20)):
        N = model.state_size
        small = rp.truncate_svd(model, rank=2)
        fc = rp.fixed_coherence(model, small, X)
        # the coherent energy is that of the first-order deviation of the full state
        np.testing.assert_allclose(fc.coherent, np.sum(rp.first_order(
            model, small, X, state="full") ** 2, axis=-1), rtol=1e-10, atol=1e-300)
        assert rp.predicted_coherence(model, X).shape == (10, 3)
        assert propagator_decay(model, X).shape == (3,)
        assert finite_time_lyapunov(model, X).shape == (10, 3, N)
        d = rp.delay_linearisation(model, X, [3, 4], np.ones(2))
        assert d.A.shape == (N, N) and 0 < d.gate_mean < 1


def test_mpmath_and_interval_references_run_the_full_state():
    from rnnperturb.verified.highprec import deviation_mp, first_order_mp, run_mp
    import mpmath
    from rnnperturb.verified.interval import interval_run, iv_lower, iv_upper
    X = np.random.default_rng(21).normal(size=(5, 2, 2))
    for model in (random_cell("lstm", 3, 2, seed=22), random_stacked(["gru", "lstm"], 3, 2,
                                                                      seed=23)):
        for state in ("h", "full"):
            S = model.run(X, state=state)
            exact = run_mp(model, X, state=state)
            np.testing.assert_allclose(exact, S, rtol=0, atol=1e-14)
            small = rp.truncate_svd(model, rank=1)
            np.testing.assert_allclose(deviation_mp(model, small, X, state=state),
                                       rp.deviation(model, small, X, state=state), atol=1e-14)
            np.testing.assert_allclose(first_order_mp(model, small, X, state=state),
                                       rp.first_order(model, small, X, state=state), atol=1e-14)
            H = interval_run(model, X, state=state)
            assert H.shape == S.shape
            with mpmath.workdps(50):           # the exact trajectory (to 1e-50) is enclosed
                ex = run_mp(model, X, state=state, as_float=False)
                assert all(e in box for e, box in zip(ex.ravel(), H.ravel()))
            assert np.all(iv_upper(H) - iv_lower(H) < 1e-12)


def test_stacks_and_lstms_are_saved_and_loaded(tmp_path):
    X = np.random.default_rng(24).normal(size=(6, 2, 2))
    for model in (random_cell("lstm", 4, 2, seed=25, n_out=3),
                  random_stacked(["lstm", "gru", "elman"], 4, 2, seed=26, n_out=3)):
        rp.save(tmp_path / "m.npz", model, task="demo")
        back, meta = rp.load_with_metadata(tmp_path / "m.npz")
        assert type(back) is type(model) and meta == {"task": "demo"}
        assert back.recurrent_names == model.recurrent_names
        np.testing.assert_array_equal(back.run(X), model.run(X))
        np.testing.assert_array_equal(back.V, model.V)
    np.savez(tmp_path / "bad.npz", cell=np.array("stacked"), **{"l0.W": np.eye(2)})
    with pytest.raises(ValueError, match=r"layers: expected a 1-d array of the layers' cell "
                                         r"names, found none"):
        rp.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", cell=np.array("stacked"), layers=np.array(["elman"]),
             **{"l0.W": np.eye(2), "l0.U": np.ones((2, 1)), "l0.b": np.zeros(2),
                "l3.W": np.eye(2)})
    with pytest.raises(ValueError, match=r"expected names 'l<layer>.<name>' with layer < 1, "
                                         r"found 'l3.W'"):
        rp.load(tmp_path / "bad2.npz")


def test_stacks_of_other_layers_are_not_compared():
    a = random_stacked(["elman", "gru"], 3, 2, seed=27)
    b = random_stacked(["gru", "elman"], 3, 2, seed=27)
    X = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"other: expected the parameters \('l0.W', 'l1.Wr'"):
        rp.deviation(a, b, X)


# ----------------------------------------------------------------- property sweeps (slow)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st_  # noqa: E402

_KIND = st_.sampled_from(["elman", "mgru", "gru", "lstm"])


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st_.lists(_KIND, min_size=1, max_size=3), n=st_.integers(2, 6),
       m=st_.integers(1, 3), norm=st_.sampled_from([0.3, 0.9, 1.5, 4.0]),
       seed=st_.integers(0, 10_000))
def test_property_stacks_sweep_first_order_and_derivatives(kinds, n, m, norm, seed):
    """Random stacks of every cell (contractive to saturated): the rank sweep equals the
    per-rank deviation, the first order's error shrinks like s^2, the JVP matches finite
    differences."""
    model = random_stacked(kinds, n, m, spectral_norm=norm, seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(8, 2, m))
    r = int(rng.integers(0, n))
    sw = rp.rank_sweep(model, X, ranks=[r])
    small = rp.truncate_svd(model, rank=r)
    D = rp.deviation(model, small, X)
    np.testing.assert_allclose(sw.exact[0], np.linalg.norm(D, axis=-1), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(sw.first_order[0], np.linalg.norm(
        rp.first_order(model, small, X), axis=-1), rtol=1e-9, atol=1e-13)
    dW = {k: small.recurrent[k] - model.recurrent[k] for k in model.recurrent_names}
    errs = []
    for s in (1e-3, 1e-4):
        other = model.replace(**{k: model.recurrent[k] + s * v for k, v in dW.items()})
        errs.append(np.abs(rp.first_order(model, other, X, state="full")
                           - rp.deviation(model, other, X, state="full")).max())
    if errs[0] > 1e-12:                   # above rounding: the s^2 law (factor ~100)
        assert errs[1] < errs[0] / 20
    s = model.run(X, state="full")[-1]
    ds = rng.normal(size=s.shape)
    k = model.recurrent_names[int(rng.integers(len(model.recurrent_names)))]
    d = rng.normal(size=(n, n))
    eps = 1e-6
    fd = (model.replace(**{k: model.recurrent[k] + eps * d}).step(s + eps * ds, X[0])
          - model.replace(**{k: model.recurrent[k] - eps * d}).step(s - eps * ds, X[0])) / (2 * eps)
    np.testing.assert_allclose(model.jvp(s, X[0], ds, {k: d})[1], fd, atol=1e-7 * (1 + norm))
