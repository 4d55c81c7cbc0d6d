"""The symbolic layer against independent references: numeric cells (step,
Jacobian, JVP, exact deviation), mpmath maximisation of the activation
derivatives, brute-force sums and Monte Carlo for the closed forms."""
import mpmath
import numpy as np
import pytest
import sympy as sp

import rnnperturb as rp
from rnnperturb import symbolic as S
from rnnperturb.cells import CELL_TYPES
from rnnperturb.cells.random import random_cell


def _points(cell, B, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (B, cell.state_size)), 2 * rng.standard_normal((B, cell.m))


SIZES = [(1, 1), (2, 1), (3, 2)]


# ------------------------------------------------------------------ bridge vs cells
@pytest.mark.parametrize("n,m", SIZES)
def test_symbolic_jacobian_matches_cell(kind, n, m):
    cell = random_cell(kind, n, m, spectral_norm=2.0, bias_scale=0.5, seed=n + 10 * m)
    h, x = _points(cell, 6, 1)
    J = S.numeric_jacobian(kind, n, m)(cell, h, x)
    assert J.shape == (6, n, n)
    np.testing.assert_allclose(J, cell.jacobian(h, x), rtol=0, atol=1e-14)
    # single point
    np.testing.assert_allclose(S.numeric_jacobian(kind, n, m)(cell, h[0], x[0]),
                               cell.jacobian(h[0], x[0]), rtol=0, atol=1e-14)


@pytest.mark.parametrize("n,m", SIZES)
def test_symbolic_step_and_jvp_match_cell(kind, n, m):
    cell = random_cell(kind, n, m, spectral_norm=1.5, bias_scale=0.5, seed=3)
    h, x = _points(cell, 5, 2)
    rng = np.random.default_rng(4)
    dh = rng.standard_normal(h.shape)
    dW = {k: rng.standard_normal((n, n)) for k in cell.recurrent_names}
    np.testing.assert_allclose(S.numeric_step(kind, n, m)(cell, h, x), cell.step(h, x),
                               rtol=0, atol=1e-15)
    _, ref = cell.jvp(h, x, dh, dW)
    got = S.numeric_jvp(kind, n, m)(cell, h, x, dh, dW)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)
    # only one of the MGRU matrices perturbed: the other forcing must vanish
    if kind == "mgru":
        for k in cell.recurrent_names:
            _, ref = cell.jvp(h, x, None, {k: dW[k]})
            got = S.numeric_jvp(kind, n, m)(cell, h, x, None, {k: dW[k]})
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("n,m", SIZES)
def test_structured_deviation_step_is_exact(kind, n, m):
    cell = random_cell(kind, n, m, spectral_norm=2.0, seed=5)
    h, x = _points(cell, 5, 3)
    rng = np.random.default_rng(6)
    for scale in (1e-6, 0.3):
        e = scale * rng.standard_normal(h.shape)
        dW = {k: scale * rng.standard_normal((n, n)) for k in cell.recurrent_names}
        other = cell.replace(**{k: cell.recurrent[k] + dW[k] for k in dW})
        ref = other.step(h + e, x) - cell.step(h, x)
        got = S.numeric_deviation_step(kind, n, m)(cell, h, x, e, dW)
        np.testing.assert_allclose(got, ref, rtol=0, atol=5e-16 + 1e-14 * scale)


def test_deviation_recursion_iterated_matches_library(kind):
    n, m, T = 2, 2, 30
    cell = random_cell(kind, n, m, spectral_norm=1.2, seed=7)
    rng = np.random.default_rng(8)
    dW = {k: 0.05 * rng.standard_normal((n, n)) for k in cell.recurrent_names}
    other = cell.replace(**{k: cell.recurrent[k] + dW[k] for k in dW})
    X = rng.standard_normal((T, m))
    H = cell.run(X)
    step = S.numeric_deviation_step(kind, n, m)
    e, h = np.zeros(n), np.zeros(n)
    E = []
    for t in range(T):
        e = step(cell, h, X[t], e, dW)
        h = H[t]
        E.append(e)
    ref = rp.deviation(cell, other, X)
    np.testing.assert_allclose(np.array(E), ref, rtol=0, atol=1e-14)
    assert np.abs(ref).max() > 1e-3   # not a trivial comparison


