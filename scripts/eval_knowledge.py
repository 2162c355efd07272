#!/usr/bin/env python
"""Retrieval quality and grounded-answer accuracy on the shared evaluation data (../shared/eval).

    .venv/bin/python scripts/eval_knowledge.py scifact [--split test|train] [--kb DIR]
    .venv/bin/python scripts/eval_knowledge.py tune              # hybrid settings on SciFact *train*
    .venv/bin/python scripts/eval_knowledge.py xquad             # Recall@1/3/10 of the right paragraph
    .venv/bin/python scripts/eval_knowledge.py mlqa [-n 200]     # answer contains gold: RAG on vs off, TTFT

Data is read in place; knowledge bases are built in --kb (default /tmp/kb-eval) and reused.
Prints one JSON object per result line, and a Markdown row for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import string
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EVAL = ROOT.parent / "shared" / "eval"

from assistant.home import Home  # noqa: E402
from assistant.knowledge.embed import Embedder  # noqa: E402
from assistant.knowledge.eval import evaluate, load_qrels, load_queries  # noqa: E402
from assistant.knowledge.ingest import Ingestor  # noqa: E402
from assistant.knowledge.search import Searcher, SearchSettings  # noqa: E402
from assistant.knowledge.store import KnowledgeStore  # noqa: E402

MODEL = ROOT / "models" / "all-MiniLM-L6-v2.gguf"


def build(kb_dir: Path, name: str, corpus: Path, embedder: Embedder) -> KnowledgeStore:
    kb_dir.mkdir(parents=True, exist_ok=True)
    store = KnowledgeStore(kb_dir / f"{name}.db")
    t0 = time.perf_counter()
    rep = Ingestor(store, embedder).add([corpus])
    if rep.chunks:
        print(
            f"# indexed {name}: {rep.chunks} chunks, {rep.tokens} tokens in {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
    return store


def scifact(args: argparse.Namespace, embedder: Embedder) -> None:
    store = build(args.kb, "scifact", EVAL / "scifact" / "corpus.jsonl", embedder)
    queries = load_queries(EVAL / "scifact" / "queries.jsonl")
    qrels = load_qrels(EVAL / "scifact" / "qrels" / f"{args.split}.tsv")
    s = Searcher(store, embedder)
    for mode in ("bm25", "vector", "hybrid"):
        r = evaluate(s, queries, qrels, mode=mode)
        print(json.dumps({"data": f"scifact-{args.split}", **r.as_dict()}))


def tune(args: argparse.Namespace, embedder: Embedder) -> None:
    """Grid over RRF k and the BM25 weight, on SciFact train only."""
    store = build(args.kb, "scifact", EVAL / "scifact" / "corpus.jsonl", embedder)
    queries = load_queries(EVAL / "scifact" / "queries.jsonl")
    qrels = load_qrels(EVAL / "scifact" / "qrels" / "train.tsv")
    # embed each query once; reuse across settings
    judged = [q for q in queries if q.id in qrels]
    base = Searcher(store, embedder)
    bm = {q.id: base.bm25(q.text, 100) for q in judged}
    vec = {q.id: base.vector(q.text, 100) for q in judged}
    from assistant.knowledge.eval import ndcg_at
    from assistant.knowledge.search import fuse

    def doc_rank(scored: list) -> list[str]:
        hits = base.hydrate([(c, s) for c, s, *_ in scored])
        seen: dict[str, None] = {}
        for h in hits:
            seen.setdefault(h.doc_key, None)
        return list(seen)

    for name, lists in (("bm25", bm), ("vector", vec)):
        score = sum(ndcg_at(doc_rank(lists[q.id]), qrels[q.id]) for q in judged) / len(judged)
        print(json.dumps({"data": "scifact-train", "mode": name, "ndcg@10": round(score, 4)}))
    for rrf_k in (10, 30, 60, 100):
        for w in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0):
            score = 0.0
            for q in judged:
                fused = fuse(bm[q.id], vec[q.id], rrf_k=rrf_k, bm25_weight=w)
                score += ndcg_at(doc_rank(fused), qrels[q.id])
            print(
                json.dumps(
                    {
                        "data": "scifact-train",
                        "mode": "hybrid",
                        "rrf_k": rrf_k,
                        "bm25_weight": w,
                        "ndcg@10": round(score / len(judged), 4),
                    }
                ),
                flush=True,
            )
    _ = SearchSettings


def xquad(args: argparse.Namespace, embedder: Embedder) -> None:
    d = EVAL / "xquad_en" / "beir"
    store = build(args.kb, "xquad", d / "corpus.jsonl", embedder)
    queries = load_queries(d / "queries.jsonl")
    qrels = load_qrels(d / "qrels" / "test.tsv")
    s = Searcher(store, embedder)
    for mode in ("bm25", "vector", "hybrid"):
        hit = {1: 0, 3: 0, 10: 0}
        n = 0
        for q in queries:
            if q.id not in qrels:
                continue
            n += 1
            ranked = [h.doc_key for h in s.search_documents(q.text, 10, mode=mode)]
            for k in hit:
                if any(r in qrels[q.id] for r in ranked[:k]):
                    hit[k] += 1
        print(
            json.dumps(
                {
                    "data": "xquad_en",
                    "mode": mode,
                    "queries": n,
                    **{f"recall@{k}": round(v / n, 4) for k, v in hit.items()},
                }
            )
        )


def _norm(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(pred: str, golds: list[str]) -> float:
    best = 0.0
    p = _norm(pred).split()
    for g in golds:
        gt = _norm(g).split()
        common = Counter(p) & Counter(gt)
        same = sum(common.values())
        if same == 0:
            continue
        prec, rec = same / len(p), same / len(gt)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def mlqa(args: argparse.Namespace, embedder: Embedder) -> None:
    """Does the default model's answer contain a gold answer, with retrieval on vs off? And TTFT."""
    from assistant.engine import ChatModel, Message, SamplingParams
    from assistant.knowledge.grounding import ground
    from assistant.knowledge.kb import KnowledgeBase

    d = EVAL / "mlqa_en"
    store = build(args.kb, "mlqa", d / "beir" / "corpus.jsonl", embedder)
    store.close()
    with open(d / "mlqa_en_dev.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()][: args.n]
    chat = ChatModel(ROOT / "models" / "SmolLM2-135M-Instruct.Q8_0.gguf", n_ctx=2048)
    kb = KnowledgeBase.open(Home(ROOT / "models"), args.kb / "mlqa.db")
    params = SamplingParams().with_(temperature=0.0, max_tokens=48)
    count = lambda s: len(chat.tokenize(s))  # noqa: E731
    res = {"off": [], "on": []}
    retrieved = 0
    for i, row in enumerate(rows):
        golds = row["answers"]["text"]
        q = row["question"]
        for cond in ("off", "on"):
            chat._ctx.clear()  # no prefix reuse between questions: TTFT of a fresh prompt
            if cond == "off":
                msgs = [Message("user", q)]
                rms = 0.0
            else:
                t0 = time.perf_counter()
                g = ground(q, kb, count_tokens=count, budget_tokens=args.budget, k=args.k)
                rms = (time.perf_counter() - t0) * 1000
                msgs = g.messages
                if any(s.doc_id == row["context_id"] for s in g.sources) or any(
                    any(gold in s.text for gold in golds) for s in g.sources
                ):
                    retrieved += 1
            t0 = time.perf_counter()
            stream = chat.chat(msgs, params)
            answer = stream.text()
            ttft = stream.result.timings.ttft_ms if stream.result else 0.0
            contains = any(_norm(gd) in _norm(answer) for gd in golds if _norm(gd))
            res[cond].append((contains, _f1(answer, golds), ttft + rms, rms))
        if (i + 1) % 25 == 0:
            print(f"# {i + 1}/{len(rows)}", file=sys.stderr, flush=True)
    import statistics

    for cond, r in res.items():
        print(
            json.dumps(
                {
                    "data": "mlqa_en-dev",
                    "rag": cond,
                    "questions": len(r),
                    "contains_gold": round(sum(x[0] for x in r) / len(r), 4),
                    "token_f1": round(sum(x[1] for x in r) / len(r), 4),
                    "ttft_ms_p50": round(statistics.median(x[2] for x in r), 1),
                    "retrieval_ms_p50": round(statistics.median(x[3] for x in r), 1),
                    **(
                        {"gold_paragraph_or_answer_in_sources": round(retrieved / len(r), 4)}
                        if cond == "on"
                        else {}
                    ),
                }
            )
        )
    kb.close()
    chat.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["scifact", "tune", "xquad", "mlqa"])
    ap.add_argument("--split", default="test", choices=["test", "train"])
    ap.add_argument("--kb", type=Path, default=Path("/tmp/kb-eval"))
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("-n", type=int, default=200, help="MLQA questions")
    ap.add_argument("-k", type=int, default=3, help="MLQA sources per question")
    ap.add_argument("--budget", type=int, default=600, help="MLQA source tokens")
    args = ap.parse_args()
    embedder = Embedder(args.model)
    {"scifact": scifact, "tune": tune, "xquad": xquad, "mlqa": mlqa}[args.what](args, embedder)


if __name__ == "__main__":
    main()
