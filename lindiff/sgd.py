r"""Optimisation regularisation: SGD on the DSM loss of the linear model at one time t.

Parameters :math:`\theta = [W, b]` (d x (d+1)), eps-prediction :math:`\hat\varepsilon = W x + b`.  Step k draws
B training indices uniformly *with replacement* and P noise draws per index,
:math:`u = (\alpha z_j + \sigma\varepsilon, 1)`, and updates

.. math:: \theta \leftarrow \theta - \eta\Big[\frac{2}{BP}\sum (\theta u - \varepsilon)u^T + 2\lambda[W, 0]\Big]

(weight decay λ on W, as ``ridge``).  The loss is quadratic, so with ``theta`` independent of the fresh
batch the moments obey exact recursions:

* mean: :math:`\mathbb E\theta' = \mathbb E\theta\,(I - 2\eta\bar H - 2\eta\lambda D) + 2\eta[\sigma I, 0]`,
  :math:`\bar H = \mathbb E uu^T`;
* second moment of each row :math:`w_r` (augmented :math:`\omega = (w_r, 1)`, :math:`\omega' = G\omega`):
  :math:`\mathbb E\omega'\omega'^T = \mathbb E[G\Omega G^T]`, which needs the fourth moments of the
  Gaussian vector :math:`y = (x, 1, \varepsilon_r)` given :math:`z_j` (Isserlis), averaged over the training
  points, plus the pair terms for draws sharing an index and for independent indices.

:func:`simulate` runs the same SGD numerically (optionally with gradient clipping, where no exact
recursion exists) and :func:`coupled_distance` runs two chains on neighbouring training sets (point i
replaced) with shared minibatch indices and noise, to measure stability over iterations.
"""

from __future__ import annotations

import numpy as np

from ._validation import RNGLike, as_nonnegative_float, as_positive_float, as_positive_int, as_rng, as_training_set
from .tables import Column, Table

__all__ = ["SGDConfig", "exact_moments", "simulate", "coupled_distance", "sgd_stability_table"]


class SGDConfig:
    """Hyper-parameters: learning rate ``lr``, minibatch ``batch`` (B), noise draws ``draws`` (P), weight
    decay ``weight_decay`` (λ), optional gradient clipping ``clip`` (Frobenius norm; Monte Carlo only)."""

    def __init__(self, lr: float = 0.05, batch: int = 1, draws: int = 1, weight_decay: float = 0.0, clip: float | None = None):
        self.lr = as_positive_float(lr, "lr")
        self.batch = as_positive_int(batch, "batch")
        self.draws = as_positive_int(draws, "draws")
        self.weight_decay = as_nonnegative_float(weight_decay, "weight_decay")
        self.clip = None if clip is None else as_positive_float(clip, "clip")

    def __repr__(self) -> str:
        return (f"SGDConfig(lr={self.lr:g}, batch={self.batch}, draws={self.draws}, weight_decay={self.weight_decay:g}, "
                f"clip={self.clip})")


def _fourth(m: np.ndarray, C: np.ndarray, A: np.ndarray) -> np.ndarray:
    """E[y y^T A y y^T] for y ~ N(m, C), A symmetric (Isserlis)."""
    mm = np.outer(m, m)
    mAm = float(m @ A @ m)
    trAC = float(np.sum(A * C))
    CAm = C @ A @ mm
    return mm @ A @ mm + 2 * CAm + 2 * CAm.T + trAC * mm + mAm * C + 2 * C @ A @ C + trAC * C