def test_recursions_are_proved():
    for kind in ("elman", "mgru"):
        rec = S.deviation_recursion(kind, 2, 1)
        assert rec.proved, rec.proofs
        assert S.first_order_recursion(kind, 2, 1)["proved"]
    rec = S.deviation_recursion("mgru", 2, 1)
    assert set(rec.terms) >= {"delta_f", "delta_c", "Df", "Dc", "bilinear"}
    # the bilinear term is of second order: it vanishes at first order, not at second
    sc = rec.cell
    eps = sp.Symbol("eps")
    small = list(sc.e) + [v for k in sc.recurrent_names for v in sc.dW[k]]
    b = rec.terms["bilinear"].xreplace({s: eps * s for s in small})
    rng = np.random.default_rng(0)
    point = {s: sp.Float(rng.uniform(-1, 1)) for s in b.free_symbols - {eps}}
    d1 = [complex(sp.diff(v, eps).subs(eps, 0).subs(point).evalf()) for v in b]
    d2 = [complex(sp.diff(v, eps, 2).subs(eps, 0).subs(point).evalf()) for v in b]
    assert max(abs(v) for v in d1) < 1e-12
    assert max(abs(v) for v in d2) > 1e-3


def test_symbolic_jacobian_is_derivative_of_step():
    sc = S.symbolic_cell("elman", 2, 1)
    a = sc.preactivation()
    J = sc.jacobian()
    expected = sp.diag(*[1 - sp.tanh(v) ** 2 for v in a]) * sc.params["W"]
    assert all(sp.simplify(v) == 0 for v in (J - expected))


def _any_cell(cls, n, m, seed):
    """A random cell of any registered class, built from its parameter shapes."""
    rng = np.random.default_rng(seed)
    return cls(**{k: 0.8 * rng.standard_normal(s) for k, s in cls.param_shapes(n, m).items()})


