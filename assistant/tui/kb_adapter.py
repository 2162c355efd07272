"""The knowledge base (assistant.knowledge) behind the chat's Retriever seam (no textual imports).

Importing this module imports the knowledge package; retrieval.open_retriever
does so lazily and falls back to "retrieval unavailable" if it cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..engine.context import Message
from ..errors import AssistantError
from ..home import Home
from ..knowledge.base import KnowledgeBase
from ..knowledge.grounding import DEFAULT_BUDGET, ground
from .retrieval import CREATE_HINT, Grounding, NoRetriever, Retriever, source_ref

log = logging.getLogger(__name__)

PROMPT_MARGIN = 256  # tokens kept free besides the answer reserve and the conversation


class KnowledgeRetriever:
    """Ground each question in a knowledge base: the best chunks, numbered, within a token budget."""

    available = True
    hint = ""

    def __init__(self, kb: KnowledgeBase, chunks: int) -> None:
        self.kb = kb
        self.chunks = chunks
        mode = "" if kb.embedder is not None else " · keyword search only"
        self.description = f"{kb.path.name} · {chunks:,} chunks{mode}"

    def ground(
        self,
        messages: Sequence[Message],
        top_k: int,
        *,
        count_tokens: Callable[[str], int],
        n_ctx: int,
        max_tokens: int,
    ) -> Grounding:
        msgs = list(messages)
        system = msgs[0].content if msgs and msgs[0].role == "system" else None
        body = msgs[1:] if system is not None else msgs
        if not body or body[-1].role != "user":
            return Grounding(msgs)
        question = body[-1].content
        history = body[:-1]
        reserve = min(max_tokens, n_ctx // 2)
        used = sum(count_tokens(m.content) + 4 for m in msgs)
        budget = max(128, min(DEFAULT_BUDGET, n_ctx - reserve - used - PROMPT_MARGIN))
        g = ground(
            question,
            self.kb,
            count_tokens=count_tokens,
            budget_tokens=budget,
            k=top_k,
            system=system,
            history=history,
        )
        sources = [source_ref(s, i) for i, s in enumerate(g.sources, 1)]
        return Grounding(list(g.messages), sources, g.retrieval_ms, list(g.notes))

    def close(self) -> None:
        self.kb.close()


def open_kb(home: Home, *, verbose: bool = False) -> Retriever:
    """The home's default knowledge base, or NoRetriever saying why there is none."""
    if not KnowledgeBase.exists(home):
        return NoRetriever(CREATE_HINT)
    try:
        kb = KnowledgeBase.open(home, verbose=verbose)
    except AssistantError as exc:
        return NoRetriever(f"The knowledge base cannot be opened: {exc}")
    try:
        chunks = kb.store.chunk_count()
    except Exception as exc:
        kb.close()
        return NoRetriever(f"The knowledge base cannot be read: {exc}")
    if chunks == 0:
        kb.close()
        return NoRetriever("The knowledge base is empty: add documents with `assistant index add PATH...`.")
    return KnowledgeRetriever(kb, chunks)
