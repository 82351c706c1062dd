"""Claim 6: the score-stability bound (reconstructed Cauchy–Schwarz form) is above the exact expected gap.

The per-time and time-integrated tables give E gap two ways (exact per set, replace-one) and the bound
sqrt(E eps2_own) sqrt(E b2), each with its standard error; the headline counts the rows whose 95%
interval for bound/gap lies above 1 and reports any that are not resolved.  Also: denoising
regularisation (integrated gap vs eps), the Girsanov KL bound vs the exact KL of the sampler's law, and
optimisation regularisation (coupled SGD runs).  Saves claim6_stability.png.
"""

import numpy as np

import lindiff as ld
from lindiff import sgd
from lindiff.stability import integrated_table, kl_bound_table, stability_table

from _common import parse, pyplot


def headline(*tables) -> str:
    """The claim as the tables support it: how many bound/gap rows are resolved above 1."""
    cells = [c for t in tables for c in t.column("bound/gap")]
    resolved = [c for c in cells if isinstance(c, tuple)]
    if len(resolved) == len(cells):
        lo = min(r - 1.96 * se for r, se in resolved)
        return (f"bound >= E gap in all {len(cells)} rows: every 95% interval of bound/gap lies above 1 "
                f"(lowest lower limit {lo:.3f}; ratios {min(r for r, _ in resolved):.3g} to {max(r for r, _ in resolved):.3g})")
    return (f"bound >= E gap resolved in {len(resolved)} of {len(cells)} rows; {len(cells) - len(resolved)} not resolved "
            "(95% interval reaches below 1: more training sets needed)")


def main():
    args = parse(__doc__.splitlines()[0])
    d = 3 if args.small else 5
    process = ld.OU(3.0)
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0))
    Ns = (2, 8, 32) if args.small else (3, 5, 10, 40, 160, 640)
    repeats = 16 if args.small else 48
    t1 = stability_table(p0, Ns, process, (0.02, 0.1, 0.5), repeats=repeats, draws=4, seed=args.seed, progress=False)
    print(t1.render(args.format))
    print()
    t2 = integrated_table(p0, Ns[:1] + Ns[-1:], process, (1e-3, 1e-2, 1e-1), repeats=repeats, draws=2,
                          points=20 if args.small else 40, seed=args.seed, progress=False)
    print(t2.render(args.format))
    print(f"\n{headline(t1, t2)}\n")
    print(kl_bound_table(p0, Ns[-2:], process, (0.01, 0.3), repeats=2 if args.small else 5, seed=args.seed).render(args.format))
    print()
    rng = np.random.default_rng(args.seed)
    X = p0.sample(8, rng)
    z = p0.sample(1, rng)[0]
    a, s = float(process.alpha(0.3)), float(process.sigma(0.3))
    configs = {"gradient descent (no noise)": None,
               "SGD B=1 P=1": sgd.SGDConfig(0.02, 1, 1), "SGD B=1 P=8": sgd.SGDConfig(0.02, 1, 8),
               "SGD B=1 P=1, weight decay 0.5": sgd.SGDConfig(0.02, 1, 1, 0.5)}
    print(sgd.sgd_stability_table(X, 0, z, a, s, configs, iterations=200 if args.small else 5000,
                                  runs=5 if args.small else 40, rng=rng).render(args.format))
    if pyplot():
        from lindiff.plots import plot_stability

        path = plot_stability(t1, t2, f"{args.out}/claim6_stability.png")
        print(f"figure: {path}")


if __name__ == "__main__":
    main()
