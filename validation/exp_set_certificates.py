r"""Certified bit width, drift tolerance and noise std of the memorization checkpoints (issue 12).

For each memorization checkpoint, on all 32 sequences of the 5-bit task
(:func:`rnnperturb.tasks.memorization_all`), with
:func:`rnnperturb.bounds.set_recall.certified_tolerance`:

* **bits (any rounding)**: the smallest b such that *every* rounding of the
  recurrent matrices onto quantize()'s b-bit grid (stochastic, toward zero,
  floor, nearest: :math:`|\Delta W_{ij}| < s`) recalls every sequence,
  certified; beside it the **measured** smallest b at which the actual
  ``rp.quantize(cell, bits=b)`` (round-to-nearest) still recalls every sequence
  (for every larger b too);
* **drift**: the largest relative drift d such that every
  :math:`|\Delta W_{ij}|\le d|W_{ij}|` recalls every sequence, certified
  (bisection on the log scale, bracket ratio reported); beside it an
  **empirical** tolerance from 16 seeded random vertices :math:`\pm d|W_{ij}|`
  (an estimate, not a bound);
* **noise**: the largest std s of i.i.d. Gaussian weight noise such that, with
  probability >= 0.99 over the draw, every sequence is recalled, certified;
  beside it an **empirical** tolerance: the largest s at which >= 99 % of 100
  seeded draws recall every sequence.

Cost. One certificate (one :func:`rnnperturb.bounds.set_bound.set_trace` over
the 32 sequences, SDP refinement off) takes about 33 s for the Elman D10
checkpoint (n = 64, T = 21) and 2-3x that for the MGRU one on one core; a
tolerance needs 5-7 of them. So the default run (``--quick``) covers the D10
checkpoints of both cells; the full run (all memorization checkpoints) takes
hours. Search ranges: bits 6..24, drift and noise 1e-6..1e-2 with 3 bisection
steps after bracketing (bracket ratio :math:`10^{4/8}\approx 3.2`).

Run: ``python -m validation.exp_set_certificates --quick --out validation/results``
(one checkpoint: ``python -m validation.exp_set_certificates --only elman_memorization_D10``).
"""
from __future__ import annotations

import sys
import time

import rnnperturb as rp
from rnnperturb.bounds.recall import recall_margins
from rnnperturb.bounds.set_recall import certified_tolerance
from validation.experiments import checkpoint_names, cli, load

__all__ = ["run", "headline", "evaluate"]

NAME = "set_certificates"
RANGE = dict(bits=(6, 24), drift=(1e-6, 1e-2), noise=(1e-6, 1e-2))
STEPS = 3


def evaluate(name: str, *, seed: int = 0, quiet: bool = True) -> dict:
    """The certified and measured tolerances of one checkpoint (one table row)."""
    cell, meta = load(name)
    D = int(name.rsplit("D", 1)[-1])
    task = rp.tasks.memorization_all(2, 5, D)
    margins = recall_margins(cell, task)
    row = {"checkpoint": name, "n": int(cell.n), "T": int(task.X.shape[0])}
    for kind in ("bits", "drift", "noise"):
        t0 = time.perf_counter()
        lo, hi = RANGE[kind]
        tol = certified_tolerance(cell, task, kind=kind, rounding="any", confidence=0.99,
                                  lo=lo, hi=hi, steps=STEPS, margins=margins, seed=seed,
                                  samples=100 if kind == "noise" else 16)
        row[f"{kind}_certified"] = tol.certified
        row[f"{kind}_measured"] = tol.measured
        row[f"{kind}_evaluations"] = len(tol.evaluations)
        row[f"{kind}_seconds"] = time.perf_counter() - t0
        if not quiet:
            print(name, kind, tol.certified, tol.measured, f"{row[f'{kind}_seconds']:.0f} s",
                  file=sys.stderr, flush=True)
    row["sequences"] = tol.sequences
    return row


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True, only=None) -> dict:
    names = [only] if only else checkpoint_names(task="memorization")
    if quick and not only:
        names = [n for n in names if n.endswith("_D10")]
    rows = [evaluate(n, seed=seed, quiet=quiet) for n in names]
    return {"name": NAME, "rows": rows, "quick": quick,
            "note": "bits: certified any-rounding vs measured round-to-nearest; drift/noise: "
                    "certified vs empirical (seeded samples, an estimate)"}


def headline(res: dict) -> dict:
    return {r["checkpoint"]: {k: r[k] for k in r if k.endswith(("_certified", "_measured"))}
            for r in res["rows"]}


if __name__ == "__main__":
    if "--only" in sys.argv:
        i = sys.argv.index("--only")
        row = evaluate(sys.argv[i + 1], quiet=False)
        print(row)
        raise SystemExit(0)
    raise SystemExit(cli(sys.modules[__name__]))
