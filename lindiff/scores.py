r"""Score models: the exact Gaussian score, the exact empirical (mixture) score and linear denoisers.

Conventions (see ``docs/theory.md#noise-score-and-data-predictions``): a model predicts noise, ``eps_hat(x, t)``; its score is
``-eps_hat / sigma(t)`` and its x0-prediction ``(x - sigma eps_hat) / alpha``.  An *affine* model has
``eps_hat(x, t) = W_t x + b_t`` and exposes ``affine(t) -> (W_t, b_t)``.

Two representations of an affine model
--------------------------------------
Every Gaussian score, fitted, ridge and early-stopped linear denoiser is a function of one symmetric
matrix (the population covariance S or the training covariance S_hat = U diag(l) U^T):

.. math::
    \text{score}(x, t) = -U \operatorname{diag}(g_t(l)) U^T (x - \alpha_t m),\qquad
    g_t(l) = \frac{1 - e^{-2\,\mathrm{lr}\,\tau\,h}}{h},\quad h = \alpha_t^2 l + \sigma_t^2 + r_t,

with ridge ``r_t`` and gradient-flow time ``tau`` (``g = 1/h`` for ``tau = None``).  Such models carry a
:class:`SpectralForm` and every downstream computation (sampling laws, losses) runs per eigenvalue.
A general affine model (weights read from elsewhere, perturbed weights, finite noise draws, training
without centring) has only ``affine(t)`` and takes the dense path.  Tests hold the two to each other.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import logsumexp

from . import _linalg
from ._validation import (
    RNGLike,
    as_finite_array,
    as_nonnegative_float,
    as_points,
    as_positive_float,
    as_positive_int,
    as_rng,
    as_training_set,
)
from .gaussian import Gaussian, _law_cov
from .processes import Process

__all__ = [
    "ScoreModel",
    "AffineModel",
    "SpectralForm",
    "GaussianScore",
    "EmpiricalScore",
    "LinearDenoiser",
]

Ridge = float | Callable[[float], float]


def _check_process(process) -> Process:
    if not isinstance(process, Process):
        raise TypeError(f"process must be a lindiff process (DDPM, VP, OU), got {type(process).__name__}")
    return process


class ScoreModel(ABC):
    """Base class: a score model of a forward process, evaluated at points ``x`` (rows) and time ``t``."""

    process: Process
    dim: int

    def _time(self, t) -> tuple[float, float, float]:
        """Validate a scalar time; return (t, alpha, sigma)."""
        arr = self.process.check_time(t)
        if arr.ndim != 0:
            raise ValueError(f"t must be a scalar time, got shape {arr.shape}")
        return float(arr), float(self.process.alpha(arr)), float(self.process.sigma(arr))

    @abstractmethod
    def score(self, x, t) -> np.ndarray:
        """Score of the model at the rows of ``x`` and scalar time ``t``."""

    def eps(self, x, t) -> np.ndarray:
        r"""Noise prediction :math:`\hat\varepsilon(x, t) = -\sigma(t)\,\text{score}(x, t)`."""
        _, _, s = self._time(t)
        return -s * self.score(x, t)

    def x0(self, x, t) -> np.ndarray:
        r"""Data prediction :math:`\hat x_0 = (x + \sigma^2\,\text{score}) / \alpha` (Tweedie)."""
        t_, a, s = self._time(t)
        pts, single = as_points(x, self.dim)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = (pts + s * s * np.atleast_2d(self.score(pts, t))) / a
        if not np.all(np.isfinite(out)):
            raise ValueError(f"the x0 prediction (x - sigma eps_hat) / alpha at t={t_:g} is not representable: "
                             f"alpha(t) = {a:.3g} (float64 underflow or overflow of the quotient); use a smaller t")
        return out[0] if single else out


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SpectralForm:
    r"""The eigenbasis representation of a commuting affine score model (see module docstring).

    Attributes
    ----------
    basis : (d, d) orthonormal columns U
    eigenvalues : (d,) the symmetric matrix's eigenvalues l in that basis (>= 0)
    mean : (d,) the centre m
    ridge : float or callable ``t -> float``
    train_time : gradient-flow time ``tau`` or None (the minimiser)
    lr : learning rate of the gradient flow
    """

    basis: np.ndarray
    eigenvalues: np.ndarray
    mean: np.ndarray
    ridge: Ridge = 0.0
    train_time: float | None = None
    lr: float = 1.0

    gains_from_eigenvalues = True  # (not a field) the gains are g_t(l): forms may be batched by concatenating l

    @property
    def mean_in_basis(self) -> np.ndarray:
        cached = self.__dict__.get("_mean_u")
        if cached is None:
            cached = self.basis.T @ self.mean
            object.__setattr__(self, "_mean_u", cached)
        return cached

    def ridge_at(self, t: np.ndarray) -> np.ndarray:
        if callable(self.ridge):
            values = np.vectorize(lambda s: float(self.ridge(s)), otypes=[float])(t)
            if np.any(~np.isfinite(values)) or np.any(values < 0):
                raise ValueError("ridge(t) must return finite non-negative values")
            return values
        return np.full(np.shape(t), float(self.ridge))

    def gains(self, t, alpha, sigma) -> np.ndarray:
        """Per-eigenvalue score gains ``g_t(l)``, shape ``t.shape + (d,)``; may hold ``inf``."""
        t, alpha, sigma = np.asarray(t, float), np.asarray(alpha, float), np.asarray(sigma, float)
        h = np.multiply.outer(alpha * alpha, self.eigenvalues)
        h += (sigma * sigma + self.ridge_at(t))[..., None]
        return _linalg.relax(h, self.train_time, self.lr, overwrite=True)  # h is this call's own table

    def x0_gains(self, t: float, alpha: float, sigma: float) -> np.ndarray:
        """Per-mode ``k`` with ``x0_hat = m + U diag(k) U^T (x - alpha m)``, free of cancellation.

        ``k = (1 - sigma^2 g) / alpha`` with ``1 - sigma^2 g = (alpha^2 l + r + sigma^2 e^{-2 lr tau h}) / h``
        (the last term only with a finite ``train_time``): a sum of non-negative terms, divided as
        ``alpha l / h + (r + sigma^2 e^{...}) / (alpha h)`` so that an ``alpha`` below the float64 range
        gives the limit ``k = 0`` (x0_hat = m) when the second part vanishes.  Where it does not, the
        prediction exceeds the float64 range and a ``ValueError`` says so.
        """
        r = self.ridge_at(np.asarray(t, float))
        extra = self._x0_extra(r, alpha, sigma)
        h = alpha * alpha * self.eigenvalues + r + sigma * sigma
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            safe_h = np.where(h > 0, h, 1.0)
            first = alpha * self.eigenvalues / safe_h
            second = np.where(extra > 0, extra / (alpha * safe_h), 0.0)
            k = np.where(h > 0, first + second, np.float64(1.0) / np.float64(alpha))
        if not np.all(np.isfinite(k)):
            raise ValueError(f"the x0 prediction at t={float(t):g} exceeds the float64 range: alpha(t) = {alpha:.3g} "
                             "and the model does not reproduce the data mean there (ridge or finite train_time)")
        return k

    def _x0_extra(self, r, alpha: float, sigma: float) -> np.ndarray:
        """``r + sigma^2 e^{-2 lr tau h}`` (the second term only with a finite ``train_time``), per mode."""
        extra = r + np.zeros_like(self.eigenvalues)
        if self.train_time is not None:
            h = alpha * alpha * self.eigenvalues + r + sigma * sigma
            with np.errstate(under="ignore", over="ignore"):  # exp(-inf) = 0
                extra = extra + sigma * sigma * np.exp(-2.0 * self.lr * self.train_time * h)
        return extra

    def x0_fraction(self, t: float, alpha: float, sigma: float) -> np.ndarray:
        """``alpha k = 1 - sigma^2 g`` per mode (see :meth:`x0_gains`), finite also where alpha underflows to 0."""
        r = self.ridge_at(np.asarray(t, float))
        num = alpha * alpha * self.eigenvalues + self._x0_extra(r, alpha, sigma)
        h = alpha * alpha * self.eigenvalues + r + sigma * sigma
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(h > 0, num / np.where(h > 0, h, 1.0), 1.0)

    @property
    def is_exact_gaussian_score(self) -> bool:
        """True when the gains are those of the score of N(m, U diag(l) U^T) noised (no ridge/flow)."""
        return self.train_time is None and not callable(self.ridge) and float(self.ridge) == 0.0

    def _mode_key(self) -> np.ndarray:
        """Per mode, what its gains depend on (besides the shared ridge, train_time, lr): the eigenvalue."""
        return self.eigenvalues[:, None]

    def mode_classes(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(representatives, inverse)`` when some modes have the same gains and the same centre (they are
        then computed once), else None.

        The per-mode sampler recursion depends only on a mode's gains and its centre ``mean_in_basis``, so
        ``law[inverse]`` of the law on the representatives is the law on every mode.  A stationary field's
        spectrum repeats each value at least at k and -k and a radial spectrum on a grid has far fewer
        distinct values than modes (5924 of 65536 for 1/|k|^2 on 256 x 256)."""
        cached = self.__dict__.get("_classes", False)
        if cached is not False:
            return cached
        key = np.concatenate([self._mode_key(), self.mean_in_basis[:, None]], axis=1)
        d = key.shape[0]
        out = None
        if d > 1:
            _, reps, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
            if reps.size < d:
                out = (reps, inverse.reshape(d))
        object.__setattr__(self, "_classes", out)
        return out

    def restrict(self, modes: np.ndarray) -> "SpectralForm":
        """The same form on a subset of its modes (for :meth:`mode_classes`); the basis is not restricted
        (the result is used per mode only)."""
        import dataclasses

        out = dataclasses.replace(self, eigenvalues=self.eigenvalues[modes], mean=self.mean)
        object.__setattr__(out, "_mean_u", self.mean_in_basis[modes])
        object.__setattr__(out, "_classes", None)
        return out


