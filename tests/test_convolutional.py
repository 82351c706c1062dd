"""Convolutional linear denoisers (``LinearDenoiser.fit_convolutional``) and the expected KL of the
full-support fit: closed forms against independent dense least squares, the dense d x d paths, Monte Carlo
twins (z-scores) and Monte Carlo over training sets."""

import itertools
import math

import numpy as np
import pytest
from scipy.linalg import expm

import lindiff as ld
from lindiff import mc
from lindiff._convolution import box_offsets
from lindiff.spectra import power_law_grid


def images(rng, grid, N, stationary=False):
    d = math.prod(grid)
    if stationary:
        return ld.Gaussian.stationary(power_law_grid(grid, 1.5), 0.4).sample(N, rng)
    # deliberately not stationary: per-pixel scales and means (the fit only sees the shift average)
    return rng.standard_normal((N, d)) * rng.uniform(0.4, 2.0, d) + rng.uniform(-0.5, 1.0, d)


def shift_matrices(grid, offsets):
    """P_o with (P_o y)_j = y_{j - o} (periodic), for every offset."""
    cells = list(itertools.product(*[range(n) for n in grid]))
    index = {c: i for i, c in enumerate(cells)}
    out = []
    for o in offsets:
        P = np.zeros((len(cells), len(cells)))
        for j, c in enumerate(cells):
            P[j, index[tuple((c[a] - o[a]) % grid[a] for a in range(len(grid)))]] = 1.0
        out.append(P)
    return out


def dense_banded_fit(X, process, t, grid, sizes, ridge=0.0):
    """Minimise the plain dense training loss ||I - sigma W||^2 + a^2 tr(W S W^T) + ||a W mu + b||^2 + r ||W||^2
    (S, mu the pixelwise covariance and mean) over W = sum_o w_o P_o, b = beta 1: a linear least-squares
    problem in (w, beta), solved directly."""
    a, s = float(process.alpha(t)), float(process.sigma(t))
    N, d = X.shape
    mu = X.mean(axis=0)
    S = (X - mu).T @ (X - mu) / N
    Ps = shift_matrices(grid, box_offsets(sizes))
    K = len(Ps)
    one = np.ones(d)
    G = np.zeros((K + 1, K + 1))
    h = np.zeros(K + 1)
    for i in range(K):
        for j in range(K):
            G[i, j] = ((s * s + ridge) * np.sum(Ps[i] * Ps[j]) + a * a * np.trace(Ps[i] @ S @ Ps[j].T)
                       + a * a * (Ps[i] @ mu) @ (Ps[j] @ mu))
        G[i, K] = G[K, i] = a * (Ps[i] @ mu) @ one
        h[i] = s * np.trace(Ps[i])
    G[K, K] = d
    theta = np.linalg.solve(G, h)
    return theta[:K].reshape(sizes), theta[K]


def close(a, b, rtol=1e-10):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    assert np.max(np.abs(a - b), initial=0.0) <= rtol * scale, f"max err {np.max(np.abs(a - b)):.3e}"


# --- the fits ------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid,sizes,ridge", [((5, 6), (3, 3), 0.0), ((4, 4), (1, 3), 0.3), ((7,), (5,), 0.0),
                                              ((3, 4, 3), (3, 1, 3), 0.1)])
def test_local_kernel_is_the_dense_least_squares_fit_restricted_to_banded_circulants(rng, grid, sizes, ridge):
    X = images(rng, grid, 5)
    process = ld.DDPM.linear(80)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=sizes, ridge=ridge)
    for t in (2, 25, 80):
        w, beta = dense_banded_fit(X, process, t, grid, sizes, ridge)
        close(model.kernel(t), w, 1e-10)
        W, b = model.affine(t)
        close(b, np.full(X.shape[1], beta), 1e-10)
        Ps = shift_matrices(grid, box_offsets(sizes))
        close(W, sum(wo * P for wo, P in zip(w.ravel(), Ps)), 1e-10)


