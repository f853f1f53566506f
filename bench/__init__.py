"""Benchmarks that measure genlib (run as modules, e.g. ``python -m bench.throughput --quick``).

Most import neither prefect nor mlflow, so they run on a machine that has only torch, torchvision, numpy and
scikit-learn besides genlib itself: ``throughput``, ``quality``, ``paper``, ``vae_step``, ``rbm_sparse_products``
and ``gpu``. ``peers`` needs the peer libraries too (``uv sync --group peers``). Four need genlib's full install,
because they measure the tracking and orchestration layers:

- ``cli_latency`` imports mlflow (a scratch tracking store for the commands it times);
- ``load`` imports mlflow and starts MLflow and Prefect servers;
- ``soak`` imports prefect and mlflow, as clients of the stack it starts;
- ``make_run`` runs ``genlib pipeline`` in a subprocess.

A benchmark that reports into docs/benchmarks.md rewrites only its own marked section there
(``bench.common.update_benchmarks_doc``); ``paper`` and ``soak`` write JSON under ``bench/results/``.
"""
