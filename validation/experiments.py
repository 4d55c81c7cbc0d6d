r"""Shared plumbing of the validation experiments (checkpoints, task inputs, scores, output).

Every experiment module ``validation/exp_*.py`` follows one pattern:

* ``run(*, quick=False, seed=0, quiet=True) -> dict`` loads the shipped
  checkpoints, orchestrates library calls (the mathematics lives in
  :mod:`rnnperturb`), and returns ``{"name", "rows", "meta", ...}`` where
  ``rows`` is a tidy list of flat dicts (one measurement per row);
* ``headline(result) -> dict`` gives the few numbers quoted in the summary;
* ``write(result, out_dir)`` writes ``<name>.csv`` (the rows) and
  ``<name>.json`` (meta and headline) into ``out_dir``;
* ``python -m validation.exp_<name> --out DIR [--quick]`` does all three.

All randomness flows from explicit integer seeds; the same command gives the
same files.

Performance conventions (``performance``):

* memorization: *recall accuracy*, the fraction of recall steps (5 bits x 32
  sequences for the 5-bit task, all sequences enumerated) whose arg-max is
  right, and the sequence accuracy (all 5 bits right);
* k-back: per-step accuracy on fresh sequences;
* AR signal: :math:`R^2 = 1 - \mathrm{NMSE}` on fresh sequences.

``perf`` is that primary number; ``relative`` divides it by the unperturbed
network's, so that "kept" means ``relative >= 0.99``.
"""
from __future__ import annotations

import csv
import glob
import json
import math
import os

import numpy as np

import rnnperturb as rp
from rnnperturb import metrics, tasks

__all__ = ["CHECKPOINT_DIR", "checkpoint_names", "load", "eval_task", "fit_inputs",
           "performance", "rank_grid", "write_rows", "write_json", "write_result",
           "rounded", "cli", "CELL_LABEL"]

#: How the README tables name each cell kind (in the order they list them).
CELL_LABEL = {"elman": "tanh RNN", "mgru": "MGRU", "gru": "GRU", "lstm": "LSTM"}

CHECKPOINT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")


def checkpoint_names(*, cell: str | None = None, task: str | None = None) -> list[str]:
    """Names (file stems) of the shipped checkpoints, sorted by cell, task and delay.

    Parameters
    ----------
    cell : {'elman', 'mgru'}, optional
    task : {'memorization', 'kback', 'kback_mix', 'ar_signal'}, optional
        Exact task name (``'kback'`` does not match ``'kback_mix'``).
    """
    out = []
    for p in glob.glob(os.path.join(CHECKPOINT_DIR, "*.npz")):
        stem = os.path.splitext(os.path.basename(p))[0]
        c, _, rest = stem.partition("_")
        t = rest.split("_D")[0] if rest.startswith("memorization") else rest
        if (cell is None or c == cell) and (task is None or t == task):
            out.append(stem)

    def key(s):
        c, _, rest = s.partition("_")
        d = int(rest.split("_D")[1]) if "_D" in rest else -1
        return (c, rest.split("_D")[0], d)
    return sorted(out, key=key)


def load(name: str):
    """``(cell, meta)`` of a shipped checkpoint by name (e.g. ``'mgru_memorization_D50'``)."""
    return rp.load_with_metadata(os.path.join(CHECKPOINT_DIR, name + ".npz"))


def eval_task(meta: dict, *, seed: int, batch: int = 256, repeat: float | None = None,
              L: int | None = None):
    """The evaluation task of a checkpoint.

    Memorization: all ``K**L`` sequences (exact, ``seed`` unused). k-back
    (also ``kback_mix``): ``batch`` fresh sequences at repeat probability
    ``repeat`` (default: the checkpoint's own, 0 for ``kback_mix``). AR
    signal: ``batch`` fresh sequences.

    Returns
    -------
    rnnperturb.tasks.Task
    """
    name = meta["task"]
    if name == "memorization":
        return tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"]))
    rng = np.random.default_rng([int(seed), 11])
    if name in ("kback", "kback_mix"):
        rep = float(meta.get("repeat", 0.0)) if repeat is None else float(repeat)
        return tasks.kback(int(meta["K"]), int(meta["k"]), int(meta["T"]), repeat=rep,
                           batch=batch, seed=rng)
    if name == "ar_signal":
        return tasks.ar_signal(int(meta["T"]), tau=float(meta["tau"]), noise=float(meta["noise"]),
                               horizon=int(meta["horizon"]), batch=batch, seed=rng)
    raise ValueError(f"meta['task']: expected a known task, found {name!r}")


