"""The GRU cell (PyTorch's equations): one module, checked against torch and by the
generic algorithms of the protocol."""
from __future__ import annotations

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells import GRU, cell_type
from rnnperturb.cells.random import random_cell


def _from_torch_gru(g):
    """Our GRU from a one-layer torch.nn.GRU (test helper; io for GRU is issue 13)."""
    sd = {k: v.detach().double().numpy() for k, v in g.state_dict().items()}
    n = g.hidden_size
    Wi, Wh, bi, bh = sd["weight_ih_l0"], sd["weight_hh_l0"], sd["bias_ih_l0"], sd["bias_hh_l0"]
    blk = lambda A, j: A[j * n:(j + 1) * n]  # noqa: E731
    return GRU(Wr=blk(Wh, 0), Wz=blk(Wh, 1), Wn=blk(Wh, 2), Ur=blk(Wi, 0), Uz=blk(Wi, 1),
               Un=blk(Wi, 2), br=blk(bi, 0) + blk(bh, 0), bz=blk(bi, 1) + blk(bh, 1),
               bn=blk(bi, 2), bhn=blk(bh, 2))


def test_gru_matches_torch_outputs_in_float64():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    g = torch.nn.GRU(3, 6, dtype=torch.float64)
    cell = _from_torch_gru(g)
    X = np.random.default_rng(0).normal(size=(9, 4, 3))
    h0 = np.random.default_rng(1).uniform(-1, 1, (4, 6))
    with torch.no_grad():
        H, _ = g(torch.tensor(X), torch.tensor(h0)[None])
    np.testing.assert_allclose(cell.run(X, h0), H.numpy(), rtol=0, atol=1e-14)


def test_gru_is_registered_and_follows_the_protocol():
    assert cell_type("gru") is GRU
    cell = random_cell("gru", 5, 2, seed=0)
    assert cell.recurrent_names == ("Wr", "Wz", "Wn") and cell.n_params == 3 * 5 * (5 + 2) + 4 * 5
    rng = np.random.default_rng(2)
    h, x = rng.uniform(-1, 1, (3, 5)), rng.normal(size=(3, 2))
    eps = 1e-6
    Jfd = np.stack([(cell.step(h + eps * e, x) - cell.step(h - eps * e, x)) / (2 * eps)
                    for e in np.eye(5)], -1)
    np.testing.assert_allclose(cell.jacobian(h, x), Jfd, atol=1e-9)
    hn, J, forcing = cell.linearise(h, x)
    for k in cell.recurrent_names:
        dW = rng.normal(size=(5, 5))
        fd = (cell.replace(**{k: getattr(cell, k) + eps * dW}).step(h, x)
              - cell.replace(**{k: getattr(cell, k) - eps * dW}).step(h, x)) / (2 * eps)
        diag, Bt, a = forcing[k]
        assert diag          # every GRU forcing Jacobian is diagonal
        np.testing.assert_allclose(Bt * (a @ dW.T), fd, atol=1e-9)


def test_gru_truncation_deviation_and_first_order():
    cell = random_cell("gru", 8, 2, spectral_norm=1.5, seed=3)
    X = np.random.default_rng(4).normal(size=(15, 3, 2))
    small = rp.truncate_svd(cell, rank={"Wn": 3})
    assert np.array_equal(small.Wr, cell.Wr) and np.linalg.matrix_rank(small.Wn) == 3
    E = rp.deviation(cell, small, X)
    np.testing.assert_allclose(E, small.run(X) - cell.run(X), atol=1e-15)
    errs = [np.abs(rp.first_order(cell, o, X) - rp.deviation(cell, o, X)).max()
            for o in (cell.replace(Wn=cell.Wn + s * (small.Wn - cell.Wn)) for s in (1e-2, 1e-3))]
    assert errs[1] < errs[0] / 50
    sw = rp.rank_sweep(cell, X, ranks=[3, 8])
    np.testing.assert_allclose(sw.exact[0], np.linalg.norm(
        rp.deviation(cell, rp.truncate_svd(cell, rank=3), X), axis=-1), rtol=1e-10, atol=1e-14)


def test_gru_noise_response_against_monte_carlo():
    cell = random_cell("gru", 6, 2, seed=5)
    X = np.random.default_rng(6).normal(size=(10, 2))
    S = rp.noise_response(cell, X, std=1e-4, frozen=True)
    mc = rp.monte_carlo_noise(cell, X, std=1e-4, frozen=True, draws=400, seed=0)
    ok = S > 0
    assert np.all(np.abs(mc.mean - S)[ok] <= np.maximum(0.05 * S, 3.3 * mc.sem)[ok])


def test_analyses_not_yet_written_for_the_gru_refuse_it_by_name():
    """The global bound needs per-cell recursions the GRU does not have yet: a clear
    refusal that names the cell and the method, never another cell's path. (The
    certified bound needs none: the generic ball-arithmetic rounding step,
    tests/test_bounds_generic.py.)"""
    cell = random_cell("gru", 6, 3, seed=0, n_out=4)
    small = rp.truncate_svd(cell, rank=2)
    with pytest.raises(NotImplementedError, match=r"GRU.global_\w+: not implemented"):
        rp.global_bound(cell, small, horizon=5)


def test_gru_set_bound_is_sound_on_samples_of_the_set():
    """The set certificate needs only the protocol: a GRU gets it unchanged."""
    cell = random_cell("gru", 8, 3, spectral_norm=1.5, seed=7)
    X = np.random.default_rng(8).normal(size=(12, 3))
    for S in (rp.sets.Ball(radius=1e-3), rp.sets.Box(radius=2e-4)):
        bound = rp.set_bound(cell, S, X)
        lo, dW = rp.set_attack(cell, S, X, seed=0)
        assert lo <= bound[-1]
        rng = np.random.default_rng(9)
        for how in ("boundary", "spike", "interior"):
            for _ in range(3):
                d = S.sample(cell, rng, how=how)
                other = cell.replace(**{k: getattr(cell, k) + v for k, v in d.items()})
                e = np.linalg.norm(rp.deviation(cell, other, X), axis=-1)
                assert np.all(e <= bound)
