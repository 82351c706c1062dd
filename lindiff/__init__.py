"""lindiff: exact diffusion models with linear denoisers on Gaussian data.

Everything a diffusion model with an affine denoiser does on Gaussian data is Gaussian, so lindiff
computes it exactly: scores, fitted/ridge/early-stopped denoisers, DSM losses and their gap, the
law of every common sampler's output, divergences to the data, expectations over training sets and
score-stability bounds, and the law of models trained on finitely many noise draws.  Each closed form has a sympy derivation (``derivations/``) and a Monte Carlo
twin (:mod:`lindiff.mc`).

Conventions: ``x_t = alpha(t) x0 + sigma(t) eps``; points are rows; float64; every random function
takes ``rng``; ``kl(p, q)`` is KL(p || q); ``w2`` is the distance, not its square.
"""

from . import ensembles, mc, memorisation, regularisation, rmt, sgd, spectra, stability, transition, variance
from .ensembles import expected_kl, expected_kl_convolutional, expected_kl_series
from .stability import score_stability, stability_draws
from .transition import transition_sweep, transition_table
from .gaussian import Gaussian, Infinite, hellinger, kl, w2
from .losses import dsm_loss, generalisation_gap, irreducible_loss, score_matching_loss
from .processes import DDPM, OU, VP, Process, SigmaVP
from .samplers import SAMPLERS, build_sampler, sampler_table, sampling_law, sampling_laws
from .scores import AffineModel, EmpiricalScore, GaussianScore, LinearDenoiser, ScoreModel, SpectralForm
from .tables import Column, Table, Tables

__version__ = "0.1.0"

__all__ = [
    # Gaussians and divergences
    "Gaussian",
    "Infinite",
    "kl",
    "w2",
    "hellinger",
    # forward processes
    "Process",
    "DDPM",
    "VP",
    "OU",
    "SigmaVP",
    # score models
    "ScoreModel",
    "AffineModel",
    "SpectralForm",
    "GaussianScore",
    "EmpiricalScore",
    "LinearDenoiser",
    # losses
    "dsm_loss",
    "score_matching_loss",
    "irreducible_loss",
    "generalisation_gap",
    # samplers
    "SAMPLERS",
    "build_sampler",
    "sampling_law",
    "sampling_laws",
    "sampler_table",
    # ensembles and the transition
    "expected_kl",
    "expected_kl_series",
    "expected_kl_convolutional",
    "transition_sweep",
    "transition_table",
    "score_stability",
    "stability_draws",
    "ensembles",
    "transition",
    "memorisation",
    "regularisation",
    "rmt",
    "sgd",
    "stability",
    "variance",
    # tables
    "Table",
    "Tables",
    "Column",
    # Monte Carlo twins
    "mc",
    "spectra",
    "__version__",
]
