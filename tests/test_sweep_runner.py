"""validation.sweep: dask path equals serial path, caching/resume, stable keys, bad input."""
import json
import os

import numpy as np
import pytest

import rnnperturb as rp

from validation import sweep
from validation.sweep import Config, run_sweep

TINY = dict(cell="mgru", D=2, hidden=4, max_steps=10)


def _strip(r):
    return {k: v for k, v in r.items() if k not in ("wall_time_s", "train_wall_time_s")}


def test_dask_equals_serial(tmp_path):
    pytest.importorskip("dask.distributed")
    cfg = [Config(seed=3, **TINY)]
    a = run_sweep(cfg, cache_dir=str(tmp_path / "s"), serial=True, quiet=True)
    b = run_sweep(cfg, cache_dir=str(tmp_path / "d"), n_workers=1, processes=False, quiet=True)
    assert _strip(a[0]) == _strip(b[0])
    assert a[0]["n_sequences"] == 32 and 0 <= a[0]["n_correct"] <= 32
    on_disk = json.loads((tmp_path / "d" / (cfg[0].key() + ".json")).read_text())
    assert on_disk == b[0]
    # the stored checkpoints are the same weights, loadable with the project's loader
    ca, ma = rp.load_with_metadata(str(tmp_path / "s" / (cfg[0].key() + ".npz")))
    cb, mb = rp.load_with_metadata(str(tmp_path / "d" / (cfg[0].key() + ".npz")))
    for k in ca.recurrent:
        np.testing.assert_array_equal(ca.recurrent[k], cb.recurrent[k])
    assert ma["seed"] == mb["seed"] == 3 and ma["D"] == 2


def test_cache_and_resume(tmp_path, monkeypatch):
    calls = []
    real = sweep.run_config

    def counting(c):
        calls.append(c)
        return real(c)

    monkeypatch.setattr(sweep, "run_config", counting)
    cfgs = [Config(seed=s, **TINY) for s in (0, 1, 2)]
    cache = str(tmp_path)
    # interrupted sweep: only the first configuration made it to disk
    first = run_sweep(cfgs[:1], cache_dir=cache, serial=True, quiet=True)
    assert calls == cfgs[:1]
    mtime = os.stat(tmp_path / (cfgs[0].key() + ".json")).st_mtime_ns
    res = run_sweep(cfgs, cache_dir=cache, serial=True, quiet=True)
    assert calls == cfgs                                   # only the missing two computed
    assert res[0] == first[0]
    assert os.stat(tmp_path / (cfgs[0].key() + ".json")).st_mtime_ns == mtime
    assert [r["seed"] for r in res] == [0, 1, 2]
    again = run_sweep(cfgs, cache_dir=cache, serial=True, quiet=True)
    assert calls == cfgs and again == res                  # nothing recomputed
    assert sorted(os.listdir(tmp_path)) == sorted(c.key() + e for c in cfgs
                                                  for e in (".json", ".npz", ".record.json"))
    # a result whose checkpoint is missing is recomputed (the .json is written last)
    os.remove(tmp_path / (cfgs[1].key() + ".npz"))
    run_sweep(cfgs, cache_dir=cache, serial=True, quiet=True)
    assert calls == cfgs + [cfgs[1]]
    # a recipe edited under the same name is retrained, not reused from the cache (all three
    # configurations use that recipe)
    from validation import recipes
    name = cfgs[2].build_recipe().name
    monkeypatch.setitem(recipes.RECIPES, name, recipes.get_recipe("mgru", "memorization", 2)
                        .replace(lr=0.5))
    run_sweep(cfgs, cache_dir=cache, serial=True, quiet=True)
    assert calls == cfgs + [cfgs[1]] + cfgs


def test_key_stable_and_distinct():
    a = Config(cell="mgru", D=10, hidden=64, seed=1)
    assert a.key() == Config(cell="mgru", D=10, hidden=64, seed=1).key()
    import hashlib
    s = json.dumps(a.as_dict(), sort_keys=True, separators=(",", ":"))
    assert a.key() == hashlib.sha256(s.encode()).hexdigest()
    others = [Config(cell="elman", D=10, hidden=64, seed=1), Config(cell="mgru", D=20, hidden=64, seed=1),
              Config(cell="mgru", D=10, hidden=32, seed=1), Config(cell="mgru", D=10, hidden=64, seed=2),
              Config(cell="mgru", D=10, hidden=64, seed=1, max_steps=5)]
    keys = {a.key()} | {o.key() for o in others}
    assert len(keys) == 6


