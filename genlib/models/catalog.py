"""What each built-in family can do, declared once and readable without importing torch.

The model classes take these values at registration (``register_model`` copies them onto the class),
so ``genlib models``, the gates and the CLI's tables read the same answer as the code that trains
and evaluates, without paying for torch. A model registered from outside genlib declares its
capabilities on its class; :func:`model_info` reads them from there.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Likelihood = Literal["variational", "energy"]

# The class attributes a catalog entry sets on its model class.
CLASS_FIELDS = ("reconstructs", "generates", "conditional", "uses_autograd", "likelihood", "primary_metric",
                "primary_metric_lower_is_better")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One family: where its class lives and what it can do.

    ``reconstructs``: has encode/decode/reconstruct; ``generates``: has ``sample``; ``conditional``:
    takes class labels; ``uses_autograd``: False when the step updates weights itself (the RBM);
    ``likelihood``: None, ``"variational"`` (ELBO and importance-weighted bounds) or ``"energy"``
    (an unnormalised model scored by pseudo-likelihood and AIS); ``primary_metric``: the metric
    that ranks versions of the family, lower better unless ``primary_metric_lower_is_better`` is False.
    """

    name: str
    class_name: str
    module: str
    reconstructs: bool = False
    generates: bool = False
    conditional: bool = False
    uses_autograd: bool = True
    likelihood: Likelihood | None = None
    primary_metric: str = "test_loss"
    primary_metric_lower_is_better: bool = True

    @property
    def capabilities(self) -> list[str]:
        """The capability names that hold, e.g. ``["reconstructs", "generates", "likelihood=variational"]``."""
        caps = [c for c in ("reconstructs", "generates", "conditional") if getattr(self, c)]
        return caps + ([f"likelihood={self.likelihood}"] if self.likelihood else [])

    def class_values(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in CLASS_FIELDS}


_AE = "genlib.models.autoencoders"
_VAE = "genlib.models.vae"
_GAN = "genlib.models.gan"

BUILTIN: dict[str, ModelInfo] = {info.name: info for info in (
    ModelInfo("ae", "AE", _AE, reconstructs=True, primary_metric="test_sq_err_per_image"),
    ModelInfo("conv-ae", "ConvAE", _AE, reconstructs=True, primary_metric="test_sq_err_per_image"),
    ModelInfo("dae", "DAE", _AE, reconstructs=True, primary_metric="test_sq_err_per_image"),
    ModelInfo("vae", "VAE", _VAE, reconstructs=True, generates=True, likelihood="variational"),
    ModelInfo("cvae", "CVAE", _VAE, reconstructs=True, generates=True, conditional=True, likelihood="variational"),
    ModelInfo("gan", "GAN", _GAN, generates=True, primary_metric="fid"),
    ModelInfo("cgan", "CGAN", _GAN, generates=True, conditional=True, primary_metric="fid"),
    ModelInfo("rbm", "RBM", "genlib.models.rbm", reconstructs=True, generates=True, uses_autograd=False,
              likelihood="energy", primary_metric="test_pseudo_log_likelihood", primary_metric_lower_is_better=False),
)}


def builtin_names() -> list[str]:
    """The built-in family names, sorted (``genlib.models.list_models()`` adds any registered elsewhere)."""
    return sorted(BUILTIN)


def model_info(name: str) -> ModelInfo:
    """The catalog entry of ``name``; for a model registered outside genlib, read from its class.

    Raises UnknownNameError (from the registry) for a name nobody registered.
    """
    info = BUILTIN.get(name)
    if info is not None:
        return info
    from genlib.models import get_model_class  # imports torch: only for models genlib does not ship

    cls = get_model_class(name)
    return ModelInfo(name, cls.__name__, cls.__module__, **{f: getattr(cls, f) for f in CLASS_FIELDS})
