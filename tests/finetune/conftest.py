"""Fixtures for `assistant finetune`: a tiny generated HF model and text to train on."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.finetune import corpus_text, cvt_models


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer llama in Hugging Face layout (F32 safetensors, a real byte-level tokenizer, a chat template)."""
    return cvt_models.make_decoder(tmp_path_factory.mktemp("ft-model") / "tiny", layers=2).path


@pytest.fixture(scope="session")
def doc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ft-data") / "notes.txt"
    path.write_text(corpus_text(4), encoding="utf-8")
    return path
