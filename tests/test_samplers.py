import math

import numpy as np
import pytest

import lindiff as ld
from lindiff import mc
from conftest import random_spd

CONTINUOUS = ["euler_maruyama", "exponential_integrator", "euler", "heun"]


def _data(rng, d=3):
    return ld.Gaussian(rng.standard_normal(d), random_spd(rng, d, cond=20, scale=2.0))


def _models(rng, process, p0):
    X = p0.sample(2, rng)  # N < d: rank-deficient fit (memorising regime)
    Y = p0.sample(8, rng)
    return {
        "population": ld.GaussianScore(p0, process),
        "fit_N<d": ld.LinearDenoiser.fit(X, process),
        "ridge": ld.LinearDenoiser.fit(Y, process, ridge=0.05),
        "raw_flow": ld.LinearDenoiser.fit(Y, process, train_time=5.0, centred=False),  # dense only
    }


def _check_mc(model, process, sampler, law, rng, n=20_000, **kw):
    x = mc.sample(model, process, sampler, n, rng, **kw)
    z = mc.moment_z_scores(x, law)
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size), f"max |z| = {np.max(np.abs(z)):.2f}"


# --- exact law vs Monte Carlo, every sampler -----------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("steps", [None, 7])
@pytest.mark.parametrize("init", ["standard", "exact", "given"])
@pytest.mark.parametrize("kind", ["population", "fit_N<d", "raw_flow"])
def test_discrete_samplers_match_monte_carlo(rng, sampler, steps, init, kind):
    process = ld.DDPM.linear(200)
    p0 = _data(rng)
    model = _models(rng, process, p0)[kind]
    init_arg = ld.Gaussian(rng.standard_normal(3), random_spd(rng, 3)) if init == "given" else init
    opts = {"eta": 0.5} if sampler == "ddim" else {"variance": "beta_tilde", "final_noise": True}
    law = ld.sampling_law(model, process, sampler, steps, init=init_arg, **opts)
    _check_mc(model, process, sampler, law, rng, steps=steps, init=init_arg, **opts)


@pytest.mark.parametrize("sampler", CONTINUOUS + ["ode"])
@pytest.mark.parametrize("kind", ["population", "fit_N<d", "ridge", "raw_flow"])
def test_continuous_samplers_match_monte_carlo(rng, sampler, kind):
    process = ld.VP.linear()
    p0 = _data(rng)
    model = _models(rng, process, p0)[kind]
    steps = None if sampler == "ode" else 12
    law = ld.sampling_law(model, process, sampler, steps, t_min=1e-3)
    _check_mc(model, process, sampler, law, rng, n=8_000 if sampler == "ode" else 20_000, steps=steps, t_min=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("init", ["standard", "exact"])
def test_sde_law_matches_fine_euler_maruyama(rng, init):
    """The exact SDE law vs a 4000-step Euler–Maruyama simulation (weak error ~1e-3, below the MC error)."""
    process = ld.VP.linear()
    p0 = _data(rng)
    model = ld.GaussianScore(p0, process)
    law = ld.sampling_law(model, process, "sde", t_min=1e-2, init=init)
    _check_mc(model, process, "sde", law, rng, n=20_000, t_min=1e-2, init=init, sde_steps=4000)


# --- spectral vs dense --------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"] + CONTINUOUS + ["sde", "ode"])
def test_spectral_and_dense_paths_agree(rng, sampler):
    d = 6
    process = ld.DDPM.linear(300) if sampler in ("ddpm", "ddim") else ld.VP.linear()
    p0 = _data(rng, d)
    X = p0.sample(4, rng)
    steps = None if sampler in ("ddpm", "ddim", "sde", "ode") else 40
    t_min = 0.0 if process.discrete else 1e-3
    for model in (ld.LinearDenoiser.fit(X, process, ridge=0.01, train_time=50.0), ld.GaussianScore(p0, process)):
        for init in ("standard", "exact", ld.Gaussian(rng.standard_normal(d), random_spd(rng, d))):
            a = ld.sampling_law(model, process, sampler, steps, t_min=t_min, init=init)
            b = ld.sampling_law(model.to_dense() if hasattr(model, "to_dense") else
                                ld.LinearDenoiser.population(p0, process).to_dense(),
                                process, sampler, steps, t_min=t_min, init=init)
            scale = np.abs(a.cov).max()
            np.testing.assert_allclose(a.cov, b.cov, rtol=0, atol=1e-10 * scale)
            np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-10 * max(1.0, np.abs(a.mean).max()))


