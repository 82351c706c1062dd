"""Per-mode step maps of the Karras / k-diffusion samplers and the DPM-Solver weights, from the papers.

Every sampler is written as its authors write it, in the variance-exploding state ``x`` with noise
level ``s = sigma/alpha`` and the data prediction ``D(x, s)``; per eigenmode of an affine model
``D(x, s) = mu + kappa(s) (x - mu)`` (``kappa = l/(l + s^2)`` for the exact score of N(mu, l)).  The
derivation extracts ``x' = A x + B + sum_k N_k z_k`` symbolically; the check iterates these maps on a
Karras grid and compares the output variance and mean with ``lindiff.sampling_law`` (which runs the
coefficients lindiff builds in ``lindiff.samplers``).  The DPM-Solver weights are derived as integrals
of the exponential kernel against the Taylor terms and shown equal to ``H phi_{k+1}(-H)`` (data
prediction) and ``h phi_{k+1}(h)`` (noise prediction); the LMS weights are integrated exactly.
"""

import math

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld
from lindiff.samplers import _phi, lms_coefficients

x, mu, z1, z2 = sp.symbols("x mu z1 z2", real=True)
s, s2, sh, sm, kap, kap_h, kap_m, kap_2 = sp.symbols("s s_next s_hat s_mid kappa kappa_hat kappa_mid kappa_next", positive=True)
eta_, up, down, sn, r_ = sp.symbols("eta sigma_up_frac sigma_down_frac s_noise r", positive=True)


def D(y, k):
    return mu + k * (y - mu)


def _affine(expr, noises=(z1, z2)):
    A = sp.simplify(sp.diff(expr, x))
    B = sp.simplify(expr.subs({x: 0, z1: 0, z2: 0}))
    N = [sp.simplify(sp.diff(expr, zk)) for zk in noises]
    return A, B, N


def make_page():
    return Page("sampler_steps_ve", "Karras / k-diffusion samplers and DPM-Solver weights, per eigenmode",
                ["VE state x = x_vp / alpha, noise level s = sigma/alpha; D(x, s) = mu + kappa(s) (x - mu) per mode",
                 "eps_hat = (x - D)/s; churn s_hat = s (1 + gamma), x_hat = x + s_noise sqrt(s_hat^2 - s^2) z1",
                 "lambda = -log s; h = lambda' - lambda; H = (1 + eta) h"],
                ["Karras et al. (2022) Alg. 1, 2; Lu et al. (2022a) DPM-Solver, (2022b) DPM-Solver++; "
                 "k-diffusion sampling.py (sample_heun, sample_dpm_2, ..., sample_dpmpp_3m_sde)"])


