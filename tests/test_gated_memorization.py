"""The GRU and LSTM memorization checkpoints trained by the NumPy simulator
(validation/checkpoints/{gru,lstm}_memorization_D*), their kept ranks and the
gate values quoted in validation/README.md, recomputed here.

* every checkpoint recalls all 32 sequences with the library cell (float64), and its record
  says so;
* the kept rank at >= 99 % recall (plain SVD, every recurrent block at the same rank) is
  recomputed over every rank 0..n by a scan written here (numpy SVD of each block, the cell's
  own ``run``), and compared exactly with the README's table; the same numbers come out of
  ``validation.exp_rank_performance``'s own rows at the ranks it evaluates;
* the gate values of ``exp_rank_performance.mechanism`` against the gate equations written
  out in numpy (the GRU's z, the LSTM's f), and the README's mechanism table against
  ``mechanism`` (to the digits shown).
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb import metrics, tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.path.join(ROOT, "validation", "checkpoints")
README = os.path.join(ROOT, "validation", "README.md")
GATED = sorted(f[:-4] for f in os.listdir(CKPT)
               if f.endswith(".npz") and f.split("_")[0] in ("gru", "lstm"))
CELL_OF_ROW = {"tanh RNN": "elman", "MGRU": "mgru", "GRU": "gru", "LSTM": "lstm"}


def _load(name):
    return rp.load_with_metadata(os.path.join(CKPT, name + ".npz"))


def test_gated_checkpoints_are_the_readmes():
    """The GRU and LSTM checkpoints shipped are those with a number in the kept-rank table."""
    listed = sorted({f"{c}_memorization_D{D}" for (c, _, D) in TABLE if c in ("gru", "lstm")})
    assert GATED == listed
    assert {f"gru_memorization_D{D}" for D in (10, 20, 50)} <= set(GATED)


@pytest.mark.parametrize("name", GATED)
def test_gated_checkpoint_recalls_all_32(name):
    cell, meta = _load(name)
    assert cell.kind == name.split("_")[0] and cell.n == 64
    assert (meta["task"], meta["K"], meta["L"]) == ("memorization", 2, 5)
    assert f"D{meta['D']}" == name.rsplit("_", 1)[1]
    task = tasks.memorization_all(2, 5, int(meta["D"]))
    assert metrics.sequence_accuracy(cell.readout(cell.run(task.X)), task) == 1.0
    rec = json.load(open(os.path.join(CKPT, name + ".json")))
    assert rec["final_test"]["n_correct"] == 32 and rec["seed"] == meta["seed"]
    assert rec["cell"] == cell.kind and rec["solved_check"]


# --------------------------------------------------------------------- kept ranks
def _svd_truncated(cell, r, only=None):
    """Every recurrent block (or only the named one) replaced by its best rank-r
    approximation, computed here with numpy's SVD."""
    new = {}
    for k, W in cell.recurrent.items():
        if only is None or k == only:
            U, s, Vt = np.linalg.svd(W)
            new[k] = (U[:, :r] * s[:r]) @ Vt[:r]
    return cell.replace(**new)


def _recall(cell, task):
    ok = metrics.predictions(cell.readout(cell.run(task.X))) == task.targets
    return float(ok[task.recall].mean())


def kept_rank(cell, task, only=None, level=0.99):
    """Smallest r such that every rank >= r keeps recall >= level x full (scan down from n)."""
    base = _recall(cell, task)
    for r in range(cell.n, -1, -1):
        if _recall(_svd_truncated(cell, r, only), task) / base < level:
            return None if r == cell.n else r + 1
    return 0


def readme_kept_ranks() -> dict:
    """{(cell, 'all' or block, D): kept rank} from validation/README.md's table
    'Kept rank at >= 99 % recall, plain SVD'."""
    text = open(README).read()
    m = re.search(r"\| kept rank at ≥ 99 % recall \(plain SVD\) \| D = 10 \| D = 20 \| D = 50 \|"
                  r"\n\|[-| ]+\|\n((?:\|.*\|\n)+)", text)
    assert m, "validation/README.md: the gated kept-rank table is gone or reworded"
    out = {}
    for line in m.group(1).strip().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        label, values = cells[0], cells[1:]
        mm = re.fullmatch(r"(tanh RNN|MGRU|GRU|LSTM)(?:, (\w+) alone)?", label)
        assert mm, label
        for D, v in zip((10, 20, 50), values):
            if v != "—":                       # no checkpoint at that delay
                out[(CELL_OF_ROW[mm.group(1)], mm.group(2) or "all", D)] = int(v)
    return out


