"""Split text into chunks by the embedding model's tokens, respecting structure.

A section of text (a whole small file, one PDF page, or a ~1 MB slice of a
large file) is cut into blocks: headings (Markdown ``#``, reStructuredText
underlines) and paragraphs (blank-line separated). Blocks are packed into
chunks of at most ``max_tokens`` tokens; a heading always starts a new chunk
and becomes the ``heading`` of the chunks under it; a block too long for one
chunk is cut at sentence ends, and a sentence too long at word boundaries.
Consecutive chunks of the same section share about ``overlap`` tokens of
trailing text. Every chunk keeps its character span (into the document
text), its line span and, for a section of several PDF pages, the pages
it spans.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DEFAULT_MAX_TOKENS = 256
DEFAULT_OVERLAP = 32

_MD_HEADING = re.compile(r"^ {0,3}#{1,6}\s+\S")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?。;])\s+|\n")
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class Section:
    """A piece of a document's text: where it starts (chars, lines) and its page, if any."""

    text: str
    char_offset: int = 0
    line_offset: int = 1  # 1-based line number of the section's first character
    page: int | None = None
    heading: str = ""  # heading in force at the start (carried over from the previous section)
    pages: tuple[tuple[int, int], ...] = ()  # (offset into text, page number) where each page starts


@dataclass(frozen=True)
class TextChunk:
    text: str
    heading: str
    char_start: int  # into the document text
    char_end: int
    line_start: int
    line_end: int
    page: int | None  # the page the chunk starts on
    n_tokens: int
    page_end: int | None = None  # the page it ends on


@dataclass
class _Piece:
    start: int  # into the section text
    end: int
    n_tokens: int
    heading: str | None = None  # set when the piece is a heading


def _blocks(text: str) -> Iterator[tuple[int, int, str | None]]:
    """(start, end, heading text or None) of each heading or paragraph."""
    lines = text.splitlines(keepends=True)
    pos = 0
    para_start: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        is_md = bool(_MD_HEADING.match(line))
        is_rst = (
            bool(stripped)
            and bool(_RST_UNDERLINE.match(nxt.rstrip("\r\n")))
            and len(nxt.strip()) >= len(stripped)
            and len(stripped) <= 120
        )
        if (is_md or is_rst or not stripped) and para_start is not None:
            yield para_start, pos, None
            para_start = None
        if is_md:
            yield pos, pos + len(line), stripped.lstrip("#").strip()
        elif is_rst:
            end = pos + len(line) + len(nxt)
            yield pos, end, stripped
            pos = end
            i += 2
            continue
        elif stripped and para_start is None:
            para_start = pos
        pos += len(line)
        i += 1
    if para_start is not None:
        yield para_start, pos, None


def _split_long(
    text: str, start: int, end: int, count: Callable[[str], int], max_tokens: int
) -> Iterator[_Piece]:
    """Cut [start, end) into pieces of at most max_tokens: sentences, then words."""
    spans: list[tuple[int, int]] = []
    last = start
    for m in _SENTENCE_END.finditer(text, start, end):
        if m.end() > last:
            spans.append((last, m.end()))
            last = m.end()
    if last < end:
        spans.append((last, end))
    for s, e in spans:
        n = count(text[s:e])
        if n <= max_tokens:
            yield _Piece(s, e, n)
            continue
        # a very long sentence (or a line of a log): pack words
        w_start, w_tokens = s, 0
        for m in _WORD.finditer(text, s, e):
            wn = count(m.group())
            if wn > max_tokens:  # one "word" longer than a chunk (base64, minified code): cut by chars
                if w_tokens:
                    yield _Piece(w_start, m.start(), w_tokens)
                step = max(1, max_tokens)  # at most one token per character
                for cs in range(m.start(), m.end(), step):
                    ce = min(cs + step, m.end())
                    yield _Piece(cs, ce, count(text[cs:ce]))
                w_start, w_tokens = m.end(), 0
                continue
            if w_tokens + wn > max_tokens and w_tokens:
                yield _Piece(w_start, m.start(), w_tokens)
                w_start, w_tokens = m.start(), 0
            w_tokens += wn
        if w_start < e and text[w_start:e].strip():
            yield _Piece(w_start, e, count(text[w_start:e]))


def chunk_section(
    section: Section,
    count_tokens: Callable[[str], int],
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap: int = DEFAULT_OVERLAP,
) -> list[TextChunk]:
    """Chunks of one section, in order."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be at least 8, got {max_tokens}")
    overlap = max(0, min(overlap, max_tokens // 2))
    text = section.text
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return section.line_offset + bisect.bisect_right(line_starts, pos) - 1

    page_starts = [offset for offset, _ in section.pages]

    def page_of(pos: int) -> int | None:
        if not section.pages:
            return section.page
        return section.pages[max(0, bisect.bisect_right(page_starts, pos) - 1)][1]

    pieces: list[_Piece] = []
    for s, e, head in _blocks(text):
        if head is not None:
            pieces.append(_Piece(s, e, count_tokens(text[s:e]), heading=head))
            continue
        n = count_tokens(text[s:e])
        if n <= max_tokens:
            pieces.append(_Piece(s, e, n))
        else:
            pieces.extend(_split_long(text, s, e, count_tokens, max_tokens))

    chunks: list[TextChunk] = []
    heading = section.heading
    cur: list[_Piece] = []
    cur_tokens = 0

    def emit() -> None:
        if not cur:
            return
        s, e = cur[0].start, cur[-1].end
        body = text[s:e].strip()
        if not body:
            return
        # trim the span to the stripped text
        s += len(text[s:e]) - len(text[s:e].lstrip())
        e = s + len(body)
        chunks.append(
            TextChunk(
                text=body,
                heading=heading,
                char_start=section.char_offset + s,
                char_end=section.char_offset + e,
                line_start=line_of(s),
                line_end=line_of(max(s, e - 1)),
                page=page_of(s),
                n_tokens=cur_tokens,
                page_end=page_of(max(s, e - 1)),
            )
        )

    for p in pieces:
        if p.heading is not None:
            if cur and not all(q.heading is not None for q in cur):
                emit()
                cur, cur_tokens = [], 0
            elif cur:  # consecutive headings: keep only the innermost as context
                cur, cur_tokens = [], 0
            heading = p.heading
            cur.append(p)
            cur_tokens += p.n_tokens
            continue
        if cur and cur_tokens + p.n_tokens > max_tokens:
            emit()
            # carry trailing pieces (not headings) as overlap
            carry: list[_Piece] = []
            carried = 0
            for q in reversed(cur):
                if q.heading is not None or carried + q.n_tokens > overlap:
                    break
                carry.insert(0, q)
                carried += q.n_tokens
            if carried + p.n_tokens > max_tokens:
                carry, carried = [], 0
            cur, cur_tokens = carry, carried
        cur.append(p)
        cur_tokens += p.n_tokens
    if (cur and not all(q.heading is not None for q in cur)) or (cur and not chunks):
        emit()
    return chunks


def last_heading(section: Section) -> str:
    """The heading in force at the end of a section (carried into the next one)."""
    heading = section.heading
    for _s, _e, h in _blocks(section.text):
        if h is not None:
            heading = h
    return heading
