r"""All-rank SVD truncation sweep: exact and first-order deviation for every rank
in one batched pass.

For a recurrent matrix :math:`W = \sum_i \sigma_i u_i v_i^\top` truncated to rank
r, :math:`\Delta W(r) = -\sum_{i>r}\sigma_i u_i v_i^\top`. The first-order model
(``DESIGN.md`` §2(a))

.. math:: \ell_t = J_t\,\ell_{t-1} + \sum_m B^{(m)}_t\,\Delta W_m\, a^{(m)}_t,\qquad \ell_0 = 0,

is linear in :math:`\Delta W`, so the response to rank r is the sum of the
responses to the discarded rank-one pieces :math:`-\sigma_i u_i v_i^\top`. For a
grid of ranks :math:`r_0 < r_1 < \dots` we propagate one response per *block* of
pieces :math:`(r_j, r_{j+1}]` (one per piece for the full grid) as one batch,
and the response at :math:`r_j` is the tail cumulative sum over the blocks
:math:`j, j+1, \dots`. The exact deviations of all ranks are one batched
forward run with the stacked truncated matrices. Both are advanced in the
same loop over time, which also gives the residual :math:`\|e_t-\ell_t\|_2`.
The forcing energy is :math:`\sum_m\|\Delta W_m a^{(m)}_t\|_2^2 =
\sum_m\sum_{i>r}\sigma_i^2 (v_i^\top a^{(m)}_t)^2` (regressors
:math:`a = h_{t-1}`, or :math:`f_t\odot h_{t-1}` for :math:`W_h`).

Rank grids: ``ranks=None`` is every rank 0..n, applied to every recurrent
matrix at once (for the MGRU, :math:`W_f` and :math:`W_h` get the same rank); a
sequence of ints is such a grid; a dict ``{name: grid}`` truncates each named
matrix on its own grid and sweeps the Cartesian product (unnamed matrices
stay untouched). Rank n leaves a matrix exactly as it is.
"""
from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, check_int
from rnnperturb.cells import FLOAT

__all__ = ["RankSweep", "rank_sweep"]

_CHUNK = 1 << 21          # max elements of one (points, B, n) state array


@dataclass(frozen=True, eq=False)
class RankSweep:
    r"""Result of :func:`rank_sweep`.

    Attributes
    ----------
    names : tuple of str
        Recurrent matrices, in the order of the columns of ``ranks``.
    ranks : ndarray of int, shape (R, len(names))
        Rank of every recurrent matrix at each of the R sweep points (n means
        untouched).
    exact : ndarray, shape (R, T, B) or (R, T)
        Exact deviation norm :math:`\|h'_t - h_t\|_2` of the output (or of the full
        state, ``state="full"``; t = 1..T along axis 1);
        shape (R, T) when the inputs were one sequence (T, m).
    first_order : ndarray, same shape
        First-order prediction :math:`\|\ell_t\|_2`.
    residual : ndarray, same shape
        :math:`\|e_t - \ell_t\|_2`.
    forcing : ndarray, same shape
        Forcing energy :math:`\sum_m \|\Delta W_m a^{(m)}_t\|_2^2` (a squared norm).
    singular_values : dict of str to ndarray, shape (n,)
        Singular values of each recurrent matrix, descending.
    n : int
    """

    names: tuple
    ranks: np.ndarray
    exact: np.ndarray
    first_order: np.ndarray
    residual: np.ndarray
    forcing: np.ndarray
    singular_values: dict
    n: int

    def rank(self, i: int) -> dict:
        """Rank per recurrent matrix of sweep point ``i``."""
        return {k: int(v) for k, v in zip(self.names, self.ranks[i])}

    def index(self, rank) -> int:
        """Index of the sweep point with ``rank`` (an int for all matrices, or a dict)."""
        if isinstance(rank, dict):
            want = np.array([rank.get(k, self.n) for k in self.names])
        else:
            want = np.full(len(self.names), rank)
        hit = np.nonzero(np.all(self.ranks == want, axis=1))[0]
        if hit.size == 0:
            raise ValueError(f"rank: expected one of the swept points, found {rank!r}")
        return int(hit[0])

    def _max(self, a):
        return a.reshape(a.shape[0], -1).max(axis=1)

    @property
    def exact_max(self) -> np.ndarray:
        """(R,) max over time and sequences of the exact deviation norm."""
        return self._max(self.exact)

    @property
    def first_order_max(self) -> np.ndarray:
        """(R,) max over time and sequences of the first-order norm."""
        return self._max(self.first_order)

    @property
    def dW_frobenius(self) -> dict:
        """Per matrix, (R,) Frobenius norm of ΔW at each point."""
        out = {}
        for j, k in enumerate(self.names):
            tail = np.concatenate([np.cumsum(self.singular_values[k][::-1] ** 2)[::-1], [0.0]])
            out[k] = np.sqrt(tail[self.ranks[:, j]])
        return out

    @property
    def dW_spectral(self) -> dict:
        """Per matrix, (R,) spectral norm ‖ΔW‖₂ = σ_{r+1} at each point (0 at r = n)."""
        return {k: np.concatenate([self.singular_values[k], [0.0]])[self.ranks[:, j]]
                for j, k in enumerate(self.names)}


