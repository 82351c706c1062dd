"""The replace-one update used for score stability: a rank-2 change of the fitted mean and covariance.

Derived symbolically for N = 3 points in d = 2 (entries as symbols); the rank-2 form (delta lies in the
span of u and w) and its 2 x 2 core B with inverse [[N + 1, 1], [1, 1 - N]] for symbolic N; then the Woodbury
form of the new inverse is checked against lindiff's ``replace_one_scores`` and against refitting, also where
the replacement removes the only spread of the data (Woodbury is then ill-conditioned and lindiff refits).
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
    return Page("replace_one", "Replace-one: rank-2 update of the fitted Gaussian, Woodbury for the score",
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
    # delta = (u - w)/N lies in span(u, w): the update is V B V^T with V = [u, w] (rank 2), for any N
    n = sp.Symbol("N", positive=True)
    uu, ww = sp.Matrix(sp.symbols("u_1:3")), sp.Matrix(sp.symbols("w_1:3"))
    dd = (uu - ww) / n
    V = uu.row_join(ww)
    B = sp.Matrix([[1 / n - 1 / n**2, 1 / n**2], [1 / n**2, -1 / n - 1 / n**2]])
    page.step("(u u^T - w w^T)/N - delta delta^T - V B V^T, symbolic N",
              sp.simplify((uu * uu.T - ww * ww.T) / n - dd * dd.T - V * B * V.T))
    page.results["_rank2_diff"] = sp.simplify((uu * uu.T - ww * ww.T) / n - dd * dd.T - V * B * V.T)
    page.result("B_inverse", sp.simplify(B.inv()))
    page.step("Woodbury: (S_t + alpha^2 V B V^T)^{-1} = K - P (B^{-1} + alpha^2 V^T K V)^{-1} P^T, K = S_t^{-1}, "
              "P = alpha K V: a 2 x 2 solve per time.  (The rank-3 form [u, w, delta] has dependent columns: its "
              "3 x 3 matrix is singular in float64 once U^T K U dominates.)")


def check(page, rng):
    assert page.results["_mean_diff"] == sp.zeros(d, 1) and page.results["_cov_diff"] == sp.zeros(d, d)
    page.checks.append("mean and covariance updates hold symbolically (N = 3, d = 2)")
    n = sp.Symbol("N", positive=True)
    assert page.results["_rank2_diff"] == sp.zeros(2, 2)
    assert sp.simplify(page.results["B_inverse"] - sp.Matrix([[n + 1, 1], [1, 1 - n]])) == sp.zeros(2, 2)
    page.checks.append("rank-2 form V B V^T and B^{-1} = [[N + 1, 1], [1, 1 - N]] hold symbolically for any N")
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
    # N = 2 in d = 2 at t = 1e-12: replacing a point rotates the data's only direction, K' differs from K by
    # 1/sigma^2 ~ 5e11 in two directions (the 2 x 2 Woodbury matrix is singular in float64: refit route)
    X2, z2 = rng.standard_normal((2, 2)), rng.standard_normal(2)
    Y2 = X2.copy()
    Y2[0] = z2
    sc = replace_one_scores(X2, 0, z2, process, 1e-12)
    A, c = ld.LinearDenoiser.fit(Y2, process).score_affine(1e-12)
    page.compare("replace-one vs refit where Woodbury is singular (N = 2, t = 1e-12)", sc.A_new, A, rtol=0,
                 atol=1e-12 * np.abs(A).max())


if __name__ == "__main__":
    main("replace_one")
