r"""Proportional limit d, N -> infinity with d/N -> q: spectra of the fitted covariance.

* :class:`MarchenkoPastur` — the limit law of the eigenvalues of :math:`\hat\Sigma` when
  :math:`\Sigma = s I`: density :math:`\frac{\sqrt{(b-x)(x-a)}}{2\pi s q x}` on
  :math:`[a, b] = [s(1-\sqrt q)^2, s(1+\sqrt q)^2]`, plus an atom :math:`1 - 1/q` at zero for q > 1
  (the null space of :math:`\hat\Sigma` when N < d).
* :class:`Silverstein` — the limit law for any population spectrum H (the Marchenko–Pastur /
  Silverstein equation).  With :math:`\underline m(z)` the Stieltjes transform of the N x N companion
  matrix,

  .. math:: z = -\frac{1}{\underline m} + q\int\frac{\tau\,dH(\tau)}{1 + \tau\underline m},\qquad
            m(z) = \frac{\underline m(z) + (1 - q)/z}{q},

  solved by damped fixed-point iteration in the upper half-plane, continued towards the real axis
  and polished by Newton's method; the density is :math:`\operatorname{Im} m(x + i0)/\pi`.

Both offer ``expect(f)`` (deterministic equivalents of :math:`\frac1d\sum_i f(\hat\lambda_i)`), used to
predict the training loss and KL of the fitted denoiser at large d; the tests check them against the
finite-d exact results as d grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import integrate

from ._validation import as_finite_array, as_positive_float

__all__ = ["MarchenkoPastur", "Silverstein"]


@dataclass(frozen=True)
class MarchenkoPastur:
    """Marchenko–Pastur law with ratio ``q = d/N`` and population variance ``scale``.

    >>> mp = MarchenkoPastur(0.25)
    >>> round(mp.expect(lambda x: x), 12), mp.atom
    (1.0, 0.0)
    """

    q: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "q", as_positive_float(self.q, "q"))
        object.__setattr__(self, "scale", as_positive_float(self.scale, "scale"))

    @property
    def support(self) -> tuple[float, float]:
        r = math.sqrt(self.q)
        return self.scale * (1 - r) ** 2, self.scale * (1 + r) ** 2

    @property
    def atom(self) -> float:
        """Mass at zero, ``max(0, 1 - 1/q)``."""
        return max(0.0, 1.0 - 1.0 / self.q)

    def density(self, x) -> np.ndarray:
        x = np.asarray(x, float)
        a, b = self.support
        inside = (x > a) & (x < b)
        out = np.zeros_like(x)
        xi = x[inside]
        out[inside] = np.sqrt((b - xi) * (xi - a)) / (2 * math.pi * self.scale * self.q * xi)
        return out

    def expect(self, f: Callable[[np.ndarray], np.ndarray]) -> float:
        r""":math:`\int f\,dF` including the atom; the continuous part by Gauss–Chebyshev-type substitution
        ``x = (a+b)/2 + (b-a)/2 cos(theta)``, which removes the square-root endpoints."""
        a, b = self.support
        c, h = (a + b) / 2, (b - a) / 2

        def integrand(theta):
            x = c + h * np.cos(theta)
            return f(np.asarray(x)) * (h * np.sin(theta)) ** 2 / (2 * math.pi * self.scale * self.q * x)

        cont = integrate.quad(integrand, 0, math.pi, limit=200, epsabs=1e-13, epsrel=1e-12)[0]
        return float(cont + (self.atom * float(f(np.asarray(0.0))) if self.atom > 0 else 0.0))


@dataclass(frozen=True, eq=False)
class Silverstein:
    """Limit eigenvalue law of the fitted covariance for a population spectrum ``eigenvalues`` (equal
    weights) and ratio ``q = d/N``.  ``grid`` points resolve the density (default 4000)."""

    eigenvalues: np.ndarray
    q: float
    grid: int = 4000
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        tau = as_finite_array(self.eigenvalues, "eigenvalues", ndim=1)
        if tau.size == 0 or np.any(tau < 0):
            raise ValueError("eigenvalues must be a non-empty array of non-negative numbers")
        object.__setattr__(self, "eigenvalues", tau)
        object.__setattr__(self, "q", as_positive_float(self.q, "q"))

    @property
    def atom(self) -> float:
        zero_frac = float(np.mean(self.eigenvalues == 0))
        return max(0.0, 1.0 - 1.0 / self.q) + (zero_frac if self.q <= 1 else zero_frac / self.q)

    def _companion(self, z: np.ndarray) -> np.ndarray:
        tau, q = self.eigenvalues, self.q
        m = -1.0 / z  # large-|z| behaviour
        for _ in range(5000):
            new = -1.0 / (z - q * np.mean(tau[None, :] / (1.0 + tau[None, :] * m[:, None]), axis=1))
            step = np.max(np.abs(new - m))
            m = 0.5 * m + 0.5 * new
            if step < 1e-13:
                break
        return m

    def _newton(self, z: np.ndarray, m: np.ndarray) -> np.ndarray:
        tau, q = self.eigenvalues, self.q
        for _ in range(60):
            frac = tau[None, :] / (1.0 + tau[None, :] * m[:, None])
            g = z + 1.0 / m - q * np.mean(frac, axis=1)
            dg = -1.0 / m**2 + q * np.mean(frac**2, axis=1)
            delta = g / dg
            m = m - delta
            m = np.where(m.imag < 0, m.real + 1e-300j, m)
            if np.max(np.abs(delta)) < 1e-14 * np.max(np.abs(m)):
                break
        return m

    def stieltjes(self, z) -> np.ndarray:
        """Stieltjes transform ``m(z) = int dF(x)/(x - z)`` of the d x d law, for Im z > 0."""
        z = np.atleast_1d(np.asarray(z, complex))
        mu = self._newton(z, self._companion(z))
        return (mu + (1 - self.q) / z) / self.q

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        if "grid" in self._cache:
            return self._cache["grid"]
        tau = self.eigenvalues
        hi = float(tau.max()) * (1 + math.sqrt(self.q)) ** 2 * 1.05 + 1e-12
        positive = tau[tau > 0]
        lo = max(float(positive.min()) * 1e-3 * (1 - min(math.sqrt(self.q), 0.999)) ** 2, hi * 1e-14)
        # geometric points resolve a spread (e.g. power-law) spectrum near zero, linear ones the upper edges
        x = np.unique(np.concatenate([np.geomspace(lo, hi, self.grid // 2), np.linspace(0, hi, self.grid // 2 + 1)[1:]]))
        scale = float(tau.max())
        m = None
        # continuation towards the real axis: eta = 1e-2, 1e-3, ... times the scale
        for k in range(2, 10):
            z = x + 1j * scale * 10.0**-k
            m = self._companion(z) if m is None else self._newton(z, m)
        eta = scale * 1e-9
        dens = ((m + (1 - self.q) / (x + 1j * eta)) / self.q).imag / math.pi
        # remove the atom at zero, which the small imaginary part smears into a Lorentzian
        dens = np.maximum(dens - self.atom * eta / (math.pi * (x * x + eta * eta)), 0.0)
        self._cache["grid"] = (x, dens)
        return x, dens

    def density(self, x) -> np.ndarray:
        gx, gd = self._grid()
        return np.interp(np.asarray(x, float), gx, gd, left=0.0, right=0.0)

    def expect(self, f: Callable[[np.ndarray], np.ndarray]) -> float:
        r""":math:`\int f\,dF` (continuous part on the grid, renormalised to mass ``1 - atom``, plus the atom)."""
        x, dens = self._grid()
        mass = integrate.trapezoid(dens, x)
        cont = integrate.trapezoid(f(x) * dens, x) * ((1 - self.atom) / mass if mass > 0 else 0.0)
        return float(cont + (self.atom * float(f(np.asarray(0.0))) if self.atom > 0 else 0.0))
