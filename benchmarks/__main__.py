"""Run every benchmark and write a Markdown summary.

``python -m benchmarks [--quick] [--out DIR] [--only NAME ...]``

Each benchmark script runs in its own process (``python -m benchmarks.<script>``),
so that thread settings, memory peaks and crashes stay local to it, under a
time budget (20 minutes for the full run, 7 for ``--quick``). Their JSON
documents are collected into ``DIR`` (default ``benchmarks/results``), and a
summary (goals met or not, then each benchmark's table) goes to stdout and to
``DIR/summary.md``. A script that is missing, fails or runs out of time is
reported as such; the others still run.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import environment, loadavg

ROOT = Path(__file__).resolve().parent.parent

#: (name, module, issue, what it measures, full-run time cap in seconds, quick cap[, full-run
#: options]). Full-run options replace a script's own full mode when that alone does not fit
#: the 15-minute budget; the summary says so and gives the command for the script's full run.
BENCHMARKS = [
    ("training", "bench_training", 7, "simulator training step vs PyTorch (item 1)", 240, 60),
    ("noise", "bench_noise", 5, "noise_response vs Monte Carlo at 1 % accuracy (item 2)", 120, 45),
    ("bounds", "bench_bounds", 4, "certified_bound tightness and time (item 3)", 60, 45,
     {"args": ["--quick"], "note": "run with --quick: its full mode took 394 s alone (08:47 UTC, "
      "load 3-5), more than its share of the 15 minutes; full: python -m benchmarks.bench_bounds"}),
    ("bound_soundness", "bench_bound_soundness", 4, "certified_bound soundness", 100, 40),
    ("lirpa_setting", "bench_lirpa_setting", 4,
     "our bound in the auto_LiRPA setting (item 3; theirs: external figures)", 60, 40),
    ("sweep", "bench_sweep", 3, "rank_sweep against per-rank simulation", 200, 90),
    ("scaling", "bench_scaling", 7, "time and memory scaling in n and T (item 4)", 200, 60),
    ("set_bound", "bench_set_bound", 12,
     "set certificates: soundness, tightness against the attack, cost, noise (issue 12)", 240, 120,
     {"args": ["--quick"], "note": "run with --quick: its full mode takes about 10 minutes alone; "
      "full: python -m benchmarks.bench_set_bound"}),
    ("generic_bound", "bench_generic_bound", 13,
     "certified_bound through the generic rounding step: GRU, LSTM, stacks (issue 13)", 90, 60),
    ("allocation", "bench_allocation", 13,
     "rank allocation under a parameter budget against exhaustive search (issue 13)", 120, 60,
     {"args": ["--quick"], "note": "run with --quick; full: python -m benchmarks.bench_allocation"}),
]
BUDGET = {"full": 1200.0, "quick": 420.0, "smoke": 120.0}


def _source(module: str) -> str | None:
    spec = importlib.util.find_spec(f"benchmarks.{module}")
    if spec is None or spec.origin is None:
        return None
    try:
        return Path(spec.origin).read_text()
    except OSError:
        return None


def _command(module: str, src: str, mode: str, out: Path, timeout: float,
             full_args=()) -> list[str]:
    """The command line of one benchmark; options only where the script has them."""
    cmd = [sys.executable, "-m", f"benchmarks.{module}"]
    if mode == "full":
        cmd += list(full_args)
    if '"--budget"' in src and mode != "smoke":
        # stop starting new work well before the hard time cap
        cmd += ["--budget", f"{max(5.0, 0.8 * timeout - 15):.0f}"]
    if mode == "smoke" and '"--smoke"' in src:
        cmd.append("--smoke")
    elif mode in ("quick", "smoke") and '"--quick"' in src and "--quick" not in cmd:
        cmd.append("--quick")
    if '"--out"' in src:
        cmd += ["--out", str(out)]
    return cmd


def _json_since(dirs, t0: float, exclude=()) -> list[Path]:
    found = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for p in d.rglob("*.json"):
            try:
                if p.stat().st_mtime >= t0 - 1 and p not in exclude:
                    found.append(p)
            except OSError:
                pass
    return sorted(set(found))


def run_one(entry, mode: str, out: Path, timeout: float, quiet: bool = False) -> dict:
    """Run one benchmark script in a subprocess and collect its JSON files."""
    name, module, issue, what, *rest = entry
    override = rest[2] if len(rest) > 2 else {}
    rec = {"name": name, "module": f"benchmarks.{module}", "issue": issue, "what": what,
           "status": None, "seconds": 0.0, "json": [], "command": None}
    if mode == "full" and override.get("note"):
        rec["note"] = override["note"]
    src = _source(module)
    if src is None:
        rec["status"] = "missing"
        rec["note"] = f"benchmarks/{module}.py does not exist (issue {issue})"
        return rec
    bdir = out / name
    bdir.mkdir(parents=True, exist_ok=True)
    cmd = _command(module, src, mode, bdir, timeout, override.get("args", ()) if mode == "full"
                   else ())
    rec["command"] = " ".join(["python"] + cmd[1:])
    if not quiet:
        print(f"[benchmarks] {name}: {rec['command']} (time cap {timeout:.0f} s)", file=sys.stderr)
    t0 = time.time()
    tp = time.perf_counter()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=None if not quiet else subprocess.PIPE, text=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
        rec["status"] = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, _ = proc.communicate()
        rec["status"] = f"timeout after {timeout:.0f} s"
    rec["seconds"] = time.perf_counter() - tp
    rec["stdout_tail"] = (stdout or "").splitlines()[-80:]
    (bdir / "stdout.txt").write_text(stdout or "")
    # JSON the script wrote: into bdir when it takes --out, else anywhere under benchmarks/
    files = _json_since([bdir], t0)
    if not files and "--out" not in cmd:
        for p in _json_since([ROOT / "benchmarks"], t0):
            if out in p.parents:
                continue
            dst = bdir / p.name
            shutil.copy2(p, dst)
            files.append(dst)
    rec["json"] = [str(p) for p in files]
    return rec


def _load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _goals(doc) -> list[dict]:
    g = doc.get("goals") if isinstance(doc, dict) else None
    if isinstance(g, list):
        return [x for x in g if isinstance(x, dict) and "goal" in x]
    if isinstance(g, dict):  # {"name": bool} or {"name": {"met": ...}}
        out = []
        for k, v in g.items():
            if isinstance(v, dict):
                out.append({"goal": k, **v})
            else:
                out.append({"goal": k, "met": bool(v)})
        return out
    return []


def _fmt_worst(g) -> str:
    w = g.get("worst")
    if w is None:
        return ""
    s = f"{w:.3g}" if isinstance(w, (int, float)) else str(w)
    at = g.get("worst_at")
    return s + (f" ({at})" if at else "")


def render(records, *, mode: str, env: dict, load_before, load_after, seconds) -> str:
    """The Markdown summary of a run."""
    L = [f"# Benchmarks ({mode} run)", "",
         f"- date (UTC): {env.get('time_utc')}; total {seconds:.0f} s",
         f"- machine: {env.get('cpu')}, {env['threads'].get('cpu_count')} CPUs; "
         f"Python {env.get('python')}, NumPy {env.get('numpy')}, torch {env.get('torch')}",
         f"- load average (1, 5, 15 min): before {load_before}, after {load_after} "
         "(the machine is shared: read ratios, measured side by side, rather than times)",
         f"- BLAS/threads environment: {env['threads'].get('env')}", ""]
    L += ["## Goals", "", "| benchmark | goal | met | worst |", "|---|---|---|---|"]
    any_goal = False
    for r in records:
        for path in r["json"]:
            doc = _load(path)
            for g in _goals(doc):
                any_goal = True
                met = g.get("met")
                L.append(f"| {r['name']} | {g['goal']} | "
                         f"{'yes' if met else ('no' if met is not None else '?')} | "
                         f"{_fmt_worst(g)} |")
    if not any_goal:
        L.append("| – | no goals reported | | |")
    L += ["", "## Runs", "", "| benchmark | issue | status | time | JSON |", "|---|---|---|---|---|"]
    for r in records:
        js = ", ".join(Path(p).name for p in r["json"]) or "–"
        L.append(f"| {r['name']} | {r['issue']} | {r['status']} | {r['seconds']:.0f} s | {js} |")
    for r in records:
        L += ["", f"## {r['name']}: {r['what']}", ""]
        if r["status"] == "missing":
            L.append(f"Not run: {r.get('note')}.")
            continue
        L.append(f"`{r['command']}`: {r['status']}, {r['seconds']:.0f} s."
                 + (f" Note: {r['note']}." if r.get("note") else ""))
        rendered = False
        try:
            mod = importlib.import_module(r["module"])
            fn = getattr(mod, "summary_rows", None)
        except Exception:  # noqa: BLE001 - a broken script must not stop the summary
            fn = None
        if fn is not None:
            for path in r["json"]:
                doc = _load(path)
                if doc is None:
                    continue
                try:
                    rows = fn(doc)
                except Exception:  # noqa: BLE001
                    continue
                L += [""] + list(rows)
                rendered = True
        for path in r["json"]:
            doc = _load(path)
            if isinstance(doc, dict) and doc.get("skipped"):
                L += ["", f"Note: {doc['skipped']}"]
        if not rendered:
            tail = [ln for ln in r.get("stdout_tail", []) if ln.strip()]
            if tail:
                L += ["", "Its output (last lines):", "", "```"] + tail[-50:] + ["```"]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small grids, a few minutes")
    ap.add_argument("--smoke", action="store_true",
                    help="minimal sizes, for the harness test (numbers meaningless)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME",
                    help=f"subset of: {', '.join(b[0] for b in BENCHMARKS)}")
    ap.add_argument("--budget", type=float, default=None, help="total seconds")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    mode = "smoke" if a.smoke else ("quick" if a.quick else "full")
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = a.budget or BUDGET[mode]
    todo = [b for b in BENCHMARKS if a.only is None or b[0] in a.only]
    unknown = sorted(set(a.only or ()) - {b[0] for b in BENCHMARKS})
    if unknown:
        ap.error(f"--only: unknown benchmark(s) {unknown}")
    t_start = time.perf_counter()
    load_before = loadavg()
    env = environment()
    records = []
    present = [_source(b[1]) is not None for b in todo]
    caps = [(b[4] if mode == "full" else b[5]) * p for b, p in zip(todo, present)]
    for i, entry in enumerate(todo):
        left = budget - (time.perf_counter() - t_start)
        # the time left is shared among the scripts still to run, in proportion to their caps
        share = left * caps[i] / max(sum(caps[i:]), 1e-9)
        timeout = max(10.0, min(caps[i] or 10.0, share))
        records.append(run_one(entry, mode, out, timeout, quiet=a.quiet))
    seconds = time.perf_counter() - t_start
    text = render(records, mode=mode, env=env, load_before=load_before, load_after=loadavg(),
                  seconds=seconds)
    (out / "summary.md").write_text(text)
    (out / "runs.json").write_text(json.dumps(
        {"mode": mode, "seconds": seconds, "load_before": load_before, "load_after": loadavg(),
         "runs": records}, indent=1) + "\n")
    print(text)
    return 0 if all(r["status"] in ("ok", "missing") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
