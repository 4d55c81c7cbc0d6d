r"""Interval arithmetic (mpmath.iv) for rigorous enclosures of RNN trajectories.

Every quantity is an :class:`mpmath.iv.mpf` interval that contains the exact
real value; mpmath rounds every endpoint outward, so the enclosures are
rigorous at any working precision (more bits only make them narrower).

Enclosures of the activations. ``mpmath.iv`` has ``exp`` but not ``tanh``.
Both activations are increasing, so on an interval :math:`[a, b]`

.. math::
    \tanh([a,b]) \subseteq [\,\underline{\tanh(a)},\ \overline{\tanh(b)}\,],
    \qquad \tanh(p) = 1 - \frac{2}{1 + e^{2p}},\qquad
    \sigma(p) = \frac{1}{1 + e^{-p}},

where each end point is evaluated in interval arithmetic at the degenerate
interval :math:`[p, p]` (so it is itself an enclosure; the variable appears
once, so there is no dependency blow-up) and the outer end of it is kept.

Cells. A cell's own step (:meth:`rnnperturb.cells.Cell.forward`) runs over
the interval namespace :data:`IV` (:class:`IntervalNamespace`), so every cell
gets its enclosure from its one definition; e.g. for the MGRU, with interval
states :math:`[h_{t-1}]`,

.. math::
    [f_t] &= \sigma(W_f [h_{t-1}] + U_f x_t + b_f),\quad
    [c_t] = \tanh(W_h ([f_t][h_{t-1}]) + U_h x_t + b_h) \\
    [h_t] &= \bigl((1-[f_t])[h_{t-1}] + [f_t][c_t]\bigr) \cap
            \bigl([h_{t-1}] + [f_t]([c_t]-[h_{t-1}])\bigr) \cap
            \operatorname{hull}([h_{t-1}], [c_t])

(the namespace's ``lerp``; the last: :math:`h_t` is a convex combination of
:math:`h_{t-1}` and :math:`c_t`). Parameters and inputs are float64 numbers,
converted exactly.
Widths grow with the wrapping effect (roughly like products of
:math:`\||W|\|_\infty`), so long horizons need more precision:
:func:`interval_deviation_norm` can raise the precision until the enclosure is
narrow. Initial states are full states (N = ``cell.state_size``: the LSTM's
``[h, c]``, every layer of a stack); trajectories and deviations are those of
the output (h) by default, as :meth:`rnnperturb.cells.Cell.run` reports them,
and of the full state with ``state='full'``.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from mpmath import iv, libmp

from rnnperturb._checks import as_h0, as_inputs, check_int
from rnnperturb.cells.namespace import FLOAT, concat, split
from rnnperturb.propagate.deviation import delta_recurrent

__all__ = ["iv_precision", "to_iv", "iv_exp", "iv_tanh", "iv_sigmoid", "iv_matvec",
           "iv_lower", "iv_upper", "iv_width", "IntervalNamespace", "IV", "interval_params",
           "interval_step", "interval_run", "interval_deviation_norm"]


@contextmanager
def iv_precision(prec: int):
    """Temporarily set the working precision (bits) of ``mpmath.iv``."""
    prec = check_int("prec", prec, low=53, high=100_000)
    old = iv.prec
    iv.prec = prec
    try:
        yield
    finally:
        iv.prec = old


def to_iv(a) -> np.ndarray:
    """Exact conversion of a float array to an object array of degenerate intervals."""
    a = np.asarray(a, dtype=np.float64)
    out = np.empty(a.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(a.reshape(-1)):
        flat[i] = iv.mpf(float(v))
    return out


def _make(lo_iv, hi_iv):
    """The interval [lower end of lo_iv, upper end of hi_iv]."""
    return iv.mpf([lo_iv.a, hi_iv.b])


def _exp_raw(raw):
    """Rigorous enclosure of exp at one point (raw mpf tuple) as an interval.

    mpmath's own directed rounding is not reliable for tiny arguments
    (``mpf_exp(-2**-51, 80, 'c')`` returns ``1 - 2**-51``, below the true
    value; so does ``iv.exp``). We evaluate with 20 guard bits, round to
    nearest, and widen by a relative ``2**-(prec+10)`` (1024 guard ulps) on
    both sides before rounding outward to the working precision."""
    prec = iv.prec
    wp = prec + 20
    e = libmp.mpf_exp(raw, wp, "n")
    tol = libmp.mpf_shift(e, -(prec + 10))
    lo = libmp.mpf_sub(e, tol, prec, "f")
    hi = libmp.mpf_add(e, tol, prec, "c")
    if libmp.mpf_lt(lo, libmp.fzero):
        lo = libmp.fzero
    return _from_raw(lo, hi)


def _from_raw(lo, hi):
    out = iv.mpf(0)
    out._mpi_ = (lo, hi)
    return out


def iv_exp(x):
    """Rigorous enclosure of exp on an interval (monotone; end points by
    :func:`_exp_raw`)."""
    x = iv.mpf(x)
    a, b = x._mpi_
    return _from_raw(_exp_raw(a)._mpi_[0], _exp_raw(b)._mpi_[1])


def _tanh_point(p):
    return 1 - 2 / (1 + iv_exp(2 * p))


def _sigmoid_point(p):
    return 1 / (1 + iv_exp(-p))


def iv_tanh(x):
    r"""Enclosure of :math:`\tanh` on the interval ``x`` (through exp and
    monotonicity; clipped to [-1, 1])."""
    x = iv.mpf(x)
    lo = _tanh_point(x.a)
    hi = _tanh_point(x.b)
    out = _make(lo, hi)
    return iv.mpf([max(out.a, iv.mpf(-1)).a, min(out.b, iv.mpf(1)).b])


def iv_sigmoid(x):
    r"""Enclosure of :math:`\sigma(x) = 1/(1+e^{-x})` on the interval ``x``
    (clipped to [0, 1])."""
    x = iv.mpf(x)
    out = _make(_sigmoid_point(x.a), _sigmoid_point(x.b))
    return iv.mpf([max(out.a, iv.mpf(0)).a, min(out.b, iv.mpf(1)).b])


def iv_matvec(A, v) -> np.ndarray:
    """Interval product ``A @ v`` (object arrays; A (r, c) and v (c,) or (..., c)
    as ``v @ A.T``)."""
    return np.asarray(v, dtype=object) @ np.asarray(A, dtype=object).T


def iv_lower(x) -> np.ndarray:
    """Lower end points rounded down to float64 (elementwise)."""
    x = np.asarray(x, dtype=object)
    return np.array([libmp.to_float(iv.mpf(v)._mpi_[0], rnd="d") for v in x.reshape(-1)],
                    dtype=np.float64).reshape(x.shape)


def iv_upper(x) -> np.ndarray:
    """Upper end points rounded up to float64 (elementwise)."""
    x = np.asarray(x, dtype=object)
    return np.array([libmp.to_float(iv.mpf(v)._mpi_[1], rnd="u") for v in x.reshape(-1)],
                    dtype=np.float64).reshape(x.shape)


def iv_width(x) -> np.ndarray:
    """Widths (rounded up) of intervals, as float64."""
    return iv_upper(np.asarray(x, dtype=object)) - iv_lower(np.asarray(x, dtype=object))


def _iv_sqrt_nonneg(v):
    """Enclosure of sqrt on [max(a, 0), b], verified by exact squaring (no
    trust in mpmath's directed rounding of sqrt)."""
    a, b = iv.mpf(v)._mpi_
    if libmp.mpf_lt(a, libmp.fzero):
        a = libmp.fzero
    prec = iv.prec
    lo = libmp.mpf_sqrt(a, prec, "f")
    hi = libmp.mpf_sqrt(b, prec, "c")
    while libmp.mpf_gt(libmp.mpf_mul(lo, lo), a):          # exact products
        lo = libmp.mpf_sub(lo, libmp.mpf_shift(lo, -prec), prec, "f")
    while libmp.mpf_lt(libmp.mpf_mul(hi, hi), b):
        hi = libmp.mpf_add(hi, libmp.mpf_shift(hi, -prec), prec, "c")
    return _from_raw(lo, hi)


def _intersect(x, y):
    lo = max(x.a, y.a)
    hi = min(x.b, y.b)
    if lo.a > hi.b:  # cannot happen for true enclosures of the same value
        raise ArithmeticError("empty intersection of two enclosures")
    return iv.mpf([lo.a, hi.b])


def _vec(fun, x):
    out = np.empty(x.shape, dtype=object)
    of, xf = out.reshape(-1), x.reshape(-1)
    for i in range(xf.size):
        of[i] = fun(xf[i])
    return out


class IntervalNamespace:
    r"""The array namespace of :mod:`rnnperturb.cells.namespace` over object
    arrays of ``mpmath.iv`` intervals: a cell's own :meth:`~rnnperturb.cells.Cell.forward`
    run in it gives a rigorous enclosure of the step.

    ``tanh``, ``sigmoid``
        :func:`iv_tanh`, :func:`iv_sigmoid` elementwise;
    ``matvec(A, v)``
        :func:`iv_matvec` (``v @ A.T``);
    ``lerp(h, c, f)``
        the gated update :math:`(1-f)h + fc`, enclosed by the intersection
        of :math:`(1-[f])[h] + [f][c]`, :math:`[h] + [f]([c]-[h])` and, where
        :math:`[f] \subseteq [0, 1]` (so that the update is a convex
        combination), :math:`\operatorname{hull}([h], [c])`;
    ``asarray(A)``
        :func:`to_iv` (exact).
    """

    @staticmethod
    def tanh(a):
        return _vec(iv_tanh, a)

    @staticmethod
    def sigmoid(a):
        return _vec(iv_sigmoid, a)

    matvec = staticmethod(iv_matvec)

    @staticmethod
    def lerp(h, c, f):
        h1 = FLOAT.lerp(h, c, f)
        h2 = h + f * (c - h)
        h, c, f = np.broadcast_arrays(h, c, f)
        out = np.empty(h1.shape, dtype=object)
        of, f1, f2 = out.reshape(-1), h1.reshape(-1), h2.reshape(-1)
        fh, fc, ff = h.reshape(-1), c.reshape(-1), f.reshape(-1)
        for i in range(of.size):
            v = _intersect(f1[i], f2[i])
            if ff[i].a >= 0 and ff[i].b <= 1:
                hull = iv.mpf([min(fh[i].a, fc[i].a).a, max(fh[i].b, fc[i].b).b])
                v = _intersect(v, hull)
            of[i] = v
        return out

    asarray = staticmethod(to_iv)
    split = staticmethod(split)
    concat = staticmethod(concat)


#: The interval namespace.
IV = IntervalNamespace()


def interval_params(cell) -> dict:
    """The cell's parameters (readout excluded) as exact interval arrays."""
    return {k: to_iv(getattr(cell, k)) for k in cell.recurrent_names + cell.input_params}


def interval_step(cell, P: dict, h, x):
    r"""One interval step of a cell: its :meth:`forward` over :data:`IV`.

    Parameters
    ----------
    cell : Cell
        Any cell (only its step definition is used).
    P : dict of str to object ndarray
        Interval parameters (:func:`interval_params`, or any enclosures of
        the same shapes, e.g. of perturbed recurrent matrices).
    h : object ndarray, shape (B, n)
        Enclosure of :math:`h_{t-1}`.
    x : object ndarray, shape (B, m)
        Enclosure of :math:`x_t`.

    Returns
    -------
    h_t : object ndarray, shape (B, n)
    """
    return cell.forward(IV, P, h, x, lambda k, a: iv_matvec(P[k], a))[0]


def interval_run(cell, X, h0=None, *, prec: int = 113, state: str = "h") -> np.ndarray:
    r"""Rigorous interval enclosure of the trajectory of ``cell``.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, n) or (n,), optional
    prec : int
        Working precision in bits.
    state : {'h', 'full'}
        The output (as :meth:`~rnnperturb.cells.Cell.run`) or the full state.

    Returns
    -------
    H : object ndarray of mpmath intervals, shape (T, B, n) or (T, n)
        ``H[t-1]`` contains the exact :math:`h_t` (N in place of n for 'full').
    """
    full = cell._check_state(state) == "full"
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h0a = as_h0(h0, cell.state_size, X3.shape[1], single, np.float64)
    with iv_precision(prec):
        H = _run_iv(cell, X3.astype(np.float64), h0a)
    H = H if full else cell.hidden_of(H)
    return H[:, 0, :] if single else H


def _run_iv(cell, X3, h0a):
    P = interval_params(cell)
    h = to_iv(h0a)
    T = X3.shape[0]
    H = np.empty((T,) + h.shape, dtype=object)
    for t in range(T):
        h = interval_step(cell, P, h, to_iv(X3[t]))
        H[t] = h
    return H


def interval_deviation_norm(cell, other, X, h0=None, *, prec: int = 113,
                            max_prec: int | None = None, rel_width: float = 1e-6):
    r"""Rigorous enclosure of :math:`\|h'_t - h_t\|_2` by interval simulation.

    Both trajectories are enclosed by :func:`interval_run`; the deviation is
    enclosed componentwise by :math:`[h'_t] - [h_t]` and its norm by
    :math:`\sqrt{\sum_i [e_{t,i}]^2}`. If ``max_prec`` is given, the precision is
    doubled (up to ``max_prec``) until every upper end is within ``rel_width``
    (relative, plus 1e-200 absolute) of its lower end, or until the bound is at
    the trivial cap.

    Parameters
    ----------
    cell, other : Cell
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, optional
    prec : int
        Starting precision in bits.
    max_prec : int, optional
    rel_width : float

    Returns
    -------
    lower, upper : ndarray, shape (T, B) or (T,)
        ``lower <= ||e_t||_2 <= upper`` rigorously.
    used_prec : int
    """
    delta_recurrent(cell, other)  # compatibility check
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h0a = as_h0(h0, cell.state_size, X3.shape[1], single, np.float64)
    X3 = X3.astype(np.float64)
    max_prec = prec if max_prec is None else max(prec, int(max_prec))
    p = prec
    while True:
        with iv_precision(p):
            H = cell.hidden_of(_run_iv(cell, X3, h0a))       # the output's deviation
            H2 = cell.hidden_of(_run_iv(other, X3, h0a))
            E = H2 - H
            sq = np.sum(E * E, axis=-1)
            nrm = _vec(_iv_sqrt_nonneg, sq)
            lo, hi = iv_lower(nrm), iv_upper(nrm)
        lo = np.maximum(lo, 0.0)
        ok = np.all((hi - lo) <= rel_width * lo + 1e-200) or np.all(
            hi >= 2 * np.sqrt(cell.n))
        if ok or p * 2 > max_prec:
            break
        p *= 2
    if single:
        lo, hi = lo[:, 0], hi[:, 0]
    return lo, hi, p
