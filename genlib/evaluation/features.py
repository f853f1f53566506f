"""Which feature space scores samples, and the data set's reference row in it.

Labelled data (at least two classes): the feature CNN trained on the labels (genlib.evaluation.classifier),
which also gives the class probabilities behind ``recognised``, the Inception Score and class accuracy.
Unlabelled data: the contrastive encoder trained on the images alone (genlib.evaluation.contrastive); the
label scores are then not measured. docs/metrics.md, "Feature spaces", says why.

The reference row ("real (train vs test)", :func:`genlib.evaluation.generative.real_floor_row`) is computed
once per (data digest, feature space, sample size, k, splits, seed) and cached on disk beside the feature
space, so data preparation and every evaluation read the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlib.data.splits import has_labels
from genlib.evaluation.generative import real_features, real_floor_row
from genlib.user_cache import cache_root

logger = logging.getLogger(__name__)

REFERENCE_FORMAT = 1
__all__ = ["data_reference", "get_feature_space", "has_labels", "reference_metrics", "reference_row"]


def get_feature_space(data: Any, *, device: torch.device | str, epochs: int | None = None,
                      cache_dir: str | Path | None = None, seed: int = 0) -> Any:
    """The feature space that scores samples of ``data``: the feature classifier when it has labels (trained
    ``epochs``), else the contrastive encoder (``epochs`` x 25 steps); both disk-cached by data digest. Both offer ``embed(x) ->
    (features (N, D), class probabilities (N, C) or None)``, ``test_accuracy`` and ``real_cache``."""
    if has_labels(data):
        from genlib.evaluation.classifier import get_feature_classifier

        return get_feature_classifier(data, device=device, epochs=epochs, cache_dir=cache_dir, seed=seed)
    from genlib.evaluation.contrastive import STEPS_PER_EPOCH_SETTING, ContrastiveConfig, get_contrastive_encoder

    # One knob for both spaces' training length: the profile's classifier_epochs (quick: 8 -> 200 steps).
    config = ContrastiveConfig(image_shape=tuple(data.x_train.shape[1:]),
                               **({} if epochs is None else {"steps": STEPS_PER_EPOCH_SETTING * int(epochs)}))
    return get_contrastive_encoder(data, device=device, cache_dir=cache_dir, seed=seed, config=config)


def _space_id(space: Any) -> str:
    """A digest of the feature space's weights: two spaces with equal ids embed identically."""
    h = hashlib.sha256(type(space).__name__.encode())
    for name, tensor in sorted(space.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def reference_row(space: Any, data: Any, *, n: int, k: int, splits: int, seed: int, batch_size: int,
                  cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The "real (train vs test)" row (genlib.evaluation.generative.real_floor_row) plus ``fid_scale``:
    tr(Sigma) of the test split's features, the FID of a sampler that puts every sample on the real
    features' mean. Read from / written to ``<cache>/reference/`` (JSON) so it is computed once."""
    key = json.dumps({"format": REFERENCE_FORMAT, "digest": str(data.digest), "space": _space_id(space), "n": n,
                      "k": k, "splits": splits, "seed": seed}, sort_keys=True)
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    path = root / "reference" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    row = real_floor_row(space, data, n=n, k=k, splits=splits, seed=seed, batch_size=batch_size)
    test_f, _ = real_features(space, data, "test", None, seed, batch_size)
    row["fid_scale"] = float(np.trace(np.atleast_2d(np.cov(test_f.double().numpy(), rowvar=False))))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{id(row)}.tmp")
        tmp.write_text(json.dumps(row, allow_nan=True))
        tmp.replace(path)  # atomic: a parallel evaluation reads the whole file or none
    except OSError as err:  # a read-only cache costs a recomputation, nothing else
        logger.warning("could not cache the reference row at %s (%s)", path, err)
    return row


def reference_metrics(row: Mapping[str, Any], labelled: bool) -> dict[str, float]:
    """The reference row as the gates read it: ``reference_fid``, ``reference_fid_scale``,
    ``reference_precision``, ``reference_recall``, ``reference_labelled`` (1 or 0) and, with labels,
    ``reference_recognised``, ``reference_inception_score``, ``reference_class_accuracy``."""
    keys = ["fid", "fid_scale", "precision", "recall"]
    if labelled:
        keys += ["recognised", "inception_score", "class_accuracy"]
    out = {f"reference_{k}": float(row[k]) for k in keys if row.get(k) is not None and math.isfinite(float(row[k]))}
    out["reference_labelled"] = 1.0 if labelled else 0.0
    return out


def data_reference(data: Any, profile: Any, *, device: torch.device | str) -> dict[str, float]:
    """:func:`reference_metrics` of ``data`` under an evaluation profile (its fid_samples, pr_k, is_splits,
    seed, classifier_epochs): what ``prepare_data`` records on the data run."""
    space = get_feature_space(data, device=device, epochs=profile.classifier_epochs)
    row = reference_row(space, data, n=profile.fid_samples, k=profile.pr_k, splits=profile.is_splits,
                        seed=profile.seed, batch_size=profile.eval_batch_size)
    return reference_metrics(row, has_labels(data))
