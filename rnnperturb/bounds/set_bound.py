r"""Certified deviation bounds over *sets* of recurrent-weight perturbations.

:func:`set_bound` returns, for every step, a number :math:`\beta_t` with

.. math:: \sup_{\Delta W\in S}\ \|h'_t - h_t\|_2 \le \beta_t ,

where :math:`h_t` and :math:`h'_t` are the *exact* (real-arithmetic)
trajectories of the cell and of the cell with recurrent matrices
:math:`W_k + \Delta W_k`, from the same :math:`h_0` and inputs, and :math:`S`
is a set of :mod:`rnnperturb.perturb.sets` (a product of Frobenius balls, a
box, a quantization or drift box). It is written once against the cell
protocol (:mod:`rnnperturb.cells.protocol`): it uses ``linearise`` (explicit
:math:`J_t`, :math:`B_{k,t}`, :math:`a_{k,t}`), ``forward`` and ``tangent``
evaluated in a float64 *interval namespace* defined here, ``state_bounds`` and
``trivial_cap``; no cell type is named.

Mean-value method (``method="mean_value"``)
-------------------------------------------
Let :math:`\tilde h_t` be the computed (float64) nominal trajectory and
:math:`\tilde e_t(\Delta) = h'_t - \tilde h_t` (exact perturbed minus computed
nominal). Then :math:`h'_t - h_t = \tilde e_t(\Delta) - \tilde e_t(0)` and

.. math:: \|h'_t - h_t\| \le \sup_{\Delta\in S}\|\tilde e_t(\Delta)\| + \|\tilde e_t(0)\| .

With :math:`F` the exact step, :math:`g_t = \tilde h_t - F(\tilde h_{t-1}, W)`
(the local rounding of the computed step),

.. math::
    \tilde e_t = F(\tilde h_{t-1}+\tilde e_{t-1}, W+\Delta) - F(\tilde h_{t-1}, W) - g_t
             = \tilde J_t\tilde e_{t-1} + \sum_k \tilde B_{k,t}\Delta_k\tilde a_{k,t} + d_t - g_t ,

with the computed linearisation :math:`\tilde J_t, \tilde B_{k,t}, \tilde a_{k,t}`
(``cell.linearise`` at :math:`\tilde h_{t-1}`) and, by the mean value theorem
along :math:`\xi_s = \tilde h_{t-1} + s\tilde e_{t-1}`, :math:`W_s = W + s\Delta`,

.. math::
    d_t = \int_0^1 \Bigl[(J(\xi_s, W_s) - \tilde J_t)\tilde e_{t-1}
          + \sum_k \bigl(B_k(\xi_s,W_s)\Delta_k a_k(\xi_s,W_s) - \tilde B_{k,t}\Delta_k\tilde a_{k,t}\bigr)\Bigr] ds .

**Linear part.** :math:`\ell_t = \tilde M_t\,\mathrm{vec}\,\Delta` with the
*computed* carried matrices :math:`\tilde M^k_t = fl(\tilde J_t\tilde M^k_{t-1}
+ \tilde B_{k,t}\otimes\tilde a_{k,t}^T)` (shape (n, n·n),
:math:`\tilde M_t[i, jn+p] = \partial\ell_{t,i}/\partial\Delta_{jp}`); it is linear in
:math:`\Delta` *exactly*, and the rounding of its recursion,
:math:`\eta_t = (\tilde M_t - \tilde J_t\tilde M_{t-1} - \tilde B_t\otimes\tilde a_t)\mathrm{vec}\Delta`,
satisfies :math:`|\eta_t| \le \gamma_{n+3}(|\tilde J_t|\lambda_{t-1} + \sum_k|\tilde B_{k,t}|\sigma_k(|\tilde a_{k,t}|))`
(standard GEMM error bounds, any summation order), where :math:`\lambda_t`
is the per-coordinate supremum of :math:`|\ell_t|` over :math:`S` and
:math:`\sigma_k(v) \ge \sup_{\Delta\in S}|\Delta_k v'|` for :math:`|v'|\le v`
(box: :math:`E_k v`; ball: :math:`\varepsilon_k\|v\|_2` in every component).

* per coordinate: box :math:`\lambda_{t,i} = \sum_k (|\tilde M^k_t|\,\mathrm{vec}E_k)_i`,
  ball :math:`\lambda_{t,i} = \sum_k\varepsilon_k\|\tilde M^k_t[i,:]\|_2`
  (both exact suprema of :math:`|\ell_{t,i}|`, rounded up);
* in norm: ball :math:`\sup\|\ell_t\| = \varepsilon\|\tilde M_t\|_2` for one matrix,
  :math:`\lambda_{\max}(\tilde M\tilde M^T)` from the Gram matrix (the frozen
  noise response's object) with a verified eigenvalue bound
  (:func:`rnnperturb.verified.linalg.spectral_norm_upper`) plus the Gram's
  rounding :math:`\gamma_{N+1}\|r\|_2^2` (:math:`r` the row norms,
  Cauchy–Schwarz); for several matrices (a product of balls)
  :math:`\sup_{\|v_k\|\le\varepsilon_k}\|\sum_k A_kv_k\| \le (\sum_k w_k)^{1/2}
  \lambda_{\max}(\sum_k\varepsilon_k^2\tilde G_k/w_k)^{1/2}` for any :math:`w > 0`
  (Cauchy–Schwarz), minimised over a few :math:`w`, and the triangle
  inequality; box: :math:`\min(\|\lambda_t\|_2,\ \text{SDP-dual bound})` with
  :math:`\sup_{|u|\le1}\|Au\|_2^2 \le (\sum_j\omega_j)\,\lambda_{\max}(A\Omega^{-1}A^T)`
  for any :math:`\omega > 0` (the dual of the Goemans–Williamson/Nesterov
  relaxation, within :math:`\pi/2` of the true square at its optimum);
  :math:`\omega` from a few fixed-point steps :math:`\omega_j \propto \|Y^Ta_j\|`
  (top eigenvectors :math:`Y`), every choice being sound.

**Remainder.** :math:`z_t = \tilde e_t - \ell_t` obeys
:math:`z_t = \tilde J_t z_{t-1} + d'_t` with :math:`|d'_t| \le \delta_t`,

.. math::
    \delta_t = \Delta J_t\,\varepsilon_{t-1}
      + \sum_k\bigl[\Delta B_{k,t}\,\sigma_k(|[a_k]|) + |\tilde B_{k,t}|\,\sigma_k(|[a_k]-\tilde a_k|)\bigr]
      + |\eta_t| + |g_t| ,

where :math:`\varepsilon_{t-1} \ge |\tilde e_{t-1}|` for every :math:`\Delta\in S`,
and :math:`\Delta J_t \ge |J(\xi, \tilde W) - \tilde J_t|`,
:math:`\Delta B_{k,t} \ge |B_k(\xi,\tilde W) - \tilde B_{k,t}|`, :math:`[a_k] \ni
a_k(\xi,\tilde W)` over the box :math:`\xi\in\tilde h_{t-1}\pm\varepsilon_{t-1}`
(intersected with the hull of ``state_bounds`` and :math:`\tilde h_{t-1}`, which
contains the segment) and every :math:`\tilde W\in W + S` (the set is convex
and contains 0). These enclosures come from the cell's own ``forward`` and
``tangent`` run in the interval namespace :class:`IntervalNamespace`
(tangents on the basis vectors give the interval Jacobian; a forcing basis
gives :math:`[B_k]`); they also enclose the rounding of :math:`\tilde J_t,
\tilde B_t`. :math:`g_t` is enclosed by ``forward`` at the point
:math:`\tilde h_{t-1}`.

:math:`z_t` is kept as a zonotope :math:`\{G_t\xi + b : |\xi|\le1, |b|\le\beta_t\}`:
each step maps the generators by :math:`\tilde J_t` (computed; the GEMM's
rounding :math:`\gamma_{n+1}|\tilde J||G|\mathbf 1` goes to :math:`\beta`), maps
:math:`\beta` by :math:`|\tilde J_t|` and appends :math:`\mathrm{diag}(\delta_t)`;
generators older than ``window`` steps are folded into :math:`\beta`. So
within the window the remainder is propagated by the exact multi-step
propagators :math:`\tilde\Phi(t,k)`, not by products of per-step norms; memory
is O(window · n²) beyond the carried matrices. Per coordinate
:math:`|z_t| \le \zeta_t = |G_t|\mathbf 1 + \beta_t`; a row with
:math:`\zeta_{t,i}` above the trivial :math:`c_{t,i} + \lambda_{t,i}`
(:math:`c_t` the largest distance from :math:`\tilde h_t` to the state box) is
replaced by that box bound (sound: the zonotope intersected with a slab is
contained in the zonotope with that row zeroed and the slab added). Then
:math:`\varepsilon_t = \min(\lambda_t + \zeta_t, c_t)`. :math:`\tilde e_t(0)`
(pure rounding) is bounded by a second zonotope driven by
:math:`\Delta J_t\zeta^0_{t-1} + |g_t|`.

**Result.** Per coordinate :math:`|h'_t - h_t| \le \min(\lambda_t + \zeta_t +
\zeta^0_t,\ w)` (:math:`w` = ``cell.trivial_cap``) and

.. math:: \beta_t = \min\bigl(\|\min(\lambda_t+\zeta_t+\zeta^0_t, w)\|_2,\
          \Lambda_t + \|\zeta_t\|_2 + \|\zeta^0_t\|_2,\ \|w\|_2\bigr),

with :math:`\Lambda_t \ge \sup_S\|\ell_t\|_2`. If the carried matrices become
huge (far beyond the cap) the linear model is restarted (:math:`\tilde M = 0`,
the zonotope reset to the box :math:`\varepsilon_t`), which is sound for the
same reason.

Affine method (the default)
---------------------------
``method="affine"`` runs the cell's own ``forward`` on affine forms
:math:`c + A_u u + A_\xi\xi + b` (:class:`Affine`): :math:`u` are the set's
symbols (:math:`\Delta_k = \mathrm{scale}_k\odot U_k`, :math:`\|U_k\|_F\le1` or
:math:`|U_k|\le1`), :math:`\xi\in[-1,1]` error symbols created once per step
from the accumulated box :math:`b` (so that errors are propagated by the exact
later linear maps within ``window`` steps, then folded into the box).
``rec(k, a)`` adds :math:`\Delta_k c` exactly in :math:`u` (this builds the
carried matrices: :math:`A_u` of :math:`h'_t` is :math:`\tilde M_t\,\mathrm{diag(scale)}`
up to rounding) and bounds :math:`\Delta_k(a-c)` by :math:`\sigma_k`;
``tanh``/``sigmoid`` linearise at the centre with the exact worst Taylor
remainder over the form's range
(:func:`rnnperturb.verified.activation.taylor_remainder_max`); products of two
forms put :math:`|\delta x||\delta y|` in the box; every float operation adds
its rounding (relative :math:`2u` of the result per elementwise operation,
:math:`\gamma_{k+1}|A|(\cdot)` per product with a matrix). A row whose range
exceeds the half-width of ``state_bounds`` is replaced by that box. A second
run without set symbols encloses the exact nominal trajectory around the same
centres, so :math:`|h'_t - h_t| \le |A_uu| + (|A_\xi|\mathbf 1 + b) + \zeta^0_t`
with :math:`\zeta^0_t` the second run's radius. The linear part's norm
supremum is computed from :math:`A_u` exactly as below. It is tighter than the
mean-value method because the remainder of each activation is evaluated on the
exact per-coordinate range of its pre-activation (no :math:`|W|\varepsilon`
wrapping, no factor 2 from the supremum of the Jacobian over the box).

What is rigorous and what is assumed
------------------------------------
Every enclosure is computed in float64 with outward rounding (``nextafter``
after every operation of the interval namespace; :func:`up` on every sum of
non-negative terms; standard :math:`\gamma_k` bounds on matrix products in any
summation order). Assumed, as in :mod:`rnnperturb.verified.activation`: the
platform's ``tanh`` and ``exp`` are accurate to
:data:`rnnperturb.verified.activation.LIBM_ULPS` ulps, and the BLAS computes
ordinary (not Strassen-like) products. The bound is for the exact
trajectories of the float64 parameters (float32 cells are analysed exactly in
float64; inputs are first rounded to the cell's dtype, as ``run`` does).
Second-order looseness: the remainder uses the supremum of
:math:`|J(\xi)-\tilde J|` over the whole box instead of the average over the
segment (a factor about 2 on the second-order term) and interval arithmetic
over the cell's own step (dependency effects).

Cost: per step and sequence, O(K n^4) for the carried matrices and their Gram
matrices (K perturbed matrices), O(window · n^3) for the remainder zonotopes,
O(n^3) for the interval Jacobian; memory O(K n^3 + window n^2), independent
of T.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import as_generator, as_h0, as_inputs, check_int
from rnnperturb.cells.namespace import sigmoid as _float_sigmoid
from rnnperturb.perturb.sets import Ball, PerturbationSet
from rnnperturb.verified.activation import act_error
from rnnperturb.verified.linalg import (U64, frobenius_upper, gamma, row_norms_upper,
                                        spectral_norm_upper, up)

__all__ = ["Interval", "IntervalNamespace", "INTERVAL", "SetTrace", "set_trace", "set_bound",
           "set_attack", "carried_matrices", "Affine", "AffineNamespace", "AFFINE"]

_TINY = 1e-300


# ===================================================================== intervals
def _dn(x):
    return np.nextafter(x, -np.inf)


def _un(x):
    return np.nextafter(x, np.inf)


class Interval:
    r"""A float64 array of intervals :math:`[lo, hi]` with outward rounding.

    Supports ``+ - *`` with intervals, arrays and scalars (broadcasting like
    NumPy); every result is rounded one ulp outward (``nextafter``), which
    encloses the exact result of round-to-nearest operations. ``x * x`` on the
    *same object* is the exact square (no dependency loss).
    """

    __array_ufunc__ = None          # make ndarray op Interval defer to Interval
    __slots__ = ("lo", "hi")

    def __init__(self, lo, hi=None):
        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = self.lo if hi is None else np.asarray(hi, dtype=np.float64)

    @staticmethod
    def parts(o):
        if isinstance(o, Interval):
            return o.lo, o.hi
        a = np.asarray(o, dtype=np.float64)
        return a, a

    @property
    def shape(self):
        return np.broadcast_shapes(self.lo.shape, self.hi.shape)

    def absmax(self):
        """:math:`\\max(|lo|, |hi|)` elementwise."""
        return np.maximum(np.abs(self.lo), np.abs(self.hi))

    def __add__(self, o):
        ol, oh = Interval.parts(o)
        return Interval(_dn(self.lo + ol), _un(self.hi + oh))

    __radd__ = __add__

    def __sub__(self, o):
        ol, oh = Interval.parts(o)
        return Interval(_dn(self.lo - oh), _un(self.hi - ol))

    def __rsub__(self, o):
        ol, oh = Interval.parts(o)
        return Interval(_dn(ol - self.hi), _un(oh - self.lo))

    def __neg__(self):
        return Interval(-self.hi, -self.lo)

    def __mul__(self, o):
        if o is self:
            a, b = self.lo * self.lo, self.hi * self.hi
            lo = np.where((self.lo <= 0) & (self.hi >= 0), 0.0, np.minimum(a, b))
            return Interval(np.maximum(_dn(lo), 0.0), _un(np.maximum(a, b)))
        if isinstance(o, Interval):
            p = (self.lo * o.lo, self.lo * o.hi, self.hi * o.lo, self.hi * o.hi)
        else:
            a = np.asarray(o, dtype=np.float64)
            p = (self.lo * a, self.hi * a)
        lo = p[0]
        hi = p[0]
        for q in p[1:]:
            lo = np.minimum(lo, q)
            hi = np.maximum(hi, q)
        return Interval(_dn(lo), _un(hi))

    __rmul__ = __mul__

    def __repr__(self):
        return f"Interval(lo={self.lo!r}, hi={self.hi!r})"


def _iv(x) -> Interval:
    return x if isinstance(x, Interval) else Interval(x)


def _activation(fun, kind, x, lo_cap, hi_cap):
    x = _iv(x)
    ae = act_error(kind) * (1 + 8 * U64)
    a, b = fun(x.lo), fun(x.hi)
    lo = _dn(a - (np.abs(a) * ae + 1e-120))
    hi = _un(b + (np.abs(b) * ae + 1e-120))
    return Interval(np.clip(lo, lo_cap, hi_cap), np.clip(hi, lo_cap, hi_cap))


class IntervalNamespace:
    r"""The array namespace of :class:`Interval` (see :mod:`rnnperturb.cells.namespace`).

    ``tanh``/``sigmoid`` are monotone: the end points are evaluated in float
    and widened by :func:`rnnperturb.verified.activation.act_error` (libm
    accuracy assumed). ``matvec(A, v)`` uses the midpoint-radius form
    :math:`A m \pm (|A| r + \gamma_{k+1}|A||m|)`. ``lerp(h, c, f)`` is the exact
    range of :math:`(1-f)h + fc` when :math:`0\le f\le1` (monotone in h and c,
    linear in f: attained at the end points), else the naive form.
    """

    @staticmethod
    def tanh(x):
        return _activation(np.tanh, "tanh", x, -1.0, 1.0)

    @staticmethod
    def sigmoid(x):
        return _activation(_float_sigmoid, "sigmoid", x, 0.0, 1.0)

    @staticmethod
    def matvec(A, v):
        A = np.asarray(A, dtype=np.float64)
        k = A.shape[1]
        aA = np.abs(A)
        if isinstance(v, Interval):
            m = 0.5 * (v.lo + v.hi)
            r = _un(np.maximum(_un(v.hi - m), _un(m - v.lo)))
            r = np.where(np.isfinite(m), r, np.inf)
        else:
            m = np.asarray(v, dtype=np.float64)
            r = None
        c = m @ A.T
        rad = gamma(k + 1) * (np.abs(m) @ aA.T)
        if r is not None:
            rad = rad + r @ aA.T
        rad = up(rad, k + 2)
        return Interval(_dn(c - rad), _un(c + rad))

    @staticmethod
    def lerp(h, c, f):
        f = _iv(f)
        if np.all(f.lo >= 0) and np.all(f.hi <= 1):
            hl, hh = Interval.parts(h)
            cl, ch = Interval.parts(c)
            lo = hi = None
            for fv in (f.lo, f.hi):
                lo_c = (1.0 - Interval(fv)) * hl + Interval(fv) * cl
                hi_c = (1.0 - Interval(fv)) * hh + Interval(fv) * ch
                lo = lo_c.lo if lo is None else np.minimum(lo, lo_c.lo)
                hi = hi_c.hi if hi is None else np.maximum(hi, hi_c.hi)
            return Interval(lo, hi)
        return (1.0 - f) * h + f * c

    @staticmethod
    def asarray(A):
        return A


#: The interval namespace.
INTERVAL = IntervalNamespace()


# ============================================================= the set, resolved
class _SetOps:
    """The set resolved on one cell: the componentwise suprema the bound needs."""

    def __init__(self, cell, S):
        if not isinstance(S, PerturbationSet):
            raise ValueError(f"S: expected a set of rnnperturb.sets (Ball, Box, quantization, "
                             f"drift), found {type(S).__name__}")
        self.n = cell.n
        self.is_ball = isinstance(S, Ball)
        if self.is_ball:
            self.eps = S.radii(cell)
            self.names = tuple(k for k in cell.recurrent_names if self.eps[k] > 0)
        else:
            E = S.radii(cell)
            self.E = {k: v for k, v in E.items()}
            self.vecE = {k: v.reshape(-1) for k, v in E.items()}
            self.names = tuple(k for k in cell.recurrent_names if np.any(E[k] > 0))

    def sigma(self, k, v):
        r"""Componentwise upper bound on :math:`\sup_{\Delta\in S}|\Delta_k v'|`
        over :math:`|v'|\le v` (v >= 0, shape (..., n))."""
        if k not in self.names:
            return np.zeros_like(v)
        if self.is_ball:
            r = row_norms_upper(v)
            return np.broadcast_to(up(self.eps[k] * r, 1)[..., None], v.shape)
        return up(v @ self.E[k].T, self.n)

    def coord_sup(self, k, M):
        """Per-coordinate sup of |M vec(Delta_k)|, M (B, n, n*n) -> (B, n)."""
        if self.is_ball:
            return up(self.eps[k] * row_norms_upper(M), 1)
        return up(np.abs(M) @ self.vecE[k], M.shape[-1])


# ============================================================= linear-part norms
def _lam_max_upper(G, extra):
    """Verified upper bound on lambda_max of the exact symmetric matrices whose
    computed version is G (B, n, n), given ||exact - G||_2 <= extra (B,)."""
    Gs = 0.5 * (G + np.swapaxes(G, 1, 2))
    # ||G - Gs||_2 <= n max|G - Gs| (rounding of the symmetrisation included)
    asym = up((np.abs(Gs - G).max(axis=(1, 2)) * (1 + 4 * U64) + _TINY) * G.shape[1], 1)
    s = np.full(G.shape[0], np.inf)
    fin = np.all(np.isfinite(Gs), axis=(1, 2))
    if np.any(fin):
        s[fin] = np.asarray(spectral_norm_upper(Gs[fin]), np.float64).reshape(-1)
    out = up(s + extra + asym, 3)
    return np.where(np.isfinite(out), out, np.inf)


def _ball_norm(Ms, eps, names):
    r"""Upper bounds on :math:`\sup\|\sum_k M_k v_k\|`, :math:`\|v_k\|\le\varepsilon_k`,
    on :math:`\|[M_k]_k\|_F` and on :math:`\|[M_k]_k\|_2`; Ms[k] (B, n, N)."""
    B = next(iter(Ms.values())).shape[0]
    G, err, lam = {}, {}, {}
    for k in names:
        M = Ms[k]
        G[k] = M @ np.swapaxes(M, 1, 2)
        r = row_norms_upper(M)
        err[k] = up(gamma(M.shape[-1] + 1) * np.sum(r * r, axis=1), M.shape[1] + 1)
        lam[k] = _lam_max_upper(G[k], err[k])
    fro = np.sqrt(up(sum(up(frobenius_upper(Ms[k]) ** 2, 1) for k in names), len(names) + 1))
    fro = _un(fro)
    if len(names) == 1:
        k = names[0]
        op = _un(np.sqrt(lam[k]))
        return up(eps[k] * op, 1), fro, op
    # several matrices: sum of norms, and weighted Cauchy-Schwarz bounds
    tri = up(sum(up(eps[k] * _un(np.sqrt(lam[k])), 1) for k in names), len(names))
    best = tri
    est = {k: np.array([np.linalg.eigvalsh(g)[-1] for g in G[k]]) for k in names}
    op = None
    cands = [{k: np.ones(B) for k in names},
             {k: eps[k] * np.sqrt(np.maximum(est[k], 1e-300)) + 1e-300 for k in names}]
    for ci, w in enumerate(cands):
        c = {k: eps[k] ** 2 / w[k] for k in names}
        Q = sum(c[k][:, None, None] * G[k] for k in names)
        extra = sum(up(c[k] * (err[k] + gamma(len(names) + 2) * frobenius_upper(G[k])), 2)
                    for k in names)
        lq = _lam_max_upper(Q, up(extra, len(names)))
        sw = up(sum(up(eps[k] ** 2 / c[k], 2) for k in names), len(names))
        val = up(_un(np.sqrt(sw)) * _un(np.sqrt(lq)), 1)
        best = np.minimum(best, val)
    # joint operator norm of [M_k] (unweighted): for the noise bound
    Q = sum(G[k] for k in names)
    extra = up(sum(up(err[k] + gamma(len(names) + 2) * frobenius_upper(G[k]), 2)
                   for k in names), len(names))
    op = _un(np.sqrt(_lam_max_upper(Q, extra)))
    return best, fro, op


def _box_sdp(Ms, vecE, names, iters):
    r"""SDP-dual bound :math:`\sup_{|u|\le1}\|Au\| \le (\sum\omega)^{1/2}
    \lambda_{\max}(A\Omega^{-1}A^T)^{1/2}`, A = [M_k diag(vec E_k)]; (B,)."""
    B = next(iter(Ms.values())).shape[0]
    Ml = [Ms[k] for k in names]
    El = [vecE[k] for k in names]
    A = np.concatenate([M * E[None, None, :] for M, E in zip(Ml, El)], axis=2)   # (B, n, KN)
    Mc = np.concatenate(Ml, axis=2)
    Ec = np.concatenate(El)
    keep = Ec > 0
    A, Mc, Ec = A[:, :, keep], Mc[:, :, keep], Ec[keep]
    out = np.full(B, np.inf)
    for b in range(B):
        a = A[b]
        cn = np.sqrt(np.sum(a * a, axis=0)) + 1e-300
        omega = cn.copy()
        best_est, best_om = np.inf, omega
        for it in range(iters):
            Q = (a / omega) @ a.T
            w, V = np.linalg.eigh(0.5 * (Q + Q.T))
            est = w[-1] * omega.sum()
            if est < best_est:
                best_est, best_om = est, omega
            mu = np.maximum(w, 0.0) / max(w[-1], 1e-300)
            mu = mu ** 4
            proj = (V * np.sqrt(mu)).T @ a                         # (n, KN)
            omega = np.sqrt(np.sum(proj * proj, axis=0)) + 1e-3 * cn
        # verify best_om: weights c_j = E_j^2 / omega_j on the columns of Mc
        c = Ec * Ec / best_om
        c = np.where(c > 0, c, 1e-300)
        M = Mc[b]
        Q = (M * c) @ M.T
        rc2 = up((M * M) @ c, M.shape[1])                       # row norms^2 of M diag(sqrt c)
        extra = up(gamma(M.shape[1] + 2) * np.sum(rc2), M.shape[0])
        lq = _lam_max_upper(Q[None], np.array([extra]))[0]
        sw = up(np.sum(up(Ec * Ec / c, 2)), M.shape[1])
        out[b] = up(_un(np.sqrt(sw)) * _un(np.sqrt(lq)), 1)
    return out


# ======================================================================= zonotope
class _Zonotope:
    r"""Enclosure :math:`\{G\xi + b: |\xi|\le 1, |b|\le\beta\}` of a vector
    sequence :math:`z_t = J_t z_{t-1} + d_t`, :math:`|d_t|\le\delta_t`."""

    def __init__(self, B, n, window):
        self.n = n
        self.G = np.zeros((B, n, 0))
        self.beta = np.zeros((B, n))
        self.cols = window * n

    def step(self, J, aJ, delta):
        n = self.n
        beta = aJ @ self.beta[:, :, None]
        beta = beta[:, :, 0]
        if self.G.shape[2]:
            rowabs = up(np.abs(self.G).sum(axis=2), self.G.shape[2])
            rnd = gamma(n + 1) * (aJ @ rowabs[:, :, None])[:, :, 0]
            G = J @ self.G
            beta = up(beta + rnd, 2 * n + 2)
        else:
            G = self.G
            beta = up(beta, n)
        D = np.zeros((G.shape[0], n, n))
        idx = np.arange(n)
        D[:, idx, idx] = delta
        G = np.concatenate([G, D], axis=2)
        if G.shape[2] > self.cols:
            old = G[:, :, :n]
            beta = up(beta + np.abs(old).sum(axis=2), n + 1)
            G = np.ascontiguousarray(G[:, :, n:])
        bad = ~np.all(np.isfinite(G), axis=2) | ~np.isfinite(beta)
        if np.any(bad):
            G[bad] = 0.0
            beta[bad] = np.inf
        self.G, self.beta = G, beta

    def bound(self):
        return up(np.abs(self.G).sum(axis=2) + self.beta, self.G.shape[2] + 1)

    def clip(self, limit):
        """Replace rows whose bound exceeds ``limit`` (B, n) by the slab ``limit``."""
        zb = self.bound()
        rows = ~(zb <= limit)
        if np.any(rows):
            self.G[rows] = 0.0
            self.beta = np.where(rows, limit, self.beta)
            zb = np.where(rows, limit, zb)
        return zb

    def reset(self, b, box):
        self.G[b] = 0.0
        self.beta[b] = box


# ======================================================================= the trace
@dataclass(frozen=True)
class SetTrace:
    r"""Everything :func:`set_trace` computes, per step (T, B, ...) arrays.

    Attributes
    ----------
    bound : ndarray (T, B)
        :math:`\ge\sup_{\Delta\in S}\|h'_t-h_t\|_2` (what :func:`set_bound` returns).
    coord : ndarray (T, B, n)
        :math:`\ge\sup_{\Delta\in S}|h'_t-h_t|` componentwise.
    lin_coord : ndarray (T, B, n)
        Per-coordinate suprema :math:`\lambda_t` of the linear part.
    lin_norm : ndarray (T, B)
        :math:`\Lambda_t \ge \sup_S\|\ell_t\|_2`.
    rem_coord, rem0_coord : ndarray (T, B, n)
        :math:`\zeta_t \ge |z_t|` (remainder, with rounding) and
        :math:`\zeta^0_t \ge |\tilde h_t - h_t|` (pure rounding of the nominal run).
    lin_fro, lin_op : ndarray (T, B) or None
        For a :class:`Ball`: upper bounds on :math:`\|[\tilde M^k_t]_k\|_F` and
        :math:`\|[\tilde M^k_t]_k\|_2` (the map :math:`\mathrm{vec}\Delta\mapsto\ell_t`
        over all perturbed matrices, unscaled), used by the noise bound.
    cap : ndarray (B,)
        :math:`\|w\|_2`, the trivial cap.
    restarts : int
        How many times the linear model was restarted (vacuous regime).
    """

    bound: np.ndarray
    coord: np.ndarray
    lin_coord: np.ndarray
    lin_norm: np.ndarray
    rem_coord: np.ndarray
    rem0_coord: np.ndarray
    lin_fro: np.ndarray | None
    lin_op: np.ndarray | None
    cap: np.ndarray
    restarts: int


def _cell64(cell):
    if cell.dtype == np.float64:
        return cell
    return type(cell)(**{k: np.asarray(v, np.float64) for k, v in cell.params.items()},
                      dtype=np.float64)


def _nrm(v):
    return row_norms_upper(v)


class _Stepper:
    """Interval evaluations of the cell's step over a box, through the protocol."""

    def __init__(self, cell, ops):
        self.cell = cell
        self.ops = ops
        self.P = dict(cell.params)
        self.W = {k: np.asarray(v, np.float64) for k, v in cell.recurrent.items()}
        self.n = cell.n

    def _rec_set(self, force=None):
        ns, ops, W = INTERVAL, self.ops, self.W

        def rec(k, v):
            out = ns.matvec(W[k], v)
            if k in ops.names:
                av = v.absmax() if isinstance(v, Interval) else np.abs(np.asarray(v))
                s = ops.sigma(k, av)
                out = out + Interval(-s, s)
            if force is not None and k in force:
                out = out + force[k]
            return out
        return rec

    def point(self, h, x):
        """Enclosure of the exact step at the point h (exact W)."""
        ns, W = INTERVAL, self.W
        hn, _ = self.cell.forward(ns, self.P, Interval(h), x, lambda k, a: ns.matvec(W[k], a))
        return hn

    def box(self, lo, hi, x):
        """Interval forward over the box [lo, hi] and every W + Delta, Delta in S."""
        regs = {}
        inner = self._rec_set()

        def recording(k, a):
            regs[k] = a
            return inner(k, a)
        xi = Interval(lo, hi)
        hn, aux = self.cell.forward(INTERVAL, self.P, xi, x, recording)
        return xi, hn, aux, regs

    def jacobian(self, xi, aux, B):
        n = self.n
        E = np.zeros((n, B, n))
        idx = np.arange(n)
        E[idx, :, idx] = 1.0
        Z = self.cell.tangent(INTERVAL, self.P, xi, aux, E, self._rec_set(), lambda k: 0.0)
        Z = _iv(Z)
        return (np.transpose(np.broadcast_to(Z.lo, (n, B, n)), (1, 2, 0)),
                np.transpose(np.broadcast_to(Z.hi, (n, B, n)), (1, 2, 0)))

    def forcing(self, xi, aux, k, diag, B):
        n = self.n
        if diag:
            Z = self.cell.tangent(INTERVAL, self.P, xi, aux, np.zeros((B, n)),
                                  self._rec_set({k: np.ones((B, n))}), lambda k_: 0.0)
            Z = _iv(Z)
            return np.broadcast_to(Z.lo, (B, n)), np.broadcast_to(Z.hi, (B, n))
        E = np.zeros((n, B, n))
        idx = np.arange(n)
        E[idx, :, idx] = 1.0
        Z = self.cell.tangent(INTERVAL, self.P, xi, aux, np.zeros((n, B, n)),
                              self._rec_set({k: E}), lambda k_: 0.0)
        Z = _iv(Z)
        return (np.transpose(np.broadcast_to(Z.lo, (n, B, n)), (1, 2, 0)),
                np.transpose(np.broadcast_to(Z.hi, (n, B, n)), (1, 2, 0)))


