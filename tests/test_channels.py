"""C-channel stationary fields (``Gaussian.stationary(power, mean, channels=C)``) and the C-in/C-out
full-support convolutional denoiser: every quantity equals the dense path on the explicit block-circulant
covariance (built entry by entry, independently of lindiff), and samples have its moments (Monte Carlo)."""

import copy
import itertools
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import lindiff as ld
from lindiff import _fourier, mc
from lindiff.spectra import power_law_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structural import same  # noqa: E402

CASES = [((4, 4), 2), ((6,), 3), ((2, 3), 2)]


def conj_symmetric(S):
    """(S(k) + conj S(-k)) / 2: a cross-spectrum a real field can have."""
    return 0.5 * (S + np.conj(_fourier.mirror(S, tuple(range(S.ndim - 2)))))


def cross_spectrum(rng, grid, C, rank=None, scale=1.0):
    """A random Hermitian PSD C x C block per frequency (rank ``rank``, default full), complex off the
    self-conjugate frequencies."""
    rank = C if rank is None else rank
    A = conj_symmetric(rng.standard_normal(grid + (C, rank)) + 1j * rng.standard_normal(grid + (C, rank)))
    return scale * conj_symmetric(A @ np.conj(np.swapaxes(A, -1, -2)))


def block_circulant(S):
    """Cov(x[c, j], x[c', l]) = R_{cc'}(j - l), R the inverse DFT of the cross-spectrum, entry by entry."""
    grid, C = S.shape[:-2], S.shape[-1]
    R = np.fft.ifftn(S, axes=tuple(range(len(grid))))
    assert np.max(np.abs(R.imag)) < 1e-12 * np.max(np.abs(R))
    R = R.real
    cells = list(itertools.product(*[range(n) for n in grid]))
    n = len(cells)
    out = np.empty((C * n, C * n))
    for i, j in enumerate(cells):
        for k, l in enumerate(cells):
            block = R[tuple((j[a] - l[a]) % grid[a] for a in range(len(grid)))]
            out[i::n, k::n] = block  # rows c * n + i, columns c' * n + k
    return 0.5 * (out + out.T)


def pair(rng, grid, C, S=None, mean=None):
    S = cross_spectrum(rng, grid, C) if S is None else S
    mean = rng.standard_normal(C) * 0.5 if mean is None else mean
    g = ld.Gaussian.stationary(S, mean, channels=C)
    dense = ld.Gaussian(np.repeat(mean, math.prod(grid)), block_circulant(S))
    return g, dense


def close(a, b, rtol=1e-10):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    err = float(np.max(np.abs(a - b), initial=0.0))
    assert err <= rtol * scale, f"max err {err:.3e} (scale {scale:.3g})"


# --- the basis --------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid,C", CASES + [((3, 2, 2), 2), ((1,), 3)])
def test_channel_basis_is_orthonormal_and_diagonalises_the_block_circulant(rng, grid, C):
    S = cross_spectrum(rng, grid, C)
    g = ld.Gaussian.stationary(S, channels=C)
    U = g.eigenvectors
    D = U.dense()
    d = C * math.prod(grid)
    assert D.shape == (d, d) and isinstance(U, _fourier.ChannelBasis)
    close(D.T @ D, np.eye(d), 1e-13)
    close(D.T @ block_circulant(S) @ D, np.diag(g.eigenvalues), 1e-12)
    close(U.T.dense(), D.T, 1e-15)
    x = rng.standard_normal((3, d))
    close(x @ U, x @ D, 1e-13)
    close(x @ U.T, x @ D.T, 1e-13)
    close(U @ x.T, D @ x.T, 1e-13)
    close(U.T @ x[0], D.T @ x[0], 1e-13)
    close(U @ (U.T @ x.T), x.T, 1e-13)
    assert U.T.T is U and U.T is not U
    # each eigenvalue of S(k) once per frequency, equal at k and -k
    lam = g.eigenvalues.reshape((C,) + grid)
    close(lam, _fourier.mirror(lam, tuple(range(1, len(grid) + 1))), 0.0)
    close(np.sort(np.moveaxis(lam, 0, -1), axis=-1), np.linalg.eigvalsh(S), 1e-12)


