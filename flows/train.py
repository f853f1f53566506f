"""``train``: fit one family from a pydantic config, tracked in MLflow (params, per-epoch loss terms, grids,
loss curves, the model). Returns the run id and model URI. Cached on the configs, data digest and store."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from flows.common import ConfigAndStore, digest_of, load_data, resolve_device, run_is_usable
from flows.params import DataParams, TrainParams, TrainResult
from flows.prepare_data import check_tracking_store, load_and_validate


class TrainSpec(BaseModel):
    """Everything that decides the trained weights (and nothing else): the cache key is made of it."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    family: str
    profile: str
    model_config_values: dict[str, Any]
    train_config_values: dict[str, Any]
    data: DataParams
    digest: str

    @property
    def config_key(self) -> str:
        return digest_of({"family": self.family, "model": self.model_config_values,
                          "train": self.train_config_values, "digest": self.digest})


@task(cache_policy=NO_CACHE)
def resolve_spec(params: TrainParams, digest: str) -> TrainSpec:
    """The full model config (shape and classes from the data) and train config for ``params``."""
    from genlib.profiles import family_settings
    from genlib.training import TrainConfig, build_config

    settings = family_settings(params.profile, params.family)
    data = load_data(params.data, expected_digest=digest)
    config = build_config(params.family, data, {**settings.model, **params.model_overrides})
    train_config = TrainConfig(**{**settings.train, **params.train_overrides})
    return TrainSpec(family=params.family, profile=params.profile, model_config_values=config.model_dump(mode="json"),
                     train_config_values=train_config.model_dump(mode="json"), data=params.data, digest=digest)


@task(cache_policy=ConfigAndStore(ignore=("device", "image_every")), persist_result=True)
def fit_and_log(spec: TrainSpec, device: str = "auto", image_every: int | None = None) -> TrainResult:
    """Train in an MLflow run and log the model; a failure (NaN loss, crash) leaves the run FAILED."""
    import mlflow
    from prefect.runtime import flow_run

    from genlib.tracking import MLflowCallback, ensure_experiment, log_genlib_model, resolve_tracking
    from genlib.tracking.runs import CONFIG_KEY_TAG, KIND_TAG, log_dataset_input, run_name
    from genlib.training import TrainConfig, save_checkpoint, train_model

    logger = get_run_logger()
    data = load_data(spec.data, expected_digest=spec.digest)
    torch_device = resolve_device(device)
    experiment_id = ensure_experiment(data.name, resolve_tracking())
    key = spec.config_key
    tags = {KIND_TAG: "train", CONFIG_KEY_TAG: key, "genlib.model": spec.family, "genlib.profile": spec.profile,
            "genlib.dataset": data.name, "genlib.dataset_digest": spec.digest, "genlib.device": str(torch_device),
            "genlib.prefect_flow_run_id": str(flow_run.id or "")}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name(spec.family, spec.profile, key),
                          tags=tags) as run:
        run_id = run.info.run_id
        logger.info("training %s on %s (%s), MLflow run %s", spec.family, torch_device, data.name, run_id)
        log_dataset_input(data, context="training", run_id=run_id)
        callback = MLflowCallback(run_id, data.x_test, data.y_test, seed=int(spec.train_config_values["seed"]),
                                  image_every=image_every)
        try:
            trained = train_model(spec.family, data, spec.model_config_values,
                                  TrainConfig(**spec.train_config_values), device=torch_device, callbacks=[callback],
                                  progress=False)
        finally:
            callback.close()
        fit = trained.fit
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="genlib-ckpt-") as tmp:
            checkpoint = save_checkpoint(Path(tmp) / "model.pt", trained.model, epoch=fit.epochs_run,
                                         extra={"dataset": data.name, "dataset_digest": spec.digest})
            info = log_genlib_model(checkpoint, trained.model, data.x_test)
        # Compute alone (the fit's clock minus the callback's per-epoch logging) and tracking alone.
        compute = fit.seconds - callback.epoch_seconds
        tracking = callback.seconds + time.perf_counter() - t0
        metrics = {**trained.test_metrics, "epochs_run": float(fit.epochs_run), "best_epoch": float(fit.best_epoch),
                   "train_seconds": compute, "tracking_seconds": tracking}
        mlflow.log_metrics(metrics)
    logger.info("%s: %d epochs in %.1fs (+%.1fs tracking), model %s", spec.family, fit.epochs_run, compute,
                tracking, info.model_uri)
    return TrainResult(run_id=run_id, model_uri=info.model_uri, model_id=info.model_id, family=spec.family,
                       config_key=key, metrics=metrics, train_seconds=compute, tracking_seconds=tracking,
                       device=str(torch_device))


def train_family(params: TrainParams, digest: str) -> TrainResult:
    """The train flow's steps on data already validated (digest ``digest``); the pipeline calls it directly
    so each family costs tasks, not a flow run. A cached result whose run is gone is trained again."""
    from genlib.errors import DataError

    if params.expected_digest and digest != params.expected_digest:
        raise DataError(f"{params.data.dataset}: digest {digest[:12]} here, expected "
                        f"{params.expected_digest[:12]}; the data differ between machines")
    spec = resolve_spec.with_options(task_run_name=f"resolve_spec-{params.family}")(params, digest)
    fit = fit_and_log.with_options(task_run_name=f"fit_and_log-{params.family}")
    state = fit(spec, params.device, params.image_every, return_state=True)
    result, cached = state.result(), state.name == "Cached"
    if cached and not run_is_usable(result.run_id):
        get_run_logger().warning("cached run %s is gone from the tracking store; training again", result.run_id)
        result, cached = fit.with_options(refresh_cache=True)(spec, params.device, params.image_every), False
    return result.model_copy(update={"cached": cached})


@flow(name="train")
def train(params: TrainParams) -> TrainResult:
    """Train ``params.family`` and log it to MLflow; returns the run id and model URI."""
    check_tracking_store()
    summary = load_and_validate(params.data)
    return train_family(params, summary["digest"])
