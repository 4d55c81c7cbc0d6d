r"""Plain, data-aware and propagation-weighted truncation on the memorization checkpoints.

For every shipped 5-bit memorization checkpoint (both cells, every delay D)
and every rank r = 0..n (the same r for ``Wf`` and ``Wh`` of the MGRU), the
recurrent matrices are truncated by

* ``svd``: plain Eckart–Young, ``rp.truncate_svd(cell, rank=r)``;
* ``forcing``: data-aware, the rank-r minimiser of the mean squared forcing on
  the fit sequences (``weighting="forcing"``);
* ``propagation``: the observability-weighted variant with the recall steps
  (the last L steps) as targets (``weighting="propagation", target=L``,
  default ridge 0.01),

without retraining, and scored by recall accuracy (fraction of the 5 x B
recall bits right) and sequence accuracy (all 5 bits right).

Held-out protocol. The 5-bit task has only 32 distinct sequences, so a
sampled fit set overlaps the evaluation set. Two fits are reported:

* ``fit=sample64``: 64 sampled sequences (``validation.experiments.fit_inputs``),
  evaluated on all 32 sequences (in distribution, *not* held out);
* ``fit=half``: a seeded half (16) of the 32 sequences, evaluated on the
  other 16 (``eval=heldout16``, truly held out) and on all 32 (``eval=all32``).

Plain SVD uses no data; its rows are repeated for each fit for easy reading.

``headline`` gives per checkpoint, fit, evaluation and method the smallest
rank with recall accuracy >= 0.99 and the smallest with every sequence right,
each as the smallest rank *from which on every larger rank* passes (a
non-monotone curve is reported by its last failure). Output:
``truncation.csv`` (one row per checkpoint, fit, evaluation, method and rank)
and ``truncation.json``. Deterministic: ``python -m validation.exp_truncation
--out DIR [--quick] [--seed S]``.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from rnnperturb import tasks
from validation.experiments import checkpoint_names, cli, fit_inputs, load, rank_grid
from validation.rank_stats import kept_from as kept

__all__ = ["run", "headline", "kept"]

NAME = "truncation"
METHODS = ("svd", "forcing", "propagation")


def _correct(cell, X, targets):
    """(T, B) bool: is each step's arg-max right, on all sequences at once."""
    return np.argmax(cell.readout(cell.run(X)), axis=-1) == targets


def _scores(ok, recall, idx):
    """Recall accuracy and sequence accuracy on the sequences ``idx``."""
    ok, recall = ok[:, idx], recall[:, idx]
    return float(ok[recall].mean()), float(np.all(ok | ~recall, axis=0).mean())


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    rows = []
    names = checkpoint_names(task="memorization")
    for name in rp.progress(names, desc="truncation", quiet=quiet):
        cell, meta = load(name)
        K, L, D = int(meta["K"]), int(meta["L"]), int(meta["D"])
        full = tasks.memorization_all(K, L, D)
        X32, Y32, R32 = full.X, full.targets, full.recall
        perm = np.random.default_rng([seed, 31]).permutation(X32.shape[1])
        fit_idx, held_idx = np.sort(perm[:16]), np.sort(perm[16:])
        fits = {"sample64": fit_inputs(meta, seed=seed, batch=64), "half": X32[:, fit_idx]}
        evals = {"sample64": {"all32": slice(None)},
                 "half": {"heldout16": held_idx, "all32": slice(None)}}
        ranks = rank_grid(cell.n, quick=quick, step_quick=4)
        ok_full = _correct(cell, X32, Y32)
        ok_svd = {r: _correct(rp.truncate_svd(cell, rank=r), X32, Y32) for r in ranks}
        for fit, Xfit in fits.items():
            weights = {"forcing": rp.truncation_weights(cell, Xfit, weighting="forcing"),
                       "propagation": rp.truncation_weights(cell, Xfit, weighting="propagation",
                                                            target=L)}
            base = {ev: _scores(ok_full, R32, idx) for ev, idx in evals[fit].items()}
            for method in METHODS:
                for r in ranks:
                    ok = (ok_svd[r] if method == "svd" else
                          _correct(rp.truncate_svd(cell, rank=r, weights=weights[method]),
                                   X32, Y32))
                    for ev, idx in evals[fit].items():
                        rec, seq = _scores(ok, R32, idx)
                        rows.append({"checkpoint": name, "cell": cell.kind, "D": D, "n": cell.n,
                                     "fit": fit, "eval": ev, "method": method, "rank": r,
                                     "recall": rec, "sequence": seq,
                                     "full_recall": base[ev][0], "full_sequence": base[ev][1]})
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "methods": list(METHODS),
                     "propagation_target": "last L (recall) steps", "ridge": 0.01,
                     "fits": {"sample64": "64 sampled sequences, evaluated on all 32 (not held "
                                          "out: only 32 sequences exist)",
                              "half": "16 of the 32 sequences (seeded), evaluated on the other "
                                      "16 (held out) and on all 32"}}}


def headline(result: dict) -> dict:
    rows = result["rows"]
    keys = []
    for r in rows:
        k = (r["checkpoint"], r["fit"], r["eval"], r["method"])
        if k not in keys:
            keys.append(k)
    table = []
    for ck, fit, ev, me in keys:
        rr = [r for r in rows if (r["checkpoint"], r["fit"], r["eval"], r["method"])
              == (ck, fit, ev, me)]
        ranks = [r["rank"] for r in rr]
        table.append({"checkpoint": ck, "cell": rr[0]["cell"], "D": rr[0]["D"], "n": rr[0]["n"],
                      "fit": fit, "eval": ev, "method": me,
                      "rank_recall99": kept(ranks, [r["recall"] >= 0.99 for r in rr]),
                      "rank_all_sequences": kept(ranks, [r["sequence"] >= 1.0 for r in rr]),
                      "first_rank_recall99": min((r["rank"] for r in rr if r["recall"] >= 0.99),
                                                 default=None)})
    return {"kept_ranks": table}


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
