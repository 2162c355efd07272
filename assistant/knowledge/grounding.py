"""Grounded prompts: the best chunks, numbered, within a token budget, plus the sources to show.

The API the CLI (`assistant ask`) and the TUI use::

    from assistant.knowledge.base import KnowledgeBase
    from assistant.knowledge.grounding import ground, format_sources

    kb = KnowledgeBase.open(home)                      # or kb="notes" / a path; once per session
    g = ground(question, kb, count_tokens=lambda s: len(chat_model.tokenize(s)),
               budget_tokens=1500, k=5, history=earlier_messages)
    stream = chat_model.chat(g.messages, params)       # answer cites [1], [2] ...
    g.sources        # list[Source]: number, title, uri, doc_id, location, excerpt, text, score, ...
    g.retrieval_ms   # time spent searching (embedding the question included)
    g.notes          # e.g. "keyword search only: <why>" when the embedding model is missing
    format_sources(g.sources)   # "[1] Title — path, lines 3-9" lines for a terminal
    kb.close()

``KnowledgeBase.exists(home)`` tells whether the default knowledge base is there.
``ground`` never raises for "nothing found": it returns the plain question
with ``sources == []``. A ``KnowledgeBase`` is not shared between threads at
once (one search at a time). Stable: fields are only ever added.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..engine.context import Message

if TYPE_CHECKING:
    from .base import KnowledgeBase
    from .search import Hit

DEFAULT_K = 5
DEFAULT_BUDGET = 1500  # tokens of sources in the prompt
EXCERPT_CHARS = 240
MIN_SOURCE_TOKENS = 48  # a source cut to fewer tokens than this is left out instead
MIN_SIMILARITY = 0.2  # vector matches below this cosine are not sources (unrelated text for MiniLM)

SYSTEM_PROMPT = (
    "You answer questions using the numbered sources given with the question. "
    "Use only facts from the sources and cite them like [1] or [2] after the sentence they support. "
    "If the sources do not hold the answer, say that the sources do not say, and do not guess."
)


@dataclass(frozen=True)
class Source:
    """One numbered source as shown to the model and to the user."""

    number: int  # [1], [2] ... in the prompt and the answer
    title: str
    uri: str  # file path, or FILE.jsonl#ID for a JSONL record
    doc_id: str  # the JSONL id, or the file path
    document_id: int
    chunk_id: int
    line_start: int | None
    line_end: int | None
    page_start: int | None
    page_end: int | None
    excerpt: str  # the first ~240 characters, one line
    text: str  # the whole chunk (what the model saw, before any cut to fit the budget)
    score: float
    collection: str = ""
    truncated: bool = False  # the prompt holds only the start of the chunk

    @property
    def location(self) -> str:
        """'page 3', 'pages 3-4', 'lines 10-24', 'line 7' or ''."""
        if self.page_start is not None:
            if self.page_end is not None and self.page_end != self.page_start:
                return f"pages {self.page_start}-{self.page_end}"
            return f"page {self.page_start}"
        if self.line_start is not None:
            if self.line_end is not None and self.line_end != self.line_start:
                return f"lines {self.line_start}-{self.line_end}"
            return f"line {self.line_start}"
        return ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "uri": self.uri,
            "doc_id": self.doc_id,
            "chunk_id": self.chunk_id,
            "location": self.location,
            "lines": [self.line_start, self.line_end] if self.line_start is not None else None,
            "pages": [self.page_start, self.page_end] if self.page_start is not None else None,
            "score": round(float(self.score), 6),
            "excerpt": self.excerpt,
        }

    @classmethod
    def from_hit(cls, number: int, hit: Hit, *, truncated: bool = False) -> Source:
        excerpt = " ".join(hit.text.split())
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = excerpt[: EXCERPT_CHARS - 1].rsplit(" ", 1)[0] + "…"
        return cls(
            number=number,
            title=hit.title,
            uri=hit.uri,
            doc_id=hit.doc_key,
            document_id=hit.document_id,
            chunk_id=hit.chunk_id,
            line_start=hit.line_start,
            line_end=hit.line_end,
            page_start=hit.page_start,
            page_end=hit.page_end,
            excerpt=excerpt,
            text=hit.text,
            score=hit.score,
            collection=hit.collection,
            truncated=truncated,
        )


@dataclass
class GroundedPrompt:
    messages: list[Message]  # send these to ChatModel.chat
    sources: list[Source]  # numbered as in the prompt
    retrieval_ms: float
    mode: str  # the search mode used (bm25 when the embedding model is missing)
    source_tokens: int = 0
    notes: list[str] = field(default_factory=list)  # things the user should know (e.g. keyword search only)


def _source_block(number: int, hit: Hit, text: str) -> str:
    head = f"[{number}] {hit.title}".rstrip()
    if hit.heading and hit.heading != hit.title:
        head += f" — {hit.heading}"
    return f"{head}\n{text.strip()}"


def build_user_message(question: str, blocks: Sequence[str]) -> str:
    return "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question.strip()}"


def ground(
    question: str,
    kb: KnowledgeBase,
    *,
    count_tokens: Callable[[str], int],
    budget_tokens: int = DEFAULT_BUDGET,
    k: int = DEFAULT_K,
    mode: str = "hybrid",
    collection: str | None = None,
    system: str | None = None,
    history: Sequence[Message] = (),
    search_query: str | None = None,
    min_similarity: float | None = MIN_SIMILARITY,
) -> GroundedPrompt:
    """Retrieve for ``question`` and build the messages: system, history, sources + question.

    ``count_tokens`` counts the chat model's tokens of a string; sources are added
    best first while they fit ``budget_tokens`` (the last one may be cut, never below
    MIN_SOURCE_TOKENS). ``system`` is added before the grounding instructions.
    ``search_query`` searches with other text than the question (e.g. with context).
    ``min_similarity`` leaves out vector matches below that cosine (None keeps all).
    """
    notes = []
    used_mode = kb.default_mode(mode)
    if used_mode != mode:
        notes.append(f"keyword search only: {kb.vector_unavailable}")
    t0 = time.perf_counter()
    hits = kb.searcher.search(
        search_query or question, k, mode=used_mode, collection=collection, min_similarity=min_similarity
    )
    retrieval_ms = (time.perf_counter() - t0) * 1000

    sys_text = SYSTEM_PROMPT if not system else f"{system.strip()}\n\n{SYSTEM_PROMPT}"
    head = [Message("system", sys_text), *history]
    plain = ([Message("system", system)] if system else []) + [*history, Message("user", question)]
    if not hits:
        notes.append("no source in the knowledge base matched the question")
        return GroundedPrompt(plain, [], retrieval_ms, used_mode, notes=notes)
    blocks: list[str] = []
    sources: list[Source] = []
    used = 0
    for hit in hits:
        number = len(sources) + 1
        block = _source_block(number, hit, hit.text)
        n = count_tokens(block) + 2
        truncated = False
        if used + n > budget_tokens:
            room = budget_tokens - used - count_tokens(_source_block(number, hit, "")) - 4
            if room < MIN_SOURCE_TOKENS:
                break
            # cut the text to the room left (by characters, checked with the tokenizer)
            text = hit.text
            while text and count_tokens(_source_block(number, hit, text + " …")) + 2 > budget_tokens - used:
                text = text[: int(len(text) * 0.85)].rsplit(" ", 1)[0]
            if not text:
                break
            block = _source_block(number, hit, text + " …")
            n = count_tokens(block) + 2
            truncated = True
        blocks.append(block)
        sources.append(Source.from_hit(number, hit, truncated=truncated))
        used += n
        if truncated:
            break
    if not sources:
        notes.append("the sources found did not fit the token budget")
        return GroundedPrompt(plain, [], retrieval_ms, used_mode, notes=notes)
    messages = [*head, Message("user", build_user_message(question, blocks))]
    return GroundedPrompt(messages, sources, retrieval_ms, used_mode, used, notes)


def format_sources(sources: Sequence[Source]) -> str:
    """One line per source: '[1] Title — /path/file.md, lines 3-9'."""
    lines = []
    for s in sources:
        where = ", ".join(x for x in (s.uri, s.location) if x)
        lines.append(f"[{s.number}] {s.title} — {where}" if s.title else f"[{s.number}] {where}")
    return "\n".join(lines)
