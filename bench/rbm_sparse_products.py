"""Would sparse products of an RBM's binary units beat dense ones? torch's CSR x dense against torch.mm.

The PCD-1 step's products at bench.peers' setting (784-500, batch 100): ``v @ W`` for binary v (B, V), and
the gradient's ``A^T @ b`` for the stacked binary rows A (2B, V), at two densities of ones (MNIST's
binarised digits have about 13%). Prints microseconds per product, the CSR conversion it would need, and the
largest difference from the dense result. One torch thread.

    OMP_NUM_THREADS=1 python -m bench.rbm_sparse_products
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def _us(fn: Callable[[], object], n: int = 200) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return sorted(times)[2] * 1e6


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    v_dim, h_dim, batch = 784, 500, 100
    w = torch.randn(v_dim, h_dim) * 0.01
    for density in (0.13, 0.3):
        v = (torch.rand(batch, v_dim) < density).float()
        s = v.to_sparse_csr()
        err = float((s @ w - v @ w).abs().max())
        print(f"density {density}: v @ W dense {_us(lambda: v @ w):.0f} us, CSR {_us(lambda: s @ w):.0f} us "
              f"+ conversion {_us(lambda: v.to_sparse_csr()):.0f} us (max difference {err:.1e})")
        a, b = (torch.rand(2 * batch, v_dim) < density).float(), torch.randn(2 * batch, h_dim)
        at = a.t().contiguous().to_sparse_csr()
        print(f"  gradient A^T b: dense {_us(lambda: a.t() @ b):.0f} us, CSR {_us(lambda: at @ b):.0f} us "
              f"+ conversion {_us(lambda: a.t().contiguous().to_sparse_csr()):.0f} us")


if __name__ == "__main__":
    main()