# --- the Gaussian --------------------------------------------------------------------------------
@pytest.mark.parametrize("grid,C", CASES)
def test_stationary_channel_field_equals_the_explicit_block_circulant(rng, grid, C):
    g, dense = pair(rng, grid, C)
    close(g.cov, dense.cov, 1e-13)
    close(g.mean, dense.mean, 0.0)
    x = rng.standard_normal((5, g.dim)) + g.mean
    close(g.logpdf(x), dense.logpdf(x), 1e-12)
    assert g.grid == grid and g.channels == C and g.rank == g.dim and f"channels={C}" in repr(g)
    assert ld.Gaussian.stationary(np.ones(grid)).channels == 1 and dense.channels is None
    # the mean as a full (C, *grid) array constant over the grid, or one number
    full = np.repeat(g.mean.reshape(C, -1)[:, :1], math.prod(grid), axis=1).reshape((C,) + grid)
    close(ld.Gaussian.stationary(g.eigenvectors.blocks(g.eigenvalues), full, channels=C).mean, g.mean, 0.0)
    close(ld.Gaussian.stationary(conj_symmetric(np.ones(grid + (C, C))), 0.3, channels=C).mean, 0.3, 0.0)


def test_real_cross_spectrum_and_one_channel(rng):
    grid = (4, 3)
    A = rng.standard_normal(grid + (2, 2))
    S = conj_symmetric(A @ np.swapaxes(A, -1, -2)).real  # real symmetric blocks, symmetric in k
    g, dense = pair(rng, grid, 2, S)
    close(g.cov, dense.cov, 1e-13)
    p = power_law_grid(grid, 1.5)
    one = ld.Gaussian.stationary(p[..., None, None], 0.2, channels=1)
    assert one.eigenvectors is _fourier.hartley_basis(grid)  # C = 1 is the scalar field
    close(one.cov, ld.Gaussian.stationary(p, 0.2).cov, 1e-15)


@pytest.mark.parametrize("grid,C", CASES[:2])
def test_samples_have_the_dense_moments(rng, grid, C):
    """Monte Carlo twin: samples drawn through the implicit basis, tested against the dense law's own
    eigendecomposition (exact p-values of means, variances and correlations; Bonferroni)."""
    g, dense = pair(rng, grid, C)
    x = g.sample(20_000, rng)
    p = mc.moment_p_values(x, dense)
    assert p.min() > 1e-4 / p.size, f"min p = {p.min():.2e} over {p.size} tests"
    z = (x.mean(axis=0) - dense.mean) / np.sqrt(np.diag(dense.cov) / x.shape[0])
    assert np.max(np.abs(z)) < 5.0


# --- divergences -----------------------------------------------------------------------------------
def _perturbed(rng, S, size):
    """S + size * (a Hermitian PSD perturbation): a field near S in a different rotation."""
    grid, C = S.shape[:-2], S.shape[-1]
    return S + cross_spectrum(rng, grid, C, scale=size)


@pytest.mark.parametrize("grid,C", CASES)
@pytest.mark.parametrize("size", [0.02, 3.0])
def test_divergences_between_rotations_equal_the_dense_path(rng, grid, C, size):
    S = cross_spectrum(rng, grid, C)
    g, gd = pair(rng, grid, C, S)
    h, hd = pair(rng, grid, C, _perturbed(rng, S, size), mean=g.mean.reshape(C, -1)[:, 0] + 0.05)
    assert not g.shares_basis_with(h)
    for f in (ld.kl, ld.w2, ld.hellinger):
        exact = f(gd, hd)
        close(f(g, h), exact, 1e-10)
        close(f(h, g), f(hd, gd), 1e-10)
        close(f(g, hd), exact, 1e-10)  # one implicit, one dense: the dense path
        assert f(g, g) == 0.0
    if size > 1:  # far apart: KL's log-determinant route and Hellinger's average-spectrum route
        assert ld.hellinger(gd, hd) < 1.0


