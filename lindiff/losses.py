r"""Exact denoising-score-matching losses of affine models, per time, summed over coordinates.

For an affine eps-model :math:`\hat\varepsilon(x) = W x + b` and data with mean m and covariance C,

.. math::
    \mathbb E\|\varepsilon - W x_t - b\|^2 = \|I - \sigma W\|_F^2 + \alpha^2\operatorname{tr}(W C W^T)
    + \|\alpha W m + b\|^2 ,

with the noise expectation exact.  ``data`` is a :class:`~lindiff.Gaussian` (population / test loss)
or an array X of training points (training loss; m, C = the mean and 1/N covariance of X).

Identities that tie the functions together (tested):
``dsm_loss(model, p0, t) = sigma^2 * score_matching_loss(model, p0, t) + irreducible_loss(p0, process, t)``
and ``generalisation_gap(model, X, p0, t) = dsm_loss(model, p0, t) - dsm_loss(model, X, t)``.
"""

from __future__ import annotations

import numpy as np

from . import _fourier
from ._validation import as_training_set
from .gaussian import Gaussian, _is_identity, _law_cov
from .scores import AffineModel

__all__ = ["dsm_loss", "score_matching_loss", "irreducible_loss", "generalisation_gap", "train_test_losses"]


def _data_gaussian(model: AffineModel, data) -> Gaussian:
    if isinstance(data, Gaussian):
        g = data
    elif _is_training_set(model, data):
        g = model.data
    else:
        X = as_training_set(data, "data")
        fitted = model.data
        # Reuse the model's own fitted Gaussian (and its eigenbasis: no new eigh) when data are its
        # training points: compare the mean and 1/N covariance before decomposing anything.
        g = None
        if fitted is not None and X.shape[1] == fitted.dim:
            mean = X.mean(axis=0)
            if np.array_equal(mean, fitted.mean):
                centred = X - mean
                cov = centred.T @ centred / X.shape[0]
                cov = 0.5 * (cov + cov.T)  # exactly as Gaussian.fit forms it
                if np.array_equal(cov, fitted.cov):
                    g = fitted
        if g is None:
            g = Gaussian.fit(X)
    if g.dim != model.dim:
        raise ValueError(f"data have dimension {g.dim} but the model has dimension {model.dim}")
    return g


def _times(model, t) -> tuple[np.ndarray, bool]:
    arr = model.process.check_time(t)
    if arr.ndim > 1:
        raise ValueError(f"t must be a time or a 1-D array of times, got shape {arr.shape}")
    return np.atleast_1d(arr), arr.ndim == 0


def _check_affine(model) -> None:
    if not isinstance(model, AffineModel):
        raise TypeError(f"model must be an affine model (GaussianScore or LinearDenoiser), got {type(model).__name__}")


def _schedule(model, t):
    """(times as 1-D array, whether t was a scalar, alpha, sigma) at the model's process."""
    times, scalar = _times(model, t)
    return times, scalar, np.asarray(model.process.alpha(times), float), np.asarray(model.process.sigma(times), float)


def _gains(model: AffineModel, times, alpha, sigma) -> np.ndarray:
    """Score gains at all times at once, shape (len(times), d); raises where the score is undefined."""
    gains = model.spectral.gains(times, alpha, sigma)
    bad = ~np.all(np.isfinite(gains), axis=1)
    if np.any(bad):
        i = int(np.argmax(bad))
        model._checked_gains(float(times[i]), float(alpha[i]), float(sigma[i]))
    return gains


def _is_training_set(model: AffineModel, data) -> bool:
    X = getattr(model, "_training_points", None)
    return (model.data is not None and X is not None and np.shape(data) == X.shape and np.array_equal(data, X))