def exact_moments(X, alpha: float, sigma: float, config: SGDConfig, iterations: int, record: int = 50):
    """Exact ``E theta_k`` and ``sum_r E w_r w_r^T`` (second moments of the rows) for SGD from zero.

    Returns ``(ks, means, second)`` with ``means[j]`` the (d, d+1) mean and ``second[j]`` the
    (d+1, d+1) matrix ``sum_r E w_r w_r^T`` at iteration ``ks[j]`` (``record`` evenly spaced records).
    """
    X = as_training_set(X, "X")
    N, d = X.shape
    iterations = as_positive_int(iterations, "iterations")
    eta, lam, B, P = config.lr, config.weight_decay, config.batch, config.draws
    if config.clip is not None:
        raise ValueError("gradient clipping is nonlinear: no exact recursion; use simulate()")
    n = B * P
    D = np.diag(np.r_[np.ones(d), 0.0])
    # per training point: y = (x, 1, eps_r) ~ N(m_j, C_r)
    means_y = np.concatenate([alpha * X, np.ones((N, 1)), np.zeros((N, 1))], axis=1)
    P1 = np.diag(np.r_[np.ones(d + 1), 0.0])
    P2 = np.diag(np.r_[np.ones(d + 1), -1.0])
    G0 = np.eye(d + 2)
    G0[: d + 1, : d + 1] -= 2 * eta * lam * D
    Hbar = np.zeros((d + 1, d + 1))
    Hbar[:d, :d] = alpha**2 * (X.T @ X) / N + sigma**2 * np.eye(d)
    Hbar[:d, d] = Hbar[d, :d] = alpha * X.mean(axis=0)
    Hbar[d, d] = 1.0
    cbar = np.zeros((d, d + 1))
    cbar[:, :d] = sigma * np.eye(d)
    Cs = []
    for r in range(d):
        C = np.zeros((d + 2, d + 2))
        C[:d, :d] = sigma**2 * np.eye(d)
        C[:d, d + 1] = C[d + 1, :d] = sigma * np.eye(d)[r]
        C[d + 1, d + 1] = 1.0
        Cs.append(C)
    mean = np.zeros((d, d + 1))
    omegas = [np.zeros((d + 2, d + 2)) for _ in range(d)]
    for om in omegas:
        om[d + 1, d + 1] = 1.0
    step_mean = np.eye(d + 1) - 2 * eta * Hbar - 2 * eta * lam * D
    ks, means, seconds = [], [], []
    marks = set(np.unique(np.linspace(0, iterations, record + 1).round().astype(int)))
    for k in range(iterations + 1):
        if k in marks:
            ks.append(k)
            means.append(mean.copy())
            seconds.append(sum(om[: d + 1, : d + 1] for om in omegas))
        if k == iterations:
            break
        mean = mean @ step_mean + 2 * eta * cbar
        new = []
        for r, om in enumerate(omegas):
            C = Cs[r]
            A = P2 @ om @ P2
            M1 = [P1 @ (C + np.outer(m, m)) @ P2 for m in means_y]  # E[a b^T | z_j]
            M1bar = sum(M1) / N
            q4 = sum(P1 @ _fourth(m, C, A) @ P1 for m in means_y) / N
            same = sum(M @ om @ M.T for M in M1) / N
            pair = (n * q4 + B * P * (P - 1) * same + B * (B - 1) * P * P * (M1bar @ om @ M1bar.T)) / n**2
            # G = G0 - 2 eta (1/n) sum a b^T  (with the omega's last coordinate the constant 1)
            out = G0 @ om @ G0.T - 2 * eta * (M1bar @ om @ G0.T + G0 @ om @ M1bar.T) + 4 * eta**2 * pair
            new.append(0.5 * (out + out.T))
        omegas = new
    return np.array(ks), np.array(means), np.array(seconds)


def _grad(theta, X, idx, eps, alpha, sigma, lam):
    d = X.shape[1]
    x = alpha * X[idx] + sigma * eps
    u = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    resid = u @ theta.T - eps
    g = 2 * resid.T @ u / x.shape[0]
    g[:, :d] += 2 * lam * theta[:, :d]
    return g


def _clip(g, c):
    if c is None:
        return g
    norm = np.linalg.norm(g)
    return g * (c / norm) if norm > c else g


