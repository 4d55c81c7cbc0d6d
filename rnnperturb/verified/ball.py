r"""Ball (midpoint-radius) arithmetic over a cell's own step: the generic
verified rounding step of the certified trajectory bound, for every cell.

Balls
-----
A :class:`Ball` is a float64 midpoint :math:`\tilde v` with a componentwise
radius :math:`r \ge 0`; it *encloses* a real quantity :math:`v` when
:math:`|v - \tilde v| \le r`. The namespace :class:`BallNamespace` runs a
cell's :meth:`~rnnperturb.cells.protocol.Cell.forward` on balls: every
operation computes its midpoint with the floating-point operations the float
namespace performs (so the midpoints are the float64 step, bit for bit) and
an outward radius that encloses the exact (real) result for *every* exact
operand in the operand balls, the rounding of the midpoint included. With
the standard model :math:`fl(x\circ y) = (x\circ y)/(1+\delta)`,
:math:`|\delta|\le u = 2^{-53}` (so :math:`|x\circ y - fl(x\circ y)| \le
u|fl(x\circ y)|`; gradual underflow adds at most :math:`2^{-1075}` to a
product, far below the absolute :math:`10^{-120}` of
:func:`~rnnperturb.verified.linalg.up`):

* sum, difference: :math:`r = r_a + r_b + u|fl(\tilde a\pm\tilde b)|`;
* product: :math:`r = |\tilde a| r_b + |\tilde b| r_a + r_a r_b + u|fl(\tilde a\tilde b)|`
  (from :math:`ab - \tilde a\tilde b = \tilde a\,\delta b + \tilde b\,\delta a + \delta a\,\delta b`);
* product by a float64 parameter :math:`A` (exact), inner dimension k:
  :math:`r = |A| r_v + \gamma_k|A||\tilde v|` (Higham, Accuracy and Stability,
  §3.5: :math:`|fl(A\tilde v) - A\tilde v| \le \gamma_k|A||\tilde v|` in any
  summation order, FMA or not); for the state itself, with its norm bound
  :math:`\|v - \tilde v\|_2 \le N`, :math:`|A|r_v` is replaced by
  :math:`\min(|A|r_v, \|A_{i,:}\|_2 N)`;
* activation :math:`\varphi \in \{\tanh, \sigma\}`:
  :math:`r = s\,r_a + \epsilon|fl(\varphi(\tilde a))|` with
  :math:`s = \max\varphi'` over :math:`[\tilde a \pm r_a]`
  (:func:`~rnnperturb.verified.activation.slope_max`, mean value theorem)
  and :math:`\epsilon` the accuracy of the computed activation
  (:func:`~rnnperturb.verified.activation.act_error`); capped by the range of
  :math:`\varphi` (:math:`|\tanh| \le 1`, :math:`\sigma \in [0, 1]`);
* gated update :math:`(1-f)h + fc`: from :math:`(1-f)h + fc - [(1-\tilde f)\tilde h
  + \tilde f\tilde c] = (1-\tilde f)\delta h + \tilde f\delta c + \delta f(\tilde c - \tilde h)
  + \delta f(\delta c - \delta h)`,
  :math:`r = |1-\tilde f| r_h + |\tilde f| r_c + r_f(|\tilde c - \tilde h| + r_c + r_h)
  + \gamma_4(|fl(1-\tilde f)||\tilde h| + |\tilde f||\tilde c|)`; where the gate
  ball lies in [0, 1] the update is a convex combination, so also the hull of
  the balls of h and c (as the interval layer does);
* slices and concatenations along the last axis (a state made of pieces, the
  LSTM's :math:`(h, c)`) are exact.

Every radius is computed in floating point from non-negative terms and inflated
by :func:`~rnnperturb.verified.linalg.up`, which covers its own rounding.
By induction over the operations of the step, every exact intermediate of the
step at every exact state in the input ball lies in its ball; this is the
whole proof, the same for every cell.

Two radii are carried side by side: ``rad``, from the input radius
:math:`\rho_{t-1}` (the box of the exact state), and ``loc``, the same
computation with input radius 0 (the local rounding of the step, for the
driver's switching rule and the linear part below; its activation slopes are
those of the wider box, which only enlarges it).

The rounding step (protocol :meth:`~rnnperturb.cells.protocol.Cell.rounding_step`)
--------------------------------------------------------------------------------
Input ball :math:`(\tilde h_{t-1}, \rho_{t-1})` with norm bound :math:`N_{t-1}`;
output: :math:`\tilde h_t` = the midpoint, :math:`\rho_t` = ``rad`` (it holds
:math:`h_t = F(h_{t-1})` since :math:`h_{t-1}` is in the input ball),
``loc`` = bound on :math:`|F(\tilde h_{t-1}) - \tilde h_t|`, and
:math:`N_t = \|\rho_t\|_2` rounded up (no sharper norm bound is available
generically; the hand-written Elman and MGRU steps add per-step norm
recursions).

Linear part (``linear=True``, for the multi-step recursions of
:mod:`rnnperturb.bounds.trajectory`). Write :math:`r_t = h_t - \tilde h_t
= [F(\tilde h + r) - F(\tilde h)] + [F(\tilde h) - \tilde h_t]`. By the
mean value theorem in integral form the first bracket is
:math:`\int_0^1 J(\tilde h + \tau r)\,d\tau\; r`, so

.. math::
    r_t = \tilde J_t r_{t-1} + g_t,\qquad
    |g_t| \le \sup_{\xi\in\text{box}} |(J(\xi) - \tilde J_t) r_{t-1}| + \text{loc},

with :math:`\tilde J_t` the exact linear map of the cell's
:meth:`~rnnperturb.cells.protocol.Cell.tangent` at :math:`(\tilde h_{t-1},
\widetilde{aux})` whose coefficient vectors are computed in float64 (what the
driver forms). The supremum is bounded by running the same tangent with the
intermediates as balls (enclosing :math:`aux(\xi)` over the box: their
midpoints are the float64 coefficients, their radii cover the spread over the
box and the rounding) on a :class:`LinearBound` argument, which carries for a
linear expression :math:`L` a majorant :math:`M \ge |L(\xi)v|, |\tilde Lv|` and a
difference bound :math:`D \ge |L(\xi)v - \tilde Lv|` over :math:`|v|\le\rho_{t-1}`:
the argument has :math:`M = \rho_{t-1}`, :math:`D = 0`; sums add both; a
product by an exact matrix :math:`A` gives :math:`|A|M, |A|D`; a product by a
coefficient ball :math:`(\tilde c, \delta)` gives
:math:`M' = (|\tilde c|+\delta)M` and, from :math:`cLv - \tilde c\tilde Lv =
c(Lv - \tilde Lv) + (c - \tilde c)\tilde Lv`,
:math:`D' = (|\tilde c| + \delta)D + \delta M`. Then ``gam`` = :math:`D + `
``loc``. The second-order part of :math:`D` is :math:`O(\rho^2)`, so the
multi-step recursions see the local rounding, as with the hand-written steps.

Measured (``tests/test_bounds_generic.py``, ``benchmarks/bench_generic_bound.py``).
From the same enclosure, on the Elman and MGRU memorization checkpoints, the
generic :math:`\rho_t` is 0.80-1.00 times the hand-written one (the gated
update above is tighter than the MGRU's own), :math:`N_t` up to 1.6 times
(contracting Elman nets, no norm recursion), the linear part's bound 0.5-2
times (up to 24 on expanding Elman nets, where it is second order and far
below the deviation); the certified bounds agree to 1e-9 relative. On the GRU
memorization checkpoint (n = 64, T = 61, B = 32) the default tier's median
bound / deviation is 1.0000000 at ranks 16 to 48.
"""
from __future__ import annotations

