"""PyTorch round trip (issue 13 item 3): from_torch / to_torch against real
torch modules, compared on outputs (states and readout), not only weights."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.io.pytorch import TorchLayout, from_torch, to_torch

torch = pytest.importorskip("torch")


def _randomise(module, seed, scale=0.5):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return module


class Net(torch.nn.Module):
    """A user's model: a recurrent layer named ``rnn`` and a Linear ``head``."""

    def __init__(self, kind, m, n, k, batch_first=False, bias=True, num_layers=1):
        super().__init__()
        self.rnn = kind(m, n, batch_first=batch_first, bias=bias, num_layers=num_layers)
        self.head = torch.nn.Linear(n, k)
        self.batch_first = batch_first

    def forward(self, x):
        H, _ = self.rnn(x)
        return H, self.head(H[:, -1] if self.batch_first else H[-1])


def _inputs(T, B, m, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, m, generator=gen, dtype=dtype)


def _compare(net, cell, X):
    """Max abs difference of the states and of the last-step readout."""
    with torch.no_grad():
        Xin = X.transpose(0, 1) if net.batch_first else X
        H, y = net(Xin)
        H = H.transpose(0, 1) if net.batch_first else H
    Hc = cell.run(X.numpy())
    yc = Hc[-1] @ cell.V.T + cell.c
    return (float(np.max(np.abs(H.numpy() - Hc))), float(np.max(np.abs(y.numpy() - yc))))


