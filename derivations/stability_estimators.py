"""The estimators behind the stability tables: polarisation, the rank-3 score change in 3 x 3 algebra,
the control variate's exact mean, and the delta-method gradient of the bound/gap ratio.

(1) ``l(s', z) - l(s, z) = E<s' - s, s' + s - 2y>`` (polarisation of the squared loss: the identity the
    Cauchy–Schwarz bound starts from).
(2) For the replace-one change ``D = s' - s = P Q P^T`` (P = alpha K [u, w, delta], Q = M^{-1} symmetric):
    ``||D||_F^2 = tr(Q G Q G)``, ``tr(D Gamma D) = tr(Q H Q G)``, ``tr(B D) = tr(Q P^T B P)`` with
    ``G = P^T P``, ``H = P^T Gamma P``: what lindiff evaluates per (i, z') pair.
(3) ``E[S_hat] = (N-1)/N Sigma`` and ``E[(mu_hat - mu)(mu_hat - mu)^T] = Sigma/N`` (N = 3 points in d = 2,
    Gaussian moments), hence the control variate
    ``cv = alpha^2 [tr(K0^2 (Sigma - S_hat)) + (mu_hat - mu)^T K0^2 (mu_hat - mu)]`` has mean
    ``2 alpha^2 tr(K0^2 Sigma) / N`` exactly, for any fixed K0.
(4) The gradient of ``log(sqrt(o b) / g)`` used by the delta method.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main, normal_expectation, symbolic_matrix
except ImportError:
    from _harness import Page, main, normal_expectation, symbolic_matrix

import lindiff as ld
from lindiff.stability import _gap_estimates, _pair_terms, bound_estimate, stability_terms

d = 2
N = 3


def make_page():
    return Page("stability_estimators", "Stability tables: polarisation, rank-3 algebra, control variate, delta method",
                [f"(1)-(2) symbolic vectors/matrices in d = {d}; (3) N = {N} Gaussian points in d = {d}, x_j = mu + L u_j",
                 "(4) o, b, g > 0 are the means of eps2_own, b2 and the gap estimate"],
                ["lindiff.stability module docstring; Cauchy–Schwarz; Woodbury; delta method"])


def _sym(name, rows, cols, symmetric=False):
    return symbolic_matrix(f"{name}_", rows, cols, symmetric)


def derive(page):
    # (1) polarisation
    sp_, s0, y = (_sym(n, d, 1) for n in ("sprime", "s", "y"))
    lhs = ((sp_ - y).T * (sp_ - y))[0] - ((s0 - y).T * (s0 - y))[0]
    rhs = ((sp_ - s0).T * (sp_ + s0 - 2 * y))[0]
    page.results["_polar"] = sp.expand(lhs - rhs)
    page.step("||s' - y||^2 - ||s - y||^2 - <s' - s, s' + s - 2y> (pointwise, hence in expectation)", page.results["_polar"])
    page.result("polarisation", sp.Eq(sp.Symbol("l(s',z) - l(s,z)"), sp.Symbol("E<s' - s, s' + s - 2y>")))
    # (2) rank-3 algebra
    P, Q = _sym("P", d, 3), _sym("Q", 3, 3, symmetric=True)
    Gam, B = _sym("Gamma", d, d, symmetric=True), _sym("B", d, d, symmetric=True)
    D = P * Q * P.T
    G, H = P.T * P, P.T * Gam * P
    page.results["_fro"] = sp.expand((D * D.T).trace() - (Q * G * Q * G).trace())
    page.results["_quad"] = sp.expand((D * Gam * D.T).trace() - (Q * H * Q * G).trace())
    page.results["_lin"] = sp.expand((B * D).trace() - (Q * P.T * B * P).trace())
    page.step("||P Q P^T||_F^2 - tr(Q G Q G)", page.results["_fro"])
    page.step("tr(D Gamma D^T) - tr(Q H Q G)", page.results["_quad"])
    page.step("tr(B D) - tr(Q P^T B P)", page.results["_lin"])
    page.result("rank3_forms", sp.Matrix([sp.Symbol("tr(QGQG)"), sp.Symbol("tr(QHQG)"), sp.Symbol("tr(Q P^T B P)")]))
    # (3) moments of the fitted Gaussian
    mu = _sym("mu", d, 1)
    L = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"L_{i}{j}") if j <= i else 0)
    us = [_sym(f"u{j}", d, 1) for j in range(N)]
    xs = [mu + L * u for u in us]
    mean = sum(xs, sp.zeros(d, 1)) / N
    cov = sum(((x - mean) * (x - mean).T for x in xs), sp.zeros(d, d)) / N
    flat = [v for u in us for v in u]
    Ecov = cov.applyfunc(lambda e: normal_expectation(e, flat))
    Edm = ((mean - mu) * (mean - mu).T).applyfunc(lambda e: normal_expectation(e, flat))
    Sigma = L * L.T
    page.results["_Ecov"] = sp.simplify(Ecov - sp.Rational(N - 1, N) * Sigma)
    page.results["_Edm"] = sp.simplify(Edm - Sigma / N)
    page.step("E S_hat - (N-1)/N Sigma", page.results["_Ecov"])
    page.step("E (mu_hat - mu)(mu_hat - mu)^T - Sigma/N", page.results["_Edm"])
    K0 = _sym("K0", d, d, symmetric=True)
    alpha = sp.Symbol("alpha", positive=True)
    Ecv = alpha**2 * ((K0 * K0 * (Sigma - Ecov)).trace() + (K0 * K0 * Edm).trace())
    page.results["_Ecv"] = sp.simplify(Ecv - 2 * alpha**2 * (K0 * K0 * Sigma).trace() / N)
    page.step("E cv - 2 alpha^2 tr(K0^2 Sigma)/N", page.results["_Ecv"])
    page.result("control_variate_mean", 2 * alpha**2 * sp.Symbol("tr(K0^2 Sigma)") / sp.Symbol("N"))
    # (4) delta method
    o, b, g = sp.symbols("o b g", positive=True)
    grad = [sp.diff(sp.log(sp.sqrt(o * b) / g), v) for v in (g, o, b)]
    page.result("log_ratio_gradient", sp.Matrix(grad))


def check(page, rng):
    for key in ("_polar", "_fro", "_quad", "_lin", "_Ecv"):
        assert page.results[key] == 0, key
    assert page.results["_Ecov"] == sp.zeros(d, d) and page.results["_Edm"] == sp.zeros(d, d)
    page.checks.append("polarisation, the three rank-3 trace forms and the control-variate mean hold symbolically")
    # lindiff's vectorised terms vs dense matrices built from the Woodbury scores
    p0 = ld.Gaussian(rng.standard_normal(3), np.diag([1.5, 0.7, 0.2]))
    process = ld.OU(3.0)
    X = p0.sample(6, rng)
    g = ld.Gaussian.fit(X)
    idx, Z = np.array([0, 4]), p0.sample(2, rng)
    for t in (0.02, 0.7):
        a, s = float(process.alpha(t)), float(process.sigma(t))
        K = (g.eigenvectors / (a * a * g.eigenvalues + s * s)) @ g.eigenvectors.T
        fast = _pair_terms(X, g, K, idx, Z, a, s, process.marginal(p0, t))
        for k in range(2):
            ref = stability_terms(X, idx[k], Z[k], process, t, p0)
            page.compare(f"rank-3 terms vs dense Woodbury at t={t}, pair {k}", [fast[key][k] for key in ref],
                         list(ref.values()), rtol=1e-9)
    # control-variate mean: lindiff's (gap - gap_cv) is cv - E cv; rebuild E cv from the derived formula
    times = np.array([0.1, 1.0])
    gap, gap_cv = _gap_estimates(g, p0, process, times, 0.0, X.shape[0])
    a2, s2 = process.alpha(times) ** 2, process.sigma(times) ** 2
    dm = g.mean - p0.mean
    for j in range(2):
        K0 = np.linalg.inv(a2[j] * p0.cov + s2[j] * np.eye(3))
        cv = a2[j] * (np.trace(K0 @ K0 @ (p0.cov - g.cov)) + dm @ K0 @ K0 @ dm)
        expected = 2 * a2[j] * np.trace(K0 @ K0 @ p0.cov) / X.shape[0]
        page.compare(f"gap_cv = gap - cv + 2 alpha^2 tr(K0^2 Sigma)/N at t={times[j]}", gap_cv[j], gap[j] - cv + expected,
                     rtol=1e-10)
    # delta method: lindiff's ratio s.e. vs the derived gradient
    vals = np.abs(rng.standard_normal((3, 12))) + 0.5
    est = bound_estimate(*vals)
    m = vals.mean(axis=1)
    grad = np.array([float(e.subs({sp.Symbol("g", positive=True): m[0], sp.Symbol("o", positive=True): m[1],
                                    sp.Symbol("b", positive=True): m[2]})) for e in page.results["log_ratio_gradient"]])
    se = est.ratio[0] * np.sqrt(grad @ (np.cov(vals) / vals.shape[1]) @ grad)
    page.compare("delta-method s.e. of bound/gap", est.ratio[1], se, rtol=1e-12)


if __name__ == "__main__":
    main("stability_estimators")
