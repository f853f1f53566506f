"""genlib's ``rbm`` against scikit-learn's ``BernoulliRBM`` at matched settings: time per epoch and pseudo-likelihoods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.common import fmt_num, median, ratio, timed
from genlib.models import get_model
from genlib.spec import resolve_spec
from genlib.training.loop import train_one_epoch


def rbm_from_sklearn(sk: Any, config: Any) -> Any:
    """A genlib RBM holding the parameters scikit-learn learned (components_ is (H, V), weight is (V, H))."""
    model = get_model("rbm", config)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(np.ascontiguousarray(sk.components_.T)).float())
        model.visible_bias.copy_(torch.from_numpy(sk.intercept_visible_).float())
        model.hidden_bias.copy_(torch.from_numpy(sk.intercept_hidden_).float())
    return model


def compare_rbm_with_sklearn(
    x_train: Tensor,
    x_test: Tensor,
    *,
    hidden: int = 256,
    lr: float = 0.05,
    batch_size: int = 100,
    epochs: int = 3,
    repeats: int = 3,
    exact_pl_images: int = 100,
    devices: Sequence[torch.device] = (torch.device("cpu"),),
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Seconds per epoch and pseudo-likelihoods of genlib's ``rbm`` and scikit-learn's ``BernoulliRBM``.

    Both see the same binarised images (x > 0.5) as float32: PCD-1 (genlib ``persistent=True``),
    momentum 0, no weight decay, the same learning rate, batch size, hidden units and epochs.
    Timings cover the whole fit (initialisation included) divided by ``epochs``.

    Args: x_train (N, C, H, W) and x_test (M, C, H, W) in [0, 1]. Returns a JSON-able dict.
    """
    from sklearn.neural_network import BernoulliRBM

    n = (x_train.shape[0] // batch_size) * batch_size  # whole batches only: genlib resets its chain on a short one
    if n == 0:
        raise ValueError(f"{x_train.shape[0]} training images are fewer than one batch of {batch_size}")
    train = (x_train[:n] > 0.5).float().contiguous()
    test = (x_test > 0.5).float().contiguous()
    train_np = train.flatten(1).numpy()
    test_np = test.flatten(1).numpy()
    y_train = torch.zeros(n, dtype=torch.long)
    image_shape = tuple(int(d) for d in train.shape[1:])
    # The full profile's RBM with scikit-learn's settings where they differ (resolved like any run).
    config = resolve_spec("full", "rbm", {"model": {
        "image_shape": image_shape,
        "hidden_units": hidden,
        "cd_k": 1,
        "persistent": True,
        "lr": lr,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "binarize": False,  # the data are binary already, as scikit-learn sees them
    }}).model

    train_np64 = train_np.astype(np.float64)  # what `X / 255.0` or a float64 array gives scikit-learn by default

    def fit_sklearn(rep: int, arrays: Any) -> Any:
        sk = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch_size, n_iter=epochs, random_state=seed + rep)
        return sk.fit(arrays)

    def fit_genlib(rep: int, device: torch.device) -> Any:
        torch.manual_seed(seed + rep)
        model = get_model("rbm", config).to(device)
        opts = model.configure_optimizers()
        x, y = train.to(device), y_train.to(device)
        shuffle = torch.Generator().manual_seed(seed + rep)
        for _ in range(epochs):
            train_one_epoch(model, x, y, opts, batch_size, shuffle, device)
        return model

    sides: list[tuple[str, torch.device]] = [("sklearn", torch.device("cpu")), ("sklearn-float64", torch.device("cpu"))]
    sides += [("genlib", d) for d in devices]
    seconds: dict[str, list[float]] = {f"{s}:{d}": [] for s, d in sides}
    pl_stochastic_own: dict[str, list[float]] = {k: [] for k in seconds}
    pl_stochastic_genlib: dict[str, list[float]] = {k: [] for k in seconds}
    last: dict[str, Any] = {}
    test_cpu = test
    for rep in range(repeats):
        shift = rep % len(sides)
        for side, device in sides[shift:] + sides[:shift]:
            key = f"{side}:{device}"
            box: dict[str, Any] = {}
            if side.startswith("sklearn"):
                arrays = train_np64 if side == "sklearn-float64" else train_np
                secs = timed(lambda: box.setdefault("m", fit_sklearn(rep, arrays)), device)
                sk = box["m"]
                pl_stochastic_own[key].append(float(sk.score_samples(test_np).mean()))
                as_genlib = rbm_from_sklearn(sk, config)
            else:
                secs = timed(lambda: box.setdefault("m", fit_genlib(rep, device)), device)
                as_genlib = box["m"].cpu()
                gen = torch.Generator().manual_seed(seed + rep)
                pl_stochastic_own[key].append(float(as_genlib.pseudo_log_likelihood(test_cpu, gen).mean()))
            seconds[key].append(secs / epochs)
            # One estimator for every model: the same generator draws the same flipped bit for each image.
            gen = torch.Generator().manual_seed(12345 + rep)
            pl_stochastic_genlib[key].append(float(as_genlib.pseudo_log_likelihood(test_cpu, gen).mean()))
            last[key] = as_genlib
    exact_n = min(exact_pl_images, test_cpu.shape[0])
    pl_exact: dict[str, float] = {}
    if exact_n > 0:
        subset = test_cpu[:exact_n]
        for key, model in last.items():
            pl_exact[key] = float(model.pseudo_log_likelihood(subset, exact=True).mean())
    sk_key = "sklearn:cpu"
    sk_median = median(seconds[sk_key])
    rows = {}
    for key in seconds:
        med = median(seconds[key])
        rows[key] = {
            "side": key.split(":")[0],
            "device": key.split(":", 1)[1],
            "seconds_per_epoch": seconds[key],
            "median_seconds_per_epoch": med,
            "speedup_vs_sklearn": ratio(sk_median, med),
            "speedup_vs_sklearn_float64": ratio(median(seconds["sklearn-float64:cpu"]), med),
            "pl_stochastic_own_estimator": pl_stochastic_own[key],
            "median_pl_stochastic_own_estimator": median(pl_stochastic_own[key]),
            "pl_stochastic_genlib_estimator": pl_stochastic_genlib[key],
            "median_pl_stochastic_genlib_estimator": median(pl_stochastic_genlib[key]),
            "pl_exact_last_repeat": pl_exact.get(key),
        }
    cpu_key = "genlib:cpu"
    log(
        f"rbm vs sklearn: sklearn {fmt_num(sk_median)} s/epoch, genlib(cpu) "
        f"{fmt_num(rows.get(cpu_key, {}).get('median_seconds_per_epoch'))} s/epoch"
    )
    return {
        "settings": {
            "train_images": n,
            "test_images": int(test_cpu.shape[0]),
            "exact_pl_images": exact_n,
            "hidden_units": hidden,
            "learning_rate": lr,
            "batch_size": batch_size,
            "epochs": epochs,
            "repeats": repeats,
            "dtype": "float32 for genlib and 'sklearn' (scikit-learn keeps float32 input in float32); "
            "'sklearn-float64' gets the same values as float64, scikit-learn's default dtype",
            "data": "binarised at 0.5, identical arrays for both",
            "genlib_config": config.model_dump(mode="json"),
        },
        "differences": [
            "both keep the persistent chain as hidden samples: scikit-learn initialises it to 0, genlib to "
            "Bernoulli(0.5); both are PCD-1 with five matrix products per batch",
            "scikit-learn visits the batches in the same order every epoch; genlib reshuffles each epoch",
            "genlib's step also computes its monitors: the free-energy gap from pre-activations it already has, "
            "the reconstruction error on 16 images per batch",
            "scikit-learn's score_samples flips one random bit per image with its own RNG; the 'genlib estimator' "
            "columns evaluate every model with genlib's code and the same flipped bits",
        ],
        "results": rows,
    }

