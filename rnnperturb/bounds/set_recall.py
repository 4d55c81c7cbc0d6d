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

Tolerances. :func:`certified_tolerance` finds, by bisection, the smallest bit
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


def _sampled_correct(c64, S, task, samples, seed):
    """(B,) bool: recalled by every one of ``samples`` seeded members of S (and by the
    nominal net)."""
    ok = _recalls(c64, task)
    rng = as_generator(seed)
    for _ in range(samples):
        ok = ok & _recalls(_apply(c64, S.sample(c64, rng)), task)
    return ok


def certified_set_recall(cell, S, task, *, margins=None, window: int = 32,
                         box_refine=False, method: str = "affine", componentwise: bool = True,
                         samples: int = 8, seed=0):
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
    window, box_refine, method
        Passed to :func:`rnnperturb.bounds.set_bound.set_trace`
        (``box_refine`` defaults to off here: the SDP-dual refinement costs
        about 4x at n = 64; the per-coordinate test mostly decides anyway).
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
    if isinstance(S, GaussianNoise):
        from rnnperturb.stats.noise_bound import noise_bound
        B = X3.shape[1]
        conf = 1.0 - (1.0 - S.confidence) / B                     # union bound over sequences
        Bd, rho = noise_bound(c64, X3, std=S.std, confidence=conf, window=window), None
    elif isinstance(S, PerturbationSet):
        from rnnperturb.bounds.set_bound import set_trace
        tr = set_trace(c64, S, X3, window=window, box_refine=box_refine, method=method)
        Bd, rho = tr.bound, (tr.coord if componentwise else None)
    else:
        raise ValueError(f"S: expected a set of rnnperturb.perturb.sets or GaussianNoise, "
                         f"found {describe(S)}")
    Bd = np.where(np.isfinite(Bd), Bd, np.inf)
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
                        window: int = 32, box_refine=False, margins=None) -> Tolerance:
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
        Drift / noise: bisection steps on the log scale after bracketing
        (final bracket ratio ``(hi/lo) ** (2 ** -steps)``).
    samples : int
        Drift / noise: seeded samples of the empirical tolerance (noise: at
        least ``confidence`` of them must recall every sequence).
    seed : int
    scheme : {'per_matrix', 'per_row'}
        Quantization scheme (bits).
    window, box_refine
        Passed to :func:`rnnperturb.bounds.set_bound.set_trace`.
    margins : tuple, optional
        :func:`rnnperturb.bounds.recall.recall_margins` of ``cell`` and ``task``.

    Returns
    -------
    Tolerance
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

    def certifies(p):
        if kind == "bits":
            S = quantization(c64, bits=int(p), rounding=rounding, scheme=scheme)
        elif kind == "drift":
            S = drift(c64, rel=float(p))
        else:
            S = GaussianNoise(std=float(p), confidence=confidence)
        r = certified_set_recall(c64, S, task, margins=margins, window=window,
                                 box_refine=box_refine, samples=0)
        ok = bool(np.all(np.asarray(r.certified)[need]))
        evals.append((p, ok))
        return ok

    if kind == "bits":
        lo = 2 if lo is None else check_int("lo", lo, low=2, high=32)
        hi = 32 if hi is None else check_int("hi", hi, low=lo, high=32)
        cert = None
        if certifies(hi):                                  # smallest b with certifies(b)
            a, b = lo - 1, hi                              # invariant: certifies(b); a fails or < lo
            if lo < hi and certifies(lo):
                b = lo
            else:
                a = lo
                while b - a > 1:
                    mid = (a + b) // 2
                    if certifies(mid):
                        b = mid
                    else:
                        a = mid
            cert = b
        meas = None
        for b in range(hi, lo - 1, -1):
            if np.all(_recalls(quantize(c64, bits=b, scheme=scheme), task)[need]):
                meas = b
            else:
                break
        return Tolerance(kind, cert, meas, rounding, None, int(need.sum()), evals)

    lo = 1e-8 if lo is None else check_positive("lo", lo)
    hi = 1.0 if hi is None else check_positive("hi", hi)
    if not lo < hi:
        raise ValueError(f"lo, hi: expected lo < hi, found {lo}, {hi}")
    steps = check_int("steps", steps, low=0)
    samples = check_int("samples", samples, low=0)

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

    cert = bisect(certifies)
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
