# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 — From hidden-state deviation to recall accuracy
#
# Readout $y_t = V h_t + c$. The perturbed net has logits $y'_t = y_t + V e_t$, so
# for the true class $y$ and any other class $j$
#
# $$y'_{t,y} - y'_{t,j} = m_j + (V_y - V_j)^\top e_t, \qquad m_j = y_{t,y} - y_{t,j}.$$
#
# Over all deviations with $\|e_t\|_2 \le \rho$, the smallest value of
# $(V_y-V_j)^\top e$ is $-\|V_y-V_j\|_2\,\rho$ (derived below with a Lagrange
# multiplier), so the recall step is **certainly correct iff**
# $m_j > \|V_y - V_j\|_2\,\rho$ for every $j\ne y$ — sufficient for the actual
# $e_t$, and *sharp* over the ball (some $e$ with $\|e\|=\rho$ flips it otherwise).
# It implies the coarser test of `DESIGN.md` §2(e),
# $\rho\max_j\|V_y-V_j\|_2 < \min_j m_j$.
#
# We check it on a trained memorization checkpoint (all $2^5 = 32$ sequences):
# SVD truncation at several ranks, exact deviation, the condition with the exact
# $\|e_t\|$ ("oracle") and with the library's certified bound, against the measured
# recall. Soundness: every certified step must be correct.

# %%
import argparse
import time
from pathlib import Path

import _setup  # noqa: F401  (headless matplotlib; the package from the repository)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import rnnperturb as rp  # noqa: E402

_p = argparse.ArgumentParser()
_p.add_argument("--checkpoint", default=None)
OUT, _args, T0 = _setup.output_dir("05", _p)

# %% [markdown]
# ## 1. The worst deviation in a ball, by Lagrange multipliers

# %%
n = 3
a = sp.Matrix(sp.symbols("a0:3", real=True))
e = sp.Matrix(sp.symbols("e0:3", real=True))
rho = sp.Symbol("rho", positive=True)
mu = sp.Symbol("mu", real=True)
Lag = (a.T * e)[0] - mu * ((e.T * e)[0] - rho ** 2)
sols = sp.solve(list(sp.Matrix([Lag]).jacobian(list(e) + [mu])), list(e) + [mu], dict=True)
vals = sorted({sp.simplify((a.T * e.subs(s))[0]) for s in sols}, key=str)
print("stationary values of a.e on |e| = rho:", vals)
norm_a = sp.sqrt((a.T * a)[0])
assert any(sp.simplify(v + rho * norm_a) == 0 for v in vals)
assert any(sp.simplify(v - rho * norm_a) == 0 for v in vals)
print("=> min over the ball = -rho*|a|: step correct for every |e| <= rho iff m_j > |V_y - V_j| rho")

# %% [markdown]
# ## 2. A trained checkpoint

# %%
root = Path(rp.__file__).resolve().parents[1]
cands = ([Path(_args.checkpoint)] if _args.checkpoint else
         [root / "validation" / "checkpoints" / f"{k}_memorization_D20.npz" for k in ("mgru", "elman")])
ckpts = [p for p in cands if p.exists()]
if ckpts:
    loaded = [(p.stem, *rp.load_with_metadata(p)) for p in ckpts]
else:   # fall back to a random net with a readout (only if no checkpoint exists)
    print("no checkpoint found: using a random MGRU with a random readout")
    c = rp.random_cell("mgru", 32, 4, spectral_norm=1.0, n_out=3, seed=0)
    loaded = [("random_mgru", c, {"K": 2, "L": 5, "D": 20})]


def margins_and_gaps(cell, task):
    """Per-step nominal margins m_j (R, B, k) and ||V_y - V_j|| (R, B, k) at recall steps."""
    H = cell.run(task.X)
    Y = cell.readout(H)
    R = task.recall
    ys = task.targets[R]                     # (N,)
    logits = Y[R]                            # (N, k)
    m = logits[np.arange(len(ys)), ys][:, None] - logits
    gaps = np.linalg.norm(cell.V[ys][:, None, :] - cell.V[None, :, :], axis=-1)
    other = np.ones_like(m, bool)
    other[np.arange(len(ys)), ys] = False
    return m, gaps, other, ys


