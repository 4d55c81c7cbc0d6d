r"""Task generators: noiseless memorization, low-coherence recall, AR signals.

Every generator returns a frozen :class:`Task` with inputs ``X`` (T, B, m),
``targets`` and a boolean ``mask`` (T, B) of the steps that are scored.

Noiseless memorization (Martens & Sutskever 2011; Sutskever, Martens, Dahl &
Hinton 2013, appendix A.3): ``L`` data steps with one-hot symbols from an
alphabet of ``K``, then ``D`` blank steps, then one trigger step, then ``L``
recall steps with blank input; ``T = 2L + D + 1``. Input channels ``0..K-1`` are
the symbols, ``K`` is blank and ``K+1`` the trigger. Output classes ``0..K-1``
are the symbols and ``K`` is blank; the target is blank everywhere except the
recall steps, which reproduce the data in order.

Low-coherence tasks change their input at every step: ``kback`` asks at each
step for the symbol seen ``k`` steps earlier; its knob ``repeat`` (the
probability that a symbol repeats the previous one) dials the temporal
coherence from i.i.d. (``repeat=0``) to nearly constant (``repeat → 1``).

The signal task, close to hearing-aid use, denoises or predicts an AR(1)
signal :math:`s_t = a s_{t-1} + \sqrt{1-a^2}\,\xi_t`, :math:`a = e^{-1/\tau}`,
from noisy observations; it is scored by the normalised MSE.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from rnnperturb._checks import as_generator

from rnnperturb._checks import check_int, check_positive

__all__ = [
    "Task", "memorization", "memorization_all", "kback", "ar_signal", "make_task",
    "TASK_NAMES",
]


@dataclass(frozen=True, eq=False)
class Task:
    """A batch of task sequences.

    Attributes
    ----------
    name : str
        ``"memorization"``, ``"kback"`` or ``"ar_signal"``.
    X : ndarray, shape (T, B, m)
        Inputs.
    targets : ndarray
        Class indices, shape (T, B), for classification; values, shape
        (T, B, d), for regression.
    mask : ndarray of bool, shape (T, B)
        Steps that are scored (and enter the loss).
    n_out : int
        Number of classes, or output dimension for regression.
    kind : str
        ``"classification"`` or ``"regression"``.
    recall : ndarray of bool, shape (T, B)
        Steps that form the recall window (memorization); equals ``mask``
        otherwise.
    params : dict
        The generator's parameters (``K``, ``L``, ``D``, ...).
    """

    name: str
    X: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    n_out: int
    kind: str
    recall: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return self.X.shape[0]

    @property
    def B(self) -> int:
        return self.X.shape[1]

    @property
    def m(self) -> int:
        return self.X.shape[2]


def _memorization_from_symbols(S: np.ndarray, K: int, D: int) -> Task:
    B, L = S.shape
    T = 2 * L + D + 1
    X = np.zeros((T, B, K + 2))
    Y = np.full((T, B), K, dtype=np.int64)
    X[np.arange(L)[:, None], np.arange(B)[None, :], S.T] = 1.0
    X[L:L + D, :, K] = 1.0            # blank during the delay
    X[L + D, :, K + 1] = 1.0          # trigger
    X[L + D + 1:, :, K] = 1.0         # blank input during recall
    Y[L + D + 1:, :] = S.T
    recall = np.zeros((T, B), dtype=bool)
    recall[L + D + 1:] = True
    return Task("memorization", X, Y, np.ones((T, B), dtype=bool), K + 1, "classification",
                recall, {"K": K, "L": L, "D": D})


def memorization(K: int = 2, L: int = 5, D: int = 50, *, batch: int = 64, seed=None) -> Task:
    """Sampled noiseless memorization sequences.

    Parameters
    ----------
    K : int
        Alphabet size (2 for the 5-bit task, 5 for the 10-symbol task).
    L : int
        Sequence length to memorize.
    D : int
        Blank delay between the data and the trigger (>= 0).
    batch : int
        Number of sequences B.
    seed : int or numpy.random.Generator
        Source of the random symbols (required).

    Returns
    -------
    Task
        ``X`` of shape (2L + D + 1, B, K + 2); every step is scored (``mask``),
        and ``recall`` marks the last ``L`` steps.
    """
    K = check_int("K", K, low=2)
    L = check_int("L", L, low=1)
    D = check_int("D", D, low=0)
    batch = check_int("batch", batch, low=1)
    S = as_generator(seed).integers(0, K, size=(batch, L))
    return _memorization_from_symbols(S, K, D)


def memorization_all(K: int = 2, L: int = 5, D: int = 50) -> Task:
    """All ``K**L`` distinct memorization sequences, in lexicographic order
    (32 for the 5-bit task), for exact evaluation."""
    K = check_int("K", K, low=2)
    L = check_int("L", L, low=1)
    D = check_int("D", D, low=0)
    if K ** L > 100_000:
        raise ValueError(f"K**L: expected at most 100000 sequences to enumerate, found {K ** L}")
    S = np.array(list(itertools.product(range(K), repeat=L)), dtype=np.int64)
    return _memorization_from_symbols(S, K, D)


def kback(K: int = 4, k: int = 2, T: int = 50, *, repeat: float = 0.0, batch: int = 64,
          seed=None) -> Task:
    """k-back recall of a symbol stream whose coherence is set by ``repeat``.

    At each step the input is a one-hot symbol; with probability ``repeat`` it
    repeats the previous symbol, otherwise it is drawn uniformly from ``K``.
    The target at step t is the symbol at step t - k; the first ``k`` steps
    are not scored.

    Parameters
    ----------
    K : int
        Alphabet size.
    k : int
        Look-back (>= 1).
    T : int
        Sequence length (> k).
    repeat : float in [0, 1)
        Repeat probability; 0 gives i.i.d. symbols (lowest coherence).
    batch : int
    seed : int or numpy.random.Generator

    Returns
    -------
    Task
        ``X`` of shape (T, B, K); targets in ``0..K-1``.
    """
    K = check_int("K", K, low=2)
    k = check_int("k", k, low=1)
    T = check_int("T", T, low=k + 1)
    batch = check_int("batch", batch, low=1)
    p = check_positive("repeat", repeat, allow_zero=True)
    if p >= 1:
        raise ValueError(f"repeat: expected a probability in [0, 1), found {repeat!r}")
    rng = as_generator(seed)
    fresh = rng.integers(0, K, size=(T, batch))
    keep = rng.random((T, batch)) < p
    S = fresh.copy()
    for t in range(1, T):
        S[t] = np.where(keep[t], S[t - 1], fresh[t])
    X = np.zeros((T, batch, K))
    X[np.arange(T)[:, None], np.arange(batch)[None, :], S] = 1.0
    Y = np.zeros((T, batch), dtype=np.int64)
    Y[k:] = S[:-k]
    mask = np.zeros((T, batch), dtype=bool)
    mask[k:] = True
    return Task("kback", X, Y, mask, K, "classification", mask.copy(),
                {"K": K, "k": k, "repeat": p})


def ar_signal(T: int = 200, *, tau: float = 10.0, noise: float = 0.5, horizon: int = 0,
              batch: int = 64, seed=None) -> Task:
    r"""Denoise (``horizon=0``) or predict (``horizon>0``) an AR(1) signal.

    The clean signal has unit variance and correlation time ``tau`` steps,
    :math:`s_t = a s_{t-1} + \sqrt{1-a^2}\xi_t`, :math:`a = e^{-1/\tau}`,
    started in its stationary law. The input is :math:`s_t + \text{noise}\,\nu_t`
    (m = 1) and the target is :math:`s_{t+\text{horizon}}` (d = 1). The first
    ``max(horizon, 10)`` steps are not scored (warm-up).

    Returns
    -------
    Task
        ``kind="regression"``; score with :func:`rnnperturb.tasks.metrics.nmse`.
    """
    T = check_int("T", T, low=12)
    horizon = check_int("horizon", horizon, low=0, high=T - 12)
    tau = check_positive("tau", tau)
    noise = check_positive("noise", noise, allow_zero=True)
    batch = check_int("batch", batch, low=1)
    rng = as_generator(seed)
    a = np.exp(-1.0 / tau)
    Ttot = T + horizon
    s = np.empty((Ttot, batch))
    s[0] = rng.standard_normal(batch)
    xi = rng.standard_normal((Ttot, batch))
    for t in range(1, Ttot):
        s[t] = a * s[t - 1] + np.sqrt(1 - a * a) * xi[t]
    X = (s[:T] + noise * rng.standard_normal((T, batch)))[:, :, None]
    Y = s[horizon:horizon + T][:, :, None]
    mask = np.zeros((T, batch), dtype=bool)
    mask[max(horizon, 10):] = True
    return Task("ar_signal", X, Y, mask, 1, "regression", mask.copy(),
                {"tau": tau, "noise": noise, "horizon": horizon})


TASK_NAMES = ("memorization", "kback", "ar_signal")


def make_task(name: str, **kwargs) -> Task:
    """Build a task by name (``"memorization"``, ``"kback"``, ``"ar_signal"``)."""
    gens = {"memorization": memorization, "kback": kback, "ar_signal": ar_signal}
    if name not in gens:
        raise ValueError(f"task: expected one of {sorted(gens)}, found {name!r}")
    return gens[name](**kwargs)
