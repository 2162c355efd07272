"""Random PEFT LoRA adapters for tests (a real PEFT layout: adapter_config.json + safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from assistant.models.gguf_info import read_gguf_info


def write_random_peft_adapter(path: Path, model_path: Path, rank: int = 8) -> Path:
    """A PEFT-format LoRA for a llama-layout GGUF on the attention and MLP of every third layer."""
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
    for layer in range(0, info.get("llama.block_count"), 3):  # every third layer
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
