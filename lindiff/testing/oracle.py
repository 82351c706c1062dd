r"""An exact oracle for other people's diffusion samplers.

With a linear eps-model on Gaussian data every sampler is an affine map of its starting point and its
injected noise, so its output law is known exactly.  Two modes:

``mode="exact"``
    The user's loop is *probed*: run once on the batch ``[0, h e_1, ..., h e_d]`` with zero noise
    (giving the matrix M and offset m of ``x_0 = M x_T + m + sum_k G_k z_k``), once more with each
    noise call k fed ``h_z`` times the basis vectors (giving every ``G_k``), and once on random points
    to confirm the map is affine and to measure the loop's round-off.  The probe steps ``h, h_z`` are
    powers of two chosen from the magnitude of the offset, so a large data mean (offset 1e6 or 1e12)
    does not swamp the differences that carry M and G.  The law ``N(M mu_T + m, M S_T M^T + sum_k
    G_k G_k^T)`` is compared with :func:`lindiff.sampling_law` by relative errors against
    :func:`roundoff_tolerance`.  No Monte Carlo, so a correct sampler passes and any wrong coefficient
    above the tolerance fails, deterministically.
``mode="statistical"``
    For loops that are not affine (clipping, thresholding) or whose randomness cannot be injected:
    ``n`` samples; in the reference law's eigenbasis the sample means, variances and correlations have
    exact null distributions (normal, chi-square, Student t; :func:`lindiff.mc.moment_p_values`), and
    the sampler fails when the smallest p-value is below ``false_alarm / count`` (Bonferroni).  The
    float64 reference is known to a resolution (its zero cut-off, and the round-off of a loop run at
    ``dtype``); the null is the set of laws within that resolution and every p-value is the largest
    over the set, so the false-alarm probability is at most ``false_alarm`` exactly; the test suite
    measures it, on near-singular and ill-conditioned laws too.

The user's loop has the signature ``run(x_T, eps_model, noise) -> x_0``: ``x_T`` is an (n, d) array,
``eps_model(x, t)`` returns lindiff's linear noise prediction at lindiff's time ``t`` for the rows of x,
and ``noise(shape)`` must supply every standard-normal draw the loop makes, in order.

Round-off model
---------------
A loop of K steps run in a floating-point type with unit round-off ``u`` (``np.finfo(dtype).eps``)
recomputes O(1) coefficients per step; their errors add up like a random walk (``sqrt(K) u``), and
schedulers' formulas cancel (``1 - alpha_bar_t / alpha_bar_{t-1}`` loses ``log10(1/beta_t)`` digits,
``x0 = (x - sigma eps)/alpha`` amplifies by ``1/alpha``).  The exact-mode tolerance is

.. math::  \tau = \max\big(\tau_{\min}(u),\; c(u)\sqrt{K}\,u\big)

with ``tau_min = 1e-10, c = 2000`` for float64 (measured: a correct 1000-step diffusers DDPM loop in
float64 is off by 1e-12, its coefficient cancellation at beta = 1e-4 by 2.5e-13 per step) and
``tau_min = 0, c = 40`` for float32 (a 1000-step linear-beta DDPM in float32 is off by 8e-6, about
2 sqrt(K) u).  The probe's own resolution, propagated from its measured round-off (the affinity
residual) to the law, raises the tolerance of a loop that is noisier than that: a 1000-step
squaredcos_cap_v2 DDPM in float32 is off by 5e-4 (x0 = (x - sigma eps)/alpha divides by alpha ~ 1e-4).
No fixed model serves both, so a loop that can also run in float64 is better judged by *measuring*:
``check_sampler(..., dtype=np.float32, run_float64=...)`` judges the float64 run and accepts the
float32 run when it deviates from it by its own round-off (reported); the diffusers adapter runs
schedulers in float64 by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import _linalg, mc
from .._validation import RNGLike, as_positive_int, as_rng
from ..gaussian import Gaussian, kl, w2
from ..samplers import build_sampler, sampling_law
from ..scores import AffineModel
from ..tables import Column, Table

__all__ = ["AffineProbe", "probe_affine", "OracleResult", "check_sampler", "probe_loop", "NonAffineError",
           "roundoff_tolerance"]

# probe steps are powers of two (exact scaling) up to this bound
_MAX_PROBE_STEP = 2.0**80
_U64 = float(np.finfo(np.float64).eps)


class NonAffineError(ValueError):
    """The probed function is not affine (e.g. clipping or thresholding is switched on)."""


@dataclass(frozen=True)
class AffineProbe:
    r"""``f(x, z) = matrix x + offset + noise_matrix z``; ``noise_cov = noise_matrix noise_matrix^T``.

    ``residual`` is the largest deviation from affinity on random probe points, relative to the
    magnitude of the outputs there; ``scale`` and ``noise_scale`` are the probe steps ``h, h_z``;
    ``matrix_error`` and ``noise_error`` are the attainable absolute precision of the recovered
    entries, :math:`\max(r, u_{64})\,\max|f| / h` (``h_z`` for the noise), where ``r`` is the residual:
    the differences ``f(h e_i) - f(0)`` that carry M cannot be more accurate than the round-off of
    outputs of magnitude ``max|f|``; ``precision`` is the larger of the two relative to the largest
    entry.
    """

    matrix: np.ndarray
    offset: np.ndarray
    noise_matrix: np.ndarray
    residual: float
    scale: float = 1.0
    noise_scale: float = 1.0
    precision: float = 0.0
    matrix_error: float = 0.0
    noise_error: float = 0.0

    @property
    def noise_cov(self) -> np.ndarray:
        return self.noise_matrix @ self.noise_matrix.T

    def law(self, start: Gaussian | None = None) -> Gaussian:
        """Law of the output for ``x ~ start`` (N(0, I) when None) and ``z ~ N(0, I)``."""
        mean, cov = self._moments(start)
        scale = 1.0 if start is None else float(np.abs(start.cov).max())
        return Gaussian(mean, cov, _scale=scale)

    def _moments(self, start: Gaussian | None) -> tuple[np.ndarray, np.ndarray]:
        d = self.matrix.shape[1]
        mean = np.zeros(d) if start is None else start.mean
        cov = np.eye(d) if start is None else start.cov
        out = self.matrix @ cov @ self.matrix.T + self.noise_cov
        return self.matrix @ mean + self.offset, 0.5 * (out + out.T)


def _as_out(y, n, d) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n, d):
        raise ValueError(f"the probed function must return shape ({n}, {d}), got {y.shape}")
    if not np.all(np.isfinite(y)):
        bad = int(np.sum(~np.isfinite(y).all(axis=1)))
        raise NonAffineError(f"the sampler returned NaN or infinite values ({bad} of {n} probe rows)")
    return y


def _probe_step(offset: np.ndarray, coefficients: np.ndarray, step: float, floor: float = 0.0) -> float:
    """A power-of-two probe step for which ``step * max(max|coefficients|, floor)`` is at least
    ``max|offset| / 8`` (so the differences carrying the coefficients are not swamped by the offset);
    ``step`` if it already is."""
    big = float(np.max(np.abs(offset), initial=0.0))
    coef = max(float(np.max(np.abs(coefficients), initial=0.0)), floor) * step
    if big <= 8.0 * coef or big == 0.0:
        return step
    ratio = big / coef if coef > 0 else big
    return float(min(_MAX_PROBE_STEP, step * 2.0 ** math.ceil(math.log2(ratio))))


def _resolution(residual: float, out_scale: float, hx: float, hz: float, matrix, noise) -> tuple:
    """(relative precision, absolute matrix error, absolute noise error) of a probe (AffineProbe)."""
    ex = max(residual, _U64) * out_scale / hx
    ez = max(residual, _U64) * out_scale / hz
    mx, mz = float(np.abs(matrix).max(initial=0.0)), float(np.abs(noise).max(initial=0.0))
    rel = max(ex / mx if mx > 0 else 0.0, ez / mz if mz > 0 else 0.0)
    return rel, ex, ez


def probe_affine(step: Callable, d: int, noise_dim: int | None = None, rng: RNGLike = 0,
                 affinity_rtol: float = 1e-6) -> AffineProbe:
    r"""Recover the affine map of a black-box batched step ``step(x)`` or ``step(x, z)`` exactly.

    ``x`` is (n, d); with ``noise_dim`` the step also takes the injected standard-normal noise ``z``
    (n, noise_dim).  Probes: ``x = 0, h e_1..h e_d`` (z = 0), ``z = h_z e_1..h_z e_k`` (x = 0), then
    random points of the same magnitudes to measure the deviation from affinity; raises
    :class:`NonAffineError` above ``affinity_rtol``.  ``h`` and ``h_z`` are powers of two, raised
    from 1 when the offset dwarfs the map (one more evaluation), and the attainable precision of the
    result is reported in ``precision`` (see :class:`AffineProbe`).

    >>> probe = probe_affine(lambda x, z: 2 * x + 1 + 0.5 * z, 2, noise_dim=2)
    >>> probe.matrix.diagonal().tolist(), probe.offset.tolist(), probe.noise_cov.diagonal().tolist()
    ([2.0, 2.0], [1.0, 1.0], [0.25, 0.25])
    >>> big = probe_affine(lambda x: 1e12 + 3 * x, 1)   # probed around the offset's scale
    >>> float(big.matrix[0, 0]), big.scale >= 1e11
    (3.0, True)
    """
    d = as_positive_int(d, "d")
    k = 0 if noise_dim is None else as_positive_int(noise_dim, "noise_dim")
    gen = as_rng(rng)

    def evaluate(hx: float, hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = 1 + d + k
        X = np.zeros((n, d))
        X[1 : 1 + d] = hx * np.eye(d)
        Z = np.zeros((n, k))
        if k:
            Z[1 + d :] = hz * np.eye(k)
        Y = _as_out(step(X, Z) if k else step(X), n, d)
        off = Y[0]
        return off, (Y[1 : 1 + d] - off).T / hx, ((Y[1 + d :] - off).T / hz if k else np.zeros((d, 0)))

    hx = hz = 1.0
    offset, matrix, noise = evaluate(hx, hz)
    new_hx, new_hz = _probe_step(offset, matrix, hx), (_probe_step(offset, noise, hz) if k else hz)
    if (new_hx, new_hz) != (hx, hz):
        hx, hz = new_hx, new_hz
        offset, matrix, noise = evaluate(hx, hz)
    m = 4
    Xr = hx * gen.standard_normal((m, d))
    Zr = hz * gen.standard_normal((m, k))
    Yr = _as_out(step(Xr, Zr) if k else step(Xr), m, d)
    pred = Xr @ matrix.T + offset + (Zr @ noise.T if k else 0.0)
    out_scale = max(1.0, float(np.abs(Yr).max()), float(np.abs(offset).max(initial=0.0)))
    residual = float(np.abs(pred - Yr).max() / out_scale)
    if residual > affinity_rtol:
        raise NonAffineError(f"the step is not affine: relative deviation {residual:.3e} > {affinity_rtol:g} on random "
                             "points (switch off clipping/thresholding or use mode='statistical')")
    return AffineProbe(matrix, offset, noise, residual, hx, hz, *_resolution(residual, out_scale, hx, hz, matrix, noise))


class _Noise:
    """Noise source for probing: records calls and returns scripted rows."""

    def __init__(self, script: Callable[[int, tuple], np.ndarray] | None = None):
        self.calls: list[tuple] = []
        self.script = script

    def __call__(self, shape) -> np.ndarray:
        shape = tuple(int(s) for s in np.atleast_1d(shape))
        k = len(self.calls)
        self.calls.append(shape)
        if self.script is None:
            return np.zeros(shape)
        return self.script(k, shape)


class _BasisScript:
    """Noise call k returns ``scale`` times rows k*d..(k+1)*d of the identity (a picklable closure)."""

    def __init__(self, d: int, scale: float):
        self.d, self.scale = d, scale

    def __call__(self, k: int, shape) -> np.ndarray:
        out = np.zeros(shape)
        out[k * self.d : (k + 1) * self.d] = self.scale * np.eye(self.d)
        return out


def probe_loop(run: Callable, model: AffineModel, affinity_rtol: float = 1e-6, rng: RNGLike = 0) -> AffineProbe:
    """Probe a whole sampler loop ``run(x_T, eps_model, noise)`` (see module docstring) as one affine map
    of ``x_T`` and all the noise it draws (probe steps and precision as in :func:`probe_affine`)."""
    d = model.dim
    eps_model = model.eps
    gen = as_rng(rng)

    def start_probe(h: float):
        noise = _Noise()
        Y = _as_out(run(np.vstack([np.zeros(d), h * np.eye(d)]), eps_model, noise), d + 1, d)
        return Y[0], (Y[1:] - Y[0]).T / h, noise.calls

    # A loop's intermediates grow with the probe step even where its output does not (a collapsing
    # sampler has M ~ 0), so the step only grows when the offset dwarfs max(|M|, 1): the magnitude of
    # the outputs a unit start point produces.
    hx = 1.0
    offset, matrix, calls = start_probe(hx)
    if _probe_step(offset, matrix, hx, 1.0) != hx:
        hx = _probe_step(offset, matrix, hx, 1.0)
        offset, matrix, calls = start_probe(hx)
    for shape in calls:
        if len(shape) != 2 or shape[1] != d or shape[0] != d + 1:
            raise ValueError(f"noise(shape) must be called with shape (n, {d}) for the batch of n points; got {shape}")
    K = len(calls)
    G = np.zeros((d, K * d))
    hz = 1.0
    if K:
        def noise_probe(h: float) -> np.ndarray:
            Yn = _as_out(run(np.zeros((K * d, d)), eps_model, _Noise(_BasisScript(d, h))), K * d, d)
            return (Yn - offset).T / h

        hz = hx
        G = noise_probe(hz)
        if _probe_step(offset, G, hz, 1.0) != hz:
            hz = _probe_step(offset, G, hz, 1.0)
            G = noise_probe(hz)
    # affinity check on random points and random noise of the probes' magnitudes
    m = 4
    Xr = hx * gen.standard_normal((m, d))
    Zr = hz * gen.standard_normal((K, m, d))
    Yr = _as_out(run(Xr, eps_model, _Noise(lambda k, shape: Zr[k])), m, d)
    # G's columns are ordered (call k, coordinate j)
    pred = Xr @ matrix.T + offset + sum((Zr[k] @ G[:, k * d : (k + 1) * d].T for k in range(K)), np.zeros((m, d)))
    out_scale = max(1.0, float(np.abs(Yr).max()), float(np.abs(offset).max(initial=0.0)))
    residual = float(np.abs(pred - Yr).max() / out_scale)
    if residual > affinity_rtol:
        raise NonAffineError(f"the sampler loop is not affine: relative deviation {residual:.3e} > {affinity_rtol:g} "
                             "(clipping or thresholding switched on, or noise drawn outside noise()); use mode='statistical'")
    return AffineProbe(matrix, offset, G, residual, hx, hz, *_resolution(residual, out_scale, hx, hz, matrix, G))


@dataclass(frozen=True)
class OracleResult:
    """Outcome of :func:`check_sampler`; truthy when the sampler matches."""

    passed: bool
    mode: str
    reference: Gaussian
    law: Gaussian | None
    mean_error: float | None
    cov_error: float | None
    tolerance: float | None
    max_z: float | None
    threshold: float | None
    message: str
    details: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def table(self) -> Table:
        cols = [Column("mode"), Column("passed"), Column("mean error", note="relative"), Column("cov error", note="relative Frobenius"),
                Column("tolerance"), Column("max |z|"), Column("threshold")]
        return Table(self.message, cols, [[self.mode, self.passed, self.mean_error, self.cov_error, self.tolerance,
                                            self.max_z, self.threshold]])


# round-off model constants (module docstring): (floor, c) per unit round-off
_ROUNDOFF = {np.dtype(np.float64): (1e-10, 2000.0), np.dtype(np.float32): (0.0, 40.0)}


def roundoff_tolerance(dtype, steps: int) -> float:
    r"""Exact-mode tolerance for a loop of ``steps`` steps run in ``dtype`` (module docstring):
    :math:`\max(\tau_{\min}, c\sqrt{K}u)`.

    >>> roundoff_tolerance(np.float64, 1000), round(roundoff_tolerance(np.float32, 1000), 7)
    (1e-10, 0.0001508)
    """
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dt}")
    u = float(np.finfo(dt).eps)
    floor, c = _ROUNDOFF.get(dt, (0.0, 40.0))
    return max(floor, c * math.sqrt(max(int(steps), 1)) * u)


def _relative(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """``||a - b||_F / scale`` computed on scaled arrays (no overflow at 1e200)."""
    if scale == 0.0 or not math.isfinite(scale):
        scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-300)
    return float(np.linalg.norm(a / scale - b / scale))


def _divergences(law: Gaussian, ref: Gaussian) -> dict:
    """KL and W2 between the probed and the reference law, computed on laws divided by their common
    magnitude (KL is invariant, W2 scales with its square root), so a law with eigenvalues near 1e216
    does not overflow the products inside W2."""
    out: dict = {}
    s = max(float(np.abs(ref.cov).max(initial=0.0)), float(np.abs(law.cov).max(initial=0.0)))
    s = s if s > 0 and math.isfinite(s) else 1.0
    root = math.sqrt(s)
    try:
        a = Gaussian(law.mean / root, law.cov / s)
        b = Gaussian(ref.mean / root, ref.cov / s)
    except ValueError as exc:
        out["divergences unavailable"] = str(exc)
        return out
    for name, fn, factor in (("kl(user || lindiff)", kl, 1.0), ("w2(user, lindiff)", w2, root)):
        try:
            out[name] = fn(a, b) * factor
        except (ValueError, np.linalg.LinAlgError) as exc:  # reported, never raised: the verdict does not use them
            out[f"{name} unavailable"] = str(exc)
    return out


def _start_law(model: AffineModel, sampler: str, steps, t_min, init, options) -> Gaussian | None:
    if isinstance(init, Gaussian):
        return init
    if isinstance(init, str) and init == "standard":
        return None
    if isinstance(init, str) and init == "exact":
        if "grid" in options:
            t_start = float(np.asarray(options["grid"])[0])
        else:
            t_start = build_sampler(model.process, sampler, steps, t_min, **options).t_start
        return model.process.marginal(model.data, t_start)
    raise ValueError(f"init must be 'standard', 'exact' or a Gaussian, got {init!r}")


def check_sampler(run: Callable, model: AffineModel, sampler: str, steps: int | None = None, *, t_min: float = 0.0,
                  init="standard", mode: str = "exact", dtype=np.float64, tolerance: float | None = None,
                  n: int = 20_000, rng: RNGLike = None, false_alarm: float = 1e-3, reference: Gaussian | None = None,
                  loop_steps: int | None = None, run_float64: Callable | None = None, **options) -> OracleResult:
    r"""Decide whether a user's sampler loop has the same output law as lindiff's ``sampler``.

    Parameters
    ----------
    run : ``run(x_T, eps_model, noise) -> x_0`` (module docstring)
    model : lindiff's affine model (its ``eps`` is handed to ``run``)
    sampler, steps, t_min, options : the matching lindiff sampler (see :func:`lindiff.sampling_law`)
    init : start law: ``"standard"``, ``"exact"`` or a Gaussian (``x_T`` is drawn from it)
    mode : ``"exact"`` (probing, deterministic) or ``"statistical"`` (Monte Carlo)
    dtype : the floating-point type the loop computes in; sets the round-off model
        (:func:`roundoff_tolerance`) of both modes
    tolerance : exact mode: relative tolerance instead of the round-off model's
    n, rng, false_alarm : statistical mode: samples, generator and the bound on the false-alarm rate
    reference : compare with this law instead of computing ``sampling_law``
    loop_steps : number of steps the loop takes (default: the lindiff program's), for the round-off model
    run_float64 : exact mode with a lower-precision ``dtype``: the same loop computing in float64.  The
        tolerance is then *measured* instead of modelled: the float64 run is judged at float64's
        round-off model, and ``run`` passes when that run passes and ``run`` deviates from it by less
        than 1% (its own round-off, reported in ``details["low_vs_float64"]``; the returned errors and
        law are ``run``'s)

    Returns
    -------
    OracleResult
        Truthy when the loop matches.  Exact mode: ``mean_error`` is
        :math:`\|\Delta m\| / (\|m\| + \sqrt{\operatorname{tr}\Sigma})`, ``cov_error``
        :math:`\|\Delta\Sigma\|_F / \max(\|\Sigma\|_F, \|\Sigma_T\|_F)` (round-off scales with the
        magnitudes the loop handles: the start law's as well as the output's).

    Examples
    --------
    >>> import lindiff as ld
    >>> p = ld.DDPM.linear(50)
    >>> model = ld.GaussianScore(ld.Gaussian.from_spectrum([1.0, 0.2]), p)
    >>> abar, ts = p.alpha_bar, ld.samplers.ddpm_timesteps(50, 10)  # 1-based steps, leading spacing
    >>> def run(x, eps, noise):  # DDIM (Song et al. 2021, eq. 12), written out
    ...     for t, s in zip(ts, list(ts[1:]) + [0]):
    ...         e = eps(x, t)
    ...         x0 = (x - np.sqrt(1 - abar[t]) * e) / np.sqrt(abar[t])
    ...         x = np.sqrt(abar[s]) * x0 + np.sqrt(1 - abar[s]) * e
    ...     return x
    >>> bool(check_sampler(run, model, "ddim", 10))
    True
    """
    if not callable(run):
        raise TypeError(f"run must be a callable run(x_T, eps_model, noise) -> x_0, got {type(run).__name__}")
    if not isinstance(model, AffineModel):
        raise TypeError(f"model must be an affine lindiff model (GaussianScore or LinearDenoiser), got {type(model).__name__}")
    if mode not in ("exact", "statistical"):
        raise ValueError(f"mode must be 'exact' or 'statistical', got {mode!r}")
    ref = reference if reference is not None else sampling_law(model, model.process, sampler, steps, t_min, init, **options)
    start = _start_law(model, sampler, steps, t_min, init, options)
    if loop_steps is None:
        loop_steps = 100 if reference is not None else max(len(build_sampler(model.process, sampler, steps, t_min, **options).steps), 1)
    K_steps = as_positive_int(loop_steps, "loop_steps")
    model_tol = roundoff_tolerance(dtype, K_steps)
    if mode == "exact":
        if run_float64 is not None and np.dtype(dtype) != np.dtype(np.float64):
            r64 = _check_exact(run_float64, model, ref, start, roundoff_tolerance(np.float64, K_steps), tolerance, K_steps)
            return _two_precisions(r64, _check_exact(run, model, ref, start, model_tol, tolerance, K_steps), model_tol)
        return _check_exact(run, model, ref, start, model_tol, tolerance, K_steps)
    return _check_statistical(run, model, ref, start, dtype, K_steps, n, rng, false_alarm)


def _check_exact(run, model, ref: Gaussian, start, model_tol: float, tolerance, K_steps: int) -> OracleResult:
    # affinity is judged at the scale of the loop's own round-off (float32 loops accumulate more)
    affinity = tolerance if tolerance is not None else model_tol
    try:
        probe = probe_loop(run, model, affinity_rtol=max(affinity, 1e-9))
    except NonAffineError as exc:
        hint = "; the oracle's statistical mode runs non-affine loops" if "not affine" in str(exc) else ""
        return OracleResult(False, "exact", ref, None, None, None, None, None, None, f"FAIL exact: {exc}{hint}")
    K = probe.noise_matrix.shape[1] // max(model.dim, 1)
    mean, cov = probe._moments(start)
    start_cov = np.eye(model.dim) if start is None else start.cov
    start_mean = np.zeros(model.dim) if start is None else start.mean
    scale_c = max(_fro(ref.cov), _fro(start_cov))
    scale_m = _fro(ref.mean) + math.sqrt(max(float(np.trace(ref.cov / scale_c)), 0.0) * scale_c) if scale_c > 0 else 1.0
    scale_m = scale_m if scale_m > 0 else 1.0
    cov_err = _relative(cov, ref.cov, scale_c)
    mean_err = _relative(mean, ref.mean, scale_m)
    # The probe cannot resolve entries better than its measured round-off (matrix_error, noise_error):
    # propagated to the law, d(M S M^T) <= 2 |dM|_F |S| |M|_F and d(G G^T) <= 2 |dG|_F |G|_F.  A loop
    # noisier than the round-off model says raises the tolerance accordingly.
    d = model.dim
    probe_cov = 2 * (probe.matrix_error * d * _fro(start_cov) * _fro(probe.matrix)
                     + probe.noise_error * math.sqrt(d * probe.noise_matrix.shape[1]) * _fro(probe.noise_matrix)) / scale_c
    probe_mean = (probe.matrix_error * d * _fro(start_mean) + probe.residual * _fro(probe.offset)) / scale_m
    tol = tolerance if tolerance is not None else max(model_tol, 4.0 * max(probe_cov, probe_mean))
    passed = cov_err <= tol and mean_err <= tol
    details = {"noise_calls": K, "loop_steps": K_steps, "affinity_residual": probe.residual,
               "probe_resolution": max(probe_cov, probe_mean), "roundoff_tolerance": model_tol, "probe": probe}
    try:
        law = Gaussian(mean, cov, _scale=scale_c)
    except ValueError as exc:  # e.g. an indefinite probed covariance from a wrong noise coefficient
        law = None
        details["law unavailable"] = str(exc)
    if law is not None:
        details.update(_divergences(law, ref))
    msg = (f"{'PASS' if passed else 'FAIL'} exact: mean error {mean_err:.3g}, covariance error {cov_err:.3g} "
           f"(tolerance {tol:.3g}, {K} noise calls)")
    return OracleResult(passed, "exact", ref, law, mean_err, cov_err, tol, None, None, msg, details)


def _fro(a: np.ndarray) -> float:
    """Frobenius norm without overflow for entries near 1e200."""
    a = np.asarray(a, float)
    s = float(np.abs(a).max(initial=0.0))
    return 0.0 if s == 0.0 else s * float(np.linalg.norm(a / s))


def _check_statistical(run, model, ref: Gaussian, start, dtype, K_steps: int, n, rng, false_alarm) -> OracleResult:
    gen = as_rng(rng)
    n = as_positive_int(n, "n", minimum=10)
    x_T = gen.standard_normal((n, model.dim)) if start is None else start.sample(n, gen)
    x0 = np.asarray(run(x_T, model.eps, lambda shape: gen.standard_normal(shape)), dtype=np.float64)
    if x0.shape != (n, model.dim):
        raise ValueError(f"the sampler must return shape ({n}, {model.dim}), got {x0.shape}")
    if not np.all(np.isfinite(x0)):
        return OracleResult(False, "statistical", ref, None, None, None, None, float("inf"), None,
                            "FAIL statistical: the sampler returned NaN or infinite values")
    # resolution of the comparison: a loop run at unit round-off u over K steps is exact only to a
    # relative rho = c sqrt(K) u on its coefficients (round-off model); its variances then move by
    # 2 rho lambda_j, leak rho^2 (lambda_max + |mean|^2) between directions, and its mean by rho (|mean| + sd)
    u = float(np.finfo(np.dtype(dtype)).eps)
    rho = _ROUNDOFF.get(np.dtype(dtype), (0.0, 40.0))[1] * math.sqrt(K_steps) * u
    lam = ref.eigenvalues
    lam_max = float(lam.max(initial=0.0))
    m2 = float(ref.mean @ ref.mean)
    var_res = 2 * rho * lam + rho * rho * (lam_max + m2)
    mean_res = rho * (math.sqrt(m2) + math.sqrt(lam_max))
    pvals = mc.moment_p_values(x0, ref, mean_resolution=mean_res, variance_resolution=var_res)
    p_min = float(pvals.min())
    passed = p_min >= false_alarm / pvals.size
    # report the smallest p-value as an equivalent two-sided |z| (and the Bonferroni threshold likewise)
    max_z = float(mc.stats.norm.isf(max(p_min, 1e-300) / 2))
    threshold = mc.max_abs_z_threshold(pvals.size, false_alarm)
    msg = (f"{'PASS' if passed else 'FAIL'} statistical: smallest p-value {p_min:.3g} over {pvals.size} exact moment tests "
           f"(Bonferroni threshold {false_alarm / pvals.size:.3g}; false-alarm rate <= {false_alarm:g}; n = {n})")
    return OracleResult(passed, "statistical", ref, None, None, None, None, max_z, threshold, msg,
                        {"p_values": pvals, "z": mc.moment_z_scores(x0, ref), "mean_resolution": mean_res,
                         "variance_resolution": var_res, "zero_cutoff": _linalg.cutoff(lam, getattr(ref, "_scale", 0.0))})


# A low-precision run may differ from the float64 run of the same loop by its round-off, which depends
# on the loop's conditioning (measured on diffusers' float32 DDPM at 1000 steps: 8e-6 for linear betas,
# 5e-4 for squaredcos_cap_v2, whose x0 = (x - sigma eps)/alpha divides by alpha ~ 1e-4); beyond 1% it
# is not round-off but a defect of the low-precision path.
_LOW_PRECISION_CEILING = 1e-2


def _two_precisions(r64: OracleResult, low: OracleResult, model_tol: float) -> OracleResult:
    """Judge a low-precision run with the tolerance measured from the same loop at float64."""
    if r64.law is None or low.law is None:
        return OracleResult(False, "exact", low.reference, low.law, low.mean_error, low.cov_error, low.tolerance, None,
                            None, f"FAIL exact: {low.message if low.law is None else r64.message} (float64 run: {r64.message})",
                            {**low.details, "float64_result": r64})
    ref = r64.reference
    scale_c = max(_fro(ref.cov), 1e-300)
    scale_m = _fro(ref.mean) + math.sqrt(max(float(np.trace(ref.cov)), 0.0)) + 1e-300
    dev = max(_relative(low.law.cov, r64.law.cov, scale_c), _relative(low.law.mean, r64.law.mean, scale_m))
    passed = bool(r64) and dev <= _LOW_PRECISION_CEILING
    tol = (r64.tolerance or 0.0) + 2 * dev
    msg = (f"{'PASS' if passed else 'FAIL'} exact: mean error {low.mean_error:.3g}, covariance error {low.cov_error:.3g} "
           f"(tolerance {tol:.3g} = float64 tolerance + 2 x measured round-off {dev:.3g}; round-off model {model_tol:.3g}); "
           f"float64 run: {r64.message.split(': ', 1)[-1]}")
    details = {**low.details, "low_vs_float64": dev, "float64_result": r64}
    return OracleResult(passed, "exact", low.reference, low.law, low.mean_error, low.cov_error, tol, None, None, msg, details)
