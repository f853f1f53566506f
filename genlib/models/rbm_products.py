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

    def stacked_rows(self, n: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """The gradient's left operand, (2n, width) float32, as two (n, width) views: the negative phase's
        rows and the data's. The step writes v_k and v_0 straight into them (no copy before the product)."""
        a = self._buffer("rows", (2 * n, width), device, torch.float32)
        return a[:n], a[n:]

    def outer_into(self, grad: Tensor, b: tuple[Tensor, Tensor], scale: tuple[float, float]) -> Tensor:
        """grad (V, H) float32 <- A^T [scale0 * b0; scale1 * b1], for A the (2n, V) rows of the last
        :meth:`stacked_rows` and b_i (n, H), as one product; returns grad."""
        a = self._buffers["rows"]
        n = a.shape[0] // 2
        sb = self._buffer("b", (2 * n, b[0].shape[1]), grad.device)
        torch.mul(b[0], scale[0], out=sb[:n]), torch.mul(b[1], scale[1], out=sb[n:])
        if not self.low:
            return torch.mm(a.T, sb, out=grad)
        low = self._buffer("a", tuple(a.shape), grad.device).copy_(a)
        return grad.copy_(torch.mm(low.T, sb, out=self._buffer("outer", tuple(grad.shape), grad.device)))
