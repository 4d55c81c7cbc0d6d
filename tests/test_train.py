"""Training loop, recipes, command line, task helpers and the shipped checkpoints."""
import json
import os

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb import metrics, tasks
from validation import train as tr
from validation.kalman import kalman_estimate, kalman_nmse
from validation.recipes import RECIPES, Recipe, get_recipe

CKPT = tr.CHECKPOINT_DIR


def _tiny(kind, **kw):
    base = dict(name=f"{kind}_tiny", cell=kind, task="kback",
                task_params={"K": 3, "k": 1, "T": 12, "repeat": 0.0}, hidden=16,
                lr=2e-2, batch=32, max_steps=400, check_every=25, target=0.97, seed=3)
    base.update(kw)
    return Recipe(**base)


def test_same_seed_same_weights(kind):
    r = _tiny(kind, max_steps=15, check_every=1000)
    a = tr.train(r, quiet=True, n_test=50)
    b = tr.train(r, quiet=True, n_test=50)
    c = tr.train(r, seed=4, quiet=True, n_test=50)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)
    assert a.record["steps"] == 15 and a.record["seed"] == 3 and c.record["seed"] == 4


def test_memorization_steps_deterministic():
    r = get_recipe("mgru", "memorization", 5)
    a = tr.train(r, steps=10, hidden=16, quiet=True)
    b = tr.train(r, steps=10, hidden=16, quiet=True)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_tiny_training_beats_chance(kind):
    res = tr.train(_tiny(kind), quiet=True, n_test=500)
    acc = res.record["final_test"]["per_step"]
    chance = res.record["final_test"]["chance"]["per_step"]
    assert chance == pytest.approx(1 / 3)
    assert acc > 0.9, acc
    # the record's accuracy is the library cell's float64 accuracy on fresh data
    t = tasks.kback(3, 1, 12, batch=200, seed=99)
    assert metrics.per_step_accuracy(res.cell.readout(res.cell.run(t.X)), t) > 0.9


def test_save_result_roundtrip(tmp_path):
    r = _tiny("mgru", max_steps=5)
    res = tr.train(r, quiet=True, n_test=20)
    path = str(tmp_path / "x.npz")
    jpath = tr.save_result(res, path)
    cell, meta = rp.load_with_metadata(path)
    assert meta["task"] == "kback" and meta["K"] == 3 and meta["k"] == 1 and meta["seed"] == 3
    for k, v in res.cell.params.items():
        np.testing.assert_array_equal(getattr(cell, k), v)
    rec = json.load(open(jpath))
    for key in ("seed", "steps", "wall_time_s", "final_test", "recipe", "loadavg_start",
                "loadavg_end"):
        assert key in rec
    assert rec["recipe"]["lr"] == r.lr


def test_init_params_draw_order():
    """The matrices are drawn in the cells' constructor order (the order the
    shipped checkpoints were initialised in), biases zero."""
    s = 1 / np.sqrt(8)
    for kind, mats in (("elman", [("W", (8, 8)), ("U", (8, 3)), ("V", (2, 8))]),
                       ("mgru", [("Wf", (8, 8)), ("Uf", (8, 3)), ("Wh", (8, 8)), ("Uh", (8, 3)),
                                 ("V", (2, 8))])):
        rng = np.random.default_rng(0)
        want = {k: rng.uniform(-s, s, size=sh) for k, sh in mats}
        got = tr.init_params(kind, 8, 3, 2, rng=0, dtype=np.float64)
        assert list(got) == {"elman": ["W", "U", "b", "V", "c"],
                             "mgru": ["Wf", "Uf", "bf", "Wh", "Uh", "bh", "V", "c"]}[kind]
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v)
        for k in set(got) - set(want):
            assert not np.any(got[k])


def test_init_params():
    p = tr.init_params("elman", 8, 3, 2, init="identity", rng=0, dtype=np.float64)
    np.testing.assert_array_equal(p["W"], np.eye(8))
    assert np.all(np.abs(p["U"]) <= 1 / np.sqrt(8)) and np.all(p["b"] == 0)
    q = tr.init_params("mgru", 8, 3, 2, forget_bias=-1.0, rng=0)
    assert q["Wf"].dtype == np.float32 and np.all(q["bf"] == -1.0)
    with pytest.raises(ValueError, match="init: 'identity' applies to a cell with one recurrent"):
        tr.init_params("mgru", 8, 3, 2, init="identity", rng=0)
    with pytest.raises(ValueError, match="forget_bias: applies to a cell with a gate bias"):
        tr.init_params("elman", 8, 3, 2, forget_bias=-1.0, rng=0)
    with pytest.raises(ValueError, match="init: expected 'uniform' or 'identity'"):
        tr.init_params("elman", 8, 3, 2, init="orthogonal", rng=0)


