"""A model home with a tiny generated chat model (random weights, the default model's tokenizer and
template) and the real embedding model; a small QA file with contexts (support/eval_data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.eval_data import qa_lines, write_qa
from support.gguf_factory import write_tiny_llama

MODELS = Path(__file__).resolve().parents[2] / "models"
EMBED_MODEL_NAME = "all-MiniLM-L6-v2.gguf"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-chat.gguf", default_model_path)


@pytest.fixture
def tiny_home(home: Path, tiny_model: Path) -> Path:
    """The tiny chat model as the home's only chat model, and the real embedding model."""
    embed = MODELS / EMBED_MODEL_NAME
    if not embed.is_file():
        pytest.fail(f"{embed} is missing: run ./setup.sh")
    (home / tiny_model.name).symlink_to(tiny_model)
    (home / EMBED_MODEL_NAME).symlink_to(embed)
    return home


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    return write_qa(tmp_path / "qa.jsonl", qa_lines())
