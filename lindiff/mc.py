r"""Monte Carlo twins: the slow, obvious simulation of each closed form in lindiff.

Every estimate returns an :class:`Estimate` (mean, standard error, sample count) so tests compare
exact and simulated values by a z-score from the Monte Carlo error, never by a hand-picked tolerance.

* :func:`sample` — run a sampler numerically on n points for *any* score model (empirical included).
* :func:`moment_z_scores` — z-scores of sample mean and covariance against an exact law.
* :func:`dsm_loss` — noise-draw estimate of the DSM loss of any score model.
* :func:`fit_linear` — least squares of eps on x_t from sampled pairs (twin of ``LinearDenoiser.fit``).
* :func:`fit_convolutional` — least squares of a local convolution on sampled pairs (twin of the local kernel fit).
* :func:`gradient_descent` — explicit gradient descent on the exact training loss (twin of ``train_time``).
* :func:`kl` — :math:`\mathbb E_p[\log p - \log q]` from samples (twin of ``lindiff.kl``).
* :func:`score_finite_difference` — central differences of a model's ``logpdf`` (twin of ``score``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.integrate import solve_ivp

from . import _linalg
from ._progress import Progress
from ._validation import RNGLike, as_nonnegative_float, as_points, as_positive_int, as_rng, as_training_set
from .gaussian import Gaussian, Infinite
from .processes import Process
from ._program import run_points
from .samplers import _build
from .scores import EmpiricalScore, GaussianScore, ScoreModel

__all__ = ["Estimate", "sample", "moment_z_scores", "moment_p_values", "max_abs_z_threshold", "dsm_loss", "fit_linear",
           "fit_convolutional",
           "gradient_descent", "kl", "score_finite_difference", "batch_means"]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo mean with its standard error, from ``n >= 2`` draws.

    ``mean`` is an :class:`lindiff.Infinite` (with ``stderr = 0``) when the simulation proves the value
    infinite, e.g. :func:`kl` with a draw from p where q has no density.
    """

    mean: float
    stderr: float
    n: int

    def z(self, exact: float) -> float:
        """``(mean - exact) / stderr`` (0 when both agree exactly and the error is zero)."""
        if self.stderr == 0:
            return 0.0 if self.mean == exact else float(np.inf)
        return (self.mean - exact) / self.stderr

    def __float__(self) -> float:
        return float(self.mean)

    def __iter__(self):
        yield self.mean
        yield self.stderr


def _draws(n) -> int:
    """The number of Monte Carlo draws: at least two, since one draw has no standard error (an
    :class:`Estimate` without an error is not a Monte Carlo figure)."""
    n = as_positive_int(n, "n")
    if n < 2:
        raise ValueError(f"n must be an integer >= 2 (one draw gives no standard error for the estimate), got {n}")
    return n


def _estimate(values: np.ndarray, what: str = "a Monte Carlo value") -> Estimate:
    values = np.asarray(values, float)
    n = values.size
    with np.errstate(over="ignore", invalid="ignore"):
        mean, sd = float(values.mean()), float(values.std(ddof=1))
    if not (np.all(np.isfinite(values)) and np.isfinite(mean) and np.isfinite(sd)):
        raise ValueError(f"{what} exceeds the float64 range at some of the {n} draws; the Monte Carlo estimate "
                         "is not representable (rescale the problem)")
    return Estimate(mean, float(sd / np.sqrt(n)), n)


# ------------------------------------------------------------------------------------------------
def _initial_points(model: ScoreModel, process: Process, init, t_start: float, n: int, gen) -> np.ndarray:
    d = model.dim
    if isinstance(init, Gaussian):
        return init.sample(n, gen)
    if isinstance(init, str) and init == "standard":
        return gen.standard_normal((n, d))
    if isinstance(init, str) and init == "exact":
        a, s = float(process.alpha(t_start)), float(process.sigma(t_start))
        if isinstance(model, EmpiricalScore):
            idx = gen.integers(0, model.X.shape[0], n)
            return a * model.X[idx] + s * gen.standard_normal((n, d))
        data = getattr(model, "data", None)
        if data is None:
            raise ValueError("init='exact' needs the model's data distribution; pass init=Gaussian")
        return process.marginal(data, t_start).sample(n, gen)
    raise ValueError(f"init must be 'standard', 'exact' or a Gaussian, got {init!r}")


