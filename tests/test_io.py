"""Save/load round trips and malformed files."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell


@pytest.mark.parametrize("with_readout", [False, True])
def test_round_trip(tmp_path, kind, with_readout):
    cell = random_cell(kind, 5, 3, n_out=4 if with_readout else None, seed=1)
    p = tmp_path / "c.npz"
    rp.save(p, cell, task="memorization", K=2, L=5, D=50)
    back, meta = rp.load_with_metadata(p)
    assert type(back) is type(cell)
    for k, v in cell.params.items():
        np.testing.assert_array_equal(getattr(back, k), v)
    assert meta == {"task": "memorization", "K": 2, "L": 5, "D": 50}
    assert isinstance(meta["D"], int)
    X = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_array_equal(back.run(X), cell.run(X))
    assert (back.V is None) == (not with_readout)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match=r"path: expected an existing .npz file, found no file"):
        rp.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"expected an .npz file in the rnnperturb schema, found an unreadable"):
        rp.load(bad)
    p = tmp_path / "nokind.npz"
    np.savez(p, W=np.eye(2))
    with pytest.raises(ValueError, match=r"expected key 'cell'"):
        rp.load(p)
    p = tmp_path / "qrnn.npz"
    np.savez(p, cell=np.array("qrnn"), W=np.eye(2))
    with pytest.raises(ValueError, match=r"key 'cell': expected one of \['elman', 'gru', 'lstm', "
                                         r"'mgru', 'stacked'\], found 'qrnn'"):
        rp.load(p)
    p = tmp_path / "missing_param.npz"
    np.savez(p, cell=np.array("elman"), W=np.eye(2), U=np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        rp.load(p)
    p = tmp_path / "nan.npz"
    np.savez(p, cell=np.array("elman"), W=np.full((2, 2), np.nan), U=np.ones((2, 1)), b=np.zeros(2))
    with pytest.raises(ValueError, match=r"W: expected finite values, found 4 NaN/Inf"):
        rp.load(p)


def test_pickled_object_is_refused(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, cell=np.array("elman"), W=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"key .W.: expected a numeric or string array, found dtype object .*allow_pickle=False"):
        rp.load(p)


def test_metadata_must_be_plain():
    with pytest.raises(ValueError, match=r"metadata 'obj': expected a number, string or numeric array"):
        rp.save("/tmp/never.npz", random_cell("elman", 2, 1, seed=0), obj={"a": 1})
