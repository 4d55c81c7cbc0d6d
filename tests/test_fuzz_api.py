"""Fuzz: hostile arguments to the library boundary (issue 15): rp.load, rp.load_torch,
the _checks helpers, default_inputs, analyze_ranks and recommend_rank."""
from __future__ import annotations

import signal
import warnings

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb import _checks
from rnnperturb.cells.random import random_cell
from rnnperturb.report import rank_analysis
from test_fuzz_common import check_api, check_cli, record, run_cli

N, M = 4, 2


def _cell(kind="elman", n=N, m=M):
    return random_cell(kind, n, m, spectral_norm=1.1, seed=0)


X_OK = np.random.default_rng(0).standard_normal((5, 2, M))

PATH_ARGS = [(None, r"path: expected a path to an existing .*found NoneType None"),
             (3, r"path: expected a path .*found int 3"),
             (b"x.npz", r"path: expected a path .*found bytes"),
             (["a.npz"], r"path: expected a path .*found list"),
             ("", r"path: expected a path to an existing .*found ''"),
             ("a\x00b", r"path: expected a path without NUL bytes"),
             ("/", r"path: expected a regular .*found a directory"),
             ("/dev/zero", r"path: expected a regular .*found a character device"),
             ("/nonexistent/dir/x.npz", r"path: expected an existing .*found no file")]


@pytest.mark.parametrize("loader", ["load", "load_with_metadata", "load_torch"])
@pytest.mark.parametrize("value, regex", PATH_ARGS, ids=[repr(v)[:20] for v, _ in PATH_ARGS])
def test_loader_path_arguments(loader, value, regex):
    check_api("API arguments", (loader, repr(value)), lambda: getattr(rp, loader)(value), match=regex)


CHECKS = [
    ("check_horizon 0", lambda: _checks.check_horizon("horizon", 0), r"horizon: expected an integer in \[1, 1000000\]"),
    ("check_horizon -1", lambda: _checks.check_horizon("horizon", -1), r"found -1"),
    ("check_horizon 1e9", lambda: _checks.check_horizon("horizon", 10 ** 9),
     r"horizon: expected an integer in \[1, 1000000\] \(longer horizons: use the bound's uniform asymptote\), found 1000000000"),
    ("check_horizon 10**100", lambda: _checks.check_horizon("horizon", 10 ** 100), r"found 1000000"),
    ("check_horizon float", lambda: _checks.check_horizon("horizon", 5.0), r"horizon: expected an integer, found 5.0"),
    ("check_horizon bool", lambda: _checks.check_horizon("horizon", True), r"found True"),
    ("check_horizon str", lambda: _checks.check_horizon("horizon", "5"), r"found '5'"),
    ("check_horizon None", lambda: _checks.check_horizon("horizon", None), r"found None"),
    ("check_elements", lambda: _checks.check_elements("T", (10 ** 6, 10 ** 3, 64), what="T x B x n"),
     r"T: expected at most 134217728 array elements \(T x B x n\), found 1000000 x 1000 x 64"),
    ("check_scale", lambda: _checks.check_scale("W", np.array([1e100])), r"W: expected entries of magnitude <= 1.16e\+77"),
    ("check_scale float32", lambda: _checks.check_scale("W", np.array([1e10]), dtype=np.float32),
     r"W: expected entries of magnitude <= 4.29e\+09 \(larger values overflow float32"),
    ("as_generator -1", lambda: _checks.as_generator(-1), r"seed: expected an int >= 0 .*found -1"),
    ("as_generator str", lambda: _checks.as_generator("a"), r"seed: expected an int >= 0 .*found 'a'"),
    ("as_generator float", lambda: _checks.as_generator(1.5), r"seed: expected .*found 1.5"),
    ("as_generator bool", lambda: _checks.as_generator(True), r"seed: expected .*found True"),
    ("as_generator None", lambda: _checks.as_generator(None), r"seed: expected an int or numpy.random.Generator, found None"),
    ("as_generator negative list", lambda: _checks.as_generator([1, -2]), r"seed: expected"),
    ("as_inputs B=0", lambda: _checks.as_inputs(np.zeros((3, 0, M)), M, np.float64),
     r"X: expected at least one sequence \(B >= 1\), found shape \(3, 0, 2\)"),
    ("as_param complex", lambda: _checks.as_param("W", np.ones(2, complex)), r"W: expected a real floating-point array, found dtype complex128"),
    ("as_param bool", lambda: _checks.as_param("W", np.ones(2, bool)), r"found dtype bool"),
    ("as_param None", lambda: _checks.as_param("W", None), r"W: expected an array, found None"),
    ("check_positive nan", lambda: _checks.check_positive("tolerance", float("nan")), r"tolerance: expected a finite number > 0, found nan"),
    ("check_positive str", lambda: _checks.check_positive("tolerance", "1"), r"tolerance: expected a real number, found '1'"),
    ("check_int float", lambda: _checks.check_int("rank", 1.5), r"rank: expected an integer, found 1.5"),
]


