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


# --- the oracle's own correctness (issue 12 §1, issue 11 item 10) ----------------------------------
@pytest.mark.parametrize("mean", [1e5, 1e6, 1e8, 1e12])
def test_exact_mode_passes_a_correct_loop_with_a_large_data_mean(mean):
    """The probe runs around the offset's scale, so a large mean no longer swamps the covariance."""
    process = ld.DDPM.linear(100)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([1.0, 1.0], mean=[mean, 0.0]), process)
    res = check_sampler(make_loop(process.betas, "ddpm"), model, "ddpm", variance="beta")
    assert res, res.message
    assert res.cov_error < 1e-12 and res.details["probe"].scale >= mean / 8
    # ... and a wrong coefficient at that magnitude is still caught
    bad = check_sampler(make_loop(process.betas, "ddpm", bug="wrong_variance"), model, "ddpm", variance="beta")
    assert not bad and bad.cov_error > 1e-4


def test_probe_affine_recovers_a_map_whose_offset_is_1e12_times_its_matrix(rng):
    A = rng.standard_normal((3, 3))
    b = 1e12 * rng.standard_normal(3)
    G = rng.standard_normal((3, 2))
    probe = probe_affine(lambda x, z: x @ A.T + b + z @ G.T, 3, noise_dim=2)
    assert np.abs(probe.matrix - A).max() < 1e-14 * 1e3 and np.abs(probe.noise_matrix - G).max() < 1e-11
    # a tiny matrix under a unit offset: probed at the offset's scale, and the precision is reported
    small = probe_affine(lambda x: x @ (1e-12 * A).T + 1.0, 3)
    np.testing.assert_allclose(small.matrix, 1e-12 * A, rtol=1e-12, atol=0)
    assert small.scale > 1e10 and 0 < small.precision < 1e-12


def test_check_sampler_answers_at_dynamic_range_1e24():
    """issue 11 item 10: reference eigenvalues ~8e216 used to raise LinAlgError inside W2."""
    process = ld.VP.linear(1e-6, 1000, 1)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([1e-12, 1e12, 1e-12, 1e12]), process)
    prog = ld.samplers.build_sampler(process, "exponential_integrator", 10, 0.05)
    run = program_loop(prog)
    res = check_sampler(run, model, "exponential_integrator", 10, t_min=0.05)
    assert res, res.message
    assert res.reference.eigenvalues.max() > 1e216 and np.isfinite(res.details["kl(user || lindiff)"])
    assert np.isfinite(res.details["w2(user, lindiff)"])


def program_loop(prog, scale=1.0):
    """A user loop written from a lindiff program (the oracle's statistics are under test, not the
    program); ``scale`` multiplies the noise (a wrong-variance mutant)."""
    process = prog.process

    def run(x, eps_model, noise):
        state = [np.array(x, float)] + [np.zeros_like(x, dtype=float) for _ in prog.slots[1:]]
        for st in prog.steps:
            regs = list(state) + [scale * noise(np.shape(x)) for _ in range(st.noises)]
            for stage in st.stages:
                y = sum(c * r for c, r in zip(stage.inputs, regs) if c != 0)
                a, s = float(process.alpha(stage.t)), float(process.sigma(stage.t))
                e = np.asarray(eps_model(y, stage.t))
                regs.append({"score": -e / s, "eps": e, "x0": (y - s * e) / a, "ax0": y - s * e}[stage.kind])
            state = [sum(c * r for c, r in zip(row, regs) if c != 0) + 0 * regs[0] for row in st.writes]
        return state[0]

    return run


def test_statistical_mode_accepts_a_correct_loop_on_a_near_singular_law():
    """The issue's reproducer: the law's second eigenvalue (~1e-16) is below the float64 cut-off and
    stored as 0, while the samples carry it; the null is the set of laws within the cut-off."""
    process = ld.DDPM.linear(200)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([1, 1e-12]), process)
    run = make_loop(process.betas, "ddpm", 1, "leading")
    for seed in range(5):
        res = check_sampler(run, model, "ddpm", 1, mode="statistical", n=2000, rng=seed, variance="beta")
        assert res, res.message
    bad = check_sampler(make_loop(process.betas, "ddpm", 1, "leading", bug="eps_coefficient"), model, "ddpm", 1,
                        mode="statistical", n=2000, rng=0, variance="beta")
    assert not bad


