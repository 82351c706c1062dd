"""Machinery of the fuzz suite: outcome classification, the recorder, tolerances and input strategies.

Every call of a public entry point is classified as one of

``valid``     a result with no NaN and no infinity except where documented (``Infinite``, ``-inf`` log-densities),
``infinite``  a documented :class:`lindiff.Infinite` (``inf`` carrying its reason),
``rejected``  a ``ValueError`` / ``TypeError`` raised by a ``raise`` statement in lindiff's own code,
``defect``    anything else: NaN or a plain ``inf`` in a result, a foreign exception (ZeroDivisionError,
              OverflowError, LinAlgError, a ValueError from inside numpy/scipy, ...), a numpy floating-point
              warning, a valid input rejected, an invalid input accepted, or a broken invariant.

Targets (see ``targets.py``) draw inputs with hypothesis, call entry points through :meth:`Recorder.call`
and state invariants with :meth:`Recorder.invariant`.  The recorder counts outcomes per entry point and
keeps every defect with a reproducer (the repr of the call).
"""

from __future__ import annotations

import dataclasses
import dis
import math
import os
import warnings
from collections import Counter
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

import lindiff as ld
from lindiff import _validation

LINDIFF_DIR = os.path.dirname(os.path.abspath(ld.__file__))
EPS = float(np.finfo(float).eps)
OUTCOMES = ("valid", "infinite", "rejected", "defect", "known")

# Defects found by this suite and tolerated while their fix is under way: counted in the "known" column and
# reported with a reproducer, but not failing the suite; each line goes when the fix has landed.  Empty: every
# defect the suite has found is fixed, with a regression test in the test file of its module (issue 11).
# Entries are (entry-point prefix, defect kind contains, detail contains, where and who).
KNOWN: list[tuple[str, str, str, str]] = []


# ---------------------------------------------------------------------------------------------------
# The boundary rule for bool arrays and numeric strings is whatever lindiff._validation decides for
# arrays; every entry point must then treat them the same way (accept with the float result, or reject).
def _accepts(value) -> bool:
    try:
        _validation.as_finite_array(value, "probe")
    except (ValueError, TypeError):
        return False
    return True


RULE = {"bool": _accepts(np.array([True, False])), "numeric_string": _accepts("1.5")}


class Defect(Exception):
    """Raised inside a target to make hypothesis shrink to a minimal reproducer."""


@dataclasses.dataclass
class Record:
    target: str
    entry: str
    kind: str
    detail: str
    call: str


