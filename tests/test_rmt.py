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
