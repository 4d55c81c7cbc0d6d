r"""All-rank truncation sweep against one call per rank.

For a random cell (Elman and MGRU, spectral norm 1, m = 4) with hidden size
n = 64 and 128, horizon T = 200 and batch B = 64 (i.i.d. N(0, 1) inputs):

* **sweep**: ``rp.rank_sweep(cell, X)``: exact and first-order deviation norms
  and forcing energy for every rank r = 0..n (for the MGRU both matrices at
  rank r) in one batched pass;
* **per rank**: for each r, ``small = rp.truncate_svd(cell, rank=r)``, then
  ``rp.deviation(cell, small, X)`` and ``rp.first_order(cell, small, X)`` and
  their norms over the state axis (what a user would write without the sweep).

Both sides do the same arithmetic up to a constant (every rank costs the same
dense work per call), so the ratio measures batching: one GEMM over
(n+1)·B rows per step instead of n+1 GEMMs over B rows and n+1 Python loops.
The two sides are timed alternately in the same process (medians over
``--repeats`` with min and max, and the median of the per-repeat ratios), with
the BLAS limited to ``--threads`` threads (default 1: on a shared, loaded
machine multi-threaded BLAS on these sizes is slower and far noisier). Before
timing, the sweep's numbers are checked against the per-rank calls.

By default the per-rank side is timed on every ``stride``-th rank (at most 17
calls) and scaled to n+1 calls; the spread of the per-call times over ranks is
recorded, and ``--all-calls`` times all n+1 calls. The JSON says which.
``os.getloadavg()`` is recorded before and after every configuration.

Run: ``python -m benchmarks.bench_sweep [--quick] [--smoke] [--all-calls]
[--threads 1] [--repeats 3] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import rnnperturb as rp
from benchmarks._common import (print_report, environment, fmt_time, limit_threads, loadavg, paired_ratio,
                                time_interleaved, write_json)

NAME = "sweep"


def per_rank(cell, X, ranks):
    """Norms of exact and first-order deviation, one call per rank: (R, T, B) each."""
    ex, fo = [], []
    for r in ranks:
        small = rp.truncate_svd(cell, rank=int(r))
        ex.append(np.linalg.norm(rp.deviation(cell, small, X), axis=-1))
        fo.append(np.linalg.norm(rp.first_order(cell, small, X), axis=-1))
    return np.array(ex), np.array(fo)


def run(*, sizes=(64, 128), kinds=("elman", "mgru"), T=200, B=64, repeats=3, threads=1,
        all_calls=False, quiet=False, quick=False) -> dict:
    t_start = time.perf_counter()
    load_before = loadavg()
    results = []
    with limit_threads(threads):
        for kind in kinds:
            for n in sizes:
                cell = rp.random_cell(kind, n, 4, spectral_norm=1.0, seed=0)
                X = np.random.default_rng(1).standard_normal((T, B, 4))
                stride = 1 if all_calls else max(1, -(-(n + 1) // 17))
                timed = np.arange(0, n + 1, stride)
                row = {"kind": kind, "n": n, "T": T, "B": B, "threads": threads,
                       "ranks_swept": n + 1, "per_rank_calls_timed": int(timed.size),
                       "per_rank_extrapolated": bool(timed.size < n + 1),
                       "load_before": loadavg()}
                sw = rp.rank_sweep(cell, X)                       # warm-up and check
                ex, fo = per_rank(cell, X, timed)
                scale = max(1.0, float(ex.max()))
                row["agreement_max_abs"] = {
                    "exact": float(np.abs(sw.exact[timed] - ex).max()),
                    "first_order": float(np.abs(sw.first_order[timed] - fo).max())}
                row["agreement_ok"] = bool(max(row["agreement_max_abs"].values())
                                           <= 1e-10 * scale)
                # per-call time spread over ranks (one pass, for the record)
                per_call = []
                for r in timed[:: max(1, timed.size // 5)]:
                    t0 = time.perf_counter()
                    per_rank(cell, X, [r])
                    per_call.append(time.perf_counter() - t0)
                row["per_call_seconds_sample"] = {"min": min(per_call), "max": max(per_call),
                                                  "n": len(per_call)}
                tim = time_interleaved({"sweep": lambda: rp.rank_sweep(cell, X),
                                        "per_rank": lambda: per_rank(cell, X, timed)},
                                       repeats=repeats, warmup=0)
                fac = (n + 1) / timed.size
                per = dict(tim["per_rank"])
                per["all"] = [t * fac for t in per["all"]]
                for k in ("median", "min", "max"):
                    per[k] = per[k] * fac
                row["sweep"] = tim["sweep"]
                row["per_rank_all_ranks"] = per
                row["ratio_per_rank_over_sweep"] = paired_ratio(per, tim["sweep"])
                row["load_after"] = loadavg()
                results.append(row)
                if not quiet:
                    rr = row["ratio_per_rank_over_sweep"]
                    print(f"[{NAME}] {kind:5s} n={n:3d}: sweep {fmt_time(row['sweep']['median'])}, "
                          f"{n + 1} calls {fmt_time(per['median'])}"
                          f"{' (extrapolated)' if row['per_rank_extrapolated'] else ''}, "
                          f"ratio {rr['median']:.2f} ({rr['min']:.2f}-{rr['max']:.2f}), "
                          f"load {row['load_after']}", file=sys.stderr)
    goals = [{"goal": "rank_sweep agrees with per-rank calls (max abs diff <= 1e-10)",
              "met": all(r["agreement_ok"] for r in results),
              "worst": max(max(r["agreement_max_abs"].values()) for r in results),
              "worst_at": None},
             {"goal": "all-rank sweep faster than n+1 separate calls (every cell and size)",
              "met": all(r["ratio_per_rank_over_sweep"]["median"] > 1 for r in results),
              "worst": min(r["ratio_per_rank_over_sweep"]["median"] for r in results),
              "worst_at": min(results, key=lambda r: r["ratio_per_rank_over_sweep"]["median"])
              ["kind"]}]
    return {"benchmark": NAME, "quick": quick, "environment": environment(),
            "load_before": load_before, "load_after": loadavg(), "results": results,
            "goals": goals, "seconds": time.perf_counter() - t_start}


def summary_rows(doc) -> list[str]:
    """Markdown table lines for the summary."""
    lines = ["| cell | n | T | B | sweep (min–max) | n+1 calls (min–max) | calls/sweep (min–max) | load after |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        s, p, q = r["sweep"], r["per_rank_all_ranks"], r["ratio_per_rank_over_sweep"]
        ext = "*" if r["per_rank_extrapolated"] else ""
        lines.append(f"| {r['kind']} | {r['n']} | {r['T']} | {r['B']} | "
                     f"{fmt_time(s['median'])} ({fmt_time(s['min'])}–{fmt_time(s['max'])}) | "
                     f"{fmt_time(p['median'])}{ext} ({fmt_time(p['min'])}–{fmt_time(p['max'])}) | "
                     f"{q['median']:.2f} ({q['min']:.2f}–{q['max']:.2f}) | {r['load_after']} |")
    if any(r["per_rank_extrapolated"] for r in doc["results"]):
        lines.append("")
        lines.append("\\* per-rank side timed on every k-th rank and scaled to n+1 calls "
                     "(every call does the same dense work).")
    return lines


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 64 only")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (harness test only)")
    ap.add_argument("--all-calls", action="store_true", help="time all n+1 per-rank calls")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    if a.smoke:
        doc = run(sizes=tuple(a.sizes or (8,)), T=20, B=4, repeats=a.repeats, threads=a.threads,
                  all_calls=True, quick=True)
        doc["smoke"] = True
    else:
        sizes = tuple(a.sizes or ((64,) if a.quick else (64, 128)))
        doc = run(sizes=sizes, repeats=a.repeats, threads=a.threads, all_calls=a.all_calls,
                  quick=a.quick)
    path = write_json(f"{a.out}/{NAME}.json", doc)
    print_report(doc, summary_rows(doc), path)
    return doc


if __name__ == "__main__":
    main()
