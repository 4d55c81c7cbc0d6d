r"""Interoperability: PyTorch ``nn.RNN`` (tanh), ``nn.GRU`` and ``nn.LSTM`` state_dicts and modules
(any ``num_layers``) to cells and back.

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

The round trip (:func:`from_torch`, :func:`to_torch`) covers ``nn.RNN``
(tanh), ``nn.GRU`` and ``nn.LSTM`` with any number of layers, one direction,
with or without biases, and a ``Linear`` readout next to the network:
``from_torch`` gives the cell (:class:`~rnnperturb.ElmanRNN`,
:class:`~rnnperturb.GRU`, :class:`~rnnperturb.LSTM`; for ``num_layers`` > 1 a
:class:`~rnnperturb.Stacked` of them) together with
the key layout of the state_dict it came from (:class:`TorchLayout`), and
``to_torch`` writes a cell back under those keys, so that
``module.load_state_dict(to_torch(cell, layout), strict=True)`` loads into the
user's own module. A module's ``batch_first`` changes nothing in its weights;
inputs to rnnperturb are always time-major, (T, B, m) (transpose a
batch-first tensor with ``X.transpose(0, 1)``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import check_regular_file, describe
from rnnperturb.cells import GRU, LSTM, Cell, ElmanRNN, Stacked

__all__ = ["from_torch_state_dict", "load_torch", "from_torch", "to_torch", "TorchLayout"]

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


def _keys_and_prefix(state_dict, expected: str):
    """The keys of a state_dict (checked: a mapping with string keys) and the prefix of its
    single ``weight_hh_l0`` key; ``expected`` names the network in the error message."""
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
        raise ValueError(f"state_dict: expected exactly one 'weight_hh_l0' ({expected}), "
                         f"found {len(hh)} among keys {describe(keys[:12], 300)}")
    return keys, hh[0][: -len("weight_hh_l0")]


def from_torch_state_dict(state_dict: Mapping, *, nonlinearity: str = "tanh",
                          dtype=np.float64) -> tuple[Cell, list[str]]:
    """Convert an ``nn.RNN`` (tanh), ``nn.GRU`` or ``nn.LSTM`` state_dict (tensors or arrays) to a
    cell (a :class:`~rnnperturb.Stacked` for several layers): :func:`from_torch` with
    ``dtype=float64`` by default and its notes (one parser).

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
    cell : ElmanRNN, GRU, LSTM or Stacked
    notes : list of str
        What was assumed or ignored (nothing is dropped silently).

    Raises
    ------
    ValueError
        Naming the key (``state_dict['weight_hh_l0']``), the expected and the
        found value.
    """
    return from_torch(state_dict, nonlinearity=nonlinearity, dtype=dtype, return_notes=True)


def read_torch_file(path, name: str) -> tuple[Mapping, list[str]]:
    """The state_dict in a PyTorch file, read with ``weights_only=True`` (never executes code).

    Parameters
    ----------
    path : str or os.PathLike
        An existing regular file written by ``torch.save(module.state_dict(), path)`` (or a
        checkpoint dict with a ``'state_dict'`` entry, which is taken and noted).
    name : str
        The argument's name in error messages.

    Returns
    -------
    state_dict : Mapping
    notes : list of str
    """
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
    return sd, notes


def load_torch(path, *, nonlinearity: str = "tanh") -> tuple[Cell, list[str]]:
    """Load a PyTorch ``nn.RNN``/``nn.GRU``/``nn.LSTM`` state_dict file with ``weights_only=True``.

    Parameters
    ----------
    path : str or os.PathLike
        An existing regular file written by ``torch.save(module.state_dict(), path)``
        (or a checkpoint dict with a ``'state_dict'`` entry).
    nonlinearity : {'tanh'}

    Returns
    -------
    cell : ElmanRNN, GRU, LSTM or Stacked
    notes : list of str

    Raises
    ------
    ValueError
        For a missing or non-regular file, an unreadable file, a file whose
        loading would need code execution (refused by ``weights_only=True``), or
        any of the state_dict problems of :func:`from_torch_state_dict`.
    """
    sd, notes = read_torch_file(path, "path")
    cell, more = from_torch_state_dict(sd, nonlinearity=nonlinearity)
    return cell, notes + more


# ----- the round trip: from_torch / to_torch (nn.RNN tanh, nn.GRU, nn.LSTM, any num_layers)
@dataclass(frozen=True)
class _Codec:
    """How one torch recurrent layer maps onto one cell type.

    ``gates`` lists, in torch's row order of ``weight_hh``/``weight_ih``, the
    cell's recurrent matrix, input matrix and bias of every gate; a bias is
    either ``("sum", name)`` (the cell keeps ``b_ih + b_hh``) or
    ``("split", ih_name, hh_name)`` (the cell keeps both).
    """

    torch_name: str
    cell_type: type
    gates: tuple


_CODECS = (
    _Codec("nn.RNN", ElmanRNN, (("W", "U", ("sum", "b")),)),
    _Codec("nn.GRU", GRU, (("Wr", "Ur", ("sum", "br")), ("Wz", "Uz", ("sum", "bz")),
                           ("Wn", "Un", ("split", "bn", "bhn")))),
    _Codec("nn.LSTM", LSTM, tuple(("W" + g, "U" + g, ("sum", "b" + g)) for g in "ifgo")),
)
_BY_GATES = {len(c.gates): c for c in _CODECS}          # rows of weight_hh / n
_BY_KIND = {c.cell_type.kind: c for c in _CODECS}
_SUPPORTED = "an nn.RNN (tanh), nn.GRU or nn.LSTM"


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _layer_keys(prefix: str, l: int) -> tuple[str, str, str, str]:
    """weight_ih, weight_hh, bias_ih, bias_hh of layer ``l``."""
    return tuple(f"{prefix}{w}_l{l}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


@dataclass(frozen=True, eq=False)
class TorchLayout:
    r"""The key layout of the PyTorch state_dict a cell came from.

    Returned by :func:`from_torch` (also as ``cell.origin``) and taken by
    :func:`to_torch`, which writes a cell back under exactly these keys.

    Attributes
    ----------
    torch_name : {'nn.RNN', 'nn.GRU', 'nn.LSTM'}
    prefix : str
        Common prefix of the network's keys (``''`` or e.g. ``'rnn.'``).
    n, m : int
        Hidden and input size.
    bias : bool
        Whether the state_dict has ``bias_ih_l*``/``bias_hh_l*``
        (``bias=False`` modules have neither).
    readout : str or None
        Prefix of the ``Linear`` readout (``'fc.'``, ``'head.'``), or None.
    readout_bias : bool
        Whether the readout has a ``bias`` key.
    bias_ih, bias_hh : ndarray of shape (L G n,), or None
        The original biases of all layers one after the other (float64,
        read-only), so that a gate whose cell keeps only the sum
        :math:`b_{ih} + b_{hh}` gets both back exactly while that sum is
        unchanged (else :math:`b_{ih} = b - b_{hh}`).
    weight_dtype : str
        torch dtype of the original ``weight_hh_l0`` (informative).
    extras : tuple of (str, value)
        Entries that are not part of the network or its readout, given back
        unchanged (copies), so that a strict load into the same module works.
    keys : tuple of str
        All keys, in the original order (the order ``to_torch`` writes).
    num_layers : int
        L; more than one gives a :class:`~rnnperturb.Stacked` of L cells.
    """

    torch_name: str
    prefix: str
    n: int
    m: int
    bias: bool
    readout: str | None
    readout_bias: bool
    bias_ih: np.ndarray | None
    bias_hh: np.ndarray | None
    weight_dtype: str
    extras: tuple
    keys: tuple
    num_layers: int = 1

    @classmethod
    def default(cls, cell: Cell) -> "TorchLayout":
        """The canonical layout of a bare torch module for ``cell`` (one cell or a
        stack): no prefix, biases present, the readout (if any) under ``'fc.'``."""
        codec, layers = _codec_of(cell)
        p = "fc." if cell.V is not None else None
        keys = tuple(k for l in range(len(layers)) for k in _layer_keys("", l))
        if p:
            keys += ("fc.weight", "fc.bias")
        return cls(codec.torch_name, "", cell.n, cell.m, True, p, p is not None, None, None,
                   str(cell.dtype), (), keys, len(layers))


def _codec_of(cell) -> tuple[_Codec, tuple]:
    """The codec of a cell or of a stack's layers (all of one type), and the layers."""
    layers = getattr(cell, "layers", None) if isinstance(cell, Cell) else None
    layers = tuple(layers) if layers is not None else (cell,)
    codec = None
    if all(isinstance(c, Cell) for c in layers):
        codecs = {_BY_KIND.get(getattr(c, "kind", None)) for c in layers}
        codec = codecs.pop() if len(codecs) == 1 else None
    if codec is None or any(type(c) is not codec.cell_type for c in layers):
        found = (type(cell).__name__ if layers == (cell,) else
                 f"a stack of {[type(c).__name__ for c in layers]}")
        raise ValueError(f"cell: expected an ElmanRNN, a GRU or an LSTM, or a stack of layers "
                         f"of one of them (the cells with a PyTorch counterpart), found {found}")
    return codec, layers


