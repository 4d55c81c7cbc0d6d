"""Shared helpers of the benchmark scripts: timing, load, threads, GEMM peak, JSON.

Every comparison runs both sides in the same process, one after the other,
interleaved over repeats, so that the machine's load (it is shared) hits both
sides alike; the results are medians over repeats with their min and max.
Thread counts are set inside the benchmark process only: through
``threadpoolctl`` for NumPy's BLAS when it is installed (otherwise the BLAS
keeps the count it was started with, which is reported), and through
``torch.set_num_threads`` for torch.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["timeit", "time_interleaved", "loadavg", "thread_info", "limit_threads",
           "gemm_peak", "environment", "write_json", "fit_exponent", "fmt_time", "torch_or_none",
           "SCHEMA_KEYS"]

#: Keys every benchmark JSON document has at its top level.
SCHEMA_KEYS = ("benchmark", "quick", "environment", "load_before", "load_after", "results",
               "goals", "seconds")


def torch_or_none():
    """``torch`` if it can be imported, else None (it is an optional extra)."""
    try:
        import torch  # noqa: F401
    except Exception:  # pragma: no cover - depends on the machine
        return None
    return torch


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover
        return None


def _summary(times) -> dict:
    t = np.asarray(times, dtype=float)
    return {"median": float(np.median(t)), "min": float(t.min()), "max": float(t.max()),
            "repeats": int(t.size)}


def timeit(fn, *, repeats: int = 5, warmup: int = 1, min_time: float = 0.0) -> dict:
    """Wall-clock time of ``fn()``: median, min, max over ``repeats`` calls.

    Each repeat calls ``fn`` as many times as needed to last ``min_time``
    seconds (at least once) and records the time per call.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        k = 0
        t0 = time.perf_counter()
        while True:
            fn()
            k += 1
            el = time.perf_counter() - t0
            if el >= min_time:
                break
        times.append(el / k)
    return _summary(times)


def time_interleaved(fns: dict, *, repeats: int = 5, warmup: int = 1) -> dict:
    """Time several callables, alternating between them at every repeat.

    Alternation makes a burst of load from other processes fall on every side
    of a comparison, not just on one. Returns ``{name: summary}``, each summary
    with the list ``all`` of per-repeat times, so that :func:`paired_ratio` can
    take the median of per-repeat ratios (more robust to drifting load than
    the ratio of medians).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    out = {k: _summary(v) for k, v in times.items()}
    for k, v in times.items():
        out[k]["all"] = [float(x) for x in v]
    return out


def paired_ratio(a: dict, b: dict) -> dict:
    """Ratio a/b of two interleaved timings: of the medians, and median/min/max per repeat."""
    ra = np.asarray(a["all"]) / np.asarray(b["all"])
    return {"ratio_of_medians": a["median"] / b["median"], "median": float(np.median(ra)),
            "min": float(ra.min()), "max": float(ra.max())}


def thread_info() -> dict:
    """Thread counts in force: per library through threadpoolctl, else the environment."""
    info = {"cpu_count": os.cpu_count(),
            "env": {k: os.environ[k] for k in sorted(os.environ)
                    if k.startswith(("OPENBLAS", "OMP_", "MKL_", "BLIS"))}}
    try:
        import threadpoolctl
        info["threadpoolctl"] = [
            {k: d.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                   "num_threads", "architecture")}
            for d in threadpoolctl.threadpool_info()]
    except ImportError:
        info["threadpoolctl"] = None
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_num_threads"] = torch.get_num_threads()
    return info


@contextlib.contextmanager
def limit_threads(n: int | None):
    """Use ``n`` threads for NumPy's BLAS (threadpoolctl) and torch within the block.

    With ``n=None`` nothing changes. Without threadpoolctl the BLAS count
    cannot be changed after start-up; the block then runs with what it has
    (``thread_info`` reports it).
    """
    if n is None:
        yield
        return
    torch = sys.modules.get("torch")
    old_torch = torch.get_num_threads() if torch is not None else None
    try:
        import threadpoolctl
        ctx = threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    except ImportError:
        ctx = contextlib.nullcontext()
    with ctx:
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(old_torch)


def gemm_peak(dtype, *, size: int = 1536, repeats: int = 5) -> dict:
    """Measured GEMM throughput of NumPy's BLAS: ``2 size**3 / t`` in GFLOP/s.

    The best of ``repeats`` is the peak (the machine is shared: the best is
    the least disturbed run); the median is also given.
    """
    rng = np.random.default_rng(0)
    A = rng.standard_normal((size, size)).astype(dtype)
    Bm = rng.standard_normal((size, size)).astype(dtype)
    C = np.empty_like(A)
    np.matmul(A, Bm, out=C)
    t = timeit(lambda: np.matmul(A, Bm, out=C), repeats=repeats, warmup=1)
    flops = 2.0 * size ** 3
    return {"dtype": np.dtype(dtype).name, "size": size, "gflops_peak": flops / t["min"] / 1e9,
            "gflops_median": flops / t["median"] / 1e9, "time": t}


def environment() -> dict:
    """Versions, CPU, threads and load, for the JSON record."""
    torch = torch_or_none()
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                    if ln.startswith("model name")), platform.processor())
    except OSError:  # pragma: no cover
        cpu = platform.processor()
    return {"python": sys.version.split()[0], "numpy": np.__version__,
            "torch": None if torch is None else torch.__version__,
            "platform": platform.platform(), "cpu": cpu, "threads": thread_info(),
            "loadavg": loadavg(),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else str(x)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    return obj


def write_json(path, doc: dict) -> Path:
    """Write ``doc`` (NumPy scalars and arrays allowed) as indented JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(doc), indent=1) + "\n")
    return path


def fit_exponent(x, y) -> dict:
    """Least-squares fit of ``log y = p log x + c``: the exponent ``p`` and its r²."""
    x = np.log(np.asarray(x, dtype=float))
    y = np.log(np.asarray(y, dtype=float))
    if x.size < 2 or np.ptp(x) == 0:
        return {"exponent": None, "r2": None, "points": int(x.size)}
    p, c = np.polyfit(x, y, 1)
    res = y - (p * x + c)
    ss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(res ** 2)) / ss if ss > 0 else 1.0
    return {"exponent": float(p), "r2": r2, "points": int(x.size)}


def fmt_time(s: float | None) -> str:
    """Seconds in a readable unit."""
    if s is None:
        return "–"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def print_report(doc: dict, rows: list[str], path) -> None:
    """Print a benchmark's table, each goal (met or not, with its worst case)
    and where its JSON was written."""
    print("\n".join(rows))
    for g in doc.get("goals", []):
        worst = g.get("worst")
        worst = f"worst {worst:.4g}" if isinstance(worst, (int, float)) else ""
        where = f"({g['worst_at']})" if g.get("worst_at") is not None else ""
        print(f"- {'MET' if g['met'] else 'NOT MET'}: {g['goal']}: "
              + " ".join(filter(None, [worst, where])))
    print(f"(written to {path})")
