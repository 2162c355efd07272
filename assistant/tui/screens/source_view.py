"""One source read in its document: the chunk that was used, selected and scrolled into view."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea
from textual.widgets.text_area import Selection

from ...knowledge.extract import is_compressed, open_document
from ...knowledge.grounding import Source
from ...knowledge.paths import display_name, key_path

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
BINARY_SUFFIXES = {".pdf", ".docx", ".epub", ".odt"}


def load_document(src: Source) -> tuple[str, tuple[int, int] | None, str]:
    """The text to show, the (start, end) character span of the chunk in it, and a note.

    The path is the stored key (a file:// URI for a name that is not UTF-8); a .gz document is
    shown decompressed; a document whose text was rendered for the index (a man page's roff)
    does not hold the chunk as written, so the chunk itself is shown."""
    chunk = src.text or src.excerpt
    only_chunk = (chunk, (0, len(chunk)) if chunk else None)
    path = key_path(src.uri) if src.uri else None
    if path is None or not path.is_file():
        note = f"{display_name(src.uri)} is not on this machine any more; showing the stored chunk." if src.uri else ""
        return *only_chunk, note
    name = display_name(path.name)
    if path.suffix.lower() in BINARY_SUFFIXES or path.stat().st_size > MAX_DOCUMENT_BYTES:
        return *only_chunk, f"{name}{', ' + src.location if src.location else ''}: showing the chunk used."
    try:
        with open_document(path) as fh:
            data = fh.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, EOFError) as exc:
        return *only_chunk, f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}"
    if len(data) > MAX_DOCUMENT_BYTES:
        return *only_chunk, f"{name}{', ' + src.location if src.location else ''}: showing the chunk used."
    if b"\x00" in data[:4096]:
        return *only_chunk, f"{name} is binary: showing the chunk used."
    text = data.decode("utf-8", errors="replace")
    span: tuple[int, int] | None = None
    if chunk and (i := text.find(chunk)) >= 0:
        span = (i, i + len(chunk))
    elif _is_roff(text):
        return *only_chunk, f"{name} is a manual page (shown as rendered for the index): showing the chunk used."
    elif src.line_start is not None:
        lines = text.splitlines(keepends=True)
        a = max(0, src.line_start - 1)
        b = min(len(lines), src.line_end or src.line_start)
        start = sum(len(x) for x in lines[:a])
        span = (start, start + sum(len(x) for x in lines[a:b]))
    elif is_compressed(path):
        return *only_chunk, f"{name}: showing the chunk used."
    return text, span, ""


def _is_roff(text: str) -> bool:
    """A man page's source (man or mdoc macros): its lines are not the text that was indexed."""
    return any(line.startswith((".TH ", ".Dd ", ".Dt ")) for line in text[:8192].splitlines())


def _location(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    row = before.count("\n")
    col = len(before) - (before.rfind("\n") + 1)
    return row, col


class SourceScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    DEFAULT_CSS = """
    SourceScreen { align: center middle; }
    SourceScreen > Vertical {
        width: 100%; height: 100%; padding: 0 1; border: round $primary; background: $surface;
    }
    SourceScreen .title { text-style: bold; height: auto; }
    SourceScreen .where { color: $text-muted; height: auto; }
    SourceScreen TextArea { height: 1fr; }
    SourceScreen .help { color: $text-muted; height: 1; }
    """

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.text, self.span, self.note = load_document(source)

    def compose(self) -> ComposeResult:
        src = self.source
        with Vertical():
            yield Static(f"[{src.number}] {src.title}", classes="title", markup=False)
            where = ", ".join(b for b in (src.uri, src.location) if b)
            if self.note:
                where = f"{where}\n{self.note}" if where else self.note
            yield Static(where, classes="where", markup=False)
            yield TextArea(self.text, read_only=True, soft_wrap=True, id="document")
            yield Static("The selected text is the chunk the answer used · Esc closes", classes="help")

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.focus()
        if self.span:
            start = _location(self.text, self.span[0])
            end = _location(self.text, self.span[1])
            area.selection = Selection(end, start)  # the cursor (selection end) at the chunk's start
            self.call_after_refresh(area.scroll_cursor_visible, center=True)

    def action_close(self) -> None:
        self.dismiss(None)