def _grid(name, g, n):
    if isinstance(g, (str, bytes)) or not hasattr(g, "__iter__"):
        raise ValueError(f"{name}: expected a sequence of ints in [0, {n}], found {g!r}")
    vals = [check_int(name, v, low=0, high=n) for v in g]
    if not vals:
        raise ValueError(f"{name}: expected at least one rank, found an empty sequence")
    return vals


def _groups(cell, ranks):
    """[(matrix names, grid)] from the ``ranks`` argument."""
    n = cell.n
    if ranks is None:
        return [(cell.recurrent_names, list(range(n + 1)))]
    if isinstance(ranks, dict):
        unknown = sorted(set(ranks) - set(cell.recurrent_names))
        if unknown or not ranks:
            raise ValueError(f"ranks: expected keys among {list(cell.recurrent_names)}, "
                             f"found {unknown or 'an empty dict'}")
        return [((k,), _grid(f"ranks[{k!r}]", ranks[k], n))
                for k in cell.recurrent_names if k in ranks]
    if isinstance(ranks, numbers.Integral):
        raise ValueError(f"ranks: expected a sequence of ints (or a dict of them), "
                         f"found the int {ranks!r}; use [r]")
    return [(cell.recurrent_names, _grid("ranks", ranks, n))]


class _Plan:
    """Blocks of rank-one pieces and the map from grid ranks to tail sums."""

    def __init__(self, cell, groups):
        n = cell.n
        self.svd = {}
        for k, W in cell.recurrent.items():
            U, s, Vt = np.linalg.svd(np.asarray(W, dtype=np.float64))
            self.svd[k] = (U, s, Vt)
        self.groups = []
        offset = 0
        for names, grid in groups:
            bounds = sorted(set(grid) | {n})
            K = len(bounds) - 1
            ind = np.zeros((K, n))
            for j in range(K):
                ind[j, bounds[j]:bounds[j + 1]] = 1.0
            pos = {r: j for j, r in enumerate(bounds)}      # tail index; r = n -> K (zero)
            single = (np.array(bounds[:-1], dtype=np.intp) if all(bounds[j + 1] - bounds[j] == 1
                                                   for j in range(K)) else None)
            self.groups.append({"names": names, "grid": grid, "ind": ind, "pos": pos,
                                "offset": offset, "K": K, "single": single})
            offset += K
        self.K = offset

    def block_forcing(self, A, B):
        """Per matrix name, forcing (K, B, n) of every block at one step."""
        out = {}
        for g in self.groups:
            for k in g["names"]:
                U, s, Vt = self.svd[k]
                p = (A[k] @ Vt.T) * s                         # (B, n): σ_i v_iᵀ a
                if g["single"] is not None:                   # one piece per block
                    i = g["single"]
                    F = -(p[:, i].T[:, :, None] * U[:, i].T[:, None, :])
                else:
                    F = -_mm(p[None, :, :] * g["ind"][:, None, :], U)   # (K_g, B, n)
                if k not in out:
                    out[k] = np.zeros((self.K, B, U.shape[0]))
                out[k][g["offset"]:g["offset"] + g["K"]] = F
        return out

    def energy_tails(self, A):
        """Per group, (n+1, B) tail sums of σ_i² (v_iᵀ a)² over the group's matrices."""
        out = []
        for g in self.groups:
            e = 0.0
            for k in g["names"]:
                U, s, Vt = self.svd[k]
                e = e + ((A[k] @ Vt.T) * s) ** 2
            tail = np.cumsum(e[:, ::-1], axis=1)[:, ::-1]   # tail[:, r] = Σ_{i>=r}
            out.append(np.concatenate([tail, np.zeros((tail.shape[0], 1))], axis=1).T)
        return out



