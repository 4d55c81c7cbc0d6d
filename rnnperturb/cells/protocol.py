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
:attr:`Cell.state_size`, :meth:`Cell.output`
    for a cell whose state is more than the vector the recurrent matrices
    act on: the size N of the state (default n) and the part of it a readout
    sees (default the whole state). The LSTM's state is :math:`(h, c)`
    (N = 2n, the output h); a stacked network's is its layers' states one after
    the other (the output the top layer's h);
plus whatever the rounding, remainder and global-bound recursions need
(documented where those algorithms live). ``input_of`` and the optional
``bias_of`` name the input matrix and bias of each recurrent matrix's
pre-activation, from which :meth:`Cell.input_terms` and :meth:`Cell.hoisted`
precompute the input terms of all steps at once (the training simulator,
``validation/bptt.py``, runs :meth:`Cell.forward` that way).

Everything else (running over time, the Jacobian, the JVP, the
linearisation, the input Jacobian, readout, replace) is written here once
against that protocol. Conventions (DESIGN §1): inputs ``X`` of shape (T, B,
m) or (T, m); states (T, B, n) or (T, n); ``h_0 = 0`` unless given; batches of
vectors are rows, so ``A v`` is computed as ``v @ A.T``.

State size and matrix size. The recurrent matrices are (n, n); the state
:math:`s_t` a step maps is (B, N) with N = :attr:`Cell.state_size` (N = n for
the Elman RNN, the MGRU and the GRU, 2n for the LSTM, the sum over the layers
for a stacked network). What each algorithm takes and gives:

* ``h0``, :meth:`Cell.step`, :meth:`Cell.jacobian` (N x N),
  :meth:`Cell.linearise` (forcing matrices N x n), :meth:`Cell.jvp` and
  :meth:`Cell.input_jacobian` work on the full state;
* :meth:`Cell.run` returns the output :math:`y_t` = :meth:`Cell.output` of
  every state (what ``torch`` returns as its output sequence: the LSTM's h,
  the top layer's h), shape (T, B, n); ``run(X, state="full")`` gives the
  states (T, B, N);
* the deviation functions (:func:`rnnperturb.deviation`,
  :func:`rnnperturb.first_order`, the rank sweep, the noise response) report
  the deviation of that output by default and of the full state with
  ``state="full"``; internally their nominal trajectories carry full states.

For N = n the output is the state itself and every number is what it was
before the distinction existed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, as_param
from rnnperturb.cells.namespace import FLOAT, DiagonalStack, sigmoid

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



# ----- precomputed input terms (Cell.hoisted; validation/bptt.py)
class _Zero:
    """Additive identity for any array type: ``a + ZERO`` is ``a`` itself (no
    copy, no rounding). Stands in for a bias already folded into an input term."""

    __array_ufunc__ = None              # NumPy defers ``a + ZERO`` to __radd__

    def __add__(self, other):
        return other

    __radd__ = __add__


_ZERO = _Zero()


class _InputTerms:
    """Stands in for an input matrix whose terms of all steps are precomputed:
    under :class:`_Hoisted`, ``ns.matvec(terms, t)`` is ``terms.values[t]``."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values


class _Hoisted:
    """A namespace ``ns`` whose ``matvec`` reads precomputed input terms."""

    def __init__(self, ns):
        self._ns = ns
        for name in ("tanh", "sigmoid", "lerp", "asarray"):
            if hasattr(ns, name):
                setattr(self, name, getattr(ns, name))

    def __getattr__(self, name):
        return getattr(self._ns, name)

    def matvec(self, A, v):
        if type(A) is _InputTerms:
            return A.values[v]
        return self._ns.matvec(A, v)

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
    #: Recurrent matrices whose forcing Jacobian d h_t / d (W_k a_k) is diagonal
    #: (only meaningful, and only allowed, when the state size N is n).
    diagonal_forcing: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def state_size_for(cls, n: int) -> int:
        """The state size N of a cell of this class with hidden size n (default n;
        the LSTM's 2n), for code that builds cells from their class (the symbolic
        layer)."""
        return n

    @property
    def state_size(self) -> int:
        """N, the size of the state a step maps (default n, the size of the
        recurrent matrices; the LSTM's (h, c) has 2n)."""
        return type(self).state_size_for(self.n)

    def output(self, ns, s):
        r"""The part of a state a readout sees, over a namespace.

        Parameters
        ----------
        ns : namespace
        s : array, shape (..., N)

        Returns
        -------
        array, shape (..., n)
            Default: ``s`` itself (N = n); the LSTM's h, a stack's top h.
        """
        return s

    def hidden_of(self, S) -> np.ndarray:
        """:meth:`output` of NumPy states ``S`` (..., N): the (..., n) part a
        readout sees (``S`` itself when N = n)."""
        return self.output(FLOAT, S)

    def output_rows(self, state: str = "h"):
        """Indices of the state components a deviation reports: None for all of them
        (``state='full'``, or a cell whose output is its state, N = n), else those of
        the output (:meth:`output` applied to the component indices, e.g. 0..n-1 for
        the LSTM's h)."""
        if self._check_state(state) == "full" or self.state_size == self.n:
            return None
        return np.asarray(self.hidden_of(np.arange(self.state_size)))

    def _check_state(self, state: str) -> str:
        if state not in ("h", "full"):
            raise ValueError(f"state: expected 'h' (the output, what a readout sees) or "
                             f"'full' (the whole state, N = {self.state_size}), found {state!r}")
        return state

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
        raise NotImplementedError("Cell.forward: every cell defines its one step (see Cell.forward)")

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
        raise NotImplementedError("Cell.tangent: every cell defines the derivative of its step")

    #: For each recurrent matrix, the input matrix of the same pre-activation.
    input_of: ClassVar[dict[str, str]] = {}

    # ----- symbolic cells (symbolic/recursions.py)
    @classmethod
    def param_shapes(cls, n: int, m: int) -> dict[str, tuple[int, ...]]:
        r"""The shape of every cell parameter (readout excluded) for hidden
        size ``n`` and input size ``m``, in the order of the dataclass fields.

        Default: the recurrent matrices (n, n), the input matrices of
        :attr:`input_of` (n, m) and every other input parameter a vector
        (n,); a cell with other parameter shapes overrides it.
        """
        from dataclasses import fields
        shapes = {k: (n, n) for k in cls.recurrent_names}
        shapes.update({k: (n, m) for k in cls.input_of.values()})
        names = cls.recurrent_names + cls.input_params
        return {f.name: shapes.get(f.name, (n,)) for f in fields(cls) if f.name in names}

    def state_bounds(self, h0) -> tuple[np.ndarray, np.ndarray]:
        r"""A box :math:`[lo, hi]` that holds every state :math:`h_t`, t >= 1,
        of this cell *and* of any cell with other recurrent matrices, from the
        initial state ``h0`` (B, N): both arrays of shape (B, N) (entries may
        be infinite where no bound holds for every step count)."""
        raise self._not_implemented("state_bounds", "the trivial cap and every bound")

    def trivial_cap(self, h0, B: int) -> np.ndarray:
        r"""Per-component width (rounded up) of :meth:`state_bounds`, shape
        (B, n): no deviation :math:`|h'_{t,i} - h_{t,i}|` can exceed it."""
        from rnnperturb.verified.linalg import up
        h0 = np.broadcast_to(np.asarray(h0, np.float64), (B, self.state_size))
        lo, hi = self.state_bounds(h0)
        return up(hi - lo, 2)

    # ----- certified trajectory bound (bounds/trajectory.py)
    def rounding_context(self, rec) -> dict:
        r"""Verified constants for :meth:`rounding_step` of the float64
        trajectory whose recurrent matrices are ``rec`` (dict of (n, n) arrays,
        or of (S, n, n) stacks: S trajectories advanced together, e.g. the
        nominal and the perturbed one; input matrices and biases are the cell's
        own), e.g. :class:`rnnperturb.verified.linalg.VerifiedMatrix` of each
        matrix (which handles both).

        Default: the constants of the generic ball-arithmetic step
        (:func:`rnnperturb.verified.ball.ball_rounding_context`); a cell that
        writes its own :meth:`rounding_step` writes its own context too."""
        from rnnperturb.verified.ball import ball_rounding_context
        return ball_rounding_context(self, rec)

    def rounding_step(self, ctx, h, rho, N, x, absx, xnorm, exact: bool, linear: bool):
        r"""One float64 step with a sound enclosure of its rounding error.

        With :math:`r_t = h_t - \tilde h_t` (exact minus computed trajectory,
        :math:`r_0 = 0`) and the hypotheses :math:`|r_{t-1}| \le \rho_{t-1}`,
        :math:`\|r_{t-1}\|_2 \le N_{t-1}`, it returns bounds that hold at t.
        The statement and the proof pattern are in
        :mod:`rnnperturb.bounds.trajectory`; each cell proves its own step.

        Default (every cell that does not write its own): ball (midpoint-radius)
        arithmetic over the cell's own :meth:`forward`, and :meth:`tangent` for
        the linear part (:mod:`rnnperturb.verified.ball`, where the proof is);
        :math:`N_t` is then the norm of :math:`\rho_t` (no per-step norm
        recursion). It acts on the full state (N = :attr:`state_size`).

        Parameters
        ----------
        ctx : dict
            From :meth:`rounding_context`. With stacked matrices (S, n, n) every
            state-shaped argument and result below carries a leading axis S
            (``h``, ``rho``: (S, B, n); ``N``: (S, B)); ``x``, ``absx``, ``xnorm``
            are shared. Reductions over the state must use ``axis=-1``.
        h, rho : ndarray, shape (B, n)
            :math:`\tilde h_{t-1}` and :math:`\rho_{t-1}`.
        N : ndarray, shape (B,)
            :math:`N_{t-1}`.
        x, absx : ndarray, shape (B, m)
            :math:`x_t` and :math:`|x_t|`.
        xnorm : ndarray, shape (B,)
            Upper bound on :math:`\|x_t\|_2`.
        exact : bool
            Componentwise :math:`|W|v` products (else cheap row-sum majorants).
        linear : bool
            Also return the linear part for the multi-step (Lyapunov) recursion.

        Returns
        -------
        h_t : ndarray (B, n)
            :math:`\tilde h_t`.
        rho_t : ndarray (B, n)
            :math:`\ge |r_t|` (before the caller's caps).
        N_t : ndarray (B,)
            :math:`\ge \|r_t\|_2`.
        loc : ndarray (B, n)
            Bound on the local rounding :math:`|F(\tilde h_{t-1}) - \tilde h_t|`.
        lin : tuple ``(aux, gam)`` or None
            ``aux``: intermediates in the form :meth:`forward` returns them, such
            that :math:`r_t = \tilde J_t r_{t-1} + g_t` with :math:`\tilde J_t` the
            *exact* linear map of :meth:`tangent` at ``(h, aux)`` (its
            coefficient vectors as computed in float64) and
            :math:`|g_t| \le` ``gam`` (B, n). None unless ``linear``.
        """
        from rnnperturb.verified.ball import ball_rounding_step
        return ball_rounding_step(self, ctx, h, rho, N, x, absx, xnorm, exact, linear)

    # ----- memory statistics (stats/memory.py)
    def overwrite_gate(self, aux):
        r"""The overwrite gate of a step, or None for a cell without one.

        The gate :math:`g_t \in (0, 1)^n` of an update
        :math:`h_t = (1 - g_t) \odot h_{t-1} + g_t \odot c_t`: near 0 the
        state is kept, near 1 it is overwritten (a cell whose own gate has
        the opposite sense returns one minus it).

        Parameters
        ----------
        aux : dict
            Intermediates returned by :meth:`forward`.

        Returns
        -------
        ndarray, shape (..., B, n), or None
        """
        raise self._not_implemented("overwrite_gate", "the memory statistics")

    # ----- global bound (bounds/global_bound.py)
    # The driver (rnnperturb.bounds.global_bound.global_bound) is generic: it checks
    # that state_bounds keep every state in [-1, 1], runs the simple contraction
    # bound from global_simple, iterates the state boxes from global_box_map
    # (rnnperturb.bounds.global_bound.state_boxes), caps, combines and warns. The
    # cell-specific error recursion is global_recursion. P and Q are the float64
    # parameter dicts of the nominal and the perturbed cell (equal but for the
    # recurrent matrices); every bound must be rounded outward (the toolkit of
    # rnnperturb.verified.outward: dn, tanh_up, sig_dn, norm_up, forcing_sup, ...).
    def _not_implemented(self, method: str, algorithm: str = "the global bound "
                         "(rnnperturb.bounds.global_bound)"):
        """The error for a protocol method a cell does not define (never a fall-through)."""
        return NotImplementedError(
            f"{type(self).__name__}.{method}: not implemented, so {algorithm} cannot handle "
            f"the {self.kind!r} cell; define it in the cell's module (see Cell.{method})")

    def global_box_map(self, P, reach):
        r"""The state-box map of the global bound.

        Parameters
        ----------
        P : dict of str to ndarray (float64)
            Parameters of the cell (nominal or perturbed).
        reach : dict of str to ndarray (n,)
            For every recurrent matrix k, an upper bound of
            :math:`\max_{\|x\|_2 \le r}|(U_k x)_i|` for the input matrix
            :math:`U_k` of the same pre-activation (:attr:`input_of`).

        Returns
        -------
        phi : callable
            ``phi(v)`` (n,) -> (n,), monotone: an upper bound of :math:`|h_t|`
            over every :math:`|h_{t-1}| \le v` and every input of norm
            :math:`\le r`, at most 1.
        """
        raise self._not_implemented("global_box_map")

    def global_simple(self, P, Q):
        r"""Ingredients of the simple contraction bound (DESIGN §2(c)).

        Returns ``(rate, forcing)``: a verified float ``rate`` and a callable
        ``forcing(s)`` (an upper bound, float) such that
        :math:`\|e_t\|_2 \le \text{rate}\,\|e_{t-1}\|_2 + \text{forcing}(s)`
        whenever :math:`\|h_{t-1}\|_2 \le s` (every input, both cells in [-1, 1]).
        """
        raise self._not_implemented("global_simple")

    def global_recursion(self, P, Q, r, rho0, boxes):
        r"""The cell's refined error recursions of the global bound.

        Parameters
        ----------
        P, Q : dict of str to ndarray (float64)
            Nominal and perturbed parameters.
        r : float
            Input norm bound, :math:`\|x_t\|_2 \le r`.
        rho0 : float
            :math:`\|h_0\|_2 \le \rho_0`.
        boxes : rnnperturb.bounds.global_bound.StateBoxes
            State and deviation boxes of both cells (T from ``boxes.ecap``).

        Returns
        -------
        rnnperturb.bounds.global_bound.Refined
            ``bound`` (T,) on :math:`\|e_t\|_2`, ``rate``, ``asymptote`` (inf
            when none), ``slope`` (n,) and ``scaling`` (n,).
        """
        raise self._not_implemented("global_recursion")

    # ----- precomputed input terms (validation/bptt.py)
    #: For each recurrent matrix, the bias that :meth:`input_terms` folds into
    #: the input term of its pre-activation (optional: a matrix without an
    #: entry gets :math:`U_k x_t` alone and the bias stays in :meth:`forward`).
    bias_of: ClassVar[dict[str, str]] = {}

    @classmethod
    def input_terms(cls, ns, P, X) -> dict:
        r"""The input terms :math:`U_k x_t + b_k` of the pre-activations, all steps at once.

        Parameters
        ----------
        ns, P : as for :meth:`forward`
        X : array, shape (..., B, m)
            Inputs of any number of steps (e.g. (T, B, m)).

        Returns
        -------
        dict of str to array, each of shape (..., B, n)
            For every recurrent matrix k, ``ns.matvec(P[input_of[k]], X)`` plus
            ``P[bias_of[k]]`` when :attr:`bias_of` names one.
        """
        out = {}
        for k in cls.recurrent_names:
            u = ns.matvec(P[cls.input_of[k]], X)
            out[k] = u + P[cls.bias_of[k]] if k in cls.bias_of else u
        return out

    @classmethod
    def hoisted(cls, ns, P, X):
        r"""The step with its input terms precomputed for all steps (one GEMM per
        input matrix instead of one per step).

        Returns ``(ns_t, P_t)`` such that ``cls.forward(ns_t, P_t, h, t, rec)``
        is the step on the input ``X[t]`` (``t`` an index in place of ``x``):
        every ``ns_t.matvec(P_t[input_of[k]], t)`` reads the precomputed
        :meth:`input_terms` ``[k][t]`` and every folded bias ``P_t[bias_of[k]]``
        adds exactly zero. This relies on :meth:`forward` using ``x`` only in
        ``ns.matvec(P[input_of[k]], x)`` and each folded bias only as a summand
        of the same pre-activation, as every cell here does. The values are
        those of :meth:`forward` up to rounding: the bias is added to
        :math:`U_k x_t` before the recurrent term, not after.

        Parameters
        ----------
        ns, P : as for :meth:`forward`
        X : array, shape (T, B, m)

        Returns
        -------
        ns_t : namespace
        P_t : dict of str to array
        """
        terms = cls.input_terms(ns, P, X)
        Pt = dict(P)
        for k in cls.recurrent_names:
            Pt[cls.input_of[k]] = _InputTerms(terms[k])
            if k in cls.bias_of:
                Pt[cls.bias_of[k]] = _ZERO
        return _Hoisted(ns), Pt

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
        """The standard basis in every batch row, as a symbolic stack (k, B, k)."""
        return DiagonalStack(np.ones((B, k), dtype=self.dtype))

    @staticmethod
    def _columns(Z):
        """A tangent stack over the basis, (k, B, n), as matrices (B, n, k)."""
        Z = Z.dense() if isinstance(Z, DiagonalStack) else Z
        return np.ascontiguousarray(Z.transpose(1, 2, 0))

    def _jacobian(self, h, x):
        _, aux, _ = self.nominal(h, x)
        return self._columns(self.tangent_step(h, aux, self._basis(self.state_size, h.shape[0])))

    def _jvp(self, h, x, dh, dW):
        hn, aux, regs = self.nominal(h, x)
        force = {k: FLOAT.matvec(v, regs[k]) for k, v in dW.items()}
        return hn, self.tangent_step(h, aux, dh, force)

    def linearise(self, h, x):
        r"""The nominal step and its tangent-linear pieces.

        .. math:: \ell_t = J_t \ell_{t-1} + \sum_k B_{k,t}\,\Delta W_k a_{k,t}

        Parameters
        ----------
        h : ndarray, shape (B, N)
            The state :math:`s_{t-1}` (N = :attr:`state_size`, n for most cells).
        x : ndarray, shape (B, m)

        Returns
        -------
        h_t : ndarray, shape (B, N)
        J : ndarray, shape (B, N, N)
            Step Jacobian, ``J[b, i, j] = d s_t[i] / d s_{t-1}[j]``.
        forcing : dict of str to (diag, B_t, a)
            For every recurrent matrix: ``diag`` is True when :math:`B_{k,t}`
            is diagonal (:attr:`diagonal_forcing`, only when N = n) and ``B_t``
            then holds its diagonal (B, n); else ``B_t`` is (B, N, n). ``a``
            (B, n) is the regressor :math:`a_{k,t}` (what ``rec(k, a)``
            received in :meth:`forward`).
        """
        hn, aux, regs = self.nominal(h, x)
        B, N = h.shape
        n = self.n
        J = self._columns(self.tangent_step(h, aux, self._basis(N, B)))   # basis symbolic
        zero = np.zeros_like(h)
        E = self._basis(n, B)
        # no tangent of the state, a stack of n (one per column of the forcing); symbolic
        # when N = n, else dense (a state split into pieces has no symbolic form)
        dz = (DiagonalStack(np.zeros((B, n), self.dtype)) if N == n
              else np.zeros((n, B, N), self.dtype))
        forcing = {}
        for k in self.recurrent_names:
            if k in self.diagonal_forcing:
                d = self.tangent_step(h, aux, zero, {k: np.ones_like(h)})   # N = n here
                forcing[k] = (True, d, regs[k])
            else:
                Z = self.tangent_step(h, aux, dz, {k: E})
                forcing[k] = (False, self._columns(Z), regs[k])
        return hn, J, forcing

    def input_jacobian(self, h, x) -> np.ndarray:
        r"""Input Jacobian :math:`\partial h_t / \partial x_t`.

        Parameters
        ----------
        h : array_like, shape (B, N) or (N,)
            The state (N = :attr:`state_size`).
        x : array_like, shape (B, m) or (m,)

        Returns
        -------
        ndarray, shape (B, N, m) or (N, m)
        """
        h2, x2, single = _batched(h, x, self.state_size, self.m, self.dtype)
        _, aux, _ = self.nominal(h2, x2)
        B = h2.shape[0]
        Z = self.tangent_step(h2, aux, np.zeros((self.m, B, self.state_size), self.dtype),
                              dx=self._basis(self.m, B))                  # (m, B, n)
        G = self._columns(Z)
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
        return self._keep_origin(type(self)(**kw, dtype=self.dtype))

    def astype(self, dtype) -> "Cell":
        """The same cell with its parameters in ``dtype`` (float32 or float64);
        ``self`` when it already has that dtype (cells are immutable)."""
        if np.dtype(dtype) == self.dtype:
            return self
        return self._keep_origin(type(self)(**self.params, dtype=dtype))

    def _keep_origin(self, new):
        """Carry ``origin`` (where the cell came from, e.g. the key layout of a PyTorch
        state_dict set by :func:`rnnperturb.from_torch`; not a parameter) to a derived cell."""
        origin = getattr(self, "origin", None)
        if origin is not None:
            object.__setattr__(new, "origin", origin)
        return new

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
    def run(self, X, h0=None, *, state: str = "h") -> np.ndarray:
        """Run the cell over an input sequence.

        Parameters
        ----------
        X : array_like, shape (T, B, m) or (T, m)
        h0 : array_like, shape (B, N) or (N,), optional
            Initial state (N = :attr:`state_size`: the LSTM's ``[h0, c0]``, a
            stack's layers one after the other); zeros when None.
        state : {'h', 'full'}
            'h': the output of every step (:meth:`output`, what a readout sees:
            the state itself for N = n, the LSTM's h, the top layer's h);
            'full': the whole state.

        Returns
        -------
        H : ndarray, shape (T, B, n) or (T, n); (T, B, N) or (T, N) for 'full'
            ``H[t-1]`` is :math:`h_t`, for t = 1..T.
        """
        full = self._check_state(state) == "full"
        X3, single = as_inputs(X, self.m, self.dtype)
        N = self.state_size
        h = as_h0(h0, N, X3.shape[1], single, self.dtype)
        H = np.empty((X3.shape[0], X3.shape[1], N), dtype=self.dtype)
        for t in range(X3.shape[0]):
            h = self._step(h, X3[t])
            H[t] = h
        if not full:
            H = self.hidden_of(H)
        return H[:, 0, :] if single else H

    def step(self, h, x) -> np.ndarray:
        """One step: the state s_t from s_{t-1} (shape (B, N) or (N,), N =
        :attr:`state_size`) and x_t."""
        h2, x2, single = _batched(h, x, self.state_size, self.m, self.dtype)
        out = self._step(h2, x2)
        return out[0] if single else out

    def jacobian(self, h, x) -> np.ndarray:
        r"""Step Jacobian :math:`\partial h_t / \partial h_{t-1}`.

        Returns
        -------
        J : ndarray, shape (B, N, N) or (N, N)
            ``J[b, i, j] = d s_t[i] / d s_{t-1}[j]`` over the full state
            (N = :attr:`state_size`).
        """
        h2, x2, single = _batched(h, x, self.state_size, self.m, self.dtype)
        J = self._jacobian(h2, x2)
        return J[0] if single else J

    def jvp(self, h, x, dh=None, dW=None) -> tuple[np.ndarray, np.ndarray]:
        r"""Forward-mode derivative of one step.

        Returns ``(h_t, dh_t)`` with
        :math:`dh_t = (\partial h_t/\partial h_{t-1})\,dh + \sum_k (\partial h_t/\partial W_k)[\Delta W_k]`.

        Parameters
        ----------
        h : array_like, shape (B, N) or (N,)
            The state :math:`s_{t-1}` (N = :attr:`state_size`).
        x : array_like, shape (B, m) or (m,)
        dh : array_like, same shape as ``h``, optional
            Tangent of :math:`s_{t-1}`; zero when None.
        dW : dict of str to ndarray (n, n), optional
            Direction of change of some recurrent matrices (keys from
            :attr:`recurrent_names`); zero when None.
        """
        h2, x2, single = _batched(h, x, self.state_size, self.m, self.dtype)
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


