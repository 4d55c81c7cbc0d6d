"""`python -m paper_figs --quick`: every figure, its PDF and caption; determinism;
and cheap defining properties of the validation experiments."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from paper_figs.__main__ import FIGURES  # noqa: E402


def _run(out):
    proc = subprocess.run([sys.executable, "-m", "paper_figs", "--quick", "--quiet", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    a = tmp_path_factory.mktemp("figs_a")
    return _run(a), a


def test_every_figure_has_png_pdf_caption(quick_run):
    _, out = quick_run
    for name in FIGURES:
        for ext in (".png", ".pdf", ".txt"):
            p = out / (name + ext)
            assert p.is_file() and p.stat().st_size > 0, f"missing {p}"
        with open(out / (name + ".png"), "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        with open(out / (name + ".pdf"), "rb") as fh:
            assert fh.read(5) == b"%PDF-"
        assert len((out / (name + ".txt")).read_text().split()) >= 15   # a real caption


def test_summary_table_and_json(quick_run):
    proc, out = quick_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "quick"
    assert set(summary["all"]) == set(FIGURES)
    assert "fig_rank_performance" in summary["headline"]
    assert "Headline numbers (quick mode" in proc.stdout
    assert "Summary (quick mode" in proc.stdout
    # tidy data behind every figure
    for name in ("spectra", "rank_performance", "deviation_time", "recall_prediction",
                 "coherence", "general_perturbations", "finetune"):
        assert (out / "data" / f"{name}.csv").is_file()
        assert (out / "data" / f"{name}.json").is_file()


def _csv(path):
    import csv
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_experiments_rerun_in_process_give_the_data_of_the_command(quick_run, tmp_path):
    """Determinism, cheaply: rerun two experiments in this process and compare with
    the command's CSVs. The command runs BLAS on one thread and this process may
    not; float32 training (fine tuning) then sums in another order, so floats are
    compared to 1e-6 relative, everything else exactly."""
    _, a = quick_run
    from validation import exp_deviation_time, exp_finetune
    for mod in (exp_deviation_time, exp_finetune):
        mod.write(mod.run(quick=True, seed=0), str(tmp_path))
        mine, theirs = _csv(tmp_path / (mod.NAME + ".csv")), _csv(a / "data" / (mod.NAME + ".csv"))
        assert len(mine) == len(theirs) > 0
        for r1, r2 in zip(mine, theirs):
            assert r1.keys() == r2.keys()
            for k in r1:
                try:
                    x1, x2 = float(r1[k]), float(r2[k])
                except ValueError:
                    assert r1[k] == r2[k]
                    continue
                assert x1 == pytest.approx(x2, rel=1e-6, abs=1e-12, nan_ok=True), (mod.NAME, k)


@pytest.mark.slow
def test_same_command_same_numbers(quick_run, tmp_path):
    """Two runs of the command give the same summary and data."""
    _, a = quick_run
    _run(tmp_path)
    b = tmp_path
    ja = json.loads((a / "summary.json").read_text())
    jb = json.loads((b / "summary.json").read_text())
    assert ja == jb
    for name in ("rank_performance", "deviation_time", "recall_prediction", "finetune"):
        assert (a / "data" / f"{name}.csv").read_text() == (b / "data" / f"{name}.csv").read_text()


# ---------------------------------------------------------------- cheap experiment properties
def test_spectra_match_svd_and_energy_rank():
    from validation import exp_spectra
    from validation.experiments import load
    res = exp_spectra.run()
    m = res["matrices"][0]
    cell, _ = load(m["checkpoint"])
    W = cell.recurrent[m["matrix"]]
    s = np.linalg.svd(W, compute_uv=False)
    assert m["spectral_norm"] == pytest.approx(np.linalg.norm(W, 2), rel=1e-12)
    r = m["energy_rank_99"]       # Eckart–Young: the residual energy is the tail sum
    assert np.sum(s[r:] ** 2) <= 0.01 * np.sum(s ** 2) + 1e-12
    assert np.sum(s[r - 1:] ** 2) > 0.01 * np.sum(s ** 2)


def test_kept_rank_definition():
    from validation.exp_rank_performance import kept_rank
    assert kept_rank([0, 1, 2, 3, 4], [0.5, 1.0, 0.98, 0.995, 1.0]) == 3   # not 1: 2 fails
    assert kept_rank([4, 0, 2], [1.0, 0.2, 0.99]) == 2
    assert kept_rank([0, 1], [1.0, 0.9]) is None
    assert kept_rank([0, 1], [1.0, 1.0]) == 0


def test_rank_performance_full_rank_is_exact_and_data_aware_matches_library():
    import rnnperturb as rp
    from validation.exp_rank_performance import _data_aware
    from validation.experiments import eval_task, fit_inputs, load, performance
    cell, meta = load("mgru_memorization_D20")
    X = fit_inputs(meta, seed=0)
    mom = rp.forcing_moments(cell, X)
    for r in (5, 30):
        a = _data_aware(cell, r, mom)
        b = rp.truncate_svd(cell, rank=r, data=X)
        for k in cell.recurrent_names:
            np.testing.assert_array_equal(a.recurrent[k], b.recurrent[k])
    task = eval_task(meta, seed=0)
    full = performance(cell, task)
    same = performance(rp.truncate_svd(cell, rank=cell.n), task)
    assert same == full and full["perf"] == 1.0
    # 'perf' of memorization is the recall-step accuracy, checked by hand
    small = rp.truncate_svd(cell, rank=3)
    Y = small.readout(small.run(task.X))
    hand = np.mean([np.argmax(Y[t, b]) == task.targets[t, b]
                    for t in range(task.T) for b in range(task.B) if task.recall[t, b]])
    assert performance(small, task)["perf"] == pytest.approx(hand, abs=0)


def test_eval_and_fit_inputs_are_separate_and_deterministic():
    from validation.experiments import eval_task, fit_inputs, load
    _, meta = load("mgru_kback")
    a = eval_task(meta, seed=0, batch=16).X
    b = eval_task(meta, seed=0, batch=16).X
    f = fit_inputs(meta, seed=0, batch=16)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, f)


def test_finetune_stays_at_rank_and_step0_is_truncation():
    import rnnperturb as rp
    from validation import bptt
    from validation.exp_finetune import _project, finetune
    from validation.experiments import eval_task, load, performance
    cell, meta = load("mgru_memorization_D20")
    out = finetune(cell, meta, rank=6, steps=2, record=(0, 2), seed=0)
    assert [o["step"] for o in out] == [0, 2]
    assert out[0]["perf"] == performance(rp.truncate_svd(cell, rank=6), eval_task(meta, seed=0))["perf"]
    p = bptt.params_from_cell(cell)
    _project(cell, p, 6)
    for k in cell.recurrent_names:
        s = np.linalg.svd(p[k], compute_uv=False)
        assert s[6] < 1e-10 * s[0]


def test_noise_model_is_linear_in_the_variances_as_general_perturbations_assumes():
    """exp_general_perturbations builds every noise level and quantization step from
    unit-variance responses per matrix; check against direct calls."""
    import rnnperturb as rp
    from validation.experiments import eval_task, load
    cell, meta = load("mgru_memorization_D10")
    X = eval_task(meta, seed=0).X[:, ::8]
    unit = {k: np.asarray(rp.noise_response(cell, X, var={k: 1.0}, std=0.0))
            for k in cell.recurrent_names}
    var = {"Wf": 0.3 ** 2, "Wh": 0.05 ** 2}
    direct = np.asarray(rp.noise_response(cell, X, var=var))
    np.testing.assert_allclose(sum(v * unit[k] for k, v in var.items()), direct, rtol=1e-10)
    np.testing.assert_allclose(0.01 ** 2 * sum(unit.values()),
                               np.asarray(rp.noise_response(cell, X, std=0.01)), rtol=1e-10)
