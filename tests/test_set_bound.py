"""Soundness of the set bound (rp.set_bound) against members of the set, and the
attack and noise bound."""
import contextlib
import importlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rnnperturb.bounds.set_bound import Interval, INTERVAL, set_attack, set_bound, set_trace
from rnnperturb.cells.random import random_cell
from rnnperturb.perturb import sets
from rnnperturb.perturb.elementwise import quantize  # noqa: F401
from rnnperturb.stats.noise_bound import noise_bound


def _deviation(cell, dW, X, h0=None):
    other = cell.replace(**{k: cell.recurrent[k] + v for k, v in dW.items()})
    H, H2 = cell.run(X, h0), other.run(X, h0)
    return np.linalg.norm(H2 - H, axis=-1)


def _members(cell, S, seed, count=4):
    rng = np.random.default_rng(seed)
    out = []
    for how in ("boundary", "spike", "interior"):
        for _ in range(count):
            out.append(S.sample(cell, rng, how=how))
    return out


@contextlib.contextmanager
def _carry(on):
    """Carried Gram matrices at every size (``on``), or from the shipped size on."""
    mod = importlib.import_module("rnnperturb.bounds.set_bound")
    old = mod.GRAM_CARRY_MIN_ROWS
    mod.GRAM_CARRY_MIN_ROWS = 0 if on else old
    try:
        yield
    finally:
        mod.GRAM_CARRY_MIN_ROWS = old


def _check(cell, S, X, h0=None, seed=0, count=3, attack=False, one_sided=False, carry=False):
    with _carry(carry):
        b = set_bound(cell, S, X, h0, one_sided=one_sided)
    worst = np.zeros_like(b)
    for dW in _members(cell, S, seed, count):
        dev = _deviation(cell, dW, X, h0)
        worst = np.maximum(worst, dev)
        assert np.all(dev <= b * (1 + 1e-12) + 1e-15), (np.max(dev - b), type(S).__name__)
    if attack:
        Xs = X if X.ndim == 2 else X[:, 0]
        lo, dW = set_attack(cell, S, Xs, seed=seed, iters=4, restarts=1)
        assert S.contains(cell, dW, rtol=1e-9)
        dev = _deviation(cell, dW, Xs)
        assert abs(dev[-1] - lo) <= 1e-12 + 1e-9 * lo
        bb = b if b.ndim == 1 else b[:, 0]
        assert np.all(dev <= bb * (1 + 1e-12) + 1e-15)
    return b, worst


def test_interval_namespace_encloses():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lo = rng.standard_normal(50) * 3
        hi = lo + rng.uniform(0, 2, 50)
        x = Interval(lo, hi)
        pts = lo + (hi - lo) * rng.uniform(size=(30, 50))
        for f, g in ((INTERVAL.tanh(x), np.tanh(pts)), ((x * x), pts * pts),
                     ((1 - x) * x, (1 - pts) * pts)):
            assert np.all(f.lo <= g) and np.all(g <= f.hi)
        A = rng.standard_normal((7, 50))
        y = INTERVAL.matvec(A, x)
        v = pts @ A.T
        assert np.all(y.lo <= v) and np.all(v <= y.hi)
        f = Interval(np.full(50, 0.2), np.full(50, 0.7))
        z = INTERVAL.lerp(x, Interval(-np.ones(50), np.ones(50)), f)
        fs = rng.uniform(0.2, 0.7, size=(30, 50))
        cs = rng.uniform(-1, 1, size=(30, 50))
        w = (1 - fs) * pts + fs * cs
        assert np.all(z.lo <= w) and np.all(w <= z.hi)


# ------------------------------------------------------------------ soundness
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["elman", "mgru"]), sn=st.sampled_from([0.5, 0.9, 1.5, 3.0, 6.0]),
       logr=st.floats(-8, 0), T=st.integers(1, 50), seed=st.integers(0, 10 ** 6),
       which=st.sampled_from(["ball", "box"]), one_sided=st.booleans(), carry=st.booleans())
