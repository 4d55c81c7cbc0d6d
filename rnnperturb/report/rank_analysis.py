r"""Rank analysis and rank selection: which SVD rank can a network afford?

:func:`analyze_ranks` tabulates, for each retained rank r, the compression
ratio, :math:`\|\Delta W\|_2`, :math:`\|\Delta W\|_F` and the maximum over time
and sequences of the exact, first-order and certified deviation
:math:`\|h'_t - h_t\|_2`. :func:`recommend_rank` returns the smallest rank whose
deviation (certified bound, or first-order prediction) stays below a tolerance
over a horizon; for the MGRU it allocates ranks to :math:`W_f` and :math:`W_h`
separately, at the lowest stored parameter count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import as_inputs, check_int, check_positive

__all__ = ["RankRow", "analyze_ranks", "RankRecommendation", "recommend_rank", "default_inputs"]


@dataclass(frozen=True)
class RankRow:
    """One row of :func:`analyze_ranks` (norms in hidden-state units)."""

    rank: dict
    compression_ratio: float
    params: int
    dW_spectral: dict
    dW_frobenius: dict
    exact_max: float
    first_order_max: float | None
    certified_max: float | None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def analyze_ranks(cell, X, *, ranks=None, tier: str = "tight", certified: bool = True,
                  quiet: bool = True) -> list[RankRow]:
    """Tabulate the effect of SVD truncation at each rank.

    The exact and first-order deviations and the norms of ΔW come from one
    :func:`~rnnperturb.rank_sweep`; the certified bound and the storage cost
    are evaluated per rank.

    Parameters
    ----------
    cell : ElmanRNN or MGRU
    X : array_like, shape (T, B, m) or (T, m)
        Inputs on which the deviation is measured and bounded.
    ranks : sequence of int, optional
        Ranks to evaluate (the same for every recurrent matrix); default
        ``0..n``.
    tier : {'fast', 'tight'}
        Tier of :func:`~rnnperturb.certified_bound` (default tight).
    certified : bool
        Also compute the certified bound (the costliest column).
    quiet : bool
        Hide the progress bar.

    Returns
    -------
    list of RankRow
    """
    from rnnperturb.bounds.trajectory import certified_bound
    from rnnperturb.perturb.cost import compression_cost
    from rnnperturb.report.progress import progress
    from rnnperturb.propagate.rank_sweep import rank_sweep
    from rnnperturb.perturb.low_rank import truncate_svd

    as_inputs(X, cell.m, cell.dtype)
    ranks = list(range(cell.n + 1)) if ranks is None else [
        check_int("ranks", r, low=0, high=cell.n) for r in ranks]
    sweep = rank_sweep(cell, X, ranks)
    exact, first = sweep.exact_max, sweep.first_order_max
    spec, frob = sweep.dW_spectral, sweep.dW_frobenius
    rows = []
    for i in progress(range(len(sweep.ranks)), desc="ranks", quiet=quiet):
        rank = sweep.rank(i)
        small = truncate_svd(cell, rank=rank)
        cost = compression_cost(cell, small)
        cb = float(np.max(certified_bound(cell, small, X, tier=tier))) if certified else None
        rows.append(RankRow(rank=rank, compression_ratio=float(cost.ratio_params),
                            params=int(cost.params),
                            dW_spectral={k: float(v[i]) for k, v in spec.items()},
                            dW_frobenius={k: float(v[i]) for k, v in frob.items()},
                            exact_max=float(exact[i]), first_order_max=float(first[i]),
                            certified_max=cb))
    return rows


@dataclass(frozen=True)
class RankRecommendation:
    """Result of :func:`recommend_rank`.

    Attributes
    ----------
    rank : dict or None
        Recommended rank per recurrent matrix; None when no evaluated rank
        meets the tolerance.
    value : float
        Max over the horizon (and sequences) of the deviation measure at that
        rank (NaN when ``rank`` is None).
    params : int
        Stored parameters of the compressed cell (low-rank factors where
        r < n/2, dense otherwise).
    compression_ratio : float
        ``params`` / parameters of the original cell (1 means no saving).
    method : str
    tolerance : float
    horizon : int
    evidence : tuple of (dict, float)
        Every (rank, max deviation measure) evaluated, in order.
    """

    rank: dict | None
    value: float
    params: int
    compression_ratio: float
    method: str
    tolerance: float
    horizon: int
    evidence: tuple


def recommend_rank(cell, X, *, tolerance: float, horizon: int | None = None,
                   method: str = "certified", tier: str = "tight") -> RankRecommendation:
    r"""Smallest rank whose deviation stays below ``tolerance`` over ``horizon``.

    With ``method="certified"`` the criterion is the certified bound, so the
    recommendation is guaranteed on ``X``:
    :math:`\max_{t\le T,b}\|h'_t-h_t\|_2 \le` ``tolerance``. With
    ``"first_order"`` it is the tangent-linear prediction (a point estimate,
    not a guarantee).

    Elman RNN: ranks are tried from 0 upward and the first that passes is
    returned, so it is the smallest passing rank (the criterion need not be
    monotone in the rank, and no monotonicity is assumed).

    MGRU: ranks of :math:`W_f` and :math:`W_h` are allocated separately, to
    lower the stored parameter count. Only ranks r < n/2 save storage (2nr
    numbers against n²), so each matrix is either kept dense (rank n) or
    truncated below n/2. A greedy descent starts from (n, n) and repeatedly
    takes the passing move (lowering one matrix's rank by the current step)
    with the smallest deviation; the step halves when no move passes. This is
    a heuristic for the allocation (the result passes, but a cheaper passing
    pair may exist); every evaluated pair is in ``evidence``.

    Parameters
    ----------
    cell : ElmanRNN or MGRU
    X : array_like, shape (T, B, m) or (T, m)
    tolerance : float
        Allowed max deviation, in hidden-state units (> 0).
    horizon : int, optional
        Number of leading time steps of ``X`` to use (default all).
    method : {'certified', 'first_order'}
    tier : {'fast', 'tight'}
        Tier of the certified bound.
    """
    from rnnperturb.bounds.trajectory import certified_bound
    from rnnperturb.perturb.cost import compression_cost
    from rnnperturb.propagate.deviation import first_order
    from rnnperturb.perturb.low_rank import truncate_svd

    tol = check_positive("tolerance", tolerance)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    T = X3.shape[0] if horizon is None else check_int("horizon", horizon, low=1, high=X3.shape[0])
    X3 = X3[:T]
    if method not in ("certified", "first_order"):
        raise ValueError(f"method: expected 'certified' or 'first_order', found {method!r}")
    evidence = []
    cache = {}

    def measure(rank: dict):
        key = tuple(rank.values())
        if key not in cache:
            small = truncate_svd(cell, rank=rank)
            if method == "certified":
                v = float(np.max(certified_bound(cell, small, X3, tier=tier)))
            else:
                v = float(np.linalg.norm(first_order(cell, small, X3), axis=-1).max())
            evidence.append((dict(rank), v))
            cache[key] = (v, compression_cost(cell, small))
        return cache[key]

    names = cell.recurrent_names
    n = cell.n
    best = None
    if len(names) == 1:
        for r in range(n + 1):
            v, cost = measure({names[0]: r})
            if v <= tol:
                best = ({names[0]: r}, v, cost)
                break
    else:
        top = (n - 1) // 2                     # largest rank that still saves storage
        state = {k: n for k in names}
        v, cost = measure(state)
        if v <= tol:
            best = (dict(state), v, cost)
            step = max(1, top // 4)
            while True:
                moves = []
                for k in names:
                    r = state[k]
                    nr = top if r == n else r - step
                    if nr < 0 or nr == r:
                        continue
                    cand = dict(state, **{k: nr})
                    v2, c2 = measure(cand)
                    if v2 <= tol:
                        moves.append((v2, c2.params, cand, c2))
                if moves:
                    v, _, state, cost = min(moves, key=lambda m: (m[0], m[1]))
                    best = (dict(state), v, cost)
                elif step > 1:
                    step //= 2
                else:
                    break
    if best is None:
        return RankRecommendation(None, float("nan"), cell.n_params, 1.0, method, tol, T,
                                  tuple(evidence))
    rank, v, cost = best
    return RankRecommendation(rank, v, int(cost.params), float(cost.ratio_params), method, tol,
                              T, tuple(evidence))


def default_inputs(cell, meta: dict | None = None, *, batch: int = 64, T: int = 100, seed=0):
    r"""Inputs on which to analyse a cell: its own task's, or a documented default.

    * memorization checkpoints: all ``K**L`` sequences when there are at most
      1024 of them, else ``batch`` sampled ones;
    * ``kback`` / ``ar_signal`` checkpoints: ``batch`` fresh sequences of the task;
    * anything else (e.g. a PyTorch file): ``batch`` sequences of ``T`` steps
      with i.i.d. :math:`N(0, 1/m)` entries, so that :math:`E\|x_t\|_2^2 = 1`.

    Returns
    -------
    X : ndarray, shape (T, B, m)
    description : str
    """
    from rnnperturb import tasks

    meta = meta or {}
    name = meta.get("task")
    rng = np.random.default_rng(seed)
    if name == "memorization":
        K, L, D = int(meta["K"]), int(meta["L"]), int(meta["D"])
        if K ** L <= 1024:
            return tasks.memorization_all(K, L, D).X, f"all {K ** L} memorization sequences (D={D})"
        return (tasks.memorization(K, L, D, batch=batch, seed=rng).X,
                f"{batch} sampled memorization sequences (K={K}, L={L}, D={D}, seed={seed})")
    if name == "kback":
        rep = float(meta.get("repeat", meta.get("repeat_lo", 0.0)))
        t = tasks.kback(int(meta["K"]), int(meta["k"]), int(meta.get("T", 50)), repeat=rep,
                        batch=batch, seed=rng)
        return t.X, f"{batch} k-back sequences (repeat={rep}, seed={seed})"
    if name == "ar_signal":
        t = tasks.ar_signal(int(meta.get("T", 200)), tau=float(meta["tau"]),
                            noise=float(meta["noise"]), horizon=int(meta.get("horizon", 0)),
                            batch=batch, seed=rng)
        return t.X, f"{batch} AR(1) signal sequences (seed={seed})"
    X = rng.standard_normal((T, batch, cell.m)) / np.sqrt(cell.m)
    return X, f"{batch} sequences of {T} steps, i.i.d. N(0, 1/m) inputs (seed={seed})"
