"""The knowledge base's file under stress: a full disk, a damaged page, two creators at once,
a read-only medium, and removals that must stick (#12 items 11-14, 22, 23)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.mounts import readonly_view, tmpfs
from support.tty import run_with_tty_stderr

from assistant.errors import KnowledgeBaseError, StorageError
from assistant.home import Home
from assistant.knowledge.ingest import Ingestor
from assistant.knowledge.kb import KnowledgeBase
from assistant.knowledge.store import KnowledgeStore

from .conftest import ROOT, assert_consistent


def _many_docs(d: Path, n: int) -> Path:
    d.mkdir()
    for i in range(n):
        (d / f"note{i:03d}.txt").write_text(
            f"Note {i}. "
            + " ".join(f"The widget number {i} rotates log file {j} every week." for j in range(20))
        )
    return d


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


# -- item 11: a full disk ------------------------------------------------------------------


def test_a_full_database_is_one_line_and_keeps_what_was_committed(
    store, embedder, docs_dir, tmp_path
) -> None:
    Ingestor(store, embedder).add([docs_dir])
    before = len(store.documents())
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL at the next new page
    with pytest.raises(StorageError, match=r"^disk full writing the knowledge base .*kb\.db \(database or disk "
                                           r"is full\): free space and run the command again; what was committed "
                                           r"is kept$"):  # fmt: skip
        Ingestor(store, embedder).add([_many_docs(tmp_path / "more", 4)])
    assert len(store.documents()) >= before
    assert_consistent(store)


def test_index_add_on_a_full_disk(kb_home, tmp_path, run_cli) -> None:
    docs = _many_docs(tmp_path / "docs", 4)
    with tmpfs(tmp_path / "small", "400k") as small:  # the vector table alone takes 1.5 MB at the first write
        r = run_cli("index", "add", str(docs), "--kb", str(small / "kb.db"), home=kb_home, timeout=300)
        assert r.returncode == 2, r.stderr
        line = _one_line_error(r.stderr)
        assert "disk full writing the knowledge base" in line and "what was committed is kept" in line
        s = KnowledgeStore(small / "kb.db", readonly=True)
        assert_consistent(s)
        s.close()


def test_atomic_writer_on_a_full_disk(tmp_path) -> None:
    from assistant.io import atomic_write_bytes

    with tmpfs(tmp_path / "small", "64k") as small:
        dest = small / "out" / "model.gguf"
        with pytest.raises(StorageError, match=r"^disk full writing .*model\.gguf .*free space and run the "
                                               r"command again$"):  # fmt: skip
            atomic_write_bytes(dest, b"\0" * (1 << 20))
        assert sorted(p.name for p in dest.parent.iterdir()) == []  # no temp file, no partial model


# -- item 12: a damaged page ----------------------------------------------------------------


def _damage(path: Path, table: str) -> None:
    """Overwrite the b-tree page header of ``table``'s root page with garbage."""
    s = KnowledgeStore(path, readonly=True)
    page_size = s.conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = s.conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    s.close()
    assert not Path(f"{path}-wal").exists()  # all in the main file
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xa5" * 64)


def test_a_damaged_knowledge_base_is_detected_and_the_way_out_said(kb_home, docs_dir, run_cli) -> None:
    assert run_cli("index", "add", str(docs_dir), home=kb_home).returncode == 0
    kb = kb_home / "knowledge" / "default.db"
    _damage(kb, "chunks")
    r = run_cli("index", "add", str(docs_dir), home=kb_home)
    assert r.returncode == 2
    line = _one_line_error(r.stderr)
    assert (
        f"knowledge base {kb} is damaged" in line and "into a new knowledge base, or restore a copy" in line
    )
    r = run_cli("search", "how long are logs kept", home=kb_home)  # the search reads the damaged page
    assert r.returncode == 2 and f"knowledge base {kb} is damaged" in _one_line_error(r.stderr)


# -- item 13: two first runs at once ----------------------------------------------------------

_CREATE = """
import sys, time
from pathlib import Path
from assistant.knowledge.store import KnowledgeStore
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.001)
KnowledgeStore(Path(sys.argv[1])).close()
"""


