r"""The Fourier side of lindiff: the discrete Hartley basis of a periodic grid as an implicit matrix.

A stationary (translation-invariant) Gaussian field on a periodic grid has a circulant covariance, and a
translation-equivariant linear denoiser is a circulant matrix: both are diagonal in the discrete Fourier
basis.  lindiff keeps every law real, so it works in the *Hartley* basis instead: with :math:`F` the unitary
multi-dimensional DFT,

.. math::
    H = \operatorname{Re} F - \operatorname{Im} F,\qquad
    H_{jk} = \frac{1}{\sqrt d}\,\operatorname{cas}\Big(2\pi\sum_a \frac{j_a k_a}{n_a}\Big),\quad
    \operatorname{cas}\theta = \cos\theta + \sin\theta,

which is real, symmetric and orthonormal (:math:`H^2 = I`), and diagonalises every circulant whose spectrum
is symmetric, :math:`p(k) = p(-k)` (the spectrum of any real symmetric circulant): for real :math:`x`,
:math:`(F C x)_k = p_k (F x)_k` with :math:`p_k` real, so :math:`H C x = p \odot H x`.  The eigenvalue paired
with column :math:`k` of :math:`H` is :math:`p_k`, the power at frequency :math:`k` (flattened in C order), and
:math:`H x` costs one FFT (Bracewell 1983, "Discrete Hartley transform").

:class:`HartleyBasis` stands in for the d x d array wherever lindiff uses an eigenbasis: ``U @ c``,
``U.T @ x`` and ``X @ U`` are FFTs along the grid axes (``U.T`` is ``U``), and anything else (``U * g``,
indexing, ``np.asarray(U)``) goes through the dense matrix, built only for ``d <= DENSE_LIMIT``.  One
instance per grid is shared (:func:`hartley_basis`), also across pickling, so Gaussians and models on the
same grid recognise their common basis by identity and take the O(d) divergence and sampler paths.

Only array operations with a NumPy equivalent in the array-API standard are used (``fft.fftn`` /
``fft.rfftn``, reshapes, elementwise arithmetic), so the transforms run unchanged on any namespace that
provides them (``docs/gpu.md``).
"""

from __future__ import annotations

import math
import weakref

import numpy as np

DENSE_LIMIT = 16384
"""Largest d for which a dense d x d form of an implicit basis (or of a covariance built from it) is formed:
2 GiB of float64.  Past it the dense paths are refused with a ValueError that says why."""


def _dense_refusal(d: int, what: str) -> ValueError:
    gib = d * d * 8 / 2**30
    return ValueError(
        f"{what} needs the dense {d} x {d} matrix ({gib:.3g} GiB of float64), which lindiff forms only for d <= "
        f"{DENSE_LIMIT}; stay in the Fourier basis (divergences and sampler laws between Gaussians and models on "
        "the same grid take the O(d) path)")


def check_dense(d: int, what: str) -> None:
    if d > DENSE_LIMIT:
        raise _dense_refusal(d, what)


def as_grid(grid, name: str = "grid") -> tuple[int, ...]:
    """A grid shape: a positive int or a non-empty sequence of positive ints."""
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        grid = (int(grid),)
    try:
        out = tuple(grid)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of positive grid sizes (e.g. (32, 32)), got {grid!r}") from None
    if not out:
        raise ValueError(f"{name} must have at least one axis, got {grid!r}")
    for n in out:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{name} must be a tuple of positive integers (e.g. (32, 32)), got {grid!r}")
    return tuple(int(n) for n in out)


