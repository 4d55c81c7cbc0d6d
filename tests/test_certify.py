"""Tests of certified recall (issue 4, item 3).

The recall logic is checked with a *stand-in* bound, the exact deviation norm
||e_t|| computed by an mpmath-free float64 simulation and inflated by 1e-9
relative (labelled STAND-IN below; tests only), and with the library's certified
bound (``rnnperturb.bounds.trajectory.certified_bound``). The reference for "correct" is
the exact perturbed trajectory's arg-max.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rnnperturb as rp
from rnnperturb.bounds.recall import (_full_from, certified_recall, certified_safe_rank,
                                      recall_margins)
from rnnperturb.cells.random import random_cell
from rnnperturb.perturb.low_rank import truncate_svd


def standin_bound(cell, other, X):
    """STAND-IN (tests only): the exact ||e_t||, inflated far above float64 rounding."""
    return np.linalg.norm(rp.deviation(cell, other, X), axis=-1) * (1 + 1e-9) + 1e-12


def perturbed(cell, rel, rng):
    new = {}
    for k, W in cell.recurrent.items():
        d = rng.standard_normal(W.shape)
        new[k] = W + d * (rel * np.linalg.norm(W, 2) / np.linalg.norm(d, 2))
    return cell.replace(**new)


def readout_net(kind, n, seed, task):
    """A random cell with a readout fitted by least squares to the task's targets,
    so that recall is mostly right nominally and margins vary."""
    rng = np.random.default_rng(seed)
    cell = random_cell(kind, n, task.m, spectral_norm=1.0, input_scale=2.0, seed=rng)
    H = cell.run(task.X)
    k = task.n_out
    Y = np.eye(k)[task.targets]
    A = np.concatenate([H.reshape(-1, n), np.ones((H.shape[0] * H.shape[1], 1))], axis=1)
    sol = np.linalg.lstsq(A, Y.reshape(-1, k), rcond=None)[0]
    return cell.replace(V=sol[:-1].T, c=sol[-1])


TASK = rp.tasks.memorization_all(2, 5, 2)

_CKPT = {}


def recalling_net(kind):
    """A shipped trained checkpoint (n = 64, D = 10) and its task: it recalls
    all 32 sequences with O(1) margins, so the properties below run on 32
    correct sequences (the least-squares ``readout_net`` recalls only 1-5)."""
    if kind not in _CKPT:
        cell, meta = rp.load_with_metadata(f"validation/checkpoints/{kind}_memorization_D10.npz")
        _CKPT[kind] = (cell, rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"]))
    return _CKPT[kind]


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_recalling_net_recalls(kind):
    cell, task = recalling_net(kind)
    H = cell.run(task.X)
    ok = ((np.argmax(cell.readout(H), -1) == task.targets) | ~task.recall).all(0)
    assert ok.mean() == 1.0


def design_test(cell, task, bound):
    """DESIGN §2(e): bound * max_j ||V_y - V_j|| < y_y - max_{j != y} y_j, per sequence."""
    H = cell.run(task.X)
    Y = cell.readout(H)
    ok = np.ones(task.B, bool)
    for t in np.where(task.recall[:, 0])[0]:
        for b in range(task.B):
            y = task.targets[t, b]
            others = [j for j in range(cell.V.shape[0]) if j != y]
            dn = max(np.linalg.norm(cell.V[y] - cell.V[j]) for j in others)
            margin = Y[t, b, y] - max(Y[t, b, j] for j in others)
            ok[b] &= bound[t, b] * dn < margin
    return ok


def _standin_properties(cell, other, task):
    bound = standin_bound(cell, other, task.X)
    res = certified_recall(cell, other, task, bound=bound)
    assert np.all(res.correct[res.certified])
    assert res.certified_accuracy <= res.accuracy
    # the per-class test is implied by the DESIGN §2(e) test (it is sharper)
    d = design_test(cell, task, bound)
    assert np.all(res.certified[d])
    # a larger bound certifies a subset
    res2 = certified_recall(cell, other, task, bound=2 * bound)
    assert np.all(res.certified[res2.certified])
    return res


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["elman", "mgru"]), n=st.integers(8, 24),
       rel=st.sampled_from([1e-3, 1e-2, 0.05, 0.2, 0.5]), seed=st.integers(0, 10 ** 6))
def test_certified_implies_correct_standin(kind, n, rel, seed):
    cell = readout_net(kind, n, seed, TASK)
    _standin_properties(cell, perturbed(cell, rel, np.random.default_rng(seed + 1)), TASK)


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["elman", "mgru"]), rel=st.sampled_from([1e-3, 1e-2, 0.05, 0.2]),
       seed=st.integers(0, 10 ** 6))
def test_certified_implies_correct_standin_recalling(kind, rel, seed):
    """The same properties on a net that recalls every sequence: the small
    perturbations keep (and are certified to keep) most of them correct, the
    large ones break some, so both sides of every implication are exercised."""
    cell, task = recalling_net(kind)
    res = _standin_properties(cell, perturbed(cell, rel, np.random.default_rng(seed)), task)
    if rel <= 1e-3:
        assert res.accuracy == 1.0 and res.certified_accuracy >= 0.5


@settings(max_examples=4, deadline=None)
@given(kind=st.sampled_from(["elman", "mgru"]), rel=st.sampled_from([1e-4, 1e-3, 1e-2]),
       seed=st.integers(0, 10 ** 6))
def test_certified_implies_correct_real_bound_recalling(kind, rel, seed):
    """The library's default bound on a recalling net: sound against the float64
    deviation, certified implies correct, and at rel = 1e-4 it certifies most."""
    cell, task = recalling_net(kind)
    other = perturbed(cell, rel, np.random.default_rng(seed))
    res = certified_recall(cell, other, task)
    assert np.all(res.correct[res.certified])
    E = np.linalg.norm(rp.deviation(cell, other, task.X), axis=-1)
    assert np.all(res.bound >= E)
    if rel <= 1e-4:
        assert res.certified_accuracy >= 0.9


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["elman", "mgru"]), rel=st.sampled_from([1e-4, 1e-2, 0.1, 0.5]),
       seed=st.integers(0, 10 ** 6))
def test_certified_implies_correct_real_bound(kind, rel, seed):
    cell = readout_net(kind, 12, seed, TASK)
    other = perturbed(cell, rel, np.random.default_rng(seed + 1))
    for tier in ("auto", "fast", "tight"):
        res = certified_recall(cell, other, TASK, tier=tier)
        assert np.all(res.correct[res.certified])
        E = np.linalg.norm(rp.deviation(cell, other, TASK.X), axis=-1)
        assert np.all(res.bound >= E)


def test_margins_by_hand():
    """n = 2, k = 3 readout: margins and ||V_y - V_j|| against a hand computation."""
    task = rp.tasks.memorization_all(2, 1, 0)          # 2 sequences, T = 3, m = 4
    cell = rp.ElmanRNN(W=[[0.5, 0.0], [0.0, 0.5]], U=[[1, -1, 0, 0.5], [0, 0, 1, 0]],
                       b=[0.0, 0.1], V=[[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0]], c=[0.0, 0.0, 0.3])
    margin, dnorm, dabs = recall_margins(cell, task)
    H = cell.run(task.X)
    t = 2                                                # the recall step (T = 2L + D + 1 = 3)
    assert task.recall[t].all() and not task.recall[:t].any()
    for b in range(2):
        y = task.targets[t, b]
        logits = cell.V @ H[t, b] + cell.c
        for j in range(3):
            if j == y:
                assert margin[t, b, j] == np.inf and dnorm[t, b, j] == 0
                continue
            assert margin[t, b, j] == pytest.approx(logits[y] - logits[j], abs=1e-11)
            assert margin[t, b, j] <= logits[y] - logits[j]
            assert dnorm[t, b, j] == pytest.approx(np.linalg.norm(cell.V[y] - cell.V[j]), rel=1e-14)
    assert np.isnan(margin[:t]).all()


def test_zero_and_huge_bound():
    cell = readout_net("elman", 16, 3, TASK)
    other = perturbed(cell, 0.01, np.random.default_rng(0))
    zero = certified_recall(cell, other, TASK, bound=np.zeros((TASK.T, TASK.B)))
    H = cell.run(TASK.X)
    nominal_ok = ((np.argmax(cell.readout(H), -1) == TASK.targets) | ~TASK.recall).all(0)
    assert np.array_equal(zero.certified, nominal_ok)      # margins are O(1), rounding tiny
    huge = certified_recall(cell, other, TASK, bound=np.full((TASK.T, TASK.B), 1e6))
    assert not huge.certified.any() and huge.certified_accuracy == 0.0
    assert np.all(huge.slack < 0)


def test_first_order_prediction():
    cell = readout_net("mgru", 16, 4, TASK)
    other = perturbed(cell, 0.2, np.random.default_rng(1))
    res = certified_recall(cell, other, TASK, bound=standin_bound(cell, other, TASK.X))
    L = rp.first_order(cell, other, TASK.X)
    pred = ((np.argmax(cell.readout(cell.run(TASK.X) + L), -1) == TASK.targets)
            | ~TASK.recall).all(0)
    assert np.array_equal(res.predicted, pred)
    tiny = perturbed(cell, 1e-7, np.random.default_rng(2))
    r2 = certified_recall(cell, tiny, TASK, bound=standin_bound(cell, tiny, TASK.X))
    assert np.array_equal(r2.predicted, r2.correct)


def test_safe_rank_standin_and_definitions():
    cell = readout_net("elman", 12, 5, TASK)
    S = certified_safe_rank(cell, TASK, bound_fn=standin_bound)
    assert list(S.ranks) == list(range(13))
    assert np.all(S.certified_accuracy <= S.accuracy)
    assert S.accuracy[-1] == S.certified_accuracy[-1]        # rank n: no perturbation
    # the per-rank numbers equal single certified_recall calls
    r = 6
    one = certified_recall(cell, truncate_svd(cell, rank=r), TASK,
                           bound=standin_bound(cell, truncate_svd(cell, rank=r), TASK.X))
    assert S.certified_accuracy[r] == one.certified_accuracy and S.accuracy[r] == one.accuracy


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_safe_rank_gap_on_recalling_net(kind):
    """On a net that recalls everything both safe ranks exist, so the gap
    definitions are checked (they were skipped on the least-squares nets)."""
    cell, task = recalling_net(kind)
    ranks = list(range(8, 65, 8))
    S = certified_safe_rank(cell, task, ranks=ranks, bound_fn=standin_bound)
    assert S.empirical_safe_rank is not None and S.certified_safe_rank is not None
    full = np.where(S.accuracy >= 1)[0]
    cfull = np.where(S.certified_accuracy >= 1)[0]
    assert S.empirical_safe_rank == S.ranks[full[0]]
    assert S.certified_safe_rank == S.ranks[cfull[0]]
    assert S.gap == S.certified_safe_rank - S.empirical_safe_rank >= 0
    assert S.gap_fraction == S.gap / cell.n
    assert S.certified_safe_from == _full_from(S.ranks, S.certified_accuracy)
    assert S.empirical_safe_from >= S.empirical_safe_rank
    assert S.certified_accuracy[-1] == S.accuracy[-1] == 1.0
    assert np.all(S.bound_ratio[:-1] >= 1.0)                 # the stand-in is >= exact


def test_full_from():
    r = np.array([0, 2, 4, 6, 8])
    assert _full_from(r, np.array([0.5, 1.0, 0.9, 1.0, 1.0])) == 6     # not monotone
    assert _full_from(r, np.array([1.0, 1.0, 1.0, 1.0, 1.0])) == 0
    assert _full_from(r, np.array([1.0, 1.0, 1.0, 1.0, 0.9])) is None  # last rank fails
    assert _full_from(r, np.array([0.0, 0.0, 0.0, 0.0, 1.0])) == 8
    assert _full_from(np.array([3]), np.array([1.0])) == 3


@pytest.mark.parametrize("kind,low", [("mgru", 32), ("elman", 56)])
def test_checkpoint_certified_default_tier(kind, low):
    """The default tier certifies every sequence at full rank (the rounding
    floor of the bound is far below the margins), and a non-trivial fraction
    at a truncated rank where the net still recalls (measured: MGRU rank 32:
    32/32; Elman rank 56: 29/32); certified implies correct at every rank."""
    cell, task = recalling_net(kind)
    full = certified_recall(cell, truncate_svd(cell, rank=cell.n), task)
    assert full.accuracy == 1.0 and full.certified_accuracy == 1.0
    assert np.max(full.bound) < 1e-6
    for r in (low, 16):
        res = certified_recall(cell, truncate_svd(cell, rank=r), task)
        assert np.all(res.correct[res.certified])
        if r == low:
            assert res.accuracy == 1.0 and res.certified_accuracy >= 0.75


def test_errors():
    cell = random_cell("elman", 6, TASK.m, seed=0)
    other = perturbed(cell, 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="cell"):
        certified_recall(cell, other, TASK, bound=np.zeros((TASK.T, TASK.B)))
    cell = readout_net("elman", 6, 0, TASK)
    other = perturbed(cell, 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="bound"):
        certified_recall(cell, other, TASK, bound=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="bound"):
        certified_recall(cell, other, TASK, bound=-np.ones((TASK.T, TASK.B)))
    with pytest.raises(ValueError, match="task"):
        certified_recall(cell, other, rp.tasks.ar_signal(20, batch=2, seed=0))
    with pytest.raises(ValueError, match="ranks"):
        certified_safe_rank(cell, TASK, ranks=[7])
    with pytest.raises(ValueError, match="other"):
        certified_recall(cell, other.replace(b=other.b + 1), TASK)


def test_componentwise_bound_sharpens():
    """STAND-IN exact |e| componentwise: certifies a superset of the norm test alone,
    and still only correct sequences."""
    cell = readout_net("elman", 16, 7, TASK)
    other = perturbed(cell, 0.3, np.random.default_rng(3))
    bound = standin_bound(cell, other, TASK.X)
    absE = np.abs(rp.deviation(cell, other, TASK.X)) * (1 + 1e-9) + 1e-12
    a = certified_recall(cell, other, TASK, bound=bound)
    b = certified_recall(cell, other, TASK, bound=bound, componentwise_bound=absE)
    assert np.all(b.certified[a.certified])
    assert np.all(b.correct[b.certified])
    assert np.all(b.slack >= a.slack)
    with pytest.raises(ValueError, match="componentwise_bound"):
        certified_recall(cell, other, TASK, bound=bound, componentwise_bound=absE[..., :3])
