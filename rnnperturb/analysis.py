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

from ._checks import as_inputs, check_int, check_positive

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


def _rank_dict(cell, rank):
    if isinstance(rank, dict):
        return {k: int(rank.get(k, cell.n)) for k in cell.recurrent_names}
    return {k: int(rank) for k in cell.recurrent_names}


def _evaluate(cell, X, rank, *, tier, first, certified):
    from .bounds import certified_bound
    from .cost import compression_cost
    from .propagation import deviation, first_order
    from .truncation import truncate_svd

    rank = _rank_dict(cell, rank)
    small = truncate_svd(cell, rank=rank)
    cost = compression_cost(cell, small)
    dW = {k: small.recurrent[k] - cell.recurrent[k] for k in cell.recurrent_names}
    exact = float(np.linalg.norm(deviation(cell, small, X), axis=-1).max())
    fo = float(np.linalg.norm(first_order(cell, small, X), axis=-1).max()) if first else None
    cb = float(np.max(certified_bound(cell, small, X, tier=tier))) if certified else None
    return RankRow(rank=rank, compression_ratio=float(cost.ratio_params), params=int(cost.params),
                   dW_spectral={k: float(np.linalg.norm(v, 2)) for k, v in dW.items()},
                   dW_frobenius={k: float(np.linalg.norm(v)) for k, v in dW.items()},
                   exact_max=exact, first_order_max=fo, certified_max=cb)


def analyze_ranks(cell, X, *, ranks=None, tier: str = "fast", certified: bool = True,
                  quiet: bool = True) -> list[RankRow]:
    """Tabulate the effect of SVD truncation at each rank.

    Parameters
    ----------
    cell : ElmanRNN or MGRU
    X : array_like, shape (T, B, m) or (T, m)
        Inputs on which the deviation is measured and bounded.
    ranks : sequence of int, optional
        Ranks to evaluate (the same for every recurrent matrix); default
        ``0..n``.
    tier : {'fast', 'tight'}
        Tier of :func:`~rnnperturb.certified_bound`.
    certified : bool
        Also compute the certified bound (the costliest column).
    quiet : bool
        Hide the progress bar.

    Returns
    -------
    list of RankRow
    """
    from .progress import progress

    as_inputs(X, cell.m, cell.dtype)
    ranks = list(range(cell.n + 1)) if ranks is None else [
        check_int("ranks", r, low=0, high=cell.n) for r in ranks]
    return [_evaluate(cell, X, r, tier=tier, first=True, certified=certified)
            for r in progress(ranks, desc="ranks", quiet=quiet)]


@dataclass(frozen=True)
class RankRecommendation:
    """Result of :func:`recommend_rank`.

    Attributes
    ----------
    rank : dict or None
        Recommended rank per recurrent matrix (None if no rank below full
        meets the tolerance; full rank always does, with zero deviation).
    value : float
        Max over the horizon of the deviation measure at that rank.
    params : int
        Stored parameters of the compressed cell.
    method : str
    tolerance : float
    horizon : int
    evidence : tuple of (dict, float)
        Every (rank, max deviation measure) evaluated, in order.
    """

    rank: dict | None
    value: float
    params: int
    method: str
    tolerance: float
    horizon: int
    evidence: tuple


def recommend_rank(cell, X, *, tolerance: float, horizon: int | None = None,
                   method: str = "certified", tier: str = "fast") -> RankRecommendation:
    r"""Smallest rank whose deviation stays below ``tolerance`` over ``horizon``.

    With ``method="certified"`` the criterion is the certified bound, so the
    recommendation is guaranteed on ``X``: :math:`\max_{t\le T,b}\|h'_t-h_t\|_2 \le`
    ``tolerance``. With ``"first_order"`` it is the tangent-linear prediction
    (a point estimate, not a guarantee).

    Every candidate rank is evaluated (the criterion need not be monotone in
    the rank), and the smallest passing one is returned. For the MGRU, ranks of
    :math:`W_f` and :math:`W_h` are chosen separately: the pair with the fewest
    stored parameters among those that pass, searched on a grid of step
    ``max(1, n // 16)`` and then refined one rank at a time.

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
    from .bounds import certified_bound
    from .cost import compression_cost
    from .propagation import first_order
    from .truncation import truncate_svd

    tol = check_positive("tolerance", tolerance)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    T = X3.shape[0] if horizon is None else check_int("horizon", horizon, low=1, high=X3.shape[0])
    X3 = X3[:T]
    if method not in ("certified", "first_order"):
        raise ValueError(f"method: expected 'certified' or 'first_order', found {method!r}")
    evidence = []

    def measure(rank):
        small = truncate_svd(cell, rank=rank)
        if method == "certified":
            v = float(np.max(certified_bound(cell, small, X3, tier=tier)))
        else:
            v = float(np.linalg.norm(first_order(cell, small, X3), axis=-1).max())
        evidence.append((dict(rank), v))
        return v, int(compression_cost(cell, small).params)

    names = cell.recurrent_names
    n = cell.n
    best = None
    if len(names) == 1:
        for r in range(n + 1):
            v, p = measure({names[0]: r})
            if v <= tol:
                best = ({names[0]: r}, v, p)
                break
    else:
        step = max(1, n // 16)
        grid = sorted(set(range(0, n + 1, step)) | {n})
        cands = []
        for rf in grid:
            for rh in grid:
                v, p = measure({names[0]: rf, names[1]: rh})
                if v <= tol:
                    cands.append((p, rf, rh, v))
        if cands:
            p, rf, rh, v = min(cands)
            improved = True
            while improved:        # refine one rank at a time
                improved = False
                for df, dh in ((-1, 0), (0, -1)):
                    nf, nh = rf + df, rh + dh
                    if nf < 0 or nh < 0:
                        continue
                    v2, p2 = measure({names[0]: nf, names[1]: nh})
                    if v2 <= tol and p2 <= p:
                        rf, rh, v, p, improved = nf, nh, v2, p2, True
                        break
            best = ({names[0]: rf, names[1]: rh}, v, p)
    if best is None:
        return RankRecommendation(None, float("nan"), cell.n_params, method, tol, T,
                                  tuple(evidence))
    return RankRecommendation(best[0], best[1], best[2], method, tol, T, tuple(evidence))


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
    from . import tasks

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
