"""UniPC, DEIS, DPM-Solver singlestep, PNDM, LCM and TCD: coefficients from the papers' update rules.

Symbolic part: the closed forms lindiff's builders use are derived from the definitions —
the DEIS weights as exact integrals of Lagrange polynomials in ``log rho``, the Adams-Bashforth weights
of PLMS, PNDM's transfer as the DDIM step, the exponential-integrator weights of DPM-Solver (ODE and
SDE) as integrals of the Taylor terms against the exponential kernel (which shows that diffusers'
third-order ``sde-dpmsolver++`` D_2 weight ``-phi_2(-2h) - 1/2`` should be ``1/2 - phi_2(-2h)``), and
UniPC's ``B(h) b_i = i! phi_i(z) - 1``.

Numeric part: each update rule is transcribed a second time, independently of lindiff's program
builders, as plain arithmetic on *affine forms* (coefficients on ``x_T``, on every noise draw and a
constant, per eigenmode of a Gaussian score), iterated over a grid, and the resulting law compared with
``sampling_law``.
"""

import math

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld

h, z, u, th, r0, r1 = sp.symbols("h z u theta r_0 r_1", real=True)
rho_s, rho_t, rho_1, rho_2 = sp.symbols("rho_s rho_t rho_1 rho_2", positive=True)


def make_page():
    return Page("diffusers_samplers", "UniPC, DEIS, DPM-Solver singlestep, PNDM, LCM, TCD: weights and step maps",
                ["lambda = log(alpha/sigma), h = lambda_t - lambda_s > 0, rho = sigma/alpha",
                 "phi_1(z) = (e^z - 1)/z, phi_{k+1}(z) = (phi_k(z) - 1/k!)/z",
                 "per eigenmode the Gaussian score gives x0_hat(x) = m + alpha l/(alpha^2 l + sigma^2) (x - alpha m)"],
                ["Zhao et al. (2023) UniPC, Alg. 2-3; Zhang & Chen (2023) DEIS; Lu et al. (2022a, 2022b) DPM-Solver(++);",
                 "Liu et al. (2022) PNDM eqs. 9, 12, 13; Luo et al. (2023) LCM Alg. 1; Zheng et al. (2024) TCD Alg. 4"])


def _phi(k, x):
    out = (sp.exp(x) - 1) / x
    for j in range(1, k):
        out = (out - sp.Rational(1, math.factorial(j))) / x
    return out