def test_numeric_moment_odes_agree_with_closed_forms(rng):
    """A ridge of 1e-14 forces the numerical moment-ODE route; it must match the closed form."""
    process = ld.VP.linear()
    p0 = _data(rng, 4)
    for sampler in ("sde", "ode"):
        closed = ld.sampling_law(ld.GaussianScore(p0, process), process, sampler, t_min=1e-3)
        numeric = ld.sampling_law(ld.LinearDenoiser.population(p0, process, ridge=1e-14), process, sampler, t_min=1e-3)
        np.testing.assert_allclose(numeric.cov, closed.cov, atol=1e-8)
        np.testing.assert_allclose(numeric.mean, closed.mean, atol=1e-8)


# --- exactness and convergence orders with the population score ------------------------------------
@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_continuous_solutions_from_exact_start_return_the_data_law(rng, sampler):
    process = ld.VP.linear()
    p0 = _data(rng, 5)
    model = ld.GaussianScore(p0, process)
    for t_min in (0.0, 1e-3, 0.3):
        law = ld.sampling_law(model, process, sampler, t_min=t_min, init="exact")
        target = process.marginal(p0, t_min)
        np.testing.assert_allclose(law.cov, target.cov, atol=1e-12)
        np.testing.assert_allclose(law.mean, target.mean, atol=1e-12)
        assert ld.kl(target, law) < 1e-12


def test_pierret_galerne_closed_forms_from_standard_start():
    """Eqs. (7), (8) of Pierret & Galerne (2025), with their half-beta B = B_song / 2."""
    lam = np.array([0.01, 0.5, 2.0, 30.0])
    process = ld.VP.linear()
    model = ld.GaussianScore(ld.Gaussian.from_spectrum(lam), process)
    B = lambda t: float(process.B(t)) / 2  # noqa: E731
    for t in (0.0, 0.2):
        lt = np.exp(-2 * B(t)) * lam + 1 - np.exp(-2 * B(t))
        lT = np.exp(-2 * B(1.0)) * lam + 1 - np.exp(-2 * B(1.0))
        sde = lt + np.exp(-2 * (B(1.0) - B(t))) * lt**2 / lT * (1 / lT - 1)
        ode = lt / lT
        np.testing.assert_allclose(ld.sampling_law(model, process, "sde", t_min=t).eigenvalues, sde, rtol=1e-12)
        np.testing.assert_allclose(ld.sampling_law(model, process, "ode", t_min=t).eigenvalues, ode, rtol=1e-12)


@pytest.mark.parametrize("sampler,order", [("euler_maruyama", 1), ("exponential_integrator", 1), ("euler", 1), ("heun", 2)])
def test_convergence_orders(sampler, order):
    process = ld.VP.linear()
    p0 = ld.Gaussian.from_spectrum([3.0, 1.0, 0.2, 0.05], mean=[1.0, 0.0, -0.5, 0.2])
    model = ld.GaussianScore(p0, process)
    target = process.marginal(p0, 1e-3)
    ks = np.array([50, 100, 200, 400, 800])
    errs = [ld.w2(ld.sampling_law(model, process, sampler, k + 1, t_min=1e-3, init="exact"), target) for k in ks]
    slope = np.polyfit(np.log(ks), np.log(errs), 1)[0]
    assert slope == pytest.approx(-order, abs=0.1)


