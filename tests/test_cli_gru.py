"""`rnnperturb analyze` on a PyTorch nn.GRU state_dict (through rp.from_torch) and on
labelled inputs (--inputs with X and y): columns against direct library calls, a real
torch module and a direct numpy computation."""
import json

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.report.cli import main

torch = pytest.importorskip("torch")


class _Net(torch.nn.Module):
    def __init__(self, m, n, k):
        super().__init__()
        self.rnn = torch.nn.GRU(m, n, dtype=torch.float64)
        self.fc = torch.nn.Linear(n, k, dtype=torch.float64)


@pytest.fixture
def gru_files(tmp_path):
    g = torch.Generator().manual_seed(7)
    net = _Net(3, 6, 4)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.8 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    sd = net.state_dict()
    torch.save(sd, tmp_path / "gru.pt")
    rng = np.random.default_rng(11)
    X = rng.standard_normal((12, 40, 3))
    y = rng.integers(0, 4, size=40)
    np.savez(tmp_path / "X.npz", X=X, y=y)
    return net, sd, X, y, tmp_path


def _gru_certified_available():
    cell = rp.from_torch(_Net(2, 3, 2).state_dict())
    try:
        rp.certified_bound(cell, cell, np.zeros((1, 1, 2)))
        return True
    except NotImplementedError:
        return False


@pytest.fixture
def no_certified(monkeypatch):
    """A cell without a certified bound (as the GRU was before the generic rounding step)."""
    import rnnperturb.bounds.trajectory as tr

    def refuse(cell, *a, **k):
        raise NotImplementedError(f"{type(cell).__name__}.rounding_context: not implemented "
                                  f"(test)")
    monkeypatch.setattr(tr, "certified_bound", refuse)
    monkeypatch.setattr(tr, "certified_bounds", refuse)


