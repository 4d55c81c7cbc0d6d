"""Tests of the global, input-independent deviation bound (issue 4, item 2; issue 11, item 4).

The bound claims ``||h'_t - h_t||_2 <= G_t`` for *every* input sequence with
``||x_s||_2 <= r``. The tests check that claim against the exact deviation
(an mpmath simulation of the cells' own step, :meth:`Cell.forward`, at 40
digits) of inputs chosen to make it large: random points on the sphere and
inside the ball, constant inputs, and inputs found by projected gradient
ascent on ``||e_t||`` for every step t (forward-mode gradients through the
cells' tangent step). Nothing here asserts what the code forces by
construction (its ``min`` with the simple bound, ``bound[0] = 0`` for
``h_0 = 0``, the ``Delta W = 0`` override).
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnperturb as rp
from rnnperturb.bounds.global_bound import HORIZON_LIMIT, global_bound, simple_contraction_bound
from rnnperturb.cells.random import random_cell


def perturbed(cell, rel, rng):
    new = {}
    for k, W in cell.recurrent.items():
        d = rng.standard_normal(W.shape)
        new[k] = W + d * (rel * max(np.linalg.norm(W, 2), 1e-3) / np.linalg.norm(d, 2))
    return cell.replace(**new)


def quiet_bound(cell, other, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return global_bound(cell, other, full_output=True, **kw)


# ------------------------------------------------------------- exact reference
class _MP:
    """The cells' array namespace in mpmath (object arrays of mpf)."""

    def __init__(self, mp):
        self.tanh = np.vectorize(mp.tanh, otypes=[object])
        self.sigmoid = np.vectorize(lambda a: 1 / (1 + mp.exp(-a)), otypes=[object])

    @staticmethod
    def matvec(A, v):
        return v @ A.T

    @staticmethod
    def lerp(h, c, f):
        return (1 - f) * h + f * c

    @staticmethod
    def asarray(A):
        return A


def mp_dev_norms(cell, other, X, h0=None, dps=40):
    """Reference ||e_t||_2, shape (T, B) of mpf: both cells' own ``forward`` run in
    mpmath at ``dps`` digits on the float64 inputs (exact in mpmath), so the only
    error is the ~10^-dps of the simulation (float64 loses h' - h to cancellation
    when ||e|| << ||h||)."""
    from mpmath import mp, mpf
    X = np.asarray(X, dtype=np.float64)
    T, B, _ = X.shape
    to_mp = np.vectorize(lambda v: mpf(float(v)), otypes=[object])
    with mp.workdps(dps):
        ns = _MP(mp)

        def run(c):
            P = {k: to_mp(getattr(c, k)) for k in c.recurrent_names + c.input_params}
            h = to_mp(np.zeros((B, c.n)) if h0 is None else h0)
            out = []
            for t in range(T):
                h, _ = type(c).forward(ns, P, h, to_mp(X[t]), lambda k, a: ns.matvec(P[k], a))
                out.append(h)
            return out

        Ha, Hb = run(cell), run(other)
        E = np.empty((T, B), dtype=object)
        for t in range(T):
            D = Hb[t] - Ha[t]
            for b in range(B):
                E[t, b] = mp.sqrt(mp.fsum(v * v for v in D[b]))
    return E


def holds(bound, E):
    """bound[t] >= every E[t, b] (float against mpf: an exact comparison)."""
    return all(float(bound[t]) >= E[t, b] for t in range(E.shape[0]) for b in range(E.shape[1]))


# ---------------------------------------------------------------------- inputs
def _scaled_norm(X):
    s = np.max(np.abs(X), axis=-1, keepdims=True)
    safe = np.where(s > 0, s, 1.0)
    return s * np.linalg.norm(X / safe, axis=-1, keepdims=True)


def to_sphere(X, r):
    """Scale every x_t to norm r, without under/overflow for tiny or huge r."""
    X = np.array(X, dtype=np.float64)
    s = np.max(np.abs(X), axis=-1, keepdims=True)
    X = np.where(s > 0, X / np.where(s > 0, s, 1.0), 1.0)
    return X * (r / np.linalg.norm(X, axis=-1, keepdims=True))


