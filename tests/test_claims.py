"""The three claims of the field the suite measures: random codes in an ae versus a vae (latent_sampling),
generative versus discriminative classifiers as labels grow, and an rbm's hidden units as features.

Each function on scikit-learn's 8x8 digits (the fixtures of test_evaluation) or on a synthetic toy.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from genlib.evaluation.field_checks import field_checks
from genlib.evaluation.gen_vs_disc import (
    bayes_rule_predict,
    classifiers,
    crossover,
    generative_vs_discriminative,
    label_sizes,
    labelled_subset,
)
from genlib.evaluation.latent_sampling import CODES, fitted_gaussian_codes, latent_sampling, path_roughness
from tests.test_evaluation import cache_dir, classifier, digits8, tiny_profile  # noqa: F401 (fixtures)


def claims_profile(**extra):
    settings = dict(sampling_latent_sizes=(2,), interpolation_pairs=6, interpolation_steps=5,
                    gvd_label_sizes=(10, 40, 10**6), gvd_seeds=(0, 1), gvd_all_seeds_up_to=10, gvd_min_steps=5,
                    gvd_max_steps=10, gvd_test_images=60)
    settings.update(extra)
    return tiny_profile(**settings)


# --- latent_sampling ----------------------------------------------------------------------------------------


def test_path_roughness_is_zero_for_straight_even_paths_and_grows_with_jumps():
    gen = torch.Generator().manual_seed(0)
    ends = torch.rand(8, 2, 30, generator=gen)
    t = torch.linspace(0, 1, 9)[None, :, None]
    straight = (1 - t) * ends[:, :1] + t * ends[:, 1:]
    assert path_roughness(straight) == pytest.approx(0.0, abs=1e-9)
    # The same ends and points, walked unevenly: all the change in one step.
    jump = torch.where(t < 0.5, ends[:, :1], ends[:, 1:])
    assert path_roughness(jump) == pytest.approx(8 - 1, rel=1e-6)  # (T - 1) |D|^2 / |D|^2 - 1
    detour = straight.clone()
    detour[:, 4] += 1.0
    assert path_roughness(detour) > 0.1
    with pytest.raises(ValueError):
        path_roughness(straight[:, 0])


def test_fitted_gaussian_codes_follow_the_codes_mean_and_covariance():
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(4000, 3, generator=gen) @ torch.tensor([[2.0, 0, 0], [1.0, 0.5, 0], [0, 0, 0.1]]) + 5
    draws = fitted_gaussian_codes(codes, 4000, torch.Generator().manual_seed(1))
    assert draws.shape == (4000, 3)
    assert torch.allclose(draws.mean(0), codes.mean(0), atol=0.15)
    assert torch.allclose(torch.cov(draws.T), torch.cov(codes.T), atol=0.25)


class LinearCodeAE(nn.Module):
    """An autoencoder whose code is the image itself: decode is linear, so lines in code space are lines in pixels."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode(self, x, y=None):
        return x.flatten(1)

    def decode(self, z, y=None):
        return z.view(-1, *self.shape)


def test_latent_sampling_table_and_a_perfect_code_ae_has_zero_pixel_roughness(digits8, classifier):
    d = digits8.x_train[0].numel()
    perfect = LinearCodeAE(tuple(digits8.x_train.shape[1:]))
    profile = claims_profile(sampling_latent_sizes=(d,))
    report = latent_sampling(digits8, profile, device="cpu", classifier=classifier,
                             trained={("ae", d): perfect, ("vae", d): perfect})
    table = report.tables["latent_sampling"]
    assert len(table) == 2 * len(CODES) and set(table["codes_key"]) == set(CODES)
    assert {"recognised", "precision", "recall", "fid", "fid_real_floor", "path_roughness"} <= set(table.columns)
    inter = table[table.codes_key == "interpolation"]
    assert (inter["n_images"] == 6 * 3).all()  # pairs x inner points
    assert inter["pixel_path_roughness"].abs().max() < 1e-5
    assert (inter["path_roughness"] >= 0).all()
    assert table[table.codes_key != "interpolation"]["path_roughness"].isna().all()
    assert {f"latent_interpolation_{d}", f"latent_samples_{d}"} == set(report.figures)
    assert f"latent_sampling/ae_interpolation/latent_{d}/path_roughness" in report.metrics


