"""Seeds of the k-back, k-back-mix and AR-signal nets (issue 14, item 2).

* The README's "k-back and AR nets over seeds" table and the over-seed sentences about these nets
  against the shipped data file ``validation/data/task_seeds.json`` (written by ``python -m
  validation.exp_task_seeds --out validation/data``); the file's means/sds against its own per-seed
  rows (numpy, independent of ``summarize``); its per-seed kept ranks against those the sweep
  stored in ``validation/checkpoints/seeds/sweep.json`` when it trained the nets.
* One shipped seed net's statistics recomputed from its checkpoint file by hand (numpy SVD
  truncation, argmax per-step accuracy, the kept-rank scan, frozen/fresh noise ratio).
"""
import json
import os
import re

import numpy as np
import pytest

import rnnperturb as rp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "validation", "data", "task_seeds.json")   # + .csv (rows)
CKPT = os.path.join(ROOT, "validation", "checkpoints")
SEED_DIR = os.path.join(CKPT, "seeds")
README = os.path.join(ROOT, "README.md")
LABEL = {"tanh RNN": "elman", "MGRU": "mgru"}
ROWS = {"2-back": ("kback", "own", "C"),
        "2-back-mix, repeat 0": ("kback_mix", "repeat=0.0", "C_p0.0"),
        "2-back-mix, repeat 0.9": ("kback_mix", "repeat=0.9", "C_p0.9"),
        "AR(1) denoising (R²)": ("ar_signal", "own", "C")}


def _cell(v):
    """A CSV field as written by validation.experiments.write_rows (None as '')."""
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _data():
    """task_seeds.json with ``rows`` (one per net) read from task_seeds.csv."""
    import csv
    with open(DATA) as f:
        d = json.load(f)
    with open(DATA[:-len(".json")] + ".csv", newline="") as f:
        d["rows"] = [{k: _cell(v) for k, v in r.items()} for r in csv.DictReader(f)]
    return d


def _readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


def _rows(d, cell, task):
    return sorted((r for r in d["rows"] if (r["cell"], r["task"]) == (cell, task)),
                  key=lambda r: r["seed"])


def _vals(d, cell, task, col):
    return np.array([np.nan if r.get(col) is None else r[col] for r in _rows(d, cell, task)],
                    float)


def _check_spread(text, vals, dec):
    """'mean ± sd (min–max)' against the per-seed values (finite ones), to the printed rounding."""
    m = re.fullmatch(r"([\d.]+) ± ([\d.]+) \(([\d.]+)–([\d.]+)\)", text.strip())
    assert m, f"expected 'mean ± sd (min–max)', found {text!r}"
    mean, sd, lo, hi = (float(x) for x in m.groups())
    v = vals[np.isfinite(vals)]
    tol = 0.5 * 10.0 ** -dec + 1e-9
    assert abs(v.mean() - mean) <= tol and abs(v.std(ddof=1) - sd) <= tol, (text, v)
    tol_lh = 0.5 * 10.0 ** -(dec if dec >= 2 else 0) + 1e-9
    assert abs(v.min() - lo) <= tol_lh and abs(v.max() - hi) <= tol_lh, (text, v)


def _table(text):
    start = text.index("| cell | task (evaluation) | seeds (failed) |")
    out = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        out[(LABEL[c[0]], c[1])] = c[2:]
    return out


def test_readme_table_matches_data_file():
    """Every row of the README table: seed and failure counts exactly, kept ranks (one decimal)
    and C (two decimals) as mean ± sd (min–max) of the data file's per-seed values."""
    d = _data()
    tab = _table(_readme())
    assert len(tab) == 8, sorted(tab)
    for (cell, label), (count, svd, data, C) in tab.items():
        task, ev, ccol = ROWS[label]
        g = d["groups"][f"{cell}|{task}"]
        rows = _rows(d, cell, task)
        assert [r["seed"] for r in rows] == g["seeds"]
        assert count == f"{len(rows)} ({len(g['failed_seeds'])})"
        assert len(rows) >= 5 and 1 in g["seeds"]
        _check_spread(svd, _vals(d, cell, task, f"kept_{ev}_svd"), 1)
        _check_spread(data, _vals(d, cell, task, f"kept_{ev}_data"), 1)
        _check_spread(C, _vals(d, cell, task, ccol), 2)


