r"""Memory headlines over seeds (issue 14, item 7): the memory table of :mod:`validation.exp_memory`
(Jaeger's capacity MC and the Fisher memory J_tot of the delay linearisation, the finite-time
Lyapunov exponents of the delay propagator) for every n = 64, default-recipe memorization net: the
seed-1 checkpoints and the seed checkpoints of ``validation/checkpoints/seeds`` (``sweep.json``).

Per net: MC and J_tot of the full net, at its kept rank r* (>= 99 % recall, plain SVD) and at
round(r*/2), the recall at r*/2, the largest delay FTLE and the number with
:math:`|\lambda| < 0.01` (full net), all measured by :func:`validation.exp_memory._measure` and
:func:`validation.exp_memory.kept_and_half` (the same code as the seed-1 table; no weight-noise
column). Per (cell, D): mean, sd (ddof = 1), min, max over the nets (:func:`exp_seeds.summarize`).

``python -m validation.exp_memory_seeds --out validation/results`` writes ``memory_seeds.csv`` and
``memory_seeds.json``. ``--quick``: seed-1 nets of D = 20 only. Deterministic.
"""
from __future__ import annotations

import os

import rnnperturb as rp
from validation.exp_memory import EPS, _measure, kept_and_half
from validation.exp_seeds import summarize, sweep_results
from validation.experiments import CELL_LABEL, CHECKPOINT_DIR, cli, load

__all__ = ["run", "headline", "markdown_table", "COLUMNS"]

NAME = "memory_seeds"
COLUMNS = ("MC_full", "MC_kept", "MC_half", "J_full", "J_kept", "J_half", "acc_half", "ftle_max",
           "n_ftle_near_zero")


def _names(quick: bool) -> list[str]:
    cells, delays = ("elman", "mgru", "gru", "lstm"), ((20,) if quick else (10, 20, 50))
    out = [f"{c}_memorization_D{D}" for c in cells for D in delays
           if os.path.exists(os.path.join(CHECKPOINT_DIR, f"{c}_memorization_D{D}.npz"))]
    if quick:
        return out
    return out + ["seeds/" + r["shipped"] for r in sweep_results()
                  if r["hidden"] == 64 and r["recipe"] is None and r["shipped"]
                  and r["D"] in delays]


def _net(name) -> dict:
    cell, meta = load(name)
    L, D = int(meta["L"]), int(meta["D"])
    task = rp.tasks.memorization_all(int(meta["K"]), L, D)
    m0 = _measure(cell, task, L, D, (EPS,))          # only the main noise level is reported
    row = {"checkpoint": name, "cell": cell.kind, "D": D, "seed": int(meta["seed"]),
           "MC_full": m0["MC"], "J_full": m0["J_tot"], "ftle_max": m0["ftle_max"],
           "n_ftle_near_zero": m0["n_ftle_near_zero"]}
    for tag, r, m in kept_and_half(cell, task, L, D):
        key = "kept" if tag == "svd_kept" else "half"
        row[f"rank_{key}"], row[f"MC_{key}"], row[f"J_{key}"] = r, m["MC"], m["J_tot"]
        row[f"acc_{key}"] = m["recall_accuracy"]
    return row


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Per-net rows and per-(cell, D) summaries. ``seed`` is unused (deterministic)."""
    rows = [_net(name) for name in rp.progress(_names(quick), desc=NAME, quiet=quiet)]
    groups = {}
    for row in rows:
        groups.setdefault(f"{row['cell']}|D{row['D']}", []).append(row)
    summary = {k: {"cell": g[0]["cell"], "D": g[0]["D"], "seeds": sorted(r["seed"] for r in g),
                   **{c: summarize([r.get(c) for r in sorted(g, key=lambda r: r["seed"])])
                      for c in COLUMNS}}
               for k, g in groups.items()}
    return {"name": NAME, "rows": rows, "groups": summary,
            "meta": {"quick": quick, "seed": seed, "eps": EPS,
                     "nets": "n = 64, default recipes: seed 1 and the sweep's seeds"}}


def headline(result: dict) -> dict:
    return {k: {c: [round(g[c]["mean"], 3), round(g[c]["sd"], 3)] if g[c].get("n", 0) > 1
                else None for c in ("MC_full", "MC_kept", "MC_half", "J_full", "J_kept")}
            for k, g in sorted(result["groups"].items())}


def markdown_table(result: dict) -> str:
    """The README's memory-over-seeds table: mean ± sd over the nets of each (cell, D)."""
    def ms(s, dec):
        if s.get("sd") is None:                      # one net: no spread
            return f"{s['mean']:.{dec}f}"
        return f"{s['mean']:.{dec}f} ± {s['sd']:.{dec}f}"
    lines = ["| net | nets | MC: full / r* / r*/2 | J_tot: full / r* / r*/2 | recall at r*/2 | "
             "largest FTLE over the delay | FTLEs with abs < 0.01 |",
             "|---|---|---|---|---|---|---|"]
    order = sorted(result["groups"].values(),
                   key=lambda g: (list(CELL_LABEL).index(g["cell"]), g["D"]))
    for g in order:
        lines.append(
            f"| {CELL_LABEL[g['cell']]} D = {g['D']} | {len(g['seeds'])} | "
            + " / ".join(ms(g[c], 2) for c in ("MC_full", "MC_kept", "MC_half")) + " | "
            + " / ".join(ms(g[c], 0) for c in ("J_full", "J_kept", "J_half")) + " | "
            + f"{ms(g['acc_half'], 2)} | {ms(g['ftle_max'], 3)} | "
            + f"{ms(g['n_ftle_near_zero'], 1)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import sys
    return cli(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