def _norm(A):
    """Euclidean norm over the last axis."""
    return np.sqrt(np.einsum("...i,...i->...", A, A))


def _tail_sums(Lg):
    """cum[j] = Σ_{j' >= j} Lg[j'] for j = 0..K, cum[K] = 0 (a loop of vector adds is
    much faster than ``np.cumsum`` along the leading axis of a 3-D array)."""
    K = Lg.shape[0]
    cum = np.empty((K + 1,) + Lg.shape[1:])
    cum[K] = 0.0
    for j in range(K - 1, -1, -1):
        np.add(Lg[j], cum[j + 1], out=cum[j])
    return cum


def _mm(A, W):
    """``A @ W.T`` for a stack A (K, B, n) as one 2-D GEMM."""
    return (A.reshape(-1, A.shape[-1]) @ W.T).reshape(A.shape[:-1] + (W.shape[0],))


def _tangent_rec(params, F):
    """``rec`` of the tangent step, :math:`W_k v + F_k`: the forcing is added in
    place to the fresh GEMM result (no extra temporary of the (K, B, n) stack)."""
    def rec(k, v):
        out = _mm(v, params[k])
        if k in F:
            out += F[k]
        return out
    return rec


def _no_input(k):
    """``dinp`` of the tangent step: the inputs do not move."""
    return 0.0


def _apply(Hs, spec):
    """Per-point matrix times stacked states Hs (P, B, n): either one matrix for
    all points (``("full", W)``), or truncated SVDs ``("factored", U, Vt, smask,
    groups)`` with smask (P, n) the kept singular values of each point (0 beyond
    its rank), computed as U (smask ⊙ (Vᵀ h)) by 2-D GEMMs over groups of
    points of similar rank, each using only the leading ``rmax`` singular
    vectors its points need (about half the flops of full-width factors)."""
    if spec[0] == "full":
        return _mm(Hs, spec[1])
    _, U, Vt, smask, groups, W = spec
    out = np.empty(Hs.shape[:-1] + (U.shape[0],))
    for idx, rmax in groups:
        if rmax == 0:
            out[idx] = 0.0
            continue
        if rmax == -1:                      # untouched points: the matrix itself
            out[idx] = _mm(Hs[idx], W)
            continue
        Z = _mm(Hs[idx], Vt[:rmax]) * smask[idx, None, :rmax]
        out[idx] = _mm(Z, U[:, :rmax])
    return out


def _rank_groups(rk, n, G=8):
    """Split points (ranks rk) into at most G groups of consecutive sorted ranks,
    [(index array or slice, max rank)], and one group (max rank -1) of the
    points at rank n, which use the matrix itself."""
    order = np.argsort(rk, kind="stable")
    contiguous = np.array_equal(order, np.arange(rk.size))
    full = order[rk[order] == n]
    order = order[rk[order] < n]
    out = []
    if full.size:
        out.append((slice(int(full[0]), int(full[-1]) + 1) if contiguous else full, -1))
    for part in np.array_split(np.arange(order.size), min(G, max(order.size, 1))):
        if part.size == 0:
            continue
        idx = order[part]
        key = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
        out.append((key, int(rk[idx].max())))
    return out


