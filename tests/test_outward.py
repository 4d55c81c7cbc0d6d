"""The outward-rounded kernels of rnnperturb.verified.outward against independent references.

Every kernel claims to bound an exact quantity from one side. The references
are exact: rational arithmetic (``fractions``) for sums and products, mpmath at
200 bits for tanh, the sigmoid, their slopes, norms and eigenvalues; NumPy and
SciPy only as second opinions on larger matrices. Tightness checks make sure
a kernel that returned, say, ``inf`` or a row sum everywhere would fail too.
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnnperturb.verified import outward as ow
from rnnperturb.verified.linalg import U64, spectral_norm_upper, up

mp = mpmath.mp
PREC = 200
FAST = settings(max_examples=60, deadline=None)


@pytest.fixture(autouse=True)
def _mp_precision():
    with mpmath.workprec(PREC):
        yield


def M(x):
    return mpmath.mpf(float(x))


#: Relative slack for the 200-bit references' own rounding (far below any float64 margin).
SLACK = mpmath.mpf(2) ** -180


def ge(a, exact):
    """Float ``a`` >= the mpmath value ``exact`` (up to the reference's rounding)."""
    return M(a) >= exact - SLACK * abs(exact)


def le(a, exact):
    return M(a) <= exact + SLACK * abs(exact)


def _points():
    """Arguments where directed rounding usually breaks: 0, subnormals, tiny, the
    range where tanh/sigmoid round to 1 or cancel, huge."""
    rng = np.random.default_rng(7)
    pos = np.concatenate([
        [0.0, 5e-324, 1e-310, 1e-300, 1e-200, 1e-20, 1e-8, 1e-4, 0.1, 0.5, 1.0, 2.0, 3.0,
         5.0, 10.0, 17.0, 18.5, 19.0, 20.0, 25.0, 36.0, 37.0, 38.0, 40.0, 100.0, 700.0,
         710.0, 745.0, 800.0, 1e10, 1e300, np.finfo(float).max],
        np.logspace(-12, 2.9, 300), rng.uniform(0, 40, 300)])
    return pos


POS = _points()
REAL = np.concatenate([POS, -POS])


def _exact_tanh(x):
    return mpmath.tanh(M(x))


def _exact_sig(x):
    return 1 / (1 + mpmath.exp(-M(x)))


# ------------------------------------------------------------ directed rounding
@FAST
@given(st.lists(st.floats(0, 1e10, allow_subnormal=True), min_size=1, max_size=40))
def test_dn_and_up_bracket_a_computed_sum(xs):
    v = np.array(xs)
    exact = sum(Fraction(float(x)) for x in v)
    s = np.sum(v)
    assert Fraction(float(ow.dn(s, len(v)))) <= exact <= Fraction(float(up(s, len(v))))


@FAST
@given(st.floats(0, 1e150), st.floats(0, 1e150))
def test_dn_of_a_product(a, b):
    assert Fraction(float(ow.dn(a * b, 1))) <= Fraction(a) * Fraction(b)


def test_dn_is_not_far_below():
    x = np.array([1.0, 3.5, 1e-5, 1e200])
    for k in (1, 5, 100):
        d = ow.dn(x, k)
        assert np.all(d <= x) and np.all(d >= x * (1 - 2 * (k + 3) * U64))
    assert ow.dn(0.0) == 0.0 and ow.dn(1e-310) == 0.0      # never negative


@FAST
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2 ** 32 - 1),
       st.sampled_from([1.0, 1e-150, 1e150]))
def test_mv_up_bounds_the_exact_product(r, c, seed, scale):
    rng = np.random.default_rng(seed)
    A = np.abs(rng.standard_normal((r, c))) * scale
    for v in (np.abs(rng.standard_normal(c)), np.abs(rng.standard_normal((c, 2)))):
        got = ow.mv_up(A, v)
        exact = [[sum(Fraction(float(A[i, j])) * Fraction(float(vv[j])) for j in range(c))
                  for i in range(r)] for vv in (v.T if v.ndim == 2 else v[None, :])]
        got2 = got.T if v.ndim == 2 else got[None, :]
        assert got2.shape == (len(exact), r)
        for g, e in zip(got2, exact):
            assert all(Fraction(float(gi)) >= ei for gi, ei in zip(g, e))
            assert all(float(gi) <= float(ei) * (1 + 1e-13) + 1e-100 for gi, ei in zip(g, e))


