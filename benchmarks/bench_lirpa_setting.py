r"""Our certified bound in auto_LiRPA's published setting, and the global bound.

**Setting** (``shared/peers.md``, the auto_LiRPA measurement): Elman tanh RNN,
n = 32, m = 4, :math:`\|W\|_2 = 0.9`, one fixed input sequence, :math:`h_0 = 0`,
output :math:`h_T` for T in {5, 10, 20, 50}; only W is perturbed, by its
rank-16 SVD truncation error. Their W is not published, so ours is a seeded
Gaussian matrix scaled to :math:`\|W\|_2 = 0.9`
(:func:`rnnperturb.random_cell`, input weights std :math:`1/\sqrt m`, biases
std 0.1, inputs :math:`x_t \sim N(0, I)`); its truncation error norms are
reported next to theirs (:math:`\|\Delta W\|_F = 0.885`,
:math:`\max|\Delta W_{ij}| = 0.117`).

For each T: our certified bound on :math:`\|h'_T - h_T\|_2`
(:func:`rnnperturb.bounds.trajectory.certified_bound`, tiers ``fast`` and ``tight``),
the exact deviation (float64 simulation, cross-checked against an mpmath
simulation at 40 digits), the tightness ratio bound / exact, and times
(median of interleaved repeats, one BLAS thread, in the same process as
``deviation``). The same at the perturbation scaled by 0.001, 0.01 and 0.1
(their radius scalings). auto_LiRPA's figures are quoted from
``shared/peers.md`` (facts measured by a peer, not run here): vacuous at the
real radius for every method and T (94–100 % of the coordinates of
:math:`h_T` only bounded by [−1, 1]); CROWN 0.027 / 0.10 / 0.38 / 3.3–4 s
at T = 5 / 10 / 20 / 50. Note the question differs: theirs bounds *every*
:math:`\Delta W` in a norm ball, ours the known one.

**Global bound** (:func:`rnnperturb.bounds.global_bound`) in the same setting, for
every input sequence with :math:`\|x_t\|_2 \le r` (r = the largest input norm
of the fixed sequence), next to the simple contraction bound and to a lower
bound on the true supremum (the largest deviation found by projected
gradient ascent over inputs on the sphere). And a sweep over random
contractive Elman nets (n = 32): global / simple at T = 50, the fraction of
cases strictly smaller, and the bias-dominated case (slopes below 1).

Goals (issue 4): the global bound is never above the simple one, and strictly
below it when the slopes are below 1; our certified bound is non-vacuous at the
real truncation radius for every T.

Run: ``python -m benchmarks.bench_lirpa_setting [--quick] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import rnnperturb as rp
from benchmarks._common import (print_report, environment, fmt_time, limit_threads, loadavg,
                                time_interleaved, write_json)
from rnnperturb.bounds.trajectory import certified_bound

NAME = "lirpa_setting"
HORIZONS = (5, 10, 20, 50)
SCALES = (1.0, 0.1, 0.01, 0.001)
PEERS = {"dW_fro": 0.885, "dW_maxabs": 0.117,
         "crown_seconds": {5: 0.027, 10: 0.10, 20: 0.38, 50: "3.3-4"},
         "vacuous_all_methods_real_radius": True,
         "note": "shared/peers.md: 94-100 % of h_T coordinates bounded only by [-1, 1]"}


def setting(seed: int = 0):
    """The cell, its rank-16 truncation and a fixed input sequence (T = 50, m = 4)."""
    cell = rp.random_cell("elman", 32, 4, spectral_norm=0.9, seed=seed)
    small = rp.truncate_svd(cell, rank=16)
    X = np.random.default_rng(seed + 1).standard_normal((max(HORIZONS), 4))
    return cell, small, X


def _mp_dev_norm(cell, other, X, dps=40):
    """||h'_T - h_T||_2 at every T by an mpmath simulation (reference)."""
    from mpmath import mp, matrix, tanh
    with mp.workdps(dps):
        def run(c):
            W, U, b = matrix(c.W.tolist()), matrix(c.U.tolist()), matrix(c.b.tolist())
            h = matrix([0] * c.n)
            out = []
            for x in X:
                a = W * h + U * matrix(x.tolist()) + b
                h = matrix([tanh(v) for v in a])
                out.append(h)
            return out
        A, B = run(cell), run(other)
        return np.array([float(mp.sqrt(sum((p - q) ** 2 for p, q in zip(a, b))))
                         for a, b in zip(A, B)])


