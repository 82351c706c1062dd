"""C-channel stationary fields: the block-circulant covariance is diagonalised by the real per-frequency-rotated
Hartley basis of ``lindiff._fourier.ChannelBasis``.

On the periodic grid of 3 points with C = 2 channels (one self-conjugate frequency, k = 0, and one pair
k = 1, 2 = -1), the cross-spectral density is written as S(k) = V(k) diag(lambda(k)) V(k)^* with a general
2 x 2 unitary V(1) (V(2) = conj V(1)) and a real rotation V(0).  The covariance is built entry by entry from
the definition (the inverse DFT of S, block-circulant in the pixels), the basis transform
T = Re(Y) - Im(Y), Y = V^* F (F the unitary DFT of each channel), as a 6 x 6 matrix, and both
T T^T = I and T Sigma T^T = diag(lambda) are shown symbolically.
"""

import itertools

import numpy as np
import sympy as sp

try:
    from ._harness import Page, main
except ImportError:  # run as a script
    from _harness import Page, main

import lindiff as ld
from lindiff import _fourier

N_GRID, C = 3, 2
# the rotations' entries as symbols tied by c^2 + s^2 = 1 (no trigonometry): every check is polynomial algebra
# over Q(i, sqrt 3), reduced modulo those relations
c0, s0, c1, s1, er, ei = sp.symbols("c_0 s_0 c_1 s_1 e_r e_i", real=True)
GENS = (c0, s0, c1, s1, er, ei)
RELATIONS = [c0**2 + s0**2 - 1, c1**2 + s1**2 - 1, er**2 + ei**2 - 1]
lam = sp.symbols("lambda_0:2_0:2", positive=True)  # lambda_{k j} for k = 0, 1
LAM = {0: (lam[0], lam[1]), 1: (lam[2], lam[3]), 2: (lam[2], lam[3])}
# w^m for m = 0, 1, 2, w = e^{-2 pi i / 3}
W = [sp.Integer(1), -sp.Rational(1, 2) - sp.I * sp.sqrt(3) / 2, -sp.Rational(1, 2) + sp.I * sp.sqrt(3) / 2]


def make_page():
    return Page(
        "channel_fields",
        "C-channel stationary fields: the per-frequency-rotated Hartley basis diagonalises the block circulant",
        ["a real field of C = 2 channels on a periodic grid of 3 points, x flattened as (channel, pixel)",
         "cross-spectral density S(k) = V(k) diag(lambda(k)) V(k)^*, S(-k) = conj S(k): V(-k) = conj V(k), "
         "V(0) real",
         "V(0) = [[c_0, -s_0], [s_0, c_0]], V(1) = [[c_1, -conj(e) s_1], [e s_1, c_1]], e = e_r + i e_i, with "
         "c_0^2 + s_0^2 = c_1^2 + s_1^2 = |e|^2 = 1: a general 2 x 2 unitary up to column phases",
         "unitary DFT per channel, F[k, j] = w^(k j) / sqrt(3), w = exp(-2 pi i / 3)"],
        ["lindiff/_fourier.py (ChannelBasis); Bracewell (1983) for the Hartley combination Re - Im"],
    )


def _rotations():
    e = er + sp.I * ei
    V0 = sp.Matrix([[c0, -s0], [s0, c0]])
    V1 = sp.Matrix([[c1, -sp.conjugate(e) * s1], [e * s1, c1]])
    return {0: V0, 1: V1, 2: V1.conjugate()}