def test_set_bound_sound_random(kind, sn, logr, T, seed, which, one_sided, carry):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    cell = random_cell(kind, n, 2, spectral_norm=sn, seed=seed)
    X = rng.standard_normal((T, 2))
    r = 10.0 ** logr * sn
    S = sets.Ball(radius=r) if which == "ball" else sets.Box(radius=r / n)
    _check(cell, S, X, seed=seed, count=2, attack=(T <= 20 and n <= 4), one_sided=one_sided,
           carry=carry)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["elman", "mgru"]), bits=st.sampled_from([4, 6, 8, 12]),
       rel=st.sampled_from([1e-6, 1e-3, 1e-2, 0.1]), seed=st.integers(0, 10 ** 6))
def test_quantization_and_drift_sound(kind, bits, rel, seed):
    rng = np.random.default_rng(seed)
    cell = random_cell(kind, 5, 2, spectral_norm=float(rng.uniform(0.5, 4)), seed=seed)
    X = rng.standard_normal((25, 2, 2))
    S = sets.quantization(cell, bits=bits)
    b, _ = _check(cell, S, X, seed=seed, count=2)
    q = quantize(cell, bits=bits)
    dev = np.linalg.norm(q.run(X) - cell.run(X), axis=-1)
    assert np.all(dev <= b)
    _check(cell, sets.quantization(cell, bits=bits, rounding="any"), X, seed=seed, count=1)
    _check(cell, sets.drift(cell, rel=rel), X, seed=seed, count=2)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["elman", "mgru"]), sn=st.sampled_from([0.5, 1.0, 3.0]),
       logr=st.floats(-6, -1), seed=st.integers(0, 10 ** 6))
def test_box_tight_refinement_sound_against_every_vertex(kind, sn, logr, seed):
    """box_refine='tight' (L-BFGS on the SDP-dual weights): sound against *every* vertex
    of a small box (n = 2 or 3 for the Elman: all 2^(n^2) sign patterns; the MGRU's two
    matrices at n = 2: 2^8) and no looser than the fixed-point refinement by more than
    rounding."""
    import itertools
    rng = np.random.default_rng(seed)
    n = 2 if kind == "mgru" else int(rng.integers(2, 4))
    cell = random_cell(kind, n, 2, spectral_norm=sn, seed=seed)
    X = rng.standard_normal((12, 2))
    S = sets.Box(radius=10.0 ** logr * sn / n)
    b = set_bound(cell, S, X, box_refine="tight")
    assert np.all(b <= set_bound(cell, S, X, box_refine=True) * (1 + 1e-9) + 1e-300)
    E = S.radii(cell)
    names = list(cell.recurrent_names)
    for signs in itertools.product([-1.0, 1.0], repeat=len(names) * n * n):
        sg = np.asarray(signs).reshape(len(names), n, n)
        dW = {k: sg[i] * E[k] for i, k in enumerate(names)}
        assert np.all(_deviation(cell, dW, X) <= b * (1 + 1e-12) + 1e-15)


def test_dict_radius_and_h0(kind):
    cell = random_cell(kind, 5, 2, spectral_norm=1.2, seed=7)
    X = np.random.default_rng(1).standard_normal((15, 3, 2))
    h0 = np.random.default_rng(2).uniform(-1, 1, (3, 5))
    name = cell.recurrent_names[-1]
    for S in (sets.Ball(radius={name: 0.05}), sets.Box(radius={name: 0.01 * np.ones((5, 5))})):
        b, _ = _check(cell, S, X, h0=h0, count=3)
        assert b.shape == (15, 3)


