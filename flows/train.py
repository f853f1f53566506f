"""``train``: fit one family from its RunSpec, tracked in MLflow (params, per-epoch loss terms, grids, loss
curves, the model). Returns the run id and model URI. Cached on ``spec.cache_key(digest)`` and the store."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from flows.common import SpecAndStore, load_data, resolve_device, run_or_reuse, track
from flows.params import DataParams, TrainParams, TrainResult
from flows.prepare_data import check_tracking_store, load_and_validate
from flows.results import RESULTS
from genlib.spec import RunSpec
from genlib.sweep.refs import TrialRef


def retry_unless_user_error(task_: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed training unless a genlib error stopped it (bad settings, divergence, lost tracking
    server): those would fail again. A retry resumes from the last checkpoint."""
    from genlib.errors import GenlibError
    from genlib.tracking import TrackingUnavailableError, check_tracking, resolve_tracking

    try:
        state.result()
    except GenlibError:
        return False
    except BaseException:  # noqa: BLE001 - anything else (a crash, an I/O error) is worth a retry...
        try:
            check_tracking(resolve_tracking(), timeout=5)
        except TrackingUnavailableError:
            return False  # ...unless the tracking server is gone: the pipeline stops instead
        return True
    return False


@task(cache_policy=SpecAndStore(), persist_result=True, result_serializer=RESULTS,
      retry_condition_fn=retry_unless_user_error)
def fit_and_log(spec: RunSpec, data_params: DataParams, digest: str, device: str = "auto",
                image_every: int | None = None, trial: TrialRef | None = None) -> TrainResult:
    """Train ``spec`` in an MLflow run and log the model; a failure (NaN loss, crash) leaves the run FAILED.

    ``trial`` (a sweep's): the run is tagged with its study and number, and each epoch's validation metric
    goes to the study; a pruned trial stops with TrialPrunedError and its run ends KILLED.

    Checkpoints go to the resume folder of (spec, digest) (genlib.tracking.resume) every
    ``spec.train.checkpoint_every`` epochs; when an earlier attempt left one (a kill, a crash, a retry),
    training resumes from it into the same MLflow run and says so in one line.
    """
    import mlflow

    from genlib.tracking import MLflowCallback, ensure_experiment, log_genlib_model, resolve_tracking, store_identity
    from genlib.tracking import resume
    from genlib.tracking import tags as T
    from genlib.tracking.runs import log_dataset_input, run_name
    from genlib.sweep.trial import PruningCallback
    from genlib.tracking.version_page import weights_sentence
    from genlib.training import save_checkpoint, train_model

    logger = get_run_logger()
    data = load_data(data_params, expected_digest=digest)
    torch_device = resolve_device(device)
    experiment_id = ensure_experiment(data.name, resolve_tracking())
    key, store = spec.cache_key(digest), store_identity()
    point = resume.resume_point(spec.family, key, store)
    resuming = point.resumable
    tags = {T.MODEL: spec.family, T.PROFILE: spec.profile}
    if resuming:
        tags[T.RESUMED_FROM_EPOCH] = str(point.epoch)
    if trial is not None:
        tags.update({T.SWEEP_STUDY: trial.study, T.SWEEP_TRIAL: str(trial.number)})
    with track("train", experiment_id=experiment_id, name=run_name(spec.family, spec.profile, key), dataset=data.name,
               digest=digest, config_key=key, device=str(torch_device), tags=tags,
               run_id=point.run_id if resuming else None) as run_id:
        if resuming:
            logger.info("resumed %s from epoch %d", spec.family, point.epoch)
        else:
            resume.record_run(point, run_id, store)
            logger.info("training %s on %s (%s), MLflow run %s", spec.family, torch_device, data.name, run_id)
            log_dataset_input(data, context="training", run_id=run_id)
        callback = MLflowCallback(run_id, data.x_test, data.y_test, seed=spec.train.seed, image_every=image_every)
        callbacks = [callback, PruningCallback(trial)] if trial is not None else [callback]
        try:
            trained = train_model(spec.model, data, spec.train, device=torch_device, callbacks=callbacks,
                                  checkpoint_dir=point.folder, resume_from=point.checkpoint if resuming else None,
                                  progress=False)
        finally:
            callback.close()
        fit = trained.fit
        epoch = weights_epoch(fit, spec.train.patience)
        weights = weights_sentence(epoch, fit.epochs_run, fit.best_epoch)
        resumed = f", resumed from epoch {point.epoch}" if resuming else ""
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="genlib-ckpt-") as tmp:
            checkpoint = save_checkpoint(Path(tmp) / "model.pt", trained.model, epoch=epoch,
                                         extra={"dataset": data.name, "dataset_digest": digest,
                                                "epochs_run": fit.epochs_run})
            info = log_genlib_model(checkpoint, trained.model, data.x_test, name=f"{spec.family}-{spec.profile}",
                                    tags={T.MODEL: spec.family, T.PROFILE: spec.profile, T.WEIGHTS_EPOCH: str(epoch),
                                          T.MLFLOW_RUN_NOTE: model_note(spec, data.name, run_id, experiment_id,
                                                                        weights)})
        # Compute alone (the fit's clock minus the callback's per-epoch logging) and tracking alone.
        compute = fit.seconds - callback.epoch_seconds
        tracking = callback.seconds + time.perf_counter() - t0
        metrics = {"epochs_run": float(fit.epochs_run), "best_epoch": float(fit.best_epoch),
                   "train_seconds": compute, "tracking_seconds": tracking}
        mlflow.set_tags({T.EPOCHS_RUN: fit.epochs_run, T.BEST_EPOCH: fit.best_epoch, T.WEIGHTS_EPOCH: epoch,
                         T.TRAIN_SECONDS: f"{compute:.2f}", T.TRACKING_SECONDS: f"{tracking:.2f}",
                         T.MLFLOW_RUN_NOTE: (
                             f"{spec.family} ({spec.profile} profile) on {data.name} (digest {digest[:12]}): "
                             f"{fit.epochs_run} epochs in {compute:.1f} s on {torch_device}{resumed}. It logged "
                             f"the model {spec.family}-{spec.profile} ({info.model_id}). {weights}\n\n"
                             f"{EVALUATION_PENDING}")})
    resume.clear(point)  # the model is logged: nothing left to resume
    logger.info("%s: %d epochs in %.1fs (+%.1fs tracking), model %s", spec.family, fit.epochs_run, compute,
                tracking, info.model_uri)
    return TrainResult(run_id=run_id, model_uri=info.model_uri, model_id=info.model_id, family=spec.family,
                       config_key=key, metrics=metrics, train_seconds=compute, tracking_seconds=tracking,
                       device=str(torch_device), resumed_from_epoch=point.epoch if resuming else None)


