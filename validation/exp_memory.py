r"""Linear memory of the trained memorization nets under truncation and noise
(issue 5, Part 3).

For every memorization checkpoint (all 32 sequences of the 5-bit task) the
net is linearised about its blank-delay trajectory
(:func:`rnnperturb.stats.memory.delay_linearisation`): :math:`A` is the mean step
Jacobian over the delay steps L+1..L+D and all sequences; :math:`v` is the mean
input Jacobian along the symbol-difference direction
:math:`d = (e_1 - e_0)/\sqrt 2` (the two symbol channels), at the same states
with the blank input (``v``, the literal linearisation of the delay) and,
second choice, at the data steps 1..L where the symbols actually enter
(``v_data``, columns ``*_vdata``: write at the data steps, hold through A).
Over the horizon :math:`K = L + D + 1` (first symbol to
trigger; the Gramians are finite sums, so :math:`\rho(A)\ge 1` is allowed) we
report, for state noise :math:`\varepsilon` (``EPS``):

* Jaeger's capacity ``MC`` (whole horizon) and ``MC_task``, the sum of
  :math:`r_k^2` over the delays :math:`k\in[D+1, D+L]` at which the five
  symbols sit when the trigger arrives;
* the Fisher memory ``J_tot`` and ``J_task`` (same window);
* the spectral radius :math:`\rho(A)` and spectral norm :math:`\|A\|_2`, the
  relative spread of the step Jacobians around :math:`A`, the mean MGRU gate
  during the delay, and the mean forcing gain :math:`\|B_k\|_F/\sqrt n` of
  every recurrent matrix during the delay (how strongly a weight error forces
  the state there; the gate shields the MGRU when it is small).

The same is measured after plain SVD truncation of every recurrent matrix to
rank r (``rp.truncate_svd``), re-linearised about the truncated net's own
delay trajectory, with the truncated net's recall accuracy; and under frozen
Gaussian weight noise of std :math:`\alpha\|W\|_2/\sqrt n` per entry (3 draws per
level, means).

Memory headlines (issue 14, item 7). Every measurement also carries the
finite-time Lyapunov exponents of the delay propagator :math:`\Phi(L+D, L)`
of each sequence (:func:`rnnperturb.stats.memory.finite_time_lyapunov`, QR
method, :math:`\tau = D`): ``ftle_max`` (median over the 32 sequences of the
largest exponent), ``ftle_max_max`` (largest over the sequences),
``ftle_sum`` (median of the sum, :math:`\tfrac1D\log|\det\Phi|`) and
``n_ftle_near_zero`` (median number of exponents with :math:`|\lambda| < 0.01`,
the memory modes that neither grow nor decay over the delay). Rows with
``perturbation`` ``svd_kept`` / ``svd_half_kept`` truncate to the kept rank
r* (smallest rank from which on every plain-SVD rank recalls >= 99 % of the
bits, ``validation.exp_truncation.kept``, scanned down from n to the first failure) and to
round(r*/2); ``noise_1e-2`` is the mean over 3 seeded ``rp.weight_noise``
draws of std :math:`10^{-2}\|W\|_2/\sqrt n` per matrix (the linearisation of
the noisy net, first order in the weight error). ``headline()["memory_table"]``
gives per checkpoint {MC, J_tot, ftle_max, n_ftle_near_zero} x {full, kept,
half, noise}.

``python -m validation.exp_memory --out DIR [--quick]`` writes ``memory.csv``
and ``memory.json`` (about 1.5 min for the full run). Deterministic (fixed seeds).
"""
from __future__ import annotations

import zlib

import numpy as np

import rnnperturb as rp
from rnnperturb.stats.memory import delay_linearisation, finite_time_lyapunov, linear_memory
from rnnperturb.perturb.low_rank import truncate_svd
from validation.experiments import CELL_LABEL, checkpoint_names, cli, load
from validation.exp_truncation import kept

NAME = "memory"
EPS = 1e-2          # state-noise variance of the Fisher curve / capacity (main value)
EPS_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
NEAR_ZERO = 0.01    # |FTLE| below this: a memory mode (neither grows nor decays over the delay)
NOISE_REL = 1e-2    # weight noise std / (||W||_2 / sqrt(n)) of the memory-headline rows
NOISE_DRAWS = 3


