r"""Low-rank truncation of the recurrent matrices: plain, data-aware and
propagation-weighted.

All three return a cell of the same type in which only the named recurrent
matrices are replaced by rank-:math:`r` matrices :math:`A`; inputs, biases and
readout are untouched.

**Plain** (``truncate_svd(cell, rank=r)``): Eckart–Young–Mirsky,
:math:`A = \sum_{i\le r}\sigma_i u_i v_i^\top`, so :math:`\|W-A\|_2 = \sigma_{r+1}`
and :math:`\|W-A\|_F = (\sum_{i>r}\sigma_i^2)^{1/2}`.

**Data-aware** (``data=X``): :math:`A` minimises the mean squared *forcing* over
the nominal trajectory of ``X``,

.. math::
    \min_{\operatorname{rank} A\le r}\ \frac1N\sum_{t,b}\|(W-A)\,a_{t,b}\|_2^2
    = \|(W-A)M^{1/2}\|_F^2, \qquad M = \frac1N\sum_{t,b} a_{t,b}a_{t,b}^\top ,

with the regressor :math:`a_t = h_{t-1}` for :math:`W` and :math:`W_f`, and
:math:`a_t = f_t\odot h_{t-1}` for :math:`W_h` of the MGRU (nominal gates), over
the steps t = 1..T and the B sequences (N = TB).

*Derivation.* For any A of rank ≤ r, :math:`AM^{1/2}` has rank ≤ r, so by
Eckart–Young the objective is at least :math:`\|C - [C]_r\|_F^2` with
:math:`C = WM^{1/2}` and :math:`[C]_r = \Pi_r C`, where :math:`\Pi_r = U_rU_r^\top`
projects on the top-r left singular vectors of C (the top-r principal axes
of the forcing :math:`Wa`, since :math:`CC^\top = WMW^\top = \mathbb E[(Wa)(Wa)^\top]`).
:math:`A^\star = \Pi_r W` has rank ≤ r and :math:`A^\star M^{1/2} = \Pi_r C`, so it
attains the bound. No inverse of M appears.

*Singular M* (the trajectory does not span the state space, e.g. very short
or constant trajectories): the minimisers are then not unique, because
:math:`A` is free on the null space of :math:`M`. We return
:math:`A^\star = \Pi_r W`, which keeps W's action on the unvisited directions as
far as the retained output subspace allows; it is the limit, as
:math:`\varepsilon\to 0^+`, of the unique minimisers for :math:`M+\varepsilon I`.
If :math:`k = \operatorname{rank} C < r`, the remaining :math:`r-k` output
directions are that limit's: the top left singular vectors of
:math:`(I-\Pi_k)W(I-P_M)` (:math:`P_M` the projector on the range of M). Ties
among singular values at position r make the minimiser non-unique; any
member of the tie is returned (as for plain SVD).

**Propagation-weighted** (``data=X, weighting="propagation"``): weights the
forcing by how much of it reaches the *target* states (default the last step;
for memorization pass ``target=task.recall``). In the tangent-linear model a
forcing :math:`\Delta W a_k` at step k reaches the target steps with energy
:math:`(\Delta W a_k)^\top O_k (\Delta W a_k)`, where

.. math::
    O_k = B_k^\top P_k B_k ,\qquad
    P_k = [k\in\text{target}]\,I + J_{k+1}^\top P_{k+1} J_{k+1},\ P_{T+1}=0,

is the observability Gramian of the targets seen from step k
(:math:`P_k = \sum_{t\in\text{target},\,t\ge k}\Phi(t,k)^\top\Phi(t,k)`), :math:`J` the
step Jacobian and :math:`B_k` the map from the matrix's pre-activation to
:math:`h_k` (both from :meth:`rnnperturb.cells.Cell.linearise`). Neglecting the
cross terms between different forcing steps (the coherent part), the target
error is :math:`\operatorname{vec}(\Delta W)^\top\big[\sum_{k,b} a a^\top\otimes O\big]\operatorname{vec}(\Delta W)`.
We approximate the sum by one Kronecker product :math:`M_w\otimes Q` (one step
of the alternating iteration for the nearest Kronecker product, started
from identities):

.. math::
    M_w = \frac{\sum_{k,b} \operatorname{tr}(O_{k,b})\,a a^\top}{\sum_{k,b}\operatorname{tr}(O_{k,b})},\qquad
    Q = \frac{\sum_{k,b}\|a\|^2\,O_{k,b}}{\sum_{k,b}\|a\|^2},

which is exact when all :math:`O_k` are equal or all :math:`a_k` are equal (a
constant memory state), and then minimise
:math:`\|Q_\lambda^{1/2}(W-A)M_w^{1/2}\|_F^2`, with the ridge
:math:`Q_\lambda = (1-\lambda)\,Q/\bar q + \lambda I`, :math:`\bar q = \operatorname{tr}Q/n`
(default :math:`\lambda` = ``ridge`` = 0.01). The ridge makes Q invertible
(directions that never reach the targets would otherwise be free, and the
minimiser ill-conditioned); :math:`\lambda = 1` gives back data-aware
truncation with the weights :math:`M_w`. The minimiser is
:math:`A = Q_\lambda^{-1/2}\,\Pi_r\,Q_\lambda^{1/2} W` with :math:`\Pi_r` the top-r left
singular projector of :math:`Q_\lambda^{1/2} W M_w^{1/2}` (same argument as
above). This is a heuristic: it minimises a separable surrogate of the
first-order target error, not the error itself.

**About the identity** (``about="identity"``, any of the weightings above):
truncate :math:`W - I` and keep :math:`I`,

.. math::
    A = I + [W - I]_r ,

where :math:`[\,\cdot\,]_r` is the rank-r approximation of the chosen weighting
(Eckart–Young, data-aware or propagation-weighted) applied to :math:`W - I`
in place of :math:`W`. Every objective above depends on A only through
:math:`W - A = (W - I) - (A - I)`, so the same closed forms give the minimiser
over the affine set :math:`\{I + B : \operatorname{rank} B \le r\}`: plain,
:math:`\|W - A\|_2 = \sigma_{r+1}(W - I)`; data-aware, the minimum of
:math:`\|(W - A)M^{1/2}\|_F^2` over that set (on a singular M the completion of
the module notes uses :math:`W - I`, so unvisited directions keep the action
:math:`I + \Pi_r(W - I)`). Rank 0 gives :math:`A = I`. The stored form is
:math:`I + LR` (2nr numbers, nothing for I; 2nr + n multiply-adds per step,
the n for adding :math:`h`, none at r = 0); :func:`rnnperturb.compression_cost` and
:func:`rnnperturb.factors` count it that way when given the same ``about``.

*What it means per cell.* The approximation is defined for any square
recurrent matrix, so ``about`` is accepted for every cell and every matrix
(a dict such as ``{"Wh": "identity"}`` chooses per matrix; unnamed matrices
are truncated about 0, i.e. plainly). It has a structural meaning where the
identity *is* the state-holding term inside a matrix: the tanh RNN
:math:`h_t = \tanh(W h_{t-1} + Ux_t + b)` trained from :math:`W = I` keeps
:math:`h_t \approx h_{t-1}` through :math:`W \approx I`, which plain truncation
removes. In gated cells the state is held outside the matrices (the MGRU's
:math:`(1 - f_t)\odot h_{t-1}`, the GRU's :math:`z_t\odot h_{t-1}`), so for
``Wf``/``Wh`` (``Wr``, ``Wz``, ``Wn``) the identity is merely another anchor:
``Wh`` = I makes the candidate :math:`\tanh(f\odot h + \dots)` copy the gated
state, ``Wf`` = I feeds each unit's state to its own gate. Whether that
helps is an empirical question (``validation/exp_identity_truncation.py``
measures it; on the shipped MGRU memorization nets it does not).
"""
from __future__ import annotations

