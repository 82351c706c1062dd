"""Expected KL of the full-support convolutional fit over training sets: chi-square periodogram statistics.

N images from a stationary field (constant mean mu, power p on a periodic grid).  The convolutional fit
is the field with the periodogram average P_bar as spectrum and the grand mean as mean.  In the Hartley
basis each mode's KL term depends on P_bar(k)/p(k) only, and that ratio is a scaled chi-square variable
whose degrees of freedom depend on the frequency class (pair {k, -k}, self-conjugate, zero frequency).
"""

import math

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld

N, nu, c = sp.symbols("N nu c", positive=True)
x, s = sp.Symbol("x", positive=True), sp.Symbol("s")
a, b = sp.symbols("a b", real=True)


def make_page():
    return Page("periodogram_kl", "Expected KL of the convolutional fit from chi-square periodogram statistics",
                ["x_1..x_N iid stationary Gaussian fields, constant mean mu, power p(k) > 0 on a periodic grid",
                 "fit: power P_bar(k) = (1/N) sum_i |DFT(x_i - m)(k)|^2 (unitary DFT), mean m = grand mean",
                 "mean known: m = mu"],
                ["Brockwell & Davis, Time Series (periodogram ordinates are independent scaled chi-squares)",
                 "lindiff.ensembles.expected_kl_convolutional"])


def _mellin():
    # E X^s for X ~ chi^2_nu: the Mellin transform of its density
    dens = x ** (nu / 2 - 1) * sp.exp(-x / 2) / (2 ** (nu / 2) * sp.gamma(nu / 2))
    return sp.simplify(sp.integrate(x**s * dens, (x, 0, sp.oo), conds="none"))


def derive(page):
    page.step("A pair {k, -k}: with X_k = a + i b (unitary DFT of a real field), the Hartley coefficients are "
              "h_k = a - b and h_-k = a + b; (h_k^2 + h_-k^2)/2 - |X_k|^2",
              sp.expand(((a - b) ** 2 + (a + b) ** 2) / 2 - (a**2 + b**2)))
    page.step("and E h_k h_-k = E a^2 - E b^2 = 0 since Re X_k and Im X_k are independent N(0, p/2): the two "
              "Hartley coefficients are independent N(0, p), and both get P_bar(k) = (1/2N) sum_i (h_ik^2 + h_i,-k^2) "
              "~ p chi^2_{2N} / (2N)")
    page.step("A self-conjugate frequency (k = -k: zero or Nyquist on every axis) has one real coefficient: "
              "P_bar ~ p chi^2_N / N; the zero frequency centred by the estimated grand mean: p chi^2_{N-1} / N, "
              "independent of the mean's error (m - mu) sqrt(d) ~ N(0, p/N)")
    M = page.step("Mellin transform E X^s of X ~ chi^2_nu", _mellin())
    elog = sp.simplify(sp.diff(M, s).subs(s, 0))
    page.result("E_log", elog)
    einv = sp.simplify(M.subs(s, -1))
    page.result("E_inverse", einv)
    # per-mode KL(fit || data) = (r - 1 - log r)/2 and KL(data || fit) = (1/r - 1 + log r)/2, r = P_bar/p = X/c
    Elog_r = elog - sp.log(c)  # E log(X / c)
    Er, Einv_r = nu / c, c * einv
    m2d = (Er - 1 - Elog_r) / 2
    d2m = (Einv_r - 1 + Elog_r) / 2
    pair_m2d = page.result("pair_model_to_data", sp.simplify(2 * m2d.subs({nu: 2 * N, c: 2 * N})))
    pair_d2m = page.result("pair_data_to_model", sp.simplify(2 * d2m.subs({nu: 2 * N, c: 2 * N})))
    self_m2d = page.result("self_model_to_data", sp.simplify(m2d.subs({nu: N, c: N})))
    self_d2m = page.result("self_data_to_model", sp.simplify(d2m.subs({nu: N, c: N})))
    # zero frequency, mean estimated: variance term with chi^2_{N-1}/N plus the mean term
    # KL(fit||data) mean term: (m - mu)^2 d / (2 p), expectation 1/(2N); KL(data||fit): E[(m-mu)^2 d] E[1/P_bar]/2
    zero_m2d = page.result("zero_model_to_data", sp.simplify(m2d.subs({nu: N - 1, c: N}) + 1 / (2 * N)))
    zero_d2m = page.result("zero_data_to_model", sp.simplify(d2m.subs({nu: N - 1, c: N}) + (1 / N) * N * einv.subs(nu, N - 1) / 2))
    # large N: psi(y) = log y - 1/(2y) - 1/(12 y^2) + O(y^-4), then a series in eps = 1/N
    eps = sp.Symbol("epsilon", positive=True)
    y = sp.Wild("y")

    def coefficient(expr):
        asym = expr.replace(sp.polygamma(0, y), sp.log(y) - 1 / (2 * y) - 1 / (12 * y**2))
        return sp.series(sp.expand_log(asym.subs(N, 1 / eps), force=True), eps, 0, 2).removeO().coeff(eps, 1)

    coeffs = [coefficient(e) for e in (pair_m2d, self_m2d, zero_m2d, pair_d2m, self_d2m, zero_d2m)]
    page.step("Coefficient of 1/N at large N: pair, self-conjugate, zero frequency (model to data; then data to "
              "model) — so N E KL -> pairs/2 + (s - 1)/2 + 1 = (d + s + 2)/4 with the mean estimated", sp.Tuple(*coeffs))
    page.results["_large_N"] = coeffs
    page.step("Total: pairs * pair + (s - 1) * self + zero (mean estimated; the zero frequency is self-conjugate when "
              "the mean is known), s = 2^(number of even axes)")


