"""The models in the model home: listing, name resolution, cached checksums."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError, ModelNotFoundError
from ..home import Home
from ..io import atomic_write_text, sha256_file
from .archs import EMBEDDING_ARCHITECTURES
from .gguf_info import GGUFInfo, read_gguf_info

log = logging.getLogger(__name__)

DEFAULT_MODEL_ENV = "ASSISTANT_MODEL"
SHA_CACHE = ".sha256-cache.json"


@dataclass
class ModelEntry:
    path: Path
    info: GGUFInfo | None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_chat(self) -> bool:
        return (
            self.info is not None
            and self.info.kind == "model"
            and self.info.architecture not in EMBEDDING_ARCHITECTURES
        )

    @property
    def role(self) -> str:
        if self.info is None:
            return "broken"
        if self.info.kind == "adapter":
            return "adapter"
        return "embedding" if self.info.architecture in EMBEDDING_ARCHITECTURES else "chat"


def list_models(home: Home) -> list[ModelEntry]:
    """Every .gguf in the home and its adapters/ folder, with header info (or the error)."""
    files: list[Path] = []
    for folder in (home.root, home.adapters_dir):
        if folder.is_dir():
            files.extend(sorted(p for p in folder.glob("*.gguf") if p.is_file()))
    entries = []
    for path in files:
        try:
            entries.append(ModelEntry(path, read_gguf_info(path)))
        except ModelError as exc:
            entries.append(ModelEntry(path, None, str(exc)))
    return entries


def default_model_name() -> str:
    from .default import DEFAULT_CHAT_GGUF

    return os.environ.get(DEFAULT_MODEL_ENV) or DEFAULT_CHAT_GGUF


def resolve_model(spec: str | None, home: Home) -> Path:
    """A model given as a path or a name in the home; None means the default."""
    if spec is None:
        spec = default_model_name()
        path = home.root / spec
        if path.is_file() or Path(spec).is_file():
            return path if path.is_file() else Path(spec)
        chats = [e for e in list_models(home) if e.is_chat]
        if len(chats) == 1:
            return chats[0].path
        if not chats:
            raise ModelNotFoundError(
                f"no chat model in {home.root}; run ./setup.sh (installs the default model) "
                "or `assistant models pull REPO_ID`"
            )
        names = ", ".join(e.name for e in chats)
        raise ModelNotFoundError(
            f"the default model {spec} is not in {home.root}; pick one with --model ({names}) "
            f"or set {DEFAULT_MODEL_ENV}"
        )
    candidate = Path(spec).expanduser()
    if candidate.is_file():
        return candidate
    looks_like_path = os.sep in spec or spec.endswith(".gguf")
    if looks_like_path and not (home.root / spec).is_file():
        if candidate.is_dir():
            raise ModelError(f"{candidate} is a directory, not a model file; give the path of a .gguf file")
        raise ModelNotFoundError(f"model file not found: {candidate}")
    entries = [e for e in list_models(home) if e.role != "adapter"]
    for e in entries:
        if spec in (e.name, e.path.stem):
            return e.path
    lowered = spec.lower()
    matches = [e for e in entries if e.path.stem.lower().startswith(lowered)]
    if len(matches) == 1:
        return matches[0].path
    known = ", ".join(e.path.stem for e in entries) or "none; run ./setup.sh"
    if len(matches) > 1:
        raise ModelNotFoundError(
            f"model name {spec!r} is ambiguous: {', '.join(e.path.stem for e in matches)}"
        )
    raise ModelNotFoundError(f"unknown model {spec!r} in {home.root} (known: {known})")


def cached_sha256(path: Path, home: Home) -> str:
    """sha256 of a model file, cached by (size, mtime) in the home."""
    cache_file = home.root / SHA_CACHE
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    st = path.stat()
    key = str(path.resolve())
    entry = cache.get(key)
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return str(entry["sha256"])
    digest = sha256_file(path)
    cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    try:
        atomic_write_text(cache_file, json.dumps(cache, indent=1, sort_keys=True))
    except OSError:
        log.debug("could not write %s", cache_file)
    return digest
