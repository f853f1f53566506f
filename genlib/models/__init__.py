"""Model families. Importing this package registers every model name."""

from genlib.models import autoencoders, gan, rbm, vae  # noqa: F401  (imports register the models)
from genlib.models.base import (
    AEOutput,
    GANOutput,
    GenerativeModel,
    LossOutput,
    ModelConfig,
    RBMOutput,
    VAEOutput,
    autocast_context,
)
from genlib.models.registry import (
    config_from_dict,
    get_config_class,
    get_model,
    get_model_class,
    list_models,
    make_config,
    register_model,
)

__all__ = [
    "AEOutput",
    "GANOutput",
    "GenerativeModel",
    "LossOutput",
    "ModelConfig",
    "RBMOutput",
    "VAEOutput",
    "autocast_context",
    "config_from_dict",
    "get_config_class",
    "get_model",
    "get_model_class",
    "list_models",
    "make_config",
    "register_model",
]
