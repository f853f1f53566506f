"""``promote``: point an alias (default ``champion``) at a registered version after re-checking its gates.
Manual: its deployment has no schedule.

A refusal (a failed gate, a missing model or version) ends the flow run Failed with one line, naming the
gate and the deployment's ``force`` parameter, as its state message and no traceback; a move ends it
Completed with its message as the state message (which ``prefect deployment run --watch`` prints in the
"Finished in state" line), in the run's log and as a markdown artifact on the flow run.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FailedRun
from prefect.states import Completed, Failed, State

from flows.params import PromoteParams
from flows.prepare_data import check_tracking_store
from flows.results import RESULTS

# The deployment's parameter, not the command line's --force (GateFailedError's default).
FORCE_HINT = "to override, run the deployment with its parameter force set to true"
ARTIFACT_KEY = "promotion"


@task(cache_policy=NO_CACHE)
def move_alias(params: PromoteParams) -> dict[str, Any]:
    """``{"message", "markdown"}`` of the promotion, or ``{"refused": reason}`` (nothing moved). A refusal
    is an answer, not a crash: returned rather than raised, so no traceback is logged."""
    from genlib.tracking.errors import GateFailedError, RegistryError
    from genlib.tracking.registry import promote as promote_version

    try:
        done = promote_version(params.name, params.version, params.alias, force=params.force)
    except GateFailedError as err:
        return {"refused": err.with_override(FORCE_HINT)}
    except RegistryError as err:  # no such model, version or alias
        return {"refused": str(err)}
    if done.changed:
        message = (f"{done.name}@{done.alias} -> version {done.version} (was {done.previous or 'unset'})"
                   + (" [forced past a failed gate]" if done.forced else ""))
    else:
        message = f"{done.name}: version {done.version} is already @{done.alias}; nothing changed"
    return {"message": message, "markdown": _markdown(message, done)}


def _markdown(message: str, done: Any) -> str:
    rows = [f"| {g.gate} | {'passed' if g.passed else 'failed'} | {g.detail} |" for g in done.gates]
    return "\n".join([f"# Promotion of {done.name}", "", message, "", "| gate | result | detail |",
                      "| --- | --- | --- |", *rows])


def _no_traceback_for_returned_failure(record: logging.LogRecord) -> bool:
    """Drops what a worker's engine logs after a flow returned a Failed state: it asks for the flow's
    result, gets FailedRun (raised only for a Failed state without an exception) and logs it with a
    traceback as "Engine execution exited with unexpected exception". The refusal is logged once above."""
    return not (record.exc_info and isinstance(record.exc_info[1], FailedRun))


@flow(name="promote", result_serializer=RESULTS)
def promote(params: PromoteParams) -> State:
    """Move ``params.alias`` of ``params.name`` to ``params.version`` if its gates pass (or ``force``)."""
    check_tracking_store()
    outcome = move_alias(params)
    logger = get_run_logger()
    if "refused" in outcome:
        logger.error(outcome["refused"])
        logging.getLogger("prefect.flow_runs").addFilter(_no_traceback_for_returned_failure)
        return Failed(message=outcome["refused"])
    logger.info(outcome["message"])
    create_markdown_artifact(markdown=outcome["markdown"], key=ARTIFACT_KEY, description=outcome["message"])
    return Completed(message=outcome["message"], data=outcome["message"])
