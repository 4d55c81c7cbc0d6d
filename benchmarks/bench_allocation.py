r"""Rank allocation (:func:`rnnperturb.report.allocation.allocate_ranks`) against an
exhaustive search, and against a uniform rank at the same parameter budget.

1. **Exhaustive comparison.** Small random networks (a 2-layer Elman stack with
   n = 6, a GRU with n = 5, an LSTM with n = 4, a 2-layer GRU with n = 4; spectral
   norms 0.8 / 1.5 / 3 per seed): every combination of ranks 0..n of every
   recurrent matrix is evaluated at once by :func:`rnnperturb.rank_sweep` (exact
   and first-order max output deviation), stored parameters by the documented
   formula (inputs and biases, plus 2nr for rank r < n/2, n^2 otherwise). For
   ``k`` budgets spread over the attainable parameter counts and ``k`` tolerances
   spread over the quantiles of the exact deviation, the allocation (exact and
   first-order criterion) is checked (never over the budget / tolerance, value and
   count those of the reference) and counted optimal when it reaches the
   exhaustive optimum (budget: the smallest deviation within the budget, to 1e-9
   relative; tolerance: the fewest parameters).
2. **Against a uniform rank.** The GRU memorization checkpoint (n = 64, 3
   matrices, all 32 sequences of its task) and a random 2-layer LSTM (n = 32,
   8 matrices, 64 sequences of 8 steps): at the budget of a uniform rank r, the
   exact max deviation of the allocation against that of rank r everywhere;
   evaluations and time.

Goals: zero violations; optimal in >= 80 % of the exhaustive scenarios.

Run: ``python -m benchmarks.bench_allocation [--quick] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import rnnperturb as rp
from benchmarks._common import environment, loadavg, write_json
from rnnperturb.report.allocation import allocate_ranks

ROOT = Path(__file__).resolve().parent.parent


def formula_params(cell, rank):
    """Stored parameters by the documented rule (full-rank matrices)."""
    n = cell.n
    out = cell.n_params - len(cell.recurrent_names) * n * n
    for r in rank.values():
        out += 2 * n * r if 2 * r < n else n * n
    return out


def exhaustive(cell, X):
    """Every combination of ranks 0..n: (rank dicts, exact max, first-order max, params)."""
    n = cell.n
    for W in cell.recurrent.values():
        if np.linalg.matrix_rank(W) != n:
            raise ValueError("cell: expected full-rank recurrent matrices (the formula's "
                             "premise), found a rank-deficient one")
    sw = rp.rank_sweep(cell, X, {k: list(range(n + 1)) for k in cell.recurrent_names})
    ranks = [sw.rank(i) for i in range(len(sw.ranks))]
    params = np.array([formula_params(cell, r) for r in ranks])
    return ranks, sw.exact_max, sw.first_order_max, params


def scenarios(ref, k):
    """k budgets spread over the attainable parameter counts (and one below them all),
    k tolerances spread over the 5-95 % quantiles of the exact deviation."""
    _, exact, _, params = ref
    levels = np.unique(params)
    budgets = [int(b) for b in levels[np.linspace(0, len(levels) - 1, k).round().astype(int)]]
    budgets = sorted(set(budgets) | {int(levels[0]) - 1})
    pos = exact[exact > 0]
    tols = [float(np.quantile(pos, q)) for q in np.linspace(0.05, 0.95, k)]
    return budgets, tols


def check(cell, X, ref, alloc, *, budget=None, tol=None, method):
    """(violations, optimal, excess) of ``alloc`` against the exhaustive ``ref``; excess
    is value / optimum (budget) or params / optimum (tolerance)."""
    ranks, exact, first, params = ref
    crit = exact if method == "exact" else first
    key = {tuple(sorted(r.items())): i for i, r in enumerate(ranks)}
    ok = params <= budget if budget is not None else crit <= tol
    bad = []
    if alloc.rank is None:
        if ok.any():
            bad.append("rank None although a configuration meets the constraint")
        return bad, not ok.any(), 1.0
    i = key[tuple(sorted(alloc.rank.items()))]
    small = rp.truncate_svd(cell, rank=alloc.rank)
    dev = float(np.linalg.norm(rp.deviation(cell, small, X), axis=-1).max())
    if not np.isclose(alloc.exact_max, exact[i], rtol=1e-9, atol=1e-14):
        bad.append(f"exact_max {alloc.exact_max} != reference {exact[i]}")
    if not np.isclose(alloc.exact_max, dev, rtol=1e-12, atol=1e-15):
        bad.append(f"exact_max {alloc.exact_max} != rp.deviation {dev}")
    if not np.isclose(alloc.value, crit[i], rtol=1e-9, atol=1e-14):
        bad.append(f"value {alloc.value} != reference {crit[i]}")
    if alloc.params != params[i] or alloc.params != rp.compression_cost(cell, small).params:
        bad.append(f"params {alloc.params} != {params[i]}")
    if budget is not None:
        if alloc.params > budget:
            bad.append(f"params {alloc.params} > budget {budget}")
        best = float(crit[ok].min())
        if alloc.value < best * (1 - 1e-9) - 1e-14:
            bad.append(f"value {alloc.value} below the exhaustive optimum {best}")
        optimal = alloc.value <= best * (1 + 1e-9) + 1e-14
        excess = alloc.value / best if best > 0 else (1.0 if alloc.value == 0 else np.inf)
    else:
        if crit[i] > tol:
            bad.append(f"value {crit[i]} > tolerance {tol}")
        best = int(params[ok].min())
        if alloc.params < best:
            bad.append(f"params {alloc.params} below the exhaustive optimum {best}")
        optimal = alloc.params == best
        excess = alloc.params / best if best > 0 else 1.0
    return bad, bool(optimal), float(excess)


def small_case(name, seed):
    """A small random network of the exhaustive comparison and its inputs."""
    rng = np.random.default_rng(seed)
    sn = (0.8, 1.5, 3.0)[seed % 3]
    kinds = {"elman2_n6": (["elman", "elman"], 6), "gru_n5": (["gru"], 5),
             "lstm_n4": (["lstm"], 4), "gru2_n4": (["gru", "gru"], 4)}[name]
    if len(kinds[0]) == 1:
        cell = rp.random_cell(kinds[0][0], kinds[1], 3, spectral_norm=sn, seed=rng)
    else:
        cell = rp.random_stacked(kinds[0], kinds[1], 3, spectral_norm=sn, seed=rng)
    return cell, rng.standard_normal((10, 5, 3))


def compare(cell, X, ref, k, methods=("exact", "first_order")):
    """Run every scenario; returns (rows, violations)."""
    budgets, tols = scenarios(ref, k)
    rows, bad = [], []
    for method in methods:
        for form, values in (("budget", budgets), ("tolerance", tols)):
            for v in values:
                t0 = time.perf_counter()
                kw = {"budget_params": v} if form == "budget" else {"tolerance": v}
                a = allocate_ranks(cell, X, method=method, **kw)
                dt = time.perf_counter() - t0
                b, opt, exc = check(cell, X, ref, a, method=method,
                                    **({"budget": v} if form == "budget" else {"tol": v}))
                bad += b
                rows.append({"method": method, "form": form, "value": v, "optimal": opt,
                             "excess": exc, "evaluations": len(a.evidence), "seconds": dt})
    return rows, bad


def uniform(cell, X, ranks, method="exact"):
    """Allocation at the budget of each uniform rank against the uniform rank."""
    out = []
    for r in ranks:
        small = rp.truncate_svd(cell, rank=r)
        p = int(rp.compression_cost(cell, small).params)
        e = float(np.linalg.norm(rp.deviation(cell, small, X), axis=-1).max())
        t0 = time.perf_counter()
        a = allocate_ranks(cell, X, budget_params=p, method=method)
        out.append({"uniform_rank": r, "budget": p, "uniform_exact_max": e,
                    "allocation": a.rank, "allocation_params": a.params,
                    "allocation_exact_max": a.exact_max, "ratio": a.exact_max / e,
                    "evaluations": len(a.evidence), "seconds": time.perf_counter() - t0})
        print(f"  rank {r}: budget {p}, uniform {e:.4g}, allocation {a.exact_max:.4g} "
              f"({a.exact_max / e:.2f}x), {len(a.evidence)} evaluations, "
              f"{out[-1]['seconds']:.1f} s", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    seeds = range(2) if args.quick else range(6)
    k = 6 if args.quick else 10
    load0 = loadavg()
    t0 = time.perf_counter()
    res, violations = {"exhaustive": {}, "uniform": {}}, []
    for name in ("elman2_n6", "gru_n5", "lstm_n4", "gru2_n4"):
        rows = []
        for seed in seeds:
            cell, X = small_case(name, seed)
            r, b = compare(cell, X, exhaustive(cell, X), k)
            rows += r
            violations += b
        hits = sum(r["optimal"] for r in rows)
        worst = max(r["excess"] for r in rows)
        combos = (small_case(name, 0)[0].n + 1) ** len(small_case(name, 0)[0].recurrent_names)
        ev = float(np.mean([r["evaluations"] for r in rows]))
        res["exhaustive"][name] = {"optimal": hits, "scenarios": len(rows), "worst_excess": worst,
                                   "mean_evaluations": ev, "combinations": combos, "rows": rows}
        print(f"{name}: optimal in {hits}/{len(rows)}, worst excess {worst:.3f}x, "
              f"{ev:.0f} evaluations of {combos} combinations", flush=True)
    path = ROOT / "validation" / "checkpoints" / "gru_memorization_D20.npz"
    if path.exists():
        print("gru_memorization_D20 (n = 64), exact criterion", flush=True)
        cell, meta = rp.load_with_metadata(path)
        X = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"]).X
        res["uniform"]["gru_memorization_D20"] = uniform(
            cell, X, (8, 16) if args.quick else (8, 16, 24))
    print("random 2-layer LSTM (n = 32, spectral norm 1.2), exact criterion", flush=True)
    st = rp.random_stacked(["lstm", "lstm"], 32, 8, spectral_norm=1.2, seed=0)
    Xs = np.random.default_rng(0).standard_normal((8, 64, 8)) / np.sqrt(8)
    res["uniform"]["lstm2_n32"] = uniform(st, Xs, (8,) if args.quick else (4, 8))
    hits = sum(v["optimal"] for v in res["exhaustive"].values())
    total = sum(v["scenarios"] for v in res["exhaustive"].values())
    goals = [{"goal": "never violates the budget or tolerance", "met": not violations,
              "worst": len(violations)},
             {"goal": "optimal in >= 80 % of the exhaustive scenarios",
              "met": hits >= 0.8 * total, "worst": hits / total}]
    doc = {"benchmark": "allocation", "quick": bool(args.quick), "environment": environment(),
           "load_before": load0, "load_after": loadavg(), "results": res, "goals": goals,
           "violations": violations[:20], "seconds": time.perf_counter() - t0,
           "command": "python -m benchmarks.bench_allocation" + (" --quick" if args.quick
                                                                 else "")}
    out = write_json(Path(args.out) / "allocation.json", doc)
    print(f"optimal in {hits}/{total} ({hits / total:.1%}); violations: {len(violations)}")
    print(f"wrote {out} ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