def _dev(lo, hi, c):
    """Upper bound on max(|lo - c|, |hi - c|) elementwise."""
    return up(np.maximum(np.abs(lo - c), np.abs(hi - c)), 1)


# ============================================================ affine arithmetic
class _AffCtx:
    r"""Noise symbols of the set: :math:`\Delta_k = \mathrm{scale}_k\odot U_k`, with
    :math:`\|U_k\|_F\le1` (ball) or :math:`|U_k|\le1` (box); ``rowsup`` is the
    supremum of :math:`|A u|` per row over those symbols."""

    def __init__(self, cell, ops, use_set=True):
        self.ops = ops
        self.n = n = cell.n
        self.is_ball = ops.is_ball
        self.names = ops.names if use_set else ()
        self.blocks = {}
        self.scale = {}
        for i, k in enumerate(self.names):
            self.blocks[k] = slice(i * n * n, (i + 1) * n * n)
            self.scale[k] = (np.full((n, n), ops.eps[k]) if ops.is_ball else ops.E[k])
        self.Nu = len(self.names) * n * n

    def rowsup(self, Au):
        if Au is None or Au.shape[-1] == 0:
            return 0.0
        if self.is_ball:
            return up(sum(row_norms_upper(Au[..., s]) for s in self.blocks.values()),
                      len(self.blocks))
        return up(np.abs(Au).sum(axis=-1), Au.shape[-1])


