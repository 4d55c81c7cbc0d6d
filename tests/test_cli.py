"""The `rnnperturb analyze` command: output against direct library calls, and
one-line errors with exit code 2 for bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.report.cli import main
from rnnperturb.cells.random import random_cell


@pytest.fixture
def small_file(tmp_path):
    cell = random_cell("elman", 8, 3, spectral_norm=1.2, seed=3)
    path = tmp_path / "small.npz"
    rp.save(path, cell)
    return cell, path


def run_main(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_rows_match_library(small_file, capsys, tmp_path):
    cell, path = small_file
    X = np.random.default_rng(0).standard_normal((30, 4, 3))
    np.savez(tmp_path / "X.npz", X=X)
    code, out, err = run_main(["analyze", path, "--ranks", "0,4,8", "--inputs",
                               tmp_path / "X.npz", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert [r["rank"]["W"] for r in data["rows"]] == [0, 4, 8]
    for row in data["rows"]:
        small = rp.truncate_svd(cell, rank=row["rank"]["W"])
        exact = np.linalg.norm(rp.deviation(cell, small, X), axis=-1).max()
        np.testing.assert_allclose(row["exact_max"], exact, rtol=1e-12)
        fo = np.linalg.norm(rp.first_order(cell, small, X), axis=-1).max()
        np.testing.assert_allclose(row["first_order_max"], fo, rtol=1e-12)
        assert row["certified_max"] >= row["exact_max"]
        s = np.linalg.svd(cell.W, compute_uv=False)
        r = row["rank"]["W"]
        np.testing.assert_allclose(row["dW_spectral"]["W"], s[r] if r < 8 else 0, atol=1e-12)
    assert data["rows"][-1]["exact_max"] < 1e-12


def test_table_and_recommendation(small_file, capsys):
    cell, path = small_file
    code, out, err = run_main(["analyze", path, "--ranks", "2:8:2", "--tolerance", "0.3",
                               "--horizon", "20", "--quiet"], capsys)
    assert code == 0, err
    assert "i.i.d. N(0, 1/m) inputs" in out and "recommendation: rank {'W':" in out
    # the recommended rank passes and the one below fails, by the definition
    X, _ = rp.default_inputs(cell, {}, seed=0)
    rec = rp.recommend_rank(cell, X, tolerance=0.3, horizon=20)
    r = rec.rank["W"]
    assert np.max(rp.certified_bound(cell, rp.truncate_svd(cell, rank=r), X[:20], tier="tight")) <= 0.3
    if r > 0:
        assert np.max(rp.certified_bound(cell, rp.truncate_svd(cell, rank=r - 1), X[:20], tier="tight")) > 0.3
    assert f"rank {rec.rank}" in out


def test_checkpoint_uses_its_task_inputs(capsys):
    path = "validation/checkpoints/elman_memorization_D10.npz"
    code, out, err = run_main(["analyze", path, "--ranks", "60", "--quiet"], capsys)
    assert code == 0, err
    assert "all 32 memorization sequences (D=10)" in out


def test_torch_file(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    rnn = torch.nn.RNN(2, 5)
    torch.save(rnn.state_dict(), tmp_path / "r.pt")
    code, out, err = run_main(["analyze", tmp_path / "r.pt", "--ranks", "1", "--quiet"], capsys)
    assert code == 0, err
    assert "note: nonlinearity assumed tanh" in out
    torch.save(torch.nn.GRU(2, 5, bidirectional=True).state_dict(), tmp_path / "b.pt")
    code, out, err = run_main(["analyze", tmp_path / "b.pt"], capsys)
    assert code == 2 and "bidirectional" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["analyze", "/nonexistent/x.npz"], "FILE: expected an existing .npz file"),
    (["analyze", "{bad}"], "unreadable file"),
    (["analyze", "{nan}"], "W: expected finite values, found 1 NaN/Inf"),
    (["analyze", "{schema}"], "key 'cell': expected one of ['elman', "),   # ... found 'nosuchcell'

    (["analyze", "{good}", "--ranks", "3,99"], "--ranks: expected ranks in [0, 4], found [99]"),
    (["analyze", "{good}", "--ranks", "a"], "--ranks: expected integers"),
    (["analyze", "{good}", "--nonlinearity", "relu"], "--nonlinearity: expected 'tanh'"),
    (["analyze", "{good}", "--tolerance", "0.1"], "--tolerance/--horizon: expected both"),
    (["analyze", "{good}", "--inputs", "{badX}"], "X: expected last dimension m=2"),
    (["analyze", "model.onnx"], "FILE: expected an .npz checkpoint or a PyTorch .pt/.pth"),
    (["analyze"], "usage error"),
    (["frobnicate"], "usage error"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    good = tmp_path / "good.npz"
    rp.save(good, random_cell("elman", 4, 2, seed=0))
    (tmp_path / "bad.npz").write_bytes(b"junk")
    W = np.eye(4)
    W[0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", cell=np.array("elman"), W=W, U=np.ones((4, 2)), b=np.zeros(4))
    np.savez(tmp_path / "schema.npz", cell=np.array("nosuchcell"), W=np.eye(4))
    np.savez(tmp_path / "badX.npz", X=np.zeros((5, 3)))
    subs = {"{good}": good, "{bad}": tmp_path / "bad.npz", "{nan}": tmp_path / "nan.npz",
            "{schema}": tmp_path / "schema.npz", "{badX}": tmp_path / "badX.npz"}
    argv = [str(subs.get(a, a)) for a in args]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert message in lines[0]
    assert out == ""


def test_subprocess_one_line_exit_2(tmp_path):
    """The installed entry point (python -m rnnperturb) keeps the contract end to end."""
    proc = subprocess.run([sys.executable, "-m", "rnnperturb", "analyze", str(tmp_path / "x.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"rnnperturb: error: FILE: expected an existing .npz file, found no file at "
        f"'{tmp_path / 'x.npz'}'"]
    assert proc.stdout == ""


def test_json_is_strict_and_null_for_non_finite(small_file, capsys):
    """--tolerance 1e-300: only the full network passes (its certified bound is 0: the
    same weights); non-finite numbers (a recommendation's NaN when none passes) -> null."""
    from rnnperturb.report.cli import _json_safe
    cell, path = small_file
    code, out, err = run_main(["analyze", path, "--ranks", "0", "--tolerance", "1e-300",
                               "--horizon", "5", "--json"], capsys)
    assert code == 0, err

    def refuse(c):
        raise AssertionError(f"non-strict JSON constant {c}")
    data = json.loads(out, parse_constant=refuse)
    assert data["recommendation"]["rank"] == {"W": 8}
    assert data["recommendation"]["certified_max"] == 0.0
    assert "NaN" not in out and "Infinity" not in out
    assert data["dtype"] == "float64" and data["warnings"] == []
    safe = _json_safe({"a": float("nan"), "b": [np.inf, -np.inf, np.float64(2.5)], "c": None})
    assert json.loads(json.dumps(safe, allow_nan=False)) == {"a": None, "b": [None, None, 2.5],
                                                             "c": None}


def test_table_header_names_the_trajectories(tmp_path, capsys):
    cell = random_cell("elman", 6, 2, seed=2)
    p = tmp_path / "f32.npz"
    rp.save(p, rp.ElmanRNN(**{k: v.astype(np.float32) for k, v in cell.params.items()}))
    code, out, err = run_main(["analyze", p, "--ranks", "3", "--quiet"], capsys)
    assert code == 0, err
    header = [ln for ln in out.splitlines() if ln.lstrip().startswith("rank")][0]
    assert "exact(float32)" in header and "1st-order(float32)" in header
    assert "certified(exact arith.)" in header
    assert "float32 rounding not included" in out


def test_help_documents_null_and_exit_codes(capsys):
    code = main(["analyze", "--help"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "written as null" in out and "130 interrupted" in out and "exit status" in out
