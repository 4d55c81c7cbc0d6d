"""allocate_ranks (rank per recurrent matrix under a parameter budget or a deviation
tolerance) against an exhaustive reference over EVERY combination of ranks 0..n of
every recurrent matrix, on small networks.

The reference (benchmarks/bench_allocation.py, which also measures the optimality rate
over more random networks) is independent of the search: the exact and first-order deviations of
all combinations come from one batched :func:`rnnperturb.rank_sweep` (stacked
truncated matrices; block-propagated tangent model), and stored parameters from the
documented formula (input matrices and biases, plus 2nr for a matrix of rank r < n/2
and n^2 otherwise; the random matrices here have full numerical rank). The contract:
the result never violates the budget / tolerance, its claimed value and parameter
count are those of the reference (and of rp.deviation / compression_cost), and it is
never better than the exhaustive optimum (which would expose a wrong reference). The
search is a heuristic: how often it finds the optimum is measured and must stay high.
"""
import dataclasses
import itertools

import numpy as np
import pytest

import rnnperturb as rp
from conftest import torch_rnn_with_head
from benchmarks.bench_allocation import check, exhaustive as _reference, formula_params
from benchmarks.bench_allocation import scenarios as _scenarios
from rnnperturb.report.allocation import allocate_ranks, rank_levels

_formula_params = formula_params


def _check(cell, X, ref, alloc, **kw):
    return check(cell, X, ref, alloc, **kw)[:2]


def _cases():
    rng = np.random.default_rng(7)
    return {
        "elman2_n6": (rp.random_stacked(["elman", "elman"], 6, 3, spectral_norm=1.2, seed=3),
                      rng.standard_normal((12, 5, 3))),
        "gru_n5": (rp.random_cell("gru", 5, 3, spectral_norm=1.5, seed=4),
                   rng.standard_normal((12, 5, 3))),
        "lstm_n4": (rp.random_cell("lstm", 4, 3, spectral_norm=1.5, seed=5),
                    rng.standard_normal((10, 4, 3))),
        "gru2_n4": (rp.random_stacked(["gru", "gru"], 4, 3, spectral_norm=1.5, seed=6),
                    rng.standard_normal((8, 4, 3))),
    }


def _run(name, k, methods):
    cell, X = _cases()[name]
    ref = _reference(cell, X)
    budgets, tols = _scenarios(ref, k)
    hits = total = 0
    for method in methods:
        for b in budgets:
            a = allocate_ranks(cell, X, budget_params=b, method=method)
            bad, opt = _check(cell, X, ref, a, budget=b, method=method)
            assert bad == [], (name, method, b, bad)
            hits, total = hits + opt, total + 1
        for t in tols:
            a = allocate_ranks(cell, X, tolerance=t, method=method)
            bad, opt = _check(cell, X, ref, a, tol=t, method=method)
            assert bad == [], (name, method, t, bad)
            hits, total = hits + opt, total + 1
    return hits, total


@pytest.mark.parametrize("name", ["elman2_n6", "gru_n5"])
def test_against_exhaustive(name):
    hits, total = _run(name, 5, ("exact", "first_order"))
    print(f"{name}: optimal in {hits}/{total}")
    assert hits >= 0.8 * total, (hits, total)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["elman2_n6", "gru_n5", "lstm_n4", "gru2_n4"])
def test_against_exhaustive_many(name):
    hits, total = _run(name, 12, ("exact", "first_order"))
    print(f"{name}: optimal in {hits}/{total}")
    assert hits >= 0.8 * total, (hits, total)


def test_checker_fails_on_wrong_allocations():
    """The reference check can fail: tampered allocations are caught."""
    cell, X = _cases()["elman2_n6"]
    ref = _reference(cell, X)
    ranks, exact, _, params = ref
    b = int(np.median(params))
    a = allocate_ranks(cell, X, budget_params=b, method="exact")
    assert _check(cell, X, ref, a, budget=b, method="exact")[0] == []
    over = ranks[int(np.argmax(params))]                          # everything dense
    bad, _ = _check(cell, X, ref, dataclasses.replace(
        a, rank=over, params=_formula_params(cell, over), value=0.0, exact_max=0.0),
        budget=b, method="exact")
    assert any("> budget" in s for s in bad), bad
    assert _check(cell, X, ref, dataclasses.replace(a, value=a.value * 0.5), budget=b,
                  method="exact")[0]
    assert _check(cell, X, ref, dataclasses.replace(a, params=a.params - 1), budget=b,
                  method="exact")[0]
    t = float(np.quantile(exact[exact > 0], 0.3))
    fail = ranks[int(np.argmin(np.where(exact > t, exact, np.inf)))]
    bad, _ = _check(cell, X, ref, dataclasses.replace(
        a, rank=fail, value=float(exact[ranks.index(fail)]),
        exact_max=float(exact[ranks.index(fail)]), params=_formula_params(cell, fail)),
        tol=t, method="exact")
    assert any("> tolerance" in s for s in bad), bad


