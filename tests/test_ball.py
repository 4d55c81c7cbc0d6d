"""Ball (midpoint-radius) arithmetic, rnnperturb.verified.ball: every operation
encloses the exact (mpmath, 60 digits) range of its operation over the operand
balls, both radii (the box radius and the local-rounding radius); midpoints are
the float64 operations bit for bit; the generic rounding step of every cell
encloses the exact step at sampled points of the box, and its linear part
bounds r_t - J~ r_{t-1} against an mpmath evaluation."""
from __future__ import annotations

import itertools

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnnperturb.cells import FLOAT
from rnnperturb.cells.random import random_cell
from rnnperturb.cells.stacked import random_stacked
from rnnperturb.verified.ball import (Ball, BallNamespace, LinearBound, ball_rounding_context,
                                      ball_rounding_step)
from rnnperturb.verified.highprec import MP
from rnnperturb.verified.linalg import VerifiedMatrix

DPS = 60
NS = BallNamespace(exact=True)
NS_FAST = BallNamespace(exact=False)


def mpf(a):
    return np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(np.asarray(a, float))


def encloses(mid, rad, values):
    """Every value (object array of mpf, broadcast against mid) lies in [mid - rad, mid + rad],
    compared exactly in mpmath."""
    mid, rad = np.broadcast_arrays(np.asarray(mid, float), np.asarray(rad, float))
    vals = np.broadcast_to(values, mid.shape)
    with mpmath.workdps(DPS):
        for m, r, v in zip(mid.ravel(), rad.ravel(), vals.ravel()):
            if not abs(v - mpmath.mpf(float(m))) <= mpmath.mpf(float(r)):
                return False
    return True


@st.composite
def balls(draw, shape=(3, 4), scale=None):
    seed = draw(st.integers(0, 2 ** 31))
    rng = np.random.default_rng(seed)
    s = scale if scale is not None else 10.0 ** draw(st.sampled_from([-3, 0, 1]))
    mid = rng.standard_normal(shape) * s
    rexp = draw(st.sampled_from([-300, -16, -8, -3, -1, 0]))
    rad = rng.random(shape) * 10.0 ** rexp
    loc = rad * rng.random(shape)                       # the local radius is the smaller
    if draw(st.booleans()):
        rad[0] = 0.0
        loc[0] = 0.0
    return Ball(mid, rad, loc)


def corners(b, radius):
    """The two end points of each component of a ball, as mpf (exact)."""
    with mpmath.workdps(DPS):
        m, r = mpf(b.mid), mpf(np.broadcast_to(radius, b.shape))
        return [m - r, m + r]


def check_binary(a, b, out, op):
    """A bilinear or linear op: its range over the box is attained at the corners."""
    for which, ra, rb, ro in (("rad", a.rad, b.rad, out.rad), ("loc", a.loc, b.loc, out.loc)):
        with mpmath.workdps(DPS):
            vals = [op(x, y) for x in corners(a, ra) for y in corners(b, rb)]
        assert all(encloses(out.mid, ro, v) for v in vals), which


@settings(max_examples=30, deadline=None)
@given(a=balls(), b=balls())
def test_sum_difference_product_enclose_the_exact_range(a, b):
    for op in (lambda x, y: x + y, lambda x, y: x - y, lambda x, y: x * y):
        out = op(a, b)
        assert np.array_equal(out.mid, op(a.mid, b.mid))        # the float64 operation
        check_binary(a, b, out, op)
    c = np.random.default_rng(0).standard_normal(a.shape)        # exact constants
    for op in (lambda x, y: x + y, lambda x, y: y - x, lambda x, y: y * x, lambda x, y: 1 - x):
        out = op(a, c)
        assert np.array_equal(out.mid, op(a.mid, c))
        with mpmath.workdps(DPS):
            for ra, ro in ((a.rad, out.rad), (a.loc, out.loc)):
                assert all(encloses(out.mid, ro, op(x, mpf(c))) for x in corners(a, ra))


@settings(max_examples=30, deadline=None)
@given(a=balls(shape=(2, 5), scale=3.0), big=st.booleans())
def test_activations_enclose_the_exact_range(a, big):
    if big:                                         # saturated pre-activations
        a = Ball(a.mid * 30, a.rad, a.loc)
    for fun, ref in ((NS.tanh, mpmath.tanh), (NS.sigmoid, lambda v: 1 / (1 + mpmath.exp(-v)))):
        out = fun(a)
        assert np.array_equal(out.mid, FLOAT.tanh(a.mid) if fun == NS.tanh
                              else FLOAT.sigmoid(a.mid))
        for ra, ro in ((a.rad, out.rad), (a.loc, out.loc)):
            with mpmath.workdps(DPS):       # monotone: the range is between the end points
                vals = [np.vectorize(ref, otypes=[object])(x) for x in corners(a, ra)]
            assert all(encloses(out.mid, ro, v) for v in vals)


