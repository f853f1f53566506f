"""The ``genlib`` command line: listing, training, sampling, and one-line errors for every bad input.

Most cases call ``genlib.cli.main`` in-process (fast); a few run ``python -m genlib.cli`` in a subprocess,
since that is what users see (no traceback, exit code, exactly one line on stderr).
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlib.cli import main
from genlib.models import get_model, make_config
from genlib.training import save_checkpoint


MODEL_NAMES = ["ae", "cgan", "conv-ae", "cvae", "dae", "gan", "rbm", "vae"]
TINY_MLP = ["--set", "hidden_dims=[16]", "--latent-dim", "4", "--batch-size", "256", "--epochs", "1"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One prepared-data cache for the module, so digits is prepared once."""
    return tmp_path_factory.mktemp("genlib-cache")


@pytest.fixture(autouse=True)
def _isolated(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("GENLIB_DATA_ROOT", str(tmp_path / "no-data-root"))


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else int(code)), captured.out, captured.err


def run_subprocess(argv: list[str], tmp_path: Path, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENLIB_CACHE_DIR": str(cache_dir), "GENLIB_DATA_ROOT": str(tmp_path / "no-data-root"),
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "genlib.cli", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_nothing_written(path: Path) -> None:
    assert not path.exists() or (path.is_dir() and not any(path.iterdir())), list(path.iterdir())
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".genlib-train-")]
    assert leftovers == []


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def grid_side(n_images: int, nrow: int, size: int = 28, pad: int = 2) -> tuple[int, int]:
    rows = math.ceil(n_images / nrow)
    return nrow * (size + pad) + pad, rows * (size + pad) + pad


def tiny_checkpoint(path: Path, name: str, **extra) -> Path:
    """An untrained but valid checkpoint of ``name`` for 28x28 images, with tiny layers."""
    tiny = {
        "ae": {"hidden_dims": (8,), "latent_dim": 2},
        "vae": {"hidden_dims": (8,), "latent_dim": 2},
        "cvae": {"hidden_dims": (8,), "latent_dim": 2},
        "gan": {"latent_dim": 2, "generator_features": 2, "discriminator_features": 2},
        "cgan": {"latent_dim": 2, "generator_features": 2, "discriminator_features": 2},
        "rbm": {"hidden_units": 4, "sample_steps": 2},
    }[name]
    torch.manual_seed(0)
    model = get_model(name, make_config(name, {**tiny, **extra}))
    return save_checkpoint(path, model, epoch=1)


# --- what users see: subprocesses -----------------------------------------------------------------------


