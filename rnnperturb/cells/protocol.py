r"""The two recurrent cells: the Elman (tanh) RNN and the minimal gated unit.

Conventions (see ``DESIGN.md`` §1): hidden size ``n``, input size ``m``; inputs
``X`` of shape (T, B, m) or (T, m); states ``H`` of shape (T, B, n) or (T, n);
``h_0 = 0`` unless given. Matrices act on column vectors, so a batch of states
``h`` of shape (B, n) is multiplied as ``h @ W.T``.

Elman RNN

.. math:: h_t = \tanh(W h_{t-1} + U x_t + b)

Minimal gated unit (MGRU; Zhou, Wu, Zhang & Zhou 2016, arXiv:1603.09420; a high
gate value means *overwrite*)

.. math::
    f_t &= \sigma(W_f h_{t-1} + U_f x_t + b_f) \\
    c_t &= \tanh(W_h (f_t \odot h_{t-1}) + U_h x_t + b_h) \\
    h_t &= (1 - f_t) \odot h_{t-1} + f_t \odot c_t

Both cells are immutable: arrays are copied, checked and made read-only at
construction, and ``replace`` returns a new cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, as_param

__all__ = ["ElmanRNN", "MGRU", "CELL_TYPES", "sigmoid", "cell_from_params"]


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function ``1 / (1 + exp(-a))``."""
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    ea = np.exp(a[~pos])
    out[~pos] = ea / (1.0 + ea)
    return out


def _batched(h, x, n, m, dtype):
    """Bring one state/input pair to (B, n) and (B, m); remember if unbatched."""
    h = np.asarray(h, dtype=dtype)
    x = np.asarray(x, dtype=dtype)
    single = h.ndim == 1
    h2 = h[None, :] if single else h
    x2 = x[None, :] if x.ndim == 1 else x
    if h2.ndim != 2 or h2.shape[1] != n:
        raise ValueError(f"h: expected shape (B, {n}) or ({n},), found shape {h.shape}")
    if x2.ndim != 2 or x2.shape[1] != m or x2.shape[0] != h2.shape[0]:
        raise ValueError(
            f"x: expected shape ({h2.shape[0]}, {m}) or ({m},), found shape {x.shape}")
    return h2, x2, single


