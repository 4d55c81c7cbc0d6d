r"""Seeds of the low-coherence nets (issue 14, item 2): k-back, k-back-mix and AR signal.

Inputs: the seed checkpoints ``validation/checkpoints/seeds/<cell>_<task>_s<seed>`` (trained by
``python -m validation.sweep --plan issue14_tasks --serial --cache CACHE --ship
validation/checkpoints/seeds``; ``sweep.json`` there lists every configuration, failures included)
and the shipped seed-1 checkpoints ``validation/checkpoints/<cell>_<task>``. Per net, the
statistics the README reports for these nets, with the definitions of the experiments that report
them (:func:`task_statistics`):

* **kept rank** (``validation.exp_rank_performance``): the smallest retained rank r from which every
  larger rank keeps ``perf >= 0.99 x`` the full net's, for plain SVD (``svd``) and data-aware SVD
  (``data``, fitted on 64 separate sequences), scored on 256 fresh sequences (seed 0): per-step
  accuracy for k-back, :math:`1 - \mathrm{NMSE}` (R²) for the AR signal. The k-back-mix net is
  scored at repeat 0 and at repeat 0.9.
* **C** (``validation.exp_coherence``): the first-order frozen/fresh noise ratio :math:`C_t`
  averaged over the steps T/2, 3T/4, T and 8 sequences (k-back at repeat 0, AR signal); for the
  k-back-mix net the coherence knob: C at repeat p = 0, 0.1, ..., 0.9, the measured p at which C
  crosses 2, the mean propagator decay :math:`\lambda` and the scalar law's crossing
  :math:`1/(3\lambda)`.

Groups: (cell, task). Each reports per statistic the per-seed values, mean, sd (ddof = 1), median,
min, max (:func:`validation.exp_seeds.summarize`), and the seeds that failed their recipe's check
(recorded, not counted).

``python -m validation.exp_task_seeds --out validation/data`` writes ``task_seeds.csv`` (one row per
net) and ``task_seeds.json`` (groups, headline).
"""
from __future__ import annotations

import json
import os

import numpy as np

import rnnperturb as rp
from validation.experiments import (CELL_LABEL, CHECKPOINT_DIR, cli, eval_task, fit_inputs, load,
                                    performance, rank_grid)

__all__ = ["task_statistics", "run", "headline", "markdown_table", "spread", "TASKS",
           "KNOB_REPEATS", "TABLE_ROWS", "flat_stats"]

NAME = "task_seeds"
TASKS = ("kback", "kback_mix", "ar_signal")
#: Repeat probabilities of the coherence knob (as ``validation.exp_coherence``, full mode).
KNOB_REPEATS = tuple(float(p) for p in np.round(np.arange(0.0, 0.91, 0.1), 2))
SEED_DIR = os.path.join(CHECKPOINT_DIR, "seeds")


