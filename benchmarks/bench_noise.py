r"""Item 2: ``noise_response`` against Monte Carlo of the exact simulation.

Two questions, frozen and fresh noise, Elman and MGRU:

* **accuracy** -- the first-order :math:`\mathbb E\|e_t\|^2` against Monte Carlo of
  the exact perturbed simulation (``--draws`` draws, 2,000 by default, at a
  standard deviation small enough for first order, ``std = 1e-4`` per entry):
  the largest relative difference over the steps, the largest
  :math:`|z| = |\text{MC} - \text{ours}|/\text{SE}`, the fraction of steps
  within 5 % *or* inside the pointwise 99 % Monte Carlo confidence interval,
  and whether every step is within 5 % or inside the interval at family level
  99 % over all compared steps (Bonferroni; ``all_steps_ok``);
* **speed at equal accuracy** -- the time of one ``noise_response`` call
  against the time Monte Carlo needs to reach 1 % relative accuracy: the number
  of draws for a 95 % confidence half-width of 1 % is
  :math:`N = (1.96\,\mathrm{sd}/(0.01\,\mathrm{mean}))^2`, with the per-draw
  relative sd of :math:`\|e_t\|^2` measured on a pilot; Monte Carlo time is
  linear in the draws, so its time is (pilot time per draw) × N. N is taken
  at the final step (``N_final``; the most favourable reading for Monte Carlo)
  and, stricter, as the largest over the steps (``N_all``). Both sides run
  in the same process, interleaved over repeats (medians). ``speedup_final``
  and ``speedup_all`` compare the *whole curve* (T values, which Monte Carlo
  also gives); ``speedup_final_step_only`` compares ``noise_response(...,
  times=[T])`` (adjoint sums, one step) with Monte Carlo at that step.

Nets: random cells (‖W‖₂ = 1 for every recurrent matrix, m = 3, Gaussian
inputs) for n ∈ {32, 64} by default (``--n 32 64 128`` adds n = 128: minutes,
beyond the harness's time cap; quick: n = 32), T = 200, B = 1; and the trained memorization
checkpoints under ``validation/checkpoints`` (n = 64) on one of their own
sequences (T = 2L + D + 1).

Cost model. Frozen noise costs :math:`O(T r n^3)` per sequence, r ≤ n the rank
of the forcing trajectory (= n for random inputs, ≈ 25 for the trained
memorization nets), fresh noise :math:`O(Tn^3)`; Monte Carlo costs
:math:`O(N T n^2)`. Exactness therefore wins by about N / r: a lot when the
deviation is coherent (low-rank covariance, sd/mean ≈ √2, N ≈ 10⁴), little when
the net is random (high-rank covariance: ‖e_t‖² concentrates, N ≈ 10³).

What this means for the 100x goal (issue 12; measured in ``benchmarks.bench_set_bound``,
one thread, 08:50 UTC): on random nets (n = 64, T = 200) Monte Carlo needs
N = 2,000-2,300 draws for 1 %, i.e. N T n² ≈ 1.9·10⁹ multiply-adds (Elman), while the
exact frozen second moment costs T r n³ ≈ 3.4·10⁹ with r = n = 64 (the forcing
trajectory of a random net has full rank: 25 / 50 / 62 principal axes hold 99 / 99.9 /
99.99 % of its energy). The exact method does *more* arithmetic than Monte Carlo there,
and its 4.1-4.7x (Elman and MGRU) comes only from BLAS-3 against BLAS-2 efficiency: 100x is
out of reach for frozen noise on random nets by a flop count (it needs N ≫ 100 r, which
holds on coherent trajectories: trained memorization nets, r ≈ 25, sd/mean ≈ √2,
N ≈ 10⁴). Fresh noise costs O(T n³) against Monte Carlo's N T n² (plus N T n² normal
draws): 53-61x (Elman) and 27-33x (MGRU) at the final step, 92-107x / 55-67x for the
whole curve (two runs, 08:45 and 08:58 UTC, load 10-14 on 2 cores).

Run: ``python -m benchmarks.bench_noise [--quick] [--out DIR] [--draws N] [--threads 1]
[--n 32 64 128]``.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np
import scipy.stats

from benchmarks._common import (print_report, environment, limit_threads, loadavg, paired_ratio,
                                time_interleaved, write_json)

NAME = "bench_noise"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STD = 1e-4


def _cases(quick, smoke, ns=None):
    import rnnperturb as rp
    from rnnperturb.cells.random import random_cell

    ns = ns or ((8,) if smoke else ((32,) if quick else (32, 64)))
    T = 20 if smoke else 200
    out = []
    for kind in ("elman", "mgru"):
        for n in ns:
            cell = random_cell(kind, n, 3, spectral_norm=1.0, seed=100 + n)
            X = np.random.default_rng(n).standard_normal((T, 1, 3))
            out.append({"name": f"random {kind} n={n}", "kind": kind, "n": n, "T": T,
                        "cell": cell, "X": X})
    if not smoke:
        paths = sorted(glob.glob(os.path.join(ROOT, "validation", "checkpoints",
                                              "*memorization*.npz")))
        chosen = {}
        for p in paths:                     # the longest delay of each cell type
            cell, meta = rp.load_with_metadata(p)
            if meta.get("task") != "memorization":
                continue
            if cell.kind not in chosen or meta["D"] > chosen[cell.kind][1]["D"]:
                chosen[cell.kind] = (cell, meta, p)
        for kind, (cell, meta, p) in sorted(chosen.items()):
            task = rp.tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"]))
            X = task.X[:, 5:6]              # one sequence (01010... pattern index 5)
            out.append({"name": f"checkpoint {os.path.basename(p)}", "kind": kind, "n": cell.n,
                        "T": X.shape[0], "cell": cell, "X": X})
    return out


def _accuracy(case, frozen, draws):
    from rnnperturb.stats.noise import monte_carlo_noise, noise_response
    pred = noise_response(case["cell"], case["X"], std=STD, frozen=frozen)[:, 0]
    mc = monte_carlo_noise(case["cell"], case["X"], std=STD, frozen=frozen, draws=draws,
                           seed=7, chunk=250)
    m, se = mc.mean[:, 0], mc.sem[:, 0]
    ok = pred > 1e-12 * pred.max()
    rel = (m[ok] - pred[ok]) / pred[ok]
    z = (m[ok] - pred[ok]) / se[ok]
    within = np.abs(m[ok] - pred[ok]) <= np.maximum(0.05 * pred[ok], 2.576 * se[ok])
    zfam = float(scipy.stats.norm.isf(0.005 / np.count_nonzero(ok)))
    fam = np.abs(m[ok] - pred[ok]) <= np.maximum(0.05 * pred[ok], zfam * se[ok])
    return {"draws": draws, "max_abs_rel": float(np.max(np.abs(rel))),
            "mean_rel": float(np.mean(rel)), "final_rel": float(rel[-1]),
            "max_abs_z": float(np.max(np.abs(z))), "mean_z": float(np.mean(z)),
            "frac_steps_ok_pointwise99": float(np.mean(within)),
            "z_family99": zfam, "all_steps_ok": bool(np.all(fam)),
            "mc_rel_sem_final": float(se[-1] / m[-1])}


def _speed(case, frozen, pilot, repeats):
    from rnnperturb.stats.noise import monte_carlo_noise, noise_response
    cell, X = case["cell"], case["X"]
    pilots = []

    def ours():
        noise_response(cell, X, std=STD, frozen=frozen)

    def ours_final():
        noise_response(cell, X, std=STD, frozen=frozen, times=[X.shape[0]])

    def mc():
        pilots.append(monte_carlo_noise(cell, X, std=STD, frozen=frozen, draws=pilot,
                                        seed=len(pilots), chunk=pilot))

    t = time_interleaved({"ours": ours, "ours_final_step": ours_final, "mc_pilot": mc},
                         repeats=repeats, warmup=0)
    # per-draw relative sd of ||e_t||^2, pooled over the pilots
    mean = np.mean([p.mean[:, 0] for p in pilots], axis=0)
    var = np.mean([(p.sem[:, 0] ** 2) * p.draws for p in pilots], axis=0)
    ok = mean > 0
    rsd = np.sqrt(var[ok]) / mean[ok]
    n_final = int(np.ceil((1.96 * rsd[-1] / 0.01) ** 2))
    n_all = int(np.ceil((1.96 * rsd.max() / 0.01) ** 2))
    per_draw = t["mc_pilot"]["median"] / pilot
    t_ours = t["ours"]["median"]
    return {"t_ours": t["ours"], "t_mc_pilot": t["mc_pilot"], "pilot_draws": pilot,
            "mc_per_draw": per_draw, "rel_sd_final": float(rsd[-1]),
            "rel_sd_max": float(rsd.max()), "N_final": n_final, "N_all": n_all,
            "t_mc_equal_final": per_draw * n_final, "t_mc_equal_all": per_draw * n_all,
            "speedup_final": per_draw * n_final / t_ours,
            "speedup_all": per_draw * n_all / t_ours,
            "t_ours_final_step": t["ours_final_step"],
            "speedup_final_step_only": per_draw * n_final / t["ours_final_step"]["median"],
            "paired_pilot_over_ours": paired_ratio(t["mc_pilot"], t["ours"])}


def run(*, quick=False, smoke=False, draws=None, threads=1, quiet=False, ns=None):
    t0 = time.perf_counter()
    load_before = loadavg()
    draws = draws or (200 if smoke else (500 if quick else 2000))
    pilot = 50 if smoke else (100 if quick else 200)
    repeats = 1 if smoke else (2 if quick else 3)
    results = []
    with limit_threads(threads):
        for case in _cases(quick, smoke, ns):
            for frozen in (True, False):
                rec = {"case": case["name"], "kind": case["kind"], "n": case["n"], "T": case["T"],
                       "mode": "frozen" if frozen else "fresh", "std": STD}
                rec["accuracy"] = _accuracy(case, frozen, draws)
                rec["speed"] = _speed(case, frozen, pilot, repeats)
                results.append(rec)
                if not quiet:
                    a, s = rec["accuracy"], rec["speed"]
                    print(f"[{NAME}] {case['name']:40s} {rec['mode']:6s} max|rel| "
                          f"{a['max_abs_rel']:.3f} max|z| {a['max_abs_z']:.2f} ok {a['all_steps_ok']}"
                          f" | ours {s['t_ours']['median']:.3g}s N_final {s['N_final']} "
                          f"speedup {s['speedup_final']:.3g} (all steps {s['speedup_all']:.3g}; "
                          f"last step only {s['speedup_final_step_only']:.3g})",
                          file=sys.stderr)
    goals = []
    acc_ok = [r for r in results if r["accuracy"]["all_steps_ok"]]
    worst = max(results, key=lambda r: r["accuracy"]["max_abs_rel"])
    goals.append({"goal": "noise_response within 5 % of exact Monte Carlo or inside its CI "
                          "(family level 99 %) at every step (both cells, both modes, random "
                          "nets and checkpoints)",
                  "met": len(acc_ok) == len(results),
                  "worst": worst["accuracy"]["max_abs_rel"],
                  "worst_at": f"{worst['case']} {worst['mode']}"})
    n64 = [r for r in results if r["n"] == 64 and r["case"].startswith("random")]
    if n64:
        w = min(n64, key=lambda r: r["speed"]["speedup_final"])
        goals.append({"goal": ">= 100x faster than Monte Carlo at 1 % accuracy, n=64, T=200 "
                              "(random nets, final step)",
                      "met": all(r["speed"]["speedup_final"] >= 100 for r in n64),
                      "worst": w["speed"]["speedup_final"], "worst_at": f"{w['case']} {w['mode']}"})
    ck = [r for r in results if r["case"].startswith("checkpoint")]
    if ck:
        w = min(ck, key=lambda r: r["speed"]["speedup_final"])
        goals.append({"goal": ">= 100x faster than Monte Carlo at 1 % accuracy on the trained "
                              "memorization checkpoints (n=64, final step)",
                      "met": all(r["speed"]["speedup_final"] >= 100 for r in ck),
                      "worst": w["speed"]["speedup_final"], "worst_at": f"{w['case']} {w['mode']}"})
    return {"benchmark": NAME, "quick": quick, "smoke": smoke, "environment": environment(),
            "threads": threads, "load_before": load_before, "load_after": loadavg(),
            "results": results, "goals": goals, "seconds": time.perf_counter() - t0}


def summary_rows(doc) -> list[str]:
    """Markdown table lines for the benchmark summary."""
    lines = ["| case | mode | max rel. diff vs MC | max |z| | all steps ok | ours (curve / "
             "last step) | MC draws for 1 % (final / all steps) | speed-up curve (final / all) "
             "| speed-up last step only |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        a, s = r["accuracy"], r["speed"]
        lines.append(f"| {r['case']} (T={r['T']}) | {r['mode']} | {a['max_abs_rel']:.3f} | "
                     f"{a['max_abs_z']:.2f} | {'yes' if a['all_steps_ok'] else 'no'} | "
                     f"{s['t_ours']['median'] * 1e3:.1f} / "
                     f"{s['t_ours_final_step']['median'] * 1e3:.1f} ms | "
                     f"{s['N_final']} / {s['N_all']} | "
                     f"{s['speedup_final']:.3g} / {s['speedup_all']:.3g} | "
                     f"{s['speedup_final_step_only']:.3g} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (harness test only)")
    ap.add_argument("--draws", type=int, default=None, help="Monte Carlo draws for accuracy")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (0: leave as is)")
    ap.add_argument("--n", type=int, nargs="+", default=None, dest="ns",
                    help="hidden sizes of the random nets (default 32 64; quick 32)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    a = ap.parse_args(argv)
    doc = run(quick=a.quick, smoke=a.smoke, draws=a.draws, threads=a.threads or None, ns=a.ns)
    path = write_json(os.path.join(a.out, f"{NAME}.json"), doc)
    print_report(doc, summary_rows(doc), path)
    return doc


if __name__ == "__main__":
    main()
