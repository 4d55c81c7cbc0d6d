r"""Interoperability: PyTorch ``nn.RNN`` state_dicts to :class:`~rnnperturb.ElmanRNN`.

A one-layer, unidirectional ``torch.nn.RNN`` computes
:math:`h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`, which is the
Elman RNN with ``W = weight_hh_l0``, ``U = weight_ih_l0`` and
``b = bias_ih_l0 + bias_hh_l0``. A state_dict does not record the
nonlinearity, so tanh is assumed (and only tanh is accepted).

Files are read with ``torch.load(..., weights_only=True)``, which never runs
code from the file; torch is an optional dependency (extra ``torch``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from rnnperturb.cells import ElmanRNN

__all__ = ["from_torch_state_dict", "load_torch"]

_SUFFIXES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def _to_numpy(name, value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise ValueError(f"state_dict[{name!r}]: expected a real tensor, found dtype {arr.dtype}")
    return arr.astype(np.float64)


def from_torch_state_dict(state_dict: Mapping, *, nonlinearity: str = "tanh",
                          dtype=np.float64) -> tuple[ElmanRNN, list[str]]:
    """Convert a one-layer ``nn.RNN`` state_dict (tensors or arrays) to an ElmanRNN.

    Keys may carry a common prefix (e.g. ``rnn.weight_hh_l0`` from a module
    that contains the RNN). A single ``Linear`` readout (``<p>.weight`` of
    shape (k, n) and ``<p>.bias``) next to it is taken as ``V, c``.

    Parameters
    ----------
    state_dict : mapping of str to tensor or array
    nonlinearity : {'tanh'}
        Only tanh is supported; anything else is rejected.

    Returns
    -------
    cell : ElmanRNN
    notes : list of str
        What was assumed or ignored (nothing is dropped silently).
    """
    if nonlinearity != "tanh":
        raise ValueError(f"nonlinearity: expected 'tanh' (the only supported nn.RNN "
                         f"nonlinearity), found {nonlinearity!r}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict: expected a mapping of names to tensors, found "
                         f"{type(state_dict).__name__}")
    keys = list(state_dict)
    hh = [k for k in keys if k.endswith("weight_hh_l0")]
    if len(hh) != 1:
        raise ValueError(f"state_dict: expected exactly one 'weight_hh_l0' (a one-layer nn.RNN), "
                         f"found {len(hh)} among keys {keys[:12]}")
    prefix = hh[0][: -len("weight_hh_l0")]
    layered = [k for k in keys if k.startswith(prefix) and ("_l1" in k or "_reverse" in k)]
    if layered:
        raise ValueError(f"state_dict: expected a one-layer unidirectional nn.RNN, found keys "
                         f"{layered[:4]} (stacked or bidirectional layers are not supported)")
    if any(k.startswith(prefix) and ("weight_ir" in k or "weight_hr" in k) for k in keys):
        raise ValueError("state_dict: expected an nn.RNN, found projection/GRU-like keys")
    W = _to_numpy(prefix + "weight_hh_l0", state_dict[prefix + "weight_hh_l0"])
    if prefix + "weight_ih_l0" not in state_dict:
        raise ValueError(f"state_dict: expected key {prefix + 'weight_ih_l0'!r}, found none")
    U = _to_numpy(prefix + "weight_ih_l0", state_dict[prefix + "weight_ih_l0"])
    n = W.shape[0]
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        hint = {3: " (a GRU?)", 4: " (an LSTM?)"}.get(W.shape[0] // max(W.shape[-1], 1), "") \
            if W.ndim == 2 else ""
        raise ValueError(f"state_dict[{prefix + 'weight_hh_l0'!r}]: expected a square (n, n) "
                         f"nn.RNN matrix, found shape {W.shape}{hint}")
    b = np.zeros(n)
    notes = ["nonlinearity assumed tanh (a state_dict does not record it)"]
    for k in ("bias_ih_l0", "bias_hh_l0"):
        if prefix + k in state_dict:
            b = b + _to_numpy(prefix + k, state_dict[prefix + k])
        else:
            notes.append(f"no {prefix + k}: taken as zero (nn.RNN with bias=False)")
    used = {prefix + s for s in _SUFFIXES}
    rest = [k for k in keys if k not in used]
    V = c = None
    w_keys = [k for k in rest if k.endswith("weight") and np.ndim(_to_numpy(k, state_dict[k])) == 2
              and np.shape(state_dict[k])[-1] == n]
    if len(w_keys) == 1:
        V = _to_numpy(w_keys[0], state_dict[w_keys[0]])
        bk = w_keys[0][: -len("weight")] + "bias"
        c = _to_numpy(bk, state_dict[bk]) if bk in state_dict else None
        notes.append(f"readout V, c taken from {w_keys[0]!r}" + (f" and {bk!r}" if c is not None else ""))
        rest = [k for k in rest if k not in (w_keys[0], bk)]
    if rest:
        notes.append(f"ignored keys not part of the RNN: {rest}")
    cell = ElmanRNN(W=W, U=U, b=b, V=V, c=c, dtype=dtype)
    return cell, notes


def load_torch(path, *, nonlinearity: str = "tanh") -> tuple[ElmanRNN, list[str]]:
    """Load a PyTorch ``nn.RNN`` state_dict file with ``weights_only=True``.

    Returns
    -------
    cell : ElmanRNN
    notes : list of str
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"path: expected an existing PyTorch file, found no file at {path!r}")
    try:
        import torch
    except ImportError:
        raise ValueError("torch: expected PyTorch to read a state_dict (pip install "
                         "'rnnperturb[torch]'), found it not installed") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds here
        raise ValueError(f"{path}: expected a PyTorch state_dict readable with weights_only=True, "
                         f"found an unreadable file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if hasattr(sd, "state_dict") and not isinstance(sd, Mapping):
        sd = sd.state_dict()
    return from_torch_state_dict(sd, nonlinearity=nonlinearity)
