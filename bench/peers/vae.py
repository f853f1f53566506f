"""genlib's VAE against pythae 0.1.2's at matched settings: 784-200-200-50 tanh, Bernoulli decoder, batch 100, Adam.

Both start from the same initial weights (genlib's, copied into pythae's modules), train on the same
binarised images, and are scored by genlib's ELBO and IWAE estimators on the same binarised test images
(pythae's weights are mapped into a genlib VAE).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from typing import Any

import torch
from torch import Tensor, nn

from bench.peers.common import Fit, PeerData, Side, genlib_fit, step_products_of, timed_fit
from genlib.evaluation.likelihood import iwae_log_likelihood, vae_elbo
from genlib.evaluation._utils import seeded
from genlib.models import get_model
from genlib.spec import resolve_spec

BATCH = 100
UNMATCHED = [
    "data path: pythae's TrainingPipeline wraps the tensor in its per-item Dataset and a DataLoader "
    "(collate per batch); genlib slices batches from one tensor (the difference being measured)",
    "dynamic binarisation: pythae has none, so both train on one fixed stochastic binarisation "
    "(genlib's full preset re-draws it every step)",
    "decoder output: pythae's decoder returns probabilities and takes binary_cross_entropy of them (log clamped "
    "at -100); genlib keeps logits and uses binary_cross_entropy_with_logits; same objective up to that clamp",
    "genlib clamps log-variances to [-30, 20]; pythae does not",
    "pythae's trainer reads loss.item() every batch (a NaN check) and saves the final model to disk; "
    "genlib syncs once per epoch and saves nothing here",
    "shuffling: each library shuffles with its own RNG",
    "gradient: genlib's MLP VAE step writes the ELBO's gradient out (genlib/models/vae_step.py, checked against "
    "autograd's in its tests); pythae runs autograd (part of what is measured)",
]


def genlib_config() -> Any:
    """The ``full`` profile's VAE (784-200-200-50 tanh) without dynamic binarisation (the data are binary)."""
    return resolve_spec("full", "vae", {"model": {"binarize": False}}).model


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _pythae_modules(config: Any) -> tuple[nn.Module, nn.Module]:
    """pythae encoder and decoder with genlib's layer sizes and activation."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    sizes, k, act = [config.input_dim, *config.hidden_dims], config.latent_dim, nn.Tanh

    def body(dims: list[int], last_act: bool) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers += [nn.Linear(a, b)] + ([act()] if i < len(dims) - 2 or last_act else [])
        return nn.Sequential(*layers)

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = body(sizes, last_act=True)
            self.embedding, self.log_var = nn.Linear(sizes[-1], k), nn.Linear(sizes[-1], k)

        def forward(self, x: Tensor) -> Any:
            h = self.body(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = body([k, *reversed(sizes)], last_act=False)

        def forward(self, z: Tensor) -> Any:
            return ModelOutput(reconstruction=torch.sigmoid(self.body(z)).reshape(-1, *config.image_shape))

    return Encoder(), Decoder()


@torch.no_grad()
def copy_genlib_to_pythae(model: Any, enc: nn.Module, dec: nn.Module) -> None:
    """genlib's encoder ends in one Linear to [mu; logvar] (2K rows); pythae's has two K-row heads."""
    g_enc, p_enc = _linears(model.encoder), _linears(enc.body) + [enc.embedding, enc.log_var]
    k = model.config.latent_dim
    for g, p in zip(g_enc[:-1], p_enc[:-2]):
        p.weight.copy_(g.weight), p.bias.copy_(g.bias)
    last = g_enc[-1]
    enc.embedding.weight.copy_(last.weight[:k]), enc.embedding.bias.copy_(last.bias[:k])
    enc.log_var.weight.copy_(last.weight[k:]), enc.log_var.bias.copy_(last.bias[k:])
    for g, p in zip(_linears(model.decoder), _linears(dec.body)):
        p.weight.copy_(g.weight), p.bias.copy_(g.bias)


@torch.no_grad()
def pythae_to_genlib(enc: nn.Module, dec: nn.Module, config: Any) -> Any:
    """A genlib VAE holding pythae's learned weights (the inverse of :func:`copy_genlib_to_pythae`)."""
    model = get_model("vae", config)
    g_enc = _linears(model.encoder)
    for g, p in zip(g_enc[:-1], _linears(enc.body)):
        g.weight.copy_(p.weight), g.bias.copy_(p.bias)
    g_enc[-1].weight.copy_(torch.cat([enc.embedding.weight, enc.log_var.weight]))
    g_enc[-1].bias.copy_(torch.cat([enc.embedding.bias, enc.log_var.bias]))
    for g, p in zip(_linears(model.decoder), _linears(dec.body)):
        g.weight.copy_(p.weight), g.bias.copy_(p.bias)
    return model


