r"""Exact interval bounds for the activation functions tanh and the sigmoid σ.

Three elementwise quantities, each a *sound* bound in floating point (it
carries a margin for the rounding of its own evaluation):

* :func:`slope_max` — :math:`\max_{x\in[lo,hi]} \varphi'(x)`;
* :func:`slope_min` — :math:`\min_{x\in[lo,hi]} \varphi'(x)`;
* :func:`taylor_remainder_max` — the exact worst first-order Taylor remainder

  .. math::
      R(a; lo, hi) = \max_{\delta\in[lo,hi]}
      \bigl|\varphi(a+\delta) - \varphi(a) - \varphi'(a)\,\delta\bigr| .

Why the maximum is at an end point or at :math:`\delta = -2a`.
For both activations :math:`\varphi'` is even and strictly decreasing in
:math:`|x|` (:math:`\tanh' = 1-\tanh^2`, :math:`\sigma' = \sigma(1-\sigma)`, and
:math:`\sigma'(-x) = \sigma'(x)`). Let :math:`g(\delta) = \varphi(a+\delta) - \varphi(a)
- \varphi'(a)\delta`. Then :math:`g(0) = 0` and
:math:`g'(\delta) = \varphi'(a+\delta) - \varphi'(a)` vanishes exactly where
:math:`|a+\delta| = |a|`, i.e. at :math:`\delta = 0` and :math:`\delta = -2a`.
So :math:`g` is monotone between consecutive points of
:math:`\{lo, 0, -2a, hi\}`, and the maximum of :math:`|g|` over
:math:`[lo, hi]` is attained at :math:`lo`, :math:`hi` or, when it lies inside,
:math:`-2a` (at :math:`\delta=0`, :math:`g = 0`). For :math:`a \ne 0`, the sign
of :math:`g` flips at the symmetric point: with :math:`a > 0`, :math:`g(-2a) =
\varphi(-a) - \varphi(a) + 2a\varphi'(a)` is the extreme value of :math:`g` on
:math:`[-2a, 0]`.

Rounding. The direct formula :math:`g(\delta)` cancels catastrophically for
small :math:`\delta`, so each evaluation is paired with the Lagrange bound
:math:`\tfrac12 \sup|\varphi''|\,\delta^2` (:math:`\sup|\tanh''| = 4/(3\sqrt3)`,
:math:`\sup|\sigma''| = 1/(6\sqrt3)`) and the smaller of the two, each with a
rounding margin, is returned. The margin assumes the platform's ``tanh`` and
``exp`` are accurate to :data:`LIBM_ULPS` units in the last place (glibc and
SVML are documented at ≤ 4 ulp; ``tests/test_remainder.py`` checks this
against mpmath).
"""
from __future__ import annotations

import numpy as np

__all__ = ["TANH_KAPPA", "SIGMOID_KAPPA", "LIBM_ULPS", "U64", "activation",
           "slope", "slope_max", "slope_max_ball", "slope_min", "taylor_remainder_max", "act_error",
           "secant_enclosure"]

#: sup |tanh''| = 4 / (3 sqrt 3), attained at tanh(x) = ±1/sqrt 3.
TANH_KAPPA = 4.0 / (3.0 * np.sqrt(3.0)) * (1 + 1e-15)
#: sup |σ''| = 1 / (6 sqrt 3).
SIGMOID_KAPPA = 1.0 / (6.0 * np.sqrt(3.0)) * (1 + 1e-15)
#: Assumed accuracy (in ulps) of np.tanh / np.exp; generous on purpose.
LIBM_ULPS = 16
#: Unit roundoff of float64.
U64 = 2.0 ** -53
_TINY = 1e-120


def _sigmoid(a):
    a = np.asarray(a, dtype=np.float64)
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _dtanh(x):
    """tanh'(x) = cosh(x)^-2, relatively accurate also where it is tiny."""
    with np.errstate(over="ignore"):   # cosh overflows for |x| > 710: slope 0 (true < 1e-308)
        c = np.cosh(np.asarray(x, dtype=np.float64))
        return 1.0 / (c * c)


