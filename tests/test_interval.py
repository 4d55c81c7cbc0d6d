"""The mpmath interval layer: activation enclosures against high-precision
mpmath values, trajectory enclosures against an independent mpmath point
simulation, and the error messages."""
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from mpmath import iv

import rnnperturb as rp
from rnnperturb.cells import CELL_TYPES
from rnnperturb.cells.random import random_cell
from rnnperturb.verified.interval import (IV, interval_deviation_norm, interval_run, iv_lower,
                                           iv_precision, iv_sigmoid, iv_tanh, iv_upper, to_iv)


def _contains(enc, value_mp):
    lo, hi = enc._mpi_
    return mpmath.mpf(lo) <= value_mp <= mpmath.mpf(hi)


@settings(max_examples=60, deadline=None)
@given(a=st.floats(-800, 800), w=st.floats(0, 5))
def test_activation_enclosures(a, w):
    b = a + w                      # the float end point
    with iv_precision(80):
        x = iv.mpf([a, b])
        T, S = iv_tanh(x), iv_sigmoid(x)
    with mpmath.workdps(60):
        for p in [a, a + (b - a) / 3, b]:
            p = mpmath.mpf(p)
            assert _contains(T, mpmath.tanh(p))
            assert _contains(S, 1 / (1 + mpmath.exp(-p)))
    # narrow: at 80 bits the end points are tight
    with mpmath.workdps(60):
        lo, hi = T._mpi_
        ref_lo, ref_hi = mpmath.tanh(mpmath.mpf(a)), mpmath.tanh(mpmath.mpf(b))
        assert mpmath.mpf(hi) - ref_hi <= mpmath.mpf(2) ** -70
        assert ref_lo - mpmath.mpf(lo) <= mpmath.mpf(2) ** -70


def _mp_run(cell, X, h0, dps=60):
    """Independent point simulation in mpmath (plain mpf, high precision)."""
    with mpmath.workdps(dps):
        P = {k: mpmath.matrix(v.tolist()) for k, v in cell.params.items() if v.ndim == 2}
        vec = {k: mpmath.matrix(v.tolist()) for k, v in cell.params.items() if v.ndim == 1}
        h = mpmath.matrix(list(map(float, h0)))
        out = []
        for x in X:
            x = mpmath.matrix(list(map(float, x)))
            if cell.kind == "elman":
                a = P["W"] * h + P["U"] * x + vec["b"]
                h = a.apply(mpmath.tanh)
            else:
                f = (P["Wf"] * h + P["Uf"] * x + vec["bf"]).apply(lambda z: 1 / (1 + mpmath.exp(-z)))
                fh = mpmath.matrix([f[i] * h[i] for i in range(cell.n)])
                c = (P["Wh"] * fh + P["Uh"] * x + vec["bh"]).apply(mpmath.tanh)
                h = mpmath.matrix([(1 - f[i]) * h[i] + f[i] * c[i] for i in range(cell.n)])
            out.append([h[i] for i in range(cell.n)])
        return out


