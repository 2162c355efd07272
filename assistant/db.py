"""SQLite connections with sqlite-vec loaded, plus recorded schema migrations.

The stock Python here cannot load SQLite extensions; ``pysqlite3`` (from
``pysqlite3-binary``) can, and sqlite-utils picks it up by itself. We use the
same module sqlite-utils uses, so the two never disagree. Every database is
opened in WAL mode with a busy timeout, so a reader (the chat) is not blocked
by a writer (an ingest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StorageError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000


def sqlite_module() -> Any:
    """The sqlite3 module sqlite-utils uses (pysqlite3 when installed)."""
    from sqlite_utils.utils import sqlite3

    return sqlite3


def connect(path: str | Path, *, vec: bool = True, readonly: bool = False) -> Any:
    """Open a connection (WAL, busy timeout, foreign keys), with sqlite-vec if asked."""
    sqlite3 = sqlite_module()
    target = str(path)
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, check_same_thread=False)
        else:
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(target, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly and target != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot open database {target}: {exc}; is it a SQLite file?") from exc
    if vec:
        load_vec(conn)
    return conn


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
        log.info("applying migration %d (%s)", m.version, m.name)
        try:
            conn.execute("BEGIN IMMEDIATE")
            m.apply(conn)
            conn.execute(f"INSERT INTO {table} (version, name) VALUES (?, ?)", (m.version, m.name))
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
    return max(known, default=0)
