"""Quality benchmark: our numbers on the real MNIST test set beside the published ones.

Run ``python -m bench.quality`` for paper-scale settings (the ``full`` profile; meant for a GPU
worker), or with ``--preset cpu-long`` (about 50 minutes on 2 cores) or ``cpu-short`` (20) for reduced
runs that fit a small CPU machine; ``--set FIELD=VALUE`` changes one setting of a preset. Every
setting actually used (epochs, k, AIS schedule, seeds) is written next to the number it produced,
and every goal we miss is reported as missed, with the gap.

Imports neither prefect nor mlflow, so it runs on a GPU box that only has torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from genlib.data import load_dataset
from genlib.evaluation._utils import markdown_table
from genlib.evaluation.augmentation import AUGMENT_METHODS
from genlib.evaluation import (
    augmentation_experiment,
    evaluate_model,
    finetune_experiment,
    get_eval_profile,
    get_feature_classifier,
    pca_sq_err_per_image,
)
from genlib.profiles import family_settings
from genlib.training import TrainConfig, resolve_device, train_model

logger = logging.getLogger("bench.quality")

QUALITY_BEGIN, QUALITY_END = "<!-- quality:begin -->", "<!-- quality:end -->"


@dataclasses.dataclass
class Row:
    """One line of the quality table."""

    what: str
    anchor: str
    goal: str
    ours: str
    verdict: str  # "met", "missed by ...", or "no goal"
    settings: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run does; defaults are the paper-scale ``full`` profile."""

    ae_epochs: int = 200
    vae_epochs: int = 500
    rbm_epochs: int = 100
    rbm_cd_k: int = 25
    gan_epochs: int = 30
    iwae_k: int = 5000
    likelihood_images: int | None = None  # None: all 10,000 test images
    ais_betas: int = 14500
    ais_chains: int = 100
    fid_samples: int = 10000
    label_budgets: tuple[int, ...] = (100, 600, 1000, 3000)
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_seeds: tuple[int, ...] | None = None  # None: the full evaluation profile's five
    finetune_steps: int = 2000
    augment_steps: int = 2000
    generator_steps: int = 3000
    classifier_epochs: int = 10
    train_subset: int | None = None  # None: the full 50,000 training images


PRESETS: dict[str, Settings] = {
    "full": Settings(),
    # Seconds: checks that every stage runs end to end (tests); its numbers mean nothing.
    "smoke": Settings(
        ae_epochs=1, vae_epochs=1, rbm_epochs=1, rbm_cd_k=1, gan_epochs=1, iwae_k=10, likelihood_images=50,
        ais_betas=50, ais_chains=5, fid_samples=100, label_budgets=(100,), seeds=(0,), finetune_steps=5,
        augment_steps=5, generator_steps=5, classifier_epochs=1, train_subset=600,
    ),
    # A CPU run of about half an hour on 2 cores: same architectures, far fewer epochs and draws.
    "cpu-short": Settings(
        ae_epochs=6,
        vae_epochs=8,
        rbm_epochs=2,
        rbm_cd_k=1,
        gan_epochs=1,
        iwae_k=500,
        likelihood_images=1000,
        ais_betas=5000,
        ais_chains=50,
        fid_samples=2000,
        label_budgets=(100, 600, 1000, 3000),
        seeds=(0, 1, 2),
        finetune_steps=300,
        augment_steps=300,
        generator_steps=600,
        classifier_epochs=2,
    ),
    # About an hour on 2 CPU cores: ten times the epochs of cpu-short, paper-scale IWAE k and AIS schedule.
    "cpu-long": Settings(
        ae_epochs=60,
        vae_epochs=100,
        rbm_epochs=15,
        rbm_cd_k=10,
        gan_epochs=5,
        iwae_k=5000,
        likelihood_images=1000,
        ais_betas=14500,
        ais_chains=100,
        fid_samples=5000,
        label_budgets=(100, 600, 1000, 3000),
        seeds=(0, 1, 2),
        finetune_seeds=(0, 1, 2),
        finetune_steps=600,
        augment_steps=600,
        generator_steps=1500,
        classifier_epochs=4,
    ),
}


