"""Set bound: tightness (bound / best attack at h_T) and cost.

Run: python -m benchmarks.bench_set_bound [--quick]
"""
from __future__ import annotations

import glob
import sys
import time
import tracemalloc

import numpy as np

import rnnperturb as rp
from rnnperturb.bounds.set_bound import set_attack, set_bound
from rnnperturb.cells.random import random_cell
from rnnperturb.perturb import sets


def lirpa_setting(Ts=(5, 10, 20, 50), iters=20, restarts=2):
    cell = random_cell("elman", 32, 4, spectral_norm=0.9, seed=0)
    W = cell.W
    U, s, Vt = np.linalg.svd(W)
    dW16 = W - (U[:, :16] * s[:16]) @ Vt[:16]
    eps0, emax = np.linalg.norm(dW16), np.max(np.abs(dW16))
    print(f"auto_LiRPA setting: Elman n=32 m=4 ||W||2=0.9, eps0={eps0:.3f}, max|dW|={emax:.3f}")
    rows = []
    for T in Ts:
        X = np.random.default_rng(T).standard_normal((T, 4))
        cases = [(f"ball x{k}", sets.Ball(radius=k * eps0)) for k in (0.001, 0.01, 0.1)]
        cases += [(f"box x{k}", sets.Box(radius=k * emax)) for k in (0.001, 0.01, 0.1)]
        cases += [("quant 8-bit", sets.quantization(cell, bits=8)),
                  ("quant 6-bit", sets.quantization(cell, bits=6))]
        for name, S in cases:
            t0 = time.perf_counter()
            b = set_bound(cell, S, X)[-1]
            tb = time.perf_counter() - t0
            lo, _ = set_attack(cell, S, X, seed=0, iters=iters, restarts=restarts)
            rows.append((T, name, b, lo, b / lo, tb))
            print(f"T={T:3d} {name:12s} bound {b:.4e} attack {lo:.4e} ratio {b / lo:7.3f} "
                  f"cap {2 * np.sqrt(32):.2f} time {tb:.2f}s", flush=True)
    return rows


def checkpoints(rel=1e-4, iters=10, restarts=1):
    for p in sorted(glob.glob("validation/checkpoints/*memorization*.npz")):
        cell, meta = rp.load_with_metadata(p)
        X = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"]).X
        X1 = X[:, 0]
        for r in (rel, 3 * rel, 10 * rel):
            eps = {k: r * np.linalg.norm(v) for k, v in cell.recurrent.items()}
            S = sets.Ball(radius=eps)
            t0 = time.perf_counter()
            b = set_bound(cell, S, X1)[-1]
            tb = time.perf_counter() - t0
            lo, _ = set_attack(cell, S, X1, seed=0, iters=iters, restarts=restarts)
            cap = 2 * np.sqrt(cell.n)
            print(f"{p.split('/')[-1]:32s} n={cell.n} T={X.shape[0]} r={r:.0e}x||W||F "
                  f"bound {b:.3e} attack {lo:.3e} ratio {b / lo:.3f} cap {cap:.2f} "
                  f"{'non-vacuous' if b < cap and b < 2 * lo else 'NOT met'} {tb:.2f}s",
                  flush=True)


def cost():
    for kind, n, T in (("elman", 32, 50), ("mgru", 32, 50), ("elman", 128, 200)):
        cell = random_cell(kind, n, 4, spectral_norm=0.9, seed=0)
        X = np.random.default_rng(0).standard_normal((T, 4))
        for S in (sets.Ball(radius=1e-3), sets.Box(radius=1e-4)):
            reps = 3 if n <= 64 else 1
            times = []
            for _ in range(reps):               # time without tracemalloc (it slows NumPy)
                t0 = time.perf_counter()
                set_bound(cell, S, X)
                times.append(time.perf_counter() - t0)
            tracemalloc.start()
            set_bound(cell, S, X)
            peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
            load = open("/proc/loadavg").read().split()[0]
            print(f"cost {kind} n={n} T={T} {type(S).__name__}: median {np.median(times):.2f} s "
                  f"(of {reps}), peak {peak:.1f} MB, load {load}", flush=True)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    what = [a for a in sys.argv[1:] if not a.startswith("--")] or ["lirpa", "ckpt", "cost"]
    if "lirpa" in what:
        lirpa_setting(Ts=(5, 10) if quick else (5, 10, 20, 50))
    if "ckpt" in what:
        checkpoints()
    if "cost" in what:
        cost()