def test_models_lists_the_eight_names(tmp_path, cache_dir):
    proc = run_subprocess(["models"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.strip().splitlines()]
    assert names == MODEL_NAMES
    assert proc.stderr == ""


def test_train_vae_then_sample_end_to_end(tmp_path, cache_dir, capsys):
    out = tmp_path / "vae-run"
    proc = run_subprocess(["train", "vae", "--dataset", "digits", "--out", out, *TINY_MLP], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for f in ("model.pt", "metrics.json", "history.json", "reconstructions.png", "samples.png"):
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_loss", "test_recon", "test_kl", "test_mse", "test_sq_err_per_image", "train_loss", "val_loss"):
        assert math.isfinite(metrics[key]), key
    assert metrics["epochs_run"] == 1
    assert metrics["test_loss"] == pytest.approx(metrics["test_recon"] + metrics["test_kl"], rel=1e-5)
    # Labelled figures, upscaled: a 10x10 grid of samples, original and reconstruction rows.
    from genlib.images import SAMPLES_PER_ROW, SCALE

    side = SCALE * grid_side(SAMPLES_PER_ROW**2, SAMPLES_PER_ROW)[0]
    assert all(d >= side for d in png_size(out / "samples.png"))
    assert png_size(out / "reconstructions.png")[1] >= SCALE * grid_side(2, 1)[1]

    grid = tmp_path / "g.png"
    code, stdout, err = run_main(["sample", out / "model.pt", "--n", "16", "--out", grid], capsys)
    assert code == 0, err
    assert png_size(grid) == grid_side(16, 4)
    assert "16 samples" in stdout


@pytest.mark.parametrize("case", ["unknown-model", "corrupt-checkpoint"])
def test_errors_in_a_real_process_are_one_line_without_traceback(case, tmp_path, cache_dir):
    out = tmp_path / "out"
    if case == "unknown-model":
        argv, needles = ["train", "nope", "--out", out], ["nope", *MODEL_NAMES]
    elif case == "corrupt-checkpoint":
        bad = tmp_path / "model.pt"
        bad.write_bytes(b"this is not a torch file" * 10)
        out = tmp_path / "out" / "g.png"
        argv, needles = ["sample", bad, "--out", out], ["model.pt"]
    proc = run_subprocess(argv, tmp_path, cache_dir)
    assert proc.returncode == 2
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, *needles)
    assert not out.exists()


# --- training in-process --------------------------------------------------------------------------------


def test_train_ae_writes_model_metrics_and_reconstructions(tmp_path, capsys):
    out = tmp_path / "ae-run"
    code, stdout, err = run_main(["train", "ae", "--dataset", "digits", "--out", out, *TINY_MLP], capsys)
    assert code == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    written = {p.name for p in out.iterdir()}
    assert {"model.pt", "metrics.json", "history.json", "reconstructions.png"} <= written
    assert "samples.png" not in written  # ae does not generate
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_loss", "test_mse", "test_sq_err_per_image"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0, key
        assert key in stdout
    assert metrics["test_sq_err_per_image"] == pytest.approx(metrics["test_mse"] * 784, rel=1e-6)
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["config"]["model_name"] == "ae" and ckpt["config"]["latent_dim"] == 4
    assert ckpt["config"]["hidden_dims"] == [16] and ckpt["extra"]["dataset"] == "digits"
    assert len(json.loads((out / "history.json").read_text())) == 1


def test_train_into_an_existing_folder_keeps_other_files(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_main(["train", "ae", "--dataset", "digits", "--out", out, *TINY_MLP], capsys)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.pt").is_file()


def test_conditional_model_samples_with_labels(tmp_path, capsys):
    out = tmp_path / "cvae-run"
    code, _, err = run_main(["train", "cvae", "--dataset", "digits", "--out", out, *TINY_MLP], capsys)
    assert code == 0, err
    assert (out / "samples.png").is_file()
    grid = tmp_path / "labelled.png"
    code, stdout, err = run_main(["sample", out / "model.pt", "--n", "4", "--labels", "0,1", "--out", grid], capsys)
    assert code == 0, err
    assert png_size(grid) == grid_side(4, 2)
    # The labels reach the model: other labels give another grid from the same seed.
    other = tmp_path / "other.png"
    run_main(["sample", out / "model.pt", "--n", "4", "--labels", "7,8", "--out", other], capsys)
    assert grid.read_bytes() != other.read_bytes()


@pytest.mark.parametrize("name", ["gan", "cgan", "rbm"])
def test_sample_from_every_generative_family(name, tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "m.pt", name)
    grid = tmp_path / "g.png"
    code, _, err = run_main(["sample", ckpt, "--n", "9", "--seed", "3", "--out", grid], capsys)
    assert code == 0, err
    assert png_size(grid) == grid_side(9, 3)
    again = tmp_path / "again.png"
    run_main(["sample", ckpt, "--n", "9", "--seed", "3", "--out", again], capsys)
    assert grid.read_bytes() == again.read_bytes()


# --- every bad input: one line, non-zero exit, nothing written ------------------------------------------


def _corrupt_idx(folder: Path) -> Path:
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x12345678, 2, 28, 28) + bytes(2 * 784))
    (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x00000801, 2) + bytes([0, 1]))
    return folder


def _npz_without_x(path: Path) -> Path:
    np.savez(path, images=np.zeros((4, 8, 8), np.uint8), y=np.arange(4))
    return path