def test_memorization_keys_unchanged_by_the_task_configs():
    """Memorization configurations keep the fields and keys of the memorization-only runner: the
    default delay is stored as D = 10, the key is sha256 of the same 7-field JSON, and every key
    in the shipped sweep.json (written by the earlier runner) is reproduced from its fields."""
    import hashlib
    old = {"cell": "mgru", "task": "memorization", "D": 10, "hidden": 64, "seed": 1,
           "recipe": None, "max_steps": None}
    ref = hashlib.sha256(json.dumps(old, sort_keys=True, separators=(",", ":")).encode())
    assert Config(cell="mgru").as_dict() == old
    assert Config(cell="mgru").key() == Config(cell="mgru", D=10).key() == ref.hexdigest()
    fields = ("cell", "task", "D", "hidden", "seed", "recipe", "max_steps")
    mem = [r for r in _shipped() if r.get("task", "memorization") == "memorization"]
    assert len(mem) >= 40
    for r in mem:
        assert Config(**{f: r[f] for f in fields}).key() == r["key"], r
    # a task configuration has its own key (D None), distinct from every memorization one
    t = Config(cell="mgru", task="kback", seed=1)
    assert t.as_dict() == {**old, "task": "kback", "D": None}
    assert t.key() not in {r["key"] for r in mem} | {ref.hexdigest()}


def test_task_config_trains_scores_and_ships(tmp_path):
    """A tiny k-back and AR configuration through the serial sweep: the stored result carries the
    recipe's test metric and the statistics of exp_task_seeds.task_statistics recomputed from the
    stored checkpoint; ship() copies a passing net under <cell>_<task>_s<seed> and records a
    failing one (not shipped)."""
    from validation.exp_task_seeds import task_statistics
    cache, out = str(tmp_path / "c"), str(tmp_path / "o")
    cfgs = [Config(cell="mgru", task="kback", hidden=6, seed=2, max_steps=20),
            Config(cell="elman", task="ar_signal", hidden=5, seed=3, max_steps=5)]
    res = run_sweep(cfgs, cache_dir=cache, serial=True, quiet=True)
    for c, r in zip(cfgs, res):
        assert (r["task"], r["D"], r["steps"], r["solved"]) == (c.task, None, c.max_steps, False)
        cell, meta = rp.load_with_metadata(os.path.join(cache, c.key() + ".npz"))
        assert (int(meta["seed"]), meta["task"], cell.n) == (c.seed, c.task, c.hidden)
        st = task_statistics(cell, meta)
        assert st["kept"] == r["stats"]["kept"] and st["C"] == pytest.approx(r["stats"]["C"])
        assert set(st["kept"]) == {"own:svd", "own:data"}
    assert res[0]["test_metric"] == res[0]["final_test"]["per_step"]
    assert res[1]["test_metric"] == pytest.approx(res[1]["final_test"]["nmse"]
                                                  / res[1]["final_test"]["kalman_nmse"])
    good = dict(res[0], solved=True)                # as if it had passed its check
    names = sweep.ship([good, res[1]], cache, out)
    assert names == ["mgru_kback_n6_s2"]
    assert sweep.ship_name(dict(good, hidden=64)) == "mgru_kback_s2"
    idx = json.loads((tmp_path / "o" / "sweep.json").read_text())["results"]
    assert [e["shipped"] for e in idx] == ["mgru_kback_n6_s2", None]
    assert all("curves" not in e["stats"] for e in idx)
    assert (tmp_path / "o" / "mgru_kback_n6_s2.npz").read_bytes() == \
        (tmp_path / "c" / (cfgs[0].key() + ".npz")).read_bytes()


