"""Search a knowledge base: BM25 (FTS5), vectors (sqlite-vec), or both fused.

- ``bm25``: FTS5 with the porter tokenizer; the query is an OR of its words
  (English stop words dropped, each word quoted so no user text is FTS syntax).
  FTS5 scores every row that matches any word, so on large knowledge bases
  (``prune_min_chunks``, 20k chunks) words in more than ``max_df`` (20%) of
  the chunks are dropped and the rarest words kept while their postings add
  up to at most ``max_postings`` (30%) of the chunks: at 100k chunks p95 went
  from 110 to 51 ms for -0.007 BM25 nDCG@10 on SciFact train (measured with
  pruning forced on the 10k-chunk index).
- ``vector``: the query's embedding against the chunks'. Up to
  ``exact_limit`` chunks this is sqlite-vec's exact cosine KNN over the
  ``chunks_vec`` vec0 table. Above it, brute-force float KNN gets slow
  (~115 ms at 100k x 384 on the 2-core dev machine), so the search scans
  binary codes (signs around the knowledge base's mean vector, Hamming
  distance, numpy, ~4 ms at 100k) for ``candidates`` chunks and re-scores
  those with their int8 vectors (recall@10 against exact measured by
  scripts/bench_knowledge.py).
- ``hybrid``: both lists fused. Reciprocal rank fusion by default
  (``1/(rrf_k + rank)`` summed, BM25 weighted by ``bm25_weight``); rrf_k=10
  and weight 1 were chosen on SciFact's train split (scripts/eval_knowledge.py
  tune), never on its test split.

Results are chunks; ``search_documents`` ranks documents by their best chunk.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..engine import compute
from ..errors import UsageError
from .embed import Embedder
from .store import FTS_TOKENIZER, KnowledgeStore

log = logging.getLogger(__name__)

MODES = ("hybrid", "vector", "bm25")
EXACT_LIMIT = 20_000
CANDIDATES = 2000
FUSION_DEPTH = 100  # results taken from each list before fusing
RRF_K = 10  # tuned on SciFact train (k in 10..100, BM25 weight 0.5..2): 0.727 vs 0.719 at k=60
BM25_WEIGHT = 1.0
MAX_QUERY_TERMS = 64
MAX_DF = 0.2
MAX_POSTINGS = 0.3
PRUNE_MIN_CHUNKS = 20_000

_STOPWORDS_TEXT = """a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
no nor not of off on once only or other our ours ourselves out over own same she should so some such than
that the their theirs them themselves then there these they this those through to too under until up very
was we were what when where which while who whom why will with would you your yours yourself yourselves"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


# (chunk_id, score, 1-based rank in each list, raw score in each list: cosine, -bm25)
Scored = tuple[int, float, dict[str, int], dict[str, float]]


@dataclass
class Hit:
    """One chunk found, with where it comes from."""

    chunk_id: int
    document_id: int
    doc_key: str  # the JSONL id, or the file path
    uri: str
    title: str
    kind: str
    collection: str
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
    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # 1-based rank in each list that found it
    similarity: float | None = None  # cosine with the query, when the vector list found it
    bm25: float | None = None  # -bm25 (higher is better), when the BM25 list found it

    def as_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_key,
            "chunk_id": self.chunk_id,
            "score": round(float(self.score), 6),
            "title": self.title,
            "uri": self.uri,
            "collection": self.collection,
            "lines": [self.line_start, self.line_end] if self.line_start is not None else None,
            "pages": [self.page_start, self.page_end] if self.page_start is not None else None,
            "text": self.text,
        }


def query_words(text: str) -> list[str]:
    """The words of a query, lower-cased, once each, stop words dropped unless nothing else is left."""
    words = [w for w in re.findall(r"\w+", text.lower()) if w]
    content = [w for w in words if w not in STOPWORDS]
    seen: list[str] = []
    for w in content or words:
        if w not in seen:
            seen.append(w)
    return seen[:MAX_QUERY_TERMS]


def fts_query(text: str) -> str | None:
    """An FTS5 OR query of the text's words (each quoted: no user text is FTS5 syntax)."""
    words = query_words(text)
    return " OR ".join(f'"{w}"' for w in words) if words else None


