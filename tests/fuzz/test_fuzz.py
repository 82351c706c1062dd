"""Fuzz every public entry point with valid-but-extreme and invalid inputs (issue 11).

Each call is classified (``fuzzlib``): a valid result, a documented ``Infinite``, a clean rejection, or a
defect (NaN or plain inf, foreign exception, floating-point warning, invalid input accepted, broken
invariant: KL >= 0 and KL >= -2 log BC, W2 triangle inequality, symmetry of W2 and Hellinger, PSD laws,
spectral = dense path, convex empirical weights, loss identities, same bits for any executor).  Zero
defects are required in both profiles: ``ci`` (default run, seconds) and ``deep`` (``-m slow``, >= 100,000
inputs, prints the count table).
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lindiff as ld
from lindiff import ensembles
import profiles  # noqa: F401 - registers the "ci" and "deep" hypothesis profiles
from fuzzlib import Defect, Recorder
from targets import COST, TARGETS


def run_target(name: str, rec: Recorder, examples: int, profile: str) -> None:
    rec.target = name
    fn = TARGETS[name]

    @settings(settings.get_profile(profile), max_examples=examples)
    @given(st.data())
    def body(data):
        rec.context = ""
        fn(data, rec)
        rec.examples[name] += 1  # counted when complete (hypothesis discards overrun draws)

    body()


def ci_examples(name: str) -> int:
    return max(2, round(settings.get_profile("ci").max_examples / COST[name]))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_ci(name):
    rec = Recorder()
    run_target(name, rec, ci_examples(name), "ci")
    assert not rec.defects


def test_process_pool_gives_the_serial_bits():
    """Same seed, same bits with a process pool (values pickle; issue 10's fix)."""
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(4))
    tasks = [(p0, 3), (p0, 9)]
    serial = ensembles.monte_carlo_over_training_sets(ensembles.fitted_gaussian_kl, tasks, 3, seed=7)
    with ProcessPoolExecutor(2) as pool:
        pooled = ensembles.monte_carlo_over_training_sets(ensembles.fitted_gaussian_kl, tasks, 3, seed=7, executor=pool)
    flat = lambda res: [float(r[k]) for row in res for r in row for k in sorted(r)]  # noqa: E731
    assert np.array_equal(flat(serial), flat(pooled))


@pytest.mark.slow
def test_fuzz_deep(capsys):
    """>= 100,000 generated inputs; prints the count table and every defect with its reproducer."""
    base = settings.get_profile("deep").max_examples
    rec = Recorder()
    failures = []
    start = time.perf_counter()
    for name in sorted(TARGETS):
        try:
            run_target(name, rec, max(20, round(base / COST[name])), "deep")
        except Exception as exc:  # noqa: BLE001 - a Defect (or a group of them), shrunk; go on with the others
            failures.append(f"[{name}] {type(exc).__name__}: {exc}")
    inputs = sum(rec.examples.values())
    with capsys.disabled():
        print(f"\nfuzz (deep): {inputs} generated inputs, {sum(rec.counts.values())} calls, "
              f"{time.perf_counter() - start:.0f} s\n{rec.table()}")
        print(rec.known_report())
        for f in failures:
            print(f)
        for record in rec.defects:
            print(f"defect [{record.target}] {record.entry}: {record.kind}: {record.detail[:200]}\n    {record.call[:600]}")
    assert inputs >= 100_000
    assert not failures


