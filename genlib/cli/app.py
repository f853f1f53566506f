"""The ``genlib`` command line: the Typer app, its commands, and ``main`` (one line and exit code 2 per user error).

Each command lives in a module of this package and imports what it needs inside the command, so
``genlib --help`` and the listing commands start without importing torch, prefect or mlflow.
"""

from __future__ import annotations

import logging
import sys

import typer

from genlib.cli import listing, pipeline, registry, train, ui
from genlib.cli.common import EXIT_USER_ERROR
from genlib.errors import GenlibError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Classic generative models on MNIST-like images.")
app.command("models")(listing.models_command)
app.command("datasets")(listing.datasets_command)
app.command("train")(train.train_command)
app.command("sample")(train.sample_command)
app.command("pipeline")(pipeline.pipeline_command)
app.command("promote")(registry.promote_command)
app.command("ui")(ui.ui_command)
app.command("report")(registry.report_command)
registry_app = typer.Typer(no_args_is_help=True, help="The MLflow model registry (genlib-* models).")
registry_app.command("list")(registry.registry_list_command)
app.add_typer(registry_app, name="registry")


def _click_exceptions() -> tuple[type, type, type, type]:
    """(ClickException, UsageError, NoArgsIsHelpError, Abort) of the click that typer runs on.

    Recent typer versions vendor click as ``typer._click``; older ones use the click package.
    """
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
    except ImportError:  # typer without a vendored click
        from click.exceptions import ClickException, NoArgsIsHelpError, UsageError
    return ClickException, UsageError, NoArgsIsHelpError, typer.Abort


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app and turn user errors into one line and exit code 2.

    Usage errors (a bad option value, a missing option, an unknown command) are user errors too:
    one line rather than click's usage block, so every mistake reads the same.
    """
    click_exception, usage_error, no_args_is_help, abort = _click_exceptions()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(args=argv, standalone_mode=False)
    except GenlibError as err:
        typer.echo(f"error: {str(err).splitlines()[0]}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except no_args_is_help as err:
        message = err.format_message()  # rich typer has already printed the help; plain click has not
        if message.strip():
            typer.echo(message, err=True)
        sys.exit(EXIT_USER_ERROR)
    except usage_error as err:
        first = (err.format_message().strip().splitlines() or ["invalid usage"])[0]
        hint = f" (see '{err.ctx.command_path} --help')" if getattr(err, "ctx", None) is not None else ""
        typer.echo(f"error: {first}{hint}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click_exception as err:
        typer.echo(f"error: {(err.format_message().strip().splitlines() or ['failed'])[0]}", err=True)
        sys.exit(err.exit_code)
    except abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    # Non-standalone mode returns the exit code of typer.Exit / --help, or the command's return value.
    sys.exit(code if isinstance(code, int) else 0)
