"""The document behind a source, as the sources panel opens it (load_document: no app needed)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from assistant.knowledge.grounding import Source
from assistant.knowledge.paths import path_key
from assistant.tui.screens.source_view import load_document

CHUNK = "Logs are rotated every Sunday at 03:00."
TEXT = f"# Widget guide\n\nInstalling needs 2 GB.\n\n{CHUNK}\nThe retention period is 14 days.\n"


def _source(uri: str, text: str = CHUNK, **extra: object) -> Source:
    return Source.from_dict({"number": 1, "title": "guide", "uri": uri, "text": text, **extra})


def test_a_plain_file_shows_the_chunk_in_its_document(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(TEXT)
    text, span, note = load_document(_source(str(doc)))
    assert text == TEXT and note == ""
    assert span is not None and text[span[0] : span[1]] == CHUNK


def test_a_name_that_is_not_utf8_opens_from_its_stored_key(tmp_path: Path) -> None:
    doc = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xff.md"))
    doc.write_text(TEXT)
    key = path_key(doc)
    assert key.startswith("file://")  # what the knowledge base stores for such a name
    text, span, note = load_document(_source(key))
    assert text == TEXT and note == ""
    assert span is not None and text[span[0] : span[1]] == CHUNK


def test_a_gz_document_is_shown_decompressed(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md.gz"
    doc.write_bytes(gzip.compress(TEXT.encode()))
    text, span, note = load_document(_source(str(doc)))
    assert text == TEXT and "binary" not in note
    assert span is not None and text[span[0] : span[1]] == CHUNK


def test_a_man_page_shows_the_rendered_chunk_not_roff_at_wrong_lines(tmp_path: Path) -> None:
    page = tmp_path / "widget.1.gz"
    roff = '.\\" comment\n.TH WIDGET 1\n.SH NAME\nwidget \\- rotate logs\n.SH DESCRIPTION\n.B widget\nrotates logs.\n'
    page.write_bytes(gzip.compress(roff.encode()))
    rendered = "NAME\nwidget - rotate logs"
    text, span, note = load_document(_source(str(page), rendered, lines=[1, 2]))
    assert text == rendered and span == (0, len(rendered))
    assert "manual page" in note and "binary" not in note
