"""Ingest: every kind of input, bad input reported while the rest goes in, incremental, resumable."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from assistant.errors import StorageError
from assistant.knowledge.ingest import IngestOptions, Ingestor
from assistant.knowledge.search import Searcher
from assistant.knowledge.store import KnowledgeStore

from .conftest import assert_consistent
from .pdfgen import make_pdf


def _events(report) -> dict[str, str]:
    return {Path(e.path).name: f"{e.kind}: {e.message}" for e in report.problems}


def test_a_mixed_directory_with_bad_files(store, embedder, docs_dir: Path, tmp_path: Path) -> None:
    (docs_dir / "manual.pdf").write_bytes(
        make_pdf(["Chapter one: the pump needs oil monthly.", "Chapter two: filters."])
    )
    (docs_dir / "scan.pdf").write_bytes(make_pdf([None]))
    (docs_dir / "blob.bin").write_bytes(os.urandom(4096))
    (docs_dir / "empty.txt").write_bytes(b"")
    (docs_dir / "latin.txt").write_bytes(
        "Cr\xe8me br\xfbl\xe9e recipe: bake at 150 degrees.\n".encode("latin-1")
    )
    (docs_dir / "loop").symlink_to(docs_dir)
    (docs_dir / "dangling.md").symlink_to(tmp_path / "gone.md")
    (docs_dir / ".hidden.md").write_text("# hidden\n\nnot indexed by default\n")
    sub = docs_dir / "sub"
    sub.mkdir()
    (sub / "deep.rst").write_text("Deep\n====\n\nThe deep file talks about submarines.\n")

    ing = Ingestor(store, embedder)
    report = ing.add([docs_dir, tmp_path / "does-not-exist"])
    ev = _events(report)
    assert ev["does-not-exist"] == "failed: no such file or directory"
    assert ev["scan.pdf"].startswith("skipped: has no text layer")
    assert ev["blob.bin"].startswith("skipped: looks like a binary file")
    assert ev["empty.txt"] == "skipped: is empty"
    assert "symlink loop" in ev["loop"]
    assert ev["dangling.md"] == "failed: broken symlink"
    assert ev["latin.txt"].startswith("warning: not valid UTF-8")
    names = sorted(Path(d.uri).name for d in store.documents())
    assert names == ["deep.rst", "facts.txt", "guide.md", "latin.txt", "manual.pdf", "page.html", "tool.py"]
    assert report.added == 7 and report.failed == 2
    assert all(d.complete for d in store.documents())
    assert_consistent(store)

    s = Searcher(store, embedder)
    (hit,) = s.search("how often does the pump need oil", 1)
    assert hit.title and Path(hit.uri).name == "manual.pdf" and hit.page_start == 1 and hit.line_start is None
    (hit,) = s.search("green tea brewing temperature", 1)
    assert (
        Path(hit.uri).name == "page.html" and "do not index me" not in hit.text and hit.title == "Tea notes"
    )
    (hit,) = s.search("log retention period", 1, mode="bm25")
    assert hit.heading == "Rotating logs" and (hit.line_start, hit.line_end) == (7, 9)
    doc_text = (docs_dir / "guide.md").read_text()
    assert doc_text[hit.char_start : hit.char_end] == hit.text


def test_incremental_add_update_and_sync(store, embedder, docs_dir: Path) -> None:
    first = Ingestor(store, embedder).add([docs_dir])
    assert first.added == 4
    n_chunks = store.chunk_count()
    again = Ingestor(store, embedder).add([docs_dir])
    assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 4, 0)

    # same content, new mtime: hashed, still unchanged
    os.utime(docs_dir / "facts.txt", (time.time() + 10, time.time() + 10))
    assert Ingestor(store, embedder).add([docs_dir]).unchanged == 4

    (docs_dir / "facts.txt").write_text("The capital of Freedonia is Marxville now.\n")
    changed = Ingestor(store, embedder).add([docs_dir])
    assert (changed.updated, changed.unchanged) == (1, 3)
    (hit,) = Searcher(store, embedder).search("capital of Freedonia", 1)
    assert "Marxville" in hit.text
    assert store.chunk_count() == n_chunks
    assert_consistent(store)

    (docs_dir / "facts.txt").unlink()
    (docs_dir / "new.md").write_text("# New\n\nA new note about bicycles.\n")
    synced = Ingestor(store, embedder).sync()
    assert synced.removed == 1 and synced.added == 1
    assert sorted(Path(d.uri).name for d in store.documents()) == [
        "guide.md",
        "new.md",
        "page.html",
        "tool.py",
    ]
    assert_consistent(store)


def test_glob_and_collections(store, embedder, docs_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "cars.md").write_text("# Cars\n\nThe car needs an oil change every 10,000 km.\n")
    Ingestor(store, embedder, IngestOptions(collection="docs", glob="*.md")).add([docs_dir])
    Ingestor(store, embedder, IngestOptions(collection="garage")).add([other])
    assert {(Path(d.uri).name, d.collection) for d in store.documents()} == {
        ("guide.md", "docs"),
        ("cars.md", "garage"),
    }
    s = Searcher(store, embedder)
    for exact in (True, False):  # exact vec0 KNN and the binary-code path
        s.settings = s.settings.__class__(exact_limit=10**9 if exact else 0)
        hits = s.search("oil change", 5, collection="docs")
        assert hits and all(h.collection == "docs" for h in hits)
        hits = s.search("oil change", 5, mode="vector", collection="garage")
        assert [Path(h.uri).name for h in hits] == ["cars.md"]
        assert s.search("oil change", 5, collection="nope") == []


def test_jsonl_bulk_import_interrupted_then_resumed(store, embedder, tmp_path: Path, monkeypatch) -> None:
    import assistant.knowledge.ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "FLUSH_CHUNKS", 4)
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w") as fh:
        for i in range(30):
            fh.write(
                f'{{"_id": "d{i}", "title": "Doc {i}", "text": "Document {i} is about topic {i % 5}."}}\n'
            )
    flushes = {"n": 0}

    def interrupt(_n: int) -> None:
        flushes["n"] += 1
        if flushes["n"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Ingestor(store, embedder, on_progress=interrupt).add([corpus])
    partial = assert_consistent(store)
    assert 0 < len(store.documents()) < 30 and partial["chunks"] == len(store.documents())

    before = embedder.tokens_embedded
    report = Ingestor(store, embedder).add([corpus])
    assert len(store.documents()) == 30 and all(d.complete for d in store.documents())
    assert report.chunks == 30 - partial["chunks"]  # only the missing records were embedded
    assert embedder.tokens_embedded > before
    assert_consistent(store)
    # doc_id is the JSONL id
    hits = Searcher(store, embedder).search_documents("Document 7 topic 2", 3, mode="bm25")
    assert hits[0].doc_key == "d7"
    assert Ingestor(store, embedder).add([corpus]).unchanged == 1

    # a record removed from the file is removed from the index; a changed one updated
    lines = corpus.read_text().splitlines()
    lines[0] = '{"_id": "d0", "title": "Doc 0", "text": "Document zero is now about volcanoes."}'
    corpus.write_text("\n".join(lines[:-1]) + "\n")
    Ingestor(store, embedder).add([corpus])
    assert len(store.documents()) == 29
    assert Searcher(store, embedder).search_documents("volcanoes", 1, mode="bm25")[0].doc_key == "d0"
    assert_consistent(store)


def test_large_file_interrupted_resumes_at_its_next_section(
    store, embedder, tmp_path: Path, monkeypatch
) -> None:
    import assistant.knowledge.extract as extract_mod
    import assistant.knowledge.ingest as ingest_mod

    monkeypatch.setattr(extract_mod, "SECTION_CHARS", 2000)
    monkeypatch.setattr(ingest_mod, "FLUSH_CHUNKS", 2)
    log = tmp_path / "service.log"
    log.write_text(
        "".join(f"line {i}: request {i} served in {i % 97} ms by worker {i % 5}\n" for i in range(300))
    )
    calls = {"n": 0}

    def interrupt(_n: int) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Ingestor(store, embedder, on_progress=interrupt).add([log])
    (doc,) = store.documents()
    assert not doc.complete and doc.sections_done >= 1
    assert_consistent(store)
    done_before = doc.n_chunks

    report = Ingestor(store, embedder).add([log])
    (doc,) = store.documents()
    assert doc.complete and report.chunks == doc.n_chunks - done_before

    fresh = KnowledgeStore(tmp_path / "fresh.db")
    Ingestor(fresh, embedder).add([log])
    texts = [r[0] for r in store.execute("SELECT text FROM chunks ORDER BY ordinal")]
    fresh_texts = [r[0] for r in fresh.execute("SELECT text FROM chunks ORDER BY ordinal")]
    fresh.close()
    assert texts == fresh_texts
    assert_consistent(store)


def test_a_locked_database_is_a_clear_error(store, embedder, docs_dir: Path, monkeypatch) -> None:
    import assistant.db as db

    Ingestor(store, embedder)  # records the model
    other = db.connect(store.path)
    other.isolation_level = None
    other.execute("BEGIN EXCLUSIVE")
    try:
        store.execute("PRAGMA busy_timeout = 200")
        with pytest.raises(StorageError, match="locked by another process"):
            Ingestor(store, embedder).add([docs_dir])
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_reader_is_not_blocked_by_a_writer(tmp_path: Path, embedder, docs_dir: Path) -> None:
    path = tmp_path / "kb.db"
    writer = KnowledgeStore(path)
    Ingestor(writer, embedder).add([docs_dir])
    writer.conn.execute("BEGIN IMMEDIATE")
    writer.conn.execute("DELETE FROM chunks_fts")  # an uncommitted write holding the lock
    try:
        reader = KnowledgeStore(path, readonly=True)
        reader.execute("PRAGMA busy_timeout = 0")  # a blocked reader would fail at once
        hits = Searcher(reader, embedder).search("log retention", 3)
        assert "14 days" in hits[0].text
        reader.close()
    finally:
        writer.conn.execute("ROLLBACK")
        writer.close()


@pytest.mark.slow
def test_a_directory_of_100k_files_is_walked_quickly(tmp_path: Path, store, embedder) -> None:
    root = tmp_path / "many"
    for d in range(100):
        sub = root / f"d{d:03d}"
        sub.mkdir(parents=True)
        for f in range(1000):
            fd = os.open(sub / f"f{f:04d}.txt", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"note %d %d\n" % (d, f))
            os.close(fd)
    ing = Ingestor(store, embedder)
    t0 = time.perf_counter()
    files, total = ing.plan([root])
    elapsed = time.perf_counter() - t0
    assert len(files) == 100_000 and total > 0
    assert elapsed < 30, f"walking 100k files took {elapsed:.1f} s"
    # and ingesting some of them works the same way (all of them: ~2 min on 2 cores)
    ing.ingest_files(files[:300])
    assert ing.report.added == 300
    assert_consistent(store)


def test_a_many_page_pdf_is_chunked_by_size_not_a_chunk_a_page(store, embedder, tmp_path: Path) -> None:
    pdf = tmp_path / "handbook.pdf"
    pdf.write_bytes(
        make_pdf(
            [f"Page {i}: the valve in room {i} is checked every {i % 9 + 2} weeks." for i in range(1, 301)]
        )
    )
    report = Ingestor(store, embedder).add([pdf])
    assert report.added == 1 and report.chunks <= 30, (
        report.chunks
    )  # was 300: one tiny chunk (and embedding) a page
    rows = store.execute("SELECT text, page_start, page_end FROM chunks ORDER BY ordinal").fetchall()
    assert rows[0][1] == 1 and rows[-1][2] == 300
    for text, start, end in rows:
        numbers = [int(w.rstrip(":")) for w in text.split("Page ")[1:] for w in w.split()[:1]]
        assert start == numbers[0] and end == numbers[-1] and start <= end
    (hit,) = Searcher(store, embedder).search("valve in room 217", 1, mode="bm25")
    assert hit.page_start <= 217 <= hit.page_end
    assert_consistent(store)
