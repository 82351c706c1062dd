"""The Bartlett draw of a Wishart matrix and the law of the fitted Gaussian drawn from it (ensembles.sample_fitted).

W = L L^T with L lower triangular, L_ii = a_i, a_i^2 ~ chi^2_{n-i} (i = 0..d-1), L_ij ~ N(0, 1) below the
diagonal, all independent.  Derived here, symbolically in d = 3: E W = n I and Var W_ij = n (1 + delta_ij), the
first two moments of W_d(n, I); hence for N Sigma_hat = R W R^T (R R^T = Sigma): E Sigma_hat = n Sigma / N and
Var Sigma_hat_ij = n (Sigma_ij^2 + Sigma_ii Sigma_jj) / N^2, the moments of the fitted covariance of N points.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main, normal_expectation, symbolic_matrix
except ImportError:
    from _harness import Page, main, normal_expectation, symbolic_matrix

from lindiff import ensembles

d = 3
n, N = sp.symbols("n N", positive=True)


def make_page():
    return Page("bartlett", "Bartlett's Wishart draw: E W = n I, Var W_ij = n (1 + delta_ij), and the fitted covariance",
                [f"d = {d}; a_i^2 ~ chi^2_(n-i) on the diagonal of L, standard normals below it, all independent",
                 "E a^2 = m, E a^4 = m (m + 2) for a^2 ~ chi^2_m; odd powers of a_i always meet an odd power of a normal"],
                ["Bartlett (1933); lindiff.ensembles.wishart and sample_fitted"])


def _expect(expr, diag, normals):
    """E over the normals (exact moments), then over a_i through the chi-square moments of a_i^2."""
    expr = normal_expectation(expr, normals)
    poly = sp.Poly(sp.expand(expr), *diag)
    out = 0
    for powers, coef in poly.terms():
        term = coef
        for i, p in enumerate(powers):
            m = n - i
            if p % 2:
                raise AssertionError("an odd power of a diagonal entry survived the normal expectation")
            term *= {0: 1, 2: m, 4: m * (m + 2)}[p]
        out += term
    return sp.expand(out)


def derive(page):
    diag = sp.symbols(f"a0:{d}", positive=True)
    normals = [sp.Symbol(f"z{i}{j}") for i in range(d) for j in range(i)]
    L = sp.Matrix(d, d, lambda i, j: diag[i] if i == j else (sp.Symbol(f"z{i}{j}") if j < i else 0))
    W = L * L.T
    mean = W.applyfunc(lambda e: _expect(e, diag, normals))
    page.result("E_W", page.step("E W (Bartlett)", mean))
    var = sp.Matrix(d, d, lambda i, j: sp.factor(_expect(W[i, j] ** 2, diag, normals) - mean[i, j] ** 2))
    page.result("Var_W", page.step("Var W_ij", var))
    # the fitted covariance: N Sigma_hat = R W R^T for a root R of Sigma
    R = symbolic_matrix("r", d)
    Sigma = R * R.T
    S_hat = R * W * R.T / N
    E_S = S_hat.applyfunc(lambda e: _expect(e, diag, normals))
    page.result("E_Sigma_hat", page.step("E Sigma_hat - n Sigma / N (zero)", sp.simplify(E_S - n * Sigma / N)))
    i, j = 0, 1
    var01 = sp.expand(_expect(S_hat[i, j] ** 2, diag, normals) - E_S[i, j] ** 2)
    target = sp.expand(n * (Sigma[i, j] ** 2 + Sigma[i, i] * Sigma[j, j]) / N**2)
    page.result("Var_Sigma_hat_01", page.step("Var Sigma_hat_01 - n (S_01^2 + S_00 S_11) / N^2 (zero)",
                                              sp.simplify(var01 - target)))


def check(page, rng):
    assert page.results["E_W"] == n * sp.eye(d)
    assert page.results["Var_W"] == sp.Matrix(d, d, lambda i, j: n * (2 if i == j else 1))
    assert page.results["E_Sigma_hat"] == sp.zeros(d, d) and page.results["Var_Sigma_hat_01"] == 0
    page.checks.append("E W = n I, Var W_ij = n (1 + delta_ij), and the fitted covariance's moments (symbolic)")
    # lindiff's draws against the derived moments: z-scores from the Monte Carlo standard errors
    nv, draws = 7, 20000
    sample = np.array([ensembles.wishart(nv, d, rng) for _ in range(draws)])
    mean_w = np.array(page.results["E_W"].subs(n, nv), dtype=float)
    var_w = np.array(page.results["Var_W"].subs(n, nv), dtype=float)
    z_mean = np.abs(sample.mean(axis=0) - mean_w) / np.sqrt(var_w / draws)
    centred = (sample - mean_w) ** 2  # its mean estimates Var W_ij, with its own standard error
    z_var = np.abs(centred.mean(axis=0) - var_w) / (centred.std(axis=0, ddof=1) / np.sqrt(draws))
    worst = float(max(z_mean.max(), z_var.max()))
    if worst > 5.0:
        raise AssertionError(f"bartlett: ensembles.wishart's moments are {worst:.1f} standard errors from the derivation")
    page.checks.append(f"ensembles.wishart(n = {nv}, d = {d}): {draws} draws, mean and variance of every entry within "
                       f"|z| <= {worst:.2f} of the derived moments")


if __name__ == "__main__":
    main("bartlett")
