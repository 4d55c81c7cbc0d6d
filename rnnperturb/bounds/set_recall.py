r"""Certified recall over a *set* of perturbations, and certified tolerances.

:func:`rnnperturb.bounds.recall.certified_recall` certifies one known
perturbed cell. Given instead a set :math:`S` of :mod:`rnnperturb.perturb.sets`
(a Frobenius ball, a box, :func:`~rnnperturb.perturb.sets.quantization`,
:func:`~rnnperturb.perturb.sets.drift`) it dispatches here
(:func:`certified_set_recall`): a recall step with target :math:`y` is
certified for *every* :math:`\Delta W\in S` when

.. math::
    \min\bigl(\|V_y-V_j\|_2\,\beta_t,\ |V_y-V_j|^\top\rho_t\bigr) < m_j
    \quad\text{for every } j\ne y ,

the same margin test as for one perturbation (the same code: the bounds are
passed to ``certified_recall(..., bound=, componentwise_bound=)``), with
:math:`\beta_t\ge\sup_S\|h'_t-h_t\|_2` and :math:`\rho_t\ge\sup_S|h'_t-h_t|`
from :func:`rnnperturb.bounds.set_bound.set_trace` (its ``bound`` and
``coord``). Both are suprema over the set, so the test at step t holds for
every member at once: *every* network of the set answers :math:`y`.

Noise. :class:`GaussianNoise` (``std`` :math:`s`, ``confidence`` :math:`1-\delta`):
:math:`\Delta W_{k,ij}` i.i.d. :math:`N(0,s^2)`, drawn once for the network
(the *same* draw for every sequence). :func:`rnnperturb.noise_bound` gives,
per sequence, :math:`\Pr(\|e_t\|\le P_t\ \forall t)\ge 1-\delta'`; with
:math:`\delta' = \delta/B` and a union bound over the :math:`B` sequences,
:math:`\Pr(\|e_{t,b}\|\le P_{t,b}\ \forall t, b)\ge 1-\delta`. On that event the
norm test certifies every certified step, so the statement is: **with
probability at least** ``confidence`` **over the draw, every certified sequence
is recalled** (no componentwise bound is used for noise).

Tolerances. :func:`certified_tolerance` finds, by a safeguarded search, the smallest bit
width (``kind="bits"``, ``rounding="any"`` or ``"nearest"``), the largest
relative drift :math:`d` (``"drift"``) and the largest noise std
(``"noise"``, at a confidence) at which every sequence that the nominal net
recalls is certified. Bisection is valid because the sets are nested in their
parameter: the quantization box has radius :math:`\propto 1/(2^{b-1}-1)`
(decreasing in :math:`b`, same centre 0), the drift box :math:`d|W|` grows with
:math:`d`, and the noise statement at std :math:`s` is implied by the ball of
radius :math:`R(s)\propto s` (increasing), so the *true* property "every member
recalls" is monotone in the parameter. The computed certificate is sound at
every evaluated parameter but, being an upper bound computed by a numerical
procedure, is not guaranteed monotone; the reported value is one at which the
certificate was *computed* to hold, with the neighbouring grid value computed
to fail (bits), or the bracket's certified end after the bisection steps
(drift, noise). Beside it, the *measured* value: for bits, the smallest
:math:`b` such that ``rp.quantize(cell, bits=b')`` recalls every such sequence
for every :math:`b'\ge b` up to ``hi`` (the actual round-to-nearest); for drift
and noise an **empirical** tolerance from seeded samples (drift: random box
vertices :math:`\pm d|W_{ij}|`; noise: Gaussian draws, a fraction at least
``confidence`` of which must recall every sequence), found by the same
bisection. Empirical tolerances come from finitely many samples: they are
estimates (upper estimates of the true worst case for drift), not bounds.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import as_generator, as_inputs, check_int, check_positive, describe
from rnnperturb.perturb.sets import PerturbationSet, drift, quantization

__all__ = ["GaussianNoise", "Tolerance", "certified_set_recall", "certified_noise_recall",
           "certified_tolerance"]


@dataclass(frozen=True, eq=False)
class GaussianNoise:
    r"""Frozen Gaussian weight noise :math:`\Delta W_{k,ij}\sim N(0, s^2)` i.i.d., with the
    confidence at which statements about it are made.

    Parameters
    ----------
    std : float, >= 0
    confidence : float in (0, 1)
    """

    std: float = 0.0
    confidence: float = 0.99

    def __post_init__(self):
        object.__setattr__(self, "std", check_positive("std", self.std, allow_zero=True))
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 < float(c) < 1.0:
            raise ValueError(f"confidence: expected a number in (0, 1), found {describe(c)}")
        object.__setattr__(self, "confidence", float(c))

    def sample(self, cell, seed) -> dict:
        """One draw, dict by recurrent matrix name of (n, n) arrays."""
        rng = as_generator(seed)
        return {k: self.std * rng.standard_normal((cell.n, cell.n))
                for k in cell.recurrent_names}


def _apply(cell, dW):
    """``cell`` (float64) with recurrent matrices W_k + dW_k."""
    return cell.replace(**{k: np.asarray(cell.recurrent[k], np.float64) + dW[k] for k in dW})


def _recalls(cell, task):
    """(B,) bool: the cell's arg-max is the target at every recall step."""
    X3, _ = as_inputs(task.X, cell.m, np.float64)
    rec = np.asarray(task.recall, bool)
    ok = (np.argmax(cell.readout(cell.run(X3)), axis=-1) == np.asarray(task.targets)) | ~rec
    return ok.all(axis=0)


