"""Options shared by the commands that load a chat model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..engine.sampling import SamplingParams

_D = SamplingParams()


def _threads(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from ..engine.threads import parse_threads

    return parse_threads(value)  # a bad value is one line (UsageError), not click's usage block


def threads_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--threads auto|N``: None (auto: from the CPU free before each answer or batch,
    adapted while it runs) or a pinned count."""
    return click.option(
        "--threads",
        metavar="auto|N",
        default="auto",
        show_default=True,
        callback=_threads,
        help="CPU threads: auto follows the CPU that is free (physical cores when idle); N pins it.",
    )(f)


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options: list[Callable[..., Any]] = [
        click.option(
            "-m",
            "--model",
            metavar="NAME|PATH",
            help="Chat model: a name in the model home or a .gguf path (default: the embedded SmolLM2).",
        ),
        click.option(
            "--ctx",
            "n_ctx",
            type=int,
            metavar="N",
            help="Context window in tokens (default 4096, at most the model's trained context).",
        ),
        threads_option,
        click.option(
            "--chat-format",
            metavar="NAME|FILE",
            help="Chat template for models without one: chatml, llama3, llama2, mistral, gemma, "
            "phi3, zephyr, or a .jinja file.",
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def sampling_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "-t",
            "--temperature",
            type=float,
            help=f"Sampling temperature; 0 = greedy (default {_D.temperature}).",
        ),
        click.option("--top-p", type=float, help=f"Nucleus sampling mass (default {_D.top_p})."),
        click.option("--top-k", type=int, help=f"Keep the k likeliest tokens; 0 = off (default {_D.top_k})."),
        click.option(
            "--min-p", type=float, help=f"Drop tokens below min_p x the top probability (default {_D.min_p})."
        ),
        click.option(
            "--repeat-penalty",
            type=float,
            help=f"Penalty on tokens repeated in the last {_D.repeat_last_n}; 1.0 = off (default {_D.repeat_penalty}).",
        ),
        click.option("--seed", type=int, help="Random seed for reproducible answers (default: random)."),
        click.option(
            "-n", "--max-tokens", type=int, help=f"Longest answer in tokens (default {_D.max_tokens})."
        ),
        click.option(
            "--stop", multiple=True, metavar="TEXT", help="Stop the answer at this text (repeatable)."
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def sampling_from(kwargs: dict[str, Any]) -> SamplingParams:
    """Build SamplingParams from the sampling options (popped from kwargs)."""
    keys = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens", "stop")
    values = {k: kwargs.pop(k, None) for k in keys}
    if not values["stop"]:
        values["stop"] = None
    return SamplingParams().with_(**values)
