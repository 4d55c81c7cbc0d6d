"""noise_response: first-order E||e_t||^2 under random recurrent-weight noise.

References: the naive double sum over explicit propagators, the sum over
unit perturbations of rp.first_order, and Monte Carlo of the exact simulation.
"""
import glob
import os

import numpy as np
import pytest
import scipy.stats

import rnnperturb as rp
from rnnperturb.cells.random import random_cell
from rnnperturb.stats.noise import monte_carlo_noise, noise_response

CKPT_DIR = os.path.join(os.path.dirname(__file__), "..", "validation", "checkpoints")


def _inputs(T, B, m, seed):
    return np.random.default_rng(seed).standard_normal((T, B, m))


def test_linearisation_matches_cell_jvp_and_jacobian(kind, rng):
    cell = random_cell(kind, 6, 3, spectral_norm=1.3, seed=2)
    h = np.tanh(rng.standard_normal((4, 6)))
    x = rng.standard_normal((4, 3))
    dh = rng.standard_normal((4, 6))
    dW = {k: rng.standard_normal((6, 6)) for k in cell.recurrent_names}
    hn, J, forc = cell.linearise(h, x)
    np.testing.assert_allclose(hn, cell.step(h, x), rtol=0, atol=1e-14)
    np.testing.assert_allclose(J, cell.jacobian(h, x), rtol=0, atol=1e-13)
    pred = np.einsum("bij,bj->bi", J, dh)
    for k, (diag, Bt, a) in forc.items():
        f = a @ dW[k].T
        pred += Bt * f if diag else np.einsum("bij,bj->bi", Bt, f)
    _, ref = cell.jvp(h, x, dh, dW)
    np.testing.assert_allclose(pred, ref, rtol=0, atol=1e-12)


def _naive(cell, X, V, frozen):
    """Double sum over explicit propagators Phi(t,k) for one sequence (T, m)."""
    T = X.shape[0]
    h = np.zeros((1, cell.n))
    Js, forcs = [], []
    for t in range(T):
        h, J, forc = cell.linearise(h, X[t][None])
        Js.append(J[0])
        forcs.append({k: (d, Bt[0], a[0]) for k, (d, Bt, a) in forc.items()})
    out = np.zeros(T)
    for t in range(T):
        Phi = [None] * (t + 1)
        Phi[t] = np.eye(cell.n)
        for k in range(t - 1, -1, -1):
            Phi[k] = Phi[k + 1] @ Js[k + 1]
        for name, Vk in V.items():
            Vm = np.full((cell.n, cell.n), Vk) if np.ndim(Vk) == 0 else Vk
            G = []
            for k in range(t + 1):
                d, Bt, a = forcs[k][name]
                G.append(Phi[k] @ (np.diag(Bt) if d else Bt))
            for k in range(t + 1):
                for l in range(t + 1):
                    if not frozen and k != l:
                        continue
                    ak, al = forcs[k][name][2], forcs[l][name][2]
                    out[t] += np.trace(G[k] @ np.diag(Vm @ (ak * al)) @ G[l].T)
    return out


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("uniform", [True, False])
def test_matches_naive_double_sum(kind, frozen, uniform):
    cell = random_cell(kind, 4, 2, spectral_norm=1.2, seed=7)
    X = _inputs(9, 1, 2, 1)[:, 0]
    r = np.random.default_rng(3)
    V = ({k: 0.3 for k in cell.recurrent_names} if uniform
         else {k: r.random((4, 4)) for k in cell.recurrent_names})
    got = noise_response(cell, X, var=V, frozen=frozen)
    ref = _naive(cell, X, V, frozen)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)
    assert got.shape == (9,)


