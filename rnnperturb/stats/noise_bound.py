r"""A confidence bound on the deviation caused by frozen Gaussian weight noise.

:func:`noise_bound` returns :math:`P_t` with

.. math:: \Pr\bigl(\|h'_t - h_t\|_2 \le P_t \text{ for every } t \le T\bigr) \ge
          \text{confidence}

for each sequence, when every entry of every recurrent matrix receives
independent :math:`\Delta W_{k,ij}\sim N(0, s^2)`, drawn once (frozen) for the
sequence; :math:`h, h'` are the exact trajectories.

Probability steps (all rigorous; :math:`\delta = 1 - \text{confidence}`,
:math:`\delta_1 = \delta/10`, :math:`\delta_2 = 9\delta/10`, :math:`g = \mathrm{vec}\,\Delta W/s`
standard normal in :math:`\mathbb R^N`, :math:`N = K n^2`):

1. *Radius.* :math:`g\mapsto\|g\|_2` is 1-Lipschitz and
   :math:`\mathbb E\|g\| \le (\mathbb E\|g\|^2)^{1/2} = \sqrt N`, so by Gaussian
   concentration (Tsirelson–Ibragimov–Sudakov)
   :math:`\Pr(\|g\| > \sqrt N + \sqrt{2\log(1/\delta_1)}) \le \delta_1`. On the
   complement, :math:`\|\Delta W_k\|_F \le R = s(\sqrt N + \sqrt{2\log(1/\delta_1)})`
   for every k: :math:`\Delta W` is in the :class:`rnnperturb.perturb.sets.Ball`
   of radius R, where :func:`rnnperturb.bounds.set_bound.set_trace` bounds the
   remainder :math:`\zeta_t`, the rounding :math:`\zeta^0_t` and the whole
   deviation (per coordinate and in norm), for every member.
2. *Linear part.* :math:`\ell_t = s\tilde M_t g` (the computed carried matrices
   of the set bound, an exactly linear map) is Gaussian; :math:`g\mapsto\|\tilde M_tg\|`
   is :math:`\|\tilde M_t\|_2`-Lipschitz with mean at most :math:`\|\tilde M_t\|_F`, so
   :math:`\Pr(\|\tilde M_tg\| > \|\tilde M_t\|_F + \|\tilde M_t\|_2\sqrt{2\log(T/\delta_2)}) \le \delta_2/T`;
   a union bound over the T steps gives probability at most :math:`\delta_2` that
   any step fails. Both norms are verified upper bounds. With the same tail
   :math:`e^{-x}`, :math:`x = \log(T/\delta_2)`, Laurent and Massart (2000, Lemma 1)
   give for :math:`\|\tilde M_tg\|^2 = \sum_i\lambda_ig_i^2` (:math:`\lambda_i` the
   eigenvalues of :math:`\tilde M_t^T\tilde M_t`):
   :math:`\Pr(\|\tilde M_tg\|^2 \ge \sum\lambda_i + 2(\sum\lambda_i^2)^{1/2}\sqrt x +
   2\lambda_{\max}x)\le e^{-x}`, with :math:`\sum\lambda_i = \|\tilde M_t\|_F^2`,
   :math:`(\sum\lambda_i^2)^{1/2} = \|\tilde M_t\tilde M_t^T\|_F` (verified bound from
   the Gram matrix) and :math:`\lambda_{\max} = \|\tilde M_t\|_2^2`. Since
   :math:`\sum\lambda_i^2\le\lambda_{\max}\sum\lambda_i` this is never worse than the
   square of the first form, and much better when the spectrum is spread; the
   smaller of the two is used (each event has probability at most :math:`\delta_2/T`).
3. On the intersection (probability :math:`\ge 1-\delta_1-\delta_2`),
   :math:`\|h'_t-h_t\| \le \min(sq_t, \Lambda_t(R)) + \|\zeta_t\| + \|\zeta^0_t\|`
   and :math:`\le` the set bound of the ball R; :math:`P_t` is the smaller.

No step uses an approximation; the linear regime is where :math:`sq_t` wins
(it is :math:`O(s\|\tilde M_t\|_F)`, within a small factor of the true quantile),
and the remainder is that of the ball R, so the bound degrades (to the cap)
once :math:`R` leaves the linear regime.
"""
from __future__ import annotations

import numpy as np

from rnnperturb._checks import as_inputs, check_positive
from rnnperturb.bounds.set_bound import set_trace
from rnnperturb.perturb.sets import Ball
from rnnperturb.verified.linalg import row_norms_upper, up


def _un(x):
    return np.nextafter(x, np.inf)

__all__ = ["noise_bound"]


def noise_bound(cell, X, *, std: float, confidence: float = 0.99, h0=None, window: int = 32,
                one_sided: bool = False, chords: bool = True):
    r"""Deviation bound that holds with probability ``confidence`` at every step.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    std : float, >= 0
        :math:`s`, the standard deviation of every entry of every recurrent matrix.
    confidence : float in (0, 1)
    h0 : array_like, optional
    window, one_sided, chords
        As in :func:`rnnperturb.bounds.set_bound.set_bound`.

    Returns
    -------
    ndarray, shape (T, B) or (T,)
        For each sequence, :math:`\Pr(\|h'_t-h_t\|\le P_t\ \forall t) \ge` confidence.
    """
    s = check_positive("std", std, allow_zero=True)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not (
            0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence: expected a number in (0, 1), found {confidence!r}")
    X3, single = as_inputs(X, cell.m, cell.dtype)
    T = X3.shape[0]
    delta = 1.0 - float(confidence)
    d1, d2 = 0.1 * delta, 0.9 * delta
    N = len(cell.recurrent_names) * cell.n * cell.n
    R = up(s * (np.sqrt(N) * (1 + 1e-15) + np.sqrt(2.0 * np.log(1.0 / d1)) * (1 + 1e-15)), 3)
    R = float(R)
    tr = set_trace(cell, Ball(radius=R), X3, h0, window=window, one_sided=one_sided,
                   chords=chords)
    x = np.log(T / d2) * (1 + 1e-15)
    z = np.sqrt(2.0 * x) * (1 + 1e-15)
    q = up(s * up(tr.lin_fro + tr.lin_op * z, 2), 1)
    if tr.lin_gram is not None:                 # Laurent-Massart, the same tail e^-x
        q2 = up(tr.lin_fro * tr.lin_fro + 2.0 * tr.lin_gram * (np.sqrt(x) * (1 + 1e-15))
                + 2.0 * x * tr.lin_op * tr.lin_op, 6)
        q = np.minimum(q, up(s * _un(np.sqrt(q2)), 1))
    lin = np.minimum(q, tr.lin_norm)
    rem = up(row_norms_upper(tr.rem_coord) + row_norms_upper(tr.rem0_coord), 2)
    if tr.rem_norm is not None:
        rem = np.minimum(rem, tr.rem_norm)
    P = np.minimum(up(lin + rem, 1), tr.bound)
    P = np.where(np.isfinite(P), P, tr.cap[None, :])
    return P[:, 0] if single else P
