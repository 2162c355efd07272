"""A fake chat engine for UI logic tests: scripted answers, fixed timings, honours cancel.

Only the UI is under test with it; the real engine has its own tests, and
test_real_model.py / test_e2e_tmux.py drive the TUI with the real default model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.engine.chat import ChatResult, Timings
from assistant.engine.context import ContextReport
from assistant.engine.sampling import SamplingParams
from assistant.errors import ModelError
from assistant.knowledge.grounding import GroundedPrompt, Source
from assistant.message import Message


@dataclass
class FakeInfo:
    architecture: str = "llama"
    quant_type: str = "Q4_1"
    name: str = "fake"


class FakeStream:
    def __init__(
        self, engine: FakeEngine, pieces: list[str], context: ContextReport, cancel: threading.Event
    ) -> None:
        self.context = context
        self.result: ChatResult | None = None
        self._engine = engine
        self._pieces = pieces
        self._cancel = cancel
        self._it = self._run()

    def __iter__(self) -> FakeStream:
        return self

    def __next__(self) -> str:
        return next(self._it)

    def _run(self):
        e = self._engine
        out: list[str] = []
        finish = "stop"
        for i, piece in enumerate(self._pieces):
            if self._cancel.is_set():
                finish = "cancelled"
                break
            if e.hold_after is not None and i >= e.hold_after:
                e.holding.set()
                for _ in range(3000):  # 30 s at most, so a failed test cannot hang the run
                    if e.release.wait(0.01) or self._cancel.is_set():
                        break
                else:
                    e.hold_after = None
                if self._cancel.is_set():
                    finish = "cancelled"
                    break
            if e.delay:
                self._cancel.wait(e.delay)
            out.append(piece)
            e.emitted += 1
            yield piece
        text = "".join(out)
        n = len(out)
        timings = Timings(
            load_ms=12.0,
            ttft_ms=42.0,
            decode_ms=(n - 1) / 123 * 1000 if n > 1 else 0.0,
            decode_tokens=max(0, n - 1),
        )
        self.result = ChatResult(
            text=text,
            finish_reason=finish,
            prompt_tokens=self.context.prompt_tokens,
            completion_tokens=n,
            cached_tokens=0,
            context=self.context,
            timings=timings,
            seed=1,
        )


@dataclass
class FakeEngine:
    path: Path
    n_ctx: int = 2048
    reply: Callable[[Sequence[Message]], str] | str = "Hello! I am a **fake** model."
    delay: float = 0.0
    hold_after: int | None = None  # block after this many pieces until release is set (or cancel)
    dropped: int = 0  # pretend this many old messages left the window
    info: FakeInfo = field(default_factory=FakeInfo)
    load_ms: float = 12.0
    fail_adapters: str | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.calls: list[tuple[list[Message], SamplingParams]] = []
        self.adapters: list[tuple[Path, float]] = []
        self.adapter_calls: list[list[tuple[Path, float]]] = []
        self.closed = False
        self.release = threading.Event()
        self.holding = threading.Event()
        self.emitted = 0

    def chat(
        self,
        messages: Sequence[Message],
        params: SamplingParams | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> FakeStream:
        params = params or SamplingParams()
        self.calls.append((list(messages), params))
        text = self.reply(messages) if callable(self.reply) else self.reply
        pieces = [w for w in _pieces(text)]
        report = ContextReport(
            window=self.n_ctx,
            budget=self.n_ctx // 2,
            prompt_tokens=self.count_tokens(messages),
            dropped_messages=self.dropped,
        )
        return FakeStream(self, pieces, report, cancel or threading.Event())

    def set_adapters(self, adapters: Sequence[tuple[str | Path, float]]) -> None:
        if self.fail_adapters:
            raise ModelError(self.fail_adapters)
        self.adapters = [(Path(p), float(s)) for p, s in adapters]
        self.adapter_calls.append(list(self.adapters))

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    def count_text(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        self.closed = True


def _pieces(text: str) -> list[str]:
    """Split like a tokenizer would: words with their leading space, newlines kept."""
    out: list[str] = []
    cur = ""
    for ch in text:
        if ch in " \n" and cur.strip():
            out.append(cur)
            cur = ""
        cur += ch
    if cur:
        out.append(cur)
    return out


class FakeRetriever:
    available = True
    hint = ""
    description = "notes.db · 3 chunks"

    def __init__(self, sources: list[Source] | None = None) -> None:
        self.sources = sources if sources is not None else []
        self.calls: list[tuple[list[Message], int]] = []

    def ground(self, messages: Sequence[Message], top_k: int, **kwargs: Any) -> GroundedPrompt:
        self.calls.append((list(messages), top_k))
        self.kwargs = kwargs
        context = "\n\n".join(f"[{s.number}] {s.text}" for s in self.sources)
        msgs = list(messages)
        last = msgs[-1]
        msgs[-1] = Message("user", f"Sources:\n{context}\n\nQuestion: {last.content}")
        return GroundedPrompt(msgs, self.sources[:top_k], 7.5, "fake")

    def close(self) -> None:
        pass