def derive(page):
    # DEIS: int_{rho_s}^{rho_t} l_k(log rho) d rho for the Lagrange basis through log rho_1, log rho_2
    lr = sp.log(u)
    l1 = (lr - sp.log(rho_2)) / (sp.log(rho_1) - sp.log(rho_2))
    w1 = sp.integrate(l1, (u, rho_s, rho_t))
    page.step("DEIS order 2: weight of eps(rho_1) = int_{rho_s}^{rho_t} (log rho - log rho_2)/(log rho_1 - log rho_2) d rho", w1)
    page.result("deis_w1", w1)
    ind = lambda t_, b, c: t_ * (-sp.log(c) + sp.log(t_) - 1) / (sp.log(b) - sp.log(c))  # noqa: E731 diffusers' ind_fn
    page.step("diffusers' closed form ind_fn(rho_t) - ind_fn(rho_s) minus the derived weight (zero)",
              sp.simplify(sp.expand_log(w1 - (ind(rho_t, rho_1, rho_2) - ind(rho_s, rho_1, rho_2)), force=True)))
    # PLMS: Adams-Bashforth weights = integrals of the Lagrange basis on the unit-step grid 0, -1, -2, -3
    nodes = [0, -1, -2, -3]
    ab = []
    for k in range(4):
        poly = sp.prod([(u - nodes[j]) / (nodes[k] - nodes[j]) for j in range(4) if j != k])
        ab.append(sp.integrate(poly, (u, 0, 1)))
    page.step("PLMS (Liu et al. eq. 12): four-step Adams-Bashforth weights int_0^1 l_k(u) du", sp.Matrix(ab))
    page.result("ab4", sp.Matrix(ab))
    # PNDM transfer = DDIM step
    a, a2 = sp.symbols("abar_t abar_prev", positive=True)
    xx, e = sp.symbols("x e", real=True)
    transfer = sp.sqrt(a2 / a) * xx - (a2 - a) / (sp.sqrt(a) * (sp.sqrt((1 - a2) * a) + sp.sqrt((1 - a) * a2))) * e
    ddim = sp.sqrt(a2) * (xx - sp.sqrt(1 - a) * e) / sp.sqrt(a) + sp.sqrt(1 - a2) * e
    page.step("PNDM transfer phi (Liu et al. eq. 9) minus the DDIM step (zero)", sp.simplify(sp.radsimp(transfer - ddim)))
    page.result("pndm_transfer_minus_ddim", sp.simplify(sp.radsimp(transfer - ddim)))
    # DPM-Solver(++) weights: x0(lambda_s + u h) = sum_k D_k u^k / k!, kernel e^{-H(1-u)} with H = h (ODE) or 2h (SDE)
    H = sp.symbols("H", positive=True)
    wts = [sp.simplify(sp.integrate(H * sp.exp(-H * (1 - u)) * u**k / sp.factorial(k), (u, 0, 1))) for k in range(3)]
    page.step("data-prediction weights int_0^1 H e^{-H(1-u)} u^k/k! du, k = 0, 1, 2", sp.Matrix(wts))
    phis = [H * _phi(k + 1, -H) for k in range(3)]
    page.step("... minus H phi_{k+1}(-H) (zero)", sp.Matrix([sp.simplify(wk - pk) for wk, pk in zip(wts, phis)]))
    page.result("dpm_weights_minus_phi", sp.Matrix([sp.simplify(wk - pk) for wk, pk in zip(wts, phis)]))
    # the SDE D_2 weight with H = 2h (D_2 ~ h^2 x0''(lambda) / 2, i.e. the k = 2 Taylor term above)
    w2_sde = sp.simplify(wts[2].subs(H, 2 * h))
    diffusers_w2 = (1 - sp.exp(-2 * h) - 2 * h) / (2 * h) ** 2 - sp.Rational(1, 2)
    page.step("sde-dpmsolver++ D_2 weight 2h phi_3(-2h) = 1/2 - phi_2(-2h) (its h -> 0 limit is 0)",
              sp.limit(w2_sde, h, 0))
    page.step("diffusers' sde-dpmsolver++ third-order D_2 weight minus the derived one (it is -1 at every h)",
              sp.simplify(diffusers_w2 - w2_sde))
    page.result("sde_d2_defect", sp.simplify(diffusers_w2 - w2_sde))
    # UniPC: B(h) b_i = i! z phi_{i+1}(z) = i! phi_i(z) - 1
    for i in (1, 2, 3):
        page.step(f"UniPC: {i}! z phi_{i + 1}(z) - ({i}! phi_{i}(z) - 1) (zero)",
                  sp.simplify(math.factorial(i) * z * _phi(i + 1, z) - (math.factorial(i) * _phi(i, z) - 1)))
    R = sp.Matrix([[1, 1], [r0, 1]])
    b = sp.Matrix(sp.symbols("b_1 b_2"))
    page.step("UniC-2 system R rho = b with rks = (r_0, 1): rho", sp.simplify(R.LUsolve(b)))
    page.result("unic2_rho", sp.simplify(R.LUsolve(b)))


# ------------------------------------------------------------------------------------------------
# numeric check: the update rules transcribed on affine forms, per eigenmode
class Aff:
    """An affine form over (x_T, z_1, z_2, ..., 1), per eigenmode: ``c[0]`` on x_T, ``c[1:-1]`` on the
    noise draws, ``c[-1]`` the constant; arrays of shape (K + 2, d)."""

    __array_ufunc__ = None  # numpy scalars defer to Aff's operators

    def __init__(self, c):
        self.c = c

    def __add__(self, o):
        return Aff(self.c + o.c)

    def __sub__(self, o):
        return Aff(self.c - o.c)

    def __rmul__(self, s):
        return Aff(s * self.c)

    __mul__ = __rmul__


class Tracker:
    def __init__(self, d, max_noise=400):
        self.d, self.K, self.used = d, max_noise, 0

    def start(self):
        c = np.zeros((self.K + 2, self.d))
        c[0] = 1.0
        return Aff(c)

    def noise(self):
        self.used += 1
        c = np.zeros((self.K + 2, self.d))
        c[self.used] = 1.0
        return Aff(c)

    def const(self, v):
        c = np.zeros((self.K + 2, self.d))
        c[-1] = v
        return Aff(c)

    def law(self, f, start_var=1.0):
        var = f.c[0] ** 2 * start_var + np.sum(f.c[1:-1] ** 2, axis=0)
        return f.c[-1], var