@pytest.mark.parametrize("label, fn, regex", CHECKS, ids=[c[0] for c in CHECKS])
def test_checks_helpers(label, fn, regex):
    check_api("API arguments", label, fn, match=regex)


def test_check_horizon_accepts_numpy_ints():
    assert _checks.check_horizon("horizon", np.int64(7)) == 7
    assert _checks.check_horizon("horizon", _checks.MAX_HORIZON) == _checks.MAX_HORIZON
    record("API arguments", "check_horizon np.int64", "answer")


DEFAULT_INPUTS = [
    ("meta list", lambda: rp.default_inputs(_cell(), [1]), r"meta: expected a dict of metadata, found list"),
    ("batch 0", lambda: rp.default_inputs(_cell(), {}, batch=0), r"batch: expected an integer in \[1,"),
    ("T 0", lambda: rp.default_inputs(_cell(), {}, T=0), r"T: expected an integer in \[1,"),
    ("seed -1", lambda: rp.default_inputs(_cell(), {}, seed=-1), r"seed: expected an int >= 0 .*found -1"),
    ("seed None", lambda: rp.default_inputs(_cell(), {}, seed=None), r"seed: expected an int"),
    ("T x B x m", lambda: rp.default_inputs(_cell(), {}, T=10 ** 7, batch=64), r"T: expected at most \d+ array elements"),
    ("memorization no K", lambda: rp.default_inputs(_cell(m=4), {"task": "memorization", "L": 5, "D": 3}),
     r"meta_K: expected a value \(the checkpoint's task 'memorization' needs it\), found the key missing"),
    ("memorization D 1e9", lambda: rp.default_inputs(_cell(m=4), {"task": "memorization", "K": 2, "L": 5, "D": 1e9}),
     r"meta_D: expected an integer in \[0, 134217728\], found 1000000000"),
    ("memorization D inf", lambda: rp.default_inputs(_cell(m=4), {"task": "memorization", "K": 2, "L": 5, "D": float("inf")}),
     r"meta_D: expected an integer, found inf"),
    ("memorization L huge", lambda: rp.default_inputs(_cell(m=4), {"task": "memorization", "K": 2, "L": 10 ** 12, "D": 3}),
     r"meta_L: expected an integer in \[1, 134217728\]"),
    ("kback T huge", lambda: rp.default_inputs(_cell(m=2), {"task": "kback", "K": 2, "k": 1, "T": 10 ** 8}),
     r"meta_T: expected at most"),
    ("task bytes", lambda: rp.default_inputs(_cell(), {"task": b"kback"}), r"meta_task: expected a string, found b'kback'"),
]


@pytest.mark.parametrize("label, fn, regex", DEFAULT_INPUTS, ids=[c[0] for c in DEFAULT_INPUTS])
def test_default_inputs_arguments(label, fn, regex):
    check_api("API arguments", ("default_inputs", label), fn, match=regex)


def _big_cell(scale=1e200, n=N):
    c = _cell(n=n)
    return c.replace(W=c.W * scale)


