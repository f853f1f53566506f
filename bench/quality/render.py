"""The quality table (and the experiments' own tables) as the marked section of docs/benchmarks.md."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.quality.stages import Row
from genlib.tables import format_table

QUALITY_BEGIN, QUALITY_END = "<!-- quality:begin -->", "<!-- quality:end -->"


COLUMNS = {"what": "what", "anchor": "published anchor", "goal": "goal", "ours": "ours", "verdict": "verdict",
           "settings": "settings", "seconds": "seconds"}


def render_markdown(rows: list[Row], meta: dict[str, Any], extra_tables: dict[str, Any]) -> str:
    """The section: a header with command, device and date, the quality table, then each extra DataFrame."""
    table = [{COLUMNS[k]: (f"{v:.0f}" if k == "seconds" else v) for k, v in dataclasses.asdict(r).items()} for r in rows]
    lines = [
        QUALITY_BEGIN,
        "## Quality on real MNIST against the published numbers",
        "",
        f"Command: `{meta['command']}`  ",
        f"Device: {meta['device']}; torch {meta['torch']}; preset `{meta['preset']}`; "
        f"train images {meta['train_images']}, test images {meta['test_images']}; total {meta['minutes']:.1f} min; "
        f"run on {meta['date']}.",
        "",
        format_table(table, columns=list(COLUMNS.values()), style="markdown"),
    ]
    for title, df in extra_tables.items():
        lines += ["", f"### {title}", "", format_table(df, style="markdown")]
    lines += [QUALITY_END]
    return "\n".join(lines)
