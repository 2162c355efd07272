"""The recipes `assistant setup` builds into the model home: build/minilm.toml (the embedding
model), build/smollm2.toml (the stock chat model) and build/smollm2-grounded.toml (the default chat
model: the stock one + the adapter in build/adapters/smollm2-grounded/).

Setup and `assistant build` run the same recipe, so they cannot disagree; every step is skipped
when its output is current. A checkout reads build/; an installed copy reads the copies its wheel
carries in convert/recipes/ (pyproject's force-include, the bundle's project wheel), adapters
included: a recipe names its adapter relative to itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from assistant.errors import AssistantError

from .build import BuildResult, Plan, plan_build, run_build, up_to_date_result

SETUP_RECIPES = ("minilm.toml", "smollm2.toml", "smollm2-grounded.toml")
SETUP_ADAPTERS = ("adapters/smollm2-grounded",)  # directories under build/ the recipes name


def setup_recipe_path(name: str) -> Path:
    """build/NAME of a checkout, else the copy packaged in the wheel (convert/recipes/)."""
    pkg = Path(__file__).resolve().parent
    checkout = pkg.parent / "build" / name
    return checkout if checkout.is_file() else pkg / "recipes" / name


def setup_plan(name: str, home: Path) -> Plan:
    """What building the recipe into ``home`` would do; writes nothing.

    Repair mode: a damaged GGUF, or one without a lock (made by an older setup), is rebuilt.
    """
    return plan_build(setup_recipe_path(name), home, repair=True)


def gguf_current(name: str, path: Path) -> bool:
    """The GGUF is what the recipe gives for its inputs: it matches its lock, and the lock's inputs
    and recipe are the current ones."""
    if not path.is_file():
        return False
    try:
        plan = setup_plan(name, path.parent)
    except AssistantError:
        return False
    return not plan.needed and plan.recipe.output == Path(os.path.normpath(path.absolute()))


def build_setup_recipe(name: str, home: Path, say: Callable[[str], None]) -> BuildResult:
    """Build the recipe into ``home`` unless its output is current (``result.built`` says which)."""
    plan = setup_plan(name, home)
    if not plan.needed:
        return up_to_date_result(plan)  # records a comment-only change of the recipe in the lock
    say(f"build {plan.recipe.output.name} with the recipe {plan.recipe.path.name} ({plan.recipe.quant}) …")
    return run_build(plan)