def test_bad_config_raises_before_submit(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="cell.*'nosuchcell'"):
        Config(cell="nosuchcell", D=10)
    with pytest.raises(ValueError, match="recipe"):
        Config(cell="mgru", D=10, recipe="elman_memorization_D10")
    with pytest.raises(ValueError, match="recipe.*mgru_memorization_D20_matched_uniform"):
        Config(cell="mgru", D=10, recipe="mgru_memorization_D20_matched_uniform")
    c = Config(cell="mgru", D=20, recipe="mgru_memorization_D20_matched_identity", seed=4)
    r = c.build_recipe()
    assert (r.forget_bias, r.lr, r.seed, r.max_steps) == (-3.0, 3e-3, 4, 30000)
    with pytest.raises(ValueError, match=r"task: expected one of .*found 'nosuchtask'"):
        Config(cell="mgru", task="nosuchtask")
    with pytest.raises(ValueError, match=r"D: expected None for task 'kback'.*found 10"):
        Config(cell="mgru", task="kback", D=10)
    with pytest.raises(ValueError, match=r"recipe: expected None or one of \['mgru_kback'\].*"
                                         r"task 'kback', found 'mgru_kback_mix'"):
        Config(cell="mgru", task="kback", recipe="mgru_kback_mix")
    with pytest.raises(ValueError, match="task"):
        Config(cell="lstm", task="kback")            # no k-back recipe for the LSTM
    k = Config(cell="elman", task="ar_signal", seed=5)
    assert k.D is None and k.build_recipe().name == "elman_ar_signal"
    assert (k.build_recipe().seed, k.build_recipe().max_steps) == (5, 3000)
    monkeypatch.setattr(sweep, "run_config", lambda c: pytest.fail("submitted"))
    with pytest.raises(TypeError, match=r"configs\[1\]"):
        run_sweep([Config(**TINY), {"cell": "lstm"}], cache_dir=str(tmp_path), serial=True)
    assert os.listdir(tmp_path) == []


def test_rank_statistics_against_direct_svd():
    """Kept ranks of the shipped MGRU D=10 checkpoint against a by-hand computation:
    numpy SVD truncation of each recurrent matrix, argmax recall accuracy on all 32 sequences."""
    from rnnperturb import tasks
    from validation.experiments import load
    from validation.rank_stats import rank_statistics

    cell, meta = load("mgru_memorization_D10")
    st = rank_statistics(cell, meta, methods=("svd",))["svd"]
    task = tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"]))

    def scores(r):
        mats = {}
        for k, W in cell.recurrent.items():
            U, s, Vt = np.linalg.svd(W)
            mats[k] = (U[:, :r] * s[:r]) @ Vt[:r]
        small = cell.replace(**mats)
        Y = small.readout(small.run(task.X))
        ok = Y.argmax(-1) == task.targets
        rec = np.where(task.recall, ok, True).all(axis=0)
        Z = Y[task.recall]
        y = task.targets[task.recall]
        marg = [Z[i, y[i]] - max(Z[i, j] for j in range(Z.shape[1]) if j != y[i])
                for i in range(len(y))]
        return float(ok[task.recall].mean()), float(rec.mean()), float(np.mean(marg))

    sc = [scores(r) for r in range(cell.n + 1)]
    acc = np.array([a for a, _, _ in sc])
    assert acc[-1] == 1.0
    kept = st["kept_99"]
    assert kept is not None and 0 < kept < cell.n
    assert all(acc[r] >= 0.99 for r in range(kept, cell.n + 1)) and acc[kept - 1] < 0.99
    k32 = st["kept_all32"]
    assert all(sc[r][1] == 1.0 for r in range(k32, cell.n + 1)) and sc[k32 - 1][1] < 1.0
    assert st["auc_rank"] == pytest.approx(np.sum(1 - np.minimum(acc[:-1], 1)), abs=1e-9)
    mm = np.array([m for _, _, m in sc])
    km = st["margin_kept"]
    assert all(mm[r] >= 0.5 * mm[-1] - 1e-9 for r in range(km, cell.n + 1))
    assert mm[km - 1] < 0.5 * mm[-1] + 1e-9
    np.testing.assert_allclose(st["curve"]["mean_margin"], mm, rtol=1e-9, atol=1e-9)


def test_auc_rank_of_a_step_curve_is_the_step():
    """A net whose recall is 0 below r* and 1 from r*: AUC rank = kept ranks = r*;
    one wrong bit out of 160 at one rank moves the AUC rank by 1/160, kept_99 not at all
    and kept_all32 to above that rank."""
    from validation.rank_stats import kept_from
    r_star, n = 7, 16
    acc = np.array([0.0] * r_star + [1.0] * (n + 1 - r_star))
    auc = np.sum(1 - np.minimum(acc[:-1] / acc[-1], 1))
    assert auc == r_star and kept_from(range(n + 1), acc >= 0.99) == r_star
    acc2 = acc.copy()
    acc2[12] = 159 / 160
    assert np.sum(1 - np.minimum(acc2[:-1], 1)) == pytest.approx(r_star + 1 / 160)
    assert kept_from(range(n + 1), acc2 >= 0.99) == r_star
    assert kept_from(range(n + 1), acc2 >= 1.0) == 13