KINDS = [torch.nn.RNN, torch.nn.GRU, torch.nn.LSTM]
IDS = ["rnn", "gru", "lstm"]
CELLS = {torch.nn.RNN: rp.ElmanRNN, torch.nn.GRU: rp.GRU, torch.nn.LSTM: rp.LSTM}


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_outputs_float64(kind, batch_first, num_layers):
    net = _randomise(Net(kind, 3, 6, 4, batch_first=batch_first, num_layers=num_layers).double(), 1)
    for source in (net, net.state_dict()):
        cell = from_torch(source)
        if num_layers == 1:
            assert type(cell) is CELLS[kind]
        else:
            assert type(cell) is rp.Stacked and len(cell.layers) == num_layers
            assert all(type(layer) is CELLS[kind] for layer in cell.layers)
            assert cell.recurrent_names[0].startswith("l0.")
        assert cell.dtype == np.float64
        dH, dy = _compare(net, cell, _inputs(12, 5, 3, 2))
        assert dH < 1e-10 and dy < 1e-10, (dH, dy)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_torch_lstm_initial_state_and_final_h_c(num_layers):
    """torch's (h_0, c_0) of shape (L, B, n) is our state [h, c] of every layer, bottom first;
    the final (h_T, c_T) are the pieces of the last full state."""
    mod = _randomise(torch.nn.LSTM(3, 5, num_layers=num_layers).double(), 31)
    cell = from_torch(mod)
    rng = np.random.default_rng(32)
    h0, c0 = rng.uniform(-1, 1, (num_layers, 4, 5)), rng.normal(size=(num_layers, 4, 5))
    s0 = np.concatenate([np.concatenate([h0[l], c0[l]], -1) for l in range(num_layers)], -1)
    X = _inputs(9, 4, 3, 33)
    with torch.no_grad():
        H, (hT, cT) = mod(X, (torch.tensor(h0), torch.tensor(c0)))
    assert np.max(np.abs(cell.run(X.numpy(), s0) - H.numpy())) < 1e-10
    last = cell.run(X.numpy(), s0, state="full")[-1].reshape(4, num_layers, 2, 5)
    assert np.max(np.abs(last[:, :, 0].transpose(1, 0, 2) - hT.numpy())) < 1e-10
    assert np.max(np.abs(last[:, :, 1].transpose(1, 0, 2) - cT.numpy())) < 1e-10


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_bare_module_and_roundtrip_identity(kind, num_layers):
    mod = _randomise(kind(4, 5, num_layers=num_layers).double(), 3)
    cell = from_torch(mod)
    assert cell.V is None and cell.origin.prefix == "" and cell.origin.readout is None
    X = _inputs(9, 3, 4, 4)
    with torch.no_grad():
        H, _ = mod(X)
    assert np.max(np.abs(H.numpy() - cell.run(X.numpy()))) < 1e-10
    sd = to_torch(cell)
    orig = mod.state_dict()
    assert list(sd) == list(orig)
    for k in orig:           # the biases' split comes back exactly, not only their sum
        assert sd[k].dtype == torch.float64 and torch.equal(sd[k], orig[k]), k


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_truncated_loads_strict_into_users_module(kind, rank, num_layers):
    net = _randomise(Net(kind, 3, 7, 2, num_layers=num_layers).double(), 5)
    cell = from_torch(net.state_dict())
    small = rp.truncate_svd(cell, rank=rank)
    sd = to_torch(small, layout=cell.origin)
    assert list(sd) == list(net.state_dict())
    user = _randomise(Net(kind, 3, 7, 2, num_layers=num_layers).double(), 99)   # the user's own
    user.load_state_dict(sd, strict=True)
    dH, dy = _compare(user, small, _inputs(10, 4, 3, 6))
    assert dH < 1e-10 and dy < 1e-10, (dH, dy)
    for w in small.recurrent_names:
        assert np.linalg.matrix_rank(getattr(small, w)) == rank


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_torch_issue_one_liner_bare_module(kind):
    """``module.load_state_dict(rp.to_torch(rp.truncate_svd(rp.from_torch(sd), rank=r)),
    strict=True)`` for a bare module (the canonical layout needs no record)."""
    mod = _randomise(kind(3, 6).double(), 7)
    sd = mod.state_dict()
    mod.load_state_dict(to_torch(rp.truncate_svd(from_torch(sd), rank=2)), strict=True)
    small = rp.truncate_svd(from_torch(sd), rank=2)
    X = _inputs(8, 3, 3, 8)
    with torch.no_grad():
        H, _ = mod(X)
    assert np.max(np.abs(H.numpy() - small.run(X.numpy()))) < 1e-10


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_torch_issue_one_liner_with_readout(kind):
    net = _randomise(Net(kind, 3, 6, 2).double(), 9)
    sd = net.state_dict()
    net.load_state_dict(to_torch(rp.truncate_svd(from_torch(sd), rank=2)), strict=True)
    dH, dy = _compare(net, rp.truncate_svd(from_torch(sd), rank=2), _inputs(8, 3, 3, 10))
    assert dH < 1e-10 and dy < 1e-10


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_float32(kind, num_layers):
    """float32 module -> float32 cell. torch and the cell round differently
    (blocked GEMMs, fused gates), so states agree to a few float32 ulps per
    step, amplified at most by the Jacobian's growth: 1e-5 on O(1) states over
    12 steps at this scale (observed ~1e-6)."""
    net = _randomise(Net(kind, 3, 6, 4, num_layers=num_layers), 11)
    cell = from_torch(net)
    assert cell.dtype == np.float32
    dH, dy = _compare(net, cell, _inputs(12, 5, 3, 12, torch.float32))
    assert dH < 1e-5 and dy < 1e-5, (dH, dy)
    small = rp.truncate_svd(cell, rank=2)
    sd = to_torch(small, layout=cell.origin)
    assert all(v.dtype == torch.float32 for v in sd.values())
    user = Net(kind, 3, 6, 4, num_layers=num_layers)
    user.load_state_dict(sd, strict=True)
    dH, dy = _compare(user, small, _inputs(12, 5, 3, 13, torch.float32))
    assert dH < 1e-5 and dy < 1e-5, (dH, dy)


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_torch_bias_false(kind):
    net = _randomise(Net(kind, 3, 5, 2, bias=False).double(), 13)
    cell = from_torch(net.state_dict())
    assert not cell.origin.bias
    biases = [b for b in cell.input_params if b.startswith("b")]
    assert biases and all(not np.any(getattr(cell, b)) for b in biases)
    dH, dy = _compare(net, cell, _inputs(7, 2, 3, 14))
    assert dH < 1e-10 and dy < 1e-10
    sd = to_torch(rp.truncate_svd(cell, rank=1), layout=cell.origin)
    net.load_state_dict(sd, strict=True)
    bad = cell.replace(**{cell.input_params[-1]: np.ones(5)})
    with pytest.raises(ValueError, match=r"^cell: expected zero biases"):
        to_torch(bad, layout=cell.origin)


