r"""Verified *upper* bounds on spectral norms (‖A‖₂, the largest singular value).

Power iteration and floating-point SVD give estimates that may lie below the
true norm; soundness needs upper bounds. This module provides

* :func:`spectral_norm_upper` — a near-exact verified upper bound (SVD basis
  plus Gershgorin, with every rounding error bounded);
* :func:`frobenius_upper`, :func:`row_norms_upper`, :func:`one_inf_upper` — cheap
  bounds (‖A‖₂ ≤ ‖A‖_F, ‖A‖₂ ≤ (‖A‖₁‖A‖_∞)^{1/2}) rounded upward;
* :func:`gamma` — the classical :math:`\gamma_k = k u/(1-ku)`.

Verified bound. Let :math:`Q` be the computed right singular vectors of
:math:`A` (nearly, but not exactly, orthogonal) and :math:`B = (AQ)^T(AQ)`.
For :math:`x = Qy`,

.. math::
    \frac{\|Ax\|_2^2}{\|x\|_2^2} = \frac{y^T B y}{y^T Q^T Q y}
    \le \frac{\lambda_{\max}(B)}{1-\eta},\qquad \eta \ge \|Q^TQ - I\|_2,

and :math:`Q` is invertible when :math:`\eta < 1`, so every :math:`x` is of
that form. :math:`B` is nearly diagonal, so Gershgorin's theorem bounds
:math:`\lambda_{\max}(B) \le \max_i (B_{ii} + \sum_{j\ne i}|B_{ij}|)` with a
relative slack of order :math:`n u`. The floating-point products
:math:`\tilde M = fl(AQ)`, :math:`\tilde B = fl(\tilde M^T\tilde M)` and
:math:`fl(Q^TQ)` carry the standard bounds
:math:`|fl(XY) - XY| \le \gamma_k |X||Y|` (any summation order), which are
added to the Gershgorin radii and to :math:`\eta`. Bounds for the symmetric
:math:`Q^TQ - I` use :math:`\|S\|_2 \le \|S\|_\infty`. Every sum of
non-negative terms is finally inflated by :math:`1 + 2(k+2)u`, which covers its
own rounding.
"""
from __future__ import annotations

import numpy as np

from rnnperturb.cells.namespace import split as _split

__all__ = ["U64", "gamma", "up", "spectral_norm_upper", "frobenius_upper",
           "row_norms_upper", "one_inf_upper", "vec_norm_upper", "widen", "VerifiedMatrix",
           "AbsValue", "ABS", "U32", "ETA32", "gamma32", "F32Matrix", "F32Value",
           "F32Namespace"]

U64 = 2.0 ** -53
_TINY = 1e-120


def gamma(k: int) -> float:
    r""":math:`\gamma_k = k u / (1 - k u)` for float64 (``u = 2^{-53}``), rounded up."""
    ku = k * U64
    if ku >= 0.5:
        raise ValueError(f"k: expected k*u < 1/2, found k={k}")
    return ku / (1.0 - ku) * (1 + 4 * U64)


def up(x, k: int = 1):
    """Inflate a computed sum of ``k`` non-negative terms so that it is an
    upper bound of the exact sum (relative ``2(k+2)u`` plus a tiny absolute)."""
    return np.asarray(x, dtype=np.float64) * (1.0 + 2 * (k + 2) * U64) + _TINY


def row_norms_upper(A):
    """Upper bounds on the 2-norms of the rows of ``A`` (..., r, c) -> (..., r)."""
    A = np.asarray(A, dtype=np.float64)
    k = A.shape[-1]
    return np.sqrt(up(np.sum(A * A, axis=-1), k)) * (1 + 2 * U64)


def frobenius_upper(A):
    """Upper bound on ‖A‖_F (≥ ‖A‖₂) over the last two axes."""
    A = np.asarray(A, dtype=np.float64)
    k = A.shape[-1] * A.shape[-2]
    return np.sqrt(up(np.sum(A * A, axis=(-2, -1)), k)) * (1 + 2 * U64)


