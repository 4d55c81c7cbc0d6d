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
# # 04 — Coherent versus incoherent accumulation: scaling laws
#
# Scalar model of one propagated mode: $\ell_t = \lambda\ell_{t-1} + \varepsilon f_t$,
# $\ell_0 = 0$.
#
# * coherent forcing ($f_t = 1$): $\ell_t = \varepsilon\frac{1-\lambda^t}{1-\lambda}$,
#   which is $\varepsilon t$ at $\lambda = 1$ — errors add in amplitude, $\propto D$;
# * incoherent forcing (i.i.d., unit variance):
#   $\mathbb E\ell_t^2 = \varepsilon^2\frac{1-\lambda^{2t}}{1-\lambda^2}$, i.e.
#   $\varepsilon^2 t$ at $\lambda = 1$ — a random walk, RMS $\propto\sqrt D$;
# * AR(1) forcing with correlation $r^{|k-l|}$ interpolates; stationary level
#   $\varepsilon^2\frac{1+\lambda r}{(1-\lambda^2)(1-\lambda r)}$;
# * contractive propagator ($|\lambda|<1$): both saturate, at
#   $\varepsilon/(1-\lambda)$ (coherent) and $\varepsilon/\sqrt{1-\lambda^2}$
#   (incoherent), after about $1/(1-\lambda)$ steps. Their ratio of squares is the
#   frozen/fresh ratio $C_\infty = (1+\lambda)/(1-\lambda)$; at finite t,
#   $C_t = \frac{(1+\lambda)(1-\lambda^t)}{(1-\lambda)(1+\lambda^t)}$, $C_t = t$ at $\lambda = 1$.
#
# All derived by `sympy.rsolve` / `summation` / a Lyapunov solve, then checked
# against Monte Carlo, the library's numeric forms (`rnnperturb.stats.coherence`) and —
# through a diagonal Elman net held at a fixed point, where the scalar model is
# exact — against `rnnperturb.first_order` and `rnnperturb.noise_response`.

# %%
import time

import _setup  # noqa: F401  (headless matplotlib; the package from the repository)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import rnnperturb as rp  # noqa: E402
from rnnperturb import symbolic as S  # noqa: E402

OUT, _args, T0 = _setup.output_dir("04")

# %% [markdown]
# ## 1. Closed forms

# %%
acc = S.scalar_accumulation()
for name in ("coherent", "coherent_at_1", "incoherent_var", "incoherent_var_at_1",
             "frozen_fresh_ratio", "ratio_at_1", "ratio_limit"):
    print(f"{name:20s} = {getattr(acc, name)}")
st = S.ar_stationary_variance()
print("AR(1) forcing, stationary Var(ell) =", st["variance"])
print("   r = 0:", st["incoherent"], "   r -> 1:", st["coherent"])
ar = S.ar_response()
lam, t = acc.lam, acc.t
# saturation levels (|lam| < 1: lam^t -> 0 as t -> oo)
sat_c = sp.simplify(acc.coherent.subs(lam ** t, 0))
sat_i = sp.simplify(acc.incoherent_var.subs(lam ** t, 0))
print("coherent saturation  :", sat_c, "   incoherent saturation (variance):", sat_i)
assert sp.simplify(sat_c ** 2 / sat_i - acc.ratio_limit) == 0
assert sp.simplify(st["coherent"] - sat_c ** 2) == 0 and sp.simplify(st["incoherent"] - sat_i) == 0

# %% [markdown]
# ## 2. Monte Carlo and the library's numeric forms

# %%
rng = np.random.default_rng(0)
N, T = 4000, 200
f_num = ar["numeric"]
from rnnperturb import coherence as C  # noqa: E402

worst_z = 0.0
for lv in (0.5, 0.9, 0.99, 0.999):
    for r in (0.0, 0.3, 0.8, 0.995):   # r != lam (the degenerate branch of the Piecewise)
        f = rng.standard_normal(N)
        ell = np.zeros(N)
        ells = []
        for k in range(T):
            if k:
                f = r * f + np.sqrt(1 - r * r) * rng.standard_normal(N)
            ell = lv * ell + f
            ells.append(ell)
        ells = np.array(ells)
        for tt in (1, 10, 50, 200):
            mc = np.mean(ells[tt - 1] ** 2)
            se = np.std(ells[tt - 1] ** 2) / np.sqrt(N)
            cf = f_num(lv, r, float(tt)) if r > 0 else acc.numeric("incoherent_var")(lv, tt, 1.0)
            lib = C.scalar_response(lv, np.array(tt), r=r)
            assert abs(lib / cf - 1) < 1e-9, (lv, r, tt, lib, cf)
            worst_z = max(worst_z, abs(mc - cf) / se)
print(f"closed form vs rnnperturb.stats.coherence.scalar_response: agree to 1e-9 (16 (lam, r) x 4 t)")
print(f"closed form vs Monte Carlo ({N} paths): worst |z| = {worst_z:.2f}")
assert worst_z < 4.5

# %% [markdown]
# ## 3. Scaling laws in the delay D
#
# Log-log slopes of the RMS deviation against $D$: 1 (coherent) and 1/2
# (incoherent) while $D \ll 1/(1-\lambda)$; 0 after saturation.

