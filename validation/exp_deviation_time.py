r"""(b) Hidden-state deviation over time on the memorization checkpoints.

For every memorization checkpoint and a few retained ranks r, with
``small = truncate_svd(cell, rank=r)`` and the 32 exact sequences ``X``:

* exact deviation :math:`\|e_t\|_2` from :func:`rnnperturb.deviation`,
* the first-order prediction :math:`\|\ell_t\|_2` from
  :func:`rnnperturb.first_order`,
* the certified upper bound from :func:`rnnperturb.certified_bound`
  (tight tier),

each summarised over the 32 sequences by its maximum and median at every time
step t. Output: ``deviation_time.csv`` (one row per checkpoint, rank and t)
and ``deviation_time.json`` (including, per checkpoint and rank, the median
over recall steps and sequences of first-order/exact and bound/exact).
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from validation.experiments import checkpoint_names, cli, eval_task, load, write_result

__all__ = ["run", "headline", "write", "RANKS"]

NAME = "deviation_time"
RANKS = (48, 32, 16)
RANKS_QUICK = (32, 16)
TIER = "tight"   # multi-step propagator norms; the fast tier saturates at the cap here


def _certified_bound():
    """:func:`rnnperturb.certified_bound` (None if this build lacks it)."""
    fn = getattr(rp, "certified_bound", None)
    if fn is None:
        try:
            from rnnperturb.bounds.trajectory import certified_bound as fn
        except ImportError:
            return None
    return fn


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Exact, first-order and certified deviation over time (``seed`` unused:
    the 32 sequences are enumerated)."""
    rows, ratios = [], []
    names = checkpoint_names(task="memorization")
    if quick:   # one delay per cell
        names = [n for n in names if n.endswith("_D20")] or names[:2]
    certified_bound = _certified_bound()
    have_bound = certified_bound is not None
    for name in rp.progress(names, desc="deviation over time", quiet=quiet):
        cell, meta = load(name)
        task = eval_task(meta, seed=seed)
        recall = task.recall[:, 0]
        for r in (RANKS_QUICK if quick else RANKS):
            small = rp.truncate_svd(cell, rank=r)
            E = np.linalg.norm(rp.deviation(cell, small, task.X), axis=-1)      # (T, B)
            L = np.linalg.norm(rp.first_order(cell, small, task.X), axis=-1)
            Bd = (np.asarray(certified_bound(cell, small, task.X, tier=TIER)) if have_bound
                  else np.full_like(E, np.nan))
            for t in range(E.shape[0]):
                rows.append({"checkpoint": name, "cell": cell.kind, "D": int(meta["D"]),
                             "n": cell.n, "rank": r, "t": t + 1, "recall": bool(recall[t]),
                             "exact_max": float(E[t].max()), "exact_median": float(np.median(E[t])),
                             "first_order_max": float(L[t].max()),
                             "first_order_median": float(np.median(L[t])),
                             "bound_max": float(Bd[t].max()),
                             "bound_median": float(np.median(Bd[t]))})
            m = E[recall] > 0
            ratios.append({"checkpoint": name, "cell": cell.kind, "D": int(meta["D"]), "rank": r,
                           "recall_exact_max": float(E[recall].max()),
                           "recall_first_order_max": float(L[recall].max()),
                           "recall_bound_max": float(Bd[recall].max()),
                           "median_fo_over_exact": float(np.median(L[recall][m] / E[recall][m])),
                           "median_bound_over_exact": float(np.median(Bd[recall][m] / E[recall][m]))})
    return {"name": NAME, "rows": rows, "ratios": ratios,
            "meta": {"quick": quick, "certified_bound_available": have_bound,
                     "ranks": list(RANKS_QUICK if quick else RANKS), "tier": TIER}}


def headline(result: dict) -> dict:
    """Median first-order/exact and bound/exact on the recall steps."""
    return {f"{q['checkpoint']} r={q['rank']}": {
        "fo/exact": q["median_fo_over_exact"], "bound/exact": q["median_bound_over_exact"],
        "recall max exact": q["recall_exact_max"]} for q in result["ratios"]}


def write(result: dict, out_dir: str) -> list[str]:
    return write_result(result, out_dir, headline(result))


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
