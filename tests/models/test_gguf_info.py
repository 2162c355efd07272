"""The GGUF header reader: facts of the real default model, and damaged files."""

from __future__ import annotations

import struct

import pytest

from assistant.errors import ModelError, ModelNotFoundError
from assistant.models.gguf_info import LongArray, read_gguf_info


def test_default_model_header(default_model_path):
    info = read_gguf_info(default_model_path)
    assert info.architecture == "llama"
    assert info.kind == "model"
    assert info.context_length == 8192
    assert info.quant_type == "Q8_0"
    assert 130e6 < info.n_params < 140e6
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert isinstance(info.metadata["tokenizer.ggml.tokens"], LongArray)
    assert info.metadata["tokenizer.ggml.tokens"].length == 49152
    assert info.data_end == info.file_size == default_model_path.stat().st_size
    assert len(info.tensors) == 272


def test_full_arrays_on_request(default_model_path):
    info = read_gguf_info(default_model_path, full_arrays=True)
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert len(tokens) == 49152 and tokens[2] == "<|im_end|>"


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(ModelNotFoundError):
        read_gguf_info(tmp_path / "none.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 zip file")
    with pytest.raises(ModelError, match="not a GGUF file"):
        read_gguf_info(bad)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="not a GGUF file"):
        read_gguf_info(empty)


def test_unsupported_version_and_absurd_counts(tmp_path):
    f = tmp_path / "v9.gguf"
    f.write_bytes(b"GGUF" + struct.pack("<I", 9) + b"\0" * 16)
    with pytest.raises(ModelError, match="unsupported GGUF version 9"):
        read_gguf_info(f)
    g = tmp_path / "huge.gguf"
    g.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 10**12, 1))
    with pytest.raises(ModelError, match="corrupt GGUF header"):
        read_gguf_info(g)


@pytest.mark.parametrize("keep", [24, 4096, 1_500_000, 60_000_000])
def test_truncation_anywhere_is_detected(tmp_path, default_model_path, keep):
    f = tmp_path / "cut.gguf"
    with open(default_model_path, "rb") as src:
        f.write_bytes(src.read(keep))
    with pytest.raises(ModelError, match="truncated"):
        read_gguf_info(f)


# #12 item 2: hyper-parameters llama.cpp asserts on (GGML_ASSERT aborts the whole process).
GOOD = {
    "general.architecture": "qwen2",
    "qwen2.block_count": 2,
    "qwen2.embedding_length": 64,
    "qwen2.attention.head_count": 4,
    "qwen2.attention.head_count_kv": 2,
}


@pytest.mark.parametrize(
    "changes,key,expected,got",
    [
        ({"qwen2.attention.head_count_kv": 3}, "head_count_kv", "a divisor of head_count (4)", "3"),
        ({"qwen2.attention.head_count_kv": 8}, "head_count_kv", "a divisor of head_count (4)", "8"),
        ({"qwen2.attention.head_count_kv": [2, 3]}, "head_count_kv", "a divisor of head_count (4)", "3"),
        ({"qwen2.attention.head_count": 0}, "head_count", "at least 1 in every layer", "0 in layer 0"),
        ({"qwen2.block_count": 0}, "block_count", "1 to 512", "0"),
        ({"qwen2.block_count": 600}, "block_count", "1 to 512", "600"),
        ({"qwen2.nextn_predict_layers": 3}, "nextn_predict_layers", "at most block_count (2)", "3"),
        ({"qwen2.expert_used_count": 2}, "expert_used_count", "at most expert_count (0)", "2"),
        ({"qwen2.expert_count": 2000, "qwen2.expert_used_count": 2}, "expert_count", "at most 1024", "2000"),
        ({"qwen2.expert_count": 4}, "expert_used_count", "at least 1 with 4 experts", "0"),
        ({"qwen2.rope.scaling.type": "bogus"}, "rope.scaling.type", "none or linear or yarn", "'bogus'"),
        ({"qwen2.rope.dimension_count": 15}, "rope.dimension_count", "the head size (16)", "15"),
        ({"qwen2.attention.value_length": 8}, "value_length", "the key length (16)", "8"),
        ({"qwen2.block_count": "two"}, "block_count", "a whole number", "'two'"),
    ],
)
def test_hparams_llama_cpp_aborts_on_are_refused(tmp_path, changes, key, expected, got):
    from assistant.models.gguf_info import GGUFInfo, check_hparams

    check_hparams(GGUFInfo(tmp_path / "ok.gguf", 3, dict(GOOD)))  # the good header passes
    with pytest.raises(ModelError) as err:
        check_hparams(GGUFInfo(tmp_path / "bad.gguf", 3, {**GOOD, **changes}))
    msg = str(err.value)
    assert msg.startswith("bad.gguf: qwen2.") and key in msg, msg
    assert f"expected {expected}" in msg and f"got {got}" in msg, msg


def test_hybrid_layers_without_attention_pass(tmp_path):
    """Hybrid models (lfm2, jamba, ...) have layers with no KV heads: not an error."""
    from assistant.models.gguf_info import GGUFInfo, check_hparams

    meta = {"general.architecture": "lfm2", "lfm2.block_count": 3, "lfm2.embedding_length": 64}
    meta |= {"lfm2.attention.head_count": 4, "lfm2.attention.head_count_kv": [0, 2, 0]}
    check_hparams(GGUFInfo(tmp_path / "hybrid.gguf", 3, meta))


def test_head_count_not_multiple_of_kv_is_one_line(run_cli, home, tmp_path, default_model_path):
    """The issue's file: head_count 4, head_count_kv 3 aborted in ggml_can_mul_mat (exit 134)."""
    from support.gguf_factory import write_tiny_llama

    f = write_tiny_llama(tmp_path / "kv3.gguf", default_model_path, n_head=4, n_head_kv=3)
    r = run_cli("ask", "--model", str(f), "hi", home=home)
    assert r.returncode == 2, (r.returncode, r.stderr[-300:])
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: kv3.gguf: llama.attention.head_count_kv")
    assert "expected a divisor of head_count (4), got 3" in err