def test_divergences_far_branches_are_exercised(rng):
    grid, C = (4, 4), 2
    S = cross_spectrum(rng, grid, C)
    g, gd = pair(rng, grid, C, S, mean=np.zeros(C))
    h, hd = pair(rng, grid, C, S * 0.3 + cross_spectrum(rng, grid, C, scale=0.01), mean=np.zeros(C))
    from lindiff.gaussian import _Blocks, _channel_pencil, _hat

    x = _channel_pencil(g, h, _Blocks(g), _Blocks(h), _hat(h.mean - g.mean, h)).x
    assert x.max() > 1.0  # some r > 2: the far Hellinger route
    x = _channel_pencil(h, g, _Blocks(h), _Blocks(g), _hat(g.mean - h.mean, g)).x
    assert x.min() < -0.5  # some r < 1/2: KL's log r from the spectra
    for f in (ld.kl, ld.hellinger, ld.w2):
        close(f(g, h), f(gd, hd), 1e-10)
        close(f(h, g), f(hd, gd), 1e-10)


def test_singular_channel_fields(rng):
    grid, C = (4, 4), 3
    A = conj_symmetric(rng.standard_normal(grid + (C, 2)) + 1j * rng.standard_normal(grid + (C, 2)))
    S = conj_symmetric(A @ np.conj(np.swapaxes(A, -1, -2)))  # rank 2 at every frequency
    E = conj_symmetric(rng.standard_normal(grid + (2, 2)) + 1j * rng.standard_normal(grid + (2, 2)))
    S2 = conj_symmetric(A @ (np.eye(2) + 0.3 * E @ np.conj(np.swapaxes(E, -1, -2))) @ np.conj(np.swapaxes(A, -1, -2)))
    mean = np.zeros(C)
    g, gd = pair(rng, grid, C, S, mean)
    h, hd = pair(rng, grid, C, S2, mean)  # the same support, another rotation
    full, full_d = pair(rng, grid, C, mean=mean)
    assert g.rank == gd.rank == 32 and h.rank == 32
    for f in (ld.kl, ld.hellinger):
        close(f(g, h), f(gd, hd), 1e-8)
        close(f(h, g), f(hd, gd), 1e-8)
    close(ld.w2(g, h), ld.w2(gd, hd), 1e-8)  # the dense matrix square root of a singular law: ~sqrt(eps)
    for p, q in ((g, full), (full, g)):
        value = ld.kl(p, q)
        assert isinstance(value, ld.Infinite) and value.reason and math.isinf(ld.kl(gd if p is g else full_d,
                                                                                   full_d if q is full else gd))
        assert ld.hellinger(p, q) == 1.0
    # a mean shift off the support (a null direction of S(0)) is infinitely far; along it, finite
    off, off_d = pair(rng, grid, C, S2, mean + 0.1)
    value = ld.kl(g, off)
    assert isinstance(value, ld.Infinite) and "means differ" in value.reason and math.isinf(ld.kl(gd, off_d))
    assert ld.hellinger(g, off) == ld.hellinger(gd, off_d) == 1.0
    on, on_d = pair(rng, grid, C, S2, A[(0,) * len(grid)].real @ np.array([0.1, -0.2]))
    for f in (ld.kl, ld.hellinger, ld.w2):
        assert 0 < f(g, on) < np.inf
        close(f(g, on), f(gd, on_d), 1e-8)
    x = g.sample(3, rng)
    close(g.logpdf(x), gd.logpdf(x), 1e-9)
    assert np.all(np.isneginf(g.logpdf(x + rng.standard_normal(x.shape))))


# --- scores, losses, sampler laws ------------------------------------------------------------------
@pytest.mark.parametrize("grid,C", CASES[:2])
def test_gaussian_score_losses_and_laws_equal_the_dense_path(rng, grid, C):
    g, gd = pair(rng, grid, C)
    process = ld.DDPM.linear(60)
    m, md = ld.GaussianScore(g, process), ld.GaussianScore(gd, process)
    x = rng.standard_normal((4, g.dim))
    for t in (1, 20, 60):
        for f in ("score", "eps", "x0"):
            close(getattr(m, f)(x, t), getattr(md, f)(x, t), 1e-10)
        close(m.logpdf(x, t), md.logpdf(x, t), 1e-10)
        marg = process.marginal(g, t)
        assert marg.shares_basis_with(g)
        close(marg.cov, process.marginal(gd, t).cov, 1e-12)
    t = np.array([1.0, 20.0, 60.0])
    close(ld.dsm_loss(m, g, t), ld.dsm_loss(md, gd, t), 1e-10)
    X = g.sample(5, rng)
    close(ld.dsm_loss(m, X, t), ld.dsm_loss(md, X, t), 1e-10)
    other, other_d = pair(rng, grid, C)
    close(ld.score_matching_loss(m, other, t), ld.score_matching_loss(md, other_d, t), 1e-10)
    for sampler, cfg in (("ddpm", {"final_noise": True}), ("ddim", {"steps": 12})):
        for init in ("standard", "exact"):
            law = ld.sampling_law(m, process, sampler, init=init, **cfg)
            ref = ld.sampling_law(md, process, sampler, init=init, **cfg)
            assert law.shares_basis_with(g) and law.channels == C
            close(law.mean, ref.mean, 1e-10)
            close(law.cov, ref.cov, 1e-10)
            for f in (ld.kl, ld.w2, ld.hellinger):
                close(f(law, g), f(ref, gd), 1e-10)
                close(f(law, other), f(ref, other_d), 1e-10)  # a different rotation
        dense_law = ld.sampling_law(m, process, sampler, path="dense", init="exact", **cfg)
        close(dense_law.cov, ld.sampling_law(m, process, sampler, init="exact", **cfg).cov, 1e-10)


