"""Linear memory capacity and Fisher memory curve (rnnperturb.stats.memory)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnperturb as rp
from rnnperturb.stats.memory import (delay_linearisation, finite_time_lyapunov,
                                     fisher_memory_curve, input_jacobian, linear_memory,
                                     memory_capacity, simulated_memory_curve)
from rnnperturb.cells.random import random_cell


def _random_system(N, rho, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N, N))
    A *= rho / np.max(np.abs(np.linalg.eigvals(A)))
    return A, rng.standard_normal(N)


def test_capacity_matches_least_squares_simulation():
    A, v = _random_system(5, 0.8, 1)
    lm = linear_memory(A, v, noise=0.05, kmax=30)
    sim = simulated_memory_curve(A, v, noise=0.05, kmax=30, steps=40000, seed=2)
    # in-sample least-squares r^2 is biased up by ~N/steps = 1.5e-4; sampling sd ~ 1/sqrt(steps)
    np.testing.assert_allclose(sim, lm.r2, atol=0.012)
    assert sim.sum() == pytest.approx(lm.r2.sum(), rel=0.03)
    assert lm.r2.sum() == pytest.approx(lm.capacity, rel=1e-3)   # curve nearly exhausted


def test_noiseless_capacity_is_rank():
    A, v = _random_system(4, 0.6, 3)
    assert memory_capacity(A, v) == pytest.approx(4.0, rel=1e-6)
    # not controllable: v an eigenvector of a symmetric A -> rank-one Gramian
    S = A + A.T
    S *= 0.5 / np.max(np.abs(np.linalg.eigvalsh(S)))
    w, Q = np.linalg.eigh(S)
    assert memory_capacity(S, Q[:, 0]) == pytest.approx(1.0, rel=1e-6)
    # finite horizon K < N: at most K independent inputs
    assert memory_capacity(A, v, horizon=2) == pytest.approx(2.0, rel=1e-6)


def _normal_matrix(N, seed, rho=0.9):
    """Real normal matrix: orthogonal Q times 2x2 rotation-scaling blocks."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    Bm = np.zeros((N, N))
    for i in range(0, N - 1, 2):
        r, th = rho * rng.uniform(0.2, 1), rng.uniform(0, np.pi)
        Bm[i:i + 2, i:i + 2] = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    if N % 2:
        Bm[-1, -1] = rho * rng.uniform(-1, 1)
    return Q @ Bm @ Q.T


@pytest.mark.parametrize("horizon", [None, 7, 50])
def test_fisher_total_is_one_for_normal_matrices(horizon):
    A = _normal_matrix(7, 4)
    assert np.allclose(A @ A.T, A.T @ A)
    v = np.random.default_rng(1).standard_normal(7)
    v /= np.linalg.norm(v)
    lm = linear_memory(A, v, noise=1.0, horizon=horizon, kmax=horizon or 400)
    assert lm.fisher_total == pytest.approx(1.0, rel=1e-9)
    assert lm.fisher.sum() == pytest.approx(1.0, rel=1e-6)
    # general normalisation: ||v||^2 / eps
    lm2 = linear_memory(A, 3 * v, noise=0.5, horizon=horizon, kmax=3)
    assert lm2.fisher_total == pytest.approx(9 / 0.5, rel=1e-9)


def test_delay_line_fisher_curve_closed_form():
    """Shift chain A e_i = e_{i+1}, v = e_1, eps = 1: C_n = diag(1..N) (horizon N),
    J(k) = 1/(k+1), J_tot = H_N > 1 (non-normal networks can beat normal ones)."""
    N = 6
    A = np.diag(np.ones(N - 1), -1)
    v = np.eye(N)[0]
    lm = linear_memory(A, v, noise=1.0, horizon=N)
    np.testing.assert_allclose(lm.fisher, 1.0 / np.arange(1, N + 1), rtol=1e-12)
    assert lm.fisher_total == pytest.approx(np.sum(1.0 / np.arange(1, N + 1)))
    assert lm.fisher_total > 1


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 6), seed=st.integers(0, 10 ** 6), rho=st.floats(0.05, 0.97),
       noise=st.floats(1e-3, 10.0), horizon=st.one_of(st.none(), st.integers(1, 30)))
