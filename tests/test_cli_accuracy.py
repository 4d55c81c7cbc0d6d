"""Accuracy and certified accuracy in `rnnperturb analyze` and `rp.analyze_ranks`,
--tolerance-accuracy, --export (back to a real torch module), the set certificates
(--bits / --drift / --noise-std) and their errors: numbers against independent
computations (numpy loops, torch modules, direct library calls)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import rnnperturb as rp
from conftest import torch_rnn_with_head
from rnnperturb.bounds.recall import certified_recall, label_task
from rnnperturb.report.cli import main
from rnnperturb.report.rank_analysis import analyze_ranks, recommend_accuracy


def run_main(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _elman(seed=2, n=6, m=3, k=3, B=80, T=10, noisy=0.2):
    """A float64 Elman net with a readout and labels that are its own predictions, a
    fraction ``noisy`` of them changed (so full accuracy < 1)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n)) * 0.6
    cell = rp.ElmanRNN(W=W, U=rng.standard_normal((n, m)), b=np.zeros(n),
                       V=2 * rng.standard_normal((k, n)), c=np.zeros(k))
    X = rng.standard_normal((T, B, m))
    y = np.argmax(cell.readout(cell.run(X)[-1]), -1)
    y = np.where(rng.random(B) < noisy, (y + 1) % k, y)
    return cell, X, y


def _by_hand(cell, X, r):
    """Logits of every step of the rank-r truncation, numpy SVD and a tanh loop."""
    u, s, vt = np.linalg.svd(cell.W)
    Wr = (u[:, :r] * s[:r]) @ vt[:r]
    h = np.zeros((X.shape[1], cell.n))
    out = []
    for t in range(X.shape[0]):
        h = np.tanh(h @ Wr.T + X[t] @ cell.U.T + cell.b)
        out.append(h @ cell.V.T + cell.c)
    return np.array(out)


@pytest.fixture
def labelled(tmp_path):
    cell, X, y = _elman()
    rp.save(tmp_path / "e.npz", cell)
    np.savez(tmp_path / "X.npz", X=X, y=y)
    return cell, X, y, tmp_path


def test_rows_accuracy_and_certified_accuracy(labelled, capsys):
    cell, X, y, tmp = labelled
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz", "--json"],
                              capsys)
    assert code == 0, err
    data = json.loads(out)
    full = np.mean(np.argmax(_by_hand(cell, X, 6)[-1], -1) == y)
    assert data["full_accuracy"] == full and 0.5 < full < 1
    task = label_task(cell, X, y)
    strict = 0
    for row in data["rows"]:
        r = row["rank"]["W"]
        logits = _by_hand(cell, X, r)[-1]
        assert row["accuracy"] == np.mean(np.argmax(logits, -1) == y)
        assert row["certified_accuracy"] <= row["accuracy"]
        strict += row["certified_accuracy"] < row["accuracy"]
        # which sequences: every certified one is right at full rank and keeps its prediction
        res = certified_recall(cell, rp.truncate_svd(cell, rank=r), task, tier="tight")
        assert res.certified_accuracy == row["certified_accuracy"]
        nominal = np.argmax(_by_hand(cell, X, 6)[-1], -1)
        cert = np.asarray(res.certified)
        assert np.all(nominal[cert] == y[cert])
        assert np.all(np.argmax(logits, -1)[cert] == nominal[cert])
    last = data["rows"][-1]
    assert last["rank"] == {"W": 6}
    assert last["certified_accuracy"] == last["accuracy"] == full   # equal at full rank
    assert strict >= 3                    # the test can tell certified from measured
    assert 0 < data["rows"][3]["certified_accuracy"]


def test_per_step_labels_negative_unscored():
    cell, X, _ = _elman(seed=4, B=40)
    rng = np.random.default_rng(0)
    Y = np.argmax(cell.readout(cell.run(X)), -1)
    Y = np.where(rng.random(Y.shape) < 0.05, (Y + 1) % 3, Y)
    Y[:6] = -1                             # the first steps are not scored
    Y[:, 0] = -1                           # a sequence without any scored step: left out
    rows = analyze_ranks(cell, X, y=Y, ranks=[1, 3, 6])
    scored = (Y >= 0).any(axis=0)
    for row in rows:
        pred = np.argmax(_by_hand(cell, X, row.rank["W"]), -1)
        ok = np.all((pred == Y) | (Y < 0), axis=0)
        assert row.accuracy == np.mean(ok[scored])
        assert row.certified_accuracy <= row.accuracy
    assert rows[-1].certified_accuracy == rows[-1].accuracy
    with pytest.raises(ValueError, match=r"y: expected shape \(40,\)"):
        analyze_ranks(cell, X, y=Y[:, :5])


