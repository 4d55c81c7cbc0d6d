"""Figure (a): task performance against retained rank, without fine tuning."""
from __future__ import annotations

from matplotlib.lines import Line2D

from paper_figs._common import CELL_LABEL, delay_color, plt, rows_where, save

NAME = "fig_rank_performance"
EXPERIMENT = "exp_rank_performance"

_OTHER = [("kback", "own", "k-back, repeat 0", "C3"),
          ("kback_mix", "repeat=0.0", "k-back mix @ repeat 0", "C4"),
          ("kback_mix", "repeat=0.9", "k-back mix @ repeat 0.9", "C5"),
          ("ar_signal", "own", "AR(1) denoising ($R^2$)", "C6")]
_METHOD_LS = {"svd": "-", "data": "--"}


def _curve(ax, rr, color, ls, label):
    rr = sorted(rr, key=lambda r: r["rank"])
    ax.plot([r["rank"] for r in rr], [100 * r["relative"] for r in rr], ls, color=color,
            label=label)


def plot(result: dict, out_dir: str) -> list[str]:
    rows = result["rows"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2), sharex="col")
    n = rows[0]["n"]
    for i, cell in enumerate(("elman", "mgru")):
        ax = axes[i, 0]
        mem = sorted({r["D"] for r in rows if r["cell"] == cell and r["task"] == "memorization"})
        for D in mem:
            for me in ("svd", "data"):
                rr = rows_where(rows, cell=cell, task="memorization", D=D, method=me)
                _curve(ax, rr, delay_color(D), _METHOD_LS[me], f"D={D}" if me == "svd" else None)
        ax.set_title(f"{CELL_LABEL[cell]}: 5-bit memorization (32 sequences, exact)")
        ax = axes[i, 1]
        for task, ev, lab, col in _OTHER:
            for me in ("svd", "data"):
                rr = rows_where(rows, cell=cell, task=task, eval=ev, method=me)
                if rr:
                    _curve(ax, rr, col, _METHOD_LS[me], lab if me == "svd" else None)
        ax.set_title(f"{CELL_LABEL[cell]}: low-coherence tasks (fresh sequences)")
    style_handles = [Line2D([], [], color="k", ls="-", label="plain SVD"),
                     Line2D([], [], color="k", ls="--", label="data-aware SVD")]
    for ax in axes[:, 1]:      # the low-coherence tasks break down only at ranks < 10
        ax.set_xscale("symlog", linthresh=2, linscale=0.5)
        ticks = [0, 1, 2, 4, 8, 16, 32, 64]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.set_xlim(-0.2, n * 1.05)
        ax.set_ylim(0, 103)
    for ax in axes[:, 0]:
        ax.set_ylim(35, 103)      # chance is 50 % per recall step
    for ax in axes.ravel():
        ax.axhline(99, color="0.3", lw=0.8, ls=":")
        h, lab = ax.get_legend_handles_labels()
        ax.legend(h + style_handles, lab + [s.get_label() for s in style_handles],
                  loc="lower right", ncol=1)
    for ax in axes[1]:
        ax.set_xlabel(f"retained rank r (of n = {n}; both MGRU matrices)")
    axes[1, 1].set_xlabel(f"retained rank r (of n = {n}; symmetric-log axis)")
    for ax in axes[:, 0]:
        ax.set_ylabel("performance, % of the full-rank net")
    fig.tight_layout()
    cap = ("Task performance of truncated networks without any retraining, as a percentage of the "
           "untruncated network's: recall accuracy over the 5 recall steps of all 32 sequences "
           "(memorization), per-step accuracy on fresh sequences (k-back), R^2 = 1 - NMSE (AR "
           "signal). Solid: plain SVD; dashed: data-aware SVD fitted on a separate sample of "
           "task inputs. Dotted line: 99 %. The k-back mix net (trained on repeat probabilities "
           "0-0.9) is evaluated at repeat 0 (incoherent input) and 0.9 (coherent input). Right "
           "column: symmetric-log rank axis (linear below 2), y from 0 (k-back chance is 25 %).")
    return save(fig, out_dir, NAME, cap)


def summary(result: dict) -> dict:
    from validation.exp_rank_performance import headline, kept_ranks
    out = {}
    n = result["rows"][0]["n"]
    for k in kept_ranks(result):
        lab = k["checkpoint"] + ("" if k["eval"] == "own" else f"@{k['eval']}")
        out[f"kept rank >=99% {lab} ({k['method']}, of n={n})"] = k["kept_rank"]
    for k, v in headline(result)["coherence_ratio"].items():
        out[f"ratio {k}"] = v
    return out


def headline(result: dict) -> dict:
    """The few numbers quoted first: kept rank per task (plain SVD / data-aware SVD)
    and the coherence ratios of kept rank."""
    from validation.exp_rank_performance import headline as h, kept_ranks
    kr = {(k["checkpoint"], k["eval"], k["method"]): k["kept_rank"] for k in kept_ranks(result)}
    n = result["rows"][0]["n"]
    out = {}
    for (ck, ev, me), v in kr.items():
        if me != "svd":
            continue
        lab = ck + ("" if ev == "own" else f"@{ev}")
        out[f"kept rank >=99% {lab} (plain/data-aware SVD, of n={n})"] = (
            f"{v}/{kr.get((ck, ev, 'data'))}")
    for k, v in h(result)["coherence_ratio"].items():
        if "memorization" in k:
            out[f"ratio {k}"] = v
    return out
