"""Stationary Gaussian fields (``Gaussian.stationary``): every quantity equals the dense path on the explicit
circulant covariance, and the Fourier (Hartley) path never forms a d x d matrix."""

import itertools
import math

import numpy as np
import pytest

import lindiff as ld
from lindiff import _fourier, mc
from lindiff.samplers import _REGISTRY
from lindiff.spectra import power_law_grid

GRID = (8, 8)
DDPM_SAMPLERS = [s.name for s in _REGISTRY.values() if not (s.continuous_only or s.off_grid or s.build is None)]
CONTINUOUS_SAMPLERS = [s for s in ld.SAMPLERS if s not in ("ddpm", "lcm", "tcd")]


def symmetric(a):
    """a + a(-k): a spectrum a real field can have."""
    return a + _fourier.mirror(a, tuple(range(a.ndim)))


def circulant(power):
    """The covariance c(j - l), c = inverse DFT of power, built entry by entry (independent of lindiff)."""
    grid = power.shape
    c = np.fft.ifftn(power).real
    cells = list(itertools.product(*[range(n) for n in grid]))
    C = np.empty((len(cells), len(cells)))
    for i, j in enumerate(cells):
        for k, l in enumerate(cells):
            C[i, k] = c[tuple((j[a] - l[a]) % grid[a] for a in range(len(grid)))]
    return C


def pair(rng, grid=GRID, mean=None, zeros=0):
    power = symmetric(rng.uniform(0.05, 1.0, grid)) * power_law_grid(grid, 1.5)
    if zeros:
        flat = power.reshape(-1)
        flat[np.argsort(flat)[:zeros]] = 0.0
        power = symmetric(power) / 2  # keep it symmetric after zeroing a symmetric set (the smallest come in pairs)
    mean = rng.standard_normal(grid) * 0.3 if mean is None else mean
    g = ld.Gaussian.stationary(power, mean)
    dense = ld.Gaussian(g.mean, circulant(power))
    return g, dense


def close(a, b, rtol=1e-10):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    assert np.max(np.abs(a - b), initial=0.0) <= rtol * scale, f"max err {np.max(np.abs(a - b)):.3e} (scale {scale:.3g})"


# --- the Hartley basis ---------------------------------------------------------------------------
@pytest.mark.parametrize("grid", [(1,), (7,), (8,), (4, 6), (3, 4, 5)])
def test_hartley_basis_is_orthonormal_symmetric_and_diagonalises_circulants(rng, grid):
    H = _fourier.hartley_basis(grid)
    D = H.dense()
    d = D.shape[0]
    close(D, D.T, 1e-15)
    close(D @ D, np.eye(d), 1e-13)
    power = symmetric(rng.random(grid))
    close(D @ circulant(power) @ D, np.diag(power.ravel()), 1e-13)
    x = rng.standard_normal((3, d))
    close(x @ H, x @ D, 1e-13)
    close(H @ x.T, D @ x.T, 1e-13)
    close(H.T @ x[0], D @ x[0], 1e-13)
    assert _fourier.hartley_basis(grid) is H and H.T is H


# --- the Gaussian and its divergences --------------------------------------------------------------
@pytest.mark.parametrize("grid", [(8, 8), (9,), (2, 3, 4)])
def test_stationary_gaussian_equals_the_explicit_circulant(rng, grid):
    g, dense = pair(rng, grid)
    close(g.cov, dense.cov, 1e-13)
    x = rng.standard_normal((5, g.dim))
    close(g.logpdf(x), dense.logpdf(x), 1e-12)
    assert g.grid == grid and dense.grid is None and g.rank == g.dim
    assert "grid" in repr(g)


def test_divergences_equal_the_dense_path(rng):
    g, gd = pair(rng)
    h, hd = pair(rng)
    assert g.shares_basis_with(h) and not gd.shares_basis_with(hd)
    for f in (ld.kl, ld.w2, ld.hellinger):
        exact = f(gd, hd)
        for p, q in ((g, h), (g, hd), (gd, h)):
            close(f(p, q), exact, 1e-10)
        close(f(h, g), f(hd, gd), 1e-10)
        assert f(g, g) == 0.0
    # mean-only shift (shared basis, no covariance term) and a constant mean (the stationary case)
    s = ld.Gaussian.stationary(power_law_grid(GRID), 0.5)
    s0 = ld.Gaussian.stationary(power_law_grid(GRID))
    close(ld.kl(s, s0), 0.5 * 0.25 * 64 / power_law_grid(GRID)[0, 0], 1e-13)


