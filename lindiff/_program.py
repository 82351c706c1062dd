r"""Samplers as data: the program representation and its two exact interpreters.

A sampler unrolled on a time grid is a :class:`SamplerProgram`: a list of :class:`Step` s acting on a
*state* of ``K`` slots of d-vectors, ``S = (S_0, ..., S_{K-1})``.  Slot 0 is the point ``x`` (in the
process's own, variance-preserving coordinates); the other slots hold what multistep methods remember
(previous model outputs, previous points).  One step:

1. draws ``m`` independent noises ``z_1..z_m ~ N(0, I_d)``;
2. evaluates the model at ``J`` *stages*: stage ``j`` is ``f_j(y_j, t_j)`` with
   ``y_j = inputs_j . [S_0..S_{K-1}, z_1..z_m, f_1..f_{j-1}]`` and ``f`` the model's score, noise
   prediction (``eps``) or data prediction (``x0``), chosen per stage;
3. writes every slot anew: ``S'_i = writes_i . [S_0..S_{K-1}, z_1..z_m, f_1..f_J]``.

So noise may enter before a model evaluation (churn, noised midpoints) and a stage may be evaluated at
a point that is not the state (predictor–corrector schemes, Runge–Kutta stages).  Every coefficient
is a plain float computed when the program is built; the same program is run on points by
:func:`lindiff.mc.sample` and propagated exactly here.

Exact law.  For an affine model each stage output is affine in its input, so one step maps the state
affinely: ``S' = T S + U z + c``.  Per eigenmode of a model with a spectral form (``T``, ``U``, ``c``
are then K x K, K x m and K numbers per mode) the state's law is a K-dimensional affine-Gaussian
recursion — map from ``x_T`` (``P``), offset (``q``) and K x K noise covariance (``Q``):

.. math::
    P' = T P,\qquad q' = T q + c,\qquad Q' = T Q T^\top + U U^\top,

vectorised over the d modes (O(d K^3) per step).  Programs with a single slot reduce to scalar
recursions ``x' = a x + b + noise`` per mode and are composed with one suffix product over all steps
(no Python loop over steps).  The dense path runs the same recursion with d x d blocks, keeping blocks
that are multiples of the identity as scalars.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .processes import Process

__all__ = ["Stage", "Step", "SamplerProgram", "StepBuilder", "KINDS"]

KINDS = ("score", "eps", "x0", "ax0")
"""What a stage evaluates: the score, the noise prediction ``eps_hat = -sigma score``, the data
prediction ``x0_hat = (y + sigma^2 score) / alpha`` (Tweedie), or ``alpha x0_hat = y - sigma eps_hat``
(used where ``alpha`` underflows to 0 and ``x0_hat`` alone is not representable)."""


@dataclass(frozen=True)
class Stage:
    """One model evaluation: ``kind`` of the model at ``inputs . [slots, noises, earlier stages]``, time ``t``."""

    t: float
    inputs: tuple[float, ...]
    kind: str = "score"


@dataclass(frozen=True)
class Step:
    """One step from ``t`` to ``t_next``: draw ``noises`` N(0, I) vectors, evaluate ``stages``, then write
    slot ``i`` as ``writes[i] . [slots, noises, stages]``.  ``order`` and ``note`` are for display."""

    t: float
    t_next: float
    stages: tuple[Stage, ...]
    writes: tuple[tuple[float, ...], ...]
    noises: int = 0
    note: str = ""

    @property
    def n_slots(self) -> int:
        return len(self.writes)

    @property
    def x_row(self) -> tuple[float, ...]:
        """Coefficients of the new point ``x_next`` over ``[slots, noises, stages]``."""
        return self.writes[0]

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added *directly* to ``x_next`` (noise through stages excluded)."""
        K = self.n_slots
        return float(math.hypot(*self.writes[0][K : K + self.noises]))  # no overflow of the squares


@dataclass(frozen=True, eq=False)  # identity semantics: programs hold arrays, and key the compile cache
class SamplerProgram:
    """A sampler unrolled on a grid: the data both interpreters run.

    ``slots`` names the state's slots (``slots[0] == "x"``); ``options`` are the sampler's resolved
    options (defaults filled in).
    """

    name: str
    process: Process
    grid: np.ndarray
    steps: tuple[Step, ...]
    options: dict
    slots: tuple[str, ...] = ("x",)

    @property
    def t_start(self) -> float:
        return float(self.grid[0])

    @property
    def t_end(self) -> float:
        return float(self.grid[-1])

    @property
    def uses_prev(self) -> bool:
        """True for multistep solvers (the state holds more than the point x)."""
        return len(self.slots) > 1

    @property
    def n_noises(self) -> int:
        """Total number of N(0, I_d) draws over the run."""
        return sum(st.noises for st in self.steps)



