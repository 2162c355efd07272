"""Messages that workers post to the UI thread (dataclasses, harlequin style).

Workers never touch widgets: they post one of these (``post_message`` is
thread-safe) and the app's handlers update the screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class _Msg(Message):
    """Base of our messages: Message.__post_init__ does the setup a dataclass __init__ skips."""


@dataclass
class ModelLoaded(_Msg):
    engine: Any
    load_ms: float


@dataclass
class ModelFailed(_Msg):
    path: Any
    error: str


@dataclass
class RetrieverReady(_Msg):
    retriever: Any


@dataclass
class AnswerStarted(_Msg):
    turn_id: int
    notices: list[str] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)
    retrieval_ms: float | None = None
    prompt_tokens: int = 0


@dataclass
class AnswerFinished(_Msg):
    turn_id: int
    result: Any = None  # engine ChatResult
    error: str | None = None


@dataclass
class TokensCounted(_Msg):
    conversation_key: int
    tokens: int


@dataclass
class AdaptersApplied(_Msg):
    adapters: list[tuple[Any, float]]
    error: str | None = None
