r"""(e) General perturbations: quantization, pruning and weight noise, predicted and measured.

On memorization checkpoints (delay 20, both cells, all 32 sequences) and the
k-back checkpoints (16 fresh sequences; left out in quick mode, which also
keeps only 8 of the 32 memorization sequences), every recurrent matrix is perturbed by

* uniform symmetric quantization to ``bits`` bits per matrix,
  :func:`rnnperturb.quantize` (levels :math:`\pm k\,\Delta`,
  :math:`\Delta = \max|w| / (2^{b-1}-1)`);
* magnitude pruning of a ``fraction`` of the entries, :func:`rnnperturb.prune`;
* frozen Gaussian weight noise of standard deviation ``std``,
  :func:`rnnperturb.weight_noise` (several seeds).

Degradation is measured as the RMS deviation on the scored steps (the recall
steps for memorization), :math:`(\mathrm{mean}_{t,b}\|e_{t,b}\|_2^2)^{1/2}`
from :func:`rnnperturb.deviation`, and as task performance. It is predicted

* for quantization and pruning (one fixed :math:`\Delta W`) by the first-order
  model :func:`rnnperturb.first_order` (same RMS, and the performance read out
  from :math:`h_t+\ell_t`), and for quantization also by the *noise model*:
  :func:`rnnperturb.noise_response` with entry variance :math:`\Delta^2/12`;
* for noise by :func:`rnnperturb.noise_response` (frozen), i.e. the
  first-order mean squared deviation, against the Monte Carlo mean over seeds.

The first-order mean squared deviation is linear in the entry variances, so
``noise_response`` is called once per recurrent matrix with unit variance on
that matrix only, and every noise level and quantization step follows as
:math:`\sum_m V_m S_m` (exact, not an approximation).

Output: ``general_perturbations.csv`` (one row per checkpoint, perturbation
kind and level; for noise, per seed and a ``seed='mean'`` row) and
``general_perturbations.json``.
"""
from __future__ import annotations

import numpy as np

import rnnperturb as rp
from rnnperturb.stats.noise import noise_response
from validation.experiments import (checkpoint_names, cli, eval_task, load, performance,
                                    write_result)

__all__ = ["run", "headline", "write"]

NAME = "general_perturbations"
BITS = (2, 3, 4, 5, 6, 8, 10, 12)
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
STDS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)


def _rms(sq, mask):
    """RMS of per-step norms over the scored (t, b): ``sq`` holds squared norms (T, B)."""
    return float(np.sqrt(np.mean(sq[mask])))


def _subset(task, idx):
    """The same task restricted to some sequences (batch index ``idx``)."""
    import dataclasses
    return dataclasses.replace(task, X=task.X[:, idx], targets=task.targets[:, idx],
                               mask=task.mask[:, idx], recall=task.recall[:, idx])


