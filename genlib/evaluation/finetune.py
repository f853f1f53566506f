"""Semi-supervised use of an unsupervised encoder: an ``ae`` pretrained on the whole train split, its
encoder then given a linear head and a small class-balanced labelled subset. Test error (%) by label
budget, laid out like Table 1 of Kingma et al. (2014): rows are methods, columns label budgets."""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from genlib.errors import ConfigError
from genlib.evaluation._utils import batched, format_mean_std, mean_std, seeded
from genlib.evaluation.augment_data import classic_augmentation
from genlib.evaluation.classifier import accuracy, train_classifier
from genlib.evaluation.profiles import EvalProfile

logger = logging.getLogger(__name__)

# Row keys and their readable names, in table order.
FINETUNE_METHODS = {
    "scratch": "from scratch (encoder architecture + linear head)",
    "frozen": "pretrained ae encoder, frozen + linear head",
    "finetuned": "pretrained ae encoder + the frozen run's head, fine-tuned end to end",
    "finetuned_affine": "pretrained ae encoder + the frozen run's head, fine-tuned end to end on RandomAffine batches",
}


def frozen_label(method: str) -> str:
    """Readable name of the row ``"<method>_frozen"``: another method's frozen codes with a linear head."""
    if method == "pca":
        return "PCA codes (fit on the train split) + linear head"
    return f"pretrained {method} codes (its encode), frozen + linear head"


FINETUNE_UNIT = "test error %, lower is better"


