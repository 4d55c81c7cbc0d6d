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
# # 01 — The Elman (tanh) RNN error recursion
#
# Nominal cell $h_t = \tanh(W h_{t-1} + U x_t + b)$, perturbed cell with
# $W' = W + \Delta W$ (inputs, biases and $h_0$ unchanged), deviation
# $e_t = h'_t - h_t$. We derive in sympy
#
# 1. the exact recursion $e_t = \tanh(a_t + \delta_t) - \tanh(a_t)$,
#    $\delta_t = W' e_{t-1} + \Delta W h_{t-1}$;
# 2. the first-order (tangent-linear) recursion $\ell_t = D_t(W\ell_{t-1} + \Delta W h_{t-1})$
#    and the step Jacobian $J_t = D_t W$, $D_t = \mathrm{diag}(\tanh'(a_t))$;
# 3. the Lagrange remainder $|e_t - D_t\delta_t| \le \tfrac{\kappa}{2}\delta_t^2$,
#    $\kappa = \sup|\tanh''|$;
#
# and check each one numerically against the library (`rnnperturb.deviation`,
# `first_order`, `cell.jacobian`), with mpmath where float64 would blur the
# quadratic convergence $\|e_t - \ell_t\| = O(\|\Delta W\|^2)$.
#
# Run: `python derivations/01_rnn_error_recursion.py [--out DIR]` (headless; the
# plot goes to DIR or a temporary directory).

# %%
import time

import _setup  # noqa: F401  (headless matplotlib; the package from the repository)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import rnnperturb as rp  # noqa: E402
from rnnperturb import symbolic as S  # noqa: E402
from rnnperturb.verified import deviation_mp  # noqa: E402

OUT, _args, T0 = _setup.output_dir("01")

# %% [markdown]
# ## 1. The exact recursion, derived
#
# The symbolic cell has explicit entries (`W_0_1`, ...). $h'_t$ is the step of the
# perturbed cell from $h_{t-1} + e_{t-1}$; its preactivation is
# $W'(h+e) + Ux + b = a + (W'e + \Delta W h)$ — a polynomial identity that sympy
# proves by expansion.

# %%
rec = S.deviation_recursion("elman", 2, 1)
sc = rec.cell
print("a_t     =", list(rec.terms["a"]))
print("delta_t =", list(rec.terms["delta"]))
print("e_t[0]  =", rec.structured[0])
print("proofs:", rec.proofs)
assert rec.proved

# %% [markdown]
# ## 2. First order and the Jacobian, derived from the exact recursion
#
# Scale $e_{t-1} \to \varepsilon\ell_{t-1}$, $\Delta W \to \varepsilon\Delta W$ and
# differentiate at $\varepsilon = 0$. Sympy checks the result equals
# $J\ell_{t-1} + (\partial h_t/\partial W)[\Delta W]$ and that $J = D W$.

# %%
fo = S.first_order_recursion("elman", 2, 1)
print("ell_t[0] =", sp.simplify(fo["ell"][0]))
a = sc.preactivation()
Dmat = sp.diag(*[1 - sp.tanh(v) ** 2 for v in a])
assert fo["proved"]
assert all(sp.simplify(v) == 0 for v in fo["jacobian"] - Dmat * sc.params["W"])
assert all(sp.simplify(v) == 0 for v in fo["forcing"] - Dmat * sc.dW["W"] * sc.h)
print("J = diag(tanh'(a)) W and forcing = diag(tanh'(a)) dW h: proved")

# %% [markdown]
# ## 3. Numerical check: the `lambdify` bridge against the numeric cell

