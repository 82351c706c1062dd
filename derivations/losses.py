"""Training and test DSM losses of an affine eps-model, and the generalisation gap at the optimum.

Per mode of the training covariance S_hat (eigenvalue l, eigenvector u): the model is w = sigma/h,
h = alpha^2 l + sigma^2, b = -alpha w mu_hat.  The test data have variance c = u^T S u and mean offset
delta = u^T (mu - mu_hat) along u.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld

alpha, sigma, l, c = sp.symbols("alpha sigma l c", positive=True)
w, b, m, delta, x0, eps, u = sp.symbols("w b m delta x_0 varepsilon u", real=True)


def _expect(expr, mean, var):
    poly = sp.Poly(sp.expand(expr.subs(x0, mean + sp.sqrt(var) * u)), u, eps)
    mom = {0: 1, 1: 0, 2: 1, 3: 0, 4: 3}
    return sp.expand(sum(k * mom[i] * mom[j] for (i, j), k in poly.terms()))


def make_page():
    return Page("losses", "DSM losses, the irreducible part and the train/test gap",
                ["x_t = alpha x0 + sigma eps; eps-model w x + b per mode (commuting case)",
                 "training data: mean m, variance l along the mode; test data: mean m + delta, variance c"],
                ["docs/theory.md#dsm-losses-and-the-generalisation-gap; Vastola (2025) for the DSM target variance"])


def derive(page):
    xt = alpha * x0 + sigma * eps
    L = lambda mean, var: _expect((eps - w * xt - b) ** 2, mean, var)  # noqa: E731
    general = page.step("Per-mode DSM loss for data (mean, variance) = (m, l)", sp.factor_terms(L(m, l)))
    page.result("loss", general)
    wopt, bopt = sigma / (alpha**2 * l + sigma**2), -alpha * sigma / (alpha**2 * l + sigma**2) * m
    train = page.result("train_at_optimum", sp.simplify(L(m, l).subs({w: wopt, b: bopt})))
    test = sp.simplify(L(m + delta, c).subs({w: wopt, b: bopt}))
    gap = page.result("gap_at_optimum", sp.factor(sp.simplify(test - train)))
    page.step("gap = alpha^2 sigma^2 (c - l + delta^2) / (alpha^2 l + sigma^2)^2 (docs/theory.md#train-and-test-loss-at-the-optimum, times sigma^2 for eps units)",
              sp.simplify(gap - alpha**2 * sigma**2 * (c - l + delta**2) / (alpha**2 * l + sigma**2) ** 2))
    page.step("Null mode (l = 0): gap = alpha^2 (c + delta^2) / sigma^2, which explodes as sigma -> 0", sp.simplify(gap.subs(l, 0)))
    page.result("irreducible", sp.simplify(train.subs(m, 0)))
    page.step("Irreducible loss = 1 - sigma^2 / (alpha^2 l + sigma^2), i.e. d - sigma^2 tr S_t^{-1} summed",
              sp.simplify(page.results["irreducible"] - (1 - sigma**2 / (alpha**2 * l + sigma**2))))


def check(page, rng):
    d, process = 6, ld.DDPM.linear(1000)
    A = rng.standard_normal((d, d))
    p0 = ld.Gaussian(rng.standard_normal(d), A @ A.T / d + 0.05 * np.eye(d))
    gap_fn = sp.lambdify((alpha, sigma, l, c, delta), page.results["gap_at_optimum"], "numpy")
    train_fn = sp.lambdify((alpha, sigma, l), page.results["train_at_optimum"], "numpy")
    for N in (3, 30):
        X = p0.sample(N, rng)
        g = ld.Gaussian.fit(X)
        model = ld.LinearDenoiser.fit(X, process)
        U = g.eigenvectors
        cc = np.einsum("ij,ik,kj->j", U, p0.cov, U)
        dd = U.T @ (p0.mean - g.mean)
        for t in (1, 30, 700):
            a, s = float(process.alpha(t)), float(process.sigma(t))
            page.compare(f"gap N={N} t={t}", np.sum(gap_fn(a, s, g.eigenvalues, cc, dd)),
                         ld.generalisation_gap(model, X, p0, t), rtol=1e-10)
            page.compare(f"train loss N={N} t={t}", np.sum(train_fn(a, s, g.eigenvalues)), ld.dsm_loss(model, X, t), rtol=1e-10)
        # 50 digits where the test and training losses nearly cancel (t = 1, N > d)
        if N > d:
            a, s = float(process.alpha(1)), float(process.sigma(1))
            j = d - 1
            root = np.sqrt(g.eigenvalues[j])
            X1 = np.array([[root], [-root]])  # mean 0, variance l_j: one mode on its own
            one = ld.LinearDenoiser.fit(X1, process)
            test = ld.Gaussian.from_spectrum([cc[j]], mean=[dd[j]])
            page.compare_mp("gap of one mode at t=1 (losses ~1, gap ~1e-4)", page.results["gap_at_optimum"],
                            {alpha: a, sigma: s, l: float(g.eigenvalues[j]), c: float(cc[j]), delta: float(dd[j])},
                            ld.generalisation_gap(one, X1, test, 1), rtol=1e-11)


if __name__ == "__main__":
    main("losses")