class EncoderClassifier(nn.Module):
    """encoder (B, C, H, W) -> code (B, latent) -> linear head -> logits (B, num_classes)."""

    def __init__(self, encoder: nn.Module, latent_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(latent_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


def label_subsets(y: Tensor, budgets: tuple[int, ...], seeds: tuple[int, ...]) -> dict[tuple[int, int], Tensor]:
    """Class-balanced index subsets of y (N,) for every (budget, seed); budgets the data cannot fill are skipped.

    Returns {(budget, seed): sorted int64 indices (budget,)}; the same seed gives the same subset.
    """
    from genlib.data import balanced_subset

    out: dict[tuple[int, int], Tensor] = {}
    for budget in budgets:
        if budget > y.shape[0]:
            logger.info("label budget %d exceeds the %d training images; skipped", budget, y.shape[0])
            continue
        try:
            for seed in seeds:
                out[(budget, seed)] = balanced_subset(y.cpu(), budget, seed)
        except ConfigError as err:
            logger.info("label budget %d skipped: %s", budget, err)
            for seed in seeds:
                out.pop((budget, seed), None)
    return out


def pretrain_ae(data: Any, profile: EvalProfile, device: torch.device, cached: dict[int, Any] | None = None) -> Any:
    """The unsupervised ``ae`` with code size ``profile.pretrain_latent`` (reused from ``cached`` when there)."""
    if cached and profile.pretrain_latent in cached:
        return cached[profile.pretrain_latent]
    from genlib.evaluation.pca import train_suite_model

    return train_suite_model(profile.pretrain_model, data, profile.pretrain_latent, profile, device)


def frozen_representations(data: Any, profile: EvalProfile, device: torch.device,
                           cached: dict[tuple[str, int], Any] | None = None) -> dict[str, Any]:
    """The encoders of ``profile.frozen_representations`` at code size ``profile.pretrain_latent``: reused
    from ``cached`` (keyed (method, latent size), as ``pca_vs_autoencoders`` fills it) or fitted here.

    Returns {method: an object with ``encode`` (B, C, H, W) -> (B, latent)}.
    """
    from genlib.evaluation.pca import PCAEncoder, pca_reconstruct, train_suite_model

    latent, out = profile.pretrain_latent, {}
    for method in profile.frozen_representations:
        if cached and (method, latent) in cached:
            out[method] = cached[(method, latent)]
        elif method == "pca":
            pca = pca_reconstruct(data.x_train.flatten(1).cpu().double().numpy(), data.x_train[:1].flatten(1).cpu()
                                  .double().numpy(), latent)[0]
            out[method] = PCAEncoder(pca.mean_, pca.components_)
        else:
            out[method] = train_suite_model(method, data, latent, profile, device)
    return out


def frozen_codes_experiment(
    data: Any, profile: EvalProfile, *, device: torch.device, representations: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Few-label rows for other methods' frozen codes: for every label budget and seed (the subsets of
    :func:`finetune_experiment`), a linear head on each method's standardised codes, trained like the
    ``frozen`` row (``finetune_steps`` steps, 10x the learning rate).

    Args:
        representations: {method: encoder} (see :func:`frozen_representations`); rows ``"<method>_frozen"``.
    Returns:
        (wide rows and long rows of the tables "finetune" and "finetune_long", metrics).
    """
    n_classes, seeds = max(int(data.num_classes), 2), profile.finetune_seed_list
    subsets = label_subsets(data.y_train, profile.label_budgets, seeds)
    bs, steps, lr = profile.classifier_batch_size, profile.finetune_steps, profile.classifier_lr
    codes = {m: _standardised_codes(enc, data.x_train, data.x_test, device, profile.eval_batch_size)
             for m, enc in representations.items()}
    methods = {f"{m}_frozen": frozen_label(m) for m in codes}
    rows = []
    for (budget, seed), idx in subsets.items():
        ys = data.y_train[idx.to(data.y_train.device)]
        for method, (c_train, c_test) in codes.items():
            with seeded(seed, device):
                head = nn.Linear(c_train.shape[1], n_classes).to(device)
            train_classifier(head, c_train[idx], ys, steps=steps, batch_size=bs, lr=10 * lr, seed=seed, device=device)
            err = 100 * (1 - accuracy(head, c_test, data.y_test, device=device))
            rows.append({"method": methods[f"{method}_frozen"], "method_key": f"{method}_frozen", "labels": budget,
                         "seed": seed, "test_error_pct": err})
    long = pd.DataFrame(rows, columns=["method", "method_key", "labels", "seed", "test_error_pct"])
    wide, metrics = _wide(long, methods, len(seeds))
    return wide, long, metrics


def finetune_experiment(
    data: Any, profile: EvalProfile, *, device: torch.device, pretrained: Any | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Figure], dict[str, float]]:
    """Test error of the four methods for every label budget and seed.

    Args:
        pretrained: an ``ae`` trained on the whole train split (trained here when None).
    Returns:
        (wide table "finetune": a row per method, per budget the text "mean +- std" in column
        "<budget> labels" and the numbers in "<budget> labels_mean" / "_std" (test error %, lower is
        better, over seeds); long table "finetune_long" (a row per run), figures, metrics).
    """
    from genlib.models import get_model

    t0 = time.perf_counter()
    ae = pretrained if pretrained is not None else pretrain_ae(data, profile, device)
    ae = ae.to(device).eval()
    latent, n_classes = ae.config.latent_dim, max(int(data.num_classes), 2)
    seeds = profile.finetune_seed_list
    subsets = label_subsets(data.y_train, profile.label_budgets, seeds)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    bs, steps, lr = profile.classifier_batch_size, profile.finetune_steps, profile.classifier_lr
    with torch.no_grad():
        codes_train = batched(ae.encode, x_train, device=device, batch_size=profile.eval_batch_size)
        codes_test = batched(ae.encode, x_test, device=device, batch_size=profile.eval_batch_size)
    # The frozen head sees standardised codes (statistics of the whole train split: no labels used),
    # and a 10x learning rate: a convex linear model that should be fit, not left half-trained.
    mean, std = codes_train.mean(0), codes_train.std(0).clamp_min(1e-6)
    codes_train, codes_test = (codes_train - mean) / std, (codes_test - mean) / std

    affine = classic_augmentation()
    rows = []
    for (budget, seed), idx in subsets.items():
        idx_dev = idx.to(x_train.device)
        xs, ys = x_train[idx_dev], y_train[idx_dev]
        errors: dict[str, float] = {}
        with seeded(seed, device):  # initial weights depend on the seed only
            scratch = EncoderClassifier(get_model(ae.name, ae.config).encoder, latent, n_classes).to(device)
            head_frozen = nn.Linear(latent, n_classes).to(device)
            tuned = EncoderClassifier(copy.deepcopy(ae.encoder), latent, n_classes).to(device)
            tuned_affine = copy.deepcopy(tuned)
        train_classifier(scratch, xs, ys, steps=steps, batch_size=bs, lr=lr, seed=seed, device=device)
        errors["scratch"] = 100 * (1 - accuracy(scratch, x_test, y_test, device=device))
        # Frozen encoder: train the head on precomputed codes (same result, no encoder passes).
        train_classifier(head_frozen, codes_train[idx], ys, steps=steps, batch_size=bs, lr=10 * lr, seed=seed,
                         device=device)
        errors["frozen"] = 100 * (1 - accuracy(head_frozen, codes_test, y_test, device=device))
        # Fine-tuning starts from the probe's head (LP-FT, Kumar et al. 2022): a random head's first
        # gradients would scramble the pretrained features before the head is any use.
        for net in (tuned, tuned_affine):
            _load_probe_head(net.head, head_frozen, mean, std)
        train_classifier(tuned, xs, ys, steps=steps, batch_size=bs, lr=lr, seed=seed, device=device)
        errors["finetuned"] = 100 * (1 - accuracy(tuned, x_test, y_test, device=device))
        # The same start and steps, each batch through random affines: what a practitioner adds
        # when 100 labels overfit (the control of the augmentation experiment).
        train_classifier(tuned_affine, xs, ys, steps=steps, batch_size=bs, lr=lr, seed=seed, device=device,
                         transform=lambda xb, g: affine(xb))
        errors["finetuned_affine"] = 100 * (1 - accuracy(tuned_affine, x_test, y_test, device=device))
        for method, err in errors.items():
            rows.append({"method": FINETUNE_METHODS[method], "method_key": method, "labels": budget, "seed": seed,
                         "test_error_pct": err})
    long = pd.DataFrame(rows, columns=["method", "method_key", "labels", "seed", "test_error_pct"])

    wide, metrics = _wide(long, FINETUNE_METHODS, len(seeds))
    figures = {"finetune": finetune_figure(long)} if not long.empty else {}
    logger.info("fine-tuning experiment done in %.1fs", time.perf_counter() - t0)
    return wide, long, figures, metrics


def _wide(long: pd.DataFrame, methods: dict[str, str], n_seeds: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """The wide "finetune" rows of ``methods`` (key -> readable name) from the long rows, and their metrics."""
    wide_rows, metrics = [], {}
    budgets = sorted(long["labels"].unique().tolist()) if not long.empty else []
    for key, label in methods.items():
        row: dict[str, Any] = {"method": label, "method_key": key, "unit": FINETUNE_UNIT}
        for budget in budgets:
            vals = long[(long.method_key == key) & (long.labels == budget)]["test_error_pct"].tolist()
            mean, std = mean_std(vals)
            row[f"{budget} labels"] = format_mean_std(mean, std)
            row[f"{budget} labels_mean"] = mean
            row[f"{budget} labels_std"] = std
            metrics[f"finetune/{key}/{budget}/test_error_pct"] = mean
            if not math.isnan(std):  # one seed has no spread
                metrics[f"finetune/{key}/{budget}/test_error_pct_std"] = std
        row["seeds"] = n_seeds
        wide_rows.append(row)
    return pd.DataFrame(wide_rows), metrics


@torch.no_grad()
def _standardised_codes(encoder: Any, x_train: Tensor, x_test: Tensor, device: torch.device,
                        batch_size: int) -> tuple[Tensor, Tensor]:
    """Codes (N, k) of both splits, standardised with the train split's statistics (no labels used)."""
    c_train = batched(encoder.encode, x_train, device=device, batch_size=batch_size)
    c_test = batched(encoder.encode, x_test, device=device, batch_size=batch_size)
    mean, std = c_train.mean(0), c_train.std(0).clamp_min(1e-6)
    return (c_train - mean) / std, (c_test - mean) / std


@torch.no_grad()
def _load_probe_head(head: nn.Linear, probe: nn.Linear, mean: Tensor, std: Tensor) -> None:
    """Set ``head`` (on raw codes) to ``probe`` (trained on codes standardised with mean/std (latent,))."""
    head.weight.copy_(probe.weight / std.to(probe.weight.device))
    head.bias.copy_(probe.bias - (probe.weight * (mean / std).to(probe.weight.device)).sum(1))


def finetune_figure(long: pd.DataFrame) -> Figure:
    """Test error (%) against label budget, mean +- std over seeds, one line per method."""
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for key, label in dict(zip(long["method_key"], long["method"])).items():
        grp = long[long.method_key == key].groupby("labels")["test_error_pct"]
        means, stds = grp.mean(), grp.std().fillna(0)
        ax.errorbar(means.index, means.values, yerr=stds.values, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.minorticks_off()  # the budgets themselves label the axis
    ax.set_xticks(sorted(long["labels"].unique()), [str(b) for b in sorted(long["labels"].unique())])
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test error (%)")
    ax.set_title("Encoder + classifier fine-tuning")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig
