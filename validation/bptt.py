r"""Forward pass with caches and hand-written backpropagation through time.

Parameters are plain dicts keyed by the constructor names of
:class:`rnnperturb.ElmanRNN` (``W, U, b``), :class:`rnnperturb.MGRU`
(``Wf, Uf, bf, Wh, Uh, bh``), :class:`rnnperturb.GRU` or
:class:`rnnperturb.LSTM` (PyTorch's equations), plus the readout ``V`` (k, n)
and ``c`` (k,) on the cell's output (:meth:`rnnperturb.cells.Cell.output`:
the state itself, or the LSTM's h of its state ``[h, c]``).

Elman RNN and MGRU (DESIGN.md §1):

.. math::
    h_t &= \tanh(W h_{t-1} + U x_t + b) \\[4pt]
    f_t &= \sigma(W_f h_{t-1} + U_f x_t + b_f),\quad
    c_t = \tanh(W_h (f_t \odot h_{t-1}) + U_h x_t + b_h),\quad
    h_t = h_{t-1} + f_t \odot (c_t - h_{t-1})

Readout :math:`y_t = V h_t + c`. The loss is averaged over scored steps
(``mask``, optionally re-weighted by ``weights``):

* classification: softmax cross-entropy, :math:`\sum_{t,b} w_{tb}\,
  (-\log \mathrm{softmax}(y_{tb})_{z_{tb}}) / \sum w`;
* regression: squared error summed over output dimensions,
  :math:`\sum_{t,b} w_{tb} \|y_{tb} - z_{tb}\|^2 / \sum w`.

The forward pass is the cell's own step, :meth:`rnnperturb.cells.Cell.forward`
(the one definition every algorithm of the library runs), over the trainer's
float namespace :data:`TRAIN`; only the backward pass is written here, one
function per cell class in :data:`TRAINING` (a cell without one is a
``ValueError`` that names it).

Efficiency (the hot loop is what issue 7 benchmarks against torch):
the input projections :math:`U x_t + b` of all steps are one GEMM before the
loop (:meth:`rnnperturb.cells.Cell.hoisted`), the readout and its gradient are
one GEMM each, and the weight gradients are single GEMMs over all (t, b) after
the backward loop (the pre-activation deltas are stacked in a (T, B, n)
buffer). Everything runs in the parameters' dtype (float32 or float64).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from rnnperturb.cells import CELL_TYPES, GRU, LSTM, MGRU, ElmanRNN, cell_from_params, cell_type
from rnnperturb.cells.namespace import FloatNamespace

__all__ = ["PARAM_NAMES", "param_names", "params_from_cell", "cell_from_params", "forward",
           "loss_and_grads", "outputs", "Cache", "TRAIN", "TRAINING", "CellTraining",
           "training_of"]

LOSS_KINDS = ("classification", "regression")


def _cell_class(kind: str) -> type:
    try:
        return cell_type(kind)
    except ValueError:
        raise ValueError(f"kind: expected one of {sorted(CELL_TYPES)}, found {kind!r}") from None


def param_names(kind: str) -> tuple[str, ...]:
    """Names of the trainable arrays of a cell kind: the cell's parameters in
    its constructor's order, then the readout ``V, c``."""
    cls = _cell_class(kind)
    own = set(cls.recurrent_names + cls.input_params)
    return tuple(f.name for f in fields(cls) if f.name in own) + ("V", "c")


#: Trainable array names of every registered cell (see :func:`param_names`).
PARAM_NAMES = {kind: param_names(kind) for kind in CELL_TYPES}


def params_from_cell(cell, *, dtype=None) -> dict[str, np.ndarray]:
    """Writable copies of a cell's parameters (with its readout) as a dict."""
    if getattr(cell, "kind", None) not in CELL_TYPES:
        raise ValueError(f"cell: expected a registered cell ({', '.join(sorted(CELL_TYPES))}), "
                         f"found {type(cell).__name__}")
    if cell.V is None:
        raise ValueError("cell: expected a cell with a readout V, found V=None")
    dt = cell.dtype if dtype is None else np.dtype(dtype)
    return {k: np.array(v, dtype=dt) for k, v in cell.params.items()}


