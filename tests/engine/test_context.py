"""Context fitting: drop the oldest turns, keep the system prompt, cut a lone giant message."""

from __future__ import annotations

import itertools

from assistant.engine.context import TRUNCATION_MARKER, fit_messages
from assistant.message import Message


class WordTokenizer:
    """One token per word; a rendered message costs its words plus 3 (role framing)."""

    def tokenize(self, text: str) -> list[int]:
        return [hash(w) & 0xFFFF for w in text.split()]

    def detokenize(self, tokens) -> str:  # words are not recoverable: stand-ins of the right count
        return " ".join("w" for _ in tokens)

    def count(self, msgs) -> int:
        return sum(len(m.content.split()) + 3 for m in msgs) + 2


def fit(msgs, budget, window=None):
    t = WordTokenizer()
    return fit_messages(
        msgs,
        count=t.count,
        tokenize=t.tokenize,
        detokenize=t.detokenize,
        window=window or budget * 2,
        budget=budget,
    )


def turns(n: int, words: int = 10) -> list[Message]:
    out = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        out.append(Message(role, " ".join([f"m{i}"] * words)))
    return out


def test_fits_untouched():
    msgs = [Message("system", "be brief"), *turns(4)]
    kept, report = fit(msgs, budget=1000)
    assert kept == msgs
    assert not report.trimmed
    assert report.prompt_tokens == WordTokenizer().count(msgs)
    assert report.notices() == []


def test_drops_oldest_pairs_and_keeps_system():
    msgs = [Message("system", "be brief"), *turns(20)]  # 20 x 13 tokens + system 5 + 2
    kept, report = fit(msgs, budget=100)
    assert kept[0] == msgs[0]
    assert kept[-1] == msgs[-1]
    assert kept[1].role == "user"  # roles still alternate from a user turn
    assert WordTokenizer().count(kept) <= 100
    assert report.dropped_messages == len(msgs) - len(kept)
    # the newest possible suffix is kept: adding the previous pair would not fit
    previous = msgs[len(msgs) - len(kept) - 1 :]
    assert WordTokenizer().count([msgs[0], *previous[1:]]) > 100 or previous[1].role != "user"
    assert "older messages left the 200-token context window" in report.notices()[0]


def test_single_huge_message_is_cut_in_the_middle():
    msgs = [Message("system", "be brief"), Message("user", " ".join(["x"] * 5000))]
    kept, report = fit(msgs, budget=300)
    assert WordTokenizer().count(kept) <= 300
    assert kept[0] == msgs[0]
    assert "tokens cut to fit the context window" in kept[1].content
    assert report.truncated and report.truncated[0].role == "user"
    assert report.truncated[0].original_tokens == 5000
    assert report.truncated[0].kept_tokens < 300
    assert "your message was cut from 5,000" in " ".join(report.notices())


def test_huge_system_prompt_is_limited_to_half_the_budget():
    msgs = [Message("system", " ".join(["s"] * 2000)), Message("user", "hi there")]
    kept, report = fit(msgs, budget=200)
    assert WordTokenizer().count(kept) <= 200
    assert kept[1] == msgs[1]
    assert any(t.role == "system" for t in report.truncated)


def test_history_and_huge_last_message():
    msgs = [*turns(6), Message("user", " ".join(["y"] * 1000))]
    kept, report = fit(msgs, budget=150)
    assert len(kept) == 1
    assert report.dropped_messages == 6
    assert WordTokenizer().count(kept) <= 150


def test_marker_mentions_removed_count():
    assert "{n}" in TRUNCATION_MARKER


def test_cut_moves_in_coarse_steps_so_prefixes_repeat():
    """As a chat grows, the cut stays put for consecutive turns (cache reuse)."""
    from assistant.engine.context import DROP_STEP

    system = Message("system", "be brief")
    cuts = []
    history: list[Message] = []
    for _i in range(40):
        history += [Message("user", "q " * 8), Message("assistant", "a " * 8)]
        _, report = fit([system, *history, Message("user", "last")], budget=120)
        cuts.append(report.dropped_messages)
    assert cuts == sorted(cuts)  # never moves back
    assert all(c % DROP_STEP == 0 for c in cuts)
    repeats = sum(1 for a, b in itertools.pairwise(cuts) if a == b and a > 0)
    assert repeats >= len([c for c in cuts if c > 0]) // 3