def apply_overrides(s: Settings, assignments: list[str]) -> Settings:
    """``s`` with FIELD=VALUE assignments applied; values parse as JSON (tuples as lists), else stay strings."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    updates: dict[str, Any] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"--set {item!r}: {raw!r} is not a number, list or null") from None
        nullable = "None" in str(fields[name].type)
        if value is None:
            if not nullable:
                raise ValueError(f"--set {item!r}: {name} cannot be null")
        elif "tuple" in str(fields[name].type):
            if not isinstance(value, list) or not value or not all(type(v) is int for v in value):
                raise ValueError(f"--set {item!r}: {name} takes a list of integers, e.g. [0,1,2]")
            value = tuple(value)
        elif type(value) is not int or value < 1:
            raise ValueError(f"--set {item!r}: {name} takes a positive integer")
        updates[name] = value
    return dataclasses.replace(s, **updates)


def _verdict(ours: float, goal: float, higher_is_better: bool) -> str:
    if not math.isfinite(ours):
        return "not measured"
    ok = ours >= goal if higher_is_better else ours <= goal
    return "met" if ok else f"missed by {abs(ours - goal):.2f}"


def _train(name: str, data: Any, epochs: int, device: torch.device, extra: dict[str, Any] | None = None) -> tuple[Any, float]:
    settings = family_settings("full", name)
    train = {**settings.train, "epochs": epochs}
    if epochs < (train.get("patience") or 0):
        train["patience"] = None
    t0 = time.perf_counter()
    trained = train_model(name, data, {**settings.model, **(extra or {})}, TrainConfig(**train), device=device, progress=False)
    return trained, time.perf_counter() - t0


def eval_profile(s: Settings):
    """The ``full`` evaluation profile with this run's counts."""
    return get_eval_profile("full").model_copy(
        update={
            "iwae_k": s.iwae_k,
            "likelihood_images": s.likelihood_images,
            "ais_betas": s.ais_betas,
            "ais_chains": s.ais_chains,
            "fid_samples": s.fid_samples,
            "label_budgets": s.label_budgets,
            "augment_budgets": (100,),
            "seeds": s.seeds,
            **({"finetune_seeds": s.finetune_seeds} if s.finetune_seeds is not None else {}),
            "finetune_steps": s.finetune_steps,
            "augment_steps": s.augment_steps,
            "generator_steps": {"cvae": s.generator_steps, "cgan": s.generator_steps},
            "classifier_epochs": s.classifier_epochs,
        }
    )


def stage_pca_ae(data: Any, s: Settings, device: torch.device, state: dict[str, Any]) -> list[Row]:
    t0 = time.perf_counter()
    x_fit = data.x_train.flatten(1).numpy()
    x_test = data.x_test.flatten(1).numpy()
    pca = pca_sq_err_per_image(x_fit, x_test, 30)
    rows = [Row("squared error per test image, 30-dim codes: PCA", "13.87", "reproduce 13.87", f"{pca:.2f}",
                f"{'met' if abs(pca - 13.87) <= 0.5 else 'off'} (diff {pca - 13.87:+.2f})",
                "scikit-learn PCA fit on the 50k train images", time.perf_counter() - t0)]
    trained, secs = _train("ae", data, s.ae_epochs, device)
    state["ae"] = trained.model
    err = trained.test_metrics["test_sq_err_per_image"]
    rows.append(Row("squared error per test image, 30-dim codes: deep AE 784-1000-500-250-30", "3.00", "<= 3.00",
                    f"{err:.2f}", _verdict(err, 3.00, False),
                    f"Adam, BCE, {trained.fit.epochs_run} epochs, {family_settings('full', 'ae').train.get('lr_schedule', 'constant')} learning rate "
                    "(paper: RBM pre-training + fine-tuning)", secs))
    return rows


def stage_finetune(data: Any, s: Settings, device: torch.device, state: dict[str, Any]) -> list[Row]:
    t0 = time.perf_counter()
    profile = eval_profile(s).model_copy(update={"pretrain_latent": 30})
    pretrained = state.get("ae")
    wide, long, _, metrics = finetune_experiment(data, profile, device=device, pretrained=pretrained)
    secs = time.perf_counter() - t0
    nn_anchor = {100: 25.81, 600: 11.44, 1000: 10.7, 3000: 6.04}
    m1 = {100: 11.82, 600: 5.72, 1000: 4.24, 3000: 3.49}
    rows = []
    variants = {"finetuned": "fine-tuned", "finetuned_affine": "fine-tuned on RandomAffine-augmented batches"}
    for budget in s.label_budgets:
        scratch = metrics.get(f"finetune/scratch/{budget}/test_error_pct", math.nan)
        goal = 11.82 if budget == 100 else nn_anchor[budget]
        for key, label in variants.items():
            tuned = metrics.get(f"finetune/{key}/{budget}/test_error_pct", math.nan)
            std = metrics.get(f"finetune/{key}/{budget}/test_error_pct_std", math.nan)
            rows.append(Row(
                f"test error % at {budget} labels: pretrained encoder {label}",
                f"NN {nn_anchor[budget]}; M1+TSVM {m1[budget]}",
                f"< {nn_anchor[budget]}" + (" and <= 11.82" if budget == 100 else ""),
                f"{tuned:.2f} +- {std:.2f} (scratch {scratch:.2f})",
                _verdict(tuned, goal, False),
                f"{len(profile.finetune_seed_list)} seeds, {s.finetune_steps} steps, encoder of the AE above",
                secs / len(s.label_budgets) / len(variants),
            ))
    state["finetune_table"] = wide
    return rows