def run_main(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_gru_json_exact_first_order_and_accuracy(gru_files, capsys):
    net, sd, X, y, tmp = gru_files
    code, out, err = run_main(["analyze", tmp / "gru.pt", "--ranks", "0,2,6", "--inputs",
                               tmp / "X.npz", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["cell"] == "gru" and data["dtype"] == "float64"
    cell = rp.from_torch(sd)
    # the converted cell is the torch module: same hidden states
    with torch.no_grad():
        H_t, _ = net.rnn(torch.tensor(X))
    np.testing.assert_allclose(cell.run(X), H_t.numpy(), rtol=0, atol=1e-12)
    notes = [n for n in data["notes"] if "columns n/a" in n]
    available = _gru_certified_available()
    if not available:
        assert len(notes) == 1 and "GRU" in notes[0] and "not implemented" in notes[0]
    else:
        assert notes == []
    assert [r["rank"] for r in data["rows"]] == [{"Wr": r, "Wz": r, "Wn": r} for r in (0, 2, 6)]
    for row in data["rows"]:
        if available:
            assert row["certified_max"] >= row["exact_max"]
            assert row["certified_accuracy"] <= row["accuracy"]
        else:
            assert row["certified_max"] is None and row["certified_accuracy"] is None
        small = rp.truncate_svd(cell, rank=row["rank"])
        exact = np.linalg.norm(rp.deviation(cell, small, X), axis=-1).max()
        np.testing.assert_allclose(row["exact_max"], exact, rtol=1e-12)
        fo = np.linalg.norm(rp.first_order(cell, small, X), axis=-1).max()
        np.testing.assert_allclose(row["first_order_max"], fo, rtol=1e-12)
        # truncation computed directly: best rank-r approximation of each gate's matrix
        r = row["rank"]["Wr"]
        Wt = {}
        for name in ("Wr", "Wz", "Wn"):
            U, s, Vt = np.linalg.svd(getattr(cell, name))
            Wt[name] = (U[:, :r] * s[:r]) @ Vt[:r]
            np.testing.assert_allclose(row["dW_spectral"][name], s[r] if r < 6 else 0.0,
                                       atol=1e-12)
        direct = rp.GRU(**dict(cell.params, **Wt))
        np.testing.assert_allclose(
            row["exact_max"], np.linalg.norm(direct.run(X) - cell.run(X), axis=-1).max(),
            rtol=1e-9, atol=1e-13)
        # accuracy: argmax of the readout of the truncated net at the last step, numpy only
        h = np.zeros((X.shape[1], 6))
        sig = lambda a: 1 / (1 + np.exp(-a))   # noqa: E731
        P = cell.params
        for t in range(X.shape[0]):
            x = X[t]
            rg = sig(h @ Wt["Wr"].T + x @ P["Ur"].T + P["br"])
            z = sig(h @ Wt["Wz"].T + x @ P["Uz"].T + P["bz"])
            nn_ = np.tanh(x @ P["Un"].T + P["bn"] + rg * (h @ Wt["Wn"].T + P["bhn"]))
            h = (1 - z) * nn_ + z * h
        W_fc = sd["fc.weight"].numpy()
        b_fc = sd["fc.bias"].numpy()
        acc = np.mean(np.argmax(h @ W_fc.T + b_fc, axis=1) == y)
        assert row["accuracy"] == pytest.approx(acc, abs=0)
    assert data["rows"][-1]["exact_max"] < 1e-12
    # the full-rank accuracy is the torch module's own
    with torch.no_grad():
        logits = net.fc(H_t[-1]).numpy()
    assert data["rows"][-1]["accuracy"] == np.mean(np.argmax(logits, axis=1) == y)
    assert 0 < data["rows"][-1]["accuracy"] < 1     # a non-trivial check


def test_gru_table_marks_certified_na(gru_files, capsys, no_certified):
    _, sd, X, y, tmp = gru_files
    code, out, err = run_main(["analyze", tmp / "gru.pt", "--ranks", "1,3", "--inputs",
                               tmp / "X.npz", "--quiet"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert "gru cell, n=6, m=3" in lines[0]
    na = [ln for ln in lines if ln.startswith("note: certified and certified-accuracy columns "
                                              "n/a: GRU.rounding_context")]
    assert len(na) == 1, out
    header = [ln for ln in lines if ln.lstrip().startswith("rank")][0]
    assert header.split()[-2:] == ["accuracy", "cert.acc"]
    rows = [ln.split() for ln in lines if ln.lstrip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "3"]      # the same rank on Wr, Wz, Wn
    assert all(r[-3] == "n/a" and r[-1] == "n/a" and r[-2] != "n/a" for r in rows)


def test_gru_tolerance_refused_one_line(gru_files, capsys, no_certified):
    _, _, _, _, tmp = gru_files
    code, out, err = run_main(["analyze", tmp / "gru.pt", "--ranks", "1", "--tolerance", "0.1",
                               "--horizon", "5", "--quiet"], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--tolerance" in lines[0] and "certified" in lines[0]


def test_elman_certified_column_unchanged_with_labels(tmp_path, capsys):
    """An Elman net keeps its certified column; accuracy against numpy."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((5, 5)) * 0.5
    U = rng.standard_normal((5, 2))
    V = rng.standard_normal((3, 5))
    cell = rp.ElmanRNN(W=W, U=U, b=np.zeros(5), V=V, c=np.zeros(3))
    rp.save(tmp_path / "e.npz", cell)
    X = rng.standard_normal((8, 30, 2))
    y = rng.integers(0, 3, size=30)
    np.savez(tmp_path / "X.npz", X=X, y=y)
    code, out, err = run_main(["analyze", tmp_path / "e.npz", "--ranks", "2", "--inputs",
                               tmp_path / "X.npz", "--json"], capsys)
    assert code == 0, err
    row = json.loads(out)["rows"][0]
    assert row["certified_max"] >= row["exact_max"]
    u, s, vt = np.linalg.svd(W)
    W2 = (u[:, :2] * s[:2]) @ vt[:2]
    h = np.zeros((30, 5))
    for t in range(8):
        h = np.tanh(h @ W2.T + X[t] @ U.T)
    assert row["accuracy"] == np.mean(np.argmax(h @ V.T, axis=1) == y)


@pytest.mark.parametrize("y, message", [
    (np.zeros((40, 1), dtype=int), "y: expected shape (40,)"),
    (np.zeros((12, 40, 1), dtype=int), "or (12, 40) (one per step, negative = not scored)"),
    (np.full((12, 40), -1), "y: expected at least one scored label (>= 0), found all 480"),
    (np.full((12, 40), 4), "y: expected labels in [0, 3] (the readout has 4 outputs; "
                           "negative = not scored), found 4"),
    (np.zeros(39, dtype=int), "y: expected shape (40,)"),
    (np.zeros(40), "y: expected an integer array, found dtype float64"),
    (np.full(40, 4), "y: expected labels in [0, 3] (the readout has 4 outputs), found 4"),
    (np.full(40, -1), "y: expected labels in [0, 3]"),
])
def test_bad_labels_one_line_exit_2(gru_files, capsys, y, message):
    _, _, X, _, tmp = gru_files
    np.savez(tmp / "bad.npz", X=X, y=y)
    code, out, err = run_main(["analyze", tmp / "gru.pt", "--inputs", tmp / "bad.npz"], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_labels_need_a_readout(tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    gru = torch.nn.GRU(2, 4)
    with torch.no_grad():
        for p in gru.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    torch.save(gru.state_dict(), tmp_path / "g.pt")
    np.savez(tmp_path / "X.npz", X=np.zeros((3, 5, 2)), y=np.zeros(5, dtype=int))
    code, out, err = run_main(["analyze", tmp_path / "g.pt", "--inputs", tmp_path / "X.npz"],
                              capsys)
    assert code == 2 and "y: expected a cell with a readout V" in err
    # without y the float32 GRU file is analysed (certified n/a)
    np.savez(tmp_path / "X2.npz", X=np.zeros((3, 5, 2)))
    code, out, err = run_main(["analyze", tmp_path / "g.pt", "--inputs", tmp_path / "X2.npz",
                               "--ranks", "2", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    row = data["rows"][0]
    assert data["dtype"] == "float32"
    assert (row["certified_max"] is None) == (not _gru_certified_available())
    assert "accuracy" not in row and "certified_accuracy" not in row
