r"""The cell protocol: what every recurrent cell provides, and the machinery
built on it once for all cells.

A cell is a frozen dataclass of parameters (recurrent matrices ``W*`` of shape
(n, n), input matrices ``U*`` (n, m), biases ``b*`` (n,), an optional readout
``V`` (k, n), ``c`` (k,)) that defines, in its own module and nowhere else:

``kind``, ``recurrent_names``, ``input_params``
    its registry name and parameter names;
:meth:`Cell.forward`
    its one step, :math:`h_t = F(h_{t-1}, x_t)`, written once over an array
    namespace (:mod:`rnnperturb.cells.namespace`), so that float32, float64,
    longdouble, mpmath, intervals and sympy all run the same definition; every
    product with a recurrent matrix goes through ``rec(name, a)``, so that
    algorithms can substitute truncated factors, perturbed or noisy matrices
    without rewriting the step;
:meth:`Cell.tangent`
    the derivative of that step (the tangent-linear step), again over a
    namespace, with ``rec(name, v)`` the tangent of the term ``W_name a``;
:attr:`Cell.diagonal_forcing`
    the recurrent matrices whose forcing Jacobian
    :math:`\partial h_t/\partial(W_k a_k)` is diagonal (structure algorithms
    may exploit);
:meth:`Cell.state_bounds`
    a box that holds every state :math:`h_t`, t >= 1 (the trivial cap);
plus whatever the rounding, remainder and global-bound recursions need
(documented where those algorithms live).

Everything else (running over time, the Jacobian, the JVP, the
linearisation, the input Jacobian, readout, replace) is written here once
against that protocol. Conventions (DESIGN §1): inputs ``X`` of shape (T, B,
m) or (T, m); states (T, B, n) or (T, n); ``h_0 = 0`` unless given; batches of
vectors are rows, so ``A v`` is computed as ``v @ A.T``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, as_param
from rnnperturb.cells.namespace import FLOAT, sigmoid

__all__ = ["Cell", "sigmoid"]


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
class Cell:
    """Base of every cell: the protocol (abstract) and the machinery built on it."""

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

    # --------------------------------------------------------------- protocol
    #: Recurrent matrices whose forcing Jacobian d h_t / d (W_k a_k) is diagonal.
    diagonal_forcing: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def forward(ns, P, h, x, rec):
        r"""The cell's one step, over an array namespace.

        Parameters
        ----------
        ns : namespace
            ``tanh``, ``sigmoid``, ``matvec``, ``lerp`` (see
            :mod:`rnnperturb.cells.namespace`).
        P : mapping of str to array
            The parameters, as arrays of the namespace.
        h : array, shape (..., B, n)
            :math:`h_{t-1}` (leading axes broadcast, e.g. a stack of states).
        x : array, shape (B, m)
            :math:`x_t`.
        rec : callable ``rec(name, a)``
            :math:`W_{name} a` for the recurrent matrix ``name`` and a batch of
            regressors ``a`` (..., n); an algorithm passes its own (truncated
            factors, perturbed or noisy matrices).

        Returns
        -------
        h_t : array, same shape as ``h``
        aux : dict of str to array
            The intermediates the tangent step reuses.
        """
        raise NotImplementedError

    @staticmethod
    def tangent(ns, P, h, aux, dh, rec, dinp):
        r"""The derivative of :meth:`forward` (tangent-linear step).

        Parameters
        ----------
        ns, P : as for :meth:`forward`
        h : array, shape (B, n)
            :math:`h_{t-1}`.
        aux : dict
            Intermediates returned by :meth:`forward` at ``h``.
        dh : array, shape (..., B, n)
            Tangents of :math:`h_{t-1}` (a leading stack axis is allowed).
        rec : callable ``rec(name, v)``
            Tangent of the term :math:`W_{name} a`: :math:`W_{name} v` plus the
            forcing :math:`\Delta W_{name} a` where there is one.
        dinp : callable ``dinp(name)``
            Tangent of the input term of the pre-activation that uses the
            recurrent matrix ``name`` (0 unless the input moves).

        Returns
        -------
        dh_t : array, same shape as ``dh``
        """
        raise NotImplementedError

    #: For each recurrent matrix, the input matrix of the same pre-activation.
    input_of: ClassVar[dict[str, str]] = {}

    def state_bounds(self, h0) -> tuple[np.ndarray, np.ndarray]:
        r"""A box :math:`[lo, hi]` that holds every state :math:`h_t`, t >= 1,
        of this cell *and* of any cell with other recurrent matrices, from the
        initial state ``h0`` (B, n): both arrays of shape (B, n)."""
        raise NotImplementedError

    def trivial_cap(self, h0, B: int) -> np.ndarray:
        r"""Per-component width (rounded up) of :meth:`state_bounds`, shape
        (B, n): no deviation :math:`|h'_{t,i} - h_{t,i}|` can exceed it."""
        raise NotImplementedError

    # ------------------------------------------------- machinery on the protocol
    def _matrices(self, params=None) -> dict:
        P = {k: getattr(self, k) for k in self.recurrent_names + self.input_params}
        if params:
            P.update(params)
        return P

    def nominal(self, h, x, rec=None):
        r"""One step with the intermediates and the regressors.

        Parameters
        ----------
        h : ndarray, shape (..., B, n)
        x : ndarray, shape (B, m)
        rec : callable, optional
            As in :meth:`forward`; the cell's own matrices when None.

        Returns
        -------
        h_t : ndarray
        aux : dict
            Intermediates for :meth:`tangent_step`.
        regressors : dict of str to ndarray
            :math:`a_k`, the vector each recurrent matrix multiplies.
        """
        P = self._matrices()
        regs = {}
        inner = rec if rec is not None else (lambda k, a: FLOAT.matvec(P[k], a))

        def recording(k, a):
            regs[k] = a
            return inner(k, a)
        hn, aux = self.forward(FLOAT, P, h, x, recording)
        return hn, aux, regs

    def tangent_step(self, h, aux, dh, force=None, dx=None):
        r"""Tangent-linear step along the nominal step ``(h, aux)``.

        Parameters
        ----------
        h : ndarray, shape (B, n)
        aux : dict
            From :meth:`nominal`.
        dh : ndarray, shape (..., B, n)
            Tangents of :math:`h_{t-1}`.
        force : dict of str to ndarray (..., B, n), optional
            Forcing added to the tangent of each term :math:`W_k a_k` (e.g.
            :math:`\Delta W_k a_k`).
        dx : ndarray, shape (..., B, m), optional
            Tangent of the input.

        Returns
        -------
        ndarray, same shape as ``dh``
        """
        P = self._matrices()
        force = force or {}

        def rec(k, v):
            out = FLOAT.matvec(P[k], v)
            return out + force[k] if k in force else out

        def dinp(k):
            return 0.0 if dx is None else FLOAT.matvec(P[self.input_of[k]], dx)
        return self.tangent(FLOAT, P, h, aux, dh, rec, dinp)

    def _step(self, h, x):
        P = self._matrices()
        return self.forward(FLOAT, P, h, x, lambda k, a: FLOAT.matvec(P[k], a))[0]

    def _basis(self, k, B):
        """The standard basis as a stack of k batches, shape (k, B, k)."""
        E = np.zeros((k, B, k), dtype=self.dtype)
        idx = np.arange(k)
        E[idx, :, idx] = 1.0
        return E

    def _jacobian(self, h, x):
        _, aux, _ = self.nominal(h, x)
        Z = self.tangent_step(h, aux, self._basis(self.n, h.shape[0]))   # (n_j, B, n_i)
        return np.ascontiguousarray(Z.transpose(1, 2, 0))

    def _jvp(self, h, x, dh, dW):
        hn, aux, regs = self.nominal(h, x)
        force = {k: FLOAT.matvec(v, regs[k]) for k, v in dW.items()}
        return hn, self.tangent_step(h, aux, dh, force)

    def linearise(self, h, x):
        r"""The nominal step and its tangent-linear pieces.

        .. math:: \ell_t = J_t \ell_{t-1} + \sum_k B_{k,t}\,\Delta W_k a_{k,t}

        Parameters
        ----------
        h : ndarray, shape (B, n)
            :math:`h_{t-1}`.
        x : ndarray, shape (B, m)

        Returns
        -------
        h_t : ndarray, shape (B, n)
        J : ndarray, shape (B, n, n)
            Step Jacobian, ``J[b, i, j] = d h_t[i] / d h_{t-1}[j]``.
        forcing : dict of str to (diag, B_t, a)
            For every recurrent matrix: ``diag`` is True when :math:`B_{k,t}`
            is diagonal (:attr:`diagonal_forcing`) and ``B_t`` then holds its
            diagonal (B, n); else ``B_t`` is (B, n, n). ``a`` (B, n) is the
            regressor :math:`a_{k,t}`.
        """
        hn, aux, regs = self.nominal(h, x)
        B, n = h.shape
        J = np.ascontiguousarray(
            self.tangent_step(h, aux, self._basis(n, B)).transpose(1, 2, 0))
        zero = np.zeros_like(h)
        forcing = {}
        for k in self.recurrent_names:
            if k in self.diagonal_forcing:
                d = self.tangent_step(h, aux, zero, {k: np.ones_like(h)})
                forcing[k] = (True, d, regs[k])
            else:
                Z = self.tangent_step(h, aux, np.zeros((n, B, n), self.dtype),
                                      {k: self._basis(n, B)})
                forcing[k] = (False, np.ascontiguousarray(Z.transpose(1, 2, 0)), regs[k])
        return hn, J, forcing

    def input_jacobian(self, h, x) -> np.ndarray:
        r"""Input Jacobian :math:`\partial h_t / \partial x_t`.

        Parameters
        ----------
        h : array_like, shape (B, n) or (n,)
        x : array_like, shape (B, m) or (m,)

        Returns
        -------
        ndarray, shape (B, n, m) or (n, m)
        """
        h2, x2, single = _batched(h, x, self.n, self.m, self.dtype)
        _, aux, _ = self.nominal(h2, x2)
        B = h2.shape[0]
        Z = self.tangent_step(h2, aux, np.zeros((self.m, B, self.n), self.dtype),
                              dx=self._basis(self.m, B))                  # (m, B, n)
        G = np.ascontiguousarray(Z.transpose(1, 2, 0))
        return G[0] if single else G

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

    def replace(self, **params) -> "Cell":
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


