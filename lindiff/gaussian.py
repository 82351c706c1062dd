"""Gaussians and the divergences between them: KL, Wasserstein-2 and Hellinger.

All three go through :mod:`lindiff._linalg`, so "numerically zero" means the same thing in each.
When two Gaussians share an eigenbasis (both built with :meth:`Gaussian.from_spectrum` on the same
basis) the divergences are computed per eigenvalue in O(d).  Two C-channel stationary fields on one grid
in different per-frequency rotations (:meth:`Gaussian.stationary` with ``channels``, e.g. a fitted field
and the true one) are compared per frequency on C x C blocks, O(d C^2), with the dense rules for singular
blocks; each block's covariance is rebuilt from its eigendecomposition, so for two fields a relative
distance delta apart the relative error is ~ eps kappa / delta (measured with C = 3 on a 4 x 4 grid:
2e-12 at delta = 1e-4, 1e-10 at 1e-6, 1e-8 at 1e-8).
"""

from __future__ import annotations

import math
import weakref


import numpy as np

from . import _fourier, _linalg
from ._validation import RNGLike, as_finite_array, as_points, as_positive_int, as_rng, as_training_set

__all__ = ["Gaussian", "Infinite", "kl", "w2", "hellinger"]


class Infinite(float):
    """``float('inf')`` that carries the reason it is infinite.

    Behaves exactly like ``math.inf`` in arithmetic and comparisons; ``.reason`` says why, and survives
    scaling or shifting by a finite number (a per-dimension KL is still an ``Infinite``).

    >>> x = Infinite("q is singular where p has mass")
    >>> x == float("inf"), x.reason
    (True, 'q is singular where p has mass')
    >>> (x / 4).reason
    'q is singular where p has mass'
    """

    reason: str

    def __new__(cls, reason: str) -> "Infinite":
        obj = super().__new__(cls, float("inf"))
        obj.reason = reason
        return obj

    def __repr__(self) -> str:
        return f"Infinite({self.reason!r})"

    def __reduce__(self):
        return (Infinite, (self.reason,))

    # Scaling or shifting by a finite number keeps the reason (``kl(p, q) / d`` in a table is still an
    # Infinite, not a plain inf); anything that is not +inf afterwards (e.g. ``* 0``) is a plain float.
    def _keep(self, value: float):
        return Infinite(self.reason) if value == float("inf") else value

    def __mul__(self, other):
        return self._keep(float.__mul__(self, other))

    def __rmul__(self, other):
        return self._keep(float.__rmul__(self, other))

    def __truediv__(self, other):
        return self._keep(float.__truediv__(self, other))

    def __add__(self, other):
        return self._keep(float.__add__(self, other))

    def __radd__(self, other):
        return self._keep(float.__radd__(self, other))

    def __sub__(self, other):
        return self._keep(float.__sub__(self, other))

    def __pos__(self):
        return self