def _sampled_correct(c64, S, task, samples, seed, deviation=False):
    r"""(B,) bool: recalled by every one of ``samples`` seeded members of S (and by the
    nominal net). With ``deviation``, also the largest :math:`\|h'_t - h_t\|_2` over those
    members, (T, B) (zeros when ``samples`` is 0)."""
    ok = _recalls(c64, task)
    rng = as_generator(seed)
    X3 = H = dev = None
    if deviation:
        X3, _ = as_inputs(task.X, c64.m, np.float64)
        H = c64.run(X3)
        dev = np.zeros(X3.shape[:2])
    for _ in range(samples):
        member = _apply(c64, S.sample(c64, rng))
        ok = ok & _recalls(member, task)
        if deviation:
            dev = np.maximum(dev, np.linalg.norm(member.run(X3) - H, axis=-1))
    return (ok, dev) if deviation else ok


def _set_bounds(c64, S, X3, *, union, window=32, box_refine=False, method="affine",
                componentwise=True, one_sided=False, chords=False):
    r"""(:math:`\beta_t` (T, B), :math:`\rho_t` (T, B, n) or None) of a set or noise on the
    sequences ``X3``; noise at confidence :math:`1-\delta/\text{union}` per sequence (the
    union bound over the ``union`` sequences of the whole task, also when ``X3`` is a
    subset of them)."""
    if isinstance(S, GaussianNoise):
        from rnnperturb.stats.noise_bound import noise_bound
        conf = 1.0 - (1.0 - S.confidence) / union                 # union bound over sequences
        Bd, rho = noise_bound(c64, X3, std=S.std, confidence=conf, window=window,
                              one_sided=one_sided, chords=chords), None
    elif isinstance(S, PerturbationSet):
        from rnnperturb.bounds.set_bound import set_trace
        tr = set_trace(c64, S, X3, window=window, box_refine=box_refine, method=method,
                       one_sided=one_sided, chords=chords)
        Bd, rho = tr.bound, (tr.coord if componentwise else None)
    else:
        raise ValueError(f"S: expected a set of rnnperturb.perturb.sets or GaussianNoise, "
                         f"found {describe(S)}")
    return np.where(np.isfinite(Bd), Bd, np.inf), rho


