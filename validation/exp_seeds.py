r"""Seeds and error bars (issue 14, items 2-3): kept ranks and C_t over seeds, sizes and recipes.

Inputs: the memorization checkpoints of ``validation/checkpoints/seeds/`` (trained by
``python -m validation.sweep --plan issue14 --workers 1 --cache CACHE --ship
validation/checkpoints/seeds``; ``sweep.json`` there lists every configuration, failures included)
and the shipped seed-1 checkpoints ``validation/checkpoints/<cell>_memorization_D<D>`` (every
cell: tanh RNN, MGRU, GRU, LSTM; D = 10, 20, 50; n = 64,
default recipes); the k-back and AR-signal seeds listed in the same ``sweep.json`` are
:mod:`validation.exp_task_seeds`'. Per net:

* the rank statistics of :func:`validation.rank_stats.rank_statistics` (plain and identity-aware
  SVD): ``kept_99`` (>= 99 % recall accuracy, one wrong bit in 160 allowed), ``kept_all32``
  (all 32 sequences), ``auc_rank`` (area above the relative accuracy curve, in ranks) and
  ``margin_kept`` (mean readout margin >= 1/2 of full). For the sweep's nets they are read from
  ``sweep.json`` (computed by the sweep on the same weights; ``tests/test_sweep_runner.py``
  recomputes some from the shipped files); for the seed-1 nets they are computed here.
* ``C``: the first-order frozen/fresh noise ratio :math:`C_t` averaged over the recall steps and
  all 32 sequences (``rp.noise_response``, as ``validation.exp_coherence``).

Groups: (cell, recipe, D, n). Each group reports, per statistic, the per-seed values, mean, sd
(ddof = 1), median, min and max, and the seeds that failed to train (recorded, not counted).

``python -m validation.exp_seeds --out validation/results`` writes ``seeds.csv`` (one row per net)
and ``seeds.json`` (groups and headline). ``--quick``: C_t on every 4th sequence.
"""
from __future__ import annotations

import json
import os

import numpy as np

import rnnperturb as rp
from rnnperturb import tasks
from validation.experiments import CELL_LABEL, CHECKPOINT_DIR, cli, load
from validation.rank_stats import rank_statistics

__all__ = ["run", "headline", "recall_C", "summarize", "SEED_DIR", "STATS"]

NAME = "seeds"
SEED_DIR = os.path.join(CHECKPOINT_DIR, "seeds")
STATS = ("kept_99", "kept_all32", "auc_rank", "margin_kept")


def recall_C(cell, meta: dict, *, stride: int = 1) -> float:
    """Mean over the recall steps and sequences of the frozen/fresh ratio :math:`C_t`
    (first order, i.i.d. noise on every recurrent entry; the ratio does not depend on its size)."""
    K, L, D = int(meta["K"]), int(meta["L"]), int(meta["D"])
    X = tasks.memorization_all(K, L, D).X[:, ::stride]
    times = list(range(L + D + 2, 2 * L + D + 2))
    fz = rp.noise_response(cell, X, std=1.0, times=times)
    fr = rp.noise_response(cell, X, std=1.0, frozen=False)[np.asarray(times) - 1]
    return float(np.mean(fz / fr))


def summarize(values) -> dict:
    """mean, sd (ddof=1), median, min, max and count of the finite values (None = not reached)."""
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        return {"values": list(values), "n": 0}
    return {"values": list(values), "n": int(ok.size), "mean": float(ok.mean()),
            "sd": float(ok.std(ddof=1)) if ok.size > 1 else None,
            "median": float(np.median(ok)), "min": float(ok.min()), "max": float(ok.max())}


def _variant(recipe_name: str | None) -> str:
    """Recipe label of a sweep entry: 'default', 'matched_<tag>' for the matched recipes, else the
    recipe name after its checkpoint prefix (``elman_memorization_D20_lr1e-3`` -> 'lr1e-3')."""
    if recipe_name is None:
        return "default"
    if "_matched_" in recipe_name:
        return "matched_" + recipe_name.split("_matched_", 1)[1]
    parts = recipe_name.split("_", 3)           # <cell>_memorization_D<D>_<tag>
    return parts[3] if len(parts) == 4 else recipe_name


def sweep_results(task: str = "memorization") -> list[dict]:
    """The entries of ``SEED_DIR/sweep.json`` (failures included) of one task, in file order
    (entries written before tasks other than memorization existed have no ``task`` key)."""
    with open(os.path.join(SEED_DIR, "sweep.json")) as f:
        return [r for r in json.load(f)["results"] if r.get("task", "memorization") == task]


