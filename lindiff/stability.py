r"""Score stability of the fitted linear denoiser and the generalisation bounds built on it
(Farghly, Rebeschini, Deligiannidis & Doucet 2025, "Implicit Regularisation in Diffusion Models"),
computed exactly for Gaussian data.

Everything is in *score units* (the DSM target is :math:`-\xi/\sigma`), per time t, for the ridge-fitted
model :math:`s(x) = -K(x - \alpha\hat\mu)`, :math:`K = (\alpha^2\hat S + (\sigma^2 + r)I)^{-1}`.

Replace-one.  Replacing training point :math:`z_i` by :math:`z'` changes the mean and 1/N covariance by

.. math:: \hat\mu' = \hat\mu + \delta,\quad \hat S' = \hat S + \tfrac1N(uu^T - ww^T) - \delta\delta^T,\qquad
          u = z' - \hat\mu,\ w = z_i - \hat\mu,\ \delta = (u - w)/N,

a rank-3 update, so :math:`K'` follows from Woodbury with a 3 x 3 solve (checked against refitting).

Quantities per (training set, i, z', t), all exact:

* ``eps2_pop`` :math:`= \mathbb E_{x\sim p_t}\|s'(x) - s(x)\|^2` (population measure);
* ``eps2_own`` :math:`= \mathbb E_{x\sim\mathcal N(\alpha z_i, \sigma^2 I)}\|s' - s\|^2` (the replaced point's
  own noised law, the measure in the replace-one identity);
* ``delta_loss`` :math:`= \ell_t(s', z_i) - \ell_t(s, z_i)`, whose mean over (S, i, z') equals the expected
  generalisation gap (replace-one identity: exchangeability of :math:`z_i` and :math:`z'`);
* ``b2`` :math:`= \mathbb E_\xi\|s(x) + s'(x) - 2y\|^2`, :math:`y = -\xi/\sigma`, :math:`x = \alpha z_i + \sigma\xi`.

The bound.  Since :math:`\ell(s', z) - \ell(s, z) = \mathbb E_\xi\langle s' - s, s' + s - 2y\rangle`,
Cauchy–Schwarz over (S, i, z', ξ) gives

.. math:: \mathbb E\,\mathrm{gap}_t \le \sqrt{\mathbb E\,\varepsilon^2_{own}(t)}\;\sqrt{\mathbb E\,b^2(t)} .

This is the shape of the paper's stability theorem (generalisation gap <= stability x loss-sized
factor); the paper's exact constants could not be checked, so the printed bound is our reconstruction,
and every table says so.  Integrated over time with positive quadrature weights the same inequality
holds for the weighted sums.  Uniform (worst-case) stability is infinite for Gaussian data (the change
is unbounded in z'), so the averaged versions are reported.

Estimators (all unbiased for the expectations over (S, i, z')):

* each training set S gets ``draws`` replacement points z', and every term is averaged *exactly* over
  the replaced index i (all N); the terms are evaluated for all pairs at once in 3 x 3 algebra
  (:math:`s' - s = PQP^T`, rank <= 3);
* E gap has two routes on the same sets: the exact gap of S with a control variate (its first-order
  term in :math:`(\hat S - \Sigma, \hat\mu - \mu)`, whose mean is known exactly), and the replace-one
  mean; their paired difference is printed as a z-score (the identity, checked);
* bound/gap uses the replace-one mean, computed on the same (S, i, z') draws as the bound (common random
  numbers): the ratio's delta-method standard error is then ~10x smaller than with the exact-gap route,
  and the tables say "not resolved" wherever the 95% interval reaches below 1.  (With few draws the
  first version of these tables printed ratios below 1: eps2_own is right-skewed, so small samples
  underestimate it, and the exact per-set gap fluctuates by O(sqrt N) times its mean.  With 100x the
  draws the ratios settle at 1.5-3.5 at N = 160; ``benchmarks/stability_convergence.py`` reruns that.)

Large N: :math:`\mathbb E\,\mathrm{gap}_t \approx 2G_t/N` and :math:`\varepsilon^2_{pop}(t)\approx 2G_t/N^2`, so
gap ≈ N × population stability, with
:math:`G_t = \alpha^2\operatorname{tr}(\Sigma_t^{-2}\Sigma) + \alpha^4[\operatorname{tr}(\Sigma_t^{-3}\Sigma^2)
+ \operatorname{tr}(\Sigma_t^{-1}\Sigma)\operatorname{tr}(\Sigma_t^{-2}\Sigma)]`.

The KL bound via Girsanov (continuous VP, exact reverse SDE from N(0, I) stopped at t0):
:math:`\mathrm{KL}(p_{t_0}\|q) \le \mathrm{KL}(p_T\|\mathcal N(0, I)) + \int_{t_0}^T \tfrac{\beta(t)}{2}
\mathbb E_{p_t}\|s - \nabla\log p_t\|^2 dt`, reported beside the exact KL of the sampler's law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import integrate

from ._validation import RNGLike, as_finite_array, as_nonnegative_float, as_positive_int, as_rng, as_training_set
from .ensembles import monte_carlo_over_training_sets
from .gaussian import Gaussian, kl, w2
from .losses import generalisation_gap, score_matching_loss
from .processes import Process
from .samplers import sampling_law
from .scores import LinearDenoiser
from .tables import Column, Table

__all__ = ["score_stability", "StabilityResult", "sampler_regularisation_table", "replace_one", "ReplaceOneScores",
           "replace_one_scores", "stability_terms", "large_n_gap", "stability_draws", "stability_table",
           "integrated_table", "girsanov_bound", "kl_bound_table", "bound_estimate", "BoundEstimate", "stability_tables"]


def replace_one(X, i: int, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Mean and 1/N covariance after replacing row ``i`` of X by ``z``, via the rank-3 update.

    Returns ``(mean', cov', U3)`` where ``cov' = cov + U3 diag(1/N, -1/N, -1) U3^T``, ``U3 = [u, w, delta]``.
    """
    X = as_training_set(X, "X")
    N, d = X.shape
    if not 0 <= int(i) < N:
        raise ValueError(f"i must index a training point, 0 <= i < {N}, got {i}")
    z = as_finite_array(z, "z", ndim=1)
    if z.shape != (d,):
        raise ValueError(f"z must have shape ({d},), got {z.shape}")
    g = Gaussian.fit(X)
    u, w = z - g.mean, X[int(i)] - g.mean
    delta = (u - w) / N
    cov = g.cov + (np.outer(u, u) - np.outer(w, w)) / N - np.outer(delta, delta)
    return g.mean + delta, 0.5 * (cov + cov.T), np.stack([u, w, delta], axis=1)


