"""The figures behind the sample-quality gates' fractions (docs/benchmarks.md, "Gates calibrated to the data"): a
pipeline's registered samplers, two samplers trained to fail (one epoch at a tiny learning rate) and synthetic ones
(constant grey, the mean image, one / ten repeated images, noise, blurred real images), each scored against the data
set's reference row and gated, in the feature classifier's space (where the data have labels) and in the contrastive
encoder's (as if they had none).

    python -m bench.gate_calibration --store /tmp/run/mlflow --dataset mnist --n-train 10000 --n-val 2000

``--store`` is the pipeline's GENLIB_MLFLOW_DIR; set GENLIB_CACHE_DIR to its cache to reuse the feature spaces.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import torch
import torch.nn.functional as F

SAMPLERS = ("vae", "cvae", "gan", "cgan", "rbm")
SKIP = ("finite", "reconstruction", "likelihood")


class Synthetic:
    """A stand-in sampler: ``sample`` returns ``draw(n, generator)`` (N, C, H, W) in [0, 1]."""

    conditional = False
    device = torch.device("cpu")

    def __init__(self, name: str, draw: Any, num_classes: int) -> None:
        self.name, self.draw = name, draw
        self.config = argparse.Namespace(num_classes=num_classes)

    def sample(self, n: int, labels: Any = None, generator: Any = None) -> torch.Tensor:
        return self.draw(n, generator)


def synthetic(x: torch.Tensor, num_classes: int) -> dict[str, Synthetic]:
    shape, mean = x.shape[1:], x.mean(0, keepdim=True)

    def pick(n: int, g: torch.Generator) -> torch.Tensor:
        return x[torch.randperm(x.shape[0], generator=g)[:n]]

    draws = {
        "grey": lambda n, g: torch.full((n, *shape), float(x.mean())),
        "mean image": lambda n, g: mean.expand(n, *shape).clone(),
        "one image": lambda n, g: x[:1].expand(n, *shape).clone(),
        "ten images": lambda n, g: x[:10].repeat(n // 10 + 1, 1, 1, 1)[:n],
        "noise": lambda n, g: torch.rand(n, *shape, generator=g),
        "blurred real (5x5 box)": lambda n, g: F.avg_pool2d(pick(n, g), 5, 1, 2),
    }
    return {k: Synthetic(k, v, num_classes) for k, v in draws.items()}


def main() -> None:
    import mlflow

    from genlib.data import load_dataset
    from genlib.evaluation.contrastive import ContrastiveConfig, get_contrastive_encoder
    from genlib.evaluation.features import get_feature_space, has_labels, reference_metrics, reference_row
    from genlib.evaluation.generative import generative_row
    from genlib.spec import data_shape, resolve_spec
    from genlib.tracking.gates import check_gates
    from genlib.tracking.pyfunc import load_genlib_model
    from genlib.training import train_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="the pipeline's GENLIB_MLFLOW_DIR")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-val", type=int)
    ap.add_argument("--alias", default="challenger", help="which registered version of each family to score")
    ap.add_argument("--out", help="write the gate checks as JSON here")
    args = ap.parse_args()
    uri = f"sqlite:///{args.store}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    data = load_dataset(args.dataset, seed=0)
    if args.n_train or args.n_val:
        data = data.subset(args.n_train, args.n_val, None, seed=0)
    models: dict[str, Any] = {}
    for f in SAMPLERS:
        try:
            models[f] = load_genlib_model(f"models:/genlib-{f}-{data.name}@{args.alias}")
        except Exception as err:  # a family the pipeline did not register
            print(f"{f}: not registered ({type(err).__name__})")
    for family, lr in (("rbm", 1e-5), ("gan", 1e-6)):
        spec = resolve_spec("quick", family, {"model": {"lr": lr}, "train": {"epochs": 1}}, data_shape(data))
        models[f"{family}, 1 epoch, lr {lr:g}"] = train_model(spec.model, data, spec.train, device="cpu",
                                                            progress=False).model
    models.update(synthetic(data.x_train, max(data.num_classes, 2)))
    spaces = {"contrastive": (get_contrastive_encoder(
        data, device="cpu", config=ContrastiveConfig(image_shape=tuple(data.x_train.shape[1:]))), False)}
    if has_labels(data):
        spaces = {"classifier": (get_feature_space(data, device="cpu", epochs=8), True), **spaces}
    kw = dict(k=3, splits=10, seed=0, batch_size=512)
    out = {}
    for space_name, (space, labelled) in spaces.items():
        ref = reference_metrics(reference_row(space, data, n=500, **kw), labelled)
        print(space_name, {k: round(v, 3) for k, v in ref.items()})
        for name, model in models.items():
            family = name.split(",")[0] if name.split(",")[0] in SAMPLERS else "gan"
            row, _, _ = generative_row(model, data, space, n=500, **kw)
            measured = {k: v for k, v in row.items() if isinstance(v, float) and not math.isnan(v)}
            if not labelled:
                measured = {k: v for k, v in measured.items() if k not in ("recognised", "inception_score",
                                                                          "class_accuracy")}
            # Only the sample-quality gates are read: stand-ins for the other gates' metrics.
            m = {**ref, **measured, "test_loss": 0.0, "test_sq_err_per_image": 0.0, "baseline_sq_err_per_image": 1.0,
                 "test_pseudo_log_likelihood": 0.0, "ais_log_likelihood": 0.0,
                 "baseline_bernoulli_log_likelihood": -1.0}
            checks = [c for c in check_gates(family, m) if c.gate not in SKIP and c.op != "skip"]
            print(f"  {space_name:11s} {name:24s} " + " | ".join(
                f"{c.metric if c.gate != 'recognition_without_coverage' else 'overconf.'}="
                f"{'-' if c.value is None else round(c.value, 3)}{'' if c.passed else ' FAIL'}" for c in checks))
            out[f"{space_name}/{name}"] = [c.as_json() for c in checks]
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
