"""Fuzz targets: one per public area, each drawing valid-but-extreme and invalid inputs.

A target is ``fn(data, rec)``: it draws with ``data.draw(...)`` and calls entry points through
``rec.call`` (see ``fuzzlib``).  ``COST`` weighs how many examples a profile gives each target (the
expensive sweeps get a few, the divergences thousands).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from hypothesis import strategies as st

import lindiff as ld
from lindiff.gaussian import _law_cov
from lindiff import ensembles, mc, memorisation, regularisation, rmt, sgd, spectra, stability, transition
from lindiff.testing import check_sampler, probe_affine
from reference_sampler import make_loop
from fuzzlib import (EPS, RULE, bad_arrays, bad_objects, bad_scalars, bases, condition, dense_copy, dims,
                     floats_log, gaussians, means, near_cutoff, processes, representation_error, ridges,
                     spectra as spectra_st, times, train_times, training_sets)

TARGETS: dict = {}
COST: dict = {}


def target(cost: float = 1.0):
    def deco(fn):
        TARGETS[fn.__name__] = fn
        COST[fn.__name__] = cost
        return fn
    return deco


def invalid(data, rec, entry, fn, args: tuple, kwargs: dict, *choices, allow_neg_inf: bool = False) -> None:
    """Replace one argument by a bad value and expect rejection (or, for bool arrays and numeric strings,
    the behaviour of ``RULE``).  Each choice is ``(position or keyword, list of bad values)``."""
    position, bads = data.draw(st.sampled_from(choices))
    label, bad, rule = data.draw(st.sampled_from(bads))
    args = list(args)
    kwargs = dict(kwargs)
    if isinstance(position, int):
        args[position] = bad
    else:
        kwargs[position] = bad
    expect = "reject" if rule is None or not RULE[rule] else "any"
    rec.call(f"{entry} [invalid {label}]", fn, *args, expect=expect, allow_neg_inf=allow_neg_inf, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Gaussians
@target(cost=1.0)
def gaussian(data, rec):
    d = data.draw(dims())
    values = data.draw(spectra_st(d))
    U = data.draw(bases(d))
    m = data.draw(means(d))
    S = (U * values) @ U.T
    S = 0.5 * (S + S.T)
    _, g = rec.call("Gaussian", ld.Gaussian, m, S, expect="valid")
    _, gs = rec.call("Gaussian.from_spectrum", ld.Gaussian.from_spectrum, values, U, m, expect="valid")
    for h in (g, gs):
        if h is None:
            continue
        rec.invariant("Gaussian", h.rank <= d and np.all(h.eigenvalues >= 0), "law not PSD", repr(values))
        rec.invariant("Gaussian", abs(float(np.trace(h.cov)) - float(values.sum())) <= 1e-9 * values.sum() + 1e-300,
                      "trace changed", repr(values))
    n = data.draw(st.sampled_from([1, 2, 7]))
    if g is not None:
        _, x = rec.call("Gaussian.sample", g.sample, n, data.draw(st.integers(0, 10)), expect="valid")
        if x is not None:
            rec.call("Gaussian.logpdf", g.logpdf, x, expect="valid", allow_neg_inf=True)
            rec.call("Gaussian.logpdf", g.logpdf, x[0] * data.draw(floats_log(1e-6, 1e6)), expect="valid",
                     allow_neg_inf=True)
        invalid(data, rec, "Gaussian.sample", g.sample, (n,), {}, (0, bad_scalars() + [("zero", 0, None)]))
        invalid(data, rec, "Gaussian.logpdf", g.logpdf, (np.zeros(d),), {}, (0, bad_arrays((d,))), allow_neg_inf=True)
    X = data.draw(training_sets(d))
    rec.call("Gaussian.fit", ld.Gaussian.fit, X, expect="valid")
    rec.call("Gaussian.standard", ld.Gaussian.standard, d, expect="valid")
    # invalid input
    invalid(data, rec, "Gaussian", ld.Gaussian, (m, S), {}, (0, bad_arrays((d,))), (1, bad_arrays((d, d))))
    if d > 1:
        A = S.copy()
        A[0, -1] += 1.0 + 1e-6 * float(np.abs(A).max())  # beyond the symmetry tolerance 1e-10 max(1, max|C|)
        rec.call("Gaussian [invalid not symmetric]", ld.Gaussian, m, A, expect="reject")
    neg = values.copy()
    neg[0] = -max(1.0, float(values.max()))
    rec.call("Gaussian.from_spectrum [invalid negative]", ld.Gaussian.from_spectrum, neg, expect="reject")
    invalid(data, rec, "Gaussian.from_spectrum", ld.Gaussian.from_spectrum, (values, U), {}, (0, bad_arrays((d,))),
            (1, bad_arrays((d, d), none_ok=True) + [("not orthonormal", np.full((d, d), 2.0), None)]))
    invalid(data, rec, "Gaussian.fit", ld.Gaussian.fit, (X,), {},
            (0, bad_arrays(X.shape, free_shape=True) + [("no rows", np.zeros((0, d)), None)]))
    invalid(data, rec, "Gaussian.standard", ld.Gaussian.standard, (d,), {}, (0, bad_scalars() + [("zero", 0, None)]))


# ---------------------------------------------------------------------------------------------------
# Divergences
def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rtol * max(abs(a), abs(b)) + atol


@target(cost=1.0)
def divergences(data, rec):
    d = data.draw(dims())
    shared = data.draw(st.booleans())
    U = data.draw(bases(d))
    dense = None if not shared else False
    p = data.draw(gaussians(d, basis=U if shared else None, dense=dense))
    q = data.draw(gaussians(d, basis=U if shared else None, dense=dense)) if not data.draw(st.integers(0, 4)) == 0 else p
    if data.draw(st.integers(0, 5)) == 0:  # nearly equal: a relative perturbation of p's spectrum
        delta = data.draw(floats_log(1e-10, 1e-1))
        q = ld.Gaussian.from_spectrum(p.eigenvalues * (1 + delta), p.eigenvectors, p.mean)
    ctx = f"p = {p!r} {p.eigenvalues!r} {p.mean!r}; q = {q!r} {q.eigenvalues!r} {q.mean!r}; shared={shared}"
    rec.context = ctx
    res = {}
    for name, fn in (("kl", ld.kl), ("w2", ld.w2), ("hellinger", ld.hellinger)):
        for a, b, key in ((p, q, "pq"), (q, p, "qp")):
            _, res[name, key] = rec.call(name, fn, a, b, expect="valid")
    if any(v is None for v in res.values()):
        return
    for key in ("pq", "qp"):
        k, h = res["kl", key], res["hellinger", key]
        rec.invariant("kl", k >= 0.0, f"KL < 0: {k}", ctx)
        rec.invariant("hellinger", 0.0 <= h <= 1.0, f"H outside [0, 1]: {h}", ctx)
        # Renyi order 1/2 <= 1: KL >= -2 log BC = -2 log(1 - H^2)
        if not math.isinf(k) and h < 1.0:
            bound = -2.0 * math.log1p(-h * h)
            rec.invariant("kl", k >= bound * (1 - 1e-6) - 1e-12 - 10 * representation_error(p, q) ** 2,
                          f"KL {k} < -2 log BC {bound}", ctx)
    delta = representation_error(p, q)
    root_noise = 10 * math.sqrt(d * EPS * max(float(p.eigenvalues.max()), float(q.eigenvalues.max())))
    rec.invariant("w2", _close(res["w2", "pq"], res["w2", "qp"], 1e-9, root_noise), "W2 not symmetric", ctx)
    rec.invariant("hellinger", _close(res["hellinger", "pq"], res["hellinger", "qp"], 1e-9, delta), "H not symmetric", ctx)
    for name, fn in (("kl", ld.kl), ("w2", ld.w2), ("hellinger", ld.hellinger)):
        rec.invariant(name, fn(p, p) == 0.0, "divergence of p from itself is not 0", ctx)
    # spectral path = dense path, to the documented error model (skip rank decisions at the cut-off)
    if p.shares_basis_with(q) and not near_cutoff(p, q):
        pd, qd = dense_copy(p), dense_copy(q)
        scale = math.sqrt(max(float(p.eigenvalues.max()), float(q.eigenvalues.max()), 0.0))
        for name, fn, tol in (
                ("kl", ld.kl, lambda v: delta * v + math.sqrt(v) * delta + delta**2 + 1e-9 * v),
                ("hellinger", ld.hellinger, lambda v: delta + 1e-9 * v),
                ("w2", ld.w2, lambda v: 10 * math.sqrt(d * EPS) * scale + 1e-9 * v)):
            _, dense_value = rec.call(name + " (dense copies)", fn, pd, qd, expect="valid")
            if dense_value is None:
                continue
            spectral_value = res[name, "pq"]
            ok = (math.isinf(spectral_value) == math.isinf(dense_value)
                  and (math.isinf(spectral_value) or abs(spectral_value - dense_value) <= tol(spectral_value)))
            rec.invariant(name, ok, f"spectral {spectral_value!r} != dense {dense_value!r}", ctx)
    # triangle inequality for W2 with a third law
    r = data.draw(gaussians(d, basis=U if shared else None, dense=dense))
    _, w_pr = rec.call("w2", ld.w2, p, r, expect="valid")
    _, w_qr = rec.call("w2", ld.w2, q, r, expect="valid")
    if w_pr is not None and w_qr is not None:
        scale = math.sqrt(max(float(g.eigenvalues.max()) for g in (p, q, r)))
        slack = 1e-9 * (w_pr + w_qr + res["w2", "pq"]) + 10 * math.sqrt(d * EPS) * scale
        rec.invariant("w2", w_pr <= res["w2", "pq"] + w_qr + slack, "triangle inequality", ctx + f"; r = {r!r}")
    # invalid
    bad = data.draw(st.sampled_from(bad_objects() + [("other dimension", ld.Gaussian.standard(d + 1), None)]))
    fn = data.draw(st.sampled_from([ld.kl, ld.w2, ld.hellinger]))
    args = [p, q]
    args[data.draw(st.integers(0, 1))] = bad[1]
    rec.call(f"{fn.__name__} [invalid {bad[0]}]", fn, *args, expect="reject")


# ---------------------------------------------------------------------------------------------------
# Forward processes
@target(cost=1.0)
def process(data, rec):
    proc = data.draw(processes())
    t = data.draw(times(proc))
    ts = np.array([data.draw(times(proc)) for _ in range(3)])
    for name in ("alpha", "sigma", "log_alpha2"):
        rec.call(f"{type(proc).__name__}.{name}", getattr(proc, name), t, expect="valid", allow_neg_inf=True)
    _, a = rec.call(f"{type(proc).__name__}.alpha", proc.alpha, ts, expect="valid")
    _, s = rec.call(f"{type(proc).__name__}.sigma", proc.sigma, ts, expect="valid")
    if a is not None and s is not None:
        rec.invariant("process", np.all((a >= 0) & (a <= 1) & (s >= 0) & (s <= 1)), "alpha/sigma outside [0, 1]", repr(proc))
        rec.invariant("process", np.allclose(a * a + s * s, 1.0, rtol=0, atol=4 * EPS), "alpha^2 + sigma^2 != 1", repr(proc))
        order = np.argsort(ts, kind="stable")
        rec.invariant("process", np.all(np.diff(a[order]) <= 0), "alpha not decreasing", repr(proc))
    d = data.draw(dims())
    p0 = data.draw(gaussians(d))
    rec.call(f"{type(proc).__name__}.marginal", proc.marginal, p0, t, expect="valid")
    bads = bad_scalars(vectorised=True) + [("beyond T", float(proc.T) * 2 + 1, None)]
    invalid(data, rec, f"{type(proc).__name__}.alpha", proc.alpha, (t,), {}, (0, bads))
    invalid(data, rec, f"{type(proc).__name__}.marginal", proc.marginal, (p0, t), {}, (0, bad_objects()),
            (1, bad_scalars() + [("beyond T", float(proc.T) * 2 + 1, None)]))
    kind = data.draw(st.sampled_from(["DDPM", "DDPM.linear", "DDPM.cosine", "VP.linear", "OU", "SigmaVP"]))
    ctor = {"DDPM": (ld.DDPM, ([0.1, 0.2],), bad_arrays((2,)) + [("beta = 1", [0.5, 1.0], None), ("empty", [], None)]),
            "DDPM.linear": (ld.DDPM.linear, (10,), bad_scalars() + [("zero", 0, None), ("float", 2.5, None)]),
            "DDPM.cosine": (ld.DDPM.cosine, (10,), bad_scalars() + [("zero", 0, None)]),
            "VP.linear": (ld.VP.linear, (0.1, 20.0, 1.0), bad_scalars() + [("zero", 0.0, None)]),
            "OU": (ld.OU, (1.0,), bad_scalars() + [("zero", 0.0, None)]),
            "SigmaVP": (ld.SigmaVP, (80.0,), bad_scalars() + [("zero", 0.0, None)])}[kind]
    fn, args, bads = ctor
    invalid(data, rec, kind, fn, args, {}, *[(i, bads) for i in range(len(args))])


# ---------------------------------------------------------------------------------------------------
# Score models
def _points(data, d, scale_hi=1e8):
    seed = data.draw(st.integers(0, 2**32 - 1))
    n = data.draw(st.sampled_from([1, 3]))
    x = np.random.default_rng(seed).standard_normal((n, d)) * data.draw(floats_log(1e-8, scale_hi))
    return x[0] if data.draw(st.booleans()) else x


@target(cost=1.5)
def gaussian_score(data, rec):
    d = data.draw(dims(4))
    proc = data.draw(processes())
    p0 = data.draw(gaussians(d))
    rec.context = f"p0 = Gaussian(mean={p0.mean!r}, eigenvalues={p0.eigenvalues!r}), process = {proc!r}"
    _, model = rec.call("GaussianScore", ld.GaussianScore, p0, proc, expect="valid")
    if model is None:
        return
    t = data.draw(times(proc))
    x = _points(data, d)
    out = {}
    for name in ("score", "eps", "x0"):
        _, out[name] = rec.call(f"GaussianScore.{name}", getattr(model, name), x, t)
    rec.call("GaussianScore.affine", model.affine, t)
    rec.call("GaussianScore.score_affine", model.score_affine, t)
    rec.call("GaussianScore.logpdf", model.logpdf, x, t, allow_neg_inf=True)
    if out["score"] is not None and out["eps"] is not None:
        s = float(proc.sigma(t))
        # subnormal sigma (t ~ 1e-311) keeps fewer digits: allow the subnormal spacing
        atol = 1e-300 * (1.0 + float(np.abs(x).max()))
        rec.invariant("GaussianScore", np.allclose(out["eps"], -s * out["score"], rtol=1e-12, atol=atol),
                      "eps != -sigma score", f"{p0!r} {proc!r} t={t!r}")
    invalid(data, rec, "GaussianScore.score", model.score, (x, t), {}, (0, bad_arrays(np.shape(x))),
            (1, bad_scalars() + [("beyond T", 2 * float(proc.T) + 1, None)]))
    invalid(data, rec, "GaussianScore", ld.GaussianScore, (p0, proc), {}, (0, bad_objects()), (1, bad_objects()))


@target(cost=1.5)
def empirical_score(data, rec):
    d = data.draw(dims(4))
    proc = data.draw(processes())
    X = data.draw(training_sets(d))
    rec.context = f"X = {X!r}, process = {proc!r}"
    _, model = rec.call("EmpiricalScore", ld.EmpiricalScore, X, proc, expect="valid")
    if model is None:
        return
    t = data.draw(times(proc, positive=True))
    x = _points(data, d, 1e12)
    _, w = rec.call("EmpiricalScore.weights", model.weights, x, t, expect="valid")
    if w is not None:
        w2d = np.atleast_2d(w)
        rec.invariant("EmpiricalScore", np.all(w2d >= 0) and np.allclose(w2d.sum(axis=1), 1.0, atol=1e-12),
                      "weights not a probability vector", f"X={X!r} t={t!r} x={x!r}")
    _, x0 = rec.call("EmpiricalScore.x0", model.x0, x, t, expect="valid")
    if x0 is not None:
        lo, hi = X.min(axis=0), X.max(axis=0)
        span = 1e-12 * (np.abs(X).max() + 1e-300)
        rec.invariant("EmpiricalScore", np.all((np.atleast_2d(x0) >= lo - span) & (np.atleast_2d(x0) <= hi + span)),
                      "x0 outside the convex hull of X", f"X={X!r} t={t!r} x={x!r}")
    rec.call("EmpiricalScore.score", model.score, x, t)
    rec.call("EmpiricalScore.eps", model.eps, x, t)
    rec.call("EmpiricalScore.logpdf", model.logpdf, x, t, expect="valid", allow_neg_inf=True)
    rec.call("EmpiricalScore.score [t=0]", model.score, x, 0, expect="reject")
    invalid(data, rec, "EmpiricalScore.weights", model.weights, (x, t), {}, (0, bad_arrays(np.shape(x))))
    invalid(data, rec, "EmpiricalScore", ld.EmpiricalScore, (X, proc), {}, (0, bad_arrays(X.shape, free_shape=True)),
            (1, bad_objects()))


@target(cost=2.0)
def linear_denoiser(data, rec):
    d = data.draw(dims(4))
    proc = data.draw(processes())
    X = data.draw(training_sets(d))
    ridge, tau = data.draw(ridges()), data.draw(train_times())
    lr = data.draw(st.sampled_from([1.0, 1e-3, 1e3]))
    centred = data.draw(st.booleans())
    rec.context = f"LinearDenoiser.fit({X!r}, {proc!r}, ridge={ridge!r}, train_time={tau!r}, lr={lr!r}, centred={centred})"
    _, model = rec.call("LinearDenoiser.fit", ld.LinearDenoiser.fit, X, proc, ridge=ridge, train_time=tau, lr=lr,
                        centred=centred, expect="valid")
    if model is None:
        return
    t = data.draw(times(proc))
    x = _points(data, d)
    ctx = f"X={X!r} {proc!r} ridge={ridge!r} train_time={tau!r} lr={lr} centred={centred} t={t!r}"
    outcome, Wb = rec.call("LinearDenoiser.affine", model.affine, t)
    for name in ("score", "eps", "x0"):
        rec.call(f"LinearDenoiser.{name}", getattr(model, name), x, t)
    if model.spectral is not None and outcome == "valid":
        _, Wb_dense = rec.call("LinearDenoiser.to_dense().affine", model.to_dense().affine, t)
        if Wb_dense is not None:
            rec.invariant("LinearDenoiser", np.array_equal(Wb[0], Wb_dense[0]), "dense path differs", ctx)
    _, pop = rec.call("LinearDenoiser.population", ld.LinearDenoiser.population, data.draw(gaussians(d)), proc,
                      ridge=ridge, train_time=tau, expect="valid")
    if pop is not None:
        rec.call("LinearDenoiser.population.score", pop.score, x, t)
    if data.draw(st.integers(0, 3)) == 0:
        _, nd = rec.call("LinearDenoiser.fit_noise_draws", ld.LinearDenoiser.fit_noise_draws, X, proc,
                         data.draw(st.sampled_from([1, 2, 5])), rng=1, ridge=min(ridge, 1e6), expect="valid")
        if nd is not None:
            rec.call("LinearDenoiser.fit_noise_draws.affine", nd.affine, t)
    W0 = np.eye(d) * data.draw(floats_log(1e-6, 1e6))
    fw = ld.LinearDenoiser.from_weights(proc, lambda s, W=W0: (W, np.zeros(d)), d)
    rec.call("LinearDenoiser.from_weights.x0", fw.x0, x, t)
    invalid(data, rec, "LinearDenoiser.fit", ld.LinearDenoiser.fit, (X, proc), {"ridge": ridge, "train_time": tau},
            (0, bad_arrays(X.shape, free_shape=True)), (1, bad_objects()), ("ridge", bad_scalars()),
            ("train_time", bad_scalars()), ("lr", bad_scalars() + [("zero", 0.0, None)]))


# ---------------------------------------------------------------------------------------------------
# Losses
@target(cost=2.0)
def losses(data, rec):
    d = data.draw(dims(4))
    proc = data.draw(processes())
    p0 = data.draw(gaussians(d, lo=1e-6, hi=1e6))
    X = data.draw(training_sets(d, p0))
    ridge, tau = data.draw(ridges()), data.draw(train_times())
    centred = data.draw(st.booleans())
    rec.context = (f"p0 = Gaussian(mean={p0.mean!r}, eigenvalues={p0.eigenvalues!r}, basis={p0.eigenvectors!r}), "
                   f"model = LinearDenoiser.fit({X!r}, {proc!r}, ridge={ridge!r}, train_time={tau!r}, centred={centred})")
    _, model = rec.call("LinearDenoiser.fit", ld.LinearDenoiser.fit, X, proc, ridge=ridge, train_time=tau,
                        centred=centred, expect="valid")
    if model is None:
        return
    many = data.draw(st.booleans())
    t = np.array([data.draw(times(proc, positive=True)) for _ in range(3)]) if many else data.draw(times(proc, positive=True))
    ctx = f"X={X!r} p0={p0!r} {proc!r} ridge={ridge!r} train_time={tau!r} centred={centred} t={t!r}"
    _, train = rec.call("dsm_loss", ld.dsm_loss, model, X, t)
    _, test = rec.call("dsm_loss", ld.dsm_loss, model, p0, t)
    _, gap = rec.call("generalisation_gap", ld.generalisation_gap, model, X, p0, t)
    _, irr = rec.call("irreducible_loss", ld.irreducible_loss, p0, proc, t, expect="valid")
    _, sm = rec.call("score_matching_loss", ld.score_matching_loss, model, p0, t)
    for v in (train, test):
        if v is not None:
            rec.invariant("dsm_loss", np.all(np.asarray(v) >= 0), "negative loss", ctx)
    if irr is not None:
        rec.invariant("irreducible_loss", np.all((np.asarray(irr) >= 0) & (np.asarray(irr) <= d * (1 + 1e-12))),
                      "irreducible loss outside [0, d]", ctx)
    if train is not None and test is not None and gap is not None:
        scale = np.maximum(np.abs(test), np.abs(train))
        rec.invariant("generalisation_gap", np.all(np.abs((test - train) - gap) <= 1e-6 * scale + 1e-9),
                      f"gap {gap} != test - train {test - train}", ctx)
    if sm is not None:
        rec.invariant("score_matching_loss", np.all(np.asarray(sm) >= 0), "negative Fisher loss", ctx)
    invalid(data, rec, "dsm_loss", ld.dsm_loss, (model, X, t), {}, (0, bad_objects()),
            (1, bad_arrays(X.shape) + [("no rows", np.zeros((0, d)), None)]),
            (2, bad_scalars(vectorised=True) + [("beyond T", 2 * float(proc.T) + 1, None)]))


# ---------------------------------------------------------------------------------------------------
# Expectations over training sets
@target(cost=0.5)
def expected_kl(data, rec):
    d = data.draw(st.sampled_from([1, 2, 3, 10, 100]) | st.integers(1, 50))
    N = data.draw(st.sampled_from([1, 2, d - 1, d, d + 1, d + 2, d + 3, 10**9, 10**18, 2**63, 2**70]) | st.integers(1, 10**6))
    N = max(N, 1)
    direction = data.draw(st.sampled_from(ensembles.DIRECTIONS))
    mean = data.draw(st.sampled_from(ensembles.MEANS))
    _, v = rec.call("expected_kl", ld.expected_kl, d, N, direction, mean, expect="valid")
    if v is not None:
        rec.invariant("expected_kl", v > 0, f"E KL = {v} <= 0", f"d={d} N={N} {direction} {mean}")
    _, s = rec.call("expected_kl_series", ld.expected_kl_series, d, N, direction, mean, data.draw(st.sampled_from([1, 2])),
                    expect="valid")
    if v is not None and s is not None and not math.isinf(v) and N > 1000 * d * d:
        rec.invariant("expected_kl", abs(v - s) <= 1e-2 * v, "series far from the exact value at large N", f"d={d} N={N}")
    rec.call("expected_log_det", ensembles.expected_log_det, d, N - 1, N, expect="valid", allow_neg_inf=True)
    invalid(data, rec, "expected_kl", ld.expected_kl, (d, N, direction, mean), {},
            (0, bad_scalars() + [("zero", 0, None), ("float", 2.5, None)]), (1, bad_scalars() + [("zero", 0, None)]),
            (2, [("unknown", "both", None), ("None", None, None)]), (3, [("unknown", "none", None), ("int", 1, None)]))


@target(cost=8.0)
def reproducibility(data, rec):
    """Same seed, same bits: serial and thread executors (process pools: tests/fuzz/test_fuzz.py)."""
    d = data.draw(st.integers(1, 3))
    p0 = data.draw(gaussians(d, lo=1e-3, hi=1e3, dense=False))
    tasks = [(p0, data.draw(st.integers(1, 2 * d + 2)))]
    repeats = data.draw(st.integers(1, 3))
    seed = data.draw(st.integers(0, 2**63))
    _, serial = rec.call("monte_carlo_over_training_sets", ensembles.monte_carlo_over_training_sets,
                         ensembles.fitted_gaussian_kl, tasks, repeats, seed, expect="valid")
    with ThreadPoolExecutor(2) as pool:
        _, threaded = rec.call("monte_carlo_over_training_sets [threads]", ensembles.monte_carlo_over_training_sets,
                               ensembles.fitted_gaussian_kl, tasks, repeats, seed, executor=pool, expect="valid")
    if serial is not None and threaded is not None:
        same = all(np.array_equal(np.float64(a[k]), np.float64(b[k])) for ra, rb in zip(serial, threaded)
                   for a, b in zip(ra, rb) for k in a)
        rec.invariant("monte_carlo_over_training_sets", same, "thread executor changed the bits", f"seed={seed}")
    invalid(data, rec, "monte_carlo_over_training_sets", ensembles.monte_carlo_over_training_sets,
            (ensembles.fitted_gaussian_kl, tasks, repeats, seed), {}, (2, bad_scalars() + [("zero", 0, None)]))


# ---------------------------------------------------------------------------------------------------
# Samplers (owned by the samplers helper: fuzzed as they are)
@target(cost=3.0)
def samplers(data, rec):
    d = data.draw(dims(3))
    proc = data.draw(processes())
    names = ["ddpm", "ddim", "euler_ve", "euler_ancestral", "dpmpp_2m"] if proc.discrete else [
        s for s in ld.SAMPLERS if s != "ddpm"]
    name = data.draw(st.sampled_from(names))
    kwargs = {}
    if proc.discrete:
        steps = data.draw(st.sampled_from([None, 1, 2, proc.T]))
    else:
        steps = None if name in ("sde", "ode") else data.draw(st.sampled_from([2, 3, 10]))
        kwargs["t_min"] = data.draw(st.sampled_from([0.0, 1e-9 * float(proc.T), 0.5 * float(proc.T)]))
    p0 = data.draw(gaussians(d, lo=1e-6, hi=1e6))
    kind = data.draw(st.sampled_from(["gaussian", "fit", "ridge"]))
    if kind == "gaussian":
        model = ld.GaussianScore(p0, proc)
    else:
        X = data.draw(training_sets(d, p0))
        model = ld.LinearDenoiser.fit(X, proc, ridge=0.0 if kind == "fit" else data.draw(ridges()))
    init = data.draw(st.sampled_from(["standard", "exact"]))
    rec.context = f"p0 eigenvalues {p0.eigenvalues!r}, model {kind}, process {proc!r}"
    rec.call("build_sampler", ld.build_sampler, proc, name, steps, **kwargs)
    rec.call("sampler_table", ld.sampler_table, proc, name, steps, **kwargs)
    _, law = rec.call("sampling_law", ld.sampling_law, model, proc, name, steps, init=init, **kwargs)
    if law is not None and data.draw(st.integers(0, 3)) == 0 and model.spectral is not None:
        _, dense = rec.call("sampling_law [dense path]", ld.sampling_law, model, proc, name, steps, init=init,
                            path="dense", **kwargs)
        if dense is not None and not near_cutoff(law, dense) and condition(law) < 1e8:
            # compare the laws (clipped eigendecompositions) on the problem's scale (the start law is ~1)
            tol = 1e-6 * max(1.0, float(np.abs(law.cov).max()), float(np.abs(law.mean).max()))
            rec.invariant("sampling_law", np.allclose(_law_cov(law), _law_cov(dense), rtol=1e-6, atol=tol)
                          and np.allclose(law.mean, dense.mean, rtol=1e-6, atol=tol),
                          "spectral and dense paths differ", f"{model!r} {name} steps={steps} {kwargs}")
    if data.draw(st.integers(0, 3)) == 0:
        rec.call("mc.sample", mc.sample, model, proc, name, 3, 0, steps, init=init, progress=False, sde_steps=20, **kwargs)
    choices = [(3, bad_scalars() + [("zero", 0, None), ("float", 2.5, None)]),
               (2, [("unknown", "euler_maybe", None), ("None", None, None)])]
    if not proc.discrete:
        choices.append(("t_min", bad_scalars() + [("T", float(proc.T), None)]))
    invalid(data, rec, "sampling_law", ld.sampling_law, (model, proc, name, steps), kwargs, *choices)


# ---------------------------------------------------------------------------------------------------
# Monte Carlo twins
@target(cost=2.0)
def monte_carlo(data, rec):
    d = data.draw(dims(3))
    p = data.draw(gaussians(d, lo=1e-6, hi=1e6))
    q = data.draw(gaussians(d, lo=1e-6, hi=1e6))
    n = data.draw(st.sampled_from([1, 2, 3, 5, 50]))
    seed = data.draw(st.integers(0, 100))
    samples = p.sample(n, seed)
    rec.call("mc.moment_z_scores", mc.moment_z_scores, samples, p)
    rec.call("mc.moment_p_values", mc.moment_p_values, samples, p)
    rec.call("mc.max_abs_z_threshold", mc.max_abs_z_threshold, data.draw(st.integers(1, 10**6)),
             data.draw(floats_log(1e-12, 0.5)), data.draw(st.sampled_from([None, 1, 2, 30])), expect="valid")
    rec.call("mc.kl", mc.kl, p, q, n, seed)
    proc = data.draw(processes())
    model = ld.GaussianScore(p, proc)
    t = data.draw(times(proc, positive=True))
    rec.call("mc.dsm_loss", mc.dsm_loss, model, q, t, n, seed)
    rec.call("mc.fit_linear", mc.fit_linear, p, proc, t, max(n, 2), seed)
    rec.call("mc.score_finite_difference", mc.score_finite_difference, model, samples, t)
    rec.call("mc.batch_means", mc.batch_means, [samples[0], samples[-1]])
    rec.call("mc.gradient_descent", mc.gradient_descent, samples, proc, t, data.draw(floats_log(1e-3, 10.0)),
             n_iter=data.draw(st.sampled_from([1, 10])))
    invalid(data, rec, "mc.kl", mc.kl, (p, q, n, seed), {}, (0, bad_objects()), (2, bad_scalars() + [("zero", 0, None)]))
    invalid(data, rec, "mc.moment_z_scores", mc.moment_z_scores, (samples, p), {}, (0, bad_arrays(samples.shape)))


# ---------------------------------------------------------------------------------------------------
# Memorisation, stability, regularisation, RMT, SGD, spectra, transition, tables, oracle
@target(cost=3.0)
def memorisation_(data, rec):
    d = data.draw(dims(3))
    X = data.draw(training_sets(d))
    samples = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal((data.draw(st.integers(1, 4)), d))
    rec.call("memorisation.nearest_ratio", memorisation.nearest_ratio, samples, X)
    rec.call("memorisation.memorisation_fraction", memorisation.memorisation_fraction, samples, X,
             data.draw(st.sampled_from([1 / 3, 1e-12, 1.0])))
    proc = data.draw(processes())
    eig = data.draw(spectra_st(d))
    N = data.draw(st.integers(1, 3 * d + 3))
    rec.call("memorisation.collapse_time", memorisation.collapse_time, eig, N, proc)
    rec.call("memorisation.speciation_time", memorisation.speciation_time, eig, proc)
    if data.draw(st.integers(0, 5)) == 0 and not proc.discrete:
        p0 = data.draw(gaussians(d, lo=1e-3, hi=1e3))
        rec.call("memorisation.memorisation_table", memorisation.memorisation_table, p0, max(N, 2), proc,
                 [0.5 * float(proc.T)], steps=3, n=4, rng=0, progress=False)
    invalid(data, rec, "memorisation.nearest_ratio", memorisation.nearest_ratio, (samples, X), {}, (1, bad_arrays(X.shape)))
    invalid(data, rec, "memorisation.collapse_time", memorisation.collapse_time, (eig, N, proc), {},
            (0, bad_arrays(eig.shape, free_shape=True)))


@target(cost=6.0)
def stability_(data, rec):
    d = data.draw(dims(3))
    proc = data.draw(processes())
    p0 = data.draw(gaussians(d, lo=1e-4, hi=1e4))
    X = data.draw(training_sets(d, p0))
    t = data.draw(times(proc, positive=True))
    ridge = data.draw(st.sampled_from([0.0, 1e-3, 1.0]))
    z = p0.sample(1, 0)[0]
    i = data.draw(st.integers(0, X.shape[0] - 1))
    rec.call("stability.replace_one", stability.replace_one, X, i, z)
    rec.call("stability.replace_one_scores", stability.replace_one_scores, X, i, z, proc, t, ridge)
    rec.call("stability.stability_terms", stability.stability_terms, X, i, z, proc, t, p0, ridge)
    rec.call("stability.large_n_gap", stability.large_n_gap, p0, proc, t, max(X.shape[0], 2))
    if data.draw(st.integers(0, 3)) == 0:
        rec.call("stability.score_stability", stability.score_stability, X, proc, p0, times=[t], ridge=ridge, draws=2, rng=0)
        rec.call("stability.stability_draws", stability.stability_draws, p0, max(X.shape[0], 2), proc, [t], ridge,
                 repeats=2, draws=1, seed=0)
    if data.draw(st.integers(0, 5)) == 0 and not proc.discrete:
        model = ld.LinearDenoiser.fit(X, proc, ridge=ridge)
        rec.call("stability.girsanov_bound", stability.girsanov_bound, model, p0, proc, t, rtol=1e-6)
    invalid(data, rec, "stability.replace_one", stability.replace_one, (X, i, z), {},
            (1, bad_scalars() + [("out of range", X.shape[0] + 5, None)]), (2, bad_arrays((d,))))


@target(cost=30.0)
def sweeps(data, rec):
    """The table-producing sweeps, on tiny problems."""
    d = data.draw(st.integers(1, 3))
    proc = ld.DDPM.linear(data.draw(st.sampled_from([2, 5, 10])))
    p0 = data.draw(gaussians(d, lo=1e-3, hi=1e3, dense=False))
    which = data.draw(st.sampled_from(["transition", "regularisation", "stability", "decay", "kl_bound", "sgd", "sampler_reg"]))
    if which == "transition":
        _, res = rec.call("transition.transition_sweep", transition.transition_sweep, d=d,
                          ratios=tuple(data.draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=1, max_size=2, unique=True))),
                          spectrum=p0.eigenvalues if np.all(p0.eigenvalues > 0) else None, process=proc, repeats=2,
                          seed=1, progress=False)
        if res is not None:
            rec.call("transition.transition_table", transition.transition_table, res)
        rec.call("transition.transition_sweep [invalid ratios]", transition.transition_sweep, d=d, ratios=(-1.0,),
                 process=proc, repeats=2, progress=False, expect="reject")
    elif which == "regularisation":
        N = data.draw(st.integers(1, 2 * d + 2))
        rec.call("regularisation.evaluate", regularisation.evaluate, p0, N, proc, ridge=data.draw(ridges()), repeats=1)
        rec.call("regularisation.regularisation_table", regularisation.regularisation_table, p0, N, proc,
                 ridges=(0.0, 0.1), train_times=(1.0,), repeats=1)
        if data.draw(st.integers(0, 3)) == 0:
            rec.call("regularisation.best_ridge", regularisation.best_ridge, p0, N, proc, repeats=1)
    elif which == "decay":
        rec.call("regularisation.decay_table", regularisation.decay_table, d, data.draw(st.integers(1, 2 * d + 2)), proc,
                 exponents=(0.0, 1.0), repeats=1)
    elif which == "stability":
        rec.call("stability.stability_table", stability.stability_table, p0, [max(2, d), 2 * d + 1], proc, [1],
                 repeats=2, draws=1, progress=False)
        rec.call("stability.integrated_table", stability.integrated_table, p0, [max(2, d)], ld.OU(1.0), [0.1],
                 repeats=2, draws=1, points=5, progress=False)
    elif which == "kl_bound":
        rec.call("stability.kl_bound_table", stability.kl_bound_table, p0, [max(2, d)], ld.OU(1.0), [0.1], repeats=1)
    elif which == "sampler_reg":
        rec.call("stability.sampler_regularisation_table", stability.sampler_regularisation_table, p0, max(2, d),
                 ld.OU(1.0), [2, 3], n=5, rng=0, progress=False)
    else:
        X = p0.sample(data.draw(st.integers(2, 4)), 0)
        cfg = sgd.SGDConfig(lr=data.draw(st.sampled_from([0.05, 1e-6, 1.5])), batch=1,
                            clip=data.draw(st.sampled_from([None, 1.0])))
        a = data.draw(st.sampled_from([0.5, 1e-6, 1.0]))
        s = math.sqrt(1 - a * a) if a < 1 else 1e-3
        rec.call("sgd.exact_moments", sgd.exact_moments, X, a, s, cfg, 5, record=2)
        rec.call("sgd.simulate", sgd.simulate, X, a, s, cfg, 5, runs=3, rng=0, record=2)
        rec.call("sgd.coupled_distance", sgd.coupled_distance, X, 0, X[0] + 1, a, s, cfg, 5, runs=2, rng=0, record=2)
        rec.call("sgd.SGDConfig [invalid]", sgd.SGDConfig, lr=data.draw(st.sampled_from([-1.0, float("nan"), 0.0])),
                 expect="reject")


@target(cost=2.0)
def rmt_and_spectra(data, rec):
    q = data.draw(floats_log(1e-3, 1e3))
    scale = data.draw(floats_log(1e-6, 1e6))
    _, mp_law = rec.call("rmt.MarchenkoPastur", rmt.MarchenkoPastur, q, scale, expect="valid")
    if mp_law is not None:
        rec.call("rmt.MarchenkoPastur.support", lambda: mp_law.support, expect="valid")
        rec.call("rmt.MarchenkoPastur.density", mp_law.density, np.linspace(0, 5 * scale, 7), expect="valid")
        rec.call("rmt.MarchenkoPastur.expect", mp_law.expect, np.log1p)
    eig = data.draw(spectra_st(data.draw(dims()), lo=1e-6, hi=1e6, zeros=False))
    if data.draw(st.integers(0, 3)) == 0:
        _, sil = rec.call("rmt.Silverstein", rmt.Silverstein, eig, q, grid=200)
        if sil is not None:
            rec.call("rmt.Silverstein.stieltjes", sil.stieltjes, np.array([-1.0, 1.0 + 1e-3j]))
            rec.call("rmt.Silverstein.expect", sil.expect, np.log1p)
    d = data.draw(st.integers(1, 50))
    rec.call("spectra.power_law", spectra.power_law, d, data.draw(st.floats(0, 5)),
             data.draw(st.sampled_from([None, 1.0, 1e6])), expect="valid")
    rec.call("spectra.random_basis", spectra.random_basis, d, data.draw(st.integers(0, 9)), expect="valid")
    invalid(data, rec, "rmt.MarchenkoPastur", rmt.MarchenkoPastur, (q, scale), {},
            (0, bad_scalars() + [("zero", 0.0, None)]), (1, bad_scalars() + [("zero", 0.0, None)]))
    invalid(data, rec, "spectra.power_law", spectra.power_law, (d,), {}, (0, bad_scalars() + [("zero", 0, None)]))


@target(cost=3.0)
def tables_and_oracle(data, rec):
    values = data.draw(st.lists(st.sampled_from([0.0, 1e-300, 1e300, -2.5, ld.Infinite("why"), 3, "text", (1.0, 0.1), None]),
                                min_size=2, max_size=2))
    _, table = rec.call("Table", ld.Table, "caption", ["a", "b"], [values], expect="valid")
    if table is not None:
        for fmt in ld.tables.FORMATS:
            rec.call(f"Table.render[{fmt}]", table.render, fmt, expect="valid")
    d = data.draw(dims(3))
    A = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal((d, d)) * data.draw(floats_log(1e-6, 1e6))
    b = np.ones(d)
    rec.call("testing.probe_affine", probe_affine, lambda x, z=None: x @ A.T + b, d, expect="valid")
    if data.draw(st.integers(0, 3)) == 0:
        proc = ld.DDPM.linear(data.draw(st.sampled_from([2, 5, 20])))
        p0 = data.draw(gaussians(d, lo=1e-3, hi=1e3))
        kind = data.draw(st.sampled_from(["ddpm", "ddim"]))
        steps = data.draw(st.sampled_from([None, 1, 2]))
        model = ld.GaussianScore(p0, proc)
        # an independent, correct implementation (tests/reference_sampler.py) must pass
        _, res = rec.call("testing.check_sampler", check_sampler, make_loop(proc.betas, kind, steps), model, kind, steps,
                          expect="valid")
        if res is not None:
            rec.invariant("testing.check_sampler", bool(res.passed), f"a correct {kind} loop failed: {res.message}",
                          f"{p0!r} {proc!r} steps={steps}")