def one_inf_upper(A):
    """Upper bound on (‖A‖₁‖A‖_∞)^{1/2} (≥ ‖A‖₂) over the last two axes."""
    A = np.abs(np.asarray(A, dtype=np.float64))
    r1 = up(A.sum(axis=-2), A.shape[-2]).max(axis=-1)
    ri = up(A.sum(axis=-1), A.shape[-1]).max(axis=-1)
    return np.sqrt(r1 * ri) * (1 + 4 * U64)


def _verified_single(A):
    r, c = A.shape
    if r == 0 or c == 0:
        return 0.0
    if not np.any(A):
        return 0.0
    # scale by a power of two (exact) so that the absolute slacks are negligible
    _, k = np.frexp(np.max(np.abs(A)))
    if k != 0 and np.all(np.isfinite(np.ldexp(A, -int(k)))):
        As = np.ldexp(A, -int(k))
        if np.array_equal(np.ldexp(As, int(k)), A):       # no underflow lost bits
            return float(np.ldexp(_verified_single_scaled(As), int(k)) * (1 + 2 * U64))
    return _verified_single_scaled(A)


def _verified_single_scaled(A):
    r, c = A.shape
    try:
        _, _, Vt = np.linalg.svd(A)
    except np.linalg.LinAlgError:  # pragma: no cover - extremely rare
        return float(frobenius_upper(A))
    Q = Vt.T                       # (c, c)
    aA, aQ = np.abs(A), np.abs(Q)
    M = A @ Q
    EM = up(gamma(c + 1) * (aA @ aQ), c)
    aM = np.abs(M)
    B = M.T @ M
    EB = up(aM.T @ EM + EM.T @ aM + EM.T @ EM + gamma(r + 1) * (aM.T @ aM), 3 * r)
    off = np.abs(B)
    diag = np.diag(B).copy()
    np.fill_diagonal(off, 0.0)
    gersh = up(diag + off.sum(axis=1) + EB.sum(axis=1), 2 * c + 1).max()
    G = Q.T @ Q
    EG = up(gamma(c + 1) * (aQ.T @ aQ), c)
    S = np.abs(G - np.eye(c)) + EG
    eta = up(S.sum(axis=1), c).max()
    if not eta < 0.5 or not np.isfinite(gersh):
        return float(frobenius_upper(A))
    val = np.sqrt(max(gersh, 0.0) / (1.0 - eta) * (1 + 4 * U64)) * (1 + 4 * U64)
    return float(min(val, frobenius_upper(A)))


