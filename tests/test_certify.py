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
from rnnperturb.bounds.recall import certified_recall, certified_safe_rank, recall_margins
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


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["elman", "mgru"]), n=st.integers(8, 24),
       rel=st.sampled_from([1e-3, 1e-2, 0.05, 0.2, 0.5]), seed=st.integers(0, 10 ** 6))
def test_certified_implies_correct_standin(kind, n, rel, seed):
    cell = readout_net(kind, n, seed, TASK)
    other = perturbed(cell, rel, np.random.default_rng(seed + 1))
    bound = standin_bound(cell, other, TASK.X)
    res = certified_recall(cell, other, TASK, bound=bound)
    assert np.all(res.correct[res.certified])
    assert res.certified_accuracy <= res.accuracy
    # the per-class test is implied by the DESIGN §2(e) test (it is sharper)
    d = design_test(cell, TASK, bound)
    assert np.all(res.certified[d])
    # a larger bound certifies a subset
    res2 = certified_recall(cell, other, TASK, bound=2 * bound)
    assert np.all(res.certified[res2.certified])


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["elman", "mgru"]), rel=st.sampled_from([1e-4, 1e-2, 0.1, 0.5]),
       seed=st.integers(0, 10 ** 6))
def test_certified_implies_correct_real_bound(kind, rel, seed):
    cell = readout_net(kind, 12, seed, TASK)
    other = perturbed(cell, rel, np.random.default_rng(seed + 1))
    for tier in ("fast", "tight"):
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
    full = np.where(S.accuracy >= 1)[0]
    assert S.empirical_safe_rank == (S.ranks[full[0]] if full.size else None)
    cfull = np.where(S.certified_accuracy >= 1)[0]
    assert S.certified_safe_rank == (S.ranks[cfull[0]] if cfull.size else None)
    if S.certified_safe_rank is not None and S.empirical_safe_rank is not None:
        assert S.gap == S.certified_safe_rank - S.empirical_safe_rank >= 0
        assert S.gap_fraction == S.gap / 12
    # the per-rank numbers equal single certified_recall calls
    r = 6
    one = certified_recall(cell, truncate_svd(cell, rank=r), TASK,
                           bound=standin_bound(cell, truncate_svd(cell, rank=r), TASK.X))
    assert S.certified_accuracy[r] == one.certified_accuracy and S.accuracy[r] == one.accuracy


def test_checkpoint_certified_implies_correct():
    cell, meta = rp.load_with_metadata("validation/checkpoints/mgru_memorization_D10.npz")
    task = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"])
    for r in (8, 24, 48, 64):
        res = certified_recall(cell, truncate_svd(cell, rank=r), task, tier="fast")
        assert np.all(res.correct[res.certified])
    assert res.accuracy == 1.0                                # rank n = the trained net


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
