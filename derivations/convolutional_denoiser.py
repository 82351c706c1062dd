"""The convolutional (translation-equivariant) linear denoiser: normal equations of a local kernel.

On concrete periodic grids (1-D with 5 points, 2-D with 3 x 4) and symbolic images, the training loss of a
circular convolution with one bias is written out entry by entry, its noise expectation taken exactly, and
its stationary point is shown to be (after the bias) the normal equations A w = sigma e_0 with
A = alpha^2 R_S + (sigma^2 + r) I and R the images' circular autocorrelation about their grand mean.
Nothing about shift-averaging or Fourier is assumed: the loss is the plain dense one.
"""

import itertools
import math

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:  # run as a script
    from _harness import Page, main

import lindiff as ld

alpha, sigma, r, lr, tau, h = sp.symbols("alpha sigma r lr tau h", positive=True)
beta = sp.Symbol("beta", real=True)

CASES = (((5,), (3,), 2), ((3, 4), (3, 3), 1))  # (grid, kernel box, N images)


def make_page():
    return Page(
        "convolutional_denoiser",
        "Local convolutional denoiser: normal equations from the images' autocorrelation",
        ["N images x_i on a periodic grid of d pixels; x_t = alpha x_i + sigma eps, eps ~ N(0, I)",
         "eps-model: circular convolution with kernel w on a centred odd box S, plus one bias beta",
         "loss L = (1/N) sum_i E||eps - W x_t - beta 1||^2 + r ||W||_F^2, the noise expectation exact"],
        ["lindiff/_convolution.py; Kamb & Ganguli (2025) for local equivariant denoisers"],
    )


