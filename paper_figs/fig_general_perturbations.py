"""Figure (e): quantization, pruning and weight noise: degradation predicted and measured."""
from __future__ import annotations

from matplotlib.lines import Line2D

from paper_figs._common import plt, rows_where, save

NAME = "fig_general_perturbations"
EXPERIMENT = "exp_general_perturbations"

_LABEL = {"elman_memorization_D20": "tanh RNN, memorization D=20",
          "mgru_memorization_D20": "MGRU, memorization D=20",
          "elman_kback": "tanh RNN, k-back", "mgru_kback": "MGRU, k-back"}
_COLOR = {"elman_memorization_D20": "#1f77b4", "mgru_memorization_D20": "#d95f02",
          "elman_kback": "#7fb7e6", "mgru_kback": "#f2a66b"}


def plot(result: dict, out_dir: str) -> list[str]:
    rows = result["rows"]
    cks = [c for c in _LABEL if rows_where(rows, checkpoint=c)]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.2), sharex="col")
    panels = [("quantize", "bits per weight", False), ("prune", "fraction of entries pruned", False),
              ("noise", r"noise std $s$ per entry (weight units)", True)]
    for j, (kind, xlabel, logx) in enumerate(panels):
        top, bot = axes[0, j], axes[1, j]
        for ck in cks:
            rr = rows_where(rows, checkpoint=ck, kind=kind)
            if kind == "noise":
                rr = [r for r in rr if r["seed"] == "mean"]
            rr = sorted(rr, key=lambda r: r["level"])
            x = [r["level"] for r in rr]
            col = _COLOR[ck]
            top.plot(x, [r["measured_rms"] for r in rr], "o-", color=col, lw=1.8, alpha=0.7)
            if kind != "noise":
                top.plot(x, [r["first_order_rms"] for r in rr], "--", color=col, lw=0.8)
            if "noise_model_rms" in rr[0]:
                top.plot(x, [r["noise_model_rms"] for r in rr], ":", color=col, lw=1.6)
            full = rr[0]["full_perf"]
            bot.plot(x, [100 * r["measured_perf"] / full for r in rr], "o-", color=col, lw=1.8,
                     alpha=0.7)
            if kind != "noise":
                bot.plot(x, [100 * r["first_order_perf"] / full for r in rr], "--", color=col,
                         lw=0.8)
        top.set_yscale("log")
        if logx:
            top.set_xscale("log")
        top.set_title({"quantize": "uniform quantization (per matrix)",
                       "prune": "magnitude pruning", "noise": "frozen Gaussian weight noise"}[kind])
        bot.set_xlabel(xlabel)
        bot.axhline(99, color="0.3", lw=0.8, ls=":")
        bot.set_ylim(-3, 105)
    axes[0, 0].set_ylabel("RMS deviation on scored steps\n(hidden-state units)")
    axes[1, 0].set_ylabel("performance, % of unperturbed")
    handles = [Line2D([], [], color=_COLOR[c], lw=1.8, label=_LABEL[c]) for c in cks]
    handles += [Line2D([], [], color="k", marker="o", lw=1.8, alpha=0.7, label="measured (exact)"),
                Line2D([], [], color="k", ls="--", lw=0.8, label="first order (fixed dW)"),
                Line2D([], [], color="k", ls=":", lw=1.6,
                       label="noise model (noise_response; quantization: var = step^2/12)")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    ns = result["meta"]["n_seeds"]
    cap = ("Degradation under general perturbations of every recurrent matrix. Top: RMS over "
           "scored steps (recall steps for memorization) and sequences of ||h'_t - h_t||_2, log "
           "scale; bottom: task performance as % of the unperturbed net (dotted: 99 %). Solid "
           "with dots: measured by exact simulation (noise: mean over "
           f"{ns} seeds); dashed: first-order prediction for the fixed dW (bottom: read out from "
           "h + l); dotted: first-order mean-square noise model, for quantization with entry "
           "variance step^2/12.")
    return save(fig, out_dir, NAME, cap)


def summary(result: dict) -> dict:
    from validation.exp_general_perturbations import headline
    out = {}
    for ck, d in headline(result).items():
        for k, v in d.items():
            out[f"{ck} {k}"] = v
    return out
