"""`assistant bundle`: one directory (or .tar.gz) that installs the assistant at an air-gapped site."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .context import AppContext


@click.command("bundle")
@click.option(
    "-o", "--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to write."
)
@click.option("--tar", is_flag=True, help="Write OUT.tar.gz (one file to carry) instead of the directory.")
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    metavar="NAME|PATH",
    help="Chat model to carry (repeatable; default: the default model).",
)
@click.option("--kb", "kbs", multiple=True, metavar="NAME", help="Knowledge base to carry (repeatable).")
@click.option(
    "--adapter",
    "adapters",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="GGUF LoRA adapter to carry (repeatable).",
)
@click.option(
    "--recipe",
    "recipes",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Build recipe to carry with its local inputs; the site rebuilds it (repeatable).",
)
@click.option(
    "--llama-wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A llama-cpp-python wheel to carry instead of this machine's (e.g. a portable build: "
    "scripts/build_portable_llama.sh).",
)
@click.option(
    "--update-from",
    type=click.Path(path_type=Path),
    metavar="MANIFEST",
    help="The manifest.json of the bundle the site installed: carry only what changed since.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_obj
def bundle_command(
    app: AppContext,
    out: Path,
    tar: bool,
    models: tuple[str, ...],
    kbs: tuple[str, ...],
    adapters: tuple[Path, ...],
    recipes: tuple[Path, ...],
    llama_wheel: Path | None,
    update_from: Path | None,
    as_json: bool,
) -> None:
    """Make a bundle for an air-gapped site: the assistant and every dependency as wheels (exactly
    the versions installed here, llama.cpp prebuilt), the models, optional knowledge bases,
    adapters and recipes, install.sh and a sha256 manifest.

    At the site: `./install.sh [PREFIX]` (python3 only; no network, no compiler).

    \b
    Examples:
        assistant bundle -o site-bundle --kb default
        assistant bundle -o site-update --recipe build/support.toml --update-from site-bundle/manifest.json
    """
    from ..bundle.make import BundleSpec, make_bundle

    spec = BundleSpec(
        out=out.expanduser().absolute(),
        home=app.home,
        models=list(models),
        kbs=list(kbs),
        adapters=list(adapters),
        recipes=list(recipes),
        llama_wheel=llama_wheel,
        update_from=update_from,
        tar=tar,
    )
    step = (lambda s: None) if as_json else (lambda s: click.echo(f"  {s}", err=True))
    result = make_bundle(spec, step)
    m = result.manifest
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(result.path),
                    "kind": m["kind"],
                    "files": result.carried,
                    "bytes": result.bytes,
                    "seconds": round(result.seconds, 1),
                    "manifest_sha256": result.manifest_sha256,
                }
            )
        )
        return
    click.echo(
        f"{m['kind']} bundle: {result.path} ({result.carried} files, {result.bytes / 1e6:.0f} MB, "
        f"{result.seconds:.0f} s)"
    )
    click.echo(f"manifest sha256: {result.manifest_sha256} (give it to the site to compare)")
    click.echo(
        f"for {m['python']['implementation']} {m['python']['version']} on {m['platform']['system']} {m['platform']['machine']}; at the site: ./install.sh [PREFIX]"
    )