# ------------------------------------------------------------------------------------------------
class StepBuilder:
    """Write a step with named registers instead of index bookkeeping.

    >>> b = StepBuilder(1.0, 0.5, n_slots=1)
    >>> x = b.slot(0)
    >>> z = b.noise()
    >>> e = b.stage(1.0, {x: 1.0, z: 0.1}, "eps")
    >>> b.write(0, {x: 1.0, e: -0.5})
    >>> step = b.build()
    >>> step.stages[0].inputs, step.writes[0], step.noises
    ((1.0, 0.1), (1.0, 0.0, -0.5), 1)
    """

    def __init__(self, t: float, t_next: float, n_slots: int):
        self.t, self.t_next, self.K = float(t), float(t_next), int(n_slots)
        self._noises: list[int] = []
        self._stages: list[tuple[int, float, dict, str]] = []
        self._writes: dict[int, dict] = {}
        self._next = n_slots
        self.note = ""

    def slot(self, i: int) -> int:
        if not 0 <= i < self.K:
            raise IndexError(i)
        return i

    def noise(self) -> int:
        reg = self._next
        self._next += 1
        self._noises.append(reg)
        return reg

    def stage(self, t: float, inputs: dict, kind: str = "score") -> int:
        if kind not in KINDS:
            raise ValueError(f"stage kind must be one of {KINDS}, got {kind!r}")
        reg = self._next
        self._next += 1
        self._stages.append((reg, float(t), dict(inputs), kind))
        return reg

    def write(self, i: int, combo: dict) -> None:
        self._writes[self.slot(i)] = dict(combo)

    def build(self) -> Step:
        order = list(range(self.K)) + self._noises + [s[0] for s in self._stages]
        pos = {reg: k for k, reg in enumerate(order)}

        def row(combo: dict, length: int) -> tuple[float, ...]:
            out = [0.0] * length
            for reg, c in combo.items():
                k = pos[reg]
                if k >= length:
                    raise ValueError("a stage may only use slots, noises and earlier stages")
                out[k] += float(c)
            return tuple(out)

        m = len(self._noises)
        stages = tuple(Stage(t, row(inputs, self.K + m + j), kind) for j, (_, t, inputs, kind) in enumerate(self._stages))
        total = self.K + m + len(stages)
        writes = tuple(row(self._writes.get(i, {}), total) for i in range(self.K))
        return Step(self.t, self.t_next, stages, writes, m, self.note)


def lc(*terms) -> dict:
    """Linear combination of register dicts: ``lc((2.0, a), (1.0, b))`` -> ``2 a + b`` (dicts merged)."""
    out: dict = {}
    for c, combo in terms:
        if isinstance(combo, int):
            combo = {combo: 1.0}
        for reg, v in combo.items():
            out[reg] = out.get(reg, 0.0) + c * v
    return out


# ------------------------------------------------------------------------------------------------
# exact interpreter, eigenbasis
@dataclass
class SpectralMap:
    """Accumulated map per eigenmode: x_U -> M * x_U + m + N(0, diag(Q))."""

    M: np.ndarray
    m: np.ndarray
    Q: np.ndarray


def _signature(st: Step) -> tuple:
    return (st.noises, tuple((s.kind, len(s.inputs)) for s in st.stages))


@dataclass
class _Group:
    """A run of consecutive steps ``a..b`` with the same structure, as arrays (vectorised together)."""

    a: int
    b: int
    noises: int
    kinds: tuple[str, ...]
    rows: list  # per stage: (n,) indices into the program's stage times
    inputs: list  # per stage: (n, L) coefficients over [slots, noises, earlier stages]
    writes: np.ndarray  # (n, K, L_total)


@dataclass
class _Compiled:
    """What the spectral interpreter needs from a program, computed once per program (programs are
    cached, so a sweep over training sets compiles each sampler once)."""

    times: np.ndarray
    groups: list
    kinds: frozenset


_COMPILED: "weakref.WeakKeyDictionary[SamplerProgram, dict]" = weakref.WeakKeyDictionary()


