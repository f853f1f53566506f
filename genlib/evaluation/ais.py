"""Annealed importance sampling of an RBM's log partition function (Salakhutdinov & Murray 2008).

The path starts at a base-rate RBM (zero weights and hidden biases, visible biases fit to the
data's pixel marginals, whose log Z is known in closed form) and multiplies the target's weights
and hidden biases by the inverse temperature beta while the visible biases move linearly:

    log p*_beta(v) = v . ((1 - beta) b_A + beta b) + sum_j softplus(beta (v W + c)_j).

Chains start from exact base-rate samples; each step adds log p*_k(v) - log p*_{k-1}(v) to the
chain's log weight and applies one Gibbs sweep that leaves p_k invariant. log Z is log Z_A plus
the log-mean-exp of the weights.

AIS is unbiased in Z, so its log Z is low on average and the log-likelihood -F(v) - log Z it gives
is optimistic. Reverse annealing (RAISE; Burda, Grosse & Salakhutdinov 2015) runs the same path
backwards from each test image v to the base-rate model and returns a stochastic lower bound on
log p(v) under the annealing model (which tends to the RBM as the path lengthens): a conservative
estimate to report beside AIS. The two bracket the log-likelihood on average.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class AISResult:
    """AIS estimate of log Z (nats) with log(mean weight +- 3 standard errors) as a rough interval."""

    log_z: float
    log_z_low: float
    log_z_high: float
    log_z_base: float
    log_weights: Tensor  # (n_chains,) float64, log of each chain's importance weight


def ais_betas(n: int) -> Tensor:
    """Inverse temperatures 0 = beta_0 < ... < beta_{n-1} = 1 (n values), float64.

    Spacing follows Salakhutdinov & Murray: 500/14500 of the points on [0, 0.5], 4000/14500 on
    [0.5, 0.9] and 10000/14500 on [0.9, 1], so their 14,500 gives their schedule.
    """
    if n < 2:
        raise ValueError("AIS needs at least two inverse temperatures")
    n1 = max(1, round((n - 1) * 500 / 14500))
    n2 = max(1, round((n - 1) * 4000 / 14500))
    n3 = max(1, n - 1 - n1 - n2)
    parts = [
        torch.linspace(0.0, 0.5, n1 + 1, dtype=torch.float64)[:-1],
        torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[:-1],
        torch.linspace(0.9, 1.0, n3 + 1, dtype=torch.float64),
    ]
    betas = torch.cat(parts)
    if betas.numel() != n:  # tiny n: fall back to an even grid
        betas = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    return betas


def as_schedule(betas: Tensor | Sequence[float] | None, n_betas: int) -> list[float]:
    """The inverse temperatures as a list: ``betas`` when given (checked: increasing from 0 to 1), else ais_betas(n_betas)."""
    if betas is None:
        return ais_betas(n_betas).tolist()
    out = [float(b) for b in (betas.tolist() if isinstance(betas, Tensor) else betas)]
    if len(out) < 2 or out[0] != 0.0 or out[-1] != 1.0 or any(b >= a for b, a in zip(out[:-1], out[1:])):
        raise ValueError("an annealing schedule must increase strictly from 0.0 to 1.0 (at least two values)")
    return out


def base_rate_visible_bias(v: Tensor, pseudo_count: float = 0.05) -> Tensor:
    """Visible biases of the base-rate RBM: logit of each pixel's (smoothed) mean over binary data v (N, V). Returns (V,)."""
    v = v.flatten(1).double()
    p = (v.sum(0) + pseudo_count) / (v.shape[0] + 2 * pseudo_count)
    return torch.log(p) - torch.log1p(-p)