class Gaussian:
    r"""A multivariate normal :math:`\mathcal N(\mu, \Sigma)` in ``dim`` dimensions, float64.

    The covariance must be finite, symmetric (``max|C - C^T| <= 1e-10 max(1, max|C|)``) and positive
    semi-definite: eigenvalues below ``-rcond(d) max|lambda|`` (``rcond(d) = 10 max(d, 100) eps``, see
    ``lindiff._linalg``) are rejected, and those of smaller magnitude are treated as exactly zero
    (singular covariances are legal).  Instances are immutable.  A Gaussian built by
    :meth:`from_spectrum` keeps its eigendecomposition and forms the dense ``cov`` only when asked, so
    pipelines that stay in one eigenbasis cost O(d^2).

    Parameters
    ----------
    mean : array_like, shape (d,)
    cov : array_like, shape (d, d)

    Examples
    --------
    >>> g = Gaussian([0.0, 1.0], [[2.0, 0.0], [0.0, 0.5]])
    >>> g.dim, round(float(g.logpdf([0.0, 1.0])), 6)
    (2, -1.837877)
    """

    __slots__ = ("_mean", "_cov", "_eig", "_scale")

    def __init__(self, mean, cov, _eig: _linalg.PSDEig | None = None, _scale: float = 0.0):
        mean = as_finite_array(mean, "mean", ndim=1)
        d = mean.shape[0]
        if cov is None:
            if _eig is None:
                raise ValueError("cov is required")
            cov_arr = None
        else:
            cov_arr = as_finite_array(cov, "cov", ndim=2)
            if cov_arr.shape != (d, d):
                raise ValueError(f"cov must have shape ({d}, {d}) to match mean of length {d}, got {cov_arr.shape}")
            if not _linalg.is_symmetric(cov_arr):
                raise ValueError(
                    f"cov is not symmetric (max|C - C^T| = {np.max(np.abs(cov_arr - cov_arr.T)):.3e}); "
                    "a symmetric positive semi-definite matrix is required"
                )
            cov_arr = 0.5 * (cov_arr + cov_arr.T)
            cov_arr.setflags(write=False)
        eig = _eig if _eig is not None else _linalg.psd_eig(cov_arr, "cov", _scale)
        mean = mean.copy() if mean.flags.writeable else mean
        mean.setflags(write=False)
        object.__setattr__(self, "_mean", mean)
        object.__setattr__(self, "_cov", cov_arr)
        object.__setattr__(self, "_eig", eig)
        object.__setattr__(self, "_scale", float(_scale))

    def __setattr__(self, name, value):
        raise AttributeError("Gaussian is immutable")

    def __reduce__(self):
        # Pickle / deepcopy through the stored state (no re-validation, no new eigh): the slots are set
        # with object.__setattr__ because instances refuse attribute assignment.
        return (_restore_gaussian, (self._mean, self._cov, self._eig, self._scale))

    @property
    def mean(self) -> np.ndarray:
        return self._mean

    @property
    def cov(self) -> np.ndarray:
        """The dense covariance (formed from the eigendecomposition on first use when built from a spectrum)."""
        if self._cov is None:
            eig = self._eig
            if _fourier.is_implicit(eig.vectors):  # a circulant: refused past DENSE_LIMIT
                cov = eig.vectors.congruence(eig.values)
                cov.setflags(write=False)
                object.__setattr__(self, "_cov", cov)
                return cov
            cov = (eig.vectors * eig.values) @ eig.vectors.T
            cov = 0.5 * (cov + cov.T)
            cov.setflags(write=False)
            object.__setattr__(self, "_cov", cov)
        return self._cov

    # ----------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of ``cov`` (ascending unless given by :meth:`from_spectrum`), numerically-zero
        ones set to exactly 0; they pair with the columns of :attr:`eigenvectors`."""
        return self._eig.values

    @property
    def eigenvectors(self) -> np.ndarray:
        return self._eig.vectors

    @property
    def rank(self) -> int:
        return self._eig.rank

    @property
    def singular(self) -> bool:
        return self._eig.singular

    @property
    def grid(self) -> tuple[int, ...] | None:
        """The periodic grid when the covariance is kept in that grid's Fourier (Hartley) basis (see
        :meth:`stationary`), else None; for a C-channel field the spatial grid (``dim = C prod(grid)``)."""
        return _fourier.grid_of(self._eig.vectors)

    def __repr__(self) -> str:
        if _fourier.is_implicit(self._eig.vectors):  # no dense covariance for a trace
            chans = f", channels={self.channels}" if self.channels != 1 else ""
            return (f"Gaussian(dim={self.dim}, grid={self.grid}{chans}, rank={self.rank}, "
                    f"trace={float(np.sum(self._eig.values)):.6g})")
        return f"Gaussian(dim={self.dim}, rank={self.rank}, trace={float(np.trace(self.cov)):.6g})"

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, X) -> "Gaussian":
        r"""Mean and 1/N covariance of the rows of ``X`` (shape (N, d)).

        The 1/N normalisation is the one the DSM loss on the training set leads to.
        """
        X = as_training_set(X, "X")
        mean = X.mean(axis=0)
        centred = X - mean
        cov = centred.T @ centred / X.shape[0]
        return cls(mean, cov)

    @classmethod
    def from_spectrum(cls, eigenvalues, basis=None, mean=None, *, scale: float = 0.0) -> "Gaussian":
        r""":math:`\mathcal N(m, U \operatorname{diag}(\lambda) U^T)`; the eigendecomposition is kept.

        Parameters
        ----------
        eigenvalues : array_like, shape (d,)
            Non-negative (tiny negatives within the cut-off are clipped).
        basis : array_like, shape (d, d), optional
            Orthonormal columns ``U``; the identity when omitted.  The array is kept as it is (not
            copied or reordered), so Gaussians built on the same basis array take the O(d)
            divergence fast paths.
        mean : array_like, shape (d,), optional
            Zero when omitted.
        scale : float, optional
            Magnitude of the problem the spectrum came from; eigenvalues below ``rcond(d)`` times
            ``max(max eigenvalue, scale)`` count as zero (see ``lindiff._linalg.cutoff``).
        """
        values = as_finite_array(eigenvalues, "eigenvalues", ndim=1)
        d = values.shape[0]
        values, zero = _linalg.clip_spectrum(values, "eigenvalues", scale)
        if basis is None or basis is _IDENTITIES.get(d):
            basis = identity_basis(d)
        elif _fourier.is_implicit(basis):  # orthonormal by construction (a Fourier basis of a grid)
            if basis.shape != (d, d):
                raise ValueError(f"basis must have shape ({d}, {d}) to match {d} eigenvalues, got {basis.shape}")
        else:
            basis = as_finite_array(basis, "basis", ndim=2)
            if basis.shape != (d, d):
                raise ValueError(f"basis must have shape ({d}, {d}) to match {d} eigenvalues, got {basis.shape}")
            # O(d^2) randomised check of U^T U = I (a full product would cost O(d^3) per call).
            probe = np.random.default_rng(0).standard_normal(d)
            if not np.allclose(basis.T @ (basis @ probe), probe, atol=1e-8 * np.linalg.norm(probe)):
                raise ValueError("basis must have orthonormal columns (U^T U = I within 1e-8)")
        mean = np.zeros(d) if mean is None else as_finite_array(mean, "mean", ndim=1)
        return cls(mean, None, _linalg.PSDEig(values, basis, zero), scale)

    @classmethod
    def _in_basis(cls, eigenvalues: np.ndarray, basis: np.ndarray, mean_in_basis: np.ndarray | None, scale: float = 0.0,
                  name: str = "law", mean: np.ndarray | None = None) -> "Gaussian":
        """``from_spectrum`` for a basis lindiff already holds (a model's or a law's eigenvectors): the
        spectrum is checked and clipped, the basis is trusted (no O(d^2) orthonormality probe) and the mean
        is given in that basis (``U m`` is skipped for the identity), or directly as ``mean``."""
        values, zero = _linalg.clip_spectrum(np.asarray(eigenvalues, dtype=np.float64), name, scale)
        if mean is None:
            mean = np.array(mean_in_basis, dtype=np.float64) if _is_identity(basis) else basis @ mean_in_basis
        return cls(mean, None, _linalg.PSDEig(values, basis, zero), scale)

    @classmethod
    def standard(cls, dim: int) -> "Gaussian":
        """N(0, I) in ``dim`` dimensions."""
        dim = as_positive_int(dim, "dim")
        return cls.from_spectrum(np.ones(dim))

    @classmethod
    def stationary(cls, power, mean=0.0, *, channels: int | None = None) -> "Gaussian":
        r"""A stationary Gaussian field on the periodic grid ``power.shape`` (1-D signals, 2-D images, 3-D volumes).

        The covariance is the circulant whose eigenvalues are ``power`` on the DFT frequencies,

        .. math::
            \operatorname{Cov}(x_j, x_l) = c(j - l),\qquad
            c(\delta) = \frac1d\sum_k p(k)\, e^{2\pi i\, k\cdot\delta / n}
            \quad (\text{the inverse DFT of } p),

        so ``power[k]`` is the variance of the unitary DFT coefficient at frequency ``k`` (index ``k`` along
        each axis, numpy's FFT order) and ``power.mean()`` the variance of each pixel.  Rows of
        :meth:`sample` are the flattened grid in C order.  The eigenbasis is the real, orthonormal discrete
        Hartley basis of the grid, kept implicitly (``lindiff._fourier``): :meth:`sample`, :meth:`logpdf`,
        :func:`kl`, :func:`w2`, :func:`hellinger` (between fields on the same grid),
        :class:`~lindiff.GaussianScore`, every process and every sampler law cost O(d) after one FFT, and
        :attr:`cov` is formed only on request (refused past d = 16384).

        Parameters
        ----------
        power : array_like, shape grid
            Finite and non-negative (negatives within the shared zero cut-off, ``lindiff._linalg.cutoff``,
            count as 0), and symmetric, ``power[k] == power[-k]`` (indices mod the grid), as the spectrum of
            a real field must be (to 1e-10 relative to its largest value).
        mean : float or array_like of shape grid or (d,)
            The mean: a constant (stationary) or any field.  With ``channels``: a number, one value per
            channel (shape (C,)), or an array of shape (C, *grid) (or (d,)) constant over the grid.
        channels : int, optional
            C for a C-channel field: ``power`` is then the cross-spectral density, shape ``grid + (C, C)``
            (real or complex), Hermitian PSD at every frequency and ``power[-k] == conj(power[k])``
            (to 1e-10 relative; eigenvalues below the shared cut-off count as 0).  A sample is an array of
            shape (C, *grid) flattened in C order (a CHW image), ``d = C prod(grid)``, and
            ``power[k][c, c']`` is the covariance of the unitary DFT coefficients of channels c and c'
            at frequency k.  The eigenbasis rotates the channels per frequency (``lindiff._fourier.
            ChannelBasis``, built from one batched C x C ``eigh`` over the spectrum); everything that
            stays in it costs O(d log d + d C), and :func:`kl`, :func:`w2`, :func:`hellinger` between two
            channel fields on the same grid with different rotations work per frequency on C x C blocks.

        Examples
        --------
        >>> import numpy as np
        >>> g = Gaussian.stationary(np.array([2.0, 1.0, 0.5, 1.0]))  # 1-D grid of 4 points
        >>> g.grid, round(float(g.cov[0, 0]), 6), round(float(g.cov[0, 1]), 6)
        ((4,), 1.125, 0.375)

        Two channels with a constant cross-spectrum (white noise correlated across channels):

        >>> S = np.broadcast_to([[2.0, 0.5], [0.5, 1.0]], (4, 2, 2))
        >>> c = Gaussian.stationary(S, [0.0, 1.0], channels=2)
        >>> c.dim, c.channels, round(float(c.cov[0, 4]), 6), round(abs(float(c.cov[0, 1])), 6)
        (8, 2, 0.5, 0.0)
        """
        if channels is not None:
            return cls._stationary_channels(power, mean, channels)
        power = as_finite_array(power, "power")
        if power.ndim == 0 or power.size == 0:
            raise ValueError(f"power must be an array with the grid's shape (at least one axis), got shape {power.shape}")
        grid = power.shape
        d = power.size
        axes = tuple(range(power.ndim))
        partner = _fourier.mirror(power, axes)
        top = float(np.max(np.abs(power)))
        asym = float(np.max(np.abs(power - partner)))
        if asym > _linalg.SYMMETRY_RTOL * top:
            k = np.unravel_index(int(np.argmax(np.abs(power - partner))), grid)
            raise ValueError(
                f"power must be symmetric, power[k] == power[-k] (indices mod the grid {grid}), as the spectrum of a "
                f"real field is; at k = {tuple(int(i) for i in k)} it differs from its partner by {asym:.3g} "
                f"(allowed {_linalg.SYMMETRY_RTOL:g} x max|power|)")
        values = (0.5 * (power + partner)).reshape(d)
        values, zero = _linalg.clip_spectrum(values, "power")
        mean_arr = as_finite_array(mean, "mean")
        if mean_arr.ndim == 0:
            mean_flat = np.full(d, float(mean_arr))
        elif mean_arr.shape == grid or mean_arr.shape == (d,):
            mean_flat = mean_arr.reshape(d).copy()
        else:
            raise ValueError(f"mean must be a number or an array of the grid's shape {grid} (or ({d},)), "
                             f"got shape {mean_arr.shape}")
        return cls(mean_flat, None, _linalg.PSDEig(values, _fourier.hartley_basis(grid), zero))

    @classmethod
    def _stationary_channels(cls, power, mean, channels) -> "Gaussian":
        C = as_positive_int(channels, "channels")
        S = _cross_spectrum(power, C)
        grid = S.shape[:-2]
        n = math.prod(grid)
        d = C * n
        mean_c = _channel_mean(mean, C, grid)
        if C == 1:  # a scalar field: the Hartley basis (shared per grid), as without channels
            return cls.stationary(S[..., 0, 0].real, np.repeat(mean_c, n).reshape(grid))
        values, vectors = _fourier.channel_eigh(S, grid)
        flat = np.moveaxis(values, -1, 0).reshape(d)  # coefficient order: (eigen-index j, *grid)
        flat, zero = _linalg.clip_spectrum(flat, "power")
        basis = _fourier.ChannelBasis(grid, vectors)
        return cls(np.repeat(mean_c, n), None, _linalg.PSDEig(flat, basis, zero))

    @property
    def channels(self) -> int | None:
        """C for a stationary field (1 without channels, see :meth:`stationary`), else None."""
        return _fourier.channels_of(self._eig.vectors)

    # ----------------------------------------------------------------------------------------------
    def sample(self, n: int, rng: RNGLike = None) -> np.ndarray:
        """``n`` independent draws as rows, shape (n, d)."""
        n = as_positive_int(n, "n")
        gen = as_rng(rng)
        z = gen.standard_normal((n, self.dim))
        if _fourier.is_implicit(self._eig.vectors):  # U diag(sqrt l) z: one transform per row
            return self.mean + (z * np.sqrt(self._eig.values)) @ self._eig.vectors.T
        if _is_identity(self._eig.vectors):  # diagonal covariance: no product needed
            return self.mean + z * np.sqrt(self._eig.values)
        root = self._eig.vectors * np.sqrt(self._eig.values)
        return self.mean + z @ root.T

    def logpdf(self, x) -> np.ndarray | float:
        r"""Log density at the rows of ``x``.

        For a singular covariance this is the density with respect to Lebesgue measure on the
        support ``mean + range(cov)`` (as scipy's ``allow_singular=True``) and ``-inf`` off it (on the
        support when the offset is within the shared zero cut-off).  ``-inf`` also where the log-density
        is below the float64 range.
        """
        pts, single = as_points(x, self.dim)
        eig = self._eig
        centred = (pts - self.mean) @ eig.vectors
        keep = ~eig.zero
        with np.errstate(over="ignore"):  # beyond float64 the log-density is -inf (documented)
            maha = np.sum(centred[:, keep] ** 2 / eig.values[keep], axis=1)
        out = -0.5 * (maha + eig.rank * np.log(2 * np.pi) + eig.logpdet())
        if eig.singular:
            # on the support when the offset is within the shared cut-off (the rule that decided the rank)
            scale = np.abs(pts).max(axis=1) + float(np.abs(self.mean).max(initial=0.0))
            on = _linalg.negligible_offsets(centred[:, ~keep], eig.values, scale)
            out = np.where(on, out, -np.inf)
        return float(out[0]) if single else out

    def shares_basis_with(self, other: "Gaussian") -> bool:
        """True when both covariances are stored in the same eigenbasis object (fast paths)."""
        return self._eig.vectors is other._eig.vectors


def _cross_spectrum(power, C: int) -> np.ndarray:
    """The validated cross-spectral density (grid + (C, C), complex128), Hermitian and conjugate-symmetric exactly."""
    if isinstance(power, (str, bytes)):
        raise ValueError(f"power must be a numeric array of shape grid + ({C}, {C}), got the string {power!r}")
    try:
        raw = np.asarray(power)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"power must be a numeric array of shape grid + ({C}, {C}); could not convert: "
                         f"{exc}") from None
    if raw.dtype.kind == "c":
        S = raw.astype(np.complex128)
    else:
        S = as_finite_array(raw, "power").astype(np.complex128)
    if S.ndim < 3 or S.shape[-2:] != (C, C) or S.size == 0:
        raise ValueError(f"power must have shape grid + (C, C) = grid + ({C}, {C}) (the cross-spectral density of "
                         f"{C} channels on a grid of at least one axis), got shape {S.shape}")
    if not np.all(np.isfinite(S)):
        raise ValueError("power contains NaN or infinite entries; finite values are required")
    grid = S.shape[:-2]
    top = float(np.max(np.abs(S)))
    tol = _linalg.SYMMETRY_RTOL * max(top, np.finfo(np.float64).tiny)
    herm = np.abs(S - np.conj(np.swapaxes(S, -1, -2)))
    if float(herm.max()) > tol:
        k = np.unravel_index(int(np.argmax(herm)), herm.shape)[:-2]
        raise ValueError(f"power must be Hermitian at every frequency (power[k] == conj(power[k]).T); at k = "
                         f"{tuple(int(i) for i in k)} it differs by {float(herm.max()):.3g} (allowed "
                         f"{_linalg.SYMMETRY_RTOL:g} x max|power|)")
    S = 0.5 * (S + np.conj(np.swapaxes(S, -1, -2)))
    partner = np.conj(_fourier.mirror(S, tuple(range(len(grid)))))
    asym = np.abs(S - partner)
    if float(asym.max()) > tol:
        k = np.unravel_index(int(np.argmax(asym)), asym.shape)[:-2]
        raise ValueError(f"power must satisfy power[-k] == conj(power[k]) (indices mod the grid {grid}), as the "
                         f"cross-spectrum of a real field does; at k = {tuple(int(i) for i in k)} it differs from its "
                         f"partner by {float(asym.max()):.3g} (allowed {_linalg.SYMMETRY_RTOL:g} x max|power|)")
    return 0.5 * (S + partner)


def _channel_mean(mean, C: int, grid: tuple[int, ...]) -> np.ndarray:
    """Per-channel means (C,) from a number, a (C,) array, or a (C, *grid) / (d,) array constant over the grid."""
    m = as_finite_array(mean, "mean")
    n = math.prod(grid)
    if m.ndim == 0:
        return np.full(C, float(m))
    if m.shape == (C,):
        return m.copy()
    if m.shape == (C,) + grid or m.shape == (C * n,):
        field = m.reshape(C, n)
        spread = np.max(np.abs(field - field[:, :1]))
        if spread > _linalg.SYMMETRY_RTOL * max(1.0, float(np.max(np.abs(field)))):
            raise ValueError(f"mean of a {C}-channel stationary field must be constant over the grid in each channel "
                             f"(it varies by {spread:.3g}); give one value per channel, shape ({C},)")
        return field[:, 0].copy()
    raise ValueError(f"mean must be a number, one value per channel (shape ({C},)) or an array of shape "
                     f"{(C,) + grid} (or ({C * n},)) constant over the grid, got shape {m.shape}")


def _restore_gaussian(mean, cov, eig, scale) -> Gaussian:
    g = object.__new__(Gaussian)
    if eig.vectors.ndim == 2 and eig.vectors.shape[0] > 1 and _is_identity(eig.vectors):
        # an identity basis comes back as the shared one, so the fast paths still recognise it
        eig = _linalg.PSDEig(eig.values, identity_basis(eig.vectors.shape[0]), eig.zero)
    for array in (mean, cov, eig.values, eig.vectors, eig.zero):
        if isinstance(array, np.ndarray):  # an implicit basis is immutable already
            array.setflags(write=False)
    for name, value in (("_mean", mean), ("_cov", cov), ("_eig", eig), ("_scale", float(scale))):
        object.__setattr__(g, name, value)
    return g


def _check_pair(p: Gaussian, q: Gaussian) -> None:
    for name, g in (("p", p), ("q", q)):
        if not isinstance(g, Gaussian):
            raise TypeError(f"{name} must be a lindiff.Gaussian, got {type(g).__name__}")
    if p.dim != q.dim:
        raise ValueError(f"p and q must have the same dimension, got {p.dim} and {q.dim}")


def _identical(p: Gaussian, q: Gaussian) -> bool:
    """Bit-identical laws (the divergences are then exactly 0); O(d^2) unless a dense cov must be formed."""
    if p is q:
        return True
    if not np.array_equal(p.mean, q.mean):
        return False
    ep, eq = p._eig, q._eig
    if ep.vectors is eq.vectors:
        return np.array_equal(ep.values, eq.values)
    if _fourier.is_implicit(ep.vectors) or _fourier.is_implicit(eq.vectors):
        # different bases, one implicit: no O(d^2) comparison (the divergence itself decides)
        return False
    if np.array_equal(ep.vectors, eq.vectors) and np.array_equal(ep.values, eq.values):
        return True
    return np.array_equal(p.cov, q.cov)


_IDENTITIES: "weakref.WeakValueDictionary[int, np.ndarray]" = weakref.WeakValueDictionary()


def identity_basis(d: int) -> np.ndarray:
    """The d x d identity as lindiff's one shared, read-only basis array: every diagonal Gaussian of
    dimension d holds the same object, so they recognise a common basis in O(1) (divergences in O(d))."""
    U = _IDENTITIES.get(d)
    if U is None:
        U = np.eye(d)
        U.setflags(write=False)
        _IDENTITIES[d] = U
    return U


def _is_identity(U: np.ndarray) -> bool:
    if U is _IDENTITIES.get(U.shape[0]):
        return True
    return _linalg.is_identity(U)


def _law_cov(g: Gaussian) -> np.ndarray:
    """The covariance of the law (the clipped eigendecomposition); the input matrix when nothing was clipped."""
    if not g.singular:
        return g.cov
    eig = g._eig
    cov = (eig.vectors * eig.values) @ eig.vectors.T
    return 0.5 * (cov + cov.T)


def _finite(value: float, what: str) -> float:
    """A divergence whose exact value exceeds the float64 range is reported as :class:`Infinite`, never
    as a plain ``inf``."""
    if value == np.inf:
        return Infinite(f"{what} exceeds the float64 range (~1.8e308)")
    return float(value)


def _support_mismatch(p: Gaussian, q: Gaussian, dm: np.ndarray) -> str | None:
    """Why p and q do not live on the same affine subspace ``mean + range(cov)`` (None if they do).

    Each law is its clipped eigendecomposition: ``a`` has variance off ``range(b)`` when its covariance
    projected on ``b``'s null space exceeds ``a``'s own zero cut-off, so the decision uses the same rule
    that decided each rank.
    """
    for a, b, na, nb in ((p, q, "p", "q"), (q, p, "q", "p")):
        eb = b._eig
        if not eb.singular:
            continue
        null = eb.null_basis()
        proj = null.T @ a._eig.vectors
        leak = (proj * a.eigenvalues) @ proj.T
        if np.max(np.abs(leak), initial=0.0) > _linalg.cutoff(a.eigenvalues):
            return (f"{nb} is singular (rank {b.rank} < {b.dim}) in directions where {na} has variance "
                    f"(rank {a.rank})")
        if not _linalg.negligible_offset(null.T @ dm, eb.values, p.mean, q.mean):
            return f"the means differ along a direction in which {nb} has no variance"
    if p.rank != q.rank:
        return f"p has rank {p.rank} and q rank {q.rank}: their supports differ"
    return None


def _offsets_negligible(offset: np.ndarray, p: Gaussian, q: Gaussian) -> bool:
    """A mean offset along directions where both laws have no variance is zero by both laws' resolution
    (the stricter one decides, as in :func:`_support_mismatch`; the answer is symmetric in p and q)."""
    return all(_linalg.negligible_offset(offset, g.eigenvalues, p.mean, q.mean) for g in (p, q))


def _pencil(p: Gaussian, q: Gaussian, dm: np.ndarray) -> _linalg.Pencil:
    return _linalg.pencil(p.cov, q.cov, p._eig, q._eig, dm)


def kl(p: Gaussian, q: Gaussian) -> float:
    r"""Kullback–Leibler divergence :math:`\mathrm{KL}(p \,\|\, q)` between Gaussians.

    .. math::
        \mathrm{KL} = \tfrac12\big[\operatorname{tr}(\Sigma_q^{-1}\Sigma_p) - d
        + (\mu_q-\mu_p)^T\Sigma_q^{-1}(\mu_q-\mu_p) + \log\det\Sigma_q - \log\det\Sigma_p\big]
        = \tfrac12\Big[\sum_i (r_i - 1 - \log r_i) + \|\Sigma_q^{-1/2}(\mu_q - \mu_p)\|^2\Big],

    with :math:`r_i` the generalised eigenvalues of :math:`(\Sigma_p, \Sigma_q)`.  They are computed as
    :math:`x_i = r_i - 1`, the eigenvalues of the whitened difference
    :math:`\Sigma_q^{-1/2}(\Sigma_p - \Sigma_q)\Sigma_q^{-1/2}` (no cancellation near :math:`p = q`), and
    :math:`\sum_i\log r_i` from the two spectra when some :math:`r_i` are small.  Pairs far apart take a
    cheaper route through the two cached eigendecompositions when its rounding error is provably small.

    Singular covariances are allowed.  The divergence is finite exactly when p and q have the same
    support (the same affine subspace ``mean + range(cov)``); it is then computed on that subspace
    with pseudo-determinants.  Otherwise an :class:`Infinite` (``inf`` with ``.reason``) is returned,
    never NaN; so is a value beyond the float64 range.  ``kl(p, p) == 0`` exactly.

    Accuracy (float64, measured against 50-digit mpmath in ``tests/test_accuracy.py``, d <= 4): in a
    shared eigenbasis, relative error below ``1e-14`` for any eigenvalues.  For dense covariances the
    value is exact for covariances perturbed by ``O(d eps ||S||)``, so the relative error grows like
    ``eps kappa`` (``kappa`` the larger condition number), whether the pair is far apart or nearly
    equal (relative perturbation ``1e-8`` to ``1e-2``): measured below ``5e-12`` at ``kappa <= 1e4``,
    ``2e-9`` up to ``kappa = 1e6``, ``3e-6`` at ``1e10`` and ``2.4e-4`` at ``1e12``.

    Examples
    --------
    >>> p = Gaussian([0.0], [[1.0]]); q = Gaussian([1.0], [[2.0]])
    >>> round(kl(p, q), 6)
    0.346574
    """
    _check_pair(p, q)
    if _identical(p, q):
        return 0.0
    dm = q.mean - p.mean
    with np.errstate(over="ignore"):
        if p.shares_basis_with(q):
            value = _kl_spectral(p, q, dm)
        elif _channel_pair(p, q):
            value = _kl_channels(p, q, dm)
        else:
            value = _kl_dense(p, q, dm)
    if isinstance(value, Infinite):
        return value
    return _finite(max(value, 0.0), "KL(p || q)")


def _kl_spectral(p: Gaussian, q: Gaussian, dm: np.ndarray) -> float:
    lp, lq = p.eigenvalues, q.eigenvalues
    zp, zq = p._eig.zero, q._eig.zero
    dm_u = q.eigenvectors.T @ dm
    if np.any(zq & ~zp):
        return Infinite(f"q is singular in {int(np.sum(zq & ~zp))} direction(s) where p has variance")
    if np.any(zp & ~zq):
        return Infinite(f"p is singular in {int(np.sum(zp & ~zq))} direction(s) where q has variance")
    if np.any(zq) and not _offsets_negligible(dm_u[zq], p, q):
        return Infinite("the means differ along a direction in which both covariances are singular")
    keep = ~zq
    return 0.5 * (float(np.sum(_linalg.kl_ratio_term(lp[keep], lq[keep])))
                  + float(np.sum(dm_u[keep] ** 2 / lq[keep])))


def _kl_dense(p: Gaussian, q: Gaussian, dm: np.ndarray) -> float:
    if not p.singular and not q.singular:
        fast = _kl_from_eigendecompositions(p, q, dm)
        if fast is not None:
            return fast
    reason = _support_mismatch(p, q, dm)
    if reason is not None:
        return Infinite(reason)
    pen = _pencil(p, q, dm)
    x = pen.x
    if x.size == 0 or x.min() >= -0.5:
        div = float(np.sum(_linalg.x_minus_log1p(x)))
    else:
        # some r_i < 1/2: log r_i from the spectra (1 + x_i would have lost them); the value is then
        # at least (1/2)(log 2 - 1/2), so the two sums do not cancel
        div = float(np.sum(x)) - pen.log_det
    return 0.5 * (div + float(np.sum(pen.mean**2)))


def _basis_change(p: Gaussian, q: Gaussian) -> np.ndarray:
    """``U_q^T U_p`` without a product when either basis is the identity."""
    up, uq = p.eigenvectors, q.eigenvectors
    if _is_identity(uq):
        return up
    if _is_identity(up):
        return uq.T
    return uq.T @ up


def _kl_from_eigendecompositions(p: Gaussian, q: Gaussian, dm: np.ndarray) -> float | None:
    """KL for non-singular p, q from their cached eigendecompositions: one basis change, no new ``eigh``.

    Returns None unless the value is large compared with the rounding error of its terms (then the
    caller uses the whitened-difference path, accurate near ``p = q``).  The bound: the trace and the
    log-determinant ratio each carry ``~ sqrt(d) eps`` times their magnitude; we ask for 1e-10 relative.
    """
    M = _basis_change(p, q)
    lp, lq = p.eigenvalues, q.eigenvalues
    trace = float(np.sum((M * M) * (lp[None, :] / lq[:, None])))
    dmq = q.eigenvectors.T @ dm
    mean = float(np.sum(dmq**2 / lq))
    logdet = _linalg.log_det_ratio(lq, lp)
    d = p.dim
    value = 0.5 * (trace - d + mean + logdet)
    scale = 2.0 ** np.frexp(max(float(lp.max()), float(lq.max())))[1]
    magnitude = trace + d + mean + float(np.sum(np.abs(np.log(lp / scale))) + np.sum(np.abs(np.log(lq / scale))))
    if not value > 4.0 * np.sqrt(d) * _linalg.EPS * magnitude * 1e10:
        return None
    return float(value)


def w2(p: Gaussian, q: Gaussian) -> float:
    r"""Wasserstein-2 distance (not squared) between Gaussians (Bures–Wasserstein).

    .. math::
        W_2^2 = \|\mu_p - \mu_q\|^2 + \operatorname{tr}\Sigma_p + \operatorname{tr}\Sigma_q
        - 2\operatorname{tr}\big(\Sigma_p^{1/2}\Sigma_q\Sigma_p^{1/2}\big)^{1/2}
        = \|\mu_p - \mu_q\|^2 + \min_{U^TU = I}\|\Sigma_p^{1/2} - \Sigma_q^{1/2}U\|_F^2 .

    The covariance term is evaluated in the second form (Bhatia, Jain & Lim 2019, "On the
    Bures–Wasserstein distance between positive definite matrices", Thm. 1), at the orthogonal polar
    factor ``U`` of :math:`\Sigma_q^{1/2}\Sigma_p^{1/2}` (``lindiff._linalg.bures_sq``): a difference
    formed directly, never negative, accurate also for nearly equal covariances (the trace form cancels).  Finite for
    singular covariances; square roots via ``eigh`` with clipping.  For covariances in a shared
    eigenbasis it is :math:`\sqrt{\|\Delta\mu\|^2 + \sum_i (\sqrt{\lambda_i} - \sqrt{\lambda'_i})^2}`
    (Pierret & Galerne 2025), each difference of roots formed as
    :math:`(\lambda_i - \lambda'_i)/(\sqrt{\lambda_i} + \sqrt{\lambda'_i})`.  ``w2(p, p) == 0`` exactly.

    Accuracy (float64, against 50-digit mpmath in ``tests/test_accuracy.py``, d <= 4): below ``1e-14``
    relative in a shared eigenbasis and for dense pairs far apart at any condition number up to
    ``1e12``.  For nearly equal dense pairs (relative perturbation ``1e-8`` to ``1e-2``) it grows like
    ``eps kappa``: below ``1e-12`` at ``kappa <= 1e4``, ``2e-10`` up to ``kappa = 1e6``, ``3e-6`` at
    ``kappa = 1e12``.  Near singular covariances the matrix square root amplifies round-off like
    :math:`\sqrt{\varepsilon\|S\|}`, so two float64 representations of one singular law can be
    ``~1e-8 sqrt(||S||)`` apart.

    Examples
    --------
    >>> round(w2(Gaussian([0.0], [[1.0]]), Gaussian([3.0], [[4.0]])), 6)
    3.162278
    """
    _check_pair(p, q)
    if _identical(p, q):
        return 0.0
    with np.errstate(over="ignore"):
        mean_dist = _norm(p.mean - q.mean)
        if p.shares_basis_with(q):
            lp, lq = p.eigenvalues, q.eigenvalues
            both = (lp + lq) > 0
            root_diff = np.zeros_like(lp)
            root_diff[both] = (lp[both] - lq[both]) / (np.sqrt(lp[both]) + np.sqrt(lq[both]))
            cov_dist = _norm(root_diff)
        elif _channel_pair(p, q):
            cov_dist = float(np.sqrt(_bures_channels(p, q)))
        else:
            cov_dist = float(np.sqrt(_linalg.bures_sq(p._eig, q._eig, lambda: p.cov - q.cov)))
    value = float(np.hypot(mean_dist, cov_dist))
    return _finite(value, "W2(p, q)")


def _norm(v: np.ndarray) -> float:
    """Euclidean norm without overflow of the squares."""
    top = float(np.max(np.abs(v), initial=0.0))
    if top == 0.0 or not np.isfinite(top):
        return top
    return top * float(np.sqrt(np.sum((v / top) ** 2)))


def hellinger(p: Gaussian, q: Gaussian) -> float:
    r"""Hellinger distance :math:`H(p, q) = \sqrt{1 - \mathrm{BC}(p, q)} \in [0, 1]`.

    .. math::
        \mathrm{BC} = \frac{\det\Sigma_p^{1/4}\det\Sigma_q^{1/4}}{\det\bar\Sigma^{1/2}}
        \exp\!\big(-\tfrac18 \Delta\mu^T \bar\Sigma^{-1}\Delta\mu\big),\quad
        \bar\Sigma = \tfrac12(\Sigma_p + \Sigma_q).

    Per generalised eigenvalue :math:`r_i = 1 + x_i` of :math:`(\Sigma_p, \Sigma_q)` the determinant
    factor is :math:`(1 + x_i^2/(4(1 + x_i)))^{-1/4}` (no cancellation near equality); the :math:`x_i`
    come from the whitened difference as in :func:`kl`, and ``H^2 = -expm1(log BC)``.  Non-singular pairs
    far apart (``log BC <= -0.1``) with condition numbers up to 1e8 take a cheaper route, a Cholesky factor of
    the average and the two cached spectra (no new ``eigh``), when its rounding error is provably small.

    Singular covariances: if p and q live on different affine subspaces they are mutually singular
    and ``H = 1``; on a common support the formula holds with pseudo-determinants.

    Accuracy (float64, measured against 50-digit mpmath in ``tests/test_accuracy.py``, d <= 4): in a
    shared eigenbasis, relative error below ``1e-14``.  For dense covariances the value is exact for
    covariances perturbed by ``O(d eps ||S||)``: the relative error of ``H`` is below ``5e-12`` for pairs
    far apart at any condition number up to ``1e12``; for nearly equal pairs (relative perturbation
    ``1e-8`` to ``1e-2``) it grows like ``eps kappa``: below ``3e-14`` at ``kappa <= 100``, ``3e-10`` up
    to ``kappa = 1e6``, ``4e-7`` at ``1e10`` and ``1e-5`` at ``1e12``.

    Examples
    --------
    >>> round(hellinger(Gaussian([0.0], [[1.0]]), Gaussian([0.0], [[1.0]])), 6)
    0.0
    """
    _check_pair(p, q)
    if _identical(p, q):
        return 0.0
    dm = q.mean - p.mean
    with np.errstate(over="ignore"):
        if p.shares_basis_with(q):
            zp, zq = p._eig.zero, q._eig.zero
            if np.any(zp != zq):
                return 1.0
            dm_u = p.eigenvectors.T @ dm
            keep = ~zq
            if np.any(zq) and not _offsets_negligible(dm_u[zq], p, q):
                return 1.0
            lp, lq = p.eigenvalues[keep], q.eigenvalues[keep]
            log_bc = (-0.25 * float(np.sum(_linalg.hellinger_ratio_term(lp, lq)))
                      - 0.25 * float(np.sum(dm_u[keep] ** 2 / (lp + lq))))
        elif _channel_pair(p, q):
            log_bc = _log_bc_channels(p, q, dm)
        else:
            log_bc = _log_bc_dense(p, q, dm)
        if log_bc is None:  # mutually singular
            return 1.0
    h2 = -np.expm1(min(float(log_bc), 0.0))
    return float(np.sqrt(max(h2, 0.0)))


def _log_bc_dense(p: Gaussian, q: Gaussian, dm: np.ndarray) -> float | None:
    """log BC of two Gaussians in different bases; None when they are mutually singular."""
    fast = None if p.singular or q.singular else _log_bc_from_factor(p, q, dm)
    if fast is not None:
        return fast
    if _support_mismatch(p, q, dm) is not None:
        return None
    pen = _pencil(p, q, dm)
    x = pen.x
    if x.size == 0 or (x.min() >= -0.5 and x.max() <= 1.0):
        # every r in [1/2, 2]: the x_i are accurate to eps, and nothing cancels
        det_term = float(np.sum(np.log1p(x * x / (4.0 * (1.0 + x)))))
        return -0.25 * det_term - 0.125 * float(np.sum(pen.mean**2 / (1.0 + 0.5 * x)))
    return _log_bc_far(p, q, dm, pen)


def _log_bc_from_factor(p: Gaussian, q: Gaussian, dm: np.ndarray) -> float | None:
    r"""log BC for non-singular p, q from a Cholesky factor of the average (a tenth of an ``eigh``) and the
    cached spectra: :math:`\tfrac14\log\det\Sigma_p + \tfrac14\log\det\Sigma_q - \tfrac12\log\det\bar\Sigma
    - \tfrac18\Delta\mu^T\bar\Sigma^{-1}\Delta\mu`.

    None unless the pair is far apart (``log BC <= -0.1``), the value is large compared with the rounding
    error of its terms (``~ sqrt(d) eps`` times their magnitudes, asked to be 1e-10 relative, as for KL in
    :func:`_kl_from_eigendecompositions`) and the average is well conditioned (its smallest eigenvalue at
    least half the larger of the two smallest covariance eigenvalues, at most 1e8 below the largest); then
    the whitened-difference path (one ``eigh``) decides, accurate near ``p = q`` at any condition number.
    """
    lp, lq = p.eigenvalues, q.eigenvalues
    top = max(float(lp.max()), float(lq.max()))
    floor = 0.5 * max(float(lp.min()), float(lq.min()))
    if not floor > 1e-8 * top:
        return None
    avg = 0.5 * (_law_cov(p) + _law_cov(q))
    factor = _linalg.cholesky_pd(0.5 * (avg + avg.T))
    if factor is None:
        return None
    diag_sq = np.diag(factor) ** 2  # det(avg) = prod diag(L)^2
    logdet = 0.5 * _linalg.log_det_ratio(diag_sq, lp) + 0.5 * _linalg.log_det_ratio(diag_sq, lq)
    y = _linalg.solve_lower(factor, dm)
    maha = float(y @ y)
    value = -0.5 * logdet - 0.125 * maha  # log BC <= 0
    d = p.dim
    scale = 2.0 ** np.frexp(top)[1]
    magnitude = maha + float(np.sum(np.abs(np.log(diag_sq / scale))) + np.sum(np.abs(np.log(lp / scale)))
                             + np.sum(np.abs(np.log(lq / scale))))
    # far apart only (H^2 >= 0.095): there a Cholesky log-determinant's O(d eps kappa) error stays at the
    # whitened route's accuracy (tests/test_accuracy.py); nearer pairs need the generalised eigenvalues
    if not (value <= -0.1 and -value > 4.0 * np.sqrt(d) * _linalg.EPS * magnitude * 1e10):
        return None
    return float(value)


def _log_bc_far(p: Gaussian, q: Gaussian, dm: np.ndarray, pen: _linalg.Pencil) -> float:
    r"""log BC when some generalised eigenvalue lies outside ``[1/2, 2]`` (then ``H^2 >= 0.03``, nothing
    cancels): :math:`	frac14\log\det\Sigma_p + 	frac14\log\det\Sigma_q - 	frac12\log\detar\Sigma
    - 	frac18\Delta\mu^Tar\Sigma^{-1}\Delta\mu` on the common support, each determinant from its own
    eigendecomposition.  The whitened difference's eigenvalues carry an absolute error ``eps ||X||``,
    which for a very large ``||X||`` would swamp the small ``r_i``; the average's own spectrum does not.
    """
    avg = 0.5 * (_law_cov(p) + _law_cov(q))
    if q.singular:  # work on the common support, range(S_q)
        basis = q._eig.range_basis()
        avg, dm = basis.T @ avg @ basis, basis.T @ dm
    values, vectors = np.linalg.eigh(0.5 * (avg + avg.T))
    # the average dominates (S_p + S_q)/2 >= max(S_p, S_q)/2 on the support: clip round-off below that
    floor = 0.5 * max(float(p.eigenvalues[~p._eig.zero].min(initial=np.inf)),
                      float(q.eigenvalues[~q._eig.zero].min(initial=np.inf)))
    values = np.maximum(values, floor)
    lq = q.eigenvalues[~q._eig.zero]
    # sum_i log((1 + r_i)^2 / (4 r_i)) = 2 [log det(avg) - log det(S_q)] - [log det(S_p) - log det(S_q)]
    det_term = 2.0 * _linalg.log_det_ratio(values, lq) - pen.log_det
    maha = float(np.sum((vectors.T @ dm) ** 2 / values))
    return -0.25 * det_term - 0.125 * maha


# ------------------------------------------------------------------------------------------------
# Two C-channel stationary fields on one grid, in different per-frequency rotations: every divergence is a
# sum over frequencies of the same quantity for the C x C complex blocks (the DFT is unitary and both
# covariances are block diagonal in it), so nothing d x d is formed.  The rules (cut-off, supports,
# Infinite) are the dense ones, applied to the union of the blocks' eigenvalues, which are the d x d ones.
def _channel_pair(p: Gaussian, q: Gaussian) -> bool:
    up, uq = p._eig.vectors, q._eig.vectors
    return (isinstance(up, _fourier.ChannelBasis) and isinstance(uq, _fourier.ChannelBasis)
            and up.grid == uq.grid and up.channels == uq.channels and not up.transposed and not uq.transposed)


class _Blocks:
    """A channel field's per-frequency eigendecomposition, frequencies flattened: V (n, C, C), values and
    zero mask (n, C), and the covariance blocks S (n, C, C)."""

    def __init__(self, g: Gaussian):
        U = g._eig.vectors
        C, n = U.channels, math.prod(U.grid)
        self.V = U.vectors.reshape(n, C, C)
        self.values = g._eig.values.reshape(C, n).T
        self.zero = g._eig.zero.reshape(C, n).T
        self.S = U.blocks(g._eig.values).reshape(n, C, C)


def _hat(v: np.ndarray, g: Gaussian) -> np.ndarray:
    """Unitary DFT of each channel of a real (d,) vector, as (n, C)."""
    U = g._eig.vectors
    C, n = U.channels, math.prod(U.grid)
    axes = tuple(range(1, len(U.grid) + 1))
    return np.fft.fftn(v.reshape((C,) + U.grid), axes=axes, norm="ortho").reshape(C, n).T


def _herm(A: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(A, -1, -2))


def _channel_support_mismatch(p: Gaussian, q: Gaussian, bp: _Blocks, bq: _Blocks, dm_hat: np.ndarray) -> str | None:
    """:func:`_support_mismatch` per frequency block (the same tests on the same eigenvalues)."""
    for a, b, ba, bb, na, nb in ((p, q, bp, bq, "p", "q"), (q, p, bq, bp, "q", "p")):
        if not b.singular:
            continue
        null = bb.V * bb.zero[:, None, :]  # the null columns of b's rotations (the others zeroed)
        leak = _herm(null) @ ba.S @ null
        if np.max(np.abs(leak), initial=0.0) > _linalg.cutoff(a.eigenvalues):
            return (f"{nb} is singular (rank {b.rank} < {b.dim}) in directions where {na} has variance "
                    f"(rank {a.rank})")
        offsets = np.einsum("kcj,kc->kj", bb.V.conj(), dm_hat)[bb.zero]
        if not _linalg.negligible_offset(np.abs(offsets), b.eigenvalues, p.mean, q.mean):
            return f"the means differ along a direction in which {nb} has no variance"
    if p.rank != q.rank:
        return f"p has rank {p.rank} and q rank {q.rank}: their supports differ"
    return None


def _channel_pencil(p: Gaussian, q: Gaussian, bp: _Blocks, bq: _Blocks, dm_hat: np.ndarray) -> _linalg.Pencil:
    """:func:`lindiff._linalg.pencil` per frequency: the whitened difference of the blocks on range(S_q)
    (null directions of q give rows and columns of zeros, hence x = 0, which adds nothing)."""
    inv_root = np.where(bq.zero, 0.0, 1.0 / np.sqrt(np.where(bq.zero, 1.0, bq.values)))
    B = bq.V * inv_root[:, None, :]
    X = _herm(B) @ (bp.S - bq.S) @ B
    x, W = np.linalg.eigh(0.5 * (X + _herm(X)))
    mean = np.einsum("kji,kj->ki", W.conj(), np.einsum("kcj,kc->kj", B.conj(), dm_hat))
    log_det = _linalg.log_det_ratio(p.eigenvalues[~p._eig.zero], q.eigenvalues[~q._eig.zero])
    return _linalg.Pencil(x.reshape(-1), np.abs(mean).reshape(-1), log_det)


def _kl_channels(p: Gaussian, q: Gaussian, dm: np.ndarray) -> float:
    bp, bq = _Blocks(p), _Blocks(q)
    dm_hat = _hat(dm, q)
    reason = _channel_support_mismatch(p, q, bp, bq, dm_hat)
    if reason is not None:
        return Infinite(reason)
    pen = _channel_pencil(p, q, bp, bq, dm_hat)
    x = pen.x
    if x.min() >= -0.5:
        div = float(np.sum(_linalg.x_minus_log1p(x)))
    else:  # as in _kl_dense: log r from the spectra where some r < 1/2
        div = float(np.sum(x)) - pen.log_det
    return 0.5 * (div + float(np.sum(pen.mean**2)))


def _log_bc_channels(p: Gaussian, q: Gaussian, dm: np.ndarray) -> float | None:
    """log of the Bhattacharyya coefficient per frequency block (None when p and q are mutually singular)."""
    bp, bq = _Blocks(p), _Blocks(q)
    dm_hat = _hat(dm, q)
    if _channel_support_mismatch(p, q, bp, bq, dm_hat) is not None:
        return None
    pen = _channel_pencil(p, q, bp, bq, dm_hat)
    x = pen.x
    if x.min() >= -0.5 and x.max() <= 1.0:
        det_term = float(np.sum(np.log1p(x * x / (4.0 * (1.0 + x)))))
        return -0.25 * det_term - 0.125 * float(np.sum(pen.mean**2 / (1.0 + 0.5 * x)))
    # _log_bc_far per block: the average on range(S_q) from its own spectrum; q's null directions are
    # padded with the floor (a known eigenvalue, removed again from the determinant)
    floor = 0.5 * max(float(p.eigenvalues[~p._eig.zero].min(initial=np.inf)),
                      float(q.eigenvalues[~q._eig.zero].min(initial=np.inf)))
    A = _herm(bq.V) @ (0.5 * (bp.S + bq.S)) @ bq.V
    keep = ~bq.zero
    A = A * (keep[:, :, None] & keep[:, None, :])
    idx = np.nonzero(bq.zero)
    A[idx[0], idx[1], idx[1]] = floor
    values, vectors = np.linalg.eigh(0.5 * (A + _herm(A)))
    values = np.maximum(values, floor)
    lq = np.concatenate([q.eigenvalues[~q._eig.zero], np.full(int(bq.zero.sum()), floor)])
    det_term = 2.0 * _linalg.log_det_ratio(values.reshape(-1), lq) - pen.log_det
    dm_q = np.einsum("kcj,kc->kj", bq.V.conj(), dm_hat) * keep
    maha = float(np.sum(np.abs(np.einsum("kji,kj->ki", vectors.conj(), dm_q)) ** 2 / values))
    return -0.25 * det_term - 0.125 * maha


def _bures_channels(p: Gaussian, q: Gaussian) -> float:
    r"""Bures term of :math:`W_2^2` as a sum over frequency blocks of
    :math:`\min_U\|S_p^{1/2} - S_q^{1/2}U\|_F^2` (U the unitary polar factor of :math:`S_q^{1/2}S_p^{1/2}`,
    from a batched SVD): a sum of squares, never negative, as :func:`lindiff._linalg.bures_sq`."""
    bp, bq = _Blocks(p), _Blocks(q)
    root_p = (bp.V * np.sqrt(bp.values)[:, None, :]) @ _herm(bp.V)
    root_q = (bq.V * np.sqrt(bq.values)[:, None, :]) @ _herm(bq.V)
    Uu, _, Wh = np.linalg.svd(root_q @ root_p)
    resid = root_p - root_q @ (Uu @ Wh)
    return float(np.sum(resid.real**2 + resid.imag**2))
