"""PyTorch nn.RNN state_dicts -> ElmanRNN."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.io.pytorch import from_torch_state_dict, load_torch


def sd(n=4, m=2, prefix="", bias=True, seed=0):
    r = np.random.default_rng(seed)
    d = {prefix + "weight_ih_l0": r.standard_normal((n, m)),
         prefix + "weight_hh_l0": r.standard_normal((n, n)) * 0.3}
    if bias:
        d[prefix + "bias_ih_l0"] = r.standard_normal(n)
        d[prefix + "bias_hh_l0"] = r.standard_normal(n)
    return d


def test_conversion_matches_nn_rnn_equation():
    d = sd()
    cell, notes = from_torch_state_dict(d)
    X = np.random.default_rng(1).standard_normal((5, 2))
    h = np.zeros(4)
    for t in range(5):   # the nn.RNN equation, written out
        h = np.tanh(d["weight_ih_l0"] @ X[t] + d["bias_ih_l0"] + d["weight_hh_l0"] @ h
                    + d["bias_hh_l0"])
        np.testing.assert_allclose(cell.run(X)[t], h, atol=1e-15)
    assert any("nonlinearity assumed tanh" in s for s in notes), notes


def test_prefix_readout_and_ignored_keys_are_reported():
    d = sd(prefix="rnn.")
    d["fc.weight"] = np.ones((3, 4))
    d["fc.bias"] = np.zeros(3)
    d["other.scale"] = np.ones(1)
    cell, notes = from_torch_state_dict(d)
    assert cell.V.shape == (3, 4)
    assert any("not part of the network" in s and "other.scale" in s for s in notes), notes
    cell, notes = from_torch_state_dict(sd(bias=False))
    np.testing.assert_array_equal(cell.b, 0)
    assert any("bias=False" in s for s in notes)


def test_rejections():
    with pytest.raises(ValueError, match=r"nonlinearity: expected 'tanh'.*found 'relu'"):
        from_torch_state_dict(sd(), nonlinearity="relu")
    five = sd()
    five["weight_hh_l0"] = np.ones((20, 4))
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l0'\]: expected shape \(G n, n\) "
                                         r"with G = 1 \(nn.RNN\), 3 \(nn.GRU\) or 4 \(nn.LSTM\), "
                                         r"found shape \(20, 4\) \(G = 5\)"):
        from_torch_state_dict(five)
    two = sd()
    two.update({k.replace("l0", "l1"): v for k, v in sd().items()})   # layer 1 takes n inputs
    with pytest.raises(ValueError, match=r"state_dict\['weight_ih_l1'\]: expected shape \(4, 4\)"):
        from_torch_state_dict(two)
    with pytest.raises(ValueError, match=r"expected exactly one 'weight_hh_l0'.*found 0"):
        from_torch_state_dict({"a": np.ones(2)})
    with pytest.raises(ValueError, match=r"path: expected an existing PyTorch file"):
        load_torch("/nonexistent/file.pt")


def test_real_torch_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    rnn = torch.nn.RNN(3, 5).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    path = tmp_path / "rnn.pt"
    torch.save(rnn.state_dict(), path)
    cell, _ = load_torch(path)
    X = torch.randn(6, 2, 3, generator=gen, dtype=torch.float64)
    out, _ = rnn(X)
    np.testing.assert_allclose(cell.run(X.numpy()), out.detach().numpy(), atol=1e-13)
    bad = tmp_path / "code.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"expected a PyTorch state_dict readable with weights_only=True"):
        load_torch(bad)
