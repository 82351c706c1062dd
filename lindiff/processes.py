r"""Forward noising processes :math:`x_t = \alpha(t) x_0 + \sigma(t)\varepsilon`, :math:`\varepsilon\sim\mathcal N(0, I)`.

Two families share one protocol (:class:`Process`):

* :class:`DDPM` — discrete steps ``k = 0..T`` (Ho et al. 2020): ``betas[k-1] = beta_k``,
  ``alpha_bar_k = prod_{j<=k}(1 - beta_j)``, ``alpha = sqrt(alpha_bar)``, ``sigma = sqrt(1 - alpha_bar)``.
* :class:`VP` — continuous variance preserving SDE in Song et al.'s convention
  ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW``, so ``alpha(t) = exp(-B(t)/2)`` with
  ``B(t) = int_0^t beta``, and ``sigma^2 = 1 - alpha^2``.  :func:`OU` is ``beta = 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ._validation import as_finite_array, as_nonnegative_float, as_positive_float, as_positive_int
from .gaussian import Gaussian

__all__ = ["Process", "DDPM", "VP", "OU", "SigmaVP"]

_FAST_SCALARS = (float, int, np.float64, np.int64)  # not bool (a subclass of int, refused by the full check)

MAX_STEPS = 10**7
"""Largest number of DDPM steps a schedule may have (its tables are O(T) arrays)."""


@runtime_checkable
class Process(Protocol):
    """What the rest of lindiff needs from a forward process."""

    T: float
    discrete: bool

    def alpha(self, t): ...

    def sigma(self, t): ...

    def log_alpha2(self, t): ...

    def marginal(self, p0: Gaussian, t) -> Gaussian: ...

    def check_time(self, t, name: str = "t", allow_zero: bool = True) -> np.ndarray: ...


def _marginal(process, p0: Gaussian, t) -> Gaussian:
    r""":math:`p_t = \mathcal N(\alpha\mu, \alpha^2\Sigma + \sigma^2 I)`, keeping p0's eigenbasis."""
    if not isinstance(p0, Gaussian):
        raise TypeError(f"p0 must be a lindiff.Gaussian, got {type(p0).__name__}")
    t = process.check_time(t)
    if t.ndim != 0:
        raise ValueError(f"t must be a scalar time for marginal(), got shape {t.shape}")
    a, s = float(process.alpha(t)), float(process.sigma(t))
    # p0's own (validated) basis: no new orthonormality check
    return Gaussian._in_basis(a * a * p0.eigenvalues + s * s, p0.eigenvectors, None, name="marginal covariance",
                              mean=a * p0.mean)