@FAST
@given(st.lists(st.floats(0, 1e150), min_size=1, max_size=50))
def test_vec_norm_up_bounds_the_exact_norm(xs):
    v = np.array(xs)
    exact = mpmath.sqrt(mpmath.fsum(M(x) ** 2 for x in v))
    got = ow.vec_norm_up(v)
    assert ge(got, exact)
    assert got <= float(exact) * (1 + 1e-13) + 1e-59        # + sqrt of the 1e-120 of up


def test_vec_norm_up_tiny_and_zero():
    assert ow.vec_norm_up(np.zeros(4)) > 0                     # the tiny absolute term
    v = np.full(3, 1e-170)                                     # squares underflow
    assert ge(ow.vec_norm_up(v), mpmath.sqrt(3) * M(1e-170))


# ------------------------------------------------------------------- norm_up
def _exact_norm(A):
    """Largest singular value of a small float matrix, in mpmath."""
    A = np.atleast_2d(A)
    S = mpmath.svd_r(mpmath.matrix(A.tolist()), compute_uv=False)
    return max(S[i] for i in range(S.rows)) if S.rows else mpmath.mpf(0)


def _adversarial():
    rng = np.random.default_rng(3)
    mats = [np.zeros((3, 3)), np.eye(5), -np.eye(4) * 1e-300, np.array([[5e-324]]),
            np.array([[1e150, 1e-150], [0.0, 1e150]]), np.ones((6, 6)),
            np.triu(np.ones((6, 6))),                              # ill-conditioned
            np.diag(np.ones(5), 1) * 1e3 + np.eye(6),              # Jordan-like
            np.linalg.qr(rng.standard_normal((6, 6)))[0],          # all singular values 1
            1.0 / (np.arange(1, 7)[:, None] + np.arange(6)[None, :]),   # Hilbert
            np.outer(rng.standard_normal(5), rng.standard_normal(4)),  # rank 1
            rng.standard_normal((2, 7)), rng.standard_normal((7, 2))]
    return mats


@pytest.mark.parametrize("A", _adversarial(), ids=lambda A: f"{A.shape}")
def test_norm_up_adversarial_against_mpmath(A):
    got = ow.norm_up(A)
    assert ge(got, _exact_norm(A))
    assert got >= np.linalg.norm(A, 2)
    assert got <= float(_exact_norm(A)) * (1 + 1e-10) + 1e-73   # k u sqrt(1e-120) floor


@pytest.mark.parametrize("seed", range(6))
def test_norm_up_random_against_numpy(seed):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 5, 16, 40):
        A = rng.standard_normal((n, n + seed % 3)) * 10.0 ** rng.integers(-5, 5)
        assert ow.norm_up(A) >= np.linalg.norm(A, 2)
        assert ow.norm_up(A) <= np.linalg.norm(A, 2) * (1 + 1e-10)


@pytest.mark.parametrize("k", [1, 8, 16])
def test_norm_up_covers_the_entry_errors_it_claims(k):
    """An entrywise relative error of k/2 ulp (k u), aligned with the matrix, raises the
    norm by the factor 1 + k u; for 1x1 and one-row matrices nothing else has that much
    slack, so dropping the k u ||M||_F term fails here."""
    for A in (np.array([[1.7]]), np.array([[0.3, -2.1, 0.9]]), np.array([[3.0], [4.0]])):
        exact = _exact_norm(A) * (1 + k * mpmath.mpf(2) ** -53)
        assert ge(ow.norm_up(A, k), exact)


# --------------------------------------------------------------- activations
def test_tanh_up_dn_bracket_tanh_at_hard_points():
    for x in POS:
        t = _exact_tanh(x)
        assert le(ow.tanh_dn(x), t) and ge(ow.tanh_up(x), t), x
        assert 0.0 <= ow.tanh_dn(x) <= ow.tanh_up(x) <= 1.0


@FAST
@given(st.floats(0, 1e308, allow_subnormal=True))
def test_tanh_up_dn_hypothesis(x):
    t = _exact_tanh(x)
    lo, hi = ow.tanh_dn(x), ow.tanh_up(x)
    assert le(lo, t) and ge(hi, t)
    assert hi - lo <= 32 * U64 * float(t) + 1e-299            # tight, not just valid


