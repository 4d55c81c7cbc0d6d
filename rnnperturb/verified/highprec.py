r"""High-precision (mpmath) propagation for ill-conditioned cases.

The float64 cells are backward stable step by step, but rounding errors are
propagated by the same step Jacobians as the deviation itself. When the
propagator grows (a chaotic net, :math:`\|\Phi(t,k)\|_2 \gg 1`) or the quantity
is a small difference of large ones (the deviation :math:`e_t = h'_t - h_t` at
a tiny :math:`\Delta W`), float64 rounding noise can dominate the answer. Here
the same recurrences are evaluated in mpmath with ``dps`` decimal digits (each
cell's own step and tangent, run over the namespace :data:`MP`); the
float64 parameters convert to mpmath numbers exactly, so the result is the
exact trajectory of the float64 network up to :math:`10^{-\text{dps}}`
relative rounding per operation.

- :func:`run_mp`, :func:`deviation_mp`, :func:`first_order_mp`: trajectories;
- :func:`propagator_mp`, :func:`propagator_norm_mp`: products of thousands of
  step Jacobians :math:`\Phi(t,k) = J_t \cdots J_{k+1}` without overflow or
  underflow (mpmath exponents are unbounded);
- :func:`check_float64`: a detector that estimates the float64 rounding error
  of a trajectory or deviation by Monte Carlo arithmetic (re-running with
  every state perturbed by one unit in the last place, Parker 1997) and warns
  (``RuntimeWarning`` naming the quantity) when it is visible.

Initial states are full states (N = ``cell.state_size`` components: the LSTM's
``[h, c]``, every layer of a stack; N = n for the Elman RNN, MGRU and GRU); the
trajectories are reported as by :meth:`rnnperturb.cells.Cell.run` and
:func:`rnnperturb.deviation`: the output (h) by default, all of the state with
``state='full'``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import mpmath
import numpy as np

from rnnperturb._checks import as_h0, as_inputs, check_compatible, check_int, check_positive
from rnnperturb.propagate.deviation import delta_recurrent
from rnnperturb._checks import as_generator as _rng
from rnnperturb.cells.namespace import FLOAT, concat, split

__all__ = ["MPNamespace", "MP", "run_mp", "deviation_mp", "first_order_mp", "propagator_mp",
           "propagator_norm_mp", "Float64Check", "check_float64"]

_mtanh = np.frompyfunc(mpmath.tanh, 1, 1)
_mexp = np.frompyfunc(mpmath.exp, 1, 1)
_mpf = np.frompyfunc(mpmath.mpf, 1, 1)
_tofloat = np.frompyfunc(float, 1, 1)


def _dps(dps) -> int:
    return check_int("dps", dps, low=16, high=10_000)


def _mp(A) -> np.ndarray:
    """Exact conversion of a float array to an object array of mpf."""
    A = np.asarray(A, dtype=np.float64)
    return _mpf(A).astype(object) if A.ndim else mpmath.mpf(float(A))


def _f(A) -> np.ndarray:
    return np.asarray(_tofloat(A), dtype=np.float64)


def _msig(a):
    return 1 / (1 + _mexp(-a))


def _mp_matvec(A, v):
    """``A v`` for a batch ``v`` (..., k) of object arrays: ``v @ A.T``."""
    return v @ A.T


class MPNamespace:
    """The array namespace of :mod:`rnnperturb.cells.namespace` over object
    arrays of ``mpmath.mpf`` (evaluate inside ``mpmath.workdps``): ``tanh``
    elementwise by mpmath, ``sigmoid`` as :math:`1/(1+e^{-a})`, ``matvec`` as
    ``v @ A.T``, ``lerp`` as for floats, ``asarray`` the exact conversion."""

    tanh = staticmethod(_mtanh)
    sigmoid = staticmethod(_msig)
    matvec = staticmethod(_mp_matvec)
    lerp = staticmethod(FLOAT.lerp)
    asarray = staticmethod(_mp)
    split = staticmethod(split)
    concat = staticmethod(concat)


#: The mpmath namespace.
MP = MPNamespace()


def _mp_eye(n: int) -> np.ndarray:
    return np.array([[mpmath.mpf(int(i == j)) for j in range(n)] for i in range(n)], object)


class _MPCell:
    """A cell's own step and tangent (:meth:`~rnnperturb.cells.Cell.forward`,
    :meth:`~rnnperturb.cells.Cell.tangent`) on object arrays of mpf (must run
    inside ``mpmath.workdps``)."""

    def __init__(self, cell):
        self.cell = cell
        self.P = {k: MP.asarray(getattr(cell, k))
                  for k in cell.recurrent_names + cell.input_params}
        self.n = cell.state_size          # the full state (N; n for most cells)

    def nominal(self, h, x):
        """``(h_t, aux, regressors)`` as :meth:`rnnperturb.cells.Cell.nominal`."""
        P, regs = self.P, {}

        def rec(k, a):
            regs[k] = a
            return MP.matvec(P[k], a)
        hn, aux = self.cell.forward(MP, P, h, x, rec)
        return hn, aux, regs

    def step(self, h, x):
        return self.nominal(h, x)[0]

    def tangent(self, h, aux, dh, force=None):
        """Tangent-linear step along ``(h, aux)``; ``force[k]`` is added to the
        tangent of the term :math:`W_k a_k`; the input does not move."""
        P, force = self.P, force or {}

        def rec(k, v):
            out = MP.matvec(P[k], v)
            return out + force[k] if k in force else out
        return self.cell.tangent(MP, P, h, aux, dh, rec, lambda k: 0)

    def jvp(self, h, x, dh, dW):
        """(h_t, dh_t) as in ``cell._jvp``; dW: dict of object arrays."""
        hn, aux, regs = self.nominal(h, x)
        force = {k: MP.matvec(v, regs[k]) for k, v in dW.items()}
        return hn, self.tangent(h, aux, dh, force)

    def jacobian(self, h, x):
        """Step Jacobian for one state h (n,) and input x (m,): object (n, n),
        the tangent step applied to the standard basis."""
        h2 = h[None, :]
        _, aux, _ = self.nominal(h2, x[None, :])
        Z = self.tangent(h2, aux, _mp_eye(self.n)[:, None, :])     # (n_j, 1, n_i)
        return np.ascontiguousarray(Z[:, 0, :].T)


def _run(mc, X3, h):
    H = np.empty((X3.shape[0],) + h.shape, dtype=object)
    for t in range(X3.shape[0]):
        h = mc.step(h, X3[t])
        H[t] = h
    return H


def run_mp(cell, X, h0=None, *, dps: int = 50, as_float: bool = True,
           state: str = "h") -> np.ndarray:
    r"""Run a cell in mpmath with ``dps`` decimal digits.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, n) or (n,), optional
    dps : int, keyword-only
        Decimal digits of the working precision (≥ 16).
    as_float : bool, keyword-only
        Return float64 (the high-precision result rounded once) when True,
        else an object array of ``mpmath.mpf``.
    state : {'h', 'full'}
        The output (as :meth:`~rnnperturb.cells.Cell.run`) or the full state.

    Returns
    -------
    H : ndarray, shape (T, B, n) or (T, n); N in place of n for 'full'
    """
    dps = _dps(dps)
    full = cell._check_state(state) == "full"
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, cell.dtype)
    with mpmath.workdps(dps):
        H = _run(_MPCell(cell), _mp(X3), _mp(h))
        H = _f(H) if as_float else H
    H = H if full else cell.hidden_of(H)
    return H[:, 0, :] if single else H


def deviation_mp(cell, other, X, h0=None, *, dps: int = 50, as_float: bool = True,
                 state: str = "h") -> np.ndarray:
    r"""The exact deviation :math:`e_t = h'_t - h_t` evaluated in mpmath.

    Both trajectories and their difference are computed with ``dps`` digits, so
    the cancellation in :math:`h'_t - h_t` and the growth of rounding noise
    through expanding Jacobians cost nothing as long as
    :math:`\max_t \|\Phi\| \cdot 10^{-\text{dps}} \ll \|e_t\|`.

    Parameters
    ----------
    cell, other : Cell
        Nominal and perturbed cell (differing only in recurrent matrices).
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, n) or (n,), optional
    dps : int, keyword-only
    as_float : bool, keyword-only
    state : {'h', 'full'}
        As in :func:`rnnperturb.deviation`.

    Returns
    -------
    E : ndarray, shape (T, B, n) or (T, n); N in place of n for 'full'
    """
    check_compatible(cell, other)
    dps = _dps(dps)
    full = cell._check_state(state) == "full"
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, cell.dtype)
    with mpmath.workdps(dps):
        Xm, hm = _mp(X3), _mp(h)
        E = _run(_MPCell(other), Xm, hm) - _run(_MPCell(cell), Xm, hm)
        E = _f(E) if as_float else E
    E = E if full else cell.hidden_of(E)
    return E[:, 0, :] if single else E


def first_order_mp(cell, other, X, h0=None, *, dps: int = 50, as_float: bool = True,
                   state: str = "h"):
    r"""The tangent-linear prediction :math:`\ell_t` (as :func:`rnnperturb.first_order`,
    ``state`` likewise) evaluated in mpmath.

    Returns
    -------
    L : ndarray, shape (T, B, n) or (T, n); N in place of n for 'full'
    """
    full = cell._check_state(state) == "full"
    dW = delta_recurrent(cell, other)
    dps = _dps(dps)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, cell.dtype)
    with mpmath.workdps(dps):
        mc = _MPCell(cell)
        dWm = {k: _mp(v) for k, v in dW.items()}
        Xm, hm = _mp(X3), _mp(h)
        ell = hm * 0
        L = np.empty((X3.shape[0],) + h.shape, dtype=object)
        for t in range(X3.shape[0]):
            hm, ell = mc.jvp(hm, Xm[t], ell, dWm)
            L[t] = ell
        L = _f(L) if as_float else L
    L = L if full else cell.hidden_of(L)
    return L[:, 0, :] if single else L


def _single_sequence(cell, X, h0, batch):
    X3, single = as_inputs(X, cell.m, cell.dtype)
    batch = check_int("batch", batch, low=0, high=X3.shape[1] - 1)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, cell.dtype)
    return X3[:, batch, :], h[batch]


def propagator_mp(cell, X, h0=None, *, start: int = 0, stop: int | None = None, batch: int = 0,
                  dps: int = 50) -> mpmath.matrix:
    r"""The propagator :math:`\Phi(t,k) = J_t J_{t-1}\cdots J_{k+1}` in mpmath.

    :math:`J_j = \partial h_j/\partial h_{j-1}` along the nominal trajectory of
    sequence ``batch``; ``k = start``, ``t = stop`` (default T), 0 ≤ k ≤ t ≤ T;
    :math:`\Phi(t,t) = I`.

    Returns
    -------
    Phi : mpmath.matrix, shape (n, n)
    """
    dps = _dps(dps)
    Xs, h = _single_sequence(cell, X, h0, batch)
    T = Xs.shape[0]
    stop = T if stop is None else check_int("stop", stop, low=0, high=T)
    start = check_int("start", start, low=0, high=stop)
    with mpmath.workdps(dps):
        mc = _MPCell(cell)
        Xm, hm = _mp(Xs), _mp(h)
        Phi = _mp_eye(cell.state_size)
        for t in range(stop):          # step t+1 maps h_t -> h_{t+1}
            if t >= start:
                Phi = mc.jacobian(hm, Xm[t]) @ Phi
            hm = mc.step(hm[None, :], Xm[t][None, :])[0]
        return mpmath.matrix(Phi.tolist())


def propagator_norm_mp(cell, X, h0=None, *, start: int = 0, stop: int | None = None,
                       batch: int = 0, dps: int = 50) -> mpmath.mpf:
    r"""Spectral norm :math:`\|\Phi(t,k)\|_2` (largest singular value, not the
    spectral radius) of a product of step Jacobians, in mpmath.

    Over thousands of steps the float64 product under- or overflows
    (:math:`0.8^{5000} \approx 10^{-485}`); the mpmath value does not.
    Arguments as in :func:`propagator_mp`.

    Returns
    -------
    norm : mpmath.mpf
    """
    Phi = propagator_mp(cell, X, h0, start=start, stop=stop, batch=batch, dps=dps)
    with mpmath.workdps(dps):
        s = mpmath.svd_r(Phi, compute_uv=False)
        return max(s[i] for i in range(s.rows))


# -------------------------------------------------------------------- detector
@dataclass(frozen=True, eq=False)
class Float64Check:
    r"""Result of :func:`check_float64`.

    Attributes
    ----------
    quantity : str
        ``"deviation"`` (:math:`e_t = h'_t - h_t`) or ``"trajectory"`` (:math:`h_t`).
    value : ndarray, shape (T, B, n) or (T, n)
        The plain float64 result.
    error : ndarray, shape (T, B) or (T,)
        Estimated float64 rounding error :math:`\|\hat v_t - v_t\|_2`: the
        largest distance of the Monte Carlo arithmetic re-runs from ``value``.
    scale : ndarray, shape (T, B) or (T,)
        :math:`\|v_t\|_2` of the float64 result.
    rtol : float
    reliable : bool
        ``error <= rtol * scale`` at every step (steps where both are 0 pass).
    first_bad_step : int or None
        First step t (1-based) where it fails.
    worst_ratio : float
        :math:`\max_t` error / scale.
    """

    quantity: str
    value: np.ndarray
    error: np.ndarray
    scale: np.ndarray
    rtol: float
    reliable: bool
    first_bad_step: int | None
    worst_ratio: float


def _run_mca(cell, other, X3, h, rng, ulps):
    """float64 run(s) with every new state perturbed by a factor 1 + u·ξ,
    ξ ~ U(-1, 1), u = ulps·2^-53, emulating an independent rounding history.

    With ``other``, both runs are advanced together and return the perturbed
    deviation; entries whose plain float64 states agree bitwise (identical
    computations, identical rounding) share the same ξ."""
    u = ulps * np.finfo(cell.dtype).eps / 2
    T = X3.shape[0]
    H = np.empty((T,) + h.shape, dtype=cell.dtype)
    g, gp, hp_ = h, h, h          # plain nominal, plain perturbed, MCA nominal
    hq = h                        # MCA perturbed
    for t in range(T):
        xi = rng.uniform(-1.0, 1.0, h.shape)
        hp_ = cell._step(hp_, X3[t])
        hp_ = hp_ * (1.0 + u * xi)
        if other is None:
            H[t] = hp_
            continue
        g = cell._step(g, X3[t])
        gp = other._step(gp, X3[t])
        xi2 = np.where(g == gp, xi, rng.uniform(-1.0, 1.0, h.shape))
        hq = other._step(hq, X3[t])
        hq = hq * (1.0 + u * xi2)
        H[t] = hq - hp_
    return H


def check_float64(cell, other, X, h0=None, *, rtol: float = 1e-3, samples: int = 3,
                  ulps: float = 2.0, seed=0, warn: bool = True) -> Float64Check:
    r"""Detect when float64 visibly fails for a trajectory or a deviation.

    Monte Carlo arithmetic: the computation is repeated ``samples`` times with
    every new hidden state multiplied by :math:`1 + u\,\xi`,
    :math:`\xi \sim U(-1, 1)`, :math:`u = \text{ulps}\cdot 2^{-53}` (one rounding
    of the state), independently in the nominal and the perturbed run. These
    relative perturbations travel through the same propagators
    :math:`\Phi(t,k)` as the true rounding errors, so the spread of the re-runs
    estimates the rounding error of the plain float64 result to within a
    modest factor. Where it exceeds ``rtol`` times the size of the result the
    float64 answer is not to be trusted: a ``RuntimeWarning`` names the
    quantity and the step, and :func:`deviation_mp` / :func:`run_mp` give the
    right answer.

    Parameters
    ----------
    cell : Cell
    other : Cell or None
        Perturbed cell: check the deviation :math:`h'_t - h_t`; None: check the
        trajectory :math:`h_t` of ``cell``.
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, n) or (n,), optional
    rtol : float, keyword-only
        Largest acceptable relative error per step.
    samples : int, keyword-only
        Number of Monte Carlo arithmetic re-runs (≥ 1).
    ulps : float, keyword-only
        Size of the injected perturbation in units of :math:`2^{-53}`.
    seed : int or numpy.random.Generator, keyword-only
    warn : bool, keyword-only
        Emit the RuntimeWarning (else only return the result).

    Returns
    -------
    Float64Check
    """
    rtol = check_positive("rtol", rtol)
    samples = check_int("samples", samples, low=1)
    ulps = check_positive("ulps", ulps)
    rng = _rng(seed)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, cell.dtype)
    if other is not None:
        check_compatible(cell, other)
        quantity = "deviation"
        value = other.run(X3, h) - cell.run(X3, h)
        reruns = [_run_mca(cell, other, X3, h, rng, ulps) for _ in range(samples)]
    else:
        quantity = "trajectory"
        value = cell.run(X3, h)
        reruns = [_run_mca(cell, None, X3, h, rng, ulps) for _ in range(samples)]
    error = np.max([np.linalg.norm(r - value, axis=-1) for r in reruns], axis=0)
    scale = np.linalg.norm(value, axis=-1)
    bad = error > rtol * scale
    ratio = np.where(scale > 0, error / np.where(scale > 0, scale, 1.0),
                     np.where(error > 0, np.inf, 0.0))
    steps = np.nonzero(bad.any(axis=1))[0]
    first = int(steps[0]) + 1 if steps.size else None
    worst = float(ratio.max()) if ratio.size else 0.0
    if single:
        value, error, scale = value[:, 0], error[:, 0], scale[:, 0]
    res = Float64Check(quantity, value, error, scale, rtol, first is None, first, worst)
    if warn and first is not None:
        name = "deviation e_t = h'_t - h_t" if quantity == "deviation" else "trajectory h_t"
        fix = "deviation_mp" if quantity == "deviation" else "run_mp"
        warnings.warn(
            f"{name}: float64 rounding error estimated at {worst:.3g} x its norm "
            f"(rtol={rtol:g}), first above tolerance at step t={first}; use "
            f"rnnperturb.verified.{fix} for this computation", RuntimeWarning, stacklevel=2)
    return res
