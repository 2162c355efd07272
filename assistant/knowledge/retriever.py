"""The seam between a chat front end and the knowledge base: ``Retriever`` (no UI imports).

A front end (``assistant ask``, plain chat, the TUI, through assistant/turn.py) only
knows ``Retriever``: ``available`` (and a ``hint`` when not), ``description`` (what is
searched) and ``ground(messages, top_k, count_tokens=..., budget_tokens=...)``, which
returns a ``GroundedPrompt`` (the messages to send and their numbered ``Source``s).
``open_retriever`` opens the home's knowledge base (or a named one) behind it; without
one it returns ``NoRetriever`` with a hint on how to create one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..errors import AssistantError
from ..home import Home
from ..message import Message
from .grounding import SOURCE_TOKENS, GroundedPrompt, ground

log = logging.getLogger(__name__)

CREATE_HINT = "No knowledge base yet: create one with `assistant index add PATH...` (files or folders)."
EMPTY_HINT = "The knowledge base is empty: add documents with `assistant index add PATH...`."


class Retriever(Protocol):
    available: bool
    hint: str  # why retrieval is unavailable, and what to do
    description: str  # what is searched, for the sources panel ("default.db · 1,234 chunks")

    def ground(
        self,
        messages: Sequence[Message],
        top_k: int,
        *,
        count_tokens: Callable[[str], int],
        budget_tokens: int,
        search_query: str | None = None,
    ) -> GroundedPrompt:
        """The messages to send for this conversation (the last one is the question) and its sources."""
        ...

    def close(self) -> None: ...


class NoRetriever:
    """No knowledge base: retrieval is unavailable, with a hint on how to get one."""

    available = False
    description = ""

    def __init__(self, hint: str = CREATE_HINT) -> None:
        self.hint = hint

    def ground(self, messages: Sequence[Message], top_k: int, **_: Any) -> GroundedPrompt:
        return GroundedPrompt(list(messages), [], 0.0, "none")

    def close(self) -> None:
        pass


class KnowledgeRetriever:
    """Ground each question in a knowledge base: the best chunks, numbered, within a token budget."""

    available = True
    hint = ""

    def __init__(
        self,
        kb: Any,
        chunks: int,
        collection: str | None = None,
        *,
        source_tokens: int | None = SOURCE_TOKENS,
    ) -> None:
        self.kb = kb  # a knowledge.kb.KnowledgeBase
        self.chunks = chunks
        self.collection = collection
        self.source_tokens = source_tokens  # each source focused on its best sentences (None: whole chunks)
        mode = "" if kb.embedder is not None else " · keyword search only"
        self.description = f"{kb.path.name} · {chunks:,} chunks{mode}"

    def ground(
        self,
        messages: Sequence[Message],
        top_k: int,
        *,
        count_tokens: Callable[[str], int],
        budget_tokens: int,
        search_query: str | None = None,
    ) -> GroundedPrompt:
        msgs = list(messages)
        system = msgs[0].content if msgs and msgs[0].role == "system" else None
        body = msgs[1:] if system is not None else msgs
        if not body or body[-1].role != "user":
            return GroundedPrompt(msgs, [], 0.0, "none")
        return ground(
            body[-1].content,
            self.kb,
            count_tokens=count_tokens,
            budget_tokens=budget_tokens,
            k=top_k,
            collection=self.collection,
            system=system,
            history=body[:-1],
            search_query=search_query,
            source_tokens=self.source_tokens,
        )

    def close(self) -> None:
        self.kb.close()


def open_retriever(
    home: Home,
    kb: str | os.PathLike[str] | None = None,
    *,
    collection: str | None = None,
    strict: bool = False,
    verbose: bool = False,
    source_tokens: int | None = SOURCE_TOKENS,
) -> Retriever:
    """The knowledge base ``kb`` (default: the home's), or NoRetriever saying why there is none.

    With ``strict`` a knowledge base that exists (or was named) but cannot be opened raises
    (`assistant ask` reports it); otherwise the reason becomes the hint (the chat carries on).
    """
    try:
        from .kb import KnowledgeBase
    except ImportError as exc:  # the knowledge package's dependencies are missing in this build
        log.info("the knowledge base is not usable: %s", exc)
        if home.knowledge_dir.is_dir() and any(home.knowledge_dir.glob("*.db")):
            return NoRetriever(f"A knowledge base exists but this build cannot search it ({exc}).")
        return NoRetriever()
    if kb is None and not KnowledgeBase.exists(home):
        return NoRetriever(CREATE_HINT)
    try:
        base = KnowledgeBase.open(home, kb, verbose=verbose)
    except AssistantError as exc:
        if strict:
            raise
        return NoRetriever(f"The knowledge base cannot be opened: {exc}")
    try:
        chunks = base.store.chunk_count()
    except Exception as exc:
        base.close()
        if strict:
            raise
        return NoRetriever(f"The knowledge base cannot be read: {exc}")
    if chunks == 0:
        base.close()
        return NoRetriever(EMPTY_HINT)
    return KnowledgeRetriever(base, chunks, collection, source_tokens=source_tokens)
