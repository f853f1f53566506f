"""PCA versus autoencoders (Hinton & Salakhutdinov 2006): test squared error per image over latent
sizes for PCA, ``ae`` and ``vae`` (decoding the posterior mean) and an ``rbm`` with as many hidden units
(its hidden probabilities as the code, reconstructed by one mean-field step), a 2-D latent scatter, and
the accuracy of a logistic-regression probe on each method's codes."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from genlib.evaluation._utils import batched
from genlib.evaluation.profiles import EvalProfile
from genlib.evaluation.reconstruction import reconstruction_errors

logger = logging.getLogger(__name__)

METHODS = ("pca", "ae", "vae")


def pca_reconstruct(x_fit: np.ndarray, x_eval: np.ndarray, k: int, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    """Fit a k-component PCA on x_fit (N, D) and reconstruct x_eval (M, D).

    Returns (the fitted PCA, codes (M, k), reconstructions (M, D)); reconstructions are not clipped,
    so the error is PCA's own (the sum of the discarded eigenvalues when x_eval is x_fit).
    """
    from sklearn.decomposition import PCA  # scikit-learn is imported only by the experiments that use it

    pca = PCA(n_components=k, svd_solver="full", random_state=seed).fit(x_fit)
    codes = pca.transform(x_eval)
    return pca, codes, pca.inverse_transform(codes)


def pca_sq_err_per_image(x_fit: np.ndarray, x_eval: np.ndarray, k: int) -> float:
    """Mean over x_eval's images of the squared reconstruction error summed over pixels, k components."""
    _, _, recon = pca_reconstruct(x_fit, x_eval, k)
    return float(((recon - x_eval) ** 2).sum(1).mean())


def probe_accuracy(
    codes_train: np.ndarray, y_train: np.ndarray, codes_test: np.ndarray, y_test: np.ndarray, *, max_train: int = 10000,
    seed: int = 0,
) -> float:
    """Test accuracy of a logistic-regression probe (standardised codes) fit on at most max_train train codes;
    NaN without labels (fewer than 2 classes in y_train)."""
    if len(np.unique(y_train)) < 2:
        return float("nan")
    if codes_train.shape[0] > max_train:
        idx = np.random.default_rng(seed).choice(codes_train.shape[0], max_train, replace=False)
        codes_train, y_train = codes_train[idx], y_train[idx]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(codes_train, y_train)
    return float(probe.score(codes_test, y_test))


class PCAEncoder:
    """The first k principal directions as an encoder: ``encode`` maps (B, C, H, W) to codes (B, k)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32)  # (D,)
        self.components = torch.as_tensor(components, dtype=torch.float32)  # (k, D)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        flat = x.flatten(1).float()
        return (flat - self.mean.to(flat.device)) @ self.components.to(flat.device).T


def suite_config_values(name: str, latent: int, profile: EvalProfile) -> dict[str, Any]:
    """Config values of a suite model with an L-unit code: what its config has of ``latent_dim`` (code size),
    ``hidden_dims`` (the profile's) and ``hidden_units`` (an RBM's hidden layer is its code)."""
    from genlib.models import get_model_class

    fields = get_model_class(name).config_class.model_fields
    values: dict[str, Any] = {}
    if "latent_dim" in fields:
        values["latent_dim"] = int(latent)
        if "hidden_dims" in fields:
            values["hidden_dims"] = tuple(profile.suite_hidden_dims)
    elif "hidden_units" in fields:
        values["hidden_units"] = int(latent)
    return values


def train_suite_model(name: str, data: Any, latent: int, profile: EvalProfile, device: torch.device, seed: int = 0):
    """Train a suite model (``ae``, ``vae``, ``rbm``, ...) with an L-unit code and the profile's hidden sizes
    and epochs on the full train split."""
    from genlib.training import TrainConfig, config_for_data, train_model

    config = config_for_data(name, data, suite_config_values(name, latent, profile))
    cfg = TrainConfig(epochs=profile.suite_epochs, batch_size=profile.suite_batch_size, seed=seed)
    return train_model(config, data, cfg, device=device, progress=False).model.eval()


def latent_scatter_figure(codes: dict[str, tuple[np.ndarray, np.ndarray]], max_points: int = 3000) -> Figure:
    """One panel per method: its 2-D test codes coloured by class."""
    fig = Figure(figsize=(4.2 * len(codes), 4.0), layout="constrained")
    axes = fig.subplots(1, len(codes), squeeze=False)[0]
    scatter = None
    for ax, (method, (z, y)) in zip(axes, codes.items()):
        z, y = z[:max_points], y[:max_points]
        scatter = ax.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", s=6, alpha=0.8, vmin=-0.5, vmax=9.5)
        ax.set_title(f"{method} (2-D codes, test)")
        ax.set_xticks([])
        ax.set_yticks([])
    if scatter is not None:
        fig.colorbar(scatter, ax=list(axes), ticks=range(10), label="class")
    return fig


def pca_vs_ae_figure(table: pd.DataFrame) -> Figure:
    """Test squared error per image against latent size, one line per method."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for method, grp in table.groupby("method", sort=False):
        grp = grp.sort_values("latent_size")
        ax.plot(grp["latent_size"], grp["test_sq_err_per_image"], marker="o", label=method)
    ax.set_xlabel("latent size (components / code units)")
    ax.set_ylabel("test squared error per image")
    ax.set_title("PCA vs autoencoders")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _codes(model: Any, x: Tensor, device: torch.device, batch_size: int) -> np.ndarray:
    return batched(lambda xb: model.encode(xb), x, device=device, batch_size=batch_size).numpy()


