r"""Deterministic training of the shipped checkpoints (NumPy BPTT + Adam).

Command line::

    python -m validation.train --cell {elman,mgru} \
        --task {memorization,kback,kback_mix,ar_signal} [--delay D] [--hidden 64] \
        [--seed S] [--steps N] [--distractor-rho RHO] [--quiet] [--out PATH]

retrains a checkpoint with its named recipe (:mod:`validation.recipes`) and
writes ``PATH`` (``.npz``, the project's schema, float64) and
``PATH`` with suffix ``.json`` (the training record). The same seed gives the
same weights (on the same NumPy/BLAS build).

Each step draws a fresh batch from the task generator, computes the loss and
its gradient by BPTT (:mod:`validation.bptt`), clips the global gradient norm
and takes an Adam step. Every ``check_every`` steps a check decides whether to
advance the curriculum over the delay or to stop early:

* memorization: all ``K**L`` sequences (:func:`rnnperturb.tasks.memorization_all`)
  recalled exactly, with the correct class at probability >= ``confidence``;
* kback / kback_mix: per-step accuracy >= ``target`` on a held-out check batch;
* ar_signal: NMSE <= ``target`` x the Kalman-optimal NMSE on a check batch.

A memorization recipe with a ``distractor = (rho, sigma)`` adds an AR(1) distractor on the blank
channel during the delay (:func:`with_distractor`) to every training batch, checks all ``K**L``
sequences with 8 distractor paths each, and also reports the final test with 100 paths each
(``final_test["distractor"]``); ``--distractor-rho`` selects such a recipe.

The final test uses the library cell (:class:`rnnperturb.MGRU` /
:class:`rnnperturb.ElmanRNN`) in float64, independent of the training
forward pass: exact on the 32 memorization sequences, on 10,000 fresh
sequences for sampled tasks.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

import rnnperturb as rp
from rnnperturb._checks import as_generator
from rnnperturb.cells import cell_type
from rnnperturb import metrics, tasks
from rnnperturb.report.progress import progress

from . import bptt
from .kalman import kalman_nmse
from .optim import Adam, clip_by_global_norm
from .recipes import CELLS, RECIPES, TASKS, Recipe, checkpoint_name, distractor_name, get_recipe

__all__ = ["init_params", "sample_task", "kback_mix", "ar1", "with_distractor", "repeat_sequences",
           "memorization_check_task", "evaluate", "train", "TrainResult", "main", "CHECKPOINT_DIR"]

CHECKPOINT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")


# ----------------------------------------------------------------------------- tasks
def kback_mix(K: int = 4, k: int = 2, T: int = 50, *, repeat_lo: float = 0.0,
              repeat_hi: float = 0.9, batch: int = 64, seed=None) -> tasks.Task:
    """k-back recall where each sequence has its own repeat probability.

    Like :func:`rnnperturb.tasks.kback`, but sequence b repeats its previous
    symbol with probability ``p_b`` drawn uniformly from
    ``[repeat_lo, repeat_hi]``, so one network is trained across the whole
    coherence range. ``params`` records ``repeat_lo``, ``repeat_hi`` and the
    drawn ``repeat`` (B,).
    """
    if not 0.0 <= repeat_lo <= repeat_hi < 1.0:
        raise ValueError(f"repeat_lo, repeat_hi: expected 0 <= lo <= hi < 1, found "
                         f"({repeat_lo!r}, {repeat_hi!r})")
    rng = as_generator(seed)
    base = tasks.kback(K, k, T, repeat=0.0, batch=batch, seed=rng)  # validates K, k, T
    p = rng.uniform(repeat_lo, repeat_hi, size=batch)
    S = np.argmax(base.X, axis=-1)                    # the i.i.d. symbols, (T, B)
    keep = rng.random((T, batch)) < p[None, :]
    for t in range(1, T):
        S[t] = np.where(keep[t], S[t - 1], S[t])
    X = np.zeros_like(base.X)
    X[np.arange(T)[:, None], np.arange(batch)[None, :], S] = 1.0
    Y = np.zeros((T, batch), dtype=np.int64)
    Y[k:] = S[:-k]
    return tasks.Task("kback", X, Y, base.mask, K, "classification", base.recall,
                      {"K": K, "k": k, "repeat_lo": repeat_lo, "repeat_hi": repeat_hi,
                       "repeat": p})


def ar1(steps: int, width: int, *, rho: float, seed) -> np.ndarray:
    r"""Stationary AR(1) paths of unit variance and lag-one autocorrelation ``rho``.

    :math:`z_0 = \varepsilon_0`, :math:`z_t = \rho z_{t-1} + \sqrt{1-\rho^2}\,\varepsilon_t`
    with i.i.d. standard normal innovations :math:`\varepsilon` (drawn as one
    ``(steps, width)`` array, so the same seed gives the same innovations for every ``rho``:
    common random numbers).

    Parameters
    ----------
    steps, width : int
        Path length T and number of paths B.
    rho : float
        In [0, 1).
    seed : int or Generator

    Returns
    -------
    ndarray, shape (steps, width)
    """
    rho = float(rho)
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho: expected a value in [0, 1), found {rho!r}")
    eps = as_generator(seed).standard_normal((steps, width))
    z = np.empty_like(eps)
    if steps:
        z[0] = eps[0]
    c = np.sqrt(1.0 - rho * rho)
    for t in range(1, steps):
        z[t] = rho * z[t - 1] + c * eps[t]
    return z


def with_distractor(task: tasks.Task, *, rho: float, sigma: float, seed) -> tasks.Task:
    r"""A memorization task whose blank delay carries an AR(1) distractor.

    On the ``D`` blank steps of the delay (0-based ``L .. L + D - 1``) the blank channel ``K``
    carries :math:`1 + \sigma z_t` instead of 1, with :math:`z` from :func:`ar1` (one path per
    sequence). Every other input (symbols, trigger, the blank during recall), the targets and
    the masks are unchanged.

    Parameters
    ----------
    task : Task
        Memorization task (``params`` with ``K``, ``L``, ``D``), ``X`` of shape (T, B, K + 2).
    rho : float
        Lag-one autocorrelation, in [0, 1).
    sigma : float
        Standard deviation of the distractor (>= 0).
    seed : int or Generator
        The innovations (the same for every ``rho`` given the same seed).

    Returns
    -------
    Task
        ``X`` of shape (T, B, K + 2); ``params`` gains ``distractor_rho``, ``distractor_sigma``.
    """
    if task.name != "memorization":
        raise ValueError(f"task: expected a 'memorization' task, found {task.name!r}")
    sigma = float(sigma)
    if not (np.isfinite(sigma) and sigma >= 0.0):
        raise ValueError(f"sigma: expected a finite value >= 0, found {sigma!r}")
    K, L, D = (int(task.params[k]) for k in ("K", "L", "D"))
    X = task.X.copy()
    X[L:L + D, :, K] += sigma * ar1(D, X.shape[1], rho=rho, seed=seed)
    return dataclasses.replace(task, X=X, params={**task.params, "distractor_rho": float(rho),
                                                  "distractor_sigma": sigma})


def repeat_sequences(task: tasks.Task, draws: int) -> tasks.Task:
    """Each sequence of ``task`` repeated ``draws`` times (adjacent), B -> B * draws."""
    return dataclasses.replace(task, X=np.repeat(task.X, draws, axis=1),
                               targets=np.repeat(task.targets, draws, axis=1),
                               mask=np.repeat(task.mask, draws, axis=1),
                               recall=np.repeat(task.recall, draws, axis=1))


def sample_task(recipe: Recipe, rng, batch: int, D: int | None = None) -> tasks.Task:
    """A batch of the recipe's task (memorization at delay ``D`` if given).

    A recipe with a ``distractor`` adds it (:func:`with_distractor`) from the same ``rng``.
    """
    p = dict(recipe.task_params)
    if recipe.task == "memorization":
        t = tasks.memorization(p["K"], p["L"], p["D"] if D is None else D, batch=batch, seed=rng)
        if recipe.distractor is not None:
            t = with_distractor(t, rho=recipe.distractor[0], sigma=recipe.distractor[1],
                                seed=rng)
        return t
    if recipe.task == "kback":
        return tasks.kback(p["K"], p["k"], p["T"], repeat=p["repeat"], batch=batch, seed=rng)
    if recipe.task == "kback_mix":
        return kback_mix(p["K"], p["k"], p["T"], repeat_lo=p["repeat_lo"],
                         repeat_hi=p["repeat_hi"], batch=batch, seed=rng)
    if recipe.task == "ar_signal":
        return tasks.ar_signal(p["T"], tau=p["tau"], noise=p["noise"], horizon=p["horizon"],
                               batch=batch, seed=rng)
    raise ValueError(f"task: expected one of {list(TASKS)}, found {recipe.task!r}")


def _n_in_out(recipe: Recipe) -> tuple[int, int]:
    p = recipe.task_params
    if recipe.task == "memorization":
        return p["K"] + 2, p["K"] + 1
    if recipe.task in ("kback", "kback_mix"):
        return p["K"], p["K"]
    return 1, 1


# ----------------------------------------------------------------------------- init
def init_params(kind: str, n: int, m: int, n_out: int, *, init: str = "uniform",
                forget_bias: float = 0.0, rng=None, dtype=np.float32) -> dict:
    r"""Initial parameters: matrices U(-1/\sqrt n, 1/\sqrt n), biases 0.

    Matrices are the cell's recurrent (n, n) and input (n, m) matrices and the
    readout V (n_out, n), drawn in the order of :func:`validation.bptt.param_names`.
    ``init='identity'`` sets the recurrent matrix to the identity (cells with
    one recurrent matrix: the Elman W); ``forget_bias`` sets the cell's gate
    bias (:attr:`validation.bptt.CellTraining.gate_bias`: the MGRU b_f).
    """
    if init not in ("uniform", "identity"):
        raise ValueError(f"init: expected 'uniform' or 'identity', found {init!r}")
    rng = as_generator(rng)
    cls = cell_type(kind)
    s = 1.0 / np.sqrt(n)
    shapes = {k: (n, n) for k in cls.recurrent_names}
    shapes.update({u: (n, m) for u in cls.input_of.values()})
    shapes["V"] = (n_out, n)
    out = {}
    for k in bptt.param_names(kind):
        if k in shapes:
            out[k] = rng.uniform(-s, s, size=shapes[k])
        else:
            out[k] = np.zeros(n_out if k == "c" else n)
    if init == "identity":
        if len(cls.recurrent_names) != 1:
            raise ValueError(f"init: 'identity' applies to a cell with one recurrent matrix "
                             f"(elman), found cell {kind!r} with {list(cls.recurrent_names)}")
        out[cls.recurrent_names[0]] = np.eye(n)
    gate = bptt.training_of(cls).gate_bias
    if gate is not None:
        out[gate][:] = forget_bias
    elif forget_bias != 0.0:
        raise ValueError(f"forget_bias: applies to a cell with a gate bias (mgru), found cell "
                         f"{kind!r} without one and forget_bias={forget_bias!r}")
    return {k: v.astype(dtype) for k, v in out.items()}


# ----------------------------------------------------------------------------- checks
def _chunked_outputs(cell, X, chunk=1000):
    return np.concatenate([cell.readout(cell.run(X[:, i:i + chunk]))
                           for i in range(0, X.shape[1], chunk)], axis=1)


#: Distractor draws per sequence in the training check (32 x 8 sequences) and the final test.
CHECK_DRAWS = 8
TEST_DRAWS = 100


def memorization_check_task(K: int, L: int, D: int, *, distractor=None, draws: int = CHECK_DRAWS,
                            seed=0) -> tasks.Task:
    """All ``K**L`` sequences; with ``distractor = (rho, sigma)`` each repeated ``draws`` times
    with its own distractor path (:func:`with_distractor`, ``seed``)."""
    task = tasks.memorization_all(K, L, D)
    if distractor is None:
        return task
    return with_distractor(repeat_sequences(task, draws), rho=distractor[0], sigma=distractor[1],
                           seed=seed)


def _p_correct(Y, task):
    P = np.exp(Y - Y.max(-1, keepdims=True))
    P /= P.sum(-1, keepdims=True)
    return np.take_along_axis(P, task.targets[..., None], -1)[..., 0]


def _mem_check(kind, params, K, L, D, confidence, task=None):
    task = tasks.memorization_all(K, L, D) if task is None else task
    Y = bptt.outputs(kind, params, task.X).astype(np.float64)
    acc = metrics.sequence_accuracy(Y, task)
    pmin = float(_p_correct(Y, task)[task.recall].min())
    return acc >= 1.0 and pmin >= confidence, {"sequence": acc, "min_p_recall": pmin}


def evaluate(cell, recipe: Recipe, *, seed=0, n_test: int = 10_000) -> dict:
    """Final test of a cell with the library's float64 forward pass.

    Memorization: exact over all ``K**L`` sequences (sequence and per-step
    accuracy, least recall probability of the correct class). kback tasks:
    per-step accuracy on ``n_test`` fresh sequences (kback_mix also per
    repeat probability 0, 0.5, 0.9). ar_signal: NMSE on ``n_test`` fresh
    sequences and the Kalman-optimal NMSE on the same sequences.
    """
    p = recipe.task_params
    if recipe.task == "memorization":
        task = tasks.memorization_all(p["K"], p["L"], p["D"])
        Y = cell.readout(cell.run(task.X))
        out = metrics.score(Y, task)
        P = np.exp(Y - Y.max(-1, keepdims=True))
        P /= P.sum(-1, keepdims=True)
        pz = np.take_along_axis(P, task.targets[..., None], -1)[..., 0]
        out.update(n_sequences=task.B, n_correct=int(round(out["sequence"] * task.B)),
                   min_p_recall=float(pz[task.recall].min()),
                   chance=metrics.chance_level(task))
        if recipe.distractor is not None:
            t = memorization_check_task(p["K"], p["L"], p["D"], distractor=recipe.distractor,
                                        draws=TEST_DRAWS, seed=[int(seed), 7])
            Y = cell.readout(cell.run(t.X))
            d = metrics.score(Y, t)
            d.update(n_sequences=t.B, n_correct=int(round(d["sequence"] * t.B)),
                     min_p_recall=float(_p_correct(Y, t)[t.recall].min()),
                     recall_accuracy=float((Y.argmax(-1) == t.targets)[t.recall].mean()),
                     rho=recipe.distractor[0], sigma=recipe.distractor[1], draws=TEST_DRAWS)
            out["distractor"] = d
        return out
    rng = np.random.default_rng([int(seed), 7])
    task = sample_task(recipe, rng, n_test)
    Y = _chunked_outputs(cell, task.X)
    out = metrics.score(Y, task)
    out["n_sequences"] = n_test
    if task.kind == "classification":
        P = np.exp(Y - Y.max(-1, keepdims=True))
        P /= P.sum(-1, keepdims=True)
        pz = np.take_along_axis(P, task.targets[..., None], -1)[..., 0]
        out["mean_p_correct"] = float(pz[task.mask].mean())
    out["chance"] = metrics.chance_level(task)
    if recipe.task == "ar_signal":
        out["kalman_nmse"] = kalman_nmse(task)
        out["nmse_over_kalman"] = out["nmse"] / out["kalman_nmse"]
    if recipe.task == "kback_mix":
        out["per_step_by_repeat"] = {}
        for q in (0.0, 0.5, 0.9):
            t = tasks.kback(p["K"], p["k"], p["T"], repeat=q, batch=n_test, seed=rng)
            out["per_step_by_repeat"][str(q)] = metrics.per_step_accuracy(
                _chunked_outputs(cell, t.X), t)
    return out


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True, eq=False)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    cell : ElmanRNN or MGRU
        Trained cell with readout, float64.
    params : dict
        Final training parameters (training dtype).
    record : dict
        The JSON training record.
    """

    cell: object
    params: dict
    record: dict


