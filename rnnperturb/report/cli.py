"""Command line: ``rnnperturb analyze FILE``.

For every rank (or ``--ranks``) it prints the compression ratio, the norms of
the truncation error and the exact, first-order and certified maximum
deviation of the hidden state, on the file's own task inputs or on
``--inputs FILE.npz`` (key ``X``, shape (T, B, m) or (T, m)). ``--tolerance``
with ``--horizon`` recommends the smallest safe rank. Bad input gets one line
on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _parse_ranks(text: str, n: int) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                bits = [int(b) for b in part.split(":")]
                out.extend(range(bits[0], bits[1] + 1, bits[2] if len(bits) > 2 else 1))
            else:
                out.append(int(part))
        except (ValueError, IndexError):
            raise ValueError(f"--ranks: expected integers like '0,8,16' or '0:64:8', found "
                             f"{text!r}") from None
    bad = [r for r in out if not 0 <= r <= n]
    if bad or not out:
        raise ValueError(f"--ranks: expected ranks in [0, {n}], found {bad or text!r}")
    return sorted(set(out))


def _load_model(path: str, nonlinearity: str | None):
    from rnnperturb.io.pytorch import load_torch
    from rnnperturb.io import load_with_metadata

    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        if nonlinearity not in (None, "tanh"):
            raise ValueError(f"--nonlinearity: expected 'tanh', found {nonlinearity!r}")
        cell, meta = load_with_metadata(path)
        return cell, meta, []
    if ext in (".pt", ".pth"):
        cell, notes = load_torch(path, nonlinearity=nonlinearity or "tanh")
        return cell, {}, notes
    raise ValueError(f"FILE: expected an .npz checkpoint or a PyTorch .pt/.pth state_dict, "
                     f"found {path!r}")


def _load_inputs(path: str, m: int):
    if not os.path.exists(path):
        raise ValueError(f"--inputs: expected an existing .npz file, found no file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z.files:
                raise ValueError(f"--inputs: expected key 'X' in {path}, found {z.files}")
            X = z["X"]
    except (OSError, EOFError) as exc:
        raise ValueError(f"--inputs: expected an .npz file, found an unreadable file ({exc})") \
            from None
    from rnnperturb._checks import as_inputs
    X3, _ = as_inputs(X, m, np.float64)
    return X3, f"{X3.shape[1]} sequences of {X3.shape[0]} steps from {path}"


def _fmt_mat(d: dict) -> str:
    return "/".join(f"{v:.3g}" for v in d.values())


def _analyze(args) -> int:
    from rnnperturb.report.rank_analysis import analyze_ranks, default_inputs, recommend_rank

    cell, meta, notes = _load_model(args.file, args.nonlinearity)
    if args.inputs:
        X, desc = _load_inputs(args.inputs, cell.m)
    else:
        X, desc = default_inputs(cell, meta, seed=args.seed)
    ranks = _parse_ranks(args.ranks, cell.n) if args.ranks else None
    if (args.tolerance is None) != (args.horizon is None):
        raise ValueError("--tolerance/--horizon: expected both or neither, found only one")
    rows = analyze_ranks(cell, X, ranks=ranks, tier=args.tier, quiet=args.quiet or args.json)
    rec = None
    if args.tolerance is not None:
        rec = recommend_rank(cell, X, tolerance=args.tolerance, horizon=args.horizon,
                             method="certified", tier=args.tier)
    if args.json:
        out = {"file": args.file, "cell": cell.kind, "n": cell.n, "m": cell.m,
               "inputs": desc, "notes": notes, "rows": [r.as_dict() for r in rows]}
        if rec is not None:
            out["recommendation"] = {"rank": rec.rank, "certified_max": rec.value,
                                     "params": rec.params,
                                     "compression_ratio": rec.compression_ratio,
                                     "tolerance": rec.tolerance,
                                     "horizon": rec.horizon}
        print(json.dumps(out, indent=1))
        return 0
    print(f"{args.file}: {cell.kind} cell, n={cell.n}, m={cell.m}, {cell.n_params} parameters")
    print(f"inputs: {desc}")
    for note in notes:
        print(f"note: {note}")
    mats = "/".join(cell.recurrent_names)
    print(f"{'rank':>6} {'ratio':>7} {'|dW|_2 (' + mats + ')':>20} {'|dW|_F':>16} "
          f"{'exact':>10} {'1st-order':>10} {'certified':>10}")
    for r in rows:
        rk = "/".join(str(v) for v in r.rank.values())
        print(f"{rk:>6} {r.compression_ratio:7.3f} {_fmt_mat(r.dW_spectral):>20} "
              f"{_fmt_mat(r.dW_frobenius):>16} {r.exact_max:10.4g} {r.first_order_max:10.4g} "
              f"{r.certified_max:10.4g}")
    print("deviation columns: max over time and sequences of ||h'_t - h_t||_2; "
          "ratio = stored parameters compressed / original")
    if rec is not None:
        if rec.rank is None:
            print(f"recommendation: no rank below full keeps the certified deviation "
                  f"<= {rec.tolerance:g} over {rec.horizon} steps")
        else:
            print(f"recommendation: rank {rec.rank} keeps the certified deviation <= "
                  f"{rec.tolerance:g} over {rec.horizon} steps (bound {rec.value:.4g}, "
                  f"{rec.params} stored parameters, ratio {rec.compression_ratio:.3f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rnnperturb", description="Perturbation analysis of RNN recurrent weights.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    a = sub.add_parser("analyze", help="rank-by-rank deviation analysis of a weights file")
    a.add_argument("file", help=".npz checkpoint (project schema) or PyTorch nn.RNN state_dict")
    a.add_argument("--inputs", help=".npz with key X, shape (T, B, m) or (T, m)")
    a.add_argument("--ranks", help="ranks, e.g. '0,8,16' or '0:64:8' (default every rank)")
    a.add_argument("--tier", choices=("fast", "tight"), default="tight",
                   help="certified-bound tier (default tight; fast is cheaper but "
                        "often vacuous on trained, expanding nets)")
    a.add_argument("--tolerance", type=float, help="allowed max deviation for a recommendation")
    a.add_argument("--horizon", type=int, help="horizon (steps) for the recommendation")
    a.add_argument("--nonlinearity", help="for PyTorch files: only 'tanh' is supported")
    a.add_argument("--seed", type=int, default=0, help="seed of the default inputs")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command != "analyze":
            raise _UsageError("expected a command: analyze")
        return _analyze(args)
    except _UsageError as exc:
        print(f"rnnperturb: usage error: {exc} (see 'rnnperturb analyze --help')", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"rnnperturb: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
