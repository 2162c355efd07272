"""Ask for one line of text (a chat title, an export path, an adapter scale); Esc cancels."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class PromptDialog(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    PromptDialog { align: center middle; }
    PromptDialog > Vertical {
        width: 70; max-width: 95%; height: auto; padding: 1 2;
        border: round $primary; background: $surface;
    }
    PromptDialog .title { text-style: bold; margin-bottom: 1; }
    PromptDialog .help { color: $text-muted; }
    PromptDialog .error { color: $error; height: auto; }
    """

    def __init__(
        self,
        title: str,
        value: str = "",
        *,
        help: str = "Enter to confirm, Esc to cancel.",
        validate: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.help_text = help
        self.check = validate

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title", markup=False)
            yield Input(self.value, id="value")
            yield Static("", classes="error", id="error", markup=False)
            yield Static(self.help_text, classes="help", markup=False)

    def on_mount(self) -> None:
        self.query_one("#error").display = False
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value
        problem = self.check(value) if self.check else None
        if problem:
            err = self.query_one("#error", Static)
            err.update(problem)
            err.display = True
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
