"""The registry of cells: names to cell classes.

A cell module registers its class here (:func:`register`); every lookup by
name goes through :func:`cell_type`, so that an unregistered name is a
``ValueError`` that names it, never a fall-through to another cell.
"""
from __future__ import annotations

__all__ = ["CELL_TYPES", "register", "cell_type", "cell_from_params", "model_kinds",
           "model_arrays"]

#: The kind of a stacked network in a file (:class:`rnnperturb.cells.stacked.Stacked`, built
#: from its layers, is not a registered cell).
STACKED = "stacked"

#: Registered cell classes by name (``cell.kind``).
CELL_TYPES: dict[str, type] = {}


def register(cls: type) -> type:
    """Register a cell class under its ``kind``; returns the class."""
    kind = getattr(cls, "kind", "")
    if not kind:
        raise ValueError(f"cell class {cls.__name__}: expected a non-empty 'kind', found {kind!r}")
    if kind in CELL_TYPES and CELL_TYPES[kind] is not cls:
        raise ValueError(f"cell type {kind!r}: expected a new name, found it registered "
                         f"to {CELL_TYPES[kind].__name__}")
    CELL_TYPES[kind] = cls
    return cls


def cell_type(kind) -> type:
    """The cell class registered as ``kind``.

    Raises
    ------
    ValueError
        If ``kind`` is not a registered name.
    """
    if not isinstance(kind, str) or kind not in CELL_TYPES:
        raise ValueError(f"cell: expected one of {sorted(CELL_TYPES)}, found {kind!r}")
    return CELL_TYPES[kind]


def model_kinds() -> list[str]:
    """The kinds a file may name: every registered cell, and ``'stacked'``."""
    return sorted(CELL_TYPES) + [STACKED]


def model_arrays(model) -> dict:
    """The arrays that describe a cell or a stack in a file: ``cell`` (its kind), its
    parameters under their names (``'l0.W'`` ... for a stack) and, for a stack, ``layers``
    (the layers' kinds, bottom first)."""
    import numpy as np
    out = {"cell": np.array(model.kind)}
    out.update({k: np.asarray(v) for k, v in model.params.items()})
    if model.kind == STACKED:
        out["layers"] = np.array([layer.kind for layer in model.layers])
    return out


def cell_from_params(kind: str, params: dict, *, dtype=None):
    """Build a cell from its registered name and a parameter dict (``'stacked'``: a stack
    from ``params['layers']``, the layers' kinds, and the parameters ``'l{l}.name'``)."""
    if kind == STACKED:
        from rnnperturb.cells.stacked import Stacked
        return Stacked.from_params(params, dtype=dtype)
    cls = cell_type(kind)
    allowed = set(cls.recurrent_names + cls.input_params) | {"V", "c"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"{kind} parameters: expected names among {sorted(allowed)}, "
                         f"found unexpected {unknown}")
    missing = sorted(set(cls.recurrent_names + cls.input_params) - set(params))
    if missing:
        raise ValueError(f"{kind} parameters: expected {sorted(allowed - {'V', 'c'})}, "
                         f"missing {missing}")
    return cls(**params, dtype=dtype)