def test_full_support_is_fit_on_the_shift_averaged_field(rng):
    grid = (5, 7)
    X = images(rng, grid, 4)
    process = ld.VP.linear()
    full = ld.LinearDenoiser.fit_convolutional(X, process, grid, ridge=0.02)
    box = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=grid, ridge=0.02)
    # the shift average of the pixelwise second moment about the grand mean, built directly
    m = X.mean()
    Y = X - m
    M = Y.T @ Y / X.shape[0]
    Ps = shift_matrices(grid, box_offsets(grid))
    avg = sum(P @ M @ P.T for P in Ps) / len(Ps)
    assert np.allclose(full.data.cov, avg, atol=1e-12) and np.allclose(full.data.mean, m)
    ref = ld.LinearDenoiser.population(ld.Gaussian(full.data.mean, avg), process, ridge=0.02)
    x = rng.standard_normal((3, 35))
    for t in (0.01, 0.4, 1.0):
        for f in ("score", "eps", "x0"):
            close(getattr(full, f)(x, t), getattr(ref, f)(x, t), 1e-10)
            close(getattr(box, f)(x, t), getattr(ref, f)(x, t), 1e-10)
        close(full.kernel(t), np.fft.ifftn((float(process.sigma(t)) * full.spectral.gains(
            t, float(process.alpha(t)), float(process.sigma(t)))).reshape(grid)).real, 1e-14)


def test_early_stopping_is_the_gradient_flow_on_the_kernel(rng):
    """w(tau) = sigma A^{-1}(I - expm(-2 lr tau A)) e_0 from the matrix exponential (no eigendecomposition)."""
    grid, sizes = (6, 5), (3, 3)
    X = images(rng, grid, 3)
    process = ld.OU(3.0)
    lr, tau, ridge = 0.5, 1.7, 0.05
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=sizes, train_time=tau, lr=lr, ridge=ridge)
    Ps = shift_matrices(grid, box_offsets(sizes))
    m = X.mean()
    M = (X - m).T @ (X - m) / X.shape[0]
    d = X.shape[1]
    R = np.array([[np.trace(Pi @ M @ Pj.T) / d for Pj in Ps] for Pi in Ps])
    e0 = (box_offsets(sizes) == 0).all(axis=1).astype(float)
    for t in (0.05, 1.0, 3.0):
        a, s = float(process.alpha(t)), float(process.sigma(t))
        A = a * a * R + (s * s + ridge) * np.eye(len(Ps))
        w = s * np.linalg.solve(A, (np.eye(len(Ps)) - expm(-2 * lr * tau * A)) @ e0)
        close(model.kernel(t).ravel(), w, 1e-10)


def test_local_kernel_matches_its_monte_carlo_twin(rng):
    grid, sizes = (5, 6), (3, 3)
    X = images(rng, grid, 4)
    process = ld.DDPM.linear(50)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=sizes, ridge=0.05)
    t = 20
    reps = [mc.fit_convolutional(X, process, t, grid, sizes, n=3000, rng=r, ridge=0.05) for r in range(10)]
    mean, se = mc.batch_means([np.append(k.ravel(), b) for k, b in reps])
    exact = np.append(model.kernel(t).ravel(), model.affine(t)[1][0])
    z = (mean - exact) / se
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size, dof=9), z


def test_monte_carlo_dsm_loss_of_a_local_model(rng):
    grid = (4, 5)
    X = images(rng, grid, 6)
    process = ld.DDPM.linear(50)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=3)
    for t in (5, 40):
        est = mc.dsm_loss(model, X, t, n=40_000, rng=t)
        assert abs(est.z(ld.dsm_loss(model, X, t))) < 4.5


# --- losses, laws, the dense path ------------------------------------------------------------------
CONV_MODELS = [dict(), dict(kernel_size=3), dict(kernel_size=(3, 1), ridge=0.1, train_time=4.0), dict(ridge=0.05, train_time=2.0)]


@pytest.mark.parametrize("kw", CONV_MODELS, ids=str)
def test_losses_equal_the_dense_path(rng, kw):
    grid = (4, 4)
    p0 = ld.Gaussian.stationary(power_law_grid(grid, 2.0), 0.3)
    X = images(rng, grid, 5)
    process = ld.DDPM.linear(60)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, **kw)
    dense = model.to_dense()  # no training-set shortcut: Gaussian.fit(X), the pixelwise covariance
    t = np.array([1.0, 10.0, 35.0, 60.0])
    close(ld.dsm_loss(model, X, t), ld.dsm_loss(dense, X, t), 1e-10)
    close(ld.dsm_loss(model, X[::-1], t), ld.dsm_loss(dense, X, t), 1e-10)  # the points path
    close(ld.dsm_loss(model, p0, t), ld.dsm_loss(dense, p0, t), 1e-10)
    close(ld.generalisation_gap(model, X, p0, t), ld.generalisation_gap(dense, X, p0, t), 1e-10)
    close(ld.score_matching_loss(model, p0, t), ld.score_matching_loss(dense, p0, t), 1e-10)