def _hard_cases(count, seed=0):
    """Correct loops on near-singular and ill-conditioned laws (cond up to 1e14, rotated bases, zero
    eigenvalues, 1..all steps, DDPM and DDIM)."""
    gen = np.random.default_rng(seed)
    for k in range(count):
        d = int(gen.integers(1, 4))
        T = int(gen.integers(5, 60))
        process = ld.DDPM.linear(T, 1e-4, min(0.3, 0.02 * 1000 / T))
        kind = ("near_singular", "ill_conditioned", "singular", "rotated")[k % 4]
        lam = {"near_singular": np.r_[1.0, np.full(d - 1, 1e-12)],
               "ill_conditioned": np.logspace(0, -float(gen.uniform(6, 14)), d),
               "singular": np.r_[1.0, np.zeros(d - 1)],
               "rotated": np.logspace(0, -float(gen.uniform(0, 12)), d)}[kind]
        Q = np.linalg.qr(gen.standard_normal((d, d)))[0] if kind == "rotated" else None
        mean = gen.normal(0, float(gen.choice([1.0, 1e3])), d)
        model = ld.GaussianScore(ld.Gaussian.from_spectrum(lam, Q, mean), process)
        steps = None if gen.random() < 0.3 else int(gen.integers(1, T + 1))
        spacing = str(gen.choice(["leading", "trailing", "linspace"]))
        sampler = str(gen.choice(["ddpm", "ddim"]))
        opts = {"spacing": spacing} if steps else {}
        if sampler == "ddpm":
            last = timesteps(T, steps, spacing)[-1] if steps else 0
            opts.update(variance="beta", final_noise=bool(last > 0))
            loop = make_loop(process.betas, "ddpm", steps, spacing)
        else:
            eta = float(gen.choice([0.0, 1.0]))
            opts["eta"] = eta
            loop = make_loop(process.betas, "ddim", steps, spacing, eta=eta)
        yield model, sampler, steps, opts, loop


def _false_alarms(cases, n, alpha, seed=0):
    rejected = 0
    total = 0
    for i, (model, sampler, steps, opts, loop) in enumerate(cases):
        res = check_sampler(loop, model, sampler, steps, mode="statistical", n=n, rng=seed + i, false_alarm=alpha, **opts)
        rejected += not res
        total += 1
    return rejected, total


def test_statistical_false_alarm_rate_on_near_singular_and_ill_conditioned_laws():
    """Measured false-alarm rate of correct loops stays within the documented bound (3 binomial
    standard errors of slack for the finite count)."""
    alpha = 0.1
    rejected, total = _false_alarms(_hard_cases(120), 500, alpha)
    assert rejected / total <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / total), f"{rejected} of {total} rejected"


@pytest.mark.slow
def test_statistical_false_alarm_rate_on_hard_laws_large():
    alpha = 0.01
    rejected, total = _false_alarms(_hard_cases(3000, seed=1), 1000, alpha, seed=10_000)
    assert rejected / total <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / total), f"{rejected} of {total} rejected"


def test_statistical_mode_still_detects_mutants_on_hard_laws():
    caught = 0
    for model, sampler, steps, opts, _ in _hard_cases(8, seed=3):
        process = model.process
        spacing = opts.get("spacing", "leading")
        bad = make_loop(process.betas, sampler, steps, spacing, bug="missing_sqrt", eta=opts.get("eta", 0.0))
        caught += not check_sampler(bad, model, sampler, steps, mode="statistical", n=2000, rng=0, **opts)
    assert caught >= 6


def test_float32_loop_is_judged_by_the_same_loop_at_float64():
    process = ld.DDPM.linear(1000)
    model = ld.LinearDenoiser.fit(ld.Gaussian.from_spectrum([2.0, 0.7, 0.1], mean=[0.5, 0, -0.5]).sample(8, 0), process)
    betas = process.betas
    opts = {"variance": "beta"}
    run32 = make_loop(betas, "ddpm", dtype=np.float32)
    run64 = make_loop(betas, "ddpm")
    res = check_sampler(run32, model, "ddpm", dtype=np.float32, run_float64=run64, **opts)
    assert res, res.message
    assert 0 < res.details["low_vs_float64"] < 1e-3 and res.cov_error < res.tolerance
    bad = check_sampler(make_loop(betas, "ddpm", bug="beta_index", dtype=np.float32), model, "ddpm", dtype=np.float32,
                        run_float64=make_loop(betas, "ddpm", bug="beta_index"), **opts)
    assert not bad


def test_roundoff_tolerance_model():
    from lindiff.testing import roundoff_tolerance

    assert roundoff_tolerance(np.float64, 1000) == 1e-10
    assert roundoff_tolerance(np.float32, 1000) == pytest.approx(40 * np.sqrt(1000) * np.finfo(np.float32).eps)
    assert roundoff_tolerance(np.float64, 10**9) > 1e-10  # the sqrt(K) term takes over for very long loops
    with pytest.raises(ValueError, match="floating"):
        roundoff_tolerance(np.int32, 10)


def test_sampler_configs_with_a_model_have_a_law():
    """Issue 11: ``sampler_configs(process)`` may draw "sde"/"ode" with t_min = 0, which has no law for a dense
    model singular at sigma = 0; given the model it leaves t_min = 0 out there (tests need not assume errors
    away)."""
    process = ld.VP.linear()
    model = ld.LinearDenoiser.fit(ld.Gaussian.from_spectrum([1.0, 0.5, 0.2]).sample(2, 0), process).to_dense()
    with pytest.raises(ValueError, match="undefined at t=0"):
        ld.sampling_law(model, process, "sde", t_min=0.0)

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        config = data.draw(lst.sampler_configs(process, model))
        if config["sampler"] in ("sde", "ode"):
            assert config["t_min"] > 0
        assert np.all(np.isfinite(ld.sampling_law(model, process, **config).cov))

    run()
