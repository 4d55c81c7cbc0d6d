r"""(c) Predicted against measured recall accuracy, across retained rank and delay D.

For every memorization checkpoint and retained rank r (plain SVD,
:func:`rnnperturb.truncate_svd`), on the 32 exact sequences:

* **measured**: recall accuracy of the truncated net (fraction of the
  32 x 5 recall steps whose arg-max is right) and its sequence accuracy;
* **first-order prediction**: the same scores computed from the predicted
  states :math:`h_t + \ell_t` (:func:`rnnperturb.first_order`), and the
  *agreement*, the fraction of recall steps whose predicted correctness equals
  the measured one;
* **certified lower bound**: the fraction of recall steps certified correct
  from the certified deviation bound and the readout margins
  (:func:`rnnperturb.certified_recall`, DESIGN §2(e)); it must never exceed
  the measured accuracy, and the experiment counts violations.

Output: ``recall_prediction.csv`` (one row per checkpoint and rank) and
``recall_prediction.json`` (fit accuracy: mean absolute error, max error and
agreement over all points; violations of the certified bound; the
certified-safe and empirically safe ranks per checkpoint).
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from validation.experiments import (checkpoint_names, cli, eval_task, load, performance,
                                    rank_grid, write_result)

__all__ = ["run", "headline", "write"]

NAME = "recall_prediction"


def _certified_fraction(cell, small, task):
    """Fraction of recall steps certified correct (NaN when the library's
    certified recall is not available in this build)."""
    fn = getattr(rp, "certified_recall", None)
    if fn is None:
        return float("nan"), float("nan")
    res = fn(cell, small, task)
    ok = np.asarray(res.certified)            # (T, B) bool, recall steps
    rec = task.recall
    return float(ok[rec].mean()), float(np.all(ok | ~rec, axis=0).mean())


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Measured, first-order-predicted and certified recall accuracy at every rank."""
    rows = []
    names = checkpoint_names(task="memorization")
    for name in rp.progress(names, desc="recall prediction", quiet=quiet):
        cell, meta = load(name)
        task = eval_task(meta, seed=seed)
        H = cell.run(task.X)
        Y = cell.readout(H)
        for r in rank_grid(cell.n, quick=quick, step_quick=4):
            small = rp.truncate_svd(cell, rank=r)
            Hs = small.run(task.X)
            meas = performance(cell, task, Hs)       # readout is the nominal one
            Hp = H + rp.first_order(cell, small, task.X)
            pred = performance(cell, task, Hp)
            ok_m = np.argmax(cell.readout(Hs), -1) == task.targets
            ok_p = np.argmax(cell.readout(Hp), -1) == task.targets
            cert, cert_seq = _certified_fraction(cell, small, task)
            rows.append({"checkpoint": name, "cell": cell.kind, "D": int(meta["D"]), "n": cell.n,
                         "rank": r, "measured": meas["perf"], "measured_seq": meas["sequence"],
                         "predicted": pred["perf"], "predicted_seq": pred["sequence"],
                         "agreement": float((ok_m == ok_p)[task.recall].mean()),
                         "certified": cert, "certified_seq": cert_seq})
        del Y
    return {"name": NAME, "rows": rows, "meta": {"quick": quick, "seed": seed,
                                                  "certified_available":
                                                      hasattr(rp, "certified_recall")}}


def _safe_rank(rows, key):
    """Smallest rank from which on every larger rank has ``key`` == 1."""
    rows = sorted(rows, key=lambda r: r["rank"])
    ok = [r[key] == 1.0 for r in rows]
    if not ok[-1]:
        return None
    k = len(ok) - 1
    while k > 0 and ok[k - 1]:
        k -= 1
    return rows[k]["rank"]


def headline(result: dict) -> dict:
    rows = result["rows"]
    err = np.array([r["predicted"] - r["measured"] for r in rows])
    cert = np.array([r["certified"] for r in rows])
    meas = np.array([r["measured"] for r in rows])
    out = {"first_order_mae": float(np.mean(np.abs(err))),
           "first_order_max_abs_error": float(np.max(np.abs(err))),
           "first_order_agreement_mean": float(np.mean([r["agreement"] for r in rows])),
           "n_points": len(rows)}
    hi = meas >= 0.9
    if hi.any():
        out["first_order_mae_where_measured_ge_0.9"] = float(np.mean(np.abs(err[hi])))
        out["n_points_measured_ge_0.9"] = int(hi.sum())
    if np.all(np.isfinite(cert)):
        out["certified_violations"] = int(np.sum(cert > meas + 1e-12))
        out["certified_mean_gap"] = float(np.mean(meas - cert))
    per = {}
    for ck in sorted({r["checkpoint"] for r in rows}):
        rr = [r for r in rows if r["checkpoint"] == ck]
        per[ck] = {"empirical_safe_rank": _safe_rank(rr, "measured_seq"),
                   "predicted_safe_rank": _safe_rank(rr, "predicted_seq")}
        if np.all(np.isfinite([r["certified_seq"] for r in rr])):
            per[ck]["certified_safe_rank"] = _safe_rank(rr, "certified_seq")
    out["safe_ranks"] = per
    return out


def write(result: dict, out_dir: str) -> list[str]:
    return write_result(result, out_dir, headline(result))


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
