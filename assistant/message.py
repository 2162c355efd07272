"""One chat message: what history, grounding, the turn core and the engine pass each other.

It lives below every layer (like ``errors``) so the engine, the knowledge base and the front ends
share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}
