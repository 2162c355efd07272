"""Sampling parameters and retrieval top-k: a small form, checked before it is saved."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ...engine.sampling import SamplingParams
from ...errors import AssistantError

FIELDS: tuple[tuple[str, str, str], ...] = (
    ("temperature", "Temperature", "0 = greedy"),
    ("top_p", "Top-p", "nucleus mass, (0, 1]"),
    ("top_k", "Top-k", "0 = off"),
    ("min_p", "Min-p", "[0, 1)"),
    ("repeat_penalty", "Repeat penalty", "1.0 = off"),
    ("max_tokens", "Max tokens", "longest answer"),
    ("seed", "Seed", "empty = random"),
    ("kb_top_k", "Sources (top-k)", "per question"),
)
INTS = {"top_k", "max_tokens", "seed", "kb_top_k"}


@dataclass(frozen=True)
class Settings:
    sampling: SamplingParams
    kb_top_k: int


def parse_settings(values: dict[str, str], base: SamplingParams) -> Settings:
    """Form values to Settings; raises AssistantError naming the bad field."""
    parsed: dict[str, Any] = {}
    for key, label, _ in FIELDS:
        raw = values.get(key, "").strip()
        if key == "seed" and raw == "":
            parsed[key] = None
            continue
        try:
            parsed[key] = int(raw) if key in INTS else float(raw)
        except ValueError:
            kind = "a whole number" if key in INTS else "a number"
            raise AssistantError(f"{label}: expected {kind}, got {raw!r}") from None
    kb_top_k = parsed.pop("kb_top_k")
    if not 1 <= kb_top_k <= 20:
        raise AssistantError(f"Sources (top-k): expected 1 to 20, got {kb_top_k}")
    sampling = replace(base, **parsed)  # __post_init__ validates
    return Settings(sampling, kb_top_k)


class SettingsScreen(ModalScreen[Settings | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("down", "app.focus_next", "Next field", show=False),
        Binding("up", "app.focus_previous", "Previous field", show=False),
    ]

    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen > Vertical {
        width: 64; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
        border: round $primary; background: $surface;
    }
    SettingsScreen .title { text-style: bold; height: 1; }
    SettingsScreen Grid { grid-size: 3; grid-columns: 18 14 1fr; grid-rows: 1; height: auto; grid-gutter: 0 1; }
    SettingsScreen Grid Input { height: 1; border: none; padding: 0; }
    SettingsScreen .hint { color: $text-muted; }
    SettingsScreen .help { color: $text-muted; height: auto; }
    SettingsScreen #error { color: $error; height: auto; }
    """

    def __init__(self, sampling: SamplingParams, kb_top_k: int) -> None:
        super().__init__()
        self.sampling = sampling
        self.kb_top_k = kb_top_k

    def _value(self, key: str) -> str:
        if key == "kb_top_k":
            return str(self.kb_top_k)
        value = getattr(self.sampling, key)
        return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Sampling and retrieval", classes="title")
            with Grid():
                for key, label, hint in FIELDS:
                    yield Label(label)
                    yield Input(self._value(key), id=f"f-{key}", compact=True)
                    yield Label(hint, classes="hint")
            yield Static("", id="error", markup=False)
            yield Static("Enter or Ctrl+S saves (for this and later chats) · Esc cancels", classes="help")

    def on_mount(self) -> None:
        self.query_one("#error").display = False
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        values = {key: self.query_one(f"#f-{key}", Input).value for key, _, _ in FIELDS}
        try:
            settings = parse_settings(values, self.sampling)
        except AssistantError as exc:
            err = self.query_one("#error", Static)
            err.update(str(exc))
            err.display = True
            return
        self.dismiss(settings)

    def action_cancel(self) -> None:
        self.dismiss(None)