def _late_C(cell, meta, *, seed: int, repeat: float | None = None) -> dict:
    """``exp_coherence._measure`` at steps T/2, 3T/4, T on 8 sequences (as that experiment)."""
    from validation.exp_coherence import _measure

    task = eval_task(meta, seed=seed, batch=8, repeat=repeat)
    T = task.T
    return _measure(cell, task.X, sorted({T // 2, (3 * T) // 4, T}))


def task_statistics(cell, meta: dict, *, seed: int = 0, quick: bool = False) -> dict:
    """Kept ranks and C of one k-back / k-back-mix / AR-signal net (see the module notes).

    Parameters
    ----------
    cell : ElmanRNN or MGRU
        With a readout, hidden size n.
    meta : dict
        The checkpoint metadata (``task`` and its generator parameters).
    seed : int
        Seed of the evaluation and fitting sequences (the experiments use 0).
    quick : bool
        Every 8th rank only (tests); the reported statistics use all ranks 0..n.

    Returns
    -------
    dict
        ``kept``: ``{"<eval>:<method>": kept rank or None}``; ``full_perf``: ``{eval: perf}``;
        ``curves``: ``{"<eval>:<method>": relative perf per rank}`` with ``ranks``; ``C`` (k-back,
        AR) or ``knob`` (k-back-mix: ``repeat``, ``C``, ``transition_C2``, ``lam``,
        ``transition_C2_scalar_law``).
    """
    from validation.exp_coherence import _transition
    from validation.exp_rank_performance import METHODS, _truncate, evaluations, kept_rank

    task_name = meta.get("task")
    if task_name not in TASKS:
        raise ValueError(f"meta['task']: expected one of {list(TASKS)}, found {task_name!r}")
    mom = rp.forcing_moments(cell, fit_inputs(meta, seed=seed, batch=64))
    ranks = rank_grid(cell.n, quick=quick)
    evals = [(lab, eval_task(meta, seed=seed, batch=256, repeat=rep))
             for lab, rep in evaluations(meta)]
    full = {lab: performance(cell, t)["perf"] for lab, t in evals}
    out = {"kept": {}, "full_perf": full, "curves": {}, "ranks": ranks}
    for method in METHODS:
        rel = {lab: [] for lab, _ in evals}
        for r in ranks:
            small = _truncate(cell, method, r, mom)
            for lab, t in evals:
                rel[lab].append(performance(small, t)["perf"] / full[lab])
        for lab, _ in evals:
            out["kept"][f"{lab}:{method}"] = kept_rank(ranks, rel[lab])
            out["curves"][f"{lab}:{method}"] = rel[lab]
    if task_name == "kback_mix":
        ms = [_late_C(cell, meta, seed=seed, repeat=p) for p in KNOB_REPEATS]
        Cs = [m["C"] for m in ms]
        lam = float(np.mean([m["lam"] for m in ms]))
        out["knob"] = {"repeat": list(KNOB_REPEATS), "C": Cs,
                       "transition_C2": _transition(list(KNOB_REPEATS), Cs), "lam": lam,
                       "transition_C2_scalar_law": 1 / (3 * lam) if 3 * lam > 1 else None}
    else:
        out["C"] = _late_C(cell, meta, seed=seed)["C"]
    return out


def flat_stats(stats: dict) -> dict:
    """The scalar statistics of :func:`task_statistics` as one flat dict (the data file's
    columns): ``kept_<eval>_<method>``, ``full_perf_<eval>``, ``C`` or the knob's ``C_p<p>``,
    ``transition_C2``, ``lam``, ``transition_C2_scalar_law``."""
    row = {}
    for k, v in stats["kept"].items():
        lab, method = k.split(":")
        row[f"kept_{lab}_{method}"] = v
    for lab, v in stats["full_perf"].items():
        row[f"full_perf_{lab}"] = v
    if "knob" in stats:
        kn = stats["knob"]
        for p, c in zip(kn["repeat"], kn["C"]):
            row[f"C_p{p:.1f}"] = c
        for k in ("transition_C2", "lam", "transition_C2_scalar_law"):
            row[k] = kn[k]
    else:
        row["C"] = stats["C"]
    return row


def _nets():
    """Rows (with ``checkpoint``, relative to the checkpoint directory) of every shipped task seed
    net and of the seed-1 nets; and the failed configurations of ``sweep.json``."""
    from validation.sweep import task_test_metric

    rows, failures = [], []
    index = os.path.join(SEED_DIR, "sweep.json")
    sweep = []
    if os.path.exists(index):
        with open(index) as f:
            sweep = [r for r in json.load(f)["results"] if r["task"] in TASKS]
    for r in sweep:
        base = {"cell": r["cell"], "task": r["task"], "n": r["hidden"], "seed": r["seed"],
                "steps": r["steps"], "solved_check": r["solved"], "test": r["test_metric"],
                "train_wall_time_s": r["train_wall_time_s"]}
        if r["shipped"] is None:
            failures.append(base)
            continue
        base["checkpoint"] = "seeds/" + r["shipped"]
        rows.append(base)
    for cellname in ("elman", "mgru"):
        for task in TASKS:
            name = f"{cellname}_{task}"
            with open(os.path.join(CHECKPOINT_DIR, name + ".json")) as f:
                rec = json.load(f)
            rows.append({"cell": cellname, "task": task, "n": int(rec["hidden"]),
                         "seed": int(rec["seed"]), "steps": int(rec["steps"]),
                         "solved_check": bool(rec["solved_check"]),
                         "test": task_test_metric(rec["final_test"], task),
                         "train_wall_time_s": float(rec["wall_time_s"]), "checkpoint": name})
    return rows, failures


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Per-net statistics (recomputed from the checkpoint files) and groups with spreads."""
    from validation.exp_seeds import summarize

    rows, failures = _nets()
    for row in rp.progress(rows, desc=NAME, quiet=quiet):
        cell, meta = rp.load_with_metadata(os.path.join(CHECKPOINT_DIR, row["checkpoint"] + ".npz"))
        row.update(flat_stats(task_statistics(cell, meta, seed=seed, quick=quick)))
    groups = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        g = groups.setdefault(f"{row['cell']}|{row['task']}",
                              {"cell": row["cell"], "task": row["task"], "n": row["n"],
                               "seeds": [], "failed_seeds": [], "rows": []})
        g["seeds"].append(row["seed"])
        g["rows"].append(row)
    for f in failures:
        g = groups.setdefault(f"{f['cell']}|{f['task']}",
                              {"cell": f["cell"], "task": f["task"], "n": f["n"], "seeds": [],
                               "failed_seeds": [], "rows": []})
        g["failed_seeds"].append(f["seed"])
    for g in groups.values():
        mine = g.pop("rows")
        cols = [k for k in mine[0] if k.startswith(("kept_", "full_perf_", "C", "transition",
                                                   "lam"))] + ["test", "train_wall_time_s"]
        for col in cols:
            g[col] = summarize([r.get(col) for r in mine])
    return {"name": NAME, "rows": rows, "groups": groups, "failures": failures,
            "meta": {"quick": quick, "seed": seed, "level": 0.99, "n_eval_sequences": 256,
                     "n_fit_sequences": 64, "C_sequences": 8, "knob_repeats": list(KNOB_REPEATS),
                     "sd": "sample standard deviation (ddof=1) over the seeds that trained"}}


def headline(result: dict) -> dict:
    """Per group: seeds, failed seeds, and [mean, sd, min, max, n] of every statistic."""
    def fmt(s):
        if s.get("n", 0) == 0:
            return None
        return [round(s["mean"], 3), None if s["sd"] is None else round(s["sd"], 3),
                s["min"], s["max"], s["n"]]
    return {k: {"seeds": g["seeds"], "failed": g["failed_seeds"],
                **{c: fmt(v) for c, v in g.items() if isinstance(v, dict)}}
            for k, g in sorted(result["groups"].items())}


#: README table rows: (task, evaluation label, kept-rank column stem, C column).
TABLE_ROWS = (("kback", "2-back", "own", "C"),
              ("kback_mix", "2-back-mix, repeat 0", "repeat=0.0", "C_p0.0"),
              ("kback_mix", "2-back-mix, repeat 0.9", "repeat=0.9", "C_p0.9"),
              ("ar_signal", "AR(1) denoising (R²)", "own", "C"))


def spread(s: dict, dec: int) -> str:
    """``mean ± sd (min–max)`` of a :func:`validation.exp_seeds.summarize` dict."""
    lo_hi = dec if dec >= 2 else 0
    return (f"{s['mean']:.{dec}f} ± {s['sd']:.{dec}f} "
            f"({s['min']:.{lo_hi}f}–{s['max']:.{lo_hi}f})")


def markdown_table(result: dict) -> str:
    """The README's "k-back and AR nets over seeds" table."""
    lines = ["| cell | task (evaluation) | seeds (failed) | kept ≥ 99 %, plain SVD | "
             "kept ≥ 99 %, data-aware SVD | C |", "|---|---|---|---|---|---|"]
    for task, label, ev, ccol in TABLE_ROWS:
        for cell in ("elman", "mgru"):
            g = result["groups"].get(f"{cell}|{task}")
            if g is None:
                continue
            lines.append(f"| {CELL_LABEL[cell]} | {label} | {len(g['seeds'])} "
                         f"({len(g['failed_seeds'])}) | {spread(g[f'kept_{ev}_svd'], 1)} | "
                         f"{spread(g[f'kept_{ev}_data'], 1)} | {spread(g[ccol], 2)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
