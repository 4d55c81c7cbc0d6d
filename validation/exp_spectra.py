r"""(f) Singular-value spectra of the trained recurrent matrices.

For every shipped checkpoint and recurrent matrix (``W``; ``Wf`` and ``Wh``)
it records the singular values :math:`\sigma_1\ge\dots\ge\sigma_n`, the
spectral norm :math:`\|W\|_2=\sigma_1`, the spectral radius
:math:`\max|\lambda_i(W)|`, and the *energy rank*: the smallest r whose
truncation keeps 99 % of :math:`\|W\|_F^2`, i.e.
:math:`\|\Delta W\|_F^2 = \sum_{i>r}\sigma_i^2 \le 0.01\,\|W\|_F^2`
(Eckart–Young–Mirsky).

Output: ``spectra.csv`` (one row per singular value) and ``spectra.json``.
"""
from __future__ import annotations

import numpy as np

from validation.experiments import checkpoint_names, cli, load, write_result  # noqa: F401

__all__ = ["run", "headline", "write"]

NAME = "spectra"


def run(*, quick: bool = False, seed: int = 0, quiet: bool = True) -> dict:
    """Spectra of every checkpoint's recurrent matrices (``quick`` and
    ``seed`` do not change anything: the computation is exact and cheap)."""
    rows, mats = [], []
    for name in checkpoint_names():
        cell, meta = load(name)
        for k, W in cell.recurrent.items():
            s = np.linalg.svd(W, compute_uv=False)
            e = np.cumsum(s ** 2) / np.sum(s ** 2)
            r99 = int(np.searchsorted(e, 0.99 - 1e-12) + 1)
            rho = float(np.max(np.abs(np.linalg.eigvals(W))))
            mats.append({"checkpoint": name, "cell": cell.kind, "task": meta["task"],
                         "D": int(meta.get("D", -1)), "matrix": k, "n": cell.n,
                         "spectral_norm": float(s[0]), "spectral_radius": rho,
                         "frobenius": float(np.sqrt(np.sum(s ** 2))),
                         "stable_rank": float(np.sum(s ** 2) / s[0] ** 2),
                         "energy_rank_99": r99})
            for i, v in enumerate(s, 1):
                rows.append({"checkpoint": name, "cell": cell.kind, "task": meta["task"],
                             "D": int(meta.get("D", -1)), "matrix": k, "index": i,
                             "sigma": float(v), "sigma_rel": float(v / s[0])})
    return {"name": NAME, "rows": rows, "matrices": mats, "meta": {"quick": quick}}


def headline(result: dict) -> dict:
    """Spectral norm, spectral radius and 99 %-energy rank per matrix."""
    return {f"{m['checkpoint']}:{m['matrix']}": {
        "spectral_norm": m["spectral_norm"], "spectral_radius": m["spectral_radius"],
        "energy_rank_99": m["energy_rank_99"], "n": m["n"]} for m in result["matrices"]}


def write(result: dict, out_dir: str) -> list[str]:
    return write_result(result, out_dir, headline(result))


if __name__ == "__main__":
    import sys
    sys.exit(cli(sys.modules[__name__]))
