r"""Certified (sound) upper bounds on the hidden-state deviation :math:`\|h'_t - h_t\|_2`.

Idea: enclose the exact trajectories around the computed ones
--------------------------------------------------------------
DESIGN §2(b) starts from the first-order model plus a remainder. Here the
perturbed trajectory is *known*: it can be simulated as cheaply as the nominal
one. So the deviation is computed directly, :math:`\tilde e_t = fl(\tilde h'_t -
\tilde h_t)` from the floating-point trajectories :math:`\tilde h_t, \tilde h'_t`,
and the only thing left to certify is the distance between each computed
trajectory and the exact one. Writing :math:`r_t = h_t - \tilde h_t` (exact minus
computed; likewise :math:`r'_t`),

.. math::
    |e_t| \le \min\bigl(|\tilde e_t|(1+u) + \rho_t + \rho'_t,\ w\bigr)
    \quad\text{(componentwise)},\qquad
    \|e_t\|_2 \le \min\bigl(\|\,\cdot\,\|_2,\ \|\tilde e_t\|_2(1+u) + N_t + N'_t,\ \|w\|_2\bigr)

with :math:`\rho_t \ge |r_t|` componentwise, :math:`N_t \ge \|r_t\|_2`, and
:math:`w` the trivial width (:meth:`rnnperturb.cells.protocol.Cell.trivial_cap`,
the width of :meth:`~rnnperturb.cells.protocol.Cell.state_bounds`; 2 per component for the Elman RNN, whatever
:math:`h_0`, since :math:`h_t, h'_t \in (-1,1)^n` for :math:`t\ge1`; for the MGRU
:math:`h_{t,i}` is a convex combination of :math:`h_{t-1,i}` and
:math:`c_{t,i} \in (-1,1)`, so both trajectories stay in
:math:`[\min(h_{0,i},-1), \max(h_{0,i},1)]` and :math:`w_i` is that width:
2 when :math:`|h_{0,i}|\le1`, :math:`1+|h_{0,i}|` otherwise). The truth enters
only through :math:`r_t, r'_t`, which are driven by rounding (:math:`\sim10^{-16}`),
so the bound is essentially :math:`\|\tilde e_t\|`: tight at every size of
:math:`\Delta W`, from :math:`10^{-8}\|W\|` to :math:`\|W\|`, and in saturation,
as long as the bound on the rounding errors stays far below
:math:`\|\tilde e_t\|`; it has an absolute floor of order
:math:`10^{-14}` (at t = 1, where :math:`e_1 = 0`, the bound is that floor).
What must be controlled is the *amplification* of rounding errors along the
trajectory; it has 16 decades of headroom before it matters.

Rounding recursion (Elman; every cell proves the same pattern for its own step)
------------------------------------------------------------------------------
The step of this recursion is cell-specific and lives in the cell's module,
:meth:`rnnperturb.cells.protocol.Cell.rounding_step` (Elman:
:meth:`rnnperturb.cells.elman.ElmanRNN.rounding_step`, MGRU:
:meth:`rnnperturb.cells.mgru.MGRU.rounding_step`; every other cell, the GRU, the
LSTM, stacked networks or a new one, gets the generic step by ball arithmetic over
its own forward and tangent, :mod:`rnnperturb.verified.ball`, with nothing to
write); the driver below (caps, combination of the two trajectories, multi-step
recursion) is written once. It runs the full state (N = ``cell.state_size``)
and reports the output (``state='h'``) or the full state (``state='full'``).
For the Elman cell:
Computed: :math:`\tilde a_t = fl(W\tilde h_{t-1} + Ux_t + b)`,
:math:`\tilde h_t = fl(\tanh\tilde a_t)`. Exact: :math:`a_t = W h_{t-1} + Ux_t + b`.
Standard error bounds (any summation order, FMA or not) give

.. math::
    |a_t - \tilde a_t| \le |W r_{t-1}| + \lambda^a_t,\qquad
    \lambda^a_t = \gamma_{n+m+3}\,(|W||\tilde h_{t-1}| + |U||x_t| + |b|),

and with :math:`\rho^a_t` any bound on the right-hand side, the mean value
theorem on :math:`[\tilde a_t-\rho^a_t, \tilde a_t+\rho^a_t]` gives

.. math::
    |r_t| \le s_t \odot (|W r_{t-1}| + \lambda^a_t) + \epsilon|\tilde h_t|,
    \qquad s_t = \max_{[\tilde a_t\pm\rho^a_t]}\tanh' ,

where :math:`\epsilon` bounds the relative error of ``np.tanh``. Two bounds on
:math:`|W r_{t-1}|` are mixed: the componentwise :math:`|W|\rho_{t-1}` (tier
``"tight"``; the fast tier uses the cheap majorant
:math:`(\sum_j|W_{ij}|)\max_j\rho_{t-1,j}`) and the norm bound
:math:`\|W_{i,:}\|_2 N_{t-1}`. The norm recursion is

.. math::
    N_t \le \|\operatorname{diag}(s_t) W\|_2 N_{t-1} + \|s_t\odot\lambda^a_t + \epsilon|\tilde h_t|\|_2,
    \qquad \|\operatorname{diag}(s)W\|_2 \le \min\Bigl(\max_i s_i\,\|W\|_2,\
    \bigl(\textstyle\sum_i s_i^2\|W_{i,:}\|_2^2\bigr)^{1/2}\Bigr)

(:math:`\|W\|_2` is a *verified* upper bound, :mod:`rnnperturb.verified.linalg`;
:math:`\|\operatorname{diag}(s)W\|_2` is increasing in each :math:`s_i\ge0`, and
:math:`|\tanh(a)-\tanh(\tilde a)| = \bar s\,|a - \tilde a|` with
:math:`0\le\bar s\le s`). After each step :math:`N_t \leftarrow \min(N_t,
\|\rho_t\|_2)`, :math:`\rho_t \leftarrow \min(\rho_t, N_t, 1 + |\tilde h_t|)`.
Soundness is by induction over t: if :math:`|r_{t-1}|\le\rho_{t-1}` and
:math:`\|r_{t-1}\|\le N_{t-1}` then both hold at t; at t = 0, :math:`r_0 = 0`.
Every computed sum of non-negative terms is inflated by :math:`1 + 2(k+2)u`
(:func:`rnnperturb.verified.linalg.up`), which covers the rounding of the bound
itself. The only assumption beyond IEEE arithmetic is the accuracy of the
platform's ``tanh``/``exp`` (:data:`rnnperturb.verified.activation.LIBM_ULPS` ulps,
checked against mpmath in the tests); ``rigorous=True`` removes it.

Tight tier: multi-step propagators
----------------------------------
Per-step factors multiply: on trained nets whose per-step norms
:math:`\|D_tW\|_2` are 1.5–5 the product over 40 steps exceeds the 16 decades.
The MGRU is worse: its per-step Jacobian bound exceeds 1 even for
:math:`\|W_f\|_2, \|W_h\|_2 < 1` (the :math:`\operatorname{diag}(1-f)` part alone
has norm ≈ 1, and the triangle inequality adds the gate and candidate terms),
so its fast tier loosens over long horizons even on contracting nets.
The tight tier writes :math:`r_t = \hat J_t r_{t-1} + g_t` with *known*
matrices :math:`\hat J_t` and a componentwise bound :math:`|g_t|\le\gamma_t`.
:math:`\hat J_t` is the floating-point Jacobian, formed generically by running
the cell's tangent step (:meth:`rnnperturb.cells.protocol.Cell.tangent`) on the
standard basis, batched over the sequences (one 2-D GEMM per recurrent matrix).
Let :math:`\tilde J_t` be the exact linear map of that tangent step with its
coefficient vectors as computed. The cell's :meth:`rounding_step` bounds
:math:`|(\bar J_t - \tilde J_t) r_{t-1}|` plus the local rounding (Elman:
:math:`\tilde J = \operatorname{diag}(fl(1-\tilde h_t^2))W`, second-order term by
the exact monotone Taylor remainder
:func:`rnnperturb.verified.activation.taylor_remainder_max`; MGRU: interval
radii of the factors of its Jacobian). The formation error is bounded
generically: running the same tangent step on an
:class:`rnnperturb.verified.linalg.AbsValue` gives its rounding depth
:math:`D` and the majorant :math:`M\rho_{t-1}` with :math:`M \ge |\tilde J_t|`, and
:math:`|\hat J_t - \tilde J_t| \le \gamma_D M` entrywise, so
:math:`|(\tilde J_t - \hat J_t) r_{t-1}| \le \gamma_D M\rho_{t-1}` is added to
:math:`\gamma_t`. Then
:math:`r_t = \sum_k \tilde\Phi(t,k)\operatorname{diag}(\gamma_k)\xi_k`,
:math:`|\xi_k|\le1`, is a zonotope whose Gram matrix obeys the Lyapunov
recursion

.. math::
    C_t = \tilde J_t C_{t-1}\tilde J_t^T + \operatorname{diag}(\gamma_t^2),\qquad
    \|r_t\|_2 \le \sqrt{(1 + n (t-s))\,\lambda_{\max}(C_t)},\quad C_s = N_s^2 I,

so the growth is that of the *multi-step* propagators :math:`\tilde\Phi(t,k)`
(4–8 on the trained nets) instead of products of per-step norms. It costs
O(n^3) per step and sequence, so it is switched on per sequence, at the step
s where the per-step bound first exceeds twice the accumulated local rounding
(never, on contracting trajectories). Statement and proof: :class:`_Lyapunov`.
Switching on at any step s is sound (the claim holds from any s with
:math:`\|r_s\|\le N_s`), so *when* it is switched on is a cost choice only.

Tiers
-----
``"fast"``: cheap row-sum majorants, per-step norms only. ``"tight"``:
componentwise :math:`|W|v` products and the multi-step recursion switched on as
above. ``"auto"`` (default): componentwise products, and the multi-step
recursion switched on for a sequence only once the rounding bound of one of
its trajectories exceeds :data:`AUTO_FRACTION` of the computed
:math:`\|\tilde e_t\|_2` plus the floor :data:`AUTO_FLOOR`:math:`\,\|w\|_2`
(and twice its accumulated local rounding), then for the whole batch, in
*blocks* (:class:`_Blocks`): the block propagators are formed in float32
(the cell's tangent on the columns, one 2-D GEMM per recurrent matrix for all
sequences, with a verified float32 error bound; in place, in fewer memory
passes, for a cell with a fused float32 tangent such as
:meth:`rnnperturb.cells.mgru.MGRU.tangent_f32`) and the Gram recursion runs
once per block, its products in float32 with a verified error bound
(:meth:`_Lyapunov.step_f32`) (at most :data:`AUTO_BLOCK` steps, or earlier once the
block's sign-free forcing has grown :data:`AUTO_GROWTH`-fold); inside a block
the row norms of the propagator give the bound. On the trained memorization
checkpoints the bound stays within a relative :math:`10^{-4}` of the computed
deviation (median over steps) where the fast tier would be loose.

Rigorous mode
-------------
``rigorous=True`` encloses both trajectories in mpmath interval arithmetic
(:mod:`rnnperturb.verified.interval`), raising the precision until the
enclosure is narrow, and returns the upper end of the enclosure of
:math:`\|e_t\|_2`. It is slow (small nets only) and assumption-free.
"""
from __future__ import annotations

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, check_bool
from rnnperturb.cells.namespace import FLOAT
from rnnperturb.propagate.deviation import delta_recurrent
from rnnperturb.verified.linalg import ABS, U64, AbsValue, gamma, up, vec_norm_upper

