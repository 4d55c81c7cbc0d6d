"""Execute every derivation notebook headless, as a script in a subprocess.

Each notebook asserts its own numerical checks (symbolic vs library, mpmath,
Monte Carlo), so a non-zero exit status is a failed derivation."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "derivations").glob("0*.py"))


def test_all_notebooks_found():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(path, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(path), "--out", str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"notebook {path.name[:2]} done" in proc.stdout
    assert list(tmp_path.glob("*.png")), "each notebook saves its figure to --out"
