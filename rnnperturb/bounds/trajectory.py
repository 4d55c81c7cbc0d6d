r"""Certified (sound) upper bounds on the hidden-state deviation :math:`\|h'_t - h_t\|_2`.

Idea: enclose the exact trajectories around the computed ones
--------------------------------------------------------------
DESIGN §2(b) starts from the first-order model plus a remainder. Here the
perturbed trajectory is *known*: it can be simulated as cheaply as the nominal
one. So the deviation is computed directly, :math:`\tilde e_t = fl(\tilde h'_t -
\tilde h_t)` from the floating-point trajectories :math:`\tilde h_t, \tilde h'_t`,
and the only thing left to certify is the distance between each computed
trajectory and the exact one. Writing :math:`r_t = h_t - \tilde h_t` (exact minus
computed; likewise :math:`r'_t`),

.. math::
    |e_t| \le \min\bigl(|\tilde e_t|(1+u) + \rho_t + \rho'_t,\ w\bigr)
    \quad\text{(componentwise)},\qquad
    \|e_t\|_2 \le \min\bigl(\|\,\cdot\,\|_2,\ \|\tilde e_t\|_2(1+u) + N_t + N'_t,\ \|w\|_2\bigr)

with :math:`\rho_t \ge |r_t|` componentwise, :math:`N_t \ge \|r_t\|_2`, and
:math:`w` the trivial width (2 per component for the Elman RNN, whatever
:math:`h_0`, since :math:`h_t, h'_t \in (-1,1)^n` for :math:`t\ge1`; for the MGRU
:math:`h_{t,i}` is a convex combination of :math:`h_{t-1,i}` and
:math:`c_{t,i} \in (-1,1)`, so both trajectories stay in
:math:`[\min(h_{0,i},-1), \max(h_{0,i},1)]` and :math:`w_i` is that width:
2 when :math:`|h_{0,i}|\le1`, :math:`1+|h_{0,i}|` otherwise). The truth enters
only through :math:`r_t, r'_t`, which are driven by rounding (:math:`\sim10^{-16}`),
so the bound is essentially :math:`\|\tilde e_t\|`: tight at every size of
:math:`\Delta W`, from :math:`10^{-8}\|W\|` to :math:`\|W\|`, and in saturation,
as long as the bound on the rounding errors stays far below
:math:`\|\tilde e_t\|`; it has an absolute floor of order
:math:`10^{-14}` (at t = 1, where :math:`e_1 = 0`, the bound is that floor).
What must be controlled is the *amplification* of rounding errors along the
trajectory; it has 16 decades of headroom before it matters.

Rounding recursion (Elman; the MGRU is the same pattern, see :func:`_mgru_step`)
----------------------------------------------------------------------------
Computed: :math:`\tilde a_t = fl(W\tilde h_{t-1} + Ux_t + b)`,
:math:`\tilde h_t = fl(\tanh\tilde a_t)`. Exact: :math:`a_t = W h_{t-1} + Ux_t + b`.
Standard error bounds (any summation order, FMA or not) give

.. math::
    |a_t - \tilde a_t| \le |W r_{t-1}| + \lambda^a_t,\qquad
    \lambda^a_t = \gamma_{n+m+3}\,(|W||\tilde h_{t-1}| + |U||x_t| + |b|),

and with :math:`\rho^a_t` any bound on the right-hand side, the mean value
theorem on :math:`[\tilde a_t-\rho^a_t, \tilde a_t+\rho^a_t]` gives

.. math::
    |r_t| \le s_t \odot (|W r_{t-1}| + \lambda^a_t) + \epsilon|\tilde h_t|,
    \qquad s_t = \max_{[\tilde a_t\pm\rho^a_t]}\tanh' ,

where :math:`\epsilon` bounds the relative error of ``np.tanh``. Two bounds on
:math:`|W r_{t-1}|` are mixed: the componentwise :math:`|W|\rho_{t-1}` (tier
``"tight"``; the fast tier uses the cheap majorant
:math:`(\sum_j|W_{ij}|)\max_j\rho_{t-1,j}`) and the norm bound
:math:`\|W_{i,:}\|_2 N_{t-1}`. The norm recursion is

.. math::
    N_t \le \|\operatorname{diag}(s_t) W\|_2 N_{t-1} + \|s_t\odot\lambda^a_t + \epsilon|\tilde h_t|\|_2,
    \qquad \|\operatorname{diag}(s)W\|_2 \le \min\Bigl(\max_i s_i\,\|W\|_2,\
    \bigl(\textstyle\sum_i s_i^2\|W_{i,:}\|_2^2\bigr)^{1/2}\Bigr)

(:math:`\|W\|_2` is a *verified* upper bound, :mod:`rnnperturb.verified.linalg`;
:math:`\|\operatorname{diag}(s)W\|_2` is increasing in each :math:`s_i\ge0`, and
:math:`|\tanh(a)-\tanh(\tilde a)| = \bar s\,|a - \tilde a|` with
:math:`0\le\bar s\le s`). After each step :math:`N_t \leftarrow \min(N_t,
\|\rho_t\|_2)`, :math:`\rho_t \leftarrow \min(\rho_t, N_t, 1 + |\tilde h_t|)`.
Soundness is by induction over t: if :math:`|r_{t-1}|\le\rho_{t-1}` and
:math:`\|r_{t-1}\|\le N_{t-1}` then both hold at t; at t = 0, :math:`r_0 = 0`.
Every computed sum of non-negative terms is inflated by :math:`1 + 2(k+2)u`
(:func:`rnnperturb.verified.linalg.up`), which covers the rounding of the bound
itself. The only assumption beyond IEEE arithmetic is the accuracy of the
platform's ``tanh``/``exp`` (:data:`rnnperturb.verified.activation.LIBM_ULPS` ulps,
checked against mpmath in the tests); ``rigorous=True`` removes it.

Tight tier: multi-step propagators
----------------------------------
Per-step factors multiply: on trained nets whose per-step norms
:math:`\|D_tW\|_2` are 1.5–5 the product over 40 steps exceeds the 16 decades.
The MGRU is worse: its per-step Jacobian bound exceeds 1 even for
:math:`\|W_f\|_2, \|W_h\|_2 < 1` (the :math:`\operatorname{diag}(1-f)` part alone
has norm ≈ 1, and the triangle inequality adds the gate and candidate terms),
so its fast tier loosens over long horizons even on contracting nets.
The tight tier writes :math:`r_t = \tilde J_t r_{t-1} + g_t` with the *exact
known* matrices :math:`\tilde J_t` (Elman: :math:`\operatorname{diag}(\tanh'(\tilde
a_t))W`, second-order term by the exact monotone Taylor remainder
:func:`rnnperturb.verified.activation.taylor_remainder_max`; MGRU: the floating-point
Jacobian at :math:`\tilde h_{t-1}`, second-order term by interval radii of its
factors) and a componentwise bound :math:`|g_t|\le\gamma_t`. Then
:math:`r_t = \sum_k \tilde\Phi(t,k)\operatorname{diag}(\gamma_k)\xi_k`,
:math:`|\xi_k|\le1`, is a zonotope whose Gram matrix obeys the Lyapunov
recursion

.. math::
    C_t = \tilde J_t C_{t-1}\tilde J_t^T + \operatorname{diag}(\gamma_t^2),\qquad
    \|r_t\|_2 \le \sqrt{(1 + n (t-s))\,\lambda_{\max}(C_t)},\quad C_s = N_s^2 I,

so the growth is that of the *multi-step* propagators :math:`\tilde\Phi(t,k)`
(4–8 on the trained nets) instead of products of per-step norms. It costs
O(n^3) per step and sequence, so it is switched on per sequence, at the step
s where the per-step bound first exceeds twice the accumulated local rounding
(never, on contracting trajectories). Statement and proof: :class:`_Lyapunov`
and :meth:`_MGRUTraj._tight`.

Rigorous mode
-------------
``rigorous=True`` encloses both trajectories in mpmath interval arithmetic
(:mod:`rnnperturb.verified.interval`), raising the precision until the
enclosure is narrow, and returns the upper end of the enclosure of
:math:`\|e_t\|_2`. It is slow (small nets only) and assumption-free.
"""
from __future__ import annotations

