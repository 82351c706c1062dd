"""The VE-state and multistep samplers (Karras et al. 2022, k-diffusion, DPM-Solver family).

Three independent checks per sampler: the exact law against the Monte Carlo interpreter (z-scores),
the spectral path against the dense path, and a per-eigenvalue transcription of the published update
rules below (written on affine scalars, one per mode, not through lindiff's programs).
"""

import math

import numpy as np
import pytest
from scipy import integrate

import lindiff as ld
from lindiff import mc
from lindiff.samplers import lms_coefficients

KARRAS = np.r_[(80.0 ** (1 / 7) + np.linspace(0, 1, 12) * (0.02 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7, 0.0]
CHURN = {"s_churn": 4.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}
CONFIGS = [
    ("euler_ve", {}), ("euler_ve", CHURN), ("euler_ve", dict(CHURN, churn_at="start")),
    ("heun_ve", {}), ("heun_ve", CHURN), ("dpm_2", {}), ("dpm_2", CHURN),
    ("dpm_2_ancestral", {}), ("dpm_2_ancestral", {"eta": 0.5, "s_noise": 0.9}),
    ("euler_ancestral", {"eta": 0.5, "s_noise": 1.1}),
    ("lms", {}), ("lms", {"order": 2}), ("dpmpp_2s_ancestral", {}),
    ("dpmpp_sde", {}), ("dpmpp_sde", {"noise": "brownian"}), ("dpmpp_sde", {"eta": 0.5, "r": 0.3}),
    ("dpmsolver_multistep", {"solver_order": 3}),
    ("dpmsolver_multistep", {"solver_order": 3, "algorithm_type": "sde-dpmsolver++"}),
    ("dpmsolver_multistep", {"solver_order": 3, "algorithm_type": "dpmsolver", "lower_order_final": False}),
    ("dpmsolver_multistep", {"solver_order": 2, "algorithm_type": "sde-dpmsolver", "solver_type": "heun"}),
    ("dpmsolver_multistep", {"solver_order": 2, "solver_type": "heun", "euler_at_final": True}),
    ("dpmpp_2m_sde", {}), ("dpmpp_2m_sde", {"solver_type": "heun", "eta": 0.7}), ("dpmpp_3m_sde", {}),
    ("dpmpp_3m_sde", {"eta": 0.5, "s_noise": 1.1}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in CONFIGS]


def _setting(process):
    if isinstance(process, ld.SigmaVP):
        return None, 0.0, {"grid": KARRAS}
    return 12, 1e-3, {}


@pytest.mark.parametrize("name,opts", CONFIGS, ids=IDS)
@pytest.mark.parametrize("process", [ld.SigmaVP(80.0), ld.VP.linear()], ids=repr)
def test_exact_law_matches_monte_carlo_and_dense_path(rng, name, opts, process):
    steps, t_min, kw = _setting(process)
    if name == "dpmsolver_multistep" and "sde-dpmsolver" == opts.get("algorithm_type") and process.T == 1.0:
        t_min = 0.0  # noise-prediction SDE to sigma = 0: the limit form of the last step
    p0 = ld.Gaussian(rng.standard_normal(3), np.diag([2.0, 0.5, 0.05]))
    X = p0.sample(5, rng)
    model = ld.LinearDenoiser.fit(X, process, ridge=0.01)
    law = ld.sampling_law(model, process, name, steps, t_min, **kw, **opts)
    dense = ld.sampling_law(model.to_dense(), process, name, steps, t_min, **kw, **opts)
    np.testing.assert_allclose(dense.cov, law.cov, atol=1e-11 * np.abs(law.cov).max())
    np.testing.assert_allclose(dense.mean, law.mean, atol=1e-11 * max(1.0, np.abs(law.mean).max()))
    x = mc.sample(model, process, name, 20_000, rng, steps, t_min, **kw, **opts)
    z = mc.moment_z_scores(x, law)
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size), f"max |z| = {np.max(np.abs(z)):.2f}"


@pytest.mark.parametrize("name", ["heun_ve", "dpm_2", "lms", "dpmpp_3m_sde"])
def test_dense_only_model_matches_monte_carlo(rng, name):
    process = ld.SigmaVP(80.0)
    X = rng.standard_normal((8, 3))
    model = ld.LinearDenoiser.fit(X, process, train_time=20.0, centred=False)  # no eigenbasis: dense path only
    law = ld.sampling_law(model, process, name, grid=KARRAS)
    x = mc.sample(model, process, name, 20_000, rng, grid=KARRAS)
    z = mc.moment_z_scores(x, law)
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size)


# --- per-eigenvalue transcription of the published update rules ---------------------------------
class Aff:
    """An affine scalar per mode: coefficients on named sources (x_T, noises) and a constant."""

    def __init__(self, terms=None, const=0.0):
        self.terms = dict(terms or {})
        self.const = const

    def __add__(self, o):
        if not isinstance(o, Aff):
            return Aff(self.terms, self.const + o)
        t = dict(self.terms)
        for k, v in o.terms.items():
            t[k] = t.get(k, 0.0) + v
        return Aff(t, self.const + o.const)

    __radd__ = __add__

    def __mul__(self, c):
        return Aff({k: c * v for k, v in self.terms.items()}, c * self.const)

    __rmul__ = __mul__

    def __sub__(self, o):
        return self + (-1.0) * o

    def __truediv__(self, c):
        return self * (1.0 / c)


class Noise:
    def __init__(self):
        self.k = 0

    def __call__(self):
        self.k += 1
        return Aff({f"z{self.k}": 1.0})


def _denoiser(lam, mu):
    """VE denoiser per mode of the exact Gaussian score: D(x, s) = mu + lam (x - mu) / (lam + s^2)."""
    return lambda x, s: x * (lam / (lam + s * s)) + mu * (s * s / (lam + s * s))


def _ancestral(s, s2, eta):
    if not eta:
        return s2, 0.0
    up = min(s2, eta * math.sqrt(s2**2 * (s**2 - s2**2) / s**2))
    return math.sqrt(s2**2 - up**2), up


def _kd(name, D, sig, x, noise, o):
    """k-diffusion's samplers (Karras et al. 2022; Lu et al. 2022), transcribed on affine scalars."""
    N = len(sig) - 1
    if name in ("euler_ve", "heun_ve", "dpm_2"):
        churn, tmin, tmax, sn = (o.get(k, v) for k, v in (("s_churn", 0.0), ("s_tmin", 0.0), ("s_tmax", math.inf), ("s_noise", 1.0)))
        for i in range(N):
            gamma = min(churn / N, 2**0.5 - 1) if tmin <= sig[i] <= tmax else 0.0
            sh = sig[i] * (gamma + 1)
            if gamma > 0:
                x = x + noise() * (sn * (sh**2 - sig[i] ** 2) ** 0.5)
            d = (x - D(x, sh)) / sh
            if name == "euler_ve" or sig[i + 1] == 0:
                x = x + d * (sig[i + 1] - sh)
            elif name == "heun_ve":
                x2 = x + d * (sig[i + 1] - sh)
                d2 = (x2 - D(x2, sig[i + 1])) / sig[i + 1]
                x = x + (d + d2) * (0.5 * (sig[i + 1] - sh))
            else:
                sm = math.exp(0.5 * (math.log(sh) + math.log(sig[i + 1])))
                x2 = x + d * (sm - sh)
                x = x + (x2 - D(x2, sm)) / sm * (sig[i + 1] - sh)
        return x
    if name in ("euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral"):
        eta, sn = o.get("eta", 1.0), o.get("s_noise", 1.0)
        for i in range(N):
            den = D(x, sig[i])
            sd, su = _ancestral(sig[i], sig[i + 1], eta)
            d = (x - den) / sig[i]
            if name == "euler_ancestral":
                x = x + d * (sd - sig[i])
                if sig[i + 1] > 0:
                    x = x + noise() * (sn * su)
            elif sd == 0:
                x = x + d * (sd - sig[i])
                if name == "dpmpp_2s_ancestral" and sig[i + 1] > 0:
                    x = x + noise() * (sn * su)
            elif name == "dpm_2_ancestral":
                sm = math.exp(0.5 * (math.log(sig[i]) + math.log(sd)))
                x2 = x + d * (sm - sig[i])
                x = x + (x2 - D(x2, sm)) / sm * (sd - sig[i]) + noise() * (sn * su)
            else:
                t, tn = -math.log(sig[i]), -math.log(sd)
                h = tn - t
                s = t + 0.5 * h
                x2 = x * (math.exp(-s) / math.exp(-t)) - den * math.expm1(-h * 0.5)
                x = x * (math.exp(-tn) / math.exp(-t)) - D(x2, math.exp(-s)) * math.expm1(-h)
                if sig[i + 1] > 0:
                    x = x + noise() * (sn * su)
        return x
    if name == "lms":
        order, ds = o.get("order", 4), []
        for i in range(N):
            ds.append((x - D(x, sig[i])) / sig[i])
            ds = ds[-order:]
            p = min(i + 1, order)

            def basis(tau, j):
                return math.prod((tau - sig[i - k]) / (sig[i - j] - sig[i - k]) for k in range(p) if k != j)

            c = [integrate.quad(basis, sig[i], sig[i + 1], args=(j,), epsabs=0, epsrel=1e-13)[0] for j in range(p)]
            x = x + sum((cj * dj for cj, dj in zip(c, reversed(ds))), Aff())
        return x
    if name == "dpmpp_sde":
        eta, sn, r = o.get("eta", 1.0), o.get("s_noise", 1.0), o.get("r", 0.5)
        brownian = o.get("noise") == "brownian"
        for i in range(N):
            den = D(x, sig[i])
            if sig[i + 1] == 0:
                x = x + (x - den) / sig[i] * (sig[i + 1] - sig[i])
                continue
            t, tn = -math.log(sig[i]), -math.log(sig[i + 1])
            h = tn - t
            s = t + h * r
            fac = 1 / (2 * r)
            if brownian:  # W(sig_i) - W(s_mid) and W(s_mid) - W(sig_i+1) are independent pieces
                a, b = noise(), noise()
                la, lb = sig[i] - math.exp(-s), math.exp(-s) - sig[i + 1]
                n1 = a
                n2 = (a * math.sqrt(la) + b * math.sqrt(lb)) / math.sqrt(la + lb)
            else:
                n1, n2 = noise(), noise()
            sd, su = _ancestral(sig[i], math.exp(-s), eta)
            s_ = -math.log(sd)
            x2 = x * (sd / sig[i]) - den * math.expm1(t - s_) + n1 * (sn * su)
            den2 = D(x2, math.exp(-s))
            sd, su = _ancestral(sig[i], sig[i + 1], eta)
            tn_ = -math.log(sd)
            dd = den * (1 - fac) + den2 * fac
            x = x * (sd / sig[i]) - dd * math.expm1(t - tn_) + n2 * (sn * su)
        return x
    if name in ("dpmpp_2m_sde", "dpmpp_3m_sde"):
        eta, sn = o.get("eta", 1.0), o.get("s_noise", 1.0)
        olds, hs = [], []
        for i in range(N):
            den = D(x, sig[i])
            if sig[i + 1] == 0:
                x = den
            else:
                h = math.log(sig[i]) - math.log(sig[i + 1])
                if name == "dpmpp_2m_sde":
                    eh = eta * h
                    x = x * (sig[i + 1] / sig[i] * math.exp(-eh)) + den * (-math.expm1(-h - eh))
                    if olds:
                        rr = hs[-1] / h
                        if o.get("solver_type", "midpoint") == "heun":
                            x = x + (den - olds[-1]) * ((-math.expm1(-h - eh)) / (-h - eh) + 1) * (1 / rr)
                        else:
                            x = x + (den - olds[-1]) * (0.5 * (-math.expm1(-h - eh)) * (1 / rr))
                else:
                    he = h * (eta + 1)
                    x = x * math.exp(-he) + den * (-math.expm1(-he))
                    phi2 = math.expm1(-he) / he + 1
                    if len(olds) >= 2:
                        r0, r1 = hs[-1] / h, hs[-2] / h
                        d10, d11 = (den - olds[-1]) / r0, (olds[-1] - olds[-2]) / r1
                        d1 = d10 + (d10 - d11) * (r0 / (r0 + r1))
                        d2 = (d10 - d11) / (r0 + r1)
                        x = x + d1 * phi2 - d2 * (phi2 / he - 0.5)
                    elif olds:
                        x = x + (den - olds[-1]) / (hs[-1] / h) * phi2
                if eta:
                    x = x + noise() * (sig[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)) * sn)
                hs.append(h)
            olds.append(den)
        return x
    raise AssertionError(name)