# %%
Ds = np.unique(np.round(np.logspace(0, 4, 41)).astype(int))
coh = acc.numeric("coherent")
inc = acc.numeric("incoherent_var")
rows = []
for lv in (1.0, 0.999, 0.99, 0.9):
    if lv == 1.0:
        a, b = Ds.astype(float), np.sqrt(Ds.astype(float))
    else:
        a, b = np.abs(coh(lv, Ds, 1.0)), np.sqrt(inc(lv, Ds, 1.0))
    small = Ds <= max(2, 0.05 / (1 - lv)) if lv < 1 else Ds > 0
    large = Ds >= 20 / (1 - lv) if lv < 1 else np.zeros_like(Ds, bool)
    s_coh = np.polyfit(np.log(Ds[small]), np.log(a[small]), 1)[0] if small.sum() > 1 else np.nan
    s_inc = np.polyfit(np.log(Ds[small]), np.log(b[small]), 1)[0] if small.sum() > 1 else np.nan
    sat = (f"{a[large][-1]:.4g} vs 1/(1-lam) = {1 / (1 - lv):.4g}; "
           f"{b[large][-1]:.4g} vs 1/sqrt(1-lam^2) = {1 / np.sqrt(1 - lv ** 2):.4g}"
           if large.any() else "no saturation")
    rows.append((lv, s_coh, s_inc, sat, a, b))
    print(f"lam = {lv}: early slopes coherent {s_coh:.3f}, incoherent {s_inc:.3f}; saturation: {sat}")
assert abs(rows[0][1] - 1) < 1e-9 and abs(rows[0][2] - 0.5) < 1e-9
assert abs(rows[1][1] - 1) < 0.03 and abs(rows[1][2] - 0.5) < 0.03

# %% [markdown]
# ## 4. The scalar model inside a real cell
#
# A diagonal Elman net $W = \mathrm{diag}(w_i)$, $U = 0$, started at its fixed point
# $h^*$: $h^*_i = \tanh(w_ih^*_i + b_i)$. Its step Jacobian is
# $J = \mathrm{diag}(\mu_i)$, $\mu_i = w_i(1-h^{*2}_i)$, and the forcing
# $D\,\Delta W h^*$ is constant: exactly the coherent scalar model per unit. We
# design $h^*$ and $\mu$ ($w_i = \mu_i/(1-h^{*2}_i)$,
# $b_i = \mathrm{atanh}\,h^*_i - w_ih^*_i$) with slow modes up to $\mu = 0.999$.
# With i.i.d. $N(0,s^2)$ noise on $W$, the sympy diagonal model gives
# $\mathbb E\|\ell_t\|^2 = s^2\|h^*\|^2\sum_i D_i^2 S_i(t)^2$ (frozen) and
# $s^2\|h^*\|^2\sum_i D_i^2 V_i(t)$ (fresh).

# %%
mus = np.array([0.5, 0.9, 0.99, 0.999])
hstar = np.array([0.5, -0.3, 0.6, 0.4])
n = len(mus)
Dd = 1 - hstar ** 2
w = mus / Dd
b = np.arctanh(hstar) - w * hstar
cell = rp.ElmanRNN(W=np.diag(w), U=np.zeros((n, 1)), b=b)
T = 3000
X = np.zeros((T, 1))
drift = np.abs(cell.run(X, hstar) - hstar).max()
print(f"fixed point held to {drift:.1e} over {T} steps")
rng = np.random.default_rng(1)
dW = 1e-6 * rng.standard_normal((n, n))
L = rp.first_order(cell, cell.replace(W=cell.W + dW), X, h0=hstar)
tt = np.arange(1, T + 1)
pred = (Dd * (dW @ hstar))[None, :] * (1 - mus[None, :] ** tt[:, None]) / (1 - mus[None, :])
err_fo = np.abs(L - pred).max() / np.abs(pred).max()
print(f"rp.first_order vs closed form: max rel error {err_fo:.1e}")
assert err_fo < 1e-9

d = S.diagonal_accumulation(n)
print("sympy diagonal model, frozen:", d["frozen"])
# with the slopes D_i the forcing of mode i has std D_i s ||h*||: the same sums, weighted by D_i^2
Sfun = acc.numeric("coherent")
Vfun = acc.numeric("incoherent_var")
s = 1e-3
frozen_cf = s ** 2 * hstar @ hstar * sum(Dd[i] ** 2 * Sfun(mus[i], tt, 1.0) ** 2 for i in range(n))
fresh_cf = s ** 2 * hstar @ hstar * sum(Dd[i] ** 2 * Vfun(mus[i], tt, 1.0) for i in range(n))
NR_f = rp.noise_response(cell, X, std=s, frozen=True, h0=hstar)
NR_r = rp.noise_response(cell, X, std=s, frozen=False, h0=hstar)
e1 = np.max(np.abs(NR_f / frozen_cf - 1))
e2 = np.max(np.abs(NR_r / fresh_cf - 1))
print(f"rp.noise_response vs sympy diagonal model: frozen max rel err {e1:.1e}, fresh {e2:.1e}")
assert e1 < 1e-8 and e2 < 1e-8
Cnum = NR_f / NR_r
for t_ in (1, 10, 100, 1000, 3000):
    print(f"   t = {t_:5d}: C_t = {Cnum[t_ - 1]:9.2f}")

# %% [markdown]
# ## 5. Plot: coherent versus incoherent growth

# %%
fig, ax = plt.subplots(figsize=(5.5, 4))
for (lv, _, _, _, a, b_), c in zip(rows, ("k", "C0", "C1", "C2")):
    ax.loglog(Ds, a, "-", c=c, label=f"coherent, λ={lv}")
    ax.loglog(Ds, b_, "--", c=c, label=f"incoherent, λ={lv}")
ax.set_xlabel("delay D (steps)")
ax.set_ylabel("RMS deviation / ε")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
fig.savefig(OUT / "04_scaling.png", dpi=120)
print("saved", OUT / "04_scaling.png")
print(f"notebook 04 done in {time.perf_counter() - T0:.1f} s")
