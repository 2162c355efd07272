"""Helpers for the finetune tests: llama.cpp's logits of a GGUF (optionally with a GGUF LoRA), training text."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CONVERT_TESTS = Path(__file__).resolve().parent.parent / "convert"
if str(CONVERT_TESTS) not in sys.path:
    sys.path.insert(0, str(CONVERT_TESTS))

import cvt_models  # noqa: E402


def corpus_text(repeat: int = 4) -> str:
    """About 1800 tokens per repeat of the tiny tokenizer's own corpus (learnable: it repeats)."""
    return " ".join(cvt_models.CORPUS) * repeat


def logits(path: Path, ids: Sequence[int], lora: Path | None = None) -> np.ndarray:
    """llama.cpp's logits after each token of ids (F32 K/V cache: no rounding of its own)."""
    import ctypes

    import llama_cpp as L

    from assistant.engine.backend import LlamaModel

    model = LlamaModel(path)
    p = L.llama_context_default_params()
    p.n_ctx = p.n_batch = p.n_ubatch = 256
    p.n_threads = p.n_threads_batch = 1
    p.type_k = p.type_v = 0  # F32
    p.flash_attn_type = 0
    ctx = L.llama_init_from_model(model.ptr, p)
    try:
        if lora is not None:
            ad = model.load_adapter(lora)
            arr = (L.llama_adapter_lora_p_ctypes * 1)(ad)
            assert L.llama_set_adapters_lora(ctx, arr, 1, (ctypes.c_float * 1)(1.0)) == 0
        batch = L.llama_batch_init(len(ids), 0, 1)
        for i, t in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = int(t), i, 1, 1
            batch.seq_id[i][0] = 0
        batch.n_tokens = len(ids)
        assert L.llama_decode(ctx, batch) == 0
        L.llama_batch_free(batch)
        out = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(len(ids), model.n_vocab)).astype(
            np.float64
        )
        return out.copy()
    finally:
        L.llama_free(ctx)
        model.close()
