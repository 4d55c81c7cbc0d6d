r"""How exact is the first-order (tangent-linear) model, and where does it stop being trustworthy?

Part A, the s² law. For a fixed direction :math:`D_k` per recurrent matrix,
normalised to :math:`\|D_k\|_2 = \|W_k\|_2`, and scales s on a log grid, the
perturbed cell has :math:`W_k + sD_k` (so :math:`\|\Delta W_k\|_2/\|W_k\|_2 = s`).
We measure the trajectory norm (Frobenius over t, b and the state) of the
residual :math:`r(s) = \|e - \ell\|` and of the exact deviation :math:`\|e\|`. Nets:
a random Elman RNN and a random MGRU (n = 32, m = 4, spectral norm 1, T =
100, 16 sequences of N(0, 1) inputs) and every memorization checkpoint (all
32 sequences). Directions: ``random`` (i.i.d. Gaussian, seeded) and
``svd_tail`` (the discarded part :math:`W_{n/2} - W` of a rank-n/2 truncation).
Per net and direction the headline gives the longest run of consecutive grid
points whose local log-log slopes all lie in 2 ± 0.1 (the range of s where
the second-order term dominates) with the least-squares slope over it, the
relative error :math:`r/\|e\|` at s = 1e-3, and the largest grid s below which
the relative error stays < 1 %.

Part B, trust against rank and delay. For every memorization checkpoint and
every rank r (both MGRU matrices at r), on the 32 sequences, with
:func:`rnnperturb.rank_sweep`: the relative error at the recall steps
:math:`\max_{t\in\text{recall},b}\|e_t-\ell_t\| / \max_{t\in\text{recall},b}\|e_t\|`
and over the whole trajectory, and (with per-rank calls) the recall accuracy
predicted by the first-order states :math:`h_t+\ell_t` against the truncated
net's. The headline gives, per checkpoint, the smallest rank from which on
the recall-step relative error stays ≤ 0.1 (and ≤ 0.5), with
:math:`\max_k\|\Delta W_k\|_2/\|W_k\|_2` there, and the smallest rank from which
on the predicted recall accuracy is within 0.01 of the true one.

Output ``first_order.csv`` (part A rows, ``part="A"``, and part B rows,
``part="B"``) and ``first_order.json``. Deterministic:
``python -m validation.exp_first_order --out DIR [--quick] [--seed S]``.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from rnnperturb import tasks
from validation.experiments import checkpoint_names, cli, load, rank_grid

__all__ = ["run", "headline", "slope_window"]

NAME = "first_order"


def _direction(cell, kind: str, seed) -> dict:
    rng = np.random.default_rng(seed)
    small = rp.truncate_svd(cell, rank=cell.n // 2) if kind == "svd_tail" else None
    out = {}
    for k, W in cell.recurrent.items():
        D = rng.standard_normal(W.shape) if small is None else small.recurrent[k] - W
        out[k] = D * (np.linalg.norm(W, 2) / np.linalg.norm(D, 2))
    return out


def _nets(seed: int, quick: bool):
    """(label, cell, X) of the random nets and the memorization checkpoints."""
    out = []
    for kind in ("elman", "mgru"):
        cell = rp.random_cell(kind, 32, 4, spectral_norm=1.0, seed=[seed, 7, len(kind)])
        X = np.random.default_rng([seed, 8]).standard_normal((100, 16, 4))
        out.append((f"random_{kind}_n32", cell, X))
    for name in checkpoint_names(task="memorization"):
        cell, meta = load(name)
        out.append((name, cell, tasks.memorization_all(int(meta["K"]), int(meta["L"]),
                                                       int(meta["D"])).X))
    return out


def slope_window(s, r, *, target: float = 2.0, tol: float = 0.1) -> dict:
    """Longest run of consecutive points whose local log-log slopes of r(s) all lie
    in target ± tol; its range of s and the least-squares slope over it."""
    s, r = np.asarray(s, float), np.asarray(r, float)
    logr = np.log(np.where(r > 0, r, np.nan))
    local = np.diff(logr) / np.diff(np.log(s))
    inside = np.abs(local - target) <= tol          # NaN (a zero residual) is outside
    best, cur = (0, -1), None
    for i, v in enumerate(inside):
        if v:
            cur = i if cur is None else cur
            if i - cur > best[1] - best[0]:
                best = (cur, i)
        else:
            cur = None
    if best[1] < best[0]:
        return {"s_lo": None, "s_hi": None, "slope": None, "points": 0}
    lo, hi = best[0], best[1] + 1            # points lo..hi inclusive
    p = np.polyfit(np.log(s[lo:hi + 1]), np.log(r[lo:hi + 1]), 1)[0]
    return {"s_lo": float(s[lo]), "s_hi": float(s[hi]), "slope": float(p),
            "points": int(hi - lo + 1)}


def _part_a(nets, grid, seed, quiet):
    rows = []
    for label, cell, X in rp.progress(nets, desc="s^2 law", quiet=quiet):
        for dname in ("random", "svd_tail"):
            D = _direction(cell, dname, [seed, 5])
            for s in grid:
                other = cell.replace(**{k: cell.recurrent[k] + s * v for k, v in D.items()})
                E = rp.deviation(cell, other, X)
                L = rp.first_order(cell, other, X)
                r, e = float(np.linalg.norm(E - L)), float(np.linalg.norm(E))
                rows.append({"part": "A", "net": label, "cell": cell.kind, "direction": dname,
                             "s": float(s), "residual": r, "exact": e,
                             "relative": r / e if e > 0 else float("nan")})
    return rows


def _recall_acc(cell, H, task):
    pred = np.argmax(cell.readout(H), axis=-1)
    return float((pred == task.targets)[task.recall].mean())


def _part_b(quick, quiet):
    rows = []
    for name in rp.progress(checkpoint_names(task="memorization"), desc="trust vs rank",
                            quiet=quiet):
        cell, meta = load(name)
        task = tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"]))
        X = task.X
        ranks = rank_grid(cell.n, quick=quick, step_quick=4)
        sw = rp.rank_sweep(cell, X, ranks)
        H = cell.run(X)
        rec = task.recall
        for i, r in enumerate(ranks):
            ex, res = sw.exact[i], sw.residual[i]
            ex_rec = float(ex[rec].max())
            small = rp.truncate_svd(cell, rank=r)
            E = rp.deviation(cell, small, X)
            L = rp.first_order(cell, small, X)
            rows.append({
                "part": "B", "net": name, "cell": cell.kind, "D": int(meta["D"]), "n": cell.n,
                "rank": int(r),
                "dW_rel_spectral": float(max(sw.dW_spectral[k][i] / sw.singular_values[k][0]
                                             for k in sw.names)),
                "exact_recall_max": ex_rec,
                "rel_recall": float(res[rec].max() / ex_rec) if ex_rec > 0 else 0.0,
                "rel_trajectory": (float(np.sqrt((res ** 2).sum() / (ex ** 2).sum()))
                                   if ex.max() > 0 else 0.0),
                "acc_exact": _recall_acc(cell, H + E, task),
                "acc_first_order": _recall_acc(cell, H + L, task)})
    return rows


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    grid = np.logspace(-8, 0, 17 if quick else 33)
    nets = _nets(seed, quick)
    rows = _part_a(nets, grid, seed, quiet) + _part_b(quick, quiet)
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "s_grid": [float(x) for x in grid],
                     "slope_band": "2 +- 0.1", "trust_levels": [0.1, 0.5]}}


def _kept(rows, key, ok):
    """Smallest rank from which on every larger rank satisfies ok(row)."""
    rows = sorted(rows, key=lambda r: r["rank"])
    bad = [i for i, r in enumerate(rows) if not ok(r)]
    if bad and bad[-1] == len(rows) - 1:
        return None
    return rows[0 if not bad else bad[-1] + 1]


def headline(result: dict) -> dict:
    rows = result["rows"]
    A = [r for r in rows if r["part"] == "A"]
    law = []
    for net, d in dict.fromkeys((r["net"], r["direction"]) for r in A):
        rr = [r for r in A if (r["net"], r["direction"]) == (net, d)]
        s = np.array([r["s"] for r in rr])
        w = slope_window(s, [r["residual"] for r in rr])
        rel = np.array([r["relative"] for r in rr])
        below = np.nonzero(~(rel < 0.01))[0]
        s1 = float(s[below[0] - 1]) if below.size and below[0] > 0 else (
            None if below.size else float(s[-1]))
        at = [r["relative"] for r in rr if abs(np.log10(r["s"]) + 3) < 1e-9]
        law.append({"net": net, "direction": d, **w, "relative_at_1e-3": at[0] if at else None,
                    "s_max_rel_below_1pct": s1})
    B = [r for r in rows if r["part"] == "B"]
    trust = []
    for net in dict.fromkeys(r["net"] for r in B):
        rr = [r for r in B if r["net"] == net]
        ent = {"net": net, "cell": rr[0]["cell"], "D": rr[0]["D"], "n": rr[0]["n"]}
        for tau in (0.1, 0.5):
            k = _kept(rr, "rel_recall", lambda r, t=tau: r["rel_recall"] <= t)
            ent[f"rank_rel_le_{tau}"] = None if k is None else k["rank"]
            ent[f"dW_rel_at_{tau}"] = None if k is None else k["dW_rel_spectral"]
        k = _kept(rr, "acc", lambda r: abs(r["acc_exact"] - r["acc_first_order"]) <= 0.01)
        ent["rank_acc_agrees"] = None if k is None else k["rank"]
        trust.append(ent)
    return {"s2_law": law, "trust": trust}


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
