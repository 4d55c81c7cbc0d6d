r"""Rank allocation across recurrent matrices (and layers) under a parameter budget.

A network with several recurrent matrices (the MGRU's :math:`W_f, W_h`, the
GRU's three and the LSTM's four gate blocks, every layer of a stacked network,
named ``'l{l}.{name}'``) can give each matrix its own SVD rank.
:func:`allocate_ranks` chooses a rank per matrix (a dict by name) that

* **budget form** (``budget_params=P``): minimises the deviation criterion
  :math:`D(r) = \max_{t\le T,\,b}\|y'_t - y_t\|_2` (output :math:`y` =
  ``cell.output``: the state for Elman/MGRU/GRU, the LSTM's h, the top layer's
  h of a stack) subject to stored parameters :math:`\le P`;
* **tolerance form** (``tolerance=tol``): minimises stored parameters subject
  to :math:`D(r) \le tol`.

Criterion (``method``): ``'exact'`` (the truncated network run in the cell's
dtype, as :func:`rnnperturb.deviation`), ``'first_order'`` (the tangent-linear
prediction of :func:`rnnperturb.first_order`, a point estimate) or
``'certified'`` (the max of :func:`rnnperturb.certified_bound`, capped at the
sound cap of :func:`~rnnperturb.report.rank_analysis.sound_cap`: a guarantee on
the inputs given).

**Stored parameters** are the honest count of
:func:`rnnperturb.compression_cost`: a truncated matrix costs :math:`2nr` (two
thin factors) only where its numerical rank r is below n/2, else :math:`n^2`
(or CSR when sparser), plus the input matrices and biases. The cost is a sum
over matrices, so each matrix has a table of *levels*: the ranks, from n
downwards, at which its stored size strictly drops (n, then
:math:`\lfloor (n-1)/2\rfloor, \dots, 0` for a full-rank matrix). Ranks between
two levels store as much as the level above them and are not proposed.

**Algorithm (a heuristic).** Evaluating every combination costs
:math:`\prod_k |\text{levels}_k|` runs (:math:`17^8` for a 2-layer LSTM with
n = 32), so the allocation is a greedy marginal-gain search, with local
improvement:

1. *descent* from all matrices dense: lower the one matrix whose next level
   increases the criterion least per stored parameter saved
   (:math:`\Delta D / \Delta P`), while the configuration violates the budget
   (budget form) or while a move keeps :math:`D \le tol` (tolerance form);
2. *ascent* from all matrices at rank 0: raise the matrix whose next level
   decreases the criterion most per parameter added, while the budget allows
   (budget form) or until :math:`D \le tol` (tolerance form);
3. from each end point, *local search*: single moves and swaps (one matrix a
   level up, another one or more levels down) accepted while they strictly
   improve the objective (lower :math:`D` within the budget; fewer parameters
   with :math:`D \le tol`);

and the better of the two end points is returned. Every evaluated
configuration is in ``evidence``. The returned configuration **always**
satisfies the constraint as evaluated (the budget is checked with
:func:`~rnnperturb.compression_cost` of the truncated cell itself, the
tolerance with the criterion at that configuration), but a better
configuration may exist. Against every combination of ranks of small random
networks (a 2-layer Elman stack with n = 6, a GRU with n = 5, an LSTM with
n = 4, a 2-layer GRU with n = 4; ``benchmarks/bench_allocation.py --quick``),
the search reached the exhaustive optimum in 906 of 960 budget and tolerance
scenarios (94.4 %; 6 random networks of each kind, exact and first-order
criterion), at worst 1.75x the optimal deviation (budget form) or 1.35x the
fewest parameters (tolerance form), evaluating on average 16-112 of the
49-15625 combinations. The ``exact_max`` of the result is always the
exact deviation of the returned configuration, whatever ``method`` is.

**Cost**: one evaluation of the criterion per configuration tried (cached):
about 300 for the GRU checkpoint (n = 64, 3 matrices), 700 for a 2-layer GRU
(n = 32, 6 matrices), 1300-2200 for a 2-layer LSTM (n = 32, 8 matrices). With
``'exact'`` each is one forward run of the truncated network on ``X``, so the
time grows with the number of sequences (on 540 digits sequences of a 2-layer
GRU, n = 32: 232 s under a load of 10 on 2 cores). Cheaper: a subset of the
inputs (every 10th of those sequences: 4.7 s, and the same allocation, exact
max deviation 2.996 on all 540), or ``'first_order'`` (tabulated per-matrix
responses, then sums: 78 s, an allocation with exact max deviation 3.09).
``'certified'`` costs one certified bound per configuration.

``'first_order'`` evaluates configurations by superposition: the tangent model
is linear in :math:`\Delta W = \sum_k \Delta W_k`, so the prediction for any
allocation is the sum of the per-matrix predictions
:math:`\ell^{(k)}(r_k)` (one :func:`~rnnperturb.first_order` run per matrix and
level, tabulated once when it fits in ``MAX_ELEMENTS`` numbers, else one run
per configuration).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import (MAX_ELEMENTS, as_inputs, check_elements, check_int,
                                check_positive, describe)

__all__ = ["Allocation", "allocate_ranks", "rank_levels"]


@dataclass(frozen=True)
class Allocation:
    """Result of :func:`allocate_ranks` (the fields of
    :class:`~rnnperturb.report.rank_analysis.RankRecommendation`, and more).

    Attributes
    ----------
    rank : dict of str to int, or None
        Rank per recurrent matrix; None when no configuration meets the
        constraint (budget below the all-rank-0 network, or the dense network
        already above the tolerance).
    value : float
        The criterion (``method``) at ``rank``: max over the horizon and
        sequences of the output deviation norm (NaN when ``rank`` is None).
    exact_max : float
        Exact max deviation norm of the returned configuration
        (:func:`rnnperturb.deviation`, NaN when ``rank`` is None).
    params : int
        Stored parameters of the truncated cell
        (:func:`rnnperturb.compression_cost`).
    compression_ratio : float
        ``params`` / parameters of the original cell.
    method : str
    tolerance : float or None
    budget_params : int or None
    horizon : int
    evidence : tuple of (dict, float)
        Every configuration evaluated and its criterion, in order.
    """

    rank: dict | None
    value: float
    exact_max: float
    params: int
    compression_ratio: float
    method: str
    tolerance: float | None
    budget_params: int | None
    horizon: int
    evidence: tuple

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["evidence"] = [[dict(r), v] for r, v in self.evidence]
        return out


def rank_levels(cell) -> tuple[int, dict]:
    """Storage levels of every recurrent matrix.

    Returns
    -------
    base : int
        Stored parameters outside the recurrent matrices (inputs, biases).
    levels : dict of str to list of (int, int)
        Per recurrent matrix, ``(rank, stored parameters)`` from rank n
        downwards, keeping only the ranks where the stored size of the
        SVD-truncated matrix (:func:`rnnperturb.perturb.cost.matrix_cost`)
        strictly drops; the last entry is rank 0.
    """
    base, cost, _ = _tables(cell)
    levels = {}
    for k, c in cost.items():
        out = []
        for r in range(cell.n, -1, -1):
            if not out or c[r] < out[-1][1]:
                out.append((r, c[r]))
        out[-1] = (0, out[-1][1])               # a zero matrix stores nothing: rank 0
        levels[k] = out
    return base, levels


def _tables(cell):
    """(base, cost, matrices): stored parameters outside the recurrent matrices, and per
    matrix and rank r = 0..n the stored parameters ``cost[name][r]`` and the truncated
    matrix ``matrices[name][r]`` (that of :func:`rnnperturb.truncate_svd`)."""
    from rnnperturb.perturb.cost import compression_cost, matrix_cost

    n = cell.n
    isz = cell.dtype.itemsize
    full = compression_cost(cell, cell)
    base = int(full.params) - sum(int(c.params) for c in full.matrices.values())
    cost, mats = {}, {}
    for k in cell.recurrent_names:
        # truncate_svd's Eckart-Young truncation (weighted_low_rank without weights, in
        # float64, then the cell's dtype) at every rank from one SVD; equal bit for bit
        # (tests/test_allocation.py)
        U, s, Vt = np.linalg.svd(np.asarray(cell.recurrent[k], dtype=np.float64))
        Ws = [np.zeros((n, n), cell.dtype)]
        Ws += [((U[:, :r] * s[:r]) @ Vt[:r]).astype(cell.dtype) for r in range(1, n)]
        Ws.append(cell.recurrent[k])
        mats[k] = Ws
        cost[k] = [int(matrix_cost(k, W, itemsize=isz).params) for W in Ws]
    return base, cost, mats


class _Criterion:
    """The deviation criterion of a configuration (a rank per matrix, in the order of
    ``cell.recurrent_names``), cached; every evaluation is recorded in ``evidence``."""

    def __init__(self, cell, X3, method, tier, mats):
        from rnnperturb.report.rank_analysis import sound_cap
        self.cell, self.X3, self.method, self.tier = cell, X3, method, tier
        self.names = cell.recurrent_names
        self.mats = mats
        self.cache, self.evidence = {}, []
        self.nominal = cell.run(X3) if method == "exact" else None
        self.cap = sound_cap(cell) if method == "certified" else None
        T, B = X3.shape[:2]
        # first order by superposition of per-matrix responses, tabulated on demand
        # while the table stays within MAX_ELEMENTS numbers
        self.table = {} if method == "first_order" else None
        self.room = MAX_ELEMENTS // max(1, T * B * cell.n)

    def truncated(self, ranks):
        return self.cell.replace(**{k: self.mats[k][r] for k, r in zip(self.names, ranks)
                                    if r < self.cell.n})

    def rank(self, ranks) -> dict:
        return {k: int(r) for k, r in zip(self.names, ranks)}

    def _response(self, k, r):
        from rnnperturb.propagate.deviation import first_order
        if (k, r) not in self.table:
            if len(self.table) >= self.room:
                return None
            self.table[k, r] = first_order(self.cell, self.cell.replace(**{k: self.mats[k][r]}),
                                           self.X3)
        return self.table[k, r]

    def _evaluate(self, ranks) -> float:
        cell, X3 = self.cell, self.X3
        if self.method == "first_order":
            parts = [self._response(k, r) for k, r in zip(self.names, ranks) if r < cell.n]
            if not parts:
                return 0.0
            if all(p is not None for p in parts):
                return float(np.linalg.norm(sum(parts), axis=-1).max())
        small = self.truncated(ranks)
        if self.method == "exact":          # as rnnperturb.deviation, nominal run cached
            return float(np.linalg.norm(small.run(X3) - self.nominal, axis=-1).max())
        if self.method == "first_order":
            from rnnperturb.propagate.deviation import first_order
            return float(np.linalg.norm(first_order(cell, small, X3), axis=-1).max())
        from rnnperturb.bounds.trajectory import certified_bound
        from rnnperturb.report.rank_analysis import _capped_max
        return _capped_max(certified_bound(cell, small, X3, tier=self.tier), self.cap)

    def __call__(self, ranks) -> float:
        ranks = tuple(ranks)
        if ranks not in self.cache:
            v = self._evaluate(ranks)
            if not np.isfinite(v):
                from rnnperturb.report.rank_analysis import _check_finite_result
                _check_finite_result(self.method.replace("_", "-"), [v], [self.rank(ranks)],
                                     self.cell)
            self.cache[ranks] = v
            self.evidence.append((self.rank(ranks), v))
        return self.cache[ranks]


def _exact_max(cell, small, X3) -> float:
    """Max over time and sequences of the exact output deviation norm."""
    from rnnperturb.propagate.deviation import deviation
    return float(np.linalg.norm(deviation(cell, small, X3), axis=-1).max())


def _search(crit, table, *, base, budget, tol):
    """Greedy descent and ascent with local search; returns the best configuration (a
    tuple of ranks) meeting the constraint, or None. ``table[j][r]`` is the stored
    parameter count of matrix j at rank r."""
    K = len(table)
    n = len(table[0]) - 1

    def cost(x):
        return base + sum(table[j][r] for j, r in enumerate(x))

    def feasible(x):
        return cost(x) <= budget if budget is not None else crit(x) <= tol

    def better(a, b):                           # is configuration a strictly better than b?
        if budget is not None:
            return (crit(a), cost(a)) < (crit(b), cost(b))
        return (cost(a), crit(a)) < (cost(b), crit(b))

    def step(x, j, d):
        """Matrix j to the next level: d = +1 the highest rank storing less, d = -1
        the highest rank storing more (None at the end)."""
        c = table[j][x[j]]
        if d > 0:
            rs = [r for r in range(x[j], -1, -1) if table[j][r] < c]
        else:
            up = [table[j][r] for r in range(n + 1) if table[j][r] > c]
            rs = [max(r for r in range(n + 1) if table[j][r] == min(up))] if up else []
        if not rs:
            return None
        return x[:j] + (rs[0],) + x[j + 1:]

    def variants(x, j):
        """Matrix j up to three ranks up or down, storing the same."""
        c = table[j][x[j]]
        return [x[:j] + (r,) + x[j + 1:] for r in range(max(0, x[j] - 3), min(n, x[j] + 3) + 1)
                if r != x[j] and table[j][r] == c]

    def descend(x):
        while True:
            v, p = crit(x), cost(x)
            if budget is not None and p <= budget:
                return x
            moves = []
            for j in range(K):
                c = step(x, j, +1)
                if c is None or (budget is None and crit(c) > tol):
                    continue
                moves.append(((crit(c) - v) / (p - cost(c)), cost(c), j, c))
            if not moves:
                return x
            x = min(moves)[3]

    def ascend(x):
        while True:
            v, p = crit(x), cost(x)
            if budget is None and v <= tol:
                return x
            moves = []
            for j in range(K):
                c = step(x, j, -1)
                if c is None or (budget is not None and cost(c) > budget):
                    continue
                moves.append(((crit(c) - v) / (cost(c) - p), cost(c), j, c))
            if not moves:
                return x
            x = min(moves)[3]

    def improve(x):
        while True:
            cands = [step(x, j, d) for j in range(K) for d in (-1, +1)]
            cands += [c for j in range(K) for c in variants(x, j)]
            target = budget if budget is not None else cost(x) - 1
            for j in range(K):                  # swaps: j up a level, i down as needed
                up = step(x, j, -1)
                if up is None:
                    continue
                one = {}                        # does one level down of i meet the target?
                for i in range(K):
                    c = up
                    while i != j:
                        c = step(c, i, +1)
                        if c is None:
                            break
                        one.setdefault(i, cost(c) <= target)
                        cands.append(c)
                        if cost(c) <= target:
                            break
                for i in range(K):              # ... or two others down a level each,
                    for i2 in range(i + 1, K):  # where one level alone does not suffice
                        if j not in (i, i2) and not (one.get(i) or one.get(i2)):
                            c = step(up, i, +1)
                            cands.append(None if c is None else step(c, i2, +1))
            best = None
            for c in dict.fromkeys(cands):
                if c is None or (budget is not None and cost(c) > budget):
                    continue
                if feasible(c) and better(c, x) and (best is None or better(c, best)):
                    best = c
            if best is None:
                return x
            x = best

    ends = []
    dense = (n,) * K
    lowest = tuple(0 for _ in range(K))
    for start, walk in ((dense, descend), (lowest, ascend)):
        if budget is None and walk is descend and crit(dense) > tol:
            continue
        end = walk(start)
        if feasible(end):
            ends.append(improve(end))
    if not ends:
        return None
    best = ends[0]
    for e in ends[1:]:
        if better(e, best):
            best = e
    return best


def allocate_ranks(cell, X, *, budget_params: int | None = None, tolerance: float | None = None,
                   method: str = "exact", horizon: int | None = None,
                   tier: str = "tight") -> Allocation:
    r"""A rank per recurrent matrix under a stored-parameter budget, or the fewest stored
    parameters within a deviation tolerance (see the module notes: a greedy heuristic
    with local search that never violates the constraint).

    Parameters
    ----------
    cell : Cell
        Any registered cell, including stacked networks (``'l{l}.{name}'``).
    X : array_like, shape (T, B, m) or (T, m)
        Inputs on which the deviation is measured (or bounded).
    budget_params : int, optional
        Largest allowed stored parameter count of the truncated cell
        (:func:`rnnperturb.compression_cost`, input matrices and biases included).
        The deviation criterion is minimised within it.
    tolerance : float, optional
        Largest allowed criterion (max output deviation norm, > 0); the stored
        parameter count is minimised within it. Exactly one of ``budget_params``
        and ``tolerance`` is given.
    method : {'exact', 'first_order', 'certified'}
        The deviation criterion (see the module notes); ``'certified'`` runs
        one :func:`~rnnperturb.certified_bound` per configuration evaluated.
    horizon : int, optional
        Number of leading time steps of ``X`` to use (default all).
    tier : {'fast', 'tight'}
        Tier of the certified bound.

    Returns
    -------
    Allocation
        ``params`` <= ``budget_params`` (budget form), or ``value`` <=
        ``tolerance`` (tolerance form), whenever ``rank`` is not None.

    Raises
    ------
    ValueError
        Naming the argument: neither or both of ``budget_params`` and
        ``tolerance``, a bad method, tier, horizon or inputs, weights or inputs
        so large that the analysis overflows.
    """
    from rnnperturb.perturb.cost import compression_cost
    from rnnperturb.perturb.low_rank import truncate_svd
    from rnnperturb.report.rank_analysis import _check_scales

    if (budget_params is None) == (tolerance is None):
        raise ValueError(f"budget_params/tolerance: expected exactly one of them, found "
                         f"budget_params={describe(budget_params)}, "
                         f"tolerance={describe(tolerance)}")
    budget = None if budget_params is None else check_int("budget_params", budget_params, low=0)
    tol = None if tolerance is None else check_positive("tolerance", tolerance)
    if method not in ("exact", "first_order", "certified"):
        raise ValueError(f"method: expected 'exact', 'first_order' or 'certified', found "
                         f"{describe(method)}")
    if tier not in ("fast", "tight"):
        raise ValueError(f"tier: expected 'fast' or 'tight', found {describe(tier)}")
    X3, _ = as_inputs(X, cell.m, cell.dtype)
    T = X3.shape[0] if horizon is None else check_int("horizon", horizon, low=1,
                                                      high=X3.shape[0])
    X3 = X3[:T]
    check_elements("X", (X3.shape[0], X3.shape[1], cell.state_size), what="T x B x N")
    _check_scales(cell, X3)

    base, cost, mats = _tables(cell)
    names = cell.recurrent_names
    crit = _Criterion(cell, X3, method, tier, mats)
    table = [cost[k] for k in names]
    best = _search(crit, table, base=base, budget=budget, tol=tol)
    if best is None:
        return Allocation(None, float("nan"), float("nan"), int(cell.n_params), 1.0, method,
                          tol, budget, T, tuple(crit.evidence))
    claimed = base + sum(t[r] for t, r in zip(table, best))
    rank = crit.rank(best)
    small = truncate_svd(cell, rank=rank)
    honest = compression_cost(cell, small)
    if int(honest.params) != claimed:         # the per-matrix table is the honest count
        raise RuntimeError(f"stored parameters: the per-matrix table gives {claimed}, "
                           f"compression_cost {honest.params} at {rank}")
    exact = crit(best) if method == "exact" else _exact_max(cell, small, X3)
    return Allocation(rank, float(crit(best)), float(exact), int(honest.params),
                      float(honest.ratio_params), method, tol, budget, T, tuple(crit.evidence))