def certified_set_recall(cell, S, task, *, margins=None, window: int = 32,
                         box_refine=False, method: str = "affine", componentwise: bool = True,
                         samples: int = 8, seed=0, one_sided: bool = False,
                         chords: bool = False):
    r"""Certify the recall of every network of a set on every sequence of a task.

    Parameters
    ----------
    cell : Cell
        Nominal cell with a readout ``V``, ``c`` (kept for every member).
    S : PerturbationSet or GaussianNoise
        A set of :mod:`rnnperturb.perturb.sets`, or noise with a confidence.
    task : Task
        Classification task with a recall window.
    margins : tuple, optional
        :func:`rnnperturb.bounds.recall.recall_margins` of ``cell`` and ``task``.
    window, box_refine, method, one_sided, chords
        Passed to :func:`rnnperturb.bounds.set_bound.set_trace`
        (``box_refine`` defaults to off here: the SDP-dual refinement costs
        about 4x at n = 64; the per-coordinate test mostly decides anyway;
        ``one_sided=True`` is much tighter on saturated trained nets at larger radii;
        ``chords`` defaults to off here, unlike ``set_trace``, so that the shipped
        tolerance tables stay what this computes; ``chords=True`` is tighter).
    componentwise : bool
        Also use the componentwise bound :math:`\rho_t` (sets only).
    samples : int
        Seeded members drawn for the *measured* fields (box: random vertices;
        ball: sphere points; noise: draws).
    seed : int or Generator

    Returns
    -------
    CertifiedRecall
        ``certified``: every member of S (noise: with probability >=
        ``confidence`` over the draw, jointly for all sequences) recalls every
        step; ``bound``: :math:`\beta_t` (T, B); ``correct``: recalled by the
        nominal net and by every one of the ``samples`` members drawn
        (empirical, an upper estimate of "recalled by every member");
        ``predicted``: recalled by the nominal net (there is no single
        first-order point prediction for a set); ``slack``, ``margin``,
        ``step_certified`` as for one perturbation.
    """
    from rnnperturb.bounds.recall import certified_recall, recall_margins
    c64 = cell.astype(np.float64)
    if margins is None:
        margins = recall_margins(c64, task)
    X3, _ = as_inputs(task.X, c64.m, np.float64)
    samples = check_int("samples", samples, low=0)
    Bd, rho = _set_bounds(c64, S, X3, union=X3.shape[1], window=window, box_refine=box_refine,
                          method=method, componentwise=componentwise, one_sided=one_sided,
                          chords=chords)
    res = certified_recall(c64, c64, task, bound=Bd, componentwise_bound=rho, margins=margins)
    correct = _sampled_correct(c64, S, task, samples, seed)
    nominal = np.asarray(res.correct)
    return dataclasses.replace(res, correct=_ro(correct), predicted=_ro(nominal),
                               accuracy=float(correct.mean()),
                               predicted_accuracy=float(nominal.mean()))


def certified_noise_recall(cell, task, *, std: float, confidence: float = 0.99, **kw):
    r"""Certified recall under frozen Gaussian weight noise of std ``std``:
    with probability >= ``confidence`` over the draw, every certified sequence is
    recalled. Shorthand for ``certified_set_recall(cell, GaussianNoise(std, confidence),
    task, **kw)``."""
    return certified_set_recall(cell, GaussianNoise(std=std, confidence=confidence), task, **kw)


def _ro(a):
    a = np.asarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Tolerance:
    r"""Result of :func:`certified_tolerance`.

    Attributes
    ----------
    kind : str
        ``'bits'``, ``'drift'`` or ``'noise'``.
    certified : float or int or None
        Bits: the smallest certified bit width; drift / noise: the largest
        certified ``rel`` / ``std``. None when nothing in the range certifies.
    measured : float or int or None
        Bits: the smallest b with ``quantize(cell, bits=b')`` recalling every
        sequence for all b' >= b (measured, exact round-to-nearest). Drift /
        noise: the **empirical** tolerance from seeded samples (an estimate).
    rounding : str or None
        For bits: ``'any'`` or ``'nearest'``.
    confidence : float or None
        For noise.
    sequences : int
        Number of sequences the nominal net recalls (those that must be certified).
    evaluations : list of (float, bool)
        Every certificate computed: (parameter, every sequence certified).
    """

    kind: str
    certified: float | int | None
    measured: float | int | None
    rounding: str | None
    confidence: float | None
    sequences: int
    evaluations: list


