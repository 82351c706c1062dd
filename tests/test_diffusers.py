"""diffusers' schedulers against lindiff's exact laws (runs when the 'diffusers' extra is installed).

Known diffusers bugs are written as expected failures with the discrepancy lindiff measures; if a
diffusers release fixes one, the test reports XPASS.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.extras
diffusers = pytest.importorskip("diffusers", reason="the optional extra lindiff[diffusers] is not installed")
pytest.importorskip("torch")

import lindiff as ld  # noqa: E402
from lindiff.adapters.diffusers import check_scheduler, reference_for  # noqa: E402

X = ld.Gaussian.from_spectrum([2.0, 0.7, 0.1], mean=[0.5, 0.0, -0.5]).sample(10, 0)


def _schedulers():
    from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler)

    return [
        ("DDPM fixed_small leading", lambda: DDPMScheduler(clip_sample=False), 50, {}),
        ("DDPM fixed_large leading", lambda: DDPMScheduler(clip_sample=False, variance_type="fixed_large"), 50, {}),
        ("DDPM fixed_small trailing", lambda: DDPMScheduler(clip_sample=False, timestep_spacing="trailing"), 50, {}),
        ("DDPM fixed_large trailing (noisy last step)",
         lambda: DDPMScheduler(clip_sample=False, variance_type="fixed_large", timestep_spacing="trailing"), 25, {}),
        ("DDPM all 1000 steps", lambda: DDPMScheduler(clip_sample=False), 1000, {}),
        ("DDIM eta=0 leading", lambda: DDIMScheduler(clip_sample=False), 20, {"eta": 0.0}),
        ("DDIM eta=1 leading", lambda: DDIMScheduler(clip_sample=False), 20, {"eta": 1.0}),
        ("DDIM eta=0 trailing", lambda: DDIMScheduler(clip_sample=False, timestep_spacing="trailing"), 20, {"eta": 0.0}),
        ("DDIM eta=1 trailing", lambda: DDIMScheduler(clip_sample=False, timestep_spacing="trailing"), 20, {"eta": 1.0}),
        ("Euler linspace", lambda: EulerDiscreteScheduler(), 25, {}),
        ("Euler leading", lambda: EulerDiscreteScheduler(timestep_spacing="leading"), 25, {}),
        ("Euler Karras sigmas", lambda: EulerDiscreteScheduler(use_karras_sigmas=True), 25, {}),
        ("Euler ancestral", lambda: EulerAncestralDiscreteScheduler(), 25, {}),
        ("DPM-Solver++ 2M, 20 steps", lambda: DPMSolverMultistepScheduler(), 20, {}),
        ("DPM-Solver++ 2M, 10 steps", lambda: DPMSolverMultistepScheduler(), 10, {}),
    ]


@pytest.mark.parametrize("name,make,steps,kw", _schedulers(), ids=[c[0] for c in _schedulers()])
def test_scheduler_matches_lindiff_exactly(name, make, steps, kw):
    result = check_scheduler(make(), steps, X, **kw)
    assert result, result.message
    # and the discrepancy is at float32 level, far from the tolerance's edge for a correct sampler
    assert result.cov_error < 1e-4 and result.mean_error < 1e-4


def test_statistical_mode_on_ddpm():
    from diffusers import DDPMScheduler

    result = check_scheduler(DDPMScheduler(clip_sample=False), 50, X, mode="statistical", n=20_000, rng=3)
    assert result, result.message


@pytest.mark.xfail(reason="diffusers#11347/#12633: DDIMScheduler.step hard-codes prev_timestep = t - T//n, wrong for "
                          "'linspace' spacing; lindiff measures ~1% mean and ~3% covariance error at 20 steps",
                   strict=False)
def test_known_bug_ddim_linspace_previous_timestep():
    from diffusers import DDIMScheduler

    result = check_scheduler(DDIMScheduler(clip_sample=False, timestep_spacing="linspace"), 20, X, eta=0.0)
    print(result.message)
    assert result, result.message


@pytest.mark.xfail(reason="diffusers#14569: DDPMScheduler(variance_type='fixed_large_log') takes ** 0.5 of a log "
                          "variance and returns NaN; lindiff reports non-finite output", strict=False)
def test_known_bug_fixed_large_log_nan():
    from diffusers import DDPMScheduler

    result = check_scheduler(DDPMScheduler(clip_sample=False, variance_type="fixed_large_log"), 50, X)
    print(result.message)
    assert result, result.message


def test_oracle_measures_the_known_bugs():
    """The expected failures above fail for the documented reason (not for an unrelated one)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    ddim = check_scheduler(DDIMScheduler(clip_sample=False, timestep_spacing="linspace"), 20, X, eta=0.0)
    if not ddim:
        assert 1e-3 < ddim.mean_error < 0.1 and 1e-3 < ddim.cov_error < 0.2
    nan = check_scheduler(DDPMScheduler(clip_sample=False, variance_type="fixed_large_log"), 50, X)
    if not nan:
        assert "NaN" in nan.message


def test_unsupported_configurations_are_refused():
    from diffusers import DDPMScheduler

    sch = DDPMScheduler()  # clip_sample=True by default: nonlinear
    sch.set_timesteps(10)
    with pytest.raises(ValueError, match="clip_sample"):
        reference_for(sch, 3)
