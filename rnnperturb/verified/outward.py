r"""Outward-rounded scalar and matrix kernels for bounds computed in float64.

Every function returns a number that bounds an exact quantity from the stated
side, with the rounding of its own evaluation included. They are the toolkit
of the input-independent global bound (the driver
:mod:`rnnperturb.bounds.global_bound` and the cells' "global bound" sections,
:meth:`rnnperturb.cells.protocol.Cell.global_recursion`), but nothing here
knows about cells or bounds: the data flow is cells -> verified and
bounds -> (cells, verified).

Directed rounding
    :func:`dn` (the lower counterpart of :func:`rnnperturb.verified.linalg.up`),
    :func:`mv_up` (:math:`|A|v`), :func:`vec_norm_up` (:math:`\|v\|_2`),
    :func:`norm_up` (:math:`\|M\|_2` of a *computed* matrix).
Activations
    :func:`tanh_up`, :func:`tanh_dn`, :func:`sig_up`, :func:`sig_dn` (values)
    and :func:`tanh_slope_up`, :func:`sig_slope_up` (the largest slope on
    :math:`\{|a| \ge lo\}`).
Norms over boxes
    :func:`forcing_sup`, an upper bound of the :math:`\infty \to 2` norm
    :math:`\max_{|h| \le u}\|Ah\|_2`.
Spectral radius and scalings
    :func:`perron` (an approximate Perron vector, heuristic),
    :func:`cw_rate` (a verified Collatz–Wielandt bound),
    :func:`optimise_scaling` (a heuristic diagonal scaling; its rate must be
    recomputed as a verified bound).
Fixed points
    :func:`descend_fixed_point`, the downward iteration that turns a monotone
    step bound into a bound valid at every step.

Relation to the other verified modules (kept apart on purpose, since the
numbers differ in the last bits and the global bound's results are pinned):

* :func:`vec_norm_up` is :func:`rnnperturb.verified.linalg.vec_norm_upper` with
  the sum of squares taken as a BLAS dot product (``v @ v``) instead of
  ``np.sum(v * v)`` (pairwise summation): both are sound, their roundings differ.
* :func:`norm_up` is :func:`~rnnperturb.verified.linalg.spectral_norm_upper`
  plus the effect :math:`k u \|M\|_F` of an entrywise relative error in the
  computed matrix: a different quantity, built on it.
* :func:`tanh_slope_up` evaluates :math:`1 - \tanh^2` from a lower bound of
  :math:`\tanh`; :func:`rnnperturb.verified.activation.slope_max` evaluates
  :math:`\cosh^{-2}` with the margin :func:`~rnnperturb.verified.activation.act_error`.
  Both are upper bounds; they are not the same float.
* The sigmoid kernels reuse :mod:`rnnperturb.verified.activation`: :func:`sig_up` and
  :func:`sig_dn` are its stable sigmoid with the margin ``act_error("sigmoid")``, and
  :func:`sig_slope_up` is ``slope_max("sigmoid", lo, lo)``. (Their former forms,
  :math:`\tfrac12(1+\tanh(a/2))` with a relative margin of ``16u``, were not bounds
  below :math:`a \approx -3.8`, where :math:`1 + \tanh` cancels, nor the slope
  :math:`s(1-s)` above :math:`lo \approx 4.8`.)

Accuracy assumption: ``np.tanh`` is within a relative ``8u``
(:math:`u = 2^{-53}`; about 4 ulp) of the exact value (the tanh kernels), and
``np.exp`` within :data:`~rnnperturb.verified.activation.LIBM_ULPS` ulp (the
sigmoid kernels, through ``act_error``); ``tests/test_outward.py`` checks every
kernel against mpmath.
"""
from __future__ import annotations

import numpy as np

from rnnperturb.verified.activation import act_error, activation, slope_max
from rnnperturb.verified.linalg import U64, frobenius_upper, spectral_norm_upper, up

__all__ = ["dn", "mv_up", "vec_norm_up", "norm_up", "tanh_up", "tanh_dn", "sig_up", "sig_dn",
           "tanh_slope_up", "sig_slope_up", "forcing_sup", "perron", "cw_rate",
           "optimise_scaling", "descend_fixed_point", "FIXED_POINT_ITERS"]

_TINY = 1e-300
_ACT_TINY = 1e-120            # the absolute part of act_error's contract
_SIGMOID = activation("sigmoid")[0]
#: Most iterations of the downward fixed-point iterations
#: (:func:`descend_fixed_point`, the state boxes of the global bound).
FIXED_POINT_ITERS = 400


# ------------------------------------------------------------ directed rounding
def dn(x, k=1):
    r"""Lower bound of an exact non-negative quantity computed in ``k`` operations.

    The lower counterpart of :func:`rnnperturb.verified.linalg.up`:
    :math:`\max(x(1 - 2(k+2)u) - 10^{-300}, 0)`.

    Parameters
    ----------
    x : array_like, any shape
        The computed value (its exact counterpart is :math:`\ge 0`).
    k : int
        Number of roundings in its evaluation.

    Returns
    -------
    ndarray, the shape of ``x``
    """
    x = np.asarray(x, dtype=np.float64)
    return np.maximum(x * (1.0 - 2 * (k + 2) * U64) - _TINY, 0.0)


