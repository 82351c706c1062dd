"""Shared command-line handling for the example scripts: ``--small`` (smoke-test sizes), ``--out`` (figure
folder), ``--format`` (table format) and ``--seed``."""

import argparse
from pathlib import Path


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help="small sizes (seconds; used by the smoke test)")
    parser.add_argument("--out", default=".", help="folder for the figure (default: current folder)")
    parser.add_argument("--format", default="text", choices=["text", "markdown", "latex", "csv", "json"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return args


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig, args, name: str) -> None:
    path = Path(args.out) / name
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"figure: {path}")