def test_pierret_galerne_euler_maruyama_recursion():
    """Eq. (11): lambda_{k+1} = (1 + D b (1 - 2/lambda^{T-t_k}))^2 lambda_k + 2 D b (half-beta b = beta/2)."""
    process = ld.VP.linear()
    lam = np.array([0.1, 1.0, 5.0])
    model = ld.GaussianScore(ld.Gaussian.from_spectrum(lam), process)
    K = 50
    grid = np.linspace(1.0, 0.0, K + 1)
    v = np.ones(3)
    for k in range(K):
        t = grid[k]
        b = float(process.beta(t)) / 2
        Dt = grid[k] - grid[k + 1]
        lt = float(process.alpha(t)) ** 2 * lam + float(process.sigma(t)) ** 2
        v = (1 + Dt * b * (1 - 2 / lt)) ** 2 * v + 2 * Dt * b
    law = ld.sampling_law(model, process, "euler_maruyama", K + 1)
    np.testing.assert_allclose(law.eigenvalues, v, rtol=1e-12)


# --- identities between samplers ------------------------------------------------------------------
def test_ddim_eta_one_is_ddpm_with_posterior_variance(rng):
    process = ld.DDPM.linear(100)
    p0 = _data(rng)
    model = ld.LinearDenoiser.fit(p0.sample(10, rng), process)
    for steps in (None, 9):
        a = ld.sampling_law(model, process, "ddim", steps, eta=1.0)
        b = ld.sampling_law(model, process, "ddpm", steps, variance="beta_tilde", final_noise=True)
        np.testing.assert_allclose(a.cov, b.cov, atol=1e-12)
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-12)


def test_ddpm_close_to_identity_with_population_score():
    """docs/theory.md#ddpm-ancestral: per-eigenvalue map f(l) ~ l for DDPM (beta variance), floor f(0) = beta_1 with final noise."""
    process = ld.DDPM.linear(1000, 1e-4, 1e-2)
    lam = np.array([0.0, 0.1, 1.0, 10.0])
    model = ld.GaussianScore(ld.Gaussian.from_spectrum(lam), process)
    law = ld.sampling_law(model, process, "ddpm", final_noise=True)
    f = law.eigenvalues
    assert f[0] == pytest.approx(1e-4, rel=1e-12)
    assert f[2] == pytest.approx(1.0, rel=1e-12)  # identity-covariance data are reproduced exactly
    np.testing.assert_allclose(f[1:], lam[1:], rtol=0.01)


# --- memorisation: the floor for N < d -------------------------------------------------------------
@pytest.mark.parametrize("N", [1, 3, 5])
def test_fitted_denoiser_floor_for_n_below_d(rng, N):
    d = 6
    process = ld.DDPM.linear(1000)
    p0 = _data(rng, d)
    X = p0.sample(N, rng)
    model = ld.LinearDenoiser.fit(X, process)
    beta1 = float(process.betas[0])
    # Ho et al. (no final noise): the null space of S_hat collapses exactly; KL(data || model) = inf
    law = ld.sampling_law(model, process, "ddpm")
    assert np.sum(law.eigenvalues == 0.0) == d - N + 1
    value = ld.kl(p0, law)
    assert math.isinf(value) and "singular" in value.reason
    # with noise on the final step the floor is beta_1 and the KL is large but finite
    noisy = ld.sampling_law(model, process, "ddpm", final_noise=True)
    assert np.sum(np.isclose(noisy.eigenvalues, beta1, rtol=1e-9)) == d - N + 1
    big = ld.kl(p0, noisy)
    assert np.isfinite(big) and big > 100
    # ridge lifts the floor
    ridged = ld.sampling_law(ld.LinearDenoiser.fit(X, process, ridge=0.1), process, "ddpm", final_noise=True)
    assert ridged.eigenvalues.min() > 10 * beta1
    assert ld.kl(p0, ridged) < big


