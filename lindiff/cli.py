"""Command line: ``lindiff transition | stability | variance | derive | sampler | oracle`` (also ``python -m lindiff``).

Every command prints exactly one document in the chosen ``--format`` (text, markdown, latex, csv, json):
commands that make several tables print them as one JSON object, one LaTeX fragment, or, for CSV, the
table chosen with ``--table NAME``.  Bad arguments are reported before any computation, naming the flag
and the rule, with exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

from .tables import FORMATS, Table, Tables

SCHEDULES = ("linear", "cosine", "vp", "ou")
SPECTRA_HELP = "'power' (lambda_k ~ k^-exponent, mean 1), 'cifar' (CIFAR-10 pixel covariance, subsampled to d) or a .npy file"


class CLIError(ValueError):
    """A bad command-line argument: reported as ``lindiff <command>: error: ...`` with exit status 2."""


# ------------------------------------------------------------------------------------------------
# argument types: each names the rule it enforces (argparse prefixes the flag)
def _number_list(kind: str, positive: bool = True, integer: bool = False):
    def parse(text: str):
        values = []
        for item in str(text).split(","):
            item = item.strip()
            try:
                value = int(item) if integer else float(item)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected comma-separated {kind}, e.g. {'4,10,40' if integer else '0.5,1.1,2'}; {item!r} is not "
                    f"{'an integer' if integer else 'a number'}") from None
            if not np.isfinite(value) or (positive and value <= 0):
                raise argparse.ArgumentTypeError(f"expected comma-separated {kind}; {item!r} is not positive")
            values.append(value)
        return values

    parse.__name__ = kind  # argparse shows this name in its generic messages
    return parse


def _bounded_int(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} (an integer >= {minimum}), got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} (an integer >= {minimum}), got {value}")
        return value

    parse.__name__ = what
    return parse


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}") from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


_nonnegative_float.__name__ = "non-negative number"


def _model_arg(text: str) -> str:
    from .transition import parse_model

    try:
        parse_model(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected dense, conv or conv:K with K an odd kernel size (e.g. conv:3), "
                                         f"got {text!r}") from None
    return text


_model_arg.__name__ = "model"


def _grid_arg(text: str) -> tuple[int, ...]:
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        grid = tuple(int(p) for p in parts)
    except ValueError:
        grid = ()
    if not grid or any(n < 1 for n in grid):
        raise argparse.ArgumentTypeError(f"expected grid sizes such as 8x8 or 16 or 4x4x4 (positive integers), got {text!r}")
    return grid


_grid_arg.__name__ = "grid"
_LIST_FLAGS = ("--ratios", "--Ns", "--times", "--eps", "--Ps", "--ridges", "--window")


def _join_negative_lists(argv: list[str]) -> list[str]:
    """``--ratios -1,2`` -> ``--ratios=-1,2``: argparse would read ``-1,2`` as an option and say only
    'expected one argument'; joined, the list's own type check names the problem."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _LIST_FLAGS and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1][1:2].isdigit():
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


# ------------------------------------------------------------------------------------------------
# shared pieces
def _process(args):
    from .processes import DDPM, OU, VP

    if args.schedule == "linear":
        return DDPM.linear(args.T)
    if args.schedule == "cosine":
        return DDPM.cosine(args.T)
    if args.schedule == "vp":
        return VP.linear()
    return OU()


def _spectrum(args, d: int) -> np.ndarray:
    from .spectra import cifar10, power_law

    if args.spectrum == "power":
        return power_law(d, args.exponent)
    if args.spectrum == "cifar":
        values = cifar10(normalise_trace=True)
        if d > values.size:
            raise CLIError(f"--d {d} exceeds the {values.size} CIFAR-10 eigenvalues")
        # every (3072/d)-th eigenvalue keeps the shape of the spectrum at lower d
        idx = np.linspace(0, values.size - 1, d).round().astype(int)
        out = values[idx]
        return out * d / out.sum()
    path = Path(args.spectrum)
    if not path.exists():
        raise CLIError(f"--spectrum must be {SPECTRA_HELP}; file {path} not found")
    try:
        values = np.load(path).astype(float).ravel()
    except Exception as exc:  # a corrupt or non-.npy file: say which flag it came from
        raise CLIError(f"--spectrum {path} could not be read as a .npy array: {exc}") from None
    if values.size != d:
        raise CLIError(f"--spectrum file holds {values.size} eigenvalues but --d is {d}")
    return values