def test_bounds_for_any_matrix(N, seed, rho, noise, horizon):
    A, v = _random_system(N, rho, seed)
    lm = linear_memory(A, v, noise=noise, horizon=horizon, kmax=min(horizon or 30, 30))
    vv = v @ v
    assert lm.fisher_total <= N * vv / noise * (1 + 1e-8)
    assert 0 <= lm.capacity <= N * (1 + 1e-8)
    assert lm.capacity <= lm.fisher_total * (1 + 1e-8)
    assert np.all(lm.r2 <= 1 + 1e-8) and np.all(lm.r2 >= -1e-12)
    assert np.all(lm.r2 <= lm.fisher * (1 + 1e-8) + 1e-15)


def test_fisher_curve_sums_to_total_and_scales_with_noise():
    A, v = _random_system(5, 0.7, 9)
    J1 = fisher_memory_curve(A, v, noise=1.0, kmax=300)
    lm = linear_memory(A, v, noise=1.0)
    assert J1.sum() == pytest.approx(lm.fisher_total, rel=1e-9)
    np.testing.assert_allclose(fisher_memory_curve(A, v, noise=0.1, kmax=300), 10 * J1,
                               rtol=1e-9)


def test_input_jacobian_matches_finite_differences(kind):
    cell = random_cell(kind, 6, 3, spectral_norm=1.2, seed=3)
    rng = np.random.default_rng(0)
    h = np.tanh(rng.standard_normal((2, 6)))
    x = rng.standard_normal((2, 3))
    J = input_jacobian(cell, h, x)
    eps = 1e-6
    for j in range(3):
        dx = np.zeros(3)
        dx[j] = eps
        fd = (cell.step(h, x + dx) - cell.step(h, x - dx)) / (2 * eps)
        np.testing.assert_allclose(J[:, :, j], fd, atol=1e-9)


def test_delay_linearisation_averages_cell_jacobians(kind):
    cell = random_cell(kind, 5, 4, seed=2)
    task = rp.tasks.memorization_all(K=2, L=3, D=6)
    X = task.X[:, :4]
    steps = np.arange(4, 10)                           # L+1 .. L+D
    dl = delay_linearisation(cell, X, steps, np.array([-1, 1, 0, 0]) / np.sqrt(2))
    H = cell.run(X)
    Hp = np.concatenate([np.zeros((1,) + H.shape[1:]), H[:-1]])
    Js = [cell.jacobian(Hp[t - 1], X[t - 1]) for t in steps]
    np.testing.assert_allclose(dl.A, np.mean(np.concatenate(Js), 0), atol=1e-13)
    if kind == "mgru":
        f = [rp.cells.sigmoid(Hp[t - 1] @ cell.Wf.T + X[t - 1] @ cell.Uf.T + cell.bf)
             for t in steps]
        assert dl.gate_mean == pytest.approx(np.mean(f))
    else:
        assert dl.gate_mean is None
    assert dl.jacobian_spread >= 0


def test_bad_input_raises():
    A, v = _random_system(3, 1.2, 0)
    with pytest.raises(ValueError, match="spectral radius"):
        linear_memory(A, v)
    with pytest.raises(ValueError, match="v"):
        linear_memory(A, np.ones(4))
    with pytest.raises(ValueError, match="A"):
        linear_memory(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="noise"):
        linear_memory(A, v, noise=-1.0, horizon=3)
    with pytest.raises(ValueError, match="kmax"):
        linear_memory(A, v, horizon=3, kmax=5)
    with pytest.raises(ValueError, match="noise"):
        fisher_memory_curve(A, v, noise=0.0, horizon=3)
    cell = random_cell("elman", 3, 2, seed=0)
    with pytest.raises(ValueError, match="steps"):
        delay_linearisation(cell, np.zeros((4, 2)), np.array([0, 9]), np.ones(2))
    with pytest.raises(ValueError, match="direction"):
        delay_linearisation(cell, np.zeros((4, 2)), np.array([1]), np.ones(3))


