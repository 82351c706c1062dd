import numpy as np
import pytest

import lindiff as ld
from lindiff import mc
from conftest import random_spd


def _setup(rng, N, d=4, process=None):
    process = process or ld.DDPM.linear(100)
    p0 = ld.Gaussian(rng.standard_normal(d), random_spd(rng, d, cond=20))
    X = p0.sample(N, rng)
    return process, p0, X


@pytest.mark.parametrize("N", [3, 4, 12])
@pytest.mark.parametrize("kind", ["fit", "ridge", "early", "raw"])
def test_dsm_loss_matches_monte_carlo(rng, N, kind):
    process, p0, X = _setup(rng, N)
    model = {
        "fit": lambda: ld.LinearDenoiser.fit(X, process),
        "ridge": lambda: ld.LinearDenoiser.fit(X, process, ridge=0.2),
        "early": lambda: ld.LinearDenoiser.fit(X, process, train_time=3.0),
        "raw": lambda: ld.LinearDenoiser.fit(X, process, train_time=3.0, centred=False),
    }[kind]()
    for t in [2, 40, 95]:
        for data in (X, p0):
            est = mc.dsm_loss(model, data, t, 200_000, rng)
            assert abs(est.z(ld.dsm_loss(model, data, t))) < 4.5


def test_spectral_and_dense_losses_agree(rng):
    process, p0, X = _setup(rng, 3, d=5, process=ld.VP.linear())
    model = ld.LinearDenoiser.fit(X, process, ridge=0.1, train_time=2.0)
    t = np.array([0.01, 0.2, 0.7])
    for data in (X, p0):
        np.testing.assert_allclose(ld.dsm_loss(model, data, t), ld.dsm_loss(model.to_dense(), data, t), rtol=1e-11)


def test_fisher_identity_and_irreducible_part(rng):
    process, p0, X = _setup(rng, 10, process=ld.OU())
    t = np.array([0.05, 0.5, 2.0])
    s2 = process.sigma(t) ** 2
    for model in (ld.LinearDenoiser.fit(X, process), ld.LinearDenoiser.fit(X, process, ridge=0.3).to_dense()):
        lhs = ld.dsm_loss(model, p0, t)
        rhs = s2 * ld.score_matching_loss(model, p0, t) + ld.irreducible_loss(p0, process, t)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-11)
    exact = ld.GaussianScore(p0, process)
    np.testing.assert_allclose(ld.dsm_loss(exact, p0, t), ld.irreducible_loss(p0, process, t), rtol=1e-12)
    np.testing.assert_allclose(ld.score_matching_loss(exact, p0, t), 0.0, atol=1e-10)
    # irreducible = d - sigma^2 tr S_t^{-1}  (Vastola's trace of the DSM target covariance)
    St = [process.marginal(p0, s) for s in t]
    ref = [p0.dim - float(process.sigma(s)) ** 2 * np.trace(np.linalg.inv(g.cov)) for s, g in zip(t, St)]
    np.testing.assert_allclose(ld.irreducible_loss(p0, process, t), ref, rtol=1e-10)


def test_score_matching_loss_matches_monte_carlo(rng):
    process, p0, X = _setup(rng, 6, process=ld.VP.linear())
    model = ld.LinearDenoiser.fit(X, process)
    truth = ld.GaussianScore(p0, process)
    t = 0.3
    x = process.marginal(p0, t).sample(200_000, rng)
    vals = np.sum((model.score(x, t) - truth.score(x, t)) ** 2, axis=1)
    est = mc.Estimate(vals.mean(), vals.std(ddof=1) / np.sqrt(vals.size), vals.size)
    assert abs(est.z(ld.score_matching_loss(model, p0, t))) < 4