def _is_module(obj) -> bool:
    return (type(obj).__module__.split(".")[0] == "torch" or any(
        c.__module__.startswith("torch.nn") for c in type(obj).__mro__)) and hasattr(
        obj, "state_dict") and hasattr(obj, "modules")


def _check_module(module) -> None:
    """Refuse what a torch module's own attributes say is unsupported."""
    import torch
    rnns = [mod for mod in module.modules() if isinstance(mod, torch.nn.RNNBase)]
    if len(rnns) != 1:
        raise ValueError(f"module: expected exactly one nn.RNN, nn.GRU or nn.LSTM inside, found "
                         f"{len(rnns)} recurrent modules in {type(module).__name__}")
    rnn = rnns[0]
    mode = getattr(rnn, "mode", "")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"proj_size: expected 0 (LSTM projections are not supported), found "
                         f"{rnn.proj_size}")
    if mode == "RNN_RELU":
        raise ValueError("nonlinearity: expected 'tanh' (the only supported nn.RNN "
                         "nonlinearity), found 'relu'")
    if mode not in ("RNN_TANH", "GRU", "LSTM"):
        raise ValueError(f"module: expected {_SUPPORTED}, found mode "
                         f"{describe(mode)} ({type(rnn).__name__})")
    if rnn.bidirectional:
        raise ValueError("bidirectional: expected False (rnnperturb follows one direction of "
                         "time), found True")