@dataclass(frozen=True)
class ReplaceOneScores:
    """Score weights ``s(x) = A x + c`` before and after a replacement, at one time."""

    A: np.ndarray
    c: np.ndarray
    A_new: np.ndarray
    c_new: np.ndarray


def _setup(X, ridge):
    X = as_training_set(X, "X", min_points=2)
    g = Gaussian.fit(X)
    return X, g, as_nonnegative_float(ridge, "ridge")


def replace_one_scores(X, i: int, z, process: Process, t, ridge: float = 0.0) -> ReplaceOneScores:
    """Exact scores of the ridge-fitted model before and after replacing point ``i`` by ``z`` (Woodbury)."""
    X, g, ridge = _setup(X, ridge)
    N = X.shape[0]
    mean_new, _, U3 = replace_one(X, i, z)
    a, s = float(process.alpha(t)), float(process.sigma(t))
    U, lam = g.eigenvectors, g.eigenvalues
    h = a * a * lam + s * s + ridge
    K = (U / h) @ U.T
    P = a * (K @ U3)
    C_inv = np.diag([float(N), -float(N), -1.0])
    M = C_inv + a * a * (U3.T @ K @ U3)
    K_new = K - P @ np.linalg.solve(M, P.T)
    A, A_new = -K, -0.5 * (K_new + K_new.T)
    return ReplaceOneScores(A, a * K @ g.mean, A_new, a * K_new @ mean_new)


def _mean_square(D, e, nu, Gamma) -> float:
    """E ||D x + e||^2 for x ~ N(nu, Gamma)."""
    r = D @ nu + e
    return float(np.sum((D @ Gamma) * D) + r @ r)


def stability_terms(X, i: int, z, process: Process, t, p0: Gaussian, ridge: float = 0.0) -> dict:
    """``eps2_pop``, ``eps2_own``, ``delta_loss`` and ``b2`` (see module docstring) for one replacement."""
    sc = replace_one_scores(X, i, z, process, t, ridge)
    X = np.asarray(X, float)
    a, s = float(process.alpha(t)), float(process.sigma(t))
    d = X.shape[1]
    eye = np.eye(d)
    zi = X[int(i)]
    D, e = sc.A_new - sc.A, sc.c_new - sc.c
    pt = process.marginal(p0, t)
    eps2_pop = _mean_square(D, e, pt.mean, pt.cov)
    eps2_own = _mean_square(D, e, a * zi, s * s * eye)

    def loss(A, c):  # l_t(s, z_i) = ||alpha A z + c||^2 + ||sigma A + I/sigma||_F^2
        r = a * A @ zi + c
        return float(r @ r + np.sum((s * A + eye / s) ** 2))

    delta_loss = loss(sc.A_new, sc.c_new) - loss(sc.A, sc.c)
    S, c2 = sc.A + sc.A_new, sc.c + sc.c_new
    r = a * S @ zi + c2
    b2 = float(r @ r + np.sum((s * S + 2 * eye / s) ** 2))
    return {"eps2_pop": eps2_pop, "eps2_own": eps2_own, "delta_loss": delta_loss, "b2": b2}


def large_n_gap(p0: Gaussian, process: Process, t, N: int) -> float:
    r"""Leading-order expected gap :math:`2G_t/N` (score units) of the unregularised fit."""
    a, s = float(process.alpha(t)), float(process.sigma(t))
    lam_t = a * a * p0.eigenvalues + s * s
    l = p0.eigenvalues
    G = a * a * np.sum(l / lam_t**2) + a**4 * (np.sum(l**2 / lam_t**3) + np.sum(l / lam_t) * np.sum(l / lam_t**2))
    return float(2 * G / as_positive_int(N, "N"))


