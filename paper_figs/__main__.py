r"""Regenerate every figure: ``python -m paper_figs --out DIR [--quick] [--quiet]``.

For each figure module (``paper_figs/fig_*.py``) it runs the validation
experiment that feeds it (once, shared between figures), writes the tidy
results to ``DIR/data/`` (CSV + JSON), draws the figure to ``DIR/<fig>.png``,
``.pdf`` and the caption ``.txt``, and finally prints a summary table of the
headline numbers and writes it to ``DIR/summary.json``. Everything is seeded:
the same command gives the same numbers.
"""
from __future__ import annotations

import os

# The matrices here are small (n = 64): BLAS threads only add overhead, and on a
# loaded machine their spin-waiting slows every call by 10-100x. One thread per
# process unless the caller says otherwise (set before NumPy is imported).
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import importlib
import json
import sys
import time
import traceback

FIGURES = (
    "fig_spectra",
    "fig_rank_performance",
    "fig_deviation_time",
    "fig_recall_prediction",
    "fig_coherence",
    "fig_general_perturbations",
    "fig_finetune",
)


def _parser():
    ap = argparse.ArgumentParser(prog="python -m paper_figs", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="figs", help="output directory (default: figs)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer ranks, sequences and steps (under 2 minutes)")
    ap.add_argument("--quiet", action="store_true", help="print only the summary table")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    ap.add_argument("--only", nargs="*", default=None, metavar="FIG",
                    help="regenerate only these figures (module names, e.g. fig_spectra)")
    return ap


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "n/a"
    return str(v)


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    # the repository root must be importable (validation/ is not installed)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)
    from paper_figs._common import style
    from validation.experiments import rounded, write_json, write_result

    names = FIGURES if not a.only else tuple(a.only)
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        print(f"--only: expected figure names among {list(FIGURES)}, found {unknown}",
              file=sys.stderr)
        return 2
    style()
    os.makedirs(a.out, exist_ok=True)
    data_dir = os.path.join(a.out, "data")
    results, summary, headline, timings, failed = {}, {}, {}, {}, []
    t_all = time.perf_counter()
    for fname in names:
        t0 = time.perf_counter()
        try:
            fig = importlib.import_module(f"paper_figs.{fname}")
            exp_name = fig.EXPERIMENT
            if exp_name not in results:
                exp = importlib.import_module(f"validation.{exp_name}")
                res = exp.run(quick=a.quick, seed=a.seed, quiet=a.quiet)
                if hasattr(exp, "write"):
                    exp.write(res, data_dir)
                else:
                    write_result(res, data_dir, exp.headline(res))
                results[exp_name] = res
            fig.plot(results[exp_name], a.out)
            summary[fname] = rounded(fig.summary(results[exp_name]), 4)
            if hasattr(fig, "headline"):
                headline[fname] = rounded(fig.headline(results[exp_name]), 4)
        except Exception:  # report and go on with the other figures
            failed.append(fname)
            traceback.print_exc()
        timings[fname] = round(time.perf_counter() - t0, 1)
        if not a.quiet:
            print(f"[{fname}] {timings[fname]:.1f} s", file=sys.stderr)
    total = time.perf_counter() - t_all
    write_json({"mode": "quick" if a.quick else "full", "seed": a.seed, "headline": headline,
                "all": summary}, os.path.join(a.out, "summary.json"))
    with open(os.path.join(a.out, "timings.json"), "w") as fh:   # not part of the summary
        json.dump({"seconds": timings, "total": round(total, 1)}, fh, indent=1)
    print(f"Headline numbers ({'quick' if a.quick else 'full'} mode, seed {a.seed}):")
    for fname, d in headline.items():
        for k, v in d.items():
            print(f"  {k:<78} {_fmt(v)}")
    print(f"Summary ({'quick' if a.quick else 'full'} mode, seed {a.seed}):")
    for fname, d in summary.items():
        for k, v in d.items():
            print(f"  {fname:<26} {k:<52} {_fmt(v)}")
    if not a.quiet:
        print(f"total {total:.1f} s; figures in {a.out}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
