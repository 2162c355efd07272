"""One chat turn, whatever the front end: `assistant ask`, plain chat and the TUI all run through here.

No UI imports. A turn is::

    turn = prepare_turn(engine, system, history, params, retriever=r, top_k=5)
    stream = turn.start(engine, params, cancel)     # iterate for text; stream.result at the end
    done = turn.finish(stream.result, model="m.gguf")
    done.text, done.meta                            # what is shown and saved (conversations.db)

``prepare_turn`` builds the messages (system prompt, history with roles alternating,
grounding within one token budget), ``finish`` checks the answer's citations against the
sources it was given and makes the metadata saved with the answer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .engine.sampling import SamplingParams
from .errors import AssistantError
from .knowledge.grounding import DEFAULT_BUDGET, DEFAULT_K, Source
from .knowledge.retriever import Retriever
from .message import Message

CHAT_TOP_K = DEFAULT_K  # sources a chat turn retrieves unless the user set another number (TUI settings)
PROMPT_MARGIN = 256  # tokens kept free besides the answer reserve, the conversation and the sources
MIN_GROUNDING_BUDGET = 128
MESSAGE_OVERHEAD = 4  # template tokens around each message, roughly

# "[3]" or "[1, 4]" (not a link "[1](url)"); code spans and blocks are left alone (a[5] is code)
CITATION = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\](?!\()")
CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)


class Engine(Protocol):
    """What a turn needs from a chat model (assistant.engine.ChatModel)."""

    n_ctx: int

    def chat(
        self, messages: Sequence[Message], params: SamplingParams, *, cancel: threading.Event
    ) -> Any: ...
    def count_text(self, text: str) -> int: ...


def conversation_messages(system: str | None, history: Iterable[Message]) -> list[Message]:
    """What to send: the system prompt, then turns with empty answers dropped and roles alternating."""
    out: list[Message] = [Message("system", system)] if system else []
    for m in history:
        if m.role == "assistant" and not m.content.strip():
            continue
        if out and out[-1].role == m.role and m.role == "user":
            out[-1] = Message("user", out[-1].content + "\n\n" + m.content)
            continue
        out.append(m)
    return out


def grounding_budget(engine: Engine, messages: Sequence[Message], max_tokens: int) -> int:
    """Tokens the sources may take: the window less the answer's reserve, the conversation and a margin."""
    reserve = min(max_tokens, engine.n_ctx // 2)
    used = sum(engine.count_text(m.content) + MESSAGE_OVERHEAD for m in messages)
    return max(MIN_GROUNDING_BUDGET, min(DEFAULT_BUDGET, engine.n_ctx - reserve - used - PROMPT_MARGIN))


@dataclass
class Citations:
    valid: list[int]  # numbers cited that are sources of the answer
    invalid: list[int]  # numbers cited that are not (the model made them up)
    text: str  # the answer with each invalid number marked: "[5?]"


def check_citations(text: str, n_sources: int) -> Citations:
    """The citations of an answer against its sources 1..n_sources; invalid ones marked "[5?]".

    Marked, not removed: the sentence stays as the model wrote it, and the reader sees that
    its source does not exist.
    """
    valid: set[int] = set()
    invalid: set[int] = set()

    def mark(m: re.Match[str]) -> str:
        def one(d: re.Match[str]) -> str:
            n = int(d.group())
            (valid if 1 <= n <= n_sources else invalid).add(n)
            return d.group() if 1 <= n <= n_sources else f"{d.group()}?"

        return "[" + re.sub(r"\d+", one, m.group(1)) + "]"

    out, pos = [], 0
    for code in CODE.finditer(text):
        out += [CITATION.sub(mark, text[pos : code.start()]), code.group()]
        pos = code.end()
    out.append(CITATION.sub(mark, text[pos:]))
    return Citations(sorted(valid), sorted(invalid), "".join(out))


def invalid_citations_note(invalid: Sequence[int], n_sources: int) -> str:
    cited = ", ".join(f"[{n}]" for n in invalid)
    return f"{cited} cite{'s' if len(invalid) == 1 else ''} no source (the answer had {n_sources})"


@dataclass
class TurnResult:
    text: str  # the answer as shown and saved (invalid citations marked)
    meta: dict[str, Any]  # saved with the answer in conversations.db
    citations: Citations | None = None  # None when the answer had no sources


@dataclass
class ChatTurn:
    """The messages of one turn, the sources they hold, and what the user should know about them."""

    messages: list[Message]
    sources: list[Source] = field(default_factory=list)
    retrieval_ms: float | None = None  # None: no retrieval was done
    notices: list[str] = field(default_factory=list)
    prompt_tokens: int = 0

    def start(self, engine: Engine, params: SamplingParams, cancel: threading.Event) -> Any:
        """The engine's stream for this turn; its context notices join the turn's."""
        stream = engine.chat(self.messages, params, cancel=cancel)
        self.notices += stream.context.notices()
        self.prompt_tokens = int(getattr(stream.context, "prompt_tokens", 0) or 0)
        return stream

    def finish(
        self,
        result: Any,
        *,
        model: str | None,
        adapters: Sequence[tuple[str, float]] = (),
        error: str | None = None,
        partial_text: str = "",
    ) -> TurnResult:
        """The answer to show and save, and its metadata; ``result`` None means it failed with ``error``."""
        meta: dict[str, Any] = {"model": model}
        if adapters:
            meta["adapters"] = [list(a) for a in adapters]
        if self.notices:
            meta["notices"] = list(self.notices)
        if self.sources:
            meta["sources"] = [s.as_dict() for s in self.sources]
        if self.retrieval_ms is not None:
            meta["retrieval_ms"] = round(self.retrieval_ms, 1)
        if result is None:
            meta.update(finish_reason="error", error=error)
            return TurnResult(partial_text, meta)
        t = result.timings
        meta.update(
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            tokens_used=result.tokens_used,
            ttft_ms=round(t.ttft_ms, 1),
            decode_tps=round(t.decode_tps, 1),
        )
        if t.threads:
            meta["threads"] = t.threads_ran
        if not self.sources:
            return TurnResult(result.text, meta)
        cited = check_citations(result.text, len(self.sources))
        meta["citations"] = cited.valid
        if cited.invalid:
            meta["invalid_citations"] = cited.invalid
        return TurnResult(cited.text, meta, cited)


def prepare_turn(
    engine: Engine,
    system: str | None,
    history: Iterable[Message],
    params: SamplingParams,
    *,
    retriever: Retriever | None = None,
    top_k: int = DEFAULT_K,
    search_query: str | None = None,
) -> ChatTurn:
    """The messages for a turn (the last of ``history`` is the question), grounded when ``retriever`` is
    available. A failed retrieval is a notice, not an error: the turn goes on without sources."""
    messages = conversation_messages(system, history)
    if retriever is None or not retriever.available or not messages:
        return ChatTurn(messages)
    budget = grounding_budget(engine, messages, params.max_tokens)
    try:
        g = retriever.ground(
            messages, top_k, count_tokens=engine.count_text, budget_tokens=budget, search_query=search_query
        )
    except AssistantError as exc:
        return ChatTurn(messages, notices=[f"retrieval failed ({exc}); answering without sources"])
    return ChatTurn(list(g.messages), list(g.sources), g.retrieval_ms, list(g.notes))
