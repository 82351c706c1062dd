"""Covariance spectra for examples, benchmarks and sweeps."""

from __future__ import annotations

from importlib import resources

import numpy as np

from ._validation import as_finite_array, as_nonnegative_float, as_positive_int

__all__ = ["power_law", "cifar10", "random_basis"]


def power_law(d: int, exponent: float = 1.0, trace: float | None = None) -> np.ndarray:
    r"""Eigenvalues :math:`\lambda_k \propto k^{-p}`, ``k = 1..d``, normalised to ``trace`` (default d,
    i.e. mean eigenvalue 1, the Merger & Goldt normalisation).  ``exponent = 0`` is isotropic.

    >>> power_law(3, 0.0)
    array([1., 1., 1.])
    """
    d = as_positive_int(d, "d")
    p = as_nonnegative_float(exponent, "exponent")
    values = np.arange(1, d + 1, dtype=float) ** -p
    total = float(d) if trace is None else as_nonnegative_float(trace, "trace")
    return values * (total / values.sum())


def cifar10(normalise_trace: bool = False) -> np.ndarray:
    """The 3072 eigenvalues of the CIFAR-10 pixel covariance, descending, as float64.

    Shipped with lindiff (12 kB).  ``normalise_trace=True`` rescales them to mean 1.
    """
    with resources.files("lindiff").joinpath("data/cifar10_cov_eigenvalues.npy").open("rb") as fh:
        values = np.sort(np.load(fh).astype(np.float64))[::-1].copy()
    if normalise_trace:
        values *= values.size / values.sum()
    return values


def random_basis(d: int, rng=None) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    from ._validation import as_rng

    d = as_positive_int(d, "d")
    q, r = np.linalg.qr(as_rng(rng).standard_normal((d, d)))
    return q * np.sign(np.diag(r))