# --- the C-in/C-out convolutional fit --------------------------------------------------------------
def shifts(grid, C):
    """I_C (x) P_o for every offset o: (P_o y)_j = y_{j - o} in every channel."""
    cells = list(itertools.product(*[range(n) for n in grid]))
    index = {c: i for i, c in enumerate(cells)}
    out = []
    for o in cells:
        P = np.zeros((len(cells), len(cells)))
        for j, c in enumerate(cells):
            P[j, index[tuple((c[a] - o[a]) % grid[a] for a in range(len(grid)))]] = 1.0
        out.append((o, np.kron(np.eye(C), P)))
    return out


def dense_convolution_fit(X, process, t, grid, C, ridge):
    """Least squares over every C-in/C-out circulant W = sum_{c, c', o} w E_{cc'} (x) P_o and per-channel bias,
    on the plain dense training loss (pixelwise mean and covariance), solved directly."""
    a, s = float(process.alpha(t)), float(process.sigma(t))
    N, d = X.shape
    n = d // C
    mu = X.mean(axis=0)
    S = (X - mu).T @ (X - mu) / N
    Bs = []
    for o, P in shifts(grid, C):
        for c in range(C):
            for c2 in range(C):
                E = np.zeros((C, C))
                E[c, c2] = 1.0
                Bs.append(np.kron(E, np.eye(n)) @ P)
    biases = [np.kron(np.eye(C)[c], np.ones(n)) for c in range(C)]
    K = len(Bs)
    G = np.zeros((K + C, K + C))
    h = np.zeros(K + C)
    Bmu = [B @ mu for B in Bs]
    for i in range(K):
        for j in range(i, K):
            G[i, j] = G[j, i] = ((s * s + ridge) * np.sum(Bs[i] * Bs[j]) + a * a * np.sum((Bs[i] @ S) * Bs[j])
                                 + a * a * Bmu[i] @ Bmu[j])
        for c in range(C):
            G[i, K + c] = G[K + c, i] = a * Bmu[i] @ biases[c]
        h[i] = s * np.trace(Bs[i])
    for c in range(C):
        G[K + c, K + c] = n
    theta = np.linalg.lstsq(G, h, rcond=None)[0]
    W = sum(w * B for w, B in zip(theta[:K], Bs))
    b = sum(beta * v for beta, v in zip(theta[K:], biases))
    return W, b


@pytest.mark.parametrize("grid,C,ridge", [((4,), 2, 0.0), ((3, 2), 2, 0.1), ((3,), 3, 0.05)])
def test_fit_convolutional_with_channels_is_the_dense_least_squares_convolution(rng, grid, C, ridge):
    d = C * math.prod(grid)
    X = rng.standard_normal((6, d)) * rng.uniform(0.4, 2.0, d) + rng.uniform(-0.5, 1.0, d)  # not stationary
    process = ld.DDPM.linear(40)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, ridge=ridge, channels=C)
    assert model.data.channels == C and model.spectral.basis is model.data.eigenvectors
    for t in (1, 15, 40):
        W, b = dense_convolution_fit(X, process, t, grid, C, ridge)
        Wm, bm = model.affine(t)
        close(Wm, W, 1e-10)
        close(bm, b, 1e-10)
        # the kernel w[c, c', o] is W's first column of each block: W[c n + j, c' n + l] = w[c, c', j - l]
        w = model.kernel(t)
        n = math.prod(grid)
        cells = list(itertools.product(*[range(m) for m in grid]))
        for c, c2 in itertools.product(range(C), repeat=2):
            close(w[c, c2].reshape(-1), [W[c * n + cells.index(o), c2 * n] for o in cells], 1e-10)


