"""Sampling parameters with defaults that suit small chat models.

Small models (the 135M default) loop on the same sentence under greedy
decoding unless repeats are penalised, so the defaults sample gently
(temperature 0.3, nucleus 0.9) with a mild repeat penalty over the last 64
tokens. ``temperature=0`` is greedy decoding.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.3
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int | None = None  # None: a fresh random seed per answer
    max_tokens: int = 512
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False  # benchmarks only: keep generating past end-of-turn

    def __post_init__(self) -> None:
        checks = [
            (self.temperature >= 0, "temperature must be >= 0"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.top_k >= 0, "top_k must be >= 0 (0 disables it)"),
            (0 <= self.min_p < 1, "min_p must be in [0, 1)"),
            (self.repeat_penalty > 0, "repeat_penalty must be > 0 (1.0 disables it)"),
            (self.repeat_last_n >= -1, "repeat_last_n must be >= -1"),
            (self.max_tokens >= 1, "max_tokens must be >= 1"),
            (self.seed is None or 0 <= self.seed < 2**32, "seed must be in [0, 2**32)"),
            (all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"invalid sampling parameter: {message}")

    def resolved_seed(self) -> int:
        return self.seed if self.seed is not None else random.SystemRandom().randrange(2**32 - 1)

    def with_(self, **changes: Any) -> SamplingParams:
        """A copy with the given fields changed (None values ignored)."""
        clean = {k: v for k, v in changes.items() if v is not None}
        if "stop" in clean:
            clean["stop"] = tuple(clean["stop"])
        return replace(self, **clean)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d
