"""Tiny GGUF models for tests: random weights, a real llama layout, the default model's tokenizer.

They load in llama.cpp in milliseconds, so tests can make variants (no chat
template, another architecture, an adapter) without touching the real file.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from assistant.models.gguf_info import read_gguf_info

TOKENIZER_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
)


@cache
def tokenizer_of(model_path: Path) -> dict[str, Any]:
    info = read_gguf_info(model_path, full_arrays=True)
    return {k: info.metadata[k] for k in TOKENIZER_KEYS if k in info.metadata}


def write_tiny_llama(
    path: Path,
    tokenizer_from: Path,
    *,
    arch: str = "llama",
    chat_template: str | bool | None = True,
    general_type: str = "model",
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    context_length: int = 1024,
    seed: int = 0,
    extra_strings: dict[str, str] | None = None,
) -> Path:
    """Write a small llama-layout GGUF (F32). chat_template=True keeps the source's template."""
    import gguf

    tok = tokenizer_of(tokenizer_from)
    n_vocab = len(tok["tokenizer.ggml.tokens"])
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_type(general_type)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(context_length)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model(tok["tokenizer.ggml.model"])
    w.add_tokenizer_pre(tok["tokenizer.ggml.pre"])
    w.add_token_list(tok["tokenizer.ggml.tokens"])
    w.add_token_types(tok["tokenizer.ggml.token_type"])
    w.add_token_merges(tok["tokenizer.ggml.merges"])
    w.add_bos_token_id(tok["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(tok["tokenizer.ggml.eos_token_id"])
    w.add_add_bos_token(bool(tok.get("tokenizer.ggml.add_bos_token", False)))
    if chat_template is True:
        w.add_chat_template(tok["tokenizer.chat_template"])
    elif isinstance(chat_template, str):
        w.add_chat_template(chat_template)
    for key, value in (extra_strings or {}).items():
        w.add_string(key, value)
    hd = n_embd // n_head

    def t(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    w.add_tensor("token_embd.weight", t(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", t(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_k.weight", t(n_head_kv * hd, n_embd))
        w.add_tensor(f"blk.{i}.attn_v.weight", t(n_head_kv * hd, n_embd))
        w.add_tensor(f"blk.{i}.attn_output.weight", t(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", t(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", t(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", t(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_header_only(
    path: Path, arch: str, *, general_type: str = "model", extra: dict | None = None
) -> Path:
    """A valid GGUF with metadata and one tiny tensor: enough for checks made before loading."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_type(general_type)
    w.add_name(f"header-only-{arch}")
    w.add_context_length(512)
    for key, value in (extra or {}).items():
        w.add_string(key, value)
    w.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