def _short(value: Any, limit: int = 300) -> str:
    if isinstance(value, np.ndarray):
        with np.printoptions(precision=17, threshold=40):
            text = f"np.array({np.array2string(value, separator=', ')})"
    elif isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, np.ndarray) for v in value):
        text = "(" + ", ".join(_short(v, limit) for v in value) + ")"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def describe_call(name: str, args: tuple, kwargs: dict) -> str:
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _raised_by_lindiff(exc: BaseException) -> bool:
    """True when the innermost frame is lindiff's own code executing a ``raise`` statement (the
    instruction at the frame's last offset is RAISE_VARARGS: independent of the source on disk)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if not os.path.abspath(code.co_filename).startswith(LINDIFF_DIR):
        return False
    for instruction in dis.get_instructions(code):
        if instruction.offset == tb.tb_lasti:
            return instruction.opname == "RAISE_VARARGS"
    return False


def scan(value: Any, allow_neg_inf: bool = False, depth: int = 0) -> tuple[str, str]:
    """Classify a returned value: ("valid" | "infinite" | "defect", detail)."""
    if depth > 6:
        return "valid", ""
    if isinstance(value, ld.Infinite):
        return ("infinite", value.reason) if value.reason else ("defect", "Infinite without a reason")
    if isinstance(value, (bool, np.bool_, str, type(None), int, np.integer)):
        return "valid", ""
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isnan(x):
            return "defect", "NaN"
        if math.isinf(x) and not (allow_neg_inf and x < 0):
            return "defect", f"plain {x}"
        return "valid", ""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc":
            if np.any(np.isnan(value)):
                return "defect", "NaN in array"
            bad = np.isinf(value) & ~((value < 0) if allow_neg_inf else False)
            if np.any(bad):
                return "defect", "plain inf in array"
        return "valid", ""
    if isinstance(value, ld.Gaussian):
        for arr, what in ((value.mean, "mean"), (value.eigenvalues, "eigenvalues")):
            if not np.all(np.isfinite(arr)):
                return "defect", f"non-finite {what} in a Gaussian"
        if np.any(value.eigenvalues < 0):
            return "defect", "negative eigenvalue in a Gaussian law"
        return "valid", ""
    if isinstance(value, ld.Table):
        return scan([list(r) for r in value.rows], allow_neg_inf, depth + 1)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        worst = ("valid", "")
        for v in value:
            outcome = scan(v, allow_neg_inf, depth + 1)
            if outcome[0] == "defect":
                return outcome
            if outcome[0] == "infinite":
                worst = outcome
        return worst
    if dataclasses.is_dataclass(value):
        # "options" echoes the caller's parameters, where inf is a legitimate "no limit" (s_tmax = inf)
        return scan([getattr(value, f.name) for f in dataclasses.fields(value) if f.name != "options"],
                    allow_neg_inf, depth + 1)
    return "valid", ""


class Recorder:
    """Counts outcomes per entry point; keeps defects with reproducers."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.examples: Counter = Counter()
        self.defects: list[Record] = []
        self.known: dict[str, list[Record]] = {}
        self.target = "?"
        self.context = ""  # how the objects in the current example were built (set by the targets)
        self.strict = True  # raise Defect at once (hypothesis then shrinks); False collects them

    # -- calls -------------------------------------------------------------------------------------
    def call(self, entry: str, fn: Callable, *args, expect: str = "any", allow_neg_inf: bool = False,
             **kwargs) -> tuple[str, Any]:
        """Call ``fn`` and classify.  ``expect``: "any" (valid, infinite or a clean rejection), "valid"
        (a valid input: rejection is a defect unless it is a clean ValueError saying the value is beyond
        float64 or ill-posed -- those are counted as rejected), or "reject" (an invalid input)."""
        text = describe_call(entry, args, kwargs)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # numpy floating-point warnings, ComplexWarning
                value = fn(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            if not _raised_by_lindiff(exc) or not str(exc):
                return self._defect(entry, "foreign " + type(exc).__name__, _exc_text(exc), text)
            if expect == "valid" and not _is_range_error(exc):
                return self._defect(entry, "valid input rejected", _exc_text(exc), text)
            self.counts[(entry, "rejected")] += 1
            return "rejected", None
        except Exception as exc:  # noqa: BLE001 - every other exception is a defect
            return self._defect(entry, "foreign " + type(exc).__name__, _exc_text(exc), text)
        if expect == "reject":
            return self._defect(entry, "invalid input accepted", _short(value, 120), text)
        outcome, detail = scan(value, allow_neg_inf)
        if outcome == "defect":
            return self._defect(entry, detail, _short(value, 200), text)
        self.counts[(entry, outcome)] += 1
        return outcome, value

    def invariant(self, entry: str, ok: bool, message: str, context: str = "") -> None:
        if not ok:
            self._defect(entry, "invariant", message, context)

    def _defect(self, entry: str, kind: str, detail: str, call: str):
        if self.context:
            call = f"{call}  [with {self.context}]"
        record = Record(self.target, entry, kind, detail, call)
        for prefix, kind_part, detail_part, where in KNOWN:
            if entry.startswith(prefix) and kind_part in kind and detail_part in detail:
                self.counts[(entry, "known")] += 1
                self.known.setdefault(where, []).append(record)
                return "defect", None
        self.counts[(entry, "defect")] += 1
        self.defects.append(record)
        if self.strict:
            raise Defect(f"{entry}: {kind}: {detail}\n  reproducer: {call}")
        return "defect", None

    # -- reporting ---------------------------------------------------------------------------------
    def table(self) -> str:
        entries = sorted({e for e, _ in self.counts})
        width = max([len(e) for e in entries] + [10])
        lines = ["entry point".ljust(width) + "".join(f"{o:>10}" for o in OUTCOMES)]
        totals = Counter()
        for e in entries:
            row = [self.counts[(e, o)] for o in OUTCOMES]
            totals.update(dict(zip(OUTCOMES, row)))
            lines.append(e.ljust(width) + "".join(f"{v:>10}" for v in row))
        lines.append("total".ljust(width) + "".join(f"{totals[o]:>10}" for o in OUTCOMES))
        return "\n".join(lines)

    def known_report(self) -> str:
        lines = []
        for where, records in self.known.items():
            lines.append(f"known ({len(records)}): {where}\n    e.g. {records[0].call[:300]}\n    -> {records[0].detail[:200]}")
        return "\n".join(lines)


def _exc_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _is_range_error(exc: BaseException) -> bool:
    """The one clean rejection a *valid-but-extreme* input may get: the answer lies beyond what float64
    represents or resolves (the message says so and names the argument to change)."""
    text = str(exc)
    return isinstance(exc, ValueError) and any(k in text for k in ("float64", "dynamic range"))


# ---------------------------------------------------------------------------------------------------
# Tolerances: the documented error model of each divergence (see the docstrings of kl / w2 / hellinger).
def condition(*gaussians: ld.Gaussian) -> float:
    """Largest ratio max eigenvalue / smallest non-zero eigenvalue over the given laws."""
    kappa = 1.0
    for g in gaussians:
        nz = g.eigenvalues[~g._eig.zero]
        if nz.size:
            kappa = max(kappa, float(nz.max() / nz.min()))
    return kappa


def representation_error(*gaussians: ld.Gaussian) -> float:
    """Relative size of the round-off that separates two float64 representations of the same law
    (dense matrix vs eigendecomposition), whitened: ``delta = 100 d eps kappa``.  The documented error
    model of the dense divergences is then: KL within ``delta KL + delta sqrt(KL) + delta^2`` (a relative
    part, and the near-equality part KL ~ ||X||^2 / 4 with X known to ``delta``), Hellinger within
    ``delta`` (H ~ ||X|| / 4 near equality), W2 within ``10 sqrt(d eps ||S||)`` (the matrix square root
    near a zero eigenvalue)."""
    d = gaussians[0].dim
    return 100.0 * d * EPS * condition(*gaussians)


def near_cutoff(*gaussians: ld.Gaussian) -> bool:
    """Some eigenvalue lies within a factor 1e3 of the zero cut-off: the rank decision of two float64
    representations of the law may then differ (the cut-off's own resolution, not a defect)."""
    for g in gaussians:
        vals = np.abs(g.eigenvalues)
        tol = ld._linalg.rcond(g.dim) * float(vals.max(initial=0.0))
        if tol == 0.0:
            continue
        raw = vals[vals > 0]
        if np.any((raw > tol * 1e-3) & (raw < tol * 1e3)):
            return True
    return False


# ---------------------------------------------------------------------------------------------------
# Strategies for valid-but-extreme inputs.
def floats_log(lo: float, hi: float):
    """Positive floats log-uniform in [lo, hi]."""
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: float(10.0**e))


