r"""The N < d regime: ridge, early stopping and spectral decay, in expectation over training sets.

All functions draw ``repeats`` training sets once and evaluate every regularisation strength on the
*same* sets (common random numbers), so curves are smooth in the strength and the best value is found
by a deterministic 1-D minimisation of the Monte Carlo mean (each set's value being exact).

Criteria: ``"test_loss"`` (time-averaged test DSM loss), ``"kl_data_to_model"`` /
``"kl_model_to_data"`` (KL between the data and the exact law of the sampler's output).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from ._validation import as_positive_int, as_rng
from .ensembles import run_jobs, spawn_seeds
from .gaussian import Gaussian, Infinite, kl
from .losses import dsm_loss, generalisation_gap
from .processes import Process
from .samplers import sampling_law
from .scores import LinearDenoiser
from .spectra import power_law
from .tables import Column, Table
from .transition import _loss_times, _summarise

__all__ = ["CRITERIA", "evaluate", "regularisation_table", "best_ridge", "best_train_time", "decay_table"]

CRITERIA = ("test_loss", "kl_data_to_model", "kl_model_to_data")


def _sets(p0: Gaussian, N: int, repeats: int, seed) -> list[np.ndarray]:
    return [p0.sample(N, np.random.default_rng(s)) for s in spawn_seeds(seed, as_positive_int(repeats, "repeats"))]


def _metrics(X, p0, process, ridge, train_time, sampler, sampler_options) -> dict:
    model = LinearDenoiser.fit(X, process, ridge=ridge, train_time=train_time)
    times = _loss_times(process)
    law = sampling_law(model, process, sampler, **sampler_options)
    d = p0.dim
    return {"test_loss": float(np.mean(dsm_loss(model, p0, times))) / d,
            "gap": float(np.mean(generalisation_gap(model, X, p0, times))) / d,
            "kl_data_to_model": kl(p0, law) / d, "kl_model_to_data": kl(law, p0) / d}


def _options(process: Process, sampler: str, sampler_options: dict) -> dict:
    opts = dict(sampler_options)
    if sampler == "ddpm":
        opts.setdefault("final_noise", True)
    return opts


def evaluate(p0: Gaussian, N: int, process: Process, ridge: float = 0.0, train_time: float | None = None,
             sampler: str = "ddpm", repeats: int = 10, seed=0, executor=None, **sampler_options) -> dict:
    """Mean and standard error over training sets of test loss, gap and both KLs (per dimension).

    Each value is ``(mean, s.e.)``, a float for one training set, or an :class:`~lindiff.Infinite` (with the
    reason) when it is infinite on some set, e.g. a KL against a law that is singular where the data are not.
    """
    opts = _options(process, sampler, sampler_options)
    jobs = [partial(_metrics, X, p0, process, ridge, train_time, sampler, opts) for X in _sets(p0, N, repeats, seed)]
    runs = run_jobs(jobs, executor, progress=False)
    # an infinite KL on some set makes the mean an Infinite that keeps its reason (a plain float mean drops it)
    return {key: _summarise([r[key] for r in runs]) for key in runs[0]}


def regularisation_table(p0: Gaussian, N: int, process: Process, ridges: Sequence[float] = (),
                         train_times: Sequence[float] = (), sampler: str = "ddpm", repeats: int = 10, seed=0,
                         executor=None, **sampler_options) -> Table:
    """Rows for each ridge and each early-stopping time (plus the unregularised fit) on common sets."""
    rows = []
    for label, ridge, tau in ([("none", 0.0, None)] + [(f"ridge {r:g}", r, None) for r in ridges]
                              + [(f"train_time {t:g}", 0.0, t) for t in train_times]):
        m = evaluate(p0, N, process, ridge, tau, sampler, repeats, seed, executor, **sampler_options)
        rows.append([label, m["test_loss"], m["gap"], m["kl_data_to_model"], m["kl_model_to_data"]])
    cols = [Column("regularisation"), Column("test loss", "per dim", "time-averaged test DSM loss, mean ± s.e."),
            Column("gap", "per dim", "test - train"), Column("KL(data||law)", "nats/dim", f"exact {sampler} law per set"),
            Column("KL(law||data)", "nats/dim")]
    caption = f"Regularisation at N = {N}, d = {p0.dim} ({repeats} training sets, common to every row), {process!r}"
    return Table(caption, cols, rows)


def _best(p0, N, process, criterion, sampler, repeats, seed, bounds, which, sampler_options):
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    sets = _sets(p0, N, repeats, seed)
    opts = _options(process, sampler, sampler_options)

    infinite: list = []

    def objective(log_value):
        value = math.exp(log_value)
        ridge, tau = (value, None) if which == "ridge" else (0.0, value)
        vals = [_metrics(X, p0, process, ridge, tau, sampler, opts)[criterion] for X in sets]
        if any(math.isinf(v) for v in vals):  # an infinite criterion loses to every finite one
            infinite.extend(v for v in vals if math.isinf(v))
            return math.inf
        return float(np.mean(vals))

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    grid = np.linspace(lo, hi, 13)
    vals = [objective(g) for g in grid]
    k = int(np.argmin(vals))
    if math.isinf(vals[k]):
        reason = getattr(infinite[0], "reason", "") or "infinite"
        return float(math.exp(grid[k])), Infinite(f"{criterion} is infinite at every {which} in {tuple(bounds)}: {reason}")
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = minimize_scalar(lambda v: min(objective(v), 1e300), bounds=(a, b), method="bounded", options={"xatol": 1e-3})
    if res.fun > vals[k]:  # Brent's bracket holds an infinite end: keep the finite grid point
        return float(math.exp(grid[k])), float(vals[k])
    return float(math.exp(res.x)), float(res.fun)


def best_ridge(p0: Gaussian, N: int, process: Process, criterion: str = "test_loss", sampler: str = "ddpm",
               repeats: int = 10, seed=0, bounds=(1e-6, 1e2), **sampler_options) -> tuple[float, float]:
    """The ridge minimising the expected criterion (Monte Carlo mean over common training sets):
    returns ``(ridge, value)``; a grid on ``bounds`` (log scale) then bounded Brent refinement."""
    return _best(p0, N, process, criterion, sampler, repeats, seed, bounds, "ridge", sampler_options)


def best_train_time(p0: Gaussian, N: int, process: Process, criterion: str = "test_loss", sampler: str = "ddpm",
                    repeats: int = 10, seed=0, bounds=(1e-2, 1e6), **sampler_options) -> tuple[float, float]:
    """The gradient-flow time minimising the expected criterion; returns ``(train_time, value)``."""
    return _best(p0, N, process, criterion, sampler, repeats, seed, bounds, "train_time", sampler_options)


def decay_table(d: int, N: int, process: Process, exponents: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 3.0),
                sampler: str = "ddpm", repeats: int = 10, seed=0, executor=None) -> Table:
    r"""Spectral decay vs overfitting at fixed N, d: data :math:`\lambda_k\propto k^{-p}` (mean 1)."""
    rows = []
    for p in exponents:
        p0 = Gaussian.from_spectrum(power_law(d, p))
        m = evaluate(p0, N, process, sampler=sampler, repeats=repeats, seed=seed, executor=executor)
        rows.append([p, m["test_loss"], m["gap"], m["kl_data_to_model"], m["kl_model_to_data"]])
    cols = [Column("exponent p"), Column("test loss", "per dim"), Column("gap", "per dim"),
            Column("KL(data||law)", "nats/dim"), Column("KL(law||data)", "nats/dim")]
    return Table(f"Spectral decay lambda_k ~ k^-p (trace d) at N = {N}, d = {d}, {repeats} sets, {process!r}", cols, rows)