def test_sig_up_dn_bracket_sigmoid_on_the_whole_line():
    """Including far below 0, where 1/2 (1 + tanh(a/2)) cancels (and rounds to 0)."""
    for x in REAL:
        s = _exact_sig(x)
        assert le(ow.sig_dn(x), s) and ge(ow.sig_up(x), s), x
        assert 0.0 <= ow.sig_dn(x) <= ow.sig_up(x) <= 1.0


@FAST
@given(st.floats(-1e308, 1e308, allow_subnormal=True))
def test_sig_up_dn_hypothesis(x):
    s = _exact_sig(x)
    lo, hi = ow.sig_dn(x), ow.sig_up(x)
    assert le(lo, s) and ge(hi, s)
    assert hi - lo <= 200 * U64 * float(s) + 1e-119            # relatively tight


def test_sig_vectorised_matches_scalar():
    x = REAL[:50]
    assert np.array_equal(ow.sig_up(x), [ow.sig_up(v) for v in x])
    assert np.array_equal(ow.sig_dn(x), [ow.sig_dn(v) for v in x])


def _exact_dtanh(x):
    return 1 / mpmath.cosh(M(x)) ** 2


def _exact_dsig(x):
    e = mpmath.exp(-abs(M(x)))            # not s (1 - s): that cancels at any precision
    return e / (1 + e) ** 2


@pytest.mark.parametrize("name, exact, cap",
                         [("tanh_slope_up", _exact_dtanh, 1.0), ("sig_slope_up", _exact_dsig, 0.25)])
def test_slope_bounds_at_hard_points(name, exact, cap):
    """max over |a| >= lo of the slope is the slope at max(lo, 0) (negative lo: at 0)."""
    f = getattr(ow, name)
    for lo in REAL:
        g = f(lo)
        assert ge(g, exact(max(lo, 0.0))), lo
        assert 0.0 <= g <= cap
    vals = f(np.sort(REAL))
    assert np.all(np.diff(vals) <= 0)                          # non-increasing in lo
    assert f(-3.0) == cap and f(0.0) == cap


@FAST
@given(st.floats(0, 800))
def test_slope_bounds_hypothesis(lo):
    assert ge(ow.tanh_slope_up(lo), _exact_dtanh(lo))
    assert ge(ow.sig_slope_up(lo), _exact_dsig(lo))
    # tight: tanh's within an absolute few u (it is 1 - tanh^2), sigma's relatively
    assert ow.tanh_slope_up(lo) <= float(_exact_dtanh(lo)) * (1 + 1e-13) + 64 * U64
    assert ow.sig_slope_up(lo) <= float(_exact_dsig(lo)) * (1 + 1e-12) + 1e-119


# ---------------------------------------------------------------- forcing_sup
def _exact_box_norm(A, u, scale=1):
    """max over |h| <= u of ||scale A h||_2: a convex function, so at a vertex (mpmath)."""
    Am = mpmath.matrix(A.tolist()) * scale
    best = mpmath.mpf(0)
    for signs in itertools.product((-1, 1), repeat=len(u)):
        h = mpmath.matrix([sg * M(ui) for sg, ui in zip(signs, u)])
        best = max(best, mpmath.norm(Am * h, 2))
    return best


@FAST
@given(st.integers(1, 5), st.integers(1, 7), st.integers(0, 2 ** 32 - 1),
       st.sampled_from(["normal", "rank1", "zero-col", "tiny-box", "spread"]))
def test_forcing_sup_bounds_the_box_norm(r, n, seed, shape):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((r, n))
    u = rng.uniform(0, 1, n)
    if shape == "rank1":
        A = np.outer(rng.standard_normal(r), rng.standard_normal(n))
    elif shape == "zero-col":
        A[:, 0] = 0.0
        u[-1] = 0.0
    elif shape == "tiny-box":
        u[0] = 1e-200
    elif shape == "spread":
        A *= 10.0 ** rng.integers(-3, 4, size=(1, n))
    got = ow.forcing_sup(A, u)
    exact = _exact_box_norm(A, u)
    assert ge(got, exact)
    # and its own entry-error allowance: every entry of A off by 4u, in the worst direction
    assert ge(got, _exact_box_norm(A, u, 1 + 4 * mpmath.mpf(2) ** -53))
    # not vacuous: never above the sum of column norms times the box (the first method)
    assert got <= float(np.sum(np.linalg.norm(A, axis=0) * u)) * (1 + 1e-12) + 1e-73


