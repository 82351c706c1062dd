import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import lindiff as ld
from lindiff import ensembles as ens
from lindiff.ensembles import expected_kl, expected_kl_series


def _mc_kl(d, N, mean, repeats, seed, spectrum=None):
    p0 = ld.Gaussian.from_spectrum(np.ones(d) if spectrum is None else spectrum)
    runs = ens.monte_carlo_over_training_sets(ens.fitted_gaussian_kl, [(p0, N)], repeats, seed)[0]
    return {k: np.array([r[k] for r in runs]) for k in ("model_to_data", "data_to_model")}


@pytest.mark.parametrize("ratio", [0.5, 0.9, 1.1, 2.0, 10.0])
@pytest.mark.parametrize("mean", ["estimated", "known"])
def test_expected_kl_matches_monte_carlo_over_training_sets(ratio, mean):
    d = 12
    N = int(round(ratio * d))
    p0 = ld.Gaussian.from_spectrum(np.ones(d))
    runs = ens.monte_carlo_over_training_sets(ens.fitted_gaussian_kl, [(p0, N, mean)], 400, seed=int(ratio * 100))[0]
    for direction in ("model_to_data", "data_to_model"):
        exact = expected_kl(d, N, direction, mean)
        values = np.array([r[direction] for r in runs])
        if math.isinf(exact):
            assert isinstance(exact, ld.Infinite) and exact.reason
            # infinite because singular (always inf) or because of a divergent tail (finite draws)
            if direction == "model_to_data":
                assert np.all(np.isinf(values))
            continue
        # data_to_model needs n > d + 3 for a finite variance; otherwise the z-test is not valid
        n = N - 1 if mean == "estimated" else N
        if direction == "data_to_model" and n <= d + 3:
            continue
        se = values.std(ddof=1) / np.sqrt(values.size)
        assert abs(values.mean() - exact) / se < 4.0, (direction, values.mean(), exact, se)


def test_expected_kl_is_distribution_free():
    d, N = 6, 30
    rng = np.random.default_rng(0)
    spec = np.array([50.0, 3.0, 1.0, 0.2, 1e-3, 1e-5])
    a = _mc_kl(d, N, "estimated", 2000, 1)
    b = _mc_kl(d, N, "estimated", 2000, 1, spectrum=spec)
    # the same seeds give the same whitened Wishart draws: identical up to round-off
    np.testing.assert_allclose(a["model_to_data"], b["model_to_data"], rtol=1e-6)
    exact = expected_kl(d, N)
    se = a["model_to_data"].std(ddof=1) / np.sqrt(2000)
    assert abs(a["model_to_data"].mean() - exact) < 4 * se
    del rng


@pytest.mark.parametrize("direction", ["model_to_data", "data_to_model"])
@pytest.mark.parametrize("mean", ["estimated", "known"])
def test_series_approaches_the_exact_value_with_the_right_order(direction, mean):
    d = 10
    Ns = np.array([400, 800, 1600, 3200, 6400])
    exact = np.array([expected_kl(d, N, direction, mean) for N in Ns])
    first = np.array([expected_kl_series(d, N, direction, mean, order=1) for N in Ns])
    second = np.array([expected_kl_series(d, N, direction, mean, order=2) for N in Ns])
    # error of the leading term ~ c2/N^2 (slope -2), of the two-term series ~ 1/N^3 (slope -3)
    s1 = np.polyfit(np.log(Ns), np.log(np.abs(exact - first)), 1)[0]
    s2 = np.polyfit(np.log(Ns), np.log(np.abs(exact - second)), 1)[0]
    assert s1 == pytest.approx(-2, abs=0.05)
    assert s2 == pytest.approx(-3, abs=0.1)
    # per dimension the leading term is the d/(4N) law at large d
    assert expected_kl_series(1000, 10**6, direction, mean) / 1000 == pytest.approx(1000 / (4 * 10**6), rel=0.01)