def _dsigmoid(x):
    """σ'(x) = e^{-|x|} / (1 + e^{-|x|})^2, relatively accurate."""
    e = np.exp(-np.abs(np.asarray(x, dtype=np.float64)))
    return e / ((1.0 + e) * (1.0 + e))


def activation(kind: str):
    """Return ``(phi, dphi, kappa)`` for ``kind`` in {'tanh', 'sigmoid'}."""
    if kind == "tanh":
        return np.tanh, _dtanh, TANH_KAPPA
    if kind == "sigmoid":
        return _sigmoid, _dsigmoid, SIGMOID_KAPPA
    raise ValueError(f"kind: expected 'tanh' or 'sigmoid', found {kind!r}")


def act_error(kind: str) -> float:
    """Relative error bound of the computed activation (``np.tanh`` or the
    stable sigmoid of :mod:`rnnperturb.cells`): ``|fl(φ(x)) − φ(x)| ≤
    act_error·|fl(φ(x))| + 1e-120``."""
    if kind == "tanh":
        return 2 * LIBM_ULPS * U64 + 4 * U64
    if kind == "sigmoid":  # exp, one add, one division (and one product)
        return 2 * LIBM_ULPS * U64 + 8 * U64
    raise ValueError(f"kind: expected 'tanh' or 'sigmoid', found {kind!r}")


def slope(kind: str, x):
    """φ'(x) in floating point (not a bound)."""
    return activation(kind)[1](np.asarray(x, dtype=np.float64))


def _closest_to_zero(lo, hi):
    """|x| minimised over [lo, hi] (elementwise)."""
    return np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))


def slope_max(kind: str, lo, hi):
    r"""Upper bound on :math:`\max_{x\in[lo,hi]}\varphi'(x)` (elementwise).

    φ' is even and decreasing in |x|, so the maximum is at the point of the
    interval closest to 0. A relative margin covers the rounding.

    Parameters
    ----------
    kind : {'tanh', 'sigmoid'}
    lo, hi : array_like, same shape, ``lo <= hi``

    Returns
    -------
    s : ndarray
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    x = _closest_to_zero(lo, hi)
    dphi = activation(kind)[1]
    cap = 1.0 if kind == "tanh" else 0.25
    return np.minimum(dphi(x) * (1 + 4 * act_error(kind)) + _TINY, cap)


def slope_max_ball(kind: str, a, rad):
    r"""``slope_max(kind, *widen(a, rad))`` (:func:`rnnperturb.verified.linalg.widen`),
    the same values in fewer passes.

    The point of :math:`[lo, hi]` = ``widen(a, rad)`` closest to 0 is
    :math:`\max(x, 0)` with :math:`x = ((|a| - rad) - 4u|a|) - 10^{-120}`, evaluated
    in that order: for :math:`a \ge 0` it is ``lo`` operation by operation, for
    :math:`a < 0` it is ``-hi`` (round-to-nearest is symmetric), and :math:`x \le 0`
    exactly when the interval holds 0.

    Parameters
    ----------
    kind : {'tanh', 'sigmoid'}
    a, rad : array_like, same shape, ``rad >= 0``

    Returns
    -------
    s : ndarray
    """
    aa = np.abs(np.asarray(a, dtype=np.float64))
    x = aa - rad
    x -= 4 * U64 * aa
    x -= _TINY
    np.maximum(x, 0.0, out=x)
    cap = 1.0 if kind == "tanh" else 0.25
    return np.minimum(activation(kind)[1](x) * (1 + 4 * act_error(kind)) + _TINY, cap)


def slope_min(kind: str, lo, hi):
    r"""Lower bound on :math:`\min_{x\in[lo,hi]}\varphi'(x)` (elementwise, ≥ 0)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    x = np.maximum(np.abs(lo), np.abs(hi))
    dphi = activation(kind)[1]
    return np.maximum(dphi(x) * (1 - 4 * act_error(kind)) - _TINY, 0.0)


