"""Checks that a command's output is one document in its format (shared by the CLI tests)."""

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path


def compile_latex(fragment: str, tmp_path: Path) -> None:
    """Compile a LaTeX fragment in a minimal article with plain pdflatex (amsmath only)."""
    doc = ("\\documentclass{article}\n\\usepackage[margin=1cm,landscape]{geometry}\n\\usepackage{amsmath}\n"
           "\\begin{document}\n" + fragment + "\n\\end{document}\n")
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


def assert_one_document(fmt: str, out: str, tmp_path: Path):
    """JSON parses as one value, CSV is one rectangular table, LaTeX compiles (where pdflatex exists),
    text fits 100 columns.  Returns the parsed JSON or CSV rows."""
    if fmt == "json":
        return json.loads(out)  # refuses trailing data: exactly one document
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        assert len(rows) >= 2 and len({len(r) for r in rows}) == 1, "a CSV document is one rectangular table"
        return rows
    if fmt == "latex":
        assert "\\begin{tabular}" in out
        if shutil.which("pdflatex"):
            compile_latex(out, tmp_path)
    if fmt == "text":
        assert max(len(line) for line in out.splitlines()) <= 100, "text tables fit 100 columns"
    return None
