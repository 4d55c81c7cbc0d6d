"""Saving and loading cells: the project's ``.npz`` schema.

Schema (one ``.npz`` file, read with ``allow_pickle=False``):

=============  ==========================================================
key            content
=============  ==========================================================
``cell``       0-d string array: a registered cell (``"elman"``, ``"mgru"``,
               ``"gru"``, ``"lstm"``) or ``"stacked"``
parameters     the constructor arrays under their names: ``W, U, b`` for
               the Elman RNN; ``Wf, Uf, bf, Wh, Uh, bh`` for the MGRU; a
               stack's as ``l0.W``, ``l1.Wr`` ... with ``layers`` (1-d
               string array, the layers' cell names)
``V``, ``c``   optional readout (both or neither)
``schema``     0-d int, currently 1
metadata       any further 0-d scalars or strings, or numeric arrays, under
               ``meta_<name>``; memorization checkpoints store
               ``meta_task="memorization"`` and the integers ``meta_K``,
               ``meta_L``, ``meta_D``
=============  ==========================================================

Reading is defensive (:func:`read_npz`, shared with the command line's
``--inputs``): only regular files are opened (a FIFO or device is refused
before ``open``), every array header is checked against the bytes the archive
actually holds and against :data:`~rnnperturb._checks.MAX_ELEMENTS` before
anything is allocated, object (pickled) arrays are refused without being
unpickled, and every problem is a ``ValueError`` naming the argument, the key,
the expected and the found value.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from rnnperturb._checks import MAX_ELEMENTS, check_regular_file, describe
from rnnperturb.cells.registry import cell_from_params, model_arrays, model_kinds

__all__ = ["save", "load", "load_with_metadata", "read_npz", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

_MAX_MEMBERS = 10_000


class _FileError(ValueError):
    """A ValueError already worded for the user (not re-wrapped)."""


def _read_header(fh):
    from numpy.lib import format as fmt
    version = fmt.read_magic(fh)
    if version == (1, 0):
        return fmt.read_array_header_1_0(fh)
    if version in ((2, 0), (3, 0)):
        try:
            from numpy.lib._format_impl import _read_array_header  # numpy >= 2
        except ImportError:  # pragma: no cover - older numpy
            from numpy.lib.format import _read_array_header
        return _read_array_header(fh, version)
    raise ValueError(f"unsupported .npy format version {version}")


def read_npz(path, *, name: str = "path", what: str = ".npz file",
             max_elements: int = MAX_ELEMENTS) -> dict:
    """Read every array of an ``.npz`` archive, refusing anything malformed or hostile.

    Parameters
    ----------
    path : str or os.PathLike
        An existing regular file (FIFOs, devices and directories are refused
        before they are opened).
    name : str
        The argument named in error messages (``"path"``, ``"FILE"``, ``"--inputs"``).
    what : str
        What the file should be, for the messages.
    max_elements : int
        Largest array (in elements) to allocate; checked from the header first.

    Returns
    -------
    dict of str to ndarray
        Keys without the ``.npy`` suffix.

    Raises
    ------
    ValueError
        ``"<name>: expected ..., found ..."`` for a missing, non-regular,
        truncated, non-zip, single-array ``.npy``, encrypted or crafted file, an
        object (pickle) array, a duplicate key or an oversized array.
    """
    path = check_regular_file(name, path, what=what)
    where = f"{name} {describe(path, 300)}"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic == b"\x93NUMPY":
            raise _FileError(f"{where}: expected an {what} (a zip archive of named arrays, as "
                             f"written by numpy.savez), found a single-array .npy file")
        if magic[:2] != b"PK":
            raise _FileError(f"{where}: expected an {what} in the rnnperturb schema, found an "
                             f"unreadable file (not a zip archive: starts with {magic!r})")
        out = {}
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise _FileError(f"{where}: expected at most {_MAX_MEMBERS} arrays, found "
                                 f"{len(infos)}")
            for info in infos:
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if key in out:
                    raise _FileError(f"{where}: expected unique keys, found {key!r} twice")
                with zf.open(info) as member:
                    shape, fortran, dtype = _read_header(member)
                    offset = member.tell()
                if dtype.hasobject:
                    raise _FileError(f"{where}: key {key!r}: expected a numeric or string array, "
                                     f"found dtype object (pickled objects are never loaded: "
                                     f"allow_pickle=False)")
                count = 1
                for s in shape:
                    count *= int(s)
                if count > max_elements:
                    raise _FileError(f"{where}: key {key!r}: expected at most {max_elements} "
                                     f"elements, found shape {shape} ({count:.3g} elements)")
                need = count * dtype.itemsize
                if need > info.file_size - offset:
                    raise _FileError(f"{where}: key {key!r}: expected {need} bytes of data for "
                                     f"shape {shape} {dtype}, found {info.file_size - offset} "
                                     f"(truncated or crafted file)")
                with zf.open(info) as member:
                    out[key] = np.lib.format.read_array(member, allow_pickle=False)
        return out
    except _FileError:
        raise
    except MemoryError:
        raise ValueError(f"{where}: expected arrays that fit in memory, found too large a "
                         f"file") from None
    except Exception as exc:  # zipfile, zlib, numpy.format and OS errors: all a bad file
        raise ValueError(f"{where}: expected an {what} in the rnnperturb schema, found an "
                         f"unreadable file ({type(exc).__name__}: {str(exc)[:200]})") from None


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
    cell : Cell or Stacked
        Any registered cell, or a stack of them.
    **metadata
        Scalars, strings or numeric arrays, e.g. ``task="memorization", K=2, L=5, D=50``.
    """
    if getattr(cell, "kind", None) not in model_kinds():
        raise ValueError(f"cell: expected a cell of kind {model_kinds()}, found "
                         f"{type(cell).__name__}")
    arrays = {"schema": np.array(SCHEMA_VERSION), **model_arrays(cell)}
    for k, v in metadata.items():
        arrays[f"meta_{k}"] = _meta_array(k, v)
    path = os.fspath(path)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _describe_array(a: np.ndarray) -> str:
    if a.ndim == 0:
        return f"a 0-d {a.dtype} array {describe(a.item())}"
    return f"a {a.ndim}-d {a.dtype} array of shape {a.shape}"


