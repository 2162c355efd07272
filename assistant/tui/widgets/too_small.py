"""Shown instead of the chat when the terminal is too small to use."""

from __future__ import annotations

from textual.widgets import Static

MIN_WIDTH = 40
MIN_HEIGHT = 10


class TooSmall(Static):
    DEFAULT_CSS = """
    TooSmall { width: 1fr; height: 1fr; content-align: center middle; text-align: center; display: none; }
    """

    def show_size(self, width: int, height: int) -> None:
        self.update(
            f"Terminal too small: {width}x{height}.\n"
            f"Make it at least {MIN_WIDTH}x{MIN_HEIGHT} (80x24 or more is best).\n"
            "Ctrl+Q quits."
        )