@pytest.mark.parametrize("kw", CONV_MODELS, ids=str)
@pytest.mark.parametrize("sampler,process", [("ddpm", ld.DDPM.linear(60)), ("ddim", ld.DDPM.linear(60)),
                                             ("dpmpp_2m", ld.DDPM.linear(60)), ("heun", ld.VP.linear()),
                                             ("dpmpp_2s_ancestral", ld.VP.linear()), ("euler_maruyama", ld.VP.linear()),
                                             ("ode", ld.VP.linear())], ids=str)
def test_sampler_laws_equal_the_dense_path(rng, kw, sampler, process):
    grid = (4, 4)
    p0 = ld.Gaussian.stationary(power_law_grid(grid, 2.0))
    X = images(rng, grid, 5)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, **kw)
    cfg = dict(steps=None if process.discrete or sampler == "ode" else 12, t_min=0.0 if process.discrete else 0.01)
    if sampler == "ddpm":
        cfg["final_noise"] = True
    continuous = sampler == "ode"
    law = ld.sampling_law(model, process, sampler, init="exact", rtol=1e-12, **cfg)
    ref = ld.sampling_law(model.to_dense(), process, sampler, init="exact", rtol=1e-12, **cfg)
    tol = 1e-8 if continuous else 1e-10  # two adaptive integrations at rtol 1e-12
    assert law.grid == grid
    close(law.mean, ref.mean, tol)
    close(law.cov, ref.cov, tol)
    close(ld.kl(law, p0), ld.kl(ref, p0), 10 * tol)
    close(ld.w2(law, p0), ld.w2(ref, p0), 10 * tol)


def test_local_model_law_matches_monte_carlo(rng):
    grid = (3, 4)
    X = images(rng, grid, 4)
    process = ld.DDPM.linear(40)
    model = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=3, ridge=0.01)
    law = ld.sampling_law(model, process, "ddim", 8, eta=0.5)
    x = mc.sample(model, process, "ddim", 20_000, rng, 8, eta=0.5)
    z = mc.moment_z_scores(x, law)
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size)


# --- expected KL over training sets ------------------------------------------------------------------
@pytest.mark.parametrize("grid,N", [((4, 4), 10), ((5,), 8), ((2, 3), 12)])
def test_expected_kl_of_the_convolutional_fit_matches_monte_carlo_over_training_sets(rng, grid, N):
    p0 = ld.Gaussian.stationary(power_law_grid(grid, 2.0), -0.7)
    process = ld.DDPM.linear(10)
    m2d, d2m = [], []
    for _ in range(1500):
        fit = ld.LinearDenoiser.fit_convolutional(p0.sample(N, rng), process, grid).data
        m2d.append(ld.kl(fit, p0))
        d2m.append(ld.kl(p0, fit))
    for values, direction in ((m2d, "model_to_data"), (d2m, "data_to_model")):
        est = mc._estimate(np.array(values))
        assert abs(est.z(ld.expected_kl_convolutional(grid, N, direction))) < 4.5, (direction, est)


def test_expected_kl_with_the_mean_known(rng):
    grid, N = (4, 3), 9
    p0 = ld.Gaussian.stationary(power_law_grid(grid, 1.0), 0.2)
    from lindiff._fourier import mirror

    vals = []
    for _ in range(2000):
        X = p0.sample(N, rng) - 0.2
        f = np.fft.fftn(X.reshape((N,) + grid), axes=(1, 2), norm="ortho")
        P = np.mean(np.abs(f) ** 2, axis=0)
        vals.append(ld.kl(ld.Gaussian.stationary(0.5 * (P + mirror(P, (0, 1))), 0.2), p0))
    est = mc._estimate(np.array(vals))
    assert abs(est.z(ld.expected_kl_convolutional(grid, N, mean="known"))) < 4.5


def test_expected_kl_limits_and_infinities():
    assert math.isinf(ld.expected_kl_convolutional((8, 8), 1))
    assert math.isinf(ld.expected_kl_convolutional((8, 8), 3, "data_to_model"))
    assert math.isfinite(ld.expected_kl_convolutional((8, 8), 4, "data_to_model"))
    assert math.isfinite(ld.expected_kl_convolutional((8, 8), 1, mean="known"))
    assert math.isinf(ld.expected_kl_convolutional((8, 8), 2, "data_to_model", "known"))
    # about d times less than the dense fit at the same N, and the (d + s + 2)/(4N) law
    d, N = 64, 10**5
    assert ld.expected_kl(d, N) / ld.expected_kl_convolutional((8, 8), N) > d / 2
    assert abs(N * ld.expected_kl_convolutional((8, 8), N) - (d + 4 + 2) / 4) < 1e-3
    assert ld.ensembles.frequency_classes((8, 8)) == (4, 30) and ld.ensembles.frequency_classes((3, 5)) == (1, 7)


