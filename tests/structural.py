"""Structural equality of lindiff values, for round-trip tests (pickle, deepcopy, process pools).

Two values are the same when they have the same type and the same state, compared recursively: arrays
bit for bit (``np.array_equal`` with NaNs equal), floats exactly, containers element-wise, objects by their
``__dict__`` / ``__slots__`` / dataclass fields.  Functions compare by qualified name.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np


def _state(obj) -> dict:
    state = {}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                state[name] = getattr(obj, name)
    if hasattr(obj, "__dict__"):
        state.update(vars(obj))
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            state[f.name] = getattr(obj, f.name)
    return state


def same(a, b, _seen=None) -> bool:
    if _seen is None:
        _seen = set()
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float):  # includes Infinite
        same_float = a == b or (a != a and b != b)
        return same_float and getattr(a, "reason", None) == getattr(b, "reason", None)
    if isinstance(a, (int, str, bytes, bool, complex, type(None), np.generic)):
        return a == b
    if isinstance(a, (types.FunctionType, types.BuiltinFunctionType, type)):
        return a.__qualname__ == b.__qualname__
    if isinstance(a, np.random.SeedSequence):
        return a.entropy == b.entropy and a.spawn_key == b.spawn_key
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, _seen) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], _seen) for k in a)
    key = (id(a), id(b))
    if key in _seen:
        return True
    _seen.add(key)
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(same(sa[k], sb[k], _seen) for k in sa)
