"""``genlib models`` and ``genlib datasets``: what can be trained, on what. Neither imports torch."""

from __future__ import annotations

import typer


def models_command() -> None:
    """List the model families and what each can do."""
    from genlib.models.catalog import builtin_names, model_info

    for name in builtin_names():
        info = model_info(name)
        typer.echo(f"{name:<8} {info.class_name:<8} {', '.join(info.capabilities)}")


def datasets_command() -> None:
    """List the named data sets and whether each is available offline here."""
    from genlib.data.catalog import list_datasets

    infos = list_datasets()
    width = max((len(info.name) for info in infos), default=0)
    for info in infos:
        state = "available" if info.available_offline else "missing"
        typer.echo(f"{info.name:<{width}} {state:<10} {info.location}  ({info.description})")
