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
# # 07 — Bounds over sets of perturbations: ball, box and Gaussian noise
#
# `rp.set_bound(cell, S, X)` bounds $\sup_{\Delta W\in S}\|h'_t-h_t\|$ for a whole
# set $S$ of recurrent-weight perturbations. To first order the deviation is the
# tangent-linear
#
# $$\ell_t = \sum_{k\le t}\Phi(t,k)B_k\,\Delta W a_k = M_t\,\mathrm{vec}\,\Delta W,
# \qquad M_t[i, jn+p] = \partial\ell_{t,i}/\partial\Delta W_{jp},$$
#
# *linear* in $\Delta W$, so its supremum over a set is a norm of the known map
# $M_t$ (what is left, the remainder, is bounded over the whole set in
# `rnnperturb/bounds/set_bound.py`). This notebook derives the three linear-part
# bounds the library uses and checks them:
#
# 1. the **Frobenius ball**: $\sup_{\|\Delta\|_F\le\varepsilon}\|M\mathrm{vec}\Delta\| = \varepsilon\|M\|_2$,
#    whose Gram matrix $MM^\top$ is the frozen `noise_response` covariance; for several
#    matrices a weighted Cauchy–Schwarz bound;
# 2. the **box** $|\Delta_{ij}|\le E_{ij}$: the per-coordinate bound and the SDP-dual
#    (Goemans–Williamson / Nesterov) bound, against brute force over the vertices;
# 3. the **Gaussian confidence bound** of `rp.noise_bound`: Gaussian concentration of
#    the radius and of $\|Mg\|$ (Lipschitz form and Laurent–Massart form), against
#    Monte Carlo;
#
# and, for the remainder, why the activation is linearised by its **chord** where that is
# tighter than the tangent (section 5).

# %%
import itertools
import time

import _setup  # noqa: F401  (headless matplotlib; the package from the repository)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import rnnperturb as rp  # noqa: E402
from rnnperturb.bounds.set_bound import _box_sdp, carried_matrices, set_trace  # noqa: E402
from rnnperturb.verified.activation import secant_enclosure, taylor_remainder_max  # noqa: E402
from rnnperturb.perturb import sets  # noqa: E402

OUT, _args, T0 = _setup.output_dir("07")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The carried matrix of one step, and its Gram matrix
#
# One Elman step from $h_0$: $\ell_1 = D_1\Delta W h_0$, so
# $M_1[i, jn+p] = (D_1)_{ij}h_{0,p}$, i.e. $M_1 = D_1\otimes h_0^\top$ (Kronecker
# product, row-major $\mathrm{vec}$). sympy differentiates $\ell_1$ entry by entry and
# checks it; then the Gram matrix $M_1M_1^\top = \|h_0\|^2D_1D_1^\top$, which is
# $\mathbb E[\ell_1\ell_1^\top]/s^2$ for i.i.d. $N(0,s^2)$ entries
# ($\mathbb E[\Delta W a a^\top\Delta W^\top] = s^2\|a\|^2 I$, notebook 06). So the
# ball's linear part, $\varepsilon\lambda_{\max}(M_tM_t^\top)^{1/2}$, and the
# frozen noise response, $s^2\,\mathrm{tr}(M_tM_t^\top)$, are two functionals of
# one matrix.