def compile_program(prog: SamplerProgram, block: int = 1) -> _Compiled:
    """Group a program's steps into runs of the same structure; ``block`` bounds each run's size
    (memory) through the number of numbers per register array, ``~2^22 / block`` steps."""
    cached = _COMPILED.get(prog, {}).get(block)
    if cached is not None:
        return cached
    steps = prog.steps
    times = np.array(sorted({stage.t for st in steps for stage in st.stages}), float)
    index = {t: i for i, t in enumerate(times.tolist())}
    limit = max(1, (1 << 22) // max(block, 1))
    groups = []
    start = 0
    sigs = [_signature(st) for st in steps]
    for k in range(1, len(steps) + 1):
        if k == len(steps) or k - start >= limit or sigs[k] != sigs[start]:
            run = steps[start:k]
            first = run[0]
            groups.append(_Group(
                start, k, first.noises, tuple(sg.kind for sg in first.stages),
                [np.array([index[st.stages[j].t] for st in run]) for j in range(len(first.stages))],
                [np.array([st.stages[j].inputs for st in run], float) for j in range(len(first.stages))],
                np.array([st.writes for st in run], float)))
            start = k
    out = _Compiled(times, groups, frozenset(sg.kind for st in steps for sg in st.stages))
    _COMPILED.setdefault(prog, {})[block] = out
    return out


def _axpy(acc, w, x):
    """acc + w[:, None] * x with None standing for zero (arrays are (n, 1) or (n, d))."""
    if x is None:
        return acc
    if x.shape[1] > 1 and np.all(w == 1.0):  # skip multiplying an (n, d) table by ones
        return x if acc is None else acc + x
    term = w[:, None] * x
    return term if acc is None else acc + term


def _combine_regs(weights: np.ndarray, regs: list, R: int):
    """sum_r weights[:, r] * regs[r] for registers (coefs over R sources, const)."""
    coefs: list = [None] * R
    const = None
    for r in range(weights.shape[1]):
        w = weights[:, r]
        if not w.any():
            continue
        rc, r0 = regs[r]
        coefs = [_axpy(a, w, x) for a, x in zip(coefs, rc)]
        const = _axpy(const, w, r0)
    return coefs, const


def _step_maps(prog: SamplerProgram, modes: "ModeTables"):
    """Per step and mode: T (S, K, K, d), noise covariance N (S, K, K, d), offset c (S, K, d).

    Coefficients stay (n, 1) columns until a model evaluation makes them mode-dependent, so
    single-stage programs cost a few (n, d) operations per stage."""
    K = len(prog.slots)
    d = modes.d
    S = len(prog.steps)
    T_all = np.zeros((S, K, K, d))
    N_all = np.zeros((S, K, K, d))
    c_all = np.zeros((S, K, d))
    compiled = modes.compiled
    for grp in compiled.groups:
        a, b, n, m = grp.a, grp.b, grp.b - grp.a, grp.noises
        R = K + m
        one = np.ones((n, 1))
        regs = [([one if r == i else None for r in range(R)], None) for i in range(R)]
        for j, kind in enumerate(grp.kinds):
            ycoef, yconst = _combine_regs(grp.inputs[j], regs, R)
            mult, off = modes.stage_affine(grp.rows[j], kind)
            regs.append(([None if y is None else mult * y for y in ycoef], off if yconst is None else mult * yconst + off))
        U = []
        for i in range(K):
            coef, const = _combine_regs(grp.writes[:, i, :], regs, R)
            for k in range(K):
                if coef[k] is not None:
                    T_all[a:b, i, k] = coef[k]
            if const is not None:
                c_all[a:b, i] = const
            U.append(coef[K:])
        for i in range(K):
            for j in range(i, K):
                v = None
                for ui, uj in zip(U[i], U[j]):
                    if ui is not None and uj is not None:
                        v = ui * uj if v is None else v + ui * uj
                if v is not None:
                    N_all[a:b, i, j] = v
                    N_all[a:b, j, i] = v
    return T_all, N_all, c_all


class ModeTables:
    """Per-mode model coefficients at every stage time of a program (one ``gains`` call).

    ``spectral`` supplies the gains (its eigenvalues define the modes) and ``mu`` the centre in its
    basis; a batch of models that differ only in their spectra runs as one model with the spectra
    concatenated (:func:`run_spectral_batch`)."""

    def __init__(self, spectral, mu: np.ndarray, prog: SamplerProgram):
        from .scores import _undefined_score

        sp = spectral
        self.d = int(np.shape(sp.eigenvalues)[0])
        self.mu = mu
        self.compiled = compile_program(prog, self.d * (len(prog.slots) + max((st.noises for st in prog.steps), default=0)))
        tt = self.compiled.times
        process = prog.process
        self.alpha = np.asarray(process.alpha(tt), float).reshape(-1)
        self.sigma = np.asarray(process.sigma(tt), float).reshape(-1)
        self.gains = sp.gains(tt, self.alpha, self.sigma).reshape(len(tt), self.d)
        # a row sum is finite when every entry is (a sum that overflows only sends us to the exact check,
        # silently: finite gains near 1/sigma^2 ~ 1e308 may sum past float64, and +inf + -inf is NaN)
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(self.gains.sum(axis=1))
        if not finite.all():
            finite = np.isfinite(self.gains).all(axis=1)
        if not finite.all():
            i = int(np.argmin(finite))
            raise _undefined_score(float(tt[i]), int(np.sum(~np.isfinite(self.gains[i]))))
        self.frac = None
        if self.compiled.kinds & {"x0", "ax0"}:
            self.frac = np.stack([sp.x0_fraction(t, a, s) for t, a, s in zip(tt, self.alpha, self.sigma)])
        self._spectral, self._times = sp, tt

    def x0_mult(self, rows: np.ndarray) -> np.ndarray:
        """Per-mode ``k`` of ``x0_hat = mu + k (y - alpha mu)`` at the times ``compiled.times[rows]``: ``frac /
        alpha``, and where alpha underflows to 0 (a grid that starts where the start is forgotten) the spectral
        form's limit (0 for a model that reproduces its data mean there, a ValueError where it is infinite)."""
        alpha = self.alpha[rows]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            k = self.frac[rows] / alpha[:, None]
        for j in np.flatnonzero((alpha == 0.0) | ~np.isfinite(k).all(axis=1)):  # also frac / subnormal alpha = inf
            i = rows[j] if np.ndim(rows) else rows
            k[j] = self._spectral.x0_gains(float(self._times[i]), float(self.alpha[i]), float(self.sigma[i]))
        return k

    def stage_affine(self, rows: np.ndarray, kind: str):
        """Per-mode ``f(y) = mult * y + off`` for stages at the times ``compiled.times[rows]``; arrays (n, d)."""
        g = self.gains[rows]
        a = self.alpha[rows][:, None]
        s = self.sigma[rows][:, None]
        am = a * self.mu
        if kind == "score":
            return -g, g * am
        if kind == "eps":
            sg = s * g
            return sg, -sg * am
        # the offsets mu (1 - alpha k) of x0_hat (times alpha for alpha x0_hat) as mu sigma^2 g: the identity
        # alpha k = 1 - sigma^2 g of every spectral form, without the cancellation of 1 - frac where frac -> 1
        if kind == "ax0":
            return self.frac[rows], am * (s * s * g)
        return self.x0_mult(rows), self.mu * (s * s * g)


def _run_modes(spectral, mu: np.ndarray, prog: SamplerProgram) -> SpectralMap:
    d = int(np.shape(spectral.eigenvalues)[0])
    if not prog.steps:
        return SpectralMap(np.ones(d), np.zeros(d), np.zeros(d))
    modes = ModeTables(spectral, mu, prog)
    K = len(prog.slots)
    if K == 1 and all(len(g.kinds) == 1 and g.noises <= 1 for g in modes.compiled.groups):
        return _run_single_stage(prog, modes)
    T, N, c = _step_maps(prog, modes)
    if K == 1:
        return _compose_scalar(np.ascontiguousarray(T[:, 0, 0]), np.ascontiguousarray(c[:, 0]),
                               np.ascontiguousarray(N[:, 0, 0]))
    P = np.zeros((K, d))
    P[0] = 1.0
    q = np.zeros((K, d))
    Q = np.zeros((K, K, d))
    for k in range(len(prog.steps)):
        Tk = T[k]
        P = np.einsum("ijd,jd->id", Tk, P)
        q = np.einsum("ijd,jd->id", Tk, q) + c[k]
        Q = np.einsum("ikd,kld,jld->ijd", Tk, Q, Tk) + N[k]
    return SpectralMap(P[0], q[0], np.maximum(Q[0, 0], 0.0))


def _compose_scalar(a: np.ndarray, b: np.ndarray | None, v: np.ndarray | None) -> SpectralMap:
    """Compose x -> a_k x + b_k + N(0, v_k) over the steps (rows, None meaning zero) per mode, with one
    suffix product ``suffix[k] = prod_{j > k} a_j``.  The product runs as a loop of in-place row
    multiplications: numpy's ``cumprod`` along the first axis of a reversed view is several times slower
    (it buffers the strided output)."""
    S, d = a.shape
    suffix = np.empty_like(a)
    suffix[-1] = 1.0
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # an overflowing law is reported by the caller
        for k in range(S - 2, -1, -1):
            np.multiply(suffix[k + 1], a[k + 1], out=suffix[k])
        M = suffix[0] * a[0]
        m = np.zeros(d) if b is None else np.einsum("kd,kd->d", suffix, b)
        if v is None:
            Q = np.zeros(d)
        else:
            suffix *= suffix
            Q = np.einsum("kd,kd->d", suffix, v)
    return SpectralMap(M, m, Q)


def _rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]``, as a view (no copy of an (S, d) table) when the rows are consecutive."""
    n = len(rows)
    if n > 1:
        step = int(rows[1] - rows[0])
        if step in (1, -1) and rows[-1] - rows[0] == step * (n - 1) and np.all(np.diff(rows) == step):
            stop = int(rows[-1]) + step
            return array[int(rows[0]) : (None if stop < 0 else stop) : step]
    return array[rows]


def _run_single_stage(prog: SamplerProgram, modes: ModeTables) -> SpectralMap:
    """One model evaluation per step at a combination of x and at most one noise, ``x' = w_x x + w_z z +
    w_f f(y)`` with ``y = i_x x + i_z z`` — the common case (DDPM, DDIM, Euler(-Maruyama), the exponential
    integrator, ancestral Euler, ...).

    Every stage kind is ``f(y) = mult y + c0 - mult alpha mu`` with ``c0`` one of ``0`` (score, eps),
    ``alpha mu`` (alpha x0) or ``mu`` (x0), so per mode ``a_k = w_x + w_f mult_k i_x``, ``b_k = (w_f c0 -
    w_f mult_k alpha mu)`` and the noise variance is ``(w_z + w_f mult_k i_z)^2``.  The composition
    ``M = prod a``, ``m = sum_k s_k b_k``, ``Q = sum_k s_k^2 v_k`` (``s_k = prod_{j>k} a_j``) is formed
    with the parts that do not depend on the mode kept as per-step columns: ``m = mu * (col^T (s * w_f
    mult))`` for score and eps stages and, when the noise does not pass through the model (``i_z = 0``), ``Q =
    (w_z^2)^T s^2`` — matrix-vector products instead of further (S, d) tables.  The offsets of x0 and alpha x0
    stages, ``w_f mu (1 - alpha k)`` (times alpha), are summed as ``w_f mu sigma^2 g`` from the gains: written as
    a difference of two column sums they would cancel where the signal dominates the noise (``alpha k -> 1``)."""
    S, d = len(prog.steps), modes.d
    mu = modes.mu
    has_mean = bool(np.any(mu))
    wfm = np.empty((S, d))  # w_f mult, per step and mode
    col_x = np.empty((S, 1))  # i_x
    col_wx = np.empty((S, 1))  # w_x
    col_mean = np.zeros(S)  # -alpha: m gets mu * sum_k s_k (w_f mult)_k (-alpha_k)
    col_wz = np.zeros((S, 1))
    col_iz = np.zeros((S, 1))
    data_off = []  # (slice, w_f sigma^2 (alpha), rows) of x0 / alpha x0 stages: offsets w_f mu sigma^2 g (alpha)
    for grp in modes.compiled.groups:
        sl = slice(grp.a, grp.b)
        kind = grp.kinds[0]
        rows = grp.rows[0]
        inp, W = grp.inputs[0], grp.writes[:, 0, :]
        wx, wf = W[:, 0:1], W[:, -1:]
        alpha = modes.alpha[rows][:, None]
        sigma = modes.sigma[rows][:, None]
        if kind in ("score", "eps"):
            factor = -wf if kind == "score" else wf * sigma
            np.multiply(factor, _rows(modes.gains, rows), out=wfm[sl])
        else:
            if kind == "ax0":
                np.multiply(wf, _rows(modes.frac, rows), out=wfm[sl])
            elif alpha.min() > 1e-150:  # the usual case: one pass, k = frac / alpha
                np.multiply(wf / alpha, _rows(modes.frac, rows), out=wfm[sl])
            else:  # alpha underflows at some step: the limit (ModeTables.x0_mult)
                np.multiply(wf, modes.x0_mult(rows), out=wfm[sl])
            if has_mean:
                data_off.append((sl, (wf * sigma * sigma * (alpha if kind == "ax0" else 1.0))[:, 0], rows))
        col_x[sl], col_wx[sl] = inp[:, 0:1], wx
        col_mean[sl] = -alpha[:, 0] if kind in ("score", "eps") else 0.0
        if grp.noises:
            col_wz[sl], col_iz[sl] = W[:, 1:2], inp[:, 1:2]
    a = np.multiply(wfm, col_x)  # after the suffix products a is scratch for the (steps x modes) products below
    a += col_wx
    suffix = np.empty_like(a)  # suffix[k] = prod_{j > k} a_j, by in-place row products (see _compose_scalar)
    suffix[-1] = 1.0
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # an overflowing law is reported by the caller
        for k in range(S - 2, -1, -1):
            np.multiply(suffix[k + 1], a[k + 1], out=suffix[k])
        M = suffix[0] * a[0]
        if has_mean:
            m = mu * (col_mean @ np.multiply(suffix, wfm, out=a))
            for sl, col, rows in data_off:  # one pass over (steps, modes) per group, no further table
                m = m + mu * np.einsum("k,kd,kd->d", col, suffix[sl], _rows(modes.gains, rows))
        else:
            m = np.zeros(d)
        if col_iz.any():
            v = np.multiply(wfm, col_iz)
            v += col_wz
            v *= v
            suffix *= suffix
            Q = np.einsum("kd,kd->d", suffix, v)
        elif col_wz.any():
            suffix *= suffix
            Q = (col_wz[:, 0] ** 2) @ suffix
        else:
            Q = np.zeros(d)
    return SpectralMap(M, np.asarray(m, float), Q)


def run_spectral(model, prog: SamplerProgram) -> SpectralMap:
    """Exact per-mode map of a stepped program (see the module docstring)."""
    sp = model.spectral
    mu = sp.mean_in_basis
    d = mu.shape[0]
    if not hasattr(sp, "restrict"):
        return _run_modes(sp, mu, prog)
    # modes with the same gains and centre have the same map: one run per class (a stationary field's
    # radial spectrum on a 256 x 256 grid has 5924 distinct values for 65536 modes)
    classes = sp.mode_classes()
    modes, inverse = classes if classes is not None else (None, None)
    n = d if modes is None else modes.size
    # the interpreter holds a few (steps x modes) tables: in blocks of modes they stay ~32 MB each and
    # reuse freed memory, instead of GBs of fresh pages at image sizes
    block = max(1024, (1 << 22) // max(len(prog.steps), 1))
    if modes is None and n <= block:
        return _run_modes(sp, mu, prog)
    index = np.arange(d) if modes is None else modes
    parts = [_run_modes(sp.restrict(index[i : i + block]), mu[index[i : i + block]], prog) for i in range(0, n, block)]
    M, m, Q = (np.concatenate([getattr(p, f) for p in parts]) for f in ("M", "m", "Q"))
    if inverse is not None:
        M, m, Q = M[inverse], m[inverse], Q[inverse]
    return SpectralMap(M, m, Q)


def run_spectral_batch(models: Sequence, prog: SamplerProgram) -> list[SpectralMap]:
    """:func:`run_spectral` for several models at once (e.g. one per training set): models whose
    spectral forms share ridge, ``train_time`` and ``lr`` run as one model with their spectra
    concatenated, so one pass over the steps serves the whole batch."""
    import dataclasses

    forms = [m.spectral for m in models]
    if not forms:
        return []
    first = forms[0]
    # concatenating spectra is valid only for forms whose gains are a function of their eigenvalues (not
    # for a local convolution's KernelForm)
    same = all(getattr(f, "gains_from_eigenvalues", True) and f.train_time == first.train_time and f.lr == first.lr and not callable(f.ridge)
               and not callable(first.ridge) and float(f.ridge) == float(first.ridge) for f in forms)
    if not same or len(forms) == 1:
        return [run_spectral(m, prog) for m in models]
    joint = dataclasses.replace(first, eigenvalues=np.concatenate([f.eigenvalues for f in forms]))
    mu = np.concatenate([f.mean_in_basis for f in forms])
    acc = _run_modes(joint, mu, prog)
    cuts = np.cumsum([f.eigenvalues.shape[0] for f in forms])[:-1]
    return [SpectralMap(M, m, Q) for M, m, Q in zip(np.split(acc.M, cuts), np.split(acc.m, cuts), np.split(acc.Q, cuts))]


# ------------------------------------------------------------------------------------------------
# exact interpreter, dense: blocks are None (zero), a float (multiple of I) or a (d, d) array
def _bmul(a, b):
    if a is None or b is None:
        return None
    if isinstance(a, float):
        return a * b
    if isinstance(b, float):
        return a * b
    return a @ b


def _badd(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, float) and isinstance(b, float):
        return a + b
    if isinstance(a, float):
        return b + a * np.eye(b.shape[0])
    if isinstance(b, float):
        return a + b * np.eye(a.shape[0])
    return a + b


def _bT(a):
    return a if (a is None or isinstance(a, float)) else a.T


def _bvec(a, v):
    if a is None:
        return np.zeros_like(v)
    return a * v if isinstance(a, float) else a @ v


def _bfull(a, d):
    if a is None:
        return np.zeros((d, d))
    return a * np.eye(d) if isinstance(a, float) else a


class _DenseWeights:
    """``f(y) = F y + f0`` for each stage kind at time t (small cache: grids revisit few times at once)."""

    def __init__(self, model, process):
        self.model, self.process = model, process
        self.cache: dict = {}

    def __call__(self, t: float, kind: str):
        key = (t, kind)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        if len(self.cache) > 8:
            self.cache.clear()
        model = self.model
        if kind == "score":
            F, f0 = model.score_affine(t)
        elif kind == "eps":
            F, f0 = model.affine(t)
        else:
            a, s = float(self.process.alpha(t)), float(self.process.sigma(t))
            scale = 1.0 if kind == "ax0" else a
            if model.spectral is not None:
                sp = model.spectral
                g = model._checked_gains(t, a, s)
                # x0 where alpha underflows (to 0, or subnormal): the spectral form's limit, or its ValueError
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    k = sp.x0_fraction(t, a, s) / scale
                if not np.all(np.isfinite(k)):
                    k = sp.x0_gains(t, a, s)
                F = (sp.basis * k) @ sp.basis.T
                # offset mu (1 - alpha k) (times alpha for alpha x0) as mu sigma^2 g: no cancellation (ModeTables)
                f0 = (sp.basis * ((a if kind == "ax0" else 1.0) * s * s * g)) @ (sp.basis.T @ sp.mean)
            elif scale == 0.0:
                raise ValueError(f"the x0 prediction (x - sigma eps_hat) / alpha at t={t:g} is not representable: "
                                 "alpha(t) = 0 (float64 underflow); use a grid that starts at a smaller time")
            else:
                W, b = model.affine(t)
                F = (np.eye(model.dim) - s * W) / scale
                f0 = -s * b / scale
        self.cache[key] = (F, f0)
        return F, f0


def run_dense(model, prog: SamplerProgram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact map ``x_T -> M x_T + m + N(0, Q)`` of a stepped program with d x d blocks."""
    d = model.dim
    K = len(prog.slots)
    weights = _DenseWeights(model, prog.process)
    P: list = [1.0] + [None] * (K - 1)
    q = [np.zeros(d) for _ in range(K)]
    Q: dict = {}
    for st in prog.steps:
        R = K + st.noises
        regs = [([1.0 if r == i else None for r in range(R)], np.zeros(d)) for i in range(R)]
        for stage in st.stages:
            blocks: list = [None] * R
            const = np.zeros(d)
            for r, w in enumerate(stage.inputs):
                if w == 0:
                    continue
                rb, rc = regs[r]
                blocks = [_badd(x, _bmul(float(w), y)) for x, y in zip(blocks, rb)]
                const = const + w * rc
            F, f0 = weights(stage.t, stage.kind)
            regs.append(([_bmul(F, b) for b in blocks], F @ const + f0))
        T, U, c = [], [], []
        for row in st.writes:
            blocks = [None] * R
            const = np.zeros(d)
            for r, w in enumerate(row):
                if w == 0:
                    continue
                rb, rc = regs[r]
                blocks = [_badd(x, _bmul(float(w), y)) for x, y in zip(blocks, rb)]
                const = const + w * rc
            T.append(blocks[:K])
            U.append(blocks[K:])
            c.append(const)
        newP = []
        newq = []
        for i in range(K):
            acc, accq = None, c[i].copy()
            for k in range(K):
                acc = _badd(acc, _bmul(T[i][k], P[k]))
                accq = accq + _bvec(T[i][k], q[k])
            newP.append(acc)
            newq.append(accq)
        # Q' = T Q T^T + U U^T, blockwise (i <= j)
        def Qget(k, l):
            if k <= l:
                return Q.get((k, l))
            return _bT(Q.get((l, k)))

        TQ = [[None] * K for _ in range(K)]
        for i in range(K):
            for l in range(K):
                acc = None
                for k in range(K):
                    if T[i][k] is not None:
                        acc = _badd(acc, _bmul(T[i][k], Qget(k, l)))
                TQ[i][l] = acc
        newQ: dict = {}
        for i in range(K):
            for j in range(i, K):
                acc = None
                for l in range(K):
                    acc = _badd(acc, _bmul(TQ[i][l], _bT(T[j][l])))
                for n in range(st.noises):
                    acc = _badd(acc, _bmul(U[i][n], _bT(U[j][n])))
                if acc is not None:
                    newQ[(i, j)] = acc
        P, q, Q = newP, newq, newQ
    M = _bfull(P[0], d)
    cov = _bfull(Q.get((0, 0)), d)
    return M, q[0], 0.5 * (cov + cov.T)