import numpy as np

from rnnperturb.cells.namespace import sigmoid as _sigmoid, split as _split
from rnnperturb.verified.activation import act_error, slope_max
from rnnperturb.verified.linalg import U64, VerifiedMatrix, gamma, up, vec_norm_upper, widen

__all__ = ["Ball", "LinearBound", "BallNamespace", "ball_rounding_context",
           "ball_rounding_step", "with_generic_rounding"]

_TINY = 1e-120
_ETANH = act_error("tanh")
_ESIG = act_error("sigmoid")


def _is_zero(o):
    return isinstance(o, (int, float)) and o == 0


class Ball:
    r"""A float64 midpoint with componentwise radii: ``rad`` (from the input
    box) and ``loc`` (from rounding alone); ``norm``, when given, bounds
    :math:`\|v - \tilde v\|_2` of ``rad`` over the last axis (only the input
    state carries it). Radii are arrays that broadcast against ``mid``, or 0."""

    __array_ufunc__ = None          # ndarray op Ball -> Ball's reflected operator
    __slots__ = ("mid", "rad", "loc", "norm")

    def __init__(self, mid, rad, loc, norm=None):
        self.mid = mid
        self.rad = rad
        self.loc = loc
        self.norm = norm

    @property
    def shape(self):
        return np.shape(self.mid)

    @property
    def ndim(self):
        return np.ndim(self.mid)

    # ----- operands: a Ball, or an exact constant (ndarray, Python number)
    @staticmethod
    def _parts(o):
        if isinstance(o, Ball):
            return o.mid, o.rad, o.loc
        if isinstance(o, LinearBound):
            return None
        return o, 0.0, 0.0

    def _add(self, o, sign):
        p = self._parts(o)
        if p is None:
            return NotImplemented
        om, orad, oloc = p
        m = self.mid + om if sign > 0 else self.mid - om
        e = U64 * np.abs(m)
        return Ball(m, up(self.rad + orad + e, 3), up(self.loc + oloc + e, 3))

    def __add__(self, o):
        return self._add(o, 1)

    __radd__ = __add__

    def __sub__(self, o):
        return self._add(o, -1)

    def __rsub__(self, o):
        p = self._parts(o)
        if p is None:
            return NotImplemented
        om, orad, oloc = p
        m = om - self.mid
        e = U64 * np.abs(m)
        return Ball(m, up(self.rad + orad + e, 3), up(self.loc + oloc + e, 3))

    def __neg__(self):
        return Ball(-self.mid, self.rad, self.loc)

    def __mul__(self, o):
        p = self._parts(o)
        if p is None:
            return NotImplemented
        om, orad, oloc = p
        m = self.mid * om
        e = U64 * np.abs(m)
        am, ao = np.abs(self.mid), np.abs(om)
        if isinstance(o, Ball):
            rad = up(am * orad + ao * self.rad + self.rad * orad + e, 4)
            loc = up(am * oloc + ao * self.loc + self.loc * oloc + e, 4)
        else:                                   # an exact constant
            rad = up(ao * self.rad + e, 2)
            loc = up(ao * self.loc + e, 2)
        return Ball(m, rad, loc)

    __rmul__ = __mul__

    def __getitem__(self, key):
        """A slice (exact); radii are broadcast to the midpoint's shape first."""
        shape = self.shape
        sl = lambda r: np.broadcast_to(r, shape)[key]        # noqa: E731
        return Ball(self.mid[key], sl(self.rad), sl(self.loc))


