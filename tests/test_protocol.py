"""The cell protocol: one definition per cell, algorithms written once.

A new cell is one class (here a leaky tanh RNN defined in this file, as a new
module would define it); the generic algorithms must run on it and agree with
independent references (finite differences, a hand-written loop), and nothing
outside ``rnnperturb/cells/`` may branch on the cell type.
"""
from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells import Cell, cell_from_params, cell_type
from rnnperturb.cells.random import random_cell

ROOT = pathlib.Path(rp.__file__).parent
ALPHA = 0.3


@dataclass(frozen=True, eq=False)
class LeakyRNN(Cell):
    r"""Leaky tanh RNN, :math:`h_t = (1-\alpha) h_{t-1} + \alpha\tanh(W h_{t-1} + U x_t + b)`."""

    W: np.ndarray = None
    U: np.ndarray = None
    b: np.ndarray = None
    V: np.ndarray | None = None
    c: np.ndarray | None = None
    dtype: np.dtype = field(default=None, repr=False)

    kind: ClassVar[str] = "leaky_test"
    recurrent_names: ClassVar[tuple[str, ...]] = ("W",)
    input_params: ClassVar[tuple[str, ...]] = ("U", "b")
    input_of: ClassVar[dict] = {"W": "U"}
    diagonal_forcing: ClassVar[tuple[str, ...]] = ("W",)

    def __post_init__(self):
        n, m = self._sizes("W", "U")
        self._validate({"W": (n, n), "U": (n, m), "b": (n,)})

    @property
    def n(self):
        return self.W.shape[0]

    @property
    def m(self):
        return self.U.shape[1]

    @staticmethod
    def forward(ns, P, h, x, rec):
        c = ns.tanh(rec("W", h) + ns.matvec(P["U"], x) + P["b"])
        return ns.lerp(h, c, ALPHA), {"c": c}

    @staticmethod
    def tangent(ns, P, h, aux, dh, rec, dinp):
        c = aux["c"]
        return (1 - ALPHA) * dh + ALPHA * (1 - c * c) * (rec("W", dh) + dinp("W"))

    def state_bounds(self, h0):
        h0 = np.asarray(h0, np.float64)
        return np.minimum(h0, -1.0), np.maximum(h0, 1.0)



def _leaky(n=6, m=2, seed=0, scale=1.2):
    rng = np.random.default_rng(seed)
    return LeakyRNN(W=scale * rng.normal(size=(n, n)) / np.sqrt(n), U=rng.normal(size=(n, m)),
                    b=0.1 * rng.normal(size=n))


def _loop(cell, X):
    """Hand-written reference loop of the leaky cell."""
    h = np.zeros((X.shape[1], cell.n))
    out = []
    for x in X:
        h = (1 - ALPHA) * h + ALPHA * np.tanh(h @ cell.W.T + x @ cell.U.T + cell.b)
        out.append(h)
    return np.array(out)


def test_new_cell_runs_and_matches_a_hand_written_loop():
    cell = _leaky()
    X = np.random.default_rng(1).normal(size=(9, 3, 2))
    np.testing.assert_allclose(cell.run(X), _loop(cell, X), rtol=0, atol=1e-15)


def test_new_cell_jacobian_jvp_and_input_jacobian_against_finite_differences():
    cell = _leaky()
    rng = np.random.default_rng(2)
    h, x = rng.uniform(-1, 1, (3, 6)), rng.normal(size=(3, 2))
    eps = 1e-6
    Jfd = np.stack([(cell.step(h + eps * e, x) - cell.step(h - eps * e, x)) / (2 * eps)
                    for e in np.eye(6)], -1)
    np.testing.assert_allclose(cell.jacobian(h, x), Jfd, atol=1e-9)
    Gfd = np.stack([(cell.step(h, x + eps * e) - cell.step(h, x - eps * e)) / (2 * eps)
                    for e in np.eye(2)], -1)
    np.testing.assert_allclose(cell.input_jacobian(h, x), Gfd, atol=1e-9)
    dW = rng.normal(size=(6, 6))
    fd = (cell.replace(W=cell.W + eps * dW).step(h, x)
          - cell.replace(W=cell.W - eps * dW).step(h, x)) / (2 * eps)
    np.testing.assert_allclose(cell.directional(h, x, {"W": dW}), fd, atol=1e-9)
    hn, J, forcing = cell.linearise(h, x)
    diag, Bt, a = forcing["W"]
    assert diag
    np.testing.assert_allclose(Bt * (a @ dW.T), fd, atol=1e-9)


