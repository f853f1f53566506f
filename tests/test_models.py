"""Shared suite over every registered model (torchvision ``test_models.py`` style), with tiny configs.

Each model is built from TINY[name]; the tests cover shapes, finite losses, one training step,
checkpoint round trips, seeding, labels of conditional models, the registry and config validation.
"""

from __future__ import annotations

from contextlib import nullcontext

import pydantic
import pytest
import torch

from genlib.errors import ConfigError, UnknownNameError
from genlib.models import get_config_class, get_model, list_models, make_config, register_model
from genlib.models.base import config_dict
from genlib.models.registry import config_from_dict
from genlib.training import load_checkpoint, save_checkpoint


EXPECTED_NAMES = ["ae", "cgan", "conv-ae", "cvae", "dae", "gan", "rbm", "vae"]
SHAPE = (1, 8, 8)  # conv models need H and W divisible by 4
CLASSES = 3
BATCH = 6

from tests.tiny_configs import TINY  # noqa: E402


def tiny_config(name: str, **extra):
    return make_config(name, {"image_shape": SHAPE, "num_classes": CLASSES, **TINY[name], **extra})


def tiny_model(name: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return get_model(name, tiny_config(name, **extra))


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(BATCH, *SHAPE, generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    return x, y


def one_step(model, x, y, optimizers=None):
    optimizers = optimizers or model.configure_optimizers()
    model.train()
    return model.training_step(x, y, optimizers, nullcontext()), optimizers


def code_size(model) -> int:
    fields = type(model.config).model_fields
    return model.config.latent_dim if "latent_dim" in fields else model.config.hidden_units


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_registry_holds_the_eight_models():
    assert list_models() == EXPECTED_NAMES
    assert sorted(TINY) == EXPECTED_NAMES  # every model has a tiny config in this suite


@pytest.mark.parametrize("name", list_models())
def test_shapes_and_ranges(name):
    model = tiny_model(name).eval()
    x, y = batch()
    cls = type(model)
    assert cls.reconstructs or cls.generates
    with torch.no_grad():
        if cls.reconstructs:
            r = model.reconstruct(x, y)
            assert r.shape == x.shape
            assert r.min() >= 0 and r.max() <= 1
            z = model.encode(x, y)
            assert z.shape == (BATCH, code_size(model))
        if cls.generates:
            s = model.sample(5, generator=torch.Generator().manual_seed(0))
            assert s.shape == (5, *SHAPE)
            assert torch.isfinite(s).all()
            assert s.min() >= 0 and s.max() <= 1


@pytest.mark.parametrize("name", list_models())
def test_capabilities_raise_when_absent(name):
    model = tiny_model(name).eval()
    x, _ = batch()
    if not model.reconstructs:
        with pytest.raises(NotImplementedError):
            model.reconstruct(x)
    if not model.generates:
        with pytest.raises(NotImplementedError):
            model.sample(2)


@pytest.mark.parametrize("name", list_models())
def test_loss_is_finite_and_every_term_is_logged(name):
    model = tiny_model(name)
    x, y = batch()
    before = snapshot(model)
    out = model.evaluation_loss(x, y)
    terms = out.terms()
    assert "loss" in terms and len(terms) >= 2
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values()), terms
    assert out.loss.dim() == 0
    # evaluation_loss must not update anything
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)


@pytest.mark.parametrize("name", list_models())
def test_one_training_step_changes_every_parameter(name):
    model = tiny_model(name)
    x, y = batch()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    out, _ = one_step(model, x, y)
    assert torch.isfinite(out.loss)
    assert not out.loss.requires_grad  # detached, so the loop can keep it without holding the graph
    unchanged = [k for k, p in model.named_parameters() if torch.equal(before[k], p.detach())]
    assert unchanged == []


@pytest.mark.parametrize("name", list_models())
def test_optimizers_cover_every_parameter_once(name):
    model = tiny_model(name)
    optimizers = model.configure_optimizers()
    ids = [id(p) for opt in optimizers.values() for group in opt.param_groups for p in group["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", list_models())
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    model = tiny_model(name)
    x, y = batch()
    _, optimizers = one_step(model, x, y)  # non-trivial weights, BatchNorm statistics and optimizer state
    path = save_checkpoint(tmp_path / "m.pt", model, optimizers, epoch=3, extra={"note": "hi"})

    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert {"config", "state_dict", "optimizer", "epoch"} <= set(raw)
    assert raw["config"]["model_name"] == name

    ckpt = load_checkpoint(path)
    loaded = ckpt.model
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert ckpt.epoch == 3 and ckpt.extra == {"note": "hi"}
    assert set(ckpt.optimizer) == set(optimizers)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k

    model.eval()
    loaded.eval()
    with torch.no_grad():
        if model.reconstructs:
            assert torch.equal(model.reconstruct(x, y), loaded.reconstruct(x, y))
        if model.generates:
            a = model.sample(4, generator=torch.Generator().manual_seed(5))
            b = loaded.sample(4, generator=torch.Generator().manual_seed(5))
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", list_models())
def test_loaded_optimizer_state_continues_training_identically(name, tmp_path):
    model = tiny_model(name)
    x, y = batch()
    _, optimizers = one_step(model, x, y)
    save_checkpoint(tmp_path / "m.pt", model, optimizers, epoch=1)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    resumed = ckpt.model
    resumed_opts = resumed.configure_optimizers()
    for key, state in ckpt.optimizer.items():
        resumed_opts[key].load_state_dict(state)
    torch.manual_seed(9)
    one_step(model, x, y, optimizers)
    torch.manual_seed(9)
    one_step(resumed, x, y, resumed_opts)
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


@pytest.mark.parametrize("name", list_models())
def test_same_seed_same_result(name):
    x, y = batch()
    a, b = tiny_model(name, seed=3), tiny_model(name, seed=3)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    torch.manual_seed(11)
    out_a, _ = one_step(a, x, y)
    torch.manual_seed(11)
    out_b, _ = one_step(b, x, y)
    assert out_a.terms() == out_b.terms()
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    # ... and a different seed gives different initial weights, so the check above means something.
    c = tiny_model(name, seed=4)
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in tiny_model(name, seed=3).named_parameters())


