r"""Certified recall against rank for every memorization checkpoint (issue 4, item 3).

For every shipped memorization checkpoint and retained rank r (plain SVD,
the same r for every recurrent matrix, :func:`rnnperturb.truncate_svd`) on
all 32 sequences of the 5-bit task (:func:`rnnperturb.tasks.memorization_all`):

* **measured** recall: the exact perturbed trajectory's arg-max at every
  recall step (a sequence counts when all 5 steps are right);
* **certified** recall (:func:`rnnperturb.certified_recall`) with the certified
  bound of both tiers (``fast``, ``tight``);
* **first-order** point prediction (arg-max of :math:`y + V\ell`);
* the *oracle* certificates: the same per-class test with the exact
  :math:`\|e_t\|` as the bound (``oracle``), and with the exact :math:`|e_t|`
  componentwise as well (``oracle_cw``). They separate the two losses between
  measured and certified recall: the test itself (Cauchy–Schwarz,
  :math:`|(V_y-V_j)^\top e| \le \|V_y-V_j\|\|e\|`, or
  :math:`\le |V_y-V_j|^\top|e|`) and the looseness of the bound;
* the *global* bound (:func:`rnnperturb.bounds.global_bound`, inputs of norm 1 as in
  the task's one-hot inputs) used as the certificate (every 8th rank and n).

Per checkpoint: the certified-safe rank (smallest rank with 32/32 certified),
the empirically safe rank (smallest rank with 32/32 correct), the gap in % of
n (goal <= 10 %), and the median bound / exact ratio at the recall steps for
every rank with measured accuracy >= 99 % (goal <= 2).

Ranks: every rank 0..n (``--quick``: every 4th rank, then every rank just
below each first-full point, so the safe ranks are still exact).
Output: ``certified_recall.csv`` (one row per checkpoint and rank) and
``certified_recall.json`` (per-checkpoint summary).
Run: ``python -m validation.exp_certified_recall --out validation/results``.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

import rnnperturb as rp
from rnnperturb.bounds.recall import certified_recall, recall_margins
from validation.experiments import checkpoint_names, cli, load

__all__ = ["run", "headline", "evaluate_rank"]

NAME = "certified_recall"
TIERS = ("fast", "tight")


def _oracle_bound(cell, other, X):
    """Exact ||e_t|| inflated far above its float64 rounding (the oracle certificate;
    not a certified bound)."""
    return np.linalg.norm(rp.deviation(cell, other, X), axis=-1) * (1 + 1e-9) + 1e-12


def evaluate_rank(cell, task, r, margins, *, with_global: bool = True) -> dict:
    """All the numbers of one rank of one checkpoint (a CSV row)."""
    other = rp.truncate_svd(cell, rank=int(r))
    X = task.X
    E = np.linalg.norm(rp.deviation(cell, other, X), axis=-1)            # (T, B)
    rec = task.recall
    row = {"rank": int(r)}
    oracle = certified_recall(cell, other, task, bound=_oracle_bound(cell, other, X),
                              margins=margins)
    absE = np.abs(rp.deviation(cell, other, X)) * (1 + 1e-9) + 1e-12
    oracle_cw = certified_recall(cell, other, task, bound=_oracle_bound(cell, other, X),
                                 componentwise_bound=absE, margins=margins)
    row.update(accuracy=oracle.accuracy, predicted_accuracy=oracle.predicted_accuracy,
               oracle_certified_accuracy=oracle.certified_accuracy,
               oracle_cw_certified_accuracy=oracle_cw.certified_accuracy,
               exact_dev_recall_max=float(E[rec].max()))
    for tier in TIERS:
        t0 = time.perf_counter()
        res = certified_recall(cell, other, task, tier=tier, margins=margins)
        row[f"{tier}_seconds"] = time.perf_counter() - t0
        row[f"{tier}_certified_accuracy"] = res.certified_accuracy
        m = rec & (E > 0)
        row[f"{tier}_ratio_median"] = float(np.median(res.bound[m] / E[m])) if m.any() else 1.0
        row[f"{tier}_ratio_max"] = float(np.max(res.bound[m] / E[m])) if m.any() else 1.0
        row[f"{tier}_bound_recall_max"] = float(res.bound[rec].max())
        assert np.all(res.correct[res.certified]), "certified but wrong: unsound bound"
    if not with_global:
        return row
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        G = rp.global_bound(cell, other, horizon=task.T, input_norm=1.0, full_output=True)
    gres = certified_recall(cell, other, task,
                            bound=np.repeat(G.bound[:, None], task.B, axis=1), margins=margins)
    row.update(global_certified_accuracy=gres.certified_accuracy,
               global_bound_recall_max=float(G.bound[rec[:, 0]].max()),
               global_vacuous=bool(G.vacuous), global_rate=G.rate)
    return row


def _first_full(rows, key):
    rows = sorted((d for d in rows if key in d), key=lambda d: d["rank"])
    for d in rows:
        if d[key] >= 1.0:
            return d["rank"]
    return None


def _full_from(rows, key):
    rows = sorted((d for d in rows if key in d), key=lambda d: d["rank"])
    if not rows or rows[-1][key] < 1.0:
        return None
    i = len(rows) - 1
    while i > 0 and rows[i - 1][key] >= 1.0:
        i -= 1
    return rows[i]["rank"]


KEYS = {"empirical": "accuracy", "fast": "fast_certified_accuracy",
        "tight": "tight_certified_accuracy", "oracle": "oracle_certified_accuracy",
        "oracle_cw": "oracle_cw_certified_accuracy",
        "first_order": "predicted_accuracy", "global": "global_certified_accuracy"}


def _one_thread():
    """BLAS limited to one thread (the machine is shared; LAPACK on small
    matrices is much faster single-threaded under load)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(1, user_api="blas")
    except ImportError:  # pragma: no cover
        import contextlib
        return contextlib.nullcontext()


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Certified, oracle, predicted and measured recall at every rank of every
    memorization checkpoint."""
    with _one_thread():
        return _run(quick=quick, quiet=quiet)


def _run(*, quick: bool, quiet: bool) -> dict:
    rows, summary = [], {}
    for name in checkpoint_names(task="memorization"):
        cell, meta = load(name)
        if cell.V is None:
            continue
        task = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"])
        margins = recall_margins(cell, task)
        n = cell.n
        grid = list(range(0, n + 1, 4 if quick else 1))
        if grid[-1] != n:
            grid.append(n)
        done = {}
        todo = list(grid)
        for _ in range(3):                     # refine below each first-full point
            for r in rp.progress(todo, desc=name, quiet=quiet):
                if r not in done:
                    done[r] = evaluate_rank(cell, task, r, margins,
                                            with_global=(r % 8 == 0 or r == n))
            cur = list(done.values())
            todo = []
            for key in KEYS.values():
                if key.startswith("global"):
                    continue
                f = _first_full(cur, key)
                if f is not None:
                    todo += [r for r in range(max(0, f - 4), f) if r not in done]
            if not todo:
                break
        ck_rows = sorted(done.values(), key=lambda d: d["rank"])
        for d in ck_rows:
            rows.append({"checkpoint": name, "cell": cell.kind, "n": n, "D": meta["D"], **d})
        s = {"cell": cell.kind, "n": n, "D": meta["D"]}
        for lab, key in KEYS.items():
            s[f"{lab}_safe_rank"] = _first_full(ck_rows, key)
            s[f"{lab}_safe_from"] = _full_from(ck_rows, key)
        for lab in ("fast", "tight", "oracle", "oracle_cw", "first_order", "global"):
            c, e = s[f"{lab}_safe_rank"], s["empirical_safe_rank"]
            s[f"{lab}_gap"] = None if c is None or e is None else c - e
            s[f"{lab}_gap_pct_n"] = None if c is None or e is None else 100.0 * (c - e) / n
        good = [d for d in ck_rows if d["accuracy"] >= 0.99 and d["rank"] < n]
        for tier in TIERS:
            s[f"{tier}_ratio_median_good_ranks_max"] = (
                max(d[f"{tier}_ratio_median"] for d in good) if good else None)
            s[f"{tier}_ratio_median_good_ranks_median"] = (
                float(np.median([d[f"{tier}_ratio_median"] for d in good])) if good else None)
            s[f"{tier}_seconds_per_rank"] = float(np.median([d[f"{tier}_seconds"] for d in ck_rows]))
        s["global_any_certified"] = any(d["global_certified_accuracy"] > 0
                                        for d in ck_rows
                                        if d["rank"] < n and "global_certified_accuracy" in d)
        s["global_vacuous_all"] = all(d["global_vacuous"] for d in ck_rows
                                      if "global_vacuous" in d)
        summary[name] = s
    return {"name": NAME, "rows": rows, "summary": summary, "quick": quick,
            "ranks": "every rank" if not quick else "every 4th, refined below first-full points"}


def headline(res: dict) -> dict:
    """Per checkpoint: safe ranks (empirical, certified fast/tight, oracle,
    first order) and the gap in % of n."""
    out = {}
    for name, s in res["summary"].items():
        out[name] = {k: s[k] for k in (
            "empirical_safe_rank", "fast_safe_rank", "tight_safe_rank", "oracle_safe_rank",
            "oracle_cw_safe_rank",
            "first_order_safe_rank", "global_safe_rank", "tight_gap_pct_n", "fast_gap_pct_n",
            "oracle_gap_pct_n", "tight_ratio_median_good_ranks_max")}
    return out


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
