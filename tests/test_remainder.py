"""Exact interval remainders and slope bounds of tanh and the sigmoid, checked
against dense sampling evaluated in mpmath (independent reference), and the
libm accuracy assumption the float path relies on."""
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnnperturb.verified.activation import (LIBM_ULPS, SIGMOID_KAPPA, TANH_KAPPA, act_error,
                                           secant_enclosure, slope_max, slope_min,
                                           taylor_remainder_max)

KINDS = ["tanh", "sigmoid"]


def _mp_phi(kind, x):
    x = mpmath.mpf(x)
    return mpmath.tanh(x) if kind == "tanh" else 1 / (1 + mpmath.exp(-x))


def _mp_dphi(kind, x):
    x = mpmath.mpf(x)
    if kind == "tanh":
        return 1 / mpmath.cosh(x) ** 2
    s = 1 / (1 + mpmath.exp(-x))
    return s * (1 - s)


def _dps(a, lo, hi):
    """Enough digits that a + δ and the cancellation in g are resolved."""
    scale = max(abs(lo), abs(hi), 1e-300)
    return int(min(900, 60 + 3 * max(0.0, -np.log10(scale)) + np.log10(1 + abs(a))))


def _mp_remainder_max(kind, a, lo, hi, k=400):
    """Dense-sampled max of |φ(a+δ) − φ(a) − φ'(a)δ| in high precision (a
    lower bound of the true max)."""
    with mpmath.workdps(_dps(a, lo, hi)):
        a_ = mpmath.mpf(a)
        pa, da = _mp_phi(kind, a_), _mp_dphi(kind, a_)
        ds = [mpmath.mpf(lo) + (mpmath.mpf(hi) - mpmath.mpf(lo)) * i / k for i in range(k + 1)]
        best = max(abs(_mp_phi(kind, a_ + d) - pa - da * d) for d in ds)
        return best


def _mp_secant_range(kind, c, rho, pc, s, k=200):
    """min and max over |d| <= rho of phi(c + d) - pc - s d in high precision: dense
    samples plus the exact roots of phi'(x) = s (where the extremes are)."""
    with mpmath.workdps(_dps(c, -rho, rho) + 20):
        c_, r_, s_, p_ = (mpmath.mpf(v) for v in (c, rho, s, pc))
        ds = [-r_ + 2 * r_ * i / k for i in range(k + 1)]
        if s_ > 0:
            if kind == "tanh":
                x = mpmath.acosh(1 / mpmath.sqrt(s_)) if s_ <= 1 else None
            else:
                x = 2 * mpmath.atanh(mpmath.sqrt(1 - 4 * s_)) if 4 * s_ <= 1 else None
            if x is not None:
                ds += [x - c_ for x in (x, -x) if abs(x - c_) <= r_]
        vals = [_mp_phi(kind, c_ + d) - p_ - s_ * d for d in ds]
        return min(vals), max(vals)


def _check_secant(kind, c, rho):
    from rnnperturb.verified.activation import activation
    from rnnperturb.cells.namespace import sigmoid
    pc = float((np.tanh if kind == "tanh" else sigmoid)(np.array([c]))[0])
    s, o, e, ok = (np.asarray(v).ravel()[0] for v in
                   secant_enclosure(kind, np.array([c]), np.array([rho]), np.array([pc])))
    if not ok:
        return None
    assert 0 <= s <= (1 if kind == "tanh" else 0.25)
    lo, hi = _mp_secant_range(kind, c, rho, pc, s)
    assert mpmath.mpf(float(o)) - mpmath.mpf(float(e)) <= lo
    assert hi <= mpmath.mpf(float(o)) + mpmath.mpf(float(e))
    return float(e), float((hi - lo) / 2)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None)
@given(c=st.one_of(st.floats(-3, 3), st.floats(-40, 40), st.floats(-1e-3, 1e-3)),
       logr=st.floats(-9, 1.5), straddle=st.booleans())
def test_secant_enclosure_contains_the_chord_error(kind, c, logr, straddle):
    r"""For every :math:`|d| \le \rho`, :math:`\varphi(c + d) - \tilde\varphi(c) - sd`
    lies in :math:`[o - e, o + e]` (mpmath, dense samples and the exact extremes), on
    one-signed and on straddling ranges (``straddle``: :math:`|c| < \rho`); the
    enclosure is within 1 % (plus rounding) of the exact half-width."""
    rho = 10.0 ** logr
    if straddle:
        c = float(np.clip(c, -0.9 * rho, 0.9 * rho))
    out = _check_secant(kind, c, rho)
    if out is not None:
        e, half = out
        assert e <= 1.01 * half + 1e-13 * (1 + abs(c))


def test_secant_enclosure_regimes():
    """Straddling, one-signed, saturated and wide ranges (both roots inside, one, none),
    and that it declines only where the root cannot be bracketed (tiny ranges at the
    inflection)."""
    for kind in KINDS:
        for c, rho in ((0.3, 1.0), (-0.3, 1.0), (0.0, 2.0), (0.05, 0.1), (-0.05, 0.1),
                       (1.0, 0.5), (-2.0, 0.01), (5.0, 3.0), (-20.0, 1.0), (0.0, 30.0),
                       (0.7, 1e-4), (3.0, 1e-8), (-1.5, 0.2)):
            assert _check_secant(kind, c, rho) is not None, (kind, c, rho)
    # the tangent is the better choice where c is at the inflection and rho tiny
    out = secant_enclosure("tanh", np.array([1e-5]), np.array([1e-9]), np.tanh([1e-5]))
    assert out[3].dtype == bool


