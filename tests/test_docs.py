"""The bash blocks of README.md, docs/deploy.md and mlflow/README.md as a user copies them: every block is
marked (runs on one machine, or only checked), every command starts with something a fresh shell has (the
project's own commands go through ``uv run``), and (slow) the one-machine blocks run as written in a fresh
checkout, in a shell whose PATH does not hold the virtual environment."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import ROOT, free_port

DOCS = ("README.md", "docs/deploy.md", "mlflow/README.md")
ONE_MACHINE, AFTER_PIPELINE, CHECKED = "one-machine", "one-machine, after a pipeline", "checked only: "
MARKER = re.compile(r"<!-- example: (.+?) -->")
# What a fresh shell has: make, python3 and pip, the uv that make bootstrapped, shell builtins, common tools.
FIRST_WORDS = {"make", "uv", "python3", "pip", "curl", "git", "cd", "export", "eval", "source", "cat", "echo",
               "./mlflow/serve.sh"}
VENV_ONLY = {"genlib", "prefect", "mlflow", "python", "pytest"}  # on PATH only inside the virtual environment
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    kind: str
    text: str


def bash_blocks(doc: str) -> list[Block]:
    """Every ```bash block of ``doc`` with the marker on the last non-blank line before it ('' when none)."""
    lines = (ROOT / doc).read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != "```bash":
            continue
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.fullmatch(before)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        blocks.append(Block(doc, i + 1, marker.group(1) if marker else "", "\n".join(lines[i + 1:end]) + "\n"))
    return blocks


ALL_BLOCKS = [b for doc in DOCS for b in bash_blocks(doc)]


def commands(block: str) -> list[list[str]]:
    """The simple commands of a block (continuations joined, comments dropped, split at ; && || |), words
    after leading VAR=value assignments; plus the command of every ``$(...)`` substitution."""
    out: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in {";", "&&", "||", "|", "&"}:
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0], re.S):
                    words.pop(0)
                if words:
                    out.append(words)
                words = []
            else:
                words.append(token)
        out.extend(shlex.split(inner) for inner in re.findall(r"\$\(([^()]*)\)", line))
    return out


def no_venv_path() -> str:
    """This PATH without the virtual environment: what a fresh shell after `make` has (uv's folder stays)."""
    venv = {VENV_BIN.resolve(), (ROOT / ".venv" / "bin").resolve()}
    if os.environ.get("VIRTUAL_ENV"):
        venv.add((Path(os.environ["VIRTUAL_ENV"]) / "bin").resolve())
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p).resolve() not in venv)


def fresh_shell_env(**extra: str) -> dict[str, str]:
    """A user's environment without the virtual environment on PATH and no servers configured; ``uv run``
    must not re-sync the shared environment (UV_NO_SYNC: the checkout's .venv is synced already)."""
    path = no_venv_path()
    if shutil.which("uv", path=path) is None:
        pytest.skip("uv is not on PATH outside the virtual environment (make bootstraps it)")
    assert not [w for w in ("genlib", "prefect", "mlflow") if shutil.which(w, path=path)], "PATH still has the venv"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "MLFLOW_", "GENLIB_", "UV_")) and k not in {"VIRTUAL_ENV", "MAKEFLAGS"}}
    env.update(PATH=path, UV_NO_SYNC="1", OMP_NUM_THREADS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               GENLIB_CACHE_DIR=os.environ["GENLIB_CACHE_DIR"], **extra)
    return env


# --- fast ---------------------------------------------------------------------------------------------


def test_every_block_is_marked_and_the_run_blocks_are_there():
    assert len(ALL_BLOCKS) >= 15
    unmarked = [f"{b.doc}:{b.line}" for b in ALL_BLOCKS
                if b.kind not in (ONE_MACHINE, AFTER_PIPELINE) and not b.kind.startswith(CHECKED)]
    assert not unmarked, f"bash blocks without <!-- example: one-machine | checked only: why -->: {unmarked}"
    runs = [(b.doc, b.kind) for b in ALL_BLOCKS if not b.kind.startswith(CHECKED)]
    assert runs == [("README.md", AFTER_PIPELINE), ("README.md", ONE_MACHINE), ("docs/deploy.md", ONE_MACHINE)]


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: f"{b.doc}:{b.line}")
def test_every_command_starts_with_what_a_fresh_shell_has(block):
    found = commands(block.text)
    assert found, block.text
    for words in found:
        first = words[0]
        assert first not in VENV_ONLY, f"{block.doc}:{block.line}: bare `{first}` (write `uv run {first}`)"
        assert first in FIRST_WORDS, f"{block.doc}:{block.line}: `{first}` is not on a fresh shell's PATH"
        if first == "uv" and words[1:2] == ["run"]:
            assert words[2] in VENV_ONLY, words
    # eval "$(...)" would hide the command's exit status (eval of empty output succeeds).
    assert 'eval "$(' not in block.text


