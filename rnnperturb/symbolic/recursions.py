r"""Symbolic (sympy) layer: cells, deviation recursions, sharp constants, closed forms.

Everything the numeric code relies on is derived here once, in sympy, and can
be turned back into NumPy code with :func:`numeric_step`,
:func:`numeric_jacobian`, :func:`numeric_jvp` and
:func:`numeric_deviation_step` (a ``lambdify`` bridge), so that the numeric
cells in :mod:`rnnperturb.cells` are checked against the derivation.

Symbolic cells (:func:`symbolic_cell`) have explicit entry symbols for small
``n`` (``W_0_1`` ...), so Jacobians, directional derivatives and the exact
deviation recursion are explicit sympy matrices.

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
from rnnperturb.cells import CELL_TYPES
from rnnperturb.cells import sigmoid as _np_sigmoid

__all__ = [
    "sigmoid", "SymbolicCell", "symbolic_cell",
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


_NUMPY_MODULES = [{"sigmoid": _np_sig}, "numpy"]


# ---------------------------------------------------------------------- cells
def _matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}_{j}", real=True))


def _vector(name: str, rows: int) -> sp.Matrix:
    return sp.Matrix(rows, 1, lambda i, j: sp.Symbol(f"{name}_{i}", real=True))


def _tanh(v: sp.Matrix) -> sp.Matrix:
    return v.applyfunc(sp.tanh)


def _sig(v: sp.Matrix) -> sp.Matrix:
    return v.applyfunc(sigmoid)


def _had(a: sp.Matrix, b: sp.Matrix) -> sp.Matrix:
    return a.multiply_elementwise(b)


_SHAPES = {
    "elman": {"W": "nn", "U": "nm", "b": "n"},
    "mgru": {"Wf": "nn", "Uf": "nm", "bf": "n", "Wh": "nn", "Uh": "nm", "bh": "n"},
}


@dataclass(frozen=True, eq=False)
class SymbolicCell:
    r"""A cell with explicit symbolic entries.

    Attributes
    ----------
    kind : {'elman', 'mgru'}
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
    def recurrent_names(self) -> tuple[str, ...]:
        return CELL_TYPES[self.kind].recurrent_names

    def step(self, h: sp.Matrix | None = None, x: sp.Matrix | None = None,
             **params: sp.Matrix) -> sp.Matrix:
        r"""The symbolic step :math:`h_t` from ``h`` (default :attr:`h`) and
        ``x``, with any parameter replaced by keyword (e.g. ``W=W + dW``)."""
        h = self.h if h is None else h
        x = self.x if x is None else x
        P = dict(self.params)
        P.update(params)
        if self.kind == "elman":
            return _tanh(P["W"] * h + P["U"] * x + P["b"])
        f, c = self.gates(h, x, **params)
        return _had(sp.ones(self.n, 1) - f, h) + _had(f, c)

    def gates(self, h=None, x=None, **params):
        """MGRU gate and candidate ``(f_t, c_t)``."""
        if self.kind != "mgru":
            raise ValueError(f"gates: expected an 'mgru' symbolic cell, found {self.kind!r}")
        h = self.h if h is None else h
        x = self.x if x is None else x
        P = dict(self.params)
        P.update(params)
        f = _sig(P["Wf"] * h + P["Uf"] * x + P["bf"])
        c = _tanh(P["Wh"] * _had(f, h) + P["Uh"] * x + P["bh"])
        return f, c

    def preactivation(self, h=None, x=None, **params):
        """Elman preactivation :math:`a_t = W h_{t-1} + U x_t + b`."""
        if self.kind != "elman":
            raise ValueError(
                f"preactivation: expected an 'elman' symbolic cell, found {self.kind!r}")
        h = self.h if h is None else h
        x = self.x if x is None else x
        P = dict(self.params)
        P.update(params)
        return P["W"] * h + P["U"] * x + P["b"]

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
        for name in _SHAPES[self.kind]:
            out += list(self.params[name])
        out += list(self.h) + list(self.x)
        if extras:
            out += list(self.e)
            for k in self.recurrent_names:
                out += list(self.dW[k])
        return out


@lru_cache(maxsize=None)
def symbolic_cell(kind: str, n: int, m: int = 1) -> SymbolicCell:
    """Build the symbolic cell of kind ``'elman'`` or ``'mgru'`` with hidden size
    ``n`` and input size ``m`` (keep n ≤ 4: the expressions grow fast)."""
    if kind not in _SHAPES:
        raise ValueError(f"kind: expected one of {sorted(_SHAPES)}, found {kind!r}")
    n = check_int("n", n, low=1, high=8)
    m = check_int("m", m, low=1, high=8)
    params = {}
    for name, shape in _SHAPES[kind].items():
        if shape == "nn":
            params[name] = _matrix(name, n, n)
        elif shape == "nm":
            params[name] = _matrix(name, n, m)
        else:
            params[name] = _vector(name, n)
    dW = {k: _matrix("d" + k, n, n) for k in CELL_TYPES[kind].recurrent_names}
    return SymbolicCell(kind, n, m, params, _vector("h", n), _vector("x", m), dW, _vector("e", n))