def _load(path, name: str):
    data = read_npz(path, name=name)
    where = f"{name} {describe(os.fspath(path), 300)}"
    if "cell" not in data:
        raise ValueError(f"{where}: expected key 'cell' ('elman' or 'mgru'), found keys "
                         f"{describe(sorted(data), 200)}")
    kind = data.pop("cell")
    if kind.dtype.kind != "U" or kind.ndim != 0:
        raise ValueError(f"{where}: key 'cell': expected a 0-d string array ('elman' or "
                         f"'mgru'), found {_describe_array(kind)}")
    kind = str(kind)
    if kind not in model_kinds():
        raise ValueError(f"{where}: key 'cell': expected one of {model_kinds()}, "
                         f"found {describe(kind)}")
    version = data.pop("schema", np.array(SCHEMA_VERSION))
    if version.ndim != 0 or version.dtype.kind not in "iu":
        raise ValueError(f"{where}: key 'schema': expected a 0-d integer {SCHEMA_VERSION}, "
                         f"found {_describe_array(version)}")
    if int(version) != SCHEMA_VERSION:
        raise ValueError(f"{where}: key 'schema': expected {SCHEMA_VERSION}, found "
                         f"{int(version)}")
    meta = {}
    for k in [k for k in data if k.startswith("meta_")]:
        v = data.pop(k)
        if v.dtype.kind not in "biufUS":
            raise ValueError(f"{where}: key {k!r}: expected a number, string or numeric "
                             f"array, found dtype {v.dtype}")
        meta[k[5:]] = v.item() if v.ndim == 0 else v
    try:
        cell = cell_from_params(kind, data)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    except (TypeError, AttributeError, IndexError, OverflowError) as exc:
        raise ValueError(f"{where}: expected {kind} parameters in the rnnperturb schema, "
                         f"found {type(exc).__name__}: {str(exc)[:200]}") from None
    return cell, meta


def load_with_metadata(path):
    """Load a cell and its metadata dict from an ``.npz`` file in the schema.

    Parameters
    ----------
    path : str or os.PathLike
        An existing regular ``.npz`` file (read with ``allow_pickle=False``;
        see :func:`read_npz` for what is refused).

    Returns
    -------
    cell : Cell or Stacked
    metadata : dict
        Python scalars/strings for 0-d entries, arrays otherwise.

    Raises
    ------
    ValueError
        Naming ``path``, the key, the expected and the found value.
    """
    return _load(path, "path")


def load(path):
    """Load a cell saved by :func:`save` (metadata dropped; see
    :func:`load_with_metadata`)."""
    return _load(path, "path")[0]
