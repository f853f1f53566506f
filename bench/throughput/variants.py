"""The sides of the throughput comparison (naive loop, genlib, genlib's speed-ups) and how each is set up."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from bench.throughput.data import BenchData
from genlib.models import GenerativeModel, get_config_class
from genlib.spec import resolve_spec


@dataclasses.dataclass(frozen=True)
class Variant:
    """One side of the comparison: who trains, at what batch size, with which speed-ups."""

    key: str
    label: str
    side: str  # "naive" or "genlib"
    batch_size: int
    tuned: bool = False  # fused optimizers; on CUDA also cudnn.benchmark and channels_last
    compiled: bool = False
    prealloc: bool = False  # one gather per epoch into preallocated buffers; batches are views of them
    monitors: bool = True  # False: loss terms are not accumulated per batch (no extra ops, no sync)
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
            change="per-item PIL + ToTensor Dataset, DataLoader(shuffle=True), the model's own training_step",
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
    variants.append(
        Variant(f"genlib_b{big_batch}_prealloc", f"+prealloc b{big_batch}", "genlib", big_batch, tuned=True,
                prealloc=True, change="tuned, and each epoch's shuffled copy gathered once into preallocated "
                "buffers (batches are views: no per-batch index_select allocation)")
    )
    variants.append(
        Variant(f"genlib_b{big_batch}_nomon", f"+no monitors b{big_batch}", "genlib", big_batch, tuned=True,
                prealloc=True, monitors=False, change="prealloc, and the loss terms not summed per batch "
                "(the per-epoch means genlib logs; on CUDA the epoch's one host sync)")
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


def family_config(family: str, profile: str, data: BenchData, model_overrides: Mapping[str, Any] | None = None) -> Any:
    """The family's model config in ``profile`` (resolved by genlib's run spec), for images shaped like ``data``,
    with those of ``model_overrides`` (field -> value) that are fields of this family's config."""
    fields = get_config_class(family).model_fields
    mine = {k: v for k, v in (model_overrides or {}).items() if k in fields}
    return resolve_spec(profile, family, {"model": mine},
                        data_shape=(data.image_shape, max(data.num_classes, 2))).model


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
