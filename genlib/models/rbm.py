"""Bernoulli-Bernoulli restricted Boltzmann machine trained by contrastive divergence (no autograd)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from genlib.models.base import GenerativeModel, ModelConfig, RBMOutput, bernoulli, rand
from genlib.models.rbm_products import StepProducts
from genlib.models.registry import register_model

# Images per batch that the PCD reconstruction monitor looks at (see RBM.training_step).
MONITOR_ROWS = 16


class RBMConfig(ModelConfig):
    """RBM hyper-parameters. ``persistent`` switches CD-k to persistent CD (Tieleman 2008)."""

    model_name: Literal["rbm"] = "rbm"
    hidden_units: int = Field(500, gt=0)
    cd_k: int = Field(1, ge=1)
    persistent: bool = False
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.5, ge=0, lt=1)
    binarize: bool = True  # train on stochastic binarisations of the intensities (each channel's)
    sample_steps: int = Field(1000, ge=1)  # Gibbs sweeps used by sample()
    # "gaussian": linear hidden units with unit-variance Gaussian noise, h ~ N(c + v W, 1), as the
    # code layer on top of Hinton & Salakhutdinov's (2006) pre-training stack.
    hidden: Literal["bernoulli", "gaussian"] = "bernoulli"
    # Schedules from Hinton's practical guide (2010), applied per epoch by begin_epoch():
    # momentum is ``momentum`` for the first ``momentum_epochs`` epochs, then ``final_momentum``;
    # the learning rate is lr / (1 + lr_decay (epoch - 1)); with ``cd_k_start`` the number of
    # Gibbs steps grows linearly from it at epoch 1 to ``cd_k`` at the last epoch (Salakhutdinov &
    # Murray 2008 raised CD-1 gradually to CD-25).
    final_momentum: float | None = Field(None, ge=0, lt=1)
    momentum_epochs: int = Field(5, ge=0)
    lr_decay: float = Field(0.0, ge=0)
    cd_k_start: int | None = Field(None, ge=1)
    # "bfloat16": the training step's matrix products in bfloat16 with float32 accumulation (v and h are
    # 0/1, exact in bfloat16; the weights and the update stay float32). Faster than float32 products on
    # CPUs with bfloat16 instructions (AVX512-BF16, AMX; bench/peers); evaluation and sampling use float32.
    matmul_dtype: Literal["float32", "bfloat16"] = "float32"


@register_model("rbm")
class RBM(GenerativeModel):
    """Energy E(v, h) = -v.b_v - h.b_h - v W h with binary v (B, V) and h (B, H).

    V = C * H * W: a colour image has one Bernoulli visible unit per pixel and channel, whose probability
    is that channel's intensity in [0, 1] (the same treatment as a grey level; the channels of a pixel
    are tied only through the hidden units).

    Parameters are updated from CD statistics by an SGD-with-momentum optimizer whose
    gradients are written by hand, so the optimizer state checkpoints like any other.
    """

    config_class = RBMConfig
    # What it can do (reconstructs, generates, likelihood, ...) is declared in genlib/models/catalog.py.

    def __init__(self, config: RBMConfig) -> None:
        super().__init__(config)
        v, h = config.input_dim, config.hidden_units
        self.weight = nn.Parameter(torch.randn(v, h) * 0.01)
        self.visible_bias = nn.Parameter(torch.zeros(v))
        self.hidden_bias = nn.Parameter(torch.zeros(h))
        # Hidden states of the persistent-CD fantasy chains, (chains, H); saved with the model so a
        # resumed run continues the chains.
        self.register_buffer("persistent_chain", torch.zeros(0, h))
        self.cd_k = config.cd_k  # Gibbs steps of the current epoch (see begin_epoch)
        self._products = StepProducts(config.matmul_dtype)  # the step's products and their reused buffers

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        chain = state_dict.get(prefix + "persistent_chain")
        if chain is not None:
            self.persistent_chain = torch.empty_like(chain, device=self.persistent_chain.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = [self.weight, self.visible_bias, self.hidden_bias]
        return {
            "model": torch.optim.SGD(
                params, lr=self.config.lr, momentum=self.config.momentum, weight_decay=self.config.weight_decay
            )
        }

    def begin_epoch(self, epoch: int, epochs: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Set this epoch's momentum, learning-rate decay and CD steps (called by fit before each epoch).

        Multiplies the learning rate fit has just set (its own schedule included), so a resumed run
        gets the same values as an uninterrupted one.
        """
        cfg = self.config
        late = cfg.final_momentum is not None and epoch > cfg.momentum_epochs
        for group in optimizers["model"].param_groups:
            group["momentum"] = cfg.final_momentum if late else cfg.momentum
            group["lr"] = group["lr"] / (1.0 + cfg.lr_decay * (epoch - 1))
        if cfg.cd_k_start is not None:
            frac = (epoch - 1) / max(epochs - 1, 1)
            self.cd_k = max(1, round(cfg.cd_k_start + frac * (cfg.cd_k - cfg.cd_k_start)))

    # --- conditionals ---------------------------------------------------------------------
    def _hidden_mean(self, pre: Tensor) -> Tensor:
        """E[h | v] from the pre-activation c + v W: sigmoid for binary units, identity for Gaussian ones."""
        return pre if self.config.hidden == "gaussian" else torch.sigmoid(pre)

    def _sample_hidden(self, mean: Tensor, generator: torch.Generator | None, out: Tensor | None = None) -> Tensor:
        """h ~ p(h | v) from its mean (B, H), into ``out`` when given."""
        if self.config.hidden == "gaussian":
            gen_device = generator.device if generator is not None else mean.device
            noise = torch.randn(mean.shape, generator=generator, device=gen_device).to(mean.device)
            return torch.add(mean, noise, out=out) if out is not None else mean + noise
        return self._bernoulli(mean, generator, out)

    def _hidden_free_energy(self, pre: Tensor) -> Tensor:
        """-(hidden part of F(v)) from the pre-activations (B, H): log of the integral/sum over h. Returns (B,)."""
        if self.config.hidden == "gaussian":
            # log of the integral of exp(-(h - c)^2 / 2 + h (v W)) dh, without the constant log sqrt(2 pi).
            return 0.5 * (pre.pow(2) - self.hidden_bias.pow(2)).sum(-1)
        return F.softplus(pre).sum(-1)

    def hidden_probs(self, v: Tensor) -> Tensor:
        """E[h | v]: p(h=1 | v) for binary hidden units, the Gaussian mean for linear ones. v: (B, V). Returns (B, H)."""
        return self._hidden_mean(v @ self.weight + self.hidden_bias)

    def visible_probs(self, h: Tensor) -> Tensor:
        """p(v=1 | h). h: (B, H). Returns (B, V)."""
        return torch.sigmoid(h @ self.weight.T + self.visible_bias)

    def _bernoulli(self, p: Tensor, generator: torch.Generator | None, out: Tensor | None = None) -> Tensor:
        """0/1 draws with probabilities p, in p's dtype, into ``out`` when given (a float view the step uses)."""
        return bernoulli(p, generator, out)

    def gibbs_step(self, v: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One sweep v -> h -> v'. Returns (v' sample (B, V), p(v'=1 | h) (B, V))."""
        h = self._sample_hidden(self.hidden_probs(v), generator)
        pv = self.visible_probs(h)
        return self._bernoulli(pv, generator), pv

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -v.b_v - sum_j softplus(b_h + v W)_j, so p(v) = exp(-F(v)) / Z. v: (B, V). Returns (B,)."""
        return -(v @ self.visible_bias) - self._hidden_free_energy(v @ self.weight + self.hidden_bias)

    # --- training -------------------------------------------------------------------------
    def _flat(self, x: Tensor) -> Tensor:
        return x.flatten(1).float()

    def training_step(
        self, x: Tensor, y: Tensor, optimizers: dict[str, torch.optim.Optimizer], autocast: AbstractContextManager
    ) -> RBMOutput:
        """CD-k (or PCD-k) update: grad = <v h>_model - <v h>_data, applied by the optimizer.

        Pre-activations are reused for the free energies, so a step costs the five matrix products
        of scikit-learn's BernoulliRBM (CD-1 or PCD-1), monitors included. The reconstruction and
        free-energy-gap monitors look at the first ``MONITOR_ROWS`` images only: under PCD the chain
        does not need the data's sweep and a full-batch one would be a sixth product, and under CD the
        full-batch monitors cost a tenth of a step (the validation metrics still use every image).
        """
        with torch.no_grad():
            x = self._flat(x)
            n = x.shape[0]
            mm = self._products.load(self.weight)
            # v_k and v_0 are drawn straight into the rows of the gradient's product (no copies before it).
            vk_rows, v0 = mm.stacked_rows(n, x.shape[1], x.device)
            if self.config.binarize:
                self._bernoulli(x, None, out=v0)
            else:
                v0.copy_(x)
            pre0 = mm.up(v0, self.hidden_bias)
            ph0 = self._hidden_mean(pre0)
            if self.config.persistent:
                # Monitor: one Gibbs sweep from the data, p(v | h ~ p(h | v0)), on a few rows.
                rows = min(n, MONITOR_ROWS)
                pv1 = torch.sigmoid(mm.down(self._sample_hidden(ph0[:rows], None), self.visible_bias))
                # The chains' state is their hidden sample (as in scikit-learn), so no product is
                # recomputed; a smaller batch continues the first n chains, a larger one adds fresh ones.
                missing = n - self.persistent_chain.shape[0]
                if missing > 0:
                    fresh = torch.bernoulli(torch.full((missing, ph0.shape[1]), 0.5, device=v0.device))
                    self.persistent_chain = torch.cat([self.persistent_chain, fresh])
                h, pv = self.persistent_chain[:n], None
            else:
                rows = min(n, MONITOR_ROWS)
                pv1 = torch.sigmoid(mm.down(self._sample_hidden(ph0, None), self.visible_bias))
                h, pv = None, pv1  # the negative phase starts from the data's own sweep
            for step in range(self.cd_k):
                if pv is None:
                    pv = torch.sigmoid(mm.down(h, self.visible_bias))
                vk = self._bernoulli(pv, None, out=vk_rows)
                prek = mm.up(vk, self.hidden_bias)
                phk = self._hidden_mean(prek)
                if step < self.cd_k - 1 or self.config.persistent:
                    # The chains' new state is drawn in place: their old one is not read after down(h).
                    chain = self.persistent_chain[:n] if self.config.persistent else None
                    h, pv = self._sample_hidden(phk, None, out=chain), None
            # <v h>_model - <v h>_data as one product over the stacked negative and positive rows, the 1/n
            # on the small (2B, H) operand, written into last step's gradient.
            grad = self.weight.grad
            if grad is None or grad.shape != self.weight.shape:
                grad = torch.empty_like(self.weight)
            self.weight.grad = mm.outer_into(grad, (phk, ph0), (1.0 / n, -1.0 / n))
            self.visible_bias.grad = vk.sum(0).sub_(v0.sum(0)).div_(n)  # reductions first: no (B, V) temporary
            self.hidden_bias.grad = phk.sum(0).sub_(ph0.sum(0)).div_(n)
            recon = (pv1[:rows] - v0[:rows]).pow(2).sum(-1).mean()
            # The free-energy gap monitor on the same rows as the reconstruction one.
            free_energy_v0 = -(v0[:rows] @ self.visible_bias) - self._hidden_free_energy(pre0[:rows])
            free_energy_vk = -(vk[:rows] @ self.visible_bias) - self._hidden_free_energy(prek[:rows])
            gap = (free_energy_v0 - free_energy_vk).mean()
            optimizers["model"].step()
        return RBMOutput(loss=recon, recon=recon, free_energy_gap=gap)

    @torch.no_grad()
    def loss(self, x: Tensor, y: Tensor | None = None) -> RBMOutput:
        v = self._flat(x)
        recon = (self.visible_probs(self.hidden_probs(v)) - v).pow(2).sum(-1).mean()
        v1, _ = self.gibbs_step(v)
        gap = (self.free_energy(v) - self.free_energy(v1)).mean()
        return RBMOutput(loss=recon, recon=recon, free_energy_gap=gap)

    def extra_metrics(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        # Fixed generator: the stochastic estimate is then comparable between epochs and runs.
        gen = torch.Generator(device=x.device).manual_seed(0)
        return {"pseudo_log_likelihood": self.pseudo_log_likelihood(x, gen).mean()}

    # --- capabilities -----------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Hidden probabilities as features. x: (B, C, H, W). Returns (B, hidden_units)."""
        return self.hidden_probs(self._flat(x))

    def decode(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        return self.visible_probs(h).view(-1, *self.config.image_shape)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Mean-field reconstruction p(v | E[h | x]), (B, C, H, W)."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(
        self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Run n Gibbs chains from uniform noise for ``config.sample_steps`` sweeps; return the last p(v | h), (n, C, H, W)."""
        v = self._bernoulli(torch.full((n, self.config.input_dim), 0.5, device=self.device), generator)
        pv = v
        for _ in range(self.config.sample_steps):
            v, pv = self.gibbs_step(v, generator)
        return pv.view(n, *self.config.image_shape)

    @torch.no_grad()
    def pseudo_log_likelihood(self, x: Tensor, generator: torch.Generator | None = None, exact: bool = False) -> Tensor:
        """Pseudo-log-likelihood per image, sum_i log p(v_i | v_-i), on binarised x (threshold 0.5).

        exact=False uses scikit-learn's stochastic estimate (one random bit per image, times V);
        exact=True sums over every bit (V free-energy evaluations). x: (B, C, H, W). Returns (B,).
        """
        v = (self._flat(x) > 0.5).float()
        fe = self.free_energy(v)
        n_vis = v.shape[1]
        if not exact:
            idx = (rand((v.shape[0],), generator, v.device) * n_vis).long().clamp_max(n_vis - 1)
            flipped = v.clone()
            rows = torch.arange(v.shape[0], device=v.device)
            flipped[rows, idx] = 1 - flipped[rows, idx]
            return n_vis * F.logsigmoid(self.free_energy(flipped) - fe)
        total = torch.zeros_like(fe)
        for i in range(n_vis):
            flipped = v.clone()
            flipped[:, i] = 1 - flipped[:, i]
            total += F.logsigmoid(self.free_energy(flipped) - fe)
        return total

    @torch.no_grad()
    def log_partition_exact(self) -> Tensor:
        """log Z by enumerating the smaller layer (at most 2^20 states): for tests and tiny models."""
        n_vis, n_hid = self.weight.shape
        if self.config.hidden == "gaussian":
            raise ValueError("exact log Z is implemented for binary hidden units only")
        if min(n_vis, n_hid) > 20:
            raise ValueError("exact log Z needs a layer of at most 20 units")
        w = self.weight.double()
        if n_hid <= n_vis:
            h = _all_binary(n_hid, w.device)
            log_terms = h @ self.hidden_bias.double() + F.softplus(h @ w.T + self.visible_bias.double()).sum(-1)
        else:
            v = _all_binary(n_vis, w.device)
            log_terms = v @ self.visible_bias.double() + F.softplus(v @ w + self.hidden_bias.double()).sum(-1)
        return torch.logsumexp(log_terms, 0)

    @torch.no_grad()
    def log_likelihood_exact(self, x: Tensor) -> Tensor:
        """log p(v) = -F(v) - log Z for binary x (thresholded at 0.5). Returns (B,), float64."""
        v = (self._flat(x) > 0.5).double()
        w = self.weight.double()
        fe = -(v @ self.visible_bias.double()) - F.softplus(v @ w + self.hidden_bias.double()).sum(-1)
        return -fe - self.log_partition_exact()


def _all_binary(n: int, device: torch.device) -> Tensor:
    """All 2^n binary vectors, (2^n, n), float64."""
    codes = torch.arange(2**n, device=device)
    return ((codes[:, None] >> torch.arange(n, device=device)) & 1).double()