import numbers

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, as_param, check_int, check_positive

__all__ = ["truncate_svd", "truncation_weights", "weighted_low_rank", "forcing_moments",
           "propagation_weights", "resolve_ranks", "resolve_about", "target_mask"]

#: The anchors a low-rank factorisation may be taken about: None (0, plain) or the identity.
ABOUT = (None, "identity")


def resolve_ranks(cell, rank, *, name: str = "rank") -> dict[str, int]:
    """Validate ``rank`` (an int for every recurrent matrix, or a dict naming
    some of them) and return ``{matrix name: rank}`` for the named matrices."""
    n = cell.n
    if isinstance(rank, dict):
        unknown = sorted(set(rank) - set(cell.recurrent_names))
        if unknown:
            raise ValueError(f"{name}: expected keys among {list(cell.recurrent_names)}, "
                             f"found {unknown}")
        return {k: check_int(f"{name}[{k!r}]", v, low=0, high=n) for k, v in rank.items()}
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise ValueError(f"{name}: expected an int in [0, {n}] or a dict over "
                         f"{list(cell.recurrent_names)}, found {rank!r}")
    r = check_int(name, rank, low=0, high=n)
    return {k: r for k in cell.recurrent_names}


def resolve_about(cell, about, *, name: str = "about") -> dict[str, str | None]:
    """Validate ``about`` and return ``{matrix name: None or 'identity'}`` for every
    recurrent matrix of ``cell``.

    Parameters
    ----------
    cell : Cell
    about : None, 'identity', or dict of str to (None or 'identity')
        None: every factorisation is plain (about 0); ``'identity'``: every
        recurrent matrix is factorised about I; a dict names some matrices
        (e.g. ``{"W": "identity"}``, ``{"Wh": "identity"}``), the others are
        plain.
    name : str
        Argument name used in error messages.

    Raises
    ------
    ValueError
        For an unknown anchor or an unknown matrix name (naming the cell and
        the matrices it has).
    """
    names = list(cell.recurrent_names)
    if isinstance(about, dict):
        unknown = sorted(set(about) - set(names))
        if unknown:
            raise ValueError(f"{name}: expected keys among the recurrent matrices {names} of "
                             f"{type(cell).__name__}, found {unknown}")
        for k, v in about.items():
            if not (v is None or (isinstance(v, str) and v in ABOUT)):
                raise ValueError(f"{name}[{k!r}]: expected None or 'identity', found {v!r}")
        return {k: about.get(k) for k in names}
    if not (about is None or (isinstance(about, str) and about in ABOUT)):
        raise ValueError(f"{name}: expected None, 'identity' or a dict over {names} of "
                         f"{type(cell).__name__}, found {about!r}")
    return {k: about for k in names}


