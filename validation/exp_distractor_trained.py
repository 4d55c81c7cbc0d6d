r"""Coherence as a cause, the clean test (issue 14, item 6): nets *trained* with a distractor.

:mod:`validation.exp_distractor` evaluates nets trained without a distractor. Here each net is
trained (:mod:`validation.train`, recipe ``<cell>_memorization_D20_distractor_rho<rho>``) on 5-bit
memorization at D = 20 whose blank delay carries an AR(1) distractor of fixed lag-one
autocorrelation :math:`\rho \in \{0, 0.5, 0.9, 0.98\}` and fixed amplitude :math:`\sigma = 1`
(:data:`validation.recipes.DISTRACTOR_SIGMA`): the blank channel is :math:`1 + \sigma z_t` on the
delay steps. The task's intrinsic dimension (32 sequences, 5 bits) is the same for every
:math:`\rho`; only the coherence of the input changes.

Each net is then scored under the distribution it was trained on: all 32 sequences x 8 distractor
paths (evaluation seed ``[seed, 41]``, the same innovations for every :math:`\rho`: common random
numbers), with the statistics of :func:`validation.exp_distractor.statistics`: the full net's
recall, the kept rank (>= 99 % of the full net's recall, plain SVD, every rank 0..n), the AUC rank
and :math:`C_t` at the recall steps (frozen/fresh, ``rp.noise_response``).

Trend test, per cell and statistic: the least-squares slope of the statistic against
:math:`\rho` over the nets (one net per seed and :math:`\rho`), with a two-sided permutation
p-value (the :math:`\rho` labels shuffled across nets, 20,000 permutations) and a 95 % percentile
bootstrap interval (seeds resampled within each :math:`\rho`, 20,000 resamples); also the
difference of means :math:`\rho = 0.98` minus :math:`\rho = 0` with its bootstrap interval.

Commands::

    python -m validation.exp_distractor_trained --train        # both cells, seeds 1-6
    python -m validation.exp_distractor_trained --train --cells mgru --seeds 7 8 9 10 11 12
    python -m validation.exp_distractor_trained --out validation/results [--quick]

``--train`` trains every (cell, rho, seed), writes the nets that pass the recipe's check to
``validation/checkpoints/seeds/distractor/`` (``<recipe>_n64_s<seed>.npz`` + ``.json``) and
records every run, failures included, in ``training.json`` there. The evaluation reads those
files and writes ``distractor_trained.csv`` / ``.json`` (the shipped copies are in
``validation/data/``). Deterministic (fixed seeds).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import rnnperturb as rp
from validation.experiments import CHECKPOINT_DIR, rounded, write_result
from validation.exp_distractor import statistics
from validation.recipes import DISTRACTOR_RHOS, DISTRACTOR_SIGMA, RECIPES, distractor_name
from validation.train import memorization_check_task, save_result, train

__all__ = ["run", "headline", "trend", "train_all", "net_statistics", "checkpoint_stem",
           "recall_without_distractor_training",
           "DIR", "RHOS", "SIGMA", "CELLS", "SEEDS"]

NAME = "distractor_trained"
DIR = os.path.join(CHECKPOINT_DIR, "seeds", "distractor")
RHOS = DISTRACTOR_RHOS
SIGMA = DISTRACTOR_SIGMA
CELLS = ("elman", "mgru")
SEEDS = (1, 2, 3, 4, 5, 6)
D = 20
HIDDEN = 64
DRAWS = 8
STATS = ("kept_99", "auc_rank", "C", "full_recall")


def checkpoint_stem(cell: str, rho: float, seed: int, *, hidden: int = HIDDEN) -> str:
    """``<cell>_memorization_D20_distractor_rho<rho>_n<hidden>_s<seed>``."""
    return f"{distractor_name(cell, D, rho)}_n{hidden}_s{seed}"


# ----------------------------------------------------------------------------- training
def train_all(*, cells=CELLS, rhos=RHOS, seeds=SEEDS, out_dir: str = DIR,
              quiet: bool = True) -> list[dict]:
    """Train every (cell, rho, seed) with its distractor recipe; ship the nets that pass.

    Parameters
    ----------
    cells, rhos, seeds : sequences
    out_dir : str
        Directory of the checkpoints and of ``training.json`` (merged: entries of other
        (cell, rho, seed) are kept, a re-run one replaced).
    quiet : bool

    Returns
    -------
    list of dict
        One entry per run: ``cell, rho, seed, recipe, steps, solved_check, wall_time_s``, the clean
        and distractor ``n_correct``, and ``shipped`` (file stem, or None for a failure).
    """
    os.makedirs(out_dir, exist_ok=True)
    index = os.path.join(out_dir, "training.json")
    old = []
    if os.path.exists(index):
        with open(index) as f:
            old = json.load(f)["runs"]
    runs = []
    for cell in cells:
        for rho in rhos:
            recipe = RECIPES[distractor_name(cell, D, rho)]
            for seed in seeds:
                res = train(recipe, seed=seed, quiet=True)
                rec = res.record
                ft = rec["final_test"]
                ok = bool(rec["solved_check"] and ft["n_correct"] == ft["n_sequences"]
                          and ft["distractor"]["n_correct"] == ft["distractor"]["n_sequences"])
                stem = checkpoint_stem(cell, rho, seed)
                if ok:
                    save_result(res, os.path.join(out_dir, stem + ".npz"))
                runs.append({"cell": cell, "rho": float(rho), "sigma": SIGMA, "seed": seed,
                             "recipe": recipe.name, "steps": rec["steps"],
                             "solved_check": rec["solved_check"],
                             "wall_time_s": round(rec["wall_time_s"], 2),
                             "n_correct_clean": ft["n_correct"],
                             "n_correct_distractor": ft["distractor"]["n_correct"],
                             "n_sequences_distractor": ft["distractor"]["n_sequences"],
                             "shipped": stem if ok else None})
                if not quiet:
                    print(json.dumps(runs[-1]), flush=True)
                done = {(r["cell"], r["rho"], r["seed"]) for r in runs}
                keep = [r for r in old if (r["cell"], r["rho"], r["seed"]) not in done]
                with open(index, "w") as f:
                    json.dump({"sigma": SIGMA, "D": D, "hidden": HIDDEN,
                               "runs": sorted(keep + runs, key=lambda r: (r["cell"], r["rho"],
                                                                          r["seed"]))},
                              f, indent=1)
                    f.write("\n")
    return runs


# ----------------------------------------------------------------------------- evaluation
def net_statistics(cell, meta: dict, *, seed: int = 0, draws: int = DRAWS,
                   rank_step: int = 1) -> dict:
    """The statistics of one trained net under the distractor it was trained with.

    Parameters
    ----------
    cell : Cell
        With a readout.
    meta : dict
        Checkpoint metadata: ``K, L, D, distractor_rho, distractor_sigma``.
    seed : int
        Evaluation seed (innovations ``[seed, 41]``, the same for every rho).
    draws : int
        Distractor paths per sequence (a multiple of 8 keeps C_t on one path per sequence).
    rank_step : int
        Evaluate ranks 0, step, ..., and n.

    Returns
    -------
    dict
        As :func:`validation.exp_distractor.statistics`.
    """
    K, L, Dm = int(meta["K"]), int(meta["L"]), int(meta["D"])
    dist = (float(meta["distractor_rho"]), float(meta["distractor_sigma"]))
    t = memorization_check_task(K, L, Dm, distractor=dist, draws=draws, seed=[seed, 41])
    ranks = list(range(0, cell.n + 1, rank_step))
    if ranks[-1] != cell.n:
        ranks.append(cell.n)
    return statistics(cell, t.X, t.targets, t.recall, L=L, D=Dm, ranks=ranks)


def recall_without_distractor_training(cell, *, rho: float, sigma: float = SIGMA, seed: int = 0,
                                       draws: int = DRAWS) -> float:
    """Recall accuracy of a net under the distractor (``rho``, ``sigma``) on the evaluation inputs
    of :func:`net_statistics` (for the shipped nets trained without one: how much it matters)."""
    t = memorization_check_task(2, 5, D, distractor=(rho, sigma), draws=draws, seed=[seed, 41])
    Y = cell.readout(cell.run(t.X))
    return float((Y.argmax(-1) == t.targets)[t.recall].mean())


def _training_index(ckpt_dir):
    with open(os.path.join(ckpt_dir, "training.json")) as f:
        return json.load(f)


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True, ckpt_dir: str = DIR) -> dict:
    idx = _training_index(ckpt_dir)
    shipped = [r for r in idx["runs"] if r["shipped"] is not None]
    if quick:
        shipped = [r for r in shipped if r["seed"] == min(x["seed"] for x in shipped)]
    rows = []
    for r in rp.progress(shipped, desc=NAME, quiet=quiet):
        cell, meta = rp.load_with_metadata(os.path.join(ckpt_dir, r["shipped"] + ".npz"))
        st = net_statistics(cell, meta, seed=seed, draws=DRAWS, rank_step=4 if quick else 1)
        rows.append({"checkpoint": r["shipped"], "cell": r["cell"], "seed": r["seed"],
                     "rho": r["rho"], "sigma": r["sigma"], "steps": r["steps"],
                     "full_recall": st["full_recall"], "kept_99": st["kept_99"],
                     "auc_rank": st["auc_rank"], "C": st["C"]})
        if not quiet:
            print(rows[-1], flush=True)
    plain = {}
    for kind in CELLS:
        c0, _ = rp.load_with_metadata(os.path.join(CHECKPOINT_DIR, f"{kind}_memorization_D{D}.npz"))
        plain[kind] = {str(rho): recall_without_distractor_training(c0, rho=rho, seed=seed)
                       for rho in RHOS}
    failures = [r for r in idx["runs"] if r["shipped"] is None]
    wall = {c: round(sum(r["wall_time_s"] for r in idx["runs"] if r["cell"] == c), 1)
            for c in CELLS}
    return {"name": NAME, "rows": rows, "training": idx["runs"], "failures": failures,
            "seed1_trained_without_distractor_recall": plain,
            "meta": {"quick": quick, "seed": seed, "rhos": list(RHOS), "sigma": SIGMA,
                     "draws": DRAWS, "D": D, "training_wall_time_s": wall}}


# ----------------------------------------------------------------------------- trend test
def trend(x, y, *, n_perm: int = 20_000, n_boot: int = 20_000, seed=0) -> dict:
    r"""Least-squares slope of y on x with a permutation p-value and a stratified bootstrap.

    Parameters
    ----------
    x, y : array_like, shape (N,)
        One value per net (x: its rho; y: a statistic); the nets are independent.
    n_perm, n_boot : int
    seed : int or Generator

    Returns
    -------
    dict
        ``slope`` (per unit of x); ``p_perm``: two-sided, the fraction of the ``n_perm`` label
        shuffles (plus the observed one) whose |slope| is >= the observed one;
        ``slope_ci95``: percentile interval of the slope when each x group is resampled with
        replacement; ``diff``: mean at the largest x minus mean at the smallest;
        ``diff_ci95``: its bootstrap interval (same resamples).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x, y: expected two 1-d arrays of one shape, found {x.shape} and "
                         f"{y.shape}")
    levels = np.unique(x)
    if levels.size < 2:
        raise ValueError(f"x: expected at least two distinct values, found {levels.tolist()}")
    rng = rp._checks.as_generator(seed)
    xc = x - x.mean()
    sxx = float(xc @ xc)

    def slope(yy):
        return float(xc @ (yy - yy.mean())) / sxx

    b = slope(y)
    perm = np.array([slope(y[rng.permutation(y.size)]) for _ in range(n_perm)])
    p = (1 + int(np.sum(np.abs(perm) >= abs(b) - 1e-12))) / (n_perm + 1)
    groups = [np.nonzero(x == v)[0] for v in levels]
    bs, ds = np.empty(n_boot), np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        xb, yb = x[idx], y[idx]
        xbc = xb - xb.mean()
        bs[i] = float(xbc @ (yb - yb.mean())) / float(xbc @ xbc)
        ds[i] = yb[xb == levels[-1]].mean() - yb[xb == levels[0]].mean()
    d = float(y[x == levels[-1]].mean() - y[x == levels[0]].mean())
    return {"slope": b, "p_perm": float(p),
            "slope_ci95": [float(v) for v in np.percentile(bs, [2.5, 97.5])],
            "diff": d, "diff_ci95": [float(v) for v in np.percentile(ds, [2.5, 97.5])],
            "n": int(y.size)}