class LinearBound:
    r"""A linear expression :math:`v \mapsto L(\xi)v` of the tangent step, as
    the two bounds of the module docstring over :math:`|v| \le \rho`:
    ``M`` :math:`\ge |L(\xi)v|` and :math:`\ge |\tilde Lv|`, ``D`` :math:`\ge
    |L(\xi)v - \tilde Lv|` (every :math:`\xi` in the box), both (..., k) >= 0."""

    __array_ufunc__ = None
    __slots__ = ("M", "D")

    def __init__(self, M, D):
        self.M = M
        self.D = D

    @property
    def shape(self):
        return np.broadcast_shapes(np.shape(self.M), np.shape(self.D))

    def __add__(self, o):
        if _is_zero(o):
            return self
        if isinstance(o, LinearBound):
            return LinearBound(up(self.M + o.M, 2), up(self.D + o.D, 2))
        raise TypeError("LinearBound: only linear expressions (no constant terms) are supported")

    __radd__ = __add__
    __sub__ = __add__
    __rsub__ = __add__

    def __neg__(self):
        return self

    def __mul__(self, o):
        if isinstance(o, LinearBound):
            raise TypeError("LinearBound: the expression must be linear in the argument")
        if isinstance(o, Ball):
            c = up(np.abs(o.mid) + o.rad, 1)
            return LinearBound(up(c * self.M, 1), up(c * self.D + o.rad * self.M, 3))
        c = np.abs(o)
        return LinearBound(up(c * self.M, 1), up(c * self.D, 1))

    __rmul__ = __mul__

    def matvec(self, A: VerifiedMatrix):
        """:math:`|A|M`, :math:`|A|D` (one GEMM; a stack of S matrices acts on (S, B, k))."""
        X = np.stack(np.broadcast_arrays(self.M, self.D))
        out = up(X @ A.absT, A.A.shape[-1])
        return LinearBound(out[0], out[1])

    def __getitem__(self, key):
        shape = self.shape
        return LinearBound(np.broadcast_to(self.M, shape)[key], np.broadcast_to(self.D, shape)[key])