def test_generic_algorithms_run_on_a_new_cell():
    """deviation, first order and the rank sweep need nothing but the protocol."""
    cell = _leaky(n=8, seed=3)
    X = np.random.default_rng(4).normal(size=(12, 2, 2))
    small = rp.truncate_svd(cell, rank=5)
    assert isinstance(small, LeakyRNN)
    E = rp.deviation(cell, small, X)
    np.testing.assert_allclose(E, _loop(small, X) - _loop(cell, X), atol=1e-14)
    # first order: the s^2 law against the exact deviation
    dW = small.W - cell.W
    errs = []
    for s in (1e-2, 1e-3):
        other = cell.replace(W=cell.W + s * dW)
        errs.append(np.abs(rp.first_order(cell, other, X) - rp.deviation(cell, other, X)).max())
    assert errs[1] < errs[0] / 50          # second order: a factor ~100 per decade
    sw = rp.rank_sweep(cell, X, ranks=[2, 5, 8])
    np.testing.assert_allclose(sw.exact[1], np.linalg.norm(E, axis=-1), rtol=1e-10, atol=1e-14)


def test_unknown_cell_name_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"cell: expected one of \['elman', 'gru', 'lstm', "
                       r"'mgru'\], found 'qrnn'"):
        cell_type("qrnn")
    with pytest.raises(ValueError, match="found 'qrnn'"):
        cell_from_params("qrnn", {})


def test_a_cell_without_the_protocol_fails_clearly():
    @dataclass(frozen=True, eq=False)
    class Incomplete(LeakyRNN):
        kind: ClassVar[str] = "incomplete_test"
        forward = staticmethod(Cell.forward)

    cell = Incomplete(W=np.eye(3), U=np.ones((3, 1)), b=np.zeros(3))
    with pytest.raises(NotImplementedError):
        cell.run(np.zeros((2, 1)))


_BRANCH = re.compile(r"\.kind\s*[!=]=|\bkind\s*[!=]=\s*['\"](elman|mgru)|isinstance\([^)]*\b(ElmanRNN|MGRU)\b")


def test_no_cell_type_branches_outside_cells():
    """Issue 11: 0 branches on the cell type in rnnperturb/ outside rnnperturb/cells/."""
    found = []
    for p in sorted(ROOT.rglob("*.py")):
        if p.parent.name == "cells" and p.parent.parent == ROOT:
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if _BRANCH.search(code) and "dtype.kind" not in code and "task.kind" not in code:
                found.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert found == []


def test_one_definition_of_each_step():
    """The gated update (1 - f) h + f c is written once, as a namespace's ``lerp``
    (float, interval, mpmath, sympy namespaces each define theirs); no algorithm
    writes a cell's step out again."""
    pat = re.compile(r"\(1(\.0)?\s*-\s*f\w*\)\s*\*\s*h\w*\s*\+\s*f\w*\s*\*\s*c")
    hits = []
    for p in ROOT.rglob("*.py"):
        lines = p.read_text().splitlines()
        for i, line in enumerate(lines):
            if pat.search(line.split("#", 1)[0]):
                owner = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip().startswith("def ")), "")
                if not owner.startswith("def lerp("):
                    hits.append(f"{p.relative_to(ROOT)}:{i + 1}")
    assert hits == []


@pytest.mark.parametrize("kind", ["elman", "mgru"])
def test_shipped_cells_follow_the_protocol(kind):
    cell = random_cell(kind, 5, 2, seed=0)
    assert cell_type(kind) is type(cell)
    lo, hi = cell.state_bounds(np.zeros((2, 5)))
    assert lo.shape == hi.shape == (2, 5) and np.all(lo < hi)
    X = np.random.default_rng(0).normal(size=(30, 2, 2)) * 3
    H = cell.run(X)
    assert np.all(H >= lo[None]) and np.all(H <= hi[None])
    assert set(cell.diagonal_forcing) <= set(cell.recurrent_names)
    assert set(cell.input_of) == set(cell.recurrent_names)
