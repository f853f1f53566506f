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
    model_config_union,
    register_model,
)

# Built after every family module registered itself (the imports above).
AnyModelConfig = model_config_union()

__all__ = [
    "AEOutput",
    "AnyModelConfig",
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
    "model_config_union",
    "register_model",
]
