"""SQLite connections with sqlite-vec loaded, plus recorded schema migrations.

The stock Python here cannot load SQLite extensions; ``pysqlite3`` (from
``pysqlite3-binary``) can, and sqlite-utils picks it up by itself. We use the
same module sqlite-utils uses, so the two never disagree. Every database is
opened in WAL mode with a busy timeout, so a reader (the chat) is not blocked
by a writer (an ingest).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import StorageError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000


def sqlite_module() -> Any:
    """The sqlite3 module sqlite-utils uses (pysqlite3 when installed)."""
    from sqlite_utils.utils import sqlite3

    return sqlite3


def connect(path: str | Path, *, vec: bool = True, readonly: bool = False) -> Any:
    """Open a connection (WAL, busy timeout, foreign keys), with sqlite-vec if asked.

    ``readonly`` opens with ``mode=ro``; on a read-only directory, where SQLite
    cannot create the WAL's -shm file, it falls back to ``immutable=1`` when
    there is no WAL content it would miss.
    """
    sqlite3 = sqlite_module()
    target = str(path)
    try:
        if readonly:
            conn = _connect_readonly(sqlite3, target)
        else:
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(target, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly and target != ":memory:":
            _enable_wal(conn, sqlite3)
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        kind = error_kind(exc)
        if kind == "corrupt":
            raise StorageError(f"database {target} is damaged ({exc}); restore a copy") from exc
        if kind in ("readonly", "cantopen") and Path(target).exists():
            raise StorageError(f"cannot open database {target} for writing: {exc}") from exc
        raise StorageError(f"cannot open database {target}: {exc}; is it a SQLite file?") from exc
    if vec:
        load_vec(conn)
    return conn


def _enable_wal(conn: Any, sqlite3: Any) -> None:
    """Switch to WAL, waiting out a concurrent creator: SQLite answers "locked" at once here
    (the busy handler is not used for this switch) when two processes create one file together."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if error_kind(exc) != "busy" or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _connect_readonly(sqlite3: Any, target: str) -> Any:
    uri = "file:" + quote(target)
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if error_kind(exc) != "cantopen":
            raise
        wal = Path(f"{target}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StorageError(
                f"cannot open {target} read-only: its write-ahead log {wal.name} holds changes not yet in the "
                "file and the directory is read-only; open it once where it can be written, or copy it with "
                "its -wal and -shm files"
            ) from exc
    log.info("%s: read-only directory, opening it immutable", target)
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def writable(path: str | Path) -> str | None:
    """Why a database file cannot be written (None if it can): SQLite also writes next to it (WAL)."""
    p = Path(path)
    if p.exists() and not os.access(p, os.W_OK):
        return "the file is not writable"
    parent = p.parent if p.parent.exists() else next((d for d in p.parents if d.exists()), p.parent)
    if not os.access(parent, os.W_OK):
        return f"its directory {parent} is not writable"
    return None


# SQLite result codes (primary) by what they mean to the user
_KINDS = {
    "SQLITE_FULL": "full",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_NOTADB": "notadb",
    "SQLITE_READONLY": "readonly",
    "SQLITE_CANTOPEN": "cantopen",
    "SQLITE_BUSY": "busy",
    "SQLITE_LOCKED": "busy",
    "SQLITE_IOERR": "ioerr",
}
_MESSAGES = (
    ("database or disk is full", "full"),
    ("malformed", "corrupt"),
    ("file is not a database", "notadb"),
    ("readonly database", "readonly"),
    ("unable to open database", "cantopen"),
    ("locked", "busy"),
    ("busy", "busy"),
    ("disk i/o error", "ioerr"),
)


def error_kind(exc: BaseException) -> str | None:
    """full, corrupt, notadb, readonly, cantopen, busy, ioerr, or None: what a sqlite3 error means."""
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str):
        for prefix, kind in _KINDS.items():
            if name == prefix or name.startswith(prefix + "_"):
                return kind
    msg = str(exc).lower()
    return next((kind for text, kind in _MESSAGES if text in msg), None)


def rollback_quietly(conn: Any) -> None:
    """Roll back if a transaction is open; never raise (SQLite may have rolled back already,
    e.g. on a full disk, and a failed ROLLBACK must not hide the error that caused it)."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except Exception as exc:  # the original error is what the user needs to see
        log.warning("rollback failed: %s", exc)


def quick_check(conn: Any) -> str | None:
    """``PRAGMA quick_check``: None when the file is sound, else SQLite's first complaint."""
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    first = str(rows[0][0]) if rows else "no answer"
    return None if first == "ok" else first


def load_vec(conn: Any) -> None:
    """Load sqlite-vec into a connection, or say clearly why it cannot be."""
    import sqlite_vec

    if not hasattr(conn, "enable_load_extension"):
        raise StorageError(
            "this Python's sqlite3 cannot load extensions (needed for sqlite-vec); "
            "install pysqlite3-binary (Linux x86_64) or use a Python built with extension support"
        )
    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)


def open_db(path: str | Path, *, vec: bool = True) -> Any:
    """A sqlite_utils.Database over a connection from connect()."""
    import sqlite_utils

    return sqlite_utils.Database(connect(path, vec=vec))


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Any], None]  # receives the sqlite3 connection, inside a transaction


def migrate(conn: Any, migrations: Sequence[Migration], *, table: str = "_migrations") -> int:
    """Apply pending migrations in order, each in its own transaction; return the schema version.

    The applied versions are recorded in ``table``. A database newer than this
    code (a version we do not know) is refused instead of being damaged.
    """
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')))"
    )
    conn.commit()
    applied = {row[0] for row in conn.execute(f"SELECT version FROM {table}")}
    known = {m.version for m in migrations}
    unknown = sorted(applied - known)
    if unknown:
        raise StorageError(
            f"the database has schema version {max(unknown)}, newer than this program knows "
            f"({max(known, default=0)}); upgrade the assistant to open it"
        )
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version in applied:
            continue
        try:
            conn.execute("BEGIN IMMEDIATE")
            # another connection may have applied it since we looked: check again under the write lock
            if conn.execute(f"SELECT 1 FROM {table} WHERE version = ?", (m.version,)).fetchone() is None:
                log.info("applying migration %d (%s)", m.version, m.name)
                m.apply(conn)
                conn.execute(f"INSERT INTO {table} (version, name) VALUES (?, ?)", (m.version, m.name))
            conn.execute("COMMIT")
        except BaseException:
            rollback_quietly(conn)
            raise
    return max(known, default=0)