def rank_sweep(cell, X, ranks=None, *, h0=None, quiet: bool = True,
               state: str = "h") -> RankSweep:
    r"""Exact and first-order deviation of SVD truncation at many ranks at once.

    Parameters
    ----------
    cell : Cell
        Any registered cell (:mod:`rnnperturb.cells`).
    X : array_like, shape (T, B, m) or (T, m)
    ranks : None, sequence of int, or dict of str to sequence of int
        None: every rank 0..n for every recurrent matrix together; a sequence:
        those ranks, for every recurrent matrix together; a dict: one grid per
        named matrix, Cartesian product of the grids (in the order of
        ``cell.recurrent_names``), unnamed matrices untouched.
    h0 : array_like, shape (B, N) or (N,), optional
        Initial state (N = ``cell.state_size``).
    quiet : bool
        Hide the progress bar over time steps.
    state : {'h', 'full'}
        Norms of the deviation of the output (what a readout sees: the LSTM's
        h, a stack's top h; the state itself for N = n) or of the full state.

    Returns
    -------
    RankSweep
        Points in the order of the grid (product order for a dict); arrays of
        shape (R, T, B), or (R, T) for a single sequence. Equal (to rounding)
        to ``deviation``/``first_order`` of ``truncate_svd(cell, rank=...)`` at
        every point.
    """
    from rnnperturb.report.progress import progress

    X3, single = as_inputs(X, cell.m, cell.dtype)
    groups = _groups(cell, ranks)
    T, B = X3.shape[:2]
    full = cell._check_state(state) == "full"
    n, N = cell.n, cell.state_size
    h_init = as_h0(h0, N, B, single, cell.dtype)
    part = (lambda a: a) if full else cell.hidden_of
    plan = _Plan(cell, groups)
    names = cell.recurrent_names
    points = list(itertools.product(*[g["grid"] for g in plan.groups]))
    R = len(points)
    rank_arr = np.full((R, len(names)), n, dtype=np.int64)
    for p, pt in enumerate(points):
        for g, r in zip(plan.groups, pt):
            for k in g["names"]:
                rank_arr[p, names.index(k)] = r
    # tail positions per group for every point
    tailpos = [np.array([g["pos"][pt[gi]] for pt in points]) for gi, g in enumerate(plan.groups)]
    out = {key: np.empty((R, T, B)) for key in ("exact", "first_order", "residual", "forcing")}
    params = cell.params
    step = max(1, _CHUNK // max(1, B * N))
    chunks = [np.arange(i, min(R, i + step)) for i in range(0, R, step)]
    for ch in progress(chunks, desc="rank sweep", quiet=quiet or len(chunks) == 1):
        specs = {}
        for j, k in enumerate(names):
            rk = rank_arr[ch, j]
            if np.all(rk == n):
                specs[k] = ("full", cell.recurrent[k])
            else:
                U, sv, Vt = plan.svd[k]
                smask = sv[None, :] * (np.arange(n)[None, :] < rk[:, None])
                specs[k] = ("factored", U, Vt, smask, _rank_groups(rk, n), cell.recurrent[k])

        def stacked(name, a, specs=specs):      # W_name a at every point's truncation
            return _apply(a, specs[name])
        untouched = np.nonzero(np.all(rank_arr[ch] == n, axis=1))[0]
        h = h_init.copy()
        Hs = np.repeat(h[None], len(ch), axis=0)
        L = np.zeros((plan.K, B, N))
        for t in progress(range(T), desc="rank sweep", quiet=quiet or len(chunks) > 1):
            x = X3[t]
            hn, aux, A = cell.nominal(h, x)
            rec = _tangent_rec(params, plan.block_forcing(A, B))
            L = cell.tangent(FLOAT, params, h, aux, L, rec, _no_input)
            Hs = cell.forward(FLOAT, params, Hs, x, stacked)[0]
            E = part(Hs - hn[None])
            if untouched.size:              # the cell itself: no deviation at all
                E[untouched] = 0.0
            energy = np.zeros((len(ch), B))
            tails = plan.energy_tails(A)
            for gi, g in enumerate(plan.groups):
                Lg = L[g["offset"]:g["offset"] + g["K"]]
                cum = _tail_sums(Lg)                          # (K_g + 1, B, N)
                tp = tailpos[gi][ch]
                if tp.size and np.array_equal(tp, np.arange(tp[0], tp[0] + tp.size)):
                    tp = slice(int(tp[0]), int(tp[0]) + tp.size)      # a view, no gather
                if gi == 0:
                    ell = cum[tp]
                else:
                    ell = ell + cum[tp]
                rr = np.array([points[p][gi] for p in ch])
                energy += tails[gi][rr]
            ell = part(ell)
            out["exact"][ch, t] = _norm(E)
            out["first_order"][ch, t] = _norm(ell)
            out["residual"][ch, t] = _norm(E - ell)
            out["forcing"][ch, t] = energy
            h = hn
    if single:
        out = {k: v[:, :, 0] for k, v in out.items()}
    return RankSweep(names=tuple(names), ranks=rank_arr, exact=out["exact"],
                     first_order=out["first_order"], residual=out["residual"],
                     forcing=out["forcing"],
                     singular_values={k: plan.svd[k][1].copy() for k in names}, n=n)
