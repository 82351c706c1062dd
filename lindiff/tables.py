"""``Table``: the one printable result type (text, Markdown, LaTeX, CSV, JSON).

Every table carries a caption and, per column, a unit and a note saying which formula or which
estimate it holds, so a pasted table is self-describing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Table", "Tables", "Column", "FORMATS", "latex_escape"]

FORMATS = ("text", "markdown", "latex", "csv", "json")
TEXT_WIDTH = 100
"""Text tables wrap their columns into blocks no wider than this (a terminal, a paper's listing)."""


@dataclass(frozen=True)
class Column:
    name: str
    unit: str = ""
    note: str = ""  # which formula / estimate the column holds
    fmt: str = ".4g"


def _fmt_value(value: Any, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if _is_pair(value):  # (mean, stderr)
        mean, err = value
        return f"{_fmt_value(mean, fmt)} ± {_fmt_value(err, '.2g')}"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    x = float(value)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        return "nan"
    return format(x, fmt)


def _json_value(value: Any) -> Any:
    if isinstance(value, (tuple, list)) and len(value) == 2 and not isinstance(value, str):
        return {"mean": _json_value(value[0]), "stderr": _json_value(value[1])}
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value, "shape", None) == ()):
        x = float(value)
        if math.isinf(x):
            out: dict[str, Any] = {"value": "inf" if x > 0 else "-inf"}
            reason = getattr(value, "reason", None)
            if reason:
                out["reason"] = reason
            return out
        return x
    if hasattr(value, "item"):
        return value.item()
    return value


