"""Certified recall over sets of perturbations and certified tolerances (issue 12)."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.bounds.set_recall import (GaussianNoise, certified_noise_recall,
                                          certified_set_recall, certified_tolerance)
from rnnperturb.perturb.elementwise import quantize_matrix

from conftest import readout_net_and_task, recalls_every_step, with_delta

KINDS = ("elman", "mgru")


def _net(kind, seed=0, n=6, **kw):
    return readout_net_and_task(kind, seed=seed, n=n, **kw)


_recalls = recalls_every_step
_with = with_delta


def _box_members(cell, S, seed):
    out = [S.sample(cell, seed + i, how=h) for i in range(6)
           for h in ("boundary", "spike", "interior")]
    E = S.radii(cell)
    out += [{k: E[k] * (1 - 1e-12) for k in E}, {k: -E[k] * (1 - 1e-12) for k in E}]
    return out


def _roundings(cell, bits):
    """The actual round-to-nearest, toward zero, floor and ceiling onto quantize()'s grid."""
    out = {"nearest": {}, "trunc": {}, "floor": {}, "ceil": {}}
    for k in cell.recurrent_names:
        W = np.asarray(cell.recurrent[k], np.float64)
        Wq, s = quantize_matrix(W, bits=bits)
        out["nearest"][k] = Wq - W
        for name, f in (("trunc", np.trunc), ("floor", np.floor), ("ceil", np.ceil)):
            out[name][k] = s * f(W / s) - W
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_cell_argument_keeps_old_behaviour(kind):
    c, task = _net(kind)
    other = rp.quantize(c, bits=6)
    a = rp.certified_recall(c, other, task)
    assert a.certified.shape == (task.X.shape[1],)
    with pytest.raises(ValueError):
        certified_set_recall(c, "not a set", task)


@pytest.mark.parametrize("kind", KINDS)
def test_bits_certificate_sound_and_bisection_exact(kind):
    c, task = _net(kind)
    for rounding in ("any", "nearest"):
        tol = certified_tolerance(c, task, kind="bits", rounding=rounding)
        assert tol.certified is not None and tol.measured is not None
        assert tol.certified >= tol.measured            # certified is conservative
        b = tol.certified
        S = rp.sets.quantization(c, bits=b, rounding=rounding)
        res = rp.certified_recall(c, S, task)             # dispatch on the set
        assert res.certified.all()
        if b > 2:                                         # bisection: b - 1 does not certify
            r1 = certified_set_recall(c, rp.sets.quantization(c, bits=b - 1, rounding=rounding),
                                      task, samples=0)
            assert not r1.certified.all()
        assert (b - 1, False) in tol.evaluations or b == 2
        # samples of the set: vertices, spikes, the actual roundings
        members = _box_members(c, S, seed=10)
        rd = _roundings(c, b)
        members += [rd["nearest"]] if rounding == "nearest" else list(rd.values())
        members += [{k: np.asarray(rp.quantize(c, bits=b).recurrent[k])
                     - np.asarray(c.recurrent[k]) for k in c.recurrent_names}]
        for dW in members:
            assert S.contains(c, dW)
            assert _recalls(_with(c, dW), task)[res.certified].all()


@pytest.mark.parametrize("kind", KINDS)
def test_drift_certificate_sound(kind):
    c, task = _net(kind, seed=1)
    tol = certified_tolerance(c, task, kind="drift", steps=6, samples=8)
    d = tol.certified
    assert d is not None and tol.measured is not None
    assert d <= tol.measured * (1 + 1e-12)                # certified <= empirical
    assert (d, True) in tol.evaluations
    # bracket: a failing parameter above d within the bisection's final ratio
    fails = [p for p, ok in tol.evaluations if not ok and p > d]
    assert fails and min(fails) <= d * (1e8) ** (2.0 ** -6) * (1 + 1e-9)
    S = rp.sets.drift(c, rel=d)
    res = certified_set_recall(c, S, task)
    assert res.certified.all()
    for dW in _box_members(c, S, seed=3):
        assert _recalls(_with(c, dW), task)[res.certified].all()


@pytest.mark.parametrize("kind", KINDS)
def test_noise_certificate_holds_on_draws(kind):
    c, task = _net(kind, seed=2)
    tol = certified_tolerance(c, task, kind="noise", confidence=0.99, steps=5, samples=20)
    s = tol.certified
    assert s is not None and s <= tol.measured * (1 + 1e-12)
    res = certified_noise_recall(c, task, std=s, confidence=0.99)
    assert res.certified.all()
    assert res.certified_accuracy == rp.certified_recall(
        c, GaussianNoise(std=s, confidence=0.99), task).certified_accuracy
    noise = GaussianNoise(std=s)
    rng = np.random.default_rng(7)
    for _ in range(100):                                   # probability of any flip <= 1 %
        assert _recalls(_with(c, noise.sample(c, rng)), task)[res.certified].all()


