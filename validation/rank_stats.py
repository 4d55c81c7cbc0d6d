r"""Rank statistics of a memorization net that do not jump with one bit (issue 14, item 2).

For each retained rank r = 0..n, the recurrent matrices are truncated (plain SVD,
``rp.truncate_svd(cell, rank=r)``, or about the identity, ``about="identity"``) and the net is
scored exactly on all :math:`K^L` sequences. Beside the old kept rank (smallest r from which every
larger rank keeps recall accuracy :math:`\ge 99\,\%` of full, i.e. allows one wrong bit in 160),
two statistics that change continuously with the accuracy curve and the logits:

* **AUC rank** :math:`A = \sum_{r=0}^{n-1} (1 - \min(a_r/a_n, 1))`, the area above the
  relative recall-accuracy curve in units of rank. For a step curve (0 below r*, 1 from r*) it
  equals r*; one bit flipping at one rank moves it by 1/160 instead of by up to n.
* **Margin kept rank**: smallest r from which every larger rank keeps the *mean* readout margin
  :math:`\bar m_r = \mathrm{mean}_{\text{recall }(t,b)}\,(z_y - \max_{j\ne y} z_j)` at or above
  ``margin_level`` (default 1/2) of the full net's. The mean margin is a continuous function of the
  weights, so small changes of the net move this rank by small amounts.

The per-rank curves are returned so that data files carry them.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from rnnperturb import tasks

__all__ = ["margins", "rank_curve", "kept_from", "rank_statistics", "METHODS"]

METHODS = ("svd", "identity")


def margins(cell, task) -> np.ndarray:
    r"""Readout margins :math:`z_y - \max_{j\ne y} z_j` at the recall steps.

    Parameters
    ----------
    cell : Cell
        With a readout.
    task : Task
        Memorization task with integer ``targets`` (T, B) and boolean ``recall`` (T, B).

    Returns
    -------
    ndarray, shape (N,)
        One margin per recall step and sequence (N = recall.sum()); > 0 where correct.
    """
    Z = cell.readout(cell.run(task.X))[task.recall]            # (N, C)
    y = task.targets[task.recall]
    idx = np.arange(len(y))
    zy = Z[idx, y]
    other = Z.copy()
    other[idx, y] = -np.inf
    return zy - other.max(axis=1)


def kept_from(ranks, ok) -> int | None:
    """Smallest rank from which every larger evaluated rank has ``ok`` (None if full fails)."""
    ranks = np.asarray(ranks)
    ok = np.asarray(ok, dtype=bool)
    order = np.argsort(ranks)
    ranks, ok = ranks[order], ok[order]
    if not ok[-1]:
        return None
    bad = np.nonzero(~ok)[0]
    return int(ranks[0] if bad.size == 0 else ranks[bad[-1] + 1])


def _truncated(cell, r, method):
    if r == cell.n:
        return cell
    if method == "svd":
        return rp.truncate_svd(cell, rank=r)
    if method == "identity":
        return rp.truncate_svd(cell, rank=r, about="identity")
    raise ValueError(f"method: expected one of {list(METHODS)}, found {method!r}")


def rank_curve(cell, task, *, method: str = "svd") -> dict:
    """Recall accuracy, sequence accuracy and mean/min margin at every rank 0..n.

    Returns
    -------
    dict
        ``ranks`` (n+1,), ``recall`` (n+1,), ``sequence`` (n+1,), ``mean_margin`` (n+1,),
        ``min_margin`` (n+1,); the last entry (rank n) is the untruncated net.
    """
    out = {"ranks": [], "recall": [], "sequence": [], "mean_margin": [], "min_margin": []}
    for r in range(cell.n + 1):
        m = margins(_truncated(cell, r, method), task)
        ok = m > 0
        out["ranks"].append(r)
        out["recall"].append(float(ok.mean()))
        out["mean_margin"].append(float(m.mean()))
        out["min_margin"].append(float(m.min()))
        # sequence accuracy: every recall step of a sequence right
        per_seq = np.ones(task.X.shape[1], dtype=bool)
        cols = np.nonzero(task.recall)[1]
        np.logical_and.at(per_seq, cols, ok)
        out["sequence"].append(float(per_seq.mean()))
    return out


def rank_statistics(cell, meta: dict, *, methods=METHODS, level: float = 0.99,
                    margin_level: float = 0.5) -> dict:
    """Kept ranks of a memorization net (see the module notes) per truncation method.

    Parameters
    ----------
    cell : Cell
        With a readout.
    meta : dict
        ``K``, ``L``, ``D`` of the memorization task.
    methods : sequence of {'svd', 'identity'}
    level : float
        Relative recall accuracy of the old kept rank.
    margin_level : float
        Fraction of the full net's mean margin for the margin kept rank.

    Returns
    -------
    dict
        Per method: ``kept_99``, ``kept_all32`` (every sequence right), ``auc_rank``,
        ``margin_kept``, and the ``curve`` of :func:`rank_curve`.
    """
    task = tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"]))
    out = {}
    for method in methods:
        c = rank_curve(cell, task, method=method)
        acc = np.asarray(c["recall"])
        full = acc[-1]
        rel = acc / full if full > 0 else np.zeros_like(acc)
        mm = np.asarray(c["mean_margin"])
        out[method] = {
            "full_recall": float(full),
            "kept_99": kept_from(c["ranks"], rel >= level),
            "kept_all32": kept_from(c["ranks"], np.asarray(c["sequence"]) >= 1.0),
            "auc_rank": float(np.sum(1.0 - np.minimum(rel[:-1], 1.0))),
            "margin_kept": kept_from(c["ranks"], mm >= margin_level * mm[-1]) if mm[-1] > 0
            else None,
            "curve": c,
        }
    return out
