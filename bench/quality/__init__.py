"""Quality benchmark: our numbers on the real MNIST test set beside the published ones.

Run ``python -m bench.quality`` for paper-scale settings (the ``full`` profile; meant for a GPU
worker), or with ``--preset cpu-long`` (about 50 minutes on 2 cores) or ``cpu-short`` (20) for reduced
runs that fit a small CPU machine; ``--set FIELD=VALUE`` changes one setting of a preset, parsed and
validated by genlib's one parser (``genlib.spec.parse_set``, ``resolve_spec``). Every
setting actually used (epochs, k, AIS schedule, seeds) is written next to the number it produced,
and every goal we miss is reported as missed, with the gap.

Modules: ``profiles`` (the presets, registered as genlib profiles ``quality-<preset>``), ``stages`` (each stage trains and scores), ``render`` (the
markdown section), ``cli`` (options and outputs). Imports neither prefect nor mlflow, so it runs
on a GPU box that only has torch.
"""

from bench.common import update_benchmarks_doc
from bench.quality.cli import main
from bench.quality.render import QUALITY_BEGIN, QUALITY_END, render_markdown
from bench.quality.profiles import PRESETS, QualityRun, profile_name, resolve_run
from bench.quality.stages import STAGES, Row

__all__ = [
    "PRESETS",
    "QUALITY_BEGIN",
    "QUALITY_END",
    "STAGES",
    "Row",
    "QualityRun",
    "main",
    "profile_name",
    "render_markdown",
    "resolve_run",
    "update_benchmarks_doc",
]
