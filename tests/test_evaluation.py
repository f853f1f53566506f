"""Evaluation: each metric against an independent computation on a small known case, then smoke tests
of ``evaluate_model`` over every registered model and of ``evaluate_suite`` with a tiny profile.

The data is scikit-learn's digits at their native 8x8 (values / 16), so every model and the
feature CNN run in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from genlib.errors import ConfigError, UnknownNameError
from genlib.evaluation import (
    FINETUNE_METHODS,
    REAL_FLOOR_NAME,
    EvaluationReport,
    ais_log_partition,
    combine_reports,
    evaluate_model,
    evaluate_suite,
    frechet_distance,
    frechet_distance_features,
    get_feature_classifier,
    inception_score,
    iwae_log_likelihood,
    label_subsets,
    pca_sq_err_per_image,
    precision_recall,
    rbm_log_likelihood,
    reconstruction_errors,
    reconstruction_tables,
    vae_elbo,
)
from genlib.spec import get_eval_profile
from genlib.evaluation._utils import seeded
from genlib.models import get_model, list_models, make_config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"

from tests.tiny_configs import TINY  # noqa: E402

# Metric names evaluate_model promises, by capability (docs/metrics.md lists each).
RECON_METRICS = {"test_mse", "test_sq_err_per_image", "test_bce"}
DAE_METRICS = {"test_noisy_input_sq_err_per_image", "test_denoised_sq_err_per_image", "denoising_gain"}
GEN_METRICS = {"fid", "precision", "recall", "inception_score", "recognised", "fid_real_floor", "feature_classifier_test_accuracy",
               "reference_fid", "reference_fid_scale", "reference_precision", "reference_recall", "reference_labelled",
               "reference_recognised", "reference_inception_score", "reference_class_accuracy"}
VAE_METRICS = {"elbo", "iwae_nll", "iwae_k"}
RBM_METRICS = {"test_pseudo_log_likelihood", "ais_log_z", "ais_log_likelihood"}


def tiny_profile(**extra):
    settings = dict(
        eval_batch_size=128, figure_images=4, fid_samples=40, is_splits=2, classifier_epochs=2,
        iwae_k=8, iwae_chunk=4, elbo_samples=2, ais_chains=8, ais_betas=20, likelihood_images=50,
        latent_sizes=(2,), suite_hidden_dims=(16,), suite_epochs=1, suite_batch_size=64, probe_max_train=200,
        label_budgets=(20, 10**6), seeds=(0, 1), pretrain_latent=2, finetune_steps=3, classifier_batch_size=16,
        augment_budgets=(20,), n_synthetic=20, augment_steps=3, generator_steps={"cvae": 2, "cgan": 2},
        generator_overrides={"cvae": TINY["cvae"], "cgan": TINY["cgan"]},
        sampling_latent_sizes=(2,), interpolation_pairs=5, interpolation_steps=4, gvd_label_sizes=(10, 10**6),
        gvd_seeds=(0,), gvd_min_steps=3, gvd_max_steps=3, gvd_test_images=60,
    )
    settings.update(extra)
    return get_eval_profile("quick", **settings)


@pytest.fixture(scope="module")
def digits8():
    """sklearn digits at 8x8 as a DataSplits: 240 train / 60 val / 120 test."""
    from sklearn.datasets import load_digits

    from genlib.data.splits import make_splits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    tr, va, te = perm[:240], perm[240:300], perm[300:420]
    return make_splits("digits8", x[tr], y[tr], x[va], y[va], x[te], y[te], num_classes=10, source="test")


# --- reconstruction ------------------------------------------------------------------------------------------


def test_perfect_reconstruction_has_zero_error():
    x = (torch.rand(16, 1, 5, 5, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    err = reconstruction_errors(x.clone(), x)
    for name in ("sq_err", "mse", "bce"):
        assert torch.equal(err[name], torch.zeros(16, dtype=torch.float64)), name
    row, per_class = reconstruction_tables("identity", x, x, torch.arange(16) % 4)
    assert row["test_mse"] == row["test_sq_err_per_image"] == row["test_bce"] == 0.0
    assert per_class["n_images"].tolist() == [4, 4, 4, 4]
    # Flipping every pixel of binary images costs one unit of squared error per pixel.
    assert torch.allclose(reconstruction_errors(1 - x, x)["sq_err"], torch.full((16,), 25.0, dtype=torch.float64))


def test_reconstruction_error_is_summed_over_pixels_and_averaged_over_images():
    x = torch.zeros(2, 1, 2, 2)
    recon = torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    err = reconstruction_errors(recon, x)
    assert err["sq_err"].tolist() == [0.25, 2.0]
    assert err["mse"].tolist() == [0.0625, 0.5]
    row, _ = reconstruction_tables("m", recon, x, torch.tensor([0, 1]))
    assert row["test_sq_err_per_image"] == pytest.approx(1.125)


# --- PCA -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 9])
def test_pca_error_equals_the_discarded_eigenvalues(k):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + rng.normal(size=12)
    # PCA fit and scored on the same data: mean squared residual per row = sum of the discarded
    # eigenvalues of the covariance normalised by N (not N - 1).
    eig = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))  # ascending
    expected = eig[: 12 - k].sum()
    assert pca_sq_err_per_image(x, x, k) == pytest.approx(expected, rel=1e-9)


# --- Frechet distance, precision/recall, Inception Score ----------------------------------------------------


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(1)
    d = 5
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    # Independent form: tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), symmetric roots by eigendecomposition.
    def sym_sqrt(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = sym_sqrt(s1)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * sym_sqrt(r1 @ s2 @ r1))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    # Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = rng.uniform(0.5, 2, size=d), rng.uniform(0.5, 2, size=d)
    diag = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(diag, rel=1e-10)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(2)
    d = 4
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    x1 = rng.multivariate_normal(mu1, s1, size=20000)
    x2 = rng.multivariate_normal(mu2, s2, size=20000)
    population = frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance_features(x1, x2) == pytest.approx(population, rel=0.05, abs=0.02)
    assert frechet_distance_features(x1, x1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_survives_singular_covariances():
    x = np.random.default_rng(3).normal(size=(5, 10))  # 5 points in 10-D: rank-deficient covariance
    value = frechet_distance_features(x, x + 1.0)
    assert math.isfinite(value) and value == pytest.approx(10.0, abs=1e-2)


def test_precision_and_recall_of_a_set_against_itself_are_one():
    f = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    assert precision_recall(f, f.clone(), k=3) == (1.0, 1.0)
    far = f + 100.0
    assert precision_recall(f, far, k=3) == (0.0, 0.0)
    # Every real point plus as many far away: precision 1/2 (only the copies lie on the real
    # manifold), recall 1 (every real point is a fake point).
    p, r = precision_recall(f, torch.cat([f, far]), k=3)
    assert p == pytest.approx(0.5) and r == pytest.approx(1.0)


def test_inception_score_ranges_from_one_to_the_class_count():
    uniform = torch.full((100, 10), 0.1)
    assert inception_score(uniform, splits=1)[0] == pytest.approx(1.0)
    confident = torch.eye(10).repeat(10, 1)
    assert inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-6)


# --- AIS ---------------------------------------------------------------------------------------------------------


def test_ais_log_partition_is_within_a_tenth_of_a_nat_of_the_exact_value():
    torch.manual_seed(0)
    rbm = get_model("rbm", make_config("rbm", {"image_shape": (1, 2, 5), "hidden_units": 8}))
    with torch.no_grad():
        rbm.weight.normal_(0.0, 1.0)
        rbm.visible_bias.normal_(0.0, 0.5)
        rbm.hidden_bias.normal_(0.0, 0.5)
    exact = float(rbm.log_partition_exact())
    data = (torch.rand(500, 10, generator=torch.Generator().manual_seed(1)) < 0.3).double()
    from genlib.evaluation import base_rate_visible_bias

    result = ais_log_partition(
        rbm.weight, rbm.visible_bias, rbm.hidden_bias, n_chains=200, n_betas=1000,
        base_visible_bias=base_rate_visible_bias(data), seed=0,
    )
    assert abs(result.log_z - exact) < 0.1, (result.log_z, exact)
    assert result.log_z_low <= result.log_z <= result.log_z_high
    # With the exact log Z, the log-likelihood matches the model's own brute-force value.
    x = data[:20].view(20, 1, 2, 5).float()
    assert torch.allclose(rbm_log_likelihood(rbm, x, exact), rbm.log_likelihood_exact(x), atol=1e-5)


@pytest.mark.parametrize("binarize", [True, False])
def test_rbm_likelihood_scores_the_test_images_as_the_rbm_was_trained_on_them(binarize):
    """binarize=True: one fixed-seed stochastic binarisation (the paper's protocol); else thresholding."""
    from genlib.evaluation.likelihood import rbm_likelihood_rows

    torch.manual_seed(0)
    rbm = get_model("rbm", make_config("rbm", {"image_shape": (1, 2, 5), "hidden_units": 6, "binarize": binarize}))
    with torch.no_grad():
        rbm.weight.normal_(0.0, 1.0)
    grey = torch.rand(40, 1, 2, 5, generator=torch.Generator().manual_seed(3))
    kwargs = dict(n_chains=4, n_betas=10, pll_exact=True, seed=7, batch_size=16, device=torch.device("cpu"))
    rows, metrics, _ = rbm_likelihood_rows(rbm, grey, grey, **kwargs)
    exact = rbm.log_likelihood_exact  # brute force over the 2**10 visible states, thresholds at 0.5
    seen = torch.bernoulli(grey, generator=torch.Generator().manual_seed(7)) if binarize else (grey > 0.5).float()
    log_z = metrics["ais_log_z"]
    expected = float((exact(seen) + float(rbm.log_partition_exact()) - log_z).mean())
    assert metrics["ais_log_likelihood"] == pytest.approx(expected, abs=1e-6)
    assert ("binarised once (seed 7)" if binarize else "thresholded at 0.5") in rows[-1]["details"]
    # The two protocols disagree on grey images: thresholding is not what a binarize=True RBM saw.
    other = (grey > 0.5).float() if binarize else torch.bernoulli(grey, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(seen, other)


def test_ais_with_zero_weights_is_exact():
    v, h = 6, 4
    bias = torch.randn(v, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = ais_log_partition(torch.zeros(v, h), bias, torch.zeros(h), n_chains=4, n_betas=10, base_visible_bias=bias)
    exact = h * math.log(2) + float(torch.nn.functional.softplus(bias).sum())
    assert result.log_z == pytest.approx(exact, abs=1e-10)


# --- VAE bounds --------------------------------------------------------------------------------------------------


def test_importance_weighted_nll_is_below_the_negative_elbo_and_tightens_with_k(digits8):
    torch.manual_seed(0)
    vae = get_model("vae", make_config("vae", {"image_shape": (1, 8, 8), "hidden_dims": (32,), "latent_dim": 4})).eval()
    x = digits8.x_test
    device = torch.device("cpu")
    with seeded(0, device):
        neg_elbo = -float(vae_elbo(vae, x, samples=50).mean())
    nll = {}
    for k in (1, 10, 100):
        with seeded(k, device):
            nll[k] = -float(iwae_log_likelihood(vae, x, k=k, chunk=25).mean())
    assert nll[100] <= nll[10] <= nll[1]
    assert nll[10] <= neg_elbo and nll[100] <= neg_elbo
    # k = 1 is an unbiased estimate of the negative ELBO itself.
    assert nll[1] == pytest.approx(neg_elbo, abs=1.0)


# --- fine-tuning subsets ---------------------------------------------------------------------------------------


def test_label_subsets_are_class_balanced_deterministic_and_skip_oversized_budgets(digits8):
    y = digits8.y_train
    subsets = label_subsets(y, (30, 10**6), (0, 1))
    assert set(subsets) == {(30, 0), (30, 1)}
    for idx in subsets.values():
        counts = torch.bincount(y[idx], minlength=10)
        assert counts.tolist() == [3] * 10
        assert len(torch.unique(idx)) == 30
    again = label_subsets(y, (30,), (0,))
    assert torch.equal(again[(30, 0)], subsets[(30, 0)])
    assert not torch.equal(subsets[(30, 0)], subsets[(30, 1)])


# --- profiles and reports --------------------------------------------------------------------------------------


def test_profiles_by_name_and_validated_overrides():
    quick, full = get_eval_profile("quick"), get_eval_profile("full")
    assert quick.name == "quick" and full.name == "full"
    assert full.latent_sizes == (2, 5, 10, 20, 30, 50) and full.label_budgets == (100, 600, 1000, 3000)
    assert full.iwae_k == 1000 and full.ais_betas == 14500 and len(full.seeds) >= 3
    with pytest.raises(UnknownNameError, match="quick"):
        get_eval_profile("nope")
    with pytest.raises(ConfigError, match="iwae_k"):
        get_eval_profile("quick", iwae_k=0)
    with pytest.raises(Exception):
        quick.iwae_k = 5  # frozen
    assert hash(quick) == hash(get_eval_profile("quick", iwae_k=quick.iwae_k))  # usable as a cache key


def test_combine_reports_prefixes_metrics_and_keeps_shared_rows_once():
    floor = {"model": REAL_FLOOR_NAME, "fid": 1.0}
    a = EvaluationReport({"generative_quality": pd.DataFrame([floor, {"model": "gan", "fid": 5.0}])},
                         {"samples_gan": Figure()}, {"fid": 5.0}, name="gan")
    b = EvaluationReport({"generative_quality": pd.DataFrame([{**floor, "fid": 1.0 + 1e-12}, {"model": "vae", "fid": 7.0}])},
                         {"samples_vae": Figure()}, {"fid": 7.0}, name="vae")
    suite = EvaluationReport({"pca_vs_ae": pd.DataFrame([{"method": "pca", "latent_size": 2}])}, {},
                             {"pca_vs_ae/pca/latent_2/sq_err_per_image": 3.0})
    c = combine_reports([a, b, suite])
    assert c.tables["generative_quality"]["model"].tolist() == [REAL_FLOOR_NAME, "gan", "vae"]
    assert c.metrics == {"gan/fid": 5.0, "vae/fid": 7.0, "pca_vs_ae/pca/latent_2/sq_err_per_image": 3.0}
    assert set(c.figures) == {"samples_gan", "samples_vae"}
    md = c.markdown()
    assert "## generative_quality" in md and "## pca_vs_ae" in md and "| gan | 5 |" in md


# --- feature classifier and smoke tests ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def classifier(digits8, cache_dir):
    return get_feature_classifier(digits8, device="cpu", epochs=2, cache_dir=cache_dir)


def test_feature_classifier_is_cached_by_digest(digits8, classifier, cache_dir):
    files = list(cache_dir.glob("feature_classifier/*.pt"))
    assert len(files) == 1
    blob = torch.load(files[0], weights_only=True)
    assert blob["digest"] == digits8.digest
    again = get_feature_classifier(digits8, device="cpu", epochs=2, cache_dir=cache_dir)
    assert again.test_accuracy == classifier.test_accuracy
    for (k, v), (k2, v2) in zip(classifier.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v.cpu(), v2.cpu())
    assert 0.0 <= classifier.test_accuracy <= 1.0
    # A different data set (another digest) gets its own file.
    get_feature_classifier(digits8.subset(100, 20, 50), device="cpu", epochs=1, cache_dir=cache_dir)
    assert len(list(cache_dir.glob("feature_classifier/*.pt"))) == 2


@pytest.mark.parametrize("name", list_models())
def test_evaluate_model_returns_the_documented_metrics(name, digits8, classifier):
    torch.manual_seed(0)
    model = get_model(name, make_config(name, {"image_shape": (1, 8, 8), "num_classes": 10, **TINY[name]}))
    report = evaluate_model(model, digits8, tiny_profile(), device="cpu", features=classifier)
    expected = {"test_loss"} | {f"test_{k}" for k in model.evaluation_loss(digits8.x_test[:2], digits8.y_test[:2]).terms()}
    if model.reconstructs:
        expected |= RECON_METRICS
    if model.noise is not None:
        expected |= DAE_METRICS
    if model.generates:
        expected |= GEN_METRICS | ({"class_accuracy"} if model.conditional else set())
    if model.likelihood == "variational":
        expected |= VAE_METRICS
    if model.likelihood == "energy":
        expected |= RBM_METRICS
    assert set(report.metrics) == expected
    assert all(isinstance(v, float) and not math.isnan(v) for v in report.metrics.values())
    documented = DOCS.read_text()
    for key in report.metrics:
        assert f"`{key}`" in documented, f"{key} missing from docs/metrics.md"
    assert report.name == name
    for table_name, df in report.tables.items():
        assert "model" in df.columns and name in set(df["model"]), table_name
        assert f"`{table_name}`" in documented
    if model.generates:
        assert REAL_FLOOR_NAME in set(report.tables["generative_quality"]["model"])
    assert all(isinstance(f, Figure) for f in report.figures.values())
    assert f"## {next(iter(report.tables))}" in report.markdown()


def test_suite_sections_are_registered_once_and_skip_what_needs_labels(digits8):
    from genlib.evaluation.suite import get_section, list_sections, plan_sections, register_section

    names = list_sections()
    assert {"pca_vs_ae", "finetune", "augmentation", "real_floor"} <= set(names)
    assert plan_sections(digits8) == (names, {})
    class Unlabelled:  # what plan_sections reads of a data set without labels
        name, y_train, num_classes = "imgs", None, 0

    run, skipped = plan_sections(Unlabelled())
    assert run == [n for n in names if not get_section(n).needs_labels] and "pca_vs_ae" in run
    sections_left_out = {n for n in names if get_section(n).needs_labels}
    assert sections_left_out <= set(skipped) and len(skipped) == len(sections_left_out) + 1  # + conditional models
    assert all("no class labels" in why for why in skipped.values())
    with pytest.raises(ValueError, match="already registered"):
        register_section("finetune", needs_labels=True, summary="")(lambda *a, **k: None)
    with pytest.raises(ValueError, match="unknown suite section 'nope'"):
        get_section("nope")


def test_evaluate_suite_returns_its_tables(digits8):
    report = evaluate_suite(digits8, tiny_profile(), device="cpu")
    for name in ("reconstruction", "pca_vs_ae", "finetune", "augmentation", "generative_quality", "latent_sampling",
                 "generative_vs_discriminative"):
        assert name in report.tables and not report.tables[name].empty, name
    pca = report.tables["pca_vs_ae"]
    assert set(pca["method"]) == {"pca", "ae", "vae", "rbm"} and set(pca["latent_size"]) == {2}
    finetune = report.tables["finetune"]
    assert list(finetune.columns) == ["method", "method_key", "unit", "20 labels", "20 labels_mean", "20 labels_std",
                                      "seeds"]  # the 10**6 budget is skipped
    assert set(finetune["unit"]) == {"test error %, lower is better"}
    assert all(f"{m:.2f} +- {s:.2f}" == t for m, s, t in
               zip(finetune["20 labels_mean"], finetune["20 labels_std"], finetune["20 labels"]))
    assert len(finetune) == len(FINETUNE_METHODS) + len(tiny_profile().frozen_representations)
    assert {"pca_frozen", "vae_frozen", "rbm_frozen"} <= set(finetune["method_key"])
    assert all(re.fullmatch(r"\d+\.\d\d \+- \d+\.\d\d", c) for c in finetune["20 labels"])
    aug = report.tables["augmentation"]
    # real only, classic, the pseudo-labelled reference, and a cvae trained on labelled + pseudo-labelled images
    assert list(aug["method_key"]) == ["real_only", "classic", "pseudo_real", "cvae_semi"]
    assert list(aug["generated"]) == [False, False, False, True]
    assert aug["generator_trained_on"][aug.generated].str.startswith("20 labelled + ").all()
    assert aug["generator_trained_on"][aug.method_key == "pseudo_real"].str.startswith("no generator").all()
    assert {"gain_pct_mean", "gain_pct_std", "accuracy_pct_mean", "accuracy_pct_std"} <= set(aug.columns)
    assert {"pca_vs_ae", "latent_scatter", "finetune", "augmentation", "latent_interpolation_2",
            "generative_vs_discriminative"} <= set(report.figures)
    documented = DOCS.read_text()
    for key in report.metrics:
        parts = key.split("/")
        if len(parts) == 4:  # experiment/method/setting/quantity
            parts[1] = "{method}"
            parts[2] = re.sub(r"^\d+$", "{budget}", re.sub(r"^latent_\d+$", "latent_{L}", parts[2]))
        pattern = "/".join(parts)
        assert f"`{pattern}`" in documented, f"{pattern} missing from docs/metrics.md"
    for name in report.tables:
        assert f"`{name}`" in documented


def test_evaluation_imports_neither_prefect_nor_mlflow():
    package = Path(__file__).resolve().parents[1] / "genlib" / "evaluation"
    for path in package.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(prefect|mlflow)\b", text, re.M), path.name


def test_evaluate_model_reports_reverse_ais_beside_ais_when_the_profile_asks(digits8, classifier):
    """raise_betas in the evaluation profile: the RBM's report carries the conservative RAISE estimate on the
    first raise_images test images, with AIS on the same images beside it (RAISE is meant to lie below)."""
    torch.manual_seed(0)
    rbm = get_model("rbm", make_config("rbm", {"image_shape": (1, 8, 8), "num_classes": 10, **TINY["rbm"]}))
    report = evaluate_model(rbm, digits8, tiny_profile(raise_betas=50, raise_images=12), device="cpu",
                            features=classifier)
    m = report.metrics
    assert m["raise_images"] == 12.0 and math.isfinite(m["raise_log_likelihood"])
    assert m["raise_log_likelihood"] <= m["ais_log_likelihood_raise_images"] + 1.0
    assert "raise_log_likelihood" in set(report.tables["likelihood"]["quantity"])
    assert "raise_log_likelihood" not in evaluate_model(rbm, digits8, tiny_profile(), device="cpu",
                                                        features=classifier).metrics