def _seed_tag(kind: str) -> int:
    """The seed stream of a cell's noise draws: a label (0 Elman, 1 MGRU, as
    in the shipped results; a CRC of the name for any other cell)."""
    return {"elman": 0, "mgru": 1}.get(kind, zlib.crc32(kind.encode()) + 2)


def _delay_stats(cell, X, steps):
    """Mean forcing gain ||B_k||_F / sqrt(n) per recurrent matrix over the given
    1-based steps; for the MGRU also per-unit mean gates, and the gains of the
    rows of the closed-gate units (mean f < 0.05) against the other rows (the gate
    is the cell's :meth:`~rnnperturb.cells.Cell.overwrite_gate`; none for Elman)."""
    h = np.zeros((X.shape[1], cell.state_size))
    gains = {k: [] for k in cell.recurrent_names}
    rows2 = {k: [] for k in cell.recurrent_names}          # squared row norms (B, n)
    gates = []
    want = set(int(s) for s in steps)
    for t in range(1, max(want) + 1):
        hn, _, forc = cell.linearise(h, X[t - 1])
        if t in want:
            for k, (diag, Bt, _) in forc.items():
                r2 = Bt ** 2 if diag else np.sum(Bt ** 2, axis=2)
                rows2[k].append(r2)
                gains[k].append(np.sqrt(r2.sum(1)) / np.sqrt(cell.n))
            gate = cell.overwrite_gate(cell.nominal(h, X[t - 1])[1])
            if gate is not None:
                gates.append(gate)
        h = hn
    out = {f"forcing_gain_{k}": float(np.mean(v)) for k, v in gains.items()}
    if gates:
        fu = np.mean(gates, axis=(0, 1))                      # per-unit mean gate
        closed = fu < 0.05
        out["gate_frac_closed"] = float(np.mean(closed))      # units that hold (f < 0.05)
        out["gate_frac_open"] = float(np.mean(fu > 0.95))     # units that overwrite
        out["gate_median"] = float(np.median(fu))
        for k, v in rows2.items():
            rr = np.sqrt(np.mean(np.concatenate(v), axis=0))  # RMS row gain per state row
            if rr.shape[0] != closed.shape[0]:
                # a state larger than the gated units (the LSTM's [h, c]): no unit-to-row map
                out[f"row_gain_closed_{k}"] = out[f"row_gain_other_{k}"] = np.nan
                continue
            out[f"row_gain_closed_{k}"] = float(np.mean(rr[closed])) if closed.any() else np.nan
            out[f"row_gain_other_{k}"] = float(np.mean(rr[~closed])) if (~closed).any() else np.nan
    return out


def _per_sequence(cell, X, steps):
    """Per sequence: spectral radius of its own mean delay Jacobian, and the
    spectral norm of the exact delay propagator Phi(L+D, L) (product of the
    step Jacobians over the delay); medians over the sequences."""
    B = X.shape[1]
    N = cell.state_size
    h = np.zeros((B, N))
    Phi = np.broadcast_to(np.eye(N), (B, N, N)).copy()
    Jsum = np.zeros((B, N, N))
    want = set(int(s) for s in steps)
    for t in range(1, max(want) + 1):
        hn, J, _ = cell.linearise(h, X[t - 1])
        if t in want:
            Phi = J @ Phi
            Jsum += J
        h = hn
    rho = [float(np.max(np.abs(np.linalg.eigvals(Jb / len(want))))) for Jb in Jsum]
    nrm = np.linalg.norm(Phi, 2, axis=(1, 2))
    return {"rho_A_per_seq_median": float(np.median(rho)),
            "phi_delay_norm_median": float(np.median(nrm)),
            "phi_delay_norm_min": float(np.min(nrm))}


def _ftle(cell, X, steps):
    """Finite-time Lyapunov exponents of the delay propagator of every sequence
    (tau = len(steps)): median largest exponent, largest over the sequences,
    median sum and median number of exponents within NEAR_ZERO of 0."""
    lam = finite_time_lyapunov(cell, X, steps=steps)[-1]           # (B, n), decreasing
    return {"ftle_max": float(np.median(lam[:, 0])), "ftle_max_max": float(lam[:, 0].max()),
            "ftle_sum": float(np.median(lam.sum(1))),
            "n_ftle_near_zero": float(np.median(np.sum(np.abs(lam) < NEAR_ZERO, axis=1)))}


