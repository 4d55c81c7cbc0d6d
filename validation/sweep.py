r"""Training and evaluation sweeps as tasks on ``dask.distributed`` (optional extra).

A sweep is a list of :class:`Config` (cell, task, delay ``D``, hidden size,
seed, recipe, optional step budget). Each configuration is trained with
:func:`validation.train.train` on its recipe (seed and hidden size replaced). A memorization net
is scored exactly on all memorization sequences, and its rank statistics (kept rank at >= 99 %
recall, with all 32 sequences, AUC rank, margin kept rank; plain and identity-aware SVD) are
computed by :func:`validation.rank_stats.rank_statistics`. A k-back, k-back-mix or AR-signal net
(``task`` ``'kback'``, ``'kback_mix'``, ``'ar_signal'``, no delay) is scored by its recipe's final
test (per-step accuracy; NMSE over the Kalman optimum) and its statistics (kept rank at >= 99 % of
full performance, plain and data-aware SVD; the frozen/fresh ratio C) are computed by
:func:`validation.exp_task_seeds.task_statistics`.

Results are cached on disk by configuration: ``<cache_dir>/<Config.key()>.npz`` (the trained
checkpoint), ``.record.json`` (its training record) and ``.json`` (the result, written last, so
its presence marks a finished task); each is written atomically as its task completes, so an
interrupted sweep resumes where it stopped. ``dask`` is needed only for the distributed path
(``serial=True`` runs the same task function in this process); ``python -m paper_figs`` does
not use this module. ``--ship DIR`` copies every checkpoint that passes (a memorization net: recalls all
sequences; another task: passed its recipe's check) to
``DIR/<cell>_memorization_D<D>_n<n>_s<seed>[_<variant>].npz`` or ``DIR/<cell>_<task>[_n<n>]_s<seed>.npz``
(+ ``.json`` record) and merges into ``DIR/sweep.json``, one entry per configuration (failures
included, without the curves).

Examples::

    python -m validation.sweep --cells mgru --delays 10 --seeds 1 2 --hidden 64 --cache sweep_cache
    nohup nice python -m validation.sweep --plan issue14 --workers 1 --cache sweep_cache \
        --ship validation/checkpoints/seeds --quiet > sweep.log 2>&1 &
    nohup nice python -m validation.sweep --plan issue14_tasks --serial --cache task_cache \
        --ship validation/checkpoints/seeds --quiet > tasks.log 2>&1 &
    python -m validation.sweep --cells mgru --tasks kback --seeds 2 3 --cache task_cache
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import rnnperturb as rp
from validation import recipes as _recipes

__all__ = ["Config", "run_config", "run_sweep", "main", "TASKS", "passed", "task_test_metric"]

#: Tasks a configuration can have; every one but memorization has no delay.
TASKS = ("memorization", "kback", "kback_mix", "ar_signal")


@dataclass(frozen=True)
class Config:
    """One sweep cell.

    Attributes
    ----------
    cell : str
        ``'elman'`` or ``'mgru'``.
    task : str
        ``'memorization'`` (the task with a delay), ``'kback'``, ``'kback_mix'`` or
        ``'ar_signal'``.
    D : int or None
        Memorization delay (default 10); must be None for the other tasks. A memorization
        configuration stores its delay, so its fields and :meth:`key` are those of the
        memorization-only runner.
    hidden : int
        Hidden size.
    seed : int
        Training seed.
    recipe : str or None
        Name of the recipe; None means the one
        :func:`validation.recipes.get_recipe` gives for ``(cell, task, D)``.
        A given name must be a key of :data:`validation.recipes.RECIPES` with the same
        cell, task and delay (None for the tasks without one) (e.g. the matched recipes ``<cell>_memorization_D20_matched_*``);
        recipes are not mixed across delays.
    max_steps : int or None
        Step budget (None: the recipe's).
    """

    cell: str
    task: str = "memorization"
    D: int | None = None
    hidden: int = 64
    seed: int = 1
    recipe: str | None = None
    max_steps: int | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {list(TASKS)}, found {self.task!r}")
        if self.task == "memorization":
            if self.D is None:
                object.__setattr__(self, "D", 10)      # the default delay (same key as before)
            rp._checks.check_int("D", self.D, low=0)
        elif self.D is not None:
            raise ValueError(f"D: expected None for task {self.task!r} (only memorization has a "
                             f"delay), found {self.D!r}")
        rp._checks.check_int("hidden", self.hidden, low=1)
        rp._checks.check_int("seed", self.seed, low=0)
        if self.max_steps is not None:
            rp._checks.check_int("max_steps", self.max_steps, low=1)
        base = _recipes.get_recipe(self.cell, self.task, self.D)   # ValueError on a bad cell
        if self.recipe is not None and self.recipe != base.name:
            r = _recipes.RECIPES.get(self.recipe)
            if r is None or (r.cell, r.task, r.task_params.get("D")) != (self.cell, self.task,
                                                                          self.D):
                ok = [k for k, v in _recipes.RECIPES.items()
                      if (v.cell, v.task, v.task_params.get("D")) == (self.cell, self.task, self.D)]
                where = (f"D={self.D}" if self.task == "memorization"
                         else f"task {self.task!r}")
                raise ValueError(f"recipe: expected None or one of {ok} for cell {self.cell!r}, "
                                 f"{where}, found {self.recipe!r}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """sha256 of the JSON of the sorted fields (stable across runs and machines)."""
        s = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(s.encode()).hexdigest()

    def build_recipe(self) -> _recipes.Recipe:
        """The recipe of this configuration (shipped recipes are not modified)."""
        base = (_recipes.get_recipe(self.cell, self.task, self.D) if self.recipe is None
                else _recipes.RECIPES[self.recipe])
        return base.replace(seed=self.seed, hidden=self.hidden)


def run_config(config: Config) -> dict:
    """Train and evaluate one configuration; return a JSON-able dict.

    Keys: the config fields, ``key``, ``recipe_name``, ``steps``, ``solved``
    (the training check passed), ``train_wall_time_s``, ``stats``, ``wall_time_s``, and two
    private entries the caller stores beside the result: ``_checkpoint`` (the ``.npz`` bytes, the
    project's schema, with the seed in its metadata) and ``_record`` (the training record of
    :func:`validation.train.train`, without its check history).

    Memorization: ``n_correct`` / ``n_sequences`` (exact over all memorization sequences),
    ``min_p_recall``, and ``stats`` the rank statistics of
    :func:`validation.rank_stats.rank_statistics` per truncation method, with their per-rank
    curves. Other tasks: ``test_metric`` (:func:`task_test_metric` of the final test),
    ``final_test`` (the record's final test) and ``stats`` the statistics of
    :func:`validation.exp_task_seeds.task_statistics` (with their per-rank curves).
    """
    from validation.train import save_result, train

    t0 = time.perf_counter()
    recipe = config.build_recipe()
    res = train(recipe, steps=config.max_steps, quiet=True)
    rec = res.record
    if config.task == "memorization":
        from validation.rank_stats import rank_statistics
        stats = rank_statistics(res.cell, rec["metadata"])
    else:
        from validation.exp_task_seeds import task_statistics
        stats = task_statistics(res.cell, rec["metadata"])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ckpt.npz")
        save_result(res, path)
        with open(path, "rb") as f:
            blob = f.read()
    record = {k: v for k, v in rec.items() if k != "history"}
    record = json.loads(json.dumps(record, default=_json_default))
    out = {**config.as_dict(), "key": config.key(), "recipe_name": recipe.name,
           "steps": int(rec["steps"]), "solved": bool(rec["solved_check"])}
    if config.task == "memorization":
        out.update(n_correct=int(rec["final_test"]["n_correct"]),
                   n_sequences=int(rec["final_test"]["n_sequences"]),
                   min_p_recall=float(rec["final_test"]["min_p_recall"]))
    else:
        out.update(test_metric=task_test_metric(record["final_test"], config.task),
                   final_test=record["final_test"])
    out.update(train_wall_time_s=float(rec["wall_time_s"]), stats=stats,
               wall_time_s=time.perf_counter() - t0, _checkpoint=blob, _record=record)
    return out


def task_test_metric(final_test: dict, task: str) -> float:
    """The final test's number that the recipe's check thresholds: per-step accuracy (k-back,
    k-back-mix) or NMSE over the Kalman-optimal NMSE (AR signal, lower is better)."""
    if task in ("kback", "kback_mix"):
        return float(final_test["per_step"])
    if task == "ar_signal":
        return float(final_test["nmse_over_kalman"])
    raise ValueError(f"task: expected one of ['kback', 'kback_mix', 'ar_signal'], found {task!r}")


def passed(result: dict) -> bool:
    """Whether a result's checkpoint is shipped: a memorization net recalls every sequence; a
    net of another task passed its recipe's check (``solved``) within the step budget."""
    if result.get("task", "memorization") == "memorization":
        return result["n_correct"] == result["n_sequences"]
    return bool(result["solved"])


def _json_default(o):
    from validation.train import _json_default as f
    return f(o)


def _store(result: dict, cache_dir: str) -> dict:
    """Write the checkpoint, the record, then the result (the result file marks completion)."""
    result = dict(result)
    k = result["key"]
    blob = result.pop("_checkpoint")
    record = result.pop("_record")
    _write_bytes_atomic(blob, os.path.join(cache_dir, k + ".npz"))
    _write_atomic(record, os.path.join(cache_dir, k + ".record.json"))
    _write_atomic(result, os.path.join(cache_dir, k + ".json"))
    return result


def _write_bytes_atomic(blob: bytes, path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_atomic(obj: dict, path: str) -> None:
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_cached(path: str, config: Config | None = None):
    """The cached result at ``path``, or None if it is missing, unreadable, lacks its checkpoint,
    or (given ``config``) was trained with a recipe other than the one ``config`` builds now (a
    recipe edited under the same name is retrained, not silently reused)."""
    stem = path[:-len(".json")]
    if not os.path.exists(stem + ".npz"):
        return None
    try:
        with open(path) as f:
            result = json.load(f)
        if config is not None:
            with open(stem + ".record.json") as f:
                used = json.load(f).get("recipe")
            now = json.loads(json.dumps(config.build_recipe().as_dict()))
            if used != now:
                return None
        return result
    except (OSError, json.JSONDecodeError):
        return None


def run_sweep(configs, *, cache_dir: str, scheduler=None, n_workers: int = 2,
              serial: bool = False, quiet: bool = False, processes: bool = True) -> list[dict]:
    """Run every uncached configuration (one task each) and return all results.

    Parameters
    ----------
    configs : sequence of Config
    cache_dir : str
        Results go to ``cache_dir/<config.key()>.json`` (created if missing);
        configurations already there are not recomputed.
    scheduler : str, optional
        Address of an existing dask scheduler; default: a new
        ``LocalCluster(n_workers, threads_per_worker=1)``.
    n_workers : int
        Workers of the local cluster.
    serial : bool
        Run in this process without dask.
    quiet : bool
        No progress bar.
    processes : bool
        Local cluster with worker processes (True) or threads.

    Returns
    -------
    list of dict
        The results of :func:`run_config`, in the order of ``configs``.
    """
    configs = list(configs)
    for i, c in enumerate(configs):
        if not isinstance(c, Config):
            raise TypeError(f"configs[{i}]: expected a Config, found {type(c).__name__}")
    n_workers = rp._checks.check_int("n_workers", n_workers, low=1)
    os.makedirs(cache_dir, exist_ok=True)
    paths = [os.path.join(cache_dir, c.key() + ".json") for c in configs]
    results = {}
    todo = {}
    for c, p in zip(configs, paths):
        r = _read_cached(p, c)
        if r is not None:
            results[c.key()] = r
        else:
            todo[c.key()] = c
    if todo and serial:
        for k, c in rp.progress(list(todo.items()), desc="sweep", quiet=quiet):
            results[k] = _store(run_config(c), cache_dir)
    elif todo:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler is None:
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                   processes=processes, dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        try:
            futs = {client.submit(run_config, c, key=f"sweep-{k}", pure=False): k
                    for k, c in todo.items()}
            for fut in rp.progress(as_completed(futs), total=len(futs), desc="sweep",
                                   quiet=quiet):
                k = futs[fut]
                results[k] = _store(fut.result(), cache_dir)
                fut.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return [results[c.key()] for c in configs]


def plan_issue14() -> list[Config]:
    """The configurations of issue 14 in priority order: (1) seeds 2-6 of every memorization
    checkpoint at n = 64 (D = 10, 20, 50; the shipped checkpoints are seed 1), and seed 7 for the
    tanh RNN at D = 50 (its seed 5 did not solve within the budget); (2) the off-diagonal matched
    recipes at D = 20 (each cell with the other's recipe), seeds 1-3; (3) n = 32 and 128 at D = 20
    (default recipes), seeds 1-3, the MGRU first."""
    out = [Config(cell=c, D=d, hidden=64, seed=s)
           for d in (10, 20, 50) for c in ("elman", "mgru") for s in range(2, 7)]
    out.append(Config(cell="elman", D=50, hidden=64, seed=7))   # seed 5 did not solve
    matched = [name for name in _recipes.RECIPES if "_matched_" in name]
    out += [Config(cell=_recipes.RECIPES[name].cell, D=20, hidden=64, seed=s, recipe=name)
            for s in (1, 2, 3) for name in matched]
    out += [Config(cell=c, D=20, hidden=h, seed=s)
            for c in ("mgru", "elman") for s in (1, 2, 3) for h in (32, 128)]
    return out


#: Tasks of :func:`plan_issue14_tasks` in priority order (short trainings first).
TASK_PLAN = ("kback", "kback_mix", "ar_signal")


def plan_issue14_tasks(seeds=(2, 3, 4, 5)) -> list[Config]:
    """Issue 14, item 2 for the low-coherence nets: ``seeds`` (the shipped checkpoints are seed 1)
    of each k-back, k-back-mix and AR-signal recipe, both cells, n = 64, the short k-back
    trainings first (about 1 min each against about 5 min for the AR signal)."""
    return [Config(cell=c, task=t, seed=s) for t in TASK_PLAN for s in seeds
            for c in ("elman", "mgru")]


def ship_name(result: dict) -> str:
    """``<cell>_memorization_D<D>_n<n>_s<seed>[_<variant>]`` of a memorization result,
    ``<cell>_<task>[_n<n>]_s<seed>`` of another (``_n<n>`` when n is not the recipe's)."""
    if result.get("task", "memorization") != "memorization":
        base = _recipes.get_recipe(result["cell"], result["task"])
        size = "" if result["hidden"] == base.hidden else f"_n{result['hidden']}"
        return f"{result['cell']}_{result['task']}{size}_s{result['seed']}"
    name = f"{result['cell']}_memorization_D{result['D']}_n{result['hidden']}_s{result['seed']}"
    if result.get("recipe") is not None:
        name += "_" + result["recipe"].split("_matched_", 1)[-1] if "_matched_" in \
            result["recipe"] else "_" + result["recipe"]
    return name


def ship(results: list[dict], cache_dir: str, out_dir: str) -> list[str]:
    """Copy the checkpoints that pass (:func:`passed`) to ``out_dir`` (see the module notes) and
    write ``out_dir/sweep.json`` with every result's scalars (failures included).

    An existing ``sweep.json`` is merged, not replaced: its entries whose configuration key is
    not among ``results`` are kept first, in their order, so that a later sweep (another cache,
    another machine) adds to what was shipped before."""
    import shutil

    os.makedirs(out_dir, exist_ok=True)
    written, summary = [], []
    index = os.path.join(out_dir, "sweep.json")
    if os.path.exists(index):
        with open(index) as f:
            old = json.load(f)
        if not isinstance(old, dict) or not isinstance(old.get("results"), list):
            raise ValueError(f"{index}: expected a JSON object with a 'results' list, "
                             f"found {type(old).__name__}")
        new_keys = {r["key"] for r in results}
        summary = [e for e in old["results"] if e.get("key") not in new_keys]
    for r in results:
        entry = {k: v for k, v in r.items() if k != "stats"}
        if r.get("task", "memorization") == "memorization":
            entry["stats"] = {m: {k: v for k, v in st.items() if k != "curve"}
                              for m, st in r["stats"].items()}
        else:
            entry["stats"] = {k: v for k, v in r["stats"].items() if k not in ("curves", "ranks")}
        entry["shipped"] = None
        if passed(r):
            name = ship_name(r)
            shutil.copyfile(os.path.join(cache_dir, r["key"] + ".npz"),
                            os.path.join(out_dir, name + ".npz"))
            shutil.copyfile(os.path.join(cache_dir, r["key"] + ".record.json"),
                            os.path.join(out_dir, name + ".json"))
            entry["shipped"] = name
            written.append(name)
        summary.append(entry)
    _write_atomic({"results": summary}, index)
    return written


def _parser():
    ap = argparse.ArgumentParser(prog="python -m validation.sweep", description=(
        "Train checkpoints over cells x tasks x delays x seeds x sizes on dask.distributed "
        "and report kept rank; results are cached per configuration (resumable)."))
    ap.add_argument("--plan", choices=["issue14", "issue14_tasks"], default=None,
                    help="a predefined list of configurations (overrides the grid options)")
    ap.add_argument("--cells", nargs="+", default=["mgru"], choices=list(_recipes.CELLS))
    ap.add_argument("--tasks", nargs="+", default=["memorization"], choices=list(TASKS),
                    help="tasks (--delays applies to memorization only)")
    ap.add_argument("--recipes", nargs="+", default=[None],
                    help="recipe names (default: the cell's recipe for each delay)")
    ap.add_argument("--delays", nargs="+", type=int, default=[10])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--hidden", nargs="+", type=int, default=[64])
    ap.add_argument("--max-steps", type=int, default=None, help="step budget (default: recipe's)")
    ap.add_argument("--cache", required=True, help="cache directory")
    ap.add_argument("--scheduler", default=None, help="address of an existing dask scheduler")
    ap.add_argument("--workers", type=int, default=2, help="local cluster workers")
    ap.add_argument("--serial", action="store_true", help="run in this process without dask")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--cached-only", action="store_true",
                    help="compute nothing: report (and ship) the configurations already cached")
    ap.add_argument("--ship", default=None,
                    help="copy checkpoints that pass (memorization: every sequence recalled; "
                         "other tasks: the recipe's check) to this directory")
    return ap


def _line(r: dict) -> str:
    """One line of the sweep's report for a result."""
    if r.get("task", "memorization") != "memorization":
        st = r["stats"]
        kept = " ".join(f"kept[{k}]={v}" for k, v in st["kept"].items())
        C = (f"C={st['C']:.3g}" if "C" in st else
             f"C(p=0)={st['knob']['C'][0]:.3g} p(C=2)={st['knob']['transition_C2']}")
        return (f"{r['cell']:5s} {r['task']:9s} n={r['hidden']:<4d} seed={r['seed']:<3d} "
                f"{r['recipe_name']:40s} solved={r['solved']!s:5s} steps={r['steps']} "
                f"test={r['test_metric']:.4f} {kept} {C} ({r['wall_time_s']:.1f} s)")
    sv = r["stats"]["svd"]
    return (f"{r['cell']:5s} D={r['D']:<4d} n={r['hidden']:<4d} seed={r['seed']:<3d} "
            f"{r['recipe_name']:40s} solved={r['solved']!s:5s} "
            f"correct={r['n_correct']}/{r['n_sequences']} kept99={sv['kept_99']} "
            f"kept32={sv['kept_all32']} auc={sv['auc_rank']:.2f} margin={sv['margin_kept']} "
            f"({r['wall_time_s']:.1f} s)")


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    if a.plan == "issue14":
        configs = plan_issue14()
    elif a.plan == "issue14_tasks":
        configs = plan_issue14_tasks(a.seeds if a.seeds != [1] else (2, 3, 4, 5))
    else:
        configs = [Config(cell=c, task=t, D=d if t == "memorization" else None, hidden=h,
                          seed=s, max_steps=a.max_steps, recipe=rc)
                   for t in a.tasks for c in a.cells
                   for d in (a.delays if t == "memorization" else [None])
                   for h in a.hidden for s in a.seeds for rc in a.recipes]
    t0 = time.perf_counter()
    if a.cached_only:
        res = [r for r in (_read_cached(os.path.join(a.cache, c.key() + ".json"), c)
                           for c in configs) if r is not None]
    else:
        res = run_sweep(configs, cache_dir=a.cache, scheduler=a.scheduler, n_workers=a.workers,
                        serial=a.serial, quiet=a.quiet)
    wall = time.perf_counter() - t0
    for r in res:
        print(_line(r))
    print(f"sweep: {len(res)} configurations, {wall:.1f} s wall (this invocation; cached "
          f"configurations are not recomputed), sum of task times "
          f"{sum(r['wall_time_s'] for r in res):.1f} s")
    if a.ship:
        names = ship(res, a.cache, a.ship)
        print(f"shipped {len(names)} checkpoints to {a.ship}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