import numpy as np

from rnnperturb._checks import as_h0, as_inputs
from rnnperturb.verified.linalg import U64, gamma, row_norms_upper, spectral_norm_upper, up
from rnnperturb.propagate.deviation import delta_recurrent
from rnnperturb.verified.activation import (SIGMOID_KAPPA, TANH_KAPPA, _dsigmoid, _dtanh, act_error, slope_max,
                        taylor_remainder_max)

__all__ = ["certified_bound", "trivial_cap"]

_TINY = 1e-120
TIERS = ("fast", "tight")
#: Limit of n*n*T*B for rigorous=True (mpmath interval arithmetic is slow).
RIGOROUS_BUDGET = 4_000_000


class _Mat:
    """A float64 matrix with the verified constants the recursion needs."""

    def __init__(self, A):
        self.A = np.ascontiguousarray(A, dtype=np.float64)
        self.AT = np.ascontiguousarray(self.A.T)
        self.absT = np.ascontiguousarray(np.abs(self.A).T)
        self.rs = up(np.abs(self.A).sum(axis=1), self.A.shape[1])  # row sums of |A|
        self.rn = row_norms_upper(self.A)                          # row 2-norms
        self.rn2 = up(self.rn * self.rn, 1)
        self.norm = spectral_norm_upper(self.A) if self.A.shape[0] == self.A.shape[1] else \
            float(np.sqrt(up(np.sum(self.rn2), self.A.shape[0])))

    def absmv(self, v, vnorm, exact: bool):
        """Componentwise bound on |A x| for every x with |x| <= v, ||x||_2 <= vnorm.

        v : (B, c), vnorm : (B,). exact=True uses |A| v (a matvec), else the
        cheap majorant rowsum(|A|) * max(v)."""
        byrow = self.rn[None, :] * vnorm[:, None]
        if exact:
            el = up(v @ self.absT, self.A.shape[1])
        else:
            el = self.rs[None, :] * np.max(v, axis=1, keepdims=True)
        return up(np.minimum(el, byrow), 1)

    def dnorm(self, d):
        """Upper bound on ||diag(d) A||_2 for d >= 0, shape (B, r) -> (B,)."""
        a = up(np.max(d, axis=1) * self.norm, 1)
        b = np.sqrt(up(np.sum(d * d * self.rn2[None, :], axis=1), d.shape[1])) * (1 + 2 * U64)
        return np.minimum(a, b)


