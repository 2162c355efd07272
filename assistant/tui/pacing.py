"""How often to draw streamed text: often, but within a CPU budget for the UI thread (no textual imports).

On a 2-core laptop llama.cpp decodes on every core, so each millisecond the UI
thread spends re-laying out Markdown is taken from decoding. The pacer measures
the UI thread's CPU time since the last draw and stretches or shrinks the
interval so that drawing stays under ``budget`` of one core: many draws a second
when drawing is cheap, down to ``max_interval`` apart when the machine is slow or
busy (a Markdown frame, two layouts of the screen in Textual, cost 15-45 ms of CPU
on the shared 2-core dev machine). Key presses are not paced: they are handled as
they come.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class FramePacer:
    def __init__(
        self,
        *,
        min_interval: float = 1 / 30,
        max_interval: float = 0.5,
        budget: float = 0.05,
        clock: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.thread_time,
    ) -> None:
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.budget = budget
        self._clock = clock
        self._cpu = cpu
        self.interval = min_interval
        self._wall = 0.0
        self._busy = 0.0
        self._drawn = False

    def start(self) -> float:
        """A new answer: the first text is drawn fast (returns the first wait); after it, frames come
        at the rate learnt so far, since the machine and the drawing cost rarely change between
        answers: restarting at the top rate cost every answer a burst of frames while the pacer
        slowed down again, CPU taken from decoding."""
        self._wall = self._clock()
        self._busy = self._cpu()
        self._drawn = False
        return self.min_interval

    def waiting(self) -> float:
        """A frame found nothing to draw: keep polling fast until the answer's first text."""
        return self.interval if self._drawn else self.min_interval

    def next_interval(self) -> float:
        """After a draw: the wait before the next one, from the UI thread's share of a core since the last."""
        self._drawn = True
        wall, busy = self._clock(), self._cpu()
        elapsed = wall - self._wall
        used = busy - self._busy
        self._wall, self._busy = wall, busy
        if elapsed > 0:
            share = used / elapsed
            target = self.interval * share / self.budget if share > 0 else self.min_interval
            self.interval = 0.5 * self.interval + 0.5 * target  # smooth: one slow frame is not a trend
        self.interval = max(self.min_interval, min(self.max_interval, self.interval))
        return self.interval
