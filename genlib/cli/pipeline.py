"""``genlib pipeline``: the Prefect pipeline run in-process (training maybe on deployment workers), then its summary.

prefect, mlflow and the flows are imported inside the command, after the options are validated.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Optional

import typer

from genlib.cli.common import json_safe, validated
from genlib.cli.prefect_run import console_logging, reported_before_stop, using_api
from genlib.errors import ConfigError, GenlibError
from genlib.ops.processes import terminate_as_interrupt


def pipeline_command(
    dataset: str = typer.Option("mnist", "--dataset", metavar="NAME|PATH",
                                 help="named data set (see `genlib datasets`) or a folder/file of images"),
    models: Optional[str] = typer.Option(None, "--models", metavar="ae,vae,...",
                                        help="comma-separated families (default: all, see `genlib models`)"),
    profile: str = typer.Option("quick", "--profile", metavar="NAME", help="training settings: quick or full"),
    eval_profile: Optional[str] = typer.Option(None, "--eval-profile", metavar="NAME",
                                              help="evaluation settings (default: those of --profile)"),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto ($GENLIB_DEVICE when set, else CUDA when present, else the CPU), cpu or cuda"),
    dispatch: str = typer.Option("auto", "--dispatch", metavar="auto|local|deployment",
                                  help="where training runs: here, or on the train deployment's workers (auto: "
                                       "there when it exists)"),
    suite: bool = typer.Option(True, "--suite/--no-suite", help="run the suite-level evaluation"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, metavar="N",
                                          help="jobs (families, suite sections) at once: this process and N-1 worker "
                                               "processes (default: one per CPU core on the CPU, 1 on a GPU); 1 runs "
                                               "all in this process"),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="N",
                                         help="train every family this many epochs instead of the profile's (e.g. "
                                              "a CPU trial run of --profile full)"),
    n_train: Optional[int] = typer.Option(None, "--n-train", min=1, metavar="N",
                                          help="train on a seeded subset of this many training images (default: all)"),
    n_val: Optional[int] = typer.Option(None, "--n-val", min=1, metavar="N",
                                        help="validate (loss curves, early stopping) on a seeded subset of this many "
                                             "validation images (default: all); the test set stays whole"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="FIELD=VALUE",
                                             help="a model., train. or evaluation. setting, for every family whose "
                                                  "config has it, e.g. latent_dim=8 or train.batch_size=128 "
                                                  "(repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON instead of a table"),
) -> None:
    """Prepare data, then train, evaluate and register each family, then the suite; print a summary."""
    from genlib.ops import prefect_server as ps

    t_start = time.perf_counter()
    home = ps.use_project_home()  # before prefect reads its settings: the run history stays in the project
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value() or ps.running_server(home)
    if dispatch == "deployment" and not api:
        raise ConfigError("--dispatch deployment needs a Prefect server with the train deployment: "
                          "set PREFECT_API_URL or start the stack (see docs/deploy.md)")
    with contextlib.ExitStack() as stack:
        stack.enter_context(terminate_as_interrupt())  # SIGTERM stops the temporary server too
        server = None
        if not api:  # a temporary server, starting while the options are checked and the data loads; stopped
            # on every exit (a bad option stops it at once: it holds no run yet)
            server = stack.enter_context(ps.LocalServer(home, services=False, log_name="temporary-server.log"))
            api = server.api_url
        params = _checked_params(dataset, models, profile, eval_profile, device, dispatch, suite, workers, epochs,
                                 n_train, n_val, set_)
        from genlib.tracking import configure_tracking, store_identity

        target = configure_tracking()  # unreachable server: one line naming the URI, no run started
        stack.enter_context(using_api(api, temporary=server is not None))
        console_logging()
        from flows.common import load_data
        from flows.pipeline import PipelineFailedError, pipeline

        store_identity()  # opens (and on first use creates) the tracking store while the server starts
        data = load_data(params.data)  # fills the per-process memo; on a new machine it converts and caches MNIST
        if models:  # asked for by name: a conditional family on unlabelled data is an error, not a skip
            _, skipped = params.without_label_needing(data)
            if skipped:
                raise ConfigError(f"--models {','.join(skipped)}: conditional models need class labels and "
                                  f"{data.name} has none; leave them out")
        if server is not None:
            server.wait_ready()
        t_ready = time.perf_counter()
        failure: str | None = None
        # What the run reported reaches the temporary server's database before the server stops.
        with reported_before_stop(api if server is not None else None) as recorded:
            state = pipeline(params, return_state=True)
            recorded.append(str(state.state_details.flow_run_id))
            try:
                result = state.result()
            except PipelineFailedError as err:
                if err.result is None:
                    raise
                result, failure = err.result, str(err)
    total = time.perf_counter() - t_start
    if as_json:
        typer.echo(json.dumps({**json_safe(result.model_dump(mode="json")), "wall_seconds": total}, indent=2))
    else:
        from genlib.cli.summary import pipeline_summary

        prefect_line = (f"Prefect: this run's history is in {home}; `genlib ui` shows it" if server is not None
                        else f"Prefect UI: {api.removesuffix('/api')}")
        typer.echo(pipeline_summary(result, total, t_ready - t_start, target, prefect_line))
    if failure:
        raise GenlibError(failure)


def _checked_params(dataset: str, models: Optional[str], profile: str, eval_profile: Optional[str], device: str,
                    dispatch: str, suite: bool, workers: Optional[int], epochs: Optional[int], n_train: Optional[int],
                    n_val: Optional[int], set_: Optional[list[str]]) -> Any:
    """The options as PipelineParams with their ExecutionPlan, every value checked (ConfigError: one line)."""
    from flows.params import DataParams, PipelineParams

    from genlib.models import get_config_class, list_models
    from genlib.spec import parse_set

    family_list = [m.strip() for m in models.split(",") if m.strip()] if models else list_models()
    overrides = parse_set(set_, values={"train.epochs": epochs})  # the one --set parser; values checked below
    per_family = {f: {k: v for k, v in overrides.model.items() if k in get_config_class(f).model_fields}
                  for f in family_list}
    homeless = [k for k in overrides.model if not any(k in m for m in per_family.values())]
    if homeless:
        raise ConfigError(f"--set {homeless[0]}: none of {', '.join(family_list)} has that field")
    params = validated(PipelineParams, data=DataParams(dataset=dataset, n_train=n_train, n_val=n_val),
                       models=family_list, profile=profile, eval_profile=eval_profile, device=device,
                       dispatch=dispatch, suite=suite, workers=workers,
                       model_overrides={f: m for f, m in per_family.items() if m}, train_overrides=overrides.train,
                       eval_overrides=overrides.evaluation)
    # The one place a `genlib pipeline` run's device, workers and dispatch are decided (the flow settles only
    # dispatch "auto", which needs the Prefect API). "cuda" without one: a one-line error before the data prep.
    params = params.model_copy(update={"plan": params.resolve_plan()})
    if params.plan.device == "cpu" and params.profile == "full" and params.dispatch != "deployment":
        typer.echo("note: profile full is paper scale, meant for a GPU worker; on a small CPU machine it takes many "
                   "hours (per-epoch times in docs/benchmarks.md). The summary prints how long each part took.",
                   err=True)
    return params