def test_float32_cell():
    cell = random_cell("elman", 5, 2, spectral_norm=1.0, seed=3)
    c32 = cell.replace(**{k: v.astype(np.float32) for k, v in cell.params.items()})
    c32 = type(cell)(**{k: v.astype(np.float32) for k, v in cell.params.items()})
    X = np.random.default_rng(0).standard_normal((10, 2))
    b = set_bound(c32, sets.Ball(radius=1e-3), X)
    c64 = type(cell)(**{k: np.asarray(v, np.float64) for k, v in c32.params.items()})
    X32 = X.astype(np.float32).astype(np.float64)
    for dW in _members(c64, sets.Ball(radius=1e-3), 0, 3):
        assert np.all(_deviation(c64, dW, X32) <= b)


def test_componentwise_and_zero_set(kind):
    cell = random_cell(kind, 4, 2, seed=1)
    X = np.random.default_rng(0).standard_normal((8, 2))
    c = set_bound(cell, sets.Ball(radius=1e-2), X, componentwise=True)
    assert c.shape == (8, 4)
    z = set_bound(cell, sets.Ball(radius=0.0), X)
    assert np.all(z < 1e-12)


def test_tight_small_radius_contractive():
    """Linear regime: the ball bound is within 1 % of the attack."""
    cell = random_cell("elman", 8, 3, spectral_norm=0.9, seed=2)
    X = np.random.default_rng(0).standard_normal((20, 3))
    S = sets.Ball(radius=1e-5)
    b = set_bound(cell, S, X)
    lo, _ = set_attack(cell, S, X, seed=0, iters=5, restarts=0)
    assert lo <= b[-1] <= 1.01 * lo


# the LSTM (N = 2n = 128, four matrices) takes about 35 s on the shared 2-core machine
# (Elman 2 s, MGRU 5 s, GRU 9 s): slow
@pytest.mark.parametrize("kind", ["elman", "mgru", "gru",
                                  pytest.param("lstm", marks=pytest.mark.slow)])
def test_checkpoints_sound(kind):
    import glob
    import rnnperturb as rp
    paths = sorted(glob.glob(f"validation/checkpoints/{kind}_memorization_D10.npz"))
    if not paths:
        pytest.skip(f"no {kind} checkpoint")
    for p in paths:
        cell, meta = rp.load_with_metadata(p)
        X = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"]).X[:, :2]
        eps = {k: 1e-5 * np.linalg.norm(v) for k, v in cell.recurrent.items()}
        _check(cell, sets.Ball(radius=eps), X, count=1)


def test_one_sided_and_chords_on_a_saturated_trained_net():
    """The Elman D50 checkpoint at radius 3e-4 ||W||_F, where the tangent bound alone
    (chords=False) reaches the cap: one_sided=True (the one-signed activation remainders
    centred) and the default chords (the centred chord where tighter) are each sound
    against the attack and members of the ball (sphere points, spikes, interior points),
    below the cap and within 2x the attack at h_T (measured: 1.49 and 1.41 of an attack
    of 0.41, the cap 16; the README's benchmark row is the default); at radius 0 both
    are the default up to rounding."""
    import rnnperturb as rp
    cell, meta = rp.load_with_metadata("validation/checkpoints/elman_memorization_D50.npz")
    X = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"]).X[:, 0]
    S = sets.Ball(radius={k: 3e-4 * np.linalg.norm(v) for k, v in cell.recurrent.items()})
    cap = 2 * np.sqrt(cell.n)
    lo, _ = set_attack(cell, S, X, seed=0, iters=10, restarts=1)
    assert set_bound(cell, S, X, chords=False)[-1] >= cap * (1 - 1e-12)   # vacuous here
    b1 = set_bound(cell, S, X, one_sided=True, chords=False)
    assert lo <= b1[-1] < min(cap, 2 * lo), (lo, b1[-1])
    assert abs(b1[-1] / lo - 1.49) <= 0.02, b1[-1] / lo
    b, worst = _check(cell, S, X, count=2, attack=True)                  # the default: chords
    assert np.all(worst <= b) and np.all(b <= b1 * (1 + 1e-9))
    assert lo <= b[-1] < min(cap, 2 * lo), (lo, b[-1])
    assert abs(b[-1] / lo - 1.41) <= 0.02, b[-1] / lo
    for kw in ({"one_sided": True, "chords": False}, {}):
        z1 = set_bound(cell, sets.Ball(radius=0.0), X, **kw)
        assert np.all(z1 < 1e-10), np.max(z1)