def mirror(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``a`` at the negated frequency along ``axes``: ``out[k] = a[-k mod n]``."""
    for ax in axes:
        a = np.roll(np.flip(a, axis=ax), 1, axis=ax)
    return a


def self_conjugate(grid: tuple[int, ...]) -> np.ndarray:
    """Boolean mask (grid shape) of the frequencies with ``k = -k`` (zero or Nyquist on every axis)."""
    mask = np.ones(grid, dtype=bool)
    for ax, n in enumerate(grid):
        k = np.arange(n)
        on = (2 * k) % n == 0
        shape = [1] * len(grid)
        shape[ax] = n
        mask &= on.reshape(shape)
    return mask


def hartley(x: np.ndarray, grid: tuple[int, ...], axis: int) -> np.ndarray:
    """The orthonormal Hartley transform of real ``x`` over the ``d = prod(grid)`` entries of ``axis`` (a
    flattened grid in C order); the other axis, if any, is a batch."""
    x = np.asarray(x, dtype=np.float64)
    d = math.prod(grid)
    if x.ndim == 1:
        f = np.fft.fftn(x.reshape(grid), norm="ortho")
        return (f.real - f.imag).reshape(d)
    if axis in (-1, x.ndim - 1):
        n = x.shape[0]
        axes = tuple(range(1, len(grid) + 1))
        f = np.fft.fftn(x.reshape((n,) + grid), axes=axes, norm="ortho")
        return (f.real - f.imag).reshape(n, d)
    n = x.shape[1]
    axes = tuple(range(len(grid)))
    f = np.fft.fftn(x.reshape(grid + (n,)), axes=axes, norm="ortho")
    return (f.real - f.imag).reshape(d, n)


class _ImplicitBasis:
    """What the implicit bases share: a read-only float64 (d, d) array for numpy's purposes, whose ``@`` is a
    transform (the subclasses' ``__matmul__`` / ``__rmatmul__``) and whose every other array operation goes
    through the dense matrix (``dense()``, refused past ``DENSE_LIMIT``).  Immutable and its own copy."""

    __array_ufunc__ = None  # ndarray @ U and ndarray * U defer to the methods below
    __slots__ = ()
    ndim = 2
    dtype = np.dtype(np.float64)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.d, self.d)

    @property
    def size(self) -> int:
        return self.d * self.d

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __array__(self, dtype=None, copy=None):
        out = self.dense()
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        return self.dense()[key]

    def __mul__(self, other):
        return self.dense() * (other.dense() if isinstance(other, _ImplicitBasis) else other)

    __rmul__ = __mul__

    def __neg__(self):
        return -self.dense()

    def __len__(self) -> int:
        return self.d


class HartleyBasis(_ImplicitBasis):
    """The d x d orthonormal Hartley basis of a periodic grid (see the module docstring), held implicitly.

    Behaves as a read-only float64 array of shape (d, d) for ``@`` (FFT, O(d log d) per vector) and, for
    ``d <= DENSE_LIMIT``, for every other array operation (through the dense matrix).  Immutable; one
    instance per grid (:func:`hartley_basis`).
    """

    __slots__ = ("grid", "d", "__weakref__")

    def __init__(self, grid: tuple[int, ...]):
        object.__setattr__(self, "grid", tuple(int(n) for n in grid))
        object.__setattr__(self, "d", math.prod(self.grid))

    @property
    def T(self) -> "HartleyBasis":
        return self  # H is symmetric

    def __repr__(self) -> str:
        return f"HartleyBasis(grid={self.grid})"

    def __reduce__(self):
        return (hartley_basis, (self.grid,))

    def __eq__(self, other) -> bool:
        return isinstance(other, HartleyBasis) and other.grid == self.grid

    def __hash__(self) -> int:
        return hash(("HartleyBasis", self.grid))

    # -- the fast operations ---------------------------------------------------------------------------
    def __matmul__(self, other):
        """``H @ c`` for c of shape (d,) or (d, n)."""
        if isinstance(other, HartleyBasis):
            other = other.dense()
        other = np.asarray(other, dtype=np.float64)
        if other.shape[0] != self.d or other.ndim > 2:
            raise ValueError(f"matmul: HartleyBasis of shape {self.shape} cannot multiply an array of shape {other.shape}")
        return hartley(other, self.grid, 0)

    def __rmatmul__(self, other):
        """``X @ H`` for X of shape (d,) or (n, d) (H is symmetric: the transform of each row)."""
        other = np.asarray(other, dtype=np.float64)
        if other.shape[-1] != self.d or other.ndim > 2:
            raise ValueError(f"matmul: an array of shape {other.shape} cannot multiply a HartleyBasis of shape {self.shape}")
        return hartley(other, self.grid, -1)

    # -- everything else: the dense matrix, for small d ------------------------------------------------
    def dense(self) -> np.ndarray:
        """The d x d matrix (the transform of the identity's rows); refused past ``DENSE_LIMIT``."""
        check_dense(self.d, "the dense form of the Hartley basis")
        return hartley(np.eye(self.d), self.grid, -1)

    def congruence(self, values: np.ndarray) -> np.ndarray:
        """``H diag(values) H`` as a dense symmetric matrix (a circulant when ``values`` is symmetric)."""
        check_dense(self.d, "the dense covariance of a stationary Gaussian")
        M = hartley(self.dense() * np.asarray(values, dtype=np.float64), self.grid, -1)
        return 0.5 * (M + M.T)


_BASES: "weakref.WeakValueDictionary[tuple, HartleyBasis]" = weakref.WeakValueDictionary()


def hartley_basis(grid) -> HartleyBasis:
    """The one shared :class:`HartleyBasis` of ``grid`` (so bases compare by identity)."""
    grid = as_grid(grid)
    basis = _BASES.get(grid)
    if basis is None:
        basis = HartleyBasis(grid)
        _BASES[grid] = basis
    return basis


def is_implicit(U) -> bool:
    """True for an implicit basis (not an ndarray): products with it are transforms, not matmuls."""
    return isinstance(U, _ImplicitBasis)


def grid_of(U) -> tuple[int, ...] | None:
    """The periodic grid of an implicit Fourier basis (the spatial grid for a channel basis), else None."""
    return U.grid if isinstance(U, _ImplicitBasis) else None


def channels_of(U) -> int | None:
    """C for a channel basis, 1 for the Hartley basis of a scalar field, None for an explicit basis."""
    if isinstance(U, ChannelBasis):
        return U.channels
    return 1 if isinstance(U, HartleyBasis) else None


# ------------------------------------------------------------------------------------------------
# C-channel stationary fields: per-frequency C x C rotations on top of the DFT
def half_spectrum(grid: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Masks (grid shape) of the frequencies that are their own partner (``k = -k``) and of the
    *canonical* member of every other pair ``{k, -k}`` (the one with the smaller flat index)."""
    n = math.prod(grid)
    flat = np.arange(n).reshape(grid)
    partner = mirror(flat, tuple(range(len(grid))))
    return flat == partner, flat < partner


def _rows(x: np.ndarray, d: int, axis: int, what: str) -> tuple[np.ndarray, str]:
    """``x`` as a float64 batch of rows of length d: (d,) -> (1, d), (n, d) on axis -1, (d, n) on axis 0."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        if x.shape[0] != d:
            raise ValueError(f"matmul: {what} of dimension {d} cannot multiply an array of shape {x.shape}")
        return x[None, :], "vector"
    if x.ndim != 2 or x.shape[axis] != d:
        raise ValueError(f"matmul: {what} of dimension {d} cannot multiply an array of shape {x.shape}")
    return (x if axis in (-1, 1) else x.T), ("rows" if axis in (-1, 1) else "columns")


def _unrows(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "vector":
        return y[0]
    return y if kind == "rows" else np.ascontiguousarray(y.T)


class ChannelBasis(_ImplicitBasis):
    r"""The real orthonormal eigenbasis of a C-channel stationary field on a periodic grid, held implicitly.

    A sample is an array of shape ``(C, *grid)`` flattened in C order (a CHW image), ``d = C prod(grid)``.
    With :math:`\hat x(k)\in\mathbb C^C` the unitary DFT of every channel and the cross-spectral density
    :math:`S(k) = V(k)\operatorname{diag}(\lambda(k))V(k)^*` (``vectors[k] = V(k)``, with
    :math:`V(-k) = \overline{V(k)}` exactly and :math:`V(k)` real where :math:`k = -k`), the coefficients are

    .. math::
        y_j(k) = \big(V(k)^*\hat x(k)\big)_j,\qquad z_j(k) = \operatorname{Re} y_j(k) - \operatorname{Im} y_j(k),

    the Hartley combination of each rotated channel (:math:`y_j(-k) = \overline{y_j(k)}`, so ``x -> z`` is
    real and orthogonal).  ``U.T @ x`` is ``z`` flattened as ``(C, *grid)`` (eigen-index j first), ``U @ z``
    inverts it, and the covariance is :math:`U\operatorname{diag}(\lambda)U^T` with ``lambda[j, k]`` the
    j-th eigenvalue of :math:`S(k)`.  Every product costs one FFT per channel plus a batched C x C complex
    product per frequency, :math:`O(d\log d + dC)`.  With ``C = 1`` and ``V = 1`` this is
    :class:`HartleyBasis`.

    Unlike the Hartley basis, the basis depends on the field (its rotations), so there is no shared
    instance per grid: Gaussians, marginals, models and laws built from one field hold *that* field's
    basis object, and recognise it by identity (the O(d) paths).  ``U.T`` is a second object (the
    transpose, which is not ``U``); both are immutable.
    """

    __slots__ = ("grid", "channels", "vectors", "d", "transposed", "_partner", "__weakref__")

    def __init__(self, grid, vectors: np.ndarray, _transposed: bool = False, _partner: "ChannelBasis | None" = None):
        grid = tuple(int(n) for n in grid)
        vectors = np.asarray(vectors)
        C = int(vectors.shape[-1])
        if vectors.shape != grid + (C, C):
            raise ValueError(f"vectors must have shape grid + (C, C) = {grid + (C, C)}, got {vectors.shape}")
        if _partner is None:
            vectors = np.array(vectors, dtype=np.complex128)
            vectors.setflags(write=False)
        set_ = object.__setattr__
        set_(self, "grid", grid)
        set_(self, "channels", C)
        set_(self, "vectors", vectors)
        set_(self, "d", C * math.prod(grid))
        set_(self, "transposed", bool(_transposed))
        set_(self, "_partner", _partner if _partner is not None else ChannelBasis(grid, vectors, not _transposed, self))

    @property
    def T(self) -> "ChannelBasis":
        return self._partner

    def __repr__(self) -> str:
        return f"ChannelBasis(grid={self.grid}, channels={self.channels}{', transposed' if self.transposed else ''})"

    def __reduce__(self):
        return (_restore_channel_basis, (self.grid, self.vectors, self.transposed))

    def __eq__(self, other) -> bool:
        return (isinstance(other, ChannelBasis) and other.grid == self.grid and other.channels == self.channels
                and other.transposed == self.transposed
                and (other.vectors is self.vectors or bool(np.array_equal(other.vectors, self.vectors))))

    def __hash__(self) -> int:
        return hash(("ChannelBasis", self.grid, self.channels, self.transposed))

    # -- the transforms (rows of length d) -------------------------------------------------------------
    def _axes(self) -> tuple[int, ...]:
        return tuple(range(2, len(self.grid) + 2))

    def analyse(self, x: np.ndarray) -> np.ndarray:
        """Rows ``x`` (m, d) -> coefficients ``U^T x`` per row, (m, d)."""
        m, C, n = x.shape[0], self.channels, math.prod(self.grid)
        xh = np.fft.fftn(x.reshape((m, C) + self.grid), axes=self._axes(), norm="ortho").reshape(m, C, n)
        V = self.vectors.reshape(n, C, C)
        y = np.einsum("kcj,mck->mjk", V.conj(), xh)
        return (y.real - y.imag).reshape(m, self.d)

    def synthesise(self, z: np.ndarray) -> np.ndarray:
        """Coefficient rows ``z`` (m, d) -> ``U z`` per row, (m, d)."""
        m, C, n = z.shape[0], self.channels, math.prod(self.grid)
        zg = z.reshape((m, C) + self.grid)
        zm = mirror(zg, self._axes())
        y = (0.5 * (zg + zm) + 0.5j * (zm - zg)).reshape(m, C, n)
        V = self.vectors.reshape(n, C, C)
        xh = np.einsum("kcj,mjk->mck", V, y).reshape((m, C) + self.grid)
        return np.fft.ifftn(xh, axes=self._axes(), norm="ortho").real.reshape(m, self.d)

    def __matmul__(self, other):
        """``U @ c`` (synthesis) or ``U.T @ x`` (analysis), for a vector or the columns of a (d, n) array."""
        if isinstance(other, ChannelBasis):
            other = other.dense()
        rows, kind = _rows(other, self.d, 0, repr(self))
        out = self.analyse(rows) if self.transposed else self.synthesise(rows)
        return _unrows(out, kind)

    def __rmatmul__(self, other):
        """``X @ U`` (each row analysed: ``(U^T x)^T``) or ``X @ U.T`` (each row synthesised)."""
        rows, kind = _rows(other, self.d, -1, repr(self))
        out = self.synthesise(rows) if self.transposed else self.analyse(rows)
        return _unrows(out, kind)

    # -- per-frequency blocks ----------------------------------------------------------------------
    def blocks(self, values: np.ndarray) -> np.ndarray:
        r""":math:`V(k)\operatorname{diag}(\lambda(k))V(k)^*` per frequency, shape grid + (C, C), from
        ``values`` ordered as the coefficients (``(C, *grid)`` flattened)."""
        C, n = self.channels, math.prod(self.grid)
        lam = np.asarray(values, dtype=np.float64).reshape(C, n).T  # (n, C)
        V = self.vectors.reshape(n, C, C)
        S = np.einsum("kcj,kj,kej->kce", V, lam, V.conj())
        return S.reshape(self.grid + (C, C))

    # -- everything else: the dense matrix, for small d ------------------------------------------------
    def dense(self) -> np.ndarray:
        """The d x d matrix; refused past ``DENSE_LIMIT``."""
        check_dense(self.d, "the dense form of a channel Fourier basis")
        eye = np.eye(self.d)
        return self.synthesise(eye) if self.transposed else self.analyse(eye)

    def congruence(self, values: np.ndarray) -> np.ndarray:
        """``U diag(values) U^T`` as a dense symmetric matrix (the block circulant of the field)."""
        check_dense(self.d, "the dense covariance of a stationary Gaussian")
        U = self.dense()
        M = (U * np.asarray(values, dtype=np.float64)) @ U.T
        return 0.5 * (M + M.T)


def _restore_channel_basis(grid, vectors, transposed) -> ChannelBasis:
    basis = ChannelBasis(grid, vectors)
    return basis.T if transposed else basis


def channel_eigh(S: np.ndarray, grid: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-frequency ``eigh`` of a Hermitian cross-spectral density ``S`` (grid + (C, C), already
    conjugate-symmetric, ``S(-k) = conj S(k)``) with the partner relations enforced exactly: eigenvalues
    (grid + (C,), ascending) equal at k and -k, :math:`V(-k) = \overline{V(k)}`, and V real where ``k = -k``.
    Only the canonical half and the self-conjugate frequencies are decomposed."""
    C = S.shape[-1]
    selfconj, canonical = half_spectrum(grid)
    values = np.empty(grid + (C,))
    vectors = np.empty(grid + (C, C), dtype=np.complex128)
    if canonical.any():
        w, v = np.linalg.eigh(S[canonical])
        values[canonical], vectors[canonical] = w, v
    w, v = np.linalg.eigh(np.ascontiguousarray(S[selfconj].real))
    values[selfconj], vectors[selfconj] = w, v
    axes = tuple(range(len(grid)))
    partner = ~(selfconj | canonical)
    values[partner] = mirror(values, axes)[partner]
    vectors[partner] = mirror(vectors, axes)[partner].conj()
    return values, vectors
