"""The images both sides of the throughput benchmark start from, and the naive side's per-item Dataset."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


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


def to_u8(x: Tensor) -> Tensor:
    """(N, 1, H, W) float in [0, 1] -> (N, H, W) uint8."""
    return (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).contiguous()


def load_bench_data(name: str, n_train: int | None, seed: int) -> BenchData:
    """``n_train`` random training images (all when None) and the whole test split of data set ``name``."""
    from genlib.data import load_dataset

    splits = load_dataset(name)
    if n_train is not None and n_train < splits.sizes["train"]:
        splits = splits.subset(n_train=n_train, seed=seed)
    x = splits.x_train.contiguous()
    return BenchData(x, splits.y_train, to_u8(x), splits.x_test, splits.num_classes, splits.source)


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
