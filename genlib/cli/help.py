"""Help pages that read as plain words: no ``<bool>`` after flags, no ``{name}`` in the usage line.

Typer shows a type label such as ``<str>`` beside every parameter and wraps required arguments in
braces; genlib's commands name their values instead (``--out DIR``, ``MODEL``) and flags show none.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup

_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "file": "FILE", "directory": "DIR"}


def _metavar(param: Any, ctx: Any) -> str:
    """What a value option without its own metavar shows: its choices, else a word for its type."""
    label = param.display_type(ctx).strip("<>")
    return label if "|" in label else _WORDS.get(label, label.upper())


def _tidy(params: list[Any], ctx: Any) -> list[Any]:
    for param in params:
        if isinstance(param, TyperArgument):
            param.display_type_rich = lambda ctx=None: None  # the argument's name says what it is
        elif param.metavar is None:
            param.metavar = "" if param.is_flag or param.count else _metavar(param, ctx)
    return params


class Command(TyperCommand):
    """A typer command with the tidy help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy(super().get_params(ctx), ctx)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class Group(TyperGroup):
    """A typer group with the tidy help, for itself and every command under it."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy(super().get_params(ctx), ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        # A sub-app built with typer's own classes gets the same help (the classes add no state).
        if type(command) is TyperCommand:
            command.__class__ = Command
        elif type(command) is TyperGroup:
            command.__class__ = Group
        return command