@dataclass(frozen=True, eq=False)
class DDPM:
    r"""Discrete DDPM forward process with ``T = len(betas)`` steps.

    Parameters
    ----------
    betas : array_like, shape (T,)
        ``betas[k-1] = beta_k`` for ``k = 1..T``, each in the open interval (0, 1).

    Notes
    -----
    Times are integer steps ``k in {0, ..., T}`` (floats with integral values are accepted);
    ``alpha(0) = 1`` and ``sigma(0) = 0``.  The continuous-time samplers (Euler, Heun, ...) are not
    defined for a discrete process; use ``"ddpm"`` or ``"ddim"``.

    Examples
    --------
    >>> p = DDPM.linear(1000)
    >>> p.T, round(float(p.sigma(1) ** 2), 8)
    (1000, 0.0001)
    """

    betas: np.ndarray

    def __post_init__(self) -> None:
        betas = as_finite_array(self.betas, "betas", ndim=1)
        if betas.size == 0:
            raise ValueError("betas must hold at least one value (T >= 1)")
        if np.any(betas <= 0) or np.any(betas >= 1):
            bad = betas[(betas <= 0) | (betas >= 1)][0]
            raise ValueError(f"betas must lie in the open interval (0, 1); found {bad!r}")
        betas = betas.copy()
        betas.setflags(write=False)
        object.__setattr__(self, "betas", betas)
        # log alpha_bar by a cumulative sum of log1p: accurate for tiny betas.
        log_abar = np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])
        log_abar.setflags(write=False)
        object.__setattr__(self, "_log_alpha_bar", log_abar)

    discrete = True

    @property
    def T(self) -> int:  # type: ignore[override]
        return int(self.betas.shape[0])

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> "DDPM":
        """Ho et al.'s linear schedule: ``betas = linspace(beta_start, beta_end, T)``."""
        T = as_positive_int(T, "T", maximum=MAX_STEPS)
        beta_start = as_positive_float(beta_start, "beta_start")
        beta_end = as_positive_float(beta_end, "beta_end")
        return cls(np.linspace(beta_start, beta_end, T))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "DDPM":
        r"""Nichol & Dhariwal's cosine schedule, as diffusers' ``squaredcos_cap_v2``.

        ``alpha_bar(u) = cos^2((u + s)/(1 + s) * pi/2)`` and
        ``beta_k = min(1 - alpha_bar(k/T)/alpha_bar((k-1)/T), max_beta)``.
        """
        T = as_positive_int(T, "T", maximum=MAX_STEPS)
        s = as_nonnegative_float(s, "s")
        max_beta = as_positive_float(max_beta, "max_beta")
        if max_beta >= 1:
            raise ValueError(f"max_beta must lie in (0, 1), got {max_beta!r}")
        u = np.arange(T + 1) / T
        f = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
        return cls(np.minimum(1 - f[1:] / f[:-1], max_beta))

    def check_time(self, t, name: str = "t", allow_zero: bool = True) -> np.ndarray:
        if type(t) in _FAST_SCALARS and t == t and (1 if not allow_zero else 0) <= t <= self.T and t == int(t):
            return np.int64(t)  # the common scalar case, without building and scanning an array
        arr = as_finite_array(t, name)
        lo = 0 if allow_zero else 1
        if np.any(arr != np.round(arr)) or np.any(arr < lo) or np.any(arr > self.T):
            raise ValueError(f"{name} must be an integer step in [{lo}, {self.T}] for this DDPM process, got {t!r}")
        return arr.astype(np.int64)

    @property
    def alpha_bar(self) -> np.ndarray:
        """``alpha_bar_k`` for ``k = 0..T`` (length T + 1, ``alpha_bar_0 = 1``)."""
        return np.exp(self._log_alpha_bar)

    def log_alpha2(self, t):
        """``log alpha(t)^2 = log alpha_bar_t`` (exact cumulative sum of ``log1p(-beta)``)."""
        return self._log_alpha_bar[self.check_time(t)]

    def alpha(self, t):
        k = self.check_time(t)
        return np.exp(0.5 * self._log_alpha_bar[k])

    def sigma(self, t):
        k = self.check_time(t)
        return np.sqrt(-np.expm1(self._log_alpha_bar[k])) + 0.0  # + 0.0 turns -0.0 into 0.0

    def marginal(self, p0: Gaussian, t) -> Gaussian:
        return _marginal(self, p0, t)

    def __repr__(self) -> str:
        return f"DDPM(T={self.T}, beta_1={self.betas[0]:.3g}, beta_T={self.betas[-1]:.3g})"


class _RateProcess:
    """Continuous VP processes defined by ``beta(t)`` and ``B(t) = int_0^t beta``: everything else follows."""

    discrete = False

    def drift(self, t):
        """``f(t)`` in ``dx = f x dt + g dW`` (``= d log alpha / dt = -beta/2``)."""
        return -0.5 * self.beta(t)

    def diffusion2(self, t):
        """``g(t)^2`` in ``dx = f x dt + g dW`` (``= beta(t)``)."""
        return self.beta(t)

    def log_alpha2(self, t):
        """``log alpha(t)^2 = -B(t)``."""
        return -self.B(t)

    def alpha(self, t):
        return np.exp(-0.5 * self.B(t))

    def sigma(self, t):
        return np.sqrt(-np.expm1(-self.B(t))) + 0.0  # + 0.0 turns -0.0 into 0.0

    def marginal(self, p0: Gaussian, t) -> Gaussian:
        return _marginal(self, p0, t)