@settings(max_examples=25, deadline=None)
@given(v=balls(shape=(2, 3, 5)), seed=st.integers(0, 2 ** 31), stacked=st.booleans(),
       exact=st.booleans(), normed=st.booleans())
def test_matvec_encloses_the_exact_range(v, seed, stacked, exact, normed):
    """|A v - fl(A v~)| over the box: exactly sum_j |A_ij| r_j + |A v~ - fl(A v~)|,
    computed in mpmath; stacks (S, r, k) act on (S, B, k); with the state's norm bound."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((2, 4, 5) if stacked else (4, 5)) * 10.0 ** rng.integers(-2, 3)
    ns = NS if exact else NS_FAST
    if normed:
        rad = np.broadcast_to(v.rad, v.shape)
        v = Ball(v.mid, v.rad, v.loc, norm=np.sqrt((rad * rad).sum(-1)) * (1 + 1e-15))
    out = ns.matvec(VerifiedMatrix(A), v)
    assert np.array_equal(out.mid, mv(A, v.mid))                  # FLOAT's product
    with mpmath.workdps(DPS):
        Am = mpf(A)
        exact_mid = mv(Am, mpf(v.mid))
        for r, ro in ((v.rad, out.rad), (v.loc, out.loc)):
            spread = mv(np.abs(Am), mpf(np.broadcast_to(r, v.shape)))
            for sgn in (-1, 1):
                assert encloses(out.mid, ro, exact_mid + sgn * spread)
    # an exact (non-ball) operand: the rounding alone
    x = rng.standard_normal((3, 5))
    A2 = A[0] if stacked else A
    outx = ns.matvec(VerifiedMatrix(A2), x)
    assert np.array_equal(outx.mid, FLOAT.matvec(A2, x))
    with mpmath.workdps(DPS):
        assert encloses(outx.mid, outx.rad, mpf(x) @ mpf(A2).T)


def mv(A, V):
    """A v for a batch V (..., B, k): a stack A (S, r, k) acts on V[s]; else FLOAT.matvec."""
    if A.ndim == 3:
        return np.stack([V[s] @ A[s].T for s in range(A.shape[0])])
    if A.dtype == object:
        return V @ A.T
    return FLOAT.matvec(A, V)


@settings(max_examples=30, deadline=None)
@given(h=balls(shape=(2, 4)), c=balls(shape=(2, 4)), f=balls(shape=(2, 4), scale=1.0),
       gate=st.sampled_from(["inside", "any", "scalar"]))
def test_lerp_encloses_the_exact_range(h, c, f, gate):
    """(1-f)h + fc is multilinear in (f, h, c): its range over the box is attained at the
    8 corners; the gate inside [0, 1] (convex combination, hull), anywhere, or a constant."""
    if gate == "inside":
        fm = 0.05 + 0.9 * np.abs(np.tanh(f.mid))
        f = Ball(fm, np.minimum(f.rad, 0.04), np.minimum(f.loc, 0.04))
    if gate == "scalar":
        out = NS.lerp(h, c, 0.3)
        assert np.array_equal(out.mid, FLOAT.lerp(h.mid, c.mid, 0.3))
        for rh, rc, ro in ((h.rad, c.rad, out.rad), (h.loc, c.loc, out.loc)):
            with mpmath.workdps(DPS):
                a = mpmath.mpf(0.3)
                vals = [(1 - a) * x + a * y for x in corners(h, rh) for y in corners(c, rc)]
            assert all(encloses(out.mid, ro, v) for v in vals)
        return
    out = NS.lerp(h, c, f)
    assert np.array_equal(out.mid, FLOAT.lerp(h.mid, c.mid, f.mid))
    for rh, rc, rf, ro in ((h.rad, c.rad, f.rad, out.rad), (h.loc, c.loc, f.loc, out.loc)):
        with mpmath.workdps(DPS):
            vals = [(1 - z) * x + z * y for x, y, z in
                    itertools.product(corners(h, rh), corners(c, rc), corners(f, rf))]
        assert all(encloses(out.mid, ro, v) for v in vals)


def test_split_concat_slices_are_exact():
    rng = np.random.default_rng(0)
    b = Ball(rng.standard_normal((2, 3, 6)), rng.random((2, 3, 6)), 0.0)
    p, q = NS.split(b, 2)
    assert np.array_equal(p.mid, b.mid[..., :3]) and np.array_equal(q.rad, b.rad[..., 3:])
    j = NS.concat((p, q))
    assert np.array_equal(j.mid, b.mid) and np.array_equal(j.rad, b.rad)
    assert np.array_equal(j.loc, np.zeros((2, 3, 6)))
    lb = LinearBound(rng.random((3, 6)), 0.0)
    u, w = NS.split(lb, [2, 4])
    assert NS.concat((u, w)).M.shape == (3, 6)
    with pytest.raises(TypeError, match="linear"):
        lb * lb
    with pytest.raises(TypeError, match="constant"):
        lb + np.ones(6)


# ---------------------------------------------------------------- the rounding step
def _cells():
    return {
        "elman": random_cell("elman", 5, 2, spectral_norm=2.0, bias_scale=0.5, seed=1),
        "mgru": random_cell("mgru", 5, 2, spectral_norm=2.0, bias_scale=0.5, seed=2),
        "gru": random_cell("gru", 5, 2, spectral_norm=3.0, bias_scale=0.5, seed=3),
        "lstm": random_cell("lstm", 4, 2, spectral_norm=3.0, bias_scale=0.5, seed=4),
        "stacked": random_stacked(["gru", "lstm"], 3, 2, spectral_norm=2.0, seed=5),
    }


def _mp_step(cell, h, x):
    """The exact step (mpmath, DPS digits) at the states h (object (B, N))."""
    P = {k: MP.asarray(getattr(cell, k)) for k in cell.recurrent_names + cell.input_params}
    return cell.forward(MP, P, h, MP.asarray(x), lambda k, a: MP.matvec(P[k], a))[0]


@pytest.mark.parametrize("kind", ["elman", "mgru", "gru", "lstm", "stacked"])
@pytest.mark.parametrize("rexp", [-12, -4, -1])
def test_generic_step_encloses_the_exact_step_and_its_linear_part(kind, rexp):
    r"""At states xi sampled in the box (corners and interior): F(xi) in [h~_t +- rho_t];
    at the centre F(h~) in [h~_t +- loc]; and |F(xi) - h~_t - J~(xi - h~)| <= gam with J~
    the cell's float64 tangent coefficients applied exactly (mpmath)."""
    cell = _cells()[kind]
    rng = np.random.default_rng(rexp + 20)
    B, N = 2, cell.state_size
    h = np.tanh(rng.standard_normal((B, N)))
    rho = 10.0 ** rexp * rng.random((B, N))
    Nn = np.sqrt((rho * rho).sum(-1)) * (1 + 1e-15)
    x = rng.standard_normal((B, cell.m))
    ctx = ball_rounding_context(cell, cell.recurrent)          # one trajectory, (n, n)
    hn, rho_n, N_n, loc, (aux, gam) = ball_rounding_step(
        cell, ctx, h, rho, Nn, x, np.abs(x), None, True, True)
    assert np.array_equal(hn, cell.step(h, x)), "the midpoint is the float64 step"
    assert np.all(N_n >= np.sqrt((rho_n ** 2).sum(-1)))
    P = {k: np.asarray(getattr(cell, k), float) for k in cell.recurrent_names + cell.input_params}
    with mpmath.workdps(DPS):
        assert encloses(hn, loc, _mp_step(cell, mpf(h), x))
        for j in range(12):
            u = rng.choice([-1.0, 1.0], size=h.shape) if j < 6 else rng.uniform(-1, 1, h.shape)
            v = mpf(rho) * mpf(u)                              # xi - h~, exactly
            Fx = _mp_step(cell, mpf(h) + v, x)
            assert encloses(hn, rho_n, Fx)
            Jv = cell.tangent(FLOAT, P, h, aux, v, lambda k, w: w @ mpf(P[k]).T, lambda k: 0)
            assert encloses(np.zeros_like(hn), gam, Fx - mpf(hn) - Jv)


def test_generic_step_on_an_input_ball_fast_tier_is_looser_but_sound():
    cell = _cells()["gru"]
    rng = np.random.default_rng(1)
    h = np.tanh(rng.standard_normal((1, 2, 5)))                 # a stack of S = 1 trajectory
    rho = 1e-6 * rng.random((1, 2, 5))
    Nn = np.sqrt((rho * rho).sum(-1)) * (1 + 1e-15)
    x = rng.standard_normal((2, 2))
    ctx = ball_rounding_context(cell, {k: np.asarray(W)[None] for k, W in cell.recurrent.items()})
    ex = ball_rounding_step(cell, ctx, h, rho, Nn, x, np.abs(x), None, True, False)
    fa = ball_rounding_step(cell, ctx, h, rho, Nn, x, np.abs(x), None, False, False)
    assert np.array_equal(ex[0], fa[0]) and fa[4] is None
    assert np.all(fa[1] >= ex[1])
    with mpmath.workdps(DPS):
        for _ in range(6):
            u = rng.choice([-1.0, 1.0], size=h.shape)
            assert encloses(fa[0][0], fa[1][0], _mp_step(cell, mpf(h[0]) + mpf(rho[0] * u[0]), x))
