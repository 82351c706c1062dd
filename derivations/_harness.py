"""A small harness that turns each derivation into a short script that reads like a page of a paper.

A derivation module defines ``PAGE = Page(name, title, assumptions, sources)`` and two functions:

``derive(page)``
    starts from the definitions and records each step with ``page.step(text, expr)``; the results the
    numeric code uses are stored with ``page.result(name, expr)``.
``check(page, rng)``
    compares the results with lindiff on random inputs: ``page.compare`` for float64 agreement and
    ``page.compare_mp`` for a 50-digit mpmath evaluation where float64 cancellation could hide an
    error.  Any disagreement raises ``AssertionError`` — a bug in the derivation or in the code.

``run(module)`` does both; ``python derivations/NAME.py [--latex]`` prints the page and the checks.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import mpmath as mp
import numpy as np
import sympy as sp

HERE = Path(__file__).resolve().parent


@dataclass
class Page:
    name: str
    title: str
    assumptions: list[str]
    sources: list[str] = field(default_factory=list)
    steps: list[tuple[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    # -- recording ---------------------------------------------------------------------------------
    def step(self, text: str, expr: Any = None) -> Any:
        self.steps.append((text, expr))
        return expr

    def result(self, name: str, expr: Any) -> Any:
        self.results[name] = expr
        self.steps.append((f"Result `{name}`", expr))
        return expr

    # -- checking ----------------------------------------------------------------------------------
    def compare(self, label: str, derived, lindiff_value, rtol: float = 1e-10, atol: float = 0.0) -> None:
        derived = np.asarray(derived, dtype=float)
        lindiff_value = np.asarray(lindiff_value, dtype=float)
        if not np.allclose(derived, lindiff_value, rtol=rtol, atol=atol):
            err = np.max(np.abs(derived - lindiff_value))
            raise AssertionError(f"{self.name}: {label}: derived {derived} != lindiff {lindiff_value} (max abs err {err:.3e})")
        err = float(np.max(np.abs(derived - lindiff_value) / np.maximum(np.abs(derived), 1e-300), initial=0.0))
        self.checks.append(f"{label}: agrees (max rel err {err:.1e}, rtol {rtol:g})")

    def compare_mp(self, label: str, expr, subs: dict, lindiff_value: float, rtol: float = 1e-12, dps: int = 50) -> None:
        """Evaluate ``expr`` at ``subs`` with ``dps`` digits and compare with lindiff's float."""
        with mp.workdps(dps):
            exact = sp.N(expr.subs({k: sp.Float(v, dps) if isinstance(v, float) else v for k, v in subs.items()}), dps)
            exact_mp = mp.mpf(str(exact))
            err = abs(mp.mpf(float(lindiff_value)) - exact_mp) / max(abs(exact_mp), mp.mpf("1e-300"))
        if err > rtol:
            raise AssertionError(f"{self.name}: {label}: lindiff {lindiff_value!r} vs {dps}-digit {exact} (rel err {float(err):.3e})")
        self.checks.append(f"{label}: agrees with a {dps}-digit evaluation (rel err {float(err):.1e})")

    # -- output ------------------------------------------------------------------------------------
    def render(self, fmt: str = "text") -> str:
        """The page as plain text (sympy's ASCII pretty-printing), or as a LaTeX fragment that compiles with
        plain pdflatex and amsmath (text escaped, each result in a display ``\\[ ... \\]``)."""
        if fmt == "latex":
            return self._render_latex()
        lines = [self.title, "=" * len(self.title), "", "Assumptions:"]
        lines += [f"  - {a}" for a in self.assumptions]
        if self.sources:
            lines += ["Sources:"] + [f"  - {s}" for s in self.sources]
        lines.append("")
        for i, (text, expr) in enumerate(self.steps, 1):
            lines.append(f"({i}) {text}")
            if expr is not None:
                lines += ["    " + ln for ln in str(sp.pretty(expr, use_unicode=False)).splitlines()]
            lines.append("")
        if self.checks:
            lines.append("Checks against lindiff:")
            lines += [f"  - {c}" for c in self.checks]
        return "\n".join(lines)

    def _render_latex(self) -> str:
        from lindiff.tables import latex_escape

        def items(entries):
            return [r"\begin{itemize}"] + [rf"\item {latex_escape(e)}" for e in entries] + [r"\end{itemize}"]

        lines = [rf"\section*{{{latex_escape(self.title)}}}", r"\paragraph{Assumptions.}"] + items(self.assumptions)
        if self.sources:
            lines += [r"\paragraph{Sources.}"] + items(self.sources)
        lines.append(r"\begin{enumerate}")
        for text, expr in self.steps:
            lines.append(rf"\item {latex_escape(text)}")
            if expr is not None:
                lines.append(rf"\[ {sp.latex(expr)} \]")
        lines.append(r"\end{enumerate}")
        if self.checks:
            lines += [r"\paragraph{Checks against lindiff.}"] + items(self.checks)
        return "\n".join(lines)


def symbolic_matrix(prefix: str, rows: int, cols: int | None = None, symmetric: bool = False) -> sp.Matrix:
    """A rows x cols matrix of symbols ``{prefix}{i}{j}`` (square, ``{prefix}{min}{max}``, when symmetric)."""
    if symmetric:
        return sp.Matrix(rows, rows, lambda i, j: sp.Symbol(f"{prefix}{min(i, j)}{max(i, j)}"))
    return sp.Matrix(rows, rows if cols is None else cols, lambda i, j: sp.Symbol(f"{prefix}{i}{j}"))


def normal_expectation(expr, normals) -> sp.Expr:
    """E of a polynomial of degree <= 4 in each of the independent standard normals ``normals``
    (moments 1, 0, 1, 0, 3)."""
    poly = sp.Poly(sp.expand(expr), *normals)
    mom = {0: 1, 1: 0, 2: 1, 3: 0, 4: 3}
    return sp.expand(sum(c * sp.prod([mom[k] for k in m]) for m, c in poly.terms()))


def load(name: str):
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    return importlib.import_module(f"derivations.{name}")


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def run(module, rng: np.random.Generator | None = None, check: bool = True) -> Page:
    """Derive, then check against lindiff; returns the filled page."""
    page = module.make_page()
    module.derive(page)
    if check:
        module.check(page, rng or np.random.default_rng(12345))
    return page


def main(module_name: str) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=f"Run the derivation {module_name!r}")
    parser.add_argument("--latex", action="store_true", help="print the steps as LaTeX")
    parser.add_argument("--no-check", action="store_true", help="derive only")
    args = parser.parse_args()
    start = time.perf_counter()
    page = run(load(module_name), check=not args.no_check)
    print(page.render("latex" if args.latex else "text"))
    print(f"\n[{time.perf_counter() - start:.2f} s]")
