"""Walking a tree to index: file names that are not UTF-8, symlinks that leave the tree, symlink loops."""

from __future__ import annotations

import json
import os
from pathlib import Path

from assistant.knowledge.ingest import IngestOptions, Ingestor
from assistant.knowledge.paths import key_path, path_key
from assistant.knowledge.search import Searcher

from .conftest import assert_consistent


def _bad_name(directory: Path, text: bytes) -> bytes:
    """A real file whose name has the byte 0xff (not UTF-8); returns its path as bytes."""
    path = os.path.join(os.fsencode(directory), b"caf\xff notes.txt")
    with open(path, "wb") as fh:
        fh.write(text)
    return path


def test_path_keys_round_trip() -> None:
    for raw in (b"/docs/caf\xff.txt", b"/d/%41 #1?.txt", "/docs/café.txt".encode()):
        key = path_key(os.fsdecode(raw))
        key.encode("utf-8")  # storable as SQLite text
        assert os.fsencode(key_path(key)) == raw
    assert path_key("/docs/café.txt") == "/docs/café.txt"  # valid names are stored as before
    assert path_key(os.fsdecode(b"/docs/caf\xff.txt")) == "file:///docs/caf%FF.txt"


def test_a_file_name_that_is_not_utf8_is_indexed_searched_and_synced(store, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pump.txt").write_text("The pump needs oil every month.\n")
    bad = _bad_name(docs, b"The valves are checked every spring by the night shift.\n")

    report = Ingestor(store, embedder).add([docs])
    assert (report.added, report.failed, report.skipped) == (2, 0, 0), report.problems
    json.dumps(report.as_dict(), ensure_ascii=False).encode("utf-8")  # printable as it is
    (doc,) = [d for d in store.documents() if d.uri.startswith("file://")]
    assert os.fsencode(key_path(doc.uri)) == bad and doc.title == "caf\ufffd notes.txt"
    assert_consistent(store)

    (hit,) = Searcher(store, embedder).search("when are the valves checked", 1)
    assert hit.uri == doc.uri and "night shift" in hit.text

    again = Ingestor(store, embedder).sync()  # the stored name maps back to the same file
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 2)

    os.remove(bad)
    gone = Ingestor(store, embedder).sync()
    assert gone.removed == 1 and [Path(d.uri).name for d in store.documents()] == ["pump.txt"]
    assert_consistent(store)


def test_cli_indexes_lists_searches_and_removes_a_non_utf8_name(kb_home, tmp_path: Path, run_cli) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pump.txt").write_text("The pump needs oil every month.\n")
    bad = _bad_name(docs, b"The valves are checked every spring by the night shift.\n")

    r = run_cli("index", "add", str(docs), "--json", home=kb_home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 2
    r = run_cli("index", "list", home=kb_home)
    assert r.returncode == 0 and "file://" in r.stdout and "caf%FF%20notes.txt" in r.stdout, r.stderr
    r = run_cli("search", "when are the valves checked", "-k", "1", "--json", home=kb_home)
    assert r.returncode == 0 and json.loads(r.stdout)["results"][0]["uri"].endswith("caf%FF%20notes.txt")
    r = run_cli("index", "remove", os.fsdecode(bad), home=kb_home)
    assert r.returncode == 0 and "removed 1 document" in r.stdout, r.stderr


def test_symlinks_leaving_the_tree_are_not_followed_unless_asked(store, embedder, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "outside" / "more.txt").write_text("Outside notes about the boiler.\n")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.txt").write_text("The guide explains the pump.\n")
    (docs / "sub" / "leak").symlink_to(secret)  # a file outside
    (docs / "outdir").symlink_to(tmp_path / "outside")  # a directory outside
    (docs / "again.txt").symlink_to(docs / "guide.txt")  # inside: the same file, indexed once
    (docs / "sub" / "up").symlink_to(docs)  # a loop back to the top
    (docs / "ring1").symlink_to(docs / "ring2")  # a symlink cycle
    (docs / "ring2").symlink_to(docs / "ring1")

    report = Ingestor(store, embedder).add([docs])
    assert [Path(d.uri).name for d in store.documents()] == ["guide.txt"]
    problems = {Path(e.path).name: e for e in report.problems}
    assert problems["leak"].kind == "skipped" and "outside" in problems["leak"].message
    assert "--follow-symlinks" in problems["outdir"].message
    assert "symlink loop" in problems["up"].message and "symlink loop" in problems["ring1"].message
    assert report.added == 1 and report.failed == 0

    followed = Ingestor(store, embedder, IngestOptions(follow_symlinks=True)).add([docs])
    names = sorted(Path(d.uri).name for d in store.documents())
    assert names == ["guide.txt", "more.txt", "passwd"] and followed.added == 2
    assert_consistent(store)


def test_cli_follow_symlinks_flag(kb_home, tmp_path: Path, run_cli) -> None:
    (tmp_path / "outside.txt").write_text("Outside notes about the boiler.\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "inside.txt").write_text("Inside notes about the pump.\n")
    (docs / "link.txt").symlink_to(tmp_path / "outside.txt")
    r = run_cli("index", "add", str(docs), "--json", home=kb_home)
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["added"] == 1 and rep["skipped"] == 1, r.stderr
    r = run_cli("index", "sync", "--follow-symlinks", "--json", home=kb_home)
    assert r.returncode == 0 and json.loads(r.stdout)["added"] == 1, r.stderr