def to_ball(X, r):
    """Project every x_t onto the ball ||x_t|| <= r (the sphere when outside)."""
    outside = _scaled_norm(X) > r
    return np.where(outside, to_sphere(X, r), X)


def on_sphere(rng, shape, r):
    return to_sphere(rng.standard_normal(shape), r)


def constant_inputs(rng, T, m, r, k=4):
    """Constant sequences x_t = r d: the coordinate directions, their negatives and
    ``k`` random directions, plus one alternating-sign sequence: (T, 2m + k + 1, m)."""
    D = np.concatenate([np.eye(m), -np.eye(m), rng.standard_normal((k, m))])
    D = to_sphere(D, r)
    X = np.broadcast_to(D, (T,) + D.shape).copy()
    alt = (-1.0) ** np.arange(T)[:, None, None] * D[None, :1]
    return np.concatenate([X, alt], axis=1)


def dev_norms(cell, other, X, h0=None):
    """||e_t||_2 in float64, shape (T, B) (for the search only: h' - h cancels)."""
    return np.linalg.norm(rp.deviation(cell, other, X, h0), axis=-1)


# ---------------------------------------------------------- adversarial search
def deviation_and_gradient(cell, other, X, h0=None):
    r"""``||e_t||`` and its gradient in the inputs, by forward mode through the cells'
    tangent step (:meth:`Cell.tangent_step` with an input tangent).

    X : (T, B, m). Returns ``E`` (T, B) and ``grad`` (T, B, T, m) with
    ``grad[t, b]`` = :math:`\partial\|e_t\|/\partial X_{:, b, :}` (float64).
    """
    T, B, m = X.shape
    k = T * m
    state = []
    for c in (cell, other):
        h = np.zeros((B, c.n)) if h0 is None else np.array(h0, dtype=np.float64)
        state.append([h, np.zeros((k, B, c.n))])
    E = np.empty((T, B))
    grad = np.zeros((T, B, T, m))
    for t in range(T):
        dx = np.zeros((k, B, m))
        dx[t * m + np.arange(m), :, np.arange(m)] = 1.0
        for st_ in state:
            c = cell if st_ is state[0] else other
            h, dh = st_
            hn, aux, _ = c.nominal(h, X[t])
            st_[1] = c.tangent_step(h, aux, dh, dx=dx)
            st_[0] = hn
        e = state[1][0] - state[0][0]                       # (B, n)
        de = state[1][1] - state[0][1]                      # (k, B, n)
        ne = np.linalg.norm(e, axis=-1)
        E[t] = ne
        g = np.einsum("kbn,bn->bk", de, e) / np.where(ne > 0, ne, np.inf)[:, None]
        grad[t] = g.reshape(B, T, m)
    return E, grad


def adversarial(cell, other, T, r, rng, *, starts=3, iters=25, targets=None, h0=None):
    """Search inputs with ||x_t|| <= r that maximise ||e_t|| for every step t.

    The pool holds random sphere points, points inside the ball and constant
    inputs; then projected gradient ascent runs from ``starts`` sphere points for
    every target step in ``targets`` (default: every step), with a decaying step.

    Returns
    -------
    best : ndarray, shape (T,)
        The largest float64 ``||e_t||`` found at each step.
    X_best : ndarray, shape (T, T, m)
        ``X_best[:, t]`` is the sequence that reached ``best[t]``.
    """
    m = cell.m
    pool = [on_sphere(rng, (T, 8, m), r),
            on_sphere(rng, (T, 4, m), r) * rng.uniform(0, 1, (T, 4, 1)),
            constant_inputs(rng, T, m, r)]
    best = np.full(T, -1.0)
    X_best = np.zeros((T, T, m))

    def record(X, E):
        j = np.argmax(E, axis=1)
        better = E[np.arange(T), j] > best
        best[better] = E[np.arange(T), j][better]
        X_best[:, better] = X[:, j[better]]

    def h0_for(B):
        return None if h0 is None else np.broadcast_to(h0, (B, cell.n))

    for X in pool:
        record(X, dev_norms(cell, other, X, h0_for(X.shape[1])))
    if r == 0 or iters == 0:
        return best, X_best
    tg = np.arange(T) if targets is None else np.asarray(targets)
    tgt = np.repeat(tg, starts)
    Xc = on_sphere(rng, (T, len(tgt), m), r)
    cols = np.arange(len(tgt))
    for it in range(iters + 1):
        E, grad = deviation_and_gradient(cell, other, Xc, h0_for(len(tgt)))
        record(Xc, E)
        if it == iters:
            break
        g = grad[tgt, cols].transpose(1, 0, 2)                     # (T, B, m)
        gn = np.sqrt(np.sum(g * g, axis=(0, 2), keepdims=True))
        lr = 0.5 * (0.05 / 0.5) ** (it / max(iters - 1, 1))
        Xc = to_ball(Xc + lr * r * np.sqrt(T) * g / np.where(gn > 0, gn, np.inf), r)
    return best, X_best