def derive(page):
    d = lambda y, ss, k: (y - D(y, k)) / ss  # noqa: E731  Karras's ODE derivative = eps_hat
    xh = x + sn * sp.sqrt(sh**2 - s**2) * z1
    euler = xh + (s2 - sh) * d(xh, sh, kap_h)
    page.step("Karras Alg. 2, Euler: x' = x_hat + (s' - s_hat) d(x_hat, s_hat)", euler)
    page.result("euler_ve", _affine(euler))
    x2 = xh + (s2 - sh) * d(xh, sh, kap_h)
    heun = xh + (s2 - sh) * (d(xh, sh, kap_h) + d(x2, s2, kap_2)) / 2
    page.step("Karras Alg. 2, Heun: x~ = x_hat + (s' - s_hat) d_1, x' = x_hat + (s' - s_hat)(d_1 + d(x~, s'))/2", heun)
    page.result("heun_ve", _affine(heun))
    smid = sp.sqrt(sh * s2)
    xm = xh + (smid - sh) * d(xh, sh, kap_h)
    dpm2 = xh + (s2 - sh) * d(xm, smid, kap_m)
    page.step("DPM-2 (k-diffusion): s_mid = exp((log s_hat + log s')/2), x' = x_hat + (s' - s_hat) d(x~, s_mid)", dpm2)
    page.result("dpm_2", _affine(dpm2))
    # ancestral: sigma_down = down s', sigma_up = up s'
    sd, su = down * s2, up * s2
    smid_a = sp.sqrt(s * sd)
    xm = x + (smid_a - s) * d(x, s, kap)
    dpm2a = x + (sd - s) * d(xm, smid_a, kap_m) + sn * su * z1
    page.step("DPM-2 ancestral: DPM-2 to sigma_down through sqrt(s sigma_down), then + s_noise sigma_up z", dpm2a)
    page.result("dpm_2_ancestral", _affine(dpm2a))
    h = sp.log(s / sd)
    x2s = (smid_a / s) * x - (sp.exp(-h / 2) - 1) * D(x, kap)
    dpm2s = (sd / s) * x - (sp.exp(-h) - 1) * D(x2s, kap_m) + sn * su * z1
    page.step("DPM-Solver++(2S) ancestral: x~ = (sigma(s)/sigma(t)) x - expm1(-h r) D, x' = (sigma_down/s) x - expm1(-h) D(x~)", dpm2s)
    page.result("dpmpp_2s_ancestral", _affine(dpm2s))
    # DPM-Solver++ SDE: two ancestral sub-steps with fractions (down1, up1) of s_mid and (down, up) of s'
    d1, u1 = sp.symbols("down_1 up_1", positive=True)
    sd1, su1 = d1 * sm, u1 * sm
    x2 = (sd1 / s) * x - (sd1 / s - 1) * D(x, kap) + sn * su1 * z1
    fac = 1 / (2 * r_)
    Dd = (1 - fac) * D(x, kap) + fac * D(x2, kap_m)
    sde = (sd / s) * x - (sd / s - 1) * Dd + sn * su * z2
    page.step("DPM-Solver++ SDE (k-diffusion sample_dpmpp_sde): s_mid = s^(1-r) s'^r", sde)
    page.result("dpmpp_sde", _affine(sde))
    # DPM-Solver weights: integrals of the exponential kernel against (u^k / k!) / h^k
    u, hh, et = sp.symbols("u h eta", positive=True)
    H = (1 + et) * hh
    for k in range(3):
        integral = sp.integrate((1 + et) * sp.exp(-(1 + et) * (hh - u)) * u**k / sp.factorial(k), (u, 0, hh)) / hh**k
        phi = _phi_sym(k + 1, -H) * H
        diff = sp.simplify(sp.expand(integral - phi))
        page.step(f"data prediction, D_{k} weight: int_0^h (1+eta) e^(-(1+eta)(h-u)) u^{k}/{k}! du / h^{k} - H phi_{k + 1}(-H)", diff)
        page.results[f"_dpmpp_w{k}"] = diff
        integral = sp.integrate(sp.exp(hh - u) * u**k / sp.factorial(k), (u, 0, hh)) / hh**k
        diff = sp.simplify(sp.expand(integral - hh * _phi_sym(k + 1, hh)))
        page.step(f"noise prediction, E_{k} weight: int_0^h e^(h-u) u^{k}/{k}! du / h^{k} - h phi_{k + 1}(h)", diff)
        page.results[f"_dpm_w{k}"] = diff
    # the third-order SDE weight, and the form diffusers 0.42.1 uses for sde-dpmsolver++ order 3
    w2 = sp.simplify((H * _phi_sym(3, -H)).subs(et, 1))
    diffusers = ((1 - sp.exp(-2 * hh) - 2 * hh) / (2 * hh) ** 2 - sp.Rational(1, 2))
    page.step("sde-dpmsolver++ order 3, D_2 weight (eta = 1): derived", w2)
    page.step("diffusers 0.42.1 multistep_dpm_solver_third_order_update (sde-dpmsolver++) uses this weight; "
              "derived minus diffusers (= 1: diffusers' D_2 term is off by alpha_t D_2)", sp.simplify(w2 - diffusers))
    page.results["_diffusers_sde3_offset"] = sp.simplify(w2 - diffusers)


def _phi_sym(k, zz):
    """phi_k(z) = (e^z - sum_{j<k} z^j/j!) / z^k."""
    return (sp.exp(zz) - sum(zz**j / sp.factorial(j) for j in range(k))) / zz**k


def _ancestral(s_, s2_, eta):
    if not eta:
        return 1.0, 0.0
    u_ = min(1.0, eta * math.sqrt(max(1 - (s2_ / s_) ** 2, 0.0)))
    return math.sqrt(max(1 - u_ * u_, 0.0)), u_