@pytest.mark.parametrize("kind", ["elman", "mgru"])
@pytest.mark.parametrize("sn", [0.5, 4.0])
def test_interval_run_contains_mp_simulation(kind, sn):
    cell = random_cell(kind, 5, 2, spectral_norm=sn, bias_scale=1.0, input_scale=3.0, seed=3)
    X = np.random.default_rng(1).standard_normal((15, 2))
    h0 = np.array([0.5, -2.0, 0.0, 1.5, 0.1]) if kind == "mgru" else np.full(5, 0.3)
    H = interval_run(cell, X, h0, prec=120)
    ref = _mp_run(cell, X, h0)
    with mpmath.workdps(60):
        for t in range(15):
            for i in range(5):
                assert _contains(H[t, i], ref[t][i])
    # the enclosure is narrow and agrees with the float64 run
    with mpmath.workdps(60):
        widths = [mpmath.mpf(v._mpi_[1]) - mpmath.mpf(v._mpi_[0]) for v in H.reshape(-1)]
        assert max(widths) < mpmath.mpf(10) ** -25
    lo, hi = iv_lower(H), iv_upper(H)
    np.testing.assert_allclose(0.5 * (lo + hi), cell.run(X, h0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_interval_deviation_norm_brackets_truth(kind):
    cell = random_cell(kind, 4, 2, spectral_norm=2.0, seed=5)
    rng = np.random.default_rng(2)
    other = cell.replace(**{k: v + 1e-3 * rng.standard_normal(v.shape)
                            for k, v in cell.recurrent.items()})
    X = rng.standard_normal((12, 3, 2))
    lo, hi, p = interval_deviation_norm(cell, other, X, prec=100)
    assert lo.shape == (12, 3) and p == 100
    for b in range(3):
        r1 = _mp_run(cell, X[:, b], np.zeros(4))
        r2 = _mp_run(other, X[:, b], np.zeros(4))
        with mpmath.workdps(60):
            for t in range(12):
                e = mpmath.sqrt(sum((r2[t][i] - r1[t][i]) ** 2 for i in range(4)))
                assert mpmath.mpf(lo[t, b]) <= e <= mpmath.mpf(hi[t, b])
    assert np.all(hi - lo <= 1e-20 + 1e-15 * hi)


def test_precision_escalation_and_restore():
    """A chaotic net at a long horizon: wrapping widens the enclosure at low
    precision; escalation narrows it, and the global precision is restored."""
    cell = random_cell("elman", 6, 2, spectral_norm=6.0, seed=0)
    other = cell.replace(W=cell.W * (1 + 1e-6))
    X = np.random.default_rng(0).standard_normal((40, 2))
    old = iv.prec
    lo1, hi1, p1 = interval_deviation_norm(cell, other, X, prec=60)
    lo2, hi2, p2 = interval_deviation_norm(cell, other, X, prec=60, max_prec=1000,
                                           rel_width=1e-8)
    assert iv.prec == old
    assert p2 > p1
    assert np.all(hi2 - lo2 <= 1e-8 * lo2 + 1e-200) or np.all(hi2 >= 2 * np.sqrt(6))
    # both are enclosures of the same numbers
    assert np.all(lo2 <= hi1) and np.all(lo1 <= hi2)


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_interval_run_of_every_registered_cell(kind):
    """The enclosure comes from the cell's own forward: any registered cell
    gets a narrow enclosure of its float64 trajectory."""
    cls = CELL_TYPES[kind]
    rng = np.random.default_rng(0)
    cell = cls(**{k: 0.8 * rng.standard_normal(s) for k, s in cls.param_shapes(4, 2).items()})
    X = rng.standard_normal((10, 2, 2))
    H = interval_run(cell, X, prec=113)
    lo, hi = iv_lower(H), iv_upper(H)
    ref = cell.run(X)
    assert np.all(lo <= ref + 1e-14) and np.all(ref - 1e-14 <= hi)
    with mpmath.workdps(60):
        assert max(mpmath.mpf(v._mpi_[1]) - mpmath.mpf(v._mpi_[0])
                   for v in H.reshape(-1)) < mpmath.mpf(10) ** -25


def test_interval_lerp_uses_the_hull_only_for_gates_in_unit_interval():
    h, c = to_iv([0.25]), to_iv([0.75])
    with iv_precision(80):
        inside = IV.lerp(h, c, np.array([iv.mpf([0.25, 0.5])], dtype=object))[0]
        outside = IV.lerp(h, c, np.array([iv.mpf([1.5, 2.0])], dtype=object))[0]
    # f in [0.25, 0.5]: (1-f) h + f c sweeps [0.375, 0.5], inside the hull [0.25, 0.75]
    assert float(inside.a) <= 0.375 and 0.5 <= float(inside.b) <= 0.75
    # f in [1.5, 2]: an extrapolation to [1.0, 1.25], outside the hull, still enclosed
    assert float(outside.a) <= 1.0 and float(outside.b) >= 1.25


def test_bad_inputs():
    cell = random_cell("elman", 3, 2, seed=0)
    with pytest.raises(ValueError, match="prec"):
        with iv_precision(10):
            pass
    with pytest.raises(ValueError, match="X"):
        interval_run(cell, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="other"):
        interval_deviation_norm(cell, random_cell("mgru", 3, 2, seed=0), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="h0"):
        interval_run(cell, np.zeros((4, 2)), h0=np.zeros(5))
    assert rp.verified.interval.iv_width([iv.mpf([1, 2])])[0] == 1.0
