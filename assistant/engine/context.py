"""Fit a conversation into the context window without ever failing.

Policy: the system prompt and the newest turns stay; the oldest turns leave
first (whole user/assistant pairs, so role order stays valid for strict
templates); a single message too long for the window is cut in the middle
(its start and end usually hold the question) with a visible marker. Every
change is reported so the UI can tell the user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..message import Message

DROP_STEP = 4  # messages: turns leave the window two user/assistant pairs at a time
TRUNCATION_MARKER = "\n\n[… {n} tokens cut to fit the context window …]\n\n"


@dataclass(frozen=True)
class Truncation:
    role: str
    original_tokens: int
    kept_tokens: int


@dataclass
class ContextReport:
    """How the prompt was fitted: what the UI shows next to the answer."""

    window: int
    budget: int  # tokens available to the prompt (window minus the answer reserve)
    prompt_tokens: int = 0
    dropped_messages: int = 0
    truncated: list[Truncation] = field(default_factory=list)

    @property
    def trimmed(self) -> bool:
        return bool(self.dropped_messages or self.truncated)

    def notices(self) -> list[str]:
        out = []
        if self.dropped_messages:
            n = self.dropped_messages
            out.append(
                f"{n} older message{'s' if n != 1 else ''} left the {self.window:,}-token context window"
            )
        for t in self.truncated:
            who = "your message" if t.role == "user" else f"the {t.role} message"
            out.append(
                f"{who} was cut from {t.original_tokens:,} to {t.kept_tokens:,} tokens "
                f"to fit the {self.window:,}-token context window (middle removed)"
            )
        return out


Counter = Callable[[Sequence[Message]], int]
Tokenize = Callable[[str], list[int]]
Detokenize = Callable[[Sequence[int]], str]


def fit_messages(
    messages: Sequence[Message],
    *,
    count: Counter,
    tokenize: Tokenize,
    detokenize: Detokenize,
    window: int,
    budget: int,
) -> tuple[list[Message], ContextReport]:
    """Return the messages to send and a report; never raises for length."""
    msgs = list(messages)
    report = ContextReport(window=window, budget=budget)
    total = count(msgs)
    if total <= budget or not msgs:
        report.prompt_tokens = total
        return msgs, report

    system = [msgs[0]] if msgs[0].role == "system" else []
    turns = msgs[len(system) :]
    # Candidate cut points: start at a user message (keeps roles alternating), newest last.
    cuts = [k for k in range(1, len(turns)) if turns[k].role == "user"]
    if not cuts or cuts[-1] != len(turns) - 1:
        cuts.append(len(turns) - 1)
    # Prefer cuts on a coarse grid: the cut then stays put for a few turns, so the
    # prompt keeps its prefix and the cached keys/values are reused.
    coarse = [k for k in cuts if k % DROP_STEP == 0]
    for candidates in (coarse, cuts):
        best = _smallest_fitting_cut(candidates, system, turns, count, budget)
        if best is not None:
            cut, n = best
            report.dropped_messages = cut
            report.prompt_tokens = n
            return system + turns[cut:], report

    # Even the newest message alone does not fit: cut messages in the middle.
    kept = system + turns[-1:]
    report.dropped_messages = len(turns) - 1
    if system:  # a system prompt may take at most half of the budget
        sys_tokens = tokenize(system[0].content)
        if len(sys_tokens) > budget // 2:
            kept[0] = _cut(system[0], sys_tokens, budget // 2, detokenize)
            report.truncated.append(Truncation("system", len(sys_tokens), budget // 2))
    last = kept[-1]
    toks = tokenize(last.content)
    keep = len(toks)
    n = count(kept)
    for _ in range(8):  # tokenization at the cut can shift the count by a few tokens
        if n <= budget:
            break
        keep = max(0, keep - (n - budget) - (8 if keep == len(toks) else 2))
        kept[-1] = _cut(last, toks, keep, detokenize)
        n = count(kept)
    if keep < len(toks):
        report.truncated.append(Truncation(last.role, len(toks), keep))
    report.prompt_tokens = n
    return kept, report


def _smallest_fitting_cut(
    cuts: list[int], system: list[Message], turns: list[Message], count: Counter, budget: int
) -> tuple[int, int] | None:
    """Binary search: tokens fall as the cut moves later."""
    lo, hi, best = 0, len(cuts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        n = count(system + turns[cuts[mid] :])
        if n <= budget:
            best, hi = (cuts[mid], n), mid - 1
        else:
            lo = mid + 1
    return best


def _cut(msg: Message, tokens: list[int], keep: int, detokenize: Detokenize) -> Message:
    """Keep the first and last keep/2 tokens of a message, marking the cut."""
    keep = max(0, min(keep, len(tokens)))
    head = keep // 2
    tail = keep - head
    text = detokenize(tokens[:head]) + TRUNCATION_MARKER.format(n=f"{len(tokens) - keep:,}")
    if tail:
        text += detokenize(tokens[len(tokens) - tail :])
    return Message(msg.role, text)