def _nrm(v):
    """Upper bound on the 2-norm of each row of v >= 0, (B, n) -> (B,)."""
    return np.sqrt(up(np.sum(v * v, axis=-1), v.shape[-1])) * (1 + 2 * U64)


def _widen(a, rad):
    lo = a - rad - 4 * U64 * np.abs(a) - _TINY
    hi = a + rad + 4 * U64 * np.abs(a) + _TINY
    return lo, hi


# --------------------------------------------------------------------------- cells
class _ElmanTraj:
    """Float trajectory of an Elman cell with its rounding enclosure."""

    def __init__(self, W, U, b, h0, exact, hbound):
        self.W, self.U = _Mat(W), _Mat(U)
        self.b = np.asarray(b, np.float64)
        self.absb = np.abs(self.b)
        self.K = gamma(W.shape[0] + U.shape[1] + 3)
        self.h = np.array(h0, dtype=np.float64)
        self.rho = np.zeros_like(self.h)
        self.N = np.zeros(self.h.shape[0])
        self.exact = exact
        self.eps = act_error("tanh")
        self.hbound = hbound
        self.lyap = _Lyapunov(self.h.shape[0], self.h.shape[1]) if exact else None

    def step(self, x, absx, xnorm):
        W, h, rho, N = self.W, self.h, self.rho, self.N
        a = h @ W.AT + (x @ self.U.AT + self.b)
        ah = np.abs(h)
        loc_a = up(self.K * (W.absmv(ah, _nrm(ah), self.exact)
                             + self.U.absmv(absx, xnorm, self.exact) + self.absb), 3)
        prop_a = W.absmv(rho, N, self.exact)
        rad = up(prop_a + loc_a, 2)
        s = slope_max("tanh", *_widen(a, rad))
        hn = np.tanh(a)
        loc_h = up(s * loc_a + self.eps * np.abs(hn), 2) + _TINY
        rho_n = up(s * prop_a + loc_h, 2)
        N_n = up(W.dnorm(s) * N + _nrm(loc_h), 2)
        N_n = np.minimum(N_n, _nrm(rho_n))
        if self.lyap is not None:
            # r_t = diag(d~) W r_{t-1} + g_t, |g_t| <= gam (see _Lyapunov):
            # tanh(a) - tanh(a~) = tanh'(a~)(a - a~) + R, |R| <= q (exact remainder)
            d = _dtanh(a)
            dd = 3 * self.eps * d + _TINY
            q = taylor_remainder_max("tanh", a, -rad, rad)
            gam = up(dd * prop_a + (d + dd) * loc_a + q + self.eps * np.abs(hn), 4) + _TINY
            N_n = np.minimum(N_n, self.lyap.step(
                None, N_n, None,
                lambda idx, C: _Lyapunov.elman_piece(d[idx], W, gam[idx], C)))
            self.lyap.maybe_activate(N_n, _nrm(loc_h))
        rho_n = np.minimum(np.minimum(rho_n, N_n[:, None]), self.hbound + np.abs(hn))
        self.h, self.rho, self.N = hn, rho_n, N_n
        return hn


