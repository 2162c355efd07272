"""`assistant ask` (one answer) and `assistant chat --plain` (line-based chat)."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from .options import model_options, sampling_from, sampling_options

if TYPE_CHECKING:
    from ..conversations import ConversationInfo, ConversationStore
    from ..engine import ChatModel, ChatStream
    from ..message import Message
    from .context import AppContext


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


def rag_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--rag, --no-rag, --kb, -k, --collection for `assistant ask` (they land in its **kwargs)."""
    options = [
        click.option(
            "--rag",
            "rag",
            is_flag=True,
            help="Use the knowledge base even for piped context (it is off for piped context by default).",
        ),
        click.option("--no-rag", "no_rag", is_flag=True, help="Do not use the knowledge base."),
        click.option(
            "--kb",
            "rag_kb",
            metavar="NAME|PATH",
            help="Knowledge base to answer from (default: knowledge/default.db when it exists).",
        ),
        click.option(
            "-k",
            "rag_k",
            type=click.IntRange(1, 50),
            help="Sources to retrieve (default 1, the best for small models).",
        ),
        click.option("--collection", "rag_collection", metavar="NAME", help="Only use this collection."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


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
    is context for the question, answered from it alone (--rag adds the
    knowledge base):

    \b
        assistant ask "What is GGUF?"
        echo "What is GGUF?" | assistant ask
        cat notes.txt | assistant ask "Summarise this"
    """
    from ..engine import compute
    from ..message import Message
    from ..turn import prepare_turn

    compute.claim_current_thread()  # all compute from this thread: no hop per token
    ignore_eos = kwargs.pop("ignore_eos", False)
    params = sampling_from(kwargs).with_(ignore_eos=ignore_eos or None)
    piped = read_stdin()
    content = build_question(question, piped)
    if system is not None and not system.strip():
        raise UsageError("--system is empty; leave it out to use the model's default")
    system = valid_text(system) if system else system
    query = valid_text(" ".join(question)).strip()
    retriever, top_k = ask_retriever(app, kwargs, context_piped=bool(query and piped.strip()))
    try:
        chat_model = load_chat_model(app, model, n_ctx, threads, chat_format)
        turn = prepare_turn(
            chat_model,
            system,
            [Message("user", content)],
            params,
            retriever=retriever,
            top_k=top_k,
            search_query=query or content,
        )
    finally:
        if retriever is not None:
            retriever.close()
    cancel = threading.Event()
    stream = turn.start(chat_model, params, cancel)
    for notice in turn.notices:
        click.secho(f"note: {notice}", err=True, dim=True)
    with sigint_cancels(cancel):
        if as_json:
            stream.text()
        else:
            stream_to(sys.stdout, stream)
    result = stream.result
    assert result is not None
    done = turn.finish(result, model=chat_model.path.name)
    cited = done.citations
    if as_json:
        obj = {
            "answer": done.text,
            "model": chat_model.path.name,
            "usage": result.usage,
            "timings": result.timings.as_dict(),
            "finish_reason": result.finish_reason,
            "context": {
                "window": chat_model.n_ctx,
                "tokens_used": result.tokens_used,
                "notices": result.context.notices(),
            },
            "sources": [src.as_dict() for src in turn.sources],
            "retrieval_ms": done.meta.get("retrieval_ms"),
            "citations": cited.valid if cited else [],
            "invalid_citations": cited.invalid if cited else [],
        }
        click.echo(json.dumps(obj, ensure_ascii=False))
    else:
        if not result.text.endswith("\n"):
            sys.stdout.write("\n")
        if result.finish_reason == "length":
            click.secho("note: the answer reached --max-tokens and was cut", err=True, dim=True)
        print_turn_sources(turn, done)
    return 130 if result.finish_reason == "cancelled" else 0


def ask_retriever(app: AppContext, kwargs: dict[str, Any], *, context_piped: bool) -> tuple[Any, int]:
    """The retriever `ask` grounds in (None: no retrieval) and its top k; pops the rag options.

    The default knowledge base is used when it exists, except for a question with piped
    context: that context is what the user asked about, so retrieval needs --rag or --kb.
    """
    from ..knowledge.grounding import DEFAULT_K
    from ..knowledge.retriever import open_retriever

    no_rag, rag = kwargs.pop("no_rag", False), kwargs.pop("rag", False)
    kb, k, collection = (
        kwargs.pop("rag_kb", None),
        kwargs.pop("rag_k", None),
        kwargs.pop("rag_collection", None),
    )
    if no_rag and (rag or kb):
        raise UsageError("--no-rag turns retrieval off; leave out --rag and --kb with it")
    if no_rag or (context_piped and not (rag or kb)):
        return None, k or DEFAULT_K
    retriever = open_retriever(app.home, kb, collection=collection, strict=True, verbose=app.verbose)
    if rag and not retriever.available:
        raise UsageError(f"--rag: {retriever.hint}")
    return retriever, k or DEFAULT_K


def print_turn_sources(turn: Any, done: Any) -> None:
    """After a streamed answer: invalid citations (the text is already printed), then its sources,
    one line a document."""
    from ..knowledge.grounding import format_sources
    from ..turn import invalid_citations_note

    if done.citations is not None and done.citations.invalid:
        click.secho(
            f"note: {invalid_citations_note(done.citations.invalid, len(turn.sources))}", err=True, dim=True
        )
    if turn.sources:
        click.secho("\nSources:", bold=True)
        click.echo(format_sources(turn.sources))


PLAIN_HELP = """Commands: /new (new chat), /system TEXT (set system prompt), /help, /exit.
End a line with \\ to continue on the next line. Ctrl+C stops an answer, Ctrl+D quits."""


@click.command("chat")
@click.option("--plain", is_flag=True, help="Line-based chat in the plain terminal (no full-screen UI).")
@model_options
@sampling_options
@click.option("-s", "--system", metavar="TEXT", help="System prompt.")
@click.option(
    "-r",
    "--resume",
    metavar="ID|last",
    help="Reopen a saved chat (full-screen or --plain): its number, or 'last'.",
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
        return plain_chat(app, model, n_ctx, threads, chat_format, system, kwargs, resume)
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


class PlainSession:
    """A line-based chat's state: system prompt, history, and its conversation in conversations.db
    (the TUI's store: `chat -r` reopens it in either mode)."""

    def __init__(self, app: AppContext, model_name: str, system: str | None, resume: str | None) -> None:
        from ..conversations import open_store
        from ..errors import AssistantError

        self.model_name = model_name
        self.system = system
        self.history: list[Message] = []
        self.conversation: ConversationInfo | None = None
        self.store: ConversationStore | None = None
        try:
            self.store = open_store(app.home)
        except AssistantError as exc:
            if resume is not None:
                raise
            click.secho(f"note: this chat is not being saved: {exc}", err=True, dim=True)
        if resume is not None:
            self.resume(resume)

    def resume(self, want: str) -> None:
        from ..message import Message

        assert self.store is not None
        from ..conversations import parse_resume

        wanted = parse_resume(want)
        info = self.store.latest() if wanted == "last" else self.store.get(int(wanted))
        if info is None:
            raise UsageError("no saved chat to resume yet")
        self.conversation = info
        self.system = info.system_prompt
        stored = self.store.messages(info.id)
        self.history = [Message(m.role, m.content) for m in stored if m.role in ("user", "assistant")]

    def settings(self) -> tuple[bool, int]:
        """Retrieval on/off and its top k, as last set in the chat (the TUI's Ctrl+R and settings)."""
        from ..turn import CHAT_TOP_K

        if self.store is None:
            return True, CHAT_TOP_K
        try:
            return bool(self.store.get_setting("retrieval", True)), int(
                self.store.get_setting("kb_top_k", CHAT_TOP_K)
            )
        except (ValueError, TypeError):
            return True, CHAT_TOP_K

    def new(self) -> None:
        """A new chat (saved as a new conversation); the system prompt stays."""
        self.history = []
        self.conversation = None

    def set_system(self, text: str | None) -> None:
        self.system = text
        if self.store is not None and self.conversation is not None:
            self.conversation = self.store.set_system_prompt(self.conversation.id, text)

    def save(self, role: str, text: str, meta: dict[str, Any] | None = None) -> None:
        from ..errors import AssistantError

        if self.store is None:
            return
        try:
            if self.conversation is None:
                self.conversation = self.store.create(system_prompt=self.system, model=self.model_name)
            self.store.add_message(self.conversation.id, role, text, meta)
        except AssistantError as exc:
            click.secho(f"note: this chat is not being saved: {exc}", err=True, dim=True)
            self.store = None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def plain_chat(
    app: AppContext,
    model: str | None,
    n_ctx: int | None,
    threads: int | None,
    chat_format: str | None,
    system: str | None,
    kwargs: dict[str, Any],
    resume: str | None = None,
) -> int:
    from ..engine import compute
    from ..knowledge.retriever import open_retriever

    compute.claim_current_thread()
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    if isinstance(sys.stdin, io.TextIOWrapper):  # bytes that are not UTF-8 must not end the chat
        sys.stdin.reconfigure(errors="surrogateescape")
    system = valid_text(system) if system else system
    params = sampling_from(kwargs)
    chat_model = load_chat_model(app, model, n_ctx, threads, chat_format)
    session = PlainSession(app, chat_model.path.name, system, resume)
    retriever = open_retriever(app.home, verbose=app.verbose)
    interactive = sys.stdin.isatty()
    if interactive:
        click.secho(
            f"Chatting with {chat_model.path.name} ({chat_model.n_ctx:,}-token window). "
            "Type /help for commands, Ctrl+D to quit.",
            dim=True,
        )
        if session.conversation is not None:
            n = len(session.history)
            click.secho(
                f"(chat {session.conversation.id}: {session.conversation.display_title}, {n} messages)",
                dim=True,
            )
    try:
        return _plain_loop(chat_model, params, session, retriever, interactive)
    finally:
        retriever.close()
        session.close()


def _plain_loop(
    chat_model: ChatModel,
    params: Any,
    session: PlainSession,
    retriever: Any,
    interactive: bool,
) -> int:
    from ..message import Message
    from ..turn import prepare_turn

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
                session.new()
                click.secho("(new chat)", dim=True)
            elif cmd == "/system":
                session.set_system(arg.strip() or None)
                click.secho(f"(system prompt {'set' if session.system else 'cleared'})", dim=True)
            elif cmd == "/help":
                click.echo(PLAIN_HELP)
            else:
                click.secho(f"unknown command {cmd}; /help lists them", fg="red")
            continue
        session.history.append(Message("user", text))
        session.save("user", text)
        use_kb, top_k = session.settings()
        turn = prepare_turn(
            chat_model,
            session.system,
            session.history,
            params,
            retriever=retriever if use_kb else None,
            top_k=top_k,
        )
        cancel = threading.Event()
        stream = turn.start(chat_model, params, cancel)
        for notice in turn.notices:
            click.secho(f"note: {notice}", dim=True, err=True)
        with sigint_cancels(cancel):
            stream_to(sys.stdout, stream)
        result = stream.result
        assert result is not None
        done = turn.finish(result, model=chat_model.path.name)
        sys.stdout.write("\n")
        if result.finish_reason == "cancelled":
            click.secho("(stopped)", dim=True)
        print_turn_sources(turn, done)
        session.history.append(Message("assistant", done.text))
        session.save("assistant", done.text, done.meta)
        if interactive:
            t = result.timings
            click.secho(
                f"[{result.tokens_used:,}/{chat_model.n_ctx:,} tokens · {t.decode_tps:.0f} tok/s]", dim=True
            )