def _xsum(Ax):
    if Ax is None or Ax.shape[-1] == 0:
        return 0.0
    return up(np.abs(Ax).sum(axis=-1), Ax.shape[-1])


class Affine:
    r"""Affine form :math:`c + A_u u + A_\xi\xi + b`, :math:`|b|\le r`, over the
    set symbols :math:`u` (see :class:`_AffCtx`) and error symbols
    :math:`\xi\in[-1,1]^g`; shapes c, r (B, n), A_u (B, n, N_u), A_ξ (B, n, g)
    (None for zero). Every operation adds its own rounding to r."""

    __array_ufunc__ = None
    __slots__ = ("ctx", "c", "Au", "Ax", "r")

    def __init__(self, ctx, c, Au=None, Ax=None, r=None):
        self.ctx, self.c, self.Au, self.Ax = ctx, np.asarray(c, np.float64), Au, Ax
        self.r = np.zeros_like(self.c) if r is None else r

    def lin(self):
        """Per-row sup of the symbolic part |A_u u + A_ξ ξ| (upper)."""
        return up(self.ctx.rowsup(self.Au) + _xsum(self.Ax), 2)

    def rad(self):
        return up(self.lin() + self.r, 2)

    def _rnd(self, k=2):
        """Rounding of an elementwise op that produced c, Au, Ax (relative k u)."""
        return (k * U64 * (1 + 4 * U64)) * (np.abs(self.c) + self.lin()) + 1e-300

    @staticmethod
    def _add(x, y, sign):
        if x is None:
            return None if y is None else (y if sign > 0 else -y)
        if y is None:
            return x
        return x + y if sign > 0 else x - y

    def _combine(self, o, sign):
        if isinstance(o, Affine):
            out = Affine(self.ctx, self.c + sign * o.c, Affine._add(self.Au, o.Au, sign),
                         Affine._add(self.Ax, o.Ax, sign), up(self.r + o.r, 1))
        elif isinstance(o, Interval):
            m = 0.5 * (o.lo + o.hi)
            rr = _un(np.maximum(_un(o.hi - m), _un(m - o.lo)))
            out = Affine(self.ctx, self.c + sign * m, self.Au, self.Ax, up(self.r + rr, 1))
        else:
            out = Affine(self.ctx, self.c + sign * np.asarray(o, np.float64), self.Au,
                         self.Ax, self.r)
        out.r = up(out.r + out._rnd(), 1)
        return out

    def __add__(self, o):
        return self._combine(o, 1)

    __radd__ = __add__

    def __sub__(self, o):
        return self._combine(o, -1)

    def __neg__(self):
        return Affine(self.ctx, -self.c, None if self.Au is None else -self.Au,
                      None if self.Ax is None else -self.Ax, self.r)

    def __rsub__(self, o):
        return (-self)._combine(o, 1)

    def _scale(self, a):
        a = np.asarray(a, np.float64)
        out = Affine(self.ctx, self.c * a, None if self.Au is None else self.Au * a[..., None],
                     None if self.Ax is None else self.Ax * a[..., None], up(self.r * np.abs(a), 1))
        out.r = up(out.r + out._rnd(), 1)
        return out

    def __mul__(self, o):
        if isinstance(o, Affine):
            # (c + d)(c' + d') = cc' + c d' + c' d + d d'
            p = self._scale(o.c)
            q = Affine(o.ctx, np.zeros_like(o.c), o.Au, o.Ax, o.r)._scale(self.c)
            out = p + q
            out.r = up(out.r + self.rad() * o.rad(), 2)
            return out
        if isinstance(o, Interval):
            m = 0.5 * (o.lo + o.hi)
            rr = _un(np.maximum(_un(o.hi - m), _un(m - o.lo)))
            out = self._scale(m)
            out.r = up(out.r + (np.abs(self.c) + self.rad()) * rr, 2)
            return out
        return self._scale(o)

    __rmul__ = __mul__