# ------------------------------------------------------------------------------------------------
# Monte Carlo interpreter (points)
def _alpha_x0(model, process, y: np.ndarray, t: float) -> np.ndarray:
    """``alpha x0_hat`` at the rows of y: alpha times the model's own data prediction wherever that is finite
    (no cancellation; 0 where alpha underflows to 0 and the prediction has a limit), else ``y - sigma eps_hat``
    (the prediction alone is beyond float64, e.g. a ridge-fitted model as alpha -> 0).  ``y - sigma eps_hat``
    everywhere would cancel to round-off of ``y`` where alpha is tiny, which the step's ratio alpha'/alpha
    then multiplies."""
    a = float(process.alpha(t))
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            out = a * np.atleast_2d(model.x0(y, t))
        if np.all(np.isfinite(out)):
            return out
    except ValueError:  # the model refuses x0 here (not representable): alpha x0 from eps below
        pass
    return y - float(process.sigma(t)) * np.atleast_2d(model.eps(y, t))


def run_points(model, prog: SamplerProgram, x: np.ndarray, gen: np.random.Generator, on_step=None) -> np.ndarray:
    """Run a stepped program on the rows of ``x`` for any score model (the Monte Carlo twin)."""
    K = len(prog.slots)
    slots = [x] + [np.zeros_like(x) for _ in range(K - 1)]
    for st in prog.steps:
        regs = list(slots) + [gen.standard_normal(x.shape) for _ in range(st.noises)]
        for stage in st.stages:
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float64: the ValueError below
                y = _combine(stage.inputs, regs, x)
            if not np.all(np.isfinite(y)):
                raise _points_overflow(prog, st)
            if stage.kind == "score":
                out = model.score(y, stage.t)
            elif stage.kind == "eps":
                out = model.eps(y, stage.t)
            elif stage.kind == "x0":
                out = model.x0(y, stage.t)
            else:
                out = _alpha_x0(model, prog.process, y, stage.t)
            regs.append(np.atleast_2d(out))
        with np.errstate(over="ignore", invalid="ignore"):
            slots = [_combine(row, regs, x) for row in st.writes]
        if not all(np.all(np.isfinite(v)) for v in slots):
            raise _points_overflow(prog, st)
        if on_step is not None:
            on_step()
    return slots[0]


def _points_overflow(prog: SamplerProgram, st: Step) -> ValueError:
    return ValueError(f"the points of sampler {prog.name!r} overflow float64 on the step t = {st.t:g} -> {st.t_next:g}: "
                      "its output (and the law of it) is beyond float64 there; use more steps, or a grid that starts at "
                      "a smaller time")


def _combine(coefs, regs, like):
    out = None
    for c, r in zip(coefs, regs):
        if c == 0:
            continue
        out = c * r if out is None else out + c * r
    return np.zeros_like(like) if out is None else out
