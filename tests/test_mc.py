"""lindiff.mc at its edges (issue 11): one draw, singular laws, singular normal equations, steps off a support."""

import numpy as np
import pytest

import lindiff as ld
from lindiff import mc

G = ld.Gaussian.from_spectrum


def test_an_estimate_needs_two_draws():
    """n = 1 has no standard error: refused with a ValueError naming n (it used to give stderr = inf)."""
    model = ld.GaussianScore(G([1.0]), ld.OU())
    for call in (lambda: mc.kl(G([1.0]), G([2.0]), 1, 0), lambda: mc.dsm_loss(model, G([1.0]), 0.5, 1, 0)):
        with pytest.raises(ValueError, match="n must be an integer >= 2"):
            call()
    est = mc.kl(G([1.0]), G([2.0]), 2, 0)
    assert np.isfinite(est.stderr) and type(est.stderr) is float and est.n == 2


def test_kl_with_a_singular_q_is_a_certain_infinite():
    """q = N(0, 0): every draw of p = N(0, 0.3) is off q's support.  It used to warn and return a plain inf."""
    est = mc.kl(G([0.3]), G([0.0]), 50, 40)
    assert isinstance(est.mean, ld.Infinite) and "q rank 0" in est.mean.reason
    assert est.stderr == 0.0 and est.n == 50
    assert est.z(ld.kl(G([0.3]), G([0.0]))) == 0.0  # agrees with the closed form, which is Infinite too


def test_kl_of_laws_with_different_ranks_is_infinite():
    """p on a line inside q's plane: p's draws have q-density, but p is singular to q (KL = inf); the
    log-densities live on spaces of different dimension and must not be subtracted."""
    p, q = G([0.0, 1.0]), G([1.0, 1.0])
    est = mc.kl(p, q, 100, 0)
    assert isinstance(est.mean, ld.Infinite) and "rank" in est.mean.reason
    assert isinstance(ld.kl(p, q), ld.Infinite)
    # different means along the shared null direction: draws off q's support
    est = mc.kl(G([0.0, 1.0]), G([0.0, 2.0], mean=[1.0, 0.0]), 100, 0)
    assert isinstance(est.mean, ld.Infinite) and "off q's support" in est.mean.reason


def test_kl_of_singular_laws_on_one_support_matches_the_closed_form():
    p, q = G([0.0, 1.0], mean=[0.0, 0.5]), G([0.0, 2.0])
    est = mc.kl(p, q, 200_000, 1)
    exact = ld.kl(p, q)
    assert np.isfinite(exact) and abs(est.z(exact)) < mc.max_abs_z_threshold(1)


def test_fit_linear_on_a_singular_normal_equation_is_the_minimum_norm_solution():
    """Two draws in two dimensions (rank-1 sample covariance) used to raise LinAlgError; the answer is the
    minimum-norm least-squares fit, i.e. the limit ridge -> 0 (same draws, same seed)."""
    p0, process = G([1.0, 0.0]), ld.DDPM.linear(1, 1e-8, 1e-8)
    W, b = mc.fit_linear(p0, process, 1, 2, 0)
    W_r, b_r = mc.fit_linear(p0, process, 1, 2, 0, ridge=1e-12)
    assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
    np.testing.assert_allclose(W, W_r, rtol=1e-6, atol=1e-9 * np.abs(W).max())
    np.testing.assert_allclose(b, b_r, rtol=1e-6, atol=1e-12)
    # one draw: nothing to regress on, W = 0 and b is the drawn noise
    W1, _ = mc.fit_linear(p0, process, 1, 1, 0)
    assert np.array_equal(W1, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="ridge"):
        mc.fit_linear(p0, process, 1, 10, 0, ridge=-1.0)


def test_score_finite_difference_off_the_support_names_h():
    """At sigma(t) ~ 1e-12 the marginal of a rank-1 law is numerically singular: x +- h e_0 has no density,
    and (-inf) - (-inf) used to give NaN with a RuntimeWarning."""
    model = ld.GaussianScore(G([0.0, 1.0]), ld.SigmaVP(12.35))
    x = np.array([[0.0, 0.2], [0.0, -1.5]])
    with pytest.raises(ValueError, match="h = 1e-05"):
        mc.score_finite_difference(model, x, 1.2e-11)
    with pytest.raises(ValueError, match="h must be"):
        mc.score_finite_difference(model, x, 0.5, h=0.0)
    np.testing.assert_allclose(mc.score_finite_difference(model, x, 0.5), model.score(x, 0.5), rtol=1e-6, atol=1e-8)


def test_sample_beyond_float64_is_a_named_value_error():
    """Issue 11 (deep fuzz): the exponential integrator on 3 points of VP(1, 100, 31.6) multiplies x by e^595 and
    then e^203; the points overflowed with a RuntimeWarning.  Like the law, the Monte Carlo twin says the output
    is beyond float64 and what to change."""
    process = ld.VP.linear(1.0, 100.0, 31.6228)
    model = ld.GaussianScore(G([1.0]), process)
    with pytest.raises(ValueError, match="overflow float64 on the step t = 15.8114 -> 0"):
        mc.sample(model, process, "exponential_integrator", 3, 0, 3, progress=False)
    with pytest.raises(ValueError, match="overflows float64"):
        ld.sampling_law(model, process, "exponential_integrator", 3)
    x = mc.sample(model, process, "exponential_integrator", 2000, 0, 400, progress=False)  # finer grid: fine
    assert np.all(np.isfinite(x))