def _psd_sqrt(S: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (negative round-off eigenvalues -> 0)."""
    w, V = np.linalg.eigh((S + S.T) / 2)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def _top_left_subspace(C: np.ndarray, r: int, W: np.ndarray, null_proj: np.ndarray):
    """Orthonormal (n, r) basis of the top-r left singular subspace of C, completed
    (when rank C < r) by the top left singular vectors of (I - UUᵀ) W (I - P)."""
    U, s, _ = np.linalg.svd(C, full_matrices=False)
    tol = max(C.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0)
    k = int(np.sum(s > tol))
    if k >= r:
        return U[:, :r]
    Uk = U[:, :k]
    R = W @ null_proj
    R = R - Uk @ (Uk.T @ R)
    U2, _, _ = np.linalg.svd(R, full_matrices=True)
    # U2's leading columns span range(R) ⟂ Uk; pad with any orthonormal complement
    basis = np.concatenate([Uk, U2], axis=1)
    Qb, _ = np.linalg.qr(basis)
    return Qb[:, :r]


def weighted_low_rank(W, *, rank: int, moment=None, left=None) -> np.ndarray:
    r"""Rank-r minimiser of :math:`\|Q^{1/2}(W-A)M^{1/2}\|_F^2`.

    Parameters
    ----------
    W : array_like, shape (n, n)
    rank : int
        Target rank r, 0 ≤ r ≤ n.
    moment : array_like, shape (n, n), optional
        Right weight M, symmetric positive semi-definite (the second moment of
        the regressors); identity when None.
    left : array_like, shape (n, n), optional
        Left weight Q, symmetric positive *definite*; identity when None.

    Returns
    -------
    A : ndarray, shape (n, n)
        :math:`Q^{-1/2}\Pi_r Q^{1/2}W`, with :math:`\Pi_r` the projector on the top-r
        left singular vectors of :math:`Q^{1/2}WM^{1/2}` (completed as described in
        the module notes when that matrix has rank < r). With both weights
        None this is the Eckart–Young truncation.
    """
    W = as_param("W", W, ndim=2, dtype=np.float64)
    n = W.shape[0]
    if W.shape != (n, n):
        raise ValueError(f"W: expected a square matrix, found shape {W.shape}")
    r = check_int("rank", rank, low=0, high=n)
    if r == n:
        return np.array(W)
    if r == 0:
        return np.zeros_like(W)
    if moment is None and left is None:
        U, s, Vt = np.linalg.svd(W)
        return (U[:, :r] * s[:r]) @ Vt[:r]
    if moment is None:
        Ms = np.eye(n)
        null_proj = np.zeros((n, n))
    else:
        M = as_param("moment", moment, shape=(n, n), dtype=np.float64)
        w, V = np.linalg.eigh((M + M.T) / 2)
        if w[0] < -1e-8 * max(abs(w[-1]), np.finfo(float).tiny):
            raise ValueError(f"moment: expected a positive semi-definite matrix, found "
                             f"eigenvalue {w[0]:.3g}")
        w = np.clip(w, 0.0, None)
        keep = w > n * np.finfo(float).eps * max(w[-1], np.finfo(float).tiny)
        # eigenvalues at round-off level are zero (their square roots, ~1e-8
        # relative, would otherwise pose as data directions)
        Ms = (V[:, keep] * np.sqrt(w[keep])) @ V[:, keep].T
        null_proj = V[:, ~keep] @ V[:, ~keep].T
    if left is None:
        Qh = Qih = None
        LW = W
    else:
        Q = as_param("left", left, shape=(n, n), dtype=np.float64)
        wq, Vq = np.linalg.eigh((Q + Q.T) / 2)
        if wq[0] <= 0:
            raise ValueError(f"left: expected a symmetric positive definite matrix, found "
                             f"smallest eigenvalue {wq[0]:.3g}")
        Qh = (Vq * np.sqrt(wq)) @ Vq.T
        Qih = (Vq / np.sqrt(wq)) @ Vq.T
        LW = Qh @ W
    Ur = _top_left_subspace(LW @ Ms, r, LW, null_proj)
    A = Ur @ (Ur.T @ LW)
    return A if Qih is None else Qih @ A


def forcing_moments(cell, X, *, h0=None) -> dict[str, np.ndarray]:
    r"""Second moments of the regressors over the nominal trajectory.

    .. math:: M = \frac{1}{TB}\sum_{t=1}^{T}\sum_b a_{t,b} a_{t,b}^\top

    with :math:`a_t = h_{t-1}` (``W``, ``Wf``) or :math:`f_t\odot h_{t-1}` (``Wh``),
    so that the mean squared forcing of a change ΔW is
    :math:`\operatorname{tr}(\Delta W M \Delta W^\top)`.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, N) or (N,), optional (N = ``cell.state_size``)

    Returns
    -------
    dict of str to ndarray, shape (n, n)
    """
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, cell.dtype)
    from rnnperturb.propagate.deviation import regressor_trajectory

    A = regressor_trajectory(cell, X3, h)
    N = X3.shape[0] * X3.shape[1]
    return {k: np.einsum("tbi,tbj->ij", a, a) / N for k, a in A.items()}


def target_mask(target, T: int, B: int) -> np.ndarray:
    """Resolve ``target`` into a boolean (T, B) mask of the steps whose state matters.

    ``None``: the last step; an int k: the last k steps; a boolean array of
    shape (T,) or (T, B) (e.g. ``task.recall``).
    """
    if target is None:
        target = 1
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        k = check_int("target", target, low=1, high=T)
        mask = np.zeros((T, B), dtype=bool)
        mask[T - k:] = True
        return mask
    arr = np.asarray(target)
    if arr.dtype != bool:
        raise ValueError(f"target: expected None, an int or a boolean mask of shape ({T},) or "
                         f"({T}, {B}), found dtype {arr.dtype}")
    if arr.shape == (T,):
        arr = np.repeat(arr[:, None], B, axis=1)
    if arr.shape != (T, B):
        raise ValueError(f"target: expected a boolean mask of shape ({T},) or ({T}, {B}), "
                         f"found shape {arr.shape}")
    if not arr.any():
        raise ValueError("target: expected at least one target step, found an all-False mask")
    return np.array(arr)


def _reach(cell, X3, h, mask):
    r"""Backward pass over the nominal trajectory, yielding for every step
    (t = T-1 .. 0, 0-based) and recurrent matrix ``(t, name, a, O)``: the
    regressors a (B, n) and the observability Gramians
    :math:`O = B_t^\top P_t B_t` (B, n, n) of the target steps ``mask`` (T, B);
    what matters at a target step is the output (``cell.output``: the state itself
    for N = n, the LSTM's h, a stack's top h), so P (B, N, N) gains the projection
    on the output's components there."""
    T, B = X3.shape[:2]
    N = cell.state_size
    Hprev = np.empty((T, B, N), dtype=h.dtype)
    for t in range(T):
        Hprev[t] = h
        h = cell.step(h, X3[t])
    P = np.zeros((B, N, N))
    J_next = None
    rows = cell.output_rows()
    eye = np.eye(N)
    if rows is not None:         # the projection on the output's components
        eye = np.diag(np.isin(np.arange(N), rows).astype(float))
    for t in range(T - 1, -1, -1):
        _, J, forc = cell.linearise(Hprev[t], X3[t])
        if J_next is not None:
            P = np.swapaxes(J_next, 1, 2) @ P @ J_next
        P[mask[t]] += eye
        for k, (diag, Bt, a) in forc.items():
            if diag:
                O = Bt[:, :, None] * P * Bt[:, None, :]
            else:
                O = np.swapaxes(Bt, 1, 2) @ P @ Bt
            yield t, k, a, O
        J_next = J