def _offsets(box):
    return [tuple(o) for o in itertools.product(*[range(-(k // 2), k // 2 + 1) for k in box])]


def _circulant(grid, kernel):
    """W[j, l] = sum_o w_o [l = j - o mod grid]: (W y)_j = sum_o w_o y_{j - o}."""
    cells = list(itertools.product(*[range(n) for n in grid]))
    index = {c: i for i, c in enumerate(cells)}
    W = sp.zeros(len(cells), len(cells))
    for j, c in enumerate(cells):
        for o, w in kernel.items():
            src = tuple((c[a] - o[a]) % grid[a] for a in range(len(grid)))
            W[j, index[src]] += w
    return W, cells


def _expected_square(expr, eps):
    """E (a . eps + c)^2 = ||a||^2 + c^2 for independent standard normals eps (expr linear in eps)."""
    poly = sp.Poly(sp.expand(expr), *eps)
    const = poly.coeff_monomial(1)
    return sum(poly.coeff_monomial(e) ** 2 for e in eps) + const**2


def _case(grid, box, N):
    d = math.prod(grid)
    offsets = _offsets(box)
    wsym = {o: sp.Symbol("w_{" + ",".join(map(str, o)) + "}", real=True) for o in offsets}
    W, cells = _circulant(grid, wsym)
    X = [sp.Matrix(sp.symbols(f"x{i}_0:{d}", real=True)) for i in range(N)]
    eps = sp.symbols(f"e0:{d}", real=True)
    epsv = sp.Matrix(eps)
    one = sp.ones(d, 1)
    loss = 0
    for x in X:
        resid = epsv - W * (alpha * x + sigma * epsv) - beta * one
        loss += sum(_expected_square(resid[j], eps) for j in range(d))
    loss = loss / N + r * sum(v**2 for v in W)  # (kept unexpanded: it is differentiated, then compared as polynomials)
    return d, offsets, wsym, W, cells, X, loss


def derive(page):
    page.step("E (a . eps + c)^2 = ||a||^2 + c^2 for eps ~ N(0, I): the loss is exact in the noise")
    page.step("Flow metric: for a convolution ||W||_F^2 = d ||w||^2 (each weight fills one diagonal of d entries)")
    for grid, box, N in CASES:
        d, offsets, wsym, W, cells, X, loss = _case(grid, box, N)
        label = f"grid {grid}, box {box}, N = {N}"
        page.step(f"{label}: ||W||_F^2 - d ||w||^2", sp.expand(sum(v**2 for v in W) - d * sum(v**2 for v in wsym.values())))
        # polynomial arithmetic (sparse, exact) throughout: the same algebra as expand(), much faster
        gens = list(wsym.values()) + [v for x in X for v in x] + [alpha, sigma, r, beta]
        L = sp.Poly(loss, *gens)
        m = sum(sum(x) for x in X) / (N * d)
        bsol = sp.solve(L.diff(beta).as_expr(), beta)[0]
        page.step(f"{label}: dL/dbeta = 0 gives beta minus (-alpha m sum_o w_o), m the grand mean",
                  sp.simplify(bsol + alpha * m * sum(wsym.values())))
        # at the optimal bias dL/dbeta = 0, so d/dw L(w, beta*(w)) = dL/dw at beta = beta*(w)
        grad = [sp.Poly(L.diff(wsym[o]).as_expr().subs(beta, bsol), *gens) for o in offsets]
        # autocorrelation of y = x - m over all shifts, averaged over pixels and images
        Y = [[sp.Poly(x[j] - m, *gens) for j in range(d)] for x in X]
        index = {c: i for i, c in enumerate(cells)}

        def R(delta):
            total = sp.Poly(0, *gens)
            for y in Y:
                for c in cells:
                    shifted = tuple((c[a] + delta[a]) % grid[a] for a in range(len(grid)))
                    total += y[index[c]] * y[index[shifted]]
            return total * sp.Rational(1, N * d)

        Rcache = {}
        for o in offsets:
            for o2 in offsets:
                delta = tuple(o[a] - o2[a] for a in range(len(grid)))
                if delta not in Rcache:
                    Rcache[delta] = R(delta)
        P = {v: sp.Poly(v, *gens) for v in (alpha, sigma, r)}
        wpoly = [sp.Poly(wsym[o], *gens) for o in offsets]
        diff = []
        for i, o in enumerate(offsets):
            Aw = sp.Poly(0, *gens)
            for j, o2 in enumerate(offsets):
                Aw += P[alpha] ** 2 * Rcache[tuple(o[a] - o2[a] for a in range(len(grid)))] * wpoly[j]
            Aw += (P[sigma] ** 2 + P[r]) * wpoly[i]
            rhs = P[sigma] if all(v == 0 for v in o) else sp.Poly(0, *gens)
            diff.append((grad[i] - 2 * d * (Aw - rhs)).as_expr())
        diff = sp.Matrix(diff)
        page.step(f"{label}: dL/dw (beta eliminated) minus 2 d (A w - sigma e_0), A = alpha^2 R(o - o') + (sigma^2 + r) I",
                  diff)
        page.results[f"_zero_{grid}"] = diff
        # the loss is quadratic in u = (w, beta): grad = H u + g0, lambdified for the numeric check
        unknowns = list(wsym.values()) + [beta]
        first = [L.diff(u) for u in unknowns]
        H = sp.Matrix([[f.diff(u).as_expr() for u in unknowns] for f in first])
        g0 = sp.Matrix([f.as_expr().subs({u: 0 for u in unknowns}) for f in first])
        args = [alpha, sigma, r] + [v for x in X for v in x]
        page.results[f"_system_{grid}"] = (sp.lambdify(args, H, "numpy"), sp.lambdify(args, g0, "numpy"))
    page.result("normal_equations", sp.Eq(sp.Symbol("A") * sp.Symbol("w"), sigma * sp.Symbol("e_0")))
    # gradient flow on W restricted to convolutions: dW/dtau = -lr dL/dW projected = -(lr/d) dL/dw per weight
    phi = sigma * (1 - sp.exp(-2 * lr * tau * h)) / h
    page.step("Per eigenvector of A (eigenvalue h): w(tau) = sigma (1 - exp(-2 lr tau h))/h (e_0 component) solves "
              "dw/dtau = -(lr/d) dL/dw = -2 lr (h w - sigma), w(0) = 0; residual",
              sp.simplify(sp.diff(phi, tau) + 2 * lr * (h * phi - sigma)))
    page.result("flow", phi)


def _lindiff_kernel(X, grid, box, process, t, ridge=0.0, train_time=None):
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=box, ridge=ridge, train_time=train_time)
    return model.kernel(t).ravel(), model.affine(t)[1][0]


def check(page, rng):
    for grid, box, N in CASES:
        assert page.results[f"_zero_{grid}"] == sp.zeros(*page.results[f"_zero_{grid}"].shape)
        page.checks.append(f"grid {grid}, box {box}: gradient equals 2 d (A w - sigma e_0) identically (symbolic)")
        Hf, gf = page.results[f"_system_{grid}"]
        d = math.prod(grid)
        process = ld.DDPM.linear(50)
        for t, ridge in ((7, 0.0), (30, 0.2)):
            Xv = rng.standard_normal((N, d)) * rng.uniform(0.3, 2.0, d) + 0.7
            a, s = float(process.alpha(t)), float(process.sigma(t))
            args = [a, s, ridge] + list(Xv.ravel())
            sol = np.linalg.solve(np.asarray(Hf(*args), float), -np.asarray(gf(*args), float).ravel())
            derived = sol[:-1]
            got, bias = _lindiff_kernel(Xv, grid, box, process, t, ridge)
            page.compare(f"grid {grid} box {box} t={t} ridge={ridge}: stationary point of the dense loss = fit_convolutional kernel",
                         derived, got, rtol=1e-10, atol=1e-13)
            page.compare(f"grid {grid} box {box} t={t} ridge={ridge}: bias", sol[-1], bias, rtol=1e-10, atol=1e-13)
    # the flow: lindiff's train_time kernel against sigma V phi(h) V^T e_0 from the derived formula
    phi = sp.lambdify((sigma, lr, tau, h), page.results["flow"], "numpy")
    grid, box = (7, 6), (3, 5)
    X = rng.standard_normal((3, 42)) + 0.2
    process = ld.VP.linear()
    t, tau_v = 0.4, 2.5
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=box, train_time=tau_v, ridge=0.05)
    a, s = float(process.alpha(t)), float(process.sigma(t))
    from lindiff._convolution import box_offsets, restricted_autocorrelation, shift_averaged

    _, P = shift_averaged(X, grid)
    offsets = box_offsets(box)
    RS = restricted_autocorrelation(np.fft.ifftn(P).real, offsets)
    hv, V = np.linalg.eigh(a * a * RS + (s * s + 0.05) * np.eye(len(offsets)))
    e0 = (offsets == 0).all(axis=1).astype(float)
    want = V @ (phi(s, 1.0, tau_v, hv) * (V.T @ e0))
    page.compare("gradient flow kernel (train_time = 2.5, ridge 0.05) = sigma V phi(h) V^T e_0", want, model.kernel(t).ravel(),
                 rtol=1e-10, atol=1e-14)
    # full support: per frequency sigma / (alpha^2 P(k) + sigma^2 + r); a box covering an odd grid is the same
    grid = (5, 7)
    X = rng.standard_normal((4, 35)) + 0.1
    process = ld.DDPM.linear(40)
    full = ld.LinearDenoiser.fit_convolutional(X, process, grid)
    box = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=grid)
    t = 12
    a, s = float(process.alpha(t)), float(process.sigma(t))
    _, P = shift_averaged(X, grid)
    page.compare("full support: eps gain per frequency = sigma / (alpha^2 P_bar + sigma^2)",
                 s / (a * a * P.ravel() + s * s), s * full.spectral.gains(t, a, s), rtol=1e-12)
    page.compare("a box covering the (odd) grid = full support", s * full.spectral.gains(t, a, s),
                 s * box.spectral.gains(t, a, s), rtol=1e-10, atol=1e-14)


if __name__ == "__main__":
    main("convolutional_denoiser")