def test_kback_mix_repeat_statistics():
    t = tr.kback_mix(4, 2, 400, repeat_lo=0.9, repeat_hi=0.9, batch=200, seed=1)
    S = np.argmax(t.X, -1)
    same = np.mean(S[1:] == S[:-1])
    # P(same) = p + (1 - p) / K
    assert same == pytest.approx(0.9 + 0.1 / 4, abs=0.01)
    np.testing.assert_array_equal(t.targets[2:], S[:-2])
    assert not t.mask[:2].any() and t.mask[2:].all()
    u = tr.kback_mix(4, 2, 50, repeat_lo=0.0, repeat_hi=0.9, batch=500, seed=2)
    assert 0.0 <= u.params["repeat"].min() and u.params["repeat"].max() <= 0.9
    with pytest.raises(ValueError, match="repeat_lo, repeat_hi: expected"):
        tr.kback_mix(repeat_lo=0.5, repeat_hi=0.2, seed=0)


def test_kalman_matches_steady_state_riccati():
    """Monte-Carlo NMSE of the Kalman filter against the closed-form
    steady-state posterior variance, and no simple smoother beats it."""
    tau, noise = 10.0, 0.5
    t = tasks.ar_signal(400, tau=tau, noise=noise, batch=300, seed=5)
    a, R = np.exp(-1 / tau), noise ** 2
    P = 1.0
    for _ in range(2000):
        Pm = a * a * P + 1 - a * a
        P = Pm * R / (Pm + R)
    assert kalman_nmse(t) == pytest.approx(P, rel=0.03)
    x = t.X[:, :, 0]
    for lam in (0.3, 0.5, 0.7, 0.9):
        y = np.zeros_like(x)
        acc = np.zeros(x.shape[1])
        for s in range(x.shape[0]):
            acc = lam * acc + (1 - lam) * x[s]
            y[s] = acc
        assert kalman_nmse(t) < metrics.nmse(y[:, :, None], t)
    assert kalman_nmse(t) < metrics.nmse(t.X, t)
    h = tasks.ar_signal(100, tau=tau, noise=noise, horizon=3, batch=4, seed=1)
    assert kalman_estimate(h).shape == (100, 4, 1)
    with pytest.raises(ValueError, match="task: expected an 'ar_signal' task"):
        kalman_estimate(tasks.kback(seed=0))


# ----------------------------------------------------------------------- recipes / CLI
def test_get_recipe():
    assert get_recipe("mgru", "memorization", 50).name == "mgru_memorization_D50"
    r = get_recipe("elman", "memorization", 35)
    assert r.task_params["D"] == 35 and r.curriculum[-1] == 35 and r.curriculum[0] == 20
    assert get_recipe("mgru", "kback").task_params["k"] == 2
    with pytest.raises(ValueError, match="delay: expected None for task 'kback'"):
        get_recipe("mgru", "kback", 10)
    with pytest.raises(ValueError, match="cell: expected one of"):
        get_recipe("transformer", "kback")


def test_cosine_lr_schedule(monkeypatch):
    """lr_at follows its defining cosine (endpoints, midpoint, monotone); None keeps lr constant
    and stays out of as_dict (recipes saved before the option still match); train() hands the
    scheduled lr to Adam at every step."""
    r = Recipe(name="x", cell="mgru", task="kback", lr=1e-2, lr_final=1e-3, max_steps=101)
    assert r.lr_at(1) == pytest.approx(1e-2, rel=1e-15)
    assert r.lr_at(101) == pytest.approx(1e-3, rel=1e-15)
    assert r.lr_at(51) == pytest.approx(0.5 * (1e-2 + 1e-3), rel=1e-14)
    s = np.arange(1, 102)
    lrs = np.array([r.lr_at(int(i)) for i in s])
    np.testing.assert_allclose(lrs, 1e-3 + 0.5 * 9e-3 * (1 + np.cos(np.pi * (s - 1) / 100)),
                               rtol=1e-14)
    assert np.all(np.diff(lrs) < 0)
    assert r.lr_at(5, 5) == pytest.approx(1e-3, rel=1e-15)       # a shorter run decays fully
    const = r.replace(lr_final=None)
    assert const.lr_at(1) == const.lr_at(101) == 1e-2
    assert "lr_final" not in const.as_dict() and r.as_dict()["lr_final"] == 1e-3
    seen = []
    real_step = tr.Adam.step

    def spy(self, g):
        seen.append(self.lr)
        return real_step(self, g)

    monkeypatch.setattr(tr.Adam, "step", spy)
    rec = get_recipe("mgru", "kback").replace(lr=1e-2, lr_final=1e-3, max_steps=5, min_steps=5,
                                              hidden=4)
    tr.train(rec, steps=5, quiet=True, n_test=10)
    np.testing.assert_allclose(seen, [rec.lr_at(i, 5) for i in range(1, 6)], rtol=0)