@pytest.mark.parametrize("kind", KINDS)
def test_ball_certificate_sound(kind):
    c, task = _net(kind, seed=3)
    S = rp.sets.Ball(radius=0.05)
    res = rp.certified_recall(c, S, task)
    assert res.certified.any()
    for i in range(10):
        for how in ("boundary", "spike"):
            assert _recalls(_with(c, S.sample(c, i, how=how)), task)[res.certified].all()
    big = certified_set_recall(c, rp.sets.Ball(radius=50.0), task, samples=4)
    assert not big.certified.any()                         # vacuous radius certifies nothing


@pytest.mark.parametrize("integer", [False, True])
def test_tolerance_search_against_exhaustive_thresholds(integer):
    """The two-level search (hard subset, first-order next points, chunked verification)
    on synthetic sequences with known thresholds y_i (certified iff y <= y_i) and a
    distorted headroom estimate: the answer is certified on every sequence, a failure
    lies within the tolerance above it, and every recorded evaluation is true."""
    from rnnperturb.bounds.set_recall import _tolerance_search
    rng = np.random.default_rng(0)
    for trial in range(40):
        B = int(rng.integers(1, 40))
        thr = rng.uniform(-15, -2, B)
        if integer:
            thr = np.floor(thr)
        prio = thr + rng.normal(0, 3, B)                    # a poor ranking proxy
        distort = rng.uniform(0.3, 3.0, B)                  # a poor first-order estimate

        def evaluate(p, idx, thr=thr, distort=distort):
            y = -p if integer else np.log(p)
            idx = np.asarray(idx)
            return thr[idx] >= y, np.exp(distort[idx] * (thr[idx] - y))

        evals = []
        tol = 1.0 if integer else 0.05
        from_y = (lambda y: int(round(-y))) if integer else np.exp
        res = _tolerance_search(evaluate, np.arange(B), prio, from_y, -16.0, -1.0, tol,
                                np.log, integer=integer, evals=evals)
        truth = thr.min()
        if truth < -16.0:
            assert res is None
            continue
        y = -res if integer else np.log(res)
        assert y <= truth + 1e-12                            # certified on every sequence
        assert y >= truth - tol - 1e-9                       # within the final bracket
        for p, ok in evals:
            yy = -p if integer else np.log(p)
            if ok:
                assert np.all(thr >= yy - 1e-12)            # a recorded success is one
            else:
                assert yy > truth - 1e-12                   # a recorded failure is a failure


@pytest.mark.parametrize("kind", KINDS)
def test_one_sided_passed_through(kind):
    """one_sided=True reaches the set bound (the recall's bound is set_bound's with the
    option, on every sequence of the task) and the noise bound, and its drift certificate
    holds on members of the certified box (vertices, spikes, interior points)."""
    from rnnperturb.stats.noise_bound import noise_bound
    c, task = _net(kind, seed=1)
    S = rp.sets.drift(c, rel=1e-2)
    res = certified_set_recall(c, S, task, samples=0, one_sided=True)
    b1 = rp.set_bound(c, S, task.X, box_refine=False, one_sided=True, chords=False)
    np.testing.assert_array_equal(res.bound, b1)
    b0 = rp.set_bound(c, S, task.X, box_refine=False, chords=False)
    assert not np.array_equal(b1, b0)                                            # it acts
    # chords: off by default here (the shipped tables), passed through when asked
    np.testing.assert_array_equal(certified_set_recall(c, S, task, samples=0).bound, b0)
    rc = certified_set_recall(c, S, task, samples=0, chords=True)
    np.testing.assert_array_equal(rc.bound, rp.set_bound(c, S, task.X, box_refine=False))
    assert not np.array_equal(rc.bound, b0)
    nb = rp.certified_recall(c, GaussianNoise(std=1e-3, confidence=0.9), task)
    nb1 = certified_set_recall(c, GaussianNoise(std=1e-3, confidence=0.9), task, samples=0,
                               one_sided=True)
    conf = 1 - 0.1 / task.X.shape[1]
    np.testing.assert_array_equal(nb1.bound, noise_bound(c, task.X, std=1e-3, confidence=conf,
                                                         one_sided=True, chords=False))
    np.testing.assert_array_equal(nb.bound, noise_bound(c, task.X, std=1e-3, confidence=conf,
                                                        chords=False))
    assert nb.bound.shape == nb1.bound.shape and not np.array_equal(nb.bound, nb1.bound)
    tol = certified_tolerance(c, task, kind="drift", steps=5, samples=8, one_sided=True)
    d = tol.certified
    assert d is not None and d <= tol.measured * (1 + 1e-12)
    Sd = rp.sets.drift(c, rel=d)
    r = certified_set_recall(c, Sd, task, samples=0, one_sided=True)
    assert r.certified.all()
    for dW in _box_members(c, Sd, seed=5):
        assert _recalls(_with(c, dW), task)[r.certified].all()
