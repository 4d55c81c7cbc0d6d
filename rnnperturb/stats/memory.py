r"""Linear memory: Jaeger's memory capacity and the Fisher memory curve.

For the linear system driven by a white scalar signal :math:`x_t` (unit
variance) and white state noise :math:`\xi_t` (covariance :math:`\varepsilon I`),

.. math:: h_t = A h_{t-1} + v x_t + \xi_t ,

the input of delay :math:`k` reaches the state as :math:`u_k = A^k v`
(:math:`k = 0` is the current input). With the signal and noise Gramians over a
horizon :math:`K` (the system started from rest :math:`K` steps ago;
:math:`K = \infty` is the stationary state, which needs spectral radius
:math:`\rho(A) < 1`)

.. math:: C_s = \sum_{k<K} A^k v v^\top A^{k\top},\qquad
          C_n = \varepsilon\sum_{k<K} A^k A^{k\top},\qquad C_h = C_s + C_n,

* **memory capacity** (Jaeger 2001): the squared correlation between
  :math:`x_{t-k}` and its optimal linear readout from :math:`h_t` is
  :math:`r_k^2 = u_k^\top C_h^{+} u_k`, and
  :math:`\mathrm{MC} = \sum_k r_k^2 = \operatorname{tr}(C_h^{+}C_s) \le
  \operatorname{rank} C_h \le N` (equal to :math:`N` without noise for a
  controllable pair);
* **Fisher memory curve** (Ganguli, Huh & Sompolinsky 2008):
  :math:`J(k) = u_k^\top C_n^{-1} u_k` and
  :math:`J_\text{tot} = \sum_k J(k) = \operatorname{tr}(C_n^{-1}C_s)`.
  :math:`J_\text{tot} = \|v\|^2/\varepsilon` for any *normal* :math:`A` (= 1 in
  their normalisation :math:`\|v\| = \varepsilon = 1`), and
  :math:`J_\text{tot}\le N\|v\|^2/\varepsilon` for any :math:`A`, since
  :math:`vv^\top\preceq\|v\|^2 I`. Always :math:`r_k^2\le\min(1, J(k))`.

For a trained RNN, :func:`delay_linearisation` builds :math:`(A, v)` from its
blank-delay trajectory: :math:`A` the mean step Jacobian over the delay steps
and sequences, :math:`v` the mean input Jacobian along a given input direction
(for memorization, the symbol-difference direction
:math:`(e_1 - e_0)/\sqrt 2`), both at the delay-period states.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from rnnperturb._checks import as_h0, as_inputs, as_param, check_int, check_positive

__all__ = [
    "LinearMemory", "linear_memory", "memory_capacity", "fisher_memory_curve",
    "simulated_memory_curve", "input_jacobian", "DelayLinearisation", "delay_linearisation",
    "finite_time_lyapunov",
]


@dataclass(frozen=True, eq=False)
class LinearMemory:
    r"""Memory of the linear system :math:`h_t = Ah_{t-1} + vx_t + \xi_t`.

    Attributes
    ----------
    r2 : ndarray, shape (kmax,)
        :math:`r_k^2`, k = 0..kmax-1 (memory function).
    capacity : float
        :math:`\operatorname{tr}(C_h^+C_s)`, the sum over the whole horizon.
    fisher : ndarray, shape (kmax,) or None
        :math:`J(k)`; None when ``noise == 0``.
    fisher_total : float
        :math:`\operatorname{tr}(C_n^{-1}C_s)` (inf when ``noise == 0``).
    noise : float
        :math:`\varepsilon`.
    horizon : int or None
        K (None: stationary).
    """

    r2: np.ndarray
    capacity: float
    fisher: np.ndarray | None
    fisher_total: float
    noise: float
    horizon: int | None


def _gramians(A, v, horizon):
    n = A.shape[0]
    if horizon is None:
        rho = float(np.max(np.abs(np.linalg.eigvals(A))))
        if rho >= 1:
            raise ValueError(f"A: expected spectral radius < 1 for the stationary (horizon=None) "
                             f"Gramians, found {rho:.6g}; give a finite horizon=")
        Cs = scipy.linalg.solve_discrete_lyapunov(A, np.outer(v, v))
        Cn = scipy.linalg.solve_discrete_lyapunov(A, np.eye(n))
    else:
        Cs = np.zeros((n, n))
        Cn = np.zeros((n, n))
        P = np.eye(n)
        for _ in range(horizon):
            u = P @ v
            Cs += np.outer(u, u)
            Cn += P @ P.T
            P = A @ P
    return (Cs + Cs.T) / 2, (Cn + Cn.T) / 2


def _pinv_sym(C, rcond):
    w, U = np.linalg.eigh(C)
    keep = w > rcond * max(w[-1], 0.0)
    inv = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    return (U * inv) @ U.T


def linear_memory(A, v, *, noise: float = 1.0, horizon: int | None = None,
                  kmax: int | None = None, rcond: float = 1e-12) -> LinearMemory:
    r"""Memory function, capacity and Fisher memory curve of :math:`(A, v)`.

    Parameters
    ----------
    A : array_like, shape (N, N)
        Recurrent (linearised) matrix.
    v : array_like, shape (N,)
        Input vector.
    noise : float
        State-noise variance :math:`\varepsilon\ge 0` per coordinate and step.
    horizon : int, optional
        Number of past steps K in the Gramians; None for the stationary state
        (needs spectral radius :math:`\rho(A) < 1`).
    kmax : int, optional
        Length of the returned curves (default ``horizon``, or 100 when
        stationary).
    rcond : float
        Relative cut-off of the pseudo-inverse of :math:`C_h` (only matters
        without noise, where :math:`C_h` can be singular).

    Returns
    -------
    LinearMemory
    """
    A = as_param("A", A, ndim=2, dtype=np.float64)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A: expected a square matrix, found shape {A.shape}")
    v = as_param("v", v, shape=(A.shape[0],), dtype=np.float64)
    noise = check_positive("noise", noise, allow_zero=True)
    if horizon is not None:
        horizon = check_int("horizon", horizon, low=1)
    kmax = (horizon or 100) if kmax is None else check_int("kmax", kmax, low=1)
    if horizon is not None and kmax > horizon:
        raise ValueError(f"kmax: expected at most horizon={horizon}, found {kmax}")
    Cs, Cn1 = _gramians(A, v, horizon)
    Ch = Cs + noise * Cn1
    Chp = _pinv_sym(Ch, rcond)
    U = np.empty((kmax, A.shape[0]))
    u = v.copy()
    for k in range(kmax):
        U[k] = u
        u = A @ u
    r2 = np.einsum("ki,ij,kj->k", U, Chp, U)
    cap = float(np.trace(Chp @ Cs))
    if noise > 0:
        L = np.linalg.cholesky(noise * Cn1)
        Y = scipy.linalg.solve_triangular(L, U.T, lower=True)
        fisher = np.sum(Y * Y, axis=0)
        Z = scipy.linalg.solve_triangular(L, Cs, lower=True)
        Z = scipy.linalg.solve_triangular(L, Z.T, lower=True)
        ftot = float(np.trace(Z))
    else:
        fisher, ftot = None, np.inf
    return LinearMemory(r2, cap, fisher, ftot, noise, horizon)


def memory_capacity(A, v, *, noise: float = 0.0, horizon: int | None = None) -> float:
    r"""Jaeger's linear memory capacity :math:`\operatorname{tr}(C_h^+C_s)\le N`
    (see :func:`linear_memory`)."""
    return linear_memory(A, v, noise=noise, horizon=horizon, kmax=1).capacity


def fisher_memory_curve(A, v, *, noise: float = 1.0, horizon: int | None = None,
                        kmax: int | None = None) -> np.ndarray:
    r"""Fisher memory curve :math:`J(k) = v^\top A^{k\top}C_n^{-1}A^kv`,
    k = 0..kmax-1 (see :func:`linear_memory`; ``noise`` must be > 0)."""
    check_positive("noise", noise)
    return linear_memory(A, v, noise=noise, horizon=horizon, kmax=kmax).fisher


def simulated_memory_curve(A, v, *, noise: float, kmax: int, steps: int = 20000,
                           burn: int | None = None, seed=None) -> np.ndarray:
    r"""Reference: :math:`r_k^2` by simulating :math:`h_t = Ah_{t-1}+vx_t+\xi_t`
    with white Gaussian :math:`x` and :math:`\xi` and fitting a least-squares
    linear readout (with intercept) of :math:`x_{t-k}` from :math:`h_t`.

    Returns
    -------
    r2 : ndarray, shape (kmax,)
        Squared correlation between :math:`x_{t-k}` and its fitted readout
        (in-sample; its bias is about N/steps).
    """
    from rnnperturb._checks import as_generator as _rng

    A = as_param("A", A, ndim=2, dtype=np.float64)
    v = as_param("v", v, shape=(A.shape[0],), dtype=np.float64)
    noise = check_positive("noise", noise, allow_zero=True)
    kmax = check_int("kmax", kmax, low=1)
    steps = check_int("steps", steps, low=kmax + A.shape[0] + 2)
    rng = _rng(seed)
    burn = 10 * kmax if burn is None else check_int("burn", burn, low=0)
    Ttot = steps + burn + kmax
    x = rng.standard_normal(Ttot)
    xi = np.sqrt(noise) * rng.standard_normal((Ttot, A.shape[0]))
    H = np.empty((Ttot, A.shape[0]))
    h = np.zeros(A.shape[0])
    for t in range(Ttot):
        h = A @ h + v * x[t] + xi[t]
        H[t] = h
    t0 = burn + kmax
    Hs = np.column_stack([H[t0:], np.ones(steps)])
    Q, _ = np.linalg.qr(Hs)
    r2 = np.empty(kmax)
    for k in range(kmax):
        y = x[t0 - k:Ttot - k]
        yc = y - y.mean()
        fit = Q @ (Q.T @ y) - y.mean()
        r2[k] = (fit @ fit) / (yc @ yc)
    return r2


def input_jacobian(cell, h, x) -> np.ndarray:
    r"""Input Jacobian :math:`\partial h_t/\partial x_t` of one step, in float64
    (:meth:`rnnperturb.cells.Cell.input_jacobian`).

    Elman: :math:`D_tU`. MGRU:
    :math:`\operatorname{diag}(c-h)S U_f + \operatorname{diag}(f\odot(1-c^2))
    [W_h\operatorname{diag}(h)S U_f + U_h]`, :math:`S=\operatorname{diag}(f\odot(1-f))`.

    Parameters
    ----------
    cell : Cell
    h : array_like, shape (B, n) or (n,)
    x : array_like, shape (B, m) or (m,)

    Returns
    -------
    ndarray, shape (B, n, m)
    """
    return cell.astype(np.float64).input_jacobian(np.atleast_2d(h), np.atleast_2d(x))


@dataclass(frozen=True, eq=False)
class DelayLinearisation:
    """Linearisation of a cell about its blank-delay trajectory.

    Attributes
    ----------
    A : ndarray, shape (n, n)
        Mean step Jacobian over the delay steps and sequences.
    v : ndarray, shape (n,)
        Mean input Jacobian times the input direction.
    gate_mean : float or None
        Mean overwrite gate over the delay (:meth:`Cell.overwrite_gate`; the
        MGRU's f, a small value keeps the state); None for a cell without a
        gate (the Elman RNN).
    jacobian_spread : float
        Relative spread ``mean ||J_t - A||_F / ||A||_F`` (how well one A
        describes the delay).
    steps : ndarray of int
        The 1-based time steps averaged over.
    """

    A: np.ndarray
    v: np.ndarray
    gate_mean: float | None
    jacobian_spread: float
    steps: np.ndarray


def delay_linearisation(cell, X, steps, direction, *, h0=None) -> DelayLinearisation:
    r"""Average step and input Jacobians over given (delay) steps.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    steps : array_like of int
        1-based steps t whose Jacobians :math:`\partial h_t/\partial h_{t-1}`
        (evaluated at :math:`h_{t-1}, x_t`) are averaged; for memorization
        ``range(L + 1, L + D + 1)`` is the blank delay.
    direction : array_like, shape (m,)
        Input direction d; :math:`v = \operatorname{mean}_t(\partial h_t/\partial x_t)\,d`.
    h0 : array_like, optional

    Returns
    -------
    DelayLinearisation
    """
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, np.float64)
    cell = cell.astype(np.float64)
    steps = np.asarray(steps)
    if steps.ndim != 1 or steps.size == 0 or steps.dtype.kind not in "iu" \
            or steps.min() < 1 or steps.max() > X3.shape[0]:
        raise ValueError(f"steps: expected 1-based step indices in [1, {X3.shape[0]}], "
                         f"found {steps!r}")
    d = as_param("direction", direction, shape=(cell.m,), dtype=np.float64)
    want = set(int(s) for s in steps)
    Js, vs, gates = [], [], []
    for t in range(1, X3.shape[0] + 1):
        x = X3[t - 1].astype(np.float64)
        if t in want:
            hn, J, _ = cell.linearise(h, x)
            Js.append(J)
            vs.append(cell.input_jacobian(h, x) @ d)
            gate = cell.overwrite_gate(cell.nominal(h, x)[1])
            if gate is not None:
                gates.append(gate)
            h = hn
        else:
            h = cell.step(h, x)
        if t >= max(want):
            break
    Js = np.concatenate(Js)
    A = Js.mean(0)
    spread = float(np.mean(np.linalg.norm(Js - A, axis=(1, 2))) / np.linalg.norm(A))
    v = np.concatenate(vs).mean(0)
    gate = float(np.mean(gates)) if gates else None
    return DelayLinearisation(A, v, gate, spread, np.array(sorted(want)))


def finite_time_lyapunov(cell, X, *, steps=None, h0=None) -> np.ndarray:
    r"""Finite-time Lyapunov exponents along a trajectory (QR method).

    Along the nominal trajectory of ``cell`` driven by ``X``, the propagator of
    the steps :math:`t_0..t` is :math:`\Phi(t, t_0-1) = J_t J_{t-1}\cdots J_{t_0}`,
    :math:`J_s = \partial h_s/\partial h_{s-1}` (:meth:`Cell.jacobian`). Its
    finite-time Lyapunov exponents are :math:`\lambda_i(t) = \tfrac1\tau\log
    \sigma_i(\Phi(t, t_0-1))`, :math:`\tau = t - t_0 + 1`. They are estimated
    without forming :math:`\Phi` (whose entries over- or underflow on long
    delays) by the QR (Benettin) method, :math:`Q_0 = I`,

    .. math:: Q_s R_s = J_s Q_{s-1},\qquad
              \hat\lambda_i(t) = \frac1\tau\sum_{s=t_0}^{t}\log|(R_s)_{ii}| ,

    so :math:`\Phi = Q_t R_t\cdots R_{t_0}`. Properties (tested):

    * :math:`\sum_i\hat\lambda_i(t) = \sum_i\lambda_i(t) = \tfrac1\tau\log|\det\Phi|`
      exactly;
    * both sorted decreasingly, the estimate is majorised by the exact
      spectrum: :math:`\sum_{i\le k}\hat\lambda_i\le\sum_{i\le k}\lambda_i`
      for every k (the product of any k diagonal entries of the triangular
      :math:`R_t\cdots R_{t_0}` is the determinant of a k x k principal
      submatrix, whose singular values are bounded by those of :math:`\Phi`),
      with equality at k = n; in particular :math:`\hat\lambda_1\le\lambda_1`;
    * exact (:math:`\hat\lambda = \lambda`) when every :math:`J_s` is
      diagonal (Q stays a signed identity); in general
      :math:`\hat\lambda_i - \lambda_i = O(1/\tau)` for a generic trajectory
      with distinct exponents;
    * independent of the sign convention of the QR factorisation (only
      :math:`|R_{ii}|` enters).

    Parameters
    ----------
    cell : Cell
        Any cell (only :meth:`Cell.step` and :meth:`Cell.jacobian` are used);
        evaluated in float64.
    X : array_like, shape (T, B, m) or (T, m)
    steps : array_like of int, optional
        Consecutive 1-based steps :math:`t_0, t_0+1, \dots, t_1` whose
        Jacobians form the propagator (for memorization the blank delay
        ``range(L + 1, L + D + 1)``); default all steps 1..T.
    h0 : array_like, shape (B, n) or (n,), optional
        Initial state (zeros when None).

    Returns
    -------
    ndarray, shape (S, B, n), or (S, n) for a single sequence ``X`` of shape (T, m)
        ``out[j, b]`` is the spectrum :math:`\hat\lambda(t_0 + j)` of sequence
        b after :math:`\tau = j + 1` steps, S = len(steps), sorted in decreasing
        order (a unit with a singular Jacobian gives -inf).
    """
    X3, single = as_inputs(X, cell.m, cell.dtype)
    T, B = X3.shape[:2]
    h = as_h0(h0, cell.state_size, B, single, np.float64)
    cell = cell.astype(np.float64)
    if steps is None:
        steps = np.arange(1, T + 1)
    steps = np.asarray(steps)
    if steps.ndim != 1 or steps.size == 0 or steps.dtype.kind not in "iu" \
            or steps.min() < 1 or steps.max() > T or np.any(np.diff(steps) != 1):
        raise ValueError(f"steps: expected consecutive 1-based step indices in [1, {T}], "
                         f"found {steps!r}")
    t0, t1 = int(steps[0]), int(steps[-1])
    n = cell.state_size           # the exponents of the full state (N of them)
    Q = np.broadcast_to(np.eye(n), (B, n, n)).copy()
    logsum = np.zeros((B, n))
    out = np.empty((t1 - t0 + 1, B, n))
    with np.errstate(divide="ignore"):
        for t in range(1, t1 + 1):
            x = X3[t - 1].astype(np.float64)
            if t >= t0:
                Q, R = np.linalg.qr(cell.jacobian(h, x) @ Q)
                logsum += np.log(np.abs(np.diagonal(R, axis1=1, axis2=2)))
                out[t - t0] = logsum / (t - t0 + 1)
            h = cell.step(h, x)
    out = -np.sort(-out, axis=-1)
    return out[:, 0, :] if single else out
