r"""(a) Task performance against retained rank, without fine tuning.

For every shipped checkpoint (every cell and task: tanh RNN, MGRU, and the
GRU and LSTM memorization nets) and every retained rank r (the same r for every
recurrent matrix: ``Wf`` and ``Wh`` in the MGRU, the gate blocks ``Wr, Wz, Wn``
of the GRU and ``Wi, Wf, Wg, Wo`` of the LSTM), the recurrent matrices are
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

Per block (``method = 'svd:<name>'``, memorization checkpoints of cells with
several recurrent matrices): one matrix truncated by plain SVD, the others
kept at full rank.

Why a gated cell's memory survives truncation (``mechanism``, memorization
checkpoints, at rank ``MECHANISM_RANK`` = n/4, plain SVD): a gated cell holds
its state by an elementwise product outside its matrices (the MGRU's
:math:`(1 - f)\odot h`, the GRU's :math:`z \odot h`, the LSTM's
:math:`f \odot c`), so during the blank delay the truncation's forcing
:math:`\sum_k B_{k,t}\,\Delta W_k a_{k,t}` reaches the held units only through
gate factors near 0. Measured along the 32 sequences with the cell's own
protocol (:meth:`~rnnperturb.cells.Cell.overwrite_gate`,
:meth:`~rnnperturb.cells.Cell.directional`, :func:`rnnperturb.first_order`):

* ``keep_gate_delay``: the mean keep gate (1 - overwrite gate: the GRU's z,
  the LSTM's f, the MGRU's 1 - f) over the delay steps, sequences and units;
  ``keep_units``: units whose mean overwrite gate over the delay is below
  ``KEEP_THRESHOLD``; ``keep_gate_keep_units``: their mean keep gate;
  ``info_share_keep_units``: their share of the across-sequence variance of
  the output at the end of the delay (where the bits are);
* ``forcing_ratio_write`` / ``forcing_ratio_delay``: the first-order forcing
  :math:`\|\sum_k B_{k,t}\Delta W_k a_{k,t}\|` (full state) over the
  ungated :math:`\|(\Delta W_k a_{k,t})_k\|`, summed over the data (write)
  steps / the delay steps and sequences; ``forcing_ratio_delay_keep_units``:
  the same over the delay restricted to the keep units (the state read as
  N/n parts of n units each: the LSTM's h and c of unit i together);
* ``fo_growth_delay``: :math:`\|\ell_{L+D}\| / \|\ell_L\|`, how much the
  first-order deviation (full state) grows over the delay (mean over
  sequences); ``exact_recall_max``: the exact deviation of the output at the
  recall steps (max).

Output: ``rank_performance.csv`` (one row per checkpoint, evaluation,
method and rank) and ``rank_performance.json`` (with ``mechanism``).
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from validation.experiments import (checkpoint_names, cli, eval_task, fit_inputs, load,
                                    performance, rank_grid, write_result)

__all__ = ["run", "headline", "write", "kept_rank", "evaluations", "mechanism"]

NAME = "rank_performance"
METHODS = ("svd", "data")
#: Overwrite gate (mean over the delay) below which a unit counts as holding its state.
KEEP_THRESHOLD = 0.1


def evaluations(meta: dict) -> list[tuple[str, float | None]]:
    """The (label, repeat) evaluations of a checkpoint."""
    if meta["task"] == "kback_mix":
        return [("repeat=0.0", 0.0), ("repeat=0.9", 0.9)]
    return [("own", None)]


def kept_rank(ranks, relative, *, level: float = 0.99):
    """Smallest rank from which on *every* larger evaluated rank keeps
    ``relative >= level`` (None if even full rank does not); see
    :func:`validation.rank_stats.kept_from`."""
    from validation.rank_stats import kept_from
    return kept_from(ranks, np.asarray(relative) >= level)


def _data_aware(cell, r, mom):
    """``truncate_svd(cell, rank=r, data=X)`` given ``mom = forcing_moments(cell, X)``."""
    return cell.replace(**{k: rp.weighted_low_rank(W, rank=r, moment=mom[k])
                           for k, W in cell.recurrent.items()})


def _block_methods(cell, meta) -> list[tuple[str, object]]:
    """``(method, truncation)`` pairs: plain and data-aware SVD of every matrix and, for a
    memorization checkpoint of a cell with several recurrent matrices, plain SVD of
    each matrix alone."""
    out = list(METHODS)
    if meta["task"] == "memorization" and len(cell.recurrent_names) > 1:
        out += [f"svd:{k}" for k in cell.recurrent_names]
    return out


def _truncate(cell, method, r, mom):
    if method == "svd":
        return rp.truncate_svd(cell, rank=r)
    if method == "data":
        return _data_aware(cell, r, mom)
    return rp.truncate_svd(cell, rank={method.split(":", 1)[1]: r})


def mechanism(cell, meta, *, rank: int) -> dict:
    """Gate values, forcing and first-order deviation along the delay (see the module
    notes) for a memorization checkpoint truncated by plain SVD to ``rank``.

    Returns
    -------
    dict
        ``keep_gate_delay``, ``keep_units``, ``keep_gate_keep_units``,
        ``info_share_keep_units`` (None for a cell without a gate, the tanh RNN),
        ``forcing_ratio_write``, ``forcing_ratio_delay``, ``fo_growth_delay``,
        ``exact_recall_max``, ``rank``.
    """
    L, D = int(meta["L"]), int(meta["D"])
    task = eval_task(meta, seed=0)
    small = rp.truncate_svd(cell, rank=rank)
    dW = {k: small.recurrent[k] - W for k, W in cell.recurrent.items()}
    X = task.X
    T, B, _ = X.shape
    s = np.zeros((B, cell.state_size))
    n, N = cell.n, cell.state_size
    gates = []
    raw, forced = np.empty((T, B, n)), np.empty((T, B, N))    # |(dW_k a_k)_k| per unit, |forcing|
    for t in range(T):
        sn, aux, regs = cell.nominal(s, X[t])
        gates.append(cell.overwrite_gate(aux))
        raw[t] = np.sqrt(sum((regs[k] @ dW[k].T) ** 2 for k in dW))
        forced[t] = np.abs(cell.directional(s, X[t], dW))
        s = sn
    write, delay = slice(0, L), slice(L, L + D)        # steps 1..L and L+1..L+D

    def ratio(steps, units=slice(None)):
        """sum over steps and sequences of ||forcing|| / ||ungated forcing|| (on some units)."""
        f = forced[steps].reshape(-1, B, N // n, n)[..., units] if N % n == 0 else forced[steps]
        return float(np.sqrt((f ** 2).reshape(f.shape[0], B, -1).sum(-1)).sum()
                     / np.sqrt((raw[steps][..., units] ** 2).sum(-1)).sum())
    out = {"rank": rank, "keep_gate_delay": None, "keep_units": None,
           "keep_gate_keep_units": None, "info_share_keep_units": None,
           "forcing_ratio_write": ratio(write), "forcing_ratio_delay": ratio(delay),
           "forcing_ratio_delay_keep_units": None}
    if gates[0] is not None:
        G = np.stack(gates[delay])                     # (D, B, n) overwrite gate
        per_unit = G.mean(axis=(0, 1))
        keep = per_unit < KEEP_THRESHOLD
        Y = cell.run(X)[L + D - 1]                     # output at the end of the delay (B, n)
        var = Y.var(axis=0)
        out.update(keep_gate_delay=float(1.0 - G.mean()), keep_units=int(keep.sum()),
                   keep_gate_keep_units=(float(1.0 - per_unit[keep].mean()) if keep.any()
                                         else None),
                   info_share_keep_units=float(var[keep].sum() / var.sum()),
                   forcing_ratio_delay_keep_units=(ratio(delay, keep) if keep.any()
                                                   and N % n == 0 else None))
    ell = np.linalg.norm(rp.first_order(cell, small, X, state="full"), axis=-1)   # (T, B)
    out["fo_growth_delay"] = float(np.mean(ell[L + D - 1] / ell[L - 1]))
    dev = np.linalg.norm(rp.deviation(cell, small, X), axis=-1)
    out["exact_recall_max"] = float(dev[task.recall].max())
    return out


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True,
        names: list[str] | None = None) -> dict:
    """Performance of SVD- and data-aware-truncated checkpoints at every rank.

    ``names`` restricts the run to some checkpoints (default: every shipped one)."""
    rows, mech = [], []
    names = checkpoint_names() if names is None else list(names)
    n_eval = 128 if quick else 256
    for name in rp.progress(names, desc="rank performance", quiet=quiet):
        cell, meta = load(name)
        mom = rp.forcing_moments(cell, fit_inputs(meta, seed=seed, batch=64))
        ranks = rank_grid(cell.n, quick=quick)
        evals = [(lab, eval_task(meta, seed=seed, batch=n_eval, repeat=rep))
                 for lab, rep in evaluations(meta)]
        base = {lab: performance(cell, task) for lab, task in evals}
        if meta["task"] == "memorization":
            mech.append({"checkpoint": name, "cell": cell.kind, "D": int(meta["D"]),
                         **mechanism(cell, meta, rank=cell.n // 4)})
        for method in _block_methods(cell, meta):
            for r in ranks:
                small = _truncate(cell, method, r, mom)
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
    return {"name": NAME, "rows": rows, "mechanism": mech,
            "meta": {"quick": quick, "seed": seed, "n_eval_sequences": n_eval,
                     "n_fit_sequences": 64, "level": 0.99, "keep_threshold": KEEP_THRESHOLD,
                     "mechanism_rank": "n // 4"}}


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
    # memorization: every cell's kept rank (plain SVD, every matrix at r) by delay, beside
    # each matrix truncated alone
    mem = {}
    for k in kr:
        if k["task"] == "memorization" and k["method"].startswith("svd"):
            target = k["method"].partition(":")[2] or "all"
            mem.setdefault(k["cell"], {}).setdefault(target, {})[f"D{k['D']}"] = k["kept_rank"]
    out["memorization_kept_rank_99_svd"] = mem
    return out


def write(result: dict, out_dir: str) -> list[str]:
    return write_result(result, out_dir, headline(result))


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
