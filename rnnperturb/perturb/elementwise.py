r"""Perturbations of the recurrent matrices: quantization, pruning, weight noise.

Each function returns a new cell of the same type in which only the recurrent
matrices changed (``W`` for the Elman RNN, ``Wf`` and ``Wh`` for the MGRU, or
the subset given by ``names``); inputs, biases and readout are untouched.
Their storage cost is given by :func:`rnnperturb.compression_cost`, and SVD
truncation lives in :mod:`rnnperturb.perturb.low_rank`.

**Quantization** (uniform, symmetric, mid-tread). With ``bits`` = b there are
:math:`L = 2^{b-1}-1` levels on each side of zero (:math:`2L+1 = 2^b - 1`
levels in all, zero included), step :math:`s = \max|w| / L` over the matrix
(``scheme="per_matrix"``) or over each row (``"per_row"``), and

.. math:: q(w) = s\,\operatorname{round}(w/s) \in \{-Ls, \dots, 0, \dots, Ls\},

with ``numpy.round`` (ties to even). So :math:`|q(w)-w|\le s/2` and the
largest entry is kept exactly up to rounding. An all-zero matrix (row) stays
zero.

**Pruning** by magnitude: in each matrix, the :math:`k = \operatorname{round}(\text{fraction}\cdot n^2)`
entries of smallest :math:`|w|` are set to zero (ties broken by position,
row-major, so the result is deterministic).

**Weight noise**: :math:`W' = W + \Delta W` with i.i.d. :math:`N(0, \text{std}^2)`
entries, drawn in the order of ``names`` from ``seed``.
"""
from __future__ import annotations

import numpy as np

from rnnperturb._checks import check_int, check_positive, recurrent_subset
from rnnperturb._checks import as_generator as _rng

__all__ = ["quantize", "prune", "weight_noise", "quantize_matrix"]


def quantize_matrix(W, *, bits: int, scheme: str = "per_matrix"):
    """Quantize one matrix (see the module notes).

    Parameters
    ----------
    W : ndarray, shape (n, n)
    bits : int, >= 2
    scheme : {'per_matrix', 'per_row'}

    Returns
    -------
    Wq : ndarray, shape (n, n)
    step : ndarray, shape () or (n,)
        The step s (per matrix, or per row).
    """
    bits = check_int("bits", bits, low=2, high=32)
    if scheme not in ("per_matrix", "per_row"):
        raise ValueError(f"scheme: expected 'per_matrix' or 'per_row', found {scheme!r}")
    W = np.asarray(W)
    L = 2 ** (bits - 1) - 1
    if scheme == "per_matrix":
        step = np.asarray(np.max(np.abs(W)) / L)
        s = step
    else:
        step = np.max(np.abs(W), axis=1) / L
        s = step[:, None]
    safe = np.where(s > 0, s, 1.0)
    q = np.clip(np.round(W / safe), -L, L)
    return q * s, step


def quantize(cell, *, bits: int, scheme: str = "per_matrix", names=None):
    """Uniform symmetric mid-tread quantization of the recurrent matrices.

    Parameters
    ----------
    cell : Cell
    bits : int
        Bits per weight, 2..32: :math:`2^{b-1}-1` levels on each side of zero.
    scheme : {'per_matrix', 'per_row'}
        One step per matrix (max |w| of the matrix) or per row.
    names : str or sequence of str, optional
        Matrices to quantize (default all recurrent matrices).

    Returns
    -------
    Cell
    """
    names = recurrent_subset(cell, names)
    new = {k: quantize_matrix(cell.recurrent[k], bits=bits, scheme=scheme)[0].astype(cell.dtype)
           for k in names}
    return cell.replace(**new)


def prune(cell, *, fraction: float, names=None):
    """Magnitude pruning of the recurrent matrices.

    Parameters
    ----------
    cell : Cell
    fraction : float in [0, 1]
        Fraction of the entries of each matrix set to zero: the
        ``round(fraction * n**2)`` smallest in magnitude.
    names : str or sequence of str, optional
        Matrices to prune (default all recurrent matrices).

    Returns
    -------
    Cell
    """
    names = recurrent_subset(cell, names)
    frac = check_positive("fraction", fraction, allow_zero=True)
    if frac > 1:
        raise ValueError(f"fraction: expected a number in [0, 1], found {fraction!r}")
    new = {}
    for k in names:
        W = np.array(cell.recurrent[k])
        kz = int(round(frac * W.size))
        order = np.argsort(np.abs(W).ravel(), kind="stable")
        flat = W.ravel()
        flat[order[:kz]] = 0.0
        new[k] = flat.reshape(W.shape)
    return cell.replace(**new)


def weight_noise(cell, *, std: float, seed, names=None):
    """Add i.i.d. Gaussian noise :math:`N(0, \\text{std}^2)` to the recurrent matrices.

    Parameters
    ----------
    cell : Cell
    std : float, >= 0
        Standard deviation of every entry.
    seed : int or numpy.random.Generator
        Source of the noise (required; the same seed gives the same cell).
    names : str or sequence of str, optional
        Matrices to perturb (default all recurrent matrices), drawn in this order.

    Returns
    -------
    Cell
    """
    names = recurrent_subset(cell, names)
    s = check_positive("std", std, allow_zero=True)
    rng = _rng(seed)
    new = {}
    for k in names:
        W = cell.recurrent[k]
        new[k] = (W + s * rng.standard_normal(W.shape)).astype(cell.dtype)
    return cell.replace(**new)
