"""Covariance spectra for examples, benchmarks and sweeps."""

from __future__ import annotations

from importlib import resources

import numpy as np

from ._validation import as_finite_array, as_nonnegative_float, as_positive_int

__all__ = ["power_law", "power_law_grid", "cifar10", "random_basis"]


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


def power_law_grid(grid, exponent: float = 2.0, trace: float | None = None, zero: float | None = None) -> np.ndarray:
    r"""An image-like stationary spectrum on a periodic grid: :math:`p(k) \propto |f(k)|^{-p}`, for
    ``Gaussian.stationary``.

    ``f(k)`` is the frequency in cycles per pixel along each axis (numpy's ``fft.fftfreq`` order, so the
    array is indexed like an FFT and is symmetric, ``p(k) = p(-k)``), ``|f|`` its Euclidean norm.  Natural
    images have ``p`` close to 2 (van der Schaaf & van Hateren 1996, "Modelling the power spectra of natural
    images").  The zero frequency gets ``zero`` times the largest non-zero-frequency value (default 1: as
    much power as the lowest frequency; the mean of the field is set separately).  Normalised so that the
    spectrum sums to ``trace`` (default d: each pixel has variance 1).

    >>> p = power_law_grid((4, 4))
    >>> p.shape, round(float(p.mean()), 12), bool(p[0, 1] == p[0, 3])
    ((4, 4), 1.0, True)
    """
    from ._fourier import as_grid

    grid = as_grid(grid)
    p = as_nonnegative_float(exponent, "exponent")
    mesh = np.meshgrid(*[np.fft.fftfreq(n) for n in grid], indexing="ij")
    radius = np.sqrt(sum(f * f for f in mesh))
    values = np.zeros(grid)
    nonzero = radius > 0
    values[nonzero] = radius[nonzero] ** -p
    top = float(values.max(initial=0.0)) if nonzero.any() else 1.0
    values[~nonzero] = top * (1.0 if zero is None else as_nonnegative_float(zero, "zero"))
    d = values.size
    total = float(d) if trace is None else as_nonnegative_float(trace, "trace")
    if values.sum() == 0:
        raise ValueError("the spectrum is zero everywhere (a 1-point grid with zero=0); use zero > 0")
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
