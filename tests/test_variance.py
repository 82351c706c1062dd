import copy
import math
import pickle

import numpy as np
import pytest

import lindiff as ld
from lindiff import mc
from lindiff.samplers import build_sampler
from lindiff.variance import (noise_draw_allocation, noise_draw_law, noise_draw_model, noise_draw_series,
                              noise_draw_weight_moments, noise_draw_weights, v_kernel, v_kernel_table, variance_table,
                              variance_tables)

PROCESS = ld.DDPM.linear(100)


def _p0(d):
    return ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0))


def _z_max(a, b):
    """max |z| of the entrywise difference of two independent samples of arrays (first axis = draws)."""
    se = np.sqrt(a.var(axis=0, ddof=1) / a.shape[0] + b.var(axis=0, ddof=1) / b.shape[0])
    return np.max(np.abs(a.mean(axis=0) - b.mean(axis=0)) / se), se.size


@pytest.mark.parametrize("P,ridge", [(1, 0.0), (3, 0.1), (12, 0.0)])
def test_sufficient_statistics_draw_matches_fit_noise_draws(P, ridge):
    """noise_draw_weights has the distribution of LinearDenoiser.fit_noise_draws (first two moments)."""
    rng = np.random.default_rng(P)
    X = _p0(3).sample(4, rng)
    t = 30
    a, s = float(PROCESS.alpha(t)), float(PROCESS.sigma(t))
    fast = np.array([np.concatenate([w.ravel(), b]) for w, b in (noise_draw_weights(X, a, s, P, ridge, rng) for _ in range(3000))])
    raw = np.array([np.concatenate([w.ravel(), b]) for w, b in
                    (ld.LinearDenoiser.fit_noise_draws(X, PROCESS, P, rng=k, ridge=ridge).affine(t) for k in range(3000))])
    if P == 1:  # N P = 4 <= d = 3 + 1: under-determined; compare robust summaries (heavy tails)
        np.testing.assert_allclose(np.median(fast, axis=0), np.median(raw, axis=0), atol=0.15 * np.median(np.abs(raw)))
        return
    z, k = _z_max(fast, raw)
    assert z < mc.max_abs_z_threshold(k)
    z, k = _z_max(fast**2, raw**2)
    assert z < mc.max_abs_z_threshold(k)


def test_weight_moments_against_monte_carlo():
    rng = np.random.default_rng(1)
    X = _p0(3).sample(5, rng)
    a, s, r = 0.7, 0.5, 0.05
    mom = noise_draw_weight_moments(X, a, s, r)
    P = 40  # bias: large enough against the O(1/n^2) remainder, small enough to resolve it
    n = X.shape[0] * P
    W = np.array([noise_draw_weights(X, a, s, P, r, rng)[0] for _ in range(6000)])
    se = W.std(axis=0, ddof=1) / math.sqrt(W.shape[0])
    z = (W.mean(axis=0) - (mom.W_inf + mom.bias / n)) / se
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size)
    assert np.max(np.abs(mom.bias / n) / se) > 5  # the bias is resolved, so the test has teeth
    P = 400  # covariance map: its relative remainder is O(1/P)
    n = X.shape[0] * P
    W = np.array([noise_draw_weights(X, a, s, P, r, rng)[0] for _ in range(6000)])
    R = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, -0.4], [0.0, -0.4, 0.5]])
    D = W - mom.W_inf
    vals = np.einsum("kij,jl,kml->kim", D, R, D) * n
    z = (vals.mean(axis=0) - mom.cov_map(R)) / (vals.std(axis=0, ddof=1) / math.sqrt(W.shape[0]))
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size) + 1.0  # + O(1/P) remainder


