"""Qwen2 / Qwen2.5: llama-like, with q/k/v biases and NEOX RoPE (so no row permutation)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Arch, Hparams
from .llama import IGNORE, RULES, add_decoder_metadata, decoder_hparams, hparams_from_gguf

if TYPE_CHECKING:
    from gguf import GGUFWriter


def _metadata(w: GGUFWriter, config: dict[str, Any], model_dir: Path, hp: Hparams) -> None:
    add_decoder_metadata(w, config, hp, rope_dims=False)


ARCH = Arch(
    name="qwen2",
    hf_architectures=("Qwen2ForCausalLM",),
    rules=RULES,  # same module names as llama; biases map through the same rules
    hparams=decoder_hparams,
    hparams_from_gguf=hparams_from_gguf("qwen2"),
    metadata=_metadata,
    ignore=IGNORE,
    embed_module="model.embed_tokens",
    output_module="lm_head",
)
