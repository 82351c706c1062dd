"""Table rendering: narrow text, one JSON document for several tables, pandas, CSV pairs."""

import csv
import io
import json
import math

import pytest

import lindiff as ld
from lindiff.tables import Tables, latex_escape


def _wide():
    cols = [ld.Column("N/d"), ld.Column("N")] + [ld.Column(f"quantity {k}", "nats/dim", f"note {k}") for k in range(12)]
    rows = [[0.5 * r, 10 * r] + [(1.234567 * k, 0.01) for k in range(12)] for r in range(1, 4)]
    return ld.Table("A wide table " * 12, cols, rows, key_columns=2)


def test_text_wraps_into_blocks_that_repeat_the_key_columns():
    out = _wide().render("text")
    assert max(map(len, out.splitlines())) <= 100
    headers = [line for line in out.splitlines() if line.lstrip().startswith("N/d")]
    assert len(headers) >= 2 and all("N/d" in h and "  N  " in h + " " for h in headers)
    for k in range(12):
        assert f"quantity {k}" in out and f"quantity {k} [nats/dim]: note {k}" in out  # units in the legend


def test_tables_render_as_one_document():
    a, b = _wide(), ld.Table("B", [ld.Column("x")], [[1.0]])
    both = Tables({"a": a, "b": b})
    payload = json.loads(both.render("json"))
    assert list(payload["tables"]) == ["a", "b"] and payload["tables"]["b"]["rows"] == [[1.0]]
    with pytest.raises(ValueError, match="--table"):
        both.render("csv")
    rows = list(csv.reader(io.StringIO(both.render("csv", name="a"))))
    assert rows[0][:4] == ["N/d", "N", "quantity 0 [nats/dim]", "quantity 0 [nats/dim] stderr"]
    with pytest.raises(ValueError, match="choose one of: a, b"):
        both.render("text", name="c")
    assert "[a]" in both.render("text") and "### b" in both.render("markdown")


def test_infinite_values_keep_their_reason():
    table = ld.Table("t", [ld.Column("kl")], [[ld.Infinite("q is singular")], [1.0]])
    assert json.loads(table.render("json"))["rows"][0][0] == {"value": "inf", "reason": "q is singular"}
    assert table.render("latex").count("$\\infty$") == 1


@pytest.mark.extras
def test_to_pandas():
    pd = pytest.importorskip("pandas", reason="the optional extra lindiff[pandas] is not installed")
    table = ld.Table("cap", [ld.Column("N"), ld.Column("KL", "nats", "exact"), ld.Column("label")],
                     [[1, (0.5, 0.1), "a"], [2, ld.Infinite("singular"), None]])
    df = table.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["N", "KL [nats]", "KL [nats] stderr", "label"]
    assert df["KL [nats]"].tolist()[0] == 0.5 and math.isinf(df["KL [nats]"].tolist()[1])
    assert math.isnan(df["KL [nats] stderr"].tolist()[1]) and df.attrs["caption"] == "cap"
    assert df.attrs["reasons"] == {(1, "KL [nats]"): "singular"}


def test_latex_escape_handles_every_special_character():
    assert latex_escape("a_b & 50% #1 $x$ {y} ~ ^ \\") == (
        "a\\_b \\& 50\\% \\#1 \\$x\\$ \\{y\\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{}")
    assert latex_escape("λ ≤ 1 ± σ") == "$\\lambda$ $\\le$ 1 $\\pm$ $\\sigma$"
