"""Fuzz: broken streams and signals (issue 15).

Subprocess cases (real file descriptors, pipes, /dev/full, SIGINT) are started together in
one module fixture so that they run in parallel; in-process cases use fake streams.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from rnnperturb.report import cli
from rnnperturb.report.progress import progress
from test_fuzz_common import record, run_cli

N, M = 4, 2
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = f"{sys.executable} -m rnnperturb analyze"

# label -> (shell command with {f}/{x}/{bad}, expected exit status(es), check of (stdout, stderr))
SHELL = {
    "stdout | true (broken pipe)": ("{py} {f} --inputs {x} --quiet | true; exit ${{PIPESTATUS[0]}}",
                                    (141,), lambda o, e: e == ""),
    "--json | true": ("{py} {f} --inputs {x} --json | true; exit ${{PIPESTATUS[0]}}", (141,), lambda o, e: e == ""),
    "--help | true": ("{py} --help | true; exit ${{PIPESTATUS[0]}}", (141, 0), lambda o, e: e == ""),
    "--json | head -c 1": ("{py} {f} --inputs {x} --json | head -c 1; exit ${{PIPESTATUS[0]}}",
                           (0, 141), lambda o, e: o == "{" and e == ""),
    "stdout > /dev/full": ("{py} {f} --inputs {x} --quiet > /dev/full", (1,),
                           lambda o, e: e.splitlines() == ["rnnperturb: error: stdout: expected to write the "
                                                           "output, found an error (No space left on device)"]),
    "--json > /dev/full": ("{py} {f} --inputs {x} --json > /dev/full", (1,), lambda o, e: "No space left" in e),
    "--help > /dev/full": ("{py} --help > /dev/full", (1,), lambda o, e: "No space left" in e),
    "stdout closed": ("{py} {f} --inputs {x} --quiet >&-", (1,),
                      lambda o, e: e.splitlines() == ["rnnperturb: error: stdout: expected a writable standard "
                                                      "output, found it closed (nothing was computed)"]),
    "stdout and stderr closed": ("{py} {f} --inputs {x} >&- 2>&-", (1,), lambda o, e: True),
    "stderr closed, progress on": ("{py} {f} --inputs {x} 2>&-", (0,), lambda o, e: "trajectories:" in o),
    "stderr full, progress on": ("{py} {f} --inputs {x} 2>/dev/full", (0,), lambda o, e: "trajectories:" in o),
    "stderr closed, bad input": ("{py} {bad} 2>&-", (2,), lambda o, e: o == ""),
    "stderr full, bad input": ("{py} {bad} 2>/dev/full", (2,), lambda o, e: o == ""),
    "stdin closed": ("{py} {f} --inputs {x} --quiet <&-", (0,), lambda o, e: "trajectories:" in o),
    "FIFO as FILE": ("{py} {fifo} --quiet", (2,), lambda o, e: "found a FIFO (named pipe)" in e),
    "FIFO as --inputs": ("{py} {f} --inputs {fifo} --quiet", (2,), lambda o, e: "found a FIFO (named pipe)" in e),
    "SIGTERM before start": ("kill -TERM $$; {py} {f}", (143, -15), lambda o, e: True),
}
# the default run starts only these (each subprocess pays the package import); the other
# cases repeat in-process ones below and run with RNNPERTURB_FUZZ_ALL_STREAMS=1
_FAST = {"stdout | true (broken pipe)", "--json | head -c 1", "stdout > /dev/full", "--help > /dev/full",
         "stdout closed", "stderr closed, progress on", "stderr full, progress on",
         "stderr full, bad input", "FIFO as FILE"}
if not os.environ.get("RNNPERTURB_FUZZ_ALL_STREAMS"):
    SHELL = {k: v for k, v in SHELL.items() if k in _FAST}


@pytest.fixture(scope="module")
def shell_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("streams")
    f, x = d / "e.npz", d / "X.npz"
    rp.save(f, random_cell("elman", N, M, spectral_norm=1.1, seed=0))
    np.savez(x, X=np.random.default_rng(0).standard_normal((6, 2, M)))
    fifo = d / "fifo.npz"
    os.mkfifo(fifo)
    subs = dict(py=PY, f=f, x=x, bad=d / "missing.npz", fifo=fifo,
                ck=os.path.join(REPO, "validation", "checkpoints", "elman_memorization_D10.npz"))
    procs = {}
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for label, (cmd, _, _) in SHELL.items():
        procs[label] = subprocess.Popen(["bash", "-c", cmd.format(**subs)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    out = {}
    for label, p in procs.items():
        try:
            o, e = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:   # a hang is a failure, not a stuck suite
            p.kill()
            o, e = p.communicate()
            out[label] = ("hang", o, e)
            continue
        out[label] = (p.returncode, o, e)
    return out


@pytest.mark.parametrize("label", list(SHELL))
def test_stream_case(shell_results, label):
    code, out, err = shell_results[label]
    _, codes, check = SHELL[label]
    assert code != "hang", f"{label}: hung"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert code in codes, (label, code, out, err)
    assert len(err.strip().splitlines()) <= 1 or "progress" in label, err
    assert check(out, err), (label, out, err)
    record("signals" if "SIG" in label else "streams", label,
           {0: "answer", 1: "io-error", 2: "error", 141: "sigpipe"}.get(code, "signal"))


def _sigint_run(args, *, second=False):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               RNNPERTURB_PROGRESS="1")   # stderr is a pipe: force the bar, the sign the run started
    p = subprocess.Popen([sys.executable, "-m", "rnnperturb", "analyze", *args], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.set_blocking(p.stderr.fileno(), False)
    seen = b""
    t0 = time.time()
    while time.time() - t0 < 60 and b"ranks:" not in seen:   # wait until the analysis runs
        try:
            chunk = p.stderr.read()
        except (BlockingIOError, TypeError):
            chunk = None
        seen += chunk or b""
        time.sleep(0.02)
    assert b"ranks:" in seen, "the analysis never started"
    p.send_signal(signal.SIGINT)
    if second:
        time.sleep(0.01)
        p.send_signal(signal.SIGINT)
    os.set_blocking(p.stderr.fileno(), True)
    out, err = p.communicate(timeout=60)
    return p.returncode, out.decode(), (seen + err).decode()


@pytest.mark.parametrize("second", [False, True], ids=["one Ctrl-C", "two Ctrl-C"])
def test_sigint_one_line_exit_130(second):
    ck = os.path.join("validation", "checkpoints", "elman_memorization_D10.npz")
    code, out, err = _sigint_run([ck], second=second)
    assert code == 130, (code, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.rstrip().splitlines()[-1] == "rnnperturb: interrupted"
    assert out == ""
    record("signals", ("SIGINT during the analysis", second), "interrupted")


# ------------------------------------------------------------------------------ in-process
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("inproc")
    rp.save(d / "e.npz", random_cell("elman", N, M, seed=0))
    np.savez(d / "X.npz", X=np.random.default_rng(0).standard_normal((6, 2, M)))
    return ["analyze", str(d / "e.npz"), "--inputs", str(d / "X.npz")]


class _Failing(io.StringIO):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def write(self, s):
        raise self.exc


def _run_with(argv, stdout=None, stderr=None):
    old = sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    sys.stdout = out if stdout == "capture" or stdout is None else stdout
    sys.stderr = err if stderr is None else stderr
    try:
        code = cli.main(argv)
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


INPROC = [
    ("stdout BrokenPipeError", dict(stdout=_Failing(BrokenPipeError(32, "Broken pipe"))), 141, ""),
    ("stdout ENOSPC", dict(stdout=_Failing(OSError(28, "No space left on device"))), 1,
     "rnnperturb: error: stdout: expected to write the output, found an error (No space left on device)\n"),
    ("stdout EBADF", dict(stdout=_Failing(OSError(9, "Bad file descriptor"))), 1,
     "rnnperturb: error: stdout: expected to write the output, found an error (Bad file descriptor)\n"),
    ("stdout closed file", dict(stdout="closed"), 1, "rnnperturb: error: stdout: expected to write the output"),
    ("stdout None", dict(stdout=None, none_out=True), 1,
     "rnnperturb: error: stdout: expected a writable standard output, found it closed (nothing was computed)\n"),
]


@pytest.mark.parametrize("label, kw, code, err_start", INPROC, ids=[c[0] for c in INPROC])
def test_inprocess_stdout(small, label, kw, code, err_start):
    kw = dict(kw)
    if kw.pop("none_out", False):
        kw["stdout"] = None
        old = sys.stdout
        err = io.StringIO()
        sys.stdout, old_err = None, sys.stderr
        sys.stderr = err
        try:
            got = cli.main(small + ["--quiet"])
        finally:
            sys.stdout, sys.stderr = old, old_err
        e = err.getvalue()
    else:
        if kw.get("stdout") == "closed":
            s = io.StringIO()
            s.close()
            kw["stdout"] = s
        got, _, e = _run_with(small + ["--quiet"], **kw)
    assert got == code
    assert e.startswith(err_start), e
    assert "Traceback" not in e
    record("streams", ("in-process", label), {1: "io-error", 141: "sigpipe"}[code])


@pytest.mark.parametrize("label, stderr", [
    ("stderr None", "none"), ("stderr ENOSPC", _Failing(OSError(28, "No space left on device"))),
    ("stderr EPIPE", _Failing(BrokenPipeError(32, "Broken pipe"))), ("stderr closed", "closed"),
    ("stderr raises ValueError", _Failing(ValueError("I/O operation on closed file")))])
@pytest.mark.parametrize("bad", [False, True], ids=["good run", "bad input"])
def test_inprocess_stderr_never_kills_the_run(small, label, stderr, bad):
    if stderr == "none":
        stderr = None
    elif stderr == "closed":
        stderr = io.StringIO()
        stderr.close()
    argv = small + (["--ranks", "99"] if bad else [])   # progress on (no --quiet)
    old = sys.stdout, sys.stderr
    out = io.StringIO()
    sys.stdout, sys.stderr = out, stderr
    try:
        code = cli.main(argv)
    finally:
        sys.stdout, sys.stderr = old
    if bad:
        assert code == 2 and out.getvalue() == ""
    else:
        assert code == 0 and "trajectories:" in out.getvalue()
    record("streams", ("in-process", label, bad), "error" if bad else "answer")


def test_progress_survives_any_stream():
    for stream in (_Failing(OSError(28, "full")), _Failing(RuntimeError("x"))):
        assert list(progress(range(5), stream=stream)) == list(range(5))
    record("streams", "progress() on failing streams", "answer")


@pytest.mark.parametrize("where", ["load", "analysis", "output"])
def test_inprocess_keyboard_interrupt(small, monkeypatch, where):
    def boom(*a, **k):
        raise KeyboardInterrupt
    if where == "load":
        monkeypatch.setattr(cli, "_load_model", boom)
    elif where == "analysis":
        import rnnperturb.report.rank_analysis as ra
        monkeypatch.setattr(ra, "analyze_ranks", boom)
    else:
        monkeypatch.setattr(cli, "_write_stdout", boom)
    code, out, err = run_cli(small + ["--quiet"])
    assert code == 130 and err == "rnnperturb: interrupted\n" and out == ""
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN   # handler restored
    record("signals", ("in-process KeyboardInterrupt", where), "interrupted")


def test_inprocess_memory_error(small, monkeypatch):
    import rnnperturb.report.rank_analysis as ra

    def boom(*a, **k):
        raise MemoryError
    monkeypatch.setattr(ra, "analyze_ranks", boom)
    code, out, err = run_cli(small + ["--quiet"])
    assert code == 1 and err.startswith("rnnperturb: error: out of memory") and out == ""
    record("streams", "MemoryError during the analysis", "io-error")
