r"""Score stability of the fitted linear denoiser and the generalisation bounds built on it
(Farghly, Rebeschini, Deligiannidis & Doucet 2025, "Implicit Regularisation in Diffusion Models"),
computed exactly for Gaussian data.

Everything is in *score units* (the DSM target is :math:`-\xi/\sigma`), per time t, for the ridge-fitted
model :math:`s(x) = -K(x - \alpha\hat\mu)`, :math:`K = (\alpha^2\hat S + (\sigma^2 + r)I)^{-1}`.

Replace-one.  Replacing training point :math:`z_i` by :math:`z'` changes the mean and 1/N covariance by

.. math:: \hat\mu' = \hat\mu + \delta,\quad \hat S' = \hat S + \tfrac1N(uu^T - ww^T) - \delta\delta^T,\qquad
          u = z' - \hat\mu,\ w = z_i - \hat\mu,\ \delta = (u - w)/N,

a rank-2 update (:math:`\delta` lies in the span of u and w), so :math:`K'` follows from Woodbury with a
2 x 2 solve where that is well conditioned, and from refitting where the replacement changes the model
by orders of magnitude (checked against refitting).

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
  the replaced index i (all N); the terms are evaluated for all pairs at once in 2 x 2 algebra
  (:math:`s' - s = PQP^T`, rank <= 2);
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

from . import _linalg
from ._validation import RNGLike, as_finite_array, as_nonnegative_float, as_positive_int, as_rng, as_training_set
from .ensembles import monte_carlo_over_training_sets
from .gaussian import Gaussian, Infinite, kl, w2
from .losses import generalisation_gap, score_matching_loss
from .processes import Process
from .samplers import sampling_law
from .scores import LinearDenoiser
from .tables import Column, Table

__all__ = ["score_stability", "StabilityResult", "sampler_regularisation_table", "replace_one", "ReplaceOneScores",
           "replace_one_scores", "stability_terms", "large_n_gap", "stability_draws", "stability_table",
           "integrated_table", "girsanov_bound", "kl_bound_table", "bound_estimate", "BoundEstimate", "stability_tables"]


def _index(i, N: int) -> int:
    """A training-point index by the integer rule of ``lindiff._validation`` (no bools, strings, NaN)."""
    i = as_positive_int(i, "i (the index of the replaced training point)", minimum=0)
    if i >= N:
        raise ValueError(f"i must index a training point, 0 <= i < {N}, got {i}")
    return i


def replace_one(X, i: int, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Mean and 1/N covariance after replacing row ``i`` of X by ``z``, via the rank-3 update.

    Returns ``(mean', cov', U3)`` where ``cov' = cov + U3 diag(1/N, -1/N, -1) U3^T``, ``U3 = [u, w, delta]``.
    """
    X = as_training_set(X, "X")
    N, d = X.shape
    i = _index(i, N)
    z = as_finite_array(z, "z", ndim=1)
    if z.shape != (d,):
        raise ValueError(f"z must have shape ({d},), got {z.shape}")
    g = Gaussian.fit(X)
    u, w = z - g.mean, X[i] - g.mean
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
    """Exact scores of the ridge-fitted model before and after replacing point ``i`` by ``z`` (Woodbury
    where it is well conditioned, refitting where the replacement changes the model by orders of
    magnitude: see :func:`_score_change`)."""
    X, g, ridge = _setup(X, ridge)
    N = X.shape[0]
    mean_new, _, U3 = replace_one(X, i, z)
    a, s = float(process.alpha(t)), float(process.sigma(t))
    U, lam = g.eigenvectors, g.eigenvalues
    h = a * a * lam + s * s + ridge
    K = (U / h) @ U.T
    K = 0.5 * (K + K.T)
    V = U3[None, :, :2]
    parts = _woodbury(K, V, a, N)
    # K' from the route that is accurate for it: K - D where Woodbury is well conditioned (the change is
    # moderate), the refit itself otherwise (K - D would then cancel: K' may be orders below K)
    i, z = _index(i, N), as_finite_array(z, "z", ndim=1)
    K_new = K - _score_change(X, [i], z[None], K, V, a, s * s + ridge, parts)[0] if parts[2][0] else \
        _refit_gain(X, [i], z[None], a, s * s + ridge)[0]
    A, A_new = -K, -0.5 * (K_new + K_new.T)
    return ReplaceOneScores(A, a * K @ g.mean, A_new, a * K_new @ mean_new)


