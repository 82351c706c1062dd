"""Edge cases of the sampler laws (issue 11 item 9) and lindiff's integer trailing spacing (issue 12)."""

import math
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest

import lindiff as ld
from lindiff.samplers import ddpm_timesteps


# --- alpha underflows to 0: the law forgets the start -------------------------------------------
def _first_order_variance(lam, grid, ancestral=False):
    """Per-mode variance of Euler (VE) = DDIM(eta=0) / Euler ancestral at 50 digits, data N(0, lam),
    start N(0, 1), OU: alpha = e^{-t}.  In the VP state x' = (s'/s) x + (1 - rho) alpha' D (+ noise),
    rho = (s'/alpha')/(s/alpha), D = alpha lam x / (alpha^2 lam + s^2)."""
    with mp.workdps(50):
        v = mp.mpf(1)
        for t, tn in zip(grid[:-1], grid[1:]):
            a, an = mp.e ** (-mp.mpf(t)), mp.e ** (-mp.mpf(tn))
            s, sn = mp.sqrt(1 - a * a), mp.sqrt(1 - an * an)
            rho = (sn / an) / (s / a)
            k = a * lam / (a * a * lam + s * s)
            if ancestral:
                up = mp.sqrt(1 - rho * rho)
                down = mp.sqrt(1 - up * up)
                A = sn * down / s + (1 - down * rho) * an * k
                v = A * A * v + (sn * up) ** 2
            else:
                A = sn / s + (1 - rho) * an * k
                v = A * A * v
        return float(v)


@pytest.mark.parametrize("sampler", ["euler_ve", "ddim", "euler_ancestral"])
def test_ou_800_first_order_samplers_are_exact_where_alpha_underflows(sampler):
    process = ld.OU(800.0)
    lam = [0.3, 1.0, 5.0]
    model = ld.GaussianScore(ld.Gaussian.from_spectrum(lam), process)
    assert float(process.alpha(800.0)) == 0.0  # e^{-800} underflows
    law = ld.sampling_law(model, process, sampler, 10, 1.0)
    grid = np.linspace(800.0, 1.0, 10)
    expected = [_first_order_variance(l, grid, ancestral=sampler == "euler_ancestral") for l in lam]
    np.testing.assert_allclose(np.diag(law.cov), expected, rtol=1e-12)


def test_ou_800_multistep_and_off_grid_samplers():
    process = ld.OU(800.0)
    model = ld.GaussianScore(ld.Gaussian.standard(2), process)
    for sampler in ("dpmpp_2m", "dpmsolver_multistep", "dpmpp_2m_sde", "dpmpp_3m_sde", "euler", "heun"):
        law = ld.sampling_law(model, process, sampler, 10, 1.0)
        assert np.all(np.isfinite(law.cov)) and 0.5 < law.eigenvalues.min() <= law.eigenvalues.max() < 1.5
        dense = ld.sampling_law(model, process, sampler, 10, 1.0, path="dense")
        np.testing.assert_allclose(dense.cov, law.cov, rtol=1e-12, atol=1e-14)
    for sampler in ("heun_ve", "lms", "dpm_2", "dpmpp_sde"):  # written in x/alpha: refused, naming the start time
        with pytest.raises(ValueError, match="underflows at t = 800"):
            ld.sampling_law(model, process, sampler, 10, 1.0)
    with pytest.raises(ValueError, match="overflows float64.*more steps"):  # E = e^{88.8} per step
        ld.sampling_law(model, process, "exponential_integrator", 10, 1.0)