def stage_vae(data: Any, s: Settings, device: torch.device, state: dict[str, Any]) -> list[Row]:
    trained, secs = _train("vae", data, s.vae_epochs, device)
    state["vae"] = trained.model
    t0 = time.perf_counter()
    report = evaluate_model(trained.model, data, eval_profile(s), device=device, features=state.get("features"))
    nll = report.metrics.get("iwae_nll", math.nan)
    n_img = s.likelihood_images or data.x_test.shape[0]
    return [Row("VAE test NLL, nats (importance-weighted)", "86.76 (IWAE paper, 1-layer VAE, k=5000)", "<= 86.76",
                f"{nll:.2f}", _verdict(nll, 86.76, False),
                f"784-200-200-50 tanh, dynamic binarisation, {trained.fit.epochs_run} epochs (paper: 3280); "
                f"k={s.iwae_k} on {n_img} test images", secs + time.perf_counter() - t0)], report


def stage_rbm(data: Any, s: Settings, device: torch.device, state: dict[str, Any]) -> list[Row]:
    trained, secs = _train("rbm", data, s.rbm_epochs, device, {"cd_k": s.rbm_cd_k})
    t0 = time.perf_counter()
    report = evaluate_model(trained.model, data, eval_profile(s), device=device, features=state.get("features"))
    ll = report.metrics.get("ais_log_likelihood", math.nan)
    n_img = s.likelihood_images or data.x_test.shape[0]
    return [Row("RBM 500 hidden, test log-likelihood (AIS)", "-86.34 (Salakhutdinov & Murray 2008, CD-25)", ">= -86.34",
                f"{ll:.2f}", _verdict(ll, -86.34, True),
                f"CD-{s.rbm_cd_k}, {trained.fit.epochs_run} epochs; AIS {s.ais_betas} betas x {s.ais_chains} chains; "
                f"{n_img} test images", secs + time.perf_counter() - t0)], report


def stage_generative(data: Any, s: Settings, device: torch.device, state: dict[str, Any]) -> list[Row]:
    features = state["features"]
    rows = []
    floor = None
    for name in ("gan", "cgan"):
        trained, secs = _train(name, data, s.gan_epochs, device)
        t0 = time.perf_counter()
        report = evaluate_model(trained.model, data, eval_profile(s), device=device, features=features)
        table = report.tables["generative_quality"]
        floor = float(table[table.model != name]["fid"].iloc[0])
        fid = report.metrics.get("fid", math.nan)
        rows.append(Row(f"Frechet distance on our classifier's features: {name}", f"real train-vs-test floor {floor:.2f}",
                        "within 3x of the floor" if name == "gan" else "no goal", f"{fid:.2f} ({fid / floor:.1f}x floor)",
                        _verdict(fid, 3 * floor, False) if name == "gan" else "no goal",
                        f"DCGAN, {trained.fit.epochs_run} epochs, {s.fid_samples} samples", secs + time.perf_counter() - t0))
    vae_report = state.get("vae_report")
    if vae_report is not None and "fid" in vae_report.metrics:
        fid = vae_report.metrics["fid"]
        rows.append(Row("Frechet distance on our classifier's features: vae", f"real train-vs-test floor {floor:.2f}",
                        "no goal", f"{fid:.2f} ({fid / floor:.1f}x floor)", "no goal", "the VAE above", 0.0))
    return rows


