import mpmath as mp
import numpy as np
import pytest

import lindiff as ld
from lindiff import mc
from conftest import random_spd

PROCESSES = [ld.DDPM.linear(200), ld.VP.linear(), ld.OU(3.0)]


def _times(process):
    return [3, 60, 199] if process.discrete else [0.05, 0.4, 0.9 * process.T]


@pytest.mark.parametrize("process", PROCESSES, ids=repr)
def test_gaussian_score_matches_finite_differences(rng, process):
    p0 = ld.Gaussian(rng.standard_normal(3), random_spd(rng, 3, cond=30))
    model = ld.GaussianScore(p0, process)
    x = rng.standard_normal((4, 3))
    for t in _times(process):
        np.testing.assert_allclose(model.score(x, t), mc.score_finite_difference(model, x, t), rtol=1e-6, atol=1e-6)
        # eps and x0 conventions
        a, s = float(process.alpha(t)), float(process.sigma(t))
        np.testing.assert_allclose(model.eps(x, t), -s * model.score(x, t))
        np.testing.assert_allclose(model.x0(x, t), (x - s * model.eps(x, t)) / a, rtol=1e-12)
        # Tweedie: E[x0 | x_t] = mu + alpha S S_t^{-1} (x - alpha mu)
        St = a * a * p0.cov + s * s * np.eye(3)
        tweedie = p0.mean + (a * p0.cov @ np.linalg.solve(St, (x - a * p0.mean).T)).T
        np.testing.assert_allclose(model.x0(x, t), tweedie, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("N", [2, 5, 6, 30])
@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_fit_equals_least_squares_on_sampled_pairs(rng, N, ridge):
    """LinearDenoiser.fit vs brute-force least squares on many (x0, eps) draws (N < d, N ~ d, N > d)."""
    d = 5
    X = rng.standard_normal((N, d)) @ np.diag([2.0, 1.0, 0.5, 0.3, 0.1]) + 1.0
    process = ld.DDPM.linear(100)
    model = ld.LinearDenoiser.fit(X, process, ridge=ridge)
    t = 30
    W, b = model.affine(t)
    batches = [mc.fit_linear(X, process, t, 20_000, rng, ridge=ridge) for _ in range(30)]
    W_mean, W_se = mc.batch_means([w for w, _ in batches])
    b_mean, b_se = mc.batch_means([v for _, v in batches])
    z = np.concatenate([((W_mean - W) / W_se).ravel(), (b_mean - b) / b_se])
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size, dof=29)
    # and the score is the fitted Gaussian's noised score (exact, no Monte Carlo)
    if ridge == 0.0:
        exact = ld.GaussianScore(ld.Gaussian.fit(X), process)
        W_e, b_e = exact.affine(t)
        np.testing.assert_allclose(W, W_e, atol=1e-12)
        np.testing.assert_allclose(b, b_e, atol=1e-12)


def test_fit_is_the_stationary_point_of_the_training_loss(rng):
    """Gradient of the exact training loss vanishes at the fit (checked by perturbation)."""
    X = rng.standard_normal((4, 6))  # N < d: the null space matters
    process = ld.VP.linear()
    model = ld.LinearDenoiser.fit(X, process, ridge=0.05)
    t = 0.3
    W, b = model.affine(t)
    base = ld.dsm_loss(model, X, t) + 0.05 * np.sum(W**2)
    for _ in range(5):
        dW, db = rng.standard_normal((6, 6)) * 1e-4, rng.standard_normal(6) * 1e-4
        pert = ld.LinearDenoiser.from_weights(process, lambda s, W=W + dW, b=b + db: (W, b), 6)
        W2 = W + dW
        assert ld.dsm_loss(pert, X, t) + 0.05 * np.sum(W2**2) >= base - 1e-12


def test_fit_with_one_point_and_null_space(rng):
    X = rng.standard_normal((1, 3))
    process = ld.DDPM.linear(50)
    model = ld.LinearDenoiser.fit(X, process)
    t = 10
    s = float(process.sigma(t))
    W, b = model.affine(t)
    np.testing.assert_allclose(W, np.eye(3) / s, rtol=1e-12)  # all noise: S_hat = 0
    np.testing.assert_allclose(model.x0(X * float(process.alpha(t)), t), X, atol=1e-12)


