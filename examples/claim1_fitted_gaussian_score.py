"""Claim 1 (docs/theory.md#claims-reproduced-by-the-examples): the optimal linear denoiser is the fitted Gaussian's score.

Brute-force least squares on sampled (x0, eps) pairs converges to LinearDenoiser.fit (the exact noise
expectation) at rate n^{-1/2}, for N < d, N ~ d and N > d.  Prints the table; saves claim1_fit.png.
"""

import numpy as np

import lindiff as ld
from lindiff import mc

from _common import parse, pyplot, save


def main():
    args = parse(__doc__.splitlines()[0])
    d = 6
    process = ld.DDPM.linear(1000)
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0))
    rng = np.random.default_rng(args.seed)
    ns = (1_000, 10_000) if args.small else (1_000, 10_000, 100_000, 1_000_000)
    rows, curves = [], {}
    for N in (3, 6, 30):
        X = p0.sample(N, rng)
        exact = ld.LinearDenoiser.fit(X, process)
        gauss = ld.GaussianScore(ld.Gaussian.fit(X), process)
        t = 200
        W, _ = exact.affine(t)
        same = float(np.max(np.abs(W - gauss.affine(t)[0])))
        errs = [float(np.max(np.abs(mc.fit_linear(X, process, t, n, rng)[0] - W))) for n in ns]
        curves[N] = errs
        rows.append([N, same] + errs)
    cols = [ld.Column("N"), ld.Column("|fit - fitted-Gaussian score|", note="max entry, exact vs exact")] + [
        ld.Column(f"LS n={n}", note="max entry error of least squares on n sampled pairs") for n in ns]
    print(ld.Table(f"Claim 1: optimal affine eps-model = fitted Gaussian score (d = {d}, DDPM t = 200)", cols, rows)
          .render(args.format))
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(5, 3.8))
        for N, errs in curves.items():
            ax.plot(ns, errs, "o-", label=f"N = {N}")
        ax.plot(ns, 3 / np.sqrt(np.array(ns)), "k:", label="n^-1/2")
        ax.set(xscale="log", yscale="log", xlabel="sampled pairs n", ylabel="max |W_LS - W_exact|")
        ax.legend()
        save(fig, args, "claim1_fit.png")


if __name__ == "__main__":
    main()
