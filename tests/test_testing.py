import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import lindiff as ld
from lindiff import mc
from lindiff.testing import NonAffineError, check_sampler, probe_affine
from lindiff.testing import strategies as lst
from reference_sampler import BUGS, make_loop, timesteps


def _model(T=60, d=3, N=8, seed=0):
    process = ld.DDPM.linear(T, 1e-4, 0.2)
    p0 = ld.Gaussian.from_spectrum([2.0, 0.7, 0.1][:d], mean=np.arange(d) * 0.5)
    return ld.LinearDenoiser.fit(p0.sample(N, seed), process)


def test_probe_affine_recovers_map_and_noise(rng):
    A = rng.standard_normal((3, 3))
    b = rng.standard_normal(3)
    G = rng.standard_normal((3, 2))
    probe = probe_affine(lambda x, z: x @ A.T + b + z @ G.T, 3, noise_dim=2)
    np.testing.assert_allclose(probe.matrix, A, atol=1e-14)
    np.testing.assert_allclose(probe.offset, b, atol=1e-14)
    np.testing.assert_allclose(probe.noise_cov, G @ G.T, atol=1e-14)
    with pytest.raises(NonAffineError):
        probe_affine(lambda x: np.tanh(x), 3)


@pytest.mark.parametrize("kind,steps,spacing,eta", [("ddpm", None, "leading", 0.0), ("ddpm", 12, "trailing", 0.0),
                                                     ("ddim", 10, "leading", 0.0), ("ddim", 10, "linspace", 1.0),
                                                     ("ddim", 7, "trailing", 0.4)])
def test_reference_implementation_passes_and_every_mutant_fails(kind, steps, spacing, eta):
    model = _model()
    process = model.process
    # diffusers-style loops add noise whenever the timestep value is > 0, so the last step is noisy when
    # the spacing ends above 0 ("trailing"): lindiff's final_noise option says the same
    last_t = timesteps(process.T, steps, spacing)[-1]
    opts = {"eta": eta} if kind == "ddim" else {"variance": "beta", "final_noise": bool(last_t > 0)}
    ok = check_sampler(make_loop(process.betas, kind, steps, spacing, eta=eta), model, kind, steps, spacing=spacing, **opts)
    assert ok, ok.message
    caught, silent = [], []
    for bug in BUGS:
        res = check_sampler(make_loop(process.betas, kind, steps, spacing, bug=bug, eta=eta), model, kind, steps,
                            spacing=spacing, **opts)
        (silent if res else caught).append(bug)
    # every bug that changes this configuration's equations must be caught; list the ones that cannot matter
    inert = {("ddpm", "ddim_prev_timestep"), ("ddim", "one_minus_alpha_bar"), ("ddim", "beta_index"),
             ("ddim", "skip_beta_ignored")}
    if steps is None:
        inert |= {("ddpm", "skip_beta_ignored")}
    if kind == "ddim" and eta == 0:
        inert |= {("ddim", "wrong_variance")}
    if kind == "ddim" and spacing == "leading":
        inert |= {("ddim", "ddim_prev_timestep")}
    if kind == "ddpm" and last_t > 0:
        inert |= {("ddpm", "noise_on_last_step")}  # the last step is noisy anyway
    unexpected = [b for b in silent if (kind, b) not in inert]
    assert not unexpected, f"mutants not caught: {unexpected}"
    assert len(caught) >= len(BUGS) - len(inert)


def test_ten_distinct_bugs_are_caught_somewhere():
    model = _model()
    configs = [("ddpm", 12, "trailing", 0.0), ("ddim", 10, "linspace", 1.0)]
    caught = set()
    for kind, steps, spacing, eta in configs:
        opts = {"eta": eta} if kind == "ddim" else {"final_noise": bool(timesteps(model.process.T, steps, spacing)[-1] > 0)}
        for bug in BUGS:
            if not check_sampler(make_loop(model.process.betas, kind, steps, spacing, bug=bug, eta=eta), model, kind,
                                 steps, spacing=spacing, **opts):
                caught.add(bug)
    assert len(caught) >= 10 and caught == set(BUGS)


def test_statistical_mode_detects_a_wrong_variance():
    model = _model()
    bad = check_sampler(make_loop(model.process.betas, "ddpm", bug="wrong_variance"), model, "ddpm",
                        mode="statistical", n=20_000, rng=1)
    assert not bad and bad.max_z > bad.threshold
    good = check_sampler(make_loop(model.process.betas, "ddpm"), model, "ddpm", mode="statistical", n=20_000, rng=1)
    assert good


@pytest.mark.slow
def test_statistical_false_alarm_rate_is_at_most_the_documented_bound():
    model = _model(T=20, d=2)
    run = make_loop(model.process.betas, "ddpm")
    rejections = sum(not check_sampler(run, model, "ddpm", mode="statistical", n=2000, rng=r, false_alarm=0.05)
                     for r in range(300))
    # Bonferroni: rate <= 0.05; allow 3 binomial standard errors
    assert rejections / 300 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)


def test_statistical_false_alarm_rate_quick():
    model = _model(T=20, d=2)
    run = make_loop(model.process.betas, "ddpm")
    rejections = sum(not check_sampler(run, model, "ddpm", mode="statistical", n=1000, rng=r, false_alarm=0.2)
                     for r in range(60))
    assert rejections / 60 <= 0.2 + 3 * np.sqrt(0.2 * 0.8 / 60)


def test_non_affine_loop_is_reported():
    model = _model()
    res = check_sampler(make_loop(model.process.betas, "ddpm", bug="clip_x0"), model, "ddpm")
    assert not res and "not affine" in res.message


# --- strategies ------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(lst.spd_matrices(4, max_condition=1e3))
def test_spd_strategy_controls_the_condition_number(S):
    lam = np.linalg.eigvalsh(S)
    assert lam.min() > 0 and lam.max() / lam.min() <= 1e3 * (1 + 1e-6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_exact_law_equals_monte_carlo_on_generated_cases(data):
    """Property: for generated processes, models and sampler configurations, the exact law is the
    law of the Monte Carlo interpreter (the oracle's foundation)."""
    process = data.draw(lst.processes())
    p0, X, model = data.draw(lst.linear_denoisers(process, d=data.draw(st.integers(1, 3))))
    cfg = data.draw(lst.sampler_configs(process))
    sampler = cfg.pop("sampler")
    # mc.sample has no exact simulation of the continuous SDE (it runs Euler-Maruyama), so its law is
    # compared with closed forms elsewhere (test_samplers); here every interpreter must be exact
    assume(sampler != "sde")
    steps = cfg.pop("steps")
    try:
        law = ld.sampling_law(model, process, sampler, steps, **cfg)
    except ValueError as exc:  # configurations the maths excludes must say why
        assert "undefined" in str(exc) or "sigma" in str(exc)
        return
    x = mc.sample(model, process, sampler, 4000, 0, steps, **cfg)
    z = mc.moment_z_scores(x, law)
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size, 1e-4)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_reference_ddpm_passes_on_generated_schedules(data):
    process = data.draw(lst.ddpm_processes(max_T=80))
    p0, X = data.draw(lst.training_sets(d=2))
    model = ld.LinearDenoiser.fit(X, process)
    steps = data.draw(st.one_of(st.none(), st.integers(1, process.T)))
    spacing = data.draw(st.sampled_from(["leading", "trailing", "linspace"]))
    res = check_sampler(make_loop(process.betas, "ddim", steps, spacing), model, "ddim", steps, spacing=spacing)
    assert res, res.message
