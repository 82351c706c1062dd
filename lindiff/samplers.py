r"""Samplers as data, and the exact law of their output for affine score models.

A sampler is a list of :class:`Step` s over a decreasing time grid.  Each step evaluates the score
at one or more *stages* and combines the results linearly, then adds isotropic Gaussian noise:

.. math::
    s_j = \text{score}\Big(c_{j0} x + \sum_{i<j} c_{ji} s_i,\; t_j\Big),\qquad
    x_{next} = o_0 x + \sum_j o_j s_j + \nu z,\quad z\sim\mathcal N(0, I).

Registers are ``[x, x_prev, s_1, ..., s_m]``: ``x_prev`` is the previous step's input point (used by
multistep solvers; its coefficients are 0 otherwise).  The same coefficients serve two interpreters: :func:`lindiff.mc.sample` runs them on points for any
score model, and :func:`sampling_law` propagates them exactly for an affine score
``score(x, t) = A_t x + c_t``: each step becomes ``x <- M x + m + N(0, nu^2 I)``, so
``mean <- M mean + m`` and ``cov <- M cov M^T + nu^2 I``.

For models with a :class:`~lindiff.scores.SpectralForm` (Gaussian scores, fitted / ridge /
early-stopped denoisers) every ``M`` is diagonal in one eigenbasis and the law costs O(d) per step
after the model's single ``eigh`` ("spectral" path); general affine models take the O(d^3)-per-step
"dense" path.  ``path="auto"`` picks the spectral path whenever it applies; the tests hold the two
paths to each other.

Samplers (``sampler=``)
-----------------------
``"ddpm"``
    Ancestral sampling, Ho et al. (2020) eq. (11), on any decreasing subsequence of times with the
    skip-step ``beta~ = 1 - alpha_bar_t / alpha_bar_prev``:
    ``x' = (x - beta~/sqrt(1 - alpha_bar_t) eps_hat) / sqrt(1 - beta~) + nu z`` with
    ``nu^2 = beta~`` (``variance="beta"``) or ``(1 - alpha_bar_prev)/(1 - alpha_bar_t) beta~``
    (``"beta_tilde"``); no noise on the final step unless ``final_noise=True``.
``"ddim"``
    Song, Meng & Ermon (2021) eq. (12): ``x' = sqrt(alpha_bar') x0_hat + sqrt(1 - alpha_bar' - nu^2)
    eps_hat + nu z`` with ``nu = eta sqrt((1 - alpha_bar')/(1 - alpha_bar)) sqrt(1 - alpha_bar/alpha_bar')``.
``"euler_maruyama"``
    Reverse SDE ``dx = [f x - g^2 score] dt + g dW`` (Song et al. 2021), VP: ``f = -beta/2, g^2 = beta``;
    ``x' = (1 + h beta_k/2) x + h beta_k score(x, t_k) + sqrt(h beta_k) z``, ``h = t_k - t_{k+1}``.
``"exponential_integrator"``
    Linear part exact, score frozen at ``t_k`` (Pierret & Galerne 2025, eq. 13):
    ``x' = E x + 2 (E - 1) score(x, t_k) + sqrt(E^2 - 1) z``, ``E = exp((B(t_k) - B(t_{k+1}))/2)``.
``"euler"``
    Probability-flow ODE ``dx/dt = f x - g^2/2 score``: ``x' = (1 + h beta_k/2) x + (h beta_k/2) score(x, t_k)``.
``"heun"``
    Heun's second-order method on the same ODE (Karras et al. 2022, Alg. 1).  A step that ends at a
    time with ``sigma = 0`` uses Euler (as Karras et al., k-diffusion and diffusers do), because the
    score is generally undefined there; ``heun_at_zero=True`` forces the corrector.
``"euler_ve"``
    Euler on the probability-flow ODE in the variance-exploding state ``x/alpha`` and noise level
    ``sigma_ve = sigma/alpha`` (Karras et al. 2022, Alg. 1 without churn; diffusers ``EulerDiscreteScheduler``):
    ``x'/alpha' = x/alpha + (sigma_ve' - sigma_ve) eps_hat(x, t)``.
``"euler_ancestral"``
    k-diffusion / diffusers ``EulerAncestralDiscreteScheduler``: with ``sigma_up = sqrt(s'^2 (s^2 - s'^2)/s^2)``,
    ``sigma_down = sqrt(s'^2 - sigma_up^2)`` (``s = sigma_ve``),
    ``x'/alpha' = x/alpha + (sigma_down - s) eps_hat + sigma_up z``.
``"dpmpp_2m"``
    DPM-Solver++(2M) (Lu et al. 2022; diffusers ``DPMSolverMultistepScheduler`` defaults: dpmsolver++,
    midpoint): with data predictions ``D_i = (x_i + sigma_i^2 score_i)/alpha_i``, ``h = lambda' - lambda``,
    ``lambda = log(alpha/sigma)``, ``r = h_prev/h``:
    ``x' = (sigma'/sigma) x - alpha' (e^{-h} - 1) (D_i + (D_i - D_{i-1})/(2r))``; the first step, and the
    last one when it ends at ``sigma = 0`` or (``lower_order_final``) when there are fewer than 15 steps,
    are first order (DDIM).  The update uses the previous step's point, so the exact law propagates
    the augmented state ``(x_i, x_{i-1})``.
``"sde"`` / ``"ode"``
    The exact continuous-time reverse SDE / probability-flow ODE from ``T`` (or the first grid time) to
    ``t_min``.  For an exact Gaussian score (data ``N(m, S)``, per eigenvalue ``lambda_t = alpha_t^2 l +
    sigma_t^2``) the solution map from the start time ``T`` is closed form:
    ODE ``x_t - alpha_t m = sqrt(lambda_t/lambda_T) (x_T - alpha_T m)``;
    SDE ``x_t - alpha_t m = (alpha_T lambda_t)/(alpha_t lambda_T) (x_T - alpha_T m) + N(0, lambda_t -
    (alpha_T/alpha_t)^2 lambda_t^2/lambda_T)``, which from ``N(0, I)`` gives Pierret & Galerne's eqs. (7)
    and (8).  Other affine models integrate the moment ODEs numerically (``rtol``, default 1e-10).

Continuous samplers use a uniform grid of ``steps`` points from ``T`` down to ``t_min`` (``steps - 1``
steps), or any decreasing ``grid=``.  On a :class:`~lindiff.DDPM` process only ``"ddpm"`` and ``"ddim"``
exist; they run on all steps ``T, ..., 1`` (ending at ``alpha_bar_0 = 1``) unless ``steps=n`` picks
``n`` of them with diffusers' ``spacing="leading"`` (default), ``"trailing"`` or ``"linspace"``
(and ``steps_offset``), or ``timesteps=`` lists them (1-based steps, decreasing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.integrate import solve_ivp

from ._validation import as_finite_array, as_nonnegative_float, as_positive_int
from .gaussian import Gaussian
from .processes import DDPM, Process
from .scores import AffineModel, ScoreModel
from .tables import Column, Table

__all__ = ["SAMPLERS", "Stage", "Step", "SamplerProgram", "build_sampler", "sampling_law", "sampler_table"]

SAMPLERS = ("ddpm", "ddim", "euler_maruyama", "exponential_integrator", "euler", "heun", "euler_ve",
            "euler_ancestral", "dpmpp_2m", "sde", "ode")
_CONTINUOUS_ONLY = ("euler_maruyama", "exponential_integrator", "euler", "heun", "sde", "ode")
SPACINGS = ("leading", "trailing", "linspace")


@dataclass(frozen=True)
class Stage:
    """One score evaluation at time ``t`` on ``inputs . [x, x_prev, s_1, ..., s_{j-1}]``."""

    t: float
    inputs: tuple[float, ...]


@dataclass(frozen=True)
class Step:
    """``x_next = out . [x, x_prev, s_1, ..., s_m] + noise * z`` after evaluating ``stages``."""

    t: float
    t_next: float
    stages: tuple[Stage, ...]
    out: tuple[float, ...]
    noise: float


@dataclass(frozen=True)
class SamplerProgram:
    """A sampler unrolled on a grid: the data both interpreters run."""

    name: str
    process: Process
    grid: np.ndarray
    steps: tuple[Step, ...]
    options: dict

    @property
    def t_start(self) -> float:
        return float(self.grid[0])

    @property
    def t_end(self) -> float:
        return float(self.grid[-1])

    @property
    def uses_prev(self) -> bool:
        """True for multistep solvers (some coefficient on ``x_prev`` is non-zero)."""
        return any(st.out[1] != 0 or any(sg.inputs[1] != 0 for sg in st.stages) for st in self.steps)


# ------------------------------------------------------------------------------------------------
# time grids
def ddpm_timesteps(T: int, steps: int, spacing: str = "leading", steps_offset: int = 0) -> np.ndarray:
    """diffusers' inference timesteps, converted to lindiff's 1-based steps (diffusers' t is our t+1).

    ``linspace``: ``round(linspace(0, T-1, n))[::-1]``; ``leading``: ``arange(n) * (T // n))[::-1] +
    steps_offset``; ``trailing``: ``round(arange(T, 0, -T/n)) - 1`` (all 0-based, as in diffusers).
    """
    steps = as_positive_int(steps, "steps")
    if steps > T:
        raise ValueError(f"steps must be at most T = {T} for a DDPM process, got {steps}")
    if spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, steps))[::-1]
    elif spacing == "leading":
        ts = (np.arange(steps) * (T // steps))[::-1] + steps_offset
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
# step builders (one definition per sampler)
def _log_abar(process, t) -> float:
    return float(process.log_alpha2(t))


def _ddpm_step(process, t, t_next, last, variance, final_noise) -> Step:
    la, la_next = _log_abar(process, t), _log_abar(process, t_next)
    # expm1 keeps the skip-step beta accurate for tiny betas; at the last step it equals sigma^2 bitwise
    alpha_cur = np.exp(la - la_next)
    beta = -np.expm1(la - la_next)
    if variance == "beta":
        var = beta
    elif variance == "beta_tilde":
        var = np.expm1(la_next) / np.expm1(la) * beta
    else:
        raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {variance!r}")
    noise = 0.0 if (last and not final_noise) else float(np.sqrt(var))
    scale = 1.0 / np.sqrt(alpha_cur)
    # eps form: x' = (x - beta/sqrt(1-abar) eps) / sqrt(alpha_cur); eps = -sqrt(1-abar) score
    return Step(t, t_next, (Stage(t, (1.0, 0.0)),), (scale, 0.0, scale * beta), noise)


def _ddim_step(process, t, t_next, eta) -> Step:
    la, la_next = _log_abar(process, t), _log_abar(process, t_next)
    abar, abar_next = np.exp(la), np.exp(la_next)
    sig = float(process.sigma(t))
    nu = eta * np.sqrt(np.expm1(la_next) / np.expm1(la)) * np.sqrt(-np.expm1(la - la_next))
    rest = -np.expm1(la_next) - nu * nu
    if rest < -1e-12:
        raise ValueError(f"eta={eta} makes 1 - alpha_bar' - nu^2 negative at t={t:g}; use 0 <= eta <= 1")
    ratio = np.sqrt(abar_next / abar)
    # x' = sqrt(abar'/abar) (x + sigma^2 score) - sqrt(1 - abar' - nu^2) sigma score + nu z
    c = ratio * sig * sig - np.sqrt(max(rest, 0.0)) * sig
    return Step(t, t_next, (Stage(t, (1.0, 0.0)),), (float(ratio), 0.0, float(c)), float(nu) + 0.0)


def _one_stage(t, t_next, a, c, noise) -> Step:
    return Step(t, t_next, (Stage(t, (1.0, 0.0)),), (float(a), 0.0, float(c)), float(noise))


def _continuous_step(process, name, t, t_next, heun_at_zero) -> Step:
    h = t - t_next
    bk = float(process.beta(t))
    if name == "euler_maruyama":
        return _one_stage(t, t_next, 1 + 0.5 * h * bk, h * bk, np.sqrt(h * bk))
    if name == "exponential_integrator":
        dB = float(process.B(t) - process.B(t_next))
        return _one_stage(t, t_next, np.exp(0.5 * dB), 2 * np.expm1(0.5 * dB), np.sqrt(np.expm1(dB)))
    if name == "euler":
        return _one_stage(t, t_next, 1 + 0.5 * h * bk, 0.5 * h * bk, 0.0)
    if name == "heun":
        if float(process.sigma(t_next)) == 0.0 and not heun_at_zero:
            return _one_stage(t, t_next, 1 + 0.5 * h * bk, 0.5 * h * bk, 0.0)
        bn = float(process.beta(t_next))
        # predictor x~ = x + h f(x, t_k), f = beta/2 (x + score); corrector averages f at both ends.
        px, ps = 1 + 0.5 * h * bk, 0.5 * h * bk
        out = (1 + 0.25 * h * bk + 0.25 * h * bn * px, 0.0, 0.25 * h * bk + 0.25 * h * bn * ps, 0.25 * h * bn)
        return Step(t, t_next, (Stage(t, (1.0, 0.0)), Stage(t_next, (px, 0.0, ps))), out, 0.0)
    raise AssertionError(name)  # pragma: no cover


def _ve(process, t) -> tuple[float, float, float]:
    """(alpha, sigma, sigma_ve = sigma/alpha) at t."""
    a, s = float(process.alpha(t)), float(process.sigma(t))
    return a, s, s / a


def _euler_ve_step(process, t, t_next) -> Step:
    # x'/a' = x/a + (s_ve' - s_ve) eps_hat, eps_hat = -sigma score
    a, s, sv = _ve(process, t)
    a2, _, sv2 = _ve(process, t_next)
    return _one_stage(t, t_next, a2 / a, -a2 * (sv2 - sv) * s, 0.0)


def _euler_ancestral_step(process, t, t_next, last, final_noise) -> Step:
    a, s, sv = _ve(process, t)
    a2, _, sv2 = _ve(process, t_next)
    up = np.sqrt(sv2 * sv2 * (sv * sv - sv2 * sv2) / (sv * sv))
    down = np.sqrt(max(sv2 * sv2 - up * up, 0.0))
    noise = 0.0 if (last and sv2 == 0.0 and not final_noise) else a2 * up
    return _one_stage(t, t_next, a2 / a, -a2 * (down - sv) * s, noise)


def _dpmpp_2m_step(process, t_prev, t, t_next, order: int) -> Step:
    a, s, sv = _ve(process, t)
    a2, s2, sv2 = _ve(process, t_next)
    # e^{-h} = sigma_ve'/sigma_ve (h = lambda' - lambda, lambda = -log sigma_ve); D_i = (x + s^2 score)/a
    emh = sv2 / sv
    c = -a2 * (emh - 1.0)  # coefficient on the data-prediction combination
    ratio = s2 / s
    if order == 1:
        # x' = (s'/s) x + c D_i
        return Step(t, t_next, (Stage(t, (1.0, 0.0)),), (ratio + c / a, 0.0, c * s * s / a), 0.0)
    ap, sp_, svp = _ve(process, t_prev)
    h = np.log(sv / sv2)
    r = np.log(svp / sv) / h
    k0, k1 = c * (1 + 0.5 / r), -c * 0.5 / r  # on D_i and D_{i-1}
    out = (ratio + k0 / a, k1 / ap, k0 * s * s / a, k1 * sp_ * sp_ / ap)
    return Step(t, t_next, (Stage(t, (1.0, 0.0)), Stage(t_prev, (0.0, 1.0))), out, 0.0)


def _freeze(value):
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


_PROGRAMS: dict = {}


def build_sampler(process: Process, sampler: str, steps: int | None = None, t_min: float = 0.0, **options) -> SamplerProgram:
    """Unroll ``sampler`` on its time grid (see the module docstring for every option).

    Programs are immutable and cached per (process, sampler, steps, t_min, options), so sweeps over
    training sets build each one once.
    """
    try:
        key = (id(process), sampler, steps, t_min, tuple(sorted((k, _freeze(v)) for k, v in options.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None:
        hit = _PROGRAMS.get(key)
        if hit is not None and hit[0] is process:
            return hit[1]
    prog = _build_sampler(process, sampler, steps, t_min, **options)
    if key is not None:
        if len(_PROGRAMS) > 64:
            _PROGRAMS.clear()
        _PROGRAMS[key] = (process, prog)
    return prog


def _build_sampler(process: Process, sampler: str, steps: int | None = None, t_min: float = 0.0, *,
                  grid: Sequence[float] | None = None, timesteps: Sequence[int] | None = None,
                  spacing: str = "leading", steps_offset: int = 0, variance: str = "beta",
                  final_noise: bool = False, eta: float = 0.0, heun_at_zero: bool = False,
                  lower_order_final: bool = True) -> SamplerProgram:
    if not isinstance(process, Process):
        raise TypeError(f"process must be a lindiff process, got {type(process).__name__}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if process.discrete and sampler in _CONTINUOUS_ONLY:
        raise ValueError(f"sampler {sampler!r} needs a continuous process (VP, OU); a DDPM process supports 'ddpm' and 'ddim'")
    eta = as_nonnegative_float(eta, "eta")
    g = _grid(process, sampler, steps, t_min, grid, timesteps, spacing, steps_offset)
    options = dict(variance=variance, final_noise=final_noise, eta=eta, heun_at_zero=heun_at_zero,
                   lower_order_final=lower_order_final)
    if sampler in ("sde", "ode"):
        return SamplerProgram(sampler, process, g, (), options)
    if float(process.sigma(g[0])) == 0.0:
        raise ValueError("the grid must start at a time with sigma > 0")
    out = []
    g = np.asarray(process.check_time(g, "grid"), float) if not process.discrete else g
    for k in range(len(g) - 1):
        t, t_next = float(g[k]), float(g[k + 1])
        last = k == len(g) - 2
        if sampler == "ddpm":
            out.append(_ddpm_step(process, t, t_next, last, variance, final_noise))
        elif sampler == "ddim":
            out.append(_ddim_step(process, t, t_next, eta))
        elif sampler == "euler_ve":
            out.append(_euler_ve_step(process, t, t_next))
        elif sampler == "euler_ancestral":
            out.append(_euler_ancestral_step(process, t, t_next, last, final_noise))
        elif sampler == "dpmpp_2m":
            n_steps = len(g) - 1
            first_order = k == 0 or (last and (float(process.sigma(t_next)) == 0.0 or (lower_order_final and n_steps < 15)))
            out.append(_dpmpp_2m_step(process, float(g[k - 1]) if k else t, t, t_next, 1 if first_order else 2))
        else:
            out.append(_continuous_step(process, sampler, t, t_next, heun_at_zero))
    return SamplerProgram(sampler, process, g, tuple(out), options)


def sampler_table(process: Process, sampler: str, steps: int | None = None, t_min: float = 0.0, **options) -> Table:
    """The per-step affine coefficients a sampler runs: "which equations does this sampler run?".

    Each row is ``x_next = a x + c_eps eps_hat(x, t) + nu z`` (equivalently ``c_score score``); for
    Heun the two stages are listed.
    """
    prog = build_sampler(process, sampler, steps, t_min, **options)
    if not prog.steps:
        raise ValueError(f"{sampler!r} is a continuous-time solution without steps; see sampling_law's docstring")
    rows = []
    names = ["x", "x_prev"]
    for k, st in enumerate(prog.steps):
        for j, stage in enumerate(st.stages):
            sig = float(process.sigma(stage.t))
            c_score = st.out[j + 2]
            c_eps = -c_score / sig if sig > 0 else float("nan")
            inp = " + ".join(f"{c:.6g}·{(names + [f's{i}' for i in range(1, 9)])[i]}" for i, c in enumerate(stage.inputs) if c != 0)
            rows.append([k, st.t, st.t_next, j + 1, stage.t, inp, st.out[0] if j == 0 else None,
                         (st.out[1] or None) if j == 0 else None, c_score, c_eps, st.noise if j == 0 else None])
    cols = [Column("step"), Column("t"), Column("t_next"), Column("stage"), Column("t_eval"),
            Column("model input"), Column("a", note="coefficient on x"),
            Column("a_prev", note="coefficient on the previous step's point (multistep solvers)"),
            Column("c_score", note="coefficient on score(input, t_eval)"),
            Column("c_eps", note="coefficient on eps_hat = -sigma(t_eval) score"),
            Column("nu", note="std of the added N(0, I) noise")]
    caption = f"{sampler} on {process!r}: x_next = a x + a_prev x_prev + sum_j c_j s_j + nu z"
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
    return (a.beta_min, a.beta_max, a.T) == (b.beta_min, b.beta_max, b.T)


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


@dataclass
class _Spectral:
    """Accumulated map in the model's eigenbasis: x_U -> M * x_U + m + N(0, diag(Q))."""

    M: np.ndarray
    m: np.ndarray
    Q: np.ndarray


def _combine(coefs, regs):
    """sum_i coefs[i] * regs[i] over registers that are tuples of arrays (skipping zero coefficients)."""
    out = None
    for c, r in zip(coefs, regs):
        if c == 0:
            continue
        term = tuple(c * v for v in r)
        out = term if out is None else tuple(a + b for a, b in zip(out, term))
    if out is None:
        out = tuple(np.zeros_like(v) for v in regs[0])
    return out


def _single_stage(prog: SamplerProgram) -> bool:
    return all(len(st.stages) == 1 and st.stages[0].inputs == (1.0, 0.0) and st.stages[0].t == st.t and st.out[1] == 0
               for st in prog.steps)


def _run_spectral_vectorised(model: AffineModel, prog: SamplerProgram, gains: np.ndarray, alpha: np.ndarray) -> _Spectral:
    """Single-stage programs: step k maps x -> a_k x + b_k + nu_k z per mode with
    a_k = o_k - c_k g_k and b_k = c_k g_k alpha_k m; the composition is a suffix product over steps."""
    mu = model.spectral.mean_in_basis
    o = np.array([st.out[0] for st in prog.steps])[:, None]
    c = np.array([st.out[2] for st in prog.steps])[:, None]
    nu2 = np.array([st.noise**2 for st in prog.steps])[:, None]
    a = o - c * gains
    b = c * gains * alpha[:, None] * mu
    # suffix[k] = prod_{j > k} a_j (the map applied after step k)
    suffix = np.ones_like(a)
    if len(a) > 1:
        suffix[:-1] = np.cumprod(a[::-1], axis=0)[::-1][1:]
    M = suffix[0] * a[0]
    m = np.sum(suffix * b, axis=0)
    Q = np.sum(suffix**2 * nu2, axis=0)
    return _Spectral(M, m, Q)


def _run_spectral(model: AffineModel, prog: SamplerProgram) -> _Spectral:
    """Per mode, the augmented state (x_i, x_{i-1}) is an affine function of x_T plus Gaussian noise:
    x_i = P_c x_T + q_c + noise, x_{i-1} = P_p x_T + q_p + noise, with a 2 x 2 noise covariance."""
    sp = model.spectral
    d = model.dim
    times = sorted({stage.t for st in prog.steps for stage in st.stages})
    process = prog.process
    tt = np.array(times)
    alpha = np.asarray(process.alpha(tt), float)
    sigma = np.asarray(process.sigma(tt), float)
    gains = sp.gains(tt, alpha, sigma)
    for i, t in enumerate(times):
        if not np.all(np.isfinite(gains[i])):
            from .scores import _undefined_score
            raise _undefined_score(t, int(np.sum(~np.isfinite(gains[i]))))
    if _single_stage(prog):
        rows = np.searchsorted(tt, [st.t for st in prog.steps])
        return _run_spectral_vectorised(model, prog, gains[rows], alpha[rows])
    index = {t: i for i, t in enumerate(times)}
    mu = sp.mean_in_basis
    one, zero = np.ones(d), np.zeros(d)
    Pc, Pp, qc, qp = one, one, zero, zero
    Qcc, Qcp, Qpp = zero, zero, zero
    for st in prog.steps:
        # registers as (coefficient on x_cur, coefficient on x_prev, constant), per mode
        regs = [(one, zero, zero), (zero, one, zero)]
        for stage in st.stages:
            yc, yp, y0 = _combine(stage.inputs, regs)
            i = index[stage.t]
            g = gains[i]
            regs.append((-g * yc, -g * yp, -g * (y0 - alpha[i] * mu)))
        ac, ap, c0 = _combine(st.out, regs)
        Pc, Pp = ac * Pc + ap * Pp, Pc
        qc, qp = ac * qc + ap * qp + c0, qc
        Qcc, Qcp, Qpp = (ac * ac * Qcc + 2 * ac * ap * Qcp + ap * ap * Qpp + st.noise**2, ac * Qcc + ap * Qcp, Qcc)
    return _Spectral(Pc, qc, Qcc)


def _run_dense(model: AffineModel, prog: SamplerProgram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = model.dim
    eye, zero_m, zero_v = np.eye(d), np.zeros((d, d)), np.zeros(d)
    Pc, Pp, qc, qp = eye, eye, zero_v, zero_v
    augmented = prog.uses_prev
    Q = np.zeros((2 * d, 2 * d)) if augmented else zero_m
    cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for st in prog.steps:
        regs = [(eye, zero_m, zero_v), (zero_m, eye, zero_v)]
        for stage in st.stages:
            if stage.t not in cache:
                if len(cache) > 4:
                    cache.clear()
                cache[stage.t] = model.score_affine(stage.t)
            A, c = cache[stage.t]
            yc, yp, y0 = _combine(stage.inputs, regs)
            regs.append((A @ yc, A @ yp, A @ y0 + c))
        ac, ap, c0 = _combine(st.out, regs)
        Pc, Pp = ac @ Pc + ap @ Pp, Pc
        qc, qp = ac @ qc + ap @ qp + c0, qc
        if augmented:
            Tm = np.block([[ac, ap], [eye, zero_m]])
            Q = Tm @ Q @ Tm.T
            Q[:d, :d] += st.noise**2 * eye
        else:
            Q = ac @ Q @ ac.T + st.noise**2 * eye
    return Pc, qc, (Q[:d, :d] if augmented else Q)


def _continuous_spectral(model: AffineModel, prog: SamplerProgram, rtol: float) -> _Spectral:
    """Exact reverse SDE / ODE per eigenmode (closed form for exact Gaussian scores, else moment ODEs)."""
    sp = model.spectral
    process = prog.process
    T, t1 = prog.t_start, prog.t_end
    sde = prog.name == "sde"
    mu = sp.mean_in_basis
    l = sp.eigenvalues
    aT, sT = float(process.alpha(T)), float(process.sigma(T))
    a1, s1 = float(process.alpha(t1)), float(process.sigma(t1))
    if sp.is_exact_gaussian_score:
        lamT = aT * aT * l + sT * sT
        lam1 = a1 * a1 * l + s1 * s1
        if sde:
            k = (aT / a1) * lam1 / lamT
            Q = lam1 - (aT / a1) ** 2 * lam1 * lam1 / lamT
            Q = np.maximum(Q, 0.0)
        else:
            k = np.sqrt(lam1 / lamT)
            Q = np.zeros_like(l)
        return _Spectral(k, a1 * mu - k * aT * mu, Q)
    d = model.dim

    def rhs(t, y):
        a, s = float(process.alpha(t)), float(process.sigma(t))
        g = sp.gains(t, a, s)
        f, g2 = float(process.drift(t)), float(process.diffusion2(t))
        w = g2 if sde else 0.5 * g2
        rate = f + w * g
        M, m, Q = y[:d], y[d : 2 * d], y[2 * d :]
        return np.concatenate([rate * M, rate * m - w * g * a * mu, 2 * rate * Q - (g2 if sde else 0.0)])

    y0 = np.concatenate([np.ones(d), np.zeros(d), np.zeros(d)])
    sol = solve_ivp(rhs, (T, t1), y0, method="DOP853", rtol=rtol, atol=rtol * 1e-3)
    if not sol.success:
        raise RuntimeError(f"moment ODE integration failed: {sol.message}")
    y = sol.y[:, -1]
    return _Spectral(y[:d], y[d : 2 * d], np.maximum(y[2 * d :], 0.0))


def _continuous_dense(model: AffineModel, prog: SamplerProgram, rtol: float):
    process = prog.process
    T, t1 = prog.t_start, prog.t_end
    sde = prog.name == "sde"
    d = model.dim
    eye = np.eye(d)

    def rhs(t, y):
        A, c = model.score_affine(t)
        f, g2 = float(process.drift(t)), float(process.diffusion2(t))
        w = g2 if sde else 0.5 * g2
        R = f * eye - w * A
        M = y[: d * d].reshape(d, d)
        m = y[d * d : d * d + d]
        Q = y[d * d + d :].reshape(d, d)
        dQ = R @ Q + Q @ R.T - (g2 if sde else 0.0) * eye
        return np.concatenate([(R @ M).ravel(), R @ m - w * c, dQ.ravel()])

    y0 = np.concatenate([eye.ravel(), np.zeros(d), np.zeros(d * d)])
    sol = solve_ivp(rhs, (T, t1), y0, method="DOP853", rtol=rtol, atol=rtol * 1e-3)
    if not sol.success:
        raise RuntimeError(f"moment ODE integration failed: {sol.message}")
    y = sol.y[:, -1]
    Q = y[d * d + d :].reshape(d, d)
    return y[: d * d].reshape(d, d), y[d * d : d * d + d], 0.5 * (Q + Q.T)


def sampling_law(model: AffineModel, process: Process, sampler: str, steps: int | None = None, t_min: float = 0.0,
                 init="standard", *, path: str = "auto", rtol: float = 1e-10, **options) -> Gaussian:
    r"""The exact Gaussian law of a sampler's output for an affine score model.

    Parameters
    ----------
    model : GaussianScore or LinearDenoiser
    process : the model's forward process
    sampler : one of ``"ddpm"``, ``"ddim"``, ``"euler_maruyama"``, ``"exponential_integrator"``,
        ``"euler"``, ``"heun"``, ``"sde"``, ``"ode"`` (equations in the module docstring)
    steps : number of grid points (continuous) or of inference steps (DDPM; default: all T)
    t_min : end time of continuous samplers (truncation)
    init : ``"standard"`` (N(0, I)), ``"exact"`` (the model's data noised to the start time) or a Gaussian
    path : ``"auto"``, ``"spectral"`` (eigenbasis, O(d) per step) or ``"dense"`` (O(d^3) per step)
    rtol : tolerance of the moment-ODE integration (only ``"sde"``/``"ode"`` for models without a
        closed form)
    **options : ``variance``, ``final_noise`` (ddpm), ``eta`` (ddim), ``heun_at_zero`` (heun),
        ``grid``, ``timesteps``, ``spacing``, ``steps_offset``

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
    prog = build_sampler(model.process, sampler, steps, t_min, **options)
    start = _initial(model, model.process, init, prog.t_start)
    # "numerically zero" is judged against the problem's scale: the start law and the model's spectrum
    scale = 1.0 if start is None else float(start.eigenvalues.max(initial=0.0))
    if model.spectral is not None:
        scale = max(scale, float(model.spectral.eigenvalues.max(initial=0.0)))
    use_spectral = model.spectral is not None and path != "dense"
    if path == "spectral" and model.spectral is None:
        raise ValueError("path='spectral' needs a model with an eigenbasis representation (this one is dense)")
    if use_spectral:
        sp = model.spectral
        U = sp.basis
        acc = _continuous_spectral(model, prog, rtol) if sampler in ("sde", "ode") else _run_spectral(model, prog)
        if start is None:
            mean_u = acc.m
            return Gaussian.from_spectrum(acc.M**2 + acc.Q, U, U @ mean_u, scale=scale)
        mean_u = acc.M * (U.T @ start.mean) + acc.m
        if start.eigenvectors is U:
            return Gaussian.from_spectrum(acc.M**2 * start.eigenvalues + acc.Q, U, U @ mean_u, scale=scale)
        c0 = U.T @ start.cov @ U
        cov_u = acc.M[:, None] * c0 * acc.M[None, :] + np.diag(acc.Q)
        cov = U @ cov_u @ U.T
        return Gaussian(U @ mean_u, 0.5 * (cov + cov.T), _scale=scale)
    M, m, Q = _continuous_dense(model, prog, rtol) if sampler in ("sde", "ode") else _run_dense(model, prog)
    if start is None:
        mean, cov = m, M @ M.T + Q
    else:
        mean, cov = M @ start.mean + m, M @ start.cov @ M.T + Q
    return Gaussian(mean, 0.5 * (cov + cov.T), _scale=scale)


def is_affine(model: ScoreModel) -> bool:
    return isinstance(model, AffineModel)
