r"""Generalisation through variance (Vastola 2025), computed exactly for linear denoisers.

The denoising-score-matching target :math:`-\varepsilon/\sigma` is a noisy version of the score.  A model
trained on a finite number P of noise draws per training point therefore learns a *random* score; Vastola
argues that the variance of that random score, not its mean, moves samples off the training points
("gap filling").  For an affine eps-model with free weights per time every piece is computable:

* **Each draw's law is exact.**  At every time the sampler visits, the weights are the least-squares fit
  to N P noisy pairs :math:`(x_{ij} = \alpha x_i + \sigma\varepsilon_{ij}, \varepsilon_{ij})`
  (:meth:`lindiff.LinearDenoiser.fit_noise_draws`); the sampler's output law is then the exact Gaussian of
  :func:`lindiff.sampling_law`.  The fit depends on the noise only through the per-point sums
  :math:`e_i = \sum_j\varepsilon_{ij}\sim\mathcal N(0, PI)` and the within-point scatter
  :math:`\sim W_d(N(P-1), I)`, so a draw costs O(N d + d^3) per time whatever P is
  (:func:`noise_draw_weights`; held to ``fit_noise_draws`` in distribution by the tests).
* **The law averaged over noise draws** (:func:`noise_draw_law`) is the mixture of those Gaussians:
  Monte Carlo over the draws, every component exact; its mean, covariance, rank, variance off the
  span of the centred training points, nearest-training-point distances, and the expected KL / W2 of
  a draw's law to the data and to the N -> infinity model, each with its standard error.
* **The leading order in 1/P** (:func:`noise_draw_series`).  With :math:`K = (\alpha^2\hat S +
  (\sigma^2 + r)I)^{-1}`, :math:`J = I - \sigma^2K`, n = N P and the centred inputs
  :math:`w_i = x_i - \bar x`, the weights are :math:`W = \sigma K + W_1 + W_2 + O(n^{-3/2})` with

  .. math::
      W_1 = \alpha J A^T K - \alpha\sigma^2 K A K + \sigma J E K,\qquad
      A = \tfrac1n\textstyle\sum_i w_i e_i^T,\quad E = \tfrac1n\sum_{ij}(\varepsilon_{ij}\varepsilon_{ij}^T - I),

  :math:`\mathbb E W = \sigma K + B/n` and :math:`\mathbb E[W_1RW_1^T] = \mathcal V(R)/n`,

  .. math::
      \mathcal V(R) = \sigma^2J(M + \operatorname{tr}M\,I)J + \alpha^2\operatorname{tr}(\hat SM)J^2
      + \alpha^2\sigma^4\operatorname{tr}M\,K\hat SK - \alpha^2\sigma^2(JM\hat SK + K\hat SMJ),\quad M = KRK

  (``derivations/noise_draws.py``; B there too).  The intercept adds :math:`c = J\bar\varepsilon`,
  :math:`\mathbb E cc^T = J^2/n`.  A single-stage sampler step :math:`x' = o x + q\,\mathrm{score} + \nu z`
  is :math:`x' = (oI - \beta W)x + \beta(\alpha W\bar x - c) + \nu z` with :math:`\beta = q/\sigma`, the
  weights of different steps are independent, so the mixture's first two moments obey an exact
  recursion given the weights' first two moments; it is carried to first order in 1/P.
* **The V-kernel** (:func:`v_kernel`): the covariance of the learned score over noise draws,
  :math:`V_t(x) = \sigma^{-2}[\mathcal V((x - \alpha\bar x)(x - \alpha\bar x)^T) + J^2]/n`, beside the
  covariance of the DSM target given x (the "proxy" covariance :math:`\alpha^2\sigma^{-4}\operatorname{Cov}
  [x_0\mid x_t]`, eigenvalues :math:`\alpha^2\lambda/(\sigma^2(\alpha^2\lambda + \sigma^2))`).

What the exact numbers show (tested): for N <= d the P = infinity model's samples lie on the span of the
training points (DDPM without final noise), and **for the time-local linear model finite P does not move
them off it once N P > d** and the ridge is 0.  The part of the input orthogonal to the span is an exact
multiple of the noise (:math:`P_\perp x_{ij} = \alpha P_\perp\bar x + \sigma P_\perp\varepsilon_{ij}`), so
least squares recovers the all-noise prediction there exactly at any P: both the proxy covariance and the
V-kernel vanish off the span.  Off-span variance appears while the fit is under-determined (N P <= d), or
with a ridge (then it is :math:`c_0 + c_1/P`, :math:`c_1` from the series); gap filling in Vastola's sense
needs a model that cannot represent the exact null-space map (features shared across times, as in his
paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import _linalg
from ._validation import RNGLike, as_nonnegative_float, as_positive_int, as_rng, as_training_set
from .ensembles import wishart
from .gaussian import Gaussian, Infinite, kl, w2
from .processes import DDPM, Process
from .samplers import SamplerProgram, build_sampler, sampling_law
from .scores import LinearDenoiser
from .tables import Column, Table

__all__ = ["noise_draw_weights", "NoiseDrawWeightMoments", "noise_draw_weight_moments", "noise_draw_allocation",
           "noise_draw_model", "NoiseDrawLaw", "noise_draw_law", "NoiseDrawSeries", "noise_draw_series", "VKernel",
           "v_kernel", "variance_table", "v_kernel_table", "v_kernel_spectrum_table", "variance_tables", "ALLOCATIONS", "WEIGHTINGS"]

ALLOCATIONS = ("per_step", "schedule")
WEIGHTINGS = ("eps", "score", "x0")


# ------------------------------------------------------------------------------------------------
# one draw of the least-squares weights, from sufficient statistics
def noise_draw_weights(X, a: float, s: float, P: int, ridge: float = 0.0, rng: RNGLike = None) -> tuple[np.ndarray, np.ndarray]:
    r"""One draw of the least-squares eps-weights ``(W, b)`` on P noise draws per point, at one time.

    Same distribution as :meth:`lindiff.LinearDenoiser.fit_noise_draws` (ordinary least squares with
    intercept, ridge ``r`` on the input covariance, minimum-norm when under-determined), drawn from the
    sufficient statistics: with n = N P, :math:`e_i\sim\mathcal N(0, PI)` and
    :math:`\Omega\sim W_d(N(P-1), I)` independent,

    .. math::
        \bar\varepsilon = \tfrac1n\textstyle\sum_i e_i,\quad
        \hat C_{\varepsilon\varepsilon} = \tfrac1n(\Omega + \sum_i e_ie_i^T/P) - \bar\varepsilon\bar\varepsilon^T,\quad
        A = \tfrac1n\sum_i w_ie_i^T,

    :math:`\hat C_{xx} = \alpha^2\hat S + \alpha\sigma(A + A^T) + \sigma^2\hat C_{\varepsilon\varepsilon}`,
    :math:`\hat C_{\varepsilon x} = \alpha A^T + \sigma\hat C_{\varepsilon\varepsilon}`,
    :math:`W = \hat C_{\varepsilon x}(\hat C_{xx} + rI)^{+}`, :math:`b = \bar\varepsilon - W(\alpha\bar x + \sigma\bar\varepsilon)`.
    Cost O(N d + d^3), independent of P.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((5, 3))
    >>> W, b = noise_draw_weights(X, 0.8, 0.6, P=1000, rng=1)
    >>> g = np.cov(X.T, bias=True)
    >>> bool(np.allclose(W, 0.6 * np.linalg.inv(0.64 * g + 0.36 * np.eye(3)), atol=0.05))
    True
    """
    X = as_training_set(X, "X")
    P = as_positive_int(P, "P")
    ridge = as_nonnegative_float(ridge, "ridge")
    gen = as_rng(rng)
    N, d = X.shape
    xbar = X.mean(axis=0)
    Xc = X - xbar
    S = Xc.T @ Xc / N
    return _draw(Xc, xbar, S, float(a), float(s), P, ridge, gen)


def _draw(Xc, xbar, S, a, s, P, ridge, gen):
    N, d = Xc.shape
    n = N * P
    e = math.sqrt(P) * gen.standard_normal((N, d))
    Om = wishart(N * (P - 1), d, gen)
    eb = e.sum(axis=0) / n
    Cee = (Om + e.T @ e / P) / n - np.outer(eb, eb)
    A = Xc.T @ e / n
    Cxx = a * a * S + a * s * (A + A.T) + s * s * Cee + ridge * np.eye(d)
    Cxx = 0.5 * (Cxx + Cxx.T)
    Cex = a * A.T + s * Cee
    W = _linalg.solve_psd(Cxx, Cex.T).T
    return W, eb - W @ (a * xbar + s * eb)


# ------------------------------------------------------------------------------------------------
# first two moments of the weights to O(1/n)
@dataclass(frozen=True)
class NoiseDrawWeightMoments:
    r"""Leading-order moments of the least-squares weights at one time (see the module docstring):
    ``E W = W_inf + bias / n``, ``E[W_1 R W_1^T] = cov_map(R) / n``, ``E[c c^T] = J^2 / n``."""

    a: float
    s: float
    S: np.ndarray
    K: np.ndarray
    J: np.ndarray
    W_inf: np.ndarray
    bias: np.ndarray

    def cov_map(self, R: np.ndarray) -> np.ndarray:
        """:math:`\\mathcal V(R)` (times 1/n gives :math:`\\mathbb E[W_1RW_1^T]`)."""
        a, s, S, K, J = self.a, self.s, self.S, self.K, self.J
        M = K @ R @ K
        trM = np.trace(M)
        out = (s * s * J @ (M.T + trM * np.eye(len(K))) @ J + a * a * np.trace(S @ M) * J @ J
               + a * a * s**4 * trM * K @ S @ K - a * a * s * s * (J @ M.T @ S @ K + K @ S @ M.T @ J))
        return out


def noise_draw_weight_moments(X, a: float, s: float, ridge: float = 0.0) -> NoiseDrawWeightMoments:
    r"""The O(1/n) moments of :func:`noise_draw_weights`: bias B and covariance map (derivation in
    ``derivations/noise_draws.py``).

    .. math::
        B = -\sigma K + \sigma^3K^2 - [\alpha^2\sigma(\operatorname{tr}(\hat SK)I + K\hat S)
        + \sigma^3(K + \operatorname{tr}K\,I)]K + \sigma K[\alpha^2\sigma^2(\hat SK + \operatorname{tr}K\,\hat S
        + \operatorname{tr}(\hat SK)I + K\hat S) + \sigma^4(K + \operatorname{tr}K\,I)]K .

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((5, 3))
    >>> mom = noise_draw_weight_moments(X, 0.8, 0.6)
    >>> mom.cov_map(np.eye(3)).shape
    (3, 3)
    """
    X = as_training_set(X, "X")
    ridge = as_nonnegative_float(ridge, "ridge")
    a, s = float(a), float(s)
    if s <= 0:
        raise ValueError(f"s must be positive (the noise level at a time the sampler visits), got {s!r}")
    d = X.shape[1]
    g = Gaussian.fit(X)
    S = g.cov
    U, lam = g.eigenvectors, g.eigenvalues
    K = (U / (a * a * lam + s * s + ridge)) @ U.T
    K = 0.5 * (K + K.T)
    I = np.eye(d)
    J = I - s * s * K
    tK, tSK = float(np.trace(K)), float(np.trace(S @ K))
    t1 = a * a * s * (tSK * I + K @ S) + s**3 * (K + tK * I)
    t2 = a * a * s * s * (S @ K + tK * S + tSK * I + K @ S) + s**4 * (K + tK * I)
    bias = -s * K + s**3 * K @ K - t1 @ K + s * K @ t2 @ K
    return NoiseDrawWeightMoments(a, s, S, K, J, s * K, bias)


# ------------------------------------------------------------------------------------------------
# where the draws go
def _weight(process: Process, t: float, weighting: str) -> float:
    """lambda(t) multiplying the eps-unit data term; the per-time minimiser sees ridge / lambda(t)."""
    if weighting == "eps":
        return 1.0
    a, s = float(process.alpha(t)), float(process.sigma(t))
    if weighting == "score":
        return 1.0 / (s * s)
    if weighting == "x0":
        return s * s / (a * a)
    raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def noise_draw_allocation(prog: SamplerProgram, P: int, allocation: str = "per_step",
                          window: tuple[float, float] | None = None) -> dict[float, tuple[int, float]]:
    r"""Noise draws per training point at each time the sampler evaluates: ``{t: (P_t, share_t)}``.

    ``"per_step"``: P at every step.  ``"schedule"``: the same total (P per step on average) spread in
    proportion to the training-time mass of each step's cell :math:`(t_{k+1}, t_k]` under the uniform
    training distribution (uniform t on [0, T], or uniform over DDPM's T steps):
    :math:`P_k = \max(1, \mathrm{round}(P\,\rho_k))`, :math:`\rho_k = K(t_k - t_{k+1})/(t_0 - t_K)`.
    ``window=(lo, hi)`` restricts the draws to steps with lo <= t <= hi; the other steps use the
    P = infinity weights (no variance injected there).  ``share_t`` is the unrounded :math:`\rho_k`
    (the series in 1/P uses it).

    Examples
    --------
    >>> import lindiff as ld
    >>> prog = ld.build_sampler(ld.DDPM.linear(100), "ddpm", 4)
    >>> {t: p for t, (p, _) in noise_draw_allocation(prog, 8, "schedule").items()}  # the last cell (1, 0] is short
    {76.0: 11, 51.0: 11, 26.0: 11, 1.0: 1}
    """
    P = as_positive_int(P, "P")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    if not prog.steps:
        raise ValueError(f"the {prog.name!r} sampler integrates in continuous time, where weights drawn afresh at every "
                         "time are not defined; use a sampler with steps (ddpm, ddim, euler_maruyama, ...)")
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not lo <= hi:
            raise ValueError(f"window must be (lo, hi) with lo <= hi, got {window!r}")
    span = float(prog.grid[0] - prog.grid[-1])
    K = len(prog.steps)
    out: dict[float, tuple[int, float]] = {}
    for st in prog.steps:
        for stage in st.stages:
            t = float(stage.t)
            if window is not None and not lo <= t <= hi:
                continue
            share = 1.0 if allocation == "per_step" else K * (st.t - st.t_next) / span
            if t not in out:
                out[t] = (max(1, int(round(P * share))), share)
    return out


class _NoiseDrawWeights:
    """Weights ``t -> (W_t, b_t)`` of one noise-draw model; picklable (no closures), cached per time."""

    def __init__(self, X, process, alloc, ridges, seed):
        self.X, self.process, self.alloc, self.ridges, self.seed = X, process, alloc, ridges, int(seed)
        self.xbar = X.mean(axis=0)
        self.Xc = X - self.xbar
        self.S = self.Xc.T @ self.Xc / X.shape[0]
        self.cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, t: float):
        t = float(t)
        hit = self.cache.get(t)
        if hit is not None:
            return hit
        a, s = float(self.process.alpha(t)), float(self.process.sigma(t))
        r = self.ridges.get(t, 0.0)
        if t in self.alloc:
            key = int(np.float64(t).view(np.uint64))
            gen = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(key,)))
            out = _draw(self.Xc, self.xbar, self.S, a, s, self.alloc[t][0], r, gen)
        else:  # no draws at this time: the P = infinity least-squares weights
            d = self.X.shape[1]
            W = s * _linalg.solve_psd(a * a * self.S + (s * s + r) * np.eye(d), np.eye(d))
            out = (W, -a * W @ self.xbar)
        self.cache[t] = out
        return out


def noise_draw_model(X, process: Process, prog: SamplerProgram, P: int, rng: RNGLike = None, ridge: float = 0.0,
                     allocation: str = "per_step", window: tuple[float, float] | None = None,
                     weighting: str = "eps") -> LinearDenoiser:
    """One random model: noise-draw weights at the times ``prog`` visits (see :func:`noise_draw_allocation`);
    ``weighting`` (``"eps"``, ``"score"`` = 1/sigma^2, ``"x0"`` = sigma^2/alpha^2) scales the per-time data
    term, which for free per-time weights only changes the effective ridge to ``ridge / lambda(t)``.

    Examples
    --------
    >>> import numpy as np, lindiff as ld
    >>> X = np.random.default_rng(0).standard_normal((4, 3))
    >>> prog = ld.build_sampler(ld.DDPM.linear(100), "ddpm", 5)
    >>> model = noise_draw_model(X, prog.process, prog, P=16, rng=1)
    >>> ld.sampling_law(model, prog.process, "ddpm", 5).dim
    3
    """
    X = as_training_set(X, "X")
    ridge = as_nonnegative_float(ridge, "ridge")
    alloc = noise_draw_allocation(prog, P, allocation, window)
    times = {float(stage.t) for st in prog.steps for stage in st.stages}
    ridges = {t: ridge / _weight(process, t, weighting) for t in times} if ridge > 0 else {}
    if ridge == 0:
        _weight(process, prog.t_start, weighting)  # validates the name
    seed = int(as_rng(rng).integers(0, 2**63 - 1))
    weights = _NoiseDrawWeights(X, process, {t: v for t, v in alloc.items()}, ridges, seed)
    model = LinearDenoiser.from_weights(process, weights, X.shape[1], data=Gaussian.fit(X))
    return model


# ------------------------------------------------------------------------------------------------
def _span_projector(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, projector onto the orthogonal complement of span{x_i - mean}) with lindiff's rank cut-off."""
    g = Gaussian.fit(X)
    V = g._eig.null_basis()
    return g.mean, V @ V.T


def _off_span(law: Gaussian, xbar: np.ndarray, Pp: np.ndarray) -> float:
    """E||P_perp (x - xbar)||^2 under ``law``: mean square distance to the affine span of the training set."""
    dm = Pp @ (law.mean - xbar)
    # a mean square: negative values are round-off of an exact zero (samples on the span)
    return max(float(np.sum(Pp * law.cov) + dm @ dm), 0.0)


def _ms(v: np.ndarray) -> tuple[float, float]:
    n = v.shape[0]
    return (float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf)


def _mean_or_infinite(values: list, what: str):
    """(mean, s.e.) of per-draw divergences, or an Infinite naming how many draws were infinite."""
    bad = sum(1 for v in values if math.isinf(v))
    if bad:
        reason = next((getattr(v, "reason", "") for v in values if math.isinf(v)), "")
        return Infinite(f"{what} is infinite for {bad} of {len(values)} draws ({reason})")
    return _ms(np.asarray(values, float))


@dataclass(frozen=True)
class NoiseDrawLaw:
    """The law averaged over noise draws (a mixture of exact Gaussians) and its summaries.

    ``mean``/``cov`` are the mixture's moments with entrywise standard errors ``mean_se``/``cov_se``
    over the draws; ``off_span`` is E||P_perp(x - xbar)||^2 (exact per draw, mean ± s.e.);
    ``kl_data``/``w2_data`` and ``kl_population``/``w2_population`` are the expected KL(reference ||
    draw's law) and W2 to the data and to the law of the N -> infinity model with the same sampler
    (``None`` without ``p0``); ``nearest`` is the mean ± s.e. distance of mixture samples to the nearest
    training point; ``means``/``covs`` hold every draw's law.
    """

    P: int | None
    draws: int
    mean: np.ndarray
    mean_se: np.ndarray
    cov: np.ndarray
    cov_se: np.ndarray
    rank: int
    off_span: tuple[float, float]
    nearest: tuple[float, float]
    kl_data: object = None
    w2_data: object = None
    kl_population: object = None
    w2_population: object = None
    means: np.ndarray = field(default=None, repr=False)
    covs: np.ndarray = field(default=None, repr=False)


def _sampler_options(sampler: str, options: dict) -> dict:
    if sampler == "ddpm":
        options.setdefault("final_noise", False)
    return options


def noise_draw_law(X, process: Process, P: int | None, sampler: str = "ddpm", steps: int | None = 20,
                   t_min: float = 0.0, *, p0: Gaussian | None = None, draws: int = 32, samples: int = 2000,
                   ridge: float = 0.0, allocation: str = "per_step", window: tuple[float, float] | None = None,
                   weighting: str = "eps", rng: RNGLike = None, **options) -> NoiseDrawLaw:
    r"""The sampler's output law averaged over the P-draw randomness of the fit (Monte Carlo over
    ``draws`` models, each law exact via :func:`lindiff.sampling_law`).

    ``P=None`` is the P = infinity model (:meth:`lindiff.LinearDenoiser.fit` with the same effective
    ridge): one exact law, standard errors 0.  DDPM runs without noise on its last step unless
    ``final_noise=True`` is passed (so the P = infinity law of N <= d points lies on their span).
    ``samples`` mixture samples give the nearest-training-point distance.

    Examples
    --------
    >>> import lindiff as ld
    >>> p0 = ld.Gaussian.from_spectrum([1.0, 0.5, 0.25, 0.1])
    >>> X = p0.sample(3, 0)
    >>> inf = noise_draw_law(X, ld.DDPM.linear(100), None, steps=10)
    >>> inf.rank, round(inf.off_span[0], 12)
    (2, 0.0)
    """
    X = as_training_set(X, "X", min_points=2)
    gen = as_rng(rng)
    options = _sampler_options(sampler, dict(options))
    prog = build_sampler(process, sampler, steps, t_min, **options)
    xbar, Pp = _span_projector(X)
    if P is None:
        times = {float(stage.t) for st in prog.steps for stage in st.stages} if prog.steps else set()
        if ridge > 0 and weighting != "eps" and times:
            ridges = {t: ridge / _weight(process, t, weighting) for t in times}
            model = LinearDenoiser.from_weights(process, _NoiseDrawWeights(X, process, {}, ridges, 0), X.shape[1],
                                                data=Gaussian.fit(X))
        else:
            model = LinearDenoiser.fit(X, process, ridge=ridge)
        laws = [sampling_law(model, process, sampler, steps, t_min, **options)]
        R = 1
    else:
        R = as_positive_int(draws, "draws")
        laws = [sampling_law(noise_draw_model(X, process, prog, P, gen, ridge, allocation, window, weighting), process,
                             sampler, steps, t_min, **options) for _ in range(R)]
    means = np.stack([law.mean for law in laws])
    covs = np.stack([law.cov for law in laws])
    mean = means.mean(axis=0)
    dev = means - mean
    # mixture covariance: E C + Cov(means); per-draw terms give the entrywise s.e.
    per = covs + np.einsum("ri,rj->rij", dev, dev) * (R / (R - 1) if R > 1 else 1.0)
    cov = per.mean(axis=0)
    cov = 0.5 * (cov + cov.T)
    se = lambda v: v.std(axis=0, ddof=1) / math.sqrt(R) if R > 1 else np.zeros(v.shape[1:])  # noqa: E731
    mixture = Gaussian(mean, cov, _scale=1.0)
    off = np.array([_off_span(law, xbar, Pp) for law in laws])
    # nearest training point: mixture samples (a uniformly chosen draw, then its Gaussian)
    n = as_positive_int(samples, "samples")
    counts = np.bincount(gen.integers(R, size=n), minlength=R)
    pts = np.concatenate([laws[r].sample(int(c), gen) for r, c in enumerate(counts) if c > 0])
    dist = np.sqrt(np.maximum(np.sum(pts**2, 1)[:, None] - 2 * pts @ X.T + np.sum(X**2, 1)[None, :], 0.0)).min(axis=1)
    out = dict(P=P, draws=R, mean=mean, mean_se=se(means), cov=cov, cov_se=se(per), rank=mixture.rank,
               off_span=_ms(off) if R > 1 else (float(off[0]), 0.0), nearest=_ms(dist), means=means, covs=covs)
    if p0 is not None:
        pop = sampling_law(LinearDenoiser.population(p0, process), process, sampler, steps, t_min, **options)
        for key, ref in (("data", p0), ("population", pop)):
            kls = [kl(ref, law) for law in laws]
            w2s = np.array([w2(ref, law) for law in laws])
            out[f"kl_{key}"] = _mean_or_infinite(kls, f"KL({key} || law)") if R > 1 else kls[0]
            out[f"w2_{key}"] = _ms(w2s) if R > 1 else float(w2s[0])
    return NoiseDrawLaw(**out)


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseDrawSeries:
    r"""Mixture moments to first order in 1/P: ``mean0 + mean1 / P``, ``cov0 + cov1 / P``, the same for
    the off-span variance (``off_span1 = off_span1_bias + off_span1_variance``: the part from the
    weights' O(1/P) bias and the part from their covariance, the V-kernel), and per step the off-span
    trace of the variance source (``source``) and of what the later steps pass to the output (``feed``,
    summing to ``off_span1_variance``); all per unit 1/P."""

    times: np.ndarray
    mean0: np.ndarray
    mean1: np.ndarray
    cov0: np.ndarray
    cov1: np.ndarray
    off_span0: float
    off_span1: float
    off_span1_bias: float
    off_span1_variance: float
    source: np.ndarray
    feed: np.ndarray

    def cov(self, P: float) -> np.ndarray:
        return self.cov0 + self.cov1 / P

    def mean(self, P: float) -> np.ndarray:
        return self.mean0 + self.mean1 / P

    def off_span(self, P: float) -> float:
        return self.off_span0 + self.off_span1 / P


def _single_stage(prog: SamplerProgram) -> bool:
    """Every step is ``x' = o x + q score(x, t) + nu z`` (one slot, one score or eps evaluation at the
    step's own time on x, noise added to x only)."""
    for st in prog.steps:
        if len(st.writes) != 1 or len(st.stages) != 1:
            return False
        stage = st.stages[0]
        if stage.t != st.t or stage.kind not in ("score", "eps") or stage.inputs[0] != 1.0 or any(stage.inputs[1:]):
            return False
    return True


def _step_coefficients(st, process) -> tuple[float, float, float]:
    """``(o, q, nu)`` of a single-stage step (see :func:`_single_stage`), q on the score."""
    row = st.writes[0]
    m = st.noises
    c = row[1 + m]
    q = c if st.stages[0].kind == "score" else -float(process.sigma(st.t)) * c  # eps_hat = -sigma score
    return row[0], q, float(np.sqrt(sum(w * w for w in row[1 : 1 + m])))


def _series_pass(prog, process, X, xbar, alloc, ridge, weighting, bias: bool, variance: bool):
    """The moment recursion carried as value + 1/P-coefficient; ``bias``/``variance`` switch the two
    first-order channels.  Returns (m0, m1, S0, S1, per-step sources, per-step maps)."""
    N, d = X.shape
    I = np.eye(d)
    m0, m1 = np.zeros(d), np.zeros(d)
    S0, S1 = I.copy(), np.zeros((d, d))
    sources, maps = [], []
    for st in prog.steps:
        t = float(st.t)
        a, s = float(process.alpha(t)), float(process.sigma(t))
        o, q, nu = _step_coefficients(st, process)
        beta = q / s
        r = ridge / _weight(process, t, weighting) if ridge > 0 else 0.0
        mom = noise_draw_weight_moments(X, a, s, r)
        M0 = o * I - beta * mom.W_inf
        f0 = beta * a * mom.W_inf @ xbar
        M1, f1, src = np.zeros((d, d)), np.zeros(d), np.zeros((d, d))
        if t in alloc:
            inv_n = 1.0 / (N * alloc[t][1])  # 1/n = inv_n / P
            if bias:
                M1 = -beta * mom.bias * inv_n
                f1 = beta * a * mom.bias @ xbar * inv_n
            if variance:
                R0 = S0 - a * (np.outer(m0, xbar) + np.outer(xbar, m0)) + a * a * np.outer(xbar, xbar)
                src = beta * beta * (mom.cov_map(R0) + mom.J @ mom.J) * inv_n
        S0n = M0 @ S0 @ M0.T + M0 @ np.outer(m0, f0) + np.outer(f0, m0) @ M0.T + np.outer(f0, f0) + nu * nu * I
        S1n = (M1 @ S0 @ M0.T + M0 @ S1 @ M0.T + M0 @ S0 @ M1.T
               + M1 @ np.outer(m0, f0) + M0 @ np.outer(m1, f0) + M0 @ np.outer(m0, f1)
               + np.outer(f1, m0) @ M0.T + np.outer(f0, m1) @ M0.T + np.outer(f0, m0) @ M1.T
               + np.outer(f1, f0) + np.outer(f0, f1) + src)
        m0, m1 = M0 @ m0 + f0, M0 @ m1 + M1 @ m0 + f1
        S0, S1 = 0.5 * (S0n + S0n.T), 0.5 * (S1n + S1n.T)
        sources.append(src)
        maps.append(M0)
    return m0, m1, S0, S1, sources, maps


def noise_draw_series(X, process: Process, sampler: str = "ddpm", steps: int | None = 20, t_min: float = 0.0, *,
                      ridge: float = 0.0, allocation: str = "per_step", window: tuple[float, float] | None = None,
                      weighting: str = "eps", **options) -> NoiseDrawSeries:
    r"""The law averaged over noise draws, to first order in 1/P, in closed form (module docstring).

    Step k maps :math:`x\mapsto M_kx + f_k + \nu_kz` with :math:`M_k = o_kI - \beta_kW_k`,
    :math:`f_k = \beta_k(\alpha_kW_k\bar x - c_k)`; with independent steps

    .. math::
        m' = \bar M m + \bar f,\qquad
        S' = \bar MS\bar M^T + \bar Mm\bar f^T + \bar fm^T\bar M^T + \bar f\bar f^T
        + \beta^2[\mathcal V(R) + J^2]/n + \nu^2 I,

    :math:`R = S - \alpha(m\bar x^T + \bar xm^T) + \alpha^2\bar x\bar x^T`, :math:`S` the second moment,
    :math:`n = N P\rho_k`.  Both sides are carried as value + (1/P)-coefficient.  Valid for N P >> d (the
    expansion of the least-squares solution needs a well-determined fit).  Single-stage samplers only
    (ddpm, ddim, euler_maruyama, exponential_integrator, euler, euler_ve, euler_ancestral).

    Examples
    --------
    >>> import lindiff as ld
    >>> X = ld.Gaussian.from_spectrum([1.0, 0.5, 0.25]).sample(6, 0)
    >>> ser = noise_draw_series(X, ld.DDPM.linear(100), steps=10)
    >>> bool(abs(ser.off_span1) < 1e-9)  # N > d: no null space
    True
    """
    X = as_training_set(X, "X", min_points=2)
    ridge = as_nonnegative_float(ridge, "ridge")
    options = _sampler_options(sampler, dict(options))
    prog = build_sampler(process, sampler, steps, t_min, **options)
    if not prog.steps or not _single_stage(prog):
        raise ValueError(f"the 1/P series needs a single-stage sampler with steps (ddpm, ddim, euler_maruyama, "
                         f"exponential_integrator, euler, euler_ve, euler_ancestral), got {sampler!r}")
    alloc = noise_draw_allocation(prog, 1, allocation, window)
    xbar, Pp = _span_projector(X)

    def summary(m0, m1, S0, S1):
        cov0 = S0 - np.outer(m0, m0)
        cov1 = S1 - np.outer(m1, m0) - np.outer(m0, m1)
        dm0 = Pp @ (m0 - xbar)
        return cov0, cov1, float(np.sum(Pp * cov0) + dm0 @ dm0), float(np.sum(Pp * cov1) + 2 * dm0 @ (Pp @ m1))

    m0, m1, S0, S1, sources, maps = _series_pass(prog, process, X, xbar, alloc, ridge, weighting, True, True)
    cov0, cov1, off0, off1 = summary(m0, m1, S0, S1)
    off1_bias = summary(*_series_pass(prog, process, X, xbar, alloc, ridge, weighting, True, False)[:4])[3]
    off1_var = summary(*_series_pass(prog, process, X, xbar, alloc, ridge, weighting, False, True)[:4])[3]
    # step k's source reaches the output through the later P = infinity maps: G_k src G_k^T
    d = X.shape[1]
    feed, G = [], np.eye(d)
    for src, M in zip(reversed(sources), reversed(maps)):
        feed.append(float(np.sum(Pp * (G @ src @ G.T))))
        G = G @ M
    return NoiseDrawSeries(np.array([float(st.t) for st in prog.steps]), m0, m1, 0.5 * (cov0 + cov0.T),
                           0.5 * (cov1 + cov1.T), off0, off1, off1_bias, off1_var,
                           np.array([float(np.sum(Pp * src)) for src in sources]), np.array(feed[::-1]))


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VKernel:
    r"""The V-kernel of the noise-draw fit at one time, beside the DSM target's covariance.

    ``basis``/``train_eigenvalues``: the training covariance's eigenbasis; ``proxy_fit`` /
    ``proxy_data``: eigenvalues of the proxy-score covariance :math:`\operatorname{Cov}[-\varepsilon/\sigma\mid x]`
    under the fitted Gaussian (per training eigenvalue) and under the data (per data eigenvalue, if
    given); ``kernel``: :math:`\mathbb E_x V_t(x)` over the model's noised law
    :math:`\mathcal N(\alpha\bar x, \alpha^2\hat S + \sigma^2I)` (score units, for P draws per point);
    ``on_span``/``off_span``: its trace on and off the span of the centred training points."""

    t: float
    P: int
    basis: np.ndarray
    train_eigenvalues: np.ndarray
    proxy_fit: np.ndarray
    proxy_data: np.ndarray | None
    data_eigenvalues: np.ndarray | None
    kernel: np.ndarray
    on_span: float
    off_span: float

    @property
    def kernel_diagonal(self) -> np.ndarray:
        """The kernel's diagonal in the training eigenbasis (same order as ``train_eigenvalues``)."""
        return np.einsum("ij,ij->j", self.basis, self.kernel @ self.basis)


def v_kernel(X, process: Process, t: float, P: int, ridge: float = 0.0, p0: Gaussian | None = None) -> VKernel:
    r"""V-kernel :math:`V_t(x) = \operatorname{Cov}_\omega[\hat s_\omega(x, t)]` of the least-squares score
    on P noise draws per point, to leading order :math:`\sigma^{-2}[\mathcal V(R) + J^2]/(NP)` with
    :math:`R = (x - \alpha\bar x)(x - \alpha\bar x)^T`, averaged over x from the model's noised law, and the
    proxy covariance :math:`\alpha^2\sigma^{-4}\operatorname{Cov}[x_0\mid x_t]` (eigenvalues
    :math:`\alpha^2\lambda/(\sigma^2(\alpha^2\lambda + \sigma^2))`): both vanish off the training span when
    the ridge is 0, which is why finite P adds no off-span variance to the time-local linear model.

    Examples
    --------
    >>> import lindiff as ld
    >>> X = ld.Gaussian.from_spectrum([1.0, 0.5, 0.25, 0.1]).sample(3, 0)
    >>> vk = v_kernel(X, ld.DDPM.linear(100), 10, P=8)
    >>> bool(vk.off_span < 1e-12 * vk.on_span)
    True
    """
    X = as_training_set(X, "X", min_points=2)
    P = as_positive_int(P, "P")
    a, s = float(process.alpha(t)), float(process.sigma(t))
    mom = noise_draw_weight_moments(X, a, s, ridge)
    g = Gaussian.fit(X)
    n = X.shape[0] * P
    R = a * a * g.cov + s * s * np.eye(X.shape[1])
    kernel = (mom.cov_map(R) + mom.J @ mom.J) / (n * s * s)
    kernel = 0.5 * (kernel + kernel.T)
    _, Pp = _span_projector(X)
    off = float(np.sum(Pp * kernel))
    lam = g.eigenvalues
    proxy = a * a * lam / (s * s * (a * a * lam + s * s))
    pdata = dl = None
    if p0 is not None:
        dl = p0.eigenvalues
        pdata = a * a * dl / (s * s * (a * a * dl + s * s))
    return VKernel(float(t), P, g.eigenvectors, lam, proxy, pdata, dl, kernel, float(np.trace(kernel)) - off, off)


def v_kernel_table(X, process: Process, times: Sequence[float], P: int, ridge: float = 0.0, p0: Gaussian | None = None,
                   sampler: str = "ddpm", steps: int | None = 20, **options) -> Table:
    """Per time: the proxy covariance and the V-kernel on and off the training span, and the off-span
    variance each sampler step injects and passes to the output (from :func:`noise_draw_series`).

    Examples
    --------
    >>> import lindiff as ld
    >>> X = ld.Gaussian.from_spectrum([1.0, 0.5, 0.25, 0.1]).sample(3, 0)
    >>> table = v_kernel_table(X, ld.DDPM.linear(100), [1.0, 51.0], P=8, steps=5)
    >>> [row[4] for row in table.rows] == [0.0, 0.0] or max(abs(row[4]) for row in table.rows) < 1e-9
    True
    """
    X = as_training_set(X, "X", min_points=2)
    ser = noise_draw_series(X, process, sampler, steps, ridge=ridge, **options)
    rows = []
    for t in times:
        vk = v_kernel(X, process, t, P, ridge, p0)
        k = int(np.argmin(np.abs(ser.times - t)))
        rows.append([float(t), float(np.sum(vk.proxy_fit)), None if vk.proxy_data is None else float(np.sum(vk.proxy_data)),
                     vk.on_span, vk.off_span, float(ser.times[k]), ser.source[k] / P, ser.feed[k] / P])
    notes = [f"off-span variance at the output, per unit 1/P: {ser.off_span1:.4g} = {ser.off_span1_bias:.4g} from the "
             f"weights' bias + {ser.off_span1_variance:.4g} from their covariance (the V-kernel)"]
    cols = [Column("t"), Column("tr proxy (fit)", "score^2", "tr Cov[-eps/sigma | x] under the fitted Gaussian"),
            Column("tr proxy (data)", "score^2", "the same under the data"),
            Column("V on span", "score^2", "trace of E_x Cov_draws[score] on the training span (P draws per point)"),
            Column("V off span", "score^2", "its trace on the orthogonal complement"),
            Column("step t", note="nearest sampler step"),
            Column("off-span injected", note="trace off the span of the step's variance source, at this P"),
            Column("off-span at output", note="what of it the later steps pass to the output")]
    d = X.shape[1]
    return Table(f"V-kernel of the noise-draw fit: N = {X.shape[0]}, d = {d}, P = {P}, ridge {ridge:g}, "
                 f"{sampler} ({steps} steps) on {process!r}", cols, rows, notes)


def v_kernel_spectrum_table(X, process: Process, t: float, P: int, ridge: float = 0.0, p0: Gaussian | None = None) -> Table:
    """Per eigen-direction of the training covariance (largest first): the training and data eigenvalues
    (matched by rank), the proxy-score covariance's eigenvalues under the fitted Gaussian and under the
    data, and the V-kernel's diagonal in the training eigenbasis; directions off the span have training
    eigenvalue 0, where the proxy covariance is 0 and, without a ridge, so is the V-kernel.

    Examples
    --------
    >>> import lindiff as ld
    >>> X = ld.Gaussian.from_spectrum([1.0, 0.5, 0.25, 0.1]).sample(3, 0)
    >>> table = v_kernel_spectrum_table(X, ld.DDPM.linear(100), 10, P=8)
    >>> [row[-1] for row in table.rows]
    ['span', 'span', 'off span', 'off span']
    """
    vk = v_kernel(X, process, t, P, ridge, p0)
    order = np.argsort(vk.train_eigenvalues)[::-1]
    _, Pp = _span_projector(as_training_set(X, "X"))
    data = None if vk.data_eigenvalues is None else np.sort(vk.data_eigenvalues)[::-1]
    pdata = None if vk.proxy_data is None else np.sort(vk.proxy_data)[::-1]
    diag = vk.kernel_diagonal
    rows = []
    for k, j in enumerate(order):
        on = float(vk.basis[:, j] @ Pp @ vk.basis[:, j]) < 0.5
        rows.append([k + 1, float(vk.train_eigenvalues[j]), None if data is None else float(data[k]),
                     float(vk.proxy_fit[j]), None if pdata is None else float(pdata[k]), float(diag[j]),
                     "span" if on else "off span"])
    cols = [Column("k"), Column("train eigenvalue"), Column("data eigenvalue", note="k-th largest of the data"),
            Column("proxy (fit)", "score^2", "alpha^2 l / (sigma^2 (alpha^2 l + sigma^2)), l the training eigenvalue"),
            Column("proxy (data)", "score^2", "the same for the k-th data eigenvalue"),
            Column("V-kernel", "score^2", f"diagonal of E_x Cov_draws[score] in the training eigenbasis, P = {P}"),
            Column("direction")]
    return Table(f"V-kernel against the spectrum at t = {t:g}: N = {X.shape[0]}, d = {X.shape[1]}, ridge {ridge:g}, "
                 f"{process!r}", cols, rows)


def variance_table(d: int = 16, ratios: Sequence[float] = (0.25, 0.5, 2.0), Ps: Sequence[int] = (1, 2, 4, 16, 64),
                   ridges: Sequence[float] = (0.0, 0.01), process: Process | None = None, sampler: str = "ddpm",
                   steps: int | None = 20, draws: int = 24, samples: int = 1000, exponent: float = 1.0,
                   allocation: str = "per_step", window: tuple[float, float] | None = None, weighting: str = "eps",
                   seed=0, **options) -> Table:
    r"""Off-span variance, rank, KL(data || law) and nearest-point distance of the law averaged over noise
    draws, over P (and P = infinity) and N/d, for power-law data :math:`k^{-\text{exponent}}`.

    One training set per N/d (the same for every P and ridge: common random numbers); Monte Carlo
    columns are mean ± s.e. over ``draws`` noise-draw models, each law exact.  "series" is the closed
    form :math:`c_0 + c_1/P` (single-stage samplers).

    Examples
    --------
    >>> table = variance_table(d=4, ratios=(0.5,), Ps=(8,), ridges=(0.0,), steps=4, draws=3, samples=20)
    >>> [row[2] for row in table.rows], table.rows[-1][7]  # P, and the rank of the P = infinity law (N - 1)
    ([8, 'inf'], 1)
    """
    process = DDPM.linear(1000) if process is None else process
    d = as_positive_int(d, "d")
    gen = as_rng(seed)
    p0 = Gaussian.from_spectrum(np.arange(1, d + 1, dtype=float) ** -float(exponent) * d
                                / np.sum(np.arange(1, d + 1, dtype=float) ** -float(exponent)))
    rows = []
    for ratio in ratios:
        N = max(2, int(round(float(ratio) * d)))
        X = p0.sample(N, gen)
        for ridge in ridges:
            try:
                ser = noise_draw_series(X, process, sampler, steps, ridge=ridge, allocation=allocation, window=window,
                                        weighting=weighting, **options)
            except ValueError:
                ser = None
            for P in list(Ps) + [None]:
                law = noise_draw_law(X, process, P, sampler, steps, p0=p0, draws=draws, samples=samples, ridge=ridge,
                                     allocation=allocation, window=window, weighting=weighting, rng=gen, **options)
                determined = P is None or N * P > d
                series = None if ser is None or not determined else (ser.off_span0 if P is None else ser.off_span(P))
                if series is not None and abs(series) < 1e-12 * max(1.0, float(np.trace(ser.cov0))):
                    series = 0.0  # round-off of an exact zero (no off-span term at any order)
                regime = "" if P is None else ("NP <= d" if N * P <= d else "NP > d")
                off = law.off_span[0] if (P is None or N > d) else law.off_span  # no null space for N > d: exact 0
                rows.append([float(ratio), N, "inf" if P is None else int(P), float(ridge), regime, off, series, law.rank,
                             law.kl_data, law.w2_data, law.nearest])
    cols = [Column("N/d"), Column("N"), Column("P", note="noise draws per training point at each step (inf: exact fit)"),
            Column("ridge"), Column("regime", note="least squares is under-determined when N P <= d"),
            Column("off-span var", note="E||P_perp(x - xbar)||^2: mean square distance of samples to the training span; "
                   "mean ± s.e. over draws, each law exact"),
            Column("series", note="c0 + c1/P, closed form to first order in 1/P (shown where N P > d)"),
            Column("rank", note="rank of the mixture covariance (lindiff's cut-off)"),
            Column("E KL(data||law)", "nats", "expected over draws of the exact KL of each draw's law"),
            Column("E W2(data, law)", note="expected over draws"),
            Column("nearest dist", note="mean ± s.e. distance of mixture samples to the nearest training point")]
    return Table(f"Generalisation through variance: d = {d}, {sampler} ({steps} steps) on {process!r}, "
                 f"{draws} noise-draw models per row, allocation {allocation}, weighting {weighting}", cols, rows,
                 ["time-local linear model: off the training span the fit is exact for N P > d and ridge 0, so finite P "
                  "adds no off-span variance there (Monte Carlo values ~1e-16 are round-off of that exact 0)"], key_columns=4)


def variance_tables(d: int = 16, ratios: Sequence[float] = (0.25, 0.5, 2.0), Ps: Sequence[int] = (1, 2, 4, 16, 64),
                    ridges: Sequence[float] = (0.0, 0.01), process: Process | None = None, sampler: str = "ddpm",
                    steps: int | None = 20, draws: int = 24, samples: int = 1000, exponent: float = 1.0,
                    allocation: str = "per_step", window: tuple[float, float] | None = None, weighting: str = "eps",
                    v_times: Sequence[float] | None = None, seed=0, **options) -> dict[str, Table]:
    """The tables of ``lindiff variance`` by name: ``"variance"`` (:func:`variance_table`) and
    ``"v_kernel"`` (:func:`v_kernel_table` for the smallest N/d, the largest ridge and the smallest P > d/N, at
    every sampler step unless ``v_times`` is given) and ``"v_spectrum"`` (:func:`v_kernel_spectrum_table` at the
    earliest of those times).

    Examples
    --------
    >>> tables = variance_tables(d=4, ratios=(0.5,), Ps=(4,), ridges=(0.0,), steps=4, draws=3, samples=20)
    >>> sorted(tables)
    ['v_kernel', 'v_spectrum', 'variance']
    """
    process = DDPM.linear(1000) if process is None else process
    main = variance_table(d, ratios, Ps, ridges, process, sampler, steps, draws, samples, exponent, allocation, window,
                          weighting, seed, **options)
    gen = as_rng(seed)
    p0 = Gaussian.from_spectrum(np.arange(1, d + 1, dtype=float) ** -float(exponent) * d
                                / np.sum(np.arange(1, d + 1, dtype=float) ** -float(exponent)))
    N = max(2, int(round(float(min(ratios)) * d)))
    X = p0.sample(N, gen)  # the same first training set as the main table
    P = next((p for p in sorted(Ps) if N * p > d), max(Ps))
    prog = build_sampler(process, sampler, steps, **_sampler_options(sampler, dict(options)))
    if v_times is None:  # every time the sampler evaluates the model
        v_times = sorted({float(stage.t) for st in prog.steps for stage in st.stages})
    vk = v_kernel_table(X, process, v_times, P, max(ridges), p0, sampler, steps, allocation=allocation, window=window,
                        weighting=weighting, **options)
    spectrum = v_kernel_spectrum_table(X, process, float(min(v_times)), P, max(ridges), p0)
    return {"variance": main, "v_kernel": vk, "v_spectrum": spectrum}
