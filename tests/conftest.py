import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=["elman", "mgru"])
def kind(request):
    return request.param


def make_pair(kind, n=8, m=3, *, spectral_norm=0.9, rel=1e-2, seed=0):
    """A random cell and a copy whose recurrent matrices are perturbed by a
    random ΔW with ‖ΔW‖₂ = rel·‖W‖₂."""
    rng = np.random.default_rng(seed)
    cell = random_cell(kind, n, m, spectral_norm=spectral_norm, seed=rng)
    new = {}
    for k, W in cell.recurrent.items():
        dW = rng.standard_normal(W.shape)
        dW *= rel * np.linalg.norm(W, 2) / np.linalg.norm(dW, 2)
        new[k] = W + dW
    return cell, cell.replace(**new)
