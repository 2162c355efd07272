"""The conversation: a scrolling column of ChatMessages that follows a streaming answer.

Long chats mount only their newest messages; a button at the top brings in
earlier ones on demand, so resuming a 200-message chat stays quick and small.
A new question unmounts the oldest beyond the window again: Textual lays out
every mounted widget on each streamed frame, and on 2 cores that CPU is taken
from decoding (40 mounted messages: 0.95x of the engine alone, 20: 0.99x).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual import events
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, TextArea

from .chat_message import ChatMessage

WINDOW = 20  # messages mounted when a chat is opened or a question is sent; more on request


class ChatLog(VerticalScroll):
    DEFAULT_CSS = """
    ChatLog { height: 1fr; padding: 0 0; }
    ChatLog > #earlier { width: 100%; height: 1; min-width: 10; border: none; margin: 0 0 1 0; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, can_focus=True)
        self._hidden: list[tuple[str, str, dict[str, Any]]] = []  # older messages not mounted yet

    @property
    def messages(self) -> list[ChatMessage]:
        return list(self.query_children(ChatMessage))

    async def clear(self) -> None:
        self._hidden = []
        await self.remove_children()

    async def show_placeholder(self, widget: Widget) -> None:
        await self.clear()
        await self.mount(widget)

    async def load(self, items: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Replace the content with these (role, text, meta) messages, newest WINDOW mounted."""
        await self.clear()
        self._hidden = list(items[:-WINDOW]) if len(items) > WINDOW else []
        shown = items[-WINDOW:]
        widgets: list[Widget] = []
        if self._hidden:
            widgets.append(self._earlier_button())
        widgets += [ChatMessage(role, text, meta=meta) for role, text, meta in shown]
        with self.app.batch_update():
            await self.mount_all(widgets)
        self.anchor()  # stay at the newest message while the Markdown lays itself out

    def _earlier_button(self) -> Button:
        n = len(self._hidden)
        button = Button(f"▲ {n} earlier message{'s' if n != 1 else ''}", id="earlier", compact=True)
        button.can_focus = False  # typing goes on in the input; PgUp at the top loads them too
        return button

    @property
    def has_earlier(self) -> bool:
        return bool(self._hidden)

    async def show_earlier(self) -> None:
        if not self._hidden:
            return
        batch, self._hidden = self._hidden[-WINDOW:], self._hidden[:-WINDOW]
        old = self.query("#earlier")
        await old.remove()
        widgets: list[Widget] = [ChatMessage(r, t, meta=m) for r, t, m in batch]
        if self._hidden:
            widgets.insert(0, self._earlier_button())
        await self.mount_all(widgets, before=0 if self.children else None)
        self.scroll_home(animate=False)

    def on_key(self, event: events.Key) -> None:
        """Typing while the conversation has focus goes to the message input."""
        if event.is_printable and event.character:
            prompt = self.app.query_one("#prompt", TextArea)
            event.stop()
            event.prevent_default()
            prompt.focus()
            prompt.insert(event.character)

    def action_page_up(self) -> None:
        if self.scroll_y <= 0 and self._hidden:
            self.call_later(self.show_earlier)  # at the top: bring in earlier messages
            return
        super().action_page_up()

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "earlier":
            event.stop()
            await self.show_earlier()

    async def add(self, message: ChatMessage) -> ChatMessage:
        for child in list(self.children):
            if not isinstance(child, (ChatMessage, Button)):
                await child.remove()  # the welcome / empty-state text
        await self._trim(WINDOW - 1)
        await self.mount(message)
        return message

    async def _trim(self, keep: int) -> None:
        """Unmount all but the newest ``keep`` messages; they stay reachable through the button."""
        messages = self.messages
        old = messages[: max(0, len(messages) - keep)]
        if not old:
            return
        self._hidden += [(m.role, m.text, dict(m.meta)) for m in old]
        with self.app.batch_update():
            await self.remove_children([*self.query("#earlier"), *old])
            await self.mount(self._earlier_button(), before=0 if self.children else None)
