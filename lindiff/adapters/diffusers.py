r"""Test diffusers' schedulers against lindiff's exact output laws (extra ``lindiff[diffusers]``).

:func:`check_scheduler` runs a diffusers scheduler in the standard pipeline loop
(``latents = x_T * init_noise_sigma``; ``scale_model_input``; ``step``) with a linear eps-model built from
lindiff, and compares the law of its output with lindiff's exact law of the matching sampler:

=================================  ==========================  ======================================
diffusers scheduler                lindiff process             lindiff sampler
=================================  ==========================  ======================================
``DDPMScheduler`` (fixed_small)    ``DDPM`` from its table     ``"ddpm"``, ``variance="beta_tilde"``
``DDPMScheduler`` (fixed_large)    ``DDPM`` from its table     ``"ddpm"``, ``variance="beta"``
``DDIMScheduler`` (eta)            ``DDPM`` from its table     ``"ddim"`` with ``eta``
``EulerDiscreteScheduler``         ``SigmaVP``                 ``"euler_ve"`` on ``scheduler.sigmas``
``EulerAncestralDiscreteScheduler````SigmaVP``                 ``"euler_ancestral"``
``DPMSolverMultistepScheduler``    ``SigmaVP``                 ``"dpmpp_2m"`` (augmented state)
=================================  ==========================  ======================================

lindiff reads the scheduler's own float32 tables (``alphas_cumprod``, ``sigmas``, ``timesteps``) and
computes in float64 from them, so schedule rounding is not mixed into the check; the exact-mode
tolerance is that of float32 arithmetic.  Noise is injected by replacing the scheduler module's
``randn_tensor`` during the loop, so even schedulers without a ``variance_noise`` argument are probed
exactly.  lindiff's reference uses the *next entry of* ``scheduler.timesteps`` as the previous timestep
(the DDPM/DDIM definition); a scheduler that steps elsewhere is reported as a discrepancy.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass

import numpy as np

from ..gaussian import Gaussian
from ..processes import DDPM, SigmaVP
from ..scores import LinearDenoiser
from ..testing.oracle import OracleResult, check_sampler

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("lindiff.adapters.diffusers needs torch and diffusers: pip install 'lindiff[diffusers]'") from exc

__all__ = ["SUPPORTED", "Reference", "reference_for", "eps_model_for", "run_pipeline_loop", "check_scheduler"]

SUPPORTED = ("DDPMScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
             "DPMSolverMultistepScheduler")


@dataclass(frozen=True)
class Reference:
    """What lindiff compares a configured scheduler with."""

    process: object
    sampler: str
    options: dict
    init: Gaussian | str
    latent_scale: float  # latents = x_T (VP) * latent_scale


def _name(scheduler) -> str:
    name = type(scheduler).__name__
    if name not in SUPPORTED:
        raise ValueError(f"scheduler must be one of {SUPPORTED}, got {name}")
    for key, bad in (("clip_sample", True), ("thresholding", True)):
        if getattr(scheduler.config, key, False) == bad:
            raise ValueError(f"{name} has {key}=True, which is not affine; configure {key}=False "
                             "(or use mode='statistical' on a nonlinear loop)")
    if getattr(scheduler.config, "prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"{name} must use prediction_type='epsilon' (the linear eps-model)")
    return name


def _ddpm_process(scheduler) -> DDPM:
    acp = scheduler.alphas_cumprod.double().numpy()  # the scheduler's own float32 table, widened
    prev = np.concatenate([[1.0], acp[:-1]])
    return DDPM(1.0 - acp / prev)


def reference_for(scheduler, d: int, eta: float = 0.0) -> Reference:
    """The lindiff process, sampler and options matching a scheduler on which ``set_timesteps`` was called."""
    name = _name(scheduler)
    if name in ("DDPMScheduler", "DDIMScheduler"):
        process = _ddpm_process(scheduler)
        ts = scheduler.timesteps.numpy().astype(np.int64) + 1
        if name == "DDPMScheduler":
            vt = scheduler.config.variance_type
            variance = {"fixed_small": "beta_tilde", "fixed_small_log": "beta_tilde", "fixed_large": "beta",
                        "fixed_large_log": "beta"}.get(vt)
            if variance is None:
                raise ValueError(f"variance_type {vt!r} depends on the model output (not affine)")
            # diffusers adds noise whenever the timestep value is > 0 (also on a last step above 0)
            opts = {"timesteps": ts, "variance": variance, "final_noise": bool(ts[-1] > 1)}
            return Reference(process, "ddpm", opts, "standard", 1.0)
        if not getattr(scheduler.config, "set_alpha_to_one", True):
            raise ValueError("DDIMScheduler(set_alpha_to_one=False) ends at alpha_bar_0, not 1; not supported")
        return Reference(process, "ddim", {"timesteps": ts, "eta": float(eta)}, "standard", 1.0)
    sigmas = scheduler.sigmas.double().numpy()
    process = SigmaVP(float(sigmas.max()))
    sampler = {"EulerDiscreteScheduler": "euler_ve", "EulerAncestralDiscreteScheduler": "euler_ancestral",
               "DPMSolverMultistepScheduler": "dpmpp_2m"}[name]
    opts: dict = {"grid": sigmas}
    if name == "DPMSolverMultistepScheduler":
        cfg = scheduler.config
        if cfg.algorithm_type != "dpmsolver++" or cfg.solver_order != 2 or cfg.solver_type != "midpoint":
            raise ValueError("DPMSolverMultistepScheduler is supported with algorithm_type='dpmsolver++', "
                             "solver_order=2, solver_type='midpoint' (the defaults)")
        opts["lower_order_final"] = bool(cfg.lower_order_final)
        if getattr(cfg, "euler_at_final", False):
            raise ValueError("euler_at_final=True is not supported")
        return Reference(process, sampler, opts, "standard", 1.0)
    s_max = float(sigmas.max())
    latent = float(scheduler.init_noise_sigma)
    # diffusers draws latents ~ N(0, init_noise_sigma^2) in the VE state x_ve = x_vp sqrt(1 + s_max^2)
    c2 = latent**2 / (1 + s_max**2)
    init = Gaussian.from_spectrum(np.full(d, c2))
    return Reference(process, sampler, opts, init, float(np.sqrt(1 + s_max**2)))


def eps_model_for(model: LinearDenoiser, scheduler):
    """A torch eps-model ``(sample, timestep) -> eps`` that evaluates lindiff's linear model at the noise
    level the scheduler associates with ``timestep``; float64 inside, the sample's dtype outside."""
    name = _name(scheduler)
    sigma_based = name not in ("DDPMScheduler", "DDIMScheduler")
    cache: dict = {}

    def eps(sample, timestep):
        t = float(timestep)
        if sigma_based:
            ts = scheduler.timesteps.double().numpy()
            idx = int(np.argmin(np.abs(ts - t)))
            key = float(scheduler.sigmas[idx].double())
        else:
            key = int(round(t)) + 1
        if key not in cache:
            cache.clear()
            W, b = model.affine(key)
            cache[key] = (torch.from_numpy(W), torch.from_numpy(b))
        W, b = cache[key]
        x = sample.reshape(sample.shape[0], -1).double()
        out = x @ W.T + b
        return out.reshape(sample.shape).to(sample.dtype)

    return eps


