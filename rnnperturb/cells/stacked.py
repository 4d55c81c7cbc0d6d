r"""Stacked recurrent networks: L layers of any registered cells.

.. math::
    s^{(0)}_t = F_0(s^{(0)}_{t-1}, x_t), \qquad
    s^{(l)}_t = F_l(s^{(l)}_{t-1}, y^{(l-1)}_t),\quad l = 1..L-1,

where :math:`y^{(l)}_t` is layer l's output (its h: the state itself for the
Elman RNN, MGRU and GRU, the h of the LSTM's :math:`(h, c)`) at the same step,
as in ``torch.nn.RNN/GRU/LSTM(num_layers=L)``. The state of the stack is the
layers' states one after the other (N = :math:`\sum_l N_l`); its output, what
a readout sees and what :meth:`~rnnperturb.cells.Cell.run` returns, is the top
layer's h.

Names. Layer l's parameter ``k`` is ``"l{l}.k"`` in the stack (``"l0.W"``,
``"l1.Wz"``): the layer index first, as in torch's ``weight_hh_l{l}``, and a dot,
which no cell's own parameter name contains, so the names never collide and
``truncate_svd(stack, rank={"l1.Wn": 4})`` reads as it should. Every layer's
recurrent matrices are recurrent matrices of the stack: a uniform
``truncate_svd(stack, rank=r)`` truncates all of them.

The stack's step is the layers' own :meth:`~rnnperturb.cells.Cell.forward` and
:meth:`~rnnperturb.cells.Cell.tangent` called in turn over the same namespace
(the pieces of the state taken apart and put together by ``ns.split`` and
``ns.concat``), so every algorithm written against the protocol (deviation,
first order, rank sweep, noise response, the interval and mpmath namespaces)
runs on it unchanged. All layers share the hidden size n (as in torch); layer
l > 0 takes inputs of size n.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnperturb._checks import as_param
from rnnperturb.cells.protocol import Cell

__all__ = ["Stacked", "random_stacked"]


def _prefix(l: int) -> str:
    return f"l{l}."


@dataclass(frozen=True, eq=False)
class Stacked(Cell):
    r"""L layers of cells, layer l's input the output of layer l - 1 at the same step.

    Parameters
    ----------
    layers : sequence of Cell
        The layers, bottom first; all with the same hidden size n, layer 0 with
        the input size m, every other layer with input size n; none with a
        readout of its own.
    V, c : array_like, optional
        Readout on the top layer's h, logits ``y_t = V h^{(L-1)}_t + c``.
    dtype : {float32, float64}, optional
        Default: float32 when every layer is float32, else float64.

    Notes
    -----
    Parameter names are ``"l{l}.{name}"`` (see the module docstring); the state
    is the layers' states one after the other, ``h0`` of shape (B, N) with
    N = :attr:`state_size`.
    """

    layers: tuple = ()
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    kind: ClassVar[str] = "stacked"

    def __post_init__(self):
        layers = self.layers
        if isinstance(layers, Cell) or not isinstance(layers, (tuple, list)) or not layers:
            raise ValueError(f"layers: expected a non-empty sequence of cells, found "
                             f"{type(layers).__name__}")
        for l, layer in enumerate(layers):
            if not isinstance(layer, Cell):
                raise ValueError(f"layers[{l}]: expected a cell, found {type(layer).__name__}")
            if layer.V is not None:
                raise ValueError(f"layers[{l}].V: expected None (the readout belongs to the "
                                 f"stack: Stacked(layers, V=..., c=...)), found shape "
                                 f"{layer.V.shape}")
        n = layers[0].n
        for l, layer in enumerate(layers[1:], 1):
            if layer.n != n:
                raise ValueError(f"layers[{l}].n: expected the hidden size of layer 0, {n}, "
                                 f"found {layer.n}")
            if layer.m != n:
                raise ValueError(f"layers[{l}].m: expected {n} (the output of layer {l - 1}), "
                                 f"found {layer.m}")
        dtype = self.dtype
        if dtype is None:
            dtype = (np.float32 if all(layer.dtype == np.float32 for layer in layers)
                     else np.float64)
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype: expected float32 or float64, found {dtype}")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "layers", tuple(layer.astype(dtype) for layer in layers))
        rec, inp, input_of, bias_of = [], [], {}, {}
        for l, layer in enumerate(self.layers):
            p = _prefix(l)
            rec += [p + k for k in layer.recurrent_names]
            inp += [p + k for k in layer.input_params]
            if l == 0:       # only layer 0's input matrices multiply the stack's input x
                input_of.update({p + k: p + u for k, u in layer.input_of.items()})
                bias_of.update({p + k: p + b for k, b in layer.bias_of.items()})
        object.__setattr__(self, "recurrent_names", tuple(rec))
        object.__setattr__(self, "input_params", tuple(inp))
        object.__setattr__(self, "input_of", input_of)
        object.__setattr__(self, "bias_of", bias_of)
        one = len(self.layers) == 1
        object.__setattr__(self, "diagonal_forcing", tuple(
            _prefix(0) + k for k in self.layers[0].diagonal_forcing) if one else ())
        object.__setattr__(self, "_pieces", [layer.state_size for layer in self.layers])
        V, c = self.V, self.c
        if V is None and c is not None:
            raise ValueError("c: expected None when V is None, found an array")
        if V is not None:
            V = as_param("V", V, shape=(None, n), dtype=dtype)
            c = np.zeros(V.shape[0], dtype) if c is None else c
            object.__setattr__(self, "V", V)
            object.__setattr__(self, "c", as_param("c", c, shape=(V.shape[0],), dtype=dtype))

    def __getattr__(self, name):
        # "l{l}.{k}": parameter k of layer l (only reached when normal lookup fails)
        if name.startswith("l") and "." in name and name != "layers":
            head, _, k = name.partition(".")
            layers = self.__dict__.get("layers", ())
            if head[1:].isdigit() and int(head[1:]) < len(layers):
                layer = layers[int(head[1:])]
                if k in layer.recurrent_names + layer.input_params:
                    return getattr(layer, k)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # ------------------------------------------------------------- sizes
    @property
    def n(self) -> int:
        return self.layers[0].n

    @property
    def m(self) -> int:
        return self.layers[0].m

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def state_size(self) -> int:
        """The sum of the layers' state sizes."""
        return int(sum(self._pieces))

    def layer_state(self, S, l: int) -> np.ndarray:
        """Layer ``l``'s piece of NumPy states ``S`` (..., N): shape (..., N_l)."""
        from rnnperturb.cells.namespace import FLOAT
        return self._split(FLOAT, S)[l]

    def _split(self, ns, s):
        return (s,) if len(self.layers) == 1 else ns.split(s, self._pieces)

    def _join(self, ns, parts):
        return parts[0] if len(parts) == 1 else ns.concat(parts)

    def output(self, ns, s):
        """The top layer's output (its h) of the stack's state."""
        return self.layers[-1].output(ns, self._split(ns, s)[-1])

    def _layer_params(self, P, l):
        p, layer = _prefix(l), self.layers[l]
        return {k: P[p + k] for k in layer.recurrent_names + layer.input_params}

    # ------------------------------------------------------------- protocol
    def forward(self, ns, P, h, x, rec):
        """The layers' steps in turn; ``aux`` holds each layer's intermediates."""
        parts = self._split(ns, h)
        out, auxs, inp = [], [], x
        for l, layer in enumerate(self.layers):
            p = _prefix(l)
            s, aux = layer.forward(ns, self._layer_params(P, l), parts[l], inp,
                                   lambda k, a, p=p: rec(p + k, a))
            out.append(s)
            auxs.append(aux)
            inp = layer.output(ns, s)
        return self._join(ns, out), {"layers": auxs}

    def tangent(self, ns, P, h, aux, dh, rec, dinp):
        """The layers' tangents in turn; layer l > 0's input tangent is the output
        tangent of layer l - 1 through layer l's input matrices."""
        parts, dparts = self._split(ns, h), self._split(ns, dh)
        out, dout = [], None
        for l, layer in enumerate(self.layers):
            p, Pl = _prefix(l), self._layer_params(P, l)
            if l == 0:
                dl = (lambda k, p=p: dinp(p + k))
            else:
                dl = (lambda k, Pl=Pl, layer=layer, d=dout: ns.matvec(Pl[layer.input_of[k]], d))
            ds = layer.tangent(ns, Pl, parts[l], aux["layers"][l], dparts[l],
                               lambda k, v, p=p: rec(p + k, v), dl)
            out.append(ds)
            dout = layer.output(ns, ds)
        return self._join(ns, out)

    def state_bounds(self, h0):
        """The layers' boxes one after the other."""
        from rnnperturb.cells.namespace import FLOAT
        h0 = np.asarray(h0, np.float64)
        los, his = zip(*(layer.state_bounds(s) for layer, s in
                         zip(self.layers, self._split(FLOAT, h0))))
        return np.concatenate(los, axis=-1), np.concatenate(his, axis=-1)

    def trivial_cap(self, h0, B: int) -> np.ndarray:
        """The layers' trivial caps one after the other."""
        from rnnperturb.cells.namespace import FLOAT
        h0 = np.broadcast_to(np.asarray(h0, np.float64), (B, self.state_size))
        return np.concatenate([layer.trivial_cap(s, B) for layer, s in
                               zip(self.layers, self._split(FLOAT, h0))], axis=-1)

    def overwrite_gate(self, aux):
        r"""The layers' overwrite gates one after the other, shape (..., B, L n): a
        layer without a gate (the Elman RNN: every step overwrites its state)
        counts as 1; None when no layer has a gate."""
        gates = [layer.overwrite_gate(a) for layer, a in zip(self.layers, aux["layers"])]
        if all(g is None for g in gates):
            return None
        like = next(g for g in gates if g is not None)
        shape = like.shape[:-1] + (self.n,)
        return np.concatenate([np.ones(shape) if g is None else np.broadcast_to(g, shape)
                               for g in gates], axis=-1)

    @classmethod
    def input_terms(cls, ns, P, X):
        raise NotImplementedError("Stacked.input_terms: only layer 0 sees the inputs; "
                                  "precomputed input terms are not supported for a stack")

    @classmethod
    def hoisted(cls, ns, P, X):
        raise NotImplementedError("Stacked.hoisted: precomputed input terms are not "
                                  "supported for a stack (run Stacked.forward per step)")

    # ------------------------------------------------------------- derived stacks
    def replace(self, **params) -> "Stacked":
        """A new stack with some parameters replaced (names ``"l{l}.k"``, ``V``, ``c``)."""
        allowed = set(self.recurrent_names + self.input_params) | {"V", "c"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(f"replace: expected parameter names among {sorted(allowed)}, "
                             f"found {unknown}")
        per = [{} for _ in self.layers]
        for k, v in params.items():
            if k in ("V", "c"):
                continue
            head, _, name = k.partition(".")
            per[int(head[1:])][name] = v
        layers = tuple(layer.replace(**kw) if kw else layer
                       for layer, kw in zip(self.layers, per))
        V = params.get("V", self.V)
        c = params.get("c", self.c if "V" not in params else None)
        return self._keep_origin(Stacked(layers=layers, V=V, c=c, dtype=self.dtype))

    def astype(self, dtype) -> "Stacked":
        if np.dtype(dtype) == self.dtype:
            return self
        return self._keep_origin(Stacked(layers=tuple(layer.astype(dtype) for layer in self.layers),
                                         V=self.V, c=self.c, dtype=dtype))


def _from_params(params: dict, *, dtype=None) -> Stacked:
    from rnnperturb.cells.registry import cell_from_params
    params = dict(params)
    kinds = params.pop("layers", None)
    kinds = None if kinds is None else np.asarray(kinds)
    if kinds is None or kinds.ndim != 1 or kinds.dtype.kind != "U" or kinds.size == 0:
        found = "none" if kinds is None else f"shape {kinds.shape} dtype {kinds.dtype}"
        raise ValueError(f"layers: expected a 1-d array of the layers' cell names, found {found}")
    readout = {k: params.pop(k) for k in ("V", "c") if k in params}
    per = [{} for _ in kinds]
    for key, v in params.items():
        head, dot, name = key.partition(".")
        l = int(head[1:]) if dot and head[:1] == "l" and head[1:].isdigit() else None
        if l is None or l >= len(kinds):
            raise ValueError(f"stacked parameters: expected names 'l<layer>.<name>' with layer "
                             f"< {len(kinds)}, found {key!r}")
        per[l][name] = v
    layers = tuple(cell_from_params(str(k), p, dtype=dtype) for k, p in zip(kinds, per))
    return Stacked(layers=layers, **readout, dtype=dtype)


Stacked.from_params = staticmethod(_from_params)
Stacked.from_params.__doc__ = """A stack from a parameter dict: ``layers`` (the layers' cell
names, bottom first), every layer's parameters as ``'l{l}.name'``, optional ``V``, ``c``."""


def random_stacked(kinds, n: int = 8, m: int = 3, *, spectral_norm: float = 0.9,
                   n_out: int | None = None, seed=None, **kw) -> Stacked:
    """A random stack: one :func:`~rnnperturb.cells.random.random_cell` per layer.

    Parameters
    ----------
    kinds : sequence of str
        Registered cell names, bottom layer first (e.g. ``["lstm", "lstm"]``).
    n, m : int
        Hidden size (every layer) and input size (layer 0).
    spectral_norm, kw
        Passed to :func:`~rnnperturb.cells.random.random_cell`.
    n_out : int, optional
        Add a random readout on the top layer's h.
    seed : int or numpy.random.Generator
    """
    from rnnperturb._checks import as_generator, check_int
    from rnnperturb.cells.random import random_cell
    if isinstance(kinds, str) or not kinds:
        raise ValueError(f"kinds: expected a non-empty sequence of cell names, found {kinds!r}")
    rng = as_generator(seed)
    layers = [random_cell(k, n, m if l == 0 else n, spectral_norm=spectral_norm, seed=rng, **kw)
              for l, k in enumerate(kinds)]
    V = None
    if n_out is not None:
        V = rng.standard_normal((check_int("n_out", n_out, low=1), n)) / np.sqrt(n)
    return Stacked(layers=tuple(layers), V=V)
