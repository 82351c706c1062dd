"""Early stopping in closed form: gradient flow on the per-mode DSM loss from zero weights.

The centred per-mode loss (bias at its optimum) is ``(1 - sigma w)^2 + (alpha^2 lambda + r) w^2``, i.e.
``h w^2 - 2 sigma w + 1`` with ``h = alpha^2 lambda + sigma^2 + r``.  Gradient flow
``dw/dtau = -lr dL/dw`` is a linear ODE; ``dsolve`` gives the relaxation law and the equivalent ridge.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

import lindiff as ld
from lindiff import mc

tau, lr, h, sigma = sp.symbols("tau lr h sigma", positive=True)
w = sp.Function("w")


def make_page():
    return Page("gradient_flow", "Gradient flow from zero weights: each eigenmode relaxes exponentially",
                ["per-mode centred loss L(w) = h w^2 - 2 sigma w + 1, h = alpha^2 lambda + sigma^2 + ridge > 0",
                 "flow dw/dtau = -lr dL/dw, w(0) = 0"],
                ["docs/theory.md#gradient-flow-and-early-stopping; Merger & Goldt (2025); docs/theory.md#gradient-flow-and-early-stopping"])


def derive(page):
    L = h * w(tau) ** 2 - 2 * sigma * w(tau) + 1
    ode = page.step("Gradient-flow ODE", sp.Eq(w(tau).diff(tau), -lr * sp.diff(L, w(tau))))
    sol = sp.dsolve(ode, w(tau), ics={w(0): 0}).rhs
    sol = page.result("w_tau", sp.simplify(sol))
    page.step("As tau -> oo it tends to the minimiser sigma / h", sp.limit(sol, tau, sp.oo))
    page.step("Score gain g = w / sigma = (1 - exp(-2 lr tau h)) / h", sp.simplify(sol / sigma))
    r_eff = sp.Symbol("r_eff", positive=True)
    equiv = sp.solve(sp.Eq(sigma / (h + r_eff), sol), r_eff)[0]
    page.result("equivalent_ridge", sp.simplify(equiv))
    page.step("Early stopping is a spectral ridge: small-h (null) modes get r_eff ~ 1/(2 lr tau)",
              sp.limit(equiv, h, 0))


def check(page, rng):
    w_fn = sp.lambdify((tau, lr, h, sigma), page.results["w_tau"], "numpy")
    X = rng.standard_normal((3, 5)) + 0.5
    process = ld.OU()
    g = ld.Gaussian.fit(X)
    for t, train_time, rate in ((0.05, 0.3, 1.0), (0.5, 4.0, 0.2)):
        a, s = float(process.alpha(t)), float(process.sigma(t))
        model = ld.LinearDenoiser.fit(X, process, train_time=train_time, lr=rate, ridge=0.1)
        W, _ = model.affine(t)
        modes = np.einsum("ij,ik,kj->j", g.eigenvectors, W, g.eigenvectors)
        hh = a * a * g.eigenvalues + s * s + 0.1
        page.compare(f"w(tau) per mode at t={t}, tau={train_time}", w_fn(train_time, rate, hh, s), modes, rtol=1e-10, atol=1e-13)
        W_gd, _ = mc.gradient_descent(X, process, t, train_time, lr=rate, ridge=0.1, n_iter=20_000)
        page.compare(f"closed form vs explicit gradient descent (20000 steps) at t={t}", W, W_gd, rtol=0, atol=1e-4)
        r_fn = sp.lambdify((tau, lr, h, sigma), page.results["equivalent_ridge"], "numpy")
        shifted = s / (hh + r_fn(train_time, rate, hh, s))
        page.compare(f"equivalent-ridge form at t={t}", shifted, modes, rtol=1e-9, atol=1e-13)
    # cancellation at tiny 2 lr tau h: the closed form must not lose digits
    model = ld.LinearDenoiser.fit(X, process, train_time=1e-9)
    a, s = float(process.alpha(0.3)), float(process.sigma(0.3))
    W, _ = model.affine(0.3)
    v = g.eigenvectors[:, -1]
    page.compare_mp("w(tau) at tau = 1e-9 (1 - exp(-x) cancels)", page.results["w_tau"],
                    {tau: 1e-9, lr: 1, h: a * a * float(g.eigenvalues[-1]) + s * s, sigma: s}, float(v @ W @ v), rtol=1e-12)


if __name__ == "__main__":
    main("gradient_flow")
