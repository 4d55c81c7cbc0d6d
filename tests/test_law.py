"""Tests of validation/exp_law.py: the law's predictor against hand computations, the fit
reproduced from the data file, and the first-order-validity bisection against direct checks."""
import json
import os

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb import tasks
from validation import exp_law
from validation.experiments import load


def test_predict_rank_hand():
    ranks = [0, 4, 8, 12, 16]
    S = [9.0, 0.5, 3.0, 0.8, 0.1]          # dips at 4, but fails again at 8
    assert exp_law.predict_rank(ranks, S, 1.0) == 12
    assert exp_law.predict_rank(ranks, S, 5.0) == 4
    assert exp_law.predict_rank(ranks, S, 0.05) is None


def test_fit_constant_hand():
    nets = [{"n": 16, "ranks": [0, 4, 8, 12, 16], "S": [9.0, 4.0, 2.0, 0.5, 0.1], "rank_kept": 8},
            {"n": 16, "ranks": [0, 4, 8, 12, 16], "S": [9.0, 6.0, 1.5, 0.5, 0.1], "rank_kept": 8}]
    c, mae = exp_law.fit_constant(nets)
    # any c in [2, 4) gives 8 on both: the candidate closest to 1 in log is c = 2
    assert mae == 0.0 and c == 2.0


def test_sensitivity_hand():
    cell, meta = load("mgru_memorization_D10")
    task = tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"]))
    small = rp.truncate_svd(cell, rank=20)
    Z = cell.readout(cell.run(task.X))
    dZ = rp.first_order(cell, small, task.X) @ cell.V.T
    best = 0.0
    for t, b in zip(*np.nonzero(task.recall)):          # loop form of the definition
        y = task.targets[t, b]
        m = min(Z[t, b, y] - Z[t, b, j] for j in range(Z.shape[-1]) if j != y)
        d = max(abs(dZ[t, b, y] - dZ[t, b, j]) for j in range(Z.shape[-1]) if j != y)
        best = max(best, d / m)
    assert exp_law.sensitivity(cell, small, task) == pytest.approx(best, rel=1e-12)


def test_validity_bisection_direct():
    cell, meta = load("mgru_memorization_D10")
    X = tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"])).X
    small = rp.truncate_svd(cell, rank=16)
    v = exp_law.validity_ratio(cell, small, X, iters=12)
    assert v["censored"] is None
    a = v["a"]
    assert exp_law.relative_first_order_error(cell, small, X, a * 0.999) <= 0.1
    assert exp_law.relative_first_order_error(cell, small, X, a * 1.2) > 0.1
    assert v["ratio"] == pytest.approx(a * v["actual_ratio"])


def test_quick_mode_runs():
    res = exp_law.run(quick=True)
    assert set(res["nets"]) == {"mgru_memorization_D10", "mgru_memorization_D20"}
    assert np.isfinite(res["fit"]["c"]) and res["fit"]["c"] > 0


def test_fit_reproduces_from_data_file():
    # the shipped copy of `python -m validation.exp_law --out validation/results` (README numbers)
    path = os.path.join(os.path.dirname(__file__), "..", "validation", "data", "law.json")
    with open(path) as f:
        d = json.load(f)
    train = [x for x in d["nets"].values() if x["split"] == "train"]
    c, mae = exp_law.fit_constant(train)
    assert c == pytest.approx(d["fit"]["c"], rel=1e-9)
    assert mae == pytest.approx(d["fit"]["train_mae"], abs=1e-9)
    for k, x in d["nets"].items():
        assert exp_law.predict_rank(x["ranks"], x["S"], c) == x["predicted_S"]
    held = [x for x in d["nets"].values() if x["split"] != "train"]
    mae = np.mean([abs((x["predicted_S"] or x["n"] + 1) - (x["rank_kept"] or x["n"] + 1))
                   for x in held])
    assert mae == pytest.approx(d["fit"]["held_out"]["all_held_out"]["mae_law"], abs=1e-9)