def test_expected_kl_input_errors():
    with pytest.raises(ValueError, match="direction"):
        expected_kl(3, 10, "forward")
    with pytest.raises(ValueError, match="mean"):
        expected_kl(3, 10, mean="none")
    with pytest.raises(ValueError, match="N must be an integer"):
        expected_kl(3, 0)
    with pytest.raises(ValueError, match="order"):
        expected_kl_series(3, 10, order=3)


def test_monte_carlo_is_reproducible_whatever_the_executor():
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(5))
    tasks = [(p0, 8), (p0, 20)]
    serial = ens.monte_carlo_over_training_sets(ens.fitted_gaussian_kl, tasks, 6, seed=42)
    with ThreadPoolExecutor(3) as ex:
        threaded = ens.monte_carlo_over_training_sets(ens.fitted_gaussian_kl, tasks, 6, seed=42, executor=ex)
    assert serial == threaded


def test_transition_sweep_shows_the_transition():
    res = ld.transition.transition_sweep(d=24, ratios=(0.9, 1.1, 4.0), repeats=4, seed=1, progress=False)
    law_d2m = [v[0] for v in res.summary("law_d2m")]
    assert law_d2m[0] / law_d2m[1] > 10  # orders of magnitude across N = d
    gap = [v[0] for v in res.summary("gap")]
    assert gap[0] > 5 * gap[1] > 5 * gap[2]
    # the exact expectation of the fitted-Gaussian KL lies within the Monte Carlo error at N = 4d
    m, se = res.summary("fit_m2d")[2]
    assert abs(m - res.exact("model_to_data")[2]) < 5 * se + 1e-12


def _expected_kl_mpmath(d, N, direction, mean):
    import mpmath as mp

    with mp.workdps(60):
        n = N - 1 if mean == "estimated" else N
        eld = mp.fsum(mp.digamma(mp.mpf(n - i + 1) / 2) for i in range(1, d + 1)) + d * mp.log(mp.mpf(2) / N)
        est = mean == "estimated"
        if direction == "model_to_data":
            return (mp.mpf(n) * d / N - d + (mp.mpf(d) / N if est else 0) - eld) / 2
        return (mp.mpf(N) * d / (n - d - 1) - d + (mp.mpf(d) / (n - d - 1) if est else 0) + eld) / 2


@pytest.mark.parametrize("direction", ["model_to_data", "data_to_model"])
@pytest.mark.parametrize("mean", ["estimated", "known"])
def test_expected_kl_matches_mpmath_for_every_n_including_huge(direction, mean):
    """Issue 11 item 3: -3e-18 instead of +3e-18 at N = 1e18, OverflowError at 2**63."""
    worst = 0.0
    for d in (1, 3, 5, 40):
        for N in (d + 3, d + 10, 10 * d + 7, 10**6, 10**9, 10**12, 10**15, 10**18, 2**63, 2**100):
            value = expected_kl(d, N, direction, mean)
            exact = _expected_kl_mpmath(d, N, direction, mean)
            assert value > 0
            worst = max(worst, float(abs((value - exact) / exact)))
    assert worst < 1e-13
    assert expected_kl(3, 10**18, "data_to_model", "known") == pytest.approx(3e-18, rel=1e-12)
    assert expected_kl(5, 2**63) > 0


def test_expected_kl_series_agrees_at_huge_n():
    for direction in ("model_to_data", "data_to_model"):
        for mean in ("estimated", "known"):
            N = 10**15
            assert expected_kl(7, N, direction, mean) == pytest.approx(
                expected_kl_series(7, N, direction, mean, order=2), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# the fitted Gaussian drawn from its law (Wishart), as the transition sweep draws it
def test_wishart_shapes_rank_and_mean():
    rng = np.random.default_rng(0)
    assert np.array_equal(ens.wishart(0, 3, rng), np.zeros((3, 3)))
    W = ens.wishart(2, 5, rng)  # singular: rank n
    assert np.allclose(W, W.T) and np.linalg.matrix_rank(W) == 2
    draws = np.array([ens.wishart(7, 3, rng) for _ in range(4000)])  # Bartlett: E W = n I, Var W_ij = n (1 + delta_ij)
    mean, se = draws.mean(axis=0), draws.std(axis=0, ddof=1) / math.sqrt(len(draws))
    assert np.all(np.abs(mean - 7 * np.eye(3)) / se < 4.5)
    var = draws.var(axis=0, ddof=1)
    assert np.allclose(var, 7 * (1 + np.eye(3)), rtol=0.15)
    with pytest.raises(ValueError, match="n"):
        ens.wishart(-1, 3)


def _random_basis(d, seed):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0]