@pytest.mark.parametrize("centred", [True, False])
def test_early_stopping_equals_explicit_gradient_descent(rng, centred):
    X = rng.standard_normal((3, 4)) + 2.0  # N < d and a non-zero mean
    process = ld.OU()
    t, tau, lr = 0.2, 0.7, 0.5
    model = ld.LinearDenoiser.fit(X, process, train_time=tau, lr=lr, ridge=0.1, centred=centred)
    W, b = model.affine(t)
    W_gd, b_gd = mc.gradient_descent(X, process, t, tau, lr=lr, ridge=0.1, n_iter=40_000, centred=centred)
    # explicit Euler has O(step) error: step = tau*lr/n_iter
    np.testing.assert_allclose(W, W_gd, atol=5e-5)
    np.testing.assert_allclose(b, b_gd, atol=5e-5)
    if centred:
        assert model.spectral is not None
    else:
        assert model.spectral is None


def test_early_stopping_limits(rng):
    X = rng.standard_normal((10, 3))
    process = ld.DDPM.linear(100)
    full = ld.LinearDenoiser.fit(X, process)
    late = ld.LinearDenoiser.fit(X, process, train_time=1e6)
    zero = ld.LinearDenoiser.fit(X, process, train_time=0.0)
    np.testing.assert_allclose(late.affine(50)[0], full.affine(50)[0], atol=1e-12)
    assert np.all(zero.affine(50)[0] == 0.0)
    raw_late = ld.LinearDenoiser.fit(X, process, train_time=1e6, centred=False)
    np.testing.assert_allclose(raw_late.affine(50)[0], full.affine(50)[0], atol=1e-9)
    np.testing.assert_allclose(raw_late.affine(50)[1], full.affine(50)[1], atol=1e-9)


def test_population_equals_gaussian_score(rng):
    p0 = ld.Gaussian(rng.standard_normal(3), random_spd(rng, 3))
    process = ld.VP.linear()
    a, b = ld.LinearDenoiser.population(p0, process), ld.GaussianScore(p0, process)
    x = rng.standard_normal((3, 3))
    np.testing.assert_allclose(a.score(x, 0.5), b.score(x, 0.5))
    fits = [mc.fit_linear(p0, process, 0.5, 20_000, rng)[0] for _ in range(30)]
    mean, se = mc.batch_means(fits)
    z = ((mean - a.affine(0.5)[0]) / se).ravel()
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size, dof=29)


def test_callable_ridge_is_a_covariance_shift(rng):
    """Merger & Goldt: ridge c * alpha_bar_t equals fitting S_hat + c I."""
    X = rng.standard_normal((4, 6))
    process = ld.DDPM.linear(100)
    c = 0.3
    model = ld.LinearDenoiser.fit(X, process, ridge=lambda t: c * float(process.alpha(t)) ** 2)
    g = ld.Gaussian.fit(X)
    shifted = ld.GaussianScore(ld.Gaussian(g.mean, g.cov + c * np.eye(6)), process)
    np.testing.assert_allclose(model.affine(37)[0], shifted.affine(37)[0], atol=1e-12)


def test_noise_draw_fit_converges_and_is_reproducible(rng):
    X = rng.standard_normal((6, 3))
    process = ld.VP.linear()
    a = ld.LinearDenoiser.fit_noise_draws(X, process, draws=4, rng=7)
    b = ld.LinearDenoiser.fit_noise_draws(X, process, draws=4, rng=7)
    np.testing.assert_array_equal(a.affine(0.3)[0], b.affine(0.3)[0])
    assert not np.array_equal(a.affine(0.3)[0], a.affine(0.31)[0])
    # replicated fits with many draws scatter around the exact-expectation fit (z-scores)
    exact = ld.LinearDenoiser.fit(X, process).affine(0.3)[0]
    fits = [ld.LinearDenoiser.fit_noise_draws(X, process, draws=3000, rng=r).affine(0.3)[0] for r in range(25)]
    mean, se = mc.batch_means(fits)
    z = ((mean - exact) / se).ravel()
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size, dof=24)
    # very few draws: under-determined least squares still returns finite weights (min-norm)
    tiny = ld.LinearDenoiser.fit_noise_draws(X[:1], process, draws=2, rng=3)
    assert np.all(np.isfinite(tiny.affine(0.3)[0]))