def _parse_layer(state_dict, prefix, l, G, n, m_l, has_bias, codec):
    """Parameters of layer ``l`` (weights checked against G, n and the input size m_l)."""
    kU, kW, kbi, kbh = _layer_keys(prefix, l)
    for k in (kU, kW):
        if k not in state_dict:
            raise ValueError(f"state_dict: expected key {k!r}, found none (layer {l})")
    Whh = _to_numpy(kW, state_dict[kW])
    if Whh.shape != (G * n, n):
        raise ValueError(f"state_dict[{kW!r}]: expected shape ({G * n}, {n}) (every layer of "
                         f"an {codec.torch_name} alike), found shape {Whh.shape}")
    Wih = _to_numpy(kU, state_dict[kU])
    if Wih.ndim != 2 or Wih.shape[0] != G * n or (m_l is not None and Wih.shape[1] != m_l):
        want = f"({G * n}, m)" if m_l is None else f"({G * n}, {m_l})"
        raise ValueError(f"state_dict[{kU!r}]: expected shape {want}, found shape {Wih.shape}")
    present = [k for k in (kbi, kbh) if k in state_dict]
    if len(present) == 1 or bool(present) != has_bias:
        raise ValueError(f"state_dict: expected both {kbi!r} and {kbh!r} (bias=True) or neither "
                         f"(bias=False) in every layer, found "
                         f"{'only ' + repr(present[0]) if present else 'neither'}")
    if has_bias:
        bih, bhh = (_to_numpy(k, state_dict[k]) for k in (kbi, kbh))
        for k, v in ((kbi, bih), (kbh, bhh)):
            if v.shape != (G * n,):
                raise ValueError(f"state_dict[{k!r}]: expected shape ({G * n},), found shape "
                                 f"{v.shape}")
    else:
        bih = bhh = np.zeros(G * n)
    params = {}
    for g, (w, u, bias) in enumerate(codec.gates):
        rows = slice(g * n, (g + 1) * n)
        params[w], params[u] = Whh[rows], Wih[rows]
        if bias[0] == "sum":
            params[bias[1]] = bih[rows] + bhh[rows]
        else:
            params[bias[1]], params[bias[2]] = bih[rows], bhh[rows]
    return params, bih, bhh, Wih.shape[1], {kU, kW, kbi, kbh}


