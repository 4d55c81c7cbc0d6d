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

Cost. One certificate (one :func:`rnnperturb.bounds.set_bound.set_trace`
over the 32 sequences, SDP refinement off) takes 13-20 s for the Elman D10
checkpoint (n = 64, T = 21) on one loaded core and about 4x that per step for the
MGRU (two perturbed matrices, two products with them per step); the cost is
O(T B K n^4) flops (the carried matrices). The search
(:func:`rnnperturb.bounds.set_recall.certified_tolerance`) needs about two
evaluations on all sequences per tolerance (one to rank the sequences by
headroom, one to verify the answer) plus cheap ones on the 2-6 sequences with the
least headroom, each next parameter from the first-order estimate (the bound scales
about linearly with the radius). Search ranges: bits 6..24, drift and noise
1e-7..1e-1 to a bracket ratio :math:`10^{6/128}\approx 1.11` (7 halvings).

Run: ``python -m validation.exp_set_certificates --quick --out validation/results``
(one checkpoint: ``python -m validation.exp_set_certificates --only elman_memorization_D10``).
``--one-sided`` computes the same certificates with ``one_sided=True`` (the one-signed
activation remainders centred, :func:`rnnperturb.bounds.set_bound.set_trace`) into
``set_certificates_one_sided`` (with ``--incremental DIR [--resume]``); ``--chords`` with
``chords=True`` (centred chords where tighter, set_bound's default) into
``set_certificates_chords`` (``--quick``: the D10 checkpoints).
"""
from __future__ import annotations

import sys
import time

import rnnperturb as rp
from rnnperturb.bounds.recall import recall_margins
from rnnperturb.bounds.set_recall import certified_tolerance
from validation.experiments import checkpoint_names, cli, load

__all__ = ["run", "headline", "evaluate", "certified"]

NAME = "set_certificates"
RANGE = dict(bits=(6, 24), drift=(1e-7, 1e-1), noise=(1e-7, 1e-1))
STEPS = 7


def evaluate(name: str, *, seed: int = 0, quiet: bool = True, one_sided: bool = False,
             chords: bool = False) -> dict:
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
                                  samples=100 if kind == "noise" else 16, one_sided=one_sided,
                                  chords=chords)
        row[f"{kind}_certified"] = tol.certified
        row[f"{kind}_measured"] = tol.measured
        row[f"{kind}_evaluations"] = [[float(p), bool(ok)] for p, ok in tol.evaluations]
        row[f"{kind}_seconds"] = time.perf_counter() - t0
        if not quiet:
            print(name, kind, tol.certified, tol.measured, f"{row[f'{kind}_seconds']:.0f} s",
                  file=sys.stderr, flush=True)
    row["sequences"] = tol.sequences
    row["one_sided"] = bool(one_sided)
    row["chords"] = bool(chords)
    return row


def _cost_order(name: str):
    """Short delays (D <= 20) of every cell first, then the long ones; within each, Elman
    (one perturbed matrix), MGRU (two), GRU (three), then by delay."""
    cell = name.split("_", 1)[0]
    D = int(name.rsplit("D", 1)[-1])
    return (D > 20, {"elman": 0, "mgru": 1, "gru": 2}.get(cell, 3), D)


def _finished_rows(out: str, name: str = NAME) -> list[dict]:
    """Rows of an earlier (interrupted) run from ``out/<name>.csv`` (values parsed as
    literals, never executed)."""
    import ast
    import csv
    import os
    path = os.path.join(out, name + ".csv")
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            row = {}
            for k, v in r.items():
                try:
                    row[k] = ast.literal_eval(v)
                except (ValueError, SyntaxError):
                    row[k] = v
            rows.append(row)
    return rows


def certified(row: dict) -> bool:
    """Whether a table row holds certificates (a row read back from the CSV has every
    column, empty where the row had none)."""
    return isinstance(row.get("bits_certified"), int)


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True, only=None,
        out: str | None = None, resume: bool = False, one_sided: bool = False,
        chords: bool = False) -> dict:
    """Every memorization checkpoint (``quick``: the D10 ones), cheapest first; with
    ``out``, the result so far is written after every checkpoint (a long run leaves
    its finished rows behind), and with ``resume`` the checkpoints already in
    ``out`` are kept and skipped. ``one_sided``: the certificates with
    ``one_sided=True``, named ``set_certificates_one_sided``; ``chords``: with
    ``chords=True`` (set_bound's default), named ``set_certificates_chords``."""
    from validation.experiments import write_result
    names = [only] if only else sorted(checkpoint_names(task="memorization"), key=_cost_order)
    if quick and not only:
        names = [n for n in names if n.endswith("_D10")]
    name = NAME + ("_one_sided" if one_sided else "") + ("_chords" if chords else "")
    res = {"name": name, "rows": [], "quick": quick, "one_sided": bool(one_sided),
           "chords": bool(chords),
           "note": "bits: certified any-rounding vs measured round-to-nearest; drift/noise: "
                   "certified vs empirical (seeded samples, an estimate)"}
    if resume and out is not None:
        # rows without a certificate (the LSTM's, skipped before the set bound took states
        # larger than h) are computed again
        res["rows"] = [r for r in _finished_rows(out, name) if r.get("checkpoint") in names
                       and certified(r)]
    done = {r["checkpoint"] for r in res["rows"]}
    for n in names:
        if n in done:
            continue
        res["rows"].append(evaluate(n, seed=seed, quiet=quiet, one_sided=one_sided,
                                    chords=chords))
        if out is not None:
            res["table"] = res["rows"]
            write_result(res, out, headline(res))
    return res


def headline(res: dict) -> dict:
    return {r["checkpoint"]: {k: r[k] for k in r if k.endswith(("_certified", "_measured"))}
            for r in res["rows"]}


if __name__ == "__main__":
    if "--incremental" in sys.argv:                   # every checkpoint, written as it goes
        run(quiet=False, out=sys.argv[sys.argv.index("--incremental") + 1],
            resume="--resume" in sys.argv, one_sided="--one-sided" in sys.argv,
            chords="--chords" in sys.argv, quick="--quick" in sys.argv)
        raise SystemExit(0)
    if "--only" in sys.argv:
        i = sys.argv.index("--only")
        row = evaluate(sys.argv[i + 1], quiet=False, one_sided="--one-sided" in sys.argv,
                       chords="--chords" in sys.argv)
        print(row)
        raise SystemExit(0)
    raise SystemExit(cli(sys.modules[__name__]))
