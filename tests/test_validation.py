"""Bad input raises ValueError (or TypeError for a wrong type) naming the argument and what is accepted."""

import math

import numpy as np
import pytest

import lindiff as ld
import lindiff.testing  # noqa: F401

P0 = ld.Gaussian.from_spectrum([1.0, 0.5])
DDPM = ld.DDPM.linear(20)
VP = ld.VP.linear()
X = P0.sample(5, 0)


@pytest.mark.parametrize("call,match", [
    # wrong shapes
    (lambda: ld.Gaussian([0.0, 0.0], np.eye(3)), r"cov must have shape \(2, 2\)"),
    (lambda: ld.Gaussian.from_spectrum([1.0, 2.0], basis=np.eye(3)), r"basis must have shape \(2, 2\)"),
    (lambda: P0.logpdf(np.zeros(3)), r"x must have shape \(n, 2\)"),
    (lambda: ld.GaussianScore(P0, VP).score(np.zeros((4, 3)), 0.5), r"x must have shape \(n, 2\)"),
    (lambda: ld.dsm_loss(ld.LinearDenoiser.fit(X, DDPM), ld.Gaussian.standard(3), 3), "dimension"),
    (lambda: ld.kl(P0, ld.Gaussian.standard(3)), "same dimension"),
    (lambda: ld.LinearDenoiser.fit(np.zeros(4), DDPM), "X must have 2 dimension"),
    # NaN / inf
    (lambda: ld.Gaussian([np.nan, 0.0], np.eye(2)), "mean contains NaN"),
    (lambda: ld.Gaussian(np.zeros(2), [[1.0, np.inf], [np.inf, 1.0]]), "cov contains NaN"),
    (lambda: ld.LinearDenoiser.fit([[1.0, np.nan]], DDPM), "X contains NaN"),
    (lambda: ld.EmpiricalScore(X, VP).score([np.nan, 0.0], 0.5), "x contains NaN"),
    (lambda: ld.DDPM([0.1, np.nan]), "betas contains NaN"),
    # non-symmetric / indefinite covariance
    (lambda: ld.Gaussian(np.zeros(2), [[1.0, 0.3], [0.0, 1.0]]), "not symmetric"),
    (lambda: ld.Gaussian(np.zeros(2), [[1.0, 2.0], [2.0, 1.0]]), "not positive semi-definite"),
    (lambda: ld.Gaussian.from_spectrum([1.0, -0.1]), "eigenvalues is not positive semi-definite"),
    # betas outside (0, 1)
    (lambda: ld.DDPM([0.0, 0.1]), r"betas must lie in the open interval \(0, 1\)"),
    (lambda: ld.DDPM([0.1, 1.0]), r"open interval \(0, 1\)"),
    (lambda: ld.DDPM([-0.1]), r"open interval \(0, 1\)"),
    (lambda: ld.DDPM.linear(0), "T must be an integer >= 1"),
    # t outside the process
    (lambda: DDPM.alpha(21), r"integer step in \[0, 20\]"),
    (lambda: DDPM.sigma(-1), r"integer step in \[0, 20\]"),
    (lambda: VP.alpha(1.5), r"must lie in \[0, 1\]"),
    (lambda: ld.GaussianScore(P0, VP).score([0.0, 0.0], 2.0), r"must lie in \[0, 1\]"),
    (lambda: ld.sampling_law(ld.GaussianScore(P0, VP), VP, "euler", 10, t_min=-0.1), "t_min"),
    (lambda: ld.sampling_law(ld.GaussianScore(P0, VP), VP, "euler", grid=[1.0, 0.5, 0.7]), "strictly decreasing"),
    (lambda: ld.EmpiricalScore(X, VP).score([0.0, 0.0], 0.0), "sigma"),
    # N too small for what is asked
    (lambda: ld.Gaussian.fit(np.zeros((0, 2))), "at least 1 training point"),
    (lambda: ld.memorisation.nearest_ratio(np.zeros((3, 2)), np.zeros((1, 2))), "at least 2 training point"),
    (lambda: ld.score_stability(X[:1], VP, P0, times=[0.5]), "at least 2 training point"),
    (lambda: ld.memorisation.collapse_time([1.0], 1, VP), "N must be an integer >= 2"),
    (lambda: ld.mc.moment_z_scores(np.zeros((2, 2)), P0), "at least 3 points"),
    (lambda: ld.sampling_law(ld.GaussianScore(P0, DDPM), DDPM, "ddim", 21), "steps must be at most"),
    # other arguments
    (lambda: ld.LinearDenoiser.fit(X, DDPM, ridge=-1.0), "ridge"),
    (lambda: ld.LinearDenoiser.fit(X, DDPM, lr=0.0), "lr must be a finite positive"),
    (lambda: ld.expected_kl(3, 10, direction="both"), "direction must be one of"),
    (lambda: ld.transition_table(d=4, ratios=(0.0,), repeats=2), "ratios must be a non-empty list of positive"),
    (lambda: ld.Table("t", ["a"], [[1, 2]]), "every row must have 1 values"),
    (lambda: ld.Table("t", ["a"], [[1]]).render("html"), "format must be one of"),
    # one rule for every numeric input: real numbers only; complex, bool and strings are refused, not cast
    (lambda: ld.Gaussian([0.0, 1j], np.eye(2)), "mean must be real, got a complex array"),
    (lambda: ld.LinearDenoiser.fit(X + 0j, DDPM), "X must be real, got a complex array"),
    (lambda: VP.alpha(0.5 + 0j), "t must be real"),
    (lambda: VP.alpha("1"), "t must be a real number or array of real numbers, got the string '1'"),
    (lambda: VP.alpha(True), "t must hold real numbers, got booleans"),
    (lambda: ld.Gaussian.from_spectrum([True, False]), "eigenvalues must hold real numbers, got booleans"),
    (lambda: ld.DDPM(["0.1", "0.2"]), "betas must hold real numbers"),
    (lambda: ld.sampling_law(ld.GaussianScore(P0, DDPM), DDPM, "ddim", "10"), "steps must be an integer"),
    (lambda: ld.VP.linear("1"), "beta_min must be a real number"),
    (lambda: ld.dsm_loss(ld.LinearDenoiser.population(P0, DDPM), P0, [[1, 1]]), "t must be a time or a 1-D array"),
    # foreign errors before: each parameter is named
    (lambda: ld.DDPM.linear(10, None), "beta_start must be a finite non-negative real number, got None"),
    (lambda: ld.DDPM.linear(1e20), r"T must be an integer in \[1, 10000000\]"),
    (lambda: ld.DDPM.cosine(10, "x"), "s must be a real number"),
    (lambda: ld.DDPM.cosine(10, max_beta=1.0), r"max_beta must lie in \(0, 1\)"),
    (lambda: ld.sampling_law(ld.GaussianScore(P0, DDPM), DDPM, "ddpm", init=np.eye(2)), "init must be"),
    (lambda: ld.transition_sweep(d=3, ratios="abc"), "ratios must be a real number"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call,match", [
    (lambda: ld.GaussianScore("not a gaussian", VP), "p0 must be a lindiff.Gaussian"),
    (lambda: ld.kl(P0, np.eye(2)), "q must be a lindiff.Gaussian"),
    (lambda: ld.LinearDenoiser.fit(X, "ddpm"), "process must be a lindiff process"),
    (lambda: ld.mc.sample(ld.GaussianScore(P0, DDPM), DDPM, "ddpm", 10, rng="seed"), "rng must be"),
    (lambda: ld.sampling_law(ld.EmpiricalScore(X, DDPM), DDPM, "ddpm"), "affine model"),
    (lambda: ld.mc.kl(np.eye(2), P0), "p must be a lindiff.Gaussian"),
    (lambda: ld.testing.check_sampler(None, ld.GaussianScore(P0, DDPM), "ddpm"), "run must be a callable"),
])
def test_wrong_types_raise_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_singular_cases_return_inf_with_a_reason_never_nan():
    sing = ld.Gaussian.from_spectrum([1.0, 0.0])
    for value in (ld.kl(P0, sing), ld.kl(sing, P0), ld.expected_kl(5, 5), ld.expected_kl(5, 7, "data_to_model")):
        assert math.isinf(value) and not math.isnan(value) and value.reason
    assert np.isfinite(ld.w2(P0, sing)) and ld.hellinger(P0, sing) == 1.0
    assert sing.logpdf([0.0, 1.0]) == -np.inf
