"""Soundness of the ingredients of the set bound added for tightness: the
second-derivative bound of the activations, the Cholesky-certified largest
eigenvalue, the norm bound of the remainder, and the whole bound at larger n
(where the joint/norm bounds differ most from per-coordinate ones)."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from rnnperturb.bounds.set_bound import (_box_sdp, _sym_max_upper, carried_matrices, dd_max,
                                         set_attack, set_bound, set_trace)
from rnnperturb.cells.random import random_cell
from rnnperturb.perturb import sets
from rnnperturb.perturb.elementwise import quantize


def _dd_true(kind, x):
    import mpmath
    mpmath.mp.dps = 40
    out = []
    for v in x:
        z = mpmath.mpf(float(v))
        if kind == "tanh":
            t = mpmath.tanh(z)
            d2 = 2 * t * (1 - t * t)
        else:
            t = 1 / (1 + mpmath.exp(-z))
            d2 = t * (1 - t) * (1 - 2 * t)
        out.append(abs(float(d2)))
    return np.array(out)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["tanh", "sigmoid"]), a=st.floats(-8, 8), w=st.floats(0, 6))
def test_dd_max_bounds_second_derivative(kind, a, w):
    lo, hi = a - w, a + w
    xs = np.concatenate([np.linspace(lo, hi, 25), [lo, hi]])
    xs = np.concatenate([xs, [v for v in (0.6584789484624084, -0.6584789484624084,
                                          1.3169578969248166, -1.3169578969248166)
                              if lo <= v <= hi]])
    assert np.all(_dd_true(kind, xs) <= dd_max(kind, np.array(lo), np.array(hi)))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 7), seed=st.integers(0, 10 ** 6), kind=st.sampled_from(
    ["psd", "indef", "degenerate", "tiny"]))
def test_sym_max_upper_is_verified(n, seed, kind):
    import mpmath
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    if kind == "psd":
        S = A @ A.T
    elif kind == "indef":
        S = A + A.T
    elif kind == "degenerate":
        Q, _ = np.linalg.qr(A)
        S = (Q * np.r_[np.ones(min(2, n)), rng.uniform(0, 1, n - min(2, n))]) @ Q.T
    else:
        S = (A @ A.T) * 1e-150
    S = 0.5 * (S + S.T)
    mu = _sym_max_upper(S)
    mpmath.mp.dps = 50
    ev = mpmath.eigsy(mpmath.matrix(S.tolist()), eigvals_only=True)
    lam = max(float(e) for e in ev)
    assert lam <= mu
    assert mu <= lam + 1e-9 * max(abs(lam), np.abs(S).max())


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 4), cols=st.lists(st.integers(1, 6), min_size=1, max_size=2),
       iters=st.sampled_from([1, 2, 3, 6]), polish=st.sampled_from([0, 5]),
       zero=st.booleans(), seed=st.integers(0, 10 ** 6))
def test_box_sdp_never_below_the_box_supremum(rows, cols, iters, polish, zero, seed):
    r"""The SDP-dual bound of :func:`_box_sdp` for every number of tried weights, with
    and without polishing, over one or two matrices and with zero radii, is at least
    :math:`\max_{|u|\le E}\|\sum_k M_k u_k\|_2`, attained at a vertex (all
    :math:`2^{N'}` enumerated, N' <= 12), for each sequence; and at most the
    triangle-inequality bound :math:`\sum_j E_j\|m_j\|` (the value of the first
    weights, the column norms, verified whenever their estimate is the lowest). Zero
    radii drop their columns; all zero gives 0."""
    import itertools
    rng = np.random.default_rng(seed)
    B = 2
    names = [f"W{i}" for i in range(len(cols))]
    Ms = {k: rng.standard_normal((B, rows, c)) * 10.0 ** rng.uniform(-3, 3, c)
          for k, c in zip(names, cols)}
    vecE = {k: rng.uniform(0.1, 2.0, c) for k, c in zip(names, cols)}
    if zero:
        vecE[names[0]][0] = 0.0
    bound, om = _box_sdp(Ms, vecE, names, iters, polish=polish)
    assert bound.shape == (B,) and om.shape[0] == B
    A = np.concatenate([Ms[k] * vecE[k] for k in names], axis=2)      # (B, rows, N')
    for b in range(B):
        best = max(np.linalg.norm(A[b] @ np.asarray(sg))
                   for sg in itertools.product([-1.0, 1.0], repeat=A.shape[2]))
        assert bound[b] >= best * (1 - 1e-12)
        assert bound[b] <= np.sum(np.linalg.norm(A[b], axis=0)) * (1 + 1e-9) + 1e-90


def _dev(cell, dW, X):
    other = cell.replace(**{k: cell.recurrent[k] + v for k, v in dW.items()})
    return np.linalg.norm(other.run(X) - cell.run(X), axis=-1), other.run(X) - cell.run(X)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["elman", "mgru"]), sn=st.sampled_from([0.9, 3.0]),
       logr=st.floats(-4, -0.5), seed=st.integers(0, 10 ** 6), which=st.sampled_from(
           ["ball", "box"]))
def test_bound_and_remainder_norm_sound_larger_n(kind, sn, logr, seed, which):
    """Members (sphere points / box vertices, spikes, interior, the rank-16
    truncation scaled into the set, the attack) never exceed the bound, and the
    deviation minus the linear part never exceeds the remainder's norm bound."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 25))
    cell = random_cell(kind, n, 3, spectral_norm=sn, seed=seed)
    T = int(rng.integers(2, 25))
    X = rng.standard_normal((T, 3))
    names = cell.recurrent_names
    if which == "ball":
        S = sets.Ball(radius=10.0 ** logr)
    else:
        S = sets.Box(radius=10.0 ** logr / n)
    tr = set_trace(cell, S, X)
    b = tr.bound[:, 0]
    Ms = carried_matrices(cell, X)
    members = [S.sample(cell, rng, how=h) for h in ("boundary", "spike", "interior")
               for _ in range(2)]
    W = cell.recurrent[names[0]]
    U, s, Vt = np.linalg.svd(W)
    d = W - (U[:, : n // 2] * s[: n // 2]) @ Vt[: n // 2]
    members.append(S.project(cell, {names[0]: d * (10 * 10.0 ** logr / np.linalg.norm(d))}))
    lo, dWa = set_attack(cell, S, X, seed=seed, iters=3, restarts=0)
    members.append(dWa)
    for dW in members:
        dev, diff = _dev(cell, dW, X)
        assert np.all(dev <= b * (1 + 1e-12) + 1e-15), np.max(dev - b)
        lin = sum(Ms[k][0] @ dW[k].reshape(-1) for k in names if k in dW)
        z = np.linalg.norm(diff[-1] - lin)
        slack = 1e-9 * (np.linalg.norm(lin) + np.linalg.norm(diff[-1])) + 1e-13
        assert z <= tr.rem_norm[-1, 0] + slack, (z, tr.rem_norm[-1, 0])
    assert lo <= b[-1] * (1 + 1e-12)


def test_quantization_round_to_nearest_n32():
    cell = random_cell("elman", 32, 4, spectral_norm=0.9, seed=0)
    X = np.random.default_rng(3).standard_normal((12, 4))
    for bits in (6, 8):
        S = sets.quantization(cell, bits=bits)
        b = set_bound(cell, S, X)
        dev = np.linalg.norm(quantize(cell, bits=bits).run(X) - cell.run(X), axis=-1)
        assert np.all(dev <= b)


def test_ball_tightness_n32():
    """The joint (norm) bounds of the second-order terms: within 1.1 of the
    attack at x0.01 of the rank-16 truncation norm (per-coordinate bounds gave
    1.5-1.7)."""
    cell = random_cell("elman", 32, 4, spectral_norm=0.9, seed=0)
    W = cell.W
    U, s, Vt = np.linalg.svd(W)
    eps0 = np.linalg.norm(W - (U[:, :16] * s[:16]) @ Vt[:16])
    X = np.random.default_rng(10).standard_normal((10, 4))
    S = sets.Ball(radius=0.01 * eps0)
    b = set_bound(cell, S, X)[-1]
    lo, _ = set_attack(cell, S, X, seed=0, iters=5, restarts=0)
    assert lo <= b <= 1.1 * lo


# ---------------------------------------------------------------- carried Gram matrices
def _exact_fro_gap(M, G):
    """||M M^T - G||_F^2 in exact rational arithmetic (M (n, N), G (n, n) floats)."""
    from fractions import Fraction
    F = [[Fraction(float(x)) for x in row] for row in M]
    tot = Fraction(0)
    for i in range(len(F)):
        for k in range(len(F)):
            d = sum(a * b for a, b in zip(F[i], F[k])) - Fraction(float(G[i, k]))
            tot += d * d
    return tot


def _holds(M, G, e):
    from fractions import Fraction
    return all(_exact_fro_gap(M[b], G[b]) <= Fraction(float(e[b])) ** 2 for b in range(len(M)))


def _worst_start(M, v, delta):
    """A float Gram of M off by delta v v^T (the direction the next operation amplifies
    most), with its exact error (rounded up) as the declared bound."""
    import math
    G = M @ np.swapaxes(M, 1, 2) + delta[:, None, None] * (v[:, :, None] * v[:, None, :])
    e = np.array([math.sqrt(float(_exact_fro_gap(M[b], G[b]))) for b in range(len(M))])
    return G, np.nextafter(e * (1 + 1e-15), np.inf)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 4), B=st.integers(1, 2), seed=st.integers(0, 10 ** 6),
       lm=st.sampled_from([-60, -3, 0, 3, 60]), la=st.floats(-2, 2),
       ld=st.sampled_from([-14, -8, -2]))
def test_carried_gram_bounds_hold_exactly(n, B, seed, lm, la, ld):
    r"""The carried Gram's three updates (product by a matrix, the fresh term of a
    set matrix, a row scaling) against the exact Gram of the stored float matrices
    (rational arithmetic), starting from a Gram whose error is exactly its bound
    and points where the update amplifies it most."""
    from rnnperturb.bounds.set_bound import (_gram_block_add, _gram_matvec, _gram_row_scaled,
                                             _lmul)
    from rnnperturb.verified.linalg import frobenius_upper, spectral_norm_upper
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((B, n, n * n)) * 10.0 ** lm
    M[:, 0] *= 1e-9                                    # a row far smaller than the others
    A = rng.standard_normal((n, n)) * 10.0 ** la
    v = np.linalg.svd(A)[2][0]                         # top right singular vector of A
    G, e = _worst_start(M, np.broadcast_to(v, (B, n)),
                        10.0 ** ld * np.linalg.norm(M, axis=(1, 2)) ** 2)
    # product by A
    G1, e1 = _gram_matvec(G, e, A, float(spectral_norm_upper(A)), float(frobenius_upper(A)))
    M1 = _lmul(A, M)
    assert _holds(M1, G1, e1)
    # the fresh term of the set matrix: blk[b, a, j] added at [a, (a, j)]
    G1, e1 = _worst_start(M1, rng.standard_normal((B, n)), 10.0 ** ld * e1)
    blk = rng.standard_normal((B, n, n)) * 10.0 ** (lm + la)
    A4 = M1.reshape(B, n, n, n)
    G2, e2 = _gram_block_add(G1, e1, A4, blk)
    M2 = M1.copy()
    idx = np.arange(n)
    M2.reshape(B, n, n, n)[:, idx, idx, :] = A4[:, idx, idx, :] + blk
    assert _holds(M2, G2, e2)
    # row scaling by activation slopes in (0, 1], one of them tiny
    s = rng.uniform(0.01, 1.0, (B, n))
    s[:, -1] = 1e-12
    i = int(np.argmax(s[0]))
    G2, e2 = _worst_start(M2, np.broadcast_to(np.eye(n)[i], (B, n)),
                          10.0 ** ld * np.linalg.norm(M2, axis=(1, 2)) ** 2)
    G3, e3 = _gram_row_scaled(G2, e2, s)
    assert _holds(M2 * s[..., None], G3, e3)
    # each bound is not far above the error it has to cover (no vacuous slack; the
    # absolute floor of up(), 1e-120 under a square root, is 1e-60 x gamma_3)
    import math
    gap3 = max(math.sqrt(float(_exact_fro_gap((M2 * s[..., None])[b], G3[b])))
               for b in range(B))
    assert e3.max() <= 1e3 * gap3 + 1e-9 * np.linalg.norm(G3) + 1e-74


def test_carried_gram_is_used_and_agrees_with_fresh_products(monkeypatch):
    """At the shipped size threshold (40 rows) a contractive Elman net carries its
    Grams (fresh O(n^4) products on a few steps only), and the bound agrees with the
    all-fresh bound to rounding level; an expanding net falls back to fresh products
    where the carried error bound grows too fast, and agrees too."""
    import importlib
    mod = importlib.import_module("rnnperturb.bounds.set_bound")
    assert mod.GRAM_CARRY_MIN_ROWS == 40
    calls = []
    orig = mod._gram
    monkeypatch.setattr(mod, "_gram", lambda M: calls.append(M.shape[0]) or orig(M))
    X = np.random.default_rng(3).standard_normal((30, 2, 3))
    for sn, most in ((0.9, 0.1), (3.0, 1.0)):
        cell = random_cell("elman", 40, 3, spectral_norm=sn, seed=1)
        S = sets.Ball(radius=1e-4)
        calls.clear()
        b = set_bound(cell, S, X)
        fresh = sum(calls)
        monkeypatch.setattr(mod, "GRAM_CARRY_MIN_ROWS", 10 ** 9)
        calls.clear()
        b0 = set_bound(cell, S, X)
        monkeypatch.setattr(mod, "GRAM_CARRY_MIN_ROWS", 40)
        assert sum(calls) >= 2 * 30 * 2              # pre- and post-activation, every step
        assert fresh <= most * sum(calls)
        np.testing.assert_allclose(b, b0, rtol=1e-9)
