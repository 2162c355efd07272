"""The chat-turn core (assistant/turn.py) and the one source type: citations, saved metadata, budget."""

from __future__ import annotations

from assistant.engine.chat import ChatResult, Timings
from assistant.engine.context import ContextReport
from assistant.knowledge.grounding import DEFAULT_BUDGET, Source, format_sources
from assistant.message import Message
from assistant.turn import PROMPT_MARGIN, ChatTurn, check_citations, conversation_messages, grounding_budget

# What the TUI stored with an answer before there was one Source type (tui/retrieval.py:SourceRef.as_meta)
OLD_META = [
    {
        "n": 1,
        "title": "Cooking rice",
        "path": "/docs/kitchen/rice.md",
        "location": "lines 3-9",
        "excerpt": "Rinse the rice, then simmer it.",
        "text": "Rinse the rice, then simmer it.",
        "line_start": 3,
        "line_end": 9,
        "score": 0.031,
    },
    {
        "n": 2,
        "title": "Kitchen safety",
        "path": "/docs/kitchen/safety.pdf",
        "location": "p. 4",
        "excerpt": "Never leave a pot unattended.",
        "text": "Never leave a pot unattended.",
        "page": 4,
        "score": 0.016,
    },
]


def _sources(n: int, uri: str = "/docs/guide.md") -> list[Source]:
    return [
        Source.from_dict(
            {"number": i, "title": "Guide", "uri": uri, "lines": [i * 10, i * 10 + 5], "text": f"c{i}"}
        )
        for i in range(1, n + 1)
    ]


def _result(text: str, finish: str = "stop") -> ChatResult:
    report = ContextReport(window=2048, budget=1024, prompt_tokens=100)
    return ChatResult(
        text, finish, 100, 12, 0, report, Timings(ttft_ms=50.0, decode_ms=100.0, decode_tokens=11), 1
    )


def test_sources_stored_by_older_versions_load() -> None:
    rice, safety = (Source.from_dict(d) for d in OLD_META)
    assert (rice.number, rice.title, rice.uri) == (1, "Cooking rice", "/docs/kitchen/rice.md")
    assert (rice.line_start, rice.line_end, rice.location) == (3, 9, "lines 3-9")
    assert rice.text == "Rinse the rice, then simmer it." and rice.score == 0.031
    assert (safety.page_start, safety.page_end, safety.location) == (4, 4, "page 4")
    # one format from now on: what is saved reads back the same
    for s in (rice, safety):
        assert Source.from_dict(s.as_dict()) == s
    assert Source.from_dict({}).number == 0 and Source.from_dict({"lines": "bad"}).line_start is None


def test_printed_sources_list_each_document_once() -> None:
    guide = _sources(3)
    other = Source.from_dict({"number": 4, "title": "Facts", "uri": "/docs/facts.txt", "lines": [1, 2]})
    text = format_sources([guide[0], other, guide[1], guide[2]])
    assert text.splitlines() == [
        "[1][2][3] Guide — /docs/guide.md, lines 10-15; lines 20-25; lines 30-35",
        "[4] Facts — /docs/facts.txt, lines 1-2",
    ]


def test_citations_are_checked_against_the_sources() -> None:
    c = check_citations("Logs are kept 14 days [1]. Older ones [5], see also [2, 7] and [1][6].", 4)
    assert c.valid == [1, 2] and c.invalid == [5, 6, 7]
    assert c.text == "Logs are kept 14 days [1]. Older ones [5?], see also [2, 7?] and [1][6?]."
    code = "Use `a[5]` or\n```\nx = y[9]\n```\nand [a link](x) or [3](http://x) [4]"
    c = check_citations(code, 2)
    assert c.text == code.replace("[4]", "[4?]") and c.invalid == [4] and c.valid == []


def test_finish_marks_invented_citations_and_makes_the_saved_meta() -> None:
    turn = ChatTurn([Message("user", "q")], _sources(4), retrieval_ms=12.34, notices=["a note"])
    done = turn.finish(_result("Kept 14 days [1][5]."), model="m.gguf", adapters=[("cook.gguf", 0.5)])
    assert done.text == "Kept 14 days [1][5?]."
    meta = done.meta
    assert meta["citations"] == [1] and meta["invalid_citations"] == [5]
    assert [s["number"] for s in meta["sources"]] == [1, 2, 3, 4] and meta["sources"][0]["text"] == "c1"
    assert meta["model"] == "m.gguf" and meta["adapters"] == [["cook.gguf", 0.5]]
    assert meta["notices"] == ["a note"] and meta["retrieval_ms"] == 12.3
    assert meta["finish_reason"] == "stop" and meta["prompt_tokens"] == 100 and meta["decode_tps"] == 110.0

    plain = ChatTurn([Message("user", "q")]).finish(_result("x = a[5]"), model="m.gguf")
    assert plain.text == "x = a[5]" and "citations" not in plain.meta and plain.citations is None
    failed = ChatTurn([Message("user", "q")]).finish(None, model=None, error="boom", partial_text="par")
    assert failed.text == "par" and failed.meta["finish_reason"] == "error" and failed.meta["error"] == "boom"


def test_messages_and_the_grounding_budget(chat_model) -> None:
    history = [Message("user", "a"), Message("assistant", " "), Message("user", "b")]
    assert conversation_messages("sys", history) == [Message("system", "sys"), Message("user", "a\n\nb")]
    short = [Message("user", "How long are logs kept?")]
    assert grounding_budget(chat_model, short, 256) == DEFAULT_BUDGET
    long = [Message("user", "word " * 800)]
    used = chat_model.count_text(long[0].content) + 4
    expected = chat_model.n_ctx - min(256, chat_model.n_ctx // 2) - used - PROMPT_MARGIN
    assert 128 < expected < DEFAULT_BUDGET
    assert grounding_budget(chat_model, long, 256) == expected
    assert grounding_budget(chat_model, long * 3, 256) == 128  # never below the floor
