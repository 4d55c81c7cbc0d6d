r"""(a) Task performance against retained rank, without fine tuning.

For every shipped checkpoint (both cells, every task) and every retained rank
r (the same r for ``Wf`` and ``Wh`` in the MGRU), the recurrent matrices are
truncated

* by plain SVD, :func:`rnnperturb.truncate_svd` (Eckart–Young), and
* by data-aware SVD, ``truncate_svd(cell, rank=r, data=X_fit)``: the rank-r
  matrix that minimises the mean squared forcing on a *separate* sample of
  task inputs ``X_fit`` (:func:`validation.experiments.fit_inputs`); the
  forcing moments are computed once per checkpoint
  (:func:`rnnperturb.forcing_moments`) and each rank is then
  :func:`rnnperturb.weighted_low_rank`, which is what ``truncate_svd`` does,

and the truncated net is scored, with no retraining, on held-out inputs: all
32 sequences of the 5-bit memorization task (exact), fresh sequences
otherwise (:func:`validation.experiments.eval_task`). The k-back net trained
on mixed repeat probabilities (``kback_mix``) is evaluated at repeat 0 (low
temporal coherence) and 0.9 (high), so one network gives the coherence
contrast.

Output: ``rank_performance.csv`` (one row per checkpoint, evaluation,
method and rank) and ``rank_performance.json``.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from validation.experiments import (checkpoint_names, cli, eval_task, fit_inputs, load,
                                    performance, rank_grid, write_result)

__all__ = ["run", "headline", "write", "kept_rank", "evaluations"]

NAME = "rank_performance"
METHODS = ("svd", "data")


def evaluations(meta: dict) -> list[tuple[str, float | None]]:
    """The (label, repeat) evaluations of a checkpoint."""
    if meta["task"] == "kback_mix":
        return [("repeat=0.0", 0.0), ("repeat=0.9", 0.9)]
    return [("own", None)]


def kept_rank(ranks, relative, *, level: float = 0.99):
    """Smallest rank from which on *every* larger evaluated rank keeps
    ``relative >= level`` (None if even full rank does not)."""
    ranks = np.asarray(ranks)
    ok = np.asarray(relative) >= level
    order = np.argsort(ranks)
    ranks, ok = ranks[order], ok[order]
    if not ok[-1]:
        return None
    bad = np.nonzero(~ok)[0]
    return int(ranks[0] if bad.size == 0 else ranks[bad[-1] + 1])


def _data_aware(cell, r, mom):
    """``truncate_svd(cell, rank=r, data=X)`` given ``mom = forcing_moments(cell, X)``."""
    return cell.replace(**{k: rp.weighted_low_rank(W, rank=r, moment=mom[k])
                           for k, W in cell.recurrent.items()})


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Performance of SVD- and data-aware-truncated checkpoints at every rank."""
    rows = []
    names = checkpoint_names()
    n_eval = 128 if quick else 256
    for name in rp.progress(names, desc="rank performance", quiet=quiet):
        cell, meta = load(name)
        mom = rp.forcing_moments(cell, fit_inputs(meta, seed=seed, batch=64))
        ranks = rank_grid(cell.n, quick=quick)
        evals = [(lab, eval_task(meta, seed=seed, batch=n_eval, repeat=rep))
                 for lab, rep in evaluations(meta)]
        base = {lab: performance(cell, task) for lab, task in evals}
        for method in METHODS:
            for r in ranks:
                small = (rp.truncate_svd(cell, rank=r) if method == "svd"
                         else _data_aware(cell, r, mom))
                for lab, task in evals:
                    p = performance(small, task)
                    row = {"checkpoint": name, "cell": cell.kind, "task": meta["task"],
                           "D": int(meta.get("D", -1)), "eval": lab, "method": method,
                           "n": cell.n, "rank": r, "perf": p["perf"],
                           "full_perf": base[lab]["perf"],
                           "relative": p["perf"] / base[lab]["perf"]}
                    if "sequence" in p:
                        row["sequence"] = p["sequence"]
                    rows.append(row)
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "n_eval_sequences": n_eval,
                     "n_fit_sequences": 64, "level": 0.99}}


def kept_ranks(result: dict, *, level: float = 0.99) -> list[dict]:
    """Kept rank (see :func:`kept_rank`) per checkpoint, evaluation and method."""
    rows = result["rows"]
    keys = sorted({(r["checkpoint"], r["eval"], r["method"]) for r in rows})
    out = []
    for ck, ev, me in keys:
        rr = [r for r in rows if (r["checkpoint"], r["eval"], r["method"]) == (ck, ev, me)]
        out.append({"checkpoint": ck, "eval": ev, "method": me, "cell": rr[0]["cell"],
                    "task": rr[0]["task"], "D": rr[0]["D"], "n": rr[0]["n"],
                    "full_perf": rr[0]["full_perf"],
                    "kept_rank": kept_rank([r["rank"] for r in rr],
                                           [r["relative"] for r in rr], level=level)})
    return out


def headline(result: dict) -> dict:
    """Kept rank at >= 99 % of full performance per checkpoint/evaluation/method,
    and the low/high-coherence ratios of kept rank."""
    kr = kept_ranks(result)
    out = {"kept_rank_99": {f"{k['checkpoint']}[{k['eval']}]:{k['method']}": k["kept_rank"]
                            for k in kr}}
    ratios = {}
    for k in kr:
        if k["task"] == "kback_mix" and k["eval"] == "repeat=0.0":
            hi = [q for q in kr if q["checkpoint"] == k["checkpoint"]
                  and q["eval"] == "repeat=0.9" and q["method"] == k["method"]]
            if hi and hi[0]["kept_rank"] and k["kept_rank"] is not None:
                ratios[f"{k['checkpoint']}:{k['method']} kept(rep 0)/kept(rep 0.9)"] = (
                    k["kept_rank"] / hi[0]["kept_rank"])
    # high-coherence memorization (same delay for both cells) against the i.i.d. k-back task
    for k in kr:
        if k["task"] == "kback" and k["kept_rank"]:
            mem = [q for q in kr if q["cell"] == k["cell"] and q["task"] == "memorization"
                   and q["D"] == 20 and q["method"] == k["method"]]
            if mem and mem[0]["kept_rank"] is not None:
                ratios[f"{k['cell']}:{k['method']} kept(memorization D=20)/kept(kback)"] = (
                    mem[0]["kept_rank"] / k["kept_rank"])
    out["coherence_ratio"] = ratios
    return out


def write(result: dict, out_dir: str) -> list[str]:
    return write_result(result, out_dir, headline(result))


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