@contextlib.contextmanager
def _patched_noise(scheduler, noise):
    module = importlib.import_module(type(scheduler).__module__)
    original = getattr(module, "randn_tensor", None)
    if original is None:  # pragma: no cover - diffusers layout changed
        raise RuntimeError(f"{module.__name__} has no randn_tensor to patch")

    def fake(shape, generator=None, device=None, dtype=None, layout=None):
        arr = noise(tuple(shape))
        return torch.as_tensor(np.asarray(arr), dtype=dtype or torch.float32)

    module.randn_tensor = fake
    try:
        yield
    finally:
        module.randn_tensor = original


def run_pipeline_loop(scheduler, num_inference_steps: int, eps_model, x_T: np.ndarray, noise, latent_scale: float,
                      **step_kwargs) -> np.ndarray:
    """The diffusers pipeline loop on a batch ``x_T`` (VP state); every Gaussian draw comes from ``noise``."""
    scheduler.set_timesteps(num_inference_steps)
    latents = torch.as_tensor(np.asarray(x_T) * latent_scale, dtype=torch.float32)
    with _patched_noise(scheduler, noise), torch.no_grad():
        for t in scheduler.timesteps:
            inp = scheduler.scale_model_input(latents, t)
            out = eps_model(inp, t)
            latents = scheduler.step(out, t, latents, **step_kwargs).prev_sample
    return latents.double().numpy()


def check_scheduler(scheduler, num_inference_steps: int, X, *, eta: float | None = None, ridge: float = 0.0,
                    mode: str = "exact", tolerance: float | None = None, n: int = 20_000, rng=None,
                    false_alarm: float = 1e-3) -> OracleResult:
    """Compare a configured diffusers scheduler with lindiff's exact law (see the module docstring).

    ``X`` are the training points of the linear denoiser (fitted on the scheduler's own schedule);
    ``eta`` is passed to ``DDIMScheduler.step``.
    """
    X = np.asarray(X, dtype=np.float64)
    scheduler.set_timesteps(num_inference_steps)
    ref = reference_for(scheduler, X.shape[1], eta or 0.0)
    model = LinearDenoiser.fit(X, ref.process, ridge=ridge)
    torch_eps = eps_model_for(model, scheduler)
    kwargs = {"eta": eta} if eta is not None else {}

    def run(x_T, _eps, noise):
        return run_pipeline_loop(scheduler, num_inference_steps, torch_eps, x_T, noise, ref.latent_scale, **kwargs)

    result = check_sampler(run, model, ref.sampler, init=ref.init, mode=mode, dtype=np.float32, tolerance=tolerance,
                           n=n, rng=rng, false_alarm=false_alarm, **ref.options)
    result.details["scheduler"] = type(scheduler).__name__
    result.details["config"] = dict(scheduler.config)
    return result