ANALYSIS = [
    ("ranks string", lambda: rp.analyze_ranks(_cell(), X_OK, ranks="0:4"), r"ranks: expected a sequence of integers, found '0:4'"),
    ("ranks int", lambda: rp.analyze_ranks(_cell(), X_OK, ranks=3), r"ranks: expected a sequence of integers, found 3"),
    ("ranks empty", lambda: rp.analyze_ranks(_cell(), X_OK, ranks=[]), r"ranks: expected at least one rank"),
    ("ranks out of range", lambda: rp.analyze_ranks(_cell(), X_OK, ranks=[5]), r"ranks: expected an integer in \[0, 4\], found 5"),
    ("ranks float", lambda: rp.analyze_ranks(_cell(), X_OK, ranks=[1.5]), r"ranks: expected an integer, found 1.5"),
    ("tier", lambda: rp.analyze_ranks(_cell(), X_OK, tier="exact"), r"tier: expected 'fast' or 'tight', found 'exact'"),
    ("X B=0", lambda: rp.analyze_ranks(_cell(), np.zeros((3, 0, M))), r"X: expected at least one sequence \(B >= 1\)"),
    ("X nan", lambda: rp.analyze_ranks(_cell(), np.full((3, M), np.nan)), r"X: expected finite values, found 6 NaN/Inf"),
    ("X 1e308", lambda: rp.analyze_ranks(_cell(), np.full((3, M), 1e308)), r"X: expected entries of magnitude <= 1.16e\+77"),
    ("W 1e200 (n=64: SVD overflow)", lambda: rp.analyze_ranks(_big_cell(n=64), np.zeros((3, M)), ranks=[8]),
     r"^W: expected entries of magnitude <= 1.16e\+77 \(larger values overflow float64 in the analysis\), found max \|W\|"),
    ("recommend tolerance nan", lambda: rp.recommend_rank(_cell(), X_OK, tolerance=float("nan")), r"tolerance: expected a finite number > 0"),
    ("recommend tolerance 0", lambda: rp.recommend_rank(_cell(), X_OK, tolerance=0), r"tolerance: expected a finite number > 0, found 0"),
    ("recommend tolerance str", lambda: rp.recommend_rank(_cell(), X_OK, tolerance="0.1"), r"tolerance: expected a real number"),
    ("recommend horizon 0", lambda: rp.recommend_rank(_cell(), X_OK, tolerance=0.1, horizon=0), r"horizon: expected an integer in \[1, 5\], found 0"),
    ("recommend horizon 1e9", lambda: rp.recommend_rank(_cell(), X_OK, tolerance=0.1, horizon=10 ** 9), r"horizon: expected an integer in \[1, 5\]"),
    ("recommend method", lambda: rp.recommend_rank(_cell(), X_OK, tolerance=0.1, method="exactly"), r"method: expected 'certified', 'first_order' or 'exact', found 'exactly'"),
    ("recommend tier", lambda: rp.recommend_rank(_cell(), X_OK, tolerance=0.1, tier=3), r"tier: expected 'fast' or 'tight', found 3"),
    ("recommend W 1e200", lambda: rp.recommend_rank(_big_cell(), X_OK, tolerance=0.1), r"W: expected entries of magnitude"),
]


@pytest.mark.parametrize("label, fn, regex", ANALYSIS, ids=[c[0] for c in ANALYSIS])
def test_analysis_arguments(label, fn, regex):
    check_api("API arguments", ("analysis", label), fn, match=regex)


def test_argv_must_be_strings():
    from rnnperturb.report.cli import main
    import io
    import sys
    err = io.StringIO()
    old, sys.stderr = sys.stderr, err
    try:
        code = main(["analyze", 3])
    finally:
        sys.stderr = old
    assert code == 2 and "argv: expected strings, found int 3" in err.getvalue()
    record("API arguments", "main argv int", "error")


