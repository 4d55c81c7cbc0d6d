r"""The minimal gated unit (MGRU; Zhou, Wu, Zhang & Zhou 2016, arXiv:1603.09420).

.. math::
    f_t &= \sigma(W_f h_{t-1} + U_f x_t + b_f) \\
    c_t &= \tanh(W_h (f_t \odot h_{t-1}) + U_h x_t + b_h) \\
    h_t &= (1 - f_t) \odot h_{t-1} + f_t \odot c_t

A high gate value means *overwrite*; near 0 the state is kept. Everything
specific to this cell lives in this module (see :mod:`rnnperturb.cells.protocol`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnperturb.cells.namespace import FLOAT
from rnnperturb.cells.protocol import Cell

__all__ = ["MGRU"]


@dataclass(frozen=True, eq=False)
class MGRU(Cell):
    r"""Minimal gated recurrent unit (Zhou et al. 2016, arXiv:1603.09420).

    .. math::
        f_t &= \sigma(W_f h_{t-1} + U_f x_t + b_f) \\
        c_t &= \tanh(W_h (f_t \odot h_{t-1}) + U_h x_t + b_h) \\
        h_t &= (1 - f_t) \odot h_{t-1} + f_t \odot c_t

    A gate value near 0 *keeps* the state, near 1 overwrites it.

    Parameters
    ----------
    Wf, Wh : array_like, shape (n, n)
        Recurrent matrices of the gate and of the candidate.
    Uf, Uh : array_like, shape (n, m)
        Input matrices.
    bf, bh : array_like, shape (n,)
        Biases.
    V, c : array_like, optional
        Readout, as for :class:`ElmanRNN`.
    dtype : {float32, float64}, optional
    """

    Wf: np.ndarray = None
    Uf: np.ndarray = None
    bf: np.ndarray = None
    Wh: np.ndarray = None
    Uh: np.ndarray = None
    bh: np.ndarray = None
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    kind: ClassVar[str] = "mgru"
    recurrent_names: ClassVar[tuple[str, ...]] = ("Wf", "Wh")
    input_params: ClassVar[tuple[str, ...]] = ("Uf", "bf", "Uh", "bh")
    input_of: ClassVar[dict[str, str]] = {"Wf": "Uf", "Wh": "Uh"}
    diagonal_forcing: ClassVar[tuple[str, ...]] = ("Wh",)

    def __post_init__(self):
        n, m = self._sizes("Wf", "Uf")
        self._validate({"Wf": (n, n), "Uf": (n, m), "bf": (n,),
                        "Wh": (n, n), "Uh": (n, m), "bh": (n,)})

    @property
    def n(self) -> int:
        return self.Wf.shape[0]

    @property
    def m(self) -> int:
        return self.Uf.shape[1]

    # ------------------------------------------------------------- protocol
    @staticmethod
    def forward(ns, P, h, x, rec):
        f = ns.sigmoid(rec("Wf", h) + ns.matvec(P["Uf"], x) + P["bf"])
        fh = f * h
        c = ns.tanh(rec("Wh", fh) + ns.matvec(P["Uh"], x) + P["bh"])
        return ns.lerp(h, c, f), {"f": f, "c": c}

    @staticmethod
    def tangent(ns, P, h, aux, dh, rec, dinp):
        f, c = aux["f"], aux["c"]
        df = f * (1 - f) * (rec("Wf", dh) + dinp("Wf"))
        dc = (1 - c * c) * (rec("Wh", df * h + f * dh) + dinp("Wh"))
        return (1 - f) * dh + df * (c - h) + f * dc

    def state_bounds(self, h0):
        """Convex combinations of :math:`h_{t-1}` and :math:`c_t \\in (-1, 1)`:
        :math:`[\\min(h_{0,i}, -1), \\max(h_{0,i}, 1)]`."""
        h0 = np.asarray(h0, np.float64)
        return np.minimum(h0, -1.0), np.maximum(h0, 1.0)

    def trivial_cap(self, h0, B: int) -> np.ndarray:
        from rnnperturb.verified.linalg import up
        h0 = np.broadcast_to(np.asarray(h0, np.float64), (B, self.n))
        lo, hi = self.state_bounds(h0)
        return up(hi - lo, 2)

    # -------------------------------------------------------------- helpers
    def gates(self, h, x, Wf=None, Wh=None):
        """Return ``(f_t, c_t)`` for batches h (B, n), x (B, m)."""
        P = self._matrices({k: v for k, v in (("Wf", Wf), ("Wh", Wh)) if v is not None})
        _, aux = self.forward(FLOAT, P, h, x, lambda k, a: FLOAT.matvec(P[k], a))
        return aux["f"], aux["c"]
