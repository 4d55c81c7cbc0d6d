"""Figure (g): what 'without fine tuning' gives up: truncated nets retrained at fixed rank."""
from __future__ import annotations

from matplotlib.lines import Line2D

from paper_figs._common import CELL_COLOR, CELL_LABEL, plt, rows_where, save, sequential

NAME = "fig_finetune"
EXPERIMENT = "exp_finetune"


def plot(result: dict, out_dir: str) -> list[str]:
    rows = result["rows"]
    meta = result["meta"]
    steps, D = meta["steps"], meta["D"]
    ranks = sorted({r["rank"] for r in rows})
    cols = sequential(len(ranks), "plasma", 0.0, 0.8)
    cells = [c for c in ("elman", "mgru") if rows_where(rows, cell=c)]
    fig, axes = plt.subplots(1, len(cells) + 1, figsize=(3.7 * (len(cells) + 1), 3.4))
    n = rows[0]["n"]
    for ax, cell in zip(axes, cells):
        for r, col in zip(ranks, cols):
            rr = sorted(rows_where(rows, cell=cell, rank=r), key=lambda x: x["step"])
            ax.plot([x["step"] for x in rr], [100 * x["perf"] for x in rr], "o-", color=col,
                    label=f"rank {r}")
        ax.axhline(100 * rr[0]["full_perf"], color="0.3", ls=":", lw=0.8)
        ax.set_title(f"{CELL_LABEL[cell]}, memorization D={D}")
        ax.set_xlabel("projected-Adam steps (batch 64)")
        ax.set_ylabel("recall steps correct (%)")
        ax.set_ylim(-3, 103)
        ax.legend(loc="lower right")
    ax = axes[-1]
    for cell in cells:
        for step, ls, lab in ((0, "--", "truncated only"), (steps, "-", f"after {steps} steps")):
            rr = sorted(rows_where(rows, cell=cell, step=step), key=lambda x: x["rank"])
            ax.plot([x["rank"] for x in rr], [100 * x["perf"] for x in rr], ls, marker="o",
                    color=CELL_COLOR[cell])
    ax.set_xlabel(f"retained rank r (of n = {n})")
    ax.set_ylabel("recall steps correct (%)")
    ax.set_title("with and without fine tuning")
    ax.set_ylim(-3, 103)
    handles = [Line2D([], [], color=CELL_COLOR[c], label=CELL_LABEL[c]) for c in cells]
    handles += [Line2D([], [], color="k", ls="--", label="truncated only"),
                Line2D([], [], color="k", ls="-", label=f"fine-tuned {steps} steps")]
    ax.legend(handles=handles, loc="lower right")
    fig.tight_layout()
    cap = (f"Fine-tuned baseline. Memorization nets (delay D = {D}) truncated by plain SVD to "
           f"rank r and then retrained by projected Adam (lr {meta['lr']}, batch "
           f"{meta['batch']}, fresh sequences; every parameter trained, each recurrent matrix "
           "projected back onto rank r after every step). Recall accuracy on all 32 sequences; "
           "step 0 is the truncated net without fine tuning; dotted: the untruncated net. "
           "Right: accuracy against rank before and after fine tuning.")
    return save(fig, out_dir, NAME, cap)


def summary(result: dict) -> dict:
    from validation.exp_finetune import headline
    out = {}
    for k, d in headline(result).items():
        a, b = list(d.values())
        out[f"{k} recall: truncated -> fine-tuned"] = f"{a:.3f} -> {b:.3f}"
    return out


def headline(result: dict) -> dict:
    return summary(result)
