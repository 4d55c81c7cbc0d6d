"""Truncation: Eckart–Young, data-aware optimality (closed form vs optimiser),
singular moment matrices, the propagation weighting's Gramians, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from rnnperturb.perturb.low_rank import _reach, target_mask


def _inputs(T=12, B=3, m=3, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, m))


def _regressors(cell, X, h0=None):
    """Regressors by a plain loop with the public API: dict name -> (N, n)."""
    T, B = X.shape[:2]
    h = np.zeros((B, cell.n)) if h0 is None else h0
    out = {k: [] for k in cell.recurrent_names}
    for t in range(T):
        if cell.kind == "elman":
            out["W"].append(h)
        else:
            f, _ = cell.gates(h, X[t])
            out["Wf"].append(h)
            out["Wh"].append(f * h)
        h = cell.step(h, X[t])
    return {k: np.concatenate(v) for k, v in out.items()}


def _objective(W, A, R):
    """Mean squared forcing (1/N) Σ ||(W - A) a||² over the rows a of R."""
    return float(np.mean(np.sum((R @ (W - A).T) ** 2, axis=1)))


@pytest.mark.parametrize("r", [0, 1, 3, 5, 8])
def test_eckart_young(kind, r):
    cell = random_cell(kind, 8, 3, spectral_norm=1.3, seed=r)
    small = rp.truncate_svd(cell, rank=r)
    assert type(small) is type(cell)
    for k, W in cell.recurrent.items():
        s = np.linalg.svd(W, compute_uv=False)
        dW = small.recurrent[k] - W
        spec = np.linalg.norm(dW, 2)
        assert spec == pytest.approx(s[r] if r < 8 else 0.0, abs=1e-12)
        assert np.linalg.norm(dW) == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), abs=1e-12)
        assert np.linalg.matrix_rank(small.recurrent[k]) == r
    for k in cell.input_params:
        np.testing.assert_array_equal(getattr(small, k), getattr(cell, k))


def test_full_rank_is_exact_and_dict_leaves_others(kind):
    cell = random_cell(kind, 6, 2, seed=1, n_out=3)
    full = rp.truncate_svd(cell, rank=6)
    for k in cell.recurrent_names:
        np.testing.assert_array_equal(full.recurrent[k], cell.recurrent[k])
    np.testing.assert_array_equal(full.V, cell.V)
    first = cell.recurrent_names[0]
    part = rp.truncate_svd(cell, rank={first: 2})
    assert np.linalg.matrix_rank(part.recurrent[first]) == 2
    for k in cell.recurrent_names[1:]:
        np.testing.assert_array_equal(part.recurrent[k], cell.recurrent[k])
    X = _inputs(m=2)
    part_d = rp.truncate_svd(cell, rank={first: 2}, data=X)
    for k in cell.recurrent_names[1:]:
        np.testing.assert_array_equal(part_d.recurrent[k], cell.recurrent[k])
    if kind == "mgru":
        two = rp.truncate_svd(cell, rank={"Wf": 1, "Wh": 4})
        assert [np.linalg.matrix_rank(two.recurrent[k]) for k in ("Wf", "Wh")] == [1, 4]


def test_forcing_moments_match_loop(kind):
    cell = random_cell(kind, 5, 3, seed=2)
    X = _inputs(T=7, B=4)
    M = rp.forcing_moments(cell, X)
    R = _regressors(cell, X)
    for k in cell.recurrent_names:
        np.testing.assert_allclose(M[k], R[k].T @ R[k] / R[k].shape[0], rtol=1e-12, atol=1e-14)


def _brute_force_min(W, r, obj, seed=0, starts=8):
    """Best value of obj(P @ Q.T) over random starts of BFGS on the factors."""
    n = W.shape[0]
    rng = np.random.default_rng(seed)
    U, s, Vt = np.linalg.svd(W)
    best = np.inf
    for i in range(starts):
        if i == 0:     # start at the plain SVD
            x0 = np.concatenate([(U[:, :r] * s[:r]).ravel(), Vt[:r].T.ravel()])
        else:
            x0 = rng.standard_normal(2 * n * r)
        f = lambda x: obj(x[:n * r].reshape(n, r) @ x[n * r:].reshape(n, r).T)  # noqa: E731
        res = minimize(f, x0, method="BFGS", options={"gtol": 1e-12, "maxiter": 5000})
        best = min(best, res.fun)
    return best


@pytest.mark.parametrize("r", [1, 2, 3])
def test_data_aware_is_optimal_against_optimiser(kind, r):
    cell = random_cell(kind, 4, 2, spectral_norm=1.5, seed=10 + r)
    X = _inputs(T=6, B=3, m=2, seed=r)
    small = rp.truncate_svd(cell, rank=r, data=X)
    plain = rp.truncate_svd(cell, rank=r)
    R = _regressors(cell, X)
    for k, W in cell.recurrent.items():
        A = small.recurrent[k]
        assert np.linalg.matrix_rank(A, tol=1e-10) <= r
        ours = _objective(W, A, R[k])
        best = _brute_force_min(W, r, lambda A_: _objective(W, A_, R[k]), seed=r)
        assert ours <= best + 1e-10 * max(1.0, best)
        assert best <= ours * (1 + 1e-6) + 1e-12      # the optimiser does find it
        assert ours <= _objective(W, plain.recurrent[k], R[k]) + 1e-12
        rng = np.random.default_rng(0)
        U, s, Vt = np.linalg.svd(A)
        P, Qt = U[:, :r] * s[:r], Vt[:r]
        for _ in range(50):   # random rank-r competitors near the optimum never beat it
            Z = (P + 1e-2 * rng.standard_normal((4, r))) @ (Qt + 1e-2 * rng.standard_normal((r, 4)))
            assert _objective(W, Z, R[k]) >= ours - 1e-12


def test_weighted_low_rank_two_sided_optimal():
    rng = np.random.default_rng(3)
    n, r = 4, 2
    W = rng.standard_normal((n, n))
    G = rng.standard_normal((n, n))
    Q = G @ G.T + 0.1 * np.eye(n)
    Hm = rng.standard_normal((n, 7))
    M = Hm @ Hm.T / 7
    A = rp.weighted_low_rank(W, rank=r, moment=M, left=Q)
    w, V = np.linalg.eigh(Q)
    Qh = (V * np.sqrt(w)) @ V.T
    wm, Vm = np.linalg.eigh(M)
    Mh = (Vm * np.sqrt(np.clip(wm, 0, None))) @ Vm.T
    obj = lambda A_: float(np.sum((Qh @ (W - A_) @ Mh) ** 2))  # noqa: E731
    best = _brute_force_min(W, r, obj, seed=1)
    assert np.linalg.matrix_rank(A, tol=1e-10) == r
    assert obj(A) <= best + 1e-10
    assert best <= obj(A) * (1 + 1e-6)
    # identity weights give Eckart–Young
    U, s, Vt = np.linalg.svd(W)
    np.testing.assert_allclose(rp.weighted_low_rank(W, rank=r, moment=np.eye(n)),
                               (U[:, :r] * s[:r]) @ Vt[:r], atol=1e-12)


@pytest.mark.parametrize("r", [1, 2])
def test_singular_moment_returns_ridge_limit(r):
    """With h0 = 0 and T = 2 the regressors are {0, h_1}: M has rank 1."""
    cell = random_cell("elman", 4, 2, spectral_norm=1.2, seed=5)
    X = _inputs(T=2, B=1, m=2, seed=1)
    M = rp.forcing_moments(cell, X)["W"]
    assert np.linalg.matrix_rank(M) == 1
    W = cell.W
    A = rp.truncate_svd(cell, rank=r, data=X).W
    R = _regressors(cell, X)["W"]
    assert _objective(W, A, R) <= 1e-28              # a perfect fit on the data
    assert np.linalg.matrix_rank(A, tol=1e-10) == r
    # the documented choice: the limit of the unique minimisers for M + eps I
    for eps in (1e-10, 1e-12):
        Ae = rp.weighted_low_rank(W, rank=r, moment=M + eps * np.eye(4))
        np.testing.assert_allclose(A, Ae, atol=1e-4)
    # and not just any minimiser: the min-norm one (zero off the data) differs
    h1 = R[1]
    A_min = np.outer(W @ h1, h1) / (h1 @ h1)
    if r == 1:
        assert np.linalg.norm(A - A_min) > 1e-3


def test_zero_moment_falls_back_to_plain():
    cell = random_cell("elman", 5, 2, seed=6)
    X = np.zeros((1, 2, 2))       # only h0 = 0 is a regressor
    A = rp.truncate_svd(cell, rank=2, data=X).W
    np.testing.assert_allclose(A, rp.truncate_svd(cell, rank=2).W, atol=1e-12)


def test_reach_gramians_against_forced_tangent_runs(kind):
    """δᵀ O_k δ is the first-order energy at the target steps of a forcing δ
    injected into matrix k's pre-activation at one step only."""
    cell = random_cell(kind, 4, 2, spectral_norm=1.1, seed=7)
    X = _inputs(T=6, B=2, m=2, seed=3)
    mask = np.zeros((6, 2), dtype=bool)
    mask[[3, 5], 0] = True
    mask[4, 1] = True
    h0 = np.zeros((2, 4))
    got = {(t, k): (a, O) for t, k, a, O in _reach(cell, X, h0, mask)}
    H = cell.run(X)
    Hprev = np.concatenate([h0[None], H[:-1]])
    rng = np.random.default_rng(0)
    for (t, k), (a, O) in got.items():
        for b in range(2):
            if np.linalg.norm(Hprev[t, b]) == 0:
                continue
            delta = rng.standard_normal(4)
            reg = a[b]
            dW = {k: np.outer(delta, reg) / (reg @ reg)}     # ΔW a = δ at this step
            ell = np.zeros(4)
            energy = 0.0
            for s in range(t, 6):
                _, ell = cell.jvp(Hprev[s, b], X[s, b], ell, dW if s == t else None)
                if mask[s, b]:
                    energy += ell @ ell
            assert delta @ O[b] @ delta == pytest.approx(energy, rel=1e-10, abs=1e-14)