def sample(model: ScoreModel, process: Process, sampler: str, n: int, rng: RNGLike = None, steps: int | None = None,
           t_min: float = 0.0, init="standard", *, batch_size: int = 4096, progress: bool | None = None,
           sde_steps: int = 2000, rtol: float = 1e-8, **options) -> np.ndarray:
    r"""Run ``sampler`` numerically on ``n`` points for any score model; returns shape (n, d).

    The stepped samplers execute exactly the coefficients :func:`lindiff.sampling_law` propagates
    (one definition, two interpreters).  ``"ode"`` integrates the probability-flow ODE with an adaptive
    8th-order Runge–Kutta method (``rtol``); ``"sde"`` has no exact simulation for a general score and
    runs Euler–Maruyama on ``sde_steps`` uniform points (weak error O(1/sde_steps)).

    ``progress=True`` shows a bar on stderr (default: only on a terminal).
    """
    if not isinstance(model, ScoreModel):
        raise TypeError(f"model must be a lindiff score model, got {type(model).__name__}")
    n = as_positive_int(n, "n")
    batch_size = as_positive_int(batch_size, "batch_size")
    gen = as_rng(rng)
    if sampler == "sde":
        prog = _build(process, "euler_maruyama", sde_steps, t_min, {"grid": options.pop("grid", None)}, "sample")
    else:
        prog = _build(process, sampler, steps, t_min, options, "sample")
    out = np.empty((n, model.dim))
    batches = range(0, n, batch_size)
    work = len(batches) * max(len(prog.steps), 1)
    with Progress(work, f"mc.sample {sampler}", progress) as bar:
        for start in batches:
            m = min(batch_size, n - start)
            x = _initial_points(model, process, init, prog.t_start, m, gen)
            if sampler == "ode":
                x = _integrate_ode(model, prog, x, rtol)
                bar.update(1)
            else:
                x = run_points(model, prog, x, gen, on_step=lambda: bar.update(1))
            out[start : start + m] = x
    return out


def _integrate_ode(model: ScoreModel, prog, x: np.ndarray, rtol: float) -> np.ndarray:
    process = prog.process
    shape = x.shape

    def rhs(t, y):
        pts = y.reshape(shape)
        f, g2 = float(process.drift(t)), float(process.diffusion2(t))
        return (f * pts - 0.5 * g2 * np.atleast_2d(model.score(pts, t))).ravel()

    sol = solve_ivp(rhs, (prog.t_start, prog.t_end), x.ravel(), method="DOP853", rtol=rtol, atol=rtol * 1e-2)
    if not sol.success:
        raise RuntimeError(f"probability-flow ODE integration failed: {sol.message}")
    return sol.y[:, -1].reshape(shape)


# ------------------------------------------------------------------------------------------------
def moment_z_scores(samples: np.ndarray, law: Gaussian) -> np.ndarray:
    r"""z-scores of the sample mean and covariance of ``samples`` against the exact ``law``.

    Computed in the law's eigenbasis, where for Gaussian samples the sample mean's coordinates have
    variance :math:`\lambda_j / n` and the unbiased sample covariance's entries have variance
    :math:`(\lambda_j\lambda_k + \delta_{jk}\lambda_j^2)/(n-1)`.  Directions of zero variance must
    match to 1e-9 (relative) and give z = 0, or ``inf``.  Returns a flat array of ``d + d(d+1)/2``
    z-scores; see :func:`max_abs_z_threshold` for a calibrated bound on their maximum.
    """
    Y, lam, tol = _eigen_coordinates(samples, law, 3)
    n = Y.shape[0]
    mean = Y.mean(axis=0)
    cov = np.cov(Y, rowvar=False, ddof=1).reshape(law.dim, law.dim)
    mean_sd = np.sqrt(lam / n)
    outer = np.outer(lam, lam)
    cov_sd = np.sqrt((outer + np.diag(lam**2)) / (n - 1))
    iu = np.triu_indices(law.dim)
    diffs = np.concatenate([mean, (cov - np.diag(lam))[iu]])
    sds = np.concatenate([mean_sd, cov_sd[iu]])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sds > 0, diffs / np.where(sds > 0, sds, 1.0), np.where(np.abs(diffs) <= tol, 0.0, np.inf))
    return z


