"""Claim 8 (Vastola 2025): finite noise draws P fill the directions orthogonal to the training span at ~1/P.

Tested exactly on the time-local linear denoiser (free weights per time, least squares on P noise
draws per training point, every draw's sampler law exact) for N < d, DDPM without final noise:

1. P = infinity: the samples lie on the span of the training points (off-span variance 0, rank N - 1);
2. finite P, no ridge: the samples leave the span only while the fit is under-determined (N P <= d); for
   N P > d they lie on it exactly, at every P, because the part of the DSM input orthogonal to the span is an
   exact multiple of the noise (the proxy covariance and the V-kernel vanish there);
3. with a ridge the off-span variance is c0 + c1/P: the fitted exponent and the closed-form c1 (split into
   the weights' bias and their covariance, the V-kernel) are printed.

The headline lines are computed from these numbers.  Saves claim8_variance.png.
"""

import math

import numpy as np

import lindiff as ld
from lindiff.variance import noise_draw_law, noise_draw_series, v_kernel_table, variance_table

from _common import parse, pyplot


def fit_series(P, excess, errors):
    """Weighted least squares of excess = c1/P + c2/P^2: (c1, s.e.), and the log-log slope of the largest
    three P (its s.e. from the errors)."""
    X = np.stack([1 / P, 1 / P**2], axis=1)
    w = 1 / errors**2
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    c = cov @ X.T @ (w * excess)
    x, y, wl = np.log(P[-3:]), np.log(excess[-3:]), (excess[-3:] / errors[-3:]) ** 2
    A = np.stack([np.ones_like(x), x], axis=1)
    cl = np.linalg.inv(A.T @ (A * wl[:, None]))
    b = cl @ A.T @ (wl * y)
    return float(c[0]), float(math.sqrt(cov[0, 0])), float(b[1]), float(math.sqrt(cl[1, 1]))


def main():
    args = parse(__doc__.splitlines()[0])
    d = 8 if args.small else 16
    draws = 12 if args.small else 48
    process = ld.DDPM.linear(1000)
    steps = 10 if args.small else 20
    ratios = (0.25, 2.0) if args.small else (0.25, 0.5, 2.0)
    Ps = (1, 2, 4, 16, 64) if args.small else (1, 2, 4, 8, 16, 64, 256)
    table = variance_table(d, ratios, Ps, (0.0, 0.01), process, "ddpm", steps, draws, 500 if args.small else 2000,
                           seed=args.seed)
    print(table.render(args.format))
    print()
    rng = np.random.default_rng(args.seed)
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0))
    N = d // 4
    X = p0.sample(N, rng)
    ridge = 0.01
    print(v_kernel_table(X, process, [1.0, 51.0, 251.0, 501.0], P=16, ridge=ridge, p0=p0, steps=steps).render(args.format))
    print()
    # 1. P = infinity
    inf = noise_draw_law(X, process, None, steps=steps)
    # 2. ridge 0: smallest P with N P > d and a larger one, against the largest under-determined P
    Pdet = [P for P in (d // N + 1, 4 * d) if N * P > d]
    det = [noise_draw_law(X, process, P, steps=steps, draws=draws, rng=rng) for P in Pdet]
    under = noise_draw_law(X, process, d // N, steps=steps, draws=draws, rng=rng)
    # 3. ridge: off-span(P) - off-span(inf) against P, and the closed form
    ser = noise_draw_series(X, process, steps=steps, ridge=ridge)
    Pfit = np.array([16, 32, 64, 128, 256] if args.small else [16, 32, 64, 128, 256, 512, 1024], float)
    excess, errs = [], []
    for P in Pfit:
        law = noise_draw_law(X, process, int(P), steps=steps, draws=draws * 4, rng=rng, ridge=ridge)
        excess.append(law.off_span[0] - ser.off_span0)
        errs.append(law.off_span[1])
    c1, c1_se, b, b_se = fit_series(Pfit, np.array(excess), np.array(errs))

    scale = float(np.trace(inf.cov))
    print(f"N = {N}, d = {d}, DDPM {steps} steps without final noise; off-span variance = E||P_perp(x - xbar)||^2 "
          f"(trace of the law's covariance: {scale:.3g})")
    print(f"1. P = infinity: off-span variance {inf.off_span[0]:.2g}, rank {inf.rank} = N - 1: "
          f"{'on the training span' if inf.off_span[0] <= 1e-12 * scale and inf.rank == N - 1 else 'NOT on the span'}")
    zero = max(o.off_span[0] for o in det)
    print(f"2. ridge 0: P = {d // N} (N P = {N * d // N} <= d): off-span variance {under.off_span[0]:.3g} ± {under.off_span[1]:.2g}; "
          f"P = {', '.join(map(str, Pdet))} (N P > d): at most {zero:.2g} "
          f"({'exactly on the span: finite P does not fill the orthogonal directions' if zero <= 1e-12 * scale else 'off the span'})")
    z = (c1 - ser.off_span1) / c1_se
    print(f"3. ridge {ridge:g}: off-span variance - its P = infinity value ({ser.off_span0:.4g}) = c1/P + c2/P^2 over "
          f"P = {int(Pfit[0])}..{int(Pfit[-1])}: c1 = {c1:.4g} ± {c1_se:.2g} (Monte Carlo) vs {ser.off_span1:.4g} (closed form: "
          f"{ser.off_span1_bias:.4g} from the weights' bias + {ser.off_span1_variance:.4g} from the V-kernel), z = {z:.2f}; "
          f"log-log slope over the largest three P: {b:.3f} ± {b_se:.3f}")
    if pyplot():
        from lindiff.plots import plot_variance

        path = plot_variance(table, f"{args.out}/claim8_variance.png")
        print(f"figure: {path}")


if __name__ == "__main__":
    main()