def test_tolerance_accuracy_recommendations(labelled, capsys):
    cell, X, y, tmp = labelled
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz",
                               "--tolerance-accuracy", "0.05", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    rec, full = data["accuracy_recommendation"], data["full_accuracy"]
    ranks = [r["rank"]["W"] for r in data["rows"]]
    acc = {r["rank"]["W"]: r["accuracy"] for r in data["rows"]}
    cacc = {r["rank"]["W"]: r["certified_accuracy"] for r in data["rows"]}
    # recomputed from the definition (params grow with the rank here: 2nr < n^2 or dense)
    want = min(r for r in ranks if acc[r] >= full - 0.05 - 1e-12)
    assert rec["rank"] == {"W": want} and rec["accuracy"] == acc[want]
    cwant = min(r for r in ranks if cacc[r] >= full - 1e-12)
    assert rec["certified_rank"] == {"W": cwant}
    assert want < cwant <= 6               # the certified answer is the more cautious one
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz",
                               "--tolerance-accuracy", "0.05", "--quiet"], capsys)
    assert code == 0, err
    assert f"recommendation (accuracy, measured): rank {want} loses at most 0.05" in out
    assert f"recommendation (accuracy, certified): rank {cwant} provably loses none" in out


def test_recommend_accuracy_checks():
    cell, X, y = _elman(B=20)
    rows = analyze_ranks(cell, X, ranks=[0, 6])
    with pytest.raises(ValueError, match="rows: expected rows of analyze_ranks with labels"):
        recommend_accuracy(rows, 1.0, tolerance=0.01)
    with pytest.raises(ValueError, match=r"tolerance: expected a fraction in \[0, 1\)"):
        recommend_accuracy(rows, 1.0, tolerance=1.0)


