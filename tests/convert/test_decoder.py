"""llama / qwen2: converted logits through llama.cpp against the numpy reference (HF semantics)."""

from __future__ import annotations

from pathlib import Path

import cvt_models
import numpy as np
import pytest
from cvt_reference import decoder_logits

from convert.api import convert_model

PROMPTS = [
    "The quick brown fox jumps over the lazy dog while offline assistants run",
    "def add(a, b):\n    return a + b\n\nprint(add(12, 345))",
    "Numbers 12345 café 🙂 ok, and whitespace   runs\tand tabs",
    "Question: what is GGUF? Answer: a file format for llama.cpp models.",
    "I'm sure you'll see they've done it; it's what we'd do.",
]


def _ids(model: cvt_models.TinyModel) -> list[list[int]]:
    return [model.tokenizer.encode(p).ids[:24] for p in PROMPTS]


def _compare(runner, weights, config, ids_list) -> tuple[float, float]:
    diffs, agree, total = [], 0, 0
    for ids in ids_list:
        ref = decoder_logits(weights, config, ids)
        got = runner.logits(ids)
        diffs.append(float(np.max(np.abs(ref - got))))
        agree += int(np.sum(ref.argmax(-1) == got.argmax(-1)))
        total += len(ids)
    return max(diffs), agree / total


def test_llama_f32_with_adapter_matches_reference(
    tmp_path: Path, tiny_llama, tiny_adapter, llama_run
) -> None:
    out = tmp_path / "m.gguf"
    convert_model(tiny_llama.path, out, [(tiny_adapter.path, 1.0)], quant="F32")
    merged = tiny_adapter.merged(tiny_llama.weights)
    ref0 = decoder_logits(merged, tiny_llama.config, _ids(tiny_llama)[0])
    assert 0.3 < np.std(ref0) < 5, "logits should be of order 1"
    diff, top1 = _compare(llama_run(out), merged, tiny_llama.config, _ids(tiny_llama))
    assert diff < 1e-2
    assert top1 == 1.0
    # the adapter really changes the model (so the check above is not vacuous)
    base_ref = decoder_logits(tiny_llama.weights, tiny_llama.config, _ids(tiny_llama)[0])
    assert np.max(np.abs(base_ref - ref0)) > 0.5


def test_llama_f16_close_and_q8_0_top1(tmp_path: Path, tiny_llama, tiny_adapter, llama_run) -> None:
    merged = tiny_adapter.merged(tiny_llama.weights)
    f16 = tmp_path / "m16.gguf"
    convert_model(tiny_llama.path, f16, [(tiny_adapter.path, 1.0)], quant="F16")
    diff, top1 = _compare(llama_run(f16), merged, tiny_llama.config, _ids(tiny_llama))
    assert diff < 5e-2 and top1 >= 0.95
    q8 = tmp_path / "m8.gguf"
    convert_model(tiny_llama.path, q8, [(tiny_adapter.path, 1.0)], quant="Q8_0")
    _, top1 = _compare(llama_run(q8), merged, tiny_llama.config, _ids(tiny_llama))
    assert top1 >= 0.9, top1


@pytest.mark.parametrize("tie", [False, True])
def test_qwen2_biases_f32(tmp_path: Path, llama_run, tie: bool) -> None:
    model = cvt_models.make_decoder(
        tmp_path / "qwen", arch="qwen2", tokenizer="bytelevel-qwen2", tie=tie, seed=3
    )
    adapter = cvt_models.make_adapter(
        tmp_path / "ad", model, targets=["q_proj", "k_proj", "v_proj", "down_proj"]
    )
    out = tmp_path / "q.gguf"
    convert_model(model.path, out, [(adapter.path, 1.0)], quant="F32")
    merged = adapter.merged(model.weights)
    diff, top1 = _compare(llama_run(out), merged, model.config, _ids(model))
    assert diff < 1e-2 and top1 == 1.0


def test_mistral_class_maps_to_llama(tmp_path: Path, llama_run) -> None:
    model = cvt_models.make_decoder(
        tmp_path / "mistral", hf_arch="MistralForCausalLM", tokenizer="spm", seed=7
    )
    out = tmp_path / "m.gguf"
    convert_model(model.path, out, quant="F32")
    run = llama_run(out)
    assert run.meta("general.architecture") == "llama"
    diff, top1 = _compare(run, model.weights, model.config, _ids(model))
    assert diff < 1e-2 and top1 == 1.0


def test_llama3_rope_scaling_frequency_factors(tmp_path: Path, llama_run) -> None:
    """Llama 3.1+ "llama3" rope scaling becomes the rope_freqs tensor; logits follow HF's scaled RoPE."""
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    model = cvt_models.make_decoder(tmp_path / "l3", rope_scaling=scaling, seed=11, heads=2, kv_heads=1)
    out = tmp_path / "m.gguf"
    convert_model(model.path, out, quant="F32")
    from gguf import GGUFReader

    names = {t.name for t in GGUFReader(out).tensors}
    assert "rope_freqs.weight" in names
    diff, top1 = _compare(llama_run(out), model.weights, model.config, _ids(model))
    assert diff < 1e-2 and top1 == 1.0
    unscaled = dict(model.config)
    del unscaled["rope_scaling"]
    ids = _ids(model)[0]
    assert (
        np.max(
            np.abs(
                decoder_logits(model.weights, unscaled, ids)
                - decoder_logits(model.weights, model.config, ids)
            )
        )
        > 1e-2
    )