TRANSCRIBED = [c for c in CONFIGS if c[0] in ("euler_ve", "heun_ve", "dpm_2", "euler_ancestral", "dpm_2_ancestral",
                                              "dpmpp_2s_ancestral", "lms", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde")
               and c[1].get("churn_at") != "start"]


@pytest.mark.parametrize("name,opts", TRANSCRIBED, ids=[f"{n}-{o}" for n, o in TRANSCRIBED])
def test_per_eigenvalue_law_equals_the_published_update_rule(name, opts):
    lam = np.array([4.0, 0.5, 0.01])
    mu = np.array([1.0, -0.5, 0.0])
    process = ld.SigmaVP(80.0)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum(lam, mean=mu), process)
    s0 = KARRAS[0]
    law = ld.sampling_law(model, process, name, grid=KARRAS, init=ld.Gaussian.from_spectrum(np.full(3, (s0 / math.hypot(1, s0)) ** 2)), **opts)
    sig = [float(s) for s in KARRAS]
    for j in range(3):
        x = _kd(name, _denoiser(lam[j], mu[j]), sig, Aff({"xT": s0}), Noise(), opts)  # x = sigma_0 z, VE state
        var = sum(v * v for v in x.terms.values())
        np.testing.assert_allclose(law.cov[j, j], var, rtol=1e-11)
        np.testing.assert_allclose(law.mean[j], x.const, rtol=1e-11, atol=1e-13)


