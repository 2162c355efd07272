"""A one-line progress bar on a terminal (tensors, bytes, ETA); nothing when not a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .writer import Progress


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n < 10e9 else f"{n / 1e9:,.1f} GB"


class TerminalProgress:
    def __init__(self, stream: TextIO | None = None, min_interval: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.min_interval = min_interval
        self._last = 0.0
        self._open = False

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.stage == "write" and p.done_tensors == p.total_tensors
        if p.stage == "quantize":
            self._line(f"quantizing with llama.cpp … ({p.total_tensors} tensors)")
            return
        if not final and now - self._last < self.min_interval:
            return
        self._last = now
        frac = p.done_bytes / p.total_bytes if p.total_bytes else 1.0
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = now - p.started
        eta = elapsed * (1 - frac) / frac if frac > 0 else 0.0
        self._line(
            f"[{bar}] {p.done_tensors}/{p.total_tensors} tensors  {_mb(p.done_bytes)}/{_mb(p.total_bytes)}  "
            f"ETA {eta:4.0f}s"
        )

    def _line(self, text: str) -> None:
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()
        self._open = True

    def close(self) -> None:
        if self._open:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._open = False


def for_terminal(stream: TextIO | None = None) -> TerminalProgress | None:
    s = stream or sys.stderr
    return TerminalProgress(s) if s.isatty() else None
