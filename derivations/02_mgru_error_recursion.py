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
# # 02 — The MGRU error recursion
#
# $f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)$,
# $c_t = \tanh(W_h(f_t\odot h_{t-1}) + U_h x_t + b_h)$,
# $h_t = (1-f_t)\odot h_{t-1} + f_t\odot c_t$.
#
# The deviation is not of the Elman form $\tanh(a+\delta)-\tanh(a)$. With
# $\Delta f_t = \sigma(a^f_t+\delta^f_t)-\sigma(a^f_t)$ and
# $\Delta c_t = \tanh(a^c_t+\delta^c_t)-\tanh(a^c_t)$, sympy proves
#
# $$e_t = (1-f_t)\odot e_{t-1} + \Delta f_t\odot(c_t-h_{t-1}) + f_t\odot\Delta c_t
#        + \underbrace{\Delta f_t\odot(\Delta c_t - e_{t-1})}_{\text{gate}\times\text{candidate}},$$
# $$\delta^f_t = W_f'e_{t-1} + \Delta W_f h_{t-1},\qquad
#   \delta^c_t = W_h'\big((f_t+\Delta f_t)\odot e_{t-1} + \Delta f_t\odot h_{t-1}\big) + \Delta W_h(f_t\odot h_{t-1}).$$
#
# The bilinear term is second order; the candidate argument sees the *perturbed*
# gate. The two recurrent matrices are forced by $\Delta W_f h_{t-1}$ and by
# $\Delta W_h(f_t\odot h_{t-1})$. With the gate closed ($f_t = 0$) the step is the
# identity and both forcings vanish: the gate shields the memory.

# %%
import time

import _setup  # noqa: F401  (headless matplotlib; the package from the repository)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import rnnperturb as rp  # noqa: E402
from rnnperturb import symbolic as S  # noqa: E402
from rnnperturb.verified import deviation_mp  # noqa: E402

OUT, _args, T0 = _setup.output_dir("02")

# %% [markdown]
# ## 1. The split, proved
#
# With $f, c, \Delta f, \Delta c$ as free symbols the gate/candidate split is a
# polynomial identity; the arguments of σ and tanh in $h'_t$ equal
# $a^f+\delta^f$ and $a^c+\delta^c$ (also polynomial identities).

# %%
rec = S.deviation_recursion("mgru", 2, 1)
sc = rec.cell
print("proofs:", rec.proofs)
assert rec.proved
print("delta_f[0] =", rec.terms["delta_f"][0])
print("delta_c[0] = W_h'((f + Df) * e + Df * h) + dW_h (f * h), row 0;",
      sp.count_ops(rec.terms["delta_c"][0]), "operations when written out")

# %% [markdown]
# ## 2. First order: Jacobian and the two forcings
#
# Differentiating the split at $\varepsilon = 0$ drops the bilinear term and the
# gate change inside $\delta^c$'s $W_h'$ factor. Sympy checks
# $\ell_t = J_t\ell_{t-1} + B^f_t\Delta W_f h_{t-1} + B^h_t\Delta W_h(f_t\odot h_{t-1})$ with
# $B^h_t = \mathrm{diag}(f\odot(1-c^2))$ and
# $B^f_t = [\mathrm{diag}(c-h) + \mathrm{diag}(f\odot(1-c^2))W_h\mathrm{diag}(h)]\mathrm{diag}(f\odot(1-f))$.

# %%
fo = S.first_order_recursion("mgru", 2, 1)
assert fo["proved"]
P = sc.params
f, c = sc.gates()
h = sc.h
Bh = sp.diag(*[f[i] * (1 - c[i] ** 2) for i in range(2)])
Bf = (sp.diag(*[c[i] - h[i] for i in range(2)]) + Bh * P["Wh"] * sp.diag(*list(h))) \
    * sp.diag(*[f[i] * (1 - f[i]) for i in range(2)])
forcing = Bf * sc.dW["Wf"] * h + Bh * sc.dW["Wh"] * f.multiply_elementwise(h)
assert all(sp.expand(v) == 0 for v in fo["forcing"] - forcing)
print("forcing = B_f dWf h + B_h dWh (f*h): proved")

# gate closed: substitute f = 0 (sigma -> 0) in J and in the forcing
Jc = fo["jacobian"].replace(S.sigmoid, lambda arg: sp.Integer(0))
Fc = fo["forcing"].replace(S.sigmoid, lambda arg: sp.Integer(0))
print("J with f = 0:", Jc, " forcing with f = 0:", list(Fc))
assert Jc == sp.eye(2) and all(v == 0 for v in Fc)

# %% [markdown]
# ## 3. Numerical checks against the library

