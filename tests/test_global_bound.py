"""Tests of the global, input-independent deviation bound (issue 4, item 2).

The reference is the exact simulation (``rp.deviation``) on inputs inside the
ball ``||x_t|| <= r``: random points on the sphere and inside it, and inputs
pushed towards the worst case by a few steps of (finite-difference) gradient
ascent on ``||e_t||``.
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnperturb as rp
from rnnperturb.bounds.global_bound import global_bound, simple_contraction_bound
from rnnperturb.cells.random import random_cell


def perturbed(cell, rel, rng):
    new = {}
    for k, W in cell.recurrent.items():
        d = rng.standard_normal(W.shape)
        new[k] = W + d * (rel * max(np.linalg.norm(W, 2), 1e-3) / np.linalg.norm(d, 2))
    return cell.replace(**new)


def to_sphere(X, r):
    """Scale every x_t to norm r, without under/overflow for tiny or huge r."""
    X = np.array(X, dtype=np.float64)
    s = np.max(np.abs(X), axis=-1, keepdims=True)
    X = np.where(s > 0, X / np.where(s > 0, s, 1.0), 1.0)
    return X * (r / np.linalg.norm(X, axis=-1, keepdims=True))


def on_sphere(rng, shape, r):
    return to_sphere(rng.standard_normal(shape), r)


def dev_norms(cell, other, X, h0=None):
    """||e_t||_2 in float64, shape (T, B) (for the search only: h' - h cancels)."""
    return np.linalg.norm(rp.deviation(cell, other, X, h0), axis=-1)


def mp_dev_norms(cell, other, X, h0=None, dps=50):
    """Reference ||e_t||_2 by an mpmath simulation at ``dps`` digits, shape (T, B),
    as mpf numbers (float64 loses h' - h to cancellation when ||e|| << ||h||)."""
    from mpmath import mp, mpf
    X = np.asarray(X, dtype=np.float64)
    T, B, m = X.shape
    n = cell.n
    with mp.workdps(dps):
        def mat(A):
            return [[mpf(float(v)) for v in row] for row in np.atleast_2d(A)]

        def vec(a):
            return [mpf(float(v)) for v in a]

        def mv(A, v):
            return [mp.fsum(a * b for a, b in zip(row, v)) for row in A]

        def run(c):
            P = {k: (mat(v) if np.ndim(v) == 2 else vec(v)) for k, v in c.params.items()}
            out = np.empty((T, B), dtype=object)
            for bi in range(B):
                h = vec(np.zeros(n) if h0 is None else h0[bi])
                for t in range(T):
                    x = vec(X[t, bi])
                    if c.kind == "elman":
                        a = [p + q + bb for p, q, bb in zip(mv(P["W"], h), mv(P["U"], x), P["b"])]
                        h = [mp.tanh(v) for v in a]
                    else:
                        f = [1 / (1 + mp.exp(-(p + q + bb)))
                             for p, q, bb in zip(mv(P["Wf"], h), mv(P["Uf"], x), P["bf"])]
                        fh = [fi * hi for fi, hi in zip(f, h)]
                        cc = [mp.tanh(p + q + bb)
                              for p, q, bb in zip(mv(P["Wh"], fh), mv(P["Uh"], x), P["bh"])]
                        h = [(1 - fi) * hi + fi * ci for fi, hi, ci in zip(f, h, cc)]
                    out[t, bi] = h
            return out

        Ha, Hb = run(cell), run(other)
        E = np.empty((T, B), dtype=object)
        for t in range(T):
            for bi in range(B):
                E[t, bi] = mp.sqrt(mp.fsum((p - q) ** 2 for p, q in zip(Hb[t, bi], Ha[t, bi])))
    return E


def holds(bound, E):
    """bound[t] >= every E[t, b] (mpf comparison, exact)."""
    return all(float(bound[t]) >= E[t, b] for t in range(E.shape[0]) for b in range(E.shape[1]))


def ascend(cell, other, X, r, *, steps=4, fd=1e-6, lr=0.3):
    """Projected gradient ascent of ||e_T|| over inputs on the sphere of radius r.

    X : (T, B, m). The gradient is by central differences, all in one batch.
    Returns the final inputs (T, B, m); the search itself runs in float64.
    """
    T, B, m = X.shape
    if r == 0:
        return X
    k = T * m
    eye = np.eye(k).reshape(k, T, m)
    for _ in range(steps):
        P = X[None] + fd * np.concatenate([eye, -eye])[:, :, None, :]      # (2k, T, B, m)
        P = P.transpose(1, 0, 2, 3).reshape(T, 2 * k * B, m)
        E = dev_norms(cell, other, P).reshape(T, 2 * k, B)
        g = ((E[-1, :k] - E[-1, k:]) / (2 * fd)).reshape(T, m, B).transpose(0, 2, 1)
        gn = np.linalg.norm(g, axis=(0, 2), keepdims=True)
        X = to_sphere(X + lr * r * np.sqrt(T) * g / np.maximum(gn, 1e-300), r)
    return X


nets = st.fixed_dictionaries({
    "kind": st.sampled_from(["elman", "mgru"]),
    "n": st.integers(1, 8),
    "m": st.integers(1, 3),
    "sn": st.floats(0.05, 4.0),
    "rel": st.sampled_from([1e-8, 1e-4, 1e-2, 0.1, 0.5, 1.0]),
    "bias": st.floats(0.0, 3.0),
    "inp": st.floats(0.1, 3.0),
    "r": st.floats(0.0, 3.0),
    "T": st.integers(1, 12),
    "seed": st.integers(0, 2 ** 31 - 1),
})


def build(p):
    rng = np.random.default_rng(p["seed"])
    cell = random_cell(p["kind"], p["n"], p["m"], spectral_norm=p["sn"], bias_scale=p["bias"],
                       input_scale=p["inp"], seed=rng)
    return cell, perturbed(cell, p["rel"], rng), rng


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=nets)
def test_sound_against_simulation_and_ascent(p):
    cell, other, rng = build(p)
    T, r = p["T"], p["r"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        G = global_bound(cell, other, horizon=T, input_norm=r, full_output=True)
    X = np.concatenate([on_sphere(rng, (T, 12, p["m"]), r),
                        on_sphere(rng, (T, 4, p["m"]), r) * rng.uniform(0, 1, (T, 4, 1)),
                        ascend(cell, other, on_sphere(rng, (T, 2, p["m"]), r), r, steps=3)],
                       axis=1)
    E = mp_dev_norms(cell, other, X)
    assert holds(G.bound, E), (G.bound, E.max(axis=1))
    assert holds(np.full(T, G.asymptote), E)
    # the state box holds on every simulated trajectory
    assert np.all(np.abs(cell.run(X)) <= G.hmax)


@settings(max_examples=40, deadline=None)
@given(p=nets)
def test_never_above_simple_or_cap(p):
    cell, other, _ = build(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        G = global_bound(cell, other, horizon=p["T"], input_norm=p["r"], full_output=True)
        S = simple_contraction_bound(cell, other, horizon=p["T"], input_norm=p["r"])
    assert np.array_equal(G.simple, S)
    assert np.all(G.bound <= S)
    assert np.all(G.bound <= 2 * np.sqrt(cell.n) * (1 + 1e-15))
    assert G.rate <= G.simple_rate
    assert G.bound[0] == 0.0            # h_0 = 0: e_1 = 0 exactly


def test_simple_bound_closed_form():
    """The simple bound equals ||dW|| sqrt(n) sum_{j<t-1} ||W'||^j (DESIGN §2(c)) up to
    the upward rounding of the verified norms."""
    cell = random_cell("elman", 6, 2, spectral_norm=0.8, seed=3)
    other = perturbed(cell, 0.05, np.random.default_rng(4))
    S = simple_contraction_bound(cell, other, horizon=8, input_norm=1.0)
    a = np.linalg.norm(other.W, 2)
    f = np.linalg.norm(other.W - cell.W, 2) * np.sqrt(6)
    ref = np.array([0.0] + [f * sum(a ** j for j in range(t - 1)) for t in range(2, 9)])
    assert S[0] == 0.0
    np.testing.assert_allclose(S[1:], ref[1:], rtol=1e-12)
    assert np.all(S[1:] >= ref[1:])


def _dominated_elman(n=8, m=2, r=1.0, seed=0):
    """An Elman net whose biases dominate: |b_i| > sum_j |W_ij| + ||U_i|| r, so every
    slope is below 1 along every admissible trajectory."""
    rng = np.random.default_rng(seed)
    cell = random_cell("elman", n, m, spectral_norm=0.9, seed=rng)
    R = np.abs(cell.W).sum(1) + np.linalg.norm(cell.U, axis=1) * r
    b = np.sign(rng.standard_normal(n)) * (R + rng.uniform(0.3, 1.0, n))
    cell = cell.replace(b=b)
    return cell, perturbed(cell, 0.05, rng)


def test_strictly_smaller_when_slopes_below_one():
    cell, other = _dominated_elman()
    G = global_bound(cell, other, horizon=30, input_norm=1.0, full_output=True)
    assert np.all(G.slope < 1)
    assert G.rate < G.simple_rate
    live = G.simple[1:] < 2 * np.sqrt(cell.n)
    assert np.all(G.bound[1:][live] < G.simple[1:][live])
    # the slopes really are below the bound along simulated trajectories of both cells
    rng = np.random.default_rng(1)
    X = on_sphere(rng, (30, 64, cell.m), 1.0)
    for c in (cell, other):
        H = c.run(X)
        Hp = np.concatenate([np.zeros((1, 64, c.n)), H[:-1]])
        a = Hp @ c.W.T + X @ c.U.T + c.b
        assert np.all(1 - np.tanh(a) ** 2 <= G.slope)
    assert holds(G.bound, mp_dev_norms(cell, other, ascend(cell, other, X[:, :2], 1.0)))


def test_smaller_than_simple_from_the_box_alone():
    """Even with slopes = 1 the box |h| < 1 makes the forcing, so the bound, strictly
    smaller than the simple one while the latter is below the cap."""
    rng = np.random.default_rng(5)
    cell = random_cell("elman", 10, 3, spectral_norm=0.7, bias_scale=0.0, seed=rng)
    other = perturbed(cell, 0.1, rng)
    G = global_bound(cell, other, horizon=20, input_norm=0.5, full_output=True)
    assert np.all(G.hmax < 1)
    assert np.all(G.bound[1:] < G.simple[1:])


def test_vacuous_flag_warning_and_asymptote():
    rng = np.random.default_rng(2)
    cell = random_cell("elman", 8, 2, spectral_norm=3.0, seed=rng)
    other = perturbed(cell, 0.05, rng)
    with pytest.warns(RuntimeWarning, match="vacuous"):
        G = global_bound(cell, other, horizon=60, input_norm=1.0, full_output=True)
    assert G.vacuous and G.rate >= 1
    assert G.asymptote == G.cap                 # never a finite value below the cap
    assert G.cap <= 2 * np.sqrt(8) * (1 + 1e-15)
    assert G.capped[-1] and G.bound[-1] == pytest.approx(G.cap, rel=1e-12)
    assert not G.capped[1]
    # the plain call returns the (T,) array and warns as well
    with pytest.warns(RuntimeWarning):
        arr = global_bound(cell, other, horizon=60, input_norm=1.0)
    assert arr.shape == (60,) and np.array_equal(arr, G.bound)


def test_contractive_not_vacuous_and_asymptote_holds_long():
    rng = np.random.default_rng(3)
    cell = random_cell("elman", 12, 3, spectral_norm=0.6, bias_scale=0.5, seed=rng)
    other = perturbed(cell, 0.05, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        G = global_bound(cell, other, horizon=200, input_norm=1.0, full_output=True)
    assert not G.vacuous and G.rate < 1 and G.asymptote < G.cap
    assert G.bound.max() <= G.asymptote * (1 + 1e-12)
    X = on_sphere(rng, (300, 64, 3), 1.0)
    # float64 reference: perturbation 5%, ||e|| ~ 1e-2, far above its rounding error
    assert dev_norms(cell, other, X).max() <= G.asymptote
    with pytest.raises(AttributeError):
        G.rate = 0.0


def test_mgru_gates_memory_is_vacuous():
    """An MGRU whose gates can close (f near 0) keeps errors: no contraction, so the
    bound is vacuous for long horizons, and says so."""
    rng = np.random.default_rng(4)
    cell = random_cell("mgru", 6, 2, spectral_norm=0.5, seed=rng)
    cell = cell.replace(bf=np.full(6, -4.0))
    other = perturbed(cell, 0.05, rng)
    with pytest.warns(RuntimeWarning):
        G = global_bound(cell, other, horizon=100, input_norm=1.0, full_output=True)
    assert G.vacuous and G.asymptote == G.cap
    X = on_sphere(rng, (100, 32, 2), 1.0)
    assert np.all(G.bound >= dev_norms(cell, other, X).max(axis=1))


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_nonzero_initial_state(kind):
    rng = np.random.default_rng(6)
    cell = random_cell(kind, 6, 2, spectral_norm=1.2, bias_scale=0.5, seed=rng)
    other = perturbed(cell, 0.2, rng)
    rho0 = 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        G = global_bound(cell, other, horizon=15, input_norm=1.0, h0_norm=rho0)
    assert G[0] > 0
    X = on_sphere(rng, (15, 64, 2), 1.0)
    h0 = on_sphere(rng, (64, 6), rho0)
    assert np.all(G >= dev_norms(cell, other, X, h0).max(axis=1))


def test_errors_name_the_argument():
    cell = random_cell("elman", 4, 2, seed=0)
    other = perturbed(cell, 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="horizon"):
        global_bound(cell, other, horizon=0, input_norm=1.0)
    with pytest.raises(ValueError, match="input_norm"):
        global_bound(cell, other, horizon=3, input_norm=-1.0)
    with pytest.raises(ValueError, match="h0_norm"):
        global_bound(cell, other, horizon=3, input_norm=1.0, h0_norm=float("nan"))
    with pytest.raises(ValueError, match="other.b"):
        global_bound(cell, other.replace(b=other.b + 1), horizon=3, input_norm=1.0)
    mg = random_cell("mgru", 4, 2, seed=0)
    with pytest.raises(ValueError, match="h0_norm"):
        global_bound(mg, perturbed(mg, 0.1, np.random.default_rng(0)), horizon=3,
                     input_norm=1.0, h0_norm=1.5)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=nets)
def test_sound_sweep_slow(p):
    """The heavy soundness sweep (-m slow): more cases, longer ascent."""
    cell, other, rng = build(p)
    T, r = p["T"], p["r"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        G = global_bound(cell, other, horizon=T, input_norm=r, full_output=True)
    X = on_sphere(rng, (T, 16, p["m"]), r)
    X = np.concatenate([X, ascend(cell, other, X[:, :4], r, steps=8)], axis=1)
    assert holds(G.bound, mp_dev_norms(cell, other, X, dps=40))


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_zero_perturbation_gives_zero(kind):
    cell = random_cell(kind, 6, 2, spectral_norm=3.0, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        G = global_bound(cell, cell, horizon=200, input_norm=1.0)
    assert np.all(G == 0.0)


def test_mgru_overwrite_gates_not_vacuous():
    """With gates bounded away from 0 (large b_f: always overwrite) the signed norm
    recursion contracts: a finite asymptote below the cap, sound on simulations."""
    rng = np.random.default_rng(8)
    cell = random_cell("mgru", 8, 2, spectral_norm=0.5, bias_scale=0.3, seed=rng)
    cell = cell.replace(bf=np.full(8, 6.0))
    other = perturbed(cell, 0.05, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        G = global_bound(cell, other, horizon=40, input_norm=0.5, full_output=True)
    assert not G.vacuous and G.rate < 1 and G.asymptote < G.cap
    assert np.all(G.bound[1:] < G.simple[1:])
    X = on_sphere(rng, (40, 6, 2), 0.5)
    X = np.concatenate([X, ascend(cell, other, X[:, :2], 0.5, steps=3)], axis=1)
    E = mp_dev_norms(cell, other, X, dps=30)
    assert holds(G.bound, E) and holds(np.full(40, G.asymptote), E)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=nets, T=st.integers(50, 300))
def test_sound_long_horizon_slow(p, T):
    """Long horizons (-m slow): random and ascended inputs, mpmath reference."""
    cell, other, rng = build(p)
    r = p["r"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        G = global_bound(cell, other, horizon=T, input_norm=r, full_output=True)
    X = on_sphere(rng, (T, 4, p["m"]), r)
    X = np.concatenate([X, ascend(cell, other, X[:, :1], r, steps=2)], axis=1)
    E = mp_dev_norms(cell, other, X, dps=30)
    assert holds(G.bound, E)
    assert holds(np.full(T, G.asymptote), E)
