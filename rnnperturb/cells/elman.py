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
    bias_of: ClassVar[dict[str, str]] = {"W": "b"}
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

    @staticmethod
    def tangent_f32(h, aux, dh, rec, bufs):
        r"""The map of :meth:`tangent` (no input tangent) on a float32 stack of
        tangents, :math:`v \mapsto fl(1-h_t^2)\odot W v`, without temporaries (the
        block propagators of :class:`rnnperturb.bounds.trajectory._Blocks`; the
        same operations as :meth:`tangent`, so the same error bound of
        :class:`~rnnperturb.verified.linalg.F32Value`).

        Parameters
        ----------
        h : ndarray, shape (S, 1, B, n)
            (any shape that broadcasts against the tangents).
        aux : dict
            From :meth:`forward`, arrays of the shape of ``h``.
        dh : F32Value, value (S, k, B, n)
            k columns of B sequences.
        rec : callable ``rec(name, v, out)``
        bufs : list of 3 float32 arrays, shape (S, k, B, n)
            Work space; the result is in ``bufs[0]``.

        Returns
        -------
        F32Value, value (S, k, B, n)
        """
        hn = aux["h"]
        A = rec("W", dh, bufs[0])
        return A.scaled(1 - hn * hn, out=A.val)

    @staticmethod
    def tangent_abs(h, aux, v, rec):
        r"""The majorant of :meth:`tangent` (what it computes on an
        :class:`~rnnperturb.verified.linalg.AbsValue`, the same operations), with
        :math:`|W|` given: ``rec(name, v)`` is ``AbsValue.absmatvec`` by a
        precomputed :math:`|W|^T`.

        Parameters
        ----------
        h : ndarray, shape (S, B, n)
        aux : dict
            From :meth:`forward`, arrays of shape (S, B, n).
        v : AbsValue, value (..., S, B, n)
        rec : callable ``rec(name, v)``

        Returns
        -------
        AbsValue
        """
        hn = aux["h"]
        return rec("W", v).scaled(1 - hn * hn)

    def state_bounds(self, h0):
        h0 = np.asarray(h0, np.float64)
        return np.full(h0.shape, -1.0), np.full(h0.shape, 1.0)

    def trivial_cap(self, h0, B: int) -> np.ndarray:
        """2 per component (both states are tanh outputs), whatever ``h0``."""
        return np.full((B, self.n), 2.0)

    # ----- certified trajectory bound (bounds/trajectory.py)
    def rounding_context(self, rec):
        """Verified constants of one float64 trajectory with recurrent matrices
        ``rec`` (dict of (n, n)); see :meth:`Cell.rounding_step`."""
        from rnnperturb.verified.linalg import VerifiedMatrix, gamma
        b = np.asarray(self.b, np.float64)
        return {"W": VerifiedMatrix(rec["W"]), "U": VerifiedMatrix(self.U), "b": b,
                "absb": np.abs(b), "K": gamma(self.n + self.m + 3)}

    def rounding_step(self, ctx, h, rho, N, x, absx, xnorm, exact, linear):
        r"""One Elman step with its rounding enclosure (protocol:
        :meth:`Cell.rounding_step`; proof in :mod:`rnnperturb.bounds.trajectory`).

        Linear part (``linear=True``): with :math:`\tilde d = fl(1 - \tilde h_t^2)`
        (the coefficient of :meth:`tangent`), :math:`r_t = \operatorname{diag}(\tilde d)
        W r_{t-1} + g_t` where, with :math:`t = \tanh(\tilde a)`, :math:`|t - \tilde h|
        \le \epsilon|\tilde h|`, :math:`|\tanh'(\tilde a) - \tilde d| \le \delta d :=
        \epsilon|\tilde h|(2|\tilde h| + \epsilon) + u\tilde h^2 + 1.01u|\tilde d|`, and
        :math:`|g_t| \le \delta d\,|W r| + (\tilde d + \delta d)\lambda^a + q + \epsilon|\tilde h_t|`
        (:math:`q`: the exact Taylor remainder of tanh about :math:`\tilde a` over
        :math:`\pm\rho^a`).
        """
        from rnnperturb.verified.activation import (TANH_KAPPA, act_error, slope_max_ball,
                                                    taylor_remainder_max)
        from rnnperturb.verified.linalg import U64, up, vec_norm_upper as nrm
        tiny = 1e-120
        W, U = ctx["W"], ctx["U"]
        eps = act_error("tanh")
        a = h @ W.AT + (x @ U.AT + ctx["b"])
        ah = np.abs(h)
        # with exact=True, |W||h| and |U||x| never exceed the row-norm bounds ||W_i|| ||h||,
        # ||U_i|| ||x|| (Cauchy-Schwarz): not formed
        loc_a = up(ctx["K"] * (W.absmv(ah, None if exact else nrm(ah), exact)
                               + U.absmv(absx, None if exact else xnorm, exact)
                               + ctx["absb"]), 3)
        prop_a = W.absmv(rho, N, exact)
        rad = up(prop_a + loc_a, 2)
        s = slope_max_ball("tanh", a, rad)
        hn = np.tanh(a)
        ahn = np.abs(hn)
        loc_h = up(s * loc_a + eps * ahn, 2) + tiny
        rho_n = up(s * prop_a + loc_h, 2)
        N_n = nrm(rho_n)
        if linear != "block":   # block propagators: the driver has its own norm bound
            N_n = np.minimum(up(W.dnorm(s) * N + nrm(loc_h), 2), N_n)
        lin = None
        if linear:
            d = 1 - hn * hn
            dd = up(eps * ahn * (2 * ahn + eps + 1e-100) + U64 * hn * hn
                    + 1.01 * U64 * np.abs(d), 4) + 1e-119
            # small radii: the Lagrange bound 0.5 max|tanh''| rad^2 (<= 4e-13, one
            # candidate of taylor_remainder_max) saves the tanh calls of the latter
            q = (0.5 * TANH_KAPPA * rad * rad * (1 + 4 * U64) + 1e-120
                 if float(np.max(rad)) <= 2.0 ** -20 else
                 taylor_remainder_max("tanh", a, -rad, rad))
            gam = up(dd * prop_a + (np.abs(d) + dd) * loc_a + q + eps * ahn, 4) + tiny
            lin = ({"h": hn}, gam)
        return hn, rho_n, N_n, loc_h, lin

    # ----- memory statistics (stats/memory.py)
    def overwrite_gate(self, aux):
        """None: the Elman RNN has no gate (it overwrites its state every step)."""
        return None

    # ----- global bound (bounds/global_bound.py)
    def global_box_map(self, P, reach):
        r""":math:`u_t = \tanh(|b| + |W| u_{t-1} + r\|U_{i,:}\|_2)`, rounded up
        (protocol: :meth:`Cell.global_box_map`)."""
        from rnnperturb.verified.linalg import up
        from rnnperturb.verified.outward import mv_up, tanh_up
        W_abs, b_abs, rW = np.abs(P["W"]), np.abs(P["b"]), reach["W"]

        def phi(v):
            return tanh_up(up(b_abs + mv_up(W_abs, v) + rW, 3))
        return phi

    def global_simple(self, P, Q):
        r""":math:`\|e_t\| \le \|W'\|_2\|e_{t-1}\| + \|\Delta W\|_2 s` for
        :math:`\|h_{t-1}\| \le s`, :math:`|\tanh'| \le 1` (protocol:
        :meth:`Cell.global_simple`)."""
        from rnnperturb.verified.linalg import spectral_norm_upper, up
        from rnnperturb.verified.outward import norm_up
        rate = spectral_norm_upper(Q["W"])
        dW = norm_up(Q["W"] - P["W"])
        return rate, (lambda s: float(up(dW * s)))

    @staticmethod
    def _global_centres(Wm, b, U, r, T, rho0, box):
        r"""Input-free centre trajectory and a radius around it.

        :math:`\tilde c_t = fl(\tanh(W\tilde c_{t-1} + b))`, :math:`\tilde c_0 = 0`, and
        :math:`\rho_t \ge \|h_t - \tilde c_t\|_2` for every input with
        :math:`\|x\| \le r`: tanh is 1-Lipschitz elementwise, so
        :math:`\rho_t = \|W\|_2\rho_{t-1} + \|U\|_2 r + \|\delta_t\|_2` with
        :math:`\delta_t` the rounding error of the step that computed
        :math:`\tilde c_t`; also :math:`\rho_t \le \|u_t + |\tilde c_t|\|_2`.

        Returns ``c`` (T+1, n) and ``rho`` (T+1,).
        """
        from rnnperturb.verified.linalg import U64, gamma, up
        from rnnperturb.verified.outward import norm_up, vec_norm_up
        n = Wm.shape[0]
        nW, nU = norm_up(Wm), norm_up(U)
        Wa, ba = np.abs(Wm), np.abs(b)
        c = np.zeros((T + 1, n))
        rho = np.empty(T + 1)
        rho[0] = rho0
        for t in range(1, T + 1):
            c[t] = np.tanh(Wm @ c[t - 1] + b)
            delta = up(gamma(n + 2) * (Wa @ np.abs(c[t - 1]) + ba), n + 1) + 8 * U64 * np.abs(c[t])
            nd = vec_norm_up(delta)
            lip = float(up(nW * rho[t - 1] + nU * r + nd, 3))
            boxr = float(np.sqrt(up(np.sum((box[t] + np.abs(c[t])) ** 2), 2 * n)) * (1 + 4 * U64))
            rho[t] = min(lip, boxr)
        return c, rho

    @staticmethod
    def _global_centre_forcing(w, dW, dWa, c, rho_c, nA):
        r"""Upper bound of :math:`\|\mathrm{diag}(w)\Delta W h\|_2` over
        :math:`\|h - c\|_2 \le \rho_c`, with :math:`nA \ge \|\mathrm{diag}(w)\Delta W\|_2`."""
        from rnnperturb.verified.linalg import U64, gamma, up
        n = len(c)
        z = np.abs(w * (dW @ c)) + w * up(gamma(n + 3) * (dWa @ np.abs(c)), n + 1)
        return float(up(np.sqrt(up(z @ z, n)) * (1 + 4 * U64) + nA * rho_c, 2))

    def global_recursion(self, P, Q, r, rho0, boxes):
        r"""The Elman refinements 2-5 of :mod:`rnnperturb.bounds.global_bound`
        (protocol: :meth:`Cell.global_recursion`).

        Slopes :math:`g_i = \tanh'(|b_i| - R_i)` where the bias dominates the
        pre-activation radius :math:`R_i` of both cells (else 1), so that
        :math:`|e_t| \le G|\delta_t|`, :math:`\delta_t = W' e_{t-1} + \Delta W h_{t-1}
        = W e_{t-1} + \Delta W h'_{t-1}`; norm recursions
        :math:`\|S e_t\| \le \|S G W' S^{-1}\|_2\|S e_{t-1}\| + \max\|S G \Delta W h\|`
        for the scalings :math:`S = I`, the Perron vector of :math:`G|W'|` and a
        local minimiser; the forcing by the box methods of
        :func:`~rnnperturb.verified.outward.forcing_sup`, column norms and the
        input-free centre trajectory; and the elementwise recursion
        :math:`|e_t| \le \min(u_t + u'_t, G(|W'||e_{t-1}| + |\Delta W|u_{t-1}))`
        (both role orders).
        """
        from rnnperturb.bounds.global_bound import Refined     # the protocol's result type
        from rnnperturb.verified.linalg import U64, up
        from rnnperturb.verified.outward import (cw_rate, descend_fixed_point, dn, forcing_sup,
                                                 mv_up, norm_up, optimise_scaling, perron,
                                                 tanh_slope_up, vec_norm_up)
        n = self.n
        u, up_, hsup, hsupp = boxes.u, boxes.up, boxes.u_sup, boxes.up_sup
        ecap, ecap_sup = boxes.ecap, boxes.ecap_sup
        T = ecap.shape[0]
        W, Wp, U, b = P["W"], Q["W"], P["U"], P["b"]
        dW = Wp - W                       # computed: relative error <= u per entry
        Wa, Wpa, dWa = np.abs(W), np.abs(Wp), np.abs(dW) * (1 + 2 * U64)
        reach = boxes.reach["W"]
        babs = np.abs(b)

        def slopes(v, vp):
            R = np.maximum(up(mv_up(Wa, v) + reach, 2), up(mv_up(Wpa, vp) + reach, 2))
            return tanh_slope_up(dn(babs - R, 2) * (babs > R))

        centres = [self._global_centres(W, b, U, r, T, rho0, u),
                   self._global_centres(Wp, b, U, r, T, rho0, up_)]
        g_sup = slopes(hsup, hsupp)
        G = np.array([slopes(u[t - 1], up_[t - 1]) for t in range(1, T + 1)])   # (T, n)
        G = np.minimum(G, g_sup[None, :])

        # ---- norm recursions with diagonal scalings (DESIGN §2(c))
        GWp = g_sup[:, None] * Wp
        sp = perron(np.abs(GWp))
        s_list = [np.ones(n), sp]
        # a locally optimised scaling, only when it may bring the rate near or below 1
        if min(norm_up(GWp), norm_up(sp[:, None] * GWp / sp[None, :])) < 1.25:
            s_list.append(optimise_scaling(GWp, sp))
        best = np.full(T, np.inf)
        best_rate, best_asym, best_s, best_end = np.inf, np.inf, s_list[0], np.inf
        dW2 = dW * dW * (1 + 4 * U64)
        for s in s_list:
            smin = float(dn(np.min(s)))
            SG_sup = s * g_sup
            rates = [norm_up(SG_sup[:, None] * Wp / s[None, :]),
                     norm_up(SG_sup[:, None] * W / s[None, :])]
            A_sup = SG_sup[:, None] * dW
            nA = norm_up(A_sup)
            F_sup = [forcing_sup(A_sup, hsup), forcing_sup(A_sup, hsupp)]
            E = 0.0
            Et = np.empty(T)
            for t in range(T):
                w = s * G[t]
                col = np.sqrt(up((w * w) @ dW2, n)) * (1 + 2 * U64)   # column norms of diag(w) dW
                Fs = []
                for k, box in enumerate((u[t], up_[t])):
                    c1 = float(up(col @ box, n))
                    c2 = float(up(nA * np.sqrt(up(box @ box, n)), 2))
                    cc, rc = centres[k][0][t], centres[k][1][t]
                    c3 = self._global_centre_forcing(w, dW, dWa, cc, rc, nA)
                    Fs.append(min(c1, c2, c3, F_sup[k]))
                capS = float(np.sqrt(up(np.sum((s * ecap[t]) ** 2), 2 * n)) * (1 + 4 * U64))
                E = min(capS, float(up(rates[0] * E + Fs[0], 2)),
                        float(up(rates[1] * E + Fs[1], 2)))
                Et[t] = E / smin * (1 + 2 * U64)
            best = np.minimum(best, Et)
            if Et[-1] < best_end:
                best_end, best_s = Et[-1], s
            capS_sup = float(np.sqrt(up(np.sum((s * ecap_sup) ** 2), 2 * n)) * (1 + 4 * U64))
            for k in range(2):
                best_rate = min(best_rate, float(rates[k]))
                if rates[k] < 1:
                    a = min(capS_sup, float(up(F_sup[k] / dn(1.0 - rates[k], 1), 2)))
                    best_asym = min(best_asym, a / smin * (1 + 2 * U64))

        # ---- elementwise recursion (both role orders)
        V = np.zeros(n)
        vec = np.empty(T)
        for t in range(T):
            a1 = G[t] * mv_up(Wpa, V) + G[t] * mv_up(dWa, u[t])
            a2 = G[t] * mv_up(Wa, V) + G[t] * mv_up(dWa, up_[t])
            V = np.minimum(ecap[t], up(np.minimum(a1, a2), 3))
            vec[t] = vec_norm_up(V)
        best = np.minimum(best, vec)
        vrate = min(cw_rate(g_sup[:, None] * Wpa), cw_rate(g_sup[:, None] * Wa))
        if vrate < 1:
            f1, f2 = g_sup * mv_up(dWa, hsup), g_sup * mv_up(dWa, hsupp)
            Vs = descend_fixed_point(lambda E: up(np.minimum(
                g_sup * mv_up(Wpa, E) + f1, g_sup * mv_up(Wa, E) + f2), 3), ecap_sup)
            best_asym = min(best_asym, vec_norm_up(Vs))
        best_rate = min(best_rate, vrate)
        return Refined(bound=best, rate=best_rate, asymptote=best_asym, slope=g_sup,
                       scaling=best_s)

    # -------------------------------------------------------------- helpers
    def preactivation(self, h, x, W=None):
        """:math:`a_t = W h_{t-1} + U x_t + b` for batches h (B, n), x (B, m)."""
        W = self.W if W is None else W
        return h @ W.T + x @ self.U.T + self.b
