"""BERT encoders (sentence-transformers embedding models such as all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.errors import ConversionError

from .base import Arch, Hparams, Rule

if TYPE_CHECKING:
    from gguf import GGUFWriter

log = logging.getLogger(__name__)

_L = "encoder.layer.{bid}"
RULES = (
    Rule("embeddings.word_embeddings", "token_embd"),
    Rule("embeddings.position_embeddings", "position_embd"),
    Rule("embeddings.token_type_embeddings", "token_types"),
    Rule("embeddings.LayerNorm", "token_embd_norm"),
    Rule(f"{_L}.attention.self.query", "blk.{bid}.attn_q"),
    Rule(f"{_L}.attention.self.key", "blk.{bid}.attn_k"),
    Rule(f"{_L}.attention.self.value", "blk.{bid}.attn_v"),
    Rule(f"{_L}.attention.output.dense", "blk.{bid}.attn_output"),
    Rule(f"{_L}.attention.output.LayerNorm", "blk.{bid}.attn_output_norm"),
    Rule(f"{_L}.intermediate.dense", "blk.{bid}.ffn_up"),
    Rule(f"{_L}.output.dense", "blk.{bid}.ffn_down"),
    Rule(f"{_L}.output.LayerNorm", "blk.{bid}.layer_output_norm"),
)


def _hparams(config: dict[str, Any]) -> Hparams:
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(
            f"config.json: position_embedding_type {config['position_embedding_type']!r} is not supported "
            "for bert (only 'absolute')"
        )
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise ConversionError(
            f"config.json: hidden_act {act!r} is not supported for bert (llama.cpp uses GELU)"
        )
    return {"n_head": config["num_attention_heads"], "n_head_kv": config["num_attention_heads"]}


def _hparams_from_gguf(meta: dict[str, Any]) -> Hparams:
    n = int(meta["bert.attention.head_count"])
    return {"n_head": n, "n_head_kv": n}


POOLING = {"mean": 1, "cls": 2, "lasttoken": 3}  # gguf.PoolingType


def pooling_type(model_dir: Path) -> int | None:
    """Pooling from a sentence-transformers layout (modules.json -> */config.json)."""
    modules = model_dir / "modules.json"
    if not modules.is_file():
        return None
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
        pooling_dir = next(m["path"] for m in entries if str(m.get("type", "")).endswith("Pooling"))
        cfg = json.loads((model_dir / pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, StopIteration, KeyError, TypeError, json.JSONDecodeError) as exc:
        log.warning(
            "could not read the pooling mode from %s (%s); llama.cpp will use its default", modules, exc
        )
        return None
    if cfg.get("pooling_mode_mean_tokens"):
        return POOLING["mean"]
    if cfg.get("pooling_mode_cls_token"):
        return POOLING["cls"]
    if cfg.get("pooling_mode_lasttoken"):
        return POOLING["lasttoken"]
    return POOLING.get(str(cfg.get("pooling_mode")))


def _metadata(w: GGUFWriter, config: dict[str, Any], model_dir: Path, hp: Hparams) -> None:
    w.add_context_length(int(config["max_position_embeddings"]))
    w.add_embedding_length(int(config["hidden_size"]))
    w.add_feed_forward_length(int(config["intermediate_size"]))
    w.add_block_count(int(config["num_hidden_layers"]))
    w.add_head_count(int(config["num_attention_heads"]))
    w.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
    w.add_causal_attention(False)
    pooling = pooling_type(model_dir)
    if pooling is not None:
        from gguf import PoolingType

        w.add_pooling_type(PoolingType(pooling))


ARCH = Arch(
    name="bert",
    hf_architectures=("BertModel", "BertForMaskedLM", "BertForPreTraining"),
    rules=RULES,
    hparams=_hparams,
    hparams_from_gguf=_hparams_from_gguf,
    metadata=_metadata,
    ignore=(r"^embeddings\.position_ids$", r"^pooler\.", r"^cls\."),
    strip_prefixes=("bert.",),
    keep_f32=("token_types.",),  # added to F32 activations by llama.cpp: must not be F16
    embed_module="embeddings.word_embeddings",
)
