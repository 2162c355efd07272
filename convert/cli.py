"""Click commands: ``assistant convert`` / ``assistant convert-adapter`` (also ``python -m convert``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .quant_types import DEFAULT_QUANT, QUANT_TYPES


def _threads(value: str | None) -> int | None:
    from assistant.engine.threads import parse_threads  # lazy: start-up stays fast

    return parse_threads(value)


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


@click.command("convert")
@click.argument("base")
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="The GGUF file to write."
)
@click.option(
    "--adapter",
    "adapters",
    multiple=True,
    metavar="PATH[@SCALE]",
    help="A PEFT LoRA adapter directory (or Hub repo id) to merge; repeatable; @SCALE weights it (default 1).",
)
@click.option(
    "--quant",
    default=DEFAULT_QUANT,
    show_default=True,
    metavar="TYPE",
    help=f"Output type: {', '.join(QUANT_TYPES)}.",
)
@click.option(
    "--threads",
    metavar="auto|N",
    default="auto",
    show_default=True,
    callback=lambda ctx, param, value: _threads(value),
    help="Threads for quantizing: auto = the physical cores free at the start (at most 8); N pins it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def convert_command(
    base: str, out: Path, adapters: tuple[str, ...], quant: str, threads: int | None, as_json: bool
) -> None:
    """Merge LoRA adapters into BASE and write one quantized GGUF.

    BASE is a Hugging Face model directory, a Hub repo id (offline: from the local cache
    only) or a .gguf file of any type. Needs no torch; memory stays near the largest tensor.
    """
    from .api import convert_model
    from .peft import parse_adapter_arg
    from .progress import for_terminal

    bar = for_terminal()
    try:
        result = convert_model(
            base, out, [parse_adapter_arg(a) for a in adapters], quant=quant, threads=threads, progress=bar
        )
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "out": str(result.out),
                    "type": result.output_type,
                    "tensors": result.n_tensors,
                    "size_bytes": result.size,
                    "seconds": round(result.seconds, 3),
                    "provenance": result.provenance,
                }
            )
        )
    else:
        click.echo(
            f"wrote {result.out} ({result.output_type}, {result.n_tensors} tensors, {_human(result.size)}, {result.seconds:.1f} s)"
        )


@click.command("convert-adapter")
@click.argument("adapter")
@click.option(
    "--base", required=True, help="The base model it was trained on (HF directory, repo id or .gguf)."
)
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="The GGUF LoRA file to write."
)
@click.option(
    "--outtype",
    type=click.Choice(["f32", "f16", "q8_0"], case_sensitive=False),
    default="f16",
    show_default=True,
    help="Type of the LoRA tensors.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def convert_adapter_command(adapter: str, base: str, out: Path, outtype: str, as_json: bool) -> None:
    """Export a PEFT LoRA ADAPTER as a GGUF LoRA, applied by llama.cpp at run time over a (quantized) base."""
    from .api import convert_adapter
    from .progress import for_terminal

    bar = for_terminal()
    try:
        result = convert_adapter(adapter, base, out, outtype=outtype, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "out": str(result.out),
                    "type": result.output_type,
                    "tensors": result.n_tensors,
                    "size_bytes": result.size,
                    "provenance": result.provenance,
                }
            )
        )
    else:
        click.echo(
            f"wrote {result.out} (GGUF LoRA, {result.output_type}, {result.n_tensors} tensors, {_human(result.size)})"
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and llama.cpp's own log.")
def main_group(verbose: bool) -> None:
    """HF + PEFT -> GGUF conversion (the same commands as `assistant convert`)."""
    from assistant.console import setup_logging

    setup_logging(verbose)


main_group.add_command(convert_command)
main_group.add_command(convert_adapter_command)


def main(argv: list[str] | None = None) -> None:
    """``python -m convert``: errors become one line on stderr and exit status 2."""
    from assistant.console import run_cli

    run_cli(main_group, "python -m convert", argv)
