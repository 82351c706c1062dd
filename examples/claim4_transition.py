"""Claim 4 (docs/theory.md#claims-reproduced-by-the-examples): the transition at N ≍ d.

KL(data || model) falls by orders of magnitude between N = 0.9 d and 1.1 d; rank of S_hat = min(N - 1, d);
the train–test gap explodes for N < d as t -> 0.  Prints the transition table and the gap against t;
saves claim4_transition.png.
"""

import numpy as np

import lindiff as ld

from _common import parse, pyplot, save


def main():
    args = parse(__doc__.splitlines()[0])
    d = 12 if args.small else 64
    repeats = 3 if args.small else 20
    result = ld.transition_sweep(d=d, ratios=(0.5, 0.9, 1.1, 2.0, 10.0), repeats=repeats, seed=args.seed, progress=False)
    print(ld.transition_table(result).render(args.format))
    law = [v[0] for v in result.summary("law_d2m")]
    print(f"\nKL(data || law)/d drops by a factor {law[1] / law[2]:.3g} between N = 0.9 d and N = 1.1 d")
    process = ld.DDPM.linear(1000)
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0))
    rng = np.random.default_rng(args.seed)
    times = np.unique(np.geomspace(1, 1000, 40).round())
    rows, gaps = [], {}
    for ratio in (0.5, 0.9, 1.1, 2.0):
        N = int(round(ratio * d))
        X = p0.sample(N, rng)
        rank = ld.Gaussian.fit(X).rank
        model = ld.LinearDenoiser.fit(X, process)
        gap = ld.generalisation_gap(model, X, p0, times) / d
        gaps[ratio] = gap
        rows.append([ratio, N, rank, min(N - 1, d), gap[0], gap[len(times) // 2], gap[-1]])
    cols = [ld.Column("N/d"), ld.Column("N"), ld.Column("rank S_hat"), ld.Column("min(N-1, d)"),
            ld.Column("gap/d at t=1"), ld.Column(f"gap/d at t={times[len(times) // 2]:.0f}"), ld.Column("gap/d at t=1000")]
    print()
    print(ld.Table("Rank of the fitted covariance and the train–test gap (one training set per N)", cols, rows).render(args.format))
    plt = pyplot()
    if plt:
        from lindiff.plots import plot_transition

        plot_transition(result, f"{args.out}/claim4_transition.png")
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for ratio, gap in gaps.items():
            ax.plot(times, gap, label=f"N/d = {ratio}")
        ax.set(xscale="log", yscale="log", xlabel="DDPM step t", ylabel="gap per dimension", title="train–test gap against t")
        ax.legend()
        save(fig, args, "claim4_gap.png")
        print(f"figure: {args.out}/claim4_transition.png")


if __name__ == "__main__":
    main()
