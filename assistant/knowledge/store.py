"""One knowledge base = one SQLite file: documents, chunks, FTS5, sqlite-vec.

Schema (recorded migrations, see ``assistant.db.migrate``):

- ``kb_meta(key, value)``: the embedding model (name, sha256, dim, max_tokens)
  and the chunking settings the index was built with. A knowledge base built
  with another model is refused, never mixed.
- ``documents``: one row per file or JSONL record: uri (unique: absolute path,
  or ``FILE.jsonl#ID``), doc_key (the JSONL id or the path as given), source
  file, title, kind, collection, sha256, mtime, size, counts, and
  ``complete``/``sections_done`` so an interrupted ingest resumes.
- ``chunks``: text, document, ordinal, character span, line span, page span.
- ``chunks_fts``: FTS5 over the chunk text (porter stemming, contentless).
- ``chunks_vec``: sqlite-vec ``vec0`` table, cosine, keyed by chunk id (the
  exact index).
- ``chunk_codes``: per chunk a binary code (dim/8 bytes) and an int8 copy of
  its vector, for fast approximate search on large knowledge bases
  (Hamming scan, then int8 re-scoring; see search.py).

Every write happens in a transaction that holds whole documents (or whole
sections of a large file), so a Ctrl+C or a kill leaves the index
consistent. WAL lets readers (the chat) read while an ingest writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..db import (
    Migration,
    connect,
    error_kind,
    migrate,
    quick_check,
    rollback_quietly,
    sqlite_module,
    writable,
)
from ..errors import KnowledgeBaseError, StorageError
from .embed import EmbeddingModelInfo
from .paths import key_prefixes, path_key

log = logging.getLogger(__name__)

FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"


def _m1_initial(conn: Any) -> None:
    conn.execute("CREATE TABLE kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            uri TEXT NOT NULL UNIQUE,
            doc_key TEXT NOT NULL,
            source TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL,
            collection TEXT NOT NULL DEFAULT '',
            sha256 TEXT NOT NULL,
            mtime REAL,
            size INTEGER,
            n_chunks INTEGER NOT NULL DEFAULT 0,
            n_tokens INTEGER NOT NULL DEFAULT 0,
            complete INTEGER NOT NULL DEFAULT 0,
            sections_done INTEGER NOT NULL DEFAULT 0,
            added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
        )"""
    )
    conn.execute("CREATE INDEX documents_source ON documents(source)")
    conn.execute("CREATE INDEX documents_key ON documents(doc_key)")
    conn.execute("CREATE INDEX documents_collection ON documents(collection)")
    conn.execute(
        """CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            heading TEXT NOT NULL DEFAULT '',
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL,
            line_start INTEGER,
            line_end INTEGER,
            page_start INTEGER,
            page_end INTEGER,
            n_tokens INTEGER NOT NULL,
            UNIQUE (document_id, ordinal)
        )"""
    )
    conn.execute(
        f"CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='', contentless_delete=1, "
        f"tokenize='{FTS_TOKENIZER}')"
    )
    conn.execute(
        "CREATE TABLE chunk_codes (chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE, "
        "bits BLOB NOT NULL, i8 BLOB NOT NULL)"
    )
    # JSONL files: one source holds many documents; its sha256 lets an unchanged file be skipped
    conn.execute(
        "CREATE TABLE sources (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, mtime REAL, size INTEGER, "
        "complete INTEGER NOT NULL DEFAULT 0)"
    )
    # what `index add` was given, so `index sync` can look again
    conn.execute(
        "CREATE TABLE roots (path TEXT PRIMARY KEY, collection TEXT NOT NULL DEFAULT '', glob TEXT, "
        "added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')))"
    )


def _m2_exclusions(conn: Any) -> None:
    # paths `index remove` took out from under a tracked folder: sync and add of the folder skip them
    conn.execute(
        "CREATE TABLE IF NOT EXISTS exclusions (path TEXT PRIMARY KEY, "
        "added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')))"
    )