def check(page, rng):
    for k in range(3):
        assert page.results[f"_dpmpp_w{k}"] == 0 and page.results[f"_dpm_w{k}"] == 0, k
    assert page.results["_diffusers_sde3_offset"] == 1
    page.checks.append("DPM-Solver weights H phi_{k+1}(-H), h phi_{k+1}(h) (k = 0, 1, 2) equal the kernel integrals symbolically")
    for H in (1e-6, 0.03, 0.7, 3.0, 40.0):  # lindiff's phi (series near 0) against the closed form at 50 digits
        for k in (1, 2, 3):
            for zz in (-H, H):
                page.compare_mp(f"phi_{k}({zz:g})", _phi_sym(k, sp.Symbol("w")), {sp.Symbol("w"): zz}, _phi(k, zz), rtol=1e-13)
    # LMS: lindiff's weights against exact rational integration of the Lagrange basis
    sig = [sp.Rational(v) for v in ("14.5", "7.25", "3.125", "1.2", "0.4", "0")]
    tau = sp.Symbol("tau")
    for i in range(3, 5):
        exact = []
        for j in range(4):
            basis = sp.prod([(tau - sig[i - k]) / (sig[i - j] - sig[i - k]) for k in range(4) if k != j])
            exact.append(float(sp.integrate(basis, (tau, sig[i], sig[i + 1]))))
        page.compare(f"lms order 4 weights at step {i} (exact rational integral)", exact,
                     lms_coefficients([float(v) for v in sig], i, 4), rtol=1e-13)
    # iterate the derived maps on a Karras grid, per mode, against sampling_law
    lam = rng.uniform(0.05, 4.0, 4)
    mean = rng.standard_normal(4)
    process = ld.SigmaVP(80.0)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum(lam, mean=mean), process)
    grid = np.r_[(80.0 ** (1 / 7) + np.linspace(0, 1, 10) * (0.03 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7, 0.0]
    kap_of = lambda ss: lam / (lam + ss * ss)  # noqa: E731
    N = len(grid) - 1
    churn = {"s_churn": 3.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.01}
    cases = [("euler_ve", churn), ("heun_ve", churn), ("dpm_2", churn), ("dpm_2_ancestral", {"eta": 0.8, "s_noise": 1.02}),
             ("dpmpp_2s_ancestral", {"eta": 0.9, "s_noise": 1.0}), ("dpmpp_sde", {"eta": 0.7, "s_noise": 1.0, "r": 0.4})]
    for name, opts in cases:
        A_, B_, N_ = page.results[name]
        syms = (mu, s, s2, sh, sm, kap, kap_h, kap_m, kap_2, down, up, sn, sp.Symbol("down_1", positive=True),
                sp.Symbol("up_1", positive=True), r_)
        fA, fB, fN1, fN2 = (sp.lambdify(syms, e, "numpy") for e in [A_, B_] + list(N_))
        v, m = np.full(4, grid[0] ** 2), np.zeros(4)
        for i in range(N):
            si, sn_ = grid[i], grid[i + 1]
            gamma = min(opts.get("s_churn", 0) / N, 2**0.5 - 1) if opts.get("s_tmin", 0) <= si <= opts.get("s_tmax", 0) else 0.0
            shat = si * (1 + gamma)
            dn, upf = _ancestral(si, sn_, opts.get("eta", 0.0))
            if name in ("dpm_2_ancestral", "dpmpp_2s_ancestral") and sn_ * dn == 0 or (name in ("heun_ve", "dpm_2") and sn_ == 0):
                # the Euler branch on the step to 0 (derived above as euler_ve with gamma = 0 there)
                ss = shat
                A = 1 + (sn_ - ss) * (1 - kap_of(ss)) / ss
                B = (sn_ - ss) * (-(mean - kap_of(ss) * mean)) / ss
                if gamma:
                    noise = (1 + (sn_ - ss) * (1 - kap_of(ss)) / ss) * opts["s_noise"] * math.sqrt(ss**2 - si**2)
                else:
                    noise = 0.0
                v, m = A * A * v + noise**2, A * m + B
                continue
            if name == "dpmpp_sde" and sn_ == 0:
                A, B = kap_of(si), mean * (1 - kap_of(si))
                v, m = A * A * v, A * m + B
                continue
            r = opts.get("r", 0.5)
            s_mid = si ** (1 - r) * sn_**r if name == "dpmpp_sde" else (
                math.sqrt(shat * sn_) if name == "dpm_2" else math.sqrt(si * sn_ * dn))
            d1v, u1v = _ancestral(si, s_mid, opts.get("eta", 0.0)) if name == "dpmpp_sde" else (1.0, 0.0)
            args = (mean, si, sn_, shat, s_mid, kap_of(si), kap_of(shat), kap_of(s_mid), kap_of(sn_) if sn_ > 0 else 1.0,
                    dn, upf, opts.get("s_noise", 1.0), d1v, u1v, r)
            A, B = np.broadcast_to(fA(*args), (4,)), np.broadcast_to(fB(*args), (4,))
            n1 = np.broadcast_to(fN1(*args), (4,)) if gamma or name in ("dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde") else 0.0
            n2 = np.broadcast_to(fN2(*args), (4,))
            v, m = A * A * v + n1**2 + n2**2, A * m + B
        law = ld.sampling_law(model, process, name, grid=grid,
                              init=ld.Gaussian.from_spectrum(np.full(4, float(process.sigma(grid[0])) ** 2)), **opts)
        page.compare(f"{name} {opts}: output variances", v, np.diag(law.cov), rtol=1e-9)
        page.compare(f"{name} {opts}: output mean", m, law.mean, rtol=1e-9, atol=1e-12)


if __name__ == "__main__":
    main("sampler_steps_ve")