def spectral_norm_upper(A):
    r"""Verified upper bound on the spectral norm :math:`\|A\|_2`.

    Parameters
    ----------
    A : array_like, shape (r, c) or (..., r, c)

    Returns
    -------
    s : float or ndarray, shape (...)
        :math:`s \ge \|A\|_2` in exact arithmetic, typically within a relative
        :math:`10^{-13}` of it (see the module docstring for the proof).
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim < 2:
        raise ValueError(f"A: expected a matrix (..., r, c), found shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError("A: expected finite values, found NaN/Inf")
    if A.ndim == 2:
        return _verified_single(A)
    flat = A.reshape((-1,) + A.shape[-2:])
    out = np.array([_verified_single(a) for a in flat])
    return out.reshape(A.shape[:-2])


# ------------------------------------------------ helpers of the rounding recursions
def vec_norm_upper(v):
    """Upper bound on the 2-norm of each row of ``v >= 0``, (..., n) -> (...).

    The sums of squares are dot products (batched matmul: one pass, any summation
    order), relative error at most gamma_n, which :func:`up` covers."""
    v = np.asarray(v, dtype=np.float64)
    ss = (v[..., None, :] @ v[..., :, None])[..., 0, 0]
    return np.sqrt(up(ss, v.shape[-1])) * (1 + 2 * U64)


def widen(a, rad):
    """An interval ``[lo, hi]`` that surely holds ``[a - rad, a + rad]`` (rounding included)."""
    lo = a - rad - 4 * U64 * np.abs(a) - _TINY
    hi = a + rad + 4 * U64 * np.abs(a) + _TINY
    return lo, hi


class VerifiedMatrix:
    """A float64 matrix, or a stack of them, with the verified constants the
    rounding recursions need.

    Attributes: ``A`` (r, c) or (S, r, c) (a stack: one matrix per leading
    index, e.g. the nominal and the perturbed trajectory), ``AT`` its
    transpose (last two axes), ``absT`` = |A|^T, ``rs`` (row sums of |A|,
    rounded up), ``rn`` (row 2-norms, rounded up), ``rn2`` (their squares),
    ``norm`` (verified upper bound on ||A||_2; shape (S,) for a stack).
    The products below broadcast: a stack of S matrices acts on (S, B, c)
    arrays (matrix s on ``v[s]``), a single matrix on (..., c).
    """

    def __init__(self, A):
        self.A = np.ascontiguousarray(A, dtype=np.float64)
        self.AT = np.ascontiguousarray(np.swapaxes(self.A, -1, -2))
        self.absT = np.ascontiguousarray(np.abs(self.AT))
        c = self.A.shape[-1]
        self.rs = up(np.abs(self.A).sum(axis=-1), c)
        self.rn = row_norms_upper(self.A)
        self.rn2 = up(self.rn * self.rn, 1)
        self._norm = None

    @property
    def norm(self):
        """Verified upper bound on ||A||_2 (float, or (S,) for a stack); computed on
        first use (an SVD per matrix)."""
        if self._norm is None:
            A = self.A
            nrm = spectral_norm_upper(A) if A.shape[-2] == A.shape[-1] else \
                np.sqrt(up(np.sum(self.rn2, axis=-1), A.shape[-2]))
            self._norm = float(nrm) if A.ndim == 2 else nrm
            self._nc = np.asarray(self._norm)[..., None]    # broadcasts against (S, B)
        return self._norm

    @property
    def _normc(self):
        return self._nc if self._norm is not None else (self.norm, self._nc)[1]

    def absmv(self, v, vnorm, exact: bool):
        """Componentwise bound on |A x| for every x with |x| <= v, ||x||_2 <= vnorm.

        v : (..., B, c), vnorm : (..., B). ``exact=True`` uses |A| v (a matvec), else
        the cheap majorant rowsum(|A|) * max(v); both are combined (min) with
        the row-norm bound ||A_i||_2 vnorm. ``vnorm=None`` (only with ``exact=True``):
        no norm bound known, |A| v alone (rounded up)."""
        if vnorm is None:
            if not exact:
                raise ValueError("vnorm: expected an array with exact=False, found None")
            return up(v @ self.absT, self.A.shape[-1])
        byrow = self.rn[..., None, :] * vnorm[..., None]
        if exact:
            el = up(v @ self.absT, self.A.shape[-1])
        else:
            el = self.rs[..., None, :] * np.max(v, axis=-1, keepdims=True)
        return up(np.minimum(el, byrow), 1)

    def dnorm(self, d):
        """Upper bound on ||diag(d) A||_2 for d >= 0, shape (..., B, r) -> (..., B)."""
        a = up(np.max(d, axis=-1) * self._normc, 1)
        b = np.sqrt(up(np.sum(d * d * self.rn2[..., None, :], axis=-1), d.shape[-1])) * (1 + 2 * U64)
        return np.minimum(a, b)


class AbsValue:
    r"""Majorant evaluation of a *linear* expression, with its rounding depth.

    Running a linear map :math:`v \mapsto L v` written with ``+ - *`` and
    matrix products (e.g. a cell's tangent step, whose coefficient vectors are
    ordinary arrays) on an ``AbsValue`` instead of an array computes

    * ``val``: the same expression with every coefficient and matrix replaced
      by its absolute value, i.e. :math:`|L|_{maj}|v|` for the nonnegative
      matrix :math:`|L|_{maj} \ge |L|` (entrywise) of the expression;
    * ``depth``: an upper bound :math:`D` on the number of roundings along any
      path of the expression DAG (a product by a coefficient adds 1, a sum adds
      1 to the deeper operand, a matrix product with inner dimension k adds k).

    Standard error analysis (Higham, *Accuracy and Stability*, Lemma 3.1/3.3:
    :math:`\prod (1+\delta_i)^{\pm1} = 1 + \theta_D`, :math:`|\theta_D|\le\gamma_D`)
    then gives, for the floating-point evaluation of the same expression on
    any ``v`` in any summation order,
    :math:`|fl(Lv) - Lv| \le \gamma_D\,|L|_{maj}|v|`. ``val`` is itself
    computed in floating point from nonnegative terms: :meth:`bound` inflates
    it to a sure upper bound. Adding an exact zero (a Python ``0``/``0.0``)
    is free.
    """

    __array_ufunc__ = None          # ndarray op AbsValue -> AbsValue's reflected op

    def __init__(self, val, depth=0):
        self.val = np.asarray(val, dtype=np.float64)
        self.depth = int(depth)

    @staticmethod
    def _is_zero(o):
        return isinstance(o, (int, float)) and o == 0

    def __add__(self, o):
        if self._is_zero(o):
            return self
        if isinstance(o, AbsValue):
            return AbsValue(self.val + o.val, max(self.depth, o.depth) + 1)
        raise TypeError("AbsValue: only linear expressions (no constant terms) are supported")

    __radd__ = __add__
    __sub__ = __add__
    __rsub__ = __add__

    def __neg__(self):
        return self

    def __mul__(self, o):
        if isinstance(o, AbsValue):
            raise TypeError("AbsValue: the expression must be linear in the argument")
        return AbsValue(self.val * np.abs(o), self.depth + 1)

    __rmul__ = __mul__

    def matvec(self, A):
        """:math:`|A| v` for a batch of rows, ``v @ |A|.T`` (inner dimension A.shape[1])."""
        A = np.asarray(A, dtype=np.float64)
        v = self.val
        if A.ndim == 2:
            out = (v.reshape(-1, v.shape[-1]) @ np.abs(A).T).reshape(v.shape[:-1] + (A.shape[0],))
        else:                       # a stack (S, r, c) acting on (..., S, B, c)
            out = v @ np.swapaxes(np.abs(A), -1, -2)
        return AbsValue(out, self.depth + A.shape[-1])

    def scaled(self, c, *, rounded: int = 0):
        r"""``c * self`` for a coefficient array ``c``; ``rounded``: the number of float64
        roundings that produced ``c`` from the exact product of the coefficients it
        stands for (``c = fl(a * b)``: 1; :math:`|fl(ab)| = fl(|a||b|)`), each one
        more factor :math:`(1+\delta)` on the paths through it (``depth`` + 1)."""
        return AbsValue(self.val * np.abs(c), self.depth + 1 + int(rounded))

    def absmatvec(self, absAT):
        """:math:`|A| v` from a precomputed ``absAT`` = :math:`|A|^T` (c, r), or a stack
        (S, c, r) acting on (..., S, B, c): ``v @ absAT`` (inner dimension c)."""
        return AbsValue(self.val @ absAT, self.depth + absAT.shape[-2])

    def bound(self):
        """A sure upper bound on the exact majorant (covers the rounding of ``val``)."""
        return up(self.val * (1 + 2 * gamma(max(self.depth, 1))), 1)

    # pieces of a state (the LSTM's (h, c), a stack's layers): exact, no rounding
    @property
    def shape(self):
        return self.val.shape

    def __getitem__(self, key):
        return AbsValue(self.val[key], self.depth)

    @staticmethod
    def concat(parts):
        """The concatenation along the last axis (leading axes broadcast)."""
        _linear_parts(parts, AbsValue)
        return AbsValue(_cat([p.val for p in parts]), max(p.depth for p in parts))


def _linear_parts(parts, cls):
    if not all(isinstance(p, cls) for p in parts):
        raise TypeError(f"concat: every piece of a linear expression must be a {cls.__name__}")


def _cat(vals):
    lead = np.broadcast_shapes(*(v.shape[:-1] for v in vals))
    return np.concatenate([np.broadcast_to(v, lead + v.shape[-1:]) for v in vals], axis=-1)


class AbsNamespace:
    """The namespace of :class:`AbsValue` (``matvec``, and ``split``/``concat`` for a
    state made of pieces)."""

    split = staticmethod(_split)
    concat = staticmethod(AbsValue.concat)

    @staticmethod
    def matvec(A, v):
        if isinstance(v, AbsValue):
            return v.matvec(A)
        return np.asarray(v) @ np.asarray(A).T

    @staticmethod
    def asarray(A):
        return A


#: The majorant namespace.
ABS = AbsNamespace()


# ------------------------------------- float32 evaluation of linear maps, with an error bound
U32 = 2.0 ** -24
#: Half the spacing of the float32 subnormals: the absolute error of an
#: underflowing float32 product or conversion is at most this.
ETA32 = 2.0 ** -150


def gamma32(k: int) -> float:
    r""":math:`\gamma_k = k u / (1 - k u)` for float32 (``u = 2^{-24}``), rounded up."""
    ku = k * U32
    if ku >= 0.5:
        raise ValueError(f"k: expected k*u32 < 1/2, found k={k}")
    return ku / (1.0 - ku) * (1 + 4 * U64)


class F32Matrix:
    """A float64 matrix (r, c), or a stack (S, r, c), prepared for
    :meth:`F32Value.matvec`: its float32 transpose ``AT32`` (c, r) or (S, c, r),
    inner dimension ``k`` = c and ``rowsum``, an upper bound on
    :math:`\\max_i \\sum_j |A_{ij}|` (over the whole stack)."""

    def __init__(self, A):
        A = np.asarray(A, dtype=np.float64)
        self.AT32 = np.ascontiguousarray(np.swapaxes(A, -1, -2).astype(np.float32))
        self.k = A.shape[-1]
        self.rowsum = float(up(np.abs(A).sum(axis=-1), self.k).max()) if A.size else 0.0


class F32Value:
    r"""Float32 evaluation of a *linear* expression, with its rounding depth.

    The counterpart of :class:`AbsValue`: running a linear map
    :math:`v \mapsto Lv` written with ``+ - *`` and matrix products (a cell's
    tangent step, whose coefficient vectors are float64 arrays computed from
    float64 intermediates) on an ``F32Value`` evaluates it in float32: every
    float64 coefficient vector is rounded to float32 once, then multiplied;
    every matrix product is one 2-D float32 GEMM (:class:`F32Matrix`).

    Error bound. Let :math:`L` be the exact map with the float64 coefficients
    and matrices (the map :class:`AbsValue` majorises, :math:`|L|_{maj}`).
    IEEE float32 with gradual underflow gives :math:`fl(x\circ y) =
    (x\circ y)(1+\delta) + \eta`, :math:`|\delta|\le u = 2^{-24}`,
    :math:`|\eta|\le 2^{-150}` (:math:`\eta = 0` for sums), and the same for
    the conversion of a float64 number. Expanding the evaluation path by path,
    the output is :math:`\sum_{\text{paths}} (\text{product of coefficients})
    \,v_j\prod(1+\delta) + \sum_\nu \eta_\nu\,(\text{downstream factors})`.
    ``depth`` counts the factors :math:`(1+\delta)` on the longest path (a
    coefficient product adds 2: conversion and product; a matrix product of
    inner dimension k adds k + 1: conversion of the matrix and the dot product
    in any order, FMA or not; a sum adds 1 to the deeper operand), so the first
    sum differs from :math:`Lv` by at most :math:`\gamma_D\,|L|_{maj}|v|`
    (Higham, Lemma 3.1/3.3), :math:`\gamma_D` = :func:`gamma32`. ``alpha``
    bounds the second sum entrywise, propagated with the scalar bounds
    ``mu`` :math:`\ge \max|\hat v|` of the computed intermediates (a product
    by :math:`c` multiplies the absolute error by at most :math:`|fl(c)|(1+u)`
    and adds :math:`2^{-150}(\mu + 1)`; a matrix product multiplies it by at
    most the row-sum norm of the float32 matrix times :math:`1+\gamma_{k+1}`
    and adds :math:`2^{-150}k(\mu+1)`; a sum adds the two). Hence

    .. math::
        |\widehat{Lv} - Lv| \le \gamma_D\,|L|_{maj}|v| + \alpha
        \quad\text{(entrywise)}.

    ``mu`` of the input is given by the caller (:math:`\ge \max|v|`). An
    overflow gives Inf/NaN, which the caller must treat as "no bound".
    """

    __array_ufunc__ = None

    def __init__(self, val, depth=0, alpha=0.0, mu=1.0):
        self.val = val
        self.depth = int(depth)
        self.alpha = float(alpha)
        self.mu = float(mu)

    @staticmethod
    def _is_zero(o):
        return isinstance(o, (int, float)) and o == 0

    def __add__(self, o):
        if self._is_zero(o):
            return self
        if isinstance(o, F32Value):
            g = 1 + 4 * U32
            return F32Value(self.val + o.val, max(self.depth, o.depth) + 1,
                            (self.alpha + o.alpha) * g, (self.mu + o.mu) * g)
        raise TypeError("F32Value: only linear expressions (no constant terms) are supported")

    __radd__ = __add__

    def __sub__(self, o):
        if self._is_zero(o):
            return self
        if isinstance(o, F32Value):
            g = 1 + 4 * U32
            return F32Value(self.val - o.val, max(self.depth, o.depth) + 1,
                            (self.alpha + o.alpha) * g, (self.mu + o.mu) * g)
        raise TypeError("F32Value: only linear expressions (no constant terms) are supported")

    def __rsub__(self, o):
        return (-self).__add__(o)

    def __neg__(self):
        return F32Value(-self.val, self.depth, self.alpha, self.mu)

    def __mul__(self, o):
        if isinstance(o, F32Value):
            raise TypeError("F32Value: the expression must be linear in the argument")
        return self.scaled(o)

    __rmul__ = __mul__

    def scaled(self, c, *, rounded: int = 0, out=None):
        r"""``c * self`` for a float64 coefficient array ``c`` (broadcasting against
        the value), written into ``out`` when given (``out`` may be ``self.val``: in
        place, after which ``self`` must not be used again).

        ``rounded``: the number of float64 roundings that produced ``c`` from the
        exact product of the coefficients it stands for (``c = fl(a * b)`` of two
        coefficient vectors of the map: 1), so that one pass replaces the
        products by ``a`` and by ``b``. Each such rounding is one more factor
        :math:`(1+\delta)`, :math:`|\delta| \le 2^{-53} < u`, on the paths
        through ``c`` (``depth`` + 1) and one more absolute underflow error
        :math:`\le 2^{-1075} < 2^{-150}` (``alpha`` and ``mu`` + :math:`2^{-150}(\mu+1)`);
        the exact map is unchanged (:math:`|ab| = |a||b|`, so the majorant of
        :class:`AbsValue` is that of the two products). ``rounded=0`` is ``c * self``.
        """
        c = np.asarray(c)
        cmax = float(np.max(np.abs(c))) if c.size else 0.0
        g = (cmax * (1 + 4 * U32) + 2 * ETA32) * (1 + 4 * U32)
        k = 2 + int(rounded)
        c32 = c.astype(np.float32)
        val = self.val * c32 if out is None else np.multiply(self.val, c32, out=out)
        return F32Value(val, self.depth + k, g * self.alpha + k * ETA32 * (self.mu + 1),
                        g * self.mu + k * ETA32)

    def plus(self, o, *, out=None):
        """``self + o`` (same bookkeeping as ``+``), written into ``out`` when given
        (``out`` may be either operand's value: in place)."""
        if not isinstance(o, F32Value):
            raise TypeError("F32Value: only linear expressions (no constant terms) are supported")
        g = 1 + 4 * U32
        val = self.val + o.val if out is None else np.add(self.val, o.val, out=out)
        return F32Value(val, max(self.depth, o.depth) + 1, (self.alpha + o.alpha) * g,
                        (self.mu + o.mu) * g)

    def matvec(self, M, out=None):
        """:math:`A v` for a batch of rows, ``v @ A.T`` as one 2-D float32 GEMM; ``M``
        an :class:`F32Matrix` of A. For a stack of S matrices, ``v`` is (S, ...,
        c) and matrix s acts on ``v[s]`` (one GEMM per matrix). ``out``: a
        C-contiguous float32 array of the result's shape to write into (not
        ``self.val``)."""
        v = self.val
        AT = M.AT32
        lead = v.shape[:1] if AT.ndim == 3 else ()
        v2 = v.reshape(lead + (-1, v.shape[-1]))
        shape = v.shape[:-1] + (AT.shape[-1],)
        if out is None:
            out = (v2 @ AT).reshape(shape)
        else:
            if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
                raise ValueError(f"out: expected a C-contiguous float32 array of shape {shape}, "
                                 f"found {out.dtype} {out.shape}")
            np.matmul(v2, AT, out=out.reshape(v2.shape[:-1] + (AT.shape[-1],)))
        g = (M.rowsum * (1 + 4 * U32) + 2 * M.k * ETA32) * (1 + 2 * gamma32(M.k + 2))
        return F32Value(out, self.depth + M.k + 1,
                        g * self.alpha + 2 * M.k * ETA32 * (self.mu + 1),
                        g * self.mu + 2 * M.k * ETA32)

    def gamma(self) -> float:
        """:math:`\\gamma_D` of the expression (float32)."""
        return gamma32(max(self.depth, 1))

    # pieces of a state: exact (entrywise bounds are kept by slicing and concatenation)
    @property
    def shape(self):
        return self.val.shape

    def __getitem__(self, key):
        return F32Value(self.val[key], self.depth, self.alpha, self.mu)

    @staticmethod
    def concat(parts):
        """The concatenation along the last axis (leading axes broadcast)."""
        _linear_parts(parts, F32Value)
        return F32Value(_cat([p.val for p in parts]), max(p.depth for p in parts),
                        max(p.alpha for p in parts), max(p.mu for p in parts))


class F32Namespace:
    """The namespace of :class:`F32Value` linear maps: ``matvec(A, v)`` one float32
    GEMM (``A`` an :class:`F32Matrix`, or a float64 matrix converted once and
    cached; a stacked network multiplies a layer's output tangent by the next
    layer's input matrix), ``split``/``concat`` for a state made of pieces."""

    split = staticmethod(_split)
    concat = staticmethod(F32Value.concat)

    def __init__(self):
        self._cache = {}

    def matvec(self, A, v):
        if not isinstance(A, F32Matrix):
            hit = self._cache.get(id(A))
            if hit is None or hit[0] is not A:
                hit = self._cache[id(A)] = (A, F32Matrix(A))
            A = hit[1]
        return v.matvec(A)

    @staticmethod
    def asarray(A):
        return A
