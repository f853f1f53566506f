"""``register``: register a trained model as a version of ``genlib-<family>-<dataset>``, tagged with the
data digest, git commit and key metrics; ``challenger`` moves to it, ``champion`` only when it passes its
gates and beats the current champion on the family's primary metric."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.params import RegisterParams
from flows.prepare_data import check_tracking_store
from flows.results import RESULTS
from genlib.tracking.registry import Registration


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def register_version(params: RegisterParams) -> Registration:
    """Idempotent per training run (a retry or a cached re-run reuses the version)."""
    from genlib.tracking import tags as T
    from genlib.tracking.registry import register_version as register

    extra = {T.EVAL_RUN_ID: params.eval_run_id} if params.eval_run_id else None
    reg = register(params.model_uri, params.run_id, params.family, params.dataset, params.dataset_digest,
                   params.metrics, extra_tags=extra)
    get_run_logger().info("%s version %s %s: %s", reg.name, reg.version,
                          "promoted to champion" if reg.promoted else "not promoted", reg.reason)
    return reg


@flow(name="register", result_serializer=RESULTS)
def register(params: RegisterParams) -> Registration:
    """Register ``params.model_uri`` and move its aliases; returns the version and its aliases."""
    check_tracking_store()
    return register_version(params)