def propagation_weights(cell, X, *, target=None, h0=None) -> dict[str, tuple]:
    r"""Weights of the propagation-weighted truncation (see the module notes).

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    target : None, int or array_like of bool, shape (T,) or (T, B)
        Steps whose state matters: None = the last step, an int k = the last k
        steps, or a mask such as ``task.recall``.
    h0 : array_like, optional

    Returns
    -------
    dict of str to (M_w, Q)
        Per recurrent matrix, the reach-weighted regressor moment
        :math:`M_w` (n, n) and the forcing-weighted observability Gramian
        :math:`Q` (n, n), each normalised by its total weight.
    """
    X3, single = as_inputs(X, cell.m, cell.dtype)
    T, B = X3.shape[:2]
    mask = target_mask(target, T, B)
    h = as_h0(h0, cell.state_size, B, single, cell.dtype)
    n = cell.n
    acc = {k: [np.zeros((n, n)), 0.0, np.zeros((n, n)), 0.0] for k in cell.recurrent_names}
    for _, k, a, O in _reach(cell, X3, h, mask):
        tr = np.einsum("bii->b", O)
        an = np.einsum("bi,bi->b", a, a)
        acc[k][0] += np.einsum("b,bi,bj->ij", tr, a, a)
        acc[k][1] += float(tr.sum())
        acc[k][2] += np.einsum("b,bij->ij", an, O)
        acc[k][3] += float(an.sum())
    out = {}
    for k, (Mw, wM, Q, wQ) in acc.items():
        Mw = Mw / wM if wM > 0 else Mw
        Q = Q / wQ if wQ > 0 else Q
        out[k] = ((Mw + Mw.T) / 2, (Q + Q.T) / 2)
    return out


