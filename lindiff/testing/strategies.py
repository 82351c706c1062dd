"""Hypothesis strategies for Gaussian-diffusion test cases (needs ``hypothesis``).

>>> from hypothesis import given
>>> from lindiff.testing import strategies as lst
>>> @given(lst.spd_matrices(3, max_condition=100.0))
... def test(S):
...     assert np.linalg.eigvalsh(S).min() > 0
>>> test()
"""

from __future__ import annotations

import numpy as np

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover
    raise ImportError("lindiff.testing.strategies needs hypothesis: pip install 'lindiff[test]'") from exc

from ..gaussian import Gaussian
from ..processes import DDPM, VP, SigmaVP
from ..samplers import SAMPLERS
from ..scores import LinearDenoiser

__all__ = ["spectra", "orthogonal_matrices", "spd_matrices", "gaussians", "ddpm_processes", "vp_processes",
           "processes", "training_sets", "linear_denoisers", "sampler_configs"]

SHAPES = ("log_uniform", "power_law", "clustered", "spiked")
_DDPM_ONLY = ("ddpm", "lcm", "tcd")  # defined on trained integer steps only


@st.composite
def spectra(draw, d: int, max_condition: float = 1e4, scale=(0.1, 10.0), shapes=SHAPES) -> np.ndarray:
    """d positive eigenvalues with condition number at most ``max_condition``, in one of several shapes:
    log-uniform, power law k^-p, two clusters, or one spike over a flat bulk."""
    shape = draw(st.sampled_from(shapes))
    top = draw(st.floats(*scale))
    cond = draw(st.floats(1.0, max_condition))
    if shape == "log_uniform":
        u = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=d, max_size=d)))
        values = top * cond ** (-u)
    elif shape == "power_law":
        p = np.log(cond) / np.log(max(d, 2))
        values = top * np.arange(1, d + 1, dtype=float) ** (-p)
    elif shape == "clustered":
        k = draw(st.integers(0, d))
        values = np.r_[np.full(k, top), np.full(d - k, top / cond)]
    else:
        values = np.r_[top, np.full(d - 1, top / cond)]
    return np.maximum(values, top / max_condition)