class BallNamespace:
    r"""The array namespace of :mod:`rnnperturb.cells.namespace` over
    :class:`Ball` (and, for the tangent step, :class:`LinearBound`); see the
    module docstring for the enclosure of each operation.

    Parameters
    ----------
    exact : bool
        Componentwise :math:`|A|r` products (one GEMM each); else the cheap
        majorant :math:`(\sum_j|A_{ij}|)\max_j r_j` combined with the row-norm
        bound (the ``"fast"`` tier of the certified bound).
    """

    def __init__(self, exact: bool = True):
        self.exact = bool(exact)

    @staticmethod
    def asarray(A):
        return A

    # ----- activations
    @staticmethod
    def _activation(a, phi, kind, eps, cap):
        if not isinstance(a, Ball):
            return phi(a)
        m = phi(a.mid)
        s = slope_max(kind, *widen(a.mid, a.rad))
        e = eps * np.abs(m) + _TINY
        c = cap(m)
        return Ball(m, np.minimum(up(s * a.rad + e, 2), c), np.minimum(up(s * a.loc + e, 2), c))

    def tanh(self, a):
        return self._activation(a, np.tanh, "tanh", _ETANH, lambda m: up(1.0 + np.abs(m), 1))

    def sigmoid(self, a):
        return self._activation(a, _sigmoid, "sigmoid", _ESIG,
                                lambda m: up(np.maximum(np.abs(m), np.abs(1.0 - m)), 1))

    # ----- products with parameters
    def matvec(self, A, v):
        r""":math:`A v` for a batch ``v`` (..., k) of balls, exact arrays or
        :class:`LinearBound`; ``A`` a float64 parameter (ndarray) or its
        :class:`~rnnperturb.verified.linalg.VerifiedMatrix` (a stack (S, r, k)
        acts on (S, B, k))."""
        if not isinstance(A, VerifiedMatrix):
            A = VerifiedMatrix(np.asarray(A, np.float64))
        if isinstance(v, LinearBound):
            return v.matvec(A)
        k = A.A.shape[-1]
        g = gamma(k)
        if not isinstance(v, Ball):
            v = np.asarray(v, np.float64)
            av = np.abs(v)
            e = up(g * self._absmv(A, av, None), 1)
            return Ball(self._mid_matvec(A, v), e, e)
        m = self._mid_matvec(A, v.mid)
        shape = v.shape
        parts = [np.abs(v.mid), np.broadcast_to(v.rad, shape)]
        if not _is_zero(v.loc):
            parts.append(np.broadcast_to(v.loc, shape))
        if self.exact:          # one GEMM for |A||mid|, |A|rad (and |A|loc)
            out = self._absmv(A, np.stack(parts), None)
        else:
            out = [self._absmv(A, q, None) for q in parts]
        e = g * out[0]
        prop = out[1]
        if v.norm is not None:              # the state: ||v - mid||_2 <= norm
            prop = np.minimum(prop, up(A.rn[..., None, :] * v.norm[..., None], 1))
        loc = up(out[2] + e, 2) if len(parts) == 3 else up(e, 1)
        return Ball(m, up(prop + e, 2), loc)

    def _absmv(self, A, v, vnorm):
        """Upper bound on :math:`|A|v` for ``v >= 0`` (..., k): a GEMM (``exact``), else
        the row-sum majorant combined with the row-norm bound."""
        if self.exact:
            k = A.A.shape[-1]
            if A.A.ndim == 2 and v.ndim > 2:
                flat = v.reshape(-1, k) @ A.absT
                return up(flat.reshape(v.shape[:-1] + (A.A.shape[0],)), k)
            return up(v @ A.absT, k)
        return A.absmv(v, vec_norm_upper(v) if vnorm is None else vnorm, False)

    @staticmethod
    def _mid_matvec(A, v):
        """The float64 product as :data:`rnnperturb.cells.namespace.FLOAT` computes it
        (2-D matrices: one GEMM over all leading axes; stacks: batched)."""
        if A.A.ndim == 2:
            if v.ndim <= 2:
                return v @ A.A.T
            return (v.reshape(-1, v.shape[-1]) @ A.A.T).reshape(v.shape[:-1] + (A.A.shape[0],))
        return v @ A.AT

    # ----- gated update
    @staticmethod
    def lerp(h, c, f):
        r""":math:`(1 - f) h + f c` (module docstring; the hull where f is in [0, 1])."""
        if not any(isinstance(o, Ball) for o in (h, c, f)):
            return (1.0 - f) * h + f * c
        hm, hr, hl = Ball._parts(h)
        cm, cr, cl = Ball._parts(c)
        fm, fr, fl = Ball._parts(f)
        omf = 1.0 - fm
        m = omf * hm + fm * cm
        aomf, af = np.abs(omf), np.abs(fm)
        e = gamma(4) * up(aomf * np.abs(hm) + af * np.abs(cm), 2)
        d = np.abs(cm - hm)
        rad = up(aomf * hr + af * cr + fr * up(d + cr + hr, 3) + e, 5)
        loc = up(aomf * hl + af * cl + fl * up(d + cl + hl, 3) + e, 5)
        # convex combination where the gate's ball lies in [0, 1]: the hull of h and c
        flo, fhi = widen(fm, fr)
        inside = (flo >= 0) & (fhi <= 1)
        if np.any(inside):
            hlo, hhi = widen(hm, hr)
            clo, chi = widen(cm, cr)
            lo, hi = np.minimum(hlo, clo), np.maximum(hhi, chi)
            hull = up(np.maximum(m - lo, hi - m), 1)
            rad = np.where(inside, np.minimum(rad, hull), rad)
        return Ball(m, rad, loc)

    # ----- pieces of a state
    #: The pieces of a ball or a linear bound along the last axis (slices are exact).
    split = staticmethod(_split)

    @staticmethod
    def concat(parts):
        """The concatenation along the last axis, leading axes broadcast (exact)."""
        if any(isinstance(p, LinearBound) for p in parts):
            if not all(isinstance(p, LinearBound) or _is_zero(p) for p in parts):
                raise TypeError("concat: a linear expression joined to a constant")
            shapes = [p.shape for p in parts if isinstance(p, LinearBound)]
            lead = np.broadcast_shapes(*(s[:-1] for s in shapes))
            Ms, Ds = [], []
            for p in parts:
                Ms.append(np.broadcast_to(p.M, lead + p.shape[-1:]))
                Ds.append(np.broadcast_to(p.D, lead + p.shape[-1:]))
            return LinearBound(np.concatenate(Ms, axis=-1), np.concatenate(Ds, axis=-1))
        balls = [p if isinstance(p, Ball) else Ball(np.asarray(p, np.float64), 0.0, 0.0)
                 for p in parts]
        lead = np.broadcast_shapes(*(b.shape[:-1] for b in balls))

        def cat(get):
            return np.concatenate([np.broadcast_to(get(b), lead + b.shape[-1:]) for b in balls],
                                  axis=-1)
        return Ball(cat(lambda b: b.mid), cat(lambda b: b.rad), cat(lambda b: b.loc))