def test_two_processes_creating_a_knowledge_base_at_once(tmp_path) -> None:
    for round_ in range(4):
        kb = tmp_path / f"new{round_}" / "kb.db"
        go = tmp_path / f"go{round_}"
        ready = [tmp_path / f"ready{round_}-{i}" for i in range(3)]
        procs = [
            subprocess.Popen([sys.executable, "-c", _CREATE, str(kb), str(r), str(go)], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
            for r in ready
        ]  # fmt: skip
        try:
            while not all(r.exists() for r in ready):
                assert all(p.poll() is None for p in procs), [p.communicate()[1] for p in procs]
            go.touch()  # all three waiting: start together
            results = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        assert all(rc == 0 for rc, _ in results), results
        s = KnowledgeStore(kb, readonly=True)
        assert [r[0] for r in s.conn.execute("SELECT version FROM _migrations ORDER BY version")] == [1, 2]
        s.close()


# -- item 14: a read-only medium --------------------------------------------------------------


def test_a_read_only_home_can_be_searched_not_changed(kb_home, docs_dir, tmp_path, run_cli) -> None:
    assert run_cli("index", "add", str(docs_dir), home=kb_home).returncode == 0
    with readonly_view(kb_home, tmp_path / "ro") as ro:
        kb = ro / "knowledge" / "default.db"
        with KnowledgeBase.open(Home(ro)) as base:
            hits = base.searcher.search_documents("how long are logs kept", 2)
            assert hits and hits[0].uri.endswith("guide.md")
        r = run_cli("search", "how long are logs kept", "--json", home=ro)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["results"][0]["uri"].endswith("guide.md")
        r = run_cli("ask", "-n", "4", "-t", "0", "How long are logs kept?", home=ro)
        assert r.returncode == 0 and "guide.md" in r.stdout, r.stderr
        r = run_cli("index", "stats", "--json", home=ro)
        assert r.returncode == 0 and json.loads(r.stdout)["documents"] == 4, r.stderr
        for args in (["index", "add", str(docs_dir)], ["index", "sync"], ["index", "remove", str(docs_dir)]):
            r = run_cli(*args, home=ro)
            assert r.returncode == 2, (args, r.stderr)
            assert f"knowledge base {kb} is read-only" in _one_line_error(r.stderr), args
        with pytest.raises(KnowledgeBaseError, match="cannot create the knowledge base .*not writable"):
            KnowledgeStore(ro / "knowledge" / "new.db")


# -- item 22: a removal that sticks ----------------------------------------------------------


def test_a_removed_file_stays_out_of_sync_until_added_again(store, embedder, docs_dir) -> None:
    Ingestor(store, embedder).add([docs_dir])
    facts = str(docs_dir / "facts.txt")
    result = store.remove([facts])
    assert result.removed == [facts] and result.excluded == [facts] and store.exclusions() == [facts]
    r = Ingestor(store, embedder).sync()
    assert r.added == 0 and store.document(facts) is None
    Ingestor(store, embedder).add([docs_dir])  # adding the folder again keeps it out too
    assert store.document(facts) is None
    r = Ingestor(store, embedder).add([facts])  # naming the file brings it back
    assert r.added == 1 and store.document(facts) is not None and store.exclusions() == []
    Ingestor(store, embedder).sync()
    assert store.document(facts) is not None
    # removing the tracked folder itself stops tracking it: no exclusion needed, sync adds nothing
    result = store.remove([str(docs_dir)])
    assert len(result.removed) == 4 and result.excluded == [] and store.roots() == []
    assert Ingestor(store, embedder).sync().added == 0


def test_an_older_knowledge_base_gets_the_exclusions_table(tmp_path) -> None:
    from assistant.db import connect, migrate
    from assistant.knowledge.store import MIGRATIONS

    path = tmp_path / "v1.db"
    conn = connect(path)
    migrate(conn, MIGRATIONS[:1])
    conn.close()
    s = KnowledgeStore(path)
    assert s.exclusions() == [] and s.conn.execute("SELECT max(version) FROM _migrations").fetchone()[0] == 2
    s.close()


def test_index_remove_list_excluded_and_sync(kb_home, docs_dir, run_cli) -> None:
    assert run_cli("index", "add", str(docs_dir), home=kb_home).returncode == 0
    facts = str(docs_dir / "facts.txt")
    r = run_cli("index", "remove", facts, home=kb_home)
    assert (
        r.returncode == 0 and "removed 1 document" in r.stdout and f"excluded from sync: {facts}" in r.stderr
    )
    r = run_cli("index", "list", "--excluded", home=kb_home)
    assert r.stdout.splitlines() == [facts]
    r = run_cli("index", "sync", "--json", home=kb_home)
    assert r.returncode == 0 and json.loads(r.stdout)["added"] == 0
    r = run_cli("index", "list", "--json", home=kb_home)
    assert facts not in r.stdout and len(r.stdout.splitlines()) == 3


# -- item 23: sync shows progress, totals say what they count --------------------------------


def _run_at_a_tty(args: list[str], home: Path) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (what a user sees), stdout captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "HF_"))}
    env.update(ASSISTANT_HOME=str(home), HF_HUB_OFFLINE="1")
    r = run_with_tty_stderr([sys.executable, "-m", "assistant", *args], env=env, cwd=ROOT, timeout=60)
    return r.returncode, r.screen + r.stdout


def test_sync_shows_progress_and_totals_say_what_they_count(kb_home, docs_dir, run_cli) -> None:
    assert run_cli("index", "add", str(docs_dir), home=kb_home).returncode == 0
    (docs_dir / "new.md").write_text("# New\n\nA new note about the widget's warranty: two years.\n")
    rc, screen = _run_at_a_tty(["index", "sync"], kb_home)
    assert rc == 0, screen
    assert "Syncing" in screen  # the progress bar
    assert "files: 1 added, 4 unchanged;" in screen
    assert "the knowledge base now holds 5 documents" in screen
    r = run_cli("index", "add", str(docs_dir), "--json", home=kb_home)
    rep = json.loads(r.stdout)
    assert rep["unchanged"] == 5 and rep["documents"] == 0 and rep["kb_totals"]["documents"] == 5