@torch.no_grad()
def ais_log_partition(
    weight: Tensor,
    visible_bias: Tensor,
    hidden_bias: Tensor,
    *,
    n_chains: int = 100,
    n_betas: int = 14500,
    base_visible_bias: Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    betas: Tensor | Sequence[float] | None = None,
) -> AISResult:
    """AIS estimate of log Z of the RBM (weight (V, H), visible_bias (V,), hidden_bias (H,)).

    Args:
        n_chains: independent annealing runs; n_betas: intermediate distributions (ais_betas).
        betas: an explicit schedule of inverse temperatures 0 = beta_0 < ... < beta_K = 1 instead.
        base_visible_bias: (V,) visible biases of the base-rate model (default zeros: uniform).
        seed: seeds a generator on the parameters' device.
        dtype: dtype of the chains and matrix products; the log-weight increments (differences of
            nearly equal softplus sums, added thousands of times) are always taken in float64.
    Returns:
        AISResult; log_z is a stochastic lower bound in expectation (unbiased in Z, not in log Z).
    """
    device = weight.device
    w = weight.to(dtype)
    b = visible_bias.to(dtype)
    c = hidden_bias.to(dtype)
    n_vis, n_hid = w.shape
    b_a64 = (torch.zeros(n_vis, dtype=torch.float64, device=device) if base_visible_bias is None
             else base_visible_bias.to(device, torch.float64))
    b_a = b_a64.to(dtype)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    betas = as_schedule(betas, n_betas)

    def bernoulli(p: Tensor) -> Tensor:
        return (torch.rand(p.shape, generator=gen, device=device, dtype=dtype) < p).to(dtype)

    log_z_base = n_hid * math.log(2.0) + float(F.softplus(b_a64).sum())
    v = bernoulli(torch.sigmoid(b_a).expand(n_chains, n_vis))
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=device)
    bias_gap = (visible_bias.to(device, torch.float64) - b_a64).to(dtype)
    for k in range(1, len(betas)):
        prev, beta = betas[k - 1], betas[k]
        x = v @ w + c  # (chains, H), reused by the weight update and the Gibbs sweep at beta
        x64 = x.double()
        log_w += (beta - prev) * (v @ bias_gap).double() + (F.softplus(beta * x64) - F.softplus(prev * x64)).sum(-1)
        if k < len(betas) - 1:
            h = bernoulli(torch.sigmoid(beta * x))
            v = bernoulli(torch.sigmoid((1 - beta) * b_a + beta * (b + h @ w.T)))
    log_mean = float(torch.logsumexp(log_w, 0)) - math.log(n_chains)
    # Rough interval: log(mean +- 3 standard errors) of the weights, computed relative to the largest.
    shifted = (log_w - log_w.max()).exp()
    mean, se = float(shifted.mean()), float(shifted.std() / math.sqrt(n_chains)) if n_chains > 1 else 0.0
    offset = float(log_w.max())
    low = math.log(mean - 3 * se) + offset if mean - 3 * se > 0 else -math.inf
    high = math.log(mean + 3 * se) + offset
    return AISResult(
        log_z=log_z_base + log_mean,
        log_z_low=log_z_base + low,
        log_z_high=log_z_base + high,
        log_z_base=log_z_base,
        log_weights=log_w.cpu(),
    )


@torch.no_grad()
def rbm_log_likelihood(rbm, x: Tensor, log_z: float, *, batch_size: int = 1024) -> Tensor:
    """log p(v) = -F(v) - log Z per image of x (N, C, H, W) thresholded at 0.5 (as the RBM's own
    exact and pseudo-likelihoods do). Returns (N,) float64 on CPU."""
    device = rbm.weight.device
    out = []
    for start in range(0, x.shape[0], batch_size):
        v = (x[start : start + batch_size].to(device).flatten(1) > 0.5).to(rbm.weight.dtype)
        out.append((-rbm.free_energy(v)).double().cpu())
    return torch.cat(out) - log_z


@torch.no_grad()
def raise_log_likelihood(
    weight: Tensor,
    visible_bias: Tensor,
    hidden_bias: Tensor,
    v: Tensor,
    *,
    n_betas: int = 14500,
    betas: Tensor | Sequence[float] | None = None,
    base_visible_bias: Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 1000,
) -> Tensor:
    """RAISE: reverse-annealing estimate of log p(v) per binary image v (N, V), on the AIS path above.

    Each image starts a chain at beta_K = 1 that takes one Gibbs sweep at each of beta_{K-1}, ..., beta_1
    (sweeps are reversible, so each is its own reverse kernel); with v_K = v and v_{k-1} the sweep of
    v_k at beta_k, the estimate is log p_A(v_0) + sum_k [log p*_k(v_k) - log p*_k(v_{k-1})], where p_A is
    the normalised base-rate model. Its mean is at most log p(v) under the annealing model.

    Args: weight (V, H), visible_bias (V,), hidden_bias (H,); schedule, base and dtype as ais_log_partition;
        batch_size images are annealed at once. Returns (N,) float64 on CPU.
    """
    device = weight.device
    w, b, c = weight.to(dtype), visible_bias.to(dtype), hidden_bias.to(dtype)
    n_vis = w.shape[0]
    b_a64 = (torch.zeros(n_vis, dtype=torch.float64, device=device) if base_visible_bias is None
             else base_visible_bias.to(device, torch.float64))
    b_a = b_a64.to(dtype)
    bias_gap = (visible_bias.to(device, torch.float64) - b_a64).to(dtype)
    schedule = as_schedule(betas, n_betas)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    log_base_z = float(F.softplus(b_a64).sum())
    out = []
    for start in range(0, v.shape[0], batch_size):
        cur = v[start : start + batch_size].to(device, dtype).flatten(1)
        pre = cur @ w + c
        log_w = torch.zeros(cur.shape[0], dtype=torch.float64, device=device)
        for k in range(len(schedule) - 2, 0, -1):
            beta = schedule[k]
            h = (torch.rand(pre.shape, generator=gen, device=device, dtype=dtype) < torch.sigmoid(beta * pre)).to(dtype)
            pv = torch.sigmoid((1 - beta) * b_a + beta * (b + h @ w.T))
            prev = (torch.rand(pv.shape, generator=gen, device=device, dtype=dtype) < pv).to(dtype)
            pre_prev = prev @ w + c
            # log p*_k(v_k) - log p*_k(v_{k-1}); the base-bias part is beta-independent up to the gap term.
            log_w += ((cur - prev) @ (b_a + beta * bias_gap)).double() + (
                F.softplus(beta * pre.double()) - F.softplus(beta * pre_prev.double())).sum(-1)
            cur, pre = prev, pre_prev
        log_w += (cur.double() @ b_a64) - log_base_z
        out.append(log_w.cpu())
    return torch.cat(out)
