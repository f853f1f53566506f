"""Training throughput of genlib against the loop a user would write, and genlib's RBM against scikit-learn's.

Run ``python -m bench.throughput [--quick] [--device auto|cpu|cuda] [--json PATH] [--markdown PATH]``.

Section 1 measures training samples per second for each family on one device, side by side:

* ``naive b128``: a torchvision-style ``Dataset`` that turns each uint8 image into a PIL image and
  then a tensor with ``ToTensor()`` (as ``torchvision.datasets.MNIST`` does), a
  ``DataLoader(batch_size=128, shuffle=True)``, the same model and optimizer, and a plain
  ``zero_grad(); loss.backward(); step()`` loop (a GAN does its D then G steps in plain PyTorch; the
  RBM runs the model's own CD step). Like pytorch/examples' MNIST loop it reads ``loss.item()``
  every 10 batches.
* ``genlib b128``: ``genlib.training.loop.train_one_epoch`` on the whole data set held as one
  tensor on the device, same batch size: the honest measure of the data-path overhead.
* ``genlib bB``: the same with a bigger batch; ``+tuned``: fused optimizers (and on CUDA
  ``cudnn.benchmark`` and channels_last); ``+compile``: ``torch.compile`` on top of that
  (``mode="reduce-overhead"``, i.e. CUDA graphs, on CUDA).

The variants of a family take turns within each repeat (the order rotates between repeats) so
that load from other processes hits every side alike; tables report medians over the repeats and
ratios of the medians. Section 2 times genlib's ``rbm`` against scikit-learn's ``BernoulliRBM`` at
matched settings and compares their pseudo-likelihoods on the test set.

This module imports neither prefect nor mlflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from bench.common import (
    cudnn_benchmark,
    environment,
    fmt_num,
    fmt_rate,
    fmt_ratio,
    forbidden_imports,
    markdown_table,
    median,
    ratio,
    timed,
)
from genlib.models import GenerativeModel, get_model, list_models, make_config
from genlib.profiles import family_settings
from genlib.training.loop import resolve_device, train_one_epoch

FAMILIES = ("ae", "conv-ae", "dae", "vae", "cvae", "gan", "cgan", "rbm")
LOG_EVERY = 10  # the naive loop reads loss.item() every LOG_EVERY batches, like pytorch/examples' MNIST


# --- data ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchData:
    """Training images in the two forms the two sides start from, plus test images.

    x: (N, 1, H, W) float32 in [0, 1] (genlib's form); images_u8: (N, H, W) uint8 (what
    torchvision's MNIST holds); y: (N,) int64; x_test: (M, 1, H, W) float32 in [0, 1].
    """

    x: Tensor
    y: Tensor
    images_u8: Tensor
    x_test: Tensor
    num_classes: int
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)


def _to_u8(x: Tensor) -> Tensor:
    return (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).contiguous()


def load_bench_data(name: str, n_train: int | None, seed: int) -> BenchData:
    """``n_train`` random training images (all when None) and the whole test split of data set ``name``."""
    from genlib.data import load_dataset

    splits = load_dataset(name)
    if n_train is not None and n_train < splits.sizes["train"]:
        splits = splits.subset(n_train=n_train, seed=seed)
    x = splits.x_train.contiguous()
    return BenchData(x, splits.y_train, _to_u8(x), splits.x_test, splits.num_classes, splits.source)


def synthetic_data(n: int, seed: int = 0, n_test: int = 256, num_classes: int = 10) -> BenchData:
    """Random uint8 28x28 images with MNIST's ink density (tests and development only)."""
    g = torch.Generator().manual_seed(seed)
    total = n + n_test
    ink = torch.rand(total, 28, 28, generator=g) < 0.19
    u8 = torch.where(ink, torch.randint(64, 256, (total, 28, 28), generator=g), 0).to(torch.uint8)
    x = u8.float().div(255).unsqueeze(1)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return BenchData(x[:n].contiguous(), y, u8[:n].contiguous(), x[n:].contiguous(), num_classes, f"synthetic ({n})")


class TorchvisionStyleMNIST(Dataset):
    """Per-item PIL + ToTensor, exactly what ``torchvision.datasets.MNIST.__getitem__`` does."""

    def __init__(self, data: Tensor, targets: Tensor) -> None:
        from torchvision import transforms

        self.data, self.targets = data, targets
        self.transform = transforms.ToTensor()
        self.fromarray = _image_fromarray()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        img, target = self.data[index], int(self.targets[index])
        img = self.fromarray(img.numpy(), mode="L")
        return self.transform(img), target


def _image_fromarray() -> Callable[..., Any]:
    try:  # torchvision's own wrapper, which its MNIST uses (it handles Pillow's deprecation of ``mode``)
        from torchvision.utils import _Image_fromarray

        return _Image_fromarray
    except ImportError:
        from PIL import Image

        return Image.fromarray


# --- variants and runners -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """One side of the comparison: who trains, at what batch size, with which speed-ups."""

    key: str
    label: str
    side: str  # "naive" or "genlib"
    batch_size: int
    tuned: bool = False  # fused optimizers; on CUDA also cudnn.benchmark and channels_last
    compiled: bool = False
    change: str = ""


def build_variants(
    device: torch.device, batch_size: int, big_batch: int, compile_: bool, bigger_batch: int | None = None
) -> list[Variant]:
    """The naive baseline, genlib at the same batch size, then genlib's speed-ups one at a time."""
    cuda = device.type == "cuda"
    tuned_change = "fused optimizers" + (", cudnn.benchmark, channels_last" if cuda else "")
    mode = "reduce-overhead (CUDA graphs)" if cuda else "default"
    variants = [
        Variant(
            f"naive_b{batch_size}",
            f"naive b{batch_size}",
            "naive",
            batch_size,
            change="per-item PIL + ToTensor Dataset, DataLoader(shuffle=True), plain loop",
        ),
        Variant(
            f"genlib_b{batch_size}",
            f"genlib b{batch_size}",
            "genlib",
            batch_size,
            change="whole data set as one tensor on the device, genlib train_one_epoch",
        ),
    ]
    if big_batch != batch_size:
        variants.append(
            Variant(f"genlib_b{big_batch}", f"genlib b{big_batch}", "genlib", big_batch, change=f"batch {big_batch}")
        )
    variants.append(
        Variant(f"genlib_b{big_batch}_tuned", f"+tuned b{big_batch}", "genlib", big_batch, tuned=True, change=tuned_change)
    )
    if bigger_batch and bigger_batch != big_batch:
        variants.append(
            Variant(f"genlib_b{bigger_batch}_tuned", f"+tuned b{bigger_batch}", "genlib", bigger_batch, tuned=True,
                    change=f"batch {bigger_batch}, still tuned (fewer, larger steps: a user scales the learning rate)")
        )
    if compile_:
        variants.append(
            Variant(
                f"genlib_b{big_batch}_compiled",
                f"+compile b{big_batch}",
                "genlib",
                big_batch,
                tuned=True,
                compiled=True,
                change=f"torch.compile mode={mode}",
            )
        )
    return variants


class NotApplicable(Exception):
    """A speed-up that does not apply to this family (reported, not an error)."""


def family_config(family: str, profile: str, data: BenchData) -> Any:
    """The family's model config from ``genlib.profiles`` for images shaped like ``data``."""
    overrides = dict(family_settings(profile, family).model)
    overrides.update(image_shape=data.image_shape, num_classes=max(data.num_classes, 2))
    return make_config(family, overrides)


def fused_optimizer(opt: torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, str]:
    """The same optimizer and hyper-parameters with ``fused=True`` (else ``foreach=True``)."""
    groups = [{"params": g["params"]} for g in opt.param_groups]
    for flag in ("fused", "foreach"):
        kwargs = {**opt.defaults, "fused": None, "foreach": None, flag: True}
        try:
            return type(opt)(groups, **kwargs), flag
        except (RuntimeError, TypeError, ValueError):
            continue
    return opt, "unchanged"


def compile_model(model: GenerativeModel, mode: str | None) -> str:
    """torch.compile the model's differentiable part in place; returns what was compiled.

    Families that use the base ``training_step`` get their whole ``loss`` (forward and backward
    in one graph); families with their own step (the GAN) get each submodule compiled.
    """
    if not model.uses_autograd:
        raise NotApplicable("not applied: the CD step is hand-written matmuls without autograd")
    kwargs: dict[str, Any] = {"mode": mode, "dynamic": False}
    if type(model).training_step is GenerativeModel.training_step:
        model.loss = torch.compile(model.loss, **kwargs)  # type: ignore[method-assign]
        return "model.loss"
    names = []
    for name, child in model.named_children():
        child.compile(**kwargs)
        names.append(name)
    return "submodules " + ", ".join(names)


def naive_step(model: GenerativeModel, opts: dict[str, torch.optim.Optimizer]) -> Callable[[Tensor, Tensor], Tensor]:
    """What a user writes: plain PyTorch updates of the same model with the same optimizers."""
    if not model.uses_autograd:
        return lambda xb, yb: model.training_step(xb, yb, opts, nullcontext()).loss
    if set(opts) == {"discriminator", "generator"}:
        opt_d, opt_g = opts["discriminator"], opts["generator"]

        def gan_step(xb: Tensor, yb: Tensor) -> Tensor:
            y = yb if model.conditional else None
            fake = model.generate(torch.randn(xb.shape[0], model.latent_dim, device=xb.device), y)
            real_logits = model.discriminate(xb * 2 - 1, y)
            fake_logits = model.discriminate(fake.detach(), y)
            d_loss = F.binary_cross_entropy_with_logits(
                real_logits, torch.ones_like(real_logits)
            ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_logits = model.discriminate(fake, y)
            g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            return d_loss.detach() + g_loss.detach()

        return gan_step
    opt = opts["model"]

    def step(xb: Tensor, yb: Tensor) -> Tensor:
        opt.zero_grad()
        loss = model.loss(xb, yb).loss
        loss.backward()
        opt.step()
        return loss

    return step


class Runner:
    """Builds one variant's model (same seed, same initial weights for every variant) and trains it."""

    def __init__(
        self, variant: Variant, family: str, config: Any, data: BenchData, device: torch.device, seed: int
    ) -> None:
        self.variant, self.family, self.device, self.seed = variant, family, device, seed
        self.notes: list[str] = []
        self.error: str | None = None
        self.skipped: str | None = None
        self.seconds: list[float] = []
        self.samples: list[int] = []
        self.warmup_s: float | None = None
        self.rate_estimate: float | None = None
        self.m, self.epochs = variant.batch_size, 1
        self.n_available = data.x.shape[0]
        torch.manual_seed(seed)
        model = get_model(family, config)
        if variant.tuned and device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(device)
        opts = model.configure_optimizers()
        if variant.tuned:
            fused = {name: fused_optimizer(opt) for name, opt in opts.items()}
            opts = {name: pair[0] for name, pair in fused.items()}
            self.notes.append("optimizers: " + ", ".join(f"{n}={pair[1]}" for n, pair in fused.items()))
        self.opts = opts
        if variant.compiled:
            try:
                self.notes.append("compiled: " + compile_model(model, "reduce-overhead" if device.type == "cuda" else None))
            except NotApplicable as err:
                self.skipped = str(err)
        if variant.side == "naive":
            self.dataset_u8, self.targets = data.images_u8, data.y
            self.loaders: dict[int, DataLoader] = {}
            self.step = naive_step(model, opts)
        else:
            # Held on the device as fit() holds it (fit falls back to host memory only when it does not fit).
            self.x, self.y = data.x.to(device), data.y.to(device)
            self.shuffle = torch.Generator().manual_seed(seed)

    def _loader(self, m: int) -> DataLoader:
        if m not in self.loaders:
            ds = TorchvisionStyleMNIST(self.dataset_u8[:m], self.targets[:m])
            g = torch.Generator().manual_seed(self.seed)
            self.loaders[m] = DataLoader(ds, batch_size=self.variant.batch_size, shuffle=True, generator=g)
        return self.loaders[m]

    def run(self, m: int, epochs: int) -> None:
        """``epochs`` passes over the first ``m`` training images."""
        with cudnn_benchmark(self.variant.tuned and self.device.type == "cuda"):
            if self.variant.side == "genlib":
                for _ in range(epochs):
                    train_one_epoch(
                        self.model, self.x[:m], self.y[:m], self.opts, self.variant.batch_size, self.shuffle, self.device
                    )
                return
            self.model.train()
            for _ in range(epochs):
                for i, (xb, yb) in enumerate(self._loader(m)):
                    loss = self.step(xb.to(self.device), yb.to(self.device))
                    if i % LOG_EVERY == 0:
                        loss.item()

    def warm_up(self, target_s: float) -> None:
        """First batches (allocations, compilation, CUDA-graph recording), then a rate estimate."""
        bs = self.variant.batch_size
        n_warm = 3 if self.variant.compiled else 1
        self.warmup_s = timed(lambda: self.run(bs, n_warm), self.device)
        if n_warm == 1 and self.warmup_s >= target_s:
            estimate = self.warmup_s  # a slow family: one more batch would cost more than it tells
        else:
            estimate = timed(lambda: self.run(bs, 1), self.device)
        self.rate_estimate = bs / max(estimate, 1e-9)

    def plan(self, target_s: float) -> None:
        """Samples per measurement: about ``target_s`` seconds of work, whole batches, at least one."""
        bs = self.variant.batch_size
        cap = (self.n_available // bs) * bs
        if cap == 0:
            raise ValueError(f"{self.n_available} training images are fewer than one batch of {bs}")
        want = max(1, math.ceil((self.rate_estimate or 0.0) * target_s / bs)) * bs
        if want <= cap:
            self.m, self.epochs = want, 1
        else:
            self.epochs = math.ceil(want / cap)
            self.m = cap

    def measure(self) -> None:
        secs = timed(lambda: self.run(self.m, self.epochs), self.device)
        self.seconds.append(secs)
        self.samples.append(self.m * self.epochs)

    @property
    def rates(self) -> list[float]:
        return [n / s for n, s in zip(self.samples, self.seconds)]


def _short_error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def measure_family(
    family: str,
    data: BenchData,
    *,
    device: torch.device,
    profile: str = "quick",
    batch_size: int = 128,
    big_batch: int = 512,
    bigger_batch: int | None = None,
    compile_: bool = False,
    repeats: int = 3,
    target_seconds: float = 0.25,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Training samples/s of every variant of ``family`` (interleaved repeats) and the ratios to the naive loop.

    Returns a JSON-able dict: ``variants`` (per variant: every repeat's samples and seconds,
    ``samples_per_s``, ``median_samples_per_s``, ``ratio_vs_naive``), ``ratio_equal_batch``
    (genlib vs naive at the same batch size) and ``best`` (genlib's fastest variant).
    """
    config = family_config(family, profile, data)
    variants = build_variants(device, batch_size, big_batch, compile_, bigger_batch)
    if compile_:
        torch.compiler.reset()  # drop earlier families' graphs so none counts against recompile limits
    runners: list[Runner] = []
    for v in variants:
        try:
            r = Runner(v, family, config, data, device, seed)
        except Exception as err:  # noqa: BLE001 - a variant that cannot be built is reported, not fatal
            log(f"  {family} {v.label}: setup failed: {_short_error(err)}")
            continue
        runners.append(r)
        if r.skipped:
            continue
        try:
            r.warm_up(target_seconds)
            r.plan(target_seconds)
        except Exception as err:  # noqa: BLE001 - e.g. a compile failure: report it, keep the other sides
            r.error = _short_error(err)
            log(f"  {family} {v.label}: warm-up failed: {r.error}")
    active = [r for r in runners if not r.error and not r.skipped]
    for rep in range(repeats):
        shift = rep % max(len(active), 1)
        for r in active[shift:] + active[:shift]:
            if r.error:
                continue
            torch.manual_seed(seed * 1000 + rep)
            try:
                r.measure()
            except Exception as err:  # noqa: BLE001
                r.error = _short_error(err)
                log(f"  {family} {r.variant.label}: failed: {r.error}")

    base = next((r for r in runners if r.variant.side == "naive"), None)
    base_median = median(base.rates) if base and not base.error else None
    out_variants: dict[str, Any] = {}
    for r in runners:
        v = r.variant
        rates = r.rates if not r.error else []
        med = median(rates)
        paired = [a / b for a, b in zip(rates, base.rates)] if base and v.side == "genlib" and base.rates else []
        out_variants[v.key] = {
            "label": v.label,
            "side": v.side,
            "batch_size": v.batch_size,
            "tuned": v.tuned,
            "compiled": v.compiled,
            "change": v.change,
            "notes": r.notes,
            "warmup_s": r.warmup_s,
            "rate_estimate": r.rate_estimate,
            "samples_per_measurement": r.m * r.epochs,
            "samples": r.samples,
            "seconds": r.seconds,
            "samples_per_s": rates,
            "median_samples_per_s": med,
            "ratio_vs_naive": ratio(med, base_median),
            "paired_ratios_vs_naive": paired,
            "error": r.error,
            "skipped": r.skipped,
        }
    genlib_rows = [(k, v) for k, v in out_variants.items() if v["side"] == "genlib" and v["median_samples_per_s"]]
    best_key, best = max(genlib_rows, key=lambda kv: kv[1]["median_samples_per_s"], default=(None, None))
    equal = out_variants.get(f"genlib_b{batch_size}", {})
    n_params = sum(p.numel() for p in runners[0].model.parameters()) if runners else None
    log(
        f"{family}: naive {fmt_rate(base_median)}/s, genlib b{batch_size} x{fmt_num(equal.get('ratio_vs_naive'), 2)}, "
        f"best {best_key} x{fmt_num(best['ratio_vs_naive'] if best else None, 2)}"
    )
    return {
        "family": family,
        "profile": profile,
        "model_config": config.model_dump(mode="json"),
        "n_params": n_params,
        "variants": out_variants,
        "ratio_equal_batch": equal.get("ratio_vs_naive"),
        "best": {
            "variant": best_key,
            "median_samples_per_s": best["median_samples_per_s"] if best else None,
            "ratio_vs_naive": best["ratio_vs_naive"] if best else None,
        },
    }


# --- RBM against scikit-learn ---------------------------------------------------------------------------


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
    config = make_config(
        "rbm",
        {
            "image_shape": image_shape,
            "hidden_units": hidden,
            "cd_k": 1,
            "persistent": True,
            "lr": lr,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "binarize": False,  # the data are binary already, as scikit-learn sees them
        },
    )

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


# --- report ---------------------------------------------------------------------------------------------


def _cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return "-"
    if v.get("skipped"):
        return "n/a"
    if v.get("error"):
        return "failed"
    rate = v["median_samples_per_s"]
    if v["side"] == "naive":
        return fmt_rate(rate)
    return f"{fmt_rate(rate)} ({fmt_ratio(v['ratio_vs_naive'])})"


def _step(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b:
        return "-"
    return fmt_ratio(ratio(b.get("median_samples_per_s"), a.get("median_samples_per_s")))


def render_markdown(report: dict[str, Any]) -> str:
    env, cfg = report["environment"], report["settings"]
    lines = [
        "# genlib training throughput",
        "",
        f"Device: **{env['device']}** ({env['device_name']}), torch {env['torch']} with "
        f"{env['torch_num_threads']} threads, {env['usable_cpus']} usable CPUs; torchvision {env['torchvision']}, "
        f"scikit-learn {env['sklearn']}. Data: {cfg['data_source']}, {cfg['train_images']} training images. "
        f"Profile `{cfg['profile']}`; medians over {cfg['repeats']} interleaved repeats of about "
        f"{cfg['target_seconds']} s each (less where the time budget required).",
        "",
    ]
    load = env.get("load_average")
    if load and load[0] > (env.get("usable_cpus") or 1):
        lines += [
            f"**The machine was busy** (load average {load[0]:.1f} on {env['usable_cpus']} CPUs; threads: "
            f"{cfg['threads_reason']}): timings are noisy; compare the ratios, and rerun on a quiet machine.",
            "",
        ]
    fams = report.get("families", [])
    if fams:
        keys: list[str] = []
        for fam in fams:
            for k in fam["variants"]:
                if k not in keys:
                    keys.append(k)
        labels = {k: next(f["variants"][k]["label"] for f in fams if k in f["variants"]) for k in keys}
        header = ["family"] + [labels[k] for k in keys] + ["best genlib vs naive"]
        rows = []
        for fam in fams:
            best = fam["best"]
            best_txt = (
                f"{fmt_ratio(best['ratio_vs_naive'])} ({fam['variants'][best['variant']]['label']})" if best["variant"] else "-"
            )
            rows.append([fam["family"]] + [_cell(fam["variants"].get(k)) for k in keys] + [best_txt])
        lines += [
            "## Training samples per second (ratio to the naive loop at batch "
            f"{cfg['batch_size']} in brackets)",
            "",
            markdown_table(header, rows),
            "",
        ]
        # What each change did: each genlib variant against the one before it.
        steps_header = ["family"]
        pairs = list(zip(keys[:-1], keys[1:]))
        for a, b in pairs:
            steps_header.append(f"{labels[b]} / {labels[a]}")
        step_rows = [[fam["family"]] + [_step(fam["variants"].get(a), fam["variants"].get(b)) for a, b in pairs] for fam in fams]
        lines += ["## What each change did (speed-up of each column over the one before)", "", markdown_table(steps_header, step_rows), ""]
        lines += ["Variants:", ""]
        for k in keys:
            v = next(f["variants"][k] for f in fams if k in f["variants"])
            lines.append(f"- **{v['label']}**: {v['change']}")
        notes = sorted({f"{fam['family']} {v['label']}: {n}" for fam in fams for v in fam["variants"].values() for n in v["notes"]})
        problems = [
            f"{fam['family']} {v['label']}: {v['error'] or v['skipped']}"
            for fam in fams
            for v in fam["variants"].values()
            if v["error"] or v["skipped"]
        ]
        if problems:
            lines += ["", "Not measured:", ""] + [f"- {p}" for p in problems]
        if notes and cfg.get("verbose_notes"):
            lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
        lines.append("")
    rbm = report.get("rbm_vs_sklearn")
    if rbm:
        s = rbm["settings"]
        lines += [
            "## genlib rbm vs scikit-learn BernoulliRBM",
            "",
            f"{s['train_images']} binarised training images, {s['hidden_units']} hidden units, PCD-1, learning rate "
            f"{s['learning_rate']}, batch {s['batch_size']}, {s['epochs']} epochs, momentum 0; dtype: {s['dtype']}; medians over "
            f"{s['repeats']} interleaved fits. Pseudo-log-likelihood (PL) per image on {s['test_images']} test images "
            f"(stochastic one-bit-flip estimate) and on the first {s['exact_pl_images']} (exact, all 784 bits).",
            "",
        ]
        header = [
            "model",
            "s/epoch",
            "speed-up vs sklearn (float32)",
            "speed-up vs sklearn (float64)",
            "PL, own estimator",
            "PL, genlib estimator (same bits)",
            f"PL exact ({s['exact_pl_images']} images, last fit)",
        ]
        rows = []
        for key, r in rbm["results"].items():
            rows.append(
                [
                    f"{r['side']} ({r['device']})",
                    fmt_num(r["median_seconds_per_epoch"]),
                    fmt_ratio(r["speedup_vs_sklearn"]),
                    fmt_ratio(r["speedup_vs_sklearn_float64"]),
                    fmt_num(r["median_pl_stochastic_own_estimator"], 2),
                    fmt_num(r["median_pl_stochastic_genlib_estimator"], 2),
                    fmt_num(r["pl_exact_last_repeat"], 2),
                ]
            )
        lines += [markdown_table(header, rows), "", "Differences that remain:", ""]
        lines += [f"- {d}" for d in rbm["differences"]]
        lines.append("")
    lines.append(f"Total wall time {report['wall_seconds']:.1f} s.")
    return "\n".join(lines) + "\n"


# --- command line ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="10k-image subset, short measurements (< 2 min on 2 CPU cores)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", type=Path, help="write every number (all repeats) here")
    p.add_argument("--markdown", type=Path, help="write the tables here")
    p.add_argument("--families", help=f"comma list (default all: {','.join(FAMILIES)})")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per measurement (default 3)")
    p.add_argument("--profile", choices=("quick", "full"), help="genlib.profiles settings (default: quick with --quick, else full)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size of the naive loop and genlib's equal-batch row")
    p.add_argument("--big-batch", type=int, help="genlib's bigger batch (default 512 with --quick, else 1024)")
    p.add_argument("--bigger-batch", type=int, help="one more tuned row at this batch (default 2048; 0: none)")
    p.add_argument(
        "--compile-families",
        help="comma list of families to try torch.compile on, or 'all'/'none' (default: all; with --quick "
        "none on CPU, where one compile takes 20-40 s on 2 cores, and ae on CUDA)",
    )
    p.add_argument("--target-seconds", type=float, help="work per measurement (default 0.25 with --quick, else 3)")
    p.add_argument("--train-size", type=int, help="training images (default 10240 with --quick, else all)")
    p.add_argument("--dataset", default="mnist", help="genlib data set name (default mnist)")
    p.add_argument("--synthetic", type=int, metavar="N", help="use N random images instead of a data set (tests/dev)")
    p.add_argument("--skip-sklearn", action="store_true", help="leave out the RBM vs scikit-learn section")
    p.add_argument("--rbm-hidden", type=int, help="hidden units (default 256 with --quick, else 500)")
    p.add_argument("--rbm-epochs", type=int, help="epochs per fit (default 2 with --quick, else 10)")
    p.add_argument("--rbm-lr", type=float, default=0.05)
    p.add_argument("--rbm-batch-size", type=int, default=100)
    p.add_argument("--rbm-train-size", type=int, help="training images (default 10000 with --quick, else all)")
    p.add_argument("--pl-exact-images", type=int, help="test images for the exact pseudo-likelihood (50 / 1000)")
    p.add_argument(
        "--threads",
        default="auto",
        help="torch and BLAS threads: a number, or auto = torch's default unless the load average exceeds the "
        "usable CPUs, then 1 (spinning OpenMP threads on an oversubscribed machine slow matmuls 5-10x)",
    )
    p.add_argument(
        "--budget-seconds",
        type=float,
        help="wall-time budget: measurements shrink (down to one batch) to fit it (default 100 with --quick, else none)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def choose_threads(spec: str) -> tuple[int, str]:
    """Threads for torch and BLAS, and why: a number, or 'auto' (1 when the machine is oversubscribed)."""
    default = torch.get_num_threads()
    if spec != "auto":
        try:
            n = int(spec)
        except ValueError:
            raise SystemExit(f"--threads must be a number or auto, got {spec!r}") from None
        if n < 1:
            raise SystemExit(f"--threads must be at least 1, got {n}")
        return n, "asked for"
    try:
        load = os.getloadavg()[0]
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return default, "torch default"
    if load > cpus and default > 1:
        return 1, f"auto: load average {load:.1f} > {cpus} usable CPUs, so 1 thread instead of {default}"
    return default, f"auto: torch default (load average {load:.1f}, {cpus} usable CPUs)"


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit numpy's BLAS (scikit-learn's matmuls) to ``n`` threads, like torch's."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def _families(spec: str | None, default: Sequence[str]) -> list[str]:
    if spec is None:
        return list(default)
    if spec.strip().lower() == "all":
        return list(FAMILIES)
    if spec.strip().lower() in ("none", ""):
        return []
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise SystemExit(f"unknown families: {', '.join(unknown)}; valid: {', '.join(FAMILIES)}")
    return names


THROUGHPUT_BEGIN, THROUGHPUT_END = "<!-- throughput:begin -->", "<!-- throughput:end -->"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; prints the markdown tables and returns the report dict."""
    t_start = time.perf_counter()
    args = parse_args(argv)
    quick = args.quick
    log: Callable[[str], None] = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    device = resolve_device(args.device)
    threads, threads_reason = choose_threads(args.threads)
    torch.set_num_threads(threads)
    log(f"threads: {threads} ({threads_reason})")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    profile = args.profile or ("quick" if quick else "full")
    big_batch = args.big_batch or (512 if quick else 1024)
    target = args.target_seconds or (0.25 if quick else 3.0)
    budget = args.budget_seconds if args.budget_seconds is not None else (100.0 if quick else None)
    reserve = 0.0 if args.skip_sklearn else (20.0 if quick else 0.0)  # rough wall time of the sklearn section
    train_size = args.train_size or (10240 if quick else None)
    families = _families(args.families, FAMILIES)
    default_compile: Sequence[str] = FAMILIES if not quick else (("ae",) if device.type == "cuda" else ())
    compile_families = set(_families(args.compile_families, default_compile))

    t0 = time.perf_counter()
    if args.synthetic:
        data = synthetic_data(args.synthetic, args.seed, n_test=max(256, args.synthetic // 5))
    else:
        data = load_bench_data(args.dataset, train_size, args.seed)
    log(f"data: {data.source}, {data.x.shape[0]} training images ({time.perf_counter() - t0:.1f} s)")

    env = environment(device)
    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            "argv": list(argv) if argv is not None else sys.argv[1:],
            "quick": quick,
            "profile": profile,
            "batch_size": args.batch_size,
            "big_batch": big_batch,
            "compile_families": sorted(compile_families),
            "repeats": args.repeats,
            "target_seconds": target,
            "train_images": int(data.x.shape[0]),
            "data_source": data.source,
            "seed": args.seed,
            "threads": threads,
            "threads_reason": threads_reason,
            "budget_seconds": budget,
            "naive_loader": f"DataLoader(batch_size={args.batch_size}, shuffle=True, num_workers=0), loss.item() every "
            f"{LOG_EVERY} batches",
        },
        "families": [],
    }
    for i, family in enumerate(families):
        family_target = target
        if budget is not None:
            # Share what is left of the budget among the families still to run; every measurement
            # still covers at least one batch, so a busy machine can overrun it.
            left = budget - (time.perf_counter() - t_start) - reserve
            n_measurements = 6 * (args.repeats + 1.5)
            family_target = max(0.02, min(target, left / (len(families) - i) / n_measurements))
        result = measure_family(
            family,
            data,
            device=device,
            profile=profile,
            batch_size=args.batch_size,
            big_batch=big_batch,
            bigger_batch=2048 if args.bigger_batch is None else args.bigger_batch,
            compile_=family in compile_families,
            repeats=args.repeats,
            target_seconds=family_target,
            seed=args.seed,
            log=log,
        )
        result["target_seconds"] = family_target
        report["families"].append(result)
    if not args.skip_sklearn:
        rbm_train = args.rbm_train_size or (10000 if quick else data.x.shape[0])
        devices = [torch.device("cpu")] + ([device] if device.type != "cpu" else [])
        with blas_threads(threads):
            report["rbm_vs_sklearn"] = compare_rbm_with_sklearn(
                data.x[:rbm_train],
                data.x_test,
                hidden=args.rbm_hidden or (256 if quick else 500),
                lr=args.rbm_lr,
                batch_size=args.rbm_batch_size,
                epochs=args.rbm_epochs or (2 if quick else 10),
                repeats=args.repeats,
                exact_pl_images=args.pl_exact_images if args.pl_exact_images is not None else (50 if quick else 1000),
                devices=devices,
                seed=args.seed,
                log=log,
            )
        report["rbm_vs_sklearn"]["settings"]["threads"] = threads  # torch and BLAS alike
    report["forbidden_modules_imported"] = forbidden_imports()
    report["wall_seconds"] = time.perf_counter() - t_start
    text = render_markdown(report)
    print(text, end="")
    if args.markdown:
        # Only this benchmark's section of the file is replaced, so docs/benchmarks.md keeps the others.
        from bench.quality import update_benchmarks_doc

        command = "python -m bench.throughput " + " ".join(argv if argv is not None else sys.argv[1:])
        section = f"{THROUGHPUT_BEGIN}\n## Training throughput\n\nCommand: `{command}`\n\n{text}\n{THROUGHPUT_END}"
        update_benchmarks_doc(args.markdown, section, THROUGHPUT_BEGIN, THROUGHPUT_END)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if report["forbidden_modules_imported"]:
        log(f"warning: imported {report['forbidden_modules_imported']}; the benchmark must not need them")
    return report


if __name__ == "__main__":
    main()
