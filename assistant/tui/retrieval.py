"""The seam between the chat UI and the knowledge base (no textual imports).

The UI only knows ``Retriever``: ``available`` (and a ``hint`` when not),
``ground(messages, top_k)`` returning the messages to send plus numbered
``SourceRef``s and the retrieval time. ``open_retriever`` adapts the knowledge
package (assistant/knowledge) when it and a knowledge base exist; otherwise it
returns ``NoRetriever`` with a hint on how to create one, and the chat simply
runs without retrieval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..engine.context import Message
from ..home import Home

log = logging.getLogger(__name__)

CREATE_HINT = "No knowledge base yet: create one with `assistant index add PATH...` (files or folders)."


@dataclass(frozen=True)
class SourceRef:
    """One numbered source of an answer, as shown in the sources panel and stored with the answer."""

    n: int
    title: str
    path: str = ""
    location: str = ""  # "p. 3", "lines 10-24"
    excerpt: str = ""
    text: str = ""  # the chunk that was put into the prompt
    page: int | None = None
    line_start: int | None = None  # 1-based, inclusive
    line_end: int | None = None
    char_start: int | None = None  # offsets of the chunk in the document text
    char_end: int | None = None
    score: float | None = None

    def as_meta(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    @classmethod
    def from_meta(cls, d: dict[str, Any]) -> SourceRef:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known.setdefault("n", 0)
        known.setdefault("title", known.get("path") or "source")
        return cls(**known)

    @property
    def label(self) -> str:
        return f"[{self.n}] {self.title}"


@dataclass
class Grounding:
    messages: list[Message]
    sources: list[SourceRef] = field(default_factory=list)
    retrieval_ms: float = 0.0
    notes: list[str] = field(default_factory=list)  # shown with the answer ("keyword search only", ...)


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
        n_ctx: int,
        max_tokens: int,
    ) -> Grounding:
        """The messages to send for this conversation (the last one is the question) and its sources."""
        ...

    def close(self) -> None: ...


class NoRetriever:
    """No knowledge base: retrieval is unavailable, with a hint on how to get one."""

    available = False
    description = ""

    def __init__(self, hint: str = CREATE_HINT) -> None:
        self.hint = hint

    def ground(self, messages: Sequence[Message], top_k: int, **_: Any) -> Grounding:
        return Grounding(list(messages))

    def close(self) -> None:
        pass


def location_of(page: int | None, line_start: int | None, line_end: int | None) -> str:
    if page is not None:
        return f"p. {page}"
    if line_start is not None:
        if line_end is not None and line_end != line_start:
            return f"lines {line_start}-{line_end}"
        return f"line {line_start}"
    return ""


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """First attribute (or mapping key) of obj found among names."""
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def source_ref(obj: Any, n: int) -> SourceRef:
    """Adapt a knowledge-base source object (dataclass or dict) to a SourceRef."""
    page = _get(obj, "page", "page_start")
    lines = _get(obj, "lines")
    line_start = _get(obj, "line_start", "start_line")
    line_end = _get(obj, "line_end", "end_line")
    if isinstance(lines, (tuple, list)) and len(lines) == 2:
        line_start, line_end = lines
    chars = _get(obj, "span", "char_span")
    char_start = _get(obj, "char_start", "start_char")
    char_end = _get(obj, "char_end", "end_char")
    if isinstance(chars, (tuple, list)) and len(chars) == 2:
        char_start, char_end = chars
    path = str(_get(obj, "path", "uri", default="") or "")
    text = str(_get(obj, "text", "chunk_text", "chunk", default="") or "")
    excerpt = str(_get(obj, "excerpt", "snippet", default="") or "") or " ".join(text.split())[:200]
    location = str(_get(obj, "location", default="") or "") or location_of(page, line_start, line_end)
    title = str(_get(obj, "title", default="") or "") or (Path(path).name if path else f"source {n}")
    return SourceRef(
        n=int(_get(obj, "n", "number", "index", default=n) or n),
        title=title,
        path=path,
        location=location,
        excerpt=excerpt,
        text=text,
        page=page,
        line_start=line_start,
        line_end=line_end,
        char_start=char_start,
        char_end=char_end,
        score=_get(obj, "score"),
    )


def open_retriever(home: Home, *, verbose: bool = False) -> Retriever:
    """The knowledge base of the home, adapted for the chat; NoRetriever when there is none."""
    try:
        from . import kb_adapter
    except ImportError as exc:  # the knowledge package is missing or broken in this build
        log.info("the knowledge base is not usable from the chat: %s", exc)
        if home.knowledge_dir.is_dir() and any(home.knowledge_dir.glob("*.db")):
            return NoRetriever(f"A knowledge base exists but this build cannot search it ({exc}).")
        return NoRetriever()
    return kb_adapter.open_kb(home, verbose=verbose)