def test_latent_sampling_trains_missing_models_and_skips_unlabelled_data(digits8, classifier):
    report = latent_sampling(digits8, claims_profile(), device="cpu", classifier=classifier)
    table = report.tables["latent_sampling"]
    assert list(table["model"]) == ["ae"] * 3 + ["vae"] * 3 and set(table["latent_size"]) == {2}
    assert table[["recognised", "precision", "recall"]].apply(lambda c: c.between(0, 1).all()).all()
    import dataclasses

    unlabelled = dataclasses.replace(digits8, num_classes=1)
    for fn in (latent_sampling, generative_vs_discriminative):
        skipped = fn(unlabelled, claims_profile(), device="cpu").tables
        assert list(skipped) == ["skipped"] and "no class labels" in skipped["skipped"]["reason"].iloc[0]


# --- generative vs discriminative -------------------------------------------------------------------------


class TwoGaussians(nn.Module):
    """A class-conditional "VAE" whose ELBO is a Gaussian log-density around a class mean: Bayes' rule is exact."""

    latent_dim = 1

    def __init__(self, means):
        super().__init__()
        self.means = means  # (C, D)

    def encode_dist(self, x, y):
        return torch.zeros(x.shape[0], 1), torch.zeros(x.shape[0], 1)

    def decode_logits(self, z, y):
        return self.means[y]

    def log_px_given_z(self, logits, x):
        return -0.5 * (x.flatten(1) - logits).pow(2).sum(1)

    def kl_term(self, mu, logvar, z):
        return torch.zeros(mu.shape[0])


def test_bayes_rule_on_class_likelihoods_beats_chance_on_an_easy_toy():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    y = torch.randint(0, 3, (300,), generator=gen)
    x = means[y] + torch.randn(300, 2, generator=gen)
    pred = bayes_rule_predict(TwoGaussians(means), x, 3, samples=1, device=torch.device("cpu"), batch_size=64)
    assert pred.shape == (300,) and float((pred == y).float().mean()) > 0.8  # chance is 1/3


def test_only_class_conditional_variational_models_classify_by_bayes_rule():
    from genlib.errors import ConfigError

    with pytest.raises(ConfigError, match="gvd_generative"):
        classifiers(claims_profile(gvd_generative=("ae",)))  # no ELBO
    per_class = classifiers(claims_profile(gvd_generative=("cvae", "vae")))
    assert list(per_class)[:2] == ["cvae_bayes", "vae_bayes"] and "one model per class" in per_class["vae_bayes"][1]


def test_label_sizes_and_subsets():
    assert label_sizes((10, 100, 1000, 60000), 500) == [10, 100, 500]
    assert label_sizes((10, 100), 500) == [10, 100]
    y = torch.arange(100) % 10
    sub = labelled_subset(y, 20, seed=0)
    assert torch.equal(torch.bincount(y[sub], minlength=10), torch.full((10,), 2))
    assert torch.equal(labelled_subset(y, 20, seed=0), sub) and len(labelled_subset(y, 100, 0)) == 100
    skewed = torch.cat([torch.zeros(90), torch.ones(10)]).long()
    assert len(labelled_subset(skewed, 40, seed=0)) == 40  # cannot balance: a random subset instead


def _gvd_table(gen_errors, disc_errors, sizes=(10, 100, 1000)):
    rows = [{"classifier": "g", "kind": "generative", "labels": n, "test_error_pct_mean": e}
            for n, e in zip(sizes, gen_errors)]
    rows += [{"classifier": "d", "kind": "discriminative", "labels": n, "test_error_pct_mean": e}
             for n, e in zip(sizes, disc_errors)]
    return pd.DataFrame(rows)