@pytest.mark.parametrize("basis", ["identity", "rotated"])
@pytest.mark.parametrize("N", [1, 2, 3, 8])
@pytest.mark.parametrize("mean", ["estimated", "known"])
def test_sample_fitted_has_the_law_of_the_fit_to_points(basis, N, mean):
    """Exact first and second moments of the fitted Gaussian of N points: E mu_hat = mu, Cov mu_hat = S/N,
    E S_hat = n S / N, Var S_hat_ij = n (S_ij^2 + S_ii S_jj) / N^2 (n = N - 1, or N with the mean known)."""
    d = 3
    p0 = ld.Gaussian.from_spectrum([2.0, 0.5, 0.0], None if basis == "identity" else _random_basis(d, 1),
                                   mean=[1.0, -2.0, 0.5])
    S, mu = p0.cov, p0.mean
    n = N - 1 if mean == "estimated" else N
    rng = np.random.default_rng(N)
    fits = [ens.sample_fitted(p0, N, mean, rng=rng) for _ in range(4000)]
    covs = np.array([g.cov for g in fits])
    means = np.array([g.mean for g in fits])
    exact_var = n * (S**2 + np.outer(np.diag(S), np.diag(S))) / N**2
    se = np.sqrt(exact_var / len(fits))
    ok = exact_var > 0
    assert np.all(np.abs(covs.mean(axis=0) - n * S / N)[ok] / se[ok] < 4.5)
    assert np.allclose(covs.mean(axis=0)[~ok], 0.0, atol=1e-12)  # the null direction stays null
    assert np.allclose(covs.var(axis=0, ddof=1)[ok], exact_var[ok], rtol=0.2)
    if mean == "known":
        assert np.array_equal(means, np.broadcast_to(mu, means.shape))
    else:
        se_mean = np.sqrt(np.diag(S) / N / len(fits))
        keep = se_mean > 0
        assert np.all(np.abs(means.mean(axis=0) - mu)[keep] / se_mean[keep] < 4.5)
        assert np.allclose(np.cov(means.T), S / N, atol=6 * np.max(S) / N / math.sqrt(len(fits)))


def test_sample_fitted_kl_agrees_with_fitting_points():
    """A non-linear functional (the KL of the fit to the data) has the same mean either way (two-sample z)."""
    d, N = 6, 9
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0), _random_basis(d, 2))
    rng = np.random.default_rng(5)
    by_law = np.array([ld.kl(ens.sample_fitted(p0, N, rng=rng), p0) for _ in range(3000)])
    by_points = np.array([ld.kl(ld.Gaussian.fit(p0.sample(N, rng)), p0) for _ in range(3000)])
    se = math.sqrt(by_law.var(ddof=1) / by_law.size + by_points.var(ddof=1) / by_points.size)
    assert abs(by_law.mean() - by_points.mean()) / se < 4.0
    assert abs(by_law.mean() - expected_kl(d, N)) / (by_law.std(ddof=1) / math.sqrt(by_law.size)) < 4.0


def test_sample_fitted_on_a_stationary_field_fits_points():
    p0 = ld.Gaussian.stationary(ld.spectra.power_law_grid((4, 4), 1.0))
    g = ens.sample_fitted(p0, 5, rng=0)
    assert g.dim == 16 and g.rank <= 4
    with pytest.raises(ValueError, match="N"):
        ens.sample_fitted(p0, 0)
    with pytest.raises(ValueError, match="mean"):
        ens.sample_fitted(p0, 3, "guessed")
    with pytest.raises(TypeError, match="p0"):
        ens.sample_fitted(np.eye(2), 3)
