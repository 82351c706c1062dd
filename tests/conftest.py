import numpy as np
import pytest


def random_spd(rng, d, cond=10.0, scale=1.0):
    """SPD matrix with eigenvalues log-spaced over [scale/cond, scale] in a random basis."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))
    lam = scale * np.logspace(-np.log10(cond), 0, d)
    rng.shuffle(lam)
    return (q * lam) @ q.T


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)
