r"""Coherence as a cause (issue 14, item 6): a distractor of tunable autocorrelation in the delay.

The task stays the 5-bit memorization task (same intrinsic dimension: 32 sequences, 5 bits to hold);
only the temporal coherence of the input during the blank delay changes. On the blank steps
(L + 1 .. L + D) the blank channel carries :math:`1 + \sigma z_t` instead of 1, where
:math:`z_t` is a stationary AR(1) process with unit variance and lag-one autocorrelation
:math:`\rho` (:math:`z_t = \rho z_{t-1} + \sqrt{1-\rho^2}\,\varepsilon_t`, the same innovations
for every :math:`\rho`: common random numbers). The nets are evaluation-only (trained without a
distractor). Per net and :math:`\rho`: the full net's recall accuracy with the distractor, the
kept rank (smallest r from which recall stays >= 99 % of the full net's under the same distractor,
plain SVD), the AUC rank (area above the relative accuracy curve, in ranks) and the frozen/fresh
ratio :math:`C_t` at the recall steps (first order, ``rp.noise_response``).

If coherence *causes* the tolerated rank to change, kept rank and AUC rank must move with
:math:`\rho` at fixed :math:`\sigma`; :math:`C_t` moving alone is not enough.

``python -m validation.exp_distractor --out validation/results`` writes ``distractor.csv`` and
``distractor.json``. ``--quick``: two nets, every 4th rank. Deterministic (fixed seeds).
"""
from __future__ import annotations

import os

import numpy as np

import rnnperturb as rp
from rnnperturb import tasks
from validation.experiments import CHECKPOINT_DIR, cli
from validation.rank_stats import kept_from

__all__ = ["run", "headline", "distractor_inputs", "RHOS", "SIGMA"]

NAME = "distractor"
RHOS = (0.0, 0.5, 0.9, 0.98)
SIGMA = 0.1
DRAWS = 8


def distractor_inputs(task, L: int, D: int, *, rho: float, sigma: float, draws: int,
                      seed) -> tuple:
    r"""Inputs with an AR(1) distractor on the blank channel during the delay.

    Parameters
    ----------
    task : Task
        ``memorization_all`` task, ``X`` of shape (T, 32, K + 2); channel K is the blank.
    L, D : int
    rho : float
        Lag-one autocorrelation, in [0, 1).
    sigma : float
        Standard deviation of the distractor.
    draws : int
        Distractor draws per sequence.
    seed : int or Generator
        Innovations (the same for every rho given the same seed).

    Returns
    -------
    X : ndarray, shape (T, 32 * draws, K + 2)
    targets, recall : ndarrays, shape (T, 32 * draws)
    """
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho: expected a value in [0, 1), found {rho!r}")
    rng = np.random.default_rng(seed)
    T, B, m = task.X.shape
    K = m - 2
    eps = rng.standard_normal((D, B * draws))
    z = np.empty_like(eps)
    z[0] = eps[0]
    for t in range(1, D):
        z[t] = rho * z[t - 1] + np.sqrt(1.0 - rho * rho) * eps[t]
    X = np.repeat(task.X, draws, axis=1).copy()
    X[L:L + D, :, K] += sigma * z
    return X, np.repeat(task.targets, draws, axis=1), np.repeat(task.recall, draws, axis=1)


def _recall_acc(cell, X, targets, recall):
    Y = cell.readout(cell.run(X))
    return float((Y.argmax(-1) == targets)[recall].mean())


def _nets(quick):
    out = [(f"{c}_memorization_D20", c) for c in ("elman", "mgru")]
    if not quick:
        seeds = os.path.join(CHECKPOINT_DIR, "seeds")
        for c in ("elman", "mgru"):
            for s in (2, 3):
                name = f"{c}_memorization_D20_n64_s{s}"
                if os.path.exists(os.path.join(seeds, name + ".npz")):
                    out.append(("seeds/" + name, c))
    return out


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    rows = []
    for name, kind in rp.progress(_nets(quick), desc=NAME, quiet=quiet):
        cell, meta = rp.load_with_metadata(os.path.join(CHECKPOINT_DIR, name + ".npz"))
        K, L, D = int(meta["K"]), int(meta["L"]), int(meta["D"])
        task = tasks.memorization_all(K, L, D)
        ranks = list(range(0, cell.n + 1, 4 if quick else 1))
        if ranks[-1] != cell.n:
            ranks.append(cell.n)
        smalls = {r: (rp.truncate_svd(cell, rank=r) if r < cell.n else cell) for r in ranks}
        times = list(range(L + D + 2, 2 * L + D + 2))
        for rho in RHOS:
            X, tg, rc = distractor_inputs(task, L, D, rho=rho, sigma=SIGMA,
                                          draws=2 if quick else DRAWS, seed=[seed, 41])
            acc = np.array([_recall_acc(smalls[r], X, tg, rc) for r in ranks])
            rel = acc / acc[-1]
            Xc = X[:, ::8]
            fz = rp.noise_response(cell, Xc, std=1.0, times=times)
            fr = rp.noise_response(cell, Xc, std=1.0, frozen=False)[np.asarray(times) - 1]
            step = ranks[1] - ranks[0]
            rows.append({"checkpoint": name, "cell": kind, "seed": int(meta["seed"]), "rho": rho,
                         "sigma": SIGMA, "full_recall": float(acc[-1]),
                         "kept_99": kept_from(ranks, rel >= 0.99),
                         "auc_rank": float(step * np.sum(1 - np.minimum(rel[:-1], 1))),
                         "C": float(np.mean(fz / fr))})
            if not quiet:
                print(rows[-1])
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "rhos": list(RHOS), "sigma": SIGMA,
                     "draws": 2 if quick else DRAWS}}


def headline(result: dict) -> dict:
    out = {}
    for kind in ("elman", "mgru"):
        rr = [r for r in result["rows"] if r["cell"] == kind]
        for key in ("kept_99", "auc_rank", "C", "full_recall"):
            out[f"{kind}_{key}_vs_rho"] = {
                str(rho): [round(float(np.mean([r[key] for r in rr if r["rho"] == rho
                                                and r[key] is not None])), 3),
                           round(float(np.std([r[key] for r in rr if r["rho"] == rho
                                               and r[key] is not None], ddof=1)), 3)
                           if sum(r["rho"] == rho for r in rr) > 1 else None]
                for rho in RHOS}
        # paired change from rho = 0 to the largest rho, per net
        nets = sorted({r["checkpoint"] for r in rr})
        d = [next(r["kept_99"] for r in rr if r["checkpoint"] == c and r["rho"] == RHOS[-1])
             - next(r["kept_99"] for r in rr if r["checkpoint"] == c and r["rho"] == 0.0)
             for c in nets]
        out[f"{kind}_kept_99_change_rho0_to_{RHOS[-1]}_per_net"] = d
    return out


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