def test_torch_gru_bias_split_after_edit():
    """A changed summed bias comes back as b_ir = br - b_hr with the original b_hr."""
    net = _randomise(Net(torch.nn.GRU, 2, 4, 2).double(), 15)
    cell = from_torch(net)
    edited = cell.replace(br=cell.br + 0.25)
    sd = to_torch(edited, layout=cell.origin)
    orig = net.state_dict()
    assert torch.equal(sd["rnn.bias_hh_l0"], orig["rnn.bias_hh_l0"])
    net.load_state_dict(sd, strict=True)
    dH, dy = _compare(net, edited, _inputs(6, 3, 2, 16))
    assert dH < 1e-10 and dy < 1e-10


def test_torch_extras_kept_and_prefix():
    class Wide(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.BatchNorm1d(3)
            self.enc = torch.nn.GRU(3, 4)
            self.fc = torch.nn.Linear(4, 2)
    w = _randomise(Wide().double(), 17)
    cell, notes = from_torch(w, return_notes=True)
    assert cell.origin.prefix == "enc." and cell.origin.readout == "fc."
    assert any("kept unchanged" in s for s in notes)
    sd = to_torch(rp.truncate_svd(cell, rank=1), layout=cell.origin)
    assert list(sd) == list(w.state_dict())
    assert torch.equal(sd["norm.num_batches_tracked"], w.state_dict()["norm.num_batches_tracked"])
    Wide().double().load_state_dict(sd, strict=True)


@pytest.mark.parametrize("make, match", [
    (lambda: {k: v for k, v in torch.nn.GRU(3, 4, num_layers=3).state_dict().items()
              if not k.endswith("_l1")},
     r"^num_layers: expected layers 0..2 \(weight_hh_l<k> for every k\), found layers \[0, 2\]$"),
    (lambda: {k: v for k, v in torch.nn.GRU(3, 4, num_layers=2).state_dict().items()
              if k != "weight_ih_l1"},
     r"^state_dict: expected key 'weight_ih_l1', found none \(layer 1\)$"),
    (lambda: {**torch.nn.GRU(3, 4, num_layers=2).state_dict(),
              "weight_hh_l1": torch.ones(16, 4)},
     r"^state_dict\['weight_hh_l1'\]: expected shape \(12, 4\)"),
    (lambda: torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True),
     r"^bidirectional: expected False"),
    (lambda: torch.nn.GRU(3, 4, bidirectional=True),
     r"^bidirectional: expected False"),
    (lambda: torch.nn.RNN(3, 4, bidirectional=True).state_dict(),
     r"^state_dict: a bidirectional network \(key 'weight_ih_l0_reverse'\)"),
    (lambda: torch.nn.RNN(3, 4, nonlinearity="relu"),
     r"^nonlinearity: expected 'tanh'.*found 'relu'"),
    (lambda: torch.nn.LSTM(3, 4, proj_size=2), r"^proj_size: expected 0 .*found 2$"),
    (lambda: torch.nn.LSTM(3, 4, proj_size=2).state_dict(), r"^proj_size: expected 0 "),
    (lambda: {"rnn.weight_hh_l0": torch.ones(3, 3), "rnn.weight_ih_l0": torch.ones(3, 2),
              "rnn.bias_ih_l0": torch.tensor([1.0, float("nan"), 0.0]),
              "rnn.bias_hh_l0": torch.zeros(3)},
     r"^state_dict\['rnn.bias_ih_l0'\]: expected finite values"),
    (lambda: {"weight_hh_l0": torch.ones(6, 3), "weight_ih_l0": torch.ones(6, 2)},
     r"^state_dict\['weight_hh_l0'\]: expected shape \(G n, n\)"),
    (lambda: {"weight_hh_l0": torch.ones(9, 3), "weight_ih_l0": torch.ones(6, 2)},
     r"^state_dict\['weight_ih_l0'\]: expected shape \(9, m\)"),
    (lambda: {"weight_hh_l0": torch.ones(3, 3, dtype=torch.complex64),
              "weight_ih_l0": torch.ones(3, 2)},
     r"^state_dict\['weight_hh_l0'\]: expected a real"),
], ids=["layer-gap", "layer-missing-key", "layer-shape", "lstm-bidir", "bidir", "bidir-sd",
        "relu", "proj",
        "proj-sd", "nan", "rows", "ih-shape", "complex"])
def test_torch_refusals(make, match):
    with pytest.raises(ValueError, match=match):
        from_torch(make())


