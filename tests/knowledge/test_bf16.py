"""The BF16 working copy of the embedding model: made once, same identity, same vectors, safe fallbacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import UsageError

TEXTS = [
    "The cat sat on the mat.",
    "Quarterly revenue grew by eight percent, driven by exports.",
    "Mitochondria are the site of oxidative phosphorylation in eukaryotic cells.",
]

SYSTEM_INFO_ZEN4 = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
    "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
)


@pytest.fixture
def model_copy(tmp_path: Path, embed_model_path: Path) -> Path:
    """The real embedding model, copied into a directory of its own (its .cache/ is then ours)."""
    d = tmp_path / "home"
    d.mkdir()
    return Path(shutil.copyfile(embed_model_path, d / embed_model_path.name))


def test_native_bf16_is_read_from_llama_cpps_feature_report() -> None:
    from assistant.knowledge.bf16 import native_bf16

    assert native_bf16(SYSTEM_INFO_ZEN4)
    assert not native_bf16(SYSTEM_INFO_ZEN4.replace("AVX512_BF16 = 1", "AVX512_BF16 = 0"))
    assert not native_bf16("CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 |")
    native_bf16()  # the real report parses without error on this machine


def test_mode_comes_from_the_argument_or_the_environment(monkeypatch) -> None:
    from assistant.knowledge.bf16 import bf16_mode

    monkeypatch.setenv("ASSISTANT_EMBED_BF16", "OFF")
    assert bf16_mode() == "off"
    assert bf16_mode("on") == "on"
    monkeypatch.setenv("ASSISTANT_EMBED_BF16", "fast")
    with pytest.raises(UsageError, match="ASSISTANT_EMBED_BF16 must be one of auto, on, off, got 'fast'"):
        bf16_mode()


def test_copy_is_made_once_and_keeps_the_models_identity_and_vectors(model_copy: Path) -> None:
    from assistant.knowledge.embed import Embedder
    from assistant.models.gguf_info import read_gguf_info

    with Embedder(model_copy, bf16="off") as plain:
        reference = plain.embed(TEXTS)
        identity = plain.info
    assert plain.runtime_path == model_copy
    with Embedder(model_copy, bf16="on") as fast:
        copy = fast.runtime_path
        assert copy.parent == model_copy.parent / ".cache" and copy.name.endswith(".BF16.gguf")
        assert {t.type_name for t in read_gguf_info(copy).tensors} <= {"BF16", "F32"}
        assert fast.info == identity  # a knowledge base sees the file the user chose
        vectors = fast.embed(TEXTS)
    cos = (reference * vectors).sum(axis=1)
    assert cos.min() > 0.9999, cos
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    stamp = copy.stat().st_mtime_ns
    with Embedder(model_copy, bf16="on") as again:
        assert again.runtime_path == copy and copy.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no temp files left


def test_a_changed_model_gets_a_new_copy_and_the_old_one_goes(model_copy: Path) -> None:
    from assistant.knowledge.bf16 import working_copy

    cache = model_copy.parent / ".cache"
    cache.mkdir()
    old = cache / f"{model_copy.stem}.0123456789abcdef.BF16.gguf"
    old.write_bytes(b"an earlier version's copy")
    new = working_copy(model_copy, "f" * 64, mode="on")
    assert new == cache / f"{model_copy.stem}.ffffffffffffffff.BF16.gguf" and new.is_file()
    assert not old.exists()


def test_unwritable_cache_next_to_the_model_falls_back_to_the_user_cache(
    model_copy, tmp_path, monkeypatch
) -> None:
    from assistant.knowledge.bf16 import working_copy

    (model_copy.parent / ".cache").write_text("not a directory")  # mkdir fails here, even as root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got = working_copy(model_copy, "a" * 64, mode="on")
    assert got.parent == tmp_path / "xdg" / "edge-assistant" / "embed" and got.is_file()


def test_quantized_models_and_off_are_used_as_they_are(default_model_path: Path, model_copy: Path) -> None:
    from assistant.knowledge.bf16 import working_copy

    assert working_copy(default_model_path, "b" * 64, mode="on") == default_model_path  # Q8_0: no copy
    assert working_copy(model_copy, "c" * 64, mode="off") == model_copy
    assert not (model_copy.parent / ".cache").exists()


def test_a_failed_conversion_logs_and_uses_the_file(model_copy, caplog) -> None:
    from assistant.knowledge.bf16 import copy_name, working_copy

    (model_copy.parent / ".cache" / copy_name(model_copy, "d" * 64)).mkdir(parents=True)  # the converter refuses it
    with caplog.at_level("WARNING"):
        assert working_copy(model_copy, "d" * 64, mode="on") == model_copy
    assert "cannot make a BF16 copy of" in caplog.text and "is a directory" in caplog.text
    assert "Error:" not in caplog.text  # the converter's one line, as a reason


def test_opening_a_knowledge_base_never_imports_the_converter(model_copy, tmp_path) -> None:
    """The converter is a layer of its own: the first use makes the copy through `python -m convert`."""
    script = (
        "import sys\n"
        "from assistant.knowledge.embed import Embedder\n"
        f"with Embedder({str(model_copy)!r}, bf16='on') as e:\n"
        "    print(e.runtime_path.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'convert'))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    made, modules = r.stdout.splitlines()
    assert made.endswith(".BF16.gguf") and (model_copy.parent / ".cache" / made).is_file()
    assert modules == "[]"


def test_a_damaged_copy_is_removed_and_the_model_file_used(model_copy, caplog) -> None:
    from assistant.knowledge.embed import Embedder

    with Embedder(model_copy, bf16="on") as fast:
        copy = fast.runtime_path
    copy.write_bytes(copy.read_bytes()[: 1 << 20])  # truncated: llama.cpp refuses it
    with caplog.at_level("WARNING"), Embedder(model_copy, bf16="on") as e:
        assert e.runtime_path == model_copy
        assert e.embed(TEXTS).shape == (3, e.dim)
    assert not copy.exists() and "does not load" in caplog.text