class _MGRUTraj:
    """Float trajectory of an MGRU cell with its rounding enclosure."""

    def __init__(self, Wf, Uf, bf, Wh, Uh, bh, h0, exact, hbound):
        self.Wf, self.Uf, self.Wh, self.Uh = _Mat(Wf), _Mat(Uf), _Mat(Wh), _Mat(Uh)
        self.bf, self.bh = np.asarray(bf, np.float64), np.asarray(bh, np.float64)
        self.absbf, self.absbh = np.abs(self.bf), np.abs(self.bh)
        self.K = gamma(Wf.shape[0] + Uf.shape[1] + 3)
        self.h = np.array(h0, dtype=np.float64)
        self.rho = np.zeros_like(self.h)
        self.N = np.zeros(self.h.shape[0])
        self.exact = exact
        self.et, self.es = act_error("tanh"), act_error("sigmoid")
        self.hbound = hbound  # (B, n): |h_t| <= hbound for all t
        self.lyap = _Lyapunov(self.h.shape[0], self.h.shape[1]) if exact else None

    def step(self, x, absx, xnorm):
        ex = self.exact
        h, rho, N = self.h, self.rho, self.N
        ah = np.abs(h)
        # gate
        af = h @ self.Wf.AT + (x @ self.Uf.AT + self.bf)
        loc_af = up(self.K * (self.Wf.absmv(ah, _nrm(ah), ex)
                              + self.Uf.absmv(absx, xnorm, ex) + self.absbf), 3)
        rad_f = up(self.Wf.absmv(rho, N, ex) + loc_af, 2)
        sf = slope_max("sigmoid", *_widen(af, rad_f))
        with np.errstate(over="ignore"):
            f = 1.0 / (1.0 + np.exp(-af))
        rf = np.minimum(up(sf * rad_f + self.es * f, 2) + _TINY, 1.0)
        rf_loc = np.minimum(up(sf * loc_af + self.es * f, 2) + _TINY, 1.0)
        fm = np.minimum(f + rf, 1.0)            # bound on f over the box
        # f * h
        p = f * h
        ap = np.abs(p)
        rp = up(fm * rho + ah * rf + U64 * ap, 3)
        rp_loc = up(ah * rf_loc + U64 * ap, 2)
        # candidate
        ac = p @ self.Wh.AT + (x @ self.Uh.AT + self.bh)
        base_c = up(self.K * (self.Wh.absmv(ap, _nrm(ap), ex)
                              + self.Uh.absmv(absx, xnorm, ex) + self.absbh), 3)
        loc_ac = up(base_c + self.Wh.absmv(rp_loc, _nrm(rp_loc), ex), 2)
        rad_c = up(base_c + self.Wh.absmv(rp, _nrm(rp), ex), 2)
        sc = slope_max("tanh", *_widen(ac, rad_c))
        c = np.tanh(ac)
        cab = np.abs(c)
        rc = up(sc * rad_c + self.et * cab, 2) + _TINY
        rc_loc = up(sc * loc_ac + self.et * cab, 2) + _TINY
        # new state
        omf = 1.0 - f
        hn = omf * h + f * c
        rnd = up(4 * U64 * (np.abs(omf) * ah + f * cab), 2) + _TINY
        gm = np.minimum(omf + rf, 1.0)          # bound on 1 - f over the box
        rho_n = up(gm * rho + rf * ah + fm * rc + rf * cab + rnd, 5)
        loc_h = up(rf_loc * ah + np.minimum(f + rf_loc, 1.0) * rc_loc + rf_loc * cab + rnd, 4)
        # sup of ||J||_2 over the box (J = diag(1-f) + diag(sf (c-h)) Wf
        #   + diag(f tanh') Wh (diag(f) + diag(h sf) Wf))
        d1 = up(sf * (np.abs(c - h) * (1 + U64) + rc + rho), 3)
        d2 = up(fm * sc, 1)
        d3 = up(sf * (ah + rho), 1)
        nu = up(np.max(gm, axis=1) + self.Wf.dnorm(d1)
                + self.Wh.dnorm(d2) * up(np.max(fm, axis=1) + self.Wf.dnorm(d3), 2), 4)
        N_n = up(nu * N + _nrm(loc_h), 2)
        N_n = np.minimum(N_n, _nrm(rho_n))
        if self.lyap is not None:
            N_n = np.minimum(N_n, self._tight(h, rho, f, c, af, ac, rad_f, rad_c, rf, rc,
                                              fm, loc_h, N_n))
            self.lyap.maybe_activate(N_n, _nrm(loc_h))
        rho_n = np.minimum(np.minimum(rho_n, N_n[:, None]), self.hbound + np.abs(hn))
        self.h, self.rho, self.N = hn, rho_n, N_n
        return hn

    def _tight(self, h, rho, f, c, af, ac, rad_f, rad_c, rf, rc, fm, loc_h, N_n):
        r"""Linearisation about the computed state for the tight tier.

        :math:`r_t = \tilde J_t r_{t-1} + g_t` with :math:`\tilde J_t` the
        floating-point Jacobian at :math:`\tilde h_{t-1}` (formed explicitly)
        and :math:`|g_t| \le |\bar J_t - \tilde J_t|\rho_{t-1} + \lambda_t`,
        where :math:`\bar J_t = \int_0^1 J(\tilde h_{t-1} + \tau r_{t-1})d\tau`
        (mean value theorem for vector functions) and :math:`\lambda_t` is the
        local rounding bound. :math:`|J(\xi) - \tilde J_t|` is bounded over the
        box by the radii of the scalar factors of
        :math:`J = \operatorname{diag}(1-f) + \operatorname{diag}(\sigma'(c-\xi))W_f
        + \operatorname{diag}(f\tanh')W_h(\operatorname{diag}(f)
        + \operatorname{diag}(\xi\sigma')W_f)` (products :math:`|xy - \tilde x\tilde y|
        \le (|\tilde x| + \delta x)\delta y + \delta x|\tilde y|`), plus the
        rounding of forming :math:`\tilde J_t`."""
        Wf, Wh = self.Wf, self.Wh
        n = h.shape[1]
        ah = np.abs(h)
        sf = _dsigmoid(af)
        tc = _dtanh(ac)
        Rf = rf
        Rs = up(SIGMOID_KAPPA * rad_f + 3 * self.es * sf, 2) + _TINY
        Rt = up(TANH_KAPPA * rad_c + 3 * self.et * tc, 2) + _TINY
        cmh = c - h
        u2 = sf * cmh
        u3 = f * tc
        u4 = h * sf
        R2 = up((sf + Rs) * (rc + rho) + Rs * np.abs(cmh) + 4 * U64 * np.abs(u2), 3)
        R3 = up((f + Rf) * Rt + Rf * tc, 2)
        R4 = up((ah + rho) * Rs + rho * sf, 2)
        v = rho
        Wfv = Wf.absmv(v, _nrm(v), True)
        dJv = (Rf * v + R2 * Wfv
               + R3 * Wh.absmv(fm * v, _nrm(fm * v), True)
               + np.abs(u3) * Wh.absmv(Rf * v, _nrm(Rf * v), True))
        w4 = (np.abs(u4) + R4) * Wfv
        dJv = dJv + R3 * Wh.absmv(w4, _nrm(w4), True)
        w5 = R4 * Wfv
        dJv = dJv + np.abs(u3) * Wh.absmv(w5, _nrm(w5), True)
        # rounding of forming J~ (inner dimension n in Wh diag(u4) Wf)
        a4 = np.abs(u4) * Wfv
        Jmaj = (np.abs(1 - f) * v + np.abs(u2) * Wfv
                + np.abs(u3) * Wh.absmv(f * v, _nrm(f * v), True)
                + np.abs(u3) * Wh.absmv(a4, _nrm(a4), True))
        gam = up(dJv + gamma(n + 8) * Jmaj + loc_h, 12) + _TINY

        def piece(idx, C):
            J = (u2[idx, :, None] * Wf.A[None]
                 + u3[idx, :, None] * (Wh.A[None] * f[idx, None, :])
                 + u3[idx, :, None] * ((Wh.A[None] * u4[idx, None, :]) @ Wf.A))
            ii = np.arange(n)
            J[:, ii, ii] += 1 - f[idx]
            return _Lyapunov.full_piece(J, gam[idx], C)
        return self.lyap.step(None, N_n, None, piece)