def _aff_matvec(A, v):
    A = np.asarray(A, np.float64)
    k = A.shape[1]
    aA = np.abs(A)
    ctx = v.ctx
    c = v.c @ A.T
    Au = None if v.Au is None else np.matmul(A, v.Au)
    Ax = None if v.Ax is None else np.matmul(A, v.Ax)
    mag = np.abs(v.c) + v.lin()
    r = up(v.r @ aA.T + gamma(k + 1) * (mag @ aA.T), k + 2)
    return Affine(ctx, c, Au, Ax, r)


def _aff_act(v, kind, fun, lo_cap, hi_cap):
    from rnnperturb.verified.activation import activation, taylor_remainder_max
    rho = v.rad()
    t = fun(v.c)
    s = activation(kind)[1](v.c)
    ae = act_error(kind)
    R = taylor_remainder_max(kind, v.c, -rho, rho)
    out = Affine(v.ctx, t, None if v.Au is None else v.Au * s[..., None],
                 None if v.Ax is None else v.Ax * s[..., None], None)
    out.r = up(s * v.r + R + 4 * ae * (1 + 4 * U64) * s * rho + ae * np.abs(t) + 1e-120
               + out._rnd(), 5)
    return out


class AffineNamespace(IntervalNamespace):
    """Namespace of :class:`Affine` forms (falls back to intervals for others)."""

    @staticmethod
    def tanh(x):
        if isinstance(x, Affine):
            return _aff_act(x, "tanh", np.tanh, -1.0, 1.0)
        return IntervalNamespace.tanh(x)

    @staticmethod
    def sigmoid(x):
        if isinstance(x, Affine):
            return _aff_act(x, "sigmoid", _float_sigmoid, 0.0, 1.0)
        return IntervalNamespace.sigmoid(x)

    @staticmethod
    def matvec(A, v):
        if isinstance(v, Affine):
            return _aff_matvec(A, v)
        return IntervalNamespace.matvec(A, v)

    @staticmethod
    def lerp(h, c, f):
        if isinstance(h, Affine) or isinstance(c, Affine) or isinstance(f, Affine):
            return h + f * (c - h)
        return IntervalNamespace.lerp(h, c, f)


