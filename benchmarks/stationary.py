"""Image-sized data through the Fourier basis (issue 13 §2): costs at 256 x 256 (d = 65,536) as ratios to one
``numpy.linalg.eigh`` of a 3072 x 3072 matrix (measured first, in the same run).

==================================================================  ======================
figure                                                              target (ratio)
==================================================================  ======================
exact DDPM T = 1000 law of the stationary GaussianScore + KL + W2    < 0.5 eigh(3072)
fit_convolutional on N = 100 images + its DDPM T = 1000 law          < 1 eigh(3072)
(the same with a local 3 x 3 kernel, and the single pieces, for reference)
64 x 64 x 3 channel field (d = 12,288): DDPM T = 1000 law + KL         (no target; a dense eigh
                                                                    at d = 12,288 is ~64 eigh(3072))
==================================================================  ======================

A dense eigendecomposition at d = 65,536 would take ~(65536/3072)^3 ~ 1e4 eigh(3072) and 34 GB for the
matrix alone; here nothing larger than a few (steps x modes) blocks is formed.  Not a timed test: it prints
numbers.  Run: ``python benchmarks/stationary.py [--quick] [--n 256] [--threads N]``.
"""

from __future__ import annotations

import argparse
import time

# floors sets the BLAS thread count (--threads, default 1) before numpy loads: import it first
from floors import best_of, eigh_cost  # noqa: I001

import numpy as np

import lindiff as ld
from lindiff.spectra import power_law_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of each figure")
    parser.add_argument("--n", type=int, default=256, help="grid side (default 256: d = 65,536)")
    parser.add_argument("--threads", default="1", help="BLAS threads for every figure and the unit (default 1)")
    args = parser.parse_args()
    rep = 1 if args.quick else 3
    grid = (args.n, args.n)
    d = args.n * args.n

    unit = eigh_cost(3072, rep)
    print(f"unit: eigh(3072) = {unit:.3f} s; grid {grid[0]} x {grid[1]}, d = {d}")
    process = ld.DDPM.linear(1000)
    p0 = ld.Gaussian.stationary(power_law_grid(grid, 2.0), 0.1)
    rows = []

    def law_kl_w2():
        model = ld.GaussianScore(p0, process)
        law = ld.sampling_law(model, process, "ddpm")
        return ld.kl(law, p0), ld.w2(law, p0)

    kl, w2 = law_kl_w2()  # first call compiles the sampler program (cached afterwards, as in any sweep)
    t = best_of(law_kl_w2, rep)
    rows.append(("DDPM T=1000 law of GaussianScore(stationary) + KL + W2", t, 0.5))
    print(f"  (KL(law || data) = {kl:.6g} nats, W2 = {w2:.6g})")

    X = p0.sample(100, np.random.default_rng(0))
    for kernel, target in ((None, 1.0), (3, 1.0)):
        def fit_and_law(kernel=kernel):
            model = ld.LinearDenoiser.fit_convolutional(X, process, grid, kernel_size=kernel)
            return ld.sampling_law(model, process, "ddpm")

        t = best_of(fit_and_law, rep)
        name = "fit_convolutional(N=100" + ("" if kernel is None else f", kernel_size={kernel}") + ") + DDPM law"
        rows.append((name, t, target))

    start = time.perf_counter()
    ld.LinearDenoiser.fit_convolutional(X, process, grid)
    rows.append(("  of which: fit_convolutional(N=100) alone", time.perf_counter() - start, None))
    t = best_of(lambda: p0.sample(100, np.random.default_rng(1)), rep)
    rows.append(("  for scale: Gaussian.stationary(...).sample(100)", t, None))
    law = ld.sampling_law(ld.GaussianScore(p0, process), process, "ddpm")
    t = best_of(lambda: (ld.kl(law, p0), ld.w2(law, p0), ld.hellinger(law, p0)), 5 * rep)
    rows.append(("  for scale: kl + w2 + hellinger (shared basis)", t, None))

    # a 3-channel field whose channel mixing turns with frequency (complex cross-spectrum)
    cgrid = (64, 64)
    S = channel_spectrum(cgrid)
    c0 = ld.Gaussian.stationary(S, [0.1, 0.0, -0.1], channels=3)

    def channel_law_kl():
        model = ld.GaussianScore(c0, process)
        return ld.kl(ld.sampling_law(model, process, "ddpm"), c0)

    print(f"  (64 x 64 x 3 channel field: KL(law || data) = {channel_law_kl():.6g} nats)")
    rows.append(("64 x 64 x 3 channel field: DDPM T=1000 law + KL to data", best_of(channel_law_kl, rep), None))
    other = ld.Gaussian.stationary(S + 0.05 * channel_spectrum(cgrid, seed=1), [0.1, 0.0, -0.1], channels=3)
    rows.append(("  for scale: kl + w2 + hellinger, two 64 x 64 x 3 fields in different rotations",
                 best_of(lambda: (ld.kl(other, c0), ld.w2(other, c0), ld.hellinger(other, c0)), rep), None))

    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'seconds':>9}  {'ratio to eigh(3072)':>19}  {'target':>6}  met")
    for name, sec, target in rows:
        met = "" if target is None else ("yes" if sec / unit < target else "NO")
        tgt = "" if target is None else f"{target:g}"
        print(f"{name:<{width}}  {sec:9.4g}  {sec / unit:19.4g}  {tgt:>6}  {met}")


def channel_spectrum(grid, seed=0):
    """S(k) = p(k) B(k) B(k)^*, B(k) = L + 0.3 i sin(2 pi k_0 / n) K (L, K real 3 x 3): Hermitian PSD and
    S(-k) = conj S(k)."""
    gen = np.random.default_rng(seed)
    L, K = gen.standard_normal((3, 3)) + 2 * np.eye(3), gen.standard_normal((3, 3))
    phase = np.sin(2 * np.pi * np.arange(grid[0]) / grid[0]).reshape((-1,) + (1,) * len(grid))
    B = L + 0.3j * phase[..., None] * np.ones(grid)[..., None, None] * K
    return power_law_grid(grid, 2.0)[..., None, None] * (B @ np.conj(np.swapaxes(B, -1, -2)))


if __name__ == "__main__":
    main()
