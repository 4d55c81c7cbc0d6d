r"""Array namespaces: the few operations a cell's step is written in.

A cell writes its step once (:meth:`rnnperturb.cells.protocol.Cell.forward`)
with the arithmetic operators ``+ - *`` and the functions of a namespace ``ns``:

``ns.tanh(a)``, ``ns.sigmoid(a)``
    elementwise activations;
``ns.matvec(A, v)``
    :math:`A v` for a batch of vectors ``v`` of shape (..., k), i.e. ``v @ A.T``;
``ns.lerp(h, c, f)``
    the gated update :math:`(1 - f) \odot h + f \odot c`;
``ns.asarray(A)``
    a parameter converted to the namespace's arrays.

The same definition then runs in float32, float64 and longdouble
(:data:`FLOAT`), in mpmath (:mod:`rnnperturb.verified.highprec`), in interval
arithmetic (:mod:`rnnperturb.verified.interval`) and in sympy
(:mod:`rnnperturb.symbolic`), each of which defines its own namespace with
these names. This is the array-API style of ``jax.numpy``: one definition of a
step serves every number type.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sigmoid", "FloatNamespace", "FLOAT"]


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function ``1 / (1 + exp(-a))``, any float dtype."""
    a = np.asarray(a)
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    ea = np.exp(a[~pos])
    out[~pos] = ea / (1.0 + ea)
    return out


class FloatNamespace:
    """The namespace of NumPy floating-point arrays (float32, float64, longdouble)."""

    tanh = staticmethod(np.tanh)
    sigmoid = staticmethod(sigmoid)

    @staticmethod
    def matvec(A, v):
        """``A v`` for a batch ``v`` (..., k): one 2-D GEMM over all leading axes."""
        if v.ndim <= 2:
            return v @ A.T
        return (v.reshape(-1, v.shape[-1]) @ A.T).reshape(v.shape[:-1] + (A.shape[0],))

    @staticmethod
    def lerp(h, c, f):
        """:math:`(1 - f) h + f c`."""
        return (1.0 - f) * h + f * c

    @staticmethod
    def asarray(A):
        return A


#: The float namespace (float32, float64 and longdouble alike).
FLOAT = FloatNamespace()