def test_certified_tolerance_and_budget():
    """Certified criterion: the result passes its tolerance, its value is the certified
    bound of the returned configuration and covers the exact deviation; under a budget it
    is never above the certified bound of the exhaustive optimum by more than the search
    loses (checked by enumerating every combination's certified bound)."""
    cell, X = _cases()["elman2_n6"]
    n = cell.n
    cap = rp.report.rank_analysis.sound_cap(cell)
    cert = {}
    for r in itertools.product(range(n + 1), repeat=2):
        rank = dict(zip(cell.recurrent_names, r))
        b = np.asarray(rp.certified_bound(cell, rp.truncate_svd(cell, rank=rank), X,
                                          tier="tight"), np.float64)
        cert[r] = float(np.max(np.where(np.isfinite(b) & (b <= cap), b, cap)))
    vals = np.array(list(cert.values()))
    t = float(np.quantile(vals[vals > 0], 0.4))
    a = allocate_ranks(cell, X, tolerance=t, method="certified")
    key = tuple(a.rank[k] for k in cell.recurrent_names)
    assert a.value == pytest.approx(cert[key], rel=1e-12) and a.value <= t
    assert a.exact_max <= a.value
    best = min(_formula_params(cell, dict(zip(cell.recurrent_names, r)))
               for r, v in cert.items() if v <= t)
    assert a.params >= best
    budget = int(np.median([_formula_params(cell, dict(zip(cell.recurrent_names, r)))
                            for r in cert]))
    a = allocate_ranks(cell, X, budget_params=budget, method="certified")
    key = tuple(a.rank[k] for k in cell.recurrent_names)
    assert a.params <= budget and a.value == pytest.approx(cert[key], rel=1e-12)
    assert a.exact_max <= a.value
    assert a.value >= min(v for r, v in cert.items()
                          if _formula_params(cell, dict(zip(cell.recurrent_names, r))) <= budget)


def test_levels_are_the_honest_count():
    """rank_levels: per matrix the ranks where compression_cost's stored size drops, with
    that size; a rank-deficient matrix (rank 2 of n = 6) starts from its own factors."""
    cell = rp.random_stacked(["gru", "lstm"], 6, 3, seed=1)
    base, levels = rank_levels(cell)
    assert set(levels) == set(cell.recurrent_names) and len(levels) == 7
    for k, lv in levels.items():
        assert [r for r, _ in lv] == [6, 2, 1, 0]
        assert [p for _, p in lv] == [36, 24, 12, 0]
    assert base == cell.n_params - 7 * 36
    U = np.random.default_rng(0).standard_normal((6, 2))
    low = cell.replace(**{"l1.Wi": U @ U.T})
    _, lv = rank_levels(low)
    assert lv["l1.Wi"] == [(6, 24), (1, 12), (0, 0)]


def test_two_layer_lstm_budget():
    """A 2-layer LSTM (8 named blocks): the allocation meets the budget by
    compression_cost, its exact_max is rp.deviation's, and first-order values match
    rp.first_order of the returned configuration (superposition of per-block responses)."""
    cell = rp.random_stacked(["lstm", "lstm"], 6, 3, seed=2)
    X = np.random.default_rng(1).standard_normal((10, 6, 3))
    budget = int(0.7 * cell.n_params)
    for method in ("exact", "first_order"):
        a = allocate_ranks(cell, X, budget_params=budget, method=method)
        assert set(a.rank) == set(cell.recurrent_names) and len(a.rank) == 8
        small = rp.truncate_svd(cell, rank=a.rank)
        assert a.params == rp.compression_cost(cell, small).params <= budget
        dev = np.linalg.norm(rp.deviation(cell, small, X), axis=-1).max()
        assert a.exact_max == pytest.approx(dev, rel=1e-12)
        if method == "first_order":
            fo = np.linalg.norm(rp.first_order(cell, small, X), axis=-1).max()
            assert a.value == pytest.approx(fo, rel=1e-10)
        assert a.compression_ratio == pytest.approx(a.params / cell.n_params)
        assert (a.rank, a.value) in [(dict(r), v) for r, v in a.evidence]


def test_infeasible_and_bad_arguments():
    cell, X = _cases()["gru_n5"]
    base, levels = rank_levels(cell)
    a = allocate_ranks(cell, X, budget_params=base - 1)
    assert a.rank is None and np.isnan(a.value)
    a = allocate_ranks(cell, X, budget_params=base)
    assert a.rank == {k: 0 for k in cell.recurrent_names} and a.params == base
    with pytest.raises(ValueError, match="budget_params/tolerance: expected exactly one"):
        allocate_ranks(cell, X)
    with pytest.raises(ValueError, match="budget_params/tolerance: expected exactly one"):
        allocate_ranks(cell, X, budget_params=100, tolerance=0.1)
    with pytest.raises(ValueError, match="method: expected 'exact'"):
        allocate_ranks(cell, X, budget_params=100, method="svd")
    with pytest.raises(ValueError, match="budget_params"):
        allocate_ranks(cell, X, budget_params=-3)
    with pytest.raises(ValueError, match="tolerance"):
        allocate_ranks(cell, X, tolerance=0.0)
    with pytest.raises(ValueError, match="horizon"):
        allocate_ranks(cell, X, tolerance=0.1, horizon=X.shape[0] + 1)


