"""The command line: one parseable document per command and format, LaTeX that compiles, arguments checked
before any computation, help for every option, and the README's synopsis equal to the parser."""

import argparse
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lindiff
from documents import compile_latex
from lindiff.cli import STABILITY_TABLES, VARIANCE_TABLES, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["text", "markdown", "latex", "csv", "json"]
SMALL_TRANSITION = ["transition", "--d", "6", "--repeats", "3", "--ratios", "0.5,2,8", "--no-progress"]
SMALL_STABILITY = ["stability", "--d", "3", "--Ns", "3,12", "--times", "0.1,1", "--eps", "0.01,0.1", "--repeats", "4",
                   "--draws", "2", "--no-progress"]
SAMPLER = ["sampler", "ddim", "--steps", "5", "--eta", "0.5"]
SMALL_VARIANCE = ["variance", "--d", "4", "--ratios", "0.5", "--Ps", "2,8", "--ridges", "0,0.01", "--steps", "4",
                  "--draws", "3", "--samples", "20"]
COMMANDS = {"transition": SMALL_TRANSITION, "stability": SMALL_STABILITY, "sampler": SAMPLER, "variance": SMALL_VARIANCE}
MULTI = {"stability": STABILITY_TABLES, "variance": VARIANCE_TABLES}


def _run(capsys, argv) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def _csv_args(name, argv):
    return argv + ["--table", MULTI[name][0]] if name in MULTI else argv


