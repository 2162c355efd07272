"""The chat's keys, in one table: the help screen and the README show this (no textual imports)."""

from __future__ import annotations

KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the message (queued if an answer is still streaming)"),
    ("Ctrl+J", "new line in the message (also Shift+Enter / Alt+Enter where the terminal sends them)"),
    ("Up", "in an empty message: bring back the previous one"),
    ("Esc", "stop the answer (what was written stays); queued messages return to the input"),
    ("Ctrl+P", "command palette: model, LoRA adapters, sampling, system prompt, export, copy..."),
    ("Ctrl+N", "new chat"),
    ("Ctrl+O", "open a chat: list, full-text search, rename (F2), delete (Ctrl+D), export (Ctrl+E)"),
    ("Ctrl+R", "retrieval from the knowledge base on/off"),
    ("Ctrl+S", "sources panel on/off (Enter on a source shows it in its document)"),
    ("F2", "rename this chat"),
    ("F3", "copy the last answer (OSC 52 clipboard)"),
    ("PgUp / PgDn", "scroll the conversation"),
    ("Ctrl+C", "copy the selected text"),
    ("F1", "this list of keys"),
    ("Ctrl+Q", "quit"),
)