def test_frozen_matches_sum_over_unit_perturbations(kind):
    """E||l||^2 = sum_ij V_ij ||l^(ij)||^2, with l^(ij) from rp.first_order."""
    n = 5
    cell = random_cell(kind, n, 2, spectral_norm=1.1, seed=1)
    X = _inputs(12, 3, 2, 0)
    r = np.random.default_rng(5)
    V = {k: r.random((n, n)) for k in cell.recurrent_names}
    ref = np.zeros((12, 3))
    for k in cell.recurrent_names:
        for i in range(n):
            for j in range(n):
                dW = np.zeros((n, n))
                dW[i, j] = 1.0
                L = rp.first_order(cell, cell.replace(**{k: cell.recurrent[k] + dW}), X)
                ref += V[k][i, j] * np.sum(L ** 2, -1)
    np.testing.assert_allclose(noise_response(cell, X, var=V), ref, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("uniform", [True, False])
def test_selected_times_by_adjoint_match_full_curve(kind, uniform):
    cell = random_cell(kind, 6, 3, spectral_norm=1.2, seed=1)
    X = _inputs(25, 3, 3, 0)
    r = np.random.default_rng(2)
    V = ({k: 0.2 for k in cell.recurrent_names} if uniform
         else {k: r.random((6, 6)) for k in cell.recurrent_names})
    times = [25, 1, 7, 13]
    for frozen in (True, False):
        full = noise_response(cell, X, var=V, frozen=frozen)
        sel = noise_response(cell, X, var=V, frozen=frozen, times=times)
        assert sel.shape == (4, 3)
        np.testing.assert_allclose(sel, full[np.array(times) - 1], rtol=1e-11, atol=1e-300)
    single = noise_response(cell, X[:, 0], var=V, times=[9])
    np.testing.assert_allclose(single, noise_response(cell, X[:, 0], var=V)[[8]], rtol=1e-11)
    with pytest.raises(ValueError, match="times"):
        noise_response(cell, X, var=V, times=[0])
    with pytest.raises(ValueError, match="times"):
        noise_response(cell, X, var=V, times=[26])


def test_principal_basis_equals_standard_basis(kind):
    """Scalar variance (rotated, rank-reduced basis) == the same variance as an array."""
    cell = random_cell(kind, 6, 1, spectral_norm=1.0, seed=4)
    # a rank-deficient trajectory: constant input from h0 = 0 still spans few axes early
    X = _inputs(15, 2, 1, 2)
    a = noise_response(cell, X, std=0.2)
    b = noise_response(cell, X, var={k: np.full((6, 6), 0.04) for k in cell.recurrent_names})
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_quadratic_in_std_and_additive_over_matrices(kind):
    cell = random_cell(kind, 6, 2, seed=9)
    X = _inputs(10, 2, 2, 3)
    a = noise_response(cell, X, std=0.1)
    np.testing.assert_allclose(noise_response(cell, X, std=0.3), 9 * a, rtol=1e-12)
    parts = sum(noise_response(cell, X, var={k: 0.01}) for k in cell.recurrent_names)
    np.testing.assert_allclose(parts, a, rtol=1e-12)
    assert np.all(noise_response(cell, X, std=0.0) == 0)


def test_coherent_trajectory_closed_form():
    """A constant forcing (h0 = fixed point, no input) is coherent: C_t = frozen/fresh grows ~ t
    for a propagator close to the identity (here W = 0.99 I, D ~ 1)."""
    n = 4
    cell = rp.ElmanRNN(W=0.99 * np.eye(n), U=np.zeros((n, 1)), b=np.zeros(n))
    h0 = np.full(n, 1e-3)                       # tiny state -> tanh' ~ 1, h ~ 0.99^t h0
    X = np.zeros((30, 1))
    fz = noise_response(cell, X, std=1.0, frozen=True, h0=h0)
    fr = noise_response(cell, X, std=1.0, frozen=False, h0=h0)
    # scalar closed form per coordinate: h_{k-1} = 0.99^{k-1} h0, l_t = sum_k 0.99^{t-k} dW h_{k-1}
    t = np.arange(1, 31)
    ref_fz = n * (n * 1e-6) * (t * 0.99 ** (t - 1)) ** 2      # E||sum||^2 = n ||h0||^2 (t 0.99^{t-1})^2
    ref_fr = n * (n * 1e-6) * t * 0.99 ** (2 * (t - 1))
    np.testing.assert_allclose(fz, ref_fz, rtol=1e-4)
    np.testing.assert_allclose(fr, ref_fr, rtol=1e-4)
    np.testing.assert_allclose(fz / fr, t, rtol=1e-4)


def _check_mc(cell, X, std, frozen, seed, draws=2000, h0=None):
    pred = noise_response(cell, X, std=std, frozen=frozen, h0=h0)
    mc = monte_carlo_noise(cell, X, std=std, frozen=frozen, draws=draws, seed=seed, h0=h0)
    ok = pred > 1e-12 * pred.max()
    err = np.abs(mc.mean - pred)
    # within 5 %, or inside the Monte Carlo confidence interval at family level 99 %
    # over all compared steps (Bonferroni: hundreds of steps are compared at once)
    zcrit = scipy.stats.norm.isf(0.005 / np.count_nonzero(ok))
    tol = np.maximum(0.05 * pred, zcrit * mc.sem)
    assert np.all(err[ok] <= tol[ok]), (np.max(err[ok] / pred[ok]),
                                         np.max(err[ok] / mc.sem[ok]))
    # and the time-averaged relative error is small (no systematic bias)
    assert abs(np.mean((mc.mean[ok] - pred[ok]) / pred[ok])) < 0.03
    return pred, mc


@pytest.mark.parametrize("frozen", [True, False])
def test_matches_monte_carlo_random_nets(kind, frozen):
    cell = random_cell(kind, 12, 3, spectral_norm=1.0, seed=11)
    X = _inputs(30, 2, 3, 4)
    _check_mc(cell, X, 1e-3, frozen, seed=21)


def test_monte_carlo_quantization_variance():
    """Uniform quantization noise of step q maps onto var = q^2/12 (first order
    depends on the variance only): exact simulation with uniform frozen noise."""
    cell = random_cell("elman", 8, 2, spectral_norm=1.0, seed=5)
    X = _inputs(20, 1, 2, 6)[:, 0]
    q = 2e-3
    pred = noise_response(cell, X, var={"W": q * q / 12})
    rng = np.random.default_rng(8)
    H = cell.run(X)
    e2 = []
    for _ in range(1500):
        dW = rng.uniform(-q / 2, q / 2, (8, 8))
        e2.append(np.sum((cell.replace(W=cell.W + dW).run(X) - H) ** 2, -1))
    e2 = np.array(e2)
    mean, sem = e2.mean(0), e2.std(0, ddof=1) / np.sqrt(len(e2))
    ok = pred > 0
    assert np.all(np.abs(mean - pred)[ok] <= np.maximum(0.05 * pred, 2.576 * sem)[ok])


def test_monte_carlo_reference_agrees_with_cells(kind):
    """The Monte Carlo stepper is the exact cell: zero noise -> zero deviation."""
    cell = random_cell(kind, 5, 2, seed=1)
    X = _inputs(6, 2, 2, 1)
    mc = monte_carlo_noise(cell, X, std=0.0, draws=3, seed=0)
    assert np.all(mc.mean == 0)
    # a single frozen draw equals cell.replace(...).run
    from rnnperturb.stats.noise import _mc_step
    rng = np.random.default_rng(4)
    dW = {k: 0.05 * rng.standard_normal((1, 5, 5)) for k in cell.recurrent_names}
    other = cell.replace(**{k: cell.recurrent[k] + dW[k][0] for k in dW})
    h = np.zeros((1, 2, 5))
    H = other.run(X)
    for t in range(6):
        h = _mc_step(cell, h, X[t], dW, None, {k: 1.0 for k in dW}, True)
        np.testing.assert_allclose(h[0], H[t], atol=1e-14)


def _checkpoints():
    return sorted(glob.glob(os.path.join(CKPT_DIR, "*.npz")))


@pytest.mark.slow
@pytest.mark.parametrize("frozen", [True, False])
def test_matches_monte_carlo_checkpoints(frozen):
    paths = [p for p in _checkpoints() if "memor" in os.path.basename(p).lower()
             or rp.load_with_metadata(p)[1].get("task") == "memorization"]
    if not paths:
        pytest.skip("no memorization checkpoints under validation/checkpoints yet")
    for p in paths:
        cell, meta = rp.load_with_metadata(p)
        task = rp.tasks.memorization_all(int(meta["K"]), int(meta["L"]), int(meta["D"])) \
            if int(meta["K"]) ** int(meta["L"]) <= 32 else \
            rp.tasks.memorization(int(meta["K"]), int(meta["L"]), int(meta["D"]), batch=4, seed=0)
        X = task.X[:, :2]
        std = 1e-4 / np.sqrt(cell.n)
        _check_mc(cell, X, std, frozen, seed=5)


def test_shapes_h0_and_float32(kind):
    cell = random_cell(kind, 5, 2, seed=3)
    X = _inputs(7, 3, 2, 0)
    h0 = np.random.default_rng(1).uniform(-0.5, 0.5, (3, 5))
    a = noise_response(cell, X, std=0.1, h0=h0)
    assert a.shape == (7, 3)
    single = noise_response(cell, X[:, 1], std=0.1, h0=h0[1])
    np.testing.assert_allclose(single, a[:, 1], rtol=1e-12)
    c32 = rp.cells.cell_from_params(kind, cell.params, dtype=np.float32)
    b = noise_response(c32, X.astype(np.float32), std=0.1, h0=h0)
    np.testing.assert_allclose(b, a, rtol=1e-4)
    # with h0 != 0 the first step already responds
    assert np.all(a[0] > 0)


def test_bad_input_raises(kind):
    cell = random_cell(kind, 4, 2, seed=0)
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="std"):
        noise_response(cell, X)
    with pytest.raises(ValueError, match="std"):
        noise_response(cell, X, std=-1.0)
    with pytest.raises(ValueError, match="var"):
        noise_response(cell, X, var={"nope": 1.0})
    with pytest.raises(ValueError, match="var"):
        noise_response(cell, X, var={cell.recurrent_names[0]: np.ones((3, 3))})
    with pytest.raises(ValueError, match="var"):
        noise_response(cell, X, var={cell.recurrent_names[0]: -np.ones((4, 4))})
    with pytest.raises(ValueError, match="var"):
        noise_response(cell, X, var=[1.0])
    with pytest.raises(ValueError, match="frozen"):
        noise_response(cell, X, std=1.0, frozen="yes")
    with pytest.raises(ValueError, match="X"):
        noise_response(cell, np.zeros((5, 3)), std=1.0)
    with pytest.raises(ValueError, match="draws"):
        monte_carlo_noise(cell, X, std=1.0, draws=1, seed=0)


@pytest.mark.parametrize("frozen", [True, False])
def test_windowed_linearisation_independent_of_window(kind, frozen, monkeypatch):
    """The fresh recursion linearises a window of steps per call: the result must not
    depend on the window length (here 1-step and 4-step windows vs one window)."""
    import rnnperturb.stats.noise as nz
    cell = random_cell(kind, 6, 2, spectral_norm=1.1, seed=3)
    X = _inputs(13, 2, 2, 5)
    V = {k: np.random.default_rng(4).random((6, 6)) for k in cell.recurrent_names}
    ref = noise_response(cell, X, var=V, frozen=frozen)
    for elems in (1, 4 * 2 * 36 * 5):
        monkeypatch.setattr(nz, "_CHUNK_ELEMS", elems)
        np.testing.assert_allclose(noise_response(cell, X, var=V, frozen=frozen), ref,
                                   rtol=1e-13, atol=0)