def certified_tolerance(cell, task, *, kind: str = "bits", rounding: str = "any",
                        confidence: float = 0.99, lo=None, hi=None, steps: int = 8,
                        samples: int = 16, seed=0, scheme: str = "per_matrix",
                        window: int = 32, box_refine=False, margins=None,
                        one_sided: bool = False, chords: bool = False) -> Tolerance:
    r"""Certified bit width, drift tolerance or noise std for the recall of a task.

    Parameters
    ----------
    cell : Cell
        With a readout.
    task : Task
        Classification task with a recall window.
    kind : {'bits', 'drift', 'noise'}
    rounding : {'any', 'nearest'}
        Bits only: every rounding onto the grid, or every round-to-nearest.
    confidence : float in (0, 1)
        Noise only.
    lo, hi : number, optional
        Search range. Bits: integers, default 2..32. Drift / noise: default
        1e-8..1 (relative drift) and 1e-8..1 (std).
    steps : int
        Drift / noise: the final bracket ratio is ``(hi/lo) ** (2 ** -steps)``
        (certified at the reported value, computed to fail within that ratio above
        it); also the bisection steps of the empirical tolerance.
    samples : int
        Drift / noise: seeded samples of the empirical tolerance (noise: at
        least ``confidence`` of them must recall every sequence).
    seed : int
    scheme : {'per_matrix', 'per_row'}
        Quantization scheme (bits).
    window, box_refine, one_sided, chords
        Passed to :func:`rnnperturb.bounds.set_bound.set_trace` (``chords`` off by
        default here, see :func:`certified_set_recall`).
    margins : tuple, optional
        :func:`rnnperturb.bounds.recall.recall_margins` of ``cell`` and ``task``.

    Returns
    -------
    Tolerance

    Notes
    -----
    The search (:func:`_tolerance_search`) ranks the sequences by a cheap proxy of
    their headroom (nominal margin over :math:`\|V_y-V_j\|` times the first-order RMS
    deviation of frozen noise shaped like the set, :func:`rnnperturb.noise_response`),
    searches the parameter on the two likeliest to fail, each next point from the
    first-order estimate (radius scaled by the headroom :math:`\kappa`, the factor by
    which the bounds could grow with every recall step still certified; bisection when
    that stalls), and verifies the answer on the other sequences in chunks of 8; after a
    failing chunk the rest are evaluated at once (their headroom re-ranks them) and the
    failing ones join the searched ones. A failure on any subset is a failure of the
    task, so the reported value is certified on every sequence and a failing parameter
    lies within the final bracket above it. About one evaluation on all sequences per
    tolerance when the ranking is right (elman D10: bits in 50 s instead of 7 full
    evaluations, 4 min).
    """
    from rnnperturb.bounds.recall import recall_margins
    from rnnperturb.perturb.elementwise import quantize
    if kind not in ("bits", "drift", "noise"):
        raise ValueError(f"kind: expected 'bits', 'drift' or 'noise', found {describe(kind)}")
    c64 = cell.astype(np.float64)
    if margins is None:
        margins = recall_margins(c64, task)
    need = _recalls(c64, task)
    evals = []
    X3, _ = as_inputs(task.X, c64.m, np.float64)
    if kind == "bits":
        lo = 2 if lo is None else check_int("lo", lo, low=2, high=32)
        hi = 32 if hi is None else check_int("hi", hi, low=lo, high=32)
    else:
        lo = 1e-8 if lo is None else check_positive("lo", lo)
        hi = 1.0 if hi is None else check_positive("hi", hi)
        if not lo < hi:
            raise ValueError(f"lo, hi: expected lo < hi, found {lo}, {hi}")
    steps = check_int("steps", steps, low=0)
    samples = check_int("samples", samples, low=0)

    def make(p):
        if kind == "bits":
            return quantization(c64, bits=int(p), rounding=rounding, scheme=scheme)
        if kind == "drift":
            return drift(c64, rel=float(p))
        return GaussianNoise(std=float(p), confidence=confidence)

    def evaluate(p, idx):
        """(certified (len(idx),) bool, headroom (len(idx),)) on the sequences idx."""
        from rnnperturb.bounds.recall import certified_recall
        idx = np.asarray(idx)
        sub = _subset(task, idx)
        msub = tuple(np.asarray(m)[:, idx] for m in margins)
        Bd, rho = _set_bounds(c64, make(p), X3[:, idx], union=X3.shape[1], window=window,
                              box_refine=box_refine, one_sided=one_sided, chords=chords)
        res = certified_recall(c64, c64, sub, bound=Bd, componentwise_bound=rho, margins=msub)
        return np.asarray(res.certified), _headroom(Bd, rho, msub, sub.recall)

    # the search variable y (certified for y <= y*) and the shift of y that scales the
    # set's radius by a factor k: log k (drift, noise) or log2 k (bits: the step is
    # max|W| / (2^(b-1) - 1), y = -b)
    if kind == "bits":
        from_y, ylo, yhi, tol_y = (lambda y: int(round(-y))), -float(hi), -float(lo), 1.0
        shift = np.log2
    else:
        from_y, ylo, yhi = math.exp, math.log(lo), math.log(hi)
        tol_y = (yhi - ylo) * 2.0 ** -steps
        shift = np.log
    # rank the sequences by a cheap proxy of their headroom: the nominal margin over the
    # first-order RMS deviation under noise shaped like the set (frozen noise_response)
    if kind == "noise":
        var = None
    else:
        E = make(hi if kind == "bits" else lo).radii(c64)
        var = {k: np.asarray(E[k]) ** 2 for k in E}
    from rnnperturb.stats.noise import noise_response
    rms = np.sqrt(np.maximum(noise_response(c64, X3, std=1.0 if var is None else None, var=var,
                                            frozen=True), 0.0))
    cert = _tolerance_search(evaluate, np.flatnonzero(need), _priority(margins, rms), from_y,
                             ylo, yhi, tol_y, shift, integer=(kind == "bits"), evals=evals)

    if kind == "bits":
        meas = None
        for b in range(hi, lo - 1, -1):
            if np.all(_recalls(quantize(c64, bits=b, scheme=scheme), task)[need]):
                meas = b
            else:
                break
        return Tolerance(kind, cert, meas, rounding, None, int(need.sum()), evals)

    def bisect(pred):
        """Largest p in [lo, hi] with pred(p), assuming monotone; None if pred(lo) fails."""
        if not pred(lo):
            return None
        if pred(hi):
            return hi
        a, b = math.log(lo), math.log(hi)                  # pred(e^a) holds, pred(e^b) fails
        for _ in range(steps):
            mid = 0.5 * (a + b)
            if pred(math.exp(mid)):
                a = mid
            else:
                b = mid
        return math.exp(a)

    # empirical: the same directions scaled by the parameter (seeded, fixed across p)
    rng = as_generator(seed)
    n, names = c64.n, tuple(c64.recurrent_names)
    if kind == "drift":
        dirs = [{k: rng.choice([-1.0, 1.0], size=(n, n)) * np.abs(
            np.asarray(c64.recurrent[k], np.float64)) for k in names} for _ in range(samples)]
    else:
        dirs = [{k: rng.standard_normal((n, n)) for k in names} for _ in range(samples)]

    def empirical(p):
        oks = [bool(np.all(_recalls(_apply(c64, {k: p * D[k] for k in D}), task)[need]))
               for D in dirs]
        if kind == "drift":
            return all(oks)
        return (sum(oks) >= confidence * len(oks)) if oks else True

    meas = bisect(empirical)
    return Tolerance(kind, cert, meas, None, confidence if kind == "noise" else None,
                     int(need.sum()), evals)


