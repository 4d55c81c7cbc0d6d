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

__all__ = ["U64", "gamma", "up", "spectral_norm_upper", "frobenius_upper",
           "row_norms_upper", "one_inf_upper"]

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
