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


class HartleyBasis:
    """The d x d orthonormal Hartley basis of a periodic grid (see the module docstring), held implicitly.

    Behaves as a read-only float64 array of shape (d, d) for ``@`` (FFT, O(d log d) per vector) and, for
    ``d <= DENSE_LIMIT``, for every other array operation (through the dense matrix).  Immutable; one
    instance per grid (:func:`hartley_basis`).
    """

    __array_ufunc__ = None  # ndarray @ H and ndarray * H defer to the methods below
    __slots__ = ("grid", "d", "__weakref__")
    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, grid: tuple[int, ...]):
        object.__setattr__(self, "grid", tuple(int(n) for n in grid))
        object.__setattr__(self, "d", math.prod(self.grid))

    def __setattr__(self, name, value):
        raise AttributeError("HartleyBasis is immutable")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.d, self.d)

    @property
    def size(self) -> int:
        return self.d * self.d

    @property
    def T(self) -> "HartleyBasis":
        return self  # H is symmetric

    def __repr__(self) -> str:
        return f"HartleyBasis(grid={self.grid})"

    def __reduce__(self):
        return (hartley_basis, (self.grid,))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

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

    def __array__(self, dtype=None, copy=None):
        out = self.dense()
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        return self.dense()[key]

    def __mul__(self, other):
        return self.dense() * (other.dense() if isinstance(other, HartleyBasis) else other)

    __rmul__ = __mul__

    def __neg__(self):
        return -self.dense()

    def __len__(self) -> int:
        return self.d

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
    return isinstance(U, HartleyBasis)


def grid_of(U) -> tuple[int, ...] | None:
    return U.grid if isinstance(U, HartleyBasis) else None
