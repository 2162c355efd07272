"""gzip-compressed documents and man pages (roff): read transparently, rendered to text, bombs refused."""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import pytest

from assistant.knowledge.extract import (
    ExtractError,
    decompressed_size,
    extract_html,
    extract_man,
    extract_text_file,
    kind_of,
    sniff_kind,
)
from assistant.knowledge.ingest import IngestOptions, Ingestor
from assistant.knowledge.roff import man_to_text
from assistant.knowledge.search import Searcher

from .conftest import assert_consistent

MAN_PAGE = r""".\" A test page, written the way man pages are.
.TH WIDGETD 8 "2024-01-01" "widget 1.0" "System Manager's Manual"
.SH NAME
widgetd \- the widget daemon
.SH SYNOPSIS
.B widgetd
[\fB\-p\fR \fIport\fR]
.SH DESCRIPTION
.B widgetd
serves widgets over the network.
It rotates its logs every
.I seven
days\(emno more.
.\" a comment in the middle
.PP
Its spool lives in \fI/var/spool/widget\fP.
.SS Options
.TP
.BR \-p ", " \-\-port
Listen on
.IR port .
.TP
.B \-q
Be quiet.
.IP \(bu 2
First bullet.
.SH EXAMPLES
.nf
widgetd \-p 8080
widgetd \-q
.fi
.SH "SEE ALSO"
.BR widget (1),
.BR widgetctl (8)
"""


def _gz(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as fh:
        fh.write(data)
    return path


def test_a_man_page_renders_to_readable_text() -> None:
    title, text, redirect = man_to_text(MAN_PAGE)
    assert title == "WIDGETD(8) - the widget daemon" and redirect == ""
    assert text.startswith("# NAME\n\nwidgetd - the widget daemon\n\n# SYNOPSIS\n\nwidgetd [-p port]\n")
    assert (
        "widgetd serves widgets over the network. It rotates its logs every seven days\u2014no more." in text
    )
    assert "Its spool lives in /var/spool/widget." in text
    assert "## Options\n\n-p, --port\nListen on port.\n\n-q\nBe quiet.\n\n\u2022 First bullet." in text
    assert (
        "# EXAMPLES\n\n    widgetd -p 8080\n    widgetd -q\n\n# SEE ALSO\n\nwidget(1), widgetctl(8)\n" in text
    )
    assert "comment" not in text and "\\f" not in text and "\\-" not in text and ".TH" not in text


def test_a_man_page_that_only_sources_another_is_skipped(tmp_path: Path) -> None:
    page = _gz(tmp_path / "widgetctl.8.gz", b".so man8/widgetd.8\n")
    assert sniff_kind(page, kind_of(page)) == "man"
    with pytest.raises(ExtractError, match=r"only points to another manual page \(man8/widgetd.8\)"):
        extract_man(page, 1 << 20)


def test_compressed_documents_are_read_by_the_kind_of_their_inner_name(tmp_path: Path) -> None:
    readme = _gz(tmp_path / "README.md.gz", b"# Widget\n\nThe widget needs oil.\n")
    changelog = _gz(tmp_path / "changelog.gz", b"widget (1.2) stable; urgency=low\n\n  * Fix the pump.\n")
    page = _gz(tmp_path / "index.html.gz", b"<title>Tea</title><h1>Green</h1><p>Brew at 80 degrees.</p>")
    man = _gz(tmp_path / "widgetd.8.gz", MAN_PAGE.encode())
    plain_man = tmp_path / "widgetd.8"
    plain_man.write_text(MAN_PAGE)
    no_name = tmp_path / "widgetd-manual"  # no man-like name: known by its .TH
    no_name.write_text(MAN_PAGE)
    rotated_log = _gz(tmp_path / "syslog.2.gz", b"Nov 30 07:00:01 host cron[1]: job done\n")

    assert (kind_of(readme), kind_of(changelog), kind_of(page)) == ("md", "txt", "html")
    ex = extract_text_file(readme, "md")
    assert ex.title == "Widget" and [s.text for s in ex.sections] == ["# Widget\n\nThe widget needs oil.\n"]
    assert "Fix the pump." in next(extract_text_file(changelog, "txt").sections).text
    html = extract_html(page, 1 << 20)
    assert html.title == "Tea" and "# Green" in next(html.sections).text
    for p in (man, plain_man, no_name):
        assert sniff_kind(p, kind_of(p)) == "man", p
        m = extract_man(p, 1 << 20)
        assert m.title == "WIDGETD(8) - the widget daemon" and "# DESCRIPTION" in next(m.sections).text
    assert sniff_kind(rotated_log, kind_of(rotated_log)) == "txt"  # a .2 that is not roff stays text


def test_a_gzip_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.txt.gz"
    block = b"\0" * (1 << 20)
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        for _ in range(80):  # 80 MB of zeros in ~80 KB
            fh.write(block)
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(ExtractError, match="decompresses to more than 64 MB"):
        decompressed_size(bomb, 64 << 20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / 1e6:.0f} MB"


def test_ingest_indexes_compressed_docs_and_man_pages(store, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "doc"
    (docs / "widget").mkdir(parents=True)
    _gz(docs / "widget" / "README.md.gz", b"# Widget\n\nThe widget pump needs oil every month.\n")
    _gz(docs / "widget" / "changelog.Debian.gz", b"widget (1.2) stable\n\n  * Fixed the valve leak.\n")
    _gz(docs / "widget" / "widgetd.8.gz", MAN_PAGE.encode())
    _gz(docs / "widget" / "big.txt.gz", b"many words about nothing " * 100_000)  # 2.5 MB of text
    notes = b"".join(b"line %d of the notes\n" % i for i in range(2000))
    (docs / "widget" / "cut.txt.gz").write_bytes(gzip.compress(notes)[:200])  # truncated
    _gz(docs / "widget" / "empty.txt.gz", b"")
    (docs / "widget" / "archive.tar.gz").write_bytes(gzip.compress(os.urandom(2000) + b"\0" * 600))
    (docs / "widget" / "manual.pdf.gz").write_bytes(gzip.compress(b"%PDF-1.4\n"))

    report = Ingestor(store, embedder, IngestOptions(max_file_bytes=1 << 20)).add([docs])
    kinds = {Path(d.uri).name: d.kind for d in store.documents()}
    assert kinds == {"README.md.gz": "md", "changelog.Debian.gz": "txt", "widgetd.8.gz": "man"}
    problems = {Path(e.path).name: e.message for e in report.problems}
    assert problems["big.txt.gz"].startswith("decompresses to more than 1 MB")
    assert problems["cut.txt.gz"].startswith("is not a valid gzip file")
    assert problems["empty.txt.gz"] == "is empty"
    assert problems["archive.tar.gz"].startswith("looks like a binary file")
    assert problems["manual.pdf.gz"].startswith("is a compressed PDF file")
    assert_consistent(store)

    s = Searcher(store, embedder)
    (hit,) = s.search("how often are the widgetd logs rotated", 1)
    assert hit.title == "WIDGETD(8) - the widget daemon" and "seven days" in hit.text
    assert hit.line_start is None  # rendered text: its lines are not the file's
    (hit,) = s.search("valve leak fixed", 1, mode="bm25")
    assert Path(hit.uri).name == "changelog.Debian.gz"

    again = Ingestor(store, embedder, IngestOptions(max_file_bytes=1 << 20)).add([docs])
    assert again.unchanged == 3 and again.added == 0