class TrainingNamespace(FloatNamespace):
    r"""The trainer's float namespace: :class:`~rnnperturb.cells.namespace.FloatNamespace`
    with the operation order the shipped checkpoints were trained with.

    ``sigmoid(a)`` is :math:`(1 + \tanh(a/2))/2` (overflow-free, no branch) and
    ``lerp(h, c, f)`` is :math:`h + f\,(c - h)`; both equal the library's
    definitions up to rounding.
    """

    @staticmethod
    def sigmoid(a):
        out = np.multiply(a, 0.5)
        np.tanh(out, out=out)
        out += 1.0
        out *= 0.5
        return out

    @staticmethod
    def lerp(h, c, f):
        out = np.subtract(c, h)
        out *= f
        out += h
        return out


#: The namespace the training forward pass runs the cells' step in.
TRAIN = TrainingNamespace()


@dataclass(frozen=True, eq=False)
class Cache:
    """What the forward pass keeps for the backward pass.

    Attributes
    ----------
    kind : str
    X : ndarray, shape (T, B, m)
    H : ndarray, shape (T + 1, B, N)
        The states, ``H[0] = s_0``, ``H[t] = s_t`` (N = the cell's
        ``state_size``: n, or 2n for the LSTM's ``[h, c]``).
    out : ndarray, shape (T, B, n)
        The outputs the readout sees (:meth:`~rnnperturb.cells.Cell.output` of
        ``H[1:]``; ``H[1:]`` itself when N = n).
    aux : dict of str to ndarray, each (T, B, n)
        The intermediates of the cell's step that its backward pass needs
        (:attr:`CellTraining.saved`, e.g. the MGRU gate ``f`` and candidate
        ``c``), stacked over the steps.
    Y : ndarray, shape (T, B, k)
        Readout ``V h_t + c``.
    """

    kind: str
    X: np.ndarray
    H: np.ndarray
    out: np.ndarray
    aux: dict
    Y: np.ndarray


def _check_params(cls, params):
    names = param_names(cls.kind)
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"params: expected keys {list(names)}, missing {missing}")
    dt = np.asarray(params[names[0]]).dtype
    if dt not in (np.float32, np.float64):
        raise ValueError(f"params: expected float32 or float64 arrays, found {dt}")
    return dt


def forward(kind: str, params: dict, X: np.ndarray, h0=None) -> Cache:
    """Run the cell and its readout, keeping what BPTT needs.

    The step is the cell's :meth:`~rnnperturb.cells.Cell.forward` over
    :data:`TRAIN`, with the input terms of all steps precomputed
    (:meth:`~rnnperturb.cells.Cell.hoisted`).

    Parameters
    ----------
    kind : str
        A registered cell with a backward pass (:data:`TRAINING`).
    params : dict of str to ndarray
        See module docs; all arrays in one dtype.
    X : ndarray, shape (T, B, m)
    h0 : ndarray, shape (B, N), optional (zeros)
        The initial state (N = the cell's ``state_size``).

    Returns
    -------
    Cache
    """
    cls = _cell_class(kind)
    spec = training_of(cls)
    dt = _check_params(cls, params)
    X = np.asarray(X, dtype=dt)
    if X.ndim != 3:
        raise ValueError(f"X: expected shape (T, B, m), found shape {X.shape}")
    T, B, m = X.shape
    V, c = params["V"], params["c"]
    P = {k: params[k] for k in cls.recurrent_names + cls.input_params}
    n = P[cls.recurrent_names[0]].shape[0]
    proto = cls(**P)                             # the cell's state size and output map
    N = proto.state_size
    ns, Pt = cls.hoisted(TRAIN, P, X)            # one GEMM for all input projections
    WT = {k: P[k].T for k in cls.recurrent_names}

    def rec(k, a):
        return a @ WT[k]

    H = np.empty((T + 1, B, N), dt)
    H[0] = 0.0 if h0 is None else h0
    saved = {k: np.empty((T, B, n), dt) for k in spec.saved}
    h = H[0]
    for t in range(T):
        h, aux = cls.forward(ns, Pt, h, t, rec)
        H[t + 1] = h
        for k, buf in saved.items():
            buf[t] = aux[k]
    out = H[1:] if N == n else proto.output(TRAIN, H[1:])
    Y = (out.reshape(T * B, n) @ V.T).reshape(T, B, V.shape[0])
    Y += c
    return Cache(kind, X, H, out, saved, Y)


def outputs(kind: str, params: dict, X: np.ndarray) -> np.ndarray:
    """Readout ``Y`` (T, B, k) of a forward pass (logits or regression values)."""
    return forward(kind, params, X).Y


