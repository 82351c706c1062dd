r"""Test diffusers' schedulers against lindiff's exact output laws (extra ``lindiff[diffusers]``).

:func:`check_scheduler` runs a diffusers scheduler in the standard pipeline loop
(``latents = x_T * init_noise_sigma``; ``scale_model_input``; ``step``) with a linear model built from
lindiff (its output in the scheduler's ``prediction_type``: ``epsilon``, ``v_prediction`` or
``sample``), and compares the law of its output with lindiff's exact law of the matching sampler:

====================================  =========================  ==================================================
diffusers scheduler                   lindiff process            lindiff sampler (options from the configuration)
====================================  =========================  ==================================================
``DDPMScheduler``                     ``DDPM`` from its table    ``"ddpm"``: fixed_small(_log) -> ``beta_tilde``,
                                                                 fixed_large -> ``beta``
``DDIMScheduler`` (``eta``)           ``DDPM`` from its table    ``"ddim"``
``PNDMScheduler``                     ``DDPM`` from its table    ``"pndm"``: ``warmup="prk"``, or ``"heun"`` with
                                                                 ``skip_prk_steps``; ends at alpha_bar_0 unless
                                                                 ``set_alpha_to_one``
``LCMScheduler``                      ``DDPM`` from its table    ``"lcm"`` (``timestep_scaling``)
``TCDScheduler`` (``eta`` = gamma)    ``DDPM`` from its table    ``"tcd"``
``EulerDiscreteScheduler``            ``SigmaVP`` (sigmas)       ``"euler_ve"``; ``s_churn`` etc. of ``step`` ->
                                                                 churn with ``churn_at="start"``
``EulerAncestralDiscreteScheduler``   ``SigmaVP``                ``"euler_ancestral"``
``HeunDiscreteScheduler``             ``SigmaVP``                ``"heun_ve"`` (Karras Alg. 1, VE state)
``KDPM2DiscreteScheduler``            ``SigmaVP``                ``"dpm_2"``
``KDPM2AncestralDiscreteScheduler``   ``SigmaVP``                ``"dpm_2_ancestral"``
``LMSDiscreteScheduler``              ``SigmaVP``                ``"lms"`` (``order`` of ``step``)
``DPMSolverSDEScheduler``             ``SigmaVP``                ``"dpmpp_sde"``, ``noise="brownian"`` (the
                                                                 Brownian-tree increments are injected)
``DPMSolverMultistepScheduler``       ``SigmaVP``, VP latents    ``"dpmsolver_multistep"`` (order 1-3, all four
                                                                 algorithm types, midpoint/heun,
                                                                 lower_order_final, euler_at_final)
``DPMSolverSinglestepScheduler``      ``SigmaVP``, VP latents    ``"dpmsolver_singlestep"`` (diffusers' order list)
``DEISMultistepScheduler``            ``SigmaVP``, VP latents    ``"deis"`` (logrho)
``UniPCMultistepScheduler``           ``SigmaVP``, VP latents    ``"unipc"`` (bh1/bh2, data or noise predictions,
                                                                 ``disable_corrector``)
``EDMEulerScheduler``                 ``SigmaVP`` (EDM sigmas)   ``"euler_ve"`` through the EDM preconditioning
``EDMDPMSolverMultistepScheduler``    ``SigmaVP``                ``"dpmpp_2m"`` through the EDM preconditioning
====================================  =========================  ==================================================

Every option of the schedulers above is supported where the step stays affine: prediction types
``epsilon``, ``v_prediction``, ``sample`` (where diffusers implements them), ``beta_schedule`` linear /
scaled_linear / squaredcos_cap_v2, ``timestep_spacing`` leading / trailing / linspace and
``steps_offset``, ``use_karras_sigmas`` / ``use_exponential_sigmas`` / ``use_beta_sigmas``,
``final_sigmas_type``, and ``rescale_betas_zero_snr`` where the table keeps alpha_bar_T > 0 (Euler's
2^-24); a DDPM/DDIM table that reaches alpha_bar_T = 0 is refused (the first step has no affine
reference).  :func:`conformance` runs the whole grid (``lindiff oracle diffusers``);
:func:`lindiff.testing.search_configs` searches for failing configurations.

How the check is made
---------------------
* **Precision.**  By default (``precision="float64"``) the scheduler runs on float64 latents with its
  float32 tables widened to float64, its internal ``.to(torch.float32)`` up-casts redirected to float64
  (the scheduler's module sees a ``torch`` whose ``float32`` is ``float64``) and torch's default dtype
  set to float64 while it runs (integer timesteps promote to it), so the loop and
  lindiff compute from the same table values and agree to ~1e-13: long loops are judged at float64
  precision, where a single wrong coefficient (x1.1 on one variance of 1000) is 1e6 times the
  tolerance.  ``precision="float32"`` runs the loop as a pipeline does, and judges it with a tolerance
  *measured* from the same loop at two precisions: the float64 run's verdict, plus the
  float32-vs-float64 deviation (the float32 round-off of this loop, reported), which must stay below
  1% (it is 8e-6 for a 1000-step linear-beta DDPM, 5e-4 for squaredcos_cap_v2: no fixed round-off
  model serves both).
* **Schedule.**  lindiff computes the timesteps a configuration asks for (``timestep_spacing``,
  ``steps_offset``; trailing spacing in integers) and compares them with ``scheduler.timesteps``; a
  scheduler whose timesteps differ is run as it is and compared with the law of the *intended*
  schedule, so the message reports the discrepancy and its measured effect.  When they agree,
  lindiff reads the scheduler's own tables (``alphas_cumprod``, ``sigmas``) and computes in float64
  from them, so table rounding is not mixed into the check.
* **Noise.**  Every Gaussian draw is injected by replacing the scheduler module's ``randn_tensor``
  during the loop, so even schedulers without a ``variance_noise`` argument are probed exactly.
* **Model.**  The linear model is evaluated at the noise level the scheduler pairs with the timestep
  it passes (``alphas_cumprod[t]`` for integer timesteps, ``sigmas[i]`` for ``timesteps[i]``).
* **Non-affine options** (``clip_sample``, ``thresholding``, learned variances) are refused in exact
  mode with a message naming the option to switch off; ``mode="statistical"`` runs such a loop as it
  is and compares its samples with the law of the same scheduler with the option off.
* Subclasses of the supported schedulers are accepted (and checked as their base class).

Known discrepancies (diffusers 0.42.1)
--------------------------------------
Measured with this adapter in float64 (d = 3, the module's tests and ``lindiff oracle diffusers``);
each is in :data:`KNOWN_ISSUES` and written as an expected failure in the tests.

* ``DDIMScheduler`` (and ``PNDMScheduler``) with ``timestep_spacing="linspace"``, or ``"trailing"``
  with ``n`` not dividing ``T``: ``step`` goes to ``t - T // n`` instead of the next entry of
  ``timesteps`` (diffusers#11347, #12633).  DDIM linspace, 20 steps: mean error ~1-2%, covariance
  error ~1-3%; trailing, 15 steps, eta = 0.5: covariance error ~0.5%.
* ``timestep_spacing="trailing"`` on DDPM/DDIM: the float ``arange(T, 0, -T/n)`` can overshoot to
  ``n + 1`` timesteps ending at ``-1`` (27,044 of the 500,500 pairs ``n <= T <= 1000``, e.g.
  ``T = 1000, n = 61``); the extra step runs at ``alphas_cumprod[-1]``: covariance error ~100%
  (the sample is destroyed).  lindiff's trailing grid keeps diffusers' first ``n`` values.  No upstream
  report known.
* ``DDPMScheduler(variance_type="fixed_large_log")``: ``** 0.5`` of a log variance, NaN output
  (diffusers#14569).
* ``DPMSolverMultistepScheduler`` and ``DPMSolverSinglestepScheduler`` with
  ``algorithm_type="sde-dpmsolver++"`` at third order (multistep; singlestep with ``solver_type="heun"``):
  the ``D_2`` weight is ``-phi_2(-2h) - 1/2`` where the exponential integrator gives
  ``2h phi_3(-2h) = 1/2 - phi_2(-2h)`` (derivations/diffusers_samplers.py): it does not vanish as
  ``h -> 0``.  Multistep, 10 steps: covariance error 18%; singlestep heun, 9 steps: 740%.  Introduced
  with the third-order SDE branch (diffusers#9104); no report known.
* ``DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver", solver_order=3)``: no third-order
  branch, ``step`` raises ``UnboundLocalError`` (diffusers#13778, closed unmerged).
* ``DPMSolverMultistepScheduler`` with ``squaredcos_cap_v2`` and Karras / exponential / beta sigmas:
  rounded timesteps repeat (998 three times at 7 steps), ``_init_step_index`` skips a sigma and the
  last ``step`` raises ``IndexError``.  More generally, whenever the sigma-to-timestep map repeats a
  timestep with different sigmas (exponential sigmas truncate to integers: ``0`` twice at 26 steps), a
  timestep-conditioned model cannot tell the steps apart: covariance error 6e-5 at 26 steps.
* ``UniPCMultistepScheduler`` with ``final_sigmas_type="zero"`` (the default) and ``solver_type="bh1"``,
  or ``predict_x0=False``: the last step multiplies ``B(h) = -inf`` (or ``sigma_t e^h``, ``0 * inf``) by
  zero and returns NaN; the method's limit is finite (lindiff's law).  No report known.
* ``PNDMScheduler(prediction_type="v_prediction")``: PRK/PLMS combine the raw ``v`` outputs of
  different steps and convert the sum with the current step's alphas (diffusers#14816): covariance
  error 7-33%.
* ``PNDMScheduler`` pseudo Runge-Kutta with an odd step ratio ``r = T // n`` (e.g. ``n = 40``): the
  half step goes to ``t - r//2`` while the model is evaluated at ``t' + r//2``: mean error 6e-6.  With
  fewer than 3 steps ``set_timesteps`` fails (PRK), or the pseudo-Heun first step silently becomes a
  DDIM step (``skip_prk_steps``).
* ``KDPM2AncestralDiscreteScheduler`` with ``squaredcos_cap_v2`` (``sigma_max ~ 2e4``): in float32
  ``sigma_down = sqrt(s'^2 - s_up^2)`` cancels to a negative number, the interpolated sigma and
  timestep are NaN and the model is called at timestep NaN: mean error 35-57%.
* The multistep solvers' linspace spacing rounds ``linspace(0, T - 1, n + 1)``: at ``n = T`` two
  timesteps coincide (``DPMSolverMultistepScheduler`` at 1000 steps has 999 distinct timesteps), a
  zero-length step lindiff reports as ``UNDEFINED``.
* Configurations lindiff reports as ``UNDEFINED`` (no exact law): UniPC of order >= 2 on a step onto
  sigma = 0 (``lower_order_final=False``; diffusers returns NaN), and schedules that repeat their last
  sigma (Karras/exponential grids with ``final_sigmas_type="sigma_min"`` in the multistep solvers,
  which ends with a zero-length step).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import types
from dataclasses import dataclass

import numpy as np

from ..gaussian import Gaussian
from ..processes import DDPM, SigmaVP
from ..samplers import ddpm_timesteps, sampling_law
from ..scores import LinearDenoiser
from ..testing.oracle import OracleResult, check_sampler

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("lindiff.adapters.diffusers needs torch and diffusers: pip install 'lindiff[diffusers]'") from exc

__all__ = ["SUPPORTED", "PRECISIONS", "KNOWN_ISSUES", "Reference", "SchedulerCrash", "reference_for", "model_output_for",
           "eps_model_for", "known_issue", "conformance", "plot_conformance",
           "run_pipeline_loop", "check_scheduler"]

SUPPORTED = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "LCMScheduler", "TCDScheduler", "EulerDiscreteScheduler",
             "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "KDPM2DiscreteScheduler",
             "KDPM2AncestralDiscreteScheduler", "LMSDiscreteScheduler", "DPMSolverSDEScheduler",
             "DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
             "DPMSolverSinglestepScheduler", "EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")
PRECISIONS = ("float64", "float32")
_EDM = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")
_DISCRETE = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "LCMScheduler", "TCDScheduler")
_PREDICTIONS = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class Reference:
    """What lindiff compares a configured scheduler with.

    ``discrepancy`` is empty when the scheduler's timesteps are the ones its configuration asks for;
    otherwise it describes the difference and the reference uses the intended schedule.
    """

    process: object
    sampler: str
    options: dict
    init: Gaussian | str
    latent_scale: float  # latents = x_T (VP) * latent_scale
    discrepancy: str = ""
    output_scale: float = 1.0  # x_0 (VP) = output_scale * final latents (alpha at a final sigma > 0, VE latents)


# ------------------------------------------------------------------------------------------------
# which scheduler, and is it affine?
def _base_name(scheduler) -> str:
    """The supported diffusers class a scheduler is (or derives from)."""
    for cls in type(scheduler).__mro__:
        if cls.__name__ in SUPPORTED and cls.__module__.startswith("diffusers"):
            return cls.__name__
    raise ValueError(f"scheduler must be one of {SUPPORTED} (or a subclass), got {type(scheduler).__name__}")


_NON_AFFINE = (("clip_sample", "clip_sample=False"), ("thresholding", "thresholding=False"))


def _non_affine_options(scheduler) -> list[str]:
    """The configured options that make the step non-affine, each with how to switch it off."""
    cfg = scheduler.config
    found = [fix for key, fix in _NON_AFFINE if getattr(cfg, key, False)]
    vt = getattr(cfg, "variance_type", None)
    if vt in ("learned", "learned_range"):
        found.append("variance_type='fixed_small' (a learned variance depends on the model output)")
    return found


def _check_supported(scheduler, mode: str) -> str:
    name = _base_name(scheduler)
    bad = _non_affine_options(scheduler)
    if bad and mode == "exact":
        raise ValueError(f"{name} is configured with a non-affine step; set {', '.join(bad)} for the exact check, "
                         "or pass mode='statistical' to compare its samples with the law of the affine scheduler")
    pred = getattr(scheduler.config, "prediction_type", "epsilon")
    if pred not in _PREDICTIONS:
        raise ValueError(f"{name} has prediction_type={pred!r}; lindiff's model outputs {', '.join(_PREDICTIONS)}")
    return name


# ------------------------------------------------------------------------------------------------
# the schedule lindiff expects
def _ddpm_process(scheduler) -> DDPM:
    """The DDPM process whose alpha_bar table is the scheduler's (float32 values, widened): the
    per-step betas are ``-expm1(diff(log alpha_bar))`` (no cancellation for tiny betas)."""
    acp = scheduler.alphas_cumprod.double().numpy()
    if not (acp[-1] > 0):
        raise ValueError("the scheduler's alphas_cumprod reaches 0 (rescale_betas_zero_snr=True: zero terminal SNR, "
                         "beta_T = 1), which lindiff's DDPM process excludes; configure rescale_betas_zero_snr=False, or "
                         "use a sigma scheduler (EulerDiscreteScheduler keeps alpha_bar_T = 2^-24 and is supported)")
    return DDPM(-np.expm1(np.diff(np.concatenate([[0.0], np.log(acp)]))))


def _intended_timesteps(scheduler, steps: int) -> np.ndarray:
    """lindiff's 1-based timesteps for the configured spacing (trailing in integers)."""
    cfg = scheduler.config
    T = int(cfg.num_train_timesteps)
    spacing = getattr(cfg, "timestep_spacing", "leading")
    offset = int(getattr(cfg, "steps_offset", 0)) if spacing == "leading" else 0
    return ddpm_timesteps(T, steps, spacing, offset)


