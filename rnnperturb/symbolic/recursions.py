r"""Symbolic (sympy) layer: cells, deviation recursions, sharp constants, closed forms.

Symbolic cells (:func:`symbolic_cell`) run each cell's own step
(:meth:`rnnperturb.cells.Cell.forward`) over the sympy namespace
:data:`SYMPY` with explicit entry symbols for small ``n`` (``W_0_1`` ...), so
that Jacobians, directional derivatives and the exact deviation recursion are
explicit sympy matrices derived from the one definition of the step. They can
be turned back into NumPy code with :func:`numeric_step`,
:func:`numeric_jacobian`, :func:`numeric_jvp` and
:func:`numeric_deviation_step` (a ``lambdify`` bridge): the Jacobian and the
first-order recursion come from sympy's differentiation of the step, so they
check each cell's hand-written :meth:`~rnnperturb.cells.Cell.tangent`; the
structured deviation map (the forward run on value/deviation pairs) checks
the exact deviation.

Exact deviation recursion, Elman RNN (``DESIGN.md`` §2):

.. math::
    e_t = \tanh(a_t + \delta_t) - \tanh(a_t), \qquad
    \delta_t = W' e_{t-1} + \Delta W h_{t-1}, \quad a_t = W h_{t-1} + U x_t + b.

MGRU, with :math:`\Delta f_t = \sigma(a^f_t + \delta^f_t) - \sigma(a^f_t)` and
:math:`\Delta c_t = \tanh(a^c_t + \delta^c_t) - \tanh(a^c_t)`:

.. math::
    e_t &= (1 - f_t)\odot e_{t-1} + \Delta f_t \odot (c_t - h_{t-1})
          + f_t \odot \Delta c_t
          + \underbrace{\Delta f_t \odot (\Delta c_t - e_{t-1})}_{\text{gate}\times\text{candidate}}, \\
    \delta^f_t &= W_f' e_{t-1} + \Delta W_f h_{t-1}, \\
    \delta^c_t &= W_h' \big((f_t + \Delta f_t)\odot e_{t-1} + \Delta f_t \odot h_{t-1}\big)
                 + \Delta W_h (f_t \odot h_{t-1}).

Sharp remainder constants (:func:`sup_abs_derivative`, :func:`remainder_constants`):
:math:`\sup|\tanh''| = 4/(3\sqrt3)`, :math:`\sup|\tanh'''| = 2`,
:math:`\sup|\sigma'| = 1/4`, :math:`\sup|\sigma''| = 1/(6\sqrt3)`,
:math:`\sup|\sigma'''| = 1/8`.

Closed forms of coherent versus incoherent accumulation in the scalar model
:math:`\ell_t = \lambda \ell_{t-1} + \varepsilon f_t` (:func:`scalar_accumulation`)
and in the diagonal model (:func:`diagonal_accumulation`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import sympy as sp

from rnnperturb._checks import check_int
from rnnperturb.cells import CELL_TYPES, cell_type
from rnnperturb.cells import sigmoid as _np_sigmoid
from rnnperturb.cells.namespace import concat as _concat, split as _split

__all__ = [
    "sigmoid", "NUMPY_MODULES", "SympyNamespace", "SYMPY", "SymbolicCell", "symbolic_cell",
    "DeviationRecursion", "deviation_recursion", "first_order_recursion",
    "SupResult", "sup_abs_derivative", "remainder_constants",
    "taylor_remainder_extremum",
    "Accumulation", "scalar_accumulation", "diagonal_accumulation", "ar_stationary_variance",
    "ar_response",
    "numeric_step", "numeric_jacobian", "numeric_jvp", "numeric_deviation_step",
]


# --------------------------------------------------------------------------- sigmoid
class sigmoid(sp.Function):
    r"""Logistic function :math:`\sigma(a) = 1/(1+e^{-a})` with
    :math:`\sigma' = \sigma(1-\sigma)`, so that derivatives stay in terms of
    :math:`\sigma` (as in the numeric cell)."""

    @classmethod
    def eval(cls, a):
        if a.is_zero:
            return sp.Rational(1, 2)
        return None

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, a, **kwargs):
        return 1 / (1 + sp.exp(-a))

    def _eval_is_real(self):
        return self.args[0].is_real


def _np_sig(a):
    return _np_sigmoid(np.asarray(a, dtype=float))


#: ``modules`` for ``sympy.lambdify``: NumPy, with :class:`sigmoid` evaluated stably.
NUMPY_MODULES = [{"sigmoid": _np_sig}, "numpy"]


# ----------------------------------------------------------------- namespaces
_stanh = np.frompyfunc(sp.tanh, 1, 1)
_ssig = np.frompyfunc(sigmoid, 1, 1)


class SympyNamespace:
    r"""The array namespace of :mod:`rnnperturb.cells.namespace` over NumPy
    object arrays of sympy expressions: a cell's own
    :meth:`~rnnperturb.cells.Cell.forward` run in it gives its step as
    explicit expressions.

    ``tanh``, ``sigmoid`` apply ``sympy.tanh`` and :class:`sigmoid`
    elementwise, ``matvec(A, v)`` is ``v @ A.T``, ``lerp(h, c, f)`` is
    :math:`(1-f)h + fc`, ``asarray`` converts a sympy matrix (a column
    (k, 1) becomes a vector (k,)).

    Parameters
    ----------
    record : list, optional
        When given, every activation call appends ``(name, argument, output)``
        (the pre-activations of the step, in call order).
    """

    def __init__(self, record: list | None = None):
        self.record = record

    def _act(self, name, fun, a):
        out = fun(a)
        if self.record is not None:
            self.record.append((name, a, out))
        return out

    def tanh(self, a):
        return self._act("tanh", _stanh, a)

    def sigmoid(self, a):
        return self._act("sigmoid", _ssig, a)

    @staticmethod
    def matvec(A, v):
        return v @ A.T

    @staticmethod
    def lerp(h, c, f):
        keep = 1 - f
        return keep * h + f * c

    @staticmethod
    def asarray(A):
        return _array(A)

    split = staticmethod(_split)
    concat = staticmethod(_concat)


#: The sympy namespace.
SYMPY = SympyNamespace()


def _array(M, shape=None) -> np.ndarray:
    """A sympy matrix (or nested list) as an object array; a column (k, 1) as (k,)."""
    A = np.array(M.tolist() if isinstance(M, sp.MatrixBase) else M, dtype=object)
    if shape is not None:
        return A.reshape(shape)
    return A[:, 0] if A.ndim == 2 and A.shape[1] == 1 else A


def _col(a) -> sp.Matrix:
    """An object vector (k,) as a sympy column (k, 1)."""
    return sp.Matrix(list(np.asarray(a, dtype=object).reshape(-1)))


# ---------------------------------------------------------------------- cells
def _matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}_{j}", real=True))


def _vector(name: str, rows: int) -> sp.Matrix:
    return sp.Matrix(rows, 1, lambda i, j: sp.Symbol(f"{name}_{i}", real=True))


def _activation_names(record, out, aux) -> list[str]:
    """Name suffix of each recorded activation: ``''`` for the one whose output
    is the new state itself, ``'_k'`` for the one stored as ``aux[k]``, else
    ``'_<call index>'``."""
    names = []
    for i, (_, _, o) in enumerate(record):
        if o is out:
            names.append("")
            continue
        key = next((k for k, v in aux.items() if v is o), None)
        names.append(f"_{key}" if key is not None else f"_{i}")
    return names


@dataclass(frozen=True, eq=False)
class SymbolicCell:
    r"""A cell with explicit symbolic entries, whose step is the cell's own
    :meth:`~rnnperturb.cells.Cell.forward` run over :data:`SYMPY`.

    Attributes
    ----------
    kind : str
        The registered cell name (``'elman'``, ``'mgru'``, ...).
    n, m : int
    params : dict of str to sympy.Matrix
        Every cell parameter (recurrent matrices (n, n), input matrices (n, m),
        biases (n, 1)) with entry symbols such as ``W_0_1``.
    h : sympy.Matrix, shape (n, 1)
        :math:`h_{t-1}`.
    x : sympy.Matrix, shape (m, 1)
        :math:`x_t`.
    dW : dict of str to sympy.Matrix
        Symbols of a recurrent perturbation :math:`\Delta W_k` (``dW_0_1``, ``dWf_0_1`` ...).
    e : sympy.Matrix, shape (n, 1)
        :math:`e_{t-1}`, the previous deviation.
    """

    kind: str
    n: int
    m: int
    params: dict = field(repr=False)
    h: sp.Matrix = field(repr=False)
    x: sp.Matrix = field(repr=False)
    dW: dict = field(repr=False)
    e: sp.Matrix = field(repr=False)

    @property
    def cell_type(self) -> type:
        """The cell class (from the registry)."""
        return cell_type(self.kind)

    @property
    def recurrent_names(self) -> tuple[str, ...]:
        return self.cell_type.recurrent_names

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes (:meth:`~rnnperturb.cells.Cell.param_shapes`)."""
        return self.cell_type.param_shapes(self.n, self.m)

    def _forward(self, ns, h, x, params, rec=None):
        """The cell's forward over ``ns`` on object arrays: ``(h_t, aux)``."""
        h = self.h if h is None else h
        x = self.x if x is None else x
        P = dict(self.params)
        P.update(params)
        P = {k: _array(P[k], s) for k, s in self.shapes.items()}
        if rec is None:
            def rec(k, a):
                return ns.matvec(P[k], a)
        return self.cell_type.forward(ns, P, _array(h, (len(self.h),)), _array(x, (self.m,)), rec)

    def step(self, h: sp.Matrix | None = None, x: sp.Matrix | None = None,
             **params: sp.Matrix) -> sp.Matrix:
        r"""The symbolic step :math:`h_t` from ``h`` (default :attr:`h`) and
        ``x``, with any parameter replaced by keyword (e.g. ``W=W + dW``)."""
        return _col(self._forward(SYMPY, h, x, params)[0])

    def intermediates(self, h=None, x=None, **params) -> dict:
        """The intermediates of the step (the ``aux`` dict of the cell's
        forward, e.g. ``'f'``, ``'c'`` for the MGRU), as columns (n, 1)."""
        return {k: _col(v) for k, v in self._forward(SYMPY, h, x, params)[1].items()}

    def preactivations(self, h=None, x=None, **params) -> dict:
        r"""The arguments of the step's activations, in call order, as columns
        (n, 1): ``'a'`` for the activation whose output is the new state
        (:math:`h_t = \phi(a_t)`), ``'a_k'`` for the one whose output is the
        intermediate ``k`` (e.g. ``'a_f'``, ``'a_c'`` for the MGRU)."""
        record = []
        out, aux = self._forward(SympyNamespace(record), h, x, params)
        names = _activation_names(record, out, aux)
        return {"a" + s: _col(a) for s, (_, a, _) in zip(names, record)}

    def preactivation(self, h=None, x=None, **params) -> sp.Matrix:
        r"""The pre-activation :math:`a_t` of a cell whose new state is an
        activation of it, :math:`h_t = \phi(a_t)` (the Elman
        :math:`W h_{t-1} + U x_t + b`)."""
        pre = self.preactivations(h, x, **params)
        if "a" not in pre:
            raise ValueError(
                f"preactivation: expected a cell whose new state is an activation "
                f"h_t = phi(a_t), found {self.kind!r} (its pre-activations: {sorted(pre)})")
        return pre["a"]

    def gates(self, h=None, x=None, **params):
        """The gate and candidate ``(f_t, c_t)``: the intermediates ``'f'`` and
        ``'c'`` of a gated cell (the MGRU)."""
        aux = self.intermediates(h, x, **params)
        if "f" not in aux or "c" not in aux:
            raise ValueError(f"gates: expected a cell with intermediates 'f' and 'c', "
                             f"found {self.kind!r} with {sorted(aux)}")
        return aux["f"], aux["c"]

    def jacobian(self) -> sp.Matrix:
        r"""Step Jacobian :math:`\partial h_t/\partial h_{t-1}`, shape (n, n)."""
        return self.step().jacobian(self.h)

    def directional(self, dW: dict | None = None) -> sp.Matrix:
        r"""Directional derivative of :math:`h_t` along the recurrent perturbation
        ``dW`` (default :attr:`dW`) with :math:`h_{t-1}` fixed."""
        dW = self.dW if dW is None else dW
        eps = sp.Symbol("varepsilon_")
        moved = {k: self.params[k] + eps * dW[k] for k in dW}
        return sp.diff(self.step(**moved), eps).subs(eps, 0)

    def perturbed_step(self) -> sp.Matrix:
        r""":math:`h'_t = F(W + \Delta W;\, h_{t-1} + e_{t-1}, x_t)`."""
        moved = {k: self.params[k] + self.dW[k] for k in self.recurrent_names}
        return self.step(self.h + self.e, **moved)

    def symbols(self, *, extras: bool = False) -> list[sp.Symbol]:
        """Flat, ordered list of the entry symbols (parameters, h, x; then e and
        dW when ``extras``). This is the argument order of the numeric bridge."""
        out = []
        for name in self.shapes:
            out += list(self.params[name])
        out += list(self.h) + list(self.x)
        if extras:
            out += list(self.e)
            for k in self.recurrent_names:
                out += list(self.dW[k])
        return out


