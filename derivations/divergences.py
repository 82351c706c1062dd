"""KL, W2 and Hellinger between Gaussians in the commuting case, per eigenmode, from the definitions.

For covariances sharing an eigenbasis every divergence is a sum (KL, W2^2) or product (Bhattacharyya
coefficient) over modes of one-dimensional expressions, derived here from the integrals.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld

x, u, m1, m2 = sp.symbols("x u m_1 m_2", real=True)
s1, s2 = sp.symbols("s_1 s_2", positive=True)  # standard deviations


def make_page():
    return Page("divergences", "KL, Wasserstein-2 and Hellinger between one-dimensional Gaussians",
                ["p = N(m1, s1^2), q = N(m2, s2^2); multivariate commuting case = sum/product over modes"],
                ["Pierret & Galerne (2025) for the per-mode W2; standard definitions"])


def _logpdf(y, m, s):
    return -(y - m) ** 2 / (2 * s**2) - sp.log(s) - sp.log(2 * sp.pi) / 2


def derive(page):
    integrand = sp.expand((_logpdf(x, m1, s1) - _logpdf(x, m2, s2)).subs(x, m1 + s1 * u))
    poly = sp.Poly(integrand, u)
    moments = {0: 1, 1: 0, 2: 1}
    kl = sp.simplify(sum(c * moments[k[0]] for k, c in poly.terms()))
    page.step("KL = E_p[log p - log q], x = m1 + s1 u with E u = 0, E u^2 = 1", integrand)
    kl = page.result("kl", kl)
    r = sp.Symbol("r", positive=True)
    page.step("With r = s1^2/s2^2: KL = (r - 1 - log r)/2 + (m1 - m2)^2/(2 s2^2)",
              sp.simplify(kl - ((s1**2 / s2**2 - 1 - sp.log(s1**2 / s2**2)) / 2 + (m1 - m2) ** 2 / (2 * s2**2))))
    T = m2 + s2 / s1 * (x - m1)
    page.step("W2: the monotone map T(x) = m2 + (s2/s1)(x - m1) pushes p to q; it is optimal in 1-D", T)
    w2sq = sp.expand((x - T).subs(x, m1 + s1 * u) ** 2)
    w2sq = page.result("w2_squared", sp.factor(sum(c * moments[k[0]] for k, c in sp.Poly(w2sq, u).terms())))
    page.step("W2^2 = (m1 - m2)^2 + (s1 - s2)^2", sp.simplify(w2sq - ((m1 - m2) ** 2 + (s1 - s2) ** 2)))
    dens = lambda m, s: sp.exp(-(x - m) ** 2 / (2 * s**2)) / (s * sp.sqrt(2 * sp.pi))  # noqa: E731
    bc = sp.simplify(sp.integrate(sp.sqrt(dens(m1, s1)) * sp.sqrt(dens(m2, s2)), (x, -sp.oo, sp.oo), conds="none"))
    page.step("Bhattacharyya coefficient BC = integral sqrt(p q) dx", bc)
    bc = page.result("bhattacharyya", bc)
    page.step("BC = sqrt(2 s1 s2/(s1^2 + s2^2)) exp(-(m1 - m2)^2 / (4 (s1^2 + s2^2))); H = sqrt(1 - prod BC)",
              sp.simplify(bc - sp.sqrt(2 * s1 * s2 / (s1**2 + s2**2)) * sp.exp(-(m1 - m2) ** 2 / (4 * (s1**2 + s2**2)))))


def check(page, rng):
    kl_fn = sp.lambdify((m1, s1, m2, s2), page.results["kl"], "numpy")
    w2_fn = sp.lambdify((m1, s1, m2, s2), page.results["w2_squared"], "numpy")
    bc_fn = sp.lambdify((m1, s1, m2, s2), page.results["bhattacharyya"], "numpy")
    d = 5
    U = ld.spectra.random_basis(d, rng)
    lp, lq = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    mp_, mq = rng.standard_normal(d), rng.standard_normal(d)
    p = ld.Gaussian.from_spectrum(lp, U, U @ mp_)
    q = ld.Gaussian.from_spectrum(lq, U, U @ mq)
    sp_, sq = np.sqrt(lp), np.sqrt(lq)
    page.compare("KL (shared basis, fast path)", np.sum(kl_fn(mp_, sp_, mq, sq)), ld.kl(p, q), rtol=1e-12)
    page.compare("KL (dense path)", np.sum(kl_fn(mp_, sp_, mq, sq)), ld.kl(ld.Gaussian(p.mean, p.cov), ld.Gaussian(q.mean, q.cov)), rtol=1e-10)
    page.compare("W2", np.sqrt(np.sum(w2_fn(mp_, sp_, mq, sq))), ld.w2(p, q), rtol=1e-12)
    page.compare("W2 (dense path)", np.sqrt(np.sum(w2_fn(mp_, sp_, mq, sq))), ld.w2(ld.Gaussian(p.mean, p.cov), ld.Gaussian(q.mean, q.cov)), rtol=1e-9)
    page.compare("Hellinger", np.sqrt(1 - np.prod(bc_fn(mp_, sp_, mq, sq))), ld.hellinger(p, q), rtol=1e-10)
    # cancellation: nearly equal Gaussians (r - 1 - log r and 1 - BC both cancel in float64)
    a = ld.Gaussian.from_spectrum([1.0 + 2e-9], mean=[1e-9])
    b = ld.Gaussian.from_spectrum([1.0], basis=a.eigenvectors)
    subs = {m1: sp.Rational(1, 10**9), s1: sp.sqrt(1 + sp.Rational(2, 10**9)), m2: 0, s2: 1}
    page.compare_mp("KL of nearly equal Gaussians", page.results["kl"], subs, ld.kl(a, b), rtol=1e-6)
    page.compare_mp("Hellinger of nearly equal Gaussians", sp.sqrt(1 - page.results["bhattacharyya"]), subs, ld.hellinger(a, b), rtol=1e-6)


if __name__ == "__main__":
    main("divergences")