def _unpack(task_or_arrays):
    if hasattr(task_or_arrays, "X") and hasattr(task_or_arrays, "targets"):
        t = task_or_arrays
        return t.X, t.targets, t.mask, t.kind
    try:
        X, targets, mask, loss_kind = task_or_arrays
    except (TypeError, ValueError):
        raise ValueError("task_or_arrays: expected a Task or a tuple (X, targets, mask, "
                         f"kind), found {type(task_or_arrays).__name__}") from None
    return X, targets, mask, loss_kind


def _loss_and_dY(Y, targets, w, loss_kind):
    """Loss and d loss / d Y for readout ``Y`` (T, B, k) and step weights ``w`` (T, B)."""
    dt = Y.dtype
    wsum = float(w.sum())
    if wsum <= 0:
        raise ValueError("mask: expected at least one scored step, found none")
    wn = (w / wsum).astype(dt)
    if loss_kind == "classification":
        z = np.asarray(targets)
        if z.shape != Y.shape[:2]:
            raise ValueError(f"targets: expected shape {Y.shape[:2]}, found shape {z.shape}")
        P = Y - Y.max(axis=-1, keepdims=True)
        np.exp(P, out=P)
        s = P.sum(axis=-1, keepdims=True)
        P /= s
        zc = np.clip(z, 0, Y.shape[-1] - 1)
        pz = np.take_along_axis(P, zc[..., None], axis=-1)[..., 0]
        nll = -np.log(np.maximum(pz, np.finfo(dt).tiny))
        loss = float(np.sum(wn * nll, dtype=np.float64))
        dY = P
        np.put_along_axis(dY, zc[..., None], (pz - 1.0)[..., None], axis=-1)
        dY *= wn[..., None]
        return loss, dY
    if loss_kind == "regression":
        z = np.asarray(targets, dtype=dt)
        if z.ndim == 2:
            z = z[..., None]
        if z.shape != Y.shape:
            raise ValueError(f"targets: expected shape {Y.shape}, found shape {z.shape}")
        R = Y - z
        loss = float(np.sum(wn[..., None] * R * R, dtype=np.float64))
        R *= (2.0 * wn)[..., None]
        return loss, R
    raise ValueError(f"kind: expected one of {list(LOSS_KINDS)}, found {loss_kind!r}")


def loss_and_grads(kind: str, params: dict, task_or_arrays, *, weights=None,
                   h0=None) -> tuple[float, dict]:
    r"""Loss and its gradient with respect to every parameter (BPTT).

    Parameters
    ----------
    kind : str
        Cell type: a registered cell with a backward pass (:data:`TRAINING`),
        e.g. ``'elman'`` or ``'mgru'``.
    params : dict of str to ndarray
        The cell's parameters (:func:`param_names`: ``W, U, b`` for the Elman
        RNN, ``Wf, Uf, bf, Wh, Uh, bh`` for the MGRU) and ``V, c``; float32 or
        float64, all in one dtype (the computation runs in it).
    task_or_arrays : rnnperturb.tasks.Task or tuple
        A task, or ``(X, targets, mask, loss_kind)`` with ``X`` (T, B, m),
        ``targets`` (T, B) class indices or (T, B, k) values, ``mask`` (T, B)
        bool, ``loss_kind`` 'classification' or 'regression'.
    weights : ndarray, shape (T, B), optional
        Non-negative step weights multiplied into the mask (e.g. to stress
        the recall window); the loss is normalised by their sum.
    h0 : ndarray, shape (B, N), optional
        Initial state (N = the cell's ``state_size``).

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
        Same keys, shapes and dtype as ``params``.
    """
    X, targets, mask, loss_kind = _unpack(task_or_arrays)
    cls = _cell_class(kind)
    cache = forward(kind, params, X, h0)
    Xc, Y = cache.X, cache.Y
    T, B, m = Xc.shape
    dt = Y.dtype
    w = np.asarray(mask, dtype=np.float64)
    if w.shape != (T, B):
        raise ValueError(f"mask: expected shape {(T, B)}, found shape {w.shape}")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (T, B) or np.any(weights < 0):
            raise ValueError(f"weights: expected non-negative values of shape {(T, B)}, "
                             f"found shape {weights.shape}")
        w = w * weights
    loss, dY = _loss_and_dY(Y, targets, w, loss_kind)
    V = params["V"]
    n = V.shape[1]
    k = V.shape[0]
    dYf = dY.reshape(T * B, k)
    Hf = cache.out.reshape(T * B, n)
    grads = {"V": dYf.T @ Hf, "c": dYf.sum(axis=0)}
    dH = (dYf @ V).reshape(T, B, n)              # readout contribution to dL/d(output_t)
    grads.update(training_of(cls).backward(params, cache, dH))
    return loss, {k: grads[k].astype(dt, copy=False) for k in param_names(kind)}