#: The affine-form namespace.
AFFINE = AffineNamespace()


def _aff_rec(ctx, W):
    def rec(k, a):
        out = _aff_matvec(W[k], a)
        if k in ctx.blocks:
            # Delta_k c: exact in the set symbols; Delta_k (a - c): second order
            n = ctx.n
            B = a.c.shape[0]
            sc = ctx.scale[k]
            add = np.zeros((B, n, n * n))
            A4 = add.reshape(B, n, n, n)
            idx = np.arange(n)
            A4[:, idx, idx, :] = sc[None, :, :] * a.c[:, None, :]
            Au = np.zeros((B, n, ctx.Nu)) if out.Au is None else out.Au.copy()
            old_rs = ctx.rowsup(Au[..., ctx.blocks[k]])
            Au[..., ctx.blocks[k]] += add
            rnd = up(3 * U64 * (old_rs + ctx.rowsup(add)), 2)
            out = Affine(ctx, out.c, Au, out.Ax, up(out.r + ctx.ops.sigma(k, a.rad()) + rnd, 2))
        return out
    return rec


def _trace_affine(cell, ops, X3, h0a, window, iters):
    T, B = X3.shape[0], X3.shape[1]
    n = cell.n
    names = ops.names
    ctx = _AffCtx(cell, ops, True)
    ctx0 = _AffCtx(cell, ops, False)
    P = dict(cell.params)
    W = {k: np.asarray(v, np.float64) for k, v in cell.recurrent.items()}
    lo_b, hi_b = cell.state_bounds(h0a)
    lo_b = np.broadcast_to(np.asarray(lo_b, np.float64), (B, n))
    hi_b = np.broadcast_to(np.asarray(hi_b, np.float64), (B, n))
    mid_b = 0.5 * (lo_b + hi_b)
    half_b = up(0.5 * (hi_b - lo_b) + np.abs(mid_b) * 4 * U64, 2)
    width = np.broadcast_to(np.asarray(cell.trivial_cap(h0a, B), np.float64), (B, n))
    cap = _nrm(width)
    hp = Affine(ctx, h0a.copy(), np.zeros((B, n, ctx.Nu)) if names else None,
                np.zeros((B, n, 0)), np.zeros((B, n)))
    hz = Affine(ctx0, h0a.copy(), None, np.zeros((B, n, 0)), np.zeros((B, n)))
    rec, rec0 = _aff_rec(ctx, W), _aff_rec(ctx0, W)
    res = {key: np.empty((T, B, n)) for key in ("coord", "lin_coord", "rem", "rem0")}
    bound, lin_norm = np.empty((T, B)), np.empty((T, B))
    lin_fro = np.empty((T, B)) if ops.is_ball else None
    lin_op = np.empty((T, B)) if ops.is_ball else None
    cols = window * n

    def consolidate(a):
        # row clipping by the state box (sound: a slab replaces the row)
        rad = a.rad()
        bad = ~(rad <= half_b) | ~np.isfinite(a.c)
        if np.any(bad):
            c = np.where(bad, mid_b, a.c)
            r = np.where(bad, half_b, a.r)
            Au = None if a.Au is None else np.where(bad[..., None], 0.0, a.Au)
            Ax = np.where(bad[..., None], 0.0, a.Ax)
            a = Affine(a.ctx, c, Au, Ax, r)
        D = np.zeros((B, n, n))
        idx = np.arange(n)
        D[:, idx, idx] = a.r
        Ax = np.concatenate([a.Ax, D], axis=2)
        r = np.zeros((B, n))
        if Ax.shape[2] > cols:
            r = up(np.abs(Ax[:, :, :n]).sum(axis=2), n)
            Ax = np.ascontiguousarray(Ax[:, :, n:])
        return Affine(a.ctx, a.c, a.Au, Ax, r)

    for t in range(T):
        x = X3[t]
        hp = cell.forward(AFFINE, P, hp, x, rec)[0]
        hz = cell.forward(AFFINE, P, hz, x, rec0)[0]
        if not isinstance(hp, Affine):
            raise TypeError("forward: expected the state to stay an affine form")
        lam = ctx.rowsup(hp.Au) if names else np.zeros((B, n))
        lam = np.broadcast_to(lam, (B, n))
        rem = up(_xsum(hp.Ax) + hp.r, 1)
        rem0 = up(_xsum(hz.Ax) + hz.r + np.abs(hp.c - hz.c) * (1 + 2 * U64), 2)
        if not names:
            Lam = np.zeros(B)
            if ops.is_ball:
                lin_fro[t] = 0.0
                lin_op[t] = 0.0
        else:
            Ms = {k: hp.Au[..., ctx.blocks[k]] for k in names}
            if ops.is_ball:
                Lam, fro, op = _ball_norm(Ms, {k: 1.0 for k in names}, names)
                lin_fro[t] = fro / ops.eps[names[0]] if len(set(ops.eps[k] for k in names)) == 1 \
                    else np.inf
                lin_op[t] = op / ops.eps[names[0]] if len(set(ops.eps[k] for k in names)) == 1 \
                    else np.inf
            else:
                Lam = _nrm(lam)
                if iters:
                    fin = np.all(np.isfinite(lam), axis=1) & (Lam < 1e6 * cap)
                    if np.any(fin):
                        ones = {k: np.ones(n * n) for k in names}
                        sdp = _box_sdp({k: Ms[k][fin] for k in names}, ones, names, iters)
                        Lam = Lam.copy()
                        Lam[fin] = np.minimum(Lam[fin], sdp)
        Lam = np.where(np.isfinite(Lam), Lam, np.inf)
        comp = np.minimum(up(lam + rem + rem0, 2), width)
        bt = np.minimum(np.minimum(_nrm(comp), up(Lam + _nrm(rem) + _nrm(rem0), 2)), cap)
        bound[t] = np.where(np.isfinite(bt), bt, cap)
        res["coord"][t], res["lin_coord"][t] = comp, lam
        res["rem"][t], res["rem0"][t] = rem, rem0
        lin_norm[t] = Lam
        hp, hz = consolidate(hp), consolidate(hz)
    return SetTrace(bound=bound, coord=res["coord"], lin_coord=res["lin_coord"],
                    lin_norm=lin_norm, rem_coord=res["rem"], rem0_coord=res["rem0"],
                    lin_fro=lin_fro, lin_op=lin_op, cap=cap, restarts=0)


