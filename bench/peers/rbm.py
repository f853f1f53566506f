"""genlib's RBM against learnergy 2.0.2 (CD-1) and scikit-learn's BernoulliRBM (PCD-1), 784-500, batch 100.

Every side trains on the same binarised images with the same learning rate, no momentum and no weight
decay; learnergy starts from genlib's initial weights (copied in). Every result is mapped into a genlib
RBM and scored by genlib's pseudo-likelihood on the same binarised test images and the same flipped bits.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.peers.common import Fit, PeerData, Side, genlib_fit, step_products_of, timed_fit
from genlib.models import get_model
from genlib.spec import resolve_spec

BATCH = 100
UNMATCHED = [
    "data path: learnergy iterates a per-item TensorDataset through a DataLoader; scikit-learn slices a "
    "NumPy array; genlib slices one tensor",
    "learnergy computes its CD update by autograd through the free-energy difference and, every batch, "
    "a reconstruction error and a stochastic pseudo-likelihood (two more free energies); genlib writes "
    "the CD gradient by hand (five matrix products per batch) and monitors on 16 images",
    "scikit-learn draws its own initial weights (the same N(0, 0.01^2), zero biases), keeps float32 input "
    "in float32, initialises its persistent chains to 0 (genlib: Bernoulli(0.5)) and visits the batches in "
    "the same order every epoch (genlib reshuffles)",
    "learnergy and genlib shuffle with their own RNGs",
]


def genlib_config(hidden: int, lr: float, persistent: bool, matmul_dtype: str = "float32") -> Any:
    """The ``full`` profile's RBM at the peers' settings: CD-1 or PCD-1, no momentum or weight decay;
    ``matmul_dtype="bfloat16"``: the step's products in bfloat16 (the weights stay float32)."""
    return resolve_spec("full", "rbm", {"model": {
        "hidden_units": hidden, "cd_k": 1, "persistent": persistent, "lr": lr, "momentum": 0.0,
        "weight_decay": 0.0, "binarize": False, "final_momentum": None, "lr_decay": 0.0, "cd_k_start": None,
        "matmul_dtype": matmul_dtype,
    }}).model


@torch.no_grad()
def rbm_with(config: Any, weight: Tensor, visible_bias: Tensor, hidden_bias: Tensor) -> Any:
    """A genlib RBM with the given parameters: weight (V, H), visible_bias (V,), hidden_bias (H,)."""
    model = get_model("rbm", config)
    model.weight.copy_(weight.float()), model.visible_bias.copy_(visible_bias.float())
    model.hidden_bias.copy_(hidden_bias.float())
    return model


def sides(data: PeerData, epochs: int, seed: int, hidden: int = 500, lr: float = 0.05) -> list[Side]:
    cd, pcd = genlib_config(hidden, lr, False), genlib_config(hidden, lr, True)
    pcd_bf16 = genlib_config(hidden, lr, True, "bfloat16")
    x = data.train
    y = torch.zeros(x.shape[0], dtype=torch.long)

    def initial(config: Any, rep: int) -> Any:
        torch.manual_seed(seed + rep)
        return get_model("rbm", config)

    def genlib_side(config: Any) -> Any:
        def fit(rep: int) -> Fit:
            return genlib_fit(initial(config, rep), x, y, epochs=epochs, batch_size=BATCH, shuffle_seed=seed + rep)

        return fit

    def fit_learnergy(rep: int) -> Fit:
        from learnergy.models.bernoulli import RBM as LearnergyRBM
        from torch.utils.data import TensorDataset

        start = initial(cd, rep)
        torch.manual_seed(seed + rep)
        model = LearnergyRBM(n_visible=cd.input_dim, n_hidden=hidden, steps=1, learning_rate=lr, momentum=0.0,
                             decay=0.0, use_gpu=False)
        with torch.no_grad():
            model.W.copy_(start.weight), model.a.copy_(start.visible_bias), model.b.copy_(start.hidden_bias)
        dataset = TensorDataset(x.flatten(1), y)

        def run() -> tuple[list[float], Any]:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                model.fit(dataset, batch_size=BATCH, epochs=epochs)
            times = [float(t) for t in model.history.get("time", [])]
            return times, rbm_with(cd, model.W.detach(), model.a.detach(), model.b.detach())

        return timed_fit(run)

    def fit_sklearn(rep: int) -> Fit:
        from sklearn.neural_network import BernoulliRBM

        arrays = x.flatten(1).numpy()  # float32: scikit-learn keeps it, its fastest setting
        sk = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=BATCH, n_iter=epochs, random_state=seed + rep)

        def run() -> tuple[list[float], Any]:
            sk.fit(arrays)
            t = torch.from_numpy
            return [], rbm_with(pcd, t(np.ascontiguousarray(sk.components_.T)), t(sk.intercept_visible_),
                                t(sk.intercept_hidden_))

        return timed_fit(run)

    def products(config: Any) -> Any:
        return step_products_of(initial(config, 0), x, y, BATCH)

    return [
        Side("genlib_cd1", "genlib rbm CD-1", genlib_side(cd), genlib=True, products=products(cd)),
        Side("learnergy_cd1", "learnergy 2.0.2 RBM CD-1", fit_learnergy),
        Side("genlib_pcd1", "genlib rbm PCD-1", genlib_side(pcd), genlib=True, products=products(pcd)),
        Side("sklearn_pcd1", f"scikit-learn BernoulliRBM PCD-1", fit_sklearn),
        # Not equal precision: bfloat16 products (float32 accumulation and weights) against scikit-learn's
        # float32; the quality column says whether it costs anything.
        Side("genlib_pcd1_bf16", "genlib rbm PCD-1, bfloat16 products", genlib_side(pcd_bf16), genlib=True,
             products=products(pcd_bf16)),
    ]


PAIRS = [("genlib_cd1", "learnergy_cd1"), ("genlib_pcd1", "sklearn_pcd1"), ("genlib_pcd1_bf16", "sklearn_pcd1")]


@torch.no_grad()
def score(model: Any, test: Tensor, *, exact_images: int, seed: int) -> dict[str, float]:
    """genlib's pseudo-log-likelihood per image on binary test images (M, 1, 28, 28): the one-bit estimate on
    all (the same flipped bits for every model: a fixed generator) and the exact sum on the first ``exact_images``."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    stochastic = torch.cat([model.pseudo_log_likelihood(xb, gen) for xb in test.split(1000)])
    n = min(exact_images, test.shape[0])
    exact = torch.cat([model.pseudo_log_likelihood(xb, exact=True) for xb in test[:n].split(250)]) if n else None
    return {"pl_stochastic": float(stochastic.mean()), "pl_exact": float(exact.mean()) if exact is not None else None,
            "pl_exact_images": n, "pl_stochastic_images": int(test.shape[0])}