def test_recommend_rank_hook():
    """recommend_rank(..., budget_params=P) and method='exact' give allocate_ranks' answer;
    the MGRU's tolerance path (certified / first order) is unchanged."""
    cell, X = _cases()["gru_n5"]
    a = rp.recommend_rank(cell, X, budget_params=100)
    b = allocate_ranks(cell, X, budget_params=100, method="certified")
    assert (a.rank, a.value, a.params) == (b.rank, b.value, b.params) and a.params <= 100
    a = rp.recommend_rank(cell, X, tolerance=0.1, method="exact")
    b = allocate_ranks(cell, X, tolerance=0.1, method="exact")
    assert (a.rank, a.value, a.params) == (b.rank, b.value, b.params) and a.value <= 0.1
    assert not hasattr(rp.recommend_rank(cell, X, tolerance=0.1, method="first_order"),
                       "budget_params")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tables_are_truncate_svd_bit_for_bit(dtype):
    """The per-rank matrices the search evaluates are truncate_svd's, bit for bit, and
    their stored sizes compression_cost's."""
    from rnnperturb.report.allocation import _tables
    cell = rp.random_stacked(["gru", "elman"], 5, 3, seed=4).astype(dtype)
    base, cost, mats = _tables(cell)
    for k in cell.recurrent_names:
        for r in range(cell.n + 1):
            small = rp.truncate_svd(cell, rank={k: r})
            assert mats[k][r].dtype == cell.dtype
            assert np.array_equal(mats[k][r], small.recurrent[k]), (k, r)
            assert base + sum(cost[j][cell.n] for j in cell.recurrent_names if j != k) \
                + cost[k][r] == rp.compression_cost(cell, small).params


def _torch_net(torch, kind, layers, rng, m=3, n=5, k=4):
    """A torch nn.GRU/nn.LSTM with a Linear readout, float64, weights drawn from ``rng``."""
    net = torch_rnn_with_head(torch, kind, layers, m=m, n=n, k=k)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.tensor(rng.uniform(-0.6, 0.6, tuple(p.shape))))
    return net


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_cli_budget_params_torch(tmp_path, capsys, kind):
    """rnnperturb analyze FILE.pt --budget-params N on a 2-layer nn.GRU / nn.LSTM: the
    allocation is the library's, within N, its certified bound covers its exact deviation,
    its accuracy is that of the exported file loaded strictly into the user's own module
    (outputs equal to the library's truncated network to 1e-10)."""
    import json
    torch = pytest.importorskip("torch")
    from rnnperturb.report.cli import main
    rng = np.random.default_rng(11)
    net = _torch_net(torch, kind, 2, rng)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    X = rng.standard_normal((6, 20, 3))
    y = rng.integers(0, 4, 20)
    np.savez(tmp_path / "X.npz", X=X, y=y)
    cell = rp.from_torch(net.state_dict())
    budget = rp.compression_cost(cell, rp.truncate_svd(cell, rank=1)).params + 10
    argv = ["analyze", str(tmp_path / "m.pt"), "--inputs", str(tmp_path / "X.npz"),
            "--ranks", "1", "--budget-params", str(budget), "--quiet"]
    code = main(argv + ["--export", str(tmp_path / "small.pt"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    al = json.loads(out)["allocation"]
    ref = allocate_ranks(cell, X, budget_params=budget, method="exact")
    assert al["rank"] == ref.rank and len(al["rank"]) == (3 if kind == "gru" else 4) * 2
    assert al["params"] == ref.params <= budget
    assert al["exact_max"] == pytest.approx(ref.exact_max, rel=1e-12)
    assert al["exact_max"] <= al["certified_max"]
    assert json.loads(out)["export"]["rank"] == al["rank"]
    sd = torch.load(tmp_path / "small.pt", weights_only=True)
    other = _torch_net(torch, kind, 2, np.random.default_rng(0))
    other.load_state_dict(sd, strict=True)
    with torch.no_grad():
        got = other(torch.tensor(X)).numpy()
    small = rp.truncate_svd(cell, rank=al["rank"])
    assert np.max(np.abs(got - small.readout(small.run(X)))) < 1e-10
    assert al["accuracy"] == np.mean(np.argmax(got[-1], -1) == y)
    if kind == "lstm":                  # the text line (one kind is enough)
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 0, err
        line = [ln for ln in out.splitlines() if ln.startswith("allocation (--budget-params")]
        assert len(line) == 1 and f"{al['params']} stored parameters" in line[0]
    code = main(argv[:-3] + ["--budget-params", "-1"])
    out, err = capsys.readouterr()
    assert code == 2 and "--budget-params: expected an integer >= 0, found -1" in err
