r"""Interoperability: PyTorch ``nn.RNN`` state_dicts to :class:`~rnnperturb.ElmanRNN`.

A one-layer, unidirectional ``torch.nn.RNN`` computes
:math:`h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`, which is the
Elman RNN with ``W = weight_hh_l0``, ``U = weight_ih_l0`` and
``b = bias_ih_l0 + bias_hh_l0``. A state_dict does not record the
nonlinearity, so tanh is assumed (and only tanh is accepted).

Files are read with ``torch.load(..., weights_only=True)``, which never runs
code from the file; torch is an optional dependency (extra ``torch``). Only
regular files are opened (a FIFO or a device is refused before ``open``).

The checks are those of the ``.npz`` path: every tensor must be dense, real
(complex tensors are refused, not cast) and numeric (bool tensors are refused,
not turned into 0/1), finite, and of the shape an ``nn.RNN`` gives it; every
problem is a ``ValueError`` naming the state_dict key, the expected and the
found value.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from rnnperturb._checks import check_regular_file, describe
from rnnperturb.cells import ElmanRNN

__all__ = ["from_torch_state_dict", "load_torch"]

_SUFFIXES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def _is_tensor(value) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _shape(value) -> tuple:
    try:
        return tuple(int(s) for s in (value.shape if _is_tensor(value) else np.shape(value)))
    except Exception:  # ragged or exotic values: no usable shape
        return ()


def _to_numpy(name, value) -> np.ndarray:
    """A float64 copy of one state_dict entry, refusing what the .npz path refuses."""
    label = f"state_dict[{name!r}]"
    if _is_tensor(value):
        import torch
        layout = getattr(value, "layout", torch.strided)
        if layout != torch.strided or getattr(value, "is_nested", False):
            raise ValueError(f"{label}: expected a dense (strided) tensor, found layout {layout}"
                             f"{' (nested)' if getattr(value, 'is_nested', False) else ''}")
        if getattr(value, "is_quantized", False):
            raise ValueError(f"{label}: expected a real floating-point tensor, found quantized "
                             f"dtype {value.dtype}")
        if getattr(value, "is_meta", False):
            raise ValueError(f"{label}: expected a tensor with data, found a tensor on the "
                             f"'meta' device (no values)")
        if value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{label}: expected a real floating-point tensor, found dtype "
                             f"{value.dtype}")
        if not (value.is_floating_point() or value.dtype in (
                torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)):
            raise ValueError(f"{label}: expected a real floating-point tensor, found dtype "
                             f"{value.dtype}")
        arr = value.detach().cpu().to(torch.float64).numpy()
    else:
        try:
            arr = np.asarray(value)
        except Exception:
            raise ValueError(f"{label}: expected a real tensor or array, found "
                             f"{type(value).__name__}") from None
        if arr.dtype == object or arr.dtype.kind not in "fiu":
            raise ValueError(f"{label}: expected a real floating-point tensor, found dtype "
                             f"{arr.dtype}")
    arr = np.array(arr, dtype=np.float64)
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"{label}: expected finite values, found {bad} NaN/Inf entries")
    return arr


def from_torch_state_dict(state_dict: Mapping, *, nonlinearity: str = "tanh",
                          dtype=np.float64) -> tuple[ElmanRNN, list[str]]:
    """Convert a one-layer ``nn.RNN`` state_dict (tensors or arrays) to an ElmanRNN.

    Keys may carry a common prefix (e.g. ``rnn.weight_hh_l0`` from a module
    that contains the RNN). A single ``Linear`` readout (``<p>.weight`` of
    shape (k, n) and ``<p>.bias``) next to it is taken as ``V, c``.

    Parameters
    ----------
    state_dict : mapping of str to tensor or array
        Dense, real, finite tensors (complex, bool, sparse and quantized tensors
        are refused).
    nonlinearity : {'tanh'}
        Only tanh is supported; anything else is rejected.
    dtype : {numpy.float64, numpy.float32}
        dtype of the returned cell.

    Returns
    -------
    cell : ElmanRNN
    notes : list of str
        What was assumed or ignored (nothing is dropped silently).

    Raises
    ------
    ValueError
        Naming the key (``state_dict['weight_hh_l0']``), the expected and the
        found value.
    """
    if not isinstance(nonlinearity, str) or nonlinearity != "tanh":
        raise ValueError(f"nonlinearity: expected 'tanh' (the only supported nn.RNN "
                         f"nonlinearity), found {describe(nonlinearity)}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict: expected a mapping of names to tensors, found "
                         f"{type(state_dict).__name__}")
    keys = list(state_dict)
    bad_keys = [k for k in keys if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"state_dict: expected string keys, found key {describe(bad_keys[0])} "
                         f"({type(bad_keys[0]).__name__})")
    hh = [k for k in keys if k.endswith("weight_hh_l0")]
    if len(hh) != 1:
        raise ValueError(f"state_dict: expected exactly one 'weight_hh_l0' (a one-layer nn.RNN), "
                         f"found {len(hh)} among keys {describe(keys[:12], 300)}")
    prefix = hh[0][: -len("weight_hh_l0")]
    layered = [k for k in keys if k.startswith(prefix) and ("_l1" in k or "_reverse" in k)]
    if layered:
        raise ValueError(f"state_dict: expected a one-layer unidirectional nn.RNN, found keys "
                         f"{layered[:4]} (stacked or bidirectional layers are not supported)")
    if any(k.startswith(prefix) and ("weight_ir" in k or "weight_hr" in k) for k in keys):
        raise ValueError("state_dict: expected an nn.RNN, found projection/GRU-like keys")
    kW, kU = prefix + "weight_hh_l0", prefix + "weight_ih_l0"
    W = _to_numpy(kW, state_dict[kW])
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        hint = {3: " (a GRU?)", 4: " (an LSTM?)"}.get(W.shape[0] // max(W.shape[-1], 1), "") \
            if W.ndim == 2 else ""
        raise ValueError(f"state_dict[{kW!r}]: expected a square (n, n) nn.RNN matrix, "
                         f"found shape {W.shape}{hint}")
    n = W.shape[0]
    if kU not in state_dict:
        raise ValueError(f"state_dict: expected key {kU!r}, found none")
    U = _to_numpy(kU, state_dict[kU])
    if U.ndim != 2 or U.shape[0] != n:
        raise ValueError(f"state_dict[{kU!r}]: expected shape ({n}, m), found shape {U.shape}")
    b = np.zeros(n)
    notes = ["nonlinearity assumed tanh (a state_dict does not record it)"]
    for k in ("bias_ih_l0", "bias_hh_l0"):
        if prefix + k in state_dict:
            bk = _to_numpy(prefix + k, state_dict[prefix + k])
            if bk.shape != (n,):
                raise ValueError(f"state_dict[{prefix + k!r}]: expected shape ({n},), found "
                                 f"shape {bk.shape}")
            b = b + bk
        else:
            notes.append(f"no {prefix + k}: taken as zero (nn.RNN with bias=False)")
    used = {prefix + s for s in _SUFFIXES}
    rest = [k for k in keys if k not in used]
    V = c = None
    w_keys = [k for k in rest if k.endswith("weight") and len(_shape(state_dict[k])) == 2
              and _shape(state_dict[k])[-1] == n]
    if len(w_keys) == 1:
        V = _to_numpy(w_keys[0], state_dict[w_keys[0]])
        bk = w_keys[0][: -len("weight")] + "bias"
        if bk in state_dict:
            c = _to_numpy(bk, state_dict[bk])
            if c.shape != (V.shape[0],):
                raise ValueError(f"state_dict[{bk!r}]: expected shape ({V.shape[0]},), found "
                                 f"shape {c.shape}")
        notes.append(f"readout V, c taken from {w_keys[0]!r}" + (f" and {bk!r}" if c is not None else ""))
        rest = [k for k in rest if k not in (w_keys[0], bk)]
    if rest:
        notes.append(f"ignored keys not part of the RNN: {describe(rest, 300)}")
    try:
        cell = ElmanRNN(W=W, U=U, b=b, V=V, c=c, dtype=dtype)
    except ValueError as exc:
        raise ValueError(f"state_dict: {exc}") from None
    return cell, notes


def _load_torch(path, name: str, nonlinearity: str):
    path = check_regular_file(name, path, what="PyTorch file")
    try:
        import torch
    except ImportError:
        raise ValueError("torch: expected PyTorch to read a state_dict (pip install "
                         "'rnnperturb[torch]'), found it not installed") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise ValueError(f"{name} {describe(path, 300)}: expected a state_dict that fits in "
                         f"memory, found too large a file") from None
    except Exception as exc:  # torch raises many kinds here
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
        if "weights only load failed" in text.lower():
            found = ("a file whose loading would run code from it (pickled objects other than "
                     "tensors; refused, never executed)")
        else:
            found = f"an unreadable file ({type(exc).__name__}: {text[:200]})"
        raise ValueError(f"{name} {describe(path, 300)}: expected a PyTorch state_dict readable "
                         f"with weights_only=True, found {found}") from None
    notes = []
    if (isinstance(sd, Mapping) and not any(isinstance(k, str) and k.endswith("weight_hh_l0")
                                            for k in sd)
            and isinstance(sd.get("state_dict"), Mapping)):
        sd = sd["state_dict"]
        notes.append("state_dict taken from the checkpoint's 'state_dict' entry")
    if not isinstance(sd, Mapping):
        raise ValueError(f"{name} {describe(path, 300)}: expected a state_dict (a mapping of "
                         f"names to tensors), found {type(sd).__name__}")
    cell, more = from_torch_state_dict(sd, nonlinearity=nonlinearity)
    return cell, notes + more


def load_torch(path, *, nonlinearity: str = "tanh") -> tuple[ElmanRNN, list[str]]:
    """Load a PyTorch ``nn.RNN`` state_dict file with ``weights_only=True``.

    Parameters
    ----------
    path : str or os.PathLike
        An existing regular file written by ``torch.save(module.state_dict(), path)``
        (or a checkpoint dict with a ``'state_dict'`` entry).
    nonlinearity : {'tanh'}

    Returns
    -------
    cell : ElmanRNN
    notes : list of str

    Raises
    ------
    ValueError
        For a missing or non-regular file, an unreadable file, a file whose
        loading would need code execution (refused by ``weights_only=True``), or
        any of the state_dict problems of :func:`from_torch_state_dict`.
    """
    return _load_torch(path, "path", nonlinearity)