def _grid_spectrum(args, grid: tuple[int, ...]) -> np.ndarray:
    """The power of a stationary field on ``grid``: the power law on the grid, or a .npy file of its shape."""
    from .spectra import power_law_grid

    if args.spectrum == "power":
        return power_law_grid(grid, args.exponent)
    if args.spectrum == "cifar":
        raise CLIError("--spectrum cifar is the eigenvalue list of a dense covariance, not a stationary power spectrum; "
                       "with --grid or --model conv use --spectrum power or a .npy file of the grid's shape")
    path = Path(args.spectrum)
    if not path.exists():
        raise CLIError(f"--spectrum must be 'power' or a .npy file of the grid's shape with --grid or --model conv; "
                       f"file {path} not found")
    try:
        values = np.load(path).astype(float)
    except Exception as exc:
        raise CLIError(f"--spectrum {path} could not be read as a .npy array: {exc}") from None
    if values.shape != grid and values.size != math.prod(grid):
        raise CLIError(f"--spectrum file has shape {values.shape} but the grid is {'x'.join(map(str, grid))}")
    return values.reshape(grid)


def _spectrum_label(args) -> str:
    if args.spectrum == "power":
        return f"power law k^-{args.exponent:g}"
    return "CIFAR-10, subsampled" if args.spectrum == "cifar" else f"from {args.spectrum}"


def _executor(workers: int):
    """``--workers N``: a local process pool for N > 1 (values pickle; results equal the serial run)."""
    if workers <= 1:
        return None
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers)


