r"""Tightness and cost of :func:`rnnperturb.certified_bound` with the generic
rounding step (ball arithmetic over the cell's own step,
:mod:`rnnperturb.verified.ball`): the GRU, the LSTM and stacked networks, which
have no hand-written rounding code, and the Elman RNN and the MGRU with the
generic step in place of their own.

For each network: SVD truncation to ranks 16, 32, 48 (n = 64); the default
tier (``"auto"``); tightness = median and max over steps and sequences of
bound / exact (exact = float64 :func:`rnnperturb.deviation`; steps with a
deviation below 1e-12 skipped); cost = median of paired, interleaved ratios of
the bound's time to :func:`rnnperturb.deviation`'s on the same inputs (one
BLAS thread where threadpoolctl is installed). Networks:

* ``gru_memorization_D50`` (trained, T = 61, B = 32, n = 64);
* a random GRU, spectral norm 1.5 per recurrent matrix, bias std 0.5 (T = 60,
  B = 32, n = 64);
* an LSTM (the memorization checkpoint when one exists, else random, spectral
  norm 1.2), the bound on h (the default) and on the full state (h, c);
* a 2-layer stacked GRU (random, n = 64 per layer);
* Elman and MGRU D10 checkpoints with the generic step against their own.

Goals (issue 11, for the default tier): median <= 2; cost <= 20x deviation.

Run: ``python -m benchmarks.bench_generic_bound [--quick] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import rnnperturb as rp
from benchmarks._common import (environment, limit_threads, loadavg, paired_ratio,
                                time_interleaved, write_json)
from rnnperturb.bounds.trajectory import certified_bound
from rnnperturb.cells.random import random_cell
from rnnperturb.cells.stacked import random_stacked
from rnnperturb.verified.ball import with_generic_rounding

ROOT = Path(__file__).resolve().parent.parent


def _checkpoint(name):
    path = ROOT / "validation" / "checkpoints" / f"{name}.npz"
    if not path.exists():
        return None, None
    cell, meta = rp.load_with_metadata(path)
    X = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"]).X
    return cell, X


def measure(cell, X, ranks, *, repeats, state="h", twin=None):
    """Rows (rank, median, max, cost) of the default tier; ``twin``: a function giving
    the same network with another rounding step, timed and compared beside it."""
    rows = []
    for r in ranks:
        other = rp.truncate_svd(cell, rank=r)
        E = rp.deviation(cell, other, X, state=state)
        en = np.linalg.norm(E, axis=-1)
        bd = certified_bound(cell, other, X, state=state)
        m = en > 1e-12
        ratio = bd[m] / en[m]
        fns = {"deviation": lambda: rp.deviation(cell, other, X, state=state),
               "bound": lambda: certified_bound(cell, other, X, state=state)}
        if twin is not None:
            g = twin(cell)
            go = g.replace(**other.recurrent)
            fns["generic"] = lambda: certified_bound(g, go, X, state=state)
        tm = time_interleaved(fns, repeats=repeats, warmup=1)
        row = {"rank": r, "median": float(np.median(ratio)) if ratio.size else None,
               "max": float(ratio.max()) if ratio.size else None,
               "sound_vs_float64": bool(np.all(bd >= en)),
               "cost_over_deviation": paired_ratio(tm["bound"], tm["deviation"])["median"],
               "deviation_s": tm["deviation"]["median"], "bound_s": tm["bound"]["median"]}
        if twin is not None:
            bg = certified_bound(g, go, X, state=state)
            row["generic_median"] = float(np.median(bg[m] / en[m])) if m.any() else None
            row["generic_over_own_max"] = float(np.max(bg / bd))
            row["generic_cost_over_deviation"] = paired_ratio(tm["generic"],
                                                              tm["deviation"])["median"]
        rows.append(row)
        print(f"    rank {r}: median {row['median']}, max {row['max']}, cost "
              f"{row['cost_over_deviation']:.1f}x" + (
                  f"; generic step: median {row['generic_median']}, cost "
                  f"{row['generic_cost_over_deviation']:.1f}x" if twin else ""), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else 5
    ranks = (16, 48) if args.quick else (16, 32, 48)
    load0 = loadavg()
    t0 = time.perf_counter()
    res = {}
    rng = np.random.default_rng(0)
    with limit_threads(1):
        cell, X = _checkpoint("gru_memorization_D50")
        if cell is not None:
            print("gru_memorization_D50", flush=True)
            res["gru_memorization_D50"] = measure(cell, X, ranks, repeats=repeats)
        print("random GRU (spectral norm 1.5)", flush=True)
        g = random_cell("gru", 64, 4, spectral_norm=1.5, bias_scale=0.5, seed=rng)
        Xg = rng.standard_normal((60, 32, 4))
        res["gru_random_sn1.5"] = measure(g, Xg, ranks, repeats=repeats)
        cell, X = _checkpoint("lstm_memorization_D20")
        name = "lstm_memorization_D20"
        if cell is None:
            name = "lstm_random_sn1.2"
            cell = random_cell("lstm", 64, 4, spectral_norm=1.2, bias_scale=0.5, seed=rng)
            X = Xg
        for state in ("h", "full"):
            print(f"{name} (state={state})", flush=True)
            res[f"{name}_{state}"] = measure(cell, X, ranks, repeats=repeats, state=state)
        print("2-layer stacked GRU (random, spectral norm 1.2)", flush=True)
        st = random_stacked(["gru", "gru"], 64, 4, spectral_norm=1.2, bias_scale=0.5, seed=rng)
        res["stacked_gru_gru"] = measure(st, Xg[:, :16], ranks, repeats=repeats)
        for kind in ("elman", "mgru"):
            cell, X = _checkpoint(f"{kind}_memorization_D10")
            print(f"{kind}_memorization_D10: own step, and the generic step", flush=True)
            res[f"{kind}_memorization_D10"] = measure(cell, X, ranks, repeats=repeats,
                                                       twin=with_generic_rounding)
    rows = [r for v in res.values() for r in v]
    goals = {"default_median_at_most_2": all(r["median"] is None or r["median"] <= 2
                                             for r in rows),
             "default_cost_at_most_20x_deviation": all(r["cost_over_deviation"] <= 20
                                                       for r in rows),
             "sound_vs_float64_deviation": all(r["sound_vs_float64"] for r in rows)}
    doc = {"benchmark": "generic_bound", "quick": bool(args.quick), "environment": environment(),
           "load_before": load0, "load_after": loadavg(), "results": res, "goals": goals,
           "seconds": time.perf_counter() - t0,
           "command": "python -m benchmarks.bench_generic_bound" + (
               " --quick" if args.quick else "")}
    path = write_json(Path(args.out) / "generic_bound.json", doc)
    print("goals:", goals)
    print(f"wrote {path} ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
