"""The fourth-moment identity behind the exact SGD second-moment recursion (lindiff.sgd).

For y ~ N(m, C): E[y y^T A y y^T] = m m^T A m m^T + 2 C A m m^T + 2 m m^T A C + tr(AC) m m^T
+ (m^T A m) C + 2 C A C + tr(AC) C  (A symmetric).  Derived in d = 2 by writing y = m + L u with
u ~ N(0, I) and taking the expectation of the polynomial in u exactly (Isserlis).
"""

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:
    from _harness import Page, main

from lindiff import sgd

u1, u2 = sp.symbols("u1 u2", real=True)
m1, m2, l11, l21, l22, a11, a12, a22 = sp.symbols("m1 m2 l11 l21 l22 a11 a12 a22", real=True)


def make_page():
    return Page("sgd_moments", "Fourth moments of a Gaussian vector (the exact SGD second-moment recursion)",
                ["y = m + L u, u ~ N(0, I_2), C = L L^T; A symmetric"], ["Isserlis' theorem"])


def _expect(expr):
    mom = {0: 1, 1: 0, 2: 1, 3: 0, 4: 3}
    poly = sp.Poly(sp.expand(expr), u1, u2)
    return sp.expand(sum(c * mom[i] * mom[j] for (i, j), c in poly.terms()))


def derive(page):
    m = sp.Matrix([m1, m2])
    L = sp.Matrix([[l11, 0], [l21, l22]])
    A = sp.Matrix([[a11, a12], [a12, a22]])
    C = L * L.T
    y = m + L * sp.Matrix([u1, u2])
    lhs = (y * y.T * A * y * y.T).applyfunc(_expect)
    page.step("E[y y^T A y y^T] by expanding in u and using E u^2 = 1, E u^4 = 3 (2 x 2 entries)")
    mm = m * m.T
    trAC = (A * C).trace()
    rhs = mm * A * mm + 2 * C * A * mm + 2 * mm * A * C + trAC * mm + (m.T * A * m)[0] * C + 2 * C * A * C + trAC * C
    diff = (lhs - rhs).applyfunc(sp.expand)
    page.step("Difference from the closed form", diff)
    page.result("fourth_moment", rhs)
    page.results["_diff"] = diff
    page.results["_symbols"] = (m, L, A)


def check(page, rng):
    assert page.results["_diff"] == sp.zeros(2, 2)
    page.checks.append("identity holds symbolically for every m, L, A (d = 2)")
    m = rng.standard_normal(3)
    B = rng.standard_normal((3, 3))
    C = B @ B.T
    A = rng.standard_normal((3, 3))
    A = A + A.T
    y = m + rng.standard_normal((400_000, 3)) @ np.linalg.cholesky(C).T
    q = np.einsum("ni,ij,nj->n", y, A, y)
    mc = np.einsum("n,ni,nj->ij", q, y, y) / y.shape[0]
    exact = sgd._fourth(m, C, A)
    se = np.std(np.einsum("n,ni,nj->nij", q, y, y), axis=0) / np.sqrt(y.shape[0])
    z = np.max(np.abs((mc - exact) / se))
    if z > 5:
        raise AssertionError(f"sgd._fourth disagrees with Monte Carlo (max |z| = {z:.2f})")
    page.checks.append(f"lindiff.sgd._fourth vs Monte Carlo in d = 3: max |z| = {z:.2f}")
    m2_, C2 = np.array([0.3, -1.0]), np.array([[1.0, 0.4], [0.4, 2.0]])
    A2 = np.array([[0.5, -0.2], [-0.2, 1.5]])
    L2 = np.linalg.cholesky(C2)
    fn = sp.lambdify((m1, m2, l11, l21, l22, a11, a12, a22), page.results["fourth_moment"], "numpy")
    derived = np.array(fn(m2_[0], m2_[1], L2[0, 0], L2[1, 0], L2[1, 1], A2[0, 0], A2[0, 1], A2[1, 1]), float)
    page.compare("derived 2 x 2 fourth moment vs lindiff.sgd._fourth", derived, sgd._fourth(m2_, C2, A2), rtol=1e-12)


if __name__ == "__main__":
    main("sgd_moments")
