"""``genlib train`` and ``genlib sample``: one model trained into a folder, and images drawn from its checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from genlib.cli.common import parse_labels
from genlib.errors import ConfigError


def train_command(
    model: str = typer.Argument(..., metavar="MODEL", help="model family to train (see `genlib models`)"),
    dataset: str = typer.Option("mnist", "--dataset", metavar="NAME|PATH",
                                 help="named data set (see `genlib datasets`) or a folder/file of images"),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="output folder for model.pt, metrics.json and PNG grids, "
                             "written only once training has finished"),
    profile: str = typer.Option("quick", "--profile", metavar="NAME", help="settings to start from: quick or full"),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="N", help="training epochs (default: the profile's)"),
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim", metavar="N",
                                            help="size of the code, for models that have one"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="N",
                                            help="examples per training step (default: the profile's)"),
    lr: Optional[float] = typer.Option(None, "--lr", metavar="RATE", help="learning rate (default: the profile's)"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="seed of the data split, the initial weights and the grids"),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto (CUDA when present), cpu or cuda"),
    patience: Optional[int] = typer.Option(None, "--patience", metavar="EPOCHS",
                                          help="stop after this many epochs without a better validation loss"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="DIR",
                                            help="folder with torchvision-layout data (default $GENLIB_DATA_ROOT)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="FIELD=VALUE", help="any model., train. or evaluation. setting, e.g. hidden_dims=[64] or "
                                                 "train.lr_schedule=cosine (repeatable)"),
) -> None:
    """Train MODEL and write OUT/model.pt, OUT/metrics.json and reconstruction/sample grids.

    Every train.checkpoint_every epochs (by default as often as in `genlib pipeline`) a
    checkpoint goes to the hidden folder .OUT.partial beside OUT; OUT itself is written only at the
    end. The same command after an interruption resumes from that checkpoint and says from which
    epoch; other settings or data with the same --out start again from epoch 1 (and say so). A
    finished run removes the folder.
    """
    from genlib.data import load_dataset
    from genlib.evaluation.model_eval import test_metrics
    from genlib.spec import data_shape, parse_set, resolve_spec
    from genlib.training import resolve_device, save_checkpoint, train_model
    from genlib.training.checkpoint import claim_resume_folder

    overrides = parse_set(set_, family=model, values={
        "epochs": epochs, "latent_dim": latent_dim, "batch_size": batch_size, "lr": lr, "patience": patience,
        "train.seed": seed})
    resolve_spec(profile, model, overrides)  # every value checked before the data is loaded
    torch_device = resolve_device(device)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    data = load_dataset(dataset, root=data_root, seed=seed)
    spec = resolve_spec(profile, model, overrides, data_shape=data_shape(data))

    point = claim_resume_folder(partial_folder(out), spec.cache_key(data.digest))
    if point.discarded:
        typer.echo(f"not resuming: {point.folder} held a training with other settings or data; starting from epoch 1")
    if point.resume_from is not None:
        typer.echo(f"resumed {model} from epoch {point.epoch} (checkpoint {point.checkpoint})")
    result = train_model(spec.model, data, spec.train, device=torch_device, checkpoint_dir=point.folder,
                         resume_from=point.resume_from)
    metrics = {**test_metrics(result.model, data, device=torch_device, batch_size=spec.train.eval_batch_size),
               **_final_train_metrics(result.fit.history)}
    metrics.update(epochs_run=result.fit.epochs_run, train_seconds=round(result.fit.seconds, 3))
    # Write into a temporary folder and move into place, so a failure leaves nothing half-written.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".genlib-train-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # it may become OUT: the permissions of a folder made with mkdir
    try:
        save_checkpoint(staging / "model.pt", result.model, epoch=result.fit.epochs_run,
                        extra={"dataset": data.name, "dataset_digest": data.digest})
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        (staging / "history.json").write_text(json.dumps(result.fit.history, indent=2))
        _write_grids(result.model, data, staging, seed)
        if not out.exists():
            staging.rename(out)  # one rename: a kill leaves either no OUT or all of it
        else:
            for f in staging.iterdir():
                shutil.move(str(f), out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(point.folder, ignore_errors=True)  # OUT is complete: nothing left to resume
    typer.echo(f"trained {model} on {data.name} for {result.fit.epochs_run} epochs in {result.fit.seconds:.1f}s "
               f"on {result.fit.device}")
    for key in ("test_loss", "test_mse", "test_sq_err_per_image"):
        if key in metrics:
            typer.echo(f"  {key} = {metrics[key]:.6g}")
    typer.echo(f"wrote {out}/model.pt and metrics.json")


def partial_folder(out: Path) -> Path:
    """Where ``genlib train --out OUT`` checkpoints until it finishes: ``.OUT.partial`` beside OUT."""
    out = out.resolve()
    return out.parent / f".{out.name}.partial"


def _final_train_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    return {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}


def _write_grids(model: Any, data: Any, folder: Path, seed: int) -> None:
    from genlib.images import save_model_figures

    save_model_figures(model, folder, data.x_test, data.y_test, seed=seed)


def sample_command(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="a model.pt written by `genlib train`"),
    n: int = typer.Option(64, "--n", min=1, max=10000, metavar="N", help="how many images"),
    labels: Optional[str] = typer.Option(None, "--labels", metavar="0,1,...",
                                        help="class labels, cycled over the images (conditional models)"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="seed of the noise the images are drawn from"),
    out: Path = typer.Option(Path("samples.png"), "--out", metavar="FILE.png", help="where to write the grid"),
) -> None:
    """Draw N images from a trained generative model into one PNG grid."""
    import torch

    from genlib.training import load_checkpoint

    if out.suffix.lower() != ".png" or out.is_dir():
        raise ConfigError(f"--out {out}: expected the path of a .png file")
    model = load_checkpoint(checkpoint).model.eval()
    if not model.generates:
        from genlib.models.catalog import BUILTIN

        samplers = ", ".join(sorted(n for n, info in BUILTIN.items() if info.generates))
        raise ConfigError(f"{checkpoint}: {model.name} does not generate; sampling needs one of {samplers}")
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
