r"""Storage and compute cost of a (compressed) cell, and low-rank factors for deployment.

:func:`compression_cost` inspects every recurrent matrix of the compressed cell
and decides how it is stored:

* **low-rank factors** when its numerical rank r is below n/2
  (:math:`W = L R` with :math:`L` n×r and :math:`R` r×n: 2nr numbers and 2nr
  multiply-adds per step, against n² for the dense matrix);
* otherwise **CSR** when that takes fewer bytes than dense (pruned matrices):
  nnz values, nnz column indices and n+1 row pointers, nnz multiply-adds;
* otherwise **dense**: n² numbers and n² multiply-adds.

**About the identity.** With ``about="identity"`` (or a dict naming matrices,
as in :func:`rnnperturb.truncate_svd`) a matrix may also be stored as
:math:`W = I + LR` (format ``'identity_lowrank'``): 2nr numbers (nothing for
I), and 2nr + n multiply-adds per step (:math:`h + L(Rh)`; the n additions of
h are counted as multiply-adds, and none at r = 0 where :math:`Wh = h`), with
r the numerical rank of :math:`W - I` (tolerance :math:`n\varepsilon(1 + \sigma_1(W - I))`,
which covers the rounding of the diagonal of :math:`I + LR`). It is chosen
when 2r < n and it takes fewer bytes than the format chosen above (a plain
low-rank factorisation of equal size wins the tie, as it needs no additions).
``about`` describes the compressed cell only; the original is costed as is.

Values take the cell's itemsize (8 bytes for float64), unless the matrix is
recognised as quantized (every entry an integer multiple of
:math:`s = \max|w|/(2^{b-1}-1)`, per matrix or per row, for some b below the
float width): its values then take b bits each (dense: :math:`\lceil n^2 b/8\rceil`
bytes) plus the steps s at the itemsize (one, or one per row). Low-rank
factors are stored at the itemsize. Indices take ``index_bytes`` (4) bytes.

Totals add the input matrices and biases (dense, at the itemsize; n·m
multiply-adds per input matrix and step); element-wise operations and the
readout are not counted. Ratios are *compressed / original*, so below 1 means
smaller. ``bytes_dense`` and ``bytes_csr`` give the totals with every recurrent
matrix stored dense, or as CSR, whatever ``format`` says.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnperturb._checks import check_compatible, check_int
from rnnperturb.perturb.low_rank import resolve_about

__all__ = ["MatrixCost", "CompressionCost", "compression_cost", "matrix_cost", "factors",
           "numerical_rank"]


@dataclass(frozen=True, eq=False)
class MatrixCost:
    """Storage of one recurrent matrix.

    Attributes
    ----------
    name : str
    format : {'dense', 'lowrank', 'csr'}
        How the matrix is stored (see the module notes).
    rank : int
        Numerical rank.
    nnz : int
        Number of nonzero entries.
    bits : int
        Bits per stored value (8 × itemsize unless quantized).
    scheme : str or None
        ``'per_matrix'`` or ``'per_row'`` when quantized, else None.
    params, macs, bytes : int
        Stored numbers, multiply-adds per step (one sequence), bytes, in ``format``.
    bytes_dense, bytes_csr : int
        Bytes if stored dense, or as CSR.
    about : str or None
        ``'identity'`` when stored as :math:`I + LR` (format
        ``'identity_lowrank'``), else None.
    rank_about : int or None
        Numerical rank of :math:`W - I` when the factorisation about the
        identity was considered (``about='identity'`` for this matrix), else None.
    """

    name: str
    format: str
    rank: int
    nnz: int
    bits: int
    scheme: str | None
    params: int
    macs: int
    bytes: int
    bytes_dense: int
    bytes_csr: int
    about: str | None = None
    rank_about: int | None = None


@dataclass(frozen=True, eq=False)
class CompressionCost:
    """Cost of a compressed cell against the original (see :func:`compression_cost`).

    Attributes
    ----------
    params, macs, bytes : int
        Compressed cell: stored numbers, multiply-adds per step and sequence,
        bytes (recurrent matrices as stored, plus input matrices and biases).
    bytes_dense, bytes_csr : int
        Compressed cell's bytes with every recurrent matrix dense / as CSR.
    params_original, macs_original, bytes_original : int
        The same for the original cell.
    ratio_params, ratio_macs, ratio_bytes : float
        Compressed / original.
    matrices : dict of str to MatrixCost
        Per recurrent matrix of the compressed cell.
    """

    params: int
    macs: int
    bytes: int
    bytes_dense: int
    bytes_csr: int
    params_original: int
    macs_original: int
    bytes_original: int
    ratio_params: float
    ratio_macs: float
    ratio_bytes: float
    matrices: dict


def numerical_rank(W, *, tol: float | None = None) -> int:
    """Number of singular values above ``tol`` (default ``n * eps * σ_1``, as
    ``numpy.linalg.matrix_rank``)."""
    s = np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False)
    if s.size == 0 or s[0] == 0:
        return 0
    if tol is None:
        tol = max(np.shape(W)) * np.finfo(np.asarray(W).dtype).eps * s[0]
    return int(np.sum(s > tol))


def _minus_identity(W, *, tol: float | None = None):
    r"""``(W - I, its numerical rank)``, in float64; the default tolerance
    :math:`n\varepsilon(1 + \sigma_1(W - I))` (ε of W's dtype) covers the rounding
    of the diagonal of a stored :math:`I + LR`."""
    W = np.asarray(W)
    D = np.asarray(W, dtype=np.float64) - np.eye(W.shape[0])
    if tol is None:
        s1 = float(np.linalg.norm(D, 2)) if D.size else 0.0
        tol = W.shape[0] * np.finfo(W.dtype).eps * (1.0 + s1)
    return D, numerical_rank(D, tol=tol)


def _quantized_bits(W, itemsize: int):
    """Smallest b (and scheme) such that W lies on a b-bit symmetric grid, else None."""
    W = np.asarray(W)
    eps = np.finfo(W.dtype).eps
    amax = np.max(np.abs(W))
    if amax == 0:
        return None
    rmax = np.max(np.abs(W), axis=1, keepdims=True)
    for b in range(2, min(33, 8 * itemsize)):
        L = 2 ** (b - 1) - 1
        tol = 16 * eps * L
        if tol > 1e-2:          # the grid test would no longer discriminate
            break
        q = W / (amax / L)
        if np.all(np.abs(q - np.round(q)) <= tol):
            return b, "per_matrix"
        s = np.where(rmax > 0, rmax / L, 1.0)
        q = W / s
        if np.all(np.abs(q - np.round(q)) <= tol):
            return b, "per_row"
    return None


def matrix_cost(name: str, W, *, itemsize: int | None = None, index_bytes: int = 4,
                about: str | None = None) -> MatrixCost:
    """Storage of one matrix (see the module notes).

    Parameters
    ----------
    name : str
    W : array_like, shape (n, n)
    itemsize : int, optional
        Bytes per stored value (default: W's).
    index_bytes : int
        Bytes per CSR index.
    about : {None, 'identity'}
        Also consider the stored form :math:`I + LR`.

    Returns
    -------
    MatrixCost
    """
    if not (about is None or (isinstance(about, str) and about == "identity")):
        raise ValueError(f"about: expected None or 'identity', found {about!r}")
    W = np.asarray(W)
    n = W.shape[0]
    itemsize = W.dtype.itemsize if itemsize is None else itemsize
    r = numerical_rank(W)
    nnz = int(np.count_nonzero(W))
    qb = _quantized_bits(W, itemsize)
    if qb is None:
        bits, scheme, scale_bytes = 8 * itemsize, None, 0
    else:
        bits, scheme = qb
        scale_bytes = itemsize * (1 if scheme == "per_matrix" else n)
    bytes_dense = math.ceil(W.size * bits / 8) + scale_bytes
    bytes_csr = math.ceil(nnz * bits / 8) + scale_bytes + index_bytes * (nnz + n + 1)
    if 2 * r < n:
        fmt, params, macs, nbytes = "lowrank", 2 * n * r, 2 * n * r, 2 * n * r * itemsize
    elif bytes_csr < bytes_dense:
        fmt, params, macs, nbytes = "csr", nnz, nnz, bytes_csr
    else:
        fmt, params, macs, nbytes = "dense", W.size, W.size, bytes_dense
    anchor = rank_about = None
    if about == "identity":
        _, rank_about = _minus_identity(W)
        if 2 * rank_about < n and 2 * n * rank_about * itemsize < nbytes:
            fmt, anchor = "identity_lowrank", "identity"
            params, nbytes = 2 * n * rank_about, 2 * n * rank_about * itemsize
            macs = 2 * n * rank_about + (n if rank_about > 0 else 0)
    return MatrixCost(name=name, format=fmt, rank=r, nnz=nnz, bits=bits, scheme=scheme,
                      params=params, macs=macs, bytes=nbytes, bytes_dense=bytes_dense,
                      bytes_csr=bytes_csr, about=anchor, rank_about=rank_about)


def _totals(cell, index_bytes, anchors=None):
    anchors = anchors or {}
    mats = {k: matrix_cost(k, W, itemsize=cell.dtype.itemsize, index_bytes=index_bytes,
                           about=anchors.get(k))
            for k, W in cell.recurrent.items()}
    inp = sum(getattr(cell, k).size for k in cell.input_params)
    inp_macs = sum(getattr(cell, k).size for k in cell.input_params if k.startswith("U"))
    isz = cell.dtype.itemsize
    return {
        "params": inp + sum(c.params for c in mats.values()),
        "macs": inp_macs + sum(c.macs for c in mats.values()),
        "bytes": inp * isz + sum(c.bytes for c in mats.values()),
        "bytes_dense": inp * isz + sum(c.bytes_dense for c in mats.values()),
        "bytes_csr": inp * isz + sum(c.bytes_csr for c in mats.values()),
        "matrices": mats,
    }


def compression_cost(cell, compressed, *, index_bytes: int = 4, about=None) -> CompressionCost:
    """Parameters, multiply-adds per step and bytes of ``compressed`` against ``cell``.

    Parameters
    ----------
    cell : Cell
        The original.
    compressed : Cell
        A compressed version (truncated, pruned, quantized, noisy, ...); it
        may differ from ``cell`` only in its recurrent matrices.
    index_bytes : int
        Bytes per CSR index (default 4, int32).
    about : None, 'identity', or dict of str to (None or 'identity')
        The anchor the compressed matrices were factorised about, as given to
        :func:`rnnperturb.truncate_svd`: with ``'identity'`` a matrix may be
        stored as :math:`I + LR` (see the module notes). Default None: every
        matrix is costed as before.

    Returns
    -------
    CompressionCost
    """
    check_compatible(cell, compressed)
    index_bytes = check_int("index_bytes", index_bytes, low=1)
    a = _totals(compressed, index_bytes, resolve_about(compressed, about))
    o = _totals(cell, index_bytes)
    return CompressionCost(
        params=a["params"], macs=a["macs"], bytes=a["bytes"], bytes_dense=a["bytes_dense"],
        bytes_csr=a["bytes_csr"], params_original=o["params"], macs_original=o["macs"],
        bytes_original=o["bytes"], ratio_params=a["params"] / o["params"],
        ratio_macs=a["macs"] / o["macs"], ratio_bytes=a["bytes"] / o["bytes"],
        matrices=a["matrices"])


def factors(cell, *, tol: float | None = None, about=None) -> dict:
    r"""Low-rank factors of every recurrent matrix, for deployment.

    Parameters
    ----------
    cell : Cell
        Typically the output of :func:`rnnperturb.truncate_svd`.
    tol : float, optional
        Singular values at or below ``tol`` count as zero (default
        ``n * eps * σ_1``, see :func:`numerical_rank`; about the identity
        ``n * eps * (1 + σ_1(W - I))``, see the module notes).
    about : None, 'identity', or dict of str to (None or 'identity')
        As in :func:`rnnperturb.truncate_svd`: for a matrix taken about the
        identity the factors are those of :math:`W - I`.

    Returns
    -------
    dict of str to (L, R)
        ``L`` of shape (n, r) and ``R`` of shape (r, n), with r the numerical
        rank, :math:`L = U_r\Sigma_r`, :math:`R = V_r^\top`, so that
        :math:`W \approx L R` (exact to rounding for a truncated matrix) and
        ``h @ R.T @ L.T`` costs 2nr multiply-adds; for a matrix about the
        identity :math:`W \approx I + LR` and ``h + h @ R.T @ L.T`` costs 2nr + n.
    """
    anchors = resolve_about(cell, about)
    out = {}
    for k, W in cell.recurrent.items():
        if anchors[k] == "identity":
            D, r = _minus_identity(W, tol=tol)
        else:
            D, r = np.asarray(W, dtype=np.float64), numerical_rank(W, tol=tol)
        U, s, Vt = np.linalg.svd(D)
        out[k] = ((U[:, :r] * s[:r]).astype(cell.dtype), Vt[:r].astype(cell.dtype))
    return out
