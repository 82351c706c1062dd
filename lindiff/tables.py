"""``Table``: the one printable result type (text, Markdown, LaTeX, CSV, JSON).

Every table carries a caption and, per column, a unit and a note saying which formula or which
estimate it holds, so a pasted table is self-describing.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Table", "Column", "FORMATS"]

FORMATS = ("text", "markdown", "latex", "csv", "json")


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
    if isinstance(value, (tuple, list)) and len(value) == 2:  # (mean, stderr)
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

    def legend(self) -> list[str]:
        out = [f"{c.name}: {c.note}" for c in self.columns if c.note]
        return out + list(self.notes)

    def column(self, name: str) -> list[Any]:
        index = [c.name for c in self.columns].index(name)
        return [r[index] for r in self.rows]

    # -- renderers ---------------------------------------------------------------------------------
    def render(self, format: str = "text") -> str:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        return getattr(self, f"_render_{format}")()

    def __str__(self) -> str:
        return self.render("text")

    def _render_text(self) -> str:
        head, body = self.header(), self.cells()
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]
        line = "  ".join(h.rjust(w) for h, w in zip(head, widths))
        out = [self.caption, line, "-" * len(line)]
        out += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in body]
        legend = self.legend()
        if legend:
            out.append("")
            out += [f"  {x}" for x in legend]
        return "\n".join(out)

    def _render_markdown(self) -> str:
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        out = [f"**{self.caption}**", "", "| " + " | ".join(map(esc, self.header())) + " |",
               "|" + "|".join("---:" for _ in self.columns) + "|"]
        out += ["| " + " | ".join(map(esc, r)) + " |" for r in self.cells()]
        legend = self.legend()
        if legend:
            out.append("")
            out += [f"- {x}" for x in legend]
        return "\n".join(out)

    def _render_latex(self) -> str:
        def tex(s: str) -> str:
            s = s.replace("\\", r"\textbackslash{}")
            for a, b in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("±", r"$\pm$"), ("inf", r"$\infty$")):
                s = s.replace(a, b)
            return s
        spec = "r" * len(self.columns)
        out = [r"\begin{table}[ht]", r"\centering", rf"\begin{{tabular}}{{{spec}}}", r"\hline",
               " & ".join(tex(h) for h in self.header()) + r" \\", r"\hline"]
        out += [" & ".join(tex(v) for v in r) + r" \\" for r in self.cells()]
        legend = "; ".join(self.legend())
        caption = tex(self.caption) + (f" ({tex(legend)})" if legend else "")
        out += [r"\hline", r"\end{tabular}", rf"\caption{{{caption}}}", r"\end{table}"]
        return "\n".join(out)

    def _render_csv(self) -> str:
        # A column holding (mean, stderr) pairs becomes two numeric columns, "X" and "X stderr".
        paired = [any(isinstance(r[i], (tuple, list)) for r in self.rows) for i in range(len(self.columns))]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        names: list[str] = []
        for h, p in zip(self.header(), paired):
            names += [h, f"{h} stderr"] if p else [h]
        writer.writerow(names)
        for r in self.rows:
            cells: list[str] = []
            for v, p in zip(r, paired):
                if p:
                    cells += [_csv_value(v[0]), _csv_value(v[1])] if isinstance(v, (tuple, list)) else [_csv_value(v), ""]
                else:
                    cells.append(_csv_value(v))
            writer.writerow(cells)
        return buf.getvalue().rstrip("\n")

    def _render_json(self) -> str:
        payload = {
            "caption": self.caption,
            "columns": [{"name": c.name, "unit": c.unit, "note": c.note} for c in self.columns],
            "rows": [[_json_value(v) for v in r] for r in self.rows],
            "notes": list(self.notes),
        }
        return json.dumps(payload, indent=2)

    def to_records(self) -> list[dict[str, Any]]:
        return [{c.name: v for c, v in zip(self.columns, r)} for r in self.rows]


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return repr(float(value)) if not isinstance(value, (int, bool)) else str(value)
