"""Every headline cost as a ratio to its floor, in one run (issue: "every closed form at its physical floor").

The unit is one ``numpy.linalg.eigh`` of a d x d symmetric matrix on this machine (d = 3072 unless said),
measured first; each figure is printed as seconds and as a multiple of that unit, next to its target:

==========================================  =======================  ==================
figure                                      floor                    target (ratio)
==========================================  =======================  ==================
w2(law, p0), d = 3072, one eigenbasis        O(d)                     <= 0.001 eigh(3072)
exact Euler-Maruyama law, 1000 steps, 3072   O(T d)                   <= 0.02 eigh(3072)
kl / w2 / hellinger(law, dense), d = 3072    one change of basis      <= 1 eigh(3072)
Pierret & Galerne's 160-entry W2 table       160 O(T d) laws          <= 1 eigh(3072) in total
transition_sweep(d=100), 20 ratios x 50 sets one eigh per set         <= 2 eigh(100) per set
lindiff transition (defaults)                d = 32 sweep             < 2 s
==========================================  =======================  ==================

Run: ``python benchmarks/floors.py [--quick] [--threads N]`` (``--quick`` uses fewer repetitions).  BLAS runs
on one thread unless ``--threads`` says otherwise, so that every figure and its unit are measured alike and
the ratios do not depend on what else the machine is doing (an eigh on two contended threads can be 3x
slower than on one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

if __name__ == "__main__":  # BLAS reads its thread count when numpy is first imported
    _threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _threads

import numpy as np

import lindiff as ld
from lindiff.spectra import cifar10, power_law


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def eigh_cost(d: int, repeat: int) -> float:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((d, d))
    S = A @ A.T / d
    return best_of(lambda: np.linalg.eigh(S), repeat)


def pierret_galerne_table(p0, process, grids=(50, 100, 250, 500, 1000)) -> int:
    """The example's 160 W2 entries: 2 inits x 4 truncations x (4 samplers x 5 grids) (+ the exact SDE/ODE)."""
    model = ld.GaussianScore(p0, process)
    count = 0
    for init in ("standard", "exact"):
        for eps in (0.0, 1e-5, 1e-3, 1e-2):
            for name in ("euler_maruyama", "exponential_integrator", "euler", "heun"):
                for k in grids:
                    ld.w2(ld.sampling_law(model, process, name, k, t_min=eps, init=init), p0)
                    count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--threads", default="1", help="BLAS threads for every figure (default 1)")
    args = parser.parse_args()
    rep = 1 if args.quick else 3

    unit = eigh_cost(3072, rep)
    unit100 = eigh_cost(100, 20 * rep)
    print(f"unit: eigh(3072) = {unit:.3f} s, eigh(100) = {unit100 * 1e3:.3f} ms")
    rows = []

    lam = cifar10()
    p0 = ld.Gaussian.from_spectrum(lam)
    vp = ld.VP.linear(0.1, 20.0, 1.0)
    model = ld.GaussianScore(p0, vp)
    law = ld.sampling_law(model, vp, "euler_maruyama", 1000, t_min=1e-3)
    t = best_of(lambda: ld.w2(law, p0), 5 * rep)
    rows.append(("w2(law, p0), d = 3072, one eigenbasis", t, t / unit, 0.001, "eigh(3072)"))

    t = best_of(lambda: ld.sampling_law(model, vp, "euler_maruyama", 1000, t_min=1e-3), rep)
    rows.append(("exact EM law, 1000 steps, d = 3072", t, t / unit, 0.02, "eigh(3072)"))

    # a dense Gaussian (its eigh paid when it is built, not timed) against the spectral law: one change of
    # basis each, not a general matrix square root
    rng = np.random.default_rng(1)
    A = rng.standard_normal((3072, 3072)) / np.sqrt(3072)
    dense = ld.Gaussian(np.zeros(3072), A @ A.T + 0.1 * np.eye(3072))
    for name, fn in (("kl", ld.kl), ("w2", ld.w2), ("hellinger", ld.hellinger)):
        t = best_of(lambda: fn(law, dense), rep)
        rows.append((f"{name}(law, dense), d = 3072", t, t / unit, 1.0, "eigh(3072)"))

    t = best_of(lambda: pierret_galerne_table(p0, vp), 1)
    rows.append(("Pierret & Galerne 160-entry W2 table", t, t / unit, 1.0, "eigh(3072)"))

    sets = 50
    t = best_of(lambda: ld.transition_sweep(d=100, ratios=np.linspace(0.5, 10, 20), repeats=sets, progress=False), 1)
    per_set = t / (20 * sets)
    rows.append(("transition_sweep(d=100): one training set", per_set, per_set / unit100, 2.0, "eigh(100)"))

    t = best_of(lambda: subprocess.run([sys.executable, "-m", "lindiff", "transition", "--no-progress"], check=True,
                                       capture_output=True), rep)
    rows.append(("lindiff transition (defaults), wall clock", t, t, 2.0, "s"))

    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'seconds':>10}  {'ratio':>10}  {'target':>8}  unit        met")
    for name, sec, ratio, target, unit_name in rows:
        print(f"{name:<{width}}  {sec:10.4g}  {ratio:10.4g}  {target:8.3g}  {unit_name:<10}  {'yes' if ratio <= target else 'NO'}")


if __name__ == "__main__":
    main()
