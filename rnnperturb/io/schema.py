"""Saving and loading cells: the project's ``.npz`` schema.

Schema (one ``.npz`` file, read with ``allow_pickle=False``):

=============  ==========================================================
key            content
=============  ==========================================================
``cell``       0-d string array: ``"elman"`` or ``"mgru"``
parameters     the constructor arrays under their names: ``W, U, b`` for
               the Elman RNN; ``Wf, Uf, bf, Wh, Uh, bh`` for the MGRU
``V``, ``c``   optional readout (both or neither)
``schema``     0-d int, currently 1
metadata       any further 0-d scalars or strings, or numeric arrays, under
               ``meta_<name>``; memorization checkpoints store
               ``meta_task="memorization"`` and the integers ``meta_K``,
               ``meta_L``, ``meta_D``
=============  ==========================================================
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from rnnperturb.cells import CELL_TYPES, cell_from_params

__all__ = ["save", "load", "load_with_metadata", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


def _meta_array(name, value):
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biufU":
        raise ValueError(
            f"metadata {name!r}: expected a number, string or numeric array, found "
            f"{type(value).__name__}")
    return arr


def save(path, cell, **metadata) -> None:
    """Save ``cell`` and metadata to ``path`` (an ``.npz`` file; see module docs).

    Parameters
    ----------
    path : str or os.PathLike
    cell : ElmanRNN or MGRU
    **metadata
        Scalars, strings or numeric arrays, e.g. ``task="memorization", K=2, L=5, D=50``.
    """
    if getattr(cell, "kind", None) not in CELL_TYPES:
        raise ValueError(f"cell: expected an ElmanRNN or MGRU, found {type(cell).__name__}")
    arrays = {"cell": np.array(cell.kind), "schema": np.array(SCHEMA_VERSION)}
    arrays.update({k: np.asarray(v) for k, v in cell.params.items()})
    for k, v in metadata.items():
        arrays[f"meta_{k}"] = _meta_array(k, v)
    path = os.fspath(path)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_with_metadata(path):
    """Load a cell and its metadata dict from an ``.npz`` file in the schema.

    Returns
    -------
    cell : ElmanRNN or MGRU
    metadata : dict
        Python scalars/strings for 0-d entries, arrays otherwise.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"path: expected an existing .npz file, found no file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: expected an .npz file in the rnnperturb schema, found an "
                         f"unreadable file ({exc})") from None
    if "cell" not in data:
        raise ValueError(f"{path}: expected key 'cell' ('elman' or 'mgru'), found keys "
                         f"{sorted(data)}")
    kind = data.pop("cell")
    if kind.dtype.kind != "U" or kind.ndim != 0:
        raise ValueError(f"{path}: key 'cell': expected a string, found dtype {kind.dtype}")
    kind = str(kind)
    if kind not in CELL_TYPES:
        raise ValueError(f"{path}: key 'cell': expected one of {sorted(CELL_TYPES)}, "
                         f"found {kind!r}")
    version = data.pop("schema", np.array(SCHEMA_VERSION))
    if int(version) != SCHEMA_VERSION:
        raise ValueError(f"{path}: key 'schema': expected {SCHEMA_VERSION}, found {int(version)}")
    meta = {}
    for k in [k for k in data if k.startswith("meta_")]:
        v = data.pop(k)
        meta[k[5:]] = v.item() if v.ndim == 0 else v
    try:
        cell = cell_from_params(kind, data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return cell, meta


def load(path):
    """Load a cell saved by :func:`save` (metadata dropped; see
    :func:`load_with_metadata`)."""
    return load_with_metadata(path)[0]