def test_propagation_weighting_ridge_one_is_data_aware_with_reach_weights(kind):
    cell = random_cell(kind, 6, 3, seed=8)
    X = _inputs(T=10, B=3, seed=4)
    wts = rp.propagation_weights(cell, X, target=3)
    small = rp.truncate_svd(cell, rank=2, data=X, weighting="propagation", target=3, ridge=1.0)
    for k in cell.recurrent_names:
        np.testing.assert_allclose(
            small.recurrent[k], rp.weighted_low_rank(cell.recurrent[k], rank=2,
                                                     moment=wts[k][0]), atol=1e-12)
        Mw, Q = wts[k]
        assert np.trace(Mw) > 0 and np.all(np.linalg.eigvalsh(Q) > -1e-12)
    small = rp.truncate_svd(cell, rank=2, data=X, weighting="propagation")
    assert all(np.linalg.matrix_rank(v, tol=1e-10) == 2 for v in small.recurrent.values())


def test_target_mask_forms():
    assert target_mask(None, 5, 2)[:, 0].tolist() == [False] * 4 + [True]
    assert target_mask(2, 5, 2).sum() == 4
    m = target_mask(np.array([True, False, False, False, True]), 5, 2)
    assert m.shape == (5, 2) and m.sum() == 4


@pytest.mark.parametrize("bad, match", [
    (-1, r"rank: expected an integer in \[0, 6\], found -1"),
    (7, r"rank: expected an integer in \[0, 6\], found 7"),
    (2.5, r"rank: expected an int"),
    (True, r"rank: expected an int"),
    ("3", r"rank: expected an int"),
    ({"Q": 2}, r"rank: expected keys among"),
    ({"W": 9}, r"rank\['W'\]: expected an integer in \[0, 6\], found 9"),
])
def test_bad_rank(bad, match):
    cell = random_cell("elman", 6, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        rp.truncate_svd(cell, rank=bad)


def test_bad_options():
    cell = random_cell("mgru", 6, 2, seed=0)
    X = _inputs(T=5, B=2, m=2)
    with pytest.raises(ValueError, match="weighting: expected"):
        rp.truncate_svd(cell, rank=2, data=X, weighting="fisher")
    with pytest.raises(ValueError, match="data: expected input sequences"):
        rp.truncate_svd(cell, rank=2, weighting="propagation")
    with pytest.raises(ValueError, match="data: expected None"):
        rp.truncate_svd(cell, rank=2, data=X, weighting="svd")
    with pytest.raises(ValueError, match="ridge: expected"):
        rp.truncate_svd(cell, rank=2, data=X, weighting="propagation", ridge=2.0)
    with pytest.raises(ValueError, match="target: expected a boolean mask of shape"):
        rp.truncate_svd(cell, rank=2, data=X, weighting="propagation", target=np.ones(3, bool))
    with pytest.raises(ValueError, match="target: expected at least one"):
        rp.truncate_svd(cell, rank=2, data=X, weighting="propagation", target=np.zeros(5, bool))
    with pytest.raises(ValueError, match=r"target: expected an integer in \[1, 5\]"):
        rp.truncate_svd(cell, rank=2, data=X, weighting="propagation", target=9)
    with pytest.raises(ValueError, match="X: expected last dimension m=2"):
        rp.truncate_svd(cell, rank=2, data=np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match="moment: expected a positive semi-definite"):
        rp.weighted_low_rank(np.eye(3), rank=1, moment=-np.eye(3))
    with pytest.raises(ValueError, match="left: expected a symmetric positive definite"):
        rp.weighted_low_rank(np.eye(3), rank=1, left=np.zeros((3, 3)))


def test_precomputed_weights_give_the_same_cell(kind):
    cell = random_cell(kind, 6, 3, seed=11)
    X = _inputs(T=9, B=2, seed=5)
    for weighting in ("forcing", "propagation"):
        w = rp.truncation_weights(cell, X, weighting=weighting, target=2)
        a = rp.truncate_svd(cell, rank=3, weights=w)
        b = rp.truncate_svd(cell, rank=3, data=X, weighting=weighting, target=2)
        for k in cell.recurrent_names:
            np.testing.assert_array_equal(a.recurrent[k], b.recurrent[k])
    with pytest.raises(ValueError, match="weights: expected data=None"):
        rp.truncate_svd(cell, rank=3, data=X, weights=w)
    with pytest.raises(ValueError, match="weights: expected a dict over"):
        rp.truncate_svd(cell, rank=3, weights={"Q": 1})
    with pytest.raises(ValueError, match="weighting: expected 'forcing' or 'propagation'"):
        rp.truncation_weights(cell, X, weighting="svd")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(2, 7), data=st.data())
