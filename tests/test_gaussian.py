import math

import mpmath as mp
import numpy as np
import pytest

import lindiff as ld
from lindiff import mc
from conftest import random_spd


def kl_mpmath(m1, S1, m2, S2, dps=50):
    """Reference KL(N1 || N2) in 50-digit arithmetic (independent of lindiff's helpers)."""
    with mp.workdps(dps):
        A, B = mp.matrix(S1.tolist()), mp.matrix(S2.tolist())
        dm = mp.matrix((m2 - m1).tolist())
        Binv = B**-1
        tr = sum((Binv * A)[i, i] for i in range(A.rows))
        quad = (dm.T * Binv * dm)[0, 0]
        return float(0.5 * (tr - A.rows + quad + mp.log(mp.det(B)) - mp.log(mp.det(A))))


def w2_mpmath(m1, S1, m2, S2, dps=40):
    with mp.workdps(dps):
        A, B = mp.matrix(S1.tolist()), mp.matrix(S2.tolist())
        rA = mp.sqrtm(A)
        cross = mp.sqrtm(rA * B * rA)
        tr = sum(A[i, i] + B[i, i] - 2 * cross[i, i] for i in range(A.rows))
        dm = sum((m1[i] - m2[i]) ** 2 for i in range(A.rows))
        return float(mp.sqrt(mp.re(dm + tr)))