def _make_traj(cell, params, h0, exact, hbound):
    if cell.kind == "elman":
        return _ElmanTraj(params["W"], cell.U, cell.b, h0, exact, hbound)
    return _MGRUTraj(params["Wf"], cell.Uf, cell.bf, params["Wh"], cell.Uh, cell.bh, h0,
                     exact, hbound)


def trivial_cap(cell, h0, B: int) -> np.ndarray:
    r"""Per-component width :math:`w` of the set that contains both
    trajectories for every t >= 1, shape (B, n).

    Elman: 2 (both states are tanh outputs). MGRU: :math:`\max(h_{0,i},1) -
    \min(h_{0,i},-1)` (convex combinations of :math:`h_{t-1}` and
    :math:`c_t\in(-1,1)`)."""
    h0 = np.broadcast_to(np.asarray(h0, np.float64), (B, cell.n))
    if cell.kind == "elman":
        return np.full((B, cell.n), 2.0)
    return up(np.maximum(h0, 1.0) - np.minimum(h0, -1.0), 2)


def _check_tier(tier, rigorous):
    if tier not in TIERS:
        raise ValueError(f"tier: expected one of {TIERS}, found {tier!r}")
    if not isinstance(rigorous, (bool, np.bool_)):
        raise ValueError(f"rigorous: expected True or False, found {rigorous!r}")


