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

A Gaussian's law is its *clipped* eigendecomposition (:class:`PSDEig`): once the constructor has accepted a
covariance, every later computation uses those eigenvalues and never re-tests a derived matrix for
positive semi-definiteness ("whatever the constructor accepts, every function accepts").

Divergences between Gaussians are assembled from the pieces below so that nothing cancels:

* per eigenvalue ratio ``r = a/b``: :func:`kl_ratio_term` (``r - 1 - log r``) and
  :func:`hellinger_ratio_term` (``log((1 + r)^2 / (4 r))``), from ``a - b`` and ``log a - log b``;
* for a dense pair, :func:`pencil` gives the generalised eigenvalues ``r_i`` of ``(S_p, S_q)`` as
  ``x_i = r_i - 1``, the eigenvalues of the *whitened difference* ``S_q^{-1/2} (S_p - S_q) S_q^{-1/2}``
  (the difference is formed from the two input matrices, before any factorisation), plus
  ``sum_i log r_i`` from the two spectra separately, which is accurate when some ``r_i`` are tiny;
* :func:`bures_sq`, the Bures term of W2 as ``||S_p^{1/2} - S_q^{1/2} U||_F^2`` with ``U`` the
  orthogonal polar factor of ``S_q^{1/2} S_p^{1/2}`` (a difference computed directly, so it is never
  negative and keeps its relative accuracy when the two covariances nearly agree).
"""

from __future__ import annotations

import math
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


def negligible_offset(offset: np.ndarray, eigenvalues: np.ndarray, *means: np.ndarray) -> bool:
    """Is a mean offset along directions where a law has no variance numerically zero?

    Yes when its squared length is within the eigenvalue cut-off (it is then below the resolution of
    the covariance), or within ``rcond`` of the means' own magnitude (round-off of the means).
    """
    offset = np.asarray(offset, dtype=np.float64)
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    size = max(eigenvalues.size, 1)
    mean_scale = max((float(np.max(np.abs(m), initial=0.0)) for m in means), default=0.0)
    with np.errstate(over="ignore"):
        tol = cutoff(eigenvalues) + (rcond(size) * mean_scale) ** 2
        return bool(np.sum(offset**2) <= tol)


def negligible_offsets(offsets: np.ndarray, eigenvalues: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Row-wise :func:`negligible_offset`: rows of ``offsets`` (components along null directions) with
    ``scales`` the magnitude of the points they come from."""
    offsets = np.asarray(offsets, dtype=np.float64)
    size = max(np.asarray(eigenvalues).size, 1)
    with np.errstate(over="ignore"):
        tol = cutoff(eigenvalues) + (rcond(size) * np.asarray(scales, dtype=np.float64)) ** 2
        return np.sum(offsets**2, axis=-1) <= tol


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
    # Cholesky succeeds on some numerically singular matrices: cholesky_pd confirms with the cut-off
    chol = cholesky_pd(matrix)
    if chol is not None:
        return float(2.0 * np.sum(np.log(np.diag(chol))))
    eig = psd_eig(matrix)
    return eig.logdet()