class _Codes:
    """Every chunk's binary code and int8 vector, in memory, for the approximate vector search.

    About 430 bytes a chunk for MiniLM (48 + 384): 43 MB at 100k chunks, loaded once
    per process and reloaded after a write.
    """

    def __init__(self, store: KnowledgeStore) -> None:
        t0 = time.perf_counter()
        rows = store.execute(
            "SELECT k.chunk_id, k.bits, k.i8, d.collection FROM chunk_codes k "
            "JOIN chunks c ON c.id = k.chunk_id JOIN documents d ON d.id = c.document_id ORDER BY k.chunk_id"
        ).fetchall()
        n = len(rows)
        self.ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        nbytes = len(rows[0][1]) if rows else 0
        raw = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(n, nbytes)
        self.bits = raw.view(np.uint64) if nbytes % 8 == 0 else raw
        dim = len(rows[0][2]) if rows else 0
        self.i8 = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.int8).reshape(n, dim)
        norms = np.sqrt(np.einsum("ij,ij->i", self.i8, self.i8, dtype=np.float32)) if n else np.zeros(0)
        norms[norms == 0] = 1.0
        self.inv_norms = (1.0 / norms).astype(np.float32)
        names = sorted({r[3] for r in rows})
        self.collection_names = {name: i for i, name in enumerate(names)}
        self.collections = np.fromiter((self.collection_names[r[3]] for r in rows), dtype=np.int32, count=n)
        log.debug("loaded %d chunk codes in %.0f ms", n, (time.perf_counter() - t0) * 1000)

    def search(
        self, qv: np.ndarray, center: np.ndarray | None, n: int, candidates: int, collection: str | None
    ) -> list[tuple[int, float]]:
        """Hamming scan for ``candidates`` chunks, int8 cosine re-scoring, the best n."""
        qbits = np.packbits((qv - center if center is not None else qv) > 0)
        q = qbits.view(np.uint64) if self.bits.dtype == np.uint64 else qbits
        dist = np.bitwise_count(self.bits ^ q).sum(axis=1, dtype=np.int32)
        big = np.iinfo(np.int32).max
        if collection is not None:
            cid = self.collection_names.get(collection)
            if cid is None:
                return []
            dist = np.where(self.collections == cid, dist, big)
        m = min(max(candidates, n), len(dist))
        if m <= 0:
            return []
        idx = np.argpartition(dist, m - 1)[:m] if m < len(dist) else np.arange(len(dist))
        if collection is not None:
            idx = idx[dist[idx] != big]
        # einsum, not BLAS: OpenBLAS goes multi-threaded above ~1,000 rows and, on a busy 2-core
        # machine, that took 16 ms instead of 1
        sims = np.einsum("ij,j->i", self.i8[idx].astype(np.float32), qv) * self.inv_norms[idx]
        order = np.argsort(-sims)[:n]
        return [(int(self.ids[idx[i]]), float(sims[i])) for i in order]


@dataclass(frozen=True)
class SearchSettings:
    exact_limit: int = EXACT_LIMIT
    candidates: int = CANDIDATES
    fusion_depth: int = FUSION_DEPTH
    rrf_k: int = RRF_K
    bm25_weight: float = BM25_WEIGHT
    # words found in more than this share of the chunks are left out of the BM25 query (they add
    # little to the score and most of the cost: FTS5 scores every match); 1.0 keeps every word
    max_df: float = MAX_DF
    max_postings: float = MAX_POSTINGS  # and the kept words' frequencies add up to at most this share
    prune_min_chunks: int = PRUNE_MIN_CHUNKS  # below this many chunks every word is kept


