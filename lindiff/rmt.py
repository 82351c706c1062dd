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

_EPS = float(np.finfo(float).eps)


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
        r"""Stieltjes transform :math:`m(z) = \int dF(x)/(x - z)` of the d x d law.

        ``z`` must lie in the upper half-plane (Im z > 0) or on the real axis left of the support
        (z < 0, where m is real).  Each point is reached by continuation along
        :math:`\operatorname{Re} z + i\eta`, from :math:`\eta` far above the spectrum's scale (where
        :math:`m \approx -1/z`) down to :math:`\operatorname{Im} z`, with Newton's method at every step
        and the step shortened whenever Newton leaves the upper half-plane or fails to converge (close to
        the support a plain fixed-point iteration stalls and an unguided Newton step can jump to the wrong
        root).  The equation solved is the one whose law has no atom at zero, so nothing cancels as
        z -> 0: for q < 1 the d x d equation
        :math:`m = \int dH(\tau)/(\tau(1 - q - qzm) - z)`, for q >= 1 the companion equation above.

        >>> law = Silverstein([1.0], 0.5)  # Marchenko–Pastur with q = 1/2: m(-1) = sqrt(17)/2 - 3/2
        >>> abs(complex(law.stieltjes(-1.0)[0]) - (17 ** 0.5 / 2 - 1.5)) < 1e-12
        True
        """
        raw = np.atleast_1d(np.asarray(z))
        if raw.dtype.kind not in "iufc" or raw.ndim != 1:
            raise ValueError(f"z must be a complex number or a 1-D array of them, got {z!r}")
        z = raw.astype(complex)
        if not np.all(np.isfinite(z)):
            raise ValueError("z contains NaN or infinite entries; finite points are required")
        ok = (z.imag > 0) | ((z.imag == 0) & (z.real < 0))
        if not np.all(ok):
            raise ValueError("z must lie in the upper half-plane (Im z > 0) or on the negative real axis, where the "
                             f"transform is defined off the support; got {z[~ok][0]!r}")
        out = np.array([self._continue(complex(v)) for v in z])
        if self.q >= 1:
            out = (out + (1 - self.q) / z) / self.q  # companion -> d x d: the atom term dominates, no cancellation
        return out

    def _continue(self, z: complex) -> complex:
        """The transform solved for (see :meth:`stieltjes`) at one point, by guarded continuation in Im z."""
        top = max(float(self.eigenvalues.max()) * (1 + math.sqrt(self.q)) ** 2, abs(z))  # beyond the support's edge
        eta = max(z.imag, 100.0 * top)
        m = self._newton_point(complex(z.real, eta), -1.0 / complex(z.real, eta))
        if m is None:  # pragma: no cover - far from the spectrum m = -1/z + O(1/z^2): Newton converges
            raise ValueError(f"the Silverstein equation did not converge at z = {z!r}")
        ratio = 0.1
        while eta > z.imag:
            # the negative real axis is reached with a final Newton solve at Im z = 0 (m is real there)
            trial = z.imag if eta * ratio < 1e-15 * top else max(eta * ratio, z.imag)
            new = self._newton_point(complex(z.real, trial), m)
            if new is not None:
                eta, m = trial, new
                ratio = max(ratio * ratio, 1e-3)
                continue
            ratio = math.sqrt(ratio)
            if ratio > 1 - 1e-6:
                raise ValueError(f"the Silverstein equation could not be continued to z = {z!r} (it lies on or too close "
                                 "to the support for float64); move z further from the support")
        return m

    def _newton_point(self, z: complex, m: complex) -> complex | None:
        """Newton's method from ``m``; None unless it converges and stays in the closed upper half-plane."""
        tau, q = self.eigenvalues, self.q
        with np.errstate(all="ignore"):  # a diverging step is detected below and retried closer
            for _ in range(60):
                if q >= 1:  # companion: z + 1/m - q E[tau / (1 + tau m)] = 0
                    frac = tau / (1.0 + tau * m)
                    g = z + 1.0 / m - q * np.mean(frac)
                    dg = -1.0 / m**2 + q * np.mean(frac**2)
                    noise = abs(z) + abs(1.0 / m) + q * float(np.mean(np.abs(frac)))
                else:  # d x d: m - E[1 / (tau (1 - q - q z m) - z)] = 0
                    inv = 1.0 / (tau * (1.0 - q - q * z * m) - z)
                    g = m - np.mean(inv)
                    dg = 1.0 - q * z * np.mean(tau * inv**2)
                    noise = abs(m) + float(np.mean(np.abs(inv)))
                if abs(g) <= 8 * _EPS * noise and math.isfinite(abs(g)):
                    # the residual is at the rounding level of its own terms: m is as accurate as float64 allows
                    # (near an edge of the support the equation is ill-conditioned and Newton's steps stall here)
                    return complex(m.real, max(m.imag, 0.0) if z.imag > 0 else 0.0)
                delta = complex(g / dg)
                new = m - delta
                if not (math.isfinite(new.real) and math.isfinite(new.imag)) or new.imag < -1e-12 * abs(new):
                    return None
                m = new
                if abs(delta) <= 1e-14 * abs(m):
                    return complex(m.real, max(m.imag, 0.0) if z.imag > 0 else 0.0)
        return None

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