# --- identities, orders, coefficients -----------------------------------------------------------
def test_special_cases_of_the_dpm_solver_family(rng):
    process = ld.SigmaVP(80.0)
    model = ld.LinearDenoiser.fit(rng.standard_normal((6, 3)), process, ridge=0.02)

    def same(a, b):
        np.testing.assert_allclose(a.cov, b.cov, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-14)

    law = lambda name, **o: ld.sampling_law(model, process, name, grid=KARRAS, **o)  # noqa: E731
    same(law("dpmpp_2m"), law("dpmsolver_multistep"))
    for algo in ("dpmsolver++", "dpmsolver"):
        same(law("dpmsolver_multistep", solver_order=1, algorithm_type=algo), law("ddim"))
    same(law("dpmpp_2m_sde", eta=0.0), law("dpmpp_2m", lower_order_final=False))
    same(law("dpmpp_sde", eta=0.0), law("dpmpp_sde", eta=0.0, noise="brownian"))
    same(law("euler_ancestral", eta=0.0), law("euler_ve"))
    same(law("lms", order=1), law("euler_ve"))
    # churn with zero noise and zero width is the plain sampler
    same(law("heun_ve", s_churn=5.0, s_tmax=0.0), law("heun_ve"))
    # Brownian correlation changes the law when there is noise
    a, b = law("dpmpp_sde"), law("dpmpp_sde", noise="brownian")
    assert np.abs(a.cov - b.cov).max() > 1e-6


