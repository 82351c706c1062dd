"""Least squares on P noise draws per point: the weights' mean and covariance to O(1/n), n = N P.

Pairs x_ij = a x_i + s eps_ij (i <= N, j <= P), targets eps_ij; W = C_ex (C_xx + r I)^{-1} (centred, 1/n).
With w_i = x_i - xbar, S = (1/N) sum w_i w_i^T, the statistics are
    C_xx = a^2 S + a s (A + A^T) + s^2 C_ee,   C_ex = a A^T + s C_ee,
    A = (1/n) sum_i w_i e_i^T (e_i = sum_j eps_ij),   C_ee = I + E0 - eps_bar eps_bar^T,
    E0 = (1/n) sum_ij (eps_ij eps_ij^T - I).
Steps: (1) second-order perturbation of W = (sI + D1)(H + D2)^{-1}, H = a^2 S + (s^2 + r) I, K = H^{-1};
(2) the Gaussian moments E[A_kl A_k'l'] = S_kk' delta_ll' / n, E[E0_kl E0_k'l'] = (delta delta + delta delta)/n,
E[eps_bar eps_bar^T] = I/n (N = 2 points, P = 2 draws, d = 2, every noise entry a standard normal);
(3) with exact rationals for (S, a, s, r) and symbolic A, E0 entries, E[W] - sK and E[W_1 R W_1^T] from
steps (1)-(2) equal lindiff's closed forms (bias B, cov_map V(R)) identically in R.
"""

import itertools

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main, normal_expectation, symbolic_matrix
except ImportError:
    from _harness import Page, main, normal_expectation, symbolic_matrix

from lindiff.variance import noise_draw_weight_moments

d = 2


def make_page():
    return Page("noise_draws", "Noise-draw least squares: the weights' bias and covariance to first order in 1/(NP)",
                ["d = 2; x_ij = a x_i + s eps_ij with eps_ij ~ N(0, I) independent; OLS with intercept, ridge r",
                 "moments (2) checked with N = 2 points and P = 2 draws; (3) exact in rational arithmetic"],
                ["Vastola (2025), generalisation through variance (the object, not these formulas: ours)",
                 "lindiff.variance module docstring"])


def _mat(name, symmetric=False):
    return symbolic_matrix(name, d, symmetric=symmetric)