def test_readme_sentences_match_data_file():
    """The over-seed sentences of claim 4 (C on k-back, the knob's crossing, the
    memorization/k-back rank ratio) against the data file."""
    d = _data()
    text = " ".join(_readme().split())
    m = re.search(r"≈ 1 on the low-coherence k-back task: (\S+ ± \S+ \(\S+\)) for the tanh RNN "
                  r"and (\S+ ± \S+ \(\S+\)) for the MGRU over (\d+) seeds each", text)
    assert m, "claim-4 sentence on C over seeds not found"
    _check_spread(m.group(1), _vals(d, "elman", "kback", "C"), 2)
    _check_spread(m.group(2), _vals(d, "mgru", "kback", "C"), 2)
    assert int(m.group(3)) == len(_rows(d, "elman", "kback")) == len(_rows(d, "mgru", "kback"))
    m = re.search(r"the tanh RNN's C crosses 2 at p = (\S+ ± \S+ \(\S+\)) over (\d+) seeds, "
                  r"against (\S+ ± \S+ \(\S+\)) from the scalar law", text)
    assert m, "knob sentence not found"
    _check_spread(m.group(1), _vals(d, "elman", "kback_mix", "transition_C2"), 2)
    assert int(m.group(2)) == np.isfinite(_vals(d, "elman", "kback_mix", "transition_C2")).sum()
    _check_spread(m.group(3), _vals(d, "elman", "kback_mix", "transition_C2_scalar_law"), 2)
    m = re.search(r"the MGRU's C stays below 2 up to p = 0\.9 on (\d+) of (\d+) seeds "
                  r"\(C at p = 0\.9: (\S+ ± \S+ \(\S+\))\)", text)
    assert m, "MGRU knob sentence not found"
    Cmax = np.max([_vals(d, "mgru", "kback_mix", f"C_p{p:.1f}") for p in np.arange(10) / 10],
                  axis=0)                                  # max over p = 0..0.9, per seed
    assert (int(m.group(1)), int(m.group(2))) == (int((Cmax < 2).sum()), len(Cmax))
    _check_spread(m.group(3), _vals(d, "mgru", "kback_mix", "C_p0.9"), 2)
    # memorization (D = 20, validation/data/seeds.json) over k-back kept rank, means over seeds
    with open(os.path.join(ROOT, "validation", "data", "seeds.json")) as f:
        mem = json.load(f)["groups"]
    m = re.search(r"at D = 20 is ([\d.]+) / ([\d.]+) ≈ ([\d.]+)× larger on memorization than on "
                  r"k-back for the tanh RNN and ([\d.]+) / ([\d.]+) ≈ ([\d.]+)× for the MGRU", text)
    assert m, "memorization/k-back ratio sentence not found"
    for i, cell in ((1, "elman"), (4, "mgru")):
        a = mem[f"{cell}|default|D20|n64"]["svd_kept_99"]["mean"]
        b = _vals(d, cell, "kback", "kept_own_svd").mean()
        assert abs(float(m.group(i)) - a) <= 0.05 + 1e-9 and abs(float(m.group(i + 1)) - b) <= 0.05
        assert abs(float(m.group(i + 2)) - a / b) <= 0.05 + 1e-9
    m = re.search(r"k-back's kept rank \(plain SVD\) is (\d+) on (\d+) of (\d+) nets of both cells"
                  r"(?: \(([\d, ]+) on the others?\))?", text)
    assert m, "k-back kept-rank sentence not found"
    kk = np.concatenate([_vals(d, c, "kback", "kept_own_svd") for c in ("elman", "mgru")])
    k = float(m.group(1))
    assert (int(m.group(2)), int(m.group(3))) == (int((kk == k).sum()), kk.size)
    rest = [] if m.group(4) is None else [float(x) for x in m.group(4).split(",")]
    assert sorted(rest) == sorted(kk[kk != k].tolist())