# ------------------------------------------------------------------ backward passes
# One function per cell class: (params, cache, dH) -> gradients of the cell's
# parameters, from dH[t] = the readout's dL/d(output_{t+1}) (T, B, n), the
# output being h_{t+1} (the LSTM's h of its state [h, c]). Step-local
# derivative factors are computed for all t at once (a few large vectorised
# operations) so that the sequential loop does as little as possible.

def _elman_backward(params, cache, dH):
    r"""Elman RNN: :math:`\delta a_t = (1 - h_t^2) \odot \delta h_t`,
    :math:`\delta h_{t-1} = W^\top \delta a_t`."""
    H, X = cache.H, cache.X
    T, B, m = X.shape
    n = H.shape[-1]
    W = params["W"]
    dA = H[1:] * H[1:]
    np.subtract(1.0, dA, out=dA)                # tanh'(a_t) = 1 - h_t^2, overwritten by dL/da_t
    dh = np.zeros((B, n), H.dtype)
    for t in range(T - 1, -1, -1):
        dh += dH[t]
        da = dA[t]
        da *= dh
        np.matmul(da, W, out=dh)
    dAf = dA.reshape(T * B, n)
    Hprev = H[:-1].reshape(T * B, n)
    Xf = X.reshape(T * B, m)
    return {"W": dAf.T @ Hprev, "U": dAf.T @ Xf, "b": dAf.sum(axis=0)}


def _mgru_backward(params, cache, dH):
    r"""MGRU, from the saved gate :math:`f_t` and candidate :math:`c_t`."""
    H, X = cache.H, cache.X
    T, B, m = X.shape
    n = H.shape[-1]
    dt = H.dtype
    Wf, Wh = params["Wf"], params["Wh"]
    F, C = cache.aux["f"], cache.aux["c"]
    Hp = H[:-1]
    dAC = C * C                                  # becomes dL/da_c
    np.subtract(1.0, dAC, out=dAC)
    dAC *= F                                     # f (1 - c^2)
    dAF = 1.0 - F                                # becomes dL/da_f
    OMF = dAF.copy()                             # 1 - f
    dAF *= F                                     # f (1 - f)
    CmH = C - Hp                                 # c - h_{t-1}
    dh = np.zeros((B, n), dt)
    dg = np.empty((B, n), dt)
    tmp = np.empty((B, n), dt)
    tmp2 = np.empty((B, n), dt)
    for t in range(T - 1, -1, -1):
        dh += dH[t]
        dac = dAC[t]
        dac *= dh                                # dL/da_c = dh f (1 - c^2)
        np.matmul(dac, Wh, out=dg)               # dL/d(f * h_{t-1})
        # dL/df = dh (c - h) + dg h ;  dL/da_f = dL/df f (1 - f)
        daf = dAF[t]
        np.multiply(dh, CmH[t], out=tmp)
        np.multiply(dg, Hp[t], out=tmp2)
        tmp += tmp2
        daf *= tmp
        # dL/dh_{t-1} = dh (1 - f) + dg f + da_f Wf
        dh *= OMF[t]
        np.multiply(dg, F[t], out=tmp)
        dh += tmp
        np.matmul(daf, Wf, out=tmp)
        dh += tmp
    dAFf = dAF.reshape(T * B, n)
    dACf = dAC.reshape(T * B, n)
    Hprev = H[:-1].reshape(T * B, n)
    Xf = X.reshape(T * B, m)
    G = (F * Hp).reshape(T * B, n)
    return {"Wf": dAFf.T @ Hprev, "Uf": dAFf.T @ Xf, "bf": dAFf.sum(axis=0),
            "Wh": dACf.T @ G, "Uh": dACf.T @ Xf, "bh": dACf.sum(axis=0)}


