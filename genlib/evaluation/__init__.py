"""Evaluation: plain functions over trained models and data that return tables (pandas DataFrames),
figures (matplotlib Figures) and flat metrics. Metric and table names are listed in docs/metrics.md."""

from genlib.evaluation.ais import (
    AISResult,
    ais_betas,
    ais_log_partition,
    base_rate_visible_bias,
    raise_log_likelihood,
    rbm_log_likelihood,
)
from genlib.evaluation.augmentation import augmentation_experiment
from genlib.evaluation.classifier import (
    ClassifierConfig,
    FeatureClassifier,
    accuracy,
    get_feature_classifier,
    train_classifier,
)
from genlib.evaluation.finetune import FINETUNE_METHODS, EncoderClassifier, finetune_experiment, label_subsets
from genlib.evaluation.generative import (
    REAL_FLOOR_NAME,
    feature_statistics,
    frechet_distance,
    frechet_distance_features,
    inception_score,
    precision_recall,
)
from genlib.evaluation.likelihood import iwae_log_likelihood, vae_elbo
from genlib.evaluation.model_eval import evaluate_model
from genlib.evaluation.pca import pca_reconstruct, pca_sq_err_per_image, pca_vs_autoencoders, probe_accuracy
from genlib.evaluation.profiles import PROFILES, EvalProfile, eval_profile_names
from genlib.evaluation.reconstruction import reconstruction_errors, reconstruction_tables
from genlib.evaluation.report import EvaluationReport, combine_reports
from genlib.evaluation.suite import evaluate_suite

__all__ = [
    "AISResult",
    "ClassifierConfig",
    "EncoderClassifier",
    "EvalProfile",
    "EvaluationReport",
    "FINETUNE_METHODS",
    "FeatureClassifier",
    "PROFILES",
    "REAL_FLOOR_NAME",
    "accuracy",
    "ais_betas",
    "ais_log_partition",
    "augmentation_experiment",
    "base_rate_visible_bias",
    "combine_reports",
    "eval_profile_names",
    "evaluate_model",
    "evaluate_suite",
    "feature_statistics",
    "finetune_experiment",
    "frechet_distance",
    "frechet_distance_features",
    "get_feature_classifier",
    "inception_score",
    "iwae_log_likelihood",
    "label_subsets",
    "pca_reconstruct",
    "pca_sq_err_per_image",
    "pca_vs_autoencoders",
    "precision_recall",
    "probe_accuracy",
    "raise_log_likelihood",
    "rbm_log_likelihood",
    "reconstruction_errors",
    "reconstruction_tables",
    "train_classifier",
    "vae_elbo",
]