def mv_up(A_abs, v):
    r"""Upper bound of :math:`|A|v` for non-negative ``A_abs`` (r, c) and ``v`` (c,) or (c, k).

    Returns
    -------
    ndarray, shape (r,) or (r, k)
    """
    return up(A_abs @ v, A_abs.shape[-1])


def vec_norm_up(v) -> float:
    r"""Upper bound of :math:`\|v\|_2` for a non-negative vector ``v`` (n,).

    The sum of squares is a dot product (``v @ v``); see the module docstring
    for how this differs from :func:`rnnperturb.verified.linalg.vec_norm_upper`.
    """
    return float(np.sqrt(up(v @ v, len(v))) * (1 + 2 * U64))


def norm_up(M, k: int = 8) -> float:
    r"""Verified upper bound on :math:`\|M_{exact}\|_2` for a computed matrix ``M``
    (r, c) whose entries carry a relative rounding error of at most ``k/2`` units:
    :math:`\|M\|_2 + k u \|M\|_F` (:math:`\|E\|_2 \le \|E\|_F \le \tfrac k2 \cdot 2u\|M\|_F`)."""
    return float(spectral_norm_upper(M) + k * U64 * frobenius_upper(M))


# ------------------------------------------------------------------ activations
def tanh_up(a):
    r"""Upper bound of :math:`\tanh(a)` for :math:`a \ge 0` (elementwise), at most 1.

    Only for non-negative ``a`` (the relative margin points the wrong way below 0)."""
    return np.minimum(np.tanh(a) * (1 + 8 * U64) + _TINY, 1.0)


def tanh_dn(a):
    r"""Lower bound of :math:`\tanh(a)` for :math:`a \ge 0` (elementwise), at least 0."""
    return np.maximum(np.tanh(a) * (1 - 8 * U64) - _TINY, 0.0)


def _sig_margin():
    """Relative margin of the sigmoid value bounds: the error of the computed stable
    sigmoid (:func:`rnnperturb.verified.activation.act_error`) plus ``4u`` for the
    rounding of the product that applies it."""
    return act_error("sigmoid") + 4 * U64


def sig_up(a):
    r"""Upper bound of the logistic sigmoid :math:`\sigma(a)` (elementwise), at most 1.

    From the stable sigmoid of :func:`rnnperturb.verified.activation.activation`
    (relatively accurate on the whole line, also far below 0, where
    :math:`\tfrac12(1 + \tanh(a/2))` cancels) and its error bound ``act_error``."""
    s = _SIGMOID(np.asarray(a, dtype=np.float64))
    return np.minimum(s * (1 + _sig_margin()) + _ACT_TINY, 1.0)


def sig_dn(a):
    r"""Lower bound of the logistic sigmoid :math:`\sigma(a)` (elementwise), at least 0
    (see :func:`sig_up`)."""
    s = _SIGMOID(np.asarray(a, dtype=np.float64))
    return np.maximum(s * (1 - _sig_margin()) - _ACT_TINY, 0.0)


def tanh_slope_up(lo):
    r"""Upper bound of :math:`\max_{|a| \ge lo}\tanh'(a) = \tanh'(\max(lo, 0))`
    (elementwise), at most 1."""
    th = tanh_dn(np.maximum(lo, 0.0))
    return np.minimum(up(1.0 - dn(th * th), 2), 1.0)


def sig_slope_up(lo):
    r"""Upper bound of :math:`\max_{|a| \ge lo}\sigma'(a) = \sigma'(\max(lo, 0))`
    (elementwise), at most 1/4: :func:`rnnperturb.verified.activation.slope_max` on the
    one-point interval :math:`[\max(lo, 0), \max(lo, 0)]` (:math:`\sigma'` is even and
    decreasing in :math:`|a|`)."""
    x = np.maximum(np.asarray(lo, dtype=np.float64), 0.0)
    return slope_max("sigmoid", x, x)


