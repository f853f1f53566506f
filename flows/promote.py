"""``promote``: point an alias (default ``champion``) at a registered version after re-checking its gates.
Manual: its deployment has no schedule."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.params import PromoteParams
from flows.prepare_data import check_tracking_store
from flows.results import RESULTS


@task(cache_policy=NO_CACHE)
def move_alias(params: PromoteParams) -> str:
    """Raises RegistryError / GateFailedError (naming the gate) and moves nothing when refused."""
    from genlib.tracking.registry import promote as promote_version

    done = promote_version(params.name, params.version, params.alias, force=params.force)
    message = (f"{done.name}@{done.alias} -> version {done.version}"
               f" (was {done.previous or 'unset'}){' [forced]' if done.forced else ''}")
    get_run_logger().info(message)
    return message


@flow(name="promote", result_serializer=RESULTS)
def promote(params: PromoteParams) -> str:
    """Move ``params.alias`` of ``params.name`` to ``params.version`` if its gates pass (or ``force``)."""
    check_tracking_store()
    return move_alias(params)
