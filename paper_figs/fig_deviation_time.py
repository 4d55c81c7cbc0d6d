"""Figure (b): deviation over time on memorization checkpoints: exact, first order, bound."""
from __future__ import annotations

import math

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from paper_figs._common import CELL_COLOR, CELL_LABEL, plt, rows_where, save

NAME = "fig_deviation_time"
EXPERIMENT = "exp_deviation_time"


def _pick_delay(rows):
    """The largest delay shipped for both cells (else the largest of any)."""
    by = {c: {r["D"] for r in rows if r["cell"] == c} for c in ("elman", "mgru")}
    common = by["elman"] & by["mgru"]
    return max(common) if common else max(by["elman"] | by["mgru"])


def plot(result: dict, out_dir: str) -> list[str]:
    rows = result["rows"]
    D = _pick_delay(rows)
    ranks = result["meta"]["ranks"]
    cells = [c for c in ("elman", "mgru") if rows_where(rows, cell=c, D=D)]
    fig, axes = plt.subplots(len(cells), len(ranks), figsize=(3.2 * len(ranks), 2.7 * len(cells)),
                             sharex=True, sharey=True, squeeze=False)
    have_bound = result["meta"]["certified_bound_available"]
    ymin = math.inf
    for i, cell in enumerate(cells):
        for j, r in enumerate(ranks):
            ax = axes[i, j]
            # e_1 = 0 exactly (h_0 = 0 and the inputs are unchanged): start at t = 2
            rr = sorted((x for x in rows_where(rows, cell=cell, D=D, rank=r) if x["t"] >= 2),
                        key=lambda x: x["t"])
            t = [x["t"] for x in rr]
            rec = [x["t"] for x in rr if x["recall"]]
            ax.axvspan(rec[0] - 0.5, rec[-1] + 0.5, color="0.88", lw=0)
            col = CELL_COLOR[cell]
            ax.semilogy(t, [x["exact_max"] for x in rr], "-", color=col, lw=2.2, alpha=0.55)
            ax.semilogy(t, [x["exact_median"] for x in rr], "-", color=col, lw=0.9, alpha=0.55)
            ax.semilogy(t, [x["first_order_max"] for x in rr], "--", color="k", lw=1.0)
            ax.semilogy(t, [x["first_order_median"] for x in rr], "--", color="k", lw=0.6)
            if have_bound:
                ax.semilogy(t, [x["bound_max"] for x in rr], ":", color="C3", lw=1.6)
            ax.set_title(f"{CELL_LABEL[cell]}, D={D}, rank {r} of {rr[0]['n']}")
            ymin = min(ymin, min(x["exact_median"] for x in rr))
            ax.set_ylim(None, 2 * math.sqrt(rr[0]["n"]) * 1.5)
            ax.axhline(2 * math.sqrt(rr[0]["n"]), color="0.5", lw=0.6, ls="-.")
        axes[i, 0].set_ylim(max(ymin * 0.5, 1e-8), None)
        axes[i, 0].set_ylabel(r"$\|h'_t - h_t\|_2$ (hidden-state units)")
    for ax in axes[-1]:
        ax.set_xlabel("time step t")
    handles = [Line2D([], [], color="0.4", lw=2.2, alpha=0.6, label="exact, max over 32 seq."),
               Line2D([], [], color="0.4", lw=0.9, alpha=0.6, label="exact, median"),
               Line2D([], [], color="k", ls="--", lw=1.0, label="first order, max"),
               Line2D([], [], color="k", ls="--", lw=0.6, label="first order, median")]
    if have_bound:
        handles.append(Line2D([], [], color="C3", ls=":", lw=1.6, label="certified bound, max"))
    handles += [Line2D([], [], color="0.5", ls="-.", lw=0.6, label=r"trivial cap $2\sqrt{n}$"),
                Patch(color="0.88", label="recall window")]
    fig.legend(handles=handles, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.01),
               frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    cap = (f"Deviation of the hidden state caused by plain SVD truncation of the recurrent "
           f"matrices (both MGRU matrices at the same rank), on all 32 sequences of 5-bit "
           f"memorization with delay D = {D}; log scale. Thick/thin solid: max/median over "
           f"sequences of the exact deviation; dashed: first-order (tangent-linear) prediction; "
           + ("dotted red: certified upper bound, tight tier (max over sequences; where it "
              "is hidden under the thick line it coincides with the exact maximum to within "
              "the line width); " if have_bound else
              "(certified bound not available in this build); ")
           + "grey band: recall steps; dash-dotted: the trivial cap 2 sqrt(n). "
           "The data for the other delays are in data/deviation_time.csv.")
    return save(fig, out_dir, NAME, cap)


def summary(result: dict) -> dict:
    out = {}
    for q in result["ratios"]:
        k = f"{q['checkpoint']} r={q['rank']} recall"
        out[f"{k}: median first-order/exact"] = q["median_fo_over_exact"]
        out[f"{k}: median bound/exact"] = q["median_bound_over_exact"]
    return out
