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
(:func:`rnnperturb.verified.activation.taylor_remainder_max`), or by the chord
where tighter (below); products of two
forms put :math:`|\delta x||\delta y|` in the box; every float operation adds
its rounding (relative :math:`2u` of the result per elementwise operation,
:math:`\gamma_{k+1}|A|(\cdot)` per product with a matrix). A row whose range
exceeds the half-width of ``state_bounds`` is replaced by that box. A second
run without set symbols encloses the exact nominal trajectory around the same
centres, so :math:`|h'_t - h_t| \le |A_uu| + (|A_\xi|\mathbf 1 + b) + \zeta^0_t`
with :math:`\zeta^0_t` the second run's radius. The linear part's norm
supremum is computed from :math:`A_u` exactly as below.

**One-signed remainders** (``one_sided=True``, off by default). tanh and the
sigmoid are convex on :math:`x\le0` and concave on :math:`x\ge0`, so where the whole
range of a pre-activation lies on one side of 0 the remainder of the tangent at the
centre has one sign: it lies in :math:`[0, R]` or :math:`[-R, 0]`. The centre then
moves by :math:`\pm R/2` and the radius halves (:func:`_one_sided`). On saturated,
expanding trained nets this keeps the remainder from growing step after step (the
moved centres travel as one vector, whose later images cancel in sign, instead of
a box), for example the Elman D50 checkpoint at radius :math:`3\cdot10^{-4}\|W\|_F`:
the cap without it, 1.5x the attack with it. The centres of the two runs then
differ; :math:`|c' - c|` is added to :math:`\zeta^0_t` (as it always is).

**Chords** (``chords=True``, the default). On a row whose pre-activation lies in
:math:`[c-\rho, c+\rho]`, the chord's slope :math:`s` with its error centred,
:math:`\varphi(c+d) - \tilde\varphi(c) - sd \in [o - e, o + e]`
(:func:`rnnperturb.verified.activation.secant_enclosure`), is the Chebyshev linear
approximation on a convex or concave piece: half the tangent's error (the
one-signed centring of ``one_sided`` with a better slope), and about 0.4 of it
or less where the range straddles the inflection; for wide ranges it also follows the
saturation instead of the tangent's unbounded line. It loses the tangent's norm
structure: the tangent remainder's rows are :math:`\le q_i d_i^2`, so in norm
:math:`\le\max_i(q_i\rho_i)\sup\|d\|`, about :math:`\sqrt n` below the
rows in quadrature for a ball, which the chords' :math:`\|e\|` is. So per sequence
the rows in decreasing order of :math:`q_i\rho_i` take chords as long as the
estimated norm of the activation error falls (:func:`_secant_rows`): on boxes,
quantization and large balls most rows; on small balls none. In the auto_LiRPA
setting at T = 50 (``box_refine="tight"``, bound / attack): box at 0.1x the
truncation entry 9.8 -> 6.7, 6-bit quantization 19.6 -> 2.2, 8-bit 1.28 -> 1.23,
ball at 0.1x the truncation norm 27.8 -> 5.8 (small balls unchanged).

