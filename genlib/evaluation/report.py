"""``EvaluationReport``: the tables, figures and flat metrics every evaluation returns, and how to combine them."""

from __future__ import annotations

import dataclasses
import logging

import pandas as pd
from matplotlib.figure import Figure

from genlib.evaluation._utils import REAL_FLOOR_NAME
from genlib.tables import format_table

logger = logging.getLogger(__name__)

# Order in which markdown() shows the tables it knows; any other table follows in insertion order.
TABLE_ORDER = (
    "field_checks",
    "skipped",
    "reconstruction",
    "reconstruction_per_class",
    "denoising",
    "generative_quality",
    "likelihood",
    "pca_vs_ae",
    "finetune",
    "finetune_long",
    "augmentation",
    "latent_sampling",
    "generative_vs_discriminative",
)


@dataclasses.dataclass
class EvaluationReport:
    """Results of one evaluation.

    Attributes:
        tables: name -> DataFrame (names and columns listed in docs/metrics.md).
        figures: name -> matplotlib Figure (saved as ``<name>.png`` by the pipeline).
        metrics: flat name -> float, stable names for gating and the model registry.
        name: the model's name for a per-model report (None for the suite); ``combine_reports``
            prefixes this report's metric names with it (``"<name>/<metric>"``).
    """

    tables: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    figures: dict[str, Figure] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    name: str | None = None

    def markdown(self, title: str = "Evaluation report") -> str:
        """One markdown document: every table under its name, then the flat metrics."""
        parts = [f"# {title}"]
        names = [n for n in TABLE_ORDER if n in self.tables] + [n for n in self.tables if n not in TABLE_ORDER]
        for name in names:
            parts.append(f"## {name}\n\n{format_table(self.tables[name], style='markdown')}")
        if self.metrics:
            rows = [{"metric": k, "value": float(v)} for k, v in sorted(self.metrics.items())]
            parts.append(f"## metrics\n\n{format_table(rows, style='markdown')}")
        if self.figures:
            parts.append("## figures\n\n" + "\n".join(f"- {n}" for n in sorted(self.figures)))
        return "\n\n".join(parts) + "\n"


def combine_reports(reports: list[EvaluationReport]) -> EvaluationReport:
    """Concatenate same-named tables row-wise and merge figures and metrics.

    Rows that are exact duplicates are kept once, and so is the ``real (train vs test)`` floor that
    every per-model generative table carries (the first one: on a GPU the copies may differ in the
    last bits). Metrics of a named report are prefixed ``"<name>/"`` so that per-model keys such as
    ``fid`` do not collide.
    """
    tables: dict[str, list[pd.DataFrame]] = {}
    figures: dict[str, Figure] = {}
    metrics: dict[str, float] = {}
    for report in reports:
        for name, df in report.tables.items():
            tables.setdefault(name, []).append(df)
        for name, fig in report.figures.items():
            if name in figures:
                logger.warning("figure %r appears in several reports; keeping the last", name)
            figures[name] = fig
        for key, value in report.metrics.items():
            full = f"{report.name}/{key}" if report.name else key
            if full in metrics:
                logger.warning("metric %r appears in several reports; keeping the last", full)
            metrics[full] = value
    combined = {}
    for name, dfs in tables.items():
        non_empty = [d for d in dfs if not d.empty]
        if not non_empty:
            combined[name] = dfs[0]
            continue
        if any(not isinstance(d.index, pd.RangeIndex) for d in non_empty):
            non_empty = [d.reset_index() for d in non_empty]
        df = pd.concat(non_empty, ignore_index=True, sort=False)
        try:
            df = df.drop_duplicates(ignore_index=True)
        except TypeError:  # unhashable cells: keep every row
            pass
        if "model" in df.columns:
            floor = df["model"] == REAL_FLOOR_NAME
            df = df[~floor | ~floor.duplicated()].reset_index(drop=True)
        combined[name] = df
    return EvaluationReport(tables=combined, figures=figures, metrics=metrics)
