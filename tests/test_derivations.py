"""The derivation notebooks: paired with jupytext, converted to .ipynb and executed headless.

Each notebook is a ``py:percent`` script (the source of truth, paired as
``formats: ipynb,py:percent``). The test converts it with jupytext to a real
``.ipynb`` in a temporary directory (what ``jupytext --to ipynb`` writes and
Jupyter opens), validates it with nbformat, and runs its code cells in order in
a fresh subprocess, as a kernel would: working directory ``derivations/``, no
``__file__``, the kernel's ``-f connection.json`` in ``sys.argv``. Each notebook
asserts its own numerical checks (symbolic vs library, mpmath, Monte Carlo), so a
failed cell is a failed derivation. Without jupytext (it is in the ``test``
extra; CI installs it and fails without it) the scripts run as plain scripts.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DERIV = ROOT / "derivations"
NOTEBOOKS = sorted(DERIV.glob("0*.py"))

try:
    import jupytext
    import nbformat
except ImportError:                  # a user's machine without the test extra
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        raise
    jupytext = nbformat = None
needs_jupytext = pytest.mark.skipif(jupytext is None, reason="jupytext is not installed")

# Runs the code cells of an .ipynb in order in one namespace, like a Jupyter kernel.
_KERNEL = r"""
import os, sys
import nbformat
ipynb, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(ipynb, as_version=4)
os.chdir(sys.argv[3])                      # Jupyter starts the kernel in the notebook's folder
sys.path.insert(0, "")
sys.argv = ["ipykernel_launcher.py", "-f", os.path.join(out, "kernel-0.json"), "--out", out]
ns = {"__name__": "__main__", "__builtins__": __builtins__}
for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code":
        exec(compile(cell.source, f"<{os.path.basename(ipynb)} cell {i}>", "exec"), ns)
"""


def test_all_notebooks_found():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names == ["01", "02", "03", "04", "05", "06", "07"]


@needs_jupytext
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_paired_and_round_trips(path):
    """Paired as ipynb + py:percent, and py -> notebook -> py gives the file back byte for
    byte, so opening and saving it in Jupyter does not rewrite the script."""
    text = path.read_text()
    nb = jupytext.reads(text, fmt="py:percent")
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert sum(c.cell_type == "code" for c in nb.cells) >= 3
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 3
    assert jupytext.writes(nb, fmt="py:percent") == text
    # the .ipynb round trip too (what a paired save in Jupyter goes through)
    again = jupytext.reads(jupytext.writes(nb, fmt="ipynb"), fmt="ipynb")
    assert jupytext.writes(again, fmt="py:percent") == text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(path, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "out"
    out.mkdir()
    if jupytext is None:
        cmd = [sys.executable, str(path), "--out", str(out)]
    else:
        ipynb = tmp_path / (path.stem + ".ipynb")
        jupytext.write(jupytext.read(path), ipynb)            # = jupytext --to ipynb
        nbformat.validate(nbformat.read(ipynb, as_version=4))  # a notebook Jupyter opens
        cmd = [sys.executable, "-c", _KERNEL, str(ipynb), str(out), str(DERIV)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"notebook {path.name[:2]} done" in proc.stdout
    assert list(out.glob("*.png")), "each notebook saves its figure to --out"
