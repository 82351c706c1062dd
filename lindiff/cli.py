"""Command line: ``lindiff transition | derive | sampler | stability`` (also ``python -m lindiff``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .tables import FORMATS


def _process(args):
    from .processes import DDPM, OU, VP

    if args.schedule == "linear":
        return DDPM.linear(args.T)
    if args.schedule == "cosine":
        return DDPM.cosine(args.T)
    if args.schedule == "vp":
        return VP.linear()
    if args.schedule == "ou":
        return OU()
    raise SystemExit(f"unknown schedule {args.schedule!r}")


def _spectrum(args, d: int) -> np.ndarray:
    from .spectra import cifar10, power_law

    if args.spectrum == "power":
        return power_law(d, args.exponent)
    if args.spectrum == "cifar":
        values = cifar10(normalise_trace=True)
        if d > values.size:
            raise SystemExit(f"--d {d} exceeds the 3072 CIFAR-10 eigenvalues")
        # every (3072/d)-th eigenvalue keeps the shape of the spectrum at lower d
        idx = np.linspace(0, values.size - 1, d).round().astype(int)
        out = values[idx]
        return out * d / out.sum()
    path = Path(args.spectrum)
    if not path.exists():
        raise SystemExit(f"--spectrum must be 'power', 'cifar' or a .npy file of eigenvalues; {path} not found")
    values = np.load(path).astype(float).ravel()
    if values.size != d:
        raise SystemExit(f"--spectrum file holds {values.size} eigenvalues but --d is {d}")
    return values


def _executor(workers: int):
    if workers <= 1:
        return None
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers)


def _cmd_transition(args) -> int:
    from .plots import plot_transition
    from .transition import transition_sweep, transition_table

    ratios = [float(r) for r in args.ratios.split(",")]
    ex = _executor(args.workers)
    try:
        result = transition_sweep(
            d=args.d, ratios=ratios, spectrum=_spectrum(args, args.d), process=_process(args), sampler=args.sampler,
            steps=args.steps, ridge=args.ridge, train_time=args.train_time, repeats=args.repeats, seed=args.seed,
            executor=ex, progress=None if not args.no_progress else False,
            spectrum_label=(f"power law k^-{args.exponent:g}" if args.spectrum == "power" else
                            "CIFAR-10, subsampled" if args.spectrum == "cifar" else f"from {args.spectrum}"),
            **({"final_noise": not args.no_final_noise} if args.sampler == "ddpm" else {}))
    finally:
        if ex is not None:
            ex.shutdown()
    print(transition_table(result).render(args.format))
    if args.plot:
        plot_transition(result, args.plot)
        print(f"figure written to {args.plot}", file=sys.stderr)
    return 0


def _derivations_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "derivations"
    if not (here / "_harness.py").exists():
        raise SystemExit("the derivations/ folder ships with the source tree; run `lindiff derive` from a checkout "
                         "(pip install -e .)")
    return here


def _cmd_derive(args) -> int:
    root = _derivations_dir()
    sys.path.insert(0, str(root.parent))
    from derivations import _harness

    if not args.name:
        for name in _harness.names():
            module = _harness.load(name)
            print(f"{name:20s} {module.make_page().title}")
        return 0
    if args.name not in _harness.names():
        raise SystemExit(f"unknown derivation {args.name!r}; choose from: {', '.join(_harness.names())}")
    page = _harness.run(_harness.load(args.name), check=not args.no_check)
    print(page.render("latex" if args.latex else "text"))
    return 0


def _cmd_sampler(args) -> int:
    from .samplers import sampler_table

    process = _process(args)
    opts = {}
    if args.eta is not None:
        opts["eta"] = args.eta
    if args.spacing:
        opts["spacing"] = args.spacing
    table = sampler_table(process, args.name, args.steps, args.t_min, **opts)
    print(table.render(args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lindiff", description="Exact diffusion models with linear denoisers on Gaussian data.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transition", help="memorisation-to-generalisation sweep over N/d (the main job)",
                       description="Sweep N/d: exact expected KL (Wishart), Monte Carlo over training sets of the fitted "
                                   "Gaussian and of the exact sampler law, d/(4N) law, train/test loss and gap.")
    p.add_argument("--d", type=int, default=32, help="dimension (default 32)")
    p.add_argument("--ratios", default="0.5,0.75,0.9,1.1,1.25,1.5,2,5,10", help="comma-separated N/d values")
    p.add_argument("--spectrum", default="power", help="'power' (k^-exponent, mean 1), 'cifar', or a .npy file")
    p.add_argument("--exponent", type=float, default=1.0, help="power-law exponent p in lambda_k ~ k^-p (default 1)")
    p.add_argument("--schedule", default="linear", choices=["linear", "cosine", "vp", "ou"], help="forward process")
    p.add_argument("--T", type=int, default=1000, help="DDPM steps (default 1000)")
    p.add_argument("--sampler", default="ddpm", help="sampler whose exact output law is compared with the data")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (continuous samplers need it)")
    p.add_argument("--no-final-noise", action="store_true", help="DDPM: Ho et al.'s noiseless last step (singular law for N < d)")
    p.add_argument("--ridge", type=float, default=0.0)
    p.add_argument("--train-time", type=float, default=None, help="gradient-flow time (early stopping)")
    p.add_argument("--repeats", type=int, default=20, help="training sets per N (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes for the Monte Carlo part (default in-process)")
    p.add_argument("--format", default="text", choices=FORMATS)
    p.add_argument("--plot", metavar="FILE.png", help="write a figure of the curves")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_transition)

    p = sub.add_parser("derive", help="list the sympy derivations or print one (checked against lindiff)")
    p.add_argument("name", nargs="?")
    p.add_argument("--latex", action="store_true")
    p.add_argument("--no-check", action="store_true")
    p.set_defaults(func=_cmd_derive)

    p = sub.add_parser("sampler", help="print the per-step affine coefficients a sampler runs")
    p.add_argument("name")
    p.add_argument("--schedule", default="linear", choices=["linear", "cosine", "vp", "ou"])
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--t-min", type=float, default=0.0)
    p.add_argument("--eta", type=float, default=None)
    p.add_argument("--spacing", choices=["leading", "trailing", "linspace"])
    p.add_argument("--format", default="text", choices=FORMATS)
    p.set_defaults(func=_cmd_sampler)

    try:
        from .stability import add_cli

        add_cli(sub)
    except ImportError:  # pragma: no cover
        pass
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        parser.exit(2, f"lindiff: error: {exc}\n")
    except BrokenPipeError:  # output piped into head & co.: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
