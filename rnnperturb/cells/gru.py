r"""The gated recurrent unit, in PyTorch's conventions (``torch.nn.GRU``).

.. math::
    r_t &= \sigma(W_r h_{t-1} + U_r x_t + b_r) \\
    z_t &= \sigma(W_z h_{t-1} + U_z x_t + b_z) \\
    g_t &= \tanh(U_n x_t + b_n + r_t \odot (W_n h_{t-1} + b_{hn})) \\
    h_t &= (1 - z_t) \odot g_t + z_t \odot h_{t-1}

The recurrent matrices are the three n x n gate blocks of torch's
``weight_hh`` (order r, z, n); the input matrices the blocks of ``weight_ih``.
torch keeps two biases per gate; for r and z only their sum matters
(``b_r = b_ir + b_hr``), while the hidden bias of the candidate, ``b_hn``, sits
inside the reset product and is kept apart. Everything specific to this cell
lives in this module (see :mod:`rnnperturb.cells.protocol`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnperturb.cells.protocol import Cell

__all__ = ["GRU"]


@dataclass(frozen=True, eq=False)
class GRU(Cell):
    r"""Gated recurrent unit with exactly ``torch.nn.GRU``'s equations and gate order.

    .. math::
        r_t &= \sigma(W_r h_{t-1} + U_r x_t + b_r),\qquad
        z_t = \sigma(W_z h_{t-1} + U_z x_t + b_z) \\
        g_t &= \tanh(U_n x_t + b_n + r_t \odot (W_n h_{t-1} + b_{hn})),\qquad
        h_t = (1 - z_t) \odot g_t + z_t \odot h_{t-1}

    Parameters
    ----------
    Wr, Wz, Wn : array_like, shape (n, n)
        Recurrent matrices (torch: ``weight_hh`` rows 0:n, n:2n, 2n:3n).
    Ur, Uz, Un : array_like, shape (n, m)
        Input matrices (torch: ``weight_ih`` blocks in the same order).
    br, bz : array_like, shape (n,)
        Gate biases (torch: ``b_ir + b_hr``, ``b_iz + b_hz``).
    bn, bhn : array_like, shape (n,)
        Input and hidden bias of the candidate (torch: ``b_in``, ``b_hn``).
    V, c : array_like, optional
        Readout, logits ``y_t = V h_t + c``.
    dtype : {float32, float64}, optional
    """

    Wr: np.ndarray = None
    Wz: np.ndarray = None
    Wn: np.ndarray = None
    Ur: np.ndarray = None
    Uz: np.ndarray = None
    Un: np.ndarray = None
    br: np.ndarray = None
    bz: np.ndarray = None
    bn: np.ndarray = None
    bhn: np.ndarray = None
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    kind: ClassVar[str] = "gru"
    recurrent_names: ClassVar[tuple[str, ...]] = ("Wr", "Wz", "Wn")
    input_params: ClassVar[tuple[str, ...]] = ("Ur", "Uz", "Un", "br", "bz", "bn", "bhn")
    input_of: ClassVar[dict[str, str]] = {"Wr": "Ur", "Wz": "Uz", "Wn": "Un"}
    diagonal_forcing: ClassVar[tuple[str, ...]] = ("Wr", "Wz", "Wn")

    def __post_init__(self):
        n, m = self._sizes("Wr", "Ur")
        self._validate({"Wr": (n, n), "Wz": (n, n), "Wn": (n, n),
                        "Ur": (n, m), "Uz": (n, m), "Un": (n, m),
                        "br": (n,), "bz": (n,), "bn": (n,), "bhn": (n,)})

    @property
    def n(self) -> int:
        return self.Wr.shape[0]

    @property
    def m(self) -> int:
        return self.Ur.shape[1]

    # ------------------------------------------------------------- protocol
    @staticmethod
    def forward(ns, P, h, x, rec):
        r = ns.sigmoid(rec("Wr", h) + ns.matvec(P["Ur"], x) + P["br"])
        z = ns.sigmoid(rec("Wz", h) + ns.matvec(P["Uz"], x) + P["bz"])
        nh = rec("Wn", h) + P["bhn"]
        g = ns.tanh(ns.matvec(P["Un"], x) + P["bn"] + r * nh)
        return ns.lerp(g, h, z), {"r": r, "z": z, "nh": nh, "g": g}

    @staticmethod
    def tangent(ns, P, h, aux, dh, rec, dinp):
        r, z, nh, g = aux["r"], aux["z"], aux["nh"], aux["g"]
        dr = r * (1 - r) * (rec("Wr", dh) + dinp("Wr"))
        dz = z * (1 - z) * (rec("Wz", dh) + dinp("Wz"))
        dg = (1 - g * g) * (dinp("Wn") + dr * nh + r * rec("Wn", dh))
        return (1 - z) * dg + dz * (h - g) + z * dh

    def overwrite_gate(self, aux):
        """:math:`1 - z_t`: torch's update gate z keeps the state when it is near 1."""
        return 1 - aux["z"]

    def state_bounds(self, h0):
        """Convex combinations of :math:`g_t \\in (-1, 1)` and :math:`h_{t-1}`:
        :math:`[\\min(h_{0,i}, -1), \\max(h_{0,i}, 1)]`."""
        h0 = np.asarray(h0, np.float64)
        return np.minimum(h0, -1.0), np.maximum(h0, 1.0)