def _recall_accuracy(cell, task):
    Y = cell.readout(cell.run(task.X))
    ok = np.argmax(Y, -1) == task.targets
    return float(ok[task.recall].mean())


def _measure(cell, task, L, D, eps_grid):
    delay = np.arange(L + 1, L + D + 1)
    data = np.arange(1, L + 1)
    d = np.zeros(cell.m)
    d[0], d[1] = -1 / np.sqrt(2), 1 / np.sqrt(2)
    dl = delay_linearisation(cell, task.X, delay, d)
    v_data = delay_linearisation(cell, task.X, data, d).v
    K = L + D + 1
    win = np.arange(D + 1, D + L + 1)
    eig = np.abs(np.linalg.eigvals(dl.A))
    out = {"rho_A": float(eig.max()), "n_slow_modes": int(np.sum(eig > 0.99)),
           "norm2_A": float(np.linalg.norm(dl.A, 2)), "norm_v": float(np.linalg.norm(dl.v)),
           "norm_v_data": float(np.linalg.norm(v_data)),
           "jacobian_spread": dl.jacobian_spread,
           "gate_mean_delay": np.nan if dl.gate_mean is None else dl.gate_mean,
           "recall_accuracy": _recall_accuracy(cell, task)}
    out.update(_delay_stats(cell, task.X, delay))
    out.update(_per_sequence(cell, task.X, delay))
    out.update(_ftle(cell, task.X, delay))
    for eps in eps_grid:
        tag = "" if eps == EPS else f"_eps{eps:g}"
        for vname, v in (("", dl.v), ("_vdata", v_data)):
            lm = linear_memory(dl.A, v, noise=eps, horizon=K)
            out["MC" + vname + tag] = lm.capacity
            out["MC_task" + vname + tag] = float(lm.r2[win].sum())
            out["J_tot" + vname + tag] = lm.fisher_total
            out["J_task" + vname + tag] = float(lm.fisher[win].sum())
    out["A"] = dl.A                         # kept for the A-change column, dropped from rows
    return out


def _row(base, m, A0):
    row = dict(base)
    A = m.pop("A")
    row["dA_rel"] = float(np.linalg.norm(A - A0, 2) / np.linalg.norm(A0, 2))
    row.update(m)
    return row