def _compile_latex(fragment: str, tmp_path: Path) -> None:
    compile_latex(fragment, tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_prints_one_document_per_format(capsys, tmp_path, name, fmt):
    argv = COMMANDS[name] + ["--format", fmt]
    out = _run(capsys, _csv_args(name, argv) if fmt == "csv" else argv)
    if fmt == "json":
        payload = json.loads(out)  # one document: json.loads refuses trailing data
        tables = payload["tables"].values() if "tables" in payload else [payload]
        assert all(t["rows"] for t in tables)
        if name in MULTI:
            assert list(payload["tables"]) == list(MULTI[name])
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        assert len(rows) >= 3 and len({len(r) for r in rows}) == 1, "a CSV document is one rectangular table"
    elif fmt == "latex":
        assert out.count("\\begin{tabular}") == len(MULTI.get(name, [None]))
        assert "$\\infty$inite" not in out and "^" not in out.replace("\\textasciicircum{}", "").replace("$^2$", "")
        if shutil.which("pdflatex"):
            _compile_latex(out, tmp_path)
    elif fmt == "text":
        assert max(len(line) for line in out.splitlines()) <= 100, "text tables fit 100 columns"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine (Debian: texlive-latex-base)")
def test_latex_of_awkward_text_compiles(tmp_path):
    table = lindiff.Table("Caption with 5% & k^-1, N <= d_1, {braces}, ~tilde, #hash, $dollar, back\\slash, ±, λ, ∞",
                          [lindiff.Column("E KL(fit||data)", "nats/dim", "infinite for N <= d + 2; power law k^-1")],
                          [[float("inf")], [(1.0, 0.1)], ["inf"], [None]])
    _compile_latex(table.render("latex"), tmp_path)


def test_latex_escaping_keeps_words_whole():
    table = lindiff.Table("infinite for N <= d + 2", [lindiff.Column("x", note="power law k^-1")], [[float("inf")]])
    out = table.render("latex")
    assert "infinite for N \\textless{}= d + 2" in out and "k\\textasciicircum{}-1" in out
    assert "\n$\\infty$ \\\\\n" in out


def test_csv_needs_a_table_name_when_there_are_several(capsys):
    with pytest.raises(SystemExit) as exc:
        main(SMALL_STABILITY + ["--format", "csv"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--table" in err and all(name in err for name in STABILITY_TABLES)


@pytest.mark.parametrize("table", STABILITY_TABLES)
def test_stability_table_selection(capsys, table):
    out = _run(capsys, SMALL_STABILITY + ["--format", "json", "--table", table])
    assert list(json.loads(out)["tables"]) == [table]


def test_transition_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "transition.png"
    assert main(SMALL_TRANSITION + ["--plot", str(path)]) == 0
    assert path.stat().st_size > 10_000


def test_stability_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(SMALL_STABILITY + ["--format", "json", "--plot", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()


def test_workers_give_the_serial_result(capsys):
    argv = SMALL_TRANSITION + ["--format", "json", "--seed", "3"]
    assert _run(capsys, argv) == _run(capsys, argv + ["--workers", "2"])


@pytest.mark.parametrize("argv,message", [
    (["transition", "--ratios", "0.5,abc"], "argument --ratios: expected comma-separated positive N/d ratios"),
    (["transition", "--ratios", "-1,2"], "'-1' is not positive"),
    (["transition", "--workers", "0"], "argument --workers: expected number of worker processes (an integer >= 1)"),
    (["transition", "--plot", "/no/such/dir/x.png"], "--plot /no/such/dir/x.png: folder /no/such/dir does not exist"),
    (["transition", "--sampler", "euler"], "needs a continuous process"),
    (["transition", "--spectrum", "nofile.npy"], "--spectrum must be"),
    (["transition", "--d", "0"], "argument --d"),
    (["transition", "--model", "conv:4"], "argument --model: expected dense, conv or conv:K"),
    (["transition", "--grid", "4x0"], "argument --grid: expected grid sizes"),
    (["transition", "--grid", "4x4", "--d", "10"], "--d 10 does not match --grid 4x4"),
    (["transition", "--model", "conv:5", "--grid", "4x4"], "the kernel (5 wide) exceeds the grid 4x4"),
    (["transition", "--grid", "4x4", "--spectrum", "cifar"], "not a stationary power spectrum"),
    (["stability", "--Ns", "1,5"], "--Ns"),
    (["stability", "--format", "csv"], "--table"),
    (["sampler", "heun", "--steps", "5"], "continuous process"),
])
def test_bad_arguments_name_the_flag_and_the_rule(capsys, monkeypatch, argv, message):
    import lindiff.transition

    def never(*args, **kwargs):  # arguments are checked before any computation
        raise AssertionError("computed before checking the arguments")

    monkeypatch.setattr(lindiff.transition, "transition_sweep", never)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_matplotlib_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(SystemExit) as exc:
        main(SMALL_TRANSITION + ["--plot", "x.png"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "lindiff[plot]" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"lindiff {lindiff.__version__}"


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_has_help_and_every_command_a_description():
    parser = build_parser()
    for name, sub in _subparsers(parser).items():
        assert sub.description, f"lindiff {name} has no description"
        for action in sub._actions:
            assert action.help, f"lindiff {name} {action.option_strings or action.dest} has no help text"


def test_sampler_option_lists_its_choices():
    sub = _subparsers(build_parser())["transition"]
    sampler = next(a for a in sub._actions if "--sampler" in a.option_strings)
    assert tuple(sampler.choices) == lindiff.SAMPLERS and all(s in sampler.help for s in lindiff.SAMPLERS)


def test_readme_synopsis_matches_the_parser():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    parsers = _subparsers(build_parser())
    command = None
    checked = 0
    for line in block.splitlines():
        words = line.split()
        if words[:1] == ["lindiff"] and len(words) > 1 and words[1] in parsers:
            command = words[1]
        if command is None:
            continue
        options = {s: a for a in parsers[command]._actions for s in a.option_strings}
        for flag, value in re.findall(r"\[(--[\w-]+)(?: ([^\]]+))?\]", line):
            assert flag in options, f"README synopsis: lindiff {command} has no {flag}"
            action = options[flag]
            if value and not value.isupper() and not value.startswith("FILE") and value not in ("N", "TAU", "NAME"):
                parsed = action.type(value) if action.type else value
                assert parsed == action.default, f"README says {flag} {value}, the parser's default is {action.default}"
            checked += 1
    assert checked >= 20


def test_derive_lists_and_prints(capsys, tmp_path):
    listing = _run(capsys, ["derive"])
    assert "optimal_denoiser" in listing and "sampler_steps" in listing
    out = _run(capsys, ["derive", "gradient_flow", "--latex"])
    assert "\\frac" in out and "agrees" in out and "\\section*" in out
    if shutil.which("pdflatex"):
        _compile_latex(out, tmp_path)


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "lindiff", "--help"], capture_output=True, text=True, check=True).stdout
    assert "transition" in out and "derive" in out and "stability" in out