@dataclass(frozen=True)
class Table:
    """Rows of values under named columns, with a caption.

    Values may be numbers, strings, ``None`` (blank) or ``(mean, stderr)`` pairs (printed ``m ± s``).

    >>> t = Table("Demo", [Column("N"), Column("KL", "nats", "exact")], [[10, 0.5]])
    >>> print(t.render("markdown").splitlines()[2])
    | N | KL [nats] |
    """

    caption: str
    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]
    notes: Sequence[str] = field(default_factory=tuple)
    key_columns: int = 1  # columns repeated in every block when the text table wraps

    def __post_init__(self) -> None:
        cols = tuple(c if isinstance(c, Column) else Column(str(c)) for c in self.columns)
        object.__setattr__(self, "columns", cols)
        rows = tuple(tuple(r) for r in self.rows)
        for r in rows:
            if len(r) != len(cols):
                raise ValueError(f"every row must have {len(cols)} values, got {len(r)}")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "notes", tuple(self.notes))

    def header(self) -> list[str]:
        return [c.name + (f" [{c.unit}]" if c.unit else "") for c in self.columns]

    def cells(self) -> list[list[str]]:
        return [[_fmt_value(v, c.fmt) for v, c in zip(r, self.columns)] for r in self.rows]

    def legend(self, units: bool = False) -> list[str]:
        """One line per annotated column (with its unit when ``units``; the text format puts units here
        instead of in the header, to keep tables narrow), then the notes."""
        out = []
        for c in self.columns:
            unit = f" [{c.unit}]" if units and c.unit else ""
            if c.note or unit:
                out.append(f"{c.name}{unit}: {c.note}" if c.note else f"{c.name}{unit}")
        return out + list(self.notes)

    def column(self, name: str) -> list[Any]:
        index = [c.name for c in self.columns].index(name)
        return [r[index] for r in self.rows]

    # -- renderers ---------------------------------------------------------------------------------
    def render(self, format: str = "text", *, width: int = TEXT_WIDTH) -> str:
        """The table as one document: ``text`` (fitted to ``width`` columns), ``markdown``, ``latex``
        (a ``table`` environment that compiles with plain pdflatex), ``csv`` (header + rows) or ``json``."""
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        if format == "text":
            return self._render_text(width)
        return getattr(self, f"_render_{format}")()

    def __str__(self) -> str:
        return self.render("text")

    def _render_text(self, width: int = TEXT_WIDTH) -> str:
        head, body = [c.name for c in self.columns], self.cells()
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]
        out = textwrap.wrap(self.caption, width) or [""]
        # Columns that do not fit side by side continue in further blocks, each repeating the key columns.
        key = list(range(min(self.key_columns, len(head))))
        rest = [i for i in range(len(head)) if i not in key]
        blocks: list[list[int]] = []
        current: list[int] = []
        used = sum(widths[i] + 2 for i in key)
        for i in rest:
            if current and used + widths[i] + 2 > width:
                blocks.append(current)
                current, used = [], sum(widths[j] + 2 for j in key)
            current.append(i)
            used += widths[i] + 2
        blocks.append(current)
        for n, block in enumerate(blocks):
            cols = key + block
            line = "  ".join(head[i].rjust(widths[i]) for i in cols)
            if n:
                out.append("")
            out += [line, "-" * len(line)]
            out += ["  ".join(r[i].rjust(widths[i]) for i in cols) for r in body]
        legend = self.legend(units=True)
        if legend:
            out.append("")
            for item in legend:
                out += textwrap.wrap(item, width, initial_indent="  ", subsequent_indent="    ")
        return "\n".join(out)

    def _render_markdown(self) -> str:
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        out = [f"**{esc(self.caption)}**", "", "| " + " | ".join(map(esc, self.header())) + " |",
               "|" + "|".join("---:" for _ in self.columns) + "|"]
        out += ["| " + " | ".join(map(esc, r)) + " |" for r in self.cells()]
        legend = self.legend()
        if legend:
            out.append("")
            out += [f"- {esc(x)}" for x in legend]
        return "\n".join(out)

    def _render_latex(self) -> str:
        spec = "r" * len(self.columns)
        out = [r"\begin{table}[ht]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\hline",
               " & ".join(latex_escape(h) for h in self.header()) + r" \\", r"\hline"]
        out += [" & ".join(_latex_cell(v) for v in r) + r" \\" for r in self.cells()]
        out += [r"\hline", r"\end{tabular}", rf"\caption{{{latex_escape(self.caption)}}}"]
        legend = self.legend()
        if legend:
            out += [r"\par\footnotesize", r"\begin{itemize}"] + [rf"\item {latex_escape(x)}" for x in legend]
            out += [r"\end{itemize}"]
        out += [r"\end{table}"]
        return "\n".join(out)

    def _render_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        names, rows = self._flat()
        writer.writerow(names)
        for r in rows:
            writer.writerow([_csv_value(v) for v in r])
        return buf.getvalue().rstrip("\n")

    def _flat(self) -> tuple[list[str], list[list[Any]]]:
        """Header and rows with every (mean, stderr) column split into "X" and "X stderr"."""
        paired = [any(_is_pair(r[i]) for r in self.rows) for i in range(len(self.columns))]
        names: list[str] = []
        for h, p in zip(self.header(), paired):
            names += [h, f"{h} stderr"] if p else [h]
        rows = []
        for r in self.rows:
            cells: list[Any] = []
            for v, p in zip(r, paired):
                if p:
                    cells += list(v) if _is_pair(v) else [v, None]
                else:
                    cells.append(v)
            rows.append(cells)
        return names, rows

    def to_json_data(self) -> dict[str, Any]:
        """The table as plain JSON-ready data (what ``render("json")`` prints)."""
        return {
            "caption": self.caption,
            "columns": [{"name": c.name, "unit": c.unit, "note": c.note} for c in self.columns],
            "rows": [[_json_value(v) for v in r] for r in self.rows],
            "notes": list(self.notes),
        }

    def _render_json(self) -> str:
        return json.dumps(self.to_json_data(), indent=2)

    def to_records(self) -> list[dict[str, Any]]:
        return [{c.name: v for c, v in zip(self.columns, r)} for r in self.rows]

    def to_pandas(self):
        """A ``pandas.DataFrame`` (pandas is optional: ``pip install 'lindiff[pandas]'``).

        Columns are named as in CSV (``"name [unit]"``); a (mean, stderr) column becomes two numeric
        columns ``X`` and ``X stderr``; blanks are NaN and infinities are ``inf`` (their reasons are kept
        in ``df.attrs["reasons"]``).  ``df.attrs`` also holds the caption and the legend.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Table.to_pandas needs pandas: pip install 'lindiff[pandas]'") from None
        names, rows = self._flat()
        reasons = {}
        clean = []
        for k, r in enumerate(rows):
            out = []
            for name, v in zip(names, r):
                if getattr(v, "reason", None):
                    reasons[(k, name)] = v.reason
                out.append(float("nan") if v is None else float(v) if hasattr(v, "__float__") and not isinstance(v, (str, bool)) else v)
            clean.append(out)
        df = pd.DataFrame(clean, columns=names)
        df.attrs.update(caption=self.caption, legend=self.legend(), reasons=reasons)
        return df


@dataclass(frozen=True)
class Tables:
    """Several named tables printed as one document per format (what a CLI command prints).

    ``json`` is one object ``{"tables": {name: table, ...}}``; ``csv`` holds one table, so it needs
    ``name`` (``render("csv", name="...")``) when there are several; the text formats print the tables
    one after another under their names; ``latex`` gives one ``table`` environment per table.

    >>> a = Table("A", [Column("x")], [[1]]); b = Table("B", [Column("y")], [[2]])
    >>> sorted(json.loads(Tables({"a": a, "b": b}).render("json"))["tables"])
    ['a', 'b']
    """

    tables: dict

    def __post_init__(self) -> None:
        items = dict(self.tables)
        if not items:
            raise ValueError("Tables needs at least one table")
        for name, table in items.items():
            if not isinstance(table, Table):
                raise TypeError(f"tables[{name!r}] must be a Table, got {type(table).__name__}")
        object.__setattr__(self, "tables", items)

    @property
    def names(self) -> list[str]:
        return list(self.tables)

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def select(self, name: str | None) -> "Tables":
        """Only the table ``name`` (all when None); a ValueError lists the names otherwise."""
        if name is None:
            return self
        if name not in self.tables:
            raise ValueError(f"no table named {name!r}; choose one of: {', '.join(self.names)}")
        return Tables({name: self.tables[name]})

    def render(self, format: str = "text", name: str | None = None, *, width: int = TEXT_WIDTH) -> str:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        chosen = self.select(name)
        if format == "csv":
            if len(chosen.tables) > 1:
                raise ValueError("CSV holds one table; choose it with --table NAME (name=...), one of: "
                                 + ", ".join(self.names))
            return next(iter(chosen.tables.values())).render("csv")
        if format == "json":
            return json.dumps({"tables": {k: t.to_json_data() for k, t in chosen.tables.items()}}, indent=2)
        if len(chosen.tables) == 1:
            return next(iter(chosen.tables.values())).render(format, width=width)
        parts = []
        for key, table in chosen.tables.items():
            body = table.render(format, width=width)
            if format == "text":
                parts.append(f"[{key}]\n{body}")
            elif format == "markdown":
                parts.append(f"### {key}\n\n{body}")
            else:
                parts.append(f"% table: {key}\n{body}")
        return "\n\n".join(parts)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
# Characters plain pdflatex cannot typeset from UTF-8 input without extra packages, as math.
_LATEX_UNICODE = {"±": r"$\pm$", "×": r"$\times$", "·": r"$\cdot$", "≤": r"$\le$", "≥": r"$\ge$",
                  "≈": r"$\approx$", "≍": r"$\asymp$", "→": r"$\to$", "←": r"$\leftarrow$", "−": "-", "–": "--",
                  "—": "---", "‖": r"$\|$", "∞": r"$\infty$", "√": r"$\surd$", "∑": r"$\sum$", "∫": r"$\int$",
                  "λ": r"$\lambda$", "σ": r"$\sigma$", "α": r"$\alpha$", "β": r"$\beta$", "ε": r"$\varepsilon$",
                  "μ": r"$\mu$", "ν": r"$\nu$", "η": r"$\eta$", "Σ": r"$\Sigma$", "Δ": r"$\Delta$", "τ": r"$\tau$",
                  "ρ": r"$\rho$", "θ": r"$\theta$", "χ": r"$\chi$", "²": r"$^2$", "³": r"$^3$", "½": r"$\frac12$",
                  "’": "'", "‘": "`", "“": "``", "”": "''", "…": r"\ldots{}", "°": r"$^\circ$", "é": r"\'e",
                  "è": r"\`e", "ö": r'\"o', "ü": r'\"u', "ä": r'\"a'}


def latex_escape(text: str) -> str:
    """Escape text for LaTeX's text mode (plain pdflatex, no packages): every special character
    (``\\ & % $ # _ { } ~ ^ < > |``) is escaped and common Unicode symbols become math; any other
    non-ASCII character is replaced by ``?`` rather than breaking the compile.

    >>> print(latex_escape("KL(p||q) = 5% of k^-1 for N <= d_1"))
    KL(p\\textbar{}\\textbar{}q) = 5\\% of k\\textasciicircum{}-1 for N \\textless{}= d\\_1
    """
    out = []
    for ch in str(text):
        if ch in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[ch])
        elif ch in _LATEX_UNICODE:
            out.append(_LATEX_UNICODE[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _latex_cell(text: str) -> str:
    if text in ("inf", "-inf"):
        return r"$\infty$" if text == "inf" else r"$-\infty$"
    return latex_escape(text)


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return repr(float(value)) if not isinstance(value, (int, bool)) else str(value)
