"""The single source of truth for symmetric-matrix numerics in lindiff.

Every decision of the form "is this eigenvalue zero?" is taken here, by :func:`cutoff`, in the spirit of
scipy's ``_eigvalsh_to_eps``: an eigenvalue of a d x d matrix is numerically zero when its magnitude is
at most ``rcond(d) * max|lambda|`` with ``rcond(d) = 10 * max(d, 100) * finfo(float64).eps`` — a
generous bound on the round-off of ``eigh`` (a few ``d`` ulps of the largest eigenvalue): 2.2e-13 for
small d, 6.8e-12 at d = 3072.  scipy's default (``1e6 eps = 2.2e-10``) would zero genuine eigenvalues
of real spectra (a fitted CIFAR-10 covariance has condition number ~1e10).  KL, W2,
Hellinger, scores, log-determinants and samplers all call these helpers, so the rank of a matrix is
the same wherever it is asked.

Square roots are taken through ``eigh`` with clipping, never ``scipy.linalg.sqrtm`` (which is
Schur-based and can return complex output for PSD input; scipy#12247).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = float(np.finfo(np.float64).eps)


def rcond(d: int) -> float:
    """Relative eigenvalue cut-off for a d x d matrix: |lambda| <= rcond(d) * max|lambda| counts as zero."""
    return 10.0 * max(int(d), 100) * EPS

SYMMETRY_RTOL = 1e-10
"""A matrix is symmetric when ``max|C - C^T| <= SYMMETRY_RTOL * max(1, max|C|)``."""


def cutoff(eigenvalues: np.ndarray, scale: float = 0.0) -> float:
    """Absolute threshold below which eigenvalues of this spectrum are numerically zero.

    ``scale`` is the magnitude of the problem the matrix came from (e.g. the initial covariance of a
    sampler): a matrix whose eigenvalues are *all* round-off relative to that scale (a collapsed law)
    is then recognised as zero, which a purely relative cut-off cannot do.
    """
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if eigenvalues.size == 0:
        return 0.0
    return float(rcond(eigenvalues.size) * max(float(np.max(np.abs(eigenvalues))), float(scale)))


@dataclass(frozen=True)
class PSDEig:
    """Eigendecomposition of a symmetric positive semi-definite matrix, with its rank decided once.

    ``values`` are ascending and clipped so that numerically-zero eigenvalues are exactly 0.
    """

    values: np.ndarray
    vectors: np.ndarray
    zero: np.ndarray  # boolean mask of numerically-zero eigenvalues

    @property
    def rank(self) -> int:
        return int(np.count_nonzero(~self.zero))

    @property
    def singular(self) -> bool:
        return bool(np.any(self.zero))

    def logdet(self) -> float:
        """log det; ``-inf`` when singular."""
        if self.singular:
            return -np.inf
        return float(np.sum(np.log(self.values)))

    def logpdet(self) -> float:
        """log pseudo-determinant (product of the non-zero eigenvalues)."""
        return float(np.sum(np.log(self.values[~self.zero])))

    def sqrt(self) -> np.ndarray:
        """Symmetric PSD square root."""
        return (self.vectors * np.sqrt(self.values)) @ self.vectors.T

    def pinv(self) -> np.ndarray:
        """Moore–Penrose pseudo-inverse with the shared cut-off."""
        inv = np.zeros_like(self.values)
        inv[~self.zero] = 1.0 / self.values[~self.zero]
        return (self.vectors * inv) @ self.vectors.T

    def range_basis(self) -> np.ndarray:
        return self.vectors[:, ~self.zero]

    def null_basis(self) -> np.ndarray:
        return self.vectors[:, self.zero]


def clip_spectrum(values: np.ndarray, name: str = "covariance", scale: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Check a spectrum is PSD within the cut-off, then return (clipped values, zero mask).

    Raises ``ValueError`` naming ``name`` if an eigenvalue is below ``-cutoff``.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} has non-finite eigenvalues; a finite PSD matrix is required")
    tol = cutoff(values, scale)
    if values.size and values.min() < -tol:
        raise ValueError(
            f"{name} is not positive semi-definite: smallest eigenvalue {values.min():.3e} is below "
            f"-{tol:.3e} (the numerical-zero tolerance, {rcond(values.size):.1e} x largest |eigenvalue|); "
            "a symmetric positive semi-definite matrix is required"
        )
    zero = np.abs(values) <= tol
    clipped = np.where(zero, 0.0, values)
    return clipped, zero


def psd_eig(matrix: np.ndarray, name: str = "covariance", scale: float = 0.0) -> PSDEig:
    """``eigh`` of a symmetric PSD matrix, with the shared zero cut-off applied (see :func:`cutoff`)."""
    values, vectors = np.linalg.eigh(np.asarray(matrix, dtype=np.float64))
    values, zero = clip_spectrum(values, name, scale)
    return PSDEig(values, vectors, zero)


def is_symmetric(matrix: np.ndarray) -> bool:
    scale = max(1.0, float(np.max(np.abs(matrix)))) if matrix.size else 1.0
    return bool(np.max(np.abs(matrix - matrix.T), initial=0.0) <= SYMMETRY_RTOL * scale)


def sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via ``eigh`` with clipping."""
    return psd_eig(matrix).sqrt()


