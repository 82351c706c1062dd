"""Input checks at the public boundary: convert once to float64, or raise a ValueError that names
the argument, the problem and what would be accepted."""

from __future__ import annotations

import numbers

import numpy as np

RNGLike = None | int | np.random.Generator | np.random.SeedSequence


def as_rng(rng: RNGLike, name: str = "rng") -> np.random.Generator:
    """``None``, an int seed, a ``SeedSequence`` or a ``Generator`` -> ``Generator``."""
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"{name} must be None, an int seed, a SeedSequence or a numpy Generator, got {type(rng).__name__}")


def as_finite_array(value, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real numeric array; could not convert: {exc}") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if array.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite entries; finite values are required")
    return array


def as_points(x, dim: int, name: str = "x") -> tuple[np.ndarray, bool]:
    """Points as rows: ``(n, dim)``, or ``(dim,)`` for one point.  Returns (2-D array, was_single)."""
    array = as_finite_array(x, name, ndim=(1, 2))
    single = array.ndim == 1
    array = np.atleast_2d(array)
    if array.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}) or ({dim},), got {np.shape(x)}")
    return array, single


def as_training_set(X, name: str = "X", min_points: int = 1) -> np.ndarray:
    array = as_finite_array(X, name, ndim=2)
    if array.shape[0] < min_points:
        raise ValueError(f"{name} must hold at least {min_points} training point(s) as rows, got shape {array.shape}")
    if array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column (dimension), got shape {array.shape}")
    return array


def as_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def as_nonnegative_float(value, name: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-negative real number, got {value!r}") from None
    if not np.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be a finite non-negative real number, got {value!r}")
    return out


def as_positive_float(value, name: str) -> float:
    out = as_nonnegative_float(value, name)
    if out == 0:
        raise ValueError(f"{name} must be a finite positive real number, got {value!r}")
    return out
