"""SQLite with sqlite-vec loaded, WAL, and recorded migrations."""

from __future__ import annotations

import struct
import threading

import pytest

from assistant.db import Migration, connect, error_kind, migrate, open_db, writable
from assistant.errors import StorageError


def vec(*xs: float) -> bytes:
    return struct.pack(f"{len(xs)}f", *xs)


def test_vec0_table_works(tmp_path):
    conn = connect(tmp_path / "kb.db")
    (version,) = conn.execute("select vec_version()").fetchone()
    assert version.startswith("v")
    conn.execute(
        "create virtual table v using vec0(id integer primary key, e float[3] distance_metric=cosine)"
    )
    rows = [(1, vec(1, 0, 0)), (2, vec(0, 1, 0)), (3, vec(0.9, 0.1, 0))]
    conn.executemany("insert into v(id, e) values (?, ?)", rows)
    conn.commit()
    got = conn.execute(
        "select id, distance from v where e match ? and k = 2 order by distance", (vec(1, 0, 0),)
    ).fetchall()
    assert [r[0] for r in got] == [1, 3]
    assert got[0][1] == pytest.approx(0.0, abs=1e-6)


def test_wal_and_sqlite_utils(tmp_path):
    db = open_db(tmp_path / "x.db")
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    db["docs"].insert({"id": 1, "title": "hello"}, pk="id")
    db["docs"].enable_fts(["title"])
    assert db.execute("select vec_version()").fetchone()[0]
    assert [r["id"] for r in db["docs"].search("hello")] == [1]


def test_reader_not_blocked_by_writer(tmp_path):
    path = tmp_path / "w.db"
    writer = connect(path, vec=False)
    writer.execute("create table t(x)")
    writer.execute("insert into t values (1)")
    writer.commit()
    writer.execute("begin immediate")
    writer.execute("insert into t values (2)")  # uncommitted write in progress
    reader = connect(path, vec=False)
    result = {}

    def read():
        result["rows"] = reader.execute("select count(*) from t").fetchone()[0]

    t = threading.Thread(target=read)
    t.start()
    t.join(timeout=2)
    assert result.get("rows") == 1  # sees the committed state at once
    writer.rollback()


def test_migrations_recorded_and_idempotent(tmp_path):
    conn = connect(tmp_path / "m.db", vec=False)
    calls = []

    def m1(c):
        calls.append(1)
        c.execute("create table a(x)")

    def m2(c):
        calls.append(2)
        c.execute("alter table a add column y")

    migrations = [Migration(1, "create a", m1), Migration(2, "add y", m2)]
    assert migrate(conn, migrations) == 2
    assert migrate(conn, migrations) == 2
    assert calls == [1, 2]
    rows = conn.execute("select version, name from _migrations order by version").fetchall()
    assert rows == [(1, "create a"), (2, "add y")]


def test_failed_migration_rolls_back(tmp_path):
    conn = connect(tmp_path / "f.db", vec=False)

    def bad(c):
        c.execute("create table b(x)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        migrate(conn, [Migration(1, "bad", bad)])
    assert conn.execute("select count(*) from sqlite_master where name='b'").fetchone()[0] == 0
    assert conn.execute("select count(*) from _migrations").fetchone()[0] == 0


def test_newer_schema_is_refused(tmp_path):
    conn = connect(tmp_path / "n.db", vec=False)
    migrate(conn, [Migration(1, "one", lambda c: None), Migration(5, "five", lambda c: None)])
    with pytest.raises(StorageError, match="schema version 5, newer than this program knows"):
        migrate(conn, [Migration(1, "one", lambda c: None)])


def test_not_a_database(tmp_path):
    f = tmp_path / "junk.db"
    f.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="cannot open database"):
        connect(f)


