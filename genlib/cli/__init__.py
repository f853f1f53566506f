"""The ``genlib`` command line (console script ``genlib = "genlib.cli:main"``).

Layout: ``app`` (the Typer app and ``main``), one module per group of commands (``listing``, ``train``,
``pipeline``, ``registry``, ``ui``), ``summary`` (what the operations commands print) and ``common``.
"""

from genlib.cli.app import app, main

__all__ = ["app", "main"]
