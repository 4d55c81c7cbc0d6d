r"""The long short-term memory cell, in PyTorch's conventions (``torch.nn.LSTM``).

.. math::
    i_t &= \sigma(W_i h_{t-1} + U_i x_t + b_i),\qquad
    f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f) \\
    g_t &= \tanh(W_g h_{t-1} + U_g x_t + b_g),\qquad
    o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o) \\
    c_t &= f_t \odot c_{t-1} + i_t \odot g_t,\qquad
    h_t = o_t \odot \tanh(c_t)

The state is :math:`s_t = (h_t, c_t)`, one array of size N = 2n (h first); the
recurrent matrices are the four n x n gate blocks of torch's ``weight_hh``
(order i, f, g, o) and act on h only; the output a readout sees is
:math:`h_t` (:meth:`LSTM.output`). torch keeps two biases per gate; only their
sum matters (``b_i = b_ii + b_hi``, ...); :func:`rnnperturb.from_torch` keeps
the original split for the way back. ``proj_size`` is not supported.
Everything specific to this cell lives in this module (see
:mod:`rnnperturb.cells.protocol`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnperturb.cells.protocol import Cell

__all__ = ["LSTM"]


@dataclass(frozen=True, eq=False)
class LSTM(Cell):
    r"""Long short-term memory with exactly ``torch.nn.LSTM``'s equations and gate order.

    .. math::
        i_t &= \sigma(W_i h_{t-1} + U_i x_t + b_i),\qquad
        f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f) \\
        g_t &= \tanh(W_g h_{t-1} + U_g x_t + b_g),\qquad
        o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t,\qquad h_t = o_t \odot \tanh(c_t)

    The state is ``s = [h, c]`` (N = 2n): ``h0`` of :meth:`run` is ``[h_0, c_0]``
    of shape (B, 2n) (torch's ``(h_0, c_0)`` concatenated), :meth:`run` returns
    the h of every step (``state='full'``: h and c), and the deviation
    functions report the deviation of h unless asked for the full state.

    Parameters
    ----------
    Wi, Wf, Wg, Wo : array_like, shape (n, n)
        Recurrent matrices (torch: ``weight_hh`` rows 0:n, n:2n, 2n:3n, 3n:4n).
    Ui, Uf, Ug, Uo : array_like, shape (n, m)
        Input matrices (torch: ``weight_ih`` blocks in the same order).
    bi, bf, bg, bo : array_like, shape (n,)
        Gate biases (torch: ``b_ih + b_hh`` of each gate).
    V, c : array_like, optional
        Readout on h, logits ``y_t = V h_t + c``.
    dtype : {float32, float64}, optional
    """

    Wi: np.ndarray = None
    Wf: np.ndarray = None
    Wg: np.ndarray = None
    Wo: np.ndarray = None
    Ui: np.ndarray = None
    Uf: np.ndarray = None
    Ug: np.ndarray = None
    Uo: np.ndarray = None
    bi: np.ndarray = None
    bf: np.ndarray = None
    bg: np.ndarray = None
    bo: np.ndarray = None
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    kind: ClassVar[str] = "lstm"
    recurrent_names: ClassVar[tuple[str, ...]] = ("Wi", "Wf", "Wg", "Wo")
    input_params: ClassVar[tuple[str, ...]] = ("Ui", "Uf", "Ug", "Uo", "bi", "bf", "bg", "bo")
    input_of: ClassVar[dict[str, str]] = {"Wi": "Ui", "Wf": "Uf", "Wg": "Ug", "Wo": "Uo"}
    bias_of: ClassVar[dict[str, str]] = {"Wi": "bi", "Wf": "bf", "Wg": "bg", "Wo": "bo"}
    # the forcing of every gate reaches both h and c: (2n x n), not diagonal
    diagonal_forcing: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        n, m = self._sizes("Wi", "Ui")
        self._validate({**{k: (n, n) for k in self.recurrent_names},
                        **{k: (n, m) for k in ("Ui", "Uf", "Ug", "Uo")},
                        **{k: (n,) for k in ("bi", "bf", "bg", "bo")}})

    @property
    def n(self) -> int:
        return self.Wi.shape[0]

    @property
    def m(self) -> int:
        return self.Ui.shape[1]

    @classmethod
    def state_size_for(cls, n: int) -> int:
        """2n: the state is ``[h, c]``."""
        return 2 * n

    def output(self, ns, s):
        """The h of the state ``[h, c]``."""
        return ns.split(s, 2)[0]

    # ------------------------------------------------------------- protocol
    @staticmethod
    def forward(ns, P, h, x, rec):
        hp, cp = ns.split(h, 2)
        i = ns.sigmoid(rec("Wi", hp) + ns.matvec(P["Ui"], x) + P["bi"])
        f = ns.sigmoid(rec("Wf", hp) + ns.matvec(P["Uf"], x) + P["bf"])
        g = ns.tanh(rec("Wg", hp) + ns.matvec(P["Ug"], x) + P["bg"])
        o = ns.sigmoid(rec("Wo", hp) + ns.matvec(P["Uo"], x) + P["bo"])
        c = f * cp + i * g
        tc = ns.tanh(c)
        return ns.concat((o * tc, c)), {"i": i, "f": f, "g": g, "o": o, "cp": cp, "tc": tc}

    @staticmethod
    def tangent(ns, P, h, aux, dh, rec, dinp):
        i, f, g, o, cp, tc = (aux[k] for k in ("i", "f", "g", "o", "cp", "tc"))
        dhp, dcp = ns.split(dh, 2)
        di = i * (1 - i) * (rec("Wi", dhp) + dinp("Wi"))
        df = f * (1 - f) * (rec("Wf", dhp) + dinp("Wf"))
        dg = (1 - g * g) * (rec("Wg", dhp) + dinp("Wg"))
        do = o * (1 - o) * (rec("Wo", dhp) + dinp("Wo"))
        dc = df * cp + f * dcp + di * g + i * dg
        return ns.concat((do * tc + o * (1 - tc * tc) * dc, dc))

    @staticmethod
    def tangent_f32(h, aux, dh, rec, bufs):
        r"""The map of :meth:`tangent` (no input tangent) on a float32 stack of
        tangents, in work buffers instead of temporaries: the block propagators of
        :class:`rnnperturb.bounds.trajectory._Blocks`.

        With the coefficient vectors of :meth:`tangent` as it computes them,
        :math:`\tilde s_i = fl(i\,fl(1-i))`, :math:`\tilde s_f`, :math:`\tilde s_o`
        alike, :math:`\tilde\tau_g = fl(1-g^2)` and :math:`\tilde\kappa =
        fl(o\,fl(1-\tanh(c)^2))`, the map :math:`(v_h, v_c) \mapsto (w_h, w_c)` is

        .. math::
            w_c &= (\tilde s_f c_{t-1})\odot W_f v_h + f\odot v_c
                   + (\tilde s_i g)\odot W_i v_h + (i\tilde\tau_g)\odot W_g v_h, \\
            w_h &= (\tilde s_o\tanh(c_t))\odot W_o v_h + \tilde\kappa\odot w_c,

        the same exact map as :meth:`tangent`. The four products of two
        coefficients are rounded in float64 first (:meth:`F32Value.scaled` with
        ``rounded=1``: one more factor :math:`(1+\delta)` on their paths, where
        :meth:`tangent` scales twice), so the error bound :math:`\gamma_D|L|_{maj}|v|
        + \alpha` of :class:`~rnnperturb.verified.linalg.F32Value` holds with the
        majorant :math:`|L|_{maj}` of :meth:`tangent` (:math:`|ab| = |a||b|`). Copying
        :math:`v_h` into a contiguous buffer (for the GEMMs) is exact.

        Parameters
        ----------
        h : ndarray, shape (S, 1, B, 2n)
            :math:`s_{t-1} = (h_{t-1}, c_{t-1})` (any shape that broadcasts against
            the tangents).
        aux : dict
            From :meth:`forward`, arrays of shape (S, 1, B, n).
        dh : F32Value, value (S, k, B, 2n)
            The tangents: k columns of B sequences (``dh.val`` is only read).
        rec : callable ``rec(name, v, out)``
            :meth:`F32Value.matvec` by the float32 matrix ``name``, into ``out``.
        bufs : list of 3 float32 arrays, shape (S, k, B, 2n)
            Work space (overwritten); the result is in ``bufs[1]``.

        Returns
        -------
        F32Value, value (S, k, B, 2n)
        """
        from rnnperturb.verified.linalg import F32Value
        i, f, g, o, cp, tc = (aux[k] for k in ("i", "f", "g", "o", "cp", "tc"))
        N = dh.val.shape[-1]
        n = N // 2
        half = dh.val.shape[:-1] + (n,)
        size = int(np.prod(half))
        # contiguous halves of the work buffers: two in bufs[0], two in bufs[2]
        A0, A1 = (bufs[0].reshape(-1)[j * size:(j + 1) * size].reshape(half) for j in (0, 1))
        H = bufs[2].reshape(-1)[:size].reshape(half)
        np.copyto(H, dh.val[..., :n])                       # v_h, exactly
        vh = F32Value(H, dh.depth, dh.alpha, dh.mu)
        vc = F32Value(dh.val[..., n:], dh.depth, dh.alpha, dh.mu)
        out = bufs[1]
        wc = rec("Wf", vh, A0).scaled(f * (1 - f) * cp, rounded=1, out=out[..., n:])
        for name, coef in (("Wi", i * (1 - i) * g), ("Wg", i * (1 - g * g))):
            wc = wc.plus(rec(name, vh, A0).scaled(coef, rounded=1, out=A0), out=wc.val)
        wc = wc.plus(vc.scaled(f, out=A1), out=wc.val)
        wh = rec("Wo", vh, A0).scaled(o * (1 - o) * tc, rounded=1, out=out[..., :n])
        wh = wh.plus(wc.scaled(o * (1 - tc * tc), out=A1), out=wh.val)
        return F32Value(out, max(wh.depth, wc.depth), max(wh.alpha, wc.alpha),
                        max(wh.mu, wc.mu))

    def overwrite_gate(self, aux):
        r""":math:`1 - f_t`: the forget gate keeps the cell state :math:`c` when it is
        near 1 (:math:`c_t = f_t c_{t-1} + i_t g_t`; the input gate is not tied to it)."""
        return 1 - aux["f"]

    def state_bounds(self, h0, *, steps: int | None = None):
        r"""A box for every state ``[h_t, c_t]``, t >= 1, of any LSTM with these
        input weights and biases (any recurrent matrices).

        :math:`h_t = o_t\tanh(c_t) \in [-1, 1]`. For c, :math:`|c_t| \le
        f_t|c_{t-1}| + i_t|g_t| < |c_{t-1}| + 1`, so :math:`|c_t| < |c_0| + t`;
        no bound holds for every t (with other recurrent matrices :math:`f_t`
        may come arbitrarily close to 1 and :math:`i_t g_t` to 1), so without
        ``steps`` the c half is infinite, with ``steps = T`` it is
        :math:`[-(|c_0| + T), |c_0| + T]` (every t <= T), widened by
        :math:`e^{2Tu}` (u the unit roundoff of the cell's dtype) so that it also
        holds for the trajectory computed in that dtype.

        Parameters
        ----------
        h0 : array_like, shape (B, 2n)
            ``[h_0, c_0]``.
        steps : int, optional
            The largest t the box must hold for.

        Returns
        -------
        lo, hi : ndarray, shape (B, 2n)
        """
        h0 = np.asarray(h0, np.float64)
        n = h0.shape[-1] // 2
        c0 = np.abs(h0[..., n:])
        if steps is None:
            cw = np.full_like(c0, np.inf)
        else:
            # also for a trajectory computed in the cell's dtype: fl(fl(f c) + fl(i g)) grows
            # |c| + 1 by at most (1 + u)^2, so |c_t| <= (|c_0| + t)(1 + u)^(2t) <= .. e^(2tu)
            u = float(np.finfo(self.dtype).eps) / 2
            grow = np.nextafter(np.exp(2.0 * float(steps) * u) * (1 + 2.0 ** -50), np.inf)
            cw = np.nextafter(np.nextafter(c0 + float(steps), np.inf) * grow, np.inf)
        lo = np.concatenate([np.full(c0.shape, -1.0), -cw], axis=-1)
        hi = np.concatenate([np.full(c0.shape, 1.0), cw], axis=-1)
        return lo, hi