def test_torch_to_torch_refusals():
    with pytest.raises(ValueError, match=r"^cell: expected an ElmanRNN, a GRU or an LSTM.*"
                                         r"found MGRU"):
        to_torch(rp.random_cell("mgru", n=3, m=2, seed=0))
    with pytest.raises(ValueError, match=r"found a stack of \['GRU', 'LSTM'\]"):
        to_torch(rp.random_stacked(["gru", "lstm"], 3, 2, seed=0))
    two = from_torch(torch.nn.GRU(2, 3, num_layers=2).double())
    with pytest.raises(ValueError, match=r"^layout: expected .*num_layers = 1, found .*"
                                         r"num_layers = 2"):
        to_torch(two.layers[0], layout=two.origin)
    gru = from_torch(torch.nn.GRU(2, 3).double())
    rnn = from_torch(torch.nn.RNN(2, 3).double())
    with pytest.raises(ValueError, match=r"^layout: expected the layout of an nn.RNN"):
        to_torch(rnn, layout=gru.origin)
    with pytest.raises(ValueError, match=r"^layout: expected readout keys"):
        to_torch(rnn.replace(V=np.ones((2, 3))), layout=rnn.origin)
    assert isinstance(TorchLayout.default(rnn.replace(V=np.ones((2, 3)))), TorchLayout)
    sd = to_torch(rp.ElmanRNN(W=np.eye(3), U=np.ones((3, 2)), b=np.zeros(3),
                              V=np.ones((2, 3))))      # no origin: the canonical layout
    assert list(sd) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                        "fc.weight", "fc.bias"]


def test_torch_old_entry_points_unchanged():
    mod = _randomise(torch.nn.RNN(3, 4).double(), 21)
    cell, notes = rp.from_torch_state_dict(mod.state_dict())
    new = from_torch(mod)
    for k in ("W", "U", "b"):
        np.testing.assert_array_equal(getattr(cell, k), getattr(new, k))


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_torch_factorised_form_and_its_parameter_count(kind):
    """Blocks of rank r < n/2 as two thin factors (left @ right = the block to rounding),
    the others dense; the parameter count is that of the tensors returned."""
    net = _randomise(Net(kind, 3, 8, 2, num_layers=2).double(), 41)
    cell = from_torch(net)
    names = cell.recurrent_names
    ranks = {names[0]: 2, names[-1]: 5}            # 2 < 8/2 (factorised), 5 >= 4 (dense)
    small = rp.truncate_svd(cell, rank=ranks)
    dense, thin = to_torch(small), to_torch(small, factorised=True)
    n, G = 8, len(names) // 2
    for l in range(2):
        Whh = dense[f"rnn.weight_hh_l{l}"].numpy()
        for g, w in enumerate(names[l * G:(l + 1) * G]):
            key = f"rnn.weight_hh_l{l}.{w.split('.')[1]}"
            block = (thin[key + ".left"] @ thin[key + ".right"] if ranks.get(w, n) < n / 2
                     else thin[key]).numpy()
            np.testing.assert_allclose(block, Whh[g * n:(g + 1) * n], rtol=0, atol=1e-14)
        assert f"rnn.weight_hh_l{l}" not in thin
    assert thin[f"rnn.weight_hh_l0.{names[0][3:]}.left"].shape == (8, 2)
    count = sum(v.numel() for v in thin.values())
    assert count == sum(v.numel() for v in dense.values()) - (n * n - 2 * n * 2)
    assert list(thin)[:2] == ["rnn.weight_ih_l0", f"rnn.weight_hh_l0.{names[0][3:]}.left"]
    with pytest.raises(ValueError, match="factorised: expected True or False"):
        to_torch(small, factorised="yes")


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_torch_a_stack_built_here_loads_into_a_torch_module(kind):
    """A stack made in rnnperturb (no origin) is written under the bare module's keys."""
    names = {torch.nn.RNN: "elman", torch.nn.GRU: "gru", torch.nn.LSTM: "lstm"}
    st = rp.random_stacked([names[kind]] * 3, 5, 2, seed=43)
    mod = kind(2, 5, num_layers=3).double()
    mod.load_state_dict(to_torch(st), strict=True)
    X = _inputs(7, 3, 2, 44)
    with torch.no_grad():
        H, _ = mod(X)
    assert np.max(np.abs(H.numpy() - st.run(X.numpy()))) < 1e-10