@st.composite
def orthogonal_matrices(draw, d: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR with sign fix of a seeded Gaussian matrix)."""
    seed = draw(st.integers(0, 2**32 - 1))
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@st.composite
def spd_matrices(draw, d: int, max_condition: float = 1e4, shapes=SHAPES) -> np.ndarray:
    """Symmetric positive-definite d x d matrices with controlled condition number and spectrum shape."""
    lam = draw(spectra(d, max_condition, shapes=shapes))
    Q = draw(orthogonal_matrices(d))
    S = (Q * lam) @ Q.T
    return 0.5 * (S + S.T)


@st.composite
def gaussians(draw, d: int | None = None, max_dim: int = 6, max_condition: float = 1e4, singular: bool = False) -> Gaussian:
    """Gaussians with random mean and covariance (optionally with some zero eigenvalues)."""
    d = draw(st.integers(1, max_dim)) if d is None else d
    lam = draw(spectra(d, max_condition))
    if singular:
        k = draw(st.integers(0, d - 1))
        lam = lam.copy()
        lam[:k] = 0.0
    Q = draw(orthogonal_matrices(d))
    mean = np.array(draw(st.lists(st.floats(-3, 3), min_size=d, max_size=d)))
    return Gaussian.from_spectrum(lam, Q, mean)


@st.composite
def ddpm_processes(draw, min_T: int = 5, max_T: int = 200) -> DDPM:
    """DDPM schedules: linear (random endpoints), cosine, or custom increasing betas."""
    T = draw(st.integers(min_T, max_T))
    kind = draw(st.sampled_from(["linear", "cosine", "custom"]))
    if kind == "linear":
        start = draw(st.floats(1e-5, 1e-3))
        end = draw(st.floats(5e-3, 0.05))
        return DDPM.linear(T, start, min(end * 1000 / T, 0.3))
    if kind == "cosine":
        return DDPM.cosine(T)
    betas = np.sort(np.array(draw(st.lists(st.floats(1e-5, 0.2), min_size=T, max_size=T))))
    return DDPM(np.clip(betas, 1e-5, 0.2))


@st.composite
def vp_processes(draw) -> VP:
    """Continuous VP processes with linear beta (Song convention) or the OU process."""
    if draw(st.booleans()):
        return VP.linear(draw(st.floats(0.01, 1.0)), draw(st.floats(5.0, 25.0)), 1.0)
    return VP(2.0, 2.0, draw(st.floats(1.0, 6.0)))


def processes():
    """Any lindiff forward process (DDPM, VP/OU, or the sigma-indexed VP)."""
    return st.one_of(ddpm_processes(), vp_processes(), st.floats(10.0, 100.0).map(SigmaVP))


@st.composite
def training_sets(draw, p0: Gaussian | None = None, d: int | None = None, around_d: tuple = (0.3, 3.0)) -> tuple:
    """``(p0, X)``: N points from p0 with N/d drawn around the transition (default N/d in [0.3, 3])."""
    p0 = draw(gaussians(d)) if p0 is None else p0
    ratio = draw(st.floats(*around_d))
    N = max(1, int(round(ratio * p0.dim)))
    seed = draw(st.integers(0, 2**32 - 1))
    return p0, p0.sample(N, np.random.default_rng(seed))


@st.composite
def linear_denoisers(draw, process=None, d: int | None = None, dense: bool | None = None) -> tuple:
    """``(p0, X, model)``: a fitted linear denoiser with random ridge / early stopping / centring."""
    process = draw(processes()) if process is None else process
    p0, X = draw(training_sets(d=d))
    ridge = draw(st.sampled_from([0.0, 0.0, 1e-3, 0.1]))
    train_time = draw(st.sampled_from([None, None, 1.0, 100.0]))
    centred = draw(st.booleans()) if dense is None else not dense
    if train_time is None and not centred:
        centred = True
    model = LinearDenoiser.fit(X, process, ridge=ridge, train_time=train_time, centred=centred)
    if dense:
        model = model.to_dense()
    return p0, X, model


@st.composite
def sampler_configs(draw, process, model=None) -> dict:
    """Keyword arguments for ``sampling_law``/``mc.sample`` valid on ``process``.

    With ``model``, only configurations whose law exists for that model: the continuous solutions ``"sde"``
    and ``"ode"`` integrate the model's score down to ``t_min``, so ``t_min = 0`` is left out where the score
    is undefined at ``sigma = 0`` (a dense model whose covariance is singular there, e.g. fitted to N <= d
    points without ridge; a model in its eigenbasis has the limit).  The stepped samplers never evaluate the
    score at ``sigma = 0`` (their last step uses the data prediction), so every drawn configuration has a law.
    """
    if process.discrete:
        name = draw(st.sampled_from(["ddpm", "ddim", "euler_ve", "euler_ancestral", "dpmpp_2m", "unipc", "deis",
                                     "dpmsolver_singlestep", "pndm", "lcm", "tcd"]))
        cfg = {"sampler": name, "steps": draw(st.one_of(st.none(), st.integers(1, process.T)))}
        if cfg["steps"] is not None:
            cfg["spacing"] = draw(st.sampled_from(["leading", "trailing", "linspace"]))
    else:
        name = draw(st.sampled_from([s for s in SAMPLERS if s not in _DDPM_ONLY]))
        t_mins = [0.0, 1e-3 * process.T, 0.05 * process.T]
        if name in ("sde", "ode") and model is not None and not _score_defined_at_zero(model):
            t_mins = t_mins[1:]
        cfg = {"sampler": name, "steps": None if name in ("sde", "ode") else draw(st.integers(2, 60)),
               "t_min": draw(st.sampled_from(t_mins))}
    if name == "ddpm":
        cfg["variance"] = draw(st.sampled_from(["beta", "beta_tilde"]))
        cfg["final_noise"] = draw(st.booleans())
    if name == "ddim":
        cfg["eta"] = draw(st.floats(0.0, 1.0))
    return cfg


def _score_defined_at_zero(model) -> bool:
    """Whether the continuous solutions can integrate ``model``'s score down to t = 0 (see :func:`sampler_configs`)."""
    if model.spectral is not None:
        return True
    try:
        model.score_affine(0.0)
    except ValueError:
        return False
    return True
