"""One side of the comparison, built and trained: the naive DataLoader loop or genlib's epoch loop."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils.data import DataLoader

from bench.common import cudnn_benchmark, timed
from bench.throughput.data import BenchData, TorchvisionStyleMNIST
from bench.throughput.variants import NotApplicable, Variant, compile_model, fused_optimizer
from genlib.models import autocast_context, get_model
from genlib.training.loop import num_batches, train_one_epoch

LOG_EVERY = 10  # the naive loop reads loss.item() every LOG_EVERY batches, like pytorch/examples' MNIST


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
        else:
            # Held on the device as fit() holds it (fit falls back to host memory only when it does not fit).
            self.x, self.y = data.x.to(device), data.y.to(device)
            self.shuffle = torch.Generator().manual_seed(seed)
            if variant.prealloc:
                self.xbuf, self.ybuf = torch.empty_like(self.x), torch.empty_like(self.y)

    def _loader(self, m: int) -> DataLoader:
        if m not in self.loaders:
            ds = TorchvisionStyleMNIST(self.dataset_u8[:m], self.targets[:m])
            g = torch.Generator().manual_seed(self.seed)
            self.loaders[m] = DataLoader(ds, batch_size=self.variant.batch_size, shuffle=True, generator=g)
        return self.loaders[m]

    def run(self, m: int, epochs: int) -> None:
        """``epochs`` passes over the first ``m`` training images."""
        with cudnn_benchmark(self.variant.tuned and self.device.type == "cuda"):
            if self.variant.prealloc:
                for _ in range(epochs):
                    self._preallocated_epoch(m)
                return
            if self.variant.side == "genlib":
                for _ in range(epochs):
                    train_one_epoch(
                        self.model, self.x[:m], self.y[:m], self.opts, self.variant.batch_size, self.shuffle, self.device
                    )
                return
            # What a user writes around the model: a DataLoader, the model's own step, a loss read now and then.
            self.model.train()
            for _ in range(epochs):
                for i, (xb, yb) in enumerate(self._loader(m)):
                    out = self.model.training_step(xb.to(self.device), yb.to(self.device), self.opts, nullcontext())
                    if i % LOG_EVERY == 0:
                        out.loss.item()

    def _preallocated_epoch(self, m: int) -> None:
        """train_one_epoch's shuffled pass over the first ``m`` images, gathering the epoch's order once into
        buffers allocated at set-up; the loss terms are summed per batch only when ``monitors`` is on."""
        self.model.train()
        bs = self.variant.batch_size
        order = torch.randperm(m, generator=self.shuffle).to(self.x.device)
        xb_all = torch.index_select(self.x[:m], 0, order, out=self.xbuf[:m])
        yb_all = torch.index_select(self.y[:m], 0, order, out=self.ybuf[:m])
        autocast = autocast_context(self.device)
        sums: dict[str, torch.Tensor] = {}
        n_batches = num_batches(m, bs)
        for b in range(n_batches):
            end = (b + 1) * bs if b < n_batches - 1 else m
            out = self.model.training_step(xb_all[b * bs:end], yb_all[b * bs:end], self.opts, autocast)
            if self.variant.monitors:
                for k, v in out.terms().items():
                    sums[k] = sums.get(k, 0) + v.float() * (end - b * bs)
        if sums:
            {k: float(v) / m for k, v in sums.items()}  # the epoch's one host sync, as in train_one_epoch

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