@lru_cache(maxsize=None)
def symbolic_cell(kind: str, n: int, m: int = 1) -> SymbolicCell:
    """Build the symbolic cell of a registered kind (``'elman'``, ``'mgru'``,
    ...) with hidden size ``n`` and input size ``m`` (keep n ≤ 4: the
    expressions grow fast)."""
    if kind not in CELL_TYPES:
        raise ValueError(f"kind: expected one of {sorted(CELL_TYPES)}, found {kind!r}")
    n = check_int("n", n, low=1, high=8)
    m = check_int("m", m, low=1, high=8)
    cls = CELL_TYPES[kind]
    params = {name: _matrix(name, *shape) if len(shape) == 2 else _vector(name, shape[0])
              for name, shape in cls.param_shapes(n, m).items()}
    dW = {k: _matrix("d" + k, n, n) for k in cls.recurrent_names}
    N = cls.state_size_for(n)          # the state (the LSTM's [h, c]: 2n entries)
    return SymbolicCell(kind, n, m, params, _vector("h", N), _vector("x", m), dW, _vector("e", N))


# ------------------------------------------------------------ deviation recursion
class _Dev:
    r"""A value and its deviation, :math:`(v, d)`: nominal :math:`v`,
    perturbed :math:`v + d` (object arrays). Arithmetic propagates the
    deviation exactly: :math:`\Delta(ab) = (a + \Delta a)\Delta b + \Delta a\, b`."""

    __array_ufunc__ = None          # numpy defers to the reflected operators

    def __init__(self, v, d):
        self.v, self.d = v, d

    @staticmethod
    def split(a):
        return (a.v, a.d) if isinstance(a, _Dev) else (a, 0)

    def __add__(self, o):
        v, d = _Dev.split(o)
        return _Dev(self.v + v, self.d + d)

    __radd__ = __add__

    def __sub__(self, o):
        v, d = _Dev.split(o)
        return _Dev(self.v - v, self.d - d)

    def __rsub__(self, o):
        return _Dev(o - self.v, -self.d)

    def __neg__(self):
        return _Dev(-self.v, -self.d)

    def __mul__(self, o):
        v, d = _Dev.split(o)
        return _Dev(self.v * v, (self.v + self.d) * d + self.d * v)

    def __rmul__(self, o):
        return _Dev(o * self.v, o * self.d)


