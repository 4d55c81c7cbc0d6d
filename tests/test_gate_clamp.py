"""validation.exp_gate_clamp: the clamped MGRU step against the library's step, the clamp's
placement, one net recomputed from its checkpoint against the shipped data file, and the README's
sentence against that file."""
import json
import os
import re

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from validation import exp_gate_clamp as gc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "validation", "data", "gate_clamp.json")


def _data():
    with open(DATA) as f:
        return json.load(f)


def test_no_clamp_is_the_library_step():
    cell = random_cell("mgru", 7, 3, spectral_norm=1.3, seed=4)
    X = np.random.default_rng(0).standard_normal((9, 5, 3))
    H, F = gc.clamped_run(cell, X)
    np.testing.assert_allclose(H, cell.run(X), rtol=0, atol=1e-14)
    h = np.zeros((5, 7))
    for t in range(9):                       # the gates are the cell's own overwrite gate
        _, aux, _ = cell.nominal(h, X[t])
        np.testing.assert_allclose(F[t], cell.overwrite_gate(aux), rtol=0, atol=1e-15)
        h = H[t]


def test_clamp_only_where_asked():
    cell = random_cell("mgru", 6, 2, spectral_norm=1.0, seed=1)
    X = np.random.default_rng(2).standard_normal((8, 3, 2))
    H, F = gc.clamped_run(cell, X, units=[1, 4], value=0.25, steps=[3, 4, 5])
    H0 = cell.run(X)
    np.testing.assert_array_equal(H[:3], gc.clamped_run(cell, X[:3])[0])    # before: unchanged
    np.testing.assert_allclose(H[:3], H0[:3], atol=1e-14)
    assert np.all(F[3:6][..., [1, 4]] == 0.25)
    for t in range(8):                       # every other gate is the unclamped one at that state
        h = np.zeros((3, 6)) if t == 0 else H[t - 1]
        _, aux, _ = cell.nominal(h, X[t])
        free = np.ones(6, bool)
        if t in (3, 4, 5):
            free[[1, 4]] = False
        np.testing.assert_allclose(F[t][:, free], aux["f"][:, free], atol=1e-15)
    # value 0 holds the state exactly on the clamped units (h_t = h_{t-1})
    H, _ = gc.clamped_run(cell, X, units=[2], value=0.0, steps=range(2, 7))
    np.testing.assert_array_equal(H[2:7, :, 2], np.repeat(H[1:2, :, 2], 5, axis=0))


@pytest.mark.parametrize("kw, msg", [
    (dict(value=1.5), r"value: expected a gate value in \[0, 1\], found 1.5"),
    (dict(units=[6]), r"units: expected indices in \[0, 6\), found \[6\]"),
])
def test_bad_input(kw, msg):
    cell = random_cell("mgru", 6, 2, seed=0)
    with pytest.raises(ValueError, match=msg):
        gc.clamped_run(cell, np.zeros((2, 1, 2)), **kw)


def test_refuses_other_cells():
    with pytest.raises(ValueError, match="cell: expected an MGRU .* found 'elman'"):
        gc.clamped_run(random_cell("elman", 4, 2, seed=0), np.zeros((2, 1, 2)))


def test_one_net_recomputed_from_its_checkpoint():
    """The D = 20 checkpoint: closed units by their definition, open/control recall and both kept
    ranks (every rank) recomputed, equal to the shipped data file."""
    got = gc._net("mgru_memorization_D20", quick=False, seed=0)
    ref = next(x for x in _data()["nets"] if x["checkpoint"] == "mgru_memorization_D20")
    for k in ("closed_units", "n_closed", "open_recall", "control_units", "control_recall",
              "kept_plain", "kept_closed_clamped", "recall_plain", "recall_closed_clamped"):
        assert got[k] == ref[k], k
    assert got["phi"] == pytest.approx(ref["phi"], abs=1e-10)     # the file keeps 10 digits
    # the closed units are closed: their mean delay gate is below the threshold, the others' not
    cell, meta = rp.load_with_metadata(os.path.join(ROOT, "validation", "checkpoints",
                                                    "mgru_memorization_D20.npz"))
    task = rp.tasks.memorization_all(2, 5, 20)
    _, F = gc.clamped_run(cell, task.X)
    m = F[5:25].mean(axis=(0, 1))
    assert set(np.flatnonzero(m < gc.CLOSED)) == set(ref["closed_units"])


def test_readme_sentence_matches_data():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = " ".join(f.read().split())
    m = re.search(r"Opening the gates of the closed-gate units \((\d+)–(\d+) per net\) .*? drops "
                  r"the full net's recall to ([\d.]+)–([\d.]+) on all (\d+) MGRUs(?: \([^)]*\))?, against "
                  r"([\d.]+)–([\d.]+) when as many other units get the same gate", text)
    assert m, "README: the gate-clamp sentence is missing or reworded"
    nets = _data()["nets"]
    assert (int(m.group(1)), int(m.group(2))) == (min(x["n_closed"] for x in nets),
                                                  max(x["n_closed"] for x in nets))
    assert float(m.group(3)) == round(min(x["open_recall"] for x in nets), 2)
    assert float(m.group(4)) == round(max(x["open_recall"] for x in nets), 2)
    assert int(m.group(5)) == len(nets)
    assert float(m.group(6)) == round(min(x["control_recall"] for x in nets), 2)
    assert float(m.group(7)) == round(max(x["control_recall"] for x in nets), 2)
    pairs = re.search(r"kept rank \(plain → clamped\): ([^.]*?)\.", text).group(1)
    shown = [tuple(None if v == "—" else int(v) for v in p.split(" → "))
             for p in pairs.split(", ")]
    assert shown == [(x["kept_plain"], x["kept_closed_clamped"]) for x in nets]
