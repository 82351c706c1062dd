"""Run every derivation in derivations/: derive symbolically, then check against lindiff."""

import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derivations import _harness  # noqa: E402

NAMES = _harness.names()


def test_every_derivation_is_registered():
    assert {"optimal_denoiser", "gradient_flow", "losses", "tweedie", "sampler_steps", "continuous_laws",
            "divergences", "wishart", "replace_one", "sgd_moments", "collapse_time"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_derivation_agrees_with_lindiff(name):
    start = time.perf_counter()
    page = _harness.run(_harness.load(name), np.random.default_rng(2026))
    assert page.results, f"{name} recorded no result"
    assert page.checks, f"{name} checked nothing against lindiff"
    assert time.perf_counter() - start < 60
    text = page.render("text")
    latex = page.render("latex")
    assert page.title in text and "\\" in latex