def _meta(recipe: Recipe) -> dict:
    p = recipe.task_params
    meta = {"task": recipe.task}
    keys = {"memorization": ("K", "L", "D"), "kback": ("K", "k", "T", "repeat"),
            "kback_mix": ("K", "k", "T", "repeat_lo", "repeat_hi"),
            "ar_signal": ("tau", "noise", "horizon", "T")}[recipe.task]
    meta.update({k: p[k] for k in keys})
    if recipe.distractor is not None:
        meta.update(distractor_rho=float(recipe.distractor[0]),
                    distractor_sigma=float(recipe.distractor[1]))
    return meta


def train(recipe: Recipe, *, seed: int | None = None, steps: int | None = None,
          hidden: int | None = None, quiet: bool = False, n_test: int = 10_000) -> TrainResult:
    """Train a cell with ``recipe`` (deterministic for a given seed).

    Parameters
    ----------
    recipe : Recipe
    seed : int, optional
        Overrides ``recipe.seed``.
    steps : int, optional
        Overrides ``recipe.max_steps`` (the step budget).
    hidden : int, optional
        Overrides ``recipe.hidden``.
    quiet : bool
        Silence the progress bar.
    n_test : int
        Fresh test sequences for sampled tasks.
    """
    seed = recipe.seed if seed is None else rp._checks.check_int("seed", seed, low=0)
    steps = recipe.max_steps if steps is None else rp._checks.check_int("steps", steps, low=1)
    n = recipe.hidden if hidden is None else rp._checks.check_int("hidden", hidden, low=1)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    dtype = np.dtype(recipe.dtype)
    rng = np.random.default_rng(seed)
    m, n_out = _n_in_out(recipe)
    params = init_params(recipe.cell, n, m, n_out, init=recipe.init,
                         forget_bias=recipe.forget_bias, rng=rng, dtype=dtype)
    opt = Adam(params, lr=recipe.lr)
    p = recipe.task_params
    stages = list(recipe.curriculum) if recipe.curriculum else [p.get("D")]
    stage = 0
    history = []
    check_set = None
    if recipe.task == "memorization" and recipe.distractor is not None:
        check_sets = {}
    if recipe.task != "memorization":
        check_set = sample_task(recipe, np.random.default_rng([seed, 3]), 1000)
        if recipe.task == "ar_signal":
            kal = kalman_nmse(check_set)
    solved = False
    losses, gnorms = [], []
    step = 0
    for step in progress(range(1, steps + 1), desc=recipe.name, quiet=quiet):
        D = stages[stage]
        Db = D
        if recipe.delay_lo is not None and D is not None:
            Db = int(rng.integers(min(recipe.delay_lo, D), D + 1))
        batch = sample_task(recipe, rng, recipe.batch, Db)
        weights = None
        if recipe.task == "memorization" and recipe.recall_weight != 1.0:
            weights = np.where(batch.recall, recipe.recall_weight, 1.0)
        loss, g = bptt.loss_and_grads(recipe.cell, params, batch, weights=weights)
        if not np.isfinite(loss):
            raise FloatingPointError(f"{recipe.name}: loss became {loss} at step {step}")
        g, gnorm = clip_by_global_norm(g, recipe.clip)
        opt.lr = recipe.lr_at(step, steps)
        opt.step(g)
        losses.append(loss)
        gnorms.append(gnorm)
        if step % recipe.check_every:
            continue
        if recipe.task == "memorization":
            ct = None
            if recipe.distractor is not None:
                if D not in check_sets:
                    check_sets[D] = memorization_check_task(
                        p["K"], p["L"], D, distractor=recipe.distractor, seed=[seed, 5])
                ct = check_sets[D]
            ok, info = _mem_check(recipe.cell, params, p["K"], p["L"], D, recipe.confidence, ct)
        elif recipe.task == "ar_signal":
            Y = bptt.outputs(recipe.cell, params, check_set.X).astype(np.float64)
            ratio = metrics.nmse(Y, check_set) / kal
            ok, info = ratio <= recipe.target, {"nmse_over_kalman": ratio}
        else:
            Y = bptt.outputs(recipe.cell, params, check_set.X).astype(np.float64)
            acc = metrics.per_step_accuracy(Y, check_set)
            ok, info = acc >= recipe.target, {"per_step": acc}
        Wr = params[cell_type(recipe.cell).recurrent_names[0]]
        history.append({"step": step, "D": D, "loss": float(np.mean(losses[-recipe.check_every:])),
                        "grad_norm": float(np.median(gnorms[-recipe.check_every:])),
                        "W_spectral_norm": float(np.linalg.norm(Wr.astype(np.float64), 2)),
                        "passed": bool(ok), **info})
        if ok and (stage + 1 < len(stages) or step >= recipe.min_steps):
            if stage + 1 < len(stages):
                stage += 1
            else:
                solved = True
                break
    wall = time.perf_counter() - t0
    cell = bptt.cell_from_params(recipe.cell, {k: v.astype(np.float64) for k, v in params.items()})
    test = evaluate(cell, recipe, seed=seed, n_test=n_test)
    record = {
        "name": recipe.name, "cell": recipe.cell, "task": recipe.task, "seed": seed,
        "hidden": n, "steps": step, "max_steps": steps, "solved_check": solved,
        "wall_time_s": wall, "final_test": test, "metadata": _meta(recipe),
        "recipe": recipe.as_dict(), "history": history,
        "loadavg_start": list(load0), "loadavg_end": list(os.getloadavg()),
        "numpy": np.__version__, "python": platform.python_version(),
        "command": _command(recipe, seed, steps, n),
    }
    return TrainResult(cell, params, record)