def certified_bound(cell, other, X, h0=None, *, tier: str = "fast", rigorous: bool = False,
                    componentwise: bool = False):
    r"""Sound upper bound on :math:`\|h'_t - h_t\|_2` for every step.

    The bound holds for the exact (real-arithmetic) trajectories of the two
    cells on the given inputs, whatever the size of :math:`\Delta W`. The
    method and its proof are in the module docstring.

    Parameters
    ----------
    cell, other : ElmanRNN or MGRU
        Nominal and perturbed cell; ``other`` may differ only in its recurrent
        matrices. float32 cells are analysed exactly in float64 (inputs are
        first rounded to the cell's dtype, as :meth:`run` does).
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, n) or (n,), optional
        Common initial state (zeros when None); any finite values.
    tier : {'fast', 'tight'}
        ``'fast'``: per-step norms and cheap majorants, O(B n^2) per step
        (about 3–4x the cost of :func:`deviation` at n = 128). Tight on
        contracting Elman nets; loosens on expanding nets and on the MGRU over
        long horizons (per-step factors above 1 multiply).
        ``'tight'``: adds componentwise :math:`|W|` products and the
        multi-step propagator (Lyapunov) recursion, O(n^3) per step for
        each sequence where per-step factors would grow.
    rigorous : bool
        Evaluate in mpmath interval arithmetic instead (small nets only:
        ``n*n*T*B <= RIGOROUS_BUDGET``).
    componentwise : bool
        Return the componentwise bound on :math:`|h'_t - h_t|` instead (not
        with ``rigorous=True``).

    Returns
    -------
    bound : ndarray, shape (T, B) or (T,)
        ``bound[t-1] >= ||h'_t - h_t||_2``, at most the trivial cap
        (:math:`2\sqrt n` for the Elman RNN and for the MGRU with
        :math:`\|h_0\|_\infty\le1`). With ``componentwise=True``: shape
        (T, B, n) or (T, n).

    Raises
    ------
    ValueError
        For incompatible cells, bad inputs, an unknown tier or a too large
        rigorous problem.
    """
    _check_tier(tier, rigorous)
    dW = delta_recurrent(cell, other)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    T, B = X3.shape[0], X3.shape[1]
    h0a = as_h0(h0, cell.n, B, single, cell.dtype).astype(np.float64)
    if rigorous:
        if componentwise:
            raise ValueError("componentwise: expected False with rigorous=True, found True")
        size = cell.n * cell.n * T * B
        if size > RIGOROUS_BUDGET:
            raise ValueError(f"rigorous: expected n*n*T*B <= {RIGOROUS_BUDGET} for mpmath "
                             f"interval arithmetic, found {size} (n={cell.n}, T={T}, B={B})")
        from rnnperturb.verified.interval import interval_deviation_norm
        _, hi, _ = interval_deviation_norm(cell, other, X3, h0a, prec=113, max_prec=1024)
        cap = _nrm(trivial_cap(cell, h0a, B))
        out = np.minimum(hi, cap[None, :])
        return out[:, 0] if single else out
    X3 = X3.astype(np.float64)
    out = _bound_float(cell, other, dW, X3, h0a, tier, componentwise)
    if single:
        return out[:, 0]
    return out


