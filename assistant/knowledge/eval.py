"""Retrieval quality on labelled data: BEIR queries + qrels -> nDCG@10, Recall@10/100, MRR@10.

Documents are ranked by their best chunk (``Searcher.search_documents``) and
identified by ``doc_key`` (the JSONL id, or the file path), the same ids a
BEIR qrels file uses. Graded relevance is honoured by nDCG (gain = grade);
recall and MRR count any grade > 0 as relevant.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .search import Searcher


@dataclass(frozen=True)
class Query:
    id: str
    text: str


def load_queries(path: str | Path) -> list[Query]:
    """BEIR queries JSONL: {"_id" (or "id"), "text"} a line; bad lines are an error naming the line."""
    out = []
    p = Path(path)
    try:
        content = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read the queries file {p}: {exc.strerror}") from exc
    for n, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{p} line {n}: not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise UsageError(f"{p} line {n}: expected a JSON object")
        qid = obj.get("_id", obj.get("id"))
        text = obj.get("text", obj.get("query"))
        if qid is None or not isinstance(text, str) or not text.strip():
            raise UsageError(f'{p} line {n}: expected {{"_id", "text"}}')
        out.append(Query(str(qid), text))
    return out


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV (query-id, corpus-id, score; a header line is allowed)."""
    p = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    try:
        content = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read the qrels file {p}: {exc.strerror}") from exc
    for n, line in enumerate(content.splitlines(), start=1):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3 or not line.strip():
            if line.strip():
                raise UsageError(f"{p} line {n}: expected query-id<TAB>corpus-id<TAB>score")
            continue
        try:
            score = int(float(parts[2]))
        except ValueError:
            if n == 1:
                continue  # header
            raise UsageError(f"{p} line {n}: score {parts[2]!r} is not a number") from None
        qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def ndcg_at(ranked: list[str], rel: dict[str, int], k: int = 10) -> float:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in rel.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: list[str], rel: dict[str, int], k: int) -> float:
    relevant = {d for d, g in rel.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranked[:k])) / len(relevant)


def mrr_at(ranked: list[str], rel: dict[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if rel.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


@dataclass
class EvalResult:
    mode: str
    queries: int
    ndcg_10: float
    recall_10: float
    recall_100: float
    mrr_10: float
    ms_per_query: float

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "queries": self.queries,
            "ndcg@10": round(self.ndcg_10, 4),
            "recall@10": round(self.recall_10, 4),
            "recall@100": round(self.recall_100, 4),
            "mrr@10": round(self.mrr_10, 4),
            "ms_per_query": round(self.ms_per_query, 2),
        }


def run_queries(
    searcher: Searcher, queries: list[Query], *, k: int, mode: str, collection: str | None = None
) -> Iterator[tuple[Query, list[str]]]:
    for q in queries:
        hits = searcher.search_documents(q.text, k, mode=mode, collection=collection, depth=max(k, 100))
        yield q, [h.doc_key for h in hits]


def evaluate(
    searcher: Searcher,
    queries: list[Query],
    qrels: dict[str, dict[str, int]],
    *,
    mode: str,
    collection: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Metrics over the queries that have judgements (others are ignored, as in BEIR)."""
    judged = [q for q in queries if q.id in qrels]
    if not judged:
        raise UsageError("none of the queries has a judgement in the qrels file; do the ids match?")
    tot = {"ndcg": 0.0, "r10": 0.0, "r100": 0.0, "mrr": 0.0}
    t0 = time.perf_counter()
    for q, ranked in run_queries(searcher, judged, k=100, mode=mode, collection=collection):
        rel = qrels[q.id]
        tot["ndcg"] += ndcg_at(ranked, rel, 10)
        tot["r10"] += recall_at(ranked, rel, 10)
        tot["r100"] += recall_at(ranked, rel, 100)
        tot["mrr"] += mrr_at(ranked, rel, 10)
        if progress is not None:
            progress(1)
    n = len(judged)
    return EvalResult(
        mode,
        n,
        tot["ndcg"] / n,
        tot["r10"] / n,
        tot["r100"] / n,
        tot["mrr"] / n,
        (time.perf_counter() - t0) * 1000 / n,
    )
