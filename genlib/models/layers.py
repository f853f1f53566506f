"""Small building blocks shared by the families: MLPs, the 28x28-style conv stacks, frozen copies."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import Tensor, nn

from genlib.errors import ConfigError


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU, final_activation: bool = False) -> nn.Sequential:
    """Linear layers through ``sizes`` with ``activation`` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


def check_conv_shape(image_shape: tuple[int, int, int], downsamples: int) -> tuple[int, int]:
    """The spatial size after ``downsamples`` stride-2 convs; the image must divide evenly."""
    _, h, w = image_shape
    factor = 2**downsamples
    if h % factor or w % factor:
        raise ConfigError(f"image_shape: conv models need height and width divisible by {factor}, got {h}x{w}")
    return h // factor, w // factor


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features) through stride-2 convs then a linear layer."""

    def __init__(self, image_shape: tuple[int, int, int], channels: Sequence[int], out_features: int, extra_in: int = 0):
        super().__init__()
        h, w = check_conv_shape(image_shape, len(channels))
        layers: list[nn.Module] = []
        c_in = image_shape[0] + extra_in
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
            c_in = c
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c_in * h * w, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, C, H, W) logits through a linear layer then stride-2 transposed convs."""

    def __init__(self, image_shape: tuple[int, int, int], channels: Sequence[int], in_features: int):
        super().__init__()
        self.h, self.w = check_conv_shape(image_shape, len(channels))
        chans = list(reversed(channels))
        self.c0 = chans[0]
        self.head = nn.Sequential(nn.Linear(in_features, chans[0] * self.h * self.w), nn.ReLU())
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(chans[-1], image_shape[0], 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.head(z).view(-1, self.c0, self.h, self.w))


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters are buffers: saved in the state_dict and moved by ``.to()``, but
    outside ``parameters()``, so no optimizer or gradient ever touches them."""
    twin = copy.deepcopy(module)
    for m in twin.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:  # a None entry (Linear(bias=False)) stays: forward reads it as "no bias"
                del m._parameters[name]
                m.register_buffer(name, p.detach().clone())
    return twin
