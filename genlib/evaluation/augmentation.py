"""Data augmentation with generated images: a classifier trained on a small class-balanced labelled
subset alone, plus N labelled samples of a ``cvae`` or ``cgan`` trained only on that subset, or
with classic affine augmentation as the control. Accuracy and gain over the baseline per budget."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from genlib.evaluation._utils import format_mean_std, mean_std, seeded, with_train
from genlib.evaluation.classifier import ClassifierConfig, FeatureClassifier, accuracy, mlp_classifier, train_classifier
from genlib.evaluation.generative import draw_samples
from genlib.evaluation.profiles import EvalProfile

logger = logging.getLogger(__name__)

AUGMENT_METHODS = {
    "real_only": "real labelled subset only",
    "cvae": "+ cvae samples",
    "cgan": "+ cgan samples",
    "classic": "+ classic augmentation (RandomAffine)",
}
GENERATORS = ("cvae", "cgan")
VAL_IMAGES_FOR_GENERATORS = 256  # validation loss is only logged (no early stopping): a slice suffices
# A tiny labelled subset is repeated to make epochs of at least this many images: the same passes over
# the same images, but far fewer per-epoch validation rounds and log lines.
MIN_EPOCH_IMAGES = 2048


AFFINE_GROUP = 8  # images sharing one random affine


def classic_augmentation() -> Any:
    """RandomAffine (+-10 degrees, 10% shifts, 0.9-1.1 scale) from torchvision.transforms.v2 on batch tensors.

    v2 draws one affine per tensor it is given, so the batch (B, C, H, W) goes through in groups of
    AFFINE_GROUP images: more variety than one affine per batch, still cheap tensor ops. The
    parameters come from torch's global RNG (seeded by the training loop).
    """
    from torchvision.transforms import v2

    affine = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))

    def apply(xb: Tensor) -> Tensor:
        return torch.cat([affine(chunk) for chunk in torch.split(xb, AFFINE_GROUP)])

    return apply


def make_classifier(kind: str, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The augmentation experiment's classifier: an MLP (784-256-128-C) or the feature CNN's architecture."""
    if kind == "cnn":
        return FeatureClassifier(ClassifierConfig(image_shape=image_shape, num_classes=num_classes))
    return mlp_classifier(image_shape, num_classes)