def set_trace(cell, S, X, h0=None, *, window: int = 32, box_refine="auto",
              method: str = "affine") -> SetTrace:
    r"""The set bound with all its pieces (see the module docstring).

    Parameters
    ----------
    cell : Cell
        Any cell implementing the protocol.
    S : Ball or Box
        A set of :mod:`rnnperturb.perturb.sets`.
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, n) or (n,), optional
    window : int
        Steps over which the remainder is propagated by exact multi-step
        propagators (memory O(window n^2)).
    box_refine : 'auto', bool or int
        Fixed-point iterations of the SDP-dual norm bound for boxes (``'auto'``:
        6 when n <= 64, else off; cost O(n^4) per iteration and step).
    method : {'affine', 'mean_value', 'best'}
        ``'affine'``: the cell's ``forward`` in affine arithmetic over the set
        symbols (module docstring, "Affine method"); ``'mean_value'``: the
        linearisation plus the interval mean-value remainder; ``'best'``: both,
        the smaller (each is sound).

    Returns
    -------
    SetTrace
        Arrays of shape (T, B, ...) (a leading batch axis of 1 for (T, m) inputs).
    """
    ops = _SetOps(cell, S)
    window = check_int("window", window, low=1, high=100_000)
    if method not in ("affine", "mean_value", "best"):
        raise ValueError(f"method: expected 'affine', 'mean_value' or 'best', found {method!r}")
    X3, single = as_inputs(X, cell.m, cell.dtype)
    cell = _cell64(cell)
    T, B = X3.shape[0], X3.shape[1]
    h0a = as_h0(h0, cell.n, B, single, np.float64)
    X3 = X3.astype(np.float64)
    n = cell.n
    if box_refine == "auto":
        iters = 6 if (not ops.is_ball and n <= 64) else 0
    elif isinstance(box_refine, bool):
        iters = 6 if box_refine else 0
    else:
        iters = check_int("box_refine", box_refine, low=0, high=1000)
    if method == "affine":
        return _trace_affine(cell, ops, X3, h0a, window, iters)
    if method == "mean_value":
        return _trace_mean_value(cell, ops, X3, h0a, window, iters)
    a = _trace_affine(cell, ops, X3, h0a, window, iters)
    b = _trace_mean_value(cell, ops, X3, h0a, window, iters)
    return a if np.sum(a.bound) <= np.sum(b.bound) else b