def test_singular_stationary_fields(rng):
    g, gd = pair(rng, zeros=4)
    h, hd = pair(rng, zeros=4)
    assert g.rank == 60 and gd.rank == 60
    full, full_d = pair(rng)
    for p, q in ((g, full), (full, g)):
        assert isinstance(ld.kl(p, q), ld.Infinite) or ld.kl(p, q) == math.inf
    assert math.isinf(ld.kl(g, full)) and math.isinf(ld.kl(gd, full_d))
    assert ld.hellinger(g, h) == ld.hellinger(gd, hd) == 1.0  # the means differ along null directions
    close(ld.w2(g, h), ld.w2(gd, hd), 1e-8)  # the matrix square root of a singular law: ~sqrt(eps) (see w2)
    x = g.sample(3, rng)
    close(g.logpdf(x), gd.logpdf(x), 1e-9)
    assert np.all(np.isneginf(g.logpdf(x + rng.standard_normal(x.shape))))


def test_samples_have_the_stationary_law(rng):
    g, _ = pair(rng)
    x = g.sample(20_000, rng)
    p = mc.moment_p_values(x, g)
    assert p.min() > 1e-4 / p.size, f"min p = {p.min():.2e} over {p.size} tests"
    assert x.shape == (20_000, 64)


# --- scores, processes, losses ------------------------------------------------------------------
PROCESSES = [ld.DDPM.linear(100), ld.DDPM.cosine(60), ld.VP.linear(), ld.OU(2.0), ld.SigmaVP(20.0)]


@pytest.mark.parametrize("process", PROCESSES, ids=repr)
def test_gaussian_score_and_marginals_equal_the_dense_path(rng, process):
    g, gd = pair(rng)
    m, md = ld.GaussianScore(g, process), ld.GaussianScore(gd, process)
    x = rng.standard_normal((4, g.dim))
    times = [1, 30, process.T] if process.discrete else [1e-3 * process.T, 0.3 * process.T, process.T]
    for t in times:
        for f in ("score", "eps", "x0"):
            close(getattr(m, f)(x, t), getattr(md, f)(x, t), 1e-10)
        close(m.logpdf(x, t), md.logpdf(x, t), 1e-10)
        marg = process.marginal(g, t)
        assert marg.grid == GRID
        close(marg.cov, process.marginal(gd, t).cov, 1e-12)
    t = np.array(times, float)
    for f in (ld.irreducible_loss,):
        close(f(g, process, t), f(gd, process, t), 1e-10)
    close(ld.dsm_loss(m, g, t), ld.dsm_loss(md, gd, t), 1e-10)
    close(ld.score_matching_loss(m, gd, t), 0.0, 1e-10)
    other, other_d = pair(rng)
    close(ld.score_matching_loss(m, other, t), ld.score_matching_loss(md, other_d, t), 1e-10)
    X = g.sample(5, rng)
    close(ld.generalisation_gap(m, X, other, t), ld.generalisation_gap(md, X, other_d, t), 1e-10)
    close(ld.dsm_loss(m, X, t), ld.dsm_loss(md, X, t), 1e-10)


# --- every sampler law -----------------------------------------------------------------------------
def _config(sampler, process):
    if process.discrete:
        steps = None if sampler in ("ddpm", "ddim") else 12
        extra = {"final_noise": True} if sampler == "ddpm" else {}
        return dict(steps=steps, **extra)
    return dict(steps=None if sampler in ("sde", "ode") else 15, t_min=0.01)


@pytest.mark.parametrize("sampler,process", [(s, ld.DDPM.linear(60)) for s in DDPM_SAMPLERS]
                         + [(s, ld.VP.linear()) for s in CONTINUOUS_SAMPLERS], ids=lambda v: str(v)[:22])
def test_every_sampler_law_equals_the_dense_path(rng, sampler, process):
    g, gd = pair(rng)
    cfg = _config(sampler, process)
    m, md = ld.GaussianScore(g, process), ld.GaussianScore(gd, process)
    for init in ("standard", "exact"):
        law = ld.sampling_law(m, process, sampler, init=init, **cfg)
        ref = ld.sampling_law(md, process, sampler, init=init, **cfg)
        assert law.grid == GRID
        close(law.mean, ref.mean, 1e-10)
        close(law.cov, ref.cov, 1e-10)
        close(ld.kl(law, g), ld.kl(ref, gd), 1e-9)
        close(ld.w2(law, g), ld.w2(ref, gd), 1e-9)
    if sampler not in ("sde", "ode"):  # the d x d interpreter on the same model
        dense = ld.sampling_law(m, process, sampler, path="dense", init="exact", **cfg)
        close(dense.cov, law.cov, 1e-10)
        close(dense.mean, law.mean, 1e-10)