# %%
n = 3
dW = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"w{i}{j}"))
h0 = sp.Matrix(sp.symbols(f"h0:{n}"))
D = sp.diag(*sp.symbols(f"d0:{n}"))
ell = D * dW * h0
vecw = [dW[j, p] for j in range(n) for p in range(n)]
M1 = ell.jacobian(vecw)
kron = sp.Matrix(n, n * n, lambda i, c: D[i, c // n] * h0[c % n])
assert sp.simplify(M1 - kron) == sp.zeros(n, n * n)
G = sp.simplify(M1 * M1.T)
assert sp.simplify(G - (h0.T * h0)[0, 0] * D * D.T) == sp.zeros(n, n)
print("M_1 = D_1 (x) h_0^T and M_1 M_1^T = ||h_0||^2 D_1 D_1^T: verified symbolically")

# two steps: M_2 = J_2 M_1 + D_2 (x) h_1^T, J_2 = D_2 W (linear in dW to first order)
W = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"W{i}{j}"))
D2 = sp.diag(*sp.symbols(f"e0:{n}"))
h1 = sp.Matrix(sp.symbols(f"g0:{n}"))
ell2 = D2 * (W * ell + dW * h1)
M2 = ell2.jacobian(vecw)
rec = D2 * W * M1 + sp.Matrix(n, n * n, lambda i, c: D2[i, c // n] * h1[c % n])
assert sp.expand(M2 - rec) == sp.zeros(n, n * n)
print("carried-matrix recursion M_t = J_t M_{t-1} + B_t (x) a_t^T: verified for two steps")

# %% [markdown]
# Numerically: for a small net, the library's carried matrices
# (`carried_matrices`, from `cell.linearise`) give $\ell_T$ for a small $\Delta W$ to
# second order, and the frozen `noise_response` equals $s^2\|M_T\|_F^2$.

# %%
for kind in ("elman", "mgru"):
    cell = rp.random_cell(kind, 5, 2, spectral_norm=1.1, seed=1)
    X = rng.standard_normal((12, 2))
    Ms = carried_matrices(cell, X)
    d = {k: 1e-6 * rng.standard_normal((5, 5)) for k in cell.recurrent_names}
    other = cell.replace(**{k: cell.recurrent[k] + d[k] for k in d})
    e = other.run(X)[-1] - cell.run(X)[-1]
    lin = sum(Ms[k][0] @ d[k].reshape(-1) for k in d)
    assert np.linalg.norm(e - lin) <= 1e-3 * np.linalg.norm(lin)
    fro2 = sum(np.sum(Ms[k][0] ** 2) for k in Ms)
    nr = rp.noise_response(cell, X, std=1.0, frozen=True)[-1]
    assert abs(nr / fro2 - 1) < 1e-10, (nr, fro2)
    print(f"{kind}: |e_T - M_T vec dW| / |M_T vec dW| = "
          f"{np.linalg.norm(e - lin) / np.linalg.norm(lin):.1e}; noise_response / ||M_T||_F^2 "
          f"- 1 = {nr / fro2 - 1:.1e}")

# %% [markdown]
# ### Carrying the Gram matrix through a step
#
# For $n = 128$ the Gram product $MM^\top$ ($M$ is $n\times n^2$) costs as much as
# propagating $M$ itself, and the set bound needs it twice per step (before and after
# the activation). It can be carried instead: with $M' = D(WM + P)$, where
# $P = I\otimes a^\top$ places the fresh term ($P[i, (i,p)] = a_p$),
#
# $$M'M'^\top = D\bigl(WGW^\top + C + C^\top + \|a\|^2 I\bigr)D,\qquad G = MM^\top,\quad
# C_{xi} = (WMP^\top)_{xi} = \sum_p (WM)[x, (i,p)]\,a_p,$$
#
# since the rows of $P$ have disjoint supports ($PP^\top$ is diagonal). Each piece costs
# $O(n^3)$ ($C$ is a contraction of $WM$, which the bound forms anyway). sympy checks the
# identity for $n = 3$:

# %%
a1 = sp.Matrix(sp.symbols(f"a0:{n}"))
Mg = sp.Matrix(n, n * n, lambda i, c: sp.Symbol(f"m{i}_{c}"))
P = sp.Matrix(n, n * n, lambda i, c: a1[c % n] if c // n == i else 0)
WM = W * Mg
C = sp.Matrix(n, n, lambda x, i: sum(WM[x, i * n + p] * a1[p] for p in range(n)))
lhs = (D2 * (WM + P)) * (D2 * (WM + P)).T
rhs = D2 * (W * (Mg * Mg.T) * W.T + C + C.T + (a1.T * a1)[0, 0] * sp.eye(n)) * D2
assert sp.expand(lhs - rhs) == sp.zeros(n, n)
assert sp.expand(P * P.T - (a1.T * a1)[0, 0] * sp.eye(n)) == sp.zeros(n, n)
print("M'M'^T = D (W G W^T + C + C^T + ||a||^2 I) D with C = (WM) P^T: verified symbolically")

# %% [markdown]
# In floating point each update adds its own rounding, bounded in Frobenius norm against
# the *stored* coefficients (`_gram_matvec`, `_gram_block_add`, `_gram_row_scaled`; the
# test `test_carried_gram_bounds_hold_exactly` checks them in rational arithmetic), and the
# old error is carried with it: $\|W\|_2^2e$ through the product, $\max_i d_i^2\,e$ through
# the activation. A fresh product's own rounding bound is $\gamma_{n^2+1}\sum_i\|M_i\|^2$;
# the bound uses the carried Gram while its error stays below twice that. Below, one
# Elman recursion $M_t = D_t(WM_{t-1} + I\otimes h_{t-1}^\top)$ in float64 with the
# carried Gram beside it and the library's rule (a fresh product where the carried bound
# exceeds twice a fresh one's): on a contractive net ($\|W\|_2 = 0.9$) the carried error
# bound stays about as small as the fresh one and is carried on most steps; on an
# expanding one ($\|W\|_2 = 3$) it grows by about $\|W\|_2^2$ per step and the library
# falls back to fresh products.

# %%
from rnnperturb.bounds.set_bound import (_gram, _gram_block_add, _gram_matvec,  # noqa: E402
                                         _gram_row_scaled, _lmul)
from rnnperturb.verified.linalg import frobenius_upper, gamma, spectral_norm_upper  # noqa: E402

fig, ax = plt.subplots(figsize=(5.5, 3.6))
nn, TT = 24, 40
for sn in (0.9, 3.0):
    cell = rp.random_cell("elman", nn, 2, spectral_norm=sn, seed=2)
    Wf = np.asarray(cell.W, np.float64)
    nA, fA = float(spectral_norm_upper(Wf)), float(frobenius_upper(Wf))
    X = rng.standard_normal((TT, 1, 2))
    h = 0.5 * rng.standard_normal((1, nn))
    M = np.zeros((1, nn, nn * nn))
    Gc, ec = _gram(M)[:2]
    ratio, fresh_steps = [], 0
    idx = np.arange(nn)
    for t in range(TT):
        Gc, ec = _gram_matvec(Gc, ec, Wf, nA, fA)                  # W G W^T
        M = _lmul(Wf, M)
        blk = np.broadcast_to(h[:, None, :], (1, nn, nn)).copy()   # the fresh term I (x) h^T
        M4 = M.reshape(1, nn, nn, nn)
        Gc, ec = _gram_block_add(Gc, ec, M4, blk)                  # + C + C^T + ||h||^2 I
        M4[:, idx, idx, :] = M4[:, idx, idx, :] + blk
        h = np.tanh(h @ Wf.T + X[t] @ cell.U.T + cell.b)
        s_ = 1 - h * h
        Gc, ec = _gram_row_scaled(Gc, ec, s_)                      # D G D
        M = M * s_[..., None]
        G, efresh, _ = _gram(M)
        # both bound the rounding of a Gram of the same stored M: they differ by less
        assert np.linalg.norm(Gc[0] - G[0]) <= ec[0] + efresh[0]
        ratio.append(ec[0] / efresh[0])
        if ratio[-1] > 2:                   # the library's rule: a fresh product instead
            Gc, ec, fresh_steps = G, efresh, fresh_steps + 1
    ax.semilogy(np.arange(1, TT + 1), ratio, label=f"||W||_2 = {sn}")
    print(f"||W||_2 = {sn}: carried / fresh error bound, median {np.median(ratio):.2g}; "
          f"fresh products on {fresh_steps} of {TT} steps")
    if sn < 1:
        assert fresh_steps <= TT // 4       # contractive: carried on most steps
    else:
        assert fresh_steps >= TT - 2        # expanding: the carried error outgrows it
ax.axhline(2, color="k", lw=0.5, ls="--")
ax.set_xlabel("t")
ax.set_ylabel("carried / fresh Gram error bound")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "07_carried_gram.png", dpi=120)
print("saved", OUT / "07_carried_gram.png")

# %% [markdown]
# ## 2. The Frobenius ball
#
# $\sup_{\|v\|_2\le\varepsilon}\|Mv\|_2 = \varepsilon\sigma_{\max}(M) =
# \varepsilon\lambda_{\max}(MM^\top)^{1/2}$ (attained at the top right singular
# vector). For a product of balls, $\|v_k\|\le\varepsilon_k$ for each matrix $k$, the
# supremum is, by duality, $\sup_{\|y\|=1}\sum_k\varepsilon_k\|A_k^\top y\|$, and for any
# weights $w_k>0$ (Cauchy–Schwarz on $\sum_k\sqrt{w_k}\cdot\varepsilon_k\|A_k^\top y\|/\sqrt{w_k}$)
#
# $$\sum_k\varepsilon_k\|A_k^\top y\| \le \Bigl(\sum_kw_k\Bigr)^{1/2}
# \Bigl(y^\top\sum_k\frac{\varepsilon_k^2}{w_k}A_kA_k^\top y\Bigr)^{1/2}
# \le \Bigl(\sum_kw_k\Bigr)^{1/2}\lambda_{\max}\Bigl(\sum_k\frac{\varepsilon_k^2}{w_k}A_kA_k^\top\Bigr)^{1/2},$$
#
# which the library minimises over a few $w$ (and takes the smaller with
# $\sum_k\varepsilon_k\|A_k\|_2$). sympy checks the Cauchy–Schwarz step
# $(a_1+a_2)^2\le(w_1+w_2)(a_1^2/w_1+a_2^2/w_2)$ as a square over a positive denominator.

# %%
a1, a2, w1, w2 = sp.symbols("a1 a2 w1 w2", positive=True)
lhs = (a1 + a2) ** 2
rhs = (w1 + w2) * (a1 ** 2 / w1 + a2 ** 2 / w2)
gap = sp.simplify(sp.together(rhs - lhs))
assert sp.simplify(gap - (a1 * w2 - a2 * w1) ** 2 / (w1 * w2)) == 0
print("(w1 + w2)(a1^2/w1 + a2^2/w2) - (a1 + a2)^2 =", sp.factor(gap), ">= 0")

# numerically: the exact sup for two blocks is max over unit y of e1||A1^T y|| + e2||A2^T y||
A1, A2 = rng.standard_normal((4, 9)), rng.standard_normal((4, 9))
e1, e2 = 0.3, 0.7
ys = rng.standard_normal((200000, 4))
ys /= np.linalg.norm(ys, axis=1, keepdims=True)
exact_lo = np.max(e1 * np.linalg.norm(ys @ A1, axis=1) + e2 * np.linalg.norm(ys @ A2, axis=1))
best = np.inf
for w in ([1.0, 1.0], [e1 * np.linalg.norm(A1, 2), e2 * np.linalg.norm(A2, 2)]):
    Q = e1 ** 2 / w[0] * A1 @ A1.T + e2 ** 2 / w[1] * A2 @ A2.T
    best = min(best, np.sqrt(sum(w) * np.linalg.eigvalsh(Q)[-1]))
tri = e1 * np.linalg.norm(A1, 2) + e2 * np.linalg.norm(A2, 2)
assert exact_lo <= best * (1 + 1e-12) and best <= tri * (1 + 1e-12)
print(f"two balls: sampled sup >= {exact_lo:.4f}, weighted Cauchy-Schwarz {best:.4f}, "
      f"sum of norms {tri:.4f}")

# %% [markdown]
# The library's ball bound at a tiny radius (remainder negligible) against
# $\varepsilon\|M_T\|_2$ from an SVD of the carried matrix, and against the attack
# (projected ascent on the exact simulation):

# %%
cell = rp.random_cell("elman", 8, 3, spectral_norm=0.9, seed=2)
X = rng.standard_normal((20, 3))
eps = 1e-6
tr = set_trace(cell, sets.Ball(radius=eps), X)
M = carried_matrices(cell, X)["W"][0]
svd = eps * np.linalg.svd(M, compute_uv=False)[0]
lo, _ = rp.set_attack(cell, sets.Ball(radius=eps), X, seed=0, iters=5, restarts=0)
assert svd * (1 - 1e-9) <= tr.lin_norm[-1, 0] <= svd * (1 + 1e-6)
assert lo <= tr.bound[-1, 0] <= 1.01 * lo
print(f"ball eps={eps}: lin_norm/eps||M||_2 = {tr.lin_norm[-1, 0] / svd:.8f}, "
      f"bound/attack = {tr.bound[-1, 0] / lo:.5f}")

# %% [markdown]
# ## 3. The box
#
# For $|u_j|\le1$ (the box scaled to the unit cube, $A = M\,\mathrm{diag}(\mathrm{vec}E)$):
#
# * **per coordinate**: $|(Au)_i|\le\sum_j|A_{ij}|$, exact for each row on its own, so
#   $\sup\|Au\|\le\|\,|A|\mathbf 1\|_2$;
# * **SDP dual**: for any $\omega>0$, with $\Omega = \mathrm{diag}(\omega)$,
#   $u^\top A^\top Au = (\Omega^{1/2}u)^\top(\Omega^{-1/2}A^\top A\Omega^{-1/2})(\Omega^{1/2}u)
#   \le\lambda_{\max}(A\Omega^{-1}A^\top)\sum_j\omega_ju_j^2\le\lambda_{\max}(A\Omega^{-1}A^\top)\sum_j\omega_j$.
#   Minimised over $\omega$ this is the dual of the semidefinite relaxation of
#   $\max_{u\in\{\pm1\}^N}u^\top A^\top Au$, whose value is within $\pi/2$ of the true
#   maximum (Nesterov), so the norm bound is within $\sqrt{\pi/2}\approx1.25$.
#
# sympy checks the identity behind the middle step for a symbolic $2\times2$ case
# ($\Omega^{-1/2}A^\top A\Omega^{-1/2}$ and $A\Omega^{-1}A^\top$ share their nonzero
# eigenvalues: equal traces and determinants); the numbers compare both bounds with
# the exact supremum by enumerating all $2^N$ vertices (a convex function's maximum
# over a box is at a vertex).

# %%
A = sp.Matrix(2, 2, sp.symbols("A0:4"))
o = sp.symbols("o0:2", positive=True)
Om = sp.diag(*o)
P = sp.sqrt(Om).inv() * A.T * A * sp.sqrt(Om).inv()
Q = A * Om.inv() * A.T
assert sp.simplify(P.trace() - Q.trace()) == 0
assert sp.simplify(P.det() - Q.det()) == 0
print("Omega^-1/2 A^T A Omega^-1/2 and A Omega^-1 A^T: same trace and determinant")

ratios = []
for trial in range(30):
    m_, N = int(rng.integers(2, 5)), int(rng.integers(4, 13))
    A = rng.standard_normal((m_, N)) * rng.uniform(0.1, 2, N)
    V = np.array(list(itertools.product([-1.0, 1.0], repeat=N)))
    exact = np.sqrt(np.max(np.sum((V @ A.T) ** 2, axis=1)))
    coord = np.linalg.norm(np.abs(A).sum(axis=1))
    sdp, _ = _box_sdp({"W": A[None]}, {"W": np.ones(N)}, ("W",), 12)
    assert exact <= sdp[0] * (1 + 1e-12) and exact <= coord * (1 + 1e-12)
    ratios.append((coord / exact, sdp[0] / exact))
ratios = np.array(ratios)
assert np.all(ratios[:, 1] <= np.sqrt(np.pi / 2) * 1.02)
print(f"box, 30 random A (N <= 12): per-coordinate / exact max {ratios[:, 0].max():.3f}, "
      f"SDP-dual / exact max {ratios[:, 1].max():.3f} (Nesterov: <= sqrt(pi/2) = "
      f"{np.sqrt(np.pi / 2):.3f} at the optimal omega)")

# %% [markdown]
# ## 4. The noise confidence bound
#
# $\Delta W = s\,g$ with $g\sim N(0, I_N)$, $N = Kn^2$. `rp.noise_bound` splits
# $\delta = 1-\text{confidence}$ into $\delta_1 = \delta/10$ and $\delta_2 = 9\delta/10$:
#
# * **radius**: $g\mapsto\|g\|$ is 1-Lipschitz with $\mathbb E\|g\|\le(\mathbb E\|g\|^2)^{1/2} = \sqrt N$,
#   so $\Pr(\|g\|>\sqrt N+\sqrt{2\log(1/\delta_1)})\le\delta_1$ (Gaussian concentration);
#   on the complement $\Delta W$ lies in the ball of radius
#   $R = s(\sqrt N+\sqrt{2\log(1/\delta_1)})$, where the set bound holds for every member
#   (the remainder);
# * **linear part** at each of the $T$ steps, with the same tail $e^{-x}$,
#   $x = \log(T/\delta_2)$ (a union bound over the steps gives $\delta_2$):
#   Lipschitz form $\|Mg\|\le\|M\|_F+\|M\|_2\sqrt{2x}$, and Laurent–Massart
#   $\|Mg\|^2\le\sum\lambda_i+2(\sum\lambda_i^2)^{1/2}\sqrt x+2\lambda_{\max}x$ with
#   $\lambda_i$ the eigenvalues of $M^\top M$.
#
# sympy: $\mathbb E\|g\|^2 = N$, and the Laurent–Massart threshold never exceeds the
# square of the Lipschitz one, because $\sum\lambda_i^2\le\lambda_{\max}\sum\lambda_i$.

# %%
g = sp.Symbol("g", real=True)
dens = sp.exp(-g ** 2 / 2) / sp.sqrt(2 * sp.pi)
assert sp.integrate(g ** 2 * dens, (g, -sp.oo, sp.oo)) == 1      # E g_i^2 = 1, so E||g||^2 = N
F2, L, x, S2 = sp.symbols("F2 L x S2", positive=True)            # sum(l), l_max, x, sum(l^2)
lip2 = (sp.sqrt(F2) + sp.sqrt(L) * sp.sqrt(2 * x)) ** 2
lm = F2 + 2 * sp.sqrt(S2) * sp.sqrt(x) + 2 * L * x
worst = lm.subs(S2, L * F2)                                       # S2 <= L F2
diff = sp.expand(lip2 - worst)
assert sp.simplify(diff - 2 * (sp.sqrt(2) - 1) * sp.sqrt(F2) * sp.sqrt(L) * sp.sqrt(x)) == 0
print("Lipschitz^2 - Laurent-Massart >=", sp.simplify(diff), ">= 0")

# Monte Carlo of ||Mg|| for an M with a spread spectrum: both tails hold, LM is smaller
Mm = rng.standard_normal((16, 120)) * np.linspace(0.2, 1.5, 16)[:, None]
lam = np.linalg.eigvalsh(Mm @ Mm.T)
F, op, gf = np.sqrt(lam.sum()), np.sqrt(lam[-1]), np.sqrt(np.sum(lam ** 2))
samples = np.linalg.norm(rng.standard_normal((100000, 120)) @ Mm.T, axis=1)
for xv in (np.log(10.0), np.log(100.0), np.log(1000.0)):
    t_lip = F + op * np.sqrt(2 * xv)
    t_lm = np.sqrt(F ** 2 + 2 * gf * np.sqrt(xv) + 2 * op ** 2 * xv)
    p_lm = np.mean(samples > t_lm)
    assert p_lm <= np.exp(-xv) and np.mean(samples > t_lip) <= np.exp(-xv) and t_lm <= t_lip
    q = np.quantile(samples, 1 - np.exp(-xv))
    print(f"tail e^-x = {np.exp(-xv):.3f}: empirical quantile {q:.2f}, Laurent-Massart "
          f"{t_lm:.2f} (P = {p_lm:.4f}), Lipschitz {t_lip:.2f}")

# %% [markdown]
# The whole bound on a small net against Monte Carlo of the exact simulation: no draw
# may exceed $P_t$ at *any* step more often than $\delta$ (the statement is
# simultaneous over the steps), and in the linear regime $P_t$ is within a small factor
# of the empirical quantile (goal: 3x).

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for kind in ("elman", "mgru"):
    cell = rp.random_cell(kind, 6, 2, spectral_norm=1.0, seed=4)
    X = rng.standard_normal((25, 2))
    s, conf = 1e-5, 0.9
    Pn = rp.noise_bound(cell, X, std=s, confidence=conf)
    H = cell.run(X)
    devs = np.array([np.linalg.norm(cell.replace(**{k: cell.recurrent[k] + s * rng.standard_normal(
        (6, 6)) for k in cell.recurrent_names}).run(X) - H, axis=-1) for _ in range(400)])
    viol = np.mean(np.any(devs > Pn, axis=1))
    q = np.quantile(devs, conf, axis=0)
    r = Pn[1:] / q[1:]
    assert viol <= 1 - conf and r.max() <= 3.0
    print(f"{kind}: draws exceeding P_t at some step {100 * viol:.1f} % (allowed "
          f"{100 * (1 - conf):.0f} %), P_t / empirical 0.9-quantile {r.min():.2f}-{r.max():.2f}")
    ax.plot(np.arange(2, 26), r, label=kind)
ax.set_xlabel("t")
ax.set_ylabel("noise_bound / empirical quantile")
ax.axhline(3, color="k", lw=0.5, ls="--")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "07_noise_bound.png", dpi=120)
print("saved", OUT / "07_noise_bound.png")

# %% [markdown]
# ## 5. Chords instead of tangents
#
# Each activation of the affine method writes $\varphi(c+d) = \tilde\varphi(c) + s\,d +
# \text{error}$ over the row's range $|d|\le\rho$. With the tangent, $s = \varphi'(c)$ and
# the error is the Taylor remainder $|R|\le q\,d^2$; with the **chord**, $s$ is the slope
# between the ends and the error, centred, is $o\pm e$
# (`rnnperturb.verified.activation.secant_enclosure`). On a piece where $\varphi$ is convex
# the chord is the best (Chebyshev) line: its centred error is half the tangent's. Where
# the range straddles the inflection the tangent's error is cubic and the chord's
# about $0.385 = 2/(3\sqrt3)$ of it. sympy checks both on the model functions $x^2$ and
# $x^3$ over $[-\rho, \rho]$:

# %%
x, r = sp.symbols("x rho", positive=True)
# x^2: tangent at 0 -> error x^2 <= rho^2; chord slope 0, error in [0, rho^2], centred rho^2/2
assert sp.simplify((r ** 2 - 0) / 2 - r ** 2 / 2) == 0
# x^3: tangent at 0 -> error |x^3| <= rho^3; chord slope rho^2, error x^3 - rho^2 x, extreme
# where 3x^2 = rho^2
xs = r / sp.sqrt(3)
chord_err = sp.simplify(sp.Abs(xs ** 3 - r ** 2 * xs))
assert sp.simplify(chord_err / r ** 3 - 2 / (3 * sp.sqrt(3))) == 0
print(f"x^2: chord error / tangent error = 1/2; x^3: = 2/(3 sqrt 3) = {float(2 / (3 * np.sqrt(3))):.3f}")

# %% [markdown]
# The enclosures themselves, on tanh: the centred chord error against the tangent's
# remainder, on one-signed ranges (ratio at most about 1/2, less where the curvature
# varies) and straddling ones (about 0.385 or less), and the exact half-width of the
# chord's error found by dense sampling (the enclosure is sound and within 0.1 % of it:
# the root brackets and rounding). But the tangent has what the chords lack: its rows
# obey $|R_i|\le q_i d_i^2$, so $\|R\|\le\max_i(q_i\rho_i)\sup\|d\|_2$, up to $\sqrt n$
# below the rows in quadrature when a ball lets every row reach the whole norm. So
# `set_bound` takes chords row by row in decreasing order of $q_i\rho_i$ only while the
# estimated norm of the activation error falls (`_secant_rows`): most rows on boxes and
# large balls, none on small balls.

# %%
for c0, rho0, kind_ in ((1.2, 0.3, "one-signed"), (-2.0, 0.5, "one-signed"), (0.0, 0.4, "straddling"),
                        (0.1, 0.6, "straddling")):
    s_, o_, e_, ok_ = (float(v[0]) for v in secant_enclosure("tanh", np.array([c0]), np.array([rho0]),
                                                              np.tanh([c0])))
    R0 = float(taylor_remainder_max("tanh", np.array([c0]), np.array([-rho0]), np.array([rho0]))[0])
    d = np.linspace(-rho0, rho0, 20001)
    err = np.tanh(c0 + d) - np.tanh(c0) - s_ * d
    half = 0.5 * (err.max() - err.min())
    assert ok_ and err.min() >= o_ - e_ and err.max() <= o_ + e_ and e_ <= half * 1.001 + 1e-15
    print(f"c = {c0:+.1f}, rho = {rho0} ({kind_}): chord error {e_:.3e}, tangent {R0:.3e}, "
          f"ratio {e_ / R0:.3f}")

# %% [markdown]
# The effect on the whole bound (Elman, n = 32, the setting of the auto_LiRPA comparison,
# T = 10, bound / best attack found): the box at 0.1x the largest entry of the rank-16
# truncation error and 6-bit quantization gain most; a ball of 0.01x its norm, where the
# tangent's norm structure decides, is unchanged.

# %%
cell = rp.random_cell("elman", 32, 4, spectral_norm=0.9, seed=0)
U_, s_, Vt_ = np.linalg.svd(cell.W)
dW16 = cell.W - (U_[:, :16] * s_[:16]) @ Vt_[:16]
X = np.random.default_rng(10).standard_normal((10, 4))
for name, S in (("box 0.1x", sets.Box(radius=0.1 * np.abs(dW16).max())),
                ("6-bit", sets.quantization(cell, bits=6)),
                ("ball 0.01x", sets.Ball(radius=0.01 * np.linalg.norm(dW16)))):
    lo, _ = rp.set_attack(cell, S, X, seed=0, iters=10, restarts=1)
    b0 = float(rp.set_bound(cell, S, X, chords=False)[-1])
    b1 = float(rp.set_bound(cell, S, X)[-1])
    assert lo <= b1 <= b0 * (1 + 1e-9)
    print(f"{name}: tangents {b0 / lo:.2f}x the attack, chords {b1 / lo:.2f}x")
print(f"notebook 07 done in {time.perf_counter() - T0:.1f} s")