def test_one_sided_checked():
    cell = random_cell("elman", 3, 2, seed=0)
    with pytest.raises(ValueError, match="one_sided: expected True or False, found 'yes'"):
        set_bound(cell, sets.Ball(radius=1e-3), np.zeros((3, 2)), one_sided="yes")
    with pytest.raises(ValueError, match="chords: expected True or False, found 1"):
        set_bound(cell, sets.Ball(radius=1e-3), np.zeros((3, 2)), chords=1)


# ------------------------------------------------------------------ noise
@pytest.mark.parametrize("one_sided", [False, True])
def test_noise_bound_monte_carlo(kind, one_sided):
    """The confidence holds simultaneously over all steps (no draw exceeds the bound at
    any step more often than 1 - confidence), and in the linear regime (std 1e-5) the
    bound is within 3x of the empirical quantile at every step (the issue's goal;
    measured 1.7-2.4x); at std 1e-3 (remainder visible for the MGRU) within 4x."""
    cell = random_cell(kind, 6, 2, spectral_norm=1.0, seed=4)
    X = np.random.default_rng(0).standard_normal((20, 2))
    conf = 0.9
    for s, factor in ((1e-5, 3.0), (1e-3, 4.0)):
        Pn = noise_bound(cell, X, std=s, confidence=conf, one_sided=one_sided)
        rng = np.random.default_rng(1)
        viol = 0
        draws = 200
        devs = []
        for _ in range(draws):
            dW = {k: s * rng.standard_normal((6, 6)) for k in cell.recurrent_names}
            d = _deviation(cell, dW, X)
            devs.append(d)
            viol += np.any(d > Pn)
        assert viol <= (1 - conf) * draws
        q = np.quantile(np.array(devs), conf, axis=0)
        assert np.all(Pn[1:] <= factor * q[1:]), (s, np.max(Pn[1:] / q[1:]))


def test_noise_bound_laurent_massart_term():
    """The Gram Frobenius bound of the trace is >= the exact ||M M^T||_F of the carried
    matrices and <= ||M||_F ||M||_2 (so the Laurent-Massart tail is the smaller)."""
    from rnnperturb.bounds.set_bound import carried_matrices
    for kind in ("elman", "mgru"):
        cell = random_cell(kind, 5, 2, spectral_norm=1.2, seed=3)
        X = np.random.default_rng(0).standard_normal((12, 2))
        tr = set_trace(cell, sets.Ball(radius=1e-9), X)
        M = np.concatenate([v[0] for v in carried_matrices(cell, X).values()], axis=1)
        g = np.linalg.norm(M @ M.T)
        assert tr.lin_gram[-1, 0] >= g * (1 - 1e-9)
        assert tr.lin_gram[-1, 0] <= 1.001 * tr.lin_fro[-1, 0] * tr.lin_op[-1, 0]
        assert tr.lin_gram[-1, 0] <= 1.001 * g + 1e-12


