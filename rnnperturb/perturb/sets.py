r"""Sets of perturbations of the recurrent matrices, for certificates over sets.

A set :math:`S` describes every :math:`\Delta W = (\Delta W_k)_k` (one matrix
per recurrent matrix of the cell, keys from ``cell.recurrent_names``) that
may be applied: :math:`W'_k = W_k + \Delta W_k`. Certificates over a set
(:func:`rnnperturb.bounds.set_bound.set_bound`) hold for *every* member.

:class:`Ball`
    :math:`\|\Delta W_k\|_F \le \varepsilon_k` for every recurrent matrix
    :math:`k` (a product of Frobenius balls; ``radius`` a float for all
    matrices or a dict by name, missing names unperturbed).
:class:`Box`
    :math:`|\Delta W_{k,ij}| \le E_{k,ij}` (``radius`` a float, an (n, n)
    array, or a dict by name of either).
:func:`quantization`
    the Box of every round-to-nearest onto the b-bit grid of
    :func:`rnnperturb.perturb.elementwise.quantize` (same step, same
    ``scheme=``): :math:`|\Delta W_{ij}| \le s/2`; with ``rounding="any"``
    every rounding onto that grid (stochastic, toward zero, floor):
    :math:`|\Delta W_{ij}| < s`. A relative margin of :math:`2^{-50}` (plus
    :math:`2^{-50}\max|W|`) covers the rounding of ``quantize``'s own float
    evaluation of :math:`s\,\mathrm{round}(w/s)`, so the actual output of
    ``quantize`` is always a member.
:func:`drift`
    the Box :math:`|\Delta W_{ij}| \le d\,|W_{ij}|` (radius inflated by a relative
    :math:`2^{-50}` so that the exact :math:`d|W_{ij}|` is inside).

Every set is a frozen dataclass, convex, symmetric and contains 0.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import (as_generator, check_int, check_positive, describe,
                                recurrent_subset)

__all__ = ["Ball", "Box", "quantization", "drift", "PerturbationSet"]

_MARGIN = 2.0 ** -50


def _check_names(cell, keys, what):
    unknown = sorted(set(keys) - set(cell.recurrent_names))
    if unknown:
        raise ValueError(f"{what}: expected keys among {list(cell.recurrent_names)}, "
                         f"found {unknown}")


def _radius_scalar(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a finite number >= 0, found {describe(value)}")
    return check_positive(name, value, allow_zero=True)


def _radius_array(name, value):
    if isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
        a = np.array(value, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"{name}: expected a float or a square (n, n) array, found shape "
                             f"{a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"{name}: expected finite entries >= 0, found "
                             f"{'NaN/Inf' if not np.all(np.isfinite(a)) else 'negative entries'}")
        a.setflags(write=False)
        return a
    return _radius_scalar(name, value)


class PerturbationSet:
    """Common interface of the sets (see the module docstring)."""

    def radii(self, cell) -> dict:
        raise NotImplementedError

    def project(self, cell, dW: dict) -> dict:
        """The member of the set nearest to ``dW`` (Euclidean projection per
        matrix; exact for the Ball and the Box)."""
        raise NotImplementedError

    def contains(self, cell, dW: dict, rtol: float = 1e-12) -> bool:
        """Whether ``dW`` (dict by name, missing names zero) is in the set (up to ``rtol``)."""
        raise NotImplementedError

    def sample(self, cell, seed, how: str = "boundary") -> dict:
        r"""One member of the set, drawn from ``seed``.

        ``how``: ``"boundary"`` (a sphere point of each ball / a random vertex of
        the box), ``"interior"`` (uniform scaling of a boundary point),
        ``"spike"`` (rank one: the ball radius on :math:`u v^T`; a box vertex
        restricted to one row and one column pattern, :math:`E\odot
        \mathrm{sign}(u v^T)`).
        """
        raise NotImplementedError


def _radii(r, convert):
    """A set's radius, checked: one value, or a dict by matrix name (str keys) of values,
    each converted by ``convert(name, value)``."""
    if not isinstance(r, dict):
        return convert("radius", r)
    for k in r:
        if not isinstance(k, str):
            raise ValueError(f"radius: expected a dict with str keys (matrix names), "
                             f"found key {describe(k)}")
    return {k: convert(f"radius[{k!r}]", v) for k, v in r.items()}


@dataclass(frozen=True, eq=False)
class Ball(PerturbationSet):
    r"""Product of Frobenius balls, :math:`\|\Delta W_k\|_F \le \varepsilon_k`.

    Parameters
    ----------
    radius : float or dict of str to float
        :math:`\varepsilon` for every recurrent matrix, or by matrix name
        (names not in the dict are not perturbed).
    norm : {'fro'}
        The norm of the ball (only the Frobenius norm).
    """

    radius: float | dict = 0.0
    norm: str = "fro"

    def __post_init__(self):
        if self.norm != "fro":
            raise ValueError(f"norm: expected 'fro', found {describe(self.norm)}")
        object.__setattr__(self, "radius", _radii(self.radius, _radius_scalar))

    def radii(self, cell) -> dict[str, float]:
        """:math:`\\varepsilon_k` for every recurrent matrix of ``cell`` (0 if not perturbed)."""
        if isinstance(self.radius, dict):
            _check_names(cell, self.radius, "radius")
            return {k: float(self.radius.get(k, 0.0)) for k in cell.recurrent_names}
        return {k: float(self.radius) for k in cell.recurrent_names}

    def project(self, cell, dW):
        eps = self.radii(cell)
        out = {}
        for k in cell.recurrent_names:
            D = np.zeros((cell.n, cell.n)) if k not in dW else np.asarray(dW[k], np.float64)
            nrm = np.linalg.norm(D)
            out[k] = D * (eps[k] / nrm) if nrm > eps[k] else D.copy()
        return out

    def contains(self, cell, dW, rtol=1e-12):
        eps = self.radii(cell)
        _check_names(cell, dW, "dW")
        return all(np.linalg.norm(np.asarray(v, np.float64)) <= eps[k] * (1 + rtol)
                   for k, v in dW.items())

    def sample(self, cell, seed, how="boundary"):
        rng = as_generator(seed)
        eps = self.radii(cell)
        n = cell.n
        out = {}
        for k in cell.recurrent_names:
            if how == "spike":
                u, v = rng.standard_normal(n), rng.standard_normal(n)
                D = np.outer(u, v)
            elif how in ("boundary", "interior"):
                D = rng.standard_normal((n, n))
            else:
                raise ValueError(f"how: expected 'boundary', 'interior' or 'spike', found "
                                 f"{describe(how)}")
            D = D * (eps[k] / max(np.linalg.norm(D), 1e-300)) * (1 - 1e-12)
            if how == "interior":
                D = D * rng.uniform()
            out[k] = D
        return out


@dataclass(frozen=True, eq=False)
class Box(PerturbationSet):
    r"""Box :math:`|\Delta W_{k,ij}| \le E_{k,ij}`.

    Parameters
    ----------
    radius : float, ndarray (n, n), or dict of str to float or ndarray
        :math:`E` for every recurrent matrix, or by matrix name (names not in
        the dict are not perturbed).
    """

    radius: float | np.ndarray | dict = 0.0

    def __post_init__(self):
        object.__setattr__(self, "radius", _radii(self.radius, _radius_array))

    def radii(self, cell) -> dict[str, np.ndarray]:
        """:math:`E_k`, shape (n, n), for every recurrent matrix of ``cell``."""
        n = cell.n
        src = self.radius if isinstance(self.radius, dict) else {
            k: self.radius for k in cell.recurrent_names}
        _check_names(cell, src, "radius")
        out = {}
        for k in cell.recurrent_names:
            v = src.get(k, 0.0)
            a = np.asarray(v, np.float64)
            if a.ndim == 2 and a.shape != (n, n):
                raise ValueError(f"radius[{k!r}]: expected shape ({n}, {n}), found {a.shape}")
            out[k] = np.broadcast_to(a, (n, n)).copy()
        return out

    def project(self, cell, dW):
        E = self.radii(cell)
        out = {}
        for k in cell.recurrent_names:
            D = np.zeros((cell.n, cell.n)) if k not in dW else np.asarray(dW[k], np.float64)
            out[k] = np.clip(D, -E[k], E[k])
        return out

    def contains(self, cell, dW, rtol=1e-12):
        E = self.radii(cell)
        _check_names(cell, dW, "dW")
        return all(np.all(np.abs(np.asarray(v, np.float64)) <= E[k] * (1 + rtol))
                   for k, v in dW.items())

    def sample(self, cell, seed, how="boundary"):
        rng = as_generator(seed)
        E = self.radii(cell)
        n = cell.n
        out = {}
        for k in cell.recurrent_names:
            if how == "spike":
                s = np.sign(np.outer(rng.standard_normal(n), rng.standard_normal(n)))
            elif how in ("boundary", "interior"):
                s = rng.choice([-1.0, 1.0], size=(n, n))
                if how == "interior":
                    s = s * rng.uniform(size=(n, n))
            else:
                raise ValueError(f"how: expected 'boundary', 'interior' or 'spike', found "
                                 f"{describe(how)}")
            out[k] = s * E[k]
        return out


def quantization(cell, *, bits: int, rounding: str = "nearest", scheme: str = "per_matrix",
                 names=None) -> Box:
    r"""The Box of every rounding of the recurrent matrices onto quantize()'s grid.

    The grid is that of :func:`rnnperturb.perturb.elementwise.quantize_matrix`:
    :math:`L = 2^{b-1}-1` levels on each side, step :math:`s = \max|w|/L` per
    matrix (``scheme="per_matrix"``) or per row (``"per_row"``).

    Parameters
    ----------
    cell : Cell
    bits : int, 2..32
    rounding : {'nearest', 'any'}
        ``'nearest'``: :math:`|\Delta W_{ij}| \le s/2` (every round-to-nearest,
        any tie rule); ``'any'``: :math:`|\Delta W_{ij}| \le s` (every rounding
        to one of the two neighbouring grid points: stochastic, toward zero,
        floor, ceiling).
    scheme : {'per_matrix', 'per_row'}
    names : str or sequence of str, optional
        Matrices that are quantized (default all).

    Returns
    -------
    Box
        With a relative margin :math:`2^{-50}` that covers the float evaluation
        of the quantized weights.
    """
    from rnnperturb.perturb.elementwise import quantize_matrix
    bits = check_int("bits", bits, low=2, high=32)
    if rounding not in ("nearest", "any"):
        raise ValueError(f"rounding: expected 'nearest' or 'any', found {describe(rounding)}")
    names = recurrent_subset(cell, names)
    E = {}
    for k in names:
        W = np.asarray(cell.recurrent[k], np.float64)
        _, step = quantize_matrix(W, bits=bits, scheme=scheme)
        step = np.asarray(step, np.float64)
        s = step if step.ndim == 0 else step[:, None]
        half = 0.5 * s if rounding == "nearest" else s
        rad = half * (1 + _MARGIN) + _MARGIN * (np.max(np.abs(W)) + s) + 1e-300
        E[k] = np.broadcast_to(rad, W.shape).copy()
    return Box(radius=E)


def drift(cell, *, rel: float, names=None) -> Box:
    r"""The Box :math:`|\Delta W_{k,ij}| \le d\,|W_{k,ij}|` (relative drift ``rel`` = d).

    Parameters
    ----------
    cell : Cell
    rel : float, >= 0
    names : str or sequence of str, optional
        Matrices that drift (default all).
    """
    d = _radius_scalar("rel", rel)
    names = recurrent_subset(cell, names)
    return Box(radius={k: d * np.abs(np.asarray(cell.recurrent[k], np.float64)) * (1 + _MARGIN)
                       for k in names})
