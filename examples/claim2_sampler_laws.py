"""Claim 2 (docs/theory.md#claims-reproduced-by-the-examples): sampler output laws equal Monte Carlo runs of the same samplers, for every sampler.

For each sampler: the exact law (sampling_law) vs the sample moments of mc.sample, as the maximum
|z| over all mean and covariance entries and the Bonferroni threshold.  Saves claim2_laws.png.
"""

import numpy as np

import lindiff as ld
from lindiff import mc

from _common import parse, pyplot, save


def main():
    args = parse(__doc__.splitlines()[0])
    n = 4000 if args.small else 40_000
    rng = np.random.default_rng(args.seed)
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(4, 1.0), mean=[1.0, 0.0, -1.0, 0.5])
    rows = []
    cases = [(ld.DDPM.linear(1000), s, None, {}) for s in ("ddpm", "ddim")]
    cases += [(ld.VP.linear(), s, 30, {"t_min": 1e-3}) for s in ("euler_maruyama", "exponential_integrator", "euler", "heun",
                                                                  "euler_ve", "euler_ancestral", "dpmpp_2m")]
    cases += [(ld.VP.linear(), "ode", None, {"t_min": 1e-3})]
    for process, sampler, steps, kw in cases:
        model = ld.LinearDenoiser.fit(p0.sample(3, rng), process, ridge=0.01)
        law = ld.sampling_law(model, process, sampler, steps, **kw)
        x = mc.sample(model, process, sampler, n, rng, steps, progress=False, **kw)
        z = mc.moment_z_scores(x, law)
        rows.append([sampler, repr(process), float(np.max(np.abs(z))), mc.max_abs_z_threshold(z.size)])
    cols = [ld.Column("sampler"), ld.Column("process"), ld.Column("max |z|", note=f"{n} Monte Carlo samples"),
            ld.Column("threshold", note="Bonferroni, false alarm 1e-4")]
    print(ld.Table("Claim 2: exact sampler laws vs Monte Carlo (ridge-fitted denoiser on N = 3 < d = 4 points)", cols, rows)
          .render(args.format))
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        ax.barh([r[0] for r in rows], [r[2] for r in rows], color="C0")
        ax.axvline(rows[0][3], color="k", ls=":", label="threshold")
        ax.set(xlabel="max |z| over mean and covariance entries")
        ax.legend()
        save(fig, args, "claim2_laws.png")


if __name__ == "__main__":
    main()
