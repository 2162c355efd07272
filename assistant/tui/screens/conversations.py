"""Ctrl+O: every saved chat; type to search them (full text), Enter opens one.

F2 renames, Ctrl+D deletes (after a yes), Ctrl+E exports to Markdown, Esc closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ...conversations import HIGHLIGHT_END, HIGHLIGHT_START, ConversationInfo, ConversationStore
from ...errors import AssistantError
from ..messages import _Msg
from .confirm import ConfirmDialog
from .prompt_dialog import PromptDialog


def when(stamp: str, now: datetime | None = None) -> str:
    """A short local date for a stored UTC timestamp: 'today 14:05', 'yesterday', '2026-03-01'."""
    try:
        dt = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).astimezone()
    except ValueError:
        return stamp[:10]
    now = (now or datetime.now(UTC)).astimezone()
    days = (now.date() - dt.date()).days
    if days == 0:
        return f"today {dt:%H:%M}"
    if days == 1:
        return "yesterday"
    return f"{dt:%Y-%m-%d}"


def highlighted(snippet: str) -> Text:
    text = Text()
    bold = False
    for part in snippet.replace(HIGHLIGHT_END, HIGHLIGHT_START).split(HIGHLIGHT_START):
        text.append(part, "bold reverse" if bold else "italic")
        bold = not bold
    return text


class ConversationsScreen(ModalScreen[int | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("down", "move(1)", "Down", show=False),
        Binding("up", "move(-1)", "Up", show=False),
        Binding("f2", "rename", "Rename"),
        Binding("ctrl+d", "delete", "Delete", priority=True),
        Binding("ctrl+e", "export", "Export", priority=True),
    ]

    DEFAULT_CSS = """
    ConversationsScreen { align: center middle; }
    ConversationsScreen > Vertical {
        width: 100; max-width: 100%; height: 90%; padding: 0 1;
        border: round $primary; background: $surface;
    }
    ConversationsScreen .title { text-style: bold; height: 1; }
    ConversationsScreen .help { color: $text-muted; height: 1; }
    ConversationsScreen OptionList { height: 1fr; border: none; }
    ConversationsScreen .empty { color: $text-muted; height: auto; padding: 1 0; }
    """

    @dataclass
    class Deleted(_Msg):
        conversation_id: int

    @dataclass
    class Renamed(_Msg):
        info: ConversationInfo

    @dataclass
    class Exported(_Msg):
        conversation_id: int

    def __init__(
        self, store: ConversationStore, current: int | None = None, now: datetime | None = None
    ) -> None:
        super().__init__()
        self.store = store
        self.current = current
        self.now = now
        self.items: list[ConversationInfo] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Chats", classes="title")
            yield Input(placeholder="Search all chats…", id="search")
            yield OptionList(id="chats")
            yield Static("", classes="empty", id="empty", markup=False)
            yield Static("Enter open · F2 rename · Ctrl+D delete · Ctrl+E export · Esc close", classes="help")

    def on_mount(self) -> None:
        self.refresh_list()
        self.query_one(Input).focus()

    def refresh_list(self, query: str = "") -> None:
        options = self.query_one(OptionList)
        empty = self.query_one("#empty", Static)
        options.clear_options()
        self.items = []
        try:
            if query.strip():
                hits = self.store.search(query)
                for hit in hits:
                    self.items.append(hit.conversation)
                    options.add_option(
                        Option(self._prompt(hit.conversation, hit.snippet), id=str(len(self.items)))
                    )
            else:
                for info in self.store.list_all():
                    self.items.append(info)
                    options.add_option(Option(self._prompt(info, None), id=str(len(self.items))))
        except AssistantError as exc:
            empty.update(str(exc))
            empty.display = True
            options.display = False
            return
        if self.items:
            options.highlighted = 0
        empty.update("" if self.items else ("No chat matches." if query.strip() else "No saved chats yet."))
        empty.display = not self.items
        options.display = bool(self.items)

    def _prompt(self, info: ConversationInfo, snippet: str | None) -> Text:
        text = Text()
        if info.id == self.current:
            text.append("● ", "green")
        text.append(info.display_title, "bold")
        text.append(f"  {info.n_messages} messages · {when(info.updated_at, self.now)}", "dim")
        if snippet and snippet != info.title:
            text.append("\n  ")
            text.append_text(highlighted(snippet))
        return text

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        self.refresh_list(event.value)

    @on(Input.Submitted, "#search")
    def _open_highlighted(self, event: Input.Submitted) -> None:
        event.stop()
        self._open()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._open()

    def _selected_info(self) -> ConversationInfo | None:
        options = self.query_one(OptionList)
        index = options.highlighted
        if index is None or not (0 <= index < len(self.items)):
            return None
        return self.items[index]

    def _open(self) -> None:
        info = self._selected_info()
        if info is not None:
            self.dismiss(info.id)

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if not self.items:
            return
        index = options.highlighted or 0
        options.highlighted = max(0, min(len(self.items) - 1, index + step))

    def action_close(self) -> None:
        self.dismiss(None)

    def action_rename(self) -> None:
        info = self._selected_info()
        if info is None:
            return

        def done(title: str | None) -> None:
            if title is None:
                return
            try:
                new = self.store.rename(info.id, title)
            except AssistantError as exc:
                self.notify(str(exc), severity="error")
                return
            self.app.post_message(self.Renamed(new))
            self.refresh_list(self.query_one(Input).value)

        self.app.push_screen(
            PromptDialog(
                "Rename chat", info.title, validate=lambda v: None if v.strip() else "a title is needed"
            ),
            done,
        )

    def action_delete(self) -> None:
        info = self._selected_info()
        if info is None:
            return

        def done(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.store.delete(info.id)
            except AssistantError as exc:
                self.notify(str(exc), severity="error")
                return
            self.app.post_message(self.Deleted(info.id))
            self.notify(f"Deleted “{info.display_title}”")
            self.refresh_list(self.query_one(Input).value)

        self.app.push_screen(
            ConfirmDialog(
                f"Delete “{info.display_title}” ({info.n_messages} messages)? This cannot be undone."
            ),
            done,
        )

    def action_export(self) -> None:
        info = self._selected_info()
        if info is not None:
            self.app.post_message(self.Exported(info.id))
