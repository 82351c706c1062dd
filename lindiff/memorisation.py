r"""Memorisation: copies of training points, and the times at which the exact empirical score collapses.

* :func:`memorisation_fraction` — share of samples whose nearest training point is much closer than
  the second nearest (ratio below 1/3, the usual criterion).
* :func:`collapse_time` — Biroli, Bonnaire, de Bortoli & Mézard (2024): the noised empirical
  distribution of N points stops resembling the noised population when the population's excess entropy
  per dimension drops to :math:`\log N / d`.  For Gaussian data (derived for lindiff; the paper's
  normalisation is *reconstructed*, see ``docs/theory.md#collapse-time``)

  .. math:: f(t) = \frac{1}{2d}\sum_i \log\Big(1 + \frac{\alpha_t^2\lambda_i}{\sigma_t^2}\Big) = \frac{\log N}{d},

  which for the OU process and :math:`\Sigma = s I` gives :math:`t_C = \tfrac12\log(1 + s/(N^{2/d} - 1))`.
* :func:`speciation_time` — when the top mode's signal :math:`\alpha_t^2\lambda_{max}` equals the unit
  noise scale: :math:`t_S = \tfrac12\log\lambda_{max}` for the OU process (Biroli et al.).
* :func:`memorisation_table` — Monte Carlo: samples of the exact empirical score and of the fitted
  linear denoiser at the same N, d, against the stopping time ``t_min``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from ._validation import RNGLike, as_finite_array, as_positive_float, as_positive_int, as_rng, as_training_set
from .gaussian import Gaussian
from .processes import Process
from .tables import Column, Table

__all__ = ["nearest_ratio", "memorisation_fraction", "collapse_time", "speciation_time", "memorisation_table"]


def nearest_ratio(samples, X) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each sample to its nearest training point, and nearest / second-nearest ratio."""
    X = as_training_set(X, "X", min_points=2)
    S = as_finite_array(samples, "samples", ndim=2)
    if S.shape[1] != X.shape[1]:
        raise ValueError(f"samples have dimension {S.shape[1]} but X has {X.shape[1]}")
    d2 = (np.sum(S**2, axis=1)[:, None] - 2 * S @ X.T + np.sum(X**2, axis=1)[None, :])
    d2 = np.maximum(d2, 0.0)
    part = np.sort(d2, axis=1)[:, :2]
    first, second = np.sqrt(part[:, 0]), np.sqrt(part[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(second > 0, first / np.where(second > 0, second, 1.0), 0.0)
    return first, ratio


def memorisation_fraction(samples, X, threshold: float = 1.0 / 3.0) -> float:
    """Fraction of samples that copy a training point: nearest / second-nearest distance < threshold."""
    threshold = as_positive_float(threshold, "threshold")
    _, ratio = nearest_ratio(samples, X)
    return float(np.mean(ratio < threshold))


def _snr(process: Process, t):
    a2 = np.asarray(process.alpha(t), float) ** 2
    s2 = np.asarray(process.sigma(t), float) ** 2
    return a2 / s2


def _spectrum(eigenvalues) -> np.ndarray:
    lam = as_finite_array(eigenvalues, "eigenvalues", ndim=1)
    if lam.size == 0 or np.any(lam < 0):
        raise ValueError(f"eigenvalues must be a non-empty 1-D array of non-negative variances, got {eigenvalues!r}")
    return lam


def collapse_time(eigenvalues, N: int, process: Process) -> float:
    r"""Collapse time t_C of the exact empirical score for Gaussian data (see module docstring).

    Solves :math:`\frac{1}{2d}\sum_i\log(1 + \mathrm{SNR}_t\lambda_i) = \log N / d` on the process's time
    axis (continuous processes only).  The left side decreases in t and, when some :math:`\lambda_i > 0`,
    diverges as t -> 0, so the root is unique; it is found in :math:`\log t` (it may lie many decades
    below T).  ``T`` is returned when the condition still holds at the final time.  When every
    eigenvalue is zero the left side is 0 at all times: the N training points coincide, the empirical
    law *is* the population at every t > 0 and nothing collapses, so ``0.0`` is returned (the limit of
    t_C as the eigenvalues go to zero).  A root below the float64 resolution of the time axis (tiny
    eigenvalues and a large N) raises a ``ValueError``.

    >>> from lindiff import OU
    >>> round(collapse_time([1.0] * 10, 1000, OU(10.0)), 6)  # 0.5 log(1 + 1/(N^(2/d) - 1))
    0.144634
    >>> collapse_time([0.0, 0.0], 6, OU())
    0.0
    """
    lam = _spectrum(eigenvalues)
    N = as_positive_int(N, "N", minimum=2)
    if process.discrete:
        raise ValueError("collapse_time needs a continuous process (VP, OU)")
    if not np.any(lam > 0):
        return 0.0
    d = lam.size
    target = math.log(N) / d

    def excess(log_t):
        with np.errstate(over="ignore"):  # SNR * lambda beyond float64: log1p(inf) = inf, above the target
            return 0.5 * float(np.mean(np.log1p(_snr(process, math.exp(log_t)) * lam))) - target

    hi = math.log(process.T)
    if excess(hi) > 0:
        return float(process.T)
    # walk down in decades until the condition holds (it does as t -> 0, where SNR -> inf)
    lo = hi
    smallest = math.log(np.finfo(float).tiny) + 1.0
    while excess(lo) <= 0:
        if lo <= smallest:
            raise ValueError(
                f"the collapse time for N = {N} lies below the float64 range of t (the eigenvalues, largest "
                f"{float(lam.max()):.3g}, are too small for this N): no time representable in float64 solves the criterion")
        lo = max(lo - 12 * math.log(10.0), smallest)
    return float(math.exp(brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)))


def speciation_time(eigenvalues, process: Process) -> float:
    r"""Speciation time: :math:`\alpha_t^2\lambda_{max} = 1` (``0.5 log lambda_max`` for the OU process);
    0.0 when :math:`\lambda_{max} \le 1`."""
    lam = _spectrum(eigenvalues)
    if process.discrete:
        raise ValueError("speciation_time needs a continuous process (VP, OU)")
    top = float(lam.max())
    if top <= 1.0:
        return 0.0

    def f(t):
        return float(process.alpha(t)) ** 2 * top - 1.0

    if f(process.T) > 0:
        return float(process.T)
    return float(brentq(f, 0.0, process.T, xtol=1e-14, rtol=1e-13))


def memorisation_table(p0: Gaussian, N: int, process: Process, t_mins, sampler: str = "euler_maruyama",
                       steps: int = 200, n: int = 500, rng: RNGLike = None, progress: bool | None = None) -> Table:
    """Empirical score vs fitted linear denoiser on one training set, against the stopping time.

    Columns: copy fraction and nearest-training-point distance (relative to the median distance
    between training points) for samples of each model, plus the collapse and speciation times.
    """
    from . import mc
    from .scores import EmpiricalScore, LinearDenoiser

    gen = as_rng(rng)
    X = p0.sample(as_positive_int(N, "N", minimum=2), gen)
    pair = np.sqrt(np.maximum(np.sum(X**2, 1)[:, None] - 2 * X @ X.T + np.sum(X**2, 1)[None, :], 0))
    typical = float(np.median(pair[np.triu_indices(N, 1)]))
    if typical == 0.0:
        raise ValueError(f"p0 (rank {p0.rank}) gives training points that coincide (median pair distance 0): the "
                         "nearest distance relative to their spread is undefined; use a data law with variance")
    emp, lin = EmpiricalScore(X, process), LinearDenoiser.fit(X, process)
    rows = []
    for t_min in t_mins:
        row = [float(t_min)]
        for model in (emp, lin):
            x = mc.sample(model, process, sampler, n, gen, steps=steps, t_min=float(t_min), progress=progress)
            first, ratio = nearest_ratio(x, X)
            row += [float(np.mean(ratio < 1 / 3)), float(np.median(first)) / typical]
        rows.append(row)
    tc = collapse_time(p0.eigenvalues, N, process)
    ts = speciation_time(p0.eigenvalues, process)
    cols = [Column("t_min"), Column("copies (empirical)", note="fraction with nearest/second-nearest < 1/3"),
            Column("nearest dist (empirical)", "rel.", "median distance to the nearest training point / median pair distance"),
            Column("copies (linear)"), Column("nearest dist (linear)", "rel.")]
    caption = (f"Memorisation: N = {N}, d = {p0.dim}, {sampler} with {steps} steps, {n} samples per model; "
               f"collapse time t_C = {tc:.4g}, speciation time t_S = {ts:.4g}")
    return Table(caption, cols, rows, [f"t_C from the Gaussian excess-entropy criterion (Biroli et al. 2024, normalisation reconstructed)"])
