"""Other bases: a GGUF of any type (dequantized, merged, re-quantized) and a Hub repo id (offline cache)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cvt_models
import numpy as np
import pytest

from convert.api import convert_adapter, convert_model

TEXT = "The quick brown fox jumps over the lazy dog"


def _tensors(path: Path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    return {t.name: np.array(t.data) for t in GGUFReader(path).tensors}


def test_f32_gguf_base_gives_the_same_tensors_as_the_hf_base(
    tmp_path: Path, tiny_llama, tiny_adapter
) -> None:
    base = tmp_path / "base.gguf"
    convert_model(tiny_llama.path, base, quant="F32")
    from_hf, from_gguf = tmp_path / "a.gguf", tmp_path / "b.gguf"
    convert_model(tiny_llama.path, from_hf, [(tiny_adapter.path, 1.0)], quant="F32")
    convert_model(base, from_gguf, [(tiny_adapter.path, 1.0)], quant="F32")
    a, b = _tensors(from_hf), _tensors(from_gguf)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("base_type", ["Q4_K_M", "Q8_0", "F16", "Q4_0"])
def test_quantized_gguf_base_merge_and_requantize(tmp_path: Path, llama_run, base_type: str) -> None:
    model = cvt_models.make_decoder(
        tmp_path / "m", hidden=256, heads=4, kv_heads=2, ffn=512, layers=2, std=0.06
    )
    ad = cvt_models.make_adapter(tmp_path / "ad", model, targets=["q_proj", "k_proj", "gate_proj"], std=0.3)
    base = tmp_path / f"base-{base_type}.gguf"
    convert_model(model.path, base, quant=base_type)
    deq = tmp_path / "deq.gguf"
    merged = tmp_path / "merged.gguf"
    lora = tmp_path / "lora.gguf"
    convert_model(base, deq, quant="F32")
    convert_model(base, merged, [(ad.path, 1.0)], quant="F32")
    convert_adapter(ad.path, base, lora, outtype="f32")
    ids = model.tokenizer.encode(TEXT).ids
    a = llama_run(merged).logits(ids)
    b = llama_run(deq, lora=lora).logits(ids)
    assert np.max(np.abs(a - b)) < 1e-3
    # dequantization is right: the dequantized F32 model predicts like the quantized file
    q = llama_run(base).logits(ids)
    assert np.corrcoef(q.ravel(), llama_run(deq).logits(ids).ravel())[0, 1] > 0.99
    requant = tmp_path / "requant.gguf"
    convert_model(base, requant, [(ad.path, 1.0)], quant="Q4_K_M")
    r = llama_run(requant).logits(ids)
    assert np.corrcoef(r.ravel(), a.ravel())[0, 1] > 0.95
    assert llama_run(requant).meta("tokenizer.ggml.pre") == "llama-bpe"


def _fake_hub_cache(hf_home: Path, repo: str, files_from: Path) -> None:
    """The layout huggingface-hub keeps in HF_HOME/hub (what a past download left)."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / rev
    shutil.copytree(files_from, snap)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(rev)


def test_repo_ids_served_from_the_offline_cache(
    tmp_path: Path, tiny_llama, tiny_adapter, monkeypatch, llama_run
) -> None:
    hf_home = tmp_path / "hf"
    _fake_hub_cache(hf_home, "someone/tiny-llama", tiny_llama.path)
    _fake_hub_cache(hf_home, "someone/tiny-lora", tiny_adapter.path)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # so "someone/..." is not a local path
    out = tmp_path / "o.gguf"
    res = convert_model("someone/tiny-llama", out, [("someone/tiny-lora", 1.0)], quant="F32")
    assert "models--someone--tiny-llama" in res.provenance["base"]["path"]
    local = tmp_path / "local.gguf"
    convert_model(tiny_llama.path, local, [(tiny_adapter.path, 1.0)], quant="F32")
    ids = tiny_llama.tokenizer.encode(TEXT).ids
    assert np.max(np.abs(llama_run(out).logits(ids) - llama_run(local).logits(ids))) < 1e-5
