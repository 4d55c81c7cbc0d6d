"""Bad input gets a ValueError naming the argument, the expected and the found value."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell


def elman_kw(n=3, m=2):
    return dict(W=np.eye(n), U=np.ones((n, m)), b=np.zeros(n))


def test_wrong_shapes():
    kw = elman_kw()
    kw["W"] = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"W: expected a square matrix \(n, n\), found shape \(3, 2\)"):
        rp.ElmanRNN(**kw)
    kw = elman_kw()
    kw["b"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"b: expected shape \(3\), found shape \(4,\)"):
        rp.ElmanRNN(**kw)
    with pytest.raises(ValueError, match=r"U: expected shape \(3, m\), found None"):
        rp.ElmanRNN(W=np.eye(3), U=None, b=np.zeros(3))


def test_nan_inf_and_dtype():
    kw = elman_kw()
    kw["U"] = np.array([[1.0, np.nan], [0, 0], [np.inf, 0]])
    with pytest.raises(ValueError, match=r"U: expected finite values, found 2 NaN/Inf entries"):
        rp.ElmanRNN(**kw)
    kw = elman_kw()
    kw["b"] = np.array(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"b: expected a real floating-point array, found dtype <U1"):
        rp.ElmanRNN(**kw)
    kw = elman_kw()
    kw["W"] = np.eye(3, dtype=complex)
    with pytest.raises(ValueError, match=r"W: expected a real floating-point array, found dtype complex128"):
        rp.ElmanRNN(**kw)


def test_mgru_shapes():
    n, m = 3, 2
    kw = dict(Wf=np.eye(n), Uf=np.ones((n, m)), bf=np.zeros(n), Wh=np.eye(n),
              Uh=np.ones((n, m + 1)), bh=np.zeros(n))
    with pytest.raises(ValueError, match=r"Uh: expected shape \(3, 2\), found shape \(3, 3\)"):
        rp.MGRU(**kw)


def test_readout_errors():
    with pytest.raises(ValueError, match=r"V: expected shape \(\*, 3\), found shape \(2, 4\)"):
        rp.ElmanRNN(**elman_kw(), V=np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"c: expected None when V is None"):
        rp.ElmanRNN(**elman_kw(), c=np.ones(2))
    with pytest.raises(ValueError, match=r"readout: expected a cell with V"):
        rp.ElmanRNN(**elman_kw()).readout(np.zeros((1, 3)))


def test_run_input_errors():
    cell = random_cell("mgru", 4, 2, seed=0)
    with pytest.raises(ValueError, match=r"X: expected last dimension m=2, found shape \(5, 3\)"):
        cell.run(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"X: expected shape \(T, B, 2\) or \(T, 2\), found shape \(5,\)"):
        cell.run(np.zeros(5))
    with pytest.raises(ValueError, match=r"X: expected finite values, found 1 NaN/Inf"):
        cell.run(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"h0: expected shape \(3, 4\), found shape \(2, 4\)"):
        cell.run(np.zeros((5, 3, 2)), h0=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"h0: expected shape \(4\), found shape \(3,\)"):
        cell.run(np.zeros((5, 2)), h0=np.zeros(3))


def test_replace_and_dW_errors():
    cell = random_cell("elman", 3, 2, seed=0)
    with pytest.raises(ValueError, match=r"replace: expected parameter names among .*found \['Wf'\]"):
        cell.replace(Wf=np.eye(3))
    with pytest.raises(ValueError, match=r"dW: expected keys among \['W'\], found \['Wh'\]"):
        cell.jvp(np.zeros(3), np.zeros(2), dW={"Wh": np.eye(3)})
    with pytest.raises(ValueError, match=r"dW\['W'\]: expected shape \(3, 3\), found shape \(2, 2\)"):
        cell.jvp(np.zeros(3), np.zeros(2), dW={"W": np.eye(2)})


def test_incompatible_other_is_named():
    cell = random_cell("elman", 3, 2, seed=0)
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"other: expected a ElmanRNN like cell, found MGRU"):
        rp.deviation(cell, random_cell("mgru", 3, 2, seed=0), X)
    with pytest.raises(ValueError, match=r"other: expected sizes \(n=3, m=2\), found \(n=4, m=2\)"):
        rp.first_order(cell, random_cell("elman", 4, 2, seed=0), X)
    other = cell.replace(b=cell.b + 1e-3)
    with pytest.raises(ValueError, match=r"other.b: expected exactly cell.b .*found max \|difference\| 0.001"):
        rp.deviation(cell, other, X)
    f32 = rp.ElmanRNN(**{k: v.astype(np.float32) for k, v in cell.params.items()})
    with pytest.raises(ValueError, match=r"other: expected dtype float64, found float32"):
        rp.deviation(cell, f32, X)
    # the readout of other is ignored
    rp.deviation(cell, cell.replace(V=np.ones((2, 3))), X)


def test_task_errors():
    with pytest.raises(ValueError, match=r"seed: expected an int or numpy.random.Generator, found None"):
        rp.tasks.memorization(2, 5, 10, batch=3)
    with pytest.raises(ValueError, match=r"D: expected an integer in \[0, inf\], found -1"):
        rp.tasks.memorization_all(2, 5, -1)
    with pytest.raises(ValueError, match=r"repeat: expected a probability in \[0, 1\), found 1.0"):
        rp.tasks.kback(repeat=1.0, seed=0)
    with pytest.raises(ValueError, match=r"task: expected one of .*found 'copy'"):
        rp.tasks.make_task("copy")
    with pytest.raises(ValueError, match=r"kind: expected one of \['elman', 'gru', 'lstm', "
                       r"'mgru'\], found 'qrnn'"):
        random_cell("qrnn", seed=0)