# ----------------------------------------------------------------- textbook identities
def _explicit_memory(A, v, noise, K):
    """Independent reference: explicit sums over k < K of the memory function
    r_k^2 = u_k^T C_h^+ u_k and the Fisher memory J(k) = u_k^T C_n^{-1} u_k,
    u_k = A^k v, C_n = noise * sum_k A^k A^kT, C_h = sum_k u_k u_k^T + C_n."""
    N = A.shape[0]
    Ak = [np.linalg.matrix_power(A, k) for k in range(K)]
    U = np.array([P @ v for P in Ak])
    Cn = noise * sum(P @ P.T for P in Ak)
    Ch = U.T @ U + Cn
    r2 = np.array([u @ np.linalg.pinv(Ch, rcond=1e-12, hermitian=True) @ u for u in U])
    J = np.array([u @ np.linalg.solve(Cn, u) for u in U]) if noise > 0 else None
    return r2, J


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 6), seed=st.integers(0, 10 ** 6), rho=st.floats(0.05, 0.95),
       noise=st.floats(1e-3, 3.0), K=st.integers(1, 25))
def test_jaeger_capacity_at_most_n_against_explicit_sums(N, seed, rho, noise, K):
    """Jaeger 2001: MC = sum_k r_k^2 <= N for a linear network, here with the
    explicit sums as the reference (finite horizon K, the whole memory curve)."""
    A, v = _random_system(N, rho, seed)
    lm = linear_memory(A, v, noise=noise, horizon=K)
    r2, J = _explicit_memory(A, v, noise, K)
    np.testing.assert_allclose(lm.r2, r2, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(lm.fisher, J, rtol=1e-7)
    assert lm.capacity == pytest.approx(r2.sum(), rel=1e-7, abs=1e-10)
    assert lm.fisher_total == pytest.approx(J.sum(), rel=1e-7)
    assert r2.sum() <= min(N, K) * (1 + 1e-9)


@pytest.mark.parametrize("N", [1, 4, 9])
def test_delay_line_reaches_capacity_n(N):
    """A shift register (A e_i = e_{i+1}) with a generic input vector stores the
    last N inputs perfectly: without noise MC = N exactly (Jaeger's bound is
    attained), r_k^2 = 1 for k < N and 0 beyond; with noise eps, MC -> N as eps -> 0."""
    A = np.diag(np.ones(N - 1), -1)
    v = np.random.default_rng(N).standard_normal(N)
    lm = linear_memory(A, v, noise=0.0, horizon=3 * N)
    assert lm.capacity == pytest.approx(N, rel=1e-9)
    np.testing.assert_allclose(lm.r2, np.r_[np.ones(N), np.zeros(2 * N)], atol=1e-9)
    r2, _ = _explicit_memory(A, v, 0.0, 3 * N)
    np.testing.assert_allclose(lm.r2, r2, atol=1e-9)
    assert memory_capacity(A, v) == pytest.approx(N, rel=1e-9)      # stationary (rho = 0)
    caps = [memory_capacity(A, v, noise=e) for e in (1e-1, 1e-3, 1e-6, 1e-9)]
    assert caps[0] < caps[1] < caps[2] < caps[3] < N and N - caps[3] < 1e-4


def _orthogonal(N, seed):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((N, N)))[0]


