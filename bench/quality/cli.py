"""Command line of the quality benchmark: preset, stages, ``--set`` overrides, outputs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import update_benchmarks_doc
from bench.quality.render import QUALITY_BEGIN, QUALITY_END, render_markdown
from bench.quality.profiles import PRESETS, TRAIN_IMAGES, QualityRun, resolve_run
from bench.quality.stages import STAGES, Row, verdict
from genlib.data import load_dataset
from genlib.errors import GenlibError
from genlib.evaluation import get_feature_classifier
from genlib.training import resolve_device

logger = logging.getLogger("bench.quality")


def main(argv: list[str] | None = None) -> int:
    """Run the stages of a preset; 0 on success, 2 (one ``error:`` line) on a bad option."""
    parser = argparse.ArgumentParser(prog="python -m bench.quality",
                                     description="Quality on real MNIST beside the published numbers.")
    parser.add_argument("--preset", choices=PRESETS, default="full",
                        help="a registered profile quality-<preset> (see bench/quality/profiles.py)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one setting, as everywhere in genlib: model.X, train.X, evaluation.X or a bare "
                        "field name, e.g. --set cd_k=25 --set train.epochs=3 --set seeds=[0,1] (repeatable; model "
                        "fields go to the families that have them, train fields to every family)")
    parser.add_argument("--train-images", type=int, help="training images (default: all 50,000; 600 for smoke)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=Path("bench/results/quality.json"))
    parser.add_argument("--markdown", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stages = [st.strip() for st in args.stages.split(",") if st.strip()]
    unknown = [st for st in stages if st not in STAGES]
    if unknown:
        print(f"error: unknown stage(s) {', '.join(unknown)}; valid: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    try:
        run = resolve_run(args.preset, args.set)
        device = resolve_device(args.device)
    except GenlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    data = load_dataset("mnist")
    train_images = args.train_images or TRAIN_IMAGES.get(args.preset)
    if train_images:
        data = data.subset(n_train=train_images)
    data = data.to(device)
    state: dict[str, Any] = {}
    if any(STAGES[st].needs_features for st in stages):
        state["features"] = get_feature_classifier(data, device=device, epochs=run.evaluation.classifier_epochs)
        logger.info("feature classifier test accuracy %.4f", state["features"].test_accuracy)
    rows: list[Row] = []
    for st in stages:
        logger.info("stage %s", st)
        out = STAGES[st].run(data, run, device, state)
        if isinstance(out, tuple):
            out, report = out
            state[f"{st}_report"] = report
        rows.extend(out)
        print(render_markdown(rows, _meta(args, run, device, data, t_start), {}), flush=True)
    extra = {}
    if "features" in state:
        rows.append(Row("feature classifier test accuracy (for FID)", "aim >= 99%", ">= 99%",
                        f"{100 * state['features'].test_accuracy:.2f}%",
                        verdict(100 * state["features"].test_accuracy, 99.0, True),
                        f"{run.evaluation.classifier_epochs} epochs", 0.0))
    if "finetune_table" in state:
        extra["Fine-tuning, test error % (layout of Kingma et al. 2014, Table 1)"] = state["finetune_table"]
    if "augmentation_table" in state:
        extra["Augmentation at 100 labels"] = state["augmentation_table"]
    meta = _meta(args, run, device, data, t_start)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "settings": _settings(run, data),
                                     "rows": [dataclasses.asdict(r) for r in rows]}, indent=2))
    update_benchmarks_doc(args.markdown, render_markdown(rows, meta, extra), QUALITY_BEGIN, QUALITY_END)
    print(render_markdown(rows, meta, extra))
    return 0


def _settings(run: QualityRun, data: Any) -> dict[str, Any]:
    """Every setting the run used: each family's resolved spec (model and training) and the evaluation."""
    return {"profile": run.profile, "overrides": run.overrides.model_dump(mode="json"),
            "evaluation": run.evaluation.model_dump(mode="json"),
            "families": {f: run.spec(f, data).model_dump(mode="json", include={"model", "train"}) for f in run.families}}


def _meta(args: Any, run: QualityRun, device: torch.device, data: Any, t_start: float) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "command": "python -m bench.quality " + " ".join(sys.argv[1:] if args is not None else []),
        "device": name,
        "torch": torch.__version__,
        "preset": run.profile + "".join(f" --set {a}" for a in args.set),
        "train_images": int(data.x_train.shape[0]),
        "test_images": int(data.x_test.shape[0]),
        "minutes": (time.perf_counter() - t_start) / 60,
        "date": time.strftime("%Y-%m-%d"),
    }


