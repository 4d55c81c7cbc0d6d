"""Figure (d): degradation against temporal coherence (delay D; the repeat-probability knob).

Data from ``validation/exp_coherence.py`` (issue 5): first-order frozen/fresh
noise ratios C_t and the RMS deviation per unit noise std.
"""
from __future__ import annotations

from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from paper_figs._common import CELL_COLOR, CELL_LABEL, plt, save

NAME = "fig_coherence"
EXPERIMENT = "exp_coherence"


def _sorted(rows, key):
    return sorted(rows, key=lambda r: r[key])


def plot(result: dict, out_dir: str) -> list[str]:
    rows = result["rows"]
    mem = [r for r in rows if r["part"] == "memorization"]
    knob = [r for r in rows if r["part"] == "knob"]
    low = [r for r in rows if r["part"] == "low_coherence"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4), sharex="col")
    for cell in ("elman", "mgru"):
        col = CELL_COLOR[cell]
        own = _sorted([r for r in mem if r["cell"] == cell and r["source"] == "own"], "D")
        if own:
            longest = max(own, key=lambda r: r["D"])["checkpoint"]
            same = _sorted([r for r in mem if r["checkpoint"] == longest], "D")
            for ax, key, fresh in ((axes[0, 0], "C", None),
                                   (axes[1, 0], "rms_frozen_per_std", "rms_fresh_per_std")):
                ax.plot([r["D"] for r in own], [r[key] for r in own], "o", color=col, ms=6,
                        mfc="none", mew=1.4)
                ax.plot([r["D"] for r in same], [r[key] for r in same], "-", color=col, lw=1.4)
                if fresh:
                    ax.plot([r["D"] for r in own], [r[fresh] for r in own], "s", color=col,
                            ms=4, alpha=0.6)
                    ax.plot([r["D"] for r in same], [r[fresh] for r in same], ":", color=col)
            axes[0, 0].plot([r["D"] for r in own], [r["C_trunc"] for r in own], "^", color=col,
                            ms=5, alpha=0.8)
        kk = _sorted([r for r in knob if r["cell"] == cell], "repeat")
        if kk:
            p = [r["repeat"] for r in kk]
            axes[0, 1].plot(p, [r["C"] for r in kk], "o-", color=col, lw=1.6)
            axes[0, 1].plot(p, [r["C_pred"] for r in kk], "--", color=col, lw=1)
            axes[0, 1].plot(p, [r["C_scalar_law"] for r in kk], ":", color=col, lw=1.4)
            axes[1, 1].plot(p, [r["rms_frozen_per_std"] for r in kk], "o-", color=col, lw=1.6)
            axes[1, 1].plot(p, [r["rms_fresh_per_std"] for r in kk], "s:", color=col, ms=3)
    for r in low:
        if r["task"] == "kback":
            axes[0, 1].plot([0.0], [r["C"]], "*", color=CELL_COLOR[r["cell"]], ms=9, mec="k",
                            mew=0.4)
    for ax in axes[0]:
        ax.axhline(1, color="0.5", lw=0.7)
        ax.axhline(2, color="0.5", lw=0.7, ls="--")
    axes[0, 0].set_xscale("log")
    axes[0, 0].set_yscale("log")
    axes[1, 0].set_yscale("log")
    axes[1, 1].set_yscale("log")
    for ax in (axes[0, 0], axes[1, 0], axes[1, 1]):
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].xaxis.set_major_formatter(ScalarFormatter())
    lo, hi = axes[0, 0].get_ylim()
    axes[0, 0].set_ylim(min(lo, 0.7), hi * 4)        # room for the legend above the data
    lo, hi = axes[1, 0].get_ylim()
    axes[1, 0].set_ylim(lo, hi * 2.5)
    lo, hi = axes[1, 1].get_ylim()
    axes[1, 1].set_ylim(lo, hi * 1.6)
    axes[0, 0].set_title("memorization: coherence at the recall steps")
    axes[0, 0].set_ylabel(r"$C_t = E_{frozen}\|e_t\|^2 / E_{fresh}\|e_t\|^2$")
    axes[1, 0].set_ylabel("RMS deviation at recall per unit\nnoise std (hidden units / weight units)")
    axes[1, 0].set_xlabel("delay D (steps)")
    axes[0, 1].set_title("k-back mix: coherence knob")
    axes[0, 1].set_ylabel(r"$C_t$ at late steps")
    axes[1, 1].set_ylabel("RMS deviation at late steps per unit\nnoise std (hidden/weight units)")
    axes[1, 1].set_xlabel("repeat probability p of the input symbol")
    cells = [Line2D([], [], color=CELL_COLOR[c], lw=3, label=CELL_LABEL[c]) for c in CELL_COLOR]
    axes[0, 0].legend(handles=cells + [
        Line2D([], [], color="k", marker="o", mfc="none", ls="", label="each net at its own D"),
        Line2D([], [], color="k", label="longest-delay net run at shorter D"),
        Line2D([], [], color="k", marker="^", ls="", label="fixed dW: SVD rank n/2")],
        loc="upper left")
    axes[1, 0].legend(handles=[
        Line2D([], [], color="k", marker="o", mfc="none", ls="-", label="frozen noise"),
        Line2D([], [], color="k", marker="s", ls=":", alpha=0.6, label="fresh noise")],
        loc="upper right")
    axes[0, 1].legend(handles=cells + [
        Line2D([], [], color="k", marker="o", label="measured (first order)"),
        Line2D([], [], color="k", ls="--", label="predicted from the Gram matrix"),
        Line2D([], [], color="k", ls=":", label=r"scalar law $(1+\lambda p)/(1-\lambda p)$"),
        Line2D([], [], color="0.6", marker="*", mec="k", ls="", ms=9,
               label="k-back net (trained at p = 0)")], loc="upper left")
    axes[1, 1].legend(handles=[
        Line2D([], [], color="k", marker="o", label="frozen noise"),
        Line2D([], [], color="k", marker="s", ls=":", ms=3, label="fresh noise")],
        loc="upper left")
    fig.tight_layout()
    cap = ("Temporal coherence and degradation (first order, i.i.d. Gaussian noise on every "
           "recurrent entry; from validation/exp_coherence.py). Top left: frozen/fresh ratio "
           "C_t at the recall steps of 5-bit memorization against the delay D (circles: each "
           "checkpoint at its own D; lines: the longest-delay net run at shorter delays; "
           "triangles: the analogous ratio for a fixed SVD truncation to rank n/2). Bottom "
           "left: RMS deviation at recall per unit noise std, frozen and fresh. Right: the same "
           "for the k-back net trained over repeat probabilities 0-0.9, against the repeat "
           "probability p (coherence knob), with the trajectory-only prediction and the scalar "
           "law; stars: the k-back net trained at p = 0. Grey lines: C = 1 (incoherent) and "
           "C = 2 (transition).")
    return save(fig, out_dir, NAME, cap)


def summary(result: dict) -> dict:
    from validation.exp_coherence import headline
    h = headline(result)
    out = {}
    for k, v in h.items():
        if isinstance(v, dict):
            out[k] = ", ".join(f"{a}: {b}" for a, b in v.items())
        else:
            out[k] = v
    return out


def headline(result: dict) -> dict:
    s = summary(result)
    keep = ("_memorization_C_recall_vs_D", "_kback_C", "_knob_transition_C2_measured",
            "_knob_transition_C2_scalar_law")
    return {f"coherence {k}": v for k, v in s.items() if k.endswith(keep)}
