"""``genlib train`` resumes: killed with SIGKILL and run again, it continues from its last checkpoint
(kept beside ``--out``, never inside it) to the weights of an uninterrupted run; other settings start afresh."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genlib.cli import main
from genlib.cli.train import partial_folder
from genlib.training.checkpoint import (
    KEY_FILE,
    LAST_CHECKPOINT,
    checkpoint_epoch,
    claim_resume_folder,
    load_checkpoint,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 60  # long enough to be killed mid-run
# Tiny and on the CPU, one thread each (conftest sets the test process's): exact equality holds.
COMMAND = ["train", "vae", "--dataset", "digits", "--device", "cpu", "--set", "hidden_dims=[16]", "--latent-dim", "4",
           "--batch-size", "64", "--epochs", str(EPOCHS), "--set", "train.checkpoint_every=1"]
FAST_EPOCHS = 6
FAST_COMMAND = [*COMMAND[:COMMAND.index("--epochs")], "--epochs", str(FAST_EPOCHS), "--set", "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One prepared-data cache for the module, so digits is prepared once."""
    return tmp_path_factory.mktemp("genlib-cache")


@pytest.fixture()
def env(cache, monkeypatch) -> dict[str, str]:
    """The environment of a `genlib train` subprocess; the test process gets the same cache."""
    monkeypatch.setenv("GENLIB_CACHE_DIR", str(cache))
    return {**os.environ, "GENLIB_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def genlib_train(out: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genlib.cli", *COMMAND, "--out", str(out)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    return int(exit_info.value.code or 0), capsys.readouterr().out


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = load_checkpoint(a).model.state_dict(), load_checkpoint(b).model.state_dict()
    assert left.keys() == right.keys()
    for name, value in left.items():
        assert torch.equal(value, right[name]), name


def interrupt_after_checkpoint(monkeypatch, epoch: int) -> None:
    """Make the next in-process fit stop, as a Ctrl-C would, right after its checkpoint of ``epoch``."""
    import genlib.training.loop as loop

    def save_then_stop(path, model, optimizers=None, epoch_done=None, extra=None):
        written = save_checkpoint(path, model, optimizers, epoch_done, extra)
        if epoch_done == epoch:
            raise KeyboardInterrupt
        return written

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)


def test_interrupted_train_resumes_and_other_settings_start_afresh(tmp_path, env, capsys, monkeypatch):
    out = tmp_path / "runs" / "vae"
    partial = partial_folder(out)
    assert partial == tmp_path / "runs" / ".vae.partial"
    command = [*FAST_COMMAND, "--out", out]

    with monkeypatch.context() as patch:
        interrupt_after_checkpoint(patch, 3)
        code, _ = run_main(command, capsys)
    assert code == 130
    assert not out.exists()  # all or nothing: the checkpoint lives beside --out
    assert [p.name for p in out.parent.iterdir()] == [partial.name]
    assert checkpoint_epoch(partial / LAST_CHECKPOINT) == 3
    kept = shutil.copytree(partial, tmp_path / "kept")

    code, stdout = run_main(command, capsys)
    assert code == 0
    assert [line for line in stdout.splitlines() if line.startswith("resum")] == [
        f"resumed vae from epoch 3 (checkpoint {partial / LAST_CHECKPOINT})"]
    assert not partial.exists()  # a finished run leaves nothing to resume
    assert sorted(p.name for p in out.parent.iterdir()) == ["vae"]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, FAST_EPOCHS + 1))

    reference = tmp_path / "reference"
    code, stdout = run_main([*FAST_COMMAND, "--out", reference], capsys)
    assert code == 0 and "resumed" not in stdout
    assert_same_weights(out / "model.pt", reference / "model.pt")
    assert json.loads((reference / "history.json").read_text()) == history

    # Other settings with the same --out do not resume the interrupted run: they start at epoch 1.
    shutil.copytree(kept, partial)
    code, stdout = run_main([*command, "--lr", "0.01"], capsys)
    assert code == 0
    assert "resumed" not in stdout
    assert f"not resuming: {partial} held a training with other settings or data; starting from epoch 1" in stdout
    retrained = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in retrained] == list(range(1, FAST_EPOCHS + 1))
    assert retrained[0]["train_loss"] != history[0]["train_loss"]  # epoch 1 trained again, at the new rate
    assert not partial.exists()


# The real thing: a `genlib train` process killed with SIGKILL, and the same command run again.
def test_killed_train_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, env, capsys):
    out = tmp_path / "runs" / "vae"
    partial = partial_folder(out)

    first = genlib_train(out, env, tmp_path)
    deadline = time.monotonic() + 120
    try:
        while not (partial / LAST_CHECKPOINT).is_file():
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait()
    killed_at = checkpoint_epoch(partial / LAST_CHECKPOINT)
    assert 1 <= killed_at < EPOCHS
    assert not out.exists()  # all or nothing
    assert [p.name for p in out.parent.iterdir()] == [partial.name]

    # The same command again: one line says from which epoch it resumed.
    second = genlib_train(out, env, tmp_path)
    stdout, _ = second.communicate(timeout=300)
    assert second.returncode == 0, stdout[-3000:]
    assert [line for line in stdout.splitlines() if line.startswith("resum")] == [
        f"resumed vae from epoch {killed_at} (checkpoint {partial / LAST_CHECKPOINT})"]
    assert not partial.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["vae"]

    # An uninterrupted run of the same command (in-process, one thread as in the subprocess).
    reference = tmp_path / "reference"
    code, _ = run_main([*COMMAND, "--out", reference], capsys)
    assert code == 0
    assert_same_weights(out / "model.pt", reference / "model.pt")
    assert json.loads((reference / "history.json").read_text()) == json.loads((out / "history.json").read_text())


def test_claim_resume_folder_keeps_its_own_checkpoint_and_empties_another_key(tmp_path):
    from genlib.models import get_model, make_config

    folder = tmp_path / ".out.partial"
    fresh = claim_resume_folder(folder, "key-a")
    assert (fresh.epoch, fresh.discarded, fresh.resume_from) == (0, False, None)
    assert json.loads((folder / KEY_FILE).read_text()) == {"key": "key-a"}

    model = get_model("ae", make_config("ae", {"hidden_dims": (8,), "latent_dim": 2}))
    save_checkpoint(folder / LAST_CHECKPOINT, model, epoch=7)
    again = claim_resume_folder(folder, "key-a")
    assert (again.epoch, again.discarded, again.resume_from) == (7, False, folder / LAST_CHECKPOINT)

    other = claim_resume_folder(folder, "key-b")
    assert (other.epoch, other.discarded, other.resume_from) == (0, True, None)
    assert sorted(p.name for p in folder.iterdir()) == [KEY_FILE]

    (folder / LAST_CHECKPOINT).write_bytes(b"cut short")  # unreadable: start again rather than fail
    assert claim_resume_folder(folder, "key-b").resume_from is None