def _scaled(cell, small, k):
    return cell.replace(W=cell.W + k * (small.W - cell.W))


def certified_table(cell, small, X, *, repeats: int):
    rows = []
    for k in SCALES:
        other = _scaled(cell, small, k)
        E = np.linalg.norm(rp.deviation(cell, other, X), axis=-1)
        Emp = _mp_dev_norm(cell, other, X)
        for T in HORIZONS:
            XT = X[:T]
            fns = {"deviation": lambda: rp.deviation(cell, other, XT),
                   "fast": lambda: certified_bound(cell, other, XT, tier="fast"),
                   "tight": lambda: certified_bound(cell, other, XT, tier="tight")}
            times = time_interleaved(fns, repeats=repeats, warmup=1)
            row = {"scale": k, "T": T, "exact": float(E[T - 1]), "exact_mpmath": float(Emp[T - 1]),
                   "deviation_seconds": times["deviation"]["median"]}
            for tier in ("fast", "tight"):
                b = float(certified_bound(cell, other, XT, tier=tier)[-1])
                row[f"{tier}_bound"] = b
                row[f"{tier}_ratio"] = b / Emp[T - 1]
                row[f"{tier}_seconds"] = times[tier]["median"]
                row[f"{tier}_sound"] = bool(b >= Emp[T - 1])
                row[f"{tier}_nonvacuous"] = bool(b < 2 * np.sqrt(cell.n))
            rows.append(row)
    return rows


def _ascent_worst(cell, other, T, r, rng, *, starts=4, steps=12, fd=1e-6, lr=0.3):
    """Largest ||e_T|| found by projected finite-difference gradient ascent over
    inputs with ||x_t|| = r (a lower bound on the supremum)."""
    m = cell.m
    X = rng.standard_normal((T, starts, m))
    X *= r / np.linalg.norm(X, axis=-1, keepdims=True)
    k = T * m
    eye = np.eye(k).reshape(k, T, m)
    best = 0.0
    for _ in range(steps):
        P = X[None] + fd * np.concatenate([eye, -eye])[:, :, None, :]
        P = P.transpose(1, 0, 2, 3).reshape(T, 2 * k * starts, m)
        E = np.linalg.norm(rp.deviation(cell, other, P)[-1], axis=-1).reshape(2 * k, starts)
        g = ((E[:k] - E[k:]) / (2 * fd)).reshape(T, m, starts).transpose(0, 2, 1)
        gn = np.linalg.norm(g, axis=(0, 2), keepdims=True)
        X = X + lr * r * np.sqrt(T) * g / np.maximum(gn, 1e-300)
        X *= r / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-300)
        best = max(best, float(np.linalg.norm(rp.deviation(cell, other, X)[-1], axis=-1).max()))
    return best


def global_table(cell, small, X, rng, *, quick: bool):
    r = float(np.linalg.norm(X, axis=-1).max())
    rows = []
    for k in SCALES:
        other = _scaled(cell, small, k)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            G = rp.global_bound(cell, other, horizon=max(HORIZONS), input_norm=r, full_output=True)
            secs = time.perf_counter() - t0
        for T in HORIZONS:
            worst = _ascent_worst(cell, other, T, r, rng, starts=2 if quick else 4,
                                  steps=6 if quick else 12)
            rows.append({"scale": k, "T": T, "input_norm": r, "global": float(G.bound[T - 1]),
                         "simple": float(G.simple[T - 1]), "ascent_worst": worst,
                         "global_over_simple": float(G.bound[T - 1] / G.simple[T - 1]),
                         "global_over_worst": float(G.bound[T - 1] / worst) if worst > 0 else None,
                         "rate": G.rate, "simple_rate": G.simple_rate, "vacuous": G.vacuous,
                         "asymptote": G.asymptote, "cap": G.cap, "warned": bool(w),
                         "seconds": secs})
    return rows