# %%
worst = 0.0
for n, m in [(1, 1), (2, 1), (3, 2)]:
    cell = rp.random_cell("mgru", n, m, spectral_norm=2.0, bias_scale=0.5, seed=n)
    rng = np.random.default_rng(n)
    hh, x = rng.uniform(-1, 1, (20, n)), 2 * rng.standard_normal((20, m))
    dh = rng.standard_normal((20, n))
    dW = {k: rng.standard_normal((n, n)) for k in ("Wf", "Wh")}
    errJ = np.abs(S.numeric_jacobian("mgru", n, m)(cell, hh, x) - cell.jacobian(hh, x)).max()
    errV = np.abs(S.numeric_jvp("mgru", n, m)(cell, hh, x, dh, dW) - cell.jvp(hh, x, dh, dW)[1]).max()
    other = cell.replace(**{k: cell.recurrent[k] + 0.1 * dW[k] for k in dW})
    errE = np.abs(S.numeric_deviation_step("mgru", n, m)(
        cell, hh, x, 0.1 * dh, {k: 0.1 * v for k, v in dW.items()})
        - (other.step(hh + 0.1 * dh, x) - cell.step(hh, x))).max()
    worst = max(worst, errJ, errV, errE)
    print(f"n={n} m={m}: max|J_sym - J| = {errJ:.1e}, max|jvp_sym - jvp| = {errV:.1e}, "
          f"max|e_sym - e| = {errE:.1e}")
assert worst < 1e-13

# iterate the derived recursion along a trajectory
n, m, T = 3, 2, 60
cell = rp.random_cell("mgru", n, m, spectral_norm=1.5, seed=11)
rng = np.random.default_rng(12)
X = rng.standard_normal((T, m))
dW = {k: 0.05 * rng.standard_normal((n, n)) for k in ("Wf", "Wh")}
other = cell.replace(**{k: cell.recurrent[k] + dW[k] for k in dW})
H = cell.run(X)
step = S.numeric_deviation_step("mgru", n, m)
e, hprev, E = np.zeros(n), np.zeros(n), []
for t in range(T):
    e = step(cell, hprev, X[t], e, dW)
    hprev = H[t]
    E.append(e)
ref = rp.deviation(cell, other, X)
err = np.abs(np.array(E) - ref).max()
print(f"max |iterated symbolic recursion - rp.deviation| = {err:.1e} (max |e| = {np.abs(ref).max():.2e})")
assert err < 1e-14

# %% [markdown]
# ## 4. The bilinear term and first-order accuracy
#
# Along the trajectory, the size of the gate × candidate term relative to
# $\|e_t\|$ shrinks linearly with $\|\Delta W\|$, and $\|e_t - \ell_t\|$
# quadratically (mpmath deviation, as in notebook 01).

# %%
n, m, T = 8, 2, 40
cell = rp.random_cell("mgru", n, m, spectral_norm=1.5, seed=3)
rng = np.random.default_rng(4)
X = rng.standard_normal((T, m))
D0 = {k: rng.standard_normal((n, n)) for k in ("Wf", "Wh")}
for k in D0:
    D0[k] /= np.linalg.norm(D0[k], 2)
scales = 10.0 ** np.arange(-8, -0.5, 1.0)
gap, bil = [], []
for s in scales:
    other = cell.replace(**{k: cell.recurrent[k] + s * D0[k] for k in D0})
    Emp = deviation_mp(cell, other, X, dps=40)
    L = rp.first_order(cell, other, X)
    gap.append(np.linalg.norm(Emp - L, axis=-1).max())
    # bilinear term Δf ⊙ (Δc - e_{t-1}) evaluated on the exact trajectories
    H, Hp = cell.run(X), other.run(X)
    Hprev = np.vstack([np.zeros((1, n)), H[:-1]])
    Hpprev = np.vstack([np.zeros((1, n)), Hp[:-1]])
    f0, c0 = cell.gates(Hprev, X)
    f1, c1 = other.gates(Hpprev, X)
    bterm = (f1 - f0) * ((c1 - c0) - (Hpprev - Hprev))
    bil.append(np.linalg.norm(bterm, axis=-1).max() / np.linalg.norm(Emp, axis=-1).max())
sl_gap = np.polyfit(np.log10(scales), np.log10(gap), 1)[0]
sl_bil = np.polyfit(np.log10(scales[2:]), np.log10(bil[2:]), 1)[0]
print("scale    max||e-l||    bilinear/max||e||")
for s, g, b in zip(scales, gap, bil):
    print(f"{s:7.0e}  {g:11.3e}  {b:11.3e}")
print(f"slopes: ||e - l|| {sl_gap:.3f} (expect 2), bilinear share {sl_bil:.3f} (expect 1)")
assert abs(sl_gap - 2) < 0.05 and abs(sl_bil - 1) < 0.1

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(scales, gap, "o-", label=r"$\max_t\|e_t-\ell_t\|$")
ax.loglog(scales, bil, "s--", label="bilinear term / max‖e‖")
ax.set_xlabel(r"$\|\Delta W\|_2$ (each matrix)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "02_mgru_orders.png", dpi=120)
print("saved", OUT / "02_mgru_orders.png")
print(f"notebook 02 done in {time.perf_counter() - T0:.1f} s")