def _g_upper(kind, a, d, phi_a, dphi_a):
    r"""Upper bound on |g(d)| = |φ(a+d) − φ(a) − φ'(a)d|, with rounding margins.

    Two evaluations, both sound, the smaller is kept:

    * the difference of activation values (absolute error ~ eps, fine when
      g is not tiny);
    * the relatively accurate difference quotient
      :math:`\tanh(x) - \tanh(y) = \sinh(x-y)/(\cosh x\cosh y)` (and
      :math:`\sigma(x) - \sigma(y) = \sinh((x-y)/2) / (2\cosh(x/2)\cosh(y/2))`),
      whose relative error is a few eps plus :math:`u|a+d|` from rounding
      the argument :math:`a + d` of cosh (:math:`(\log\cosh)' = \tanh`).
    """
    phi = activation(kind)[0]
    eps = act_error(kind)
    ad = a + d
    pa_d = phi(ad)
    lin = dphi_a * d
    lin_err = 8 * eps * np.abs(lin)           # φ'(a) is relatively accurate
    # (1) difference of values: argument rounding u|a+d| (φ' <= 1)
    val = np.abs(pa_d - phi_a - lin)
    m1 = (eps * (np.abs(pa_d) + np.abs(phi_a)) * 2 + U64 * np.abs(ad)
          + 4 * U64 * (np.abs(pa_d) + np.abs(phi_a) + np.abs(lin)) + lin_err)
    g1 = val * (1 + 4 * U64) + m1 + _TINY
    # (2) sinh/cosh form
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind == "tanh":
            diff = np.sinh(d) / (np.cosh(ad) * np.cosh(a))
            rel = 4 * eps + 6 * U64 + 2 * U64 * np.abs(ad)
        else:
            diff = np.sinh(0.5 * d) / (2.0 * np.cosh(0.5 * ad) * np.cosh(0.5 * a))
            rel = 4 * eps + 6 * U64 + 2 * U64 * np.abs(ad)
        g2 = (np.abs(diff - lin) * (1 + 4 * U64) + rel * np.abs(diff)
              + 4 * U64 * (np.abs(diff) + np.abs(lin)) + lin_err + _TINY)
    g2 = np.where(np.isfinite(g2), g2, np.inf)
    return np.minimum(g1, g2)


