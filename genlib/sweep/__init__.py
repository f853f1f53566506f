"""Hyper-parameter sweeps: typed search spaces per family (:mod:`genlib.sweep.spaces`, no optuna), the Optuna
study and its storage (:mod:`genlib.sweep.study`) and the pruning callback a trial's training reports through
(:mod:`genlib.sweep.pruning`). The flow that runs the trials is ``flows/sweep.py``; MLflow's side is
``genlib.tracking.sweep``. Imports nothing heavy at package level (``genlib sweep --help`` stays fast)."""
