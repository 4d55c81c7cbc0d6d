"""Shared preamble of the derivation notebooks.

Importing it selects the headless matplotlib backend (except inside a Jupyter
kernel, whose inline backend shows the figures) and makes ``rnnperturb``
importable from the repository when the package is not installed;
:func:`output_dir` reads ``--out`` (default: a fresh temporary directory) and
starts the notebook's timer.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:      # a script or CI: headless; Jupyter keeps its inline backend
    matplotlib.use("Agg")
try:
    import rnnperturb  # noqa: F401
except ImportError:  # running from a clone without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def output_dir(tag: str, parser: argparse.ArgumentParser | None = None):
    """Return ``(OUT, args, T0)``: the output directory for notebook ``tag``,
    the parsed arguments (``parser`` may add its own) and the start time."""
    parser = parser or argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_known_args()[0]
    out = Path(args.out or tempfile.mkdtemp(prefix=f"deriv{tag}_"))
    out.mkdir(parents=True, exist_ok=True)
    return out, args, time.perf_counter()
