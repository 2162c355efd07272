"""The llama family: Llama 2/3.x, SmolLM/SmolLM2, TinyLlama, Mistral (dense)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.errors import ConversionError

from .base import Arch, Hparams, Rule

if TYPE_CHECKING:
    from gguf import GGUFWriter

_L = "model.layers.{bid}"
RULES = (
    Rule("model.embed_tokens", "token_embd"),
    Rule("model.norm", "output_norm"),
    Rule("lm_head", "output"),
    Rule(f"{_L}.input_layernorm", "blk.{bid}.attn_norm"),
    Rule(f"{_L}.self_attn.q_proj", "blk.{bid}.attn_q"),
    Rule(f"{_L}.self_attn.k_proj", "blk.{bid}.attn_k"),
    Rule(f"{_L}.self_attn.v_proj", "blk.{bid}.attn_v"),
    Rule(f"{_L}.self_attn.o_proj", "blk.{bid}.attn_output"),
    Rule(f"{_L}.post_attention_layernorm", "blk.{bid}.ffn_norm"),
    Rule(f"{_L}.mlp.gate_proj", "blk.{bid}.ffn_gate"),
    Rule(f"{_L}.mlp.up_proj", "blk.{bid}.ffn_up"),
    Rule(f"{_L}.mlp.down_proj", "blk.{bid}.ffn_down"),
)
IGNORE = (r"\.rotary_emb\.inv_freq$",)


def decoder_hparams(config: dict[str, Any]) -> Hparams:
    n_head = int(config["num_attention_heads"])
    n_embd = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or n_embd // n_head)
    return {
        "n_head": n_head,
        "n_head_kv": int(config.get("num_key_value_heads") or n_head),
        "head_dim": head_dim,
        "n_embd": n_embd,
    }


def hparams_from_gguf(arch: str) -> Any:
    def read(meta: dict[str, Any]) -> Hparams:
        n_head = int(meta[f"{arch}.attention.head_count"])
        return {"n_head": n_head, "n_head_kv": int(meta.get(f"{arch}.attention.head_count_kv", n_head))}

    return read


def permute_rows(arr: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores each head's rotary pairs as two halves; llama.cpp (normal RoPE) wants them interleaved.

    Works on any row-indexed tensor: weights (out, in), biases (out,), LoRA B (out, r).
    """
    rows = arr.shape[0]
    if rows % (2 * n_head):
        raise ConversionError(
            f"cannot split {rows} rows into {n_head} rotary heads; config.json does not fit the weights"
        )
    rest = arr.shape[1:]
    return arr.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(arr.shape)


def _transform(name: str, arr: np.ndarray, hp: Hparams) -> np.ndarray:
    if ".attn_q." in name:
        return permute_rows(arr, hp["n_head"])
    if ".attn_k." in name:
        return permute_rows(arr, hp["n_head_kv"])
    return arr


def add_decoder_metadata(
    w: GGUFWriter, config: dict[str, Any], hp: Hparams, *, rope_dims: bool = True
) -> None:
    w.add_context_length(int(config.get("max_position_embeddings") or 2048))
    w.add_embedding_length(hp["n_embd"])
    w.add_block_count(int(config["num_hidden_layers"]))
    w.add_feed_forward_length(int(config["intermediate_size"]))
    w.add_head_count(hp["n_head"])
    w.add_head_count_kv(hp["n_head_kv"])
    if rope_dims:
        w.add_rope_dimension_count(hp["head_dim"])
    if hp["head_dim"] != hp["n_embd"] // hp["n_head"]:
        w.add_key_length(hp["head_dim"])
        w.add_value_length(hp["head_dim"])
    w.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    rope = config.get("rope_parameters") or {}
    theta = config.get("rope_theta", rope.get("rope_theta"))
    if theta is not None:
        w.add_rope_freq_base(float(theta))
    scaling = config.get("rope_scaling") or rope or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear" and scaling.get("factor"):
        from gguf import RopeScalingType

        w.add_rope_scaling_type(RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(scaling["factor"]))
    elif kind == "yarn" and scaling.get("factor"):
        from gguf import RopeScalingType

        w.add_rope_scaling_type(RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(scaling["factor"]))
        if scaling.get("original_max_position_embeddings"):
            w.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
    elif kind not in (None, "default", "llama3"):
        raise ConversionError(
            f"config.json: rope_scaling type {kind!r} is not supported (linear, yarn, llama3)"
        )


def _metadata(w: GGUFWriter, config: dict[str, Any], model_dir: Path, hp: Hparams) -> None:
    add_decoder_metadata(w, config, hp)


def llama3_rope_freqs(config: dict[str, Any], hp: Hparams) -> list[tuple[str, np.ndarray]]:
    """Llama 3.1+ frequency factors ("rope_scaling": {"rope_type": "llama3"}) as the rope_freqs tensor."""
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return []
    base = float(config.get("rope_theta", 10000.0))
    dim = hp["head_dim"]
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    wavelen = 2 * math.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    factors = np.where(
        wavelen < old_ctx / high,
        1.0,
        np.where(wavelen > old_ctx / low, factor, 1.0 / ((1 - smooth) / factor + smooth)),
    )
    return [("rope_freqs.weight", factors.astype(np.float32))]


ARCH = Arch(
    name="llama",
    hf_architectures=("LlamaForCausalLM", "MistralForCausalLM"),
    rules=RULES,
    hparams=decoder_hparams,
    hparams_from_gguf=hparams_from_gguf("llama"),
    metadata=_metadata,
    ignore=IGNORE,
    transform=_transform,
    extra_tensors=llama3_rope_freqs,
    embed_module="model.embed_tokens",
    output_module="lm_head",
)
