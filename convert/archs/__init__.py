"""The supported architectures, one module each (see :mod:`convert.archs.base`)."""

from __future__ import annotations

from typing import Any

from assistant.errors import ConversionError

from . import bert, llama, qwen2
from .base import Arch

ARCHS: tuple[Arch, ...] = (llama.ARCH, qwen2.ARCH, bert.ARCH)
_BY_HF = {hf: a for a in ARCHS for hf in a.hf_architectures}
_BY_GGUF = {a.name: a for a in ARCHS}


def supported() -> str:
    return ", ".join(sorted(_BY_HF))


def for_config(config: dict[str, Any], where: str = "config.json") -> Arch:
    names = config.get("architectures") or []
    if not isinstance(names, list) or not names:
        raise ConversionError(f"{where} has no 'architectures' list; cannot tell what model this is")
    for n in names:
        if n in _BY_HF:
            return _BY_HF[n]
    raise ConversionError(f"unsupported architecture {names[0]} in {where} (supported: {supported()})")


def for_gguf(arch_name: str, where: str) -> Arch:
    if arch_name in _BY_GGUF:
        return _BY_GGUF[arch_name]
    raise ConversionError(
        f"unsupported architecture {arch_name} in {where} (supported GGUF architectures: {', '.join(sorted(_BY_GGUF))})"
    )


__all__ = ["ARCHS", "Arch", "for_config", "for_gguf", "supported"]
