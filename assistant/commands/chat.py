"""`assistant ask` (one answer) and `assistant chat --plain` (line-based chat)."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from .knowledge import ground_for_ask, print_sources, rag_options
from .options import model_options, sampling_from, sampling_options

if TYPE_CHECKING:
    from ..cli import AppContext
    from ..engine import ChatModel, ChatStream


def load_chat_model(
    app: AppContext, model: str | None, n_ctx: int | None, threads: int | None, chat_format: str | None
) -> ChatModel:
    from ..engine import ChatModel
    from ..models.catalog import resolve_model

    path = resolve_model(model, app.home)
    return ChatModel(path, n_ctx=n_ctx, n_threads=threads, chat_format=chat_format, verbose=app.verbose)


@contextlib.contextmanager
def sigint_cancels(event: threading.Event) -> Iterator[None]:
    """While generating, Ctrl+C sets the cancel event instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        event.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def read_stdin() -> str:
    """Piped input, if any (never blocks on a terminal); bytes that are not UTF-8 become U+FFFD."""
    stream = sys.stdin
    if stream is None or stream.closed:
        return ""
    try:
        if stream.isatty():
            return ""
    except ValueError:
        return ""
    raw = getattr(stream, "buffer", None)
    if raw is None:  # a text-only stream (tests, embedding)
        return valid_text(stream.read())
    return raw.read().decode("utf-8", errors="replace")