def truncation_weights(cell, X, *, weighting: str = "forcing", target=None,
                       ridge: float = 0.01, h0=None) -> dict[str, tuple]:
    r"""The weights of data-aware or propagation-weighted truncation, for reuse
    over many ranks (``truncate_svd(cell, rank=r, weights=w)``).

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    weighting : {'forcing', 'propagation'}
    target, ridge, h0 :
        As in :func:`truncate_svd`.

    Returns
    -------
    dict of str to (moment, left)
        Per recurrent matrix, the right weight M (n, n) and the left weight
        (n, n), or None for 'forcing'; the truncation minimises
        :math:`\|\text{left}^{1/2}(W-A)M^{1/2}\|_F^2`.
    """
    if weighting not in ("forcing", "propagation"):
        raise ValueError(f"weighting: expected 'forcing' or 'propagation', found {weighting!r}")
    if weighting == "forcing":
        return {k: (v, None) for k, v in forcing_moments(cell, X, h0=h0).items()}
    lam = check_positive("ridge", ridge)
    if lam > 1:
        raise ValueError(f"ridge: expected a number in (0, 1], found {ridge!r}")
    n = cell.n
    out = {}
    for k, (Mw, Q) in propagation_weights(cell, X, target=target, h0=h0).items():
        qbar = np.trace(Q) / n
        out[k] = (Mw, (1 - lam) * (Q / qbar if qbar > 0 else Q) + lam * np.eye(n))
    return out


