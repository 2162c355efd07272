"""Ingest files into a knowledge base: walk, extract, chunk, embed, write.

``Ingestor.add(paths)`` walks files and directories (symlink loops, hidden or
vendored directories and symlinks leading out of the tree skipped; names that
are not UTF-8 stored losslessly, paths.py), extracts text (extract.py), chunks it by
the embedding model's tokens (chunk.py), embeds the chunks in groups and
writes each group in one transaction holding whole documents, or whole
sections of a large file. So:

- a Ctrl+C or a kill leaves the index consistent (every committed document
  is complete or marked incomplete with the sections it has), and the next
  run resumes: unchanged complete files are skipped (size+mtime, then
  sha256), an incomplete one continues at its next section, JSONL records
  already in are skipped one by one;
- a bad file is reported (``IngestEvent``) and the rest still goes in.

``Ingestor.sync()`` looks at every path given to ``add`` before: new and
changed files go in, documents whose file is gone are removed.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import interrupt
from ..errors import AssistantError, KnowledgeBaseError, StorageError
from ..io import sha256_file
from .chunk import DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP, Section, chunk_section, last_heading
from .embed import Embedder
from .extract import (
    Extracted,
    ExtractError,
    decompressed_size,
    extract_html,
    extract_man,
    extract_pdf,
    extract_text_file,
    is_compressed,
    jsonl_body,
    kind_of,
    read_jsonl,
    sniff_kind,
)
from .paths import display_name, key_path, path_key
from .store import ChunkRecord, KnowledgeStore, path_under

log = logging.getLogger(__name__)

SKIP_DIRS = {"node_modules", "__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".mypy_cache"}
DEFAULT_MAX_FILE_MB = 64
FLUSH_CHUNKS = 64  # chunks embedded and written per transaction


@dataclass(frozen=True)
class IngestOptions:
    collection: str = ""
    glob: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap: int = DEFAULT_OVERLAP
    max_file_bytes: int = DEFAULT_MAX_FILE_MB << 20
    include_hidden: bool = False
    follow_symlinks: bool = False  # follow symlinks that lead outside the tree being added

    @classmethod
    def for_store(
        cls, store: KnowledgeStore, *, max_tokens: int | None = None, overlap: int | None = None, **given: Any
    ) -> IngestOptions:
        """Options for a knowledge base: its chunking as built (unless given), the rest as given."""
        meta = store.meta()
        return cls(
            max_tokens=max_tokens or int(meta.get("chunking_max_tokens", DEFAULT_MAX_TOKENS)),
            overlap=overlap if overlap is not None else int(meta.get("chunking_overlap", DEFAULT_OVERLAP)),
            **given,
        )


@dataclass(frozen=True)
class IngestEvent:
    """One thing that happened to one path: added, updated, unchanged, removed, skipped, failed, warning."""

    kind: str
    path: str
    message: str = ""


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    documents: int = 0  # documents written (a JSONL file holds many)
    chunks: int = 0
    tokens: int = 0
    embed_seconds: float = 0.0
    seconds: float = 0.0
    problems: list[IngestEvent] = field(default_factory=list)  # skipped, failed, warning

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "skipped": self.skipped,
            "failed": self.failed,
            "documents": self.documents,
            "chunks": self.chunks,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 2),
            "embed_tokens_per_s": round(self.tokens / self.embed_seconds, 1) if self.embed_seconds else None,
            "problems": [{"kind": e.kind, "path": e.path, "message": e.message} for e in self.problems],
        }


def make_index_text(title: str, heading: str, text: str) -> str:
    """What FTS5 indexes and the model embeds: the chunk with its title and heading for context."""
    parts = []
    head = text[: len(title) + 80]
    if title and title not in head:
        parts.append(title)
    if heading and heading != title and heading not in text[: len(heading) + 80]:
        parts.append(heading)
    parts.append(text)
    return "\n".join(parts)


@dataclass
class SyncPlan:
    """What sync will look at: per tracked path its options and files; bytes in all."""

    parts: list[tuple[IngestOptions, list[tuple[Path, int]]]]
    total: int


@dataclass
class _Doc:
    uri: str
    doc_key: str
    source: str
    title: str
    kind: str
    collection: str
    sha256: str
    mtime: float | None
    size: int | None
    doc_id: int | None = None  # set once its row exists
    replaced: bool = False  # an older version existed
    chunks: int = 0


@dataclass
class _Work:
    doc: _Doc
    section_index: int  # sections done after this item
    chunks: list[ChunkRecord]
    last: bool
    n_bytes: int


class Ingestor:
    """Adds files to one knowledge base with one embedding model."""

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder,
        options: IngestOptions | None = None,
        *,
        on_event: Callable[[IngestEvent], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.options = options or IngestOptions()
        self._on_event = on_event
        self._on_progress = on_progress
        self._pending: list[_Work] = []
        self._pending_chunks = 0
        self.report = IngestReport()
        store.bind_model(
            embedder.info, {"max_tokens": self.options.max_tokens, "overlap": self.options.overlap}
        )

    # -- events ---------------------------------------------------------------------

    def _event(self, kind: str, path: str, message: str = "") -> None:
        ev = IngestEvent(kind, path_key(path), display_name(message))  # printable, even for non-UTF-8 names
        r = self.report
        if kind in ("added", "updated", "unchanged", "removed", "skipped", "failed"):
            setattr(r, kind, getattr(r, kind) + 1)
        if kind in ("skipped", "failed", "warning"):
            r.problems.append(ev)
            log.info("%s: %s %s", kind, path, message)
        if self._on_event is not None:
            self._on_event(ev)

    def _progress(self, n: int) -> None:
        if self._on_progress is not None and n > 0:
            self._on_progress(n)

    # -- walking --------------------------------------------------------------------

    def plan(self, paths: Sequence[str | os.PathLike[str]]) -> tuple[list[tuple[Path, int]], int]:
        """Files to look at (path, size) and their total bytes; missing paths reported now.

        A file reached twice (a symlink to a file also in the tree) is listed once.
        """
        files: list[tuple[Path, int]] = []
        seen: set[str] = set()
        for p in paths:
            root = Path(p).expanduser()
            excluded = self.store.exclusions(under=path_key(root.resolve()))  # `index remove`d inside root
            for f, size in self._walk(root):
                key = str(f)
                if excluded and any(path_under(path_key(f), e) for e in excluded):
                    continue
                if key not in seen:
                    seen.add(key)
                    files.append((f, size))
        return files, sum(s for _, s in files)

    def _walk(self, root: Path) -> Iterator[tuple[Path, int]]:
        """Files under root (or root itself), real paths; symlinks leaving root skipped unless followed."""
        if not os.path.lexists(root):
            self._event("failed", str(root), "no such file or directory")
            return
        try:
            st = root.stat()
        except OSError as exc:
            reason = (
                "symlink loop"
                if exc.errno == 40
                else ("broken symlink" if root.is_symlink() else exc.strerror)
            )
            self._event("failed", str(root), f"cannot read: {reason}")
            return
        if stat.S_ISREG(st.st_mode):
            yield root.resolve(), st.st_size
            return
        if not stat.S_ISDIR(st.st_mode):
            self._event("skipped", str(root), "not a regular file or directory")
            return
        visited: set[tuple[int, int]] = set()
        base = root.resolve()
        stack = [base]
        glob = self.options.glob
        while stack:
            d = stack.pop()
            try:
                dst = d.stat()
            except OSError as exc:
                self._event("failed", str(d), f"cannot read directory: {exc.strerror}")
                continue
            key = (dst.st_dev, dst.st_ino)
            if key in visited:
                continue  # reached again through a symlink: its files are listed already
            visited.add(key)
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError as exc:
                self._event("failed", str(d), f"cannot list directory: {exc.strerror}")
                continue
            subdirs = []
            for e in entries:
                if e.name.startswith(".") and not self.options.include_hidden:
                    continue
                try:
                    target = self._link_target(e, base) if e.is_symlink() else Path(e.path)
                    if target is None:
                        continue
                    if e.is_dir(follow_symlinks=True):
                        if e.name in SKIP_DIRS:
                            continue
                        if e.is_symlink() and (target == d or d.is_relative_to(target)):
                            self._event("skipped", e.path, "symlink loop (points to a parent directory)")
                            continue
                        subdirs.append(target)
                        continue
                    if not e.is_file(follow_symlinks=True):
                        continue
                    if glob:
                        rel = os.path.relpath(e.path, base)
                        if not (fnmatch.fnmatch(e.name, glob) or fnmatch.fnmatch(rel, glob)):
                            continue
                    size = e.stat(follow_symlinks=True).st_size
                except OSError as exc:
                    if exc.errno == 40:
                        self._event("skipped", e.path, "symlink loop")
                    else:
                        self._event("failed", e.path, f"cannot read: {exc.strerror}")
                    continue
                yield target, size
            stack.extend(reversed(subdirs))

    def _link_target(self, entry: os.DirEntry[str], base: Path) -> Path | None:
        """Where a symlink leads, or None (reported) when it is broken or leaves the tree unfollowed."""
        try:
            os.stat(entry.path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._event("skipped", entry.path, "symlink loop")
            else:
                self._event("failed", entry.path, "broken symlink")
            return None
        target = Path(entry.path).resolve()
        if not self.options.follow_symlinks and not target.is_relative_to(base):
            self._event(
                "skipped",
                entry.path,
                f"symlink to {target}, outside {base}; not followed (--follow-symlinks to include it)",
            )
            return None
        return target

    # -- public ---------------------------------------------------------------------

    def add(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        planned: list[tuple[Path, int]] | None = None,
        on_progress: Callable[[int], None] | None = None,
        record_roots: bool = True,
    ) -> IngestReport:
        """Add paths (walked now, or ``planned`` by plan()); they are tracked for sync, and a path
        given explicitly is no longer excluded. ``on_progress`` receives bytes done."""
        t0 = time.perf_counter()
        files = planned if planned is not None else self.plan(paths)[0]
        if record_roots:
            for p in paths:
                rp = Path(p).expanduser()
                if rp.exists():
                    key = path_key(rp.resolve())
                    self.store.add_root(key, self.options.collection, self.options.glob)
                    self.store.unexclude(key)
        with self._progress_to(on_progress):
            self.ingest_files(files)
        self.report.seconds += time.perf_counter() - t0
        return self.report

    @contextmanager
    def _progress_to(self, on_progress: Callable[[int], None] | None) -> Iterator[None]:
        saved = self._on_progress
        self._on_progress = on_progress or saved
        try:
            yield
        finally:
            self._on_progress = saved

    @contextmanager
    def _using(self, options: IngestOptions) -> Iterator[None]:
        saved = self.options
        self.options = options
        try:
            yield
        finally:
            self.options = saved

    def ingest_files(self, files: Iterable[tuple[Path, int]]) -> None:
        try:
            for path, size in files:
                interrupt.check()  # a Ctrl+C that came inside llama.cpp: stop between files
                try:
                    self._file(path, size)
                except ExtractError as exc:
                    self._event(
                        "failed" if "cannot read" in str(exc) else "skipped", str(path), _reason(exc, path)
                    )
                    self._progress(size)
                except (KnowledgeBaseError, StorageError):  # the knowledge base itself (full, damaged): stop
                    raise
                except AssistantError as exc:
                    self._event("failed", str(path), str(exc))
                    self._progress(size)
            self._flush()
        finally:
            self._pending.clear()
            self._pending_chunks = 0

    def plan_sync(self) -> SyncPlan:
        """Walk every tracked path (with the collection and glob it was added with)."""
        parts = []
        for root, collection, glob in self.store.roots():
            if key_path(root).exists():
                options = replace(self.options, collection=collection, glob=glob)
                with self._using(options):
                    parts.append((options, self.plan([key_path(root)])[0]))
        return SyncPlan(parts, sum(size for _, files in parts for _, size in files))

    def sync(
        self, planned: SyncPlan | None = None, *, on_progress: Callable[[int], None] | None = None
    ) -> IngestReport:
        """Look again at every path given to add: add new and changed files, remove deleted ones."""
        t0 = time.perf_counter()
        for source in self.store.all_sources():
            if not key_path(source).exists():
                n = self.remove_source(source)
                self._event("removed", source, f"file is gone ({n} document(s))")
        for root, _collection, _glob in self.store.roots():
            if not key_path(root).exists():
                with self.store.transaction() as c:
                    self.store.remove_root(c, root)
        plan = planned if planned is not None else self.plan_sync()
        with self._progress_to(on_progress):
            for options, files in plan.parts:
                with self._using(options):
                    self.ingest_files(files)
        self.report.seconds += time.perf_counter() - t0
        return self.report

    def remove_source(self, source: str) -> int:
        docs = self.store.documents(source=source)
        with self.store.transaction() as c:
            for d in docs:
                self.store.delete_document(d.id, c)
            c.execute("DELETE FROM sources WHERE path = ?", (source,))
        return len(docs)

    # -- one file -------------------------------------------------------------------

    def _file(self, path: Path, size: int) -> None:
        spath = path_key(path)
        try:
            st = path.stat()
        except OSError as exc:
            raise ExtractError(f"cannot read {path}: {exc.strerror}") from exc
        if not os.access(path, os.R_OK):
            raise ExtractError(f"cannot read {path}: permission denied")
        kind = kind_of(path)
        compressed = is_compressed(path)
        if compressed and kind in ("pdf", "jsonl"):
            raise ExtractError(f"{path} is a compressed {kind.upper()} file; decompress it to index it")
        if kind in (None, "txt"):  # a man page (roff) by its content; binary refused
            kind = sniff_kind(path, kind) if st.st_size else "txt"
        if st.st_size == 0:
            self._drop_existing(spath)
            raise ExtractError(f"{path} is empty; skipped")
        if st.st_size > self.options.max_file_bytes:
            mb = self.options.max_file_bytes / (1 << 20)
            raise ExtractError(
                f"{path} is {st.st_size / (1 << 20):,.0f} MB, over the {mb:,.0f} MB limit; "
                "skipped (raise it with --max-file-mb)"
            )
        if kind == "jsonl":
            self._jsonl(path, st)
            return
        collection = self.options.collection
        existing = self.store.document(spath)
        if (
            existing is not None
            and existing.complete
            and existing.size == st.st_size
            and existing.mtime == st.st_mtime
            and existing.collection == collection
        ):
            self._event("unchanged", spath)
            self._progress(size)
            return
        if compressed and decompressed_size(path, self.options.max_file_bytes) == 0:
            self._drop_existing(spath)
            raise ExtractError(f"{path} is empty; skipped")
        try:
            sha = sha256_file(path)
        except OSError as exc:
            raise ExtractError(f"cannot read {path}: {exc.strerror}") from exc
        resume_from = 0
        doc = _Doc(
            spath, spath, spath, display_name(path.name), kind, collection, sha, st.st_mtime, st.st_size
        )
        if existing is not None and existing.sha256 == sha and existing.collection == collection:
            if existing.complete:
                self.store.touch(existing.id, st.st_mtime, st.st_size)
                self._event("unchanged", spath)
                self._progress(size)
                return
            # an interrupted ingest of the same content: continue at its next section
            doc.doc_id = existing.id
            doc.replaced = False
            resume_from = existing.sections_done
            with self.store.transaction() as c:
                ordinal = self._resume_ordinal(existing.id, resume_from)
                self.store.truncate_document(c, existing.id, resume_from, ordinal)
            log.info("resuming %s at section %d", spath, resume_from)
        elif existing is not None:
            doc.replaced = True
        extracted = self._extract(path, kind)
        doc.title = display_name(extracted.title)
        self._document(doc, extracted, resume_from, size)

    def _resume_ordinal(self, doc_id: int, sections_done: int) -> int:
        """Chunk ordinal to continue from: every chunk written belongs to a finished section."""
        return self.store.next_ordinal(doc_id)

    def _drop_existing(self, spath: str) -> None:
        existing = self.store.document(spath)
        if existing is not None:
            self.store.delete_document(existing.id)
            self._event("removed", spath, "the file is now empty")

    def _extract(self, path: Path, kind: str) -> Extracted:
        if kind == "pdf":
            return extract_pdf(path)
        if kind == "html":
            return extract_html(path, self.options.max_file_bytes)
        if kind == "man":
            return extract_man(path, self.options.max_file_bytes)
        return extract_text_file(path, kind)

    def _document(self, doc: _Doc, extracted: Extracted, resume_from: int, size: int) -> None:
        ordinal = self.store.next_ordinal(doc.doc_id) if doc.doc_id is not None else 0
        heading = ""
        reported = 0
        n_sections = 0
        for idx, section in enumerate(extracted.sections):
            n_sections = idx + 1
            section = replace(section, heading=heading)
            if idx < resume_from:
                heading = last_heading(section)
                continue
            recs = self._chunk(doc, section, ordinal, extracted.has_lines)
            heading = last_heading(section)
            ordinal += len(recs)
            n_bytes = min(len(section.text), max(0, size - reported))
            reported += n_bytes
            self._queue(_Work(doc, idx + 1, recs, False, n_bytes))
        for w in extracted.warnings:
            self._event("warning", doc.uri, w)
        if ordinal == 0 and doc.doc_id is None:
            if doc.replaced:
                self._drop_existing(doc.uri)
            self._progress(size - reported)
            raise ExtractError(f"{doc.uri} has no text; skipped")
        self._queue(_Work(doc, max(n_sections, resume_from), [], True, max(0, size - reported)))

    def _chunk(self, doc: _Doc, section: Section, ordinal: int, has_lines: bool) -> list[ChunkRecord]:
        out = []
        for i, ch in enumerate(
            chunk_section(
                section,
                self.embedder.count_tokens,
                max_tokens=self.options.max_tokens,
                overlap=self.options.overlap,
            )
        ):
            out.append(
                ChunkRecord(
                    ordinal=ordinal + i,
                    text=ch.text,
                    heading=ch.heading,
                    char_start=ch.char_start,
                    char_end=ch.char_end,
                    line_start=ch.line_start if has_lines else None,
                    line_end=ch.line_end if has_lines else None,
                    page_start=ch.page,
                    page_end=ch.page_end,
                    n_tokens=ch.n_tokens,
                    index_text=make_index_text(doc.title, ch.heading, ch.text),
                )
            )
        return out

    # -- JSONL ----------------------------------------------------------------------

    def _jsonl(self, path: Path, st: os.stat_result) -> None:
        spath = path_key(path)
        collection = self.options.collection
        src = self.store.source(spath)
        if src is not None and src[3] and src[1] == st.st_mtime and src[2] == st.st_size:
            self._event("unchanged", spath, "JSONL file unchanged")
            self._progress(st.st_size)
            return
        try:
            sha = sha256_file(path)
        except OSError as exc:
            raise ExtractError(f"cannot read {path}: {exc.strerror}") from exc
        if src is not None and src[3] and src[0] == sha:
            with self.store.transaction() as c:
                self.store.set_source(c, spath, sha, st.st_mtime, st.st_size, True)
            self._event("unchanged", spath, "JSONL file unchanged")
            self._progress(st.st_size)
            return
        with self.store.transaction() as c:
            self.store.set_source(c, spath, sha, st.st_mtime, st.st_size, False)
        existing = self.store.document_keys_by_source(spath)
        errors: list[str] = []
        seen: dict[str, int] = {}
        pos_reported = 0
        n_records = 0
        for rec, pos in read_jsonl(path, errors):
            n_bytes, pos_reported = pos - pos_reported, pos
            if rec.doc_id in seen:
                errors.append(
                    f"line {rec.line}: duplicate id {rec.doc_id!r} (first on line {seen[rec.doc_id]}); skipped"
                )
                self._progress(n_bytes)
                continue
            seen[rec.doc_id] = rec.line
            n_records += 1
            uri = f"{spath}#{rec.doc_id}"
            body = jsonl_body(rec)
            rsha = hashlib.sha256(f"{rec.title}\x00{rec.text}".encode()).hexdigest()
            old = existing.get(uri)
            if old is not None and old[1] == rsha and old[2] and old[3] == collection:
                self._progress(n_bytes)
                continue
            doc = _Doc(uri, rec.doc_id, spath, rec.title or rec.doc_id, "jsonl", collection, rsha, None, None)
            doc.replaced = old is not None
            recs = self._chunk(doc, Section(body), 0, False)
            if not recs:
                errors.append(f"line {rec.line}: no text (id {rec.doc_id})")
                self._progress(n_bytes)
                continue
            self._queue(_Work(doc, 1, recs, True, n_bytes))
        self._progress(st.st_size - pos_reported)
        self._flush()
        gone = [v[0] for k, v in existing.items() if k[len(spath) + 1 :] not in seen]
        with self.store.transaction() as c:
            for doc_id in gone:
                self.store.delete_document(doc_id, c)
            self.store.set_source(c, spath, sha, st.st_mtime, st.st_size, True)
        if gone:
            self.report.removed += len(gone)
        for e in errors:
            self._event("skipped", spath, e)
        if n_records == 0:
            self._event(
                "failed", spath, 'no valid JSONL documents ({"_id" or "id", "title", "text"} per line)'
            )
            return
        self._event("added" if src is None else "updated", spath, f"{n_records} JSONL document(s)")

    # -- embedding and writing ------------------------------------------------------------

    def _queue(self, work: _Work) -> None:
        self._pending.append(work)
        self._pending_chunks += len(work.chunks)
        if self._pending_chunks >= FLUSH_CHUNKS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        items = self._pending
        texts = [ch.index_text for w in items for ch in w.chunks]
        t0 = time.perf_counter()
        vectors = self.embedder.embed(texts) if texts else None
        self.report.embed_seconds += time.perf_counter() - t0
        store = self.store
        done: list[_Doc] = []
        j = 0
        with store.transaction() as c:
            for w in items:
                d = w.doc
                if d.doc_id is None:
                    d.doc_id = store.start_document(
                        c,
                        uri=d.uri,
                        doc_key=d.doc_key,
                        source=d.source,
                        title=d.title,
                        kind=d.kind,
                        collection=d.collection,
                        sha256=d.sha256,
                        mtime=d.mtime,
                        size=d.size,
                    )
                if w.chunks:
                    assert vectors is not None
                    store.add_chunks(c, d.doc_id, w.chunks, vectors[j : j + len(w.chunks)], d.collection)
                    j += len(w.chunks)
                    d.chunks += len(w.chunks)
                store.finish_section(c, d.doc_id, w.section_index, complete=w.last)
                if w.last:
                    done.append(d)
        # committed: now it counts
        self._pending = []
        self._pending_chunks = 0
        self.report.chunks += len(texts)
        self.report.documents += len(done)
        self.report.tokens += sum(ch.n_tokens for w in items for ch in w.chunks)
        for w in items:
            self._progress(w.n_bytes)
        for d in done:
            if d.kind != "jsonl":
                self._event("updated" if d.replaced else "added", d.uri, f"{d.chunks} chunk(s)")


def _reason(exc: Exception, path: Path) -> str:
    """The message without the path at its start (the event carries the path)."""
    msg = str(exc).removesuffix("; skipped")
    if msg.startswith(f"cannot read {path}: "):
        return "cannot read: " + msg[len(f"cannot read {path}: ") :]
    if msg.startswith(f"{path} "):
        return msg[len(f"{path} ") :]
    return msg
