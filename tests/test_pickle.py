"""Every public value type round-trips through pickle and deepcopy, equal afterwards and behaving the same.

Process pools and Dask move values between interpreters by pickling them, so this is what makes
``--workers N`` and ``Client.get_executor()`` work.
"""

import copy
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lindiff as ld
from lindiff import mc, rmt, sgd, stability, variance
from lindiff.testing import probe_affine, strategies as lst
from lindiff.testing.oracle import check_sampler
from structural import same

ROUND_TRIPS = {"pickle": lambda v: pickle.loads(pickle.dumps(v)), "deepcopy": copy.deepcopy}


def _round_trip_equal(value):
    for how, trip in ROUND_TRIPS.items():
        back = trip(value)
        assert same(value, back), f"{type(value).__name__} changed through {how}"
    return back


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_gaussians_and_laws_round_trip(data):
    g = data.draw(lst.gaussians(singular=data.draw(st.booleans())))
    back = _round_trip_equal(g)
    assert back.mean.flags.writeable is False and back.cov.flags.writeable is False
    assert ld.kl(g, back) == 0.0 and ld.w2(g, back) == 0.0
    process = data.draw(lst.processes())
    back_process = _round_trip_equal(process)
    t = process.T / 2 if not process.discrete else process.T // 2
    assert np.array_equal(process.alpha(t), back_process.alpha(t))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_models_programs_and_laws_round_trip(data):
    process = data.draw(lst.processes())
    p0, X, model = data.draw(lst.linear_denoisers(process=process))
    config = data.draw(lst.sampler_configs(process, model))  # with the model: only configurations with a law
    prog = ld.build_sampler(process, **config)
    law = ld.sampling_law(model, process, **config)
    for value in (model, ld.GaussianScore(p0, process), ld.EmpiricalScore(X, process), prog, law):
        _round_trip_equal(value)
    back_model, back_law = pickle.loads(pickle.dumps((model, law)))
    t = process.T if process.discrete else 0.5 * process.T
    for a, b in zip(model.affine(t), back_model.affine(t)):
        assert np.array_equal(a, b)
    assert np.array_equal(ld.sampling_law(back_model, back_model.process, **config).cov, law.cov)


def _results():
    rng = np.random.default_rng(1)
    p0 = ld.Gaussian.from_spectrum([1.0, 0.5, 0.25])
    process = ld.DDPM.linear(50)
    X = p0.sample(5, rng)
    model = ld.LinearDenoiser.fit(X, process)
    sweep = ld.transition_sweep(d=3, ratios=[0.7, 2.0], repeats=2, process=process, progress=False)
    yield "TransitionResult", sweep
    yield "Table", ld.transition_table(sweep)
    yield "StabilityResult", ld.score_stability(X, ld.OU(3.0), p0, times=[0.5, 1.0], draws=2, rng=0)
    yield "ReplaceOneScores", stability.replace_one_scores(X, 0, p0.sample(1, rng)[0], process, 10)
    yield "Estimate", mc.dsm_loss(model, X, 10, n=100, rng=0)
    yield "Infinite", ld.kl(p0, ld.sampling_law(model, process, "ddpm"))
    yield "MarchenkoPastur", rmt.MarchenkoPastur(0.5)
    yield "Silverstein", rmt.Silverstein(np.array([1.0, 0.5]), 0.5)
    yield "SGDConfig", sgd.SGDConfig(lr=0.1, batch=2)
    yield "LinearDenoiser.fit_noise_draws", ld.LinearDenoiser.fit_noise_draws(X, process, 2, rng=0)
    yield "LinearDenoiser.to_dense", model.to_dense()
    yield "AffineProbe", probe_affine(lambda x, z: 2 * x + 1 + 0.5 * z, 2, noise_dim=2)
    yield "OracleResult", check_sampler(lambda x, eps, noise: x, ld.GaussianScore(p0, process), "ddim", 2)
    yield "Tables", ld.Tables({"a": ld.transition_table(sweep), "b": ld.sampler_table(process, "ddim", 3)})
    yield "BoundEstimate", stability.bound_estimate(np.array([1.0, 2.0, 1.5]), np.array([0.5, 0.7, 0.6]),
                                                    np.array([0.9, 1.1, 1.0]))
    yield "NoiseDrawLaw", variance.noise_draw_law(X, process, 3, steps=4, draws=2, samples=10, rng=0)
    yield "NoiseDrawSeries", variance.noise_draw_series(X, process, steps=4)
    yield "NoiseDrawWeightMoments", variance.noise_draw_weight_moments(X, 0.8, 0.6)
    yield "VKernel", variance.v_kernel(X, process, 10, 3, p0=p0)
    field = ld.Gaussian.stationary(ld.spectra.power_law_grid((4, 3), 2.0), 0.5)
    images = field.sample(3, rng)
    yield "Gaussian.stationary", field
    yield "GaussianScore(stationary)", ld.GaussianScore(field, process)
    yield "LinearDenoiser.fit_convolutional", ld.LinearDenoiser.fit_convolutional(images, process, (4, 3), ridge=0.1)
    local = ld.LinearDenoiser.fit_convolutional(images, process, (4, 3), kernel_size=3, train_time=2.0)
    yield "LinearDenoiser.fit_convolutional(kernel_size=3)", local
    yield "sampling_law(stationary)", ld.sampling_law(local, process, "ddim", 5)
    yield "TransitionResult(conv)", ld.transition_sweep(grid=(3, 2), model="conv:1", ratios=[1.0], repeats=2,
                                                        process=process, progress=False)


@pytest.mark.parametrize("name,value", list(_results()), ids=[n for n, _ in _results()])
def test_results_round_trip(name, value):
    _round_trip_equal(value)


def test_process_pool_gives_the_serial_result():
    from concurrent.futures import ProcessPoolExecutor

    kwargs = dict(d=4, ratios=[0.75, 2.0], repeats=3, seed=7, progress=False)
    serial = ld.transition_sweep(**kwargs)
    with ProcessPoolExecutor(max_workers=2) as pool:
        parallel = ld.transition_sweep(executor=pool, **kwargs)
    assert same(serial, parallel)


def test_stationary_values_keep_their_shared_basis_through_pickling():
    """Fields and models on one grid share one basis object (the O(d) paths need it), also after a round trip."""
    field = ld.Gaussian.stationary(ld.spectra.power_law_grid((5, 4)))
    model = ld.LinearDenoiser.fit_convolutional(field.sample(3, 0), ld.DDPM.linear(20), (5, 4), kernel_size=3)
    for trip in ROUND_TRIPS.values():
        back_field, back_model = trip((field, model))
        assert back_field.eigenvectors is field.eigenvectors is back_model.spectral.basis
        law = ld.sampling_law(back_model, back_model.process, "ddim", 4)
        assert law.shares_basis_with(field) and ld.kl(law, back_field) == ld.kl(law, field)