# ------------------------------------------------------------- the rounding step
def _midpoints(aux, lead):
    """The midpoints of a step's intermediates (a dict, nested for a stacked network),
    each broadcast to the leading axes ``lead`` of the state."""
    if isinstance(aux, dict):
        return {k: _midpoints(v, lead) for k, v in aux.items()}
    if isinstance(aux, (list, tuple)):
        return type(aux)(_midpoints(v, lead) for v in aux)
    v = aux.mid if isinstance(aux, Ball) else np.asarray(aux, np.float64)
    return np.broadcast_to(v, lead + np.shape(v)[-1:])


def ball_rounding_context(cell, rec) -> dict:
    r"""The constants of :func:`ball_rounding_step` for the float64 trajectories
    whose recurrent matrices are ``rec`` (dict of (n, n) or (S, n, n) stacks;
    the other parameters are the cell's own, as float64): every matrix as a
    :class:`~rnnperturb.verified.linalg.VerifiedMatrix`, every vector as is."""
    P = {k: VerifiedMatrix(np.asarray(rec[k], np.float64)) for k in cell.recurrent_names}
    for k in cell.input_params:
        v = np.asarray(getattr(cell, k), np.float64)
        P[k] = VerifiedMatrix(v) if v.ndim == 2 else v
    return {"P": P}