def taylor_remainder_max(kind: str, a, lo, hi):
    r"""Sound upper bound on the exact worst first-order Taylor remainder.

    .. math::
        R(a; lo, hi) = \max_{\delta\in[lo,hi]}
        \bigl|\varphi(a+\delta) - \varphi(a) - \varphi'(a)\,\delta\bigr|

    evaluated at the candidates :math:`lo`, :math:`hi` and :math:`-2a` (when
    inside; see the module docstring), each as the smaller of the direct
    formula (with rounding margin) and the Lagrange bound
    :math:`\tfrac12\kappa\,\delta^2`.

    Parameters
    ----------
    kind : {'tanh', 'sigmoid'}
    a : array_like
        Expansion points.
    lo, hi : array_like, broadcastable with ``a``, ``lo <= hi``
        The interval of increments δ.

    Returns
    -------
    R : ndarray, the broadcast shape
    """
    phi, dphi, kappa = activation(kind)
    a = np.asarray(a, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if np.any(lo > hi):
        raise ValueError("lo: expected lo <= hi elementwise, found lo > hi")
    a, lo, hi = np.broadcast_arrays(a, lo, hi)
    phi_a = phi(a)
    dphi_a = dphi(a)
    # |φ'(a)| itself is rounded; its error eps·φ'(a)·|δ| is covered in _g_upper.
    out = np.zeros(a.shape)
    cands = [lo, hi]
    inside = (-2 * a >= lo) & (-2 * a <= hi)
    cands.append(np.where(inside, -2 * a, 0.0))
    for d in cands:
        direct = _g_upper(kind, a, d, phi_a, dphi_a)
        lagr = 0.5 * kappa * d * d * (1 + 4 * U64) + _TINY
        out = np.maximum(out, np.minimum(direct, lagr))
    return out


def _root_of_slope(kind, s):
    r"""The :math:`x \ge 0` with :math:`\varphi'(x) = s` in floating point (NaN where
    there is none); an approximation, verified by the caller."""
    with np.errstate(all="ignore"):
        if kind == "tanh":                    # 1 / cosh^2 x = s
            return np.arccosh(1.0 / np.sqrt(s))
        # sigma'(x) = t / (1 + t)^2 = s with t = exp(-x) <= 1: the small root of
        # s t^2 + (2s - 1) t + s = 0, in the form without cancellation
        return np.log(((1.0 - 2.0 * s) + np.sqrt(1.0 - 4.0 * s)) / (2.0 * s))


def _diff_enclosure(kind, x, c, px, pc):
    r"""Midpoint and radius of an enclosure of :math:`\varphi(x) - \varphi(c)` for
    float points x, c, with ``px``, ``pc`` their computed values (two forms, the
    narrower kept: the difference of values, and the relatively accurate
    :math:`\sinh(x-c)/(\cosh x\cosh c)` for tanh,
    :math:`\sinh((x-c)/2)/(2\cosh(x/2)\cosh(c/2))` for the sigmoid, whose relative
    error is a few ulps plus :math:`2u|x - c|` from rounding :math:`x - c`)."""
    eps = act_error(kind)
    d1 = px - pc
    r1 = (eps * (np.abs(px) + np.abs(pc)) + 2 * _TINY + U64 * np.abs(d1)) * (1 + 4 * U64)
    dl = x - c
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind == "tanh":
            d2 = np.sinh(dl) / (np.cosh(x) * np.cosh(c))
        else:
            d2 = np.sinh(0.5 * dl) / (2.0 * np.cosh(0.5 * x) * np.cosh(0.5 * c))
        r2 = (np.abs(d2) * (4 * eps + 8 * U64 + 2 * U64 * np.abs(dl)) + _TINY) * (1 + 4 * U64)
    use2 = np.isfinite(d2) & np.isfinite(r2) & (r2 < r1)
    return np.where(use2, d2, d1), np.where(use2, r2, r1)


def secant_enclosure(kind: str, c, rho, pc):
    r"""A secant linearisation of the activation over :math:`[c-\rho, c+\rho]` with
    a sound error bound.

    Returns ``(s, o, e, ok)`` with, for every row where ``ok``,

    .. math::
        \varphi(c + d) - \tilde\varphi(c) - s\,d \in [o - e,\ o + e]
        \quad\text{for every real } |d| \le \rho ,

    where :math:`\tilde\varphi(c)` = ``pc`` is the computed value at the centre
    (its own error is inside the bound) and :math:`s \ge 0` is the slope of the
    chord over the (outward rounded) interval :math:`[a, b]`. For a convex or a
    concave piece this is the Chebyshev (minimax) linear approximation: at most
    about half the tangent's remainder (about 0.4 of it where the range straddles
    the inflection symmetrically).

    Why the extremes are found. :math:`E(x) = \varphi(x) - \tilde\varphi(c) -
    s(x - c)` has :math:`E' = \varphi' - s`, and :math:`\varphi'` is even and
    strictly decreasing in :math:`|x|`, so :math:`E'` is monotone on each of
    :math:`[a, b]\cap(-\infty, 0]` and :math:`[a, b]\cap[0, \infty)` and changes
    sign at most once on each. On a half whose end slopes have one verified strict
    sign, :math:`E` is monotone there and its extremes are at the ends. Otherwise
    the root :math:`\pm x^*` of :math:`\varphi'(x) = s` is computed in floating
    point and bracketed by :math:`[x_1, x_2]` (within the half, of width at most
    :math:`2^{-7}\rho`), on whose ends :math:`E'` has verified opposite signs;
    there :math:`|E(x) - E(x_i)| \le \max(|E'(x_1)|, |E'(x_2)|)(x_2 - x_1)`
    (:math:`E'` monotone). A row where neither can be verified gets ``ok`` False
    (the caller keeps the tangent). Every value :math:`E(x)` is enclosed with
    :func:`_diff_enclosure` and the rounding of :math:`s(x - c)`; :math:`E'` with
    the relative error of the computed :math:`\varphi'`.

    Parameters
    ----------
    kind : {'tanh', 'sigmoid'}
    c, rho, pc : ndarray, same shape
        Centres, radii (>= 0) and the computed activation at the centres.

    Returns
    -------
    s, o, e : ndarray
    ok : ndarray of bool
    """
    phi, dphi, _ = activation(kind)
    eps = act_error(kind)
    c = np.asarray(c, np.float64)
    rho = np.asarray(rho, np.float64)
    pc = np.asarray(pc, np.float64)
    smax = 1.0 if kind == "tanh" else 0.25
    with np.errstate(all="ignore"):
        a = np.nextafter(c - rho, -np.inf)
        b = np.nextafter(c + rho, np.inf)
        a = np.where(np.isfinite(a), a, c)
        b = np.where(np.isfinite(b), b, c)
        pab = phi(np.stack([a, b]))
        s = (pab[1] - pab[0]) / (b - a)
        s = np.where(np.isfinite(s), np.minimum(np.maximum(s, 0.0), smax), dphi(c))
        xr = _root_of_slope(kind, s)
        m = np.minimum(np.maximum(0.0, a), b)              # the halves [a, m] and [m, b]
        H0 = np.stack([a, m])                              # (2, ...): ends of the halves
        H1 = np.stack([m, b])
        r = np.stack([-xr, xr])                            # the root on each half
        wb = 2.0 ** -8 * rho + 1e-300
        x1 = np.minimum(np.maximum(r - wb, H0), H1)        # its bracket, within the half
        x2 = np.minimum(np.maximum(r + wb, H0), H1)
        fin = np.isfinite(r)
        x1 = np.where(fin, x1, H0)
        x2 = np.where(fin, x2, H0)
        P = np.concatenate([np.stack([a, m, b]), x1, x2])  # a, m, b, x1-, x1+, x2-, x2+
        dmid, drad = _diff_enclosure(kind, P, c, phi(P), pc)   # phi(x) - phi(c)
        sd = s * (P - c)
        emid = dmid - sd
        erad = (drad + eps * np.abs(pc) + 1e-120 + 3 * U64 * np.abs(sd) + U64 * np.abs(emid)
                + 1e-300) * (1 + 8 * U64)
        E_lo, E_hi = emid - erad, emid + erad
        dp = dphi(P)
        G_lo = dp * (1 - 4 * eps) - _TINY - s                # E' enclosure
        G_hi = dp * (1 + 4 * eps) + _TINY - s
    lo = E_lo[:3].min(axis=0)
    hi = E_hi[:3].max(axis=0)
    # per half (leading axis 2): monotone (one verified sign at both ends), empty, or a
    # verified bracket of the root of E'
    ends_lo = np.stack([G_lo[0:2], G_lo[1:3]])             # (2 ends, 2 halves, ...)
    ends_hi = np.stack([G_hi[0:2], G_hi[1:3]])
    mono = np.all(ends_lo > 0, axis=0) | np.all(ends_hi < 0, axis=0)
    empty = H0 >= H1
    g1l, g1h, g2l, g2h = G_lo[3:5], G_hi[3:5], G_lo[5:7], G_hi[5:7]
    flip = ((g1l > 0) & (g2h < 0)) | ((g1h < 0) & (g2l > 0))
    good = (x1 < x2) & flip
    gabs = np.maximum(np.maximum(np.abs(g1l), np.abs(g1h)), np.maximum(np.abs(g2l), np.abs(g2h)))
    mw = gabs * (x2 - x1) * (1 + 4 * U64)
    blo = np.minimum(E_lo[3:5], E_lo[5:7]) - mw
    bhi = np.maximum(E_hi[3:5], E_hi[5:7]) + mw
    use = ~(mono | empty) & good
    lo = np.minimum(lo, np.where(use, blo, np.inf).min(axis=0))
    hi = np.maximum(hi, np.where(use, bhi, -np.inf).max(axis=0))
    ok = (np.isfinite(c) & np.isfinite(rho) & np.isfinite(s)
          & np.all(mono | empty | good, axis=0))
    o = 0.5 * (lo + hi)
    e = (0.5 * (hi - lo) + U64 * (np.abs(lo) + np.abs(hi)) + 1e-300) * (1 + 4 * U64)
    ok &= np.isfinite(o) & np.isfinite(e)
    return s, np.where(ok, o, 0.0), np.where(ok, e, np.inf), ok
