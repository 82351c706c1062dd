"""Test diffusers' schedulers against lindiff's exact output laws and print a pass/fail table.

Each scheduler runs the standard pipeline loop with a linear eps-model fitted by lindiff on the
scheduler's own schedule; lindiff probes the loop exactly (start point and every noise draw) and
compares the law of its output with lindiff's exact law of the matching sampler.  Needs the extra
lindiff[diffusers] (torch CPU + diffusers); without it the script says so and exits.
"""

import sys

import numpy as np

import lindiff as ld

from _common import parse, pyplot, save


def main():
    args = parse(__doc__.splitlines()[0])
    try:
        import diffusers
        from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                               EulerAncestralDiscreteScheduler, EulerDiscreteScheduler)

        from lindiff.adapters.diffusers import check_scheduler
    except ImportError:
        # exit status 2, like a missing command-line dependency: no table was printed
        sys.exit("diffusers is not installed: pip install 'lindiff[diffusers]' to run this example")
    d = 3 if args.small else 8
    p0 = ld.Gaussian.from_spectrum(ld.spectra.power_law(d, 1.0), mean=np.linspace(-1, 1, d))
    X = p0.sample(2 * d, np.random.default_rng(args.seed))
    cases = [
        ("DDPM fixed_small", DDPMScheduler(clip_sample=False), 50, {}),
        ("DDPM fixed_large", DDPMScheduler(clip_sample=False, variance_type="fixed_large"), 50, {}),
        ("DDPM fixed_large_log", DDPMScheduler(clip_sample=False, variance_type="fixed_large_log"), 50, {}),
        ("DDPM fixed_large, trailing", DDPMScheduler(clip_sample=False, variance_type="fixed_large", timestep_spacing="trailing"), 50, {}),
    ]
    for spacing in ("leading", "trailing", "linspace"):
        for eta in (0.0, 1.0):
            cases.append((f"DDIM eta={eta:g}, {spacing}", DDIMScheduler(clip_sample=False, timestep_spacing=spacing), 20, {"eta": eta}))
    cases += [
        ("Euler, linspace", EulerDiscreteScheduler(), 25, {}),
        ("Euler, Karras sigmas", EulerDiscreteScheduler(use_karras_sigmas=True), 25, {}),
        ("Euler ancestral", EulerAncestralDiscreteScheduler(), 25, {}),
        ("DPM-Solver++ 2M", DPMSolverMultistepScheduler(), 20, {}),
    ]
    rows = []
    for name, scheduler, steps, kw in cases:
        r = check_scheduler(scheduler, steps, X, **kw)
        verdict = "pass" if r else "FAIL"
        note = "" if r else (r.message.split(": ", 1)[-1] if r.cov_error is None else "")
        w2 = r.details.get("w2(user, lindiff)")
        rows.append([name, steps, verdict, r.mean_error, r.cov_error, w2, r.tolerance, note])
    cols = [ld.Column("scheduler"), ld.Column("steps"), ld.Column("result"),
            ld.Column("mean error", note="relative, exact probe vs lindiff"), ld.Column("cov error", note="relative Frobenius"),
            ld.Column("W2(diffusers, lindiff)"), ld.Column("tolerance", note="float32 arithmetic"), ld.Column("note")]
    caption = f"diffusers {diffusers.__version__} schedulers vs lindiff's exact laws (d = {d}, linear eps-model on N = {2 * d} points)"
    print(ld.Table(caption, cols, rows, ["known diffusers issues: #11347 (DDIM linspace previous timestep), "
                                           "#14569 (fixed_large_log NaN)"]).render(args.format))
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        names = [r[0] for r in rows]
        errs = [r[4] if r[4] is not None else 1.0 for r in rows]
        colours = ["C2" if r[2] == "pass" else "C3" for r in rows]
        ax.barh(names, errs, color=colours)
        ax.scatter([r[6] for r in rows], names, marker="|", s=200, color="k", label="tolerance (float32)")
        ax.set(xscale="log", xlabel="relative covariance error vs lindiff (NaN shown as 1)")
        ax.invert_yaxis()
        ax.legend(fontsize=8)
        save(fig, args, "diffusers_oracle.png")


if __name__ == "__main__":
    main()
