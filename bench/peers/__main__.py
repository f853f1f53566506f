"""``python -m bench.peers``."""

from bench.peers.cli import main

main()