# The update is rank 2: delta = (u - w)/N lies in span(u, w), so S' = S + V B V^T with V = [u, w] and
# B = [[1/N - 1/N^2, 1/N^2], [1/N^2, -1/N - 1/N^2]], B^{-1} = [[N + 1, 1], [1, 1 - N]] (derivations/replace_one.py).
# (The rank-3 form [u, w, delta] has dependent columns, which makes its 3 x 3 Woodbury matrix singular in
# float64 whenever U^T K U dominates C^{-1}: the LinAlgError of issue 11.)
_WOODBURY_COND = 1e6


def _score_change(X: np.ndarray, idx: np.ndarray, Z: np.ndarray, K: np.ndarray, V: np.ndarray, a: float, s2r: float,
                  parts: tuple | None = None) -> np.ndarray:
    r"""``K - K'`` (the change of the score weights, :math:`s' - s`) for each row of ``V`` (shape (n, d, 2)).

    Woodbury, :math:`K - K' = P M^{-1} P^T` with :math:`P = \alpha K V`, :math:`M = B^{-1} + \alpha^2 V^T K V`,
    is exact in float64 while M is well conditioned (relative error ~ eps cond M).  By the matrix determinant
    lemma :math:`\det M = \det B^{-1}\det K/\det K'`, so an ill-conditioned M means the replacement
    changes K by orders of magnitude in some direction (e.g. it removes the only point that gave a direction
    its variance): there ``K'`` is formed by refitting (eigendecomposition of :math:`\hat S'`), and the
    difference ``K - K'`` is as large as ``K'`` itself, so it is computed without cancellation.
    """
    P, M, well = _woodbury(K, V, a, X.shape[0]) if parts is None else parts
    out = np.empty((V.shape[0],) + K.shape)
    if np.any(well):
        Q = np.linalg.inv(M[well])
        out[well] = np.einsum("nik,nkl,njl->nij", P[well], 0.5 * (Q + np.swapaxes(Q, 1, 2)), P[well])
    if not np.all(well):
        out[~well] = K - _refit_gain(X, np.asarray(idx)[~well], np.asarray(Z)[~well], a, s2r)
    return out


def _woodbury(K: np.ndarray, V: np.ndarray, a: float, N: int):
    """``P``, ``M`` and the rows where ``M^{-1}`` is accurate: M's entries carry the round-off of their summands
    (``B^{-1}`` and ``G = alpha^2 V^T K V``, which may cancel), so the test is ``(N + 1 + max|G|) / sigma_min(M)
    <= _WOODBURY_COND``, a condition number relative to the summands rather than to M itself."""
    P = a * np.einsum("ij,njk->nik", K, V)
    G = a * np.einsum("nik,nil->nkl", V, P)
    M = G + np.array([[N + 1.0, 1.0], [1.0, 1.0 - N]])
    size = N + 1.0 + np.abs(G).max(axis=(1, 2))
    well = size <= _WOODBURY_COND * np.linalg.svd(M, compute_uv=False)[:, -1]
    return P, M, well


def _refit_gain(X: np.ndarray, idx: np.ndarray, Z: np.ndarray, a: float, s2r: float) -> np.ndarray:
    """``K' = (alpha^2 S' + (sigma^2 + ridge) I)^{-1}`` by refitting each new training set (row ``idx[k]`` of X
    replaced by ``Z[k]``): the covariance from the new points themselves (the rank-2 update would carry the
    round-off of the removed point's large terms) and its eigenvalues clipped by the shared cut-off exactly
    as ``Gaussian.fit`` does, so a direction the new points do not span gets the gain ``1/(sigma^2 + ridge)``."""
    out = np.empty((len(idx),) + (X.shape[1],) * 2)
    for k, (i, z) in enumerate(zip(idx, Z)):  # the ill-conditioned pairs only: few
        Y = X.copy()
        Y[i] = z
        g = Gaussian.fit(Y)
        out[k] = (g.eigenvectors / (a * a * g.eigenvalues + s2r)) @ g.eigenvectors.T
    return out


def _mean_square(D, e, nu, Gamma) -> float:
    """E ||D x + e||^2 for x ~ N(nu, Gamma)."""
    r = D @ nu + e
    return float(np.sum((D @ Gamma) * D) + r @ r)