class _DeviationNamespace:
    r"""Namespace over :class:`_Dev` pairs: running a cell's forward in it from
    :math:`(h_{t-1}, e_{t-1})` gives :math:`(h_t, e_t)` in structured form,
    every activation as :math:`\phi(a + \delta) - \phi(a)` and every gated
    update split as
    :math:`\Delta\,\mathrm{lerp} = (1-f)\Delta h + \Delta f(c - h) + f\Delta c
    + \Delta f(\Delta c - \Delta h)`.

    With ``free`` (a list of symbol pairs, filled on first use), activations
    return free symbols :math:`(y, \Delta y)` instead (for the proofs).
    Records every activation ``(name, argument, output)`` in ``acts`` and every
    gated update ``(h, c, f, out, bilinear)`` in ``lerps``.
    """

    def __init__(self, free: list | None = None):
        self.free = free
        self.acts, self.lerps = [], []

    def _act(self, name, fun, a):
        v, d = _Dev.split(a)
        if self.free is None:
            y = fun(v)
            out = _Dev(y, fun(v + d) - y)
        else:
            i = len(self.acts)
            k = len(np.asarray(v).reshape(-1))
            out = _Dev(_array([sp.Dummy(f"y{i}_{j}", real=True) for j in range(k)]),
                       _array([sp.Dummy(f"Dy{i}_{j}", real=True) for j in range(k)]))
            self.free.append(out)
        self.acts.append((name, a, out))
        return out

    def tanh(self, a):
        return self._act("tanh", _stanh, a)

    def sigmoid(self, a):
        return self._act("sigmoid", _ssig, a)

    @staticmethod
    def matvec(A, v):
        v, d = _Dev.split(v)
        return v @ A.T if isinstance(d, int) else _Dev(v @ A.T, d @ A.T)

    def lerp(self, h, c, f):
        (hv, e), (cv, dc), (fv, df) = _Dev.split(h), _Dev.split(c), _Dev.split(f)
        bilinear = df * (dc - e)
        out = _Dev(SYMPY.lerp(hv, cv, fv), (1 - fv) * e + df * (cv - hv) + fv * dc + bilinear)
        self.lerps.append((h, c, f, out, bilinear))
        return out

    @staticmethod
    def asarray(A):
        return _array(A)

    @staticmethod
    def split(a, sections):
        v, d = _Dev.split(a)
        vs = _split(v, sections)
        ds = _split(d, sections) if np.ndim(d) else (d,) * len(vs)
        return tuple(_Dev(x, y) for x, y in zip(vs, ds))

    @staticmethod
    def concat(parts):
        vs, ds = zip(*(_Dev.split(p) for p in parts))
        ds = [np.zeros_like(np.asarray(v)) if not np.ndim(d) else d for v, d in zip(vs, ds)]
        return _Dev(_concat(vs), _concat(ds))