def valid_text(text: str) -> str:
    """Text that can be encoded: undecodable argv bytes (surrogate escapes) become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", errors="replace")
        except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
            return text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def build_question(args: tuple[str, ...], stdin_text: str) -> str:
    """The user message: piped text as context, then the question."""
    question = valid_text(" ".join(args)).strip()
    context = valid_text(stdin_text).strip()
    if question and context:
        return f"{context}\n\n{question}"
    if question or context:
        return question or context
    raise UsageError('empty question: give it as an argument (assistant ask "...") or on standard input')


def stream_to(out: Any, stream: ChatStream) -> str:
    parts = []
    for delta in stream:
        parts.append(delta)
        out.write(delta)
        out.flush()
    return "".join(parts)


@click.command("ask")
@click.argument("question", nargs=-1)
@model_options
@sampling_options
@click.option("-s", "--system", metavar="TEXT", help="System prompt.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: answer, model, usage, timings.")
@click.option("--ignore-eos", is_flag=True, hidden=True, help="Benchmarks: generate past end-of-turn.")
@rag_options
@click.pass_obj
def ask_command(
    app: AppContext,
    question: tuple[str, ...],
    model: str | None,
    n_ctx: int | None,
    threads: int | None,
    chat_format: str | None,
    system: str | None,
    as_json: bool,
    **kwargs: Any,
) -> int:
    """Answer one question, streamed to stdout.

    The question can come from standard input too; with both, the piped text
    is context for the question:

    \b
        assistant ask "What is GGUF?"
        echo "What is GGUF?" | assistant ask
        cat notes.txt | assistant ask "Summarise this"
    """
    from ..engine import Message, compute

    compute.claim_current_thread()  # all compute from this thread: no hop per token
    ignore_eos = kwargs.pop("ignore_eos", False)
    params = sampling_from(kwargs).with_(ignore_eos=ignore_eos or None)
    content = build_question(question, read_stdin())
    if system is not None and not system.strip():
        raise UsageError("--system is empty; leave it out to use the model's default")
    system = valid_text(system) if system else system
    chat_model = load_chat_model(app, model, n_ctx, threads, chat_format)
    messages = ([Message("system", system)] if system else []) + [Message("user", content)]
    query = valid_text(" ".join(question))
    grounded = ground_for_ask(app, chat_model, content, query, system, params.max_tokens, kwargs)
    if grounded is not None:
        messages = grounded.messages
    cancel = threading.Event()
    stream = chat_model.chat(messages, params, cancel=cancel)
    for notice in stream.context.notices():
        click.secho(f"note: {notice}", err=True, dim=True)
    with sigint_cancels(cancel):
        if as_json:
            stream.text()
        else:
            stream_to(sys.stdout, stream)
    result = stream.result
    assert result is not None
    if as_json:
        obj = {
            "answer": result.text,
            "model": chat_model.path.name,
            "usage": result.usage,
            "timings": result.timings.as_dict(),
            "finish_reason": result.finish_reason,
            "context": {
                "window": chat_model.n_ctx,
                "tokens_used": result.tokens_used,
                "notices": result.context.notices(),
            },
            "sources": [src.as_dict() for src in grounded.sources] if grounded is not None else [],
            "retrieval_ms": round(grounded.retrieval_ms, 1) if grounded is not None else None,
        }
        click.echo(json.dumps(obj, ensure_ascii=False))
    else:
        if not result.text.endswith("\n"):
            sys.stdout.write("\n")
        if result.finish_reason == "length":
            click.secho("note: the answer reached --max-tokens and was cut", err=True, dim=True)
        print_sources(grounded)
    return 130 if result.finish_reason == "cancelled" else 0


PLAIN_HELP = """Commands: /new (new chat), /system TEXT (set system prompt), /help, /exit.
End a line with \\ to continue on the next line. Ctrl+C stops an answer, Ctrl+D quits."""


@click.command("chat")
@click.option("--plain", is_flag=True, help="Line-based chat in the plain terminal (no full-screen UI).")
@model_options
@sampling_options
@click.option("-s", "--system", metavar="TEXT", help="System prompt.")
@click.option(
    "-r", "--resume", metavar="ID|last", help="Reopen a saved chat: its number, or 'last' (full-screen chat)."
)
@click.pass_obj
def chat_command(
    app: AppContext,
    plain: bool = True,
    model: str | None = None,
    n_ctx: int | None = None,
    threads: int | None = None,
    chat_format: str | None = None,
    system: str | None = None,
    resume: str | None = None,
    **kwargs: Any,
) -> int:
    """Chat with a local model (the default when no command is given).

    Opens the full-screen chat when standard input and output are a terminal
    (F1 there lists the keys); --plain, or a pipe, gives the line-based chat.
    """
    if plain or not _is_terminal():
        return plain_chat(app, model, n_ctx, threads, chat_format, system, kwargs)
    from ..tui.app import run_tui  # textual: imported only when the UI opens
    from ..tui.options import build_options

    options = build_options(
        app.home,
        model=model,
        n_ctx=n_ctx,
        threads=threads,
        chat_format=chat_format,
        system=system,
        sampling=kwargs,
        resume=resume,
        verbose=app.verbose,
    )
    return run_tui(options)


def _is_terminal() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _read_message(prompt: str) -> str | None:
    """One user message (lines ending in a backslash continue); None on Ctrl+D."""
    lines: list[str] = []
    while True:
        try:
            line = input(prompt if not lines else "... ")
        except EOFError:
            return None if not lines else valid_text("\n".join(lines))
        if line.endswith("\\"):
            lines.append(line[:-1])
            continue
        lines.append(line)
        return valid_text("\n".join(lines))


def plain_chat(
    app: AppContext,
    model: str | None,
    n_ctx: int | None,
    threads: int | None,
    chat_format: str | None,
    system: str | None,
    kwargs: dict[str, Any],
) -> int:
    from ..engine import Message, compute

    compute.claim_current_thread()
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    if isinstance(sys.stdin, io.TextIOWrapper):  # bytes that are not UTF-8 must not end the chat
        sys.stdin.reconfigure(errors="surrogateescape")
    system = valid_text(system) if system else system
    params = sampling_from(kwargs)
    chat_model = load_chat_model(app, model, n_ctx, threads, chat_format)
    interactive = sys.stdin.isatty()
    if interactive:
        click.secho(
            f"Chatting with {chat_model.path.name} ({chat_model.n_ctx:,}-token window). "
            "Type /help for commands, Ctrl+D to quit.",
            dim=True,
        )
    history: list[Message] = []
    while True:
        try:
            text = _read_message("> " if interactive else "")
        except KeyboardInterrupt:
            click.echo()
            continue
        if text is None:
            if interactive:
                click.echo()
            return 0
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith("/"):
            cmd, _, arg = stripped.partition(" ")
            if cmd in ("/exit", "/quit", "/bye"):
                return 0
            if cmd in ("/new", "/clear"):
                history.clear()
                click.secho("(new chat)", dim=True)
            elif cmd == "/system":
                system = arg.strip() or None
                click.secho(f"(system prompt {'set' if system else 'cleared'})", dim=True)
            elif cmd == "/help":
                click.echo(PLAIN_HELP)
            else:
                click.secho(f"unknown command {cmd}; /help lists them", fg="red")
            continue
        history.append(Message("user", text))
        messages = ([Message("system", system)] if system else []) + history
        cancel = threading.Event()
        stream = chat_model.chat(messages, params, cancel=cancel)
        for notice in stream.context.notices():
            click.secho(f"note: {notice}", dim=True, err=True)
        with sigint_cancels(cancel):
            answer = stream_to(sys.stdout, stream)
        result = stream.result
        assert result is not None
        sys.stdout.write("\n")
        if result.finish_reason == "cancelled":
            click.secho("(stopped)", dim=True)
        history.append(Message("assistant", answer))
        if interactive:
            t = result.timings
            click.secho(
                f"[{result.tokens_used:,}/{chat_model.n_ctx:,} tokens · {t.decode_tps:.0f} tok/s]", dim=True
            )