def _bound_float(cell, other, dW, X3, h0a, tier, componentwise):
    T, B = X3.shape[0], X3.shape[1]
    n = cell.n
    exact = tier == "tight"
    width = trivial_cap(cell, h0a, B)
    hbound = np.maximum(np.abs(h0a), 1.0) if cell.kind == "mgru" else 1.0
    nom = _make_traj(cell, {k: v.astype(np.float64) for k, v in cell.recurrent.items()},
                     h0a, exact, hbound)
    per = _make_traj(cell, {k: v.astype(np.float64) for k, v in other.recurrent.items()},
                     h0a, exact, hbound)
    cap = _nrm(width)
    out = np.empty((T, B, n) if componentwise else (T, B))
    for t in range(T):
        x = X3[t]
        absx = np.abs(x)
        xn = _nrm(absx)
        h = nom.step(x, absx, xn)
        hp = per.step(x, absx, xn)
        e = np.abs(hp - h) * (1 + 2 * U64)
        comp = np.minimum(up(e + nom.rho + per.rho, 3), width)
        if componentwise:
            out[t] = comp
            continue
        b1 = _nrm(comp)
        b2 = up(_nrm(e) + nom.N + per.N, 3)
        out[t] = np.minimum(np.minimum(b1, b2), cap)
    return out


