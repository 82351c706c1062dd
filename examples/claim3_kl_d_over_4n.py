"""Claim 3 (docs/theory.md#claims-reproduced-by-the-examples): for N > d the expected KL approaches its floor as d(d+1)/(4N) — for any covariance.

Exact Wishart expectations against Monte Carlo over training sets for three very different spectra
(isotropic, power law k^-2, CIFAR-10 subsampled), and the leading law.  Prints a table; saves
claim3_kl.png (KL/d against N/d, log-log, slope -1).
"""

import numpy as np

import lindiff as ld
from lindiff.ensembles import fitted_gaussian_kl, monte_carlo_over_training_sets

from _common import parse, pyplot, save


def main():
    args = parse(__doc__.splitlines()[0])
    d = 8 if args.small else 24
    ratios = (2, 4, 16) if args.small else (1.5, 2, 4, 8, 16, 32, 64)
    repeats = 20 if args.small else 300
    cifar = ld.spectra.cifar10(normalise_trace=True)
    spectra = {"isotropic": np.ones(d), "power k^-2": ld.spectra.power_law(d, 2.0),
               "CIFAR-10": cifar[np.linspace(0, cifar.size - 1, d).round().astype(int)]}
    rows, curves = [], {}
    for name, spec in spectra.items():
        p0 = ld.Gaussian.from_spectrum(spec)
        tasks = [(p0, int(r * d)) for r in ratios]
        runs = monte_carlo_over_training_sets(fitted_gaussian_kl, tasks, repeats, seed=args.seed)
        for r, res in zip(ratios, runs):
            N = int(r * d)
            vals = np.array([x["model_to_data"] for x in res])
            mean, se = vals.mean(), vals.std(ddof=1) / np.sqrt(vals.size)
            exact = ld.expected_kl(d, N)
            rows.append([name, N / d, exact / d, (mean / d, se / d), (mean - exact) / se,
                         ld.expected_kl_series(d, N) / d, d / (4 * N)])
            curves.setdefault(name, []).append(mean / d)
    cols = [ld.Column("spectrum"), ld.Column("N/d"), ld.Column("E KL/d exact", "nats", "Wishart"),
            ld.Column("KL/d Monte Carlo", "nats", f"{repeats} training sets"), ld.Column("z", fmt=".2f"),
            ld.Column("(d+3)/(4N)", "nats", "exact leading order"), ld.Column("d/(4N)", "nats", "large-d law")]
    print(ld.Table(f"Claim 3: E KL(fitted || data) per dimension, d = {d}: distribution-free, ~ d/(4N)", cols, rows)
          .render(args.format))
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        x = np.array(ratios, float)
        for name, ys in curves.items():
            ax.plot(x, ys, "o", label=f"Monte Carlo, {name}")
        ax.plot(x, [ld.expected_kl(d, int(r * d)) / d for r in ratios], "k-", label="exact (any spectrum)")
        ax.plot(x, 1 / (4 * x), "k:", label="d/(4N)")
        ax.set(xscale="log", yscale="log", xlabel="N/d", ylabel="E KL per dimension", title=f"d = {d}")
        ax.legend(fontsize=8)
        save(fig, args, "claim3_kl.png")


if __name__ == "__main__":
    main()
