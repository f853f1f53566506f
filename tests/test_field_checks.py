"""The field's expectations read off evaluation tables: each check passes and fails on the right numbers."""

import pandas as pd

from genlib.evaluation.field_checks import field_checks


def _tables(ae_err=10.0, ft=(20.0, 1.0), sc=(25.0, 2.0), gain=(3.0, 1.0), recognised=0.8, precision=0.6):
    return {
        "pca_vs_ae": pd.DataFrame([
            {"latent_size": 2, "method": "pca", "test_sq_err_per_image": 40.0},
            {"latent_size": 2, "method": "ae", "test_sq_err_per_image": ae_err},
            {"latent_size": 2, "method": "vae", "test_sq_err_per_image": 50.0},
        ]),
        "finetune": pd.DataFrame([
            {"method_key": "scratch", "100 labels": f"{sc[0]} +- {sc[1]}", "100 labels_mean": sc[0], "100 labels_std": sc[1]},
            {"method_key": "finetuned", "100 labels": f"{ft[0]} +- {ft[1]}", "100 labels_mean": ft[0], "100 labels_std": ft[1]},
        ]),
        "augmentation": pd.DataFrame([
            {"labels": 100, "method": "+ classic", "generated": False, "gain_pct": "9 +- 1", "gain_pct_mean": 9.0, "gain_pct_std": 1.0},
            {"labels": 100, "method": "+ cvae", "generated": True, "gain_pct": "x", "gain_pct_mean": gain[0], "gain_pct_std": gain[1]},
        ]),
        "generative_quality": pd.DataFrame([
            {"model": "real (train vs test)", "recognised": 0.99, "precision": 0.8, "fid": 5.0},
            {"model": "rbm", "recognised": recognised, "precision": precision, "fid": 600.0},
        ]),
    }


def _passed(tables):
    return dict(zip(field_checks(tables)["check"], field_checks(tables)["passed"]))


def test_every_check_passes_on_good_numbers():
    assert _passed(_tables()) == {"pca_vs_ae latent 2": "yes", "finetune at 100 labels": "yes",
                                  "augmentation at 100 labels": "yes", "generative_quality rbm": "yes"}


def test_each_check_fails_on_its_own_bad_number():
    assert _passed(_tables(ae_err=45.0))["pca_vs_ae latent 2"] == "no"
    assert _passed(_tables(ft=(23.5, 1.0)))["finetune at 100 labels"] == "no"  # gap 1.5 < larger std 2
    assert _passed(_tables(gain=(0.5, 1.0)))["augmentation at 100 labels"] == "no"  # classic's gain does not count
    assert _passed(_tables(recognised=0.6))["generative_quality rbm"] == "no"
    assert _passed(_tables(precision=0.4))["generative_quality rbm"] == "no"


def test_missing_tables_give_no_rows():
    assert field_checks({}).empty
