"""Collapse time of the exact empirical score for isotropic Gaussian data (OU process).

Criterion (Biroli et al. 2024, normalisation reconstructed): (1/(2d)) sum_i log(1 + lambda_i SNR_t) =
log(N)/d with SNR_t = e^{-2t}/(1 - e^{-2t}).  For lambda_i = s it is solved in closed form.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld
from lindiff.memorisation import collapse_time, speciation_time

t, s, N, d = sp.symbols("t s N d", positive=True)


def make_page():
    return Page("collapse_time", "Collapse and speciation times for Gaussian data (OU)",
                ["OU: alpha = e^{-t}, sigma^2 = 1 - e^{-2t}; isotropic covariance s I for the closed form",
                 "collapse: (1/2) log(1 + s SNR_t) = log(N)/d; speciation: alpha_t^2 lambda_max = 1"],
                ["Biroli, Bonnaire, de Bortoli & Mezard (2024); docs/theory.md#collapse-time"])


def derive(page):
    snr = sp.exp(-2 * t) / (1 - sp.exp(-2 * t))
    eq = sp.Eq(sp.log(1 + s * snr) / 2, sp.log(N) / d)
    page.step("Isotropic criterion", eq)
    sol = sp.solve(eq, t)
    tc = [x for x in sol if x.is_real is not False][0]
    page.result("t_C", sp.simplify(tc))
    page.step("equals (1/2) log(1 + s/(N^{2/d} - 1))", sp.simplify(sp.expand_log(tc - sp.log(1 + s / (N ** (2 / d) - 1)) / 2, force=True)))
    lam = sp.Symbol("lambda_max", positive=True)
    page.result("t_S", sp.solve(sp.Eq(sp.exp(-2 * t) * lam, 1), t)[0])


def check(page, rng):
    tc = sp.lambdify((s, N, d), page.results["t_C"], "numpy")
    ou = ld.OU(10.0)
    for sv, Nv, dv in ((1.0, 1000, 100), (2.5, 50, 20), (0.3, 10**4, 10)):
        page.compare(f"t_C for s={sv}, N={Nv}, d={dv}", tc(sv, Nv, dv), collapse_time(np.full(dv, sv), Nv, ou), rtol=1e-10)
    ts = sp.lambdify(sp.Symbol("lambda_max", positive=True), page.results["t_S"], "numpy")
    page.compare("t_S for lambda_max = 7", ts(7.0), speciation_time([7.0, 1.0], ou), rtol=1e-12)


if __name__ == "__main__":
    main("collapse_time")
