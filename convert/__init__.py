"""Hugging Face (+ PEFT LoRA) -> GGUF, with numpy, gguf-py and llama.cpp's quantizer only.

No torch, no transformers: safetensors are memory-mapped and streamed tensor by
tensor, adapters are merged in float32, and the result is written atomically.
The library entry points are in :mod:`convert.api`; the click commands in
:mod:`convert.cli` (``assistant convert``, ``python -m convert``).
"""

from __future__ import annotations

from assistant import __version__

TOOL_NAME = "edge-assistant convert"

__all__ = ["TOOL_NAME", "__version__"]
