"""genlib.tables: the one table renderer (plain and markdown), with one set of number formats."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from genlib.tables import format_table, format_value


@pytest.mark.parametrize("value, text", [
    (None, "-"), (float("nan"), "-"), (math.inf, "inf"), (-math.inf, "-inf"), (3, "3"), (np.int64(7), "7"),
    (2.0, "2"), (91.55123, "91.55"), (0.0123456, "0.01235"), (1e-5, "1e-05"), (12345.678, "12345.7"),
    (np.float32(0.5), "0.5"), (True, "True"), ("a\nb", "a b"), (2.5e7, "2.5e+07"),
])
def test_values_read_the_same_everywhere(value, text):
    assert format_value(value) == text


def test_plain_table_aligns_columns_and_right_aligns_numbers():
    rows = [{"name": "vae", "fid": 3.25, "n": 10}, {"name": "cgan", "fid": None, "n": 1200}]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["name", "fid", "n"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len({len(line.rstrip()) for line in lines[:2]}) == 1  # the rule spans the header
    assert lines[2].startswith("vae ") and lines[3].startswith("cgan")
    assert lines[2].endswith("  10") and lines[3].endswith("1200")  # numbers right-aligned
    assert lines[3].split()[1] == "-"  # missing value


def test_columns_choose_and_order_and_missing_keys_print_as_dashes():
    text = format_table([{"a": 1, "b": 2}, {"c": 3}], columns=["c", "a"])
    assert text.splitlines()[0].split() == ["c", "a"]
    assert text.splitlines()[2].split() == ["-", "1"]
    assert format_table([{"a": 1}, {"b": 2}]).splitlines()[0].split() == ["a", "b"]  # union, first-seen order


def test_markdown_of_rows_and_of_a_dataframe_agree():
    df = pd.DataFrame({"model": ["vae", "a|b"], "nll": [91.551, np.nan]})
    md = format_table(df, style="markdown")
    assert md.splitlines() == ["| model | nll |", "| --- | ---: |", "| vae | 91.55 |", "| a\\|b | - |"]
    assert format_table(df.to_dict(orient="records"), style="markdown") == md
    indexed = format_table(df.set_index("model"), style="markdown")  # a named index becomes a column
    assert indexed.splitlines()[0] == "| model | nll |"


def test_bad_style_and_empty_input():
    with pytest.raises(ValueError, match="style"):
        format_table([{"a": 1}], style="html")  # type: ignore[arg-type]
    assert format_table([]) == ""
    assert format_table([], columns=["a"]).splitlines()[0] == "a"


def test_importing_tables_loads_neither_torch_nor_pandas():
    code = "import sys, genlib.tables; print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
