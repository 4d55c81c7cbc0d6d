r"""Soundness sweep of :func:`rnnperturb.certified_bound` over hypothesis-generated cases.

Every case draws a random cell (Elman or MGRU by default; ``--kinds`` takes any
registered cells and two-layer stacks such as ``stacked:gru+lstm``; hidden size
1–6, or up to 3 for the long horizons and for stacks), its spectral norm ‖W‖₂ ∈ {0.3, 0.9, 1.5, 3, 8} (the
expanding ones have spectral radius > 1 and are chaotic), biases and input
scales up to saturation (bias std 5, input scale 20), a perturbation of
relative size ‖ΔW‖₂/‖W‖₂ = 10^U(−8, 0) (dense, rank one, or on one matrix
only), an initial state (zero, inside or outside [−1, 1]) and a horizon
(70 % 1–25, 25 % 26–100, 5 % 101–500). The reference is *rigorous*: both
trajectories are enclosed in mpmath interval arithmetic
(:func:`rnnperturb.verified.interval.interval_deviation_norm`), with the
precision raised until the enclosure of ‖e_t‖ is within 1e-6 (relative) or
the cap. A violation is a step with bound < the lower end of the enclosure.

Also reported, per step: non-vacuous (bound below the trivial cap) and
certainly within 2× the truth (bound ≤ 2 × lower end; steps whose exact
deviation is 0, i.e. t = 1, are excluded from that ratio), for both tiers.
With ``--checkpoints`` a few trained memorization checkpoints (n = 64) under
SVD truncation join the sweep (one sequence each, several ranks; slow).

For cells whose state is more than h (the LSTM, stacks) the reference and the
bound are on the output h (the default report). Tiers: fast, tight and the
default auto.

Run: ``python -m benchmarks.bench_bound_soundness [--cases N] [--quick]
[--budget SECONDS] [--checkpoints] [--kinds gru,lstm,stacked:gru+lstm] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import rnnperturb as rp
from benchmarks._common import environment, loadavg, write_json
from rnnperturb.bounds.trajectory import certified_bound, trivial_cap
from rnnperturb.cells.random import random_cell
from rnnperturb.cells.stacked import random_stacked
from rnnperturb.verified.interval import interval_deviation_norm

TIERS = ("fast", "tight", "auto")
KINDS = ("elman", "mgru")


def _perturbed(cell, rel, rng, style):
    new = {}
    names = cell.recurrent_names if style != "one" else cell.recurrent_names[-1:]
    for k in names:
        W = cell.recurrent[k]
        if style == "lowrank":
            dW = np.outer(rng.standard_normal(W.shape[0]), rng.standard_normal(W.shape[0]))
        else:
            dW = rng.standard_normal(W.shape)
        s = np.linalg.norm(dW, 2)
        new[k] = W + dW * (rel * np.linalg.norm(W, 2) / s if s > 0 else 0.0)
    return cell.replace(**new)


@st.composite
def cases(draw, kinds=KINDS):
    kind = draw(st.sampled_from(list(kinds)))
    u = draw(st.floats(0, 1))
    if u < 0.70:
        T = draw(st.integers(1, 25))
        n = draw(st.integers(1, 6))
    elif u < 0.95:
        T = draw(st.integers(26, 100))
        n = draw(st.integers(1, 5))
    else:
        T = draw(st.integers(101, 500))
        n = draw(st.integers(1, 3))
    if kind.startswith("stacked:"):
        n = min(n, 3)
    m = draw(st.integers(1, 3))
    sn = draw(st.sampled_from([0.3, 0.9, 1.5, 3.0, 8.0]))
    bias = draw(st.sampled_from([0.0, 0.5, 5.0]))
    inp = draw(st.sampled_from([0.5, 2.0, 20.0]))
    lrel = draw(st.floats(-8, 0))
    style = draw(st.sampled_from(["dense", "lowrank", "one"]))
    h0k = draw(st.sampled_from(["zero", "inside", "outside"]))
    seed = draw(st.integers(0, 2 ** 31))
    return dict(kind=kind, n=n, m=m, sn=sn, bias=bias, inp=inp, rel=10.0 ** lrel, style=style,
                h0=h0k, T=T, seed=seed)


def build(p):
    rng = np.random.default_rng(p["seed"])
    kw = dict(spectral_norm=p["sn"], bias_scale=p["bias"], input_scale=p["inp"], seed=rng)
    if p["kind"].startswith("stacked:"):
        cell = random_stacked(p["kind"].split(":", 1)[1].split("+"), p["n"], p["m"], **kw)
    else:
        cell = random_cell(p["kind"], p["n"], p["m"], **kw)
    other = _perturbed(cell, p["rel"], rng, p["style"])
    X = rng.standard_normal((p["T"], 1, p["m"]))
    N = cell.state_size
    h0 = None if p["h0"] == "zero" else (
        rng.uniform(-1, 1, (1, N)) if p["h0"] == "inside" else rng.uniform(-3, 3, (1, N)))
    return cell, other, X, h0


class Stats:
    def __init__(self):
        self.cases = 0
        self.steps = 0
        self.zero_steps = 0
        self.viol = {t: 0 for t in TIERS}
        self.nonvac = {t: 0 for t in TIERS}
        self.within2 = {t: 0 for t in TIERS}
        self.ratio_steps = 0
        self.worst = {t: [] for t in TIERS}
        self.by_sn = {}
        self.violations = []
        self.wide = 0

    def add(self, p, cell, other, X, h0):
        lo, hi, prec = interval_deviation_norm(cell, other, X, h0, prec=120, max_prec=3840,
                                               rel_width=1e-6)
        w = trivial_cap(cell, np.zeros(cell.state_size) if h0 is None else h0, X.shape[1])
        rows = cell.output_rows("h")            # the reference is on the output h
        cap = np.sqrt(np.sum((w if rows is None else w[:, rows]) ** 2, axis=1))[None, :]
        zero = hi <= 1e-200
        self.cases += 1
        self.steps += lo.size
        self.zero_steps += int(zero.sum())
        self.ratio_steps += int((~zero).sum())
        if np.any((hi - lo > 1e-6 * lo + 1e-200) & (hi < cap)):
            self.wide += 1
        key = f"{p['kind']} sn={p['sn']}"
        rec = self.by_sn.setdefault(key, {"cases": 0, "steps": 0, **{f"nonvac_{t}": 0
                                                                      for t in TIERS}})
        rec["cases"] += 1
        rec["steps"] += lo.size
        for tier in TIERS:
            bd = certified_bound(cell, other, X, h0, tier=tier)
            v = bd < lo
            if np.any(v):
                self.viol[tier] += int(v.sum())
                self.violations.append({"tier": tier, **p, "min_gap": float(np.min(bd - lo))})
            nv = bd < cap * (1 - 1e-9)
            self.nonvac[tier] += int(nv.sum())
            rec[f"nonvac_{tier}"] += int(nv.sum())
            self.within2[tier] += int(((bd <= 2 * lo) & ~zero).sum())


def run_checkpoints(stats, budget_left):
    """Trained memorization checkpoints under SVD truncation (one sequence each)."""
    out = []
    t0 = time.perf_counter()
    for path in sorted(glob.glob(str(Path(__file__).resolve().parent.parent
                                     / "validation/checkpoints/*memorization*.npz"))):
        cell, meta = rp.load_with_metadata(path)
        task = rp.tasks.memorization_all(K=int(meta.get("K", 2)), L=int(meta.get("L", 5)),
                                         D=int(meta["D"]))
        X = task.X[:, 5:6]
        for r in (cell.n // 4, cell.n // 2, 3 * cell.n // 4):
            if time.perf_counter() - t0 > budget_left:
                return out
            other = rp.truncate_svd(cell, rank=r)
            p = {"kind": cell.kind, "checkpoint": Path(path).name, "rank": r, "sn": "trained",
                 "T": X.shape[0]}
            stats.add(p, cell, other, X, None)
            out.append(p)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="400 cases")
    ap.add_argument("--budget", type=float, default=None,
                    help="stop starting new cases after this many seconds")
    ap.add_argument("--checkpoints", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="comma-separated cell names, 'stacked:a+b' for a two-layer stack")
    args = ap.parse_args(argv)
    n_cases = 400 if args.quick else args.cases
    budget = args.budget if args.budget is not None else float("inf")
    load0 = loadavg()
    t0 = time.perf_counter()
    stats = Stats()
    drawn = [0]
    kinds = tuple(args.kinds.split(","))

    @settings(max_examples=n_cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(p=cases(kinds))
    def one(p):
        drawn[0] += 1
        if time.perf_counter() - t0 > budget:
            return
        stats.add(p, *build(p))
        if stats.cases % 500 == 0:
            print(f"{stats.cases} cases, {time.perf_counter() - t0:.0f} s, violations "
                  f"{stats.viol}", flush=True)

    one()
    ck = []
    if args.checkpoints:
        ck = run_checkpoints(stats, max(0.0, budget - (time.perf_counter() - t0)))
    sec = time.perf_counter() - t0
    res = {
        "cases": stats.cases, "steps": stats.steps, "checkpoint_cases": ck,
        "steps_with_zero_truth": stats.zero_steps,
        "violations": stats.viol, "violation_examples": stats.violations[:20],
        "nonvacuous_fraction": {t: stats.nonvac[t] / max(stats.steps, 1) for t in TIERS},
        "within_2x_fraction": {t: stats.within2[t] / max(stats.ratio_steps, 1) for t in TIERS},
        "cases_with_wide_reference": stats.wide,
        "by_spectral_norm": stats.by_sn, "kinds": list(kinds),
    }
    doc = {"benchmark": "bound_soundness", "quick": bool(args.quick),
           "environment": environment(), "load_before": load0, "load_after": loadavg(),
           "results": res,
           "goals": {"zero_violations": all(v == 0 for v in stats.viol.values()),
                     "at_least_10000_cases": stats.cases >= 10_000},
           "seconds": sec,
           "command": "python -m benchmarks.bench_bound_soundness "
                      + (f"--cases {args.cases}" if not args.quick else "--quick")
                      + (" --checkpoints" if args.checkpoints else "")
                      + (f" --kinds {args.kinds}" if kinds != KINDS else "")}
    name = "bound_soundness"
    if kinds != KINDS:
        name += "_" + "_".join(k.replace(":", "-").replace("+", "-") for k in kinds)
    path = write_json(Path(args.out) / f"{name}.json", doc)
    print(f"cases {stats.cases}  steps {stats.steps}  violations {stats.viol}")
    print(f"non-vacuous (per step): {res['nonvacuous_fraction']}")
    print(f"certainly < 2x truth (per step, t with e != 0): {res['within_2x_fraction']}")
    for k, v in sorted(stats.by_sn.items()):
        print(f"  {k:16s} cases {v['cases']:5d}  non-vacuous fast "
              f"{v['nonvac_fast'] / v['steps']:.3f}  tight {v['nonvac_tight'] / v['steps']:.3f}")
    print(f"wrote {path} ({sec:.0f} s)")


if __name__ == "__main__":
    main()