def test_weighted_low_rank_attains_eckart_young_bound(seed, n, data):
    """For any W, PSD M (possibly singular) and PD Q, the returned A has rank <= r
    and its objective equals the Eckart–Young lower bound Σ_{i>r} σ_i(Q^½ W M^½)²,
    so no rank-r matrix does better."""
    r = data.draw(st.integers(0, n))
    k = data.draw(st.integers(0, n + 2))          # rank of M (<= n)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n))
    Hm = rng.standard_normal((n, k))
    M = Hm @ Hm.T
    G = rng.standard_normal((n, n))
    Q = G @ G.T + 0.05 * np.eye(n) if data.draw(st.booleans()) else None
    A = rp.weighted_low_rank(W, rank=r, moment=M, left=Q)
    Qh = np.eye(n) if Q is None else _sqrtm(Q)
    Mh = _sqrtm(M)
    s = np.linalg.svd(Qh @ W @ Mh, compute_uv=False)
    bound = float(np.sum(s[r:] ** 2))
    obj = float(np.sum((Qh @ (W - A) @ Mh) ** 2))
    scale = float(np.sum(s ** 2)) + 1e-300
    assert obj <= bound + 1e-9 * scale
    assert np.linalg.matrix_rank(A, tol=1e-9 * max(1.0, np.abs(A).max())) <= r


