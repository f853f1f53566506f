"""The ``genlib`` command line: the Typer app, its commands, and ``main`` (one line and exit code 2 per user error).

Each command lives in a module of this package and imports what it needs inside the command, so
``genlib --help`` and the listing commands start without importing torch, prefect or mlflow.
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys

import typer

from genlib.cli import listing, pipeline, registry, stack, sweep, train, ui
from genlib.cli.common import EXIT_USER_ERROR
from genlib.cli.help import Command, Group
from genlib.errors import GenlibError
from genlib.ops.processes import Terminated

_HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True, context_settings=_HELP,
                  help="Classic generative models on MNIST-like images.")
for _name, _function in (("models", listing.models_command), ("datasets", listing.datasets_command),
                         ("train", train.train_command), ("sample", train.sample_command),
                         ("pipeline", pipeline.pipeline_command), ("promote", registry.promote_command),
                         ("ui", ui.ui_command), ("report", registry.report_command),
                         ("sweep", sweep.sweep_command)):
    app.command(_name, cls=Command)(_function)
registry_app = typer.Typer(cls=Group, no_args_is_help=True, context_settings=_HELP,
                           help="The MLflow model registry (genlib-* models).")
registry_app.command("list", cls=Command)(registry.registry_list_command)
app.add_typer(registry_app, name="registry")
app.add_typer(stack.app, name="stack")


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
    if argv is None:  # the console script: this process ends with the command
        # Registered first, so it runs after every other exit handler (they run last-in first-out): the
        # objects torch, prefect and mlflow leave are then not garbage-collected one by one as the
        # interpreter shuts down, which took seconds after a pipeline; the OS frees the memory at once.
        atexit.register(gc.freeze)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(args=argv, prog_name="genlib", standalone_mode=False)
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
    except Terminated:
        typer.echo("terminated", err=True)
        sys.exit(143)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    # Non-standalone mode returns the exit code of typer.Exit / --help, or the command's return value.
    sys.exit(code if isinstance(code, int) else 0)
