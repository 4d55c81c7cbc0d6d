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
    a parameter converted to the namespace's arrays;
``ns.split(a, sections)``, ``ns.concat(parts)``
    the pieces of a state along its last axis (``sections`` an int: that
    many equal pieces; a sequence of ints: pieces of those sizes) and their
    concatenation (leading axes broadcast): a state made of several vectors,
    the LSTM's :math:`(h, c)` or the layers of a stacked network, is one array
    whose pieces the step takes apart and puts together (:func:`split`,
    :func:`concat` do it for any array type that slices like NumPy).

The same definition then runs in float32, float64 and longdouble
(:data:`FLOAT`), in mpmath (:mod:`rnnperturb.verified.highprec`), in interval
arithmetic (:mod:`rnnperturb.verified.interval`) and in sympy
(:mod:`rnnperturb.symbolic`), each of which defines its own namespace with
these names. This is the array-API style of ``jax.numpy``: one definition of a
step serves every number type.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sigmoid", "FloatNamespace", "FLOAT", "DiagonalStack", "split", "concat", "piece_sizes"]


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function ``1 / (1 + exp(-a))``, any float dtype."""
    a = np.asarray(a)
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    ea = np.exp(a[~pos])
    out[~pos] = ea / (1.0 + ea)
    return out


class DiagonalStack:
    r"""A stack of scaled basis vectors, kept symbolic: entry ``[j, b, i]`` is
    :math:`d_{b,j}\,\delta_{ij}`, for ``d`` of shape (B, k).

    The tangent step applied to the standard basis (to form a Jacobian or a
    forcing matrix column by column) multiplies such stacks by vectors and by
    matrices; kept symbolic, a product with a vector stays a DiagonalStack and
    a product with a matrix is a broadcast of its columns (``A e_j = A[:, j]``,
    exactly what a GEMM with the basis gives, without the O(n^3) work). Any
    other operation turns it into the dense (k, B, k) array.
    """

    __array_ufunc__ = None      # make NumPy defer to the reflected operators below

    def __init__(self, d):
        self.d = d

    def dense(self):
        B, k = self.d.shape
        out = np.zeros((k, B, k), dtype=self.d.dtype)
        idx = np.arange(k)
        out[idx, :, idx] = self.d.T
        return out

    @staticmethod
    def _vector(other):
        """``other`` as something that broadcasts against (B, k), or None."""
        return other if np.ndim(other) <= 2 else None

    def __mul__(self, other):
        if isinstance(other, DiagonalStack):
            return DiagonalStack(self.d * other.d)
        if self._vector(other) is not None:
            return DiagonalStack(self.d * other)
        return self.dense() * other

    __rmul__ = __mul__

    def __add__(self, other):
        if isinstance(other, DiagonalStack):
            return DiagonalStack(self.d + other.d)
        if np.ndim(other) == 0 and other == 0:
            return self
        return self.dense() + other

    __radd__ = __add__

    def __neg__(self):
        return DiagonalStack(-self.d)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def matvec(self, A):
        """:math:`A v` for every vector of the stack: ``[j, b, i] = A[i, j] d[b, j]``."""
        if not self.d.any():
            return DiagonalStack(np.zeros(self.d.shape[:1] + (A.shape[0],),
                                          np.result_type(A, self.d)))
        return A.T[:, None, :] * self.d.T[:, :, None]


def piece_sizes(total: int, sections) -> list[int]:
    """The sizes of the pieces ``split(a, sections)`` cuts a last axis of length ``total`` into
    (``sections`` an int: that many equal pieces; a sequence: those sizes), checked."""
    if isinstance(sections, (int, np.integer)):
        if sections < 1 or total % sections:
            raise ValueError(f"sections: expected a divisor of the last dimension {total}, "
                             f"found {sections}")
        return [total // int(sections)] * int(sections)
    sizes = [int(s) for s in sections]
    if sum(sizes) != total or min(sizes, default=0) < 0:
        raise ValueError(f"sections: expected sizes summing to the last dimension {total}, "
                         f"found {sizes}")
    return sizes


def split(a, sections):
    """The pieces of ``a`` along its last axis (views for NumPy arrays).

    Parameters
    ----------
    a : array, shape (..., N)
        NumPy arrays (float or object) or anything that slices like them; a
        :class:`DiagonalStack` is made dense first.
    sections : int or sequence of int
        That many equal pieces, or the sizes of the pieces (summing to N).

    Returns
    -------
    tuple of arrays, shapes (..., N_i)
    """
    if isinstance(a, DiagonalStack):
        a = a.dense()
    out, start = [], 0
    for k in piece_sizes(a.shape[-1], sections):
        out.append(a[..., start:start + k])
        start += k
    return tuple(out)


def concat(parts):
    """The concatenation of ``parts`` along the last axis, leading axes broadcast.

    Parameters
    ----------
    parts : sequence of arrays, shapes (..., N_i)
        NumPy arrays (float or object); a :class:`DiagonalStack` is made dense.

    Returns
    -------
    array, shape (..., sum N_i)
    """
    parts = [p.dense() if isinstance(p, DiagonalStack) else np.asarray(p) for p in parts]
    lead = np.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return np.concatenate([np.broadcast_to(p, lead + p.shape[-1:]) for p in parts], axis=-1)


class FloatNamespace:
    """The namespace of NumPy floating-point arrays (float32, float64, longdouble)."""

    tanh = staticmethod(np.tanh)
    sigmoid = staticmethod(sigmoid)

    @staticmethod
    def matvec(A, v):
        """``A v`` for a batch ``v`` (..., k): one 2-D GEMM over all leading axes
        (a :class:`DiagonalStack` is multiplied column by column, without a GEMM)."""
        if isinstance(v, DiagonalStack):
            return v.matvec(A)
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

    split = staticmethod(split)
    concat = staticmethod(concat)


#: The float namespace (float32, float64 and longdouble alike).
FLOAT = FloatNamespace()