def _mixed_png_folders(folder: Path) -> Path:
    for cls, size in (("a", 8), ("b", 10)):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((size, size), 40 * i, np.uint8)).save(folder / cls / f"{i}.png")
    return folder


BAD_TRAIN = {
    "unknown-model": (["train", "nope"], ["nope", *MODEL_NAMES]),
    "unknown-dataset": (["train", "ae", "--dataset", "nope"], ["nope", "digits", "mnist", "fashion-mnist", "kmnist"]),
    "missing-path": (["train", "ae", "--dataset", "{tmp}/missing/data.npz"], ["missing/data.npz", "digits"]),
    "corrupt-idx": (["train", "ae", "--dataset", "{idx}"], ["train-images-idx3-ubyte", "magic"]),
    "npz-without-x": (["train", "ae", "--dataset", "{npz}"], ["data.npz", "'x'"]),
    "png-mixed-sizes": (["train", "ae", "--dataset", "{png}"], ["10x10", "8x8"]),
    "latent-dim-0": (["train", "ae", "--dataset", "digits", "--latent-dim", "0"], ["latent_dim"]),
    "latent-dim-gan": (["train", "gan", "--dataset", "digits", "--latent-dim", "-2"], ["latent_dim"]),
    "latent-dim-rbm": (["train", "rbm", "--dataset", "digits", "--latent-dim", "4"], ["latent-dim", "rbm"]),
    "lr-0": (["train", "ae", "--dataset", "digits", "--lr", "0"], ["lr"]),
    "lr-negative": (["train", "ae", "--dataset", "digits", "--lr", "-1"], ["lr"]),
    "lr-negative-rbm": (["train", "rbm", "--dataset", "digits", "--lr=-0.5"], ["lr"]),
    "noise-level": (["train", "dae", "--dataset", "digits", "--set", "noise_level=1.5"], ["noise_level"]),
    "unknown-field": (["train", "ae", "--dataset", "digits", "--set", "hiden_dims=[3]"], ["hiden_dims"]),
    "bad-set-syntax": (["train", "ae", "--dataset", "digits", "--set", "latent_dim"], ["latent_dim", "FIELD=VALUE"]),
    "epochs-0": (["train", "ae", "--dataset", "digits", "--epochs", "0"], ["epochs"]),
    "batch-size-0": (["train", "ae", "--dataset", "digits", "--batch-size", "0"], ["batch_size"]),
    "gan-batch-size-1": (["train", "gan", "--dataset", "digits", "--batch-size", "1", "--latent-dim", "2",
                          "--set", "generator_features=2", "--set", "discriminator_features=2"], ["batch_size"]),
    "unknown-device": (["train", "ae", "--dataset", "digits", "--device", "tpu"], ["tpu"]),
    "conv-shape": (["train", "conv-ae", "--dataset", "{png-odd}"], ["divisible"]),
    "too-few-images": (["train", "ae", "--dataset", "{png-few}"], ["split is empty"]),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_bad_train_input_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    argv, needles = BAD_TRAIN[case]
    paths = {"tmp": str(tmp_path)}
    if "{idx}" in argv:
        paths["idx"] = str(_corrupt_idx(tmp_path / "idx"))
    if "{npz}" in argv:
        paths["npz"] = str(_npz_without_x(tmp_path / "data.npz"))
    if "{png}" in argv:
        paths["png"] = str(_mixed_png_folders(tmp_path / "pngs"))
    if "{png-odd}" in argv:  # 10x10 images: conv models need sizes divisible by 4
        folder = tmp_path / "odd"
        for cls in ("a", "b"):
            (folder / cls).mkdir(parents=True)
            for i in range(8):
                Image.fromarray(np.full((10, 10), 20 * i, np.uint8)).save(folder / cls / f"{i}.png")
        paths["png-odd"] = str(folder)
    if "{png-few}" in argv:  # 4 images: the seeded split leaves no validation example
        folder = tmp_path / "few"
        for cls in ("a", "b"):
            (folder / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((8, 8), 50 * i, np.uint8)).save(folder / cls / f"{i}.png")
        paths["png-few"] = str(folder)
    out = tmp_path / "out"
    for key, value in paths.items():
        argv = [a.replace("{" + key + "}", value) for a in argv]
    if "--epochs" not in argv:
        argv = [*argv, "--epochs", "1"]
    code, stdout, err = run_main([*argv, "--out", out], capsys)
    assert code == 2
    assert_one_line_error(code, stdout, err, *needles)
    assert_nothing_written(out)


def test_train_refuses_an_out_path_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("keep me")
    code, stdout, err = run_main(["train", "ae", "--dataset", "digits", "--out", out, *TINY_MLP], capsys)
    assert_one_line_error(code, stdout, err, "--out", "not a folder")
    assert out.read_text() == "keep me"


def test_a_diverging_run_writes_nothing(tmp_path, capsys, monkeypatch):
    from genlib.models.autoencoders import AE

    original = AE.loss

    def nan_loss(self, x, y=None):
        out = original(self, x, y)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(AE, "loss", nan_loss)
    out = tmp_path / "out"
    code, stdout, err = run_main(["train", "ae", "--dataset", "digits", "--out", out, *TINY_MLP], capsys)
    assert_one_line_error(code, stdout, err, "diverged")
    assert_nothing_written(out)


@pytest.fixture
def checkpoints(tmp_path) -> dict[str, Path]:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(300))
    truncated = tmp_path / "truncated.pt"
    tiny_checkpoint(tmp_path / "whole.pt", "vae")
    truncated.write_bytes((tmp_path / "whole.pt").read_bytes()[:500])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    return {
        "ae": tiny_checkpoint(tmp_path / "ae.pt", "ae"),
        "vae": tiny_checkpoint(tmp_path / "vae.pt", "vae"),
        "cgan": tiny_checkpoint(tmp_path / "cgan.pt", "cgan"),
        "corrupt": corrupt,
        "truncated": truncated,
        "foreign": foreign,
        "missing": tmp_path / "missing.pt",
    }


