"""The four paper goals of ``bench.paper``: each trains with the paper's method (resumable) and measures
the paper's number. Settings a goal does not take from its arguments are the papers' and are written
out here, beside the number they reproduce."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch

from genlib.evaluation.classifier import get_feature_classifier
from genlib.evaluation.generative import generative_row, real_floor_row
from genlib.evaluation.likelihood import rbm_likelihood_rows, vae_likelihood_rows
from genlib.models import get_model, make_config
from genlib.evaluation.reconstruction import reconstruct_all, reconstruction_errors
from genlib.training import TrainConfig, fit, load_checkpoint, save_checkpoint
from genlib.training.pretrain import pretrain_autoencoder


@dataclasses.dataclass(frozen=True)
class Goal:
    """A published number: what it is, its value, and whether higher is better."""

    what: str
    anchor: float
    higher_is_better: bool
    paper_epochs: int  # the training length the paper (or the full preset) used, for the projection


GOALS: dict[str, Goal] = {
    "ae": Goal("deep AE 784-1000-500-250-30, squared error per test image (Hinton & Salakhutdinov 2006)",
               3.00, False, 200),
    "rbm": Goal("RBM 500 hidden, AIS test log-likelihood (Salakhutdinov & Murray 2008, CD-25)", -86.34, True, 100),
    "vae": Goal("VAE one stochastic layer, IWAE test NLL k=5000 (Burda et al. 2016, VAE k=1)", 86.76, False, 3280),
    "gan": Goal("DCGAN Frechet distance on the feature classifier, within 3x of the real floor", 3.0, False, 30),
}


def verdict(value: float, goal: float, higher_is_better: bool) -> str:
    if not math.isfinite(value):
        return "not measured"
    ok = value >= goal if higher_is_better else value <= goal
    return "met" if ok else f"missed by {abs(value - goal):.2f}"


def train_resumable(model: Any, data: Any, train: TrainConfig, out: Path, device: torch.device,
                    resume: bool) -> tuple[Any, dict[str, Any]]:
    """fit() with checkpoints in ``out/checkpoints``; a finished run is saved as ``out/model.pt`` and reused.

    Returns (trained model, facts: epochs, seconds, seconds per epoch, resumed_from).
    """
    final, ckpt_dir = out / "model.pt", out / "checkpoints"
    if resume and final.is_file():
        ckpt = load_checkpoint(final)
        return ckpt.model.to(device), dict(ckpt.extra.get("facts", {}), reused=str(final))
    last = ckpt_dir / "last.pt"
    start = last if resume and last.is_file() else None
    resumed_from = load_checkpoint(start).epoch if start is not None else 0
    result = fit(model, data, train, device=device, checkpoint_dir=ckpt_dir, resume_from=start, progress=False)
    epochs_here = max(result.epochs_run - (resumed_from or 0), 1)
    facts = {"epochs": result.epochs_run, "train_seconds_this_process": round(result.seconds, 1),
             "seconds_per_epoch": round(result.seconds / epochs_here, 2), "resumed_from_epoch": resumed_from,
             "last_val_loss": result.history[-1]["val_loss"] if result.history else math.nan}
    save_checkpoint(final, result.model, epoch=result.epochs_run, extra={"facts": facts})
    return result.model, facts


def run_ae(data: Any, args: Any, out: Path, device: torch.device) -> dict[str, Any]:
    config = make_config("ae", {"hidden_dims": (1000, 500, 250), "latent_dim": 30, "activation": "sigmoid",
                                "recon_loss": "bce", "pretrain": "rbm", "pretrain_epochs": args.pretrain_epochs,
                                "lr": args.lr or 3e-4})
    torch.manual_seed(args.seed)
    model = get_model("ae", config)
    t0 = time.perf_counter()
    if not (args.resume and ((out / "checkpoints" / "last.pt").is_file() or (out / "model.pt").is_file())):
        pretrain_autoencoder(model, data, device=device, checkpoint_dir=out / "checkpoints", seed=args.seed)
    pretrain_s = time.perf_counter() - t0
    train = TrainConfig(epochs=args.epochs, batch_size=100, seed=args.seed, checkpoint_every=args.checkpoint_every,
                        lr_schedule="cosine")
    model, facts = train_resumable(model, data, train, out, device, args.resume)
    model.eval()
    recon = reconstruct_all(lambda xb, yb: model.reconstruct(xb, yb), data.x_test, data.y_test, device=device)
    value = float(reconstruction_errors(recon, data.x_test.cpu())["sq_err"].mean())
    return {"value": value, "pretrain_seconds_this_process": round(pretrain_s, 1), **facts,
            "settings": f"RBM pre-training {args.pretrain_epochs} epochs per layer (CD-1, momentum 0.5->0.9, "
                        f"lr 0.1 / 0.001 linear code layer, weight cost 2e-4), unrolled; fine-tuned with Adam "
                        f"lr {config.lr} cosine, BCE, batch 100, {facts['epochs']} epochs (paper: 200 of CG)",
            "number": f"{value:.2f} squared error per test image (10,000 test images)"}


def run_rbm(data: Any, args: Any, out: Path, device: torch.device) -> dict[str, Any]:
    cd_k = args.cd_k or 25
    config = make_config("rbm", {"hidden_units": 500, "cd_k": cd_k, "cd_k_start": 1 if cd_k > 1 else None,
                                 "persistent": args.pcd, "lr": args.lr or 0.05, "momentum": 0.5,
                                 "final_momentum": 0.9, "momentum_epochs": 5, "weight_decay": 2e-4,
                                 "lr_decay": args.lr_decay, "binarize": True})
    torch.manual_seed(args.seed)
    model = get_model("rbm", config)
    train = TrainConfig(epochs=args.epochs, batch_size=100, seed=args.seed, checkpoint_every=args.checkpoint_every)
    model, facts = train_resumable(model, data, train, out, device, args.resume)
    t0 = time.perf_counter()
    rows, metrics, ais = rbm_likelihood_rows(
        model, data.x_train, data.x_test, n_chains=args.ais_chains, n_betas=args.ais_betas, pll_exact=False,
        seed=0, batch_size=1000, device=device, raise_betas=args.raise_betas, raise_images=args.raise_images)
    value = metrics["ais_log_likelihood"]
    raise_ll = metrics.get("raise_log_likelihood", math.nan)
    gap = metrics.get("ais_log_likelihood_raise_images", math.nan) - raise_ll
    method = f"PCD-{cd_k}" if args.pcd else f"CD-{cd_k} (grown from CD-1)" if cd_k > 1 else "CD-1"
    return {"value": value, "raise_log_likelihood": raise_ll, "ais_minus_raise": gap, "ais_log_z": ais.log_z,
            "ais_log_z_interval": [ais.log_z_low, ais.log_z_high], "eval_seconds": round(time.perf_counter() - t0, 1),
            **facts, "rows": rows,
            "settings": f"{method}, lr {config.lr} / (1 + {args.lr_decay} (epoch - 1)), momentum 0.5->0.9 after "
                        f"5 epochs, weight decay 2e-4, batch 100, {facts['epochs']} epochs; AIS {args.ais_betas} "
                        f"betas x {args.ais_chains} chains on 10,000 test images binarised once; RAISE "
                        f"{args.raise_betas} betas on {int(metrics.get('raise_images', 0))} of them",
            "number": f"AIS {value:.2f}, RAISE {raise_ll:.2f} (AIS on the RAISE images minus RAISE: {gap:.2f} nats)"}


def run_vae(data: Any, args: Any, out: Path, device: torch.device) -> dict[str, Any]:
    config = make_config("vae", {"hidden_dims": (200, 200), "latent_dim": 50, "activation": "tanh", "binarize": True,
                                 "iwae_k": args.iwae_k, "lr": args.lr or 1e-3})
    torch.manual_seed(args.seed)
    model = get_model("vae", config)
    train = TrainConfig(epochs=args.epochs, batch_size=100, seed=args.seed, checkpoint_every=args.checkpoint_every,
                        lr_schedule="cosine")
    model, facts = train_resumable(model, data, train, out, device, args.resume)
    t0 = time.perf_counter()
    model.eval()
    n = args.eval_images or data.x_test.shape[0]
    rows, metrics = vae_likelihood_rows(model, data.x_test[:n], data.y_test[:n], k=args.eval_k, chunk=args.eval_chunk,
                                        elbo_samples=10, seed=0, batch_size=1000, device=device)
    value = metrics["iwae_nll"]
    objective = "ELBO" if args.iwae_k == 1 else f"IWAE k={args.iwae_k}"
    return {"value": value, "elbo": metrics["elbo"], "eval_seconds": round(time.perf_counter() - t0, 1), **facts,
            "rows": rows,
            "settings": f"784-200-200-50 tanh MLP, Bernoulli decoder, dynamic binarisation, {objective} objective, "
                        f"Adam lr {config.lr} cosine, batch 100, {facts['epochs']} epochs (paper: 3280); "
                        f"k={args.eval_k} on {n:,} test images binarised once",
            "number": f"{value:.2f} nats (ELBO {metrics['elbo']:.2f})"}


def run_gan(data: Any, args: Any, out: Path, device: torch.device) -> dict[str, Any]:
    width = args.gan_features
    config = make_config("gan", {"latent_dim": 100, "generator_features": width, "discriminator_features": width})
    torch.manual_seed(args.seed)
    model = get_model("gan", config)
    train = TrainConfig(epochs=args.epochs, batch_size=128, seed=args.seed, checkpoint_every=args.checkpoint_every)
    model, facts = train_resumable(model, data, train, out, device, args.resume)
    t0 = time.perf_counter()
    model.eval()
    clf = get_feature_classifier(data, device=device, epochs=args.classifier_epochs)
    kw = dict(k=3, splits=10, seed=0, batch_size=500)
    row, _, _ = generative_row(model, data, clf, n=args.fid_samples, **kw)
    floor = real_floor_row(clf, data, n=args.fid_samples, **kw)["fid"]
    ratio = row["fid"] / floor
    return {"value": ratio, "fid": row["fid"], "fid_floor": floor, "recognised": row["recognised"],
            "classifier_test_accuracy": float(clf.test_accuracy), "eval_seconds": round(time.perf_counter() - t0, 1),
            **facts,
            "settings": f"DCGAN, {width} base features, Adam 2e-4 beta1 0.5, batch 128, {facts['epochs']} epochs; "
                        f"{args.fid_samples} samples vs the 10,000 test images; classifier {args.classifier_epochs} "
                        f"epochs, test accuracy {clf.test_accuracy:.4f}",
            "number": f"FID {row['fid']:.2f} = {ratio:.1f}x the floor {floor:.2f}"}


RUNS = {"ae": run_ae, "rbm": run_rbm, "vae": run_vae, "gan": run_gan}
