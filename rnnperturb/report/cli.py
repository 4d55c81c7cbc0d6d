r"""Command line: ``rnnperturb analyze FILE``.

For every rank (or ``--ranks``) it prints the compression ratio, the norms of
the truncation error and the exact, first-order and certified maximum
deviation of the hidden state, on the file's own task inputs or on
``--inputs FILE.npz`` (key ``X``, shape (T, B, m) or (T, m)).
``--tolerance`` with ``--horizon`` recommends the smallest rank whose certified
deviation stays below the tolerance. ``--budget-params N`` allocates a rank to
every recurrent matrix (each gate block of every layer) within N stored
parameters, minimising the exact max deviation on the inputs
(:func:`rnnperturb.allocate_ranks`, a greedy search that never exceeds the
budget; ``benchmarks/bench_allocation.py`` compares it with exhaustive search),
and gives that network's exact deviation, certified bound and accuracy.

Accuracy. With labels -- key ``y`` of ``--inputs``, integers of shape (B,)
scored at the last step or (T, B) scored where ``y >= 0`` -- or a checkpoint
with a memorization task (its targets at the recall steps; k-back, scored per
step, gets no accuracy columns),
and a readout, every row also gives the **accuracy** of the truncated network
(fraction of the scored sequences right at every scored step; for a
memorization checkpoint this is its recall) and the **certified accuracy**
(fraction right at full rank *and* proven to keep the prediction at every
scored step under the truncation: the certified deviation bound times the
readout's :math:`\|V_y - V_j\|` against each class margin,
:func:`rnnperturb.bounds.recall.certified_recall`). Certified accuracy <=
accuracy, with equality at full rank. ``--tolerance-accuracy LOSS``
recommends the smallest evaluated rank that loses at most LOSS (0.01 = one
point, measured) and the smallest that provably loses none (certified accuracy
= full accuracy). ``--export PATH`` writes the chosen truncation
(``--export-rank R``, else the accuracy recommendation, else the ``--tolerance``
one) back: a PyTorch state_dict with the input file's keys
(:func:`rnnperturb.to_torch`, loadable with ``load_state_dict(strict=True)``)
for a .pt/.pth input, an .npz checkpoint (metadata kept) for an .npz input.

Sets. ``--bits B[,B...]``, ``--drift D[,...]`` and ``--noise-std S[,...]`` add,
for the network as given, the certified deviation over *every* rounding onto
quantize()'s B-bit grid (``--rounding any``, the default, or ``nearest``), every
drift :math:`|\Delta W_{ij}| \le D|W_{ij}|` (:func:`rnnperturb.set_bound`), or
Gaussian weight noise of std S with probability ``--confidence`` jointly over
all sequences (:func:`rnnperturb.noise_bound` at
:math:`1 - (1-\text{confidence})/B`), and with labels the certified accuracy
over the set (:func:`rnnperturb.bounds.set_recall.certified_set_recall`);
beside them the measured deviation and accuracy of ``quantize()``
(round-to-nearest), of ``--samples`` seeded drift vertices, or of ``--samples``
seeded noise draws (mean accuracy; ``accuracy_min`` in JSON). The box bounds
are computed without the SDP-dual refinement unless ``--box-refine`` (on a
digits GRU, n = 32: 16 % tighter for drift, 7x the time); ``--one-sided`` centres
the activation remainders whose pre-activation range lies on one side of 0
(tighter on saturated trained nets, at about the same cost). These bounds cost
O(n^4) per step and sequence: keep the inputs small. With
``--tolerance-accuracy`` each set also gets a certified recommendation: a rank r
whose truncated network, then changed by any member of the set built from *its*
weights (``--bits``: every rounding onto the rank-r network's own grid), provably
keeps every prediction the full network gets right
(:func:`rnnperturb.certified_safe_rank` with ``perturbation=``; a sweep of
``--ranks``, else a bisection over ranks that returns a certified rank, not proven
the smallest; JSON ``set_recommendations``, whose ``certified_accuracy`` per
evaluated rank counts, like the rows', the scored sequences right at full rank
and certified for every member).

Where the certified bound is not implemented for the cell, the certified
columns are ``n/a`` (JSON ``null``) with one note saying why, and
``--tolerance`` is refused (exit 2).

FILE is an ``.npz`` checkpoint or a PyTorch state_dict read with
``weights_only=True`` and converted by :func:`rnnperturb.from_torch` (an
optional ``Linear`` readout beside the network; the cell's dtype follows the
recurrent weights).

Which trajectory each column describes: ``exact`` and ``1st-order`` are
computed in the cell's own dtype (float32 checkpoints: float32 arithmetic);
``certified`` is a sound upper bound for the exact (real-arithmetic) runs of
the same weights, evaluated in verified float64, so for a float32 checkpoint it
does not include float32 rounding and can lie below the float32 ``exact``
column. ``accuracy`` and ``certified accuracy`` both describe the float64 run
of the stored weights (for a float32 file they can differ from float32
inference only where a logit margin is below float32 rounding).

``--json`` writes strict JSON (RFC 8259): a number that is not finite (NaN or
±Inf, e.g. the recommendation's ``certified_max`` when no rank passes) is
written as ``null``, never as ``NaN`` or ``Infinity``.

Exit status: 0 success; 1 the output could not be written (closed stdout, full
disk; one line on stderr); 2 bad input or usage (one line on stderr naming the
argument, the expected and the found value, or an analysis that does not
cover the file's cell type yet); 130 interrupted (Ctrl-C, one
line); 141 the reader of stdout went away (``| true``: no message, as for
other Unix tools killed by SIGPIPE). Progress goes to stderr and is dropped
silently when stderr is closed or full; it never stops the run.
Set ``RNNPERTURB_TRACEBACK=1`` to get a traceback for an internal error.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

import numpy as np

__all__ = ["main", "build_parser", "parse_ranks", "EXIT_OK", "EXIT_OUTPUT", "EXIT_USAGE",
           "EXIT_INTERRUPTED", "EXIT_BROKEN_PIPE"]

EXIT_OK = 0
EXIT_OUTPUT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

#: Longest ``--ranks`` text accepted (checked before it is parsed).
MAX_RANKS_TEXT = 10_000

_RANKS_EXPECTED = ("integers like '0,8,16' or ranges START:STOP[:STEP] like '0:64:8' or "
                   "'64:0:-8' (STOP included)")

_EPILOG = """\
columns: 'exact' and '1st-order' are computed in the cell's own dtype (a float32
checkpoint runs in float32); 'certified' is a sound upper bound for the
exact-arithmetic runs of the same weights (verified float64), so for float32 it
does not include float32 rounding.