def test_fit_recovers_a_known_law_on_synthetic_nets():
    """Synthetic nets whose kept rank is, by construction, the smallest r from which S(r) <= c_true
    (S decaying with random rate and bumps): the constant fitted on 40 nets predicts 20 held-out
    nets' ranks with a mean absolute error well below the mean-rank baseline, and near zero."""
    rng = np.random.default_rng(5)
    c_true, n = 0.7, 64

    def net():
        ranks = list(range(n + 1))
        S = 30.0 * np.exp(-rng.uniform(0.05, 0.3) * np.arange(n + 1)) * rng.uniform(0.8, 1.25, n + 1)
        S[-1] = 0.0
        return {"n": n, "ranks": ranks, "S": list(S),
                "rank_kept": exp_law.predict_rank(ranks, S, c_true)}

    train, test = [net() for _ in range(40)], [net() for _ in range(20)]
    c, mae = exp_law.fit_constant(train)
    assert mae == 0.0
    assert abs(np.log(c / c_true)) < 0.2
    err = np.mean([abs(exp_law.predict_rank(x["ranks"], x["S"], c) - x["rank_kept"]) for x in test])
    base = np.mean([abs(np.mean([x["rank_kept"] for x in train]) - x["rank_kept"]) for x in test])
    assert err <= 0.5 and base > 2.0
    # a wrong constant is detectably wrong on the held-out nets
    bad = np.mean([abs(exp_law.predict_rank(x["ranks"], x["S"], 10 * c_true) - x["rank_kept"])
                   for x in test])
    assert bad > 3 * max(err, 0.1)


def test_default_split_holds_out_unseen_cells_and_skips_other_tasks():
    """The law is fitted on the tanh RNN and the MGRU only (n = 64, seeds 1-3: 18 nets); every
    GRU/LSTM memorization net is held out as 'test_cells'; k-back/AR seeds are not in the split."""
    split = exp_law.default_split()
    assert all("memorization" in k for k in split)
    train = sorted(k for k, v in split.items() if v == "train")
    assert len(train) == 18
    assert {k.split("/")[-1].split("_")[0] for k in train} == set(exp_law.TRAIN_CELLS)
    for k, v in split.items():
        cell = k.split("/")[-1].split("_")[0]
        assert (v == "test_cells") == (cell not in exp_law.TRAIN_CELLS), (k, v)
    assert "gru_memorization_D20" in split and "lstm_memorization_D50" in split


def test_readme_held_out_bullets_match_data_file():
    """The README's held-out bullets (other sizes, other cells) against the shipped law.json."""
    import re
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        text = " ".join(f.read().split())
    with open(os.path.join(os.path.dirname(__file__), "..", "validation", "data", "law.json")) as f:
        d = json.load(f)
    held = d["fit"]["held_out"]
    m = re.search(r"n = 32 and 128 \((\d+) nets\): the law's error is ([\d.]+) ranks, against "
                  r"([\d.]+) for the cell mean scaled by n/64 and ([\d.]+) for the spectrum", text)
    assert m, "README: the sizes bullet is missing or reworded"
    g = held["test_sizes"]
    assert int(m.group(1)) == g["nets"]
    for i, k in ((2, "mae_law"), (3, "mae_baseline_cell"), (4, "mae_tail")):
        assert abs(float(m.group(i)) - g[k]) <= 0.05 + 1e-9, k
    m = re.search(r"the GRU and the LSTM \((\d+) nets, .*?\): the law's error is ([\d.]+) ranks "
                  r"\(GRU ([\d.]+), LSTM ([\d.]+)\), against ([\d.]+) for the training mean and "
                  r"([\d.]+) for the spectrum alone", text)
    assert m, "README: the cells bullet is missing or reworded"
    g = held["test_cells"]
    assert int(m.group(1)) == g["nets"]
    for i, k in ((2, "mae_law"), (5, "mae_baseline_mean"), (6, "mae_tail")):
        assert abs(float(m.group(i)) - g[k]) <= 0.05 + 1e-9, k
    nets = [x for x in d["nets"].values() if x["split"] == "test_cells"]
    for i, cell in ((3, "gru"), (4, "lstm")):
        err = [abs((x["predicted_S"] or x["n"] + 1) - (x["rank_kept"] or x["n"] + 1))
               for x in nets if x["cell"] == cell]
        assert abs(float(m.group(i)) - np.mean(err)) <= 0.05 + 1e-9, cell
