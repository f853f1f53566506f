"""``genlib models`` and ``genlib datasets``: what can be trained, on what."""

from __future__ import annotations

import typer


def models_command() -> None:
    """List the registered model names and what each can do."""
    from genlib.models import get_model_class, list_models

    for name in list_models():
        cls = get_model_class(name)
        caps = [c for c, on in (("reconstructs", cls.reconstructs), ("generates", cls.generates),
                                ("conditional", cls.conditional)) if on]
        typer.echo(f"{name:<8} {cls.__name__:<8} {', '.join(caps)}")


def datasets_command() -> None:
    """List the named data sets and whether each is available offline here."""
    from genlib.data import list_datasets

    for info in list_datasets():
        state = "available" if info.available_offline else "missing"
        typer.echo(f"{info.name:<14} {state:<10} {info.location}  ({info.description})")