def _trace_mean_value(cell, ops, X3, h0a, window, iters):
    T, B = X3.shape[0], X3.shape[1]
    n = cell.n
    names = ops.names
    step = _Stepper(cell, ops)
    lo_b, hi_b = cell.state_bounds(h0a)
    lo_b = np.broadcast_to(np.asarray(lo_b, np.float64), (B, n))
    hi_b = np.broadcast_to(np.asarray(hi_b, np.float64), (B, n))
    width = np.broadcast_to(np.asarray(cell.trivial_cap(h0a, B), np.float64), (B, n))
    cap = _nrm(width)
    Ms = {k: np.zeros((B, n, n * n)) for k in names}
    zon = _Zonotope(B, n, window)
    zon0 = _Zonotope(B, n, window)
    h = h0a.copy()
    eps_prev = np.zeros((B, n))
    z0_prev = np.zeros((B, n))
    lam_prev = np.zeros((B, n))
    out = {key: np.empty((T, B, n)) for key in ("coord", "lin_coord", "rem", "rem0")}
    bound = np.empty((T, B))
    lin_norm = np.empty((T, B))
    lin_fro = np.empty((T, B)) if ops.is_ball else None
    lin_op = np.empty((T, B)) if ops.is_ball else None
    gam = gamma(n + 3)
    restarts = 0
    idx = np.arange(n)
    for t in range(T):
        x = X3[t]
        hn, J, forcing = cell.linearise(h, x)
        hn = np.asarray(hn, np.float64)
        aJ = np.abs(J)
        # --- the box of the states on the segment, and interval enclosures over it
        xlo = np.maximum(_dn(h - eps_prev), np.minimum(lo_b, h))
        xhi = np.minimum(_un(h + eps_prev), np.maximum(hi_b, h))
        xi, _, aux, regs = step.box(xlo, xhi, x)
        Jlo, Jhi = step.jacobian(xi, aux, B)
        dJ = _dev(Jlo, Jhi, J)
        dJ = np.where(np.isfinite(dJ), dJ, np.inf)
        # --- local rounding of the computed step
        ex = step.point(h, x)
        g = _dev(ex.lo, ex.hi, hn)
        # --- forcing defect and the linear part
        fdef = np.zeros((B, n))
        lamF = np.zeros((B, n))
        lam = np.zeros((B, n))
        for k in names:
            diag, Bt, a = forcing[k]
            a = np.asarray(a, np.float64)
            blo, bhi = step.forcing(xi, aux, k, diag, B)
            dB = _dev(blo, bhi, Bt)
            areg = _iv(regs[k])
            sA = ops.sigma(k, areg.absmax())
            sD = ops.sigma(k, _dev(areg.lo, areg.hi, a))
            sa = ops.sigma(k, np.abs(a))
            aB = np.abs(Bt)
            if diag:
                fdef = fdef + dB * sA + aB * sD
                lamF = lamF + aB * sa
            else:
                fdef = fdef + (dB @ sA[:, :, None])[:, :, 0] + (aB @ sD[:, :, None])[:, :, 0]
                lamF = lamF + (aB @ sa[:, :, None])[:, :, 0]
            M = J @ Ms[k]
            M4 = M.reshape(B, n, n, n)
            if diag:
                M4[:, idx, idx, :] += Bt[:, :, None] * a[:, None, :]
            else:
                M4 += Bt[:, :, :, None] * a[:, None, None, :]
            Ms[k] = M
            lam = lam + ops.coord_sup(k, M)
        fdef = up(fdef, 4 * n + 4)
        lam = up(lam, len(names) + 1)
        eta = up(gam * ((aJ @ lam_prev[:, :, None])[:, :, 0] + lamF), n + 2)
        # --- norm of the linear part
        if not names:
            Lam = np.zeros(B)
            if ops.is_ball:
                lin_fro[t] = 0.0
                lin_op[t] = 0.0
        elif ops.is_ball:
            Lam, fro, op = _ball_norm(Ms, ops.eps, names)
            lin_fro[t], lin_op[t] = fro, op
        else:
            Lam = _nrm(lam)
            if iters:
                fin = np.all(np.isfinite(lam), axis=1) & (Lam < 1e6 * cap)
                if np.any(fin):
                    sdp = _box_sdp({k: Ms[k][fin] for k in names}, ops.vecE, names, iters)
                    Lam = Lam.copy()
                    Lam[fin] = np.minimum(Lam[fin], sdp)
        Lam = np.where(np.isfinite(Lam), Lam, np.inf)
        # --- remainder zonotopes
        delta = up((dJ @ eps_prev[:, :, None])[:, :, 0] + fdef + eta + g, 4)
        delta0 = up((dJ @ z0_prev[:, :, None])[:, :, 0] + g, 2)
        delta = np.where(np.isfinite(delta), delta, np.inf)
        delta0 = np.where(np.isfinite(delta0), delta0, np.inf)
        zon.step(J, aJ, delta)
        zon0.step(J, aJ, delta0)
        ce = up(np.maximum(hi_b - hn, hn - lo_b), 1)             # |h'_t - h~_t| <= ce
        lam_f = np.where(np.isfinite(lam), lam, np.inf)
        zeta = zon.clip(up(ce + np.minimum(lam_f, 1e300), 1))
        zeta0 = zon0.clip(ce)
        # --- results
        comp = np.minimum(up(lam_f + zeta + zeta0, 2), width)
        b1 = _nrm(comp)
        b2 = up(Lam + _nrm(zeta) + _nrm(zeta0), 2)
        bt = np.minimum(np.minimum(b1, b2), cap)
        bound[t] = np.where(np.isfinite(bt), bt, cap)
        out["coord"][t] = comp
        out["lin_coord"][t] = lam_f
        out["rem"][t] = zeta
        out["rem0"][t] = zeta0
        lin_norm[t] = Lam
        eps_now = np.minimum(up(lam_f + zeta, 1), ce)
        # --- restart the linear model where it is far beyond the cap
        huge = ~(np.max(lam_f, axis=1) <= 1e6 * np.max(width, axis=1))
        if np.any(huge):
            for b in np.flatnonzero(huge):
                restarts += 1
                for k in names:
                    Ms[k][b] = 0.0
                zon.reset(b, eps_now[b])
                lam_f = lam_f.copy()
                lam_f[b] = 0.0
        lam_prev = lam_f
        eps_prev = eps_now
        z0_prev = zeta0
        h = hn
    return SetTrace(bound=bound, coord=out["coord"], lin_coord=out["lin_coord"],
                    lin_norm=lin_norm, rem_coord=out["rem"], rem0_coord=out["rem0"],
                    lin_fro=lin_fro, lin_op=lin_op, cap=cap, restarts=restarts)


