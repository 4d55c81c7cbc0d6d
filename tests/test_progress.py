"""Progress bars (rnnperturb.report.progress, on tqdm): quiet unless on a terminal, never fatal."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from rnnperturb import progress
from rnnperturb.report.progress import ENV, end_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


class Tty(io.StringIO):
    """An in-memory stream that says it is a terminal."""

    def isatty(self):
        return True


class Failing(io.StringIO):
    """A stream whose write raises ``exc`` after ``ok`` successful writes; counts attempts."""

    def __init__(self, exc, ok=0, tty=False):
        super().__init__()
        self.exc, self.ok, self.tty, self.attempts = exc, ok, tty, 0

    def write(self, s):
        self.attempts += 1
        if self.attempts > self.ok:
            raise self.exc
        return super().write(s)

    def isatty(self):
        return self.tty


class FailingFlush(io.StringIO):
    def flush(self):
        raise OSError(28, "No space left on device")


def closed_stream():
    s = io.StringIO()
    s.close()
    return s


ERRORS = {
    "ENOSPC": lambda: OSError(28, "No space left on device"),
    "EPIPE": lambda: BrokenPipeError(32, "Broken pipe"),
    "EIO": lambda: OSError(5, "Input/output error"),
    "ValueError closed": lambda: ValueError("I/O operation on closed file"),
    "RuntimeError": lambda: RuntimeError("anything"),
}


# ---------------------------------------------------------------------------- when it draws
def test_non_tty_stream_gets_nothing_by_default():
    s = io.StringIO()
    assert list(progress(range(50), desc="ranks", stream=s)) == list(range(50))
    assert s.getvalue() == ""


def test_default_stream_is_stderr_and_quiet_when_captured(capsys):
    assert list(progress(range(7), desc="x")) == list(range(7))
    assert capsys.readouterr().err == ""          # pytest's capture is not a terminal


def test_terminal_gets_a_carriage_return_bar_with_total_and_desc():
    s = Tty()
    assert list(progress(iter(range(3)), total=10, desc="rank sweep", stream=s)) == [0, 1, 2]
    out = s.getvalue()
    assert out.startswith("\rrank sweep:") and out.endswith("\n")
    assert "3/10" in out and "0/10" in out         # total passed through (the iterator has no len)


def test_total_from_len_and_no_total():
    s = Tty()
    list(progress(range(4), desc="d", stream=s))
    assert "4/4" in s.getvalue()
    s = Tty()
    list(progress(iter(range(4)), desc="d", stream=s))      # no len, no total: a counter
    assert "d: 4it [" in s.getvalue() and "%" not in s.getvalue()


def test_force_writes_whole_lines_on_a_log():
    s = io.StringIO()
    assert list(progress(range(5), desc="ranks", stream=s, force=True)) == list(range(5))
    out = s.getvalue()
    assert "\r" not in out and out.endswith("\n")
    lines = out.splitlines()
    assert lines[0].startswith("ranks:") and "0/5" in lines[0]
    assert "5/5" in lines[-1] and "100%" in lines[-1]


@pytest.mark.parametrize("value, drawn", [("1", True), ("on", True), ("0", False), ("off", False),
                                          ("", False)])
def test_environment_variable(monkeypatch, value, drawn):
    monkeypatch.setenv(ENV, value)
    s = io.StringIO()
    assert list(progress(range(3), desc="d", stream=s)) == [0, 1, 2]
    assert bool(s.getvalue()) is drawn


def test_env_off_silences_even_a_terminal_and_force(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    s = Tty()
    list(progress(range(3), stream=s, force=True))
    assert s.getvalue() == ""


@pytest.mark.parametrize("stream", [Tty, io.StringIO])
def test_quiet_wins(monkeypatch, stream):
    monkeypatch.setenv(ENV, "1")
    s = stream()
    assert list(progress(range(3), stream=s, quiet=True, force=True)) == [0, 1, 2]
    assert s.getvalue() == ""


def test_jupyter_stream_counts_as_interactive():
    cls = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})
    s = cls()                                       # ipykernel's stderr: isatty() is False
    list(progress(range(3), desc="nb", stream=s))
    assert s.getvalue().startswith("\rnb:") and "3/3" in s.getvalue()


# ------------------------------------------------------------------------- never fatal
@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "forced log"])
@pytest.mark.parametrize("ok", [0, 1], ids=["fails at once", "fails later"])
@pytest.mark.parametrize("err", list(ERRORS))
def test_write_errors_turn_the_bar_off(err, ok, tty):
    s = Failing(ERRORS[err](), ok=ok, tty=tty)
    items = list(progress(range(1000), desc="d", stream=s, force=not tty))
    assert items == list(range(1000))
    assert s.attempts == ok + 1                     # one failed write, then silence


@pytest.mark.parametrize("make", [closed_stream, FailingFlush], ids=["closed file", "flush fails"])
def test_closed_stream_and_failing_flush(make):
    s = make()
    assert list(progress(range(20), stream=s, force=True)) == list(range(20))


def test_missing_stderr(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    assert list(progress(range(5), force=True)) == list(range(5))


def test_stream_without_isatty():
    class Bare:
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s
    b = Bare()
    assert list(progress(range(3), stream=b)) == [0, 1, 2] and b.text == ""
    assert list(progress(range(3), stream=b, force=True)) == [0, 1, 2] and "3/3" in b.text


def test_errors_of_the_iterable_propagate_and_leave_no_stale_bar():
    def gen():
        yield 1
        raise KeyError("from the iterable")
    s = Tty()
    with pytest.raises(KeyError):
        for _ in progress(gen(), total=5, desc="d", stream=s):
            pass
    before = s.getvalue()
    assert not before.endswith("\n")                 # the half-drawn line is left open ...
    end_line(s)
    assert s.getvalue() == before + "\n"             # ... for end_line to close
    end_line(s)
    assert s.getvalue() == before + "\n"             # once


def test_consumer_break_and_exception():
    s = Tty()
    for i in progress(range(100), stream=s):
        if i == 3:
            break
    with pytest.raises(ZeroDivisionError):
        for i in progress(range(100), stream=s):
            1 / (i - 2)
    assert "100/100" not in s.getvalue()


def test_end_line_after_a_finished_bar_writes_nothing():
    s = Tty()
    list(progress(range(3), stream=s))
    before = s.getvalue()
    end_line(s)
    assert s.getvalue() == before


# ------------------------------------------------------------------------ real processes
def test_cli_on_a_pipe_writes_no_progress_and_no_widgets():
    ck = os.path.join("validation", "checkpoints", "elman_memorization_D10.npz")
    code = ("import sys, runpy; sys.argv = ['rnnperturb', 'analyze', %r, '--ranks', '0:64:16'];"
            "from rnnperturb.report import cli\n"
            "try:\n    rc = cli.main(sys.argv[1:])\nfinally:\n"
            "    assert 'ipywidgets' not in sys.modules and 'tqdm.auto' not in sys.modules\n"
            "sys.exit(rc)" % ck)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(ENV, None)
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "" and "\r" not in p.stdout
