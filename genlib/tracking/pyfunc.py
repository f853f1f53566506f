"""MLflow packaging of genlib models: a pyfunc whose only artifact is the genlib checkpoint.

Why not ``mlflow.pytorch``: MLflow 3 saves torch models with ``torch.export`` ('pt2') by default,
which captures one traced ``forward``. Our models are used through ``sample(n, labels, generator)``
and ``reconstruct(x, y)``; export cannot capture a ``torch.Generator`` argument nor choose between
the two by a parameter, and the legacy pickle format would pickle the module class itself (tied to
the code that wrote it, and unsafe to load). So the logged model is this ``PythonModel`` wrapper,
logged *as code* (models-from-code: nothing is cloudpickled), with one artifact: the checkpoint
``{config, state_dict}``, read back with ``torch.load(weights_only=True)`` and rebuilt through the
model registry exactly as ``genlib.training.load_checkpoint`` does.

Loaded with ``mlflow.pyfunc.load_model(uri)``, ``predict(images)`` reconstructs images
(N, C, H, W) in [0, 1] and ``predict(None, params={"n": 16, "seed": 0, "labels": [...]})``
generates; ``load_genlib_model(uri)`` gives back the genlib model itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

from genlib.errors import ConfigError, DataError
from genlib.tracking.errors import RegistryError

CHECKPOINT_ARTIFACT = "checkpoint"
_MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
# Most images one predict call may generate: a guard against a typo allocating gigabytes.
MAX_GENERATE = 10_000


class GenlibPyfuncModel(PythonModel):
    """Reconstructs given images, or generates ``params["n"]`` images (``seed``, ``labels``)."""

    def load_context(self, context: Any) -> None:
        from genlib.training.checkpoint import model_from_checkpoint_dict

        path = context.artifacts[CHECKPOINT_ARTIFACT]
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        device = torch.device(os.environ.get("GENLIB_PYFUNC_DEVICE", "cpu"))
        self.model = model_from_checkpoint_dict(ckpt, source=str(path)).to(device).eval()

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """Args: model_input (N, C, H, W) float32 in [0, 1] or None; params n, seed, labels.

        Returns: (N, C, H, W) float32 in [0, 1], reconstructions of the input when ``n`` is 0,
        else ``n`` generated images.
        """
        params = params or {}
        n = int(params.get("n") or 0)
        labels = _labels(params.get("labels"))
        with torch.no_grad():
            if n > 0:
                return self._generate(n, int(params.get("seed") or 0), labels)
            return self._reconstruct(model_input, labels)

    def _generate(self, n: int, seed: int, labels: torch.Tensor | None) -> np.ndarray:
        model = self.model
        if not model.generates:
            raise ConfigError(f"{model.name} does not generate; pass images to reconstruct")
        if n > MAX_GENERATE:
            raise ConfigError(f"n must be at most {MAX_GENERATE}, got {n}")
        if labels is not None and len(labels):
            if not model.conditional:
                raise ConfigError(f"labels: {model.name} is not conditional")
            labels = labels.repeat(n // len(labels) + 1)[:n]
        else:
            labels = None
        # RNG on CPU so CPU and CUDA serving draw the same images for a seed.
        images = model.sample(n, labels=labels, generator=torch.Generator().manual_seed(seed))
        return images.float().cpu().numpy()

    def _reconstruct(self, model_input: Any, labels: torch.Tensor | None) -> np.ndarray:
        model = self.model
        if not model.reconstructs:
            raise ConfigError(f"{model.name} does not reconstruct; pass params={{'n': N}} to generate")
        if model_input is None:
            raise ConfigError("no images given; pass images (N, C, H, W) to reconstruct or params n to generate")
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        shape = tuple(model.config.image_shape)
        x = x.reshape(-1, *shape).to(model.device)
        y = None
        if model.conditional:
            if labels is None or len(labels) != len(x):
                raise ConfigError(f"{model.name} reconstructs with labels: pass params labels with {len(x)} entries")
            y = labels.to(model.device)
        return model.reconstruct(x, y).float().cpu().numpy()


def _labels(value: Any) -> torch.Tensor | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.int64).reshape(-1)
    return torch.from_numpy(arr) if arr.size else None


def model_signature(image_shape: tuple[int, int, int]) -> ModelSignature:
    """Images in and out as float32 tensors (-1, C, H, W); params n, seed and labels."""
    spec = TensorSpec(np.dtype(np.float32), (-1, *image_shape))
    params = ParamSchema([
        ParamSpec("n", "long", 0),
        ParamSpec("seed", "long", 0),
        ParamSpec("labels", "long", [], shape=(-1,)),
    ])
    return ModelSignature(inputs=Schema([spec]), outputs=Schema([spec]), params=params)


def input_example(model: Any, images: torch.Tensor) -> tuple[np.ndarray, dict[str, Any]]:
    """(images, params) to store with the model: two images to reconstruct, or a request for four samples."""
    x = images[:2].detach().float().cpu().numpy()
    if model.reconstructs:
        params: dict[str, Any] = {"n": 0, "seed": 0}
        if model.conditional:
            params["labels"] = [0, 1]
        return x, params
    params = {"n": 4, "seed": 0}
    if model.conditional:
        params["labels"] = [0, 1, 2, 3]
    return x, params


def log_genlib_model(checkpoint: str | Path, model: Any, example_images: torch.Tensor, name: str = "model",
                     **kwargs: Any) -> Any:
    """Log the checkpoint as a pyfunc model in the active run. Returns MLflow's ModelInfo.

    Args:
        checkpoint: a genlib checkpoint file (``save_checkpoint``).
        model: the model it holds (for the signature and example).
        example_images: (N, C, H, W) images in [0, 1]; the first two become the input example.
        name: the logged model's name in MLflow's UI (the train flow gives ``<family>-<profile>``).
        kwargs: for ``mlflow.pyfunc.log_model``, e.g. ``tags`` (``mlflow.note.content``: the model page's
            description, markdown).
    """
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                    f"genlib=={_genlib_version()}", "numpy"]
    # MLflow 3 copies a uv project's pyproject.toml and uv.lock (large) into every model it logs from
    # inside the project; the requirements above already pin what loading needs.
    previous = os.environ.get("MLFLOW_LOG_UV_FILES")
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    try:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(_MODEL_CODE),
            artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
            signature=model_signature(tuple(model.config.image_shape)),
            input_example=input_example(model, example_images),
            # Explicit requirements: inferring them starts a subprocess that imports everything (seconds).
            pip_requirements=requirements,
            **kwargs,
        )
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_LOG_UV_FILES", None)


def _genlib_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genlib")
    except PackageNotFoundError:
        return "0.1.0"


def load_genlib_model(uri: str) -> Any:
    """The genlib model (CPU, eval mode) logged at ``uri`` (``models:/name@alias``, ``runs:/...``, ``models:/m-...``)."""
    from mlflow.exceptions import MlflowException

    from genlib.training.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory(prefix="genlib-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except MlflowException as err:
            raise RegistryError(f"cannot load model {uri}: {str(err).splitlines()[0]}") from None
        artifacts = {}
        if (local / "MLmodel").is_file():
            flavor = mlflow.models.Model.load(str(local / "MLmodel")).flavors.get("python_function", {})
            artifacts = flavor.get("artifacts") or {}
        if CHECKPOINT_ARTIFACT not in artifacts:
            raise DataError(f"{uri}: the logged model has no {CHECKPOINT_ARTIFACT!r} artifact; not a genlib model")
        return load_checkpoint(local / artifacts[CHECKPOINT_ARTIFACT]["path"]).model.eval()
