r"""Clamping the MGRU's closed gates: a causal test of the closed-gate explanation (issue 14, item 8).

The explanation under test (README, "Where our numbers disagree"): the MGRU holds the bits in a
subpopulation of *closed-gate* units (mean update gate :math:`f < 0.05` over the delay), whose update
:math:`h_t = (1-f_t)\odot h_{t-1} + f_t\odot c_t` is then :math:`\approx h_{t-1}` whatever the
recurrent matrices are; truncation keeps that memory because it sits outside :math:`W_f, W_h`.

The MGRU step is recomputed here with one change: on the delay steps (0-based ``L .. L+D-1``) the gate
of a chosen set of units is replaced by a constant,

.. math:: f_{t,i} \leftarrow \phi \quad (i \in K,\ L \le t < L + D),

everything else (the candidate :math:`c_t = \tanh(W_h(f_t\odot h_{t-1}) + U_h x_t + b_h)` included,
with the clamped :math:`f_t`) unchanged. With an empty K it is the library's step exactly
(``tests/test_gate_clamp.py``). Two interventions per net (K = the full net's closed-gate units):

* **open**: in the full net, set the closed units' gates to :math:`\phi` = the mean gate of the other
  units over the delay. If they carry the bits, recall collapses. Control: the same number of other
  units (seeded draw) set to the same :math:`\phi` (their gates barely change, so this is the size of
  the intervention without the target).
* **close**: in each truncated net :math:`W_r` (plain SVD, every matrix at rank r), set the same units'
  gates to exactly 0 (a perfect hold) during the delay. If truncation destroys the memory by opening
  those gates (leaking the held value), the clamped truncated net keeps its recall to a much lower rank;
  if the kept rank does not move, truncation does its damage elsewhere (the write phase, the read-out
  path, the open units).

Kept rank: smallest r from which every larger rank keeps >= 99 % of the full net's recall accuracy
(:func:`validation.rank_stats.kept_from`), all 32 sequences of the 5-bit task.

``python -m validation.exp_gate_clamp --out validation/results`` writes ``gate_clamp.csv`` and
``gate_clamp.json``. Nets: the shipped MGRU memorization checkpoints (D = 10, 20, 50, 100) and the
n = 64 seed checkpoints at D = 20 (seeds 2-6). ``--quick``: the D = 20 checkpoint, every 4th rank.
Deterministic.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from rnnperturb import tasks
from rnnperturb.cells.namespace import FLOAT, FloatNamespace, sigmoid
from validation.exp_seeds import sweep_results
from validation.experiments import cli, load
from validation.rank_stats import kept_from

__all__ = ["run", "headline", "clamped_run", "closed_units", "CLOSED", "LEVEL"]

NAME = "gate_clamp"
CLOSED = 0.05          # a unit is closed-gate if its mean update gate over the delay is below this
LEVEL = 0.99


class _ClampedGate(FloatNamespace):
    """The float namespace with the logistic output of ``units`` replaced by ``value``: the
    MGRU step (:meth:`MGRU.forward`, whose only logistic is its update gate f) run through it
    is the step with those gates clamped, the candidate computed with the clamped f."""

    def __init__(self, units, value):
        self.units, self.value = units, value

    def sigmoid(self, a):
        f = sigmoid(a)
        f[..., self.units] = self.value
        return f


def clamped_run(cell, X, *, units=(), value: float = 0.0, steps=()):
    r"""Hidden states and update gates of an MGRU with the gates of ``units`` set to ``value`` on
    the 0-based time indices ``steps``; the cell's own step (:meth:`MGRU.forward`), run through a
    namespace whose logistic is clamped on those steps.

    Parameters
    ----------
    cell : MGRU
    X : ndarray, shape (T, B, m)
    units : sequence of int
        Units whose gate is replaced (empty: the unmodified step).
    value : float
        The gate value used for them, in [0, 1].
    steps : sequence of int
        Time indices (0-based) where the clamp applies.

    Returns
    -------
    H : ndarray, shape (T, B, n)
    F : ndarray, shape (T, B, n)
        The gates actually used.
    """
    if cell.kind != "mgru":
        raise ValueError(f"cell: expected an MGRU (the clamp replaces its update gate f), "
                         f"found {cell.kind!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"value: expected a gate value in [0, 1], found {value!r}")
    X = np.asarray(X, dtype=np.float64)
    T, B, _ = X.shape
    idx = np.asarray(list(units), dtype=int)
    if idx.size and (idx.min() < 0 or idx.max() >= cell.n):
        raise ValueError(f"units: expected indices in [0, {cell.n}), found {idx.tolist()}")
    when = set(int(s) for s in steps) if idx.size else set()
    clamp = _ClampedGate(idx, float(value))
    P = cell.params
    rec = lambda k, a: FLOAT.matvec(P[k], a)          # noqa: E731
    h = np.zeros((B, cell.n))
    H, F = np.empty((T, B, cell.n)), np.empty((T, B, cell.n))
    for t in range(T):
        h, aux = cell.forward(clamp if t in when else FLOAT, P, h, X[t], rec)
        H[t], F[t] = h, aux["f"]
    return H, F


def _recall(cell, H, task):
    ok = rp.metrics.predictions(cell.readout(H)) == task.targets
    return float(ok[task.recall].mean())


def closed_units(F, L: int, D: int) -> np.ndarray:
    """Units whose mean update gate over the delay steps (all sequences) is below :data:`CLOSED`,
    from the gates ``F`` (T, B, n) of :func:`clamped_run`."""
    return np.flatnonzero(F[L:L + D].mean(axis=(0, 1)) < CLOSED)


def _net(name, *, quick: bool, seed: int):
    cell, meta = load(name)
    K, L, D = int(meta["K"]), int(meta["L"]), int(meta["D"])
    task = tasks.memorization_all(K, L, D)
    delay = range(L, L + D)
    H, F = clamped_run(cell, task.X)                 # the unclamped net: states and gates
    full = _recall(cell, H, task)
    closed = closed_units(F, L, D)
    others = np.setdiff1d(np.arange(cell.n), closed)
    phi = float(F[L:L + D][..., others].mean())
    H_open, _ = clamped_run(cell, task.X, units=closed, value=phi, steps=delay)
    rng = np.random.default_rng([seed, cell.n, D])
    ctrl = rng.choice(others, size=min(len(closed), len(others)), replace=False)
    H_ctrl, _ = clamped_run(cell, task.X, units=ctrl, value=phi, steps=delay)
    ranks = list(range(0, cell.n + 1, 4 if quick else 1))
    plain, clamped = [], []
    for r in ranks:
        small = rp.truncate_svd(cell, rank=r) if r < cell.n else cell
        plain.append(_recall(small, small.run(task.X), task))
        Hc, _ = clamped_run(small, task.X, units=closed, value=0.0, steps=delay)
        clamped.append(_recall(small, Hc, task))
    base_clamped = clamped[-1]
    return {"checkpoint": name, "D": D, "n": cell.n, "seed": int(meta.get("seed", 1)),
            "full_recall": full, "closed_units": closed.tolist(), "n_closed": int(len(closed)),
            "phi": phi, "open_recall": _recall(cell, H_open, task),
            "control_units": ctrl.tolist(), "control_recall": _recall(cell, H_ctrl, task),
            "full_recall_closed_clamped": base_clamped,
            "ranks": ranks, "recall_plain": plain, "recall_closed_clamped": clamped,
            "kept_plain": kept_from(ranks, np.array(plain) / full >= LEVEL),
            "kept_closed_clamped": kept_from(ranks, np.array(clamped) / full >= LEVEL)}


def _names(quick: bool) -> list[str]:
    if quick:
        return ["mgru_memorization_D20"]
    out = [f"mgru_memorization_D{D}" for D in (10, 20, 50, 100)]
    return out + ["seeds/" + r["shipped"] for r in sweep_results()
                  if r["cell"] == "mgru" and r["D"] == 20 and r["hidden"] == 64
                  and r["recipe"] is None and r["shipped"]]


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Both interventions on every net (see the module notes)."""
    nets = [_net(name, quick=quick, seed=seed)
            for name in rp.progress(_names(quick), desc=NAME, quiet=quiet)]
    rows = [{k: v for k, v in x.items() if not isinstance(v, list)} for x in nets]
    return {"name": NAME, "rows": rows, "nets": nets,
            "meta": {"quick": quick, "seed": seed, "closed_threshold": CLOSED, "level": LEVEL}}


def headline(result: dict) -> dict:
    nets = result["nets"]
    return {"n_nets": len(nets),
            "open_recall": [round(x["open_recall"], 3) for x in nets],
            "control_recall": [round(x["control_recall"], 3) for x in nets],
            "kept_plain": [x["kept_plain"] for x in nets],
            "kept_closed_clamped": [x["kept_closed_clamped"] for x in nets],
            "n_closed": [x["n_closed"] for x in nets]}


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