def _moments(model: AffineModel, data) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_projected_moments` of ``data`` (a Gaussian or points).  Points other than the model's training
    set are projected directly when the model's basis is a Fourier basis (one FFT per point, no d x d
    covariance); the result is the same numbers, diag(U^T C U) and U^T (m - m_model), C the 1/N covariance."""
    U = model.spectral.basis
    if _fourier.is_implicit(U) and not isinstance(data, Gaussian) and not _is_training_set(model, data):
        X = as_training_set(data, "data")
        if X.shape[1] != model.dim:
            raise ValueError(f"data have dimension {X.shape[1]} but the model has dimension {model.dim}")
        mean = X.mean(axis=0)
        Y = (X - mean) @ U
        return np.mean(Y * Y, axis=0), U.T @ (mean - model.spectral.mean)
    return _projected_moments(model, _data_gaussian(model, data))


def _weights(model: AffineModel, times, alpha, sigma) -> np.ndarray:
    """The eigenvalues of ``W_t`` of a spectral model, (times x d)."""
    return sigma[:, None] * _gains(model, times, alpha, sigma)


def _common(w: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per time, ``||I - sigma W||_F^2``: the part of the DSM loss that does not depend on the data."""
    return np.sum((1 - sigma[:, None] * w) ** 2, axis=1)


def _gap(alpha, w2, test: tuple, train: tuple) -> np.ndarray:
    """Test minus training loss from the two data's projected moments (``_moments``), the common part cancelled."""
    (c_test, d_test), (c_train, d_train) = test, train
    return alpha**2 * np.sum(w2 * ((c_test - c_train) + (d_test**2 - d_train**2)), axis=1)


def _second_moment(cdiag: np.ndarray, dmean: np.ndarray) -> np.ndarray:
    """Per mode, the data's second moment about the model's centre: ``diag(U^T C U) + (U^T (m - m_model))^2``."""
    return cdiag + dmean**2


def _projected_moments(model: AffineModel, g: Gaussian) -> tuple[np.ndarray, np.ndarray]:
    """diag(U^T C U) and U^T (m - m_model) for the model's eigenbasis U (O(d^2) if bases are shared)."""
    sp = model.spectral
    U = sp.basis
    if g.eigenvectors is U:
        cdiag = g.eigenvalues
    elif _is_identity(g.eigenvectors):  # diagonal data covariance: O(d^2), no product
        cdiag = (U * U).T @ g.eigenvalues
    else:
        M = U.T @ g.eigenvectors  # diag(U^T C U) = (M * M) @ lambda: a sum of non-negative terms
        cdiag = (M * M) @ g.eigenvalues
    return cdiag, U.T @ (g.mean - sp.mean)


def dsm_loss(model: AffineModel, data, t) -> float | np.ndarray:
    r"""Exact DSM loss :math:`\mathbb E\|\varepsilon - \hat\varepsilon(x_t, t)\|^2` (summed over coordinates).

    Parameters
    ----------
    model : an affine model (:class:`~lindiff.GaussianScore` or :class:`~lindiff.LinearDenoiser`)
    data : Gaussian (test / population loss) or array (N, d) of training points (training loss)
    t : scalar or 1-D array of times (vectorised: one projection, then O(d) per time on the fast path)

    Examples
    --------
    >>> import numpy as np
    >>> from lindiff import DDPM, LinearDenoiser
    >>> X = np.random.default_rng(1).standard_normal((40, 4))
    >>> model = LinearDenoiser.fit(X, DDPM.linear(50))
    >>> bool(dsm_loss(model, X, 25) > 0)
    True
    """
    _check_affine(model)
    times, scalar, alpha, sigma = _schedule(model, t)
    if model.spectral is not None:
        w = _weights(model, times, alpha, sigma)
        out = _common(w, sigma) + alpha**2 * np.sum(w * w * _second_moment(*_moments(model, data)), axis=1)
    else:
        g = _data_gaussian(model, data)
        out = np.empty(times.shape)
        eye = np.eye(model.dim)
        root = g.eigenvectors * np.sqrt(g.eigenvalues)  # tr(W C W^T) = ||W C^{1/2}||_F^2 >= 0
        for i, tt in enumerate(times):
            W, b = model.affine(tt)
            resid = alpha[i] * (W @ g.mean) + b
            out[i] = (np.sum((eye - sigma[i] * W) ** 2) + alpha[i] ** 2 * np.sum((W @ root) ** 2)
                      + resid @ resid)
    return float(out[0]) if scalar else out


def irreducible_loss(p0: Gaussian, process, t) -> float | np.ndarray:
    r"""The Bayes DSM loss (eps units) for data p0: :math:`d - \sigma^2\operatorname{tr}\Sigma_t^{-1}
    = \sum_i \alpha^2\lambda_i / (\alpha^2\lambda_i + \sigma^2)`.

    Equals ``dsm_loss(GaussianScore(p0, process), p0, t)``; it is ``sigma^2`` times the trace of the DSM
    target's conditional covariance (Vastola 2025).
    """
    if not isinstance(p0, Gaussian):
        raise TypeError(f"p0 must be a lindiff.Gaussian, got {type(p0).__name__}")
    arr = process.check_time(t)
    times = np.atleast_1d(arr)
    a2 = np.asarray(process.alpha(times), float) ** 2
    s2 = np.asarray(process.sigma(times), float) ** 2
    num = a2[:, None] * p0.eigenvalues
    den = num + s2[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    out = terms.sum(axis=1)
    return float(out[0]) if arr.ndim == 0 else out


def score_matching_loss(model: AffineModel, p0: Gaussian, t) -> float | np.ndarray:
    r"""Fisher (score-matching) loss :math:`\mathbb E_{x\sim p_t}\|\text{score}_{model}(x, t) - \nabla\log p_t(x)\|^2`
    in score units, for Gaussian data p0 (requires sigma(t) > 0)."""
    if not isinstance(p0, Gaussian):
        raise TypeError(f"p0 must be a lindiff.Gaussian, got {type(p0).__name__}")
    if p0.dim != model.dim:
        raise ValueError(f"p0 has dimension {p0.dim} but the model has dimension {model.dim}")
    times, scalar = _times(model, t)
    out = np.empty(times.shape)
    for i, tt in enumerate(times):
        a, s = float(model.process.alpha(tt)), float(model.process.sigma(tt))
        if s == 0:
            raise ValueError("score_matching_loss needs sigma(t) > 0; t = 0 is outside the noised process")
        # the noised law's spectrum a^2 l + s^2, formed here rather than taken from marginal(): s^2 > 0 is
        # exact, and the shared zero cut-off would clip it where a^2 l_max exceeds it by 1e12 (then 1/0)
        lam_t = a * a * p0.eigenvalues + s * s
        true_gain = 1.0 / lam_t
        U = p0.eigenvectors
        if model.spectral is not None and model.spectral.basis is U:
            g = model._checked_gains(float(tt), a, s)
            dm = U.T @ (a * (model.spectral.mean - p0.mean))
            diff = true_gain - g
            out[i] = np.sum(diff**2 * lam_t) + np.sum((g * dm) ** 2)
        else:
            A, c = model.score_affine(tt)
            # model - truth = (A + S_t^{-1}) x + c - S_t^{-1} alpha mu; its mean under p_t is A alpha mu + c.
            D = A + (U * true_gain) @ U.T
            e = A @ (a * p0.mean) + c
            # tr(D S_t D^T) as ||D S_t^{1/2}||_F^2: a sum of squares, never negative by cancellation
            out[i] = np.sum((D @ (U * np.sqrt(lam_t))) ** 2) + e @ e
    return float(out[0]) if scalar else out


def generalisation_gap(model: AffineModel, X, p0: Gaussian, t) -> float | np.ndarray:
    r"""Test minus training DSM loss, :math:`L_{test} - L_{train}` (eps units), for a model trained on X.

    The common term :math:`\|I - \sigma W\|_F^2` cancels exactly, so the gap is evaluated as

    .. math::
        \alpha^2\operatorname{tr}\big(W(S - \hat S)W^T\big) + \|\alpha W\mu + b\|^2 - \|\alpha W\hat\mu + b\|^2

    (no subtraction of two nearly equal losses).  For the fitted model (no ridge) this is
    :math:`\alpha^2\sigma^2[\operatorname{tr}(\hat S_t^{-2}(S - \hat S)) + (\hat\mu-\mu)^T\hat S_t^{-2}(\hat\mu-\mu)]`
    with :math:`\hat S_t = \alpha^2\hat S + \sigma^2 I` (docs/theory.md#train-and-test-loss-at-the-optimum; ``derivations/losses.py`` derives it).
    """
    _check_affine(model)
    if not isinstance(p0, Gaussian):
        raise TypeError(f"p0 must be a lindiff.Gaussian, got {type(p0).__name__}")
    times, scalar, alpha, sigma = _schedule(model, t)
    if model.spectral is not None:
        w2 = _weights(model, times, alpha, sigma) ** 2
        out = _gap(alpha, w2, _moments(model, p0), _moments(model, X))
    else:
        train = _data_gaussian(model, X)
        test = _data_gaussian(model, p0)
        out = np.empty(times.shape)
        for i, tt in enumerate(times):
            W, b = model.affine(tt)
            r_test = alpha[i] * (W @ test.mean) + b
            r_train = alpha[i] * (W @ train.mean) + b
            out[i] = alpha[i] ** 2 * np.sum((W @ (_law_cov(test) - _law_cov(train))) * W) + r_test @ r_test - r_train @ r_train
    return float(out[0]) if scalar else out


def train_test_losses(model: AffineModel, X, p0: Gaussian, t) -> tuple:
    r"""``(dsm_loss(model, X, t), dsm_loss(model, p0, t), generalisation_gap(model, X, p0, t))`` in one pass.

    The three share the model's gains and the data's projected moments, which are computed once (the
    transition sweep evaluates them for every training set).  ``X`` is the training set, or its fitted
    Gaussian (the training loss depends on X only through its mean and 1/N covariance).  Equal to the three
    calls to rounding; the gap is formed as in :func:`generalisation_gap` (no difference of the losses).
    """
    _check_affine(model)
    if not isinstance(p0, Gaussian):
        raise TypeError(f"p0 must be a lindiff.Gaussian, got {type(p0).__name__}")
    if model.spectral is None:
        return dsm_loss(model, X, t), dsm_loss(model, p0, t), generalisation_gap(model, X, p0, t)
    times, scalar, alpha, sigma = _schedule(model, t)
    test, train = _moments(model, p0), _moments(model, X)
    w = _weights(model, times, alpha, sigma)
    common, w2, a2 = _common(w, sigma), w * w, alpha**2
    out = (common + a2 * np.sum(w2 * _second_moment(*train), axis=1),
           common + a2 * np.sum(w2 * _second_moment(*test), axis=1),
           _gap(alpha, w2, test, train))
    return tuple(float(v[0]) for v in out) if scalar else out