@pytest.mark.parametrize("which", ["scaled_orthogonal", "symmetric"])
def test_ganguli_fisher_total_is_one_for_normal_networks(which):
    """Ganguli, Huh & Sompolinsky 2008: J_tot = sum_k J(k) = 1 for a normal A
    (||v|| = eps = 1), against the explicit sum of J(k) = v^T A^kT C^{-1} A^k v,
    C = sum_k A^k A^kT, over a horizon long enough that the tail is < 1e-10."""
    N = 6
    if which == "scaled_orthogonal":
        A = 0.8 * _orthogonal(N, 0)
    else:
        S = np.random.default_rng(1).standard_normal((N, N))
        S = S + S.T
        A = 0.8 * S / np.linalg.norm(S, 2)
    v = np.random.default_rng(2).standard_normal(N)
    v /= np.linalg.norm(v)
    K = 120                                   # 0.8^240 ~ 1e-23
    _, J = _explicit_memory(A, v, 1.0, K)
    assert J.sum() == pytest.approx(1.0, abs=1e-10)
    lm = linear_memory(A, v, noise=1.0, kmax=K)
    assert lm.fisher_total == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(lm.fisher, J, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("gain", [1.0, 2.0, 4.0])
def test_ganguli_fisher_total_exceeds_one_for_amplifying_chain(gain):
    """Non-normal networks beat the normal bound: a feed-forward chain
    A = gain * shift, v = e_1, eps = 1 has C_n = diag(sum_{j<=i} gain^{2j}) and
    J(k) = gain^{2k} / sum_{j<=k} gain^{2j}; J_tot > 1, -> N as gain -> inf (and
    always <= N ||v||^2 / eps)."""
    N = 6
    A = gain * np.diag(np.ones(N - 1), -1)
    v = np.eye(N)[0]
    lm = linear_memory(A, v, noise=1.0, horizon=N)
    _, J = _explicit_memory(A, v, 1.0, N)
    g2 = gain ** (2 * np.arange(N))
    np.testing.assert_allclose(J, g2 / np.cumsum(g2), rtol=1e-12)
    np.testing.assert_allclose(lm.fisher, J, rtol=1e-10)
    assert lm.fisher_total == pytest.approx(J.sum(), rel=1e-10)
    assert 1 < lm.fisher_total <= N
    assert not np.allclose(A @ A.T, A.T @ A)
    # stationary = horizon N for the nilpotent chain
    assert linear_memory(A, v, noise=1.0).fisher_total == pytest.approx(J.sum(), rel=1e-9)


# ------------------------------------------------------- finite-time Lyapunov exponents
def _trajectory_jacobians(cell, X):
    cell = cell.astype(np.float64)
    H = cell.run(X)
    Hp = np.concatenate([np.zeros((1,) + H.shape[1:]), H[:-1]])
    return [cell.jacobian(Hp[t], X[t]) for t in range(X.shape[0])]


def test_ftle_diagonal_network_is_exact(kind):
    """Diagonal recurrent matrices give diagonal step Jacobians, so the FTLEs
    are the running means of log|J_t,ii| exactly (sorted)."""
    cell = random_cell(kind, 5, 2, spectral_norm=1.3, seed=4)
    rng = np.random.default_rng(5)
    cell = cell.replace(**{k: np.diag(rng.uniform(-1.5, 1.5, 5)) for k in cell.recurrent_names})
    X = 0.5 * rng.standard_normal((30, 3, 2))
    Js = _trajectory_jacobians(cell, X)
    assert all(np.allclose(J, J * np.eye(5)) for J in Js)
    d = np.cumsum([np.log(np.abs(np.diagonal(J, axis1=1, axis2=2))) for J in Js], axis=0)
    ref = -np.sort(-d / np.arange(1, 31)[:, None, None], axis=-1)
    lam = finite_time_lyapunov(cell, X)
    assert lam.shape == (30, 3, 5)
    np.testing.assert_allclose(lam, ref, rtol=1e-12, atol=1e-13)
    if kind == "elman":                       # closed form: J = diag(1 - h^2) W
        H = cell.astype(np.float64).run(X)
        Hp = np.concatenate([np.zeros((1, 3, 5)), H[:-1]])
        Hn = np.tanh(Hp @ cell.W.T + X @ cell.U.T + cell.b)
        dd = np.cumsum(np.log(np.abs((1 - Hn ** 2) * np.diag(cell.W))), axis=0)
        np.testing.assert_allclose(lam, -np.sort(-dd / np.arange(1, 31)[:, None, None], -1),
                                   rtol=1e-10, atol=1e-12)


def test_ftle_of_linear_system_known_spectrum():
    """Linear case: an Elman net with zero input and bias stays at h = 0, so
    J_t = W; for W = Q diag(s) Q^T symmetric the exact finite-time exponents of
    W^t are log|s_i| at every t. The QR estimate (from Q_0 = I) has the exact
    sum at every t and converges as O(1/t) (t * error bounded); for a
    triangular W it is exactly log|W_ii| at every t (R_t = W)."""
    n = 4
    Q = _orthogonal(n, 3)
    s = np.array([1.2, 0.9, -0.5, 0.1])
    ref = np.sort(np.log(np.abs(s)))[::-1]
    base = random_cell("elman", n, 1, seed=0).replace(b=np.zeros(n))
    X = np.zeros((400, 1))
    lam = finite_time_lyapunov(base.replace(W=Q @ np.diag(s) @ Q.T), X)
    np.testing.assert_allclose(lam.sum(1), ref.sum(), atol=1e-12)
    terr = np.abs(lam - ref).max(1) * np.arange(1, 401)
    assert terr.max() < 5 and np.ptp(terr[100:]) < 1e-6            # t * error -> constant
    assert np.abs(lam[-1] - ref).max() < 0.01
    Wt = np.triu(Q) + np.diag(s - np.diag(Q))                       # triangular, diag s
    lam = finite_time_lyapunov(base.replace(W=Wt), X[:30])
    np.testing.assert_allclose(lam, np.broadcast_to(ref, (30, n)), atol=1e-12)


def test_ftle_agrees_with_svd_of_explicit_product(kind):
    """Small random net: the QR estimate against the singular values of the
    explicit propagator product, by np.linalg.svd on a short horizon (well
    conditioned) and in 200-digit arithmetic (mpmath) on a long one; the sum is
    (1/t) log|det Phi| exactly, the estimate is majorised by the exact
    spectrum, and the error is O(1/t)."""
    import mpmath as mp

    cell = random_cell(kind, 3, 2, spectral_norm=1.5, input_scale=0.3, seed=1)
    X = np.random.default_rng(0).standard_normal((120, 2))
    lam = finite_time_lyapunov(cell, X)
    assert lam.shape == (120, 3)
    Js = _trajectory_jacobians(cell, X)
    P = np.eye(3)
    for t in range(8):
        P = Js[t] @ P
        sv = np.linalg.svd(P, compute_uv=False)
        ex = np.log(sv) / (t + 1)
        tol = 10 * np.finfo(float).eps * sv[0] / sv[-1]   # backward-stable SVD: eps ||P|| error
        assert lam[t].sum() == pytest.approx(ex.sum(), abs=tol)
        np.testing.assert_array_less(np.cumsum(lam[t])[:-1], np.cumsum(ex)[:-1] + tol)
        assert np.abs(lam[t] - ex).max() * (t + 1) < 0.5
    with mp.workdps(200):
        Pm = mp.eye(3)
        for t in range(120):
            Pm = mp.matrix(Js[t].tolist()) * Pm
            if t + 1 in (30, 60, 120):
                s = mp.svd_r(Pm, compute_uv=False)
                ex = np.sort([float(mp.log(x)) / (t + 1) for x in s])[::-1]
                assert lam[t].sum() == pytest.approx(ex.sum(), abs=1e-12)
                np.testing.assert_array_less(np.cumsum(lam[t])[:-1], np.cumsum(ex)[:-1] + 1e-12)
                assert np.abs(lam[t] - ex).max() * (t + 1) < 0.5     # O(1/t)
    assert np.abs(lam[-1] - ex).max() < 5e-3


def test_ftle_is_independent_of_qr_sign_convention(kind, monkeypatch):
    """Flip the signs of random columns of Q (and rows of R): same exponents."""
    cell = random_cell(kind, 6, 2, spectral_norm=1.2, seed=7)
    X = np.random.default_rng(1).standard_normal((25, 4, 2))
    ref = finite_time_lyapunov(cell, X)
    qr = np.linalg.qr
    rng = np.random.default_rng(2)

    def flipped(M):
        Q, R = qr(M)
        s = rng.choice([-1.0, 1.0], size=Q.shape[:-2] + (Q.shape[-1],))
        return Q * s[..., None, :], R * s[..., :, None]

    monkeypatch.setattr(np.linalg, "qr", flipped)
    np.testing.assert_allclose(finite_time_lyapunov(cell, X), ref, rtol=1e-12, atol=1e-14)


def test_ftle_steps_window_and_errors(kind):
    """steps = t0..t1 is the propagator Phi(t1, t0 - 1): the same as starting at h_{t0-1}."""
    cell = random_cell(kind, 5, 2, seed=3)
    X = np.random.default_rng(4).standard_normal((20, 3, 2))
    H = cell.astype(np.float64).run(X)
    lam = finite_time_lyapunov(cell, X, steps=np.arange(6, 16))
    assert lam.shape == (10, 3, 5)
    np.testing.assert_allclose(lam, finite_time_lyapunov(cell, X[5:15], h0=H[4]), atol=1e-12)
    with pytest.raises(ValueError, match="steps"):
        finite_time_lyapunov(cell, X, steps=np.array([3, 5]))
    with pytest.raises(ValueError, match="steps"):
        finite_time_lyapunov(cell, X, steps=np.arange(15, 22))


def test_readme_memory_table_is_the_data_file():
    """The README's memory table is exp_memory.markdown_table of the shipped memory.json
    (python -m validation.exp_memory --out validation/data), and each of its rows agrees with
    the file's per-row values (MC and J_tot of the kept-rank row, the kept rank itself)."""
    import json
    import os
    from validation.exp_memory import markdown_table
    root = os.path.join(os.path.dirname(__file__), "..")
    with open(os.path.join(root, "validation", "data", "memory.json")) as f:
        d = json.load(f)
    table = markdown_table(d["headline"]["memory_table"])
    with open(os.path.join(root, "README.md")) as f:
        assert table in f.read(), "README: the memory table differs from validation/data/memory.json"
    for name, t in d["headline"]["memory_table"].items():
        assert t["full"]["rank"] == 64 and 0 <= t["half"]["rank"] <= t["kept"]["rank"] <= 64
        assert t["kept"]["acc"] >= 0.99, name       # the kept rank keeps >= 99 % recall


def _memory_seeds():
    import csv
    import json
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "validation", "data")
    with open(os.path.join(root, "memory_seeds.json")) as f:
        d = json.load(f)
    with open(os.path.join(root, "memory_seeds.csv")) as f:
        rows = list(csv.DictReader(f))
    return d, rows


