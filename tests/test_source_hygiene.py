"""The project's Python sources compile without warnings.

An invalid escape sequence in a non-raw docstring (``"\\|"`` in a ``:math:`` role, say)
compiles with a warning on import today and will be a syntax error in a later Python;
raw ``r\"\"\"`` docstrings are the convention here.
"""
import pathlib
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TREES = ("rnnperturb", "benchmarks", "validation", "derivations", "paper_figs", "tests")


def _compile_strict(text, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(text, name, "exec")


def test_an_invalid_escape_is_caught():
    with pytest.raises((SyntaxWarning, DeprecationWarning, SyntaxError), match="escape"):
        _compile_strict('def f():\n    """:math:`\\|x\\|`"""\n', "<example>")
    _compile_strict('def f():\n    r""":math:`\\|x\\|`"""\n', "<example>")


def test_sources_compile_without_warnings():
    files = [p for t in TREES for p in sorted((ROOT / t).rglob("*.py"))]
    assert len(files) > 50
    bad = []
    for p in files:
        try:
            _compile_strict(p.read_text(encoding="utf-8"), str(p))
        except (SyntaxWarning, DeprecationWarning, SyntaxError) as e:
            bad.append(f"{p.relative_to(ROOT)}: {e}")
    assert not bad, "\n".join(bad)