def stability_terms(X, i: int, z, process: Process, t, p0: Gaussian, ridge: float = 0.0) -> dict:
    """``eps2_pop``, ``eps2_own``, ``delta_loss`` and ``b2`` (see module docstring) for one replacement.

    The definitions evaluated with dense matrices: the reference for the vectorised terms the tables use.
    ``delta_loss`` and ``b2`` are then differences of losses of size ``d / sigma^2``, so their absolute
    error is ~ ``eps d / sigma(t)^2`` (e.g. 1e-4 at sigma^2 = 1e-12); the tables' rank-2 algebra has no
    such cancellation.
    """
    sc = replace_one_scores(X, i, z, process, t, ridge)
    X = as_training_set(X, "X")
    a, s = float(process.alpha(t)), float(process.sigma(t))
    d = X.shape[1]
    eye = np.eye(d)
    zi = X[_index(i, X.shape[0])]
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
# Vectorised replace-one terms.  D = s' - s is rank <= 2 (D = P Q P^T with P = alpha K [u, w], Q = M^{-1}),
# so every quantity is a 2 x 2 product per pair: O(d) work per (i, z') instead of a d x d refit, and D is
# formed directly (no K' - K cancellation at large N).  Pairs whose M is ill-conditioned take the refit
# route of _score_change.  ``stability_terms`` is the one-pair reference.
def _pair_terms(X: np.ndarray, g: Gaussian, K: np.ndarray, idx: np.ndarray, Z: np.ndarray, a: float, s: float,
                pt: Gaussian, ridge: float = 0.0) -> dict[str, np.ndarray]:
    N, d = X.shape
    mu = g.mean
    zi = X[idx]
    u, w = Z - mu, zi - mu
    delta = (u - w) / N
    V = np.stack([u, w], axis=2)
    n = u.shape[0]
    P, M, well = parts = _woodbury(K, V, a, N)
    B = np.eye(d) / s - s * K  # s A + I/s with A = -K
    vecs = np.stack([mu + delta, zi, np.broadcast_to(pt.mean, u.shape)], axis=1)  # D is applied to these
    Dv, fro2, tr_pop, trBD = np.empty((n, 3, d)), np.empty(n), np.empty(n), np.empty(n)
    if np.any(well):  # D = P Q P^T: 2 x 2 algebra per pair
        Pw = P[well]
        Q = np.linalg.inv(M[well])
        Q = 0.5 * (Q + np.swapaxes(Q, 1, 2))
        QG = Q @ np.einsum("nik,nil->nkl", Pw, Pw)
        fro2[well] = np.einsum("nkl,nlk->n", QG, QG)  # ||D||_F^2
        QH = Q @ np.einsum("nik,ij,njl->nkl", Pw, pt.cov, Pw)
        tr_pop[well] = np.einsum("nkl,nlk->n", QH, QG)  # tr(D S_t D)
        trBD[well] = np.einsum("nkl,nlk->n", Q, np.einsum("nik,ij,njl->nkl", Pw, B, Pw))
        Dv[well] = np.einsum("nik,nkl,njl,nmj->nmi", Pw, Q, Pw, vecs[well])
    if not np.all(well):  # the replacement changes K by orders of magnitude: D formed explicitly (refit)
        D = _score_change(X, idx[~well], Z[~well], K, V[~well], a, s * s + ridge,
                          (P[~well], M[~well], np.zeros(int(np.sum(~well)), bool)))
        fro2[~well] = np.sum(D * D, axis=(1, 2))
        tr_pop[~well] = np.einsum("nij,jk,nki->n", D, pt.cov, D)
        trBD[~well] = np.einsum("ij,nji->n", B, D)
        Dv[~well] = np.einsum("nij,nmj->nmi", D, vecs[~well])
    e = a * (delta @ K) - a * Dv[:, 0]  # c' - c, with c = alpha K mu_hat
    r_own = a * Dv[:, 1] + e
    eps2_own = s * s * fro2 + np.einsum("ni,ni->n", r_own, r_own)
    r_pop = Dv[:, 2] + e
    eps2_pop = tr_pop + np.einsum("ni,ni->n", r_pop, r_pop)
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
            vals = _pair_terms(X, g, K, np.tile(idx, zs.shape[0]), np.repeat(zs, k, axis=0), a, s, pt, ridge)
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
        """``(ratio, s.e.)`` where the interval lies above 1, else the string ``"not resolved (r ± se)"``
        (``"not defined (...)"`` where the gap estimate is not positive)."""
        if self.resolved:
            return self.ratio
        r, se = self.ratio
        if isinstance(r, Infinite):
            return f"not defined ({r.reason})"
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

    Where every replicate of eps2_own (or b2) is zero — a data law of rank 0, whose training points all
    coincide, so a replacement changes nothing — the bound is exactly 0 with s.e. 0.  Where the gap
    estimate is not positive the ratio is not defined: it is an :class:`~lindiff.Infinite` with that reason.

    Examples
    --------
    >>> est = bound_estimate([1.0, 1.2, 0.8, 1.1], [0.5, 0.7, 0.4, 0.6], [9.0, 8.0, 10.0, 9.5])
    >>> round(est.bound[0], 3), est.resolved
    (2.24, True)
    """
    cols = [as_finite_array(v, name, ndim=1) for v, name in ((gap, "gap"), (eps2_own, "eps2_own"), (b2, "b2"))]
    n = cols[0].size
    if any(c.size != n for c in cols) or n < 2:
        raise ValueError("gap, eps2_own and b2 must be 1-D arrays of the same length >= 2 (replicates: the "
                         f"estimates carry standard errors), got lengths {[c.size for c in cols]}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if np.any(cols[1] < 0) or np.any(cols[2] < 0):
        raise ValueError("eps2_own and b2 must be non-negative (they are mean squares)")
    data = np.stack(cols)
    g, o, b = data.mean(axis=1)
    C = np.cov(data) / n
    gap_se = math.sqrt(C[0, 0])
    if o == 0 or b == 0:  # every replicate is 0: the bound is exactly 0
        bound, bound_se = 0.0, 0.0
    else:
        bound = math.sqrt(o * b)
        grad_b = np.array([0.0, 0.5 / o, 0.5 / b])
        bound_se = bound * math.sqrt(max(float(grad_b @ C @ grad_b), 0.0))
    if g <= 0:  # the ratio is not defined; nothing is resolved
        why = Infinite(f"the gap estimate {g:.3g} is not positive: bound/gap is not defined")
        return BoundEstimate((float(g), gap_se), (bound, bound_se), (why, why), level)
    if bound == 0:
        return BoundEstimate((float(g), gap_se), (bound, bound_se), (0.0, 0.0), level)
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


def _table_repeats(repeats) -> int:
    """Every Monte Carlo cell of a stability table is a mean ± s.e. over training sets: two at least."""
    return as_positive_int(repeats, "repeats (training sets; each table cell is a mean ± s.e. over them)", 2)


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
    repeats = _table_repeats(repeats)
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
    repeats = _table_repeats(repeats)
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
    \nabla\log p_t\|^2dt` and the exact :math:`\mathrm{KL}(p_{t_0}\|q)` of the reverse-SDE law q from N(0, I).

    For ``t0 > 0`` the integrand is finite and smooth on :math:`[t_0, T]` (sigma(t) > 0 there), so the
    integral is finite; it may grow like :math:`1/t^2` towards :math:`t_0` (a fit that is singular where the
    data are not), so it is integrated in :math:`\log t` on geometric pieces, to relative accuracy ``rtol`` of
    the whole bound.  The absolute tolerance matters: where the model equals the true score (e.g. data of
    rank 0, whose training points all coincide with the mean) the integrand is round-off of size ~1e-31,
    to which no relative accuracy applies.  Either value is an :class:`~lindiff.Infinite` (with its reason)
    where a KL is infinite for the float64 laws (e.g. a law clipped to lower rank by the shared cut-off).

    Examples
    --------
    >>> import lindiff as ld
    >>> p0 = ld.Gaussian.from_spectrum([1.0, 0.25])
    >>> model = ld.LinearDenoiser.fit(p0.sample(8, 0), ld.OU(3.0))
    >>> bound, exact = girsanov_bound(model, p0, ld.OU(3.0), 0.1)
    >>> bool(bound >= exact)
    True
    """
    if process.discrete:
        raise ValueError("the Girsanov bound needs a continuous process (VP, OU)")
    t0 = as_nonnegative_float(t0, "t0")
    rtol = as_nonnegative_float(rtol, "rtol")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must lie in (0, 1), got {rtol!r}")
    if not 0 < t0 < process.T:
        raise ValueError(f"t0 must lie in (0, T) = (0, {process.T:g}), got {t0!r}")
    prior = kl(process.marginal(p0, process.T), Gaussian.standard(p0.dim))
    law = sampling_law(model, process, "sde", t_min=t0)
    exact = kl(process.marginal(p0, t0), law)
    exact = exact if isinstance(exact, Infinite) else float(exact)
    if isinstance(prior, Infinite):
        return prior, exact
    return float(prior + _fisher_integral(model, p0, process, t0, rtol, float(prior))), exact


