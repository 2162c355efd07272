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
    assert info.quant_type == "Q4_1"
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