def _sqrtm(S):
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0, None))) @ V.T


# ----- truncation about the identity (issue 14, item 4)

ALL_KINDS = sorted(rp.cells.CELL_TYPES)


@pytest.mark.parametrize("cell_kind", ALL_KINDS)
@pytest.mark.parametrize("r", [0, 1, 3, 5, 8])
def test_eckart_young_about_identity(cell_kind, r):
    """||W_r - W||_2 = σ_{r+1}(W - I), ||W_r - W||_F = tail of σ(W - I), rank(W_r - I) = r,
    rank 0 gives I exactly, rank n gives W exactly."""
    n = 8
    cell = random_cell(cell_kind, n, 3, spectral_norm=1.3, seed=20 + r)
    small = rp.truncate_svd(cell, rank=r, about="identity")
    assert type(small) is type(cell)
    I = np.eye(n)
    for k, W in cell.recurrent.items():
        s = np.linalg.svd(W - I, compute_uv=False)
        A = small.recurrent[k]
        dW = A - W
        assert np.linalg.norm(dW, 2) == pytest.approx(s[r] if r < n else 0.0, abs=1e-12)
        assert np.linalg.norm(dW) == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), abs=1e-12)
        assert np.linalg.matrix_rank(A - I, tol=1e-10) == r
        if r == 0:
            np.testing.assert_array_equal(A, I)
        if r == n:
            np.testing.assert_array_equal(A, W)
        # and it is not plain truncation: W_r itself has full rank for r < n
        if 0 < r < n:
            assert np.linalg.matrix_rank(A, tol=1e-10) == n
            s_plain = np.linalg.svd(W, compute_uv=False)
            assert np.linalg.norm(rp.truncate_svd(cell, rank=r).recurrent[k] - W, 2) == \
                pytest.approx(s_plain[r], abs=1e-12)
    for k in cell.input_params:
        np.testing.assert_array_equal(getattr(small, k), getattr(cell, k))