def test_generalisation_gap_closed_form_and_memorisation(rng):
    """docs/theory.md#train-and-test-loss-at-the-optimum: gap = alpha^2 sigma^2 [tr(Sh_t^{-2}(S - S_hat)) + dmu^T Sh_t^{-2} dmu] (eps units)."""
    d = 6
    process = ld.DDPM.linear(1000)
    p0 = ld.Gaussian(rng.standard_normal(d), random_spd(rng, d))
    for N in (3, 20):
        X = p0.sample(N, rng)
        g = ld.Gaussian.fit(X)
        model = ld.LinearDenoiser.fit(X, process)
        for t in (1, 10, 500):
            a, s = float(process.alpha(t)), float(process.sigma(t))
            Sh = a * a * g.cov + s * s * np.eye(d)
            Si2 = np.linalg.matrix_power(np.linalg.inv(Sh), 2)
            dm = g.mean - p0.mean
            ref = a * a * s * s * (np.trace(Si2 @ (p0.cov - g.cov)) + dm @ Si2 @ dm)
            assert ld.generalisation_gap(model, X, p0, t) == pytest.approx(ref, rel=1e-9)
    # N < d: the gap explodes as t -> 0 (like alpha^2 / sigma^2 in eps units per null direction)
    X = p0.sample(3, rng)
    model = ld.LinearDenoiser.fit(X, process)
    gaps = ld.generalisation_gap(model, X, p0, np.array([1, 2, 5, 50]))
    assert np.all(np.diff(gaps) < 0) and gaps[0] > 1e3


def test_dsm_loss_rejects_bad_input(rng):
    process, p0, X = _setup(rng, 5)
    model = ld.LinearDenoiser.fit(X, process)
    with pytest.raises(ValueError, match="dimension"):
        ld.dsm_loss(model, ld.Gaussian.standard(3), 5)
    with pytest.raises(TypeError, match="affine"):
        ld.dsm_loss(ld.EmpiricalScore(X, process), X, 5)
    with pytest.raises(ValueError, match="integer step"):
        ld.dsm_loss(model, X, 0.5)


def test_issue11_item6_raw_flow_with_huge_ridge_and_time():
    """The raw-parameter flow's Hessian spans 1e300 to 1: float64 cannot resolve it by eigh."""
    X = np.array([[1e-6, -2e-6, 3e-6]])
    kwargs = dict(ridge=1e300, train_time=1e300)
    raw = ld.LinearDenoiser.fit(X, ld.OU(), centred=False, **kwargs)
    centred = ld.LinearDenoiser.fit(X, ld.OU(), centred=True, **kwargs)
    # W = sigma / (alpha^2 l + sigma^2 + r) ~ 1e-300: the loss is d (1 - sigma W)^2 + ... = 3 to float64
    assert ld.dsm_loss(raw, X, 1.0) == 3.0
    assert ld.dsm_loss(centred, X, 1.0) == 3.0
    # converged flow = the minimiser, also in a resolvable case (both parametrisations agree)
    rng = np.random.default_rng(3)
    Y = rng.standard_normal((4, 3)) + 2.0
    a = ld.LinearDenoiser.fit(Y, ld.OU(), ridge=0.1, train_time=1e4, centred=False)
    b = ld.LinearDenoiser.fit(Y, ld.OU(), ridge=0.1)
    np.testing.assert_allclose(a.affine(0.5)[0], b.affine(0.5)[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.affine(0.5)[1], b.affine(0.5)[1], rtol=1e-12, atol=1e-15)
    # an unconverged flow on an unresolvable Hessian is a named error, not a wrong number
    with pytest.raises(ValueError, match="train_time"):
        ld.dsm_loss(ld.LinearDenoiser.fit(X, ld.OU(), ridge=1e20, train_time=1e-10, centred=False), X, 1.0)


@pytest.mark.parametrize("kind", ["fit", "ridge", "early", "dense"])
def test_train_test_losses_equal_the_three_calls(kind):
    from lindiff.losses import train_test_losses

    rng = np.random.default_rng(3)
    p0 = ld.Gaussian.from_spectrum([3.0, 1.0, 0.2, 0.05], mean=[0.5, 0.0, -1.0, 2.0])
    X = p0.sample(6, rng)
    process = ld.DDPM.linear(200)
    options = {"fit": {}, "ridge": {"ridge": 0.3}, "early": {"train_time": 2.0}, "dense": {"train_time": 2.0, "centred": False}}
    model = ld.LinearDenoiser.fit(X, process, **options[kind])
    times = np.array([1.0, 20.0, 150.0, 200.0])
    got = train_test_losses(model, X, p0, times)
    want = (ld.dsm_loss(model, X, times), ld.dsm_loss(model, p0, times), ld.generalisation_gap(model, X, p0, times))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    # the training set's fitted Gaussian gives the same training loss; a scalar time gives floats
    np.testing.assert_allclose(train_test_losses(model, ld.Gaussian.fit(X), p0, times)[0], want[0], rtol=1e-12)
    scalar = train_test_losses(model, X, p0, 20.0)
    assert all(isinstance(v, float) for v in scalar)
    np.testing.assert_allclose(scalar, [w[1] for w in want], rtol=1e-12)