**A state larger than h** (the LSTM's :math:`[h, c]`, a stack's layers'
states; N = ``cell.state_size`` > n): the forms carry all N rows (error groups
are N-vectors), ``split`` takes rows (exact; a piece keeps the whole form's
norm bounds, which hold for any of its rows) and ``concat`` stacks rows (norm
bounds add in quadrature, :math:`\|[w_1; w_2]\|\le(\rho_1^2+\rho_2^2)^{1/2}`,
the same for the group blocks' spectral norms). A component that
``state_bounds`` leaves unbounded (the LSTM's c) is never clipped. The
reported deviation (``state='h'``) is that of the output rows
(:meth:`~rnnperturb.cells.protocol.Cell.output_rows`); ``state='full'``
reports all N. The mean-value method assumes N = n and refuses other cells. It is tighter than the
mean-value method because the remainder of each activation is evaluated on the
exact per-coordinate range of its pre-activation (no :math:`|W|\varepsilon`
wrapping, no factor 2 from the supremum of the Jacobian over the box).

**Errors in norm and per coordinate.** Every error term :math:`w` of a form
is known both componentwise, :math:`|w|\le r`, and in norm,
:math:`\|w\|_2\le\rho` (the set :math:`\{|w|\le r\}\cap\{\|w\|\le\rho\}`;
every operation keeps the smaller of the two consequences: :math:`A w` has
rows :math:`\le\min(|A|r, \|A_{i,:}\|\rho)` and norm :math:`\le\|A\|_2\rho`).
The second-order terms are bounded jointly: :math:`\Delta_k(a-c)` has norm
(and every row) :math:`\le\varepsilon_k\sup\|a-c\|_2` for the ball (box:
rows :math:`\min(E_k\,\mathrm{rad}, \|E_{k,i}\|\,\delta)`, norm
:math:`\|E_k\|_2\delta`), where :math:`\sup\|a-c\|_2\le\Lambda(A_u) +
\|\text{errors}\|` with :math:`\Lambda` the verified Gram eigenvalue bound
(not :math:`\|\mathrm{rad}\|_2`, which is up to :math:`\sqrt n` larger); the
activation remainder :math:`|R_i|\le q_i\delta_i^2`
(:math:`q_i = \tfrac12\max|\varphi''|` over the range, :func:`dd_max`) gives
:math:`\|R\|\le\max_i(q_i\rho_i)\,\sup\|\delta\|_2`. Each step's error
becomes an error *group* (an (n, n) generator block propagated by the exact
later linear maps, with its radii :math:`(r_g, \rho_g)` and an upper bound
:math:`\varphi_g` on the block's spectral norm: product rule, Frobenius,
:math:`(\|\cdot\|_1\|\cdot\|_\infty)^{1/2}`, and a verified Gram bound for the
newest blocks of the perturbed run; the nominal run's groups, rounding errors only,
skip it). Largest eigenvalues of symmetric matrices are certified by a
float Cholesky factorisation of :math:`\mu I - S` (:func:`_sym_max_upper`)
instead of a verified SVD.

**Carried Gram matrices (ball).** The Gram :math:`G = A_uA_u^T` of each block of
the symbolic part (an O(n^4) product per step and sequence) is carried through
the operations that keep it cheap, each with a verified bound on
:math:`\|A_uA_u^T - G\|_F` for the *stored* float coefficients: a product by
a matrix, :math:`AGA^T` (:func:`_gram_matvec`, O(n^3)); the fresh term
:math:`\Delta_k c` of a set matrix, :math:`G + C + C^T + \mathrm{diag}(q)`
(:func:`_gram_block_add`, O(n^3)); an activation's row scaling,
:math:`DGD` (:func:`_gram_row_scaled`, O(n^2)); clipped rows (zeroed). Any
other operation drops it, and a sequence whose carried bound exceeds twice
the rounding bound of a fresh product gets a fresh product
(:meth:`Affine.grams`). On a contractive Elman net the carried bound stays
about as small as a fresh one (fresh products on a few steps), so one O(n^4)
product per step is left (the propagation of :math:`A_u`) instead of three; on
an expanding one it grows by about :math:`\|W\|_2^2` per step and fresh
products are used (the bookkeeping then costs a few per cent; notebook 07).

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

Cost: per step and sequence, O(K n^4) for the carried matrices and, where they
cannot be carried, their Gram matrices (K perturbed matrices), O(window · n^3)
for the remainder zonotopes, O(n^3) for the interval Jacobian; memory
O(K n^3 + window n^2), independent of T.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import as_generator, as_h0, as_inputs, check_bool, check_int
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
        if getattr(o, "outranks_interval", False):   # e.g. Interval + Affine
            return NotImplemented
        ol, oh = Interval.parts(o)
        return Interval(_dn(self.lo + ol), _un(self.hi + oh))

    __radd__ = __add__

    def __sub__(self, o):
        if getattr(o, "outranks_interval", False):   # e.g. Interval + Affine
            return NotImplemented
        ol, oh = Interval.parts(o)
        return Interval(_dn(self.lo - oh), _un(self.hi - ol))

    def __rsub__(self, o):
        if getattr(o, "outranks_interval", False):   # e.g. Interval + Affine
            return NotImplemented
        ol, oh = Interval.parts(o)
        return Interval(_dn(ol - self.hi), _un(oh - self.lo))

    def __neg__(self):
        return Interval(-self.hi, -self.lo)

    def __mul__(self, o):
        if getattr(o, "outranks_interval", False):
            return NotImplemented
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
    def split(a, sections):
        """Pieces of an :class:`Interval` (or array) along the last axis (exact)."""
        from rnnperturb.cells.namespace import split as _split
        if getattr(a, "outranks_interval", False):
            raise NotImplementedError("split: affine forms go through the affine namespace "
                                      "(AFFINE), not the interval one")
        lo, hi = Interval.parts(a)
        lo, hi = np.broadcast_arrays(lo, hi)
        return tuple(Interval(l, h) for l, h in zip(_split(lo, sections), _split(hi, sections)))

    @staticmethod
    def concat(parts):
        """Concatenation of intervals (or arrays) along the last axis (exact)."""
        from rnnperturb.cells.namespace import concat as _concat
        if any(getattr(p, "outranks_interval", False) for p in parts):
            raise NotImplementedError("concat: affine forms go through the affine namespace "
                                      "(AFFINE), not the interval one")
        los, his = zip(*(Interval.parts(p) for p in parts))
        return Interval(_concat(los), _concat(his))

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
def _sym_max_upper(S):
    r"""Verified :math:`\mu \ge \lambda_{\max}(S)` of a symmetric float matrix.

    :math:`\mu` = the float largest eigenvalue plus a margin; certified by a
    successful float Cholesky factorisation of :math:`\tilde H = fl(\mu I - S - cI)`:
    :math:`R^TR = \tilde H + \Delta`, :math:`|\Delta|\le\gamma_{n+1}|R^T||R|`
    (Demmel; any summation order, ordinary BLAS), so
    :math:`\|\Delta\|_2\le\gamma_{n+1}\|R\|_F^2\le\frac{\gamma_{n+1}}{1-\gamma_{n+1}}
    \mathrm{tr}\tilde H` and :math:`\mu I - S \succeq (c - \|D\| - \|\Delta\|_2) I \succeq 0`
    once :math:`c` exceeds that and the diagonal rounding :math:`D` of forming
    :math:`\tilde H` (checked after the fact). Falls back to
    :func:`rnnperturb.verified.linalg.spectral_norm_upper`.
    """
    # scale by a power of two (exact when no bits are lost) so that the absolute
    # slacks of up() are negligible
    amax = float(np.max(np.abs(S))) if S.size else 0.0
    if amax > 0 and np.isfinite(amax):
        _, e = np.frexp(amax)
        Ss = np.ldexp(S, -int(e))
        if int(e) != 0 and np.array_equal(np.ldexp(Ss, int(e)), S):
            return float(np.ldexp(_sym_max_upper_scaled(Ss), int(e))) * (1 + 2 * U64)
    return _sym_max_upper_scaled(S)


def _sym_max_upper_scaled(S):
    n = S.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        nrm = float(frobenius_upper(S))
    if not np.isfinite(nrm):
        return np.inf
    if nrm < 1e-200:
        return nrm
    try:
        w = float(np.linalg.eigvalsh(S)[-1])
    except np.linalg.LinAlgError:           # pragma: no cover
        return float(spectral_norm_upper(S))
    g = gamma(n + 1)
    dmax = float(np.max(np.abs(np.diagonal(S))))
    c = 4 * g * n * (abs(w) + 2 * nrm) + 1e-290 * n
    mu = w + 2 * c + 8 * (n + 2) * U64 * nrm
    for _ in range(4):
        H = -S
        idx = np.arange(n)
        H[idx, idx] = (mu - c) - np.diagonal(S)
        tr = float(up(np.sum(np.abs(np.diagonal(H))), n))
        need = 2 * U64 * (abs(mu) + c + dmax) * (1 + 4 * U64) + g / (1 - g) * tr * (1 + 4 * U64)
        if c >= need:
            try:
                np.linalg.cholesky(H)
                return mu
            except np.linalg.LinAlgError:
                pass
        else:
            c = 2 * need
        mu = mu + 1e-9 * abs(mu) + 10 * c
    return float(spectral_norm_upper(S))


def _lam_max_upper(G, extra):
    """Verified upper bound on lambda_max of the exact symmetric matrices whose
    computed version is G (B, n, n), given ||exact - G||_2 <= extra (B,)."""
    Gs = 0.5 * (G + np.swapaxes(G, 1, 2))
    # ||G - Gs||_2 <= n max|G - Gs| (rounding of the symmetrisation included)
    asym = up((np.abs(Gs - G).max(axis=(1, 2)) * (1 + 4 * U64) + _TINY) * G.shape[1], 1)
    s = np.full(G.shape[0], np.inf)
    fin = np.all(np.isfinite(Gs), axis=(1, 2))
    for b in np.flatnonzero(fin):
        s[b] = _sym_max_upper(Gs[b])
    out = up(s + extra + asym, 3)
    return np.where(np.isfinite(out), out, np.inf)


def _gram(M):
    """Gram matrix M M^T (B, n, n), its rounding bound (B,) and upper bounds on the
    squared row norms (B, n) (from its diagonal: |fl(d) - d| <= gamma_N d)."""
    N = M.shape[-1]
    G = M @ np.swapaxes(M, 1, 2)
    d = np.diagonal(G, axis1=1, axis2=2)
    g = gamma(N + 1)
    r2 = up(np.maximum(d, 0.0) * (1 + 2 * g), 1) + _TINY
    err = up(g * np.sum(r2, axis=1), M.shape[1] + 1)
    return G, err, r2


#: Gram matrices are carried (:meth:`Affine.grams`) only for forms with at least this
#: many rows: below it a fresh O(n^4) product costs less than the O(n^3) bookkeeping
#: (the tests set it to 0 to run the carried path on small nets).
GRAM_CARRY_MIN_ROWS = 40


def _gram_fro2_upper(G, e):
    r"""Upper bound (B,) on :math:`\|M\|_F^2 = \mathrm{tr}\,MM^T` from a Gram ``G`` of M
    with :math:`\|MM^T - G\|_F\le e`: :math:`\sum_i\max(G_{ii}, 0) + ne` (the diagonal
    of the difference sums to at most :math:`\sqrt n\,e`)."""
    n = G.shape[-1]
    return up(np.sum(np.maximum(np.diagonal(G, axis1=1, axis2=2), 0.0), axis=1) + n * e, n + 1)


def _gram_row_scaled(G, e, s):
    r"""Gram of :math:`M' = fl(\mathrm{diag}(s) M)` from a Gram ``G`` of M with
    :math:`\|MM^T - G\|_F\le e`: :math:`G' = fl(fl(s_iG_{ik})s_k)` and a bound ``e'``
    on :math:`\|M'M'^T - G'\|_F`. With :math:`M' = DM + F`, :math:`|F_{ij}|\le u|s_iM_{ij}|`,
    :math:`|(DMF^T)_{ik}|\le u\rho_i\rho_k` (:math:`\rho_i = |s_i|\|M_i\|`,
    :math:`\|M_i\|^2\le G_{ii}+e`), so :math:`\|M'M'^T - DMM^TD\|_F\le(2u+u^2)\sum_i\rho_i^2`;
    :math:`\|D(MM^T - G)D\|_F\le\max_is_i^2\,e`; the two roundings of each entry of
    :math:`G'` add :math:`\gamma_3\|G'\|_F`. G (B, n, n), e (B,), s (B, n)."""
    n = G.shape[-1]
    Gs = (s[:, :, None] * G) * s[:, None, :]
    s2 = up(s * s, 1)
    dg = up(np.maximum(np.diagonal(G, axis1=1, axis2=2), 0.0) + e[:, None], 1)
    rho2 = up(np.sum(up(s2 * dg, 1), axis=1), n)
    with np.errstate(over="ignore", invalid="ignore"):
        es = up(s2.max(axis=1) * e + (2 * U64 + U64 * U64) * rho2
                + gamma(3) * frobenius_upper(Gs) + _TINY, 3)
    return Gs, np.where(np.isfinite(es), es, np.inf)


def _gram_matvec(G, e, A, nA, fA):
    r"""Gram of :math:`M' = fl(AM)` (any summation order) from a Gram ``G`` of M with
    :math:`\|MM^T - G\|_F\le e`: :math:`G' = fl(fl(AG)A^T)` and a bound on
    :math:`\|M'M'^T - G'\|_F`: :math:`\|A\|_2^2e` (the old error), :math:`\gamma\|A\|_2
    \|A\|_F\|G\|_F + \gamma\|A\|_F\|fl(AG)\|_F` (the two products; :math:`\||A|\|_2\le
    \|A\|_F`), and :math:`(2\gamma\|A\|_2\|A\|_F + \gamma^2\|A\|_F^2)\|M\|_F^2` from
    :math:`M' = AM + F`, :math:`\|F\|_F\le\gamma\|A\|_F\|M\|_F`, with
    :math:`\|M\|_F^2` from :func:`_gram_fro2_upper` and :math:`\gamma = \gamma_{k+1}` for the
    inner dimension k. ``nA`` >= ||A||_2, ``fA`` >= ||A||_F."""
    k = A.shape[1]
    g = gamma(k + 1)
    X = A @ G
    Gn = X @ A.T
    with np.errstate(over="ignore", invalid="ignore"):
        tr = _gram_fro2_upper(G, e)
        en = up(up(nA * nA, 1) * e + up(g * nA * fA, 2) * frobenius_upper(G)
                + up(g * fA, 1) * frobenius_upper(X)
                + up(2 * g * nA * fA + g * g * fA * fA, 4) * tr + _TINY, 4)
    return Gn, np.where(np.isfinite(en), en, np.inf)


def _gram_block_add(G, e, A4, blk):
    r"""Gram after the fresh term of a set matrix: the coefficient block M (B, n, n*n)
    (``A4`` its (B, n, n, n) view, *before* the update) gains ``blk[b, a, j]`` at
    :math:`[a, (a, j)]` by a rounded sum, :math:`M\to M + P + F`. Then
    :math:`(M+P)(M+P)^T = MM^T + C + C^T + PP^T` with :math:`C = MP^T`,
    :math:`C_{xa} = \sum_j M_{x,(a,j)}blk_{a,j}` (rounding :math:`\le\gamma_{n+1}
    \|M_{x,(a,\cdot)}\|\|blk_a\|`, Frobenius :math:`\le\gamma_{n+1}\max_a\|blk_a\|\|M\|_F`)
    and :math:`PP^T = \mathrm{diag}(q)`, :math:`q_a = \|blk_a\|^2` (the rows of P have
    disjoint supports; rounding :math:`\le\gamma_{n+1}\|q\|`); forming
    :math:`G + C + C^T + \mathrm{diag}(q)` adds :math:`\gamma_4(\|G\|_F + 2\|C\|_F + \|q\|)`;
    the rounding of the sum, :math:`|F|\le u(|M| + |P|)`, :math:`\|F\|_F\le f = u(\|M\|_F
    + \|P\|_F)`, adds :math:`2(\|M\|_F + \|P\|_F)f + f^2`, with :math:`\|M\|_F` from
    :func:`_gram_fro2_upper`. Returns the new Gram and its bound."""
    n = A4.shape[1]
    g = gamma(n + 1)
    C = np.einsum("bxaj,baj->bxa", A4, blk)
    q = np.einsum("baj,baj->ba", blk, blk)
    idx = np.arange(n)
    Gn = G + C + np.swapaxes(C, 1, 2)
    Gn[:, idx, idx] += q
    with np.errstate(over="ignore", invalid="ignore"):
        qn = _un(np.sqrt(up(np.sum(q * q, axis=1), n)))                  # ~ ||q||
        qu = up(q, n)                                                   # >= ||blk_a||^2
        pf = _un(np.sqrt(up(np.sum(qu, axis=1), n)))                    # >= ||P||_F
        bmax = _un(np.sqrt(qu.max(axis=1)))
        mf = _un(np.sqrt(_gram_fro2_upper(G, e)))                      # >= ||M||_F
        mp = up(mf + pf, 1)
        f = up(U64 * mp, 1)
        en = up(e + up(2 * g * bmax, 1) * mf + up(g * qn, 1) * (1 + g)
                + gamma(4) * (frobenius_upper(G) + 2 * frobenius_upper(C) + qn) * (1 + g)
                + up(2 * mp * f + f * f, 2) + _TINY, 6)
    return Gn, np.where(np.isfinite(en), en, np.inf)


def _gram_fro(Q, extra):
    """Upper bound (B,) on the Frobenius norm of the exact matrices whose computed version
    is Q (B, n, n), given a bound ``extra`` (B,) on the Frobenius norm of the difference."""
    f = np.sqrt(up(np.sum(Q * Q, axis=(1, 2)), Q.shape[1] * Q.shape[2])) * (1 + 2 * U64)
    out = up(f + extra, 1)
    return np.where(np.isfinite(out), out, np.inf)


def _ball_norm(Ms, eps, names, with_op=True, rows=False, gram=False, grams=None):
    r"""Upper bounds on :math:`\sup\|\sum_k M_k v_k\|`, :math:`\|v_k\|\le\varepsilon_k`,
    on :math:`\|[M_k]_k\|_F` and on :math:`\|[M_k]_k\|_2`; Ms[k] (B, n, N).
    With ``rows``, also the per-row suprema :math:`\sum_k\varepsilon_k\|M_k[i]\|` (B, n).
    With ``gram`` (needs ``with_op``), last, an upper bound on
    :math:`\|\sum_k M_kM_k^T\|_F = (\sum_i\lambda_i^2)^{1/2}` (the eigenvalues of
    :math:`[M_k]_k^T[M_k]_k`; the computed Gram's rounding is bounded in Frobenius norm
    by ``err`` = :math:`\gamma_{N+1}\sum_i r_i^2`, since
    :math:`|fl(G)-G|_{ij}\le\gamma_{N+1} r_ir_j`), for the Laurent–Massart tail
    of the noise bound. ``grams``: the Grams of the Ms as (G, err, r2) by name
    (:meth:`Affine.grams`), computed here when not given."""
    B = next(iter(Ms.values())).shape[0]
    G, err, lam, r2 = {}, {}, {}, {}
    for k in names:
        G[k], err[k], r2[k] = grams[k] if grams is not None else _gram(Ms[k])
        lam[k] = _lam_max_upper(G[k], err[k])
    fro = np.sqrt(up(sum(up(np.sum(r2[k], axis=1), Ms[k].shape[1]) for k in names),
                     len(names) + 1))
    fro = _un(fro)
    rw = None
    if rows:
        rw = up(sum(up(eps[k] * _un(np.sqrt(r2[k])), 1) for k in names), len(names))
    if len(names) == 1:
        k = names[0]
        op = _un(np.sqrt(lam[k]))
        out = (up(eps[k] * op, 1), fro, op) + ((rw,) if rows else ())
        return out + (_gram_fro(G[k], err[k]),) if gram else out
    # several matrices: sum of norms, and weighted Cauchy-Schwarz bounds
    tri = up(sum(up(eps[k] * _un(np.sqrt(lam[k])), 1) for k in names), len(names))
    best = tri
    cands = [{k: np.ones(B) for k in names},
             {k: eps[k] * np.sqrt(np.maximum(lam[k], 1e-300)) + 1e-300 for k in names}]
    for w in cands:
        c = {k: eps[k] ** 2 / w[k] for k in names}
        Q = sum(c[k][:, None, None] * G[k] for k in names)
        extra = sum(up(c[k] * (err[k] + gamma(len(names) + 2) * np.sqrt(up(
            np.sum(G[k] * G[k], axis=(1, 2)), G[k].shape[1] ** 2))), 2) for k in names)
        lq = _lam_max_upper(Q, up(extra, len(names)))
        sw = up(sum(up(eps[k] ** 2 / c[k], 2) for k in names), len(names))
        val = up(_un(np.sqrt(sw)) * _un(np.sqrt(lq)), 1)
        best = np.minimum(best, val)
    op = np.full(B, np.inf)
    gf = np.full(B, np.inf)
    if with_op:
        # joint operator norm of [M_k] (unweighted): for the noise bound
        Q = sum(G[k] for k in names)
        extra = up(sum(up(err[k] + gamma(len(names) + 2) * np.sqrt(up(
            np.sum(G[k] * G[k], axis=(1, 2)), G[k].shape[1] ** 2)), 2) for k in names),
            len(names))
        op = _un(np.sqrt(_lam_max_upper(Q, extra)))
        gf = _gram_fro(Q, extra)
    out = (best, fro, op) + ((rw,) if rows else ())
    return out + (gf,) if gram else out


def _polish_omega(a, omega, maxiter):
    r"""Lower :math:`(\sum_j\omega_j)\lambda_{\max}(A\Omega^{-1}A^T)` over :math:`\omega>0`
    from ``omega`` by L-BFGS on :math:`z = \log\omega` (the objective is scale invariant;
    the gradient of :math:`\lambda_{\max}` is :math:`-(v^Ta_j)^2/\omega_j^2` at a simple top
    eigenvalue, smoothed by a soft maximum over the eigenvalues). Any result is a valid
    choice (only the verification in :func:`_box_sdp` is a proof); returns the best
    weights seen."""
    from scipy.optimize import minimize
    best = [np.inf, omega]

    z0 = np.log(np.maximum(omega, 1e-300))
    shift = float(np.max(z0))
    z0 = z0 - shift                      # scale invariance: keep exp(z) near 1

    def f(z):
        with np.errstate(all="ignore"):
            om = np.exp(z)
            w, V = np.linalg.eigh((a / om) @ a.T)
            lm = w[-1]
            val = float(np.log(om.sum()) + np.log(lm)) if lm > 0 else np.inf
            if not np.isfinite(val) or not np.all(np.isfinite(w)):
                return 1e300, np.zeros_like(z)
            if val < best[0]:
                best[0], best[1] = val, om * np.exp(shift)
            p = np.exp(np.minimum(200.0 * (w / lm - 1.0), 0.0))
            p /= p.sum()
            proj = (V.T @ a) ** 2
            return val, om / om.sum() - (p @ proj) / om / lm

    try:
        minimize(f, z0, jac=True, method="L-BFGS-B", bounds=[(z - 40.0, z + 40.0) for z in z0],
                 options={"maxiter": int(maxiter)})
    except (ValueError, np.linalg.LinAlgError, FloatingPointError):    # pragma: no cover
        pass
    om = best[1]
    return om if np.all(np.isfinite(om)) and np.all(om > 0) else omega


def _box_sdp(Ms, vecE, names, iters, omega0=None, polish=0):
    r"""SDP-dual bound :math:`\sup_{|u|\le1}\|Au\| \le (\sum\omega)^{1/2}
    \lambda_{\max}(A\Omega^{-1}A^T)^{1/2}`, A = [M_k diag(vec E_k)]; returns the
    bound (B,) and the weights (B, N') (a warm start for the next step: every
    :math:`\omega>0` is sound, only the verification in :func:`_box_sdp_verify` is a
    proof).

    ``iters`` weights are tried: :math:`\omega_0` (the column norms of A, or the warm
    start), then fixed-point steps :math:`\omega_j \propto \|Y^Ta_j\|`. The last one is
    verified directly; an earlier one whose float estimate is below that is verified
    too, and the smaller verified bound is kept (then ``polish`` L-BFGS steps from the
    best)."""
    B = next(iter(Ms.values())).shape[0]
    Ec = np.concatenate([vecE[k] for k in names])
    keep = Ec > 0
    Mc = Ms[names[0]] if len(names) == 1 else np.concatenate([Ms[k] for k in names], axis=2)
    if not np.all(keep):
        Mc, Ec = Mc[:, :, keep], Ec[keep]
    E2 = Ec * Ec
    A = Mc if np.all(Ec == 1.0) else Mc * Ec[None, None, :]      # (the affine method: E = 1)
    oms = np.empty((B, A.shape[2]))
    if A.shape[2] == 0:                                           # every radius 0
        return np.zeros(B), oms
    out = np.full(B, np.inf)
    for b in range(B):
        a, M = A[b], Mc[b]
        cn = np.sqrt(np.einsum("ij,ij->j", a, a)) + 1e-300
        warm = omega0 is not None and omega0.shape == oms.shape
        omega = (0.5 * omega0[b] + 0.5 * cn * (omega0[b].sum() / cn.sum())) if warm else cn.copy()
        its = max(min(iters, 2) if warm else iters, 1)
        best_est, best = np.inf, None
        for _ in range(its - 1):
            c = _sdp_weights(E2, omega)
            Q = (M * c) @ M.T                                      # as verified below
            w, V = np.linalg.eigh(0.5 * (Q + Q.T))
            est = w[-1] * omega.sum()
            if est < best_est:
                best_est, best = est, (omega, c, Q)
            mu = np.maximum(w, 0.0) / max(w[-1], 1e-300)
            mu = mu ** 4
            proj = (V * np.sqrt(mu)).T @ a                         # (n, KN)
            omega = np.sqrt(np.sum(proj * proj, axis=0)) + 1e-3 * cn
        bound = _box_sdp_verify(M, E2, _sdp_weights(E2, omega))    # the last weights
        if best is not None and best_est < bound ** 2:
            b2 = _box_sdp_verify(M, E2, best[1], best[2])
            if b2 < bound:
                bound, omega = b2, best[0]
        if polish and np.isfinite(bound):
            om = _polish_omega(a, omega, polish)
            b2 = _box_sdp_verify(M, E2, _sdp_weights(E2, om))
            if b2 < bound:
                bound, omega = b2, om
        oms[b] = omega
        out[b] = bound
    return out, oms


def _sdp_weights(E2, omega):
    r"""The column weights :math:`c_j = E_j^2/\omega_j` (tiny where zero)."""
    c = E2 / omega
    return np.where(c > 0, c, 1e-300)


def _box_sdp_verify(M, E2, c, Q=None):
    r"""Verified :math:`(\sum_j E_j^2/c_j)^{1/2}\lambda_{\max}(M\,\mathrm{diag}(c)M^T)^{1/2}`
    (M (n, N'), ``E2`` the squared radii (N',), ``c`` > 0 the weights
    :math:`E_j^2/\omega_j`): the SDP-dual bound of :func:`_box_sdp`, rounding
    included. ``Q``: ``(M * c) @ M.T`` if already computed (any summation order)."""
    if Q is None:
        Q = (M * c) @ M.T
    rc2 = up((M * M) @ c, M.shape[1])                       # row norms^2 of M diag(sqrt c)
    extra = up(gamma(M.shape[1] + 2) * np.sum(rc2), M.shape[0])
    lq = _lam_max_upper(Q[None], np.array([extra]))[0]
    sw = up(np.sum(up(E2 / c, 2)), M.shape[1])
    return up(_un(np.sqrt(sw)) * _un(np.sqrt(lq)), 1)


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
    lin_gram : ndarray (T, B) or None
        For a :class:`Ball` (affine method): an upper bound on
        :math:`\|\tilde M_t\tilde M_t^T\|_F` (unscaled), the Laurent–Massart term of
        the noise bound.
    cap : ndarray (B,)
        :math:`\|w\|_2`, the trivial cap.
    restarts : int
        How many times the linear model was restarted (vacuous regime).
    rem_norm : ndarray (T, B)
        :math:`\ge\sup\|z_t\|_2 + \|\tilde h_t - h_t\|_2`: the remainder and the
        nominal rounding in norm (at most the 2-norms of ``rem_coord`` and ``rem0_coord``).
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
    rem_norm: np.ndarray | None = None
    lin_gram: np.ndarray | None = None


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
#: Where |phi''| is largest, and its maximum, for the two activations.
_DD_PEAK = {"tanh": (0.6584789484624084, 0.769800358919501),
            "sigmoid": (1.3169578969248166, 0.09622504486493763)}


def _dd_abs(kind, x):
    """|phi''(x)| in float, relatively accurate (x >= 0): 2|tanh x| tanh'(x) and
    sigma'(x) |tanh(x/2)| (as 1 - 2 sigma(x) = -tanh(x/2))."""
    from rnnperturb.verified.activation import activation
    if kind == "tanh":
        return 2.0 * np.abs(np.tanh(x)) * activation("tanh")[1](x)
    return activation("sigmoid")[1](x) * np.abs(np.tanh(0.5 * x))


def dd_max(kind: str, lo, hi):
    r"""Upper bound on :math:`\max_{x\in[lo,hi]}|\varphi''(x)|` (elementwise).

    :math:`|\varphi''|` is even, increasing on :math:`[0, x^*]` and decreasing
    beyond (:math:`x^* = \operatorname{atanh}(1/\sqrt3)` for tanh,
    :math:`\ln(2+\sqrt3)` for the sigmoid), so the maximum over the interval
    is the peak when :math:`|x|` can reach :math:`x^*`, else the value at the
    end of the :math:`|x|` range nearest :math:`x^*`. A relative margin of
    :math:`10^{-9}` covers the float evaluation; capped by the global peak.
    """
    xs, peak = _DD_PEAK[kind]
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    mlo = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    mhi = np.maximum(np.abs(lo), np.abs(hi))
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.where(mhi < xs, _dd_abs(kind, mhi), _dd_abs(kind, mlo))
    v = np.where((mlo <= xs) & (mhi >= xs), peak, v)
    v = np.where(np.isfinite(v), v * (1 + 1e-9) + 1e-300, peak)
    return np.minimum(v, peak * (1 + 1e-12))


_SPECTRAL = {}


def _spectral_cached(A):
    """Verified ||A||_2 of a parameter matrix, remembered by its bytes across calls (a
    tolerance search evaluates the same cell's matrices many times; the verified SVD
    costs more than a small evaluation)."""
    if not np.all(np.isfinite(A)):
        return np.inf
    key = (A.shape, A.tobytes())
    v = _SPECTRAL.get(key)
    if v is None:
        if len(_SPECTRAL) > 64:
            _SPECTRAL.clear()
        v = _SPECTRAL[key] = float(spectral_norm_upper(A))
    return v


class _AffCtx:
    r"""Symbols of the affine forms of one run.

    Set symbols: :math:`\Delta_k = \mathrm{scale}_k\odot U_k`, :math:`\|U_k\|_F\le1`
    (ball) or :math:`|U_k|\le1` (box). Error groups: group :math:`g` is a vector
    :math:`w_g\in\mathbb R^n` with :math:`|w_g|\le r_g` *and*
    :math:`\|w_g\|_2\le\rho_g` (``gr`` (B, G, n), ``grho`` (B, G)); a form holds
    each group through an (n, n) generator block.
    """

    def __init__(self, cell, ops, B, use_set=True):
        self.ops = ops
        self.n = n = cell.n
        self.N = N = cell.state_size         # the state (and error-group) dimension
        self.B = B
        self.is_ball = ops.is_ball
        self.names = ops.names if use_set else ()
        self.blocks = {}
        self.scale = {}
        for i, k in enumerate(self.names):
            self.blocks[k] = slice(i * n * n, (i + 1) * n * n)
            self.scale[k] = (np.full((n, n), ops.eps[k]) if ops.is_ball else ops.E[k])
        self.Nu = len(self.names) * n * n
        # entrywise rounding of an (n, n) or (n, N_u) block changes its norm (or the
        # supremum over the set) by at most sqrt(N_u + n) u relative: up(., kw) covers it
        self.kw = self.Nu + N
        self.exact_pre = True
        self.one_sided = False           # centre one-signed activation remainders
        self.chords = False              # chords where they beat the tangent (_aff_act)
        self.gr = np.zeros((B, 0, N))
        self.grho = np.zeros((B, 0))
        self._mat = {}
        if not ops.is_ball:
            self.Enorm = {k: _spectral_cached(np.ascontiguousarray(ops.E[k])) for k in self.names}
            self.Erow = {k: row_norms_upper(ops.E[k]) for k in self.names}

    def matinfo(self, A):
        """(|A|, verified ||A||_2, ||A||_F, row norms of A) of a parameter matrix (cached)."""
        key = id(A)
        hit = self._mat.get(key)
        if hit is None or hit[0] is not A:
            aA = np.abs(A)
            hit = (A, aA, _spectral_cached(A), float(frobenius_upper(A)), row_norms_upper(A))
            self._mat[key] = hit
        return hit[1:]

    def block_r2(self, Au):
        """Upper bounds on the squared row norms of each block of A_u, by name, (B, n)."""
        return {k: up(np.einsum("bij,bij->bi", Au[..., s], Au[..., s]), s.stop - s.start)
                for k, s in self.blocks.items()}

    def rowsup(self, Au, r2=None):
        """Per-row supremum of |A_u u| over the set symbols, (B, n) (ball: from the
        blocks' squared row norms ``r2``, :meth:`block_r2`, computed when not given)."""
        if Au is None or Au.shape[-1] == 0:
            return 0.0
        if self.is_ball:
            r2 = self.block_r2(Au) if r2 is None else r2
            tot = 0.0
            for k in self.blocks:
                tot = tot + np.sqrt(r2[k]) * (1 + 2 * U64)
            return up(tot, len(self.blocks))
        return up(np.abs(Au).sum(axis=-1), Au.shape[-1])

    def normsup(self, Au, grams=None):
        r"""Upper bound on :math:`\sup_u\|A_u u\|_2` (B,) (ball: verified Gram
        eigenvalue, from ``grams`` (:meth:`Affine.grams`) when given; box: the 2-norm
        of the per-row suprema)."""
        if Au is None or Au.shape[-1] == 0:
            return np.zeros(self.B)
        if self.is_ball:
            Ms = {k: Au[..., s] for k, s in self.blocks.items()}
            return _ball_norm(Ms, {k: 1.0 for k in Ms}, tuple(Ms), with_op=False,
                              grams=grams)[0]
        return _nrm(self.rowsup(Au))

    def groups(self, Ax, gr=None, grho=None):
        """Per-row (B, n, G) and per-group norm (B, G) suprema of the error groups
        (the groups' radii ``gr``, ``grho``: the context's by default)."""
        gr = self.gr if gr is None else gr
        grho = self.grho if grho is None else grho
        B, rows, n = Ax.shape[0], Ax.shape[1], self.N
        G = Ax.shape[2] // n
        A4 = Ax.reshape(B, rows, G, n)
        t1 = up(np.einsum("bigj,bgj->big", np.abs(A4), gr), n)
        t2 = np.sqrt(up(np.einsum("bigj,bigj->big", A4, A4), n)) * (1 + 2 * U64)
        t2 = up(t2 * grho[:, None, :], 1)
        return np.minimum(t1, t2), _nrm(np.swapaxes(t1, 1, 2))


def _rn(v):
    return _nrm(v) if np.ndim(v) else abs(v)


class Affine:
    r"""Affine form :math:`c + A_u u + \sum_g A_g w_g + w` over the set symbols
    :math:`u`, the error groups :math:`w_g` of the context (:class:`_AffCtx`) and a
    fresh error :math:`w` with :math:`|w|\le r` and :math:`\|w\|_2\le\rho`.

    Shapes: c, r (B, n); A_u (B, n, N_u); A_x (B, n, G n) (the group blocks,
    None for zero); rho (B,); phi (B, G) upper bounds on the spectral norms of
    the group blocks. Cached bounds: ``lu`` (per-row sup of :math:`A_u u`),
    ``nu`` (sup of :math:`\|A_u u\|_2`). Every operation adds its own rounding
    to r and rho.
    """

    outranks_interval = True        # Interval op Affine defers to Affine
    __array_ufunc__ = None
    __slots__ = ("ctx", "c", "Au", "Ax", "r", "rho", "phi", "_lu", "_lu_ub", "_nu", "_nu_ub",
                 "_err", "_gram", "_r2")

    def __init__(self, ctx, c, Au=None, Ax=None, r=None, rho=None, phi=None):
        self.ctx, self.c, self.Au, self.Ax = ctx, np.asarray(c, np.float64), Au, Ax
        self.r = np.zeros_like(self.c) if r is None else r
        B = self.c.shape[0]
        self.rho = _rn(self.r) if rho is None else rho
        G = 0 if Ax is None else Ax.shape[2] // ctx.N
        self.phi = np.zeros((B, G)) if phi is None else phi
        self._lu = self._lu_ub = self._nu = self._nu_ub = self._err = None
        self._gram = None        # {name: (G, e)}: carried Grams of the A_u blocks (ball)
        self._r2 = None          # {name: (B, n)}: squared row norms of the A_u blocks (ball)

    # ---------------------------------------------------------------- suprema
    def lu(self):
        """Per-row sup of |A_u u| (exact up to rounding; cached)."""
        if self._lu is None:
            if self.ctx.is_ball and self.Au is not None and self.Au.shape[-1]:
                self._r2 = self.ctx.block_r2(self.Au)
            self._lu = np.broadcast_to(self.ctx.rowsup(self.Au, self._r2), self.c.shape)
        return self._lu

    def lu_fast(self):
        if self._lu is not None:
            return self._lu
        if self._lu_ub is not None:
            return self._lu_ub
        return self.lu()

    def nu(self):
        """Upper bound on sup ||A_u u||_2 (B,): cached exact value, else the
        propagated bound."""
        if self._nu is not None:
            return self._nu
        if self._nu_ub is not None:
            return self._nu_ub
        self._nu = self.ctx.normsup(self.Au)
        return self._nu

    def grams(self):
        r"""The Gram matrices of the blocks of :math:`A_u`, by set-matrix name:
        (G (B, n, n), e (B,), r2 (B, n)) with :math:`\|M_kM_k^T - G\|_F\le e` and
        r2 upper bounds on the squared row norms of :math:`M_k`. A carried Gram
        (``_gram``, updated by the operations at O(n^3) instead of the O(n^4) product;
        :func:`_gram_matvec`, :func:`_gram_block_add`, :func:`_gram_row_scaled`) is
        used for the sequences where its bound is at most twice the rounding bound of
        a fresh product; the others get a fresh product (:func:`_gram`). Grams are
        carried on from here for forms of at least :data:`GRAM_CARRY_MIN_ROWS` rows."""
        out = {}
        carried = self._gram or {}
        for k, sl in self.ctx.blocks.items():
            M = self.Au[..., sl]
            t = carried.get(k)
            if t is None:
                out[k] = _gram(M)
                continue
            G, e = t
            if self._r2 is None:
                self._r2 = self.ctx.block_r2(self.Au)
            r2 = self._r2[k].copy()
            lim = gamma(M.shape[-1] + 1) * np.sum(r2, axis=1)
            redo = ~(e <= 2 * lim) | ~np.isfinite(lim)     # (an overflowing A_u: fresh)
            if np.any(redo):
                G, e = G.copy(), e.copy()
                G[redo], e[redo], r2[redo] = _gram(M[redo])
            out[k] = (G, e, r2)
        if self.c.shape[-1] >= GRAM_CARRY_MIN_ROWS:
            self._gram = {k: v[:2] for k, v in out.items()}
        return out

    def err(self):
        """(per-row sup (B, n), norm sup (B,)) of the error part."""
        if self._err is None:
            r = self.r
            rho = np.minimum(self.rho, _nrm(r))
            if self.Ax is None or self.Ax.shape[2] == 0:
                comp, nrm = r, rho
            else:
                t, gn = self.ctx.groups(self.Ax)
                comp = up(t.sum(axis=2) + r, t.shape[2] + 1)
                gn = np.minimum(gn, up(self.phi * self.ctx.grho, 1))
                nrm = np.minimum(_nrm(comp), up(gn.sum(axis=1) + rho, gn.shape[1] + 1))
            self._err = (comp, nrm)
        return self._err

    def rad(self):
        """Per-row radius (B, n)."""
        return up(self.lu() + self.err()[0], 1)

    def dnorm(self):
        r""":math:`\ge\sup\|x - c\|_2` over all symbols (B,)."""
        return np.minimum(_nrm(self.rad()), up(self.nu() + self.err()[1], 1))

    def _mag(self):
        """Cheap upper bound on |c| + per-row sup of the symbolic part (for roundings)."""
        lx = 0.0
        if self.Ax is not None and self.Ax.shape[2]:
            lx = self._err[0] if self._err is not None else _xabs(self.Ax, self.ctx)
        return np.abs(self.c) + self.lu_fast() + lx + self.r

    def _rnd(self, k=2):
        """Rounding of an elementwise op that produced c, Au, Ax (relative k u)."""
        return (k * U64 * (1 + 4 * U64)) * self._mag() + 1e-300

    # ---------------------------------------------------------------- arithmetic
    @staticmethod
    def _add(x, y, sign):
        if x is None:
            return None if y is None else (y if sign > 0 else -y)
        if y is None:
            return x
        return x + y if sign > 0 else x - y

    def _with_err(self, r_add, rho_add):
        self.r = up(self.r + r_add, 1)
        self.rho = up(self.rho + rho_add, 1)
        return self

    def _combine(self, o, sign):
        if isinstance(o, Affine):
            Ax = Affine._add(self.Ax, o.Ax, sign)
            if self.Ax is None:
                phi = o.phi
            elif o.Ax is None:
                phi = self.phi
            else:
                phi = up(self.phi + o.phi, self.ctx.kw)
            out = Affine(self.ctx, self.c + sign * o.c, Affine._add(self.Au, o.Au, sign), Ax,
                         up(self.r + o.r, 1), up(self.rho + o.rho, 1), phi)
            out._lu_ub = up(self.lu_fast() + o.lu_fast(), 2) * (1 + 2 * U64)
            out._nu_ub = up(self.nu() + o.nu(), self.ctx.kw)
        else:
            if isinstance(o, Interval):
                m = 0.5 * (o.lo + o.hi)
                rr = _un(np.maximum(_un(o.hi - m), _un(m - o.lo)))
                out = Affine(self.ctx, self.c + sign * m, self.Au, self.Ax, up(self.r + rr, 1),
                             up(self.rho + _nrm(rr), 1), self.phi)
            else:
                out = Affine(self.ctx, self.c + sign * np.asarray(o, np.float64), self.Au,
                             self.Ax, self.r, self.rho, self.phi)
            # the same symbolic part: its cached suprema and Grams hold
            out._lu, out._lu_ub, out._nu, out._nu_ub = self._lu, self._lu_ub, self._nu, self._nu_ub
            out._gram, out._r2 = self._gram, self._r2
        e = out._rnd()
        return out._with_err(e, _nrm(e))

    def __add__(self, o):
        return self._combine(o, 1)

    __radd__ = __add__

    def __sub__(self, o):
        return self._combine(o, -1)

    def __neg__(self):
        out = Affine(self.ctx, -self.c, None if self.Au is None else -self.Au,
                     None if self.Ax is None else -self.Ax, self.r, self.rho, self.phi)
        out._lu, out._lu_ub, out._nu, out._nu_ub = self._lu, self._lu_ub, self._nu, self._nu_ub
        return out

    def __rsub__(self, o):
        return (-self)._combine(o, 1)

    def _scale(self, a):
        a = np.broadcast_to(np.asarray(a, np.float64), self.c.shape)
        aa = np.abs(a)
        am = up(aa.max(axis=-1), 1)
        out = Affine(self.ctx, self.c * a, None if self.Au is None else self.Au * a[..., None],
                     None if self.Ax is None else self.Ax * a[..., None], up(self.r * aa, 1),
                     up(self.rho * am, 1), up(self.phi * am[:, None], self.ctx.kw))
        out._lu_ub = up(self.lu_fast() * aa, 1)
        out._nu_ub = up(self.nu() * am, self.ctx.kw)
        e = out._rnd()
        return out._with_err(e, _nrm(e))

    def _centred(self):
        out = Affine(self.ctx, np.zeros_like(self.c), self.Au, self.Ax, self.r, self.rho, self.phi)
        out._lu, out._lu_ub, out._nu, out._nu_ub = self._lu, self._lu_ub, self._nu, self._nu_ub
        out._err = self._err
        return out

    def __mul__(self, o):
        if isinstance(o, Affine):
            # (c + d)(c' + d') = cc' + c d' + c' d + d d'
            ra, rb = self.rad(), o.rad()
            q = up(ra * rb, 1)
            qn = np.minimum(_nrm(q), np.minimum(up(ra.max(axis=-1) * o.dnorm(), 1),
                                                up(rb.max(axis=-1) * self.dnorm(), 1)))
            out = self._scale(o.c) + o._centred()._scale(self.c)
            return out._with_err(q, qn)
        if isinstance(o, Interval):
            m = 0.5 * (o.lo + o.hi)
            rr = _un(np.maximum(_un(o.hi - m), _un(m - o.lo)))
            out = self._scale(m)
            e = up((np.abs(self.c) + self.rad()) * rr, 2)
            return out._with_err(e, _nrm(e))
        return self._scale(o)

    __rmul__ = __mul__


def _xabs(Ax, ctx):
    """Cheap per-row bound of the group part: |A_x| times the group radii."""
    B, rows, n = Ax.shape[0], Ax.shape[1], ctx.N
    G = Ax.shape[2] // n
    return up(np.einsum("bigj,bgj->bi", np.abs(Ax.reshape(B, rows, G, n)), ctx.gr), G * n)


def _lmul(A, X):
    """:math:`A X_b` for every b, (n, k) x (B, k, N) -> (B, n, N), C-contiguous: one
    GEMM over the stacked columns (3-4x faster than NumPy's batched ``matmul`` with a
    broadcast left factor); any summation order is covered by the gamma bounds."""
    if X.shape[2] == 0:
        return np.zeros((X.shape[0], A.shape[0], 0))
    return np.ascontiguousarray(np.moveaxis(np.tensordot(A, X, axes=(1, 1)), 0, 1))


def _aff_matvec(A, v):
    A = np.asarray(A, np.float64)
    ctx = v.ctx
    k = A.shape[1]
    aA, nA, fA, rA = ctx.matinfo(A)
    c = v.c @ A.T
    Au = None if v.Au is None else _lmul(A, v.Au)
    Ax = None if v.Ax is None else _lmul(A, v.Ax)
    g = gamma(k + 1)
    mag = v._mag()
    rnd = up(g * (mag @ aA.T), k + 1)
    # the fresh error: componentwise |A| r or row norms times rho; in norm ||A|| rho
    rho_v = np.minimum(v.rho, _nrm(v.r))
    r = np.minimum(up(v.r @ aA.T, k), up(rA[None, :] * rho_v[:, None], 1))
    rho = np.minimum(up(nA * rho_v, 1), _nrm(r))
    grow = up(nA + g * fA * np.sqrt(k) * (1 + max(ctx.Nu, k)), 2)   # ||fl(A X)|| <= grow ||X||
    out = Affine(ctx, c, Au, Ax, up(r + rnd, 1), up(rho + _nrm(rnd), 1), up(v.phi * grow, 1))
    if v._gram is not None and Au is not None:
        out._gram = {name: _gram_matvec(G, e, A, nA, fA) for name, (G, e) in v._gram.items()}
    out._lu_ub = up(v.lu_fast() @ aA.T * (1 + g), k)
    out._nu_ub = up(v.nu() * grow, 1)
    return out


def _aff_act(v, kind, fun, lo_cap, hi_cap):
    r"""The activation of an affine form: per row either the tangent at the centre
    with its Taylor remainder (whose Lagrange form :math:`|R_i| \le q_i d_i^2` gives
    the norm bound :math:`\max_i(q_i\rho_i)\|d\|`), or the chord over the row's range
    with its centred error (:func:`_secant_rows`, chosen per sequence)."""
    from rnnperturb.verified.activation import activation, taylor_remainder_max
    rho = v.rad()
    t = fun(v.c)
    s = activation(kind)[1](v.c)
    ae = act_error(kind)
    R = taylor_remainder_max(kind, v.c, -rho, rho)
    # in norm: |R_i| <= q_i d_i^2 (Lagrange), so ||R|| <= max_i(q_i rho_i) ||d||
    q = 0.5 * dd_max(kind, _dn(v.c - rho), _un(v.c + rho))
    if v._nu is None and v.ctx.is_ball and v.Au is not None and v.ctx.exact_pre:
        # verified Gram of the argument
        v._nu = np.minimum(v.nu(), v.ctx.normsup(v.Au, grams=v.grams()))
    dn = v.dnorm()
    w = up(q * rho, 1)
    Rn = np.minimum(_nrm(R), up(w.max(axis=-1) * dn, 1))
    tc = t
    if v.ctx.one_sided:
        t, R, Rn = _one_sided(v.c, t, R, Rn, q, rho, dn)
    ch = _secant_rows(kind, v.c, rho, tc, R, Rn, w, dn, v.ctx.one_sided) if v.ctx.chords else None
    C = None
    if ch is not None:
        C, ss, so, se = ch
        s = np.where(C, ss, s)
        t = np.where(C, tc + so, t)
    sm = up(np.abs(s).max(axis=-1), 1)
    out = Affine(v.ctx, t, None if v.Au is None else v.Au * s[..., None],
                 None if v.Ax is None else v.Ax * s[..., None], None, None,
                 up(v.phi * sm[:, None], v.ctx.kw))
    if v._gram is not None and v.Au is not None:
        out._gram = {k: _gram_row_scaled(G, e_, s) for k, (G, e_) in v._gram.items()}
    out._lu_ub = up(v.lu_fast() * s, 1)
    out._nu_ub = up(v.nu() * sm, v.ctx.kw)
    e_rnd = out._rnd()
    e = up(4 * ae * (1 + 4 * U64) * s * rho + ae * np.abs(tc) + 1e-120 + e_rnd, 3)
    if C is not None:
        # chord rows: their enclosure, the rounding of the moved centre and of the form
        e = np.where(C, up(se + 2 * U64 * np.abs(t) + e_rnd, 2), e)
        R = np.where(C, 0.0, R)
        nt = _nrm(R)
        if not v.ctx.one_sided:
            nt = np.minimum(nt, up(np.where(C, 0.0, w).max(axis=-1) * dn, 1))
        Rn = np.minimum(Rn, nt)
    sr = up(s * v.r, 1)
    out.r = up(sr + R + e, 2)
    out.rho = up(up(sm * v.rho, 1) + Rn + _nrm(e), 2)
    out.rho = np.minimum(out.rho, _nrm(out.r))
    return out


def _secant_rows(kind, c, rho, tc, R, Rn, w, dn, one_sided):
    r"""Which rows take the chord (:func:`~rnnperturb.verified.activation.secant_enclosure`)
    instead of the tangent, per sequence: the rows in decreasing order of
    :math:`q_i\rho_i` (the factor of the tangent's norm bound), as many as minimise
    the estimated norm of the activation error, the chord rows' errors in
    quadrature plus the tangent rows' remainder norm bound (ties: more chord rows,
    whose per-row error is smaller). The chords are not computed when even errors of
    :math:`R_i/2` on convex or concave ranges (where the chord's is about half the
    tangent's :math:`R_i`, or somewhat less) and :math:`R_i/4` elsewhere would not be
    chosen (a shortcut: it can only keep a tangent; on a ball of radius 1e-3 at
    n = 32 it leaves 2 of 50 steps to compute). Returns (C (B, n) bool, slopes,
    centre moves, error radii), or None when no sequence takes a chord. Any choice
    is sound: it only selects between two enclosures of each row."""
    from rnnperturb.verified.activation import secant_enclosure
    B, n = c.shape

    def choose(ok, se):
        key = np.where(ok, -w, np.inf)
        order = np.argsort(key, axis=1, kind="stable")
        take = lambda a: np.take_along_axis(a, order, axis=1)
        es2 = np.concatenate([np.zeros((B, 1)),
                              np.cumsum(take(np.where(ok, se, 0.0)) ** 2, axis=1)], axis=1)
        R2 = take(R) ** 2
        rt2 = np.concatenate([np.cumsum(R2[:, ::-1], axis=1)[:, ::-1], np.zeros((B, 1))],
                             axis=1)
        nt = np.minimum(np.sqrt(rt2), Rn[:, None])
        if not one_sided:
            ws = take(w)
            wmax = np.concatenate([np.maximum.accumulate(ws[:, ::-1], axis=1)[:, ::-1],
                                   np.zeros((B, 1))], axis=1)
            nt = np.minimum(nt, wmax * dn[:, None])
        cost = np.sqrt(es2) + nt                                     # (B, n + 1)
        nok = ok.sum(axis=1)
        cost = np.where(np.arange(n + 1)[None, :] <= nok[:, None], cost, np.inf)
        cost = np.where(np.isfinite(cost), cost, np.inf)
        return order, n - np.argmin(cost[:, ::-1], axis=1)           # ties: the larger k

    fin = np.isfinite(R) & np.isfinite(rho)
    side = (c - rho >= 0) | (c + rho <= 0)                # convex or concave range
    if not np.any(choose(fin, np.where(side, R / 2, R / 4))[1]):
        return None
    ss, so, se, ok = secant_enclosure(kind, c, rho, tc)
    order, k = choose(ok, se)
    if not np.any(k):
        return None
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n)[None, :].repeat(B, 0), axis=1)
    return rank < k[:, None], ss, so, se