__all__ = ["certified_bound", "certified_bounds", "trivial_cap", "TIERS", "AUTO_FRACTION", "AUTO_FLOOR"]

_TINY = 1e-120
TIERS = ("auto", "fast", "tight")
#: ``tier="auto"``: the multi-step recursion starts once a trajectory's rounding
#: bound exceeds this fraction of the computed ||e~_t||_2 ...
AUTO_FRACTION = 1e-9
#: ... plus this fraction of the trivial cap ||w||_2 (the floor of the bound
#: where the computed deviation is 0, e.g. at full rank).
AUTO_FLOOR = 1e-12
#: ``tier="auto"``: maximal length of the blocks of the multi-step recursion
#: (:class:`_Blocks`) ...
AUTO_BLOCK = 32
#: ... a block also ends once its sign-free forcing bound ||chi|| exceeds this
#: multiple of the sum of the local forcings it has absorbed.
AUTO_GROWTH = 1e4
#: ``tier="auto"``: the float32 block propagators are advanced in chunks of
#: sequences of about this many entries (cache-sized; a cost choice only).
AUTO_CHUNK = 1 << 19
#: ``tier="auto"``: bytes of float32 work arrays kept between calls (:class:`_Pool`).
POOL_BYTES = 1 << 26
#: Limit of n*n*T*B for rigorous=True (mpmath interval arithmetic is slow).
RIGOROUS_BUDGET = 4_000_000
_nrm = vec_norm_upper


def trivial_cap(cell, h0, B: int) -> np.ndarray:
    r"""Per-component width :math:`w` of the set that contains both
    trajectories for every t >= 1, shape (B, n): the cell's
    :meth:`~rnnperturb.cells.protocol.Cell.trivial_cap` (Elman: 2; MGRU:
    :math:`\max(h_{0,i},1) - \min(h_{0,i},-1)`)."""
    h0 = np.broadcast_to(np.asarray(h0, np.float64), (B, cell.state_size))
    return np.asarray(cell.trivial_cap(h0, B), dtype=np.float64)


def _f32_up(x):
    """float32 upper bounds of the float64 values ``x`` (round to nearest, then one step
    up where that fell below; inf stays inf, NaN stays NaN)."""
    y = np.asarray(x, np.float64).astype(np.float32)
    return np.where(y < x, np.nextafter(y, np.float32(np.inf)), y)