class Searcher:
    """Searches one knowledge base; keep one per process (it caches the binary codes)."""

    def __init__(
        self, store: KnowledgeStore, embedder: Embedder | None = None, settings: SearchSettings | None = None
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or SearchSettings()
        self._codes: _Codes | None = None
        self._codes_version: tuple[int, int] | None = None
        self._count: tuple[tuple[int, int], int] | None = None
        self._model_checked = False
        self._tok: Any = None
        self.overlap_embedding = True
        self._df_cache: dict[str, int] = {}
        self._df_version: tuple[int, int] | None = None
        self.last_timings: dict[str, float] = {}

    def _version(self) -> tuple[int, int]:
        """Changes whenever this or another connection commits a write."""
        return (self.store.data_version(), self.store.conn.total_changes)

    def chunk_count(self) -> int:
        """Chunks in the knowledge base (cached until the next write)."""
        v = self._version()
        if self._count is None or self._count[0] != v:
            self._count = (v, self.store.chunk_count())
        return self._count[1]

    # -- the three lists -------------------------------------------------------------

    def _words_to_keep(self, words: list[str]) -> list[str]:
        """Drop words whose stem is in more than max_df of the chunks (keeping the rarest if all are)."""
        n_chunks = self.chunk_count()
        if self.settings.max_df >= 1.0 or n_chunks < self.settings.prune_min_chunks or len(words) < 2:
            return words
        c = self.store.conn
        if self._tok is None:
            # the query's words go through the index's own tokenizer (porter stems) in a private
            # in-memory database (writes there leave the store's change counters alone) ...
            from ..db import sqlite_module

            tok = sqlite_module().connect(":memory:", check_same_thread=False)
            tok.execute(f"CREATE VIRTUAL TABLE qtok USING fts5(t, tokenize='{FTS_TOKENIZER}')")
            tok.execute("CREATE VIRTUAL TABLE qtok_v USING fts5vocab('qtok', 'instance')")
            # ... and the stems' document frequencies come from the index's vocabulary
            c.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_vocab USING fts5vocab(main, 'chunks_fts', 'row')"
            )
            self._tok = tok
        version = self._version()
        if self._df_version != version:
            self._df_cache.clear()
            self._df_version = version
        tok = self._tok
        tok.execute("DELETE FROM qtok")
        tok.executemany("INSERT INTO qtok (rowid, t) VALUES (?, ?)", list(enumerate(words, start=1)))
        stems: dict[int, list[str]] = {}
        for term, doc in tok.execute("SELECT term, doc FROM qtok_v"):
            stems.setdefault(int(doc), []).append(term)
        limit = self.settings.max_df * n_chunks
        dfs = []
        for i, w in enumerate(words, start=1):
            df = 0
            for term in stems.get(i, []):
                if term not in self._df_cache:
                    row = c.execute("SELECT doc FROM temp.kb_vocab WHERE term = ?", (term,)).fetchone()
                    self._df_cache[term] = int(row[0]) if row else 0
                df = max(df, self._df_cache[term])
            dfs.append((df, w))
        # rarest first, while the postings FTS5 will score stay within the budget
        budget = self.settings.max_postings * n_chunks
        kept: set[str] = set()
        total = 0
        for df, w in sorted(dfs):
            if df > limit or (kept and total + df > budget):
                break
            kept.add(w)
            total += df
        if not kept:
            kept = {w for _, w in sorted(dfs)[:2]}
        return [w for w in words if w in kept]

    def bm25(self, query: str, n: int, collection: str | None = None) -> list[tuple[int, float]]:
        """(chunk_id, score) best first; score = -bm25 (higher is better)."""
        words = query_words(query)
        if not words:
            return []
        words = self._words_to_keep(words)
        q = " OR ".join(f'"{w}"' for w in words)
        if collection is None:
            rows = self.store.execute(
                "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?",
                (q, n),
            ).fetchall()
        else:
            rows = self.store.execute(
                "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid IN "
                "(SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.collection = ?) "
                "ORDER BY s LIMIT ?",
                (q, collection, n),
            ).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]

    def _need_embedder(self) -> Embedder:
        if self.embedder is None:
            raise UsageError("vector search needs the embedding model; open the knowledge base with one")
        if not self._model_checked:
            self.store.check_model(self.embedder.info)
            self._model_checked = True
        return self.embedder

    def vector(
        self, query: str | np.ndarray, n: int, collection: str | None = None, *, exact: bool | None = None
    ) -> list[tuple[int, float]]:
        """(chunk_id, cosine similarity) best first."""
        if isinstance(query, str):
            t0 = time.perf_counter()
            qv = self._need_embedder().embed_query(query)
            self.last_timings["embed_ms"] = (time.perf_counter() - t0) * 1000
        else:
            qv = np.asarray(query, dtype=np.float32)
        if not self.store._vec_ready:
            return []
        total = self.chunk_count() if exact is None else 0
        if exact or (exact is None and total <= self.settings.exact_limit):
            return self._vector_exact(qv, n, collection)
        return self._vector_approx(qv, n, collection)

    def _vector_exact(self, qv: np.ndarray, n: int, collection: str | None) -> list[tuple[int, float]]:
        if collection is None:
            rows = self.store.execute(
                "SELECT rowid, distance FROM chunks_vec WHERE embedding MATCH ? AND k = ?",
                (qv.astype(np.float32).tobytes(), n),
            ).fetchall()
        else:
            rows = self.store.execute(
                "SELECT rowid, distance FROM chunks_vec WHERE embedding MATCH ? AND k = ? AND collection = ?",
                (qv.astype(np.float32).tobytes(), n, collection),
            ).fetchall()
        return [(int(r[0]), 1.0 - float(r[1])) for r in rows]

    def codes(self) -> _Codes:
        version = self._version()
        if self._codes is None or self._codes_version != version:
            self._codes = _Codes(self.store)
            self._codes_version = version
        return self._codes

    def _vector_approx(self, qv: np.ndarray, n: int, collection: str | None) -> list[tuple[int, float]]:
        return self.codes().search(qv, self.store.code_center(), n, self.settings.candidates, collection)

    # -- fused -----------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        collection: str | None = None,
        min_similarity: float | None = None,
    ) -> list[Hit]:
        """The k best chunks for a query.

        ``min_similarity`` drops vector matches below that cosine similarity (BM25
        matches stay): for grounding, where an unrelated chunk is worse than none.
        """
        if mode not in MODES:
            raise UsageError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if not query or not query.strip():
            raise UsageError("empty query")
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        self.last_timings = {}
        t0 = time.perf_counter()
        scored = self._scored(query, k, mode, collection, min_similarity)
        hits = self.hydrate(scored[:k])
        self.last_timings["total_ms"] = (time.perf_counter() - t0) * 1000
        return hits

    def _scored(
        self, query: str, k: int, mode: str, collection: str | None, min_similarity: float | None = None
    ) -> list[Scored]:
        depth = max(k, self.settings.fusion_depth)
        if mode == "bm25":
            t = time.perf_counter()
            res = self.bm25(query, k, collection)
            self.last_timings["bm25_ms"] = (time.perf_counter() - t) * 1000
            return [(cid, s, {"bm25": i + 1}, {"bm25": s}) for i, (cid, s) in enumerate(res)]
        if mode == "vector":
            t = time.perf_counter()
            res = self.vector(query, k, collection)
            if min_similarity is not None:
                res = [r for r in res if r[1] >= min_similarity]
            self.last_timings["vector_ms"] = (time.perf_counter() - t) * 1000
            return [(cid, s, {"vector": i + 1}, {"vector": s}) for i, (cid, s) in enumerate(res)]
        t = time.perf_counter()
        # the question is embedded on the compute thread (llama.cpp, GIL released) while FTS5 runs
        # BM25 here (GIL released too), when the compute thread is another one
        embedder = self._need_embedder()
        future = compute.submit(embedder.embed_query, query) if self.overlap_embedding else None
        if future is None:
            b = self.bm25(query, depth, collection)
            t1 = time.perf_counter()
            v = self.vector(query, depth, collection)
            if min_similarity is not None:
                v = [r for r in v if r[1] >= min_similarity]
            self.last_timings["bm25_ms"] = (t1 - t) * 1000
            self.last_timings["vector_ms"] = (time.perf_counter() - t1) * 1000
            return self._fused(b, v)
        try:
            b = self.bm25(query, depth, collection)
        finally:
            qv = future.result()
        t1 = time.perf_counter()
        self.last_timings["embed_ms"] = (t1 - t) * 1000
        v = self.vector(qv, depth, collection)
        if min_similarity is not None:
            v = [r for r in v if r[1] >= min_similarity]
        t2 = time.perf_counter()
        self.last_timings["bm25_ms"] = (t1 - t) * 1000  # overlapped with embed_ms
        self.last_timings["vector_ms"] = (t2 - t1) * 1000
        return self._fused(b, v)

    def _fused(self, b: list[tuple[int, float]], v: list[tuple[int, float]]) -> list[Scored]:
        """The fused list, each entry with the raw scores of the lists that found it."""
        raw: dict[int, dict[str, float]] = {}
        for name, lst in (("bm25", b), ("vector", v)):
            for cid, s in lst:
                raw.setdefault(cid, {})[name] = s
        fused = fuse(b, v, rrf_k=self.settings.rrf_k, bm25_weight=self.settings.bm25_weight)
        return [(cid, s, ranks, raw[cid]) for cid, s, ranks in fused]

    def close(self) -> None:
        """Close the tokenizer connection (the store and model are closed by their owner)."""
        if self._tok is not None:
            self._tok.close()
            self._tok = None

    def hydrate(self, scored: list[Scored] | list[tuple[int, float]]) -> list[Hit]:
        """Chunk ids (with scores) to full hits, in the same order."""
        if not scored:
            return []
        ids = [s[0] for s in scored]
        rows = self.store.execute(
            "SELECT c.id, c.document_id, d.doc_key, d.uri, d.title, d.kind, d.collection, c.ordinal, c.text, "
            "c.heading, c.char_start, c.char_end, c.line_start, c.line_end, c.page_start, c.page_end, c.n_tokens "
            f"FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
        by_id = {r[0]: r for r in rows}
        hits = []
        for s in scored:
            r = by_id.get(s[0])
            if r is None:  # deleted since the index lists were read
                continue
            ranks: dict[str, int] = s[2] if len(s) > 2 else {}
            raw: dict[str, float] = s[3] if len(s) > 3 else {}
            sim, bm = raw.get("vector"), raw.get("bm25")
            hits.append(Hit(*r, score=float(s[1]), ranks=dict(ranks), similarity=sim, bm25=bm))  # type: ignore[misc]
        return hits

    def search_documents(
        self,
        query: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        collection: str | None = None,
        depth: int | None = None,
    ) -> list[Hit]:
        """The k best documents, each as its best chunk (documents ranked by their best chunk)."""
        if mode not in MODES:
            raise UsageError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if not query or not query.strip():
            raise UsageError("empty query")
        self.last_timings = {}
        t0 = time.perf_counter()
        n = depth or max(k * 4, 40)
        scored = self._scored(query, n, mode, collection)
        hits = self.hydrate(scored)
        best: dict[int, Hit] = {}
        for h in hits:
            if h.document_id not in best:
                best[h.document_id] = h
            if len(best) >= k:
                break
        self.last_timings["total_ms"] = (time.perf_counter() - t0) * 1000
        return list(best.values())


def fuse(
    bm25: list[tuple[int, float]],
    vector: list[tuple[int, float]],
    *,
    rrf_k: int = RRF_K,
    bm25_weight: float = BM25_WEIGHT,
) -> list[tuple[int, float, dict[str, int]]]:
    """Reciprocal rank fusion: score = w/(rrf_k + rank_bm25) + 1/(rrf_k + rank_vector)."""
    scores: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, lst, w in (("bm25", bm25, bm25_weight), ("vector", vector, 1.0)):
        for i, (cid, _s) in enumerate(lst):
            scores[cid] = scores.get(cid, 0.0) + w / (rrf_k + i + 1)
            ranks.setdefault(cid, {})[name] = i + 1
    order = sorted(scores, key=lambda c: -scores[c])
    return [(c, scores[c], ranks[c]) for c in order]


def with_settings(searcher: Searcher, **kw: Any) -> Searcher:
    """A searcher sharing the store and model with other settings (for tuning)."""
    s = Searcher(searcher.store, searcher.embedder, replace(searcher.settings, **kw))
    return s
