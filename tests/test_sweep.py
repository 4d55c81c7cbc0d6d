"""rank_sweep equals per-rank calls of truncate_svd + deviation/first_order."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell


def _inputs(T=15, B=3, m=3, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, m))


def _forcing_energy(cell, small, X):
    """Σ_m ||ΔW_m a_m||² per (t, b), by a plain loop over the nominal trajectory."""
    T, B = X.shape[:2]
    dW = rp.delta_recurrent(cell, small)
    h = np.zeros((B, cell.n))
    out = np.zeros((T, B))
    for t in range(T):
        if cell.kind == "elman":
            regs = {"W": h}
        else:
            f, _ = cell.gates(h, X[t])
            regs = {"Wf": h, "Wh": f * h}
        for k, a in regs.items():
            out[t] += np.sum((a @ dW[k].T) ** 2, axis=1)
        h = cell.step(h, X[t])
    return out


def _check_point(cell, sw, i, X, rank):
    small = rp.truncate_svd(cell, rank=rank)
    E = rp.deviation(cell, small, X)
    L = rp.first_order(cell, small, X)
    scale = max(1.0, float(np.abs(E).max()))
    np.testing.assert_allclose(sw.exact[i], np.linalg.norm(E, axis=-1), atol=1e-12 * scale)
    np.testing.assert_allclose(sw.first_order[i], np.linalg.norm(L, axis=-1), atol=1e-12 * scale)
    np.testing.assert_allclose(sw.residual[i], np.linalg.norm(E - L, axis=-1), atol=1e-12 * scale)
    np.testing.assert_allclose(sw.forcing[i], _forcing_energy(cell, small, X),
                               rtol=1e-10, atol=1e-14)


def test_all_ranks_equal_per_rank_calls(kind):
    cell = random_cell(kind, 8, 3, spectral_norm=1.1, seed=1)
    X = _inputs()
    sw = rp.rank_sweep(cell, X)
    assert sw.ranks.shape == (9, len(cell.recurrent_names))
    assert sw.exact.shape == sw.first_order.shape == sw.forcing.shape == (9, 15, 3)
    for r in range(9):
        i = sw.index(r)
        assert sw.rank(i) == {k: r for k in cell.recurrent_names}
        _check_point(cell, sw, i, X, r)
    assert np.all(sw.exact[sw.index(8)] == 0) and np.all(sw.first_order[sw.index(8)] == 0)
    # norms of ΔW
    for r in (0, 3, 8):
        small = rp.truncate_svd(cell, rank=r)
        for k, dW in rp.delta_recurrent(cell, small).items():
            assert sw.dW_spectral[k][sw.index(r)] == pytest.approx(np.linalg.norm(dW, 2), abs=1e-12)
            assert sw.dW_frobenius[k][sw.index(r)] == pytest.approx(np.linalg.norm(dW), abs=1e-12)


def test_rank_subset_single_sequence_and_h0(kind):
    cell = random_cell(kind, 7, 2, seed=2)
    X = _inputs(T=10, B=1, m=2)[:, 0]
    h0 = np.random.default_rng(5).uniform(-0.5, 0.5, 7)
    sw = rp.rank_sweep(cell, X, [5, 1, 3], h0=h0)
    assert sw.exact.shape == (3, 10)
    assert [sw.rank(i)[cell.recurrent_names[0]] for i in range(3)] == [5, 1, 3]
    for i, r in enumerate([5, 1, 3]):
        small = rp.truncate_svd(cell, rank=r)
        np.testing.assert_allclose(sw.exact[i],
                                   np.linalg.norm(rp.deviation(cell, small, X, h0), axis=-1),
                                   atol=1e-12)
        np.testing.assert_allclose(sw.first_order[i],
                                   np.linalg.norm(rp.first_order(cell, small, X, h0), axis=-1),
                                   atol=1e-12)


def test_mgru_product_grid():
    cell = random_cell("mgru", 6, 3, spectral_norm=1.2, seed=3)
    X = _inputs(T=12, B=2)
    grid = {"Wf": [0, 2, 6], "Wh": [1, 4]}
    sw = rp.rank_sweep(cell, X, grid)
    assert sw.ranks.tolist() == [[0, 1], [0, 4], [2, 1], [2, 4], [6, 1], [6, 4]]
    for i in range(len(sw.ranks)):
        _check_point(cell, sw, i, X, sw.rank(i))
    only = rp.rank_sweep(cell, X, {"Wh": [0, 3]})
    assert only.ranks.tolist() == [[6, 0], [6, 3]]
    for i in range(2):
        _check_point(cell, only, i, X, {"Wh": int(only.ranks[i, 1])})


@pytest.mark.parametrize("bad, match", [
    (3, r"ranks: expected a sequence of ints"),
    ([1, 9], r"ranks: expected an integer in \[0, 6\], found 9"),
    ([], r"ranks: expected at least one rank"),
    ({"W": [1]}, r"ranks: expected keys among \['Wf', 'Wh'\]"),
    ({"Wf": "12"}, r"ranks\['Wf'\]: expected a sequence of ints"),
    ([1.5], r"ranks: expected an integer"),
])
def test_bad_ranks(bad, match):
    cell = random_cell("mgru", 6, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        rp.rank_sweep(cell, _inputs(T=4, B=1, m=2), bad)


def test_bad_inputs():
    cell = random_cell("elman", 6, 2, seed=0)
    with pytest.raises(ValueError, match="X: expected last dimension m=2"):
        rp.rank_sweep(cell, np.zeros((4, 1, 3)))
    sw = rp.rank_sweep(cell, _inputs(T=4, B=1, m=2), [2])
    with pytest.raises(ValueError, match="rank: expected one of the swept points"):
        sw.index(3)


def test_sweep_at_full_rank_only_is_zero():
    """A grid with only rank n (nothing truncated) gives exactly zero deviation."""
    cell = random_cell("elman", 4, 2, seed=0)
    X = np.random.default_rng(0).normal(size=(5, 2))
    sw = rp.rank_sweep(cell, X, ranks=[4])
    assert sw.exact.shape == (1, 5) and np.all(sw.exact == 0) and np.all(sw.first_order == 0)
