"""One message in the conversation: who, the text (Markdown for answers), notices and a footer.

Answers stream in through Textual's MarkdownStream: fragments are appended
(Markdown.append re-parses only the last block), and fragments that arrive
while an append is running are combined into the next one.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from .status_bar import stopped_early, tps_text


def answer_footer(meta: dict[str, Any]) -> str:
    """The dim line under an answer: stopped/cut, tokens, speed, sources."""
    bits = []
    reason = meta.get("finish_reason")
    if reason == "cancelled":
        bits.append("stopped before the first token" if stopped_early(meta) else "stopped")
    elif reason == "length":
        bits.append("cut at max tokens")
    elif reason == "error":
        bits.append("failed")
    if meta.get("completion_tokens"):
        bits.append(f"{meta['completion_tokens']:,} tokens")
    if meta.get("ttft_ms") is not None and meta.get("decode_tps") is not None and not stopped_early(meta):
        bits.append(f"{meta['ttft_ms']:,.0f} ms to first token · {tps_text(meta['decode_tps'])}")
    if meta.get("adapters"):
        bits.append(" ".join(f"+{str(p).removesuffix('.gguf')}×{s:g}" for p, s in meta["adapters"]))
    n = len(meta.get("sources") or [])
    if n:
        bits.append(f"{n} source{'s' if n != 1 else ''}")
    return " · ".join(bits)


class ChatMessage(Vertical):
    """A user message (plain text) or an assistant answer (Markdown, possibly streaming)."""

    DEFAULT_CSS = """
    ChatMessage { height: auto; padding: 0 1; margin: 0 0 1 0; }
    ChatMessage > .who { height: 1; text-style: bold; }
    ChatMessage.user > .who { color: $accent; }
    ChatMessage.assistant > .who { color: $success; }
    ChatMessage > .notice { color: $warning; height: auto; }
    ChatMessage > .body-text { height: auto; }
    ChatMessage > Markdown { margin: 0; padding: 0; height: auto; }
    ChatMessage > .footer { color: $text-muted; height: auto; }
    ChatMessage > .error { color: $error; height: auto; }
    """

    def __init__(
        self,
        role: str,
        text: str = "",
        *,
        meta: dict[str, Any] | None = None,
        label: str | None = None,
        streaming: bool = False,
    ) -> None:
        super().__init__(classes=role)
        self.role = role
        self.text = text
        self.meta = dict(meta or {})
        self.label = label or ("You" if role == "user" else "Assistant")
        self.streaming = streaming
        self._stream: MarkdownStream | None = None
        self._parts: list[str] = [text] if text else []

    def compose(self) -> ComposeResult:
        yield Static(self.label, classes="who", markup=False)
        for notice in self.meta.get("notices", []):
            yield Static(f"⚠ {notice}", classes="notice", markup=False)
        if self.role == "assistant":
            yield Markdown(self.text)
        else:
            yield Static(self.text, classes="body-text", markup=False)
        if self.meta.get("error"):
            yield Static(f"✗ {self.meta['error']}", classes="error", markup=False)
        footer = answer_footer(self.meta) if self.role == "assistant" and not self.streaming else ""
        yield Static(footer, classes="footer", markup=False)

    def on_mount(self) -> None:
        self.query_one(".footer").display = bool(self.query_one(".footer", Static).content)

    # -- streaming ------------------------------------------------------------

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def start_stream(self) -> None:
        self.streaming = True
        self._stream = Markdown.get_stream(self.markdown)

    async def append(self, fragment: str) -> None:
        if not fragment:
            return
        self._parts.append(fragment)
        if self._stream is not None:
            await self._stream.write(fragment)

    @property
    def streamed_text(self) -> str:
        return "".join(self._parts)

    async def finish(self, text: str | None, meta: dict[str, Any]) -> None:
        """End of the answer: the final text (what the engine returned) and its footer."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.streaming = False
        self.meta = dict(meta)
        if text is not None and text != self.markdown.source:
            await self.markdown.update(text)
            self._parts = [text]
        self.text = self.streamed_text
        if meta.get("error"):
            await self.mount(Static(f"✗ {meta['error']}", classes="error", markup=False), before=-1)
        footer = self.query_one(".footer", Static)
        footer.update(answer_footer(self.meta))
        footer.display = bool(answer_footer(self.meta))

    async def add_notices(self, notices: list[str]) -> None:
        if not notices:
            return
        self.meta.setdefault("notices", []).extend(notices)
        body = self.query_one(Markdown) if self.role == "assistant" else self.query_one(".body-text")
        await self.mount_all([Static(f"⚠ {n}", classes="notice", markup=False) for n in notices], before=body)
