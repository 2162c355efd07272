"""What the chat UI is started with (no textual imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversations import parse_resume
from ..engine.sampling import SamplingParams
from ..home import Home
from ..turn import CHAT_TOP_K

DEFAULT_TOP_K = CHAT_TOP_K


@dataclass
class TuiOptions:
    home: Home
    model: Path | None = None  # the chat model to load; None: no model (model_problem says why)
    model_problem: str | None = None
    n_ctx: int | None = None
    threads: int | None = None
    chat_format: str | None = None
    verbose: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)  # flags given on the command line
    system: str | None = None  # system prompt for new chats
    resume: int | str | None = None  # a conversation id, or "last"
    persist: bool = True  # keep chats in the home's conversations.db


def sampling_with(base: SamplingParams, values: dict[str, Any]) -> SamplingParams:
    """base with the known sampling fields of values applied (unknown keys ignored)."""
    fields = set(SamplingParams.__dataclass_fields__) - {"ignore_eos"}
    clean = {k: v for k, v in values.items() if k in fields and v is not None}
    if "stop" in clean:
        clean["stop"] = tuple(clean["stop"])
    return base.with_(**clean)


def build_options(
    home: Home,
    *,
    model: str | None,
    n_ctx: int | None,
    threads: int | None,
    chat_format: str | None,
    system: str | None,
    sampling: dict[str, Any],
    resume: str | None,
    verbose: bool,
) -> TuiOptions:
    """Options for the UI from the `chat` command's flags.

    An explicit --model that does not resolve is an error (exit 2, before the
    screen opens); a missing default model opens the UI in its "no model" state.
    """
    from ..errors import ModelNotFoundError, UsageError
    from ..models.catalog import resolve_model

    path: Path | None = None
    problem: str | None = None
    if model is not None:
        path = resolve_model(model, home)
    else:
        try:
            path = resolve_model(None, home)
        except ModelNotFoundError as exc:
            problem = str(exc)
    wanted = parse_resume(resume) if resume is not None else None
    if system is not None and not system.strip():
        raise UsageError("--system is empty; leave it out to use the model's default")
    SamplingParams().with_(**{k: v for k, v in sampling.items() if v is not None})  # validate early
    return TuiOptions(
        home=home,
        model=path,
        model_problem=problem,
        n_ctx=n_ctx,
        threads=threads,
        chat_format=chat_format,
        verbose=verbose,
        sampling={k: v for k, v in sampling.items() if v is not None and v != ()},
        system=system,
        resume=wanted,
    )