class _Pool:
    """Work arrays kept between calls of :func:`certified_bound`, by shape and dtype
    (up to :data:`POOL_BYTES`): the first touch of freshly mapped memory costs about
    as much as a pass over it, and the block propagators make a few passes per
    step. A cost choice only: every array taken is overwritten before it is read."""

    def __init__(self):
        self.free = {}
        self.nbytes = 0

    def take(self, shape, dtype=np.float32):
        """A C-contiguous array of ``shape`` (contents undefined)."""
        shape = tuple(shape)
        key = (int(np.prod(shape)), np.dtype(dtype).str)
        try:
            a = self.free.get(key, []).pop()
        except IndexError:
            return np.empty(shape, dtype)
        self.nbytes -= a.nbytes
        return a.reshape(shape)

    def give(self, arrays):
        """Keep C-contiguous arrays for later :meth:`take` calls of the same size."""
        for a in arrays:
            if (a is not None and a.flags.c_contiguous
                    and self.nbytes + a.nbytes <= POOL_BYTES):
                self.free.setdefault((a.size, a.dtype.str), []).append(a)
                self.nbytes += a.nbytes


_POOL = _Pool()


class _Trajectory:
    """Float64 trajectories of one cell, stacked: S sets of recurrent matrices
    (the nominal and the perturbed cell) advanced together as one (S, B, n)
    batch, with their rounding enclosures: rho >= |r_t| (S, B, n),
    N >= ||r_t||_2 (S, B). Each stack element is its own trajectory (the cell's
    :meth:`~rnnperturb.cells.protocol.Cell.rounding_step` acts on matrix s and
    state s), so the proofs are those of one trajectory; stacking only shares
    the per-call overhead.

    ``multistep``: None (per-step recursion only), ``"step"`` (the Gram
    recursion of :class:`_Lyapunov` at every step, Jacobians formed in
    float64) or ``"block"`` (the block recursion of :class:`_Blocks`). The
    Gram recursion runs over the S*B flattened (stack, sequence) elements."""

    def __init__(self, cell, recs, h0, exact, multistep, hbound):
        self.cell = cell
        S = len(recs)
        rec = {k: np.stack([np.asarray(r[k], np.float64) for r in recs]) for k in recs[0]}
        self.ctx = cell.rounding_context(rec)
        P = {k: np.asarray(getattr(cell, k), np.float64) for k in cell.input_params}
        self.Ps = [dict(P, **{k: v[s] for k, v in rec.items()}) for s in range(S)]
        P.update(rec)
        self.P = P
        h0 = np.asarray(h0, dtype=np.float64)
        B, n = h0.shape
        self.S, self.B = S, B
        self.h = np.array(np.broadcast_to(h0, (S, B, n)))
        self.rho = np.zeros_like(self.h)
        self.N = np.zeros((S, B))
        self.loc = np.zeros((S, B))
        self.exact = exact
        self.hbound = hbound
        self.lyap = _Lyapunov(S * B, n) if multistep else None
        self.blocks = _Blocks(cell, P, S, B, n, AUTO_BLOCK) if multistep == "block" else None
        self.t = 0

    def step(self, x, absx, xnorm):
        h, rho, N = self.h, self.rho, self.N
        S, B = self.S, self.B
        lyap = self.lyap
        linear = lyap is not None and bool(lyap.active.any())
        # "block" (truthy): the block propagators give a norm bound at every step
        hn, rho_n, N_n, loc, lin = self.cell.rounding_step(
            self.ctx, h, rho, N, x, absx, xnorm, self.exact,
            "block" if linear and self.blocks is not None else linear)
        self.t += 1
        if linear:
            aux, gam = lin
            idx = np.flatnonzero(lyap.active)
            if self.blocks is None:
                Js, gams = [], []
                for s in range(S):       # per stack element: its own matrices
                    sel = idx[(idx >= s * B) & (idx < (s + 1) * B)] - s * B
                    if sel.size:
                        J, g = self._linear_map(self.Ps[s], h[s, sel], rho[s, sel],
                                                _tree(lambda v: v[s, sel], aux),
                                                gam[s, sel])
                        Js.append(J)
                        gams.append(g)
                bound = lyap.step(idx, np.concatenate(Js), np.concatenate(gams))
                N_n = np.minimum(N_n, bound.reshape(S, B))
            else:                        # the whole batch is active (see activate)
                rho_b, N_b, closing = self.blocks.advance(h, aux, gam)
                rho_n = np.minimum(rho_n, rho_b)
                N_n = np.minimum(N_n, N_b)
                if closing:
                    Z, chi = self.blocks.close32()
                    bound = lyap.step_f32(Z, chi)
                    ok = np.isfinite(bound)
                    N_n = np.minimum(N_n, np.where(ok, bound, np.inf).reshape(S, B))
        if self.blocks is None or not lyap.active.all():   # else no longer read (activate)
            self.loc = _nrm(loc)
        rho_n = np.minimum(np.minimum(rho_n, N_n[..., None]), self.hbound + np.abs(hn))
        self.h, self.rho, self.N = hn, rho_n, N_n
        if self.blocks is not None and linear and closing:
            if not ok.all():            # float32 overflow: restart the Gram matrices (sound)
                lyap.restart(np.flatnonzero(~ok), N_n.reshape(-1))
            self.blocks.start(rho_n, N_n)
        return hn

    def activate(self, threshold):
        """Switch the multi-step recursion on where it is due (:meth:`_Lyapunov.maybe_activate`);
        ``threshold`` (B,) is shared by the stack. In block mode for the whole stacked
        batch at once (subsets would cost fancy-index copies of the (S, B, n, n)
        propagators that exceed the work saved)."""
        together = self.blocks is not None
        if together and self.lyap.active.all():
            return                      # nothing left to switch on (no element ever stops)
        thr = np.broadcast_to(threshold, self.N.shape).reshape(-1)
        new = self.lyap.maybe_activate(self.N.reshape(-1), self.loc.reshape(-1), thr, together)
        if together and new.size:
            self.blocks.start(self.rho, self.N)

    def _linear_map(self, P, h, rho, aux, gam):
        r"""The formed Jacobian :math:`\hat J` (k, n, n) of the cell's tangent at
        ``(h, aux)`` (k, n) with matrices ``P`` and ``gam`` plus the formation error
        :math:`\gamma_D M\rho`."""
        cell = self.cell
        k, n = h.shape
        basis = np.zeros((n, k, n))
        ii = np.arange(n)
        basis[ii, :, ii] = 1.0
        Z = cell.tangent(FLOAT, P, h, aux, basis, lambda nm, v: FLOAT.matvec(P[nm], v),
                         lambda nm: 0.0)                                  # (n_j, k, n_i)
        J = np.ascontiguousarray(Z.transpose(1, 2, 0))
        M = cell.tangent(ABS, P, h, aux, AbsValue(rho), lambda nm, v: v.matvec(P[nm]),
                         lambda nm: 0.0)
        return J, up(gam + gamma(M.depth) * M.bound(), 2) + _TINY


