r"""Expectations over training sets: exact Wishart moments, Monte Carlo over sets, and the
proportional (Marchenko–Pastur) limit.

Setting: N training points drawn i.i.d. from :math:`\mathcal N(\mu, \Sigma)` in d dimensions; the fitted
Gaussian :math:`\mathcal N(\hat\mu, \hat\Sigma)` has the 1/N covariance.  With the mean estimated
:math:`N\hat\Sigma \sim W_d(N-1, \Sigma)`; with the mean known (:math:`\hat\mu = \mu`)
:math:`N\hat\Sigma \sim W_d(N, \Sigma)`.  In both cases :math:`A = \Sigma^{-1/2}\hat\Sigma\Sigma^{-1/2} = W/N`,
:math:`W \sim W_d(n, I)`, does not depend on Σ, so every expected KL below is distribution-free
(Merger & Goldt 2025: "independent of the specifics of the data distribution").
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.special import digamma

from ._progress import Progress
from ._validation import RNGLike, as_positive_int, as_rng
from .gaussian import Gaussian, Infinite

__all__ = ["expected_kl", "expected_kl_series", "expected_kl_convolutional", "expected_log_det", "monte_carlo_over_training_sets", "run_jobs",
           "spawn_seeds", "wishart", "sample_fitted"]

DIRECTIONS = ("model_to_data", "data_to_model")
MEANS = ("estimated", "known")


def _check(d, N, direction, mean) -> tuple[int, int, int]:
    d = as_positive_int(d, "d")
    N = as_positive_int(N, "N")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if mean not in MEANS:
        raise ValueError(f"mean must be one of {MEANS}, got {mean!r}")
    n = N - 1 if mean == "estimated" else N
    return d, N, n


_BERNOULLI_TERMS = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12)


def _digamma_minus_log(y: np.ndarray) -> np.ndarray:
    """``psi(y) - log(y)`` without cancellation: the asymptotic series for y >= 10 (error < 1e-17)."""
    y = np.asarray(y, float)
    out = np.empty_like(y)
    small = y < 10
    out[small] = digamma(y[small]) - np.log(y[small])
    yl = y[~small]
    inv2 = 1.0 / (yl * yl)
    acc = np.zeros_like(yl)
    power = inv2
    for c in _BERNOULLI_TERMS:
        acc += c * power
        power = power * inv2
    out[~small] = -0.5 / yl - acc
    return out


def expected_log_det(d: int, n: int, N: int) -> float:
    r""":math:`\mathbb E\log\det(W/N)` for :math:`W\sim W_d(n, I)`:
    :math:`\sum_{i=1}^d \psi\big(\tfrac{n-i+1}{2}\big) + d\log(2/N)` (``-inf`` when n < d).

    Evaluated as :math:`\sum_i [\psi(y_i) - \log y_i] + \sum_i \log(2y_i/N)`, :math:`y_i = (n-i+1)/2`, so
    nothing cancels at large N (the sum is O(d^2/N) while each term is O(log N)); with
    ``k_i = n - N + 1 - i`` (a small integer) the second sum is :math:`\sum_i \log1p(k_i/N)`, so any
    Python integer N (``10**18``, ``2**63`` and beyond) is exact to a few ulp (checked against 50-digit
    mpmath in the tests).
    """
    d, n, N = int(d), int(n), int(N)
    if n < d:
        return -math.inf
    k = np.array([n - N + 1 - i for i in range(1, d + 1)], dtype=float)  # small integers, exact in float
    y = (float(N) + k) / 2.0
    return float(np.sum(_digamma_minus_log(y)) + np.sum(np.log1p(k / float(N))))


def expected_kl(d: int, N: int, direction: str = "model_to_data", mean: str = "estimated") -> float:
    r"""Exact expectation over training sets of the KL between the data and the fitted Gaussian.

    ``direction="model_to_data"``: :math:`\mathbb E\,\mathrm{KL}(\mathcal N(\hat\mu,\hat\Sigma)\|\mathcal N(\mu,\Sigma))
    = \tfrac12[\tfrac{nd}{N} - d + \tfrac{d}{N}[\text{est.}] - \mathbb E\log\det A]`, finite for n >= d.

    ``direction="data_to_model"``: :math:`\mathbb E\,\mathrm{KL}(\mathcal N(\mu,\Sigma)\|\mathcal N(\hat\mu,\hat\Sigma))
    = \tfrac12[\tfrac{Nd}{n-d-1} - d + \tfrac{d}{n-d-1}[\text{est.}] + \mathbb E\log\det A]`, finite for
    n > d + 1 (:math:`\mathbb E A^{-1} = N I/(n-d-1)`, inverse-Wishart mean; :math:`\hat\mu\perp\hat\Sigma`).

    Here n = N - 1 (``mean="estimated"``) or N (``"known"``) and
    :math:`\mathbb E\log\det A = \sum_{i\le d}\psi(\tfrac{n-i+1}{2}) + d\log\tfrac2N`
    (:func:`expected_log_det`).  Both are evaluated without cancellation, so the relative error is a
    few ulp for every N, however large (``10**18``, ``2**63``; checked against 50-digit mpmath).  Where the
    expectation is infinite an :class:`~lindiff.Infinite` says why.  Both directions approach
    ``d(d+3)/(4N)`` (estimated mean) or ``d(d+1)/(4N)`` (known mean); see :func:`expected_kl_series`.

    Examples
    --------
    >>> round(expected_kl(20, 60), 4)
    2.1987
    >>> expected_kl(20, 21, "data_to_model")
    Infinite('E KL(data || model) is infinite for N <= d + 2 = 22 (mean estimated): E tr(A^{-1}) diverges')
    """
    d, N, n = _check(d, N, direction, mean)
    est = mean == "estimated"
    label = "estimated" if est else "known"
    if direction == "model_to_data":
        if n < d:
            need = d + 1 if est else d
            return Infinite(f"the fitted covariance is singular for N < {need} (mean {label}): KL(model || data) = inf")
        # n d / N - d + d/N [est.] is exactly 0 for both mean conventions
        value = -0.5 * expected_log_det(d, n, N)
    else:
        if n <= d + 1:
            need = d + 2 if est else d + 1
            return Infinite(f"E KL(data || model) is infinite for N <= d + {need - d} = {need} (mean {label}): "
                            "E tr(A^{-1}) diverges")
        # N d/(n-d-1) - d + d/(n-d-1) [est.] = d (N - n + d + 1 + [est.]) / (n - d - 1), a ratio of exact
        # integers: forming it as a difference of two O(d) floats loses everything at N ~ 1e16 and beyond
        leading = d * (N - n + d + 1 + (1 if est else 0)) / (n - d - 1)
        value = 0.5 * (leading + expected_log_det(d, n, N))
    return float(value)


def frequency_classes(grid) -> tuple[int, int]:
    """``(self_conjugate, pairs)``: the number of frequencies with ``k = -k`` (zero or Nyquist on every
    axis, ``2^(number of even axes)`` of them, the zero frequency included) and of pairs ``{k, -k}``."""
    from ._fourier import as_grid

    grid = as_grid(grid)
    selfconj = 2 ** sum(1 for n in grid if n % 2 == 0)
    return selfconj, (math.prod(grid) - selfconj) // 2


def expected_kl_convolutional(grid, N: int, direction: str = "model_to_data", mean: str = "estimated") -> float:
    r"""Exact expectation over training sets of the KL between a stationary field and the field fitted by the
    full-support convolutional denoiser (:meth:`~lindiff.LinearDenoiser.fit_convolutional`).

    Data: N images from ``Gaussian.stationary(p, mu)`` (constant mean) on ``grid``.  The fitted field has the
    periodogram average :math:`\bar P(k)` as spectrum and the grand mean as mean.  In the Hartley basis the
    two coefficients of a pair of frequencies :math:`\{k, -k\}` are independent :math:`\mathcal N(0, p_k)` and
    both get :math:`\bar P(k) = \frac{1}{2N}\sum_i (h_{ik}^2 + h_{i,-k}^2)`, so
    :math:`\bar P(k)/p_k \sim \chi^2_{2N}/(2N)`: shift-averaging pools the pair and the N images.  A
    self-conjugate frequency (zero or Nyquist on every axis) has :math:`\chi^2_{N}/N`; the zero frequency
    with the mean estimated :math:`\chi^2_{N-1}/N` plus the mean's error.  Per class, with
    :math:`\mathbb E\log(\chi^2_\nu/c) = \psi(\nu/2) + \log(2/c)` and
    :math:`\mathbb E[c/\chi^2_\nu] = c/(\nu - 2)`:

    ===================  ================================================  ====================================================
    class (count)        model_to_data                                     data_to_model
    ===================  ================================================  ====================================================
    pair                 :math:`-[\psi(N) - \log N]`                       :math:`\frac{1}{N-1} + \psi(N) - \log N`
    self-conjugate       :math:`-\frac12[\psi(\frac N2) - \log\frac N2]`   :math:`\frac12[\frac{2}{N-2} + \psi(\frac N2) - \log\frac N2]`
    zero freq., est.     :math:`-\frac12[\psi(\frac{N-1}2) + \log\frac2N]`  :math:`\frac12[\frac{4}{N-3} + \psi(\frac{N-1}2) + \log\frac2N]`
    ===================  ================================================  ====================================================

    (the zero frequency with the mean known is a self-conjugate frequency).  Like :func:`expected_kl` it does
    not depend on the spectrum.  At large N both directions are :math:`(d + s + 2)/(4N) + O(N^{-2})` with
    the mean estimated and :math:`(d + s)/(4N)` with it known, ``s`` the number of self-conjugate
    frequencies (:func:`frequency_classes`) — about d times less than the dense fit's :math:`d(d + 3)/(4N)`
    — and the expectation is finite from N = 2 (model to data) or N = 4 (data to model) on, for any d.  Each term is evaluated without cancellation (``psi(y) - log(y)`` by its asymptotic series).
    Derived in ``derivations/periodogram_kl.py``.

    Examples
    --------
    >>> round(expected_kl_convolutional((8, 8), 10), 5)
    1.79024
    >>> expected_kl_convolutional((8, 8), 3, "data_to_model")
    Infinite('E KL(data || model) of the convolutional fit is infinite for N <= 3 (mean estimated): E 1/chi^2_{N-1} diverges at the zero frequency')
    """
    from ._fourier import as_grid

    grid = as_grid(grid)
    N = as_positive_int(N, "N")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if mean not in MEANS:
        raise ValueError(f"mean must be one of {MEANS}, got {mean!r}")
    selfconj, pairs = frequency_classes(grid)
    est = mean == "estimated"
    half = selfconj - (1 if est else 0)  # self-conjugate frequencies with chi^2_N / N
    Nf = float(N)

    def dml(y: float) -> float:
        return float(_digamma_minus_log(np.array([y]))[0])

    if direction == "model_to_data":
        if est and N < 2:
            return Infinite("the fitted field is singular for N < 2 (mean estimated): its zero frequency has no "
                            "variance, KL(model || data) = inf")
        value = pairs * -dml(Nf) + half * -0.5 * dml(Nf / 2)
        if est:  # psi((N-1)/2) + log(2/N) = [psi(y) - log y] + log((N-1)/N), y = (N-1)/2
            value += -0.5 * (dml((Nf - 1) / 2) + math.log1p(-1.0 / Nf))
        return float(value)
    # the zero frequency (self-conjugate) is always there: E 1/chi^2_nu is finite for nu > 2
    need, dof, where = (4, "N-1", "the zero frequency") if est else (3, "N", "the self-conjugate frequencies")
    if N < need:
        return Infinite(f"E KL(data || model) of the convolutional fit is infinite for N <= {need - 1} (mean "
                        f"{mean}): E 1/chi^2_{{{dof}}} diverges at {where}")
    value = pairs * (1.0 / (Nf - 1) + dml(Nf)) if pairs else 0.0
    if half:
        value += half * 0.5 * (2.0 / (Nf - 2) + dml(Nf / 2))
    if est:
        value += 0.5 * (4.0 / (Nf - 3) + dml((Nf - 1) / 2) + math.log1p(-1.0 / Nf))
    return float(value)


# Coefficients of 1/N and 1/N^2 in the large-N expansion, derived in derivations/wishart.py.
_SERIES = {
    ("model_to_data", "estimated"): (lambda d: d * (d + 3) / 4, lambda d: d * (2 * d * d + 9 * d + 11) / 24),
    ("data_to_model", "estimated"): (lambda d: d * (d + 3) / 4, lambda d: d * (10 * d * d + 51 * d + 61) / 24),
    ("model_to_data", "known"): (lambda d: d * (d + 1) / 4, lambda d: d * (2 * d * d + 3 * d - 1) / 24),
    ("data_to_model", "known"): (lambda d: d * (d + 1) / 4, lambda d: d * (10 * d * d + 21 * d + 13) / 24),
}


def expected_kl_series(d: int, N: int, direction: str = "model_to_data", mean: str = "estimated",
                       order: int = 1) -> float:
    r"""Large-N expansion of :func:`expected_kl`: ``c1/N`` (``order=1``) or ``c1/N + c2/N^2`` (``order=2``).

    ``c1 = d(d+3)/4`` with the mean estimated and ``d(d+1)/4`` with it known (both directions): per
    dimension this is the ``d/(4N)`` law of Merger & Goldt at large d.  ``c2`` differs by direction:
    model-to-data ``d(2d^2+9d+11)/24`` (est.) / ``d(2d^2+3d-1)/24`` (known); data-to-model
    ``d(10d^2+51d+61)/24`` / ``d(10d^2+21d+13)/24`` (``derivations/wishart.py``).
    """
    d, N, _ = _check(d, N, direction, mean)
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    c1, c2 = _SERIES[(direction, mean)]
    return c1(d) / N + (c2(d) / N**2 if order == 2 else 0.0)


# ------------------------------------------------------------------------------------------------
def spawn_seeds(seed, count: int) -> list[np.random.SeedSequence]:
    """Independent child seeds, one per task, so results do not depend on the executor."""
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return root.spawn(count)


@dataclass(frozen=True)
class _Task:
    fn: Callable[..., dict]
    args: tuple
    seed: np.random.SeedSequence

    def __call__(self) -> dict:
        return self.fn(*self.args, rng=np.random.default_rng(self.seed))


def monte_carlo_over_training_sets(fn: Callable[..., dict], tasks: Sequence[tuple], repeats: int, seed=None,
                                   executor: Executor | None = None, progress: bool | None = None,
                                   label: str = "training sets") -> list[list[dict]]:
    """Run ``fn(*args, rng=Generator)`` ``repeats`` times for each ``args`` in ``tasks``.

    Each (task, repeat) gets its own child ``SeedSequence`` spawned from ``seed`` in a fixed order, so
    the results are identical whatever the executor (in-process, threads, processes, dask or ray's
    ``concurrent.futures`` adapters).  ``fn`` must be picklable for process-based executors.
    Returns ``results[i][r]``, the dict returned for task i, repeat r.
    """
    repeats = as_positive_int(repeats, "repeats")
    seeds = spawn_seeds(seed, len(tasks) * repeats)
    jobs = [_Task(fn, tuple(args), seeds[i * repeats + r]) for i, args in enumerate(tasks) for r in range(repeats)]
    out = run_jobs(jobs, executor, progress, label)
    return [out[i * repeats : (i + 1) * repeats] for i in range(len(tasks))]


def run_jobs(jobs: Sequence[Callable[[], Any]], executor: Executor | None = None, progress: bool | None = None,
             label: str = "jobs") -> list[Any]:
    """``[job() for job in jobs]``, in-process or on any ``concurrent.futures`` executor (process pools,
    ``dask.distributed.Client.get_executor()``), results in the order of ``jobs``.

    Jobs must be picklable for process-based executors (module-level functions, ``functools.partial``
    of them, or dataclasses such as ``_Task``), and must carry their own randomness (a seed), so the
    result does not depend on where or in which order they run.
    """
    out: list[Any] = [None] * len(jobs)
    with Progress(len(jobs), label, progress) as bar:
        if executor is None:
            for k, job in enumerate(jobs):
                out[k] = job()
                bar.update()
        else:
            from concurrent.futures import as_completed

            futures = {executor.submit(job): k for k, job in enumerate(jobs)}
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
                bar.update()
    return out


def wishart(n: int, d: int, rng: RNGLike = None) -> np.ndarray:
    r"""One draw of :math:`W_d(n, I)`, the scatter :math:`\sum_{i\le n} z_iz_i^T` of n standard normal vectors.

    For :math:`n \ge d` by the Bartlett decomposition :math:`W = LL^T`, L lower triangular with
    :math:`\sqrt{\chi^2_{n-i}}` on the diagonal (i = 0, ..., d-1) and standard normals below it: d^2 draws and
    one d x d product, whatever n.  Singular for n < d: then the explicit sum of n outer products.  ``n = 0``
    gives the zero matrix.  (Hand-written rather than ``scipy.stats.wishart``, which requires n >= d and
    a full scale matrix.)

    Examples
    --------
    >>> W = wishart(2, 4, rng=0)   # two outer products in four dimensions: rank 2
    >>> W.shape, int(np.linalg.matrix_rank(W))
    ((4, 4), 2)
    """
    n = as_positive_int(n, "n", minimum=0)
    d = as_positive_int(d, "d")
    gen = as_rng(rng)
    if n == 0:
        return np.zeros((d, d))
    if n < d:
        G = gen.standard_normal((n, d))
        return G.T @ G
    L = np.tril(gen.standard_normal((d, d)), -1)
    L[np.diag_indices(d)] = np.sqrt(gen.chisquare(n - np.arange(d)))
    return L @ L.T


def sample_fitted(p0: Gaussian, N: int, mean: str = "estimated", *, rng: RNGLike = None) -> Gaussian:
    r"""The fitted Gaussian of N independent draws from ``p0``, drawn from its law without the draws.

    Same distribution as ``Gaussian.fit(p0.sample(N, rng))`` (mean and 1/N covariance; with
    ``mean="known"`` the covariance about ``p0.mean`` and the mean ``p0.mean``), from the sufficient
    statistics: :math:`\hat\mu \sim \mathcal N(\mu, \Sigma/N)` independent of
    :math:`N\hat\Sigma = \Sigma^{1/2} W \Sigma^{1/2}`, :math:`W \sim W_d(n, I)` (:func:`wishart`), n = N - 1
    (N with the mean known).  Costs O(d^2) draws and a d x d product instead of N d draws and an N d^2 product;
    the random stream is not that of the points.  A ``p0`` on an implicit Fourier basis
    (:meth:`Gaussian.stationary`) has no explicit root: its points are drawn and fitted.

    Examples
    --------
    >>> p0 = Gaussian.from_spectrum([2.0, 1.0, 0.5])
    >>> fitted = sample_fitted(p0, 2, rng=0)   # N = 2 points: the fitted covariance has rank N - 1
    >>> fitted.rank
    1
    """
    if not isinstance(p0, Gaussian):
        raise TypeError(f"p0 must be a lindiff.Gaussian, got {type(p0).__name__}")
    N = as_positive_int(N, "N")
    if mean not in MEANS:
        raise ValueError(f"mean must be one of {MEANS}, got {mean!r}")
    gen = as_rng(rng)
    from . import _fourier
    from .gaussian import _is_identity

    U, lam = p0.eigenvectors, p0.eigenvalues
    if _fourier.is_implicit(U):
        X = p0.sample(N, gen)
        if mean == "estimated":
            return Gaussian.fit(X)
        centred = X - p0.mean
        return Gaussian(p0.mean, centred.T @ centred / N)
    root = np.sqrt(lam)
    diagonal = _is_identity(U)
    W = wishart(N - 1 if mean == "estimated" else N, p0.dim, gen)
    if diagonal:  # diagonal covariance: the root scales rows and columns, no product
        cov = (root[:, None] * W * root) / N
    else:
        R = U * root
        cov = R @ (W @ R.T) / N
    centre = p0.mean
    if mean == "estimated":
        z = root * gen.standard_normal(p0.dim) / math.sqrt(N)
        centre = centre + (z if diagonal else U @ z)
    return Gaussian(centre, cov)


def fitted_gaussian_kl(p0: Gaussian, N: int, mean: str = "estimated", *, rng: np.random.Generator) -> dict:
    """One training set: KL between the data and the fitted Gaussian in both directions (the fitted
    Gaussian drawn from its law, :func:`sample_fitted`)."""
    fitted = sample_fitted(p0, N, mean, rng=rng)
    from .gaussian import kl

    return {"model_to_data": kl(fitted, p0), "data_to_model": kl(p0, fitted)}
