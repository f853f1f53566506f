"""``python -m bench.throughput``."""

from bench.throughput.cli import main

main()
