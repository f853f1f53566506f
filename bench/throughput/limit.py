"""How close a training step comes to the machine's matrix-multiply rate at the model's own shapes.

One training step is run under a dispatch mode that records every matrix product it executes
(forward, backward and the RBM's hand-written CD products): their FLOPs per image turn a measured
samples/s into achieved GFLOP/s, and replaying exactly those products (same shapes, strides and dtype)
with ``torch`` alone gives the rate the matmul kernels reach on this machine, in the same run. The
ratio is the share of the step that is matrix-multiply work at full speed; what is left goes to
element-wise work, the optimizer, data movement and Python.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.common import synchronize
from genlib.models.flops import matmul_flops

_aten = torch.ops.aten
CONVOLUTIONS = {_aten.convolution.default, _aten.convolution_backward.default, _aten.cudnn_convolution.default}


@dataclasses.dataclass(frozen=True)
class Product:
    """One recorded matrix product: the op and the shape, stride and dtype of every tensor argument."""

    op: Any
    tensors: tuple[tuple[tuple[int, ...], tuple[int, ...], torch.dtype] | None, ...]
    flops: int
    out: tuple[tuple[int, ...], tuple[int, ...], torch.dtype] | None = None  # the ``out=`` tensor, if any


def _layout(t: Any) -> tuple[tuple[int, ...], tuple[int, ...], torch.dtype] | None:
    return (tuple(t.shape), tuple(t.stride()), t.dtype) if isinstance(t, torch.Tensor) else None


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.products: list[Product] = []
        self.convolutions = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        # Every overload counts: the RBM writes its gradient's product with ``out=`` (aten.mm.out), which a
        # table of the ``.default`` overloads alone missed, so the RBM's fractions read far too low.
        flops = matmul_flops(func, args)
        if flops is not None:
            out = (kwargs or {}).get("out")
            self.products.append(Product(func, tuple(map(_layout, args)), flops, _layout(out)))
        elif func in CONVOLUTIONS:
            self.convolutions += 1
        return func(*args, **(kwargs or {}))


def record_step(model: Any, opts: dict[str, torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor) -> _Recorder:
    """Run one training step of ``model`` on the batch (x (B, C, H, W), y (B,)) and record its products.

    The step changes the model's weights: call it on a copy, or before the measured runs.
    """
    model.train()
    with _Recorder() as rec:
        model.training_step(x, y, opts, nullcontext())
    return rec


def _tensor(layout: tuple[tuple[int, ...], tuple[int, ...], torch.dtype], device: torch.device) -> torch.Tensor:
    shape, stride, dtype = layout
    t = torch.empty_strided(shape, stride, dtype=dtype, device=device)
    return t.normal_() if dtype.is_floating_point else t.zero_()


def _args(p: Product, device: torch.device) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Fresh tensors laid out as the recorded product's arguments (and its ``out=`` tensor)."""
    return ([_tensor(t, device) for t in p.tensors],  # type: ignore[arg-type]
            {"out": _tensor(p.out, device)} if p.out is not None else {})


def matmul_rate(products: list[Product], device: torch.device, target_s: float = 0.2, trials: int = 3) -> float:
    """GFLOP/s of replaying ``products`` back to back with torch alone (median of ``trials`` timed rounds)."""
    args = [_args(p, device) for p in products]
    flops = sum(p.flops for p in products)

    def once() -> None:
        for p, (a, kw) in zip(products, args):
            p.op(*a, **kw)

    once()  # warm-up: allocations, kernel selection
    synchronize(device)
    t0 = time.perf_counter()
    once()
    synchronize(device)
    rounds = max(1, int(target_s / max(time.perf_counter() - t0, 1e-6)))
    rates = []
    for _ in range(trials):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(rounds):
            once()
        synchronize(device)
        rates.append(flops * rounds / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def step_products(model: Any, opts: dict[str, torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor,
                  device: torch.device) -> tuple[list[Product], str | None]:
    """The matrix products of one step on the batch (x (B, C, H, W), y (B,)), or ([], why) for steps with
    convolutions: the measure is for MLP families."""
    rec = record_step(model, opts, x.to(device), y.to(device))
    if rec.convolutions or not rec.products:
        return [], "convolutions in the step" if rec.convolutions else "no matrix products"
    return rec.products, None


def step_profile(model: Any, opts: dict[str, torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor,
                 device: torch.device, mm_gflops: list[float] | None = None) -> dict[str, Any]:
    """FLOPs per image of one step and the torch.mm rate at its shapes (the median of ``mm_gflops`` when the
    caller measured it between its own repeats, else measured now). ``applies`` False for conv steps."""
    products, why = step_products(model, opts, x, y, device)
    if why:
        return {"applies": False, "why": why}
    rates = mm_gflops or [matmul_rate(products, device)]
    return {"applies": True, "batch_size": int(x.shape[0]), "products_per_step": len(products),
            "mflop_per_image": sum(p.flops for p in products) / x.shape[0] / 1e6,
            "mm_gflops": statistics.median(rates), "mm_gflops_per_repeat": rates}


def achieved(profile: dict[str, Any], samples_per_s: float | None) -> dict[str, Any]:
    """``profile`` with the GFLOP/s a measured samples/s means, and its fraction of the torch.mm rate."""
    if not profile.get("applies") or not samples_per_s:
        return dict(profile)
    gflops = profile["mflop_per_image"] * samples_per_s / 1e3
    return {**profile, "achieved_gflops": gflops, "fraction": gflops / profile["mm_gflops"]}
