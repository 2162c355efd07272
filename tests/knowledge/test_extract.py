"""Text extraction: HTML visible text, PDF pages, JSONL records, encodings, large files in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from assistant.knowledge.chunk import chunk_section
from assistant.knowledge.extract import (
    ExtractError,
    extract_html,
    extract_pdf,
    extract_text_file,
    html_to_text,
    kind_of,
    looks_binary,
    read_jsonl,
    read_text_sections,
)

from .pdfgen import make_pdf


def test_html_keeps_visible_text_and_headings_only() -> None:
    title, text = html_to_text(
        "<html><head><title>Tea &amp; notes</title><style>p{}</style><script>secret()</script></head>"
        "<body><h2>Green tea</h2><p>Brew at <b>80</b>&nbsp;degrees.</p><noscript>no js</noscript>"
        "<ul><li>one</li><li>two</li></ul></body></html>"
    )
    assert title == "Tea & notes"
    assert "## Green tea" in text
    assert "Brew at 80\xa0degrees." in text
    assert "secret" not in text and "p{}" not in text and "no js" not in text
    assert "one\ntwo" in text


def test_pdf_pages_are_kept_and_image_pages_reported(tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(make_pdf(["Page one talks about tea.", None, "Page three talks about coffee."]))
    ex = extract_pdf(pdf)
    (section,) = list(ex.sections)  # short pages go in one section, each page's start kept
    assert [p for _, p in section.pages] == [1, 3] and section.page == 1
    second = section.pages[1][0]
    assert "tea" in section.text[:second] and section.text[second:].startswith(
        "Page three talks about coffee."
    )
    assert any("1 of 3 pages have no text layer" in w for w in ex.warnings)


def test_pdf_chunks_span_pages_and_know_them(tmp_path: Path, embedder) -> None:
    pages = [f"Page {i} says the pump in room {i} needs oil." for i in range(1, 41)]
    pdf = tmp_path / "manual.pdf"
    pdf.write_bytes(make_pdf(pages))
    chunks = [
        c for s in extract_pdf(pdf).sections for c in chunk_section(s, embedder.count_tokens, max_tokens=64)
    ]
    assert 4 <= len(chunks) <= 20  # packed across pages (with overlap): not one tiny chunk a page
    assert chunks[0].page == 1 and chunks[-1].page_end == 40
    for c in chunks:
        first, last = (int(n) for n in (c.text.split()[1], c.text.split("Page ")[-1].split()[0]))
        assert (c.page, c.page_end) == (first, last), c


def test_pdf_without_any_text_layer_is_a_clear_error(tmp_path: Path) -> None:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(make_pdf([None, None]))
    with pytest.raises(ExtractError, match="no text layer.*OCR"):
        extract_pdf(pdf)


def test_broken_pdf_is_a_clear_error(tmp_path: Path) -> None:
    pdf = tmp_path / "broken.pdf"
    pdf.write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    with pytest.raises(ExtractError):
        extract_pdf(pdf)


def test_non_utf8_text_is_decoded_with_replacement(tmp_path: Path) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes("Caf\xe9 cr\xe8me and more text\n".encode("latin-1"))
    ex = extract_text_file(f, "txt")
    (section,) = list(ex.sections)
    assert section.text == "Caf\ufffd cr\ufffdme and more text\n"
    assert any("replaced" in w for w in ex.warnings)


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    f = tmp_path / "u16.txt"
    f.write_bytes("héllo wörld\n".encode("utf-16"))
    assert not looks_binary(f.read_bytes())
    (section,) = list(extract_text_file(f, "txt").sections)
    assert section.text == "héllo wörld\n"


def test_binary_is_recognised(tmp_path: Path) -> None:
    f = tmp_path / "x.dat"
    f.write_bytes(bytes(range(256)) * 10)
    assert looks_binary(f.read_bytes())
    with pytest.raises(ExtractError, match="binary"):
        extract_text_file(f, "txt")
    assert (
        kind_of(Path("a.md")) == "md" and kind_of(Path("a.PY")) == "code" and kind_of(Path("a.xyz")) is None
    )


def test_html_with_no_visible_text(tmp_path: Path) -> None:
    f = tmp_path / "empty.html"
    f.write_text("<html><head><script>x()</script></head><body></body></html>")
    with pytest.raises(ExtractError, match="no visible text"):
        extract_html(f, 1 << 20)


def test_malformed_jsonl_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text(
        '{"_id": "a", "title": "A", "text": "alpha"}\n'
        "{not json\n"
        '["a list"]\n'
        '{"title": "no id", "text": "x"}\n'
        '{"id": "b", "text": "beta"}\n'
        '{"_id": "c", "title": "", "text": "  "}\n'
        "\n"
        '{"_id": "d", "text": 5}\n'
    )
    errors: list[str] = []
    recs = [r for r, _ in read_jsonl(f, errors)]
    assert [r.doc_id for r in recs] == ["a", "b"]
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3", "line 4", "line 6", "line 8"]


@pytest.mark.slow
def test_a_200_mb_log_streams_in_bounded_memory(tmp_path: Path) -> None:
    f = tmp_path / "big.log"
    line = b"2024-01-01T00:00:00 INFO service=api request handled in 12 ms status=200 path=/v1/items\n"
    block = line * (1 << 14)  # ~1.4 MB
    with open(f, "wb") as fh:
        for _ in range(200 * (1 << 20) // len(block) + 1):
            fh.write(block)
    size = f.stat().st_size
    assert size >= 200 * (1 << 20)
    tracemalloc.start()
    total = 0
    n = 0
    last_line = 1
    for s in read_text_sections(f, warnings=[]):
        assert s.line_offset == last_line
        last_line += s.text.count("\n")
        total += len(s.text)
        n += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == size and n > 150
    assert peak < 24 * (1 << 20), f"peak {peak / 1e6:.0f} MB"
