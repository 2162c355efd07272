"""Messages waiting for the current answer to finish, shown above the input."""

from __future__ import annotations

from textual.widgets import Static


class QueueBar(Static):
    DEFAULT_CSS = """
    QueueBar { height: auto; max-height: 2; color: $warning; padding: 0 1; display: none; }
    """

    def show_queue(self, queued: list[str], *, loading: bool = False) -> None:
        self.display = bool(queued)
        if not queued:
            self.update("")
            return
        first = " ".join(queued[0].split())
        if len(first) > 50:
            first = first[:49] + "…"
        more = f" (+{len(queued) - 1} more)" if len(queued) > 1 else ""
        when = "once the model has loaded" if loading else "when this answer ends"
        self.update(f"⏳ queued: “{first}”{more}, sent {when} · Esc returns it to the input")
