"""Benchmark: the oracle's exact reference for a 1000-step diffusers scheduler at d = 64, against the
scheduler loop itself, and the whole conformance grid.

Times (best of ``--repeat``):
* the exact reference ``sampling_law`` of the matching lindiff sampler, spectral and dense paths (the
  reference the oracle compares with; the model's fit is included);
* one diffusers pipeline loop over the same 1000 steps on a batch of ``--batch`` latents (float32, the
  pipeline's own precision);
* with ``--probe``, the full exact check (probe + reference): the probe runs the loop on 1 + d + K d rows
  for K noise draws, so a 1000-step ancestral loop at d = 64 runs ~64,000 rows (minutes); use a
  smaller ``--d`` for it;
* ``conformance("standard")`` end to end (the ``lindiff oracle diffusers`` table).

Run: ``python benchmarks/oracle.py [--d 64] [--steps 1000] [--batch 16]`` (needs lindiff[diffusers]).
"""

from __future__ import annotations

import argparse

import numpy as np

import lindiff as ld
from floors import best_of as best  # the one timing helper of the benchmarks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-grid", action="store_true", help="do not time the conformance grid")
    parser.add_argument("--probe", action="store_true", help="also time the full exact check (probe + reference)")
    args = parser.parse_args()
    try:
        import diffusers
        from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

        from lindiff.adapters import diffusers as ad
    except ImportError:
        print("needs torch and diffusers: pip install 'lindiff[diffusers]'")
        return
    diffusers.utils.logging.set_verbosity_error()
    d = args.d
    rng = np.random.default_rng(0)
    X = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0)).sample(2 * d, rng)
    print(f"diffusers {diffusers.__version__}, d = {d}, {args.steps} steps, batch {args.batch}")
    # DPMSolverMultistep at n = T repeats a timestep (linspace over n + 1 points, rounded): 999 steps
    for label, make, steps in (("DDPMScheduler", lambda: DDPMScheduler(clip_sample=False), args.steps),
                               ("DPMSolverMultistepScheduler (order 2)", lambda: DPMSolverMultistepScheduler(),
                                min(args.steps, 999))):
        sch = make()
        conf = ad._configured(sch, steps)
        ref = ad.reference_for(conf, d)
        model = ld.LinearDenoiser.fit(X, ref.process)
        fn = ad.model_output_for(model, conf)
        x = rng.standard_normal((args.batch, d))

        def reference(path):
            m = ld.LinearDenoiser.fit(X, ref.process)
            ld.sampling_law(m, m.process, ref.sampler, init=ref.init, path=path, **ref.options)

        t_spec = best(lambda: reference("spectral"), args.repeat)
        t_dense = best(lambda: reference("dense"), 1)
        t_loop = best(lambda: ad.run_pipeline_loop(sch, steps, fn, x, lambda s: rng.standard_normal(s),
                                                   ref.latent_scale, precision="float32"), args.repeat)
        print(f"{label}, {steps} steps: exact reference {t_spec * 1e3:.1f} ms (spectral) / {t_dense * 1e3:.1f} ms (dense); "
              f"one pipeline loop (batch {args.batch}, float32) {t_loop * 1e3:.1f} ms; ratio loop / reference "
              f"{t_loop / t_spec:.1f} (spectral), {t_loop / t_dense:.2f} (dense)")
        if args.probe:
            t_check = best(lambda: ad.check_scheduler(sch, steps, X), 1)
            print(f"  full exact check (probe + reference): {t_check:.2f} s")
    if not args.skip_grid:
        t_grid = best(lambda: ad.conformance("standard", progress=False), 1)
        print(f"conformance('standard'): {t_grid:.1f} s for the whole grid")


if __name__ == "__main__":
    main()
