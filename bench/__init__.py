"""Benchmarks that measure genlib (run as modules, e.g. ``python -m bench.throughput --quick``).

Nothing here imports prefect or mlflow: the benchmarks run on machines that have only torch,
torchvision, numpy and scikit-learn besides genlib itself.
"""
