r"""Temporal coherence of the deviation on trained nets (issue 5, Part 1).

Three measurements, first order, i.i.d. noise on every recurrent entry
(:func:`rnnperturb.noise_response`; the ratios do not depend on its size):

1. **Memorization checkpoints** (all 32 sequences of the 5-bit task): the
   frozen/fresh ratio :math:`C_t` at the recall steps, against the delay D,
   (a) for each checkpoint at its own D and (b) for the longest-delay net of
   each cell type run at shorter delays (same net, D varied). Alongside: the
   trajectory-only prediction (:func:`rnnperturb.stats.coherence.trajectory_coherence`,
   ``memory=inf``), the cheap prediction with the propagator memory
   (:func:`rnnperturb.stats.coherence.predicted_coherence`), the coherence ratio of a
   fixed ΔW (plain SVD truncation to rank n/2), the propagator decay
   :math:`\lambda`, the coherence time of the hidden trajectory, the RMS deviation
   per unit noise std at recall (frozen and fresh), and the mean MGRU gate during
   the delay.
2. **Low-coherence tasks** (k-back at repeat 0, AR signal): :math:`C_t` at late
   steps; the theory says :math:`C\approx 1` unless both the propagator memory and
   the trajectory coherence are long.
3. **Coherence knob** (``kback_mix`` checkpoints, trained over repeat in
   [0, 0.9]): :math:`C_t` against the repeat probability p, with the scalar law
   :math:`C_\infty = (1+\lambda p)/(1-\lambda p)` (input correlation
   :math:`p^{|\Delta|}`, measured :math:`\lambda`) and its transition
   :math:`C = 2` at :math:`\lambda p = 1/3`.

``python -m validation.exp_coherence --out DIR [--quick]`` writes
``coherence.csv`` (one row per measurement) and ``coherence.json`` (headline).
Deterministic: every sequence comes from fixed seeds.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from rnnperturb import coherence as coh
from rnnperturb.perturb.low_rank import truncate_svd
from validation.experiments import checkpoint_names, cli, eval_task, load

NAME = "coherence"
STD = 1.0          # first order: E||e||^2 scales as std^2, ratios do not depend on it


def _nanmean(x):
    x = np.asarray(x, dtype=float)
    return float(np.nanmean(x)) if np.any(np.isfinite(x)) else float("nan")


def _measure(cell, X, times, *, h0=None, trunc_rank=None):
    """C_t and companions at the given 1-based steps for inputs X (T, B, m)."""
    idx = np.asarray(times) - 1
    fz = rp.noise_response(cell, X, std=STD, times=times)                # (len, B)
    fr_full = rp.noise_response(cell, X, std=STD, frozen=False)
    fr = fr_full[idx]
    H = cell.run(X)
    C = fz / fr
    out = {
        "C": _nanmean(C), "C_ratio_of_means": float(np.mean(fz) / np.mean(fr)),
        "C_min": float(np.min(C)), "C_max": float(np.max(C)),
        "C_traj_inf": _nanmean(coh.trajectory_coherence(H)[idx]),
        "C_pred": _nanmean(coh.predicted_coherence(cell, X)[idx]),
        "lam": _nanmean(coh.propagator_decay(cell, X)),
        "coherence_time": _nanmean(coh.coherence_time(H)),
        "rms_frozen_per_std": float(np.sqrt(np.mean(fz))),
        "rms_fresh_per_std": float(np.sqrt(np.mean(fr))),
        "t_max": int(max(times)),
    }
    if trunc_rank is not None:
        small = truncate_svd(cell, rank=trunc_rank)
        fc = coh.fixed_coherence(cell, small, X)
        out["C_trunc"] = _nanmean(fc.ratio[idx])
        out["trunc_rank"] = int(trunc_rank)
    return out


def _gate_mean(cell, X, steps):
    """Mean overwrite gate over ``steps`` (NaN for a cell without a gate)."""
    g = rp.delay_linearisation(cell, X, np.asarray(steps), np.eye(cell.m)[0]).gate_mean
    return float("nan") if g is None else float(g)


def _memorization_rows(quick, quiet):
    rows = []
    names = checkpoint_names(task="memorization")
    longest = {}
    for name in names:
        cell, meta = load(name)
        longest[cell.kind] = max(longest.get(cell.kind, (0, None)), (int(meta["D"]), name))
    plans = [(name, None) for name in names]
    for kind, (Dmax, name) in sorted(longest.items()):
        for D in (10, 20, 50, 100, 200):
            if D < Dmax and not (quick and D not in (10, Dmax // 2)):
                plans.append((name, D))
    for name, Dover in plans:
        cell, meta = load(name)
        K, L = int(meta["K"]), int(meta["L"])
        D = int(meta["D"]) if Dover is None else Dover
        task = rp.tasks.memorization_all(K, L, D)
        X = task.X if not quick else task.X[:, ::4]
        recall = list(range(L + D + 2, 2 * L + D + 2))
        m = _measure(cell, X, recall, trunc_rank=cell.n // 2)
        Y = cell.readout(cell.run(task.X))
        acc = float((np.argmax(Y, -1) == task.targets)[task.recall].mean())
        row = {"part": "memorization", "checkpoint": name, "cell": cell.kind,
               "source": "own" if Dover is None else "same_net",
               "D_trained": int(meta["D"]), "D": D, "sequences": X.shape[1],
               "recall_accuracy": acc,
               "gate_mean_delay": _gate_mean(cell, X, range(L + 1, L + D + 1))}
        row.update(m)
        rows.append(row)
        if not quiet:
            print(f"[coherence] {name} D={D}: C_recall={m['C']:.3g} traj={m['C_traj_inf']:.3g} "
                  f"pred={m['C_pred']:.3g} trunc={m['C_trunc']:.3g} lam={m['lam']:.3f}")
    return rows


def _low_coherence_rows(seed, quick, quiet):
    rows = []
    for task_name in ("kback", "ar_signal"):
        for name in checkpoint_names(task=task_name):
            cell, meta = load(name)
            task = eval_task(meta, seed=seed, batch=4 if quick else 8)
            T = task.T
            times = sorted({T // 2, (3 * T) // 4, T})
            m = _measure(cell, task.X, times)
            row = {"part": "low_coherence", "checkpoint": name, "cell": cell.kind,
                   "task": task_name, "T": T, "sequences": task.B}
            row.update(m)
            rows.append(row)
            if not quiet:
                print(f"[coherence] {name}: C={m['C']:.3g} traj={m['C_traj_inf']:.3g} "
                      f"pred={m['C_pred']:.3g} lam={m['lam']:.3f}")
    return rows


def _knob_rows(seed, quick, quiet):
    rows = []
    reps = (0.0, 0.3, 0.6, 0.9) if quick else tuple(np.round(np.arange(0.0, 0.91, 0.1), 2))
    for name in checkpoint_names(task="kback_mix"):
        cell, meta = load(name)
        for p in reps:
            task = eval_task(meta, seed=seed, batch=4 if quick else 8, repeat=float(p))
            T = task.T
            times = sorted({T // 2, (3 * T) // 4, T})
            m = _measure(cell, task.X, times)
            lam = m["lam"]
            m["C_scalar_law"] = float((1 + lam * p) / (1 - lam * p))
            Y = cell.readout(cell.run(task.X))
            acc = float((np.argmax(Y, -1) == task.targets)[task.mask].mean())
            row = {"part": "knob", "checkpoint": name, "cell": cell.kind, "repeat": float(p),
                   "T": T, "sequences": task.B, "accuracy": acc}
            row.update(m)
            rows.append(row)
            if not quiet:
                print(f"[coherence] {name} repeat={p}: C={m['C']:.3g} pred={m['C_pred']:.3g} "
                      f"scalar={m['C_scalar_law']:.3g} lam={lam:.3f} acc={acc:.3f}")
    return rows


def _transition(ps, Cs, level=2.0):
    """First repeat p at which C crosses ``level`` (linear interpolation), or None."""
    for i in range(1, len(ps)):
        if (Cs[i - 1] - level) * (Cs[i] - level) <= 0 and Cs[i] != Cs[i - 1]:
            return float(ps[i - 1] + (level - Cs[i - 1]) * (ps[i] - ps[i - 1])
                         / (Cs[i] - Cs[i - 1]))
    return None


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    rows = (_memorization_rows(quick, quiet) + _low_coherence_rows(seed, quick, quiet)
            + _knob_rows(seed, quick, quiet))
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "std": STD,
                     "note": "first-order ratios; noise on every recurrent entry; recall "
                             "steps L+D+2..2L+D+1; late steps T/2, 3T/4, T otherwise"}}


def headline(result) -> dict:
    rows = result["rows"]
    head = {}
    for kind in sorted({r["cell"] for r in rows}):
        own = sorted((r for r in rows if r["part"] == "memorization" and r["cell"] == kind
                      and r["source"] == "own"), key=lambda r: r["D"])
        if own:
            head[f"{kind}_memorization_C_recall_vs_D"] = {r["D"]: round(r["C"], 3) for r in own}
            head[f"{kind}_memorization_C_trunc_vs_D"] = {r["D"]: round(r["C_trunc"], 3)
                                                        for r in own}
            head[f"{kind}_memorization_rms_frozen_vs_D"] = {
                r["D"]: round(r["rms_frozen_per_std"], 4) for r in own}
        same = sorted((r for r in rows if r["part"] == "memorization" and r["cell"] == kind
                       and (r["source"] == "same_net" or r["D"] == r["D_trained"])
                       and r["checkpoint"] == max((x["checkpoint"] for x in own),
                                                  key=lambda c: int(c.split("_D")[1]),
                                                  default=None)),
                      key=lambda r: r["D"])
        if same:
            head[f"{kind}_same_net_C_recall_vs_D"] = {r["D"]: round(r["C"], 3) for r in same}
            Ds = np.array([r["D"] for r in same], float)
            Cs = np.array([r["C"] for r in same], float)
            if len(Ds) >= 2:
                head[f"{kind}_same_net_loglog_slope_C_vs_D"] = round(
                    float(np.polyfit(np.log(Ds), np.log(Cs), 1)[0]), 3)
                # scaling law on the net: RMS deviation ~ D^p (p = 1 coherent & slow,
                # 1/2 incoherent & slow, 0 saturated by a contractive propagator)
                for mode in ("frozen", "fresh"):
                    rms = np.array([r[f"rms_{mode}_per_std"] for r in same], float)
                    head[f"{kind}_same_net_rms_{mode}_vs_D"] = {int(D): round(float(x), 3)
                                                              for D, x in zip(Ds, rms)}
                    head[f"{kind}_same_net_loglog_slope_rms_{mode}_vs_D"] = round(
                        float(np.polyfit(np.log(Ds), np.log(rms), 1)[0]), 3)
        low = [r for r in rows if r["part"] == "low_coherence" and r["cell"] == kind]
        for r in low:
            head[f"{r['checkpoint']}_C"] = round(r["C"], 3)
        knob = sorted((r for r in rows if r["part"] == "knob" and r["cell"] == kind),
                      key=lambda r: r["repeat"])
        if knob:
            ps = [r["repeat"] for r in knob]
            head[f"{kind}_knob_C_vs_repeat"] = {r["repeat"]: round(r["C"], 3) for r in knob}
            head[f"{kind}_knob_C_pred_vs_repeat"] = {r["repeat"]: round(r["C_pred"], 3)
                                                    for r in knob}
            head[f"{kind}_knob_transition_C2_measured"] = _transition(ps, [r["C"] for r in knob])
            lam = float(np.mean([r["lam"] for r in knob]))
            head[f"{kind}_knob_lambda"] = round(lam, 4)
            head[f"{kind}_knob_transition_C2_scalar_law"] = (1 / (3 * lam) if 3 * lam > 1
                                                            else None)
    return head


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