def test_forcing_sup_exact_cases():
    A = np.array([[3.0], [4.0]])
    got = ow.forcing_sup(A, np.array([2.0]))
    assert 10.0 <= got <= 10.0 * (1 + 1e-13)                   # ||A|| u, one column
    assert ow.forcing_sup(A, np.zeros(1)) == 0.0
    assert ow.forcing_sup(np.zeros((2, 2)), np.ones(2)) == 0.0
    # an all-ones matrix: the vertex h = u gives ||A||_2 ||u||_2 exactly
    A = np.ones((4, 4))
    got = ow.forcing_sup(A, np.ones(4))
    assert 8.0 <= got <= 8.0 * (1 + 1e-12)


# ------------------------------------------------------- Perron and rates
def _positive(n, seed):
    return np.random.default_rng(seed).uniform(0.01, 1.0, (n, n))


@pytest.mark.parametrize("seed", range(5))
def test_perron_matches_the_leading_eigenvector(seed):
    for n in (1, 2, 5, 20):
        A = _positive(n, seed + 10 * n)
        v = ow.perron(A)
        w, V = np.linalg.eig(A)
        x = np.abs(np.real(V[:, np.argmax(np.abs(w))]))
        x /= np.min(x)
        assert np.min(v) == 1.0 and np.all(v > 0)
        np.testing.assert_allclose(v, x, rtol=1e-8)


def test_perron_degenerate_inputs_stay_positive():
    for A in (np.zeros((3, 3)), np.diag([1.0, 0.5, 0.0]), np.array([[0.0, 1.0], [0.0, 0.0]]),
              np.array([[0.5, 1.0], [0.0, 0.9]])):
        v = ow.perron(A)
        assert np.all(np.isfinite(v)) and np.all(v > 0) and np.min(v) == 1.0


def _exact_radius(A):
    if A.shape == (1, 1):
        return abs(M(A[0, 0]))
    E = mpmath.eig(mpmath.matrix(A.tolist()), left=False, right=False)
    return max(abs(e) for e in E)


@FAST
@given(st.integers(1, 5), st.integers(0, 2 ** 32 - 1),
       st.sampled_from(["positive", "sparse", "triangular", "zero", "permutation"]))
def test_cw_rate_bounds_the_spectral_radius(n, seed, shape):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0, 2, (n, n))
    if shape == "sparse":
        A *= rng.uniform(size=(n, n)) < 0.4
    elif shape == "triangular":
        A = np.triu(A)
    elif shape == "zero":
        A[:] = 0.0
    elif shape == "permutation":
        A = np.eye(n)[rng.permutation(n)] * 0.7
    got = ow.cw_rate(A)
    assert ge(got, _exact_radius(A))
    assert got <= float(np.max(up(A.sum(axis=1), n)))           # never worse than row sums
    if shape == "positive":                                    # Perron converged: tight
        assert got <= float(_exact_radius(A)) * (1 + 1e-8)


def test_cw_rate_covers_the_rounding_of_an_exact_perron_vector():
    """Circulant matrices: the Perron vector is exactly ones and rho is the exact row
    sum, so max (A s)_i / s_i carries only its own rounding, which must be covered."""
    rng = np.random.default_rng(11)
    for n in (2, 3, 4, 5, 7):
        for _ in range(8):
            c = rng.uniform(0, 1, n)
            A = np.array([np.roll(c, k) for k in range(n)])
            rho = sum(Fraction(float(x)) for x in c)
            assert Fraction(ow.cw_rate(A)) >= rho


def test_cw_rate_large_against_numpy():
    for seed in range(4):
        A = _positive(30, seed) * np.random.default_rng(seed).uniform(size=(30, 1))
        rho = np.max(np.abs(np.linalg.eigvals(A)))
        got = ow.cw_rate(A)
        assert rho <= got <= rho * (1 + 1e-8)


