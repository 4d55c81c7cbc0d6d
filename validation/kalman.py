r"""Optimal (Kalman) estimate for the AR(1) signal task, the reference NMSE.

The signal of :func:`rnnperturb.tasks.ar_signal` is linear-Gaussian,

.. math::
    s_t = a s_{t-1} + \sqrt{1-a^2}\,\xi_t,\quad s_1 \sim N(0, 1),\qquad
    x_t = s_t + \sigma \nu_t,

so the Kalman filter gives the minimum-MSE causal estimate of
:math:`s_{t+h}` from :math:`x_1..x_t`: :math:`\hat s_{t+h|t} = a^h \hat s_{t|t}`.
No trained network can beat it in expectation; its NMSE is the floor a
trained regression net is compared against.
"""
from __future__ import annotations

import numpy as np

__all__ = ["kalman_estimate", "kalman_nmse"]


def kalman_estimate(task) -> np.ndarray:
    r"""Kalman-filter prediction of the target of an ``ar_signal`` task.

    Parameters
    ----------
    task : rnnperturb.tasks.Task
        From :func:`rnnperturb.tasks.ar_signal` (uses ``tau``, ``noise``,
        ``horizon``).

    Returns
    -------
    Y : ndarray, shape (T, B, 1)
        :math:`a^h \hat s_{t|t}`, the MMSE estimate of the target.
    """
    if getattr(task, "name", None) != "ar_signal":
        raise ValueError(f"task: expected an 'ar_signal' task, found "
                         f"{getattr(task, 'name', type(task).__name__)!r}")
    p = task.params
    a = np.exp(-1.0 / p["tau"])
    R = p["noise"] ** 2
    x = task.X[:, :, 0]
    T, B = x.shape
    est = np.empty((T, B))
    mean = np.zeros(B)
    P = 1.0                          # stationary prior variance of s_1
    for t in range(T):
        if R > 0:
            K = P / (P + R)
            mean = mean + K * (x[t] - mean)
            P = (1.0 - K) * P
        else:
            mean, P = x[t].copy(), 0.0
        est[t] = mean
        mean = a * mean
        P = a * a * P + (1.0 - a * a)
    return (a ** p["horizon"] * est)[:, :, None]


def kalman_nmse(task) -> float:
    """NMSE (:func:`rnnperturb.tasks.metrics.nmse`) of the Kalman estimate on ``task``."""
    from rnnperturb.tasks.metrics import nmse
    return nmse(kalman_estimate(task), task)
