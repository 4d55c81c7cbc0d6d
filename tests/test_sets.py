"""The perturbation sets of rnnperturb.perturb.sets: validation, membership,
projection, sampling, and the quantization box against quantize()."""
import numpy as np
import pytest

from rnnperturb.bounds.set_bound import set_bound
from rnnperturb.cells.random import random_cell
from rnnperturb.perturb import sets
from rnnperturb.perturb.elementwise import quantize


# ------------------------------------------------------------------ sets: validation
def test_set_validation():
    cell = random_cell("mgru", 4, 2, seed=0)
    with pytest.raises(ValueError, match="radius"):
        sets.Ball(radius=-1.0)
    with pytest.raises(ValueError, match="norm"):
        sets.Ball(radius=1.0, norm="inf")
    with pytest.raises(ValueError, match="radius"):
        sets.Box(radius=np.ones((3, 2)))
    with pytest.raises(ValueError, match="radius"):
        sets.Box(radius=np.nan)
    with pytest.raises(ValueError, match="keys among"):
        sets.Ball(radius={"W": 1.0}).radii(cell)
    with pytest.raises(ValueError, match="shape"):
        sets.Box(radius=np.ones((3, 3))).radii(cell)
    with pytest.raises(ValueError, match="rounding"):
        sets.quantization(cell, bits=8, rounding="up")
    with pytest.raises(ValueError, match="bits"):
        sets.quantization(cell, bits=1)
    with pytest.raises(ValueError, match="rel"):
        sets.drift(cell, rel=-0.1)
    with pytest.raises(ValueError, match="S: expected"):
        set_bound(cell, 0.1, np.zeros((3, 2)))
    r = sets.Ball(radius={"Wh": 0.5}).radii(cell)
    assert r == {"Wf": 0.0, "Wh": 0.5}


@pytest.mark.parametrize("scheme", ["per_matrix", "per_row"])
def test_quantization_contains_quantize(kind, scheme):
    cell = random_cell(kind, 8, 3, spectral_norm=2.0, seed=3)
    for bits in (2, 4, 6, 8, 16):
        q = quantize(cell, bits=bits, scheme=scheme)
        dW = {k: q.recurrent[k] - cell.recurrent[k] for k in cell.recurrent_names}
        assert sets.quantization(cell, bits=bits, scheme=scheme).contains(cell, dW, rtol=0)
        E = sets.quantization(cell, bits=bits, scheme=scheme).radii(cell)
        Ea = sets.quantization(cell, bits=bits, scheme=scheme, rounding="any").radii(cell)
        for k in E:
            assert np.allclose(Ea[k], 2 * E[k], rtol=1e-12)


def test_project_sample_contains(kind):
    cell = random_cell(kind, 5, 2, seed=2)
    rng = np.random.default_rng(0)
    for S in (sets.Ball(radius=0.3), sets.Box(radius=0.05), sets.drift(cell, rel=0.1)):
        for how in ("boundary", "interior", "spike"):
            assert S.contains(cell, S.sample(cell, rng, how=how))
        big = {k: rng.standard_normal((5, 5)) for k in cell.recurrent_names}
        p = S.project(cell, big)
        assert S.contains(cell, p, rtol=1e-12)
        assert S.project(cell, p).keys() == p.keys()
    with pytest.raises(ValueError, match="how"):
        sets.Ball(radius=1.0).sample(cell, 0, how="corner")
