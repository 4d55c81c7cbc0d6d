"""Input validation at the library boundary.

Every public function checks its arguments here, so that every error message has
the same form: it names the argument, the expected value and the found value.
"""
from __future__ import annotations

import numbers
import os
import stat

import numpy as np

__all__ = [
    "as_param",
    "as_inputs",
    "as_h0",
    "check_positive",
    "check_int",
    "check_compatible",
    "recurrent_subset",
    "as_generator",
    "check_horizon",
    "check_elements",
    "check_scale",
    "check_regular_file",
    "describe",
    "MAX_HORIZON",
    "MAX_ELEMENTS",
]

#: Largest ``horizon`` accepted by :func:`check_horizon` (the global bound stores and
#: computes one value per step: about 0.3 ms per step at n = 64; beyond 10**6 steps use
#: the uniform ``GlobalBound.asymptote``, valid at every step).
MAX_HORIZON = 10 ** 6

#: Largest number of array elements (e.g. T x B x n of a hidden-state trajectory) the
#: command line and the input checks allocate: 2**27 float64 numbers are 1 GiB.
MAX_ELEMENTS = 2 ** 27


def describe(value, limit: int = 60) -> str:
    """A short ``repr`` of ``value`` for error messages (at most ``limit`` characters)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 15] + "..." + text[-12:]


def _describe_dtype(a) -> str:
    return str(getattr(a, "dtype", type(a).__name__))


def as_param(name: str, value, *, shape: tuple | None = None, ndim: int | None = None,
             dtype=None) -> np.ndarray:
    """Return ``value`` as a read-only, finite, real floating array.

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    value : array_like
        The value to check.
    shape : tuple of int or None, optional
        Expected shape; ``None`` entries match any size.
    ndim : int, optional
        Expected number of dimensions (checked when ``shape`` is None).
    dtype : numpy dtype, optional
        Target floating dtype; default keeps float32/float64 and converts
        integers to float64.

    Raises
    ------
    ValueError
        If the value is not numeric, has the wrong shape, or holds NaN/Inf.
    """
    if value is None:
        raise ValueError(f"{name}: expected an array, found None")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected a numeric array, found {type(value).__name__}") from exc
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise ValueError(
            f"{name}: expected a real floating-point array, found dtype {_describe_dtype(arr)}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{name}: expected dtype float32 or float64, found {dtype}")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, found shape {arr.shape}")
    elif ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, found shape {arr.shape}")
    arr = np.array(arr, dtype=dtype, copy=True)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, found {bad} NaN/Inf entries")
    arr.setflags(write=False)
    return arr


def as_inputs(X, m: int, dtype) -> tuple[np.ndarray, bool]:
    """Check an input sequence and return it as shape (T, B, m).

    Parameters
    ----------
    X : array_like, shape (T, B, m) or (T, m)
    m : int
        Input size of the cell.
    dtype : numpy dtype
        Dtype of the cell.

    Returns
    -------
    X3 : ndarray, shape (T, B, m)
    single : bool
        True when ``X`` was a single sequence of shape (T, m).
    """
    arr = np.asarray(X) if X is not None else None
    if arr is None or arr.ndim not in (2, 3):
        found = "None" if arr is None else f"shape {arr.shape}"
        raise ValueError(f"X: expected shape (T, B, {m}) or (T, {m}), found {found}")
    if arr.shape[-1] != m:
        raise ValueError(f"X: expected last dimension m={m}, found shape {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"X: expected at least one time step, found shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[1] < 1:
        raise ValueError(f"X: expected at least one sequence (B >= 1), found shape {arr.shape}")
    single = arr.ndim == 2
    X3 = as_param("X", arr[:, None, :] if single else arr, dtype=dtype)
    return X3, single


def as_h0(h0, n: int, B: int, single: bool, dtype) -> np.ndarray:
    """Check an initial state and return it as shape (B, n); None means zeros."""
    if h0 is None:
        return np.zeros((B, n), dtype=dtype)
    arr = np.asarray(h0)
    if single:
        arr = as_param("h0", arr, shape=(n,), dtype=dtype)
        return np.array(arr[None, :])
    if arr.ndim == 1:
        arr = as_param("h0", arr, shape=(n,), dtype=dtype)
        return np.repeat(arr[None, :], B, axis=0)
    arr = as_param("h0", arr, shape=(B, n), dtype=dtype)
    return np.array(arr)


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, checking that it is finite and positive."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a real number, found {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        want = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name}: expected {want}, found {value!r}")
    return v


def check_bool(name: str, value) -> bool:
    """Return ``value`` as a bool, checking that it is one (Python's or NumPy's)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, found {value!r}")
    return bool(value)


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int in [low, high] (inclusive), or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, found {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], found {v}")
    return v


def check_compatible(cell, other) -> None:
    """Check that ``other`` differs from ``cell`` only in its recurrent matrices.

    Raises
    ------
    ValueError
        Naming the first difference: cell type, sizes, dtype or a non-recurrent
        parameter that is not exactly equal.
    """
    if type(other) is not type(cell):
        raise ValueError(
            f"other: expected a {type(cell).__name__} like cell, found {type(other).__name__}")
    if (other.n, other.m) != (cell.n, cell.m):
        raise ValueError(
            f"other: expected sizes (n={cell.n}, m={cell.m}), found (n={other.n}, m={other.m})")
    if other.dtype != cell.dtype:
        raise ValueError(f"other: expected dtype {cell.dtype}, found {other.dtype}")
    if (other.recurrent_names, other.input_params) != (cell.recurrent_names, cell.input_params):
        # same class, other parameters: e.g. stacks of different layer types
        raise ValueError(f"other: expected the parameters {cell.recurrent_names + cell.input_params}"
                         f", found {other.recurrent_names + other.input_params}")
    for name in cell.input_params:
        a, b = getattr(cell, name), getattr(other, name)
        if not np.array_equal(a, b):
            diff = float(np.max(np.abs(a - b)))
            raise ValueError(
                f"other.{name}: expected exactly cell.{name} (only recurrent matrices "
                f"{tuple(cell.recurrent)} may differ), found max |difference| {diff:.3g}")


