"""Fuzz: PyTorch state_dict files and mappings (issue 15). Needs torch (must run, not skip).

The torch path refuses what the .npz path refuses: complex and bool tensors, sparse,
quantized, meta and nested tensors, NaN/Inf, wrong shapes; files are read with
``torch.load(weights_only=True)``, so no crafted pickle runs.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnperturb as rp
from rnnperturb.io.pytorch import from_torch_state_dict
from test_fuzz_common import check_api, check_cli, finite_rows, record

torch = pytest.importorskip("torch")

N, M = 4, 2
SENTINEL_NAME = "PWNED_BY_TORCH_PICKLE"


def _sd(**over):
    torch.manual_seed(0)
    sd = dict(torch.nn.RNN(M, N).state_dict())
    for k, v in over.items():
        if v is None:
            sd.pop(k, None)
        else:
            sd[k] = v
    return sd


def _save(path, obj):
    torch.save(obj, path)
    return path


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _evil_torch(path):
    return _save(path, {"weight_hh_l0": torch.eye(N), "x": _Evil(str(path.parent / SENTINEL_NAME))})


def _evil_raw(path):
    path.write_bytes(pickle.dumps({"weight_hh_l0": _Evil(str(path.parent / SENTINEL_NAME))}))
    return path


def _truncated(path):
    _save(path, _sd())
    path.write_bytes(path.read_bytes()[:200])
    return path


K_HH, K_IH, K_BI, K_BH = "weight_hh_l0", "weight_ih_l0", "bias_ih_l0", "bias_hh_l0"

TORCH_FILE_CASES = [
    ("missing", lambda p: p, "FILE", r"expected an existing PyTorch file, found no file"),
    ("directory", lambda p: (p.mkdir(), p)[1], "FILE", r"found a directory"),
    ("fifo", lambda p: (os.mkfifo(p), p)[1], "FILE", r"found a FIFO"),
    ("empty", lambda p: (p.write_bytes(b""), p)[1], "FILE", r"unreadable file"),
    ("junk", lambda p: (p.write_bytes(b"junk" * 50), p)[1], "FILE", r"unreadable file"),
    ("truncated", _truncated, "FILE", r"unreadable file"),
    ("crafted pickle in torch.save", _evil_torch, "FILE", r"readable with weights_only=True"),
    ("raw crafted pickle", _evil_raw, "FILE", r"readable with weights_only=True"),
    ("whole module saved", lambda p: _save(p, torch.nn.RNN(M, N)), "FILE", r"weights_only=True"),
    ("list saved", lambda p: _save(p, [torch.eye(N)]), "FILE", r"expected a state_dict .*found list"),
    ("tensor saved", lambda p: _save(p, torch.eye(N)), "FILE", r"expected a state_dict .*found Tensor"),
    ("complex W", lambda p: _save(p, _sd(**{K_HH: torch.eye(N, dtype=torch.complex64)})), "state_dict['weight_hh_l0']",
     r"expected a real floating-point tensor, found dtype torch.complex64"),
    ("complex128 U", lambda p: _save(p, _sd(**{K_IH: torch.ones(N, M, dtype=torch.complex128)})),
     "state_dict['weight_ih_l0']", r"found dtype torch.complex128"),
    ("bool W", lambda p: _save(p, _sd(**{K_HH: torch.eye(N, dtype=torch.bool)})), "state_dict['weight_hh_l0']",
     r"expected a real floating-point tensor, found dtype torch.bool"),
    ("bool bias", lambda p: _save(p, _sd(**{K_BH: torch.ones(N, dtype=torch.bool)})), "state_dict['bias_hh_l0']",
     r"found dtype torch.bool"),
    ("sparse W", lambda p: _save(p, _sd(**{K_HH: torch.eye(N).to_sparse()})), "state_dict['weight_hh_l0']",
     r"expected a dense \(strided\) tensor, found layout torch.sparse_coo"),
    ("sparse csr U", lambda p: _save(p, _sd(**{K_IH: torch.ones(N, M).to_sparse_csr()})),
     "state_dict['weight_ih_l0']", r"expected a dense \(strided\) tensor, found layout torch.sparse_csr"),
    ("nan W", lambda p: _save(p, _sd(**{K_HH: torch.full((N, N), float("nan"))})), "state_dict['weight_hh_l0']",
     r"expected finite values, found 16 NaN/Inf entries"),
    ("inf bias", lambda p: _save(p, _sd(**{K_BI: torch.full((N,), float("inf"))})), "state_dict['bias_ih_l0']",
     r"expected finite values, found 4 NaN/Inf"),
    ("0-d W", lambda p: _save(p, _sd(**{K_HH: torch.tensor(1.0)})), "state_dict['weight_hh_l0']",
     r"expected shape \(G n, n\) with G = 1 \(nn.RNN\), 3 \(nn.GRU\) or 4 \(nn.LSTM\), found shape \(\)"),
    ("1-d W", lambda p: _save(p, _sd(**{K_HH: torch.ones(N)})), "state_dict['weight_hh_l0']",
     r"found shape \(4,\)"),
    ("empty W", lambda p: _save(p, _sd(**{K_HH: torch.ones(0, 0)})), "state_dict['weight_hh_l0']",
     r"found shape \(0, 0\)"),
    ("LSTM proj", lambda p: _save(p, torch.nn.LSTM(M, N, proj_size=2).state_dict()), "proj_size",
     r"expected 0 \(LSTM projections are not supported\), found \(2,\)"),
    ("layer gap", lambda p: _save(p, {k: v for k, v in torch.nn.RNN(M, N, num_layers=3).state_dict()
                                      .items() if not k.endswith("_l1")}), "num_layers",
     r"expected layers 0..2 \(weight_hh_l<k> for every k\), found layers \[0, 2\]"),
    ("bidirectional", lambda p: _save(p, torch.nn.RNN(M, N, bidirectional=True).state_dict()), "state_dict",
     r"a bidirectional network \(key 'weight_ih_l0_reverse'\): not supported"),
    ("no weight_hh", lambda p: _save(p, _sd(**{K_HH: None})), "state_dict", r"expected exactly one 'weight_hh_l0'.*found 0"),
    ("two weight_hh", lambda p: _save(p, {**_sd(), "other.weight_hh_l0": torch.eye(N)}), "state_dict",
     r"found 2 among keys"),
    ("no weight_ih", lambda p: _save(p, _sd(**{K_IH: None})), "state_dict", r"expected key 'weight_ih_l0', found none"),
    ("weight_ih rows", lambda p: _save(p, _sd(**{K_IH: torch.ones(N + 1, M)})), "state_dict['weight_ih_l0']",
     r"expected shape \(4, m\), found shape \(5, 2\)"),
    ("weight_ih 1-d", lambda p: _save(p, _sd(**{K_IH: torch.ones(N)})), "state_dict['weight_ih_l0']",
     r"expected shape \(4, m\)"),
    ("bias length", lambda p: _save(p, _sd(**{K_BH: torch.ones(N + 2)})), "state_dict['bias_hh_l0']",
     r"expected shape \(4,\), found shape \(6,\)"),
    ("int keys", lambda p: _save(p, {1: torch.eye(N)}), "state_dict", r"expected string keys, found key 1 \(int\)"),
    ("readout complex", lambda p: _save(p, {**_sd(), "head.weight": torch.ones(3, N, dtype=torch.complex64)}),
     "state_dict['head.weight']", r"found dtype torch.complex64"),
    ("readout bias shape", lambda p: _save(p, {**_sd(), "head.weight": torch.ones(3, N), "head.bias": torch.ones(5)}),
     "state_dict['head.bias']", r"expected shape \(3,\), found shape \(5,\)"),
    ("W 1e200", lambda p: _save(p, _sd(**{K_HH: torch.eye(N, dtype=torch.float64) * 1e200})), "FILE",
     r"W: expected entries of magnitude <= 1.16e\+77"),
]


@pytest.mark.parametrize("label, build, name, regex", TORCH_FILE_CASES, ids=[c[0] for c in TORCH_FILE_CASES])
def test_bad_torch_file(tmp_path, label, build, name, regex):
    path = build(tmp_path / "model.pt")
    check_cli("torch files", ["analyze", path, "--ranks", "1", "--quiet"], name=name, match=regex,
              key=("torch FILE", label))
    assert not (tmp_path / SENTINEL_NAME).exists(), "a crafted pickle executed"
    if "1e200" not in label:
        check_api("torch files", ("rp.load_torch", label), lambda: rp.load_torch(path),
                  match=regex)
    assert not (tmp_path / SENTINEL_NAME).exists(), "a crafted pickle executed"


def test_torch_nonlinearity_option(tmp_path):
    path = _save(tmp_path / "m.pth", _sd())
    check_cli("options", ["analyze", path, "--nonlinearity", "relu"], name="--nonlinearity",
              match=r"--nonlinearity: expected 'tanh' .*found 'relu'")


GOOD_TORCH = [
    ("checkpoint dict", lambda: {"state_dict": _sd(), "epoch": 3}, "state_dict taken from the checkpoint"),
    ("float16", lambda: {k: v.half() for k, v in _sd().items()}, "nonlinearity assumed tanh"),
    ("bfloat16", lambda: {k: v.bfloat16() for k, v in _sd().items()}, "nonlinearity assumed tanh"),
    ("float64", lambda: {k: v.double() for k, v in _sd().items()}, "nonlinearity assumed tanh"),
    ("int W", lambda: _sd(**{K_HH: torch.eye(N, dtype=torch.int64)}), "nonlinearity assumed tanh"),
    ("no biases", lambda: _sd(**{K_BI: None, K_BH: None}), "taken as zero"),
    ("prefixed with head", lambda: {**{"rnn." + k: v for k, v in _sd().items()},
                                    "head.weight": torch.ones(3, N), "head.bias": torch.zeros(3)},
     "readout V, c taken from 'head.weight'"),
    ("extra key", lambda: {**_sd(), "step": torch.tensor(5)}, "kept unchanged, not part of the network"),
]


@pytest.mark.parametrize("label, make, note", GOOD_TORCH, ids=[c[0] for c in GOOD_TORCH])
def test_valid_torch_variants(tmp_path, label, make, note):
    path = _save(tmp_path / "m.pt", make())
    X = tmp_path / "X.npz"
    np.savez(X, X=np.random.default_rng(0).standard_normal((5, 2, M)))

    def answer(d):
        finite_rows(d)
        assert any(note in s for s in d["notes"]), d["notes"]
    check_cli("torch files", ["analyze", path, "--ranks", "0,2", "--json", "--inputs", X],
              answer=answer, key=("torch ok", label))


IN_MEMORY = [
    ("quantized", lambda: _sd(**{K_HH: torch.quantize_per_tensor(torch.eye(N), 0.1, 0, torch.qint8)}),
     r"state_dict\['weight_hh_l0'\]: expected a real floating-point tensor, found quantized"),
    ("meta device", lambda: _sd(**{K_HH: torch.empty(N, N, device="meta")}),
     r"state_dict\['weight_hh_l0'\]: expected a tensor with data, found a tensor on the 'meta' device"),
    ("nested", lambda: _sd(**{K_HH: torch.nested.nested_tensor([torch.ones(N), torch.ones(N)])}),
     r"state_dict\['weight_hh_l0'\]: expected a dense \(strided\) tensor"),
    ("not a mapping", lambda: [1, 2], r"state_dict: expected a mapping of names to tensors, found list"),
    ("None", lambda: None, r"state_dict: expected a mapping .*found NoneType"),
    ("string values", lambda: _sd(**{K_HH: "eye"}), r"state_dict\['weight_hh_l0'\]: expected a real"),
    ("object array", lambda: _sd(**{K_HH: np.array([{}], dtype=object)}), r"found dtype object"),
    ("ragged list", lambda: _sd(**{K_HH: [[1.0, 2.0], [3.0]]}), r"state_dict\['weight_hh_l0'\]: expected a real"),
    ("tuple key", lambda: {("a",): torch.eye(N)}, r"state_dict: expected string keys, found key \('a',\) \(tuple\)"),
]


@pytest.mark.parametrize("label, make, regex", IN_MEMORY, ids=[c[0] for c in IN_MEMORY])
def test_bad_state_dict_in_memory(label, make, regex):
    check_api("torch files", ("from_torch_state_dict", label), lambda: from_torch_state_dict(make()),
              match=regex)


def test_nonlinearity_argument():
    check_api("API arguments", "from_torch nonlinearity 3", lambda: from_torch_state_dict(_sd(), nonlinearity=3),
              match=r"nonlinearity: expected 'tanh' .*found 3")


_TDTYPES = st.sampled_from(["bool", "uint8", "int32", "float16", "bfloat16", "float32", "float64",
                            "complex64"])
_SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from([K_HH, K_IH, K_BI, K_BH]), dtype=_TDTYPES, shape=_SHAPES,
       fill=st.sampled_from([0.5, -2.0, float("nan"), float("inf"), 1.0]))
def test_hypothesis_state_dict_entries(key, dtype, shape, fill):
    """Any dtype, shape and fill for one entry: the correct cell, or a ValueError naming it."""
    t = torch.full(shape, fill if dtype.startswith(("float", "bfloat", "complex")) else 1,
                   dtype=getattr(torch, dtype))
    sd = _sd(**{key: t})
    want = {K_HH: (N, N), K_IH: (N, M), K_BI: (N,), K_BH: (N,)}[key]
    real = dtype not in ("bool", "complex64")
    finite = not (dtype.startswith(("float", "bfloat")) and not np.isfinite(fill))
    case = ("state_dict entry", key, dtype, shape, str(fill))
    if key == K_IH and real and finite and len(shape) == 2 and shape[0] == N:
        cell, _ = from_torch_state_dict(sd)          # any input size m is a valid nn.RNN
        assert cell.U.shape == shape
        record("torch files", case, "answer")
    elif real and finite and shape == want:
        cell, _ = from_torch_state_dict(sd)
        ref = {K_HH: cell.W, K_IH: cell.U}.get(key)
        if ref is not None:
            np.testing.assert_array_equal(ref, t.to(torch.float64).numpy())
        record("torch files", case, "answer")
    else:
        check_api("torch files", case, lambda: from_torch_state_dict(sd), match=r"^state_dict")