def fit_inputs(meta: dict, *, seed: int, batch: int = 64) -> np.ndarray:
    """A sample of task inputs, separate from :func:`eval_task`'s (different
    seed stream), on which data-aware truncation is fitted.

    Returns
    -------
    X : ndarray, shape (T, batch, m)
    """
    name = meta["task"]
    rng = np.random.default_rng([int(seed), 23])
    if name == "memorization":
        return tasks.memorization(int(meta["K"]), int(meta["L"]), int(meta["D"]),
                                  batch=batch, seed=rng).X
    if name == "kback_mix":
        from validation.train import kback_mix
        return kback_mix(int(meta["K"]), int(meta["k"]), int(meta["T"]),
                         repeat_lo=float(meta["repeat_lo"]), repeat_hi=float(meta["repeat_hi"]),
                         batch=batch, seed=rng).X
    return eval_task(meta, seed=int(rng.integers(2 ** 31)), batch=batch).X


def performance(cell, task, H=None) -> dict:
    """Score a cell on a task (see the module notes).

    Parameters
    ----------
    cell : ElmanRNN or MGRU
        With a readout.
    task : rnnperturb.tasks.Task
    H : ndarray, shape (T, B, n), optional
        States, if already computed (e.g. nominal states plus a predicted
        deviation).

    Returns
    -------
    dict
        ``perf`` (the primary score) and the task's metrics.
    """
    Y = cell.readout(cell.run(task.X) if H is None else H)
    if task.kind == "regression":
        e = metrics.nmse(Y, task)
        return {"perf": 1.0 - e, "nmse": e}
    ok = metrics.predictions(Y) == task.targets
    if task.name == "memorization":
        return {"perf": float(ok[task.recall].mean()),
                "sequence": metrics.sequence_accuracy(Y, task)}
    return {"perf": float(ok[task.mask].mean())}


def rank_grid(n: int, *, quick: bool, step_quick: int = 8) -> list[int]:
    """Ranks 0..n (all of them, or every ``step_quick``-th plus n in quick mode)."""
    if not quick:
        return list(range(n + 1))
    return sorted(set(range(0, n + 1, step_quick)) | {n})


def rounded(x, sig: int = 6):
    """Round floats (recursively in dicts/lists) to ``sig`` significant digits,
    so that summaries compare exactly across runs; NaN/inf become None."""
    if isinstance(x, dict):
        return {k: rounded(v, sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, sig) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not math.isfinite(x):
            return None
        return float(f"{x:.{sig}g}")
    return x


def write_rows(rows: list[dict], path: str) -> str:
    """Write tidy rows (flat dicts) as CSV; columns in first-seen order."""
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


def write_json(obj, path: str) -> str:
    with open(path, "w") as fh:
        json.dump(rounded(obj, 10), fh, indent=1, sort_keys=True)
        fh.write("\n")
    return path


def write_result(result: dict, out_dir: str, headline: dict | None = None) -> list[str]:
    """Write ``<name>.csv`` (rows) and ``<name>.json`` (meta, headline, and any
    extra keys that are not rows) into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    name = result["name"]
    paths = [write_rows(result["rows"], os.path.join(out_dir, name + ".csv"))]
    extra = {k: v for k, v in result.items() if k != "rows"}
    if headline is not None:
        extra["headline"] = headline
    paths.append(write_json(extra, os.path.join(out_dir, name + ".json")))
    return paths


def cli(module, argv=None) -> int:
    """Command line shared by the experiment modules:
    ``python -m validation.exp_<name> [--out DIR] [--quick] [--seed S] [--quiet]``."""
    import argparse
    import time

    ap = argparse.ArgumentParser(prog=f"python -m {module.__name__}",
                                 description=(module.__doc__ or "").split("\n")[0])
    ap.add_argument("--out", default=os.path.join("validation", "results"))
    ap.add_argument("--quick", action="store_true", help="fewer ranks/sequences")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = module.run(quick=a.quick, seed=a.seed, quiet=a.quiet)
    head = module.headline(res)
    paths = write_result(res, a.out, head)
    print(json.dumps(rounded(head, 4), indent=1, sort_keys=True))
    print(f"wrote {', '.join(paths)} in {time.perf_counter() - t0:.1f} s")
    return 0
