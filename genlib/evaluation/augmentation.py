"""Data augmentation with generated images: a classifier trained on a small class-balanced labelled
subset alone, plus labelled samples of conditional generators, beside classic affine augmentation and
the fair reference that uses the same unlabelled images without generating anything.

Generators are trained either on the labelled subset only, or (``semi``) on it plus the unlabelled
training images pseudo-labelled by a teacher (the subset's RandomAffine classifier), keeping only the
teacher's confident labels; their samples are kept only where the teacher recognises the requested
class. ``+ pseudo-labelled real images`` trains on exactly those pseudo-labelled images instead of on
samples, so the gain due to generation itself is the difference of the two rows.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from genlib.evaluation._utils import format_mean_std, mean_std, seeded
from genlib.evaluation.augment_data import (
    check_generators,
    classic_augmentation,
    make_classifier,
    pseudo_label,
    synthetic_set,
    train_generator_or_none,
)
from genlib.evaluation.classifier import accuracy, train_classifier
from genlib.evaluation.profiles import EvalProfile

logger = logging.getLogger(__name__)

BASE_METHODS = {
    "real_only": "real labelled subset only",
    "classic": "+ classic augmentation (RandomAffine)",
    "pseudo_real": "+ pseudo-labelled real images (no generation)",
}
GENERATOR_DATA = {
    "labelled": "+ {g} samples (generator: labelled subset only)",
    "semi": "+ {g} samples (generator: labelled + pseudo-labelled images)",
}


def augment_methods(profile: EvalProfile) -> dict[str, str]:
    """Method keys and row names of the experiment, in table order."""
    methods = {k: v for k, v in BASE_METHODS.items() if k != "pseudo_real" or "semi" in profile.augment_generator_data}
    for g in profile.augment_generators:
        for d in profile.augment_generator_data:
            methods[f"{g}_{d}"] = GENERATOR_DATA[d].format(g=g)
    return methods


def _trained_on(key: str, budget: int, n_pseudo: float, profile: EvalProfile) -> str:
    shared = "" if profile.generators_per_seed else "; trained once per budget, reused by every seed"
    teacher = (f"teacher: RandomAffine classifier on the {budget} labels; per class its <= {profile.pseudo_per_class} "
               f"most confident, p >= {profile.pseudo_label_confidence:g}")
    if key == "pseudo_real":
        return f"no generator: {budget} labelled + {n_pseudo:.0f} pseudo-labelled real images ({teacher})"
    if key.endswith("_labelled"):
        return f"{budget} labelled images{shared}"
    if key.endswith("_semi"):
        return f"{budget} labelled + {n_pseudo:.0f} pseudo-labelled unlabelled images ({teacher}){shared}"
    return "n/a"


def mixed(xs: Tensor, ys: Tensor, x_add: Tensor, y_add: Tensor) -> tuple[Tensor, Tensor]:
    """The labelled images (N, C, H, W) repeated to about as many as the added ones, then the added ones.

    Without the repeats a few thousand added images would dilute a hundred real labels: with the
    same number of classifier steps each real image would be seen a tenth as often as without them.
    """
    reps = max(1, round(x_add.shape[0] / max(1, xs.shape[0])))
    return torch.cat([xs.repeat(reps, 1, 1, 1), x_add]), torch.cat([ys.repeat(reps), y_add])


def _sets_for_subset(data: Any, idx: Tensor, budget: int, subset_seed: int, profile: EvalProfile,
                     device: torch.device) -> tuple[dict[str, tuple[Tensor, Tensor]], Any, dict[str, Any], int]:
    """Training sets that do not depend on the classifier seed, the teacher, the generators, and the
    number of pseudo-labelled images."""
    x_train, y_train = data.x_train, data.y_train
    xs, ys = x_train[idx], y_train[idx]
    n_classes = max(int(data.num_classes), 2)
    sets = {"real_only": (xs.cpu(), ys.cpu())}
    with seeded(subset_seed, device):
        teacher = make_classifier(profile.augment_classifier, tuple(x_train.shape[1:]), n_classes).to(device)
    affine = classic_augmentation()
    train_classifier(teacher, xs, ys, steps=profile.augment_steps, batch_size=profile.classifier_batch_size,
                     lr=profile.classifier_lr, seed=subset_seed, device=device, transform=lambda xb, g: affine(xb))
    generators: dict[str, Any] = {}
    n_pseudo = 0
    if "semi" in profile.augment_generator_data:
        pool = torch.ones(x_train.shape[0], dtype=torch.bool, device=x_train.device)
        pool[idx] = False  # the unlabelled images: every training image outside the labelled subset
        xp, yp = pseudo_label(teacher, x_train[pool], confidence=profile.pseudo_label_confidence,
                              per_class=profile.pseudo_per_class, num_classes=n_classes, device=device,
                              batch_size=profile.eval_batch_size)
        x_semi, y_semi, n_pseudo = torch.cat([xs, xp]), torch.cat([ys, yp]), int(xp.shape[0])
        sets["pseudo_real"] = mixed(xs.cpu(), ys.cpu(), xp.cpu(), yp.cpu())
        for g in profile.augment_generators:
            generators[f"{g}_semi"] = train_generator_or_none(g, data, x_semi, y_semi, profile, device=device,
                                                              seed=subset_seed)
    if "labelled" in profile.augment_generator_data:
        for g in profile.augment_generators:
            generators[f"{g}_labelled"] = train_generator_or_none(g, data, xs, ys, profile, device=device,
                                                                  seed=subset_seed)
    return sets, teacher, generators, n_pseudo


def augmentation_experiment(
    data: Any, profile: EvalProfile, *, device: torch.device
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Figure], dict[str, float]]:
    """Run every (budget, seed, method) and summarise.

    With ``profile.generators_per_seed`` False, each budget has one labelled subset (seed 0's), one
    teacher and one generator of each kind; the classifier seeds then vary initialisation, batch order,
    synthetic draws and affine draws. With True, every seed draws its own subset and trains its own.

    Returns:
        (summary table "augmentation", per-run table "augmentation_long", figures, metrics).
    """
    from genlib.data import balanced_subset

    check_generators(profile.augment_generators)
    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    n_classes = max(int(data.num_classes), 2)
    image_shape = tuple(x_train.shape[1:])
    affine = classic_augmentation()
    methods = augment_methods(profile)
    steps, bs, lr = profile.augment_steps, profile.classifier_batch_size, profile.classifier_lr
    runs = []
    for budget in profile.augment_budgets:
        if budget > x_train.shape[0]:
            logger.info("augmentation budget %d exceeds the %d training images; skipped", budget, x_train.shape[0])
            continue
        shared: dict[int, Any] = {}
        for seed in profile.seeds:
            subset_seed = seed if profile.generators_per_seed else profile.seeds[0]
            idx = balanced_subset(y_train.cpu(), budget, subset_seed).to(x_train.device)
            if subset_seed not in shared:
                tg = time.perf_counter()
                shared[subset_seed] = _sets_for_subset(data, idx, budget, subset_seed, profile, device)
                logger.info("augmentation: teacher and generators for %d labels in %.1fs", budget, time.perf_counter() - tg)
            base_sets, teacher, generators, n_pseudo = shared[subset_seed]
            sets = dict(base_sets, classic=base_sets["real_only"])
            xs, ys = base_sets["real_only"]
            for key, gen in generators.items():
                if gen is None:
                    continue
                x_syn, y_syn = synthetic_set(gen, profile.n_synthetic, seed=seed, batch_size=profile.eval_batch_size,
                                             teacher=teacher if profile.filter_synthetic else None,
                                             confidence=profile.pseudo_label_confidence, device=device)
                sets[key] = mixed(xs, ys, x_syn, y_syn)
            for method in (m for m in methods if m in sets):
                x_fit, y_fit = sets[method]
                with seeded(seed, device):
                    net = make_classifier(profile.augment_classifier, image_shape, n_classes).to(device)
                transform = (lambda xb, g: affine(xb)) if method == "classic" else None
                train_classifier(net, x_fit, y_fit, steps=steps, batch_size=bs, lr=lr, seed=seed, device=device,
                                 transform=transform)
                acc = 100 * accuracy(net, x_test, y_test, device=device)
                runs.append({"labels": budget, "method_key": method, "seed": seed, "subset_seed": subset_seed,
                             "train_images": int(x_fit.shape[0]), "n_pseudo": n_pseudo, "accuracy_pct": acc})
    table, long, metrics = _summarise(runs, methods, profile)
    figures = {"augmentation": augmentation_figure(table)} if not table.empty else {}
    logger.info("augmentation experiment done in %.1fs", time.perf_counter() - t0)
    return table, long, figures, metrics


def _summarise(runs: list[dict[str, Any]], methods: dict[str, str],
               profile: EvalProfile) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    cols = ["labels", "method_key", "seed", "subset_seed", "train_images", "n_pseudo", "accuracy_pct"]
    long = pd.DataFrame(runs, columns=cols)
    if not long.empty:
        base = long[long.method_key == "real_only"].set_index(["labels", "seed"])["accuracy_pct"]
        long["gain_pct"] = long["accuracy_pct"].to_numpy() - base.loc[list(zip(long["labels"], long["seed"]))].to_numpy()
    else:
        long["gain_pct"] = []
    rows, metrics = [], {}
    for budget in sorted(long["labels"].unique().tolist()):
        for key, label in methods.items():
            sel = long[(long.labels == budget) & (long.method_key == key)]
            acc_m, acc_s = mean_std(sel["accuracy_pct"].tolist())
            gain_m, gain_s = mean_std(sel["gain_pct"].tolist())
            generated = key not in BASE_METHODS
            rows.append({
                "labels": budget,
                "method": label,
                "method_key": key,
                "generated": generated,
                "generator_trained_on": _trained_on(key, budget, float(sel["n_pseudo"].mean()) if len(sel) else 0,
                                                    profile),
                "n_synthetic": profile.n_synthetic if generated else 0,
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
    long.insert(1, "method", long["method_key"].map(methods))
    return pd.DataFrame(rows), long, metrics


def augmentation_figure(table: pd.DataFrame) -> Figure:
    """Accuracy gain over the real-only baseline (percentage points) by label budget, mean +- std over seeds."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    budgets = sorted(table["labels"].unique())
    methods = [m for m in dict.fromkeys(table["method"]) if m != BASE_METHODS["real_only"]]
    width = 0.8 / max(1, len(methods))
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
