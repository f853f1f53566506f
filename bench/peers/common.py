"""What every peer comparison shares: the data both sides see, the interleaved repeats, medians and ranges."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from bench.common import median, ratio


@dataclasses.dataclass
class PeerData:
    """Binary images every library sees: train (N, 1, 28, 28) and test (M, 1, 28, 28), float32 in {0, 1}.

    Both are stochastic binarisations of MNIST's grey levels drawn once with fixed seeds (the
    protocol genlib's likelihoods use), so no library's own binarisation (or lack of one) matters.
    """

    train: Tensor
    test: Tensor
    source: str


def load_peer_data(n_train: int | None, n_test: int | None, seed: int = 0, synthetic: int | None = None) -> PeerData:
    """MNIST (or ``synthetic`` random images, for tests) binarised once with seeds ``seed`` and ``seed + 1``."""
    if synthetic:
        g = torch.Generator().manual_seed(seed)
        grey = torch.rand(synthetic + max(64, synthetic // 5), 1, 28, 28, generator=g) * (torch.rand(1, 1, 28, 28, generator=g) < 0.3)
        x_train, x_test, source = grey[:synthetic], grey[synthetic:], f"synthetic ({synthetic})"
    else:
        from genlib.data import load_dataset

        splits = load_dataset("mnist")
        x_train, x_test, source = splits.x_train, splits.x_test, splits.source
    x_train = x_train[:n_train] if n_train else x_train
    x_test = x_test[:n_test] if n_test else x_test
    train = torch.bernoulli(x_train.float(), generator=torch.Generator().manual_seed(seed)).contiguous()
    test = torch.bernoulli(x_test.float(), generator=torch.Generator().manual_seed(seed + 1)).contiguous()
    return PeerData(train, test, source)


@dataclasses.dataclass
class Fit:
    """One library's fit: wall seconds of the whole fit (model built beforehand), per-epoch seconds where
    the library exposes them, and the learned weights as a genlib model (scored by genlib's estimators)."""

    seconds: float
    epoch_seconds: list[float]
    genlib_model: Any


@dataclasses.dataclass(frozen=True)
class Side:
    """One library in a comparison: ``fit(repeat)`` trains from scratch with seed-dependent initial weights."""

    key: str
    label: str
    fit: Callable[[int], Fit]
    genlib: bool = False
    # genlib sides: () -> (the matrix products of one training step, steps per epoch), for the floor below.
    products: Callable[[], tuple[list[Any], int]] | None = None


def step_products_of(model: Any, x: Tensor, y: Tensor, batch_size: int) -> Callable[[], tuple[list[Any], int]]:
    """The ``products`` of a genlib side: one training step of ``model`` (a copy is stepped) on the first batch,
    recorded by bench.throughput.limit, with the number of steps an epoch over x (N, C, H, W) takes."""
    from bench.throughput.limit import step_products
    from genlib.training.loop import num_batches

    cache: list[tuple[list[Any], int]] = []

    def products() -> tuple[list[Any], int]:
        if not cache:
            import copy

            m = copy.deepcopy(model)
            found, why = step_products(m, m.configure_optimizers(), x[:batch_size], y[:batch_size], torch.device("cpu"))
            if why:
                raise RuntimeError(f"no product floor for {model.name}: {why}")
            cache.append((found, num_batches(x.shape[0], batch_size)))
        return cache[0]

    return products


def products_seconds_per_epoch(side: Side) -> float:
    """How long an epoch of ``side``'s step would take if it did nothing but its matrix products, at the rate
    torch reaches replaying exactly those products back to back now (the same kernels, same shapes)."""
    from bench.throughput.limit import matmul_rate

    products, steps = side.products()  # type: ignore[misc]
    rate = matmul_rate(products, torch.device("cpu"), target_s=0.3)
    return sum(p.flops for p in products) * steps / (rate * 1e9)


def timed_fit(fn: Callable[[], tuple[list[float], Any]]) -> Fit:
    """Run ``fn() -> (epoch_seconds, genlib_model)`` and time it."""
    t0 = time.perf_counter()
    epochs, model = fn()
    return Fit(time.perf_counter() - t0, epochs, model)


def genlib_fit(model: Any, x: Tensor, y: Tensor, *, epochs: int, batch_size: int, shuffle_seed: int) -> Fit:
    """Time ``epochs`` of genlib's own epoch loop for ``model`` on CPU: the genlib side of every comparison."""
    from genlib.training.loop import train_one_epoch

    opts = model.configure_optimizers()
    shuffle = torch.Generator().manual_seed(shuffle_seed)

    def run() -> tuple[list[float], Any]:
        times = []
        for _ in range(epochs):
            t0 = time.perf_counter()
            train_one_epoch(model, x, y, opts, batch_size, shuffle, torch.device("cpu"))
            times.append(time.perf_counter() - t0)
        return times, model

    return timed_fit(run)


def interleave(sides: Sequence[Side], repeats: int, log: Callable[[str], None]) -> tuple[dict[str, list[Fit]], dict[str, list[float]]]:
    """Every side once per repeat, the order rotating between repeats so that load from other processes
    falls on every side alike. Returns the fits and, per genlib side with ``products``, the products-only
    seconds per epoch measured in each repeat (after its fits, so under the same load)."""
    fits: dict[str, list[Fit]] = {s.key: [] for s in sides}
    floors: dict[str, list[float]] = {s.key: [] for s in sides if s.products is not None}
    for rep in range(repeats):
        shift = rep % len(sides)
        for side in list(sides[shift:]) + list(sides[:shift]):
            fit = side.fit(rep)
            fits[side.key].append(fit)
            log(f"  repeat {rep + 1}/{repeats} {side.label}: {fit.seconds:.2f} s")
        for side in sides:
            if side.products is not None:
                floors[side.key].append(products_seconds_per_epoch(side))
                log(f"  repeat {rep + 1}/{repeats} {side.label}, its products alone: {floors[side.key][-1]:.2f} s/epoch")
    return fits, floors


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """Median, min and max (None when empty)."""
    vals = [v for v in values if v is not None]
    return {"median": median(vals), "min": min(vals) if vals else None, "max": max(vals) if vals else None}


def speed_table(fits: dict[str, list[Fit]], sides: Sequence[Side], epochs: int) -> dict[str, Any]:
    """Per side: seconds per epoch (whole fit / epochs) of every repeat, their median and range, and the
    per-epoch seconds inside the fits where the library reports them (steady state, set-up excluded)."""
    out = {}
    for side in sides:
        per_epoch = [f.seconds / epochs for f in fits[side.key]]
        out[side.key] = {
            "label": side.label,
            "genlib": side.genlib,
            "seconds_per_epoch": per_epoch,
            "s_per_epoch": spread(per_epoch),
            "steady_epoch_s": spread([s for f in fits[side.key] for s in f.epoch_seconds]),
        }
    return out


def speedup(fits: dict[str, list[Fit]], genlib_key: str, peer_key: str, epochs: int,
            floors: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """How many times faster genlib is than the peer: the peer's seconds over genlib's, repeat by repeat
    (both ran in the same repeat, so they saw similar load); median and range of those paired ratios.

    With the genlib side's products-only epochs (``floors``): ``ceiling``, the speed-up a step that did
    nothing but genlib's matrix products at torch's replay rate would reach over the peer (no implementation
    of these products on these kernels gets past it), and ``products_share``, the part of genlib's own epoch
    those products take."""
    paired = [ratio(p.seconds, g.seconds) for g, p in zip(fits[genlib_key], fits[peer_key])]
    out = {"genlib": genlib_key, "peer": peer_key, "paired": paired, **spread(paired)}
    floor = (floors or {}).get(genlib_key)
    if floor:
        out["ceiling"] = spread([ratio(p.seconds / epochs, f) for p, f in zip(fits[peer_key], floor)])
        out["products_share"] = spread([f / (g.seconds / epochs) for g, f in zip(fits[genlib_key], floor)])
        out["products_s_per_epoch"] = spread(floor)
    return out
