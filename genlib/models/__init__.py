"""Model families. ``genlib.models.catalog`` says what each built-in family can do without importing torch;
every name below imports the family modules on first use (importing a family registers it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

    AnyModelConfig: Any

_FROM_BASE = ("AEOutput", "GANOutput", "GenerativeModel", "LossOutput", "ModelConfig", "RBMOutput", "VAEOutput",
              "autocast_context")
_FROM_REGISTRY = ("config_from_dict", "get_config_class", "get_model", "get_model_class", "list_models",
                  "make_config", "model_config_union", "register_model")

__all__ = sorted(["AnyModelConfig", *_FROM_BASE, *_FROM_REGISTRY])


def __getattr__(name: str) -> Any:
    # Lazy so that the catalog (and the CLI's listing commands) can be read without importing torch.
    if name not in __all__:
        raise AttributeError(f"module 'genlib.models' has no attribute {name!r}")
    from genlib.models import base, registry

    registry.list_models()  # imports, and so registers, every built-in family
    exported = {n: getattr(base, n) for n in _FROM_BASE} | {n: getattr(registry, n) for n in _FROM_REGISTRY}
    # Built once, after every family registered itself: one union object for every pydantic model using it.
    exported["AnyModelConfig"] = registry.model_config_union()
    globals().update(exported)
    return exported[name]