# ------------------------------------------------------------------ overflow: never NaN
def test_certified_column_is_capped_not_nan(monkeypatch):
    """A bound whose arithmetic overflows (NaN/Inf) is reported as the sound cap 2 sqrt(n)."""
    import rnnperturb.bounds.trajectory as traj
    real = traj.certified_bound

    def overflowing(cell, other, X, **kw):
        b = np.array(real(cell, other, X, **kw))
        b[1] = np.nan
        b[2] = np.inf
        return b
    monkeypatch.setattr(traj, "certified_bound", overflowing)
    cell = _cell()
    rows = rp.analyze_ranks(cell, X_OK, ranks=[1, 3])
    cap = rank_analysis.sound_cap(cell)
    for r in rows:
        assert r.certified_max == cap
        assert r.certified_max >= r.exact_max
    rec = rp.recommend_rank(cell, X_OK, tolerance=cap * 0.999)
    assert all(np.isfinite(v) for _, v in rec.evidence)
    record("API arguments", "certified NaN -> cap (analyze_ranks, recommend_rank)", "answer")


def test_cli_certified_never_nan_for_large_finite_weights(tmp_path):
    """W x 1e70 (below the scale limit): finite rows, certified >= exact, strict JSON."""
    cell = _cell()
    rp.save(tmp_path / "big.npz", cell.replace(W=cell.W * 1e70))
    np.savez(tmp_path / "X.npz", X=X_OK)
    from test_fuzz_common import finite_rows

    def answer(d):
        finite_rows(d)
        for row in d["rows"]:
            assert row["certified_max"] >= row["exact_max"]
            assert row["certified_max"] <= rank_analysis.sound_cap(cell)
    check_cli("API arguments", ["analyze", tmp_path / "big.npz", "--inputs", tmp_path / "X.npz",
                                "--json"], answer=answer, key="W x 1e70 CLI")


def test_core_certified_bound_never_nan():
    """Where the bound's arithmetic overflows it returns the sound trivial cap, never NaN."""
    cell = _big_cell(1e200, n=16)
    small = rp.truncate_svd(cell, rank=4)
    with np.errstate(all="ignore"):
        b = rp.certified_bound(cell, small, np.random.default_rng(0).standard_normal((20, 2, M)))
    assert np.all(np.isfinite(b)) and np.all(b <= rank_analysis.sound_cap(cell))


def test_core_global_bound_horizon_cap():
    """global_bound(horizon=10**9) is refused at once (it ran for hours before issue 15)."""
    cell = _cell()
    small = rp.truncate_svd(cell, rank=2)

    def alarm(*_):
        raise TimeoutError("global_bound(horizon=10**9) did not refuse the horizon within 3 s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(3)
    try:
        with pytest.raises(ValueError, match=r"horizon: expected an integer in \[1, 1000000\]"):
            rp.global_bound(cell, small, horizon=10 ** 9)
        record("API arguments", "global_bound horizon 10**9", "error")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_core_truncate_svd_overflow_message():
    """A finite but huge W is never reported as 'W: expected finite values'."""
    cell = _big_cell(1e200, n=64)
    with np.errstate(all="ignore"):
        try:
            rp.truncate_svd(cell, rank=8)
        except ValueError as exc:
            assert "expected finite values" not in str(exc), str(exc)


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_core_bounds_never_nan_for_huge_weights(kind):
    """global_bound, set_bound and noise_response stay finite (or at the sound cap) when the
    recurrent weights are near the float range."""
    c0 = rp.random_cell(kind, 8, M, seed=0)
    cell = c0.replace(**{k: v * 1e200 for k, v in c0.recurrent.items()})
    small = rp.truncate_svd(cell, rank=3)
    X = np.random.default_rng(0).standard_normal((12, 2, M))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        G = rp.global_bound(cell, small, horizon=12, full_output=True)
        S = rp.set_bound(cell, rp.sets.Ball(radius=1e-3), X)
        N = rp.noise_response(cell, X, std=1e-3)
    cap = rank_analysis.sound_cap(cell)
    assert np.all(np.isfinite(G.bound)) and np.all(G.bound <= cap) and G.vacuous
    assert np.all(np.isfinite(S)) and np.all(S <= cap)
    assert np.all(np.isfinite(N))
