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

The bound (reconstructed Cauchy–Schwarz form of the paper's stability theorem; its exact constants
are not confirmed, see ``notes/score_stability.md`` §1.4):
since :math:`\ell(s', z) - \ell(s, z) = \mathbb E_\xi\langle s' - s, s' + s - 2y\rangle`,

.. math:: \mathbb E\,\mathrm{gap}_t \le \sqrt{\mathbb E\,\varepsilon^2_{own}(t)}\;\sqrt{\mathbb E\,b^2(t)},

with expectations over (S, i, z').  Integrated over time with a weight :math:`\tau(t)` the same
inequality holds for :math:`\int\tau` of each factor.  Uniform (worst-case) stability is infinite for
Gaussian data (the change is unbounded in z'), so the averaged versions are reported.

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

__all__ = ["score_stability", "StabilityResult", "sampler_regularisation_table", "replace_one", "ReplaceOneScores", "replace_one_scores", "stability_terms", "large_n_gap",
           "stability_draws", "stability_table", "integrated_table", "girsanov_bound", "kl_bound_table"]


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
@dataclass(frozen=True)
class StabilityResult:
    """Per-time estimates (mean, s.e. over replacement draws) of ``eps2_pop``, ``eps2_own``, ``delta_loss``
    and ``b2``, the exact gap of this training set, and their integrals over ``[eps, T]`` if asked."""

    times: np.ndarray
    mean: dict
    stderr: dict
    gap: np.ndarray
    integrated: dict | None

    def bound(self) -> np.ndarray:
        """Per-time Cauchy–Schwarz factor ``sqrt(eps2_own) sqrt(b2)`` for this training set."""
        return np.sqrt(self.mean["eps2_own"]) * np.sqrt(self.mean["b2"])


def score_stability(X, process: Process, p0: Gaussian, times: Sequence[float] | None = None, eps: float | None = None,
                    weight: str = "uniform", ridge: float = 0.0, draws: int = 20, indices: int | None = None,
                    points: int = 40, rng: RNGLike = None) -> StabilityResult:
    r"""Score stability of the linear denoiser fitted to X (see the module docstring for each quantity).

    For each of ``draws`` fresh replacement points :math:`z'\sim p_0` the quantities are exact and are
    averaged exactly over the replaced index i (all N, or ``indices`` random ones); the mean and standard
    error are over the draws.  ``times`` gives per-time values; ``eps`` adds their integrals over
    :math:`[arepsilon, T]` with weight ``"uniform"`` or ``"sigma2"`` (trapezoid on a geometric grid of
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
    gen = as_rng(rng)
    N = X.shape[0]
    if times is None and eps is None:
        raise ValueError("give times (per-time stability) and/or eps (integrated over [eps, T])")
    grid = np.asarray([] if times is None else times, float)
    nodes, wts = (np.zeros(0), np.zeros(0)) if eps is None else _time_grid(process, float(eps), points)
    if eps is not None:
        wts = wts * _weights(nodes, weight, process)
    allt = np.concatenate([grid, nodes])
    process.check_time(allt, "times")
    keys = ("eps2_pop", "eps2_own", "delta_loss", "b2")
    vals = {k: np.zeros((as_positive_int(draws, "draws"), allt.size)) for k in keys}
    for r in range(draws):
        z = p0.sample(1, gen)[0]
        idx = range(N) if indices is None else gen.choice(N, size=min(int(indices), N), replace=False)
        idx = list(idx)
        for j, t in enumerate(allt):
            acc = {k: 0.0 for k in keys}
            for i in idx:
                for k, v in stability_terms(X, i, z, process, t, p0, ridge).items():
                    acc[k] += v / len(idx)
            for k in keys:
                vals[k][r, j] = acc[k]
    model = LinearDenoiser.fit(X, process, ridge=ridge)
    gap_all = np.asarray(generalisation_gap(model, X, p0, allt)) / np.asarray(process.sigma(allt), float) ** 2
    k = grid.size
    mean = {key: v[:, :k].mean(axis=0) for key, v in vals.items()}
    se = {key: (v[:, :k].std(axis=0, ddof=1) / math.sqrt(draws) if draws > 1 else np.full(k, np.inf)) for key, v in vals.items()}
    integrated = None
    if eps is not None:
        integrated = {key: _ms(v[:, k:] @ wts) if draws > 1 else (float((v[:, k:] @ wts)[0]), math.inf) for key, v in vals.items()}
        integrated["gap"] = float(gap_all[k:] @ wts)
    return StabilityResult(grid, mean, se, gap_all[:k], integrated)


def _one_set(p0: Gaussian, N: int, process: Process, times: tuple, ridge: float, draws: int, *, rng) -> dict:
    X = p0.sample(N, rng)
    model = LinearDenoiser.fit(X, process, ridge=ridge)
    gap = np.asarray(generalisation_gap(model, X, p0, np.asarray(times))) / np.asarray(process.sigma(np.asarray(times))) ** 2
    rows = {k: np.zeros((draws, len(times))) for k in ("eps2_pop", "eps2_own", "delta_loss", "b2")}
    for r in range(draws):
        i = int(rng.integers(N))
        z = p0.sample(1, rng)[0]
        for j, t in enumerate(times):
            for k, v in stability_terms(X, i, z, process, t, p0, ridge).items():
                rows[k][r, j] = v
    return {"gap": gap, **{k: v.mean(axis=0) for k, v in rows.items()}}


def stability_draws(p0: Gaussian, N: int, process: Process, times: Sequence[float], ridge: float = 0.0,
                    repeats: int = 20, draws: int = 4, seed=0, executor=None, progress: bool | None = None) -> dict:
    """Monte Carlo over training sets (``repeats``) and replacements (``draws`` per set, random i and z' ~ p0)
    of the exact per-draw quantities; returns arrays of shape (repeats, len(times)) per key."""
    times = tuple(float(t) for t in times)
    runs = monte_carlo_over_training_sets(_one_set, [(p0, as_positive_int(N, "N", 2), process, times, ridge,
                                                      as_positive_int(draws, "draws"))], repeats, seed, executor,
                                          progress, "stability")[0]
    return {k: np.stack([r[k] for r in runs]) for k in runs[0]}


def _ms(values: np.ndarray):
    return (float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.shape[0])))


def stability_table(p0: Gaussian, Ns: Sequence[int], process: Process, times: Sequence[float], ridge: float = 0.0,
                    repeats: int = 20, draws: int = 4, seed=0, executor=None, progress: bool | None = None) -> Table:
    """Exact gap | replace-one estimate | stabilities | Cauchy–Schwarz bound | ratio, per (N, t)."""
    rows = []
    for N in Ns:
        res = stability_draws(p0, N, process, times, ridge, repeats, draws, seed, executor, progress)
        for j, t in enumerate(times):
            gap = res["gap"][:, j]
            bound = math.sqrt(res["eps2_own"][:, j].mean()) * math.sqrt(res["b2"][:, j].mean())
            rows.append([N, t, _ms(gap), _ms(res["delta_loss"][:, j]), _ms(res["eps2_pop"][:, j]),
                         _ms(res["eps2_own"][:, j]), N * res["eps2_pop"][:, j].mean(),
                         large_n_gap(p0, process, t, N) if ridge == 0 else None, bound, bound / gap.mean()])
    cols = [Column("N"), Column("t"), Column("E gap", "score units", "exact per set, mean ± s.e. over sets"),
            Column("replace-one", note="mean of l(s', z_i) - l(s, z_i): the same expectation, other route"),
            Column("eps2_pop", note="E||s' - s||^2 under p_t"), Column("eps2_own", note="E||s' - s||^2 under N(alpha z_i, sigma^2 I)"),
            Column("N eps2_pop", note="large-N prediction of E gap"), Column("2G/N", note="leading-order E gap"),
            Column("bound", note="sqrt(E eps2_own) sqrt(E b2): Cauchy–Schwarz form (reconstructed)"),
            Column("bound/gap")]
    caption = (f"Score stability of the linear denoiser (ridge {ridge:g}), d = {p0.dim}, {process!r}; "
               f"{repeats} training sets x {draws} replacements")
    return Table(caption, cols, rows, ["uniform (worst-case) stability is infinite for Gaussian data; averaged versions shown"])


def _weights(times: np.ndarray, weight: str, process: Process) -> np.ndarray:
    if weight == "uniform":
        return np.ones_like(times)
    if weight == "sigma2":
        return np.asarray(process.sigma(times), float) ** 2
    raise ValueError(f"weight must be 'uniform' or 'sigma2', got {weight!r}")


def _time_grid(process: Process, eps: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights on [eps, T]: geometric trapezoid (continuous) or every step (DDPM)."""
    if process.discrete:
        t = np.arange(max(1, int(math.ceil(eps))), process.T + 1, dtype=float)
        return t, np.ones_like(t)
    t = np.geomspace(eps, process.T, points)
    w = np.zeros_like(t)
    dt = np.diff(t)
    w[:-1] += dt / 2
    w[1:] += dt / 2
    return t, w


def integrated_table(p0: Gaussian, Ns: Sequence[int], process: Process, eps_values: Sequence[float],
                     weight: str = "uniform", ridge: float = 0.0, repeats: int = 10, draws: int = 2, points: int = 40,
                     seed=0, progress: bool | None = None) -> Table:
    r"""Time-integrated gap and bound over :math:`[\varepsilon, T]` against ε (denoising regularisation).

    For N < d the integrated gap grows without bound as ε -> 0 (the null modes contribute
    :math:`\alpha^2\operatorname{tr}(P_{null}\Sigma)/\sigma^4` per time); for N > d it stays bounded.
    """
    rows = []
    for N in Ns:
        for eps in eps_values:
            t, w = _time_grid(process, float(eps), points)
            w = w * _weights(t, weight, process)
            res = stability_draws(p0, N, process, t, ridge, repeats, draws, seed, None, progress)
            gap = res["gap"] @ w
            bound = math.sqrt(float(np.mean(res["eps2_own"] @ w))) * math.sqrt(float(np.mean(res["b2"] @ w)))
            rows.append([N, float(eps), _ms(gap), _ms(res["eps2_pop"] @ w), bound, bound / gap.mean()])
    cols = [Column("N"), Column("eps", note="early-stopping time of the forward process"),
            Column("int gap", note=f"integral over [eps, T] of the exact gap, weight {weight}"),
            Column("int eps2_pop"), Column("int bound", note="Cauchy–Schwarz over (S, i, z', t)"), Column("bound/gap")]
    return Table(f"Denoising regularisation: time-integrated gap and bound, d = {p0.dim}, {process!r}", cols, rows)


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
    """Exact KL of the reverse-SDE law of the fitted model vs the Girsanov bound, mean over training sets."""
    rows = []
    rng = as_rng(seed)
    for N in Ns:
        sets = [p0.sample(N, rng) for _ in range(repeats)]
        for t0 in t0_values:
            pairs = np.array([girsanov_bound(LinearDenoiser.fit(X, process, ridge=ridge), p0, process, t0) for X in sets])
            rows.append([N, t0, _ms(pairs[:, 1]) if repeats > 1 else pairs[0, 1], _ms(pairs[:, 0]) if repeats > 1 else pairs[0, 0],
                         float(pairs[:, 0].mean() / pairs[:, 1].mean())])
    cols = [Column("N"), Column("t0"), Column("exact KL(p_t0 || q)", "nats", "reverse SDE from N(0, I), exact law"),
            Column("Girsanov bound", "nats", "KL(p_T||N(0,I)) + int beta/2 Fisher"), Column("bound/exact")]
    return Table(f"KL of the sampled distribution: exact vs Girsanov bound, d = {p0.dim}, {process!r}", cols, rows)


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
        copies = float(np.mean(ratio < 1 / 3))
        law = sampling_law(lin, process, sampler, steps, t_min=t_min)
        rows.append([steps, (copies, math.sqrt(copies * (1 - copies) / n)), float(np.median(first)),
                     kl(p0, law) / p0.dim, float(w2(p0, law))])
    cols = [Column("grid points"), Column("copies (empirical)", note="Monte Carlo fraction ± s.e."),
            Column("nearest dist (empirical)", note="median distance to the nearest training point"),
            Column("KL(data||law)/d (linear)", "nats", f"exact {sampler} law of the fitted denoiser"),
            Column("W2(data, law) (linear)", note="exact")]
    return Table(f"Sampler regularisation: N = {N}, d = {p0.dim}, t_min = {t_min:g}, {process!r}", cols, rows)