def _gru_backward(params, cache, dH):
    r"""GRU (``torch.nn.GRU``'s equations, :class:`rnnperturb.GRU`), from the saved
    gates :math:`r_t, z_t`, the reset operand :math:`\nu_t = W_n h_{t-1} + b_{hn}`
    and the candidate :math:`g_t`.

    With :math:`h_t = g_t + z_t \odot (h_{t-1} - g_t)` and :math:`\delta h = \partial L/\partial h_t`:

    .. math::
        \delta a_z &= \delta h \odot (h_{t-1} - g_t)\, z_t (1 - z_t), \qquad
        \delta a_n = \delta h \odot (1 - z_t)(1 - g_t^2), \\
        \delta a_r &= \delta a_n \odot \nu_t\, r_t (1 - r_t), \qquad
        \delta \nu = \delta a_n \odot r_t, \\
        \partial L/\partial h_{t-1} &= \delta h \odot z_t + W_r^\top \delta a_r
            + W_z^\top \delta a_z + W_n^\top \delta \nu .

    The three recurrent products of a step are one GEMM with the stacked
    :math:`[W_r; W_z; W_n]` (3n, n).
    """
    H, X = cache.H, cache.X
    T, B, m = X.shape
    n = H.shape[-1]
    dt = H.dtype
    R, Z, NH, G = cache.aux["r"], cache.aux["z"], cache.aux["nh"], cache.aux["g"]
    Hp = H[:-1]
    Wcat = np.concatenate([params["Wr"], params["Wz"], params["Wn"]], axis=0)   # (3n, n)
    # step-local factors for all t at once
    Fz = Hp - G
    Fz *= Z
    Fz *= 1.0 - Z                                # (h - g) z (1 - z)
    Fn = 1.0 - G * G
    Fn *= 1.0 - Z                                # (1 - z)(1 - g^2)
    Fr = R * (1.0 - R)
    Fr *= NH                                     # nu r (1 - r)
    D3 = np.empty((T, B, 3 * n), dt)             # [da_r, da_z, d nu] per step
    DN = np.empty((T, B, n), dt)                 # da_n per step
    dh = np.zeros((B, n), dt)
    tmp = np.empty((B, n), dt)
    for t in range(T - 1, -1, -1):
        dh += dH[t]
        d3 = D3[t]
        dan = DN[t]
        np.multiply(dh, Fn[t], out=dan)
        np.multiply(dan, Fr[t], out=d3[:, :n])
        np.multiply(dh, Fz[t], out=d3[:, n:2 * n])
        np.multiply(dan, R[t], out=d3[:, 2 * n:])
        dh *= Z[t]
        np.matmul(d3, Wcat, out=tmp)
        dh += tmp
    D3f = D3.reshape(T * B, 3 * n)
    DNf = DN.reshape(T * B, n)
    Hprev = Hp.reshape(T * B, n)
    Xf = X.reshape(T * B, m)
    dW = D3f.T @ Hprev                           # (3n, n)
    dU = D3f[:, :2 * n].T @ Xf                   # (2n, m)
    db = D3f.sum(axis=0)
    return {"Wr": dW[:n], "Wz": dW[n:2 * n], "Wn": dW[2 * n:],
            "Ur": dU[:n], "Uz": dU[n:], "Un": DNf.T @ Xf,
            "br": db[:n], "bz": db[n:2 * n], "bhn": db[2 * n:], "bn": DNf.sum(axis=0)}


