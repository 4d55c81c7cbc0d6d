r"""The Elman (tanh) RNN.

.. math:: h_t = \tanh(W h_{t-1} + U x_t + b)

Everything specific to this cell lives in this module (see
:mod:`rnnperturb.cells.protocol`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnperturb.cells.protocol import Cell

__all__ = ["ElmanRNN"]


@dataclass(frozen=True, eq=False)
class ElmanRNN(Cell):
    r"""Elman RNN, :math:`h_t = \tanh(W h_{t-1} + U x_t + b)`.

    Parameters
    ----------
    W : array_like, shape (n, n)
        Recurrent matrix.
    U : array_like, shape (n, m)
        Input matrix.
    b : array_like, shape (n,)
        Bias.
    V : array_like, shape (k, n), optional
        Readout matrix, logits ``y_t = V h_t + c``.
    c : array_like, shape (k,), optional
        Readout bias (zeros when V is given alone).
    dtype : {float32, float64}, optional
        Default float64 unless every parameter is float32.
    """

    W: np.ndarray = None
    U: np.ndarray = None
    b: np.ndarray = None
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    kind: ClassVar[str] = "elman"
    recurrent_names: ClassVar[tuple[str, ...]] = ("W",)
    input_params: ClassVar[tuple[str, ...]] = ("U", "b")
    input_of: ClassVar[dict[str, str]] = {"W": "U"}
    diagonal_forcing: ClassVar[tuple[str, ...]] = ("W",)

    def __post_init__(self):
        n, m = self._sizes("W", "U")
        self._validate({"W": (n, n), "U": (n, m), "b": (n,)})

    @property
    def n(self) -> int:
        return self.W.shape[0]

    @property
    def m(self) -> int:
        return self.U.shape[1]

    # ------------------------------------------------------------- protocol
    @staticmethod
    def forward(ns, P, h, x, rec):
        a = rec("W", h) + ns.matvec(P["U"], x) + P["b"]
        hn = ns.tanh(a)
        return hn, {"h": hn}

    @staticmethod
    def tangent(ns, P, h, aux, dh, rec, dinp):
        hn = aux["h"]
        return (1 - hn * hn) * (rec("W", dh) + dinp("W"))

    def state_bounds(self, h0):
        h0 = np.asarray(h0, np.float64)
        return np.full(h0.shape, -1.0), np.full(h0.shape, 1.0)

    def trivial_cap(self, h0, B: int) -> np.ndarray:
        """2 per component (both states are tanh outputs), whatever ``h0``."""
        return np.full((B, self.n), 2.0)

    # -------------------------------------------------------------- helpers
    def preactivation(self, h, x, W=None):
        """:math:`a_t = W h_{t-1} + U x_t + b` for batches h (B, n), x (B, m)."""
        W = self.W if W is None else W
        return h @ W.T + x @ self.U.T + self.b
