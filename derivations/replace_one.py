"""The replace-one update used for score stability: a rank-3 change of the fitted mean and covariance.

Derived symbolically for N = 3 points in d = 2 (entries as symbols), then the Woodbury form of the new
inverse is checked against lindiff's ``replace_one_scores`` and against refitting.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld
from lindiff.stability import replace_one, replace_one_scores

N = 3
d = 2


def make_page():
    return Page("replace_one", "Replace-one: rank-3 update of the fitted Gaussian, Woodbury for the score",
                [f"N = {N} points in d = {d} (symbols); 1/N covariance; point i = 0 replaced by z'"],
                ["docs/theory.md#replace-one-by-woodbury; Woodbury identity"])


def _fit(points):
    mean = sum(points, sp.zeros(d, 1)) / N
    cov = sum(((p - mean) * (p - mean).T for p in points), sp.zeros(d, d)) / N
    return mean, cov


def derive(page):
    pts = [sp.Matrix(sp.symbols(f"x{j}_1:{d + 1}")) for j in range(N)]
    z = sp.Matrix(sp.symbols(f"z_1:{d + 1}"))
    mean, cov = _fit(pts)
    mean2, cov2 = _fit([z] + pts[1:])
    u, w = z - mean, pts[0] - mean
    delta = (u - w) / N
    page.step("u = z' - mu_hat, w = z_i - mu_hat, delta = (u - w)/N")
    page.step("New mean minus (mu_hat + delta)", sp.simplify(mean2 - (mean + delta)))
    update = (u * u.T - w * w.T) / N - delta * delta.T
    page.step("New covariance minus [S_hat + (u u^T - w w^T)/N - delta delta^T]", sp.simplify(cov2 - (cov + update)))
    page.results["_mean_diff"] = sp.simplify(mean2 - (mean + delta))
    page.results["_cov_diff"] = sp.simplify(cov2 - (cov + update))
    page.result("update", sp.Symbol("U3") * sp.diag(sp.Rational(1, N), -sp.Rational(1, N), -1) * sp.Symbol("U3^T"))
    page.step("Woodbury: (S_t + U C U^T)^{-1} = K - K U (C^{-1} + U^T K U)^{-1} U^T K, K = S_t^{-1}, U = alpha [u, w, delta], "
              "C = diag(1/N, -1/N, -1): a 3 x 3 solve per time")


def check(page, rng):
    assert page.results["_mean_diff"] == sp.zeros(d, 1) and page.results["_cov_diff"] == sp.zeros(d, d)
    page.checks.append("mean and covariance updates hold symbolically (N = 3, d = 2)")
    X = rng.standard_normal((7, 4))
    z = rng.standard_normal(4)
    mean_new, cov_new, U3 = replace_one(X, 3, z)
    Y = X.copy()
    Y[3] = z
    g = ld.Gaussian.fit(Y)
    page.compare("rank-3 covariance update vs refit", cov_new, g.cov, rtol=0, atol=1e-13)
    process = ld.OU()
    for t in (0.01, 0.5):
        sc = replace_one_scores(X, 3, z, process, t, ridge=0.05)
        A, c = ld.LinearDenoiser.fit(Y, process, ridge=0.05).score_affine(t)
        page.compare(f"Woodbury score weights vs refit at t={t}", sc.A_new, A, rtol=0, atol=1e-10 * np.abs(A).max())
        page.compare(f"Woodbury score offset vs refit at t={t}", sc.c_new, c, rtol=0, atol=1e-10 * max(1, np.abs(A).max()))


if __name__ == "__main__":
    main("replace_one")