def _command(recipe, seed, steps, n):
    cmd = f"python -m validation.train --cell {recipe.cell} --task {recipe.task}"
    if recipe.task == "memorization":
        cmd += f" --delay {recipe.task_params['D']}"
    if recipe.distractor is not None:
        cmd += f" --distractor-rho {recipe.distractor[0]:g}"
    return cmd + f" --hidden {n} --seed {seed} --steps {steps}"


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def save_result(result: TrainResult, path: str) -> str:
    """Write the ``.npz`` checkpoint and its ``.json`` record; return the json path."""
    meta = dict(result.record["metadata"])
    meta.update(seed=result.record["seed"], recipe=result.record["name"],
                steps=result.record["steps"])
    rp.save(path, result.cell, **meta)
    jpath = os.path.splitext(path)[0] + ".json"
    with open(jpath, "w") as fh:
        json.dump(result.record, fh, indent=1, default=_json_default)
        fh.write("\n")
    return jpath


# ----------------------------------------------------------------------------- CLI
def _parser():
    ap = argparse.ArgumentParser(prog="python -m validation.train",
                                 description="Retrain a shipped checkpoint with its recipe.")
    ap.add_argument("--cell", required=True, choices=CELLS)
    ap.add_argument("--task", required=True, choices=TASKS)
    ap.add_argument("--delay", type=int, default=None,
                    help="memorization delay D (required for memorization)")
    ap.add_argument("--hidden", type=int, default=None, help="hidden size n (default 64)")
    ap.add_argument("--seed", type=int, default=None, help="seed (default: the recipe's)")
    ap.add_argument("--steps", type=int, default=None, help="step budget (default: recipe's)")
    ap.add_argument("--distractor-rho", type=float, default=None,
                    help="memorization only: train the distractor recipe of this rho "
                         "(validation.recipes.DISTRACTOR_RHOS)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--out", default=None,
                    help="output .npz (default validation/checkpoints/<name>.npz)")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    if a.task == "memorization" and a.delay is None:
        ap.error("--delay: expected an integer >= 0 for --task memorization, found none")
    if a.task != "memorization" and a.delay is not None:
        ap.error(f"--delay: expected no delay for --task {a.task} (only memorization has "
                 f"one), found {a.delay}")
    if a.delay is not None and a.delay < 0:
        ap.error(f"--delay: expected an integer >= 0, found {a.delay}")
    for name in ("hidden", "steps"):
        v = getattr(a, name)
        if v is not None and v < 1:
            ap.error(f"--{name}: expected an integer >= 1, found {v}")
    if a.seed is not None and a.seed < 0:
        ap.error(f"--seed: expected an integer >= 0, found {a.seed}")
    recipe = get_recipe(a.cell, a.task, a.delay)
    if a.distractor_rho is not None:
        if a.task != "memorization":
            ap.error(f"--distractor-rho: expected no value for --task {a.task} (memorization "
                     f"only), found {a.distractor_rho}")
        name = distractor_name(a.cell, a.delay, a.distractor_rho)
        if name not in RECIPES:
            have = sorted(r.distractor[0] for r in RECIPES.values() if r.distractor is not None
                          and (r.cell, r.task_params["D"]) == (a.cell, a.delay))
            ap.error(f"--distractor-rho: expected one of {have} for --cell {a.cell} --delay "
                     f"{a.delay}, found {a.distractor_rho}")
        recipe = RECIPES[name]
    out = a.out or os.path.join(CHECKPOINT_DIR, recipe.name + ".npz")
    if not out.endswith(".npz"):
        ap.error(f"--out: expected a path ending in .npz, found {out!r}")
    res = train(recipe, seed=a.seed, steps=a.steps, hidden=a.hidden, quiet=a.quiet)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    jpath = save_result(res, out)
    r = res.record
    print(f"{r['name']}: steps {r['steps']}, {r['wall_time_s']:.1f} s, solved check "
          f"{r['solved_check']}, test {json.dumps(r['final_test'], default=_json_default)}")
    print(f"wrote {out} and {jpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
