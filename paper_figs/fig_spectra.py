"""Figure (f): singular-value spectra of the trained recurrent matrices."""
from __future__ import annotations

from paper_figs._common import CELL_LABEL, delay_color, plt, rows_where, save

NAME = "fig_spectra"
EXPERIMENT = "exp_spectra"

_TASK_LABEL = {"kback": "k-back", "kback_mix": "k-back (mixed repeat)", "ar_signal": "AR signal"}


def _label(m):
    if m["task"] == "memorization":
        return f"memorization D={m['D']}"
    return _TASK_LABEL.get(m["task"], m["task"])


def plot(result: dict, out_dir: str) -> list[str]:
    rows, mats = result["rows"], result["matrices"]
    panels = [("elman", "W"), ("mgru", "Wf"), ("mgru", "Wh")]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharey=True)
    for ax, (cell, mat) in zip(axes, panels):
        ms = [m for m in mats if m["cell"] == cell and m["matrix"] == mat]
        mem = [m for m in ms if m["task"] == "memorization"]
        other = [m for m in ms if m["task"] != "memorization"]
        cols = [delay_color(m["D"]) for m in mem]
        styles = ["--", ":", "-."]
        for m, col in zip(mem, cols):
            r = rows_where(rows, checkpoint=m["checkpoint"], matrix=mat)
            ax.semilogy([x["index"] for x in r], [x["sigma"] for x in r], "-", color=col,
                        label=_label(m))
        for i, m in enumerate(other):
            r = rows_where(rows, checkpoint=m["checkpoint"], matrix=mat)
            ax.semilogy([x["index"] for x in r], [x["sigma"] for x in r], styles[i % 3],
                        color=f"C{3 + i}", label=_label(m))
        ax.set_title(f"{CELL_LABEL[cell]}: ${mat[0]}_{{{mat[1:] or ''}}}$" if mat != "W"
                     else f"{CELL_LABEL[cell]}: $W$")
        ax.set_xlabel("singular-value index i")
        ax.legend(loc="lower left", ncol=1)
    axes[0].set_ylabel(r"singular value $\sigma_i$ (dimensionless)")
    fig.tight_layout()
    n = mats[0]["n"] if mats else 0
    cap = (f"Singular-value spectra of the recurrent matrices of every shipped checkpoint "
           f"(hidden size n = {n}); log scale. Truncating to rank r removes sigma_(r+1..n): "
           f"||dW||_2 = sigma_(r+1). Memorization nets are coloured by delay D.")
    return save(fig, out_dir, NAME, cap)


def summary(result: dict) -> dict:
    out = {}
    for cell in ("elman", "mgru"):
        ms = [m for m in result["matrices"] if m["cell"] == cell]
        if ms:
            out[f"{cell}: ||W||_2 range over checkpoints"] = (
                f"{min(m['spectral_norm'] for m in ms):.3g}-"
                f"{max(m['spectral_norm'] for m in ms):.3g}")
            out[f"{cell}: 99%-energy rank range (of n={ms[0]['n']})"] = (
                f"{min(m['energy_rank_99'] for m in ms)}-{max(m['energy_rank_99'] for m in ms)}")
    return out