def kept_and_half(cell, task, L: int, D: int) -> list:
    """``[(tag, rank, measurement)]`` at the kept rank r* (``'svd_kept'``) and at round(r*/2)
    (``'svd_half_kept'``); empty if the full net itself is below 99 % recall. r* comes from a
    downward scan to the first failing rank (the same r* as ``kept()`` over all ranks)."""
    ranks, oks = [], []
    for r in range(cell.n, -1, -1):
        ranks.append(r)
        oks.append(_recall_accuracy(truncate_svd(cell, rank=r), task) >= 0.99)
        if not oks[-1]:
            break
    r_kept = kept(ranks, oks)
    if r_kept is None:
        return []
    return [(tag, r, _measure(truncate_svd(cell, rank=r), task, L, D, (EPS,)))
            for tag, r in (("svd_kept", r_kept), ("svd_half_kept", int(round(r_kept / 2))))]


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    rows = []
    names = checkpoint_names(task="memorization")
    fracs = (1.0, 0.5, 0.25) if quick else (1.0, 0.75, 0.5, 0.375, 0.25, 0.125)
    alphas = (0.03,) if quick else (0.01, 0.03, 0.1)
    draws = 1 if quick else 3
    for name in names:
        cell, meta = load(name)
        K_, L, D = int(meta["K"]), int(meta["L"]), int(meta["D"])
        task = rp.tasks.memorization_all(K_, L, D)
        m0 = _measure(cell, task, L, D, EPS_GRID)
        A0 = m0["A"]
        base = {"checkpoint": name, "cell": cell.kind, "D": D, "n": cell.n}
        rows.append(_row({**base, "perturbation": "none", "rank": cell.n, "alpha": 0.0}, m0, A0))
        for f in fracs[1:]:
            r = int(round(f * cell.n))
            small = truncate_svd(cell, rank=r)
            m = _measure(small, task, L, D, (EPS,))
            rows.append(_row({**base, "perturbation": "svd", "rank": r, "alpha": 0.0}, m, A0))
            if not quiet:
                print(f"[memory] {name} rank {r}: acc {m['recall_accuracy']:.3f} "
                      f"MC_task {m['MC_task']:.3f} J_task {m['J_task']:.3g}")
        for a in alphas:
            rng = np.random.default_rng([seed, D, _seed_tag(cell.kind), int(round(a * 1e4))])
            ms = []
            for _ in range(draws):
                new = {k: W + a * np.linalg.norm(W, 2) / np.sqrt(cell.n)
                       * rng.standard_normal(W.shape) for k, W in cell.recurrent.items()}
                ms.append(_measure(cell.replace(**new), task, L, D, (EPS,)))
            mean = {k: float(np.mean([m[k] for m in ms])) for k in ms[0] if k != "A"}
            mean["A"] = np.mean([m["A"] for m in ms], axis=0)
            rows.append(_row({**base, "perturbation": "noise", "rank": cell.n, "alpha": a,
                              "draws": draws}, mean, A0))
        # memory headlines: kept rank r*, r*/2, first-order weight noise
        for tag, r, m in kept_and_half(cell, task, L, D):
            rows.append(_row({**base, "perturbation": tag, "rank": r, "alpha": 0.0}, m, A0))
        rng = np.random.default_rng([seed, D, _seed_tag(cell.kind), 14])
        ms = []
        for _ in range(NOISE_DRAWS):
            noisy = cell
            for k, W in cell.recurrent.items():
                noisy = rp.weight_noise(noisy, std=NOISE_REL * np.linalg.norm(W, 2)
                                        / np.sqrt(cell.n), seed=rng, names=k)
            ms.append(_measure(noisy, task, L, D, (EPS,)))
        mean = {k: float(np.mean([m[k] for m in ms])) for k in ms[0] if k != "A"}
        mean["A"] = np.mean([m["A"] for m in ms], axis=0)
        rows.append(_row({**base, "perturbation": f"noise_{NOISE_REL:g}", "rank": cell.n,
                          "alpha": NOISE_REL, "draws": NOISE_DRAWS}, mean, A0))
        if not quiet:
            print(f"[memory] {name}: gate {m0['gate_mean_delay']:.3f} MC {m0['MC']:.3f} "
                  f"J_tot {m0['J_tot']:.3g}")
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "eps": EPS, "eps_grid": list(EPS_GRID),
                     "direction": "(e_1 - e_0)/sqrt(2): symbol-difference input direction",
                     "A": "mean step Jacobian over the blank delay steps L+1..L+D, all sequences",
                     "horizon": "L + D + 1", "task_window": "delays D+1..D+L",
                     "ftle": "finite_time_lyapunov over the delay steps L+1..L+D, tau = D; "
                             "ftle_max / ftle_sum / n_ftle_near_zero: medians over sequences",
                     "near_zero": NEAR_ZERO, "noise_rel": NOISE_REL, "noise_draws": NOISE_DRAWS,
                     "kept_rank": "smallest r from which on every plain-SVD rank has recall "
                                  ">= 0.99 (scanned down from n to the first failing rank)"}}


