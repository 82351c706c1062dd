"""Per-eigenmode recursions of every stepped sampler, derived from the published update rules.

Each update is written as in its paper, with the affine model substituted: per mode the score is
``s(x) = -g (x - alpha m)`` and the noise prediction ``eps_hat = -sigma s``.  The derivation extracts
``x' = A x + B + nu z``; the law then follows ``v' = A^2 v + nu^2`` and ``mean' = A mean + B``.  The
check iterates these recursions on real grids and compares them with ``sampling_law`` (which runs the
coefficients lindiff encodes in ``lindiff.samplers``), and the continuous schemes with Pierret &
Galerne's eqs. (11), (13), (16), (17).
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld

x, m, z = sp.symbols("x m z", real=True)
g, g2_, ab, abp, eta, h, bk, bn, dB = sp.symbols("g g_next abar abar_prev eta h beta_k beta_next DeltaB", positive=True)


def _affine(expr):
    A = sp.simplify(sp.diff(expr, x))
    B = sp.simplify(expr.subs({x: 0, z: 0}))
    V = sp.simplify(sp.diff(expr, z) ** 2)
    return A, B, V


def make_page():
    return Page("sampler_steps", "Per-mode step maps of DDPM, DDIM, Euler–Maruyama, exponential integrator, Euler, Heun",
                ["score s(x, t) = -g_t (x - alpha_t m) per eigenmode; eps_hat = -sigma_t s",
                 "DDPM/DDIM step t -> prev with alpha_bar = abar, abar_prev (skip-step beta = 1 - abar/abar_prev)",
                 "VP: f = -beta/2, g^2 = beta; h = t_k - t_{k+1} > 0; DeltaB = B(t_k) - B(t_{k+1})"],
                ["Ho et al. (2020) eq. 11; Song, Meng & Ermon (2021) eq. 12; Pierret & Galerne (2025) eqs. 11-17"])


def derive(page):
    alpha, sigma = sp.sqrt(ab), sp.sqrt(1 - ab)
    score = lambda y, gg, a: -gg * (y - a * m)  # noqa: E731
    eps_hat = -sigma * score(x, g, alpha)
    beta = 1 - ab / abp
    ddpm = (x - beta / sp.sqrt(1 - ab) * eps_hat) / sp.sqrt(1 - beta) + sp.sqrt(beta) * z
    page.step("DDPM (Ho et al. eq. 11): x' = (x - beta/sqrt(1-abar) eps_hat)/sqrt(1-beta) + sqrt(beta) z", ddpm)
    page.result("ddpm", _affine(ddpm))
    nu = eta * sp.sqrt((1 - abp) / (1 - ab)) * sp.sqrt(1 - ab / abp)
    x0_hat = (x - sigma * eps_hat) / alpha
    ddim = sp.sqrt(abp) * x0_hat + sp.sqrt(1 - abp - nu**2) * eps_hat + nu * z
    page.step("DDIM (Song et al. eq. 12): x' = sqrt(abar') x0_hat + sqrt(1 - abar' - nu^2) eps_hat + nu z", ddim)
    page.result("ddim", _affine(ddim))
    # continuous schemes, VP in Song's convention; a = alpha(t_k), a2 = alpha(t_{k+1})
    a, a2 = sp.symbols("alpha_k alpha_next", positive=True)
    em = x + h * (bk / 2 * x + bk * score(x, g, a)) + sp.sqrt(bk * h) * z
    page.step("Euler–Maruyama on dx = [f x - g^2 s] dt + g dW, stepping t -> t - h", em)
    page.result("euler_maruyama", _affine(em))
    u, u1, u2 = sp.symbols("u t_next t_k", real=True)
    Bf = sp.Function("B")
    F = 2 * sp.exp((Bf(u) - Bf(u1)) / 2)
    page.step("Exponential integrator: d/du [2 exp((B(u) - B(t'))/2)] = beta(u) exp((B(u) - B(t'))/2), so the frozen-score "
              "integral is 2 (exp(DeltaB/2) - 1); likewise the noise variance is exp(DeltaB) - 1",
              sp.simplify(sp.diff(F, u) - sp.diff(Bf(u), u) * sp.exp((Bf(u) - Bf(u1)) / 2)))
    ei = sp.exp(dB / 2) * x + 2 * (sp.exp(dB / 2) - 1) * score(x, g, a) + sp.sqrt(sp.exp(dB) - 1) * z
    page.result("exponential_integrator", _affine(ei))
    eu = x + h * bk / 2 * (x + score(x, g, a))
    page.step("Euler on the probability-flow ODE dx/dt = f x - g^2/2 s", eu)
    page.result("euler", _affine(eu))
    v = lambda y, gg, aa, bb: bb / 2 * (y + score(y, gg, aa))  # noqa: E731  reverse-time velocity
    pred = x + h * v(x, g, a, bk)
    heun = x + h / 2 * (v(x, g, a, bk) + v(pred, g2_, a2, bn))
    page.step("Heun: predictor x~ = x + h v(x, t_k), corrector x' = x + h/2 (v(x, t_k) + v(x~, t_{k+1}))", heun)
    page.result("heun", _affine(heun))
    # VE-sigma samplers (Karras / k-diffusion / diffusers), written in the VE state x_ve = x / alpha and
    # converted back: a = alpha(t), a2 = alpha(t'), sv = sigma_ve(t), sv2 = sigma_ve(t')
    sv, sv2 = sp.symbols("sigma_ve sigma_ve_next", positive=True)
    s_vp = sv * a  # VP sigma at t
    eps_ve = -s_vp * score(x, g, a)
    euler_ve = a2 * (x / a + (sv2 - sv) * eps_ve)
    page.step("Karras Euler: x'/alpha' = x/alpha + (sigma_ve' - sigma_ve) eps_hat", euler_ve)
    page.result("euler_ve", _affine(euler_ve))
    up = sp.sqrt(sv2**2 * (sv**2 - sv2**2) / sv**2)
    down = sp.sqrt(sv2**2 - up**2)
    anc = a2 * (x / a + (down - sv) * eps_ve + up * z)
    page.step("Euler ancestral: sigma_up = sqrt(s'^2 (s^2 - s'^2)/s^2), sigma_down = sqrt(s'^2 - sigma_up^2)", anc)
    page.result("euler_ancestral", _affine(anc))
    # DPM-Solver++(2M), diffusers' dpmsolver++ midpoint update with data predictions D = (x - sigma eps)/alpha
    xp, gp, ap_, svp = sp.symbols("x_prev g_prev alpha_prev sigma_ve_prev", positive=True)
    D0 = (x - s_vp * (-s_vp * score(x, g, a))) / a
    D1p = (xp - (svp * ap_) * (-(svp * ap_) * score(xp, gp, ap_))) / ap_
    lam = lambda aa, svv: -sp.log(svv)  # noqa: E731  lambda = log(alpha/sigma_vp) = -log sigma_ve
    h_dpm = lam(a2, sv2) - lam(a, sv)
    r0 = (lam(a, sv) - lam(ap_, svp)) / h_dpm
    s2_vp = sv2 * a2
    dpm = (s2_vp / s_vp) * x - a2 * (sp.exp(-h_dpm) - 1) * (D0 + (D0 - D1p) / (2 * r0))
    page.step("DPM-Solver++(2M): x' = (sigma'/sigma) x - alpha' (e^{-h} - 1) (D_i + (D_i - D_{i-1})/(2 r))", dpm)
    page.result("dpmpp_2m", (sp.simplify(sp.diff(dpm, x)), sp.simplify(sp.diff(dpm, xp)),
                             sp.simplify(dpm.subs({x: 0, xp: 0}))))
    # Pierret & Galerne's variance recursions (half-beta b = beta/2, centred data, g = 1/lambda)
    lam_k, lam_n = sp.symbols("lambda_k lambda_next", positive=True)
    b_half, bn_half = bk / 2, bn / 2
    pg = {
        "euler_maruyama": ((1 + h * b_half * (1 - 2 / lam_k)) ** 2, 2 * h * b_half),
        "euler": ((1 + h * b_half * (1 - 1 / lam_k)) ** 2, 0),
        "heun": ((1 + h / 2 * b_half * (1 - 1 / lam_k) + h / 2 * bn_half * (1 - 1 / lam_n) * (1 + h * b_half * (1 - 1 / lam_k))) ** 2, 0),
        "exponential_integrator": ((1 + (sp.exp(dB / 2) - 1) * (1 - 2 / lam_k)) ** 2, 2 * (sp.exp(dB) - 1) / 2),
    }
    for name, (A2, V) in pg.items():
        A, _, Vd = page.results[name]
        diff = sp.simplify((A**2).subs({g: 1 / lam_k, g2_: 1 / lam_n}) - A2) + sp.simplify(Vd - V)
        page.step(f"{name}: derived (A^2, nu^2) minus Pierret & Galerne's recursion", diff)
        page.results[f"_pg_{name}"] = diff


def _iterate(fn, prog, process, gains_of, mean_u, alpha_of):
    """Iterate v' = A^2 v + V, mean' = A mean + B from N(0, I) over the program's steps."""
    d = mean_u.size
    v, mu = np.ones(d), np.zeros(d)
    for st in prog.steps:
        A, B, V = fn(st)
        v, mu = A * A * v + V, A * mu + B
    return v, mu