def _x0(tr, lam, m, process, t, x):
    """Per-mode x0_hat of the exact Gaussian score: m + alpha l/(alpha^2 l + sigma^2) (x - alpha m)."""
    a, s = float(process.alpha(t)), float(process.sigma(t))
    k = a * lam / (a * a * lam + s * s)
    return k * x + tr.const(m - k * a * m)


def _eps(tr, lam, m, process, t, x):
    a, s = float(process.alpha(t)), float(process.sigma(t))
    return (1.0 / s) * (x - a * _x0(tr, lam, m, process, t, x))


def _ab(process, t):
    return float(process.alpha(t)), float(process.sigma(t))


def _lam(process, t):
    a, s = _ab(process, t)
    return math.log(a / s) if s > 0 else math.inf


def _run_unipc(tr, lam, m, process, g, order, bh, lof=True):
    """Zhao et al. (2023) UniPC with data predictions (diffusers' default predict_x0)."""
    n = len(g) - 1
    x = tr.start()
    outs, times, xc_prev, prev_order = [], [], None, 0

    def update(s_idx, t, xs, m0, past, mnew):
        ts = times[s_idx]
        a_t, s_t = _ab(process, t)
        a_s, s_s = _ab(process, ts)
        hh = _lam(process, t) - _lam(process, ts)
        zz = -hh
        B = zz if bh == "bh1" else math.expm1(zz)
        out = (s_t / s_s) * xs + (-a_t * math.expm1(zz)) * m0
        if not past and mnew is None:
            return out
        rks = [(_lam(process, tk) - _lam(process, ts)) / hh for _, tk in past] + ([1.0] if mnew is not None else [])
        p = len(rks)
        b = [math.factorial(i) * zz * _phi_num(i + 1, zz) / B for i in range(1, p + 1)]
        if p == 1:
            rho = [0.5]
        else:
            R = np.array([[r ** (i - 1) for r in rks] for i in range(1, p + 1)])
            # (the predictor's rks hold only the past points: diffusers' R[:-1, :-1] of the system with r = 1 appended)
            rho = list(np.linalg.solve(R, b))
        res = tr.const(0.0)
        for (mk, _), r, w in zip(past, rks, rho):
            res = res + w * ((1.0 / r) * (mk - m0))
        if mnew is not None:
            res = res + rho[-1] * (mnew - m0)
        return out - (a_t * B) * res

    for i in range(n):
        t, tn = g[i], g[i + 1]
        f = _x0(tr, lam, m, process, t, x)
        p = min(order, n - i) if lof else order
        p = min(p, i + 1)
        if i > 0:
            # corrector for x_i from x_{i-1}^c, with outputs m_{i-1}, m_{i-2}.. and f at the predicted x_i
            past = list(zip(outs[1:prev_order], times[1:prev_order]))
            xc = update(0, t, xc_prev, outs[0], past, f)
        else:
            xc = x
        outs.insert(0, f)
        times.insert(0, t)
        x = update(0, tn, xc, f, list(zip(outs[1:p], times[1:p])), None)
        xc_prev, prev_order = xc, p
    return x


def _phi_num(k, zz):
    from lindiff.samplers import _phi as phi

    return phi(k, zz)


def _run_deis(tr, lam, m, process, g, order):
    n = len(g) - 1
    x = tr.start()
    hist = []
    for i in range(n):
        t, tn = g[i], g[i + 1]
        e = _eps(tr, lam, m, process, t, x)
        hist.insert(0, (e, t))
        p = min(i + 1, order)
        if n < 15 and i == n - 1:
            p = 1
        elif n < 15 and i == n - 2:
            p = min(p, 2)
        a_t, s_t = _ab(process, tn)
        a_s, s_s = _ab(process, t)
        rhos = [_ab(process, tk)[1] / _ab(process, tk)[0] for _, tk in hist[:p]]
        rt = s_t / a_t
        acc = (1.0 / a_s) * x
        for k in range(p):
            # exact integral of the Lagrange basis in log rho (sympy-derived form above, numerically)
            wk = _lagrange_integral(rhos, k, s_s / a_s, rt)
            acc = acc + wk * hist[k][0]
        x = a_t * acc
    return x


def _lagrange_integral(rhos, k, lo, hi):
    from scipy.integrate import quad

    logs = np.log(rhos)

    def f(r):
        out = 1.0
        for j, lj in enumerate(logs):
            if j != k:
                out *= (math.log(r) - lj) / (logs[k] - lj)
        return out

    val, _ = quad(f, hi, lo, epsabs=1e-14, epsrel=1e-13, limit=200) if hi > 0 else quad(f, 0.0, lo, epsabs=1e-14, epsrel=1e-13, limit=200)
    return -val