# --- grids and diffusers spacings -----------------------------------------------------------------
def test_diffusers_timestep_spacings():
    from lindiff.samplers import ddpm_timesteps

    # diffusers' 0-based timesteps + 1
    np.testing.assert_array_equal(ddpm_timesteps(1000, 10, "leading"), np.arange(0, 1000, 100)[::-1] + 1)
    np.testing.assert_array_equal(ddpm_timesteps(1000, 10, "trailing"), np.arange(999, 0, -100) + 1)
    np.testing.assert_array_equal(ddpm_timesteps(1000, 10, "linspace"), np.round(np.linspace(0, 999, 10))[::-1].astype(int) + 1)
    np.testing.assert_array_equal(ddpm_timesteps(1000, 10, "leading", steps_offset=1), np.arange(0, 1000, 100)[::-1] + 2)
    with pytest.raises(ValueError, match="spacing"):
        ddpm_timesteps(1000, 10, "uniform")


def test_skip_step_ddpm_uses_skip_betas(rng):
    process = ld.DDPM.linear(100)
    p0 = _data(rng)
    model = ld.GaussianScore(p0, process)
    ts = [100, 60, 30, 1]
    prog = ld.build_sampler(process, "ddpm", timesteps=ts)
    abar = process.alpha_bar
    first = prog.steps[0]
    beta_skip = 1 - abar[100] / abar[60]
    assert first.writes[0][0] == pytest.approx(1 / math.sqrt(1 - beta_skip))
    assert first.noise_std == pytest.approx(math.sqrt(beta_skip))
    law = ld.sampling_law(model, process, "ddpm", timesteps=ts)
    _check_mc(model, process, "ddpm", law, rng, timesteps=ts)


def test_sampler_table_lists_equations():
    table = ld.sampler_table(ld.VP.linear(), "heun", steps=4)
    text = table.render("text")
    assert "model input" in text and len(table.rows) == 5  # two stages x 2 steps + Euler on the last step
    ddim = ld.sampler_table(ld.DDPM.linear(1000), "ddim", steps=10)
    assert [r[1] for r in ddim.rows][:2] == [901.0, 801.0]
    for fmt in ("markdown", "latex", "csv", "json"):
        assert ddim.render(fmt)


def test_sampler_input_errors(rng):
    process = ld.DDPM.linear(50)
    model = ld.GaussianScore(_data(rng), process)
    with pytest.raises(ValueError, match="continuous process"):
        ld.sampling_law(model, process, "heun", 10)
    with pytest.raises(ValueError, match="sampler must be one of"):
        ld.sampling_law(model, process, "dpm++", 10)
    with pytest.raises(ValueError, match="differs from the model's process"):
        ld.sampling_law(model, ld.DDPM.linear(60), "ddpm")
    with pytest.raises(ValueError, match="strictly decreasing"):
        ld.sampling_law(model, process, "ddpm", timesteps=[3, 5])
    with pytest.raises(ValueError, match="steps must be at most"):
        ld.sampling_law(model, process, "ddim", 51)
    with pytest.raises(ValueError, match="variance"):
        ld.sampling_law(model, process, "ddpm", variance="large")
    vp_model = ld.GaussianScore(_data(rng), ld.VP.linear())
    with pytest.raises(ValueError, match="steps is required"):
        ld.sampling_law(vp_model, vp_model.process, "euler")
    with pytest.raises(ValueError, match="t_min"):
        ld.sampling_law(vp_model, vp_model.process, "euler", 10, t_min=1.0)
    with pytest.raises(TypeError, match="affine"):
        ld.sampling_law(ld.EmpiricalScore(np.eye(3), process), process, "ddpm")
    with pytest.raises(ValueError, match="init"):
        ld.sampling_law(model, process, "ddpm", init="data")