def _lstm_backward(params, cache, dH):
    r"""LSTM (``torch.nn.LSTM``'s equations, :class:`rnnperturb.LSTM`, state
    ``[h, c]``), from the saved gates :math:`i_t, f_t, g_t, o_t` and
    :math:`\tanh c_t`; :math:`c_{t-1}` is the second half of ``cache.H``.

    With :math:`\delta h, \delta c` the gradients at :math:`h_t, c_t` (the
    readout's and the ones carried back from step t + 1):

    .. math::
        \bar\delta c &= \delta c + \delta h \odot o_t (1 - \tanh^2 c_t), \qquad
        \delta a_o = \delta h \odot \tanh c_t\, o_t (1 - o_t), \\
        \delta a_i &= \bar\delta c \odot g_t\, i_t (1 - i_t), \quad
        \delta a_f = \bar\delta c \odot c_{t-1} f_t (1 - f_t), \quad
        \delta a_g = \bar\delta c \odot i_t (1 - g_t^2), \\
        \partial L/\partial c_{t-1} &= \bar\delta c \odot f_t, \qquad
        \partial L/\partial h_{t-1} = \sum_{k \in \{i, f, g, o\}} W_k^\top \delta a_k .

    The four recurrent products of a step are one GEMM with the stacked
    :math:`[W_i; W_f; W_g; W_o]` (4n, n), torch's ``weight_hh``.
    """
    H, X = cache.H, cache.X
    T, B, m = X.shape
    n = H.shape[-1] // 2
    dt = H.dtype
    I, F, G, O, TC = (cache.aux[k] for k in ("i", "f", "g", "o", "tc"))
    Hp, Cp = H[:-1, :, :n], H[:-1, :, n:]
    Wcat = np.concatenate([params["Wi"], params["Wf"], params["Wg"], params["Wo"]], axis=0)
    # step-local factors for all t at once
    Fo = O * (1.0 - O)
    Fo *= TC                                     # tanh(c) o (1 - o)
    Fc = 1.0 - TC * TC
    Fc *= O                                      # o (1 - tanh^2 c)
    Fi = I * (1.0 - I)
    Fi *= G                                      # g i (1 - i)
    Ff = F * (1.0 - F)
    Ff *= Cp                                     # c_{t-1} f (1 - f)
    Fg = 1.0 - G * G
    Fg *= I                                      # i (1 - g^2)
    D4 = np.empty((T, B, 4 * n), dt)             # [da_i, da_f, da_g, da_o] per step
    dh = np.zeros((B, n), dt)
    dc = np.zeros((B, n), dt)
    tmp = np.empty((B, n), dt)
    for t in range(T - 1, -1, -1):
        dh += dH[t]
        d4 = D4[t]
        np.multiply(dh, Fc[t], out=tmp)
        dc += tmp                                # dL/dc_t, all paths
        np.multiply(dc, Fi[t], out=d4[:, :n])
        np.multiply(dc, Ff[t], out=d4[:, n:2 * n])
        np.multiply(dc, Fg[t], out=d4[:, 2 * n:3 * n])
        np.multiply(dh, Fo[t], out=d4[:, 3 * n:])
        dc *= F[t]
        np.matmul(d4, Wcat, out=dh)
    D4f = D4.reshape(T * B, 4 * n)
    Hprev = Hp.reshape(T * B, n)
    Xf = X.reshape(T * B, m)
    dW = D4f.T @ Hprev                           # (4n, n)
    dU = D4f.T @ Xf                              # (4n, m)
    db = D4f.sum(axis=0)
    names = ("i", "f", "g", "o")
    out = {}
    for j, a in enumerate(names):
        sl = slice(j * n, (j + 1) * n)
        out["W" + a], out["U" + a], out["b" + a] = dW[sl], dU[sl], db[sl]
    return out


@dataclass(frozen=True)
class CellTraining:
    """What the simulator needs from a cell beyond its step.

    Attributes
    ----------
    backward : callable
        ``backward(params, cache, dH) -> dict``: the gradients of the cell's
        parameters by BPTT, from the :class:`Cache` and ``dH`` (T, B, n), the
        readout's :math:`\\partial L/\\partial h_t`.
    saved : tuple of str
        The intermediates of :meth:`~rnnperturb.cells.Cell.forward` (``aux``
        keys) the backward pass reads from ``cache.aux``.
    gate_bias : str or None
        The bias that :func:`validation.train.init_params` sets to its
        ``forget_bias`` (None: the cell has no gate).
    """

    backward: Callable
    saved: tuple = ()
    gate_bias: str | None = None


#: The backward pass of every trainable cell class.
TRAINING: dict[type, CellTraining] = {
    ElmanRNN: CellTraining(_elman_backward),
    MGRU: CellTraining(_mgru_backward, saved=("f", "c"), gate_bias="bf"),
    GRU: CellTraining(_gru_backward, saved=("r", "z", "nh", "g"), gate_bias="bz"),
    LSTM: CellTraining(_lstm_backward, saved=("i", "f", "g", "o", "tc"), gate_bias="bf"),
}


def training_of(cls: type) -> CellTraining:
    """The :class:`CellTraining` entry of a cell class.

    Raises
    ------
    ValueError
        If the class has no backward pass here.
    """
    if cls not in TRAINING:
        raise ValueError(f"cell: expected one of {sorted(c.kind for c in TRAINING)} (a cell "
                         f"with a backward pass in validation.bptt), found "
                         f"{getattr(cls, 'kind', cls.__name__)!r}")
    return TRAINING[cls]
