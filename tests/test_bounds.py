"""certified_bound: soundness against a rigorous mpmath interval reference
(never below the truth), agreement with the rigorous mode, tightness where
it is claimed, the trivial caps, shapes, and the error messages. Also the
verified spectral norm bounds."""
import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnperturb as rp
from rnnperturb.bounds.trajectory import certified_bound, trivial_cap
from rnnperturb.cells.random import random_cell
from rnnperturb.verified.linalg import frobenius_upper, one_inf_upper, spectral_norm_upper
from rnnperturb.verified.interval import (interval_deviation_norm, interval_run, iv_lower,
                                           iv_precision)


def perturbed(cell, rel, rng, *, which=None, rank=None):
    """A copy of ``cell`` with ‖ΔW_k‖₂ = rel·‖W_k‖₂ (random or low rank)."""
    new = {}
    for k, W in cell.recurrent.items():
        if which is not None and k != which:
            continue
        if rank is not None:
            dW = rng.standard_normal((W.shape[0], rank)) @ rng.standard_normal((rank, W.shape[0]))
        else:
            dW = rng.standard_normal(W.shape)
        s = np.linalg.norm(dW, 2)
        new[k] = W + dW * (rel * np.linalg.norm(W, 2) / s if s > 0 else 0.0)
    return cell.replace(**new)


def truth_lower(cell, other, X, h0=None, prec=150):
    """Rigorous lower end of ‖e_t‖₂ (mpmath interval simulation, escalating
    the precision until the enclosure is narrow)."""
    lo, hi, _ = interval_deviation_norm(cell, other, X, h0, prec=prec, max_prec=2400,
                                        rel_width=1e-6)
    return lo, hi


@st.composite
def cases(draw, max_n=6, max_T=30):
    kind = draw(st.sampled_from(["elman", "mgru"]))
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(1, 3))
    sn = draw(st.sampled_from([0.3, 0.9, 1.5, 3.0, 8.0]))
    bias = draw(st.sampled_from([0.0, 0.5, 5.0]))        # 5: saturated pre-activations
    inp = draw(st.sampled_from([0.5, 2.0, 20.0]))
    rel = 10.0 ** draw(st.floats(-8, 0))
    T = draw(st.integers(1, max_T))
    B = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2 ** 31))
    h0_kind = draw(st.sampled_from(["zero", "inside", "outside"]))
    rng = np.random.default_rng(seed)
    cell = random_cell(kind, n, m, spectral_norm=sn, bias_scale=bias, input_scale=inp, seed=rng)
    style = draw(st.sampled_from(["dense", "lowrank", "one"]))
    if style == "dense":
        other = perturbed(cell, rel, rng)
    elif style == "lowrank":
        other = perturbed(cell, rel, rng, rank=1)
    else:
        other = perturbed(cell, rel, rng, which=cell.recurrent_names[-1])
    X = rng.standard_normal((T, B, m))
    h0 = None if h0_kind == "zero" else (
        rng.uniform(-1, 1, (B, n)) if h0_kind == "inside" else rng.uniform(-3, 3, (B, n)))
    return cell, other, X, h0


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_sound_against_rigorous_reference(case):
    cell, other, X, h0 = case
    lo, hi = truth_lower(cell, other, X, h0)
    for tier in ("fast", "tight", "auto"):
        bd = certified_bound(cell, other, X, h0, tier=tier)
        assert bd.shape == lo.shape
        assert np.all(bd >= lo), (tier, np.min(bd - lo))
        cap = np.sqrt(np.sum(trivial_cap(cell, np.zeros(cell.n) if h0 is None else h0,
                                         X.shape[1]) ** 2, axis=1))
        assert np.all(bd <= cap * (1 + 1e-12))


