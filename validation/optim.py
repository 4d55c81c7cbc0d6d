r"""Adam and global gradient-norm clipping for parameter dicts.

Adam (Kingma & Ba 2015), with bias correction; for each parameter :math:`\theta`
and gradient :math:`g` at step :math:`t = 1, 2, \dots`

.. math::
    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g, \qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2, \\
    \theta_t &= \theta_{t-1} - \eta\,\frac{m_t / (1-\beta_1^t)}
                {\sqrt{v_t / (1-\beta_2^t)} + \epsilon}.
"""
from __future__ import annotations

import math

import numpy as np

from rnnperturb._checks import check_positive

__all__ = ["Adam", "global_norm", "clip_by_global_norm"]


def global_norm(grads: dict) -> float:
    r"""Euclidean norm of all gradient entries together, :math:`\sqrt{\sum_k \|g_k\|_F^2}`."""
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))


def clip_by_global_norm(grads: dict, max_norm: float) -> tuple[dict, float]:
    """Scale all gradients by ``min(1, max_norm / global_norm)``.

    Returns
    -------
    clipped : dict
        New arrays (the input is not modified).
    norm : float
        The global norm before clipping.
    """
    max_norm = check_positive("max_norm", max_norm)
    norm = global_norm(grads)
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {k: g * np.asarray(scale, dtype=g.dtype) for k, g in grads.items()}, norm


class Adam:
    """Adam optimiser over a dict of arrays, updated in place.

    Parameters
    ----------
    params : dict of str to ndarray
        Updated in place by :meth:`step`.
    lr : float
        Learning rate :math:`\\eta`.
    betas : (float, float)
    eps : float
    """

    def __init__(self, params: dict, *, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr = check_positive("lr", lr)
        b1, b2 = betas
        for name, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0.0 <= float(b) < 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1), found {b!r}")
        self.b1, self.b2 = float(b1), float(b2)
        self.eps = check_positive("eps", eps)
        self.params = params
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads: dict) -> None:
        """Apply one Adam update with ``grads`` (same keys as the parameters)."""
        missing = sorted(set(self.params) - set(grads))
        if missing:
            raise ValueError(f"grads: expected keys {sorted(self.params)}, missing {missing}")
        self.t += 1
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        for k, p in self.params.items():
            g = grads[k]
            m, v = self.m[k], self.v[k]
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * (g * g)
            p -= (self.lr / c1) * m / (np.sqrt(v / c2) + self.eps)