def _check_plot_path(path: str | None) -> None:
    """Fail before computing: matplotlib present, folder exists, a format matplotlib writes."""
    if not path:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError("--plot needs matplotlib, which is not installed: pip install 'lindiff[plot]'") from None
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise CLIError(f"--plot {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"--plot {path}: folder {folder} is not writable")
    suffix = target.suffix.lower().lstrip(".")
    if suffix not in ("png", "pdf", "svg", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp"):
        raise CLIError(f"--plot {path}: use a .png, .pdf or .svg file name (got suffix {target.suffix or 'none'!r})")


def _check_sampler(args, process) -> None:
    if args.sampler not in _samplers_for(process):
        raise CLIError(f"--sampler {args.sampler} needs a continuous process; with --schedule {args.schedule} "
                       f"choose one of: {', '.join(_samplers_for(process))}")


def _check_csv_table(args, names: tuple[str, ...]) -> None:
    """Before computing: CSV holds one table, so a command with several needs --table."""
    if args.format == "csv" and args.table is None:
        raise CLIError("--format csv holds one table: choose it with --table NAME, one of: " + ", ".join(names))


def _write_plot(plot, *args) -> None:
    plot(*args)
    print(f"figure written to {args[-1]}", file=sys.stderr)


def _emit(result: Table | Tables, args) -> None:
    table_name = getattr(args, "table", None)
    if isinstance(result, Table):
        if table_name:
            raise CLIError(f"--table: this command prints a single table; drop --table {table_name}")
        print(result.render(args.format))
        return
    print(result.render(args.format, name=table_name))


def _progress(args) -> bool | None:
    return False if getattr(args, "no_progress", False) else None


def _add_output_flags(p: argparse.ArgumentParser, tables: tuple[str, ...] = (), plot: bool = True) -> None:
    p.add_argument("--format", default="text", choices=FORMATS,
                   help="output format; every command prints exactly one document (default: text)")
    if tables:
        p.add_argument("--table", choices=tables, default=None,
                       help="print only this table (required with --format csv, which holds one table): "
                            + ", ".join(tables))
    if plot:
        p.add_argument("--plot", metavar="FILE.png", help="also write a figure (needs matplotlib: lindiff[plot])")


# ------------------------------------------------------------------------------------------------
# commands
def _cmd_transition(args) -> int:
    from .transition import transition_sweep, transition_table

    _check_plot_path(args.plot)
    process = _process(args)
    _check_sampler(args, process)
    from .transition import parse_model

    kind, size = parse_model(args.model)
    grid = args.grid
    if grid is None and kind == "conv":
        grid = (32 if args.d is None else args.d,)  # a periodic 1-D signal of --d points
    if grid is not None:
        d = math.prod(grid)
        if args.d is not None and args.d != d:
            raise CLIError(f"--d {args.d} does not match --grid {'x'.join(map(str, grid))} (d = {d}); give one of them")
        if size is not None and size > min(grid):
            raise CLIError(f"--model {args.model}: the kernel ({size} wide) exceeds the grid {'x'.join(map(str, grid))}")
        spectrum = _grid_spectrum(args, grid)
        label = (f"stationary, power law |f|^-{args.exponent:g} on grid {'x'.join(map(str, grid))}"
                 if args.spectrum == "power" else f"stationary, from {args.spectrum} on grid {'x'.join(map(str, grid))}")
    else:
        label = _spectrum_label(args)
        d = 32 if args.d is None else args.d
        spectrum = _spectrum(args, d)
    ex = _executor(args.workers)
    try:
        result = transition_sweep(
            d=d, grid=grid, model=args.model, ratios=args.ratios, spectrum=spectrum, process=process, sampler=args.sampler,
            steps=args.steps, ridge=args.ridge, train_time=args.train_time, repeats=args.repeats, seed=args.seed,
            executor=ex, progress=_progress(args), spectrum_label=label,
            **({"final_noise": not args.no_final_noise} if args.sampler == "ddpm" else {}))
    finally:
        if ex is not None:
            ex.shutdown()
    _emit(transition_table(result), args)
    if args.plot:
        from .plots import plot_transition

        _write_plot(plot_transition, result, args.plot)
    return 0


STABILITY_TABLES = ("per_time", "integrated", "kl_bound", "sampler")


def _cmd_stability(args) -> int:
    from .processes import OU
    from .stability import stability_tables

    _check_plot_path(args.plot)
    process = OU(3.0)
    if max(args.times) > process.T:
        raise CLIError(f"--times must lie in (0, {process.T:g}] (the OU process runs to T = {process.T:g})")
    if max(args.eps) >= process.T:
        raise CLIError(f"--eps must lie in (0, {process.T:g})")
    if min(args.Ns) < 2:
        raise CLIError("--Ns: every training-set size must be at least 2 (replace-one needs a second point)")
    _check_csv_table(args, STABILITY_TABLES)
    tables = stability_tables(d=args.d, Ns=args.Ns, times=args.times, eps_values=args.eps, ridge=args.ridge,
                              repeats=args.repeats, draws=args.draws, integrated_repeats=args.integrated_repeats,
                              process=process, seed=args.seed, progress=_progress(args))
    _emit(Tables(tables), args)
    if args.plot:
        from .plots import plot_stability

        _write_plot(plot_stability, tables["per_time"], tables["integrated"], args.plot)
    return 0


VARIANCE_TABLES = ("variance", "v_kernel", "v_spectrum")


def _cmd_variance(args) -> int:
    from .variance import variance_tables

    _check_plot_path(args.plot)
    process = _process(args)
    _check_sampler(args, process)
    if args.window is not None and (len(args.window) != 2 or args.window[0] >= args.window[1]):
        raise CLIError("--window must be two increasing times LO,HI")
    _check_csv_table(args, VARIANCE_TABLES)
    tables = variance_tables(d=args.d, ratios=args.ratios, Ps=args.Ps, ridges=args.ridges, process=process,
                             sampler=args.sampler, steps=args.steps, draws=args.draws, samples=args.samples,
                             exponent=args.exponent, allocation=args.allocation,
                             window=tuple(args.window) if args.window else None, weighting=args.weighting,
                             seed=args.seed)
    _emit(Tables(tables), args)
    if args.plot:
        from .plots import plot_variance

        _write_plot(plot_variance, tables["variance"], args.plot)
    return 0


def _derivations_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "derivations"
    if not (here / "_harness.py").exists():
        raise CLIError("the derivations/ folder ships with the source tree; run `lindiff derive` from a checkout "
                       "(pip install -e .)")
    return here


def _cmd_derive(args) -> int:
    root = _derivations_dir()
    if str(root.parent) not in sys.path:
        sys.path.insert(0, str(root.parent))
    from derivations import _harness

    if not args.name:
        for name in _harness.names():
            module = _harness.load(name)
            print(f"{name:20s} {module.make_page().title}")
        return 0
    if args.name not in _harness.names():
        raise CLIError(f"unknown derivation {args.name!r}; choose from: {', '.join(_harness.names())}")
    page = _harness.run(_harness.load(args.name), check=not args.no_check)
    print(page.render("latex" if args.latex else "text"))
    return 0


def _samplers_for(process) -> tuple[str, ...]:
    from .samplers import SAMPLERS, build_sampler

    if not process.discrete:
        return SAMPLERS
    out = []
    for name in SAMPLERS:
        try:
            build_sampler(process, name, 1)
        except ValueError:
            continue
        out.append(name)
    return tuple(out)


def _cmd_sampler(args) -> int:
    from .samplers import sampler_table

    process = _process(args)
    if args.name not in _samplers_for(process):
        raise CLIError(f"sampler {args.name!r} needs a continuous process (--schedule vp or ou); with --schedule "
                       f"{args.schedule} choose one of: {', '.join(_samplers_for(process))}")
    opts = {}
    if args.eta is not None:
        opts["eta"] = args.eta
    if args.spacing:
        opts["spacing"] = args.spacing
    _emit(sampler_table(process, args.name, args.steps, args.t_min, **opts), args)
    return 0


_ORACLE_LIBRARIES = ("diffusers", "kdiffusion")


def _cmd_oracle(args) -> int:
    _check_plot_path(args.plot)
    if args.library == "kdiffusion":
        if args.search is not None or args.precision != "float64":
            raise CLIError("lindiff oracle kdiffusion: --search and --precision apply to diffusers only")
        try:
            from .adapters import _kdiffusion_conformance as kdc
        except ImportError as exc:
            raise CLIError(f"lindiff oracle kdiffusion needs torch: pip install 'lindiff[kdiffusion]' ({exc})") from None
        try:
            table = kdc.conformance(args.level, d=args.d, samplers=args.schedulers, progress=_progress(args))
        except (ImportError, FileNotFoundError) as exc:
            raise CLIError(f"k-diffusion's sampler module was not found ({exc}); install it with: pip install "
                           "--no-deps k-diffusion==0.1.1.post1") from None
        _emit(table, args)
        if args.plot:
            from .adapters.diffusers import plot_conformance

            _write_plot(plot_conformance, table, args.plot)
        return 0
    if args.search is not None and args.search < 1:
        raise CLIError(f"--search {args.search}: give the number of configurations to try (>= 1)")
    try:
        from .adapters import diffusers as adapter
    except ImportError as exc:
        raise CLIError(f"lindiff oracle diffusers needs torch and diffusers: pip install 'lindiff[diffusers]' ({exc})") from None
    if args.schedulers:  # diffusers class names
        unknown = [n for n in args.schedulers if n not in adapter.SUPPORTED]
        if unknown:
            raise CLIError(f"--schedulers: unknown {', '.join(unknown)}; choose from: {', '.join(adapter.SUPPORTED)}")
    if args.search is not None:
        from .testing.search import scheduler_configs, search_configs

        space = scheduler_configs(args.schedulers) if args.schedulers else None
        result = search_configs(space=space, max_examples=args.search, findings=args.findings, seed=args.seed,
                                skip_known=args.new_only)
        _emit(result.table(), args)
        return 0
    table = adapter.conformance(args.level, d=args.d, precision=args.precision, schedulers=args.schedulers,
                                progress=_progress(args))
    _emit(table, args)
    if args.plot:
        _write_plot(adapter.plot_conformance, table, args.plot)
    return 0


# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .samplers import SAMPLERS

    parser = argparse.ArgumentParser(
        prog="lindiff", description="Exact diffusion models with linear denoisers on Gaussian data: every number "
                                    "is exact or carries its Monte Carlo standard error.")
    parser.add_argument("--version", action="version", version=f"lindiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("transition", help="memorisation-to-generalisation sweep over N/d (the main job)",
                       description="Sweep N/d across the transition at N = d: the exact expected KL between the data "
                                   "and the fitted Gaussian (Wishart), Monte Carlo over training sets of the same and "
                                   "of the exact sampler law of the fitted linear denoiser, the d/(4N) law, and the "
                                   "train/test DSM losses and their gap.")
    p.add_argument("--d", type=_bounded_int(1, "dimension"), default=None, help="data dimension (default 32)")
    p.add_argument("--ratios", type=_number_list("positive N/d ratios"), default=[0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2, 5, 10],
                   help="comma-separated N/d values (default 0.5,0.75,0.9,1.1,1.25,1.5,2,5,10)")
    p.add_argument("--spectrum", default="power", help=f"data covariance eigenvalues: {SPECTRA_HELP} (default power); "
                                                        "with --grid or a conv model 'power' (|f|^-exponent on the grid) "
                                                        "or a .npy file of the grid's shape")
    p.add_argument("--exponent", type=_nonnegative_float, default=1.0,
                   help="power-law exponent p in lambda_k ~ k^-p, or power ~ |f|^-p on a grid (default 1; images: 2)")
    p.add_argument("--model", type=_model_arg, default="dense",
                   help="linear denoiser fitted to each training set: dense (the d x d fit), conv (a full-support "
                        "convolution: translation-equivariant) or conv:K (a local K x ... x K kernel, K odd) "
                        "(default dense); conv models need stationary data: on --grid, else the periodic 1-D grid of "
                        "--d points")
    p.add_argument("--grid", type=_grid_arg, default=None,
                   help="periodic grid of the data, e.g. 8x8 (then d = 64): the data are a stationary field with power "
                        "~ |f|^-exponent, for every --model (default: no grid, data N(0, diag(spectrum)))")
    p.add_argument("--schedule", default="linear", choices=SCHEDULES,
                   help="forward process: DDPM linear or cosine (T steps), continuous VP linear, or OU (default linear)")
    p.add_argument("--T", type=_bounded_int(1, "number of DDPM steps"), default=1000,
                   help="DDPM steps for --schedule linear/cosine (default 1000)")
    p.add_argument("--sampler", default="ddpm", choices=SAMPLERS, metavar="SAMPLER",
                   help="sampler whose exact output law is compared with the data (default ddpm); one of: "
                        + ", ".join(SAMPLERS))
    p.add_argument("--steps", type=_bounded_int(1, "number of sampler steps"), default=None,
                   help="sampler steps (grid points for continuous samplers, which need it; default: all DDPM steps)")
    p.add_argument("--no-final-noise", action="store_true",
                   help="ddpm: Ho et al.'s noiseless last step (the law is then singular for N < d)")
    p.add_argument("--ridge", type=_nonnegative_float, default=0.0,
                   help="ridge lambda added as lambda ||W_t||_F^2 to the per-time training loss (default 0)")
    p.add_argument("--train-time", type=_nonnegative_float, default=None,
                   help="gradient-flow training time from zero weights: early stopping (default: trained to the minimum)")
    p.add_argument("--repeats", type=_bounded_int(1, "training sets per N"), default=20,
                   help="training sets per N for the Monte Carlo columns (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training sets (default 0); the result does not "
                                                       "depend on --workers")
    p.add_argument("--workers", type=_bounded_int(1, "number of worker processes"), default=1,
                   help="worker processes for the Monte Carlo over training sets (default 1: in-process)")
    _add_output_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    p.set_defaults(func=_cmd_transition)

    p = sub.add_parser("stability", help="score stability: exact gap vs stability bound tables",
                       description="Score stability of the fitted linear denoiser (Farghly, Rebeschini, Deligiannidis "
                                   "& Doucet 2025, made exact for linear models): the exact train-test gap against the "
                                   "replace-one stability bound, per time and integrated, the Girsanov KL bound, and "
                                   "how coarse sampler steps regularise. Data N(0, diag(k^-1)), OU process to T = 3.")
    p.add_argument("--d", type=_bounded_int(1, "dimension"), default=5, help="data dimension (default 5)")
    p.add_argument("--Ns", type=_number_list("training-set sizes", integer=True), default=[4, 10, 40, 160],
                   help="comma-separated training-set sizes (default 4,10,40,160)")
    p.add_argument("--times", type=_number_list("positive times"), default=[0.05, 0.3, 1.0],
                   help="comma-separated diffusion times of the per-time table (default 0.05,0.3,1.0)")
    p.add_argument("--eps", type=_number_list("positive early-stopping times"), default=[0.001, 0.01, 0.1],
                   help="comma-separated smallest times of the integrated table (default 0.001,0.01,0.1)")
    p.add_argument("--ridge", type=_nonnegative_float, default=0.0, help="ridge of the fitted denoiser (default 0)")
    p.add_argument("--repeats", type=_bounded_int(2, "training sets per N"), default=48,
                   help="training sets per N in the per-time table (default 48)")
    p.add_argument("--draws", type=_bounded_int(1, "replacement draws per set"), default=4,
                   help="replacement points z' per training set, each averaged exactly over the replaced index i "
                        "(default 4)")
    p.add_argument("--integrated-repeats", type=_bounded_int(2, "training sets per N"), default=32,
                   help="training sets per N in the integrated table (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    _add_output_flags(p, tables=STABILITY_TABLES)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_stability)

    p = sub.add_parser("variance", help="generalisation through variance: finite noise draws P per training point",
                       description="A linear denoiser fitted with P noise draws per training point (Vastola 2025) is a "
                                   "random model; each draw's sampler law is exact and the table averages over draws: "
                                   "variance off the span of the centred training points, rank, KL(data || law) and "
                                   "distance to the nearest training point against P and N/d, with the 1/P series in "
                                   "closed form, and the V-kernel (covariance of the DSM target) against the data "
                                   "spectrum. Data N(0, diag(k^-exponent)).")
    p.add_argument("--d", type=_bounded_int(1, "dimension"), default=16, help="data dimension (default 16)")
    p.add_argument("--ratios", type=_number_list("positive N/d ratios"), default=[0.25, 0.5, 2.0],
                   help="comma-separated N/d values (default 0.25,0.5,2)")
    p.add_argument("--Ps", type=_number_list("noise draws per point", integer=True), default=[1, 2, 4, 16, 64],
                   help="comma-separated noise draws P per training point (default 1,2,4,16,64)")
    p.add_argument("--ridges", type=_number_list("non-negative ridges", positive=False), default=[0.0, 0.01],
                   help="comma-separated ridges of the fit (default 0,0.01)")
    p.add_argument("--exponent", type=_nonnegative_float, default=1.0,
                   help="power-law exponent p in lambda_k ~ k^-p (default 1)")
    p.add_argument("--schedule", default="linear", choices=SCHEDULES, help="forward process (default linear)")
    p.add_argument("--T", type=_bounded_int(1, "number of DDPM steps"), default=1000, help="DDPM steps (default 1000)")
    p.add_argument("--sampler", default="ddpm", choices=SAMPLERS, metavar="SAMPLER",
                   help="sampler whose exact law is averaged over noise draws (default ddpm); one of: " + ", ".join(SAMPLERS))
    p.add_argument("--steps", type=_bounded_int(1, "number of sampler steps"), default=20,
                   help="sampler steps; noise draws are made at these times (default 20)")
    p.add_argument("--draws", type=_bounded_int(2, "noise-draw realisations"), default=24,
                   help="independent realisations of the P-draw fit for the Monte Carlo average (default 24)")
    p.add_argument("--samples", type=_bounded_int(1, "samples per law"), default=1000,
                   help="samples per law for the nearest-training-point distance (default 1000)")
    p.add_argument("--allocation", choices=("per_step", "schedule"), default="per_step",
                   help="which times get noise draws: every sampler step, or times drawn from the training schedule "
                        "(default per_step)")
    p.add_argument("--window", type=_number_list("times LO,HI", positive=False), default=None,
                   help="only times in [LO, HI] get noise draws (default: all)")
    p.add_argument("--weighting", choices=("eps", "score", "x0"), default="eps",
                   help="loss weighting of the fit: eps-, score- or x0-prediction (default eps)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    _add_output_flags(p, tables=VARIANCE_TABLES)
    p.set_defaults(func=_cmd_variance)

    p = sub.add_parser("derive", help="list the sympy derivations, or print one checked against lindiff",
                       description="Each derivation derives a closed form with sympy from its definition and checks "
                                   "the result against lindiff's numerical code and high-precision mpmath.")
    p.add_argument("name", nargs="?", help="derivation to print (omit to list them)")
    p.add_argument("--latex", action="store_true", help="print the derivation as LaTeX")
    p.add_argument("--no-check", action="store_true", help="skip the numerical checks against lindiff")
    p.set_defaults(func=_cmd_derive)

    p = sub.add_parser("sampler", help="print the per-step affine coefficients a sampler runs",
                       description="The equations a sampler runs: per step x_next = a x + a_prev x_prev + sum_j c_j "
                                   "s_j + nu z, with the score evaluations s_j (stage inputs and times).")
    p.add_argument("name", choices=SAMPLERS, metavar="NAME", help="sampler, one of: " + ", ".join(SAMPLERS))
    p.add_argument("--schedule", default="linear", choices=SCHEDULES, help="forward process (default linear)")
    p.add_argument("--T", type=_bounded_int(1, "number of DDPM steps"), default=1000, help="DDPM steps (default 1000)")
    p.add_argument("--steps", type=_bounded_int(1, "number of sampler steps"), default=None,
                   help="inference steps (DDPM: default all T) or grid points (continuous samplers: required)")
    p.add_argument("--t-min", type=_nonnegative_float, default=0.0, help="end time of continuous samplers (default 0)")
    p.add_argument("--eta", type=_nonnegative_float, default=None, help="ddim: noise scale eta in [0, 1] (default 0)")
    p.add_argument("--spacing", choices=("leading", "trailing", "linspace"),
                   help="DDPM/DDIM timestep spacing as in diffusers (default leading)")
    _add_output_flags(p, plot=False)
    p.set_defaults(func=_cmd_sampler)

    p = sub.add_parser("oracle", help="conformance of other libraries' samplers with lindiff's exact laws",
                       description="Runs every supported diffusers scheduler over a grid of configurations (prediction "
                                   "types, beta schedules, spacings, sigma options, solver orders and algorithms) with a "
                                   "linear model, probes each loop exactly (float64 by default) and prints scheduler, "
                                   "configuration, steps, mean and covariance errors, KL, verdict (PASS / FAIL / NaN / "
                                   "CRASH / UNDEFINED / UNSUPPORTED) and the known upstream issue. With --search, a "
                                   "hypothesis search for failing configurations, each shrunk to a minimal one.")
    p.add_argument("library", choices=_ORACLE_LIBRARIES,
                   help="diffusers schedulers, or k-diffusion's samplers (kdiffusion: its published sampling module)")
    p.add_argument("--level", choices=("quick", "standard"), default="standard",
                   help="grid size: quick (~140 configurations) or standard (adds 61-step DDIM and two 1000-step "
                        "DDPM loops; default)")
    p.add_argument("--schedulers", type=lambda text: [t.strip() for t in text.split(",") if t.strip()], default=None,
                   help="comma-separated scheduler class names (diffusers) or sampler names (kdiffusion, e.g. "
                        "heun,lms) to restrict to (default: all supported)")
    p.add_argument("--precision", choices=("float64", "float32"), default="float64",
                   help="run the schedulers in float64 (tables widened; default) or float32 with a tolerance measured "
                        "from the float64 run")
    p.add_argument("--d", type=_bounded_int(1, "dimension"), default=3, help="dimension of the linear model (default 3)")
    p.add_argument("--search", type=int, default=None, metavar="N",
                   help="instead of the grid, search N random configurations for failures and shrink each")
    p.add_argument("--findings", type=_bounded_int(1, "number of findings"), default=3,
                   help="--search: stop after this many distinct findings (default 3)")
    p.add_argument("--new-only", action="store_true", help="--search: skip failures a known upstream issue explains")
    p.add_argument("--seed", type=int, default=0, help="--search: seed (default 0)")
    _add_output_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_oracle)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = _join_negative_lists(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    command = parser.prog + (f" {args.command}" if getattr(args, "command", None) else "")
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # CLIError and the library's own argument checks
        parser.exit(2, f"{command}: error: {exc}\n")
    except ImportError as exc:  # an optional extra that is missing: one line, not a traceback
        parser.exit(2, f"{command}: error: {exc}\n")
    except BrokenPipeError:  # output piped into head & co.: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
