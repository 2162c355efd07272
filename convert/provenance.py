"""Provenance: what went into a converted GGUF, as one JSON metadata value.

Key ``edge_assistant.provenance``: the tool and its version, the base, every input file
with its size and sha256, the adapters with their scales, and the output type. Paths are
recorded as given (resolved), so converting the same inputs twice gives the same bytes;
build recipes pass ``names`` instead (the paths as the recipe writes them, relative to the
recipe file), so the same recipe gives the same bytes wherever the checkout is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from assistant.io import sha256_file

from . import TOOL_NAME, __version__

KEY = "edge_assistant.provenance"


# In-process memo: a build hashes its inputs to decide whether to rebuild, then the conversion
# records the same hashes. Keyed by identity and change time, so a file rewritten meanwhile is
# hashed again.
_memo: dict[tuple[str, int, int, int, int, int], str] = {}


def _sha256_memo(path: Path) -> str:
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cached = _memo.get(key)
    if cached is not None:
        return cached
    _memo[key] = digest = sha256_file(path)
    return digest


def file_record(path: Path, root: Path | None = None) -> dict[str, Any]:
    name = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)
    return {"file": name, "size": path.stat().st_size, "sha256": _sha256_memo(path)}


def build(
    *,
    base: Path,
    base_files: list[Path],
    adapters: list[tuple[Path, float, list[Path]]],
    output_type: str,
    kind: str = "model",
    extra: dict[str, Any] | None = None,
    names: tuple[str, list[str]] | None = None,
) -> dict[str, Any]:
    """``names``: (base, [adapter, ...]) as recorded instead of the resolved paths."""
    root = base if base.is_dir() else base.parent
    base_name = names[0] if names else str(base)
    adapter_names = names[1] if names else [str(path) for path, _, _ in adapters]
    if len(adapter_names) != len(adapters):
        raise ValueError("names: one name per adapter")
    record: dict[str, Any] = {
        "tool": TOOL_NAME,
        "version": __version__,
        "kind": kind,
        "base": {"path": base_name, "files": [file_record(p, root) for p in base_files]},
        "adapters": [
            {"path": name, "scale": scale, "files": [file_record(p, path) for p in files]}
            for name, (path, scale, files) in zip(adapter_names, adapters, strict=True)
        ],
        "output_type": output_type,
    }
    if extra:
        record.update(extra)
    return record


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))
