# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — Random perturbations: frozen versus fresh noise
#
# Every recurrent matrix gets i.i.d. $N(0, s^2)$ noise $\Delta W$. To first order
# $\ell_t = \sum_{k\le t} M_k\,\Delta W a_k$ with $M_k = \Phi(t,k)B_k$ (Elman:
# $a_k = h_{k-1}$, $B_k = D_k$; MGRU: $a_k = h_{k-1}$ for $W_f$ and
# $a_k = f_k\odot h_{k-1}$ for $W_h$, each with its own $B_k$). The key identity,
# derived below in sympy, is
#
# $$\mathbb E[\Delta W a b^\top \Delta W^\top] = s^2 (a^\top b)\, I,$$
#
# which gives
#
# * frozen (one draw for the sequence): $\mathbb E\|\ell_t\|^2 = s^2\sum_{k,l}(a_k^\top a_l)\,\langle M_k, M_l\rangle_F$;
# * fresh (a new draw each step): only $k = l$ survives, $s^2\sum_k\|a_k\|^2\|M_k\|_F^2$.
#
# Their ratio $C_t$ measures temporal coherence: the Gram matrix $a_k^\top a_l$ of
# the trajectory, weighted by how long the propagator remembers. We evaluate the
# double sum directly (propagators and $B_k$ from `cell.jacobian` / `cell.jvp`,
# nothing from `rnnperturb.stats.noise`), check it against `rnnperturb.noise_response`
# and against a Monte Carlo of the exact simulation (own vectorised code), then
# measure $C_t$ at the recall steps of trained memorization checkpoints.

# %%
import time
from pathlib import Path

import _setup  # noqa: F401  (headless matplotlib; the package from the repository)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import rnnperturb as rp  # noqa: E402
from rnnperturb.cells import sigmoid  # noqa: E402

OUT, _args, T0 = _setup.output_dir("06")

# %% [markdown]
# ## 1. The second-moment identity
#
# Expand $\Delta W a b^\top\Delta W^\top$ for a symbolic $3\times3$ $\Delta W$ and
# take expectations monomial by monomial: $\mathbb E[w_{ij}w_{kl}] = s^2$ if
# $(i,j) = (k,l)$, else 0.

# %%
n = 3
Wd = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"w{i}{j}"))
a = sp.Matrix(sp.symbols("a0:3"))
b = sp.Matrix(sp.symbols("b0:3"))
s = sp.Symbol("s", positive=True)
M = (Wd * a * b.T * Wd.T).applyfunc(sp.expand)
wsyms = list(Wd)


def expect(expr):
    poly = sp.Poly(expr, *wsyms)
    out = 0
    for mon, coeff in poly.terms():
        if sum(mon) == 2 and max(mon) == 2:      # w_ij**2
            out += coeff * s ** 2
    return sp.expand(out)


EM = M.applyfunc(expect)
target = s ** 2 * (a.T * b)[0] * sp.eye(n)
assert (EM - target).applyfunc(sp.expand) == sp.zeros(n, n)
print("E[dW a b^T dW^T] =", sp.factor(EM[0, 0]), "* I  (off-diagonal entries 0)")


# %% [markdown]
# ## 2. The double sum, evaluated directly

# %%
def forcing_maps(cell, x, h):
    """For one step from h (n,) with input x (m,): the step Jacobian J (n, n) and,
    per recurrent matrix, (a_k, B_k) with B_k (ΔW a_k) = directional derivative,
    B_k recovered column by column from cell.jvp (ΔW = e_i a^T / |a|^2)."""
    J = cell.jacobian(h, x)
    out = {}
    if cell.kind == "elman":
        inputs = {"W": h}
    else:
        f, _ = cell.gates(h[None], x[None])
        inputs = {"Wf": h, "Wh": f[0] * h}
    for k, ak in inputs.items():
        nrm2 = ak @ ak
        B = np.zeros((cell.n, cell.n))
        if nrm2 > 0:
            for i in range(cell.n):
                dW = np.zeros((cell.n, cell.n))
                dW[i] = ak / nrm2
                B[:, i] = cell.jvp(h, x, None, {k: dW})[1]
        out[k] = (ak, B)
    return J, out