def test_dpm_order_schedules():
    process = ld.SigmaVP(80.0)
    notes = lambda name, grid, **o: [st.note for st in ld.build_sampler(process, name, grid=grid, **o).steps]  # noqa: E731
    g10 = np.r_[np.geomspace(80, 0.05, 10), 0.0]
    assert notes("dpmsolver_multistep", g10, solver_order=3) == ["order 1", "order 2"] + ["order 3"] * 6 + ["order 2", "order 1"]
    g20 = np.geomspace(80, 0.05, 20)
    assert notes("dpmsolver_multistep", g20, solver_order=3) == ["order 1", "order 2"] + ["order 3"] * 17
    assert notes("dpmsolver_multistep", g20, solver_order=3, euler_at_final=True)[-1] == "order 1"
    assert notes("dpmpp_3m_sde", g10) == ["order 1", "order 2"] + ["order 3"] * 7 + ["order 1"]
    prog = ld.build_sampler(process, "dpmpp_3m_sde", grid=g10)
    assert prog.slots == ("x", "D_prev", "D_prev2") and prog.n_noises == 9


# The DPM-Solver multistep methods start with one first-order step (local error O(h^2)), so their global
# order on these grids is 2 whatever solver_order is; LMS and the one-step methods show their own order.
@pytest.mark.parametrize("name,opts,order", [("heun_ve", {}, 2), ("dpm_2", {}, 2), ("lms", {"order": 3}, 3),
                                             ("dpmsolver_multistep", {"solver_order": 3, "lower_order_final": False}, 2),
                                             ("dpmsolver_multistep", {"solver_order": 3, "algorithm_type": "dpmsolver"}, 2),
                                             ("dpmpp_3m_sde", {"eta": 0.0}, 2)])
