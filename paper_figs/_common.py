"""Shared figure plumbing: style, colours, and saving PNG + PDF with a caption sidecar.

Figures only plot: every number they show comes from a ``validation.exp_*``
result (tidy rows), computed by the library.
"""
from __future__ import annotations

import logging
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# fontTools warns about the fixed (zero) font timestamps of TrueType subsetting
logging.getLogger("fontTools").setLevel(logging.ERROR)

__all__ = ["plt", "style", "save", "CELL_COLOR", "CELL_LABEL", "rows_where", "sequential",
           "delay_color"]

CELL_COLOR = {"elman": "#1f77b4", "mgru": "#d95f02"}
CELL_LABEL = {"elman": "tanh RNN", "mgru": "MGRU"}


def style() -> None:
    """A compact, print-friendly style (call before creating figures)."""
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 160, "font.size": 9, "axes.titlesize": 9.5,
        "axes.labelsize": 9, "legend.fontsize": 7.5, "xtick.labelsize": 8, "ytick.labelsize": 8,
        "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.4,
        "lines.markersize": 3.5, "legend.framealpha": 0.85, "axes.spines.top": False,
        "axes.spines.right": False, "savefig.bbox": "tight", "pdf.fonttype": 42,
        "svg.hashsalt": "rnnperturb",
    })


def sequential(k: int, cmap: str = "viridis", lo: float = 0.0, hi: float = 0.85):
    """``k`` colours along a colour map (ordered quantities such as delay or rank)."""
    cm = plt.get_cmap(cmap)
    if k == 1:
        return [cm(lo)]
    return [cm(lo + (hi - lo) * i / (k - 1)) for i in range(k)]


_DELAYS = (10, 20, 50, 100)


def delay_color(D: int):
    """Fixed colour per memorization delay, the same in every figure."""
    cols = sequential(len(_DELAYS), "viridis")
    if D in _DELAYS:
        return cols[_DELAYS.index(D)]
    return "0.4"


def rows_where(rows, **cond):
    """Rows whose fields equal every ``key=value`` in ``cond``."""
    return [r for r in rows if all(r.get(k) == v for k, v in cond.items())]


def save(fig, out_dir: str, name: str, caption: str) -> list[str]:
    """Save ``fig`` as ``name.png`` and ``name.pdf`` (fixed metadata, so reruns
    give the same files where the backends allow) and the caption as
    ``name.txt``; closes the figure. Returns the three paths."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, name)
    fig.savefig(base + ".png", metadata={"Software": None})
    fig.savefig(base + ".pdf", metadata={"CreationDate": None, "Creator": None,
                                         "Producer": None})
    with open(base + ".txt", "w") as fh:
        fh.write(caption.strip() + "\n")
    plt.close(fig)
    return [base + ".png", base + ".pdf", base + ".txt"]