def test_empirical_score_memorises_under_ddpm(rng):
    X = rng.standard_normal((5, 4)) * 3
    process = ld.DDPM.linear(1000)
    model = ld.EmpiricalScore(X, process)
    x = mc.sample(model, process, "ddpm", 200, rng, steps=100)
    dist = np.min(np.linalg.norm(x[:, None, :] - X[None], axis=2), axis=1)
    assert np.max(dist) < 1e-6  # every sample is a copy of a training point


# --- VE-sigma samplers (diffusers Euler, Euler ancestral, DPM-Solver++ 2M) --------------------------
SIGMA_GRID = np.r_[np.geomspace(80.0, 0.02, 12), 0.0]


@pytest.mark.parametrize("sampler", ["euler_ve", "euler_ancestral", "dpmpp_2m"])
@pytest.mark.parametrize("process", [ld.SigmaVP(80.0), ld.VP.linear(), ld.DDPM.linear(200)], ids=repr)
def test_ve_samplers_match_monte_carlo_and_dense(rng, sampler, process):
    p0 = _data(rng)
    X = p0.sample(5, rng)
    kw = {"grid": SIGMA_GRID} if isinstance(process, ld.SigmaVP) else ({"steps": 8} if process.discrete else {"steps": 12, "t_min": 1e-3})
    steps, t_min = kw.pop("steps", None), kw.pop("t_min", 0.0)
    for model in (ld.LinearDenoiser.fit(X, process, ridge=0.01), ld.LinearDenoiser.fit(X, process, train_time=20.0, centred=False)):
        law = ld.sampling_law(model, process, sampler, steps, t_min=t_min, **kw)
        _check_mc(model, process, sampler, law, rng, steps=steps, t_min=t_min, **kw)
        if model.spectral is not None:
            dense = ld.sampling_law(model.to_dense(), process, sampler, steps, t_min=t_min, **kw)
            np.testing.assert_allclose(dense.cov, law.cov, atol=1e-10 * np.abs(law.cov).max())


def test_dpmpp_first_order_is_ddim_and_euler_ve_is_karras(rng):
    process = ld.SigmaVP(80.0)
    p0 = _data(rng)
    model = ld.GaussianScore(p0, process)
    grid = [40.0, 3.0]
    a = ld.sampling_law(model, process, "dpmpp_2m", grid=grid)
    b = ld.sampling_law(model, process, "ddim", grid=grid)
    np.testing.assert_allclose(a.cov, b.cov, atol=1e-12)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-12)
    # Karras Euler written directly in the VE state: x_ve' = x_ve + (s' - s) eps(x_ve alpha)
    prog = ld.build_sampler(process, "euler_ve", grid=SIGMA_GRID)
    x = rng.standard_normal((5, 3)) * 80.0 / np.sqrt(1 + 80.0**2)
    xve = x * np.sqrt(1 + 80.0**2)
    for s, s2 in zip(SIGMA_GRID[:-1], SIGMA_GRID[1:]):
        xve = xve + (s2 - s) * model.eps(xve / np.sqrt(1 + s * s), s)
    del prog
    from lindiff._program import run_points

    y = run_points(model, ld.build_sampler(process, "euler_ve", grid=SIGMA_GRID), x.copy(), np.random.default_rng(0))
    np.testing.assert_allclose(y, xve, rtol=1e-10, atol=1e-12)


def test_dpmpp_2m_is_second_order(rng):
    process = ld.SigmaVP(80.0)
    p0 = ld.Gaussian.from_spectrum([3.0, 1.0, 0.2], mean=[1.0, 0.0, -0.5])
    model = ld.GaussianScore(p0, process)
    target = process.marginal(p0, 0.05)
    ks = np.array([20, 40, 80, 160])
    errs = []
    for k in ks:
        grid = np.exp(np.linspace(np.log(80.0), np.log(0.05), k + 1))
        errs.append(ld.w2(ld.sampling_law(model, process, "dpmpp_2m", grid=grid, init="exact"), target))
    slope = np.polyfit(np.log(ks), np.log(errs), 1)[0]
    assert slope < -1.8