MIGRATIONS = [
    Migration(1, "documents, chunks, fts5, codes", _m1_initial),
    Migration(2, "exclusions", _m2_exclusions),
]


def path_under(path: str, prefix: str) -> bool:
    """path is prefix or inside it (string paths, as stored)."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


@dataclass
class RemoveResult:
    """What ``KnowledgeStore.remove`` did."""

    removed: list[str] = field(default_factory=list)  # uris of the documents removed
    not_found: list[str] = field(default_factory=list)  # targets that matched nothing
    excluded: list[str] = field(default_factory=list)  # paths that sync and add of their folder now skip


@dataclass(frozen=True)
class DocumentRow:
    id: int
    uri: str
    doc_key: str
    source: str
    title: str
    kind: str
    collection: str
    sha256: str
    mtime: float | None
    size: int | None
    n_chunks: int
    n_tokens: int
    complete: bool
    sections_done: int
    updated_at: str


@dataclass
class ChunkRecord:
    """A chunk ready to be written (its vector comes separately)."""

    ordinal: int
    text: str
    heading: str
    char_start: int
    char_end: int
    line_start: int | None
    line_end: int | None
    page_start: int | None
    page_end: int | None
    n_tokens: int
    index_text: str  # what FTS5 indexes and the model embeds (title/heading + text)


def quantize_codes(vectors: np.ndarray, center: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Binary codes (signs around ``center``, packed) and int8 copies (per-vector max-abs scaling).

    Sentence embeddings share a large common component, so raw sign bits carry
    little information; signs of ``vector - center`` (the mean of the first
    vectors of the knowledge base) split the data far better.
    """
    bits = np.packbits((vectors - center if center is not None else vectors) > 0, axis=1)
    scale = np.abs(vectors).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    i8 = np.clip(np.rint(vectors / scale * 127.0), -127, 127).astype(np.int8)
    return bits, i8


def resolve_kb_path(kb: str | os.PathLike[str] | None, knowledge_dir: Path) -> Path:
    """--kb NAME|PATH: a path (has a slash or ends in .db), else a name in the home's knowledge dir."""
    if kb is None or str(kb) == "":
        return knowledge_dir / "default.db"
    s = str(kb)
    if os.sep in s or "/" in s or s.endswith((".db", ".sqlite", ".sqlite3")):
        return Path(s).expanduser().resolve()
    if not all(c.isalnum() or c in "-_." for c in s):
        raise KnowledgeBaseError(
            f"knowledge base name {s!r} has characters other than letters, digits, - _ .; "
            "use a plain name or a path"
        )
    return knowledge_dir / f"{s}.db"