def _parse(state_dict: Mapping, dtype):
    """State_dict -> (cell or stack, layout, notes) for nn.RNN / nn.GRU / nn.LSTM."""
    keys, prefix = _keys_and_prefix(state_dict, _SUPPORTED)
    ours = [k for k in keys if k.startswith(prefix)]
    rev = [k for k in ours if k.endswith("_reverse")]
    if rev:
        raise ValueError(f"state_dict: a bidirectional network (key {rev[0]!r}): not "
                         f"supported (rnnperturb follows one direction of time)")
    hr = [k for k in ours if re.fullmatch(re.escape(prefix) + r"weight_hr_l\d+", k)]
    if hr:
        raise ValueError(f"proj_size: expected 0 (LSTM projections are not supported), found "
                         f"{_shape(state_dict[hr[0]])[:1] or '?'} (state_dict key {hr[0]!r})")
    layers = sorted({int(mt.group(1)) for k in ours
                     if (mt := re.fullmatch(re.escape(prefix) + r"weight_hh_l(\d+)", k))})
    L = len(layers)
    if layers != list(range(L)):
        raise ValueError(f"num_layers: expected layers 0..{layers[-1]} (weight_hh_l<k> for "
                         f"every k), found layers {layers}")
    kW = prefix + "weight_hh_l0"
    Whh0 = _to_numpy(kW, state_dict[kW])
    if Whh0.ndim != 2 or Whh0.shape[1] == 0 or Whh0.shape[0] % Whh0.shape[1]:
        raise ValueError(f"state_dict[{kW!r}]: expected shape (G n, n) with G = 1 (nn.RNN), "
                         f"3 (nn.GRU) or 4 (nn.LSTM), found shape {Whh0.shape}")
    n = Whh0.shape[1]
    G = Whh0.shape[0] // n
    if G not in _BY_GATES:
        raise ValueError(f"state_dict[{kW!r}]: expected shape (G n, n) with G = 1 (nn.RNN), "
                         f"3 (nn.GRU) or 4 (nn.LSTM), found shape {Whh0.shape} (G = {G})")
    codec = _BY_GATES[G]
    has_bias = prefix + "bias_ih_l0" in state_dict or prefix + "bias_hh_l0" in state_dict
    per, bihs, bhhs, used, m = [], [], [], set(), None
    for l in range(L):
        params, bih, bhh, m_l, k_l = _parse_layer(state_dict, prefix, l, G, n,
                                                  None if l == 0 else n, has_bias, codec)
        m = m_l if l == 0 else m
        per.append(params)
        bihs.append(bih)
        bhhs.append(bhh)
        used |= k_l
    notes = [f"read as a {L}-layer {codec.torch_name}" if L > 1 else
             f"read as a one-layer {codec.torch_name}"]
    if G == 1:
        notes.append("nonlinearity assumed tanh (a state_dict does not record it)")
    if not has_bias:
        notes.append("no bias_ih_l*/bias_hh_l*: biases taken as zero (bias=False)")
    rest = [k for k in keys if k not in used]
    readout, readout_bias, V, c = None, False, None, None
    w_keys = [k for k in rest if k.endswith("weight") and len(_shape(state_dict[k])) == 2
              and _shape(state_dict[k])[-1] == n]
    if len(w_keys) == 1:
        kV = w_keys[0]
        readout = kV[: -len("weight")]
        V = _to_numpy(kV, state_dict[kV])
        kc = readout + "bias"
        if kc in state_dict:
            c = _to_numpy(kc, state_dict[kc])
            if c.shape != (V.shape[0],):
                raise ValueError(f"state_dict[{kc!r}]: expected shape ({V.shape[0]},),"
                                 f" found shape {c.shape}")
            readout_bias = True
        notes.append(f"readout V, c taken from {kV!r}" + (f" and {kc!r}" if readout_bias else ""))
        rest = [k for k in rest if k not in (kV, kc)]
    elif len(w_keys) > 1:
        notes.append(f"no readout taken: several candidate Linear weights {describe(w_keys, 200)}")
    if rest:
        notes.append(f"kept unchanged, not part of the network: {describe(rest, 300)}")
    if dtype is None:
        wd = getattr(state_dict[kW], "dtype", None)
        dtype = np.float32 if str(wd) in ("torch.float32", "float32") else np.float64
    readout_kw = {} if V is None else {"V": V, "c": c}
    try:
        if L == 1:
            cell = codec.cell_type(**per[0], **readout_kw, dtype=dtype)
        else:
            cell = Stacked(layers=tuple(codec.cell_type(**p, dtype=dtype) for p in per),
                           **readout_kw, dtype=dtype)
    except ValueError as exc:
        raise ValueError(f"state_dict: {exc}") from None
    extras = tuple((k, _copy_value(state_dict[k])) for k in rest)
    layout = TorchLayout(codec.torch_name, prefix, n, m, has_bias, readout, readout_bias,
                         _frozen(np.concatenate(bihs)) if has_bias else None,
                         _frozen(np.concatenate(bhhs)) if has_bias else None,
                         str(state_dict[kW].dtype if _is_tensor(state_dict[kW])
                             else np.asarray(state_dict[kW]).dtype),
                         extras, tuple(keys), L)
    return cell, layout, notes