def _eigen_coordinates(samples, law: Gaussian, min_n: int):
    """Samples centred at the law's mean in its eigenbasis, its eigenvalues, and the tolerance within
    which zero-variance directions must agree (1e-9 relative to the law's own magnitude)."""
    X, _ = as_points(samples, law.dim, "samples")
    if X.shape[0] < min_n:
        raise ValueError(f"samples must hold at least {min_n} points to test the moments")
    lam = law.eigenvalues
    scale = max(float(lam.max(initial=0.0)), float(law.mean @ law.mean), 1.0)
    return (X - law.mean) @ law.eigenvectors, lam, 1e-9 * np.sqrt(scale)


def moment_p_values(samples: np.ndarray, law: Gaussian, *, mean_resolution: float = 0.0,
                    variance_resolution=None) -> np.ndarray:
    r"""Exact two-sided p-values of the sample moments of Gaussian ``samples`` under ``law``.

    In the law's eigenbasis the coordinates are independent under the null, so each statistic has an
    exact distribution: the sample mean :math:`\bar y_j\sqrt{n/\lambda_j}\sim\mathcal N(0,1)`, the sample
    variance :math:`(n-1)s_j^2/\lambda_j \sim\chi^2_{n-1}`, and for j < k the least-squares slope
    :math:`b` of :math:`y_k` on :math:`y_j` has :math:`(b - \beta)/\mathrm{se}(b) \sim t_{n-2}`
    (:math:`\beta = 0` under the null; this is the usual correlation t-test).

    A law computed in float64 is known only to a resolution: eigenvalues within
    ``lindiff._linalg.cutoff`` of zero are stored as 0 (the true variance lies in ``[0, cutoff]``), and
    a caller may widen the null further (``variance_resolution``: absolute, per eigendirection or one
    number; ``mean_resolution``: absolute, on every coordinate of the mean).  The null then holds a
    set of laws, :math:`|\mu_j| \le r_m`, :math:`|\Sigma_{jk} - \lambda_j\delta_{jk}| \le r_j`, and each
    p-value is the largest over that set (for the variance :math:`2\min(F_{\chi^2}(q/(\lambda_j - r_j)),
    1 - F_{\chi^2}(q/(\lambda_j + r_j)))`, for the mean and slope the statistic shrunk by the
    resolution), so ``P(p <= a) <= a`` for every law in the set: Bonferroni (reject when ``min p <
    alpha / count``) keeps its false-alarm bound alpha with no approximation.  Pairs in which a
    direction's variance may be zero carry no correlation test.
    """
    X, _ = as_points(samples, law.dim, "samples")
    n = X.shape[0]
    if n < 4:
        raise ValueError("samples must hold at least 4 points to test the moments")
    lam = law.eigenvalues
    d = law.dim
    Y = (X - law.mean) @ law.eigenvectors
    # the law's own zero threshold: an eigenvalue stored as 0 may be anything in [0, cutoff]
    floor = _linalg.cutoff(lam, getattr(law, "_scale", 0.0))
    res = np.full(d, floor) if variance_resolution is None else np.maximum(
        np.broadcast_to(np.asarray(variance_resolution, float), (d,)), floor)
    rm = float(mean_resolution)
    lo = np.maximum(lam - res, 0.0)
    hi = lam + res
    mean = Y.mean(axis=0)
    p = []
    for j in range(d):
        excess = max(abs(mean[j]) - rm, 0.0)
        # a direction with no variance at all (a degenerate law, no scale): any excess is a certain rejection
        z = excess * np.sqrt(n / hi[j]) if hi[j] > 0 else (0.0 if excess == 0 else np.inf)
        p.append(2 * stats.norm.sf(z))
    C = np.atleast_2d(np.cov(Y, rowvar=False, ddof=1))
    for j in range(d):
        q = (n - 1) * C[j, j]
        upper = stats.chi2.sf(q / hi[j], n - 1) if hi[j] > 0 else float(q == 0)
        lower = stats.chi2.cdf(q / lo[j], n - 1) if lo[j] > 0 else 1.0
        p.append(min(1.0, 2 * min(lower, upper)))
    for j in range(d):
        for k in range(j + 1, d):
            if lo[j] <= 0 or lo[k] <= 0:
                continue  # the direction may carry no variance: its correlation is not defined
            a, b = (j, k) if lam[j] >= lam[k] else (k, j)  # regress the smaller on the larger
            if C[a, a] <= 0:
                p.append(1.0)
                continue
            slope = C[a, b] / C[a, a]
            resid = max(C[b, b] - C[a, b] * slope, 0.0) * (n - 1) / (n - 2)
            se = np.sqrt(resid / ((n - 1) * C[a, a]))
            bound = max(res[a], res[b]) / lo[a]  # |true slope| <= |Sigma_ab| / Sigma_aa
            excess = max(abs(slope) - bound, 0.0)
            t = excess / se if se > 0 else (0.0 if excess == 0 else np.inf)
            p.append(2 * stats.t.sf(t, n - 2))
    return np.asarray(p, float)