def headline(result) -> dict:
    rows = result["rows"]
    head = {}
    for kind in sorted({r["cell"] for r in rows}):
        rs = [r for r in rows if r["cell"] == kind]
        if not rs:
            continue
        for D in sorted({r["D"] for r in rs}):
            rd = [r for r in rs if r["D"] == D]
            nom = next(r for r in rd if r["perturbation"] == "none")
            key = f"{kind}_D{D}"
            head[key] = {
                "gate_mean_delay": nom["gate_mean_delay"],
                "gate_frac_closed": nom.get("gate_frac_closed"),
                "gate_frac_open": nom.get("gate_frac_open"),
                "row_gain_closed_vs_other": {
                    k: (round(nom[f"row_gain_closed_{k}"], 4), round(nom[f"row_gain_other_{k}"], 4))
                    for k in [c[len("row_gain_closed_"):] for c in nom
                              if c.startswith("row_gain_closed_")]},
                "n_slow_modes": nom["n_slow_modes"],
                "rho_A_per_seq_median": round(nom["rho_A_per_seq_median"], 4),
                "phi_delay_norm_median": round(nom["phi_delay_norm_median"], 4),
                "MC_task_vdata": round(nom["MC_task_vdata"], 4),
                "J_task_vdata": round(nom["J_task_vdata"], 4),
                "forcing_gains_delay": {k[len("forcing_gain_"):]: round(v, 4)
                                        for k, v in nom.items() if k.startswith("forcing_gain_")},
                "rho_A": round(nom["rho_A"], 4), "MC": round(nom["MC"], 3),
                "MC_task": round(nom["MC_task"], 3), "J_tot": round(nom["J_tot"], 3),
                "J_task": round(nom["J_task"], 3),
                "svd": {r["rank"]: {"acc": round(r["recall_accuracy"], 3),
                                    "MC_task": round(r["MC_task"], 3),
                                    "J_task_rel": round(r["J_task"] / nom["J_task"], 3)
                                    if nom["J_task"] > 0 else None,
                                    "J_task_vdata_rel": round(r["J_task_vdata"]
                                                              / nom["J_task_vdata"], 3)
                                    if nom["J_task_vdata"] > 0 else None,
                                    "n_slow_modes": r["n_slow_modes"],
                                    "phi_delay_norm_median": round(r["phi_delay_norm_median"], 4),
                                    "dA_rel": round(r["dA_rel"], 4)}
                        for r in rd if r["perturbation"] == "svd"},
                "noise": {r["alpha"]: {"acc": round(r["recall_accuracy"], 3),
                                       "MC_task": round(r["MC_task"], 3),
                                       "dA_rel": round(r["dA_rel"], 4)}
                          for r in rd if r["perturbation"] == "noise"},
            }
    head["memory_table"] = memory_table(result)
    return head


def markdown_table(table: dict) -> str:
    """The README's memory table from ``headline()["memory_table"]`` (or the shipped
    ``memory.json``'s): per checkpoint Jaeger's MC and the Fisher memory J_tot of the full net,
    at the kept rank r*, at round(r*/2) and under 1 % weight noise, the largest delay FTLE and the
    number of near-zero ones (full net)."""
    lines = ["| net | r* | MC: full / r* / r*/2 / noise | J_tot: full / r* / r*/2 / noise | "
             "recall at r*/2 | largest FTLE over the delay | FTLEs with abs < 0.01 |",
             "|---|---|---|---|---|---|---|"]

    def key(name):
        c, _, rest = name.partition("_")
        return (list(CELL_LABEL).index(c), int(rest.split("_D")[1]))
    for name in sorted(table, key=key):
        t = table[name]
        c, D = name.split("_")[0], int(name.split("_D")[1])
        cols = ("full", "kept", "half", "noise")
        mc = " / ".join(f"{t[k]['MC']:.2f}" for k in cols)
        jt = " / ".join(f"{t[k]['J_tot']:.1f}" for k in cols)
        lines.append(f"| {CELL_LABEL[c]} D = {D} | {t['kept']['rank']} | {mc} | {jt} | "
                     f"{t['half']['acc']:.2f} | {t['full']['ftle_max']:.3f} | "
                     f"{t['full']['n_ftle_near_zero']:g} |")
    return "\n".join(lines)


def memory_table(result) -> dict:
    """Per checkpoint: {MC, J_tot, ftle_max, n_ftle_near_zero} for the full
    net, the kept rank r*, round(r*/2) and weight noise (with the ranks and the
    recall accuracies)."""
    cols = {"full": "none", "kept": "svd_kept", "half": "svd_half_kept",
            "noise": f"noise_{NOISE_REL:g}"}
    out = {}
    for name in dict.fromkeys(r["checkpoint"] for r in result["rows"]):
        rs = [r for r in result["rows"] if r["checkpoint"] == name]
        tab = {}
        for col, pert in cols.items():
            r = next((r for r in rs if r["perturbation"] == pert), None)
            if r is None:
                continue
            tab[col] = {"rank": r["rank"], "acc": round(r["recall_accuracy"], 4),
                        "MC": round(r["MC"], 4), "J_tot": round(r["J_tot"], 4),
                        "ftle_max": round(r["ftle_max"], 4),
                        "n_ftle_near_zero": r["n_ftle_near_zero"]}
        out[name] = tab
    return out


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