# ------------------------------------------------------------------------------------------------
# Vectorised replace-one terms.  D = s' - s is rank <= 3 (D = P Q P^T with P = alpha K U3, Q = M^{-1}),
# so every quantity is a 3 x 3 product per pair: O(d) work per (i, z') instead of a d x d refit, and D is
# formed directly (no K' - K cancellation at large N).  ``stability_terms`` is the one-pair reference.
def _pair_terms(X: np.ndarray, g: Gaussian, K: np.ndarray, idx: np.ndarray, Z: np.ndarray, a: float, s: float,
                pt: Gaussian) -> dict[str, np.ndarray]:
    N, d = X.shape
    mu = g.mean
    zi = X[idx]
    u, w = Z - mu, zi - mu
    delta = (u - w) / N
    U3 = np.stack([u, w, delta], axis=2)
    P = a * np.einsum("ij,njk->nik", K, U3)
    M = a * np.einsum("nik,nil->nkl", U3, P)
    M[:, 0, 0] += N
    M[:, 1, 1] -= N
    M[:, 2, 2] -= 1.0
    Q = np.linalg.inv(M)  # 3 x 3, invertible whenever the new S_t is (matrix determinant lemma)
    Q = 0.5 * (Q + np.swapaxes(Q, 1, 2))
    QG = Q @ np.einsum("nik,nil->nkl", P, P)
    fro2 = np.einsum("nkl,nlk->n", QG, QG)  # ||D||_F^2

    def apply(v):  # D v, row-wise
        return np.einsum("nik,nk->ni", P, np.einsum("nkl,nl->nk", Q, np.einsum("nil,ni->nl", P, v)))

    e = a * (delta @ K) - a * apply(mu + delta)  # c' - c, with c = alpha K mu_hat
    r_own = a * apply(zi) + e
    eps2_own = s * s * fro2 + np.einsum("ni,ni->n", r_own, r_own)
    QH = Q @ np.einsum("nik,ij,njl->nkl", P, pt.cov, P)
    r_pop = apply(np.broadcast_to(pt.mean, u.shape)) + e
    eps2_pop = np.einsum("nkl,nlk->n", QH, QG) + np.einsum("ni,ni->n", r_pop, r_pop)
    B = np.eye(d) / s - s * K  # s A + I/s with A = -K
    trBD = np.einsum("nkl,nlk->n", Q, np.einsum("nik,ij,njl->nkl", P, B, P))
    r0 = -a * (w @ K)  # alpha A z_i + c
    r1 = r0 + r_own
    delta_loss = np.einsum("ni,ni->n", r1, r1) - np.einsum("ni,ni->n", r0, r0) + 2 * s * trBD + s * s * fro2
    rb = 2 * r0 + r_own
    b2 = np.einsum("ni,ni->n", rb, rb) + 4 * float(np.sum(B * B)) + 4 * s * trBD + s * s * fro2
    return {"eps2_pop": eps2_pop, "eps2_own": eps2_own, "delta_loss": delta_loss, "b2": b2}


_TERMS = ("eps2_pop", "eps2_own", "delta_loss", "b2")


