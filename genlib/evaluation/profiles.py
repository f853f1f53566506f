"""Evaluation profiles: how hard to look (sample counts, seeds, label budgets, AIS schedule) per named setting.

``quick`` fits ``make run`` on digits on two CPU cores; ``full`` is paper scale, meant for MNIST on a GPU.
A run profile (genlib.presets) names one of these; :func:`genlib.spec.get_eval_profile` applies overrides
(this module imports nothing above the evaluation layer).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EvalProfile(BaseModel):
    """Frozen, validated evaluation settings. Every count is a number of images, draws or steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    seed: int = 0  # seeds every stochastic estimate of evaluate_model (samples, noise, IWAE draws, AIS)
    eval_batch_size: int = Field(512, ge=1)

    # --- per model: reconstruction and generative quality --------------------------------
    figure_images: int = Field(10, ge=1)  # originals shown above their reconstructions
    fid_samples: int = Field(500, ge=10)  # generated images for FID / precision-recall / IS / class accuracy
    pr_k: int = Field(3, ge=1)  # k-th nearest neighbour radius of improved precision & recall
    is_splits: int = Field(10, ge=1)  # Inception Score mean +- std over this many splits
    classifier_epochs: int = Field(8, ge=1)  # feature CNN (cached per data digest)

    # --- per model: likelihoods ------------------------------------------------------------
    iwae_k: int = Field(100, ge=1)  # importance samples per image of the IWAE bound
    iwae_chunk: int = Field(100, ge=1)  # draws per forward pass (bounds memory)
    elbo_samples: int = Field(10, ge=1)  # posterior draws averaged in the ELBO (and its KL for a learned prior)
    likelihood_images: int | None = Field(None, ge=1)  # test images used for ELBO/IWAE/AIS; None = all
    ais_chains: int = Field(50, ge=1)
    ais_betas: int = Field(1000, ge=2)  # intermediate distributions, Salakhutdinov & Murray's spacing
    # Reverse annealing (RAISE, Burda et al. 2015): a conservative estimate beside AIS's optimistic one.
    raise_betas: int | None = Field(None, ge=2)  # None: not computed
    raise_images: int | None = Field(None, ge=1)  # first this many likelihood images (None: all of them)
    pll_exact: bool = False  # exact pseudo-likelihood (V free energies per image) or the 1-bit estimate

    # --- suite: PCA vs autoencoders ------------------------------------------------------------
    latent_sizes: tuple[int, ...] = (2, 10, 30)
    # Compared with PCA at every latent size (an rbm with that many hidden units: its hidden probabilities).
    suite_models: tuple[str, ...] = ("ae", "vae", "rbm")
    pretrain_model: str = "ae"  # its encoder is fine-tuned with few labels (one of suite_models)
    suite_hidden_dims: tuple[int, ...] = (256, 128)
    suite_epochs: int = Field(15, ge=1)
    suite_batch_size: int = Field(64, ge=1)
    probe_max_train: int = Field(10000, ge=10)  # logistic probe fits on at most this many train codes

    # --- suite: encoder + classifier fine-tuning ----------------------------------------------
    label_budgets: tuple[int, ...] = (100, 600)
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_seeds: tuple[int, ...] | None = None  # None = ``seeds``
    pretrain_latent: int = Field(30, ge=1)  # code size of the unsupervised ``ae`` whose encoder is reused
    finetune_steps: int = Field(200, ge=1)
    classifier_batch_size: int = Field(64, ge=1)
    classifier_lr: float = Field(1e-3, gt=0)

    # Codes beside the pretrained ae's in the few-label table: "pca" and any of suite_models (frozen + linear head).
    frozen_representations: tuple[str, ...] = ("pca", "vae", "rbm")

    # --- suite: random codes decoded (latent_sampling) ---------------------------------------
    # Latent sizes at which ae and vae decode N(0, I) codes, codes of a Gaussian fitted to the train codes, and
    # straight lines between test codes; those among latent_sizes reuse the models trained there.
    sampling_latent_sizes: tuple[int, ...] = (10,)
    sampling_models: tuple[str, ...] = ("ae", "vae")
    interpolation_pairs: int = Field(50, ge=1)  # pairs of test images of different classes
    interpolation_steps: int = Field(12, ge=3)  # points per path, both ends included

    # --- suite: generative vs discriminative classifiers over label counts ----------------------
    # VAE families classifying by Bayes' rule with the ELBO: a conditional one with each label, an
    # unconditional one as one model per class. Their configs: gvd_model_overrides. A small code makes a
    # cvae use its label: with a large one the decoder explains an image from z alone, whatever label it gets.
    gvd_generative: tuple[str, ...] = ("cvae",)
    gvd_model_overrides: dict[str, dict[str, Any]] = Field(default_factory=lambda: {
        "cvae": {"hidden_dims": (256, 128), "latent_dim": 2}, "vae": {"hidden_dims": (256, 128), "latent_dim": 2}})
    gvd_logistic_max_iter: int = Field(100, ge=1)  # lbfgs iterations of the logistic regression
    gvd_label_sizes: tuple[int, ...] = (10, 100, 1000, 3000)  # sizes >= the train split mean all of it
    gvd_seeds: tuple[int, ...] = (0, 1)
    gvd_all_seeds_up_to: int = Field(100, ge=0)  # larger sizes run the first seed only
    gvd_epochs: int = Field(10, ge=1)  # passes over the labelled images, clipped to [gvd_min_steps, gvd_max_steps]
    gvd_min_steps: int = Field(300, ge=1)
    gvd_max_steps: int = Field(600, ge=1)
    gvd_test_images: int | None = Field(2000, ge=10)  # seeded subset of the test split; None = all
    gvd_elbo_samples: int = Field(1, ge=1)  # posterior draws per ELBO of the Bayes-rule classifier

    # --- suite: augmentation ------------------------------------------------------------------
    augment_budgets: tuple[int, ...] = (100,)
    n_synthetic: int = Field(1000, ge=0)  # synthetic labelled images added per run (balanced over classes)
    augment_steps: int = Field(200, ge=1)  # classifier steps, the same for every condition
    augment_classifier: Literal["mlp", "cnn"] = "mlp"
    augment_generators: tuple[str, ...] = ("cvae",)  # conditional generators whose samples are added
    # What the generators learn from: the labelled subset only, and/or (semi) it plus the unlabelled
    # training images pseudo-labelled by a teacher with at least pseudo_label_confidence.
    augment_generator_data: tuple[Literal["labelled", "semi"], ...] = ("semi",)
    pseudo_label_confidence: float = Field(0.9, ge=0, le=1)
    pseudo_per_class: int = Field(300, ge=1)  # class-balanced: at most this many pseudo-labels per class
    filter_synthetic: bool = True  # keep only samples the teacher recognises as their requested class
    generator_steps: dict[str, int] = Field(default_factory=lambda: {"cvae": 600, "cgan": 1000})
    generator_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            "cvae": {"hidden_dims": (256, 128), "latent_dim": 16},
            "cgan": {"latent_dim": 32, "generator_features": 8, "discriminator_features": 8},
        }
    )
    # True: every seed draws its own labelled subset and trains its own generators;
    # False: one subset and one pair of generators per budget (seed 0), reused by all classifier seeds.
    generators_per_seed: bool = False

    @field_validator("latent_sizes", "label_budgets", "augment_budgets", "seeds", "gvd_label_sizes", "gvd_seeds")
    @classmethod
    def _non_empty_positive(cls, v: tuple[int, ...], info: Any) -> tuple[int, ...]:
        if not v:
            raise ValueError("must not be empty")
        if info.field_name not in ("seeds", "gvd_seeds") and any(n <= 0 for n in v):
            raise ValueError("every entry must be positive")
        return tuple(v)

    @field_validator("generator_overrides", "gvd_model_overrides")
    @classmethod
    def _tuples(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # JSON gives lists where the presets wrote tuples; one form keeps a round trip equal.
        return {g: {k: tuple(x) if isinstance(x, list) else x for k, x in o.items()} for g, o in v.items()}

    def __hash__(self) -> int:
        # The dict-valued fields make pydantic's field-tuple hash fail; the JSON form is canonical.
        return hash(self.model_dump_json())

    @property
    def finetune_seed_list(self) -> tuple[int, ...]:
        return self.finetune_seeds if self.finetune_seeds is not None else self.seeds


PROFILES: dict[str, EvalProfile] = {
    # make run's: the 100-label budget the field checks read (600 and more in full), and 25 importance
    # samples for the IWAE bound (already tighter than the ELBO; the cost grows with k, on every VAE family).
    "quick": EvalProfile(name="quick", label_budgets=(100,), iwae_k=25),
    "full": EvalProfile(
        name="full",
        eval_batch_size=2048,
        fid_samples=10000,
        classifier_epochs=15,
        iwae_k=1000,
        iwae_chunk=250,
        elbo_samples=10,
        ais_chains=100,
        ais_betas=14500,
        raise_betas=3000,
        pll_exact=True,
        latent_sizes=(2, 5, 10, 20, 30, 50),
        sampling_latent_sizes=(2, 10, 30),
        interpolation_pairs=1000,
        gvd_label_sizes=(10, 30, 100, 300, 1000, 3000, 10000, 30000, 60000),
        gvd_seeds=(0, 1, 2, 3, 4),
        gvd_all_seeds_up_to=1000,
        gvd_epochs=50,
        gvd_min_steps=1000,
        gvd_max_steps=20000,
        gvd_test_images=None,
        gvd_elbo_samples=10,
        gvd_generative=("cvae", "vae"),
        gvd_model_overrides={"cvae": {"hidden_dims": (500, 500), "latent_dim": 2},
                             "vae": {"hidden_dims": (500, 500), "latent_dim": 2}},
        gvd_logistic_max_iter=1000,
        suite_hidden_dims=(1000, 500, 250),
        suite_epochs=50,
        suite_batch_size=128,
        label_budgets=(100, 600, 1000, 3000),
        seeds=(0, 1, 2),
        finetune_seeds=(0, 1, 2, 3, 4),
        pretrain_latent=50,
        finetune_steps=3000,
        augment_budgets=(100, 600, 1000),
        n_synthetic=10000,
        augment_steps=3000,
        augment_classifier="cnn",
        augment_generators=("cvae", "cgan"),
        augment_generator_data=("labelled", "semi"),
        generator_steps={"cvae": 10000, "cgan": 10000},
        generator_overrides={
            "cvae": {"hidden_dims": (500, 500), "latent_dim": 50},
            "cgan": {"latent_dim": 100, "generator_features": 64, "discriminator_features": 64},
        },
        generators_per_seed=True,
    ),
}


def eval_profile_names() -> list[str]:
    return sorted(PROFILES)