class _FreeNamespace(SympyNamespace):
    """The sympy namespace with the i-th activation replaced by the free
    symbols ``y_i + Dy_i`` of a :class:`_DeviationNamespace` run (recorded)."""

    def __init__(self, free: list):
        super().__init__([])
        self.free = free

    def _act(self, name, fun, a):
        o = self.free[len(self.record)]
        out = o.v + o.d
        self.record.append((name, a, out))
        return out


def _dev_rec(P, dW):
    r"""``rec`` for a :class:`_Dev` regressor :math:`(a, \Delta a)`:
    :math:`(W a,\ W'\Delta a + \Delta W a)`, :math:`W' = W + \Delta W`."""
    def rec(k, a):
        v, d = _Dev.split(a)
        Wp = P[k] + dW[k]
        return _Dev(v @ P[k].T, d @ Wp.T + v @ dW[k].T)
    return rec


@dataclass(frozen=True, eq=False)
class DeviationRecursion:
    r"""The exact one-step deviation map and its structured form.

    Attributes
    ----------
    cell : SymbolicCell
    exact : sympy.Matrix, shape (n, 1)
        :math:`e_t = h'_t - h_t` written directly as
        :math:`F(W';h+e,x) - F(W;h,x)`.
    structured : sympy.Matrix, shape (n, 1)
        The same map from the cell's forward with every activation written as
        :math:`\phi(a+\delta) - \phi(a)` and every gated update split into
        gate and candidate deviations (``tanh(a+δ) − tanh(a)`` for the Elman
        RNN, the gate/candidate split of the module docstring for the MGRU).
    terms : dict of str to sympy.Matrix
        Named pieces: for the activation whose output is the new state ``a``,
        ``delta``; for the one giving the intermediate ``k``: ``a_k``,
        ``delta_k``, ``k`` (its value) and ``Dk`` (its deviation); for a gated
        update ``bilinear``, :math:`\Delta f \odot (\Delta c - e)`. Elman:
        ``a``, ``delta``; MGRU: ``a_f``, ``delta_f``, ``f``, ``Df``, ``a_c``,
        ``delta_c``, ``c``, ``Dc``, ``bilinear``.
    proofs : dict of str to bool
        Each identity that makes ``exact == structured``, checked by sympy
        (``expand(lhs - rhs) == 0``) with the activation values as free
        symbols: ``"a_k' = a_k + delta_k"`` for each activation (its argument
        in the perturbed step), ``"gate/candidate split"`` for each gated
        update, and ``"exact == structured"`` for the whole step.
    """

    cell: SymbolicCell
    exact: sp.Matrix
    structured: sp.Matrix
    terms: dict
    proofs: dict

    @property
    def proved(self) -> bool:
        return all(self.proofs.values())


def _is_zero(M) -> bool:
    return all(sp.expand(v) == 0 for v in M)


def _deviation_run(sc, ns):
    """The cell's forward over a deviation namespace from (h, e) with dW."""
    P = {k: _array(sc.params[k], s) for k, s in sc.shapes.items()}
    dW = {k: _array(v) for k, v in sc.dW.items()}
    h = _Dev(_array(sc.h), _array(sc.e))
    return sc.cell_type.forward(ns, P, h, _array(sc.x), _dev_rec(P, dW))


