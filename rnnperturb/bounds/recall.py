r"""Certified recall: a deviation bound turned into a memory guarantee.

For a cell with a readout, logits :math:`y_t = V h_t + c`, and a perturbed copy
(recurrent matrices changed, readout kept: ``DESIGN.md`` §4 ignores the
readout of ``other``), the perturbed logits are :math:`y'_t = y_t + V e_t` with
:math:`e_t = h'_t - h_t`. At a recall step with target class :math:`y`, the
perturbed network answers :math:`y` when, for every :math:`j \ne y`,

.. math::
    y'_{t,y} - y'_{t,j} = \underbrace{(y_{t,y} - y_{t,j})}_{m_j}
        + (V_y - V_j)^\top e_t > 0 .

Since :math:`|(V_y - V_j)^\top e_t| \le \|V_y - V_j\|_2 \|e_t\|_2` and, with a
componentwise bound :math:`|e_t| \le \rho_t`, also
:math:`\le |V_y - V_j|^\top \rho_t`, a certified bound on the deviation
certifies the step when

.. math::
    q_j := \min\bigl(\|V_y - V_j\|_2\, B_t,\ |V_y - V_j|^\top\rho_t\bigr) < m_j
    \quad\text{for every } j \ne y .

This per-class test is sharper than (and implied by) the test of
``DESIGN.md`` §2(e), :math:`B_t \max_{j}\|V_y-V_j\|_2 < m_y - \max_{j\ne y} y_j`.
A sequence is certified when every step of its recall window is.

The first-order *point prediction* replaces :math:`e_t` by the tangent-linear
:math:`\ell_t` (:func:`rnnperturb.first_order`) and takes the arg-max of
:math:`y_t + V\ell_t`; the measured answer uses the exact perturbed trajectory.

Floating point. :func:`rnnperturb.bounds.trajectory.certified_bound` bounds the
deviation of the *exact* trajectories. The nominal margins :math:`m_j` are
computed from the float64 nominal trajectory; the rounding of the dot products
is bounded (:math:`\gamma_{n+2}`), and the rounding of the nominal trajectory
itself is an *estimate*, not a verified bound: 100 times the distance to a
``numpy.longdouble`` re-run plus :math:`10^{-12}`. Trained memorization nets
have margins of order 1, so this allowance (about :math:`10^{-12}`) changes no
decision in practice; it is the one unverified ingredient.

Limit of the test. Both tests drop the sign of :math:`(V_y-V_j)^\top e_t`.
On the shipped memorization checkpoints the tight tier of the certified bound
is within a relative :math:`2\cdot10^{-5}` of the exact deviation at every recall step
and rank, and its certificate equals
the one obtained with the exact :math:`|e_t|` (``validation/exp_certified_recall``):
the remaining gap to the measured recall comes from the sign-free test, not
from the bound. Closing it needs an *enclosure* of :math:`e_t` (the computed
deviation and a rounding radius), not only an upper bound on its size.

Certified-safe rank. :func:`certified_safe_rank` sweeps truncation ranks
(:func:`rnnperturb.perturb.low_rank.truncate_svd`, the same rank for every
recurrent matrix) and reports the smallest rank at which every sequence is
certified, next to the smallest rank at which every sequence is measured
correct (the empirically safe rank) and their gap in % of n.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import as_inputs, check_bool, check_compatible, check_int
from rnnperturb.cells.namespace import FLOAT
from rnnperturb.verified.linalg import U64, gamma, up
from rnnperturb.report.progress import progress
from rnnperturb.propagate.deviation import first_order

__all__ = ["CertifiedRecall", "SafeRank", "certified_recall", "certified_safe_rank",
           "recall_margins", "label_task"]


def _float64(cell):
    """The same cell in float64 (float32 parameters convert exactly)."""
    return cell.astype(np.float64)


def _check_task(task, cell):
    for attr in ("X", "targets", "recall", "kind"):
        if not hasattr(task, attr):
            raise ValueError(f"task: expected a rnnperturb.tasks.Task, found {type(task).__name__}")
    if task.kind != "classification":
        raise ValueError(f"task: expected a classification task, found kind {task.kind!r}")
    if cell.V is None:
        raise ValueError("cell: expected a cell with a readout (V, c), found V=None")
    if task.X.shape[-1] != cell.m:
        raise ValueError(f"task: expected inputs with m={cell.m}, found shape {task.X.shape}")
    k = cell.V.shape[0]
    rec = np.asarray(task.recall, dtype=bool)
    if rec.ndim != 2 or not rec.any():
        raise ValueError("task: expected a non-empty recall window (T, B), found none")
    tg = np.asarray(task.targets)[rec]
    if tg.size and (tg.min() < 0 or tg.max() >= k):
        raise ValueError(f"task: expected recall targets in [0, {k}), found range "
                         f"[{tg.min()}, {tg.max()}]")


def label_task(cell, X, y):
    r"""A classification task from user labels, for :func:`certified_recall`.

    Parameters
    ----------
    cell : Cell
        With a readout ``V`` of shape (k, n) (labels are classes 0..k-1).
    X : array_like, shape (T, B, m) or (T, m)
        Inputs.
    y : array_like of int, shape (B,) or (T, B)
        Shape (B,): one label per sequence, scored at the last step. Shape
        (T, B): a label per step, scored where ``y >= 0`` (negative entries are
        not scored).

    Returns
    -------
    Task
        ``name="labels"``, ``kind="classification"``, ``targets`` (T, B)
        (0 at unscored steps) and ``recall = mask`` (T, B), the scored steps. A
        sequence counts as correct when it is correct at every scored step
        (its "recall window"); a sequence without a scored step is correct
        vacuously (callers that report accuracies leave such sequences out).

    Raises
    ------
    ValueError
        ``"y: expected ..., found ..."`` for a non-integer array, a wrong shape,
        labels outside [0, k - 1] (negative ones in the (B,) form), no scored
        step at all, or a cell without a readout.
    """
    from rnnperturb.tasks.generators import Task
    if cell.V is None:
        raise ValueError("y: expected a cell with a readout V (a Linear layer next to the "
                         "network) to score labels, found none")
    X3, _ = as_inputs(X, cell.m, cell.dtype)
    T, B = X3.shape[:2]
    k = cell.V.shape[0]
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise ValueError(f"y: expected an integer array, found dtype {y.dtype}")
    if y.shape == (B,):
        if np.any((y < 0) | (y >= k)):
            bad = y[np.argmax((y < 0) | (y >= k))]
            raise ValueError(f"y: expected labels in [0, {k - 1}] (the readout has {k} outputs), "
                             f"found {int(bad)}")
        mask = np.zeros((T, B), dtype=bool)
        mask[-1] = True
        targets = np.zeros((T, B), dtype=np.int64)
        targets[-1] = y
    elif y.shape == (T, B):
        if np.any(y >= k):
            raise ValueError(f"y: expected labels in [0, {k - 1}] (the readout has {k} outputs; "
                             f"negative = not scored), found {int(y[y >= k].flat[0])}")
        mask = y >= 0
        if not mask.any():
            raise ValueError(f"y: expected at least one scored label (>= 0), found all {T * B} "
                             f"entries negative")
        targets = np.where(mask, y, 0).astype(np.int64)
    else:
        raise ValueError(f"y: expected shape ({B},) (one label per sequence of X, scored at the "
                         f"last step) or ({T}, {B}) (one per step, negative = not scored), found "
                         f"shape {y.shape}")
    return Task(name="labels", X=X3, targets=targets, mask=mask, n_out=k,
                kind="classification", recall=mask, params={})


def _trajectory_error_estimate(cell, X3, H):
    """Estimated ||h_t - fl(h_t)||_2 per (t, b) of the output h_t (what the readout sees,
    :meth:`Cell.output`): 100 x distance to a longdouble run of the cell's own step
    (:meth:`Cell.forward` over the float namespace, on the full state) + 1e-12."""
    ld = np.longdouble
    P = {k: np.asarray(v, dtype=ld) for k, v in cell.params.items()}
    Xl = np.asarray(X3, dtype=ld)
    s = np.zeros((X3.shape[1], cell.state_size), dtype=ld)   # the full state (LSTM: h, c)
    err = np.empty(H.shape[:2])

    def rec(k, a):
        return FLOAT.matvec(P[k], a)
    for t in range(X3.shape[0]):
        s = cell.forward(FLOAT, P, s, Xl[t], rec)[0]
        h = cell.output(FLOAT, s)                           # what the readout sees
        err[t] = np.sqrt(np.sum((h - H[t].astype(ld)) ** 2, axis=-1)).astype(np.float64)
    return 100.0 * err + 1e-12


def recall_margins(cell, task):
    r"""Nominal per-class logit margins at the recall steps, rounded down.

    Parameters
    ----------
    cell : ElmanRNN or MGRU
        With a readout ``V`` (k, n), ``c`` (k,).
    task : Task
        A classification task with a ``recall`` window (e.g.
        :func:`rnnperturb.tasks.memorization_all`).

    Returns
    -------
    margin : ndarray, shape (T, B, k)
        Lower bound of :math:`y_{t,y} - y_{t,j}` for the target :math:`y` of step
        t (``+inf`` at :math:`j = y`); NaN outside the recall window.
    dnorm : ndarray, shape (T, B, k)
        Upper bound of :math:`\|V_y - V_j\|_2` (0 at :math:`j = y`).
    dabs : ndarray, shape (T, B, k, n)
        Upper bound of :math:`|V_y - V_j|` componentwise.
    """
    cell = _float64(cell)
    _check_task(task, cell)
    X3, _ = as_inputs(task.X, cell.m, cell.dtype)
    H = cell.run(X3)
    V, c = np.asarray(cell.V, np.float64), np.asarray(cell.c, np.float64)
    k, n = V.shape
    y = np.where(task.recall, task.targets, 0).astype(np.int64)             # (T, B)
    D = V[y][:, :, None, :] - V[None, None, :, :]                           # (T, B, k, n)
    dabs = np.abs(D) * (1 + 2 * U64)
    dnorm = np.sqrt(up(np.sum(dabs * dabs, axis=-1), n)) * (1 + 2 * U64)
    raw = np.einsum("tbkn,tbn->tbk", D, H) + (c[y][:, :, None] - c[None, None, :])
    round_dot = up(gamma(n + 3) * (np.einsum("tbkn,tbn->tbk", dabs, np.abs(H))
                                   + np.abs(c[y])[:, :, None] + np.abs(c)[None, None, :]), n + 2)
    traj = _trajectory_error_estimate(cell, X3, H)                          # (T, B)
    margin = raw - round_dot - up(dnorm * traj[:, :, None], 1)
    onehot = np.arange(k)[None, None, :] == y[:, :, None]
    margin = np.where(onehot, np.inf, margin)
    dnorm = np.where(onehot, 0.0, dnorm)
    margin = np.where(task.recall[:, :, None], margin, np.nan)
    return margin, dnorm, dabs


@dataclass(frozen=True, eq=False)
class CertifiedRecall:
    r"""Result of :func:`certified_recall` (B sequences, R recall steps each).

    Attributes
    ----------
    certified : ndarray of bool, shape (B,)
        Every recall step of the sequence is certified correct.
    correct : ndarray of bool, shape (B,)
        Measured: the exact perturbed trajectory (float64) recalls every step.
    predicted : ndarray of bool, shape (B,)
        First-order point prediction of ``correct``.
    step_certified : ndarray of bool, shape (R, B)
    slack : ndarray, shape (R, B)
        :math:`\min_{j\ne y}(m_j - q_j)`: positive where certified.
    margin : ndarray, shape (R, B)
        Nominal margin :math:`\min_{j \ne y} m_j` (rounded down).
    bound : ndarray, shape (T, B)
        The deviation bound used, :math:`B_t \ge \|e_t\|_2`.
    certified_accuracy, accuracy, predicted_accuracy : float
        Fractions of sequences certified / correct / predicted correct.
    """

    certified: np.ndarray
    correct: np.ndarray
    predicted: np.ndarray
    step_certified: np.ndarray
    slack: np.ndarray
    margin: np.ndarray
    bound: np.ndarray
    certified_accuracy: float
    accuracy: float
    predicted_accuracy: float


def _ro(a):
    a = np.asarray(a)
    a.setflags(write=False)
    return a


def _certified_bound():
    from rnnperturb.bounds import trajectory as bounds
    return bounds.certified_bound, bounds.certified_bounds


def certified_recall(cell, other, task, *, tier: str = "auto", rigorous: bool = False,
                     componentwise: bool = True, bound=None, componentwise_bound=None,
                     margins=None) -> CertifiedRecall:
    r"""Certify the recall of a perturbed network on every sequence of a task.

    A recall step with target :math:`y` is certified when
    :math:`\min(\|V_y-V_j\|_2 B_t,\ |V_y-V_j|^\top\rho_t) < y_{t,y} - y_{t,j}`
    for every :math:`j\ne y` (module docstring), with :math:`B_t` and
    :math:`\rho_t` from :func:`rnnperturb.bounds.trajectory.certified_bound`.

    Parameters
    ----------
    cell : ElmanRNN or MGRU
        Nominal cell with readout ``V``, ``c`` (used for both cells).
    other : same type, or a set
        Perturbed cell (only recurrent matrices differ; its readout is ignored).
        Or a set of :mod:`rnnperturb.perturb.sets` (``Ball``, ``Box``,
        ``quantization``, ``drift``) or a
        :class:`rnnperturb.bounds.set_recall.GaussianNoise`: then the recall is
        certified for *every* member (noise: with probability >= its confidence,
        jointly over the sequences), by
        :func:`rnnperturb.bounds.set_recall.certified_set_recall` (same margin
        test, with the set bound's :math:`\beta_t` and :math:`\rho_t`; only
        ``componentwise`` and ``margins`` apply; see there for the meaning of
        ``correct`` and ``predicted`` over a set).
    task : Task
        Classification task with a recall window, e.g.
        ``rp.tasks.memorization_all(2, 5, D)`` (all 32 sequences).
    tier : {'auto', 'fast', 'tight'}
        Tier of the certified bound (default ``'auto'``, see
        :func:`rnnperturb.bounds.trajectory.certified_bound`).
    rigorous : bool
        Use the bound's interval-arithmetic mode (small nets only).
    componentwise : bool
        Also use the componentwise bound :math:`\rho_t` (one more bound call;
        not with ``rigorous``).
    bound : array_like, shape (T, B), optional
        A precomputed sound bound on :math:`\|e_t\|_2` to use instead of the
        certified bound. For tests and experiments.
    componentwise_bound : array_like, shape (T, B, n), optional
        With ``bound``: a sound componentwise bound :math:`\rho_t \ge |e_t|`
        to use as well.
    margins : tuple, optional
        The output of :func:`recall_margins` for ``cell`` and ``task``
        (reused across ranks).

    Returns
    -------
    CertifiedRecall
    """
    from rnnperturb.bounds.set_recall import GaussianNoise, certified_set_recall
    from rnnperturb.perturb.sets import PerturbationSet
    if isinstance(other, (PerturbationSet, GaussianNoise)):             # a set, not a cell
        return certified_set_recall(cell, other, task, componentwise=componentwise,
                                    margins=margins)
    check_compatible(cell, other)
    c64, o64 = _float64(cell), _float64(other)
    _check_task(task, c64)
    X3, _ = as_inputs(task.X, c64.m, np.float64)
    T, B = X3.shape[:2]
    margin, dnorm, dabs = recall_margins(c64, task) if margins is None else margins
    rho = None
    if bound is None:
        cb, cbs = _certified_bound()
        if componentwise and not rigorous:
            Bd, rho = cbs(c64, o64, X3, tier=tier)                          # one pass
        else:
            Bd = np.asarray(cb(c64, o64, X3, tier=tier, rigorous=rigorous), dtype=np.float64)
    else:
        Bd = np.asarray(bound, dtype=np.float64)
        if Bd.shape != (T, B):
            raise ValueError(f"bound: expected shape ({T}, {B}), found {Bd.shape}")
        if not np.all(Bd >= 0):
            raise ValueError("bound: expected non-negative values, found negative or NaN")
        if componentwise_bound is not None:
            rho = np.asarray(componentwise_bound, dtype=np.float64)
            if rho.shape != (T, B, c64.n) or not np.all(rho >= 0):
                raise ValueError(f"componentwise_bound: expected non-negative values of shape "
                                 f"({T}, {B}, {c64.n}), found shape {rho.shape}")
    q = up(dnorm * Bd[:, :, None], 1)                                       # (T, B, k)
    if rho is not None:
        q = np.minimum(q, up(np.einsum("tbkn,tbn->tbk", dabs, rho), cell.n))
    rec = np.asarray(task.recall, dtype=bool)
    slack_all = np.min(margin - q, axis=-1)                                 # (T, B)
    # exact perturbed answer and first-order prediction
    H = c64.run(X3)
    Hp = o64.run(X3)
    L = first_order(c64, o64, X3)
    y = np.asarray(task.targets)
    ok = (np.argmax(c64.readout(Hp), axis=-1) == y) | ~rec
    pred = (np.argmax(c64.readout(H + L), axis=-1) == y) | ~rec
    step_cert = (slack_all > 0) | ~rec
    rows = np.where(rec.any(axis=1))[0]             # steps scored for some sequence
    cert = step_cert.all(axis=0)
    correct, predicted = ok.all(axis=0), pred.all(axis=0)
    return CertifiedRecall(
        certified=_ro(cert), correct=_ro(correct), predicted=_ro(predicted),
        step_certified=_ro(step_cert[rows]), slack=_ro(slack_all[rows]),
        margin=_ro(np.min(margin, axis=-1)[rows]), bound=_ro(Bd),
        certified_accuracy=float(cert.mean()), accuracy=float(correct.mean()),
        predicted_accuracy=float(predicted.mean()))


@dataclass(frozen=True, eq=False)
class SafeRank:
    r"""Result of :func:`certified_safe_rank`.

    Attributes
    ----------
    ranks : ndarray of int, shape (R,)
        The ranks swept (ascending).
    certified_accuracy, accuracy, predicted_accuracy : ndarray, shape (R,)
        Fraction of sequences certified / measured correct / first-order
        predicted correct at each rank.
    certified_safe_rank : int or None
        Smallest rank at which every sequence is certified (None: none).
    empirical_safe_rank : int or None
        Smallest rank at which every sequence is measured correct.
    predicted_safe_rank : int or None
        Smallest rank at which the first-order model predicts all correct.
    certified_safe_from, empirical_safe_from : int or None
        Smallest rank r such that *every* swept rank >= r is certified /
        correct (differs from the above when accuracy is not monotone in rank).
    gap : int or None
        ``certified_safe_rank - empirical_safe_rank``.
    gap_fraction : float or None
        ``gap / n``.
    n : int
    bound_ratio : ndarray, shape (R,)
        Median over recall steps and sequences of bound / exact ``||e_t||``.
        Over a set: bound :math:`\beta_t` over the largest deviation of the
        ``samples`` members tried (NaN when ``samples=0``).
    perturbation : set, GaussianNoise, callable or None
        The ``perturbation`` argument (None: the truncation alone).
    sets : tuple or None
        Over a set: the set used at each rank of ``ranks`` (the callable's
        answer for that truncated net).
    search : str
        ``'sweep'`` (every rank of ``ranks`` given or default) or
        ``'bisection'`` (a set without ``ranks``: the ranks evaluated by the
        bisection).
    nominal_safe_rank : int or None
        Over a set: the smallest rank in 0..n at which the truncated network
        itself recalls every sequence (every rank scanned, exact float64
        runs). No rank below it is certified over a set that contains 0.
        None without a set.

    Over a set (``certified_safe_rank(..., perturbation=S)``) the per-rank
    fields mean: ``certified_accuracy``, the fraction of sequences recalled
    by *every* member of the set around the truncated network :math:`W_r`
    (noise: with probability >= its confidence over the draw, jointly over the
    sequences); ``accuracy``, the fraction recalled by :math:`W_r` and by each
    of the ``samples`` seeded members drawn (an empirical upper estimate of
    the worst case); ``predicted_accuracy``, the fraction recalled by
    :math:`W_r` itself. The safe ranks are the smallest *evaluated* ranks with
    full accuracy in these senses.
    """

    ranks: np.ndarray
    certified_accuracy: np.ndarray
    accuracy: np.ndarray
    predicted_accuracy: np.ndarray
    certified_safe_rank: int | None
    empirical_safe_rank: int | None
    predicted_safe_rank: int | None
    certified_safe_from: int | None
    empirical_safe_from: int | None
    gap: int | None
    gap_fraction: float | None
    n: int
    bound_ratio: np.ndarray
    perturbation: object = None
    sets: tuple | None = None
    search: str = "sweep"
    nominal_safe_rank: int | None = None


def _first_full(ranks, acc):
    idx = np.where(acc >= 1.0)[0]
    return int(ranks[idx[0]]) if idx.size else None


def _full_from(ranks, acc):
    ok = acc >= 1.0
    if not ok[-1]:
        return None
    i = len(ok) - 1
    while i > 0 and ok[i - 1]:
        i -= 1
    return int(ranks[i])


def certified_safe_rank(cell, task, *, ranks=None, tier: str = "auto",
                        componentwise: bool = True, bound_fn=None,
                        quiet: bool = True, perturbation=None, samples: int = 8,
                        seed=0, window: int = 32, box_refine=False,
                        one_sided: bool = False, chords: bool = False) -> SafeRank:
    r"""Sweep truncation ranks: certified and measured recall, and the safe ranks.

    Every recurrent matrix is truncated to the same rank r by plain SVD
    (:func:`rnnperturb.perturb.low_rank.truncate_svd`). At each rank the recall on
    every sequence of ``task`` is certified (:func:`certified_recall`),
    measured and predicted to first order.

    Over a set (``perturbation=S``): at each rank r the truncated network
    :math:`W_r` is the nominal network, and its recall is certified for *every*
    member :math:`W_r + \Delta W`, :math:`\Delta W \in S`
    (:func:`rnnperturb.bounds.set_recall.certified_set_recall` on the truncated
    cell, with :math:`W_r`'s own margins; the readout is kept). A rank is
    certified when every sequence is. E.g. "the rank-r network, then quantized
    to 8 bits by any rounding of *its* weights, recalls everything":
    ``perturbation=lambda c: rp.sets.quantization(c, bits=8, rounding="any")``.

    Parameters
    ----------
    cell : Cell
        With a readout.
    task : Task
        E.g. ``rp.tasks.memorization_all(2, 5, D)``.
    ranks : sequence of int, optional
        Ranks in [0, n]; every one is evaluated. Default: every rank 0..n
        without a set; a bisection over a set (below).
    tier : {'auto', 'fast', 'tight'}
        Tier of the certified bound (default ``'auto'``; not used over a set).
    componentwise : bool
    bound_fn : callable, optional
        ``bound_fn(cell, other, X) -> (T, B)``: a sound bound on
        :math:`\|e_t\|_2` to use instead of the certified bound (experiments,
        tests; not with ``perturbation``).
    quiet : bool
        No progress bar when True.
    perturbation : set, GaussianNoise or callable, optional
        A set of :mod:`rnnperturb.perturb.sets` (``Ball``, ``Box``,
        ``quantization``, ``drift``) or
        :class:`rnnperturb.bounds.set_recall.GaussianNoise`, used as given at
        every rank; or a callable ``truncated_cell -> set`` called on each
        :math:`W_r` (sets defined by the weights, such as quantization's grid
        or a relative drift, must be built from the truncated weights).
    samples : int
        Over a set: seeded members drawn per rank for the measured
        ``accuracy`` (box vertices, sphere points, noise draws).
    seed : int or Generator
        Of those members (the same seed at every rank).
    window, box_refine, one_sided, chords
        Over a set: passed to :func:`rnnperturb.bounds.set_bound.set_trace`
        (``one_sided=True``, the one-signed activation remainders centred, is
        tighter on saturated trained nets; ``chords=True``, chords instead of
        tangents where tighter, is tighter still; without a set both are refused).

    Returns
    -------
    SafeRank
        Over a set, see :class:`SafeRank` for the meaning of the fields.

    Notes
    -----
    Default ranks over a set. One set certificate on 32 sequences costs minutes
    at n = 64, so without ``ranks`` the search is a bisection: rank n first (if
    it is not certified, nothing is searched), then between the largest rank
    known to fail and the smallest known certified. Ranks below
    ``nominal_safe_rank`` fail without evaluation (a certificate needs the
    truncated net's own margins to be positive), and so does a bisection rank
    at which :math:`W_r` itself misses a sequence (it is not listed in
    ``ranks``). That certification is monotone in r is *not* proven, so the
    answer is "a certified rank" -- every listed rank with
    ``certified_accuracy == 1`` is individually certified, and the rank just
    below the answer is known to fail (evaluated, or its truncated net misses
    a sequence) -- not necessarily the smallest; the smallest needs a full
    sweep, ``ranks=range(n + 1)``. About :math:`1 + \log_2(n + 1 -`
    ``nominal_safe_rank``:math:`)` set certificates.
    """
    from rnnperturb.perturb.low_rank import truncate_svd

    c64 = _float64(cell)
    _check_task(task, c64)
    n = c64.n
    if tier not in ("auto", "fast", "tight"):
        raise ValueError(f"tier: expected 'auto', 'fast' or 'tight', found {tier!r}")
    if ranks is not None and (isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__")):
        raise ValueError(f"ranks: expected a sequence of integers in [0, {n}], found "
                         f"{type(ranks).__name__} {ranks!r}")
    for name, flag in (("one_sided", one_sided), ("chords", chords)):
        if check_bool(name, flag) and perturbation is None:
            raise ValueError(f"{name}: expected False without perturbation= (it is an option "
                             f"of the set bound), found True")
    if perturbation is not None:
        if bound_fn is not None:
            raise ValueError("bound_fn: expected None with perturbation= (the set bound is "
                             "used), found a callable")
        from rnnperturb.bounds.set_recall import safe_rank_over_set
        return safe_rank_over_set(c64, task, perturbation, ranks=ranks,
                                  componentwise=componentwise, samples=samples, seed=seed,
                                  window=window, box_refine=box_refine, quiet=quiet,
                                  one_sided=one_sided, chords=chords)
    if ranks is None:
        ranks = range(n + 1)
    ranks = np.array(sorted({check_int("ranks", r, low=0, high=n) for r in ranks}), dtype=int)
    if ranks.size == 0:
        raise ValueError("ranks: expected at least one rank, found none")
    margins = recall_margins(c64, task)
    ca, acc, pa, ratio = [], [], [], []
    X3 = np.asarray(task.X, dtype=np.float64)
    rec = np.asarray(task.recall, bool)
    for r in progress(ranks, desc="certified recall", quiet=quiet):
        other = truncate_svd(c64, rank=int(r))
        res = certified_recall(c64, other, task, tier=tier, componentwise=componentwise,
                               margins=margins,
                               bound=None if bound_fn is None else bound_fn(c64, other, X3))
        ca.append(res.certified_accuracy)
        acc.append(res.accuracy)
        pa.append(res.predicted_accuracy)
        E = np.linalg.norm(other.run(X3) - c64.run(X3), axis=-1)
        m = rec & (E > 0)
        ratio.append(float(np.median(res.bound[m] / E[m])) if m.any() else 1.0)
    ca, acc, pa = np.array(ca), np.array(acc), np.array(pa)
    cs, es = _first_full(ranks, ca), _first_full(ranks, acc)
    gap = None if cs is None or es is None else cs - es
    return SafeRank(ranks=_ro(ranks), certified_accuracy=_ro(ca), accuracy=_ro(acc),
                    predicted_accuracy=_ro(pa), certified_safe_rank=cs, empirical_safe_rank=es,
                    predicted_safe_rank=_first_full(ranks, pa),
                    certified_safe_from=_full_from(ranks, ca),
                    empirical_safe_from=_full_from(ranks, acc), gap=gap,
                    gap_fraction=None if gap is None else gap / n, n=n,
                    bound_ratio=_ro(np.array(ratio)))