def derive(page):
    h, s = sp.symbols("h s", positive=True)
    D1, D2, H = _mat("D1_"), _mat("D2_", symmetric=True), _mat("H", symmetric=True)
    K = H.inv()
    W = (s * sp.eye(d) + h * D1) * (H + h * D2).inv()
    W1 = (W.diff(h)).subs(h, 0)
    W2 = (W.diff(h, 2) / 2).subs(h, 0)
    page.results["_W1"] = sp.simplify(W1 - (D1 * K - s * K * D2 * K))
    page.results["_W2"] = sp.simplify(W2 - (-D1 * K * D2 * K + s * K * D2 * K * D2 * K))
    page.step("W = sK + h W1 + h^2 W2 + ...: W1 - (D1 K - s K D2 K)", page.results["_W1"])
    page.step("W2 - (-D1 K D2 K + s K D2 K D2 K)", page.results["_W2"])
    page.result("W1", sp.Symbol("D1 K - s K D2 K"))
    page.result("W2", sp.Symbol("-D1 K D2 K + s K D2 K D2 K"))
    # (2) moments, N = 2 points, P = 2 draws each
    N, P = 2, 2
    n = N * P
    w = [sp.Matrix(sp.symbols(f"w{i}_0:{d}")) for i in range(N)]
    w[-1] = -sum(w[:-1], sp.zeros(d, 1))  # centred points
    eps = {(i, j): sp.Matrix(sp.symbols(f"e{i}{j}_0:{d}")) for i in range(N) for j in range(P)}
    normals = [v for e in eps.values() for v in e]
    A = sum((w[i] * sum((eps[i, j] for j in range(P)), sp.zeros(d, 1)).T for i in range(N)), sp.zeros(d, d)) / n
    E0 = sum((e * e.T - sp.eye(d) for e in eps.values()), sp.zeros(d, d)) / n
    ebar = sum(eps.values(), sp.zeros(d, 1)) / n
    S = sum((wi * wi.T for wi in w), sp.zeros(d, d)) / N
    okA = all(sp.expand(normal_expectation(A[k, l] * A[k2, l2], normals) - S[k, k2] * int(l == l2) / n) == 0
              for k, l, k2, l2 in itertools.product(range(d), repeat=4))
    okE = all(sp.expand(normal_expectation(E0[k, l] * E0[k2, l2], normals) - sp.Rational(int(k == k2 and l == l2) + int(k == l2 and l == k2), n)) == 0
              for k, l, k2, l2 in itertools.product(range(d), repeat=4))
    okAE = all(normal_expectation(A[k, l] * E0[k2, l2], normals) == 0 for k, l, k2, l2 in itertools.product(range(d), repeat=4))
    okAb = all(normal_expectation(A[k, l] * ebar[m], normals) == 0 for k, l, m in itertools.product(range(d), repeat=3))
    okb = okAb and all(sp.expand(normal_expectation(ebar[k] * ebar[l], normals) - sp.Rational(int(k == l), n)) == 0
              for k, l in itertools.product(range(d), repeat=2))
    page.results["_moments"] = (okA, okE, okAE, okb)
    page.step("E[A_kl A_k'l'] = S_kk' delta_ll'/n; E[E0_kl E0_k'l'] = (delta_kk' delta_ll' + delta_kl' delta_lk')/n; "
              "E[A E0] = 0; E[A eps_bar] = 0; E[eps_bar eps_bar^T] = I/n (checked by Gaussian moments, N = P = 2)",
              sp.Matrix([int(okA), int(okE), int(okAE), int(okb)]))
    page.result("moments", sp.Symbol("Cov(A) = S (x) I / n, Cov(E0) = (I + swap) / n"))
    # (3) E[W] and E[W1 R W1^T] from (1)-(2), exactly, at rational parameters
    a, sv, r = sp.Rational(4, 5), sp.Rational(3, 5), sp.Rational(1, 20)
    Sr = sp.Matrix([[sp.Rational(3, 2), sp.Rational(1, 3)], [sp.Rational(1, 3), sp.Rational(1, 2)]])
    Hr = a**2 * Sr + (sv**2 + r) * sp.eye(d)
    Kr = Hr.inv()
    nn = sp.Symbol("n", positive=True)
    As = _mat("A")
    Es = _mat("E", symmetric=True)
    D1 = a * As.T + sv * Es
    D2 = a * sv * (As + As.T) + sv**2 * Es
    W1 = D1 * Kr - sv * Kr * D2 * Kr
    W2 = -D1 * Kr * D2 * Kr + sv * Kr * D2 * Kr * D2 * Kr
    avars, evars = list(As), sorted(set(Es), key=str)

    def second_moment(u, v):  # E[u v] for u, v among the entries of A and E0 (times n)
        if u in avars and v in avars:
            (k, l), (k2, l2) = divmod(avars.index(u), d), divmod(avars.index(v), d)
            return Sr[k, k2] * int(l == l2)
        if u in evars and v in evars:
            k, l = (int(c) for c in str(u)[1:])
            k2, l2 = (int(c) for c in str(v)[1:])
            return int(k == k2 and l == l2) + int(k == l2 and l == k2)
        return 0

    def expect_quadratic(expr):
        poly = sp.Poly(sp.expand(expr), *(avars + evars))
        out = 0
        for monom, c in poly.terms():
            factors = [v for v, k in zip(avars + evars, monom) for _ in range(k)]
            if len(factors) == 2:
                out += c * second_moment(*factors)
            elif factors:
                raise AssertionError("only quadratic terms expected")
            else:
                out += c * nn  # constant: not expected in W2
        return sp.nsimplify(out) / nn

    EW2 = W2.applyfunc(expect_quadratic)
    # E[C_ee] = (1 - 1/n) I moves W1's mean: E[D1] = -s I/n, E[D2] = -s^2 I/n
    EW1 = (-sv / nn) * Kr - sv * Kr * (-sv**2 / nn) * Kr
    bias = ((EW1 + EW2) * nn).applyfunc(sp.nsimplify)
    page.results["bias_exact"] = bias
    page.step("n (E W - sK) at a = 4/5, s = 3/5, r = 1/20, S = [[3/2, 1/3], [1/3, 1/2]]", bias)
    Rs = _mat("R", symmetric=True)
    V = (W1 * Rs * W1.T).applyfunc(expect_quadratic) * nn
    page.results["V_exact"] = V.applyfunc(sp.expand)
    page.results["_params"] = (a, sv, r, Sr, Rs)
    page.result("cov_map", sp.Symbol("V(R) = n E[W1 R W1^T]"))


def check(page, rng):
    assert page.results["_W1"] == sp.zeros(d, d) and page.results["_W2"] == sp.zeros(d, d)
    assert all(page.results["_moments"])
    page.checks.append("second-order expansion of the least-squares weights and the Gaussian moments hold symbolically")
    a, s, r, Sr, Rs = page.results["_params"]
    # lindiff's closed forms at the same parameters: a training set with covariance Sr (N = 2d points)
    L = np.linalg.cholesky(np.array(Sr, dtype=float))
    Z = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]) * np.sqrt(2.0)  # covariance I (1/N)
    X = Z @ L.T + rng.standard_normal(2)
    mom = noise_draw_weight_moments(X, float(a), float(s), float(r))
    page.compare("bias B (n E W - n sK) vs the exact rational expansion", mom.bias,
                 np.array(page.results["bias_exact"], dtype=float), rtol=1e-12)
    for _ in range(3):
        B = rng.standard_normal((d, d))
        R = B @ B.T
        subs = {Rs[i, j]: R[i, j] for i in range(d) for j in range(d)}
        exact = np.array(page.results["V_exact"].subs(subs), dtype=float)
        page.compare("V(R) = n E[W1 R W1^T] vs the exact expansion, random R", mom.cov_map(R), exact, rtol=1e-11)


if __name__ == "__main__":
    main("noise_draws")