# %%
worst = 0.0
for n, m in [(1, 1), (2, 1), (3, 2), (4, 2)]:
    cell = rp.random_cell("elman", n, m, spectral_norm=2.0, bias_scale=0.5, seed=n)
    rng = np.random.default_rng(n)
    h, x = rng.uniform(-1, 1, (20, n)), 2 * rng.standard_normal((20, m))
    dh, dW = rng.standard_normal((20, n)), {"W": rng.standard_normal((n, n))}
    errJ = np.abs(S.numeric_jacobian("elman", n, m)(cell, h, x) - cell.jacobian(h, x)).max()
    errV = np.abs(S.numeric_jvp("elman", n, m)(cell, h, x, dh, dW) - cell.jvp(h, x, dh, dW)[1]).max()
    other = cell.replace(W=cell.W + 0.1 * dW["W"])
    errE = np.abs(S.numeric_deviation_step("elman", n, m)(cell, h, x, 0.1 * dh, {"W": 0.1 * dW["W"]})
                  - (other.step(h + 0.1 * dh, x) - cell.step(h, x))).max()
    worst = max(worst, errJ, errV, errE)
    print(f"n={n} m={m}: max|J_sym - J| = {errJ:.1e}, max|jvp_sym - jvp| = {errV:.1e}, "
          f"max|e_sym - e| = {errE:.1e}")
assert worst < 1e-13

# %% [markdown]
# ## 4. Iterating the derived recursion reproduces `rnnperturb.deviation`

# %%
n, m, T = 3, 2, 60
cell = rp.random_cell("elman", n, m, spectral_norm=1.5, seed=11)
rng = np.random.default_rng(12)
X = rng.standard_normal((T, m))
dW = 0.02 * rng.standard_normal((n, n))
other = cell.replace(W=cell.W + dW)
H = cell.run(X)
step = S.numeric_deviation_step("elman", n, m)
e, hprev, E = np.zeros(n), np.zeros(n), []
for t in range(T):
    e = step(cell, hprev, X[t], e, {"W": dW})
    hprev = H[t]
    E.append(e)
ref = rp.deviation(cell, other, X)
err = np.abs(np.array(E) - ref).max()
print(f"max |iterated symbolic recursion - rp.deviation| = {err:.1e} (max |e| = {np.abs(ref).max():.2e})")
assert err < 1e-14

# %% [markdown]
# ## 5. First order is exact to $O(\|\Delta W\|^2)$; the Lagrange remainder holds
#
# $\|e_t - \ell_t\|$ over a decade-spaced range of $\|\Delta W\|$: slope 2 on a
# log-log plot. Below $\|\Delta W\| \approx 10^{-6}$ the float64 difference
# $h' - h$ has more rounding than $e - \ell$ itself, so the exact deviation comes
# from mpmath (`rnnperturb.verified.deviation_mp`).
#
# With $\kappa = \sup|\tanh''| = 4/(3\sqrt3)$ (derived in notebook 03), Taylor gives
# $|e_{t,i} - \tanh'(a_{t,i})\delta_{t,i}| \le \tfrac{\kappa}{2}\delta_{t,i}^2$ at every step.

# %%
kappa = float(S.sup_abs_derivative("tanh", 2).value)
n, m, T = 8, 2, 40
cell = rp.random_cell("elman", n, m, spectral_norm=1.2, seed=3)
rng = np.random.default_rng(4)
X = rng.standard_normal((T, m))
D0 = rng.standard_normal((n, n))
D0 /= np.linalg.norm(D0, 2)
scales = 10.0 ** np.arange(-9, -0.5, 1.0)
gap64, gapmp = [], []
for s in scales:
    other = cell.replace(W=cell.W + s * D0)
    L = rp.first_order(cell, other, X)
    gap64.append(np.linalg.norm(rp.deviation(cell, other, X) - L, axis=-1).max())
    gapmp.append(np.linalg.norm(deviation_mp(cell, other, X, dps=40) - L, axis=-1).max())
slope = np.polyfit(np.log10(scales), np.log10(gapmp), 1)[0]
print("scale     max||e-l|| float64   mpmath")
for s, g, gm in zip(scales, gap64, gapmp):
    print(f"{s:8.0e}   {g:12.3e}   {gm:12.3e}")