def check_sound(cell, other, T, r, rng, *, h0_norm=0.0, **search):
    """Bound >= the exact deviation of every found worst case, at every step; returns
    (GlobalBound, best found per step)."""
    G = quiet_bound(cell, other, horizon=T, input_norm=r, h0_norm=h0_norm)
    best, X_best = adversarial(cell, other, T, r, rng, **search)
    seqs = X_best.transpose(1, 0, 2).reshape(T, -1)          # one row per step's sequence
    _, first, inv = np.unique(seqs, axis=0, return_index=True, return_inverse=True)
    E = mp_dev_norms(cell, other, X_best[:, first])           # distinct sequences only
    assert holds(G.bound, E), (G.bound, np.array(E.max(axis=1), dtype=float))
    assert holds(np.full(T, G.asymptote), E)
    return G, np.array([E[t, np.ravel(inv)[t]] for t in range(T)], dtype=float)


# ------------------------------------------------ soundness at adversarial inputs
@pytest.mark.parametrize("kind", ["elman", "mgru"])
@pytest.mark.parametrize("sn", [0.6, 2.5], ids=["contractive", "expanding"])
@pytest.mark.parametrize("rel", [1e-6, 1e-2, 0.3])
def test_sound_at_adversarial_inputs(kind, sn, rel):
    """Random contractive (||W|| = 0.6) and expanding (2.5) nets of both cells and
    three perturbation sizes: the bound holds at every step for the worst inputs the
    search finds (exact deviations, no margin)."""
    seed = {"elman": 0, "mgru": 1}[kind] * 100 + int(10 * sn) + int(-np.log10(rel))
    rng = np.random.default_rng(seed)
    cell = random_cell(kind, 6, 2, spectral_norm=sn, bias_scale=0.5, seed=rng)
    other = perturbed(cell, rel, rng)
    G, found = check_sound(cell, other, 15, 1.0, rng)
    assert np.all(found[1:] > 0)
    if sn < 1:
        # the search is not idle: at the last step the ascent beats random sampling
        X = on_sphere(rng, (15, 64, 2), 1.0)
        assert found[-1] >= dev_norms(cell, other, X).max(axis=1)[-1]


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_search_gradient_matches_finite_differences(kind):
    """The search's forward-mode gradient of ||e_t|| in the inputs is the derivative
    (central differences agree to 1e-5 relative), so the ascent climbs."""
    rng = np.random.default_rng(12)
    cell = random_cell(kind, 5, 2, spectral_norm=1.2, bias_scale=0.5, seed=rng)
    other = perturbed(cell, 0.1, rng)
    T = 5
    X = on_sphere(rng, (T, 1, 2), 1.0)
    E, grad = deviation_and_gradient(cell, other, X)
    np.testing.assert_allclose(E[:, 0], dev_norms(cell, other, X)[:, 0], rtol=1e-12)
    fd = np.zeros((T, T, 2))
    for s in range(T):
        for i in range(2):
            D = np.zeros_like(X)
            D[s, 0, i] = 1e-6
            up_, dn_ = dev_norms(cell, other, X + D), dev_norms(cell, other, X - D)
            fd[:, s, i] = (up_ - dn_)[:, 0] / 2e-6
    np.testing.assert_allclose(grad[:, 0], fd, rtol=1e-5, atol=1e-9 * np.abs(fd).max())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=st.fixed_dictionaries({
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
}))
def test_sound_property(p):
    """Any small net, any perturbation size and input radius (hypothesis): sound at
    the searched worst cases; the state box holds on the simulated trajectories."""
    rng = np.random.default_rng(p["seed"])
    cell = random_cell(p["kind"], p["n"], p["m"], spectral_norm=p["sn"], bias_scale=p["bias"],
                       input_scale=p["inp"], seed=rng)
    other = perturbed(cell, p["rel"], rng)
    T, r = p["T"], p["r"]
    G, _ = check_sound(cell, other, T, r, rng, starts=1, iters=8,
                       targets=sorted({0, T // 2, T - 1}))
    X = np.concatenate([on_sphere(rng, (T, 8, p["m"]), r), constant_inputs(rng, T, p["m"], r)],
                       axis=1)
    assert np.all(np.abs(cell.run(X)) <= G.hmax)
    assert G.rate <= G.simple_rate


# ---------------------------------------------------------- other real properties
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


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_vanishes_linearly_with_the_perturbation(kind):
    """As Delta W -> 0 the bound goes to 0 in proportion (not only at Delta W = 0,
    where it is 0 by construction): a 100x smaller perturbation gives a 100x smaller
    bound (within 5 %) on a contractive net, and it stays sound there."""
    rng = np.random.default_rng(21)
    cell = random_cell(kind, 6, 2, spectral_norm=0.5, bias_scale=0.5, seed=rng)
    d = {k: rng.standard_normal(W.shape) for k, W in cell.recurrent.items()}
    Gs = []
    for eps in (1e-7, 1e-9):
        other = cell.replace(**{k: W + eps * d[k] for k, W in cell.recurrent.items()})
        Gs.append(quiet_bound(cell, other, horizon=12, input_norm=1.0).bound)
        if eps == 1e-9:
            check_sound(cell, other, 12, 1.0, rng, starts=1, iters=6, targets=[11])
    ratio = Gs[0][1:] / Gs[1][1:]
    assert np.all((ratio > 95) & (ratio < 105)), ratio


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
    X = np.concatenate([on_sphere(rng, (30, 64, cell.m), 1.0), constant_inputs(rng, 30, 2, 1.0)],
                       axis=1)
    for c in (cell, other):
        H = c.run(X)
        Hp = np.concatenate([np.zeros((1, X.shape[1], c.n)), H[:-1]])
        a = Hp @ c.W.T + X @ c.U.T + c.b
        assert np.all(1 - np.tanh(a) ** 2 <= G.slope)
    check_sound(cell, other, 30, 1.0, rng, starts=1, iters=10, targets=[4, 14, 29])


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
    X = np.concatenate([on_sphere(rng, (300, 64, 3), 1.0), constant_inputs(rng, 300, 3, 1.0)],
                       axis=1)
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
    X = np.concatenate([on_sphere(rng, (100, 32, 2), 1.0), constant_inputs(rng, 100, 2, 1.0)],
                       axis=1)
    assert np.all(G.bound >= dev_norms(cell, other, X).max(axis=1))


def test_mgru_overwrite_gates_not_vacuous():
    """With gates bounded away from 0 (large b_f: always overwrite) the signed norm
    recursion contracts: a finite asymptote below the cap, sound at the searched worst
    cases."""
    rng = np.random.default_rng(8)
    cell = random_cell("mgru", 8, 2, spectral_norm=0.5, bias_scale=0.3, seed=rng)
    cell = cell.replace(bf=np.full(8, 6.0))
    other = perturbed(cell, 0.05, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        G = global_bound(cell, other, horizon=40, input_norm=0.5, full_output=True)
    assert not G.vacuous and G.rate < 1 and G.asymptote < G.cap
    assert np.all(G.bound[1:] < G.simple[1:])
    check_sound(cell, other, 40, 0.5, rng, starts=1, iters=10, targets=[5, 20, 39])


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_nonzero_initial_state(kind):
    rng = np.random.default_rng(6)
    cell = random_cell(kind, 6, 2, spectral_norm=1.2, bias_scale=0.5, seed=rng)
    other = perturbed(cell, 0.2, rng)
    rho0 = 0.8
    G = quiet_bound(cell, other, horizon=15, input_norm=1.0, h0_norm=rho0).bound
    X = on_sphere(rng, (15, 64, 2), 1.0)
    h0 = on_sphere(rng, (64, 6), rho0)
    E = dev_norms(cell, other, X, h0).max(axis=1)
    assert np.all(G >= E) and E[0] > 0
    # the worst inputs from the worst of these initial states
    worst = h0[np.argmax(dev_norms(cell, other, X, h0)[0])]
    _, Xb = adversarial(cell, other, 15, 1.0, rng, starts=1, iters=8, targets=[0, 7, 14],
                        h0=worst)
    assert holds(G, mp_dev_norms(cell, other, Xb, np.broadcast_to(worst, (15, 6))))


def test_errors_name_the_argument():
    cell = random_cell("elman", 4, 2, seed=0)
    other = perturbed(cell, 0.1, np.random.default_rng(0))
    for bad in (0, -3, HORIZON_LIMIT + 1, 10 ** 9):
        with pytest.raises(ValueError, match=rf"horizon: expected an int.*\[1, {HORIZON_LIMIT}\]"):
            global_bound(cell, other, horizon=bad, input_norm=1.0)
    for bad in (2.0, True, "3", None):
        with pytest.raises(ValueError, match="horizon: expected an int"):
            global_bound(cell, other, horizon=bad, input_norm=1.0)
    with pytest.raises(ValueError, match="horizon"):
        simple_contraction_bound(cell, other, horizon=10 ** 9)
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


def test_a_cell_without_the_protocol_methods_is_refused():
    """A new cell type that does not implement the global-bound methods gets an error
    naming the cell and the method, never another cell's recursion."""
    from rnnperturb.cells.elman import ElmanRNN
    from rnnperturb.cells.protocol import Cell

    for method in ("global_box_map", "global_simple", "global_recursion"):
        New = type("NewCell", (ElmanRNN,), {method: getattr(Cell, method)})
        cell = random_cell("elman", 4, 2, seed=0)
        new = New(W=cell.W, U=cell.U, b=cell.b)
        with pytest.raises(NotImplementedError, match=rf"NewCell\.{method}"):
            global_bound(new, new.replace(W=new.W * 1.01), horizon=3, input_norm=1.0)


# ------------------------------------------------------------------ slow sweeps
nets = st.fixed_dictionaries({
    "kind": st.sampled_from(["elman", "mgru"]),
    "n": st.integers(1, 10),
    "m": st.integers(1, 3),
    "sn": st.floats(0.05, 4.0),
    "rel": st.sampled_from([1e-8, 1e-4, 1e-2, 0.1, 0.5, 1.0]),
    "bias": st.floats(0.0, 3.0),
    "inp": st.floats(0.1, 3.0),
    "r": st.floats(0.0, 3.0),
    "T": st.integers(1, 20),
    "seed": st.integers(0, 2 ** 31 - 1),
})


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=nets)
def test_sound_sweep_slow(p):
    """The heavy soundness sweep (-m slow): more cases, ascent for every step."""
    rng = np.random.default_rng(p["seed"])
    cell = random_cell(p["kind"], p["n"], p["m"], spectral_norm=p["sn"], bias_scale=p["bias"],
                       input_scale=p["inp"], seed=rng)
    other = perturbed(cell, p["rel"], rng)
    check_sound(cell, other, p["T"], p["r"], rng, starts=2, iters=30)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=nets, T=st.integers(50, 200))
def test_sound_long_horizon_slow(p, T):
    """Long horizons (-m slow): the searched worst cases at a few steps."""
    rng = np.random.default_rng(p["seed"])
    cell = random_cell(p["kind"], p["n"], p["m"], spectral_norm=p["sn"], bias_scale=p["bias"],
                       input_scale=p["inp"], seed=rng)
    other = perturbed(cell, p["rel"], rng)
    check_sound(cell, other, T, p["r"], rng, starts=1, iters=10,
                targets=[T // 4, T // 2, T - 1])
