"""``python -m genlib.cli``: the same as the ``genlib`` console script."""

from genlib.cli.app import main

main()
