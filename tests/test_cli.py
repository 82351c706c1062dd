import csv
import io
import json
import subprocess
import sys

import pytest

from lindiff.cli import main

SMALL = ["transition", "--d", "6", "--repeats", "3", "--ratios", "0.5,2,8", "--no-progress"]


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "csv", "json"])
def test_transition_output_parses_in_every_format(capsys, fmt):
    assert main(SMALL + ["--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        payload = json.loads(out)
        assert len(payload["rows"]) == 3
        names = [c["name"] for c in payload["columns"]]
        row = dict(zip(names, payload["rows"][0]))
        assert row["E KL(fit||data)"]["value"] == "inf" and "singular" in row["E KL(fit||data)"]["reason"]
        assert isinstance(payload["rows"][2][2], float)
        assert set(payload["rows"][2][3]) == {"mean", "stderr"}
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        header, body = rows[0], rows[1:]
        assert len(body) == 3 and all(len(r) == len(header) for r in body)
        assert "MC KL(fit||data) [nats/dim] stderr" in header
        values = dict(zip(header, body[2]))
        assert float(values["N"]) == 48 and float(values["E KL(fit||data) [nats/dim]"]) > 0
    elif fmt == "markdown":
        lines = [ln for ln in out.splitlines() if ln.startswith("|")]
        assert len(lines) == 2 + 3
    elif fmt == "latex":
        assert "\\begin{tabular}" in out and out.count("\\\\") >= 4
    else:
        assert "N/d" in out and "d/(4N)" in out


def test_transition_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "transition.png"
    assert main(SMALL + ["--plot", str(path)]) == 0
    assert path.stat().st_size > 10_000


def test_derive_lists_and_prints(capsys):
    assert main(["derive"]) == 0
    listing = capsys.readouterr().out
    assert "optimal_denoiser" in listing and "sampler_steps" in listing
    assert main(["derive", "gradient_flow", "--latex"]) == 0
    out = capsys.readouterr().out
    assert "\\frac" in out and "agrees" in out


def test_sampler_table_command(capsys):
    assert main(["sampler", "ddim", "--steps", "5", "--eta", "0.5", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 6


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        main(["sampler", "heun", "--steps", "5"])  # heun needs a continuous process
    assert "continuous process" in capsys.readouterr().err


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "lindiff", "--help"], capture_output=True, text=True, check=True).stdout
    assert "transition" in out and "derive" in out


def test_stability_command(capsys, tmp_path):
    args = ["stability", "--d", "3", "--Ns", "3,12", "--times", "0.1,1", "--eps", "0.01,0.1", "--repeats", "4",
            "--draws", "2", "--no-progress", "--format", "json"]
    pytest.importorskip("matplotlib")
    assert main(args + ["--plot", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    tables = [json.loads(chunk) for chunk in out.strip().split("\n\n")]
    assert len(tables) == 4 and all(t["rows"] for t in tables)
    assert (tmp_path / "s.png").exists()
