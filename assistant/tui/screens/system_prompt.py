"""The system prompt of the current chat: a multi-line editor. Ctrl+S saves, Esc cancels."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea


class SystemPromptScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    DEFAULT_CSS = """
    SystemPromptScreen { align: center middle; }
    SystemPromptScreen > Vertical {
        width: 90; max-width: 100%; height: 70%; min-height: 10; padding: 0 1;
        border: round $primary; background: $surface;
    }
    SystemPromptScreen .title { text-style: bold; height: 1; }
    SystemPromptScreen TextArea { height: 1fr; }
    SystemPromptScreen .help { color: $text-muted; height: auto; }
    """

    def __init__(self, text: str | None) -> None:
        super().__init__()
        self.text = text or ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("System prompt for this chat", classes="title")
            yield TextArea(self.text, id="system-text", soft_wrap=True, show_line_numbers=False)
            yield Static(
                "Ctrl+S saves (empty: the model's default) · Esc cancels · applies from the next answer",
                classes="help",
            )

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
