"""``genlib sweep``: an Optuna study of one family, its trials on this machine's pool or the train deployment's
workers, the best registered through the gates; ``genlib sweep --list`` prints the search spaces.

Everything is validated before anything is written (no store, study or run): a bad field or range, N or
K <= 0, an unknown ``--resume`` study are one ``error:`` line and exit 2.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Optional

import typer

from genlib.cli.common import json_safe, validated
from genlib.errors import ConfigError


def sweep_command(
    family: Optional[str] = typer.Argument(None, metavar="FAMILY", help="the family to tune (see --list)"),
    dataset: str = typer.Option("mnist", "--dataset", metavar="NAME|PATH", help="named data set or a path"),
    trials: int = typer.Option(16, "--trials", min=1, metavar="N", help="trials to run now (a continued study "
                               "adds N more)"),
    parallel: int = typer.Option(1, "--parallel", min=1, metavar="K", help="trials at once (local worker "
                                 "processes, or deployment runs)"),
    metric: Optional[str] = typer.Option(None, "--metric", metavar="M", help="objective: a val_* training metric "
                                         "or an evaluation metric (default: the family's, see --list)"),
    profile: str = typer.Option("quick", "--profile", metavar="P", help="presets the trials start from"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="FIELD=VALUE", help="pin a model., train. or "
                                             "evaluation. field in every trial (repeatable)"),
    space: Optional[list[str]] = typer.Option(None, "--space", metavar="FIELD=LOW:HIGH[:log]|A,B,C",
                                              help="search this field over a range or choices (repeatable)"),
    study: Optional[str] = typer.Option(None, "--study", metavar="NAME", help="study name (default "
                                        "genlib-FAMILY-DATASET-PROFILE); the same name continues it"),
    resume: bool = typer.Option(False, "--resume", help="only continue an existing study"),
    n_train: Optional[int] = typer.Option(None, "--n-train", min=1, metavar="N", help="seeded training subset"),
    n_val: Optional[int] = typer.Option(None, "--n-val", min=1, metavar="N", help="seeded validation subset"),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu or cuda"),
    dispatch: str = typer.Option("auto", "--dispatch", metavar="auto|local|deployment",
                                 help="trials here, or as runs of the train deployment (auto: there when a worker "
                                      "of its pool is online)"),
    list_spaces: bool = typer.Option(False, "--list", help="print every family's search space and exit"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Tune FAMILY with an Optuna study (TPE, median pruning); register the best trial through the gates."""
    if list_spaces:
        from genlib.sweep.spaces import describe_spaces

        typer.echo(describe_spaces([family] if family else None))
        return
    if family is None:
        raise ConfigError("missing FAMILY (e.g. genlib sweep ae --dataset digits); --list shows the spaces")
    t_start = time.perf_counter()
    # Validated first (none of this imports prefect): bad input leaves no trace, not even a Prefect home.
    from flows.params import DataParams
    from flows.sweep_params import SweepParams
    from genlib.models import get_model_class
    from genlib.spec import parse_set
    from genlib.sweep.study import require_study, resolve_storage

    get_model_class(family)  # an unknown family: one line listing the valid names
    overrides = parse_set(set_, family)
    params = validated(SweepParams, family=family, data=DataParams(dataset=dataset, n_train=n_train, n_val=n_val),
                       profile=profile, trials=trials, parallel=parallel, metric=metric, overrides=overrides,
                       space=list(space or []), study=study, resume=resume, device=device, dispatch=dispatch)
    params = params.model_copy(update={"plan": params.resolve_plan()})
    if resume:
        require_study(params.study_name, resolve_storage())  # reads only: an absent SQLite file stays absent
    from genlib.ops import prefect_server as ps

    home = ps.use_project_home()  # before prefect reads its settings
    from prefect.settings import PREFECT_API_URL

    from genlib.cli.prefect_run import console_logging, reported_before_stop, using_api
    from genlib.ops.processes import terminate_as_interrupt
    from genlib.tracking import configure_tracking

    api = PREFECT_API_URL.value() or ps.running_server(home)
    if params.dispatch == "deployment" and not api:
        raise ConfigError("--dispatch deployment needs a Prefect server with the train deployment: "
                          "set PREFECT_API_URL or start the stack (see docs/deploy.md)")
    configure_tracking()
    with contextlib.ExitStack() as stack:
        stack.enter_context(terminate_as_interrupt())
        server = None
        if not api:  # the concurrency limit needs a Prefect API: a temporary server, stopped on every exit
            server = stack.enter_context(ps.LocalServer(home, services=False, log_name="temporary-server.log"))
            api = server.api_url
        stack.enter_context(using_api(api, temporary=server is not None))
        console_logging()
        from flows.common import load_data
        from flows.sweep import sweep

        load_data(params.data)
        if server is not None:
            server.wait_ready()
        with reported_before_stop(api if server is not None else None) as recorded:
            state = sweep(params, return_state=True)
            recorded.append(str(state.state_details.flow_run_id))
            result = state.result()
    total = time.perf_counter() - t_start
    if as_json:
        typer.echo(json.dumps({**json_safe(result.model_dump(mode="json")), "wall_seconds": total}, indent=2))
    else:
        typer.echo(summary(result, total))
    if result.best_number is None:
        from genlib.errors import GenlibError

        raise GenlibError(f"no trial of study {result.study} finished; nothing registered (see the trials above)")


def summary(result: object, wall: float) -> str:
    """The sweep's closing lines: one per trial of this command, then the best, the registration and the runs."""
    r = result
    lines = [f"study {r.study} ({r.storage}): {r.total_trials} trials; this command ran {len(r.trials)}"]
    for t in r.trials:
        value = f"{r.metric} = {t.value:.5g}" if t.value is not None else (t.error or "")
        lines.append(f"  trial {t.number:>3}  {t.state:<8}  {t.epochs_run:>3}/{t.epochs_planned:<3} epochs  "
                     f"{'(preset) ' if t.preset else ''}{value}")
    if r.best_number is not None:
        vs = f" (preset {r.preset_value:.5g})" if r.preset_value is not None else ""
        lines.append(f"best: trial {r.best_number}, {r.metric} = {r.best_value:.5g}{vs}; pruning saved "
                     f"{r.epochs_saved} epochs")
    reg = r.registration
    lines.append(f"registered {reg.name} version {reg.version}: {'champion' if reg.promoted else 'not champion'} "
                 f"({reg.reason})" if reg else f"nothing registered: {r.error}")
    lines.append(f"MLflow sweep run {r.run_id}; {wall:.1f}s")
    return "\n".join(lines)