def stage_augment(data: Any, s: Settings, device: torch.device, state: dict[str, Any]) -> list[Row]:
    t0 = time.perf_counter()
    summary, long, _, metrics = augmentation_experiment(data, eval_profile(s), device=device)
    state["augmentation_table"] = summary
    rows = []
    for key in ("cvae", "cgan", "classic"):
        sel = summary[(summary.labels == 100) & (summary.method == AUGMENT_METHODS[key])]
        gain = float(sel["gain_pct_mean"].iloc[0]) if not sel.empty else math.nan
        std = float(sel["gain_pct_std"].iloc[0]) if not sel.empty else math.nan
        rows.append(Row(f"augmentation gain at 100 labels, accuracy points: {key}", "none published", "positive",
                        f"{gain:+.2f} +- {std:.2f}", "met" if gain > 0 else f"missed ({gain:+.2f})",
                        f"{len(s.seeds)} seeds; generators trained on the same 100 labelled images",
                        (time.perf_counter() - t0) / 3))
    return rows


def render_markdown(rows: list[Row], meta: dict[str, Any], extra_tables: dict[str, Any]) -> str:
    lines = [
        QUALITY_BEGIN,
        "## Quality on real MNIST against the published numbers",
        "",
        f"Command: `{meta['command']}`  ",
        f"Device: {meta['device']}; torch {meta['torch']}; preset `{meta['preset']}`; "
        f"train images {meta['train_images']}, test images {meta['test_images']}; total {meta['minutes']:.1f} min; "
        f"run on {meta['date']}.",
        "",
        "| what | published anchor | goal | ours | verdict | settings | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.what} | {r.anchor} | {r.goal} | {r.ours} | {r.verdict} | {r.settings} | {r.seconds:.0f} |")
    for title, table in extra_tables.items():
        lines += ["", f"### {title}", "", markdown_table(table)]
    lines += [QUALITY_END]
    return "\n".join(lines)


def update_benchmarks_doc(path: Path, section: str, begin: str, end: str) -> None:
    """Replace the text between the markers (or append the section) in docs/benchmarks.md."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


STAGES: dict[str, Callable[..., Any]] = {
    "pca-ae": stage_pca_ae,
    "finetune": stage_finetune,
    "vae": stage_vae,
    "rbm": stage_rbm,
    "generative": stage_generative,
    "augment": stage_augment,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one Settings field of the preset, e.g. --set rbm_cd_k=25 (repeatable)")
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
        s = apply_overrides(PRESETS[args.preset], args.set)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    t_start = time.perf_counter()
    data = load_dataset("mnist")
    if s.train_subset:
        data = data.subset(n_train=s.train_subset)
    data = data.to(device)
    state: dict[str, Any] = {}
    if any(st in stages for st in ("vae", "rbm", "generative")):
        state["features"] = get_feature_classifier(data, device=device, epochs=s.classifier_epochs)
        logger.info("feature classifier test accuracy %.4f", state["features"].test_accuracy)
    rows: list[Row] = []
    for st in stages:
        logger.info("stage %s", st)
        out = STAGES[st](data, s, device, state)
        if isinstance(out, tuple):
            out, report = out
            state[f"{st}_report"] = report
        rows.extend(out)
        print(render_markdown(rows, _meta(args, s, device, data, t_start), {}), flush=True)
    extra = {}
    if "features" in state:
        rows.append(Row("feature classifier test accuracy (for FID)", "aim >= 99%", ">= 99%",
                        f"{100 * state['features'].test_accuracy:.2f}%",
                        _verdict(100 * state["features"].test_accuracy, 99.0, True),
                        f"{s.classifier_epochs} epochs", 0.0))
    if "finetune_table" in state:
        extra["Fine-tuning, test error % (layout of Kingma et al. 2014, Table 1)"] = state["finetune_table"]
    if "augmentation_table" in state:
        extra["Augmentation at 100 labels"] = state["augmentation_table"]
    meta = _meta(args, s, device, data, t_start)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "settings": dataclasses.asdict(s),
                                     "rows": [dataclasses.asdict(r) for r in rows]}, indent=2))
    update_benchmarks_doc(args.markdown, render_markdown(rows, meta, extra), QUALITY_BEGIN, QUALITY_END)
    print(render_markdown(rows, meta, extra))
    return 0


def _meta(args: Any, s: Settings, device: torch.device, data: Any, t_start: float) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "command": "python -m bench.quality " + " ".join(sys.argv[1:] if args is not None else []),
        "device": name,
        "torch": torch.__version__,
        "preset": args.preset + "".join(f" --set {a}" for a in args.set),
        "train_images": int(data.x_train.shape[0]),
        "test_images": int(data.x_test.shape[0]),
        "minutes": (time.perf_counter() - t_start) / 60,
        "date": time.strftime("%Y-%m-%d"),
    }


if __name__ == "__main__":
    sys.exit(main())