BAD_SAMPLE = {
    "non-generative": ("ae", [], ["does not generate"]),
    "missing-checkpoint": ("missing", [], ["missing.pt"]),
    "corrupt-checkpoint": ("corrupt", [], ["corrupt.pt"]),
    "truncated-checkpoint": ("truncated", [], ["truncated.pt"]),
    "not-a-genlib-checkpoint": ("foreign", [], ["foreign.pt", "genlib checkpoint"]),
    "labels-unconditional": ("vae", ["--labels", "0,1"], ["--labels", "vae"]),
    "labels-out-of-range": ("cgan", ["--labels", "0,10"], ["labels"]),
    "labels-not-integers": ("cgan", ["--labels", "one,two"], ["--labels"]),
    "labels-do-not-divide-n": ("cgan", ["--n", "4", "--labels", "0,1,2"], ["--labels"]),
    "out-not-png": ("vae", ["--out-name", "g.txt"], [".png"]),
    "out-is-a-folder": ("vae", ["--out-name", "folder.png"], [".png"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SAMPLE))
def test_bad_sample_input_is_one_line_and_writes_nothing(case, checkpoints, tmp_path, capsys):
    which, extra, needles = BAD_SAMPLE[case]
    out = tmp_path / "out" / "g.png"
    if extra[:1] == ["--out-name"]:
        out = out.parent / extra[1]
        extra = []
        if out.suffix == ".png":
            out.mkdir(parents=True)
    code, stdout, err = run_main(["sample", checkpoints[which], *extra, "--out", out], capsys)
    assert code == 2
    assert_one_line_error(code, stdout, err, *needles)
    if out.is_dir():
        assert list(out.iterdir()) == []
    else:
        assert not out.parent.exists()


USAGE_ERRORS = {
    "n-0": (["sample", "{tmp}/model.pt", "--n", "0", "--out", "{out}/g.png"], ["--n"]),
    "epochs-not-a-number": (["train", "ae", "--epochs", "abc", "--out", "{out}"], ["--epochs"]),
    "missing-out": (["train", "ae"], ["--out"]),
    "unknown-option": (["train", "ae", "--epoch", "3", "--out", "{out}"], ["--epoch"]),
    "unknown-command": (["trian", "ae", "--out", "{out}"], ["trian"]),
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_are_one_line_too(case, tmp_path, capsys):
    argv, needles = USAGE_ERRORS[case]
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{out}", str(out)) for a in argv]
    code, stdout, err = run_main(argv, capsys)
    assert code == 2
    line = assert_one_line_error(code, stdout, err, *needles)
    assert "--help" in line  # points to the help instead of printing the usage block
    assert not out.exists()


def test_help_still_works(capsys):
    code, stdout, err = run_main(["train", "--help"], capsys)
    assert code == 0 and err == ""
    assert "--latent-dim" in stdout and "--out" in stdout


# --- help, start-up and the model catalog -----------------------------------------------------------------


def _all_commands():
    import typer

    from genlib.cli import app

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def test_every_option_has_help_and_no_help_page_shows_type_artefacts(capsys):
    seen = 0
    for path, command in _all_commands():
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"genlib {' '.join(path)} {param.opts[0]} has no help text"
        code, stdout, err = run_main([*path, "--help"], capsys)
        assert code == 0 and err == "", path
        for artefact in ("<bool>", "<str>", "<int>", "<float>", "<path>", "{"):
            assert artefact not in stdout, (path, artefact)
        seen += 1
    assert seen >= 11  # the app, ten commands, the registry group


def test_usage_names_the_argument_plainly(capsys):
    _, stdout, _ = run_main(["promote", "--help"], capsys)
    assert "Usage: genlib promote [OPTIONS] NAME" in " ".join(stdout.split())


@pytest.mark.parametrize("argv", [["--help"], ["models"], ["datasets"]])
def test_listing_commands_import_neither_torch_prefect_nor_mlflow(argv, tmp_path):
    code = ("import sys\nfrom genlib.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    code = e.code\nprint(sorted(m for m in ('torch', 'prefect', 'mlflow') if m in sys.modules), code)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[] 0", proc.stdout + proc.stderr


def test_the_catalog_agrees_with_the_model_classes():
    from genlib.models import GenerativeModel, get_model_class, list_models
    from genlib.models.catalog import BUILTIN, CLASS_FIELDS, builtin_names, model_info

    assert builtin_names() == list_models() == MODEL_NAMES
    for name in builtin_names():
        cls, info = get_model_class(name), model_info(name)
        assert (cls.__name__, cls.__module__) == (info.class_name, info.module)
        assert {f: getattr(cls, f) for f in CLASS_FIELDS} == info.class_values(), name
        # ... and with what the class implements
        assert (cls.sample is not GenerativeModel.sample) == info.generates, name
        assert (cls.reconstruct is not GenerativeModel.reconstruct) == info.reconstructs, name
    assert {n for n, i in BUILTIN.items() if i.conditional} == {"cgan", "cvae"}


def test_models_command_prints_the_catalog(capsys):
    from genlib.models.catalog import model_info

    code, stdout, _ = run_main(["models"], capsys)
    assert code == 0
    for line in stdout.strip().splitlines():
        name, class_name, *caps = line.replace(",", "").split()
        info = model_info(name)
        assert class_name == info.class_name and caps == info.capabilities


@pytest.mark.parametrize("argv, needle", [
    (["pipeline", "--set", "nope=1"], "unknown field 'nope'"),
    (["pipeline", "--models", "ae", "--set", "noise_level=0.2"], "none of ae has that field"),
    (["pipeline", "--models", "ae", "--set", "train.epochs=0"], "invalid train config: epochs"),
])
def test_pipeline_set_is_the_one_parser_and_fails_in_one_line_before_any_work(argv, needle, capsys):
    code, _, err = run_main(argv, capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "got {" not in err