def _trailing_tie(scheduler, steps: int, ts: np.ndarray) -> bool:
    """diffusers' float ``arange`` rounds some exact halves of ``T (n - k)/n`` the other way; such a
    timestep is as much "trailing" as lindiff's, so it is not reported."""
    T = int(scheduler.config.num_train_timesteps)
    exact = T * (steps - np.arange(steps)) / steps
    return ts.size == steps and bool(np.all(np.abs(ts - exact) <= 0.5))


def _discrete_schedule(scheduler, steps: int) -> tuple[np.ndarray, str]:
    """(1-based timesteps to use for the reference, discrepancy message or "")."""
    if _base_name(scheduler) == "PNDMScheduler":  # its warm-up repeats timesteps; the grid is _timesteps
        actual = np.sort(np.asarray(scheduler._timesteps, dtype=np.int64))[::-1] + 1
    else:
        actual = scheduler.timesteps.numpy().astype(np.int64) + 1
    intended = _intended_timesteps(scheduler, steps)
    if np.array_equal(actual, intended):
        return actual, ""
    spacing = getattr(scheduler.config, "timestep_spacing", "leading")
    if spacing == "trailing" and _trailing_tie(scheduler, steps, actual) and np.all(np.diff(actual) < 0):
        return actual, ""
    shown = lambda a: ", ".join(str(int(v) - 1) for v in a[-4:])  # noqa: E731 - diffusers' 0-based values
    return intended, (f"schedule discrepancy: {len(actual)} timesteps ending ..., {shown(actual)} where the "
                      f"configuration (timestep_spacing={spacing!r}) asks for {len(intended)} ending ..., {shown(intended)}")


_U32 = float(np.finfo(np.float32).eps)
# diffusers computes sigma tables from the float32 alphas_cumprod in float32 / float64 and stores them
# in float32: a few float32 ulps; a schedule further off than this is not the configured one
_SIGMA_RTOL = 16 * _U32
_EULER_FAMILY = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler",
                 "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
                 "DPMSolverSDEScheduler")


def _train_sigmas(scheduler) -> np.ndarray:
    """sigma_ve of every training timestep, from the scheduler's (widened) alphas_cumprod table."""
    acp = scheduler.alphas_cumprod.double().numpy()
    return np.sqrt((1.0 - acp) / acp)