def test_fit_is_exact_off_the_span_for_np_above_d():
    """The input's component orthogonal to the training span is an exact multiple of the noise, so least
    squares recovers the all-noise prediction there exactly at any P with N P > d (ridge 0)."""
    rng = np.random.default_rng(2)
    d, N = 6, 3
    X = _p0(d).sample(N, rng)
    xbar = X.mean(axis=0)
    g = ld.Gaussian.fit(X)
    V = g._eig.null_basis()
    for t in (1, 40, 99):
        a, s = float(PROCESS.alpha(t)), float(PROCESS.sigma(t))
        for P in (3, 10):
            W, b = noise_draw_weights(X, a, s, P, 0.0, rng)
            np.testing.assert_allclose(V.T @ W, V.T / s, atol=1e-9 / s)
            np.testing.assert_allclose(V.T @ b, -a / s * V.T @ xbar, atol=1e-9 / s)
        W, _ = noise_draw_weights(X, a, s, 1, 0.0, rng)  # N P = 3 <= d: under-determined, not exact
        assert np.max(np.abs(V.T @ W - V.T / s)) > 1e-3 / s


def test_off_span_variance_regimes():
    rng = np.random.default_rng(3)
    d, N = 6, 2
    X = _p0(d).sample(N, rng)
    inf = noise_draw_law(X, PROCESS, None, steps=8)
    scale = float(np.trace(inf.cov))
    assert inf.off_span[0] <= 1e-12 * scale and inf.rank == N - 1
    det = noise_draw_law(X, PROCESS, 4, steps=8, draws=6, rng=rng)  # N P = 8 > 6
    assert det.off_span[0] <= 1e-12 * scale and det.rank == N - 1
    under = noise_draw_law(X, PROCESS, 2, steps=8, draws=6, rng=rng)  # N P = 4 <= 6
    assert under.off_span[0] > 1e-3 and under.rank == d
    ridge = noise_draw_law(X, PROCESS, 4, steps=8, draws=6, rng=rng, ridge=0.01)
    assert ridge.off_span[0] > 1e-3


def test_law_is_exact_per_draw_and_mixture_moments():
    """The mixture's moments are the average of exact per-draw laws; each draw equals sampling_law of its model."""
    rng = np.random.default_rng(4)
    X = _p0(3).sample(5, rng)
    prog = build_sampler(PROCESS, "ddpm", 6, final_noise=False)
    model = noise_draw_model(X, PROCESS, prog, 4, rng=7)
    law = ld.sampling_law(model, PROCESS, "ddpm", 6, final_noise=False)
    again = ld.sampling_law(pickle.loads(pickle.dumps(model)), PROCESS, "ddpm", 6, final_noise=False)
    np.testing.assert_allclose(law.cov, again.cov, rtol=1e-12)
    mix = noise_draw_law(X, PROCESS, 4, steps=6, draws=5, rng=8, p0=_p0(3))
    np.testing.assert_allclose(mix.mean, mix.means.mean(axis=0))
    dev = mix.means - mix.mean
    np.testing.assert_allclose(mix.cov, mix.covs.mean(axis=0) + dev.T @ dev / 4, rtol=1e-12)
    assert mix.kl_data[0] > 0 and mix.w2_population[0] > 0 and mix.nearest[1] > 0
    for obj in (mix, copy.deepcopy(mix)):
        back = pickle.loads(pickle.dumps(obj))
        np.testing.assert_array_equal(back.cov, mix.cov)


@pytest.mark.parametrize("ridge", [0.0, 0.02])
def test_series_matches_the_monte_carlo_mixture(ridge):
    """cov0 + cov1/P and mean0 + mean1/P against the Monte Carlo mixture at P = 64 (remainder O(1/P^2))."""
    rng = np.random.default_rng(5)
    X = _p0(3).sample(2, rng)
    ser = noise_draw_series(X, PROCESS, steps=6, ridge=ridge)
    inf = noise_draw_law(X, PROCESS, None, steps=6, ridge=ridge)
    np.testing.assert_allclose(ser.cov0, inf.cov, atol=1e-12 * np.trace(inf.cov))
    np.testing.assert_allclose(ser.mean0, inf.mean, atol=1e-12)
    P = 64
    law = noise_draw_law(X, PROCESS, P, steps=6, draws=1500, samples=10, rng=rng, ridge=ridge)
    z = np.concatenate([((law.cov - ser.cov(P)) / law.cov_se)[np.triu_indices(3)], (law.mean - ser.mean(P)) / law.mean_se])
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size)
    assert np.max(np.abs(ser.cov1)) / P > 3 * np.max(law.cov_se)  # the 1/P term is resolved
    if ridge:
        zo = (law.off_span[0] - ser.off_span(P)) / law.off_span[1]
        assert abs(zo) < 4 and ser.off_span1 > 0
    else:
        assert abs(ser.off_span1) < 1e-9 and law.off_span[0] < 1e-12


