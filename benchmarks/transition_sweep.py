"""Benchmark: cost of one training set in the transition sweep, in units of one eigh of a d x d matrix.

Per training set the sweep fits the denoiser (one eigh), runs the exact DDPM law (T = 1000), four KL
divergences, and the time-averaged train/test losses and gap.  Prints the per-set time, the eigh time
and their ratio, and the same for the Monte Carlo alternative of one sampler run (extrapolated).

Run: ``python benchmarks/transition_sweep.py [--d 256] [--sets 5]``
"""

import argparse
import time

import numpy as np

import lindiff as ld
from lindiff.transition import _one_set


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--sets", type=int, default=5)
    args = parser.parse_args()
    d = args.d
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0))
    process = ld.DDPM.linear(1000)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((d, d))
    A = A @ A.T
    t0 = time.perf_counter()
    for _ in range(args.sets):
        np.linalg.eigh(A)
    t_eigh = (time.perf_counter() - t0) / args.sets
    for ratio in (0.5, 2.0):
        N = int(ratio * d)
        t0 = time.perf_counter()
        for _ in range(args.sets):
            _one_set(p0, N, process, "ddpm", None, 0.0, 0.0, None, {"final_noise": True}, rng=rng)
        t_set = (time.perf_counter() - t0) / args.sets
        print(f"d = {d}, N/d = {ratio}: one training set {t_set * 1e3:8.1f} ms, one eigh {t_eigh * 1e3:7.1f} ms, "
              f"ratio {t_set / t_eigh:5.1f}")
    model = ld.LinearDenoiser.fit(p0.sample(2 * d, rng), process)
    t0 = time.perf_counter()
    ld.mc.sample(model, process, "ddpm", 1000, rng, timesteps=[1000, 999, 998], progress=False)
    t_mc = (time.perf_counter() - t0) / 3 * 1000 * 20
    print(f"Monte Carlo estimate of one law to 1% (20000 samples x 1000 steps, extrapolated): {t_mc:8.1f} s "
          f"= {t_mc / t_eigh:.0f} eigh")


if __name__ == "__main__":
    main()