def _average_terms(X: np.ndarray, g: Gaussian, Z: np.ndarray, process: Process, times: np.ndarray, p0: Gaussian,
                   ridge: float, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per replacement point (rows of Z), the exact average over the replaced index i of each term;
    arrays of shape (len(Z), len(times))."""
    N, d = X.shape
    idx = np.arange(N) if indices is None else np.asarray(indices)
    k = idx.size
    out = {key: np.zeros((Z.shape[0], times.size)) for key in _TERMS}
    chunk = max(1, 20_000 // (k * max(d, 1)))  # bounds the (pairs, d, 3) work arrays
    alphas, sigmas = np.asarray(process.alpha(times), float), np.asarray(process.sigma(times), float)
    for j, t in enumerate(times):
        a, s = float(alphas[j]), float(sigmas[j])
        K = (g.eigenvectors / (a * a * g.eigenvalues + s * s + ridge)) @ g.eigenvectors.T
        K = 0.5 * (K + K.T)
        pt = process.marginal(p0, t)
        for lo in range(0, Z.shape[0], chunk):
            zs = Z[lo:lo + chunk]
            vals = _pair_terms(X, g, K, np.tile(idx, zs.shape[0]), np.repeat(zs, k, axis=0), a, s, pt)
            for key in _TERMS:
                out[key][lo:lo + zs.shape[0], j] = vals[key].reshape(zs.shape[0], k).mean(axis=1)
    return out


def _gap_estimates(g: Gaussian, p0: Gaussian, process: Process, times: np.ndarray, ridge: float,
                   N: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The exact gap of this training set (score units) and the control-variate estimate of its mean.

    gap :math:`= \alpha^2[\operatorname{tr}(K^2(\Sigma - \hat S)) + \Delta^T K^2\Delta]`, :math:`\Delta = \hat\mu - \mu`,
    :math:`K = (\alpha^2\hat S + (\sigma^2 + r)I)^{-1}`.  The control variate is the same expression with the
    population :math:`K_0 = (\alpha^2\Sigma + (\sigma^2 + r)I)^{-1}`; its mean is exactly
    :math:`2\alpha^2\operatorname{tr}(K_0^2\Sigma)/N` (:math:`\mathbb E\hat S = \tfrac{N-1}N\Sigma`,
    :math:`\mathbb E\Delta\Delta^T = \Sigma/N`; ``derivations/stability_estimators.py``), so
    gap - cv + E cv is unbiased and its fluctuations are O(1/N) instead of O(1/sqrt N).
    """
    a2 = np.asarray(process.alpha(times), float)[:, None] ** 2
    s2 = np.asarray(process.sigma(times), float)[:, None] ** 2 + ridge
    U, lam = g.eigenvectors, g.eigenvalues
    dm = g.mean - p0.mean
    h = a2 * lam + s2
    sig_diag = np.einsum("ij,ij->j", U, p0.cov @ U)
    gap = a2[:, 0] * np.sum(((sig_diag - lam) + (U.T @ dm) ** 2) / h**2, axis=1)
    V, ell = p0.eigenvectors, p0.eigenvalues
    h0 = a2 * ell + s2
    shat_diag = np.einsum("ij,ij->j", V, g.cov @ V)
    cv = a2[:, 0] * np.sum(((ell - shat_diag) + (V.T @ dm) ** 2) / h0**2, axis=1)
    expected_cv = 2 * a2[:, 0] * np.sum(ell / h0**2, axis=1) / N
    return gap, gap - cv + expected_cv


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoundEstimate:
    r"""Monte Carlo estimate of :math:`\mathbb E\,\mathrm{gap}`, of the Cauchy–Schwarz bound
    :math:`\sqrt{\mathbb E\varepsilon^2_{own}}\sqrt{\mathbb E b^2}` and of their ratio, each ``(value, s.e.)``.

    The standard errors are the delta method over the independent replicates (training sets, or
    replacement draws for one set), with the sample covariance of (gap, eps2_own, b2): the three are
    evaluated on the same draws (common random numbers), which the covariance accounts for.
    ``resolved`` says whether the two-sided ``level`` interval of the ratio lies above 1.
    """

    gap: tuple[float, float]
    bound: tuple[float, float]
    ratio: tuple[float, float]
    level: float = 0.95

    @property
    def resolved(self) -> bool:
        r, se = self.ratio
        return bool(np.isfinite(se) and r - _z(self.level) * se > 1.0)

    def ratio_cell(self):
        """``(ratio, s.e.)`` where the interval lies above 1, else the string ``"not resolved (r ± se)"``."""
        if self.resolved:
            return self.ratio
        r, se = self.ratio
        return f"not resolved ({r:.3g} ± {se:.2g})"


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def bound_estimate(gap, eps2_own, b2, level: float = 0.95) -> BoundEstimate:
    r"""Delta-method summary of paired replicates of (gap, eps2_own, b2): see :class:`BoundEstimate`.

    With means :math:`\bar g, \bar o, \bar b` and sample covariance C of the replicates (n of them),
    bound :math:`= \sqrt{\bar o\bar b}`, ratio = bound / :math:`\bar g`, and
    :math:`\operatorname{Var}\log\text{ratio}\approx\nabla^T C\nabla/n`,
    :math:`\nabla = (-1/\bar g, 1/(2\bar o), 1/(2\bar b))` (the bound drops the first entry).

    Examples
    --------
    >>> est = bound_estimate([1.0, 1.2, 0.8, 1.1], [0.5, 0.7, 0.4, 0.6], [9.0, 8.0, 10.0, 9.5])
    >>> round(est.bound[0], 3), est.resolved
    (2.24, True)
    """
    cols = [as_finite_array(v, name, ndim=1) for v, name in ((gap, "gap"), (eps2_own, "eps2_own"), (b2, "b2"))]
    n = cols[0].size
    if any(c.size != n for c in cols) or n < 1:
        raise ValueError(f"gap, eps2_own and b2 must be 1-D arrays of the same positive length, got {[c.size for c in cols]}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    data = np.stack(cols)
    g, o, b = data.mean(axis=1)
    if o <= 0 or b <= 0:
        raise ValueError("eps2_own and b2 must have positive means (they are mean squares)")
    bound = math.sqrt(o * b)
    if n < 2:
        return BoundEstimate((float(g), math.inf), (bound, math.inf), (bound / g if g > 0 else math.inf, math.inf), level)
    C = np.cov(data) / n
    grad_b = np.array([0.0, 0.5 / o, 0.5 / b])
    bound_se = bound * math.sqrt(max(float(grad_b @ C @ grad_b), 0.0))
    gap_se = math.sqrt(C[0, 0])
    if g <= 0:  # the ratio is not defined; nothing is resolved
        return BoundEstimate((float(g), gap_se), (bound, bound_se), (math.inf, math.inf), level)
    grad_r = np.array([-1.0 / g, 0.5 / o, 0.5 / b])
    ratio = bound / g
    ratio_se = ratio * math.sqrt(max(float(grad_r @ C @ grad_r), 0.0))
    return BoundEstimate((float(g), gap_se), (bound, bound_se), (ratio, ratio_se), level)


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StabilityResult:
    """Per-time estimates (mean, s.e. over replacement draws) of ``eps2_pop``, ``eps2_own``, ``delta_loss``
    and ``b2``, the exact gap of this training set, and their integrals over ``[eps, T]`` if asked.
    ``values`` holds the per-draw values, shape (draws, len(times)), behind the means."""

    times: np.ndarray
    mean: dict
    stderr: dict
    gap: np.ndarray
    integrated: dict | None
    values: dict | None = None

    def bound(self) -> np.ndarray:
        """Per-time Cauchy–Schwarz factor ``sqrt(eps2_own) sqrt(b2)`` for this training set."""
        return np.sqrt(self.mean["eps2_own"]) * np.sqrt(self.mean["b2"])

    def bound_stderr(self) -> np.ndarray:
        """Delta-method standard error of :meth:`bound` over the replacement draws (inf for one draw)."""
        if self.values is None:
            raise ValueError("this result holds no per-draw values")
        own, b2 = self.values["eps2_own"], self.values["b2"]
        n = own.shape[0]
        if n < 2:
            return np.full(own.shape[1], np.inf)
        o, b = own.mean(axis=0), b2.mean(axis=0)
        var = (own.var(axis=0, ddof=1) / (4 * o * o) + b2.var(axis=0, ddof=1) / (4 * b * b)
               + 2 * np.mean((own - o) * (b2 - b), axis=0) * n / (n - 1) / (4 * o * b)) / n
        return self.bound() * np.sqrt(np.maximum(var, 0.0))


def score_stability(X, process: Process, p0: Gaussian, times: Sequence[float] | None = None, eps: float | None = None,
                    weight: str = "uniform", ridge: float = 0.0, draws: int = 20, indices: int | None = None,
                    points: int = 40, rng: RNGLike = None) -> StabilityResult:
    r"""Score stability of the linear denoiser fitted to X (see the module docstring for each quantity).

    For each of ``draws`` fresh replacement points :math:`z'\sim p_0` the quantities are exact and are
    averaged exactly over the replaced index i (all N, or ``indices`` random ones); the mean and standard
    error are over the draws.  ``times`` gives per-time values; ``eps`` adds their integrals over
    :math:`[\varepsilon, T]` with weight ``"uniform"`` or ``"sigma2"`` (trapezoid on a geometric grid of
    ``points`` nodes; every step for DDPM).  The expectation over training sets is
    :func:`stability_draws`.

    Examples
    --------
    >>> import numpy as np, lindiff as ld
    >>> p0 = ld.Gaussian.from_spectrum([1.0, 0.5])
    >>> X = p0.sample(10, 0)
    >>> res = ld.score_stability(X, ld.OU(), p0, times=[0.1, 1.0], draws=5, rng=1)
    >>> bool(res.mean["eps2_own"][0] > res.mean["eps2_own"][1])
    True
    """
    X = as_training_set(X, "X", min_points=2)
    ridge = as_nonnegative_float(ridge, "ridge")
    gen = as_rng(rng)
    N = X.shape[0]
    draws = as_positive_int(draws, "draws")
    if times is None and eps is None:
        raise ValueError("give times (per-time stability) and/or eps (integrated over [eps, T])")
    grid = np.atleast_1d(np.asarray([] if times is None else times, float))
    nodes, wts = (np.zeros(0), np.zeros(0)) if eps is None else _time_grid(process, float(eps), points)
    if eps is not None:
        wts = wts * _weights(nodes, weight, process)
    allt = np.concatenate([grid, nodes])
    process.check_time(allt, "times")
    g = Gaussian.fit(X)
    vals = {key: np.zeros((draws, allt.size)) for key in _TERMS}
    for r in range(draws):
        z = p0.sample(1, gen)
        idx = None if indices is None else gen.choice(N, size=min(as_positive_int(indices, "indices"), N), replace=False)
        one = _average_terms(X, g, z, process, allt, p0, ridge, idx)
        for key in _TERMS:
            vals[key][r] = one[key][0]
    model = LinearDenoiser.fit(X, process, ridge=ridge)
    gap_all = np.asarray(generalisation_gap(model, X, p0, allt)) / np.asarray(process.sigma(allt), float) ** 2
    k = grid.size
    mean = {key: v[:, :k].mean(axis=0) for key, v in vals.items()}
    se = {key: (v[:, :k].std(axis=0, ddof=1) / math.sqrt(draws) if draws > 1 else np.full(k, np.inf)) for key, v in vals.items()}
    integrated = None
    if eps is not None:
        integrated = {key: _ms(v[:, k:] @ wts) if draws > 1 else (float((v[:, k:] @ wts)[0]), math.inf) for key, v in vals.items()}
        integrated["gap"] = float(gap_all[k:] @ wts)
    return StabilityResult(grid, mean, se, gap_all[:k], integrated, {key: v[:, :k] for key, v in vals.items()})


def _one_set(p0: Gaussian, N: int, process: Process, times: tuple, ridge: float, draws: int, *, rng) -> dict:
    X = p0.sample(N, rng)
    Z = p0.sample(draws, rng)
    t = np.asarray(times, float)
    g = Gaussian.fit(X)
    gap, gap_cv = _gap_estimates(g, p0, process, t, ridge, N)
    terms = _average_terms(X, g, Z, process, t, p0, ridge)
    return {"gap": gap, "gap_cv": gap_cv, **{k: v.mean(axis=0) for k, v in terms.items()}}


def stability_draws(p0: Gaussian, N: int, process: Process, times: Sequence[float], ridge: float = 0.0,
                    repeats: int = 48, draws: int = 4, seed=0, executor=None, progress: bool | None = None) -> dict:
    r"""Monte Carlo over training sets of the exact per-set quantities; arrays of shape (repeats, len(times)).

    For each of ``repeats`` training sets S (N points from ``p0``), ``draws`` replacement points
    :math:`z'\sim p_0` are drawn and every term is averaged exactly over the replaced index i (all N)
    and over the draws.  The same sets serve every key (common random numbers), so ratios of their
    means have small variance.  Keys: ``gap`` (exact gap of S, score units), ``gap_cv`` (the same minus
    a control variate with exactly known mean: an unbiased estimate of E gap with O(1/N) fluctuations,
    see :func:`_gap_estimates`), ``eps2_pop``, ``eps2_own``, ``delta_loss``, ``b2`` (module docstring).

    Examples
    --------
    >>> import lindiff as ld
    >>> res = stability_draws(ld.Gaussian.from_spectrum([1.0, 0.5]), 6, ld.OU(), [0.5], repeats=3, draws=2, progress=False)
    >>> sorted(res), res["b2"].shape
    (['b2', 'delta_loss', 'eps2_own', 'eps2_pop', 'gap', 'gap_cv'], (3, 1))
    """
    times = tuple(float(t) for t in np.atleast_1d(np.asarray(times, float)))
    process.check_time(np.asarray(times), "times")
    ridge = as_nonnegative_float(ridge, "ridge")
    runs = monte_carlo_over_training_sets(_one_set, [(p0, as_positive_int(N, "N", 2), process, times, ridge,
                                                      as_positive_int(draws, "draws"))], repeats, seed, executor,
                                          progress, "stability")[0]
    return {k: np.stack([r[k] for r in runs]) for k in runs[0]}


def _ms(values: np.ndarray):
    """(mean, standard error) over the first axis; the s.e. of a single replicate is unknown: inf."""
    n = values.shape[0]
    return (float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf)


_BOUND_NOTE = ("sqrt(E eps2_own) sqrt(E b2) ± delta-method s.e.: the Cauchy–Schwarz form of the replace-one identity "
               "E gap = E[l(s', z_i) - l(s, z_i)] = E<s' - s, s' + s - 2y>; the paper's theorem has this shape, its "
               "constants here are reconstructed, not confirmed")


_IDENTITY_NOTE = ("(E gap - replace-one) / s.e. of the paired per-set difference: the replace-one identity, checked "
                  "on the same sets (|z| < 2 about 95% of the time)")


def _ratio_note(level: float) -> str:
    return (f"bound / replace-one: both on the same (S, i, z') draws (common random numbers), ± delta-method s.e.; "
            f"'not resolved' where the {level:.0%} interval reaches below 1")


def _identity_z(gap: np.ndarray, replace_one: np.ndarray) -> float:
    diff = gap - replace_one
    se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else math.inf
    return float(diff.mean() / se) if se > 0 else 0.0


def stability_table(p0: Gaussian, Ns: Sequence[int], process: Process, times: Sequence[float], ridge: float = 0.0,
                    repeats: int = 48, draws: int = 4, seed=0, executor=None, progress: bool | None = None,
                    level: float = 0.95) -> Table:
    """Exact gap | replace-one estimate | stabilities | Cauchy–Schwarz bound | ratio, per (N, t).

    Every Monte Carlo column is mean ± s.e. over ``repeats`` training sets (each with ``draws``
    replacement points averaged exactly over i); the ratio says "not resolved" where its ``level``
    interval reaches below 1.

    Examples
    --------
    >>> import lindiff as ld
    >>> table = stability_table(ld.Gaussian.from_spectrum([1.0, 0.5]), [8], ld.OU(3.0), [0.3], repeats=8, progress=False)
    >>> ratio, se = table.column("bound/gap")[0]
    >>> bool(ratio - 1.96 * se > 1)
    True
    """
    rows = []
    for N in Ns:
        res = stability_draws(p0, N, process, times, ridge, repeats, draws, seed, executor, progress)
        for j, t in enumerate(times):
            est = bound_estimate(res["delta_loss"][:, j], res["eps2_own"][:, j], res["b2"][:, j], level)
            rows.append([N, t, _ms(res["gap_cv"][:, j]), est.gap, _identity_z(res["gap_cv"][:, j], res["delta_loss"][:, j]),
                         _ms(res["eps2_pop"][:, j]), _ms(res["eps2_own"][:, j]), _ms(N * res["eps2_pop"][:, j]),
                         large_n_gap(p0, process, t, N) if ridge == 0 else None, est.bound, est.ratio_cell()])
    cols = [Column("N"), Column("t"),
            Column("E gap", "score units", "exact gap of each set minus its first-order term in (S_hat - Sigma, mu_hat - mu), "
                   "whose mean is known exactly (control variate); mean ± s.e. over sets"),
            Column("replace-one", note="mean of l(s', z_i) - l(s, z_i) over (S, i, z'): the same expectation, other route"),
            Column("identity z", note=_IDENTITY_NOTE, fmt=".2f"),
            Column("eps2_pop", note="E||s' - s||^2 under p_t"), Column("eps2_own", note="E||s' - s||^2 under N(alpha z_i, sigma^2 I)"),
            Column("N eps2_pop", note="large-N prediction of E gap"), Column("2G/N", note="leading-order E gap (exact formula)"),
            Column("bound", note=_BOUND_NOTE),
            Column("bound/gap", note=_ratio_note(level))]
    caption = (f"Score stability of the linear denoiser (ridge {ridge:g}), d = {p0.dim}, {process!r}; "
               f"{repeats} training sets x {draws} replacement points, each averaged exactly over the replaced index")
    return Table(caption, cols, rows, ["uniform (worst-case) stability is infinite for Gaussian data; averaged versions shown"])


def _weights(times: np.ndarray, weight: str, process: Process) -> np.ndarray:
    if weight == "uniform":
        return np.ones_like(times)
    if weight == "sigma2":
        return np.asarray(process.sigma(times), float) ** 2
    raise ValueError(f"weight must be 'uniform' or 'sigma2', got {weight!r}")


def _time_grid(process: Process, eps: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights on [eps, T]: geometric trapezoid (continuous) or every step (DDPM)."""
    nodes, W = _shared_grid(process, [eps], points)
    return nodes, W[0]


def _shared_grid(process: Process, eps_values: Sequence[float], points: int) -> tuple[np.ndarray, np.ndarray]:
    """One set of nodes for several lower limits: a geometric grid from min(eps) to T with every eps
    added as a node; row k of the weights is the trapezoid rule on the nodes >= eps_k (every step >= eps_k
    for DDPM).  Positive weights, shared by the gap and the bound, so Cauchy–Schwarz holds for the rule."""
    eps = np.asarray(eps_values, float)
    points = as_positive_int(points, "points", 2)
    if process.discrete:
        t = np.arange(max(1, int(math.ceil(eps.min()))), process.T + 1, dtype=float)
        return t, np.stack([(t >= math.ceil(e)).astype(float) for e in eps])
    if np.any(eps <= 0) or np.any(eps >= process.T):
        raise ValueError(f"eps values must lie in (0, T) = (0, {process.T:g}), got {list(eps_values)}")
    t = np.unique(np.concatenate([np.geomspace(eps.min(), process.T, points), eps]))
    W = np.zeros((eps.size, t.size))
    dt = np.diff(t)
    for k, e in enumerate(eps):
        keep = t[:-1] >= e
        W[k, :-1] += np.where(keep, dt / 2, 0.0)
        W[k, 1:] += np.where(keep, dt / 2, 0.0)
    return t, W


def integrated_table(p0: Gaussian, Ns: Sequence[int], process: Process, eps_values: Sequence[float],
                     weight: str = "uniform", ridge: float = 0.0, repeats: int = 48, draws: int = 2, points: int = 40,
                     seed=0, progress: bool | None = None, level: float = 0.95) -> Table:
    r"""Time-integrated gap and bound over :math:`[\varepsilon, T]` against ε (denoising regularisation).

    For N < d the integrated gap grows without bound as ε -> 0 (the null modes contribute
    :math:`\alpha^2\operatorname{tr}(P_{null}\Sigma)/\sigma^4` per time); for N > d it stays bounded.
    All ε share one grid and one set of draws.

    Examples
    --------
    >>> import lindiff as ld
    >>> table = integrated_table(ld.Gaussian.from_spectrum([1.0, 0.5]), [8], ld.OU(3.0), [0.01, 0.1], repeats=6,
    ...                          points=10, progress=False)
    >>> gaps = [g for g, _ in table.column("int gap")]
    >>> bool(gaps[0] > gaps[1])  # integrating from earlier times adds gap
    True
    """
    nodes, W = _shared_grid(process, eps_values, points)
    W = W * _weights(nodes, weight, process)
    rows = []
    for N in Ns:
        res = stability_draws(p0, N, process, nodes, ridge, repeats, draws, seed, None, progress)
        for k, eps in enumerate(eps_values):
            w = W[k]
            est = bound_estimate(res["delta_loss"] @ w, res["eps2_own"] @ w, res["b2"] @ w, level)
            rows.append([N, float(eps), _ms(res["gap_cv"] @ w), est.gap, _identity_z(res["gap_cv"] @ w, res["delta_loss"] @ w),
                         _ms(res["eps2_pop"] @ w), est.bound, est.ratio_cell()])
    cols = [Column("N"), Column("eps", note="early-stopping time of the forward process"),
            Column("int gap", note=f"integral over [eps, T] (weight {weight}, trapezoid on {nodes.size} shared nodes) of "
                   "the control-variate gap estimate; mean ± s.e. over sets"),
            Column("int replace-one", note="the same integral of l(s', z_i) - l(s, z_i)"),
            Column("identity z", note=_IDENTITY_NOTE, fmt=".2f"),
            Column("int eps2_pop"), Column("int bound", note="Cauchy–Schwarz over (S, i, z', t) with the same quadrature "
                                                            "weights: " + _BOUND_NOTE),
            Column("bound/gap", note=_ratio_note(level))]
    return Table(f"Denoising regularisation: time-integrated gap and bound, d = {p0.dim}, {process!r}; "
                 f"{repeats} training sets x {draws} replacement points", cols, rows)


def girsanov_bound(model, p0: Gaussian, process: Process, t0: float, rtol: float = 1e-8) -> tuple[float, float]:
    r"""(bound, exact): :math:`\mathrm{KL}(p_T\|\mathcal N(0,I)) + \int_{t_0}^T\tfrac{\beta}{2}\mathbb E_{p_t}\|s -
    \nabla\log p_t\|^2dt` and the exact :math:`\mathrm{KL}(p_{t_0}\|q)` of the reverse-SDE law q from N(0, I)."""
    if process.discrete:
        raise ValueError("the Girsanov bound needs a continuous process (VP, OU)")
    t0 = as_nonnegative_float(t0, "t0")
    if not 0 < t0 < process.T:
        raise ValueError(f"t0 must lie in (0, T) = (0, {process.T:g}), got {t0!r}")
    prior = kl(process.marginal(p0, process.T), Gaussian.standard(p0.dim))
    f = lambda t: 0.5 * float(process.beta(t)) * float(score_matching_loss(model, p0, t))  # noqa: E731
    # split the integral geometrically: the integrand is steep near t0
    edges = np.geomspace(t0, process.T, 12)
    integral = sum(integrate.quad(f, lo, hi, epsrel=rtol, epsabs=0, limit=200)[0] for lo, hi in zip(edges[:-1], edges[1:]))
    law = sampling_law(model, process, "sde", t_min=t0)
    return float(prior + integral), float(kl(process.marginal(p0, t0), law))


def kl_bound_table(p0: Gaussian, Ns: Sequence[int], process: Process, t0_values: Sequence[float], ridge: float = 0.0,
                   repeats: int = 5, seed=0) -> Table:
    """Exact KL of the reverse-SDE law of the fitted model vs the Girsanov bound, mean ± s.e. over training sets.

    The bound holds on every training set (it is an inequality between exact numbers, up to the
    quadrature tolerance), so the table gives the smallest per-set excess beside the ratio of means.
    """
    rows = []
    rng = as_rng(seed)
    repeats = as_positive_int(repeats, "repeats")
    for N in Ns:
        sets = [p0.sample(N, rng) for _ in range(repeats)]
        for t0 in t0_values:
            pairs = np.array([girsanov_bound(LinearDenoiser.fit(X, process, ridge=ridge), p0, process, t0) for X in sets])
            bound, exact = pairs[:, 0], pairs[:, 1]
            rows.append([N, t0, _ms(exact) if repeats > 1 else float(exact[0]), _ms(bound) if repeats > 1 else float(bound[0]),
                         _ratio_of_means(bound, exact), float(np.min(bound - exact))])
    cols = [Column("N"), Column("t0"), Column("exact KL(p_t0 || q)", "nats", "reverse SDE from N(0, I), exact law; mean ± s.e. over sets"),
            Column("Girsanov bound", "nats", "KL(p_T||N(0,I)) + int beta/2 Fisher (adaptive quadrature)"),
            Column("bound/exact", note="ratio of the means ± delta-method s.e. over sets", fmt=".6g"),
            Column("min excess", "nats", "smallest bound - exact over the sets (>= 0: the bound holds on every set)", ".2e")]
    return Table(f"KL of the sampled distribution: exact vs Girsanov bound, d = {p0.dim}, {process!r}; {repeats} training sets",
                 cols, rows)


def _ratio_of_means(num: np.ndarray, den: np.ndarray):
    n = num.size
    r = float(num.mean() / den.mean())
    if n < 2:
        return (r, math.inf)
    C = np.cov(np.stack([num, den])) / n
    grad = np.array([1.0 / num.mean(), -1.0 / den.mean()])
    return (r, r * math.sqrt(max(float(grad @ C @ grad), 0.0)))


def sampler_regularisation_table(p0: Gaussian, N: int, process: Process, steps_list: Sequence[int], t_min: float = 1e-3,
                                 sampler: str = "euler_maruyama", n: int = 1000, rng: RNGLike = None,
                                 progress: bool | None = None) -> Table:
    """Sampler regularisation: coarse grids against fine ones, on one training set.

    The exact empirical score (Monte Carlo: fraction of copies and median distance to the nearest
    training point) beside the fitted linear denoiser (exact KL and W2 of its output law to the data).
    The memorising score copies training points once the grid is fine; the linear model has nothing to
    un-memorise for N > d, so its KL changes only through the discretisation error.
    """
    from . import mc
    from .memorisation import nearest_ratio
    from .scores import EmpiricalScore

    gen = as_rng(rng)
    X = p0.sample(as_positive_int(N, "N", minimum=2), gen)
    emp, lin = EmpiricalScore(X, process), LinearDenoiser.fit(X, process)
    rows = []
    for steps in steps_list:
        x = mc.sample(emp, process, sampler, n, gen, steps=steps, t_min=t_min, progress=progress)
        first, ratio = nearest_ratio(x, X)
        k = int(np.sum(ratio < 1 / 3))
        law = sampling_law(lin, process, sampler, steps, t_min=t_min)
        rows.append([steps, _fraction_cell(k, n), _ms(first), kl(p0, law) / p0.dim, float(w2(p0, law))])
    cols = [Column("grid points"),
            Column("copies (empirical)", note="Monte Carlo fraction ± binomial s.e.; with no copy, the 95% upper limit 3/n"),
            Column("nearest dist (empirical)", note="mean ± s.e. of the distance to the nearest training point"),
            Column("KL(data||law)/d (linear)", "nats", f"exact {sampler} law of the fitted denoiser"),
            Column("W2(data, law) (linear)", note="exact")]
    return Table(f"Sampler regularisation: N = {N}, d = {p0.dim}, t_min = {t_min:g}, {process!r}", cols, rows)


def _fraction_cell(k: int, n: int):
    if k == 0:  # the binomial s.e. would be 0: give the one-sided 95% limit ("rule of three") instead
        return f"0 (< {3 / n:.2g}, 95%)"
    if k == n:
        return f"1 (> {1 - 3 / n:.2g}, 95%)"
    p = k / n
    return (p, math.sqrt(p * (1 - p) / n))


def stability_tables(d: int = 5, Ns: Sequence[int] = (4, 10, 40, 160), times: Sequence[float] = (0.05, 0.3, 1.0),
                     eps_values: Sequence[float] = (0.001, 0.01, 0.1), ridge: float = 0.0, repeats: int = 48,
                     draws: int = 4, integrated_repeats: int = 32, integrated_draws: int = 2, kl_repeats: int = 3,
                     exponent: float = 1.0, process: Process | None = None, seed=0, executor=None,
                     progress: bool | None = None, level: float = 0.95) -> dict[str, Table]:
    """The four tables of ``lindiff stability``, by name: ``"per_time"`` (:func:`stability_table`),
    ``"integrated"`` (:func:`integrated_table`), ``"kl_bound"`` (:func:`kl_bound_table`) and
    ``"sampler"`` (:func:`sampler_regularisation_table`), for power-law data ``k^-exponent`` in d
    dimensions under ``process`` (default ``OU(3.0)``).  The defaults resolve every bound/gap row
    (95% intervals above 1) in a few seconds.
    """
    from .processes import OU
    from .spectra import power_law

    process = OU(3.0) if process is None else process
    p0 = Gaussian.from_spectrum(power_law(as_positive_int(d, "d"), exponent))
    Ns = [as_positive_int(N, "N", 2) for N in Ns]
    return {
        "per_time": stability_table(p0, Ns, process, list(times), ridge, repeats, draws, seed, executor, progress, level),
        "integrated": integrated_table(p0, Ns, process, list(eps_values), ridge=ridge, repeats=integrated_repeats,
                                       draws=integrated_draws, seed=seed, progress=progress, level=level),
        "kl_bound": kl_bound_table(p0, Ns, process, sorted({max(eps_values), 0.3}), ridge=ridge, repeats=kl_repeats, seed=seed),
        "sampler": sampler_regularisation_table(p0, max(Ns), process, (3, 6, 12, 25, 50, 100), t_min=min(eps_values),
                                                n=300, rng=seed, progress=progress),
    }

