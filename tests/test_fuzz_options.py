"""Fuzz: command-line option strings (issue 15): a clean, named error or a correct answer."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from rnnperturb.report.cli import parse_ranks
from test_fuzz_common import check_cli, finite_rows, record

N, M, T = 4, 2, 6


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("opts")
    rp.save(d / "e.npz", random_cell("elman", N, M, spectral_norm=1.1, seed=0))
    np.savez(d / "X.npz", X=np.random.default_rng(0).standard_normal((T, 2, M)))
    return str(d / "e.npz"), str(d / "X.npz")


def ranks_of(expected):
    def answer(d):
        finite_rows(d)
        assert [r["rank"]["W"] for r in d["rows"]] == expected
    return answer


RANKS_ERR = [
    ("", r"found ''"), (" ", r"found ' '"), (",", r"found an empty item"), ("0,,2", r"empty item"),
    ("1,", r"empty item"), ("0:2000000", r"expected ranks in \[0, 4\], found \[2000000\]"),
    ("0:100000000", r"found \[100000000\]"), ("64:0:-8", r"found \[64\]"),
    ("0:8:2:99", r"at most three fields START:STOP:STEP, found '0:8:2:99' with 4 fields"),
    ("0:4:0", r"non-zero STEP"), ("4:0", r"empty range '4:0'"), ("0:4:-1", r"empty range"),
    ("a", r"found 'a'"), ("1.5", r"found '1.5'"), ("1e3", r"found '1e3'"), ("-1", r"found \[-1\]"),
    ("0x10", r"found '0x10'"), ("9" * 5000, r"found '9999"), ("nan", r"found 'nan'"),
    ("1;2", r"found '1;2'"), ("0:", r"found '0:'"), (":4", r"found ':4'"), ("::", r"found '::'"),
    ("x" * 20000, r"at most 10000 characters, found 20000"), ("5", r"found \[5\]"),
    ("0:5", r"found \[5\]"), ("2:-1:-1", r"found \[-1\]"), ("1:2:x", r"found '1:2:x'"),
]


@pytest.mark.parametrize("text, regex", RANKS_ERR, ids=[repr(t[0])[:20] for t in RANKS_ERR])
def test_bad_ranks(files, text, regex):
    f, X = files
    check_cli("options", ["analyze", f, "--inputs", X, "--ranks", text], name="--ranks", match=regex)


RANKS_OK = [("4:0:-2", [0, 2, 4]), ("0:4:2", [0, 2, 4]), (" 1 , 2 ", [1, 2]), ("+2", [2]),
            ("4:4", [4]), ("2:2:-1", [2]), ("3,1,3", [1, 3]), ("0:4:100", [0]), ("4:0:-3", [1, 4]),
            ("0 : 4 : 3", [0, 3])]


@pytest.mark.parametrize("text, expected", RANKS_OK, ids=[t[0] for t in RANKS_OK])
def test_ranks_correct_answers(files, text, expected):
    f, X = files
    check_cli("options", ["analyze", f, "--inputs", X, "--ranks", text, "--json"],
              answer=ranks_of(expected))


OTHER_ERR = [
    (["--inputs", ""], "--inputs", r"found ''"),
    (["--inputs", "  "], "--inputs", r"found '  '"),
    (["--ranks="], "--ranks", r"found ''"),
    (["--tolerance", "nan", "--horizon", "3"], "--tolerance", r"finite number > 0, found nan"),
    (["--tolerance", "inf", "--horizon", "3"], "--tolerance", r"found inf"),
    (["--tolerance=-inf", "--horizon", "3"], "--tolerance", r"found -inf"),
    (["--tolerance", "-inf", "--horizon", "3"], "--tolerance", r"argument --tolerance: expected one argument"),
    (["--tolerance", "-1", "--horizon", "3"], "--tolerance", r"found -1.0"),
    (["--tolerance", "0", "--horizon", "3"], "--tolerance", r"found 0.0"),
    (["--tolerance", "1e400", "--horizon", "3"], "--tolerance", r"found inf"),
    (["--tolerance", "abc", "--horizon", "3"], "--tolerance", r"invalid float value: 'abc'"),
    (["--tolerance", "", "--horizon", "3"], "--tolerance", r"invalid float value: ''"),
    (["--tolerance", "0.1"], "--tolerance/--horizon", r"expected both or neither"),
    (["--horizon", "3"], "--tolerance/--horizon", r"expected both or neither"),
    (["--tolerance", "0.1", "--horizon", "0"], "--horizon", r"integer >= 1, found 0"),
    (["--tolerance", "0.1", "--horizon", "-5"], "--horizon", r"found -5"),
    (["--tolerance", "0.1", "--horizon", "1.5"], "--horizon", r"invalid int value: '1.5'"),
    (["--tolerance", "0.1", "--horizon", "10**9"], "--horizon", r"invalid int value"),
    (["--tolerance", "0.1", "--horizon", "1000000000"], "--horizon",
     r"expected an integer in \[1, 6\] \(the number of input steps\), found 1000000000"),
    (["--tolerance", "0.1", "--horizon", "7"], "--horizon", r"in \[1, 6\]"),
    (["--tolerance", "0.1", "--horizon", ""], "--horizon", r"invalid int value: ''"),
    (["--seed", "-1"], "--seed", r"expected an integer >= 0, found -1"),
    (["--seed", "1.5"], "--seed", r"invalid int value"),
    (["--seed", "abc"], "--seed", r"invalid int value"),
    (["--seed", ""], "--seed", r"invalid int value"),
    (["--tier", "medium"], "--tier", r"invalid choice: 'medium'"),
    (["--tier", ""], "--tier", r"invalid choice"),
    (["--nonlinearity", "relu"], "--nonlinearity", r"expected 'tanh'"),
    (["--nonlinearity", ""], "--nonlinearity", r"found ''"),
    (["--nonlinearity", "TANH"], "--nonlinearity", r"found 'TANH'"),
    (["--foo"], "--foo", r"unrecognized arguments: --foo"),
    (["extra"], "extra", r"unrecognized arguments: extra"),
    (["--ranks"], "--ranks", r"expected one argument"),
    (["--inputs"], "--inputs", r"expected one argument"),
]


@pytest.mark.parametrize("extra, name, regex", OTHER_ERR, ids=[" ".join(c[0]) or "''" for c in OTHER_ERR])
def test_bad_options(files, extra, name, regex):
    f, X = files
    argv = ["analyze", f, "--ranks", "1", *extra]
    if "--inputs" not in extra:
        argv += ["--inputs", X]
    check_cli("options", argv, name=name, match=regex)


COMMAND_ERR = [
    ([], r"expected a command: analyze"), (["frobnicate"], r"invalid choice: 'frobnicate'"),
    (["analyze"], r"the following arguments are required: file"),
    (["analyze", ""], r"FILE: expected a path .*found ''"),
    (["analyze", "-"], r"FILE: expected an \.npz checkpoint or a PyTorch"),
    (["analyze", "model.onnx"], r"FILE: expected an \.npz checkpoint"),
    (["analyze", "noext"], r"FILE: expected an \.npz checkpoint"),
    (["analyze", "a\x00b.npz"], r"FILE: expected a path without NUL bytes"),
    (["--version"], r"unrecognized arguments|invalid choice"),
]


@pytest.mark.parametrize("argv, regex", COMMAND_ERR, ids=[repr(c[0]) for c in COMMAND_ERR])
def test_bad_commands(argv, regex):
    check_cli("options", argv, match=regex, name="rnnperturb")


OTHER_OK = [
    (["--ranks", "1", "--ranks", "2"], lambda d: [r["rank"]["W"] for r in d["rows"]] == [2]),
    (["--ranks", "1", "--tol", "1e-300", "--hor", "3"],
     lambda d: d["recommendation"]["rank"] is None and d["recommendation"]["certified_max"] is None),
    (["--ranks", "1", "--tolerance", "1e300", "--horizon", "6"],
     lambda d: d["recommendation"]["rank"] == {"W": 0}),
    (["--ranks", "0", "--seed", str(2 ** 70)], lambda d: len(d["rows"]) == 1),
    (["--ranks", "0", "--tier", "fast"], lambda d: d["rows"][0]["certified_max"] >= d["rows"][0]["exact_max"]),
    (["--ranks", "0", "--nonlinearity", "tanh"], lambda d: len(d["rows"]) == 1),
]


@pytest.mark.parametrize("extra, check", OTHER_OK, ids=[" ".join(c[0]) for c in OTHER_OK])
def test_options_correct_answers(files, extra, check):
    f, X = files

    def answer(d):
        finite_rows(d)
        assert check(d), d
    check_cli("options", ["analyze", f, "--inputs", X, "--json", *extra], answer=answer)


# ------------------------------------------------------------------------------ hypothesis
_INT = re.compile(r"^\s*[+-]?\d+\s*$")


def reference_ranks(text: str, n: int):
    """An independent statement of the --ranks grammar: a sorted list, or None for an error."""
    if not text.strip() or len(text) > 10_000:
        return None
    out = set()
    for item in text.split(","):
        if not item.strip():
            return None
        fields = item.split(":")
        if len(fields) > 3 or not all(_INT.match(f) for f in fields):
            return None
        v = [int(f) for f in fields]
        if not all(0 <= x <= n for x in v[:2]):
            return None
        if len(v) == 1:
            out.add(v[0])
            continue
        a, b, s = v[0], v[1], (v[2] if len(v) == 3 else 1)
        if s == 0 or (b - a) * s < 0:
            return None
        x = a
        while (s > 0 and x <= b) or (s < 0 and x >= b):
            out.add(x)
            x += s
    return sorted(out)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.one_of(
    st.text(alphabet="0123456789:,- +", max_size=14),
    st.lists(st.one_of(st.integers(-3, 70).map(str),
                       st.tuples(st.integers(-2, 70), st.integers(-2, 70), st.integers(-9, 9))
                       .map(lambda t: f"{t[0]}:{t[1]}:{t[2]}"),
                       st.tuples(st.integers(-2, 70), st.integers(-2, 70)).map(lambda t: f"{t[0]}:{t[1]}")),
             min_size=1, max_size=4).map(",".join)))
def test_hypothesis_ranks_grammar(text):
    """parse_ranks agrees with an independent reference, or raises a named ValueError."""
    n = 64
    want = reference_ranks(text, n)
    if want is None:
        with pytest.raises(ValueError, match=r"^--ranks: expected ") as info:
            parse_ranks(text, n)
        assert len(str(info.value)) < 300
        record("options", ("--ranks", text), "error")
    else:
        assert parse_ranks(text, n) == want
        record("options", ("--ranks", text), "answer")


_NUM_TEXT = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.integers(-5, 12).map(str),
                      st.sampled_from(["", " ", "nan", "-0", "1e-320", "0x1", "1_0", "٣", "abc"]))


@settings(max_examples=70, deadline=None, suppress_health_check=list(HealthCheck))
@given(tol=_NUM_TEXT, hor=_NUM_TEXT, seed=_NUM_TEXT)
def test_hypothesis_numeric_options(files, tol, hor, seed):
    """--tolerance/--horizon/--seed strings: exit 0 exactly when every value is valid."""
    f, X = files
    argv = ["analyze", f, "--inputs", X, "--ranks", "1", "--json",
            "--tolerance", tol, "--horizon", hor, "--seed", seed]

    def as_float(s):
        try:
            return float(s)
        except ValueError:
            return None

    def as_int(s):
        try:
            return int(s)
        except ValueError:
            return None
    t, h, sd = as_float(tol), as_int(hor), as_int(seed)
    valid = (t is not None and np.isfinite(t) and t > 0 and h is not None and 1 <= h <= T
             and sd is not None and sd >= 0)
    key = ("numeric options", tol, hor, seed)
    if valid:
        def answer(d):
            finite_rows(d)
            assert d["recommendation"]["horizon"] == h
        check_cli("options", argv, answer=answer, key=key)
    else:
        check_cli("options", argv, match=r"--tolerance|--horizon|--seed", key=key)
