"""The stages of the quality benchmark: each trains what it needs and returns rows beside the published anchors.

A stage is ``stage(data, run, device, state) -> rows`` (or ``(rows, report)``); ``run`` resolves every
setting through genlib's run spec, ``state`` carries models and tables from one stage to the next.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import torch

from bench.quality.profiles import QualityRun
from genlib.evaluation import augmentation_experiment, evaluate_model, finetune_experiment, pca_sq_err_per_image
from genlib.evaluation.model_eval import test_metrics
from genlib.models import get_model_class
from genlib.training import TrainedModel, train_model


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


def verdict(ours: float, goal: float, higher_is_better: bool) -> str:
    """'met', 'missed by X' or 'not measured' for a number against its goal."""
    if not math.isfinite(ours):
        return "not measured"
    ok = ours >= goal if higher_is_better else ours <= goal
    return "met" if ok else f"missed by {abs(ours - goal):.2f}"


def train_family(family: str, data: Any, run: QualityRun, device: torch.device) -> tuple[TrainedModel, float]:
    """Train ``family`` at the run's resolved settings; returns the trained model and the seconds it took."""
    spec = run.spec(family, data)
    t0 = time.perf_counter()
    trained = train_model(spec.model, data, spec.train, device=device, progress=False)
    return trained, time.perf_counter() - t0


def stage_pca_ae(data: Any, run: QualityRun, device: torch.device, state: dict[str, Any]) -> list[Row]:
    t0 = time.perf_counter()
    x_fit = data.x_train.flatten(1).cpu().numpy()
    x_test = data.x_test.flatten(1).cpu().numpy()
    pca = pca_sq_err_per_image(x_fit, x_test, 30)
    rows = [Row("squared error per test image, 30-dim codes: PCA", "13.87", "reproduce 13.87", f"{pca:.2f}",
                f"{'met' if abs(pca - 13.87) <= 0.5 else 'off'} (diff {pca - 13.87:+.2f})",
                f"scikit-learn PCA fit on the {x_fit.shape[0]} train images", time.perf_counter() - t0)]
    trained, secs = train_family("ae", data, run, device)
    state["ae"] = trained.model
    err = test_metrics(trained.model, data, device=device)["test_sq_err_per_image"]
    rows.append(Row("squared error per test image, 30-dim codes: deep AE 784-1000-500-250-30", "3.00", "<= 3.00",
                    f"{err:.2f}", verdict(err, 3.00, False),
                    f"Adam, BCE, {trained.fit.epochs_run} epochs, {run.spec('ae').train.lr_schedule} learning rate "
                    "(paper: RBM pre-training + fine-tuning)", secs))
    return rows


def stage_finetune(data: Any, run: QualityRun, device: torch.device, state: dict[str, Any]) -> list[Row]:
    t0 = time.perf_counter()
    profile = run.evaluation
    wide, long, _, metrics = finetune_experiment(data, profile, device=device, pretrained=state.get("ae"))
    secs = time.perf_counter() - t0
    nn_anchor = {100: 25.81, 600: 11.44, 1000: 10.7, 3000: 6.04}
    m1 = {100: 11.82, 600: 5.72, 1000: 4.24, 3000: 3.49}
    rows = []
    variants = {"finetuned": "fine-tuned", "finetuned_affine": "fine-tuned on RandomAffine-augmented batches"}
    for budget in profile.label_budgets:
        scratch = metrics.get(f"finetune/scratch/{budget}/test_error_pct", math.nan)
        goal = 11.82 if budget == 100 else nn_anchor.get(budget, math.nan)
        for key, label in variants.items():
            tuned = metrics.get(f"finetune/{key}/{budget}/test_error_pct", math.nan)
            std = metrics.get(f"finetune/{key}/{budget}/test_error_pct_std", math.nan)
            rows.append(Row(
                f"test error % at {budget} labels: pretrained encoder {label}",
                f"NN {nn_anchor.get(budget, '-')}; M1+TSVM {m1.get(budget, '-')}",
                f"< {nn_anchor.get(budget, '-')}" + (" and <= 11.82" if budget == 100 else ""),
                f"{tuned:.2f} +- {std:.2f} (scratch {scratch:.2f})",
                verdict(tuned, goal, False),
                f"{len(profile.finetune_seed_list)} seeds, {profile.finetune_steps} steps, encoder of the AE above",
                secs / len(profile.label_budgets) / len(variants),
            ))
    state["finetune_table"] = wide
    return rows


