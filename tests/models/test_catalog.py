"""Model home listing and name resolution."""

from __future__ import annotations

import pytest
from support.gguf_factory import write_header_only

from assistant.errors import ModelNotFoundError
from assistant.home import Home, resolve_home
from assistant.io import sha256_file
from assistant.models.catalog import cached_sha256, list_models, resolve_model


def test_home_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSISTANT_HOME", raising=False)
    checkout = resolve_home()
    assert checkout.name == "models" and (checkout.parent / "pyproject.toml").is_file()
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "env"))
    assert resolve_home() == (tmp_path / "env").resolve()
    assert resolve_home(tmp_path / "flag") == (tmp_path / "flag").resolve()


def test_installed_copy_uses_user_data_dir(monkeypatch, tmp_path):
    from assistant import home as home_mod

    monkeypatch.delenv("ASSISTANT_HOME", raising=False)
    monkeypatch.setattr(home_mod, "_checkout_models_dir", lambda: None)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_home() == tmp_path / "xdg" / "edge-assistant"


def test_list_and_roles(home_with_default, tmp_path):
    h = Home(home_with_default)
    write_header_only(home_with_default / "minilm.gguf", "bert")
    h.adapters_dir.mkdir()
    write_header_only(h.adapters_dir / "style.gguf", "llama", general_type="adapter")
    (home_with_default / "broken.gguf").write_bytes(b"junk")
    roles = {e.name: e.role for e in list_models(h)}
    assert roles == {
        "SmolLM2-135M-grounded.Q8_0.gguf": "chat",
        "SmolLM2-135M-Instruct.Q8_0.gguf": "chat",
        "minilm.gguf": "embedding",
        "broken.gguf": "broken",
        "style.gguf": "adapter",
    }


def test_resolve_by_path_name_stem_prefix(home_with_default):
    h = Home(home_with_default)
    stock = home_with_default / "SmolLM2-135M-Instruct.Q8_0.gguf"
    for spec in (
        str(stock),
        "SmolLM2-135M-Instruct.Q8_0.gguf",
        "SmolLM2-135M-Instruct.Q8_0",
        "smollm2-135m-i",
    ):
        assert resolve_model(spec, h) == stock
    assert resolve_model(None, h) == home_with_default / "SmolLM2-135M-grounded.Q8_0.gguf"  # the default


def test_default_model_env_and_ambiguity(home_with_default, monkeypatch):
    h = Home(home_with_default)
    with pytest.raises(
        ModelNotFoundError, match="ambiguous: SmolLM2-135M-Instruct.Q8_0, SmolLM2-135M-grounded"
    ):
        resolve_model("smol", h)
    monkeypatch.setenv("ASSISTANT_MODEL", "SmolLM2-135M-Instruct.Q8_0.gguf")
    assert resolve_model(None, h).name == "SmolLM2-135M-Instruct.Q8_0.gguf"


def test_sha256_cache_follows_changes(home, tmp_path):
    h = Home(home)
    f = home / "a.gguf"
    f.write_bytes(b"one")
    first = cached_sha256(f, h)
    assert first == sha256_file(f)
    assert (home / ".sha256-cache.json").is_file()
    f.write_bytes(b"two!")
    assert cached_sha256(f, h) == sha256_file(f) != first
