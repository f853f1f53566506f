"""The ``genlib`` command line. User errors print one line on stderr and exit non-zero."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from genlib.errors import ConfigError, GenlibError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Classic generative models on MNIST-like images.")
logger = logging.getLogger("genlib.cli")

EXIT_USER_ERROR = 2


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    """Print one line on stderr and exit."""
    typer.echo(f"error: {message.splitlines()[0] if message else 'failed'}", err=True)
    raise typer.Exit(code)


def parse_set_options(values: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values are parsed as JSON when they can be (numbers, lists, booleans)."""
    out: dict[str, Any] = {}
    for item in values or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip().replace("-", "_")] = tuple(value) if isinstance(value, list) else value
    return out


def parse_labels(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--labels {text!r}: expected comma-separated integers such as 0,1,2") from None


@app.command("models")
def models_command() -> None:
    """List the registered model names."""
    from genlib.models import get_model_class, list_models

    for name in list_models():
        cls = get_model_class(name)
        caps = [c for c, on in (("reconstructs", cls.reconstructs), ("generates", cls.generates),
                                ("conditional", cls.conditional)) if on]
        typer.echo(f"{name:<8} {cls.__name__:<8} {', '.join(caps)}")


@app.command("datasets")
def datasets_command() -> None:
    """List the named data sets and whether each is available offline here."""
    from genlib.data import list_datasets

    for info in list_datasets():
        state = "available" if info.available_offline else "missing"
        typer.echo(f"{info.name:<14} {state:<10} {info.location}  ({info.description})")


@app.command("train")
def train_command(
    model: str = typer.Argument(..., help="registered model name (see `genlib models`)"),
    dataset: str = typer.Option("digits", "--dataset", help="data set name or path"),
    out: Path = typer.Option(..., "--out", help="output folder for model.pt, metrics.json and PNG grids"),
    profile: str = typer.Option("quick", "--profile", help="default hyper-parameters: quick or full"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="default: the profile's"),
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="default: the profile's"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    patience: Optional[int] = typer.Option(None, "--patience", help="early stopping on validation loss"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder with torchvision-layout data"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="extra config field, key=value (repeatable)"),
) -> None:
    """Train MODEL and write OUT/model.pt, OUT/metrics.json and reconstruction/sample grids."""
    from genlib.data import load_dataset
    from genlib.models import get_config_class
    from genlib.training import TrainConfig, resolve_device, save_checkpoint, train_model

    from genlib.profiles import family_settings

    config_class = get_config_class(model)
    settings = family_settings(profile, model)
    overrides = {**settings.model, **parse_set_options(set_)}
    if latent_dim is not None:
        if "latent_dim" not in config_class.model_fields:
            raise ConfigError(f"--latent-dim does not apply to {model}; its config has no latent_dim field")
        overrides["latent_dim"] = latent_dim
    if lr is not None:
        overrides["lr"] = lr
    train_values = {**settings.train, "seed": seed}
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if value is not None:
            train_values[key] = value
    train_config = _validated(TrainConfig, **train_values)
    torch_device = resolve_device(device)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    data = load_dataset(dataset, root=data_root, seed=seed)
    # Validate the full config before any training or writing.
    from genlib.training import build_config

    build_config(model, data, overrides)

    result = train_model(model, data, overrides, train_config, device=torch_device)
    metrics = {**result.test_metrics, **_final_train_metrics(result.fit.history)}
    metrics.update(epochs_run=result.fit.epochs_run, train_seconds=round(result.fit.seconds, 3))
    # Write into a temporary folder and move into place, so a failure leaves nothing half-written.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".genlib-train-", dir=out.parent))
    try:
        save_checkpoint(staging / "model.pt", result.model, epoch=result.fit.epochs_run,
                        extra={"dataset": data.name, "dataset_digest": data.digest})
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        (staging / "history.json").write_text(json.dumps(result.fit.history, indent=2))
        _write_grids(result.model, data, staging, seed)
        out.mkdir(parents=True, exist_ok=True)
        for f in staging.iterdir():
            shutil.move(str(f), out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    typer.echo(f"trained {model} on {data.name} for {result.fit.epochs_run} epochs in {result.fit.seconds:.1f}s "
               f"on {result.fit.device}")
    for key in ("test_loss", "test_mse", "test_sq_err_per_image"):
        if key in metrics:
            typer.echo(f"  {key} = {metrics[key]:.6g}")
    typer.echo(f"wrote {out}/model.pt and metrics.json")


def _validated(model_cls: type, **values: Any) -> Any:
    from pydantic import ValidationError

    from genlib.models.registry import format_validation_error

    try:
        return model_cls(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err).replace("invalid value: ", "invalid option: ")) from None


def _final_train_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    return {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}


def _write_grids(model: Any, data: Any, folder: Path, seed: int) -> None:
    import torch

    from genlib.images import reconstruction_grid, save_grid

    model.eval()
    with torch.no_grad():
        if model.reconstructs:
            x, y = data.x_test[:32].to(model.device), data.y_test[:32].to(model.device)
            save_grid(reconstruction_grid(x, model.reconstruct(x, y)), folder / "reconstructions.png", nrow=16)
        if model.generates:
            gen = torch.Generator().manual_seed(seed)
            save_grid(model.sample(64, generator=gen), folder / "samples.png", nrow=8)


@app.command("sample")
def sample_command(
    checkpoint: Path = typer.Argument(..., help="a model.pt written by `genlib train`"),
    n: int = typer.Option(64, "--n", min=1, max=10000),
    labels: Optional[str] = typer.Option(None, "--labels", help="comma-separated class labels (conditional models)"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("samples.png"), "--out"),
) -> None:
    """Draw N images from a trained generative model into one PNG grid."""
    import torch

    from genlib.training import load_checkpoint

    if out.suffix.lower() != ".png" or out.is_dir():
        raise ConfigError(f"--out {out}: expected the path of a .png file")
    model = load_checkpoint(checkpoint).model.eval()
    if not model.generates:
        raise ConfigError(f"{checkpoint}: {model.name} does not generate; sampling needs vae, cvae, gan, cgan or rbm")
    label_list = parse_labels(labels)
    label_tensor = None
    if label_list is not None:
        if not model.conditional:
            raise ConfigError(f"--labels: {model.name} is not conditional")
        if len(label_list) not in (1, n) and n % len(label_list):
            raise ConfigError(f"--labels: give 1, {n}, or a divisor of {n} labels (got {len(label_list)})")
        label_tensor = torch.tensor(label_list).repeat(n // len(label_list) + 1)[:n]
    try:
        images = model.sample(n, labels=label_tensor, generator=torch.Generator().manual_seed(seed))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    from genlib.images import save_grid  # torchvision takes seconds to import: not before the checks

    save_grid(images, out, nrow=max(1, int(n**0.5)))
    typer.echo(f"wrote {n} samples to {out}")


# Commands that orchestrate or track (they import prefect/mlflow lazily, inside the commands).
from genlib import cli_ops  # noqa: E402,F401


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


if __name__ == "__main__":
    main()