@pytest.mark.parametrize("kind", ["elman", "mgru"])
@pytest.mark.parametrize("sn,rel", [(0.9, 1e-8), (0.9, 0.3), (3.0, 1e-3), (8.0, 1.0)])
def test_sound_medium_size(kind, sn, rel):
    """n = 10, T = 25, saturated biases on half the cases."""
    rng = np.random.default_rng(7)
    cell = random_cell(kind, 10, 3, spectral_norm=sn, bias_scale=3.0 if sn > 1 else 0.1,
                       seed=rng)
    other = perturbed(cell, rel, rng)
    X = rng.standard_normal((25, 1, 3))
    lo, _ = truth_lower(cell, other, X)
    for tier in ("fast", "tight", "auto"):
        assert np.all(certified_bound(cell, other, X, tier=tier) >= lo)


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_rigorous_mode_agrees(kind):
    """rigorous >= truth, fast >= truth, and fast is close to rigorous on a
    contractive net (both are essentially the truth)."""
    rng = np.random.default_rng(3)
    cell = random_cell(kind, 5, 2, spectral_norm=0.8, seed=rng)
    other = perturbed(cell, 0.05, rng)
    X = rng.standard_normal((20, 2, 2))
    lo, hi = truth_lower(cell, other, X)
    rig = certified_bound(cell, other, X, rigorous=True)
    fast = certified_bound(cell, other, X)
    tight = certified_bound(cell, other, X, tier="tight")
    assert np.all(rig >= lo) and np.all(fast >= lo) and np.all(tight >= lo)
    assert np.all(rig <= hi * (1 + 1e-9) + 1e-200)   # (rig uses another precision)
    # equal up to the float path's absolute rounding floor (~1e-14; at t = 1
    # the exact deviation is 0 and the rigorous bound ~1e-270)
    assert np.all(np.abs(fast - rig) <= 1e-9 * rig + 1e-12)
    assert np.all(np.abs(tight - rig) <= 1e-9 * rig + 1e-12)
    # single sequence
    r1 = certified_bound(cell, other, X[:, 0], rigorous=True)
    assert r1.shape == (20,) and np.allclose(r1, rig[:, 0])


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_tight_on_contractive_and_expanding(kind):
    """Median bound/exact within 1e-6 of 1 on a contractive net at relative
    perturbation 0.05 (both tiers), and for the tight tier also on an
    expanding net (‖W‖₂ = 3) at T = 100, where per-step products diverge.
    The fast tier of the MGRU is held to T = 30 only: its per-step Jacobian
    bound exceeds 1 even for ‖W‖₂ < 1 (1 − f plus gate terms), so it loosens
    over long horizons (measured: up to 2x at T = 100)."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((100, 4, 3))
    for sn, tiers in [(0.9, ("fast", "tight")), (3.0, ("tight",))]:
        cell = random_cell(kind, 16, 3, spectral_norm=sn, seed=rng)
        other = perturbed(cell, 0.05, rng)
        E = np.linalg.norm(rp.deviation(cell, other, X), axis=-1)[1:]
        for tier in tiers:
            r = certified_bound(cell, other, X, tier=tier)[1:] / E
            if kind == "mgru" and tier == "fast":
                r = r[:29]
            assert np.median(r) <= 1 + 1e-6, (sn, tier, np.median(r))
            assert np.max(r) <= 1 + 1e-3, (sn, tier, np.max(r))


def test_caps_and_h0_outside():
    rng = np.random.default_rng(5)
    # Elman: 2 sqrt(n) whatever h0 (outputs start at t = 1)
    cell = random_cell("elman", 4, 2, spectral_norm=8.0, seed=rng)
    other = perturbed(cell, 1.0, rng)
    X = rng.standard_normal((30, 2)) * 5
    h0 = np.array([3.0, -5.0, 0.0, 1.0])
    bd = certified_bound(cell, other, X, h0)
    lo, _ = truth_lower(cell, other, X, h0)
    assert np.all(bd >= lo) and np.all(bd <= 2 * np.sqrt(4) * (1 + 1e-12))
    # MGRU: per-component width max(h0,1) - min(h0,-1)
    cell = random_cell("mgru", 4, 2, spectral_norm=8.0, bias_scale=0.0, seed=rng)
    other = perturbed(cell, 1.0, rng)
    bd = certified_bound(cell, other, X, h0)
    lo, _ = truth_lower(cell, other, X, h0)
    cap = np.sqrt(np.sum((np.maximum(h0, 1) - np.minimum(h0, -1)) ** 2))
    assert np.all(bd >= lo) and np.all(bd <= cap * (1 + 1e-12))
    assert cap > 2 * np.sqrt(4)


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_componentwise(kind):
    rng = np.random.default_rng(8)
    cell = random_cell(kind, 5, 2, spectral_norm=2.0, seed=rng)
    other = perturbed(cell, 0.1, rng)
    X = rng.standard_normal((15, 2, 2))
    comp = certified_bound(cell, other, X, componentwise=True)
    assert comp.shape == (15, 2, 5)
    with iv_precision(150):
        H = interval_run(cell, X, prec=150)
        H2 = interval_run(other, X, prec=150)
        E = H2 - H
        lo_abs = np.maximum(iv_lower(E), -iv_lower(-E))  # lower end of |e| when sign is known
    assert np.all(comp >= lo_abs)
    lo, _ = truth_lower(cell, other, X)
    assert np.all(np.sqrt(np.sum(comp ** 2, axis=-1)) >= lo)
    assert comp[0].max() <= 2.0


def test_float32_cell_is_analysed_exactly():
    rng = np.random.default_rng(9)
    c64 = random_cell("mgru", 5, 2, spectral_norm=1.5, seed=rng)
    c32 = rp.MGRU(**{k: v.astype(np.float32) for k, v in c64.params.items()})
    o32 = rp.MGRU(**{k: (v + 1e-3 * rng.standard_normal(v.shape)).astype(np.float32)
                     if k in ("Wf", "Wh") else v.astype(np.float32)
                     for k, v in c64.params.items()})
    X = rng.standard_normal((20, 2)).astype(np.float32)
    bd = certified_bound(c32, o32, X)
    lo, _ = truth_lower(c32, o32, X)
    assert bd.dtype == np.float64 and np.all(bd >= lo)
    assert np.all(bd[1:] <= lo[1:] * (1 + 1e-6))


def test_bad_inputs():
    cell = random_cell("elman", 4, 2, seed=0)
    other = perturbed(cell, 0.1, np.random.default_rng(0))
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="tier"):
        certified_bound(cell, other, X, tier="medium")
    with pytest.raises(ValueError, match="rigorous"):
        certified_bound(cell, other, X, rigorous="yes")
    with pytest.raises(ValueError, match="other"):
        certified_bound(cell, random_cell("mgru", 4, 2, seed=0), X)
    with pytest.raises(ValueError, match="other.U"):
        certified_bound(cell, other.replace(U=other.U + 1), X)
    with pytest.raises(ValueError, match="X"):
        certified_bound(cell, other, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="h0"):
        certified_bound(cell, other, X, h0=np.zeros(3))
    with pytest.raises(ValueError, match="componentwise"):
        certified_bound(cell, other, X, rigorous=True, componentwise=True)
    big = random_cell("elman", 64, 2, seed=0)
    with pytest.raises(ValueError, match="rigorous"):
        certified_bound(big, big, np.zeros((2000, 2)), rigorous=True)
    with pytest.raises(ValueError, match="A"):
        spectral_norm_upper(np.zeros(3))


# ------------------------------------------------------------- spectral norms
def _mp_sigma_max(A):
    with mpmath.workdps(50):
        M = mpmath.matrix(A.tolist())
        s = mpmath.svd_r(M, compute_uv=False)
        return max(s[i] for i in range(len(s)))


@pytest.mark.parametrize("make", [
    lambda r: r.standard_normal((7, 7)),
    lambda r: r.standard_normal((5, 8)),
    lambda r: np.diag([3.0, 3.0, 3.0, 1e-12]),                      # repeated sigma
    lambda r: np.outer(r.standard_normal(6), r.standard_normal(6)),  # rank one
    lambda r: r.standard_normal((6, 6)) * 1e-150,
    lambda r: r.standard_normal((6, 6)) * 1e150,
    lambda r: np.triu(np.ones((8, 8))) * 10,                         # non-normal
    lambda r: np.zeros((4, 4)),
])
def test_spectral_norm_upper(make):
    A = make(np.random.default_rng(1))
    s = spectral_norm_upper(A)
    ref = _mp_sigma_max(A)
    with mpmath.workdps(50):
        assert mpmath.mpf(s) >= ref
        assert mpmath.mpf(s) <= ref * (1 + mpmath.mpf(1e-10)) + mpmath.mpf(1e-300)
    assert frobenius_upper(A) >= s * (1 - 1e-10) - 1e-300
    assert one_inf_upper(A) >= float(ref)
    batch = spectral_norm_upper(np.stack([A, 2 * A]))
    assert batch.shape == (2,) and batch[1] >= 2 * float(ref)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["elman", "mgru"])
@pytest.mark.parametrize("sn", [0.9, 2.0, 4.0])
def test_sound_long_horizon_slow(kind, sn):
    """Horizon 500 against the escalating-precision interval reference."""
    rng = np.random.default_rng(int(sn * 10))
    cell = random_cell(kind, 6, 2, spectral_norm=sn, bias_scale=1.0, seed=rng)
    for rel in (1e-8, 1e-3, 0.3):
        other = perturbed(cell, rel, rng)
        X = rng.standard_normal((500, 1, 2))
        lo, hi, _ = interval_deviation_norm(cell, other, X, prec=200, max_prec=6400,
                                            rel_width=1e-6)
        for tier in ("fast", "tight", "auto"):
            assert np.all(certified_bound(cell, other, X, tier=tier) >= lo)


# ------------------------------------------------ the block recursion of tier="auto"
@pytest.fixture
def blocks_always(monkeypatch):
    """Switch the block recursion on from the first step, with short blocks."""
    import rnnperturb.bounds.trajectory as tr
    monkeypatch.setattr(tr, "AUTO_FRACTION", 0.0)
    monkeypatch.setattr(tr, "AUTO_FLOOR", 0.0)
    monkeypatch.setattr(tr._Lyapunov, "ACTIVATE", 0.0)
    monkeypatch.setattr(tr, "AUTO_BLOCK", 3)
    return tr


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(case=cases(max_n=8, max_T=25))
def test_blocks_sound_against_rigorous_reference(blocks_always, case):
    """The float32 block propagators (every step, blocks of 3) never undercut the truth."""
    cell, other, X, h0 = case
    lo, _ = truth_lower(cell, other, X, h0)
    bd = certified_bound(cell, other, X, h0, tier="auto")
    assert np.all(bd >= lo), np.min(bd - lo)


@pytest.mark.parametrize("kind", ["elman", "mgru"])
@pytest.mark.parametrize("sn,rel", [(0.9, 1e-6), (3.0, 1e-3), (8.0, 0.3)])
def test_blocks_sound_and_tight_medium(blocks_always, kind, sn, rel):
    """n = 12, T = 30 with the block recursion on from the start: sound, and within
    a relative 1e-6 of the tight tier where the deviation is far above rounding."""
    rng = np.random.default_rng(11)
    cell = random_cell(kind, 12, 3, spectral_norm=sn, bias_scale=1.0, seed=rng)
    other = perturbed(cell, rel, rng)
    X = rng.standard_normal((30, 2, 3))
    lo, _ = truth_lower(cell, other, X)
    auto = certified_bound(cell, other, X, tier="auto")
    assert np.all(auto >= lo)
    tight = certified_bound(cell, other, X, tier="tight")
    m = lo > 1e-6
    assert np.all(auto[m] <= tight[m] * (1 + 1e-6) + 1e-9)


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_blocks_overflow_gives_a_sound_bound(blocks_always, kind):
    """Weights so large that the float32 propagators overflow: the bound stays finite
    and sound (the Gram matrices restart; the per-step recursion and the cap hold)."""
    rng = np.random.default_rng(3)
    cell = random_cell(kind, 6, 2, spectral_norm=1e3, bias_scale=0.0, seed=rng)
    other = perturbed(cell, 1e-3, rng)
    X = rng.standard_normal((12, 1, 2)) * 1e-3
    lo, _ = truth_lower(cell, other, X)
    bd = certified_bound(cell, other, X, tier="auto")
    assert np.all(np.isfinite(bd)) and np.all(bd >= lo)


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_f32value_error_bound(kind):
    r"""F32Value: |float32 evaluation - exact map| <= gamma_D |L|_maj |Z| + alpha,
    checked against a longdouble evaluation of the cell's tangent on random columns
    (and on tiny ones, where float32 underflows)."""
    from rnnperturb.cells.namespace import FLOAT
    from rnnperturb.verified.linalg import ABS, AbsValue, F32Matrix, F32Value
    rng = np.random.default_rng(5)
    n, B = 16, 3
    cell = random_cell(kind, n, 2, spectral_norm=2.0, seed=rng)
    P = {k: np.asarray(v, np.float64) for k, v in cell.params.items()}
    h = np.tanh(rng.standard_normal((B, n)))
    x = rng.standard_normal((B, 2))
    aux = cell.forward(FLOAT, P, h, x, lambda k, a: FLOAT.matvec(P[k], a))[1]
    M32 = {k: F32Matrix(P[k]) for k in cell.recurrent_names}
    ld = np.longdouble
    Pl = {k: np.asarray(v, ld) for k, v in P.items()}
    auxl = {k: np.asarray(v, ld) for k, v in aux.items()}
    for scale in (1.0, 1e-40):
        Z = (rng.standard_normal((n, B, n)) * scale).astype(np.float32)
        F = cell.tangent(FLOAT, P, h, aux, F32Value(Z, 0, 0.0, float(np.abs(Z).max())),
                         lambda nm, v: v.matvec(M32[nm]), lambda nm: 0.0)
        # the exact map with the float64 coefficients: evaluate in longdouble
        ex = cell.tangent(FLOAT, P, h, aux, Z.astype(ld),
                          lambda nm, v: v @ Pl[nm].T, lambda nm: 0.0)
        M = cell.tangent(ABS, P, h, aux, AbsValue(np.abs(Z).astype(np.float64)),
                         lambda nm, v: v.matvec(P[nm]), lambda nm: 0.0).bound()
        err = np.abs(F.val.astype(ld) - ex)
        assert np.all(err <= F.gamma() * M + F.alpha), float(np.max(err - F.gamma() * M))


@pytest.mark.parametrize("kind", ["elman", "mgru", "lstm"])
def test_fused_f32_tangent_error_bound(kind):
    r"""The cells' fused float32 tangent (tangent_f32, in place in work buffers, products
    of two coefficients rounded in float64 first): |result - exact map| <= gamma_D
    |L|_maj |Z| + alpha with the majorant of the plain tangent, checked against a
    longdouble evaluation of the exact map (also on tiny columns, where float32
    underflows); its values agree with the plain float32 evaluation to float32
    accuracy and its depth is not larger."""
    from rnnperturb.cells.namespace import FLOAT
    from rnnperturb.verified.linalg import ABS, AbsValue, F32Matrix, F32Namespace, F32Value
    rng = np.random.default_rng(6)
    n, B, S = 16, 3, 2
    cell = random_cell(kind, n, 2, spectral_norm=2.0, seed=rng)
    P = {k: np.asarray(v, np.float64) for k, v in cell.params.items()}
    Ps = dict(P, **{k: np.stack([P[k], P[k] + 0.1 * rng.standard_normal((n, n))])
                    for k in cell.recurrent_names})
    N = cell.state_size                  # 2n for the LSTM's (h, c)
    h = np.tanh(rng.standard_normal((S, B, 1, N)))
    x = rng.standard_normal((B, 2))
    aux = cell.forward(FLOAT, Ps, h[:, :, 0], x,
                       lambda k, a: a @ np.swapaxes(Ps[k], -1, -2)[:, None][:, 0])[1]
    aux = {k: v[:, :, None, :] for k, v in aux.items()}
    M32 = {k: F32Matrix(Ps[k]) for k in cell.recurrent_names}
    ld = np.longdouble
    Pl = {k: np.asarray(v, ld) for k, v in Ps.items()}
    for scale in (1.0, 1e-40):
        Z = (rng.standard_normal((S, B, N, N)) * scale).astype(np.float32)
        Z0 = Z.copy()
        bufs = [np.full_like(Z, np.nan) for _ in range(3)]
        F = cell.tangent_f32(h, aux, F32Value(Z, 0, 0.0, float(np.abs(Z).max())),
                             lambda nm, v, o: v.matvec(M32[nm], out=o), bufs)
        assert np.array_equal(Z, Z0) and any(F.val is b for b in bufs)
        # the plain evaluation, as _Blocks runs it without a fused tangent
        G = cell.tangent(F32Namespace(), Ps, h, aux, F32Value(Z, 0, 0.0, float(np.abs(Z).max())),
                         lambda nm, v: v.matvec(M32[nm]), lambda nm: 0.0)
        assert F.depth <= G.depth
        ex = cell.tangent(FLOAT, Ps, h, aux, Z.astype(ld),
                          lambda nm, v: (v.reshape(S, -1, n) @ np.swapaxes(Pl[nm], -1, -2)
                                         ).reshape(v.shape), lambda nm: 0.0)
        # the majorant on the columns as a leading axis (n_j, S, B, n), as _Blocks runs it
        M = cell.tangent(ABS, Ps, h[:, :, 0], {k: v[:, :, 0] for k, v in aux.items()},
                         AbsValue(np.abs(Z).astype(np.float64).transpose(2, 0, 1, 3)),
                         lambda nm, v: v.matvec(Ps[nm]), lambda nm: 0.0).bound()
        M = M.transpose(1, 2, 0, 3)
        err = np.abs(F.val.astype(ld) - ex)
        assert np.all(err <= F.gamma() * M + F.alpha), float(np.max(err - F.gamma() * M))
        assert np.all(np.abs(F.val - G.val) <= 2 * F.gamma() * M + 2 * F.alpha)
        if scale == 1.0:
            assert np.max(err) > 0          # float32 really rounds: the check is not empty


def test_mgru_fused_majorant_bounds_the_exact_majorant():
    """MGRU.tangent_abs (products of two coefficients taken first): its bound() is
    never below the exact majorant |L|_maj v of the tangent (longdouble), and within
    float64 accuracy of the plain AbsValue evaluation."""
    from rnnperturb.cells.namespace import FLOAT
    from rnnperturb.verified.linalg import ABS, AbsValue
    rng = np.random.default_rng(10)
    S, B, n = 2, 3, 16
    ld = np.longdouble
    for sn, scale in ((0.5, 1.0), (3.0, 1e-300), (3.0, 1e300)):
        cell = random_cell("mgru", n, 2, spectral_norm=sn, bias_scale=1.0, seed=rng)
        P = {k: np.asarray(v, np.float64) for k, v in cell.params.items()}
        P2 = dict(P, Wf=np.stack([P["Wf"], 1.1 * P["Wf"]]), Wh=np.stack([P["Wh"], -P["Wh"]]))
        h = np.tanh(rng.standard_normal((S, B, n)) * 2)
        aux = cell.forward(FLOAT, P2, h, rng.standard_normal((B, 2)),
                           lambda k, a: a @ np.swapaxes(P2[k], -1, -2))[1]
        v = np.abs(rng.standard_normal((2, S, B, n))) * scale
        absT = {k: np.abs(np.swapaxes(P2[k], -1, -2)) for k in ("Wf", "Wh")}
        got = cell.tangent_abs(h, aux, AbsValue(v), lambda nm, w: w.absmatvec(absT[nm]))
        plain = cell.tangent(ABS, P2, h, aux, AbsValue(v), lambda nm, w: w.matvec(P2[nm]),
                             lambda nm: 0.0)
        f, c = (aux[k].astype(ld) for k in ("f", "c"))
        o, sg = 1 - aux["f"], aux["f"] * (1 - aux["f"])          # the float64 coefficients
        tau, d = 1 - aux["c"] * aux["c"], aux["c"] - h
        A = {k: np.abs(np.swapaxes(P2[k], -1, -2)).astype(ld) for k in ("Wf", "Wh")}
        vl = v.astype(ld)
        Av = vl @ A["Wf"]
        exact = (np.abs(o).astype(ld) * vl + np.abs(sg).astype(ld) * np.abs(d).astype(ld) * Av
                 + np.abs(f) * np.abs(tau).astype(ld)
                 * ((np.abs(sg).astype(ld) * np.abs(h).astype(ld) * Av + np.abs(f) * vl)
                    @ A["Wh"]))
        assert np.all(got.bound() >= exact) and np.all(plain.bound() >= exact)
        assert np.allclose(got.val, plain.val, rtol=1e-13, atol=0)


def test_elman_fused_majorant_is_the_plain_one():
    """ElmanRNN.tangent_abs (|W|^T given) computes what the tangent computes on an
    AbsValue: the same values and depth."""
    from rnnperturb.cells.namespace import FLOAT
    from rnnperturb.verified.linalg import ABS, AbsValue
    rng = np.random.default_rng(14)
    S, B, n = 2, 3, 9
    cell = random_cell("elman", n, 2, spectral_norm=2.0, seed=rng)
    P = {k: np.asarray(v, np.float64) for k, v in cell.params.items()}
    P2 = dict(P, W=np.stack([P["W"], -P["W"]]))
    h = np.tanh(rng.standard_normal((S, B, n)))
    aux = cell.forward(FLOAT, P2, h, rng.standard_normal((B, 2)),
                       lambda k, a: a @ np.swapaxes(P2[k], -1, -2))[1]
    v = np.abs(rng.standard_normal((2, S, B, n)))
    absT = np.abs(np.swapaxes(P2["W"], -1, -2))
    got = cell.tangent_abs(h, aux, AbsValue(v), lambda nm, w: w.absmatvec(absT))
    ref = cell.tangent(ABS, P2, h, aux, AbsValue(v), lambda nm, w: w.matvec(P2[nm]),
                       lambda nm: 0.0)
    assert np.array_equal(got.val, ref.val) and got.depth == ref.depth


def test_f32value_in_place_operations_match_the_operators():
    """F32Value.scaled/plus/matvec with out= give the values and the error bookkeeping
    of *, + and matvec (rounded=1 adds one rounding to the depth and its underflow)."""
    from rnnperturb.verified.linalg import ETA32, F32Matrix, F32Value
    rng = np.random.default_rng(7)
    Z = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    c = rng.standard_normal((2, 3, 1, 4))
    A = F32Matrix(rng.standard_normal((2, 4, 4)))
    F = F32Value(Z, 3, 1e-40, 2.0)
    for got, ref in ((F.scaled(c, out=np.empty_like(Z)), F * c),
                     (F.plus(F, out=np.empty_like(Z)), F + F),
                     (F.matvec(A, out=np.empty_like(Z)), F.matvec(A))):
        assert np.array_equal(got.val, ref.val)
        assert (got.depth, got.alpha, got.mu) == (ref.depth, ref.alpha, ref.mu)
    r1, r0 = F.scaled(c, rounded=1), F.scaled(c)
    assert r1.depth == r0.depth + 1 and r1.alpha > r0.alpha and r1.mu == r0.mu + ETA32
    W = Z.copy()
    G = F32Value(W, 0, 0.0, 1.0).scaled(c, out=W)          # in place
    assert G.val is W and np.array_equal(W, Z * c.astype(np.float32))
    with pytest.raises(ValueError, match="out"):
        F.matvec(A, out=np.empty(Z.shape, np.float64))


def test_gram_step_f32_is_an_upper_bound():
    r"""The float32 Gram step of the block recursion (step_f32, J = Z^T with float32
    columns Z, scaled by powers of two): its lambda_max bound is never below
    lambda_max of the exact recursion C_t = J C_{t-1} J^T + diag(gamma^2) (longdouble),
    over many steps with expanding J, at the scale of rounding errors (C ~ 1e-28) and
    at tiny and large ones; and not vacuous."""
    from rnnperturb.bounds.trajectory import _Lyapunov
    rng = np.random.default_rng(13)
    B, n, T = 4, 12, 25
    ld = np.longdouble
    for c0, gs in ((1e-28, 1e-16), (1e-200, 1e-108), (1e20, 1e8)):
        ly = _Lyapunov(B, n)
        N0 = np.full(B, np.sqrt(c0))
        ly.maybe_activate(N0, np.zeros(B), 0.0)
        C = np.stack([np.eye(n, dtype=ld) * ld(ly.C[0, 0, 0])] * B)
        for t in range(1, T + 1):
            Z = (rng.standard_normal((B, n, n)) * 1.5 / np.sqrt(n)).astype(np.float32)
            gam = np.abs(rng.standard_normal((B, n))) * gs
            out = ly.step_f32(Z, gam)
            Jl = np.swapaxes(Z, 1, 2).astype(ld)
            C = Jl @ C @ np.swapaxes(Jl, 1, 2) + np.stack([np.diag(g.astype(ld) ** 2)
                                                           for g in gam])
            lam_true = np.array([np.linalg.eigvalsh(c.astype(np.float64)).max() for c in C])
            lam_bound = out ** 2 / (1 + n * t)
            assert np.all(lam_bound >= lam_true * (1 + 1e-12)), (c0, t, lam_bound / lam_true)
            assert np.all(lam_bound <= lam_true * 10 * n)          # and not vacuous
    # strongly contracting propagators and no forcing: the Gram matrices shrink by ~1e-4
    # per step (their scale is kept above 2^-1000); the bound stays above the truth
    ly = _Lyapunov(B, n)
    ly.maybe_activate(np.full(B, 1e-14), np.zeros(B), 0.0)
    C = np.stack([np.eye(n, dtype=ld) * ld(ly.C[0, 0, 0])] * B)
    for t in range(1, 61):
        Z = (rng.standard_normal((B, n, n)) * 0.01 / np.sqrt(n)).astype(np.float32)
        out = ly.step_f32(Z, np.zeros((B, n)))
        Jl = np.swapaxes(Z, 1, 2).astype(ld)
        C = Jl @ C @ np.swapaxes(Jl, 1, 2)
        lam_true = np.array([np.linalg.eigvalsh(c).max() for c in C.astype(np.float64)])
        assert np.all(out ** 2 / (1 + n * t) >= lam_true), t


def test_slope_max_ball_is_slope_max_of_widen():
    """slope_max_ball(kind, a, rad) is slope_max(kind, *widen(a, rad)), bit for bit,
    also at 0, subnormals, infinities and huge radii."""
    from rnnperturb.verified.activation import slope_max, slope_max_ball
    from rnnperturb.verified.linalg import widen
    rng = np.random.default_rng(8)
    for kind in ("tanh", "sigmoid"):
        for sc in (1e-300, 1e-20, 1.0, 800.0):
            a = rng.standard_normal(20000) * sc
            a[:9] = [0.0, -0.0, 1e-320, -1e-320, 5e-324, np.inf, -np.inf, 1e308, -3.0]
            rad = np.abs(rng.standard_normal(20000)) * sc * rng.choice([0, 1e-16, 1e-3, 1, 10],
                                                                       20000)
            with np.errstate(all="ignore"):
                ref, got = slope_max(kind, *widen(a, rad)), slope_max_ball(kind, a, rad)
            assert np.array_equal(ref, got, equal_nan=True)


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_auto_tier_repeatable_with_pooled_work_arrays(kind):
    """The default tier reuses float32 work arrays between calls: repeated and
    interleaved calls (other shapes in between) give identical bounds."""
    rng = np.random.default_rng(9)
    cell = random_cell(kind, 10, 2, spectral_norm=3.0, bias_scale=0.5, seed=rng)
    other = perturbed(cell, 1e-3, rng)
    X = rng.standard_normal((40, 3, 2))
    first = certified_bound(cell, other, X)
    certified_bound(cell, other, X[:, :2])
    small = random_cell(kind, 4, 2, spectral_norm=3.0, seed=rng)
    certified_bound(small, perturbed(small, 1e-2, rng), X)
    assert np.array_equal(first, certified_bound(cell, other, X))


def test_stacked_matrices_match_single():
    """VerifiedMatrix, AbsValue and F32Matrix/F32Value on a stack (S, r, c) give, for
    each stack element, what the single matrix gives (the stacked trajectories of
    certified_bound rely on it)."""
    from rnnperturb.verified.linalg import AbsValue, F32Matrix, F32Value, VerifiedMatrix
    rng = np.random.default_rng(11)
    S, B, n = 2, 5, 7
    A = rng.standard_normal((S, n, n))
    v = np.abs(rng.standard_normal((S, B, n)))
    vn = np.linalg.norm(v, axis=-1) * 1.01
    st, singles = VerifiedMatrix(A), [VerifiedMatrix(A[s]) for s in range(S)]
    for exact in (True, False):
        got = st.absmv(v, vn, exact)
        for s in range(S):
            assert np.array_equal(got[s], singles[s].absmv(v[s], vn[s], exact))
    got = st.dnorm(v)
    for s in range(S):
        assert np.array_equal(st.norm[s], singles[s].norm)
        assert np.array_equal(got[s], singles[s].dnorm(v[s]))
    w = np.abs(rng.standard_normal((3, S, B, n)))
    got = AbsValue(w).matvec(A).val
    for s in range(S):
        assert np.allclose(got[:, s], AbsValue(w[:, s]).matvec(A[s]).val, rtol=1e-14, atol=0)
    Z = rng.standard_normal((S, n, B, n)).astype(np.float32)
    got = F32Value(Z).matvec(F32Matrix(A))
    for s in range(S):
        one = F32Value(Z[s]).matvec(F32Matrix(A[s]))
        assert np.allclose(got.val[s], one.val, rtol=1e-5, atol=1e-6)
        assert got.depth == one.depth and got.alpha >= one.alpha and got.mu >= one.mu


def test_gram_step_without_symmetrisation_is_an_upper_bound():
    r"""_Lyapunov keeps a non-symmetric C~ whose symmetric part bounds the exact Gram
    matrix: its lambda_max bound is never below lambda_max of the exact recursion
    C_t = J C_{t-1} J^T + diag(gamma^2) (evaluated in longdouble), over many steps
    with expanding J."""
    from rnnperturb.bounds.trajectory import _Lyapunov
    rng = np.random.default_rng(12)
    B, n, T = 4, 12, 25
    ly = _Lyapunov(B, n)
    N0 = np.full(B, 1e-14)
    ly.maybe_activate(N0, np.zeros(B), 0.0)
    ld = np.longdouble
    C = np.stack([np.eye(n, dtype=ld) * ld(1e-28)] * B)
    for t in range(1, T + 1):
        J = rng.standard_normal((B, n, n)) * 1.5 / np.sqrt(n)
        gam = np.abs(rng.standard_normal((B, n))) * 1e-16
        out = ly.step(np.arange(B), J, gam)
        Jl = J.astype(ld)
        C = Jl @ C @ np.swapaxes(Jl, 1, 2) + np.stack([np.diag(g.astype(ld) ** 2) for g in gam])
        lam_true = np.array([np.linalg.eigvalsh(c.astype(np.float64)).max() for c in C])
        lam_bound = out ** 2 / (1 + n * t)
        assert np.all(lam_bound >= lam_true * (1 + 1e-12)), (t, lam_bound / lam_true)
        assert np.all(lam_bound <= lam_true * 10 * n)          # and not vacuous


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_identical_matrices_give_the_exact_zero_and_one_ulp_does_not(kind):
    """Equal recurrent matrices (truncation at full rank): the exact trajectories
    coincide, so 0 is the exact bound (every tier, norm and componentwise, and the
    rigorous interval reference encloses 0). One ulp changed in one entry takes the
    general path: positive, and never below the rigorous reference."""
    rng = np.random.default_rng(21)
    cell = random_cell(kind, 6, 2, spectral_norm=1.5, bias_scale=1.0, seed=rng)
    X = rng.standard_normal((15, 3, 2))
    same = cell.replace(**{k: W.copy() for k, W in cell.recurrent.items()})
    lo, hi = truth_lower(cell, same, X)
    assert np.all(lo == 0) and np.all(hi < 1e-100)
    for tier in ("auto", "fast", "tight"):
        assert np.all(certified_bound(cell, same, X, tier=tier) == 0)
        assert np.all(certified_bound(cell, same, X, tier=tier, componentwise=True) == 0)
    name = cell.recurrent_names[0]
    W = cell.recurrent[name].copy()
    W[0, 0] = np.nextafter(W[0, 0], np.inf)
    ulp = cell.replace(**{name: W})
    lo, _ = truth_lower(cell, ulp, X)
    for tier in ("auto", "fast", "tight"):
        bd = certified_bound(cell, ulp, X, tier=tier)
        assert np.all(bd >= lo) and np.all(bd > 0)


@pytest.mark.parametrize("name", ["elman_memorization_D50", "mgru_memorization_D50"])
def test_per_step_norm_products_overshoot_the_propagators(name):
    r"""Why the default tier carries the rounding through multi-step propagators (README,
    "The fast tier ... vacuous"): on the D = 50 checkpoints (T = 61, first two sequences)
    the product of the exact per-step norms :math:`\prod_t\|J_t\|_2` exceeds the norm of the
    propagator it bounds, :math:`\|\Phi(T, 0)\|_2 = \|J_T\cdots J_1\|_2`, by more than 15
    orders of magnitude (measured 16.1-23.4), so a float64 rounding error of 1e-16
    carried by any per-step recursion reaches order one. Both sides from the exact
    float64 Jacobians along the float64 trajectory."""
    cell, meta = rp.load_with_metadata(f"validation/checkpoints/{name}.npz")
    X = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"]).X[:, :2]
    H = cell.run(X)
    for b in range(2):
        h, Phi, logprod = np.zeros(cell.n), np.eye(cell.n), 0.0
        for t in range(X.shape[0]):
            J = cell.jacobian(h, X[t, b])
            Phi = J @ Phi
            logprod += np.log10(np.linalg.norm(J, 2))
            h = H[t, b]
        assert np.allclose(h, cell.run(X[:, b])[-1], rtol=0, atol=1e-12)   # that trajectory
        assert logprod - np.log10(np.linalg.norm(Phi, 2)) > 15, (b, logprod)
