"""Text out of files: plain text and code, Markdown, reST, HTML, man pages, PDF, BEIR JSONL.

Each reader yields ``Section``s (see chunk.py) so a large file never has to
sit in memory whole: plain text is read in slices of about ``SECTION_CHARS``
characters cut at line ends; a PDF gives groups of consecutive pages (each
page's start kept, so chunks know their pages); HTML gives its visible text with headings marked; a man page
(roff) its rendered text (roff.py). Text, HTML and man pages may be
gzip-compressed (``README.md.gz``, ``ls.1.gz``): read through gzip, their
kind taken from the name without ``.gz``.
Problems a user can fix raise ``ExtractError`` with a one-line reason.
"""

from __future__ import annotations

import codecs
import gzip
import json
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO

from ..errors import KnowledgeBaseError
from .chunk import Section
from .roff import looks_like_man, man_to_text

log = logging.getLogger(__name__)

SECTION_CHARS = 1 << 20  # ~1 MB of text per section of a large file
PDF_SECTION_CHARS = 1 << 16  # PDF pages grouped into sections of ~64 KB of text (a unit of resuming)
SNIFF_BYTES = 8192

TEXT_EXTS = {".txt", ".text", ".log", ".csv", ".tsv", ".out", ".nfo", ""}
MARKDOWN_EXTS = {".md", ".markdown", ".mdown", ".mkd"}
RST_EXTS = {".rst", ".rest"}
HTML_EXTS = {".html", ".htm", ".xhtml"}
PDF_EXTS = {".pdf"}
JSONL_EXTS = {".jsonl", ".ndjson"}
CODE_EXTS = {
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp",
    ".hh", ".go", ".rs", ".java", ".kt", ".kts", ".scala", ".rb", ".php", ".swift", ".m", ".mm", ".cs",
    ".fs", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".pl", ".pm", ".lua", ".r", ".jl", ".hs", ".ml",
    ".ex", ".exs", ".erl", ".clj", ".sql", ".toml", ".yaml", ".yml", ".ini", ".cfg", ".conf", ".json",
    ".xml", ".css", ".scss", ".less", ".vue", ".svelte", ".dart", ".zig", ".nim", ".tex", ".bib",
    ".cmake", ".gradle", ".proto", ".graphql", ".tf", ".dockerfile", ".mk", ".bat", ".vim", ".el",
}  # fmt: skip
KNOWN_NAMES = {"makefile", "dockerfile", "readme", "license", "copying", "changelog", "authors", "notice"}


class ExtractError(KnowledgeBaseError):
    """A file whose text cannot be extracted (binary, no text layer, unreadable...)."""


def kind_of(path: Path) -> str | None:
    """The reader for a path by its name: txt, md, rst, html, pdf, jsonl, code, or None (sniff).

    A compressed file (``.gz``) has the kind of its name without ``.gz``.
    """
    ext = path.suffix.lower()
    if is_compressed(path):
        return kind_of(path.with_suffix(""))
    if ext in MARKDOWN_EXTS:
        return "md"
    if ext in RST_EXTS:
        return "rst"
    if ext in HTML_EXTS:
        return "html"
    if ext in PDF_EXTS:
        return "pdf"
    if ext in JSONL_EXTS:
        return "jsonl"
    if ext in CODE_EXTS:
        return "code"
    if ext in TEXT_EXTS or path.name.lower() in KNOWN_NAMES:
        return "txt"
    return None


