"""BPTT gradients against central finite differences, forward pass against the
library cells, and the optimiser (Adam, global-norm clipping) against hand
computations."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from validation import bptt
from validation.optim import Adam, clip_by_global_norm, global_norm


def _problem(kind, loss_kind, seed=0, n=5, m=3, k=4, T=7, B=3, dtype=np.float64):
    cell = random_cell(kind, n, m, spectral_norm=1.3, bias_scale=0.3, n_out=k, seed=seed)
    params = bptt.params_from_cell(cell, dtype=dtype)
    params["c"] = np.random.default_rng(seed + 1).standard_normal(k).astype(dtype)
    rng = np.random.default_rng(seed + 2)
    X = rng.standard_normal((T, B, m))
    mask = rng.random((T, B)) < 0.7
    mask[0, 0] = True
    if loss_kind == "classification":
        targets = rng.integers(0, k, (T, B))
    else:
        targets = rng.standard_normal((T, B, k))
    return cell, params, (X, targets, mask, loss_kind)


def _fd_grads(kind, params, arrays, weights=None, eps=1e-6):
    out = {}
    for name, P in params.items():
        g = np.zeros_like(P)
        for idx in np.ndindex(P.shape):
            q = {k: v.copy() for k, v in params.items()}
            q[name][idx] += eps
            lp = bptt.loss_and_grads(kind, q, arrays, weights=weights)[0]
            q[name][idx] -= 2 * eps
            lm = bptt.loss_and_grads(kind, q, arrays, weights=weights)[0]
            g[idx] = (lp - lm) / (2 * eps)
        out[name] = g
    return out


@pytest.mark.parametrize("loss_kind", ["classification", "regression"])
def test_gradients_match_finite_differences(kind, loss_kind):
    _, params, arrays = _problem(kind, loss_kind)
    loss, grads = bptt.loss_and_grads(kind, params, arrays)
    assert np.isfinite(loss) and loss > 0
    fd = _fd_grads(kind, params, arrays)
    assert set(grads) == set(params)
    for name in params:
        assert grads[name].shape == params[name].shape
        err = np.linalg.norm(grads[name] - fd[name]) / np.linalg.norm(fd[name])
        assert err < 1e-6, (kind, loss_kind, name, err)


def test_gradients_with_step_weights(kind):
    _, params, arrays = _problem(kind, "classification", seed=3)
    w = np.random.default_rng(9).uniform(0.0, 5.0, arrays[2].shape)
    _, grads = bptt.loss_and_grads(kind, params, arrays, weights=w)
    fd = _fd_grads(kind, params, arrays, weights=w)
    for name in params:
        err = np.linalg.norm(grads[name] - fd[name]) / np.linalg.norm(fd[name])
        assert err < 1e-6, (name, err)


def test_loss_values_by_hand(kind):
    """The loss equals a direct computation from the library cell's readout."""
    for loss_kind in ("classification", "regression"):
        cell, params, (X, z, mask, lk) = _problem(kind, loss_kind, seed=5)
        cell = bptt.cell_from_params(kind, params)
        Y = cell.readout(cell.run(X))
        if lk == "classification":
            logp = Y - np.log(np.exp(Y).sum(-1, keepdims=True))
            per = -np.take_along_axis(logp, z[..., None], -1)[..., 0]
        else:
            per = ((Y - z) ** 2).sum(-1)
        want = per[mask].mean()
        got = bptt.loss_and_grads(kind, params, (X, z, mask, lk))[0]
        assert got == pytest.approx(want, rel=1e-12)


def test_forward_matches_library_cell(kind):
    cell = random_cell(kind, 6, 4, spectral_norm=1.1, n_out=3, seed=2)
    X = np.random.default_rng(0).standard_normal((9, 5, 4))
    cache = bptt.forward(kind, bptt.params_from_cell(cell), X)
    np.testing.assert_allclose(cache.H[1:], cell.run(X), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(cache.Y, cell.readout(cell.run(X)), rtol=1e-13, atol=1e-14)


def test_float32_runs_in_float32(kind):
    _, p64, arrays = _problem(kind, "classification", n=8, T=10, B=4)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    l32, g32 = bptt.loss_and_grads(kind, p32, arrays)
    l64, g64 = bptt.loss_and_grads(kind, p64, arrays)
    assert all(g.dtype == np.float32 for g in g32.values())
    assert bptt.forward(kind, p32, arrays[0]).H.dtype == np.float32
    assert l32 == pytest.approx(l64, rel=1e-5)
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-5)