class _Lyapunov:
    r"""Gram matrices of the rounding zonotope, one per batch element.

    Claim: if :math:`r_t = \tilde J_t r_{t-1} + g_t` for :math:`t > s` with
    known matrices :math:`\tilde J_t`, :math:`\|r_s\|_2 \le N_s` and
    :math:`|g_k| \le \gamma_k` componentwise, then

    .. math::
        \|r_t\|_2 \le \sqrt{(1 + n(t-s))\,\lambda_{\max}(C_t)},\qquad
        C_t = \tilde J_t C_{t-1}\tilde J_t^T + \operatorname{diag}(\gamma_t^2),\quad
        C_s = N_s^2 I .

    Proof: :math:`r_t = \tilde\Phi(t,s)N_s\eta + \sum_{s<k\le t}\tilde\Phi(t,k)
    \operatorname{diag}(\gamma_k)\xi_k = Z_t\zeta` with :math:`\|\eta\|_2\le1`,
    :math:`|\xi_k|\le1`, so :math:`\|\zeta\|_2^2\le 1 + n(t-s)`;
    :math:`\|r_t\|_2\le\|Z_t\|_2\|\zeta\|_2`, :math:`\|Z_t\|_2^2 =
    \lambda_{\max}(Z_tZ_t^T)` and :math:`Z_tZ_t^T = C_t`. In floating point we
    keep a computed :math:`\tilde C_t \succeq C_t` (Loewner order): if
    :math:`C_{t-1}\preceq\tilde C_{t-1}` then (congruence keeps the order)
    :math:`C_t \preceq \tilde J_t\tilde C_{t-1}\tilde J_t^T + \operatorname{diag}(\gamma_t^2)
    = S + \Delta`, where :math:`S` is the symmetrised computed product and
    :math:`|\Delta| \le E` with the classical bound
    :math:`E = (2\gamma_n+\gamma_n^2)|\tilde J||\tilde C||\tilde J|^T + 2u|S|`;
    Gershgorin gives :math:`\Delta \preceq \operatorname{diag}(E\mathbf 1)`, and
    :math:`E\mathbf 1` costs only matrix-vector products. Finally
    :math:`\lambda_{\max}(C_t) \le \min(\max_i\sum_j|\tilde C_{ij}|,\ \operatorname{tr}\tilde C)`
    (Gershgorin; trace of a positive semidefinite matrix).
    The growth of :math:`C_t` is that of the multi-step propagators
    :math:`\tilde\Phi(t,k) = \tilde J_t\cdots\tilde J_{k+1}`, not of products of
    per-step norms.

    The recursion costs O(n^3) per step, so it is switched on per batch
    element only once the per-step bound has amplified the accumulated local
    rounding by more than :data:`ACTIVATE` (it starts from :math:`C_s = N_s^2 I`
    with the per-step bound :math:`N_s`); on contracting trajectories it never
    runs.
    """

    ACTIVATE = 2.0

    def __init__(self, B, n):
        self.n = n
        self.C = np.zeros((B, n, n))
        self.steps = np.zeros(B, dtype=np.int64)
        self.active = np.zeros(B, dtype=bool)
        self.acc = np.zeros(B)       # accumulated norms of the local rounding

    def _finish(self, S, E1, gam):
        n = self.n
        S = 0.5 * (S + np.swapaxes(S, 1, 2))
        E1 = up(E1 + 2 * U64 * np.abs(S).sum(axis=2), n + 2)
        idx = np.arange(n)
        S[:, idx, idx] += up(E1 + gam * gam, 2)
        S[:, idx, idx] *= (1 + 4 * U64)
        lam = np.minimum(up(np.abs(S).sum(axis=2), n).max(axis=1),
                         up(np.trace(S, axis1=1, axis2=2), n))
        return S, np.maximum(lam, 0.0)

    def step(self, N_prev, N_fast, loc_norm, prop):
        """Advance one step. ``prop(idx)`` returns ``(S, E1, gam)`` pieces via
        :meth:`elman_piece` / :meth:`full_piece` for the active indices.
        Returns the bound to combine (min) with ``N_fast``."""
        out = np.full(N_fast.shape, np.inf)
        idx = np.flatnonzero(self.active)
        if idx.size:
            S, E1, gam = prop(idx, self.C[idx])
            C, lam = self._finish(S, E1, gam)
            self.C[idx] = C
            self.steps[idx] += 1
            k = 1 + self.n * self.steps[idx]
            out[idx] = np.sqrt(up(lam * k, 1)) * (1 + 4 * U64)
        return out

    def maybe_activate(self, N_now, loc_norm):
        """Switch on the elements whose per-step bound has amplified the
        accumulated local rounding by more than ACTIVATE; start at C = N^2 I."""
        self.acc = up(self.acc + loc_norm, 2)
        new = (~self.active) & (N_now > self.ACTIVATE * self.acc)
        if np.any(new):
            idx = np.flatnonzero(new)
            self.C[idx] = 0.0
            d = up(N_now[idx] * N_now[idx], 1) * (1 + 4 * U64)
            ar = np.arange(self.n)
            self.C[idx[:, None], ar[None, :], ar[None, :]] = d[:, None]
            self.steps[idx] = 0
            self.active[idx] = True

    @staticmethod
    def elman_piece(d, W, gam, C):
        """Pieces of C <- diag(d) W C W^T diag(d) + diag(gam^2), d and gam (k, n)."""
        n = W.A.shape[0]
        Z = W.A @ (C @ W.AT)                       # W C W^T, batched
        S = d[:, :, None] * Z * d[:, None, :]
        g = gamma(n + 1)
        absW = np.abs(W.A)
        v = d @ absW                                # |W|^T d
        E1 = np.einsum("ij,bj->bi", absW, np.einsum("bij,bj->bi", np.abs(C), v))
        E1 = d * up((2 * g + g * g) * E1, 3 * n)
        return S, E1, gam

    @staticmethod
    def full_piece(J, gam, C):
        """Pieces of C <- J C J^T + diag(gam^2) for explicit J (k, n, n)."""
        n = J.shape[1]
        S = J @ C @ np.swapaxes(J, 1, 2)
        g = gamma(n + 1)
        aJ = np.abs(J)
        v = aJ.sum(axis=1)                          # |J|^T 1
        w = np.einsum("bij,bj->bi", np.abs(C), v)
        E1 = up((2 * g + g * g) * np.einsum("bij,bj->bi", aJ, w), 3 * n)
        return S, E1, gam