def test_memory_over_seeds_data_and_readme():
    """memory_seeds.json's groups summarise its CSV rows; the README table is its
    markdown_table; the seed-1 rows equal the seed-1 memory table of memory.json (same code)."""
    import json
    import os
    from validation.exp_memory_seeds import COLUMNS, markdown_table
    d, rows = _memory_seeds()
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        assert markdown_table(d) in f.read(), "README: the memory-over-seeds table is stale"
    for key, g in d["groups"].items():
        mine = sorted((r for r in rows if f"{r['cell']}|D{r['D']}" == key),
                      key=lambda r: int(r["seed"]))
        assert [int(r["seed"]) for r in mine] == g["seeds"] and len(mine) >= 5, key
        for c in COLUMNS:
            v = np.array([float(r[c]) for r in mine])
            assert g[c]["mean"] == pytest.approx(v.mean(), rel=1e-8, abs=1e-9), (key, c)
            assert g[c]["sd"] == pytest.approx(v.std(ddof=1), rel=1e-6, abs=1e-9), (key, c)
    with open(os.path.join(os.path.dirname(__file__), "..", "validation", "data",
                           "memory.json")) as f:
        table = json.load(f)["headline"]["memory_table"]
    for r in rows:
        if r["checkpoint"] in table:
            t = table[r["checkpoint"]]
            assert float(r["MC_full"]) == pytest.approx(t["full"]["MC"], abs=1e-4)
            assert float(r["J_kept"]) == pytest.approx(t["kept"]["J_tot"], abs=1e-4)
            assert float(r["MC_half"]) == pytest.approx(t["half"]["MC"], abs=1e-4)


def test_memory_over_seeds_one_net_recomputed():
    """One seed net (GRU D = 20, seed 2) recomputed from its checkpoint file."""
    from validation.exp_memory_seeds import COLUMNS, _net
    _, rows = _memory_seeds()
    name = "seeds/gru_memorization_D20_n64_s2"
    ref = next(r for r in rows if r["checkpoint"] == name)
    got = _net(name)
    for c in COLUMNS + ("rank_kept", "rank_half"):
        assert got[c] == pytest.approx(float(ref[c]), rel=1e-9, abs=1e-12), c