def _run_pndm(tr, lam, m, process, g, warmup):
    n = len(g) - 1
    x = tr.start()
    ets = []

    def transfer(xv, ev, t, t2):
        a, s = _ab(process, t)
        a2, s2 = _ab(process, t2)
        return (a2 / a) * xv + (s2 - s * a2 / a) * ev

    for i in range(n):
        t, tn = g[i], g[i + 1]
        e0 = _eps(tr, lam, m, process, t, x)
        if warmup == "prk" and i < 3:
            tm = tn + (int(t) - int(tn)) // 2
            x1 = transfer(x, e0, t, tm)
            e1 = _eps(tr, lam, m, process, tm, x1)
            x2 = transfer(x, e1, t, tm)
            e2 = _eps(tr, lam, m, process, tm, x2)
            x3 = transfer(x, e2, t, tn)
            e3 = _eps(tr, lam, m, process, tn, x3)
            eb = (1 / 6) * e0 + (1 / 3) * e1 + (1 / 3) * e2 + (1 / 6) * e3
        elif warmup == "heun" and i == 0:
            xp = transfer(x, e0, t, tn)
            eb = 0.5 * e0 + 0.5 * _eps(tr, lam, m, process, tn, xp)
        else:
            hist = [e0] + ets[:3]
            w = {1: [1.0], 2: [1.5, -0.5], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}[len(hist)]
            eb = tr.const(0.0)
            for wk, ek in zip(w, hist):
                eb = eb + wk * ek
        ets.insert(0, e0)
        x = transfer(x, eb, t, tn)
    return x


def _run_singlestep(tr, lam, m, process, g, orders, algo):
    x = tr.start()
    start, outs = None, []
    for i, p in enumerate(orders):
        t, tn = g[i], g[i + 1]
        f = _x0(tr, lam, m, process, t, x)
        if p == 1:
            start = (x, t)
            outs = []
        outs.append((f, t))
        xs, ts = start
        a_t, s_t = _ab(process, tn)
        a_s, s_s = _ab(process, ts)
        if s_t == 0.0:  # h = inf: the first-order step onto sigma = 0 returns alpha_t x0_hat
            x = a_t * outs[0][0]
            continue
        hh = _lam(process, tn) - _lam(process, ts)
        sde = algo == "sde-dpmsolver++"
        H = 2 * hh if sde else hh
        w = [a_t * H * _phi_num(k + 1, -H) for k in range(3)]
        nxt = (s_t / s_s) * math.exp(-hh if sde else 0.0) * xs + w[0] * outs[0][0]
        if p >= 2:
            r_1 = (_lam(process, outs[1][1]) - _lam(process, ts)) / hh
            D1 = (1.0 / r_1) * (outs[1][0] - outs[0][0])
            nxt = nxt + (0.5 * w[0]) * D1  # midpoint (diffusers' default solver_type)
        if sde:
            nxt = nxt + (s_t * math.sqrt(-math.expm1(-2 * hh))) * tr.noise()
        x = nxt
    return x


def _run_lcm(tr, lam, m, process, g):
    x = tr.start()
    for t, tn in zip(g[:-1], g[1:]):
        c = (t - 1) * 10.0
        c_skip, c_out = 0.25 / (c * c + 0.25), c / math.sqrt(c * c + 0.25)
        f = c_skip * x + c_out * _x0(tr, lam, m, process, t, x)
        a2, s2 = _ab(process, tn)
        x = a2 * f + (s2 * tr.noise() if s2 > 0 else tr.const(0.0))
    return x


def _run_tcd(tr, lam, m, process, g, gamma):
    x = tr.start()
    n = len(g) - 1
    for i, (t, tn) in enumerate(zip(g[:-1], g[1:])):
        s = tn if (i == n - 1 or gamma == 0) else math.floor((1 - gamma) * (tn - 1)) + 1
        e = _eps(tr, lam, m, process, t, x)
        x0 = _x0(tr, lam, m, process, t, x)
        a_s, s_s = _ab(process, s)
        xs = a_s * x0 + s_s * e
        if s == tn:
            x = xs
        else:
            a2 = _ab(process, tn)[0]
            x = (a2 / a_s) * xs + math.sqrt(1 - (a2 / a_s) ** 2) * tr.noise()
    return x


