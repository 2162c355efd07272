"""The message input: multi-line, Enter sends, Ctrl+J (or Shift/Alt+Enter) adds a line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import TextArea

from ..messages import _Msg

NEWLINE_KEYS = ("ctrl+j", "shift+enter", "alt+enter")


class PromptInput(TextArea):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history_previous", "Previous message", show=False),
        Binding("down", "history_next", "Next message", show=False),
        # The input is a few lines high: page keys scroll the conversation instead.
        Binding("pageup", "app.scroll_chat(-1)", "Scroll up", show=False),
        Binding("pagedown", "app.scroll_chat(1)", "Scroll down", show=False),
    ]

    DEFAULT_CSS = """
    PromptInput { height: auto; min-height: 3; max-height: 10; }
    """

    @dataclass
    class Submitted(_Msg):
        text: str

    def __init__(self, *, id: str | None = None, placeholder: str = "") -> None:
        super().__init__(
            id=id,
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            compact=False,
            highlight_cursor_line=False,
            placeholder=placeholder,
        )
        self.sent_history: list[str] = []
        self._history_pos: int | None = None
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.action_submit()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            start, end = self.selection
            self._replace_via_keyboard("\n", start, end)
            return
        await super()._on_key(event)

    def action_submit(self) -> None:
        text = self.text
        if not text.strip():
            return
        if not self.sent_history or self.sent_history[-1] != text:
            self.sent_history.append(text)
        self._history_pos = None
        self.clear()
        self.post_message(self.Submitted(text))

    def action_history_previous(self) -> None:
        row, _ = self.cursor_location
        if row > 0 or not self.sent_history or (self.text and self._history_pos is None):
            self.action_cursor_up()
            return
        if self._history_pos is None:
            self._draft = self.text
            self._history_pos = len(self.sent_history)
        if self._history_pos > 0:
            self._history_pos -= 1
            self._show(self.sent_history[self._history_pos])

    def action_history_next(self) -> None:
        row, _ = self.cursor_location
        if self._history_pos is None or row < self.document.line_count - 1:
            self.action_cursor_down()
            return
        self._history_pos += 1
        if self._history_pos >= len(self.sent_history):
            self._history_pos = None
            self._show(self._draft)
        else:
            self._show(self.sent_history[self._history_pos])

    def _show(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)