# -------------------------------------------------------------- scalings
def test_optimise_scaling_finds_the_similarity():
    """M = D A D^-1 with A symmetric: min over S of ||S M S^-1||_2 is rho(M) = ||A||_2,
    at S = D^-1 (up to a constant); the local optimiser from ones gets there."""
    rng = np.random.default_rng(0)
    n = 6
    B = rng.standard_normal((n, n))
    A = (B + B.T) / 2
    d = np.exp(rng.uniform(-1.5, 1.5, n))
    Mx = d[:, None] * A / d[None, :]
    s = ow.optimise_scaling(Mx, np.ones(n), maxiter=200)
    assert np.min(s) == 1.0 and np.all(s > 0) and np.max(s) <= np.exp(8.0) * (1 + 1e-12)
    got = np.linalg.norm(s[:, None] * Mx / s[None, :], 2)
    assert np.linalg.norm(Mx, 2) > 1.2 * np.linalg.norm(A, 2)       # the scaling matters
    assert got <= np.linalg.norm(A, 2) * (1 + 1e-3)


@pytest.mark.parametrize("seed", range(4))
def test_optimise_scaling_never_worse_than_its_start(seed):
    rng = np.random.default_rng(seed)
    Mx = rng.standard_normal((8, 8))
    s0 = ow.perron(np.abs(Mx))
    s = ow.optimise_scaling(Mx, s0)
    x0 = np.clip(np.log(s0), -4, 4)
    s0c = np.exp(x0 - np.min(x0))
    f = lambda t: np.linalg.norm(t[:, None] * Mx / t[None, :], 2)   # noqa: E731
    assert f(s) <= f(s0c) * (1 + 1e-12)
    assert np.min(s) == 1.0 and np.max(s) <= np.exp(8.0) * (1 + 1e-12)


# ------------------------------------------------------------ fixed points
@pytest.mark.parametrize("seed", range(5))
def test_descend_fixed_point_affine(seed):
    r"""step(V) = M V + f (M >= 0, rho < 1), start = a valid cap: the result bounds
    every iterate e_t = M e_{t-1} + f from 0 and is close to the fixed point (I - M)^-1 f."""
    rng = np.random.default_rng(seed)
    n = 5
    Mx = rng.uniform(0, 1, (n, n))
    Mx *= 0.8 / np.max(np.abs(np.linalg.eigvals(Mx)))
    f = rng.uniform(0, 1, n)
    fix = np.linalg.solve(np.eye(n) - Mx, f)
    start = fix * 3.0 + 1.0
    V = ow.descend_fixed_point(lambda E: up(ow.mv_up(Mx, E) + f, 2), start)
    assert np.all(V <= start)
    e = np.zeros(n)
    for _ in range(500):
        e = Mx @ e + f
        assert np.all(e <= V)
    np.testing.assert_allclose(V, fix, rtol=1e-9)


def test_descend_fixed_point_respects_a_lower_start():
    """A start below the fixed point is kept (min with start at every iteration)."""
    start = np.array([0.5, 2.0])
    V = ow.descend_fixed_point(lambda E: 0.5 * E + 1.0, start)
    assert np.all(V <= start)
    np.testing.assert_allclose(V, [0.5, 2.0])


def test_descend_fixed_point_stops():
    calls = []

    def step(E):
        calls.append(1)
        return E                                              # already a fixed point
    ow.descend_fixed_point(step, np.ones(3))
    assert len(calls) == 1
    calls.clear()
    ow.descend_fixed_point(lambda E: (calls.append(1), E * (1 - 1e-3))[1], np.ones(2))
    assert len(calls) == ow.FIXED_POINT_ITERS


# ------------------------------------------------------------------- layering
def test_layering_verified_knows_no_cells_or_bounds():
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(ow))
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and (m.startswith("rnnperturb.cells") or m.startswith("rnnperturb.bounds"))
                   for m in mods)


def test_cells_take_the_kernels_from_verified():
    import inspect
    from rnnperturb.cells import elman, mgru
    for mod in (elman, mgru):
        src = inspect.getsource(mod)
        for line in src.splitlines():
            if "rnnperturb.bounds" in line and "import" in line:
                assert line.strip().startswith("from rnnperturb.bounds.global_bound import Refined"), line