def _one_sided(c, t, R, Rn, q, rho, dn):
    r"""Centre the activation remainders that have one sign (``one_sided=True``).

    tanh and the sigmoid are convex on :math:`x \le 0` and concave on :math:`x \ge 0`.
    Where the whole range :math:`c \pm \rho` of a pre-activation lies on one side of
    0, the exact remainder :math:`\varphi(x) - \varphi(c) - \varphi'(c)(x - c)` has
    one sign (the graph lies above its tangent where convex, below where concave), so
    it lies in :math:`[0, R]` or :math:`[-R, 0]` (:math:`R` from
    :func:`~rnnperturb.verified.activation.taylor_remainder_max`): the centre moves by
    :math:`\pm R/2` (:math:`fl(t \pm R/2)`, its rounding :math:`2u|\cdot|` added to
    the radius) and the radius halves. The moved centres propagate through the
    later steps as a deterministic vector, where the signs of the weights cancel
    each other, instead of a box. In norm the new remainder :math:`R - o` is at
    most :math:`\|R/2\|` on the moved rows plus the old bounds on the others
    (:math:`\|R\|` there, or :math:`\max_i q_i\rho_i\,\sup\|x - c\|`), and at most
    the old norm bound plus :math:`\|o\|`. A sequence keeps the old centre where
    this norm bound would be larger than the old one. ``c`` the pre-activation
    centres, ``dn`` :math:`\ge\sup\|x - c\|`. Returns the centre, the per-row radius
    (with the rounding of the move) and the norm bound, (B, n), (B, n), (B,)."""
    pos = _dn(c - rho) >= 0                        # concave part: remainder in [-R, 0]
    neg = _un(c + rho) <= 0                        # convex part: remainder in [0, R]
    half = 0.5 * R                                 # exact (R >= 1e-120 > 2^-1022)
    sh = pos | neg
    o = np.where(pos, -half, np.where(neg, half, 0.0))
    no = _nrm(o)                                   # = ||R/2|| on the moved rows
    rest = ~sh
    qn = np.where(rest, up(q * rho, 1), 0.0)
    n_rest = np.minimum(_nrm(np.where(rest, R, 0.0)), up(qn.max(axis=-1) * dn, 1))
    Rr = np.where(sh, half, R)
    Rn1 = np.minimum(np.minimum(_nrm(Rr), up(no + n_rest, 2)), up(Rn + no, 2))
    t1 = t + o
    mv = np.where(sh, up(2 * U64 * np.abs(t1), 1), 0.0)        # rounding of the move
    Rr = up(Rr + mv, 1)
    Rn1 = up(Rn1 + _nrm(mv), 2)
    keep = Rn1 <= Rn                               # per sequence: never a larger norm bound
    return (np.where(keep[:, None], t1, t), np.where(keep[:, None], Rr, R),
            np.where(keep, Rn1, Rn))