def test_memorization_checkpoint_accuracy_is_recall(capsys):
    path = "validation/checkpoints/elman_memorization_D10.npz"
    code, out, err = run_main(["analyze", path, "--ranks", "55,64", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert "accuracy = recall" in data["inputs"]
    cell = rp.load(path)
    task = rp.tasks.memorization_all(2, 5, 10)
    for row in data["rows"]:
        small = rp.truncate_svd(cell, rank=row["rank"]["W"])
        pred = np.argmax(small.readout(small.run(task.X)), -1)
        recalled = np.all((pred == task.targets) | ~task.recall, axis=0)
        assert row["accuracy"] == recalled.mean()
        assert row["certified_accuracy"] <= row["accuracy"]
    assert data["rows"][-1]["certified_accuracy"] == data["rows"][-1]["accuracy"] == 1.0
    assert data["rows"][0]["certified_accuracy"] < 1.0     # rank 55: not all provable


def test_kback_checkpoint_has_no_sequence_accuracy(capsys):
    """k-back is scored per step: no labels are derived from its task."""
    code, out, err = run_main(["analyze", "validation/checkpoints/elman_kback.npz", "--ranks",
                               "8", "--tier", "fast", "--json"], capsys)
    assert code == 0, err
    row = json.loads(out)["rows"][0]
    assert "accuracy" not in row and "certified_accuracy" not in row


def _torch_module(torch, kind="gru", layers=1, m=3, n=5, k=4, seed=3):
    torch.manual_seed(seed)
    return torch_rnn_with_head(torch, kind, layers, m=m, n=n, k=k)


@pytest.mark.parametrize("kind, layers, gates", [("gru", 1, "rzn"), ("lstm", 2, "ifgo"),
                                                 ("rnn", 2, "")])
def test_export_torch_loads_strict_and_matches_truncated_cell(tmp_path, capsys, kind, layers,
                                                               gates):
    torch = pytest.importorskip("torch")
    net = _torch_module(torch, kind, layers)
    torch.save(net.state_dict(), tmp_path / "g.pt")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 20, 3))
    y = rng.integers(0, 4, 20)
    np.savez(tmp_path / "X.npz", X=X, y=y)
    code, out, err = run_main(["analyze", tmp_path / "g.pt", "--inputs", tmp_path / "X.npz",
                               "--ranks", "1,2,5", "--export", tmp_path / "small.pt",
                               "--export-rank", "2", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    cell = rp.from_torch(net.state_dict())
    names = cell.recurrent_names
    assert len(names) == max(1, len(gates)) * layers     # 3L for a GRU, 4L for an LSTM
    assert data["export"]["rank"] == {k: 2 for k in names}
    assert [r["rank"] for r in data["rows"]] == [{k: r for k in names} for r in (1, 2, 5)]
    sd = torch.load(tmp_path / "small.pt", weights_only=True)
    assert set(sd) == set(net.state_dict())
    other = _torch_module(torch, kind, layers, seed=99)
    other.load_state_dict(sd, strict=True)
    with torch.no_grad():
        got = other(torch.tensor(X)).numpy()
    small = rp.truncate_svd(cell, rank=2)
    want = small.readout(small.run(X))
    assert np.max(np.abs(got - want)) < 1e-10
    # every recurrent block of the file has rank 2, the input weights are unchanged
    G = max(1, len(gates))
    for layer in range(layers):
        whh = sd[f"rnn.weight_hh_l{layer}"].numpy()
        for g in range(G):
            s = np.linalg.svd(whh[5 * g:5 * (g + 1)], compute_uv=False)
            assert s[2] < 1e-12 * s[0]
        np.testing.assert_array_equal(sd[f"rnn.weight_ih_l{layer}"].numpy(),
                                      net.state_dict()[f"rnn.weight_ih_l{layer}"].numpy())
    # the accuracy in the exported row is the reloaded module's; certified <= it
    row = [r for r in data["rows"] if set(r["rank"].values()) == {2}][0]
    assert row["accuracy"] == np.mean(np.argmax(got[-1], -1) == y)
    assert row["certified_accuracy"] is None or row["certified_accuracy"] <= row["accuracy"]


def test_export_recommended_npz(labelled, capsys):
    cell, X, y, tmp = labelled
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz",
                               "--tolerance-accuracy", "0.05", "--export", tmp / "out.npz",
                               "--quiet"], capsys)
    assert code == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith("exported: rank ")][0]
    r = int(line.split()[2])
    assert "--tolerance-accuracy recommendation" in line
    small = rp.load(tmp / "out.npz")
    u, s, vt = np.linalg.svd(cell.W)
    np.testing.assert_allclose(small.W, (u[:, :r] * s[:r]) @ vt[:r], atol=1e-13)
    np.testing.assert_array_equal(small.U, cell.U)
    np.testing.assert_array_equal(small.V, cell.V)


def test_set_certificates_against_library(labelled, capsys):
    cell, X, y, tmp = labelled
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz",
                               "--ranks", "6", "--bits", "8,12", "--drift", "1e-3",
                               "--noise-std", "1e-3", "--samples", "4", "--json"], capsys)
    assert code == 0, err
    sets = json.loads(out)["sets"]
    assert [(s["set"], s["value"]) for s in sets] == [("bits", 8), ("bits", 12),
                                                      ("drift", 1e-3), ("noise_std", 1e-3)]
    H = cell.run(X)
    for s in sets:
        assert s["certified_max"] >= s["measured_max"] > 0
        assert s["certified_accuracy"] <= s["accuracy_min"] <= s["accuracy"]
    # bits: the measured member is quantize() itself; the certified one is set_bound
    q = rp.quantize(cell, bits=8)
    assert sets[0]["measured_max"] == pytest.approx(
        np.linalg.norm(q.run(X) - H, axis=-1).max(), rel=1e-12)
    assert sets[0]["accuracy"] == np.mean(np.argmax(q.readout(q.run(X)[-1]), -1) == y)
    Sb = rp.sets.quantization(cell, bits=8, rounding="any")
    assert sets[0]["certified_max"] == pytest.approx(
        np.max(rp.set_bound(cell, Sb, X, box_refine=False)), rel=1e-12)
    assert sets[1]["certified_max"] < sets[0]["certified_max"]
    # 12 bits: every correct sequence is certified for every rounding
    full = np.mean(np.argmax(cell.readout(H[-1]), -1) == y)
    assert sets[1]["certified_accuracy"] == full
    # --box-refine: set_bound's SDP-dual refinement, never looser
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz",
                               "--ranks", "6", "--drift", "1e-3", "--box-refine", "--json"],
                              capsys)
    assert code == 0, err
    refined = json.loads(out)["sets"][0]
    Sd = rp.sets.drift(cell, rel=1e-3)
    assert refined["certified_max"] == pytest.approx(
        np.max(rp.set_bound(cell, Sd, X, box_refine="auto")), rel=1e-12)
    assert refined["measured_max"] <= refined["certified_max"] <= sets[2]["certified_max"]
    # noise: the union bound over the 80 sequences
    Pn = rp.noise_bound(cell, X, std=1e-3, confidence=1 - 0.01 / 80)
    assert sets[3]["certified_max"] == pytest.approx(np.max(Pn), rel=1e-12)


