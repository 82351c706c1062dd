r"""An exact oracle for other people's diffusion samplers.

With a linear eps-model on Gaussian data every sampler is an affine map of its starting point and its
injected noise, so its output law is known exactly.  Two modes:

``mode="exact"``
    The user's loop is *probed*: run once on the batch ``[0, e_1, ..., e_d]`` with zero noise (giving the
    matrix M and offset m of ``x_0 = M x_T + m + sum_k G_k z_k``), once more with each noise call k fed
    the basis vectors (giving every ``G_k``), and once on random points to confirm the map is affine.
    The resulting law ``N(M mu_T + m, M S_T M^T + sum_k G_k G_k^T)`` is compared with
    :func:`lindiff.sampling_law` by relative errors; the tolerance follows from the precision of the
    user's coefficients (``dtype``): ``max(1e-10, 200 sqrt(K) eps(dtype))`` for K noise calls / steps.
    No Monte Carlo, so a correct sampler passes and any wrong coefficient fails, deterministically.
``mode="statistical"``
    For loops whose randomness cannot be injected: ``n`` samples; in the reference law's eigenbasis the
    sample means, variances and correlations have exact null distributions (normal, chi-square,
    Student t; :func:`lindiff.mc.moment_p_values`), and the sampler fails when the smallest p-value is
    below ``false_alarm / count`` (Bonferroni).  The false-alarm probability is therefore at most
    ``false_alarm`` exactly; the test suite also measures it.

The user's loop has the signature ``run(x_T, eps_model, noise) -> x_0``: ``x_T`` is an (n, d) array,
``eps_model(x, t)`` returns lindiff's linear noise prediction at lindiff's time ``t`` for the rows of x,
and ``noise(shape)`` must supply every standard-normal draw the loop makes, in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import mc
from .._validation import RNGLike, as_positive_int, as_rng
from ..gaussian import Gaussian, kl, w2
from ..samplers import build_sampler, sampling_law
from ..scores import AffineModel
from ..tables import Column, Table

__all__ = ["AffineProbe", "probe_affine", "OracleResult", "check_sampler", "probe_loop", "NonAffineError"]


class NonAffineError(ValueError):
    """The probed function is not affine (e.g. clipping or thresholding is switched on)."""


@dataclass(frozen=True)
class AffineProbe:
    """``f(x, z) = matrix x + offset + noise_matrix z``; ``noise_cov = noise_matrix noise_matrix^T``."""

    matrix: np.ndarray
    offset: np.ndarray
    noise_matrix: np.ndarray
    residual: float  # relative deviation from affinity on random probe points

    @property
    def noise_cov(self) -> np.ndarray:
        return self.noise_matrix @ self.noise_matrix.T

    def law(self, start: Gaussian | None = None) -> Gaussian:
        """Law of the output for ``x ~ start`` (N(0, I) when None) and ``z ~ N(0, I)``."""
        d = self.matrix.shape[1]
        mean = np.zeros(d) if start is None else start.mean
        cov = np.eye(d) if start is None else start.cov
        out = self.matrix @ cov @ self.matrix.T + self.noise_cov
        return Gaussian(self.matrix @ mean + self.offset, 0.5 * (out + out.T), _scale=float(np.abs(cov).max()))


def _as_out(y, n, d) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n, d):
        raise ValueError(f"the probed function must return shape ({n}, {d}), got {y.shape}")
    if not np.all(np.isfinite(y)):
        bad = int(np.sum(~np.isfinite(y).all(axis=1)))
        raise NonAffineError(f"the sampler returned NaN or infinite values ({bad} of {n} probe rows)")
    return y


def probe_affine(step: Callable, d: int, noise_dim: int | None = None, rng: RNGLike = 0,
                 affinity_rtol: float = 1e-6) -> AffineProbe:
    r"""Recover the affine map of a black-box batched step ``step(x)`` or ``step(x, z)`` exactly.

    ``x`` is (n, d); with ``noise_dim`` the step also takes the injected standard-normal noise ``z``
    (n, noise_dim).  Probes: ``x = 0, e_1..e_d`` (z = 0), ``z = e_1..e_k`` (x = 0), then random points
    to measure the deviation from affinity; raises :class:`NonAffineError` above ``affinity_rtol``.

    >>> probe = probe_affine(lambda x, z: 2 * x + 1 + 0.5 * z, 2, noise_dim=2)
    >>> probe.matrix.diagonal().tolist(), probe.offset.tolist(), probe.noise_cov.diagonal().tolist()
    ([2.0, 2.0], [1.0, 1.0], [0.25, 0.25])
    """
    d = as_positive_int(d, "d")
    k = 0 if noise_dim is None else as_positive_int(noise_dim, "noise_dim")
    gen = as_rng(rng)
    n = 1 + d + k + 4
    X = np.zeros((n, d))
    X[1 : 1 + d] = np.eye(d)
    X[1 + d + k :] = gen.standard_normal((4, d))
    Z = np.zeros((n, k))
    if k:
        Z[1 + d : 1 + d + k] = np.eye(k)
        Z[1 + d + k :] = gen.standard_normal((4, k))
    Y = _as_out(step(X, Z) if k else step(X), n, d)
    offset = Y[0]
    matrix = (Y[1 : 1 + d] - offset).T
    noise = (Y[1 + d : 1 + d + k] - offset).T if k else np.zeros((d, 0))
    pred = X[1 + d + k :] @ matrix.T + offset + (Z[1 + d + k :] @ noise.T if k else 0.0)
    scale = max(1.0, float(np.abs(Y[1 + d + k :]).max()))
    residual = float(np.abs(pred - Y[1 + d + k :]).max() / scale)
    if residual > affinity_rtol:
        raise NonAffineError(f"the step is not affine: relative deviation {residual:.3e} > {affinity_rtol:g} on random "
                             "points (switch off clipping/thresholding or use mode='statistical')")
    return AffineProbe(matrix, offset, noise, residual)


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


def probe_loop(run: Callable, model: AffineModel, affinity_rtol: float = 1e-6, rng: RNGLike = 0) -> AffineProbe:
    """Probe a whole sampler loop ``run(x_T, eps_model, noise)`` (see module docstring) as one affine map
    of ``x_T`` and all the noise it draws."""
    d = model.dim
    eps_model = model.eps
    gen = as_rng(rng)
    first = _Noise()
    X = np.vstack([np.zeros(d), np.eye(d)])
    Y = _as_out(run(X, eps_model, first), d + 1, d)
    calls = first.calls
    for shape in calls:
        if len(shape) != 2 or shape[1] != d or shape[0] != d + 1:
            raise ValueError(f"noise(shape) must be called with shape (n, {d}) for the batch of n points; got {shape}")
    offset = Y[0]
    matrix = (Y[1:] - offset).T
    K = len(calls)
    G = np.zeros((d, K * d))
    if K:
        n = K * d

        def script(k, shape):
            out = np.zeros(shape)
            out[k * d : (k + 1) * d] = np.eye(d)
            return out

        Yn = _as_out(run(np.zeros((n, d)), eps_model, _Noise(script)), n, d)
        G = (Yn - offset).T
    # affinity check on random points and random noise
    m = 4
    Xr = gen.standard_normal((m, d))
    Zr = gen.standard_normal((K, m, d))
    Yr = _as_out(run(Xr, eps_model, _Noise(lambda k, shape: Zr[k])), m, d)
    # G's columns are ordered (call k, coordinate j)
    pred = Xr @ matrix.T + offset + sum((Zr[k] @ G[:, k * d : (k + 1) * d].T for k in range(K)), np.zeros((m, d)))
    scale = max(1.0, float(np.abs(Yr).max()))
    residual = float(np.abs(pred - Yr).max() / scale)
    if residual > affinity_rtol:
        raise NonAffineError(f"the sampler loop is not affine: relative deviation {residual:.3e} > {affinity_rtol:g} "
                             "(clipping or thresholding switched on, or noise drawn outside noise()); use mode='statistical'")
    return AffineProbe(matrix, offset, G, residual)


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


def _default_tolerance(dtype, calls: int) -> float:
    return max(1e-10, 200.0 * math.sqrt(max(calls, 1)) * float(np.finfo(dtype).eps))


def check_sampler(run: Callable, model: AffineModel, sampler: str, steps: int | None = None, *, t_min: float = 0.0,
                  init="standard", mode: str = "exact", dtype=np.float64, tolerance: float | None = None,
                  n: int = 20_000, rng: RNGLike = None, false_alarm: float = 1e-3, reference: Gaussian | None = None,
                  **options) -> OracleResult:
    r"""Decide whether a user's sampler loop has the same output law as lindiff's ``sampler``.

    Parameters
    ----------
    run : ``run(x_T, eps_model, noise) -> x_0`` (module docstring)
    model : lindiff's affine model (its ``eps`` is handed to ``run``)
    sampler, steps, t_min, options : the matching lindiff sampler (see :func:`lindiff.sampling_law`)
    init : start law: ``"standard"``, ``"exact"`` or a Gaussian (``x_T`` is drawn from it)
    mode : ``"exact"`` (probing, deterministic) or ``"statistical"`` (Monte Carlo)
    dtype : precision of the user's coefficients; sets the exact-mode tolerance
    n, rng, false_alarm : statistical mode: samples, generator and the bound on the false-alarm rate
    reference : compare with this law instead of computing ``sampling_law``
    """
    if not callable(run):
        raise TypeError(f"run must be a callable run(x_T, eps_model, noise) -> x_0, got {type(run).__name__}")
    if not isinstance(model, AffineModel):
        raise TypeError(f"model must be an affine lindiff model (GaussianScore or LinearDenoiser), got {type(model).__name__}")
    if mode not in ("exact", "statistical"):
        raise ValueError(f"mode must be 'exact' or 'statistical', got {mode!r}")
    ref = reference if reference is not None else sampling_law(model, model.process, sampler, steps, t_min, init, **options)
    if isinstance(init, Gaussian):
        start = init
    elif isinstance(init, str) and init == "standard":
        start = None
    elif isinstance(init, str) and init == "exact":
        prog_t = float(np.asarray(options.get("grid", [model.process.T]))[0]) if "grid" in options else None
        t_start = build_sampler(model.process, sampler, steps, t_min, **options).t_start if prog_t is None else prog_t
        start = model.process.marginal(model.data, t_start)
    else:
        raise ValueError(f"init must be 'standard', 'exact' or a Gaussian, got {init!r}")
    if mode == "exact":
        # affinity is judged at the same dtype-derived scale as the laws (float32 loops accumulate round-off)
        steps_hint = len(build_sampler(model.process, sampler, steps, t_min, **options).steps) if reference is None else 100
        affinity_tol = tolerance if tolerance is not None else _default_tolerance(dtype, 10 * max(steps_hint, 1))
        try:
            probe = probe_loop(run, model, affinity_rtol=max(affinity_tol, 1e-9))
        except NonAffineError as exc:
            return OracleResult(False, mode, ref, None, None, None, None, None, None, f"FAIL exact: {exc}")
        law = probe.law(start)
        K = probe.noise_matrix.shape[1] // max(model.dim, 1)
        tol = tolerance if tolerance is not None else _default_tolerance(dtype, max(K, 1) * 10)
        # round-off scales with the magnitudes the loop handles: the start law as well as the output law
        start_norm = math.sqrt(model.dim) if start is None else float(np.linalg.norm(start.cov))
        scale_c = max(float(np.linalg.norm(ref.cov)), start_norm, 1e-300)
        scale_m = float(np.linalg.norm(ref.mean)) + math.sqrt(float(np.trace(ref.cov))) + 1e-300
        cov_err = float(np.linalg.norm(law.cov - ref.cov)) / scale_c
        mean_err = float(np.linalg.norm(law.mean - ref.mean)) / scale_m
        passed = cov_err <= tol and mean_err <= tol
        details = {"noise_calls": K, "affinity_residual": probe.residual, "probe": probe}
        try:
            details["kl(user || lindiff)"] = kl(law, ref)
        except Exception:  # pragma: no cover - reported only
            pass
        details["w2(user, lindiff)"] = w2(law, ref)
        msg = (f"{'PASS' if passed else 'FAIL'} exact: mean error {mean_err:.3g}, covariance error {cov_err:.3g} "
               f"(tolerance {tol:.3g}, {K} noise calls)")
        return OracleResult(passed, mode, ref, law, mean_err, cov_err, tol, None, None, msg, details)
    gen = as_rng(rng)
    n = as_positive_int(n, "n", minimum=10)
    x_T = gen.standard_normal((n, model.dim)) if start is None else start.sample(n, gen)
    x0 = np.asarray(run(x_T, model.eps, lambda shape: gen.standard_normal(shape)), dtype=np.float64)
    if not np.all(np.isfinite(x0)):
        return OracleResult(False, mode, ref, None, None, None, None, float("inf"), None,
                            "FAIL statistical: the sampler returned NaN or infinite values")
    pvals = mc.moment_p_values(x0, ref)
    p_min = float(pvals.min())
    passed = p_min >= false_alarm / pvals.size
    # report the smallest p-value as an equivalent two-sided |z| (and the Bonferroni threshold likewise)
    max_z = float(mc.stats.norm.isf(max(p_min, 1e-300) / 2))
    threshold = mc.max_abs_z_threshold(pvals.size, false_alarm)
    msg = (f"{'PASS' if passed else 'FAIL'} statistical: smallest p-value {p_min:.3g} over {pvals.size} exact moment tests "
           f"(Bonferroni threshold {false_alarm / pvals.size:.3g}; false-alarm rate <= {false_alarm:g}; n = {n})")
    return OracleResult(passed, mode, ref, None, None, None, None, max_z, threshold, msg,
                        {"p_values": pvals, "z": mc.moment_z_scores(x0, ref)})