def _copy_value(value):
    if _is_tensor(value):
        return value.detach().clone()
    a = np.array(value)
    a.setflags(write=False)
    return a


def from_torch(module_or_state_dict, *, dtype=None, nonlinearity: str = "tanh",
               return_notes: bool = False):
    r"""A cell, or a stack of cells, from a PyTorch ``nn.RNN`` (tanh), ``nn.GRU`` or ``nn.LSTM``.

    ``nn.RNN``: :math:`W` = ``weight_hh_l0``, :math:`U` = ``weight_ih_l0``,
    :math:`b = b_{ih} + b_{hh}` (:class:`~rnnperturb.ElmanRNN`). ``nn.GRU``:
    the blocks r, z, n of ``weight_hh_l0`` are ``Wr, Wz, Wn``, those of
    ``weight_ih_l0`` are ``Ur, Uz, Un``; ``br = b_ir + b_hr``,
    ``bz = b_iz + b_hz``, ``bn = b_in``, ``bhn = b_hn``
    (:class:`~rnnperturb.GRU`). ``nn.LSTM``: the blocks i, f, g, o are
    ``Wi, Wf, Wg, Wo`` and ``Ui, Uf, Ug, Uo``, ``bi = b_ii + b_hi``, ...
    (:class:`~rnnperturb.LSTM`, state ``[h, c]``). With ``num_layers`` L > 1 the
    result is a :class:`~rnnperturb.Stacked` of L such cells, layer l's
    parameters named ``"l{l}.Wr"`` and so on. A ``Linear`` readout next to the
    network (``<p>.weight`` of shape (k, n), ``<p>.bias``) becomes ``V, c`` (on
    the top layer's h).

    The key layout (prefix, readout keys, the original split of the summed
    biases, other entries) is returned attached as ``cell.origin``
    (a :class:`TorchLayout`) for :func:`to_torch`.

    ``batch_first`` changes nothing in the weights: inputs to rnnperturb
    are always time-major, (T, B, m).

    Parameters
    ----------
    module_or_state_dict : torch.nn.Module or mapping of str to tensor
        An ``nn.RNN``/``nn.GRU``/``nn.LSTM``, a module containing exactly one (and
        a ``Linear`` readout), or a state_dict; keys may carry a prefix
        (``rnn.weight_hh_l0``). Tensors must be dense, real and finite.
    dtype : {None, numpy.float32, numpy.float64}
        dtype of the cell; None follows ``weight_hh_l0`` (float32 stays
        float32, everything else becomes float64).
    nonlinearity : {'tanh'}
        For state_dicts of an ``nn.RNN``, which do not record it; only tanh.
    return_notes : bool
        Also return the list of what was assumed or kept aside.

    Returns
    -------
    cell : ElmanRNN, GRU, LSTM or Stacked
    notes : list of str
        Only with ``return_notes=True``.

    Raises
    ------
    ValueError
        Naming the argument or the key: ``bidirectional``, ``proj_size``,
        ``nonlinearity='relu'``, or any tensor that is not dense, real, finite
        and of the right shape.
    """
    if not isinstance(nonlinearity, str) or nonlinearity != "tanh":
        raise ValueError(f"nonlinearity: expected 'tanh' (the only supported nn.RNN "
                         f"nonlinearity), found {describe(nonlinearity)}")
    if dtype is not None and np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected None, float32 or float64, found {describe(dtype)}")
    obj = module_or_state_dict
    notes = []
    if _is_module(obj):
        _check_module(obj)
        if any(getattr(mod, "batch_first", False) for mod in obj.modules()):
            notes.append("batch_first=True: weights unchanged; rnnperturb inputs are (T, B, m)")
        obj = obj.state_dict()
    cell, layout, more = _parse(obj, dtype)
    object.__setattr__(cell, "origin", layout)
    return (cell, notes + more) if return_notes else cell