# --- the transition with convolutional models -------------------------------------------------------
def test_transition_sweep_with_convolutional_models():
    kw = dict(grid=(4, 4), ratios=(0.5, 2.0), repeats=4, process=ld.DDPM.linear(50), exponent=2.0, progress=False)
    dense, conv, local = (ld.transition_sweep(model=m, **kw) for m in ("dense", "conv", "conv:3"))
    assert dense.grid == conv.grid == (4, 4) and conv.model == "conv"
    assert np.array_equal(dense.spectrum, conv.spectrum)
    assert conv.exact("model_to_data") == [ld.expected_kl_convolutional((4, 4), N) / 16 for N in conv.Ns]
    assert local.exact("model_to_data") == [None, None] and local.summary("fit_m2d") == [None, None]
    assert math.isinf(dense.summary("fit_m2d")[0])  # N = 8 < d: the dense fit is singular
    assert all(math.isfinite(v[0]) for v in conv.summary("law_m2d") + local.summary("law_m2d"))
    text = ld.transition_table(local).render("text")
    assert "model conv:3" in text and "not the score of any fitted Gaussian" in text
    assert "(d+s+2)/(4Nd)" in ld.transition_table(conv).render("markdown")
    one = ld.transition_sweep(model="conv", d=6, ratios=(1.0,), repeats=2, process=ld.DDPM.linear(20), progress=False)
    assert one.grid == (6,)


@pytest.mark.parametrize("kwargs,match", [
    (dict(model="conv:4"), "model must be 'dense', 'conv' or 'conv:K'"),
    (dict(model="cnn"), "model must be"),
    (dict(model="conv:5", grid=(4, 4)), "kernel size 5 exceeds the grid"),
    (dict(grid=(4, 4), d=10), "does not match the grid"),
    (dict(grid=(4, 4), spectrum=np.ones(5)), "spectrum must have the grid's shape"),
    (dict(grid=(4, 4), spectrum=np.arange(16.0)), "power must be symmetric"),
])
def test_transition_checks_its_model_and_grid(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ld.transition_sweep(ratios=(1.0,), repeats=1, progress=False, **kwargs)


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,kw,match", [
    (((4, 4),), dict(kernel_size=2), "kernel_size must be odd"),
    (((4, 4),), dict(kernel_size=5), "exceeds the grid"),
    (((4, 4),), dict(kernel_size=(3,)), "one size per grid axis"),
    (((4, 4),), dict(kernel_size="3"), "kernel_size must be None, an odd int"),
    (((4, 5),), dict(), "X must have rows of length prod\\(grid\\) = 20"),
    (((4, 0),), dict(), "grid must be a tuple of positive integers"),
    (((4, 4),), dict(ridge=-1.0), "ridge"),
    (((4, 4),), dict(train_time=-1.0), "train_time"),
])
def test_fit_convolutional_bad_input_names_the_argument(rng, args, kw, match):
    X = rng.standard_normal((3, 16))
    with pytest.raises((ValueError, TypeError), match=match):
        ld.LinearDenoiser.fit_convolutional(X, ld.DDPM.linear(10), *args, **kw)


def test_kernel_of_a_non_convolutional_model_is_refused(rng):
    model = ld.LinearDenoiser.fit(rng.standard_normal((5, 3)), ld.DDPM.linear(10))
    with pytest.raises(TypeError, match="not a convolutional model"):
        model.kernel(3)
    with pytest.raises(ValueError, match="N must be"):
        ld.expected_kl_convolutional((4, 4), 0)
    with pytest.raises(ValueError, match="direction must be one of"):
        ld.expected_kl_convolutional((4, 4), 5, "both")
    with pytest.raises(ValueError, match="mean must be one of"):
        ld.expected_kl_convolutional((4, 4), 5, mean="guessed")


def test_command_line_runs_the_convolutional_models(capsys):
    import json

    from lindiff.cli import main

    for model in ("conv", "conv:3"):
        assert main(["transition", "--model", model, "--grid", "4x4", "--exponent", "2", "--repeats", "2", "--ratios",
                     "1,3", "--T", "20", "--no-progress", "--format", "json"]) == 0
        table = json.loads(capsys.readouterr().out)
        assert len(table["rows"]) == 2 and f"model {model}" in table["caption"]