def cholesky_pd(matrix: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a symmetric matrix that is positive definite beyond the shared cut-off, or
    None (not positive definite, or its smallest pivot within the cut-off: callers then use ``eigh``)."""
    try:
        chol = np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return None
    diag = np.diag(chol)
    if not (diag.size and np.all(diag > 0)):
        return None
    largest = float(np.max(np.sum(chol**2, axis=1)))  # the largest diagonal entry of the matrix
    if not float(np.min(diag)) ** 2 > rcond(matrix.shape[0]) * largest:
        return None
    return chol


def solve_lower(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``L^{-1} rhs`` for a lower-triangular factor (scipy's LAPACK triangular solve, O(d^2))."""
    from scipy.linalg import solve_triangular

    return solve_triangular(factor, rhs, lower=True, check_finite=False)


def solve_psd(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Minimum-norm solution of ``matrix @ x = rhs`` for a symmetric PSD matrix (pseudo-inverse)."""
    return psd_eig(matrix).pinv() @ rhs


def relax(h: np.ndarray, time: float | None, lr: float, overwrite: bool = False) -> np.ndarray:
    """Gradient-flow filter ``(1 - exp(-2 lr time h)) / h``, and ``1/h`` when ``time`` is None.

    This is the closed-form solution of ``dw/dtau = -lr (2 h w - 2)`` from ``w = 0`` at ``tau =
    time``; at ``h = 0`` its limit ``2 lr time`` is returned (no 0/0).  For ``time = None`` and
    ``h = 0`` (or ``1/h`` beyond float64) the result is ``inf``; callers decide whether that is an error.
    ``overwrite=True`` lets the usual case write into ``h`` (a caller's scratch table: no second
    (times x modes) allocation).
    """
    h = np.asarray(h, dtype=np.float64)
    if time is None:
        with np.errstate(divide="ignore", over="ignore"):  # 1/h beyond float64 is inf too; callers raise
            if h.min(initial=np.inf) > 0:  # the usual case: one pass, no masks (sweeps call this on (T, d) tables)
                return np.reciprocal(h, out=h if overwrite else None)
            return np.where(h > 0, 1.0 / np.where(h > 0, h, 1.0), np.inf)
    rate = 2.0 * lr * time
    with np.errstate(over="ignore"):  # rate * h = inf is fine: expm1(-inf) = -1
        x = rate * h
    big = x > 1e-12
    out = np.empty(np.shape(x))
    out[big] = -np.expm1(-x[big]) / h[big]
    out[~big] = rate * (1.0 - 0.5 * x[~big])  # the series, also exact at h = 0
    return out


def relax_matrix(h: np.ndarray, time: float | None, lr: float, definite: bool = False) -> np.ndarray:
    """Matrix version of :func:`relax` for a symmetric PSD ``h`` (through ``eigh``).

    With ``definite=True`` the caller knows ``h`` is positive definite: eigenvalues below the shared
    cut-off are then genuine but unresolved (anywhere in ``[0, cutoff]``), and their relaxation lies
    between ``2 lr time`` and ``(1 - e^{-2 lr time cutoff}) / cutoff``.  If those differ by more than
    1e-8 relative, the result is not determined by float64 and a ``ValueError`` names ``train_time``.
    """
    eig = psd_eig(h, "gradient-flow Hessian")
    if definite and eig.singular and time is not None:
        tol = cutoff(eig.values)
        if 2.0 * lr * time * tol > 1e-8:
            raise ValueError(
                f"train_time = {time:g} (lr = {lr:g}) is too long for the gradient flow on this Hessian: its "
                f"eigenvalues span more than float64 resolves (largest {float(eig.values.max()):.3g}; those below "
                f"{tol:.3g} are unresolved, and their relaxation over this time is not determined); use a shorter "
                "train_time, a smaller ridge, train_time=None or centred=True")
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


# ------------------------------------------------------------------------------------------------
# Divergence building blocks.
def log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log(a / b)`` for positive arrays, also where ``a / b`` would under- or overflow."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):
        ratio = a / b
    ok = (ratio > np.finfo(np.float64).tiny) & np.isfinite(ratio)
    # log(a/b) rounds once; log a - log b would add two roundings of the (possibly large) logs
    return np.where(ok, np.log(np.where(ok, ratio, 1.0)), np.log(a) - np.log(b))


def kl_ratio_term(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``r - 1 - log r`` for ``r = a / b`` (``a, b > 0``), with no cancellation anywhere.

    ``r - 1 = (a - b)/b`` is formed from the difference (exact when ``a`` and ``b`` are within a factor
    2, Sterbenz); near ``r = 1`` the result comes from :func:`x_minus_log1p`, elsewhere from
    ``(r - 1) - log r`` with ``log r`` from :func:`log_ratio` (a sum of terms of one sign, or a
    difference at least ten times its rounding error).  Relative error a few ulp.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(over="ignore"):
        x = (a - b) / b
    near = np.abs(x) < 0.5
    out = np.empty(np.broadcast(a, b).shape)
    out[near] = x_minus_log1p(x[near])
    far = ~near
    out[far] = x[far] - log_ratio(a[far], b[far]) if far.any() else 0.0
    return out


def hellinger_ratio_term(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log((a + b)^2 / (4 a b)) = log(1 + (a - b)^2 / (4 a b))`` for ``a, b > 0``, no cancellation.

    This is ``-4 log`` of one mode's Bhattacharyya factor ``(r^{1/4} / ((1 + r)/2)^{1/2})`` with
    ``r = a/b``; it is symmetric in ``a`` and ``b``.  Near ``a = b`` it is ``log1p`` of the squared
    relative difference, elsewhere ``2 log((a + b)/2) - log a - log b`` evaluated as
    ``2 log((1 + r)/2) - log r`` with ``r = min/max`` (terms of one sign).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    x = (hi - lo) / hi  # in [0, 1)
    near = x < 0.5
    out = np.empty(np.broadcast(a, b).shape)
    xn = x[near]
    # (hi - lo)^2 / (4 hi lo) = x^2 / (4 (1 - x)) with x = (hi - lo)/hi
    out[near] = np.log1p(xn * xn / (4.0 * (1.0 - xn)))
    far = ~near
    if far.any():
        r = lo[far] / hi[far]
        out[far] = 2.0 * np.log1p(r) - 2.0 * math.log(2.0) - log_ratio(lo[far], hi[far])
    return out


def log_det_ratio(values_p: np.ndarray, values_q: np.ndarray) -> float:
    """``sum log(values_p) - sum log(values_q)`` for positive arrays, scaled so that the rounding error
    is that of the ratio and not of the two (possibly huge) log-determinants."""
    values_p = np.asarray(values_p, dtype=np.float64)
    values_q = np.asarray(values_q, dtype=np.float64)
    top = max(float(np.max(values_p, initial=0.0)), float(np.max(values_q, initial=0.0)))
    if top <= 0.0:
        return 0.0
    scale = 2.0 ** math.frexp(top)[1]  # a power of two: the division is exact
    return float(np.sum(np.log(values_p / scale)) - np.sum(np.log(values_q / scale)))


@dataclass(frozen=True)
class Pencil:
    """Generalised eigen-decomposition of a pair ``(S_p, S_q)`` on the common support ``range(S_q)``.

    ``x`` are ``r_i - 1`` (``r_i`` the generalised eigenvalues), computed as the eigenvalues of the
    whitened difference; ``mean`` is the mean difference whitened by ``S_q`` in the same eigenbasis
    (``sum mean**2 = dm^T S_q^+ dm``); ``log_det`` is ``sum_i log r_i`` from the two spectra.
    """

    x: np.ndarray
    mean: np.ndarray
    log_det: float


def pencil(cov_p: np.ndarray, cov_q: np.ndarray, eig_p: PSDEig, eig_q: PSDEig, dm: np.ndarray) -> Pencil:
    r"""Generalised eigenvalues of ``(S_p, S_q)`` as ``x = r - 1``, without cancellation near ``S_p = S_q``.

    The caller has checked that both laws live on ``range(S_q)`` (same rank, no mass of ``p`` off it).
    With ``B`` the range basis of ``S_q`` and ``L`` its non-zero eigenvalues,

    .. math:: X = L^{-1/2} B^T (S_p - S_q) B L^{-1/2},\qquad x = \operatorname{eig}(X).

    The difference ``S_p - S_q`` is formed from the two matrices first (exact where their entries agree
    to a factor 2), so a relative perturbation ``delta`` of a covariance with condition number ``kappa``
    gives ``x`` with relative error ``~ d eps kappa`` rather than ``eps kappa / delta``: the computed
    ``X`` is exact for a pair whose common part moved by ``O(eps ||S_q||)``.
    """
    basis = eig_q.range_basis()
    values = eig_q.values[~eig_q.zero]
    inv_root = 1.0 / np.sqrt(values)
    diff = cov_p - cov_q
    if basis.shape[1] == basis.shape[0] and is_identity(basis):
        projected = diff
    else:
        projected = basis.T @ diff @ basis
    X = projected * inv_root[:, None] * inv_root[None, :]
    X = 0.5 * (X + X.T)
    if X.size:
        x, vectors = np.linalg.eigh(X)
    else:
        x, vectors = np.zeros(0), np.zeros((0, 0))
    mean = vectors.T @ ((basis.T @ dm) * inv_root)
    log_det = log_det_ratio(eig_p.values[~eig_p.zero], values)
    return Pencil(x, mean, log_det)


def is_identity(U: np.ndarray) -> bool:
    """True for an identity basis (checked in O(d), exactly): products with it can be skipped."""
    if not isinstance(U, np.ndarray):  # an implicit (Fourier) basis is the identity only in one dimension ([[1]])
        return U.shape[0] <= 1
    # a 1 x 1 basis may be [[-1]] (eigh's sign): it is the identity only when its entry is 1
    return U.shape[0] == 0 or (U[0, 0] == 1.0 and U[-1, -1] == 1.0 and np.count_nonzero(U) == U.shape[0]
                               and bool(np.all(np.diag(U) == 1.0)))


def _bures_trace_form(eig_p: PSDEig, eig_q: PSDEig) -> float | None:
    r"""The trace form :math:`\operatorname{tr}S_p + \operatorname{tr}S_q - 2\sum_i \sqrt{\nu_i}`,
    :math:`\nu = \operatorname{eig}(D_p^{1/2} V_p^T S_q V_p D_p^{1/2})`, from p's eigendecomposition: one
    change of basis and one symmetric eigenvalue solve (no square roots of matrices, no SVD), about half an
    ``eigh``.  Its absolute error is ``~ d eps (tr S_p + tr S_q)``, so it is used only where the result is at
    least ``1e-3`` of that scale (relative error then below ``~1e-12 d``); otherwise None, and the caller
    takes the polar-factor form, which has no cancellation."""
    vp, lp = eig_p.vectors, eig_p.values
    vq, lq = eig_q.vectors, eig_q.values
    d = vp.shape[0]
    if vq.shape[0] > 1 and is_identity(vq):
        cq = (vp.T * lq) @ vp
    elif vp.shape[0] > 1 and is_identity(vp):  # p diagonal (a spectral law): no change of basis
        cq = (vq * lq) @ vq.T
    else:
        m = vp.T @ vq
        cq = (m * lq) @ m.T
    rp = np.sqrt(lp)
    inner = rp[:, None] * cq * rp[None, :]
    nu = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    total = float(np.sum(lp) + np.sum(lq))
    value = total - 2.0 * float(np.sum(np.sqrt(np.clip(nu, 0.0, None))))
    if not np.isfinite(value) or value < 1e-3 * total * max(1.0, d * EPS * 1e3):
        return None
    return value


def bures_sq(eig_p: PSDEig, eig_q: PSDEig, diff=None) -> float:
    r"""Bures term of :math:`W_2^2`: :math:`\operatorname{tr}S_p + \operatorname{tr}S_q -
    2\operatorname{tr}(S_p^{1/2} S_q S_p^{1/2})^{1/2}`, from the two (clipped) eigendecompositions.

    Evaluated as :math:`\min_{U^TU = I}\|S_p^{1/2} - S_q^{1/2} U\|_F^2`, attained at the orthogonal polar
    factor ``U`` of :math:`S_q^{1/2} S_p^{1/2} = V \Sigma W^T` (``U = V W^T``, from an SVD).  The
    residual is a difference formed directly, so the result is never negative, is exactly zero for equal
    roots, and any orthogonal ``U`` gives an upper bound: an error ``eta`` in ``U`` changes the result by
    only ``O(eta^2 ||S||)`` (the minimum is stationary).

    Near equality the residual's entries are far below the roots' round-off (``d eps ||S||^{1/2}``, from
    the slightly non-orthogonal eigenvectors).  When ``diff = S_p - S_q`` (formed from the two input
    matrices) is given and both are non-singular, the residual is then rebuilt from differences only:
    ``S_p^{1/2} - S_q^{1/2} U = Delta + S_q^{1/2} (I - U)`` with ``Delta = S_p^{1/2} - S_q^{1/2}`` the
    solution of the Sylvester equation ``S_p^{1/2} Delta + Delta S_q^{1/2} = S_p - S_q`` (solved in the two
    eigenbases) and ``U`` replaced by the exactly orthogonal Cayley transform
    ``(I - Omega)(I + Omega)^{-1}`` of the computed polar factor, so that ``I - U = 2 Omega (I + Omega)^{-1}``.
    """
    fast = _bures_trace_form(eig_p, eig_q)
    if fast is not None:
        return fast
    root_p, root_q = eig_p.sqrt(), eig_q.sqrt()
    V, _, Wt = np.linalg.svd(root_q @ root_p)
    polar = V @ Wt
    resid = root_p - root_q @ polar
    value = float(np.sum(resid * resid))
    if diff is None or eig_p.singular or eig_q.singular:
        return value
    total = float(np.sum(eig_p.values) + np.sum(eig_q.values))
    # the plain residual has absolute error ~ d eps ||S||^{1/2} per entry: keep it when W2^2 is large
    if value > 1e-4 * total:
        return value
    if callable(diff):  # formed only here, where it is needed (a spectral law's dense covariance costs a product)
        diff = diff()
    d = root_p.shape[0]
    eye = np.eye(d)
    plus = eye + polar
    if np.linalg.cond(plus) > 1e3:  # the Cayley transform needs U far from having eigenvalue -1
        return value
    omega = np.linalg.solve(plus, eye - polar)
    omega = 0.5 * (omega - omega.T)
    one_minus_u = 2.0 * np.linalg.solve((eye + omega).T, omega.T).T
    sp, sq = np.sqrt(eig_p.values), np.sqrt(eig_q.values)
    vp, vq = eig_p.vectors, eig_q.vectors
    delta = vp @ ((vp.T @ diff @ vq) / (sp[:, None] + sq[None, :])) @ vq.T
    resid = delta + root_q @ one_minus_u
    return float(np.sum(resid * resid))