def test_identity_near_identity_matrix_is_cheap():
    """W = I + (rank 2): about the identity, rank 2 is exact; plain needs rank n."""
    rng = np.random.default_rng(4)
    n = 7
    cell = random_cell("elman", n, 2, seed=3)
    W = np.eye(n) + 0.3 * rng.standard_normal((n, 2)) @ rng.standard_normal((2, n))
    cell = cell.replace(W=W)
    np.testing.assert_allclose(rp.truncate_svd(cell, rank=2, about="identity").W, W, atol=1e-14)
    assert np.linalg.norm(rp.truncate_svd(cell, rank=2).W - W, 2) > 0.5


@pytest.mark.parametrize("r", [1, 2, 3])
def test_data_aware_about_identity_is_optimal(kind, r):
    """min over A = I + B, rank B <= r, of the mean squared forcing ||(W - A) a||^2:
    the closed form attains the Eckart–Young bound of (W - I) M^½ and a BFGS search
    over the factors of B finds nothing better."""
    n = 4
    cell = random_cell(kind, n, 2, spectral_norm=1.5, seed=30 + r)
    X = _inputs(T=6, B=3, m=2, seed=r)
    small = rp.truncate_svd(cell, rank=r, data=X, about="identity")
    plain_id = rp.truncate_svd(cell, rank=r, about="identity")
    M = rp.forcing_moments(cell, X)
    R = _regressors(cell, X)
    I = np.eye(n)
    for k, W in cell.recurrent.items():
        A = small.recurrent[k]
        assert np.linalg.matrix_rank(A - I, tol=1e-10) <= r
        ours = _objective(W, A, R[k])
        s = np.linalg.svd((W - I) @ _sqrtm(M[k]), compute_uv=False)
        assert ours == pytest.approx(float(np.sum(s[r:] ** 2)), rel=1e-9, abs=1e-13)
        best = _brute_force_min(W - I, r, lambda B_: _objective(W, I + B_, R[k]), seed=r)
        assert ours <= best + 1e-10 * max(1.0, best)
        assert best <= ours * (1 + 1e-6) + 1e-12
        assert ours <= _objective(W, plain_id.recurrent[k], R[k]) + 1e-12