def test_kappa_constants_match_mpmath():
    # sup |tanh''| at tanh = 1/sqrt3, sup |sigma''| at sigma = 1/2 ± 1/(2 sqrt3)
    t = mpmath.findroot(lambda x: mpmath.diff(mpmath.tanh, x, 3), 0.66)
    assert abs(float(abs(mpmath.diff(mpmath.tanh, t, 2))) - TANH_KAPPA) < 1e-12
    sig = lambda x: 1 / (1 + mpmath.exp(-x))  # noqa: E731
    s = mpmath.findroot(lambda x: mpmath.diff(sig, x, 3), 1.3)
    assert abs(float(abs(mpmath.diff(sig, s, 2))) - SIGMOID_KAPPA) < 1e-12


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None)
@given(a=st.floats(-12, 12), lo=st.floats(-8, 0), hi=st.floats(0, 8))
def test_remainder_is_exact_max(kind, a, lo, hi):
    """Upper bound of the dense mpmath max, and equal to it (the max is at an
    end point or at δ = −2a), up to the sampling resolution."""
    R = float(taylor_remainder_max(kind, a, lo, hi))
    ref = _mp_remainder_max(kind, a, lo, hi)
    assert R >= float(ref) * (1 - 1e-12)
    # exactness: the candidates are in the sample set implicitly only when
    # they are grid points, so compare against the candidate values directly
    with mpmath.workdps(_dps(a, lo, hi)):
        cands = [lo, hi] + ([-2 * a] if lo <= -2 * a <= hi else [])
        a_ = mpmath.mpf(a)
        exact = max(abs(_mp_phi(kind, a_ + mpmath.mpf(d)) - _mp_phi(kind, a_)
                        - _mp_dphi(kind, a_) * mpmath.mpf(d)) for d in cands)
        # no interior maximum missed (up to the reference's own resolution)
        noise = mpmath.mpf(10) ** (10 - _dps(a, lo, hi))
        assert exact >= ref * (1 - mpmath.mpf(10) ** -60) - noise
    # tight up to the rounding floor of the evaluation (~eps |φ'(a) δ|)
    assert R <= float(exact) * (1 + 1e-6) + 1e-13 * max(abs(lo), abs(hi)) + 1e-100


@pytest.mark.parametrize("kind", KINDS)
def test_remainder_tiny_and_huge_intervals(kind):
    """Cancellation for tiny δ (Lagrange bound takes over) and saturation."""
    for a in [0.0, 0.3, -2.0, 30.0, -700.0]:
        for w in [1e-14, 1e-9, 1e-4, 50.0]:
            R = float(taylor_remainder_max(kind, a, -w, w))
            ref = float(_mp_remainder_max(kind, a, -w, w, k=100))
            assert R >= ref
            kappa = TANH_KAPPA if kind == "tanh" else SIGMOID_KAPPA
            assert R <= 0.5 * kappa * w * w * (1 + 1e-12) + 1e-100
            if abs(a) < 5:   # tight up to the rounding floor ~eps |φ'(a)| w
                assert R <= ref * 1.01 + 1e-13 * w + 1e-100


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None)
@given(x=st.floats(-40, 40), w=st.floats(0, 10))
def test_slope_bounds(kind, x, w):
    lo, hi = x, x + w
    smax = float(slope_max(kind, lo, hi))
    smin = float(slope_min(kind, lo, hi))
    with mpmath.workdps(40):
        vals = [_mp_dphi(kind, lo + w * i / 200) for i in range(201)]
        vals += [_mp_dphi(kind, 0)] if lo <= 0 <= hi else []
    assert smax >= float(max(vals))
    assert smin <= float(min(vals))
    assert smax <= float(max(vals)) * (1 + 1e-12) + 1e-100


@pytest.mark.parametrize("kind", KINDS)
def test_libm_accuracy_assumption(kind):
    """The float path assumes |fl(φ(x)) − φ(x)| ≤ act_error·|fl(φ(x))|; check it
    (with margin LIBM_ULPS) against mpmath on a spread of arguments."""
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.standard_normal(300) * 3, rng.uniform(-40, 40, 200),
                         10.0 ** rng.uniform(-300, 0, 100) * rng.choice([-1, 1], 100)])
    if kind == "tanh":
        f = np.tanh(xs)
    else:
        e = np.exp(-np.abs(xs))
        f = np.where(xs >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    eps = act_error(kind)
    with mpmath.workdps(40):
        for x, y in zip(xs, f):
            ref = _mp_phi(kind, float(x))
            assert abs(mpmath.mpf(float(y)) - ref) <= eps * abs(float(y)) + 1e-120, x
    assert LIBM_ULPS >= 4


def test_libm_cosh_sinh_accuracy():
    """cosh and sinh (used by the slopes and by the difference quotient of the
    remainder) are assumed as accurate as tanh."""
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.standard_normal(300) * 3, rng.uniform(-700, 700, 200),
                         10.0 ** rng.uniform(-300, 0, 100)])
    eps = act_error("tanh")
    with mpmath.workdps(40):
        for x in xs:
            for f, g in ((np.cosh, mpmath.cosh), (np.sinh, mpmath.sinh)):
                y = float(f(x))
                assert abs(mpmath.mpf(y) - g(mpmath.mpf(float(x)))) <= eps * abs(y) + 1e-300, x


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        taylor_remainder_max("relu", 0.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="lo"):
        taylor_remainder_max("tanh", 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="kind"):
        slope_max("softplus", 0.0, 1.0)
