r"""Translation-equivariant (convolutional) linear denoisers fitted to images: the shift-averaged statistics
and the exact least-squares fit of a local kernel (``LinearDenoiser.fit_convolutional``).

Setting: N images :math:`x_i` on a periodic grid of d pixels, the eps-model
:math:`\hat\varepsilon(y) = w * (y - \alpha m\mathbf 1)` (a circular convolution, the centred form of a
convolution with one bias), trained per time on the loss of :meth:`lindiff.LinearDenoiser.fit` with the noise
expectation exact.  With :math:`m` the mean of all pixels of all images and :math:`y_i = x_i - m\mathbf 1`,
a circulant :math:`W` only sees the shift average of the second moment: the per-frequency periodogram
average and its inverse DFT, the circular autocorrelation,

.. math::
    \bar P(k) = \frac1N\sum_i |\hat y_i(k)|^2,\qquad R(\delta) = \frac{1}{Nd}\sum_i\sum_j y_i[j]\,y_i[j+\delta]
    = \frac1d\sum_k \bar P(k)\, e^{2\pi i k\cdot\delta/n}

(:math:`\hat y` the unitary DFT).  Per pixel the loss is

.. math::
    \frac{L_t}{d} = \sum_o (\delta_{o0} - \sigma w_o)^2 + \alpha^2\sum_{o,o'} w_o w_{o'} R(o - o') + r_t\sum_o w_o^2,

so the kernel on the offsets :math:`S` (a centred k x ... x k box) solves the normal equations

.. math::
    A_t w = \sigma e_0,\qquad A_t = \alpha^2 R_S + (\sigma^2 + r_t) I,\qquad (R_S)_{oo'} = R(o - o'),

(``derivations/convolutional_denoiser.py``) and a gradient flow on :math:`W` restricted to convolutions gives
:math:`w(\tau) = \sigma\,\phi_\tau(A_t) e_0`, :math:`\phi_\tau(h) = (1 - e^{-2\,\mathrm{lr}\,\tau h})/h`.  With
:math:`R_S = V\operatorname{diag}(\rho)V^T` computed once, every time costs a K-vector: the score-gain kernel
is :math:`u_t = V[\phi_\tau(\alpha^2\rho + \sigma^2 + r_t)\odot V^T e_0]` and its gain at frequency k is the
transfer function :math:`\hat u_t(k) = \sum_j c_j(t)\,\hat v_j(k)`, from the K transfer functions
:math:`\hat v_j` computed once by FFT.  A centred box is symmetric under :math:`o \to -o` and so is
:math:`R_S`, so the solution is a symmetric kernel (real transfer function, :math:`\hat u(k) = \hat u(-k)`): the
model is diagonal in the grid's Hartley basis and every sampler law is O(T d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _fourier, _linalg
from .scores import SpectralForm


def shift_averaged(X: np.ndarray, grid: tuple[int, ...]) -> tuple[float, np.ndarray]:
    """Grand mean m and periodogram average of ``X - m`` (grid shape, symmetrised exactly)."""
    N = X.shape[0]
    m = float(X.mean())
    axes = tuple(range(1, len(grid) + 1))
    P = np.zeros(grid)
    # batches bound the complex workspace at large N and d
    step = max(1, (1 << 22) // max(math.prod(grid), 1))
    for start in range(0, N, step):
        f = np.fft.fftn(X[start : start + step].reshape((-1,) + grid) - m, axes=axes, norm="ortho")
        P += np.sum(f.real**2 + f.imag**2, axis=0)
    P /= N
    return m, 0.5 * (P + _fourier.mirror(P, tuple(range(len(grid)))))


def shift_averaged_channels(X: np.ndarray, grid: tuple[int, ...], C: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-channel pixel means m (C,) and the cross-periodogram average
    :math:`\bar P(k) = \frac1N\sum_i \hat y_i(k)\hat y_i(k)^*` of the centred images (grid + (C, C), complex)."""
    N = X.shape[0]
    n = math.prod(grid)
    images = X.reshape(N, C, n)
    m = images.mean(axis=(0, 2))
    axes = tuple(range(2, len(grid) + 2))
    P = np.zeros((n, C, C), dtype=np.complex128)
    step = max(1, (1 << 22) // max(C * n, 1))
    for start in range(0, N, step):
        y = (images[start : start + step] - m[None, :, None]).reshape((-1, C) + grid)
        f = np.fft.fftn(y, axes=axes, norm="ortho").reshape(-1, C, n)
        P += np.einsum("ick,idk->kcd", f, f.conj())
    P /= N
    return m, P.reshape(grid + (C, C))


def as_kernel_size(kernel_size, grid: tuple[int, ...]) -> tuple[int, ...]:
    """Per-axis odd kernel sizes, each at most the grid's size along that axis."""
    if isinstance(kernel_size, (int, np.integer)) and not isinstance(kernel_size, bool):
        sizes = (int(kernel_size),) * len(grid)
    elif isinstance(kernel_size, (str, bytes)):
        raise TypeError(f"kernel_size must be None, an odd int or a tuple of odd ints (one per grid axis), got {kernel_size!r}")
    else:
        try:
            sizes = tuple(kernel_size)
        except TypeError:
            raise TypeError(f"kernel_size must be None, an odd int or a tuple of odd ints (one per grid axis), "
                            f"got {kernel_size!r}") from None
        if len(sizes) != len(grid):
            raise ValueError(f"kernel_size must give one size per grid axis ({len(grid)}), got {kernel_size!r}")
    for k, n in zip(sizes, grid):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd positive integers (a centred k x ... x k box; an even box has no "
                             f"centre and its least-squares kernel is not symmetric), got {kernel_size!r}")
        if k > n:
            raise ValueError(f"kernel_size {kernel_size!r} exceeds the grid {grid}: a kernel wider than the periodic grid "
                             "wraps onto itself; use at most the grid size per axis (or kernel_size=None, full support)")
    return tuple(int(k) for k in sizes)


def box_offsets(sizes: tuple[int, ...]) -> np.ndarray:
    """The offsets of a centred box, shape (K, D), in C order; the zero offset is row (K - 1) / 2."""
    ranges = [np.arange(-(k // 2), k // 2 + 1) for k in sizes]
    mesh = np.meshgrid(*ranges, indexing="ij")
    return np.stack([g.ravel() for g in mesh], axis=1)


def autocorrelation(P: np.ndarray) -> np.ndarray:
    """Circular autocorrelation R(delta) (grid shape) from the periodogram average."""
    return np.fft.ifftn(P).real


def restricted_autocorrelation(R: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``R_S[o, o'] = R(o - o')`` on the box (K x K), exactly symmetric."""
    grid = np.array(R.shape)
    diff = (offsets[:, None, :] - offsets[None, :, :]) % grid
    RS = R[tuple(diff[..., a] for a in range(R.ndim))]
    return 0.5 * (RS + RS.T)


def transfer_functions(vectors: np.ndarray, offsets: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    r"""Real parts of the transfer functions of the kernels in the columns of ``vectors`` (on ``offsets``),
    :math:`\sum_o v_o\cos(2\pi k\cdot o/n)`, shape (K, d): the symmetric part of each kernel, which is all a
    symmetric combination of them keeps."""
    K = vectors.shape[1]
    d = math.prod(grid)
    embedded = np.zeros((K,) + grid)
    idx = tuple((offsets[:, a] % grid[a]) for a in range(len(grid)))
    for j in range(K):
        embedded[(j,) + idx] = vectors[:, j]
    axes = tuple(range(1, len(grid) + 1))
    return np.fft.fftn(embedded, axes=axes).real.reshape(K, d)


@dataclass(frozen=True, eq=False)
class LocalKernel:
    """A local kernel fit's time-independent parts: the box, ``R_S = V diag(rho) V^T`` and the transfer
    functions of the columns of V (rows of ``transfer``), with ``b = V^T e_0``."""

    grid: tuple[int, ...]
    sizes: tuple[int, ...]
    offsets: np.ndarray
    rho: np.ndarray
    vectors: np.ndarray
    b: np.ndarray
    transfer: np.ndarray

    @classmethod
    def fit(cls, P: np.ndarray, sizes: tuple[int, ...]) -> "LocalKernel":
        grid = P.shape
        offsets = box_offsets(sizes)
        RS = restricted_autocorrelation(autocorrelation(P), offsets)
        eig = _linalg.psd_eig(RS, "the restricted autocorrelation", float(np.max(P, initial=0.0)))
        centre = (offsets.shape[0] - 1) // 2
        b = eig.vectors[centre].copy()
        return cls(tuple(grid), tuple(sizes), offsets, eig.values, eig.vectors, b,
                   transfer_functions(eig.vectors, offsets, tuple(grid)))

    def kernel(self, coefficients: np.ndarray) -> np.ndarray:
        """Kernel values on the offsets from per-eigenvector coefficients (last axis K)."""
        return coefficients @ self.vectors.T


@dataclass(frozen=True, eq=False)
class KernelForm(SpectralForm):
    r"""The spectral form of a local convolutional denoiser: gains per frequency at each time from the
    kernel's normal equations (see the module docstring), in the grid's Hartley basis.

    ``eigenvalues`` are the training images' periodogram average (the spectrum of the shift-averaged
    fitted field, the model's ``data``); the gains are *not* a function of them alone.
    """

    kernel: LocalKernel | None = None
    gains_from_eigenvalues = False

    def __post_init__(self):
        if self.kernel is None:
            raise ValueError("KernelForm needs its LocalKernel")

    def _h(self, t, alpha, sigma) -> np.ndarray:
        t, alpha, sigma = np.asarray(t, float), np.asarray(alpha, float), np.asarray(sigma, float)
        return (alpha**2)[..., None] * self.kernel.rho + (sigma**2 + self.ridge_at(t))[..., None]

    def kernel_coefficients(self, t, alpha, sigma) -> np.ndarray:
        """Score-gain kernel ``u_t`` in V's coordinates, ``phi(h) * b`` (inf where undefined)."""
        h = self._h(t, alpha, sigma)
        b = self.kernel.b
        with np.errstate(invalid="ignore"):
            c = _linalg.relax(h, self.train_time, self.lr) * b
        return np.where(b == 0.0, 0.0, c)  # a component the kernel does not use is 0, also where phi is inf

    def score_kernel(self, t, alpha, sigma) -> np.ndarray:
        r"""Kernel of the score gain :math:`u_t` (``score = -u_t * (x - alpha m)``) on ``kernel.offsets``."""
        return self.kernel.kernel(self.kernel_coefficients(t, alpha, sigma))

    def gains(self, t, alpha, sigma) -> np.ndarray:
        c = self.kernel_coefficients(t, alpha, sigma)
        with np.errstate(invalid="ignore", over="ignore"):
            return c @ self.kernel.transfer

    def _fraction_coefficients(self, t: float, alpha: float, sigma: float, divide_alpha: bool) -> np.ndarray:
        # 1 - sigma^2 phi(h) = (alpha^2 rho + r + sigma^2 e^{-2 lr tau h}) / h per eigenvector of R_S: no cancellation
        rho, b = self.kernel.rho, self.kernel.b
        r = self.ridge_at(np.asarray(t, float))
        extra = self._x0_extra_modes(r, alpha, sigma)
        h = alpha * alpha * rho + r + sigma * sigma
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            safe = np.where(h > 0, h, 1.0)
            if divide_alpha:
                first = alpha * rho / safe
                second = np.where(extra > 0, extra / (alpha * safe), 0.0)
                c = np.where(h > 0, first + second, np.float64(1.0) / np.float64(alpha))
            else:
                c = np.where(h > 0, (alpha * alpha * rho + extra) / safe, 1.0)
            return np.where(b == 0.0, 0.0, c * b)

    def _x0_extra_modes(self, r, alpha: float, sigma: float) -> np.ndarray:
        rho = self.kernel.rho
        extra = r + np.zeros_like(rho)
        if self.train_time is not None:
            h = alpha * alpha * rho + r + sigma * sigma
            with np.errstate(under="ignore", over="ignore"):
                extra = extra + sigma * sigma * np.exp(-2.0 * self.lr * self.train_time * h)
        return extra

    def x0_fraction(self, t: float, alpha: float, sigma: float) -> np.ndarray:
        return self._fraction_coefficients(t, alpha, sigma, False) @ self.kernel.transfer

    def x0_gains(self, t: float, alpha: float, sigma: float) -> np.ndarray:
        c = self._fraction_coefficients(t, alpha, sigma, True)
        with np.errstate(invalid="ignore", over="ignore"):
            k = c @ self.kernel.transfer
        if not np.all(np.isfinite(k)):
            raise ValueError(f"the x0 prediction at t={float(t):g} exceeds the float64 range: alpha(t) = {alpha:.3g} "
                             "and the model does not reproduce the data mean there (ridge or finite train_time)")
        return k

    @property
    def is_exact_gaussian_score(self) -> bool:
        return False

    def _mode_key(self) -> np.ndarray:
        return self.kernel.transfer.T  # equal transfer-function columns: equal gains at every time

    def restrict(self, modes: np.ndarray) -> "KernelForm":
        import dataclasses

        kernel = dataclasses.replace(self.kernel, transfer=self.kernel.transfer[:, modes])
        out = dataclasses.replace(self, eigenvalues=self.eigenvalues[modes], kernel=kernel)
        object.__setattr__(out, "_mean_u", self.mean_in_basis[modes])
        object.__setattr__(out, "_classes", None)
        return out
