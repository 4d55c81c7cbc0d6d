"""Random cells for tests, property checks and theory experiments.

Every draw takes an explicit ``seed`` (int or ``numpy.random.Generator``).
"""
from __future__ import annotations

import numpy as np

from rnnperturb._checks import check_int, check_positive
from rnnperturb.cells import CELL_TYPES
from rnnperturb._checks import as_generator as _rng

__all__ = ["random_cell", "scale_to_spectral_norm"]


def scale_to_spectral_norm(W: np.ndarray, norm: float) -> np.ndarray:
    """Return ``W`` rescaled so that its spectral norm ‖W‖₂ (largest singular
    value, not the spectral radius) equals ``norm``."""
    s = np.linalg.norm(W, 2)
    return W * (norm / s) if s > 0 else W.copy()


def random_cell(kind: str = "elman", n: int = 16, m: int = 3, *, spectral_norm: float = 0.9,
                input_scale: float = 1.0, bias_scale: float = 0.1, n_out: int | None = None,
                seed=None):
    """A random cell with Gaussian weights.

    Parameters
    ----------
    kind : str
        A registered cell name (:data:`rnnperturb.cells.CELL_TYPES`: 'elman', 'mgru', 'gru').
    n, m : int
        Hidden and input sizes.
    spectral_norm : float
        ‖W‖₂ of every recurrent matrix (largest singular value).
    input_scale : float
        Entries of the input matrices have std ``input_scale / sqrt(m)``.
    bias_scale : float
        Std of the bias entries.
    n_out : int, optional
        Add a random readout with this many outputs.
    seed : int or numpy.random.Generator
    """
    if kind not in CELL_TYPES:
        raise ValueError(f"kind: expected one of {sorted(CELL_TYPES)}, found {kind!r}")
    n = check_int("n", n, low=1)
    m = check_int("m", m, low=1)
    check_positive("spectral_norm", spectral_norm, allow_zero=True)
    rng = _rng(seed)
    cls = CELL_TYPES[kind]
    kw = {}
    for name in cls.recurrent_names:
        kw[name] = scale_to_spectral_norm(rng.standard_normal((n, n)), spectral_norm)
    for name in cls.input_params:
        if name.startswith("U"):
            kw[name] = rng.standard_normal((n, m)) * input_scale / np.sqrt(m)
        else:
            kw[name] = rng.standard_normal(n) * bias_scale
    if n_out is not None:
        kw["V"] = rng.standard_normal((check_int("n_out", n_out, low=1), n)) / np.sqrt(n)
    return cls(**kw)