@lru_cache(maxsize=None)
def deviation_recursion(kind: str, n: int = 2, m: int = 1) -> DeviationRecursion:
    r"""Derive the exact deviation recursion of one cell type from its forward.

    The structured form is the cell's forward run on (value, deviation) pairs
    (:class:`_DeviationNamespace`). It is proved equal to
    :math:`F(W';h+e,x) - F(W;h,x)` by polynomial identities in which every
    activation value :math:`y = \phi(a)` and its deviation :math:`\Delta y` are
    free symbols (``proofs``): the argument of each activation in the
    perturbed step is :math:`a + \delta`, and the perturbed step minus the
    nominal one is the structured deviation; substituting
    :math:`y = \phi(a)`, :math:`\Delta y = \phi(a+\delta) - \phi(a)` in call
    order then gives ``exact == structured``.
    """
    sc = symbolic_cell(kind, n, m)
    exact = sc.perturbed_step() - sc.step()
    ns = _DeviationNamespace()
    out, aux = _deviation_run(sc, ns)
    structured = _col(out.d)
    terms = {}
    for s, (_, a, o) in zip(_activation_names(ns.acts, out, aux), ns.acts):
        terms["a" + s], terms["delta" + s] = map(_col, np.broadcast_arrays(*_Dev.split(a)))
        if s:
            terms[s[1:]], terms["D" + s[1:]] = _col(o.v), _col(o.d)
    for j, (*_, bilinear) in enumerate(ns.lerps):
        terms["bilinear" + (f"_{j}" if j else "")] = _col(bilinear)

    # proofs: the same runs with the activation values as free symbols
    free = []
    fns = _DeviationNamespace(free)
    fout, faux = _deviation_run(sc, fns)
    pns = _FreeNamespace(free)
    moved = {k: sc.params[k] + sc.dW[k] for k in sc.recurrent_names}
    pout, _ = sc._forward(pns, sc.h + sc.e, None, moved)
    proofs = {}
    for s, (_, a, _), (_, ap, _) in zip(_activation_names(fns.acts, fout, faux), fns.acts,
                                         pns.record):
        av, ad = _Dev.split(a)
        proofs[f"a{s}' = a{s} + delta{s}"] = _is_zero(np.asarray(ap - (av + ad)).reshape(-1))
    for j, (h, c, f, o, _) in enumerate(fns.lerps):
        (hv, e), (cv, dc), (fv, df) = _Dev.split(h), _Dev.split(c), _Dev.split(f)
        lhs = SYMPY.lerp(hv + e, cv + dc, fv + df) - SYMPY.lerp(hv, cv, fv)
        proofs["gate/candidate split" + (f" {j}" if j else "")] = _is_zero(
            np.asarray(lhs - o.d).reshape(-1))
    proofs["exact == structured"] = _is_zero(np.asarray(pout - (fout.v + fout.d)).reshape(-1))
    return DeviationRecursion(sc, exact, structured, terms, proofs)


@lru_cache(maxsize=None)
def first_order_recursion(kind: str, n: int = 2, m: int = 1) -> dict:
    r"""The first-order (tangent-linear) recursion, derived from the exact one.

    Scales :math:`e_{t-1} \to \varepsilon\ell_{t-1}`, :math:`\Delta W\to\varepsilon\Delta W`
    and differentiates the exact deviation map at :math:`\varepsilon = 0`.

    Returns
    -------
    dict with
        ``ell`` : sympy.Matrix (n, 1), :math:`\ell_t` in terms of :math:`\ell_{t-1}`
        (the symbols of ``cell.e``) and :math:`\Delta W` (``cell.dW``);
        ``jacobian`` : the step Jacobian (n, n); ``forcing`` : the directional
        derivative (n, 1); ``proved`` : bool, ``ell == J ℓ + forcing`` checked
        by sympy.
    """
    rec = deviation_recursion(kind, n, m)
    sc = rec.cell
    eps = sp.Symbol("varepsilon_")
    sub = {s: eps * s for s in list(sc.e) + [v for k in sc.recurrent_names for v in sc.dW[k]]}
    ell = sp.diff(rec.structured.xreplace(sub), eps).subs(eps, 0)
    J = sc.jacobian()
    forcing = sc.directional()
    return {"ell": ell, "jacobian": J, "forcing": forcing,
            "proved": _is_zero(ell - J * sc.e - forcing)}


# ------------------------------------------------------------- sharp constants
@dataclass(frozen=True, eq=False)
class SupResult:
    r"""Exact supremum of :math:`|\phi^{(k)}|` over the real line.

    Attributes
    ----------
    func : str
    order : int
    value : sympy expression
        The exact supremum.
    argmax : tuple of sympy expressions
        The points a where it is attained (empty if only approached at ±∞).
    critical_y : tuple
        Roots of :math:`\phi^{(k+1)} = 0` in terms of :math:`y = \phi(a)`.
    polynomial : sympy expression
        :math:`\phi^{(k)}` as a polynomial in :math:`y = \phi(a)`.
    """

    func: str
    order: int
    value: sp.Expr
    argmax: tuple
    critical_y: tuple
    polynomial: sp.Expr

    def __float__(self) -> float:
        return float(self.value)


_Y = sp.Symbol("y", real=True)
_FUNCS = {
    # first derivative as a polynomial in y = phi(a), the range of y, and a(y)
    "tanh": (1 - _Y ** 2, (-1, 1), lambda y: sp.atanh(y)),
    "sigmoid": (_Y * (1 - _Y), (0, 1), lambda y: sp.log(y / (1 - y))),
}


def _derivative_poly(func: str, order: int) -> sp.Expr:
    d1 = _FUNCS[func][0]
    p = _Y
    for _ in range(order):
        p = sp.expand(sp.diff(p, _Y) * d1)   # chain rule: d/da P(y) = P'(y) y'(a)
    return p


