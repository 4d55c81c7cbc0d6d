r"""Rank analysis and rank selection: which SVD rank can a network afford?

:func:`analyze_ranks` tabulates, for each retained rank r, the compression
ratio, :math:`\|\Delta W\|_2`, :math:`\|\Delta W\|_F` and the maximum over time
and sequences of the exact, first-order and certified deviation
:math:`\|h'_t - h_t\|_2`. :func:`recommend_rank` returns the smallest rank whose
deviation (certified bound, or first-order prediction) stays below a tolerance
over a horizon; for the MGRU it allocates ranks to :math:`W_f` and :math:`W_h`
separately, at the lowest stored parameter count.

With labels ``y`` (and a readout), every row of :func:`analyze_ranks` also
gives the **accuracy** of the truncated network and its **certified
accuracy**: the fraction of (scored) sequences that the full network gets
right and whose prediction is *proven* unchanged by the truncation at every
scored step (the certified deviation bound against the per-class margins of
:func:`rnnperturb.bounds.recall.certified_recall`). So
``certified_accuracy <= accuracy`` at every rank, with equality at full rank
(up to margins below about 1e-12). :func:`recommend_accuracy` turns the rows
into the smallest rank that loses at most a tolerance of accuracy (measured)
and the smallest rank that provably loses none (certified).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import (MAX_ELEMENTS, as_generator, as_inputs, check_elements, check_int,
                                check_positive, check_scale, describe)

__all__ = ["RankRow", "analyze_ranks", "RankRecommendation", "recommend_rank", "default_inputs",
           "sound_cap", "AccuracyRecommendation", "recommend_accuracy", "labelled_accuracy"]


@dataclass(frozen=True)
class RankRow:
    """One row of :func:`analyze_ranks` (norms in hidden-state units).

    ``accuracy`` and ``certified_accuracy`` are None without labels;
    ``certified_accuracy`` (and ``certified_max``) also when the certified
    bound is not computed."""

    rank: dict
    compression_ratio: float
    params: int
    dW_spectral: dict
    dW_frobenius: dict
    exact_max: float
    first_order_max: float | None
    certified_max: float | None
    accuracy: float | None = None
    certified_accuracy: float | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def sound_cap(cell) -> float:
    r"""The trivial bound on :math:`\|h'_t - h_t\|_2` of the output (what the readout
    sees, :meth:`~rnnperturb.cells.Cell.output`) from a zero state: the 2-norm
    (rounded up) of the output part of the cell's
    :meth:`~rnnperturb.cells.Cell.trivial_cap` (:math:`2\sqrt n` for the Elman RNN,
    the MGRU, the GRU and the LSTM's h), the same cap the certified bound never
    exceeds.
    """
    from rnnperturb.verified.linalg import vec_norm_upper
    width = cell.hidden_of(cell.trivial_cap(np.zeros(cell.state_size), 1))
    return float(vec_norm_upper(np.asarray(width, np.float64))[0])


def _capped_max(bound, cap: float) -> float:
    """max of a certified bound, with NaN/Inf/over-cap entries replaced by the sound cap.

    A bound whose arithmetic overflowed is NaN or Inf; the cap is still sound."""
    b = np.asarray(bound, dtype=np.float64)
    b = np.where(np.isfinite(b) & (b <= cap), b, cap)
    return float(np.max(b)) if b.size else 0.0


def _check_scales(cell, X3) -> None:
    """Refuse weights and inputs whose magnitude overflows the analysis (named)."""
    for k, v in cell.params.items():
        check_scale(k, v, dtype=cell.dtype)
    check_scale("X", X3, dtype=cell.dtype)


def _check_finite_result(what: str, values, ranks, cell) -> None:
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    if np.any(bad):
        r = ranks[int(np.argmax(bad))]
        raise ValueError(f"X: expected weights and inputs for which the {what} deviation stays "
                         f"finite in {cell.dtype}, found an overflow (NaN/Inf) at rank "
                         f"{describe(r)}")


def labelled_accuracy(cell, task) -> float:
    """Fraction of the scored sequences of ``task`` (see
    :func:`rnnperturb.bounds.recall.label_task`) that ``cell`` gets right at every
    scored step: arg-max of the readout of the float64 run of its weights."""
    from rnnperturb.bounds.set_recall import _recalls
    scored = np.asarray(task.recall, bool).any(axis=0)
    return float(np.mean(_recalls(cell.astype(np.float64), task)[scored]))


def analyze_ranks(cell, X, *, ranks=None, y=None, tier: str = "tight", certified: bool = True,
                  quiet: bool = True) -> list[RankRow]:
    r"""Tabulate the effect of SVD truncation at each rank.

    The exact and first-order deviations and the norms of ΔW come from one
    :func:`~rnnperturb.rank_sweep`; the certified bound and the storage cost
    are evaluated per rank.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
        Inputs on which the deviation is measured and bounded.
    ranks : sequence of int, optional
        Ranks to evaluate (the same for every recurrent matrix); default
        ``0..n``.
    y : array_like of int, shape (B,) or (T, B), optional
        Labels (the cell needs a readout): shape (B,) is scored at the last
        step, (T, B) at every step where ``y >= 0``. Each row then gains
        ``accuracy`` (the truncated network's, float64 run of its weights) and
        ``certified_accuracy`` (with ``certified``): the fraction of
        sequences that the full network gets right at every scored step and
        whose prediction is proven unchanged by the truncation there,
        :math:`\min(\|V_y-V_j\|_2 B_t, |V_y-V_j|^\top\rho_t) < m_j` for every
        class :math:`j \ne y` (:func:`rnnperturb.bounds.recall.certified_recall`,
        with the bound of this row). Both are fractions of the sequences with
        at least one scored step.
    tier : {'fast', 'tight'}
        Tier of :func:`~rnnperturb.certified_bound` (default tight).
    certified : bool
        Also compute the certified bound (the costliest column).
    quiet : bool
        Hide the progress bar.

    Returns
    -------
    list of RankRow
        ``certified_max`` is never NaN: where the bound's arithmetic overflows
        it is the sound cap 2 sqrt(n) (see :func:`sound_cap`).

    Raises
    ------
    ValueError
        For bad inputs, labels or ranks (named), for weights or inputs so large
        that the analysis would overflow (``check_scale``), and when T x B x n
        exceeds ``MAX_ELEMENTS``.
    """
    from rnnperturb.bounds.trajectory import certified_bound, certified_bounds
    from rnnperturb.perturb.cost import compression_cost
    from rnnperturb.report.progress import progress
    from rnnperturb.propagate.rank_sweep import rank_sweep
    from rnnperturb.perturb.low_rank import truncate_svd

    X3, _ = as_inputs(X, cell.m, cell.dtype)
    check_elements("X", (X3.shape[0], X3.shape[1], cell.n), what="T x B x n")
    _check_scales(cell, X3)
    if tier not in ("fast", "tight"):
        raise ValueError(f"tier: expected 'fast' or 'tight', found {describe(tier)}")
    if ranks is None:
        ranks = list(range(cell.n + 1))
    else:
        if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__"):
            raise ValueError(f"ranks: expected a sequence of integers, found {describe(ranks)}")
        ranks = [check_int("ranks", r, low=0, high=cell.n) for r in ranks]
        if not ranks:
            raise ValueError("ranks: expected at least one rank, found an empty sequence")
    task = None
    if y is not None:
        from rnnperturb.bounds.recall import certified_recall, label_task, recall_margins
        from rnnperturb.bounds.set_recall import _recalls
        task = label_task(cell, X3, y)
        c64 = cell.astype(np.float64)
        scored = task.recall.any(axis=0)
        margins = recall_margins(c64, task) if certified else None
    wanted = set(ranks)
    sweep = rank_sweep(cell, X, ranks)
    keep = [i for i in range(len(sweep.ranks)) if set(sweep.rank(i).values()) <= wanted]
    exact, first = sweep.exact_max, sweep.first_order_max
    _check_finite_result("exact", [exact[i] for i in keep], [sweep.rank(i) for i in keep], cell)
    _check_finite_result("first-order", [first[i] for i in keep], [sweep.rank(i) for i in keep],
                         cell)
    spec, frob = sweep.dW_spectral, sweep.dW_frobenius
    cap = sound_cap(cell)
    rows = []
    for i in progress(keep, desc="ranks", quiet=quiet):
        rank = sweep.rank(i)
        small = truncate_svd(cell, rank=rank)
        cost = compression_cost(cell, small)
        cb = acc = cacc = None
        if certified:
            if task is None:
                bound, rho = certified_bound(cell, small, X3, tier=tier), None
            else:
                bound, rho = certified_bounds(cell, small, X3, tier=tier)
            cb = _capped_max(bound, cap)
        if task is not None:
            s64 = small.astype(np.float64)
            if certified:       # non-finite bounds certify nothing (inf fails every margin)
                res = certified_recall(
                    c64, s64, task, margins=margins,
                    bound=np.where(np.isfinite(bound), bound, np.inf),
                    componentwise_bound=np.where(np.isfinite(rho), rho, np.inf))
                acc = float(np.mean(res.correct[scored]))
                cacc = float(np.mean(res.certified[scored]))
            else:
                acc = float(np.mean(_recalls(s64, task)[scored]))
        rows.append(RankRow(rank=rank, compression_ratio=float(cost.ratio_params),
                            params=int(cost.params),
                            dW_spectral={k: float(v[i]) for k, v in spec.items()},
                            dW_frobenius={k: float(v[i]) for k, v in frob.items()},
                            exact_max=float(exact[i]), first_order_max=float(first[i]),
                            certified_max=cb, accuracy=acc, certified_accuracy=cacc))
    return rows


@dataclass(frozen=True)
class AccuracyRecommendation:
    """Result of :func:`recommend_accuracy` (ranks as dicts by recurrent matrix name).

    Attributes
    ----------
    full_accuracy : float
        Accuracy of the network itself (no truncation).
    tolerance : float
        Allowed loss of accuracy (a fraction: 0.01 is one point).
    rank, accuracy, params, compression_ratio
        The smallest evaluated rank whose measured accuracy is
        >= ``full_accuracy - tolerance``, and its numbers (None when no
        evaluated rank passes).
    certified_rank, certified_accuracy, certified_params, certified_compression_ratio
        The smallest evaluated rank whose certified accuracy equals
        ``full_accuracy``: every sequence the network gets right is proven to
        keep its prediction (None when none does, or without certified
        accuracies).
    """

    full_accuracy: float
    tolerance: float
    rank: dict | None
    accuracy: float | None
    params: int | None
    compression_ratio: float | None
    certified_rank: dict | None
    certified_accuracy: float | None
    certified_params: int | None
    certified_compression_ratio: float | None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def recommend_accuracy(rows, full_accuracy: float, *, tolerance: float) -> AccuracyRecommendation:
    """The smallest ranks among ``rows`` (of :func:`analyze_ranks` with labels) that lose
    at most ``tolerance`` of accuracy (measured) and that provably lose none (certified).

    "Smallest" is the lowest stored parameter count (ties: first row), among the
    evaluated rows only; accuracy need not be monotone in the rank and no
    monotonicity is assumed.

    Parameters
    ----------
    rows : list of RankRow
        With ``accuracy`` (and ``certified_accuracy`` for the certified answer).
    full_accuracy : float
        The untruncated network's accuracy on the same labels
        (:func:`labelled_accuracy`).
    tolerance : float
        Allowed loss, a fraction in [0, 1) (0.01 = one point).
    """
    tol = check_positive("tolerance", tolerance, allow_zero=True)
    if not tol < 1:
        raise ValueError(f"tolerance: expected a fraction in [0, 1), found {tolerance!r}")
    if not rows or any(r.accuracy is None for r in rows):
        raise ValueError("rows: expected rows of analyze_ranks with labels (accuracy set), "
                         "found rows without accuracy")
    full = float(full_accuracy)
    slack = 1e-12                     # accuracies are k / B: compare up to rounding
    ordered = sorted(rows, key=lambda r: r.params)
    meas = next((r for r in ordered if r.accuracy >= full - tol - slack), None)
    cert = next((r for r in ordered if r.certified_accuracy is not None
                 and r.certified_accuracy >= full - slack), None)
    return AccuracyRecommendation(
        full_accuracy=full, tolerance=tol,
        rank=None if meas is None else dict(meas.rank),
        accuracy=None if meas is None else meas.accuracy,
        params=None if meas is None else meas.params,
        compression_ratio=None if meas is None else meas.compression_ratio,
        certified_rank=None if cert is None else dict(cert.rank),
        certified_accuracy=None if cert is None else cert.certified_accuracy,
        certified_params=None if cert is None else cert.params,
        certified_compression_ratio=None if cert is None else cert.compression_ratio)


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


def recommend_rank(cell, X, *, tolerance: float | None = None, horizon: int | None = None,
                   method: str = "certified", tier: str = "tight",
                   budget_params: int | None = None) -> RankRecommendation:
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
    method : {'certified', 'first_order', 'exact'}
    tier : {'fast', 'tight'}
        Tier of the certified bound.
    budget_params : int, optional
        With ``budget_params`` (instead of ``tolerance``) or ``method='exact'``
        the answer is :func:`rnnperturb.report.allocation.allocate_ranks`'
        (any cell, stacks included: a rank per recurrent matrix under a stored
        parameter budget, or within the tolerance), an ``Allocation``.
    """
    if budget_params is not None or method == "exact":
        from rnnperturb.report.allocation import allocate_ranks
        return allocate_ranks(cell, X, budget_params=budget_params, tolerance=tolerance,
                              horizon=horizon, method=method, tier=tier)
    from rnnperturb.bounds.trajectory import certified_bound
    from rnnperturb.perturb.cost import compression_cost
    from rnnperturb.propagate.deviation import first_order
    from rnnperturb.perturb.low_rank import truncate_svd

    tol = check_positive("tolerance", tolerance)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    T = X3.shape[0] if horizon is None else check_int("horizon", horizon, low=1, high=X3.shape[0])
    X3 = X3[:T]
    if method not in ("certified", "first_order"):
        raise ValueError(f"method: expected 'certified', 'first_order' or 'exact', "
                         f"found {describe(method)}")
    if tier not in ("fast", "tight"):
        raise ValueError(f"tier: expected 'fast' or 'tight', found {describe(tier)}")
    check_elements("X", (X3.shape[0], X3.shape[1], cell.n), what="T x B x n")
    _check_scales(cell, X3)
    cap = sound_cap(cell)
    evidence = []
    cache = {}

    def measure(rank: dict):
        key = tuple(rank.values())
        if key not in cache:
            small = truncate_svd(cell, rank=rank)
            if method == "certified":
                v = _capped_max(certified_bound(cell, small, X3, tier=tier), cap)
            else:
                v = float(np.linalg.norm(first_order(cell, small, X3), axis=-1).max())
                _check_finite_result("first-order", [v], [rank], cell)
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

    Raises
    ------
    ValueError
        Naming the metadata key (``meta_K``, ``meta_D``, ...) when a task's
        parameter is missing, not an integer/number, out of range, inconsistent
        with the cell's input size, or would allocate more than
        ``MAX_ELEMENTS`` input numbers (checked before allocating).
    """
    X, desc, _ = _default(cell, meta, batch, T, seed)
    return X, desc


def _default(cell, meta, batch, T, seed):
    """(X, description, Task or None) of :func:`default_inputs`."""
    from rnnperturb import tasks

    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ValueError(f"meta: expected a dict of metadata, found {type(meta).__name__}")
    batch = check_int("batch", batch, low=1)
    T = check_int("T", T, low=1)
    name = meta.get("task")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"meta_task: expected a string, found {describe(name)}")
    rng = as_generator(seed)
    if name == "memorization":
        K = _meta_int(meta, "K", low=2)
        L = _meta_int(meta, "L", low=1, high=MAX_ELEMENTS)
        D = _meta_int(meta, "D", low=0, high=MAX_ELEMENTS)
        _meta_m(cell, "K", K + 2, f"K + 2 = {K + 2}")
        every = L <= 10 and K ** L <= 1024      # (K >= 2: L > 10 means K**L > 1024)
        B = K ** L if every else batch
        check_elements("meta_D" if D >= L else "meta_L", (2 * L + D + 1, B, K + 2),
                       what="T = 2L + D + 1 steps x B x m")
        if every:
            t = tasks.memorization_all(K, L, D)
            return t.X, f"all {K ** L} memorization sequences (D={D})", t
        t = tasks.memorization(K, L, D, batch=batch, seed=rng)
        return (t.X, f"{batch} sampled memorization sequences (K={K}, L={L}, D={D}, seed={seed})",
                t)
    if name == "kback":
        K = _meta_int(meta, "K", low=2)
        k = _meta_int(meta, "k", low=1, high=MAX_ELEMENTS)
        Tk = _meta_int(meta, "T", low=k + 1, default=50)
        rep_key = "repeat" if "repeat" in meta else "repeat_lo"
        rep = _meta_float(meta, rep_key, default=0.0)
        if not 0 <= rep < 1:
            raise ValueError(f"meta_{rep_key}: expected a probability in [0, 1), found {rep!r}")
        _meta_m(cell, "K", K, f"K = {K}")
        check_elements("meta_T", (Tk, batch, K), what="T x B x m")
        t = tasks.kback(K, k, Tk, repeat=rep, batch=batch, seed=rng)
        return t.X, f"{batch} k-back sequences (repeat={rep}, seed={seed})", t
    if name == "ar_signal":
        Ta = _meta_int(meta, "T", low=12, default=200)
        hz = _meta_int(meta, "horizon", low=0, high=Ta - 12, default=0)
        tau = _meta_float(meta, "tau")
        noise = _meta_float(meta, "noise")
        if not tau > 0:
            raise ValueError(f"meta_tau: expected a finite number > 0, found {tau!r}")
        if not noise >= 0:
            raise ValueError(f"meta_noise: expected a finite number >= 0, found {noise!r}")
        _meta_m(cell, "task", 1, "1 (one AR(1) signal)")
        check_elements("meta_T", (Ta + hz, batch, 1), what="T x B x m")
        t = tasks.ar_signal(Ta, tau=tau, noise=noise, horizon=hz, batch=batch, seed=rng)
        return t.X, f"{batch} AR(1) signal sequences (seed={seed})", t
    check_elements("T", (T, batch, cell.m), what="T x B x m")
    X = rng.standard_normal((T, batch, cell.m)) / np.sqrt(cell.m)
    return X, f"{batch} sequences of {T} steps, i.i.d. N(0, 1/m) inputs (seed={seed})", None


def default_task(cell, meta: dict | None = None, *, batch: int = 64, T: int = 100, seed=0):
    r"""The inputs of :func:`default_inputs` and, for a memorization task and a cell whose
    readout has the task's number of classes, its labels.

    Only memorization: its metric is per sequence (recalled at every recall
    step, :func:`rnnperturb.tasks.metrics.sequence_accuracy`), the unit of
    :func:`analyze_ranks`' accuracy. A k-back task is scored per step (its
    sequence accuracy over ~50 steps is not a metric anyone uses), so no labels
    are derived for it; pass them explicitly to score sequences.

    Returns
    -------
    X : ndarray, shape (T, B, m)
    y : ndarray of int, shape (T, B), or None
        The targets at the scored (recall) steps, -1 elsewhere: the labels of
        :func:`analyze_ranks`, whose accuracy is then the task's recall (the
        fraction of sequences right at every recall step). None for regression
        and k-back tasks, inputs without a task, or a cell without a matching
        readout.
    description : str
    """
    X, desc, task = _default(cell, meta, batch, T, seed)
    if (task is None or task.name != "memorization" or cell.V is None
            or cell.V.shape[0] != task.n_out):
        return X, None, desc
    rec = np.asarray(task.recall, bool)
    return X, np.where(rec, task.targets, -1).astype(np.int64), desc


_MISSING = object()


def _meta_value(meta, key, default):
    v = meta.get(key, _MISSING)
    if v is _MISSING:
        if default is _MISSING:
            raise ValueError(f"meta_{key}: expected a value (the checkpoint's task "
                             f"{meta.get('task')!r} needs it), found the key missing")
        return default
    if isinstance(v, np.ndarray):
        raise ValueError(f"meta_{key}: expected a 0-d number, found an array of shape {v.shape}")
    return v


def _meta_int(meta, key, *, low=None, high=None, default=_MISSING) -> int:
    """An integer metadata value (integral floats accepted), named ``meta_<key>``."""
    v = _meta_value(meta, key, default)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"meta_{key}: expected an integer, found {describe(v)}")
    if isinstance(v, (float, np.floating)):
        if not (np.isfinite(v) and float(v).is_integer()):
            raise ValueError(f"meta_{key}: expected an integer, found {describe(v)}")
        v = int(v)
    return check_int(f"meta_{key}", int(v), low=low, high=high)


def _meta_float(meta, key, *, default=_MISSING) -> float:
    v = _meta_value(meta, key, default)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"meta_{key}: expected a real number, found {describe(v)}")
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"meta_{key}: expected a finite number, found {v!r}")
    return v


def _meta_m(cell, key, m, formula):
    if m != cell.m:
        raise ValueError(f"meta_{key}: expected a task whose input size {formula} equals the "
                         f"cell's m = {cell.m}, found m = {m}")
