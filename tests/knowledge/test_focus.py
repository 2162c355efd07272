"""Focused sources: the sentences of a chunk that bear on the question (assistant/knowledge/focus.py)."""

from __future__ import annotations

from assistant.knowledge.focus import ELLIPSIS, focus, idf_weights, sentences, stem, terms
from assistant.knowledge.grounding import pack
from assistant.knowledge.search import Hit

PARAGRAPH = (
    "Pappataci fever is a viral disease of the Mediterranean. "
    "It is spread by sandflies of the genus Phlebotomus. "
    "The illness was described in 1909 by Doerr, who named it after the Italian word for sandfly. "
    "Most patients recover within a week."
)


def words(text: str) -> int:
    """A stand-in token count: words (the tests choose caps in words)."""
    return len(text.split())


def test_sentences_cut_prose_and_markdown_and_keep_every_character() -> None:
    text = 'It rose (in 1820). "Later" it fell! Did it? 3 cows.\n\n- one\n- two\n# Head\nend'
    parts = sentences(text)
    assert parts == ["It rose (in 1820). ", '"Later" it fell! ', "Did it? ", "3 cows.\n\n", "- one\n", "- two\n",
                     "# Head\nend"]  # fmt: skip
    assert "".join(parts) == text
    assert sentences("e.g. lower case after a stop is no new sentence") == [
        "e.g. lower case after a stop is no new sentence"
    ]
    assert sentences("  ") == []


def test_terms_drop_stop_words_and_stem() -> None:
    assert stem("founded") == "found" and stem("sandflies") == "sandfli" and stem("is") == "is"
    assert terms("Who founded the cities?") == {"found", "citi"}


def test_idf_weights_favour_rare_words() -> None:
    w = idf_weights({"sandfli", "fever"}, ["Fever here. Fever there. Sandflies once."])
    assert w["sandfli"] > w["fever"] > 0


def test_focus_keeps_the_best_sentences_within_the_cap() -> None:
    f = focus("Who described the illness, and when?", PARAGRAPH, max_tokens=20, count_tokens=words)
    assert f.cut and f.score > 0
    assert f.text == f"{ELLIPSIS} The illness was described in 1909 by Doerr, who named it after the Italian word " \
        f"for sandfly. {ELLIPSIS}"  # fmt: skip
    # room for two sentences: the next one wins a tie (the answer tends to follow the subject)
    two = focus("Who described the illness?", PARAGRAPH, max_tokens=24, count_tokens=words)
    assert two.text.startswith(f"{ELLIPSIS} The illness was described") and two.text.endswith(
        "within a week."
    )
    assert words(two.text) - 1 <= 24


def test_focus_returns_a_text_that_fits_whole() -> None:
    f = focus("anything", PARAGRAPH, max_tokens=500, count_tokens=words)
    assert f == type(f)(PARAGRAPH, False, 0.0)


def test_focus_cuts_one_long_sentence_at_a_word() -> None:
    long = " ".join(f"word{i}" for i in range(100)) + "."
    f = focus("word7", long, max_tokens=10, count_tokens=words)
    assert f.cut and f.text.endswith(ELLIPSIS) and words(f.text) - 1 <= 10 and f.text.startswith("word0 ")


def _hit(n: int, doc: str, text: str) -> Hit:
    return Hit(
        chunk_id=n, document_id=n, doc_key=doc, uri=f"{doc}.md", title=doc, kind="md", collection="", ordinal=0,
        text=text, heading="", char_start=0, char_end=len(text), line_start=None, line_end=None,
        page_start=None, page_end=None, n_tokens=0, score=1.0 / n,
    )  # fmt: skip


def test_pack_focuses_each_source_and_keeps_the_whole_chunk_for_the_reader() -> None:
    hits = [_hit(1, "fever", PARAGRAPH), _hit(2, "other", "Sandflies bite at night. They are small.")]
    g = pack("Who described the illness?", hits, count_tokens=words, budget_tokens=500, source_tokens=20)
    first, second = g.sources
    assert first.focused.startswith(f"{ELLIPSIS} The illness was described") and first.text == PARAGRAPH
    assert (
        first.as_dict()["focused"] == first.focused
        and type(first).from_dict(first.as_dict()).focused == first.focused
    )
    assert second.focused == "" and "focused" not in second.as_dict()  # it fit whole
    user = g.messages[-1].content
    assert "Doerr" in user and "Most patients" not in user and "Sandflies bite at night." in user

    whole = pack(
        "Who described the illness?", hits, count_tokens=words, budget_tokens=500, source_tokens=None
    )
    assert "Most patients recover" in whole.messages[-1].content and whole.sources[0].focused == ""


def test_pack_limits_sources_per_document() -> None:
    hits = [_hit(1, "a", "One. Two."), _hit(2, "a", "Three."), _hit(3, "b", "Four.")]
    g = pack("q", hits, count_tokens=words, budget_tokens=500, source_tokens=None, per_document=1)
    assert [(s.number, s.doc_id) for s in g.sources] == [(1, "a"), (2, "b")]
