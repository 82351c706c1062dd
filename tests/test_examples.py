"""Smoke test: every example script runs with --small, prints a table and writes its figure."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.py") if not p.name.startswith("_"))
# examples that need an optional extra: (modules, extra)
NEEDS = {"diffusers_oracle": (("torch", "diffusers"), "diffusers"),
         "kdiffusion_oracle": (("torch", "k_diffusion"), "kdiffusion")}


@pytest.mark.parametrize("script", [pytest.param(p, marks=pytest.mark.extras) if p.stem in NEEDS else p for p in EXAMPLES],
                         ids=lambda p: p.stem)
def test_example_runs(script, tmp_path):
    modules, extra = NEEDS.get(script.stem, ((), ""))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: {script.name} needs the optional extra lindiff[{extra}]")
    proc = subprocess.run([sys.executable, str(script), "--small", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--" in proc.stdout  # a rendered table
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert list(tmp_path.glob("*.png")), "no figure written"