def test_continuous_solutions_where_alpha_underflows():
    process = ld.OU(800.0)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([0.3, 5.0]), process)
    for sampler in ("sde", "ode"):  # alpha(t_min) = 0: the marginal is N(0, I) and the law forgets x_T
        law = ld.sampling_law(model, process, sampler, t_min=790.0)
        np.testing.assert_allclose(law.eigenvalues, [1.0, 1.0], rtol=1e-14)
    # with a ridge the gains are constant there, g = 1/(1 + r): from N(0, I) the SDE law relaxes towards the
    # stationary 1 / (2 (g - 1/2)) at the rate 2 (g - 1/2) in B, over B(800) - B(790) = 20 (not further: the
    # closed form used to run on to B = 200 and returned the stationary value itself, issue 11)
    ridge = ld.LinearDenoiser.population(ld.Gaussian.from_spectrum([0.3, 5.0]), process, ridge=0.1)
    law = ld.sampling_law(ridge, process, "sde", t_min=790.0)
    rate, stationary = 1.0 / 1.1 - 0.5, 1.0 / (2.0 * (1.0 / 1.1 - 0.5))
    decay = math.exp(-2.0 * rate * 20.0)
    np.testing.assert_allclose(law.eigenvalues, stationary + decay * (1.0 - stationary), rtol=1e-12)


def test_vp_with_huge_beta_max():
    vp = ld.VP.linear(0.1, 1.7e11, 1.0)
    X = np.random.default_rng(0).standard_normal((5, 2))
    exact = ld.GaussianScore(ld.Gaussian.from_spectrum([0.5, 2.0]), vp)
    for sampler in ("sde", "ode"):
        np.testing.assert_allclose(ld.sampling_law(exact, vp, sampler, t_min=1e-3).eigenvalues, [1.0, 1.0], rtol=1e-14)
        # B(t_min) = 85 here: a finite answer that depends on the model
        assert np.all(np.isfinite(ld.sampling_law(exact, vp, sampler, t_min=1e-6).cov))
    ridge = ld.LinearDenoiser.fit(X, vp, ridge=0.01)
    law = ld.sampling_law(ridge, vp, "sde", t_min=1e-6)
    closed = ld.sampling_law(ld.LinearDenoiser.fit(X, vp, ridge=0.01), vp, "sde", t_min=1e-6, rtol=1e-12)
    np.testing.assert_allclose(law.cov, closed.cov, rtol=1e-8)
    with pytest.raises(ValueError, match="overflows float64"):  # the ridge ODE expands by e^{0.0025 B(T)}
        ld.sampling_law(ridge, vp, "ode", t_min=1e-6)


def test_ill_conditioned_dense_model_fails_fast_with_a_reason():
    """A raw-parameter flow fitted on data spanning 1e-6..1e6 (Hessian condition ~1e24): its weights are
    round-off noise in t, so the moment ODE cannot meet rtol; the answer is a ValueError naming rtol."""
    process = ld.SigmaVP(380.25)
    X = np.random.default_rng(1).standard_normal((3, 4)) * np.array([1e-6, 1e6, 1.0, 1e3])
    model = ld.LinearDenoiser.fit(X, process, train_time=5.0, centred=False)
    with pytest.raises(ValueError, match="rtol"):
        ld.sampling_law(model, process, "ode", t_min=1e-3)
    # the centred fit of the same data has an eigenbasis and a closed form per mode
    law = ld.sampling_law(ld.LinearDenoiser.fit(X, process), process, "ode", t_min=1e-3)
    assert np.all(np.isfinite(law.cov))


# --- trailing spacing, defined for every (T, steps) -------------------------------------------------
def _diffusers_trailing(T, n):
    """diffusers' float formula; it may hold n + 1 entries (the last one -1), lindiff keeps the first n."""
    return (np.round(np.arange(T, 0, -T / n)) - 1).astype(int)[:n] + 1


def test_trailing_spacing_is_defined_for_every_pair_up_to_200():
    for T in range(1, 201):
        for n in range(1, T + 1):
            ts = ddpm_timesteps(T, n, "trailing")
            assert len(ts) == n and ts[0] == T and ts[-1] >= 1 and np.all(np.diff(ts) < 0), (T, n)
            np.testing.assert_array_equal(ts, _diffusers_trailing(T, n))
            # the exact rational values, up to how float round-off breaks ties of .5
            exact = np.array([Fraction(T * (n - k), n) for k in range(n)], dtype=object)
            assert all(abs(int(t) - e) <= Fraction(1, 2) for t, e in zip(ts, exact)), (T, n)


