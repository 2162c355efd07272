"""BERT: embeddings through llama.cpp against a numpy reference forward on the HF weights."""

from __future__ import annotations

import json
from pathlib import Path

import cvt_models
import numpy as np
import pytest
from cvt_reference import bert_embedding

from convert.api import convert_model

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "GGUF is a file format for llama.cpp models.",
    "How do I reset my password?",
    "Une phrase en français, avec des accents: élève, garçon.",
    "Numbers 12345 and symbols #!$% in code: def f(x): return x**2",
    "a",
    "Offline assistants run small models on laptops without any network access at all. " * 3,
]


@pytest.mark.parametrize("quant", ["F32", "F16"])
def test_tiny_bert_embeddings(tmp_path: Path, llama_run, quant: str) -> None:
    model = cvt_models.make_bert(tmp_path / "bert")
    out = tmp_path / "b.gguf"
    convert_model(model.path, out, quant=quant)
    run = llama_run(out, embeddings=True, n_ctx=128)
    assert run.meta("bert.pooling_type") == "1"
    for text in TEXTS[:5]:
        ids = model.tokenizer.encode(text).ids
        assert run.tokenize(text, add_special=True) == ids
        cos = float(run.embedding(ids) @ bert_embedding(model.weights, model.config, ids))
        assert cos > 0.9999, (text, cos)


@pytest.fixture(scope="module")
def minilm_weights(minilm_src: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k: v for k, v in load_file(minilm_src / "model.safetensors").items() if v.dtype != np.int64}


@pytest.mark.parametrize("quant", ["F16", "F32"])
def test_real_minilm_cosine(tmp_path: Path, minilm_src: Path, minilm_weights, llama_run, quant: str) -> None:
    """all-MiniLM-L6-v2 converted by us: mean-pooled, normalised embeddings vs the numpy reference."""
    from tokenizers import Tokenizer

    out = tmp_path / "minilm.gguf"
    convert_model(minilm_src, out, quant=quant)
    cfg = json.loads((minilm_src / "config.json").read_text())
    tok = Tokenizer.from_file(str(minilm_src / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    run = llama_run(out, embeddings=True, n_ctx=512)
    for text in TEXTS:
        ids = tok.encode(text).ids
        cos = float(run.embedding(ids) @ bert_embedding(minilm_weights, cfg, ids))
        assert cos >= 0.999, (text, cos)


def test_setup_installed_minilm_is_current(minilm_src: Path, llama_run) -> None:
    """./setup.sh converted the embedding model into models/ with the chosen type."""
    from convert.minilm import MINILM_QUANT
    from convert.setup_recipes import gguf_current

    gguf = minilm_src.parent.parent / "all-MiniLM-L6-v2.gguf"
    assert gguf_current("minilm.toml", gguf)
    run = llama_run(gguf, embeddings=True, n_ctx=512)
    assert run.meta("general.architecture") == "bert" and MINILM_QUANT == "F16"