def test_early_stopped_channel_fit_is_the_gradient_flow_on_the_kernel_weights(rng):
    """Gradient flow from zero on every C-in/C-out kernel weight of the per-pixel-position loss (centred
    parametrisation), by the matrix exponential of its Hessian: no eigendecomposition, no Fourier."""
    from scipy.linalg import expm

    grid, C, ridge, lr, tau = (3, 2), 2, 0.05, 0.5, 0.8
    n = math.prod(grid)
    d = C * n
    X = rng.standard_normal((5, d)) * rng.uniform(0.4, 2.0, d) + rng.uniform(-0.5, 1.0, d)
    process = ld.OU(3.0)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, ridge=ridge, train_time=tau, lr=lr, channels=C)
    m = np.repeat(X.reshape(5, C, n).mean(axis=(0, 2)), n)
    M = (X - m).T @ (X - m) / X.shape[0]
    Bs = []
    for _, P in shifts(grid, C):
        for c, c2 in itertools.product(range(C), repeat=2):
            E = np.zeros((C, C))
            E[c, c2] = 1.0
            Bs.append(np.kron(E, np.eye(n)) @ P)
    for t in (0.05, 0.7, 3.0):
        a, s = float(process.alpha(t)), float(process.sigma(t))
        G = np.array([[(s * s + ridge) * np.sum(Bi * Bj) + a * a * np.sum((Bi @ M) * Bj) for Bj in Bs] for Bi in Bs])
        h = np.array([s * np.trace(B) for B in Bs])
        theta = np.linalg.solve(G, (np.eye(len(Bs)) - expm(-2 * lr * tau * G / n)) @ h)
        W = sum(w * B for w, B in zip(theta, Bs))
        Wm, bm = model.affine(t)
        close(Wm, W, 1e-10)
        close(bm, -a * W @ m, 1e-10)


def test_law_from_a_dense_start(rng):
    grid, C = (4,), 3
    g, gd = pair(rng, grid, C)
    process = ld.DDPM.linear(40)
    start = ld.Gaussian(rng.standard_normal(g.dim), np.eye(g.dim) * 0.7 + 0.01)
    law = ld.sampling_law(ld.GaussianScore(g, process), process, "ddim", 10, init=start)
    ref = ld.sampling_law(ld.GaussianScore(gd, process), process, "ddim", 10, init=start)
    close(law.cov, ref.cov, 1e-10)
    close(law.mean, ref.mean, 1e-10)
    T = ld.Gaussian.from_spectrum(g.eigenvalues, g.eigenvectors.T)  # the transposed basis is orthonormal too
    D = g.eigenvectors.dense().T
    close(T.cov, (D * g.eigenvalues) @ D.T, 1e-13)


def test_fit_convolutional_with_channels_is_fit_on_the_shift_averaged_field(rng):
    grid, C = (4, 4), 2
    d = C * 16
    X = rng.standard_normal((5, d)) * rng.uniform(0.4, 2.0, d) + rng.uniform(-0.5, 1.0, d)
    process = ld.DDPM.linear(50)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, ridge=0.02, channels=C)
    m = X.reshape(5, C, -1).mean(axis=(0, 2))
    Y = X - np.repeat(m, 16)
    M = Y.T @ Y / 5
    avg = sum(P @ M @ P.T for _, P in shifts(grid, C)) / 16
    close(model.data.cov, avg, 1e-13)
    close(model.data.mean, np.repeat(m, 16), 1e-15)
    dense_data = ld.Gaussian(np.repeat(m, 16), avg)
    ref = ld.LinearDenoiser.population(dense_data, process, ridge=0.02)
    x = rng.standard_normal((3, d))
    t = np.array([1.0, 10.0, 50.0])
    for tt in t:
        for f in ("score", "eps", "x0"):
            close(getattr(model, f)(x, tt), getattr(ref, f)(x, tt), 1e-10)
    # the loss on the training images is the loss on the shift-averaged field (and the dense model's own)
    close(ld.dsm_loss(model, X, t), ld.dsm_loss(ref, dense_data, t), 1e-10)
    close(ld.dsm_loss(model, X, t), ld.dsm_loss(ref.to_dense(), X, t), 1e-10)
    truth, truth_d = pair(rng, grid, C)
    for sampler, cfg in (("ddpm", {}), ("ddim", {"steps": 10})):
        law = ld.sampling_law(model, process, sampler, **cfg)
        ref_law = ld.sampling_law(ref, process, sampler, **cfg)
        close(law.cov, ref_law.cov, 1e-10)
        close(law.mean, ref_law.mean, 1e-10)
        for f in (ld.kl, ld.w2, ld.hellinger):
            close(f(law, truth), f(ref_law, truth_d), 1e-10)  # fitted field vs the true field
            close(f(law, model.data), f(ref_law, dense_data), 1e-10)


