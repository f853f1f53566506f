"""The one table renderer of the project: rows of values as fixed-width text or a GitHub markdown table.

Light on purpose (the CLI's listing commands use it): it imports neither torch nor pandas; pandas is
imported only when a DataFrame is passed in.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

MISSING = "-"


def format_value(value: Any) -> str:
    """One cell as text; the same rules for every table, so a number reads the same everywhere.

    None and NaN are ``-``; integers (and floats with an integer value below 1e6) print whole;
    1,000 <= |x| < 1e7 with one decimal; other floats with four significant digits (``0.01235``,
    ``91.55``, ``1e-05``); infinities as ``inf`` / ``-inf``.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return MISSING
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        if 1000 <= abs(v) < 1e7:
            return f"{v:.1f}"
        return f"{v:.4g}"
    return " ".join(str(value).split())  # one line per row, whatever the value holds


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _records(rows: Any, columns: Sequence[str] | None) -> tuple[list[Mapping[str, Any]], list[str]]:
    """(records, columns) from a sequence of mappings or a DataFrame (its index too unless a plain RangeIndex)."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a DataFrame, told apart without importing pandas
        import pandas as pd

        df = rows if isinstance(rows.index, pd.RangeIndex) else rows.reset_index()
        df = df.astype(object).where(df.notna(), None)  # NaN, NA and NaT all become None
        df.columns = [str(c) for c in df.columns]
        return df.to_dict(orient="records"), list(columns) if columns is not None else list(df.columns)
    records = list(rows)
    if columns is None:
        seen: dict[str, None] = {}
        for record in records:
            seen.update(dict.fromkeys(record))
        columns = list(seen)
    return records, list(columns)


def format_table(
    rows: Sequence[Mapping[str, Any]] | Any,
    columns: Sequence[str] | None = None,
    style: Literal["plain", "markdown"] = "plain",
) -> str:
    """Render ``rows`` as a table: ``plain`` (aligned columns, a rule under the header) or ``markdown``.

    Args:
        rows: mappings from column name to value, or a pandas DataFrame.
        columns: which columns, in order (default: every key, in order of first appearance).
        style: ``plain`` for terminals, ``markdown`` for documents and MLflow artifacts.

    Returns:
        The table without a trailing newline; numeric columns are right-aligned. Missing keys print as ``-``.
    """
    if style not in ("plain", "markdown"):
        raise ValueError(f"style must be 'plain' or 'markdown', got {style!r}")
    records, cols = _records(rows, columns)
    if not cols:
        return ""
    values = [[r.get(c) for c in cols] for r in records]
    numeric = [any(_is_number(row[i]) for row in values)
               and all(row[i] is None or _is_number(row[i]) for row in values) for i in range(len(cols))]
    cells = [[format_value(v) for v in row] for row in values]
    if style == "markdown":
        def md(text: str) -> str:
            return text.replace("|", "\\|")

        lines = ["| " + " | ".join(md(c) for c in cols) + " |",
                 "| " + " | ".join("---:" if num else "---" for num in numeric) + " |"]
        lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]

    def line(items: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(items, widths, numeric)).rstrip()

    return "\n".join([line(cols), "  ".join("-" * w for w in widths), *(line(row) for row in cells)])