# The sweep's size: 300 cases in CI's slow run; the issue-12 figure of >= 10,000 hypothesis cases was
# run as four runs of 2,500 (hypothesis seeds 1-4, about 20 min each; 0 failing):
#     RNNPERTURB_SET_SWEEP_CASES=2500 python -m pytest -m slow tests/test_set_bound.py -k sound_slow \
#         --hypothesis-seed=S
# That was the default bound (one_sided=False); the sweep then drew one_sided, and
# RNNPERTURB_SET_SWEEP_ONE_SIDED=1 fixes it to True: with it, hypothesis seeds 11-14 at 2,500 each
# gave 10,000 passing cases, 0 failing (26-28 min each at load 3). After the carried Gram matrices
# (commit 6ddfbf3, which carried them at every size; one_sided drawn): seeds 21-24 at 2,500 each,
# 10,000 passing, 0 failing (43-50 min each, four at once on 2 cores; seeds 21-22 under hypothesis
# 6.170, 23-24 under 6.155: the cases a seed draws depend on the version). The size threshold, the
# overflow guard of Affine.grams (both only send more sequences to a fresh product) and the `carry`
# draw came after it; RNNPERTURB_SET_SWEEP_CARRY=1 runs the carried path at every size again.
# After the nominal run stopped certifying its groups' spectral norms (commit dff9edb; one_sided
# and carry drawn): seeds 31-32 at 2,500 each, 5,000 passing, 0 failing (19-20 min each).
_SET_SWEEP_CASES = int(os.environ.get("RNNPERTURB_SET_SWEEP_CASES", "300"))
_SWEEP_ONE_SIDED = (st.just(True) if os.environ.get("RNNPERTURB_SET_SWEEP_ONE_SIDED") == "1"
                    else st.booleans())
# Carried Gram matrices (set_bound.GRAM_CARRY_MIN_ROWS, 40 rows by default) at every size: drawn,
# or always with RNNPERTURB_SET_SWEEP_CARRY=1.
_SWEEP_CARRY = (st.just(True) if os.environ.get("RNNPERTURB_SET_SWEEP_CARRY") == "1"
                else st.booleans())


@pytest.mark.slow
@settings(max_examples=_SET_SWEEP_CASES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["elman", "mgru"]), sn=st.floats(0.3, 6.0),
       logr=st.floats(-8, 0), T=st.integers(1, 300), seed=st.integers(0, 10 ** 6),
       which=st.sampled_from(["ball", "box", "quant", "drift"]), one_sided=_SWEEP_ONE_SIDED,
       carry=_SWEEP_CARRY)
def test_set_bound_sound_slow(kind, sn, logr, T, seed, which, one_sided, carry):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    cell = random_cell(kind, n, 2, spectral_norm=sn, seed=seed)
    X = rng.standard_normal((T, 2))
    r = 10.0 ** logr * sn
    S = {"ball": lambda: sets.Ball(radius=r), "box": lambda: sets.Box(radius=r / n),
         "quant": lambda: sets.quantization(cell, bits=int(rng.integers(2, 12))),
         "drift": lambda: sets.drift(cell, rel=10.0 ** logr)}[which]()
    _check(cell, S, X, seed=seed, count=3, attack=(T <= 60 and n <= 6), one_sided=one_sided,
           carry=carry)


# ------------------------------------------------- states larger than h (LSTM, stacks)
def _big_cell(kind, n, sn, seed):
    from rnnperturb.cells import random_stacked
    if kind == "lstm":
        return random_cell("lstm", n, 2, spectral_norm=sn, seed=seed)
    return random_stacked(kind.split("+"), n, 2, spectral_norm=sn, seed=seed)


def _full_deviation(cell, dW, X, h0=None):
    other = cell.replace(**{k: cell.recurrent[k] + v for k, v in dW.items()})
    return np.linalg.norm(other.run(X, h0, state="full") - cell.run(X, h0, state="full"),
                          axis=-1)


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["lstm", "gru+elman", "lstm+gru"]),
       sn=st.sampled_from([0.5, 1.0, 3.0, 6.0]), logr=st.floats(-8, -0.5),
       T=st.integers(1, 20), seed=st.integers(0, 10 ** 6),
       which=st.sampled_from(["ball", "box", "quant", "drift"]), one_sided=st.booleans(),
       carry=st.booleans())
