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
# # 03 — The certified remainder
#
# The certified bound (`rnnperturb.certified_bound`) writes the deviation as its
# first-order part plus a remainder, elementwise
# $\varphi(a+\delta) - \varphi(a) = \varphi'(a)\delta + r_a(\delta)$ for
# $\varphi\in\{\tanh,\sigma\}$. Two bounds on $r$:
#
# * **Lagrange:** $|r_a(\delta)| \le \tfrac12\sup|\varphi''|\,\delta^2$ with the sharp
#   constants $\sup|\tanh''| = 4/(3\sqrt3)$, $\sup|\sigma''| = 1/(6\sqrt3)$,
#   derived here by solving $\varphi''' = 0$;
# * **exact on an interval:** $\max_{\delta\in[lo,hi]}|r_a(\delta)|$ is attained at
#   $lo$, $hi$ or $\delta = -2a$, because $r_a'(\delta) = \varphi'(a+\delta)-\varphi'(a)$
#   vanishes only at $\delta\in\{0, -2a\}$ ($\varphi'$ even, decreasing in $|a|$).
#
# We derive both in sympy, check them against dense sampling, and check the
# library's sound evaluation `rnnperturb.verified.activation.taylor_remainder_max` (the
# bounds module's implementation) against both.

# %%
import time

import _setup  # noqa: F401  (headless matplotlib; the package from the repository)
import matplotlib.pyplot as plt  # noqa: E402
import mpmath  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import rnnperturb as rp  # noqa: E402
from rnnperturb import symbolic as S  # noqa: E402

OUT, _args, T0 = _setup.output_dir("03")

# %% [markdown]
# ## 1. Sharp constants
#
# Every derivative of tanh is a polynomial in $y = \tanh a$:
# $\tanh' = 1-y^2$, $\tanh'' = -2y(1-y^2)$, $\tanh''' = -2(1-y^2)(1-3y^2)$.
# $y$ sweeps $(-1, 1)$ monotonically, so $\sup|\tanh''|$ is at a root of
# $\tanh''' = 0$ inside, $y = \pm1/\sqrt3$, or at the ends (where it is 0):
# $|\tanh''| = 2\cdot\tfrac1{\sqrt3}\cdot\tfrac23 = 4/(3\sqrt3)$. Same for σ with
# $y = \sigma(a)\in(0,1)$, $\sigma' = y(1-y)$.

# %%
table = []
for func in ("tanh", "sigmoid"):
    for k in (1, 2, 3):
        r = S.sup_abs_derivative(func, k)
        table.append((func, k, r))
        print(f"sup|{func}^({k})| = {r.value} = {float(r.value):.15f}   "
              f"P_{k}(y) = {sp.factor(r.polynomial)}   argmax a = {r.argmax}")
kap_t = S.sup_abs_derivative("tanh", 2)
kap_s = S.sup_abs_derivative("sigmoid", 2)
assert sp.simplify(kap_t.value - 4 / (3 * sp.sqrt(3))) == 0
assert sp.simplify(kap_s.value - 1 / (6 * sp.sqrt(3))) == 0
print("the roots of tanh''' = 0 in y:", kap_t.critical_y)

# mpmath maximisation, independent of the polynomial route
with mpmath.workdps(30):
    for func, k, r in table:
        fun = mpmath.tanh if func == "tanh" else (lambda a: 1 / (1 + mpmath.exp(-a)))
        grid = [mpmath.mpf(i) / 20 for i in range(-300, 301)]
        best = max(grid, key=lambda a: abs(mpmath.diff(fun, a, k)))
        x = mpmath.findroot(lambda a: mpmath.diff(fun, a, k + 1), best)
        val = abs(mpmath.diff(fun, x, k))
        print(f"mpmath: sup|{func}^({k})| = {mpmath.nstr(val, 20)} at a = {mpmath.nstr(x, 12)}")
        assert abs(val - mpmath.mpf(sp.N(r.value, 35))) < mpmath.mpf(10) ** -20

# %% [markdown]
# ## 2. The exact interval remainder

# %%
res = {}
for func in ("tanh", "sigmoid"):
    d = S.taylor_remainder_extremum(func)
    res[func] = d
    print(f"{func}: r_a'(delta) = {d['derivative']}")
    print(f"   stationary points delta = {d['stationary']};  r_a(-2a) = {d['value_at_minus_2a']}")
    assert set(d["stationary"]) == {0, -2 * d["a"]}


def exact_interval_remainder(func, a, lo, hi):
    """max over δ in [lo, hi] of |r_a(δ)| from the derivation: ends and -2a."""
    r = sp.lambdify((res[func]["a"], res[func]["delta"]), res[func]["remainder"],
                    modules=S.NUMPY_MODULES)
    cands = [np.abs(r(a, lo)), np.abs(r(a, hi))]
    inside = (lo <= -2 * a) & (-2 * a <= hi)
    cands.append(np.where(inside, np.abs(r(a, np.where(inside, -2 * a, lo))), 0.0))
    return np.max(cands, axis=0), r