def _as_out(a, torch, dtype):
    return torch.tensor(np.ascontiguousarray(a, dtype=np.float64)).to(dtype)


def _layer_tensors(layer, codec, layout, l, torch, tdt):
    """weight_ih, weight_hh, bias_ih, bias_hh (float64 arrays) of one layer."""
    n = layer.n
    G = len(codec.gates)
    Whh = np.concatenate([getattr(layer, w) for w, _, _ in codec.gates])
    Wih = np.concatenate([getattr(layer, u) for _, u, _ in codec.gates])
    bih, bhh = [], []
    for g, (_, _, bias) in enumerate(codec.gates):
        if bias[0] == "split":
            bih.append(np.asarray(getattr(layer, bias[1]), np.float64))
            bhh.append(np.asarray(getattr(layer, bias[2]), np.float64))
            continue
        b = getattr(layer, bias[1])
        if layout.bias_ih is None:              # no recorded split: all in b_ih
            bih.append(np.asarray(b, np.float64))
            bhh.append(np.zeros(n))
            continue
        rows = slice(l * G * n + g * n, l * G * n + (g + 1) * n)
        oi, oh = layout.bias_ih[rows], layout.bias_hh[rows]
        if np.array_equal(b, (oi + oh).astype(layer.dtype)):
            bih.append(oi)
            bhh.append(oh)
        else:
            bih.append(np.asarray(b, np.float64) - oh)
            bhh.append(oh)
    return Wih, Whh, np.concatenate(bih), np.concatenate(bhh)