def headline(result: dict) -> dict:
    out = {}
    rows = result["rows"]
    for kind in CELLS:
        rr = [r for r in rows if r["cell"] == kind]
        if not rr:
            continue
        for key in STATS:
            per = {}
            for rho in RHOS:
                v = [r[key] for r in rr if r["rho"] == rho and r[key] is not None]
                per[str(rho)] = {"values": v, "mean": float(np.mean(v)) if v else None,
                                 "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None}
            out[f"{kind}_{key}_vs_rho"] = per
            ok = [r for r in rr if r[key] is not None]
            if len({r["rho"] for r in ok}) > 1 and key != "full_recall":
                out[f"{kind}_{key}_trend"] = trend([r["rho"] for r in ok],
                                                   [r[key] for r in ok], seed=[result["meta"]
                                                                               ["seed"], 61])
        plain = result.get("seed1_trained_without_distractor_recall", {}).get(kind)
        if plain is not None:
            out[f"{kind}_seed1_without_distractor_training_recall_loss"] = {
                k: 1.0 - v for k, v in plain.items()}
        out[f"{kind}_nets"] = len(rr)
        out[f"{kind}_failures"] = sum(r["cell"] == kind for r in result.get("failures", []))
    return out


# ----------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m validation.exp_distractor_trained",
                                 description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--train", action="store_true",
                    help="train the nets (writes validation/checkpoints/seeds/distractor/)")
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    ap.add_argument("--rhos", nargs="+", type=float, default=list(RHOS))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--ckpt-dir", default=DIR)
    ap.add_argument("--out", default=os.path.join("validation", "results"))
    ap.add_argument("--quick", action="store_true", help="seed 1 only, every 4th rank")
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    for rho in a.rhos:
        if rho not in RHOS:
            ap.error(f"--rhos: expected values among {list(RHOS)}, found {rho}")
    for s in a.seeds:
        if s < 0:
            ap.error(f"--seeds: expected integers >= 0, found {s}")
    t0 = time.perf_counter()
    if a.train:
        runs = train_all(cells=a.cells, rhos=a.rhos, seeds=a.seeds, out_dir=a.ckpt_dir,
                         quiet=a.quiet)
        index = os.path.join(a.ckpt_dir, "training.json")
        print(f"trained {len(runs)} nets ({sum(r['shipped'] is None for r in runs)} failed) in "
              f"{time.perf_counter() - t0:.1f} s; index {index}")
        return 0
    res = run(quick=a.quick, seed=a.seed, quiet=a.quiet, ckpt_dir=a.ckpt_dir)
    head = headline(res)
    paths = write_result(res, a.out, head)
    print(json.dumps(rounded({k: v for k, v in head.items() if "trend" in k}, 4), indent=1,
                     sort_keys=True))
    print(f"wrote {', '.join(paths)} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
