r"""Global, input-independent bound on the hidden-state deviation.

For a nominal cell and a perturbed copy (recurrent matrices
:math:`W' = W + \Delta W`, all else equal), :func:`global_bound` returns, for
every step :math:`t \le T`, a number :math:`G_t` with

.. math::
    \|h'_t - h_t\|_2 \le G_t \quad\text{for every input sequence with }
    \|x_s\|_2 \le r\ (s \le t)\text{ and every } h_0 \text{ with } \|h_0\|_2 \le \rho_0 ,

where ``r = input_norm`` and :math:`\rho_0` = ``h0_norm`` (0 by default: :math:`h_0 = 0`).
Both cells run from the same :math:`h_0`, so :math:`e_0 = 0`.

**Simple contraction bound (``DESIGN.md`` §2(c)), Elman.** With
:math:`|\tanh'| \le 1` and :math:`\|h\|_2 \le \sqrt n`,

.. math::
    \|e_t\| \le \|W'\|_2 \|e_{t-1}\| + \|\Delta W\|_2 \sqrt n ,
    \qquad \|e_1\| \le \|\Delta W\|_2 \rho_0 ,

capped at :math:`2\sqrt n`. For the MGRU (:math:`f, c, h` in the usual roles,
:math:`|\sigma'| \le 1/4`, :math:`|h|, |c| \le 1`, which needs
:math:`\rho_0 \le 1`) the same chain of triangle inequalities on
:math:`e_t = (1-f')\odot e_{t-1} + f'\odot(c'-c) + (f'-f)\odot(c-h_{t-1})` gives

.. math::
    \|e_t\| \le \Big(1 + \|W_h'\| + \tfrac{2+\|W_h'\|}{4}\|W_f'\|\Big)\|e_{t-1}\|
              + \sqrt n\Big(\|\Delta W_h\| + \tfrac{2+\|W_h'\|}{4}\|\Delta W_f\|\Big),

whose factor is always above 1.

**Refinements** (each one a valid bound on its own; the result is their
minimum, so it is never above the simple bound):

1. *State box.* :math:`|h_{t,i}| \le u_{t,i}` with
   :math:`u_t = \tanh(|b| + |W| u_{t-1} + r\,\|U_{i,:}\|_2)` (Elman; the
   MGRU box takes the largest convex combination of :math:`u_{t-1}` and the
   candidate box over the gate range). Iterated from :math:`u_0 = \rho_0` for the
   time-exact box, and downward from 1 for a box valid at every step
   (``hmax``). The box shrinks the forcing and caps
   :math:`|e_{t,i}| \le u_{t,i} + u'_{t,i}`.
2. *Slopes.* A bound on :math:`|a|` from above bounds :math:`\tanh'(a)` from
   *below*, so it does not shrink slopes. Slopes shrink only where the bias
   dominates: if :math:`|b_i| > R_i` (the radius of the pre-activation range
   of both cells) then :math:`a_i` and :math:`a'_i` share a sign and the secant
   slope is at most :math:`g_i = \tanh'(|b_i| - R_i) < 1`; else :math:`g_i = 1`.
   Then :math:`|e_t| \le G|\delta_t|` elementwise, with
   :math:`\delta_t = W' e_{t-1} + \Delta W h_{t-1} = W e_{t-1} + \Delta W h'_{t-1}`.
3. *Forcing.* :math:`\max_{|h|\le u}\|A h\|_2` (an :math:`\infty\to 2` norm,
   NP-hard in general) is bounded by the least of
   :math:`\sum_j u_j\|A_{:,j}\|_2`, :math:`\|A\|_2\|u\|_2` and the weighted
   bound :math:`\|A\,\mathrm{diag}(u)\,\Omega^{-1/2}\|_2 (\sum_j\omega_j)^{1/2}`
   for positive weights :math:`\omega` (ones, column norms; the dual of the SDP
   relaxation). Elman, per step also :math:`\|A\tilde c_{t-1}\| + \|A\|_2\rho_{t-1}`
   around the input-free centre trajectory :math:`\tilde c_t = \tanh(W\tilde c_{t-1}+b)`,
   :math:`\|h_t - \tilde c_t\| \le \rho_t = \|W\|_2\rho_{t-1} + \|U\|_2 r`
   (tanh is 1-Lipschitz): the better one when :math:`\|U\|_2 r` is small.
4. *Diagonal scaling.* For any positive diagonal :math:`S` (normalised to
   :math:`\min_i s_i = 1`),
   :math:`\|S e_t\| \le \|S G W' S^{-1}\|_2 \|S e_{t-1}\| + \max\|S G\Delta W h\|`
   and :math:`\|e_t\| \le \|S e_t\|`; :math:`S = I`, the Perron vector of
   :math:`G|W'|` and (when one of these gives a factor below 1.25) a local
   minimiser of :math:`\|S G W' S^{-1}\|_2` with :math:`\operatorname{cond}(S) \le e^8` are tried.
5. *Elementwise recursion.* :math:`|e_t| \le \min(u_t+u'_t,\ G(|W'||e_{t-1}| + |\Delta W|u_{t-1}))`
   (and the same with the roles of the cells swapped). For the MGRU this is
   the main bound; there the gate term is a convex combination,
   :math:`(1-f')|e| + f'|c'-c| \le \max_{f'\in[f'_{lo}, f'_{hi}]}`, taken at an end.
6. *MGRU signed norm recursion.* From
   :math:`|e_t| \le (1-f'_{lo})|e_{t-1}| + (c_{max}+u)|f'-f| + f'_{hi}|c'-c|`,
   :math:`|f'-f| \le s_f|\delta f|`, :math:`|c'-c| \le s_c|\delta c|`,
   :math:`\delta f = W_f' e + \Delta W_f h`,
   :math:`\delta c = W_h'(f'\odot e) + W_h'((f'-f)\odot h) + \Delta W_h(f\odot h)`
   and :math:`\|X D\| \le \|X \operatorname{diag}(d)\|` for diagonal
   :math:`0 \le D \le \operatorname{diag}(d)`:

   .. math::
       \|e_t\| \le \bigl(\max(1-f'_{lo}) + \|P W_f'\| + \|Q W_h' F'_{hi}\|
       + \|Q W_h' \operatorname{diag}(u)\|\,\|S_f W_f'\|\bigr)\|e_{t-1}\| + \text{forcing},

   :math:`P = \operatorname{diag}((c_{max}+u)s_f)`, :math:`Q = \operatorname{diag}(f'_{hi}s_c)`.
   Below 1 only when every gate is bounded away from 0 (a gate that can
   close keeps the error: memory nets are vacuous for long horizons).

Every spectral norm is a verified upper bound
(:func:`rnnperturb.verified.linalg.spectral_norm_upper`) and every sum, ``tanh`` and
sigmoid is rounded outward.

**Rate and asymptote.** ``rate`` is the smallest verified geometric factor
among the methods (a spectral norm, or a Collatz–Wielandt bound on the spectral
radius of the elementwise recursion). When it is below 1, ``asymptote`` is a
bound valid for *every* :math:`t`. When it is :math:`\ge 1` the bound falls
back to the trivial cap (:math:`2\sqrt n` or the box cap
:math:`\|u + u'\|_2 \le 2\sqrt n`) for long horizons: ``vacuous`` is True, a
``RuntimeWarning`` is issued, and ``asymptote`` is the cap itself, never a
finite value below it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import check_compatible, check_int, check_positive
from rnnperturb.verified.linalg import U64, frobenius_upper, gamma, row_norms_upper, spectral_norm_upper, up

__all__ = ["GlobalBound", "global_bound", "simple_contraction_bound"]

_TINY = 1e-300
_KAPPA_ITERS = 400        # iterations of the downward box / asymptote iterations


# ----------------------------------------------------------------- rounding
def _dn(x, k=1):
    """A lower bound of a computed non-negative quantity (k operations)."""
    x = np.asarray(x, dtype=np.float64)
    return np.maximum(x * (1.0 - 2 * (k + 2) * U64) - _TINY, 0.0)


def _tanh_up(a):
    """Upper bound of tanh(a) for a >= 0, at most 1."""
    return np.minimum(np.tanh(a) * (1 + 8 * U64) + _TINY, 1.0)


def _tanh_dn(a):
    """Lower bound of tanh(a) for a >= 0."""
    return np.maximum(np.tanh(a) * (1 - 8 * U64) - _TINY, 0.0)


def _sig(a):
    a = np.asarray(a, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _sig_up(a):
    return np.minimum(_sig(a) * (1 + 16 * U64) + _TINY, 1.0)


def _sig_dn(a):
    return np.maximum(_sig(a) * (1 - 16 * U64) - _TINY, 0.0)


def _tanh_slope_up(lo):
    """Upper bound of max tanh' on {|a| >= lo}: tanh'(max(lo, 0))."""
    th = _tanh_dn(np.maximum(lo, 0.0))
    return np.minimum(up(1.0 - _dn(th * th), 2), 1.0)


def _sig_slope_up(lo):
    """Upper bound of max sigma' on {|a| >= lo}: sigma'(max(lo, 0)) <= 1/4."""
    s = _sig(np.maximum(lo, 0.0))
    return np.minimum(up(s * (1.0 - s), 2) * (1 + 64 * U64), 0.25)


def _norm_up(M, k: int = 8):
    r"""Verified upper bound on :math:`\|M_{exact}\|_2` for a computed matrix ``M``
    whose entries carry a relative rounding error of at most ``k/2`` units:
    :math:`\|M\|_2 + k u \|M\|_F`."""
    return float(spectral_norm_upper(M) + k * U64 * frobenius_upper(M))


def _mv(A_abs, v):
    """Upper bound of |A| v for non-negative A_abs and v."""
    return up(A_abs @ v, A_abs.shape[-1])


# ----------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class GlobalBound:
    r"""Result of :func:`global_bound` with ``full_output=True``.

    Attributes
    ----------
    bound : ndarray, shape (T,)
        Upper bound on :math:`\|h'_t - h_t\|_2`, ``bound[t-1]`` for step t,
        valid for every admissible input sequence.
    vacuous : bool
        True when no geometric factor is below 1 (or the uniform bound is not
        below the cap): for long horizons the bound is only the trivial cap.
    rate : float
        Smallest verified geometric factor of the refined recursions.
    asymptote : float
        A bound valid at every step t (any horizon). Equal to ``cap`` when
        ``vacuous``; never a finite value below the cap in that case.
    simple : ndarray, shape (T,)
        The simple contraction bound of ``DESIGN.md`` §2(c) (capped at
        :math:`2\sqrt n`).
    simple_rate : float
        Its geometric factor (:math:`\|W'\|_2` for the Elman RNN).
    cap : float
        The trivial cap :math:`\min(2\sqrt n, \|u+u'\|_2)` from the state boxes
        valid at every step.
    hmax : ndarray, shape (n,)
        Box :math:`|h_{t,i}| \le` ``hmax[i]`` of the nominal cell, every t.
    slope : ndarray, shape (n,)
        Upper bound on the slope of the output nonlinearity (tanh for the
        Elman RNN and the MGRU candidate) valid at every step; below 1 only
        where the bias dominates.
    scaling : ndarray, shape (n,)
        The diagonal scaling :math:`s` (``min(s) = 1``) of the best
        norm recursion (ones for the MGRU).
    capped : ndarray of bool, shape (T,)
        Steps where ``bound`` equals the trivial cap of that step,
        :math:`\min(2\sqrt n, \|u_t + u'_t\|_2)` (the bound says nothing more
        than the state boxes there).
    """

    bound: np.ndarray
    vacuous: bool
    rate: float
    asymptote: float
    simple: np.ndarray
    simple_rate: float
    cap: float
    hmax: np.ndarray
    slope: np.ndarray
    scaling: np.ndarray
    capped: np.ndarray


def _freeze(a):
    a = np.array(a, dtype=np.float64) if not isinstance(a, np.ndarray) or a.dtype != bool else a
    a.setflags(write=False)
    return a


# ------------------------------------------------------------- common parts
def _setup(cell, other, horizon, input_norm, h0_norm):
    check_compatible(cell, other)
    T = check_int("horizon", horizon, low=1)
    r = check_positive("input_norm", input_norm, allow_zero=True)
    rho0 = check_positive("h0_norm", h0_norm, allow_zero=True)
    if cell.kind == "mgru" and rho0 > 1:
        raise ValueError(f"h0_norm: expected at most 1 for the MGRU (the bound uses |h| <= 1), "
                         f"found {h0_norm!r}")
    P = {k: np.asarray(v, dtype=np.float64) for k, v in cell.params.items()}
    Q = {k: np.asarray(v, dtype=np.float64) for k, v in other.params.items()}
    return T, r, rho0, P, Q


def _input_reach(U, r):
    """Upper bound of max_{|x|<=r} |U_i x| = r ||U_i||_2, per row."""
    return up(row_norms_upper(U) * r, 1)


def _simple(cell, P, Q, T, rho0):
    """The simple contraction bound (DESIGN §2(c)); returns (bound, rate, cap)."""
    n = cell.n
    sq = float(np.sqrt(n)) * (1 + 2 * U64)
    cap = 2.0 * sq
    if cell.kind == "elman":
        rate = spectral_norm_upper(Q["W"])
        dW = _norm_up(Q["W"] - P["W"])
        f_first, f_rest = float(up(dW * rho0)), float(up(dW * sq))
    else:
        nf, nh = spectral_norm_upper(Q["Wf"]), spectral_norm_upper(Q["Wh"])
        dWf = _norm_up(Q["Wf"] - P["Wf"])
        dWh = _norm_up(Q["Wh"] - P["Wh"])
        k = float(up((2.0 + nh) / 4.0, 2))
        rate = float(up(1.0 + nh + k * nf, 3))
        f_first = float(up(rho0 * (dWh + k * dWf), 3))
        f_rest = float(up(sq * (dWh + k * dWf), 3))
    out = np.empty(T)
    E = 0.0
    for t in range(T):
        E = float(up(rate * E + (f_first if t == 0 else f_rest), 2)) if (t or rho0) else 0.0
        out[t] = min(E, cap)
    asym = np.inf
    if rate < 1:        # E_t <= X for all t by induction, X = max forcing / (1 - rate)
        asym = min(cap, float(up(max(f_first, f_rest) / _dn(1.0 - rate, 1), 2)))
    return out, float(rate), cap, asym


def simple_contraction_bound(cell, other, *, horizon: int, input_norm: float = 1.0,
                             h0_norm: float = 0.0) -> np.ndarray:
    r"""The simple contraction bound of ``DESIGN.md`` §2(c), capped at :math:`2\sqrt n`.

    Elman: :math:`\|e_t\| \le \|W'\|_2\|e_{t-1}\| + \|\Delta W\|_2\sqrt n`
    (:math:`\|\Delta W\|_2\rho_0` at t = 1). The MGRU form is in the module
    docstring. It does not depend on ``input_norm`` (kept for a uniform call).

    Returns
    -------
    bound : ndarray, shape (T,)
    """
    T, _, rho0, P, Q = _setup(cell, other, horizon, input_norm, h0_norm)
    return _simple(cell, P, Q, T, rho0)[0]


# --------------------------------------------------------------------- Elman
def _elman_box_map(W_abs, b_abs, reach):
    def phi(v):
        return _tanh_up(up(b_abs + _mv(W_abs, v) + reach, 3))
    return phi


def _boxes(phi, n, T, rho0, start):
    """Time-exact boxes u[0..T] and a box valid at every step (downward iteration)."""
    v = np.full(n, max(start, rho0))
    for _ in range(_KAPPA_ITERS):
        nv = np.minimum(np.maximum(phi(v), rho0), v)
        if np.all(nv >= v * (1 - 1e-15)):
            v = nv
            break
        v = nv
    u = np.empty((T + 1, n))
    u[0] = rho0
    for t in range(1, T + 1):
        u[t] = np.minimum(phi(u[t - 1]), v)
    return u, v


def _centers(Wm, b, U, r, T, rho0, box):
    r"""Input-free centre trajectory and a radius around it (Elman).

    :math:`\tilde c_t = fl(\tanh(W\tilde c_{t-1} + b))`, :math:`\tilde c_0 = 0`, and
    :math:`\rho_t \ge \|h_t - \tilde c_t\|_2` for every input with
    :math:`\|x\| \le r`: tanh is 1-Lipschitz elementwise, so
    :math:`\rho_t = \|W\|_2\rho_{t-1} + \|U\|_2 r + \|\delta_t\|_2` with
    :math:`\delta_t` the rounding error of the step that computed
    :math:`\tilde c_t`; also :math:`\rho_t \le \|u_t + |\tilde c_t|\|_2`.

    Returns ``c`` (T+1, n) and ``rho`` (T+1,).
    """
    n = Wm.shape[0]
    nW, nU = _norm_up(Wm), _norm_up(U)
    Wa, ba = np.abs(Wm), np.abs(b)
    c = np.zeros((T + 1, n))
    rho = np.empty(T + 1)
    rho[0] = rho0
    for t in range(1, T + 1):
        c[t] = np.tanh(Wm @ c[t - 1] + b)
        delta = up(gamma(n + 2) * (Wa @ np.abs(c[t - 1]) + ba), n + 1) + 8 * U64 * np.abs(c[t])
        nd = float(np.sqrt(up(delta @ delta, n)) * (1 + 2 * U64))
        lip = float(up(nW * rho[t - 1] + nU * r + nd, 3))
        boxr = float(np.sqrt(up(np.sum((box[t] + np.abs(c[t])) ** 2), 2 * n)) * (1 + 4 * U64))
        rho[t] = min(lip, boxr)
    return c, rho


def _centre_forcing(w, dW, dWa, c, rho_c, nA):
    r"""Upper bound of :math:`\|\mathrm{diag}(w)\Delta W h\|_2` over
    :math:`\|h - c\|_2 \le \rho_c`, with :math:`nA \ge \|\mathrm{diag}(w)\Delta W\|_2`."""
    n = len(c)
    z = np.abs(w * (dW @ c)) + w * up(gamma(n + 3) * (dWa @ np.abs(c)), n + 1)
    return float(up(np.sqrt(up(z @ z, n)) * (1 + 4 * U64) + nA * rho_c, 2))


def _colnorm_weights(A_abs2, w):
    """Upper bounds of the column norms of diag(w) A: sqrt(sum_i w_i^2 A_ij^2)."""
    return np.sqrt(up((w * w) @ A_abs2, A_abs2.shape[0])) * (1 + 2 * U64)


def _forcing_sup(A, u):
    r"""Upper bound of :math:`\max_{|h| \le u}\|A h\|_2` (one box), by several methods.

    ``A`` is a computed matrix whose entries carry a relative rounding error of
    at most ``4u``; that error is added as ``8u`` times the column bound.
    """
    if not np.any(u) or not np.any(A):
        return 0.0
    AD = A * u[None, :]
    col = np.sqrt(up(np.sum(AD * AD, axis=0), A.shape[0])) * (1 + 4 * U64)
    c1 = float(up(np.sum(col), A.shape[1]))
    best = min(c1, float(up(_norm_up(A) * np.sqrt(up(np.sum(u * u), len(u))), 2)))
    for w in (np.ones_like(u), col):
        if np.min(w) <= 1e-150:
            continue
        nrm = _norm_up(AD / np.sqrt(w)[None, :], 16)
        best = min(best, float(up(nrm * np.sqrt(up(np.sum(w), len(w))), 2)))
    return float(up(best + 8 * U64 * c1, 1))


def _optimise_scaling(M, s0, maxiter=30, log_range=4.0):
    """A positive s (min 1) with small ||diag(s) M diag(1/s)||_2 (local, heuristic:
    the rate it gives is recomputed as a verified bound). The gradient of the
    largest singular value sigma (pair u, v) in log s_i is sigma (u_i^2 - v_i^2)."""
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


def _perron(M_abs, iters=200):
    """Positive approximate Perron vector of a non-negative matrix (min 1)."""
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


def _cw_rate(M_abs):
    """Verified upper bound on the spectral radius of M_abs >= 0 (Collatz–Wielandt)."""
    best = float(np.max(up(M_abs.sum(axis=1), M_abs.shape[1])))
    s = _perron(M_abs)
    val = float(np.max(_mv(M_abs, s) / _dn(s))) * (1 + 4 * U64)
    return min(best, val)


def _elman(cell, P, Q, T, r, rho0):
    n = cell.n
    W, Wp, U, b = P["W"], Q["W"], P["U"], P["b"]
    dW = Wp - W                       # computed: relative error <= u per entry
    Wa, Wpa, dWa = np.abs(W), np.abs(Wp), np.abs(dW) * (1 + 2 * U64)
    reach = _input_reach(U, r)
    babs = np.abs(b)
    u, hsup = _boxes(_elman_box_map(Wa, babs, reach), n, T, rho0, 1.0)
    up_, hsupp = _boxes(_elman_box_map(Wpa, babs, reach), n, T, rho0, 1.0)

    def slopes(v, vp):
        R = np.maximum(up(_mv(Wa, v) + reach, 2), up(_mv(Wpa, vp) + reach, 2))
        return _tanh_slope_up(_dn(babs - R, 2) * (babs > R))

    centres = [_centers(W, b, U, r, T, rho0, u), _centers(Wp, b, U, r, T, rho0, up_)]
    g_sup = slopes(hsup, hsupp)
    G = np.array([slopes(u[t - 1], up_[t - 1]) for t in range(1, T + 1)])   # (T, n)
    G = np.minimum(G, g_sup[None, :])
    ecap = np.minimum(up(u[1:] + up_[1:], 1), 2.0)                            # (T, n)
    ecap_sup = np.minimum(up(hsup + hsupp, 1), 2.0)
    sq = float(np.sqrt(n)) * (1 + 2 * U64)

    # ---- norm recursions with diagonal scalings (DESIGN §2(c))
    GWp = g_sup[:, None] * Wp
    sp = _perron(np.abs(GWp))
    s_list = [np.ones(n), sp]
    # a locally optimised scaling, only when it may bring the rate near or below 1
    if min(_norm_up(GWp), _norm_up(sp[:, None] * GWp / sp[None, :])) < 1.25:
        s_list.append(_optimise_scaling(GWp, sp))
    best = np.full(T, np.inf)
    best_rate, best_asym, best_s, best_end = np.inf, np.inf, s_list[0], np.inf
    dW2 = dW * dW * (1 + 4 * U64)
    for s in s_list:
        smin = float(_dn(np.min(s)))
        SG_sup = s * g_sup
        rates = [_norm_up(SG_sup[:, None] * Wp / s[None, :]),
                 _norm_up(SG_sup[:, None] * W / s[None, :])]
        A_sup = SG_sup[:, None] * dW
        nA = _norm_up(A_sup)
        F_sup = [_forcing_sup(A_sup, hsup), _forcing_sup(A_sup, hsupp)]
        E = 0.0
        Et = np.empty(T)
        for t in range(T):
            col = _colnorm_weights(dW2, s * G[t])
            Fs = []
            for k, box in enumerate((u[t], up_[t])):
                c1 = float(up(col @ box, n))
                c2 = float(up(nA * np.sqrt(up(box @ box, n)), 2))
                cc, rc = centres[k][0][t], centres[k][1][t]
                c3 = _centre_forcing(s * G[t], dW, dWa, cc, rc, nA)
                Fs.append(min(c1, c2, c3, F_sup[k]))
            capS = float(np.sqrt(up(np.sum((s * ecap[t]) ** 2), 2 * n)) * (1 + 4 * U64))
            E = min(capS, float(up(rates[0] * E + Fs[0], 2)), float(up(rates[1] * E + Fs[1], 2)))
            Et[t] = E / smin * (1 + 2 * U64)
        best = np.minimum(best, Et)
        if Et[-1] < best_end:
            best_end, best_s = Et[-1], s
        capS_sup = float(np.sqrt(up(np.sum((s * ecap_sup) ** 2), 2 * n)) * (1 + 4 * U64))
        for k in range(2):
            best_rate = min(best_rate, float(rates[k]))
            if rates[k] < 1:
                a = min(capS_sup, float(up(F_sup[k] / _dn(1.0 - rates[k], 1), 2)))
                best_asym = min(best_asym, a / smin * (1 + 2 * U64))

    # ---- elementwise recursion (both role orders)
    V = np.zeros(n)
    vec = np.empty(T)
    for t in range(T):
        a1 = G[t] * _mv(Wpa, V) + G[t] * _mv(dWa, u[t])
        a2 = G[t] * _mv(Wa, V) + G[t] * _mv(dWa, up_[t])
        V = np.minimum(ecap[t], up(np.minimum(a1, a2), 3))
        vec[t] = float(np.sqrt(up(V @ V, n)) * (1 + 2 * U64))
    best = np.minimum(best, vec)
    M1, M2 = g_sup[:, None] * Wpa, g_sup[:, None] * Wa
    vrate = min(_cw_rate(M1), _cw_rate(M2))
    if vrate < 1:
        f1, f2 = g_sup * _mv(dWa, hsup), g_sup * _mv(dWa, hsupp)
        Vs = ecap_sup.copy()
        for _ in range(_KAPPA_ITERS):
            nV = np.minimum(Vs, np.minimum(ecap_sup, up(np.minimum(
                g_sup * _mv(Wpa, Vs) + f1, g_sup * _mv(Wa, Vs) + f2), 3)))
            done = np.all(nV >= Vs * (1 - 1e-13))
            Vs = nV
            if done:
                break
        best_asym = min(best_asym, float(np.sqrt(up(Vs @ Vs, n)) * (1 + 2 * U64)))
    best_rate = min(best_rate, vrate)
    cap = min(2.0 * sq, float(np.sqrt(up(ecap_sup @ ecap_sup, n)) * (1 + 2 * U64)))
    cap_t = np.minimum(2.0 * sq, np.sqrt(up(np.sum(ecap * ecap, axis=1), n)) * (1 + 2 * U64))
    return best, best_rate, best_asym, cap, cap_t, hsup, g_sup, best_s


# ---------------------------------------------------------------------- MGRU
def _mgru_gate_ranges(Wf_abs, Wh_abs, bf, bh, reach_f, reach_h, v):
    """Gate and candidate ranges of one cell for |h_{t-1}| <= v."""
    Rf = up(_mv(Wf_abs, v) + reach_f, 2)
    flo, fhi = _sig_dn(bf - Rf), _sig_up(bf + Rf)
    Rc = up(_mv(Wh_abs, fhi * v) + reach_h, 2)
    cmax = _tanh_up(up(np.abs(bh) + Rc, 1))
    return Rf, flo, fhi, Rc, cmax


def _mgru_box_map(Wf_abs, Wh_abs, bf, bh, reach_f, reach_h):
    def phi(v):
        _, flo, fhi, _, cmax = _mgru_gate_ranges(Wf_abs, Wh_abs, bf, bh, reach_f, reach_h, v)
        return np.minimum(up(np.maximum((1 - flo) * v + flo * cmax,
                                        (1 - fhi) * v + fhi * cmax), 3), 1.0)
    return phi


def _mgru(cell, P, Q, T, r, rho0):
    n = cell.n
    Wf, Wh, Wfp, Whp = P["Wf"], P["Wh"], Q["Wf"], Q["Wh"]
    bf, bh = P["bf"], P["bh"]
    rf, rh = _input_reach(P["Uf"], r), _input_reach(P["Uh"], r)
    A = {"Wf": np.abs(Wf), "Wh": np.abs(Wh)}
    Ap = {"Wf": np.abs(Wfp), "Wh": np.abs(Whp)}
    dWf, dWh = np.abs(Wfp - Wf) * (1 + 2 * U64), np.abs(Whp - Wh) * (1 + 2 * U64)
    u, hsup = _boxes(_mgru_box_map(A["Wf"], A["Wh"], bf, bh, rf, rh), n, T, rho0, 1.0)
    up_, hsupp = _boxes(_mgru_box_map(Ap["Wf"], Ap["Wh"], bf, bh, rf, rh), n, T, rho0, 1.0)

    def quantities(v, vp):
        Rf, flo, fhi, Rc, cmax = _mgru_gate_ranges(A["Wf"], A["Wh"], bf, bh, rf, rh, v)
        Rfp, flop, fhip, Rcp, cmaxp = _mgru_gate_ranges(Ap["Wf"], Ap["Wh"], bf, bh, rf, rh, vp)
        Rfm, Rcm = np.maximum(Rf, Rfp), np.maximum(Rc, Rcp)
        sf = _sig_slope_up(_dn(np.abs(bf) - Rfm, 2) * (np.abs(bf) > Rfm))
        sc = _tanh_slope_up(_dn(np.abs(bh) - Rcm, 2) * (np.abs(bh) > Rcm))
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
        df = up(q["sf"] * (_mv(Wfo, E) + _mv(dWf, v)), 2)
        dfh = up(fhi_o * E + v * df, 2)
        dc = up(q["sc"] * (_mv(Who, dfh) + _mv(dWh, fhi_s * v)), 2)
        conv = np.maximum((1 - flo_o) * E + flo_o * dc, (1 - fhi_o) * E + fhi_o * dc)
        return up(conv + (cm + v) * df, 4)

    def majorant(q, role):
        if role == 0:
            Wfo, Who, v, flo_o, fhi_o, cm = Ap["Wf"], Ap["Wh"], q["v"], q["flop"], q["fhip"], q["cmax"]
        else:
            Wfo, Who, v, flo_o, fhi_o, cm = A["Wf"], A["Wh"], q["vp"], q["flo"], q["fhi"], q["cmaxp"]
        sfW = q["sf"][:, None] * Wfo
        inner = np.diag(fhi_o) + v[:, None] * sfW
        M = np.diag(1 - flo_o) + (fhi_o * q["sc"])[:, None] * up(Who @ inner, n + 1) \
            + (cm + v)[:, None] * sfW
        return up(M, 4)

    ecap = np.minimum(up(u[1:] + up_[1:], 1), 2.0)
    ecap_sup = np.minimum(up(hsup + hsupp, 1), 2.0)
    E = np.zeros(n)
    vec = np.empty(T)
    for t in range(T):
        q = quantities(u[t], up_[t])
        E = np.minimum(ecap[t], np.minimum(step(E, q, 0), step(E, q, 1)))
        vec[t] = float(np.sqrt(up(E @ E, n)) * (1 + 2 * U64))
    qs = quantities(hsup, hsupp)
    rate = min(_cw_rate(majorant(qs, 0)), _cw_rate(majorant(qs, 1)))
    asym = np.inf
    if rate < 1:
        Vs = ecap_sup.copy()
        for _ in range(_KAPPA_ITERS):
            nV = np.minimum(Vs, np.minimum(ecap_sup, np.minimum(step(Vs, qs, 0), step(Vs, qs, 1))))
            done = np.all(nV >= Vs * (1 - 1e-13))
            Vs = nV
            if done:
                break
        asym = float(np.sqrt(up(Vs @ Vs, n)) * (1 + 2 * U64))
    sq = float(np.sqrt(n)) * (1 + 2 * U64)
    cap = min(2.0 * sq, float(np.sqrt(up(ecap_sup @ ecap_sup, n)) * (1 + 2 * U64)))
    cap_t = np.minimum(2.0 * sq, np.sqrt(up(np.sum(ecap * ecap, axis=1), n)) * (1 + 2 * U64))

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
        nQWu = _norm_up(Qd[:, None] * Who * vs[None, :])
        rate_r = float(up(a + _norm_up(Pd[:, None] * Wfo)
                          + _norm_up(Qd[:, None] * Who * fhi_o[None, :])
                          + nQWu * _norm_up(Sd[:, None] * Wfo), 4))
        # forcings: (matrix, boxes of its input at steps 0..T-1, box valid at every step)
        parts, sups = [], []
        for A, boxes, bsup in ((Pd[:, None] * dWf_s, vt[:-1], vs),
                               (Sd[:, None] * dWf_s, vt[:-1], vs),
                               (Qd[:, None] * dWh_s, fhi_s[None, :] * vt[:-1], fhi_s * vs)):
            col = np.sqrt(up(np.sum(A * A, axis=0), n)) * (1 + 16 * U64)
            nA = _norm_up(A)
            sup = _forcing_sup(A, bsup)
            per_t = np.minimum(up(boxes @ col, n),
                               up(nA * np.sqrt(up(np.sum(boxes ** 2, axis=1), n)), 2))
            parts.append(np.minimum(per_t, sup))
            sups.append(sup)
        F_t = up(parts[0] + nQWu * parts[1] + parts[2], 3)                  # (T,)
        roles.append((rate_r, F_t))
        if rate_r < 1:   # ||e_t|| <= X = F_sup / (1 - rate) for every t, by induction
            Fs = float(up(sups[0] + nQWu * sups[1] + sups[2], 3))
            asym = min(asym, cap, float(up(Fs / _dn(1.0 - rate_r, 1), 2)))
        rate = min(rate, rate_r)
    En = 0.0
    normrec = np.empty(T)
    for t in range(T):
        En = min(float(cap_t[t]), *(float(up(rr * En + Ft[t], 2)) for rr, Ft in roles))
        normrec[t] = En
    vec = np.minimum(vec, normrec)
    return np.minimum(vec, cap_t), rate, asym, cap, cap_t, hsup, qs["sc"], np.ones(n)


# ----------------------------------------------------------------------- API
def global_bound(cell, other, *, horizon: int, input_norm: float = 1.0, h0_norm: float = 0.0,
                 full_output: bool = False):
    r"""Upper bound on :math:`\|h'_t - h_t\|_2` valid for every input sequence in a ball.

    .. math::
        \sup_{\|x_s\|_2 \le r,\ \|h_0\|_2 \le \rho_0} \|h'_t - h_t\|_2 \le G_t ,
        \qquad t = 1, \dots, T,

    for the Elman RNN :math:`h_t = \tanh(W h_{t-1} + U x_t + b)` and the MGRU
    (see the module docstring for the derivation and the refinements).

    Parameters
    ----------
    cell, other : ElmanRNN or MGRU
        Nominal and perturbed cell; ``other`` may differ only in its recurrent
        matrices.
    horizon : int
        Number of steps T (>= 1).
    input_norm : float
        r: every input satisfies :math:`\|x_t\|_2 \le r`.
    h0_norm : float
        :math:`\rho_0`: the shared initial state satisfies
        :math:`\|h_0\|_2 \le \rho_0` (0: :math:`h_0 = 0`; at most 1 for the MGRU).
    full_output : bool
        Return a :class:`GlobalBound` instead of the array.

    Returns
    -------
    G : ndarray, shape (T,)
        ``G[t-1]`` bounds :math:`\|h'_t - h_t\|_2`. Never above the simple
        contraction bound (:func:`simple_contraction_bound`) nor above
        :math:`2\sqrt n`.
    or GlobalBound
        With ``full_output=True``.

    Warns
    -----
    RuntimeWarning
        When the bound is vacuous for long horizons (every geometric factor
        :math:`\ge 1`): it then falls back to the trivial cap.
    """
    T, r, rho0, P, Q = _setup(cell, other, horizon, input_norm, h0_norm)
    simple, simple_rate, cap2, simple_asym = _simple(cell, P, Q, T, rho0)
    fn = _elman if cell.kind == "elman" else _mgru
    ref, rate, asym, cap, cap_t, hsup, slope, s = fn(cell, P, Q, T, r, rho0)
    bound = np.minimum(np.minimum(np.minimum(ref, cap_t), simple), cap2)
    if rho0 == 0:
        bound[0] = 0.0          # h_0 = 0 gives e_1 = 0 exactly (Delta W h_0 = 0)
    if all(np.array_equal(P[k], Q[k]) for k in cell.recurrent_names):
        bound[:] = 0.0          # Delta W = 0: e_t = 0 exactly (the recursions' tiny
        # absolute rounding terms would otherwise be amplified by factors >= 1)
    rate, asym = min(rate, simple_rate), min(asym, simple_asym)
    vacuous = not (rate < 1 and asym < cap)
    if vacuous:
        asym = cap
        warnings.warn(
            f"global_bound: geometric factor {rate:.4g} >= 1 (or no uniform bound below the "
            f"cap): for long horizons the bound falls back to the trivial cap {cap:.4g} "
            f"(vacuous)", RuntimeWarning, stacklevel=2)
    if not full_output:
        return bound
    return GlobalBound(bound=_freeze(bound), vacuous=bool(vacuous), rate=float(rate),
                       asymptote=float(asym), simple=_freeze(simple),
                       simple_rate=float(simple_rate), cap=float(cap), hmax=_freeze(hsup),
                       slope=_freeze(slope), scaling=_freeze(s),
                       capped=_freeze(bound >= np.minimum(cap_t, cap2)))
