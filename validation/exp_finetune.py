r"""(g) Fine-tuned baseline: the truncated net briefly retrained at fixed rank.

What does "without fine tuning" give up? For the memorization checkpoints at
the largest delay shipped for both cells, and a few retained ranks r, the
recurrent matrices are truncated by plain SVD (:func:`rnnperturb.truncate_svd`)
and the net is then retrained for a short budget by *projected Adam*: every
parameter (recurrent, input, bias, readout) takes an Adam step on the BPTT
gradient of :func:`validation.bptt.loss_and_grads` (global-norm clipping at
1), after which each recurrent matrix is projected back onto rank r (its
truncated SVD, the nearest rank-r matrix in every unitarily invariant norm).
So the net stays exactly at rank r throughout.

Training batches are fresh sampled sequences (seeded); the score is the
recall accuracy on all 32 sequences (exact), recorded at a few steps.
Training runs in float64, so that the result does not depend (beyond
round-off) on how many threads the BLAS uses: in float32 the summation order
changes the loss in the third digit after a few dozen steps.

Output: ``finetune.csv`` (one row per checkpoint, rank and recorded step) and
``finetune.json``.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from rnnperturb import tasks
from validation import bptt
from validation.experiments import checkpoint_names, cli, eval_task, load, performance, write_result
from validation.optim import Adam, clip_by_global_norm

__all__ = ["run", "headline", "write", "finetune"]

NAME = "finetune"
RANKS = (4, 8, 16, 32)
RANKS_QUICK = (8, 16)
STEPS = 300
STEPS_QUICK = 40
LR = 1e-3


def _project(cell, params, rank):
    """Replace the recurrent matrices in ``params`` by their rank-``rank`` truncation."""
    c = cell.replace(**{k: params[k].astype(np.float64) for k in cell.recurrent_names})
    small = rp.truncate_svd(c, rank=rank)
    for k in cell.recurrent_names:
        params[k][...] = small.recurrent[k]


def finetune(cell, meta, *, rank: int, steps: int, record, seed, lr: float = LR,
             batch: int = 64, dtype=np.float64):
    """Projected-Adam retraining of ``truncate_svd(cell, rank=rank)``.

    Parameters
    ----------
    cell : ElmanRNN or MGRU
        Trained memorization net with readout.
    meta : dict
        Its metadata (``K, L, D``).
    rank : int
    steps : int
        Adam steps.
    record : sequence of int
        Steps after which the net is scored (0 = truncated, not retrained).
    seed : int or numpy.random.Generator
        Source of the training batches.

    Returns
    -------
    list of dict
        ``{"step", "perf", "sequence", "loss"}`` at each recorded step.
    """
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    K, L, D = int(meta["K"]), int(meta["L"]), int(meta["D"])
    test = eval_task(meta, seed=0)
    params = bptt.params_from_cell(rp.truncate_svd(cell, rank=rank), dtype=dtype)
    opt = Adam(params, lr=lr)
    out, loss = [], float("nan")
    record = set(record)

    def score(step):
        c = bptt.cell_from_params(cell.kind, {k: v.astype(np.float64) for k, v in params.items()})
        p = performance(c, test)
        out.append({"step": step, "perf": p["perf"], "sequence": p["sequence"], "loss": loss})

    if 0 in record:
        score(0)
    for s in range(1, steps + 1):
        task = tasks.memorization(K, L, D, batch=batch, seed=rng)
        loss, g = bptt.loss_and_grads(cell.kind, params, task)
        g, _ = clip_by_global_norm(g, 1.0)
        opt.step(g)
        _project(cell, params, rank)
        if s in record:
            score(s)
    return out


def _delay():
    ds = {c: {int(n.split("_D")[1]) for n in checkpoint_names(cell=c, task="memorization")}
          for c in ("elman", "mgru")}
    common = ds["elman"] & ds["mgru"]
    return max(common) if common else max(ds["elman"] | ds["mgru"])


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Fine-tune truncated memorization nets at a few fixed ranks."""
    D = _delay()
    steps = STEPS_QUICK if quick else STEPS
    record = sorted({0, steps // 8, steps // 4, steps // 2, steps})
    rows = []
    jobs = [(name, r) for name in checkpoint_names(task="memorization")
            if name.endswith(f"_D{D}") for r in (RANKS_QUICK if quick else RANKS)]
    for name, r in rp.progress(jobs, desc="fine tuning", quiet=quiet):
        cell, meta = load(name)
        full = performance(cell, eval_task(meta, seed=0))["perf"]
        for rec in finetune(cell, meta, rank=r, steps=steps, record=record,
                            seed=np.random.default_rng([int(seed), 41, r])):
            rows.append({"checkpoint": name, "cell": cell.kind, "D": D, "n": cell.n, "rank": r,
                         "full_perf": full, **rec})
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "steps": steps, "lr": LR, "batch": 64,
                     "D": D, "method": "projected Adam (truncated SVD after each step)"}}


def headline(result: dict) -> dict:
    rows = result["rows"]
    steps = result["meta"]["steps"]
    out = {}
    for ck in sorted({r["checkpoint"] for r in rows}):
        for r in sorted({x["rank"] for x in rows if x["checkpoint"] == ck}):
            rr = {x["step"]: x for x in rows if x["checkpoint"] == ck and x["rank"] == r}
            out[f"{ck} r={r}"] = {"recall_no_finetune": rr[0]["perf"],
                                  f"recall_after_{steps}_steps": rr[steps]["perf"]}
    return out


def write(result: dict, out_dir: str) -> list[str]:
    return write_result(result, out_dir, headline(result))


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