def _undefined_score(t: float, zeros: int, sigma: float = 0.0) -> ValueError:
    if sigma > 0:
        return ValueError(
            f"the score's gain 1/(alpha^2 l + sigma^2 + ridge) exceeds the float64 range at t={t:g} "
            f"(sigma(t)^2 = {sigma * sigma:.3g}) in {zeros} direction(s); evaluate at a larger t or use ridge > 0")
    return ValueError(
        f"the score is undefined at t={t:g}: sigma(t) = 0 and the model's covariance has {zeros} zero "
        "eigenvalue(s); evaluate at t > 0 (e.g. t_min > 0), or use ridge > 0 or a finite train_time"
    )


class AffineModel(ScoreModel):
    r"""An affine eps-model ``eps_hat(x, t) = W_t x + b_t`` (base of :class:`GaussianScore` and
    :class:`LinearDenoiser`).  ``spectral`` is a :class:`SpectralForm` or None (dense only)."""

    spectral: SpectralForm | None = None
    data: Gaussian | None = None  # the Gaussian whose p_T is the "exact" sampler start

    # -- dense access ------------------------------------------------------------------------------
    def affine(self, t) -> tuple[np.ndarray, np.ndarray]:
        r"""Eps-prediction weights ``(W_t, b_t)`` with ``eps_hat(x, t) = W_t x + b_t``."""
        t, a, s = self._time(t)
        if self.spectral is None:
            return self._dense_affine(t)
        g = self._checked_gains(t, a, s)
        U = self.spectral.basis
        W = (U * (s * g)) @ U.T
        return W, -a * (W @ self.spectral.mean)

    def score_affine(self, t) -> tuple[np.ndarray, np.ndarray]:
        r"""Score weights ``(A_t, c_t)`` with ``score(x, t) = A_t x + c_t``."""
        t, a, s = self._time(t)
        if self.spectral is None:
            if getattr(self, "_score_weights", None) is not None:
                return self._score_weights(t)
            if s == 0:
                raise ValueError(f"the score of an eps-model is undefined at sigma(t) = 0 (t={t:g}); use t > 0")
            W, b = self._dense_affine(t)
            return -W / s, -b / s
        g = self._checked_gains(t, a, s)
        U = self.spectral.basis
        A = -(U * g) @ U.T
        return A, -a * (A @ self.spectral.mean)

    def _dense_affine(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Dense eps weights; models without a spectral form must provide them."""
        raise TypeError(f"{type(self).__name__} has neither a spectral form nor dense weights")

    def _checked_gains(self, t: float, a: float, s: float) -> np.ndarray:
        g = self.spectral.gains(t, a, s)
        if not np.all(np.isfinite(g)):
            raise _undefined_score(t, int(np.sum(~np.isfinite(g))), s)
        return g

    # -- evaluation --------------------------------------------------------------------------------
    def _spectral_apply(self, pts: np.ndarray, t: float, a: float, gains: np.ndarray, what: str) -> np.ndarray:
        """``U diag(gains) U^T (x - alpha m)``; a value beyond float64 is a ValueError naming ``t``."""
        sp = self.spectral
        with np.errstate(over="ignore", invalid="ignore"):
            out = (((pts - a * sp.mean) @ sp.basis) * gains) @ sp.basis.T
        return _finite_or_raise(out, what, t)

    def score(self, x, t) -> np.ndarray:
        r"""Score of the model at the rows of ``x`` and scalar time ``t``."""
        pts, single = as_points(x, self.dim)
        t_, a, s = self._time(t)
        if self.spectral is not None:
            out = 0.0 - self._spectral_apply(pts, t_, a, self._checked_gains(t_, a, s), "score")  # no -0.0
        else:
            A, c = self.score_affine(t)
            with np.errstate(over="ignore", invalid="ignore"):
                out = _finite_or_raise(pts @ A.T + c, "score", t_)
        return out[0] if single else out

    def x0(self, x, t) -> np.ndarray:
        if self.spectral is None:
            return super().x0(x, t)
        pts, single = as_points(x, self.dim)
        t_, a, s = self._time(t)
        sp = self.spectral
        self._checked_gains(t_, a, s)
        k = sp.x0_gains(t_, a, s)
        out = sp.mean + self._spectral_apply(pts, t_, a, k, "x0 prediction")
        return out[0] if single else out

    def eps(self, x, t) -> np.ndarray:
        pts, single = as_points(x, self.dim)
        t_, a, s = self._time(t)
        if self.spectral is None:
            W, b = self._dense_affine(t_)
            with np.errstate(over="ignore", invalid="ignore"):
                out = _finite_or_raise(pts @ W.T + b, "noise prediction", t_)
        else:
            # sigma g formed before the product: eps can be representable where the score is not
            out = self._spectral_apply(pts, t_, a, s * self._checked_gains(t_, a, s), "noise prediction")
        return out[0] if single else out


def _finite_or_raise(out: np.ndarray, what: str, t: float) -> np.ndarray:
    if not np.all(np.isfinite(out)):
        raise ValueError(f"the {what} at t={t:g} exceeds the float64 range for these x; evaluate at a larger t")
    return out


# ------------------------------------------------------------------------------------------------
class GaussianScore(AffineModel):
    r"""The exact score of the noised Gaussian :math:`p_t = \mathcal N(\alpha\mu, \alpha^2 S + \sigma^2 I)`.

    .. math:: \nabla\log p_t(x) = -(\alpha_t^2 S + \sigma_t^2 I)^{-1}(x - \alpha_t\mu).

    Examples
    --------
    >>> from lindiff import Gaussian, OU
    >>> model = GaussianScore(Gaussian.standard(2), OU())
    >>> model.score([1.0, 0.0], 0.5)
    array([-1.,  0.])
    """

    def __init__(self, p0: Gaussian, process: Process):
        if not isinstance(p0, Gaussian):
            raise TypeError(f"p0 must be a lindiff.Gaussian, got {type(p0).__name__}")
        self.process = _check_process(process)
        self.dim = p0.dim
        self.data = p0
        self.spectral = SpectralForm(p0.eigenvectors, p0.eigenvalues, p0.mean)

    def logpdf(self, x, t) -> np.ndarray | float:
        """Log density of the noised marginal ``p_t`` at the rows of ``x``."""
        return self.process.marginal(self.data, t).logpdf(x)

    def __repr__(self) -> str:
        return f"GaussianScore(dim={self.dim}, process={self.process!r})"


# ------------------------------------------------------------------------------------------------
class EmpiricalScore(ScoreModel):
    r"""The exact score of the noised empirical distribution of the training points (rows of X).

    .. math::
        \nabla\log \hat p_t(x) = \frac{\alpha_t \sum_i w_i(x) x_i - x}{\sigma_t^2},\qquad
        w_i \propto \exp\!\Big(-\frac{\|x - \alpha_t x_i\|^2}{2\sigma_t^2}\Big).

    It is the unconstrained minimiser of the training DSM loss; its reverse process reproduces the
    training points (memorisation).  The softmax is evaluated with log-sum-exp on exact pairwise
    differences, so it stays finite for any ``t > 0``, also when one point dominates.

    Examples
    --------
    >>> from lindiff import OU
    >>> model = EmpiricalScore([[1.0, 0.0], [-1.0, 0.0]], OU())
    >>> bool(model.x0([1.0, 0.0], 1e-6)[0] > 0.999)
    True
    """

    _CHUNK = 1 << 21  # elements of each (n, N, d) difference tensor held at once (two are formed)

    def __init__(self, X, process: Process):
        self.X = as_training_set(X, "X")
        self.X.setflags(write=False)
        self.process = _check_process(process)
        self.dim = self.X.shape[1]

    def _time_positive(self, t) -> tuple[float, float, float]:
        t_, a, s = self._time(t)
        if s <= 0:
            raise ValueError(f"t must have sigma(t) > 0 for the empirical score (it is singular at t = 0), got t={t!r}")
        return t_, a, s

    def _log_weights(self, pts: np.ndarray, a: float, s: float) -> tuple[np.ndarray, np.ndarray]:
        r"""Shifted logits ``(n, N)`` (max 0 per row, never NaN or +inf) and the per-row shift.

        Softmax weights only depend on differences of the logits :math:`-\|x - \alpha x_i\|^2/(2\sigma^2)`,
        and forming each logit loses ``eps`` of its own magnitude, which far from the data (``|x| = 1e8``)
        exceeds 1 and scrambles the weights.  With ``k`` the nearest centre, ``delta = x - alpha x_k`` and
        ``D_i = x_i - x_k`` (exact differences),

        .. math:: \|\delta\|^2 - \|x - \alpha x_i\|^2 = \alpha(2\delta\cdot D_i - \alpha\|D_i\|^2) =: n_i ,

        whose rounding is relative to ``|delta||D_i|``, not ``|x|^2`` (duplicate points get exactly equal
        logits).  The logits are ``(n_i - max_j n_j) / (2 sigma^2)`` and the shift
        ``-(||delta||^2 - max_j n_j) / (2 sigma^2)`` (the largest logit; may be ``-inf`` when it underflows).
        """
        n, N, d = pts.shape[0], self.X.shape[0], self.dim
        out = np.empty((n, N))
        shift = np.empty(n)
        step = max(1, self._CHUNK // max(1, N * d))
        centres = a * self.X
        two_s2 = 2.0 * s * s
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            for start in range(0, n, step):
                chunk = pts[start : start + step]
                rows = np.arange(chunk.shape[0])
                diff = chunk[:, None, :] - centres[None, :, :]
                top = np.max(np.abs(diff), axis=(1, 2), keepdims=True)
                top = np.where(top > 0, top, 1.0)
                scaled = diff / top  # the nearest centre, chosen without overflow of the squares
                k = np.argmin(np.einsum("ijk,ijk->ij", scaled, scaled), axis=1)
                delta = diff[rows, k]
                D = self.X[None, :, :] - self.X[k][:, None, :]
                num = a * (2.0 * np.einsum("ik,ijk->ij", delta, D) - a * np.einsum("ijk,ijk->ij", D, D))
                best = np.max(num, axis=1)
                out[start : start + step] = (num - best[:, None]) / two_s2
                near = np.einsum("ik,ik->i", delta, delta) - best  # min_i ||x - alpha x_i||^2 (>= 0 up to rounding)
                shift[start : start + step] = -np.maximum(near, 0.0) / two_s2
        return out, shift

    def weights(self, x, t) -> np.ndarray:
        """Softmax weights ``w_i(x)`` over training points, shape (n, N) (or (N,) for one point).

        Finite and summing to 1 for every ``t > 0`` and every finite ``x`` (see :meth:`_log_weights`).
        """
        pts, single = as_points(x, self.dim)
        _, a, s = self._time_positive(t)
        logits, _ = self._log_weights(pts, a, s)
        with np.errstate(under="ignore"):
            w = np.exp(logits)
        w /= np.sum(w, axis=1, keepdims=True)  # the largest term is exp(0) = 1: no 0/0
        return w[0] if single else w

    def x0(self, x, t) -> np.ndarray:
        r"""Posterior mean :math:`\sum_i w_i(x) x_i` (the optimal empirical denoiser)."""
        pts, single = as_points(x, self.dim)
        w = np.atleast_2d(self.weights(pts, t))
        out = w @ self.X
        return out[0] if single else out

    def score(self, x, t) -> np.ndarray:
        """Score ``(alpha x0_hat - x) / sigma^2``; a ``ValueError`` names ``t`` if it exceeds the float64 range."""
        pts, single = as_points(x, self.dim)
        t_, a, s = self._time_positive(t)
        with np.errstate(over="ignore", invalid="ignore"):
            out = (a * np.atleast_2d(self.x0(pts, t)) - pts) / (s * s)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"the empirical score at t={t_:g} exceeds the float64 range for these x "
                             f"(sigma(t)^2 = {s * s:.3g}); evaluate at a larger t")
        return out[0] if single else out

    def logpdf(self, x, t) -> np.ndarray | float:
        r"""Log density of the mixture :math:`\frac1N\sum_i \mathcal N(x; \alpha_t x_i, \sigma_t^2 I)`.

        ``-inf`` where the log-density is below the float64 range (``x`` far from every centre
        compared with ``sigma(t)``).
        """
        pts, single = as_points(x, self.dim)
        _, a, s = self._time_positive(t)
        logits, shift = self._log_weights(pts, a, s)
        with np.errstate(under="ignore", over="ignore"):
            out = (shift + logsumexp(logits, axis=1) - np.log(self.X.shape[0])
                   - 0.5 * self.dim * np.log(2 * np.pi * s * s))
        return float(out[0]) if single else out

    def __repr__(self) -> str:
        return f"EmpiricalScore(N={self.X.shape[0]}, dim={self.dim}, process={self.process!r})"


# ------------------------------------------------------------------------------------------------
def _check_ridge(ridge) -> Ridge:
    if callable(ridge):
        return ridge
    return as_nonnegative_float(ridge, "ridge")


class LinearDenoiser(AffineModel):
    r"""An affine eps-model ``eps_hat(x, t) = W_t x + b_t``, one free ``(W_t, b_t)`` per time.

    Build it with :meth:`fit` (trained on points, noise expectation exact), :meth:`population`
    (Bayes-optimal for a Gaussian), :meth:`fit_noise_draws` (least squares on P noise draws per point)
    or :meth:`from_weights` (any weights, e.g. from another library).
    """

    def __init__(self, process: Process, dim: int, *, spectral: SpectralForm | None = None,
                 weights: Callable[[float], tuple[np.ndarray, np.ndarray]] | None = None,
                 data: Gaussian | None = None, description: str = "LinearDenoiser",
                 score_weights: Callable[[float], tuple[np.ndarray, np.ndarray]] | None = None):
        if (spectral is None) == (weights is None):
            raise ValueError("give exactly one of spectral= or weights=")
        self._score_weights = score_weights
        self.process = _check_process(process)
        self.dim = as_positive_int(dim, "dim")
        self.spectral = spectral
        self._weights = weights
        self.data = data
        self._description = description

    def __repr__(self) -> str:
        return f"{self._description}(dim={self.dim}, process={self.process!r})"

    def _dense_affine(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        W, b = self._weights(t)
        W = as_finite_array(W, "W_t", ndim=2)
        b = as_finite_array(b, "b_t", ndim=1)
        if W.shape != (self.dim, self.dim) or b.shape != (self.dim,):
            raise ValueError(f"weights(t) must return W of shape ({self.dim}, {self.dim}) and b of shape ({self.dim},), got {W.shape} and {b.shape}")
        return W, b

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def fit(cls, X, process: Process, ridge: Ridge = 0.0, train_time: float | None = None, lr: float = 1.0,
            centred: bool = True) -> "LinearDenoiser":
        r"""The affine eps-model trained on the rows of X, the noise expectation taken exactly.

        Minimises (or runs gradient flow on) the per-time training loss

        .. math::
            L_t(W, b) = \frac1N\sum_i \mathbb E_\varepsilon\|\varepsilon - W(\alpha x_i + \sigma\varepsilon) - b\|^2
            + r_t \|W\|_F^2
            = \|I - \sigma W\|_F^2 + \alpha^2\operatorname{tr}(W\hat S W^T) + \|\alpha W\hat\mu + b\|^2 + r_t\|W\|_F^2 .

        The minimiser is :math:`W_t = \sigma(\alpha^2\hat S + (\sigma^2 + r_t) I)^{-1}`,
        :math:`b_t = -\alpha W_t\hat\mu`: the score of the fitted Gaussian :math:`\mathcal N(\hat\mu, \hat S)`
        (1/N covariance) noised to time t, with ``sigma^2 -> sigma^2 + ridge``.  Works for any N >= 1;
        for N <= d the model predicts "all noise" on the null space of :math:`\hat S`.

        Parameters
        ----------
        X : array_like, shape (N, d)
            Training points as rows.
        process : DDPM, VP or OU
        ridge : float or callable ``t -> float``
            Adds ``ridge * ||W_t||_F^2`` to the per-time loss (Merger & Goldt's ``c * alpha_bar_t`` is
            ``lambda t: c * process.alpha(t)**2``).
        train_time : float, optional
            Gradient-flow time ``tau`` from zero weights, ``dW/dtau = -lr dL/dW``.  With ``centred=True``
            the flow runs in the centred parametrisation ``eps_hat = W (x - alpha mu_hat) + c`` (training on
            centred data), so each eigenmode relaxes independently:
            ``W_t = sigma (1 - exp(-2 lr tau h)) / h`` with ``h = alpha^2 l + sigma^2 + r``.  ``None`` gives
            the minimiser.
        lr : float
            Learning rate of the flow (only its product with ``train_time`` matters).
        centred : bool
            ``False`` runs the flow on the raw parameters ``(W, b)`` from zero; the input second moment
            then mixes the mean into the Hessian and the model is dense (no shared eigenbasis).  The
            minimiser (``train_time=None``) is the same either way.

        Examples
        --------
        >>> import numpy as np
        >>> from lindiff import DDPM, Gaussian, GaussianScore
        >>> X = np.random.default_rng(0).standard_normal((50, 3))
        >>> model = LinearDenoiser.fit(X, DDPM.linear(100))
        >>> exact = GaussianScore(Gaussian.fit(X), model.process)
        >>> bool(np.allclose(model.score(X[:2], 10), exact.score(X[:2], 10)))
        True
        """
        X = as_training_set(X, "X")
        fitted = Gaussian.fit(X)
        model = cls._from_gaussian(fitted, process, ridge, train_time, lr, centred, "fit")
        model._training_points = X.copy()  # lets losses recognise the training set (O(Nd)) without refitting
        return model

    @classmethod
    def fit_convolutional(cls, X, process: Process, grid, kernel_size=None, ridge: Ridge = 0.0,
                          train_time: float | None = None, lr: float = 1.0, *,
                          channels: int | None = None) -> "LinearDenoiser":
        r"""The translation-equivariant linear denoiser trained on N images (rows of X: flattened grids, C order).

        The eps-model is a circular convolution with one bias, :math:`\hat\varepsilon_t(x) = w_t * x + \beta_t`,
        trained per time on the loss of :meth:`fit` (noise expectation exact, ``ridge * ||W_t||_F^2`` with
        :math:`W_t` the d x d circulant, i.e. ``d * ridge * ||w_t||^2``).  Only the shift average of the
        training images' second moment enters: with :math:`m` the mean of all pixels and
        :math:`\bar P(k) = \frac1N\sum_i|\widehat{(x_i - m)}(k)|^2` the periodogram average (unitary DFT),

        * ``kernel_size=None`` (full support): the optimal denoiser of the shift-averaged fitted field
          ``Gaussian.stationary(P_bar, m)`` (the model's ``data``), per frequency
          :math:`\hat w_t(k) = \sigma/(\alpha^2\bar P(k) + \sigma^2 + r_t)` — :meth:`fit` with the covariance
          replaced by its shift average;
        * ``kernel_size=k`` (odd, or one odd size per axis): the exact least-squares kernel on the centred
          k x ... x k box, :math:`(\alpha^2 R_S + (\sigma^2 + r_t) I)\,w_t = \sigma e_0` with
          :math:`R_S` the images' circular autocorrelation :math:`R(o - o')` on the box (from
          :math:`\bar P` by one inverse FFT); its gain at frequency k is the kernel's transfer function.
          The locality is what makes convolutional diffusion models creative (Kamb & Ganguli 2025, "An
          analytic theory of creativity in convolutional diffusion models", arXiv:2412.20292) and their generalisation
          geometry-adaptive (Kadkhodaie, Guth, Simoncelli & Mallat 2024, "Generalization in diffusion
          models arises from geometry-adaptive harmonic representations").

        Both are diagonal in the grid's Fourier (Hartley) basis, so scores, losses, sampler laws and
        divergences to fields on the same grid cost O(d) per time after one FFT.  The bias is
        :math:`\beta_t = -\alpha\,m\sum_o w_o` (the centred parametrisation
        :math:`w * (x - \alpha m\mathbf 1)`, in which the gradient flow of ``train_time`` also runs: from zero
        kernel weights, restricted to convolutions, :math:`w_t(\tau) = \sigma\phi_\tau(A_t) e_0` with
        :math:`\phi_\tau(h) = (1 - e^{-2\,\mathrm{lr}\,\tau h})/h`).  The loss on the training images equals
        the loss on ``data`` (an equivariant model sees only the shift average), which :func:`~lindiff.dsm_loss`
        uses.

        Parameters
        ----------
        X : array_like, shape (N, d)
            Training images as rows, each the grid flattened in C order.
        process : DDPM, VP or OU
        grid : int or tuple of ints
            The periodic grid, ``prod(grid) == d``.
        kernel_size : None, odd int or tuple of odd ints (one per axis, each at most the grid size)
        ridge, train_time, lr : as in :meth:`fit`
        channels : int, optional
            C for C-channel images: rows of X are arrays of shape (C, *grid) flattened in C order (CHW) and
            the model is a C-in/C-out circular convolution with one bias per channel.  With full support it
            is the optimal denoiser of the shift-averaged field ``Gaussian.stationary(P_bar, m, channels=C)``,
            :math:`\bar P(k) = \frac1N\sum_i \hat y_i(k)\hat y_i(k)^*` (C x C per frequency) of the images
            centred by their per-channel pixel means ``m``; ``train_time`` runs the gradient flow on the
            kernel weights :math:`w_{cc'}(o)` of the loss per pixel position (divided by ``prod(grid)``), the
            C = 1 convention.  ``kernel_size`` is refused with channels: the
            local C-in/C-out kernel's transfer function does not commute with the field's per-frequency
            rotations, so that model is not diagonal in any basis lindiff holds.

        Examples
        --------
        >>> import numpy as np
        >>> from lindiff import DDPM, Gaussian, GaussianScore
        >>> X = np.random.default_rng(0).standard_normal((5, 16))
        >>> full = LinearDenoiser.fit_convolutional(X, DDPM.linear(100), (4, 4))
        >>> exact = GaussianScore(full.data, full.process)  # the shift-averaged fitted field
        >>> bool(np.allclose(full.score(X[:2], 10), exact.score(X[:2], 10)))
        True
        >>> local = LinearDenoiser.fit_convolutional(X, DDPM.linear(100), (4, 4), kernel_size=3)
        >>> local.kernel(10).shape  # the eps-prediction kernel w_t on the 3 x 3 box
        (3, 3)
        >>> Xc = np.random.default_rng(1).standard_normal((5, 2 * 16))  # two-channel 4 x 4 images, (C, H, W) rows
        >>> rgb = LinearDenoiser.fit_convolutional(Xc, DDPM.linear(100), (4, 4), channels=2)
        >>> rgb.data.channels, rgb.kernel(10).shape  # w[c, c', o]: input channel c' to output channel c
        (2, (2, 2, 4, 4))
        """
        from . import _convolution, _fourier

        X = as_training_set(X, "X")
        grid = _fourier.as_grid(grid)
        if channels is not None and as_positive_int(channels, "channels") > 1:
            return cls._fit_convolutional_channels(X, process, grid, int(channels), kernel_size, ridge, train_time, lr)
        d = math.prod(grid)
        if X.shape[1] != d:
            raise ValueError(f"X must have rows of length prod(grid) = {d} (grid {grid}), got {X.shape[1]}")
        process = _check_process(process)
        ridge = _check_ridge(ridge)
        train_time = as_nonnegative_float(train_time, "train_time", allow_none=True)
        lr = as_positive_float(lr, "lr")
        m, P = _convolution.shift_averaged(X, grid)
        data = Gaussian.stationary(P, m)
        if kernel_size is None:
            spectral = SpectralForm(data.eigenvectors, data.eigenvalues, data.mean, ridge, train_time, lr)
            desc = "LinearDenoiser.fit_convolutional"
        else:
            sizes = _convolution.as_kernel_size(kernel_size, grid)
            kernel = _convolution.LocalKernel.fit(P, sizes)
            spectral = _convolution.KernelForm(data.eigenvectors, data.eigenvalues, data.mean, ridge, train_time, lr,
                                               kernel=kernel)
            desc = f"LinearDenoiser.fit_convolutional(kernel_size={'x'.join(map(str, sizes))})"
        model = cls(process, d, spectral=spectral, data=data, description=desc)
        model._training_points = X.copy()
        return model

    @classmethod
    def _fit_convolutional_channels(cls, X, process, grid, C, kernel_size, ridge, train_time, lr) -> "LinearDenoiser":
        from . import _convolution

        d = C * math.prod(grid)
        if X.shape[1] != d:
            raise ValueError(f"X must have rows of length channels * prod(grid) = {d} ({C} channels on the grid "
                             f"{grid}, flattened as (C, *grid)), got {X.shape[1]}")
        if kernel_size is not None:
            raise ValueError(f"kernel_size={kernel_size!r} with channels={C} is not supported: a local C-in/C-out "
                             "kernel's transfer function does not commute with the field's per-frequency channel "
                             "rotations (the model is not diagonal in the data's basis); use kernel_size=None (full "
                             "support), or fit each channel separately without channels")
        process = _check_process(process)
        ridge = _check_ridge(ridge)
        train_time = as_nonnegative_float(train_time, "train_time", allow_none=True)
        lr = as_positive_float(lr, "lr")
        m, P = _convolution.shift_averaged_channels(X, grid, C)
        data = Gaussian.stationary(P, m, channels=C)
        spectral = SpectralForm(data.eigenvectors, data.eigenvalues, data.mean, ridge, train_time, lr)
        model = cls(process, d, spectral=spectral, data=data,
                    description=f"LinearDenoiser.fit_convolutional(channels={C})")
        model._training_points = X.copy()
        return model

    def kernel(self, t) -> np.ndarray:
        r"""The eps-prediction kernel :math:`w_t` of a convolutional model (:meth:`fit_convolutional`), as
        an array over the offsets: the centred box for a local kernel (shape ``kernel_size``), the whole
        grid in FFT order for full support (``w[o]`` multiplies ``x[j - o]``); with channels, shape
        ``(C, C, *grid)`` and ``w[c, c', o]`` takes input channel c' to output channel c."""
        from . import _convolution, _fourier

        sp = self.spectral
        grid = None if sp is None else _fourier.grid_of(sp.basis)
        if grid is None:
            raise TypeError(f"{self._description} is not a convolutional model (see LinearDenoiser.fit_convolutional)")
        t_, a, s = self._time(t)
        if isinstance(sp, _convolution.KernelForm):
            u = sp.score_kernel(t_, a, s)
            if not np.all(np.isfinite(u)):
                raise _undefined_score(t_, int(np.sum(~np.isfinite(u))), s)
            return (s * u).reshape(sp.kernel.sizes)
        g = self._checked_gains(t_, a, s)
        if isinstance(sp.basis, _fourier.ChannelBasis):  # w[c, c', o]: per frequency V diag(s g) V^*
            blocks = sp.basis.blocks(s * g)
            axes = tuple(range(len(grid)))
            w = np.fft.ifftn(blocks, axes=axes).real
            return np.moveaxis(w, (-2, -1), (0, 1))
        return np.fft.ifftn((s * g).reshape(grid)).real

    @classmethod
    def population(cls, p0: Gaussian, process: Process, ridge: Ridge = 0.0, train_time: float | None = None,
                   lr: float = 1.0, centred: bool = True) -> "LinearDenoiser":
        r"""The Bayes-optimal affine eps-model for data ``p0`` (the population loss replaces the training
        loss in :meth:`fit`); with no ridge and no ``train_time`` it equals :class:`GaussianScore`."""
        if not isinstance(p0, Gaussian):
            raise TypeError(f"p0 must be a lindiff.Gaussian, got {type(p0).__name__}")
        return cls._from_gaussian(p0, process, ridge, train_time, lr, centred, "population")

    @classmethod
    def _from_gaussian(cls, g: Gaussian, process, ridge, train_time, lr, centred, kind) -> "LinearDenoiser":
        process = _check_process(process)
        ridge = _check_ridge(ridge)
        train_time = as_nonnegative_float(train_time, "train_time", allow_none=True)
        lr = as_positive_float(lr, "lr")
        desc = f"LinearDenoiser.{kind}"
        if centred or train_time is None:
            spectral = SpectralForm(g.eigenvectors, g.eigenvalues, g.mean, ridge, train_time, lr)
            return cls(process, g.dim, spectral=spectral, data=g, description=desc)
        return cls(process, g.dim, weights=_RawFlow(g, process, ridge, train_time, lr), data=g,
                   description=desc + "(centred=False)")

    @classmethod
    def fit_noise_draws(cls, X, process: Process, draws: int, rng: RNGLike = None, ridge: float = 0.0) -> "LinearDenoiser":
        r"""Least squares on ``P = draws`` noise draws per training point ("generalisation through
        variance", Vastola 2025).

        For each time t the weights minimise
        :math:`\frac{1}{NP}\sum_{i,j}\|\varepsilon_{ij} - W(\alpha x_i + \sigma\varepsilon_{ij}) - b\|^2 + r\|W\|_F^2`
        (ordinary least squares with intercept; the minimum-norm solution when under-determined).  The
        draws at time t come from a generator seeded by (rng, t), so the model is a fixed random
        function: the same t always gives the same weights.  As ``draws -> inf`` it tends to :meth:`fit`.
        With ``ridge=0`` and ``N * draws > d`` the weights are *exactly* those of :meth:`fit` on the directions
        orthogonal to the span of the centred training points (the input's component there is an exact
        multiple of the noise), so finite P changes the model only on that span; :mod:`lindiff.variance`
        computes the law averaged over the draws.
        """
        X = as_training_set(X, "X")
        draws = as_positive_int(draws, "draws")
        ridge = as_nonnegative_float(ridge, "ridge")
        seed = as_rng(rng).integers(0, 2**63 - 1)
        process = _check_process(process)
        weights = _NoiseDrawFit(X, process, draws, int(seed), ridge)
        return cls(process, X.shape[1], weights=weights, data=Gaussian.fit(X),
                   description=f"LinearDenoiser.fit_noise_draws(P={draws})")

    @classmethod
    def from_weights(cls, process: Process, weights: Callable[[float], tuple[np.ndarray, np.ndarray]], dim: int,
                     data: Gaussian | None = None) -> "LinearDenoiser":
        """A general affine eps-model from a function ``t -> (W_t, b_t)`` (dense path)."""
        if not callable(weights):
            raise TypeError("weights must be a callable t -> (W_t, b_t)")
        return cls(process, dim, weights=weights, data=data, description="LinearDenoiser.from_weights")

    def to_dense(self) -> "LinearDenoiser":
        """The same model without its eigenbasis representation (forces the dense path)."""
        return LinearDenoiser(self.process, self.dim, weights=self.affine, data=self.data,
                              description=self._description + ".to_dense()", score_weights=self.score_affine)


class _RawFlow:
    r"""Gradient flow on raw ``theta = [W, b]`` from zero: ``theta(tau) = [sigma I, 0] phi(H)`` with the
    augmented second moment ``H = E[(x, 1)(x, 1)^T]`` (+ ridge on the W block) and
    ``phi(H) = H^{-1}(I - exp(-2 lr tau H))``."""

    def __init__(self, g: Gaussian, process, ridge, train_time, lr):
        self.g, self.process, self.ridge, self.train_time, self.lr = g, process, ridge, train_time, lr

    def __call__(self, t: float):
        a, s = float(self.process.alpha(t)), float(self.process.sigma(t))
        d = self.g.dim
        if s == 0.0:  # theta = sigma [I 0] phi(H) vanishes
            return np.zeros((d, d)), np.zeros(d)
        r = float(self.ridge(t)) if callable(self.ridge) else self.ridge
        m = self.g.mean
        v = a * m
        lam, U = self.g.eigenvalues, self.g.eigenvectors
        kappa = a * a * lam + (s * s + r)  # eigenvalues of K = a^2 C + (s^2 + r) I, all > 0
        # H = L diag(K, 1) L^T with L = [[I, v], [0, 1]], so lambda_min(H) >= min(kappa_min, 1) / (1 + |v|)^2.
        # Once exp(-2 lr tau lambda_min) < e^-50 the flow has reached the minimiser H^{-1}, whose first d rows
        # are [K^{-1}, -K^{-1} v] (block inverse, exact; the same minimiser as the centred flow): this also
        # covers Hessians whose dynamic range float64 cannot resolve (a huge ridge).
        lower = min(float(kappa.min()), 1.0) / (1.0 + float(np.linalg.norm(v))) ** 2
        if 2.0 * self.lr * self.train_time * lower >= 50.0:
            W = (U * (s / kappa)) @ U.T
            return W, -(W @ v)
        H = np.empty((d + 1, d + 1))
        H[:d, :d] = a * a * (_law_cov(self.g) + np.outer(m, m)) + (s * s + r) * np.eye(d)
        H[:d, d] = H[d, :d] = v
        H[d, d] = 1.0
        phi = _linalg.relax_matrix(H, self.train_time, self.lr, definite=True)
        theta = s * phi[:d, :]
        return theta[:, :d], theta[:, d]


class _NoiseDrawFit:
    def __init__(self, X, process, draws, seed, ridge):
        self.X, self.process, self.draws, self.seed, self.ridge = X, process, draws, seed, ridge

    def __call__(self, t: float):
        a, s = float(self.process.alpha(t)), float(self.process.sigma(t))
        key = int(np.float64(t).view(np.uint64))
        gen = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(key,)))
        N, d = self.X.shape
        eps = gen.standard_normal((N * self.draws, d))
        x = a * np.repeat(self.X, self.draws, axis=0) + s * eps
        xm, em = x.mean(axis=0), eps.mean(axis=0)
        xc, ec = x - xm, eps - em
        n = x.shape[0]
        cxx = xc.T @ xc / n + self.ridge * np.eye(d)
        cex = ec.T @ xc / n
        W = _linalg.solve_psd(cxx, cex.T).T
        return W, em - W @ xm
