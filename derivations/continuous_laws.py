"""Exact laws of the continuous-time reverse SDE and probability-flow ODE for a Gaussian score.

Forward process ``dx = f x dt + g dW`` with ``f = alpha'/alpha`` and ``g^2 = (sigma^2)' - 2 f sigma^2``.
Per eigenmode the exact score is ``-(x - alpha m)/lambda_t``, ``lambda_t = alpha^2 l + sigma^2``.  Run
backwards from T, the variance of ``y = x - alpha m`` obeys the moment ODEs

  SDE: dv/dt = 2 (f + g^2/lambda_t) v - g^2        ODE: dv/dt = 2 (f + g^2/(2 lambda_t)) v.

The closed forms used by ``sampling_law`` are checked to solve them for *any* alpha(t), sigma(t)
(symbolic functions), and ``dsolve`` rederives them for the OU process.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld

t, T, l, v0, m0, mu = sp.symbols("t T l v_0 m_0 m", real=True)
A = sp.Function("alpha")
S2 = sp.Function("s2")  # sigma^2


def make_page():
    return Page("continuous_laws", "Reverse SDE and probability-flow ODE laws from the moment ODEs",
                ["forward dx = f x dt + g dW with alpha(t), sigma^2(t) arbitrary smooth",
                 "exact Gaussian score per mode; start N(m_0, v_0) at time T; lambda_t = alpha^2 l + sigma^2"],
                ["Pierret & Galerne (2025) eqs. 7-8 (start N(0, I)); derived here for any start and any VP/VE-type process"])


def derive(page):
    f = sp.diff(A(t), t) / A(t)
    g2 = sp.diff(S2(t), t) - 2 * f * S2(t)
    lam = A(t) ** 2 * l + S2(t)
    lamT = lam.subs(t, T)
    aT = A(T)
    v_sde = lam + (v0 - lamT) * (aT**2 / A(t) ** 2) * lam**2 / lamT**2
    v_ode = v0 * lam / lamT
    page.result("sde_variance", v_sde)
    page.result("ode_variance", v_ode)
    page.step("SDE: dv/dt - [2 (f + g^2/lambda) v - g^2] for the claimed v", sp.simplify(sp.diff(v_sde, t) - (2 * (f + g2 / lam) * v_sde - g2)))
    page.step("ODE: dv/dt - 2 (f + g^2/(2 lambda)) v", sp.simplify(sp.diff(v_ode, t) - 2 * (f + g2 / (2 * lam)) * v_ode))
    page.step("Both satisfy v(T) = v_0", sp.simplify(v_sde.subs(t, T) - v0) + sp.simplify(v_ode.subs(t, T) - v0))
    k_sde = (aT / A(t)) * lam / lamT
    k_ode = sp.sqrt(lam / lamT)
    page.result("sde_mean_multiplier", k_sde)
    page.result("ode_mean_multiplier", k_ode)
    page.step("Means: y = x - alpha m obeys dy/dt = (f + c g^2/lambda) y, c = 1 (SDE), 1/2 (ODE)",
              sp.simplify(sp.diff(k_sde, t) - (f + g2 / lam) * k_sde) + sp.simplify(sp.diff(k_ode, t) - (f + g2 / (2 * lam)) * k_ode))
    # dsolve for the OU process: alpha = e^{-t}, sigma^2 = 1 - e^{-2t}
    v = sp.Function("v")
    lam_ou = sp.exp(-2 * t) * l + 1 - sp.exp(-2 * t)
    ode = sp.Eq(v(t).diff(t), 2 * (-1 + 2 / lam_ou) * v(t) - 2)
    sol = sp.dsolve(ode, v(t), ics={v(T): v0}).rhs
    page.step("OU reverse SDE variance by dsolve", ode)
    claimed = v_sde.subs({A(T): sp.exp(-T), S2(T): 1 - sp.exp(-2 * T)}).subs({A(t): sp.exp(-t), S2(t): 1 - sp.exp(-2 * t)})
    page.step("dsolve minus the closed form", sp.simplify(sp.expand(sol - claimed)))
    page.results["_ou_diff"] = sp.simplify(sp.expand(sol - claimed))


def check(page, rng):
    assert page.results["_ou_diff"] == 0 or abs(float(page.results["_ou_diff"].subs({t: 0.3, T: 2.0, l: 0.7, v0: 1.3}))) < 1e-12
    page.checks.append("dsolve for the OU process reproduces the closed form")
    lam_v = rng.uniform(0.01, 5, 4)
    U = ld.spectra.random_basis(4, rng)
    p0 = ld.Gaussian.from_spectrum(lam_v, U, rng.standard_normal(4))
    start = ld.Gaussian.from_spectrum(rng.uniform(0.3, 2, 4), U, rng.standard_normal(4))
    for process in (ld.VP.linear(), ld.OU(2.0)):
        model = ld.GaussianScore(p0, process)
        Tv = process.T
        for sampler in ("sde", "ode"):
            for t_min in (0.0, 0.05):
                law = ld.sampling_law(model, process, sampler, t_min=t_min, init=start)
                subs = lambda e: e.subs({A(T): float(process.alpha(Tv)), S2(T): float(process.sigma(Tv)) ** 2}).subs(  # noqa: E731
                    {A(t): float(process.alpha(t_min)), S2(t): float(process.sigma(t_min)) ** 2})
                var_fn = sp.lambdify((l, v0), subs(page.results[f"{sampler}_variance"]), "numpy")
                k_fn = sp.lambdify((l,), subs(page.results[f"{sampler}_mean_multiplier"]), "numpy")
                v_expected = var_fn(lam_v, start.eigenvalues)
                k = k_fn(lam_v)
                a_t, a_T = float(process.alpha(t_min)), float(process.alpha(Tv))
                mean_u = U.T @ p0.mean
                mean_expected = a_t * mean_u + k * (U.T @ start.mean - a_T * mean_u)
                page.compare(f"{sampler} variance, {process!r}, t_min={t_min}", v_expected, np.einsum("ij,ik,kj->j", U, law.cov, U), rtol=1e-9)
                page.compare(f"{sampler} mean, {process!r}, t_min={t_min}", mean_expected, U.T @ law.mean, rtol=1e-9, atol=1e-12)


if __name__ == "__main__":
    main("continuous_laws")