def double_sum(cell, X, s, h0=None):
    """(frozen, fresh) first-order E||l_t||^2 for t = 1..T, one sequence X (T, m)."""
    T = X.shape[0]
    h = np.zeros(cell.n) if h0 is None else h0
    steps = []
    for t in range(T):
        steps.append(forcing_maps(cell, X[t], h))
        h = cell.step(h, X[t])
    frozen, fresh = np.zeros(T), np.zeros(T)
    for t in range(T):                               # output time t+1
        Phi = np.eye(cell.n)
        Ms = {k: [] for k in cell.recurrent_names}
        As = {k: [] for k in cell.recurrent_names}
        for k in range(t, -1, -1):                   # forcing at step k+1, propagated to t+1
            J, maps = steps[k]
            for name, (ak, B) in maps.items():
                Ms[name].append(Phi @ B)
                As[name].append(ak)
            Phi = Phi @ J
        for name in cell.recurrent_names:
            A = np.array(As[name])                    # (t+1, n)
            Mk = np.array(Ms[name])                   # (t+1, n, n)
            G = A @ A.T                               # a_k . a_l
            F = np.einsum("kij,lij->kl", Mk, Mk)      # <M_k, M_l>_F
            frozen[t] += s ** 2 * np.sum(G * F)
            fresh[t] += s ** 2 * np.sum(np.diag(G) * np.diag(F))
    return frozen, fresh


# %% [markdown]
# ## 3. Monte Carlo of the exact simulation (own vectorised cells, one matrix per draw)

# %%
def mc_exact(cell, X, s, draws, frozen, seed):
    rng = np.random.default_rng(seed)
    T, n = X.shape[0], cell.n
    H = cell.run(X)
    h = np.zeros((draws, n))
    P = cell.params
    names = cell.recurrent_names
    out = np.zeros(T)

    def noisy():
        return {k: P[k][None] + s * rng.standard_normal((draws, n, n)) for k in names}

    Wn = noisy()
    for t in range(T):
        if not frozen and t:
            Wn = noisy()
        x = X[t]
        if cell.kind == "elman":
            h = np.tanh(np.einsum("dij,dj->di", Wn["W"], h) + P["U"] @ x + P["b"])
        else:
            f = sigmoid(np.einsum("dij,dj->di", Wn["Wf"], h) + P["Uf"] @ x + P["bf"])
            c = np.tanh(np.einsum("dij,dj->di", Wn["Wh"], f * h) + P["Uh"] @ x + P["bh"])
            h = (1 - f) * h + f * c
        sq = np.sum((h - H[t]) ** 2, axis=1)
        out[t] = sq.mean()
        if t == T - 1:
            se = sq.std() / np.sqrt(draws)
    return out, se


rows = []
for kind, n, sn in (("elman", 12, 1.0), ("mgru", 10, 2.0)):
    cell = rp.random_cell(kind, n, 2, spectral_norm=sn, seed=5)
    rng = np.random.default_rng(6)
    # a coherent input (slowly varying) so that frozen and fresh differ visibly
    T = 30
    X = np.repeat(rng.standard_normal((1, 2)), T, axis=0) + 0.1 * rng.standard_normal((T, 2))
    s = 1e-4
    fz, fr = double_sum(cell, X, s)
    nr_f = rp.noise_response(cell, X, std=s, frozen=True)
    nr_r = rp.noise_response(cell, X, std=s, frozen=False)
    e_lib = max(np.max(np.abs(nr_f[1:] / fz[1:] - 1)), np.max(np.abs(nr_r[1:] / fr[1:] - 1)))  # t = 1: 0/0
    mc_f, se_f = mc_exact(cell, X, s, 2000, True, 7)
    mc_r, se_r = mc_exact(cell, X, s, 2000, False, 8)
    zf, zr = (mc_f[-1] - fz[-1]) / se_f, (mc_r[-1] - fr[-1]) / se_r
    rows.append((kind, e_lib, fz[-1], mc_f[-1], zf, fr[-1], mc_r[-1], zr, fz[-1] / fr[-1]))
    print(f"{kind}: double sum vs rp.noise_response max rel diff {e_lib:.1e}")
    print(f"   t = {T}: frozen  first order {fz[-1]:.4e}  MC {mc_f[-1]:.4e}  "
          f"(rel {mc_f[-1] / fz[-1] - 1:+.3f}, z = {zf:+.2f})")
    print(f"           fresh   first order {fr[-1]:.4e}  MC {mc_r[-1]:.4e}  "
          f"(rel {mc_r[-1] / fr[-1] - 1:+.3f}, z = {zr:+.2f});  C_T = {fz[-1] / fr[-1]:.2f}")
    assert e_lib < 1e-8
    assert abs(zf) < 4 or abs(mc_f[-1] / fz[-1] - 1) < 0.05
    assert abs(zr) < 4 or abs(mc_r[-1] / fr[-1] - 1) < 0.05