--json writes strict JSON: numbers that are not finite (NaN, +-Inf, e.g. the
recommendation's certified_max when no rank passes) are written as null.

exit status: 0 ok; 1 output could not be written (closed stdout, full disk);
2 bad input or usage (one line on stderr naming the argument); 130 interrupted;
141 stdout's reader went away (broken pipe).

labels (--inputs with y, or a memorization checkpoint's targets) add accuracy and
cert.acc: fraction right at full rank and proven to keep the prediction at
every scored step (cert.acc <= accuracy, equal at full rank).
example: rnnperturb analyze model.pt --inputs X.npz --tolerance-accuracy 0.01
           --export small.pt --bits 8
"""


class _UsageError(Exception):
    pass


class _OutputError(Exception):
    pass


class _BrokenPipe(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2
        raise _UsageError(message)

    def print_help(self, file=None):
        _write_stdout(self.format_help())

    def print_usage(self, file=None):
        _write_stdout(self.format_usage())


# ----------------------------------------------------------------------------- streams
def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except Exception:   # not a real file (e.g. captured in tests): nothing to redirect
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def _write_stdout(text: str) -> None:
    """Write all of ``text`` to stdout and flush, or raise _BrokenPipe/_OutputError."""
    out = sys.stdout
    if out is None:
        raise _OutputError("stdout: expected a writable standard output, found it closed "
                           "(nothing was written)")
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise _BrokenPipe() from None
    except (OSError, ValueError) as exc:
        _silence_stdout()
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise _OutputError(f"stdout: expected to write the output, found an error ({why})") \
            from None


def _err(message: str) -> None:
    """One line on stderr; never raises (a closed or full stderr is ignored)."""
    try:
        from rnnperturb.report.progress import end_line
        end_line(sys.stderr)
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except Exception:
        pass


# ----------------------------------------------------------------------------- options
def parse_ranks(text, n: int) -> list[int]:
    """Parse ``--ranks`` for a cell of hidden size ``n`` into a sorted list of ranks.

    Items are separated by commas; each is an integer or a range
    ``START:STOP[:STEP]`` with STOP included (``0:64:8`` is 0, 8, ..., 64;
    ``64:0:-8`` the same ranks counted down). Every endpoint is checked to lie
    in [0, n] before a range is built, so no range is larger than n + 1.

    Raises
    ------
    ValueError
        ``"--ranks: expected ..., found ..."`` for an empty text or item, a
        non-integer, more than three fields, a zero step, an empty range, or a
        rank outside [0, n].
    """
    name = "--ranks"
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected a string of {_RANKS_EXPECTED}, found "
                         f"{type(text).__name__}")
    if len(text) > MAX_RANKS_TEXT:
        raise ValueError(f"{name}: expected at most {MAX_RANKS_TEXT} characters, found "
                         f"{len(text)}")
    if not text.strip():
        raise ValueError(f"{name}: expected {_RANKS_EXPECTED}, found {text!r}")
    from rnnperturb._checks import describe
    out: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise ValueError(f"{name}: expected {_RANKS_EXPECTED}, found an empty item in "
                             f"{describe(text)}")
        fields = [f.strip() for f in item.split(":")]
        if len(fields) > 3:
            raise ValueError(f"{name}: expected at most three fields START:STOP:STEP, found "
                             f"{describe(item)} with {len(fields)} fields")
        try:
            vals = [int(f) for f in fields]
        except ValueError:
            raise ValueError(f"{name}: expected {_RANKS_EXPECTED}, found {describe(item)}") \
                from None
        bad = [v for v in vals[:2] if not 0 <= v <= n]
        if bad:
            raise ValueError(f"{name}: expected ranks in [0, {n}], found [{describe(bad[0])}]")
        if len(vals) == 1:
            out.add(vals[0])
            continue
        start, stop = vals[0], vals[1]
        step = vals[2] if len(vals) == 3 else 1
        if step == 0:
            raise ValueError(f"{name}: expected a non-zero STEP, found {describe(item)}")
        if (stop - start) * step < 0:
            raise ValueError(f"{name}: expected STOP reachable from START by STEP (a negative "
                             f"STEP counts down), found the empty range {describe(item)}")
        out.update(range(start, stop + (1 if step > 0 else -1), step))
    return sorted(out)


def _check_options(args) -> None:
    """Option values that argparse's types let through."""
    if args.nonlinearity is not None and args.nonlinearity != "tanh":
        raise ValueError(f"--nonlinearity: expected 'tanh' (the only supported nn.RNN "
                         f"nonlinearity), found {args.nonlinearity!r}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, found {args.seed}")
    if (args.tolerance is None) != (args.horizon is None):
        raise ValueError("--tolerance/--horizon: expected both or neither, found only one")
    if args.tolerance is not None and not (math.isfinite(args.tolerance) and args.tolerance > 0):
        raise ValueError(f"--tolerance: expected a finite number > 0, found {args.tolerance!r}")
    if args.horizon is not None and args.horizon < 1:
        raise ValueError(f"--horizon: expected an integer >= 1, found {args.horizon}")
    if args.budget_params is not None and args.budget_params < 0:
        raise ValueError(f"--budget-params: expected an integer >= 0, found "
                         f"{args.budget_params}")
    if args.inputs is not None and not args.inputs.strip():
        raise ValueError(f"--inputs: expected a path to an .npz file with key X, found "
                         f"{args.inputs!r}")
    if args.ranks is not None and not args.ranks.strip():
        raise ValueError(f"--ranks: expected {_RANKS_EXPECTED}, found {args.ranks!r}")
    ta = args.tolerance_accuracy
    if ta is not None and not (math.isfinite(ta) and 0 <= ta < 1):
        raise ValueError(f"--tolerance-accuracy: expected a fraction in [0, 1) (0.01 = one "
                         f"point of accuracy), found {ta!r}")
    if not (math.isfinite(args.confidence) and 0 < args.confidence < 1):
        raise ValueError(f"--confidence: expected a number in (0, 1), found {args.confidence!r}")
    if args.samples < 1:
        raise ValueError(f"--samples: expected an integer >= 1, found {args.samples}")
    if args.export_rank is not None and args.export is None:
        raise ValueError("--export-rank: expected --export PATH as well, found --export-rank "
                         "alone")
    if args.export is not None:
        _check_export_path(args)
        if (args.export_rank is None and args.tolerance_accuracy is None
                and args.tolerance is None and args.budget_params is None):
            raise ValueError("--export: expected a rank to export: --export-rank R, or a "
                             "recommendation (--tolerance-accuracy, or --tolerance with "
                             "--horizon), found none")
    args.bits_list = _parse_list("--bits", args.bits, int, low=2, high=32)
    args.drift_list = _parse_list("--drift", args.drift, float, low=0.0)
    args.noise_list = _parse_list("--noise-std", args.noise_std, float, low=0.0)


def _parse_list(name: str, text, kind, *, low, high=None) -> list:
    """Comma-separated values of ``kind`` in [low, high] (floats: finite, > low)."""
    if text is None:
        return []
    from rnnperturb._checks import describe
    what = ("integers in [%d, %d] like '6,8'" % (low, high) if kind is int
            else "finite numbers > 0 like '1e-3,1e-2'")
    out = []
    for part in text.split(","):
        item = part.strip()
        try:
            v = kind(item)
        except ValueError:
            raise ValueError(f"{name}: expected {what}, found {describe(item or text)}") from None
        ok = (low <= v <= high) if kind is int else (math.isfinite(v) and v > low)
        if not ok:
            raise ValueError(f"{name}: expected {what}, found {describe(item)}")
        if v not in out:
            out.append(v)
    return out


def _check_export_path(args) -> None:
    """``--export`` names a file in an existing directory, with the input's format."""
    from rnnperturb._checks import describe
    path = args.export
    if not path.strip():
        raise ValueError(f"--export: expected a path to write, found {path!r}")
    src = os.path.splitext(args.file)[1].lower()
    ext = os.path.splitext(path)[1].lower()
    want = (".pt", ".pth") if src in (".pt", ".pth") else (".npz",)
    if ext not in want:
        kind = "a PyTorch state_dict" if want[0] == ".pt" else "an .npz checkpoint"
        raise ValueError(f"--export: expected a path ending in {' or '.join(want)} (FILE is "
                         f"{kind}, exported in the same format), found {describe(path, 300)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--export: expected a path in an existing directory, found "
                         f"{describe(path, 300)}")
    if os.path.isdir(path):
        raise ValueError(f"--export: expected a file path, found the directory "
                         f"{describe(path, 300)}")


# ----------------------------------------------------------------------------- files
def _load_torch_file(path: str, nonlinearity: str):
    """An nn.RNN (tanh), nn.GRU or nn.LSTM state_dict file (any num_layers), read with ``weights_only=True``
    and converted by :func:`rnnperturb.from_torch` (optional Linear readout)."""
    from rnnperturb._checks import describe
    from rnnperturb.io.pytorch import from_torch, read_torch_file

    sd, notes = read_torch_file(path, "FILE")
    try:
        cell, more = from_torch(sd, nonlinearity=nonlinearity, return_notes=True)
    except ValueError as exc:
        raise ValueError(f"FILE {describe(path, 300)}: {exc}") from None
    return cell, notes + more


def _load_model(path: str, nonlinearity: str | None):
    from rnnperturb.io.schema import _load

    from rnnperturb._checks import describe
    if not path.strip():
        raise ValueError(f"FILE: expected a path to an .npz checkpoint or a PyTorch .pt/.pth "
                         f"state_dict, found {path!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        cell, meta = _load(path, "FILE")
        return cell, meta, []
    if ext in (".pt", ".pth"):
        cell, notes = _load_torch_file(path, nonlinearity or "tanh")
        return cell, {}, notes
    raise ValueError(f"FILE: expected an .npz checkpoint or a PyTorch .pt/.pth state_dict, "
                     f"found {describe(path, 300)}")


def _load_inputs(path: str, cell):
    from rnnperturb._checks import as_inputs, check_elements, describe
    from rnnperturb.io.schema import read_npz

    data = read_npz(path, name="--inputs", what=".npz file with key X")
    where = f"--inputs {describe(path, 300)}"
    if "X" not in data:
        raise ValueError(f"{where}: expected key 'X', found keys {describe(sorted(data), 200)}")
    X = data["X"]
    if X.dtype.kind not in "fiu":
        raise ValueError(f"{where}: key 'X': X: expected a real floating-point array, found "
                         f"dtype {X.dtype}")
    if X.ndim in (2, 3):
        check_elements("--inputs", (X.shape[0], X.shape[1] if X.ndim == 3 else 1, cell.n),
                       what="T x B x n")
    try:
        X3, _ = as_inputs(X, cell.m, cell.dtype)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    y = _check_labels(data["y"], cell, X3, where) if "y" in data else None
    return X3, y, f"{X3.shape[1]} sequences of {X3.shape[0]} steps from {path}" + (
        " with labels y" if y is not None else "")


def _check_labels(y, cell, X3, where: str) -> np.ndarray:
    """Labels ``y``, shape (B,) (scored at the last step) or (T, B) (negative = not
    scored), checked by :func:`rnnperturb.bounds.recall.label_task`."""
    from rnnperturb.bounds.recall import label_task
    try:
        label_task(cell, X3, y)
    except ValueError as exc:
        raise ValueError(f"{where}: key 'y': {exc}") from None
    return np.asarray(y).astype(np.int64)


def _fmt_mat(d: dict) -> str:
    return "/".join(f"{v:.3g}" for v in d.values())


def _json_safe(obj):
    """Replace non-finite floats by None (strict JSON), recursively; numpy to Python."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


# ----------------------------------------------------------------------------- the command
class _Result:
    """Everything the output needs (plain attributes)."""


def _compute(args):
    from rnnperturb._checks import check_elements, describe
    from rnnperturb.bounds.trajectory import certified_bound
    from rnnperturb.report.rank_analysis import (_check_scales, analyze_ranks, default_task,
                                                 labelled_accuracy, recommend_accuracy,
                                                 recommend_rank)

    cell, meta, notes = _load_model(args.file, args.nonlinearity)
    where = f"FILE {describe(args.file, 300)}"
    try:
        _check_scales(cell, np.zeros((1, 1, cell.m)))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    ranks = parse_ranks(args.ranks, cell.n) if args.ranks is not None else None
    if args.export_rank is not None and not 0 <= args.export_rank <= cell.n:
        raise ValueError(f"--export-rank: expected a rank in [0, {cell.n}], found "
                         f"{args.export_rank}")
    y = None
    if args.inputs is not None:
        X, y, desc = _load_inputs(args.inputs, cell)
        try:
            _check_scales(cell, X)
        except ValueError as exc:
            raise ValueError(f"--inputs {describe(args.inputs, 300)}: {exc}") from None
    else:
        try:
            X, y, desc = default_task(cell, meta, seed=args.seed)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if y is not None:
            desc += ", scored on the task's targets (accuracy = recall)"
    check_elements("inputs", (X.shape[0], X.shape[1], cell.n), what="T x B x n")
    if args.horizon is not None and args.horizon > X.shape[0]:
        raise ValueError(f"--horizon: expected an integer in [1, {X.shape[0]}] (the number of "
                         f"input steps), found {args.horizon}")
    if args.tolerance_accuracy is not None and y is None:
        raise ValueError("--tolerance-accuracy: expected labels (--inputs with key y, or a "
                         "memorization checkpoint), found none")
    quiet = args.quiet or args.json
    certified = True
    try:     # one step of the certified bound: is it implemented for this cell?
        certified_bound(cell, cell, X[:1, :1], tier=args.tier)
    except NotImplementedError as exc:
        if args.tolerance is not None:
            raise NotImplementedError(f"--tolerance: the recommendation uses the certified "
                                      f"bound, which is not available for the {cell.kind} "
                                      f"cell: {exc}") from None
        certified = False
        cols = "certified and certified-accuracy columns" if y is not None else \
            "certified column"
        notes = notes + [f"{cols} n/a: {' '.join(str(exc).split())}"]
    res = _Result()
    res.cell, res.meta, res.X, res.desc, res.y = cell, meta, X, desc, y
    res.rows = analyze_ranks(cell, X, ranks=ranks, y=y, tier=args.tier, quiet=quiet,
                             certified=certified)
    res.task = res.full_accuracy = res.acc_rec = res.rec = None
    if y is not None:
        from rnnperturb.bounds.recall import label_task
        res.task = label_task(cell, X, y)
        res.full_accuracy = labelled_accuracy(cell, res.task)
        if args.tolerance_accuracy is not None:
            res.acc_rec = recommend_accuracy(res.rows, res.full_accuracy,
                                             tolerance=args.tolerance_accuracy)
    if args.tolerance is not None:
        res.rec = recommend_rank(cell, X, tolerance=args.tolerance, horizon=args.horizon,
                                 method="certified", tier=args.tier)
    res.alloc = _allocation(args, res, certified) if args.budget_params is not None else None
    res.sets, more = _set_rows(args, cell, X, res.task, quiet)
    res.set_recs = (_set_recommendations(args, res, ranks, quiet)
                    if res.acc_rec is not None and res.sets else [])
    res.notes = notes + more
    res.export = _export(args, res) if args.export is not None else None
    return res


def _allocation(args, res, certified) -> dict:
    """``--budget-params``: :func:`rnnperturb.allocate_ranks` (exact criterion) and the
    certified bound and accuracy of the network it chooses."""
    from rnnperturb.bounds.trajectory import certified_bound
    from rnnperturb.perturb.low_rank import truncate_svd
    from rnnperturb.report.allocation import allocate_ranks
    from rnnperturb.report.rank_analysis import _capped_max, labelled_accuracy, sound_cap
    cell, X = res.cell, res.X
    a = allocate_ranks(cell, X, budget_params=args.budget_params, method="exact")
    out = {"budget_params": a.budget_params, "rank": a.rank, "params": None,
           "compression_ratio": None, "exact_max": None, "certified_max": None,
           "accuracy": None, "evaluations": len(a.evidence)}
    if a.rank is not None:
        small = truncate_svd(cell, rank=a.rank)
        out.update(params=a.params, compression_ratio=a.compression_ratio,
                   exact_max=a.exact_max)
        if certified:
            out["certified_max"] = _capped_max(certified_bound(cell, small, X, tier=args.tier),
                                               sound_cap(cell))
        if res.task is not None:
            out["accuracy"] = labelled_accuracy(small, res.task)
    return out


def _set_bound_options(args) -> dict:
    """The set bound's options from ``--box-refine`` and ``--one-sided`` (the same for
    every --bits/--drift row and recommendation; chords where tighter, as
    :func:`rnnperturb.bounds.set_bound.set_bound` by default)."""
    return {"box_refine": "auto" if args.box_refine else False,
            "one_sided": bool(args.one_sided), "chords": True}


def _set_items(args):
    from rnnperturb.bounds.set_recall import GaussianNoise
    from rnnperturb.perturb.sets import drift, quantization
    items = []
    for b in args.bits_list:
        items.append(("bits", b, lambda c, b=b: quantization(c, bits=b, rounding=args.rounding)))
    for d in args.drift_list:
        items.append(("drift", d, lambda c, d=d: drift(c, rel=d)))
    for sd in args.noise_list:
        items.append(("noise_std", sd,
                      lambda c, sd=sd: GaussianNoise(std=sd, confidence=args.confidence)))
    return items


def _set_rows(args, cell, X, task, quiet):
    r"""Certified and measured answers for every ``--bits`` / ``--drift`` / ``--noise-std``
    value, on the network as given (full rank).

    Certified: :func:`rnnperturb.set_bound` (quantization with ``--rounding``, drift) or
    :func:`rnnperturb.noise_bound` (at ``1 - (1 - confidence) / B``, so that the maximum
    over the B sequences holds jointly) and, with labels,
    :func:`rnnperturb.bounds.set_recall.certified_set_recall` (the same bounds in the
    margin test). Measured: ``quantize`` (round-to-nearest), ``--samples`` seeded box
    vertices of the drift set, ``--samples`` seeded noise draws."""
    items = _set_items(args)
    if not items:
        return [], []
    from rnnperturb.bounds.recall import recall_margins
    from rnnperturb.bounds.set_recall import (GaussianNoise, _apply, _recalls,
                                              certified_set_recall)
    from rnnperturb.bounds.set_bound import set_bound
    from rnnperturb.perturb.elementwise import quantize
    from rnnperturb.report.progress import progress
    from rnnperturb.report.rank_analysis import _capped_max, sound_cap
    from rnnperturb.stats.noise_bound import noise_bound
    from rnnperturb._checks import as_generator

    c64 = cell.astype(np.float64)
    X64 = np.asarray(X, np.float64)
    H = c64.run(X64)
    cap = sound_cap(c64)
    B = X64.shape[1]
    scored = None if task is None else np.asarray(task.recall, bool).any(axis=0)
    margins, notes, rows = None, [], []
    na = None
    for kind, value, make in progress(items, desc="set certificates", quiet=quiet):
        S = make(c64)
        # measured: the members tried
        if kind == "bits":
            members = [quantize(c64, bits=value)]
        else:
            rng = as_generator(args.seed)
            members = [_apply(c64, S.sample(c64, rng)) for _ in range(args.samples)]
        dev = max(float(np.linalg.norm(m.run(X64) - H, axis=-1).max()) for m in members)
        row = {"set": kind, "value": value, "measured_max": dev, "members": len(members),
               "one_sided": bool(args.one_sided)}
        if kind == "bits":
            row["rounding"] = args.rounding
        if kind == "noise_std":
            row["confidence"] = args.confidence
        if task is not None:
            accs = [float(np.mean(_recalls(m, task)[scored])) for m in members]
            row["accuracy"], row["accuracy_min"] = float(np.mean(accs)), float(min(accs))
        cmax = cacc = None
        if na is None:
            try:
                if task is not None:
                    if margins is None:
                        margins = recall_margins(c64, task)
                    r = certified_set_recall(c64, S, task, margins=margins, samples=0,
                                             **_set_bound_options(args))
                    bound = np.asarray(r.bound)
                    cacc = float(np.mean(np.asarray(r.certified)[scored]))
                elif isinstance(S, GaussianNoise):
                    bound = noise_bound(c64, X64, std=value,
                                        confidence=1.0 - (1.0 - args.confidence) / B,
                                        one_sided=args.one_sided)
                else:
                    bound = set_bound(c64, S, X64, **_set_bound_options(args))
                cmax = _capped_max(bound, cap)
            except NotImplementedError as exc:
                na = ' '.join(str(exc).split())
                notes.append(f"set certificates n/a for the {cell.kind} cell: {na}")
        row["certified_max"] = cmax
        if task is not None:
            row["certified_accuracy"] = cacc
        rows.append(row)
    return rows, notes


def _set_recommendations(args, res, ranks, quiet) -> list:
    r"""``--tolerance-accuracy`` with ``--bits`` / ``--drift`` / ``--noise-std``: for each set,
    a rank whose truncated network provably keeps every prediction the full network gets
    right for *every* member of the set built from the truncated weights (quantization:
    that network's own grid), by :func:`rnnperturb.certified_safe_rank` with
    ``perturbation=`` on those sequences: a sweep over ``--ranks``, else its bisection
    (a certified rank, not proven the smallest)."""
    from rnnperturb.bounds.recall import certified_safe_rank
    from rnnperturb.bounds.set_recall import _recalls, _subset
    from rnnperturb.perturb.low_rank import truncate_svd
    from rnnperturb.perturb.cost import compression_cost
    cell, task = res.cell, res.task
    c64 = cell.astype(np.float64)
    scored = np.asarray(task.recall, bool).any(axis=0)
    keep = np.flatnonzero(_recalls(c64, task) & scored)
    n_scored = max(int(scored.sum()), 1)             # certified accuracy over the scored ones
    out = []
    for kind, value, make in _set_items(args):
        rec = {"set": kind, "value": value, "rank": None, "params": None,
               "compression_ratio": None, "search": None, "ranks_evaluated": [],
               "certified_accuracy": [], "sequences": int(keep.size),
               "one_sided": bool(args.one_sided)}
        if kind == "bits":
            rec["rounding"] = args.rounding
        if kind == "noise_std":
            rec["confidence"] = args.confidence
        out.append(rec)
        if keep.size == 0:
            continue
        try:
            sr = certified_safe_rank(c64, _subset(task, keep), ranks=ranks, perturbation=make,
                                     samples=args.samples, seed=args.seed, quiet=quiet,
                                     **_set_bound_options(args))
        except NotImplementedError:        # noted once by the set rows
            continue
        rec.update(search=sr.search, ranks_evaluated=[int(r) for r in sr.ranks],
                   certified_accuracy=[round(float(a) * keep.size) / n_scored
                                       for a in sr.certified_accuracy])
        if sr.certified_safe_rank is not None:
            r = sr.certified_safe_rank
            cost = compression_cost(cell, truncate_svd(cell, rank=r))
            rec.update(rank={k: r for k in cell.recurrent_names}, params=int(cost.params),
                       compression_ratio=float(cost.ratio_params))
    return out


def _export(args, res) -> dict:
    """Write the chosen truncation (``--export-rank``, else the accuracy recommendation,
    else the deviation recommendation) to ``--export`` in the input's format."""
    from rnnperturb.perturb.low_rank import truncate_svd
    cell = res.cell
    if args.export_rank is not None:
        rank, why = {k: args.export_rank for k in cell.recurrent_names}, "--export-rank"
    elif res.acc_rec is not None and res.acc_rec.rank is not None:
        rank, why = res.acc_rec.rank, "--tolerance-accuracy recommendation (measured)"
    elif res.rec is not None and res.rec.rank is not None:
        rank, why = res.rec.rank, "--tolerance recommendation (certified deviation)"
    elif res.alloc is not None and res.alloc["rank"] is not None:
        rank, why = res.alloc["rank"], "--budget-params allocation (exact deviation)"
    else:
        raise ValueError("--export: expected a recommended rank to export, found none (no "
                         "evaluated rank meets the tolerance); give --export-rank")
    small = truncate_svd(cell, rank=rank)
    path = args.export
    try:
        if os.path.splitext(path)[1].lower() == ".npz":
            from rnnperturb.io.schema import save
            save(path, small, **res.meta)
            fmt = "npz checkpoint (rnnperturb schema)"
        else:
            import torch
            from rnnperturb.io.pytorch import to_torch
            torch.save(to_torch(small), path)
            fmt = "PyTorch state_dict (the input's keys)"
    except OSError as exc:
        why_err = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise _OutputError(f"--export: expected to write {path!r}, found an error "
                           f"({why_err})") from None
    return {"path": path, "rank": dict(rank), "format": fmt, "chosen_by": why}


def _fmt(v, spec: str = ".4g", none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def _set_name(row: dict) -> str:
    """``8 bits, any rounding`` / ``drift |dW| <= 0.001|W|`` / ``noise std 0.0001 (99%)``
    (``, one-sided`` appended with ``--one-sided``)."""
    tail = ", one-sided" if row.get("one_sided") else ""
    if row["set"] == "bits":
        return f"{row['value']} bits, {row['rounding']} rounding{tail}"
    if row["set"] == "drift":
        return f"drift |dW| <= {row['value']:g}|W|{tail}"
    return f"noise std {row['value']:g} ({100 * row['confidence']:g}%){tail}"


def _rank_text(rank: dict) -> str:
    """``r`` for the same rank on every recurrent matrix, else ``r1/r2/...`` (in the order
    of the |dW| columns)."""
    vals = list(rank.values())
    return str(vals[0]) if len(set(vals)) == 1 else "/".join(str(v) for v in vals)


def _analyze(args) -> str:
    _check_options(args)
    if sys.stdout is None:     # fail before the (possibly long) computation
        raise _OutputError("stdout: expected a writable standard output, found it closed "
                           "(nothing was computed)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = _compute(args)
    cell, rows, notes = res.cell, res.rows, res.notes
    labels = res.y is not None
    seen = []
    for w in caught:
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())}"
        if text not in seen:
            seen.append(text)
    dt = str(cell.dtype)
    if args.json:
        out = {"file": args.file, "cell": cell.kind, "n": cell.n, "m": cell.m, "dtype": dt,
               "inputs": res.desc, "notes": notes, "warnings": seen}
        if labels:
            out["full_accuracy"] = res.full_accuracy
        out["rows"] = []
        for r in rows:
            d = r.as_dict()
            if not labels:
                del d["accuracy"], d["certified_accuracy"]
            out["rows"].append(d)
        if res.rec is not None:
            rec = res.rec
            out["recommendation"] = {"rank": rec.rank, "certified_max": rec.value,
                                     "params": rec.params,
                                     "compression_ratio": rec.compression_ratio,
                                     "tolerance": rec.tolerance,
                                     "horizon": rec.horizon}
        if res.acc_rec is not None:
            out["accuracy_recommendation"] = res.acc_rec.as_dict()
        if res.alloc is not None:
            out["allocation"] = res.alloc
        if res.sets:
            out["sets"] = res.sets
        if res.set_recs:
            out["set_recommendations"] = res.set_recs
        if res.export is not None:
            out["export"] = res.export
        return json.dumps(_json_safe(out), indent=1, allow_nan=False) + "\n"
    lines = [f"{args.file}: {cell.kind} cell, n={cell.n}, m={cell.m}, {cell.n_params} "
             f"parameters, {dt}",
             f"inputs: {res.desc}"]
    lines += [f"note: {note}" for note in notes]
    lines += [f"warning: {w}" for w in seen]
    mats = "/".join(cell.recurrent_names)
    rw = max([6] + [len(_rank_text(r.rank)) for r in rows])
    lines.append(f"{'rank':>{rw}} {'ratio':>7} {'|dW|_2 (' + mats + ')':>20} {'|dW|_F':>16} "
                 f"{'exact(' + dt + ')':>16} {'1st-order(' + dt + ')':>20} "
                 f"{'certified(exact arith.)':>24}"
                 + ("" if not labels else f" {'accuracy':>9} {'cert.acc':>9}"))
    for r in rows:
        lines.append(f"{_rank_text(r.rank):>{rw}} {r.compression_ratio:7.3f} "
                     f"{_fmt_mat(r.dW_spectral):>20} "
                     f"{_fmt_mat(r.dW_frobenius):>16} {r.exact_max:16.4g} "
                     f"{r.first_order_max:20.4g} {_fmt(r.certified_max):>24}"
                     + ("" if not labels else
                        f" {r.accuracy:9.4f} {_fmt(r.certified_accuracy, '9.4f'):>9}"))
    lines.append("deviation columns: max over time and sequences of ||h'_t - h_t||_2; "
                 "ratio = stored parameters compressed / original")
    if labels:
        lines.append(f"accuracy: fraction of the scored sequences right at every scored step "
                     f"(float64 run of the weights; full network {res.full_accuracy:.4f}); "
                     f"cert.acc: fraction right at full rank and proven to keep the prediction "
                     f"at every scored step (certified bound x readout's ||V_y - V_j|| below "
                     f"the margin)")
    if all(r.certified_max is None for r in rows):
        lines.append(f"trajectories: exact and 1st-order are the {dt} runs of the cell; no "
                     f"certified bound (see the note)")
    else:
        lines.append(f"trajectories: exact and 1st-order are the {dt} runs of the cell; "
                     f"certified bounds the exact-arithmetic runs of the same weights"
                     + (" (float32 rounding not included)" if dt == "float32" else ""))
    if res.rec is not None:
        rec = res.rec
        if rec.rank is None:
            lines.append(f"recommendation: no rank below full keeps the certified deviation "
                         f"<= {rec.tolerance:g} over {rec.horizon} steps")
        else:
            lines.append(f"recommendation: rank {rec.rank} keeps the certified deviation <= "
                         f"{rec.tolerance:g} over {rec.horizon} steps (bound {rec.value:.4g}, "
                         f"{rec.params} stored parameters, ratio {rec.compression_ratio:.3f})")
    if res.acc_rec is not None:
        a = res.acc_rec
        if a.rank is None:
            lines.append(f"recommendation (accuracy): no evaluated rank loses at most "
                         f"{a.tolerance:g} of accuracy (full {a.full_accuracy:.4f})")
        else:
            lines.append(f"recommendation (accuracy, measured): rank {_rank_text(a.rank)} "
                         f"loses at most {a.tolerance:g} (accuracy {a.accuracy:.4f}, full "
                         f"{a.full_accuracy:.4f}; {a.params} stored parameters, ratio "
                         f"{a.compression_ratio:.3f})")
        if a.certified_rank is None:
            why = ("no certified accuracies" if all(r.certified_accuracy is None for r in rows)
                   else "no evaluated rank is proven to keep every correct prediction")
            lines.append(f"recommendation (accuracy, certified): n/a ({why})")
        else:
            lines.append(f"recommendation (accuracy, certified): rank "
                         f"{_rank_text(a.certified_rank)} provably loses none (certified "
                         f"accuracy {a.certified_accuracy:.4f} = full; {a.certified_params} "
                         f"stored parameters, ratio {a.certified_compression_ratio:.3f})")
    if res.alloc is not None:
        al = res.alloc
        if al["rank"] is None:
            lines.append(f"allocation: no configuration fits {al['budget_params']} stored "
                         f"parameters (rank 0 everywhere stores more)")
        else:
            lines.append(f"allocation (--budget-params {al['budget_params']}): rank "
                         f"{_rank_text(al['rank'])} ({mats}), {al['params']} stored "
                         f"parameters, ratio {al['compression_ratio']:.3f}: exact max deviation "
                         f"{al['exact_max']:.4g}, certified {_fmt(al['certified_max'])}"
                         + ("" if al["accuracy"] is None else
                            f", accuracy {al['accuracy']:.4f}")
                         + f" (greedy search, {al['evaluations']} networks evaluated)")
    if res.sets:
        lines.append("set certificates (the network as given; certified: every member of the "
                     "set, noise with the stated confidence jointly over all sequences; "
                     "measured: the members tried):")
        lines.append(f"{'set':>28} {'certified':>12} {'measured':>12}"
                     + ("" if not labels else f" {'cert.acc':>9} {'accuracy':>9}"))
        for row in res.sets:
            name = _set_name(row)
            lines.append(f"{name:>28} {_fmt(row['certified_max']):>12} "
                         f"{row['measured_max']:12.4g}"
                         + ("" if not labels else
                            f" {_fmt(row['certified_accuracy'], '9.4f'):>9} "
                            f"{row['accuracy']:9.4f}"))
        lines.append(f"measured: quantize() (round-to-nearest) for bits; {args.samples} seeded "
                     f"box vertices (drift) or draws (noise), seed {args.seed}: max deviation, "
                     f"mean accuracy")
    for rec in res.set_recs:
        name = _set_name(rec)
        how = ("sweep of --ranks" if rec["search"] == "sweep" else
               "bisection over ranks: a certified rank, not proven the smallest")
        if rec["search"] is None:
            lines.append(f"recommendation (accuracy, certified under {name}): n/a (no "
                         f"certificate over the set for this cell, or no correct prediction)")
        elif rec["rank"] is None:
            lines.append(f"recommendation (accuracy, certified under {name}): no evaluated rank "
                         f"is proven to keep every correct prediction for every member "
                         f"(ranks {','.join(map(str, rec['ranks_evaluated']))}; {how})")
        else:
            lines.append(f"recommendation (accuracy, certified under {name}): rank "
                         f"{_rank_text(rec['rank'])}, then any member of the set around its "
                         f"weights, provably loses none ({rec['params']} stored parameters, "
                         f"ratio {rec['compression_ratio']:.3f}; {how})")
    if res.export is not None:
        e = res.export
        lines.append(f"exported: rank {_rank_text(e['rank'])} ({e['chosen_by']}) to "
                     f"{e['path']} as a {e['format']}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rnnperturb`` (errors raise instead of exiting)."""
    p = _Parser(prog="rnnperturb", description="Perturbation analysis of RNN recurrent weights.",
                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    a = sub.add_parser("analyze", help="rank-by-rank deviation analysis of a weights file",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("file", help=".npz checkpoint (project schema) or PyTorch nn.RNN (tanh)/"
                                "nn.GRU/nn.LSTM state_dict, any num_layers, optional Linear head "
                                "(.pt/.pth, read with weights_only=True); a regular file")
    a.add_argument("--inputs", help=".npz with key X, shape (T, B, m) or (T, m), and optional "
                                    "integer labels y, shape (B,) scored at the last step or "
                                    "(T, B) scored where >= 0 (adds accuracy and certified "
                                    "accuracy columns)")
    a.add_argument("--ranks", help="ranks, e.g. '0,8,16', '0:64:8' or '64:0:-8' (STOP "
                                   "included; default every rank)")
    a.add_argument("--tier", choices=("fast", "tight"), default="tight",
                   help="certified-bound tier (default tight; fast is cheaper but "
                        "often vacuous on trained, expanding nets)")
    a.add_argument("--tolerance", type=float,
                   help="allowed max deviation for a recommendation (finite, > 0)")
    a.add_argument("--horizon", type=int,
                   help="horizon (steps, 1..T of the inputs) for the recommendation")
    a.add_argument("--budget-params", type=int, metavar="N",
                   help="allocate a rank to every recurrent matrix (every layer's gate "
                        "blocks) within N stored parameters, minimising the exact max "
                        "deviation (greedy search, never over N)")
    a.add_argument("--tolerance-accuracy", type=float, metavar="LOSS",
                   help="with labels: recommend the smallest rank losing at most LOSS of "
                        "accuracy (0.01 = one point, measured) and the smallest that "
                        "provably loses none (certified)")
    a.add_argument("--export", metavar="PATH",
                   help="write the chosen truncation (--export-rank, else the recommendation) "
                        "as a PyTorch state_dict with the input's keys (.pt input) or an .npz "
                        "checkpoint (.npz input)")
    a.add_argument("--export-rank", type=int, metavar="R",
                   help="rank (every recurrent matrix) to export")
    a.add_argument("--bits", metavar="B[,B...]",
                   help="certified and measured deviation (and accuracy) for every rounding "
                        "of the recurrent matrices onto the B-bit grid of quantize()")
    a.add_argument("--rounding", choices=("any", "nearest"), default="any",
                   help="roundings covered by --bits (default any: stochastic, toward zero...)")
    a.add_argument("--drift", metavar="D[,D...]",
                   help="the same for every drift |dW_ij| <= D |W_ij|")
    a.add_argument("--noise-std", metavar="S[,S...]",
                   help="the same for Gaussian weight noise of std S, at --confidence")
    a.add_argument("--box-refine", action="store_true",
                   help="SDP-dual refinement of the --bits/--drift bounds (set_bound's "
                        "box_refine='auto'): tighter, several times slower")
    a.add_argument("--one-sided", action="store_true",
                   help="centre the one-signed activation remainders in the --bits/--drift/"
                        "--noise-std bounds (set_bound's one_sided=True): tighter on saturated "
                        "trained nets")
    a.add_argument("--confidence", type=float, default=0.99,
                   help="confidence of the noise statements (default 0.99)")
    a.add_argument("--samples", type=int, default=8,
                   help="seeded drift vertices / noise draws measured (default 8)")
    a.add_argument("--nonlinearity", help="for PyTorch files: only 'tanh' is supported")
    a.add_argument("--seed", type=int, default=0,
                   help="seed (>= 0) of the default inputs and of the measured samples")
    a.add_argument("--json", action="store_true",
                   help="machine-readable output: strict JSON, non-finite numbers as null")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _run(argv) -> int:
    if argv is not None:
        argv = list(argv)
        bad = [a for a in argv if not isinstance(a, str)]
        if bad:
            raise _UsageError(f"argv: expected strings, found {type(bad[0]).__name__} "
                              f"{bad[0]!r}")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help (printed through _write_stdout)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    if args.command != "analyze":
        raise _UsageError("expected a command: analyze")
    with np.errstate(all="ignore"):      # results are checked for finiteness instead
        text = _analyze(args)
    _write_stdout(text)
    return EXIT_OK


def _interrupted(restore: bool) -> None:
    """One line for Ctrl-C; a further Ctrl-C is ignored while it is written and, when
    running as the program (``restore=False``), until the process exits."""
    import signal
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):   # not the main thread
        old = None
    try:
        _err("rnnperturb: interrupted")
    finally:
        if old is not None and restore:
            signal.signal(signal.SIGINT, old)


def main(argv=None) -> int:
    """Run the command line; returns the exit status (see the module docstring).

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).
    """
    try:
        return _run(argv)
    except _UsageError as exc:
        _err(f"rnnperturb: usage error: {exc} (see 'rnnperturb analyze --help')")
        return EXIT_USAGE
    except ValueError as exc:
        _err(f"rnnperturb: error: {' '.join(str(exc).splitlines())}")
        return EXIT_USAGE
    except _OutputError as exc:
        _err(f"rnnperturb: error: {exc}")
        return EXIT_OUTPUT
    except _BrokenPipe:
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _interrupted(restore=argv is not None)
        return EXIT_INTERRUPTED
    except MemoryError:
        _err("rnnperturb: error: out of memory (try fewer --ranks or smaller --inputs)")
        return EXIT_OUTPUT
    except NotImplementedError as exc:   # a cell type that an analysis does not cover yet
        _err(f"rnnperturb: error: {' '.join(str(exc).split())}")
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("RNNPERTURB_TRACEBACK", "") not in ("", "0"):
            raise
        _err(f"rnnperturb: internal error: {type(exc).__name__}: "
             f"{' '.join(str(exc).split())[:300]} (set RNNPERTURB_TRACEBACK=1 for details; "
             f"please report)")
        return EXIT_OUTPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
