"""One line under the input: model, quant type, adapters, context usage, last answer's speed, retrieval."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rich.text import Text
from textual.widget import Widget


@dataclass(frozen=True)
class StatusInfo:
    model: str = ""  # "" = no model
    quant: str = ""
    adapters: tuple[tuple[str, float], ...] = ()
    state: str = ""  # "loading", "generating", "stopping", "" (idle)
    used: int = 0
    window: int = 0
    ttft_ms: float | None = None
    tps: float | None = None
    speed_note: str = ""  # in place of the speed figures, e.g. "stopped before the first token"
    threads: str = ""  # llama.cpp threads of the last answer, e.g. "2 threads", "1-2 threads"
    retrieval: str = "none"  # "on", "off", "none" (no knowledge base), "loading"
    extra: tuple[str, ...] = field(default_factory=tuple)


def context_bar(used: int, window: int, width: int) -> tuple[str, str]:
    """A bar of `width` cells for used/window and its style."""
    if window <= 0 or width <= 0:
        return "", "dim"
    frac = max(0.0, min(1.0, used / window))
    full = round(frac * width)
    if used and not full:
        full = 1
    style = "green" if frac < 0.75 else "yellow" if frac < 0.9 else "red"
    return "█" * full + "░" * (width - full), style


def tps_text(tps: float) -> str:
    """Tokens per second, with a decimal when small (0.4 tok/s, not 0)."""
    return f"{tps:,.1f} tok/s" if tps < 10 else f"{tps:,.0f} tok/s"


def threads_text(ran: Any) -> str:
    """An answer's thread count (meta "threads": a count, or the counts in order when it changed)."""
    if isinstance(ran, int):
        return f"{ran} thread{'s' if ran != 1 else ''}"
    if isinstance(ran, list) and ran:
        return f"{min(ran)}-{max(ran)} threads"
    return ""


def stopped_early(meta: Mapping[str, Any]) -> bool:
    """An answer stopped while its prompt was read: it has no speed (not "0 ms · 0.0 tok/s")."""
    return meta.get("finish_reason") == "cancelled" and not meta.get("completion_tokens")


def speed_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The speed slot's fields for an answer's meta: its figures, or why it has none."""
    if stopped_early(meta):
        return {"ttft_ms": None, "tps": None, "speed_note": "stopped before the first token", "threads": ""}
    return {
        "ttft_ms": meta.get("ttft_ms"),
        "tps": meta.get("decode_tps"),
        "speed_note": "",
        "threads": threads_text(meta.get("threads")),
    }


def _short(name: str) -> str:
    return name.removesuffix(".gguf")


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar { height: 1; width: 1fr; background: $panel; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.info = StatusInfo()

    def set(self, **changes: Any) -> None:
        new = replace(self.info, **changes)
        if new != self.info:
            self.info = new
            self.refresh()

    def render(self) -> Text:
        return self.text(self.size.width or 80)

    def text(self, width: int) -> Text:
        """The line for this width: the richest layout that fits, degrading step by step."""
        i = self.info
        kb = {"on": ("KB on", "bold green"), "off": ("KB off", ""), "loading": ("KB …", "dim")}
        kb_part = kb.get(i.retrieval, ("no KB", "dim"))
        if not i.model:
            return self._line([(" no model", "bold red")], [kb_part], width)
        name = _short(i.model)
        if i.quant and name.lower().endswith(("." + i.quant.lower(), "-" + i.quant.lower())):
            name = name[: -len(i.quant) - 1]  # the quant type is shown next to it
        layout = {
            "name": len(name),
            "bar": 12,
            "speed": 2 if (i.ttft_ms is not None and i.tps is not None) or i.speed_note else 0,
            "adapters": 2 if i.adapters else 0,
            "numbers": 1,
        }
        steps: list[tuple[str, int]] = [
            ("bar", 8),
            ("adapters", 1),
            ("bar", 5),
            ("speed", 1),
            ("bar", 4),
            ("name", 16),
            ("speed", 0),
            ("name", 10),
            ("bar", 0),
            ("adapters", 0),
            ("numbers", 0),
            ("name", 6),
        ]
        while True:
            left, right = self._parts(name, kb_part, layout)
            line = self._line(left, right, width)
            if self._fits(left, right, width) or not steps:
                return line
            key, value = steps.pop(0)
            layout[key] = min(layout[key], value)

    def _parts(
        self, name: str, kb_part: tuple[str, str], layout: dict[str, int]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        i = self.info
        if layout["name"] < len(name):
            name = name[: layout["name"] - 1] + "…"
        left: list[tuple[str, str]] = [(" " + name, "bold"), (" · ", "dim"), (i.quant or "?", "")]
        if layout["adapters"] == 2:
            left += [(" ", ""), (" ".join(f"+{_short(p)}×{s:g}" for p, s in i.adapters), "magenta")]
        elif layout["adapters"] == 1:
            left += [(" ", ""), (f"+{len(i.adapters)} LoRA", "magenta")]
        state = {"loading": "loading…", "generating": "●", "stopping": "stopping…"}.get(i.state, "")
        if state:
            left += [(" ", ""), (state, "green" if i.state == "generating" else "yellow")]
        if i.window and (layout["bar"] or layout["numbers"]):
            left.append((" │ ", "dim"))
            if layout["bar"]:
                bar, style = context_bar(i.used, i.window, layout["bar"])
                left += [(bar, style), (" ", "")]
            if layout["numbers"]:
                left.append((f"{i.used:,}/{i.window:,}", ""))
        right: list[tuple[str, str]] = []
        if layout["speed"] and i.speed_note:
            right += [(i.speed_note if layout["speed"] == 2 else "stopped", "dim"), (" │ ", "dim")]
        elif layout["speed"] == 2 and i.ttft_ms is not None and i.tps is not None:
            threads = f" · {i.threads}" if i.threads else ""
            right += [(f"{i.ttft_ms:,.0f} ms · {tps_text(i.tps)}{threads}", ""), (" │ ", "dim")]
        elif layout["speed"] == 1 and i.tps is not None:
            right += [(tps_text(i.tps), ""), (" │ ", "dim")]
        right.append(kb_part)
        return left, right

    @staticmethod
    def _fits(left: list[tuple[str, str]], right: list[tuple[str, str]], width: int) -> bool:
        used = sum(Text(c).cell_len for c, _ in left) + sum(Text(c).cell_len for c, _ in right) + 2
        return used <= width

    @staticmethod
    def _line(left: list[tuple[str, str]], right: list[tuple[str, str]], width: int) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for chunk, style in left:
            text.append(chunk, style)
        tail = Text(no_wrap=True, end="")
        for chunk, style in right:
            tail.append(chunk, style)
        tail.append(" ")
        pad = max(1, width - text.cell_len - tail.cell_len)
        text.append(" " * pad)
        text.append_text(tail)
        text.truncate(width, pad=True)
        return text