def check(page, rng):
    assert sp.simplify(page.results["pndm_transfer_minus_ddim"]) == 0
    assert list(page.results["ab4"]) == [sp.Rational(55, 24), sp.Rational(-59, 24), sp.Rational(37, 24), sp.Rational(-9, 24)]
    assert all(sp.simplify(v) == 0 for v in page.results["dpm_weights_minus_phi"])
    assert sp.simplify(page.results["sde_d2_defect"] + 1) == 0
    page.checks.append("PNDM transfer = DDIM, PLMS = AB4 (55, -59, 37, -9)/24, DPM-Solver weights = H phi_{k+1}(-H), "
                       "diffusers' sde-dpmsolver++ D_2 weight off by exactly -1: symbolic identities")
    # DEIS order-2 weight vs lindiff's exact Lagrange integral
    from lindiff._samplers_diffusers import _deis_weights

    rs, rt, r1v, r2v = 3.0, 1.2, 3.0, 7.5
    derived = float(page.results["deis_w1"].subs({rho_s: rs, rho_t: rt, rho_1: r1v, rho_2: r2v}))
    page.compare("DEIS order-2 weight vs lindiff._samplers_diffusers._deis_weights", derived,
                 _deis_weights(rs, rt, [r1v, r2v])[0], rtol=1e-12)
    # per-mode laws: independent transcription vs sampling_law
    d = 4
    lam = rng.uniform(0.05, 3.0, d)
    m = rng.standard_normal(d)
    p0 = ld.Gaussian.from_spectrum(lam, None, m)
    sv = ld.SigmaVP(14.6)
    grid = np.r_[np.geomspace(14.6, 0.03, 9), 0.0]
    ddpm = ld.DDPM.linear(1000)
    cases = [
        ("unipc bh2 order 2", sv, grid, "unipc", {"solver_order": 2}, lambda tr: _run_unipc(tr, lam, m, sv, grid, 2, "bh2")),
        ("unipc bh1 order 3", sv, grid, "unipc", {"solver_order": 3, "solver_type": "bh1"},
         lambda tr: _run_unipc(tr, lam, m, sv, grid, 3, "bh1")),
        ("deis order 3", sv, grid[:-1], "deis", {"solver_order": 3}, lambda tr: _run_deis(tr, lam, m, sv, grid[:-1], 3)),
        ("dpm singlestep ++ order 2", sv, grid, "dpmsolver_singlestep", {"orders": (1, 2, 1, 2, 1, 2, 1, 2, 1)},
         lambda tr: _run_singlestep(tr, lam, m, sv, grid, [1, 2, 1, 2, 1, 2, 1, 2, 1], "dpmsolver++")),
        ("dpm singlestep sde++ order 2", sv, grid, "dpmsolver_singlestep",
         {"orders": (1, 2, 1, 2, 1, 2, 1, 2, 1), "algorithm_type": "sde-dpmsolver++"},
         lambda tr: _run_singlestep(tr, lam, m, sv, grid, [1, 2, 1, 2, 1, 2, 1, 2, 1], "sde-dpmsolver++")),
    ]
    ts = np.array([981, 801, 601, 401, 201, 101, 41, 21], float)
    gd = np.r_[ts, 0.0]
    cases += [
        ("pndm prk", ddpm, gd, "pndm", {"warmup": "prk"}, lambda tr: _run_pndm(tr, lam, m, ddpm, gd, "prk")),
        ("pndm heun", ddpm, gd, "pndm", {"warmup": "heun"}, lambda tr: _run_pndm(tr, lam, m, ddpm, gd, "heun")),
        ("lcm", ddpm, gd, "lcm", {}, lambda tr: _run_lcm(tr, lam, m, ddpm, gd)),
        ("tcd gamma 0.3", ddpm, np.r_[ts, 1.0], "tcd", {"gamma": 0.3},
         lambda tr: _run_tcd(tr, lam, m, ddpm, np.r_[ts, 1.0], 0.3)),
    ]
    for label, process, g, name, opts, run in cases:
        tr = Tracker(d)
        mean, var = tr.law(run(tr))
        law = ld.sampling_law(ld.GaussianScore(p0, process), process, name, grid=g, **opts)
        page.compare(f"{label}: output variances", var, np.diag(law.cov), rtol=1e-9)
        page.compare(f"{label}: output mean", mean, law.mean, rtol=1e-9, atol=1e-12)


if __name__ == "__main__":
    main("diffusers_samplers")
