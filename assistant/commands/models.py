"""`assistant models`: list, show and pull GGUF models in the model home."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..models.catalog import ModelEntry
    from .context import AppContext


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_params(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}K"


def describe(entry: ModelEntry, app: AppContext, *, full: bool = False) -> dict[str, Any]:
    from ..models.catalog import cached_sha256

    d: dict[str, Any] = {
        "name": entry.name,
        "path": str(entry.path),
        "role": entry.role,
        "size_bytes": entry.path.stat().st_size,
    }
    if entry.info is None:
        d["error"] = entry.error
        return d
    info = entry.info
    d.update(
        {
            "architecture": info.architecture,
            "parameters": info.n_params,
            "quant_type": info.quant_type,
            "context_length": info.context_length,
            "chat_template": info.chat_template is not None,
            "sha256": cached_sha256(entry.path, app.home),
        }
    )
    if info.kind == "adapter":
        d["adapter_type"] = info.get("adapter.type")
        d["lora_alpha"] = info.get("adapter.lora.alpha")
    if full:
        from ..models.gguf_info import LongArray

        meta = {}
        for k, v in info.metadata.items():
            if isinstance(v, LongArray):
                meta[k] = f"<array of {v.length:,}>"
            elif isinstance(v, str) and len(v) > 400 and k != "tokenizer.chat_template":
                meta[k] = v[:400] + "…"
            else:
                meta[k] = v
        d["metadata"] = meta
        d["tensors"] = len(info.tensors)
        d["gguf_version"] = info.version
    return d


class ModelsGroup(click.Group):
    """`assistant models` alone lists the models."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group("models", cls=ModelsGroup)
def models_group() -> None:
    """The models in the model home (list, show, pull)."""


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one model a line.")
@click.pass_obj
def list_command(app: AppContext, as_json: bool) -> None:
    """List models: architecture, parameters, quant type, size, context, template, sha256."""
    from ..models.catalog import list_models

    entries = list_models(app.home)
    if as_json:
        for e in entries:
            click.echo(json.dumps(describe(e, app)))
        return
    if not entries:
        click.echo(
            f"No models in {app.home.root}. Run ./setup.sh for the default model, "
            "or `assistant models pull REPO_ID`."
        )
        return
    rows = [("NAME", "ROLE", "ARCH", "PARAMS", "QUANT", "SIZE", "CTX", "TEMPLATE", "SHA256")]
    for e in entries:
        d = describe(e, app)
        if "error" in d:
            rows.append(
                (e.name, "broken", "-", "-", "-", human_size(d["size_bytes"]), "-", "-", d["error"][:60])
            )
            continue
        rows.append(
            (
                e.name,
                d["role"],
                d["architecture"],
                human_params(d["parameters"]),
                d["quant_type"],
                human_size(d["size_bytes"]),
                f"{d['context_length']:,}" if d["context_length"] else "-",
                "yes" if d["chat_template"] else "no",
                d["sha256"][:12],
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
    click.echo(f"\n{len(entries)} file(s) in {app.home.root}")


@models_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show_command(app: AppContext, name: str, as_json: bool) -> None:
    """Details of one model: header metadata (arrays summarised), sha256."""
    from ..models.catalog import ModelEntry, resolve_model
    from ..models.gguf_info import read_gguf_info

    path = resolve_model(name, app.home)
    d = describe(ModelEntry(path, read_gguf_info(path)), app, full=True)
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    meta = d.pop("metadata")
    for k, v in d.items():
        if k == "parameters":
            v = f"{v:,} ({human_params(v)})"
        elif k == "size_bytes":
            v = f"{v:,} ({human_size(v)})"
        click.echo(f"{k:>16}: {v}")
    click.echo("        metadata:")
    for k, v in meta.items():
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        if k == "tokenizer.chat_template":
            text = text.replace("\n", "\\n")
            text = text[:160] + ("…" if len(text) > 160 else "")
        click.echo(f"    {k} = {text}")


@models_group.command("pull")
@click.argument("repo_id")
@click.argument("filename", required=False)
@click.option("--revision", help="Branch, tag or commit of the Hub repository.")
@click.pass_obj
def pull_command(app: AppContext, repo_id: str, filename: str | None, revision: str | None) -> None:
    """Download a GGUF from the Hugging Face Hub into the model home.

    Without FILENAME, the repository's only GGUF (or its Q4_K_M) is taken.
    With HF_HUB_OFFLINE=1, only the local Hub cache is used.
    """
    from ..models.gguf_info import read_gguf_info
    from ..models.pull import pull

    dest = pull(repo_id, filename, app.home, revision=revision)
    info = read_gguf_info(dest)
    click.echo(f"{dest} ({info.architecture}, {info.quant_type}, {human_size(dest.stat().st_size)})")
