"""Fuzz: malformed, hostile and oversized .npz files, as FILE, as --inputs and via rp.load.

Every case must end in one stderr line naming the argument (FILE, --inputs, the key) with
exit 2, or in a correct answer; no crafted pickle may execute.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from test_fuzz_common import check_api, check_cli, finite_rows, record, run_cli

N, M = 4, 2
SENTINEL_NAME = "PWNED_BY_PICKLE"


def _elman():
    return random_cell("elman", N, M, spectral_norm=1.1, seed=0)


def _params():
    return {k: np.asarray(v) for k, v in _elman().params.items()}


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _elman_file(path, **over):
    arrays = {"cell": np.array("elman"), "schema": np.array(1), **_params()}
    for k, v in over.items():
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    return _npz(path, **arrays)


def _mgru_file(path, **over):
    c = random_cell("mgru", N, M, seed=1)
    arrays = {"cell": np.array("mgru"), **{k: np.asarray(v) for k, v in c.params.items()}}
    for k, v in over.items():
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    return _npz(path, **arrays)


def _npy_bytes(descr="<f8", shape=(3,), payload=b"\0" * 24, fortran=False):
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    return _magic_header(header) + payload


def _magic_header(header):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)   # writes the magic too
    return buf.getvalue()


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _evil_npz(path):
    target = str(path.parent / SENTINEL_NAME)
    arr = np.empty(1, dtype=object)
    arr[0] = _Evil(target)
    np.savez(path, cell=np.array("elman"), W=arr, U=np.ones((N, M)), b=np.zeros(N))
    return path


def _raw_pickle_member(path):
    target = str(path.parent / SENTINEL_NAME)
    return _zip(path, [("cell.npy", pickle.dumps(_Evil(target)))])


def _dup_zip(path):
    import warnings
    good = io.BytesIO()
    np.save(good, np.array("elman"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("cell.npy", good.getvalue())
            zf.writestr("cell.npy", good.getvalue())
    return path


def _truncated(path, keep):
    _elman_file(path)
    data = path.read_bytes()
    path.write_bytes(data[:keep if keep > 0 else len(data) + keep])
    return path


# (label, builder(path) -> path, argument named in the message, regex)
FILE_CASES = [
    ("missing", lambda p: p, "FILE", r"expected an existing \.npz file, found no file"),
    ("directory", lambda p: (p.mkdir(), p)[1], "FILE", r"found a directory"),
    ("fifo", lambda p: (os.mkfifo(p), p)[1], "FILE", r"found a FIFO"),
    ("symlink to fifo", lambda p: (os.mkfifo(str(p) + ".fifo"), os.symlink(str(p) + ".fifo", p), p)[2],
     "FILE", r"found a FIFO"),
    ("broken symlink", lambda p: (os.symlink(str(p) + ".nowhere", p), p)[1], "FILE", r"found no file"),
    ("symlink to /dev/null", lambda p: (os.symlink("/dev/null", p), p)[1], "FILE",
     r"found a character device"),
    ("empty file", lambda p: (p.write_bytes(b""), p)[1], "FILE", r"not a zip archive"),
    ("junk", lambda p: (p.write_bytes(b"junk" * 10), p)[1], "FILE", r"unreadable file"),
    ("gzip", lambda p: (p.write_bytes(b"\x1f\x8b\x08\x00" + b"\0" * 20), p)[1], "FILE",
     r"not a zip archive"),
    ("npy renamed", lambda p: (np.save(open(p, "wb"), np.eye(3)), p)[1], "FILE",
     r"found a single-array \.npy file"),
    ("truncated half", lambda p: _truncated(p, -400), "FILE", r"unreadable file"),
    ("truncated to 100 bytes", lambda p: _truncated(p, 100), "FILE", r"unreadable file"),
    ("truncated to 4 bytes", lambda p: _truncated(p, 4), "FILE", r"unreadable file"),
    ("empty zip", lambda p: _zip(p, []), "FILE", r"expected key 'cell'"),
    ("text member", lambda p: _zip(p, [("cell.npy", b"hello")]), "FILE", r"unreadable file"),
    ("huge header shape", lambda p: _zip(p, [("cell.npy", _npy_bytes(shape=(10 ** 12,)))]),
     "FILE", r"expected at most \d+ elements"),
    ("header claims more than data", lambda p: _zip(p, [("W.npy", _npy_bytes(shape=(1000,)))]),
     "FILE", r"truncated or crafted file"),
    ("object header", lambda p: _zip(p, [("W.npy", _npy_bytes(descr="|O", shape=(1,)))]),
     "FILE", r"found dtype object"),
    ("pickled object array", _evil_npz, "FILE", r"key 'W': .*found dtype object"),
    ("raw pickle member", _raw_pickle_member, "FILE", r"unreadable file"),
    ("duplicate key", _dup_zip, "FILE", r"expected unique keys, found 'cell' twice"),
    ("no cell key", lambda p: _npz(p, W=np.eye(N)), "FILE", r"expected key 'cell'"),
    ("cell 1-d", lambda p: _elman_file(p, cell=np.array(["elman"])), "FILE",
     r"key 'cell': expected a 0-d string array .*found a 1-d <U5 array of shape \(1,\)"),
    ("cell bytes", lambda p: _elman_file(p, cell=np.array(b"elman")), "FILE",
     r"key 'cell': expected a 0-d string array .*\|S5"),
    ("cell int", lambda p: _elman_file(p, cell=np.array(3)), "FILE", r"key 'cell': expected a 0-d string"),
    ("cell unknown", lambda p: _elman_file(p, cell=np.array("qrnn")), "FILE",
     r"key 'cell': expected one of \['elman', 'gru', 'lstm', 'mgru', 'stacked'\], found 'qrnn'"),
    ("cell empty", lambda p: _elman_file(p, cell=np.array("")), "FILE", r"key 'cell': expected one of"),
    ("schema [1,1]", lambda p: _elman_file(p, schema=np.array([1, 1])), "FILE",
     r"key 'schema': expected a 0-d integer 1, found a 1-d"),
    ("schema 2", lambda p: _elman_file(p, schema=np.array(2)), "FILE",
     r"key 'schema': expected 1, found 2"),
    ("schema -1", lambda p: _elman_file(p, schema=np.array(-1)), "FILE", r"key 'schema': expected 1, found -1"),
    ("schema float", lambda p: _elman_file(p, schema=np.array(1.0)), "FILE",
     r"key 'schema': expected a 0-d integer 1, found a 0-d float64"),
    ("schema string", lambda p: _elman_file(p, schema=np.array("one")), "FILE",
     r"key 'schema': expected a 0-d integer"),
    ("missing W", lambda p: _elman_file(p, W=None), "FILE", r"missing \['W'\]"),
    ("missing b", lambda p: _elman_file(p, b=None), "FILE", r"missing \['b'\]"),
    ("unknown key", lambda p: _elman_file(p, Q=np.eye(2)), "FILE", r"unexpected \['Q'\]"),
    ("W nan", lambda p: _elman_file(p, W=np.full((N, N), np.nan)), "FILE",
     r"W: expected finite values, found 16 NaN/Inf"),
    ("W inf", lambda p: _elman_file(p, W=np.full((N, N), np.inf)), "FILE", r"W: expected finite values"),
    ("W complex", lambda p: _elman_file(p, W=np.eye(N, dtype=complex)), "FILE",
     r"W: expected a real floating-point array, found dtype complex128"),
    ("W bool", lambda p: _elman_file(p, W=np.eye(N, dtype=bool)), "FILE",
     r"W: expected a real floating-point array, found dtype bool"),
    ("W string", lambda p: _elman_file(p, W=np.full((N, N), "a")), "FILE",
     r"W: expected a real floating-point array, found dtype <U1"),
    ("W 0-d", lambda p: _elman_file(p, W=np.array(1.0)), "FILE", r"W: expected a square matrix"),
    ("W 1-d", lambda p: _elman_file(p, W=np.ones(N)), "FILE", r"W: expected a square matrix"),
    ("W 3-d", lambda p: _elman_file(p, W=np.ones((N, N, 1))), "FILE", r"W: expected a square matrix"),
    ("W empty", lambda p: _elman_file(p, W=np.ones((0, 0))), "FILE", r"W: expected a square matrix"),
    ("W 3x4", lambda p: _elman_file(p, W=np.ones((3, 4))), "FILE", r"W: expected a square matrix"),
    ("U rows", lambda p: _elman_file(p, U=np.ones((N + 1, M))), "FILE", r"U: expected shape \(4, \*?"),
    ("b length", lambda p: _elman_file(p, b=np.zeros(N + 1)), "FILE", r"b: expected shape \(4\)"),
    ("b 2-d", lambda p: _elman_file(p, b=np.zeros((N, 1))), "FILE", r"b: expected shape \(4\)"),
    ("V cols", lambda p: _elman_file(p, V=np.ones((2, N + 1))), "FILE", r"V: expected shape \(\*, 4\)"),
    ("c without V", lambda p: _elman_file(p, c=np.ones(2)), "FILE", r"c: expected None when V is None"),
    ("V nan", lambda p: _elman_file(p, V=np.full((2, N), np.nan), c=np.zeros(2)), "FILE",
     r"V: expected finite values"),
    ("c length", lambda p: _elman_file(p, V=np.ones((2, N)), c=np.zeros(3)), "FILE",
     r"c: expected shape \(2\)"),
    ("mgru missing Wh", lambda p: _mgru_file(p, Wh=None), "FILE", r"missing \['Wh'\]"),
    ("mgru Uh shape", lambda p: _mgru_file(p, Uh=np.ones((N, M + 1))), "FILE", r"Uh: expected shape"),
    ("mgru with W", lambda p: _mgru_file(p, W=np.eye(N)), "FILE", r"unexpected \['W'\]"),
    ("mgru Wf complex", lambda p: _mgru_file(p, Wf=np.eye(N) * 1j), "FILE", r"Wf: expected a real"),
    ("W 1e200", lambda p: _elman_file(p, W=_params()["W"] * 1e200), "FILE",
     r"W: expected entries of magnitude <= 1.16e\+77 .*found max \|W\| "),
    ("U 1e300", lambda p: _elman_file(p, U=_params()["U"] * 1e300), "FILE", r"U: expected entries of magnitude"),
    ("b 1e100", lambda p: _elman_file(p, b=np.full(N, 1e100)), "FILE", r"b: expected entries of magnitude"),
    ("mgru Wh 1e150", lambda p: _mgru_file(p, Wh=np.eye(N) * 1e150), "FILE", r"Wh: expected entries of magnitude"),
    ("memorization without meta_K",
     lambda p: _elman_file(p, meta_task=np.array("memorization"), meta_L=np.array(5), meta_D=np.array(3)),
     "FILE", r"meta_K: expected a value .*found the key missing"),
    ("meta_D 1e9", lambda p: _mem(p, D=np.array(1e9)), "FILE",
     r"meta_D: expected an integer in \[0, \d+\], found 1000000000"),
    ("meta_D 1e8 too many elements", lambda p: _mem(p, D=np.array(10 ** 8)), "FILE",
     r"meta_D: expected at most \d+ array elements .*found 100000011 x 32 x 4"),
    ("meta_L 1e6 too many elements", lambda p: _mem(p, L=np.array(10 ** 6)), "FILE",
     r"meta_L: expected at most \d+ array elements"),
    ("meta_D -1", lambda p: _mem(p, D=np.array(-1)), "FILE", r"meta_D: expected an integer in \[0,"),
    ("meta_D 2.5", lambda p: _mem(p, D=np.array(2.5)), "FILE", r"meta_D: expected an integer, found 2.5"),
    ("meta_D string", lambda p: _mem(p, D=np.array("ten")), "FILE", r"meta_D: expected an integer, found 'ten'"),
    ("meta_D bool", lambda p: _mem(p, D=np.array(True)), "FILE", r"meta_D: expected an integer, found True"),
    ("meta_D array", lambda p: _mem(p, D=np.array([1, 2])), "FILE", r"meta_D: expected a 0-d number"),
    ("meta_K vs m", lambda p: _mem(p, K=np.array(3)), "FILE",
     r"meta_K: expected a task whose input size K \+ 2 = 5 equals the cell's m = 2, found m = 5"),
    ("meta_K 1", lambda p: _mem(p, K=np.array(1)), "FILE", r"meta_K: expected an integer in \[2,"),
    ("meta_K huge", lambda p: _mem(p, K=np.array(10 ** 9)), "FILE", r"meta_K: expected a task whose input size"),
    ("meta_L 0", lambda p: _mem(p, L=np.array(0)), "FILE", r"meta_L: expected an integer in \[1,"),
    ("meta_task array", lambda p: _elman_file(p, meta_task=np.array(["memorization"])), "FILE",
     r"meta_task: expected a string"),
    ("meta_task number", lambda p: _elman_file(p, meta_task=np.array(3)), "FILE",
     r"meta_task: expected a string, found 3"),
    ("meta complex", lambda p: _elman_file(p, meta_x=np.array(1j)), "FILE",
     r"key 'meta_x': expected a number, string or numeric array, found dtype complex128"),
    ("kback missing K", lambda p: _elman_file(p, meta_task=np.array("kback"), meta_k=np.array(1)), "FILE",
     r"meta_K: expected a value"),
    ("kback repeat 1.5", lambda p: _kb(p, repeat=np.array(1.5)), "FILE",
     r"meta_repeat: expected a probability in \[0, 1\), found 1.5"),
    ("kback repeat nan", lambda p: _kb(p, repeat=np.array(np.nan)), "FILE", r"meta_repeat: expected a finite number"),
    ("kback T <= k", lambda p: _kb(p, T=np.array(1)), "FILE", r"meta_T: expected an integer in \[2,"),
    ("kback T huge", lambda p: _kb(p, T=np.array(10 ** 9)), "FILE", r"meta_T: expected at most \d+ array elements"),
    ("ar_signal tau -1", lambda p: _ar(p, tau=np.array(-1.0)), "FILE", r"meta_tau: expected a finite number > 0"),
    ("ar_signal noise inf", lambda p: _ar(p, noise=np.array(np.inf)), "FILE", r"meta_noise: expected a finite number"),
    ("ar_signal wrong m", lambda p: _ar(p), "FILE", r"meta_task: expected a task whose input size 1"),
    ("ar_signal missing tau", lambda p: _ar(p, tau=None), "FILE", r"meta_tau: expected a value"),
]


def _mem(p, **meta):
    base = {"task": np.array("memorization"), "K": np.array(2), "L": np.array(5), "D": np.array(3)}
    base.update(meta)
    # m = K + 2 = 4 for the memorization task: the cell gets m = 4 unless meta_K is under test
    c = random_cell("elman", N, 4 if "K" not in meta else M, seed=0)
    arrays = {"cell": np.array("elman"), **{k: np.asarray(v) for k, v in c.params.items()}}
    arrays.update({f"meta_{k}": v for k, v in base.items() if v is not None})
    return _npz(p, **arrays)


def _kb(p, **meta):
    base = {"task": np.array("kback"), "K": np.array(M), "k": np.array(1), "T": np.array(10)}
    base.update(meta)
    return _elman_file(p, **{f"meta_{k}": v for k, v in base.items()})


def _ar(p, **meta):
    base = {"task": np.array("ar_signal"), "tau": np.array(5.0), "noise": np.array(0.1),
            "T": np.array(20)}
    base.update(meta)
    arrays = {f"meta_{k}": v for k, v in base.items()}
    for k in [k for k, v in base.items() if v is None]:
        arrays[f"meta_{k}"] = None
    return _elman_file(p, **arrays)


@pytest.mark.parametrize("label, build, name, regex", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_file(tmp_path, label, build, name, regex):
    path = build(tmp_path / "model.npz")
    check_cli("files", ["analyze", path, "--ranks", "1", "--quiet"], name=name, match=regex,
              key=("FILE", label))
    assert not (tmp_path / SENTINEL_NAME).exists(), "a crafted pickle executed"
    # the library loader shares the boundary layer (except the analysis-only checks)
    if not label.startswith(("meta_", "memorization", "kback", "ar_signal")) and "1e" not in label:
        check_api("files", ("rp.load", label), lambda: rp.load(path),
                  match=regex.replace("FILE", "path").replace(r"\.npz file", r"\.npz file"))
    assert not (tmp_path / SENTINEL_NAME).exists(), "a crafted pickle executed"


GOOD_FILE_CASES = [
    ("W int", lambda p: _elman_file(p, W=np.eye(N, dtype=np.int64))),
    ("W float16", lambda p: _elman_file(p, W=np.eye(N, dtype=np.float16) * 0.5)),
    ("float32 cell", lambda p: _npz(p, cell=np.array("elman"),
                                     **{k: v.astype(np.float32) for k, v in _params().items()})),
    ("no schema key", lambda p: _elman_file(p, schema=None)),
    ("uppercase extension", lambda p: _elman_file(p.with_suffix(".NPZ"))),
    ("fortran order W", lambda p: _elman_file(p, W=np.asfortranarray(_params()["W"]))),
    ("W 1e70 (below the limit)", lambda p: _elman_file(p, W=_params()["W"] * 1e70)),
    ("mgru file", lambda p: _mgru_file(p)),
    ("memorization meta as floats", lambda p: _mem(p, D=np.array(3.0), L=np.array(5.0))),
    ("kback metadata", lambda p: _kb(p)),
    ("kback repeat_lo", lambda p: _kb(p, repeat=None, repeat_lo=np.array(0.5))),
    ("unknown task name", lambda p: _elman_file(p, meta_task=np.array("copy"))),
]


@pytest.mark.parametrize("label, build", GOOD_FILE_CASES, ids=[c[0] for c in GOOD_FILE_CASES])
def test_unusual_but_valid_file(tmp_path, label, build):
    path = build(tmp_path / "model.npz")
    X = tmp_path / "X.npz"
    np.savez(X, X=np.random.default_rng(0).standard_normal((5, 2, 4 if "memorization" in label else M)))
    args = ["analyze", path, "--ranks", "0,2", "--json", "--inputs", X]
    check_cli("files", args, answer=finite_rows, key=("FILE ok", label))


# ------------------------------------------------------------------------------ --inputs
def _X(p, X):
    np.savez(p, X=X)
    return p


INPUT_CASES = [
    ("missing", lambda p: p, r"--inputs: expected an existing \.npz file with key X, found no file"),
    ("directory", lambda p: (p.mkdir(), p)[1], r"--inputs: expected a regular .*found a directory"),
    ("fifo", lambda p: (os.mkfifo(p), p)[1], r"--inputs: expected a regular .*found a FIFO"),
    ("npy", lambda p: (np.save(open(p, "wb"), np.zeros((3, 2))), p)[1], r"found a single-array \.npy"),
    ("junk", lambda p: (p.write_bytes(b"\x00" * 50), p)[1], r"--inputs .*not a zip archive"),
    ("truncated", lambda p: (_X(p, np.zeros((50, 2, M))), p.write_bytes(p.read_bytes()[:300]), p)[2],
     r"--inputs .*unreadable file"),
    ("no X", lambda p: _npz(p, Y=np.zeros((3, M))), r"--inputs .*expected key 'X', found keys \['Y'\]"),
    ("X object", lambda p: _zip(p, [("X.npy", _npy_bytes(descr="|O", shape=(2,)))]), r"found dtype object"),
    ("X complex", lambda p: _X(p, np.zeros((3, M), complex)), r"X: expected a real floating-point array, found dtype complex128"),
    ("X bool", lambda p: _X(p, np.zeros((3, M), bool)), r"X: expected a real floating-point array, found dtype bool"),
    ("X string", lambda p: _X(p, np.full((3, M), "a")), r"X: expected a real floating-point array"),
    ("X wrong m", lambda p: _X(p, np.zeros((5, 3))), r"X: expected last dimension m=2, found shape \(5, 3\)"),
    ("X 0-d", lambda p: _X(p, np.array(1.0)), r"X: expected shape \(T, B, 2\) or \(T, 2\), found shape \(\)"),
    ("X 1-d", lambda p: _X(p, np.zeros(5)), r"X: expected shape \(T, B, 2\) or \(T, 2\), found shape \(5,\)"),
    ("X 4-d", lambda p: _X(p, np.zeros((2, 2, 2, M))), r"X: expected shape \(T, B, 2\)"),
    ("X B=0", lambda p: _X(p, np.zeros((5, 0, M))), r"X: expected at least one sequence \(B >= 1\), found shape \(5, 0, 2\)"),
    ("X T=0", lambda p: _X(p, np.zeros((0, 3, M))), r"X: expected at least one time step"),
    ("X nan", lambda p: _X(p, np.full((3, M), np.nan)), r"X: expected finite values, found 6 NaN/Inf"),
    ("X inf", lambda p: _X(p, np.array([[np.inf, 0.0]])), r"X: expected finite values, found 1 NaN/Inf"),
    ("X 1e308", lambda p: _X(p, np.full((3, M), 1e308)), r"X: expected entries of magnitude <= 1.16e\+77"),
    ("X 1e200", lambda p: _X(p, np.full((3, 2, M), -1e200)), r"X: expected entries of magnitude"),
    ("X huge header", lambda p: _zip(p, [("X.npy", _npy_bytes(shape=(10 ** 8, 64, M)))]),
     r"key 'X': expected at most \d+ elements"),
    ("X T x B x n too large", lambda p: _zip(p, [("X.npy", _npy_bytes(shape=(2 ** 25, 1, M)))]),
     r"truncated or crafted|expected at most"),
]


@pytest.mark.parametrize("label, build, regex", INPUT_CASES, ids=[c[0] for c in INPUT_CASES])
def test_bad_inputs_file(tmp_path, label, build, regex):
    good = _elman_file(tmp_path / "good.npz")
    path = build(tmp_path / "X.npz")
    check_cli("files", ["analyze", good, "--inputs", path, "--ranks", "1", "--quiet"],
              name="--inputs", match=regex, key=("--inputs", label))


def test_inputs_elements_checked_before_analysis(tmp_path, monkeypatch):
    """T x B x n over the limit is refused (named) before any computation."""
    from rnnperturb import _checks
    good = _elman_file(tmp_path / "good.npz")
    _X(tmp_path / "X.npz", np.zeros((50, 4, M)))
    orig = _checks.check_elements
    monkeypatch.setattr(_checks, "check_elements",
                        lambda name, shape, *, limit=100, what="": orig(name, shape, limit=limit, what=what))
    check_cli("files", ["analyze", good, "--inputs", tmp_path / "X.npz", "--quiet"], name="--inputs",
              match=r"expected at most 100 array elements \(T x B x n\), found 50 x 4 x 4 = 800",
              key=("--inputs", "T x B x n budget"))


@pytest.mark.parametrize("X", [np.zeros((4, M), np.int64), np.ones((4, 3, M), np.float32) * 0.1,
                               np.random.default_rng(1).standard_normal((3, 1, M))],
                         ids=["int", "float32", "B=1"])
def test_unusual_but_valid_inputs(tmp_path, X):
    good = _elman_file(tmp_path / "good.npz")
    _X(tmp_path / "X.npz", X)
    check_cli("files", ["analyze", good, "--inputs", tmp_path / "X.npz", "--ranks", "0:4", "--json"],
              answer=finite_rows, key=("--inputs ok", str(X.dtype), X.shape))


# ------------------------------------------------------------------------------ hypothesis
_BASE = {}


def _base_bytes():
    if "b" not in _BASE:
        buf = io.BytesIO()
        arrays = {"cell": np.array("elman"), "schema": np.array(1), **_params()}
        np.savez(buf, **arrays)
        _BASE["b"] = buf.getvalue()
    return _BASE["b"]


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hypothesis_corrupted_archive(tmp_path_factory, data):
    """Flip, delete, insert bytes or truncate a valid archive: a clean error or a correct answer."""
    raw = bytearray(_base_bytes())
    op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete", "zero"]))
    i = data.draw(st.integers(0, len(raw) - 1))
    if op == "flip":
        raw[i] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        raw = raw[:i]
    elif op == "insert":
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    elif op == "delete":
        del raw[i:i + data.draw(st.integers(1, 16))]
    else:
        raw[i:i + 8] = b"\0" * len(raw[i:i + 8])
    path = tmp_path_factory.mktemp("corrupt") / "m.npz"
    path.write_bytes(bytes(raw))
    key = ("corrupt", op, i, bytes(raw[max(0, i - 2):i + 2]))
    code, out, err = run_cli(["analyze", str(path), "--ranks", "1", "--json", "--quiet",
                              "--inputs", _x_file(tmp_path_factory)])
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 0:
        from test_fuzz_common import strict_json
        finite_rows(strict_json(out))
        record("files", key, "answer")
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("rnnperturb: error: FILE "), err
        record("files", key, "error")


def _x_file(factory):
    if "x" not in _BASE:
        p = factory.mktemp("x") / "X.npz"
        np.savez(p, X=np.random.default_rng(0).standard_normal((4, 2, M)))
        _BASE["x"] = str(p)
    return _BASE["x"]


_DTYPES = st.sampled_from([np.bool_, np.int8, np.int64, np.uint8, np.float16, np.float32,
                           np.float64, np.complex64, np.dtype("U3"), np.dtype("S2")])


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(["W", "U", "b"]), dtype=_DTYPES,
       shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
       data=st.data())
def test_hypothesis_parameter_arrays(tmp_path_factory, key, dtype, shape, data):
    """Any dtype and shape for a parameter: a clean error naming it, or the correct cell."""
    arr = data.draw(hnp.arrays(dtype, shape))
    path = tmp_path_factory.mktemp("param") / "m.npz"
    _elman_file(path, **{key: arr})
    want = {"W": (N, N), "U": (N, None), "b": (N,)}[key]
    ok_shape = len(arr.shape) == len(want) and all(w is None or w == s for w, s in zip(want, arr.shape))
    if key == "U":
        ok_shape = ok_shape and arr.shape[1] == M
    numeric = np.dtype(dtype).kind in "fiu"
    finite = numeric and bool(np.all(np.isfinite(arr.astype(np.float64))))
    small = finite and (arr.size == 0 or float(np.max(np.abs(arr.astype(np.float64)))) <= 1e77)
    key_ = ("param", key, str(np.dtype(dtype)), arr.shape, arr.tobytes()[:64])
    argv = ["analyze", str(path), "--ranks", "1", "--json", "--quiet", "--inputs", _x_file(tmp_path_factory)]
    if numeric and ok_shape and small:
        def answer(d):
            finite_rows(d)
            cell = rp.load(path)
            np.testing.assert_array_equal(getattr(cell, key), arr.astype(np.float64))
        check_cli("files", argv, answer=answer, key=key_)
    elif key == "U" and numeric and finite and small and arr.ndim == 2 and arr.shape[0] == N:
        # a valid cell with another input size m: the inputs (m = 2) are then the mismatch
        check_cli("files", argv, name="--inputs", match=r"X: expected last dimension m=", key=key_)
    elif key == "W" and numeric and small and arr.ndim == 2 and arr.shape[0] == arr.shape[1] >= 1:
        # a valid square W of another size n: U and b are then the mismatch
        check_cli("files", argv, name="FILE", match=r"\b(U|b): expected shape", key=key_)
    else:
        check_cli("files", argv, name="FILE", match=rf"\b{key}: expected", key=key_)