@lru_cache(maxsize=None)
def sup_abs_derivative(func: str, order: int) -> SupResult:
    r"""Exact :math:`\sup_a |\phi^{(k)}(a)|` for :math:`\phi \in \{\tanh, \sigma\}`.

    Every derivative of tanh and of the logistic function is a polynomial
    :math:`P_k(y)` in :math:`y = \phi(a)`, and :math:`y` sweeps an open interval
    (:math:`(-1,1)` or :math:`(0,1)`) monotonically. The supremum is therefore
    reached at a root of :math:`P_k'(y)`, i.e. where :math:`\phi^{(k+1)}(a) = 0`
    (for k = 2 and tanh: solving :math:`\tanh''' = 0`), or approached at the
    ends of the interval; sympy solves for the roots exactly.

    Parameters
    ----------
    func : {'tanh', 'sigmoid'}
    order : int, 1..6
    """
    if func not in _FUNCS:
        raise ValueError(f"func: expected 'tanh' or 'sigmoid', found {func!r}")
    order = check_int("order", order, low=1, high=6)
    P = _derivative_poly(func, order)
    lo, hi = _FUNCS[func][1]
    roots = [r for r in sp.solve(sp.diff(P, _Y), _Y) if r.is_real and lo < r < hi]
    cands = [(sp.Abs(P.subs(_Y, r)), r) for r in roots]
    ends = [sp.Abs(P.subs(_Y, lo)), sp.Abs(P.subs(_Y, hi))]
    best = max([c for c, _ in cands] + ends, key=lambda v: float(v))
    best = sp.radsimp(sp.nsimplify(sp.simplify(best)))
    arg = tuple(sp.simplify(_FUNCS[func][2](r)) for c, r in cands
                if sp.simplify(c - best) == 0)
    return SupResult(func, order, best, arg, tuple(roots), P)


def remainder_constants() -> dict:
    r"""The sharp constants used by the remainders, as exact sympy numbers.

    Keys ``'tanh1'`` (1), ``'tanh2'`` (:math:`4/(3\sqrt3)`), ``'tanh3'`` (2),
    ``'sigmoid1'`` (1/4), ``'sigmoid2'`` (:math:`1/(6\sqrt3)`),
    ``'sigmoid3'`` (1/8): the suprema of the absolute k-th derivatives.
    """
    return {f"{f}{k}": sup_abs_derivative(f, k).value
            for f in ("tanh", "sigmoid") for k in (1, 2, 3)}


def taylor_remainder_extremum(func: str = "tanh") -> dict:
    r"""Where the first-order Taylor remainder can peak on an interval.

    For :math:`r_a(\delta) = \phi(a+\delta) - \phi(a) - \phi'(a)\delta`,
    :math:`r_a'(\delta) = \phi'(a+\delta) - \phi'(a)`, and :math:`\phi'` is even
    and strictly decreasing in :math:`|a|` for tanh and σ (about 0); so
    :math:`r_a' = 0` only at :math:`\delta = 0` and :math:`\delta = -2a`. The
    largest :math:`|r_a|` over an interval of δ is thus at an end point or at
    :math:`\delta = -2a` when it lies inside.

    Returns
    -------
    dict with ``remainder`` (sympy expression in ``a``, ``delta``),
    ``stationary`` (the solutions of :math:`r_a'(\delta)=0` found by sympy,
    in δ), ``value_at_minus_2a`` (:math:`r_a(-2a)`, simplified).
    """
    if func not in _FUNCS:
        raise ValueError(f"func: expected 'tanh' or 'sigmoid', found {func!r}")
    a, d = sp.symbols("a delta", real=True)
    phi = sp.tanh if func == "tanh" else sigmoid
    r = phi(a + d) - phi(a) - sp.diff(phi(a), a) * d
    dr = sp.diff(r, d)
    # φ'(a+δ) = φ'(a) ⇔ P1(φ(a+δ)) = P1(φ(a)); P1 is an even-shaped quadratic in y:
    # solve in terms of the value u = φ(a+δ), then map back through monotone φ.
    P1 = _FUNCS[func][0]
    u, v = sp.symbols("u v", real=True)
    sols_u = sp.solve(sp.Eq(P1.subs(_Y, u), P1.subs(_Y, v)), u)   # u = v or the mirror value
    mirror = [s for s in sols_u if sp.simplify(s - v) != 0]
    stationary = [sp.Integer(0)]
    for s in mirror:
        # the mirror value of φ(a) is φ(-a) (tanh odd, σ(-a) = 1 - σ(a)); φ is
        # strictly increasing, so φ(a+δ) = φ(-a) ⇔ δ = -2a
        same = sp.simplify((s.subs(v, phi(a)) - phi(-a)).rewrite(sp.exp)) == 0
        if same:
            stationary.append(-2 * a)
    val = sp.simplify(r.subs(d, -2 * a))
    return {"remainder": r, "derivative": dr, "stationary": tuple(stationary),
            "value_at_minus_2a": val, "a": a, "delta": d}


# ------------------------------------------------------- accumulation closed forms
@dataclass(frozen=True, eq=False)
class Accumulation:
    r"""Closed forms of the scalar model :math:`\ell_t = \lambda\ell_{t-1} + \varepsilon f_t`,
    :math:`\ell_0 = 0`.

    Attributes
    ----------
    lam, eps, t : sympy symbols
    coherent : :math:`\varepsilon(1-\lambda^t)/(1-\lambda)` (``f_t = 1``)
    coherent_at_1 : :math:`\varepsilon t`
    incoherent_var : :math:`\varepsilon^2(1-\lambda^{2t})/(1-\lambda^2)` (i.i.d. unit-variance f)
    incoherent_var_at_1 : :math:`\varepsilon^2 t`
    frozen_fresh_ratio : :math:`C_t = (1+\lambda)(1-\lambda^t)/((1-\lambda)(1+\lambda^t))`,
        the ratio of E ℓ_t² for one frozen draw ε ~ N(0, s²) times a constant
        forcing, to fresh draws at every step
    ratio_at_1 : t
    ratio_limit : :math:`(1+\lambda)/(1-\lambda)`, the t → ∞ limit for |λ| < 1
    """

    lam: sp.Symbol
    eps: sp.Symbol
    t: sp.Symbol
    coherent: sp.Expr
    coherent_at_1: sp.Expr
    incoherent_var: sp.Expr
    incoherent_var_at_1: sp.Expr
    frozen_fresh_ratio: sp.Expr
    ratio_at_1: sp.Expr
    ratio_limit: sp.Expr

    def numeric(self, name: str):
        """NumPy function ``(lam, t, eps) -> value`` of the named closed form."""
        expr = getattr(self, name)
        return sp.lambdify((self.lam, self.t, self.eps), expr, "numpy")