def _check_ve(page, p0, U, lam_v, mean_u):
    a_k, a_n = sp.Symbol("alpha_k", positive=True), sp.Symbol("alpha_next", positive=True)
    sv, sv2 = sp.symbols("sigma_ve sigma_ve_next", positive=True)
    xp, gp, ap_, svp = sp.symbols("x_prev g_prev alpha_prev sigma_ve_prev", positive=True)
    process = ld.SigmaVP(80.0)
    grid = np.r_[np.geomspace(80.0, 0.05, 14), 0.0]
    model = ld.GaussianScore(p0, process)
    gain = lambda t: 1.0 / (float(process.alpha(t)) ** 2 * lam_v + float(process.sigma(t)) ** 2)  # noqa: E731
    for name in ("euler_ve", "euler_ancestral"):
        fn = sp.lambdify((x, m, z, g, a_k, a_n, sv, sv2), list(page.results[name]), "numpy")
        v, mu = np.ones_like(lam_v), np.zeros_like(lam_v)
        for t, t2 in zip(grid[:-1], grid[1:]):
            A, B, V = (np.broadcast_to(w, lam_v.shape) for w in
                       fn(0.0, mean_u, 0.0, gain(t), float(process.alpha(t)), float(process.alpha(t2)), t, t2))
            v, mu = A * A * v + V, A * mu + B
        law = ld.sampling_law(model, process, name, grid=grid)
        page.compare(f"{name}: output variances", v, np.einsum("ij,ik,kj->j", U, law.cov, U), rtol=1e-9)
        page.compare(f"{name}: output mean", mu, U.T @ law.mean, rtol=1e-9, atol=1e-12)
    # DPM-Solver++(2M): propagate the joint law of (x_i, x_{i-1}) per mode; first and last steps first order
    Ax, Ap, B = (sp.lambdify((m, g, gp, a_k, a_n, ap_, sv, sv2, svp), e, "numpy") for e in page.results["dpmpp_2m"])
    n = len(grid) - 1
    P = np.stack([np.ones_like(lam_v), np.ones_like(lam_v)])  # multipliers of x_T for (x_i, x_{i-1})
    q = np.zeros((2, lam_v.size))
    for k in range(n):
        t, t2 = grid[k], grid[k + 1]
        a, a2, s_, s2 = float(process.alpha(t)), float(process.alpha(t2)), float(process.sigma(t)), float(process.sigma(t2))
        if k == 0 or k == n - 1:  # first order = DDIM with eta = 0 (x' = (s'/s) x + alpha' (1 - e^{-h}) D_i)
            D_coef = 1 / a - s_ * s_ * gain(t) / a
            emh = (s2 / a2) / (s_ / a)
            cx = s2 / s_ + a2 * (1 - emh) * D_coef
            c0 = a2 * (1 - emh) * (s_ * s_ * gain(t) * mean_u)
            newP, newq = cx * P[0], cx * q[0] + c0
        else:
            tp = grid[k - 1]
            args_ = (mean_u, gain(t), gain(tp), a, a2, float(process.alpha(tp)), t, t2, tp)
            cx, cp, c0 = (np.broadcast_to(f(*args_), lam_v.shape) for f in (Ax, Ap, B))
            newP, newq = cx * P[0] + cp * P[1], cx * q[0] + cp * q[1] + c0
        P, q = np.stack([newP, P[0]]), np.stack([newq, q[0]])
    law = ld.sampling_law(model, process, "dpmpp_2m", grid=grid)
    page.compare("dpmpp_2m: output variances (augmented state)", P[0] ** 2, np.einsum("ij,ik,kj->j", U, law.cov, U), rtol=1e-9)
    page.compare("dpmpp_2m: output mean (augmented state)", q[0], U.T @ law.mean, rtol=1e-9, atol=1e-12)


