r"""Temporal coherence of the error forcing, and the scaling laws it implies.

For a cell whose state is more than its h (the LSTM's (h, c), a stacked
network's layers) every measure here is taken over the full state
(N = ``cell.state_size`` components).

The first-order deviation is a propagated sum of forcings
(``DESIGN.md`` §2(a)), :math:`\ell_t = \sum_{k\le t}\Phi(t,k) B_k \Delta W a_k`.
Whether the terms add in *amplitude* (coherently) or in *energy*
(incoherently) decides how the error grows with the delay. Three measures,
from the most to the least informed:

1. :func:`coherence_ratio` -- :math:`C_t = \mathbb E_\text{frozen}\|\ell_t\|^2 /
   \mathbb E_\text{fresh}\|\ell_t\|^2` for random weight noise. Exact at first
   order; uses the propagator. The right measure for *random* perturbations
   (noise, drift, quantization): it averages over the direction of
   :math:`\Delta W`. By Cauchy--Schwarz :math:`0 \le C_t \le t`.
2. :func:`fixed_coherence` -- for one given :math:`\Delta W` (an SVD
   truncation, a quantization) the ratio
   :math:`\|\sum_k \Phi(t,k) f_k\|^2 / \sum_k\|\Phi(t,k) f_k\|^2`,
   :math:`f_k = B_k\Delta W a_k`. The right measure for a *structured*
   perturbation, whose forcing directions are not random: its alignment with
   the slow modes of :math:`\Phi` is included.
3. :func:`trajectory_coherence` -- the trajectory alone, from the Gram matrix
   :math:`G_{kl} = a_k^\top a_l` of the forcing inputs (hidden states),
   optionally with a scalar memory :math:`\lambda = e^{-1/\tau}` for the
   propagator: it is :math:`C_t` exactly when
   :math:`\operatorname{tr}(B_k^\top\Phi(t,k)^\top\Phi(t,l)B_l) = n\lambda^{2t-k-l}`
   for all k, l (an isotropic, direction-preserving propagator such as
   :math:`\Phi(t,k)B_k = \lambda^{t-k}I`). It assumes a forcing gain :math:`B_k` that
   does not change along the trajectory (tanh units away from saturation):
   with ``memory=inf`` it is then right for *slow* propagators (a net
   holding a memory through a blank delay); for fast ones give the memory
   (:func:`propagator_decay` estimates it from the propagator).
   :func:`predicted_coherence` keeps the isotropic propagator but uses the
   net's forcing maps :math:`B_k` (forcing Gram matrix); it is the right cheap
   predictor for gated cells, whose gate switches the forcing off during a
   delay. When the propagator is far from isotropic, use (1).

**Where coherence matters** (scalar model, :func:`scalar_response`). With
:math:`\ell_t = \lambda\ell_{t-1} + \varepsilon f_t` and a forcing of
correlation :math:`r^{|k-l|}`, the stationary coherence is

.. math:: C_\infty = \frac{1+\lambda r}{1-\lambda r}
          \approx \frac{2}{1/\tau_\Phi + 1/\tau_c}\quad(\tau\gg 1),

:math:`\lambda = e^{-1/\tau_\Phi}`, :math:`r = e^{-1/\tau_c}`. Coherence only
matters (:math:`C > 2`) when :math:`\lambda r > 1/3`: both the propagator
memory and the trajectory coherence time must be long; the shorter one sets
the scale. For a non-decaying propagator (:math:`\lambda = 1`) the RMS
deviation grows :math:`\propto t` (amplitude, coherent, :math:`r=1`) or
:math:`\propto\sqrt t` (energy, incoherent, :math:`r=0`); a contractive one
saturates at :math:`\varepsilon^2/(1-\lambda)^2` and
:math:`\varepsilon^2/(1-\lambda^2)` respectively.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import as_h0, as_inputs, as_param, check_positive
from rnnperturb.stats.noise import noise_response, noise_variances

__all__ = [
    "coherence_ratio", "FixedCoherence", "fixed_coherence", "trajectory_coherence",
    "normalised_gram", "coherence_time", "propagator_decay", "predicted_coherence",
    "scalar_response", "scalar_saturation", "scalar_coherence",
]


def _ratio(num, den):
    out = np.full(np.shape(num), np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def coherence_ratio(cell, X, *, std: float = 1.0, var=None, h0=None) -> np.ndarray:
    r"""Frozen/fresh ratio :math:`C_t` of the first-order noise response.

    .. math:: C_t = \frac{\sum_{k,l}\operatorname{tr}(\Phi(t,k)B_k
              \operatorname{diag}(V(a_k\odot a_l))B_l^\top\Phi(t,l)^\top)}
              {\sum_k\operatorname{tr}(\Phi(t,k)B_k
              \operatorname{diag}(V(a_k\odot a_k))B_k^\top\Phi(t,k)^\top)}

    :math:`\approx 1`: incoherent (random walk); up to :math:`t`: coherent
    forcing through a non-decaying propagator; :math:`<1`: anti-correlated.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    std, var, h0
        As in :func:`rnnperturb.noise_response` (a common scale cancels).

    Returns
    -------
    C : ndarray, shape (T, B) or (T,)
        NaN where both responses vanish (e.g. t = 1 with h0 = 0).
    """
    fz = noise_response(cell, X, std=std, var=var, h0=h0, frozen=True)
    fr = noise_response(cell, X, std=std, var=var, h0=h0, frozen=False)
    return _ratio(fz, fr)


@dataclass(frozen=True, eq=False)
class FixedCoherence:
    r"""Coherent and incoherent sums of the propagated forcing of one ΔW.

    Attributes
    ----------
    coherent : ndarray, shape (T, B) or (T,)
        :math:`\|\ell_t\|^2 = \|\sum_k\Phi(t,k)f_k\|^2`.
    incoherent : ndarray, same shape
        :math:`\sum_k\|\Phi(t,k)f_k\|^2`.
    ratio : ndarray, same shape
        coherent / incoherent (NaN where both vanish).
    """

    coherent: np.ndarray
    incoherent: np.ndarray
    ratio: np.ndarray


def fixed_coherence(cell, other, X, *, h0=None) -> FixedCoherence:
    r"""Coherence of the first-order deviation caused by one fixed ΔW.

    .. math:: \rho_t = \frac{\|\sum_{k\le t}\Phi(t,k) f_k\|^2}
              {\sum_{k\le t}\|\Phi(t,k) f_k\|^2},\qquad
              f_k = \sum_m B^{(m)}_k\Delta W_m a^{(m)}_k,

    with the incoherent sum carried as :math:`Q_t = J_tQ_{t-1}J_t^\top + f_tf_t^\top`
    (:math:`O(Tn^3)`). Use it for structured perturbations (truncation); for
    random ones, :func:`coherence_ratio` is its expectation-level analogue.

    Parameters
    ----------
    cell : Cell
    other : same cell type, or dict of str to ndarray (n, n)
        The perturbed cell, or the perturbation ΔW per recurrent matrix.
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, optional

    Returns
    -------
    FixedCoherence
    """
    if isinstance(other, dict):
        dW = cell._check_dW(other)
    else:
        from rnnperturb.propagate.deviation import delta_recurrent
        dW = delta_recurrent(cell, other)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    N = cell.state_size          # over the full state (the LSTM's h and c, every layer)
    h = as_h0(h0, N, X3.shape[1], single, cell.dtype).astype(np.float64)
    cell = cell.astype(np.float64)
    T, B = X3.shape[:2]
    ell = np.zeros((B, N))
    Q = np.zeros((B, N, N))
    coh, inc = np.zeros((T, B)), np.zeros((T, B))
    for t in range(T):
        hn, J, forc = cell.linearise(h, X3[t])
        f = np.zeros((B, N))
        for k, (diag, Bt, a) in forc.items():
            if k in dW:
                g = a @ dW[k].T
                f += Bt * g if diag else np.einsum("bij,bj->bi", Bt, g)
        ell = np.einsum("bij,bj->bi", J, ell) + f
        Q = J @ Q @ np.swapaxes(J, 1, 2) + f[:, :, None] * f[:, None, :]
        coh[t] = np.sum(ell * ell, 1)
        inc[t] = np.trace(Q, axis1=1, axis2=2)
        h = hn
    rat = _ratio(coh, inc)
    if single:
        coh, inc, rat = coh[:, 0], inc[:, 0], rat[:, 0]
    return FixedCoherence(coh, inc, rat)


def _forcing_inputs(H, h0):
    """Forcing inputs a_t = h_{t-1}: (T, B, n) from H (T, B, n) or (T, n)."""
    H = np.asarray(H, dtype=np.float64)
    if H.ndim not in (2, 3):
        raise ValueError(f"H: expected shape (T, B, n) or (T, n), found shape {H.shape}")
    single = H.ndim == 2
    H3 = as_param("H", H[:, None, :] if single else H, dtype=np.float64)
    h = as_h0(h0, H3.shape[2], H3.shape[1], single, np.float64)
    return np.concatenate([h[None], H3[:-1]], axis=0), single


def trajectory_coherence(H, *, memory: float = np.inf, h0=None) -> np.ndarray:
    r"""Trajectory-only prediction of :math:`C_t`.

    .. math:: C^\text{traj}_t = \frac{\|\sum_{k\le t}\lambda^{t-k} a_k\|^2}
              {\sum_{k\le t}\lambda^{2(t-k)}\|a_k\|^2},\qquad
              a_k = h_{k-1},\ \lambda = e^{-1/\text{memory}},

    i.e. :math:`\sum_{kl}\lambda^{2t-k-l}G_{kl}/\sum_k\lambda^{2(t-k)}G_{kk}`
    with the Gram matrix :math:`G_{kl} = h_{k-1}^\top h_{l-1}`. It equals
    :math:`C_t` for i.i.d. noise when
    :math:`\operatorname{tr}(B_k^\top\Phi(t,k)^\top\Phi(t,l)B_l) = n\lambda^{2t-k-l}`
    (e.g. :math:`\Phi(t,k)B_k = \lambda^{t-k}I`; then :math:`\mathbb E[\Delta W a b^\top\Delta W^\top]
    = s^2 a^\top b\, I` and the propagator factors out). ``memory=inf``: slow
    propagators (memory held through a delay). The Gram matrix is *uncentred*:
    a constant mean hidden state is a coherent component.

    Parameters
    ----------
    H : array_like, shape (T, B, n) or (T, n)
        Hidden states, ``H[t-1] = h_t``.
    memory : float
        Propagator memory :math:`\tau_\Phi` in steps (> 0; inf for none).
    h0 : array_like, optional
        :math:`h_0` (zeros when None).

    Returns
    -------
    C : ndarray, shape (T, B) or (T,)
        NaN where the denominator vanishes.
    """
    memory = check_positive("memory", memory) if np.isfinite(memory) else np.inf
    A, single = _forcing_inputs(H, h0)
    lam = np.exp(-1.0 / memory)
    s = np.zeros(A.shape[1:])
    q = np.zeros(A.shape[1])
    num, den = np.zeros(A.shape[:2]), np.zeros(A.shape[:2])
    for t in range(A.shape[0]):
        s = lam * s + A[t]
        q = lam * lam * q + np.sum(A[t] ** 2, -1)
        num[t], den[t] = np.sum(s * s, -1), q
    out = _ratio(num, den)
    return out[:, 0] if single else out


def normalised_gram(H, *, h0=None) -> np.ndarray:
    r"""Normalised Gram matrix (cosine similarity) of the forcing inputs
    :math:`a_k = h_{k-1}`: :math:`\rho_{kl} = a_k^\top a_l/(\|a_k\|\|a_l\|)`
    (0 where a state vanishes).

    Returns
    -------
    R : ndarray, shape (B, T, T) or (T, T)
    """
    A, single = _forcing_inputs(H, h0)
    nrm = np.linalg.norm(A, axis=-1)
    U = np.divide(A, nrm[..., None], out=np.zeros_like(A), where=nrm[..., None] > 0)
    R = np.einsum("kbi,lbi->bkl", U, U)
    return R[0] if single else R


def coherence_time(H, *, h0=None) -> np.ndarray:
    r"""Coherence time of a trajectory: the mean row sum of its normalised
    Gram matrix,

    .. math:: \tau_c = \frac{1}{T'}\sum_{k,l}\rho_{kl}
              = \sum_{|\Delta|<T'}\Big(1-\frac{|\Delta|}{T'}\Big)\bar\rho(\Delta),

    over the :math:`T'` non-zero forcing inputs :math:`a_k = h_{k-1}`
    (:math:`\bar\rho(\Delta)` the mean of the Δ-th diagonal). It is
    :func:`trajectory_coherence` for a non-decaying propagator and equal
    norms. A constant trajectory gives :math:`T'` (coherent over the whole
    window), mutually orthogonal states give 1, and a stationary correlation
    :math:`r^{|\Delta|}` gives :math:`(1+r)/(1-r)` for :math:`T'\gg\tau_c`.

    Returns
    -------
    tau : ndarray, shape (B,) or float
    """
    R = normalised_gram(H, h0=h0)
    R3 = R[None] if R.ndim == 2 else R
    nz = np.count_nonzero(np.abs(np.diagonal(R3, axis1=1, axis2=2)) > 0, axis=1)
    tau = R3.sum(axis=(1, 2)) / np.maximum(nz, 1)
    return float(tau[0]) if R.ndim == 2 else tau


def propagator_decay(cell, X, *, std: float = 1.0, var=None, h0=None) -> np.ndarray:
    r"""Per-step energy decay :math:`\lambda` of the propagator, seen by the
    fresh-noise cloud.

    With :math:`P_t` the fresh-noise covariance (see
    :func:`rnnperturb.noise_response`),
    :math:`\lambda_t^2 = \operatorname{tr}(J_tP_{t-1}J_t^\top)/\operatorname{tr}P_{t-1}`,
    and :math:`\lambda` is its geometric mean over the steps with
    :math:`P_{t-1}\ne 0`. The memory is :math:`\tau_\Phi = -1/\ln\lambda`
    (infinite when :math:`\lambda\ge 1`). It calibrates the scalar model
    :math:`\ell_t = \lambda\ell_{t-1}+\varepsilon f_t` to the net.

    Returns
    -------
    lam : ndarray, shape (B,) or float
    """
    V = noise_variances(cell, std=std, var=var)
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, np.float64)
    cell = cell.astype(np.float64)
    B, n, N = X3.shape[1], cell.n, cell.state_size
    P = np.zeros((B, N, N))       # over the full state
    idx = np.arange(n)
    logs, cnt = np.zeros(B), np.zeros(B)
    for t in range(X3.shape[0]):
        hn, J, forc = cell.linearise(h, X3[t])
        tr0 = np.trace(P, axis1=1, axis2=2)
        P = J @ P @ np.swapaxes(J, 1, 2)
        tr1 = np.trace(P, axis1=1, axis2=2)
        ok = tr0 > 0
        logs[ok] += 0.5 * np.log(tr1[ok] / tr0[ok])
        cnt[ok] += 1
        for k, Vk in V.items():
            diag, Bt, a = forc[k]
            q = Vk * np.sum(a * a, 1)[:, None] if np.ndim(Vk) == 0 else (a * a) @ Vk.T
            if diag:
                P[:, idx, idx] += Bt * Bt * q
            else:
                P += (Bt * q[:, None, :]) @ np.swapaxes(Bt, 1, 2)
        h = hn
    lam = np.exp(np.divide(logs, cnt, out=np.full(B, -np.inf), where=cnt > 0))
    return float(lam[0]) if single else lam


def _weighted_pair_sums(G, lam):
    """num_t = sum_{k,l<=t} lam^{2t-k-l} G_kl and den_t = sum_k lam^{2(t-k)} G_kk
    for a (T, T) Gram matrix, by an O(T^2) recursion."""
    T = G.shape[0]
    num, den = np.zeros(T), np.zeros(T)
    n_prev = d_prev = 0.0
    for t in range(T):
        cross = np.sum(lam ** (t - np.arange(t)) * G[:t, t]) if t else 0.0
        n_prev = lam * lam * n_prev + 2 * cross + G[t, t]
        d_prev = lam * lam * d_prev + G[t, t]
        num[t], den[t] = n_prev, d_prev
    return num, den


def predicted_coherence(cell, X, *, h0=None, lam=None) -> np.ndarray:
    r"""Prediction of :math:`C_t` with an isotropic propagator
    :math:`\Phi(t,k) = \lambda^{t-k} I` but the net's own forcing maps:

    .. math:: C^\text{iso}_t = \frac{\sum_{k,l}\lambda^{2t-k-l}K_{kl}}
              {\sum_k\lambda^{2(t-k)}K_{kk}},\qquad
              K_{kl} = \sum_m (a^{(m)\top}_k a^{(m)}_l)\,
              \operatorname{tr}(B^{(m)\top}_k B^{(m)}_l),

    the forcing Gram matrix (i.i.d. noise, so
    :math:`\mathbb E[\Delta W a b^\top\Delta W^\top] = s^2 a^\top b\,I`).
    Unlike :func:`trajectory_coherence` it sees how the forcing gain
    :math:`B_k` changes along the trajectory: the MGRU gate closes it during a
    delay (:math:`B \propto f\approx 0`), and its :math:`W_f` forcing carries
    the sign-changing factor :math:`c_t - h_{t-1}`. The only propagator
    information is the scalar decay :math:`\lambda` (default
    :func:`propagator_decay`). Cost :math:`O(T^2n^2 + Tn^3)` per sequence.

    Parameters
    ----------
    cell : Cell
    X : array_like, shape (T, B, m) or (T, m)
    h0 : array_like, optional
    lam : float, optional
        Propagator factor; default :func:`propagator_decay` per sequence.

    Returns
    -------
    C : ndarray, shape (T, B) or (T,)
    """
    X3, single = as_inputs(X, cell.m, cell.dtype)
    h = as_h0(h0, cell.state_size, X3.shape[1], single, np.float64)
    T, B = X3.shape[:2]
    lams = (np.atleast_1d(propagator_decay(cell, X3, h0=h)) if lam is None
            else np.full(B, check_positive("lam", lam, allow_zero=True)))
    cell = cell.astype(np.float64)
    A = {k: np.empty((T, B, cell.n)) for k in cell.recurrent_names}
    Bv = {k: np.empty((T, B, cell.state_size * cell.n)) for k in cell.recurrent_names}
    hh = h.copy()
    for t in range(T):
        hn, _, forc = cell.linearise(hh, X3[t])
        for k, (diag, Bt, a) in forc.items():
            A[k][t] = a
            Bv[k][t] = (np.einsum("bi,ij->bij", Bt, np.eye(cell.n)) if diag
                        else Bt).reshape(B, -1)
        hh = hn
    out = np.empty((T, B))
    for b in range(B):
        K = sum((A[k][:, b] @ A[k][:, b].T) * (Bv[k][:, b] @ Bv[k][:, b].T) for k in A)
        num, den = _weighted_pair_sums(K, min(float(lams[b]), 1.0))
        out[:, b] = _ratio(num, den)
    return out[:, 0] if single else out


# ----------------------------------------------------------------- scaling laws
def _check_lam_r(lam, r):
    lam = float(lam)
    r = float(r)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam: expected a finite number >= 0, found {lam!r}")
    if not (0.0 <= r <= 1.0):
        raise ValueError(f"r: expected a correlation in [0, 1], found {r!r}")
    return lam, r


def scalar_response(lam: float, t, *, eps: float = 1.0, r: float = 0.0) -> np.ndarray:
    r"""Closed form of :math:`\mathbb E\ell_t^2` for the scalar model

    .. math:: \ell_t = \lambda\ell_{t-1} + \varepsilon f_t,\quad \ell_0 = 0,\quad
              \mathbb E f_kf_l = r^{|k-l|}

    (:math:`r = 1`: constant forcing, coherent; :math:`r = 0`: i.i.d.,
    incoherent). With :math:`q = \lambda r` and
    :math:`S_0 = \sum_{u<t}\lambda^{2u}`:

    .. math:: \mathbb E\ell_t^2 = \varepsilon^2\Big[S_0\frac{1+q}{1-q}
              - \frac{2q}{1-q}\sum_{u=0}^{t-1}\lambda^{2u}q^{t-1-u}\Big],\qquad
              \sum_{u=0}^{t-1}\lambda^{2u}q^{t-1-u} = \frac{\lambda^{2t}-q^t}{\lambda^2-q},

    with the limits taken where a denominator vanishes (:math:`q = 1`:
    :math:`\varepsilon^2t^2`; :math:`\lambda^2 = q`: :math:`tq^{t-1}`).

    Parameters
    ----------
    lam : float
        Propagator factor :math:`\lambda\ge 0`.
    t : int or array_like of int
        Steps (>= 0).
    eps : float
        Forcing amplitude.
    r : float in [0, 1]
        Lag-one correlation of the forcing.

    Returns
    -------
    ndarray, shape of ``t``
    """
    lam, r = _check_lam_r(lam, r)
    eps = check_positive("eps", eps, allow_zero=True)
    t = np.asarray(t)
    if t.dtype.kind not in "iu" or np.any(t < 0):
        raise ValueError(f"t: expected integers >= 0, found {t!r}")
    tf = t.astype(float)
    q = lam * r
    l2 = lam * lam
    S0 = tf if abs(1 - l2) < 1e-15 else (1 - l2 ** tf) / (1 - l2)
    if abs(1 - q) < 1e-12:                      # q = 1: sum_{u<v} lam^{u+v} r^{v-u} = lam^{2u}
        out = np.array([np.sum(l2 ** np.arange(n) * (1 + 2 * (n - 1 - np.arange(n))))
                        for n in t.ravel()]).reshape(t.shape)
        return eps ** 2 * out
    if abs(l2 - q) < 1e-15 * max(1.0, l2):
        mix = tf * q ** np.maximum(tf - 1, 0)
    else:
        mix = (l2 ** tf - q ** tf) / (l2 - q)
    out = S0 * (1 + q) / (1 - q) - 2 * q / (1 - q) * mix
    return eps ** 2 * np.where(t == 0, 0.0, out)


def scalar_saturation(lam: float, *, eps: float = 1.0, r: float = 0.0) -> float:
    r"""Saturation level :math:`\lim_{t\to\infty}\mathbb E\ell_t^2 =
    \varepsilon^2\frac{1}{1-\lambda^2}\frac{1+\lambda r}{1-\lambda r}` of
    :func:`scalar_response` (``inf`` when :math:`\lambda\ge 1`).
    :math:`r=1`: :math:`\varepsilon^2/(1-\lambda)^2`; :math:`r=0`:
    :math:`\varepsilon^2/(1-\lambda^2)`."""
    lam, r = _check_lam_r(lam, r)
    eps = check_positive("eps", eps, allow_zero=True)
    if lam >= 1:
        return np.inf
    return eps ** 2 / (1 - lam * lam) * (1 + lam * r) / (1 - lam * r)


def scalar_coherence(lam: float, t, *, r: float) -> np.ndarray:
    r"""Frozen/fresh ratio :math:`C_t` of the scalar model: a frozen weight
    error :math:`\varepsilon` on a trajectory of correlation :math:`r`,
    against fresh noise (which decorrelates any forcing, :math:`r = 0`).
    Stationary value :math:`(1+\lambda r)/(1-\lambda r)`; for
    :math:`\lambda = r = 1` it is :math:`t`."""
    t = np.asarray(t)
    num = scalar_response(lam, t, r=r)
    den = scalar_response(lam, t, r=0.0)
    return _ratio(num, den)