def test_a_full_database_is_reported_not_a_failed_rollback(tmp_path):
    """#12 item 11: SQLite rolls back by itself on SQLITE_FULL; our ROLLBACK must not replace the error."""
    conn = connect(tmp_path / "full.db", vec=False)
    conn.execute("PRAGMA max_page_count = 8")  # a real SQLITE_FULL once the file needs a 9th page

    def fill(c):
        c.execute("create table big(x)")
        for _ in range(100):
            c.execute("insert into big values (?)", ("x" * 1000,))

    with pytest.raises(Exception, match="database or disk is full") as info:
        migrate(conn, [Migration(1, "fill", fill)])
    assert error_kind(info.value) == "full"
    assert conn.execute("select count(*) from _migrations").fetchone()[0] == 0


def test_two_connections_creating_a_database_at_once(tmp_path):
    """#12 item 13: both see no schema, both migrate; the second must find it done, not fail."""
    migrations = [
        Migration(1, "tables", lambda c: [c.execute(f"create table t{i}(x)") for i in range(20)]),
        Migration(2, "more", lambda c: c.execute("create table u(x)")),
    ]
    for round_ in range(8):
        path = tmp_path / f"race{round_}.db"
        barrier = threading.Barrier(3)
        errors: list[BaseException] = []

        def create() -> None:
            conn = connect(path, vec=False)  # noqa: B023
            try:
                barrier.wait()  # noqa: B023
                migrate(conn, migrations)
            except BaseException as exc:
                errors.append(exc)  # noqa: B023
            finally:
                conn.close()

        threads = [threading.Thread(target=create) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        conn = connect(path, vec=False)
        assert [r[0] for r in conn.execute("select version from _migrations order by version")] == [1, 2]
        conn.close()


def _wal_db(path):
    conn = connect(path, vec=False)
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    conn.commit()
    return conn


def test_readonly_open_on_a_readonly_directory(tmp_path):
    """#12 item 14: a database on a read-only mount opens for reading, with or without WAL files."""
    from support.mounts import readonly_view

    src = tmp_path / "src"
    src.mkdir()
    _wal_db(src / "a.db").close()  # the last connection removes -wal and -shm
    assert not (src / "a.db-wal").exists()
    with readonly_view(src, tmp_path / "ro") as ro:
        conn = connect(ro / "a.db", vec=False, readonly=True)
        assert conn.execute("select count(*) from t").fetchone()[0] == 1
        conn.close()
        assert writable(ro / "a.db") == "the file is not writable"
        with pytest.raises(StorageError, match="cannot open database .* for writing"):
            connect(ro / "a.db", vec=False)
    writer = _wal_db(src / "b.db")  # open: its -wal and -shm exist, the data is in the WAL
    writer.execute("insert into t values (2)")
    writer.commit()
    try:
        with readonly_view(src, tmp_path / "ro2") as ro:
            conn = connect(ro / "b.db", vec=False, readonly=True)
            assert conn.execute("select count(*) from t").fetchone()[0] == 2
            conn.close()
    finally:
        writer.close()


def test_readonly_open_with_unmerged_wal_says_so(tmp_path):
    """A copy of a database and its -wal (no -shm) on a read-only mount: immutable would miss the WAL."""
    import shutil

    from support.mounts import readonly_view

    src, copy = tmp_path / "src", tmp_path / "copy"
    src.mkdir()
    copy.mkdir()
    writer = _wal_db(src / "c.db")
    try:
        shutil.copy(src / "c.db", copy / "c.db")
        shutil.copy(src / "c.db-wal", copy / "c.db-wal")
    finally:
        writer.close()
    unmerged = "write-ahead log c.db-wal holds changes not yet in the file"
    with readonly_view(copy, tmp_path / "ro") as ro, pytest.raises(StorageError, match=unmerged):
        connect(ro / "c.db", vec=False, readonly=True)


def test_readonly_open_quotes_the_path(tmp_path):
    d = tmp_path / "a?b#c%d"
    d.mkdir()
    _wal_db(d / "x.db").close()
    conn = connect(d / "x.db", vec=False, readonly=True)
    assert conn.execute("select count(*) from t").fetchone()[0] == 1
    conn.close()