# ---------------------------------------------------------------------------------------------------
def _log_mixture_mpmath(x, X, a, s, dps=60):
    with mp.workdps(dps):
        terms = [mp.exp(-sum((mp.mpf(xj) - a * mp.mpf(xi_j)) ** 2 for xj, xi_j in zip(x, xi)) / (2 * s * s))
                 for xi in X]
        return mp.log(sum(terms) / len(X)) - len(x) * mp.log(2 * mp.pi * s * s) / 2


def test_empirical_score_equals_gradient_of_log_mixture(rng):
    X = rng.standard_normal((5, 2))
    process = ld.OU()
    model = ld.EmpiricalScore(X, process)
    x = rng.standard_normal((3, 2))
    for t in [0.05, 0.5, 2.0]:
        np.testing.assert_allclose(model.score(x, t), mc.score_finite_difference(model, x, t, h=1e-6),
                                   rtol=1e-5, atol=1e-4)
        a, s = float(process.alpha(t)), float(process.sigma(t))
        for row in x:
            ref = _log_mixture_mpmath(row, X, mp.mpf(a), mp.mpf(s))
            assert model.logpdf(row, t) == pytest.approx(float(ref), rel=1e-12)


def test_empirical_score_mpmath_gradient_at_small_t(rng):
    """Analytic mpmath derivative at t where one point dominates: no overflow, correct direction."""
    X = rng.standard_normal((4, 3))
    process = ld.OU()
    model = ld.EmpiricalScore(X, process)
    t = 1e-4
    x = X[2] * np.exp(-t) + 0.01
    a, s = mp.mpf(np.exp(-t)), mp.sqrt(-mp.expm1(-2 * mp.mpf(t)))
    with mp.workdps(60):
        logits = [-sum((mp.mpf(x[j]) - a * mp.mpf(xi[j])) ** 2 for j in range(3)) / (2 * s * s) for xi in X]
        mx = max(logits)
        w = [mp.exp(l - mx) for l in logits]
        tot = sum(w)
        ref = [float((a * sum(w[i] * mp.mpf(X[i, j]) for i in range(4)) / tot - mp.mpf(x[j])) / (s * s)) for j in range(3)]
    score = model.score(x, t)
    assert np.all(np.isfinite(score))
    np.testing.assert_allclose(score, ref, rtol=1e-8)
    direction = (X[2] * np.exp(-t) - x) / np.linalg.norm(X[2] * np.exp(-t) - x)
    np.testing.assert_allclose(score / np.linalg.norm(score), direction, atol=1e-10)


def test_empirical_score_far_from_data_and_tiny_t_no_overflow(rng):
    X = rng.standard_normal((3, 2))
    model = ld.EmpiricalScore(X, ld.DDPM.linear(1000))
    x = np.array([[1e3, -1e3]])
    w = model.weights(x, 1)
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0)
    assert np.all(np.isfinite(model.score(x, 1)))


def test_empirical_score_rejects_t_zero():
    model = ld.EmpiricalScore(np.zeros((2, 2)) + [[0, 1], [1, 0]], ld.OU())
    with pytest.raises(ValueError, match="sigma"):
        model.score([0.0, 0.0], 0.0)


def test_score_undefined_at_t0_for_singular_model():
    X = np.array([[1.0, 0.0], [2.0, 0.0]])  # rank-1 covariance in 2-D
    model = ld.LinearDenoiser.fit(X, ld.VP.linear())
    with pytest.raises(ValueError, match="undefined at t=0"):
        model.score([0.0, 0.0], 0.0)
    ridge = ld.LinearDenoiser.fit(X, ld.VP.linear(), ridge=0.1)
    assert np.all(np.isfinite(ridge.score([0.0, 0.0], 0.0)))