class _Blocks:
    r"""Block propagators of the rounding recursion, formed in float32 (tier ``"auto"``).

    Claim. Let :math:`s` be the start of a block (a multiple of
    :data:`AUTO_BLOCK`, or the activation step), :math:`r_k = \tilde J_k r_{k-1}
    + g_k` for :math:`k > s` with :math:`|g_k| \le \gamma_k` (the cell's
    :meth:`~rnnperturb.cells.protocol.Cell.rounding_step`, ``linear=True``),
    :math:`|r_s| \le \rho_s`. Let :math:`\hat P_s = I` and :math:`\hat P_k` the
    float32 evaluation of the cell's tangent on the columns of
    :math:`\hat P_{k-1}` (:class:`rnnperturb.verified.linalg.F32Value`; one 2-D
    GEMM per recurrent matrix for all sequences), and :math:`M_k \ge |\tilde J_k|`
    the majorant of :class:`rnnperturb.verified.linalg.AbsValue`. With

    .. math::
        a_s = \rho_s,\quad a_k = (1+\gamma_{D})M_k a_{k-1} + \alpha_k\|\rho_s\|_1,\qquad
        \chi_s = 0,\quad \chi_k = M_k\chi_{k-1} + \gamma_k + \gamma_{D} M_k a_{k-1}
        + \alpha_k\|\rho_s\|_1

    (:math:`\gamma_D`, :math:`\alpha_k` the relative and absolute float32 error
    bounds of :class:`~rnnperturb.verified.linalg.F32Value`) we have, for every
    :math:`t > s` in the block,

    .. math::
        r_t = \hat P_t r_s + q_t,\qquad |q_t| \le \chi_t .

    Proof. The float32 evaluation gives :math:`\hat P_k = \tilde J_k\hat P_{k-1}
    + \Delta_k`, :math:`|\Delta_k| \le \gamma_D M_k|\hat P_{k-1}| + \alpha_k`
    entrywise; unrolling, :math:`\hat P_t = \tilde\Phi(t,s) + \sum_{s<k\le t}
    \tilde\Phi(t,k)\Delta_k` with :math:`\tilde\Phi(t,k) = \tilde J_t\cdots\tilde J_{k+1}`.
    Unrolling the recursion of :math:`r`, :math:`r_t = \tilde\Phi(t,s)r_s +
    \sum_k\tilde\Phi(t,k)g_k = \hat P_t r_s + q_t` with :math:`q_t = \sum_k
    \tilde\Phi(t,k)w_k`, :math:`w_k = g_k - \Delta_k r_s`, i.e. :math:`q_t =
    \tilde J_t q_{t-1} + w_t`, :math:`q_s = 0`. By induction :math:`|\hat P_k|\rho_s
    \le a_k` (from :math:`|\hat P_k| \le (1+\gamma_D)M_k|\hat P_{k-1}| + \alpha_k`),
    so :math:`|w_k| \le \gamma_k + \gamma_D M_k a_{k-1} + \alpha_k\|\rho_s\|_1`,
    and :math:`|q_t| \le M_t|q_{t-1}| + |w_t| \le \chi_t`. :math:`\square`

    At the end of the block, :math:`r_t = [\hat P_t Z_s,\ \operatorname{diag}(\chi_t)]
    (\zeta, \xi)` with the generators :math:`Z_s` of :class:`_Lyapunov`
    (:math:`Z_sZ_s^T = C_s`, :math:`\|\zeta\|_2^2 \le k_s`) and :math:`|\xi| \le 1`,
    which is the Gram step with :math:`\hat J = \hat P_t` and :math:`\gamma = \chi_t`
    (:meth:`_Lyapunov.step_f32`, its products in float32 with their error bound):
    one Gram update per block instead of one per step, and :math:`\|\zeta\|^2` grows by
    n per block. At the
    steps inside a block the per-step recursion of the cell (started from the
    Gram bound at the block start) gives the bound; it grows like products of
    per-step norms over at most :data:`AUTO_BLOCK` steps, which is harmless:
    the rounding bound only has to stay far below the computed deviation.
    The growth that matters, over the whole horizon, is carried by the Gram
    matrices of the products :math:`\hat P`, as in the tight tier.
    """

    def __init__(self, cell, P, S, B, n, L):
        from rnnperturb.verified.linalg import F32Matrix, F32Namespace
        self.cell, self.P, self.n, self.L = cell, P, n, L
        self.ns = F32Namespace()
        self.S, self.B = S, B
        self.M32 = {k: F32Matrix(P[k]) for k in cell.recurrent_names}   # (S, n, n) stacks
        # Z[c][s, j, b, i] = entry (i, j) of the propagator of sequence b0 + b of chunk c in
        # stack element s (columns outermost: the coefficient vectors (s, b, i) of a step
        # broadcast over j with long contiguous inner loops); the sequences are cut into
        # chunks of bounded size (a cost choice only).
        bc = max(1, min(B, AUTO_CHUNK // max(S * n * n, 1)))
        self.slices = [slice(b0, min(b0 + bc, B)) for b0 in range(0, B, bc)]
        self.Z = [None] * len(self.slices)
        # a cell's fused float32 tangent (optional, e.g. MGRU.tangent_f32) works in place
        # in three preallocated buffers per chunk; else the tangent runs on F32Value
        self.fused = getattr(cell, "tangent_f32", None)
        self.spare = [None] * len(self.slices)
        # likewise a fused majorant (optional, e.g. MGRU.tangent_abs), with |W|^T formed once
        self.fused_abs = getattr(cell, "tangent_abs", None)
        self.absT = {k: np.ascontiguousarray(np.abs(np.swapaxes(P[k], -1, -2)))
                     for k in cell.recurrent_names}
        self.sq = np.zeros((S, B, n))
        self.chi = np.zeros((S, B, n))
        self.a = np.zeros((S, B, n))
        self.s1 = np.zeros((S, B))
        self.mu = 1.0
        self.Ns = np.zeros((S, B))
        self.count = 0
        self.forced = np.zeros((S, B))

    def start(self, rho, N):
        """Start a block at the current step (P = I) for the whole batch, rho (S, B, n), N (S, B)."""
        n, S = self.n, self.S
        eye = np.eye(n, dtype=np.float32)
        for c, sl in enumerate(self.slices):
            if self.Z[c] is None:
                shape = (S, n, sl.stop - sl.start, n)
                self.Z[c] = _POOL.take(shape)
                if self.fused is not None:
                    self.spare[c] = [_POOL.take(shape) for _ in range(3)]
            np.copyto(self.Z[c], eye[None, :, None, :])
        self.chi = np.zeros_like(self.chi)
        self.a = rho.copy()
        self.s1 = up(rho.sum(axis=-1), n)
        self.Ns = N.copy()
        self.mu = 1.0
        self.count = 0
        self.forced = np.zeros_like(self.forced)

    def advance(self, h, aux, gam):
        """One step of the block recursion (h, gam and aux (S, B, n)); returns the bounds
        (rho (S, B, n), N (S, B)) it gives at this step and whether the block closes here."""
        from rnnperturb.verified.linalg import ETA32, F32Value, gamma32
        cell, P, M32, n = self.cell, self.P, self.M32, self.n
        sq = self.sq
        depth, alpha, mu = 0, 0.0, 0.0
        fused = self.fused
        for c, sl in enumerate(self.slices):    # cache-sized chunks of the sequences
            hc, auxc = h[:, None, sl, :], _tree(lambda v: v[:, None, sl, :], aux)
            Z0 = F32Value(self.Z[c], 0, 0.0, self.mu)
            if fused is None:
                Fc = cell.tangent(self.ns, P, hc, auxc, Z0,
                                  lambda nm, v: v.matvec(M32[nm]), lambda nm: 0.0)
            else:
                bufs = self.spare[c]
                Fc = fused(hc, auxc, Z0, lambda nm, v, o: v.matvec(M32[nm], out=o), bufs)
                # the old propagator becomes a work buffer (the result is one of bufs)
                self.spare[c] = [b for b in bufs if b is not Fc.val] + [self.Z[c]]
                if len(self.spare[c]) > 3:          # the result was not written into bufs
                    self.spare[c] = self.spare[c][:3]
            Zc = self.Z[c] = Fc.val
            # squared row norms of the new propagators while the chunk is in cache
            sq[:, sl] = np.einsum("sjbi,sjbi->sbi", Zc, Zc)
            depth, alpha, mu = max(depth, Fc.depth), max(alpha, Fc.alpha), max(mu, Fc.mu)
        F = F32Value(None, depth, alpha, mu)
        ca = AbsValue(np.stack([self.chi, self.a]))
        if self.fused_abs is None:
            M = cell.tangent(ABS, P, h, aux, ca, lambda nm, v: v.matvec(P[nm]), lambda nm: 0.0)
        else:
            M = self.fused_abs(h, aux, ca, lambda nm, v: v.absmatvec(self.absT[nm]))
        M = M.bound()
        g = F.gamma()
        ab = (F.alpha * self.s1)[..., None]
        self.a = up((1 + g) * M[1] + ab, 2)
        self.chi = up(M[0] + gam + g * M[1] + ab, 4)
        self.mu = F.mu
        self.count += 1
        self.forced = up(self.forced + _nrm(gam), 2)
        # |P^ r_s| <= rownorm(P^) N_s: the rows of P^[s, b] are Z[s, b, :, i]; float32
        # sums of squares (relative gamma32(n+1), underflow n 2^-150 absolute), rounded up
        rn2 = up(sq * (1 + gamma32(n + 2)) + n * ETA32, 1)
        rn = np.sqrt(rn2) * (1 + 2 * U64)
        rho_b = up(rn * self.Ns[..., None] + self.chi, 2)
        chin = _nrm(self.chi)
        N_b = up(np.sqrt(up(rn2.sum(axis=-1), n)) * (1 + 2 * U64) * self.Ns + chin, 2)
        closing = self.count >= self.L or bool(np.any(chin > AUTO_GROWTH * self.forced))
        return rho_b, N_b, closing

    def release(self):
        """Hand the work arrays back to the pool (the propagators are not used again)."""
        for c in range(len(self.slices)):
            _POOL.give([self.Z[c]] + list(self.spare[c] or []))
            self.Z[c], self.spare[c] = None, None

    def close32(self):
        r"""The block propagators as float32 columns, Z (S, B, n, n) with
        :math:`\hat P = Z^T` for every (stack element, sequence) (a strided view where
        the batch is one chunk), and the forcing bounds chi (S*B, n), flattened over
        (stack element, sequence)."""
        S, B, n = self.S, self.B, self.n
        Z = np.concatenate(self.Z, axis=2) if len(self.Z) > 1 else self.Z[0]
        return Z.transpose(0, 2, 1, 3), self.chi.reshape(S * B, n)

    def close(self):
        """The block propagators (S*B, n, n) float64 and the forcing bounds chi (S*B, n),
        flattened over (stack element, sequence)."""
        S, B, n = self.S, self.B, self.n
        Z, chi = self.close32()
        J = np.ascontiguousarray(np.swapaxes(Z, -1, -2), dtype=np.float64)
        return J.reshape(S * B, n, n), chi


def _check_tier(tier, rigorous):
    if tier not in TIERS:
        raise ValueError(f"tier: expected one of {TIERS}, found {tier!r}")
    check_bool("rigorous", rigorous)


def certified_bound(cell, other, X, h0=None, *, tier: str = "auto", rigorous: bool = False,
                    componentwise: bool = False, state: str = "h"):
    r"""Sound upper bound on :math:`\|h'_t - h_t\|_2` for every step.

    The bound holds for the exact (real-arithmetic) trajectories of the two
    cells on the given inputs, whatever the size of :math:`\Delta W`. The
    method and its proof are in the module docstring.

    Parameters
    ----------
    cell, other : Cell
        Nominal and perturbed cell (any registered cell type); ``other`` may
        differ only in its recurrent matrices. float32 cells are analysed
        exactly in float64 (inputs are first rounded to the cell's dtype, as
        :meth:`run` does).
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, shape (B, n) or (n,), optional
        Common initial state (zeros when None); any finite values.
    tier : {'auto', 'fast', 'tight'}
        ``'auto'`` (default): componentwise products, and the multi-step
        (Lyapunov) recursion only for the sequences and steps where the
        per-step rounding bound would exceed :data:`AUTO_FRACTION` of the
        computed deviation (plus a floor); within a relative ~1e-3 of the
        computed deviation on trained nets.
        ``'fast'``: per-step norms and cheap majorants, O(B n^2) per step.
        Tight on contracting Elman nets; loosens on expanding nets and on the
        MGRU over long horizons (per-step factors above 1 multiply).
        ``'tight'``: componentwise :math:`|W|` products and the multi-step
        recursion for each sequence as soon as per-step factors grow, O(n^3)
        per step and sequence.
    rigorous : bool
        Evaluate in mpmath interval arithmetic instead (small nets only:
        ``n*n*T*B <= RIGOROUS_BUDGET``).
    componentwise : bool
        Return the componentwise bound on :math:`|h'_t - h_t|` instead (not
        with ``rigorous=True``).
    state : {'h', 'full'}
        What the bound is on: the output :math:`h_t` a readout sees (default;
        the state itself for the Elman RNN, MGRU and GRU, the h of the LSTM's
        :math:`(h, c)`, the top layer's h of a stacked network) or the full
        state (the LSTM's h and c, every layer). The rounding enclosures are
        always those of the full state (the LSTM's c and the layers below feed
        h), so either report is sound. Not with ``rigorous=True``.

    Returns
    -------
    bound : ndarray, shape (T, B) or (T,)
        ``bound[t-1] >= ||h'_t - h_t||_2``, at most the trivial cap
        :math:`\|w\|_2` (:math:`2\sqrt n` for the Elman RNN and for the MGRU
        with :math:`\|h_0\|_\infty\le1`). With ``componentwise=True``: shape
        (T, B, n) or (T, n).

    Raises
    ------
    ValueError
        For incompatible cells, bad inputs, an unknown tier or a too large
        rigorous problem.
    """
    _check_tier(tier, rigorous)
    rows = cell.output_rows(state)
    dW = delta_recurrent(cell, other)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    T, B = X3.shape[0], X3.shape[1]
    h0a = as_h0(h0, cell.state_size, B, single, cell.dtype).astype(np.float64)
    if rigorous:
        if componentwise:
            raise ValueError("componentwise: expected False with rigorous=True, found True")
        if rows is None and cell.state_size != cell.n:
            raise ValueError("state: expected 'h' with rigorous=True (the interval reference "
                             "encloses the output's deviation), found 'full'")
        size = cell.n * cell.n * T * B
        if size > RIGOROUS_BUDGET:
            raise ValueError(f"rigorous: expected n*n*T*B <= {RIGOROUS_BUDGET} for mpmath "
                             f"interval arithmetic, found {size} (n={cell.n}, T={T}, B={B})")
        from rnnperturb.verified.interval import interval_deviation_norm
        _, hi, _ = interval_deviation_norm(cell, other, X3, h0a, prec=113, max_prec=1024)
        w = trivial_cap(cell, h0a, B)
        cap = _nrm(w if rows is None else w[:, rows])
        out = np.minimum(hi, cap[None, :])
        return out[:, 0] if single else out
    del dW
    X3 = X3.astype(np.float64)
    norm, comp = _bound_float(cell, other, X3, h0a, tier, componentwise, rows)
    out = comp if componentwise else norm
    if single:
        return out[:, 0]
    return out


def certified_bounds(cell, other, X, h0=None, *, tier: str = "auto", state: str = "h"):
    r"""The norm bound and the componentwise bound of :func:`certified_bound`
    from one pass (same values as two calls).

    Returns
    -------
    bound : ndarray, shape (T, B) or (T,)
    componentwise : ndarray, shape (T, B, n) or (T, n)
    """
    _check_tier(tier, False)
    rows = cell.output_rows(state)
    delta_recurrent(cell, other)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h0a = as_h0(h0, cell.state_size, X3.shape[1], single, cell.dtype).astype(np.float64)
    norm, comp = _bound_float(cell, other, X3.astype(np.float64), h0a, tier, True, rows)
    return (norm[:, 0], comp[:, 0]) if single else (norm, comp)


def _bound_float(cell, other, X3, h0a, tier, componentwise, rows=None):
    """``rows``: the state components reported (None: all; else the output's,
    :meth:`~rnnperturb.cells.protocol.Cell.output_rows`); the norm bounds N of the
    full state bound those of any part."""
    T, B = X3.shape[0], X3.shape[1]
    n = cell.state_size if rows is None else len(rows)        # components reported
    recs = [{k: np.asarray(v, np.float64) for k, v in c.recurrent.items()} for c in (cell, other)]
    if all(np.array_equal(recs[0][k], recs[1][k]) for k in recs[0]):
        # Identical cells (e.g. truncation at full rank): both exact trajectories are the
        # same, e_t = 0 exactly, and 0 is the sound and exact bound. The cell's rounding
        # context is still formed, so that a cell without a rounding step refuses alike.
        cell.rounding_context({k: v[None] for k, v in recs[0].items()})
        return np.zeros((T, B)), (np.zeros((T, B, n)) if componentwise else None)
    exact = tier != "fast"
    width = trivial_cap(cell, h0a, B)
    lo, hi = cell.state_bounds(h0a)
    hbound = np.maximum(np.abs(lo), np.abs(hi))          # |h_t| <= hbound, t >= 1
    mode = {"fast": None, "tight": "step", "auto": "block"}[tier]
    traj = _Trajectory(cell, recs, h0a, exact, mode, hbound)
    try:
        out, outc = _run(cell, traj, X3, tier, componentwise, rows, width)
    finally:
        if traj.blocks is not None:
            traj.blocks.release()
            traj.lyap.release()
    return out, outc


def _run(cell, traj, X3, tier, componentwise, rows, width):
    """The time loop of :func:`_bound_float`."""
    T, B = X3.shape[0], X3.shape[1]
    n = cell.state_size if rows is None else len(rows)
    wrep = width if rows is None else width[:, rows]
    cap = _nrm(wrep)
    # the floor from the finite widths (the LSTM's c has none: an infinite floor would keep
    # the multi-step recursion off for good); the same as AUTO_FLOOR * cap when all are finite
    floor = AUTO_FLOOR * _nrm(np.where(np.isfinite(wrep), wrep, 0.0))
    out = np.empty((T, B))
    outc = np.empty((T, B, n)) if componentwise else None
    absX = np.abs(X3)
    xnorm = _nrm(absX)                          # (T, B), the same values as step by step
    for t in range(T):
        x, absx, xn = X3[t], absX[t], xnorm[t]
        hh = traj.step(x, absx, xn)             # (2, B, n): nominal, perturbed
        e = np.abs(hh[1] - hh[0]) * (1 + 2 * U64)
        if rows is not None:
            e = e[:, rows]
        en = _nrm(e)
        if tier != "fast":
            thr = 0.0 if tier == "tight" else AUTO_FRACTION * en + floor
            traj.activate(thr)
        rho, N = traj.rho, traj.N
        rr = rho if rows is None else rho[..., rows]
        comp = np.minimum(up(e + rr[0] + rr[1], 3), wrep)
        if componentwise:
            outc[t] = comp
        b1 = _nrm(comp)
        b2 = up(en + N[0] + N[1], 3)
        out[t] = np.minimum(np.minimum(b1, b2), cap)
    # An overflow (weights or inputs near the float range) makes the recursion NaN or Inf;
    # the trivial cap is still a sound bound there, so it is what we return.
    out = np.where(np.isfinite(out), out, cap[None, :])
    if componentwise:
        outc = np.where(np.isfinite(outc), outc, wrep[None])
    return out, outc


def _tree(f, aux):
    """``f`` applied to every array of a step's intermediates (a dict, nested for a
    stacked network: ``{"layers": [dict, ...]}``)."""
    if isinstance(aux, dict):
        return {k: _tree(f, v) for k, v in aux.items()}
    if isinstance(aux, (list, tuple)):
        return type(aux)(_tree(f, v) for v in aux)
    return f(aux)


class _Lyapunov:
    r"""Gram matrices of the rounding zonotope, one per batch element.

    Claim: if :math:`r_t = \hat J_t r_{t-1} + g_t` for :math:`t > s` with
    known matrices :math:`\hat J_t`, :math:`\|r_s\|_2 \le N_s` and
    :math:`|g_k| \le \gamma_k` componentwise, then

    .. math::
        \|r_t\|_2 \le \sqrt{(1 + n(t-s))\,\lambda_{\max}(C_t)},\qquad
        C_t = \hat J_t C_{t-1}\hat J_t^T + \operatorname{diag}(\gamma_t^2),\quad
        C_s = N_s^2 I .

    Proof: :math:`r_t = \hat\Phi(t,s)N_s\eta + \sum_{s<k\le t}\hat\Phi(t,k)
    \operatorname{diag}(\gamma_k)\xi_k = Z_t\zeta` with :math:`\|\eta\|_2\le1`,
    :math:`|\xi_k|\le1`, so :math:`\|\zeta\|_2^2\le 1 + n(t-s)`;
    :math:`\|r_t\|_2\le\|Z_t\|_2\|\zeta\|_2`, :math:`\|Z_t\|_2^2 =
    \lambda_{\max}(Z_tZ_t^T)` and :math:`Z_tZ_t^T = C_t`. In floating point we
    keep a computed, *not necessarily symmetric* :math:`\tilde C_t` whose
    symmetric part :math:`\operatorname{sym}\tilde C = (\tilde C + \tilde C^T)/2`
    (never formed) is a Loewner upper bound, :math:`C_t \preceq
    \operatorname{sym}\tilde C_t` (at the start :math:`\tilde C_s = N_s^2 I`,
    rounded up). Step: congruence keeps the order and :math:`\hat J
    \operatorname{sym}(\tilde C)\hat J^T = \operatorname{sym}(\hat J\tilde C\hat J^T)`, so
    :math:`C_t \preceq \operatorname{sym}(\hat J_t\tilde C_{t-1}\hat J_t^T) +
    \operatorname{diag}(\gamma_t^2) = \operatorname{sym}(S) - \operatorname{sym}(\Delta)
    + \operatorname{diag}(\gamma_t^2)` with :math:`S = fl(\hat J\tilde C\hat J^T)`,
    :math:`|\Delta| \le E = (2\gamma_{n+1}+\gamma_{n+1}^2)|\hat J||\tilde C||\hat J|^T`
    (classical bound, any summation order). For a symmetric :math:`A`,
    :math:`A \preceq \operatorname{diag}(|A|\mathbf 1)` (Gershgorin on
    :math:`A - \operatorname{diag}(|A|\mathbf 1)`), and
    :math:`|\operatorname{sym}\Delta|\mathbf 1 \le \tfrac12(E + E^T)\mathbf 1 =
    (2\gamma+\gamma^2)|\hat J|\,\tfrac12(|\tilde C| + |\tilde C|^T)|\hat J|^T\mathbf 1
    =: e`, which costs only matrix-vector products. Hence
    :math:`C_t \preceq \operatorname{sym}(S + \operatorname{diag}(e + \gamma_t^2))`,
    and :math:`\tilde C_t` is :math:`S` with that diagonal added and rounded up
    (raising diagonal entries keeps the order; the new diagonal entries are
    :math:`\ge S_{ii} - E_{ii} \ge 0` in exact arithmetic, since
    :math:`\operatorname{sym}\tilde C_{t-1} \succeq C_{t-1} \succeq 0`, so a relative
    :math:`1+4u` covers their rounding). Finally, by Gershgorin on the symmetric part
    and the trace of a positive semidefinite matrix,
    :math:`\lambda_{\max}(C_t) \le \min\bigl(\max_i \tfrac12\sum_j(|\tilde C_{ij}| +
    |\tilde C_{ji}|),\ \operatorname{tr}\tilde C\bigr)`. No symmetrisation pass is
    needed, and :math:`|\tilde C_t|` is kept for the next step.
    The growth of :math:`C_t` is that of the multi-step propagators
    :math:`\hat\Phi(t,k) = \hat J_t\cdots\hat J_{k+1}`, not of products of
    per-step norms. The claim holds from any start s, so the recursion may be
    switched on at any step (:meth:`maybe_activate`).
    """

    ACTIVATE = 2.0

    def __init__(self, B, n):
        self.n = n
        self.C = np.zeros((B, n, n))
        self.absC = None             # |C|, kept from the last whole-batch step
        self.G = self.Gabs = None    # float32 Gram matrices of step_f32 (C~ = sig G)
        self.sig = None
        self.steps = np.zeros(B, dtype=np.int64)
        self.active = np.zeros(B, dtype=bool)
        self.acc = np.zeros(B)       # accumulated norms of the local rounding

    def step(self, idx, J, gam):
        """Advance the active elements ``idx`` with their matrices ``J`` (k, n, n)
        and ``gam`` (k, n); return the bound (inf where inactive)."""
        self._sync()
        out = np.full(self.active.shape, np.inf)
        whole = idx.size == self.active.size      # the same values, without index copies
        C = self.C if whole else self.C[idx]
        absC = self.absC if (whole and self.absC is not None) else np.abs(C)
        S, E1 = self.full_piece(J, C, absC)
        C, absC, lam = self._finish(S, E1, gam)
        if whole:
            self.C, self.absC = C, absC
        else:
            self.C[idx] = C
            self.absC = None
        self.steps[idx] += 1
        k = 1 + self.n * self.steps[idx]
        out[idx] = np.sqrt(up(lam * k, 1)) * (1 + 4 * U64)
        return out

    def step_f32(self, Z, gam):
        r"""The step of :meth:`step` for the whole batch, with :math:`\hat J = Z^T`
        given by float32 columns ``Z`` (k, n, n) or (S, B, n, n) (the block
        propagators of :class:`_Blocks`), and the Gram matrices kept in float32 between
        calls: :math:`\tilde C = \sigma G` with float32 :math:`G` and a power of two
        :math:`\sigma` per element (the proof of the class docstring holds for any
        representation whose symmetric part is a Loewner upper bound). Returns the
        bound (k,).

        Start: from the float64 :math:`\tilde C` (after :meth:`restart`),
        :math:`\sigma = 2^e \ge \max|\tilde C|` (e clipped to [-1000, 1000]) and
        :math:`G = fl_{32}(\tilde C/\sigma)`, so :math:`|\tilde C/\sigma - G| \le
        (u|G| + 2\eta)/(1-u)`, :math:`u = 2^{-24}`, :math:`\eta = 2^{-150}` (float32
        underflow; the float64 one, :math:`2^{-1075}`, is below it); later
        :math:`\tilde C/\sigma = G` exactly. Step: :math:`Y = fl(GZ)`,
        :math:`S = fl(Z^TY)`, two float32 GEMMs. With :math:`\gamma =
        \gamma^{(32)}_{n+1}`, :math:`A = |Z|`, :math:`a = A^T\mathbf 1` and the bound
        :math:`|fl(x^Ty) - x^Ty| \le \gamma|x|^T|y| + 2n\eta` for dot products of
        length n in any order,

        .. math::
            |\Delta| := |S - Z^T\tilde CZ/\sigma| \le K A^T|G|A +
            \eta\bigl(3aa^T + 2n(1+\gamma)a\mathbf 1^T + 2n\mathbf 1\mathbf 1^T\bigr),
            \quad K = 2u + 2\gamma + \gamma^2,

        and the row sums of :math:`|\operatorname{sym}\Delta|` are at most
        :math:`e = \tfrac12 K A^Tw + \tfrac12\eta\bigl(6a\,\Sigma a + 2n(1+\gamma)(na +
        \Sigma a) + 4n^2\bigr)`, :math:`w = (|G| + |G|^T)A\mathbf 1` (float32
        matrix-vector products of non-negative terms, each bounded by
        :math:`(fl + 2n\eta)(1+2\gamma)` and rounded up before the next), so by
        Gershgorin :math:`C_t \preceq \sigma\operatorname{sym}(S +
        \operatorname{diag}(e + \gamma_t^2/\sigma))`. Then :math:`S` is scaled by
        :math:`2^{-f}`, :math:`2^f \approx \max|S|` (exact but for underflow,
        :math:`\le\eta` per entry, i.e. :math:`n\eta` more on the diagonal),
        :math:`\sigma \leftarrow 2^f\sigma`, and the diagonal is raised by
        :math:`2^{-f}(e + \gamma_t^2/\sigma) + n\eta`, rounded up to float32
        (raising diagonal entries keeps the order). Finally :math:`\lambda_{\max}(C_t)
        \le \sigma\min(\max_i\tfrac12\sum_j(|G_{ij}| + |G_{ji}|),\ \operatorname{tr}G)`
        (:math:`\operatorname{sym}G \succeq C_t/\sigma \succeq 0`), the sums rounded
        up. An overflow gives Inf/NaN, i.e. no bound (the caller restarts those
        elements)."""
        from rnnperturb.verified.linalg import ETA32, U32, gamma32
        n = self.n
        k = self.C.shape[0]
        lead = Z.shape[:-2]                              # (k,) or (S, B): k elements
        shape = lead + (n, n)
        g = gamma32(n + 1)
        rel = 1 + 2 * g
        eta = ETA32
        f32 = np.float32
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            if self.G is None:                # from the float64 C~ (a start or a restart)
                _, ex = np.frexp(np.abs(self.C).max(axis=(1, 2)))
                ex = np.clip(ex, -1000, 1000)
                self.sig = np.ldexp(1.0, ex)
                self.G = _POOL.take((k, n, n))
                np.multiply(self.C, np.ldexp(1.0, -ex)[:, None, None], out=self.G,
                            casting="same_kind")
                self.Gabs = np.abs(self.G, out=_POOL.take((k, n, n)))
            G, Gabs = self.G.reshape(shape), self.Gabs.reshape(shape)
            sig = self.sig.reshape(lead)
            Y, S, Zc = _POOL.take(shape), _POOL.take(shape), _POOL.take(shape)
            np.copyto(Zc, Z)                              # contiguous: faster GEMMs
            np.matmul(G, Zc, out=Y)                       # G Z
            np.matmul(np.swapaxes(Zc, -1, -2), Y, out=S)  # Z^T G Z = J G J^T
            A = np.abs(Zc, out=Y)
            ones = np.ones(n, f32)
            # sums of non-negative float32 terms (products by 1 exact): (fl)(1 + 2 gamma)
            v32 = _f32_up(up(np.matmul(A, ones).astype(np.float64) * rel, 1))   # A 1
            wa = np.matmul(Gabs, v32[..., None])[..., 0]
            wb = np.matmul(v32[..., None, :], Gabs)[..., 0, :]
            w = up((wa.astype(np.float64) + wb + 4 * n * eta) * rel, 2)
            t32 = np.matmul(_f32_up(w)[..., None, :], A)[..., 0, :]   # A^T w
            tt = up((t32.astype(np.float64) + 2 * n * eta) * rel, 2)
            a = up(np.matmul(ones, A).astype(np.float64) * rel, 1)   # A^T 1
            _POOL.give([Zc])
            sa = up(a.sum(axis=-1, keepdims=True), n)
            K = 2 * U32 + 2 * g + g * g
            e = up(0.5 * K * tt + 0.5 * eta * (6 * a * sa + 2 * n * (1 + g) * (n * a + sa)
                                                + 4 * n * n), 8)
            d = up(e + up(gam.reshape(lead + (n,)) ** 2, 1) / sig[..., None], 2)
            # rescale S to max ~ 1 (powers of two: exact but for underflow)
            mx = np.maximum(S.max(axis=(-2, -1)), -S.min(axis=(-2, -1))).astype(np.float64)
            _, fx = np.frexp(mx)
            # float32-representable factors, and sigma kept within [2^-1000, 2^1000]
            es = np.frexp(sig)[1] - 1                     # sig = 2^es
            fx = np.clip(np.clip(fx, -120, 120), -1000 - es, 1000 - es)
            S *= np.ldexp(f32(1.0), -fx)[..., None, None]
            d = up(d * np.ldexp(1.0, -fx)[..., None] + n * eta, 2)
            idx = np.arange(n)
            dg = S[..., idx, idx].astype(np.float64) + d
            S[..., idx, idx] = _f32_up(dg + 2 * U64 * np.abs(dg) + 1e-300)
            sig_new = sig * np.ldexp(1.0, fx)
            Sabs = np.abs(S, out=Y)                       # A is not needed any more
            rc = up(0.5 * (np.matmul(Sabs, ones).astype(np.float64)
                           + np.matmul(ones, Sabs)) * rel, 2)
            tr = up(np.trace(S, axis1=-2, axis2=-1, dtype=np.float64), n)
            lam = np.maximum(np.minimum(rc.max(axis=-1), tr), 0.0) * sig_new
            _POOL.give([self.G, self.Gabs])
            self.G, self.Gabs = S.reshape(k, n, n), Sabs.reshape(k, n, n)
            self.sig = sig_new.reshape(k)
        self.steps += 1
        kk = 1 + n * self.steps
        return np.sqrt(up(lam.reshape(k) * kk, 2)) * (1 + 4 * U64)

    def _sync(self):
        """Write the float32 Gram matrices of :meth:`step_f32` back to the float64
        C~ (exact: sigma G), so that :meth:`restart` and :meth:`step` see them."""
        if self.G is not None:
            self.C = np.multiply(self.G, self.sig[:, None, None], dtype=np.float64)
            self.absC = None
            self.release()

    def release(self):
        """Hand the float32 Gram matrices back to the pool (they are no longer valid)."""
        if self.G is not None:
            _POOL.give([self.G, self.Gabs])
        self.G = self.Gabs = None

    def _finish(self, S, E1, gam, out=None):
        n = self.n
        idx = np.arange(n)
        S[:, idx, idx] += up(E1 + gam * gam, 2)
        S[:, idx, idx] *= (1 + 4 * U64)
        A = np.abs(S, out=out)
        ones = np.ones(n)
        # rows and columns of |S| (sums of n non-negative terms in any order, as BLAS
        # matrix-vector products: relative gamma_n each, covered by up)
        rc = 0.5 * up(A @ ones + ones @ A, 2 * n)
        lam = np.minimum(rc.max(axis=1), up(np.trace(S, axis1=1, axis2=2), n))
        return S, A, np.maximum(lam, 0.0)

    def restart(self, idx, N_now):
        """Restart the elements ``idx`` at C = N^2 I (sound at any step)."""
        self._sync()
        self.C[idx] = 0.0
        self.absC = None
        d = up(N_now[idx] * N_now[idx], 1) * (1 + 4 * U64)
        ar = np.arange(self.n)
        self.C[idx[:, None], ar[None, :], ar[None, :]] = d[:, None]
        self.steps[idx] = 0
        self.active[idx] = True

    def maybe_activate(self, N_now, loc_norm, threshold=0.0, together=False):
        """Switch on the elements whose per-step bound exceeds both ACTIVATE
        times the accumulated local rounding and ``threshold``; start at
        C = N^2 I (``together``: all elements once one is due). Returns the indices
        switched on."""
        self.acc = up(self.acc + loc_norm, 2)
        new = (~self.active) & (N_now > self.ACTIVATE * self.acc) & (N_now > threshold)
        if together and new.any():
            new = ~self.active
        idx = np.flatnonzero(new)
        if idx.size:
            self.restart(idx, N_now)
        return idx

    @staticmethod
    def full_piece(J, C, absC):
        """``S = fl(J C J^T)`` and the bound ``e`` on the row sums of the symmetric part
        of its error, J, C, absC = |C| (k, n, n)."""
        n = J.shape[1]
        S = J @ C @ np.swapaxes(J, 1, 2)
        g = gamma(n + 1)
        aJ = np.abs(J)
        v = aJ.sum(axis=1)                          # |J|^T 1
        # |C| v + |C|^T v and |J| w as batched matrix-vector products (BLAS)
        w = (absC @ v[..., None])[..., 0] + (v[:, None, :] @ absC)[:, 0]
        E1 = up((0.5 * (2 * g + g * g)) * (aJ @ w[..., None])[..., 0], 3 * n + 1)
        return S, E1
