r"""Test k-diffusion samplers (and their many vendored copies) against lindiff's exact output laws.

:func:`check_sampler` takes any function with k-diffusion's sampler signature
``sample_fn(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, ...)``,
runs it with a linear denoiser fitted by lindiff on the training points ``X`` and compares the law of
its output with lindiff's exact law of the matching sampler:

=============================  =========================  ==============================================
k-diffusion function           lindiff sampler            options passed through
=============================  =========================  ==============================================
``sample_euler``               ``"euler_ve"``             ``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``
``sample_euler_ancestral``     ``"euler_ancestral"``      ``eta``, ``s_noise``
``sample_heun``                ``"heun_ve"``              ``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``
``sample_dpm_2``               ``"dpm_2"``                ``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``
``sample_dpm_2_ancestral``     ``"dpm_2_ancestral"``      ``eta``, ``s_noise``
``sample_lms``                 ``"lms"``                  ``order``
``sample_dpmpp_2s_ancestral``  ``"dpmpp_2s_ancestral"``   ``eta``, ``s_noise``
``sample_dpmpp_sde``           ``"dpmpp_sde"``            ``eta``, ``s_noise``, ``r``
``sample_dpmpp_2m``            ``"dpmpp_2m"``             (``lower_order_final=False``)
``sample_dpmpp_2m_sde``        ``"dpmpp_2m_sde"``         ``eta``, ``s_noise``, ``solver_type``
``sample_dpmpp_3m_sde``        ``"dpmpp_3m_sde"``         ``eta``, ``s_noise``
=============================  =========================  ==============================================

The noise levels ``sigmas`` are lindiff times of :class:`~lindiff.SigmaVP` (``x_vp = x / sqrt(1 + sigma^2)``);
the start is ``x = sigmas[0] * z`` as in k-diffusion's own scripts, and ``.reference`` (like ``.law``) is
the law of the function's output, in its VE state.  The denoiser ``model(x, sigma)`` is lindiff's data
prediction of the fitted linear model, applied in float64 and returned in ``x``'s dtype.  Every Gaussian
draw is injected: through ``noise_sampler`` where the function takes one (so the reference assumes
independent draws per call, also for ``sample_dpmpp_sde``, whose default Brownian-tree sampler lindiff
models with ``noise="brownian"``), and by replacing ``torch.randn_like`` / ``torch.randn`` while the
function runs (``sample_euler``, ``sample_heun`` and ``sample_dpm_2`` draw the churn noise directly).

Installing.  The extra ``lindiff[kdiffusion]`` installs torch, torchsde and torchdiffeq.  The
k-diffusion package itself declares training dependencies (torchvision, clean-fid, wandb, ...) that do
not install beside every torch, and its ``__init__`` imports them all; its sampler module needs only
torch, scipy, torchsde, torchdiffeq, tqdm and one helper.  So install it without dependencies and load
the published module with :func:`load_sampling`::

    pip install 'lindiff[kdiffusion]'
    pip install --no-deps k-diffusion==0.1.1.post1

>>> kd = load_sampling()                                       # doctest: +SKIP
>>> check_sampler(kd.sample_heun, kd.get_sigmas_karras(12, 0.02, 80.0), X).passed   # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import math
import sys
import types

import numpy as np

from ..gaussian import Gaussian
from ..processes import SigmaVP
from ..samplers import _REGISTRY
from ..scores import LinearDenoiser
from ..testing.oracle import OracleResult
from ..testing.oracle import check_sampler as _check

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("lindiff.adapters.kdiffusion needs torch: pip install 'lindiff[kdiffusion]'") from exc

__all__ = ["SAMPLERS", "load_sampling", "denoiser_for", "check_sampler"]

SAMPLERS = {
    "euler": ("euler_ve", {}),
    "euler_ancestral": ("euler_ancestral", {}),
    "heun": ("heun_ve", {}),
    "dpm_2": ("dpm_2", {}),
    "dpm_2_ancestral": ("dpm_2_ancestral", {}),
    "lms": ("lms", {}),
    "dpmpp_2s_ancestral": ("dpmpp_2s_ancestral", {}),
    "dpmpp_sde": ("dpmpp_sde", {}),
    "dpmpp_2m": ("dpmpp_2m", {"lower_order_final": False}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}),
    "dpmpp_3m_sde": ("dpmpp_3m_sde", {}),
}
"""k-diffusion name (without ``sample_``) -> (lindiff sampler, fixed lindiff options)."""

_SHIM = "_lindiff_kdiffusion"
_TAKES_NOISE_SAMPLER = {"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde",
                        "dpmpp_3m_sde"}


def _append_dims(x, target_dims):
    """k_diffusion.utils.append_dims: trailing singleton dimensions up to ``target_dims``."""
    dims_to_append = target_dims - x.ndim
    if dims_to_append < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * dims_to_append]


def load_sampling(path: str | None = None) -> types.ModuleType:
    """The published ``k_diffusion/sampling.py`` as a module, without running ``k_diffusion/__init__``.

    ``path`` defaults to the installed package's file (``pip install --no-deps k-diffusion``).  The module
    is executed inside a small package whose ``utils`` holds the one helper it imports
    (``append_dims``); it needs torch, scipy, torchsde, torchdiffeq and tqdm.
    """
    if path is None:
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("k-diffusion is not installed: pip install --no-deps k-diffusion==0.1.1.post1 "
                              "(and pip install 'lindiff[kdiffusion]' for torchsde, torchdiffeq)")
        path = str(next(iter(spec.submodule_search_locations))) + "/sampling.py"
    name = f"{_SHIM}.sampling"
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__file__", None) == path:
        return cached
    pkg = types.ModuleType(_SHIM)
    pkg.__path__ = []
    utils = types.ModuleType(f"{_SHIM}.utils")
    utils.append_dims = _append_dims
    pkg.utils = utils
    sys.modules[_SHIM], sys.modules[f"{_SHIM}.utils"] = pkg, utils
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Denoiser:
    """k-diffusion's ``model(x, sigma) -> denoised`` for lindiff's linear model on ``SigmaVP``:
    ``D(x, sigma) = x0_hat(alpha(sigma) x, sigma)``, in float64, cached per noise level."""

    def __init__(self, model: LinearDenoiser):
        self.model = model
        self.cache: dict = {}

    def weights(self, sigma: float):
        hit = self.cache.get(sigma)
        if hit is None:
            if len(self.cache) > 64:
                self.cache.clear()
            process = self.model.process
            a = float(process.alpha(sigma))
            d = self.model.dim
            F = self.model.x0(np.eye(d) * a, sigma)  # rows: x0_hat(a e_j) = f0 + a F e_j
            f0 = self.model.x0(np.zeros(d), sigma)
            hit = (torch.from_numpy(np.ascontiguousarray((F - f0).T)), torch.from_numpy(f0))
            self.cache[sigma] = hit
        return hit

    def __call__(self, x, sigma, **kwargs):
        s = torch.as_tensor(sigma).reshape(-1)
        value = float(s[0].double())
        if not torch.all(s == s[0]):
            raise ValueError("the denoiser expects one noise level per call (as k-diffusion's samplers use)")
        A, b = self.weights(value)
        flat = x.reshape(x.shape[0], -1).double()
        return (flat @ A.T + b).reshape(x.shape).to(x.dtype)


def denoiser_for(model: LinearDenoiser) -> _Denoiser:
    """k-diffusion's denoiser ``model(x, sigma) -> denoised`` for a lindiff linear model on ``SigmaVP``."""
    if not isinstance(model.process, SigmaVP):
        raise ValueError("the model must be fitted on a SigmaVP process (k-diffusion's sigmas are its times)")
    return _Denoiser(model)