def test_law_from_a_dense_start_and_into_a_dense_start(rng):
    g, gd = pair(rng)
    process = ld.DDPM.linear(50)
    start = ld.Gaussian(rng.standard_normal(64), np.eye(64) * 0.7 + 0.01)
    law = ld.sampling_law(ld.GaussianScore(g, process), process, "ddim", init=start)
    ref = ld.sampling_law(ld.GaussianScore(gd, process), process, "ddim", init=start)
    close(law.cov, ref.cov, 1e-10)
    close(law.mean, ref.mean, 1e-10)


# --- past the dense limit: nothing forms a d x d matrix ----------------------------------------------
def test_image_sized_fields_stay_in_the_fourier_basis(rng):
    grid = (131, 127)  # d = 16637 > DENSE_LIMIT: any dense step would raise
    assert math.prod(grid) > _fourier.DENSE_LIMIT
    p0 = ld.Gaussian.stationary(power_law_grid(grid, 2.0), 0.1)
    process = ld.DDPM.linear(200)
    model = ld.GaussianScore(p0, process)
    law = ld.sampling_law(model, process, "ddpm", final_noise=True)
    assert law.grid == grid
    assert 0 < ld.kl(law, p0) < np.inf and 0 < ld.w2(law, p0) < np.inf and 0 < ld.hellinger(law, p0) <= 1
    x = p0.sample(3, rng)
    assert np.all(np.isfinite(p0.logpdf(x))) and model.score(x, 50).shape == x.shape
    assert np.all(np.isfinite(ld.dsm_loss(model, p0, [1, 100, 200])))
    with pytest.raises(ValueError, match="DENSE_LIMIT|only for d <="):
        p0.cov
    with pytest.raises(ValueError, match="only for d <="):
        np.asarray(p0.eigenvectors)
    # fits on images of this size: full support and a local kernel
    X = p0.sample(4, rng)
    for kernel in (None, 3):
        fit = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=kernel)
        law = ld.sampling_law(fit, process, "ddim", 20)
        assert np.isfinite(ld.kl(law, p0)) and np.isfinite(ld.dsm_loss(fit, X, 10)) and np.isfinite(
            ld.generalisation_gap(fit, X, p0, 10))


def test_mode_classes_give_the_same_law(rng):
    """A radial spectrum repeats values; the law computed once per class equals the law per mode."""
    p0 = ld.Gaussian.stationary(power_law_grid((16, 16), 2.0))
    process = ld.DDPM.linear(100)
    model = ld.GaussianScore(p0, process)
    reps, inverse = model.spectral.mode_classes()
    assert reps.size < 64 and np.array_equal(p0.eigenvalues[reps][inverse], p0.eigenvalues)
    from lindiff._program import _run_modes, run_spectral
    from lindiff.samplers import _build

    prog = _build(process, "dpmpp_2m", 30, 0.0, {}, "test")
    per_class = run_spectral(model, prog)
    per_mode = _run_modes(model.spectral, model.spectral.mean_in_basis, prog)
    for f in ("M", "m", "Q"):
        close(getattr(per_class, f), getattr(per_mode, f), 1e-13)


# --- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("power,mean,match", [
    (np.array([1.0, 2.0, 3.0]), 0.0, "power must be symmetric, power\\[k\\] == power\\[-k\\]"),
    (np.array([1.0, -1.0, -1.0]), 0.0, "power is not positive semi-definite"),
    (np.array([1.0, np.nan, np.nan]), 0.0, "power"),
    (np.array([1.0, 1j, 1j]), 0.0, "power must be real"),
    (np.array(2.0), 0.0, "power must be an array with the grid's shape"),
    (np.ones((2, 2)), np.zeros(3), "mean must be a number or an array of the grid's shape"),
    (np.ones((2, 2)), np.nan, "mean"),
])
def test_bad_input_names_the_argument(power, mean, match):
    with pytest.raises(ValueError, match=match):
        ld.Gaussian.stationary(power, mean)


def test_from_spectrum_on_a_hartley_basis_and_bad_grids():
    H = _fourier.hartley_basis((4, 4))
    g = ld.Gaussian.from_spectrum(np.ones(16), H)
    assert g.grid == (4, 4)
    with pytest.raises(ValueError, match="basis must have shape"):
        ld.Gaussian.from_spectrum(np.ones(15), H)
    for bad in ((), (0, 3), (2.5,), "ab"):
        with pytest.raises((ValueError, TypeError), match="grid"):
            _fourier.as_grid(bad)
    with pytest.raises(ValueError, match="exponent"):
        power_law_grid((4,), -1.0)
