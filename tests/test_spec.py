"""The run spec: one resolve function, one --set parser, typed presets, canonical cache keys."""

from __future__ import annotations

import pytest

from genlib.errors import ConfigError, UnknownNameError
from genlib.models import list_models
from genlib.presets import get_profile, profile_names
from genlib.spec import Overrides, RunSpec, parse_set, resolve_eval, resolve_spec


@pytest.mark.parametrize("profile", ["quick", "full"])
@pytest.mark.parametrize("family", list_models())
def test_every_family_resolves_in_the_builtin_profiles_and_round_trips_as_json(profile, family):
    spec = resolve_spec(profile, family, data_shape=((1, 28, 28), 10))
    assert spec.model.model_name == family and spec.family == family
    assert RunSpec.model_validate_json(spec.model_dump_json()) == spec
    assert spec.train == get_profile(profile).preset(family).train.model_copy(
        update={"checkpoint_every": spec.train.checkpoint_every})


def test_overrides_are_applied_validated_and_the_data_decides_the_shape():
    ov = parse_set(["latent_dim=7", "train.epochs=3", "eval.fid_samples=100"], family="vae")
    spec = resolve_spec("quick", "vae", ov, data_shape=((1, 8, 8), 3))
    assert (spec.model.latent_dim, spec.train.epochs, spec.evaluation.fid_samples) == (7, 3, 100)
    assert spec.model.image_shape == (1, 8, 8) and spec.model.num_classes == 3
    assert resolve_spec("quick", "vae").model.latent_dim != 7  # presets are not mutated
    with pytest.raises(ConfigError, match="latent_dim"):
        resolve_spec("quick", "vae", {"model": {"latent_dim": 0}})
    with pytest.raises(ConfigError, match="epochs"):
        resolve_spec("quick", "vae", {"train": {"epochs": 0}})
    with pytest.raises(ConfigError, match="unknown section"):
        resolve_spec("quick", "vae", {"optimizer": {}})
    with pytest.raises(UnknownNameError, match="unknown profile"):
        resolve_spec("nope", "vae")
    with pytest.raises(UnknownNameError, match="unknown model"):
        resolve_spec("quick", "nope")


def test_checkpoints_default_to_at_most_five_percent_of_the_epochs():
    spec = resolve_spec("full", "vae")
    assert spec.train.checkpoint_every <= 0.05 * spec.train.epochs
    assert resolve_spec("quick", "vae", {"train": {"checkpoint_every": 7}}).train.checkpoint_every == 7


@pytest.mark.parametrize("bad, message", [
    ("epochs", "expected FIELD=VALUE"),
    ("nope=1", "unknown field 'nope'"),
    ("seed=1", "field of train and evaluation"),
    ("optim.lr=1", "unknown section"),
    ("model.noise_level=0.1", "unknown field"),  # a dae field, not a vae one
])
def test_parse_set_gives_one_line_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        parse_set([bad], family="vae")


def test_parse_set_reads_json_values_and_named_options():
    ov = parse_set(["hidden_dims=[8,4]", "train.lr_schedule=cosine", "binarize=true"], family="vae",
                   values={"epochs": 2, "latent_dim": None})
    assert ov == Overrides(model={"hidden_dims": (8, 4), "binarize": True},
                           train={"lr_schedule": "cosine", "epochs": 2})


def test_cache_key_covers_what_decides_the_weights_only():
    a = resolve_spec("quick", "ae")
    b = resolve_spec("quick", "ae", {"evaluation": {"fid_samples": 123}})
    c = resolve_spec("quick", "ae", {"train": {"seed": 1}})
    assert a.cache_key("d") == b.cache_key("d") != c.cache_key("d")
    assert a.cache_key("d") != a.cache_key("e")
    every = ("family", "model", "train", "evaluation")
    assert a.cache_key("d", every) != b.cache_key("d", every)


def test_resolve_eval_and_profiles_registry():
    assert {"quick", "full"} <= set(profile_names())
    assert resolve_eval("quick", {"evaluation": {"seeds": (0, 1, 2, 3)}}).seeds == (0, 1, 2, 3)
    with pytest.raises(ConfigError, match="seeds"):
        resolve_eval("quick", {"evaluation": {"seeds": ()}})


def test_derive_profile_registers_validated_presets_on_the_same_system():
    from genlib.spec import derive_profile

    prof = derive_profile("test-derived", "quick", {"vae": {"model": {"latent_dim": 3}, "train": {"epochs": 2}}},
                          {"fid_samples": 50})
    spec = resolve_spec("test-derived", "vae")
    assert (spec.model.latent_dim, spec.train.epochs, spec.evaluation.fid_samples) == (3, 2, 50)
    assert prof.evaluation.name == "test-derived" and sorted(prof.families) == ["vae"]
    with pytest.raises(ConfigError, match="latent_dim"):
        derive_profile("test-derived-bad", "quick", {"vae": {"model": {"latent_dim": -1}}})