def test_data_file_groups_and_sweep_agree():
    """The data file's group summaries are those of its rows; every seed >= 2 row is a shipped
    checkpoint whose kept ranks and C equal what the sweep computed on the trained weights
    (sweep.json), and every failed configuration is listed there unshipped."""
    d = _data()
    with open(os.path.join(SEED_DIR, "sweep.json")) as f:
        sweep = {(r["cell"], r["task"], r["seed"]): r for r in json.load(f)["results"]
                 if r.get("task", "memorization") != "memorization" and r["hidden"] == 64}
    for key, g in d["groups"].items():
        cell, task = key.split("|")
        for col, s in g.items():
            if not isinstance(s, dict) or s.get("n", 0) < 2:
                continue
            v = _vals(d, cell, task, col)
            v = v[np.isfinite(v)]
            assert s["n"] == v.size
            assert s["mean"] == pytest.approx(v.mean(), rel=1e-8, abs=1e-9), (key, col)
            assert s["sd"] == pytest.approx(v.std(ddof=1), rel=1e-8, abs=1e-9), (key, col)
            assert (s["min"], s["max"]) == pytest.approx((v.min(), v.max()), rel=1e-8)
        for seed in g["failed_seeds"]:
            assert sweep[(cell, task, seed)]["shipped"] is None
            assert not sweep[(cell, task, seed)]["solved"]
    for r in d["rows"]:
        if r["seed"] == 1:
            assert r["checkpoint"] == f"{r['cell']}_{r['task']}"
            continue
        s = sweep[(r["cell"], r["task"], r["seed"])]
        assert r["checkpoint"] == "seeds/" + s["shipped"] and s["solved"]
        for k, v in s["stats"]["kept"].items():
            ev, method = k.split(":")
            assert r[f"kept_{ev}_{method}"] == v, (r["checkpoint"], k)
        if "C" in s["stats"]:
            assert r["C"] == pytest.approx(s["stats"]["C"], rel=1e-8)
        else:
            kn = s["stats"]["knob"]
            for p, c in zip(kn["repeat"], kn["C"]):
                assert r[f"C_p{p:.1f}"] == pytest.approx(c, rel=1e-8)
            if kn["transition_C2"] is None:
                assert r["transition_C2"] is None
            else:
                assert r["transition_C2"] == pytest.approx(kn["transition_C2"], rel=1e-8)


def _kept_by_hand(cell, X, score):
    """Smallest r such that numpy-SVD truncation of every recurrent matrix to any rank >= r keeps
    score >= 0.99 x full (None if full fails)."""
    full = score(cell.readout(cell.run(X)))
    rel = []
    for r in range(cell.n + 1):
        mats = {}
        for k, W in cell.recurrent.items():
            U, s, Vt = np.linalg.svd(W)
            mats[k] = (U[:, :r] * s[:r]) @ Vt[:r]
        small = cell.replace(**mats)
        rel.append(score(small.readout(small.run(X))) / full)
    ok = np.array(rel) >= 0.99
    kept = cell.n
    while kept > 0 and ok[kept - 1]:
        kept -= 1
    return kept, np.array(rel)


@pytest.mark.parametrize("name", ["mgru_kback_s2", "elman_ar_signal_s2"])
def test_seed_net_statistics_from_checkpoint(name):
    """A shipped seed net (seed 2, k-back MGRU and AR tanh RNN) from its .npz: its own seed in the
    metadata; the plain-SVD kept rank by hand (per-step accuracy by argmax / 1 - NMSE against the
    target, 256 sequences of the evaluation stream) and C (frozen over fresh first-order noise
    response at T/2, 3T/4, T on 8 sequences) equal the data file's row."""
    from validation.experiments import eval_task
    path = os.path.join(SEED_DIR, name + ".npz")
    if not os.path.exists(path):
        pytest.skip(f"{name} not shipped")
    cell, meta = rp.load_with_metadata(path)
    row = [r for r in _data()["rows"] if r["checkpoint"] == "seeds/" + name]
    assert len(row) == 1
    row = row[0]
    assert (int(meta["seed"]), meta["task"], cell.kind) == (2, row["task"], row["cell"])
    task = eval_task(meta, seed=0, batch=256)
    if meta["task"] == "ar_signal":
        def score(Y):
            e = (Y - task.targets) ** 2
            v = (task.targets - task.targets[task.mask].mean()) ** 2
            return 1.0 - e[task.mask].sum() / v[task.mask].sum()
    else:
        def score(Y):
            return float((Y.argmax(-1) == task.targets)[task.mask].mean())
    kept, rel = _kept_by_hand(cell, task.X, score)
    assert kept == row["kept_own_svd"]
    assert kept == 0 or rel[kept - 1] < 0.99
    small = eval_task(meta, seed=0, batch=8)
    times = sorted({small.T // 2, 3 * small.T // 4, small.T})
    fz = rp.noise_response(cell, small.X, std=1.0, times=times)
    fr = rp.noise_response(cell, small.X, std=1.0, frozen=False)[np.asarray(times) - 1]
    assert float(np.mean(fz / fr)) == pytest.approx(row["C"], rel=1e-8)