# The training run's description ends with this until the evaluation replaces it with a link to its run.
EVALUATION_PENDING = "Test metrics: not evaluated yet."


def weights_epoch(fit: Any, patience: int | None) -> int:
    """The epoch whose weights the trained model holds: ``fit`` (genlib.training) restores the best epoch's
    weights at the end only when early stopping is on (``patience``) and the best was not the last epoch;
    otherwise the model keeps the last epoch's."""
    if patience is not None and fit.best_epoch:
        return fit.best_epoch
    return fit.epochs_run


def model_note(spec: RunSpec, dataset: str, run_id: str, experiment_id: str, weights: str) -> str:
    """The logged model's description (markdown): what it is, which epoch's weights it holds, its training run."""
    from genlib.tracking.version_page import run_link

    return (f"{spec.family} trained with the {spec.profile} profile on {dataset} by "
            f"[training run {run_id[:8]}]({run_link(experiment_id, run_id)}). {weights}")


def train_family(params: TrainParams, digest: str) -> TrainResult:
    """The train flow's steps on data already validated (digest ``digest``); the pipeline calls it directly
    so each family costs tasks, not a flow run."""
    from genlib.errors import DataError

    if params.expected_digest and digest != params.expected_digest:
        raise DataError(f"{params.data.dataset}: digest {digest[:12]} here, expected "
                        f"{params.expected_digest[:12]}; the data differ between machines")
    spec = params.resolve(load_data(params.data, expected_digest=digest))
    fit = fit_and_log.with_options(retries=params.retries, retry_delay_seconds=2, refresh_cache=params.retrain)
    return run_or_reuse(fit, spec, params.data, digest, params.device, params.image_every, params.trial,
                        needs_model=True, label=params.family)


@flow(name="train", result_serializer=RESULTS)
def train(params: TrainParams) -> TrainResult:
    """Train ``params.family`` and log it to MLflow (nested under ``params.parent_run_id`` when given)."""
    from genlib.tracking.cleanup import end_runs_on_signal, mark_stale_runs
    from genlib.tracking.runs import nested_under

    check_tracking_store()
    mark_stale_runs()  # a worker's earlier, killed process left its runs RUNNING: FAILED, with a note
    end_runs_on_signal()  # a cancelled deployment run (SIGTERM) ends its MLflow run KILLED
    summary = load_and_validate(params.data)
    with nested_under(params.parent_run_id):
        return train_family(params, summary["digest"])