def test_bad_inputs_raise_named_errors():
    process = ld.DDPM.linear(10)
    with pytest.raises(ValueError, match="X must have 2"):
        ld.LinearDenoiser.fit(np.zeros(3), process)
    with pytest.raises(ValueError, match="X contains NaN"):
        ld.LinearDenoiser.fit([[np.nan, 0.0]], process)
    with pytest.raises(ValueError, match="ridge"):
        ld.LinearDenoiser.fit(np.eye(2), process, ridge=-1.0)
    with pytest.raises(ValueError, match="train_time"):
        ld.LinearDenoiser.fit(np.eye(2), process, train_time=-1.0)
    with pytest.raises(ValueError, match="draws"):
        ld.LinearDenoiser.fit_noise_draws(np.eye(2), process, draws=0)
    model = ld.LinearDenoiser.fit(np.eye(2), process)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        model.score(np.zeros(3), 5)
    with pytest.raises(ValueError, match="integer step"):
        model.score(np.zeros(2), 11)
    with pytest.raises(TypeError, match="process"):
        ld.GaussianScore(ld.Gaussian.standard(2), "ddpm")


# ---------------------------------------------------------------------------------------------------
# Issue 11 regressions (items 4, 5, 7).
def test_issue11_item4_duplicate_points_far_away_weigh_equally():
    model = ld.EmpiricalScore([[1.0], [1.0]], ld.OU())
    for x in (1e6, 1e8, 1e12, -1e150):
        w = model.weights([[x]], 1.0)
        np.testing.assert_array_equal(w, [[0.5, 0.5]])
        np.testing.assert_array_equal(model.x0([[x]], 1.0), [[1.0]])


def test_empirical_weights_far_from_two_distinct_points_match_mpmath():
    """Far from the data the weights depend on logit *differences* of size |x| |x_i - x_j| / sigma^2."""
    X = np.array([[0.0], [1e-7]])
    model = ld.EmpiricalScore(X, ld.OU())
    t, x = 1.0, 1e8
    with mp.workdps(50):
        a_f = mp.mpf(float(ld.OU().alpha(t)))  # the float64 alpha and sigma lindiff uses
        s2_f = mp.mpf(float(ld.OU().sigma(t))) ** 2
        logits = [-(mp.mpf(x) - a_f * mp.mpf(xi)) ** 2 / (2 * s2_f) for xi in X[:, 0]]
        top = max(logits)
        e = [mp.exp(l - top) for l in logits]
        ref = [float(v / sum(e)) for v in e]
    np.testing.assert_allclose(model.weights([x], t), ref, rtol=1e-7)


def test_issue11_item5_weights_finite_as_t_goes_to_zero():
    model = ld.EmpiricalScore([[0.0]], ld.OU())
    np.testing.assert_array_equal(model.weights([[1e6]], 1e-300), [[1.0]])
    two = ld.EmpiricalScore([[0.0], [1.0]], ld.OU())
    np.testing.assert_array_equal(two.weights([[0.9], [0.1]], 1e-300), [[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(two.weights([[0.5]], 1e-300), [[0.5, 0.5]])
    s2 = float(ld.OU().sigma(1e-300)) ** 2
    assert two.logpdf([0.9], 1e-300) == pytest.approx(-0.1**2 / (2 * s2), rel=1e-12)
    assert two.logpdf([1e6], 1e-300) == -np.inf  # below the float64 range, documented
    np.testing.assert_allclose(model.score([[1e6]], 1e-300), [[-1e6 / 2e-300]], rtol=1e-12)
    with pytest.raises(ValueError, match="exceeds the float64 range"):
        model.score([[1e10]], 1e-300)


def test_issue11_item7_x0_of_a_gaussian_score_when_alpha_underflows():
    process = ld.VP.linear(5.5e10, 1, 1)
    assert float(process.alpha(1.0)) == 0.0  # exp(-1.4e10)
    model = ld.GaussianScore(ld.Gaussian([0.0, 0.0], np.eye(2)), process)
    # x0_hat = m + alpha l / (alpha^2 l + sigma^2) (x - alpha m) -> m: exactly the mean in float64
    np.testing.assert_array_equal(model.x0([[1e-12] * 2], 1.0), [[0.0, 0.0]])
    shifted = ld.GaussianScore(ld.Gaussian([3.0, -1.0], np.eye(2)), process)
    np.testing.assert_array_equal(shifted.x0([[5.0, 5.0]], 1.0), [[3.0, -1.0]])
    # with a ridge the prediction really is beyond float64 (k = r / (alpha (sigma^2 + r))): a named error
    ridge = ld.LinearDenoiser.population(ld.Gaussian([0.0, 0.0], np.eye(2)), process, ridge=0.1)
    with pytest.raises(ValueError, match="x0 prediction"):
        ridge.x0([[1.0, 1.0]], 1.0)