@contextlib.contextmanager
def _patched_randn(noise, dtype):
    orig_like, orig_randn = torch.randn_like, torch.randn

    def randn_like(x, *args, **kwargs):
        return torch.as_tensor(np.asarray(noise(tuple(x.shape))), dtype=kwargs.get("dtype") or x.dtype)

    def randn(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
        return torch.as_tensor(np.asarray(noise(shape)), dtype=kwargs.get("dtype") or dtype)

    torch.randn_like, torch.randn = randn_like, randn
    try:
        yield
    finally:
        torch.randn_like, torch.randn = orig_like, orig_randn


def _recognise(sample_fn, sampler: str | None) -> str:
    name = sampler if sampler is not None else getattr(sample_fn, "__name__", "")
    name = name[len("sample_"):] if name.startswith("sample_") else name
    if name not in SAMPLERS:
        raise ValueError(f"cannot tell which k-diffusion sampler {getattr(sample_fn, '__name__', sample_fn)!r} is; pass "
                         f"sampler= one of {', '.join(SAMPLERS)}")
    return name


def check_sampler(sample_fn, sigmas, X, *, mode: str = "exact", sampler: str | None = None, ridge: float = 0.0,
                  dtype=torch.float64, tolerance: float | None = None, n: int = 20_000, rng=None,
                  false_alarm: float = 1e-3, **extra_args) -> OracleResult:
    """Compare a k-diffusion-style sampler with lindiff's exact law (see the module docstring).

    Parameters
    ----------
    sample_fn : callable with k-diffusion's sampler signature
    sigmas : decreasing noise levels (torch tensor or array), usually ending at 0
    X : (N, d) training points of the linear denoiser (``LinearDenoiser.fit(X, SigmaVP(...), ridge)``)
    mode : ``"exact"`` (probing, deterministic) or ``"statistical"`` (Monte Carlo); see
        :func:`lindiff.testing.check_sampler`
    sampler : the k-diffusion name when ``sample_fn.__name__`` does not say it (e.g. ``"heun"``)
    dtype : torch dtype of ``x`` and ``sigmas`` in the run.  In exact mode float64 is held to 1e-10; a
        float32 run is first checked in float64 on the same (float32-rounded) noise levels, then its own
        law must agree within 4x its measured round-off (the float32 - float64 discrepancy)
    **extra_args : keyword arguments of ``sample_fn`` (``s_churn``, ``eta``, ``order``, ``solver_type``, ...),
        passed to it and to the matching lindiff sampler

    Returns
    -------
    OracleResult
        ``.reference`` is lindiff's exact law of the output (VE state, as ``sample_fn`` returns it).
    """
    name = _recognise(sample_fn, sampler)
    lindiff_name, fixed = SAMPLERS[name]
    accepted = set(_REGISTRY[lindiff_name].options) - set(fixed) - {"churn_at", "noise"}
    unknown = [k for k in extra_args if k not in accepted]
    if unknown:
        raise TypeError(f"check_sampler() got an unexpected keyword argument {unknown[0]!r} for sample_{name} "
                        f"(it accepts: {', '.join(sorted(accepted)) or 'none'})")
    np_dtype = {torch.float64: np.float64, torch.float32: np.float32}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    sig_t = torch.as_tensor(sigmas).to(dtype)
    grid = sig_t.double().numpy()  # the run's own (possibly float32-rounded) noise levels
    if grid.ndim != 1 or grid.size < 2 or np.any(np.diff(grid) >= 0) or grid[-1] < 0:
        raise ValueError("sigmas must be a 1-D decreasing sequence of noise levels >= 0 (at least two)")
    X = np.asarray(X, dtype=np.float64)
    # churn raises the noise level by at most sqrt(2): the process must reach it
    process = SigmaVP(float(grid[0]) * math.sqrt(2.0))
    model = LinearDenoiser.fit(X, process, ridge=ridge)
    d = model.dim
    s0 = float(grid[0])
    a0, a_end = float(process.alpha(s0)), float(process.alpha(grid[-1]))
    init = Gaussian.from_spectrum(np.full(d, float(process.sigma(s0)) ** 2))  # x = sigmas[0] z, in the VP state
    denoiser = denoiser_for(model)
    params = inspect.signature(sample_fn).parameters
    # wrappers with **kwargs get noise_sampler when the sampler they name takes one in k-diffusion
    takes_noise = "noise_sampler" in params or (name in _TAKES_NOISE_SAMPLER and any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()))

    def run(x_T, _eps_model, noise):
        x = torch.as_tensor(np.asarray(x_T) / a0, dtype=dtype)
        kwargs = dict(extra_args)
        if takes_noise:
            kwargs["noise_sampler"] = lambda sigma, sigma_next: torch.as_tensor(np.asarray(noise(tuple(x.shape))), dtype=dtype)
        with _patched_randn(noise, dtype), torch.no_grad():
            out = sample_fn(denoiser, x, sig_t, extra_args=None, callback=None, disable=True, **kwargs)
        return out.double().numpy() * a_end

    options = dict(fixed, **extra_args)
    measured = None
    if mode == "exact" and tolerance is None and dtype != torch.float64:
        # Round-off of this very loop, measured: the same function on the same float32-rounded noise levels
        # in float64.  A wrong coefficient shows in both runs; a correct float32 loop differs from the exact
        # law by its round-off only, so 4x the measured discrepancy (at least 1e-10) is the tolerance.
        exact64 = check_sampler(sample_fn, grid, X, mode="exact", sampler=name, ridge=ridge, dtype=torch.float64,
                                **extra_args)
        if not exact64.passed:
            return dataclasses.replace(exact64, message=exact64.message + " (float64 run of the same loop; "
                                       f"the {dtype} run is not needed to reject it)")
        # probe the float32 run (the oracle's default affinity check for float32), then judge its errors
        result = _check(run, model, lindiff_name, init=init, mode=mode, dtype=np_dtype, grid=grid, **options)
        if result.law is not None:
            law64 = exact64.details["probe"].law(init)
            law32 = result.details["probe"].law(init)
            c_scale = max(float(np.linalg.norm(law64.cov)), 1e-300)
            m_scale = float(np.linalg.norm(law64.mean)) + math.sqrt(float(np.trace(law64.cov))) + 1e-300
            measured = max(float(np.linalg.norm(law32.cov - law64.cov)) / c_scale,
                           float(np.linalg.norm(law32.mean - law64.mean)) / m_scale)
            tol = max(4.0 * measured, 1e-10)
            passed = result.cov_error <= tol and result.mean_error <= tol
            msg = (f"{'PASS' if passed else 'FAIL'} exact: mean error {result.mean_error:.3g}, covariance error "
                   f"{result.cov_error:.3g} (tolerance {tol:.3g} = 4 x the measured {dtype} round-off {measured:.2g} of "
                   f"this loop; its float64 run passed at 1e-10)")
            result = dataclasses.replace(result, passed=passed, tolerance=tol, message=msg)
    else:
        result = _check(run, model, lindiff_name, init=init, mode=mode, dtype=np_dtype, tolerance=tolerance, n=n,
                        rng=rng, false_alarm=false_alarm, grid=grid, **options)
    scale = 1.0 / a_end

    def ve(law):
        if law is None or scale == 1.0:
            return law
        return Gaussian(law.mean * scale, law.cov * scale * scale)

    details = dict(result.details, sampler=f"sample_{name}", lindiff_sampler=lindiff_name, options=options)
    return dataclasses.replace(result, reference=ve(result.reference), law=ve(result.law), details=details)
