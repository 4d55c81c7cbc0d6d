r"""Global, input-independent bound on the hidden-state deviation.

For a nominal cell and a perturbed copy (recurrent matrices
:math:`W' = W + \Delta W`, all else equal), :func:`global_bound` returns, for
every step :math:`t \le T`, a number :math:`G_t` with

.. math::
    \|h'_t - h_t\|_2 \le G_t \quad\text{for every input sequence with }
    \|x_s\|_2 \le r\ (s \le t)\text{ and every } h_0 \text{ with } \|h_0\|_2 \le \rho_0 ,

where ``r = input_norm`` and :math:`\rho_0` = ``h0_norm`` (0 by default: :math:`h_0 = 0`).
Both cells run from the same :math:`h_0`, so :math:`e_0 = 0`.

**Simple contraction bound (``DESIGN.md`` §2(c)), Elman.** With
:math:`|\tanh'| \le 1` and :math:`\|h\|_2 \le \sqrt n`,

.. math::
    \|e_t\| \le \|W'\|_2 \|e_{t-1}\| + \|\Delta W\|_2 \sqrt n ,
    \qquad \|e_1\| \le \|\Delta W\|_2 \rho_0 ,

capped at :math:`2\sqrt n`. For the MGRU (:math:`f, c, h` in the usual roles,
:math:`|\sigma'| \le 1/4`, :math:`|h|, |c| \le 1`, which needs
:math:`\rho_0 \le 1`) the same chain of triangle inequalities on
:math:`e_t = (1-f')\odot e_{t-1} + f'\odot(c'-c) + (f'-f)\odot(c-h_{t-1})` gives

.. math::
    \|e_t\| \le \Big(1 + \|W_h'\| + \tfrac{2+\|W_h'\|}{4}\|W_f'\|\Big)\|e_{t-1}\|
              + \sqrt n\Big(\|\Delta W_h\| + \tfrac{2+\|W_h'\|}{4}\|\Delta W_f\|\Big),

whose factor is always above 1.

**Refinements** (each one a valid bound on its own; the result is their
minimum, so it is never above the simple bound):

1. *State box.* :math:`|h_{t,i}| \le u_{t,i}` with
   :math:`u_t = \tanh(|b| + |W| u_{t-1} + r\,\|U_{i,:}\|_2)` (Elman; the
   MGRU box takes the largest convex combination of :math:`u_{t-1}` and the
   candidate box over the gate range). Iterated from :math:`u_0 = \rho_0` for the
   time-exact box, and downward from 1 for a box valid at every step
   (``hmax``). The box shrinks the forcing and caps
   :math:`|e_{t,i}| \le u_{t,i} + u'_{t,i}`.
2. *Slopes.* A bound on :math:`|a|` from above bounds :math:`\tanh'(a)` from
   *below*, so it does not shrink slopes. Slopes shrink only where the bias
   dominates: if :math:`|b_i| > R_i` (the radius of the pre-activation range
   of both cells) then :math:`a_i` and :math:`a'_i` share a sign and the secant
   slope is at most :math:`g_i = \tanh'(|b_i| - R_i) < 1`; else :math:`g_i = 1`.
   Then :math:`|e_t| \le G|\delta_t|` elementwise, with
   :math:`\delta_t = W' e_{t-1} + \Delta W h_{t-1} = W e_{t-1} + \Delta W h'_{t-1}`.
3. *Forcing.* :math:`\max_{|h|\le u}\|A h\|_2` (an :math:`\infty\to 2` norm,
   NP-hard in general) is bounded by the least of
   :math:`\sum_j u_j\|A_{:,j}\|_2`, :math:`\|A\|_2\|u\|_2` and the weighted
   bound :math:`\|A\,\mathrm{diag}(u)\,\Omega^{-1/2}\|_2 (\sum_j\omega_j)^{1/2}`
   for positive weights :math:`\omega` (ones, column norms; the dual of the SDP
   relaxation). Elman, per step also :math:`\|A\tilde c_{t-1}\| + \|A\|_2\rho_{t-1}`
   around the input-free centre trajectory :math:`\tilde c_t = \tanh(W\tilde c_{t-1}+b)`,
   :math:`\|h_t - \tilde c_t\| \le \rho_t = \|W\|_2\rho_{t-1} + \|U\|_2 r`
   (tanh is 1-Lipschitz): the better one when :math:`\|U\|_2 r` is small.
4. *Diagonal scaling.* For any positive diagonal :math:`S` (normalised to
   :math:`\min_i s_i = 1`),
   :math:`\|S e_t\| \le \|S G W' S^{-1}\|_2 \|S e_{t-1}\| + \max\|S G\Delta W h\|`
   and :math:`\|e_t\| \le \|S e_t\|`; :math:`S = I`, the Perron vector of
   :math:`G|W'|` and (when one of these gives a factor below 1.25) a local
   minimiser of :math:`\|S G W' S^{-1}\|_2` with :math:`\operatorname{cond}(S) \le e^8` are tried.
5. *Elementwise recursion.* :math:`|e_t| \le \min(u_t+u'_t,\ G(|W'||e_{t-1}| + |\Delta W|u_{t-1}))`
   (and the same with the roles of the cells swapped). For the MGRU this is
   the main bound; there the gate term is a convex combination,
   :math:`(1-f')|e| + f'|c'-c| \le \max_{f'\in[f'_{lo}, f'_{hi}]}`, taken at an end.
6. *MGRU signed norm recursion.* From
   :math:`|e_t| \le (1-f'_{lo})|e_{t-1}| + (c_{max}+u)|f'-f| + f'_{hi}|c'-c|`,
   :math:`|f'-f| \le s_f|\delta f|`, :math:`|c'-c| \le s_c|\delta c|`,
   :math:`\delta f = W_f' e + \Delta W_f h`,
   :math:`\delta c = W_h'(f'\odot e) + W_h'((f'-f)\odot h) + \Delta W_h(f\odot h)`
   and :math:`\|X D\| \le \|X \operatorname{diag}(d)\|` for diagonal
   :math:`0 \le D \le \operatorname{diag}(d)`:

   .. math::
       \|e_t\| \le \bigl(\max(1-f'_{lo}) + \|P W_f'\| + \|Q W_h' F'_{hi}\|
       + \|Q W_h' \operatorname{diag}(u)\|\,\|S_f W_f'\|\bigr)\|e_{t-1}\| + \text{forcing},

   :math:`P = \operatorname{diag}((c_{max}+u)s_f)`, :math:`Q = \operatorname{diag}(f'_{hi}s_c)`.
   Below 1 only when every gate is bounded away from 0 (a gate that can
   close keeps the error: memory nets are vacuous for long horizons).

Every spectral norm is a verified upper bound
(:func:`rnnperturb.verified.linalg.spectral_norm_upper`) and every sum, ``tanh`` and
sigmoid is rounded outward.

**Rate and asymptote.** ``rate`` is the smallest verified geometric factor
among the methods (a spectral norm, or a Collatz–Wielandt bound on the spectral
radius of the elementwise recursion). When it is below 1, ``asymptote`` is a
bound valid for *every* :math:`t`. When it is :math:`\ge 1` the bound falls
back to the trivial cap (:math:`2\sqrt n` or the box cap
:math:`\|u + u'\|_2 \le 2\sqrt n`) for long horizons: ``vacuous`` is True, a
``RuntimeWarning`` is issued, and ``asymptote`` is the cap itself, never a
finite value below it.

**Where the pieces live.** This module is the generic driver and its result
types (:class:`GlobalBound`; :class:`StateBoxes`, what the driver hands to a
cell, and :class:`Refined`, what a cell hands back); it never looks at the cell
type. The outward-rounded kernels (``dn``, ``tanh_up``, ``sig_dn``, ``norm_up``,
``forcing_sup``, ``cw_rate``, ``descend_fixed_point``, ...) are in
:mod:`rnnperturb.verified.outward`, which knows neither cells nor bounds, so both
the driver and the cells import them from there. Everything
cell-specific is a documented protocol method of the cell
(:class:`rnnperturb.cells.protocol.Cell`, section "global bound"):
``global_box_map`` (the state-box map of refinement 1), ``global_simple`` (the
rate and forcing of the simple bound) and ``global_recursion`` (refinements
2-6: :meth:`rnnperturb.cells.elman.ElmanRNN.global_recursion`,
:meth:`rnnperturb.cells.mgru.MGRU.global_recursion`). The driver checks that the
cell's :meth:`~rnnperturb.cells.protocol.Cell.state_bounds` keep every state in
:math:`[-1, 1]` (which the caps :math:`2\sqrt n` and :math:`|e_{t,i}| \le 2`
use; for the MGRU this is :math:`\rho_0 \le 1`), iterates the boxes, runs the
simple bound, caps and combines. A cell without the methods raises
``NotImplementedError`` naming the cell and the method.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import MAX_HORIZON, check_compatible, check_horizon, check_positive
from rnnperturb.verified.linalg import U64, row_norms_upper, up, vec_norm_upper
from rnnperturb.verified.outward import FIXED_POINT_ITERS, dn, vec_norm_up

__all__ = ["GlobalBound", "global_bound", "simple_contraction_bound", "HORIZON_LIMIT",
           "StateBoxes", "Refined", "state_boxes"]

#: Largest ``horizon`` :func:`global_bound` accepts (time and memory are linear in it;
#: beyond it use ``GlobalBound.asymptote``, valid at every step).
HORIZON_LIMIT = MAX_HORIZON


def input_reach(U, r):
    r"""Upper bound of :math:`\max_{\|x\|_2 \le r}|(U x)_i| = r\|U_{i,:}\|_2`, per row:
    ``U`` (n, m) -> (n,) (the ``reach`` of :class:`StateBoxes`)."""
    return up(row_norms_upper(U) * r, 1)


# ----------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class GlobalBound:
    r"""Result of :func:`global_bound` with ``full_output=True``.

    Attributes
    ----------
    bound : ndarray, shape (T,)
        Upper bound on :math:`\|h'_t - h_t\|_2`, ``bound[t-1]`` for step t,
        valid for every admissible input sequence.
    vacuous : bool
        True when no geometric factor is below 1 (or the uniform bound is not
        below the cap): for long horizons the bound is only the trivial cap.
    rate : float
        Smallest verified geometric factor of the refined recursions.
    asymptote : float
        A bound valid at every step t (any horizon). Equal to ``cap`` when
        ``vacuous``; never a finite value below the cap in that case.
    simple : ndarray, shape (T,)
        The simple contraction bound of ``DESIGN.md`` §2(c) (capped at
        :math:`2\sqrt n`).
    simple_rate : float
        Its geometric factor (:math:`\|W'\|_2` for the Elman RNN).
    cap : float
        The trivial cap :math:`\min(2\sqrt n, \|u+u'\|_2)` from the state boxes
        valid at every step.
    hmax : ndarray, shape (n,)
        Box :math:`|h_{t,i}| \le` ``hmax[i]`` of the nominal cell, every t.
    slope : ndarray, shape (n,)
        Upper bound on the slope of the output nonlinearity (tanh for the
        Elman RNN and the MGRU candidate) valid at every step; below 1 only
        where the bias dominates.
    scaling : ndarray, shape (n,)
        The diagonal scaling :math:`s` (``min(s) = 1``) of the best
        norm recursion (ones where the cell has none).
    capped : ndarray of bool, shape (T,)
        Steps where ``bound`` equals the trivial cap of that step,
        :math:`\min(2\sqrt n, \|u_t + u'_t\|_2)` (the bound says nothing more
        than the state boxes there).
    """

    bound: np.ndarray
    vacuous: bool
    rate: float
    asymptote: float
    simple: np.ndarray
    simple_rate: float
    cap: float
    hmax: np.ndarray
    slope: np.ndarray
    scaling: np.ndarray
    capped: np.ndarray


@dataclass(frozen=True, eq=False)
class StateBoxes:
    r"""The state boxes the driver hands to a cell's ``global_recursion``.

    Attributes
    ----------
    u, up : ndarray, shape (T+1, n)
        Time-exact boxes :math:`|h_{t,i}| \le u_{t,i}` of the nominal and
        :math:`|h'_{t,i}| \le u'_{t,i}` of the perturbed cell (``u[0] = rho0``).
    u_sup, up_sup : ndarray, shape (n,)
        Boxes valid at every step.
    ecap : ndarray, shape (T, n)
        :math:`|e_{t,i}| \le \min(u_{t,i} + u'_{t,i}, 2)`, ``ecap[t-1]`` for step t.
    ecap_sup : ndarray, shape (n,)
        The same, valid at every step.
    reach : dict of str to ndarray (n,)
        For every recurrent matrix, :math:`r\|U_{i,:}\|_2` (rounded up) of the
        input matrix of the same pre-activation (:attr:`Cell.input_of`).
    cap : float
        :math:`\min(2\sqrt n, \|\text{ecap\_sup}\|_2)`, bounds every :math:`\|e_t\|_2`.
    cap_t : ndarray, shape (T,)
        :math:`\min(2\sqrt n, \|\text{ecap}_t\|_2)`, step by step.
    """

    u: np.ndarray
    up: np.ndarray
    u_sup: np.ndarray
    up_sup: np.ndarray
    ecap: np.ndarray
    ecap_sup: np.ndarray
    reach: dict
    cap: float
    cap_t: np.ndarray


@dataclass(frozen=True, eq=False)
class Refined:
    r"""What a cell's ``global_recursion`` returns.

    Attributes
    ----------
    bound : ndarray, shape (T,)
        Upper bound on :math:`\|e_t\|_2`, every admissible input.
    rate : float
        Smallest verified geometric factor of the cell's recursions (inf: none).
    asymptote : float
        Bound valid at every step (inf when none was found).
    slope : ndarray, shape (n,)
        Slope bound of the cell's output nonlinearity (reported as ``GlobalBound.slope``).
    scaling : ndarray, shape (n,)
        Diagonal scaling of the best norm recursion (ones when none).
    """

    bound: np.ndarray
    rate: float
    asymptote: float
    slope: np.ndarray
    scaling: np.ndarray


def _freeze(a):
    a = np.array(a, dtype=np.float64) if not isinstance(a, np.ndarray) or a.dtype != bool else a
    a.setflags(write=False)
    return a


# ------------------------------------------------------------- common parts
def _check_state_range(cell, rho0, h0_norm):
    r"""The bound needs :math:`|h_{t,i}| \le 1` for every t >= 1 (hence
    :math:`\|h_t\|_2 \le \sqrt n` and :math:`|e_{t,i}| \le 2`): checked against
    the cell's :meth:`~rnnperturb.cells.protocol.Cell.state_bounds` at the corners
    :math:`h_0 = \pm\rho_0 \mathbf 1` of the box that holds the ball
    :math:`\|h_0\|_2 \le \rho_0` (the state bounds of both cells are monotone in
    each component of :math:`h_0`)."""
    name = type(cell).__name__
    n = cell.n

    def inside(rho):
        lo, hi = cell.state_bounds(np.stack([np.full(n, -rho), np.full(n, rho)]))
        return bool(np.all(np.asarray(lo) >= -1.0) and np.all(np.asarray(hi) <= 1.0))

    if not inside(0.0):
        raise NotImplementedError(
            f"global_bound: {name}.state_bounds leaves [-1, 1]; the global bound needs every "
            f"state in [-1, 1]")
    if not inside(rho0):
        raise ValueError(
            f"h0_norm: expected a value that keeps every state of the {name} in [-1, 1] "
            f"(the bound uses |h| <= 1; {name}.state_bounds contain h_0: at most 1), "
            f"found {h0_norm!r}")


def _setup(cell, other, horizon, input_norm, h0_norm):
    check_compatible(cell, other)
    T = check_horizon("horizon", horizon, limit=HORIZON_LIMIT)
    r = check_positive("input_norm", input_norm, allow_zero=True)
    rho0 = check_positive("h0_norm", h0_norm, allow_zero=True)
    _check_state_range(cell, rho0, h0_norm)
    P = {k: np.asarray(v, dtype=np.float64) for k, v in cell.params.items()}
    Q = {k: np.asarray(v, dtype=np.float64) for k, v in other.params.items()}
    return T, r, rho0, P, Q


def _simple(cell, P, Q, T, rho0):
    """The simple contraction bound (DESIGN §2(c)); returns (bound, rate, cap, asymptote).

    The cell gives the rate and the forcing as a function of a bound on
    ``||h_{t-1}||_2``: ``rho0`` at t = 1, ``sqrt(n)`` after (``|h_i| <= 1``)."""
    n = cell.n
    sq = float(np.sqrt(n)) * (1 + 2 * U64)
    cap = 2.0 * sq
    rate, forcing = cell.global_simple(P, Q)
    f_first, f_rest = forcing(rho0), forcing(sq)
    out = np.empty(T)
    E = 0.0
    for t in range(T):
        E = float(up(rate * E + (f_first if t == 0 else f_rest), 2)) if (t or rho0) else 0.0
        out[t] = min(E, cap)
    asym = np.inf
    if rate < 1:        # E_t <= X for all t by induction, X = max forcing / (1 - rate)
        asym = min(cap, float(up(max(f_first, f_rest) / dn(1.0 - rate, 1), 2)))
    return out, float(rate), cap, asym


def simple_contraction_bound(cell, other, *, horizon: int, input_norm: float = 1.0,
                             h0_norm: float = 0.0) -> np.ndarray:
    r"""The simple contraction bound of ``DESIGN.md`` §2(c), capped at :math:`2\sqrt n`.

    Elman: :math:`\|e_t\| \le \|W'\|_2\|e_{t-1}\| + \|\Delta W\|_2\sqrt n`
    (:math:`\|\Delta W\|_2\rho_0` at t = 1). The MGRU form is in the module
    docstring; each cell supplies its ingredients (``global_simple``). It does
    not depend on ``input_norm`` (kept for a uniform call).

    Returns
    -------
    bound : ndarray, shape (T,)
    """
    T, _, rho0, P, Q = _setup(cell, other, horizon, input_norm, h0_norm)
    return _simple(cell, P, Q, T, rho0)[0]


def state_boxes(phi, n, T, rho0, start):
    r"""Time-exact boxes and a box valid at every step, from a box map.

    Parameters
    ----------
    phi : callable
        ``phi(v)`` (n,) -> (n,): an upper bound of :math:`|h_t|` given
        :math:`|h_{t-1}| \le v`, monotone in ``v``.
    n, T : int
    rho0 : float
        :math:`|h_{0,i}| \le \rho_0`.
    start : float
        A box valid at every step (every iterate of the downward iteration is one).

    Returns
    -------
    u : ndarray, shape (T+1, n)
        ``u[0] = rho0``, ``u[t] = min(phi(u[t-1]), v)``.
    v : ndarray, shape (n,)
    """
    v = np.full(n, max(start, rho0))
    for _ in range(FIXED_POINT_ITERS):
        nv = np.minimum(np.maximum(phi(v), rho0), v)
        if np.all(nv >= v * (1 - 1e-15)):
            v = nv
            break
        v = nv
    u = np.empty((T + 1, n))
    u[0] = rho0
    for t in range(1, T + 1):
        u[t] = np.minimum(phi(u[t - 1]), v)
    return u, v


def _boxes(cell, P, Q, T, r, rho0):
    """State boxes of both cells (from the cell's ``global_box_map``), the deviation
    boxes and the trivial caps (a :class:`StateBoxes`)."""
    n = cell.n
    reach = {k: input_reach(P[cell.input_of[k]], r) for k in cell.recurrent_names}
    u, hsup = state_boxes(cell.global_box_map(P, reach), n, T, rho0, 1.0)
    up_, hsupp = state_boxes(cell.global_box_map(Q, reach), n, T, rho0, 1.0)
    ecap = np.minimum(up(u[1:] + up_[1:], 1), 2.0)                            # (T, n)
    ecap_sup = np.minimum(up(hsup + hsupp, 1), 2.0)
    sq = float(np.sqrt(n)) * (1 + 2 * U64)
    cap = min(2.0 * sq, vec_norm_up(ecap_sup))
    cap_t = np.minimum(2.0 * sq, vec_norm_upper(ecap))
    return StateBoxes(u=u, up=up_, u_sup=hsup, up_sup=hsupp, ecap=ecap, ecap_sup=ecap_sup,
                      reach=reach, cap=cap, cap_t=cap_t)


# ----------------------------------------------------------------------- API
def global_bound(cell, other, *, horizon: int, input_norm: float = 1.0, h0_norm: float = 0.0,
                 full_output: bool = False):
    r"""Upper bound on :math:`\|h'_t - h_t\|_2` valid for every input sequence in a ball.

    .. math::
        \sup_{\|x_s\|_2 \le r,\ \|h_0\|_2 \le \rho_0} \|h'_t - h_t\|_2 \le G_t ,
        \qquad t = 1, \dots, T,

    for any cell that implements the global-bound protocol methods
    (``global_box_map``, ``global_simple``, ``global_recursion``; see
    :class:`rnnperturb.cells.protocol.Cell`): the Elman RNN
    :math:`h_t = \tanh(W h_{t-1} + U x_t + b)` and the MGRU (see the module
    docstring for the derivation and the refinements). A cell without them
    raises ``NotImplementedError`` naming the cell and the method.

    Parameters
    ----------
    cell, other : Cell
        Nominal and perturbed cell; ``other`` may differ only in its recurrent
        matrices.
    horizon : int
        Number of steps T, in [1, :data:`HORIZON_LIMIT`] (:math:`10^6`; cost is
        linear in T: beyond, use ``asymptote``, valid at every step).
    input_norm : float
        r: every input satisfies :math:`\|x_t\|_2 \le r`.
    h0_norm : float
        :math:`\rho_0`: the shared initial state satisfies
        :math:`\|h_0\|_2 \le \rho_0` (0: :math:`h_0 = 0`; at most 1 for the MGRU).
    full_output : bool
        Return a :class:`GlobalBound` instead of the array.

    Returns
    -------
    G : ndarray, shape (T,)
        ``G[t-1]`` bounds :math:`\|h'_t - h_t\|_2`. Never above the simple
        contraction bound (:func:`simple_contraction_bound`) nor above
        :math:`2\sqrt n`.
    or GlobalBound
        With ``full_output=True``.

    Raises
    ------
    ValueError
        ``horizon`` not an int in [1, HORIZON_LIMIT], a negative or NaN
        ``input_norm`` / ``h0_norm``, an incompatible ``other``.
    NotImplementedError
        The cell type does not implement the global-bound protocol.

    Warns
    -----
    RuntimeWarning
        When the bound is vacuous for long horizons (every geometric factor
        :math:`\ge 1`): it then falls back to the trivial cap.
    """
    T, r, rho0, P, Q = _setup(cell, other, horizon, input_norm, h0_norm)
    simple, simple_rate, cap2, simple_asym = _simple(cell, P, Q, T, rho0)
    boxes = _boxes(cell, P, Q, T, r, rho0)
    cap, cap_t = boxes.cap, boxes.cap_t
    ref = cell.global_recursion(P, Q, r, rho0, boxes)
    bound = np.minimum(np.minimum(np.minimum(ref.bound, cap_t), simple), cap2)
    # an overflow (weights near the float range) makes a recursion NaN: the caps are
    # still sound there, so they are what we return, never NaN
    capmin = np.minimum(np.broadcast_to(cap_t, bound.shape), cap2)
    bound = np.where(np.isfinite(bound), bound, capmin)
    if rho0 == 0:
        bound[0] = 0.0          # h_0 = 0 gives e_1 = 0 exactly (Delta W h_0 = 0)
    if all(np.array_equal(P[k], Q[k]) for k in cell.recurrent_names):
        bound[:] = 0.0          # Delta W = 0: e_t = 0 exactly (the recursions' tiny
        # absolute rounding terms would otherwise be amplified by factors >= 1)
    rate, asym = min(ref.rate, simple_rate), min(ref.asymptote, simple_asym)
    rate = rate if np.isfinite(rate) else np.inf
    vacuous = not (rate < 1 and asym < cap)
    if vacuous:
        asym = cap
        warnings.warn(
            f"global_bound: geometric factor {rate:.4g} >= 1 (or no uniform bound below the "
            f"cap): for long horizons the bound falls back to the trivial cap {cap:.4g} "
            f"(vacuous)", RuntimeWarning, stacklevel=2)
    if not full_output:
        return bound
    return GlobalBound(bound=_freeze(bound), vacuous=bool(vacuous), rate=float(rate),
                       asymptote=float(asym), simple=_freeze(simple),
                       simple_rate=float(simple_rate), cap=float(cap), hmax=_freeze(boxes.u_sup),
                       slope=_freeze(ref.slope), scaling=_freeze(ref.scaling),
                       capped=_freeze(bound >= np.minimum(cap_t, cap2)))