def test_gaussian_validates_input():
    with pytest.raises(ValueError, match="cov must have shape"):
        ld.Gaussian(np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="not symmetric"):
        ld.Gaussian(np.zeros(2), [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="not positive semi-definite"):
        ld.Gaussian(np.zeros(2), [[1.0, 0.0], [0.0, -1e-3]])
    with pytest.raises(ValueError, match="NaN"):
        ld.Gaussian([0.0, np.nan], np.eye(2))
    with pytest.raises(ValueError, match="mean must have 1"):
        ld.Gaussian(np.zeros((2, 1)), np.eye(2))
    with pytest.raises(ValueError, match="orthonormal"):
        ld.Gaussian.from_spectrum([1.0, 2.0], basis=[[1.0, 1.0], [0.0, 1.0]])
    # tiny negative eigenvalues within the cut-off are clipped to exactly zero
    g = ld.Gaussian(np.zeros(2), [[1.0, 0.0], [0.0, -1e-14]])
    assert g.rank == 1 and g.eigenvalues.min() == 0.0


def test_fit_uses_one_over_n(rng):
    X = rng.standard_normal((7, 3))
    g = ld.Gaussian.fit(X)
    np.testing.assert_allclose(g.cov, np.cov(X, rowvar=False, bias=True), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(g.mean, X.mean(axis=0))


def test_sample_moments_match(rng):
    S = random_spd(rng, 4, cond=20)
    g = ld.Gaussian(rng.standard_normal(4), S)
    x = g.sample(40_000, rng)
    z = mc.moment_z_scores(x, g)
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size)


def test_logpdf_matches_scipy_and_singular_support(rng):
    from scipy.stats import multivariate_normal

    S = random_spd(rng, 3)
    g = ld.Gaussian(np.ones(3), S)
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(g.logpdf(x), multivariate_normal(np.ones(3), S).logpdf(x), rtol=1e-12)
    sing = ld.Gaussian.from_spectrum([2.0, 0.0])
    assert sing.logpdf([1.0, 0.5]) == -np.inf
    np.testing.assert_allclose(sing.logpdf([1.0, 0.0]), multivariate_normal([0.0], [[2.0]]).logpdf([1.0]))


@pytest.mark.parametrize("d", [1, 3, 6])
def test_kl_and_w2_match_mpmath(rng, d):
    S1, S2 = random_spd(rng, d, cond=50), random_spd(rng, d, cond=1e3)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    p, q = ld.Gaussian(m1, S1), ld.Gaussian(m2, S2)
    assert ld.kl(p, q) == pytest.approx(kl_mpmath(m1, S1, m2, S2), rel=1e-10)
    assert ld.w2(p, q) == pytest.approx(w2_mpmath(m1, S1, m2, S2), rel=1e-9)


def test_kl_matches_monte_carlo(rng):
    S1, S2 = random_spd(rng, 3), random_spd(rng, 3, cond=5)
    p, q = ld.Gaussian(rng.standard_normal(3), S1), ld.Gaussian(rng.standard_normal(3), S2)
    est = mc.kl(p, q, 200_000, rng)
    assert abs(est.z(ld.kl(p, q))) < 4


def test_divergences_of_identical_are_exactly_zero(rng):
    S = random_spd(rng, 5, cond=1e6)
    p = ld.Gaussian(rng.standard_normal(5), S)
    q = ld.Gaussian(p.mean.copy(), p.cov.copy())
    assert ld.kl(p, q) == 0.0 and ld.w2(p, q) == 0.0 and ld.hellinger(p, q) == 0.0


def test_fast_path_agrees_with_dense(rng):
    U = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    p = ld.Gaussian.from_spectrum(rng.uniform(0.1, 3, 5), U, rng.standard_normal(5))
    q = ld.Gaussian.from_spectrum(rng.uniform(0.1, 3, 5), U, rng.standard_normal(5))
    assert p.shares_basis_with(q)
    pd, qd = ld.Gaussian(p.mean, p.cov), ld.Gaussian(q.mean, q.cov)
    assert ld.kl(p, q) == pytest.approx(ld.kl(pd, qd), rel=1e-10)
    assert ld.w2(p, q) == pytest.approx(ld.w2(pd, qd), rel=1e-9)


def test_singular_kl_is_infinite_with_reason_w2_finite():
    p = ld.Gaussian.from_spectrum([1.0, 1.0])
    q = ld.Gaussian.from_spectrum([1.0, 0.0])
    value = ld.kl(p, q)
    assert math.isinf(value) and isinstance(value, ld.Infinite) and "singular" in value.reason
    assert math.isinf(ld.kl(q, p))  # q has no density on R^2
    assert ld.w2(p, q) == pytest.approx(1.0)
    assert ld.hellinger(p, q) == 1.0
    # same support: finite, computed on the subspace
    r = ld.Gaussian.from_spectrum([2.0, 0.0])
    assert ld.kl(q, r) == pytest.approx(0.5 * (0.5 - 1 + math.log(2)))
    # a mean offset off the common support is infinite
    s = ld.Gaussian.from_spectrum([2.0, 0.0], mean=[0.0, 1.0])
    assert math.isinf(ld.kl(q, s))
    assert not math.isnan(ld.kl(q, s))


def test_singular_dense_path_agrees(rng):
    U = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    p = ld.Gaussian.from_spectrum([1.0, 2.0, 0.0, 0.5], U)
    q = ld.Gaussian.from_spectrum([3.0, 1.0, 0.0, 0.7], U)
    pd, qd = ld.Gaussian(p.mean, p.cov), ld.Gaussian(q.mean, q.cov)
    assert ld.kl(pd, qd) == pytest.approx(ld.kl(p, q), rel=1e-8)
    assert ld.hellinger(pd, qd) == pytest.approx(ld.hellinger(p, q), rel=1e-8)


def test_hellinger_closed_form_1d():
    p, q = ld.Gaussian([0.0], [[1.0]]), ld.Gaussian([1.0], [[4.0]])
    bc = math.sqrt(2 * 1 * 2 / 5) * math.exp(-0.25 * 1 / 5)
    assert ld.hellinger(p, q) == pytest.approx(math.sqrt(1 - bc), rel=1e-12)


def test_hellinger_matches_quadrature(rng):
    from scipy.integrate import quad
    from scipy.stats import norm

    p, q = ld.Gaussian([0.3], [[0.7]]), ld.Gaussian([-0.4], [[2.5]])
    bc = quad(lambda x: math.sqrt(norm.pdf(x, 0.3, math.sqrt(0.7)) * norm.pdf(x, -0.4, math.sqrt(2.5))), -30, 30)[0]
    assert ld.hellinger(p, q) == pytest.approx(math.sqrt(1 - bc), rel=1e-9)


def test_against_torch_and_pot_when_installed(rng):
    S1, S2 = random_spd(rng, 4), random_spd(rng, 4, cond=30)
    m1, m2 = rng.standard_normal(4), rng.standard_normal(4)
    p, q = ld.Gaussian(m1, S1), ld.Gaussian(m2, S2)
    checked = 0
    try:
        import torch
        from torch.distributions import MultivariateNormal, kl_divergence
    except ImportError:
        pass
    else:
        ref = kl_divergence(MultivariateNormal(torch.tensor(m1), torch.tensor(S1)),
                            MultivariateNormal(torch.tensor(m2), torch.tensor(S2))).item()
        assert ld.kl(p, q) == pytest.approx(ref, rel=1e-9)
        checked += 1
    try:
        import ot
    except ImportError:
        pass
    else:
        ref = float(ot.gaussian.bures_wasserstein_distance(m1, m2, S1, S2))
        assert ld.w2(p, q) == pytest.approx(ref, rel=1e-7)
        checked += 1
    if not checked:
        pytest.skip("neither torch nor POT is installed; mpmath references cover these formulas")


def test_kl_of_nearly_equal_gaussians_has_no_cancellation(rng):
    """r - 1 - log r cancels catastrophically for r ~ 1; compare with a 50-digit reference."""
    d = 4
    S = random_spd(rng, d, cond=10)
    bump = 1e-7 * np.diag(rng.uniform(0.5, 1.5, d))
    p, q = ld.Gaussian(np.zeros(d), S + bump), ld.Gaussian(np.zeros(d), S)
    ref = kl_mpmath(np.zeros(d), S + bump, np.zeros(d), S, dps=60)
    assert ld.kl(p, q) == pytest.approx(ref, rel=1e-6)  # eigh of the whitened matrix limits it to ~1e-9 abs in r
    lam = rng.uniform(0.5, 2, d)
    ps = ld.Gaussian.from_spectrum(lam * (1 + 1e-9))
    qs = ld.Gaussian.from_spectrum(lam, basis=ps.eigenvectors)
    with mp.workdps(50):
        exact = sum(0.5 * ((mp.mpf(1) + mp.mpf("1e-9")) - 1 - mp.log(mp.mpf(1) + mp.mpf("1e-9"))) for _ in range(d))
    # the perturbation 1e-9 itself is rounded in float64 (relative 1e-7), hence rel=1e-6
    assert ld.kl(ps, qs) == pytest.approx(float(exact), rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# Issue 11 regressions: each reproducer against a value computed independently in 50-digit mpmath.
import mpmath_reference as mref  # noqa: E402


def _kl_1d_exact(a, b):
    with mp.workdps(50):
        r = mp.mpf(a) / mp.mpf(b)
        return (r - 1 - mp.log(r)) / 2


def _hellinger_1d_exact(a, b):
    with mp.workdps(50):
        a, b = mp.mpf(a), mp.mpf(b)
        return mp.sqrt(-mp.expm1(mp.log(a) / 4 + mp.log(b) / 4 - mp.log((a + b) / 2) / 2))


def test_issue11_item1_kl_and_hellinger_of_far_apart_spectra():
    U = np.eye(1)
    p, q = ld.Gaussian.from_spectrum([1e-12], U), ld.Gaussian.from_spectrum([1e5], U)
    assert p.shares_basis_with(q)
    exact = _kl_1d_exact(1e-12, 1e5)
    assert float(exact) == pytest.approx(19.0719732904494, rel=1e-14)
    assert ld.kl(p, q) == pytest.approx(float(exact), rel=1e-14)
    assert ld.kl(q, p) == pytest.approx(float(_kl_1d_exact(1e5, 1e-12)), rel=1e-14)
    h = _hellinger_1d_exact(1e-12, 1e5)
    assert float(h) == pytest.approx(0.99996, abs=1e-5)
    assert ld.hellinger(p, q) == pytest.approx(float(h), rel=1e-14)
    assert ld.hellinger(p, q) == ld.hellinger(q, p)
    # the dense path gives the same values
    pd, qd = ld.Gaussian([0.0], [[1e-12]]), ld.Gaussian([0.0], [[1e5]])
    assert ld.kl(pd, qd) == pytest.approx(float(exact), rel=1e-14)
    assert ld.hellinger(pd, qd) == pytest.approx(float(h), rel=1e-14)


def test_issue11_item2_hellinger_of_a_near_singular_and_a_huge_covariance():
    v = np.array([0.9, 0.8, 0.85, 0.82])
    C = np.outer(v, v) + 1e-10 * np.eye(4)  # rank ~1, entries ~0.8, condition ~3e10
    for scale in (1e12, 1e3, 1.0):
        p, q = ld.Gaussian(np.zeros(4), C), ld.Gaussian(np.zeros(4), scale * np.eye(4))
        exact = float(mref.hellinger(np.zeros(4), C, np.zeros(4), scale * np.eye(4)))
        for value in (ld.hellinger(p, q), ld.hellinger(q, p)):
            assert np.isfinite(value) and 0.0 <= value <= 1.0
            assert value == pytest.approx(exact, rel=1e-9)
    # exactly rank one (the other eigenvalues are round-off): different supports, H = 1 exactly
    p = ld.Gaussian(np.zeros(4), np.outer(v, v))
    assert p.rank == 1 and ld.hellinger(p, ld.Gaussian(np.zeros(4), 1e12 * np.eye(4))) == 1.0


def test_issue11_item8_whatever_the_constructor_accepts_every_divergence_accepts():
    p = ld.Gaussian([0.0, 0.0], np.diag([1e-6, 1e6]))
    q = ld.Gaussian([0.0, 0.0], np.diag([1e7, -1e-6]))  # -1e-6 is within the cut-off: the law is diag(1e7, 0)
    assert q.rank == 1 and q.eigenvalues.min() == 0.0
    with mp.workdps(50):
        exact = float(mp.sqrt((mp.sqrt(mp.mpf(1e-6)) - mp.sqrt(mp.mpf(1e7))) ** 2 + mp.mpf(1e6)))
    assert ld.w2(p, q) == pytest.approx(exact, rel=1e-13)
    assert ld.w2(q, p) == pytest.approx(exact, rel=1e-13)
    for value in (ld.kl(p, q), ld.kl(q, p)):
        assert isinstance(value, ld.Infinite) and "singular" in value.reason
    assert ld.hellinger(p, q) == ld.hellinger(q, p) == 1.0
    # and the score models, losses and samplers take it too
    process = ld.VP.linear()
    model = ld.GaussianScore(q, process)
    assert np.all(np.isfinite(model.score([1.0, 1.0], 0.5)))
    assert np.isfinite(ld.dsm_loss(model, q, 0.5)) and np.isfinite(ld.irreducible_loss(q, process, 0.5))
    law = ld.sampling_law(model, process, "euler", 20, t_min=1e-3, init=q)
    assert np.all(np.isfinite(law.cov))


def test_w2_of_nearly_equal_covariances_is_not_lost():
    """Issue 11: for S2 = S1 + 1e-8 E the trace form returned 0.0; the value is ~1e-8."""
    rng = np.random.default_rng(11)
    for cond in (1.0, 1e3, 1e6):
        S1 = random_spd(rng, 4, cond=cond)
        E = random_spd(rng, 4, cond=10.0)
        E /= np.linalg.norm(E, 2)
        S2 = S1 + 1e-8 * E
        exact = float(mref.w2(np.zeros(4), S1, np.zeros(4), S2))
        value = ld.w2(ld.Gaussian(np.zeros(4), S1), ld.Gaussian(np.zeros(4), S2))
        assert value == pytest.approx(exact, rel=1e-9)
    # two float64 representations of one law are (numerically) zero apart
    U = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    spectral = ld.Gaussian.from_spectrum(np.logspace(0, -6, 5), U)
    dense = ld.Gaussian(np.zeros(5), spectral.cov)
    assert ld.w2(spectral, dense) < 1e-12


def test_a_one_dimensional_basis_of_minus_one_is_not_the_identity():
    """Issue 11 (fuzz): ``is_identity`` took every 1 x 1 basis for the identity, so a law built in the basis
    [[-1]] (eigh's sign for a 1 x 1 covariance) got the mean in that basis instead of its own, and the
    spectral and dense sampling laws had opposite means."""
    from lindiff import _linalg

    U = np.array([[-1.0]])
    assert not _linalg.is_identity(U) and _linalg.is_identity(np.array([[1.0]]))
    assert ld.Gaussian._in_basis(np.array([1.0]), U, np.array([0.5])).mean[0] == -0.5
    p0 = ld.Gaussian.from_spectrum([1.0], U, mean=[-0.98912135])
    model = ld.GaussianScore(p0, ld.DDPM.linear(100, 0.000631, 0.999))
    spectral = ld.sampling_law(model, model.process, "ddim")
    dense = ld.sampling_law(model, model.process, "ddim", path="dense")
    assert spectral.mean[0] == pytest.approx(dense.mean[0], rel=1e-12) and spectral.mean[0] < 0


@pytest.mark.parametrize("seed", range(6))
def test_hellinger_cholesky_route_equals_the_whitened_route(seed, monkeypatch):
    """Far-apart non-singular pairs take the Cholesky route (no eigh); it agrees with the whitened-difference
    route to 1e-12, and declines nearly equal pairs (where only the whitened route is accurate)."""
    from lindiff import gaussian as gmod

    rng = np.random.default_rng(seed)
    d = 6
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    p = ld.Gaussian.from_spectrum(np.geomspace(1.0, 10.0 ** -(seed % 4), d), basis, mean=rng.standard_normal(d))
    q = ld.Gaussian(0.3 * rng.standard_normal(d), random_spd(rng, d, cond=10.0 ** (1 + seed % 3)))
    assert gmod._log_bc_from_factor(q, p, q.mean - p.mean) is not None
    fast = [ld.hellinger(p, q), ld.hellinger(q, p)]
    monkeypatch.setattr(gmod, "_log_bc_from_factor", lambda *args: None)
    slow = [ld.hellinger(p, q), ld.hellinger(q, p)]
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    monkeypatch.undo()
    near = ld.Gaussian(p.mean + 1e-9, p.cov * (1 + 1e-9))
    assert gmod._log_bc_from_factor(near, p, p.mean - near.mean) is None