def dims(max_dim: int = 5):
    return st.integers(1, max_dim)


@st.composite
def spectra(draw, d: int, lo: float = 1e-12, hi: float = 1e12, zeros: bool = True) -> np.ndarray:
    """d eigenvalues: log-uniform in [lo, hi], with exact duplicates and (optionally) exact zeros."""
    kind = draw(st.sampled_from(["spread", "spread", "flat", "duplicates", "two_scales"]))
    if kind == "spread":
        values = np.array([draw(floats_log(lo, hi)) for _ in range(d)])
    elif kind == "flat":
        values = np.full(d, draw(floats_log(lo, hi)))
    elif kind == "duplicates":
        pool = [draw(floats_log(lo, hi)) for _ in range(2)]
        values = np.array([pool[draw(st.integers(0, 1))] for _ in range(d)])
    else:
        a, b = draw(floats_log(lo, hi)), draw(floats_log(lo, hi))
        values = np.array([a if draw(st.booleans()) else b for _ in range(d)])
    if zeros and draw(st.integers(0, 3)) == 0:
        k = draw(st.integers(1, d))
        values[:k] = 0.0
        values = values[np.argsort(np.random.default_rng(draw(st.integers(0, 99))).random(d))]
    return values


@st.composite
def bases(draw, d: int) -> np.ndarray:
    if draw(st.integers(0, 3)) == 0:
        return np.eye(d)
    seed = draw(st.integers(0, 2**32 - 1))
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


@st.composite
def means(draw, d: int) -> np.ndarray:
    kind = draw(st.sampled_from(["zero", "unit", "scaled"]))
    if kind == "zero":
        return np.zeros(d)
    seed = draw(st.integers(0, 2**32 - 1))
    m = np.random.default_rng(seed).standard_normal(d)
    return m if kind == "unit" else m * draw(floats_log(1e-6, 1e6))


@st.composite
def gaussians(draw, d: int, basis: np.ndarray | None = None, lo: float = 1e-12, hi: float = 1e12,
              dense: bool | None = None) -> ld.Gaussian:
    """A valid Gaussian: from a spectrum (given or drawn basis) or a dense covariance formed from one."""
    values = draw(spectra(d, lo, hi))
    U = draw(bases(d)) if basis is None else basis
    m = draw(means(d))
    dense = draw(st.booleans()) if dense is None else dense
    if not dense:
        return ld.Gaussian.from_spectrum(values, U, m)
    S = (U * values) @ U.T
    return ld.Gaussian(m, 0.5 * (S + S.T))


def dense_copy(g: ld.Gaussian) -> ld.Gaussian:
    return ld.Gaussian(g.mean, g.cov)