def test_convergence_orders(name, opts, order):
    process = ld.SigmaVP(80.0)
    p0 = ld.Gaussian.from_spectrum([3.0, 1.0, 0.2], mean=[1.0, 0.0, -0.5])
    model = ld.GaussianScore(p0, process)
    target = process.marginal(p0, 0.05)
    ks = np.array([40, 80, 160])
    errs = [ld.w2(ld.sampling_law(model, process, name, grid=np.geomspace(80.0, 0.05, k + 1), init="exact", **opts), target)
            for k in ks]
    slope = np.polyfit(np.log(ks), np.log(errs), 1)[0]
    assert slope < -order + 0.25, slope


def test_lms_coefficients_are_exact_integrals():
    sig = [14.0, 7.5, 3.1, 1.2, 0.4, 0.0]
    for i in range(5):
        for p in range(1, min(i + 1, 4) + 1):
            def basis(tau, j):
                return math.prod((tau - sig[i - k]) / (sig[i - j] - sig[i - k]) for k in range(p) if k != j)

            quad = [integrate.quad(basis, sig[i], sig[i + 1], args=(j,), epsabs=0, epsrel=1e-13)[0] for j in range(p)]
            np.testing.assert_allclose(lms_coefficients(sig, i, p), quad, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="too high"):
        lms_coefficients(sig, 1, 3)


def test_heun_ve_differs_from_vp_heun():
    grid = np.r_[(80.0 ** (1 / 7) + np.linspace(0, 1, 12) * (0.02 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7, 0.0]
    process = ld.SigmaVP(80.0)
    model = ld.GaussianScore(ld.Gaussian.from_spectrum([4.0, 0.25, 0.01]), process)
    a = ld.sampling_law(model, process, "heun", grid=grid, init="exact").eigenvalues
    b = ld.sampling_law(model, process, "heun_ve", grid=grid, init="exact").eigenvalues
    np.testing.assert_allclose(a, [4.25909428, 0.21648893, 0.00549860], rtol=1e-6)  # the numbers in heun's docstring
    np.testing.assert_allclose(b, [4.59198209, 0.30720076, 0.01343173], rtol=1e-6)


def test_option_and_range_errors(rng):
    process = ld.SigmaVP(80.0)
    model = ld.GaussianScore(ld.Gaussian.standard(2), process)
    with pytest.raises(TypeError, match=r"sampling_law\(\) got an unexpected keyword argument 'eta'"):
        ld.sampling_law(model, process, "heun_ve", grid=KARRAS, eta=0.5)
    with pytest.raises(TypeError, match=r"sample\(\) got an unexpected"):
        mc.sample(model, process, "lms", 10, grid=KARRAS, bogus=1)
    with pytest.raises(ValueError, match="above the process's maximum"):
        ld.sampling_law(model, process, "heun_ve", grid=KARRAS, s_churn=10.0)  # sigma_hat > 80
    with pytest.raises(ValueError, match="continuous process"):
        ld.sampling_law(ld.GaussianScore(ld.Gaussian.standard(2), ld.DDPM.linear(50)), ld.DDPM.linear(50), "dpm_2", 5)
    with pytest.raises(ValueError, match="final_sigmas_type"):
        ld.sampling_law(model, process, "dpmsolver_multistep", grid=KARRAS, final_sigmas_type="sigma_min")
    with pytest.raises(ValueError, match="eta"):
        ld.sampling_law(model, process, "dpmsolver_multistep", grid=KARRAS, eta=0.5)
    for bad in ({"solver_order": 4}, {"algorithm_type": "unipc"}, {"solver_type": "rk"}):
        with pytest.raises(ValueError):
            ld.sampling_law(model, process, "dpmsolver_multistep", grid=KARRAS, **bad)
    with pytest.raises(ValueError, match="noise"):
        ld.sampling_law(model, process, "dpmpp_sde", grid=KARRAS, noise="tree")
    # multistep and first-order VE samplers run on DDPM timesteps
    ddpm = ld.DDPM.linear(100)
    m2 = ld.GaussianScore(ld.Gaussian.standard(2), ddpm)
    for name in ("lms", "heun_ve", "dpmsolver_multistep", "dpmpp_2m_sde"):
        assert np.all(np.isfinite(ld.sampling_law(m2, ddpm, name, 10).cov))


def test_docstrings_list_every_sampler():
    import lindiff.samplers as S

    for name in ld.SAMPLERS:
        assert f"``{name!r}``" in S.__doc__
        assert f"``{name!r}``" in ld.sampling_law.__doc__
    table = ld.sampler_table(ld.SigmaVP(80.0), "dpmpp_3m_sde", grid=KARRAS).render("text")
    assert "D_prev2 <- 1·D_prev" in table and "order 3" in table