# %% [markdown]
# ## 4. Trained memorization nets: $C_t$ at the recall steps
#
# Eight of the 32 sequences per checkpoint, $C_t$ averaged over the five recall
# steps. The Elman nets accumulate frozen noise coherently through the delay
# ($C > 1$ and growing with D); for the MGRU the gate closes the memory during the
# delay (notebook 02: $f = 0$ makes the step the identity and removes both forcings),
# so the delay adds almost no forcing and $C$ stays near 1.

# %%
root = Path(rp.__file__).resolve().parents[1] / "validation" / "checkpoints"
table = []
curves = {}
for kind in ("mgru", "elman"):
    for D in (10, 20, 50):
        p = root / f"{kind}_memorization_D{D}.npz"
        if not p.exists():
            continue
        cell, meta = rp.load_with_metadata(p)
        task = rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"])
        Cs, fzs = [], []
        for bidx in range(0, 32, 4):
            fz, fr = double_sum(cell, task.X[:, bidx], 1.0)
            with np.errstate(invalid="ignore"):     # t = 1: 0/0 (h0 = 0)
                Cs.append(fz / fr)
            fzs.append(fz)
        C = np.array(Cs)
        rec = task.recall[:, 0].copy()
        table.append((kind, D, C[:, rec].mean(), C[:, rec].min(), C[:, rec].max()))
        if D == 20:
            curves[kind] = C.mean(axis=0)
            # cross-check one sequence against the library at the last step
            lib = (rp.noise_response(cell, task.X[:, :1], std=1.0, frozen=True, times=[task.T])
                   / rp.noise_response(cell, task.X[:, :1], std=1.0, frozen=False, times=[task.T]))
            assert abs(lib[0, 0] / C[0, -1] - 1) < 1e-8
if not table:
    print("no checkpoints found under", root)
print(" cell   D   mean C at recall   (min, max over sequences)")
for kind, D, m, lo, hi in table:
    print(f" {kind:5s} {D:3d}   {m:8.2f}          ({lo:.2f}, {hi:.2f})")

# random contractive net on i.i.d. input: C ≈ 1 whatever happens
cell = rp.random_cell("elman", 64, 4, spectral_norm=0.5, seed=1)
Xr = np.random.default_rng(2).standard_normal((31, 4))
fz, fr = double_sum(cell, Xr, 1.0)
with np.errstate(invalid="ignore"):
    curves["random contractive elman"] = fz / fr
print(f"random contractive Elman (||W||_2 = 0.5), i.i.d. input: C_T = {fz[-1] / fr[-1]:.2f}")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for name, c in curves.items():
    ax.plot(np.arange(1, len(c) + 1), c, label=name)
ax.set_xlabel("t")
ax.set_ylabel(r"$C_t$ = frozen / fresh")
ax.set_yscale("log")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "06_frozen_fresh.png", dpi=120)
print("saved", OUT / "06_frozen_fresh.png")
print(f"notebook 06 done in {time.perf_counter() - T0:.1f} s")
