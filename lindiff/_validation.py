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


def _real_array(value, name: str) -> np.ndarray:
    """One rule for every numeric input: real numbers (Python/numpy ints and floats, mpmath reals, or
    arrays of them) are accepted; complex values, booleans, strings and None are refused, never cast."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a real number or array of real numbers, got the string {value!r}")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nesting and the like
        raise ValueError(f"{name} must be a real numeric array; could not convert: {exc}") from None
    kind = raw.dtype.kind
    if kind == "O":
        # Fractions or mpmath reals arrive as objects: accept real numbers, refuse anything else
        bad = next((v for v in raw.ravel() if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)), None)
        if bad is not None:
            raise ValueError(f"{name} must hold real numbers only, found {bad!r} ({type(bad).__name__})")
        kind = "f"
    if kind == "c":
        raise ValueError(f"{name} must be real, got a complex array (complex values are not cast to real)")
    if kind == "b":
        raise ValueError(f"{name} must hold real numbers, got booleans")
    if kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {raw.dtype}")
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{name} must be a real numeric array; could not convert: {exc}") from None


def as_finite_array(value, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a float64 array (see :func:`_real_array` for what is accepted), finite, with ``ndim``."""
    array = _real_array(value, name)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if array.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite entries; finite values are required")
    return array


def as_real_scalar(value, name: str) -> float:
    """A real number (by the rule of :func:`_real_array`) as a Python float; may be inf or NaN."""
    array = _real_array(value, name)
    if array.ndim != 0:
        raise ValueError(f"{name} must be a single real number, got an array of shape {array.shape}")
    return float(array)


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


def as_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer >= ``minimum`` (integral floats such as ``10.0`` are accepted; bools and strings are not)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not isinstance(value, numbers.Integral):
        x = float(value)
        if not (np.isfinite(x) and x.is_integer()):
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        value = int(x)
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value}")
    return value


def as_nonnegative_float(value, name: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if value is None:
        raise ValueError(f"{name} must be a finite non-negative real number, got None")
    out = as_real_scalar(value, name)
    if not np.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be a finite non-negative real number, got {value!r}")
    return out


def as_positive_float(value, name: str) -> float:
    out = as_nonnegative_float(value, name)
    if out == 0:
        raise ValueError(f"{name} must be a finite positive real number, got {value!r}")
    return out