SEED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "validation", "checkpoints", "seeds")


def _shipped():
    path = os.path.join(SEED_DIR, "sweep.json")
    if not os.path.exists(path):
        pytest.skip("validation/checkpoints/seeds/sweep.json not shipped yet")
    with open(path) as f:
        return json.load(f)["results"]


def test_seed_checkpoints_recall_all_sequences():
    """Every shipped seed checkpoint recalls all 32 sequences (library float64 forward pass), carries
    its own seed in its metadata (distinct from the seed-1 checkpoints of the same configuration),
    and every failed configuration is listed in sweep.json rather than shipped."""
    from rnnperturb import tasks
    res = _shipped()
    files = sorted(f[:-4] for f in os.listdir(SEED_DIR) if f.endswith(".npz"))
    assert files == sorted(r["shipped"] for r in res if r["shipped"] is not None)
    res = [r for r in res if r.get("task", "memorization") == "memorization"]
    shipped = [r for r in res if r["shipped"] is not None]
    assert len(shipped) >= 28
    seen = set()
    for r in shipped:
        cell, meta = rp.load_with_metadata(os.path.join(SEED_DIR, r["shipped"] + ".npz"))
        assert (int(meta["seed"]), int(meta["D"]), cell.n, cell.kind) == (
            r["seed"], r["D"], r["hidden"], r["cell"])
        task = tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"]))
        Y = cell.readout(cell.run(task.X))
        assert rp.metrics.sequence_accuracy(Y, task) == 1.0, r["shipped"]
        key = (r["cell"], r["D"], r["hidden"], r["recipe"], r["seed"])
        assert key not in seen
        seen.add(key)
    for r in res:
        if r["shipped"] is None:
            assert r["n_correct"] < r["n_sequences"]


def test_sweep_statistics_recomputed_from_shipped_files():
    """The rank statistics stored in sweep.json are those of the shipped weights (recomputed for the
    n = 32 nets, the cheapest, and one MGRU D = 10 net at n = 64; the identity-aware method on one
    of them)."""
    from validation.rank_stats import rank_statistics
    shipped = [r for r in _shipped() if r["shipped"] is not None
               and r.get("task", "memorization") == "memorization"]
    small = [r for r in shipped if r["hidden"] == 32] + [
        r for r in shipped if (r["cell"], r["D"], r["hidden"], r["recipe"]) == ("mgru", 10, 64, None)][:1]
    assert len(small) >= 1
    for i, r in enumerate(small):
        cell, meta = rp.load_with_metadata(os.path.join(SEED_DIR, r["shipped"] + ".npz"))
        methods = ("svd", "identity") if i == 0 else ("svd",)
        st = rank_statistics(cell, meta, methods=methods)
        for m in methods:
            for k in ("kept_99", "kept_all32", "margin_kept"):
                assert st[m][k] == r["stats"][m][k], (r["shipped"], m, k)
            assert st[m]["auc_rank"] == pytest.approx(r["stats"][m]["auc_rank"], abs=1e-9)


def test_ship_merges_into_an_existing_index(tmp_path):
    """A second --ship adds to sweep.json: earlier entries stay, a re-run configuration is
    replaced (not duplicated), and the index lists failures (shipped None) too."""
    cache, out = str(tmp_path / "cache"), str(tmp_path / "out")
    a = run_sweep([Config(seed=0, **TINY), Config(seed=1, **TINY)], cache_dir=cache,
                  serial=True, quiet=True)
    b = run_sweep([Config(seed=1, **TINY), Config(seed=2, **TINY)], cache_dir=cache,
                  serial=True, quiet=True)
    sweep.ship(a, cache, out)
    sweep.ship(b, cache, out)
    idx = json.loads((tmp_path / "out" / "sweep.json").read_text())["results"]
    assert [e["seed"] for e in idx] == [0, 1, 2]
    assert [e["key"] for e in idx] == [a[0]["key"], b[0]["key"], b[1]["key"]]
    for e in idx:
        full = e["n_correct"] == e["n_sequences"]
        assert (e["shipped"] is not None) == full
        if full:
            assert (tmp_path / "out" / (e["shipped"] + ".npz")).exists()
    (tmp_path / "out" / "sweep.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"sweep\.json: expected a JSON object with a 'results' "
                                         r"list, found list"):
        sweep.ship(b, cache, out)