def test_trailing_spacing_is_defined_for_every_pair_and_equals_diffusers_where_diffusers_is():
    from lindiff.samplers import ddpm_timesteps

    extra = 0
    for T in range(1, 201):
        for n in range(1, T + 1):
            ts = ddpm_timesteps(T, n, "trailing")
            assert len(ts) == n and ts[0] == T and ts[-1] >= 1 and np.all(np.diff(ts) < 0), (T, n)
            diffusers = (np.round(np.arange(T, 0, -T / n)) - 1).astype(int) + 1  # its 0-based t, as 1-based steps
            extra += len(diffusers) != n  # float arange's extra element: diffusers' timestep -1
            assert np.array_equal(diffusers[:n], ts), (T, n)
    assert extra > 0  # the float artefact occurs in this range, and lindiff is defined there too
    law = ld.sampling_law(ld.GaussianScore(ld.Gaussian.standard(2), ld.DDPM.linear(1000)), ld.DDPM.linear(1000), "ddim",
                          61, spacing="trailing")
    assert law.rank == 2


# --- issue 11: steep schedules, the program cache, extreme scales ------------------------------------
STEEP = ld.VP.linear(1.0, 2311.87, 82.0735)  # alpha(T) = exp(-47456): 0.0 in float64


def test_steps_true_is_refused_after_steps_one():
    """The program cache keyed ``steps`` by value, and True == 1: ``steps=True`` got the steps=1 program."""
    process = ld.DDPM.linear(4, 0.5, 0.5)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([1.0]), process)
    ld.sampling_law(model, process, "ddim", 1)
    for bad in (True, "1", 1.5):
        with pytest.raises(ValueError, match="steps"):
            ld.sampling_law(model, process, "ddim", bad)
    with pytest.raises(ValueError, match="t_min"):
        ld.sampling_law(ld.GaussianScore(ld.Gaussian.from_spectrum([1.0]), ld.VP.linear()), ld.VP.linear(), "ddim", 3,
                        t_min=False)


@pytest.mark.parametrize("sampler", ["ddim", "euler_ve", "euler_ancestral", "dpmpp_2m", "dpmpp_3m_sde", "unipc",
                                     "dpmsolver_singlestep"])
def test_data_prediction_samplers_forget_the_start_where_alpha_underflows(sampler):
    """On a grid starting where alpha = exp(-47456) (0.0 in float64) the first step's data prediction is the
    model's alpha -> 0 limit (it used to raise OverflowError or return NaN).  For the one-step methods that is
    the limit of the laws of grids starting where alpha is small but representable: the law from T equals the
    law from a T' with alpha(T') = 1e-200 (same later grid).  (Multistep methods weight their history by
    log-SNR gaps, which differ between T and T': their laws differ, as they should.)  The spectral and
    dense paths and Monte Carlo agree."""
    p0 = ld.Gaussian.from_spectrum([1.0, 0.25], ld.spectra.random_basis(2, 1), mean=[1.0, -2.0])
    X = p0.sample(5, 0)
    t_small = float(np.sqrt(2 * 2 * math.log(1e200) * STEEP.T / (STEEP.beta_max - STEEP.beta_min)))  # alpha ~ 1e-200
    later = [1.0, 0.3, 0.05, 0.0]
    for model in (ld.GaussianScore(p0, STEEP), ld.LinearDenoiser.fit(X, STEEP)):
        law = ld.sampling_law(model, STEEP, sampler, grid=[STEEP.T] + later)
        dense = ld.sampling_law(model, STEEP, sampler, grid=[STEEP.T] + later, path="dense")
        others = [dense]
        if sampler in ("ddim", "euler_ve", "euler_ancestral"):
            others.append(ld.sampling_law(model, STEEP, sampler, grid=[t_small] + later))
        for other in others:
            np.testing.assert_allclose(other.mean, law.mean, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(other.cov, law.cov, rtol=1e-10, atol=1e-12)
        x = mc.sample(model, STEEP, sampler, 20_000, 3, grid=[STEEP.T] + later, progress=False)
        z = mc.moment_z_scores(x, law) if law.rank == 2 else (x.mean(axis=0) - law.mean) / (x.std(axis=0) / 141.4 + 1e-300)
        assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size), z
    # a ridge fit has no finite alpha -> 0 limit of its data prediction: a named ValueError, not NaN
    with pytest.raises(ValueError, match="x0 prediction .* exceeds the float64 range"):
        ld.sampling_law(ld.LinearDenoiser.fit(X, STEEP, ridge=0.1), STEEP, sampler, grid=[STEEP.T] + later)


