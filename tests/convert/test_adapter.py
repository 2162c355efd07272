"""convert-adapter: a GGUF LoRA that llama.cpp applies at run time gives the merged model's logits."""

from __future__ import annotations

from pathlib import Path

import cvt_models
import numpy as np
import pytest

from convert.api import convert_adapter, convert_model

TEXTS = ["The quick brown fox jumps over the lazy dog", "def add(a, b): return a + b", "Numbers 12345 café"]


def _max_diff(a, b, ids_list) -> float:
    return max(float(np.max(np.abs(a.logits(ids) - b.logits(ids)))) for ids in ids_list)


def test_adapter_gguf_metadata(tmp_path: Path, tiny_llama, tiny_adapter) -> None:
    from gguf import GGUFReader

    out = tmp_path / "lora.gguf"
    convert_adapter(tiny_adapter.path, tiny_llama.path, out, outtype="f32")
    r = GGUFReader(out)
    meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert meta["general.type"] == "adapter"
    assert meta["adapter.type"] == "lora"
    assert meta["adapter.lora.alpha"] == pytest.approx(tiny_adapter.config["lora_alpha"])
    assert meta["general.architecture"] == "llama"
    names = {t.name for t in r.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
    a = next(t for t in r.tensors if t.name == "blk.0.attn_q.weight.lora_a")
    assert list(a.shape) == [64, 8]  # GGUF order: ne0 = in_features, ne1 = r


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_merged_equals_base_plus_runtime_lora(tmp_path: Path, tiny_llama, llama_run, outtype: str) -> None:
    """Q/K targets included: lora_b rows get the same permutation as the weights; lm_head too.
    rsLoRA + a rank pattern exercise the scale folding (llama.cpp only knows alpha / rank)."""
    ad = cvt_models.make_adapter(
        tmp_path / "ad",
        tiny_llama,
        targets=[*cvt_models.LLAMA_ATTN, *cvt_models.LLAMA_MLP, "lm_head"],
        r=8,
        alpha=8,
        rslora=True,
        rank_pattern={"k_proj": 4},
        std=0.2,
    )
    merged = tmp_path / "merged.gguf"
    base = tmp_path / "base.gguf"
    lora = tmp_path / "lora.gguf"
    convert_model(tiny_llama.path, merged, [(ad.path, 0.8)], quant="F32")
    convert_model(tiny_llama.path, base, quant="F32")
    convert_adapter(ad.path, tiny_llama.path, lora, outtype=outtype)
    ids_list = [tiny_llama.tokenizer.encode(t).ids for t in TEXTS]
    m, b = llama_run(merged), llama_run(base, lora=lora, lora_scale=0.8)
    tol = {"f32": 1e-3, "f16": 2e-2, "q8_0": 5e-2}[outtype]
    assert _max_diff(m, b, ids_list) < tol
    plain = llama_run(base)
    assert _max_diff(m, plain, ids_list) > 0.2  # the adapter matters


def test_runtime_lora_over_a_quantized_base(tmp_path: Path, tiny_llama, tiny_adapter, llama_run) -> None:
    """The point of GGUF LoRA: swap adapters over one quantized base."""
    base_q = tmp_path / "base-q8.gguf"
    merged_q = tmp_path / "merged-q8.gguf"
    lora = tmp_path / "lora.gguf"
    convert_model(tiny_llama.path, base_q, quant="Q8_0")
    convert_model(tiny_llama.path, merged_q, [(tiny_adapter.path, 1.0)], quant="Q8_0")
    convert_adapter(tiny_adapter.path, tiny_llama.path, lora)
    ids = tiny_llama.tokenizer.encode(TEXTS[0]).ids
    a = llama_run(merged_q).logits(ids)
    b = llama_run(base_q, lora=lora).logits(ids)
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.8


def test_embedding_lora_runtime(tmp_path: Path, tiny_llama, llama_run) -> None:
    ad = cvt_models.make_adapter(tmp_path / "ad", tiny_llama, targets=["q_proj"], embedding_lora=True)
    merged, base, lora = tmp_path / "m.gguf", tmp_path / "b.gguf", tmp_path / "l.gguf"
    convert_model(tiny_llama.path, merged, [(ad.path, 1.0)], quant="F32")
    convert_model(tiny_llama.path, base, quant="F32")
    convert_adapter(ad.path, tiny_llama.path, lora, outtype="f32")
    ids_list = [tiny_llama.tokenizer.encode(t).ids for t in TEXTS]
    assert _max_diff(llama_run(merged), llama_run(base, lora=lora), ids_list) < 1e-3


@pytest.mark.slow
def test_real_default_model_gguf_base_with_random_adapter(
    tmp_path: Path, default_model_path: Path, llama_run
) -> None:
    """SmolLM2-135M (Q4_1 GGUF) as the base: dequantized + merged == base + runtime LoRA."""
    from gguf import GGUFReader

    r = GGUFReader(default_model_path)
    meta = {k: f.contents() for k, f in r.fields.items() if k.startswith("llama.")}
    n_embd, n_ff = meta["llama.embedding_length"], meta["llama.feed_forward_length"]
    n_head, n_kv = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    hd = n_embd // n_head
    rng = np.random.default_rng(0)
    tensors = {}
    rank = 8
    shapes = {
        "self_attn.q_proj": (n_head * hd, n_embd),
        "self_attn.k_proj": (n_kv * hd, n_embd),
        "self_attn.v_proj": (n_kv * hd, n_embd),
        "mlp.down_proj": (n_embd, n_ff),
    }
    for layer in (0, 7, 29):
        for mod, (out_f, in_f) in shapes.items():
            key = f"base_model.model.model.layers.{layer}.{mod}"
            tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, in_f)) / np.sqrt(in_f)).astype(
                np.float32
            )
            tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((out_f, rank)) * 0.05).astype(np.float32)
    ad = tmp_path / "adapter"
    ad.mkdir()
    cvt_models.write_safetensors(ad / "adapter_model.safetensors", tensors)
    (ad / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "down_proj"]}'
    )
    merged, base32, lora = tmp_path / "merged.gguf", tmp_path / "base32.gguf", tmp_path / "lora.gguf"
    convert_model(default_model_path, merged, [(ad, 1.0)], quant="F32")
    convert_model(default_model_path, base32, quant="F32")  # the Q4_1 base, dequantized
    convert_adapter(ad, default_model_path, lora, outtype="f32")
    original = llama_run(default_model_path)
    ids = original.tokenize("The capital of France is Paris, and the capital of Italy is")
    a = llama_run(merged).logits(ids)
    b = llama_run(base32, lora=lora).logits(ids)
    assert np.max(np.abs(a - b)) < 1e-2 * max(1.0, float(np.std(a)))
    assert (a.argmax(-1) == b.argmax(-1)).all()
    # the adapter also applies over the original quantized file, and the dequantized base is that file
    c = llama_run(default_model_path, lora=lora).logits(ids)
    assert (a.argmax(-1) == c.argmax(-1)).mean() >= 0.8
    plain32 = llama_run(base32).logits(ids)
    assert (plain32.argmax(-1) == original.logits(ids).argmax(-1)).mean() >= 0.8
    assert np.max(np.abs(plain32 - b)) > 0.1  # the random adapter does change the model