@pytest.mark.parametrize("name", [n for n in list_models() if get_model(n, tiny_config(n)).generates])
def test_sampling_honours_the_generator(name):
    model = tiny_model(name).eval()
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, generator=torch.Generator().manual_seed(1))
    c = model.sample(4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


CONDITIONAL = [n for n in list_models() if get_model(n, tiny_config(n)).conditional]


def test_the_conditional_models_are_cvae_and_cgan():
    assert CONDITIONAL == ["cgan", "cvae"]


@pytest.mark.parametrize("name", CONDITIONAL)
def test_conditional_models_honour_labels(name):
    model = tiny_model(name).eval()
    labels = torch.tensor([0, 1, 2, 0])
    s = model.sample(4, labels=labels, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, *SHAPE)
    # Same noise, other labels: the images must change (the labels reach the network).
    other = model.sample(4, labels=torch.tensor([1, 2, 0, 1]), generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(s, other)
    same = model.sample(4, labels=labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, same)


@pytest.mark.parametrize("name", CONDITIONAL)
@pytest.mark.parametrize(
    "labels",
    [torch.tensor([0, 1, 3, 0]), torch.tensor([0, -1, 1, 0]), torch.tensor([0, 1]), torch.tensor([[0, 1], [1, 0]])],
    ids=["too-big", "negative", "too-few", "2-d"],
)
def test_conditional_models_refuse_bad_labels(name, labels):
    model = tiny_model(name).eval()
    with pytest.raises(ValueError, match="labels"):
        model.sample(4, labels=labels)


def test_cvae_needs_labels_for_its_loss():
    model = tiny_model("cvae")
    x, _ = batch()
    with pytest.raises(ValueError, match="labels"):
        model.loss(x, None)


# --- registry -----------------------------------------------------------------------------------------


def test_registry_refuses_duplicate_names():
    cls = type(get_model("ae", tiny_config("ae")))
    with pytest.raises(ValueError, match="already registered"):
        register_model("ae")(cls)
    assert list_models() == EXPECTED_NAMES


def test_registry_refuses_a_config_for_another_name():
    cls = type(get_model("ae", tiny_config("ae")))
    with pytest.raises(TypeError, match="model_name"):
        register_model("not-ae-test")(cls)
    assert "not-ae-test" not in list_models()


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        get_model("nope")
    message = str(err.value)
    assert "nope" in message
    for name in EXPECTED_NAMES:
        assert name in message
    assert isinstance(err.value, KeyError)
    with pytest.raises(UnknownNameError):
        make_config("nope")


def test_get_model_refuses_a_config_of_another_model():
    with pytest.raises(ConfigError, match="vae"):
        get_model("ae", tiny_config("vae"))


# --- configs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in list_models() if "latent_dim" in get_config_class(n).model_fields])
@pytest.mark.parametrize("value", [0, -3])
def test_latent_dim_must_be_positive(name, value):
    with pytest.raises(ConfigError, match="latent_dim") as err:
        make_config(name, {"latent_dim": value})
    assert str(value) in str(err.value)
    with pytest.raises(ConfigError, match="latent_dim"):
        get_model(name, latent_dim=value)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("value", [0, -1e-3])
def test_lr_must_be_positive(name, value):
    with pytest.raises(ConfigError, match=r"\blr\b"):
        make_config(name, {"lr": value})


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_noise_level_must_be_in_unit_interval(value):
    with pytest.raises(ConfigError, match="noise_level"):
        make_config("dae", {"noise_level": value})
    for ok in (0.0, 1.0):
        assert make_config("dae", {"noise_level": ok}).noise_level == ok


def test_config_validation_names_every_bad_field_and_refuses_unknown_fields():
    with pytest.raises(ConfigError) as err:
        make_config("ae", {"latent_dim": 0, "lr": -1})
    assert "latent_dim" in str(err.value) and "lr" in str(err.value)
    with pytest.raises(ConfigError, match="hidden_unitz"):
        make_config("rbm", {"hidden_unitz": 3})
    with pytest.raises(ConfigError, match="recon_loss"):
        make_config("ae", {"recon_loss": "l1"})


@pytest.mark.parametrize("name", list_models())
def test_configs_are_frozen_record_their_name_and_round_trip(name):
    config = tiny_config(name)
    assert config.model_name == name
    assert get_config_class(name)().model_name == name
    with pytest.raises(pydantic.ValidationError):
        config.lr = 0.5
    assert config.lr == get_config_class(name).model_fields["lr"].default
    again = config_from_dict(config_dict(config))
    assert again == config
    assert hash(again) == hash(config)


def test_make_config_cannot_change_the_model_name():
    assert make_config("vae", {"model_name": "ae"}).model_name == "vae"