@pytest.mark.parametrize("call, match", [
    (lambda: ld.build_sampler(ld.VP.linear(1, 5772.16, 13.2521), "deis", 2, t_min=6.626), "noise predictions"),
    (lambda: ld.build_sampler(ld.VP.linear(14.4207, 6746.32, 0.862421), "pndm", 2, t_min=8.62e-10), "noise predictions"),
    (lambda: ld.build_sampler(ld.VP.linear(74.4683, 74.4683, 74.4683), "exponential_integrator", 2, t_min=7.4e-8),
     "use more steps"),
    (lambda: ld.build_sampler(ld.VP.linear(1, 4235.98, 34.5332), "lms", 10, t_min=17.27), "float64"),
    (lambda: ld.build_sampler(ld.DDPM([0.5, 1e-12, 0.5, 1e-12, 0.5]), "dpmpp_2m"), "more even grid"),
])
def test_unrepresentable_steps_are_named_value_errors(call, match):
    """Where the step is beyond float64 (no finite limit) the builders raise a ValueError naming what to change,
    quickly, instead of OverflowError / 'invalid value' warnings."""
    with pytest.raises(ValueError, match=match):
        call()


def test_noise_prediction_steps_refuse_cancellation_and_ill_conditioned_laws():
    """A noise-prediction step with alpha'/alpha = e^70 (PNDM in 2 steps on VP(2, 2, 70.5)) cancels two terms of size
    1e30: refused.  With alpha'/alpha = e^3.5 per step PNDM's multistep recursion amplifies errors instead (the
    spectral and dense laws differed by 10 %): the law's condition number with respect to its coefficients
    (~1e13) is measured and the law refused.  With small enough steps both paths agree."""
    process = ld.VP.linear(2.0, 2.0, 70.5148)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([0.0, 0.0], ld.spectra.random_basis(2, 3)), process)
    with pytest.raises(ValueError, match="alpha grows by a factor"):
        ld.sampling_law(model, process, "pndm", 2)
    for path in ("auto", "dense"):
        with pytest.raises(ValueError, match="ill-conditioned"):
            ld.sampling_law(model, process, "pndm", 10, t_min=35.2574, path=path)
    spectral = ld.sampling_law(model, process, "pndm", 200, t_min=35.2574)
    dense = ld.sampling_law(model, process, "pndm", 200, t_min=35.2574, path="dense")
    np.testing.assert_allclose(spectral.cov, dense.cov, rtol=1e-8, atol=1e-14)
    laws = ld.sampling_laws([model, ld.GaussianScore(ld.Gaussian.from_spectrum([0.0, 1.0]), process)], process, "pndm",
                            200, t_min=35.2574)
    np.testing.assert_allclose(laws[0].cov, spectral.cov, rtol=1e-12, atol=1e-15)