def test_accepts_a_task(kind):
    task = rp.tasks.kback(3, 1, 8, batch=4, seed=0)
    cell = random_cell(kind, 5, 3, n_out=3, seed=0)
    p = bptt.params_from_cell(cell)
    a = bptt.loss_and_grads(kind, p, task)
    b = bptt.loss_and_grads(kind, p, (task.X, task.targets, task.mask, task.kind))
    assert a[0] == b[0]


def test_bad_inputs(kind):
    cell = random_cell(kind, 5, 3, n_out=3, seed=0)
    p = bptt.params_from_cell(cell)
    X = np.zeros((4, 2, 3))
    z = np.zeros((4, 2), int)
    m = np.ones((4, 2), bool)
    with pytest.raises(ValueError, match="kind: expected one of"):
        bptt.loss_and_grads(kind, p, (X, z, m, "ranking"))
    with pytest.raises(ValueError, match="mask: expected at least one scored step"):
        bptt.loss_and_grads(kind, p, (X, z, ~m, "classification"))
    with pytest.raises(ValueError, match="mask: expected shape"):
        bptt.loss_and_grads(kind, p, (X, z, m[:3], "classification"))
    with pytest.raises(ValueError, match="params: expected keys"):
        bptt.loss_and_grads(kind, {k: v for k, v in p.items() if k != "V"},
                            (X, z, m, "classification"))
    with pytest.raises(ValueError, match="kind: expected one of"):
        bptt.param_names("lstm")
    with pytest.raises(ValueError, match="task_or_arrays: expected a Task"):
        bptt.loss_and_grads(kind, p, 3)
    with pytest.raises(ValueError, match="weights: expected non-negative"):
        bptt.loss_and_grads(kind, p, (X, z, m, "classification"), weights=-np.ones((4, 2)))


def test_cell_roundtrip_from_params(kind):
    cell = random_cell(kind, 5, 3, n_out=2, seed=4)
    back = bptt.cell_from_params(kind, bptt.params_from_cell(cell))
    assert type(back) is type(cell)
    for k, v in cell.params.items():
        np.testing.assert_array_equal(getattr(back, k), v)


# ----------------------------------------------------------------------- optimiser
def test_adam_two_steps_by_hand():
    p = {"w": np.array([1.0, -2.0])}
    opt = Adam(p, lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    g1 = np.array([0.5, -3.0])
    opt.step({"w": g1})
    # step 1: m = 0.1 g, v = 0.01 g^2, mhat = g, vhat = g^2 -> update lr * sign(g)
    np.testing.assert_allclose(p["w"], [1.0 - 0.1 * 0.5 / (0.5 + 1e-8),
                                        -2.0 + 0.1 * 3.0 / (3.0 + 1e-8)], rtol=1e-14)
    w1 = p["w"].copy()
    g2 = np.array([-1.0, 1.0])
    opt.step({"w": g2})
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.99 * 0.01 * g1 ** 2 + 0.01 * g2 ** 2
    mhat, vhat = m / (1 - 0.9 ** 2), v / (1 - 0.99 ** 2)
    np.testing.assert_allclose(p["w"], w1 - 0.1 * mhat / (np.sqrt(vhat) + 1e-8), rtol=1e-14)


def test_adam_errors():
    with pytest.raises(ValueError, match="lr: expected a finite number > 0"):
        Adam({"w": np.zeros(2)}, lr=0.0)
    with pytest.raises(ValueError, match=r"betas\[1\]: expected a number in \[0, 1\)"):
        Adam({"w": np.zeros(2)}, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="grads: expected keys"):
        Adam({"w": np.zeros(2)}).step({})


def test_clipping():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}
    assert global_norm(g) == pytest.approx(5.0)
    c, norm = clip_by_global_norm(g, 1.0)
    assert norm == pytest.approx(5.0)
    assert global_norm(c) == pytest.approx(1.0)
    np.testing.assert_allclose(c["a"], [0.6, 0.0])
    np.testing.assert_allclose(c["b"], [[0.0], [0.8]])
    np.testing.assert_array_equal(g["a"], [3.0, 0.0])       # input untouched
    c2, _ = clip_by_global_norm(g, 10.0)                     # below the threshold: unchanged
    np.testing.assert_array_equal(c2["b"], g["b"])
    with pytest.raises(ValueError, match="max_norm: expected a finite number > 0"):
        clip_by_global_norm(g, -1.0)