def test_series_split_and_feed():
    X = _p0(4).sample(2, np.random.default_rng(6))
    ser = noise_draw_series(X, PROCESS, steps=8, ridge=0.01)
    assert ser.off_span1 == pytest.approx(ser.off_span1_bias + ser.off_span1_variance, rel=1e-10)
    assert np.sum(ser.feed) == pytest.approx(ser.off_span1_variance, rel=1e-8)
    assert np.all(ser.source >= -1e-15) and ser.feed[-1] == pytest.approx(ser.source[-1])
    for value in (ser, v_kernel(X, PROCESS, 20, 8), noise_draw_weight_moments(X, 0.5, 0.5)):
        for back in (pickle.loads(pickle.dumps(value)), copy.deepcopy(value)):
            assert type(back) is type(value)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ser)).cov1, ser.cov1)
    with pytest.raises(ValueError, match="single-stage"):
        noise_draw_series(X, ld.OU(), "heun", 5)


def test_v_kernel_matches_monte_carlo_and_vanishes_off_span():
    rng = np.random.default_rng(7)
    d, N, P, t = 4, 2, 200, 60
    X = _p0(d).sample(N, rng)
    for ridge in (0.0, 0.05):
        vk = v_kernel(X, PROCESS, t, P, ridge, p0=_p0(d))
        if ridge == 0:
            assert vk.off_span <= 1e-12 * vk.on_span
        else:
            assert vk.off_span > 1e-3 * vk.on_span
        # proxy eigenvalues: alpha^2/sigma^4 Cov[x0 | x_t] of the fitted Gaussian
        a, s = float(PROCESS.alpha(t)), float(PROCESS.sigma(t))
        S = ld.Gaussian.fit(X).cov
        post = S - a * a * S @ np.linalg.solve(a * a * S + s * s * np.eye(d), S)
        np.testing.assert_allclose(np.sort(vk.proxy_fit), np.sort(np.linalg.eigvalsh(post)) * a * a / s**4, atol=1e-10)
    # Monte Carlo twin of the kernel: covariance over draws of the score at x ~ N(alpha xbar, alpha^2 S + sigma^2 I)
    g = ld.Gaussian.fit(X)
    xs = ld.Gaussian(a * g.mean, a * a * g.cov + s * s * np.eye(d)).sample(400, rng)
    draws = [noise_draw_weights(X, a, s, P, 0.05, rng) for _ in range(3000)]
    scores = np.array([-(xs @ W.T + b) / s for W, b in draws])  # (draws, points, d)
    cov = np.einsum("kpi,kpj->pij", scores - scores.mean(0), scores - scores.mean(0)).mean(0) / (len(draws) - 1)
    vk = v_kernel(X, PROCESS, t, P, 0.05)
    assert np.trace(cov) == pytest.approx(np.trace(vk.kernel), rel=0.08)  # 3000 draws and an O(1/P) remainder