def is_compressed(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def open_document(path: Path) -> BinaryIO:
    """The file's bytes: decompressed on the fly for a .gz file."""
    if is_compressed(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def decompressed_size(path: Path, limit: int) -> int:
    """What a .gz file decompresses to, counted in a stream: refused above limit (a gzip bomb) or if damaged."""
    n = 0
    try:
        with gzip.open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                n += len(block)
                if n > limit:
                    raise ExtractError(
                        f"{path} decompresses to more than {limit / (1 << 20):,.0f} MB; "
                        "skipped (raise the limit with --max-file-mb)"
                    )
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ExtractError(f"{path} is not a valid gzip file ({exc}); skipped") from exc
    return n


def read_head(path: Path) -> bytes:
    """The first SNIFF_BYTES of the document's bytes (decompressed for .gz)."""
    try:
        with open_document(path) as fh:
            return fh.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        if is_compressed(path) and not isinstance(exc, PermissionError):
            raise ExtractError(f"{path} is not a valid gzip file ({exc}); skipped") from exc
        raise ExtractError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def sniff_kind(path: Path, kind: str | None) -> str:
    """The reader for a file its name does not settle (kind None or txt): man (roff) or txt; binary refused."""
    head = read_head(path)
    if kind is None and looks_binary(head):
        raise ExtractError(f"{path} looks like a binary file (not text); skipped")
    if looks_like_man(head.decode(_encoding_for(head).replace("-sig", ""), errors="replace")):
        return "man"
    return "txt"


def looks_binary(head: bytes) -> bool:
    """NUL bytes or mostly control characters in the first few KB: not text."""
    if not head:
        return False
    if b"\x00" in head:
        # UTF-16 text has NULs too; accept it only with a BOM
        return not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return control / len(head) > 0.1


def _encoding_for(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    # a UTF-16 BOM, and NULs as UTF-16 text of mostly ASCII has (else: bytes that happen to look like one)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and b"\x00" in head[2:512]:
        return "utf-16"
    return "utf-8"


@dataclass
class Extracted:
    """A document's text as sections, plus what the reader learned on the way."""

    title: str
    sections: Iterator[Section]
    warnings: list[str] = field(default_factory=list)
    has_lines: bool = True  # line spans are meaningful (text files), not for HTML/PDF


def read_text_sections(
    path: Path, *, warnings: list[str], section_chars: int = SECTION_CHARS
) -> Iterator[Section]:
    """Stream a text file as sections of about section_chars, cut after a newline."""
    try:
        fh = open_document(path)
    except OSError as exc:
        raise ExtractError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        head = fh.read(SNIFF_BYTES)
        fh.seek(0)
        decoder = codecs.getincrementaldecoder(_encoding_for(head))(errors="replace")
        char_offset, line_offset = 0, 1
        pending = ""
        replaced = 0
        while True:
            block = fh.read(section_chars)
            final = not block
            text = pending + decoder.decode(block, final=final)
            replaced += text.count("\ufffd") - pending.count("\ufffd")
            if not final and len(text) < section_chars:
                pending = text
                continue
            if final:
                cut = len(text)
            else:
                cut = text.rfind("\n", 0, len(text)) + 1
                if cut <= 0:  # one enormous line: cut anywhere
                    cut = len(text)
            part, pending = text[:cut], text[cut:]
            if part:
                yield Section(part, char_offset=char_offset, line_offset=line_offset)
                char_offset += len(part)
                line_offset += part.count("\n")
            if final:
                break
        if replaced:
            warnings.append(f"not valid UTF-8: {replaced} undecodable byte sequence(s) replaced with U+FFFD")
    except OSError as exc:
        raise ExtractError(f"cannot read {path}: {exc.strerror}") from exc
    finally:
        fh.close()


def _title_from_text(path: Path, first: str, kind: str) -> str:
    if kind in ("md", "rst", "txt"):
        for line in first.splitlines()[:40]:
            s = line.strip()
            if kind == "md" and s.startswith("#"):
                return s.lstrip("#").strip()[:200]
            if kind == "rst" and s and not re.fullmatch(r"([=\-~^\"'`#*+.:_])\1{2,}", s):
                return s[:200]
    return path.name


def extract_text_file(path: Path, kind: str) -> Extracted:
    warnings: list[str] = []
    head = read_head(path)
    if looks_binary(head):
        raise ExtractError(f"{path} looks like a binary file (not text); skipped")
    first = head.decode(_encoding_for(head).replace("-sig", ""), errors="replace")
    title = _title_from_text(path, first, kind)
    return Extracted(
        title, read_text_sections(path, warnings=warnings, section_chars=SECTION_CHARS), warnings
    )


# -- HTML ---------------------------------------------------------------------------

_SKIP_TAGS = {"script", "style", "head", "noscript", "template", "svg", "iframe", "object", "canvas"}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "br", "li", "ul", "ol",
    "table", "tr", "td", "th", "pre", "blockquote", "hr", "dl", "dt", "dd", "form", "figure", "figcaption",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _HEADINGS:
            self.parts.append("\n\n" + "#" * _HEADINGS[tag] + " ")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag in ("p", "div", "section", "article", "table", "pre") else "\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _HEADINGS or tag in ("p", "div", "section", "article", "pre", "table"):
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        if self._skip:
            return
        self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page, headings written as Markdown #."""
    p = _VisibleText()
    p.feed(markup)
    p.close()
    raw = "".join(p.parts)
    lines = [re.sub(r"[ \t\r\f\v]+", " ", ln).strip() for ln in raw.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
    title = re.sub(r"\s+", " ", "".join(p.title_parts)).strip()
    return title, text


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """At most max_bytes + 1 of the document's bytes (a whole HTML page or man page is parsed at once)."""
    try:
        with open_document(path) as fh:
            return fh.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ExtractError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def extract_html(path: Path, max_bytes: int) -> Extracted:
    raw = _read_bounded(path, max_bytes)
    if looks_binary(raw[:SNIFF_BYTES]):
        raise ExtractError(f"{path} looks like a binary file, not HTML; skipped")
    m = re.search(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_\-]+)", raw[:4096], re.I)
    enc = m.group(1).decode("ascii") if m else _encoding_for(raw)
    try:
        markup = raw.decode(enc, errors="replace")
    except LookupError:
        markup = raw.decode("utf-8", errors="replace")
    title, text = html_to_text(markup)
    warnings = []
    if "\ufffd" in markup:
        warnings.append("not valid text in its declared encoding: undecodable bytes replaced with U+FFFD")
    if not text.strip():
        raise ExtractError(f"{path} has no visible text; skipped")
    return Extracted(title or path.name, iter([Section(text)]), warnings, has_lines=False)


# -- man pages ----------------------------------------------------------------------


def extract_man(path: Path, max_bytes: int) -> Extracted:
    """A man page (roff, maybe .gz) rendered to text; one that only sources another page is skipped."""
    raw = _read_bounded(path, max_bytes)
    source = raw.decode(_encoding_for(raw[:SNIFF_BYTES]), errors="replace")
    title, text, redirect = man_to_text(source)
    if not text.strip():
        if redirect:
            raise ExtractError(f"{path} only points to another manual page ({redirect}); skipped")
        raise ExtractError(f"{path} has no text; skipped")
    warnings = []
    if "\ufffd" in source:
        warnings.append("not valid UTF-8: undecodable bytes replaced with U+FFFD")
    return Extracted(title or path.name, iter([Section(text)]), warnings, has_lines=False)


# -- PDF ----------------------------------------------------------------------------


def extract_pdf(path: Path) -> Extracted:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ExtractError("reading PDF needs pypdf (pip install pypdf)") from exc
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:
                raise ExtractError(f"{path} is an encrypted PDF; decrypt it first") from exc
        n_pages = len(reader.pages)
    except ExtractError:
        raise
    except (PdfReadError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ExtractError(f"{path} is not a readable PDF ({exc}); skipped") from exc
    meta_title = ""
    try:
        if reader.metadata and reader.metadata.title:
            meta_title = str(reader.metadata.title).strip()
    except Exception:
        meta_title = ""
    pages: list[tuple[int, str]] = []
    for i in range(n_pages):
        try:
            t = reader.pages[i].extract_text() or ""
        except Exception as exc:  # pypdf raises many kinds on broken pages
            log.warning("%s: page %d: text extraction failed (%s)", path, i + 1, exc)
            t = ""
        t = t.replace("\x00", "")
        if t.strip():
            pages.append((i + 1, t.rstrip() + "\n"))
    if not pages:
        raise ExtractError(
            f"{path} has no text layer ({n_pages} page(s) of images?); run OCR on it first "
            "(e.g. ocrmypdf) and add the result"
        )
    warnings = []
    if len(pages) < n_pages:
        warnings.append(f"{n_pages - len(pages)} of {n_pages} pages have no text layer and were skipped")

    return Extracted(meta_title or path.name, _page_sections(pages), warnings, has_lines=False)


def _page_sections(pages: list[tuple[int, str]], section_chars: int = PDF_SECTION_CHARS) -> Iterator[Section]:
    """Consecutive pages as sections of about section_chars (a blank line between pages).

    Chunks are packed across page ends, so short pages do not each become a tiny chunk
    (one embedding each); every chunk still knows the pages it spans.
    """
    offset = 0
    group: list[tuple[int, str]] = []
    size = 0
    for i, (page, text) in enumerate(pages):
        group.append((page, text))
        size += len(text) + 1
        if size >= section_chars or i == len(pages) - 1:
            starts, pos = [], 0
            for p, t in group:
                starts.append((pos, p))
                pos += len(t) + 1
            yield Section(
                "\n".join(t for _, t in group), char_offset=offset, page=group[0][0], pages=tuple(starts)
            )
            offset += size
            group, size = [], 0


# -- JSONL (BEIR corpus) --------------------------------------------------------------


@dataclass
class JsonlRecord:
    line: int
    doc_id: str
    title: str
    text: str


def read_jsonl(path: Path, errors: list[str]) -> Iterator[tuple[JsonlRecord, int]]:
    """Records of a BEIR-style JSONL file, with the byte offset after each; bad lines go to errors."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally, generator
    except OSError as exc:
        raise ExtractError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        pos = 0
        for n, raw in enumerate(fh, start=1):
            pos += len(raw)
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8", errors="replace"))
            except json.JSONDecodeError as exc:
                errors.append(f"line {n}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                errors.append(f"line {n}: expected a JSON object, got {type(obj).__name__}")
                continue
            doc_id = obj.get("_id", obj.get("id"))
            if doc_id is None or str(doc_id) == "":
                errors.append(f'line {n}: no "_id" or "id"')
                continue
            text = obj.get("text", "")
            title = obj.get("title", "") or ""
            if not isinstance(text, str) or not isinstance(title, str):
                errors.append(f'line {n}: "text" and "title" must be strings (id {doc_id})')
                continue
            if not text.strip() and not title.strip():
                errors.append(f"line {n}: empty document (id {doc_id})")
                continue
            yield JsonlRecord(n, str(doc_id), title.strip(), text), pos
    except OSError as exc:
        raise ExtractError(f"cannot read {path}: {exc.strerror}") from exc
    finally:
        fh.close()


def jsonl_body(record: JsonlRecord) -> str:
    """The document text of a record: its title, a blank line, its text."""
    if record.title and record.text.strip():
        return f"{record.title}\n\n{record.text}"
    return record.title or record.text