def simulate(X, alpha: float, sigma: float, config: SGDConfig, iterations: int, runs: int = 100, rng: RNGLike = None,
             record: int = 50):
    """Monte Carlo SGD from zero: returns ``(ks, thetas)`` with ``thetas`` of shape (records, runs, d, d+1)."""
    X = as_training_set(X, "X")
    gen = as_rng(rng)
    N, d = X.shape
    marks = set(np.unique(np.linspace(0, iterations, record + 1).round().astype(int)))
    ks, out = [], []
    thetas = np.zeros((runs, d, d + 1))
    B, P = config.batch, config.draws
    for k in range(iterations + 1):
        if k in marks:
            ks.append(k)
            out.append(thetas.copy())
        if k == iterations:
            break
        for r in range(runs):
            idx = np.repeat(gen.integers(0, N, B), P)
            eps = gen.standard_normal((B * P, d))
            thetas[r] -= config.lr * _clip(_grad(thetas[r], X, idx, eps, alpha, sigma, config.weight_decay), config.clip)
    return np.array(ks), np.array(out)


def coupled_distance(X, i: int, z, alpha: float, sigma: float, config: SGDConfig | None, iterations: int,
                     runs: int = 20, rng: RNGLike = None, record: int = 20):
    r"""Two chains on X and on X with row i replaced by z, sharing minibatch indices and noise.

    ``config=None`` runs full-batch gradient descent on the exact (noise-averaged) training loss, i.e. no
    gradient noise, with the learning rate and weight decay of ``SGDConfig()``.  Returns ``(ks, dist)`` with
    ``dist[j]`` the mean Frobenius distance between the two chains' parameters at iteration ``ks[j]``.
    """
    X = as_training_set(X, "X")
    Y = X.copy()
    Y[int(i)] = np.asarray(z, float)
    gen = as_rng(rng)
    N, d = X.shape
    marks = set(np.unique(np.linspace(0, iterations, record + 1).round().astype(int)))
    if config is None:
        cfg = SGDConfig()
        th = [np.zeros((d, d + 1)), np.zeros((d, d + 1))]
        ks, dist = [], []
        grads = []
        for data in (X, Y):
            Hm = np.zeros((d + 1, d + 1))
            Hm[:d, :d] = alpha**2 * data.T @ data / N + sigma**2 * np.eye(d)
            Hm[:d, d] = Hm[d, :d] = alpha * data.mean(axis=0)
            Hm[d, d] = 1.0
            grads.append(Hm)
        cbar = np.zeros((d, d + 1))
        cbar[:, :d] = sigma * np.eye(d)
        D = np.diag(np.r_[np.ones(d), 0.0])
        for k in range(iterations + 1):
            if k in marks:
                ks.append(k)
                dist.append(float(np.linalg.norm(th[0] - th[1])))
            for j in range(2):
                th[j] = th[j] - cfg.lr * (2 * (th[j] @ grads[j] - cbar) + 2 * cfg.weight_decay * th[j] @ D)
        return np.array(ks), np.array(dist)
    ks, acc = [], []
    th = np.zeros((runs, 2, d, d + 1))
    for k in range(iterations + 1):
        if k in marks:
            ks.append(k)
            acc.append(float(np.mean(np.linalg.norm(th[:, 0] - th[:, 1], axis=(1, 2)))))
        if k == iterations:
            break
        for r in range(runs):
            idx = np.repeat(gen.integers(0, N, config.batch), config.draws)
            eps = gen.standard_normal((config.batch * config.draws, d))
            for j, data in enumerate((X, Y)):
                th[r, j] -= config.lr * _clip(_grad(th[r, j], data, idx, eps, alpha, sigma, config.weight_decay), config.clip)
    return np.array(ks), np.array(acc)


def sgd_stability_table(X, i: int, z, alpha: float, sigma: float, configs: dict, iterations: int = 2000,
                        runs: int = 20, rng: RNGLike = None, record: int = 4) -> Table:
    """Distance between coupled chains on neighbouring training sets over iterations, per configuration
    (``None`` = full-batch gradient descent without gradient noise)."""
    gen = as_rng(rng)
    rows = []
    for label, cfg in configs.items():
        ks, dist = coupled_distance(X, i, z, alpha, sigma, cfg, iterations, runs, gen, record)
        rows.append([label] + list(dist[1:]))
    cols = [Column("optimiser")] + [Column(f"k={k}", note="mean ||theta - theta'||_F" if j == 0 else "") for j, k in enumerate(ks[1:])]
    return Table(f"Optimisation regularisation: coupled runs on neighbouring training sets (alpha={alpha:.3g}, sigma={sigma:.3g})",
                 cols, rows)