def trace_sqrt_psd(matrix: np.ndarray) -> float:
    """``tr(M^{1/2})`` for a PSD matrix M: sum of square roots of its clipped eigenvalues."""
    values = np.linalg.eigvalsh(np.asarray(matrix, dtype=np.float64))
    values, _ = clip_spectrum(values, "matrix under the square root")
    return float(np.sum(np.sqrt(values)))


def logdet_pd(matrix: np.ndarray) -> float:
    """Stable log-determinant of a positive-definite matrix (Cholesky; ``eigh`` if that fails).

    Returns ``-inf`` for a singular PSD matrix.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    try:
        chol = np.linalg.cholesky(matrix)
        diag = np.diag(chol)
        if np.all(diag > 0):
            eig = None
            # Cholesky succeeds on some numerically singular matrices; confirm with the cut-off.
            smallest = float(np.min(diag)) ** 2
            largest = float(np.max(np.sum(chol**2, axis=1)))
            if smallest > rcond(matrix.shape[0]) * largest:
                return float(2.0 * np.sum(np.log(diag)))
    except np.linalg.LinAlgError:
        pass
    eig = psd_eig(matrix)
    return eig.logdet()


def solve_psd(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Minimum-norm solution of ``matrix @ x = rhs`` for a symmetric PSD matrix (pseudo-inverse)."""
    return psd_eig(matrix).pinv() @ rhs


def relax(h: np.ndarray, time: float | None, lr: float) -> np.ndarray:
    """Gradient-flow filter ``(1 - exp(-2 lr time h)) / h``, and ``1/h`` when ``time`` is None.

    This is the closed-form solution of ``dw/dtau = -lr (2 h w - 2)`` from ``w = 0`` at ``tau =
    time``; at ``h = 0`` its limit ``2 lr time`` is returned (no 0/0).  For ``time = None`` and
    ``h = 0`` the result is ``inf``; callers decide whether that is an error.
    """
    h = np.asarray(h, dtype=np.float64)
    if time is None:
        with np.errstate(divide="ignore"):
            return np.where(h > 0, 1.0 / np.where(h > 0, h, 1.0), np.inf)
    rate = 2.0 * lr * time
    x = rate * h
    safe = np.where(x > 1e-12, h, 1.0)
    return np.where(x > 1e-12, -np.expm1(-x) / safe, rate * (1.0 - 0.5 * x))


def relax_matrix(h: np.ndarray, time: float | None, lr: float) -> np.ndarray:
    """Matrix version of :func:`relax` for a symmetric PSD ``h`` (through ``eigh``)."""
    eig = psd_eig(h, "gradient-flow Hessian")
    return (eig.vectors * relax(eig.values, time, lr)) @ eig.vectors.T


def x_minus_log1p(x: np.ndarray) -> np.ndarray:
    """``x - log(1 + x)`` for ``x > -1`` without cancellation near 0 (KL's ``r - 1 - log r``).

    Direct evaluation loses all digits for ``|x| < 1e-8``; below ``|x| = 0.05`` the alternating series
    ``sum_k (-1)^k x^k / k`` (k >= 2, 20 terms, truncation < 1e-27 relative) is used instead.
    """
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 0.05
    out = np.empty_like(x)
    big = ~small
    out[big] = x[big] - np.log1p(x[big])
    xs = x[small]
    acc = np.zeros_like(xs)
    power = xs * xs
    for k in range(2, 22):
        acc += (1.0 if k % 2 == 0 else -1.0) * power / k
        power = power * xs
    out[small] = acc
    return out