# %% [markdown]
# ## 3. Check against dense sampling, and against the library
#
# 2,000 random $(a, [lo, hi])$ per function; each interval sampled at 4,001 points.
# The derived maximum (end points and $-2a$) must match the dense maximum from
# above, to the sampling resolution; the Lagrange bound must lie above it. For the
# library's *sound* evaluation the reference must be free of rounding itself: the
# float64 formula $\varphi(a+\delta)-\varphi(a)-\varphi'(a)\delta$ cancels (relative
# error up to $10^{-10}$ here), so the derived maximum is re-evaluated at the
# three candidates in mpmath (40 digits, $a+\delta$ exact), and the library must
# lie above that and within $10^{-6}$ of it.

# %%
try:
    from rnnperturb.verified.activation import taylor_remainder_max
except ImportError:  # the bounds module may not be there
    taylor_remainder_max = None


def mp_interval_remainder(func, a, lo, hi):
    """The derived maximum evaluated in mpmath at lo, hi and -2a (if inside)."""
    f = mpmath.tanh if func == "tanh" else (lambda x: 1 / (1 + mpmath.exp(-x)))
    out = np.empty(len(a))
    with mpmath.workdps(40):
        for i, (ai, li, hi_) in enumerate(zip(a, lo, hi)):
            A = mpmath.mpf(ai)
            fa = f(A)
            dfa = 1 - fa * fa if func == "tanh" else fa * (1 - fa)
            cands = [mpmath.mpf(li), mpmath.mpf(hi_)]
            if li <= -2 * ai <= hi_:
                cands.append(-2 * A)
            out[i] = float(max(abs(f(A + d) - fa - dfa * d) for d in cands))
    return out


rng = np.random.default_rng(0)
summary = {}
for func in ("tanh", "sigmoid"):
    kappa = float((kap_t if func == "tanh" else kap_s).value)
    N = 2000
    a = rng.uniform(-4, 4, N)
    w = 10.0 ** rng.uniform(-3, 0.7, N)
    c = rng.uniform(-1, 1, N) * w
    lo, hi = c - w, c + w
    exact, r = exact_interval_remainder(func, a, lo, hi)
    grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, 4001)[None, :]
    dense = np.abs(r(a[:, None], grid)).max(axis=1)
    lagr = 0.5 * kappa * np.maximum(lo ** 2, hi ** 2)
    rel_gap = (exact - dense) / dense
    assert rel_gap.min() > -1e-9 and rel_gap.max() < 1e-5
    assert np.all(lagr >= exact * (1 - 1e-9))
    exact_mp = mp_interval_remainder(func, a, lo, hi)
    print(f"  float64 evaluation of the derived max vs mpmath: rel err {np.max(np.abs(exact_mp / exact - 1)):.1e}")
    assert np.max(np.abs(exact_mp / exact - 1)) < 1e-6
    line = (f"{func}: derived max vs dense sampling: rel gap in [{rel_gap.min():.1e}, "
            f"{rel_gap.max():.1e}]; exact/Lagrange median {np.median(exact / lagr):.3f}, "
            f"min {np.min(exact / lagr):.3g}")
    if taylor_remainder_max is not None:
        lib = taylor_remainder_max(func, a, lo, hi)
        assert np.all(lib >= exact_mp)           # sound
        over = np.max(lib / exact_mp - 1)
        line += f"; library/mpmath - 1 in [{np.min(lib / exact_mp - 1):.1e}, {over:.1e}]"
        assert over < 1e-6
    summary[func] = (a, exact, lagr)
    print(line)

# %% [markdown]
# How much the exact interval remainder gains over Lagrange depends on where $a$ is:
# near $|a| = \mathrm{atanh}(1/\sqrt3) \approx 0.66$ (where $|\tanh''|$ peaks) they
# agree for small intervals; at $a = 0$ ($\tanh'' = 0$) and in saturation the exact
# remainder is much smaller.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
for ax, func in zip(axes, ("tanh", "sigmoid")):
    aa = np.linspace(-4, 4, 401)
    for w in (0.05, 0.5, 2.0):
        ex, _ = exact_interval_remainder(func, aa, -w * np.ones_like(aa), w * np.ones_like(aa))
        kappa = float((kap_t if func == "tanh" else kap_s).value)
        ax.plot(aa, ex / (0.5 * kappa * w ** 2), label=f"|δ| ≤ {w}")
    ax.set_title(f"{func}: exact / Lagrange")
    ax.set_xlabel("a")
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "03_remainder_ratio.png", dpi=120)
print("saved", OUT / "03_remainder_ratio.png")
print(f"notebook 03 done in {time.perf_counter() - T0:.1f} s")