def _total(page, grid, Nv, direction, mean):
    s_count, pairs = ld.ensembles.frequency_classes(grid)
    key = "model_to_data" if direction == "model_to_data" else "data_to_model"
    pair = page.results[f"pair_{key}"].subs(N, Nv)
    self_ = page.results[f"self_{key}"].subs(N, Nv)
    zero = page.results[f"zero_{key}"].subs(N, Nv) if mean == "estimated" else self_
    return pairs * pair + (s_count - 1) * self_ + zero


def check(page, rng):
    assert sp.simplify(page.results["E_log"] - (sp.polygamma(0, nu / 2) + sp.log(2))) == 0
    assert sp.simplify(page.results["E_inverse"] - 1 / (nu - 2)) == 0
    page.checks.append("E log chi^2_nu = psi(nu/2) + log 2 and E 1/chi^2_nu = 1/(nu - 2) (symbolic)")
    for grid in ((8, 8), (5,), (6, 5, 4), (1,), (2, 2)):
        for direction in ("model_to_data", "data_to_model"):
            for mean in ("estimated", "known"):
                for Nv in (4, 7, 30, 1000):
                    want = float(sp.N(_total(page, grid, sp.Float(Nv, 40), direction, mean), 30))
                    got = ld.expected_kl_convolutional(grid, Nv, direction, mean)
                    page.compare(f"grid {grid} {direction} mean {mean} N={Nv}", want, got, rtol=1e-12)
    # 50 digits at large N, where each term is ~1/(2N) out of digamma and log of size log N
    expr = _total(page, (16, 16), N, "data_to_model", "estimated")
    page.compare_mp("E KL(data||fit) grid 16x16, N = 1e7", expr, {N: 1e7},
                    ld.expected_kl_convolutional((16, 16), 10**7, "data_to_model"), rtol=1e-9)
    expr = _total(page, (16, 16), N, "model_to_data", "estimated")
    page.compare_mp("E KL(fit||data) grid 16x16, N = 1e7", expr, {N: 1e7},
                    ld.expected_kl_convolutional((16, 16), 10**7), rtol=1e-12)
    assert page.results["_large_N"] == [sp.Rational(1, 2), sp.Rational(1, 2), 1] * 2
    page.checks.append("large-N coefficients 1/2 per pair, 1/2 per self-conjugate frequency, 1 for the zero frequency "
                       "with the mean estimated, both directions (symbolic)")
    # the large-N law (d + s + 2) / (4N) with the mean estimated
    for grid in ((8, 8), (7, 9)):
        s_count, _ = ld.ensembles.frequency_classes(grid)
        d = math.prod(grid)
        Nv = 10**6
        page.compare(f"grid {grid}: N E KL -> (d + s + 2)/4 at N = 1e6", (d + s_count + 2) / 4,
                     Nv * ld.expected_kl_convolutional(grid, Nv), rtol=1e-5)


if __name__ == "__main__":
    main("periodogram_kl")