def _nets(quiet: bool):
    """(row, cell, meta) for every shipped seed checkpoint and the seed-1 nets; and failures."""
    out, failures = [], []
    for r in sweep_results():        # the k-back / AR seeds: validation.exp_task_seeds
        base = {"cell": r["cell"], "variant": _variant(r["recipe"]), "D": r["D"],
                "n": r["hidden"], "seed": r["seed"], "steps": r["steps"],
                "n_correct": r["n_correct"], "solved_check": r["solved"],
                "min_p_recall": r.get("min_p_recall")}
        if r["shipped"] is None:
            failures.append(base)
            continue
        base["checkpoint"] = "seeds/" + r["shipped"]
        for m, st in r["stats"].items():
            for k in STATS:
                base[f"{m}_{k}"] = st[k]
        out.append(base)
    for cellname in ("elman", "mgru", "gru", "lstm"):
        for D in (10, 20, 50):
            name = f"{cellname}_memorization_D{D}"
            if not os.path.exists(os.path.join(CHECKPOINT_DIR, name + ".npz")):
                raise FileNotFoundError(f"seed-1 checkpoint {name!r}: expected "
                                        f"{os.path.join(CHECKPOINT_DIR, name + '.npz')}")
            cell, meta = load(name)
            st = rank_statistics(cell, meta)
            row = {"cell": cellname, "variant": "default", "D": D, "n": cell.n,
                   "seed": int(meta["seed"]), "checkpoint": name}
            for m, s in st.items():
                for k in STATS:
                    row[f"{m}_{k}"] = s[k]
            out.append(row)
    return out, failures


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Per-net statistics and C_t; groups with spreads. ``seed`` is unused (deterministic)."""
    rows, failures = _nets(quiet)
    for row in rp.progress(rows, desc=NAME, quiet=quiet):
        cell, meta = rp.load_with_metadata(os.path.join(CHECKPOINT_DIR, row["checkpoint"] + ".npz"))
        row["C"] = recall_C(cell, meta, stride=4 if quick else 1)
        Y = cell.readout(cell.run(tasks.memorization_all(int(meta["K"]), int(meta["L"]),
                                                         int(meta["D"])).X))
        row["n_correct_check"] = int(round(32 * rp.metrics.sequence_accuracy(
            Y, tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"])))))
    groups = {}
    for row in rows:
        g = groups.setdefault(f"{row['cell']}|{row['variant']}|D{row['D']}|n{row['n']}",
                              {"cell": row["cell"], "variant": row["variant"], "D": row["D"],
                               "n": row["n"], "seeds": [], "failed_seeds": []})
        g["seeds"].append(row["seed"])
    for f in failures:
        key = f"{f['cell']}|{f['variant']}|D{f['D']}|n{f['n']}"
        groups.setdefault(key, {"cell": f["cell"], "variant": f["variant"], "D": f["D"],
                                "n": f["n"], "seeds": [], "failed_seeds": []})
        groups[key]["failed_seeds"].append(f["seed"])
    for key, g in groups.items():
        mine = sorted((r for r in rows if f"{r['cell']}|{r['variant']}|D{r['D']}|n{r['n']}" == key),
                      key=lambda r: r["seed"])
        g["seeds"] = [r["seed"] for r in mine]
        for col in [f"{m}_{k}" for m in ("svd", "identity") for k in STATS] + ["C"]:
            g[col] = summarize([r[col] for r in mine])
    return {"name": NAME, "rows": rows, "groups": groups, "failures": failures,
            "meta": {"quick": quick, "seed": seed, "seed_dir": os.path.relpath(SEED_DIR),
                     "sd": "sample standard deviation (ddof=1) over the seeds that trained"}}


def headline(result: dict) -> dict:
    def fmt(s):
        if s.get("n", 0) == 0:
            return None
        return [round(s["mean"], 2), None if s["sd"] is None else round(s["sd"], 2),
                s["min"], s["max"], s["n"]]
    return {k: {"seeds": g["seeds"], "failed": g["failed_seeds"],
                **{c: fmt(g[c]) for c in ("svd_kept_99", "svd_kept_all32", "svd_auc_rank",
                                          "svd_margin_kept", "identity_kept_99",
                                          "identity_auc_rank", "C")}}
            for k, g in sorted(result["groups"].items())}


_COLS = ("svd_kept_99", "svd_kept_all32", "svd_auc_rank", "svd_margin_kept", "identity_kept_99",
         "C")


def markdown_table(result: dict) -> str:
    """The README's "Kept rank over seeds" table (groups with >= 2 trained seeds)."""
    def cell(s, dec):
        return (f"{s['mean']:.{dec}f} ± {s['sd']:.{dec}f} "
                f"({s['min']:.{dec if dec == 2 else 0}f}–{s['max']:.{dec if dec == 2 else 0}f})")

    def auc(s):
        return f"{s['mean']:.1f} ± {s['sd']:.1f} ({s['min']:.1f}–{s['max']:.1f})"
    lines = ["| cell | recipe | D | n | seeds (failed) | kept ≥ 99 % | kept 32/32 | AUC rank | "
             "margin kept | identity-aware kept ≥ 99 % | C_t at recall |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(result["groups"].values(),
                   key=lambda g: (g["variant"] != "default", g["n"], g["D"], g["cell"],
                                  g["variant"]))
    for g in order:
        if g["svd_kept_99"].get("n", 0) < 2:
            continue
        cols = [cell(g[c], 1) if c != "svd_auc_rank" else auc(g[c]) for c in _COLS[:-1]]
        cols.append(cell(g["C"], 2))
        lines.append(f"| {CELL_LABEL[g['cell']]} | {g['variant']} | {g['D']} | {g['n']} | "
                     f"{len(g['seeds'])} ({len(g['failed_seeds'])}) | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
