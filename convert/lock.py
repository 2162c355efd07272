"""``OUT.lock.json``: what a recipe build used and produced, next to the GGUF it describes.

The lock holds the recipe (its text, sha256 and parsed settings), every input file with its
size and sha256 (and the resolved Hub revision where there is one), the tool, llama.cpp and
gguf versions, the provenance record embedded in the GGUF, the output's sha256 with one
sha256 per tensor and one for the header (so a damaged file can be pinned to a tensor), and
the quality report. It is JSON with sorted keys; it records absolute paths of the machine
that built it (the GGUF itself records none, see :mod:`convert.build`).
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

from assistant.errors import RecipeError
from assistant.io import atomic_write_text, sha256_file

from .recipe import show

LOCK_SUFFIX = ".lock.json"
LOCK_VERSION = 1
LOCK_TOOL = "edge-assistant build"
TRAINING_RECORD = "training.json"  # written by `assistant finetune` beside the adapter it made
_REQUIRED = ("lock_version", "recipe", "inputs", "output", "provenance", "versions", "quality")


def lock_path_for(out: Path) -> Path:
    return out.with_name(out.name + LOCK_SUFFIX)


def _pkg_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


_libs_cache: dict[str, str] | None = None


def llama_cpp_libs() -> dict[str, str]:
    """sha256 of the llama.cpp libraries that plan and quantize the tensors: the exact build."""
    global _libs_cache
    if _libs_cache is None:
        import llama_cpp

        libdir = Path(llama_cpp.__file__).parent / "lib"
        found = {}
        for name in ("libllama.so", "libggml-base.so", "libllama.dylib", "libggml-base.dylib", "llama.dll"):
            p = libdir / name
            if p.is_file():
                found[name] = sha256_file(p.resolve())  # no memo: verification sees the current bytes
        _libs_cache = found
    return dict(_libs_cache)


def tool_versions() -> dict[str, Any]:
    import llama_cpp
    import numpy

    from . import TOOL_NAME, __version__

    return {
        "tool": TOOL_NAME,
        "edge_assistant": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "gguf": _pkg_version("gguf"),
        "safetensors": _pkg_version("safetensors"),
        "llama_cpp_python": getattr(llama_cpp, "__version__", None),
        "llama_cpp": llama_cpp.llama_version().decode("utf-8", "replace"),
        "llama_cpp_libs": llama_cpp_libs(),
    }


def hash_gguf(path: Path) -> dict[str, Any]:
    """sha256 of the whole file, of its header (metadata + tensor table) and of every tensor, in one read."""
    from assistant.errors import ModelError
    from assistant.models.gguf_info import read_gguf_info

    regions: list[tuple[int, int, str]] = []
    try:
        info = read_gguf_info(path)
        regions.append((0, info.data_offset, ""))
        regions.extend(
            (info.data_offset + t.offset, info.data_offset + t.offset + t.n_bytes, t.name)
            for t in info.tensors
        )
    except ModelError:
        info = None
    regions.sort()
    whole = hashlib.sha256()
    parts = {name: hashlib.sha256() for _, _, name in regions}
    pos = 0
    k = 0  # first region that may still overlap the current block
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            whole.update(block)
            end = pos + len(block)
            while k < len(regions) and regions[k][1] <= pos:
                k += 1
            j = k
            while j < len(regions) and regions[j][0] < end:
                a, b, name = regions[j]
                lo, hi = max(a, pos), min(b, end)
                if hi > lo:
                    parts[name].update(block[lo - pos : hi - pos])
                j += 1
            pos = end
    result: dict[str, Any] = {"sha256": whole.hexdigest(), "size": pos}
    if info is not None:
        result["header_sha256"] = parts[""].hexdigest()
        result["tensors"] = {name: parts[name].hexdigest() for _, _, name in regions if name}
    return result


def write_lock(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_lock(path: Path) -> dict[str, Any]:
    """A lock file, checked for the fields the build and verify rely on."""
    where = show(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RecipeError(f"{where}: no such lock file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{where}: cannot read the lock ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecipeError(
            f"{where}, line {exc.lineno}: not valid JSON ({exc.msg}); rebuild with --force"
        ) from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a JSON object; rebuild with --force")
    for key in _REQUIRED:
        if key not in data:
            raise RecipeError(f"{where}: {key}: missing; is this a lock written by `assistant build`?")
    if data["lock_version"] != LOCK_VERSION:
        raise RecipeError(
            f"{where}: lock_version: {data['lock_version']!r} is not {LOCK_VERSION}; rebuild with --force"
        )
    out = data["output"]
    if not isinstance(out, dict) or not isinstance(out.get("sha256"), str):
        raise RecipeError(f"{where}: output.sha256: missing; rebuild with --force")
    inputs = data["inputs"]
    if not isinstance(inputs, dict) or not isinstance(inputs.get("base"), dict):
        raise RecipeError(f"{where}: inputs.base: missing; rebuild with --force")
    if not isinstance(inputs.get("adapters", []), list):
        raise RecipeError(f"{where}: inputs.adapters: expected a list; rebuild with --force")
    return data
