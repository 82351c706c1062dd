"""Pierret & Galerne (2025), Table 2 setting: W2 error of each sampler on the CIFAR-10 spectrum.

Data N(0, diag(CIFAR-10 eigenvalues)), VP with beta_min = 0.1, beta_max = 20 (Song; their half-beta
0.05 / 10), T = 1, uniform grids, truncation eps, start at N(0, I) or at the exact p_T, exact population
score.  W2 to the data law N(0, Sigma) (their error, per eigenvalue).  Computed from the definitions;
no numbers from the paper are used.  Saves pierret_galerne_w2.png.
"""

import numpy as np

import lindiff as ld

from _common import parse, pyplot, save


def main():
    args = parse(__doc__.splitlines()[0])
    lam = ld.spectra.cifar10()
    if args.small:
        lam = lam[:: 64]
    p0 = ld.Gaussian.from_spectrum(lam)
    process = ld.VP.linear(0.1, 20.0, 1.0)
    model = ld.GaussianScore(p0, process)
    grids = (50, 100) if args.small else (50, 100, 250, 500, 1000)
    rows, curves = [], {}
    for init in ("standard", "exact"):
        for eps in (0.0, 1e-5, 1e-3, 1e-2):
            row = [init, eps]
            for name in ("euler_maruyama", "exponential_integrator", "euler", "heun"):
                errs = [ld.w2(ld.sampling_law(model, process, name, k, t_min=eps, init=init), p0) for k in grids]
                row.append(errs[-1])
                curves[(init, eps, name)] = errs
            for name in ("sde", "ode"):
                row.append(ld.w2(ld.sampling_law(model, process, name, t_min=eps, init=init), p0))
            rows.append(row)
    cols = [ld.Column("init"), ld.Column("eps", note="truncation time t_min")] + [
        ld.Column(n, note=f"W2 to N(0, Sigma) with {grids[-1]} grid points") for n in ("EM", "EI", "Euler", "Heun")] + [
        ld.Column("SDE (exact)", note="continuous-time solution"), ld.Column("ODE (exact)")]
    print(ld.Table(f"W2 errors on the CIFAR-10 spectrum (d = {lam.size}), VP linear, T = 1", cols, rows).render(args.format))
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for k, name in enumerate(("euler_maruyama", "exponential_integrator", "euler", "heun")):
            ax.plot(grids, curves[("exact", 1e-3, name)], "o-", color=f"C{k}", label=f"{name} (start p_T)")
            ax.plot(grids, curves[("standard", 1e-3, name)], "s--", color=f"C{k}", alpha=0.6)
        ax.set(xscale="log", yscale="log", xlabel="grid points", ylabel="W2 to the data", title="eps = 1e-3 (dashed: start N(0, I))")
        ax.legend(fontsize=7)
        save(fig, args, "pierret_galerne_w2.png")


if __name__ == "__main__":
    main()