def _reduce(e):
    """``e`` expanded and reduced modulo the unit-modulus relations (each relation involves its own pair of
    symbols, so substituting the squares of s_0, s_1, e_i is the normal form)."""
    e = sp.expand(e)
    if e == 0:
        return e
    poly = sp.Poly(e, *GENS)
    out = 0
    for (a, b, c, dd, f, g), coeff in poly.terms():
        # s^(2m + r) = (1 - c^2)^m s^r
        out += (coeff * c0**a * (1 - c0**2) ** (b // 2) * s0 ** (b % 2) * c1**c * (1 - c1**2) ** (dd // 2)
                * s1 ** (dd % 2) * er**f * (1 - er**2) ** (g // 2) * ei ** (g % 2))
    return sp.expand(out)


def _zero(M) -> bool:
    return all(_reduce(e) == 0 for e in M)


def _clean(M):
    return M.applyfunc(_reduce)


def derive(page):
    V = _rotations()
    n = N_GRID
    page.step("V(1)^* V(1) - I (unitary)", _clean(V[1].H * V[1] - sp.eye(C)))
    S = {k: V[k] * sp.diag(*LAM[k]) * V[k].H for k in range(n)}
    page.step("S(-k) - conj S(k) for k = 1 (a real field)", _clean(S[2] - S[1].conjugate()))
    # covariance from the definition: Cov(x_c[j], x_c'[l]) = (1/n) sum_k S_cc'(k) exp(2 pi i k (j - l) / n)
    Sigma = sp.zeros(C * n, C * n)
    for c, c2, j, l in itertools.product(range(C), range(C), range(n), range(n)):
        Sigma[c * n + j, c2 * n + l] = sum(S[k][c, c2] * W[(-k * (j - l)) % n] for k in range(n)) / n
    page.step("Imaginary part of the block-circulant covariance (zero: the field is real)",
              _clean((Sigma - Sigma.conjugate()) / (2 * sp.I)))
    Sigma = _clean((Sigma + Sigma.conjugate()) / 2)
    page.result("covariance", Sigma)
    # the basis transform: y_j(k) = sum_c conj(V(k)_{cj}) xhat_c(k), z_j(k) = Re y - Im y
    Y = sp.zeros(C * n, C * n)
    for j, k, c, p in itertools.product(range(C), range(n), range(C), range(n)):
        Y[j * n + k, c * n + p] = sp.conjugate(V[k][c, j]) * W[(k * p) % n] / sp.sqrt(n)
    # Re Y - Im Y = ((1 + i) Y + (1 - i) conj Y) / 2, a real matrix
    T = _clean(((1 + sp.I) * Y + (1 - sp.I) * Y.conjugate()) / 2)
    page.result("transform", T)
    page.step("T T^T - I", _clean(T * T.T - sp.eye(C * n)))
    diag = sp.diag(*[LAM[k][j] for j in range(C) for k in range(n)])
    page.step("T Sigma T^T - diag(lambda_j(k)) (eigen-index j first, then frequency k)", _clean(T * Sigma * T.T - diag))
    for text, M in page.steps:
        if text.startswith(("V(1)", "S(-k)", "Imaginary", "T T^T", "T Sigma")) and not _zero(M):
            raise AssertionError(f"channel_fields: {text} is not zero: {M}")


def check(page, rng):
    a0, a1, phi = rng.uniform(0, 2 * np.pi, 3)
    subs = {c0: np.cos(a0), s0: np.sin(a0), c1: np.cos(a1), s1: np.sin(a1), er: np.cos(phi), ei: np.sin(phi)}
    subs = {k: float(v) for k, v in subs.items()}
    values = rng.uniform(0.2, 2.0, 4)
    subs.update({s: float(v) for s, v in zip(lam, values)})
    V = {k: np.array(M.subs(subs).evalf(), dtype=complex) for k, M in _rotations().items()}
    spectrum = np.stack([V[k] @ np.diag([float(LAM[k][j].subs(subs)) for j in range(C)]) @ V[k].conj().T
                         for k in range(N_GRID)])
    Sigma = np.array(page.results["covariance"].subs(subs).evalf(), dtype=float)
    T = np.array(page.results["transform"].subs(subs).evalf(), dtype=float)
    g = ld.Gaussian.stationary(spectrum, [0.3, -0.1], channels=C)
    page.compare("block-circulant covariance vs Gaussian.stationary(..., channels=2).cov", Sigma, g.cov,
                 rtol=1e-12, atol=1e-13)
    page.compare("per-frequency eigenvalues", np.sort(values.reshape(2, 2), axis=1)[[0, 1, 1]],
                 np.sort(g.eigenvalues.reshape(C, N_GRID).T, axis=1), rtol=1e-12)
    basis = _fourier.ChannelBasis((N_GRID,), np.stack([V[k] for k in range(N_GRID)]))
    page.compare("ChannelBasis with the derivation's rotations: U^T equals T", T, basis.T.dense(),
                 rtol=1e-12, atol=1e-14)
    D = g.eigenvectors.dense()
    page.compare("lindiff's own eigenbasis: diag(U^T Sigma U) = eigenvalues", np.diag(D.T @ Sigma @ D), g.eigenvalues,
                 rtol=1e-12)
    page.compare("lindiff's own eigenbasis: U diag(eigenvalues) U^T = Sigma", Sigma, (D * g.eigenvalues) @ D.T,
                 rtol=1e-12, atol=1e-13)


if __name__ == "__main__":
    main("channel_fields")
