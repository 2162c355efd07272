"""Chunking by the embedding model's tokens: structure kept, spans exact, sizes bounded."""

from __future__ import annotations

import itertools

import pytest

from assistant.knowledge.chunk import Section, chunk_section, last_heading


def _check_spans(doc: str, chunks: list) -> None:
    for ch in chunks:
        assert doc[ch.char_start : ch.char_end] == ch.text
        assert doc.count("\n", 0, ch.char_start) + 1 == ch.line_start
        assert doc.count("\n", 0, ch.char_end - 1) + 1 == ch.line_end


def test_headings_start_chunks_and_are_recorded(embedder) -> None:
    doc = (
        "# Manual\n\nIntro paragraph about the manual.\n\n## Install\n\nRun the installer.\n\n"
        "Then reboot.\n\n## Logs\n\nLogs rotate weekly.\n"
    )
    chunks = chunk_section(Section(doc), embedder.count_tokens, max_tokens=64, overlap=8)
    assert [c.heading for c in chunks] == ["Manual", "Install", "Logs"]
    assert chunks[1].text.startswith("## Install")
    assert "Then reboot." in chunks[1].text and "Logs rotate" not in chunks[1].text
    _check_spans(doc, chunks)


def test_rst_underline_headings(embedder) -> None:
    doc = "Title\n=====\n\nFirst part.\n\nSection two\n-----------\n\nSecond part.\n"
    chunks = chunk_section(Section(doc), embedder.count_tokens, max_tokens=64)
    assert [c.heading for c in chunks] == ["Title", "Section two"]
    _check_spans(doc, chunks)


def test_long_text_is_cut_within_the_token_limit_with_overlap(embedder) -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(120)]
    doc = " ".join(sentences[:60]) + "\n\n" + " ".join(sentences[60:]) + "\n"
    chunks = chunk_section(Section(doc), embedder.count_tokens, max_tokens=100, overlap=20)
    assert len(chunks) >= 8
    for c in chunks:
        assert embedder.count_tokens(c.text) <= 100 + 4  # joins may add a token or two
    _check_spans(doc, chunks)
    # consecutive chunks of the same paragraph share text (overlap)
    shared = sum(1 for a, b in itertools.pairwise(chunks) if b.char_start < a.char_end)
    assert shared >= len(chunks) // 2
    # everything is covered
    covered = set()
    for c in chunks:
        covered.update(range(c.char_start, c.char_end))
    assert all(i in covered for i, ch in enumerate(doc) if not ch.isspace())


def test_one_enormous_word_is_cut_by_characters(embedder) -> None:
    doc = "start " + "x9" * 3000 + " end\n"
    chunks = chunk_section(Section(doc), embedder.count_tokens, max_tokens=64, overlap=0)
    assert len(chunks) > 3
    for c in chunks:
        assert embedder.count_tokens(c.text) <= 64 + 2
    _check_spans(doc, chunks)


def test_section_offsets_pages_and_carried_heading(embedder) -> None:
    s = Section("more text under the heading\n", char_offset=1000, line_offset=41, page=3, heading="Carried")
    (c,) = chunk_section(s, embedder.count_tokens)
    assert (c.char_start, c.line_start, c.page, c.heading) == (1000, 41, 3, "Carried")
    assert last_heading(Section("# A\n\ntext\n\n## B\n\nmore\n")) == "B"


def test_bad_sizes_are_refused(embedder) -> None:
    with pytest.raises(ValueError):
        chunk_section(Section("text"), embedder.count_tokens, max_tokens=2)
