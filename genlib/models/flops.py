"""Matrix-product and convolution FLOPs of a computation, counted as torch dispatches it.

torch's ``FlopCounterMode`` counts the same operations, but entering it (any ``TorchDispatchMode`` whose
``__torch_dispatch__`` torch wraps to keep Dynamo out) imports ``torch._dynamo`` with sympy: seconds of one
core in a process that never compiles, spent in the pipeline's parent while the workers wait for their first
job. This counter opts out of that wrapping, so it imports nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(t.shape)


def _mm(args: tuple[Any, ...]) -> int:  # (M, K) @ (K, N)
    (m, k), n = _shape(args[0]), _shape(args[1])[-1]
    return 2 * m * k * n


def _addmm(args: tuple[Any, ...]) -> int:  # bias + (M, K) @ (K, N)
    return _mm(args[1:])


def _bmm(args: tuple[Any, ...]) -> int:  # (B, M, K) @ (B, K, N)
    (b, m, k), n = _shape(args[0]), _shape(args[1])[-1]
    return 2 * b * m * k * n


def _baddbmm(args: tuple[Any, ...]) -> int:
    return _bmm(args[1:])


def _convolution(args: tuple[Any, ...], out: Any) -> int:
    """2 x batch x weight elements x the positions the kernel visits (the input's for a transposed conv),
    as FlopCounterMode counts it."""
    x, w, transposed = _shape(args[0]), _shape(args[1]), bool(args[6])
    positions = math.prod(x[2:] if transposed else _shape(out)[2:])
    return 2 * x[0] * math.prod(w) * positions


# By op, so that every overload counts (``torch.mm(a, b, out=c)`` dispatches aten.mm.out), as FlopCounterMode does.
_COUNTS: dict[Any, Callable[[tuple[Any, ...]], int]] = {
    aten.mm: _mm, aten.addmm: _addmm, aten.bmm: _bmm, aten.baddbmm: _baddbmm,
}


def matmul_flops(func: Any, args: tuple[Any, ...]) -> int | None:
    """FLOPs of a dispatched mm, addmm, bmm or baddbmm call (any overload), else None."""
    count = _COUNTS.get(func.overloadpacket)
    return count(args) if count is not None else None


class FlopCounter(TorchDispatchMode):
    """``with FlopCounter() as c: ...`` then ``c.flops``: the FLOPs of the mm, addmm, bmm, baddbmm and
    convolution calls made inside (forward only unless a backward runs inside too)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Keeps torch from wrapping __torch_dispatch__ in torch._disable_dynamo, whose first call imports
        # torch._dynamo (see the module docstring); nothing here is ever compiled.
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        flops = matmul_flops(func, args)
        if flops is not None:
            self.flops += flops
        elif func is aten.convolution.default:
            self.flops += _convolution(args, out)
        return out