def max_abs_z_threshold(count: int, false_alarm: float = 1e-4, dof: int | None = None) -> float:
    """Bonferroni bound: ``P(max |z_i| > threshold) <= false_alarm`` for ``count`` z-scores that are
    standard normal (or Student t with ``dof`` degrees of freedom, for batch-means estimates)."""
    count = as_positive_int(count, "count")
    if dof is None:
        return float(stats.norm.isf(false_alarm / (2 * count)))
    return float(stats.t.isf(false_alarm / (2 * count), dof))


def batch_means(estimates) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over independent replicate estimates (stacked on axis 0)."""
    arr = np.asarray(estimates, float)
    if arr.shape[0] < 2:
        raise ValueError("batch_means needs at least two replicates")
    return arr.mean(axis=0), arr.std(axis=0, ddof=1) / np.sqrt(arr.shape[0])


# ------------------------------------------------------------------------------------------------
def _draw_data(data, n: int, gen, dim: int | None = None) -> np.ndarray:
    if isinstance(data, Gaussian):
        return data.sample(n, gen)
    X = as_training_set(data, "data")
    return X[gen.integers(0, X.shape[0], n)]


def dsm_loss(model: ScoreModel, data, t, n: int = 100_000, rng: RNGLike = None) -> Estimate:
    r"""Monte Carlo :math:`\mathbb E\|\varepsilon - \hat\varepsilon(\alpha x_0 + \sigma\varepsilon, t)\|^2` with
    ``x0`` drawn from ``data`` (a Gaussian, or uniformly from training points)."""
    gen = as_rng(rng)
    n = _draws(n)
    process = model.process
    a, s = float(process.alpha(t)), float(process.sigma(t))
    x0 = _draw_data(data, n, gen)
    eps = gen.standard_normal(x0.shape)
    with np.errstate(over="ignore"):  # beyond float64: _estimate says so
        resid = np.sum((eps - model.eps(a * x0 + s * eps, t)) ** 2, axis=1)
    return _estimate(resid, "the squared eps-prediction error")


def fit_linear(data, process: Process, t, n: int = 200_000, rng: RNGLike = None, ridge: float = 0.0):
    r"""Least-squares affine eps-model at time t from ``n`` sampled pairs ``(x_t, eps)``.

    Minimises :math:`\frac1n\sum\|\varepsilon - W x_t - b\|^2 + r\|W\|_F^2`; converges to
    ``LinearDenoiser.fit`` (data = training points) or ``.population`` (data = Gaussian) as n grows.
    Returns ``(W, b)``.  When the sampled ``x_t`` do not span the space (``n <= d``, or a law with no
    variance in some direction at this time) the normal equation is singular and the minimum-norm
    solution is returned (the ``ridge -> 0`` limit), with the shared zero cut-off of ``lindiff._linalg``.
    """
    gen = as_rng(rng)
    n = as_positive_int(n, "n")
    ridge = as_nonnegative_float(ridge, "ridge")
    a, s = float(process.alpha(t)), float(process.sigma(t))
    x0 = _draw_data(data, n, gen)
    eps = gen.standard_normal(x0.shape)
    x = a * x0 + s * eps
    xm, em = x.mean(axis=0), eps.mean(axis=0)
    cxx = (x - xm).T @ (x - xm) / n + ridge * np.eye(x.shape[1])
    cex = (eps - em).T @ (x - xm) / n
    W = _linalg.solve_psd(0.5 * (cxx + cxx.T), cex.T).T
    return W, em - W @ xm


def fit_convolutional(data, process: Process, t, grid, kernel_size, n: int = 20_000, rng: RNGLike = None,
                      ridge: float = 0.0):
    r"""Least squares of a local convolution with one bias from ``n`` sampled images and noises (twin of
    ``LinearDenoiser.fit_convolutional(..., kernel_size=k)`` at one time).

    Every pixel j of every sampled :math:`x_t = \alpha x_0 + \sigma\varepsilon` is one regression row:
    target :math:`\varepsilon_j`, inputs the box of :math:`x_t` around j (periodic), :math:`x_t[j - o]` for
    each offset o, plus an intercept; it minimises :math:`\frac{1}{nd}\sum\|\varepsilon - w * x_t - \beta\|^2 +
    r\|w\|^2` (the training loss per pixel).  ``data`` is an array of training images (drawn uniformly) or a
    Gaussian.  Returns ``(kernel, bias)``, the kernel of shape ``kernel_size`` per axis.
    """
    from ._convolution import as_kernel_size, box_offsets
    from ._fourier import as_grid

    gen = as_rng(rng)
    n = as_positive_int(n, "n")
    grid = as_grid(grid)
    sizes = as_kernel_size(kernel_size, grid)
    a, s = float(process.alpha(t)), float(process.sigma(t))
    x0 = _draw_data(data, n, gen)
    eps = gen.standard_normal(x0.shape)
    x = (a * x0 + s * eps).reshape((n,) + grid)
    axes = tuple(range(1, len(grid) + 1))
    # the input at offset o is x[j - o]: the field rolled by +o
    feats = np.stack([np.roll(x, tuple(int(v) for v in o), axis=axes).reshape(n, -1) for o in box_offsets(sizes)], axis=-1)
    feats = feats.reshape(-1, feats.shape[-1])
    target = eps.reshape(-1)
    fm, em = feats.mean(axis=0), target.mean()
    fc = feats - fm
    cxx = fc.T @ fc / fc.shape[0] + ridge * np.eye(fc.shape[1])
    cex = fc.T @ (target - em) / fc.shape[0]
    w = np.linalg.solve(cxx, cex)
    return w.reshape(sizes), float(em - w @ fm)


def gradient_descent(X, process: Process, t, train_time: float, lr: float = 1.0, ridge: float = 0.0,
                     n_iter: int = 20_000, centred: bool = True):
    r"""Explicit gradient descent on the exact training loss at time t, from zero weights, with step
    ``lr * train_time / n_iter`` (so it tends to the gradient flow as ``n_iter`` grows).  Returns ``(W, b)``.

    ``centred=True`` descends on ``eps_hat = W (x - alpha mu_hat) + c``; ``False`` on raw ``(W, b)``.
    """
    X = as_training_set(X, "X")
    g = Gaussian.fit(X)
    a, s = float(process.alpha(t)), float(process.sigma(t))
    d = g.dim
    eye = np.eye(d)
    h = train_time * lr / n_iter
    W, b = np.zeros((d, d)), np.zeros(d)
    m = g.mean
    if centred:
        H = a * a * g.cov + (s * s + ridge) * eye
        c = np.zeros(d)
        for _ in range(n_iter):
            W = W - h * 2 * (W @ H - s * eye)
            c = c - h * 2 * c
        return W, c - a * W @ m
    second = a * a * (g.cov + np.outer(m, m)) + (s * s + ridge) * eye
    for _ in range(n_iter):
        gW = 2 * (W @ second + np.outer(b, a * m) - s * eye)
        gb = 2 * (a * W @ m + b)
        W, b = W - h * gW, b - h * gb
    return W, b


def kl(p: Gaussian, q: Gaussian, n: int = 100_000, rng: RNGLike = None) -> Estimate:
    r""":math:`\mathrm{KL}(p\|q) \approx \frac1n\sum_i[\log p(x_i) - \log q(x_i)]`, :math:`x_i\sim p`.

    Singular laws are allowed: the log-densities are then taken on each law's support (see
    :meth:`Gaussian.logpdf`), which compares like with like only when both supports have the same
    dimension.  The estimate is a certain :class:`lindiff.Infinite` (``stderr = 0``) when p and q have
    different ranks (one law puts all its mass on a set the other gives none), or when some draw from p
    lies where q has no density (off q's support, or with a log-density below the float64 range) —
    the cases where ``lindiff.kl`` is infinite, detected from the draws themselves.

    >>> est = kl(Gaussian([0.0], [[1.0]]), Gaussian([1.0], [[2.0]]), 20_000, rng=0)
    >>> abs(est.mean - 0.346574) < 5 * est.stderr
    True
    """
    for name, g in (("p", p), ("q", q)):
        if not isinstance(g, Gaussian):
            raise TypeError(f"{name} must be a lindiff.Gaussian, got {type(g).__name__}")
    if p.dim != q.dim:
        raise ValueError(f"p and q must have the same dimension, got {p.dim} and {q.dim}")
    n = _draws(n)
    x = p.sample(n, as_rng(rng))
    if p.rank != q.rank:
        return Estimate(Infinite(f"p has rank {p.rank} and q rank {q.rank}: one puts all its mass where the "
                                 "other has none"), 0.0, n)
    log_q = np.asarray(q.logpdf(x))
    off = int(np.count_nonzero(log_q == -np.inf))
    if off:
        return Estimate(Infinite(f"{off} of {n} draws from p have no density under q (off q's support, or a "
                                 "log-density below the float64 range)"), 0.0, n)
    return _estimate(p.logpdf(x) - log_q, "log p - log q")


def score_finite_difference(model, x, t, h: float = 1e-5) -> np.ndarray:
    r"""Central differences of ``model.logpdf(., t)`` at the rows of x (twin of ``model.score``):
    :math:`\partial_j \log p_t(x) \approx [\log p_t(x + h e_j) - \log p_t(x - h e_j)] / (2h)`.

    Where ``x +- h e_j`` has no density (``logpdf = -inf``: it steps off the support of a singular
    ``p_t``, or the log-density is below the float64 range) the difference is undefined and a
    ``ValueError`` names ``h``.
    """
    pts, single = as_points(x, model.dim)
    h = as_nonnegative_float(h, "h")
    if h == 0:
        raise ValueError("h must be a finite positive step, got 0")
    d = model.dim
    out = np.empty_like(pts)
    for j in range(d):
        e = np.zeros(d)
        e[j] = h
        up, down = np.asarray(model.logpdf(pts + e, t)), np.asarray(model.logpdf(pts - e, t))
        if not (np.all(np.isfinite(up)) and np.all(np.isfinite(down))):
            raise ValueError(
                f"the log-density is -inf at x +- h e_{j} for h = {h:g} (a step off the support of p_t, or below the "
                "float64 range): the finite difference is undefined there; use a smaller h or points where p_t has "
                "a density")
        with np.errstate(over="ignore"):
            out[:, j] = (up - down) / (2 * h)
        if not np.all(np.isfinite(out[:, j])):
            raise ValueError(f"the finite difference along e_{j} exceeds the float64 range for h = {h:g}")
    return out[0] if single else out
