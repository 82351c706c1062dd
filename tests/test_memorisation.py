import math

import numpy as np
import pytest

import lindiff as ld
from lindiff.memorisation import collapse_time, memorisation_fraction, memorisation_table, nearest_ratio, speciation_time


@pytest.mark.parametrize("d,N,expected", [(100, 1000, 1.024), (100, 100, 1.215), (1000, 1000, 2.144), (10, 10**4, 0.086)])
def test_collapse_time_isotropic_closed_form(d, N, expected):
    t = collapse_time(np.ones(d), N, ld.OU(10.0))
    assert t == pytest.approx(0.5 * math.log(1 + 1 / (N ** (2 / d) - 1)), rel=1e-10)
    assert t == pytest.approx(expected, abs=1e-3)


def test_speciation_time():
    assert speciation_time([9.0, 1.0], ld.OU()) == pytest.approx(0.5 * math.log(9.0))
    assert speciation_time([0.5], ld.OU()) == 0.0
    with pytest.raises(ValueError, match="continuous"):
        speciation_time([2.0], ld.DDPM.linear(10))


def test_memorisation_fraction_and_ratio():
    X = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = np.array([[0.01, 0.0], [5.0, 0.0], [0.0, 9.9]])
    first, ratio = nearest_ratio(samples, X)
    np.testing.assert_allclose(first, [0.01, 5.0, 0.1])
    assert memorisation_fraction(samples, X) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="dimension"):
        nearest_ratio(np.zeros((2, 3)), X)


def test_empirical_score_memorises_and_linear_model_does_not():
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(3, 1.0) * 2)
    table = memorisation_table(p0, 15, ld.VP.linear(), [0.5, 1e-3], steps=100, n=200, rng=3)
    late = table.rows[-1]
    assert late[1] > 0.9 and late[3] < 0.2  # copies: empirical vs linear at t_min = 1e-3
    assert table.rows[0][1] < late[1]


def test_collapse_time_of_a_point_mass_is_zero():
    """All eigenvalues zero: the criterion is 0 < log N / d at every t (the training points coincide and the
    empirical law is the population), so nothing collapses.  It used to raise scipy's bare bracket error."""
    assert collapse_time(np.array([0.0, 0.0]), 6, ld.VP.linear(2, 2, 0.316228)) == 0.0
    # and t_C -> 0 continuously as the spectrum shrinks
    times = [collapse_time(np.array([v, 0.0]), 6, ld.VP.linear(2, 2, 0.316228)) for v in (1e-2, 1e-6, 1e-12)]
    assert times[0] > times[1] > times[2] > 0


def test_collapse_time_many_decades_below_T():
    """The root may lie far below 1e-12 T (the old bracket); it is found in log t to full precision.
    For the constant-rate VP, SNR_t = 1/expm1(beta t) exactly, so the root has a closed form."""
    beta, lam, N = 2.0, 1e-12, 24
    snr = (N**2 - 1) / lam  # d = 1: 0.5 log(1 + SNR lam) = log N
    exact = math.log1p(1 / snr) / beta
    t = collapse_time([lam], N, ld.VP.linear(beta, beta, 0.316228))
    assert t == pytest.approx(exact, rel=1e-12) and t < 1e-12 * 0.316228
    with pytest.raises(ValueError, match="float64"):
        collapse_time([1e-300], 10**6, ld.VP.linear(beta, beta, 0.316228))
    for bad in ([-1.0, 1.0], []):
        with pytest.raises(ValueError, match="non-negative"):
            collapse_time(bad, 10, ld.OU())
        with pytest.raises(ValueError, match="non-negative"):
            speciation_time(bad, ld.OU())


def test_memorisation_table_refuses_a_data_law_without_variance():
    """A rank-0 law gives N identical training points: distances relative to their spread are 0/0 (it used to
    raise ZeroDivisionError after sampling)."""
    p0 = ld.Gaussian.from_spectrum([0.0, 0.0], mean=[1.0, -2.0])
    with pytest.raises(ValueError, match="p0 \\(rank 0\\)"):
        memorisation_table(p0, 5, ld.VP.linear(), [0.5], steps=3, n=4, rng=0, progress=False)
