"""The optimal affine eps-model: stationary point of the DSM loss, with ridge.

Per eigenmode of the data covariance (the loss separates there because the noise is isotropic), then
the same in matrix form for a general 2 x 2 covariance, so the per-mode reduction is not assumed.
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:  # run as a script
    from _harness import Page, main

import lindiff as ld

alpha, sigma, lam, r = sp.symbols("alpha sigma lambda r", positive=True)
m, w, b, x0, eps = sp.symbols("m w b x_0 varepsilon", real=True)


def make_page():
    return Page(
        "optimal_denoiser",
        "Optimal affine eps-model = score of the fitted Gaussian (with ridge)",
        ["x_t = alpha x0 + sigma eps, eps ~ N(0, 1) independent of x0",
         "per mode: x0 has mean m and variance lambda (an eigenvalue of the training covariance)",
         "loss L(w, b) = E(eps - w x_t - b)^2 + r w^2, the noise expectation exact"],
        ["docs/theory.md#the-optimal-affine-denoiser-on-n-points; Li, Dai & Qu (2024) Thm. 1 (r = 0)"],
    )


def _expect(expr):
    """E over x0 = m + sqrt(lambda) u and eps, with u, eps independent standard normals."""
    u = sp.Symbol("u", real=True)
    poly = sp.Poly(sp.expand(expr.subs(x0, m + sp.sqrt(lam) * u)), u, eps)
    moments = {0: 1, 1: 0, 2: 1, 3: 0, 4: 3}
    return sp.simplify(sum(c * moments[i] * moments[j] for (i, j), c in poly.terms()))


def derive(page):
    xt = alpha * x0 + sigma * eps
    loss = page.step("Per-mode loss with the expectation over x0 and eps taken exactly",
                     _expect((eps - w * xt - b) ** 2) + r * w**2)
    page.step("It equals (1 - sigma w)^2 + alpha^2 w^2 lambda + (alpha w m + b)^2 + r w^2",
              sp.simplify(loss - ((1 - sigma * w) ** 2 + alpha**2 * w**2 * lam + (alpha * w * m + b) ** 2 + r * w**2)))
    sol = sp.solve([sp.diff(loss, w), sp.diff(loss, b)], [w, b], dict=True)[0]
    page.step("Stationary point: dL/dw = dL/db = 0", sp.Eq(sp.Matrix([w, b]), sp.Matrix([sol[w], sol[b]])))
    page.result("w", sp.simplify(sol[w]))
    page.result("b", sp.simplify(sol[b]))
    page.step("Its score -(w x_t + b)/sigma minus -(x_t - alpha m)/(alpha^2 lambda + sigma^2 + r), the score of "
              "N(m, lambda) noised to time t with sigma^2 -> sigma^2 + r, is zero",
              sp.simplify(-(sol[w] * (xt) + sol[b]) / sigma + (xt - alpha * m) / (alpha**2 * lam + sigma**2 + r)))
    # matrix form, 2 x 2, no per-mode assumption
    c11, c12, c22, m1, m2 = sp.symbols("c11 c12 c22 m1 m2", real=True)
    C = sp.Matrix([[c11, c12], [c12, c22]])
    W = sp.Matrix(2, 2, sp.symbols("w11 w12 w21 w22"))
    bb = sp.Matrix(sp.symbols("b1 b2"))
    mv = sp.Matrix([m1, m2])
    I2 = sp.eye(2)
    Lmat = ((I2 - sigma * W).T * (I2 - sigma * W)).trace() + alpha**2 * (W * C * W.T).trace() \
        + ((alpha * W * mv + bb).T * (alpha * W * mv + bb))[0] + r * (W.T * W).trace()
    page.step("Matrix loss ||I - sigma W||_F^2 + alpha^2 tr(W C W^T) + ||alpha W m + b||^2 + r ||W||_F^2 (2 x 2)")
    unknowns = list(W) + list(bb)
    msol = sp.solve([sp.diff(Lmat, v) for v in unknowns], unknowns, dict=True)[0]
    Wopt = sp.Matrix(2, 2, [msol[v] for v in W])
    target = sigma * (alpha**2 * C + (sigma**2 + r) * I2).inv()
    page.step("Matrix stationary point minus sigma (alpha^2 C + (sigma^2 + r) I)^{-1}",
              sp.simplify(Wopt - target))
    page.result("W_matrix", target)
    page.results["_W_matrix_solution"] = Wopt
    page.results["_C_symbols"] = (c11, c12, c22, m1, m2)


def check(page, rng):
    assert sp.simplify(page.results["_W_matrix_solution"] - page.results["W_matrix"]) == sp.zeros(2, 2)
    page.checks.append("2 x 2 matrix stationary point equals sigma (alpha^2 C + (sigma^2 + r) I)^{-1} symbolically")
    w_fn = sp.lambdify((alpha, sigma, lam, r), page.results["w"], "numpy")
    d = 5
    X = rng.standard_normal((4, d)) * rng.uniform(0.2, 2, d) + 1.0  # N < d
    for process, t in ((ld.DDPM.linear(100), 17), (ld.VP.linear(), 0.3)):
        for ridge in (0.0, 0.25):
            model = ld.LinearDenoiser.fit(X, process, ridge=ridge)
            g = ld.Gaussian.fit(X)
            a, s = float(process.alpha(t)), float(process.sigma(t))
            W, bvec = model.affine(t)
            modes = np.einsum("ij,ik,kj->j", g.eigenvectors, W, g.eigenvectors)
            page.compare(f"w(lambda) per mode, {process!r}, ridge={ridge}", w_fn(a, s, g.eigenvalues, ridge), modes, rtol=1e-10, atol=1e-12)
            page.compare(f"b = -alpha W mu_hat, {process!r}, ridge={ridge}", -a * W @ g.mean, bvec, rtol=1e-10, atol=1e-12)
    # 50 digits at a small-noise time where sigma^2 << lambda
    process = ld.DDPM.linear(1000)
    model = ld.LinearDenoiser.fit(X, process)
    g = ld.Gaussian.fit(X)
    a, s = float(process.alpha(1)), float(process.sigma(1))
    W, _ = model.affine(1)
    top = float(g.eigenvectors[:, -1] @ W @ g.eigenvectors[:, -1])
    page.compare_mp("w at t=1 for the top mode", page.results["w"],
                    {alpha: a, sigma: s, lam: float(g.eigenvalues[-1]), r: 0}, top, rtol=1e-12)


if __name__ == "__main__":
    main("optimal_denoiser")
