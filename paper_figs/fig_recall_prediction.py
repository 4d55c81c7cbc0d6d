"""Figure (c): predicted (first order, certified lower bound) against measured recall accuracy."""
from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from paper_figs._common import CELL_COLOR, CELL_LABEL, delay_color, plt, rows_where, save

NAME = "fig_recall_prediction"
EXPERIMENT = "exp_recall_prediction"


def plot(result: dict, out_dir: str) -> list[str]:
    rows = result["rows"]
    have_cert = result["meta"]["certified_available"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2))
    n = rows[0]["n"]
    for ax, cell in zip(axes[:2], ("elman", "mgru")):
        for D in sorted({r["D"] for r in rows if r["cell"] == cell}):
            rr = sorted(rows_where(rows, cell=cell, D=D), key=lambda r: r["rank"])
            rk = [r["rank"] for r in rr]
            col = delay_color(D)
            ax.plot(rk, [100 * r["measured"] for r in rr], "-", color=col, lw=2, alpha=0.6,
                    label=f"D={D}")
            ax.plot(rk, [100 * r["predicted"] for r in rr], "--", color=col, lw=1)
            rc = [r for r in rr if np.isfinite(r["certified"])]
            if have_cert and rc:
                ax.plot([r["rank"] for r in rc], [100 * r["certified"] for r in rc], ":",
                        marker="v", ms=3.5, color=col, lw=1.2)
        ax.set_title(f"{CELL_LABEL[cell]}: recall accuracy vs rank")
        ax.set_xlabel(f"retained rank r (of n = {n})")
        ax.set_ylabel("recall steps correct (%)")
        ax.set_ylim(-3, 103)
    Ds = sorted({r["D"] for r in rows})
    handles = [Line2D([], [], color=delay_color(D), lw=2, label=f"D={D}") for D in Ds]
    handles += [Line2D([], [], color="k", lw=2, alpha=0.6, label="measured"),
                Line2D([], [], color="k", ls="--", lw=1, label="first order")]
    if have_cert:
        handles.append(Line2D([], [], color="k", ls=":", marker="v", ms=3.5, lw=1.2,
                              label="certified (lower bound)"))
    ax = axes[2]
    ax.plot([0, 100], [0, 100], color="0.5", lw=0.8)
    for cell in ("elman", "mgru"):
        rr = rows_where(rows, cell=cell)
        ax.scatter([100 * r["measured"] for r in rr], [100 * r["predicted"] for r in rr], s=9,
                   color=CELL_COLOR[cell], alpha=0.6, lw=0, label=f"{CELL_LABEL[cell]}, first order")
        rr = [r for r in rr if np.isfinite(r["certified"])]
        if have_cert and rr:
            ax.scatter([100 * r["measured"] for r in rr], [100 * r["certified"] for r in rr], s=9,
                       marker="x", color=CELL_COLOR[cell], alpha=0.6, lw=0.8,
                       label=f"{CELL_LABEL[cell]}, certified")
    err = np.abs([r["predicted"] - r["measured"] for r in rows])
    ax.set_title(f"all ranks and delays (MAE {100 * err.mean():.1f} points)")
    ax.set_xlabel("measured recall accuracy (%)")
    ax.set_ylabel("predicted recall accuracy (%)")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    sh, sl = ax.get_legend_handles_labels()      # scatter entries go below, not on the data
    fig.legend(handles=handles + sh, labels=[h.get_label() for h in handles] + sl,
               loc="lower center", ncol=6, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.11, 1, 1))
    cap = ("Recall accuracy of SVD-truncated memorization nets (all 32 sequences, 5 recall steps "
           "each) against retained rank: measured (thick), predicted by reading out the "
           "first-order states h_t + l_t (dashed)"
           + (", and the certified lower bound from the certified deviation bound (tight tier) "
              "and the readout margins (dotted with triangles, on a coarser rank grid; it must "
              "never exceed the measured accuracy)" if have_cert else
              " (certified lower bound not available in this build)")
           + ". Right: predicted against measured over all ranks and delays; the grey line is "
           "equality. Chance is 50 % per recall step; a destroyed net answers 'blank' and scores 0 %.")
    return save(fig, out_dir, NAME, cap)


def summary(result: dict) -> dict:
    from validation.exp_recall_prediction import headline
    h = headline(result)
    out = {k: v for k, v in h.items() if k != "safe_ranks"}
    for ck, d in h["safe_ranks"].items():
        for k, v in d.items():
            out[f"{ck} {k}"] = v
    return out


def headline(result: dict) -> dict:
    from validation.exp_recall_prediction import headline as h
    d = h(result)
    keys = ("first_order_mae", "first_order_mae_where_measured_ge_0.9",
            "first_order_agreement_mean", "certified_violations", "certified_mean_gap")
    out = {f"recall fit: {k}": d[k] for k in keys if k in d}
    return out
