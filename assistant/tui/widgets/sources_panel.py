"""The numbered sources of the current answer; Enter (or a click) opens one in its document."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ...knowledge.grounding import Source
from ..messages import _Msg


def source_prompt(src: Source) -> Text:
    text = Text()
    text.append(f"[{src.number}] ", "bold")
    text.append(src.title, "bold")
    where = ", ".join(b for b in (src.uri and _short_path(src.uri), src.location) if b)
    if where:
        text.append(f"\n{where}", "dim")
    if src.excerpt:
        excerpt = src.excerpt if len(src.excerpt) <= 160 else src.excerpt[:159].rstrip() + "…"
        text.append(f"\n{excerpt}", "italic")
    return text


def _short_path(path: str, keep: int = 48) -> str:
    return path if len(path) <= keep else "…" + path[-(keep - 1) :]


class SourcesPanel(Vertical):
    DEFAULT_CSS = """
    SourcesPanel { width: 38; dock: right; border-left: vkey $primary 40%; padding: 0 0 0 1; }
    SourcesPanel > #sources-title { height: 1; text-style: bold; color: $primary; }
    SourcesPanel > #sources-hint { height: auto; color: $text-muted; }
    SourcesPanel > OptionList { height: 1fr; border: none; padding: 0; background: transparent; }
    """

    @dataclass
    class Selected(_Msg):
        source: Source

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sources: list[Source] = []
        self._hint = ""

    def compose(self) -> ComposeResult:
        yield Static("Sources", id="sources-title")
        yield Static("", id="sources-hint", markup=False)
        yield OptionList(id="sources-list")

    def on_mount(self) -> None:
        self._refresh_view()

    def show(self, sources: list[Source], hint: str = "") -> None:
        self.sources = list(sources)
        self._hint = hint
        if self.is_mounted:
            self._refresh_view()

    def _refresh_view(self) -> None:
        hint = self.query_one("#sources-hint", Static)
        options = self.query_one(OptionList)
        options.clear_options()
        if self.sources:
            options.add_options([Option(source_prompt(s), id=str(i)) for i, s in enumerate(self.sources)])
            options.highlighted = 0
        hint.update(self._hint)
        hint.display = bool(self._hint)
        options.display = bool(self.sources)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        index = int(event.option.id or 0)
        if 0 <= index < len(self.sources):
            self.post_message(self.Selected(self.sources[index]))
