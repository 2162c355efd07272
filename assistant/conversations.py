"""Persisted conversations: SQLite in the model home, schema versioned by migrations.

Library code, no UI imports. One database (``Home.conversations_db``) holds
every chat: its title, system prompt and model, its messages (with a JSON
``meta`` per message: timings, sources, context notices) and a full-text index
over the messages. Every write is one transaction: a failure midway (disk full,
a bad value, a killed process) leaves the database as it was before the write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .db import Migration, connect, migrate
from .errors import StorageError, UsageError
from .home import Home
from .io import atomic_write_text

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
TITLE_MAX = 80
HIGHLIGHT_START, HIGHLIGHT_END = "\x02", "\x03"  # snippet markers around matched words


def _m1_conversations(conn: Any) -> None:
    conn.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            system_prompt TEXT,
            model TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            UNIQUE (conversation_id, seq)
        )"""
    )
    conn.execute("CREATE INDEX conversations_updated ON conversations (updated_at)")


def _m2_fts(conn: Any) -> None:
    conn.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    conn.execute(
        "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END"
    )
    conn.execute(
        "CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END"
    )
    conn.execute(
        "CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN "
        "INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content); "
        "INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END"
    )
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")


def _m3_settings(conn: Any) -> None:
    conn.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "conversations and messages", _m1_conversations),
    Migration(2, "full-text search over messages", _m2_fts),
    Migration(3, "settings", _m3_settings),
)



def parse_resume(value: str) -> int | str:
    """A chat to reopen (`chat -r`), in either chat: its number, or "last"."""
    if value == "last":
        return "last"
    if value.isdigit():
        return int(value)
    raise UsageError(f"-r/--resume takes a chat number or 'last', got {value!r}")

@dataclass(frozen=True)
class ConversationInfo:
    id: int
    title: str
    system_prompt: str | None
    model: str | None
    created_at: str
    updated_at: str
    n_messages: int = 0

    @property
    def display_title(self) -> str:
        return self.title or "Untitled chat"


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    seq: int
    role: str
    content: str
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""


@dataclass(frozen=True)
class SearchHit:
    conversation: ConversationInfo
    message_id: int | None  # None when only the title matched
    role: str | None
    snippet: str  # matched words between HIGHLIGHT_START and HIGHLIGHT_END


def utc_now() -> datetime:
    return datetime.now(UTC)


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def title_from(text: str) -> str:
    """A chat title from the first user message: its first non-empty line, shortened."""
    for line in text.splitlines():
        line = " ".join(line.split()).lstrip("#>*- ").strip()
        if line:
            return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1].rstrip() + "…"
    return ""


def fold(text: str) -> str:
    """Lower case without diacritics ("Café" -> "cafe"), as the full-text index compares."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fts_query(text: str) -> str:
    """Free text to a safe FTS5 query: every word must match, the last one as a prefix."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    if not words:
        return ""
    parts = [f'"{w}"' for w in words]
    parts[-1] += "*"
    return " ".join(parts)


