r"""First-order response to random recurrent-weight noise (frozen or fresh).

Every recurrent matrix :math:`W_m` (``W`` for the Elman RNN; ``Wf`` and ``Wh``
for the MGRU) receives independent zero-mean noise :math:`\Delta W_m` with
entry-wise variance :math:`V^{(m)}_{ij}` (``std**2`` by default). The
tangent-linear model (``DESIGN.md`` §2(a), §2(d)) is

.. math::
    \ell_t = J_t \ell_{t-1} + \sum_m B^{(m)}_t \Delta W_m a^{(m)}_t, \qquad \ell_0 = 0,

with the step Jacobian :math:`J_t = \partial h_t/\partial h_{t-1}`, the forcing
input :math:`a^{(m)}_t` of matrix :math:`m` and its output map
:math:`B^{(m)}_t`:

* Elman: :math:`a_t = h_{t-1}`, :math:`B_t = D_t = \operatorname{diag}(\tanh'(a_t))`.
* MGRU, :math:`W_h`: :math:`a_t = f_t\odot h_{t-1}`,
  :math:`B_t = \operatorname{diag}(f_t\odot(1-c_t^2))`.
* MGRU, :math:`W_f`: :math:`a_t = h_{t-1}`,
  :math:`B_t = [\operatorname{diag}(c_t-h_{t-1}) + \operatorname{diag}(f_t\odot(1-c_t^2))
  W_h \operatorname{diag}(h_{t-1})]\operatorname{diag}(f_t\odot(1-f_t))`.

**Frozen noise** (one draw for the whole sequence). Write
:math:`\Delta W = \sum_{ij}\Delta W_{ij} e_i e_j^\top`. Then
:math:`\ell_t = \sum_{ij} \Delta W_{ij}\, M^{(j)}_t e_i` with the *carried*
matrices

.. math::
    M^{(j)}_t = \sum_{k\le t} \Phi(t,k) B_k\, a_{k,j}
              = J_t M^{(j)}_{t-1} + a_{t,j} B_t ,

so that :math:`\mathbb E\|\ell_t\|^2 = \sum_{ij} V_{ij} \|M^{(j)}_t e_i\|^2`
exactly. This equals the double sum
:math:`\sum_{k,l}\operatorname{tr}(\Phi(t,k)B_k\operatorname{diag}(V(a_k\odot a_l))B_l^\top\Phi(t,l)^\top)`
but costs :math:`O(T r n^3)` per sequence instead of :math:`O(T^2 n^3)` for
one output time (:math:`O(T^3 n^3)` for all of them). When the variance of a
matrix is one scalar :math:`s^2`, :math:`\mathbb E[\Delta W a b^\top\Delta W^\top] = s^2 (a^\top b) I`
only depends on inner products of the forcing inputs, so ``j`` may run over
*any* orthonormal basis; we use the principal axes of
:math:`\sum_t a_t a_t^\top` and drop the axes with zero weight, so ``r`` is the
rank of the trajectory (small exactly when the trajectory is coherent).

**Fresh noise** (a new draw at every step): only :math:`k=l` survives and the
covariance :math:`P_t = \mathbb E[\ell_t\ell_t^\top]` obeys
:math:`P_t = J_t P_{t-1} J_t^\top + \sum_m B^{(m)}_t \operatorname{diag}(V^{(m)}(a^{(m)}_t\odot a^{(m)}_t)) B^{(m)\top}_t`,
:math:`O(T n^3)`.

The answer is first order: the exact mean squared deviation differs from it by
a relative :math:`O(s)` (checked against Monte Carlo of the exact simulation
in ``tests/test_noise.py``).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, as_param, check_bool, check_positive
from rnnperturb.cells import FLOAT
from rnnperturb.propagate.deviation import regressor_trajectory

__all__ = ["noise_response", "noise_variances", "monte_carlo_noise", "MonteCarloNoise",
           "linearised_windows"]

# elements of the carried tensor handled at once (bounds memory to ~0.3 GB)
_CHUNK_ELEMS = 1 << 22


def noise_variances(cell, *, std=None, var=None) -> dict:
    """Resolve ``std``/``var`` into one entry-wise variance per recurrent matrix.

    Parameters
    ----------
    cell : Cell
    std : float, optional
        Standard deviation of every entry of the matrices not named in ``var``.
    var : dict of str to (float or array_like (n, n)), optional
        Entry-wise variance per recurrent matrix (e.g. ``step**2 / 12`` for
        uniform quantization with step ``step``; ``std**2 * mask`` for noise on
        the kept entries of a pruning mask).

    Returns
    -------
    dict of str to (float or ndarray (n, n))
        Matrices with zero variance are left out.
    """
    if std is None and var is None:
        raise ValueError("std: expected a standard deviation >= 0 (or var=), found None")
    s2 = 0.0 if std is None else check_positive("std", std, allow_zero=True) ** 2
    out = {k: s2 for k in cell.recurrent_names}
    if var is not None:
        if not isinstance(var, dict):
            raise ValueError(f"var: expected a dict over {cell.recurrent_names}, found "
                             f"{type(var).__name__}")
        unknown = sorted(set(var) - set(cell.recurrent_names))
        if unknown:
            raise ValueError(f"var: expected keys among {list(cell.recurrent_names)}, "
                             f"found {unknown}")
        for k, v in var.items():
            if isinstance(v, numbers.Real) and not isinstance(v, bool):
                out[k] = check_positive(f"var[{k!r}]", v, allow_zero=True)
            else:
                arr = as_param(f"var[{k!r}]", v, shape=(cell.n, cell.n), dtype=np.float64)
                if np.any(arr < 0):
                    raise ValueError(f"var[{k!r}]: expected entries >= 0, found minimum "
                                     f"{float(arr.min()):.3g}")
                out[k] = arr
    return {k: v for k, v in out.items() if not (np.ndim(v) == 0 and v == 0.0)}


def _basis(A, uniform, rtol):
    """Orthonormal basis (B, n, r) of the forcing inputs of one matrix."""
    B, n = A.shape[1], A.shape[2]
    if not uniform:
        return np.broadcast_to(np.eye(n), (B, n, n))
    S = np.einsum("tbi,tbj->bij", A, A)
    w, U = np.linalg.eigh(S)                         # ascending
    keep = w > rtol * np.maximum(w[:, -1:], np.finfo(float).tiny)
    r = max(int(keep.sum(axis=1).max()), 1)
    U = U[:, :, n - r:] * keep[:, None, n - r:]      # zero columns for dropped axes
    return U


def _frozen(cell, X3, h, V, rtol, quiet=True, rows=None):
    from rnnperturb.report.progress import progress

    T, B = X3.shape[:2]
    n, N = cell.n, cell.state_size
    A = regressor_trajectory(cell, X3, h.copy())
    bases = {k: _basis(A[k], np.ndim(V[k]) == 0, rtol) for k in V}
    out = np.zeros((T, B))
    idx = np.arange(n)
    r_tot = sum(U.shape[2] for U in bases.values())
    chunk = max(1, _CHUNK_ELEMS // (N * n * r_tot))
    for b0 in range(0, B, chunk):
        sl = slice(b0, min(B, b0 + chunk))
        hb = h[sl].copy()
        nb = hb.shape[0]
        M = {k: np.zeros((nb, N, U.shape[2], n)) for k, U in bases.items()}
        for t in progress(range(T), desc=f"noise_response (frozen) {b0 + 1}/{B}",
                          quiet=quiet):
            hn, J, forc = cell.linearise(hb, X3[t, sl])
            for k, Mk in M.items():
                r = Mk.shape[2]
                Mk = (J @ Mk.reshape(nb, N, r * n)).reshape(nb, N, r, n)
                diag, Bt, a = forc[k]
                coef = np.einsum("bi,bir->br", a, bases[k][sl])      # (nb, r)
                if diag:
                    Mk[:, idx, :, idx] += Bt.T[:, :, None] * coef[None, :, :]
                else:
                    Mk += coef[:, None, :, None] * Bt[:, :, None, :]
                M[k] = Mk
                Mo = Mk if rows is None else Mk[:, rows]
                sq = np.einsum("bpji,bpji->bji", Mo, Mo)              # (nb, r, n)
                if np.ndim(V[k]) == 0:
                    out[t, sl] += V[k] * sq.sum(axis=(1, 2))
                else:
                    out[t, sl] += np.einsum("bji,ij->b", sq, V[k])
            hb = hn
    return out


def linearised_windows(cell, X3, h, per_step=1):
    r"""The tangent-linear pieces of a whole trajectory, a window of steps at a time.

    The nominal trajectory is run first (cheap: one step per time); the
    linearisation (:meth:`~rnnperturb.cells.Cell.linearise`) is then evaluated
    for every step of a window *in one batched call* (the steps of a window
    are independent once the states are known), so the Python overhead of the
    tangent step is paid once per window instead of once per step.

    Parameters
    ----------
    cell : Cell
    X3 : ndarray, shape (T, B, m)
    h : ndarray, shape (B, N)
        The initial state (N = ``cell.state_size``).
    per_step : int
        Number of (B, N, N) arrays the caller keeps per step (sizes the window
        so that about ``_CHUNK_ELEMS`` elements are held at once).

    Yields
    ------
    t0 : int
        0-based index of the window's first step.
    J : ndarray, shape (w, B, N, N)
        Step Jacobians of steps ``t0 .. t0 + w - 1``.
    forcing : dict of str to (diag, B_t (w, B, n) or (w, B, N, n), a (w, B, n))
        As returned by ``linearise``, with a leading window axis.
    """
    T, B = X3.shape[:2]
    n, N = cell.n, cell.state_size
    H = np.empty((T, B, N))
    H[0] = h
    for t in range(T - 1):
        H[t + 1] = cell.nominal(H[t], X3[t])[0]
    w = max(1, min(T, _CHUNK_ELEMS // (B * N * N * max(per_step, 1))))
    for t0 in range(0, T, w):
        t1 = min(T, t0 + w)
        k = t1 - t0
        _, J, forc = cell.linearise(H[t0:t1].reshape(k * B, N), X3[t0:t1].reshape(k * B, -1))
        J = J.reshape(k, B, N, N)
        forc = {name: (d, Bt.reshape((k, B) + Bt.shape[1:]), a.reshape(k, B, n))
                for name, (d, Bt, a) in forc.items()}
        yield t0, J, forc


def _fresh(cell, X3, h, V, rows=None):
    r"""Covariance recursion :math:`P_t = J_tP_{t-1}J_t^\top + \sum_m F_{m,t}F_{m,t}^\top`
    (:math:`F = B\operatorname{diag}(\sqrt q)`, :math:`q = V(a\odot a)`; a diagonal
    :math:`B` adds :math:`B^2 q` to the diagonal), linearised a window at a time."""
    T, B = X3.shape[:2]
    n, N = cell.n, cell.state_size
    out = np.zeros((T, B))
    P = np.zeros((B, N, N))
    idx = np.arange(n)
    nondiag = [k for k in V if k not in cell.diagonal_forcing]
    for t0, J, forc in linearised_windows(cell, X3, h, per_step=1 + 2 * len(nondiag)):
        w = J.shape[0]
        qd = np.zeros((w, B, n))                  # diagonal forcing covariance
        F = []                                    # factors of the full ones
        for k, Vk in V.items():
            diag, Bt, a = forc[k]
            q = Vk * np.sum(a * a, axis=2)[..., None] if np.ndim(Vk) == 0 else (a * a) @ Vk.T
            if diag:
                qd += Bt * Bt * q
            else:
                F.append(Bt * np.sqrt(q)[:, :, None, :])
        JT = np.swapaxes(J, 2, 3)
        for s in range(w):
            P = J[s] @ P @ JT[s]
            for Fk in F:
                P += Fk[s] @ np.swapaxes(Fk[s], 1, 2)
            P[:, idx, idx] += qd[s]
            out[t0 + s] = (np.trace(P, axis1=1, axis2=2) if rows is None
                           else P[:, rows, rows].sum(axis=1))
    return out


def _frozen_at(cell, X3, h, V, times, rows=None):
    r"""Frozen response at selected 1-based steps by the adjoint (backward) sums.

    For one output time t: :math:`\Psi_k = \Phi(t,k)B_k` backward from
    :math:`\Psi_t = B_t`, and :math:`Y_j = \sum_k a_{k,j}\Psi_k`; then
    :math:`\mathbb E\|\ell_t\|^2 = \sum_{pij} V_{ij} (Y_j)_{pi}^2`. Cost
    :math:`O(t n^3)` per output time and sequence (stores the step Jacobians
    up to ``max(times)``).
    """
    T, B = X3.shape[:2]
    n, N = cell.n, cell.state_size
    tmax = int(max(times))
    out = np.zeros((len(times), B))
    per_seq = tmax * N * N * (1 + len(V))
    sel = np.eye(N) if rows is None else np.eye(N)[rows]          # (p, N): reported rows
    p_ = sel.shape[0]
    chunk = max(1, _CHUNK_ELEMS // per_seq)
    idx = np.arange(n)
    for b0 in range(0, B, chunk):
        sl = slice(b0, min(B, b0 + chunk))
        hb = h[sl].copy()
        nb = hb.shape[0]
        Js, forcs = [], []
        for t in range(tmax):
            hb, J, forc = cell.linearise(hb, X3[t, sl])
            Js.append(J)
            forcs.append({k: forc[k] for k in V})
        for ti, t in enumerate(times):
            Phi = np.broadcast_to(sel, (nb, p_, N)).copy()
            Z = {k: np.empty((nb, t, p_ * n)) for k in V}           # Psi_k, flattened
            for k in range(t - 1, -1, -1):                           # 0-based step k
                if k < t - 1:
                    Phi = Phi @ Js[k + 1]
                for name in V:
                    diag, Bt, _ = forcs[k][name]
                    Psi = Phi * Bt[:, None, :] if diag else Phi @ Bt
                    Z[name][:, k] = Psi.reshape(nb, p_ * n)
            for name, Vk in V.items():
                A = np.stack([forcs[k][name][2] for k in range(t)], axis=2)   # (nb, n, t)
                Y = (A @ Z[name]).reshape(nb, n, p_, n)                       # [b, j, p, i]
                sq = np.einsum("bjpi,bjpi->bji", Y, Y)
                out[ti, sl] += (Vk * sq.sum(axis=(1, 2)) if np.ndim(Vk) == 0
                                else np.einsum("bji,ij->b", sq, Vk))
    return out



def noise_response(cell, X, *, std=None, frozen: bool = True, var=None, h0=None,
                   times=None, rtol: float = 1e-13, quiet: bool = True,
                   state: str = "h") -> np.ndarray:
    r"""First-order mean squared deviation :math:`\mathbb E\|e_t\|_2^2` under
    random recurrent-weight noise.

    .. math::
        \mathbb E\|\ell_t\|^2 = \sum_{k,l\le t}\operatorname{tr}\!\big(
        \Phi(t,k) B_k \operatorname{diag}(V(a_k\odot a_l)) B_l^\top \Phi(t,l)^\top\big)
        \quad\text{(frozen)},\qquad
        \sum_{k\le t}\operatorname{tr}\!\big(\Phi(t,k) B_k \operatorname{diag}(V(a_k\odot a_k))
        B_k^\top \Phi(t,k)^\top\big)\quad\text{(fresh)},

    summed over the recurrent matrices (independent noise on each), evaluated
    by the recursions of the module docstring, not by the double sum.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    std : float, optional
        Standard deviation ``s`` of every entry of every recurrent matrix
        (i.i.d. :math:`N(0, s^2)`; only the variance matters at first order).
    frozen : bool
        True: one draw for the whole sequence (a compressed or drifted net).
        False: a fresh independent draw at every step.
    var : dict of str to (float or array_like (n, n)), optional
        Entry-wise variance per recurrent matrix, overriding ``std`` for the
        named matrices (unnamed ones get ``std**2``, or 0 when ``std`` is None).
        Uniform quantization with step ``q`` is ``q**2 / 12``; a pruning mask
        ``m`` with noise on the kept entries is ``std**2 * m``.
    h0 : array_like, shape (B, N) or (N,), optional
        Initial state (N = ``cell.state_size``).
    times : array_like of int, optional
        Only these 1-based steps (e.g. the recall steps). Frozen noise is then
        computed backwards from each of them (adjoint sums,
        :math:`O(t n^3)` per requested step instead of :math:`O(T r n^3)` for
        the whole curve): much cheaper for a few steps.
    rtol : float
        Frozen mode with scalar variance: principal axes of the forcing
        trajectory whose weight (eigenvalue of :math:`\sum_t a_ta_t^\top`) is
        below ``rtol`` times the largest are dropped. Each axis contributes a
        separate non-negative term, so dropping only lowers the result; the
        default keeps every axis that is not numerically zero.
    quiet : bool
        No progress bar when True (the frozen whole-curve recursion can take
        seconds for n >= 64).
    state : {'h', 'full'}
        Deviation of the output (what a readout sees: the state itself for
        N = n, the LSTM's h, a stack's top h) or of the full state.

    Returns
    -------
    S : ndarray, shape (T, B) or (T,)
        ``S[t-1]`` is the first-order :math:`\mathbb E\|h'_t - h_t\|_2^2` (a
        *squared* norm). With ``times``: shape (len(times), B) or
        (len(times),), in the order given.
    """
    check_bool("frozen", frozen)
    rtol = check_positive("rtol", rtol, allow_zero=True)
    V = noise_variances(cell, std=std, var=var)
    rows = cell.output_rows(state)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    X3 = X3.astype(np.float64)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, np.float64)
    cell = cell.astype(np.float64)
    if times is not None:
        tarr = np.atleast_1d(np.asarray(times))
        if tarr.ndim != 1 or tarr.size == 0 or tarr.dtype.kind not in "iu" \
                or tarr.min() < 1 or tarr.max() > X3.shape[0]:
            raise ValueError(f"times: expected 1-based steps in [1, {X3.shape[0]}], "
                             f"found {times!r}")
        times = [int(t) for t in tarr]
    if not V:
        out = np.zeros(X3.shape[:2] if times is None else (len(times), X3.shape[1]))
    elif frozen and times is not None:
        out = _frozen_at(cell, X3, h, V, times, rows)
    elif frozen:
        out = _frozen(cell, X3, h, V, rtol, quiet, rows)
    else:
        out = _fresh(cell, X3[:max(times)] if times else X3, h, V, rows)
        if times is not None:
            out = out[np.array(times) - 1]
    return out[:, 0] if single else out


@dataclass(frozen=True, eq=False)
class MonteCarloNoise:
    """Monte Carlo estimate of the mean squared deviation under weight noise.

    Attributes
    ----------
    mean : ndarray, shape (T, B) or (T,)
        Sample mean of :math:`\\|h'_t - h_t\\|_2^2` over the draws.
    sem : ndarray, same shape
        Its standard error (sample std / sqrt(draws)).
    draws : int
    """

    mean: np.ndarray
    sem: np.ndarray
    draws: int


def _mc_step(cell, h, x, Wd, rng, V, frozen):
    r"""Exact step for ``d`` draws at once: h (d, B, n), x (B, m): the cell's own
    :meth:`~rnnperturb.cells.Cell.forward` with every recurrent product
    :math:`W_k a` replaced by :math:`W_k a + \Delta W_k a`.

    Frozen: ``Wd[name]`` holds the per-draw perturbation (d, n, n).
    Fresh: :math:`\Delta W_t a` is drawn directly; for i.i.d. entries it is
    exactly :math:`N(0, \operatorname{diag}(V (a\odot a)))` and independent
    of the past, so no matrix needs to be drawn.
    """
    def pert(name, a):
        if name not in V:
            return 0.0
        if frozen:
            return np.einsum("dij,dbj->dbi", Wd[name], a)
        Vk = V[name]
        q = Vk * np.sum(a * a, -1, keepdims=True) if np.ndim(Vk) == 0 else (a * a) @ Vk.T
        return np.sqrt(q) * rng.standard_normal(a.shape)

    P = cell.params

    def rec(name, a):
        return FLOAT.matvec(P[name], a) + pert(name, a)
    return cell.forward(FLOAT, P, h, x, rec)[0]


def monte_carlo_noise(cell, X, *, std=None, frozen: bool = True, var=None, h0=None,
                      draws: int = 2000, seed=None, chunk: int = 500,
                      quiet: bool = True, state: str = "h") -> MonteCarloNoise:
    r"""Reference: Monte Carlo of the *exact* simulation under weight noise.

    Draws Gaussian :math:`\Delta W_m` with entry-wise variance ``V`` (same
    resolution of ``std``/``var`` as :func:`noise_response`), runs the
    perturbed cell exactly and averages :math:`\|h'_t-h_t\|_2^2`. Frozen noise
    draws whole matrices; fresh noise draws :math:`\Delta W_t a_t` directly
    (exact in distribution).

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    std, frozen, var, h0, state
        As in :func:`noise_response`.
    draws : int
        Number of independent draws.
    seed : int or numpy.random.Generator
    chunk : int
        Draws simulated at once.
    quiet : bool
        No progress bar when True.

    Returns
    -------
    MonteCarloNoise
    """
    from rnnperturb._checks import check_int
    from rnnperturb.report.progress import progress
    from rnnperturb._checks import as_generator as _rng

    draws = check_int("draws", draws, low=2)
    chunk = check_int("chunk", chunk, low=1)
    rng = _rng(seed)
    V = noise_variances(cell, std=std, var=var)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    X3 = X3.astype(np.float64)
    full = cell._check_state(state) == "full"
    N = cell.state_size
    h0_ = as_h0(h0, N, X3.shape[1], single, np.float64)
    cell = cell.astype(np.float64)
    Hn = cell.run(X3, h0_, state="full")
    part = (lambda a: a) if full else cell.hidden_of
    T, B = X3.shape[:2]
    s1 = np.zeros((T, B))
    s2 = np.zeros((T, B))
    starts = list(range(0, draws, chunk))
    for d0 in progress(starts, desc="monte carlo", quiet=quiet):
        d = min(chunk, draws - d0)
        Wd = {}
        if frozen:
            for k, Vk in V.items():
                Wd[k] = np.sqrt(Vk) * rng.standard_normal((d, cell.n, cell.n))
        h = np.broadcast_to(h0_, (d, B, N)).copy()
        for t in range(T):
            h = _mc_step(cell, h, X3[t], Wd, rng, V, frozen)
            e2 = np.sum(part(h - Hn[t]) ** 2, axis=-1)
            s1[t] += e2.sum(0)
            s2[t] += (e2 ** 2).sum(0)
    mean = s1 / draws
    var_ = np.maximum(s2 / draws - mean ** 2, 0.0) * draws / (draws - 1)
    sem = np.sqrt(var_ / draws)
    if single:
        mean, sem = mean[:, 0], sem[:, 0]
    return MonteCarloNoise(mean, sem, draws)