def _fisher_integral(model, p0: Gaussian, process: Process, t0: float, rtol: float, prior: float) -> float:
    r""":math:`\int_{t_0}^T\tfrac{\beta}{2}\,\mathrm{Fisher}(t)\,dt` as :math:`\int f(e^u)e^u du` on 11 geometric
    pieces: a 16-point Gauss–Legendre pass gives the scale, then adaptive quadrature per piece to
    ``rtol * (prior + integral)``; a piece whose error estimate misses that raises a ``ValueError``."""
    edges = np.log(np.geomspace(t0, process.T, 12))
    edges[-1] = math.log(process.T)  # exactly T: check_time accepts it
    x, w = np.polynomial.legendre.leggauss(16)
    half = 0.5 * np.diff(edges)
    u = (0.5 * (edges[:-1] + edges[1:]))[:, None] + half[:, None] * x[None, :]

    def f(uu):
        t = np.minimum(np.exp(uu), process.T)
        return 0.5 * np.asarray(process.beta(t), float) * np.asarray(score_matching_loss(model, p0, t), float) * t

    rough = float(np.sum(half[:, None] * w[None, :] * f(u.ravel()).reshape(u.shape)))
    tol = rtol * (prior + rough) / half.size
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        value, err, *info = integrate.quad(lambda v: float(f(np.array([v]))[0]), lo, hi, epsrel=rtol, epsabs=tol,
                                           limit=200, full_output=1)
        if len(info) > 1 and err > 10 * max(tol, rtol * abs(value)):  # quadpack flagged trouble it did not overcome
            raise ValueError(f"the Girsanov integral over t in [{math.exp(lo):.3g}, {math.exp(hi):.3g}] was not resolved "
                             f"to rtol = {rtol:g} (error estimate {err:.3g} on {value:.3g}): {info[1][:120]}")
        total += value
    return total


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
            pairs = [girsanov_bound(LinearDenoiser.fit(X, process, ridge=ridge), p0, process, t0) for X in sets]
            bound, exact = [b for b, _ in pairs], [e for _, e in pairs]
            finite = [k for k in range(repeats) if not (math.isinf(bound[k]) or math.isinf(exact[k]))]
            if len(finite) == repeats:
                b, e = np.array(bound), np.array(exact)
                ratio, excess = _ratio_of_means(b, e), float(np.min(b - e))
            else:  # an infinite KL on some set: the mean is that Infinite, the ratio is not defined
                ratio = "not defined (infinite KL)"
                excess = float(min(bound[k] - exact[k] for k in finite)) if finite else "not defined"
            rows.append([N, t0, _mean_cell(exact), _mean_cell(bound), ratio, excess])
    cols = [Column("N"), Column("t0"), Column("exact KL(p_t0 || q)", "nats", "reverse SDE from N(0, I), exact law; mean ± s.e. over sets"),
            Column("Girsanov bound", "nats", "KL(p_T||N(0,I)) + int beta/2 Fisher (adaptive quadrature)"),
            Column("bound/exact", note="ratio of the means ± delta-method s.e. over sets", fmt=".6g"),
            Column("min excess", "nats", "smallest bound - exact over the sets (>= 0: the bound holds on every set)", ".2e")]
    return Table(f"KL of the sampled distribution: exact vs Girsanov bound, d = {p0.dim}, {process!r}; {repeats} training sets",
                 cols, rows)


def _mean_cell(values: list):
    """Mean ± s.e. over training sets, or the :class:`Infinite` (reason kept, count added) when some set's
    value is infinite: the mean over sets is then infinite too."""
    infinite = [v for v in values if math.isinf(v)]
    if infinite:
        reason = getattr(infinite[0], "reason", "infinite")
        return Infinite(f"{reason} (on {len(infinite)} of {len(values)} training sets)")
    arr = np.asarray(values, float)
    return _ms(arr) if arr.size > 1 else float(arr[0])


def _ratio_of_means(num: np.ndarray, den: np.ndarray):
    n = num.size
    r = float(num.mean() / den.mean())
    if n < 2:  # one training set: its exact ratio, which carries no standard error
        return r
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