class ConversationStore:
    """All chats of one model home. Thread-safe (one connection behind a lock)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._conn = connect(self.path, vec=False)
        except OSError as exc:
            raise StorageError(
                f"cannot open the conversations database {self.path}: {exc.strerror or exc}; "
                "check that its folder is a writable directory"
            ) from exc
        try:
            self.schema_version = migrate(self._conn, MIGRATIONS)
        except StorageError:
            self._conn.close()
            raise
        except Exception as exc:  # sqlite errors while migrating
            self._conn.close()
            raise StorageError(f"cannot prepare the conversations database {self.path}: {exc}") from exc
        self._conn.isolation_level = None  # explicit transactions only (see _tx)

    # -- plumbing -------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        """One write transaction: all of it lands, or none of it."""
        sqlite3 = _sqlite()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot write {self.path}: {exc}") from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"cannot write {self.path}: {exc}; nothing was changed") from exc
                raise

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        sqlite3 = _sqlite()
        with self._lock:
            try:
                return list(self._conn.execute(sql, args))
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read {self.path}: {exc}") from exc

    def _now(self) -> str:
        return _stamp(self._clock())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- conversations --------------------------------------------------------

    _INFO_SQL = (
        "SELECT c.id, c.title, c.system_prompt, c.model, c.created_at, c.updated_at, "
        "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) FROM conversations c"
    )

    def create(
        self, *, title: str = "", system_prompt: str | None = None, model: str | None = None
    ) -> ConversationInfo:
        now = self._now()
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, system_prompt, model, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (title.strip(), _clean(system_prompt), model, now, now),
            )
            cid = int(cur.lastrowid)
        return self.get(cid)

    def get(self, conversation_id: int) -> ConversationInfo:
        rows = self._read(self._INFO_SQL + " WHERE c.id = ?", (conversation_id,))
        if not rows:
            raise UsageError(f"no conversation with id {conversation_id}; `Ctrl+O` in the chat lists them")
        return ConversationInfo(*rows[0])

    def list_all(self, limit: int | None = None) -> list[ConversationInfo]:
        """Most recently updated first."""
        sql = self._INFO_SQL + " ORDER BY c.updated_at DESC, c.id DESC"
        args: tuple[Any, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            args = (limit,)
        return [ConversationInfo(*r) for r in self._read(sql, args)]

    def latest(self) -> ConversationInfo | None:
        found = self.list_all(limit=1)
        return found[0] if found else None

    def rename(self, conversation_id: int, title: str) -> ConversationInfo:
        title = " ".join(title.split())
        if not title:
            raise UsageError("a chat title cannot be empty")
        self._update(conversation_id, "title", title[:200])
        return self.get(conversation_id)

    def set_system_prompt(self, conversation_id: int, text: str | None) -> ConversationInfo:
        self._update(conversation_id, "system_prompt", _clean(text))
        return self.get(conversation_id)

    def set_model(self, conversation_id: int, model: str | None) -> None:
        self._update(conversation_id, "model", model)

    def _update(self, conversation_id: int, column: str, value: Any) -> None:
        assert column in ("title", "system_prompt", "model")
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE conversations SET {column} = ?, updated_at = ? WHERE id = ?",
                (value, self._now(), conversation_id),
            )
            if cur.rowcount == 0:
                raise UsageError(f"no conversation with id {conversation_id}")

    def delete(self, conversation_id: int) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            cur = conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            if cur.rowcount == 0:
                raise UsageError(f"no conversation with id {conversation_id}")

    # -- messages -------------------------------------------------------------

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        rows = self._read(
            "SELECT id, conversation_id, seq, role, content, meta, created_at FROM messages "
            "WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        )
        return [StoredMessage(r[0], r[1], r[2], r[3], r[4], _loads(r[5]), r[6]) for r in rows]

    def add_message(
        self, conversation_id: int, role: str, content: str, meta: dict[str, Any] | None = None
    ) -> StoredMessage:
        return self.add_messages(conversation_id, [(role, content, meta)])[0]

    def add_messages(
        self, conversation_id: int, items: Iterable[tuple[str, str, dict[str, Any] | None]]
    ) -> list[StoredMessage]:
        """Append messages in one transaction; the first user message titles an untitled chat."""
        now = self._now()
        ids: list[int] = []
        with self._tx() as conn:
            row = conn.execute("SELECT title FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise UsageError(f"no conversation with id {conversation_id}")
            title = row[0]
            (seq,) = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            for role, content, meta in items:
                if role not in ROLES:
                    raise UsageError(f"unknown message role {role!r}; expected one of {', '.join(ROLES)}")
                seq += 1
                cur = conn.execute(
                    "INSERT INTO messages (conversation_id, seq, role, content, meta, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (conversation_id, seq, role, content, json.dumps(meta or {}, ensure_ascii=False), now),
                )
                ids.append(int(cur.lastrowid))
                if not title and role == "user":
                    title = title_from(content)
                    if title:
                        conn.execute(
                            "UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id)
                        )
            conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        placeholders = ",".join("?" * len(ids))
        rows = self._read(
            "SELECT id, conversation_id, seq, role, content, meta, created_at FROM messages "
            f"WHERE id IN ({placeholders}) ORDER BY seq",
            ids,
        )
        return [StoredMessage(r[0], r[1], r[2], r[3], r[4], _loads(r[5]), r[6]) for r in rows]

    # -- search ---------------------------------------------------------------

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Chats whose title or messages contain every word (the last as a prefix); best first.

        One hit per conversation: title matches first, then message matches by rank.
        """
        query = fts_query(text)
        if not query:
            return []
        words = re.findall(r"\w+", fold(text), flags=re.UNICODE)
        hits: list[SearchHit] = []
        seen: set[int] = set()
        for info in self.list_all():
            low = fold(info.title)
            if info.title and all(w in low for w in words):
                hits.append(SearchHit(info, None, None, info.title))
                seen.add(info.id)
        rows = self._read(
            "SELECT m.id, m.conversation_id, m.role, "
            f"snippet(messages_fts, 0, '{HIGHLIGHT_START}', '{HIGHLIGHT_END}', '…', 12) "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            "WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?",
            (query, max(limit * 4, 50)),
        )
        for mid, cid, role, snippet in rows:
            if cid in seen:
                continue
            seen.add(cid)
            hits.append(SearchHit(self.get(cid), mid, role, " ".join(snippet.split())))
        return hits[:limit]

    # -- export ---------------------------------------------------------------

    def export_markdown(self, conversation_id: int) -> str:
        info = self.get(conversation_id)
        msgs = self.messages(conversation_id)
        return render_markdown(info, msgs)

    def export(self, conversation_id: int, dest: str | Path) -> Path:
        """Write the chat as Markdown to dest (atomically); return the path written."""
        path = Path(dest).expanduser()
        if path.is_dir():
            path = path / default_export_name(self.get(conversation_id))
        atomic_write_text(path, self.export_markdown(conversation_id))
        return path

    # -- settings -------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM settings WHERE key = ?", (key,))
        if not rows:
            return default
        try:
            return json.loads(rows[0][0])
        except ValueError:
            return default

    def set_setting(self, key: str, value: Any) -> None:
        data = json.dumps(value)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, data),
            )

    # -- checks ---------------------------------------------------------------

    def check(self) -> list[str]:
        """Problems found by SQLite's integrity checks (empty when all is well)."""
        problems = [r[0] for r in self._read("PRAGMA integrity_check") if r[0] != "ok"]
        try:
            self._read("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
        except StorageError as exc:
            problems.append(f"full-text index: {exc}")
        return problems


def _sqlite() -> Any:
    from .db import sqlite_module

    return sqlite_module()


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


def _loads(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def default_export_name(info: ConversationInfo) -> str:
    slug = re.sub(r"[^\w]+", "-", info.display_title.lower(), flags=re.UNICODE).strip("-")[:48] or "chat"
    return f"chat-{info.id}-{slug}.md"


def source_line(src: dict[str, Any]) -> str:
    """One numbered source as a line of Markdown: [n] title — path, location.

    Reads knowledge.grounding.Source.as_dict (number, uri) and the meta stored before it (n, path).
    """
    where = src.get("uri") or src.get("path") or ""
    loc = src.get("location") or ""
    bits = [b for b in (where, loc) if b]
    tail = f" — {', '.join(bits)}" if bits else ""
    return f"[{src.get('number', src.get('n', '?'))}] {src.get('title') or where or 'source'}{tail}"


def render_markdown(info: ConversationInfo, msgs: Sequence[StoredMessage]) -> str:
    """A conversation as a Markdown document (what `export` writes)."""
    out = [f"# {info.display_title}", ""]
    facts = [f"created {info.created_at[:16].replace('T', ' ')} UTC", f"{len(msgs)} messages"]
    if info.model:
        facts.insert(0, f"model {info.model}")
    out += [f"*{' · '.join(facts)}*", ""]
    if info.system_prompt:
        out += ["**System prompt**", "", *(f"> {line}" for line in info.system_prompt.splitlines()), ""]
    for m in msgs:
        who = {"user": "You", "assistant": "Assistant", "system": "System"}.get(m.role, m.role)
        out += ["---", "", f"### {who}", ""]
        for notice in m.meta.get("notices", []):
            out += [f"> *{notice}*", ""]
        out += [m.content.rstrip() or "*(empty)*", ""]
        if m.meta.get("finish_reason") == "cancelled":
            out += ["*(stopped)*", ""]
        sources = m.meta.get("sources") or []
        if sources:
            out += ["Sources:", ""]
            out += [f"- {source_line(s)}" for s in sources]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def open_store(home: Home, *, clock: Callable[[], datetime] = utc_now) -> ConversationStore:
    """The conversation store of a model home (created on first use)."""
    return ConversationStore(home.conversations_db, clock=clock)