class KnowledgeStore:
    """A knowledge base file opened for reading and writing."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise KnowledgeBaseError(
                    f"no knowledge base at {self.path}; create it with `assistant index add PATH...`"
                )
            if readonly:
                raise KnowledgeBaseError(f"no knowledge base at {self.path}")
        elif self.path.is_dir():
            raise KnowledgeBaseError(f"{self.path} is a directory, expected a knowledge base file (.db)")
        sqlite3 = sqlite_module()
        self._sqlite3 = sqlite3
        self.readonly = readonly
        why_not = writable(self.path)
        if not readonly and why_not is not None:
            raise self._readonly_error(why_not)
        try:
            # readonly = no migration and no writes; where the file can be written the connection stays a
            # normal WAL one (a reader never waits for a writer's lock), on a read-only medium it is mode=ro
            self.conn = connect(self.path, readonly=readonly and why_not is not None)
            self.conn.isolation_level = None  # explicit transactions only
            if not readonly:
                migrate(self.conn, MIGRATIONS)
                self._check_integrity()
            else:
                self._check_schema()
        except BaseException as exc:
            if hasattr(self, "conn"):
                self.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            translated = self._translate(exc)
            if translated is exc:
                translated = KnowledgeBaseError(f"{self.path} is not a knowledge base (SQLite said: {exc})")
            raise translated from exc
        self._vec_ready = self._has_table("chunks_vec")

    # -- helpers ----------------------------------------------------------------

    def _translate(self, exc: Exception) -> Exception:
        """A one-line error for a SQLite error whose cause the user can act on (else exc itself)."""
        kind = error_kind(exc)
        if kind == "busy":
            return StorageError(
                f"the knowledge base {self.path} is locked by another process (an ingest?); "
                "wait for it to finish and try again"
            )
        if kind == "readonly":
            return self._readonly_error(str(exc))
        if kind == "full":
            return StorageError(
                f"disk full writing the knowledge base {self.path} ({exc}): free space and run the command "
                "again; what was committed is kept"
            )
        if kind == "corrupt":
            return self._damaged_error(str(exc))
        if kind == "ioerr":
            return StorageError(f"cannot read or write the knowledge base {self.path}: {exc}")
        if isinstance(exc, self._sqlite3.OperationalError):
            return KnowledgeBaseError(f"{self.path}: {exc}")
        return exc

    def _readonly_error(self, why: str) -> KnowledgeBaseError:
        if not self.path.exists():
            return KnowledgeBaseError(
                f"cannot create the knowledge base {self.path}: {why}; choose a writable place with --kb PATH"
            )
        return KnowledgeBaseError(
            f"knowledge base {self.path} is read-only ({why}): search and ask can use it; to change it, "
            "copy it somewhere writable and use --kb COPY"
        )

    def _damaged_error(self, detail: str) -> KnowledgeBaseError:
        detail = " ".join(detail.split())[:160]
        return KnowledgeBaseError(
            f"knowledge base {self.path} is damaged ({detail}): rebuild it with `assistant index add PATH... "
            "--kb NEW.db` into a new knowledge base, or restore a copy"
        )

    def _check_integrity(self) -> None:
        """PRAGMA quick_check before writing into a knowledge base: never build on a damaged file."""
        problem = quick_check(self.conn)
        if problem is not None:
            raise self._damaged_error(problem)

    def _check_schema(self) -> None:
        if not self._has_table("_migrations"):
            raise KnowledgeBaseError(f"{self.path} is not a knowledge base (no schema)")
        known = max(m.version for m in MIGRATIONS)
        have = self.conn.execute("SELECT max(version) FROM _migrations").fetchone()[0] or 0
        if have > known:
            raise StorageError(
                f"the knowledge base {self.path} has schema version {have}, newer than this program "
                f"knows ({known}); upgrade the assistant to open it"
            )

    def _has_table(self, name: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        return row is not None

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception, KeyboardInterrupt included).

        A SQLite error inside becomes a one-line error (disk full, damaged, read-only, locked);
        a failed rollback never hides it.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except self._sqlite3.DatabaseError as exc:
            self._reraise(exc)
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except self._sqlite3.DatabaseError as exc:
            rollback_quietly(self.conn)
            self._reraise(exc)
        except BaseException:
            rollback_quietly(self.conn)
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(sql, params)
        except self._sqlite3.DatabaseError as exc:
            self._reraise(exc)

    def _reraise(self, exc: Exception) -> NoReturn:
        translated = self._translate(exc)
        if translated is exc:
            raise exc
        raise translated from exc

    # -- metadata and the embedding model ------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.execute("SELECT key, value FROM kb_meta").fetchall())

    def code_center(self) -> np.ndarray | None:
        """The center of the binary codes (None until the first vectors are written)."""
        if getattr(self, "_center", None) is None:
            row = self.execute("SELECT value FROM kb_meta WHERE key = 'code_center'").fetchone()
            self._center = None if row is None else np.frombuffer(bytes.fromhex(row[0]), dtype=np.float32)
        return self._center

    def model_info(self) -> EmbeddingModelInfo | None:
        m = self.meta()
        if "embed_model_sha256" not in m:
            return None
        return EmbeddingModelInfo(
            name=m["embed_model_name"],
            sha256=m["embed_model_sha256"],
            dim=int(m["embed_model_dim"]),
            max_tokens=int(m["embed_model_max_tokens"]),
        )

    def check_model(self, info: EmbeddingModelInfo) -> None:
        """Refuse a model other than the one the index was built with."""
        have = self.model_info()
        if have is None:
            return
        if have.sha256 != info.sha256 and have.name == info.name and have.dim == info.dim:
            raise KnowledgeBaseError(
                f"the embedding model {info.name} changed since the knowledge base {self.path} was built "
                f"(sha256 {have.sha256[:12]}… then, {info.sha256[:12]}… now); put the original file back, "
                "or build the knowledge base again (delete it, then `assistant index add`)"
            )
        if have.sha256 != info.sha256 or have.dim != info.dim:
            raise KnowledgeBaseError(
                f"the knowledge base {self.path} was built with the embedding model {have.name} "
                f"(sha256 {have.sha256[:12]}…, {have.dim} dims), not {info.name} "
                f"(sha256 {info.sha256[:12]}…, {info.dim} dims); use --embed-model {have.name}, "
                "or another --kb for this model"
            )

    def bind_model(self, info: EmbeddingModelInfo, settings: dict[str, Any]) -> None:
        """Record the model (first ingest) and create the vector table for its dimensions."""
        self.check_model(info)
        if self.model_info() is not None and self._vec_ready:
            return
        with self.transaction() as c:
            for k, v in {
                "embed_model_name": info.name,
                "embed_model_sha256": info.sha256,
                "embed_model_dim": info.dim,
                "embed_model_max_tokens": info.max_tokens,
                **{f"chunking_{k}": v for k, v in settings.items()},
            }.items():
                c.execute("INSERT OR REPLACE INTO kb_meta (key, value) VALUES (?, ?)", (k, str(v)))
            c.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vec USING vec0("
                f"embedding float[{int(info.dim)}] distance_metric=cosine, collection text)"
            )
        self._vec_ready = True

    # -- documents -----------------------------------------------------------------

    _DOC_COLS = (
        "id, uri, doc_key, source, title, kind, collection, sha256, mtime, size, n_chunks, n_tokens, "
        "complete, sections_done, updated_at"
    )

    def _doc(self, row: Sequence[Any] | None) -> DocumentRow | None:
        if row is None:
            return None
        r = list(row)
        r[12] = bool(r[12])
        return DocumentRow(*r)

    def document(self, uri: str) -> DocumentRow | None:
        return self._doc(
            self.execute(f"SELECT {self._DOC_COLS} FROM documents WHERE uri = ?", (uri,)).fetchone()
        )

    def documents(
        self, *, source: str | None = None, collection: str | None = None, prefix: str | None = None
    ) -> list[DocumentRow]:
        sql = f"SELECT {self._DOC_COLS} FROM documents"
        where: list[str] = []
        params: list[str | int] = []
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if collection is not None:
            where.append("collection = ?")
            params.append(collection)
        if prefix is not None:
            where.append("(uri = ? OR substr(uri, 1, ?) = ?)")
            params += [prefix, len(prefix) + 1, prefix.rstrip("/") + "/"]
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY uri"
        return [d for d in (self._doc(r) for r in self.execute(sql, params).fetchall()) if d is not None]

    def document_keys_by_source(self, source: str) -> dict[str, tuple[int, str, bool, str]]:
        """uri -> (id, sha256, complete, collection) for every document from one source file."""
        rows = self.execute(
            "SELECT uri, id, sha256, complete, collection FROM documents WHERE source = ?", (source,)
        ).fetchall()
        return {r[0]: (r[1], r[2], bool(r[3]), r[4]) for r in rows}

    def _delete_chunks(self, c: Any, doc_id: int, from_ordinal: int = 0) -> None:
        ids = [
            r[0]
            for r in c.execute(
                "SELECT id FROM chunks WHERE document_id = ? AND ordinal >= ?", (doc_id, from_ordinal)
            )
        ]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            c.execute(f"DELETE FROM chunks_fts WHERE rowid IN ({marks})", part)
            if self._vec_ready:
                c.execute(f"DELETE FROM chunks_vec WHERE rowid IN ({marks})", part)
            c.execute(f"DELETE FROM chunk_codes WHERE chunk_id IN ({marks})", part)
            c.execute(f"DELETE FROM chunks WHERE id IN ({marks})", part)

    def delete_document(self, doc_id: int, c: Any | None = None) -> None:
        if c is None:
            with self.transaction() as conn:
                self.delete_document(doc_id, conn)
            return
        self._delete_chunks(c, doc_id)
        c.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def start_document(
        self,
        c: Any,
        *,
        uri: str,
        doc_key: str,
        source: str,
        title: str,
        kind: str,
        collection: str,
        sha256: str,
        mtime: float | None,
        size: int | None,
    ) -> int:
        """Insert a new (incomplete) document row, replacing any old version; returns its id."""
        old = c.execute("SELECT id FROM documents WHERE uri = ?", (uri,)).fetchone()
        if old is not None:
            self.delete_document(old[0], c)
        cur = c.execute(
            "INSERT INTO documents (uri, doc_key, source, title, kind, collection, sha256, mtime, size) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (uri, doc_key, source, title, kind, collection, sha256, mtime, size),
        )
        return int(cur.lastrowid)

    def add_chunks(
        self, c: Any, doc_id: int, chunks: Sequence[ChunkRecord], vectors: np.ndarray, collection: str = ""
    ) -> None:
        if not chunks:
            return
        if not self._vec_ready:
            raise KnowledgeBaseError("internal: the vector table does not exist yet (bind_model first)")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        center = self.code_center()
        if center is None:  # the first vectors of the knowledge base fix the center for good
            center = vectors.mean(axis=0).astype(np.float32)
            c.execute(
                "INSERT OR REPLACE INTO kb_meta (key, value) VALUES ('code_center', ?)",
                (center.tobytes().hex(),),
            )
            self._center = center
        bits, i8 = quantize_codes(vectors, center)
        for j, ch in enumerate(chunks):
            cur = c.execute(
                "INSERT INTO chunks (document_id, ordinal, text, heading, char_start, char_end, line_start, "
                "line_end, page_start, page_end, n_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc_id,
                    ch.ordinal,
                    ch.text,
                    ch.heading,
                    ch.char_start,
                    ch.char_end,
                    ch.line_start,
                    ch.line_end,
                    ch.page_start,
                    ch.page_end,
                    ch.n_tokens,
                ),
            )
            cid = int(cur.lastrowid)
            c.execute("INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)", (cid, ch.index_text))
            c.execute(
                "INSERT INTO chunks_vec (rowid, embedding, collection) VALUES (?, ?, ?)",
                (cid, vectors[j].tobytes(), collection),
            )
            c.execute(
                "INSERT INTO chunk_codes (chunk_id, bits, i8) VALUES (?, ?, ?)",
                (cid, bits[j].tobytes(), i8[j].tobytes()),
            )
        c.execute(
            "UPDATE documents SET n_chunks = n_chunks + ?, n_tokens = n_tokens + ? WHERE id = ?",
            (len(chunks), sum(ch.n_tokens for ch in chunks), doc_id),
        )

    def rebuild_codes(self) -> int:
        """Recompute every binary/int8 code from the exact vectors, around their current mean."""
        if not self._vec_ready:
            return 0
        rows = self.execute("SELECT rowid, embedding FROM chunks_vec").fetchall()
        if not rows:
            return 0
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        center = vectors.mean(axis=0).astype(np.float32)
        bits, i8 = quantize_codes(vectors, center)
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO kb_meta (key, value) VALUES ('code_center', ?)",
                (center.tobytes().hex(),),
            )
            c.executemany(
                "INSERT OR REPLACE INTO chunk_codes (chunk_id, bits, i8) VALUES (?, ?, ?)",
                ((int(r[0]), bits[j].tobytes(), i8[j].tobytes()) for j, r in enumerate(rows)),
            )
        self._center = center
        return len(rows)

    def finish_section(self, c: Any, doc_id: int, sections_done: int, *, complete: bool) -> None:
        c.execute(
            "UPDATE documents SET sections_done = ?, complete = ?, "
            "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?",
            (sections_done, int(complete), doc_id),
        )

    def truncate_document(self, c: Any, doc_id: int, sections_done: int, from_ordinal: int) -> None:
        """Drop chunks past a resume point (a section that was only half written)."""
        self._delete_chunks(c, doc_id, from_ordinal)
        n, t = c.execute(
            "SELECT count(*), coalesce(sum(n_tokens), 0) FROM chunks WHERE document_id = ?", (doc_id,)
        ).fetchone()
        c.execute(
            "UPDATE documents SET n_chunks = ?, n_tokens = ?, sections_done = ? WHERE id = ?",
            (n, t, sections_done, doc_id),
        )

    def touch(self, doc_id: int, mtime: float | None, size: int | None) -> None:
        with self.transaction() as c:
            c.execute("UPDATE documents SET mtime = ?, size = ? WHERE id = ?", (mtime, size, doc_id))

    def next_ordinal(self, doc_id: int) -> int:
        row = self.execute("SELECT max(ordinal) FROM chunks WHERE document_id = ?", (doc_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    # -- stats ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        n_docs, n_complete = self.execute(
            "SELECT count(*), coalesce(sum(complete), 0) FROM documents"
        ).fetchone()
        n_chunks, n_tokens = self.execute(
            "SELECT count(*), coalesce(sum(n_tokens), 0) FROM chunks"
        ).fetchone()
        collections = dict(
            self.execute(
                "SELECT collection, count(*) FROM documents GROUP BY collection ORDER BY collection"
            ).fetchall()
        )
        kinds = dict(
            self.execute("SELECT kind, count(*) FROM documents GROUP BY kind ORDER BY kind").fetchall()
        )
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        size = self.path.stat().st_size if self.path.exists() else 0
        wal = Path(f"{self.path}-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
        info = self.model_info()
        return {
            "path": str(self.path),
            "documents": n_docs,
            "incomplete_documents": n_docs - n_complete,
            "chunks": n_chunks,
            "tokens": n_tokens,
            "collections": collections,
            "kinds": kinds,
            "embedding_model": info.as_dict() if info else None,
            "file_bytes": size,
            "wal_bytes": wal_size,
            "bytes_per_chunk": round(size / n_chunks, 1) if n_chunks else None,
        }

    # -- sources and roots -----------------------------------------------------------

    def source(self, path: str) -> tuple[str, float | None, int | None, bool] | None:
        row = self.execute(
            "SELECT sha256, mtime, size, complete FROM sources WHERE path = ?", (path,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], bool(row[3]))

    def set_source(
        self, c: Any, path: str, sha256: str, mtime: float | None, size: int | None, complete: bool
    ) -> None:
        c.execute(
            "INSERT OR REPLACE INTO sources (path, sha256, mtime, size, complete) VALUES (?, ?, ?, ?, ?)",
            (path, sha256, mtime, size, int(complete)),
        )

    def add_root(self, path: str, collection: str, glob: str | None) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO roots (path, collection, glob) VALUES (?, ?, ?) ON CONFLICT(path) DO UPDATE "
                "SET collection = excluded.collection, glob = excluded.glob",
                (path, collection, glob),
            )

    def roots(self) -> list[tuple[str, str, str | None]]:
        return [tuple(r) for r in self.execute("SELECT path, collection, glob FROM roots ORDER BY path")]

    def remove_root(self, c: Any, path: str) -> None:
        """Stop tracking a folder and what lies under it (roots, JSONL sources, exclusions)."""
        c.execute(
            "DELETE FROM roots WHERE path = ? OR substr(path, 1, ?) = ?",
            (path, len(path) + 1, path.rstrip("/") + "/"),
        )
        c.execute(
            "DELETE FROM sources WHERE path = ? OR substr(path, 1, ?) = ?",
            (path, len(path) + 1, path.rstrip("/") + "/"),
        )
        c.execute(
            "DELETE FROM exclusions WHERE path = ? OR substr(path, 1, ?) = ?",
            (path, len(path) + 1, path.rstrip("/") + "/"),
        )

    # -- removal and exclusions ----------------------------------------------------------

    def remove(self, targets: Sequence[str], *, collection: str | None = None) -> RemoveResult:
        """Remove documents by path (a directory: everything under it), JSONL id or uri, or collection.

        A path inside a folder that sync looks at is recorded as an exclusion, so the removal
        sticks; a tracked folder (or one of its parents) is no longer tracked. Removing a
        collection stops tracking the folders added with it.
        """
        result = RemoveResult()
        doomed: dict[int, str] = {}
        paths: list[str] = []  # targets that are paths (not ids or uris)
        for t in targets:
            found, is_path = self._matching(t)
            if not found:
                result.not_found.append(t)
            if is_path:
                paths.append(path_key(Path(t).expanduser().resolve()))
            doomed.update(found)
        if collection is not None:
            doomed.update({d.id: d.uri for d in self.documents(collection=collection)})
        roots = [r[0] for r in self.roots()]
        with self.transaction() as c:
            for doc_id in doomed:
                # a JSONL file that lost a record is no longer "complete": adding it again restores it
                c.execute(
                    "UPDATE sources SET complete = 0 WHERE path = (SELECT source FROM documents WHERE id = ?)",
                    (doc_id,),
                )
                self.delete_document(doc_id, c)
            for key in paths:
                self.remove_root(c, key)
                if any(path_under(key, r) and key != r for r in roots):
                    c.execute("INSERT OR IGNORE INTO exclusions (path) VALUES (?)", (key,))
                    result.excluded.append(key)
            if collection is not None:
                c.execute("DELETE FROM roots WHERE collection = ?", (collection,))
        result.removed = sorted(doomed.values())
        return result

    def _matching(self, target: str) -> tuple[dict[int, str], bool]:
        """id -> uri of the documents a remove target names (a path, a JSONL file, a doc id or a uri),
        and whether it names a path."""
        where = Path(target).expanduser().resolve()
        t = path_key(target)  # a name that is not UTF-8 cannot be bound as text
        found = [d for p in key_prefixes(where) for d in self.documents(prefix=p)] if not t.isdigit() else []
        is_path = bool(found) or where.exists()
        found += self.documents(prefix=t) if not found else []
        if found:
            ids = {d.id: d.uri for d in found}
        else:
            rows = self.execute(
                "SELECT id, uri FROM documents WHERE doc_key = ? OR uri = ?", (t, t)
            ).fetchall()
            ids = {r[0]: r[1] for r in rows}
        rows = self.execute("SELECT id, uri FROM documents WHERE source = ?", (path_key(where),)).fetchall()
        ids.update({r[0]: r[1] for r in rows})  # a JSONL file: its records
        return ids, is_path or bool(rows)

    def exclusions(self, under: str | None = None) -> list[str]:
        """Excluded paths; with ``under``, those strictly inside that folder (what its walk skips)."""
        if not self._has_table("exclusions"):
            return []  # an older knowledge base opened read-only (not migrated)
        rows = [r[0] for r in self.execute("SELECT path FROM exclusions ORDER BY path")]
        return rows if under is None else [p for p in rows if p != under and path_under(p, under)]

    def unexclude(self, path: str) -> bool:
        """Forget an exclusion (the user added that path again explicitly)."""
        with self.transaction() as c:
            return bool(c.execute("DELETE FROM exclusions WHERE path = ?", (path,)).rowcount)

    def all_sources(self) -> list[str]:
        return [r[0] for r in self.execute("SELECT DISTINCT source FROM documents ORDER BY source")]

    def document_count(self) -> int:
        return int(self.execute("SELECT count(*) FROM documents").fetchone()[0])

    def chunk_count(self) -> int:
        return int(self.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def __enter__(self) -> KnowledgeStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