@pytest.mark.parametrize("n", [1, 7, 61, 333, 999, 1000])
def test_trailing_spacing_at_1000(n):
    ts = ddpm_timesteps(1000, n, "trailing")
    assert len(ts) == n and ts.min() >= 1 and np.all(np.diff(ts) < 0)
    np.testing.assert_array_equal(ts, _diffusers_trailing(1000, n))
    process = ld.DDPM.linear(1000)
    model = ld.GaussianScore(ld.Gaussian.standard(2), process)
    assert np.all(np.isfinite(ld.sampling_law(model, process, "ddim", n, spacing="trailing").cov))


def test_multi_stage_samplers_refuse_laws_float64_cannot_hold_at_tiny_sigma():
    """Heun / DPM-2 in the VE state feed a stage's rounded input into the next stage, whose gains are 1/sigma'
    for a singular score: at sigma' = 1e-12 the mean of the law came out 6e-4 off (true offset ~1e-14), at
    1e-20 by 5636.  The stage-input probe refuses these (naming t_min); where float64 holds the law it
    agrees with the exact offset."""
    p0 = ld.Gaussian.from_spectrum([0.0, 0.0, 1.0], mean=[1.0, 2.0, 0.0])
    process = ld.SigmaVP(80.0)
    model = ld.GaussianScore(p0, process)
    for sampler, t_min in (("heun_ve", 1e-8), ("heun_ve", 1e-12), ("heun_ve", 1e-20), ("dpm_2", 1e-20)):
        with pytest.raises(ValueError, match="t_min"):
            ld.sampling_law(model, process, sampler, 10, t_min)
        with pytest.raises(ValueError, match="t_min"):
            ld.sampling_law(model, process, sampler, 10, t_min, path="dense")
    law = ld.sampling_law(model, process, "heun_ve", 10, 1e-4)
    # the null directions: the last Heun step moves x - mu by sigma'/sigma, so the mean is mu (1 - O(sigma_min))
    np.testing.assert_allclose(law.mean[:2], [1.0, 2.0], rtol=2e-6)
    dense = ld.sampling_law(model, process, "heun_ve", 10, 1e-4, path="dense")
    np.testing.assert_allclose(dense.mean, law.mean, rtol=1e-10, atol=1e-12)
    # a regular data law is well conditioned at any t_min: no refusal
    regular = ld.GaussianScore(ld.Gaussian.from_spectrum([0.5, 1.0, 2.0], mean=[1.0, 2.0, 0.0]), process)
    for sampler in ("heun_ve", "dpm_2", "heun"):
        assert np.all(np.isfinite(ld.sampling_law(regular, process, sampler, 10, 1e-20).mean))


def test_pndm_runge_kutta_warm_up_on_a_steep_schedule_is_refused_on_both_paths():
    """Found by the deep fuzz: PNDM's Runge-Kutta warm-up is multistep *and* multi-stage; with alpha(T) = 2e-14
    its stage inputs cancel by 7e6 and the law is lost (dense variance 1e8 against ~1 from 60-digit mpmath,
    spectral off by 6e-5).  Probing only the writes missed it; the stage-input probe refuses both paths."""
    process = ld.VP.linear(2.0, 2.0, 31.6228)
    model = ld.LinearDenoiser.fit(ld.Gaussian.from_spectrum([1.0, 1.0]).sample(3, 0), process)
    for path in ("spectral", "dense"):
        with pytest.raises(ValueError, match="t_min.*smaller T"):
            ld.sampling_law(model, process, "pndm", 2, 15.811388300841896, path=path)
