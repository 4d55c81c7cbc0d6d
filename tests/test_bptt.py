"""BPTT gradients against central finite differences (and, for the GRU, against
torch autograd on a real ``torch.nn.GRU``), forward pass against the library
cells, and the optimiser (Adam, global-norm clipping) against hand
computations."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from validation import bptt
from validation.optim import Adam, clip_by_global_norm, global_norm

TRAINABLE = ["elman", "mgru", "gru", "lstm"]


@pytest.fixture(params=TRAINABLE)
def kind(request):
    """Every cell with a backward pass in validation.bptt (overrides conftest's pair)."""
    return request.param


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


def _fd_errors(kind, params, arrays, weights=None):
    """Relative error ||g - g_fd|| / ||g_fd|| of every parameter's BPTT gradient."""
    _, grads = bptt.loss_and_grads(kind, params, arrays, weights=weights)
    fd = _fd_grads(kind, params, arrays, weights=weights)
    assert set(grads) == set(params)
    for name in params:
        assert grads[name].shape == params[name].shape
    return {name: np.linalg.norm(grads[name] - fd[name]) / np.linalg.norm(fd[name])
            for name in params}


@pytest.mark.parametrize("loss_kind", ["classification", "regression"])
def test_gradients_match_finite_differences(kind, loss_kind):
    _, params, arrays = _problem(kind, loss_kind)
    loss, _ = bptt.loss_and_grads(kind, params, arrays)
    assert np.isfinite(loss) and loss > 0
    for name, err in _fd_errors(kind, params, arrays).items():
        assert err < 1e-6, (kind, loss_kind, name, err)


#: Deliberate, plausible mistakes in a backward step, as edits of the saved intermediates.
BROKEN = {
    ("gru", "b_hn outside the reset product"): lambda p, c, aux: {"nh": aux["nh"] - p["bhn"]},
    ("gru", "update gate sense flipped"): lambda p, c, aux: {"z": 1.0 - aux["z"]},
    ("lstm", "output through c, not tanh(c)"): lambda p, c, aux: {"tc": c.H[1:, :, c.H.shape[-1] // 2:]},
    ("lstm", "forget gate sense flipped"): lambda p, c, aux: {"f": 1.0 - aux["f"]},
}


@pytest.mark.parametrize("kind, variant", list(BROKEN), ids=lambda v: str(v))
def test_finite_difference_check_catches_a_broken_backward(monkeypatch, kind, variant):
    """The check above can fail: a GRU or LSTM backward step with one mistake is far off."""
    from rnnperturb.cells import cell_type
    cls = cell_type(kind)
    good = bptt.TRAINING[cls]

    def broken(params, cache, dH):
        aux = {**cache.aux, **BROKEN[kind, variant](params, cache, cache.aux)}
        return good.backward(params, bptt.Cache(cache.kind, cache.X, cache.H, cache.out, aux,
                                                cache.Y), dH)
    _, params, arrays = _problem(kind, "classification")
    assert max(_fd_errors(kind, params, arrays).values()) < 1e-6     # the intact step passes
    monkeypatch.setitem(bptt.TRAINING, cls, bptt.CellTraining(
        broken, saved=good.saved, gate_bias=good.gate_bias))
    errs = _fd_errors(kind, params, arrays)
    assert max(errs.values()) > 1e-2, errs


#: torch module, gate blocks in torch's order, and which torch bias holds the
#: candidate's hidden bias (GRU b_hn) apart from the summed gate biases.
TORCH_LAYOUT = {"gru": ("GRU", "rzn", "bhn"), "lstm": ("LSTM", "ifgo", None)}


def _torch_loss(torch, kind, p, X, targets, mask, weights):
    """The simulator's loss written with torch.nn.GRU / nn.LSTM, nn.Linear and autograd."""
    mod, gates, hidden_bias = TORCH_LAYOUT[kind]
    n, m = p["W" + gates[0]].shape[0], p["U" + gates[0]].shape[1]
    net = getattr(torch.nn, mod)(m, n, dtype=torch.float64)
    lin = torch.nn.Linear(n, p["V"].shape[0], dtype=torch.float64)
    # summed gate biases split arbitrarily between torch's two (only the sum matters)
    b_ih = [0.3 * p["b" + a] for a in gates]
    b_hh = [0.7 * p["b" + a] for a in gates]
    if hidden_bias is not None:                           # GRU: b_in and b_hn apart
        b_ih[-1], b_hh[-1] = p["bn"], p[hidden_bias]
    sd = {"weight_ih_l0": np.concatenate([p["U" + a] for a in gates]),
          "weight_hh_l0": np.concatenate([p["W" + a] for a in gates]),
          "bias_ih_l0": np.concatenate(b_ih), "bias_hh_l0": np.concatenate(b_hh)}
    net.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=True)
    lin.load_state_dict({"weight": torch.tensor(p["V"]), "bias": torch.tensor(p["c"])})
    out, _ = net(torch.tensor(X))                          # (T, B, n), zero initial state
    logits = lin(out)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                            torch.tensor(targets).reshape(-1), reduction="none")
    w = torch.tensor((mask * weights).reshape(-1))
    loss = (w * nll).sum() / w.sum()
    loss.backward()
    gi, gh = net.weight_ih_l0.grad.numpy(), net.weight_hh_l0.grad.numpy()
    bi, bh = net.bias_ih_l0.grad.numpy(), net.bias_hh_l0.grad.numpy()
    grads = {"V": lin.weight.grad.numpy(), "c": lin.bias.grad.numpy()}
    for j, a in enumerate(gates):
        sl = slice(j * n, (j + 1) * n)
        grads["W" + a], grads["U" + a], grads["b" + a] = gh[sl], gi[sl], bi[sl]
    if hidden_bias is not None:
        grads[hidden_bias] = bh[-n:]
        bh, bi = bh[:-n], bi[:-n]
    # the summed biases enter only through their sum: torch's two gradients agree
    np.testing.assert_allclose(bh, bi, rtol=1e-12, atol=1e-15)
    return float(loss.detach()), grads


@pytest.mark.parametrize("cell_kind", ["gru", "lstm"])
def test_gradients_match_torch_autograd(cell_kind):
    """BPTT of the GRU and the LSTM against torch autograd on a real torch.nn.GRU /
    nn.LSTM with the same weights (float64), with step weights, on a net large
    enough to saturate gates."""
    torch = pytest.importorskip("torch")
    cell = random_cell(cell_kind, 12, 4, spectral_norm=1.5, bias_scale=0.8, n_out=3, seed=11)
    params = bptt.params_from_cell(cell)
    params["c"] = np.random.default_rng(12).standard_normal(3)
    rng = np.random.default_rng(13)
    T, B = 15, 6
    X = 2.0 * rng.standard_normal((T, B, 4))
    targets = rng.integers(0, 3, (T, B))
    mask = rng.random((T, B)) < 0.6
    mask[-1] = True
    w = rng.uniform(0.5, 4.0, (T, B))
    loss, grads = bptt.loss_and_grads(cell_kind, params, (X, targets, mask, "classification"),
                                      weights=w)
    tloss, tgrads = _torch_loss(torch, cell_kind, params, X, targets, mask, w)
    assert loss == pytest.approx(tloss, rel=1e-13)
    assert set(tgrads) == set(grads)
    for k in grads:
        err = np.linalg.norm(grads[k] - tgrads[k]) / np.linalg.norm(tgrads[k])
        assert err < 1e-12, (k, err)


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
    np.testing.assert_allclose(cache.out, cell.run(X), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(cache.H[1:], cell.run(X, state="full"), rtol=1e-13, atol=1e-14)
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
        bptt.param_names("transformer")
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


# ------------------------------------------------------- forward from the cells
def _reference_forward(kind, p, X):
    """The simulator's operation order before it took its step from the cells
    (the order the shipped checkpoints were trained with), written out."""
    T, B, m = X.shape
    Xf = X.reshape(T * B, m)
    if kind == "elman":
        n = p["W"].shape[0]
        A = (Xf @ p["U"].T).reshape(T, B, n) + p["b"]
        H = [np.zeros((B, n), X.dtype)]
        for t in range(T):
            H.append(np.tanh(H[-1] @ p["W"].T + A[t]))
        return np.stack(H), {}
    n = p["Wf"].shape[0]
    Af = (Xf @ p["Uf"].T).reshape(T, B, n) + p["bf"]
    Ac = (Xf @ p["Uh"].T).reshape(T, B, n) + p["bh"]
    H, F, C = [np.zeros((B, n), X.dtype)], [], []
    for t in range(T):
        h = H[-1]
        f = (np.tanh((h @ p["Wf"].T + Af[t]) * 0.5) + 1.0) * 0.5
        c = np.tanh((f * h) @ p["Wh"].T + Ac[t])
        H.append((c - h) * f + h)
        F.append(f)
        C.append(c)
    return np.stack(H), {"f": np.stack(F), "c": np.stack(C)}


@pytest.mark.parametrize("kind", ["elman", "mgru"])   # the cells with checkpoints from before
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_keeps_the_training_operation_order(kind, dtype):
    """Bit for bit the arithmetic the checkpoints were trained with: the cell's
    step over TRAIN with hoisted input terms adds the same numbers in the same
    order as the simulator's former hand-written forward."""
    cell = random_cell(kind, 16, 4, spectral_norm=1.2, bias_scale=0.5, n_out=3, seed=7)
    p = bptt.params_from_cell(cell, dtype=dtype)
    X = np.random.default_rng(1).standard_normal((25, 6, 4)).astype(dtype)
    cache = bptt.forward(kind, p, X)
    H, aux = _reference_forward(kind, p, X)
    assert cache.H.dtype == dtype
    np.testing.assert_array_equal(cache.H, H)
    assert set(cache.aux) == set(aux)
    for k in aux:
        np.testing.assert_array_equal(cache.aux[k], aux[k])


def test_hoisted_step_is_the_cells_forward():
    """For every registered cell, the step with precomputed input terms
    (Cell.hoisted) is Cell.forward up to rounding, intermediates included."""
    from rnnperturb.cells import CELL_TYPES, FLOAT
    rng = np.random.default_rng(3)
    for kind, cls in CELL_TYPES.items():
        cell = random_cell(kind, 7, 3, bias_scale=0.4, seed=1)
        P = cell._matrices()
        X = rng.standard_normal((5, 4, 3))
        h = np.tanh(rng.standard_normal((4, cell.state_size)))
        rec = lambda k, a: FLOAT.matvec(P[k], a)          # noqa: E731
        ns, Pt = cls.hoisted(FLOAT, P, X)
        for t in range(X.shape[0]):
            want, aw = cls.forward(FLOAT, P, h, X[t], rec)
            got, ag = cls.forward(ns, Pt, h, t, rec)
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15, err_msg=kind)
            for k in aw:
                np.testing.assert_allclose(ag[k], aw[k], rtol=1e-13, atol=1e-15, err_msg=kind)
            h = want


def _halved_elman():
    from rnnperturb.cells import ElmanRNN

    class Halved(ElmanRNN):
        """An Elman RNN whose step is halved: not the Elman step."""
        kind = "halved_elman"

        @staticmethod
        def forward(ns, P, h, x, rec):
            hn, aux = ElmanRNN.forward(ns, P, h, x, rec)
            return 0.5 * hn, aux
    return Halved


def test_forward_comes_from_the_cell(monkeypatch):
    """A registered cell with its own step gets that step (not a copy of the
    Elman or MGRU step), and a cell without a backward pass is refused by name."""
    from rnnperturb.cells import CELL_TYPES, ElmanRNN
    Halved = _halved_elman()
    monkeypatch.setitem(CELL_TYPES, Halved.kind, Halved)
    base = random_cell("elman", 6, 3, n_out=2, seed=0)
    cell = Halved(**base.params)
    p = bptt.params_from_cell(cell)
    X = np.random.default_rng(0).standard_normal((8, 3, 3))
    z, m = np.zeros((8, 3), int), np.ones((8, 3), bool)
    with pytest.raises(ValueError, match=r"cell: expected one of \['elman', 'gru', 'lstm', 'mgru'\].*"
                                         r"found 'halved_elman'"):
        bptt.forward(Halved.kind, p, X)
    with pytest.raises(ValueError, match="found 'halved_elman'"):
        bptt.loss_and_grads(Halved.kind, p, (X, z, m, "classification"))
    monkeypatch.setitem(bptt.TRAINING, Halved, bptt.TRAINING[ElmanRNN])
    H = bptt.forward(Halved.kind, p, X).H[1:]
    np.testing.assert_allclose(H, cell.run(X), rtol=1e-13, atol=1e-15)
    assert not np.allclose(H, base.run(X))