def _checkpoints(quick):
    out = [n for n in checkpoint_names(task="memorization") if n.endswith("_D20")]
    return out if quick else out + checkpoint_names(task="kback")


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Quantization, pruning and noise sweeps (see the module docstring)."""
    rows = []
    bits = BITS[::2] + (BITS[-1],) if quick else BITS
    fracs = FRACTIONS[::2] if quick else FRACTIONS
    stds = STDS[::2] if quick else STDS
    n_seeds = 3 if quick else 8
    n_eval = 8 if quick else 16        # k-back; memorization uses all 32 (full) / 8 (quick)
    for name in rp.progress(_checkpoints(quick), desc="general perturbations", quiet=quiet):
        cell, meta = load(name)
        task = eval_task(meta, seed=seed, batch=n_eval)
        if quick and meta["task"] == "memorization":     # every 4th of the 32 sequences
            task = _subset(task, slice(0, None, 4))
        mask = task.recall
        H = cell.run(task.X)
        unit = {k: np.asarray(noise_response(cell, task.X, var={k: 1.0}, std=0.0, frozen=True))
                for k in cell.recurrent_names}           # (T, B) per unit-variance matrix
        full = performance(cell, task, H)["perf"]
        base = {"checkpoint": name, "cell": cell.kind, "task": meta["task"], "n": cell.n,
                "full_perf": full}

        def fixed(kind, level, other, noise_var=None):
            E = rp.deviation(cell, other, task.X)
            L = rp.first_order(cell, other, task.X)
            row = dict(base, kind=kind, level=float(level), seed="",
                       measured_rms=_rms(np.sum(E ** 2, -1), mask),
                       first_order_rms=_rms(np.sum(L ** 2, -1), mask),
                       measured_perf=performance(cell, task, H + E)["perf"],
                       first_order_perf=performance(cell, task, H + L)["perf"],
                       dW_spectral=max(float(np.linalg.norm(d, 2)) for d in
                                       rp.delta_recurrent(cell, other).values()))
            if noise_var is not None:
                S = sum(v * unit[k] for k, v in noise_var.items())
                row["noise_model_rms"] = _rms(S, mask)
            rows.append(row)

        for b in bits:
            q = rp.quantize(cell, bits=b)
            step = {k: float(np.max(np.abs(W))) / (2 ** (b - 1) - 1)
                    for k, W in cell.recurrent.items()}
            fixed("quantize", b, q, {k: s * s / 12.0 for k, s in step.items()})
        for f in fracs:
            fixed("prune", f, rp.prune(cell, fraction=f))
        for s in stds:
            pred = _rms(s * s * sum(unit.values()), mask)
            ms, ps = [], []
            for k in range(n_seeds):
                rng = np.random.default_rng([int(seed), 31, k])
                other = rp.weight_noise(cell, std=s, seed=rng)
                E = rp.deviation(cell, other, task.X)
                ms.append(np.mean(np.sum(E ** 2, -1)[mask]))
                ps.append(performance(cell, task, H + E)["perf"])
                rows.append(dict(base, kind="noise", level=s, seed=k,
                                 measured_rms=float(np.sqrt(ms[-1])), measured_perf=ps[-1]))
            rows.append(dict(base, kind="noise", level=s, seed="mean",
                             measured_rms=float(np.sqrt(np.mean(ms))),
                             measured_perf=float(np.mean(ps)), noise_model_rms=pred,
                             measured_rms_sem=float(np.std(np.sqrt(ms), ddof=1)
                                                    / np.sqrt(n_seeds))))
    return {"name": NAME, "rows": rows,
            "meta": {"quick": quick, "seed": seed, "n_seeds": n_seeds, "n_eval": n_eval}}


def _log_err(rows, key, where=lambda r: True):
    """Median |log10(predicted / measured)| over rows with both > 0."""
    v = [abs(np.log10(r[key] / r["measured_rms"])) for r in rows
         if where(r) and r.get(key) and r["measured_rms"] > 0]
    return float(np.median(v)) if v else None


def headline(result: dict) -> dict:
    rows = result["rows"]
    out = {}
    for ck in sorted({r["checkpoint"] for r in rows}):
        rr = [r for r in rows if r["checkpoint"] == ck]
        q = [r for r in rr if r["kind"] == "quantize"]
        p = [r for r in rr if r["kind"] == "prune"]
        nz = [r for r in rr if r["kind"] == "noise" and r["seed"] == "mean"]
        kept_bits = [r["level"] for r in q if r["measured_perf"] >= 0.99 * r["full_perf"]]
        kept_frac = [r["level"] for r in p if r["measured_perf"] >= 0.99 * r["full_perf"]]
        out[ck] = {
            "min_bits_99": int(min(kept_bits)) if kept_bits else None,
            "max_prune_fraction_99": max(kept_frac) if kept_frac else None,
            "quantize_fo_median_abs_log10_err": _log_err(q, "first_order_rms"),
            "quantize_noise_model_median_abs_log10_err": _log_err(q, "noise_model_rms"),
            "prune_fo_median_abs_log10_err": _log_err(p, "first_order_rms"),
            "noise_median_abs_log10_err_rms<=0.3": _log_err(
                nz, "noise_model_rms", lambda r: r["measured_rms"] <= 0.3),
        }
    return out


def write(result: dict, out_dir: str) -> list[str]:
    return write_result(result, out_dir, headline(result))


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
