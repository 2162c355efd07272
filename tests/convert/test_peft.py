"""PEFT merge details, each checked end to end: llama.cpp logits of the merged GGUF vs the
numpy reference of HF semantics with W + scale * B @ A."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cvt_models
import numpy as np
import pytest
from cvt_reference import decoder_logits

from assistant.errors import ConversionError
from convert.api import convert_model

TEXTS = ["The quick brown fox jumps", "def add(a, b): return a + b", "Numbers 12345 café"]


def check(runner, weights, config, tok, *, tol: float = 1e-2) -> None:
    for text in TEXTS:
        ids = tok.encode(text).ids[:20]
        ref = decoder_logits(weights, config, ids)
        got = runner.logits(ids)
        assert np.max(np.abs(ref - got)) < tol, text
        assert (ref.argmax(-1) == got.argmax(-1)).all(), text


def small(path: Path, **kw) -> cvt_models.TinyModel:
    return cvt_models.make_decoder(path, layers=2, **kw)


@pytest.mark.parametrize(
    "opts",
    [
        {"alpha": 32, "r": 8},
        {"alpha": 4, "r": 4, "rslora": True},
        {
            "alpha": 16,
            "r": 8,
            "rank_pattern": {"q_proj": 4, "layers.1.mlp.down_proj": 2},
            "alpha_pattern": {"v_proj": 3},
        },
    ],
    ids=["alpha_over_r", "rslora", "rank_alpha_patterns"],
)
def test_scaling_rules(tmp_path: Path, tiny_llama, llama_run, opts) -> None:
    ad = cvt_models.make_adapter(tmp_path / "ad", tiny_llama, **opts)
    out = tmp_path / "m.gguf"
    convert_model(tiny_llama.path, out, [(ad.path, 1.0)], quant="F32")
    check(llama_run(out), ad.merged(tiny_llama.weights), tiny_llama.config, tiny_llama.tokenizer)


def test_rslora_scale_is_not_ignored(tmp_path: Path, tiny_llama, llama_run) -> None:
    """The same weights read as plain LoRA would give different logits: rsLoRA must change the result."""
    ad = cvt_models.make_adapter(tmp_path / "ad", tiny_llama, alpha=4, r=4, rslora=True)
    plain = json.loads((ad.path / "adapter_config.json").read_text())
    plain["use_rslora"] = False
    ad2 = tmp_path / "ad2"
    ad2.mkdir()
    (ad2 / "adapter_config.json").write_text(json.dumps(plain))
    (ad2 / "adapter_model.safetensors").write_bytes((ad.path / "adapter_model.safetensors").read_bytes())
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    convert_model(tiny_llama.path, a, [(ad.path, 1.0)], quant="F32")
    convert_model(tiny_llama.path, b, [(ad2, 1.0)], quant="F32")
    ids = tiny_llama.tokenizer.encode(TEXTS[0]).ids
    assert np.max(np.abs(llama_run(a).logits(ids) - llama_run(b).logits(ids))) > 0.1


def test_two_adapters_linear_combination(tmp_path: Path, tiny_llama, llama_run) -> None:
    a1 = cvt_models.make_adapter(tmp_path / "a1", tiny_llama, targets=["q_proj", "k_proj"], seed=5)
    a2 = cvt_models.make_adapter(tmp_path / "a2", tiny_llama, targets=["k_proj", "up_proj"], seed=6)
    out = tmp_path / "m.gguf"
    convert_model(tiny_llama.path, out, [(a1.path, 0.7), (a2.path, -0.4)], quant="F32")
    w = a1.merged(tiny_llama.weights, 0.7)
    w = a2.merged(w, -0.4)
    check(llama_run(out), w, tiny_llama.config, tiny_llama.tokenizer)


def test_fan_in_fan_out_on_linear_is_ignored_like_peft(tmp_path: Path, tiny_llama, llama_run, caplog) -> None:
    ad = cvt_models.make_adapter(
        tmp_path / "ad", tiny_llama, fan_in_fan_out=True, targets=["q_proj", "o_proj"]
    )
    out = tmp_path / "m.gguf"
    with caplog.at_level(logging.WARNING, logger="convert"):
        convert_model(tiny_llama.path, out, [(ad.path, 1.0)], quant="F32")
    assert any("fan_in_fan_out" in r.getMessage() for r in caplog.records)
    check(llama_run(out), ad.merged(tiny_llama.weights), tiny_llama.config, tiny_llama.tokenizer)


def test_modules_to_save_replaces_embeddings_and_head(tmp_path: Path, tiny_llama, llama_run) -> None:
    rng = np.random.default_rng(9)
    emb = tiny_llama.weights["model.embed_tokens.weight"]
    head = tiny_llama.weights["lm_head.weight"]
    new = {
        "model.embed_tokens.weight": (emb + rng.standard_normal(emb.shape) * 0.5).astype(np.float32),
        "lm_head.weight": (head + rng.standard_normal(head.shape) * 0.1).astype(np.float32),
    }
    ad = cvt_models.make_adapter(tmp_path / "ad", tiny_llama, targets=["v_proj"], modules_to_save=new)
    out = tmp_path / "m.gguf"
    convert_model(tiny_llama.path, out, [(ad.path, 1.0)], quant="F32")
    check(llama_run(out), ad.merged(tiny_llama.weights), tiny_llama.config, tiny_llama.tokenizer)


def test_resized_vocabulary_with_added_tokens(tmp_path: Path, llama_run) -> None:
    """An adapter trained after adding tokens: bigger embed/lm_head in modules_to_save, its own tokenizer."""
    base = small(tmp_path / "base")
    n, d = base.weights["model.embed_tokens.weight"].shape
    rng = np.random.default_rng(4)
    emb = np.concatenate(
        [base.weights["model.embed_tokens.weight"], rng.standard_normal((2, d)).astype(np.float32)]
    )
    head = np.concatenate(
        [base.weights["lm_head.weight"], (rng.standard_normal((2, d)) * 0.15).astype(np.float32)]
    )
    ad = cvt_models.make_adapter(
        tmp_path / "ad",
        base,
        targets=["q_proj"],
        modules_to_save={"model.embed_tokens.weight": emb, "lm_head.weight": head},
    )
    tj = json.loads((base.path / "tokenizer.json").read_text())
    for i, content in enumerate(["<tool_call>", "<new_word>"]):
        tj["added_tokens"].append(
            {
                "id": n + i,
                "content": content,
                "special": i == 0,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
            }
        )
    (ad.path / "tokenizer.json").write_text(json.dumps(tj))
    (ad.path / "tokenizer_config.json").write_text((base.path / "tokenizer_config.json").read_text())
    out = tmp_path / "m.gguf"
    convert_model(base.path, out, [(ad.path, 1.0)], quant="F32")
    run = llama_run(out)
    assert run.model.n_vocab == n + 2
    from tokenizers import Tokenizer

    new_tok = Tokenizer.from_file(str(ad.path / "tokenizer.json"))
    text = "say <tool_call> and <new_word> ok"
    assert run.tokenize(text) == new_tok.encode(text, add_special_tokens=False).ids
    assert n in run.tokenize(text) and n + 1 in run.tokenize(text)
    cfg = dict(base.config, vocab_size=n + 2)
    merged = ad.merged(base.weights)
    ids = [*base.tokenizer.encode("hello there").ids, n, n + 1]
    ref = decoder_logits(merged, cfg, ids)
    got = run.logits(ids)
    assert np.max(np.abs(ref - got)) < 1e-2


@pytest.mark.parametrize("where", ["head", "embed"])
def test_tied_embeddings(tmp_path: Path, llama_run, where: str) -> None:
    """Tied base: untouched stays tied; an adapter on lm_head or the embedding unties them as in training."""
    base = small(tmp_path / "base", tie=True)
    if where == "head":
        ad = cvt_models.make_adapter(tmp_path / "ad", base, targets=["q_proj", "lm_head"])
    else:
        ad = cvt_models.make_adapter(tmp_path / "ad", base, targets=["q_proj"], embedding_lora=True)
    plain = tmp_path / "plain.gguf"
    convert_model(base.path, plain, quant="F32")
    from gguf import GGUFReader

    assert "output.weight" not in {t.name for t in GGUFReader(plain).tensors}
    out = tmp_path / "m.gguf"
    convert_model(base.path, out, [(ad.path, 1.0)], quant="F32")
    merged = ad.merged(base.weights)
    if where == "embed":  # the head keeps the base embedding (PEFT's forward during training)
        merged["lm_head.weight"] = base.weights["model.embed_tokens.weight"].astype(np.float64)
    check(llama_run(out), merged, base.config, base.tokenizer)


def test_dora_merged(tmp_path: Path, tiny_llama, llama_run) -> None:
    ad = cvt_models.make_adapter(
        tmp_path / "ad", tiny_llama, dora=True, targets=["q_proj", "k_proj", "down_proj"]
    )
    out = tmp_path / "m.gguf"
    convert_model(tiny_llama.path, out, [(ad.path, 1.0)], quant="F32")
    check(llama_run(out), ad.merged(tiny_llama.weights), tiny_llama.config, tiny_llama.tokenizer)


def test_dora_refused_for_runtime_lora(tmp_path: Path, tiny_llama) -> None:
    from convert.api import convert_adapter

    ad = cvt_models.make_adapter(tmp_path / "ad", tiny_llama, dora=True, targets=["q_proj"])
    with pytest.raises(ConversionError, match="DoRA"):
        convert_adapter(ad.path, tiny_llama.path, tmp_path / "lora.gguf")
    assert not (tmp_path / "lora.gguf").exists()


def test_bf16_sharded_input_merged_in_float32(tmp_path: Path, llama_run) -> None:
    base = small(tmp_path / "base", dtype="BF16", shards=3)
    ad = cvt_models.make_adapter(tmp_path / "ad", base)
    out = tmp_path / "m.gguf"
    convert_model(base.path, out, [(ad.path, 1.0)], quant="F32")
    check(llama_run(out), ad.merged(base.weights), base.config, base.tokenizer)
    # the merged tensor is exactly f32(bf16 W) + f32 delta (one cast, no bf16 rounding of the sum)
    from gguf import GGUFReader

    t = next(t for t in GGUFReader(out).tensors if t.name == "blk.0.ffn_up.weight")
    a, b, s = ad.factors["model.layers.0.mlp.up_proj"]
    want = base.weights["model.layers.0.mlp.up_proj.weight"] + np.float32(s) * (b @ a)
    assert np.max(np.abs(np.asarray(t.data) - want)) < 1e-6


def test_f16_overflow_refused_with_tensor_name_bf16_ok(tmp_path: Path, llama_run) -> None:
    base = small(tmp_path / "base")
    w = dict(base.weights)
    w["model.layers.1.mlp.up_proj.weight"] = w["model.layers.1.mlp.up_proj.weight"].copy()
    w["model.layers.1.mlp.up_proj.weight"][0, 0] = 1e5
    cvt_models.write_safetensors(base.path / "model.safetensors", w)
    out = tmp_path / "m.gguf"
    with pytest.raises(ConversionError, match=r"blk\.1\.ffn_up\.weight.*F16 range"):
        convert_model(base.path, out, quant="F16")
    assert not out.exists()
    assert not list(tmp_path.glob(".*tmp-partial"))
    convert_model(base.path, out, quant="BF16")
    from gguf import GGUFReader

    t = next(t for t in GGUFReader(out).tensors if t.name == "blk.1.ffn_up.weight")
    assert t.tensor_type.name == "BF16"