def certified(m, gaps, other, rho):
    """Per step: m_j > |V_y - V_j| rho for every j != y."""
    ok = (m > gaps * rho[:, None]) | ~other
    return ok.all(axis=1)


results = {}
for name, cell, meta in loaded:
    task = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"])
    m, gaps, other, ys = margins_and_gaps(cell, task)
    min_margin = np.where(other, m, np.inf).min(axis=1)
    print(f"\n{name}: n = {cell.n}, {task.B} sequences, {task.recall.sum()} recall steps; "
          f"nominal margin min {min_margin.min():.3f}, median {np.median(min_margin):.3f}")
    assert min_margin.min() > 0, "the nominal net must solve the task"
    ranks = [4, 8, 16, 24, 32, 40, 48, 56, 63]
    tight_ranks = {48, 56, 63}
    rows = []
    for r in ranks:
        small = rp.truncate_svd(cell, rank=r)
        E = rp.deviation(cell, small, task.X)
        enorm = np.linalg.norm(E, axis=-1)[task.recall]
        Yp = cell.readout(small.run(task.X))[task.recall]
        correct = Yp.argmax(axis=1) == ys
        L = rp.first_order(cell, small, task.X)
        predicted = cell.readout(cell.run(task.X) + L)[task.recall].argmax(axis=1) == ys
        oracle = certified(m, gaps, other, enorm)
        coarse = enorm * np.where(other, gaps, 0).max(axis=1) < min_margin
        assert np.all(coarse <= oracle)          # the DESIGN test implies the per-class one
        assert np.all(oracle <= correct)         # soundness with the exact deviation
        row = {"rank": r, "correct": correct.mean(), "oracle": oracle.mean(),
               "coarse": coarse.mean(), "predicted": predicted.mean(),
               "max_e": enorm.max()}
        if r in tight_ranks:
            B = rp.certified_bound(cell, small, task.X, tier="tight")
            bnd = B[task.recall]
            assert np.all(bnd >= enorm * (1 - 1e-12))
            cert = certified(m, gaps, other, bnd)
            assert np.all(cert <= correct)       # soundness with the certified bound
            lib = rp.certified_recall(cell, small, task, bound=B, componentwise=False)
            row["certified"] = cert.mean()
            row["lib_step_certified"] = lib.step_certified.mean()
            # the library's margins are rounded down: never more optimistic than ours
            assert lib.step_certified.sum() <= cert.sum()
        rows.append(row)
    results[name] = rows
    print(" rank  max|e|   correct  predicted  oracle(per j)  coarse(DESIGN)  certified  library")
    for row in rows:
        print(f" {row['rank']:4d}  {row['max_e']:7.3f}  {row['correct']:7.3f}  {row['predicted']:9.3f}"
              f"  {row['oracle']:13.3f}  {row['coarse']:14.3f}  {row.get('certified', np.nan):9.3f}"
              f"  {row.get('lib_step_certified', np.nan):7.3f}")

# %% [markdown]
# Fractions are over recall *steps* (5 per sequence). "oracle" applies the
# per-class condition to the exact $\|e_t\|$; "certified" to the library's sound
# bound (`tier="tight"`, computed at the top ranks only, where it is not vacuous);
# "library" is `rnnperturb.certified_recall` with the same bound. The gap between
# "correct" and "oracle" is what the worst case over the ball costs: the actual
# $e_t$ is far from aligned with $V_j - V_y$.

# %%
fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
for ax, (name, rows) in zip(axes[0], results.items()):
    rk = [r["rank"] for r in rows]
    for key, st in (("correct", "o-"), ("predicted", "x--"), ("oracle", "s-"), ("coarse", "v:")):
        ax.plot(rk, [r[key] for r in rows], st, label=key)
    ax.plot([r["rank"] for r in rows if "certified" in r],
            [r["certified"] for r in rows if "certified" in r], "D", label="certified (bound)")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("rank")
    ax.set_ylabel("fraction of recall steps")
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(OUT / "05_recall.png", dpi=120)
print("saved", OUT / "05_recall.png")
print(f"notebook 05 done in {time.perf_counter() - T0:.1f} s")
