"""recommend_rank's MGRU allocation over two matrices, against an independent
exhaustive reference over the whole allocation grid.

The contract (``recommend_rank`` docstring): each of W_f, W_h is kept dense
(rank n) or truncated below n/2 (only those ranks save storage); the
allocation is found by a greedy descent from (n, n) whose step halves until no
move passes, so the result passes the tolerance and no single-step move from
it (one rank lower, or from dense to the largest saving rank) passes; it is a
heuristic, so a cheaper passing allocation elsewhere in the grid is allowed.
``value`` is the deviation measure at the allocation, ``params`` its stored
parameter count (2nr for a factored matrix, n^2 for a dense one) and every
evaluated allocation is in ``evidence``. The Elman path (one matrix, smallest
passing rank) is tested in test_cli.py.
"""
import dataclasses

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.report.rank_analysis import sound_cap

CKPT = "validation/checkpoints/mgru_memorization_D20.npz"


def _grid(n):
    """The ranks the contract allows per matrix: 0..(n-1)//2 (saving) and n (dense)."""
    return list(range((n - 1) // 2 + 1)) + [n]


def _params(cell, rank):
    """Stored parameters of an allocation, by the documented formula."""
    n = cell.n
    out = cell.n_params - len(cell.recurrent_names) * n * n
    for r in rank.values():
        out += 2 * n * r if 2 * r < n else n * n
    return out


def _certified_grid(cell, X, tier):
    """Max certified bound (capped at the sound cap) at every allowed allocation."""
    cap = sound_cap(cell)
    R = _grid(cell.n)
    ref = {}
    for rf in R:
        for rh in R:
            small = rp.truncate_svd(cell, rank={"Wf": rf, "Wh": rh})
            b = np.asarray(rp.certified_bound(cell, small, X, tier=tier), np.float64)
            ref[(rf, rh)] = float(np.max(np.where(np.isfinite(b) & (b <= cap), b, cap)))
    return ref


def _first_order_grid(cell, X):
    """Max first-order deviation at every allowed allocation, from one rank sweep."""
    R = _grid(cell.n)
    sw = rp.rank_sweep(cell, X, {"Wf": R, "Wh": R})
    assert sw.names == ("Wf", "Wh")
    fo = sw.first_order.reshape(len(sw.ranks), -1).max(axis=1)
    return {(int(a), int(b)): float(v) for (a, b), v in zip(sw.ranks, fo)}


def _violations(cell, rec, ref, tol, rtol=1e-9):
    """Every way ``rec`` breaks the contract, given the reference ``ref``
    ((r_f, r_h) -> deviation measure over the whole allowed grid)."""
    n, top = cell.n, (cell.n - 1) // 2
    out = []
    if rec.rank is None:
        if ref[(n, n)] <= tol:
            out.append("rank None although (n, n) passes")
        return out
    if set(rec.rank) != {"Wf", "Wh"}:
        return [f"allocation over {sorted(rec.rank)}, expected Wf and Wh"]
    key = (rec.rank["Wf"], rec.rank["Wh"])
    if any(r not in _grid(n) for r in key):
        return [f"rank {key}: each must be n or below n/2"]
    if ref[key] > tol:
        out.append(f"{key} fails: {ref[key]} > {tol}")
    if not np.isclose(rec.value, ref[key], rtol=rtol, atol=1e-15):
        out.append(f"value {rec.value} != reference {ref[key]}")
    for i, k in enumerate(("Wf", "Wh")):
        r = key[i]
        nr = top if r == n else r - 1
        if nr < 0:
            continue
        nb = list(key)
        nb[i] = nr
        if ref[tuple(nb)] <= tol:
            out.append(f"{key} is not where the descent stops: moving {k} to {nr} passes "
                       f"({ref[tuple(nb)]} <= {tol})")
    if rec.params != _params(cell, rec.rank):
        out.append(f"params {rec.params} != {_params(cell, rec.rank)}")
    if not np.isclose(rec.compression_ratio, rec.params / cell.n_params, rtol=1e-12):
        out.append(f"compression_ratio {rec.compression_ratio}")
    ev = {(e["Wf"], e["Wh"]): v for e, v in rec.evidence}
    if key not in ev:
        out.append(f"{key} not in evidence")
    for k, v in ev.items():
        if not np.isclose(v, ref[k], rtol=rtol, atol=1e-15):
            out.append(f"evidence {k}: {v} != reference {ref[k]}")
    return out


def _cheapest(cell, ref, tol):
    return min(_params(cell, {"Wf": a, "Wh": b}) for (a, b), v in ref.items() if v <= tol)


@pytest.fixture(scope="module")
def small_mgru():
    cell = rp.random_cell("mgru", 10, 3, spectral_norm=1.0, bias_scale=0.3, seed=5)
    X = np.random.default_rng(0).standard_normal((15, 4, 3)) / np.sqrt(3)
    return cell, X, _certified_grid(cell, X, "tight")


@pytest.mark.parametrize("q", [0.2, 0.5])
def test_mgru_certified_allocation(small_mgru, q):
    cell, X, ref = small_mgru
    tol = float(np.quantile(list(ref.values()), q))
    rec = rp.recommend_rank(cell, X, tolerance=tol, method="certified", tier="tight")
    assert rec.method == "certified" and rec.tolerance == tol and rec.horizon == X.shape[0]
    assert _violations(cell, rec, ref, tol) == []
    assert rec.rank != {"Wf": 10, "Wh": 10}               # something was truncated
    assert rec.params >= _cheapest(cell, ref, tol)
    # the certificate holds: the exact deviation at the allocation is within tolerance
    small = rp.truncate_svd(cell, rank=rec.rank)
    assert np.linalg.norm(rp.deviation(cell, small, X), axis=-1).max() <= tol


def test_wrong_allocations_are_rejected(small_mgru):
    """The check above can fail: tampered recommendations are caught."""
    cell, X, ref = small_mgru
    n, top = cell.n, (cell.n - 1) // 2
    tol = float(np.quantile(list(ref.values()), 0.5))
    rec = rp.recommend_rank(cell, X, tolerance=tol, method="certified", tier="tight")
    assert _violations(cell, rec, ref, tol) == []

    def tampered(rank, **kw):
        key = (rank["Wf"], rank["Wh"])
        value = kw.pop("value", ref.get(key, 0.0))
        params = kw.pop("params", _params(cell, rank))
        return dataclasses.replace(rec, rank=rank, value=value, params=params,
                                   compression_ratio=params / cell.n_params, **kw)

    failing = min((k for k, v in ref.items() if v > tol), key=lambda k: ref[k] - tol)
    bad = _violations(cell, tampered({"Wf": failing[0], "Wh": failing[1]}), ref, tol)
    assert any("fails" in b for b in bad), bad
    # dense everywhere passes, but the descent would have moved on from it
    bad = _violations(cell, tampered({"Wf": n, "Wh": n}), ref, tol)
    assert any("not where the descent stops" in b for b in bad), bad
    # a rank in [n/2, n) saves nothing and is never proposed
    assert _violations(cell, tampered({"Wf": top + 1, "Wh": n}), ref, tol)
    # the right allocation with a wrong value, parameter count or evidence
    assert _violations(cell, dataclasses.replace(rec, value=rec.value * 0.5), ref, tol)
    assert _violations(cell, dataclasses.replace(rec, params=rec.params + 1), ref, tol)
    ev = list(rec.evidence)
    ev[0] = (ev[0][0], ev[0][1] + 1e-3)
    assert _violations(cell, dataclasses.replace(rec, evidence=tuple(ev)), ref, tol)


@pytest.fixture(scope="module")
def checkpoint():
    cell, meta = rp.load_with_metadata(CKPT)
    X, _ = rp.default_inputs(cell, meta)
    X = X[:, ::4]                                      # 8 of the 32 sequences
    return cell, X, _first_order_grid(cell, X)


@pytest.mark.parametrize("tol", [0.5, 1.0, 1.5])
def test_mgru_first_order_allocation_on_checkpoint(checkpoint, tol):
    """A trained MGRU with its task's inputs; the reference is the first-order
    deviation of every allowed allocation from one rank sweep (1089 points)."""
    cell, X, ref = checkpoint
    rec = rp.recommend_rank(cell, X, tolerance=tol, method="first_order")
    assert _violations(cell, rec, ref, tol, rtol=1e-9) == []
    # a heuristic: a cheaper passing allocation may exist (at tol = 1.5 it does,
    # (12, 9) with 3328 parameters against the descent's 3456)
    assert rec.params >= _cheapest(cell, ref, tol)


@pytest.mark.parametrize("make", [
    lambda: rp.random_cell("lstm", 5, 3, seed=0).replace(
        V=np.random.default_rng(1).standard_normal((3, 5)), c=np.zeros(3)),
    lambda: rp.random_stacked(["elman", "gru"], 5, 3, n_out=3, seed=1),
], ids=["lstm", "stacked"])
def test_accuracy_rows_state_size_above_n(make):
    """Cells whose state is more than h (LSTM's (h, c), a stack's layers): the accuracy
    of each row is the readout of the truncated network's output, and the margins of the
    certified test are those of the output (recall_margins runs the full state)."""
    from rnnperturb.bounds.recall import label_task, recall_margins
    from rnnperturb.report.rank_analysis import sound_cap
    cell = make()
    assert cell.state_size > cell.n
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, 40, 3))
    H = cell.run(X)
    y = np.argmax(cell.readout(H[-1]), -1)
    y = np.where(rng.random(40) < 0.3, (y + 1) % 3, y)
    rows = rp.analyze_ranks(cell, X, y=y, ranks=[0, 2, 5], certified=False)
    for row in rows:
        small = rp.truncate_svd(cell, rank=row.rank)
        assert row.accuracy == np.mean(np.argmax(small.readout(small.run(X)[-1]), -1) == y)
        assert row.certified_accuracy is None
    assert [set(r.rank) for r in rows] == [set(cell.recurrent_names)] * 3
    margin = recall_margins(cell, label_task(cell, X, y))[0][-1]         # (B, k)
    logits = cell.readout(H[-1])
    exact = logits[np.arange(40), y][:, None] - logits
    exact[np.arange(40), y] = np.inf
    assert np.all(margin <= exact) and np.all(margin >= exact - 1e-9)
    assert sound_cap(cell) == pytest.approx(2 * np.sqrt(5))
