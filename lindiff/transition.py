r"""The memorisation-to-generalisation transition at N ≍ d (Merger & Goldt 2025), made exact.

:func:`transition_sweep` draws training sets of N points from ``N(0, diag(spectrum))`` (or, with ``grid``, from
a stationary field on that grid) for a grid of N/d, fits the linear denoiser (``model="dense"``, or a
convolutional one, ``"conv"`` / ``"conv:K"``), and records per set (all exact given the set):

* the KL between the data and the fitted Gaussian, both directions (its expectation over sets is
  :func:`~lindiff.ensembles.expected_kl`, or :func:`~lindiff.ensembles.expected_kl_convolutional` for the
  full-support convolutional fit, exact, beside the Monte Carlo mean; a local kernel fits no Gaussian);
* the KL between the data and the exact law of the sampler's output, both directions;
* the training loss, test loss and their gap, averaged uniformly over the process's times (the
  usual DSM objective), per dimension.

For the dense model a training set enters only through its mean and 1/N covariance, which are drawn from
their law (:func:`~lindiff.ensembles.sample_fitted`: Gaussian mean, Wishart scatter) rather than from N
points: the same distribution over sets at O(d^2) draws per set.  Convolutional fits draw the images.

:func:`transition_table` turns the sweep into a :class:`~lindiff.Table`; ``lindiff transition`` prints
it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import _fourier
from ._validation import as_finite_array, as_positive_int
from .ensembles import (expected_kl, expected_kl_convolutional, expected_kl_series, frequency_classes, run_jobs,
                        sample_fitted, spawn_seeds)
from .gaussian import Gaussian, Infinite, kl
from .losses import train_test_losses
from .processes import DDPM, Process
from .samplers import sampling_law, sampling_laws
from .scores import LinearDenoiser
from .spectra import power_law, power_law_grid
from .tables import Column, Table

__all__ = ["TransitionResult", "transition_sweep", "transition_table", "DEFAULT_RATIOS", "MODELS"]

MODELS = ("dense", "conv", "conv:K")
"""Linear denoisers a sweep can fit: ``"dense"`` (:meth:`LinearDenoiser.fit`), ``"conv"`` (full-support
convolution) and ``"conv:K"`` with K an odd kernel size, e.g. ``"conv:3"``
(:meth:`LinearDenoiser.fit_convolutional`)."""


def parse_model(model) -> tuple[str, int | None]:
    """``"dense"`` / ``"conv"`` / ``"conv:K"`` -> (kind, kernel size or None); a ValueError names ``model``."""
    if model in ("dense", "conv"):
        return model, None
    if isinstance(model, str) and model.startswith("conv:"):
        tail = model[5:]
        if tail.isdigit() and int(tail) % 2 == 1:
            return "conv", int(tail)
    raise ValueError(f"model must be 'dense', 'conv' or 'conv:K' with K an odd kernel size (e.g. 'conv:3'), got {model!r}")

DEFAULT_RATIOS = (0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2.0, 5.0, 10.0)
KEYS = ("fit_m2d", "fit_d2m", "law_m2d", "law_d2m", "train", "test", "gap")


def _loss_times(process: Process, count: int = 200) -> np.ndarray:
    if process.discrete:
        return np.unique(np.linspace(1, process.T, min(count, process.T)).round()).astype(float)
    # midpoint rule on (0, T]
    return (np.arange(count) + 0.5) * process.T / count


def _per_dim(value: float | None, d: int) -> float | None:
    """value / d, keeping an Infinite (and its reason) as it is (and None, a value that does not apply)."""
    return value if value is None or math.isinf(value) else value / d


def _one_set(p0: Gaussian, N: int, process: Process, sampler: str, steps, t_min: float, ridge: float,
             train_time, sampler_options: dict, *, rng, model: str = "dense") -> dict:
    """One training set (the reference for :class:`_SetBatch`, which computes many at once)."""
    return _SetBatch(p0, N, process, sampler, steps, t_min, ridge, train_time, sampler_options, (),
                     model)._sets([rng])[0]


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
    model: str = "dense"

    def _fit(self, X: np.ndarray) -> LinearDenoiser:
        kind, size = parse_model(self.model)
        if kind == "dense":
            return LinearDenoiser.fit(X, self.process, ridge=self.ridge, train_time=self.train_time)
        return LinearDenoiser.fit_convolutional(X, self.process, self.p0.grid, kernel_size=size, ridge=self.ridge,
                                                train_time=self.train_time)

    def __call__(self) -> list[dict]:
        return self._sets([np.random.default_rng(seed) for seed in self.seeds])

    def _sets(self, rngs) -> list[dict]:
        p0, process, d = self.p0, self.process, self.p0.dim
        if self.model == "dense" and not _fourier.is_implicit(p0.eigenvectors):
            # the dense fit sees a training set only through its mean and 1/N covariance: draw those from
            # their law (Wishart, O(d^2) draws) instead of N d points and an N d^2 product
            train = [sample_fitted(p0, self.N, rng=rng) for rng in rngs]
            models = [LinearDenoiser._from_gaussian(g, process, self.ridge, self.train_time, 1.0, True, "fit")
                      for g in train]
        else:  # a convolutional fit needs the images (their periodograms)
            train = [p0.sample(self.N, rng) for rng in rngs]
            models = [self._fit(X) for X in train]
        local = parse_model(self.model)[1] is not None  # a local kernel is not the score of a fitted Gaussian
        laws = sampling_laws(models, process, self.sampler, self.steps, self.t_min, **self.sampler_options)
        times = _loss_times(process)
        out = []
        for data, model, law in zip(train, models, laws):
            fitted = model.data
            losses = train_test_losses(model, data, p0, times)
            out.append({
                "fit_m2d": None if local else _per_dim(kl(fitted, p0), d),
                "fit_d2m": None if local else _per_dim(kl(p0, fitted), d),
                "law_m2d": _per_dim(kl(law, p0), d),
                "law_d2m": _per_dim(kl(p0, law), d),
                **{key: float(np.mean(v)) / d for key, v in zip(("train", "test", "gap"), losses)},
            })
        return out


BATCH = 32
"""Training sets per job: large enough that one pass over the sampler's steps serves many sets, small
enough to spread over workers.  Fixed, so that every executor computes the same batches."""


def _summarise(values: list[float]):
    if any(v is None for v in values):
        return None
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
    model: str = "dense"
    grid: tuple[int, ...] | None = None

    def summary(self, key: str) -> list:
        return [_summarise([r[key] for r in runs]) for runs in self.raw]

    def exact(self, direction: str) -> list[float | None]:
        """E KL per dimension between the data and the fitted Gaussian; None for a local kernel (no fitted
        Gaussian, no closed form)."""
        kind, size = parse_model(self.model)
        if kind == "dense":
            return [_per_dim(expected_kl(self.d, N, direction), self.d) for N in self.Ns]
        if size is not None:
            return [None for _ in self.Ns]
        return [_per_dim(expected_kl_convolutional(self.grid, N, direction), self.d) for N in self.Ns]


def transition_sweep(d: int | None = None, ratios: Sequence[float] = DEFAULT_RATIOS, spectrum: np.ndarray | None = None,
                     exponent: float = 1.0, process: Process | None = None, sampler: str = "ddpm",
                     steps: int | None = None, t_min: float = 0.0, ridge: float = 0.0, train_time: float | None = None,
                     repeats: int = 20, seed=0, executor=None, progress: bool | None = None,
                     spectrum_label: str | None = None, model: str = "dense", grid=None,
                     **sampler_options) -> TransitionResult:
    r"""Monte Carlo over training sets across N/d (each set exact); see the module docstring.

    Defaults: d = 32, spectrum :math:`\lambda_k \propto k^{-1}` (mean 1), DDPM linear schedule with
    T = 1000, Ho et al.'s sampler with noise on the final step too (``final_noise=True``, as Merger &
    Goldt's code; otherwise the law is singular for N < d and every KL is infinite), 20 sets per N.

    ``model`` (one of :data:`MODELS`) picks the linear denoiser fitted to each set.  With ``grid`` (a tuple of
    grid sizes, ``d = prod(grid)``) the data are the stationary field ``Gaussian.stationary(spectrum)`` with
    ``spectrum`` of the grid's shape (default :func:`~lindiff.spectra.power_law_grid` with ``exponent``), for
    every model; a convolutional model without ``grid`` uses the periodic 1-D grid ``(d,)``.
    """
    kind, size = parse_model(model)
    d = None if d is None else as_positive_int(d, "d")
    if grid is not None or kind == "conv":
        from ._fourier import as_grid

        grid = as_grid((32 if d is None else d,) if grid is None else grid)
        n = math.prod(grid)
        if d is not None and d != n:
            raise ValueError(f"d = {d} does not match the grid {grid} (prod = {n}); give one of them")
        d = n
        if size is not None and any(size > g for g in grid):
            raise ValueError(f"model {model!r}: the kernel size {size} exceeds the grid {grid}")
        label = spectrum_label or (f"stationary, power law |f|^-{exponent:g} on grid {grid}" if spectrum is None
                                   else f"stationary, custom spectrum on grid {grid}")
        power = power_law_grid(grid, exponent) if spectrum is None else as_finite_array(spectrum, "spectrum")
        if power.shape != grid and power.shape != (d,):
            raise ValueError(f"spectrum must have the grid's shape {grid}, got {power.shape}")
        p0 = Gaussian.stationary(power.reshape(grid))
        spectrum = p0.eigenvalues
    else:
        d = 32 if d is None else d
        label = spectrum_label or (f"power law k^-{exponent:g}" if spectrum is None else "custom spectrum")
        spectrum = power_law(d, exponent) if spectrum is None else np.asarray(spectrum, float)
        if spectrum.shape != (d,):
            raise ValueError(f"spectrum must have shape ({d},), got {spectrum.shape}")
        p0 = Gaussian.from_spectrum(spectrum)
    process = DDPM.linear(1000) if process is None else process
    if sampler == "ddpm":
        sampler_options.setdefault("final_noise", True)
    ratios_arr = as_finite_array(ratios, "ratios", ndim=1)
    if ratios_arr.size == 0 or ratios_arr.min() <= 0:
        raise ValueError(f"ratios must be a non-empty list of positive N/d values, got {ratios!r}")
    ratios = tuple(float(r) for r in ratios_arr)
    Ns = tuple(max(1, int(round(r * d))) for r in ratios)
    repeats = as_positive_int(repeats, "repeats")
    seeds = spawn_seeds(seed, len(Ns) * repeats)  # set r of size N_i has seed i * repeats + r, as before batching
    jobs, owner = [], []
    for i, N in enumerate(Ns):
        for lo in range(0, repeats, BATCH):
            chunk = tuple(seeds[i * repeats + lo : i * repeats + min(lo + BATCH, repeats)])
            jobs.append(_SetBatch(p0, N, process, sampler, steps, t_min, ridge, train_time, dict(sampler_options), chunk,
                                  model))
            owner.append(i)
    raw: list[list[dict]] = [[] for _ in Ns]
    for i, batch in zip(owner, run_jobs(jobs, executor, progress, "transition sweep")):
        raw[i].extend(batch)
    return TransitionResult(d, Ns, ratios, repeats, process, sampler, spectrum, raw, label, model, p0.grid)


def transition_table(result: TransitionResult | None = None, **kwargs) -> Table:
    """The sweep as a printable :class:`~lindiff.Table` (runs :func:`transition_sweep` if needed)."""
    res = transition_sweep(**kwargs) if result is None else result
    d = res.d
    kind, size = parse_model(res.model)
    exact_m2d, exact_d2m = res.exact("model_to_data"), res.exact("data_to_model")
    if kind == "dense":
        leading = [expected_kl_series(d, N) / d for N in res.Ns]
        lead_col = Column("(d+3)/(4N)", "nats/dim", "exact leading order of E KL/d with the mean estimated")
        fit_note, inf_note = "exact over training sets (Wishart, digamma sums)", "exact (inverse-Wishart mean); infinite for N <= d + 2"
    elif size is None:
        s_count = frequency_classes(res.grid)[0]
        leading = [(d + s_count + 2) / (4 * N * d) for N in res.Ns]
        lead_col = Column("(d+s+2)/(4Nd)", "nats/dim", f"exact leading order of E KL/d for the convolutional fit "
                                                       f"(s = {s_count} self-conjugate frequencies)")
        fit_note = "exact over training sets (chi-square periodogram statistics, digamma sums per frequency)"
        inf_note = "exact (inverse chi-square means per frequency); infinite for N <= 3"
    else:
        leading = [None for _ in res.Ns]
        lead_col = Column("leading order", "nats/dim", "no closed form for a local kernel")
        fit_note = inf_note = "a local kernel is not the score of a fitted Gaussian: not applicable"
    rows = []
    for i, N in enumerate(res.Ns):
        rows.append([
            N / d, N,
            exact_m2d[i], res.summary("fit_m2d")[i],
            exact_d2m[i], res.summary("fit_d2m")[i],
            res.summary("law_m2d")[i], res.summary("law_d2m")[i],
            d / (4 * N), leading[i],
            res.summary("train")[i], res.summary("test")[i], res.summary("gap")[i],
        ])
    cols = [
        Column("N/d", fmt=".3g"), Column("N"),
        Column("E KL(fit||data)", "nats/dim", fit_note),
        Column("MC KL(fit||data)", "nats/dim", "Monte Carlo mean ± s.e. over training sets, fitted Gaussian"),
        Column("E KL(data||fit)", "nats/dim", inf_note),
        Column("MC KL(data||fit)", "nats/dim", "Monte Carlo mean ± s.e., fitted Gaussian"),
        Column("KL(law||data)", "nats/dim", f"exact law of the {res.sampler} sampler per set; mean ± s.e. over sets"),
        Column("KL(data||law)", "nats/dim", f"exact law of the {res.sampler} sampler per set; mean ± s.e. over sets"),
        Column("d/(4N)", "nats/dim", "Merger & Goldt's large-d law"),
        lead_col,
        Column("train", "per dim", "training DSM loss, time-averaged, mean ± s.e."),
        Column("test", "per dim", "test DSM loss, time-averaged, mean ± s.e."),
        Column("gap", "per dim", "test - train, time-averaged, mean ± s.e."),
    ]
    data = (f"data N(0, diag(spectrum)) [{res.spectrum_label}, trace {res.spectrum.sum():.3g}]" if res.grid is None
            else f"data a stationary field [{res.spectrum_label}, trace {res.spectrum.sum():.3g}]")
    caption = (f"Memorisation-to-generalisation transition: d = {d}, {res.repeats} training sets per N, "
               f"{data}, {res.process!r}, sampler {res.sampler}"
               + ("" if kind == "dense" else f", model {res.model}"))
    fitted = {"dense": "the Gaussian N(mu_hat, S_hat) fitted to the set (1/N covariance)",
              "conv": "the stationary field fitted by the convolutional model (grand mean, periodogram average)"}[kind]
    model_text = {"dense": "the fitted linear denoiser",
                  "conv": ("the full-support convolutional denoiser" if size is None
                           else f"the local {size}-wide convolutional denoiser")}[kind]
    notes = [f"KL values are per dimension; 'fit' is {fitted}, 'law' is the exact output law of the sampler run with "
             f"{model_text}."]
    if size is not None:
        notes.append("The 'fit' columns are blank: a local kernel is not the score of any fitted Gaussian.")
    return Table(caption, cols, rows, notes, key_columns=2)