def test_set_bound_sound_state_larger_than_h(kind, sn, logr, T, seed, which, one_sided, carry):
    """LSTM ([h, c], N = 2n) and 2-layer stacks (N = sum of the layers' states): the
    output's bound (state='h', the default) is never below the output deviation of a
    member of the set (vertices/sphere points, rank-one spikes, interior points, the
    real quantize() rounding) nor below set_attack's; state='full' bounds the whole
    state's deviation; at radius 0 it is rounding only."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 5))
    cell = _big_cell(kind, n, sn, seed)
    assert cell.state_size > cell.n
    X = rng.standard_normal((T, 2, 2))
    h0 = 0.5 * rng.standard_normal((2, cell.state_size))
    r = 10.0 ** logr * sn
    bits = int(rng.integers(3, 12))
    S = {"ball": lambda: sets.Ball(radius=r), "box": lambda: sets.Box(radius=r / n),
         "quant": lambda: sets.quantization(cell, bits=bits),
         "drift": lambda: sets.drift(cell, rel=10.0 ** logr)}[which]()
    b, _ = _check(cell, S, X, h0=h0, seed=seed, count=2, one_sided=one_sided, carry=carry)
    assert b.shape == (T, 2)
    _check(cell, S, X[:, 0], seed=seed, count=1, attack=True, one_sided=one_sided, carry=carry)
    if which == "quant":
        from rnnperturb.perturb.elementwise import quantize
        q = quantize(cell, bits=bits)
        assert np.all(np.linalg.norm(q.run(X, h0) - cell.run(X, h0), axis=-1) <= b)
    bf = set_bound(cell, S, X, h0, state="full")
    for dW in _members(cell, S, seed + 1, 2):
        assert np.all(_full_deviation(cell, dW, X, h0) <= bf * (1 + 1e-12) + 1e-15)
    z = set_bound(cell, sets.Ball(radius=0.0), X, h0)
    assert np.all(z < 1e-10), np.max(z)


def test_state_larger_than_h_tight_and_shapes():
    """In the linear regime the LSTM/stack output bound is within 10 % of the attack
    (measured 1.01-1.08); componentwise shapes follow state='h' (n) and 'full' (N)."""
    X = np.random.default_rng(0).standard_normal((10, 2))
    for kind in ("lstm", "gru+elman", "lstm+gru"):
        cell = _big_cell(kind, 3, 1.0, 1)
        S = sets.Ball(radius=1e-5)
        b = set_bound(cell, S, X)
        lo, _ = set_attack(cell, S, X, seed=0, iters=5, restarts=0)
        assert lo <= b[-1] <= 1.1 * lo, (kind, b[-1] / lo)
        assert set_bound(cell, S, X, componentwise=True).shape == (10, cell.n)
        assert set_bound(cell, S, X, componentwise=True, state="full").shape == (
            10, cell.state_size)


def test_state_larger_than_h_mean_value_refused():
    """The mean-value method assumes the state is h (N = n): refused by name for the
    LSTM (the affine method, the default, covers it)."""
    cell = random_cell("lstm", 4, 2, seed=0)
    with pytest.raises(ValueError, match="method"):
        set_bound(cell, sets.Ball(radius=1e-3), np.zeros((3, 2)), method="mean_value")
    with pytest.raises(ValueError, match="state"):
        set_bound(cell, sets.Ball(radius=1e-3), np.zeros((3, 2)), state="c")


def test_certified_recall_over_a_set_state_larger_than_h():
    """rp.certified_recall over a set on an LSTM and a stack with a readout: a certified
    sequence is recalled by every sampled member; at radius 0 exactly the nominally
    recalled sequences are certified (the bound is rounding only)."""
    import rnnperturb as rp
    from rnnperturb.cells import random_stacked
    task = rp.tasks.memorization_all(2, 2, 3)
    for cell in (random_cell("lstm", 4, 4, n_out=3, seed=3),
                 random_stacked(["lstm", "gru"], 4, 4, n_out=3, seed=3)):
        r0 = rp.certified_recall(cell, sets.Ball(radius=0.0), task)
        assert np.array_equal(np.asarray(r0.certified), np.asarray(r0.predicted))
        for S in (sets.Ball(radius=1e-2), sets.drift(cell, rel=1e-1),
                  sets.quantization(cell, bits=6)):
            r = rp.certified_recall(cell, S, task)
            assert not np.any(np.asarray(r.certified) & ~np.asarray(r.correct))
