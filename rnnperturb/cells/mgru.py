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
    bias_of: ClassVar[dict[str, str]] = {"Wf": "bf", "Wh": "bh"}
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

    @staticmethod
    def tangent_f32(h, aux, dh, rec, bufs):
        r"""The map of :meth:`tangent` (no input tangent) on a float32 stack of
        tangents, in fewer memory passes: the block propagators of
        :class:`rnnperturb.bounds.trajectory._Blocks`.

        With the coefficient vectors of :meth:`tangent` as it computes them,
        :math:`\tilde o = fl(1-f)`, :math:`\tilde s = fl(f\tilde o)`,
        :math:`\tilde d = fl(c-h)`, :math:`\tilde\tau = fl(1-c^2)`, the map is

        .. math::
            v \mapsto \tilde o\odot v + (\tilde s\tilde d)\odot W_f v
            + (f\tilde\tau)\odot W_h\bigl((\tilde s h)\odot W_f v + f\odot v\bigr),

        the same exact map as :meth:`tangent` (its products of coefficients,
        taken in one pass each). The three products of two coefficients are
        rounded in float64 first (:meth:`F32Value.scaled` with ``rounded=1``:
        one more factor :math:`(1+\delta)` on their paths, three in all where
        :meth:`tangent` has four), so the error bound :math:`\gamma_D|L|_{maj}|v| +
        \alpha` of :class:`~rnnperturb.verified.linalg.F32Value` holds with the
        majorant :math:`|L|_{maj}` of :meth:`tangent` (:math:`|ab| = |a||b|`).

        Parameters
        ----------
        h : ndarray, shape (S, 1, B, n)
            :math:`h_{t-1}` (any shape that broadcasts against the tangents).
        aux : dict
            From :meth:`forward`, arrays of the shape of ``h``.
        dh : F32Value, value (S, k, B, n)
            The tangents: k columns of B sequences (``dh.val`` is only read).
        rec : callable ``rec(name, v, out)``
            :meth:`F32Value.matvec` by the float32 matrix ``name``, into ``out``.
        bufs : list of 3 float32 arrays, shape (S, k, B, n)
            Work space (overwritten); the result is in ``bufs[1]``.

        Returns
        -------
        F32Value, value (S, k, B, n)
        """
        f, c = aux["f"], aux["c"]
        omf = 1 - f
        s = f * omf
        A = rec("Wf", dh, bufs[0])                                  # W_f v
        out = A.scaled(s * (c - h), rounded=1, out=bufs[1])         # (s d) W_f v
        A = A.scaled(s * h, rounded=1, out=A.val)                   # (s h) W_f v
        A = A.plus(dh.scaled(f, out=bufs[2]), out=A.val)            # ... + f v
        Wv = rec("Wh", A, bufs[2])                                  # W_h(...)
        Wv = Wv.scaled(f * (1 - c * c), rounded=1, out=Wv.val)      # (f tau) W_h(...)
        out = out.plus(Wv, out=out.val)
        return out.plus(dh.scaled(omf, out=bufs[2]), out=out.val)   # ... + o v

    @staticmethod
    def tangent_abs(h, aux, v, rec):
        r"""The majorant of :meth:`tangent` (what it computes on an
        :class:`~rnnperturb.verified.linalg.AbsValue`) with the products of two
        coefficients of :meth:`tangent_f32` taken first, in float64
        (``AbsValue.scaled(..., rounded=1)``: one more rounding on their paths, so
        ``bound()`` still covers the evaluation; the exact majorant is the same,
        :math:`|ab| = |a||b|`).

        Parameters
        ----------
        h : ndarray, shape (S, B, n)
        aux : dict
            From :meth:`forward`, arrays of shape (S, B, n).
        v : AbsValue, value (..., S, B, n)
        rec : callable ``rec(name, v)``
            :math:`|W_{name}| v` (``AbsValue.absmatvec``).

        Returns
        -------
        AbsValue, value of the shape of ``v.val``
        """
        f, c = aux["f"], aux["c"]
        omf = 1 - f
        s = f * omf
        A = rec("Wf", v)
        G = A.scaled(s * h, rounded=1) + v.scaled(f)
        return (A.scaled(s * (c - h), rounded=1)
                + rec("Wh", G).scaled(f * (1 - c * c), rounded=1) + v.scaled(omf))

    def state_bounds(self, h0):
        """Convex combinations of :math:`h_{t-1}` and :math:`c_t \\in (-1, 1)`:
        :math:`[\\min(h_{0,i}, -1), \\max(h_{0,i}, 1)]`."""
        h0 = np.asarray(h0, np.float64)
        return np.minimum(h0, -1.0), np.maximum(h0, 1.0)


    # ----- certified trajectory bound (bounds/trajectory.py)
    def rounding_context(self, rec):
        """Verified constants of one float64 trajectory with recurrent matrices
        ``rec`` (dict of (n, n)); see :meth:`Cell.rounding_step`."""
        from rnnperturb.verified.linalg import VerifiedMatrix, gamma
        bf, bh = np.asarray(self.bf, np.float64), np.asarray(self.bh, np.float64)
        return {"Wf": VerifiedMatrix(rec["Wf"]), "Wh": VerifiedMatrix(rec["Wh"]),
                "Uf": VerifiedMatrix(self.Uf), "Uh": VerifiedMatrix(self.Uh), "bf": bf,
                "bh": bh, "absbf": np.abs(bf), "absbh": np.abs(bh),
                "K": gamma(self.n + self.m + 3)}

    def rounding_step(self, ctx, h, rho, N, x, absx, xnorm, exact, linear):
        r"""One MGRU step with its rounding enclosure (protocol:
        :meth:`Cell.rounding_step`; proof in :mod:`rnnperturb.bounds.trajectory`).

        Per-step norm: :math:`\sup\|J\|_2` over the box, with
        :math:`J = \operatorname{diag}(1-f) + \operatorname{diag}(\sigma'(c-\xi))W_f
        + \operatorname{diag}(f\tanh')W_h(\operatorname{diag}(f) + \operatorname{diag}(\xi\sigma')W_f)`.

        Linear part (``linear=True``): :math:`\tilde J` is the map of
        :meth:`tangent` with its float coefficient vectors
        :math:`fl(1-\tilde f)`, :math:`\tilde s = fl(\tilde f fl(1-\tilde f))`,
        :math:`fl(\tilde c-\tilde h)`, :math:`\tilde\tau = fl(1-\tilde c^2)`, and
        ``gam`` bounds :math:`\sup_\xi|J(\xi)-\tilde J|\rho_{t-1}` plus the local
        rounding, by the radii of the factors (products
        :math:`|xy - \tilde x\tilde y| \le (|\tilde x| + \delta x)\delta y + \delta x|\tilde y|`):
        :math:`|\sigma'(\xi) - \tilde s| \le \kappa_\sigma\rho^{a_f} + \epsilon_\sigma\tilde f(1+\epsilon_\sigma) + 3u\tilde s`
        (:math:`\sigma(\tilde a) = \tilde f + \eta`, :math:`\sigma(1-\sigma) - \tilde f(1-\tilde f) = \eta(1 - 2\tilde f - \eta)`),
        and likewise for :math:`\tanh'` with :math:`\tilde\tau`.
        """
        from rnnperturb.verified.activation import (SIGMOID_KAPPA, TANH_KAPPA, act_error,
                                                    slope_max_ball)
        from rnnperturb.verified.linalg import U64, up, vec_norm_upper as nrm
        tiny = 1e-120
        ex = exact
        Wf, Wh, Uf, Uh = ctx["Wf"], ctx["Wh"], ctx["Uf"], ctx["Uh"]
        et, es = act_error("tanh"), act_error("sigmoid")
        # With exact=True, |A| v is bounded by the matvec itself: for v >= 0 it never
        # exceeds the row-norm bound ||A_i||_2 ||v||_2 (Cauchy-Schwarz), which is then
        # only worth its cost where a norm bound below ||v||_2 is known (rho: N).
        # Products with the same matrix are evaluated as one stacked matvec.
        inf = np.full(N.shape, np.inf)
        vn = (lambda v: inf) if ex else nrm
        ah = np.abs(h)
        # gate
        af = h @ Wf.AT + (x @ Uf.AT + ctx["bf"])
        m_hf, m_rf = Wf.absmv(np.stack([ah, rho]), np.stack([vn(ah), N]), ex)
        xn = None if ex else xnorm              # |U||x| <= ||U_i|| ||x||: as for h
        loc_af = up(ctx["K"] * (m_hf + Uf.absmv(absx, xn, ex) + ctx["absbf"]), 3)
        rad_f = up(m_rf + loc_af, 2)
        sf = slope_max_ball("sigmoid", af, rad_f)
        with np.errstate(over="ignore"):
            f = 1.0 / (1.0 + np.exp(-af))
        esf = es * f
        rf = np.minimum(up(sf * rad_f + esf, 2) + tiny, 1.0)
        rf_loc = np.minimum(up(sf * loc_af + esf, 2) + tiny, 1.0)
        fm = np.minimum(f + rf, 1.0)            # bound on f over the box
        # f * h
        p = f * h
        ap = np.abs(p)
        uap = U64 * ap
        rp = up(fm * rho + ah * rf + uap, 3)
        rp_loc = up(ah * rf_loc + uap, 2)
        # candidate
        ac = p @ Wh.AT + (x @ Uh.AT + ctx["bh"])
        m_p, m_rl, m_r = Wh.absmv(np.stack([ap, rp_loc, rp]),
                                  None if ex else np.stack([nrm(ap), nrm(rp_loc), nrm(rp)]),
                                  ex)
        base_c = up(ctx["K"] * (m_p + Uh.absmv(absx, xn, ex) + ctx["absbh"]), 3)
        loc_ac = up(base_c + m_rl, 2)
        rad_c = up(base_c + m_r, 2)
        sc = slope_max_ball("tanh", ac, rad_c)
        c = np.tanh(ac)
        cab = np.abs(c)
        etc = et * cab
        rc = up(sc * rad_c + etc, 2) + tiny
        rc_loc = up(sc * loc_ac + etc, 2) + tiny
        # new state
        omf = 1.0 - f
        hn = omf * h + f * c
        rnd = up(4 * U64 * (np.abs(omf) * ah + f * cab), 2) + tiny
        gm = np.minimum(omf + rf, 1.0)          # bound on 1 - f over the box
        rho_n = up(gm * rho + rf * ah + fm * rc + rf * cab + rnd, 5)
        loc_h = up(rf_loc * ah + np.minimum(f + rf_loc, 1.0) * rc_loc + rf_loc * cab + rnd, 4)
        cmh = c - h
        acmh = np.abs(cmh)
        N_n = nrm(rho_n)
        if linear != "block":
            # sup of ||J||_2 over the box (with block propagators the driver has a norm
            # bound of its own at every step, and this one is not needed)
            d1 = up(sf * (acmh * (1 + U64) + rc + rho), 3)
            d3 = up(sf * (ah + rho), 1)
            n_d1, n_d3 = Wf.dnorm(np.stack([d1, d3]))
            d2 = up(fm * sc, 1)
            nu = up(np.max(gm, axis=-1) + n_d1
                    + Wh.dnorm(d2) * up(np.max(fm, axis=-1) + n_d3, 2), 4)
            N_n = np.minimum(up(nu * N + nrm(loc_h), 2), N_n)
        lin = None
        if linear:
            s_t = f * omf                       # the coefficients of tangent()
            t_t = 1 - c * c
            as_t, at_t = np.abs(s_t), np.abs(t_t)
            Rs = up(SIGMOID_KAPPA * rad_f + (esf + 1e-119) * (1 + 1e-14) + 3 * U64 * s_t,
                    3) + tiny
            Rt = up(TANH_KAPPA * rad_c + etc * (2 * cab + et + 1e-100) + U64 * c * c
                    + 1.01 * U64 * at_t, 4) + 1e-119
            Romf = up(rf + U64 * np.abs(omf), 1)
            u3 = up(f * at_t, 1)
            u4 = up(ah * as_t, 1)
            R2 = up((as_t + Rs) * (rc + rho + U64 * acmh) + Rs * acmh, 4)
            R3 = up((f + rf) * Rt + rf * at_t, 2)
            R4 = up((ah + rho) * Rs + rho * as_t, 2)
            v = rho
            Wfv = Wf.absmv(v, np.minimum(N, nrm(v)), True)
            # |Wh|(fm v) + |Wh|((u4 + R4) Wfv) = |Wh|(fm v + (u4 + R4) Wfv) and
            # |Wh|(rf v) + |Wh|(R4 Wfv) = |Wh|(rf v + R4 Wfv) (|Wh| >= 0 is linear; the
            # sums are rounded up before the product)
            R4W = R4 * Wfv
            m3, m4 = Wh.absmv(np.stack([up(fm * v + u4 * Wfv + R4W, 3), up(rf * v + R4W, 2)]),
                              None, True)
            dJv = Romf * v + R2 * Wfv + R3 * m3 + u3 * m4
            gam = up(dJv + loc_h, 8) + tiny
            lin = ({"f": f, "c": c}, gam)
        return hn, rho_n, N_n, loc_h, lin

    # ----- memory statistics (stats/memory.py)
    def overwrite_gate(self, aux):
        """The gate :math:`f_t` (near 0 keeps the state)."""
        return aux["f"]

    # ----- global bound (bounds/global_bound.py)
    @staticmethod
    def _global_gate_ranges(Wf_abs, Wh_abs, bf, bh, reach_f, reach_h, v):
        """Gate and candidate ranges of one cell for |h_{t-1}| <= v:
        ``(Rf, flo, fhi, Rc, cmax)``, all (n,), rounded outward."""
        from rnnperturb.verified.linalg import up
        from rnnperturb.verified.outward import mv_up, sig_dn, sig_up, tanh_up
        Rf = up(mv_up(Wf_abs, v) + reach_f, 2)
        flo, fhi = sig_dn(bf - Rf), sig_up(bf + Rf)
        Rc = up(mv_up(Wh_abs, fhi * v) + reach_h, 2)
        cmax = tanh_up(up(np.abs(bh) + Rc, 1))
        return Rf, flo, fhi, Rc, cmax

    def global_box_map(self, P, reach):
        r"""The largest convex combination of :math:`u_{t-1}` and the candidate box
        over the gate range, :math:`\max_{f \in \{f_{lo}, f_{hi}\}} (1-f)u + f c_{max}`
        (protocol: :meth:`Cell.global_box_map`)."""
        from rnnperturb.verified.linalg import up
        Wf_abs, Wh_abs, bf, bh = np.abs(P["Wf"]), np.abs(P["Wh"]), P["bf"], P["bh"]
        rf, rh = reach["Wf"], reach["Wh"]

        def phi(v):
            _, flo, fhi, _, cmax = self._global_gate_ranges(Wf_abs, Wh_abs, bf, bh, rf, rh, v)
            return np.minimum(up(np.maximum((1 - flo) * v + flo * cmax,
                                            (1 - fhi) * v + fhi * cmax), 3), 1.0)
        return phi

    def global_simple(self, P, Q):
        r"""From :math:`e_t = (1-f')\odot e_{t-1} + f'\odot(c'-c) + (f'-f)\odot(c-h_{t-1})`,
        :math:`|\sigma'| \le 1/4`, :math:`|h|, |c| \le 1`: rate
        :math:`1 + \|W_h'\| + \tfrac{2+\|W_h'\|}{4}\|W_f'\|`, forcing
        :math:`s(\|\Delta W_h\| + \tfrac{2+\|W_h'\|}{4}\|\Delta W_f\|)` (protocol:
        :meth:`Cell.global_simple`)."""
        from rnnperturb.verified.linalg import spectral_norm_upper, up
        from rnnperturb.verified.outward import norm_up
        nf, nh = spectral_norm_upper(Q["Wf"]), spectral_norm_upper(Q["Wh"])
        dWf = norm_up(Q["Wf"] - P["Wf"])
        dWh = norm_up(Q["Wh"] - P["Wh"])
        k = float(up((2.0 + nh) / 4.0, 2))
        rate = float(up(1.0 + nh + k * nf, 3))
        return rate, (lambda s: float(up(s * (dWh + k * dWf), 3)))

    def global_recursion(self, P, Q, r, rho0, boxes):
        r"""The MGRU refinements 5 and 6 of :mod:`rnnperturb.bounds.global_bound`
        (protocol: :meth:`Cell.global_recursion`).

        Elementwise, with gate ranges :math:`[f_{lo}, f_{hi}]`, candidate box
        :math:`c_{max}`, slope bounds :math:`s_f, s_c` (below 1/4 and 1 only where
        the bias dominates):
        :math:`|e_t| \le \max_{f' \in \{f'_{lo}, f'_{hi}\}}((1-f')|e| + f'|\delta c|)
        + (c_{max} + u)|\delta f|` with :math:`|\delta f| \le s_f(|W_f'||e| + |\Delta W_f|u)`,
        :math:`|\delta c| \le s_c(|W_h'|(f'_{hi}|e| + u|\delta f|) + |\Delta W_h|f_{hi}u)`
        (both role orders); and the signed norm recursion of the module docstring.
        """
        from rnnperturb.bounds.global_bound import Refined     # the protocol's result type
        from rnnperturb.verified.linalg import U64, up
        from rnnperturb.verified.outward import (cw_rate, descend_fixed_point, dn, forcing_sup,
                                                 mv_up, norm_up, sig_slope_up, tanh_slope_up,
                                                 vec_norm_up)
        n = self.n
        u, up_, hsup, hsupp = boxes.u, boxes.up, boxes.u_sup, boxes.up_sup
        ecap, ecap_sup = boxes.ecap, boxes.ecap_sup
        T = ecap.shape[0]
        Wf, Wh, Wfp, Whp = P["Wf"], P["Wh"], Q["Wf"], Q["Wh"]
        bf, bh = P["bf"], P["bh"]
        rf, rh = boxes.reach["Wf"], boxes.reach["Wh"]
        A = {"Wf": np.abs(Wf), "Wh": np.abs(Wh)}
        Ap = {"Wf": np.abs(Wfp), "Wh": np.abs(Whp)}
        dWf, dWh = np.abs(Wfp - Wf) * (1 + 2 * U64), np.abs(Whp - Wh) * (1 + 2 * U64)
        ranges = self._global_gate_ranges

        def quantities(v, vp):
            Rf, flo, fhi, Rc, cmax = ranges(A["Wf"], A["Wh"], bf, bh, rf, rh, v)
            Rfp, flop, fhip, Rcp, cmaxp = ranges(Ap["Wf"], Ap["Wh"], bf, bh, rf, rh, vp)
            Rfm, Rcm = np.maximum(Rf, Rfp), np.maximum(Rc, Rcp)
            sf = sig_slope_up(dn(np.abs(bf) - Rfm, 2) * (np.abs(bf) > Rfm))
            sc = tanh_slope_up(dn(np.abs(bh) - Rcm, 2) * (np.abs(bh) > Rcm))
            return dict(flo=flo, fhi=fhi, cmax=cmax, flop=flop, fhip=fhip, cmaxp=cmaxp,
                        sf=sf, sc=sc, v=v, vp=vp)

        def step(E, q, role):
            """Bound on |e_t| given |e_{t-1}| <= E (role 0: nominal as 'h'; 1: swapped)."""
            if role == 0:
                Wfo, Who, v, flo_o, fhi_o, fhi_s, cm = (Ap["Wf"], Ap["Wh"], q["v"], q["flop"],
                                                        q["fhip"], q["fhi"], q["cmax"])
            else:
                Wfo, Who, v, flo_o, fhi_o, fhi_s, cm = (A["Wf"], A["Wh"], q["vp"], q["flo"],
                                                        q["fhi"], q["fhip"], q["cmaxp"])
            df = up(q["sf"] * (mv_up(Wfo, E) + mv_up(dWf, v)), 2)
            dfh = up(fhi_o * E + v * df, 2)
            dc = up(q["sc"] * (mv_up(Who, dfh) + mv_up(dWh, fhi_s * v)), 2)
            conv = np.maximum((1 - flo_o) * E + flo_o * dc, (1 - fhi_o) * E + fhi_o * dc)
            return up(conv + (cm + v) * df, 4)

        def majorant(q, role):
            if role == 0:
                Wfo, Who, v, flo_o, fhi_o, cm = (Ap["Wf"], Ap["Wh"], q["v"], q["flop"], q["fhip"],
                                                 q["cmax"])
            else:
                Wfo, Who, v, flo_o, fhi_o, cm = (A["Wf"], A["Wh"], q["vp"], q["flo"], q["fhi"],
                                                 q["cmaxp"])
            sfW = q["sf"][:, None] * Wfo
            inner = np.diag(fhi_o) + v[:, None] * sfW
            M = np.diag(1 - flo_o) + (fhi_o * q["sc"])[:, None] * up(Who @ inner, n + 1) \
                + (cm + v)[:, None] * sfW
            return up(M, 4)

        E = np.zeros(n)
        vec = np.empty(T)
        for t in range(T):
            q = quantities(u[t], up_[t])
            E = np.minimum(ecap[t], np.minimum(step(E, q, 0), step(E, q, 1)))
            vec[t] = vec_norm_up(E)
        qs = quantities(hsup, hsupp)
        rate = min(cw_rate(majorant(qs, 0)), cw_rate(majorant(qs, 1)))
        asym = np.inf
        if rate < 1:
            Vs = descend_fixed_point(lambda V: np.minimum(step(V, qs, 0), step(V, qs, 1)),
                                     ecap_sup)
            asym = vec_norm_up(Vs)
        cap, cap_t = boxes.cap, boxes.cap_t

        # ---- signed norm recursion (module docstring, MGRU), both role orders
        dWf_s, dWh_s = Wfp - Wf, Whp - Wh
        roles = []
        for role in (0, 1):
            if role == 0:
                Wfo, Who, vs, vt = Wfp, Whp, hsup, u
                flo_o, fhi_o, fhi_s, cm = qs["flop"], qs["fhip"], qs["fhi"], qs["cmax"]
            else:
                Wfo, Who, vs, vt = Wf, Wh, hsupp, up_
                flo_o, fhi_o, fhi_s, cm = qs["flo"], qs["fhi"], qs["fhip"], qs["cmaxp"]
            a = float(np.max(up(1.0 - flo_o, 1)))
            Pd, Qd, Sd = up((cm + vs) * qs["sf"], 2), up(fhi_o * qs["sc"], 1), qs["sf"]
            nQWu = norm_up(Qd[:, None] * Who * vs[None, :])
            rate_r = float(up(a + norm_up(Pd[:, None] * Wfo)
                              + norm_up(Qd[:, None] * Who * fhi_o[None, :])
                              + nQWu * norm_up(Sd[:, None] * Wfo), 4))
            # forcings: (matrix, boxes of its input at steps 0..T-1, box valid at every step)
            parts, sups = [], []
            for Am, bx, bsup in ((Pd[:, None] * dWf_s, vt[:-1], vs),
                                 (Sd[:, None] * dWf_s, vt[:-1], vs),
                                 (Qd[:, None] * dWh_s, fhi_s[None, :] * vt[:-1], fhi_s * vs)):
                col = np.sqrt(up(np.sum(Am * Am, axis=0), n)) * (1 + 16 * U64)
                nA = norm_up(Am)
                sup = forcing_sup(Am, bsup)
                per_t = np.minimum(up(bx @ col, n),
                                   up(nA * np.sqrt(up(np.sum(bx ** 2, axis=1), n)), 2))
                parts.append(np.minimum(per_t, sup))
                sups.append(sup)
            F_t = up(parts[0] + nQWu * parts[1] + parts[2], 3)                  # (T,)
            roles.append((rate_r, F_t))
            if rate_r < 1:   # ||e_t|| <= X = F_sup / (1 - rate) for every t, by induction
                Fs = float(up(sups[0] + nQWu * sups[1] + sups[2], 3))
                asym = min(asym, cap, float(up(Fs / dn(1.0 - rate_r, 1), 2)))
            rate = min(rate, rate_r)
        En = 0.0
        normrec = np.empty(T)
        for t in range(T):
            En = min(float(cap_t[t]), *(float(up(rr * En + Ft[t], 2)) for rr, Ft in roles))
            normrec[t] = En
        vec = np.minimum(vec, normrec)
        return Refined(bound=np.minimum(vec, cap_t), rate=rate, asymptote=asym, slope=qs["sc"],
                       scaling=np.ones(n))

    # -------------------------------------------------------------- helpers
    def gates(self, h, x, Wf=None, Wh=None):
        """Return ``(f_t, c_t)`` for batches h (B, n), x (B, m)."""
        P = self._matrices({k: v for k, v in (("Wf", Wf), ("Wh", Wh)) if v is not None})
        _, aux = self.forward(FLOAT, P, h, x, lambda k, a: FLOAT.matvec(P[k], a))
        return aux["f"], aux["c"]