def train_generator(name: str, data: Any, x: Tensor, y: Tensor, profile: EvalProfile, *, device: torch.device, seed: int):
    """Train conditional generator ``name`` on the labelled images x (N, C, H, W), y (N,) only.

    Runs ``profile.generator_steps[name]`` optimisation steps (rounded up to whole epochs).
    """
    from genlib.models import get_model
    from genlib.training import TrainConfig, config_for_data, fit

    steps = profile.generator_steps.get(name, 500)
    bs = min(64, x.shape[0])
    reps = max(1, min(MIN_EPOCH_IMAGES, steps * bs) // x.shape[0])
    x, y = x.repeat(reps, 1, 1, 1), y.repeat(reps)
    if x.shape[0] % bs == 1:  # a last batch of one image breaks BatchNorm in training mode
        x, y = torch.cat([x, x[:1]]), torch.cat([y, y[:1]])
    epochs = max(1, math.ceil(steps / math.ceil(x.shape[0] / bs)))
    sub = with_train(data, x, y, data.x_val[:VAL_IMAGES_FOR_GENERATORS], data.y_val[:VAL_IMAGES_FOR_GENERATORS])
    config = config_for_data(name, sub, profile.generator_overrides.get(name, {}))
    with seeded(seed, device):
        model = get_model(name, config)
    fit(model, sub, TrainConfig(epochs=epochs, batch_size=bs, seed=seed), device=device, progress=False)
    return model.eval()


def _train_or_none(name: str, data: Any, x: Tensor, y: Tensor, profile: EvalProfile, *, device: torch.device, seed: int):
    from genlib.errors import TrainingDivergedError

    try:
        return train_generator(name, data, x, y, profile, device=device, seed=seed)
    except TrainingDivergedError as err:
        # One diverged generator should not sink the whole experiment: its rows stay empty (NaN).
        logger.warning("augmentation: %s on %d labels diverged (%s); its condition is left out", name, x.shape[0], err)
        return None


def augmentation_experiment(
    data: Any, profile: EvalProfile, *, device: torch.device
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Figure], dict[str, float]]:
    """Run every (budget, seed, method) and summarise.

    With ``profile.generators_per_seed`` False, each budget has one labelled subset (seed 0's) and one
    cvae and one cgan trained on it; the classifier seeds then vary initialisation, batch order,
    synthetic draws and affine draws. With True, every seed draws its own subset and trains its own
    generators.

    Returns:
        (summary table "augmentation", per-run table "augmentation_long", figures, metrics).
    """
    from genlib.data import balanced_subset

    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    n_classes = max(int(data.num_classes), 2)
    image_shape = tuple(x_train.shape[1:])
    affine = classic_augmentation()
    steps, bs, lr = profile.augment_steps, profile.classifier_batch_size, profile.classifier_lr
    runs = []
    for budget in profile.augment_budgets:
        if budget > x_train.shape[0]:
            logger.info("augmentation budget %d exceeds the %d training images; skipped", budget, x_train.shape[0])
            continue
        generators: dict[int, dict[str, Any]] = {}
        for seed in profile.seeds:
            subset_seed = seed if profile.generators_per_seed else profile.seeds[0]
            idx = balanced_subset(y_train.cpu(), budget, subset_seed).to(x_train.device)
            xs, ys = x_train[idx], y_train[idx]
            if subset_seed not in generators:
                tg = time.perf_counter()
                generators[subset_seed] = {
                    g: _train_or_none(g, data, xs, ys, profile, device=device, seed=subset_seed) for g in GENERATORS
                }
                logger.info("augmentation: generators for %d labels trained in %.1fs", budget, time.perf_counter() - tg)
            sets: dict[str, tuple[Tensor, Tensor]] = {"real_only": (xs.cpu(), ys.cpu()), "classic": (xs.cpu(), ys.cpu())}
            for g, model in generators[subset_seed].items():
                if model is None:
                    continue
                if profile.n_synthetic > 0:
                    x_syn, y_syn = draw_samples(model, profile.n_synthetic, seed=seed, batch_size=profile.eval_batch_size)
                    sets[g] = (torch.cat([xs.cpu(), x_syn]), torch.cat([ys.cpu(), y_syn]))
                else:
                    sets[g] = (xs.cpu(), ys.cpu())
            for method in (m for m in AUGMENT_METHODS if m in sets):
                x_fit, y_fit = sets[method]
                with seeded(seed, device):
                    net = make_classifier(profile.augment_classifier, image_shape, n_classes).to(device)
                transform = (lambda xb, g: affine(xb)) if method == "classic" else None
                train_classifier(net, x_fit, y_fit, steps=steps, batch_size=bs, lr=lr, seed=seed, device=device,
                                 transform=transform)
                acc = 100 * accuracy(net, x_test, y_test, device=device)
                runs.append({"labels": budget, "method_key": method, "seed": seed, "subset_seed": subset_seed,
                             "train_images": int(x_fit.shape[0]), "accuracy_pct": acc})
    long = pd.DataFrame(runs, columns=["labels", "method_key", "seed", "subset_seed", "train_images", "accuracy_pct"])
    if not long.empty:
        base = long[long.method_key == "real_only"].set_index(["labels", "seed"])["accuracy_pct"]
        long["gain_pct"] = long["accuracy_pct"].to_numpy() - base.loc[list(zip(long["labels"], long["seed"]))].to_numpy()
    else:
        long["gain_pct"] = []

    rows, metrics = [], {}
    shared = f"seed-{profile.seeds[0]} subset; generators trained once per budget, reused by every seed"
    for budget in sorted(long["labels"].unique().tolist()):
        for key, label in AUGMENT_METHODS.items():
            sel = long[(long.labels == budget) & (long.method_key == key)]
            acc_m, acc_s = mean_std(sel["accuracy_pct"].tolist())
            gain_m, gain_s = mean_std(sel["gain_pct"].tolist())
            if key in GENERATORS:
                trained_on = f"{budget} labelled images ({'own subset per seed' if profile.generators_per_seed else shared})"
            else:
                trained_on = "n/a"
            rows.append({
                "labels": budget,
                "method": label,
                "generator_trained_on": trained_on,
                "n_synthetic": profile.n_synthetic if key in GENERATORS else 0,
                "accuracy_pct": format_mean_std(acc_m, acc_s),
                "gain_pct": format_mean_std(gain_m, gain_s) if key != "real_only" else "(baseline)",
                "accuracy_pct_mean": acc_m,
                "accuracy_pct_std": acc_s,
                "gain_pct_mean": gain_m,
                "gain_pct_std": gain_s,
                "seeds": int(len(sel)),
            })
            if not math.isnan(acc_m):  # a diverged generator leaves its condition without runs
                metrics[f"augmentation/{key}/{budget}/accuracy_pct"] = acc_m
            if key != "real_only" and not math.isnan(gain_m):
                metrics[f"augmentation/{key}/{budget}/gain_pct"] = gain_m
    table = pd.DataFrame(rows)
    long.insert(1, "method", long["method_key"].map(AUGMENT_METHODS))
    figures = {"augmentation": augmentation_figure(table)} if not table.empty else {}
    logger.info("augmentation experiment done in %.1fs", time.perf_counter() - t0)
    return table, long, figures, metrics


def augmentation_figure(table: pd.DataFrame) -> Figure:
    """Accuracy gain over the real-only baseline (percentage points) by label budget, mean +- std over seeds."""
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.subplots()
    budgets = sorted(table["labels"].unique())
    methods = [m for k, m in AUGMENT_METHODS.items() if k != "real_only"]
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        sel = table[table.method == method].set_index("labels").reindex(budgets)
        pos = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(budgets))]
        ax.bar(pos, sel["gain_pct_mean"], width, yerr=sel["gain_pct_std"].fillna(0), capsize=3, label=method)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(budgets)), [f"{b} labels" for b in budgets])
    ax.set_ylabel("accuracy gain over real only (points)")
    ax.set_title("Augmentation gains")
    ax.legend(fontsize=7)
    return fig
