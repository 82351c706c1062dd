import math

import numpy as np
import pytest

import lindiff as ld
from lindiff.rmt import MarchenkoPastur, Silverstein


@pytest.mark.parametrize("q", [0.2, 0.7, 1.5, 4.0])
def test_marchenko_pastur_moments(q):
    mp = MarchenkoPastur(q, scale=2.0)
    assert mp.expect(lambda x: np.ones_like(x)) == pytest.approx(1.0, rel=1e-10)
    assert mp.expect(lambda x: x) == pytest.approx(2.0, rel=1e-10)                 # E tr S_hat / d = s
    assert mp.expect(lambda x: x**2) == pytest.approx(4.0 * (1 + q), rel=1e-10)     # second moment s^2 (1 + q)
    assert mp.atom == pytest.approx(max(0.0, 1 - 1 / q))
    if q < 1:
        # closed forms: int log x dF = log s - 1 + (q - 1)/q log(1 - q); int 1/x dF = 1/(s (1 - q))
        assert mp.expect(np.log) == pytest.approx(math.log(2.0) - 1 + (q - 1) / q * math.log(1 - q), rel=1e-9)
        assert mp.expect(lambda x: 1 / x) == pytest.approx(1 / (2.0 * (1 - q)), rel=1e-9)


@pytest.mark.parametrize("q", [0.3, 2.0])
def test_silverstein_reduces_to_marchenko_pastur(q):
    s = Silverstein(np.full(40, 1.5), q)
    mp = MarchenkoPastur(q, 1.5)
    x = np.linspace(0.05, 6, 80)
    np.testing.assert_allclose(s.density(x), mp.density(x), atol=2e-4)
    f = lambda v: v / (v + 0.2)  # noqa: E731
    assert s.expect(f) == pytest.approx(mp.expect(f), abs=2e-4)


def test_finite_d_expected_kl_approaches_the_mp_limit():
    """Exact finite-N E KL/d (known mean) converges to (1/2) int (x - 1 - log x) dMP as d grows at fixed q."""
    q = 0.5
    limit = 0.5 * MarchenkoPastur(q).expect(lambda x: x - 1 - np.log(x))
    errs = [abs(ld.expected_kl(d, int(d / q), mean="known") / d - limit) for d in (25, 100, 400, 1600)]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    slope = np.polyfit(np.log([25, 100, 400, 1600]), np.log(errs), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)


def test_silverstein_predicts_the_training_loss_for_a_power_law_spectrum():
    """Deterministic equivalent of (1/d) sum alpha^2 l/(alpha^2 l + sigma^2) vs exact finite-d averages."""
    q, process, t = 0.5, ld.DDPM.linear(1000), 50
    a2, s2 = float(process.alpha(t)) ** 2, float(process.sigma(t)) ** 2
    f = lambda x: a2 * x / (a2 * x + s2)  # noqa: E731
    errors = []
    for d in (40, 160):
        spec = ld.spectra.power_law(d, 1.0)
        prediction = Silverstein(spec, q).expect(f)
        p0 = ld.Gaussian.from_spectrum(spec)
        rng = np.random.default_rng(d)
        # known-mean sample covariance (the Silverstein law's setting), exact training loss per set
        vals = []
        for _ in range(30):
            X = p0.sample(int(d / q), rng)
            lam = np.linalg.eigvalsh(X.T @ X / X.shape[0])
            vals.append(np.mean(f(np.maximum(lam, 0))))
        errors.append(abs(np.mean(vals) - prediction))
    assert errors[1] < errors[0] and errors[1] < 5e-3


def _mp_stieltjes(z: complex, q: float, s: float) -> complex:
    """Marchenko–Pastur transform at 50 digits: the root of s q z m^2 + (z - s(1 - q)) m + 1 = 0 that is a
    Stieltjes transform (Im m > 0 above the axis; m > 0 on the negative axis)."""
    import mpmath

    with mpmath.workdps(50):
        zz, qq, ss = mpmath.mpc(z.real, z.imag), mpmath.mpf(q), mpmath.mpf(s)
        a, b = ss * qq * zz, zz - ss * (1 - qq)
        r = mpmath.sqrt(b * b - 4 * a)
        roots = [(-b + r) / (2 * a), (-b - r) / (2 * a)]
        return complex(max(roots, key=(lambda v: v.imag) if z.imag > 0 else (lambda v: v.real)))


@pytest.mark.parametrize("scale", [1e-5, 1.0, 2.48e5, 5.87e5])
@pytest.mark.parametrize("q", [0.3, 1.0, 1.0023, 2.5, 522.6])
def test_silverstein_stieltjes_near_the_axis_and_at_large_scale(scale, q):
    """Issue 11: at z = -1 and z = 1 + 1e-3 i with a spectrum of scale ~1e5 the fixed-point iteration stalled and
    Newton divided by zero / overflowed.  Against the Marchenko–Pastur closed form at 50 digits, at points near
    zero (where the companion equation cancels for q < 1), near the upper edge and inside the bulk."""
    law = Silverstein(np.full(2, scale), q)
    z = np.array([-1.0, 1 + 1e-3j, scale * (1 + math.sqrt(q)) ** 2 + 1e-9j * scale, scale + 1e-12j * scale,
                  -1e-8 * scale, 1e-8j * scale])
    m = law.stieltjes(z)
    exact = np.array([_mp_stieltjes(complex(v), q, scale) for v in z])
    rel = np.abs(m - exact) / np.abs(exact)
    # at an edge of the support the equation is ill-conditioned: the upper edge (point 2), and for q = 1 the
    # hard edge at 0, which points 4 and 5 approach to 1e-8 of the scale
    tol = np.array([1e-12, 1e-12, 1e-9, 1e-12] + [1e-11 if q == 1.0 else 1e-12] * 2)
    assert np.all(rel < tol), rel
    assert np.all(m[z.imag > 0].imag > 0) and np.all(m[z.imag == 0].imag == 0)


def test_silverstein_stieltjes_general_spectrum_and_bad_points():
    tau = np.array([0.5, 2.0, 7.0])
    law = Silverstein(tau, 0.4)
    m = law.stieltjes([-1.0, 3.0 + 1e-9j])
    # the d x d equation holds to rounding, and m(-1) is E[1/(x + 1)] under the limit density
    residual = m - np.mean(1.0 / (tau[None, :] * (1 - 0.4 - 0.4 * np.array([-1.0, 3.0 + 1e-9j])[:, None] * m[:, None])
                                   - np.array([-1.0, 3.0 + 1e-9j])[:, None]), axis=1)
    assert np.all(np.abs(residual) < 1e-14 * np.abs(m))
    assert m[0].real == pytest.approx(law.expect(lambda x: 1 / (x + 1)), abs=1e-4)
    for bad in (0.5, 1.0 - 1e-3j, np.nan, "1", [[1j]]):
        with pytest.raises(ValueError, match="z "):
            law.stieltjes(bad)
