"""Turn token bytes into safe text deltas: whole UTF-8 characters, stop strings honoured.

A token may end in the middle of a UTF-8 character, and a stop string may span
tokens. Text that could still be the start of a stop string is held back
until it is known not to be; nothing after a stop string is ever emitted.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""
        self.stopped = False  # a stop string was seen
        self.text_parts: list[str] = []

    def feed(self, data: bytes) -> str:
        """Add token bytes; return the text that is safe to show now."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        if not self._stops:
            out, self._pending = self._pending, ""
            self.text_parts.append(out)
            return out
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:  # the earliest stop string wins
            self.stopped = True
            out, self._pending = self._pending[: min(hits)], ""
            self.text_parts.append(out)
            return out
        cut = len(self._pending) - self._hold
        # keep back only a tail that is a prefix of some stop string
        tail_start = max(cut, 0)
        while tail_start < len(self._pending) and not any(
            s.startswith(self._pending[tail_start:]) for s in self._stops
        ):
            tail_start += 1
        out, self._pending = self._pending[:tail_start], self._pending[tail_start:]
        self.text_parts.append(out)
        return out

    def flush(self) -> str:
        """End of generation: release held text (a partial stop string is text after all)."""
        if self.stopped:
            return ""
        out = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        self.text_parts.append(out)
        return out

    @property
    def text(self) -> str:
        return "".join(self.text_parts)