def as_generator(seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from an int seed (or the Generator itself).

    Every random choice in the library takes an explicit seed; ``None`` is refused."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise ValueError("seed: expected an int or numpy.random.Generator, found None "
                         "(every random choice takes an explicit seed)")
    if isinstance(seed, bool):
        raise ValueError(f"seed: expected an int >= 0 or numpy.random.Generator, found {seed!r}")
    if isinstance(seed, numbers.Integral) and seed < 0:
        raise ValueError(f"seed: expected an int >= 0 or numpy.random.Generator, found {seed}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"seed: expected an int >= 0 or numpy.random.Generator, found "
                         f"{describe(seed)} ({exc})") from None


def check_horizon(name: str, horizon, *, limit: int = MAX_HORIZON) -> int:
    """Return ``horizon`` as an int in [1, limit], or raise before anything is allocated.

    The global bound (and every per-step recursion) costs time and memory linear in the
    horizon; ``limit`` (default :data:`MAX_HORIZON`) keeps a mistyped ``10**9`` from
    running for hours. For longer horizons use the uniform asymptote of the bound.

    Raises
    ------
    ValueError
        ``"<name>: expected an integer in [1, <limit>] ..., found <value>"``.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, found {describe(horizon)}")
    v = int(horizon)
    if not 1 <= v <= limit:
        raise ValueError(f"{name}: expected an integer in [1, {limit}] (longer horizons: use "
                         f"the bound's uniform asymptote), found {describe(v)}")
    return v


def check_elements(name: str, shape, *, limit: int = MAX_ELEMENTS, what: str = "") -> int:
    """Check, before allocating, that an array of ``shape`` has at most ``limit`` elements.

    Parameters
    ----------
    name : str
        The argument (or file key) that sets the size, for the message.
    shape : sequence of int
        The shape that would be allocated, e.g. ``(T, B, n)``.
    limit : int
        Default :data:`MAX_ELEMENTS` (2**27 numbers, 1 GiB in float64).
    what : str
        A description of the shape for the message, e.g. ``"T x B x n"``.

    Returns
    -------
    int
        The number of elements.
    """
    total = 1
    for s in shape:
        total *= int(s)
    if total > limit:
        dims = " x ".join(str(int(s)) for s in shape)
        label = f" ({what})" if what else ""
        raise ValueError(f"{name}: expected at most {limit} array elements{label}, found "
                         f"{dims} = {total:.3g}")
    return total


def check_scale(name: str, arr, *, dtype=np.float64) -> None:
    """Refuse finite entries so large that the analysis would overflow.

    The analysis squares norms and multiplies them over time; entries above
    ``finfo(dtype).max ** 0.25`` (1.2e77 in float64, 4.3e9 in float32) overflow it,
    which would otherwise surface later as NaN or as a misleading "found NaN/Inf".

    Raises
    ------
    ValueError
        ``"<name>: expected entries of magnitude <= <limit> ..., found max |<name>| <v>"``.
    """
    a = np.asarray(arr)
    if a.size == 0 or a.dtype.kind not in "fiu":
        return
    limit = float(np.finfo(np.dtype(dtype)).max) ** 0.25
    mx = float(np.max(np.abs(a.astype(np.float64, copy=False))))
    if not mx <= limit:
        raise ValueError(f"{name}: expected entries of magnitude <= {limit:.3g} (larger values "
                         f"overflow {np.dtype(dtype)} in the analysis), found max |{name}| "
                         f"{mx:.3g}")


def check_regular_file(name: str, path, *, what: str = "file") -> str:
    """Return ``path`` as a string after checking that it names an existing regular file.

    Checked with ``os.stat`` before anything opens the file, so that a FIFO, a
    device or a directory is refused instead of blocking or failing later.

    Parameters
    ----------
    name : str
        The argument, for the message (``"path"``, ``"FILE"``, ``"--inputs"``).
    path : str or os.PathLike
    what : str
        What the file should be, e.g. ``".npz file"``.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name}: expected a path to an existing {what}, found "
                         f"{type(path).__name__} {describe(path, 300)}")
    path = os.fspath(path)
    if path == "":
        raise ValueError(f"{name}: expected a path to an existing {what}, found ''")
    if "\x00" in path:
        raise ValueError(f"{name}: expected a path without NUL bytes, found {describe(path, 300)}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{name}: expected an existing {what}, found no file at "
                         f"{describe(path, 300)}") from None
    except OSError as exc:
        raise ValueError(f"{name}: expected a readable {what}, found {describe(path, 300)} "
                         f"({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a character device" if stat.S_ISCHR(st.st_mode) else
                "a block device" if stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ValueError(f"{name}: expected a regular {what}, found {kind} at {describe(path, 300)}")
    return path


def recurrent_subset(cell, names) -> tuple[str, ...]:
    """The recurrent matrices an operation touches: ``names`` (a name, a sequence of
    names, or None for all of ``cell.recurrent_names``), checked against the cell."""
    if names is None:
        return tuple(cell.recurrent_names)
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    unknown = sorted(set(names) - set(cell.recurrent_names))
    if unknown or not names:
        raise ValueError(f"names: expected names among {list(cell.recurrent_names)}, "
                         f"found {unknown or 'none'}")
    return names