TABLE = readme_kept_ranks()


def _rank_params():
    # by default the GRU and LSTM with every block at the same rank; slow: every block alone
    # (3-4 more scans per net) and the tanh RNN and MGRU rows (checked by default through the
    # top-level README's table, tests/test_readme_numbers.py)
    return [key if key[1] == "all" and key[0] in ("gru", "lstm")
            else pytest.param(*key, marks=pytest.mark.slow) for key in sorted(TABLE)]


@pytest.mark.parametrize("cell_kind, target, D", _rank_params(), ids=lambda v: str(v))
def test_kept_rank_matches_readme(cell_kind, target, D):
    cell, meta = _load(f"{cell_kind}_memorization_D{D}")
    task = tasks.memorization_all(2, 5, D)
    got = kept_rank(cell, task, None if target == "all" else target)
    assert got == TABLE[(cell_kind, target, D)], (cell_kind, target, D, got)


def test_exp_rank_performance_rows_agree():
    """exp_rank_performance (quick grid) on a GRU checkpoint: its plain-SVD and per-block rows
    give the recall computed here at every evaluated rank, and its kept rank is the grid
    rank at or above the full scan's kept rank."""
    from validation import exp_rank_performance as exp
    name = "gru_memorization_D20"
    res = exp.run(quick=True, names=[name])
    cell, meta = _load(name)
    task = tasks.memorization_all(2, 5, 20)
    base = _recall(cell, task)
    rows = [r for r in res["rows"] if r["method"].startswith("svd")]
    assert {r["method"] for r in rows} == {"svd", "svd:Wr", "svd:Wz", "svd:Wn"}
    for r in rows:
        only = r["method"].partition(":")[2] or None
        assert r["perf"] == _recall(_svd_truncated(cell, r["rank"], only), task), r
        assert r["relative"] == pytest.approx(r["perf"] / base, rel=1e-15)
    head = exp.headline(res)["memorization_kept_rank_99_svd"]["gru"]
    grid = sorted({r["rank"] for r in rows})
    full = TABLE[("gru", "all", 20)]
    assert head["all"]["D20"] == min(g for g in grid if g >= full)
    assert len(res["mechanism"]) == 1 and res["mechanism"][0]["checkpoint"] == name


# --------------------------------------------------------------------- gate values
def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def _gates_by_hand(cell, X) -> dict:
    """The gates of every step (T, B, n), from torch's equations written out here:
    the GRU's r, z; the LSTM's i, f, g, o."""
    T, B, _ = X.shape
    n = cell.n
    h, c = np.zeros((B, n)), np.zeros((B, n))
    out = []
    for t in range(T):
        x = X[t]
        if cell.kind == "gru":
            r = _sig(h @ cell.Wr.T + x @ cell.Ur.T + cell.br)
            z = _sig(h @ cell.Wz.T + x @ cell.Uz.T + cell.bz)
            g = np.tanh(x @ cell.Un.T + cell.bn + r * (h @ cell.Wn.T + cell.bhn))
            h = (1 - z) * g + z * h
            out.append({"r": r, "z": z})
        else:
            i = _sig(h @ cell.Wi.T + x @ cell.Ui.T + cell.bi)
            f = _sig(h @ cell.Wf.T + x @ cell.Uf.T + cell.bf)
            g = np.tanh(h @ cell.Wg.T + x @ cell.Ug.T + cell.bg)
            o = _sig(h @ cell.Wo.T + x @ cell.Uo.T + cell.bo)
            c = f * c + i * g
            h = o * np.tanh(c)
            out.append({"i": i, "f": f, "g": g, "o": o})
    return {k: np.stack([d[k] for d in out]) for k in out[0]}


def _keep_gates_by_hand(cell, X):
    """The keep gate of every step: the GRU's z, the LSTM's f."""
    gates = _gates_by_hand(cell, X)
    return gates["z"] if cell.kind == "gru" else gates["f"]


