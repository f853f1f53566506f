"""genlib against the libraries a user would pick instead, side by side on the same data (issue 14).

Run ``python -m bench.peers [--quick] [--markdown docs/benchmarks.md] [--json PATH]`` after
``uv sync --group peers`` (pythae 0.1.2 and learnergy 2.0.2; scikit-learn is a main dependency).

* VAE 784-200-200-50, batch 100, Adam: genlib against pythae 0.1.2.
* RBM 784-500, batch 100: CD-1 against learnergy 2.0.2, PCD-1 against scikit-learn's BernoulliRBM.

Repeats are interleaved (the order rotates), every library runs on one thread, times are medians with
their ranges and speed-ups are paired per repeat. Quality is scored for every library by genlib's own
estimators on the same test images, the peers' weights mapped into genlib models. The settings that
could not be matched are listed in the report.

Modules: ``common`` (data, fits, interleaving, spreads), ``vae`` and ``rbm`` (the sides, weight
mappings, scores), ``run`` (one comparison), ``render`` (markdown), ``cli``.
"""

from bench.peers.cli import PEERS_BEGIN, PEERS_END, main

__all__ = ["PEERS_BEGIN", "PEERS_END", "main"]
