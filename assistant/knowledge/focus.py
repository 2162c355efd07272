"""Focused sources: the sentences of a chunk that bear on the question, not the whole chunk.

A small model answers from one clean paragraph far better than from five chunks, and every
token of the sources costs prefill time before the first word of the answer. ``focus`` keeps,
from each chunk, the contiguous run of sentences that shares the most rare words with the
question, within a token cap. Lexical overlap (weighted by how rare a word is among the
candidate sentences) is the classic sentence-selection baseline for extractive QA: it needs no
model call, so it adds microseconds, not an embedding pass, to the turn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .search import STOPWORDS

ELLIPSIS = "…"
# a sentence ends at . ! ? (optionally closed by a quote or bracket) before whitespace, or at a line
# break that starts a new block (blank line, list item, heading): prose and Markdown alike
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*+#>]|\d+[.)])\s)")
_WORD = re.compile(r"\w+")
_SUFFIXES = ("ing", "ed", "es", "s")


def stem(word: str) -> str:
    """A crude stem: enough for "founded"/"founding"/"founds" to meet, never a dictionary lookup."""
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> set[str]:
    """The content words of a text, lower-cased and stemmed, stop words left out."""
    return {stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def sentences(text: str) -> list[str]:
    """The text cut into sentences (whitespace inside each kept as it was); '' pieces dropped."""
    out, pos = [], 0
    for m in _BOUNDARY.finditer(text):
        piece = text[pos : m.end()]
        if piece.strip():
            out.append(piece)
        pos = m.end()
    if text[pos:].strip():
        out.append(text[pos:])
    return out


@dataclass(frozen=True)
class Focused:
    text: str  # the chosen sentences, with "…" where text was left out
    cut: bool  # some of the chunk was left out
    score: float  # the overlap of the chosen sentences with the question


def idf_weights(question_terms: set[str], texts: Sequence[str]) -> dict[str, float]:
    """How rare each question word is among the sentences of ``texts`` (rare words locate answers)."""
    pieces = [terms(s) for t in texts for s in sentences(t)]
    n = len(pieces)
    return {w: math.log((n + 1) / (sum(w in p for p in pieces) + 0.5)) for w in question_terms}


def focus(
    question: str,
    text: str,
    *,
    max_tokens: int,
    count_tokens: Callable[[str], int],
    weights: dict[str, float] | None = None,
    scorer: Callable[[list[str]], list[float]] | None = None,
) -> Focused:
    """The run of whole sentences of ``text`` that best matches ``question`` within ``max_tokens``.

    The run grows from the best sentence towards the better neighbour (the following one on a
    tie: an answer tends to come after the sentence that names the subject) while it fits.
    A text that fits is returned whole; a single sentence longer than the cap is cut at a word.
    """
    if count_tokens(text) <= max_tokens:
        return Focused(text.strip(), False, 0.0)
    q = terms(question)
    w = weights if weights is not None else idf_weights(q, [text])
    parts = sentences(text)
    scores = scorer(parts) if scorer else [sum(w.get(t, 0.0) for t in terms(s) & q) for s in parts]
    sizes = [count_tokens(s) for s in parts]
    best = max(range(len(parts)), key=lambda i: (scores[i], -i)) if parts else 0
    lo = hi = best
    used = sizes[best] if parts else 0
    while True:
        options = []
        if hi + 1 < len(parts) and used + sizes[hi + 1] <= max_tokens:
            options.append((scores[hi + 1], 1, hi + 1))
        if lo > 0 and used + sizes[lo - 1] <= max_tokens:
            options.append((scores[lo - 1], 0, lo - 1))
        if not options:
            break
        _, after, i = max(options)
        used += sizes[i]
        lo, hi = (lo, i) if after else (i, hi)
    if not parts or used > max_tokens:  # one sentence alone is over the cap: its head
        head = (parts[best] if parts else text).strip()
        while head and count_tokens(head) > max_tokens:
            head = head[: int(len(head) * 0.85)].rsplit(" ", 1)[0]
        return Focused(f"{head} {ELLIPSIS}", True, scores[best] if parts else 0.0)
    body = "".join(parts[lo : hi + 1]).strip()
    lead = f"{ELLIPSIS} " if lo > 0 else ""
    tail = f" {ELLIPSIS}" if hi < len(parts) - 1 else ""
    return Focused(lead + body + tail, True, sum(scores[lo : hi + 1]))
