"""The `assistant setup` step for the embedding model: extract atomically, convert once, skip when current."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from assistant.errors import StorageError
from assistant.models import default as d
from convert.minilm import install_minilm
from convert.setup_recipes import gguf_current


def test_extract_zip_is_atomic_and_idempotent(tmp_path: Path) -> None:
    z = tmp_path / "m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("1_Pooling/config.json", "{}")
    dest = tmp_path / "sources" / "m"
    d._extract_zip(z, dest, "stamp-1")
    assert (dest / "1_Pooling" / "config.json").is_file() and (
        dest / ".complete"
    ).read_text().strip() == "stamp-1"
    (dest / "stale.txt").write_text("old")
    d._extract_zip(z, dest, "stamp-2")  # a re-extraction replaces the whole directory
    assert not (dest / "stale.txt").exists() and (dest / ".complete").read_text().strip() == "stamp-2"
    assert [p.name for p in dest.parent.iterdir()] == ["m"]  # no temp dirs left


def test_extract_refuses_paths_outside(tmp_path: Path) -> None:
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(StorageError, match="outside"):
        d._extract_zip(z, tmp_path / "sources" / "m", "s")
    assert not (tmp_path / "escape.txt").exists()
    assert not list((tmp_path / "sources").iterdir())


def test_install_minilm_converts_once(tmp_path: Path, minilm_src: Path) -> None:
    home = tmp_path / "home"
    src = d.minilm_source_dir(home)
    src.mkdir(parents=True)
    for p in minilm_src.rglob("*"):
        if p.is_file():
            (src / p.relative_to(minilm_src)).parent.mkdir(parents=True, exist_ok=True)
            (src / p.relative_to(minilm_src)).symlink_to(p)
    steps: list[str] = []
    first = install_minilm(home, on_step=steps.append)  # extracted (marker): no download, the build
    out = first.out
    assert first.built and gguf_current("minilm.toml", out)
    assert steps == [f"build {out.name} with the recipe minilm.toml (F16) …"]
    mtime = out.stat().st_mtime_ns
    again = install_minilm(home, on_step=steps.append)
    assert (again.out, again.built) == (out, False) and len(steps) == 1
    assert out.stat().st_mtime_ns == mtime
    out.write_bytes(b"GGUF broken")  # a damaged file is not "current": converted again
    assert install_minilm(home).built and gguf_current("minilm.toml", out)
