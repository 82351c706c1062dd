"""Marginal score and the Tweedie posterior of Gaussian data, per mode, by completing the square."""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld

alpha, sigma, lam = sp.symbols("alpha sigma lambda", positive=True)
m, x, x0 = sp.symbols("m x x_0", real=True)


def make_page():
    return Page("tweedie", "Marginal score, posterior mean and variance (Tweedie) for Gaussian data",
                ["x0 ~ N(m, lambda) per mode, x_t | x0 ~ N(alpha x0, sigma^2)"],
                ["docs/theory.md#marginals-score-and-tweedie; Tweedie's formula E[x0|x] = (x + sigma^2 score) / alpha"])


def derive(page):
    log_joint = -(x0 - m) ** 2 / (2 * lam) - (x - alpha * x0) ** 2 / (2 * sigma**2)
    page.step("log p(x0, x_t = x) up to constants", log_joint)
    mode = sp.solve(sp.diff(log_joint, x0), x0)[0]
    post_mean = page.result("posterior_mean", sp.simplify(mode))
    post_var = page.result("posterior_variance", sp.simplify(-1 / sp.diff(log_joint, x0, 2)))
    page.step("Posterior variance = (1/lambda + alpha^2/sigma^2)^{-1}",
              sp.simplify(post_var - 1 / (1 / lam + alpha**2 / sigma**2)))
    lt = alpha**2 * lam + sigma**2
    log_marginal = -(x - alpha * m) ** 2 / (2 * lt) - sp.log(2 * sp.pi * lt) / 2
    score = page.result("score", sp.simplify(sp.diff(log_marginal, x)))
    page.step("Tweedie: score - (alpha E[x0|x] - x)/sigma^2 = 0", sp.simplify(score - (alpha * post_mean - x) / sigma**2))
    page.step("DSM target -eps/sigma has conditional variance (alpha^2/sigma^4) Var[x0|x] (Vastola 2025)",
              sp.simplify(alpha**2 / sigma**4 * post_var))


def check(page, rng):
    d = 4
    Q = ld.spectra.random_basis(d, rng)
    lam_v = rng.uniform(0.05, 3, d)
    p0 = ld.Gaussian.from_spectrum(lam_v, Q, rng.standard_normal(d))
    process = ld.VP.linear()
    model = ld.GaussianScore(p0, process)
    mean_fn = sp.lambdify((alpha, sigma, lam, m, x), page.results["posterior_mean"], "numpy")
    score_fn = sp.lambdify((alpha, sigma, lam, m, x), page.results["score"], "numpy")
    pts = rng.standard_normal((3, d))
    for t in (0.01, 0.4, 1.0):
        a, s = float(process.alpha(t)), float(process.sigma(t))
        xu, mu = pts @ Q, Q.T @ p0.mean
        page.compare(f"posterior mean at t={t}", mean_fn(a, s, lam_v, mu, xu) @ Q.T, model.x0(pts, t), rtol=1e-10, atol=1e-12)
        page.compare(f"score at t={t}", score_fn(a, s, lam_v, mu, xu) @ Q.T, model.score(pts, t), rtol=1e-10, atol=1e-12)
    a, s = float(process.alpha(1e-4)), float(process.sigma(1e-4))
    one = ld.GaussianScore(ld.Gaussian.from_spectrum([0.7], mean=[0.2]), process)
    page.compare_mp("posterior mean at t=1e-4 (x - sigma eps nearly cancels)", page.results["posterior_mean"],
                    {alpha: a, sigma: s, lam: 0.7, m: 0.2, x: 1.3}, float(one.x0([1.3], 1e-4)[0]), rtol=1e-12)


if __name__ == "__main__":
    main("tweedie")
