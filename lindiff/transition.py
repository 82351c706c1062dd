r"""The memorisation-to-generalisation transition at N ≍ d (Merger & Goldt 2025), made exact.

:func:`transition_sweep` draws training sets of N points from ``N(0, diag(spectrum))`` for a grid of
N/d, fits the linear denoiser, and records per set (all exact given the set):

* the KL between the data and the fitted Gaussian, both directions (its expectation over sets is
  :func:`~lindiff.ensembles.expected_kl`, exact, beside the Monte Carlo mean);
* the KL between the data and the exact law of the sampler's output, both directions;
* the training loss, test loss and their gap, averaged uniformly over the process's times (the
  usual DSM objective), per dimension.

:func:`transition_table` turns the sweep into a :class:`~lindiff.Table`; ``lindiff transition`` prints
it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ._validation import as_finite_array, as_positive_int
from .ensembles import expected_kl, expected_kl_series, run_jobs, spawn_seeds
from .gaussian import Gaussian, Infinite, kl
from .losses import dsm_loss, generalisation_gap
from .processes import DDPM, Process
from .samplers import sampling_law, sampling_laws
from .scores import LinearDenoiser
from .spectra import power_law
from .tables import Column, Table

__all__ = ["TransitionResult", "transition_sweep", "transition_table", "DEFAULT_RATIOS"]

DEFAULT_RATIOS = (0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2.0, 5.0, 10.0)
KEYS = ("fit_m2d", "fit_d2m", "law_m2d", "law_d2m", "train", "test", "gap")


def _loss_times(process: Process, count: int = 200) -> np.ndarray:
    if process.discrete:
        return np.unique(np.linspace(1, process.T, min(count, process.T)).round()).astype(float)
    # midpoint rule on (0, T]
    return (np.arange(count) + 0.5) * process.T / count


def _per_dim(value: float, d: int) -> float:
    """value / d, keeping an Infinite (and its reason) as it is."""
    return value if math.isinf(value) else value / d


def _one_set(p0: Gaussian, N: int, process: Process, sampler: str, steps, t_min: float, ridge: float,
             train_time, sampler_options: dict, *, rng) -> dict:
    """One training set (the reference for :class:`_SetBatch`, which computes many at once)."""
    return _SetBatch(p0, N, process, sampler, steps, t_min, ridge, train_time, sampler_options, ())._sets([rng])[0]


@dataclass(frozen=True)
class _SetBatch:
    """Several training sets of one size N, each from its own seed, computed together: the sampler's steps
    run once for the whole batch (:func:`lindiff.samplers.sampling_laws`).  A picklable job for any
    executor; the batches are the same whatever the executor, so the results are too."""

    p0: Gaussian
    N: int
    process: Process
    sampler: str
    steps: object
    t_min: float
    ridge: float
    train_time: object
    sampler_options: dict
    seeds: tuple

    def __call__(self) -> list[dict]:
        return self._sets([np.random.default_rng(seed) for seed in self.seeds])

    def _sets(self, rngs) -> list[dict]:
        p0, process, d = self.p0, self.process, self.p0.dim
        Xs = [p0.sample(self.N, rng) for rng in rngs]
        models = [LinearDenoiser.fit(X, process, ridge=self.ridge, train_time=self.train_time) for X in Xs]
        laws = sampling_laws(models, process, self.sampler, self.steps, self.t_min, **self.sampler_options)
        times = _loss_times(process)
        out = []
        for X, model, law in zip(Xs, models, laws):
            fitted = model.data
            out.append({
                "fit_m2d": _per_dim(kl(fitted, p0), d),
                "fit_d2m": _per_dim(kl(p0, fitted), d),
                "law_m2d": _per_dim(kl(law, p0), d),
                "law_d2m": _per_dim(kl(p0, law), d),
                "train": float(np.mean(dsm_loss(model, X, times))) / d,
                "test": float(np.mean(dsm_loss(model, p0, times))) / d,
                "gap": float(np.mean(generalisation_gap(model, X, p0, times))) / d,
            })
        return out


BATCH = 16
"""Training sets per job: large enough that one pass over the sampler's steps serves many sets, small
enough to spread over workers.  Fixed, so that every executor computes the same batches."""


def _summarise(values: list[float]):
    arr = np.asarray(values, float)
    if np.any(np.isinf(arr)):
        reasons = [getattr(v, "reason", "") for v in values if math.isinf(v)]
        return Infinite(reasons[0] if reasons and reasons[0] else "infinite for some training sets")
    if arr.size < 2:
        return float(arr.mean())
    return (float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(arr.size)))


@dataclass(frozen=True)
class TransitionResult:
    d: int
    Ns: tuple[int, ...]
    ratios: tuple[float, ...]
    repeats: int
    process: Process
    sampler: str
    spectrum: np.ndarray
    raw: list[list[dict]] = field(repr=False)
    spectrum_label: str = "custom spectrum"

    def summary(self, key: str) -> list:
        return [_summarise([r[key] for r in runs]) for runs in self.raw]

    def exact(self, direction: str) -> list[float]:
        return [_per_dim(expected_kl(self.d, N, direction), self.d) for N in self.Ns]


def transition_sweep(d: int = 32, ratios: Sequence[float] = DEFAULT_RATIOS, spectrum: np.ndarray | None = None,
                     exponent: float = 1.0, process: Process | None = None, sampler: str = "ddpm",
                     steps: int | None = None, t_min: float = 0.0, ridge: float = 0.0, train_time: float | None = None,
                     repeats: int = 20, seed=0, executor=None, progress: bool | None = None,
                     spectrum_label: str | None = None, **sampler_options) -> TransitionResult:
    r"""Monte Carlo over training sets across N/d (each set exact); see the module docstring.

    Defaults: d = 32, spectrum :math:`\lambda_k \propto k^{-1}` (mean 1), DDPM linear schedule with
    T = 1000, Ho et al.'s sampler with noise on the final step too (``final_noise=True``, as Merger &
    Goldt's code; otherwise the law is singular for N < d and every KL is infinite), 20 sets per N.
    """
    d = as_positive_int(d, "d")
    label = spectrum_label or (f"power law k^-{exponent:g}" if spectrum is None else "custom spectrum")
    spectrum = power_law(d, exponent) if spectrum is None else np.asarray(spectrum, float)
    if spectrum.shape != (d,):
        raise ValueError(f"spectrum must have shape ({d},), got {spectrum.shape}")
    process = DDPM.linear(1000) if process is None else process
    if sampler == "ddpm":
        sampler_options.setdefault("final_noise", True)
    ratios_arr = as_finite_array(ratios, "ratios", ndim=1)
    if ratios_arr.size == 0 or ratios_arr.min() <= 0:
        raise ValueError(f"ratios must be a non-empty list of positive N/d values, got {ratios!r}")
    ratios = tuple(float(r) for r in ratios_arr)
    Ns = tuple(max(1, int(round(r * d))) for r in ratios)
    p0 = Gaussian.from_spectrum(spectrum)
    repeats = as_positive_int(repeats, "repeats")
    seeds = spawn_seeds(seed, len(Ns) * repeats)  # set r of size N_i has seed i * repeats + r, as before batching
    jobs, owner = [], []
    for i, N in enumerate(Ns):
        for lo in range(0, repeats, BATCH):
            chunk = tuple(seeds[i * repeats + lo : i * repeats + min(lo + BATCH, repeats)])
            jobs.append(_SetBatch(p0, N, process, sampler, steps, t_min, ridge, train_time, dict(sampler_options), chunk))
            owner.append(i)
    raw: list[list[dict]] = [[] for _ in Ns]
    for i, batch in zip(owner, run_jobs(jobs, executor, progress, "transition sweep")):
        raw[i].extend(batch)
    return TransitionResult(d, Ns, ratios, repeats, process, sampler, spectrum, raw, label)


def transition_table(result: TransitionResult | None = None, **kwargs) -> Table:
    """The sweep as a printable :class:`~lindiff.Table` (runs :func:`transition_sweep` if needed)."""
    res = transition_sweep(**kwargs) if result is None else result
    d = res.d
    rows = []
    for i, N in enumerate(res.Ns):
        rows.append([
            N / d, N,
            _per_dim(expected_kl(d, N, "model_to_data"), d), res.summary("fit_m2d")[i],
            _per_dim(expected_kl(d, N, "data_to_model"), d), res.summary("fit_d2m")[i],
            res.summary("law_m2d")[i], res.summary("law_d2m")[i],
            d / (4 * N), expected_kl_series(d, N) / d,
            res.summary("train")[i], res.summary("test")[i], res.summary("gap")[i],
        ])
    cols = [
        Column("N/d", fmt=".3g"), Column("N"),
        Column("E KL(fit||data)", "nats/dim", "exact over training sets (Wishart, digamma sums)"),
        Column("MC KL(fit||data)", "nats/dim", "Monte Carlo mean ± s.e. over training sets, fitted Gaussian"),
        Column("E KL(data||fit)", "nats/dim", "exact (inverse-Wishart mean); infinite for N <= d + 2"),
        Column("MC KL(data||fit)", "nats/dim", "Monte Carlo mean ± s.e., fitted Gaussian"),
        Column("KL(law||data)", "nats/dim", f"exact law of the {res.sampler} sampler per set; mean ± s.e. over sets"),
        Column("KL(data||law)", "nats/dim", f"exact law of the {res.sampler} sampler per set; mean ± s.e. over sets"),
        Column("d/(4N)", "nats/dim", "Merger & Goldt's large-d law"),
        Column("(d+3)/(4N)", "nats/dim", "exact leading order of E KL/d with the mean estimated"),
        Column("train", "per dim", "training DSM loss, time-averaged, mean ± s.e."),
        Column("test", "per dim", "test DSM loss, time-averaged, mean ± s.e."),
        Column("gap", "per dim", "test - train, time-averaged, mean ± s.e."),
    ]
    caption = (f"Memorisation-to-generalisation transition: d = {d}, {res.repeats} training sets per N, "
               f"data N(0, diag(spectrum)) [{res.spectrum_label}, trace {res.spectrum.sum():.3g}], {res.process!r}, "
               f"sampler {res.sampler}")
    notes = ["KL values are per dimension; 'fit' is the Gaussian N(mu_hat, S_hat) fitted to the set (1/N covariance), "
             "'law' is the exact output law of the sampler run with the fitted linear denoiser."]
    return Table(caption, cols, rows, notes, key_columns=2)