def _recon(model: Any, x: Tensor, device: torch.device, batch_size: int) -> Tensor:
    return batched(lambda xb: model.reconstruct(xb), x, device=device, batch_size=batch_size)


def pca_vs_autoencoders(
    data: Any, profile: EvalProfile, *, device: torch.device, keep: dict[tuple[str, int], Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Figure], dict[str, float], dict[int, Any], list[dict[str, Any]]]:
    """Run the PCA-vs-autoencoder experiment over ``profile.latent_sizes``.

    Args:
        keep: when given, filled with every fitted method by (method, latent size): the trained models
            and a :class:`PCAEncoder` for ``"pca"`` (each has ``encode``), for the experiments that reuse them.
    Returns:
        (table, figures, metrics, the trained ``profile.pretrain_model`` per latent size (reused by fine-tuning),
        "reconstruction" rows for the PCA baselines).
    """
    x_train = data.x_train.flatten(1).cpu().double().numpy()
    x_test_t = data.x_test.cpu()
    x_test = x_test_t.flatten(1).double().numpy()
    y_train, y_test = data.y_train.cpu().numpy(), data.y_test.cpu().numpy()
    bs = profile.eval_batch_size
    rows, recon_rows, metrics = [], [], {}
    aes: dict[int, Any] = {}
    scatter: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sizes = [k for k in profile.latent_sizes if k <= min(x_train.shape)]
    if len(sizes) < len(profile.latent_sizes):
        logger.warning("latent sizes above %d exceed what PCA can fit on %s; skipped", min(x_train.shape), x_train.shape)
    t0 = time.perf_counter()
    pca = pca_reconstruct(x_train, x_train[:1], max(sizes))[0] if sizes else None
    pca_seconds = time.perf_counter() - t0
    for latent in sizes:
        # Principal subspaces are nested: one fit with the most components serves every size.
        components = pca.components_[:latent]
        codes_tr = (x_train - pca.mean_) @ components.T
        codes_te = (x_test - pca.mean_) @ components.T
        recon_t = torch.from_numpy(codes_te @ components + pca.mean_).view_as(x_test_t)
        results = {"pca": (codes_tr, codes_te, recon_t, pca_seconds)}
        if keep is not None:
            keep[("pca", int(latent))] = PCAEncoder(pca.mean_, components)
        for name in profile.suite_models:
            t0 = time.perf_counter()
            model = train_suite_model(name, data, latent, profile, device)
            secs = time.perf_counter() - t0
            results[name] = (
                _codes(model, data.x_train, device, bs), _codes(model, x_test_t, device, bs),
                _recon(model, x_test_t, device, bs), secs,
            )
            if name == profile.pretrain_model:
                aes[latent] = model
            if keep is not None:
                keep[(name, int(latent))] = model
        for method, (c_tr, c_te, rec, secs) in results.items():
            err = reconstruction_errors(rec.clamp(0, 1) if method != "pca" else rec, x_test_t)
            acc = probe_accuracy(c_tr, y_train, c_te, y_test, max_train=profile.probe_max_train)
            row = {
                "latent_size": int(latent),
                "method": method,
                "test_sq_err_per_image": float(err["sq_err"].mean()),
                "test_mse": float(err["mse"].mean()),
                "probe_accuracy": acc,
                "fit_seconds": secs,
            }
            rows.append(row)
            metrics[f"pca_vs_ae/{method}/latent_{latent}/sq_err_per_image"] = row["test_sq_err_per_image"]
            metrics[f"pca_vs_ae/{method}/latent_{latent}/probe_accuracy"] = acc
            if latent == 2:
                scatter[method] = (c_te, y_test)
            if method == "pca":
                bce = reconstruction_errors(rec.clamp(0, 1), x_test_t)["bce"]
                recon_rows.append({
                    "model": f"pca-{latent} (baseline)", "n_images": int(x_test_t.shape[0]),
                    "test_mse": row["test_mse"], "test_sq_err_per_image": row["test_sq_err_per_image"],
                    "test_bce": float(bce.mean()),
                })
        logger.info("pca_vs_ae latent %d: %s", latent,
                    {r["method"]: round(r["test_sq_err_per_image"], 3) for r in rows if r["latent_size"] == latent})
    table = pd.DataFrame(rows)
    figures = {}
    if not table.empty:
        figures["pca_vs_ae"] = pca_vs_ae_figure(table)
    if scatter:
        figures["latent_scatter"] = latent_scatter_figure(scatter)
    return table, figures, metrics, aes, recon_rows