@dataclass(frozen=True, eq=False)
class VP(_RateProcess):
    r"""Continuous variance-preserving process, Song et al.'s convention.

    ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW`` on ``[0, T]``, hence
    ``alpha(t) = exp(-B(t)/2)``, ``B(t) = int_0^t beta(s) ds`` and ``sigma(t)^2 = -expm1(-B(t))``.

    Parameters
    ----------
    beta_min, beta_max : float
        ``beta(t) = beta_min + (beta_max - beta_min) t / T`` (linear schedule).
    T : float
        Final time.

    Examples
    --------
    >>> vp = VP.linear()
    >>> round(float(vp.alpha(1.0)), 6)
    0.006572
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta_min", as_positive_float(self.beta_min, "beta_min"))
        object.__setattr__(self, "beta_max", as_positive_float(self.beta_max, "beta_max"))
        object.__setattr__(self, "T", as_positive_float(self.T, "T"))

    @classmethod
    def linear(cls, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0) -> "VP":
        return cls(beta_min, beta_max, T)

    def check_time(self, t, name: str = "t", allow_zero: bool = True) -> np.ndarray:
        if type(t) in _FAST_SCALARS and 0 <= t <= self.T and (allow_zero or t > 0):
            return np.float64(t)  # the common scalar case, without building and scanning an array
        arr = as_finite_array(t, name)
        if np.any(arr < 0) or np.any(arr > self.T * (1 + 1e-12)) or (not allow_zero and np.any(arr == 0)):
            lo = "[0" if allow_zero else "(0"
            raise ValueError(f"{name} must lie in {lo}, {self.T:g}] for this process, got {t!r}")
        return np.minimum(arr, self.T)

    def beta(self, t):
        """Instantaneous rate ``beta(t)``."""
        t = self.check_time(t)
        return self.beta_min + (self.beta_max - self.beta_min) * t / self.T

    def B(self, t):
        """Integrated rate ``B(t) = int_0^t beta(s) ds``."""
        t = self.check_time(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t / self.T

    def __repr__(self) -> str:
        return f"VP(beta_min={self.beta_min:g}, beta_max={self.beta_max:g}, T={self.T:g})"


def OU(T: float = 10.0) -> VP:
    r"""Ornstein–Uhlenbeck process ``dx = -x dt + sqrt(2) dW``: ``alpha = e^{-t}``, ``sigma^2 = 1 - e^{-2t}``.

    This is :class:`VP` with constant ``beta = 2``.

    Examples
    --------
    >>> ou = OU()
    >>> round(float(ou.alpha(1.0)), 6) == round(float(np.exp(-1.0)), 6)
    True
    """
    return VP(2.0, 2.0, T)


@dataclass(frozen=True, eq=False)
class SigmaVP(_RateProcess):
    r"""The variance-preserving process indexed by its VE noise level :math:`t = \sigma_{VE} = \sigma/\alpha`.

    :math:`\alpha(t) = (1 + t^2)^{-1/2}`, :math:`\sigma(t) = t (1 + t^2)^{-1/2}`, i.e. ``B(t) = log(1 + t^2)``
    and ``beta(t) = 2t/(1 + t^2)``.  This is the time axis of Karras et al. (2022), k-diffusion and the
    diffusers Euler / DPM-Solver schedulers (``scheduler.sigmas``); every continuous sampler runs on it.

    >>> p = SigmaVP(80.0)
    >>> round(float(p.alpha(1.0) ** 2), 6), round(float(p.sigma(1.0) ** 2), 6)
    (0.5, 0.5)
    """

    sigma_max: float = 80.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_max", as_positive_float(self.sigma_max, "sigma_max"))

    @property
    def T(self) -> float:  # type: ignore[override]
        return self.sigma_max

    def check_time(self, t, name: str = "t", allow_zero: bool = True) -> np.ndarray:
        if type(t) in _FAST_SCALARS and 0 <= t <= self.sigma_max and (allow_zero or t > 0):
            return np.float64(t)  # the common scalar case, without building and scanning an array
        arr = as_finite_array(t, name)
        if np.any(arr < 0) or np.any(arr > self.sigma_max * (1 + 1e-12)) or (not allow_zero and np.any(arr == 0)):
            raise ValueError(f"{name} must be a noise level in [0, {self.sigma_max:g}] for this process, got {t!r}")
        return np.minimum(arr, self.sigma_max)

    def B(self, t):
        return np.log1p(self.check_time(t) ** 2)

    def beta(self, t):
        t = self.check_time(t)
        return 2 * t / (1 + t * t)

    # direct forms, more accurate than through B at small and large t
    def alpha(self, t):
        return 1.0 / np.sqrt(1.0 + self.check_time(t) ** 2)

    def sigma(self, t):
        t = self.check_time(t)
        return t / np.sqrt(1.0 + t * t)

    def __repr__(self) -> str:
        return f"SigmaVP(sigma_max={self.sigma_max:g})"