def test_crossover_is_found_stated_and_checked():
    found = crossover(_gvd_table([30, 20, 10], [40, 18, 5]), "g", "d")
    assert found["between"] == (10, 100) and "between 10 and 100 labels" in found["statement"]
    check = field_checks({"generative_vs_discriminative": _gvd_table([30, 20, 10], [40, 18, 5])})
    assert list(check["passed"]) == ["yes"] and "between 10 and 100" in check["observed"].iloc[0]
    none = crossover(_gvd_table([50, 30, 20], [40, 18, 5]), "g", "d")
    assert none["between"] is None and "no crossover" in none["statement"]
    assert list(field_checks({"generative_vs_discriminative": _gvd_table([50, 30, 20], [40, 18, 5])})["passed"]) == ["no"]


def test_generative_vs_discriminative_table_on_digits(digits8):
    profile = claims_profile(gvd_generative=("cvae", "vae"))
    report = generative_vs_discriminative(digits8, profile, device="cpu")
    table = report.tables["generative_vs_discriminative"]
    assert list(classifiers(profile)) == ["cvae_bayes", "vae_bayes", "logistic", "encoder_scratch"]
    # 10 labels: two seeds; 40 and the whole train split (240): the first seed only.
    assert list(table["labels"]) == [10, 40, 240] * 4
    assert list(table["seeds"]) == [2, 1, 1] * 4
    assert set(table["kind"]) == {"generative", "discriminative"}
    assert table["test_error_pct_mean"].between(0, 100).all()
    assert not math.isnan(table.iloc[0]["test_error_pct_std"]) and math.isnan(table.iloc[1]["test_error_pct_std"])
    # Logistic regression on pixels learns 8x8 digits from 240 labels.
    logistic = table[table.classifier == "logistic"].set_index("labels")["test_error_pct_mean"]
    assert logistic[240] < 30
    assert "generative_vs_discriminative/cvae_bayes/10/test_error_pct_std" in report.metrics
    assert set(report.figures) == {"generative_vs_discriminative"}


# --- rbm features -------------------------------------------------------------------------------------------


def test_rbm_feature_checks_compare_with_pca_of_the_same_size():
    pca_vs_ae = pd.DataFrame([{"latent_size": s, "method": m, "test_sq_err_per_image": 1.0, "probe_accuracy": a}
                              for s, m, a in [(2, "pca", 0.5), (2, "rbm", 0.3), (30, "pca", 0.88), (30, "rbm", 0.9)]])
    finetune = pd.DataFrame([{"method_key": k, "100 labels": f"{e}", "100 labels_mean": e, "100 labels_std": 1.0}
                             for k, e in [("pca_frozen", 30.0), ("rbm_frozen", 25.0)]])
    checks = field_checks({"pca_vs_ae": pca_vs_ae, "finetune": finetune}).set_index("check")["passed"]
    assert checks["rbm features probe latent 30"] == "yes" and checks["rbm features at 100 labels"] == "yes"


class OneGaussian(TwoGaussians):
    """One class's model of a per-class set: unconditional, a Gaussian around its own mean."""

    def __init__(self, mean):
        super().__init__(mean[None])

    def decode_logits(self, z, y=None):
        return self.means[torch.zeros(z.shape[0], dtype=torch.long)]


def test_bayes_rule_with_one_model_per_class_never_predicts_a_class_without_a_model():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    y = torch.randint(0, 3, (300,), generator=gen)
    x = means[y] + torch.randn(300, 2, generator=gen)
    models = [OneGaussian(means[0]), None, OneGaussian(means[2])]
    pred = bayes_rule_predict(models, x, 3, samples=2, device=torch.device("cpu"), batch_size=64)
    assert not bool((pred == 1).any())
    assert float((pred[y != 1] == y[y != 1]).float().mean()) > 0.8


def test_latent_sampling_precision_recall_match_the_generic_estimator(digits8, classifier):
    from genlib.evaluation.generative import precision_recall, real_features
    from genlib.evaluation.latent_sampling import _score

    profile = claims_profile()
    images = digits8.x_train[:50]
    row = _score(images, classifier, digits8, profile)
    test_f, _ = real_features(classifier, digits8, "test", None, profile.seed, profile.eval_batch_size)
    feats, _ = classifier.embed(images)
    assert (row["precision"], row["recall"]) == pytest.approx(precision_recall(test_f, feats, profile.pr_k))
