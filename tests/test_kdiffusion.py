"""k-diffusion's published samplers against lindiff's exact laws (extra ``lindiff[kdiffusion]`` plus
``pip install --no-deps k-diffusion==0.1.1.post1``; skipped with the reason when absent)."""

import numpy as np
import pytest

pytestmark = pytest.mark.extras
torch = pytest.importorskip("torch", reason="the k-diffusion adapter needs torch (pip install 'lindiff[kdiffusion]')")
pytest.importorskip("torchsde", reason="k-diffusion's sampler module imports torchsde (pip install 'lindiff[kdiffusion]')")
pytest.importorskip("torchdiffeq", reason="k-diffusion's sampler module imports torchdiffeq (pip install 'lindiff[kdiffusion]')")

from lindiff.adapters import kdiffusion as K  # noqa: E402

try:
    kd = K.load_sampling()
except ImportError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"k-diffusion is not installed ({exc}); pip install --no-deps k-diffusion==0.1.1.post1",
                allow_module_level=True)

CHURN = {"s_churn": 4.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}
CASES = [
    ("euler", {}), ("euler", CHURN), ("euler_ancestral", {}), ("euler_ancestral", {"eta": 0.5, "s_noise": 0.9}),
    ("heun", {}), ("heun", CHURN), ("dpm_2", {}), ("dpm_2", CHURN), ("dpm_2_ancestral", {}),
    ("dpm_2_ancestral", {"eta": 0.7}), ("lms", {}), ("lms", {"order": 2}), ("dpmpp_2s_ancestral", {}),
    ("dpmpp_sde", {}), ("dpmpp_sde", {"eta": 0.5, "r": 0.3}), ("dpmpp_2m", {}),
    ("dpmpp_2m_sde", {}), ("dpmpp_2m_sde", {"solver_type": "heun"}), ("dpmpp_2m_sde", {"eta": 0.0}),
    ("dpmpp_3m_sde", {}), ("dpmpp_3m_sde", {"eta": 0.5, "s_noise": 1.1}),
]


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(7)
    return rng.standard_normal((6, 3)) * [2.0, 1.0, 0.3] + [1.0, 0.0, -0.5]


@pytest.mark.parametrize("name,opts", CASES, ids=[f"{n}-{o}" for n, o in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_published_samplers_pass_in_exact_mode(X, name, opts, dtype):
    sigmas = kd.get_sigmas_karras(12, 0.02, 80.0).to(dtype)
    res = K.check_sampler(getattr(kd, f"sample_{name}"), sigmas, X, dtype=dtype, **opts)
    assert res.passed, res.message
    if dtype == torch.float64:
        assert res.cov_error < 1e-12 and res.mean_error < 1e-12


def test_grids_ending_above_zero_and_exponential_schedules(X):
    for sigmas in (kd.get_sigmas_exponential(10, 0.1, 20.0)[:-1], kd.get_sigmas_polyexponential(9, 0.05, 40.0, rho=2.0)):
        for name in ("heun", "dpmpp_2m", "dpmpp_3m_sde", "lms"):
            res = K.check_sampler(getattr(kd, f"sample_{name}"), sigmas.double(), X)
            assert res.passed, (name, res.message)
    # the reference is the law of the function's output in its VE state
    sigmas = kd.get_sigmas_exponential(6, 0.5, 10.0)[:-1].double()
    res = K.check_sampler(kd.sample_euler, sigmas, X)
    np.testing.assert_allclose(res.law.cov, res.reference.cov, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("index", [0, 5, 11])
def test_a_shifted_sigma_in_heun_fails(X, index):
    sigmas = kd.get_sigmas_karras(12, 0.02, 80.0).double()

    def mutated(model, x, sig, **kw):
        s = sig.clone()
        s[index] = s[index] * 1.001  # one noise level 0.1 % off, the reference keeps the original
        return kd.sample_heun(model, x, s, **kw)

    for dtype in (torch.float64, torch.float32):
        res = K.check_sampler(mutated, sigmas, X, sampler="heun", dtype=dtype)
        assert not res.passed, res.message


@pytest.mark.parametrize("mutation", ["ancestral_eta", "lms_order", "dpmpp_2m_r", "3m_phi3"])
def test_coefficient_mutations_fail(X, mutation):
    sigmas = kd.get_sigmas_karras(10, 0.02, 80.0).double()
    if mutation == "ancestral_eta":  # the sampler runs eta = 0.99 while it claims eta = 1
        fn, name, kw = (lambda m, x, s, **k: kd.sample_euler_ancestral(m, x, s, **dict(k, eta=0.99))), "euler_ancestral", {}
    elif mutation == "lms_order":  # order 3 run, order 4 claimed
        fn, name, kw = (lambda m, x, s, **k: kd.sample_lms(m, x, s, **dict(k, order=3))), "lms", {}
    elif mutation == "dpmpp_2m_r":  # the second-order correction of one step scaled by 1.01 via a perturbed denoiser
        calls = {"n": 0}

        def fn(m, x, s, **k):
            def m2(x_, sig, **kk):
                calls["n"] += 1
                out = m(x_, sig, **kk)
                return out * 1.01 if calls["n"] % 10 == 5 else out

            return kd.sample_dpmpp_2m(m2, x, s, **k)

        name, kw = "dpmpp_2m", {}
    else:  # the 3M SDE run with eta = 0.5 while eta = 0.55 is claimed
        fn, name, kw = (lambda m, x, s, **k: kd.sample_dpmpp_3m_sde(m, x, s, **dict(k, eta=0.5))), "dpmpp_3m_sde", {"eta": 0.55}
    res = K.check_sampler(fn, sigmas, X, sampler=name, **kw)
    assert not res.passed, res.message


def test_statistical_mode_and_argument_errors(X):
    sigmas = kd.get_sigmas_karras(8, 0.05, 20.0).double()
    res = K.check_sampler(kd.sample_dpmpp_2m_sde, sigmas, X, mode="statistical", n=4000, rng=1)
    assert res.passed, res.message
    with pytest.raises(ValueError, match="cannot tell"):
        K.check_sampler(lambda model, x, sigmas, **kw: x, sigmas, X)
    with pytest.raises(TypeError, match="unexpected keyword argument 'order'"):
        K.check_sampler(kd.sample_heun, sigmas, X, order=2)
    with pytest.raises(ValueError, match="decreasing"):
        K.check_sampler(kd.sample_heun, sigmas.flip(0), X)
    with pytest.raises(ValueError, match="SigmaVP"):
        K.denoiser_for(__import__("lindiff").LinearDenoiser.fit(X, __import__("lindiff").VP.linear()))


def test_denoiser_is_lindiffs_data_prediction(X):
    import lindiff as ld

    process = ld.SigmaVP(80.0)
    model = ld.LinearDenoiser.fit(X, process)
    D = K.denoiser_for(model)
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((4, 3)) * 3.0)
    out = D(x, torch.full((4,), 2.5, dtype=torch.float64)).numpy()
    a = float(process.alpha(2.5))
    np.testing.assert_allclose(out, model.x0(a * x.numpy(), 2.5), rtol=1e-12, atol=1e-12)
