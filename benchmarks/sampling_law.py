"""Benchmark: exact law of DDPM (T = 1000) for the fitted denoiser at d = 3072 (CIFAR-10 spectrum).

Prints the cost of one ``eigh`` of a 3072 x 3072 matrix, the cost of the exact law (fit + law), and the
cost of a Monte Carlo estimate of the same covariance to 1% accuracy, then the ratios.

The Monte Carlo cost is extrapolated from a timed run of a few sampler steps on a batch of points
(running the full estimate would take hours): 1% relative accuracy on the covariance's diagonal needs
``n = 2 / 0.01^2 = 20000`` samples (the sample variance has relative standard deviation ``sqrt(2/n)``).

Run: ``python benchmarks/sampling_law.py [--d 3072] [--N 4000] [--T 1000]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lindiff as ld
from lindiff import mc
from lindiff.spectra import cifar10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=3072)
    parser.add_argument("--N", type=int, default=4000)
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--mc-steps", type=int, default=3, help="sampler steps timed for the extrapolation")
    parser.add_argument("--mc-batch", type=int, default=1000)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    spectrum = cifar10()[: args.d]
    p0 = ld.Gaussian.from_spectrum(spectrum)
    X = p0.sample(args.N, rng)
    process = ld.DDPM.linear(args.T)

    A = X.T @ X / args.N
    t0 = time.perf_counter()
    np.linalg.eigh(A)
    t_eigh = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = ld.LinearDenoiser.fit(X, process)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    law = ld.sampling_law(model, process, "ddpm")
    t_law = time.perf_counter() - t0
    t_exact = t_fit + t_law

    n_needed = int(2 / 0.01**2)
    timesteps = np.arange(args.T, args.T - args.mc_steps, -1)
    t0 = time.perf_counter()
    mc.sample(model, process, "ddpm", args.mc_batch, rng, timesteps=timesteps, progress=False)
    t_partial = time.perf_counter() - t0
    t_mc = t_partial * (args.T / args.mc_steps) * (n_needed / args.mc_batch)

    print(f"d = {args.d}, N = {args.N}, DDPM T = {args.T} (fitted denoiser, CIFAR-10 spectrum)")
    print(f"one eigh ({args.d}x{args.d}):              {t_eigh:10.3f} s")
    print(f"exact law: fit (incl. eigh) {t_fit:.3f} s + law {t_law:.3f} s = {t_exact:10.3f} s")
    print(f"Monte Carlo to 1% ({n_needed} samples), extrapolated from {args.mc_steps} steps x {args.mc_batch} points: {t_mc:10.1f} s")
    print(f"ratio exact / eigh:        {t_exact / t_eigh:8.2f}")
    print(f"ratio law only / eigh:     {t_law / t_eigh:8.3f}")
    print(f"ratio Monte Carlo / exact: {t_mc / t_exact:8.0f}x")
    print(f"law: rank {law.rank}, trace {np.trace(law.cov):.4f} (data trace {spectrum.sum():.4f})")


if __name__ == "__main__":
    main()
