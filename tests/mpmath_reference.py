"""50-digit mpmath references for the Gaussian divergences, independent of lindiff's numerics.

Each function takes the float64 inputs exactly as lindiff receives them (means, covariance matrices) and
evaluates the textbook formula in 50-digit arithmetic, so the only error left in the comparison is
lindiff's.  Square roots of matrices go through mpmath's symmetric eigensolver.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

DPS = 50


def _matrix(a) -> mp.matrix:
    return mp.matrix(np.asarray(a, dtype=float).tolist())


def _sym_sqrt(A: mp.matrix) -> mp.matrix:
    A = (A + A.T) / 2
    values, vectors = mp.eigsy(A)
    root = mp.matrix(A.rows, A.rows)
    for k in range(A.rows):
        v = mp.sqrt(max(values[k], 0))
        for i in range(A.rows):
            for j in range(A.rows):
                root[i, j] += vectors[i, k] * v * vectors[j, k]
    return root


def _trace(A: mp.matrix):
    return mp.fsum(A[i, i] for i in range(A.rows))


def kl(m1, S1, m2, S2) -> mp.mpf:
    """KL(N(m1, S1) || N(m2, S2)) for non-singular covariances."""
    with mp.workdps(DPS):
        A, B = _matrix(S1), _matrix(S2)
        dm = _matrix(np.asarray(m2, float) - np.asarray(m1, float))
        Binv = B**-1
        quad = (dm.T * Binv * dm)[0, 0]
        return (_trace(Binv * A) - A.rows + quad + mp.log(mp.det(B)) - mp.log(mp.det(A))) / 2


def w2(m1, S1, m2, S2) -> mp.mpf:
    """Wasserstein-2 distance; covariances may be singular."""
    with mp.workdps(DPS):
        A, B = _matrix(S1), _matrix(S2)
        rA = _sym_sqrt(A)
        cross = _sym_sqrt(rA * B * rA)
        dm = mp.fsum((mp.mpf(a) - mp.mpf(b)) ** 2 for a, b in zip(np.ravel(m1), np.ravel(m2)))
        return mp.sqrt(max(dm + _trace(A) + _trace(B) - 2 * _trace(cross), 0))


def hellinger(m1, S1, m2, S2) -> mp.mpf:
    """Hellinger distance for non-singular covariances."""
    with mp.workdps(DPS):
        A, B = _matrix(S1), _matrix(S2)
        avg = (A + B) / 2
        dm = _matrix(np.asarray(m2, float) - np.asarray(m1, float))
        quad = (dm.T * avg**-1 * dm)[0, 0]
        log_bc = mp.log(mp.det(A)) / 4 + mp.log(mp.det(B)) / 4 - mp.log(mp.det(avg)) / 2 - quad / 8
        return mp.sqrt(max(-mp.expm1(log_bc), 0))


def _rotated_difference(U, m1, m2) -> list:
    """U^T (m2 - m1) in 50 digits (the basis is the one lindiff was given, used as exactly orthogonal)."""
    d = _matrix(np.asarray(m2, float).reshape(-1, 1)) - _matrix(np.asarray(m1, float).reshape(-1, 1))
    r = _matrix(U).T * d
    return [r[i, 0] for i in range(r.rows)]


def kl_spectral(m1, l1, m2, l2, U) -> mp.mpf:
    """KL between N(m1, U diag(l1) U^T) and N(m2, U diag(l2) U^T), U taken as exactly orthogonal."""
    with mp.workdps(DPS):
        dm = _rotated_difference(U, m1, m2)
        total = mp.mpf(0)
        for a, b, c in zip(l1, l2, dm):
            r = mp.mpf(a) / mp.mpf(b)
            total += r - 1 - mp.log(r) + mp.mpf(c) ** 2 / mp.mpf(b)
        return total / 2


def w2_spectral(m1, l1, m2, l2) -> mp.mpf:
    with mp.workdps(DPS):
        total = mp.fsum((mp.mpf(a) - mp.mpf(b)) ** 2 for a, b in zip(np.ravel(m1), np.ravel(m2)))
        total += mp.fsum((mp.sqrt(mp.mpf(a)) - mp.sqrt(mp.mpf(b))) ** 2 for a, b in zip(l1, l2))
        return mp.sqrt(total)


def hellinger_spectral(m1, l1, m2, l2, U) -> mp.mpf:
    with mp.workdps(DPS):
        dm = _rotated_difference(U, m1, m2)
        log_bc = mp.mpf(0)
        for a, b, c in zip(l1, l2, dm):
            a, b = mp.mpf(a), mp.mpf(b)
            log_bc += mp.log(a) / 4 + mp.log(b) / 4 - mp.log((a + b) / 2) / 2 - mp.mpf(c) ** 2 / (4 * (a + b))
        return mp.sqrt(max(-mp.expm1(log_bc), 0))