def test_allocation_window_and_weighting():
    prog = build_sampler(PROCESS, "ddpm", 10, final_noise=False)
    per = noise_draw_allocation(prog, 8)
    assert len(per) == 10 and all(v == (8, 1.0) for v in per.values())
    sched = noise_draw_allocation(prog, 8, "schedule")
    assert sum(s for _, s in sched.values()) == pytest.approx(10)
    win = noise_draw_allocation(prog, 8, window=(1, 50))
    assert set(win) == {t for t in per if t <= 50}
    with pytest.raises(ValueError, match="allocation"):
        noise_draw_allocation(prog, 8, "everywhere")
    with pytest.raises(ValueError, match="window"):
        noise_draw_allocation(prog, 8, window=(5, 1))
    with pytest.raises(ValueError, match="continuous time"):
        noise_draw_allocation(build_sampler(ld.OU(), "sde", 2), 8)
    # outside the window the weights are the P = infinity fit; the weighting rescales the ridge
    X = _p0(3).sample(4, np.random.default_rng(9))
    model = noise_draw_model(X, PROCESS, prog, 3, rng=1, ridge=0.2, window=(1, 50), weighting="score")
    t = max(per)
    s = float(PROCESS.sigma(t))
    W, b = model.affine(t)
    ref = ld.LinearDenoiser.fit(X, PROCESS, ridge=0.2 * s * s).affine(t)  # ridge / lambda, lambda = 1/sigma^2
    np.testing.assert_allclose(W, ref[0], rtol=1e-10)
    np.testing.assert_allclose(b, ref[1], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="weighting"):
        noise_draw_model(X, PROCESS, prog, 3, weighting="snr")


def test_bad_inputs():
    X = _p0(3).sample(4, np.random.default_rng(10))
    with pytest.raises(ValueError, match="P must be"):
        noise_draw_weights(X, 0.5, 0.5, 0)
    with pytest.raises(ValueError, match="ridge"):
        noise_draw_weights(X, 0.5, 0.5, 2, ridge=-1.0)
    with pytest.raises(ValueError, match="s must be positive"):
        noise_draw_weight_moments(X, 1.0, 0.0)
    with pytest.raises(ValueError, match="X must"):
        noise_draw_law(X[:1], PROCESS, 2, steps=5)
    with pytest.raises(ValueError, match="draws"):
        noise_draw_law(X, PROCESS, 2, steps=5, draws=0)


def test_tables_render_and_plot(tmp_path):
    tables = variance_tables(d=6, ratios=(0.5, 2.0), Ps=(1, 8), ridges=(0.0, 0.01), steps=6, draws=4, samples=50,
                             v_times=[1.0, 50.0])
    main, vk = tables["variance"], tables["v_kernel"]
    assert len(main.rows) == 2 * 2 * 3 and len(vk.rows) == 2
    for fmt in ("text", "markdown", "latex", "csv", "json"):
        assert main.render(fmt) and vk.render(fmt)
    rec = {(r["N/d"], r["ridge"], r["P"]): r for r in main.to_records()}
    assert rec[(0.5, 0.0, "inf")]["rank"] == 2 and rec[(0.5, 0.0, 8)]["off-span var"][0] < 1e-12
    assert rec[(0.5, 0.0, 1)]["off-span var"][0] > 1e-3 and rec[(0.5, 0.0, 1)]["series"] is None
    assert rec[(2.0, 0.0, 8)]["off-span var"] == 0.0  # N > d: no null space
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    from lindiff.plots import plot_variance

    assert (tmp_path / "v.png").exists() is False
    plot_variance(main, str(tmp_path / "v.png"))
    assert (tmp_path / "v.png").exists()


@pytest.mark.slow
def test_off_span_excess_falls_as_one_over_p_with_the_closed_form_coefficient():
    """With a ridge: fit excess(P) = c1/P + c2/P^2 over P = 16..512 and compare c1 with the series."""
    rng = np.random.default_rng(11)
    X = _p0(6).sample(2, rng)
    ser = noise_draw_series(X, PROCESS, steps=8, ridge=0.01)
    Ps = np.array([16, 32, 64, 128, 256, 512], float)
    ex, err = [], []
    for P in Ps:
        law = noise_draw_law(X, PROCESS, int(P), steps=8, draws=400, samples=10, rng=rng, ridge=0.01)
        ex.append(law.off_span[0] - ser.off_span0)
        err.append(law.off_span[1])
    ex, err = np.array(ex), np.array(err)
    A = np.stack([1 / Ps, 1 / Ps**2], axis=1)
    w = 1 / err**2
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    c = cov @ A.T @ (w * ex)
    assert abs(c[0] - ser.off_span1) < 4 * math.sqrt(cov[0, 0])
    slope = np.polyfit(np.log(Ps[-3:]), np.log(ex[-3:]), 1)[0]
    assert -1.3 < slope < -0.7
