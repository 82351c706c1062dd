r"""Samplers as data, and the exact law of their output for affine score models.

A sampler unrolled on a time grid is a :class:`SamplerProgram`: steps that evaluate the model at
*stages* and write a small state of *slots* (slot 0 is the point ``x``; multistep methods keep their
history in the other slots), with Gaussian noise drawn per step and allowed to enter before a model
evaluation.  The representation is documented in :mod:`lindiff._program`; in short, one step is

.. math::
    f_j = \text{model}_j\Big(\textstyle\sum_r c_{jr} R_r,\ t_j\Big),\qquad
    S'_i = \textstyle\sum_r w_{ir} R_r,\qquad R = [S_0..S_{K-1}, z_1..z_m, f_1..f_J],

with ``model_j`` the score, the noise prediction ``eps_hat`` or the data prediction ``x0_hat``.  The
same coefficients serve two interpreters: :func:`lindiff.mc.sample` runs them on points for any score
model, and :func:`sampling_law` propagates them exactly for an affine model: per eigenmode the state is
a K-dimensional affine-Gaussian recursion (O(d) per step after the model's single ``eigh``, the
"spectral" path); general affine models take the O(d^3)-per-step "dense" path.  ``path="auto"`` picks
the spectral path whenever it applies; the tests hold the two paths to each other.

Every sampler runs in the process's own (variance-preserving) state ``x``.  Samplers written by their
authors in the variance-exploding state of Karras et al. (2022) — ``x_ve = x / alpha``, noise level
``sigma_ve = sigma / alpha`` — are converted exactly: ``x = alpha(t) x_ve``, and a noise level off the
grid (churn, midpoints) is evaluated at the time ``t`` with ``sigma(t)/alpha(t) = sigma_ve``.  On
:class:`~lindiff.SigmaVP` the time *is* ``sigma_ve``, so k-diffusion's and diffusers' ``sigmas`` are
lindiff times.

Samplers (``sampler=``)
-----------------------
<<SAMPLERS>>

Grids
-----
Continuous samplers use a uniform grid of ``steps`` points from ``T`` down to ``t_min`` (``steps - 1``
steps), or any decreasing ``grid=``.  On a :class:`~lindiff.DDPM` process the samplers that only
evaluate the model on the grid exist (ddpm, ddim, the VE-sigma first-order and multistep methods);
they run on all steps ``T, ..., 1`` (ending at ``alpha_bar_0 = 1``) unless ``steps=n`` picks ``n`` of
them with diffusers' ``spacing="leading"`` (default), ``"trailing"`` or ``"linspace"`` (and
``steps_offset``), or ``timesteps=`` lists them (1-based steps, decreasing).

Steep schedules and float64
---------------------------
Where ``alpha(t)`` underflows (``B(T)`` of thousands), a step written with data predictions reaches its
exact limit: the prediction at a point that carries no information about the start is the model's
``alpha -> 0`` limit (the data mean of an exact or fitted model; a ValueError for a ridge fit, whose limit
is infinite), so the law forgets ``x_T``.  Steps written with noise predictions, ``x' = (alpha'/alpha) x +
c eps_hat`` (DDIM transfers, the VE state, Ho et al.'s DDPM), cancel two terms of size ``alpha'/alpha`` and
are refused beyond ``alpha'/alpha = 1e8``; multistep weights that cancel by more than 1e8 (log-SNR steps of
very different sizes) and multistep laws whose condition number with respect to the step coefficients
exceeds 1e8 (large steps excite parasitic modes) are refused too, and so are laws of multi-stage steps (Heun,
DPM-2, ...) whose condition number with respect to their stage inputs exceeds 1e8 (probed where a stage
evaluates the model at sigma or alpha below 1e-3: a rounded input times gains of 1/sigma for a singular
score).  In each case float64 would keep fewer than 8 digits of the result; the ValueError names the step
and what to change (more steps, a smaller T, a larger t_min).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.integrate import solve_ivp

from ._program import (KINDS, SamplerProgram, Stage, Step, StepBuilder, lc, run_dense, run_points, run_spectral,
                       run_spectral_batch)
from ._validation import as_finite_array, as_nonnegative_float, as_positive_int
from .gaussian import Gaussian, _is_identity
from .processes import DDPM, Process, SigmaVP, VP
from .scores import AffineModel, ScoreModel
from .tables import Column, Table

__all__ = ["SAMPLERS", "Stage", "Step", "SamplerProgram", "build_sampler", "sampling_law", "sampling_laws", "sampler_table"]

SPACINGS = ("leading", "trailing", "linspace")
GRID_OPTIONS = ("grid", "timesteps", "spacing", "steps_offset")


# ------------------------------------------------------------------------------------------------
# the registry
@dataclass(frozen=True)
class _Spec:
    name: str
    doc: str  # reStructuredText paragraph (the update rule and its source)
    build: Callable | None  # (process, grid, opts) -> (steps, slots); None for the continuous solutions
    options: dict = field(default_factory=dict)  # option -> default
    continuous_only: bool = False  # VP-state methods that need beta(t) (not defined on DDPM)
    off_grid: bool = False  # evaluates the model at noise levels between grid points


_REGISTRY: dict[str, _Spec] = {}


def _register(name, doc, build=None, options=None, continuous_only=False, off_grid=False):
    _REGISTRY[name] = _Spec(name, doc.strip(), build, dict(options or {}), continuous_only, off_grid)


def _sampler_docs() -> str:
    out = []
    for spec in _REGISTRY.values():
        body = "\n".join("    " + line if line else "" for line in spec.doc.splitlines())
        opts = ", ".join(f"``{k}={v!r}``" for k, v in spec.options.items())
        out.append(f"``{spec.name!r}``\n{body}" + (f"\n    Options: {opts}." if opts else ""))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# time grids
def ddpm_timesteps(T: int, steps: int, spacing: str = "leading", steps_offset: int = 0) -> np.ndarray:
    """diffusers' inference timesteps, converted to lindiff's 1-based steps (diffusers' t is our t+1).

    ``linspace``: ``round(linspace(0, T-1, n))[::-1]``; ``leading``: ``arange(n) * (T // n))[::-1] +
    steps_offset``; ``trailing``: ``round(T - k T/n) - 1`` for ``k = 0..n-1`` (all 0-based, as in
    diffusers).  The trailing grid takes exactly the ``n`` entries ``k = 0..n-1`` of diffusers'
    ``np.round(np.arange(T, 0, -T/n)) - 1``, evaluated as numpy's ``arange`` does (so ties round as in
    diffusers); float ``arange`` can add an ``(n+1)``-th entry that rounds to timestep -1 (27,044 of the
    500,500 pairs with ``n <= T <= 1000``), which lindiff leaves out: its grid is defined for every pair.
    """
    steps = as_positive_int(steps, "steps")
    if steps > T:
        raise ValueError(f"steps must be at most T = {T} for a DDPM process, got {steps}")
    if spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, steps))[::-1].astype(np.int64)
    elif spacing == "leading":
        ts = (np.arange(steps, dtype=np.int64) * (T // steps))[::-1] + int(steps_offset)
    elif spacing == "trailing":
        # diffusers: round(arange(T, 0, -T/n)) - 1.  numpy's arange fills entry k with T + k delta, where
        # delta = (T - T/n) - T in floats; taking exactly k = 0..n-1 keeps diffusers' values (ties
        # included) and drops the extra element float arange can produce (T = 61, n = 7: timestep -1).
        delta = (T + (-T / steps)) - T
        ts = np.round(T + np.arange(steps) * delta) - 1
    else:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    ts = ts.astype(np.int64) + 1
    if ts.max() > T or ts.min() < 1:
        raise ValueError(f"spacing {spacing!r} with steps_offset={steps_offset} gives steps outside [1, {T}]")
    return ts


def _grid(process: Process, sampler: str, steps, t_min, grid, timesteps, spacing, steps_offset) -> np.ndarray:
    if grid is not None:
        g = as_finite_array(grid, "grid", ndim=1)
        process.check_time(g, "grid")
        if g.size < 2 or np.any(np.diff(g) >= 0):
            raise ValueError("grid must hold at least two strictly decreasing times")
        return g.astype(float)
    if process.discrete:
        T = process.T
        if timesteps is not None:
            ts = np.asarray(process.check_time(timesteps, "timesteps", allow_zero=False)).ravel()
            if ts.size < 1 or np.any(np.diff(ts) >= 0):
                raise ValueError("timesteps must be strictly decreasing steps in [1, T]")
        elif steps is None:
            ts = np.arange(T, 0, -1)
        else:
            ts = ddpm_timesteps(T, steps, spacing, steps_offset)
        return np.concatenate([ts, [0]]).astype(float)
    t_min = as_nonnegative_float(t_min, "t_min")
    if not t_min < process.T:
        raise ValueError(f"t_min must lie in [0, T) = [0, {process.T:g}), got {t_min!r}")
    if steps is None:
        if sampler in ("sde", "ode"):
            return np.array([process.T, t_min])
        raise ValueError(f"steps is required for the {sampler!r} sampler on a continuous process (number of grid points, >= 2)")
    steps = as_positive_int(steps, "steps", minimum=2)
    return np.linspace(process.T, t_min, steps)


# ------------------------------------------------------------------------------------------------
# noise levels
class _Level:
    """alpha, sigma and the VE noise level ``sigma_ve = sigma/alpha`` at a time, with ``log alpha`` and
    ``log sigma_ve`` kept finite where alpha underflows (ratios between levels are taken in logs)."""

    __slots__ = ("t", "a", "s", "la", "lsv", "sv")

    def __init__(self, process: Process, t: float):
        self.t = float(t)
        self.la = 0.5 * float(process.log_alpha2(t))
        self.a = float(process.alpha(t))
        self.s = float(process.sigma(t))
        self.lsv = (math.log(self.s) - self.la) if self.s > 0 else -math.inf
        if self.a > 1e-150:
            self.sv = self.s / self.a
        else:
            self.sv = math.exp(self.lsv) if self.lsv < 709.0 else math.inf

    def ratio(self, other: "_Level") -> float:
        """``alpha(other) / alpha(self)`` (``inf`` past float64 range; builders then report the grid)."""
        x = other.la - self.la
        return math.exp(x) if x < 709.0 else math.inf


def _exp(x: float) -> float:
    """``e^x``, ``inf`` past the float64 range (where ``math.exp`` raises OverflowError)."""
    return math.exp(x) if x < 709.0 else math.inf


_NOISE_RATIO_MAX = 1e8
"""Largest ``alpha'/alpha`` of a step written with noise predictions.  Such a step (the DDIM transfer
``x' = (alpha'/alpha) x + (sigma' - sigma alpha'/alpha) eps``, a step of the VE state ``x/alpha``, or Ho et al.'s
``(x - c eps_hat)/sqrt(1 - beta)``) adds two terms of size ``alpha'/alpha`` that cancel to an O(1) point, so
float64 keeps about ``-log10(eps alpha'/alpha)`` digits of it: 8 at this bound.  Beyond it the step is
refused (a finer grid splits it); data-prediction steps have no such cancellation and have no bound."""


def _noise_step_ratio(name: str, ls: "_Level", lt: "_Level") -> float:
    """``alpha(lt)/alpha(ls)`` of a noise-prediction step, refused beyond :data:`_NOISE_RATIO_MAX`."""
    x = lt.la - ls.la
    if not x <= math.log(_NOISE_RATIO_MAX):
        raise ValueError(
            f"sampler {name!r} writes the step t = {ls.t:g} -> {lt.t:g} with noise predictions, x' = (alpha'/alpha) x "
            f"+ c eps_hat, and alpha grows by a factor exp({x:.4g}) over it: the two terms cancel to an O(1) point and "
            f"float64 would keep fewer than 8 of its digits (alpha'/alpha must stay below {_NOISE_RATIO_MAX:.0e}); use "
            "more steps (a finer grid), a smaller T, or a data-prediction sampler (ddim, dpmpp_2m, unipc, ...)")
    return math.exp(x)


def _check_extrapolation(name: str, weights, x_coef: float, unit: float, ls: "_Level", lt: "_Level") -> None:
    """A multistep step ``x' = x_coef x + unit sum_j w_j m_j`` weights its stored model outputs ``m_j`` by ``w_j``
    summing to the first-order weight (the higher-order differences ``D_k`` sum to zero).  On a grid whose
    log-SNR steps differ by orders of magnitude (a DDPM schedule with betas 1e-12 beside 0.5) the ``D_k``
    divide differences of nearly equal outputs by ratios like 1e-12: the weights are huge and cancel, and
    float64 keeps ``-log10(eps kappa)`` digits of the new point, ``kappa = unit sum |w_j| / max(|x_coef|, unit
    |sum w_j|)`` (the outputs and the point being of one size).  Refused beyond ``kappa = 1e8`` (the bound of
    :data:`_NOISE_RATIO_MAX`)."""
    weights = [float(w) for w in weights]
    size, total = sum(abs(w) for w in weights), abs(sum(weights))
    if unit * size > _NOISE_RATIO_MAX * max(abs(x_coef), unit * total):
        raise ValueError(
            f"sampler {name!r} on the step t = {ls.t:g} -> {lt.t:g} weights its stored outputs by {max(weights, key=abs):.3g} "
            f"and more, which cancel to a total of {sum(weights):.3g}: the grid's log-SNR steps differ by orders of "
            f"magnitude there and float64 would keep fewer than 8 digits of the step; use a more even grid (other steps, "
            "spacing or timesteps) or solver_order=1")


def _time_at(process: Process, sv: float, what: str) -> float:
    """The time at which ``sigma/alpha = sv`` (inverse of the VE noise level)."""
    if process.discrete:
        raise ValueError(f"{what} needs a continuous process (VP, OU, SigmaVP): it evaluates the model between DDPM steps")
    if isinstance(process, SigmaVP):
        t = sv
    else:
        L = math.log1p(sv * sv)  # B(t) = log(1 + sigma_ve^2)
        if isinstance(process, VP):
            b0, k = process.beta_min, 0.5 * (process.beta_max - process.beta_min) / process.T
            disc = b0 * b0 + 4.0 * k * L
            t = L / b0 if k == 0 else 2.0 * L / (b0 + math.sqrt(max(disc, 0.0)))
        else:  # pragma: no cover - processes with a B(t) but no closed-form inverse
            from scipy.optimize import brentq

            t = brentq(lambda u: float(process.B(u)) - L, 0.0, process.T, xtol=1e-15, rtol=4e-16)
    if t > process.T * (1 + 1e-12):
        raise ValueError(f"{what} evaluates the model at sigma/alpha = {sv:.6g}, above the process's maximum "
                         f"{_Level(process, process.T).sv:.6g} (at T = {process.T:g}); use a process with a larger T")
    return min(t, float(process.T))


# ------------------------------------------------------------------------------------------------
# step builders: the VP-state methods and the discrete DDPM/DDIM
def _one_stage(t, t_next, a, c, noise, kind="score") -> Step:
    b = StepBuilder(t, t_next, 1)
    f = b.stage(t, {0: 1.0}, kind)
    combo = {0: float(a), f: float(c)}
    if noise:
        combo[b.noise()] = float(noise)
    b.write(0, combo)
    return b.build()


def _data_stage(b: StepBuilder, lv: _Level, inputs: dict, la_use: float) -> tuple[int, float]:
    """A data-prediction stage at level ``lv`` whose output enters with the coefficient ``alpha_use`` (``log
    alpha_use = la_use``) times a finite weight; returns ``(register, log scale)``, the output being
    ``e^{scale} x0_hat``.  Normally ``x0_hat`` (scale 0).  Where ``alpha(t)`` underflows, ``alpha x0_hat`` (scale
    ``log alpha``, the output stays finite) with the ratio ``alpha_use/alpha`` kept in logs; where even that
    ratio is beyond float64 (alpha grows by more than e^709 before the output is used) the start is forgotten:
    ``x0_hat`` itself, which every model evaluates in its ``alpha -> 0`` limit (the prediction with no
    information from x, e.g. the data mean) or refuses with a ValueError where that limit is infinite."""
    if lv.a > 1e-150 or la_use - lv.la >= 709.0:
        return b.stage(lv.t, inputs, "x0"), 0.0
    return b.stage(lv.t, inputs, "ax0"), lv.la


def _first_order(lv: _Level, ln: _Level, x_coef: float, d_coef: float, noise: float = 0.0) -> Step:
    """``x' = x_coef x + d_coef alpha' x0_hat(x, t) + noise z``: the data prediction enters as ``x0``, as
    ``alpha x0_hat`` where alpha(t) underflows, or in its ``alpha -> 0`` limit (see :func:`_data_stage`)."""
    b = StepBuilder(lv.t, ln.t, 1)
    f, scale = _data_stage(b, lv, {0: 1.0}, ln.la)
    c = d_coef * (ln.a if scale == 0.0 else _exp(ln.la - scale)) if d_coef else 0.0
    combo = {0: float(x_coef), f: float(c)}
    if noise:
        combo[b.noise()] = float(noise)
    b.write(0, combo)
    return b.build()


def _build_ddpm(process, g, o):
    variance, final_noise = o["variance"], bool(o["final_noise"])
    if variance not in ("beta", "beta_tilde"):
        raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {variance!r}")
    steps = []
    for k in range(len(g) - 1):
        t, t_next = float(g[k]), float(g[k + 1])
        last = k == len(g) - 2
        la, la_next = float(process.log_alpha2(t)), float(process.log_alpha2(t_next))
        _noise_step_ratio("ddpm", _Level(process, t), _Level(process, t_next))  # the 1/sqrt(alpha_cur) below
        # expm1 keeps the skip-step beta accurate for tiny betas; at the last step it equals sigma^2 bitwise
        alpha_cur = np.exp(la - la_next)
        beta = -np.expm1(la - la_next)
        var = beta if variance == "beta" else np.expm1(la_next) / np.expm1(la) * beta
        noise = 0.0 if (last and not final_noise) else float(np.sqrt(var))
        scale = 1.0 / np.sqrt(alpha_cur)
        # eps form: x' = (x - beta/sqrt(1-abar) eps) / sqrt(alpha_cur); eps = -sqrt(1-abar) score
        steps.append(_one_stage(t, t_next, scale, scale * beta, noise))
    return steps, ("x",)


def _build_ddim(process, g, o):
    eta = as_nonnegative_float(o["eta"], "eta")
    steps = []
    for k in range(len(g) - 1):
        t, t_next = float(g[k]), float(g[k + 1])
        la, la_next = float(process.log_alpha2(t)), float(process.log_alpha2(t_next))
        sig = float(process.sigma(t))
        nu = eta * np.sqrt(np.expm1(la_next) / np.expm1(la)) * np.sqrt(-np.expm1(la - la_next))
        rest = -np.expm1(la_next) - nu * nu
        if rest < -1e-12:
            raise ValueError(f"eta={eta} makes 1 - alpha_bar' - nu^2 negative at t={t:g}; use 0 <= eta <= 1")
        # x' = sqrt(abar') x0_hat + c_e eps_hat + nu z with eps_hat = (x - alpha x0_hat)/sigma:
        # x' = (c_e/sigma) x + (alpha' - c_e alpha/sigma) x0_hat + nu z (no cancellation where alpha underflows)
        c_e = np.sqrt(max(rest, 0.0))
        lv, ln = _Level(process, t), _Level(process, t_next)
        steps.append(_first_order(lv, ln, c_e / sig, 1.0 - c_e * lv.a / (sig * ln.a) if ln.a > 0 else 1.0, float(nu) + 0.0))
    return steps, ("x",)


def _build_vp(name):
    def build(process, g, o):
        steps = []
        for k in range(len(g) - 1):
            t, t_next = float(g[k]), float(g[k + 1])
            h = t - t_next
            bk = float(process.beta(t))
            if name == "euler_maruyama":
                steps.append(_one_stage(t, t_next, 1 + 0.5 * h * bk, h * bk, np.sqrt(h * bk)))
            elif name == "exponential_integrator":
                dB = float(process.B(t) - process.B(t_next))
                if 0.5 * dB >= 709.0:
                    raise ValueError(
                        f"sampler 'exponential_integrator' multiplies x by E = exp((B(t) - B(t'))/2) = exp({0.5 * dB:.4g}) on "
                        f"the step t = {t:g} -> {t_next:g}, beyond float64 (the law it gives is as large); use more steps")
                E = np.exp(0.5 * dB)
                # sqrt(E^2 - 1), as E sqrt(1 - E^-2) where E^2 overflows
                root = np.sqrt(np.expm1(dB)) if dB < 709.0 else E * math.sqrt(-math.expm1(-dB))
                steps.append(_one_stage(t, t_next, E, 2 * np.expm1(0.5 * dB), root))
            elif name == "euler" or (float(process.sigma(t_next)) == 0.0 and not o.get("heun_at_zero")):
                steps.append(_one_stage(t, t_next, 1 + 0.5 * h * bk, 0.5 * h * bk, 0.0))
            else:  # heun
                bn = float(process.beta(t_next))
                # predictor x~ = x + h v(x, t_k), v = beta/2 (x + score); corrector averages v at both ends
                b = StepBuilder(t, t_next, 1)
                s1 = b.stage(t, {0: 1.0})
                s2 = b.stage(t_next, {0: 1 + 0.5 * h * bk, s1: 0.5 * h * bk})
                px, ps = 1 + 0.5 * h * bk, 0.5 * h * bk
                b.write(0, {0: 1 + 0.25 * h * bk + 0.25 * h * bn * px, s1: 0.25 * h * bk + 0.25 * h * bn * ps, s2: 0.25 * h * bn})
                steps.append(b.build())
        return steps, ("x",)

    return build


# ------------------------------------------------------------------------------------------------
# VE-state methods (Karras et al. 2022; k-diffusion; diffusers' sigma schedulers)
def _ancestral(sv: float, sv_next: float, eta: float, rho: float) -> tuple[float, float]:
    """k-diffusion's ``get_ancestral_step`` as fractions of ``sigma_ve'``: (sigma_down, sigma_up) / sigma_ve'.

    ``sigma_up = min(sigma', eta sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2))``,
    ``sigma_down = sqrt(sigma'^2 - sigma_up^2)``; with ``rho = sigma'/sigma`` both are ``sigma'`` times
    ``u = min(1, eta sqrt(1 - rho^2))`` and ``sqrt(1 - u^2)``.
    """
    if not eta:
        return 1.0, 0.0
    u = min(1.0, eta * math.sqrt(max(1.0 - rho * rho, 0.0)))
    return math.sqrt(max(1.0 - u * u, 0.0)), u


def _build_euler_ancestral(process, g, o):
    eta = as_nonnegative_float(o["eta"], "eta")
    s_noise = as_nonnegative_float(o["s_noise"], "s_noise")
    steps = []
    for k in range(len(g) - 1):
        lv, ln = _Level(process, g[k]), _Level(process, g[k + 1])
        r = lv.ratio(ln)
        rho = math.exp(ln.lsv - lv.lsv) if ln.s > 0 else 0.0
        down, up = _ancestral(lv.sv, ln.sv, eta, rho)
        # x_ve' = x_ve + (sigma_down - s) eps_hat + s_noise sigma_up z = (sigma_down/s) x_ve + (1 - sigma_down/s) D + ...
        noise = s_noise * ln.s * up if ln.s > 0 else 0.0
        steps.append(_first_order(lv, ln, ln.s * down / lv.s, 1.0 - down * rho, noise))
    return steps, ("x",)


# ------------------------------------------------------------------------------------------------
# DPM-Solver multistep family (Lu et al. 2022a, 2022b; diffusers DPMSolverMultistepScheduler; k-diffusion)
def _phi(k: int, z: float) -> float:
    r""":math:`\varphi_k(z) = \int_0^1 e^{(1-\theta) z}\theta^{k-1}/(k-1)!\,d\theta` (``phi_0 = e^z``),
    by its Taylor series for ``|z| < 1`` (no cancellation) and the recurrence
    ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z`` otherwise."""
    if k == 0:
        return _exp(z)
    if abs(z) < 1.0:
        term, total, n = 1.0 / math.factorial(k), 0.0, 0
        while True:
            total += term
            n += 1
            term *= z / (n + k)
            if abs(term) < 1e-18 * abs(total) or n > 60:
                return total + term
    if z >= 709.0:  # e^z beyond float64 (math.expm1 would raise): so is phi_k(z) ~ e^z / z^k
        return math.inf
    if math.isinf(z):
        return 0.0
    v = math.expm1(z) / z
    for j in range(1, k):
        v = (v - 1.0 / math.factorial(j)) / z
    return v


ALGORITHMS = ("dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver")


def _dpm_order(i: int, n: int, max_order: int, final_zero: bool, o: dict) -> int:
    if o["schedule"] == "kdiffusion":
        return 1 if final_zero and i == n - 1 else min(i + 1, max_order)
    lof = i == n - 1 and (o["euler_at_final"] or (o["lower_order_final"] and n < 15) or final_zero)
    los = i == n - 2 and o["lower_order_final"] and n < 15
    if max_order == 1 or i == 0 or lof:
        return 1
    if max_order == 2 or i == 1 or los:
        return 2
    return 3


def _build_dpm_multistep(process, g, o):
    r"""One step of order ``p`` from ``s = t_i`` to ``t = t_{i+1}``, ``h = lambda_t - lambda_s`` with
    ``lambda = -log sigma_ve``; model outputs ``m_j`` (data predictions for the ``++`` types, noise
    predictions otherwise) at ``t_i, t_{i-1}, t_{i-2}``; ``D_0 = m_0``,
    ``D_1 = (m_0 - m_1)/r_0`` (order 2) or ``D_1 = D_{1,0} + r_0 (D_{1,0} - D_{1,1})/(r_0 + r_1)``,
    ``D_2 = (D_{1,0} - D_{1,1})/(r_0 + r_1)`` (order 3), ``r_k = h_k / h``.

    ``++`` (eta = 0 ODE, 1 SDE, or k-diffusion's continuous eta): with ``H = (1 + eta) h``,
    ``x' = (sigma_t/sigma_s) e^{-eta h} x + alpha_t sum_k H phi_{k+1}(-H) D_k + s_noise sigma_t sqrt(1 - e^{-2 eta h}) z``.
    Noise predictions (zeta = 1 ODE, 2 SDE):
    ``x' = (alpha_t/alpha_s) x - zeta sigma_t sum_k h phi_{k+1}(h) D_k + sigma_t sqrt(e^{2h} - 1) z`` (SDE).
    ``solver_type="midpoint"`` replaces the ``D_1`` weight of order 2 by half the ``D_0`` weight.
    """
    order = o["solver_order"]
    if order not in (1, 2, 3):
        raise ValueError(f"solver_order must be 1, 2 or 3, got {order!r}")
    algo = o["algorithm_type"]
    if algo not in ALGORITHMS:
        raise ValueError(f"algorithm_type must be one of {ALGORITHMS}, got {algo!r}")
    solver_type = o["solver_type"]
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    data_pred = algo.endswith("++")
    sde = algo.startswith("sde")
    if o["eta"] is None:
        eta = 1.0 if sde else 0.0
    else:
        eta = as_nonnegative_float(o["eta"], "eta")
        if (not sde and eta != 0.0) or (algo == "sde-dpmsolver" and eta != 1.0):
            raise ValueError(f"eta={eta:g} is not available for algorithm_type={algo!r}: the ODE types have eta = 0, "
                             "'sde-dpmsolver' has eta = 1; only 'sde-dpmsolver++' takes any eta >= 0")
    s_noise = as_nonnegative_float(o["s_noise"], "s_noise")
    levels = [_Level(process, t) for t in g]
    n = len(g) - 1
    final_zero = levels[-1].s == 0.0
    fst = o["final_sigmas_type"]
    if fst is not None:
        if fst not in ("zero", "sigma_min"):
            raise ValueError(f"final_sigmas_type must be 'zero', 'sigma_min' or None, got {fst!r}")
        if (fst == "zero") != final_zero:
            raise ValueError(f"final_sigmas_type={fst!r} but the grid ends at sigma = {levels[-1].s:g}; "
                             "a 'zero' grid ends at a time with sigma = 0 (e.g. append t = 0), a 'sigma_min' grid before it")
    K = order
    slots = ("x",) + tuple(("D" if data_pred else "eps") + ("_prev" if j == 1 else f"_prev{j}") for j in range(1, K))
    steps = []
    # history: per slot j (1..K-1), the time level of the stored output and its log-scale (0: the output
    # itself; log alpha: alpha times the output, stored where alpha underflows)
    hist: list[tuple[_Level, float] | None] = [None] * K
    for i in range(n):
        ls, lt = levels[i], levels[i + 1]
        p = _dpm_order(i, n, order, final_zero, o)
        b = StepBuilder(ls.t, lt.t, K)
        b.note = f"order {p}"
        if data_pred:  # used on this step and the next K - 1, the last one with the largest alpha
            f, fscale = _data_stage(b, ls, {0: 1.0}, levels[min(i + K, n)].la)
        else:
            f = b.stage(ls.t, {0: 1.0}, "eps")
            fscale = 0.0
        h = (ls.lsv - lt.lsv) if lt.s > 0 else math.inf
        # m_0, m_1, m_2 as (register, level, log-scale)
        outs = [(f, ls, fscale)] + [(j, hist[j][0], hist[j][1]) for j in range(1, K) if hist[j] is not None]
        if data_pred:
            H = (1.0 + eta) * h
            rho = math.exp(lt.lsv - ls.lsv) if lt.s > 0 else 0.0  # e^{-h}
            x_coef = (lt.s / ls.s) * (rho**eta if eta else 1.0)
            w = [-math.expm1(-H) if math.isfinite(H) else 1.0]  # H phi_1(-H) = 1 - e^{-H}
            if p >= 2:
                w.append(0.5 * w[0] if (solver_type == "midpoint" and p == 2) else H * _phi(2, -H))
            if p >= 3:
                w.append(H * _phi(3, -H))
            noise = s_noise * lt.s * math.sqrt(-math.expm1(-2.0 * eta * h)) if (eta and lt.s > 0) else 0.0
            sign, unit = 1.0, lt.la  # + alpha_t sum w_k D_k
        else:
            zeta = 2.0 if sde else 1.0
            r_a = _noise_step_ratio(f"dpmsolver_multistep (algorithm_type={algo!r})", ls, lt)
            x_coef = r_a
            if math.isfinite(h):
                e1 = h * _phi(1, h)  # e^h - 1
                w = [zeta * e1]
                if p >= 2:
                    w.append(zeta * (0.5 * e1 if solver_type == "midpoint" and p == 2 else h * _phi(2, h)))
                if p >= 3:
                    w.append(zeta * h * _phi(3, h))
                noise = s_noise * lt.s * math.sqrt(math.expm1(2.0 * h)) if sde else 0.0
                wscale = lt.s
            else:  # final sigma = 0: sigma_t (e^h - 1) -> alpha_t sigma_ve(s) (first order only)
                w = [zeta * ls.sv]
                noise = s_noise * lt.a * ls.sv if sde else 0.0  # sigma_t sqrt(e^{2h} - 1) -> alpha_t sigma_ve(s)
                wscale = lt.a
            sign = -1.0
        # D_k in terms of the outputs m_0..m_{p-1}
        Dk: list[dict] = [{0: 1.0}]  # over output indices
        if p >= 2:
            r0 = (outs[1][1].lsv - ls.lsv) / h  # h_0 / h, h_0 = lambda_s0 - lambda_s1
        if p == 2:
            Dk.append({0: 1.0 / r0, 1: -1.0 / r0})
        elif p == 3:
            r1 = (outs[2][1].lsv - outs[1][1].lsv) / h  # h_1 / h
            d10 = {0: 1.0 / r0, 1: -1.0 / r0}
            d11 = {1: 1.0 / r1, 2: -1.0 / r1}
            D1 = lc((1.0 + r0 / (r0 + r1), d10), (-r0 / (r0 + r1), d11))
            D2 = lc((1.0 / (r0 + r1), d10), (-1.0 / (r0 + r1), d11))
            Dk += [D1, D2]
        coef_out: dict[int, float] = {}
        for wk, D in zip(w, Dk):
            for j, c in D.items():
                coef_out[j] = coef_out.get(j, 0.0) + wk * c
        _check_extrapolation(f"dpmsolver_multistep (order {p})", coef_out.values(), x_coef,
                             _exp(lt.la) if data_pred else wscale, ls, lt)
        combo = {0: x_coef}
        for j, c in coef_out.items():
            reg, lvl, lscale = outs[j]
            if data_pred:
                factor = _exp(lt.la - lscale)  # alpha_t / scale of the stored output (finite: see _data_stage)
            else:
                factor = wscale
            combo[reg] = combo.get(reg, 0.0) + sign * c * factor
        if noise:
            combo[b.noise()] = noise
        b.write(0, combo)
        # shift the history: slot 1 <- m_0, slot j <- slot j-1
        for j in range(K - 1, 0, -1):
            b.write(j, {f: 1.0} if j == 1 else {j - 1: 1.0})
        hist = ([None, (ls, fscale)] + hist[1 : K - 1])[:K]
        steps.append(b.build())
    return steps, slots


# ------------------------------------------------------------------------------------------------
# Karras et al. (2022) and k-diffusion: churn, Heun, DPM-Solver-2, LMS, DPM-Solver++ (2S, SDE)
def _normal_levels(name: str, *levels: _Level) -> None:
    for lv in levels:
        if not lv.a > 1e-150:
            raise ValueError(f"sampler {name!r} works in the VE state x/alpha, and alpha(t) = {lv.a:.3g} underflows at "
                             f"t = {lv.t:g} (1/alpha is beyond float64); start the grid at a smaller time (T or grid[0])")


_CHURN = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": math.inf, "s_noise": 1.0}


def _churn_gamma(o: dict, sv: float, n_steps: int) -> float:
    """Karras et al. (2022) Alg. 2: ``gamma = min(S_churn / N, sqrt(2) - 1)`` on ``[S_tmin, S_tmax]``, else 0."""
    s_churn = as_nonnegative_float(o["s_churn"], "s_churn")
    s_tmin = as_nonnegative_float(o["s_tmin"], "s_tmin")
    s_tmax = float(o["s_tmax"])
    if not (s_tmax >= 0):
        raise ValueError(f"s_tmax must be a non-negative number (inf allowed), got {o['s_tmax']!r}")
    return min(s_churn / n_steps, math.sqrt(2.0) - 1.0) if s_tmin <= sv <= s_tmax else 0.0


class _VE:
    """Write a VE-state step: combinations are of ``x_ve`` units, registers of the VP state.

    ``pt(combo, lv)`` is the VP point ``alpha(lv) * combo`` (the model input at level lv) and
    ``x(c)`` the combination ``c x_ve = (c / alpha_t) x``."""

    def __init__(self, b: StepBuilder, lv: _Level):
        self.b, self.lv = b, lv

    def x(self, c: float = 1.0) -> dict:
        return {0: c / self.lv.a}

    def eps(self, combo_ve: dict, lv: _Level) -> int:
        return self.b.stage(lv.t, lc((lv.a, combo_ve)), "eps")

    def x0(self, combo_ve: dict, lv: _Level) -> int:
        return self.b.stage(lv.t, lc((lv.a, combo_ve)), "x0")

    def write(self, combo_ve: dict, ln: _Level) -> None:
        self.b.write(0, lc((ln.a, combo_ve)))


def _churned(ve: _VE, process, o, n_steps, name):
    """x_hat = x + s_noise sqrt(s_hat^2 - s^2) z at s_hat = s (1 + gamma); returns (x_hat combo, level of s_hat)."""
    lv = ve.lv
    gamma = _churn_gamma(o, lv.sv, n_steps)
    s_noise = as_nonnegative_float(o["s_noise"], "s_noise")
    xh = ve.x()
    if gamma > 0:
        sh = lv.sv * (1.0 + gamma)
        lh = _Level(process, _time_at(process, sh, f"s_churn={o['s_churn']:g} (sampler {name!r})"))
        if s_noise:
            xh = lc((1.0, xh), (s_noise * lv.sv * math.sqrt(gamma * (2.0 + gamma)), ve.b.noise()))
        return xh, lh, sh, gamma
    return xh, lv, lv.sv, 0.0


def _build_churn_family(name: str):
    def build(process, g, o):
        n = len(g) - 1
        if o.get("churn_at", "noised") not in ("noised", "start"):
            raise ValueError(f"churn_at must be 'noised' (Karras Alg. 2, k-diffusion) or 'start' (diffusers), got {o['churn_at']!r}")
        steps = []
        for k in range(n):
            lv, ln = _Level(process, g[k]), _Level(process, g[k + 1])
            if name == "euler_ve" and not _churn_gamma(o, lv.sv, n):
                # no churn on this step: Euler in the VE state is x'_ve = rho x_ve + (1 - rho) D, rho = s'/s
                # (DDIM); written through the data prediction, it stays accurate where alpha underflows
                rho = math.exp(ln.lsv - lv.lsv) if ln.s > 0 else 0.0
                steps.append(_first_order(lv, ln, ln.s / lv.s if ln.s > 0 else 0.0, 1.0 - rho))
                continue
            _normal_levels(name, lv)
            _noise_step_ratio(name, lv, ln)  # x'_ve = x_ve + c eps_hat: x' = (alpha'/alpha) x + ...
            b = StepBuilder(lv.t, ln.t, 1)
            ve = _VE(b, lv)
            xh, lh, sh, gamma = _churned(ve, process, o, n, name)
            if gamma:
                b.note = f"churn gamma={gamma:.4g}"
            if name == "euler_ve" and o["churn_at"] == "start":
                e1 = ve.eps(ve.x(), lv)  # diffusers: the model sees x_i at sigma_i, the noise is added after
            else:
                e1 = ve.eps(xh, lh)
            if name == "euler_ve" or ln.s == 0.0:
                ve.write(lc((1.0, xh), (ln.sv - sh, e1)), ln)  # Euler (also the last step of Heun / DPM-2 to sigma = 0)
            elif name == "heun_ve":
                x2 = lc((1.0, xh), (ln.sv - sh, e1))
                e2 = ve.eps(x2, ln)
                ve.write(lc((1.0, xh), (0.5 * (ln.sv - sh), e1), (0.5 * (ln.sv - sh), e2)), ln)
            else:  # dpm_2: midpoint in log sigma
                s_mid = math.exp(0.5 * (math.log(sh) + math.log(ln.sv)))
                lm = _Level(process, _time_at(process, s_mid, f"sampler {name!r}"))
                x2 = lc((1.0, xh), (s_mid - sh, e1))
                e2 = ve.eps(x2, lm)
                ve.write(lc((1.0, xh), (ln.sv - sh, e2)), ln)
            steps.append(b.build())
        return steps, ("x",)

    return build


def _build_dpm_2_ancestral(process, g, o):
    eta = as_nonnegative_float(o["eta"], "eta")
    s_noise = as_nonnegative_float(o["s_noise"], "s_noise")
    steps = []
    for k in range(len(g) - 1):
        lv, ln = _Level(process, g[k]), _Level(process, g[k + 1])
        _normal_levels("dpm_2_ancestral", lv)
        _noise_step_ratio("dpm_2_ancestral", lv, ln)
        b = StepBuilder(lv.t, ln.t, 1)
        ve = _VE(b, lv)
        rho = ln.sv / lv.sv
        down, up = _ancestral(lv.sv, ln.sv, eta, rho)
        s_down, s_up = ln.sv * down, ln.sv * up
        e1 = ve.eps(ve.x(), lv)
        if s_down == 0.0:  # Euler to sigma_down = 0; k-diffusion adds no noise on this branch
            ve.write(lc((1.0, ve.x()), (-lv.sv, e1)), ln)
        else:
            s_mid = math.exp(0.5 * (math.log(lv.sv) + math.log(s_down)))
            lm = _Level(process, _time_at(process, s_mid, "sampler 'dpm_2_ancestral'"))
            e2 = ve.eps(lc((1.0, ve.x()), (s_mid - lv.sv, e1)), lm)
            out = lc((1.0, ve.x()), (s_down - lv.sv, e2))
            if s_up and s_noise:
                out = lc((1.0, out), (s_noise * s_up, b.noise()))
            ve.write(out, ln)
        steps.append(b.build())
    return steps, ("x",)


def lms_coefficients(sigmas: Sequence[float], i: int, order: int) -> list[float]:
    r"""Linear multistep weights in sigma: ``c_j = int_{s_i}^{s_{i+1}} prod_{k != j} (tau - s_{i-k}) /
    (s_{i-j} - s_{i-k}) d tau`` for ``j = 0..order-1`` (Lagrange basis through the last ``order`` noise
    levels, integrated over the step).

    The polynomial is built in ``u = tau - s_i`` and integrated exactly (``numpy.polynomial``), not by
    adaptive quadrature as k-diffusion does (``scipy.integrate.quad`` with ``epsrel=1e-4``, which is
    exact for these low-degree polynomials up to round-off).

    >>> [round(c, 12) for c in lms_coefficients([3.0, 2.0, 1.0], 1, 2)]  # Adams-Bashforth 2: h (3/2, -1/2)
    [-1.5, 0.5]
    """
    from numpy.polynomial import polynomial as P

    if order - 1 > i:
        raise ValueError(f"order {order} is too high for step {i}")
    # the weights scale with the sigmas (c_j(k s) = k c_j(s)): computed on sigmas of order 1, so that the
    # products of up to four differences do not overflow at sigma_ve ~ 1e100
    top = max(abs(float(v)) for v in sigmas[max(i - order + 1, 0) : i + 2])
    unit = top if top > 1e50 else 1.0
    s = [float(v) / unit for v in sigmas]
    h = s[i + 1] - s[i]
    out = []
    for j in range(order):
        roots = [s[i - k] - s[i] for k in range(order) if k != j]
        denom = math.prod(s[i - j] - s[i - k] for k in range(order) if k != j)
        poly = P.polyint(P.polyfromroots(roots) if roots else np.array([1.0]))
        out.append(float(P.polyval(h, poly) - P.polyval(0.0, poly)) / denom * unit)
    return out


def _build_lms(process, g, o):
    order = o["order"]
    if order not in (1, 2, 3, 4):
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")
    levels = [_Level(process, t) for t in g]
    sv = [lv.sv for lv in levels]
    K = order
    slots = ("x",) + tuple("eps_prev" + ("" if j == 1 else str(j)) for j in range(1, K))
    steps = []
    for i in range(len(g) - 1):
        lv, ln = levels[i], levels[i + 1]
        _normal_levels("lms", lv)
        _noise_step_ratio("lms", lv, ln)
        b = StepBuilder(lv.t, ln.t, K)
        ve = _VE(b, lv)
        d = ve.eps(ve.x(), lv)  # k-diffusion's d = (x - D)/sigma is the noise prediction
        p = min(i + 1, order)
        b.note = f"order {p}"
        c = lms_coefficients(sv, i, p)
        ve.write(lc((1.0, ve.x()), (c[0], d), *[(c[j], j) for j in range(1, p)]), ln)
        for j in range(K - 1, 0, -1):
            b.write(j, {d: 1.0} if j == 1 else {j - 1: 1.0})
        steps.append(b.build())
    return steps, slots


def _build_dpmpp_2s_ancestral(process, g, o):
    eta = as_nonnegative_float(o["eta"], "eta")
    s_noise = as_nonnegative_float(o["s_noise"], "s_noise")
    steps = []
    for k in range(len(g) - 1):
        lv, ln = _Level(process, g[k]), _Level(process, g[k + 1])
        _normal_levels("dpmpp_2s_ancestral", lv)
        b = StepBuilder(lv.t, ln.t, 1)
        ve = _VE(b, lv)
        down, up = _ancestral(lv.sv, ln.sv, eta, ln.sv / lv.sv)
        s_down, s_up = ln.sv * down, ln.sv * up
        D = ve.x0(ve.x(), lv)
        if s_down == 0.0:  # Euler: x + (0 - s) (x - D)/s = D
            out = {D: 1.0}
        else:
            # t = -log s, h = log(s/s_down), midpoint s_mid = exp(-(t + h/2)) = sqrt(s s_down)
            s_mid = math.exp(0.5 * (math.log(lv.sv) + math.log(s_down)))
            lm = _Level(process, _time_at(process, s_mid, "sampler 'dpmpp_2s_ancestral'"))
            x2 = lc((s_mid / lv.sv, ve.x()), (-(s_mid / lv.sv - 1.0), D))  # (sigma_s/sigma_t) x - expm1(-h r) D
            D2 = ve.x0(x2, lm)
            out = lc((s_down / lv.sv, ve.x()), (-(s_down / lv.sv - 1.0), D2))
        if ln.s > 0 and s_up and s_noise:
            out = lc((1.0, out), (s_noise * s_up, b.noise()))
        ve.write(out, ln)
        steps.append(b.build())
    return steps, ("x",)


def _build_dpmpp_sde(process, g, o):
    eta = as_nonnegative_float(o["eta"], "eta")
    s_noise = as_nonnegative_float(o["s_noise"], "s_noise")
    r = float(o["r"])
    if not 0.0 < r <= 1.0:
        raise ValueError(f"r must lie in (0, 1], got {o['r']!r}")
    if o["noise"] not in ("independent", "brownian"):
        raise ValueError(f"noise must be 'independent' or 'brownian', got {o['noise']!r}")
    fac = 1.0 / (2.0 * r)
    steps = []
    for k in range(len(g) - 1):
        lv, ln = _Level(process, g[k]), _Level(process, g[k + 1])
        _normal_levels("dpmpp_sde", lv)
        b = StepBuilder(lv.t, ln.t, 1)
        ve = _VE(b, lv)
        D = ve.x0(ve.x(), lv)
        if ln.s == 0.0:
            ve.write({D: 1.0}, ln)
            steps.append(b.build())
            continue
        s = lv.sv
        s_mid = math.exp((1.0 - r) * math.log(s) + r * math.log(ln.sv))  # sigma(t + r h)
        lm = _Level(process, _time_at(process, s_mid, "sampler 'dpmpp_sde'"))
        d1, u1 = _ancestral(s, s_mid, eta, s_mid / s)
        sd1, su1 = s_mid * d1, s_mid * u1
        d2, u2 = _ancestral(s, ln.sv, eta, ln.sv / s)
        sd2, su2 = ln.sv * d2, ln.sv * u2
        z1 = z2 = None
        if s_noise and su1:
            z1 = b.noise()
        if s_noise and su2:
            z2 = b.noise()
        # step 1: x_2 = (sd/s) x - expm1(log(sd/s)) D + s_noise su z_1
        x2 = lc((sd1 / s, ve.x()), (-(sd1 / s - 1.0), D))
        if z1 is not None:
            x2 = lc((1.0, x2), (s_noise * su1, z1))
        D2 = ve.x0(x2, lm)
        Dd = lc((1.0 - fac, D), (fac, D2))
        out = lc((sd2 / s, ve.x()), (-(sd2 / s - 1.0), Dd))
        if z2 is not None:
            if o["noise"] == "brownian" and z1 is not None:
                # torchsde Brownian-tree increments over [s_mid, s] and [s', s] (sigma as time): the second
                # normalised increment has correlation sqrt((s - s_mid)/(s - s')) with the first
                rho = math.sqrt((s - s_mid) / (s - ln.sv))
                out = lc((1.0, out), (s_noise * su2 * rho, z1), (s_noise * su2 * math.sqrt(max(1.0 - rho * rho, 0.0)), z2))
            else:
                out = lc((1.0, out), (s_noise * su2, z2))
        b.note = f"{'Brownian' if o['noise'] == 'brownian' else 'independent'} noise" if (z1 is not None or z2 is not None) else ""
        ve.write(out, ln)
        steps.append(b.build())
    return steps, ("x",)


# ------------------------------------------------------------------------------------------------
# registry entries
_register("ddpm", r"""
Ancestral sampling, Ho et al. (2020) eq. (11), on any decreasing subsequence of times with the
skip-step ``beta~ = 1 - alpha_bar_t / alpha_bar_prev``:
``x' = (x - beta~/sqrt(1 - alpha_bar_t) eps_hat) / sqrt(1 - beta~) + nu z`` with
``nu^2 = beta~`` (``variance="beta"``) or ``(1 - alpha_bar_prev)/(1 - alpha_bar_t) beta~``
(``"beta_tilde"``); no noise on the final step unless ``final_noise=True``.""",
          _build_ddpm, {"variance": "beta", "final_noise": False})
_register("ddim", r"""
Song, Meng & Ermon (2021) eq. (12): ``x' = sqrt(alpha_bar') x0_hat + sqrt(1 - alpha_bar' - nu^2)
eps_hat + nu z`` with ``nu = eta sqrt((1 - alpha_bar')/(1 - alpha_bar)) sqrt(1 - alpha_bar/alpha_bar')``.""",
          _build_ddim, {"eta": 0.0})
_register("euler_maruyama", r"""
Reverse SDE ``dx = [f x - g^2 score] dt + g dW`` (Song et al. 2021), VP: ``f = -beta/2, g^2 = beta``;
``x' = (1 + h beta_k/2) x + h beta_k score(x, t_k) + sqrt(h beta_k) z``, ``h = t_k - t_{k+1}``.""",
          _build_vp("euler_maruyama"), continuous_only=True)
_register("exponential_integrator", r"""
Linear part exact, score frozen at ``t_k`` (Pierret & Galerne 2025, eq. 13):
``x' = E x + 2 (E - 1) score(x, t_k) + sqrt(E^2 - 1) z``, ``E = exp((B(t_k) - B(t_{k+1}))/2)``.""",
          _build_vp("exponential_integrator"), continuous_only=True)
_register("euler", r"""
Probability-flow ODE ``dx/dt = f x - g^2/2 score`` in the VP state:
``x' = (1 + h beta_k/2) x + (h beta_k/2) score(x, t_k)``.""",
          _build_vp("euler"), continuous_only=True)
_register("heun", r"""
Heun's second-order method on the probability-flow ODE *in the VP state* ``x`` with time ``t``
(predictor ``x~ = x + h v(x, t_k)``, corrector ``x' = x + h/2 (v(x, t_k) + v(x~, t_{k+1}))``,
``v = beta/2 (x + score)``).  This is not Karras et al.'s Heun (k-diffusion ``sample_heun``,
diffusers ``HeunDiscreteScheduler``), which integrates in the VE state ``x/alpha`` with respect to
``sigma_ve``: see ``"heun_ve"``.  The two differ: on a 12-step Karras grid (rho = 7, sigma_ve 80 -> 0.02,
then 0) from the exact start, data variances (4, 0.25, 0.01) come out as (4.259, 0.2165, 0.00550) with
``"heun"`` and (4.592, 0.3072, 0.01343) with ``"heun_ve"`` (-7 %, -30 %, -59 %).  A step that ends at ``sigma = 0`` uses Euler, because the score is
generally undefined there; ``heun_at_zero=True`` forces the corrector.""",
          _build_vp("heun"), {"heun_at_zero": False}, continuous_only=True)
_register("euler_ve", r"""
Euler on the probability-flow ODE in the variance-exploding state ``x/alpha`` with noise level
``sigma_ve = sigma/alpha`` (Karras et al. 2022, Alg. 1; diffusers ``EulerDiscreteScheduler``):
``x'/alpha' = x/alpha + (sigma_ve' - sigma_ve) eps_hat(x, t)``.  With churn (Karras Alg. 2, options as
``"heun_ve"``): ``x_hat = x_ve + s_noise sqrt(s_hat^2 - s^2) z``, ``x'_ve = x_hat + (s' - s_hat) eps_hat``, the
model evaluated at ``(x_hat, s_hat)`` (``churn_at="noised"``: Karras, k-diffusion ``sample_euler``) or at
``(x, s)`` before the noise is added (``churn_at="start"``: diffusers ``EulerDiscreteScheduler``).""",
          _build_churn_family("euler_ve"), dict(_CHURN, churn_at="noised"))
_register("euler_ancestral", r"""
k-diffusion ``sample_euler_ancestral`` / diffusers ``EulerAncestralDiscreteScheduler``: with
``sigma_up = min(s', eta sqrt(s'^2 (s^2 - s'^2)/s^2))``, ``sigma_down = sqrt(s'^2 - sigma_up^2)``
(``s = sigma_ve``), ``x'/alpha' = x/alpha + (sigma_down - s) eps_hat + s_noise sigma_up z``.""",
          _build_euler_ancestral, {"eta": 1.0, "s_noise": 1.0})
_DPM_DEFAULTS = {"solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
                 "lower_order_final": True, "euler_at_final": False, "final_sigmas_type": None, "eta": None,
                 "s_noise": 1.0}
_register("dpmpp_2m", r"""
DPM-Solver++(2M) (Lu et al. 2022b; diffusers ``DPMSolverMultistepScheduler`` defaults: dpmsolver++,
midpoint): with data predictions ``D_i``, ``h = lambda' - lambda``, ``lambda = log(alpha/sigma)``,
``r = h_prev/h``: ``x' = (sigma'/sigma) x - alpha' (e^{-h} - 1) (D_i + (D_i - D_{i-1})/(2r))``; the first
step, and the last one when it ends at ``sigma = 0`` or (``lower_order_final``) when there are fewer
than 15 steps, are first order (DDIM).  The state is ``(x, D_prev)``.  ``lower_order_final=False`` is
k-diffusion's ``sample_dpmpp_2m``.  A special case of ``"dpmsolver_multistep"``.""",
          lambda p, g, o: _build_dpm_multistep(p, g, dict(_DPM_DEFAULTS, lower_order_final=o["lower_order_final"],
                                                          schedule="diffusers")),
          {"lower_order_final": True})
_register("heun_ve", r"""
Heun's method in the VE state (Karras et al. 2022, Alg. 1 and Alg. 2 with churn; k-diffusion
``sample_heun``, diffusers ``HeunDiscreteScheduler``): with ``x_ve = x/alpha``, ``s = sigma_ve`` and churn
``x_hat = x_ve + s_noise sqrt(s_hat^2 - s^2) z``, ``s_hat = s (1 + gamma)``,
``gamma = min(s_churn/N, sqrt(2) - 1)`` for ``s_tmin <= s <= s_tmax`` (N steps), ``d = eps_hat(x_hat, s_hat)``,
``x~ = x_hat + (s' - s_hat) d``, ``x'_ve = x_hat + (s' - s_hat) (d + eps_hat(x~, s'))/2``; Euler on a step
to ``s' = 0``.""", _build_churn_family("heun_ve"), dict(_CHURN))
_register("dpm_2", r"""
k-diffusion ``sample_dpm_2`` (diffusers ``KDPM2DiscreteScheduler``): Karras's DPM-Solver-2 variant with
churn as ``"heun_ve"``; midpoint ``s_mid = exp((log s_hat + log s')/2)``,
``x~ = x_hat + (s_mid - s_hat) eps_hat(x_hat, s_hat)``, ``x'_ve = x_hat + (s' - s_hat) eps_hat(x~, s_mid)``;
Euler on a step to ``s' = 0``.""", _build_churn_family("dpm_2"), dict(_CHURN), off_grid=True)
_register("dpm_2_ancestral", r"""
k-diffusion ``sample_dpm_2_ancestral`` (diffusers ``KDPM2AncestralDiscreteScheduler``): DPM-2 to
``sigma_down`` (as ``"euler_ancestral"``) through ``s_mid = exp((log s + log sigma_down)/2)``, then
``+ s_noise sigma_up z``; when ``sigma_down = 0`` one Euler step and no noise.""",
          _build_dpm_2_ancestral, {"eta": 1.0, "s_noise": 1.0}, off_grid=True)
_register("lms", r"""
Linear multistep in ``sigma_ve`` (k-diffusion ``sample_lms``, diffusers ``LMSDiscreteScheduler``):
``x'_ve = x_ve + sum_{j<p} c_j d_{i-j}`` with ``d_i = eps_hat(x_i, s_i)``, order ``p = min(i + 1, order)`` and
``c_j`` the integral over ``[s_i, s_{i+1}]`` of the Lagrange basis polynomial through ``s_i..s_{i-p+1}``
(integrated exactly: :func:`lindiff.samplers.lms_coefficients`).  The state is ``(x, d_{i-1}, ...)``.""",
          _build_lms, {"order": 4})
_register("dpmpp_2s_ancestral", r"""
k-diffusion ``sample_dpmpp_2s_ancestral`` (Lu et al. 2022b, DPM-Solver++(2S) with ancestral noise):
to ``sigma_down`` through ``s_mid = sqrt(s sigma_down)`` with data predictions ``D``:
``x~ = (s_mid/s) x_ve - (s_mid/s - 1) D(x_ve, s)``, ``x'_ve = (sigma_down/s) x_ve - (sigma_down/s - 1) D(x~, s_mid)
+ s_noise sigma_up z``; ``x'_ve = D`` when ``sigma_down = 0``.""",
          _build_dpmpp_2s_ancestral, {"eta": 1.0, "s_noise": 1.0}, off_grid=True)
_register("dpmpp_sde", r"""
k-diffusion ``sample_dpmpp_sde`` (DPM-Solver++ SDE, Lu et al. 2022b; diffusers ``DPMSolverSDEScheduler``):
``s_mid = s^{1-r} s'^r``; ancestral steps (``eta``) to ``s_mid`` and to ``s'``:
``x~ = (sd_1/s) x_ve - (sd_1/s - 1) D + s_noise su_1 z_1``,
``x'_ve = (sd_2/s) x_ve - (sd_2/s - 1) ((1 - 1/(2r)) D + D(x~, s_mid)/(2r)) + s_noise su_2 z_2``; ``x'_ve = D``
on a step to 0.  ``noise="independent"`` draws ``z_1, z_2`` independently (a ``noise_sampler`` of
independent draws); ``"brownian"`` gives them the correlation ``sqrt((s - s_mid)/(s - s'))`` of
k-diffusion's default ``BrownianTreeNoiseSampler`` (increments of one Brownian path in sigma).""",
          _build_dpmpp_sde, {"eta": 1.0, "s_noise": 1.0, "r": 0.5, "noise": "independent"}, off_grid=True)
_register("dpmsolver_multistep", r"""
The DPM-Solver multistep family (Lu et al. 2022a, 2022b; diffusers ``DPMSolverMultistepScheduler``):
``solver_order`` 1-3; ``algorithm_type`` ``"dpmsolver++"`` / ``"sde-dpmsolver++"`` (data predictions),
``"dpmsolver"`` / ``"sde-dpmsolver"`` (noise predictions); ``solver_type`` ``"midpoint"`` or ``"heun"``
(order 2).  Every weight is the exact integral of the exponential kernel against the Newton
polynomial of the stored outputs: ``x' = (sigma'/sigma) e^{-eta h} x + alpha' sum_k H phi_{k+1}(-H) D_k
+ s_noise sigma' sqrt(1 - e^{-2 eta h}) z`` (``H = (1 + eta) h``, ``eta`` 0 for the ODE, 1 for the SDE;
``sde-dpmsolver++`` takes any ``eta``), and ``x' = (alpha'/alpha) x - zeta sigma' sum_k h phi_{k+1}(h) E_k
(+ sigma' sqrt(e^{2h} - 1) z)`` with ``zeta`` = 1 (ODE) or 2 (SDE) for noise predictions.  diffusers'
order schedule: the first step is first order, the second at most second order; the last step is first
order with ``euler_at_final``, when it ends at ``sigma = 0`` (``final_sigmas_type="zero"``), or with
``lower_order_final`` and fewer than 15 steps (which also lowers the second-to-last step to order 2).
``final_sigmas_type`` (``"zero"``/``"sigma_min"``) only checks the grid's end.""",
          lambda p, g, o: _build_dpm_multistep(p, g, dict(o, schedule="diffusers")), dict(_DPM_DEFAULTS))
_register("dpmpp_2m_sde", r"""
k-diffusion ``sample_dpmpp_2m_sde``: ``sde-dpmsolver++`` of order 2 with continuous ``eta`` (default 1),
``s_noise`` and ``solver_type`` ``"midpoint"`` (default) or ``"heun"``; first order on the first step and
``x' = D`` on a step to 0, second order otherwise (no lower-order final steps).""",
          lambda p, g, o: _build_dpm_multistep(p, g, dict(_DPM_DEFAULTS, algorithm_type="sde-dpmsolver++", eta=o["eta"],
                                                          s_noise=o["s_noise"], solver_type=o["solver_type"],
                                                          schedule="kdiffusion")),
          {"eta": 1.0, "s_noise": 1.0, "solver_type": "midpoint"})
_register("dpmpp_3m_sde", r"""
k-diffusion ``sample_dpmpp_3m_sde``: ``sde-dpmsolver++`` of order 3 (orders 1, 2, 3, 3, ...; ``x' = D`` on a
step to 0) with continuous ``eta`` (default 1) and ``s_noise``; the order-2 step uses the ``"heun"`` weight
``H phi_2(-H)``, as k-diffusion does.""",
          lambda p, g, o: _build_dpm_multistep(p, g, dict(_DPM_DEFAULTS, algorithm_type="sde-dpmsolver++", solver_order=3,
                                                          eta=o["eta"], s_noise=o["s_noise"], solver_type="heun",
                                                          schedule="kdiffusion")),
          {"eta": 1.0, "s_noise": 1.0})

_register("sde", r"""
The exact continuous-time reverse SDE from ``T`` (or the first grid time) to ``t_min``.  For an exact
Gaussian score (data ``N(m, S)``, per eigenvalue ``lambda_t = alpha_t^2 l + sigma_t^2``) the solution
map is closed form: ``x_t - alpha_t m = (alpha_T lambda_t)/(alpha_t lambda_T) (x_T - alpha_T m) +
N(0, lambda_t - (alpha_T/alpha_t)^2 lambda_t^2/lambda_T)``, which from ``N(0, I)`` gives Pierret &
Galerne's eq. (8).  Other affine models integrate the moment ODEs numerically (``rtol``, default
1e-10) in the variable ``B(t)`` (non-stiff however fast the schedule).""")
_register("ode", r"""
The exact probability-flow ODE solution: ``x_t - alpha_t m = sqrt(lambda_t/lambda_T) (x_T - alpha_T m)``
for an exact Gaussian score (Pierret & Galerne's eq. 7); moment ODEs otherwise (as ``"sde"``).""")

from ._samplers_diffusers import register as _register_diffusers  # noqa: E402 (UniPC, DEIS, PNDM, ...)

_register_diffusers(_register)

SAMPLERS = tuple(_REGISTRY)
_CONTINUOUS_ONLY = tuple(s.name for s in _REGISTRY.values() if s.continuous_only) + ("sde", "ode")
__doc__ = __doc__.replace("<<SAMPLERS>>", _sampler_docs())


# ------------------------------------------------------------------------------------------------
def _freeze(value):
    """A cache key for an argument: with its type, so that values equal under ``==`` but validated differently
    (``True`` and ``1``, ``"1"``) never share a program (a bool ``steps`` must be rejected, not served the
    program built for ``steps=1``)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_freeze(v) for v in value)
    return (type(value).__name__, value)


def _resolve(sampler: str, options: dict, caller: str) -> tuple[_Spec, dict, dict]:
    if not isinstance(sampler, str) or sampler not in _REGISTRY:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    spec = _REGISTRY[sampler]
    grid_opts = {k: options[k] for k in GRID_OPTIONS if k in options}
    unknown = [k for k in options if k not in GRID_OPTIONS and k not in spec.options]
    if unknown:
        accepted = ", ".join(list(spec.options) + list(GRID_OPTIONS))
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r} for sampler {sampler!r} "
                        f"(it accepts: {accepted})")
    opts = dict(spec.options)
    opts.update({k: v for k, v in options.items() if k in spec.options})
    return spec, grid_opts, opts


_PROGRAMS: "OrderedDict[tuple, tuple]" = OrderedDict()
_PROGRAM_CACHE_SIZE = 256  # a table of samplers x grids x truncations reuses every program it builds


def build_sampler(process: Process, sampler: str, steps: int | None = None, t_min: float = 0.0, **options) -> SamplerProgram:
    """Unroll ``sampler`` on its time grid (see the module docstring for every sampler and option).

    Programs are immutable and cached per (process, sampler, steps, t_min, options), so sweeps over
    training sets build each one once.

    >>> from lindiff import SigmaVP
    >>> prog = build_sampler(SigmaVP(80.0), "dpmpp_2m", grid=[80.0, 10.0, 1.0, 0.0])
    >>> prog.slots, [st.note for st in prog.steps]
    (('x', 'D_prev'), ['order 1', 'order 2', 'order 1'])
    """
    return _build(process, sampler, steps, t_min, options, "build_sampler")


def _build(process, sampler, steps, t_min, options, caller) -> SamplerProgram:
    spec, grid_opts, opts = _resolve(sampler, options, caller)
    try:
        key = (id(process), sampler, _freeze(steps), _freeze(t_min), tuple(sorted((k, _freeze(v)) for k, v in options.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None:
        hit = _PROGRAMS.get(key)
        if hit is not None and hit[0] is process:
            _PROGRAMS.move_to_end(key)
            return hit[1]
    prog = _build_program(process, spec, steps, t_min, grid_opts, opts)
    if key is not None:
        _PROGRAMS[key] = (process, prog)
        while len(_PROGRAMS) > _PROGRAM_CACHE_SIZE:  # least recently used first
            _PROGRAMS.popitem(last=False)
    return prog


def _build_program(process, spec: _Spec, steps, t_min, grid_opts, opts) -> SamplerProgram:
    if not isinstance(process, Process):
        raise TypeError(f"process must be a lindiff process, got {type(process).__name__}")
    sampler = spec.name
    if process.discrete and (spec.continuous_only or spec.off_grid or spec.build is None):
        raise ValueError(f"sampler {sampler!r} needs a continuous process (VP, OU, SigmaVP); on a DDPM process use one "
                         f"of {', '.join(s.name for s in _REGISTRY.values() if not (s.continuous_only or s.off_grid or s.build is None))}")
    g = _grid(process, sampler, steps, t_min, grid_opts.get("grid"), grid_opts.get("timesteps"),
              grid_opts.get("spacing", "leading"), grid_opts.get("steps_offset", 0))
    if spec.build is None:
        return SamplerProgram(sampler, process, g, (), opts)
    if float(process.sigma(g[0])) == 0.0:
        raise ValueError("the grid must start at a time with sigma > 0")
    if not process.discrete:
        g = np.asarray(process.check_time(g, "grid"), float)
    # a coefficient beyond float64 becomes inf (numpy) or OverflowError (math) in the builders; both end in
    # the one ValueError below, which names the step and what to change
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            step_list, slots = spec.build(process, g, opts)
    except OverflowError:
        step_list, slots = None, ()
    bad = None if step_list is not None else (g[0], g[-1])
    for st in step_list or ():
        vals = [c for row in st.writes for c in row] + [c for sg in st.stages for c in sg.inputs]
        if not all(math.isfinite(c) for c in vals):
            bad = (st.t, st.t_next)
            break
    if bad is not None:
        lv, ln = _Level(process, bad[0]), _Level(process, bad[1])
        raise ValueError(f"sampler {sampler!r} has a coefficient beyond the float64 range on the step t = {bad[0]:g} -> "
                         f"{bad[1]:g} (log alpha goes from {lv.la:.4g} to {ln.la:.4g}, log(sigma/alpha) from {lv.lsv:.4g} "
                         f"to {ln.lsv:.4g}): the grid reaches noise levels float64 cannot hold, or the step spans too much "
                         "of the schedule; start the grid at a smaller time (T or grid[0]) or use more steps")
    return SamplerProgram(sampler, process, g, tuple(step_list), opts, tuple(slots))


# ------------------------------------------------------------------------------------------------
_NAMES_OF_KIND = {"score": "score", "eps": "eps_hat", "x0": "x0_hat", "ax0": "alpha x0_hat"}


def _expr(coefs, names) -> str:
    parts = [f"{c:.6g}·{n}" for c, n in zip(coefs, names) if c != 0]
    return " + ".join(parts).replace("+ -", "- ") if parts else "0"


def sampler_table(process: Process, sampler: str, steps: int | None = None, t_min: float = 0.0, **options) -> Table:
    """The per-step affine coefficients a sampler runs: "which equations does this sampler run?".

    One row per model evaluation (stage): its time, what it evaluates (score, ``eps_hat`` or
    ``x0_hat``), the point it is evaluated at, and on the first row of each step the update of ``x``
    (``a`` on x, ``c`` on each stage, noise std ``nu``) and of the history slots of multistep solvers.
    Noise draws are named ``z1, z2, ...`` per step.

    >>> from lindiff import VP
    >>> table = sampler_table(VP.linear(), "heun", steps=3)
    >>> len(table.rows)  # two stages, then Euler on the step that ends at sigma = 0
    3
    """
    prog = _build(process, sampler, steps, t_min, options, "sampler_table")
    if not prog.steps:
        raise ValueError(f"{sampler!r} is a continuous-time solution without steps; see sampling_law's docstring")
    rows = []
    K = len(prog.slots)
    for k, st in enumerate(prog.steps):
        names = list(prog.slots) + [f"z{n + 1}" for n in range(st.noises)] + [f"f{j + 1}" for j in range(len(st.stages))]
        hist = "; ".join(f"{prog.slots[i]} <- {_expr(row, names)}" for i, row in enumerate(st.writes[1:], 1))
        others = _expr(st.writes[0][1:K], names[1:K]) if K > 1 else None
        for j, stage in enumerate(st.stages):
            first = j == 0
            rows.append([k, st.t, st.t_next, st.note or None, f"f{j + 1}", stage.t, _NAMES_OF_KIND[stage.kind],
                         _expr(stage.inputs, names), st.writes[0][0] if first else None, st.writes[0][K + st.noises + j],
                         st.noise_std if first else None, others if first else None, (hist or None) if first else None])
    cols = [Column("step"), Column("t"), Column("t_next"), Column("order", note="method order used on this step"),
            Column("stage"), Column("t_eval"), Column("output", note="what the model returns at this stage"),
            Column("model input", note="point the model is evaluated at (slots, noises z, earlier stages f)"),
            Column("a", note="coefficient on x in x_next"),
            Column("c", note="coefficient on this stage's output in x_next"),
            Column("nu", note="std of the N(0, I) noise added to x_next"),
            Column("x_next history terms", note="terms of x_next on the multistep slots"),
            Column("history", note="updates of the multistep slots")]
    caption = (f"{sampler} on {process!r}: x_next = a x + sum_j c_j f_j + nu z"
               + (f" + (history slots {', '.join(prog.slots[1:])})" if K > 1 else ""))
    return Table(caption, cols, rows)


# ------------------------------------------------------------------------------------------------
# exact interpreter
def _same_process(a: Process, b: Process) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, DDPM):
        return np.array_equal(a.betas, b.betas)
    if isinstance(a, SigmaVP):
        return a.sigma_max == b.sigma_max
    return (a.beta_min, a.beta_max, a.T) == (b.beta_min, b.beta_max, b.T)


def _law_scale(model: AffineModel, start: Gaussian | None) -> float:
    """"Numerically zero" is judged against the problem's scale: the start law and the model's spectrum."""
    scale = 1.0 if start is None else float(start.eigenvalues.max(initial=0.0))
    if model.spectral is not None:
        scale = max(scale, float(model.spectral.eigenvalues.max(initial=0.0)))
    return scale


def _spectral_law(model: AffineModel, sampler: str, acc, start: Gaussian | None) -> Gaussian:
    """The law from the per-mode map ``x_U -> M x_U + m + N(0, Q)`` in the model's eigenbasis."""
    _finite_law(sampler, acc.M, acc.m, acc.Q)
    scale = _law_scale(model, start)
    U = model.spectral.basis
    if start is None:
        return Gaussian._in_basis(acc.M**2 + acc.Q, U, acc.m, scale)
    start_mean_u = start.mean if _is_identity(U) else U.T @ start.mean
    mean_u = acc.M * start_mean_u + acc.m
    if start.eigenvectors is U:
        return Gaussian._in_basis(acc.M**2 * start.eigenvalues + acc.Q, U, mean_u, scale)
    c0 = U.T @ start.cov @ U
    cov_u = acc.M[:, None] * c0 * acc.M[None, :] + np.diag(acc.Q)
    cov = U @ cov_u @ U.T
    return Gaussian(U @ mean_u, 0.5 * (cov + cov.T), _scale=scale)


def sampling_laws(models, process: Process, sampler: str, steps: int | None = None, t_min: float = 0.0,
                  init="standard", **options) -> list[Gaussian]:
    """:func:`sampling_law` for several models of one process (e.g. one fitted per training set).

    Models in an eigenbasis that share ridge, ``train_time`` and ``lr`` run as one batch: one pass over the
    sampler's steps serves them all (their spectra are concatenated), which is what makes a sweep over
    training sets cost about one ``eigh`` per set.  Each law equals ``sampling_law`` of its model up to
    the order of floating-point sums.

    >>> import lindiff as ld
    >>> process = ld.DDPM.linear(100)
    >>> p0 = ld.Gaussian.from_spectrum([1.0, 0.5, 0.25])
    >>> models = [ld.LinearDenoiser.fit(p0.sample(5, seed), process) for seed in range(3)]
    >>> laws = sampling_laws(models, process, "ddim", 10)
    >>> all(abs(ld.kl(a, ld.sampling_law(m, process, "ddim", 10))) < 1e-12 for a, m in zip(laws, models))
    True
    """
    models = list(models)
    for model in models:
        if not isinstance(model, AffineModel):
            raise TypeError(f"models must be affine models (GaussianScore or LinearDenoiser), got {type(model).__name__}")
        if not _same_process(model.process, process):
            raise ValueError(f"process {process!r} differs from a model's process {model.process!r}")
    batchable = [m for m in models if m.spectral is not None]
    if sampler in ("sde", "ode") or len(batchable) < 2:
        return [sampling_law(m, process, sampler, steps, t_min, init, **options) for m in models]
    prog = _build(process, sampler, steps, t_min, options, "sampling_laws")
    maps = run_spectral_batch(batchable, prog)
    what = _probe_needed(prog)
    if what:
        for acc, other in zip(maps, run_spectral_batch(batchable, _perturbed(prog, what))):
            _finite_law(sampler, acc.M, acc.m, acc.Q)
            _check_conditioning(sampler, (acc.M, acc.m, acc.Q), (other.M, other.m, other.Q), what)
    maps = iter(maps)
    out = []
    for model in models:
        if model.spectral is None:
            out.append(sampling_law(model, process, sampler, steps, t_min, init, **options))
        else:
            out.append(_spectral_law(model, sampler, next(maps), _initial(model, model.process, init, prog.t_start)))
    return out


def _initial(model: AffineModel, process: Process, init, t_start: float) -> Gaussian | None:
    """None means N(0, I)."""
    if isinstance(init, Gaussian):
        if init.dim != model.dim:
            raise ValueError(f"init has dimension {init.dim} but the model has dimension {model.dim}")
        return init
    if isinstance(init, str) and init == "standard":
        return None
    if isinstance(init, str) and init == "exact":
        if model.data is None:
            raise ValueError("init='exact' needs the model's data distribution; this model has none (pass init=Gaussian)")
        return process.marginal(model.data, t_start)
    raise ValueError(f"init must be 'standard', 'exact' or a Gaussian, got {init!r}")


def _time_of_B(process: Process, B: float) -> float:
    if isinstance(process, SigmaVP):
        return min(math.sqrt(math.expm1(B)) if B < 709 else math.inf, process.T)
    b0, k = process.beta_min, 0.5 * (process.beta_max - process.beta_min) / process.T
    t = B / b0 if k == 0 else 2.0 * B / (b0 + math.sqrt(max(b0 * b0 + 4.0 * k * B, 0.0)))
    return min(t, float(process.T))


def _continuous_spectral(model: AffineModel, prog: SamplerProgram, rtol: float):
    """Exact reverse SDE / ODE per eigenmode (closed form for exact Gaussian scores, else moment ODEs)."""
    from ._program import SpectralMap

    sp = model.spectral
    process = prog.process
    T, t1 = prog.t_start, prog.t_end
    sde = prog.name == "sde"
    mu = sp.mean_in_basis
    l = sp.eigenvalues
    lT, l1 = _Level(process, T), _Level(process, t1)
    if sp.is_exact_gaussian_score:
        # alpha ratios through logs: finite where alpha(t) underflows (the law then forgets x_T)
        q = l1.ratio(lT)  # alpha_T / alpha_1 <= 1
        lamT = lT.a * lT.a * l + lT.s * lT.s
        lam1 = l1.a * l1.a * l + l1.s * l1.s
        if sde:
            k = q * lam1 / lamT
            Q = np.maximum(lam1 - k * k * lamT, 0.0)
        else:
            k = np.sqrt(lam1 / lamT)
            Q = np.zeros_like(l)
        return SpectralMap(k, l1.a * mu - k * lT.a * mu, Q)
    d = model.dim
    # integrate in u = B(t) (dB = beta dt): the rates become O(1) however fast beta(t) is
    uT, u1 = -2.0 * lT.la, -2.0 * l1.la
    w = 1.0 if sde else 0.5  # (g^2 or g^2/2) / beta
    M, m, Q = np.ones(d), np.zeros(d), np.zeros(d)
    if uT > _U_FLAT and not callable(sp.ridge):
        # beyond u = B = 200 alpha^2 = e^{-u} is below float64 resolution next to sigma^2 = 1, so the gains
        # are constant and the moment ODEs are solved exactly: rate r = -1/2 + w g, no forcing of the mean,
        # Q' = 2 r Q - c integrated backwards over D = uT - u_flat (long schedules are stiff for any
        # explicit solver: B(T) can be ~1e11)
        g = sp.gains(process.T, 0.0, 1.0)
        rate = -0.5 + w * g
        D = uT - max(_U_FLAT, u1)  # down to t_min where that is still in the flat region
        with np.errstate(over="ignore", invalid="ignore"):
            M = np.exp(-rate * D)
            if sde:
                x = -2.0 * rate * D
                Q = np.where(np.abs(x) > 1e-300, -np.expm1(x) / np.where(rate != 0, 2.0 * rate, 1.0), D)
        if not (np.all(np.isfinite(M)) and np.all(np.isfinite(Q))):
            raise ValueError(f"the {prog.name!r} law overflows float64: over B(T) - B(t) = {D:.3g} the model's "
                             "probability flow expands some directions without bound (its gain there is below "
                             "the stationary 1/sigma^2, e.g. through ridge or a finite train_time); use a smaller T")
        uT = max(_U_FLAT, u1)
        if uT <= u1:
            return SpectralMap(M, m, np.maximum(Q, 0.0))

    budget = _Budget(prog.name, rtol)

    def rhs(u, y):
        budget.tick()
        t = _time_of_B(process, u)
        a, s = math.exp(-0.5 * u), math.sqrt(-math.expm1(-u))
        g = sp.gains(t, a, s)
        rate = -0.5 + w * g
        M, m, Q = y[:d], y[d : 2 * d], y[2 * d :]
        return np.concatenate([rate * M, rate * m - w * g * a * mu, 2 * rate * Q - (1.0 if sde else 0.0)])

    y0 = np.concatenate([M, m, Q])
    # LSODA switches to a stiff method when the interval is long (callable ridge over a huge B(T))
    method = "DOP853" if uT - u1 < 1e3 else "LSODA"
    sol = budget.solve(rhs, (uT, u1), y0, method)
    y = sol.y[:, -1]
    return SpectralMap(y[:d], y[d : 2 * d], np.maximum(y[2 * d :], 0.0))


_U_FLAT = 200.0


class _OverBudget(Exception):
    pass


class _Budget:
    """Bounds the moment-ODE work: a smooth model needs a few thousand evaluations; one whose weights are
    not smooth in t (round-off of a fit with condition number ~1e20 and beyond) cannot meet ``rtol`` and
    would otherwise run for minutes."""

    LIMIT = 20_000

    def __init__(self, name: str, rtol: float):
        self.name, self.rtol, self.count = name, rtol, 0

    def tick(self, y=None) -> None:
        self.count += 1
        if self.count > self.LIMIT:
            raise _OverBudget
        if y is not None and not np.all(np.isfinite(y)):
            raise _OverBudget("overflow")

    def solve(self, rhs, span, y0, method):
        try:
            sol = solve_ivp(rhs, span, y0, method=method, rtol=self.rtol, atol=self.rtol * 1e-3)
        except _OverBudget as exc:
            if exc.args:
                raise ValueError(f"the {self.name!r} moment ODE overflowed float64 over this schedule: the law is "
                                 "unbounded (a flow that expands some directions, e.g. through ridge or a finite "
                                 "train_time) or the schedule is too long for the dense integration; use a smaller T") from None
            raise ValueError(f"the {self.name!r} moment ODE did not reach rtol={self.rtol:g} within {self.LIMIT} "
                             "evaluations: the model's weights are not smooth enough in t at that precision (typically "
                             "round-off in a fit whose covariance has a condition number beyond ~1e16); pass a larger "
                             "rtol, or a ridge") from None
        if not sol.success:
            raise ValueError(f"the {self.name!r} moment ODE integration failed ({sol.message}); try a larger rtol")
        return sol


def _continuous_dense(model: AffineModel, prog: SamplerProgram, rtol: float):
    process = prog.process
    T, t1 = prog.t_start, prog.t_end
    sde = prog.name == "sde"
    d = model.dim
    eye = np.eye(d)
    lT, l1 = _Level(process, T), _Level(process, t1)
    uT, u1 = -2.0 * lT.la, -2.0 * l1.la

    budget = _Budget(prog.name, rtol)

    def rhs(u, y):
        budget.tick(y)
        t = _time_of_B(process, u)
        A, c = model.score_affine(t)
        w = 1.0 if sde else 0.5
        R = -0.5 * eye - w * A
        M = y[: d * d].reshape(d, d)
        m = y[d * d : d * d + d]
        Q = y[d * d + d :].reshape(d, d)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught by the budget's finiteness check
            dQ = R @ Q + Q @ R.T - (1.0 if sde else 0.0) * eye
            return np.concatenate([(R @ M).ravel(), R @ m - w * c, dQ.ravel()])

    y0 = np.concatenate([eye.ravel(), np.zeros(d), np.zeros(d * d)])
    method = "DOP853" if uT - u1 < 1e3 else "LSODA"  # long schedules are stiff for explicit solvers
    sol = budget.solve(rhs, (uT, u1), y0, method)
    y = sol.y[:, -1]
    Q = y[d * d + d :].reshape(d, d)
    return y[: d * d].reshape(d, d), y[d * d : d * d + d], 0.5 * (Q + Q.T)


_PROBE_COEF = 10.0  # a multistep program with a step whose x-coefficients sum (in magnitude) beyond this is probed
_PROBE_DELTA = 1e-9


_PROBE_SMALL = 1e-3  # a multi-stage step evaluating the model where sigma or alpha is below this is probed


def _probe_needed(prog: SamplerProgram) -> str | None:
    """Which coefficients to probe (:func:`_perturbed`), or None.

    ``"writes"``: multistep recursions can carry parasitic modes that large steps make grow, so the exact law
    is hypersensitive to its coefficients and float64 rounding alone moves it; programs whose steps combine
    their registers with large coefficients (unlike the usual ones, below ~5) are probed.  ``"stages"``: a
    step with several model evaluations feeds one stage's output into the next stage's input; where the
    model's gains are huge (sigma -> 0 with a singular score, alpha -> 0 for a data prediction) a rounded
    input coefficient is multiplied by them (the corrector of Heun in the VE state at sigma' = 1e-12 loses
    every digit of the mean), so such programs are probed on their stage inputs too."""
    times = [sg.t for st in prog.steps if len(st.stages) > 1 for sg in st.stages]
    if times:  # (writes and stage inputs both: PNDM's Runge-Kutta warm-up is multistep and multi-stage)
        tt = np.asarray(times, float)
        small = min(float(np.min(prog.process.sigma(tt))), float(np.min(prog.process.alpha(tt))))
        if small < _PROBE_SMALL:
            return "stages"
    if len(prog.slots) > 1 and any(sum(abs(c) for c in st.writes[0]) > _PROBE_COEF for st in prog.steps):
        return "writes"
    return None


def _perturbed(prog: SamplerProgram, what: str = "writes") -> SamplerProgram:
    """The program with every write coefficient (and with ``what="stages"`` every stage input coefficient)
    moved by a relative ``_PROBE_DELTA`` (alternating signs)."""
    import dataclasses

    def move(row, i, k):
        return tuple(c * (1.0 + _PROBE_DELTA * (1.0 if (i + r + k) % 2 else -1.0)) for r, c in enumerate(row))

    steps = []
    for k, st in enumerate(prog.steps):
        stages = st.stages
        if what == "stages":
            stages = tuple(dataclasses.replace(sg, inputs=move(sg.inputs, j, k)) for j, sg in enumerate(stages))
        steps.append(dataclasses.replace(st, stages=stages, writes=tuple(move(row, i, k) for i, row in enumerate(st.writes))))
    return dataclasses.replace(prog, steps=tuple(steps))


def _check_conditioning(sampler: str, law, probe, what: str = "writes") -> None:
    """``law`` and ``probe`` are ``(M, m, Q)`` of the program and of its perturbation (:func:`_perturbed`): the
    relative change over ``_PROBE_DELTA`` is the law's condition number with respect to its coefficients, and
    ``eps`` times it what rounding alone does to the law.  Refused beyond 1e8 (8 digits)."""
    with np.errstate(over="ignore", invalid="ignore"):
        M, m, Q = (np.asarray(v, float) for v in law)
        M2, m2, Q2 = (np.asarray(v, float) for v in probe)
        scale = max(float(np.abs(M).max(initial=0.0)), math.sqrt(float(np.abs(Q).max(initial=0.0))),
                    float(np.abs(m).max(initial=0.0)), 1e-300)
        change = max(float(np.abs(M2 - M).max(initial=0.0)), float(np.abs(m2 - m).max(initial=0.0)),
                     float(np.abs(Q2 - Q).max(initial=0.0)) / (2 * scale)) / scale
    kappa = change / _PROBE_DELTA
    reason = ("its multistep recursion amplifies errors at these step sizes; use more steps (a finer grid)"
              if what == "writes" else
              "a stage's rounded input is multiplied by the model's huge gains where sigma or alpha is tiny (a "
              "singular score near t = 0, or alpha -> 0 on a steep schedule); use a larger t_min, more steps or a "
              "smaller T (or a single-stage sampler)")
    if not kappa <= 1e8:
        raise ValueError(
            f"the law of sampler {sampler!r} on this grid is ill-conditioned: changing its step coefficients by a "
            f"relative {_PROBE_DELTA:g} changes it by {change:.2g} (condition ~{kappa:.1e}), so float64 rounding alone "
            f"moves it by ~{kappa * 2.2e-16:.1e}: {reason}")


def _finite_law(sampler, M, m, Q):
    """The map ``x_T -> M x_T + m + N(0, Q)`` must give a law float64 holds: ``M`` is squared into the
    covariance, so it must stay below ~1e150, ``Q`` below ~1e300."""
    with np.errstate(invalid="ignore"):
        ok = (np.all(np.isfinite(m)) and np.all(np.abs(M) < 1e150) and np.all(np.abs(Q) < 1e300))
    if not ok:
        if sampler in ("sde", "ode"):
            raise ValueError(f"the {sampler!r} law overflows float64: the model's flow expands some directions without "
                             "bound over this schedule; use a smaller T")
        raise ValueError(f"the law of sampler {sampler!r} overflows float64 on this grid (a step multiplies the state "
                         "by more than ~1e154); use more steps (or a grid that starts at a smaller time)")


def sampling_law(model: AffineModel, process: Process, sampler: str, steps: int | None = None, t_min: float = 0.0,
                 init="standard", *, path: str = "auto", rtol: float = 1e-10, **options) -> Gaussian:
    r"""The exact Gaussian law of a sampler's output for an affine score model.

    Parameters
    ----------
    model : GaussianScore or LinearDenoiser
    process : the model's forward process
    sampler : one of <<NAMES>> (update rules and options in the :mod:`lindiff.samplers` docstring)
    steps : number of grid points (continuous) or of inference steps (DDPM; default: all T)
    t_min : end time of continuous samplers (truncation)
    init : ``"standard"`` (N(0, I)), ``"exact"`` (the model's data noised to the start time) or a Gaussian
    path : ``"auto"``, ``"spectral"`` (eigenbasis, O(d) per step) or ``"dense"`` (O(d^3) per step)
    rtol : tolerance of the moment-ODE integration (only ``"sde"``/``"ode"`` for models without a
        closed form)
    **options : the sampler's options (each sampler lists its own; an option it does not take is a
        TypeError), and the grid options ``grid``, ``timesteps``, ``spacing``, ``steps_offset``

    Returns
    -------
    Gaussian
        With its eigendecomposition kept when the law is diagonal in the model's eigenbasis.

    Examples
    --------
    >>> from lindiff import DDPM, Gaussian, GaussianScore
    >>> p0 = Gaussian.from_spectrum([1.0, 0.1])
    >>> process = DDPM.linear(1000)
    >>> law = sampling_law(GaussianScore(p0, process), process, "ddpm")
    >>> [round(float(v), 4) for v in law.eigenvalues]  # Ho et al.'s sampler: close to, not equal to, the data
    [0.9999, 0.1006]
    """
    if not isinstance(model, AffineModel):
        raise TypeError(f"model must be an affine model (GaussianScore or LinearDenoiser), got {type(model).__name__}; "
                        "use lindiff.mc.sample for other score models")
    if not _same_process(model.process, process):
        raise ValueError(f"process {process!r} differs from the model's process {model.process!r}")
    if path not in ("auto", "spectral", "dense"):
        raise ValueError(f"path must be 'auto', 'spectral' or 'dense', got {path!r}")
    prog = _build(model.process, sampler, steps, t_min, options, "sampling_law")
    start = _initial(model, model.process, init, prog.t_start)
    use_spectral = model.spectral is not None and path != "dense"
    if path == "spectral" and model.spectral is None:
        raise ValueError("path='spectral' needs a model with an eigenbasis representation (this one is dense)")
    continuous = sampler in ("sde", "ode")
    probe = None if continuous else _probe_needed(prog)
    if use_spectral:
        acc = _continuous_spectral(model, prog, rtol) if continuous else run_spectral(model, prog)
        if probe:
            _finite_law(sampler, acc.M, acc.m, acc.Q)
            other = run_spectral(model, _perturbed(prog, probe))
            _check_conditioning(sampler, (acc.M, acc.m, acc.Q), (other.M, other.m, other.Q), probe)
        return _spectral_law(model, sampler, acc, start)
    scale = _law_scale(model, start)
    M, m, Q = _continuous_dense(model, prog, rtol) if continuous else run_dense(model, prog)
    _finite_law(sampler, M, m, Q)
    if probe:
        _check_conditioning(sampler, (M, m, Q), run_dense(model, _perturbed(prog, probe)), probe)
    if start is None:
        mean, cov = m, M @ M.T + Q
    else:
        mean, cov = M @ start.mean + m, M @ start.cov @ M.T + Q
    return Gaussian(mean, 0.5 * (cov + cov.T), _scale=scale)


sampling_law.__doc__ = sampling_law.__doc__.replace("<<NAMES>>", ", ".join(f"``{s!r}``" for s in SAMPLERS))


def is_affine(model: ScoreModel) -> bool:
    return isinstance(model, AffineModel)
