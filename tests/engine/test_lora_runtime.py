"""Runtime LoRA through the engine: apply, change scale, remove, without reloading the base."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.engine import ChatModel, Message, SamplingParams
from assistant.errors import ModelError
from assistant.models.gguf_info import read_gguf_info

Q = [Message("user", "List three fruits.")]
GREEDY = SamplingParams(temperature=0, max_tokens=24)


def write_random_peft_adapter(path: Path, model_path: Path, rank: int = 8) -> Path:
    """A PEFT-format LoRA for the default model on a few attention and MLP layers."""
    from safetensors.numpy import save_file

    info = read_gguf_info(model_path)
    n_embd, n_ff = info.get("llama.embedding_length"), info.get("llama.feed_forward_length")
    n_head, n_kv = info.get("llama.attention.head_count"), info.get("llama.attention.head_count_kv")
    hd = n_embd // n_head
    shapes = {
        "self_attn.q_proj": (n_head * hd, n_embd),
        "self_attn.v_proj": (n_kv * hd, n_embd),
        "mlp.down_proj": (n_embd, n_ff),
    }
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(0, 30, 3):
        for mod, (out_f, in_f) in shapes.items():
            key = f"base_model.model.model.layers.{layer}.{mod}"
            tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, in_f)) / np.sqrt(in_f)).astype(
                np.float32
            )
            tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((out_f, rank)) * 0.2).astype(np.float32)
    path.mkdir()
    save_file(tensors, str(path / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": ["q_proj", "v_proj", "down_proj"],
    }
    (path / "adapter_config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def lora_gguf(tmp_path_factory, default_model_path) -> Path:
    from convert.api import convert_adapter

    d = tmp_path_factory.mktemp("lora")
    peft_dir = write_random_peft_adapter(d / "peft", default_model_path)
    out = d / "style.gguf"
    convert_adapter(peft_dir, default_model_path, out, outtype="f16")
    return out


@pytest.fixture(scope="module")
def model(default_model_path):
    m = ChatModel(default_model_path, n_ctx=512)
    yield m
    m.close()


def test_apply_change_and_remove_adapter(model, lora_gguf):
    base = model.chat(Q, GREEDY).text()
    model.set_adapters([(lora_gguf, 1.0)])
    assert model.adapters == [(lora_gguf, 1.0)]
    tuned = model.chat(Q, GREEDY).text()
    assert tuned != base
    model.set_adapters([(lora_gguf, 0.0)])  # scale 0: the base model again
    assert model.chat(Q, GREEDY).text() == base
    model.set_adapters([])
    assert model.adapters == []
    assert model.chat(Q, GREEDY).text() == base


def test_adapter_errors(model, tmp_path, default_model_path):
    with pytest.raises(ModelError, match="not found"):
        model.set_adapters([(tmp_path / "missing.gguf", 1.0)])
    with pytest.raises(ModelError, match="not a LoRA adapter"):
        model.set_adapters([(default_model_path, 1.0)])
    assert model.adapters == []