def test_propagation_and_weights_about_identity(kind):
    """Every weighting about I is I + weighted_low_rank(W - I, same weights), and
    precomputed weights give the same cell as data=."""
    cell = random_cell(kind, 6, 3, seed=12)
    X = _inputs(T=9, B=2, seed=6)
    I = np.eye(6)
    for weighting in ("forcing", "propagation"):
        w = rp.truncation_weights(cell, X, weighting=weighting, target=2)
        a = rp.truncate_svd(cell, rank=2, weights=w, about="identity")
        b = rp.truncate_svd(cell, rank=2, data=X, weighting=weighting, target=2,
                            about="identity")
        for k in cell.recurrent_names:
            np.testing.assert_array_equal(a.recurrent[k], b.recurrent[k])
            M, left = w[k]
            np.testing.assert_allclose(
                a.recurrent[k], I + rp.weighted_low_rank(cell.recurrent[k] - I, rank=2,
                                                         moment=M, left=left), atol=1e-13)
            if left is not None:      # attains the two-sided Eckart–Young bound
                Qh, Mh = _sqrtm(left), _sqrtm(M)
                s = np.linalg.svd(Qh @ (cell.recurrent[k] - I) @ Mh, compute_uv=False)
                obj = float(np.sum((Qh @ (cell.recurrent[k] - a.recurrent[k]) @ Mh) ** 2))
                assert obj == pytest.approx(float(np.sum(s[2:] ** 2)), rel=1e-9, abs=1e-13)


def test_about_per_matrix_and_float32():
    cell = random_cell("mgru", 6, 2, seed=13)
    I = np.eye(6)
    mixed = rp.truncate_svd(cell, rank=2, about={"Wh": "identity"})
    np.testing.assert_array_equal(mixed.Wf, rp.truncate_svd(cell, rank=2).Wf)
    np.testing.assert_array_equal(mixed.Wh, rp.truncate_svd(cell, rank=2, about="identity").Wh)
    assert np.linalg.matrix_rank(mixed.Wh - I, tol=1e-10) == 2
    # Wf alone about I, Wh kept exactly
    only_f = rp.truncate_svd(cell, rank={"Wf": 1}, about="identity")
    np.testing.assert_array_equal(only_f.Wh, cell.Wh)
    assert np.linalg.matrix_rank(only_f.Wf - I, tol=1e-10) == 1
    # explicit None entries are plain
    same = rp.truncate_svd(cell, rank=2, about={"Wf": None, "Wh": None})
    for k in cell.recurrent_names:
        np.testing.assert_array_equal(same.recurrent[k], rp.truncate_svd(cell, rank=2).recurrent[k])
    c32 = rp.cells.cell_from_params("elman", random_cell("elman", 6, 2, seed=1).params,
                                    dtype=np.float32)
    s32 = rp.truncate_svd(c32, rank=2, about="identity")
    assert s32.W.dtype == np.float32
    sv = np.linalg.svd(s32.W.astype(np.float64) - I, compute_uv=False)
    assert sv[2] < 1e-6 * sv[0]


@pytest.mark.parametrize("bad, match", [
    ("Identity", r"about: expected None, 'identity' or a dict over \['W'\] of ElmanRNN, "
                 r"found 'Identity'"),
    ("zero", r"about: expected None, 'identity' or a dict over \['W'\]"),
    (1, r"about: expected None, 'identity' or a dict"),
    ({"Wh": "identity"}, r"about: expected keys among the recurrent matrices \['W'\] of "
                         r"ElmanRNN, found \['Wh'\]"),
    ({"W": "eye"}, r"about\['W'\]: expected None or 'identity', found 'eye'"),
])
def test_bad_about(bad, match):
    cell = random_cell("elman", 6, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        rp.truncate_svd(cell, rank=2, about=bad)
    with pytest.raises(ValueError, match=match):
        rp.compression_cost(cell, cell, about=bad)
