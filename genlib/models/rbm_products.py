"""The matrix products of an RBM's CD step (genlib/models/rbm.py), in float32 or bfloat16, with the large
blocks they write kept across steps."""

from __future__ import annotations

import torch
from torch import Tensor


class StepProducts:
    """The products of a CD step with weight W (V, H), in ``dtype`` with float32 results:
    ``up(v, c)`` = c + v W (B, H), ``down(h, b)`` = b + h W^T (B, V), and ``outer_into`` for the gradient.

    One instance lives on the model across steps: the bfloat16 copy of W, the stacked operands of the
    gradient's product and its result are written in place every step rather than allocated, since fresh
    blocks of this size come from the allocator as new pages each step (a sixth of a step on the 2-core
    machine).
    """

    def __init__(self, dtype: str) -> None:
        self.low = dtype == "bfloat16"
        self.dtype = torch.bfloat16 if self.low else torch.float32
        self.w: Tensor | None = None
        self._buffers: dict[str, Tensor] = {}

    def _buffer(self, key: str, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
        """The reusable buffer ``key``, reallocated only when its shape, device or dtype changes."""
        dtype = dtype or self.dtype
        buf = self._buffers.get(key)
        if buf is None or tuple(buf.shape) != tuple(shape) or buf.device != device or buf.dtype != dtype:
            buf = self._buffers[key] = torch.empty(shape, dtype=dtype, device=device)
        return buf

    def load(self, weight: Tensor) -> StepProducts:
        """Use ``weight`` (V, H) for this step's products (refreshes the bfloat16 copy)."""
        self.w = self._buffer("w", tuple(weight.shape), weight.device).copy_(weight) if self.low else weight
        return self

    def up(self, v: Tensor, bias: Tensor) -> Tensor:
        if not self.low:
            return torch.addmm(bias, v, self.w)
        return (v.to(torch.bfloat16) @ self.w).float() + bias

    def down(self, h: Tensor, bias: Tensor) -> Tensor:
        return (h.to(torch.bfloat16) @ self.w.T).float() + bias if self.low else torch.addmm(bias, h, self.w.T)

    def outer_into(self, grad: Tensor, a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor],
                   scale: tuple[float, float]) -> Tensor:
        """grad (V, H) float32 <- [a0; a1]^T [scale0 * b0; scale1 * b1], for a_i (B_i, V) and b_i (B_i, H),
        as one product over the stacked rows; returns grad."""
        n0, rows = a[0].shape[0], a[0].shape[0] + a[1].shape[0]
        sa = self._buffer("a", (rows, a[0].shape[1]), grad.device)
        sb = self._buffer("b", (rows, b[0].shape[1]), grad.device)
        sa[:n0].copy_(a[0]), sa[n0:].copy_(a[1])
        torch.mul(b[0], scale[0], out=sb[:n0]), torch.mul(b[1], scale[1], out=sb[n0:])
        if not self.low:
            return torch.mm(sa.T, sb, out=grad)
        return grad.copy_(torch.mm(sa.T, sb, out=self._buffer("outer", tuple(grad.shape), grad.device)))
