"""Claim 5 (docs/theory.md#claims-reproduced-by-the-examples): for N < d, ridge and early stopping reduce test loss and KL; strongly decaying
spectra (lambda_k ~ k^-p) overfit less.  Prints the tables; saves claim5_regularisation.png."""

import numpy as np

import lindiff as ld
from lindiff.regularisation import best_ridge, best_train_time, decay_table, evaluate, regularisation_table

from _common import parse, pyplot, save


def main():
    args = parse(__doc__.splitlines()[0])
    d = 10 if args.small else 40
    N = d // 2
    repeats = 3 if args.small else 10
    process = ld.DDPM.linear(200 if args.small else 1000)
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0))
    print(regularisation_table(p0, N, process, ridges=(1e-3, 1e-2, 1e-1, 1.0), train_times=(1.0, 10.0, 100.0),
                               repeats=repeats, seed=args.seed).render(args.format))
    r, v = best_ridge(p0, N, process, repeats=repeats, seed=args.seed)
    tau, v2 = best_train_time(p0, N, process, repeats=repeats, seed=args.seed)
    print(f"\nbest ridge {r:.4g} (test loss/d {v:.4g}); best train_time {tau:.4g} (test loss/d {v2:.4g})\n")
    print(decay_table(d, N, process, exponents=(0.0, 1.0, 2.0, 3.0), repeats=repeats, seed=args.seed).render(args.format))
    plt = pyplot()
    if plt:
        ridges = np.geomspace(1e-4, 10, 7 if args.small else 15)
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for ratio in (0.5, 0.9, 2.0):
            n = max(2, int(ratio * d))
            vals = [evaluate(p0, n, process, ridge=rr, repeats=repeats, seed=args.seed)["test_loss"][0] for rr in ridges]
            ax.plot(ridges, vals, "o-", ms=3, label=f"N/d = {ratio}")
        ax.set(xscale="log", yscale="log", xlabel="ridge", ylabel="test DSM loss per dim (time-averaged)",
               title=f"d = {d}, lambda_k ~ 1/k")
        ax.legend()
        save(fig, args, "claim5_regularisation.png")


if __name__ == "__main__":
    main()
