"""Cells against hand-written loops and finite differences."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells import sigmoid
from rnnperturb.cells.random import random_cell


def hand_elman(W, U, b, X, h0):
    h = h0.copy()
    out = []
    for x in X:
        h = np.array([np.tanh(sum(W[i, j] * h[j] for j in range(len(h)))
                              + sum(U[i, k] * x[k] for k in range(len(x))) + b[i])
                      for i in range(len(h))])
        out.append(h)
    return np.array(out)


def hand_mgru(p, X, h0):
    import math
    h = list(h0)
    n = len(h)
    out = []
    for x in X:
        f = [1 / (1 + math.exp(-(sum(p["Wf"][i][j] * h[j] for j in range(n))
                                 + sum(p["Uf"][i][k] * x[k] for k in range(len(x))) + p["bf"][i])))
             for i in range(n)]
        fh = [f[j] * h[j] for j in range(n)]
        c = [math.tanh(sum(p["Wh"][i][j] * fh[j] for j in range(n))
                       + sum(p["Uh"][i][k] * x[k] for k in range(len(x))) + p["bh"][i])
             for i in range(n)]
        h = [(1 - f[i]) * h[i] + f[i] * c[i] for i in range(n)]
        out.append(h)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_elman_matches_hand_loop(seed):
    rng = np.random.default_rng(seed)
    cell = random_cell("elman", 5, 3, spectral_norm=1.5, seed=rng)
    X = rng.standard_normal((7, 2, 3))
    h0 = rng.uniform(-1, 1, (2, 5))
    H = cell.run(X, h0)
    for b in range(2):
        ref = hand_elman(cell.W, cell.U, cell.b, X[:, b], h0[b])
        np.testing.assert_allclose(H[:, b], ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1])
def test_mgru_matches_hand_loop(seed):
    rng = np.random.default_rng(seed)
    cell = random_cell("mgru", 5, 3, spectral_norm=1.5, bias_scale=1.0, seed=rng)
    X = rng.standard_normal((7, 2, 3))
    h0 = rng.uniform(-1, 1, (2, 5))
    H = cell.run(X, h0)
    p = {k: v.tolist() for k, v in cell.params.items()}
    for b in range(2):
        ref = hand_mgru(p, X[:, b].tolist(), h0[b].tolist())
        np.testing.assert_allclose(H[:, b], ref, rtol=0, atol=1e-14)


def test_single_sequence_shape_and_default_h0(kind):
    rng = np.random.default_rng(3)
    cell = random_cell(kind, 4, 2, seed=rng)
    X = rng.standard_normal((6, 2))
    H = cell.run(X)
    assert H.shape == (6, 4)
    np.testing.assert_array_equal(H, cell.run(X[:, None, :], np.zeros(4))[:, 0])
    # the first step from h0 = 0 equals one explicit step
    np.testing.assert_array_equal(H[0], cell.step(np.zeros(4), X[0]))


def test_step_and_run_agree(kind):
    rng = np.random.default_rng(4)
    cell = random_cell(kind, 6, 3, seed=rng)
    X = rng.standard_normal((5, 3, 3))
    H = cell.run(X)
    h = np.zeros((3, 6))
    for t in range(5):
        h = cell.step(h, X[t])
        np.testing.assert_array_equal(h, H[t])


def test_sigmoid_is_stable_and_correct():
    a = np.array([-800.0, -30.0, -1.0, 0.0, 1.0, 30.0, 800.0])
    s = sigmoid(a)
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s[1:-1], 1 / (1 + np.exp(-a[1:-1])), rtol=1e-15)
    assert s[0] == 0.0 and s[-1] == 1.0


@pytest.mark.parametrize("spectral_norm", [0.5, 3.0])
def test_jacobian_finite_differences(kind, spectral_norm):
    rng = np.random.default_rng(5)
    cell = random_cell(kind, 6, 3, spectral_norm=spectral_norm, seed=rng)
    h = rng.uniform(-0.9, 0.9, (2, 6))
    x = rng.standard_normal((2, 3))
    J = cell.jacobian(h, x)
    eps = 1e-6
    cols = [(cell.step(h + eps * e, x) - cell.step(h - eps * e, x)) / (2 * eps)
            for e in np.eye(6)]
    Jfd = np.stack(cols, axis=-1)
    np.testing.assert_allclose(J, Jfd, atol=1e-8)
    # unbatched call gives the first batch element
    np.testing.assert_allclose(cell.jacobian(h[0], x[0]), J[0], rtol=1e-14)


def test_jvp_equals_jacobian_and_weight_finite_differences(kind):
    rng = np.random.default_rng(6)
    cell = random_cell(kind, 5, 2, spectral_norm=2.0, seed=rng)
    h = rng.uniform(-0.9, 0.9, (3, 5))
    x = rng.standard_normal((3, 2))
    dh = rng.standard_normal((3, 5))
    hn, d = cell.jvp(h, x, dh)
    np.testing.assert_array_equal(hn, cell.step(h, x))
    np.testing.assert_allclose(d, np.einsum("bij,bj->bi", cell.jacobian(h, x), dh), atol=1e-13)
    # directional derivative along each recurrent matrix separately
    eps = 1e-6
    for name in cell.recurrent_names:
        dW = rng.standard_normal((5, 5))
        plus = cell.replace(**{name: cell.recurrent[name] + eps * dW})
        minus = cell.replace(**{name: cell.recurrent[name] - eps * dW})
        fd = (plus.step(h, x) - minus.step(h, x)) / (2 * eps)
        np.testing.assert_allclose(cell.directional(h, x, {name: dW}), fd, atol=1e-8)


def test_readout_and_replace():
    rng = np.random.default_rng(7)
    cell = random_cell("elman", 4, 2, n_out=3, seed=rng)
    H = rng.standard_normal((5, 2, 4))
    np.testing.assert_allclose(cell.readout(H), H @ cell.V.T + cell.c)
    W2 = cell.W * 0.5
    new = cell.replace(W=W2)
    assert isinstance(new, rp.ElmanRNN) and new is not cell
    np.testing.assert_array_equal(new.W, W2)
    np.testing.assert_array_equal(new.U, cell.U)
    np.testing.assert_array_equal(new.V, cell.V)
    assert cell.recurrent.keys() == {"W"}
    assert random_cell("mgru", 3, 1, seed=0).recurrent.keys() == {"Wf", "Wh"}


def test_cells_are_immutable():
    cell = random_cell("elman", 3, 2, seed=0)
    with pytest.raises(Exception):
        cell.W = np.eye(3)
    with pytest.raises(ValueError):
        cell.W[0, 0] = 1.0
    # the constructor copies its inputs
    W = np.eye(3)
    c2 = rp.ElmanRNN(W=W, U=np.ones((3, 2)), b=np.zeros(3))
    W[0, 0] = 5.0
    assert c2.W[0, 0] == 1.0


def test_parameter_counts():
    n, m = 4, 3
    e = random_cell("elman", n, m, seed=0)
    g = random_cell("mgru", n, m, seed=0)
    assert e.n_params == n * (n + m + 1)
    assert g.n_params == 2 * n * (n + m + 1)   # DESIGN.md §1


def test_dtype_float32_kept_and_mixed_upcast():
    W = np.eye(3, dtype=np.float32)
    c = rp.ElmanRNN(W=W, U=np.ones((3, 1), np.float32), b=np.zeros(3, np.float32))
    assert c.dtype == np.float32
    assert c.run(np.ones((2, 1))).dtype == np.float32
    c64 = rp.ElmanRNN(W=W, U=np.ones((3, 1)), b=np.zeros(3, np.float32))
    assert c64.dtype == np.float64 and c64.W.dtype == np.float64