# --- bad input and pickling ------------------------------------------------------------------------
def _good(C=2, grid=(4,)):
    return conj_symmetric(np.broadcast_to(np.eye(C), grid + (C, C)).astype(complex) * 1.0)


@pytest.mark.parametrize("make,mean,match", [
    (lambda S: S + np.array([[0, 1j], [0, 0]]), 0.0, "power must be Hermitian at every frequency"),
    (lambda S: S + np.array([[0, 0.5j], [-0.5j, 0]]) * np.arange(4)[:, None, None], 0.0,
     r"power\[-k\] == conj\(power\[k\]\)"),
    (lambda S: S - 2 * np.eye(2), 0.0, "power is not positive semi-definite"),
    (lambda S: np.where(np.eye(2, dtype=bool), np.nan, S), 0.0, "power contains NaN"),
    (lambda S: S[..., :1], 0.0, r"power must have shape grid \+ \(C, C\)"),
    (lambda S: S[0], 0.0, r"power must have shape grid \+ \(C, C\)"),
    (lambda S: S, np.zeros(3), "mean must be a number, one value per channel"),
    (lambda S: S, np.arange(8.0), "mean of a 2-channel stationary field must be constant over the grid"),
    (lambda S: S, np.nan, "mean"),
])
def test_bad_input_names_the_argument(make, mean, match):
    with pytest.raises(ValueError, match=match):
        ld.Gaussian.stationary(make(_good()), mean, channels=2)


def test_bad_channels_and_fits():
    with pytest.raises(ValueError, match="channels"):
        ld.Gaussian.stationary(_good(), channels=0)
    with pytest.raises(ValueError, match="power must be real"):
        ld.Gaussian.stationary(np.array([1.0, 1j, 1j]))  # complex only with channels
    X = np.random.default_rng(0).standard_normal((3, 16))
    with pytest.raises(ValueError, match="channels \\* prod\\(grid\\) = 24"):
        ld.LinearDenoiser.fit_convolutional(X, ld.DDPM.linear(10), (4, 3), channels=2)
    with pytest.raises(ValueError, match="kernel_size=3 with channels=2 is not supported"):
        ld.LinearDenoiser.fit_convolutional(X, ld.DDPM.linear(10), (8,), kernel_size=3, channels=2)


def test_pickle_and_deepcopy_keep_the_basis_shared(rng):
    grid, C = (4, 4), 2
    g, _ = pair(rng, grid, C)
    process = ld.DDPM.linear(30)
    model = ld.GaussianScore(g, process)
    law = ld.sampling_law(model, process, "ddim", 10)
    for value in (g, law, g.eigenvectors, g.eigenvectors.T):
        assert same(pickle.loads(pickle.dumps(value)), value)
        assert same(copy.deepcopy(value), value)
    g2, law2 = pickle.loads(pickle.dumps((g, law)))
    assert law2.shares_basis_with(g2) and ld.kl(law2, g2) == ld.kl(law, g)
    assert copy.deepcopy(law).shares_basis_with(g)
    X = g.sample(4, rng)
    fit = ld.LinearDenoiser.fit_convolutional(X, process, grid, channels=C)
    back = pickle.loads(pickle.dumps(fit))
    close(back.score(X, 10), fit.score(X, 10), 0.0)
    assert back.spectral.basis is back.data.eigenvectors
