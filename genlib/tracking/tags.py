"""Every MLflow tag key genlib writes, and the kinds of run it starts: the only place these strings live.

Runs of a kind carry the standard tags :func:`genlib.tracking.runs.tracked_run` sets (``KIND``, ``DATASET``,
``DATASET_DIGEST``, ``CONFIG_KEY``, ``DEVICE``, ``PREFECT_FLOW_RUN_ID``, ``HOST``, ``PID``); the others are
set by the run that knows them (``MODEL_URI`` by an evaluation, ``EVAL_RUN_PREFIX + family`` by a report).
"""

from __future__ import annotations

from typing import Literal

# The kinds of run genlib starts; ``pipeline`` is the parent of one pipeline run's other runs, ``sweep`` of
# one sweep's trial runs (PARENT_KINDS).
Kind = Literal["data", "train", "evaluation", "suite", "report", "pipeline", "sweep"]
KINDS: tuple[str, ...] = ("data", "train", "evaluation", "suite", "report", "pipeline", "sweep")
PARENT_KINDS: tuple[str, ...] = ("pipeline", "sweep")

PREFIX = "genlib."
KIND = "genlib.kind"
CONFIG_KEY = "genlib.config_key"
MODEL = "genlib.model"
PROFILE = "genlib.profile"
EVAL_PROFILE = "genlib.eval_profile"
DATASET = "genlib.dataset"
DATASET_DIGEST = "genlib.dataset_digest"
DEVICE = "genlib.device"
PREFECT_FLOW_RUN_ID = "genlib.prefect_flow_run_id"
# Where the run's process lives: a run still RUNNING whose process is gone was interrupted.
HOST = "genlib.host"
PID = "genlib.pid"
MODEL_URI = "genlib.model_uri"
MODEL_ID = "genlib.model_id"
TRAIN_RUN_ID = "genlib.train_run_id"
SUITE_RUN_ID = "genlib.suite_run_id"  # a report's suite-section runs, comma-separated
SUITE_SECTION = "genlib.suite_section"  # a suite run's section (genlib.evaluation.suite)
SUITE_RUN_PREFIX = "genlib.suite_run."  # + section: a report's run of that section
MODELS = "genlib.models"
EVAL_RUN_PREFIX = "genlib.eval_run."
RESUMED_FROM_EPOCH = "genlib.resumed_from_epoch"
# A child run of a train run, for one training stage (an RBM of a pre-training stack).
STAGE = "genlib.stage"
# A train run's totals, as tags (single values would open its metric charts on bar charts).
EPOCHS_RUN = "genlib.epochs_run"
BEST_EPOCH = "genlib.best_epoch"
# The epoch whose weights the logged model holds: the last, or the best one restored by early stopping.
WEIGHTS_EPOCH = "genlib.weights_epoch"
TRAIN_SECONDS = "genlib.train_seconds"
TRACKING_SECONDS = "genlib.tracking_seconds"
SOURCE = "genlib.source"
# A sweep's runs: its Optuna study (on the parent and each trial's run), the trial's number and how it ended
# (complete, pruned, failed), and the trial that won (on the parent).
SWEEP_STUDY = "genlib.sweep.study"
SWEEP_TRIAL = "genlib.sweep.trial"
TRIAL_STATE = "genlib.sweep.trial_state"
SWEEP_BEST_TRIAL = "genlib.sweep.best_trial"
SIZES = "genlib.sizes"

# Registry (model version) tags.
GIT_COMMIT = "genlib.git_commit"
GATES = "genlib.gates"
PROMOTION = "genlib.promotion"
FORCED = "genlib.forced"
EVAL_RUN_ID = "genlib.eval_run_id"
METRIC_PREFIX = "metric."
# A version's readable headline tags (the versions table shows every tag in a narrow column, so short keys):
# its gates' status (``passed``, ``failed: <gate>``) and which epoch's weights it holds.
GATES_STATUS = "gates"
WEIGHTS = "weights"

# MLflow's own keys genlib sets.
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"
MLFLOW_RUN_NOTE = "mlflow.note.content"
# The MLflow 3 UI opens an experiment on its training runs (not the GenAI overview) with this value.
MLFLOW_EXPERIMENT_KIND = "mlflow.experimentKind"
MLFLOW_RUN_TYPE = "mlflow.runType"
MLFLOW_EVALUATION = "evaluation"
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"
DATA_CONTEXT = "mlflow.data.context"
