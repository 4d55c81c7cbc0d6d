r"""Exact deviation and the first-order (tangent-linear) model.

For a perturbed cell with recurrent matrices :math:`W' = W + \Delta W` (inputs,
biases and :math:`h_0` unchanged) the deviation on the same input sequence is
:math:`e_t = h'_t - h_t`. The first-order model propagates the directional
derivative of the trajectory along :math:`\Delta W` about the *nominal* weights
(``DESIGN.md`` §2(a)); for the Elman RNN

.. math::
    \ell_t = D_t (W \ell_{t-1} + \Delta W h_{t-1}), \qquad
    D_t = \operatorname{diag}(\tanh'(W h_{t-1} + U x_t + b)),\ \ell_0 = 0,

and for the MGRU the full step Jacobians, with :math:`W_f` forced by
:math:`\Delta W_f h_{t-1}` and :math:`W_h` by :math:`\Delta W_h (f_t\odot h_{t-1})`.
:math:`\ell` is linear in :math:`\Delta W` and differs from :math:`e` by
:math:`O(\|\Delta W\|^2)`.

Which deviation: both functions run the full state :math:`s_t` (the LSTM's
:math:`(h_t, c_t)`, every layer of a stacked network) and report, by default,
the deviation of the output :math:`y_t` = ``cell.output`` (what a readout sees:
the state itself for the Elman RNN, MGRU and GRU, the LSTM's h, the top
layer's h), shape (T, B, n); ``state='full'`` reports that of the full state
(T, B, N), N = ``cell.state_size``.
"""
from __future__ import annotations

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, check_compatible
from rnnperturb.cells import FLOAT

__all__ = ["deviation", "first_order", "delta_recurrent", "regressor_trajectory"]


def delta_recurrent(cell, other) -> dict[str, np.ndarray]:
    """The perturbation :math:`\\Delta W_k = W'_k - W_k` of every recurrent matrix,
    after checking that ``other`` differs from ``cell`` only there."""
    check_compatible(cell, other)
    return {k: other.recurrent[k] - cell.recurrent[k] for k in cell.recurrent_names}


def deviation(cell, other, X, h0=None, *, state: str = "h") -> np.ndarray:
    """Exact deviation :math:`e_t = h'_t - h_t` on the same inputs.

    Parameters
    ----------
    cell, other : Cell
        Nominal and perturbed cell (same type); ``other`` may differ only in its recurrent
        matrices (else ``ValueError`` naming the difference).
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, N) or (N,), optional
        Initial state (N = ``cell.state_size``; n for most cells).
    state : {'h', 'full'}
        Deviation of the output (what a readout sees: the LSTM's h, a stack's top
        h) or of the full state.

    Returns
    -------
    E : ndarray, shape (T, B, n) or (T, n); (T, B, N) or (T, N) for 'full'
    """
    check_compatible(cell, other)
    return other.run(X, h0, state=state) - cell.run(X, h0, state=state)


def first_order(cell, other, X, h0=None, *, state: str = "h") -> np.ndarray:
    r"""Tangent-linear prediction :math:`\ell_t` of the deviation.

    Parameters
    ----------
    cell, other : Cell
        Nominal and perturbed cell (see :func:`deviation`).
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, N) or (N,), optional
    state : {'h', 'full'}
        As in :func:`deviation`: the output's part of :math:`\ell_t` or all of it.

    Returns
    -------
    L : ndarray, shape (T, B, n) or (T, n); (T, B, N) or (T, N) for 'full'
        Directional derivative of the trajectory along :math:`\Delta W`.
    """
    full = cell._check_state(state) == "full"
    dW = delta_recurrent(cell, other)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, cell.dtype)
    ell = np.zeros_like(h)
    L = np.empty((X3.shape[0],) + h.shape, dtype=cell.dtype)
    for t in range(X3.shape[0]):
        hn, aux, regs = cell.nominal(h, X3[t])
        force = {k: FLOAT.matvec(v, regs[k]) for k, v in dW.items()}
        ell = cell.tangent_step(h, aux, ell, force)
        L[t] = ell
        h = hn
    if not full:
        L = cell.hidden_of(L)
    return L[:, 0, :] if single else L


def regressor_trajectory(cell, X3, h) -> dict[str, np.ndarray]:
    r"""The regressors :math:`a_{k,t}` (the vector each recurrent matrix
    multiplies, :meth:`Cell.nominal`) along the nominal trajectory.

    Parameters
    ----------
    cell : Cell
    X3 : ndarray, shape (T, B, m)
    h : ndarray, shape (B, N)
        The initial state (N = ``cell.state_size``).

    Returns
    -------
    dict of str to ndarray, shape (T, B, n)
        ``A[k][t-1]`` is :math:`a_{k,t}`, for every name in
        ``cell.recurrent_names`` (float64).
    """
    T, B = X3.shape[:2]
    A = {k: np.empty((T, B, cell.n)) for k in cell.recurrent_names}
    for t in range(T):
        h, _, regs = cell.nominal(h, X3[t])
        for k, a in regs.items():
            A[k][t] = a
    return A
