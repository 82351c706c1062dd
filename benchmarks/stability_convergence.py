"""Benchmark: does the bound/gap ratio of the stability tables converge to >= 1? (issue 14)

Reruns the N = 160 rows of ``lindiff stability`` with the estimator design of the first version
(per training set: ``draws`` pairs (i, z') with a random replaced index i; E gap = mean of the exact
per-set gap; bound = sqrt(mean eps2_own) sqrt(mean b2)) at the original sizes times ``--scale``, and
prints every mean with its standard error (delta method for the bound and the ratio).  With
``--scale 100`` (a few minutes of CPU) the ratios settle well above 1: the printed ratios below 1 came
from Monte Carlo error (eps2_own is right-skewed, so small samples underestimate it, and the exact
per-set gap has relative spread ~ sqrt(N) at large N), not from a bug.  The last block times the
estimator the tables use now (all i averaged exactly, replace-one route on the same draws).

Run: ``python benchmarks/stability_convergence.py [--scale 100] [--N 160]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lindiff as ld
from lindiff.ensembles import monte_carlo_over_training_sets
from lindiff.stability import _pair_terms, _shared_grid, bound_estimate, large_n_gap, stability_draws


def _old_design_set(p0, N, process, times, draws, *, rng):
    """The first version's per-set estimate: random (i, z') pairs, exact gap of the set."""
    X = p0.sample(N, rng)
    g = ld.Gaussian.fit(X)
    idx, Z = rng.integers(N, size=draws), p0.sample(draws, rng)
    model = ld.LinearDenoiser.fit(X, process)
    t = np.asarray(times)
    out = {"gap": np.asarray(ld.generalisation_gap(model, X, p0, t)) / np.asarray(process.sigma(t)) ** 2}
    rows = {k: np.zeros(t.size) for k in ("eps2_own", "b2", "delta_loss")}
    for j, tt in enumerate(t):
        a, s = float(process.alpha(tt)), float(process.sigma(tt))
        K = (g.eigenvectors / (a * a * g.eigenvalues + s * s)) @ g.eigenvectors.T
        vals = _pair_terms(X, g, K, idx, Z, a, s, process.marginal(p0, tt))
        for k in rows:
            rows[k][j] = vals[k].mean()
    return {**out, **rows}


def _run(p0, N, process, times, repeats, draws, seed):
    runs = monte_carlo_over_training_sets(_old_design_set, [(p0, N, process, tuple(times), draws)], repeats, seed,
                                          progress=False)[0]
    return {k: np.stack([r[k] for r in runs]) for k in runs[0]}


def _line(label, g, o, b, dl):
    est = bound_estimate(g, o, b)
    m = lambda v: f"{v.mean():.4g} ± {v.std(ddof=1) / np.sqrt(v.size):.2g}"  # noqa: E731
    print(f"  {label:>10}  gap {m(g):>20}  replace-one {m(dl):>20}  eps2_own {m(o):>22}  "
          f"bound {est.bound[0]:.4g} ± {est.bound[1]:.2g}  ratio {est.ratio[0]:.3f} ± {est.ratio[1]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100, help="multiple of the original draws (default 100)")
    parser.add_argument("--N", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(5, 1.0))
    process = ld.OU(3.0)
    N = args.N
    for scale in (1, args.scale):
        start = time.perf_counter()
        times = (0.05, 0.3, 1.0)
        res = _run(p0, N, process, times, 20 * scale, 4, args.seed)
        print(f"per-time table, N = {N}: {20 * scale} training sets x 4 random (i, z') pairs (first version x {scale})")
        for j, t in enumerate(times):
            _line(f"t = {t:g}", res["gap"][:, j], res["eps2_own"][:, j], res["b2"][:, j], res["delta_loss"][:, j])
            print(f"  {'':>10}  2G/N = {large_n_gap(p0, process, t, N):.4g}")
        eps_values = (1e-3, 1e-2, 1e-1)
        nodes, W = _shared_grid(process, eps_values, 40)
        res = _run(p0, N, process, nodes, 5 * scale, 2, args.seed + 1)
        print(f"integrated table, N = {N}: {5 * scale} training sets x 2 random (i, z') pairs (first version x {scale})")
        for e, w in zip(eps_values, W):
            _line(f"eps = {e:g}", res["gap"] @ w, res["eps2_own"] @ w, res["b2"] @ w, res["delta_loss"] @ w)
        print(f"  [{time.perf_counter() - start:.1f} s]\n")
    start = time.perf_counter()
    res = stability_draws(p0, N, process, (0.05, 0.3, 1.0), repeats=48, draws=4, seed=args.seed, progress=False)
    print(f"current estimator (48 sets x 4 z', all i, replace-one on the same draws): {time.perf_counter() - start:.2f} s")
    for j, t in enumerate((0.05, 0.3, 1.0)):
        _line(f"t = {t:g}", res["delta_loss"][:, j], res["eps2_own"][:, j], res["b2"][:, j], res["delta_loss"][:, j])


if __name__ == "__main__":
    main()