@pytest.mark.parametrize("name", [g for g in GATED if g.endswith("_D10")])
def test_mechanism_gate_values_by_hand(name):
    from validation.exp_rank_performance import KEEP_THRESHOLD, mechanism
    cell, meta = _load(name)
    L, D = 5, int(meta["D"])
    task = tasks.memorization_all(2, 5, D)
    m = mechanism(cell, meta, rank=16)
    Z = _keep_gates_by_hand(cell, task.X)[L:L + D]           # the delay steps
    assert m["keep_gate_delay"] == pytest.approx(Z.mean(), rel=1e-12)
    keep = (1 - Z).mean(axis=(0, 1)) < KEEP_THRESHOLD
    assert m["keep_units"] == int(keep.sum())
    assert m["keep_gate_keep_units"] == pytest.approx(Z[..., keep].mean(), rel=1e-12)
    assert 0 < m["forcing_ratio_delay"] and 0 < m["forcing_ratio_write"]


def readme_mechanism() -> dict:
    """{(cell, D): [the nine columns as strings]} from validation/README.md's mechanism table."""
    text = open(README).read()
    m = re.search(r"\| net \(r = 16\) \|.*\|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", text)
    assert m, "validation/README.md: the mechanism table is gone or reworded"
    out = {}
    for line in m.group(1).strip().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        mm = re.fullmatch(r"(tanh RNN|MGRU|GRU|LSTM) D = (\d+)", cells[0])
        assert mm, cells[0]
        out[(CELL_OF_ROW[mm.group(1)], int(mm.group(2)))] = cells[1:]
    return out


MECH_COLUMNS = ("keep_gate_delay", "keep_units", "keep_gate_keep_units", "info_share_keep_units",
                "forcing_ratio_delay", "forcing_ratio_delay_keep_units", "fo_growth_delay",
                "exact_recall_max")


@pytest.mark.parametrize("cell_kind, D", sorted(readme_mechanism()), ids=lambda v: str(v))
def test_mechanism_table_matches_readme(cell_kind, D):
    """Every entry of the README's mechanism table is exp_rank_performance.mechanism at r = 16,
    rounded to the digits the README shows ('—': None, a cell without a gate)."""
    from validation.exp_rank_performance import mechanism
    cell, meta = _load(f"{cell_kind}_memorization_D{D}")
    m = mechanism(cell, meta, rank=16)
    for col, shown in zip(MECH_COLUMNS, readme_mechanism()[(cell_kind, D)]):
        if shown == "—":
            assert m[col] is None, (col, m[col])
            continue
        digits = len(shown.split(".")[1]) if "." in shown else 0
        if digits == 0:
            assert m[col] == int(shown), (col, m[col], shown)
        else:           # shown to its significant digits: within half a unit of the last one
            assert abs(m[col] - float(shown)) <= 0.5 * 10 ** -digits + 1e-12, (col, m[col], shown)


def test_lstm_open_write_path_by_hand():
    """README: on the LSTM's keep units the input gate i and |g| during the delay, and the
    saturation factors i(1 - i) and 1 - g^2, from the LSTM equations written out here."""
    text = open(README).read()
    m = re.search(r"the input gate is i ≈ ([\d.]+) and \|g\| ≈ ([\d.]+)", text)
    m2 = re.search(r"through i\(1 − i\) ≈ ([\d.]+)\s+and 1 − g² ≈ ([\d.]+)", text)
    assert m and m2, "validation/README.md: the LSTM write-path sentence is gone or reworded"
    cell, meta = _load("lstm_memorization_D10")
    gates = _gates_by_hand(cell, tasks.memorization_all(2, 5, 10).X)
    F, I, G = (gates[k][5:15] for k in "fig")                        # the 10 delay steps
    keep = (1 - F).mean(axis=(0, 1)) < 0.1
    got = (I[..., keep].mean(), np.abs(G[..., keep]).mean(),
           (I * (1 - I))[..., keep].mean(), (1 - G * G)[..., keep].mean())
    for v, shown in zip(got, m.groups() + m2.groups()):
        assert abs(v - float(shown)) <= 0.005 + 1e-12, (v, shown)