# --------------------------------------------------------------- norms over boxes
def forcing_sup(A, u) -> float:
    r"""Upper bound of :math:`\max_{|h| \le u}\|A h\|_2` (one box), by several methods.

    The least of :math:`\sum_j u_j\|A_{:,j}\|_2`, :math:`\|A\|_2\|u\|_2` and the
    weighted bounds :math:`\|A\,\mathrm{diag}(u)\,\Omega^{-1/2}\|_2(\sum_j\omega_j)^{1/2}`
    for :math:`\omega` = ones and the column norms (the dual of the SDP relaxation
    of this NP-hard :math:`\infty \to 2` norm).

    Parameters
    ----------
    A : ndarray, shape (r, n)
        A computed matrix whose entries carry a relative rounding error of at most
        ``4u``; that error is added as ``8u`` times the column bound.
    u : ndarray, shape (n,)
        The box, :math:`u \ge 0`.

    Returns
    -------
    float
    """
    if not np.any(u) or not np.any(A):
        return 0.0
    AD = A * u[None, :]
    col = np.sqrt(up(np.sum(AD * AD, axis=0), A.shape[0])) * (1 + 4 * U64)
    c1 = float(up(np.sum(col), A.shape[1]))
    best = min(c1, float(up(norm_up(A) * np.sqrt(up(np.sum(u * u), len(u))), 2)))
    for w in (np.ones_like(u), col):
        if np.min(w) <= 1e-150:
            continue
        nrm = norm_up(AD / np.sqrt(w)[None, :], 16)
        best = min(best, float(up(nrm * np.sqrt(up(np.sum(w), len(w))), 2)))
    return float(up(best + 8 * U64 * c1, 1))


# --------------------------------------------------- spectral radius and scalings
def perron(M_abs, iters=200):
    r"""Positive approximate Perron vector of a non-negative matrix (heuristic).

    Power iteration on :math:`M + 10^{-9}\max(M)\,\mathbf 1\mathbf 1^T/n` (which is
    positive, hence primitive), floored at :math:`10^{-6}\max(v)`.

    Parameters
    ----------
    M_abs : ndarray, shape (n, n), non-negative

    Returns
    -------
    v : ndarray, shape (n,), ``min(v) = 1``
    """
    n = M_abs.shape[0]
    v = np.ones(n)
    A = M_abs + 1e-9 * (np.max(M_abs) + 1e-300) * np.ones((n, n)) / n
    for _ in range(iters):
        w = A @ v
        nw = np.max(w)
        if not nw > 0:
            return np.ones(n)
        v = w / nw
    v = np.maximum(v, 1e-6 * np.max(v))
    return v / np.min(v)


def cw_rate(M_abs) -> float:
    r"""Verified upper bound on the spectral radius of ``M_abs`` (n, n) :math:`\ge 0`.

    The least of the largest row sum and the Collatz–Wielandt bound
    :math:`\rho(M) \le \max_i (Ms)_i / s_i` at the approximate Perron vector
    :math:`s` (:func:`perron`); valid for every positive :math:`s`."""
    best = float(np.max(up(M_abs.sum(axis=1), M_abs.shape[1])))
    s = perron(M_abs)
    val = float(np.max(mv_up(M_abs, s) / dn(s))) * (1 + 4 * U64)
    return min(best, val)


def optimise_scaling(M, s0, maxiter=30, log_range=4.0):
    r"""A positive ``s`` (n,) with ``min(s) = 1`` and small
    :math:`\|\mathrm{diag}(s) M \mathrm{diag}(s)^{-1}\|_2` for ``M`` (n, n).

    Local and heuristic (L-BFGS-B in :math:`\log s` from ``s0`` (n,), within
    :math:`\pm` ``log_range``): the rate it gives must be recomputed as a
    verified bound. The gradient of the largest singular value :math:`\sigma`
    (pair :math:`u, v`) in :math:`\log s_i` is :math:`\sigma(u_i^2 - v_i^2)`."""
    from scipy.optimize import minimize

    def f(x):
        s = np.exp(x)
        B = (s[:, None] * M) / s[None, :]
        w, Q = np.linalg.eigh(B.T @ B)
        v = Q[:, -1]
        sig = float(np.sqrt(max(w[-1], 0.0)))
        if sig == 0:
            return 0.0, np.zeros_like(x)
        u = B @ v / sig
        return sig, sig * (u * u - v * v)

    x0 = np.clip(np.log(s0), -log_range, log_range)
    try:
        res = minimize(f, x0, jac=True, method="L-BFGS-B",
                       bounds=[(-log_range, log_range)] * len(x0), options={"maxiter": maxiter})
        x = res.x if np.all(np.isfinite(res.x)) else x0
    except (np.linalg.LinAlgError, ValueError):  # pragma: no cover
        x = x0
    s = np.exp(x - np.min(x))
    return s


# ------------------------------------------------------------------ fixed points
def descend_fixed_point(step, start):
    r"""Downward iteration :math:`V \leftarrow \min(V, \text{start}, \text{step}(V))` from
    ``start`` (n,) until it stalls (at most :data:`FIXED_POINT_ITERS` iterations).

    If ``start`` bounds :math:`|e_t|` for every t and ``step`` is a monotone map with
    :math:`|e_t| \le \text{step}(|e_{t-1}|)`, every iterate bounds :math:`|e_t|` for
    every t (induction over t from :math:`e_0 = 0 \le` every iterate).

    Returns
    -------
    V : ndarray, shape (n,), :math:`\le` ``start``
    """
    V = np.array(start, dtype=np.float64)
    for _ in range(FIXED_POINT_ITERS):
        nV = np.minimum(V, np.minimum(start, step(V)))
        done = np.all(nV >= V * (1 - 1e-13))
        V = nV
        if done:
            break
    return V
