"""SQLite with sqlite-vec loaded, WAL, and recorded migrations."""

from __future__ import annotations

import struct
import threading

import pytest

from assistant.db import Migration, connect, migrate, open_db
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