def sides(data: PeerData, epochs: int, seed: int) -> list[Side]:
    config = genlib_config()

    def initial(rep: int) -> Any:
        torch.manual_seed(seed + rep)
        return get_model("vae", config)

    def fit_genlib(rep: int) -> Fit:
        x, y = data.train, torch.zeros(data.train.shape[0], dtype=torch.long)
        return genlib_fit(initial(rep), x, y, epochs=epochs, batch_size=BATCH, shuffle_seed=seed + rep)

    def fit_pythae(rep: int) -> Fit:
        from pythae.models import VAE as PythaeVAE
        from pythae.models import VAEConfig as PythaeVAEConfig
        from pythae.pipelines import TrainingPipeline
        from pythae.trainers import BaseTrainerConfig
        from pythae.trainers.training_callbacks import TrainingCallback

        enc, dec = _pythae_modules(config)
        copy_genlib_to_pythae(initial(rep), enc, dec)
        pconfig = PythaeVAEConfig(input_dim=tuple(config.image_shape), latent_dim=config.latent_dim,
                                  reconstruction_loss="bce")
        model = PythaeVAE(pconfig, encoder=enc, decoder=dec)
        times: list[float] = []

        class EpochTimer(TrainingCallback):
            def on_epoch_begin(self, training_config: Any, **kwargs: Any) -> None:
                self.t0 = time.perf_counter()

            def on_epoch_end(self, training_config: Any, **kwargs: Any) -> None:
                times.append(time.perf_counter() - self.t0)

        with tempfile.TemporaryDirectory() as out:
            tc = BaseTrainerConfig(output_dir=out, num_epochs=epochs, learning_rate=config.lr,
                                   per_device_train_batch_size=BATCH, optimizer_cls="Adam", no_cuda=True,
                                   steps_saving=None, seed=seed + rep)

            def run() -> tuple[list[float], Any]:
                # pythae's progress bars (stderr) and log lines are part of its cost, not of our report.
                logging.getLogger("pythae").setLevel(logging.WARNING)
                with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                    TrainingPipeline(training_config=tc, model=model)(train_data=data.train, eval_data=None,
                                                                      callbacks=[EpochTimer()])
                return times, pythae_to_genlib(model.encoder, model.decoder, config)

            return timed_fit(run)

    products = step_products_of(initial(0), data.train, torch.zeros(data.train.shape[0], dtype=torch.long), BATCH)
    return [Side("genlib", "genlib vae", fit_genlib, genlib=True, products=products),
            Side("pythae", "pythae 0.1.2 VAE", fit_pythae)]


def score(model: Any, test: Tensor, *, iwae_k: int, iwae_images: int, seed: int) -> dict[str, float]:
    """genlib's estimators on binary test images (M, 1, 28, 28): ELBO (10 draws) on all, IWAE NLL on the first
    ``iwae_images`` with ``iwae_k`` importance samples. Nats per image."""
    model.eval()
    elbo, iwae = [], []
    with seeded(seed, torch.device("cpu")):
        for xb in test.split(500):
            elbo.append(vae_elbo(model, xb, samples=10))
        for xb in test[:iwae_images].split(max(1, 20000 // min(iwae_k, 100))) if iwae_images > 0 else []:
            iwae.append(iwae_log_likelihood(model, xb, k=iwae_k, chunk=min(iwae_k, 100)))
    return {"elbo": float(torch.cat(elbo).mean()), "iwae_nll": -float(torch.cat(iwae).mean()) if iwae else None,
            "iwae_k": iwae_k, "iwae_images": min(iwae_images, test.shape[0]), "elbo_images": int(test.shape[0])}
