r"""Item 4: how time and peak memory of the library's analyses scale with n and T.

For each function (``rp.deviation``, ``rp.first_order``, ``rp.rank_sweep``,
``rp.certified_bound`` tiers 'fast' and 'tight', ``rp.noise_response`` frozen
and fresh) two one-
dimensional sweeps are run on a random Elman cell (‖W‖₂ = 0.9, Gaussian
inputs, batch ``B``), perturbed by truncating every recurrent matrix to rank
n/2 by SVD:

* the **n sweep** (n = 32 … 512) at a fixed T;
* the **T sweep** (T = 50 … 2000) at a fixed n.

Each point records the median wall time over repeats (min–max) and the peak
memory of NumPy and Python allocations during one call (``tracemalloc``,
which NumPy reports its data buffers to): ``peak_bytes``. The
output's own size is ``output_bytes``; ``work_bytes = peak - output`` is the
working memory. Exponents ``p`` of ``time ∝ x^p`` are fitted by least squares
on log–log axes over the points whose time is above 5 ms (below it, fixed
Python overhead dominates); all points are in the JSON.

Grids are capped per function where the known cost makes the large corner
infeasible in the time budget (the cap is stated in the JSON and the
summary): ``noise_response`` with frozen noise costs O(T r n³) per sequence
(r ≤ n the rank of the forcing trajectory, = n for Gaussian inputs), so it
runs with B = 1 and n ≤ 128; ``rank_sweep`` (every rank at once, O(T B n³))
and the 'tight' tier of ``certified_bound`` (O(B n³) per step) run with B = 4.
Independently of the static caps, a sweep stops (and says so)
before a point whose time, extrapolated from the last two points, exceeds
``point_limit`` (8 s; 1.5 s with ``--quick``).

**T-independence of memory.** Functions whose output is per step only, (T, B)
(``certified_bound``, ``noise_response``) or per step and rank, (R, T, B)
(``rank_sweep``, norms only), should stream: their working memory may grow by O(B n) per step (a
stored trajectory) but not by O(B n²) (a Jacobian per step). The slope of
``work_bytes`` over T is compared with ``B n²`` words: at or above half of it
the function is flagged as storing per-step n×n matrices (a defect).

Timings use one BLAS thread by default (``--threads``): on the shared 2-core
machine, multi-threaded small GEMMs are dominated by thread synchronisation.

Run: ``python -m benchmarks.bench_scaling [--quick] [--out DIR] [--only NAME ...]``.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from dataclasses import dataclass, field, fields, is_dataclass

import numpy as np

from benchmarks._common import (print_report, environment, fit_exponent, fmt_time, limit_threads, loadavg,
                                timeit, write_json)

NAME = "scaling"
MIN_FIT_TIME = 0.005     # below this, fixed per-call Python overhead dominates
MIN_GROWTH = 256 * 1024  # working-memory growth over the T sweep below this is noise


@dataclass
class Spec:
    """One function under test.

    ``call(cell, other, X)`` runs it; ``n_max``/``T_max`` are static caps;
    ``per_step`` says whether its output is per step only (T, B).
    """

    name: str
    call: object
    per_step: bool
    B: int = 16
    n_max: int = 512
    T_max: int = 2000
    n_fixed: int = 64           # n of the T sweep
    T_fixed: int = 200          # T of the n sweep
    cap_note: str = ""
    available: bool = True
    missing: str = ""
    extra: dict = field(default_factory=dict)


def _perturbed(cell, rank):
    """The cell with every recurrent matrix truncated to ``rank`` (rp.truncate_svd if present)."""
    import rnnperturb as rp
    if hasattr(rp, "truncate_svd"):
        return rp.truncate_svd(cell, rank=rank)
    new = {}
    for k, W in cell.recurrent.items():
        U, s, Vt = np.linalg.svd(W)
        new[k] = (U[:, :rank] * s[:rank]) @ Vt[:rank]
    return cell.replace(**new)


def _resolve(name: str, module: str):
    """``rp.<name>``, else ``rnnperturb.<module>.<name>`` (not yet re-exported), else None."""
    import importlib

    import rnnperturb as rp
    f = getattr(rp, name, None)
    if f is None:
        try:
            f = getattr(importlib.import_module(f"rnnperturb.{module}"), name, None)
        except ImportError:
            f = None
    return f


def _specs(quick: bool) -> list[Spec]:
    import rnnperturb as rp
    specs = [
        Spec("deviation", lambda c, o, X: rp.deviation(c, o, X), per_step=False),
        Spec("first_order", lambda c, o, X: rp.first_order(c, o, X), per_step=False),
    ]
    rank_sweep = _resolve("rank_sweep", "sweep")
    if rank_sweep is not None:
        specs.append(Spec("rank_sweep", lambda c, o, X: rank_sweep(c, X), per_step=True,
                          B=4,
                          cap_note="B = 4: every rank 0..n at once (exact and "
                                   "first order), O(T B n³); output (n+1, T, B) norms"))
    else:
        specs.append(Spec("rank_sweep", None, per_step=True, available=False,
                          missing="rank_sweep not found (issue 3)"))
    certified_bound = _resolve("certified_bound", "bounds")
    if certified_bound is not None:
        specs.append(Spec("certified_bound_fast",
                          lambda c, o, X: certified_bound(c, o, X, tier="fast"), per_step=True,
                          cap_note="tier 'fast', O(B n²) per step"))
        specs.append(Spec("certified_bound_tight",
                          lambda c, o, X: certified_bound(c, o, X, tier="tight"), per_step=True,
                          B=4,
                          cap_note="tier 'tight', B = 4: documented as O(B n³) per step"))
    else:
        specs.append(Spec("certified_bound", None, per_step=True, available=False,
                          missing="certified_bound not found (issue 4)"))
    noise_response = _resolve("noise_response", "noise")
    if noise_response is not None:
        specs.append(Spec("noise_response_frozen",
                          lambda c, o, X: noise_response(c, X, std=1e-3, frozen=True),
                          per_step=True, B=1, n_max=128, n_fixed=32, T_max=2000,
                          cap_note="B = 1 and n ≤ 128: frozen noise costs O(T r n³) per "
                                   "sequence, r = rank of the forcing trajectory (= n here)"))
        specs.append(Spec("noise_response_fresh",
                          lambda c, o, X: noise_response(c, X, std=1e-3, frozen=False),
                          per_step=True, B=1, n_max=512,
                          cap_note="B = 1: fresh noise propagates an n×n "
                                   "covariance, O(T n³)"))
    else:
        specs.append(Spec("noise_response", None, per_step=True, available=False,
                          missing="noise_response not found (issue 5)"))
    return specs


def _nbytes(out) -> int:
    if isinstance(out, np.ndarray):
        return int(out.nbytes)
    if is_dataclass(out):
        return sum(_nbytes(getattr(out, f.name)) for f in fields(out))
    if isinstance(out, dict):
        return sum(_nbytes(v) for v in out.values())
    if isinstance(out, (list, tuple)):
        return sum(_nbytes(v) for v in out)
    return 0


def measure(spec: Spec, n: int, T: int, *, m: int = 4, seed: int = 0, repeats: int = 3,
            min_time: float = 0.02) -> dict:
    """Time and peak memory of one call at (n, T)."""
    import rnnperturb as rp
    cell = rp.random_cell("elman", n, m, spectral_norm=0.9, seed=seed)
    other = _perturbed(cell, max(1, n // 2))
    X = np.random.default_rng(seed + 1).standard_normal((T, spec.B, m))
    gc.collect(1)       # cheap: arrays are freed by reference counting
    tracemalloc.start()
    t0 = time.perf_counter()
    out = spec.call(cell, other, X)
    t_first = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_bytes = _nbytes(out)
    del out
    gc.collect(1)       # cheap: arrays are freed by reference counting
    if t_first < 0.3:
        reps = repeats if t_first > 0.05 else max(repeats, 5)
        tim = timeit(lambda: spec.call(cell, other, X), repeats=reps, warmup=0,
                     min_time=min_time)
    else:  # slow: one or two more untraced calls; the first (traced) one is only a bound
        reps = 2 if t_first < 2.0 else 1
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            spec.call(cell, other, X)
            ts.append(time.perf_counter() - t0)
        tim = {"median": float(np.median(ts)), "min": min(ts), "max": max(ts),
               "repeats": reps}
    return {"n": n, "T": T, "B": spec.B, "time": tim, "first_call": t_first,
            "peak_bytes": int(peak), "output_bytes": out_bytes,
            "work_bytes": int(max(peak - out_bytes, 0)), "load": loadavg()}


def _sweep(spec, axis, values, fixed, point_limit, quiet, deadline=None, **kw):
    """Points along one axis; stops before a point predicted (from the exponent of the
    last two points, at least 1) to take longer than ``point_limit`` seconds."""
    rows, skipped = [], []
    stop = None
    for v in values:
        n, T = (v, fixed) if axis == "n" else (fixed, v)
        if axis == "n" and v > spec.n_max or axis == "T" and v > spec.T_max:
            skipped.append({"value": v, "why": "static cap"})
            continue
        if stop is None and rows:
            last = rows[-1]
            p = 1.0
            if len(rows) >= 2 and rows[-2]["time"]["median"] > 0:
                p = max(1.0, np.log(last["time"]["median"] / rows[-2]["time"]["median"])
                        / np.log(last[axis] / rows[-2][axis]))
            pred = last["time"]["median"] * (v / last[axis]) ** p
            if pred > point_limit:
                stop = (f"time cap: {axis} = {v} predicted to take {pred:.0f} s "
                        f"> {point_limit:g} s per point")
        if stop is None and deadline is not None and time.perf_counter() > deadline:
            stop = "time budget of the run (shared equally among functions) exhausted"
        if stop is not None:
            skipped.append({"value": v, "why": stop})
            continue
        r = measure(spec, n, T, **kw)
        rows.append(r)
        if not quiet:
            print(f"[{NAME}] {spec.name:22s} n={n:4d} T={T:5d}: {fmt_time(r['time']['median'])}"
                  f", peak {r['peak_bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    return rows, skipped


def _fit(rows, axis, min_time=MIN_FIT_TIME):
    """Exponent fits: time over the points above ``min_time`` (all points when fewer
    than two are), and peak memory over all points."""
    pts = [(r[axis], r["time"]["median"]) for r in rows if r["time"]["median"] >= min_time]
    if len(pts) >= 2:
        fit = fit_exponent([p[0] for p in pts], [p[1] for p in pts])
        fit["over"] = f"points with time >= {min_time * 1e3:.0f} ms"
    elif len(rows) >= 2:
        fit = fit_exponent([r[axis] for r in rows], [r["time"]["median"] for r in rows])
        fit["over"] = "all points (fewer than two above the overhead threshold)"
    else:
        fit = {"exponent": None, "r2": None, "points": len(rows), "over": "too few points"}
    if len(rows) >= 2:   # local exponent between the two largest points (the asymptotic regime)
        a, b = rows[-2], rows[-1]
        fit["last_two"] = float(np.log(b["time"]["median"] / a["time"]["median"])
                                / np.log(b[axis] / a[axis]))
    else:
        fit["last_two"] = None
    mem = [(r[axis], r["peak_bytes"]) for r in rows if r["peak_bytes"] > 0]
    fit["memory"] = fit_exponent([p[0] for p in mem], [p[1] for p in mem]) if len(mem) >= 2 else None
    return fit


def memory_vs_T(spec, rows) -> dict | None:
    """Does the working memory grow with T, and by how much per step?"""
    if len(rows) < 2:
        return None
    Ts = np.array([r["T"] for r in rows], float)
    work = np.array([r["work_bytes"] for r in rows], float)
    n, B = rows[0]["n"], rows[0]["B"]
    slope = float(np.polyfit(Ts, work, 1)[0])          # bytes per step
    vec, jac = 8.0 * B * n, 8.0 * B * n * n
    growth = work[-1] / max(work[0], 1.0)
    if work[-1] - work[0] < MIN_GROWTH:
        verdict = "independent of T"
    elif slope >= 0.5 * jac:
        verdict = "stores an n×n matrix per step (defect: should stream)"
    elif growth <= 1.5:
        verdict = "independent of T"
    else:
        verdict = f"grows with T by about {slope / vec:.2g} n-vectors per step and sequence"
    return {"n": n, "B": B, "T": Ts.tolist(), "work_bytes": work.tolist(),
            "slope_bytes_per_step": slope, "vector_bytes": vec, "jacobian_bytes": jac,
            "growth_first_to_last": growth, "per_step_output": spec.per_step,
            "verdict": verdict}


def run(*, quick: bool = False, only=None, n_values=None, T_values=None,
        point_limit=None, threads: int | None = 1, quiet: bool = False,
        measure_kw=None, budget: float | None = None, out_path=None) -> dict:
    """Run the sweeps and return the JSON document.

    ``threads`` BLAS threads (default 1: on a shared machine, small multi-threaded
    GEMMs are dominated by thread synchronisation and make the exponents noise).
    ``budget`` seconds, shared equally among the functions (half to each sweep):
    no new point starts after a function's share (those left are listed as skipped). ``out_path``: the JSON is rewritten after every function, so that
    an interrupted run leaves its results.
    """
    with limit_threads(threads):
        doc = _run(quick=quick, only=only, n_values=n_values, T_values=T_values,
                   point_limit=point_limit, quiet=quiet, measure_kw=measure_kw or {},
                   budget=budget, out_path=out_path, threads=threads)
    if out_path is not None:
        write_json(out_path, doc)
    return doc


def _document(quick, load_before, results, t_start, threads, partial):
    goals = []
    for r in results:
        mv = r.get("memory_vs_T")
        if mv and r.get("per_step_output"):
            goals.append({"goal": f"{r['function']}: memory independent of T (streams, no "
                                  f"per-step Jacobians)",
                          "met": not mv["verdict"].startswith("stores"),
                          "worst": mv["growth_first_to_last"],
                          "worst_at": mv["verdict"]})
    return {"benchmark": NAME, "quick": quick, "environment": environment(),
            "load_before": load_before, "load_after": loadavg(), "results": results,
            "goals": goals, "seconds": time.perf_counter() - t_start, "threads": threads,
            "partial": partial}


def _run(*, quick, only, n_values, T_values, point_limit, quiet, measure_kw, budget, out_path,
         threads):
    t_start = time.perf_counter()
    measure_kw = dict(measure_kw)
    deadline = None if budget is None else t_start + budget
    n_values = tuple(n_values or ((32, 64, 128) if quick else (32, 64, 128, 256, 512)))
    T_values = tuple(T_values or ((50, 200, 800) if quick else (50, 200, 500, 1000, 2000)))
    point_limit = point_limit or (1.5 if quick else 8.0)
    load_before = loadavg()
    results = []
    specs = [sp for sp in _specs(quick) if not only or any(sp.name.startswith(o) for o in only)]
    for i, spec in enumerate(specs):
        # each function still to run gets an equal share of the time left
        left = sum(sp.available for sp in specs[i:])
        fdeadline = None if deadline is None else \
            time.perf_counter() + (deadline - time.perf_counter()) / max(left, 1)
        if not spec.available:
            results.append({"function": spec.name, "available": False, "missing": spec.missing})
            if not quiet:
                print(f"[{NAME}] {spec.name}: SKIPPED, {spec.missing}", file=sys.stderr)
            continue
        T_fixed = min(spec.T_fixed, max(T_values)) if quick else spec.T_fixed
        n_fixed = min(spec.n_fixed, max(n_values))
        try:
            mid = None if fdeadline is None else \
                time.perf_counter() + (fdeadline - time.perf_counter()) / 2
            rn, sn = _sweep(spec, "n", n_values, T_fixed, point_limit, quiet, mid, **measure_kw)
            rT, sT = _sweep(spec, "T", T_values, n_fixed, point_limit, quiet, fdeadline,
                            **measure_kw)
        except Exception as exc:  # report, do not abort the other functions
            results.append({"function": spec.name, "available": True,
                            "error": f"{type(exc).__name__}: {exc}"})
            if not quiet:
                print(f"[{NAME}] {spec.name}: ERROR {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        results.append({
            "function": spec.name, "available": True, "B": spec.B, "per_step_output": spec.per_step,
            "cap_note": spec.cap_note,
            "n_sweep": {"T": T_fixed, "points": rn, "skipped": sn, "fit": _fit(rn, "n")},
            "T_sweep": {"n": n_fixed, "points": rT, "skipped": sT, "fit": _fit(rT, "T")},
            "memory_vs_T": memory_vs_T(spec, rT),
        })
        if out_path is not None:
            write_json(out_path, _document(quick, load_before, results, t_start, threads, True))
    return _document(quick, load_before, results, t_start, threads, False)


def _e(fit, local=False):
    if not fit or fit.get("exponent") is None:
        return "–"
    out = f"{fit['exponent']:.2f}"
    if local and fit.get("last_two") is not None:
        out += f" [{fit['last_two']:.2f}]"
    return out


def summary_rows(doc) -> list[str]:
    """Markdown table lines for the summary."""
    lines = ["| function | B | time ∝ n^p (T fixed) [between the two largest n] | "
             "time ∝ T^p (n fixed) | peak mem ∝ n^p | "
             "peak mem ∝ T^p | largest point | memory vs T | cap |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        if not r.get("available", True):
            lines.append(f"| {r['function']} | – | missing | | | | | | {r['missing']} |")
            continue
        if "error" in r:
            lines.append(f"| {r['function']} | – | error | | | | | | {r['error']} |")
            continue
        ns, ts = r["n_sweep"], r["T_sweep"]
        pts = ns["points"] + ts["points"]
        big = max(pts, key=lambda p: p["time"]["median"]) if pts else None
        bigs = (f"n={big['n']}, T={big['T']}: {fmt_time(big['time']['median'])}, "
                f"{big['peak_bytes'] / 2**20:.0f} MiB" if big else "–")
        mv = r.get("memory_vs_T")
        caps = "; ".join(filter(None, [r.get("cap_note", "")] + sorted(
            {s["why"] for s in ns["skipped"] + ts["skipped"] if s["why"] != "static cap"})))
        lines.append(f"| {r['function']} | {r['B']} | {_e(ns['fit'], True)} (T={ns['T']}) | "
                     f"{_e(ts['fit'])} (n={ts['n']}) | {_e(ns['fit'].get('memory'))} | "
                     f"{_e(ts['fit'].get('memory'))} | {bigs} | "
                     f"{mv['verdict'] if mv else '–'} | {caps or '–'} |")
    return lines


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true",
                    help="minimal sizes, threads left as they are (harness test only)")
    ap.add_argument("--only", nargs="+", default=None, help="function name prefixes")
    ap.add_argument("--n", type=int, nargs="+", default=None, dest="n_values")
    ap.add_argument("--T", type=int, nargs="+", default=None, dest="T_values")
    ap.add_argument("--point-limit", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (0: leave as is)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds; no new point starts after it")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    path = f"{a.out}/{NAME}.json"
    if a.smoke:
        doc = run(quick=True, only=a.only, n_values=a.n_values or (8, 16),
                  T_values=a.T_values or (10, 20), point_limit=2.0, threads=None,
                  measure_kw={"repeats": 1, "min_time": 0.0}, out_path=path)
    else:
        doc = run(quick=a.quick, only=a.only, n_values=a.n_values, T_values=a.T_values,
                  point_limit=a.point_limit, threads=a.threads or None, budget=a.budget,
                  out_path=path)
    print_report(doc, summary_rows(doc), path)
    return doc


if __name__ == "__main__":
    main()