@pytest.mark.parametrize("extra, message", [
    (["--tolerance-accuracy", "1.5"], "--tolerance-accuracy: expected a fraction in [0, 1)"),
    (["--export-rank", "2"], "--export-rank: expected --export PATH as well"),
    (["--export", "{tmp}/o.npz"], "--export: expected a rank to export"),
    (["--export", "{tmp}/o.pt", "--export-rank", "2"], "--export: expected a path ending in "
                                                       ".npz (FILE is an .npz checkpoint"),
    (["--export", "{tmp}/nodir/o.npz", "--export-rank", "2"],
     "--export: expected a path in an existing directory"),
    (["--export", "{tmp}/o.npz", "--export-rank", "9"], "--export-rank: expected a rank in "
                                                        "[0, 6], found 9"),
    (["--bits", "1"], "--bits: expected integers in [2, 32] like '6,8', found '1'"),
    (["--bits", "8,x"], "--bits: expected integers in [2, 32]"),
    (["--drift=-1e-3"], "--drift: expected finite numbers > 0"),
    (["--noise-std", "nan"], "--noise-std: expected finite numbers > 0"),
    (["--confidence", "1"], "--confidence: expected a number in (0, 1), found 1.0"),
    (["--samples", "0"], "--samples: expected an integer >= 1, found 0"),
])
def test_bad_options_one_line_exit_2(labelled, capsys, extra, message):
    cell, X, y, tmp = labelled
    extra = [a.replace("{tmp}", str(tmp)) for a in extra]
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz",
                               "--ranks", "1"] + extra, capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_tolerance_accuracy_needs_labels(tmp_path, capsys):
    cell, X, _ = _elman(B=10)
    rp.save(tmp_path / "e.npz", cell)
    np.savez(tmp_path / "X.npz", X=X)
    code, out, err = run_main(["analyze", tmp_path / "e.npz", "--inputs", tmp_path / "X.npz",
                               "--tolerance-accuracy", "0.01"], capsys)
    assert code == 2 and "--tolerance-accuracy: expected labels" in err


def test_piped_into_head_ends_cleanly(labelled):
    cell, X, y, tmp = labelled
    cmd = (f"{sys.executable} -m rnnperturb analyze {tmp / 'e.npz'} --inputs {tmp / 'X.npz'} "
           f"--bits 8 | head -n 2")
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    assert p.stderr == ""                  # no traceback, no progress on a pipe
    assert len(p.stdout.splitlines()) == 2 and "elman cell" in p.stdout


def test_one_sided_set_certificates_against_library(labelled, capsys):
    """--one-sided: the set rows are set_bound / noise_bound / certified_set_recall with
    one_sided=True (the text names it; chords where tighter, set_bound's default, in every
    row), and each bound still covers the measured members."""
    cell, X, y, tmp = labelled
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz",
                               "--ranks", "6", "--bits", "8", "--drift", "1e-2",
                               "--noise-std", "1e-3", "--samples", "4", "--one-sided",
                               "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)["sets"]
    assert all(r["one_sided"] is True for r in rows)
    for r in rows:
        assert r["certified_max"] >= r["measured_max"] > 0
        assert r["certified_accuracy"] <= r["accuracy_min"]
    Sd = rp.sets.drift(cell, rel=1e-2)
    task = label_task(cell, X, y)
    ref = rp.bounds.set_recall.certified_set_recall(cell, Sd, task, samples=0, one_sided=True,
                                                    chords=True)
    assert rows[1]["certified_max"] == pytest.approx(np.max(ref.bound), rel=1e-12)
    code, out, err = run_main(["analyze", tmp / "e.npz", "--inputs", tmp / "X.npz",
                               "--ranks", "6", "--drift", "1e-2", "--one-sided", "--quiet"],
                              capsys)
    assert code == 0, err
    assert "drift |dW| <= 0.01|W|, one-sided" in out