def test_commands_parse_as_a_shell_does():
    assert commands('A=1 B="x y" uv run genlib x && make down  # c\nexport X="$(cat f)"\n') == [
        ["uv", "run", "genlib", "x"], ["make", "down"], ["export", 'X=$(cat f)'], ["cat", "f"]]
    assert commands("uv run prefect a \\\n  --param b='{\"c\": 1}'\nv=\"$(uv run genlib stack env)\"\n") == [
        ["uv", "run", "prefect", "a", "--param", 'b={"c": 1}'], ["uv", "run", "genlib", "stack", "env"]]


def test_stack_env_lines_fail_visibly_when_the_stack_is_down(tmp_path):
    """docs/deploy.md's two lines after `make up`, with no stack: the shell stops with genlib's status 2 and one
    error line (the one-line ``eval "$(...)"`` form would have gone on with exit 0)."""
    (block,) = [b for b in ALL_BLOCKS if b.doc == "docs/deploy.md" and b.kind == ONE_MACHINE]
    lines = block.text.splitlines()
    start = next(i for i, line in enumerate(lines) if "genlib stack env" in line)
    script = "\n".join(lines[start:start + 2]) + "\necho reached\n"
    assert script.splitlines()[1].startswith('eval "$env_lines"')
    env = fresh_shell_env(GENLIB_STACK_DIR=str(tmp_path / "genlib"))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "reached" not in done.stdout
    assert done.stderr.strip() == "error: genlib stack is not running here; start it with `make up`"
    hidden = subprocess.run(["bash", "-euo", "pipefail", "-c", 'eval "$(uv run genlib stack env)"; echo reached'],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert hidden.returncode == 0 and "reached" in hidden.stdout  # why the docs take two lines


# --- slow: the blocks as written ------------------------------------------------------------------------


def fresh_checkout(folder: Path) -> Path:
    """A checkout of its own (links to this one's files, the shared .venv among them) with empty mlflow/,
    .genlib/ and runs/: the blocks' stores, logs and outputs stay in ``folder``."""
    checkout = folder / "checkout"
    checkout.mkdir()
    for item in ROOT.iterdir():
        if item.name not in {".git", "mlflow", ".genlib", "runs", ".pytest_cache", "outputs", "mlruns"}:
            (checkout / item.name).symlink_to(item)
    (checkout / "mlflow").mkdir()
    (checkout / "mlflow" / "serve.sh").symlink_to(ROOT / "mlflow" / "serve.sh")
    return checkout


def run_block(block: Block, checkout: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], env=env, cwd=checkout,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"{block.doc}:{block.line}", done.stdout[-3000:], done.stderr[-3000:])
    return done


def editable_target() -> str:
    dist = next((VENV_BIN.parent / "lib").glob("python3*/site-packages/genlib-*.dist-info"))
    return json.loads((dist / "direct_url.json").read_text())["url"]


@pytest.mark.slow
def test_one_machine_blocks_run_as_written_without_the_venv_on_path(tmp_path):
    """README's one-machine blocks (its CLI examples, then the commands that read a pipeline's store) and
    docs/deploy.md's (make up ... make down), each in its own `bash -euo pipefail`, on ports of their own.
    README's `make run` / `make test` block is not run: make run takes minutes and its pipeline runs on digits
    in tests/test_flows.py; make test is this suite."""
    installed = editable_target()
    checkout = fresh_checkout(tmp_path)
    # make's own `uv sync` is skipped (UV=:); RUN is its uv run without the sync, as UV_NO_SYNC does for the
    # blocks' own `uv run` lines.
    env = fresh_shell_env(MAKEFLAGS="UV=: RUN=uv\\ run\\ --frozen\\ --no-sync", PREFECT_WORKER_QUERY_SECONDS="2",
                          UP_ARGS=f"--prefect-port {free_port()} --mlflow-port {free_port()}")
    readme = {b.kind: b for b in ALL_BLOCKS if b.doc == "README.md" and not b.kind.startswith(CHECKED)}
    (deploy,) = [b for b in ALL_BLOCKS if b.doc == "docs/deploy.md" and b.kind == ONE_MACHINE]
    assert deploy.text.startswith("make up") and deploy.text.rstrip().endswith(
        "make down                                   # stops workers (and their flow runs), then both servers")
    try:
        run_block(readme[ONE_MACHINE], checkout, env, timeout=1500)
        assert (checkout / "runs" / "vae" / "grid.png").is_file()
        listed = run_block(readme[AFTER_PIPELINE], checkout, env, timeout=300)
        assert "genlib-vae-digits" in listed.stdout and "genlib-gan-digits" in listed.stdout
        done = run_block(deploy, checkout, env, timeout=1500)
        assert "genlib stack started" in done.stdout and "genlib-ae-digits" in done.stdout
        assert "genlib stack stopped" in done.stdout
    finally:
        subprocess.run(["make", "down"], env=env, cwd=checkout, capture_output=True, timeout=300)
        assert editable_target() == installed  # nothing re-synced the shared environment onto the copy