@st.composite
def processes(draw):
    kind = draw(st.sampled_from(["ddpm_linear", "ddpm_cosine", "ddpm_custom", "vp", "ou", "sigma_vp"]))
    if kind == "ddpm_linear":
        T = draw(st.sampled_from([1, 2, 3, 10, 50, 1000]))
        start = draw(floats_log(1e-8, 0.5))
        end = draw(floats_log(start, 0.999))
        return ld.DDPM.linear(T, start, end)
    if kind == "ddpm_cosine":
        return ld.DDPM.cosine(draw(st.sampled_from([1, 2, 5, 100, 1000])))
    if kind == "ddpm_custom":
        T = draw(st.integers(1, 6))
        return ld.DDPM([draw(st.sampled_from([1e-12, 1e-4, 0.5, 1 - 1e-9])) for _ in range(T)])
    if kind == "vp":
        bmin = draw(floats_log(1e-6, 1e3))
        return ld.VP.linear(bmin, draw(floats_log(bmin, 1e4)), draw(floats_log(1e-3, 1e2)))
    if kind == "ou":
        return ld.OU(draw(floats_log(1e-3, 1e2)))
    return ld.SigmaVP(draw(floats_log(1e-3, 1e4)))


@st.composite
def times(draw, process, positive: bool = False):
    """A time of the process: 0 (unless positive), T, the first/last step, or anything in between."""
    if process.discrete:
        lo = 1 if positive else 0
        return draw(st.sampled_from([lo, process.T, min(lo + 1, process.T)]) | st.integers(lo, process.T))
    T = float(process.T)
    choices = [T, T * 1e-12, T * 0.5]
    if not positive:
        choices.append(0.0)
    return draw(st.sampled_from(choices) | st.floats(T * 1e-9 if positive else 0.0, T))


@st.composite
def training_sets(draw, d: int, p0: ld.Gaussian | None = None) -> np.ndarray:
    """N points with N in {1, 2, d - 1, d, d + 1} or a few more, from p0 or with exact duplicates."""
    N = draw(st.sampled_from(sorted({1, 2, max(1, d - 1), d, d + 1, 2 * d + 3})))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["gauss", "gauss", "duplicates", "scaled"]))
    X = p0.sample(N, rng) if p0 is not None else rng.standard_normal((N, d))
    if kind == "duplicates" and N > 1:
        X[1:] = X[0]
    elif kind == "scaled":
        X = X * draw(floats_log(1e-6, 1e6))
    return X


def ridges():
    return st.sampled_from([0.0, 0.0, 1e-12, 1e-3, 1.0, 1e6, 1e300]) | floats_log(1e-9, 1e9)


def train_times():
    return st.sampled_from([None, None, 0.0, 1e-12, 1.0, 1e6]) | floats_log(1e-6, 1e6)


# ---------------------------------------------------------------------------------------------------
# Invalid inputs.  Each is (label, value, rule): rule None means "must be rejected"; "bool" and
# "numeric_string" follow RULE.
def bad_arrays(shape: tuple[int, ...], free_shape: bool = False, none_ok: bool = False) -> list[tuple[str, Any, str | None]]:
    """Bad values for an array argument of the given (valid) shape.  ``free_shape``: any 2-D shape is
    valid (training sets), so no "wrong shape" case; ``none_ok``: None means a default."""
    base = np.ones(shape)
    nan = base.copy()
    nan.flat[0] = np.nan
    inf = base.copy()
    inf.flat[-1] = np.inf
    out = [("nan", nan, None), ("inf", inf, None), ("complex", base + 1j, None), ("string", "abc", None),
           ("extra dimensions", base[None, None], None),
           ("bool array", base.astype(bool), "bool"),
           ("numeric strings", base.astype(str) if shape else "1.0", "numeric_string")]
    if not none_ok:
        out.append(("None", None, None))
    if shape and not free_shape:
        out.append(("wrong shape", np.ones(shape[:-1] + (shape[-1] + 1,)), None))
    return out


def bad_scalars(negative_invalid: bool = True, vectorised: bool = False) -> list[tuple[str, Any, str | None]]:
    """Bad values for a scalar argument (``vectorised``: arrays of valid values are accepted)."""
    out = [("nan", float("nan"), None), ("inf", float("inf"), None), ("complex", 1 + 1j, None),
           ("string", "abc", None), ("numeric string", "1", "numeric_string"), ("bool", True, "bool")]
    if not vectorised:
        out.append(("list", [1.0, 2.0], None))
    if negative_invalid:
        out.append(("negative", -1.0, None))
    return out


def bad_objects() -> list[tuple[str, Any, str | None]]:
    return [("None", None, None), ("array", np.eye(2), None), ("string", "gaussian", None), ("int", 3, None)]
