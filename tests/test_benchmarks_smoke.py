"""Smoke test of the benchmark harness at minimal sizes: it runs, writes JSON of the
documented schema, and the torch reference computes the same loss and gradients as
the simulator. No timing assertions (timings belong in benchmarks/, not tests), and
no thread settings: everything runs with the threads the process started with.
"""
import json
import math

import numpy as np
import pytest

from benchmarks import _common, bench_scaling, bench_training
from benchmarks import __main__ as runner


def _check_schema(doc, name):
    for k in _common.SCHEMA_KEYS:
        assert k in doc, f"{name}: key {k!r} missing"
    assert doc["benchmark"] == name
    assert isinstance(doc["results"], list) and doc["results"]
    assert isinstance(doc["goals"], list)
    for g in doc["goals"]:
        assert {"goal", "met", "worst"} <= set(g)
        assert isinstance(g["met"], bool)
    json.dumps(_common._clean(doc))           # serialisable as written


def test_fit_exponent_recovers_power_law():
    x = np.array([32, 64, 128, 256.0])
    f = _common.fit_exponent(x, 3e-6 * x ** 2.5)
    assert f["exponent"] == pytest.approx(2.5, abs=1e-9) and f["r2"] == pytest.approx(1.0)


def test_flop_formula_counts_every_gemm():
    # Elman: forward W h, U x, V h; backward da W, dW, dU, dV, dY V -> 2 flops per MAC
    n, m, k, T, B = 5, 3, 2, 7, 4
    macs = T * B * (n * n + n * m + n * k) + T * B * (n * n + n * n + n * m + n * k + n * k)
    assert bench_training.flops_per_step("elman", n, m, k, T, B) == 2 * macs
    macs_mgru = T * B * (2 * n * n + 2 * n * m + n * k) \
        + T * B * (2 * n * n + 2 * n * n + 2 * n * m + 2 * n * k)
    assert bench_training.flops_per_step("mgru", n, m, k, T, B) == 2 * macs_mgru


def test_training_smoke_and_torch_agreement():
    torch = _common.torch_or_none()
    doc = bench_training.run(quick=True, threads=(None,), sizes=(6,), repeats=1,
                             use_torch=torch is not None, peak_size=64,
                             dtypes=("float64",), delay=3, quiet=True, time_torch=False)
    _check_schema(doc, "training")
    assert {r["kind"] for r in doc["results"]} == {"elman", "mgru"}
    for r in doc["results"]:
        assert r["T"] == 2 * bench_training.L + 3 + 1
        assert r["ours"]["min"] <= r["ours"]["median"] <= r["ours"]["max"]
        assert 0 < r["fraction_of_peak"] and math.isfinite(r["gflops"])
        if torch is not None:
            # same loss and gradients at the same parameters, to rounding (float64)
            a = r["agreement"]
            assert a["loss_ours"] == pytest.approx(a["loss_torch"], rel=1e-12)
            assert a["grad_max_rel_diff"] < 1e-10
    if torch is None:
        assert "torch" in doc["skipped"]
    lines = bench_training.summary_rows(doc)
    assert lines[0].startswith("| cell") and len(lines) == 2 + len(doc["results"])


def test_scaling_smoke_schema_and_memory_verdict():
    doc = bench_scaling.run(quick=True, only=["deviation", "first_order", "noise_response"],
                            n_values=(6, 12), T_values=(5, 10), point_limit=5.0, threads=None,
                            quiet=True, measure_kw={"repeats": 1, "min_time": 0.0})
    _check_schema(doc, "scaling")
    names = {r["function"] for r in doc["results"]}
    assert {"deviation", "first_order"} <= names
    for r in doc["results"]:
        if not r.get("available", True):
            continue
        assert "error" not in r, r.get("error")
        for sweep, axis in (("n_sweep", "n"), ("T_sweep", "T")):
            pts = r[sweep]["points"]
            assert [p[axis] for p in pts] == sorted(p[axis] for p in pts) and pts
            for p in pts:
                assert p["peak_bytes"] >= 0 and p["output_bytes"] > 0
        assert r["memory_vs_T"]["verdict"]
    lines = bench_scaling.summary_rows(doc)
    assert len(lines) == 2 + len(doc["results"])


def test_memory_verdict_flags_per_step_jacobians():
    spec = bench_scaling.Spec("fake", None, per_step=True, B=2)
    n, B = 64, 2
    rows = [{"n": n, "B": B, "T": T, "work_bytes": 1000 + T * 8 * B * n * n} for T in (50, 500)]
    assert bench_scaling.memory_vs_T(spec, rows)["verdict"].startswith("stores")
    rows = [{"n": n, "B": B, "T": T, "work_bytes": 10_000_000 + T * 8 * B * n} for T in (50, 500)]
    assert bench_scaling.memory_vs_T(spec, rows)["verdict"] == "independent of T"


def test_runner_collects_json_and_reports_missing(tmp_path):
    rc = runner.main(["--smoke", "--only", "scaling", "sweep", "--out", str(tmp_path), "--quiet"])
    summary = (tmp_path / "summary.md").read_text()
    runs = json.loads((tmp_path / "runs.json").read_text())
    rec = {r["name"]: r for r in runs["runs"]}
    assert rec["scaling"]["status"] == "ok"
    doc = json.loads((tmp_path / "scaling" / "scaling.json").read_text())
    _check_schema(doc, "scaling")
    assert "## scaling" in summary and "| function |" in summary
    if rec["sweep"]["status"] == "missing":
        assert "bench_sweep.py does not exist" in summary
    assert rc == (0 if all(r["status"] in ("ok", "missing") for r in runs["runs"]) else 1)