# ------------------------------------------------------------ deviation recursion
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
        The same map in the form of the module docstring (``tanh(a+δ) − tanh(a)``
        or the MGRU gate/candidate split).
    terms : dict of str to sympy.Matrix
        Named pieces: ``a``, ``delta`` (Elman); ``a_f``, ``delta_f``, ``a_c``,
        ``delta_c``, ``Df``, ``Dc``, ``bilinear`` (MGRU).
    proofs : dict of str to bool
        Each identity that makes ``exact == structured``, checked by sympy
        (``expand(lhs - rhs) == 0``).
    """

    cell: SymbolicCell
    exact: sp.Matrix
    structured: sp.Matrix
    terms: dict
    proofs: dict

    @property
    def proved(self) -> bool:
        return all(self.proofs.values())


def _is_zero(M: sp.Matrix) -> bool:
    return all(sp.expand(v) == 0 for v in M)


@lru_cache(maxsize=None)
def deviation_recursion(kind: str, n: int = 2, m: int = 1) -> DeviationRecursion:
    r"""Derive the exact deviation recursion of one cell type.

    The structured form is proved equal to :math:`F(W';h+e,x) - F(W;h,x)` by
    checking, with sympy, the polynomial identities between the arguments of
    the nonlinearities (``proofs``); the nonlinearities themselves then agree
    trivially.
    """
    sc = symbolic_cell(kind, n, m)
    h, x, e = sc.h, sc.x, sc.e
    P, dW = sc.params, sc.dW
    exact = sc.perturbed_step() - sc.step()
    if kind == "elman":
        Wp = P["W"] + dW["W"]
        a = P["W"] * h + P["U"] * x + P["b"]
        delta = Wp * e + dW["W"] * h
        structured = _tanh(a + delta) - _tanh(a)
        # the argument of tanh in h'_t is W'(h+e)+Ux+b; prove it equals a + δ
        proofs = {"a' = a + delta": _is_zero(Wp * (h + e) + P["U"] * x + P["b"] - (a + delta))}
        # the tanh arguments in exact and structured must then be identical after expansion
        proofs["exact == structured"] = all(
            sp.expand(ex.args[0] - st.args[0]) == 0
            for ex, st in zip(sc.perturbed_step(), _tanh(a + delta)))
        terms = {"a": a, "delta": delta}
        return DeviationRecursion(sc, exact, structured, terms, proofs)

    Wfp, Whp = P["Wf"] + dW["Wf"], P["Wh"] + dW["Wh"]
    a_f = P["Wf"] * h + P["Uf"] * x + P["bf"]
    f = _sig(a_f)
    a_c = P["Wh"] * _had(f, h) + P["Uh"] * x + P["bh"]
    c = _tanh(a_c)
    delta_f = Wfp * e + dW["Wf"] * h
    Df = _sig(a_f + delta_f) - f
    delta_c = Whp * (_had(f + Df, e) + _had(Df, h)) + dW["Wh"] * _had(f, h)
    Dc = _tanh(a_c + delta_c) - c
    one = sp.ones(n, 1)
    bilinear = _had(Df, Dc - e)
    structured = _had(one - f, e) + _had(Df, c - h) + _had(f, Dc) + bilinear
    # proofs with Δf, Δc, f, c as free symbols: the gate/candidate split is a polynomial identity
    Fs, Cs = _vector("f", n), _vector("c", n)
    dFs, dCs = _vector("Df", n), _vector("Dc", n)
    lhs = _had(one - Fs - dFs, h + e) + _had(Fs + dFs, Cs + dCs) - (_had(one - Fs, h) + _had(Fs, Cs))
    rhs = _had(one - Fs, e) + _had(dFs, Cs - h) + _had(Fs, dCs) + _had(dFs, dCs - e)
    proofs = {"gate/candidate split": _is_zero(lhs - rhs)}
    proofs["a_f' = a_f + delta_f"] = _is_zero(
        Wfp * (h + e) + P["Uf"] * x + P["bf"] - (a_f + Wfp * e + dW["Wf"] * h))
    # candidate argument: W_h'((f+Δf)⊙(h+e)) + U_h x + b_h = a_c + δ_c, with f, Δf free
    ac_free = P["Wh"] * _had(Fs, h) + P["Uh"] * x + P["bh"]
    dc_free = Whp * (_had(Fs + dFs, e) + _had(dFs, h)) + dW["Wh"] * _had(Fs, h)
    proofs["a_c' = a_c + delta_c"] = _is_zero(
        Whp * _had(Fs + dFs, h + e) + P["Uh"] * x + P["bh"] - (ac_free + dc_free))
    terms = {"a_f": a_f, "delta_f": delta_f, "a_c": a_c, "delta_c": delta_c,
             "f": f, "c": c, "Df": Df, "Dc": Dc, "bilinear": bilinear}
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
def _param_values(kind: str, cell_or_params) -> list[np.ndarray]:
    if isinstance(cell_or_params, dict):
        P = cell_or_params
    else:
        if getattr(cell_or_params, "kind", None) != kind:
            raise ValueError(f"cell: expected a {kind!r} cell, found "
                             f"{getattr(cell_or_params, 'kind', type(cell_or_params).__name__)!r}")
        P = cell_or_params.params
    missing = [k for k in _SHAPES[kind] if k not in P]
    if missing:
        raise ValueError(f"params: expected {list(_SHAPES[kind])}, missing {missing}")
    return [np.asarray(P[k], dtype=float).ravel() for k in _SHAPES[kind]]


def _bridge(kind, n, m, expr, extras, vector=True):
    sc = symbolic_cell(kind, n, m)
    f = sp.lambdify(sc.symbols(extras=extras), expr, modules=_NUMPY_MODULES, cse=True)

    def call(cell, h, x, e=None, dW=None):
        pv = _param_values(kind, cell)
        h = np.asarray(h, dtype=float)
        x = np.asarray(x, dtype=float)
        single = h.ndim == 1
        h2, x2 = np.atleast_2d(h), np.atleast_2d(x)
        if h2.shape[1] != n or x2.shape[1] != m or h2.shape[0] != x2.shape[0]:
            raise ValueError(f"h, x: expected shapes (B, {n}) and (B, {m}), "
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
            out = out.reshape(out.shape[0], n)
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