@dataclass(frozen=True, eq=False)
class _Cell:
    """Shared machinery: validation, the loop over time, readout, replace."""

    kind: ClassVar[str] = ""
    recurrent_names: ClassVar[tuple[str, ...]] = ()
    input_params: ClassVar[tuple[str, ...]] = ()
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    # ------------------------------------------------------------------ setup
    def _sizes(self, wname: str, uname: str) -> tuple[int, int]:
        """Read (n, m) from a recurrent and an input matrix, checking their shapes."""
        W, U = getattr(self, wname), getattr(self, uname)
        W = None if W is None else np.asarray(W)
        U = None if U is None else np.asarray(U)
        if W is None or W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
            raise ValueError(f"{wname}: expected a square matrix (n, n), found "
                             f"{'None' if W is None else 'shape ' + str(W.shape)}")
        if U is None or U.ndim != 2:
            raise ValueError(f"{uname}: expected shape ({W.shape[0]}, m), found "
                             f"{'None' if U is None else 'shape ' + str(U.shape)}")
        return W.shape[0], U.shape[1]

    def _validate(self, shapes: dict[str, tuple]):
        names = list(shapes)
        raw = {k: getattr(self, k) for k in names}
        for k, v in raw.items():
            if v is None:
                raise ValueError(f"{k}: expected an array, found None")
        dtype = self.dtype
        if dtype is None:
            kinds = [np.asarray(v).dtype for v in raw.values()]
            dtype = np.float32 if all(d == np.float32 for d in kinds) else np.float64
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype: expected float32 or float64, found {dtype}")
        object.__setattr__(self, "dtype", dtype)
        for k in names:
            object.__setattr__(self, k, as_param(k, raw[k], shape=shapes[k], dtype=dtype))
        V, c = self.V, self.c
        if V is None and c is not None:
            raise ValueError("c: expected None when V is None, found an array")
        if V is not None:
            V = as_param("V", V, shape=(None, self.n), dtype=dtype)
            c = np.zeros(V.shape[0], dtype) if c is None else c
            c = as_param("c", c, shape=(V.shape[0],), dtype=dtype)
            object.__setattr__(self, "V", V)
            object.__setattr__(self, "c", c)

    # ------------------------------------------------------------ properties
    @property
    def recurrent(self) -> dict[str, np.ndarray]:
        """The named recurrent matrices, each of shape (n, n)."""
        return {k: getattr(self, k) for k in self.recurrent_names}

    @property
    def params(self) -> dict[str, np.ndarray]:
        """All cell parameters (recurrent, input, bias; readout if present)."""
        out = {k: getattr(self, k) for k in self.recurrent_names + self.input_params}
        if self.V is not None:
            out["V"], out["c"] = self.V, self.c
        return out

    @property
    def n_params(self) -> int:
        """Number of recurrent-cell parameters (readout excluded)."""
        return int(sum(getattr(self, k).size for k in self.recurrent_names + self.input_params))

    def replace(self, **params) -> "_Cell":
        """Return a new cell with some parameters replaced (validated anew)."""
        allowed = set(self.recurrent_names + self.input_params) | {"V", "c"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(
                f"replace: expected parameter names among {sorted(allowed)}, found {unknown}")
        kw = {k: getattr(self, k) for k in allowed}
        kw.update(params)
        if "V" in params and "c" not in params:
            kw["c"] = None
        return type(self)(**kw, dtype=self.dtype)

    def _check_dW(self, dW) -> dict[str, np.ndarray]:
        if dW is None:
            return {}
        if not isinstance(dW, dict):
            raise ValueError(
                f"dW: expected a dict over {self.recurrent_names}, found {type(dW).__name__}")
        unknown = sorted(set(dW) - set(self.recurrent_names))
        if unknown:
            raise ValueError(
                f"dW: expected keys among {list(self.recurrent_names)}, found {unknown}")
        return {k: as_param(f"dW[{k!r}]", v, shape=(self.n, self.n), dtype=self.dtype)
                for k, v in dW.items()}

    # --------------------------------------------------------------- running
    def run(self, X, h0=None) -> np.ndarray:
        """Run the cell over an input sequence.

        Parameters
        ----------
        X : array_like, shape (T, B, m) or (T, m)
        h0 : array_like, shape (B, n) or (n,), optional
            Initial state; zeros when None.

        Returns
        -------
        H : ndarray, shape (T, B, n) or (T, n)
            ``H[t-1]`` is :math:`h_t`, for t = 1..T.
        """
        X3, single = as_inputs(X, self.m, self.dtype)
        h = as_h0(h0, self.n, X3.shape[1], single, self.dtype)
        H = np.empty((X3.shape[0], X3.shape[1], self.n), dtype=self.dtype)
        for t in range(X3.shape[0]):
            h = self._step(h, X3[t])
            H[t] = h
        return H[:, 0, :] if single else H

    def step(self, h, x) -> np.ndarray:
        """One step: h_t from h_{t-1} (shape (B, n) or (n,)) and x_t."""
        h2, x2, single = _batched(h, x, self.n, self.m, self.dtype)
        out = self._step(h2, x2)
        return out[0] if single else out

    def jacobian(self, h, x) -> np.ndarray:
        r"""Step Jacobian :math:`\partial h_t / \partial h_{t-1}`.

        Returns
        -------
        J : ndarray, shape (B, n, n) or (n, n)
            ``J[b, i, j] = d h_t[i] / d h_{t-1}[j]``.
        """
        h2, x2, single = _batched(h, x, self.n, self.m, self.dtype)
        J = self._jacobian(h2, x2)
        return J[0] if single else J

    def jvp(self, h, x, dh=None, dW=None) -> tuple[np.ndarray, np.ndarray]:
        r"""Forward-mode derivative of one step.

        Returns ``(h_t, dh_t)`` with
        :math:`dh_t = (\partial h_t/\partial h_{t-1})\,dh + \sum_k (\partial h_t/\partial W_k)[\Delta W_k]`.

        Parameters
        ----------
        h : array_like, shape (B, n) or (n,)
            :math:`h_{t-1}`.
        x : array_like, shape (B, m) or (m,)
        dh : array_like, same shape as ``h``, optional
            Tangent of :math:`h_{t-1}`; zero when None.
        dW : dict of str to ndarray (n, n), optional
            Direction of change of some recurrent matrices (keys from
            :attr:`recurrent_names`); zero when None.
        """
        h2, x2, single = _batched(h, x, self.n, self.m, self.dtype)
        dh2 = np.zeros_like(h2) if dh is None else np.asarray(dh, self.dtype).reshape(h2.shape)
        hn, dhn = self._jvp(h2, x2, dh2, self._check_dW(dW))
        return (hn[0], dhn[0]) if single else (hn, dhn)

    def directional(self, h, x, dW) -> np.ndarray:
        r"""Directional derivative of :math:`h_t` along a change of the recurrent
        matrices, with :math:`h_{t-1}` held fixed (the forcing of the
        tangent-linear model)."""
        return self.jvp(h, x, None, dW)[1]

    def readout(self, H) -> np.ndarray:
        """Logits ``y = V h + c`` for states ``H`` of shape (..., n)."""
        if self.V is None:
            raise ValueError("readout: expected a cell with V (readout), found V=None")
        H = np.asarray(H, dtype=self.dtype)
        if H.shape[-1] != self.n:
            raise ValueError(f"H: expected last dimension n={self.n}, found shape {H.shape}")
        return H @ self.V.T + self.c


@dataclass(frozen=True, eq=False)
class ElmanRNN(_Cell):
    r"""Elman RNN, :math:`h_t = \tanh(W h_{t-1} + U x_t + b)`.

    Parameters
    ----------
    W : array_like, shape (n, n)
        Recurrent matrix.
    U : array_like, shape (n, m)
        Input matrix.
    b : array_like, shape (n,)
        Bias.
    V : array_like, shape (k, n), optional
        Readout matrix, logits ``y_t = V h_t + c``.
    c : array_like, shape (k,), optional
        Readout bias (zeros when V is given alone).
    dtype : {float32, float64}, optional
        Default float64 unless every parameter is float32.
    """

    W: np.ndarray = None
    U: np.ndarray = None
    b: np.ndarray = None
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    kind: ClassVar[str] = "elman"
    recurrent_names: ClassVar[tuple[str, ...]] = ("W",)
    input_params: ClassVar[tuple[str, ...]] = ("U", "b")

    def __post_init__(self):
        n, m = self._sizes("W", "U")
        self._validate({"W": (n, n), "U": (n, m), "b": (n,)})

    @property
    def n(self) -> int:
        return self.W.shape[0]

    @property
    def m(self) -> int:
        return self.U.shape[1]

    def preactivation(self, h, x, W=None):
        """:math:`a_t = W h_{t-1} + U x_t + b` for batches h (B, n), x (B, m)."""
        W = self.W if W is None else W
        return h @ W.T + x @ self.U.T + self.b

    def _step(self, h, x):
        return np.tanh(self.preactivation(h, x))

    def _jacobian(self, h, x):
        d = 1.0 - np.tanh(self.preactivation(h, x)) ** 2
        return d[:, :, None] * self.W[None, :, :]

    def _jvp(self, h, x, dh, dW):
        hn = np.tanh(self.preactivation(h, x))
        da = dh @ self.W.T
        if "W" in dW:
            da = da + h @ dW["W"].T
        return hn, (1.0 - hn ** 2) * da


@dataclass(frozen=True, eq=False)
class MGRU(_Cell):
    r"""Minimal gated recurrent unit (Zhou et al. 2016, arXiv:1603.09420).

    .. math::
        f_t &= \sigma(W_f h_{t-1} + U_f x_t + b_f) \\
        c_t &= \tanh(W_h (f_t \odot h_{t-1}) + U_h x_t + b_h) \\
        h_t &= (1 - f_t) \odot h_{t-1} + f_t \odot c_t

    A gate value near 0 *keeps* the state, near 1 overwrites it.

    Parameters
    ----------
    Wf, Wh : array_like, shape (n, n)
        Recurrent matrices of the gate and of the candidate.
    Uf, Uh : array_like, shape (n, m)
        Input matrices.
    bf, bh : array_like, shape (n,)
        Biases.
    V, c : array_like, optional
        Readout, as for :class:`ElmanRNN`.
    dtype : {float32, float64}, optional
    """

    Wf: np.ndarray = None
    Uf: np.ndarray = None
    bf: np.ndarray = None
    Wh: np.ndarray = None
    Uh: np.ndarray = None
    bh: np.ndarray = None
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    kind: ClassVar[str] = "mgru"
    recurrent_names: ClassVar[tuple[str, ...]] = ("Wf", "Wh")
    input_params: ClassVar[tuple[str, ...]] = ("Uf", "bf", "Uh", "bh")

    def __post_init__(self):
        n, m = self._sizes("Wf", "Uf")
        self._validate({"Wf": (n, n), "Uf": (n, m), "bf": (n,),
                        "Wh": (n, n), "Uh": (n, m), "bh": (n,)})

    @property
    def n(self) -> int:
        return self.Wf.shape[0]

    @property
    def m(self) -> int:
        return self.Uf.shape[1]

    def gates(self, h, x, Wf=None, Wh=None):
        """Return ``(f_t, c_t)`` for batches h (B, n), x (B, m)."""
        Wf = self.Wf if Wf is None else Wf
        Wh = self.Wh if Wh is None else Wh
        f = sigmoid(h @ Wf.T + x @ self.Uf.T + self.bf)
        c = np.tanh((f * h) @ Wh.T + x @ self.Uh.T + self.bh)
        return f, c

    def _step(self, h, x):
        f, c = self.gates(h, x)
        return (1.0 - f) * h + f * c

    def _jacobian(self, h, x):
        f, c = self.gates(h, x)
        df = (f * (1.0 - f))[:, :, None] * self.Wf[None]          # d f / d h
        dfh = df * h[:, :, None] + np.einsum("ij,bj->bij", np.eye(self.n), f)  # d(f*h)/dh
        dc = (1.0 - c ** 2)[:, :, None] * (self.Wh[None] @ dfh)  # d c / d h
        J = df * (c - h)[:, :, None] + f[:, :, None] * dc
        idx = np.arange(self.n)
        J[:, idx, idx] += 1.0 - f
        return J

    def _jvp(self, h, x, dh, dW):
        f, c = self.gates(h, x)
        fh = f * h
        daf = dh @ self.Wf.T
        if "Wf" in dW:
            daf = daf + h @ dW["Wf"].T
        df = f * (1.0 - f) * daf
        dac = (df * h + f * dh) @ self.Wh.T
        if "Wh" in dW:
            dac = dac + fh @ dW["Wh"].T
        dc = (1.0 - c ** 2) * dac
        hn = (1.0 - f) * h + f * c
        return hn, (1.0 - f) * dh + df * (c - h) + f * dc


CELL_TYPES: dict[str, type] = {"elman": ElmanRNN, "mgru": MGRU}


def cell_from_params(kind: str, params: dict, *, dtype=None) -> _Cell:
    """Build a cell from its kind ('elman' | 'mgru') and a parameter dict."""
    if kind not in CELL_TYPES:
        raise ValueError(f"cell: expected one of {sorted(CELL_TYPES)}, found {kind!r}")
    cls = CELL_TYPES[kind]
    allowed = set(cls.recurrent_names + cls.input_params) | {"V", "c"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"{kind} parameters: expected names among {sorted(allowed)}, "
                         f"found unexpected {unknown}")
    missing = sorted(set(cls.recurrent_names + cls.input_params) - set(params))
    if missing:
        raise ValueError(f"{kind} parameters: expected {sorted(allowed - {'V', 'c'})}, "
                         f"missing {missing}")
    return cls(**params, dtype=dtype)
