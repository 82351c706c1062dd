"""Expected KL between the data and the fitted Gaussian over training sets (Wishart moments).

A = Sigma^{-1/2} Sigma_hat Sigma^{-1/2} = W/N, W ~ Wishart_d(n, I), n = N - 1 (mean estimated) or N.
Ingredients: E log det W = sum_i psi((n - i + 1)/2) + d log 2 (Bartlett decomposition: W = L L^T with
L_ii^2 ~ chi^2_{n-i+1}, and E log chi^2_k = psi(k/2) + log 2), E W = n I, E W^{-1} = I/(n - d - 1).
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld

N, d, i, k = sp.symbols("N d i k", positive=True, integer=True)
eps = sp.Symbol("epsilon", positive=True)  # 1/N
x = sp.Symbol("x", positive=True)


def make_page():
    return Page("wishart", "Expected KL of the fitted Gaussian: exact Wishart form and its 1/N expansion",
                ["x_1..x_N iid N(mu, Sigma); fitted N(mu_hat, Sigma_hat) with the 1/N covariance",
                 "mean estimated: N Sigma_hat ~ W_d(N-1, Sigma), mu_hat ~ N(mu, Sigma/N) independent of Sigma_hat",
                 "mean known: N Sigma_hat ~ W_d(N, Sigma), mu_hat = mu"],
                ["Bartlett decomposition; inverse-Wishart mean; Merger & Goldt (2025) for the d/(4N) law"])


def _elog_chi2():
    # E X^s = integral of x^s against the chi^2_k density = 2^s Gamma(k/2 + s) / Gamma(k/2); E log X = d/ds at 0
    s = sp.Symbol("s")
    dens = x ** (k / 2 - 1) * sp.exp(-x / 2) / (2 ** (k / 2) * sp.gamma(k / 2))
    moment = sp.simplify(sp.integrate(x**s * dens, (x, 0, sp.oo), conds="none"))
    return sp.simplify(sp.diff(moment, s).subs(s, 0))


def derive(page):
    elog = page.step("E log chi^2_k = d/ds E X^s at s = 0 (Mellin transform of the chi^2_k density)", _elog_chi2())
    page.result("E_log_chi2", elog)
    results = {}
    for mean, shift in (("estimated", 1), ("known", 0)):
        n = N - shift
        tr = n * d / N
        mterm = d / N if shift else 0
        elogdet = sp.Sum(sp.polygamma(0, (n - i + 1) / 2), (i, 1, d)) + d * sp.log(2 / sp.S(N))
        fwd = sp.Rational(1, 2) * (tr - d + mterm - elogdet)
        rev = sp.Rational(1, 2) * (N * d / (n - d - 1) - d + (d / (n - d - 1) if shift else 0) + elogdet)
        page.result(f"model_to_data_{mean}", fwd)
        page.result(f"data_to_model_{mean}", rev)
        # large-N expansion: psi(y) = log y - 1/(2y) - 1/(12 y^2) + O(y^-4), y = (n - i + 1)/2
        y = (1 / eps - shift - i + 1) / 2
        term = sp.series(sp.log(y) - 1 / (2 * y) - 1 / (12 * y**2) + sp.log(2 * eps), eps, 0, 3).removeO()
        elog_series = sp.expand(sp.summation(sp.expand(term), (i, 1, d)))
        fwd_s = sp.expand((tr - d + mterm).subs(N, 1 / eps) / 2 - elog_series / 2)
        rev_exact = sp.Rational(1, 2) * ((1 / eps) * d / (1 / eps - shift - d - 1) - d
                                         + (d / (1 / eps - shift - d - 1) if shift else 0)) + elog_series / 2
        rev_s = sp.expand(sp.series(rev_exact, eps, 0, 3).removeO())
        for name, ser in (("model_to_data", fwd_s), ("data_to_model", rev_s)):
            c1, c2 = sp.factor(ser.coeff(eps, 1)), sp.factor(ser.coeff(eps, 2))
            page.step(f"{name}, mean {mean}: E KL = c1/N + c2/N^2 + O(N^-3) with (c1, c2)", sp.Tuple(c1, c2))
            results[(name, mean)] = (c1, c2)
    page.results["_series"] = results
    page.step("Per dimension the leading term is (d + 3)/(4N) (estimated) or (d + 1)/(4N) (known): the d/(4N) law")


def check(page, rng):
    assert sp.simplify(page.results["E_log_chi2"] - (sp.polygamma(0, k / 2) + sp.log(2))) == 0
    page.checks.append("E log chi^2_k = psi(k/2) + log 2 (symbolic)")
    for (direction, mean), (c1, c2) in page.results["_series"].items():
        for dv in (1, 5, 40):
            got = ld.expected_kl_series(dv, 1000, direction, mean, order=2)
            want = float(c1.subs(d, dv) / 1000 + c2.subs(d, dv) / 1000**2)
            page.compare(f"series coefficients {direction}/{mean}, d={dv}", want, got, rtol=1e-13)
    for direction in ("model_to_data", "data_to_model"):
        for mean in ("estimated", "known"):
            expr = page.results[f"{direction}_{mean}"]
            for dv, Nv in ((3, 9), (20, 60), (50, 400)):
                # a Float N keeps sympy from expanding psi at half-integers into exact harmonic sums
                value = sp.N(expr.subs({d: dv, N: sp.Float(Nv, 30)}).doit(), 30)
                page.compare(f"exact E KL {direction}/{mean} d={dv} N={Nv}", float(value), ld.expected_kl(dv, Nv, direction, mean), rtol=1e-12)
    # 50 digits at large N, where E KL ~ 1e-4 is a small difference of O(d) digamma sums
    expr = page.results["model_to_data_estimated"].subs(d, 10).doit()
    page.compare_mp("E KL(model||data) at d=10, N=2e5 (digamma sum cancels to 1e-4)", expr, {N: 200000.0},
                    ld.expected_kl(10, 200000), rtol=1e-7)


if __name__ == "__main__":
    main("wishart")