def check(page, rng):
    for name in ("euler_maruyama", "euler", "heun", "exponential_integrator"):
        assert page.results[f"_pg_{name}"] == 0, name
    page.checks.append("EM, EI, Euler, Heun variance maps equal Pierret & Galerne's eqs. (11), (13), (16), (17) symbolically")
    lam_v = rng.uniform(0.05, 4, 5)
    U = ld.spectra.random_basis(5, rng)
    p0 = ld.Gaussian.from_spectrum(lam_v, U, rng.standard_normal(5))
    mean_u = U.T @ p0.mean
    fns = {k: sp.lambdify((x, m, z, g, g2_, ab, abp, eta, h, bk, bn, dB, sp.Symbol("alpha_k", positive=True),
                           sp.Symbol("alpha_next", positive=True)), list(page.results[k]), "numpy")
           for k in ("ddpm", "ddim", "euler_maruyama", "exponential_integrator", "euler", "heun")}

    def gain(process, t):
        return 1.0 / (float(process.alpha(t)) ** 2 * lam_v + float(process.sigma(t)) ** 2)

    cases = [(ld.DDPM.linear(200), "ddpm", {"variance": "beta", "final_noise": True}, None),
             (ld.DDPM.linear(200), "ddim", {"eta": 0.7}, 20),
             (ld.VP.linear(), "euler_maruyama", {}, 30), (ld.VP.linear(), "exponential_integrator", {}, 30),
             (ld.VP.linear(), "euler", {}, 30), (ld.VP.linear(), "heun", {}, 30)]
    for process, name, opts, steps in cases:
        model = ld.GaussianScore(p0, process)
        t_min = 0.0 if process.discrete else 1e-3
        law = ld.sampling_law(model, process, name, steps, t_min=t_min, **opts)
        prog = ld.build_sampler(process, name, steps, t_min, **opts)

        def step_fn(st, process=process, name=name):
            t, tn = st.t, st.t_next
            abar, abar_p = float(process.alpha(t)) ** 2, float(process.alpha(tn)) ** 2
            hh = t - tn
            b_k = float(process.beta(t)) if not process.discrete else 0.0
            b_n = float(process.beta(tn)) if not process.discrete else 0.0
            dBv = float(process.B(t) - process.B(tn)) if not process.discrete else 0.0
            A, B, V = fns[name](0.0, mean_u, 0.0, gain(process, t), gain(process, tn), abar, abar_p, opts.get("eta", 0.0),
                                hh, b_k, b_n, dBv, float(process.alpha(t)), float(process.alpha(tn)))
            return np.broadcast_to(A, mean_u.shape), np.broadcast_to(B, mean_u.shape), np.broadcast_to(V, mean_u.shape)

        v, mu = _iterate(step_fn, prog, process, gain, mean_u, None)
        page.compare(f"{name}: output variances", v, np.einsum("ij,ik,kj->j", U, law.cov, U), rtol=1e-9)
        page.compare(f"{name}: output mean", mu, U.T @ law.mean, rtol=1e-9, atol=1e-12)
    _check_ve(page, p0, U, lam_v, mean_u)


if __name__ == "__main__":
    main("sampler_steps")