def stage_vae(data: Any, run: QualityRun, device: torch.device, state: dict[str, Any]) -> tuple[list[Row], Any]:
    trained, secs = train_family("vae", data, run, device)
    state["vae"] = trained.model
    t0 = time.perf_counter()
    ev = run.evaluation
    report = evaluate_model(trained.model, data, ev, device=device, features=state.get("features"))
    nll = report.metrics.get("iwae_nll", math.nan)
    n_img = ev.likelihood_images or data.x_test.shape[0]
    return [Row("VAE test NLL, nats (importance-weighted)", "86.76 (IWAE paper, 1-layer VAE, k=5000)", "<= 86.76",
                f"{nll:.2f}", verdict(nll, 86.76, False),
                f"784-200-200-50 tanh, dynamic binarisation, {trained.fit.epochs_run} epochs (paper: 3280); "
                f"k={ev.iwae_k} on {n_img} test images", secs + time.perf_counter() - t0)], report


def stage_rbm(data: Any, run: QualityRun, device: torch.device, state: dict[str, Any]) -> tuple[list[Row], Any]:
    trained, secs = train_family("rbm", data, run, device)
    t0 = time.perf_counter()
    ev = run.evaluation
    report = evaluate_model(trained.model, data, ev, device=device, features=state.get("features"))
    ll = report.metrics.get("ais_log_likelihood", math.nan)
    n_img = ev.likelihood_images or data.x_test.shape[0]
    return [Row("RBM 500 hidden, test log-likelihood (AIS)", "-86.34 (Salakhutdinov & Murray 2008, CD-25)", ">= -86.34",
                f"{ll:.2f}", verdict(ll, -86.34, True),
                f"CD-{trained.model.config.cd_k}, {trained.fit.epochs_run} epochs; AIS {ev.ais_betas} betas x "
                f"{ev.ais_chains} chains; {n_img} test images", secs + time.perf_counter() - t0)], report


def implicit_generators(families: list[str]) -> list[str]:
    """Of ``families``, those that sample but have neither a likelihood nor a reconstruction (scored by samples alone)."""
    return [n for n in families if (c := get_model_class(n)).generates and c.likelihood is None and not c.reconstructs]


def stage_generative(data: Any, run: QualityRun, device: torch.device, state: dict[str, Any]) -> list[Row]:
    features = state["features"]
    rows = []
    floor = math.nan
    for name in implicit_generators(run.families):
        unconditional = not get_model_class(name).conditional
        trained, secs = train_family(name, data, run, device)
        t0 = time.perf_counter()
        report = evaluate_model(trained.model, data, run.evaluation, device=device, features=features)
        table = report.tables["generative_quality"]
        floor = float(table[table.model != name]["fid"].iloc[0])
        fid = report.metrics.get("fid", math.nan)
        rows.append(Row(f"Frechet distance on our classifier's features: {name}", f"real train-vs-test floor {floor:.2f}",
                        "within 3x of the floor" if unconditional else "no goal", f"{fid:.2f} ({fid / floor:.1f}x floor)",
                        verdict(fid, 3 * floor, False) if unconditional else "no goal",
                        f"DCGAN, {trained.fit.epochs_run} epochs, {run.evaluation.fid_samples} samples",
                        secs + time.perf_counter() - t0))
    vae_report = state.get("vae_report")
    if vae_report is not None and "fid" in vae_report.metrics:
        fid = vae_report.metrics["fid"]
        rows.append(Row("Frechet distance on our classifier's features: vae", f"real train-vs-test floor {floor:.2f}",
                        "no goal", f"{fid:.2f} ({fid / floor:.1f}x floor)", "no goal", "the VAE above", 0.0))
    return rows


def stage_augment(data: Any, run: QualityRun, device: torch.device, state: dict[str, Any]) -> list[Row]:
    t0 = time.perf_counter()
    summary, long, _, metrics = augmentation_experiment(data, run.evaluation, device=device)
    state["augmentation_table"] = summary
    # Every method the experiment ran at 100 labels except its real-only baseline, in the table's order.
    rows_100 = [r for r in summary.to_dict("records") if r["labels"] == 100 and r.get("gain_pct") != "(baseline)"]
    rows = []
    for r in rows_100:
        gain, std = float(r["gain_pct_mean"]), float(r["gain_pct_std"])
        rows.append(Row(f"augmentation gain at 100 labels, accuracy points: {r['method']}", "none published", "positive",
                        f"{gain:+.2f} +- {std:.2f}", "met" if gain > 0 else f"missed ({gain:+.2f})",
                        f"{len(run.evaluation.seeds)} seeds; " + str(r.get("generator_trained_on") or
                                                                  "generators trained on the same 100 labelled images"),
                        (time.perf_counter() - t0) / max(1, len(rows_100))))
    return rows


@dataclasses.dataclass(frozen=True)
class Stage:
    """A stage and whether it scores samples on the feature classifier (trained once, before the stages)."""

    run: Callable[..., Any]
    needs_features: bool = False


STAGES: dict[str, Stage] = {
    "pca-ae": Stage(stage_pca_ae),
    "finetune": Stage(stage_finetune),
    "vae": Stage(stage_vae, needs_features=True),
    "rbm": Stage(stage_rbm, needs_features=True),
    "generative": Stage(stage_generative, needs_features=True),
    "augment": Stage(stage_augment),
}
