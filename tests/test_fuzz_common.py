"""Shared helpers of the hostile-input fuzz suite (tests/test_fuzz_*.py), issue 15.

Every fuzz case goes through :func:`check_cli` (the command line, in-process) or
:func:`check_api` (a library call) and is tallied by category and outcome. The
table of distinct cases is printed at the end of the run when the environment
variable ``RNNPERTURB_FUZZ_TABLE`` is set (to a file path, or ``-`` for stdout):

    RNNPERTURB_FUZZ_TABLE=- python -m pytest -q -p no:cacheprovider tests/test_fuzz_*.py

Outcomes: ``error`` (exit 2 / ValueError with a one-line message naming the
argument), ``answer`` (exit 0 with a correct, finite, strict-JSON answer),
``io-error`` (exit 1 with one line: output could not be written), ``sigpipe``
(exit 141, silent), ``interrupted`` (exit 130, one line).
"""
from __future__ import annotations

import atexit
import io
import json
import os
import re
import sys
from collections import defaultdict

import numpy as np
import pytest

from rnnperturb.report.cli import main

CATEGORIES = ("files", "torch files", "options", "API arguments", "streams", "signals")

_SEEN: dict = defaultdict(dict)      # category -> {case key: outcome}


def record(category: str, key, outcome: str) -> None:
    assert category in CATEGORIES, category
    _SEEN[category][repr(key)] = outcome


def table() -> str:
    outcomes = sorted({o for d in _SEEN.values() for o in d.values()})
    lines = ["| category | distinct cases | " + " | ".join(outcomes) + " |",
             "|---|---|" + "---|" * len(outcomes)]
    total = 0
    for cat in CATEGORIES:
        d = _SEEN.get(cat, {})
        total += len(d)
        counts = [sum(1 for o in d.values() if o == k) for k in outcomes]
        lines.append(f"| {cat} | {len(d)} | " + " | ".join(map(str, counts)) + " |")
    lines.append(f"| **total** | **{total}** | " + " | ".join(
        str(sum(1 for d in _SEEN.values() for o in d.values() if o == k)) for k in outcomes)
        + " |")
    return "\n".join(lines)


def total_cases() -> int:
    return sum(len(d) for d in _SEEN.values())


@atexit.register
def _dump():  # pragma: no cover - reporting only
    dest = os.environ.get("RNNPERTURB_FUZZ_TABLE")
    if not dest or not _SEEN:
        return
    text = table() + "\n"
    if dest == "-":
        sys.__stdout__.write("\nfuzz cases by category (issue 15)\n" + text)
    else:
        with open(dest, "w") as fh:
            fh.write(text)


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err, err
    assert "internal error" not in err, err


def run_cli(argv):
    """Run ``main(argv)`` in-process; return (code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main([str(a) for a in argv])
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


def strict_json(text: str):
    """Parse JSON, refusing NaN/Infinity (strict RFC 8259)."""
    def bad(c):
        raise AssertionError(f"non-strict JSON constant {c!r} in output")
    return json.loads(text, parse_constant=bad)


def check_cli(category: str, argv, *, name: str | None = None, match: str | None = None,
              answer=None, key=None):
    """Run the CLI and check its contract.

    Either exit 2 with exactly one stderr line ``rnnperturb: ...`` that contains
    ``name`` (the argument) and matches ``match`` — or, when ``answer`` is given,
    exit 0 and ``answer(stdout)`` passes. Records the case; returns (code, out, err).
    """
    code, out, err = run_cli(argv)
    _no_traceback(err)
    if answer is not None and code == 0:
        if "--json" in argv:
            data = strict_json(out)
            answer(data)
        else:
            assert "nan" not in out.lower().split(), out
            answer(out)
        record(category, key if key is not None else tuple(map(str, argv)), "answer")
        return code, out, err
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnperturb: "), err
    assert out == "", out
    if name is not None:
        assert name in lines[0], (name, lines[0])
    if match is not None:
        assert re.search(match, lines[0]), (match, lines[0])
    record(category, key if key is not None else tuple(map(str, argv)), "error")
    return code, out, err


def check_api(category: str, key, fn, *, match: str):
    """``fn()`` must raise a ValueError whose message matches ``match`` (names the argument)."""
    with pytest.raises(ValueError, match=match) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg.strip(), msg
    record(category, key, "error")
    return msg


def finite_rows(data) -> None:
    """JSON rows: every number finite (strict JSON already refuses NaN/Infinity)."""
    for row in data["rows"]:
        for k in ("exact_max", "first_order_max", "certified_max", "compression_ratio"):
            assert row[k] is not None and np.isfinite(row[k]), (k, row)


def test_categories_are_known():
    assert set(CATEGORIES) >= set(_SEEN)