def _subset(task, idx):
    """The task restricted to the sequences ``idx``."""
    return dataclasses.replace(task, X=np.asarray(task.X)[:, idx],
                               targets=np.asarray(task.targets)[:, idx],
                               mask=np.asarray(task.mask)[:, idx],
                               recall=np.asarray(task.recall)[:, idx])


def _headroom(Bd, rho, margins, recall):
    r"""Per sequence, the factor :math:`\kappa` by which the bounds could be scaled
    with every recall step still certified, :math:`\min_{t,j} m_{t,j} / q_{t,j}` with
    :math:`q = \min(\|V_y-V_j\|\beta_t, |V_y-V_j|^\top\rho_t)` (B,). An *estimate* for
    choosing the next parameter of the search (no certificate rests on it)."""
    margin, dnorm, dabs = margins
    q = dnorm * Bd[:, :, None]
    if rho is not None:
        q = np.minimum(q, np.einsum("tbkn,tbn->tbk", dabs, rho))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(q > 0, margin / q, np.inf)
    k = np.where(np.asarray(recall, bool)[:, :, None] & ~np.isnan(margin), k, np.inf)
    return k.min(axis=(0, 2))


def _priority(margins, rms):
    """(B,) nominal margin over ||V_y - V_j|| times the RMS deviation ``rms`` (T, B) (smallest
    first: the likeliest to fail; an estimate that only orders the search)."""
    margin, dnorm, _ = margins
    q = dnorm * np.asarray(rms)[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(q > 0, margin / q, np.inf)
    r = np.where(np.isnan(r), np.inf, r)
    return r.min(axis=(0, 2))


def _tolerance_search(evaluate, need_idx, prio, from_y, ylo, yhi, tol, shift, *,
                      integer, evals, chunk=8, hard_size=2):
    r"""Largest :math:`y\in[y_{lo}, y_{hi}]` certified on every needed sequence, to
    within ``tol`` (a certified y with a failing y' <= y + tol, or y_hi), or None.

    ``evaluate(p, idx)`` returns (certified, headroom) on the sequences ``idx``; a
    failure on any subset is a failure of the whole task, a success is one only on
    all of them. Two levels: the parameter is searched on a small *hard* subset (the
    ``hard_size`` sequences of smallest ``prio``), each next point from the
    first-order estimate :math:`y + \mathrm{shift}(\kappa)` (the bound scales about
    linearly with the radius; safeguarded by bisection), then the end of the bracket
    is verified on the other sequences in chunks, the likeliest to fail first; a
    failing chunk (and the rest, evaluated at once) re-ranks the sequences, the failing
    ones join the hard subset and the search resumes below the failed point.
    """
    if need_idx.size == 0:
        return from_y(yhi)
    order = list(need_idx[np.argsort(prio[need_idx], kind="stable")])
    head = {int(i): float(prio[i]) for i in order}
    y0 = 0.5 * (ylo + yhi)
    y0 = float(round(y0)) if integer else y0
    hard = order[:hard_size]
    ok_v, kap_v = evaluate(from_y(y0), hard)
    for i, k in zip(hard, kap_v):
        head[int(i)] = float(k)
    b = None                       # fails (on some needed sequence)
    a_h = None                     # certified on the hard subset
    if np.all(ok_v):
        a_h = y0
    else:
        b = y0
        evals.append((from_y(y0), False))
    last = (y0, bool(np.all(ok_v)), float(np.min(kap_v)))    # (y, ok, kappa) of the last one
    same_side = 0

    def snap(y):
        return float(round(y)) if integer else float(y)

    def choose():
        lo_ok = ylo if a_h is None else a_h + (1.0 if integer else 0.0)
        hi_ok = yhi if b is None else b - (1.0 if integer else 0.0)
        y0, ok, kap = last
        if np.isfinite(kap) and kap > 0:
            est = y0 + float(shift(kap))
        else:
            est = y0 + (1.0 if ok else -1.0) * (yhi - ylo)
        y = max(est, a_h + tol) if ok else min(est, b - tol)
        if a_h is not None and b is not None and same_side >= 2:
            y = 0.5 * (a_h + b)                           # safeguard: bisection
        y = min(max(snap(y), lo_ok), hi_ok)
        if a_h is not None and not y > a_h:
            y = a_h + 1.0 if integer else 0.5 * (a_h + hi_ok)
        if b is not None and not y < b:
            y = b - 1.0 if integer else 0.5 * (lo_ok + b)
        return snap(y)

    def done():
        if b is not None and b <= ylo:
            return True
        if a_h is not None and ((b is None and a_h >= yhi) or (b is not None and b - a_h <= tol)):
            return True
        return False

    while True:
        while not done():                                   # phase 1: the hard subset
            y = choose()
            ok_v, kap_v = evaluate(from_y(y), hard)
            ok, kap = bool(np.all(ok_v)), float(np.min(kap_v))
            for i, k in zip(hard, kap_v):
                head[int(i)] = float(k)
            same_side = same_side + 1 if (last is not None and last[1] == ok) else 0
            if ok:
                a_h = y
            else:
                b = y
                evals.append((from_y(y), False))
            last = (y, ok, kap)
        if a_h is None:
            return None
        rest = [i for i in order if i not in hard]          # phase 2: verify a_h on the rest
        rest.sort(key=lambda i: head[int(i)])
        failed, s0 = [], 0
        while s0 < len(rest):
            # after a failure the remaining sequences are still evaluated (once, in one
            # batch): their headroom near the critical parameter ranks them for the next search
            idx = rest[s0:s0 + chunk] if not failed else rest[s0:]
            ok_v, kap_v = evaluate(from_y(a_h), idx)
            for i, k in zip(idx, kap_v):
                head[int(i)] = float(k)
            failed += [i for i, o in zip(idx, ok_v) if not o]
            s0 += len(idx)
        if not failed:
            evals.append((from_y(a_h), True))
            return from_y(a_h)
        b = a_h
        evals.append((from_y(a_h), False))
        hard = hard + failed
        last = (a_h, False, min(head[int(i)] for i in failed))
        a_h = None
        same_side = 0


def _set_at(perturbation, small):
    r"""The set around the truncated cell ``small``: ``perturbation`` itself, or
    ``perturbation(small)`` for a callable; checked against ``small`` (matrix names,
    shapes)."""
    if isinstance(perturbation, (PerturbationSet, GaussianNoise)):
        S = perturbation
    elif callable(perturbation):
        S = perturbation(small)
        if not isinstance(S, (PerturbationSet, GaussianNoise)):
            raise ValueError(f"perturbation: expected the callable to return a set of "
                             f"rnnperturb.perturb.sets (Ball, Box, quantization, drift) or "
                             f"GaussianNoise for the truncated cell, found {describe(S)}")
    else:
        raise ValueError(f"perturbation: expected a set of rnnperturb.perturb.sets (Ball, Box, "
                         f"quantization, drift), GaussianNoise, or a callable truncated cell "
                         f"-> set, found {describe(perturbation)}")
    if isinstance(S, PerturbationSet):
        try:
            S.radii(small)
        except ValueError as exc:
            raise ValueError(f"perturbation: {exc}") from None
    return S


def safe_rank_over_set(cell, task, perturbation, *, ranks=None, componentwise: bool = True,
                       samples: int = 8, seed=0, window: int = 32, box_refine=False,
                       quiet: bool = True, one_sided: bool = False, chords: bool = False):
    r"""The certified-safe rank under a set of perturbations of the truncated network.

    The implementation of ``certified_safe_rank(cell, task, perturbation=S)``
    (:func:`rnnperturb.bounds.recall.certified_safe_rank`; see there for the
    parameters and the meaning of the result). At each evaluated rank r the
    SVD truncation :math:`W_r` (:func:`rnnperturb.truncate_svd`, every recurrent
    matrix) is the nominal network, the set is ``perturbation`` (or
    ``perturbation(W_r)``) around it, and :func:`certified_set_recall` certifies
    the recall of every member with :math:`W_r`'s own margins.
    """
    from rnnperturb.bounds.recall import SafeRank, _check_task, _first_full, _full_from
    from rnnperturb.perturb.low_rank import truncate_svd
    from rnnperturb.report.progress import progress
    c64 = cell.astype(np.float64)
    _check_task(task, c64)
    n = c64.n
    samples = check_int("samples", samples, low=0)
    if isinstance(perturbation, (PerturbationSet, GaussianNoise)) or not callable(perturbation):
        _set_at(perturbation, c64)                      # a bad set fails before any work
    if ranks is not None:
        ranks = sorted({check_int("ranks", r, low=0, high=n) for r in ranks})
        if not ranks:
            raise ValueError("ranks: expected at least one rank, found none")
    X3, _ = as_inputs(task.X, c64.m, np.float64)
    rec = np.asarray(task.recall, bool)
    # the truncated nets' own recall at every rank (cheap): a certificate at rank r implies
    # that W_r recalls every certified sequence (its margins must exceed a bound >= 0)
    smalls = {}

    def small(r):
        if r not in smalls:
            smalls[r] = truncate_svd(c64, rank=int(r))
        return smalls[r]
    nominal_ok = {r: bool(_recalls(small(r), task).all()) for r in range(n + 1)}
    nominal_safe = next((r for r in range(n + 1) if nominal_ok[r]), None)
    rows = {}

    def evaluate(r):
        s = small(r)
        S = _set_at(perturbation, s)
        res = certified_set_recall(s, S, task, samples=0, componentwise=componentwise,
                                   window=window, box_refine=box_refine, one_sided=one_sided,
                                   chords=chords)
        ok, dev = _sampled_correct(s, S, task, samples, seed, deviation=True)
        m = rec & (dev > 0)
        bd = np.asarray(res.bound)
        ratio = (float(np.median(bd[m] / dev[m])) if m.any() else 1.0) if samples else np.nan
        rows[r] = (S, float(np.mean(res.certified)), float(np.mean(ok)),
                   float(np.mean(res.predicted)), ratio)
        return bool(np.all(res.certified))

    if ranks is not None:
        search = "sweep"
        for r in progress(ranks, desc="certified recall over the set", quiet=quiet):
            evaluate(r)
    else:
        search = "bisection"
        lo0 = -1 if nominal_safe is None else nominal_safe - 1     # every rank <= lo0 fails
        state = {}

        def order():
            yield n
            if not state[n]:
                return
            lo, hi = lo0, n                     # lo: not certified (or -1), hi: certified
            while hi - lo > 1:
                mid = (lo + hi) // 2
                yield mid
                if state[mid]:
                    hi = mid
                else:
                    lo = mid
        total = 1 + max(0, int(np.ceil(np.log2(max(n - lo0, 1)))))
        for r in progress(order(), total=total, desc="certified recall over the set (bisection)",
                          quiet=quiet):
            # a rank whose truncated net already fails cannot be certified: skip the set
            state[r] = evaluate(r) if (nominal_ok[r] or r == n) else False
    ev = np.array(sorted(rows), dtype=int)
    ca = np.array([rows[r][1] for r in ev])
    acc = np.array([rows[r][2] for r in ev])
    pa = np.array([rows[r][3] for r in ev])
    cs, es = _first_full(ev, ca), _first_full(ev, acc)
    gap = None if cs is None or es is None else cs - es
    return SafeRank(ranks=_ro(ev), certified_accuracy=_ro(ca), accuracy=_ro(acc),
                    predicted_accuracy=_ro(pa), certified_safe_rank=cs, empirical_safe_rank=es,
                    predicted_safe_rank=_first_full(ev, pa),
                    certified_safe_from=_full_from(ev, ca), empirical_safe_from=_full_from(ev, acc),
                    gap=gap, gap_fraction=None if gap is None else gap / n, n=n,
                    bound_ratio=_ro(np.array([rows[r][4] for r in ev])),
                    perturbation=perturbation, sets=tuple(rows[r][0] for r in ev), search=search,
                    nominal_safe_rank=nominal_safe)