@pytest.mark.parametrize("kind", sorted(CELL_TYPES))
def test_every_registered_cell_is_derived_from_its_forward(kind):
    """No per-cell code in the symbolic layer: any registered cell gets its
    symbolic step, proved deviation recursion and bridges from its forward."""
    cls = CELL_TYPES[kind]
    n, m = 2, 1
    cell = _any_cell(cls, n, m, 0)
    assert {k: getattr(cell, k).shape for k in cls.recurrent_names + cls.input_params} \
        == cls.param_shapes(n, m)
    rec = S.deviation_recursion(kind, n, m)
    assert rec.proved, rec.proofs
    assert S.first_order_recursion(kind, n, m)["proved"]
    h, x = _points(cell, 4, 1)
    rng = np.random.default_rng(2)
    e = 0.1 * rng.standard_normal(h.shape)
    dW = {k: 0.1 * rng.standard_normal((n, n)) for k in cls.recurrent_names}
    other = cell.replace(**{k: cell.recurrent[k] + dW[k] for k in dW})
    np.testing.assert_allclose(S.numeric_step(kind, n, m)(cell, h, x), cell.step(h, x),
                               rtol=0, atol=1e-15)
    np.testing.assert_allclose(S.numeric_jacobian(kind, n, m)(cell, h, x), cell.jacobian(h, x),
                               rtol=0, atol=1e-14)
    np.testing.assert_allclose(S.numeric_jvp(kind, n, m)(cell, h, x, e, dW),
                               cell.jvp(h, x, e, dW)[1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(S.numeric_deviation_step(kind, n, m)(cell, h, x, e, dW),
                               other.step(h + e, x) - cell.step(h, x), rtol=0, atol=1e-15)


def test_named_pieces_come_from_the_forward():
    """Terms, pre-activations and the notebook helpers (``gates``,
    ``preactivation``) are read off the cell's forward, under stable names."""
    el, mg = S.deviation_recursion("elman", 2, 1), S.deviation_recursion("mgru", 2, 1)
    assert set(el.terms) == {"a", "delta"}
    assert set(mg.terms) == {"a_f", "delta_f", "f", "Df", "a_c", "delta_c", "c", "Dc", "bilinear"}
    assert set(el.proofs) == {"a' = a + delta", "exact == structured"}
    assert set(mg.proofs) == {"a_f' = a_f + delta_f", "a_c' = a_c + delta_c",
                              "gate/candidate split", "exact == structured"}
    sc = S.symbolic_cell("mgru", 2, 1)
    f, c = sc.gates()
    assert f == mg.terms["f"] and c == mg.terms["c"]
    pre = sc.preactivations()
    assert set(pre) == {"a_f", "a_c"} and pre["a_f"] == mg.terms["a_f"]
    with pytest.raises(ValueError, match="preactivation"):
        sc.preactivation()
    P = S.symbolic_cell("elman", 2, 1).params
    se = S.symbolic_cell("elman", 2, 1)
    assert se.preactivation() == P["W"] * se.h + P["U"] * se.x + P["b"]
    assert set(se.intermediates()) == {"h"}


# --------------------------------------------------------------------- constants
def _mp_sup(fun, order, guess):
    """sup|fun^(order)| by mpmath: a root of the next derivative near guess."""
    with mpmath.workdps(40):
        x = mpmath.findroot(lambda a: mpmath.diff(fun, a, order + 1), guess)
        return abs(mpmath.diff(fun, x, order)), x


def _mp_sig(a):
    return 1 / (1 + mpmath.exp(-a))


@pytest.mark.parametrize("func,order,exact,guess", [
    ("tanh", 2, 4 / (3 * sp.sqrt(3)), 0.6),
    ("tanh", 3, sp.Integer(2), 0.0),
    ("sigmoid", 1, sp.Rational(1, 4), 0.0),
    ("sigmoid", 2, 1 / (6 * sp.sqrt(3)), 1.3),
    ("sigmoid", 3, sp.Rational(1, 8), 0.0),
])
def test_sharp_constants(func, order, exact, guess):
    res = S.sup_abs_derivative(func, order)
    assert sp.simplify(res.value - exact) == 0
    fun = mpmath.tanh if func == "tanh" else _mp_sig
    val, x = _mp_sup(fun, order, guess)
    with mpmath.workdps(40):
        assert abs(val - mpmath.mpf(sp.N(exact, 45))) < mpmath.mpf(10) ** -25
        assert abs(val - mpmath.mpf(sp.N(exact, 45))) < mpmath.mpf(10) ** -25
    with mpmath.workdps(20):
        # scan on [-15, 15] (step 0.025, plus the argmax): nothing exceeds the supremum
        grid = [mpmath.mpf(k) / 40 for k in range(-600, 601)] + [x]
        scan = max(abs(mpmath.diff(fun, a, order)) for a in grid)
        assert scan <= mpmath.mpf(sp.N(exact, 25)) * (1 + mpmath.mpf(10) ** -15)
        assert scan >= mpmath.mpf(sp.N(exact, 25)) * (1 - mpmath.mpf(10) ** -15)
    # the argmax is a root of the next derivative
    for a in res.argmax:
        with mpmath.workdps(30):
            assert abs(mpmath.diff(fun, mpmath.mpf(sp.N(a, 35)), order + 1)) < 1e-20


def test_remainder_constants_and_library_kappa():
    c = S.remainder_constants()
    assert sp.simplify(c["tanh2"] - 4 / (3 * sp.sqrt(3))) == 0
    assert sp.simplify(c["sigmoid2"] - 1 / (6 * sp.sqrt(3))) == 0
    assert c["tanh1"] == 1 and c["sigmoid1"] == sp.Rational(1, 4)
    try:
        from rnnperturb import remainder
    except ImportError:  # pragma: no cover - the bounds module is optional here
        return
    # the library's constants must not be below the exact suprema (soundness)
    assert remainder.TANH_KAPPA >= float(c["tanh2"])
    assert remainder.SIGMOID_KAPPA >= float(c["sigmoid2"])
    assert remainder.TANH_KAPPA <= float(c["tanh2"]) * (1 + 1e-12)


@pytest.mark.parametrize("func", ["tanh", "sigmoid"])
def test_taylor_remainder_extremum_dense(func):
    d = S.taylor_remainder_extremum(func)
    assert set(d["stationary"]) == {0, -2 * d["a"]}
    r = sp.lambdify((d["a"], d["delta"]), d["remainder"], modules=S.NUMPY_MODULES)
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(-3, 3)
        lo, hi = np.sort(rng.uniform(-5, 5, 2))
        grid = np.linspace(lo, hi, 20001)
        dense = np.abs(r(a, grid)).max()
        cands = [lo, hi] + ([-2 * a] if lo <= -2 * a <= hi else [])
        at = max(abs(r(a, c)) for c in cands)
        assert at >= dense - 1e-12
        assert at <= dense + 1e-6 * max(1.0, dense)


# ------------------------------------------------------------------ closed forms
def test_scalar_accumulation_closed_forms():
    acc = S.scalar_accumulation()
    assert sp.simplify(acc.coherent_at_1 - acc.eps * acc.t) == 0
    assert sp.simplify(acc.incoherent_var_at_1 - acc.eps ** 2 * acc.t) == 0
    assert acc.ratio_at_1 == acc.t
    lam = acc.lam
    assert sp.simplify(acc.ratio_limit - (1 + lam) / (1 - lam)) == 0
    for lv in (0.3, 0.9, 0.999, 1.2, -0.7):
        ell, v = 0.0, 0.0
        for t in range(1, 41):
            ell = lv * ell + 0.1
            v = lv ** 2 * v + 0.01
            assert acc.numeric("coherent")(lv, t, 0.1) == pytest.approx(ell, rel=1e-10)
            assert acc.numeric("incoherent_var")(lv, t, 0.1) == pytest.approx(v, rel=1e-10)
            assert acc.numeric("frozen_fresh_ratio")(lv, t, 0.1) == pytest.approx(
                ell ** 2 / v, rel=1e-10)


def test_frozen_vs_fresh_monte_carlo():
    """C_t of the scalar model against Monte Carlo of both noise modes."""
    acc = S.scalar_accumulation()
    lv, T, N = 0.95, 30, 40000
    rng = np.random.default_rng(1)
    frozen_eta = rng.standard_normal(N)
    fresh_eta = rng.standard_normal((T, N))
    lf = np.zeros(N)
    lr = np.zeros(N)
    for t in range(T):
        lf = lv * lf + frozen_eta
        lr = lv * lr + fresh_eta[t]
    ef, er = np.mean(lf ** 2), np.mean(lr ** 2)
    sf = np.std(lf ** 2) / np.sqrt(N)
    sr = np.std(lr ** 2) / np.sqrt(N)
    assert abs(ef - acc.numeric("coherent")(lv, T, 1.0) ** 2) < 4 * sf
    assert abs(er - acc.numeric("incoherent_var")(lv, T, 1.0)) < 4 * sr


def test_diagonal_accumulation():
    d = S.diagonal_accumulation(3)
    assert sp.simplify(d["ratio_at_1"] - d["t"]) == 0
    lams = (0.5, 0.9, 0.99)
    f = sp.lambdify((d["lams"], d["t"], d["s"], d["hnorm"]), [d["frozen"], d["fresh"]])
    T, s, hn = 25, 0.1, 2.0
    fr, fs = f(lams, T, s, hn)
    # direct: frozen forcing g ~ N(0, s² hn²) per mode, constant over t
    ref_f = sum((s * hn * (1 - l ** T) / (1 - l)) ** 2 for l in lams)
    ref_s = sum(s ** 2 * hn ** 2 * (1 - l ** (2 * T)) / (1 - l ** 2) for l in lams)
    assert fr == pytest.approx(ref_f, rel=1e-12)
    assert fs == pytest.approx(ref_s, rel=1e-12)


def test_ar_forms_against_brute_force_and_library():
    st = S.ar_stationary_variance()
    assert sp.simplify(st["coherent"] - st["eps"] ** 2 / (1 - st["lam"]) ** 2) == 0
    assert sp.simplify(st["incoherent"] - st["eps"] ** 2 / (1 - st["lam"] ** 2)) == 0
    resp = S.ar_response()
    f = resp["numeric"]
    for lam, r, T in [(0.9, 0.5, 7), (0.7, 0.95, 30), (0.99, 0.2, 50)]:
        k = np.arange(1, T + 1)
        brute = np.sum(lam ** (T - k)[:, None] * lam ** (T - k)[None, :]
                       * r ** np.abs(k[:, None] - k[None, :]))
        assert f(lam, r, T) == pytest.approx(brute, rel=1e-10)
        var = sp.lambdify((st["lam"], st["r"], st["eps"]), st["variance"])
        # long horizon converges to the stationary variance
        assert f(lam, r, 4000.0) == pytest.approx(var(lam, r, 1.0), rel=1e-8)
    try:
        from rnnperturb import coherence
    except ImportError:  # pragma: no cover
        return
    if hasattr(coherence, "scalar_response"):
        for lam, r, T in [(0.9, 0.5, 7), (0.7, 0.95, 30)]:
            assert coherence.scalar_response(lam, np.array(T), r=r) == pytest.approx(
                f(lam, r, T), rel=1e-10)


# ------------------------------------------------------------------------ errors
def test_errors():
    with pytest.raises(ValueError, match="kind"):
        S.symbolic_cell("qrnn", 2)
    with pytest.raises(ValueError, match="n"):
        S.symbolic_cell("elman", 0)
    with pytest.raises(ValueError, match="func"):
        S.sup_abs_derivative("relu", 2)
    with pytest.raises(ValueError, match="order"):
        S.sup_abs_derivative("tanh", 0)
    cell = random_cell("mgru", 2, 1, seed=0)
    with pytest.raises(ValueError, match="cell"):
        S.numeric_jacobian("elman", 2, 1)(cell, np.zeros(2), np.zeros(1))
    with pytest.raises(ValueError, match="h, x"):
        S.numeric_jacobian("mgru", 2, 1)(cell, np.zeros(3), np.zeros(1))
    with pytest.raises(ValueError, match="gates"):
        S.symbolic_cell("elman", 2).gates()


# ------------------------------------------------------------ property tests
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-40, max_value=40, allow_nan=False))
def test_constants_bound_every_point(a):
    """|φ^(k)(a)| never exceeds the derived supremum (mpmath evaluation)."""
    c = S.remainder_constants()
    with mpmath.workdps(30):
        for func, fun in (("tanh", mpmath.tanh), ("sigmoid", _mp_sig)):
            for k in (1, 2, 3):
                val = abs(mpmath.diff(fun, mpmath.mpf(a), k))
                assert val <= mpmath.mpf(sp.N(c[f"{func}{k}"], 35)) * (1 + mpmath.mpf(10) ** -20)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 31), st.sampled_from(["elman", "mgru"]))
def test_bridge_jacobian_random_nets(seed, kind):
    cell = random_cell(kind, 3, 2, spectral_norm=3.0, bias_scale=1.0, seed=seed)
    h, x = _points(cell, 3, seed + 1)
    np.testing.assert_allclose(S.numeric_jacobian(kind, 3, 2)(cell, h, x), cell.jacobian(h, x),
                               rtol=0, atol=1e-13)
