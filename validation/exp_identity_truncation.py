r"""Identity-aware truncation on the memorization checkpoints (issue 14, item 4).

Question. The tanh RNN is trained from :math:`W = I` and holds its state through
:math:`W \approx I` inside the truncated matrix; the MGRU holds it through
:math:`(1 - f)\odot h` outside its matrices. Does truncating :math:`W - I` and
keeping :math:`I` (``rp.truncate_svd(cell, rank=r, about="identity")``,
:math:`W_r = I + [W - I]_r`) lower the rank the tanh RNN needs, and does it do
nothing (or harm) for the MGRU? The issue reports "truncating only W - I and
keeping I halves the tanh RNN's kept rank (54-61 becomes 30-37)"; this module
measures it on the shipped checkpoints.

For every shipped 5-bit memorization checkpoint (``CHECKPOINTS``: tanh RNN
D = 10, 20, 50; MGRU D = 10, 20, 50, 100; n = 64), every rank r = 0..n and
four methods,

* ``plain``: Eckart–Young on W (``about=None``);
* ``data``: data-aware, the rank-r minimiser of the mean squared forcing on 64
  sampled fit sequences (``validation.experiments.fit_inputs``, seed 0, as in
  the README's table; ``weighting="forcing"``);
* ``identity``: Eckart–Young on :math:`W - I`, plus I (``about="identity"``);
* ``identity_data``: the data-aware closed form applied to :math:`W - I`, plus I,

and every *target*: ``all`` (the same r for every recurrent matrix) and, for a
cell with several recurrent matrices (the MGRU), each matrix alone with the
others kept full (``Wf`` only, ``Wh`` only; issue 14 item 8), the truncated
net is scored without retraining on all 32 sequences
(:func:`rnnperturb.tasks.memorization_all`): recall accuracy (fraction of the
5 x 32 recall bits right, ``rp.tasks.metrics``) and sequence accuracy (all 5
bits right).

Kept rank (``headline``): the smallest rank *from which on every larger rank*
the criterion holds (as ``validation.exp_truncation.kept``), for recall
accuracy >= 0.99 (``rank_recall99``), for 32/32 sequences
(``rank_all32``), and for both (``rank_kept``); the area under the
recall-versus-rank curve (``auc``: mean recall accuracy over r = 0..n, a
statistic that does not jump with one bit); and the storage at ``rank_kept``
from :func:`rnnperturb.compression_cost` with the same ``about``
(``recurrent_bytes_ratio``: bytes of the truncated recurrent matrices over
their dense bytes; below 1 only when the kept rank is below n/2, since
:math:`I + LR` stores 2nr numbers). Per checkpoint, the full net's scores
(``full``: all 32/32 on every shipped net); per checkpoint and matrix, the spectral norms
and stable ranks (:math:`\|A\|_F^2/\|A\|_2^2`) of W and of W - I are given
for context (``spectra``).

Run (about 20 s on one core; ``--quick``: every 4th rank, 8 s):
``OPENBLAS_NUM_THREADS=1 python -m validation.exp_identity_truncation --out validation/results``.
Writes ``identity_truncation.csv`` (one row per checkpoint, target, method and
rank) and ``identity_truncation.json`` (meta and headline). Deterministic.
On a loaded machine a multi-threaded BLAS makes each 64 x 64 SVD 100x slower;
the module therefore defaults ``OPENBLAS_NUM_THREADS`` to 1 when it is the
first to import NumPy.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")     # speed only (see the module notes)

import numpy as np  # noqa: E402

import rnnperturb as rp  # noqa: E402
from rnnperturb import tasks  # noqa: E402
from validation.experiments import cli, fit_inputs, load, rank_grid  # noqa: E402
from validation.exp_truncation import kept  # noqa: E402

__all__ = ["run", "headline", "CHECKPOINTS", "METHODS"]

NAME = "identity_truncation"
CHECKPOINTS = ("elman_memorization_D10", "elman_memorization_D20", "elman_memorization_D50",
               "mgru_memorization_D10", "mgru_memorization_D20", "mgru_memorization_D50",
               "mgru_memorization_D100")
#: method -> (uses the fit data, about)
METHODS = {"plain": (False, None), "data": (True, None),
           "identity": (False, "identity"), "identity_data": (True, "identity")}


def _scores(cell, task) -> tuple[float, float]:
    """Recall accuracy and sequence accuracy of ``cell`` on ``task``."""
    Y = cell.readout(cell.run(task.X))
    ok = tasks.metrics.predictions(Y) == task.targets
    return float(ok[task.recall].mean()), tasks.metrics.sequence_accuracy(Y, task)


def _targets(cell) -> dict[str, tuple[str, ...]]:
    """``all`` (every recurrent matrix) and, with several, each matrix alone."""
    names = tuple(cell.recurrent_names)
    out = {"all": names}
    if len(names) > 1:
        out.update({k: (k,) for k in names})
    return out


def _stable_rank(A) -> float:
    s = np.linalg.svd(A, compute_uv=False)
    return float(np.sum(s ** 2) / s[0] ** 2) if s[0] > 0 else 0.0


def _spectra(cell) -> dict:
    I = np.eye(cell.n)
    out = {}
    for k, W in cell.recurrent.items():
        out[k] = {"norm2_W": float(np.linalg.norm(W, 2)),
                  "norm2_W_minus_I": float(np.linalg.norm(W - I, 2)),
                  "stable_rank_W": _stable_rank(W), "stable_rank_W_minus_I": _stable_rank(W - I)}
    return out


def _truncate(cell, targets, r, weights, about):
    rank = {k: r for k in targets}
    anchor = None if about is None else {k: about for k in targets}
    return rp.truncate_svd(cell, rank=rank, weights=weights, about=anchor)


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True,
        checkpoints=CHECKPOINTS) -> dict:
    rows, spectra, full, costs = [], {}, {}, []     # costs: the kept-rank table
    for name in rp.progress(list(checkpoints), desc=NAME, quiet=quiet):
        cell, meta = load(name)
        K, L, D = int(meta["K"]), int(meta["L"]), int(meta["D"])
        task = tasks.memorization_all(K, L, D)
        full_rec, full_seq = _scores(cell, task)
        weights = rp.truncation_weights(cell, fit_inputs(meta, seed=seed, batch=64),
                                        weighting="forcing")
        spectra[name] = _spectra(cell)
        full[name] = {"cell": cell.kind, "D": D, "n": cell.n, "recall": full_rec,
                      "sequence": full_seq}
        ranks = rank_grid(cell.n, quick=quick, step_quick=4)
        for target, mats in _targets(cell).items():
            for method, (uses_data, about) in METHODS.items():
                rr = []
                for r in ranks:
                    small = _truncate(cell, mats, r, weights if uses_data else None, about)
                    rec, seq = _scores(small, task)
                    rr.append({"checkpoint": name, "target": target, "method": method,
                               "rank": r, "recall": rec, "sequence": seq})
                rows.extend(rr)
                kr = _kept_ranks(rr)
                r_k = kr["rank_kept"]
                entry = {"checkpoint": name, "target": target, "method": method, **kr}
                if r_k is not None:
                    small = _truncate(cell, mats, r_k, weights if uses_data else None, about)
                    c = rp.compression_cost(cell, small, about=None if about is None else
                                            {k: about for k in mats})
                    rb = sum(m.bytes for m in c.matrices.values())
                    rb0 = sum(cell.recurrent[k].size * cell.dtype.itemsize
                              for k in cell.recurrent_names)
                    entry.update(recurrent_bytes_ratio=rb / rb0, bytes_ratio=c.ratio_bytes,
                                 formats={k: m.format for k, m in c.matrices.items()})
                costs.append(entry)
    return {"name": NAME, "rows": rows, "spectra": spectra, "full": full, "kept_ranks": costs,
            "meta": {"quick": quick, "seed": seed, "methods": {
                "plain": "truncate_svd(cell, rank=r)",
                "data": "truncate_svd(cell, rank=r, weights=truncation_weights(cell, X_fit))",
                "identity": "truncate_svd(cell, rank=r, about='identity')",
                "identity_data": "truncate_svd(cell, rank=r, weights=..., about='identity')"},
                "fit": "64 sampled sequences (validation.experiments.fit_inputs, seed), "
                       "evaluated on all 32 (not held out)",
                "targets": "all = every recurrent matrix at rank r; a matrix name = that "
                           "matrix alone at rank r, the others full",
                "kept": "smallest rank from which on every larger rank the criterion holds"}}


def _kept_ranks(rr: list[dict]) -> dict:
    ranks = [x["rank"] for x in rr]
    ok99 = [x["recall"] >= 0.99 for x in rr]
    ok32 = [x["sequence"] >= 1.0 for x in rr]
    return {"rank_recall99": kept(ranks, ok99), "rank_all32": kept(ranks, ok32),
            "rank_kept": kept(ranks, [a and b for a, b in zip(ok99, ok32)]),
            "first_rank_recall99": min((x["rank"] for x in rr if x["recall"] >= 0.99),
                                       default=None),
            "auc": float(np.mean([x["recall"] for x in rr]))}


def headline(result: dict) -> dict:
    """Per checkpoint and target, per method: the kept ranks, the AUC and the
    recurrent storage at the kept rank; and the issue's claim (tanh RNN and
    MGRU, every matrix, plain vs identity-aware, both criteria)."""
    compact, claim = {}, {}
    for e in result["kept_ranks"]:
        key = f"{e['checkpoint']}:{e['target']}"
        compact.setdefault(key, {})[e["method"]] = {
            "recall99": e["rank_recall99"], "all32": e["rank_all32"], "kept": e["rank_kept"],
            "auc": e["auc"], "recurrent_bytes_ratio": e.get("recurrent_bytes_ratio")}
        if e["target"] == "all" and e["method"] in ("plain", "identity"):
            claim.setdefault(e["checkpoint"], {})[e["method"]] = e["rank_kept"]
    return {"kept": compact, "plain_vs_identity_all": claim}


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
