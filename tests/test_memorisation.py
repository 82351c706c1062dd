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
