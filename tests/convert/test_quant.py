"""Output types, determinism and provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import ConversionError
from convert import __version__
from convert.api import convert_model
from convert.provenance import KEY
from convert.quant_types import QUANT_TYPES

# llama_ftype as llama.cpp records it in general.file_type
FILE_TYPES = {
    "F32": 0,
    "F16": 1,
    "BF16": 32,
    "Q8_0": 7,
    "Q6_K": 18,
    "Q5_K_M": 17,
    "Q5_K_S": 16,
    "Q4_K_M": 15,
    "Q4_K_S": 14,
    "Q4_0": 2,
}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory):
    """Rows of 256 so the k-quants are really used (llama.cpp falls back on narrower rows)."""
    import cvt_models

    return cvt_models.make_decoder(
        tmp_path_factory.mktemp("wide") / "m", hidden=256, heads=4, kv_heads=2, ffn=512, layers=2, std=0.06
    )


@pytest.mark.parametrize("quant", list(QUANT_TYPES))
def test_every_type_loads_and_predicts(tmp_path: Path, wide_llama, llama_run, quant: str) -> None:
    out = tmp_path / f"m-{quant}.gguf"
    convert_model(wide_llama.path, out, quant=quant, threads=2)
    from gguf import GGUFReader

    r = GGUFReader(out)
    assert int(r.fields["general.file_type"].contents()) == FILE_TYPES[quant]
    types = {t.tensor_type.name for t in r.tensors if t.name.endswith("ffn_up.weight")}
    want = {"Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K"}.get(quant, quant)
    assert want in types
    from cvt_reference import decoder_logits

    ids = wide_llama.tokenizer.encode("The quick brown fox jumps over the lazy dog").ids
    ref = decoder_logits(wide_llama.weights, wide_llama.config, ids)
    got = llama_run(out).logits(ids)
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("name", ["IQ2_XS", "IQ1_S", "Q2_K_S", "iq2_xxs"])
def test_imatrix_types_refused_with_reason(tmp_path: Path, tiny_llama, name: str) -> None:
    with pytest.raises(ConversionError, match="importance matrix"):
        convert_model(tiny_llama.path, tmp_path / "x.gguf", quant=name)
    assert not (tmp_path / "x.gguf").exists()


def test_unknown_type_refused(tmp_path: Path, tiny_llama) -> None:
    with pytest.raises(ConversionError, match=r"unknown --quant 'Q3_X'.*supported: F32, F16"):
        convert_model(tiny_llama.path, tmp_path / "x.gguf", quant="Q3_X")


@pytest.mark.parametrize("quant", ["F16", "Q4_K_M"])
def test_deterministic_output_also_with_threads(tmp_path: Path, wide_llama, tiny_adapter, quant: str) -> None:
    import cvt_models

    ad = cvt_models.make_adapter(tmp_path / "ad", wide_llama, targets=["q_proj", "down_proj"])
    a, b, c = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    convert_model(wide_llama.path, a, [(ad.path, 0.5)], quant=quant, threads=1)
    convert_model(wide_llama.path, b, [(ad.path, 0.5)], quant=quant, threads=2)
    convert_model(wide_llama.path, c, [(ad.path, 0.5)], quant=quant, threads=2)
    assert _sha(a) == _sha(b) == _sha(c)


def test_provenance_records_inputs_adapters_type_version(tmp_path: Path, tiny_llama, tiny_adapter) -> None:
    from gguf import GGUFReader

    out = tmp_path / "m.gguf"
    convert_model(tiny_llama.path, out, [(tiny_adapter.path, 0.25)], quant="Q8_0")
    record = json.loads(str(GGUFReader(out).fields[KEY].contents()))
    assert record["tool"] == "edge-assistant convert" and record["version"] == __version__
    assert record["output_type"] == "Q8_0"
    files = {f["file"]: f for f in record["base"]["files"]}
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert files[name]["sha256"] == _sha(tiny_llama.path / name)
    (ad,) = record["adapters"]
    assert ad["scale"] == 0.25 and ad["path"] == str(tiny_adapter.path)
    ad_files = {f["file"]: f["sha256"] for f in ad["files"]}
    assert ad_files["adapter_model.safetensors"] == _sha(tiny_adapter.path / "adapter_model.safetensors")
    assert ad_files["adapter_config.json"] == _sha(tiny_adapter.path / "adapter_config.json")


@pytest.mark.parametrize("quant", ["Q4_K_M", "Q5_K_S", "Q6_K", "Q4_0", "Q8_0"])
def test_streamed_quantization_equals_llama_model_quantize(
    tmp_path: Path, wide_llama, monkeypatch, quant: str
) -> None:
    """In-process quantization (llama.cpp's type plan + ggml_quantize_chunk, no intermediate file) gives
    exactly the tensors llama_model_quantize writes from the exact float intermediate."""
    import cvt_models
    from gguf import GGUFReader

    from convert import api

    ad = cvt_models.make_adapter(tmp_path / "ad", wide_llama, targets=["q_proj", "v_proj", "down_proj"])
    streamed, reference = tmp_path / "s.gguf", tmp_path / "r.gguf"
    convert_model(wide_llama.path, streamed, [(ad.path, 1.0)], quant=quant, threads=2)
    monkeypatch.setattr(api, "_quant_plan", lambda *a: None)  # force the llama_model_quantize path
    convert_model(wide_llama.path, reference, [(ad.path, 1.0)], quant=quant, threads=2)
    a = {t.name: t for t in GGUFReader(streamed).tensors}
    b = {t.name: t for t in GGUFReader(reference).tensors}
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].tensor_type == b[name].tensor_type, name
        assert np.array(a[name].data).tobytes() == np.array(b[name].data).tobytes(), name
    fa, fb = GGUFReader(streamed).fields, GGUFReader(reference).fields
    for key in ("general.file_type", "general.quantization_version"):
        assert fa[key].contents() == fb[key].contents()