print(f"log-log slope (mpmath) = {slope:.3f}")
assert abs(slope - 2) < 0.05

# Lagrange remainder along the trajectory at ||dW|| = 0.1
other = cell.replace(W=cell.W + 0.1 * D0)
H, Hp = cell.run(X), other.run(X)
Hprev = np.vstack([np.zeros((1, n)), H[:-1]])
Eprev = np.vstack([np.zeros((1, n)), (Hp - H)[:-1]])
A = Hprev @ cell.W.T + X @ cell.U.T + cell.b
delta = Eprev @ other.W.T + Hprev @ (0.1 * D0).T
rho = (Hp - H) - (1 - np.tanh(A) ** 2) * delta
ratio = np.abs(rho) / (0.5 * kappa * delta ** 2 + 1e-300)
print(f"max |rho| / (kappa/2 delta^2) = {ratio.max():.3f}  (must be <= 1)")
assert ratio.max() <= 1 + 1e-9

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(scales, gap64, "o-", label="float64 deviation")
ax.loglog(scales, gapmp, "s--", label="mpmath deviation")
ax.loglog(scales, gapmp[-1] * (scales / scales[-1]) ** 2, ":", c="gray", label="slope 2")
ax.set_xlabel(r"$\|\Delta W\|_2$")
ax.set_ylabel(r"$\max_t\|e_t - \ell_t\|_2$")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "01_first_order_gap.png", dpi=120)
print("saved", OUT / "01_first_order_gap.png")

# %% [markdown]
# ## 6. Where float64 is visibly wrong, and how the library notices
#
# The recursion propagates rounding errors exactly like the deviation itself.
# In a chaotic net ($\|W\|_2 = 6$, spectral radius ≈ 3.7, n = 16) with
# $\|\Delta W\|_2 = 10^{-15}\|W\|_2$, the rounding noise of the two float64 runs is as
# large as the forcing $\Delta W h$ and grows at the same Lyapunov rate: after 100
# steps the float64 deviation is ten times the true one (mpmath at 50 and 80 digits
# agree). `rnnperturb.verified.check_float64` re-runs the computation with every
# state perturbed by ~1 ulp (Monte Carlo arithmetic), estimates the rounding error
# from the spread and warns.

# %%
import warnings  # noqa: E402

from rnnperturb.verified import check_float64  # noqa: E402

cell = rp.random_cell("elman", 16, 3, spectral_norm=6.0, seed=3)
rng = np.random.default_rng(1)
X = rng.standard_normal((100, 3))
dW = rng.standard_normal((16, 16))
dW *= 1e-15 * np.linalg.norm(cell.W, 2) / np.linalg.norm(dW, 2)
other = cell.replace(W=cell.W + dW)
E64 = rp.deviation(cell, other, X)
E50 = deviation_mp(cell, other, X, dps=50)
E80 = deviation_mp(cell, other, X, dps=80)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    chk = check_float64(cell, other, X)
print(" t   |e| mpmath    |e| float64   |float64 - mpmath|   estimated error   |mp50 - mp80|")
for t in (2, 10, 20, 40, 60, 80, 100):
    print(f"{t:3d}   {np.linalg.norm(E50[t - 1]):.3e}     {np.linalg.norm(E64[t - 1]):.3e}"
          f"     {np.linalg.norm(E64[t - 1] - E50[t - 1]):.3e}          {chk.error[t - 1]:.3e}"
          f"       {np.linalg.norm(E50[t - 1] - E80[t - 1]):.1e}")
print("warning:", caught[0].message if caught else None)
assert caught and issubclass(caught[0].category, RuntimeWarning) and not chk.reliable
assert np.linalg.norm(E64[-1] - E50[-1]) > np.linalg.norm(E50[-1])
assert np.linalg.norm(E50[-1] - E80[-1]) <= 1e-15 * np.linalg.norm(E50[-1])
print(f"notebook 01 done in {time.perf_counter() - T0:.1f} s")