@lru_cache(maxsize=None)
def scalar_accumulation() -> Accumulation:
    r"""Solve the scalar coherent/incoherent recursions with ``sympy.rsolve``.

    Coherent (constant forcing): :math:`\ell_t = \lambda\ell_{t-1} + \varepsilon`.
    Incoherent (i.i.d. zero-mean unit-variance :math:`f_t`): the variance obeys
    :math:`v_t = \lambda^2 v_{t-1} + \varepsilon^2`. Frozen versus fresh: with
    :math:`f_t = \eta h`, one draw η held for all t gives
    :math:`E\ell_t^2 = s^2h^2 S_t^2`, fresh draws give :math:`s^2 h^2 V_t`.
    """
    lam = sp.Symbol("lambda", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    t = sp.Symbol("t", integer=True, positive=True)
    ell = sp.Function("ell")
    coh = sp.factor(sp.rsolve(ell(t) - lam * ell(t - 1) - eps, ell(t), {ell(0): 0}))
    var = sp.factor(sp.rsolve(ell(t) - lam ** 2 * ell(t - 1) - eps ** 2, ell(t), {ell(0): 0}))
    ratio = sp.factor(sp.simplify(coh ** 2 / var))
    lim = sp.factor(sp.simplify(ratio.subs(lam ** t, 0)))   # |λ| < 1: λ^t → 0
    return Accumulation(lam, eps, t, coh, sp.limit(coh, lam, 1), var, sp.limit(var, lam, 1),
                        ratio, sp.limit(ratio, lam, 1), lim)


@lru_cache(maxsize=None)
def diagonal_accumulation(n: int = 2) -> dict:
    r"""Frozen versus fresh noise through a diagonal propagator.

    Model: :math:`\ell_t = \Lambda \ell_{t-1} + \Delta W h`, :math:`\Lambda =
    \operatorname{diag}(\lambda_1..\lambda_n)`, constant :math:`h` (a coherent,
    delay-period trajectory), :math:`\Delta W` with i.i.d. :math:`N(0, s^2)`
    entries, so each forcing component is :math:`N(0, s^2\|h\|^2)`.

    Returns
    -------
    dict of sympy expressions in ``lams`` (tuple of symbols), ``t``, ``s``,
    ``hnorm``: ``frozen`` (E‖ℓ_t‖², one draw), ``fresh`` (a new draw every
    step), ``ratio`` (frozen / fresh), ``ratio_at_1`` (every λ_i → 1: t).
    """
    n = check_int("n", n, low=1, high=16)
    acc = scalar_accumulation()
    lams = sp.symbols(f"lambda_1:{n + 1}", real=True)
    s, hn = sp.symbols("s hnorm", positive=True)
    t = acc.t
    frozen = s ** 2 * hn ** 2 * sum((acc.coherent / acc.eps).subs(acc.lam, l) ** 2 for l in lams)
    fresh = s ** 2 * hn ** 2 * sum((acc.incoherent_var / acc.eps ** 2).subs(acc.lam, l)
                                   for l in lams)
    ratio = frozen / fresh
    at1 = ratio
    for l in lams:
        at1 = sp.limit(at1, l, 1)
    return {"lams": lams, "t": t, "s": s, "hnorm": hn, "frozen": frozen, "fresh": fresh,
            "ratio": ratio, "ratio_at_1": sp.simplify(at1)}


@lru_cache(maxsize=None)
def ar_stationary_variance() -> dict:
    r"""Stationary variance of :math:`\ell_t = \lambda\ell_{t-1} + \varepsilon f_t`
    for AR(1) forcing :math:`f_t = r f_{t-1} + \sqrt{1-r^2}\,\xi_t` (unit
    variance, correlation :math:`r^{|k|}`; coherence time :math:`-1/\log r`).

    Solves the 2×2 Lyapunov equation :math:`\Sigma = A\Sigma A^\top + Q` of the
    augmented state :math:`(\ell_t, f_t)` in sympy:
    :math:`\operatorname{Var}\ell = \varepsilon^2 (1+\lambda r)/((1-\lambda^2)(1-\lambda r))`,
    which interpolates between the incoherent :math:`\varepsilon^2/(1-\lambda^2)`
    (r = 0) and the coherent :math:`\varepsilon^2/(1-\lambda)^2` (r → 1).
    """
    lam, r = sp.symbols("lambda r", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    # augmented state z_t = (ell_t, f_t): f_t = r f_{t-1} + q ξ_t, ell_t = λ ell_{t-1} + ε f_t
    q = sp.sqrt(1 - r ** 2)
    A = sp.Matrix([[lam, eps * r], [0, r]])
    G = sp.Matrix([eps * q, q])
    a, b, c = sp.symbols("S_ll S_lf S_ff")
    S = sp.Matrix([[a, b], [b, c]])
    eqs = list(S - A * S * A.T - G * G.T)
    sol = sp.solve(eqs[:2] + eqs[3:], [a, b, c], dict=True)[0]
    var = sp.factor(sp.simplify(sol[a]))
    return {"lam": lam, "r": r, "eps": eps, "variance": var,
            "incoherent": sp.simplify(var.subs(r, 0)),
            "coherent": sp.factor(sp.limit(var, r, 1))}


@lru_cache(maxsize=None)
def ar_response() -> dict:
    r"""Finite-t closed form of :math:`\mathbb E\ell_t^2/\varepsilon^2` for
    :math:`\ell_t = \lambda\ell_{t-1} + \varepsilon f_t`, :math:`\ell_0 = 0`,
    :math:`\mathbb E f_k f_l = r^{|k-l|}`:

    .. math::
        \sum_{k,l=1}^{t}\lambda^{2t-k-l} r^{|k-l|}
        = \sum_{u=0}^{t-1}\lambda^{2u}
          + 2\sum_{u=0}^{t-1}\sum_{d=1}^{t-1-u}\lambda^{2u}(\lambda r)^d ,

    summed by sympy (``u = t - l``, ``d = l - k``); a ``Piecewise`` with the
    degenerate cases (:math:`\lambda = r = 1` gives :math:`t^2`).

    Returns
    -------
    dict with ``lam``, ``r``, ``t`` (symbols), ``expr`` and ``numeric``
    (NumPy function ``(lam, r, t)``, for :math:`\lambda \ne 1`, :math:`r \ne \lambda`).
    """
    lam, r, q = sp.symbols("lambda r q", positive=True)
    t = sp.Symbol("t", integer=True, positive=True)
    u, d = sp.symbols("u d", integer=True, nonnegative=True)
    diag = sp.summation(lam ** (2 * u), (u, 0, t - 1))
    # sum in q = λr, so that no r^{-t} factor appears (it overflows numerically)
    off = sp.summation(sp.summation(lam ** (2 * u) * q ** d, (d, 1, t - 1 - u)), (u, 0, t - 1))
    expr = sp.simplify(diag + 2 * off)
    generic = expr.args[-1][0] if isinstance(expr, sp.Piecewise) else expr
    return {"lam": lam, "r": r, "t": t, "expr": expr.subs(q, lam * r),
            "numeric": sp.lambdify((lam, r, t), generic.subs(q, lam * r), "numpy")}


# --------------------------------------------------------------- lambdify bridge
def _param_values(sc: SymbolicCell, cell_or_params) -> list[np.ndarray]:
    if isinstance(cell_or_params, dict):
        P = cell_or_params
    else:
        if not isinstance(cell_or_params, sc.cell_type):
            found = getattr(cell_or_params, "kind", type(cell_or_params).__name__)
            raise ValueError(f"cell: expected a {sc.kind!r} cell, found {found!r}")
        P = cell_or_params.params
    names = list(sc.shapes)
    missing = [k for k in names if k not in P]
    if missing:
        raise ValueError(f"params: expected {names}, missing {missing}")
    return [np.asarray(P[k], dtype=float).ravel() for k in names]


def _bridge(kind, n, m, expr, extras, vector=True):
    sc = symbolic_cell(kind, n, m)
    N = len(sc.h)                      # the state size (2n for the LSTM)
    f = sp.lambdify(sc.symbols(extras=extras), expr, modules=NUMPY_MODULES, cse=True)

    def call(cell, h, x, e=None, dW=None):
        pv = _param_values(sc, cell)
        h = np.asarray(h, dtype=float)
        x = np.asarray(x, dtype=float)
        single = h.ndim == 1
        h2, x2 = np.atleast_2d(h), np.atleast_2d(x)
        if h2.shape[1] != N or x2.shape[1] != m or h2.shape[0] != x2.shape[0]:
            raise ValueError(f"h, x: expected shapes (B, {N}) and (B, {m}), "
                             f"found {h.shape} and {x.shape}")
        if extras:
            e2 = np.zeros_like(h2) if e is None else np.atleast_2d(np.asarray(e, float))
            dW = dW or {}
            dWv = [np.asarray(dW.get(k, np.zeros((n, n))), float).ravel()
                   for k in sc.recurrent_names]
        out = []
        for i in range(h2.shape[0]):
            args = [v for p in pv for v in p] + list(h2[i]) + list(x2[i])
            if extras:
                args += list(e2[i]) + [v for d in dWv for v in d]
            out.append(np.asarray(f(*args), dtype=float))
        out = np.array(out)
        if vector:
            out = out.reshape(out.shape[0], N)
        return out[0] if single else out

    return call


@lru_cache(maxsize=None)
def numeric_step(kind: str, n: int, m: int = 1):
    """NumPy function ``step(cell, h, x) -> h_t`` generated from the symbolic cell.
    ``cell`` may be a cell or a parameter dict; h (B, n) or (n,), x (B, m) or (m,)."""
    return _bridge(kind, n, m, symbolic_cell(kind, n, m).step(), False)


@lru_cache(maxsize=None)
def numeric_jacobian(kind: str, n: int, m: int = 1):
    r"""NumPy function ``jac(cell, h, x) -> J`` (shape (B, n, n) or (n, n)),
    generated by ``lambdify`` from the symbolic step Jacobian."""
    return _bridge(kind, n, m, symbolic_cell(kind, n, m).jacobian(), False, vector=False)


@lru_cache(maxsize=None)
def numeric_jvp(kind: str, n: int, m: int = 1):
    r"""NumPy function ``jvp(cell, h, x, dh, dW) -> dh_t`` from the derived
    first-order recursion :math:`\ell_t = J\ell_{t-1} + (\partial h_t/\partial W)[\Delta W]`."""
    fo = first_order_recursion(kind, n, m)
    return _bridge(kind, n, m, fo["ell"], True)


@lru_cache(maxsize=None)
def numeric_deviation_step(kind: str, n: int, m: int = 1):
    r"""NumPy function ``dev(cell, h, x, e, dW) -> e_t`` evaluating the
    *structured* exact deviation map (``tanh(a+δ) − tanh(a)`` or the MGRU
    split) at :math:`h_{t-1}`, :math:`x_t`, :math:`e_{t-1}` and :math:`\Delta W`."""
    return _bridge(kind, n, m, deviation_recursion(kind, n, m).structured, True)