def set_bound(cell, S, X, h0=None, *, window: int = 32, box_refine="auto",
              method: str = "affine", componentwise: bool = False):
    r"""Sound upper bound on :math:`\sup_{\Delta W\in S}\|h'_t - h_t\|_2` for every step.

    The bound holds for the exact (real-arithmetic) trajectories of ``cell``
    and of every cell with recurrent matrices :math:`W_k + \Delta W_k`,
    :math:`\Delta W\in S`, on the given inputs (method, proof and assumptions
    in the module docstring).

    Parameters
    ----------
    cell : Cell
        Any cell implementing the protocol (float32 cells are analysed exactly
        in float64).
    S : Ball or Box
        From :mod:`rnnperturb.perturb.sets` (``Ball``, ``Box``,
        ``quantization``, ``drift``).
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, n) or (n,), optional
        Common initial state (zeros when None).
    window : int
        Steps of exact multi-step propagation of the remainder.
    box_refine : 'auto', bool or int
        SDP-dual refinement of the box's linear part (see :func:`set_trace`).
    method : {'affine', 'mean_value', 'best'}
        See :func:`set_trace`.
    componentwise : bool
        Return the componentwise bound (T, B, n) or (T, n) instead.

    Returns
    -------
    ndarray, shape (T, B) or (T,)
        ``bound[t-1]`` for :math:`h_t`, at most the trivial cap.
    """
    X3, single = as_inputs(X, cell.m, cell.dtype)
    tr = set_trace(cell, S, X3, h0, window=window, box_refine=box_refine, method=method)
    res = tr.coord if componentwise else tr.bound
    return res[:, 0] if single else res


# ========================================================================= attack
def carried_matrices(cell, X, h0=None, names=None) -> dict:
    r"""The carried matrices :math:`M^k_T` of the tangent-linear model at the last step,
    :math:`\ell_T = \sum_k M^k_T\,\mathrm{vec}\,\Delta W_k`; dict name -> (B, n, n*n)
    (float; not a bound)."""
    X3, single = as_inputs(X, cell.m, cell.dtype)
    cell = _cell64(cell)
    T, B = X3.shape[0], X3.shape[1]
    h = as_h0(h0, cell.n, B, single, np.float64)
    n = cell.n
    names = tuple(cell.recurrent_names) if names is None else tuple(names)
    Ms = {k: np.zeros((B, n, n * n)) for k in names}
    idx = np.arange(n)
    for t in range(T):
        h, J, forcing = cell.linearise(h, X3[t].astype(np.float64))
        for k in names:
            diag, Bt, a = forcing[k]
            M = J @ Ms[k]
            M4 = M.reshape(B, n, n, n)
            if diag:
                M4[:, idx, idx, :] += Bt[:, :, None] * a[:, None, :]
            else:
                M4 += Bt[:, :, :, None] * a[:, None, None, :]
            Ms[k] = M
    return Ms


def _objective_and_grad(cell, names, X3, h0, HT, dW):
    """||h'_T - h_T|| and the gradient of 0.5 ||h'_T - h_T||^2 w.r.t. dW (adjoint)."""
    other = cell.replace(**{k: cell.recurrent[k] + dW[k] for k in names})
    h = h0
    tape = []
    for t in range(X3.shape[0]):
        hn, J, forcing = other.linearise(h, X3[t])
        tape.append((J, forcing))
        h = hn
    e = h - HT                                            # (1, n)
    mu = e.copy()
    grad = {k: np.zeros((cell.n, cell.n)) for k in names}
    for J, forcing in reversed(tape):
        for k in names:
            diag, Bt, a = forcing[k]
            if diag:
                v = Bt[0] * mu[0]
            else:
                v = Bt[0].T @ mu[0]
            grad[k] += np.outer(v, a[0])
        mu = (J[0].T @ mu[0])[None]
    return float(np.linalg.norm(e)), grad


def set_attack(cell, S, X, seed=0, *, h0=None, iters: int = 40, restarts: int = 4):
    r"""Projected gradient ascent of :math:`\|h'_T - h_T\|_2` over the set (a lower
    bound on :math:`\sup_S`).

    Starts from the maximisers of the tangent-linear model (top singular
    direction of :math:`\tilde M_T` for a ball, both signs; the sign pattern
    of the top direction of :math:`\tilde M_T\,\mathrm{diag}(E)` for a box) and
    from ``restarts`` random boundary points; each start takes ``iters``
    ascent steps with the exact gradient of :math:`\|h'_T-h_T\|^2` along the
    perturbed trajectory (adjoint of the linearisations) and is scored by the
    exact (float) simulation.

    Parameters
    ----------
    cell : Cell
    S : Ball or Box
    X : array_like, shape (T, m) or (T, 1, m)
        One sequence.
    seed : int or numpy.random.Generator
    h0 : array_like, shape (n,), optional
    iters, restarts : int

    Returns
    -------
    lo : float
        The largest :math:`\|h'_T - h_T\|_2` found (float simulation).
    dW : dict of str to ndarray (n, n)
        The member of S that attains it (every recurrent matrix).
    """
    ops = _SetOps(cell, S)
    rng = as_generator(seed)
    iters = check_int("iters", iters, low=0, high=100_000)
    restarts = check_int("restarts", restarts, low=0, high=10_000)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    cell = _cell64(cell)
    if X3.shape[1] != 1:
        raise ValueError(f"X: expected one sequence, shape (T, m) or (T, 1, m), found "
                         f"{X3.shape[1]} sequences")
    X3 = X3.astype(np.float64)
    h0a = as_h0(None if h0 is None else np.asarray(h0, np.float64).reshape(-1),
                cell.n, 1, True, np.float64)
    names = ops.names
    n = cell.n
    HT = cell.run(X3, h0a)[-1]
    zero = {k: np.zeros((n, n)) for k in cell.recurrent_names}
    if not names:
        return 0.0, zero

    def full(d):
        out = dict(zero)
        out.update({k: d[k] for k in names})
        return out

    def project(d):
        return {k: v for k, v in S.project(cell, full(d)).items() if k in names}

    def simulate(d):
        other = cell.replace(**{k: cell.recurrent[k] + d[k] for k in names})
        return float(np.linalg.norm(other.run(X3, h0a)[-1] - HT))

    starts = []
    Ms = carried_matrices(cell, X3, h0a, names)
    if ops.is_ball:
        A = np.concatenate([ops.eps[k] * Ms[k][0] for k in names], axis=1)
        _, _, Vt = np.linalg.svd(A, full_matrices=False)
        v = Vt[0]
        d = {}
        for i, k in enumerate(names):
            blk = v[i * n * n:(i + 1) * n * n].reshape(n, n)
            nb = np.linalg.norm(blk)
            d[k] = blk * (ops.eps[k] / nb) if nb > 0 else blk
        starts += [d, {k: -v_ for k, v_ in d.items()}]
    else:
        A = np.concatenate([Ms[k][0] * ops.vecE[k][None, :] for k in names], axis=1)
        U_, _, _ = np.linalg.svd(A, full_matrices=False)
        for j in range(min(2, U_.shape[1])):
            u = U_[:, j]
            d = {k: np.sign(u @ Ms[k][0]).reshape(n, n) * ops.E[k] for k in names}
            starts += [d, {k: -v_ for k, v_ in d.items()}]
    for _ in range(restarts):
        s = S.sample(cell, rng, how="boundary")
        starts.append({k: s[k] for k in names})
    best, best_d = -1.0, None
    for d in starts:
        d = project(d)
        val = simulate(d)
        if val > best:
            best, best_d = val, d
        for it in range(iters):
            _, gr = _objective_and_grad(cell, names, X3, h0a, HT, d)
            alpha = 0.5 * (1 - it / max(iters, 1)) + 0.02
            if ops.is_ball:
                gn = np.sqrt(sum(np.sum(gr[k] ** 2) for k in names))
                if gn == 0:
                    break
                cand = {k: d[k] + alpha * ops.eps[k] * np.sqrt(len(names)) * gr[k] / gn
                        for k in names}
                # stay on the sphere (the objective is largest on the boundary)
                cand = {k: v * (ops.eps[k] / max(np.linalg.norm(v), 1e-300)) for k, v in
                        cand.items()}
            else:
                cand = {k: d[k] + 2 * alpha * ops.E[k] * np.sign(gr[k]) for k in names}
            cand = project(cand)
            val = simulate(cand)
            if val > best:
                best, best_d = val, cand
            d = cand
    return best, full(best_d)