def ball_rounding_step(cell, ctx, h, rho, N, x, absx, xnorm, exact: bool, linear: bool):
    r"""One float64 step of ``cell`` with a sound enclosure of its rounding,
    by ball arithmetic over the cell's own :meth:`forward` (and :meth:`tangent`
    for the linear part); the contract of
    :meth:`rnnperturb.cells.protocol.Cell.rounding_step`, the proof in the module
    docstring. ``absx`` and ``xnorm`` are not needed (the input is exact)."""
    P = ctx["P"]
    ns = BallNamespace(exact)
    hb = Ball(h, rho, 0.0, norm=N)
    hn, aux = cell.forward(ns, P, hb, x, lambda k, a: ns.matvec(P[k], a))
    if not isinstance(hn, Ball):        # a step that ignores its state: exact up to rounding 0
        hn = Ball(np.asarray(hn, np.float64), 0.0, 0.0)
    shape = np.shape(h)
    rho_n = np.array(np.broadcast_to(hn.rad, shape))
    loc = np.array(np.broadcast_to(hn.loc, shape)) + _TINY
    N_n = vec_norm_upper(rho_n)
    lin = None
    if linear:
        out = cell.tangent(ns, P, hb, aux, LinearBound(rho, 0.0),
                           lambda k, v: ns.matvec(P[k], v), lambda k: 0.0)
        D = 0.0 if _is_zero(out) else out.D
        gam = up(D + loc, 2) + _TINY
        lin = (_midpoints(aux, shape[:-1]), np.array(np.broadcast_to(gam, shape)))
    return np.asarray(hn.mid), rho_n, N_n, loc, lin


def with_generic_rounding(cell):
    r"""The same cell with the generic rounding step in place of its own (to compare
    a hand-written :meth:`~rnnperturb.cells.protocol.Cell.rounding_step`, the Elman
    RNN's or the MGRU's, with the generic one): an instance of a subclass of the
    cell's class that takes :meth:`rounding_context` and :meth:`rounding_step` from
    :class:`~rnnperturb.cells.protocol.Cell`. For cells built from their parameters
    (``type(cell)(**params, dtype=...)``, as :meth:`Cell.replace` does)."""
    from dataclasses import dataclass

    from rnnperturb.cells.protocol import Cell
    cls = type(cell)
    sub = dataclass(frozen=True, eq=False)(type(f"Generic{cls.__name__}", (cls,), {
        "__module__": __name__, "rounding_context": Cell.rounding_context,
        "rounding_step": Cell.rounding_step}))
    return sub(**cell.params, dtype=cell.dtype)