def test_data_prediction_offsets_do_not_cancel():
    """x0_hat = mu + k (x - alpha mu) has the offset mu (1 - alpha k) = mu sigma^2 g.  With lambda = 1.5e14 and
    mu = 1.02e10 at alpha = sigma the offset is 6.8e-5 and was formed as 1.02e10 - 1.02e10 (1 - 6.7e-15), 3 %
    wrong.  One DDIM step to t = 0 from N(0, 1): the law's mean is exactly that offset."""
    import mpmath

    process = ld.SigmaVP(1.0)
    lam, mu = 1.5e14, 1.02e10
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([lam], mean=[mu]), process)
    with mpmath.workdps(50):
        a2 = mpmath.mpf(1) / 2  # alpha^2 = sigma^2 = 1/2 at t = 1
        exact = float(mpmath.mpf(mu) * a2 / (a2 * mpmath.mpf(lam) + a2))
    for path in ("spectral", "dense"):
        law = ld.sampling_law(model, process, "ddim", 2, t_min=0.0, path=path)
        assert law.mean[0] == pytest.approx(exact, rel=1e-12)
    two_stage = ld.sampling_law(model, process, "dpmsolver_singlestep", 3, t_min=0.0)  # the multi-stage interpreter
    assert np.isfinite(two_stage.mean[0])


def test_sampler_table_and_laws_beyond_float64_are_clean():
    """sampler_table's noise std was sqrt(sum c^2) = inf for c = 1.3e199; the 'ode' law of a ridge fit over
    B(T) = 887 overflowed in M^2 with a RuntimeWarning."""
    table = ld.sampler_table(ld.VP.linear(0.156423, 1831, 1), "exponential_integrator", 2, t_min=1e-9)
    assert np.isfinite(table.column("nu")[0]) and table.column("nu")[0] > 1e198
    process = ld.VP.linear(29.784, 29.784, 29.784)
    model = ld.LinearDenoiser.fit(ld.Gaussian.from_spectrum([0.0015]).sample(3, 0), process, ridge=1e6)
    with pytest.raises(ValueError, match="overflows float64"):
        ld.sampling_law(model, process, "ode")


def test_sde_law_stopped_inside_the_flat_region_of_a_long_schedule():
    """Beyond B = 200 the gains are constant and the moment ODEs are solved in closed form; the shortcut ran down
    to B = 200 even when t_min lies above it, so a ridge fit's 'sde' law stopped at B(t_min) = 872 came out with
    variance 3206 instead of 2534 (the dense path's value; found by the deep fuzz).  With ridge 1 the gain there
    is exactly 1/2, the drift vanishes and the variance is 1 + B(T) - B(t_min)."""
    process = ld.VP.linear(1.02329, 82.0186, 82.0186)
    t_min = 41.009293240461474
    model = ld.LinearDenoiser.fit(ld.Gaussian.from_spectrum([10.7, 0.0]).sample(3, 0), process, ridge=1.0)
    exact = 1.0 + float(process.B(process.T) - process.B(t_min))
    for path in ("spectral", "dense"):
        law = ld.sampling_law(model, process, "sde", t_min=t_min, path=path)
        np.testing.assert_allclose(law.eigenvalues, exact, rtol=1e-9)


def test_mode_tables_finite_gains_summing_past_float64_raise_no_warning():
    """ModeTables checks the gains' finiteness by row sums; two finite gains of ~1e308 (a singular exact score
    at sigma(t_min)^2 = 1e-308, modes kept apart by their centres) summed past float64 with a RuntimeWarning
    ("overflow encountered in reduce") where the exact check that follows finds every gain finite."""
    from lindiff._program import ModeTables

    process = ld.SigmaVP(80.0)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([0.0, 0.0, 1.0], mean=[1.0, 2.0, 0.0]), process)
    prog = ld.build_sampler(process, "heun_ve", 10, 1e-154)  # its corrector evaluates the model at t_min
    tables = ModeTables(model.spectral, model.spectral.mean_in_basis, prog)  # RuntimeWarnings are errors here
    row = tables.gains[int(np.argmin(tables.compiled.times))]
    assert np.all(np.isfinite(row)) and np.sort(row)[-2] > np.finfo(np.float64).max / 2  # their sum overflows