def _euler_timesteps(scheduler, steps: int) -> np.ndarray:
    """The float timesteps of diffusers' Euler-family spacing (Lin et al. 2023, Table 2): linspace
    ``linspace(0, T-1, n)``, leading ``arange(n) T//n + steps_offset``, trailing ``round(T (n-k)/n) - 1``."""
    cfg = scheduler.config
    T = int(cfg.num_train_timesteps)
    spacing = cfg.timestep_spacing
    if spacing == "linspace":
        return np.linspace(0, T - 1, steps)[::-1]
    if spacing == "leading":
        return (np.arange(steps) * (T // steps))[::-1] + float(cfg.steps_offset)
    return (ddpm_timesteps(T, steps, "trailing") - 1).astype(float)


def _sigma_option(cfg) -> str:
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        if getattr(cfg, key, False):
            return key
    return "interpolated"


def _shape_sigmas(option: str, s_max: float, s_min: float, n: int, cfg) -> np.ndarray:
    """The sigma option's law between its end points: Karras et al. (2022) eq. (5) with rho = 7,
    log-uniform (exponential), or Lee et al. (2024) beta(0.6, 0.6) quantiles."""
    s_min = float(getattr(cfg, "sigma_min", None) or s_min)
    s_max = float(getattr(cfg, "sigma_max", None) or s_max)
    ramp = np.linspace(0.0, 1.0, n)
    if option == "use_karras_sigmas":
        rho = 7.0
        return (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    if option == "use_exponential_sigmas":
        return np.exp(np.linspace(np.log(s_max), np.log(s_min), n))
    from scipy import stats

    return s_min + stats.beta.ppf(1.0 - ramp, 0.6, 0.6) * (s_max - s_min)


def _intended_sigmas(scheduler, steps: int, name: str) -> np.ndarray | None:
    """The sigma grid (with its final entry) the configuration asks for, computed in float64 from the
    scheduler's alphas_cumprod; None where lindiff does not re-derive the scheduler's spacing."""
    cfg = scheduler.config
    train = _train_sigmas(scheduler) if hasattr(scheduler, "alphas_cumprod") else None
    option = _sigma_option(cfg)
    if name in _EULER_FAMILY:
        if getattr(cfg, "interpolation_type", "linear") != "linear":
            return None
        ts = _euler_timesteps(scheduler, steps)
        base = np.interp(ts, np.arange(train.size), train)
        grid = base if option == "interpolated" else _shape_sigmas(option, base[0], base[-1], steps, cfg)
    elif name in _EDM:
        ramp = np.linspace(0.0, 1.0, steps)
        lo, hi, rho = float(cfg.sigma_min), float(cfg.sigma_max), float(cfg.rho)
        if cfg.sigma_schedule == "karras":
            grid = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        else:
            grid = np.exp(np.linspace(np.log(lo), np.log(hi), steps))[::-1]
        last = 0.0 if cfg.final_sigmas_type == "zero" else grid[-1]
        return np.concatenate([grid, [last]])
    elif name == "DPMSolverMultistepScheduler":
        if getattr(cfg, "use_lu_lambdas", False) or getattr(cfg, "use_flow_sigmas", False):
            return None
        ts = scheduler.timesteps.double().numpy()  # its own spacing (lambda clipping) is read, not re-derived
        grid = (np.interp(ts, np.arange(train.size), train) if option == "interpolated"
                else _shape_sigmas(option, train[-1], train[0], steps, cfg))
    else:
        return None
    final = getattr(cfg, "final_sigmas_type", "zero")
    return np.concatenate([grid, [0.0 if final == "zero" else train[0]]])  # train: not None on these branches


def _duplicates(scheduler) -> str:
    """A timestep the scheduler pairs with more than one noise level (repeats with one level, as in
    Heun's predictor and corrector, are by design)."""
    ts = scheduler.timesteps.double().numpy()
    sig = _model_sigmas(scheduler)
    levels: dict = {}
    for t, sg in zip(ts, sig):
        levels.setdefault(float(t), set()).add(float(sg))
    bad = {t: len(v) for t, v in levels.items() if len(v) > 1 and (max(v) - min(v)) > _SIGMA_RTOL * max(v)}
    if not bad:
        return ""
    shown = ", ".join(f"{t:g} x{c}" for t, c in sorted(bad.items()))
    return (f"duplicate timesteps ({shown} noise levels): a timestep-conditioned model evaluates a repeated "
            "timestep at one noise level (lindiff's model: the first), where the scheduler's update assumes different sigmas")


def _sigma_schedule(scheduler, steps: int, name: str) -> tuple[np.ndarray, str]:
    """(sigma grid for the reference, discrepancy message or "")."""
    actual = scheduler.sigmas.double().numpy()
    if name in _INTERLEAVED:
        actual = _first_order_grid(actual)
    intended = _intended_sigmas(scheduler, steps, name)
    dup = _duplicates(scheduler)
    ts_all = scheduler.timesteps.double().numpy()
    if np.any(~np.isfinite(ts_all)):
        bad = int(np.sum(~np.isfinite(ts_all)))
        dup = (f"{bad} non-finite timestep(s) (e.g. KDPM2-ancestral's float32 sigma_down = sqrt(s'^2 - s_up^2) "
               "cancels to a negative number at large sigma_max): the model is called with timestep NaN" +
               (f"; {dup}" if dup else ""))
    if dup:
        return (actual if intended is None or intended.shape != actual.shape else intended), dup
    if intended is None:
        return actual, ""
    if actual.shape == intended.shape:
        err = np.abs(actual - intended) / np.maximum(np.abs(intended), np.finfo(float).tiny)
        err[intended == 0] = np.abs(actual[intended == 0]) / max(float(intended.max()), 1.0)
        worst = int(np.argmax(err))
        if err[worst] <= _SIGMA_RTOL:
            return actual, ""
        return intended, (f"schedule discrepancy: sigmas[{worst}] = {actual[worst]:.7g} where the configuration "
                          f"({_sigma_option(scheduler.config)}, timestep_spacing={scheduler.config.timestep_spacing!r}) "
                          f"gives {intended[worst]:.7g} (relative {err[worst]:.2g})")
    return intended, f"schedule discrepancy: {actual.size} sigmas where the configuration gives {intended.size}"


def reference_for(scheduler, d: int, eta: float | None = None, *, mode: str = "exact",
                  step_kwargs: dict | None = None) -> Reference:
    """The lindiff process, sampler and options matching a scheduler on which ``set_timesteps`` was called.

    In ``mode="statistical"`` non-affine options (clipping, thresholding) are allowed: the reference
    is the law of the same scheduler with them switched off.
    """
    name = _check_supported(scheduler, mode)
    steps = len(scheduler.timesteps) if getattr(scheduler, "num_inference_steps", None) is None \
        else int(scheduler.num_inference_steps)
    if name in _DISCRETE:
        process = _ddpm_process(scheduler)
        ts, discrepancy = _discrete_schedule(scheduler, steps) if name not in ("LCMScheduler", "TCDScheduler") \
            else (None, "")
        if name == "DDPMScheduler":
            vt = scheduler.config.variance_type
            variance = {"fixed_small": "beta_tilde", "fixed_small_log": "beta_tilde", "fixed_large": "beta",
                        "fixed_large_log": "beta", "learned": "beta_tilde", "learned_range": "beta_tilde"}.get(vt)
            if variance is None:
                raise ValueError(f"DDPMScheduler variance_type {vt!r} is not known to lindiff")
            # diffusers adds noise whenever the timestep value is > 0 (also on a last step above 0)
            opts = {"timesteps": ts, "variance": variance, "final_noise": bool(ts[-1] > 1)}
            return Reference(process, "ddpm", opts, "standard", 1.0, discrepancy)
        if name == "PNDMScheduler":
            # PNDM ends at alpha_bar = 1 (set_alpha_to_one) or at alpha_bar_0 (lindiff step 1)
            final = 0 if scheduler.config.set_alpha_to_one else 1
            grid = np.concatenate([ts, [final]]).astype(float)
            if grid[-2] == grid[-1]:  # a last step from alpha_bar_0 to alpha_bar_0 does nothing
                grid = grid[:-1]
            warmup = "heun" if scheduler.config.skip_prk_steps else "prk"
            return Reference(process, "pndm", {"grid": grid, "warmup": warmup}, "standard", 1.0, discrepancy)
        if name in ("LCMScheduler", "TCDScheduler"):
            # the timesteps are the scheduler's own (a skipping schedule over original_inference_steps)
            ts = scheduler.timesteps.numpy().astype(np.int64) + 1
            discrepancy = ""
            if name == "LCMScheduler":
                grid = np.concatenate([ts, [0]]).astype(float)
                opts = {"grid": grid, "timestep_scaling": float(scheduler.config.timestep_scaling)}
                return Reference(process, "lcm", opts, "standard", 1.0, discrepancy)
            gamma = 0.3 if eta is None else float(eta)
            grid = np.concatenate([ts, [1]]).astype(float)  # TCD's last step ends at alpha_bar_0 (diffusers' t = 0)
            if grid[-2] == grid[-1]:
                grid = grid[:-1]
            return Reference(process, "tcd", {"grid": grid, "gamma": gamma}, "standard", 1.0, discrepancy)
        if not getattr(scheduler.config, "set_alpha_to_one", True):
            raise ValueError("DDIMScheduler(set_alpha_to_one=False) ends at alpha_bar_0, not 1; configure "
                             "set_alpha_to_one=True")
        return Reference(process, "ddim", {"timesteps": ts, "eta": float(eta or 0.0)}, "standard", 1.0, discrepancy)
    sigmas, discrepancy = _sigma_schedule(scheduler, steps, name)
    # the model is also evaluated at the scheduler's own sigmas (which may differ from the intended ones)
    process = SigmaVP(float(max(sigmas.max(), scheduler.sigmas.double().max())))
    if name in ("KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"):
        process = SigmaVP(float(max(process.sigma_max, scheduler.sigmas_interpol.double().max())))
    sampler, opts, sigmas = _SIGMA_SAMPLERS[name](scheduler.config, eta, sigmas, dict(step_kwargs or {}))
    if sampler in ("euler_ve", "euler_ancestral", "heun_ve"):
        sigmas, _ = _no_op_tail(sigmas)  # final_sigmas_type="sigma_min" repeats sigma_min: a step that does nothing
    opts = {"grid": sigmas, **opts}
    if opts.get("s_churn"):  # churn evaluates the model up to sigma_hat = sigma (1 + gamma), gamma <= sqrt(2) - 1
        process = SigmaVP(float(process.sigma_max * np.sqrt(2.0)))
    if name in _VP_LATENTS:  # latents are the VP state itself (init_noise_sigma = 1)
        return Reference(process, sampler, opts, "standard", 1.0, discrepancy)
    s_max = float(sigmas.max())
    latent = float(scheduler.init_noise_sigma)
    # diffusers draws latents ~ N(0, init_noise_sigma^2) in the VE state x_ve = x_vp sqrt(1 + s_max^2)
    c2 = latent**2 / (1 + s_max**2)
    init = Gaussian.from_spectrum(np.full(d, c2))
    # the loop ends in the VE state x/alpha: back to the process's state at the last grid sigma
    s_last = float(opts["grid"][-1])
    return Reference(process, sampler, opts, init, float(np.sqrt(1 + s_max**2)), discrepancy,
                     float(1.0 / np.sqrt(1.0 + s_last * s_last)))


def _refuse(name: str, what: str) -> None:
    raise ValueError(f"{name}: {what}")


def _no_op_tail(sigmas: np.ndarray) -> tuple[np.ndarray, bool]:
    """Drop a repeated last sigma (a step from sigma_min to sigma_min does nothing; "repeated" up to the
    float32 rounding of the two copies)."""
    if sigmas.size > 2 and abs(sigmas[-1] - sigmas[-2]) <= _SIGMA_RTOL * sigmas[-2]:
        return sigmas[:-1], True
    return sigmas, False


def _deis(cfg, eta, sigmas):
    if cfg.algorithm_type != "deis" or cfg.solver_type != "logrho":
        _refuse("DEISMultistepScheduler", "supported with algorithm_type='deis', solver_type='logrho'")
    n = sigmas.size - 1
    from .._samplers_diffusers import _multistep_orders

    orders = _multistep_orders(n, int(cfg.solver_order), bool(cfg.lower_order_final), False)
    sigmas, dropped = _no_op_tail(sigmas)
    return "deis", {"solver_order": int(cfg.solver_order), "orders": tuple(orders[: sigmas.size - 1])}, sigmas


def _singlestep(cfg, eta, sigmas):
    from .._samplers_diffusers import singlestep_orders

    n = sigmas.size - 1
    orders = singlestep_orders(n, int(cfg.solver_order), bool(cfg.lower_order_final), cfg.final_sigmas_type == "zero")
    if len(orders) != n:
        orders = None  # lindiff's builder explains why the configuration is undefined
    opts = {"solver_order": int(cfg.solver_order), "algorithm_type": cfg.algorithm_type, "solver_type": cfg.solver_type,
            "lower_order_final": bool(cfg.lower_order_final), "orders": None if orders is None else tuple(orders)}
    return "dpmsolver_singlestep", opts, sigmas


def _edm_euler(cfg, eta, sigmas):
    sigmas, _ = _no_op_tail(sigmas)
    return "euler_ve", {}, sigmas


def _edm_dpm(cfg, eta, sigmas):
    if _no_op_tail(sigmas)[1]:
        _refuse("EDMDPMSolverMultistepScheduler", "final_sigmas_type='sigma_min' repeats the last sigma (a no-op last "
                "step that shifts the solver's order schedule); configure final_sigmas_type='zero'")
    if cfg.algorithm_type != "dpmsolver++" or cfg.solver_order != 2 or cfg.solver_type != "midpoint":
        _refuse("EDMDPMSolverMultistepScheduler", "supported with algorithm_type='dpmsolver++', solver_order=2, "
                "solver_type='midpoint' (the defaults)")
    if getattr(cfg, "euler_at_final", False):
        _refuse("EDMDPMSolverMultistepScheduler", "euler_at_final=True is not supported")
    return "dpmpp_2m", {"lower_order_final": bool(cfg.lower_order_final)}, sigmas


def _dpm_multistep(cfg, eta):
    if cfg.algorithm_type not in ("dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver"):
        _refuse("DPMSolverMultistepScheduler", f"algorithm_type={cfg.algorithm_type!r} has no lindiff reference")
    opts = {"solver_order": int(cfg.solver_order), "algorithm_type": cfg.algorithm_type, "solver_type": cfg.solver_type,
            "lower_order_final": bool(cfg.lower_order_final), "euler_at_final": bool(cfg.euler_at_final),
            "final_sigmas_type": cfg.final_sigmas_type}
    return "dpmsolver_multistep", opts


_CHURN_KEYS = ("s_churn", "s_tmin", "s_tmax", "s_noise")


def _euler(cfg, eta, step_kwargs):
    opts = {k: float(step_kwargs[k]) for k in _CHURN_KEYS if k in step_kwargs}
    if opts:
        opts["churn_at"] = "start"  # diffusers evaluates the model before adding the churn noise
    return "euler_ve", opts


def _heun(cfg, eta):
    return "heun_ve", {}


def _lms(cfg, eta, step_kwargs):
    return "lms", {"order": int(step_kwargs.get("order", 4))}


def _dpmsolver_sde(cfg, eta, step_kwargs):
    return "dpmpp_sde", {"noise": "brownian", "s_noise": float(step_kwargs.get("s_noise", 1.0))}


def _unipc(cfg, eta):
    if getattr(cfg, "solver_p", None) is not None:
        _refuse("UniPCMultistepScheduler", "solver_p (an external predictor) is not supported; configure solver_p=None")
    return "unipc", {"solver_order": int(cfg.solver_order), "solver_type": cfg.solver_type,
                     "predict_x0": bool(cfg.predict_x0), "lower_order_final": bool(cfg.lower_order_final),
                     "disable_corrector": tuple(int(i) for i in cfg.disable_corrector)}


def _plain(fn):
    """Adapt ``fn(cfg, eta) -> (sampler, options)`` to the ``(cfg, eta, sigmas, step_kwargs)`` signature."""
    def wrapped(cfg, eta, sigmas, step_kwargs):
        sampler, opts = fn(cfg, eta)
        return sampler, opts, sigmas

    return wrapped


def _with_kwargs(fn):
    """Adapt ``fn(cfg, eta, step_kwargs) -> (sampler, options)``."""
    def wrapped(cfg, eta, sigmas, step_kwargs):
        sampler, opts = fn(cfg, eta, step_kwargs)
        return sampler, opts, sigmas

    return wrapped


def _sigmas_only(fn):
    """Adapt ``fn(cfg, eta, sigmas) -> (sampler, options, sigmas)``."""
    def wrapped(cfg, eta, sigmas, step_kwargs):
        return fn(cfg, eta, sigmas)

    return wrapped


_SIGMA_SAMPLERS = {
    "EulerDiscreteScheduler": _with_kwargs(_euler),
    "EulerAncestralDiscreteScheduler": _plain(lambda cfg, eta: ("euler_ancestral", {})),
    "HeunDiscreteScheduler": _plain(_heun),
    "KDPM2DiscreteScheduler": _plain(lambda cfg, eta: ("dpm_2", {})),
    "KDPM2AncestralDiscreteScheduler": _plain(lambda cfg, eta: ("dpm_2_ancestral", {})),
    "LMSDiscreteScheduler": _with_kwargs(_lms),
    "DPMSolverSDEScheduler": _with_kwargs(_dpmsolver_sde),
    "DPMSolverMultistepScheduler": _plain(_dpm_multistep),
    "UniPCMultistepScheduler": _plain(_unipc),
    "DEISMultistepScheduler": _sigmas_only(_deis),
    "EDMEulerScheduler": _sigmas_only(_edm_euler),
    "EDMDPMSolverMultistepScheduler": _sigmas_only(_edm_dpm),
    "DPMSolverSinglestepScheduler": _sigmas_only(_singlestep),
}
_VP_LATENTS = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
               "DPMSolverSinglestepScheduler")


# ------------------------------------------------------------------------------------------------
# the model, as a torch function of (sample, timestep)
class _ModelOutput:
    """``(sample, timestep) -> model output`` of lindiff's linear model in the scheduler's
    ``prediction_type``, evaluated at the noise level the scheduler pairs with ``timestep``; float64
    inside, the sample's dtype outside.  A plain class (no closures) so it pickles."""

    def __init__(self, model: LinearDenoiser, scheduler):
        self.model = model
        self.prediction = getattr(scheduler.config, "prediction_type", "epsilon")
        self.discrete = _base_name(scheduler) in _DISCRETE
        self.T = int(scheduler.config.num_train_timesteps)
        if not self.discrete:
            ts = scheduler.timesteps.double().numpy()
            sig = _model_sigmas(scheduler)
            self.table = {float(t): float(sg) for t, sg in zip(ts[::-1], sig[::-1])}  # first pairing wins
            self.ts, self.sig = ts, sig
        self.cache: dict = {}

    def time(self, timestep) -> float:
        t = float(timestep)
        if self.discrete:
            # negative timesteps index alphas_cumprod from the end, as torch does
            return float(int(round(t)) % self.T + 1)
        if t in self.table:
            return self.table[t]
        return float(self.sig[int(np.argmin(np.abs(self.ts - t)))])

    def coefficients(self, key: float):
        """(W^T, b) of the output at lindiff time ``key``: ``output = x @ W^T + b`` (a few times cached)."""
        if key not in self.cache:
            if len(self.cache) > 8:
                self.cache.clear()
            W, b = self.model.affine(key)
            process = self.model.process
            W_out, b_out = self._output(key, W, b, float(process.alpha(key)), float(process.sigma(key)))
            self.cache[key] = (np.ascontiguousarray(W_out.T), np.asarray(b_out, dtype=np.float64))
        return self.cache[key]

    def _output(self, key: float, W: np.ndarray, b: np.ndarray, a: float, s: float):
        """The network output ``W_out x + b_out`` from the eps-model ``W x + b`` at alpha = a, sigma = s."""
        eye = np.eye(W.shape[0])
        if self.prediction == "epsilon":
            return W, b
        if self.prediction == "sample":  # x0 = (x - s eps) / a
            return (eye - s * W) / a, -s * b / a
        return (W - s * eye) / a, b / a  # v = a eps - s x0 = (eps - s x) / a on the VP state (a^2 + s^2 = 1)

    def __call__(self, sample, timestep):
        try:
            W, b = self.coefficients(self.time(timestep))
        except Exception as exc:  # lindiff's side: not a scheduler crash
            raise _ModelError(f"lindiff's model at timestep {float(timestep):g}: {exc}") from exc
        # numpy for the small product: torch's matmul dispatch costs 4x more at these sizes
        x = sample.reshape(sample.shape[0], -1).double().numpy()
        out = torch.from_numpy(x @ W + b)
        return out.reshape(sample.shape).to(sample.dtype)


class _EDMModelOutput(_ModelOutput):
    """The EDM network ``F(c_in x, c_noise)`` of Karras et al. (2022, Table 1) whose denoiser
    ``D = c_skip x + c_out F`` is lindiff's data prediction; ``x`` is the VE state, ``c_in = 1/sqrt(s^2 +
    s_d^2)``, ``c_skip = s_d^2/(s^2 + s_d^2)``, ``c_out = +-s s_d/sqrt(s^2 + s_d^2)`` (``-`` for diffusers'
    ``v_prediction``), and the timestep ``c_noise`` is looked up in the scheduler's (timesteps, sigmas)."""

    def __init__(self, model: LinearDenoiser, scheduler):
        super().__init__(model, scheduler)
        self.sd = float(scheduler.config.sigma_data)
        if self.prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"{type(scheduler).__name__} preconditions prediction_type 'epsilon' or 'v_prediction', "
                             f"got {self.prediction!r}")

    def _output(self, key: float, W: np.ndarray, b: np.ndarray, a: float, s: float):
        sv, sd = key, self.sd  # on SigmaVP the time is the VE sigma
        eye = np.eye(W.shape[0])
        c_in = 1.0 / np.sqrt(sv * sv + sd * sd)
        c_skip = sd * sd / (sv * sv + sd * sd)
        c_out = sv * sd / np.sqrt(sv * sv + sd * sd) * (1.0 if self.prediction == "epsilon" else -1.0)
        # input u = c_in x_ve, x_vp = a x_ve = (a / c_in) u; x0_hat = (x_vp - s eps_hat)/a
        A0 = (eye - s * W) / a
        b0 = -s * b / a
        return (A0 * (a / c_in) - c_skip / c_in * eye) / c_out, b0 / c_out


_INTERLEAVED = ("HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
                "DPMSolverSDEScheduler")


def _model_sigmas(scheduler) -> np.ndarray:
    """The noise level the scheduler pairs with each entry of ``timesteps``: ``sigmas[i]``, except at the
    second-order (midpoint) calls of KDPM2 (``sigmas_interpol``) and DPMSolverSDE (the geometric mean of
    the step's end points, its ``mid_point_sigma``)."""
    name = _base_name(scheduler)
    ts = scheduler.timesteps.double().numpy()
    sig = scheduler.sigmas.double().numpy()[: ts.size].copy()
    if name in ("KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"):
        sch = copy.deepcopy(scheduler)
        _widen(sch)
        _rederive(sch)
        interp = sch.sigmas_interpol.double().numpy()
        # scale_model_input reads sigmas_interpol[step_index] (KDPM2) or [step_index - 1] (ancestral)
        sig[1::2] = interp[1 : ts.size : 2] if name == "KDPM2DiscreteScheduler" else interp[0 : ts.size - 1 : 2]
    elif name == "DPMSolverSDEScheduler":
        grid = _first_order_grid(scheduler.sigmas.double().numpy())
        sig[1::2] = np.sqrt(grid[:-1] * grid[1:])[: sig[1::2].size]
    return sig


def _first_order_grid(sigmas: np.ndarray) -> np.ndarray:
    """``[s0, s1, s1, s2, s2, ..., 0(, 0, 0)]`` (second-order schedulers' interleaved table) -> ``[s0, s1, ..., 0]``."""
    grid = np.concatenate([sigmas[:1], sigmas[1::2]])
    while grid.size > 2 and grid[-1] == grid[-2]:
        grid = grid[:-1]
    return grid


def model_output_for(model: LinearDenoiser, scheduler):
    """A torch model ``(sample, timestep) -> output`` in the scheduler's ``prediction_type`` (see
    :class:`_ModelOutput`); ``scheduler`` must have had ``set_timesteps`` called."""
    if _base_name(scheduler) in _EDM:
        return _EDMModelOutput(model, scheduler)
    return _ModelOutput(model, scheduler)


def eps_model_for(model: LinearDenoiser, scheduler):
    """Backward-compatible name for :func:`model_output_for`."""
    return model_output_for(model, scheduler)


# ------------------------------------------------------------------------------------------------
# running the loop
class _Torch64(types.ModuleType):
    """``torch`` as seen by a scheduler module run in float64: ``torch.float32`` is ``torch.float64``."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return torch.float64 if name == "float32" else getattr(torch, name)


def _widen(scheduler) -> None:
    """Every floating tensor (and list of tensors) held by the scheduler, as float64."""
    for key, value in list(vars(scheduler).items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            setattr(scheduler, key, value.double())
        elif isinstance(value, list) and value and all(isinstance(v, torch.Tensor) for v in value):
            setattr(scheduler, key, [v.double() if v.is_floating_point() else v for v in value])


@contextlib.contextmanager
def _patched(scheduler, noise, precision: str):
    # a scheduler module without randn_tensor draws no noise (and a torch.randn call there would be
    # caught by the probe's affinity check)
    modules = {importlib.import_module(type(scheduler).__module__)}
    for cls in type(scheduler).__mro__:  # a subclass runs its base class's step in the base's module
        if cls.__module__.startswith("diffusers"):
            modules.add(importlib.import_module(cls.__module__))
    saved = []

    def fake(shape, generator=None, device=None, dtype=None, layout=None):
        arr = noise(tuple(shape))
        return torch.as_tensor(np.asarray(arr), dtype=dtype or torch.float32)

    class Brownian:
        """Stands in for ``BrownianTreeNoiseSampler``: normalised increments ``(W(s') - W(s))/sqrt|s' - s|``
        of one Brownian path in sigma, built from the injected draws (two calls from the same ``s`` share
        their overlap: correlation ``sqrt(|s - s_1| / |s - s_2|)``)."""

        def __init__(self, x, *args, **kwargs):
            self.last = None

        def __call__(self, sigma, sigma_next):
            a, b = float(sigma), float(sigma_next)
            z = torch.as_tensor(np.asarray(noise(self.shape_of)), dtype=torch.get_default_dtype())
            if self.last is not None and self.last[0] == a and abs(b - a) > abs(self.last[1] - a):
                rho = np.sqrt(abs(self.last[1] - a) / abs(b - a))
                out = rho * self.last[2] + np.sqrt(1.0 - rho * rho) * z
            else:
                out = z
            self.last = (a, b, out)
            return out

    default = torch.get_default_dtype()
    try:
        if precision == "float64":  # integer tensors promote to the default dtype (LCM's boundary scalings)
            torch.set_default_dtype(torch.float64)
        for mod in modules:
            if hasattr(mod, "randn_tensor"):
                saved.append((mod, "randn_tensor", mod.randn_tensor))
                mod.randn_tensor = fake
            if hasattr(mod, "BrownianTreeNoiseSampler"):
                saved.append((mod, "BrownianTreeNoiseSampler", mod.BrownianTreeNoiseSampler))
                mod.BrownianTreeNoiseSampler = _brownian_factory(Brownian)
            if precision == "float64" and hasattr(mod, "torch"):
                saved.append((mod, "torch", mod.torch))
                mod.torch = _Torch64()
        yield
    finally:
        for mod, name, value in reversed(saved):
            setattr(mod, name, value)
        torch.set_default_dtype(default)


def _rederive(sch) -> None:
    """Recompute, in float64, the tables a scheduler derives from its sigmas in float32 (KDPM2's midpoint
    sigmas, KDPM2-ancestral's up/down sigmas), so that only the base table's rounding is shared with
    lindiff: the same formulas (Karras et al. 2022; k-diffusion's ``get_ancestral_step``) on the widened
    grid."""
    name = _base_name(sch)
    if name not in ("KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"):
        return
    grid = torch.from_numpy(_first_order_grid(sch.sigmas.double().numpy()))

    def interleave(v):
        out = torch.cat([v[:1], v[1:].repeat_interleave(2), v[-1:]])
        return torch.cat([out, out[-1:].repeat(max(sch.sigmas.numel() - out.numel(), 0))])[: sch.sigmas.numel()]

    if name == "KDPM2DiscreteScheduler":
        interp = grid.log().lerp(grid.roll(1).log(), 0.5).exp()
        sch.sigmas_interpol = interleave(interp)
    else:
        nxt = grid.roll(-1)
        nxt[-1] = 0.0
        up = (nxt**2 * (grid**2 - nxt**2) / grid**2) ** 0.5
        down = (nxt**2 - up**2).clamp(min=0.0) ** 0.5
        down[-1] = 0.0
        with np.errstate(divide="ignore"):
            interp = grid.log().lerp(down.log(), 0.5).exp()
        interp[-2:] = 0.0
        sch.sigmas_interpol, sch.sigmas_up, sch.sigmas_down = interleave(interp), interleave(up), interleave(down)


def _brownian_factory(cls):
    def make(x, *args, **kwargs):
        obj = cls(x)
        obj.shape_of = tuple(x.shape)
        return obj

    return make


def _configured(scheduler, num_inference_steps: int):
    """A copy of the scheduler with ``set_timesteps`` called (the user's object is left untouched)."""
    sch = copy.deepcopy(scheduler)
    sch.set_timesteps(num_inference_steps)
    return sch


def run_pipeline_loop(scheduler, num_inference_steps: int, model_fn, x_T: np.ndarray, noise, latent_scale: float,
                      *, precision: str = "float64", output_scale: float = 1.0, **step_kwargs) -> np.ndarray:
    """The diffusers pipeline loop on a batch ``x_T`` (VP state); every Gaussian draw comes from ``noise``.

    Runs on a fresh copy of ``scheduler`` (``set_timesteps(num_inference_steps)`` is called on it);
    ``precision="float64"`` widens its tables and its float32 up-casts (module docstring).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    sch = _configured(scheduler, num_inference_steps)
    dtype = torch.float64 if precision == "float64" else torch.float32
    if precision == "float64":
        _widen(sch)
        _rederive(sch)
    latents = torch.as_tensor(np.asarray(x_T, dtype=np.float64) * latent_scale, dtype=dtype)
    with _patched(sch, noise, precision), torch.no_grad():
        for t in sch.timesteps:
            inp = sch.scale_model_input(latents, t)
            out = model_fn(inp, t)
            latents = sch.step(out, t, latents, **step_kwargs).prev_sample
    return latents.double().numpy() * output_scale


class _ModelError(RuntimeError):
    """lindiff's model could not be evaluated where the scheduler asked (propagated, not a crash)."""


class SchedulerCrash(RuntimeError):
    """The diffusers scheduler raised while lindiff ran it (a finding, reported by :func:`check_scheduler`)."""


class _Loop:
    """``run(x_T, eps_model, noise)`` for :func:`lindiff.testing.check_sampler` (picklable)."""

    def __init__(self, scheduler, steps, model_fn, latent_scale, precision, step_kwargs, output_scale=1.0):
        self.args = (scheduler, steps, model_fn)
        self.latent_scale, self.precision, self.step_kwargs = latent_scale, precision, step_kwargs
        self.output_scale = output_scale

    def __call__(self, x_T, _eps, noise):
        scheduler, steps, model_fn = self.args
        try:
            return run_pipeline_loop(scheduler, steps, model_fn, x_T, noise, self.latent_scale,
                                     precision=self.precision, output_scale=self.output_scale, **self.step_kwargs)
        except (_ModelError, NotImplementedError):  # NotImplementedError: an option diffusers declares unsupported
            raise
        except Exception as exc:  # anything diffusers raises on a valid configuration is a finding
            raise SchedulerCrash(f"{type(exc).__name__}: {exc}") from exc


class _UndefinedReference(ValueError):
    pass


def _undefined_result(scheduler, loop, model, exc, ref) -> OracleResult:
    """lindiff's law of the configured method does not exist; say what the scheduler returns instead."""
    try:
        out = loop(np.zeros((1, model.dim)), None, lambda shape: np.zeros(shape))
        seen = "NaN or infinite values" if not np.all(np.isfinite(out)) else "finite values"
    except Exception as crash:  # noqa: BLE001 - reported
        seen = f"an exception ({crash})"
    msg = f"UNDEFINED: the configured method has no exact law ({exc}); {type(scheduler).__name__} returns {seen}"
    if ref.discrepancy:
        msg += f"; {ref.discrepancy}"
    return OracleResult(False, "undefined", Gaussian.standard(model.dim), None, None, None, None, None, None, msg,
                        {"undefined": str(exc), "scheduler": type(scheduler).__name__, "config": dict(scheduler.config)})


def _crash_result(scheduler, where: str, exc: Exception, reference=None) -> OracleResult:
    msg = f"FAIL: {type(scheduler).__name__} crashed in {where}: {exc}"
    ref = reference if reference is not None else Gaussian.standard(1)
    return OracleResult(False, "crash", ref, None, None, None, None, None, None, msg,
                        {"crash": str(exc), "scheduler": type(scheduler).__name__, "config": dict(scheduler.config)})


def check_scheduler(scheduler, num_inference_steps: int, X, *, eta: float | None = None, ridge: float = 0.0,
                    mode: str = "exact", precision: str = "float64", tolerance: float | None = None,
                    n: int = 20_000, rng=None, false_alarm: float = 1e-3,
                    step_kwargs: dict | None = None) -> OracleResult:
    """Compare a configured diffusers scheduler with lindiff's exact law (see the module docstring).

    Parameters
    ----------
    scheduler : a diffusers scheduler instance (left untouched: a copy is run)
    num_inference_steps : passed to ``set_timesteps``
    X : training points of the linear denoiser (fitted on the scheduler's own schedule)
    eta : passed to ``step`` (DDIM's eta, TCD's gamma)
    step_kwargs : further keyword arguments of ``step`` (e.g. Euler's ``s_churn``, ``s_tmin``, ``s_tmax``,
        ``s_noise``; LMS's ``order``); the reference follows them
    mode : ``"exact"`` (probing) or ``"statistical"`` (samples; also for clipping / thresholding)
    precision : ``"float64"`` (default) or ``"float32"`` (module docstring)
    tolerance, n, rng, false_alarm : see :func:`lindiff.testing.check_sampler`

    Returns
    -------
    OracleResult
        ``details`` holds the scheduler's class, its configuration, and for ``precision="float32"``
        the float32-vs-float64 deviation (``"low_vs_float64"``); the message names any schedule
        discrepancy.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of training points (N, d), got shape {X.shape}")
    _check_supported(scheduler, mode)
    try:
        configured = _configured(scheduler, num_inference_steps)
    except Exception as exc:  # noqa: BLE001 - set_timesteps failing on a valid configuration is a finding
        return _crash_result(scheduler, "set_timesteps", exc)
    ref = reference_for(configured, X.shape[1], eta, mode=mode, step_kwargs=step_kwargs)
    model = LinearDenoiser.fit(X, ref.process, ridge=ridge)
    model_fn = model_output_for(model, configured)
    kwargs = dict(step_kwargs or {})
    if eta is not None:
        kwargs["eta"] = eta
    loop_steps = len(configured.timesteps)

    try:  # a configuration whose method is undefined (e.g. an order-2 step onto sigma = 0)
        grid = ref.options.get("grid")
        if grid is not None and np.any(np.diff(np.asarray(grid, float)) >= 0):
            raise ValueError(f"the schedule repeats a noise level (sigmas ..., {', '.join(f'{v:.4g}' for v in grid[-3:])}): a "
                             "zero-length step, which lindiff's strictly decreasing grids do not represent")
        sampling_law(model, model.process, ref.sampler, init=ref.init, **ref.options)
    except ValueError as exc:
        return _undefined_result(scheduler, _Loop(scheduler, num_inference_steps, model_fn, ref.latent_scale, precision,
                                                  kwargs, ref.output_scale), model, exc, ref)
    loop = _Loop(scheduler, num_inference_steps, model_fn, ref.latent_scale, precision, kwargs, ref.output_scale)
    loop64 = _Loop(scheduler, num_inference_steps, model_fn, ref.latent_scale, "float64", kwargs, ref.output_scale)
    try:
        result = check_sampler(loop, model, ref.sampler, init=ref.init, mode=mode,
                               dtype=np.float64 if precision == "float64" else np.float32, tolerance=tolerance, n=n,
                               rng=rng, false_alarm=false_alarm, loop_steps=loop_steps,
                               run_float64=loop64 if precision == "float32" else None, **ref.options)
    except _UndefinedReference as exc:
        return _undefined_result(scheduler, loop, model, exc, ref)
    except SchedulerCrash as exc:
        reference = sampling_law(model, model.process, ref.sampler, init=ref.init, **ref.options)
        out = _crash_result(scheduler, "step", exc, reference)
        if ref.discrepancy:
            out = _with_message(out, f"{out.message}; {ref.discrepancy}")
            out.details["discrepancy"] = ref.discrepancy
        return out
    if ref.discrepancy:
        result = _with_message(result, f"{result.message}; {ref.discrepancy}")
    result.details["scheduler"] = type(scheduler).__name__
    result.details["config"] = dict(scheduler.config)
    result.details["precision"] = precision
    if ref.discrepancy:
        result.details["discrepancy"] = ref.discrepancy
    return result


def _with_message(result: OracleResult, message: str, **changes) -> OracleResult:
    fields = dict(result.__dict__)
    fields.update(message=message, **changes)
    return OracleResult(**fields)


# ------------------------------------------------------------------------------------------------
# known upstream issues and the conformance report
@dataclass(frozen=True)
class KnownIssue:
    """An upstream discrepancy: which configurations show it, and where it is reported."""

    key: str
    schedulers: tuple[str, ...]
    description: str
    reference: str
    applies: object  # (config: dict, steps: int, step_kwargs: dict) -> bool


def _cfg(config, key, default=None):
    return config.get(key, default)


KNOWN_ISSUES = (
    KnownIssue("ddim-prev-timestep", ("DDIMScheduler", "PNDMScheduler"),
               "step() goes to t - T//n, not to the next entry of timesteps (linspace spacing, or trailing with n "
               "not dividing T)", "diffusers#11347, #12633",
               lambda c, n, k: _cfg(c, "timestep_spacing", "leading") == "linspace"
               or (_cfg(c, "timestep_spacing") == "trailing" and int(_cfg(c, "num_train_timesteps", 1000)) % n != 0)),
    KnownIssue("trailing-overshoot", ("DDPMScheduler", "DDIMScheduler"),
               "float arange(T, 0, -T/n) yields n + 1 timesteps ending at -1", "lindiff finding (no upstream report known)",
               lambda c, n, k: _cfg(c, "timestep_spacing") == "trailing"
               and len(np.arange(int(_cfg(c, "num_train_timesteps", 1000)), 0,
                                 -int(_cfg(c, "num_train_timesteps", 1000)) / n)) != n),
    KnownIssue("fixed-large-log-nan", ("DDPMScheduler",), "variance_type='fixed_large_log' takes ** 0.5 of a log "
               "variance: NaN", "diffusers#14569", lambda c, n, k: _cfg(c, "variance_type") == "fixed_large_log"),
    KnownIssue("sde-dpmpp-3-d2", ("DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler"),
               "sde-dpmsolver++ third order: D_2 weight -phi_2(-2h) - 1/2 instead of 1/2 - phi_2(-2h)",
               "introduced in diffusers#9104; lindiff finding",
               lambda c, n, k: _cfg(c, "algorithm_type") == "sde-dpmsolver++" and _cfg(c, "solver_order") == 3
               and (_cfg(c, "solver_type") == "heun" or "Singlestep" not in str(_cfg(c, "_class_name", "")))),
    KnownIssue("sde-dpmsolver-3-missing", ("DPMSolverMultistepScheduler",), "algorithm_type='sde-dpmsolver' has no "
               "third-order branch: step() raises UnboundLocalError on the third step", "diffusers#13778 (closed unmerged)",
               lambda c, n, k: _cfg(c, "algorithm_type") == "sde-dpmsolver" and _cfg(c, "solver_order") == 3),
    KnownIssue("kdpm2a-nan-timesteps", ("KDPM2AncestralDiscreteScheduler",), "squaredcos_cap_v2 (sigma_max ~ 2e4): "
               "sigma_down = sqrt(s'^2 - s_up^2) cancels to a negative number in float32, the interpolated sigma and "
               "timestep become NaN and the model is called at timestep NaN", "lindiff finding",
               lambda c, n, k: _cfg(c, "beta_schedule") == "squaredcos_cap_v2"),
    KnownIssue("pndm-short", ("PNDMScheduler",), "fewer than 3 steps: set_timesteps fails (pseudo Runge-Kutta) or "
               "the pseudo-Heun first step is silently a DDIM step (skip_prk_steps)", "lindiff finding",
               lambda c, n, k: n < 3),
    KnownIssue("linspace-n-plus-1", ("DPMSolverMultistepScheduler", "DEISMultistepScheduler", "UniPCMultistepScheduler",
                                     "DPMSolverSinglestepScheduler"),
               "linspace spacing over n + 1 points, rounded: at n = T two timesteps coincide (a zero-length step)",
               "lindiff finding", lambda c, n, k: _cfg(c, "timestep_spacing", "linspace") == "linspace"
               and n >= int(_cfg(c, "num_train_timesteps", 1000))),
    KnownIssue("pndm-v-prediction", ("PNDMScheduler",), "v_prediction: PRK/PLMS combine raw v outputs of "
               "different steps and convert the sum at the current step", "diffusers#14816",
               lambda c, n, k: _cfg(c, "prediction_type") == "v_prediction"),
    KnownIssue("pndm-odd-half-step", ("PNDMScheduler",), "pseudo Runge-Kutta with an odd step ratio T//n: the half "
               "step goes to t - r//2 while the model is evaluated at t' + r//2", "lindiff finding",
               lambda c, n, k: not _cfg(c, "skip_prk_steps", False) and (int(_cfg(c, "num_train_timesteps", 1000)) // n) % 2 == 1),
    KnownIssue("unipc-final-zero-nan", ("UniPCMultistepScheduler",), "final_sigmas_type='zero' with bh1 (or noise "
               "predictions): B(h) = -inf (or sigma_t e^h) times 0 on the last step gives NaN", "lindiff finding",
               lambda c, n, k: _cfg(c, "final_sigmas_type", "zero") == "zero"
               and (_cfg(c, "solver_type", "bh2") == "bh1" or not _cfg(c, "predict_x0", True))),
    KnownIssue("dpm-duplicate-timesteps", ("DPMSolverMultistepScheduler",), "squaredcos_cap_v2 with Karras / "
               "exponential / beta sigmas: rounded timesteps repeat (998 x 3); the step index skips a sigma and step() "
               "raises IndexError", "diffusers issue on DPMSolverMultistep + squaredcos_cap_v2 + karras (IndexError)",
               lambda c, n, k: _cfg(c, "beta_schedule") == "squaredcos_cap_v2"
               and any(_cfg(c, o) for o in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"))),
)


def known_issue(scheduler_name: str, config: dict, steps: int, step_kwargs: dict | None = None,
                message: str = "") -> str:
    """The known upstream issues (keys and references) a configuration falls under, or ""; ``message``
    (an oracle result's) adds the issues only a run reveals (duplicate timesteps)."""
    out = []
    if "duplicate timesteps" in message:
        out.append("duplicate-timesteps (diffusers casts sigma-to-timestep values to integers: rounded (Karras) or "
                   "truncated (exponential, beta sigmas) timesteps repeat)")
    for issue in KNOWN_ISSUES:
        if scheduler_name in issue.schedulers:
            try:
                hit = issue.applies(dict(config), int(steps), dict(step_kwargs or {}))
            except Exception:  # noqa: BLE001 - a predicate that cannot decide does not apply
                hit = False
            if hit:
                out.append(f"{issue.key} ({issue.reference})")
    return "; ".join(out)


def _grid_for(level: str) -> list[tuple[str, dict, int, dict]]:
    """Configurations (scheduler class, config overrides, steps, step kwargs) of a conformance grid."""
    rows: list[tuple[str, dict, int, dict]] = []

    def add(name, cfg=None, steps=20, kw=None):
        rows.append((name, dict(cfg or {}), steps, dict(kw or {})))

    preds = ("epsilon", "v_prediction", "sample")
    schedules = ("linear", "scaled_linear", "squaredcos_cap_v2")
    spacings = ("leading", "trailing", "linspace")
    sigma_opts = ({}, {"use_karras_sigmas": True}, {"use_exponential_sigmas": True}, {"use_beta_sigmas": True})
    quick = level == "quick"
    # DDPM family
    for vt in ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"):
        add("DDPMScheduler", {"clip_sample": False, "variance_type": vt}, 50)
    for pred in preds:
        add("DDPMScheduler", {"clip_sample": False, "prediction_type": pred}, 25)
    for sp in spacings:
        for n in ((20,) if quick else (20, 61)):
            add("DDIMScheduler", {"clip_sample": False, "timestep_spacing": sp}, n, {"eta": 0.0})
            add("DDIMScheduler", {"clip_sample": False, "timestep_spacing": sp}, n, {"eta": 1.0})
    for bs in schedules:
        add("DDIMScheduler", {"clip_sample": False, "beta_schedule": bs, "prediction_type": "v_prediction"}, 20)
    add("DDIMScheduler", {"clip_sample": False, "steps_offset": 1}, 50)
    if not quick:
        add("DDPMScheduler", {"clip_sample": False}, 1000)
        add("DDPMScheduler", {"clip_sample": False, "beta_schedule": "squaredcos_cap_v2"}, 1000)
    for skip in (False, True):
        for n in (20, 40):
            add("PNDMScheduler", {"skip_prk_steps": skip, "steps_offset": 1}, n)
    add("PNDMScheduler", {"skip_prk_steps": True, "timestep_spacing": "linspace"}, 20)
    add("PNDMScheduler", {"skip_prk_steps": True, "prediction_type": "v_prediction"}, 20)
    for pred in preds:
        add("LCMScheduler", {"prediction_type": pred}, 4)
    for eta in (0.0, 0.3, 1.0):
        add("TCDScheduler", {}, 4, {"eta": eta})
    # sigma (VE-latent) schedulers
    for name in ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "KDPM2DiscreteScheduler",
                 "KDPM2AncestralDiscreteScheduler", "LMSDiscreteScheduler", "DPMSolverSDEScheduler",
                 "EulerAncestralDiscreteScheduler"):
        has_sigma_opts = name not in ("EulerAncestralDiscreteScheduler",)
        for sp in spacings:
            add(name, {"timestep_spacing": sp}, 12)
        for opt in (sigma_opts[1:] if has_sigma_opts else ()):
            if name in ("KDPM2AncestralDiscreteScheduler",) and "use_beta_sigmas" in opt:
                continue
            add(name, dict(opt), 12)
        add(name, {"prediction_type": "v_prediction", "beta_schedule": "scaled_linear"}, 12)
    add("EulerDiscreteScheduler", {}, 12, {"s_churn": 1.0, "s_tmin": 0.05})
    add("EulerDiscreteScheduler", {"final_sigmas_type": "sigma_min"}, 12)
    add("EulerDiscreteScheduler", {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction",
                                   "timestep_spacing": "trailing"}, 12)
    add("LMSDiscreteScheduler", {}, 12, {"order": 2})
    # DPM-Solver family, DEIS, UniPC
    for algo in ("dpmsolver++", "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver"):
        for order in (1, 2, 3):
            for st in (("midpoint", "heun") if order == 2 else ("midpoint",)):
                fin = "zero" if algo.endswith("++") else "sigma_min"
                add("DPMSolverMultistepScheduler", {"algorithm_type": algo, "solver_order": order, "solver_type": st,
                                                    "final_sigmas_type": fin}, 10)
    for opt in sigma_opts[1:]:
        add("DPMSolverMultistepScheduler", dict(opt), 20)
        add("DPMSolverMultistepScheduler", {**opt, "beta_schedule": "squaredcos_cap_v2"}, 20)
    add("DPMSolverMultistepScheduler", {"euler_at_final": True}, 10)
    add("DPMSolverMultistepScheduler", {"lower_order_final": False, "final_sigmas_type": "sigma_min"}, 20)
    for algo in ("dpmsolver++", "sde-dpmsolver++"):
        for order in (2, 3):
            for st in ("midpoint", "heun"):
                add("DPMSolverSinglestepScheduler", {"algorithm_type": algo, "solver_order": order, "solver_type": st},
                    9)
    add("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, 9)
    add("DPMSolverSinglestepScheduler", {"solver_order": 3, "lower_order_final": False}, 9)
    for order in (1, 2, 3):
        add("DEISMultistepScheduler", {"solver_order": order}, 10)
    add("DEISMultistepScheduler", {"use_karras_sigmas": True}, 10)
    for st in ("bh1", "bh2"):
        for px in (True, False):
            for fin in ("zero", "sigma_min"):
                add("UniPCMultistepScheduler", {"solver_type": st, "predict_x0": px, "final_sigmas_type": fin,
                                                "solver_order": 3 if px else 2}, 10)
    add("UniPCMultistepScheduler", {"timestep_spacing": "leading"}, 10)
    add("UniPCMultistepScheduler", {"use_karras_sigmas": True}, 10)
    add("UniPCMultistepScheduler", {"lower_order_final": False}, 10)
    for sched in ("karras", "exponential"):
        for pred in ("epsilon", "v_prediction"):
            add("EDMEulerScheduler", {"sigma_schedule": sched, "prediction_type": pred}, 10)
            add("EDMDPMSolverMultistepScheduler", {"sigma_schedule": sched, "prediction_type": pred}, 10)
    return rows


def _short(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "defaults"


def _verdict(res: OracleResult) -> str:
    if res.mode == "crash":
        return "CRASH"
    if res.mode == "undefined":
        return "UNDEFINED"
    if res:
        return "PASS"
    if res.cov_error is None and "NaN" in res.message:
        return "NaN"
    return "FAIL"


def conformance(level: str = "standard", X=None, *, d: int = 3, precision: str = "float64", schedulers=None,
                progress: bool | None = None) -> "Table":
    r"""Run every supported diffusers scheduler over a grid of configurations and tabulate the verdicts.

    Each row is one :func:`check_scheduler` call (exact mode): scheduler, configuration (the options
    changed from its defaults; ``step: ...`` are arguments of ``step``), steps, relative mean and
    covariance errors, :math:`\mathrm{KL}(\text{diffusers}\,\|\,\text{lindiff})`, the verdict (``PASS``,
    ``FAIL``, ``NaN``, ``CRASH`` — the scheduler raised —, ``UNDEFINED`` — the configured method has no
    law —, ``UNSUPPORTED`` — refused by diffusers or by the adapter, with the reason) and the known
    upstream issue it falls under (:data:`KNOWN_ISSUES`).

    Parameters
    ----------
    level : ``"quick"`` (~150 rows, a few seconds), ``"standard"`` (~200 rows, including two 1000-step
        DDPM loops) — the grid is listed in ``_grid_for``
    X : training points of the linear model (default: 2d points of a fixed Gaussian in d dimensions)
    precision : ``"float64"`` or ``"float32"`` (see :func:`check_scheduler`)
    schedulers : restrict to these class names
    progress : show a progress bar (default: on a terminal)

    >>> table = conformance("quick", schedulers=["LCMScheduler"], progress=False)
    >>> table.column("verdict")
    ['PASS', 'PASS', 'PASS']
    """
    import diffusers as D

    from .._progress import Progress
    from ..tables import Column, Table

    if level not in ("quick", "standard"):
        raise ValueError(f"level must be 'quick' or 'standard', got {level!r}")
    if X is None:
        from ..spectra import power_law

        p0 = Gaussian.from_spectrum(power_law(d, 1.0), None, np.linspace(-0.5, 0.5, d))
        X = p0.sample(2 * d, np.random.default_rng(0))
    X = np.asarray(X, dtype=float)
    grid = [r for r in _grid_for(level) if schedulers is None or r[0] in schedulers]
    rows = []
    with Progress(len(grid), "diffusers conformance", progress) as bar:
        for name, cfg, steps, kw in grid:
            config = _short(cfg) + (f"; step: {_short(kw)}" if kw else "")
            known = known_issue(name, {**cfg, "_class_name": name}, steps, kw)
            try:
                scheduler = getattr(D, name)(**cfg)
                eta = kw.get("eta")
                step_kwargs = {k: v for k, v in kw.items() if k != "eta"}
                res = check_scheduler(scheduler, steps, X, eta=eta, step_kwargs=step_kwargs or None, precision=precision)
            except (ValueError, NotImplementedError, TypeError) as exc:  # refused by diffusers or by the adapter
                rows.append([name, config, steps, None, None, None, "UNSUPPORTED", known, str(exc)[:160]])
                bar.update(1)
                continue
            known = known_issue(name, {**cfg, "_class_name": name}, steps, kw, res.message) if not res else known
            kl = res.details.get("kl(user || lindiff)")
            note = res.details.get("discrepancy") or res.details.get("crash") or res.details.get("undefined") or \
                ("" if res else res.message[:160])
            rows.append([name, config, steps, res.mean_error, res.cov_error, kl, _verdict(res), known, note])
            bar.update(1)
    cols = [Column("scheduler"), Column("config", note="options changed from the defaults; step: arguments of step()"),
            Column("steps"), Column("mean error", note="relative, exact probe vs lindiff", fmt=".2g"),
            Column("cov error", note="relative Frobenius", fmt=".2g"),
            Column("KL", "nats", "KL(diffusers || lindiff), exact Gaussians", fmt=".2g"),
            Column("verdict", note="PASS / FAIL / NaN / CRASH (scheduler raised) / UNDEFINED (no law) / UNSUPPORTED"),
            Column("known upstream issue"), Column("note")]
    counts = {v: sum(1 for r in rows if r[6] == v) for v in ("PASS", "FAIL", "NaN", "CRASH", "UNDEFINED", "UNSUPPORTED")}
    unexplained = sum(1 for r in rows if r[6] in ("FAIL", "NaN", "CRASH") and not r[7])
    caption = (f"diffusers {D.__version__} schedulers vs lindiff's exact laws ({precision}, d = {X.shape[1]}, "
               f"linear model on N = {X.shape[0]} points): " + ", ".join(f"{v} {c}" for v, c in counts.items() if c))
    notes = [f"tolerance: lindiff.testing.roundoff_tolerance ({precision}); failures without a known issue: {unexplained}"]
    return Table(caption, cols, rows, notes)


def plot_conformance(table, path: str | None = None):
    """Covariance error per configuration, grouped by scheduler (log scale), coloured by verdict, with
    the float64 tolerance; returns the matplotlib Figure (and writes ``path`` if given)."""
    from ..plots import _pyplot

    plt = _pyplot()
    rows = list(table.rows)
    names = sorted({r[0] for r in rows})
    colours = {"PASS": "C2", "FAIL": "C3", "NaN": "C1", "CRASH": "k", "UNDEFINED": "C7", "UNSUPPORTED": "C0"}
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(names) + 1.5))
    for i, name in enumerate(names):
        for r in (r for r in rows if r[0] == name):
            err = r[4]
            value = err if (err is not None and np.isfinite(err) and err > 0) else (1.0 if r[6] != "PASS" else 1e-17)
            ax.plot(max(value, 1e-17), i + np.random.default_rng(hash(r[1]) % 2**32).uniform(-0.25, 0.25), "o",
                    color=colours.get(r[6], "C4"), ms=4, alpha=0.8)
    ax.axvline(1e-10, color="C3", lw=0.8, ls="--", label="float64 tolerance")
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("relative covariance error (NaN / crash / undefined plotted at 1)")
    for verdict, c in colours.items():
        ax.plot([], [], "o", color=c, label=verdict)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(table.caption[:110], fontsize=8)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=130)
    return fig
