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
  from the certified deviation bound (tight tier) and the readout margins
  (:func:`rnnperturb.certified_recall`, DESIGN §2(e)); it must never exceed
  the measured accuracy, and the experiment counts violations. It is the
  costly column, so it is evaluated on every 8th rank (quick: every 16th, and
  only at delay 20); the full certified-recall study with both tiers and the
  oracle certificates is ``validation/exp_certified_recall.py``.

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


TIER = "tight"   # the fast tier's rounding margin saturates at the cap on these nets


def _certified_fraction(cell, small, task):
    """Fractions of recall steps and of sequences certified correct (NaN when
    the library's certified recall is not available in this build)."""
    fn = getattr(rp, "certified_recall", None)
    if fn is None:
        return float("nan"), float("nan")
    res = fn(cell, small, task, tier=TIER)
    return float(np.mean(res.step_certified)), float(res.certified_accuracy)


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Measured, first-order-predicted and certified recall accuracy at every rank."""
    rows = []
    names = checkpoint_names(task="memorization")
    cert_step = 16 if quick else 8          # the certificate is the costly column
    for name in rp.progress(names, desc="recall prediction", quiet=quiet):
        cell, meta = load(name)
        task = eval_task(meta, seed=seed)
        H = cell.run(task.X)
        cert_ranks = set(rank_grid(cell.n, quick=True, step_quick=cert_step))
        if quick and int(meta["D"]) != 20:
            cert_ranks = set()
        for r in rank_grid(cell.n, quick=quick, step_quick=4):
            small = rp.truncate_svd(cell, rank=r)
            Hs = small.run(task.X)
            meas = performance(cell, task, Hs)       # readout is the nominal one
            Hp = H + rp.first_order(cell, small, task.X)
            pred = performance(cell, task, Hp)
            ok_m = np.argmax(cell.readout(Hs), -1) == task.targets
            ok_p = np.argmax(cell.readout(Hp), -1) == task.targets
            cert, cert_seq = (_certified_fraction(cell, small, task) if r in cert_ranks
                              else (float("nan"), float("nan")))
            rows.append({"checkpoint": name, "cell": cell.kind, "D": int(meta["D"]), "n": cell.n,
                         "rank": r, "measured": meas["perf"], "measured_seq": meas["sequence"],
                         "predicted": pred["perf"], "predicted_seq": pred["sequence"],
                         "agreement": float((ok_m == ok_p)[task.recall].mean()),
                         "certified": cert, "certified_seq": cert_seq})
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "tier": TIER, "certified_rank_step": cert_step,
                     "certified_available": hasattr(rp, "certified_recall")}}


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
    fin = np.isfinite(cert)
    if fin.any():
        out["certified_violations"] = int(np.sum(cert[fin] > meas[fin] + 1e-12))
        out["certified_mean_gap"] = float(np.mean(meas[fin] - cert[fin]))
        out["n_certified_points"] = int(fin.sum())
    per = {}
    for ck in sorted({r["checkpoint"] for r in rows}):
        rr = [r for r in rows if r["checkpoint"] == ck]
        per[ck] = {"empirical_safe_rank": _safe_rank(rr, "measured_seq"),
                   "predicted_safe_rank": _safe_rank(rr, "predicted_seq")}
        rc = [r for r in rr if np.isfinite(r["certified_seq"])]
        if rc:   # on the coarser grid of certified ranks
            per[ck]["certified_safe_rank"] = _safe_rank(rc, "certified_seq")
    out["safe_ranks"] = per
    return out


def write(result: dict, out_dir: str) -> list[str]:
    return write_result(result, out_dir, headline(result))


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
