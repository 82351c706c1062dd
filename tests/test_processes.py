import numpy as np
import pytest

import lindiff as ld


def test_ddpm_conventions():
    betas = np.array([0.1, 0.2, 0.3])
    p = ld.DDPM(betas)
    abar = np.cumprod(1 - betas)
    np.testing.assert_allclose(p.alpha([1, 2, 3]) ** 2, abar, rtol=1e-14)
    np.testing.assert_allclose(p.sigma([1, 2, 3]) ** 2, 1 - abar, rtol=1e-14)
    assert p.alpha(0) == 1.0 and p.sigma(0) == 0.0
    assert p.T == 3


def test_ddpm_linear_and_cosine_match_diffusers_definitions():
    p = ld.DDPM.linear(1000)
    np.testing.assert_allclose(p.betas, np.linspace(1e-4, 2e-2, 1000))
    c = ld.DDPM.cosine(1000)
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    k = np.arange(1, 1001)
    np.testing.assert_allclose(c.betas, np.minimum(1 - f(k / 1000) / f((k - 1) / 1000), 0.999), rtol=1e-12)


def test_vp_and_ou_closed_forms():
    vp = ld.VP.linear(0.1, 20.0, 1.0)
    t = np.linspace(0, 1, 7)
    B = 0.1 * t + 0.5 * 19.9 * t**2
    np.testing.assert_allclose(vp.alpha(t), np.exp(-B / 2), rtol=1e-14)
    np.testing.assert_allclose(vp.sigma(t) ** 2 + vp.alpha(t) ** 2, 1.0, rtol=1e-14)
    ou = ld.OU()
    np.testing.assert_allclose(ou.alpha(t), np.exp(-t), rtol=1e-14)
    # d log alpha / dt = f = -beta/2, and g^2 = d sigma^2/dt - 2 f sigma^2 = beta (finite differences)
    h = 1e-6
    s = 0.37
    dlog = (np.log(vp.alpha(s + h)) - np.log(vp.alpha(s - h))) / (2 * h)
    assert dlog == pytest.approx(float(vp.drift(s)), rel=1e-7)
    ds2 = (vp.sigma(s + h) ** 2 - vp.sigma(s - h) ** 2) / (2 * h)
    assert ds2 - 2 * float(vp.drift(s)) * float(vp.sigma(s)) ** 2 == pytest.approx(float(vp.diffusion2(s)), rel=1e-6)


def test_marginal_keeps_basis_and_matches_formula(rng):
    p0 = ld.Gaussian.from_spectrum([1.0, 4.0], np.linalg.qr(rng.standard_normal((2, 2)))[0], [1.0, -2.0])
    proc = ld.DDPM.linear(100)
    pt = proc.marginal(p0, 40)
    a, s = float(proc.alpha(40)), float(proc.sigma(40))
    np.testing.assert_allclose(pt.cov, a * a * p0.cov + s * s * np.eye(2), atol=1e-14)
    np.testing.assert_allclose(pt.mean, a * p0.mean)
    assert pt.shares_basis_with(p0)


@pytest.mark.parametrize("bad", [[0.0, 0.1], [0.5, 1.0], [0.1, np.nan], [], [[0.1]]])
def test_ddpm_rejects_bad_betas(bad):
    with pytest.raises(ValueError, match="betas"):
        ld.DDPM(bad)


def test_times_outside_process_are_rejected():
    with pytest.raises(ValueError, match=r"integer step in \[0, 10\]"):
        ld.DDPM.linear(10).alpha(11)
    with pytest.raises(ValueError, match="integer step"):
        ld.DDPM.linear(10).alpha(2.5)
    with pytest.raises(ValueError, match="must lie in"):
        ld.VP.linear().sigma(1.5)
    with pytest.raises(ValueError, match="must lie in"):
        ld.OU().alpha(-0.1)
    with pytest.raises(ValueError, match="beta_min"):
        ld.VP.linear(beta_min=-1.0)
