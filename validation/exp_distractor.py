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

Nets *trained* with the distractor at a fixed rho are the clean test:
:mod:`validation.exp_distractor_trained`.

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
from validation.train import repeat_sequences, with_distractor

__all__ = ["run", "headline", "distractor_inputs", "statistics", "RHOS", "SIGMA"]

NAME = "distractor"
RHOS = (0.0, 0.5, 0.9, 0.98)
SIGMA = 0.1
DRAWS = 8


def distractor_inputs(task, L: int, D: int, *, rho: float, sigma: float, draws: int,
                      seed) -> tuple:
    r"""Inputs with an AR(1) distractor on the blank channel during the delay.

    Each sequence is repeated ``draws`` times (adjacent) and each copy gets its own path of
    :func:`validation.train.with_distractor` (the generator shared with training).

    Parameters
    ----------
    task : Task
        ``memorization_all`` task, ``X`` of shape (T, 32, K + 2); channel K is the blank.
    L, D : int
        Must equal the task's.
    rho : float
        Lag-one autocorrelation, in [0, 1).
    sigma : float
        Standard deviation of the distractor.
    draws : int
        Distractor draws per sequence.
    seed : int, sequence of int or Generator
        Innovations (the same for every rho given the same seed).

    Returns
    -------
    X : ndarray, shape (T, 32 * draws, K + 2)
    targets, recall : ndarrays, shape (T, 32 * draws)
    """
    if (int(task.params["L"]), int(task.params["D"])) != (L, D):
        raise ValueError(f"L, D: expected the task's ({task.params['L']}, {task.params['D']}), "
                         f"found ({L!r}, {D!r})")
    t = with_distractor(repeat_sequences(task, draws), rho=rho, sigma=sigma,
                        seed=np.random.default_rng(seed))
    return t.X, t.targets, t.recall


def _recall_acc(cell, X, targets, recall):
    Y = cell.readout(cell.run(X))
    return float((Y.argmax(-1) == targets)[recall].mean())


def statistics(cell, X, targets, recall, *, L: int, D: int, ranks, smalls=None) -> dict:
    r"""Full recall, kept rank, AUC rank and C_t of one net under one set of distractor inputs.

    Parameters
    ----------
    cell : Cell
        With a readout, hidden size n.
    X : ndarray, shape (T, B, m)
        Inputs with the distractor (B a multiple of 8: sequences repeated over draws, adjacent).
    targets, recall : ndarrays, shape (T, B)
    L, D : int
    ranks : sequence of int
        Increasing ranks, the last one n (the full net).
    smalls : dict, optional
        ``rank -> truncated cell`` (plain SVD) to reuse across calls.

    Returns
    -------
    dict
        ``full_recall`` (recall accuracy of the full net), ``kept_99`` (smallest rank from which
        every evaluated rank keeps >= 99 % of it), ``auc_rank`` (step times the sum of
        1 - min(a_r / a_n, 1) over ranks < n), ``C`` (mean over the recall steps of the
        frozen/fresh ratio of ``rp.noise_response``, std 1, on every 8th sequence) and
        ``recall_curve`` (accuracy per rank).
    """
    ranks = list(ranks)
    if smalls is None:
        smalls = {r: (rp.truncate_svd(cell, rank=r) if r < cell.n else cell) for r in ranks}
    times = list(range(L + D + 2, 2 * L + D + 2))
    acc = np.array([_recall_acc(smalls[r], X, targets, recall) for r in ranks])
    rel = acc / acc[-1]
    Xc = X[:, ::8]
    fz = rp.noise_response(cell, Xc, std=1.0, times=times)
    fr = rp.noise_response(cell, Xc, std=1.0, frozen=False)[np.asarray(times) - 1]
    step = ranks[1] - ranks[0]
    return {"full_recall": float(acc[-1]), "kept_99": kept_from(ranks, rel >= 0.99),
            "auc_rank": float(step * np.sum(1 - np.minimum(rel[:-1], 1))),
            "C": float(np.mean(fz / fr)), "recall_curve": [float(a) for a in acc]}


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
        for rho in RHOS:
            X, tg, rc = distractor_inputs(task, L, D, rho=rho, sigma=SIGMA,
                                          draws=2 if quick else DRAWS, seed=[seed, 41])
            st = statistics(cell, X, tg, rc, L=L, D=D, ranks=ranks, smalls=smalls)
            rows.append({"checkpoint": name, "cell": kind, "seed": int(meta["seed"]), "rho": rho,
                         "sigma": SIGMA, "full_recall": st["full_recall"],
                         "kept_99": st["kept_99"], "auc_rank": st["auc_rank"], "C": st["C"]})
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