def _boundary_cases():
    """(kind, entry point, call with the odd value, call with the equivalent float/int value)."""
    P0 = ld.Gaussian.from_spectrum([1.0, 0.5])
    VP = ld.VP.linear()
    DDPM = ld.DDPM.linear(20)
    model = ld.GaussianScore(P0, VP)
    discrete = ld.GaussianScore(P0, DDPM)
    X = P0.sample(5, 0)
    cases = []
    for kind, s_t, s_n, s_f in (("numeric string", "0.5", "10", "0.1"), ("bool scalar", True, True, True)):
        t_ok, n_ok, f_ok = (0.5, 10, 0.1) if kind == "numeric string" else (1.0, 1, 1.0)
        cases += [
            (kind, "GaussianScore.score(t=)", lambda v=s_t: model.score([0.0, 0.0], v), lambda t=t_ok: model.score([0.0, 0.0], t)),
            (kind, "VP.alpha(t)", lambda v=s_t: VP.alpha(v), lambda t=t_ok: VP.alpha(t)),
            (kind, "dsm_loss(t=)", lambda v=s_t: ld.dsm_loss(model, P0, v), lambda t=t_ok: ld.dsm_loss(model, P0, t)),
            (kind, "expected_kl(d=)", lambda v=s_n: ld.expected_kl(v, 40), lambda n=n_ok: ld.expected_kl(n, 40)),
            (kind, "DDPM.linear(T=)", lambda v=s_n: ld.DDPM.linear(v).T, lambda n=n_ok: ld.DDPM.linear(n).T),
            (kind, "sampling_law(steps=)", lambda v=s_n: ld.sampling_law(discrete, DDPM, "ddim", v).mean,
             lambda n=n_ok: ld.sampling_law(discrete, DDPM, "ddim", n).mean),
            (kind, "LinearDenoiser.fit(ridge=)", lambda v=s_f: ld.LinearDenoiser.fit(X, VP, ridge=v).affine(0.5)[0],
             lambda f=f_ok: ld.LinearDenoiser.fit(X, VP, ridge=f).affine(0.5)[0]),
            (kind, "VP.linear(beta_min=)", lambda v=s_f: ld.VP.linear(v).beta_min, lambda f=f_ok: ld.VP.linear(f).beta_min),
            (kind, "Gaussian.sample(n=)", lambda v=s_n: P0.sample(v, 0).shape, lambda n=n_ok: P0.sample(n, 0).shape),
        ]
    ones = np.ones((3, 2))
    for kind, odd in (("bool array", ones.astype(bool)), ("numeric-string array", ones.astype(str))):
        cases += [
            (kind, "Gaussian.fit(X)", lambda v=odd: ld.Gaussian.fit(v).mean, lambda: ld.Gaussian.fit(ones).mean),
            (kind, "Gaussian(mean)", lambda v=odd: ld.Gaussian(v[0], np.eye(2)).mean, lambda: ld.Gaussian(ones[0], np.eye(2)).mean),
            (kind, "GaussianScore.score(x)", lambda v=odd: model.score(v, 0.5), lambda: model.score(ones, 0.5)),
            (kind, "EmpiricalScore(X)", lambda v=odd: ld.EmpiricalScore(v, VP).x0([0.0, 0.0], 0.5),
             lambda: ld.EmpiricalScore(ones, VP).x0([0.0, 0.0], 0.5)),
            (kind, "LinearDenoiser.fit(X)", lambda v=odd: ld.LinearDenoiser.fit(v, VP).affine(0.5)[1],
             lambda: ld.LinearDenoiser.fit(ones, VP).affine(0.5)[1]),
            (kind, "dsm_loss(data=X)", lambda v=odd: ld.dsm_loss(model, v, 0.5), lambda: ld.dsm_loss(model, ones, 0.5)),
            (kind, "Gaussian.from_spectrum", lambda v=odd: ld.Gaussian.from_spectrum(v[0]).eigenvalues,
             lambda: ld.Gaussian.from_spectrum(ones[0]).eigenvalues),
        ]
    return cases


def test_bool_and_numeric_string_inputs_follow_one_rule():
    """Issue 10 ("Bad input at the Python boundary"): per kind of odd input, every entry point accepts it
    (with the result of the equivalent number) or every entry point rejects it with a ValueError/TypeError."""
    by_kind: dict = {}
    for kind, entry, odd, plain in _boundary_cases():
        try:
            value = odd()
        except (ValueError, TypeError):
            by_kind.setdefault(kind, {})[entry] = "rejected"
            continue
        same = np.array_equal(np.asarray(value, dtype=float), np.asarray(plain(), dtype=float))
        by_kind.setdefault(kind, {})[entry] = "accepted" if same else "accepted with a different result"
    mixed = {kind: outcomes for kind, outcomes in by_kind.items() if len(set(outcomes.values())) > 1
             or "accepted with a different result" in outcomes.values()}
    assert not mixed, "\n".join(f"{kind}: {outcomes}" for kind, outcomes in mixed.items())
