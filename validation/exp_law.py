r"""A falsifiable law for the kept rank, and the range of validity of first order (issue 14, item 5).

Predictor (computable before truncating, from the nominal trajectory and the first-order model only).
For a net, a rank r and the plain truncation :math:`W_r` of every recurrent matrix
(``rp.truncate_svd(cell, rank=r)``), let :math:`\ell_t` be the first-order deviation
(``rp.first_order``) and :math:`V` the readout. On each recall step t and sequence b with target
class y, the readout margin is :math:`m_{tb} = z_y - \max_{j\ne y} z_j` (nominal logits z), and the
first-order change of each logit difference is :math:`\delta_{tb} = \max_{j\ne y}|(V\ell_t)_y - (V\ell_t)_j|`.
The sensitivity is

.. math:: S(r) = \max_{t\in\text{recall},\,b} \delta_{tb}/m_{tb}.

Law (one constant c): the kept rank is the smallest r from which on every larger evaluated rank
:math:`S(r) \le c`. Margin-one first order would say c = 1; c is fitted on a training set of nets
(the value minimising the mean absolute error in rank) on the n = 64 nets of seeds 1-3 and tested on
held-out nets: seeds 4-6 (n = 64), other sizes (n = 32, 128) and the matched recipes
(:func:`default_split`). Refuted if the held-out mean absolute error is not below that of the
baseline "the training mean kept rank of the net's cell, times n/64" (which knows the cell, as the
law does not). A spectrum-only competitor (the same rule on the discarded Frobenius share
:math:`\|W - W_r\|_F/\|W\|_F`, its own constant fitted) says whether the first-order
sensitivity adds anything to the singular-value tail.

First-order validity. For a net, a rank r and :math:`\Delta W = W_r - W`, the cell with
:math:`W + a\Delta W` is simulated exactly (``rp.deviation``) and to first order; the relative error is
:math:`\|\ell - e\|_F/\|e\|_F` over all steps and the 32 sequences. The largest
:math:`\rho = a\|\Delta W\|_F/\|W\|_F` (all recurrent matrices stacked) with relative error <= 0.1 is
found by bisection in log a on [1e-4, 4] (``validity_ratio``).

Run: ``OPENBLAS_NUM_THREADS=1 nice -n 10 python -m validation.exp_law --out validation/results``
(``--quick``: every 8th rank, two shipped nets). Needs the seed checkpoints of
``validation/checkpoints/seeds`` (``python -m validation.sweep --plan issue14 ...``). Writes ``law.csv`` and ``law.json``. Deterministic.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from rnnperturb import tasks
from validation.experiments import cli, load, rank_grid
from validation.rank_stats import kept_from as kept

__all__ = ["run", "headline", "sensitivity", "tail_ratio", "predict_rank", "fit_constant",
           "validity_ratio", "relative_first_order_error", "default_split"]

NAME = "law"


def sensitivity(cell, small, task) -> float:
    r"""S = max over recall steps and sequences of (first-order logit-difference change)/margin.

    Parameters
    ----------
    cell, small : Cell
        Nominal and truncated cell (same type, with readout ``V``).
    task : Task
        With ``X`` (T, B, m), integer ``targets`` (T, B) and boolean ``recall`` (T, B).

    Returns
    -------
    float
        ``inf`` if some recall step is already wrong (margin <= 0).
    """
    Z = cell.readout(cell.run(task.X))                         # (T, B, C)
    dZ = rp.first_order(cell, small, task.X) @ cell.V.T        # (T, B, C)
    y = task.targets[task.recall]
    Z, dZ = Z[task.recall], dZ[task.recall]                    # (N, C)
    idx = np.arange(len(y))
    zy = Z[idx, y]
    other = Z.copy()
    other[idx, y] = -np.inf
    margin = zy - other.max(axis=1)
    dd = np.abs(dZ[idx, y][:, None] - dZ)
    dd[idx, y] = 0.0
    if np.any(margin <= 0):
        return float("inf")
    return float(np.max(dd.max(axis=1) / margin))


def predict_rank(ranks, S, c: float) -> int | None:
    """Smallest rank from which on every larger rank ``S <= c`` (``kept``)."""
    return kept(ranks, _floats(S) <= c)


def _floats(S) -> np.ndarray:
    """S values as floats; ``None`` (a non-finite value in the JSON file) is ``inf``."""
    return np.array([np.inf if s is None else s for s in S], dtype=float)


def fit_constant(nets: list[dict]) -> tuple[float, float]:
    """The c minimising the mean absolute rank error over ``nets`` (each with ``ranks``, ``S``,
    ``rank_kept``), searched over the observed S values (geometric midpoints); ties -> smallest
    log-distance to 1. Returns ``(c, mae)``."""
    vals = np.unique(np.concatenate([_floats(x["S"]) for x in nets]))
    vals = vals[np.isfinite(vals) & (vals > 0)]
    cands = np.concatenate([vals, np.sqrt(vals[1:] * vals[:-1])]) if vals.size > 1 else vals
    best = None
    for c in np.sort(cands):
        err = np.mean([abs(_or_n(predict_rank(x["ranks"], x["S"], c), x) - _or_n(x["rank_kept"], x))
                       for x in nets])
        key = (err, abs(np.log(c)))
        if best is None or key < best[0]:
            best = (key, float(c))
    return best[1], best[0][0]


def _or_n(r, x):
    return x["n"] + 1 if r is None else r


def _scaled(cell, small, a: float):
    return cell.replace(**{k: W + a * (small.recurrent[k] - W) for k, W in cell.recurrent.items()})


def relative_first_order_error(cell, small, X, a: float) -> float:
    """``||first_order - deviation||_F / ||deviation||_F`` for ``W + a (W_small - W)``."""
    other = _scaled(cell, small, a)
    E = rp.deviation(cell, other, X)
    L = rp.first_order(cell, other, X)
    return float(np.linalg.norm(L - E) / np.linalg.norm(E))


def validity_ratio(cell, small, X, *, tol: float = 0.1, a_lo: float = 1e-4, a_hi: float = 4.0,
                   iters: int = 20) -> dict:
    r"""Largest :math:`\rho = a\|\Delta W\|_F/\|W\|_F` with relative first-order error <= ``tol``
    (bisection in log a; assumes the error grows with a, which the caller checks)."""
    dn = np.sqrt(sum(np.sum((small.recurrent[k] - W) ** 2) for k, W in cell.recurrent.items()))
    wn = np.sqrt(sum(np.sum(W ** 2) for W in cell.recurrent.values()))
    f = lambda a: relative_first_order_error(cell, small, X, a)  # noqa: E731
    if f(a_lo) > tol:
        return {"a": 0.0, "ratio": 0.0, "actual_ratio": float(dn / wn), "censored": "below"}
    if f(a_hi) <= tol:
        return {"a": a_hi, "ratio": float(a_hi * dn / wn), "actual_ratio": float(dn / wn),
                "censored": "above"}
    lo, hi = np.log(a_lo), np.log(a_hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(np.exp(mid)) <= tol else (lo, mid)
    a = float(np.exp(lo))
    return {"a": a, "ratio": float(a * dn / wn), "actual_ratio": float(dn / wn), "censored": None}


def _scores(cell, task):
    Y = cell.readout(cell.run(task.X))
    ok = tasks.metrics.predictions(Y) == task.targets
    return float(ok[task.recall].mean()), tasks.metrics.sequence_accuracy(Y, task)


def tail_ratio(cell, small) -> float:
    r"""Discarded share :math:`\|W - W_r\|_F/\|W\|_F` over all recurrent matrices stacked (the
    spectrum-only competitor of :func:`sensitivity`)."""
    dn = sum(np.sum((small.recurrent[k] - W) ** 2) for k, W in cell.recurrent.items())
    wn = sum(np.sum(W ** 2) for W in cell.recurrent.values())
    return float(np.sqrt(dn / wn))


#: Cells the law is fitted on; the others' nets are held out as ``test_cells``.
TRAIN_CELLS = ("elman", "mgru")


def default_split() -> dict:
    """Checkpoint name -> split. Train: n = 64, default recipes, seeds 1-3 (D = 10, 20, 50) of the
    tanh RNN and the MGRU. Held out: ``test_seeds`` (n = 64, seeds 4-6), ``test_sizes`` (n = 32,
    128), ``test_recipes`` (the matched recipes), ``test_cells`` (every GRU and LSTM
    memorization net, seed 1 and the sweep's seeds: cells the law never saw). Seed checkpoints
    come from ``sweep.json`` (its k-back and AR-signal entries are not memorization nets and are
    left out)."""
    from validation.exp_seeds import sweep_results
    from validation.experiments import checkpoint_names
    out = {f"{c}_memorization_D{D}": "train" for c in TRAIN_CELLS for D in (10, 20, 50)}
    for name in checkpoint_names(task="memorization"):
        if name.split("_")[0] not in TRAIN_CELLS:
            out[name] = "test_cells"
    for r in sweep_results():
        if r["shipped"] is None:
            continue
        if r["cell"] not in TRAIN_CELLS:
            split = "test_cells"
        elif r["hidden"] != 64:
            split = "test_sizes"           # (the n = 128 tanh RNNs need lr 1e-3)
        elif r["recipe"] is not None:
            split = "test_recipes"
        else:
            split = "train" if r["seed"] <= 3 else "test_seeds"
        out["seeds/" + r["shipped"]] = split
    return out


def _net(name, split, quick, validity_offsets):
    cell, meta = load(name)
    task = tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"]))
    ranks = rank_grid(cell.n, quick=quick, step_quick=8)
    rows, rec, seq, S, tail = [], [], [], [], []
    for r in ranks:
        small = rp.truncate_svd(cell, rank=r) if r < cell.n else cell
        a, b = _scores(small, task)
        s = sensitivity(cell, small, task) if r < cell.n else 0.0
        tr = tail_ratio(cell, small)
        rec.append(a), seq.append(b), S.append(s), tail.append(tr)
        rows.append({"checkpoint": name, "split": split, "rank": r, "recall": a, "sequence": b,
                     "S": s, "tail": tr})
    rk = kept(ranks, [a >= 0.99 and b >= 1.0 for a, b in zip(rec, seq)])
    validity = {}
    for r in sorted({min(max((rk or cell.n) + d, 1), cell.n - 1) for d in validity_offsets}):
        validity[str(r)] = validity_ratio(cell, rp.truncate_svd(cell, rank=r), task.X,
                                          iters=8 if quick else 14)
    net = {"n": cell.n, "cell": cell.kind, "D": int(meta["D"]), "seed": int(meta["seed"]),
           "ranks": ranks, "S": S, "tail": tail, "rank_kept": rk,
           "rank_recall99": kept(ranks, [a >= 0.99 for a in rec]), "split": split,
           "validity": validity}
    return net, rows


def _mae(nets, key):
    return float(np.mean([abs(_or_n(x[key], x) - _or_n(x["rank_kept"], x)) for x in nets]))


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True, split=None) -> dict:
    """Per net and rank: recall, sequence accuracy, S(r) and the tail ratio; the kept rank (all 32
    sequences and >= 99 % recall); the constant c fitted on the training nets for S (the law) and
    for the tail ratio (spectrum only); held-out errors per split against two baselines (the
    training mean, and the training mean of the net's cell); first-order validity ratios at the
    kept rank (and kept -+ 4 on the n = 64 nets). ``split``: checkpoint name -> 'train' or a
    'test_*' label (default :func:`default_split`; ``--quick``: two shipped nets, every 8th rank).
    ``seed`` is unused (deterministic) and recorded."""
    if split is None:
        split = ({"mgru_memorization_D10": "train", "mgru_memorization_D20": "test_seeds"}
                 if quick else default_split())
    rows, nets = [], {}
    for name in rp.progress(sorted(split), desc=NAME, quiet=quiet):
        offs = (0,) if quick or split[name] != "train" else (-4, 0, 4)
        nets[name], r = _net(name, split[name], quick, offs)
        rows += r
    tr = [x for x in nets.values() if x["split"] == "train"]
    fit = {}
    for key in ("S", "tail"):
        c, mae = fit_constant([{**x, "S": x[key]} for x in tr])
        fit[key] = {"c": c, "train_mae": mae}
        for x in nets.values():
            x[f"predicted_{key}"] = predict_rank(x["ranks"], x[key], c)
    for x in nets.values():
        x["predicted_c1"] = predict_rank(x["ranks"], x["S"], 1.0)
    mean_tr = float(np.mean([_or_n(x["rank_kept"], x) for x in tr]))
    by_cell = {k: float(np.mean([_or_n(x["rank_kept"], x) for x in tr if x["cell"] == k]))
               for k in {x["cell"] for x in tr}}
    for x in nets.values():
        x["baseline_mean"] = mean_tr
        x["baseline_cell"] = by_cell.get(x["cell"], mean_tr) * x["n"] / 64
    held = {}
    for sp in sorted({x["split"] for x in nets.values()}):
        group = [x for x in nets.values() if x["split"] == sp]
        held[sp] = {"nets": len(group), "mae_law": _mae(group, "predicted_S"),
                    "mae_tail": _mae(group, "predicted_tail"), "mae_c1": _mae(group, "predicted_c1"),
                    "mae_baseline_mean": _mae(group, "baseline_mean"),
                    "mae_baseline_cell": _mae(group, "baseline_cell"),
                    "mean_kept": float(np.mean([_or_n(x["rank_kept"], x) for x in group]))}
    te = [x for x in nets.values() if x["split"] != "train"]
    if te:
        held["all_held_out"] = {"nets": len(te), "mae_law": _mae(te, "predicted_S"),
                                "mae_tail": _mae(te, "predicted_tail"),
                                "mae_c1": _mae(te, "predicted_c1"),
                                "mae_baseline_mean": _mae(te, "baseline_mean"),
                                "mae_baseline_cell": _mae(te, "baseline_cell")}
    return {"name": NAME, "rows": rows, "nets": nets,
            "fit": {"c": fit["S"]["c"], "train_mae": fit["S"]["train_mae"],
                    "c_tail": fit["tail"]["c"], "train_mae_tail": fit["tail"]["train_mae"],
                    "train_mean_rank": mean_tr, "train_mean_rank_by_cell": by_cell,
                    "held_out": held},
            "meta": {"quick": quick, "seed": seed, "split": split,
                     "law": "kept rank = smallest r with S(r') <= c for every evaluated r' >= r",
                     "baseline_cell": "training mean kept rank of the net's cell, times n/64",
                     "refuted_if": "held-out mae_law >= mae_baseline_cell"}}


def headline(result: dict) -> dict:
    return {"fit": result["fit"],
            "kept_vs_predicted": {k: [v["rank_kept"], v["predicted_S"], v["predicted_tail"],
                                      v["split"]] for k, v in result["nets"].items()},
            "validity_ratio": {k: {r: [w["ratio"], w["actual_ratio"], w["censored"]]
                                   for r, w in v["validity"].items()}
                               for k, v in result["nets"].items()}}


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