def random_sweep(rng, *, cases: int, T: int = 50, deadline: float | None = None):
    """Global vs simple on random contractive Elman nets (n = 32, m = 4); stops
    starting new cases after ``deadline`` (perf_counter seconds)."""
    out = []
    for i in range(cases):
        if deadline is not None and time.perf_counter() > deadline and len(out) >= 4:
            break
        sn = float(rng.uniform(0.3, 0.95))
        bias = float(rng.choice([0.1, 0.5, 1.0, 2.0]))
        r = float(rng.choice([0.5, 1.0, 2.0]))
        rel = float(rng.choice([0.01, 0.05, 0.1]))
        cell = rp.random_cell("elman", 32, 4, spectral_norm=sn, bias_scale=bias, seed=rng)
        dominated = i % 4 == 3
        if dominated:   # biases dominate: |b_i| > sum_j |W_ij| + ||U_i|| r (slopes < 1)
            R = np.abs(cell.W).sum(1) + np.linalg.norm(cell.U, axis=1) * r
            cell = cell.replace(b=np.sign(rng.standard_normal(32)) * (R + rng.uniform(0.2, 1, 32)))
        d = rng.standard_normal((32, 32))
        other = cell.replace(W=cell.W + d * rel * sn / np.linalg.norm(d, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            G = rp.global_bound(cell, other, horizon=T, input_norm=r, full_output=True)
        live = G.simple[1:] < 2 * np.sqrt(32) * (1 - 1e-12)
        out.append({"spectral_norm": sn, "bias_scale": bias, "input_norm": r, "rel": rel,
                    "bias_dominated": dominated, "slopes_below_one": bool(np.all(G.slope < 1)),
                    "ratio_T": float(G.bound[-1] / G.simple[-1]),
                    "never_above": bool(np.all(G.bound <= G.simple)),
                    "strictly_below": bool(np.all(G.bound[1:][live] < G.simple[1:][live])),
                    "rate": G.rate, "simple_rate": G.simple_rate, "vacuous": G.vacuous})
    return out


def run(*, quick: bool = False, seed: int = 0, budget: float | None = None) -> dict:
    t0 = time.perf_counter()
    load_before = loadavg()
    rng = np.random.default_rng(seed + 7)
    cell, small, X = setting(seed)
    dW = small.W - cell.W
    info = {"n": 32, "m": 4, "W_spectral_norm": float(np.linalg.norm(cell.W, 2)), "rank": 16,
            "dW_fro": float(np.linalg.norm(dW)), "dW_spectral": float(np.linalg.norm(dW, 2)),
            "dW_maxabs": float(np.abs(dW).max()), "seed": seed}
    deadline = None if budget is None else t0 + budget
    with limit_threads(1):
        cert = certified_table(cell, small, X, repeats=3 if quick else 7)
        glob = global_table(cell, small, X, rng, quick=quick)
        sweep = random_sweep(rng, cases=8 if quick else 40, deadline=deadline)
    dom = [s for s in sweep if s["slopes_below_one"]]
    goals = [
        {"goal": "global bound never above the simple contraction bound",
         "met": all(s["never_above"] for s in sweep) and all(g["global"] <= g["simple"] for g in glob),
         "worst": max(max(s["ratio_T"] for s in sweep), max(g["global_over_simple"] for g in glob)),
         "worst_at": "largest global/simple ratio"},
        {"goal": "global bound strictly below simple when slopes < 1",
         "met": bool(dom) and all(s["strictly_below"] for s in dom),
         "worst": max((s["ratio_T"] for s in dom), default=float("nan")),
         "worst_at": f"{len(dom)} bias-dominated nets"},
        {"goal": "certified bound sound and non-vacuous at the real rank-16 radius, every T",
         "met": all(c["tight_sound"] and c["fast_sound"] and c["tight_nonvacuous"]
                    for c in cert if c["scale"] == 1.0),
         "worst": max(c["tight_ratio"] for c in cert if c["scale"] == 1.0),
         "worst_at": "largest tight bound/exact at scale 1"},
    ]
    return {"benchmark": NAME, "quick": quick, "environment": environment(),
            "load_before": load_before, "load_after": loadavg(),
            "results": {"setting": info, "peers": PEERS, "certified": cert, "global": glob,
                        "random_sweep": sweep,
                        "random_sweep_summary": {
                            "cases": len(sweep),
                            "median_ratio_T": float(np.median([s["ratio_T"] for s in sweep])),
                            "fraction_strictly_below": float(np.mean(
                                [s["strictly_below"] for s in sweep])),
                            "median_ratio_T_bias_dominated": float(np.median(
                                [s["ratio_T"] for s in dom])) if dom else None,
                            "vacuous_fraction": float(np.mean([s["vacuous"] for s in sweep])),
                            "median_rate_over_simple_rate": float(np.median(
                                [s["rate"] / s["simple_rate"] for s in sweep]))}},
            "goals": goals, "seconds": time.perf_counter() - t0}


def summary_rows(doc) -> list[str]:
    res = doc["results"]
    L = [f"Setting: n=32, m=4, ||W||_2={res['setting']['W_spectral_norm']:.3f}, rank 16: "
         f"||dW||_F={res['setting']['dW_fro']:.3f} (peers: 0.885), "
         f"max|dW|={res['setting']['dW_maxabs']:.3f} (peers: 0.117)", "",
         "| scale | T | exact | fast bound | ratio | tight bound | ratio | t fast | t tight | "
         "t deviation | CROWN (peers) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in res["certified"]:
        crown = PEERS["crown_seconds"][c["T"]] if c["scale"] == 1.0 else "–"
        crown = f"{crown} s, vacuous" if c["scale"] == 1.0 else crown
        L.append(f"| {c['scale']:g} | {c['T']} | {c['exact_mpmath']:.4g} | {c['fast_bound']:.4g} | "
                 f"{c['fast_ratio']:.4f} | {c['tight_bound']:.4g} | {c['tight_ratio']:.4f} | "
                 f"{fmt_time(c['fast_seconds'])} | {fmt_time(c['tight_seconds'])} | "
                 f"{fmt_time(c['deviation_seconds'])} | {crown} |")
    L += ["", "| scale | T | global | simple | ascent worst (lower bd) | global/worst | rate | "
          "vacuous |", "|---|---|---|---|---|---|---|---|"]
    for g in res["global"]:
        gw = "–" if g["global_over_worst"] is None else f"{g['global_over_worst']:.3g}"
        L.append(f"| {g['scale']:g} | {g['T']} | {g['global']:.4g} | {g['simple']:.4g} | "
                 f"{g['ascent_worst']:.4g} | {gw} | {g['rate']:.3f} | {g['vacuous']} |")
    s = res["random_sweep_summary"]
    L += ["", f"Random contractive nets ({s['cases']}): median global/simple at T=50 "
          f"{s['median_ratio_T']:.3f}, strictly below in {100 * s['fraction_strictly_below']:.0f} %, "
          f"bias-dominated median {s['median_ratio_T_bias_dominated']}, vacuous "
          f"{100 * s['vacuous_fraction']:.0f} %, median rate/simple rate "
          f"{s['median_rate_over_simple_rate']:.3f}"]
    return L


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="same as --quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds; the random sweep starts no new case after it (at least 4)")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    doc = run(quick=a.quick or a.smoke, seed=a.seed, budget=a.budget)
    path = write_json(f"{a.out}/{NAME}.json", doc)
    print_report(doc, summary_rows(doc), path)
    return doc


if __name__ == "__main__":
    main()