def truncate_svd(cell, *, rank, data=None, weighting: str | None = None, target=None,
                 ridge: float = 0.01, h0=None, weights=None, about=None):
    r"""Truncate recurrent matrices to low rank.

    Parameters
    ----------
    cell : Cell
    rank : int or dict of str to int
        An int applies to every recurrent matrix; a dict names some of them
        (``{"W": r}``, ``{"Wf": r1, "Wh": r2}``), the others stay untouched.
        Each rank lies in [0, n]; rank n returns the matrix exactly.
    data : array_like, shape (T, B, m) or (T, m), optional
        Inputs whose nominal trajectory defines the data-aware weights.
    weighting : {None, 'svd', 'forcing', 'propagation'}
        ``'svd'`` (plain Eckart–Young), ``'forcing'`` (data-aware: minimum mean
        squared forcing) or ``'propagation'`` (observability-weighted).
        None means ``'forcing'`` when ``data`` is given, else ``'svd'``.
    target : None, int or array_like of bool
        Target steps of the propagation weighting (see
        :func:`propagation_weights`): None = the last step, an int k = the
        last k steps, or a mask such as ``task.recall``.
    ridge : float in (0, 1]
        Ridge λ of the propagation weighting's left weight.
    h0 : array_like, optional
        Initial state for the ``data`` trajectory.
    weights : dict, optional
        Precomputed :func:`truncation_weights` (then ``data`` and
        ``weighting`` must be None).
    about : None, 'identity', or dict of str to (None or 'identity')
        The anchor of the factorisation (see the module notes): None (default)
        truncates W itself; ``'identity'`` returns :math:`I + [W - I]_r` for
        every truncated matrix; a dict chooses per matrix (unnamed: None).
        Matrices kept at rank n are returned exactly whatever ``about`` says.
        Pass the same ``about`` to :func:`rnnperturb.compression_cost` to count
        the stored form :math:`I + LR`.

    Returns
    -------
    Cell
        Same type; only the named recurrent matrices differ.

    Raises
    ------
    ValueError
        For a rank out of [0, n], unknown matrix names, a weighting that needs
        ``data`` without it, an unknown weighting, or an unknown ``about``.
    """
    ranks = resolve_ranks(cell, rank)
    anchors = resolve_about(cell, about)
    if weights is not None:
        if data is not None or weighting is not None:
            raise ValueError("weights: expected data=None and weighting=None with precomputed "
                             "weights, found both")
        if not isinstance(weights, dict) or set(weights) != set(cell.recurrent_names):
            raise ValueError(f"weights: expected a dict over {list(cell.recurrent_names)} from "
                             f"truncation_weights, found {type(weights).__name__}")
        weighting = "given"
    if weighting is None:
        weighting = "svd" if data is None else "forcing"
    if weighting not in ("svd", "forcing", "propagation", "given"):
        raise ValueError(f"weighting: expected None, 'svd', 'forcing' or 'propagation', "
                         f"found {weighting!r}")
    if weighting in ("forcing", "propagation") and data is None:
        raise ValueError(f"data: expected input sequences (T, B, m) for weighting="
                         f"{weighting!r}, found None")
    if weighting == "svd" and data is not None:
        raise ValueError("data: expected None for weighting='svd' (plain SVD ignores data), "
                         "found an array")
    todo = {k: r for k, r in ranks.items() if r < cell.n}
    eye = np.eye(cell.n)
    # W - anchor, truncated, plus the anchor (0 or I): the same closed forms about I
    offset = {k: (eye if anchors[k] == "identity" else None) for k in todo}

    def shifted(k):
        W = np.asarray(cell.recurrent[k], dtype=np.float64)
        return W if offset[k] is None else W - offset[k]

    def unshift(k, A):
        return A if offset[k] is None else A + offset[k]

    new = {}
    if weighting == "svd" or not todo:
        for k, r in todo.items():
            new[k] = unshift(k, weighted_low_rank(shifted(k), rank=r))
    else:
        if weighting != "given":
            weights = truncation_weights(cell, data, weighting=weighting, target=target,
                                         ridge=ridge, h0=h0)
        for k, r in todo.items():
            M, left = weights[k]
            new[k] = unshift(k, weighted_low_rank(shifted(k), rank=r, moment=M, left=left))
    if not new:
        return cell.replace()
    return cell.replace(**{k: v.astype(cell.dtype) for k, v in new.items()})