def _aff_rows(a, idx):
    r"""The rows ``idx`` of an affine form (exact). The fresh error's norm bound and
    the group blocks' spectral norms of the whole form hold for any of its rows."""
    idx = np.asarray(idx)
    r = a.r[..., idx]
    out = Affine(a.ctx, a.c[..., idx], None if a.Au is None else a.Au[:, idx],
                 None if a.Ax is None else a.Ax[:, idx], r,
                 np.minimum(a.rho, _nrm(r)), a.phi)
    if a._lu is not None:
        out._lu = np.broadcast_to(a._lu, a.c.shape)[..., idx]
    elif a._lu_ub is not None:
        out._lu_ub = np.broadcast_to(a._lu_ub, a.c.shape)[..., idx]
    nu = a._nu if a._nu is not None else a._nu_ub
    if nu is not None:
        out._nu_ub = nu
    return out


def _aff_concat(parts):
    r"""Rows of several forms (arrays and intervals as constant forms) one after the
    other. Norms add in quadrature: :math:`\|[w_1; w_2]\|_2\le(
ho_1^2+
ho_2^2)^{1/2}`,
    the same for the group blocks' spectral norms and the symbolic part's norm."""
    ctx = next(p.ctx for p in parts if isinstance(p, Affine))
    forms = []
    for p in parts:
        if isinstance(p, Affine):
            forms.append(p)
            continue
        if isinstance(p, Interval):
            m = 0.5 * (p.lo + p.hi)
            rr = _un(np.maximum(_un(p.hi - m), _un(m - p.lo)))
        else:
            m = np.asarray(p, np.float64)
            rr = np.zeros_like(m)
        m, rr = np.broadcast_arrays(m, rr)
        m = np.broadcast_to(m, (ctx.B,) + m.shape[-1:]).copy()
        rr = np.broadcast_to(rr, m.shape).copy()
        forms.append(Affine(ctx, m, None, None, rr))
    B = ctx.B
    rows = [f.c.shape[-1] for f in forms]
    c = np.concatenate([f.c for f in forms], axis=-1)
    r = np.concatenate([np.broadcast_to(f.r, f.c.shape) for f in forms], axis=-1)
    rho = np.minimum(_un(np.sqrt(up(sum(f.rho ** 2 for f in forms), 2 * len(forms)))),
                     _nrm(r))
    Au = None
    if any(f.Au is not None for f in forms):
        Au = np.concatenate([f.Au if f.Au is not None else np.zeros((B, k, ctx.Nu))
                             for f, k in zip(forms, rows)], axis=1)
    Ax, phi = None, None
    if any(f.Ax is not None for f in forms):
        G = max(f.Ax.shape[2] for f in forms if f.Ax is not None)
        blocks, phis = [], []
        for f, k in zip(forms, rows):
            if f.Ax is None or f.Ax.shape[2] == 0:
                blocks.append(np.zeros((B, k, G)))
                phis.append(np.zeros((B, G // ctx.N)))
            elif f.Ax.shape[2] != G:
                raise ValueError(f"concat: expected forms over the same {G // ctx.N} error "
                                 f"groups, found {f.Ax.shape[2] // ctx.N}")
            else:
                blocks.append(f.Ax)
                phis.append(f.phi)
        Ax = np.concatenate(blocks, axis=1)
        phi = _un(np.sqrt(up(sum(p_ ** 2 for p_ in phis), 2 * len(phis))))
    out = Affine(ctx, c, Au, Ax, r, rho, phi)
    nus = [f._nu if f._nu is not None else f._nu_ub for f in forms]
    if all(v is not None for v in nus):
        out._nu_ub = _un(np.sqrt(up(sum(np.asarray(v) ** 2 for v in nus), 2 * len(nus))))
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

    @staticmethod
    def split(a, sections):
        """Pieces of an :class:`Affine` form along its rows (exact: rows are kept)."""
        if not isinstance(a, Affine):
            return IntervalNamespace.split(a, sections)
        from rnnperturb.cells.namespace import piece_sizes
        out, i = [], 0
        for k in piece_sizes(a.c.shape[-1], sections):
            out.append(_aff_rows(a, np.arange(i, i + k)))
            i += k
        return tuple(out)

    @staticmethod
    def concat(parts):
        """Concatenation of :class:`Affine` forms (and arrays/intervals) along the rows."""
        if not any(isinstance(p, Affine) for p in parts):
            return IntervalNamespace.concat(parts)
        return _aff_concat(parts)


#: The affine-form namespace.
AFFINE = AffineNamespace()


def _aff_rec(ctx, W):
    n = ctx.n
    idx = np.arange(n)

    def rec(k, a):
        out = _aff_matvec(W[k], a)
        if k in ctx.blocks:
            # Delta_k c: exact in the set symbols; Delta_k (a - c): second order,
            # bounded per row and in norm through sup ||a - c||_2
            B = a.c.shape[0]
            sc = ctx.scale[k]
            if out.Au is None:
                out.Au = np.zeros((B, n, ctx.Nu))
            A4 = out.Au[..., ctx.blocks[k]].reshape(B, n, n, n)
            blk = sc[None, :, :] * a.c[:, None, :]
            if out._gram is not None and k in out._gram:
                out._gram = dict(out._gram)
                out._gram[k] = _gram_block_add(*out._gram[k], A4, blk)
            old = A4[:, idx, idx, :]
            A4[:, idx, idx, :] = old + blk
            if ctx.is_ball:
                badd = up(ctx.ops.eps[k] * _nrm(a.c), 1)          # norm of U -> (sc*U) c
                radd = np.broadcast_to(badd[:, None], (B, n))
            else:
                radd = up(np.abs(blk).sum(axis=-1), n)
                badd = _nrm(radd)
            rnd = up(2 * U64 * (np.abs(old).sum(axis=-1) + np.abs(blk).sum(axis=-1)), n)
            if ctx.is_ball:                        # |e . U_i| <= ||e||_2 for ||U||_F <= 1
                rnd = np.minimum(rnd, up(2 * U64 * (_nrm(old) + _nrm(blk)), 2))
            out._lu, out._r2 = None, None
            out._lu_ub = up(out.lu_fast() + radd, 2) if out._lu_ub is not None else None
            out._nu = None
            out._nu_ub = up(out._nu_ub + badd, 1) if out._nu_ub is not None else None
            dn = a.dnorm()
            rad = a.rad()
            if ctx.is_ball:
                e = ctx.ops.eps[k]
                sq = up(e * np.minimum(dn, _nrm(rad)), 1)
                comp = np.broadcast_to(sq[:, None], (B, n))
                nrm = sq
            else:
                comp = np.minimum(up(rad @ ctx.ops.E[k].T, n),
                                  up(ctx.Erow[k][None, :] * dn[:, None], 1))
                nrm = np.minimum(up(ctx.Enorm[k] * dn, 1), _nrm(comp))
            out._err = None
            out = out._with_err(up(comp + rnd, 1), up(nrm + _nrm(rnd), 1))
        return out
    return rec


def _consolidate(a, mid_b, half_b, window, exact=4):
    r"""Clip rows beyond the state box, then turn the fresh error into a new group
    (folding the oldest group into the fresh error beyond ``window`` groups). The
    spectral-norm bounds of the ``exact`` newest group blocks are tightened by a
    verified eigenvalue bound of their Gram matrices (0: product rule, Frobenius and
    :math:`(\|\cdot\|_1\|\cdot\|_\infty)^{1/2}` only)."""
    ctx = a.ctx
    B, n = a.c.shape
    rad = a.rad()
    bad = ~(rad <= half_b) | ~np.isfinite(a.c)
    c, r, rho, Au, Ax, phi = a.c, a.r, a.rho, a.Au, a.Ax, a.phi
    nu = a._nu if a._nu is not None else None
    if np.any(bad):
        Au = None if Au is None else Au.copy()
        Ax = None if Ax is None else Ax.copy()
        c = np.where(bad, mid_b, c)
        rho = up(np.minimum(rho, _nrm(np.where(bad, 0.0, r))) + _nrm(np.where(bad, half_b, 0.0)), 1)
        r = np.where(bad, half_b, r)
        if Au is not None:
            Au[bad] = 0.0                     # zeroing rows never increases a norm
        if Ax is not None:
            Ax[bad] = 0.0
    rho = np.minimum(rho, _nrm(r))
    if Ax is None:
        Ax = np.zeros((B, n, 0))
    G = Ax.shape[2] // n
    eye = np.broadcast_to(np.eye(n), (B, n, n))
    r_new, rho_new = np.zeros((B, n)), np.zeros(B)
    gr, grho = ctx.gr, ctx.grho
    if G + 1 > window and G > 0:
        # fold the oldest group into the fresh error of the new form
        t, gn = ctx.groups(Ax[:, :, :n], gr[:, :1], grho[:, :1])
        r_new = t[:, :, 0]
        rho_new = np.minimum(gn[:, 0], up(phi[:, 0] * grho[:, 0], 1))
        Ax = Ax[:, :, n:]
        phi = phi[:, 1:]
        gr, grho = gr[:, 1:], grho[:, 1:]
    bad_r = ~np.all(np.isfinite(r), axis=1) | ~np.isfinite(rho)
    ctx.gr = np.concatenate([gr, np.where(bad_r[:, None], 0.0, r)[:, None, :]], axis=1)
    ctx.grho = np.concatenate([grho, np.where(bad_r, 0.0, rho)[:, None]], axis=1)
    if Ax.shape[2]:
        # tighten the propagated norm bounds of the blocks: Frobenius and (||.||_1||.||_inf)^1/2
        A4 = Ax.reshape(B, n, -1, n)
        fro = np.sqrt(up(np.einsum("bigj,bigj->bg", A4, A4), n * n)) * (1 + 2 * U64)
        aA = np.abs(A4)
        r1 = up(aA.sum(axis=1), n).max(axis=2)
        ri = up(aA.sum(axis=3), n).max(axis=1)
        phi = np.minimum(phi, np.minimum(fro, np.sqrt(r1 * ri) * (1 + 4 * U64)))
        # verified spectral norms of the newest blocks (where the product rule is loosest)
        k = min(exact, A4.shape[2])
        if k:
            blk = np.transpose(A4[:, :, -k:, :], (0, 2, 1, 3)).reshape(B * k, n, n)
            ok = np.all(np.isfinite(blk), axis=(1, 2))
            if np.all(ok):
                Gm = np.swapaxes(blk, 1, 2) @ blk
                f2 = up(np.einsum("bij,bij->b", blk, blk), n * n)
                lam = _lam_max_upper(Gm, up(gamma(n + 1) * f2, 1))
                phi[:, -k:] = np.minimum(phi[:, -k:], _un(np.sqrt(lam)).reshape(B, k))
    Ax = np.concatenate([Ax, eye], axis=2)
    phi = np.concatenate([phi, np.ones((B, 1))], axis=1)
    r_new = np.where(bad_r[:, None], np.inf, r_new)
    out = Affine(ctx, c, Au, Ax, r_new, np.where(bad_r, np.inf, rho_new), phi)
    if nu is not None:
        out._nu = nu
    if a._lu is not None:
        out._lu = np.where(bad, 0.0, a._lu)            # zeroed rows: 0
    if a._gram is not None and Au is not None:
        # zeroed rows: the Gram's rows and columns (its error bound still holds)
        z = bad[:, :, None] | bad[:, None, :]
        out._gram = {k: (np.where(z, 0.0, G), e) for k, (G, e) in a._gram.items()}
    return out


def _trace_affine(cell, ops, X3, h0a, window, iters, polish=0, out_rows=None,
                  one_sided=False, chords=True):
    T, B = X3.shape[0], X3.shape[1]
    N = cell.state_size
    n = N if out_rows is None else len(out_rows)          # the reported components
    names = ops.names
    ctx = _AffCtx(cell, ops, B, True)
    ctx0 = _AffCtx(cell, ops, B, False)
    ctx.one_sided = ctx0.one_sided = one_sided
    ctx.chords = chords                   # (the nominal run's ranges are rounding only)
    P = dict(cell.params)
    W = {k: np.asarray(v, np.float64) for k, v in cell.recurrent.items()}
    lo_b, hi_b = cell.state_bounds(h0a)
    lo_b = np.broadcast_to(np.asarray(lo_b, np.float64), (B, N))
    hi_b = np.broadcast_to(np.asarray(hi_b, np.float64), (B, N))
    with np.errstate(invalid="ignore"):
        mid_b = 0.5 * (lo_b + hi_b)
        half_b = up(0.5 * (hi_b - lo_b) + np.abs(mid_b) * 4 * U64, 2)
    # an unbounded component (the LSTM's c, [-inf, inf]): never clipped (half-width inf)
    fin_b = np.isfinite(mid_b)
    mid_b = np.where(fin_b, mid_b, 0.0)
    half_b = np.where(fin_b, half_b, np.inf)
    width = np.broadcast_to(np.asarray(cell.trivial_cap(h0a, B), np.float64), (B, N))
    if out_rows is not None:
        width = width[:, out_rows]
    cap = _nrm(width)
    hp = Affine(ctx, h0a.copy(), np.zeros((B, N, ctx.Nu)) if names else None,
                np.zeros((B, N, 0)), np.zeros((B, N)))
    hz = Affine(ctx0, h0a.copy(), None, np.zeros((B, N, 0)), np.zeros((B, N)))
    rec, rec0 = _aff_rec(ctx, W), _aff_rec(ctx0, W)
    res = {key: np.empty((T, B, n)) for key in ("coord", "lin_coord", "rem", "rem0")}
    bound, lin_norm, rem_norm = np.empty((T, B)), np.empty((T, B)), np.empty((T, B))
    lin_fro = np.empty((T, B)) if ops.is_ball else None
    lin_op = np.empty((T, B)) if ops.is_ball else None
    lin_gram = np.empty((T, B)) if ops.is_ball else None
    same_eps = ops.is_ball and len(set(ops.eps[k] for k in names)) <= 1
    omega = None
    for t in range(T):
        x = X3[t]
        hp = cell.forward(AFFINE, P, hp, x, rec)[0]
        hz = cell.forward(AFFINE, P, hz, x, rec0)[0]
        if not isinstance(hp, Affine):
            raise TypeError("forward: expected the state to stay an affine form")
        full_hp, full_hz = hp, hz
        if out_rows is not None:                 # the reported rows (the output)
            hp, hz = _aff_rows(hp, out_rows), _aff_rows(hz, out_rows)
        rem, remn = hp.err()
        z0, z0n = hz.err()
        dc = np.abs(hp.c - hz.c) * (1 + 2 * U64)
        rem0 = up(z0 + dc, 2)
        rem0n = np.minimum(_nrm(rem0), up(z0n + _nrm(dc), 2))
        if not names:
            lam = np.zeros((B, n))
            Lam = np.zeros(B)
            if ops.is_ball:
                lin_fro[t] = 0.0
                lin_op[t] = 0.0
                lin_gram[t] = 0.0
        else:
            Ms = {k: hp.Au[..., ctx.blocks[k]] for k in names}
            if ops.is_ball:
                Lam, fro, op, rows, gf = _ball_norm(Ms, {k: 1.0 for k in names}, names,
                                                    with_op=True, rows=True, gram=True,
                                                    grams=hp.grams())
                lam = rows
                e0 = ops.eps[names[0]]
                lin_fro[t] = up(fro / e0, 1) if same_eps else np.inf
                lin_op[t] = up(op / e0, 1) if same_eps else np.inf
                lin_gram[t] = up(gf / e0 / e0, 2) if same_eps else np.inf
            else:
                lam = hp.lu()
                Lam = _nrm(lam)
                if iters:
                    fin = np.all(np.isfinite(lam), axis=1) & (Lam < 1e6 * cap)
                    if np.any(fin):
                        ones = {k: np.ones(Ms[k].shape[-1]) for k in names}
                        # a warm start from the previous step's weights converged to worse
                        # weights (bound 1.28x vs 1.17x the attack): cold start every step
                        sdp, omega = _box_sdp({k: Ms[k][fin] for k in names}, ones, names, iters,
                                              polish=polish)
                        Lam = Lam.copy()
                        Lam[fin] = np.minimum(Lam[fin], sdp)
            hp._lu = np.broadcast_to(lam, (B, n))
        lam = np.broadcast_to(lam, (B, n))
        Lam = np.where(np.isfinite(Lam), Lam, np.inf)
        hp._nu = Lam
        comp = np.minimum(up(lam + rem + rem0, 2), width)
        bt = np.minimum(np.minimum(_nrm(comp), up(Lam + remn + rem0n, 2)), cap)
        bound[t] = np.where(np.isfinite(bt), bt, cap)
        res["coord"][t], res["lin_coord"][t] = comp, lam
        res["rem"][t], res["rem0"][t] = rem, rem0
        rem_norm[t] = up(remn + rem0n, 1)
        lin_norm[t] = Lam
        hp = _consolidate(full_hp, mid_b, half_b, window)
        # the nominal run's groups hold rounding errors only: their verified spectral
        # norms (four eigenvalue certificates per step) are left to the cheaper bounds
        hz = _consolidate(full_hz, mid_b, half_b, window, exact=0)
    return SetTrace(bound=bound, coord=res["coord"], lin_coord=res["lin_coord"],
                    lin_norm=lin_norm, rem_coord=res["rem"], rem0_coord=res["rem0"],
                    lin_fro=lin_fro, lin_op=lin_op, cap=cap, restarts=0, rem_norm=rem_norm,
                    lin_gram=lin_gram)


def set_trace(cell, S, X, h0=None, *, window: int = 32, box_refine="auto",
              method: str = "affine", state: str = "h", one_sided: bool = False,
              chords: bool = True) -> SetTrace:
    r"""The set bound with all its pieces (see the module docstring).

    Parameters
    ----------
    cell : Cell
        Any cell implementing the protocol.
    S : Ball or Box
        A set of :mod:`rnnperturb.perturb.sets`.
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, N) or (N,), optional
        N = ``cell.state_size`` (the whole state: the LSTM's [h, c], a stack's layers).
    window : int
        Steps over which the remainder is propagated by exact multi-step
        propagators (memory O(window n^2)).
    box_refine : 'auto', 'tight', bool or int
        Weights tried by the SDP-dual norm bound for boxes, the last of them and
        the best earlier one verified (``'auto'``: 2 when n <= 64, else off; cost
        O(n^4) per weight and step; ``True``: 6, which on the memorization
        checkpoints (12-bit ``rounding="any"``) is at most 6 % lower at some step,
        equal at the median and the last step);
        ``'tight'``: 6 and then up to 40 L-BFGS steps on the dual weights (about
        0.1-0.2 s per step at n = 32; the linear part 4-7 % lower in the auto_LiRPA
        setting: within 1.05-1.09 of the best vertex found instead of 1.09-1.16).
    method : {'affine', 'mean_value', 'best'}
        ``'affine'``: the cell's ``forward`` in affine arithmetic over the set
        symbols (module docstring, "Affine method"); ``'mean_value'``: the
        linearisation plus the interval mean-value remainder; ``'best'``: both,
        the smaller (each is sound). For a cell whose state is more than h
        (N > n: LSTM, stacked networks) only ``'affine'`` is supported.
    state : {'h', 'full'}
        Which deviation the arrays report: ``'h'`` the output
        (:meth:`~rnnperturb.cells.protocol.Cell.output_rows`: the LSTM's h, a
        stack's top h; the whole state when N = n), ``'full'`` the whole state
        (N components; the LSTM's c may be unbounded: then the bound is the cap, inf).
    one_sided : bool
        Affine method: centre the activation remainders whose pre-activation range
        lies on one side of 0 (:func:`_one_sided`; module docstring). Sound either
        way; much tighter on saturated (trained) nets at larger radii, never a larger
        norm bound at the step where it is used, but it can be looser later in the
        contractive regime. Off by default (the shipped tolerance table was computed
        without it).
    chords : bool
        Affine method: on each row of each activation, the chord over the row's
        range, centred (the Chebyshev linear approximation on a convex or concave
        piece: half the tangent's error, less where the range straddles the
        inflection; :func:`~rnnperturb.verified.activation.secant_enclosure`), where it
        lowers the norm bound of the activation's error (:func:`_secant_rows`); else
        the tangent. Sound either way. On by default; the certificate searches of
        :mod:`rnnperturb.bounds.set_recall` keep it off unless asked.

    Returns
    -------
    SetTrace
        Arrays of shape (T, B, ...) (a leading batch axis of 1 for (T, m) inputs),
        the last axis the reported components.
    """
    ops = _SetOps(cell, S)
    rows = cell.output_rows(state)
    rows = None if rows is None else np.asarray(rows, dtype=np.intp)
    window = check_int("window", window, low=1, high=100_000)
    if method not in ("affine", "mean_value", "best"):
        raise ValueError(f"method: expected 'affine', 'mean_value' or 'best', found {method!r}")
    check_bool("one_sided", one_sided)
    check_bool("chords", chords)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    cell = _cell64(cell)
    T, B = X3.shape[0], X3.shape[1]
    h0a = as_h0(h0, cell.state_size, B, single, np.float64)
    X3 = X3.astype(np.float64)
    n = cell.n
    if method != "affine" and cell.state_size != n:
        raise ValueError(f"method: expected 'affine' for a cell whose state is more than its "
                         f"hidden vector (state size {cell.state_size}, n = {n}; the "
                         f"mean-value method assumes N = n), found {method!r}")
    polish = 0
    if isinstance(box_refine, str) and box_refine == "auto":
        iters = 2 if (not ops.is_ball and n <= 64) else 0
    elif isinstance(box_refine, str) and box_refine == "tight":
        iters, polish = 6, 40
    elif isinstance(box_refine, str):
        raise ValueError(f"box_refine: expected 'auto', 'tight', a bool or an int, found "
                         f"{box_refine!r}")
    elif isinstance(box_refine, bool):
        iters = 6 if box_refine else 0
    else:
        iters = check_int("box_refine", box_refine, low=0, high=1000)
    if method == "affine":
        return _trace_affine(cell, ops, X3, h0a, window, iters, polish, rows, bool(one_sided),
                             bool(chords))
    if method == "mean_value":
        return _trace_mean_value(cell, ops, X3, h0a, window, iters, polish)
    a = _trace_affine(cell, ops, X3, h0a, window, iters, polish, one_sided=bool(one_sided),
                      chords=bool(chords))
    b = _trace_mean_value(cell, ops, X3, h0a, window, iters, polish)
    return a if np.sum(a.bound) <= np.sum(b.bound) else b


def _trace_mean_value(cell, ops, X3, h0a, window, iters, polish=0):
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
                    sdp = _box_sdp({k: Ms[k][fin] for k in names}, ops.vecE, names, iters,
                                   polish=polish)[0]
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
                    lin_fro=lin_fro, lin_op=lin_op, cap=cap, restarts=restarts,
                    rem_norm=up(_nrm(out["rem"]) + _nrm(out["rem0"]), 1))


def set_bound(cell, S, X, h0=None, *, window: int = 32, box_refine="auto",
              method: str = "affine", componentwise: bool = False, state: str = "h",
              one_sided: bool = False, chords: bool = True):
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
    h0 : array_like, shape (B, N) or (N,), optional
        Common initial state (zeros when None); N = ``cell.state_size``.
    window : int
        Steps of exact multi-step propagation of the remainder.
    box_refine : 'auto', 'tight', bool or int
        SDP-dual refinement of the box's linear part (see :func:`set_trace`).
    method : {'affine', 'mean_value', 'best'}
        See :func:`set_trace`.
    componentwise : bool
        Return the componentwise bound (T, B, n) or (T, n) instead.
    state : {'h', 'full'}
        ``'h'`` (default): the deviation of the output (the LSTM's h, a stack's top
        h; the state itself for Elman/MGRU/GRU); ``'full'``: of the whole state (N).
    one_sided : bool
        Centre the one-signed activation remainders (see :func:`set_trace`).
    chords : bool
        Chords instead of tangents where they are tighter (see :func:`set_trace`).

    Returns
    -------
    ndarray, shape (T, B) or (T,)
        ``bound[t-1]`` for :math:`h_t`, at most the trivial cap.
    """
    X3, single = as_inputs(X, cell.m, cell.dtype)
    if single and h0 is not None:
        h0 = np.asarray(h0, np.float64).reshape(-1)
    tr = set_trace(cell, S, X3, h0, window=window, box_refine=box_refine, method=method,
                   state=state, one_sided=one_sided, chords=chords)
    res = tr.coord if componentwise else tr.bound
    return res[:, 0] if single else res


# ========================================================================= attack
def carried_matrices(cell, X, h0=None, names=None) -> dict:
    r"""The carried matrices :math:`M^k_T` of the tangent-linear model at the last step,
    :math:`\ell_T = \sum_k M^k_T\,\mathrm{vec}\,\Delta W_k`; dict name -> (B, N, n*n)
    over the whole state (N = ``cell.state_size``; float; not a bound)."""
    X3, single = as_inputs(X, cell.m, cell.dtype)
    cell = _cell64(cell)
    T, B = X3.shape[0], X3.shape[1]
    N = cell.state_size
    h = as_h0(h0, N, B, single, np.float64)
    n = cell.n
    names = tuple(cell.recurrent_names) if names is None else tuple(names)
    Ms = {k: np.zeros((B, N, n * n)) for k in names}
    idx = np.arange(n)
    for t in range(T):
        h, J, forcing = cell.linearise(h, X3[t].astype(np.float64))
        for k in names:
            diag, Bt, a = forcing[k]
            M = J @ Ms[k]
            M4 = M.reshape(B, N, n, n)
            if diag:
                M4[:, idx, idx, :] += Bt[:, :, None] * a[:, None, :]
            else:
                M4 += Bt[:, :, :, None] * a[:, None, None, :]
            Ms[k] = M
    return Ms


def _objective_and_grad(cell, names, X3, h0, HT, dW, rows=None):
    """||h'_T - h_T|| (the rows ``rows`` of the state, all when None) and the gradient
    of 0.5 ||h'_T - h_T||^2 w.r.t. dW (adjoint)."""
    other = cell.replace(**{k: cell.recurrent[k] + dW[k] for k in names})
    h = h0
    tape = []
    for t in range(X3.shape[0]):
        hn, J, forcing = other.linearise(h, X3[t])
        tape.append((J, forcing))
        h = hn
    e = h - HT                                            # (1, N)
    if rows is not None:
        keep = np.zeros(e.shape[-1], bool)
        keep[rows] = True
        e = np.where(keep, e, 0.0)
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


def set_attack(cell, S, X, seed=0, *, h0=None, iters: int = 40, restarts: int = 4,
               state: str = "h"):
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
    h0 : array_like, shape (N,), optional
        N = ``cell.state_size``.
    iters, restarts : int
    state : {'h', 'full'}
        The deviation maximised: the output's (default; the LSTM's h, a stack's
        top h) or the whole state's.

    Returns
    -------
    lo : float
        The largest :math:`\|h'_T - h_T\|_2` found (float simulation).
    dW : dict of str to ndarray (n, n)
        The member of S that attains it (every recurrent matrix).
    """
    ops = _SetOps(cell, S)
    rows = cell.output_rows(state)
    rows = None if rows is None else np.asarray(rows, dtype=np.intp)
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
                cell.state_size, 1, True, np.float64)
    names = ops.names
    n = cell.n
    sel = slice(None) if rows is None else rows
    HT = cell.run(X3, h0a, state="full")[-1]
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
        return float(np.linalg.norm((other.run(X3, h0a, state="full")[-1] - HT)[..., sel]))

    starts = []
    Ms = {k: v[:, sel] for k, v in carried_matrices(cell, X3, h0a, names).items()}
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
        # vertices of the cube maximising the tangent-linear ||A u||: from the sign
        # patterns of the top output directions and of random ones, the fixed-point
        # iteration u <- sign(A^T A u) (it never decreases the convex ||A u||^2: u' maximises
        # the linearisation 2 u^T A^T A u' over the cube), the best distinct ones kept
        cand = [U_[:, j] for j in range(min(4, U_.shape[1]))]
        cand += [rng.standard_normal(A.shape[0]) for _ in range(8)]
        verts = []
        for y in cand:
            u = np.sign(y @ A)
            u[u == 0] = 1.0
            for _ in range(50):
                u2 = np.sign(A.T @ (A @ u))
                u2[u2 == 0] = 1.0
                if np.array_equal(u2, u):
                    break
                u = u2
            verts.append((float(np.linalg.norm(A @ u)), tuple(u)))
        seen = set()
        for _, u in sorted(verts, reverse=True):
            if u in seen or len(seen) >= 3:
                continue
            seen.add(u)
            uu = np.asarray(u)
            d, off = {}, 0
            for k in names:
                d[k] = (uu[off:off + n * n] * ops.vecE[k]).reshape(n, n)
                off += n * n
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
            _, gr = _objective_and_grad(cell, names, X3, h0a, HT, d, rows)
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
