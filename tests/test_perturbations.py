"""quantize, prune, weight_noise: defining properties and bad input."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from rnnperturb.perturb.elementwise import quantize_matrix


def _same_inputs(a, b):
    for k in a.input_params:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_quantize_hand_example():
    W = np.array([[0.9, -0.3], [0.1, 0.0]])
    cell = rp.ElmanRNN(W=W, U=np.ones((2, 1)), b=np.zeros(2))
    q = rp.quantize(cell, bits=3)           # L = 3 levels a side, step 0.3
    np.testing.assert_allclose(q.W, [[0.9, -0.3], [0.0, 0.0]], atol=1e-15)
    q = rp.quantize(cell, bits=3, scheme="per_row")   # row steps 0.3 and 0.1/3
    np.testing.assert_allclose(q.W, [[0.9, -0.3], [0.1, 0.0]], atol=1e-15)
    q2 = rp.quantize(cell, bits=2)          # levels {-0.9, 0, 0.9}
    np.testing.assert_allclose(q2.W, [[0.9, 0.0], [0.0, 0.0]], atol=1e-15)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("scheme", ["per_matrix", "per_row"])
def test_quantize_levels(kind, bits, scheme):
    cell = random_cell(kind, 16, 3, spectral_norm=1.5, seed=bits)
    q = rp.quantize(cell, bits=bits, scheme=scheme)
    L = 2 ** (bits - 1) - 1
    _same_inputs(cell, q)
    for k, W in cell.recurrent.items():
        Wq = q.recurrent[k]
        step = (np.abs(W).max() / L if scheme == "per_matrix"
                else np.abs(W).max(axis=1, keepdims=True) / L)
        levels = Wq / step
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
        assert np.abs(np.round(levels)).max() == L              # the max is a level
        assert np.abs(Wq - W).max() <= np.max(step) / 2 * (1 + 1e-12)
        assert np.all(np.abs(Wq - W) <= step / 2 * (1 + 1e-12))
        if scheme == "per_matrix":
            assert np.unique(np.round(levels)).size <= 2 ** bits - 1
        else:
            assert all(np.unique(np.round(row)).size <= 2 ** bits - 1 for row in levels)
        np.testing.assert_array_equal(quantize_matrix(Wq, bits=bits, scheme=scheme)[0], Wq)


def test_quantize_zero_matrix_and_names():
    cell = random_cell("mgru", 5, 2, seed=0)
    z = cell.replace(Wf=np.zeros((5, 5)))
    q = rp.quantize(z, bits=4, names="Wf")
    np.testing.assert_array_equal(q.Wf, 0.0)
    np.testing.assert_array_equal(q.Wh, cell.Wh)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 0.5, 0.9, 1.0])
def test_prune_counts_and_order(kind, fraction):
    cell = random_cell(kind, 10, 2, seed=3)
    p = rp.prune(cell, fraction=fraction)
    _same_inputs(cell, p)
    k = int(round(fraction * 100))
    for name, W in cell.recurrent.items():
        Wp = p.recurrent[name]
        removed = Wp == 0
        assert removed.sum() == k                 # the random matrix had no zeros
        np.testing.assert_array_equal(Wp[~removed], W[~removed])
        if 0 < k < 100:
            assert np.abs(W[removed]).max() <= np.abs(W[~removed]).min()


def test_prune_ties_are_deterministic():
    W = np.array([[1.0, -1.0], [1.0, 2.0]])
    cell = rp.ElmanRNN(W=W, U=np.ones((2, 1)), b=np.zeros(2))
    p = rp.prune(cell, fraction=0.5)
    np.testing.assert_array_equal(p.W, [[0.0, 0.0], [1.0, 2.0]])   # first two in row-major order


def test_weight_noise_seed_and_statistics(kind):
    cell = random_cell(kind, 64, 2, seed=4)
    a = rp.weight_noise(cell, std=0.1, seed=7)
    b = rp.weight_noise(cell, std=0.1, seed=7)
    c = rp.weight_noise(cell, std=0.1, seed=8)
    d = rp.weight_noise(cell, std=0.1, seed=np.random.default_rng(7))
    _same_inputs(cell, a)
    for k in cell.recurrent_names:
        np.testing.assert_array_equal(a.recurrent[k], b.recurrent[k])
        np.testing.assert_array_equal(a.recurrent[k], d.recurrent[k])
        assert not np.array_equal(a.recurrent[k], c.recurrent[k])
        dW = a.recurrent[k] - cell.recurrent[k]
        # 4096 i.i.d. N(0, 0.01) entries: sample std within 5 %, mean within 4 sd of the mean
        assert abs(dW.std() / 0.1 - 1) < 0.05
        assert abs(dW.mean()) < 4 * 0.1 / 64
    if kind == "mgru":
        assert not np.array_equal(a.Wf - cell.Wf, a.Wh - cell.Wh)
        only = rp.weight_noise(cell, std=0.1, seed=7, names=["Wh"])
        np.testing.assert_array_equal(only.Wf, cell.Wf)
    zero = rp.weight_noise(cell, std=0.0, seed=1)
    for k in cell.recurrent_names:
        np.testing.assert_array_equal(zero.recurrent[k], cell.recurrent[k])


@pytest.mark.parametrize("call, match", [
    (lambda c: rp.quantize(c, bits=1), r"bits: expected an integer in \[2, 32\], found 1"),
    (lambda c: rp.quantize(c, bits=33), r"bits: expected an integer in \[2, 32\], found 33"),
    (lambda c: rp.quantize(c, bits=3.5), r"bits: expected an integer"),
    (lambda c: rp.quantize(c, bits=4, scheme="per_col"), r"scheme: expected 'per_matrix'"),
    (lambda c: rp.quantize(c, bits=4, names=["W"]), r"names: expected names among"),
    (lambda c: rp.prune(c, fraction=-0.1), r"fraction: expected a finite number >= 0"),
    (lambda c: rp.prune(c, fraction=1.5), r"fraction: expected a number in \[0, 1\]"),
    (lambda c: rp.weight_noise(c, std=-1.0, seed=0), r"std: expected a finite number >= 0"),
    (lambda c: rp.weight_noise(c, std=0.1, seed=None), r"seed: expected an int"),
])
def test_bad_input(call, match):
    cell = random_cell("mgru", 4, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        call(cell)
