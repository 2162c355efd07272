"""Runtime LoRA through the engine: apply, change scale, remove, without reloading the base."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.lora import write_random_peft_adapter

from assistant.engine import ChatModel, Message, SamplingParams
from assistant.errors import ModelError

Q = [Message("user", "List three fruits.")]
GREEDY = SamplingParams(temperature=0, max_tokens=24)


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