def to_torch(cell, layout: TorchLayout | None = None, *, factorised: bool = False) -> dict:
    r"""A PyTorch state_dict of ``cell`` with the keys of the one it came from.

    Inverse of :func:`from_torch`: ``module.load_state_dict(to_torch(cell),
    strict=True)`` loads into the user's module. For a gate whose cell keeps
    only :math:`b = b_{ih} + b_{hh}` (``nn.RNN``'s bias, the GRU's r and z, the
    LSTM's four), both original biases come back exactly while :math:`b` is
    unchanged; else :math:`b_{ih} = b - b_{hh}` with the original :math:`b_{hh}`
    (the same pre-activation). Entries that were not part of the network come
    back unchanged.

    Parameters
    ----------
    cell : ElmanRNN, GRU, LSTM, or Stacked of one of them
        E.g. ``truncate_svd(from_torch(sd), rank=r)``.
    layout : TorchLayout, optional
        Default: ``cell.origin`` when it is one (set by :func:`from_torch`),
        else :meth:`TorchLayout.default` (bare module keys, readout ``fc.``).
    factorised : bool
        False: the state_dict of the user's module (dense ``weight_hh_l*``).
        True: the deployable form for a module of one's own: every recurrent
        block of numerical rank r < n/2 (where two thin factors are smaller
        than the block, 2nr < n^2) as ``<p>weight_hh_l{l}.{W}.left`` (n, r)
        and ``.right`` (r, n) with block = left @ right (the factors of
        :func:`rnnperturb.factors`, exact to rounding for a truncated
        matrix); the other blocks as ``<p>weight_hh_l{l}.{W}`` (n, n), e.g.
        ``weight_hh_l0.Wz``; everything else as in the dense form.
        ``sum(v.numel() for v in sd.values())`` is then the real parameter
        count.

    Returns
    -------
    dict of str to torch.Tensor
        float32 tensors for a float32 cell, float64 otherwise.

    Raises
    ------
    ValueError
        For a cell without a PyTorch counterpart, a layout of another network
        type, size or number of layers, or parameters the layout cannot hold
        (nonzero biases with ``bias=False``, a readout the layout has no keys
        for, or the reverse).
    """
    codec, layers = _codec_of(cell)
    try:
        import torch
    except ImportError:
        raise ValueError("torch: expected PyTorch to build a state_dict (pip install "
                         "'rnnperturb[torch]'), found it not installed") from None
    if layout is None:
        layout = getattr(cell, "origin", None)
        if not isinstance(layout, TorchLayout):
            layout = TorchLayout.default(cell)
    elif not isinstance(layout, TorchLayout):
        raise ValueError(f"layout: expected a TorchLayout (from from_torch), found "
                         f"{type(layout).__name__}")
    if (layout.torch_name != codec.torch_name or (layout.n, layout.m) != (cell.n, cell.m)
            or layout.num_layers != len(layers)):
        raise ValueError(f"layout: expected the layout of an {codec.torch_name} with n = "
                         f"{cell.n}, m = {cell.m}, num_layers = {len(layers)}, found one of an "
                         f"{layout.torch_name} with n = {layout.n}, m = {layout.m}, "
                         f"num_layers = {layout.num_layers}")
    if not isinstance(factorised, (bool, np.bool_)):
        raise ValueError(f"factorised: expected True or False, found {describe(factorised)}")
    tdt = torch.float32 if cell.dtype == np.float32 else torch.float64
    if factorised:
        from rnnperturb.perturb.cost import factors
        thin = factors(cell)
    out, home = {}, {}          # home: a block's entry -> the weight_hh key it replaces
    for l, layer in enumerate(layers):
        kU, kW, kbi, kbh = _layer_keys(layout.prefix, l)
        Wih, Whh, bih, bhh = _layer_tensors(layer, codec, layout, l, torch, tdt)
        out[kU] = _as_out(Wih, torch, tdt)
        if not factorised:
            out[kW] = _as_out(Whh, torch, tdt)
        else:
            own = f"l{l}." if len(layers) > 1 else ""      # the stack's names of the blocks
            for w, _, _ in codec.gates:
                Lf, Rf = thin[own + w]
                if 2 * Lf.shape[1] < layer.n:
                    out[f"{kW}.{w}.left"] = _as_out(Lf, torch, tdt)
                    out[f"{kW}.{w}.right"] = _as_out(Rf, torch, tdt)
                    home[f"{kW}.{w}.left"] = home[f"{kW}.{w}.right"] = kW
                else:
                    out[f"{kW}.{w}"] = _as_out(getattr(layer, w), torch, tdt)
                    home[f"{kW}.{w}"] = kW
        if layout.bias:
            out[kbi], out[kbh] = _as_out(bih, torch, tdt), _as_out(bhh, torch, tdt)
        elif np.any(bih) or np.any(bhh):
            raise ValueError("cell: expected zero biases (the layout's module has bias=False), "
                             "found nonzero ones")
    if layout.readout is not None:
        if cell.V is None:
            raise ValueError(f"cell: expected a readout V for the layout's keys "
                             f"{layout.readout + 'weight'!r}, found none")
        out[layout.readout + "weight"] = _as_out(cell.V, torch, tdt)
        if layout.readout_bias:
            out[layout.readout + "bias"] = _as_out(cell.c, torch, tdt)
        elif np.any(cell.c):
            raise ValueError(f"cell: expected c = 0 (the layout's readout "
                             f"{layout.readout!r} has no bias), found nonzero entries")
    elif cell.V is not None:
        raise ValueError("layout: expected readout keys for the cell's V, found none (the "
                         "original state_dict had no Linear readout)")
    for k, v in layout.extras:
        out[k] = v.detach().clone() if _is_tensor(v) else torch.as_tensor(np.array(v))
    order = {k: i for i, k in enumerate(layout.keys)}
    # a block's entries where its layer's weight_hh was (stable sort keeps their order)
    order.update({k: order.get(kW, len(order)) for k, kW in home.items()})
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))