@pytest.mark.parametrize("argv, msg", [
    (["--cell", "transformer", "--task", "kback"], "invalid choice: 'transformer'"),
    (["--cell", "mgru", "--task", "copy"], "invalid choice: 'copy'"),
    (["--cell", "mgru", "--task", "memorization"], "--delay: expected an integer >= 0"),
    (["--cell", "mgru", "--task", "kback", "--delay", "5"], "--delay: expected no delay"),
    (["--cell", "mgru", "--task", "memorization", "--delay", "-1"],
     "--delay: expected an integer >= 0, found -1"),
    (["--cell", "mgru", "--task", "kback", "--steps", "0"], "--steps: expected an integer >= 1"),
    (["--cell", "mgru", "--task", "kback", "--hidden", "0"], "--hidden: expected an integer >= 1"),
    (["--cell", "mgru", "--task", "kback", "--seed", "-2"], "--seed: expected an integer >= 0"),
    (["--cell", "mgru", "--task", "kback", "--out", "x.txt"], "--out: expected a path ending"),
    (["--cell", "mgru", "--task", "kback", "--delay", "x"], "invalid int value: 'x'"),
])
def test_cli_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        tr.main(argv)
    assert exc.value.code == 2
    assert msg in capsys.readouterr().err


def test_cli_runs(tmp_path, capsys):
    out = str(tmp_path / "m.npz")
    assert tr.main(["--cell", "elman", "--task", "memorization", "--delay", "3", "--steps", "5",
                    "--hidden", "8", "--quiet", "--out", out]) == 0
    cell, meta = rp.load_with_metadata(out)
    assert cell.n == 8 and meta["D"] == 3 and meta["task"] == "memorization"
    assert "wrote" in capsys.readouterr().out
    assert os.path.exists(str(tmp_path / "m.json"))


# ----------------------------------------------------------------------- shipped checkpoints
MEMORIZATION = ["mgru_memorization_D10", "mgru_memorization_D20", "mgru_memorization_D50",
                "mgru_memorization_D100", "elman_memorization_D10", "elman_memorization_D20",
                "elman_memorization_D50"]
SAMPLED = ["elman_kback", "mgru_kback", "elman_kback_mix", "mgru_kback_mix",
           "elman_ar_signal", "mgru_ar_signal"]


@pytest.mark.parametrize("name", MEMORIZATION)
def test_shipped_memorization_checkpoint_recalls_all_32(name):
    cell, meta = rp.load_with_metadata(os.path.join(CKPT, name + ".npz"))
    assert (meta["task"], meta["K"], meta["L"]) == ("memorization", 2, 5)
    assert cell.n == 64 and cell.kind == name.split("_")[0]
    assert f"D{meta['D']}" == name.rsplit("_", 1)[1]
    task = tasks.memorization_all(2, 5, meta["D"])
    assert metrics.sequence_accuracy(cell.readout(cell.run(task.X)), task) == 1.0
    rec = json.load(open(os.path.join(CKPT, name + ".json")))
    assert rec["final_test"]["n_correct"] == 32 and rec["seed"] == meta["seed"]


@pytest.mark.parametrize("name", SAMPLED)
def test_shipped_sampled_checkpoint(name):
    cell, meta = rp.load_with_metadata(os.path.join(CKPT, name + ".npz"))
    rec = json.load(open(os.path.join(CKPT, name + ".json")))
    recipe = RECIPES[name]
    assert cell.n == 64 and rec["final_test"]["n_sequences"] == 10_000
    t = tr.sample_task(recipe, np.random.default_rng(123), 100 if meta["task"] == "ar_signal" else 200)
    Y = cell.readout(cell.run(t.X))
    if meta["task"] == "ar_signal":
        assert (meta["tau"], meta["noise"], meta["horizon"], meta["T"]) == (10.0, 0.5, 0, 200)
        # independent check on fresh data: close to the Kalman optimum, far below chance (1)
        assert metrics.nmse(Y, t) < 1.1 * kalman_nmse(t)
        assert rec["final_test"]["nmse"] == pytest.approx(metrics.nmse(Y, t), rel=0.1)
    else:
        assert meta["K"] == 4 and meta["k"] == 2 and meta["T"] == 50
        acc = metrics.per_step_accuracy(Y, t)
        assert acc >= 0.95
        assert rec["final_test"]["per_step"] == pytest.approx(acc, abs=0.01)
