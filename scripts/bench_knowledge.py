#!/usr/bin/env python
"""Knowledge base performance: ingest speed vs sentence-transformers, query latency, recall, size.

    .venv/bin/python scripts/bench_knowledge.py ingest --st-python /tmp/stvenv/bin/python [-n 400]
    .venv/bin/python scripts/bench_knowledge.py latency --kb /tmp/kb-eval/scifact.db [--target 100000]
    .venv/bin/python scripts/bench_knowledge.py batching [-n 200]
    .venv/bin/python scripts/bench_knowledge.py pdf [--pages 2000] [--lines 2] [--rounds 1]

ingest: the same SciFact documents through `index add`'s pipeline (chunk, embed on llama.cpp, write
SQLite) and through sentence-transformers on torch CPU (the same model, all-MiniLM-L6-v2, in a
separate venv: never a project dependency), alternated A/B/A/B in one run; best of each, ratio quoted.
Tokens are model input tokens (special tokens included; sentence-transformers cuts at 256).

pdf: `assistant index add` (a subprocess, as a user runs it) of a generated text PDF of --pages pages
(--lines lines of varied sentences each), against the anchor of the same text as a plain-text file
(pages separated by blank lines), alternated in one run; wall seconds, pages/s, the PDF/text time
ratio, chunks and tokens, and the load average before each run (the machine may be shared).

latency: embedding plus hybrid search per query (SciFact test queries), p50/p95, on the real SciFact
knowledge base (~10k chunks), then on a copy grown to --target chunks. The extra chunks are synthetic:
vectors are normalised blends of two real chunk vectors (random weights), texts are real chunk texts;
that keeps the vector and BM25 workloads realistic without hours of embedding. Reports recall@10 of
the vector search against exact KNN, and bytes per chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EVAL = ROOT.parent / "shared" / "eval"
MODEL = ROOT / "models" / "all-MiniLM-L6-v2.gguf"

from assistant.knowledge.embed import Embedder  # noqa: E402
from assistant.knowledge.eval import load_queries  # noqa: E402
from assistant.knowledge.ingest import Ingestor  # noqa: E402
from assistant.knowledge.search import Searcher, SearchSettings  # noqa: E402
from assistant.knowledge.store import ChunkRecord, KnowledgeStore  # noqa: E402

ST_SCRIPT = r"""
import json, sys, time
import torch
from sentence_transformers import SentenceTransformer
torch.set_num_threads(int(sys.argv[3]))
texts = json.load(open(sys.argv[1]))
m = SentenceTransformer(sys.argv[2], device="cpu")
m.encode(texts[:16], batch_size=16)
ntok = sum(min(len(ids), m.max_seq_length) for ids in m.tokenizer(texts)["input_ids"])
t = time.perf_counter()
m.encode(texts, batch_size=32, normalize_embeddings=True)
dt = time.perf_counter() - t
print(json.dumps({"tokens": ntok, "seconds": dt, "tokens_per_s": ntok / dt, "torch": torch.__version__}))
"""


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}


def subset_corpus(n: int, out: Path) -> Path:
    with open(EVAL / "scifact" / "corpus.jsonl", encoding="utf-8") as fh, open(out, "w") as w:
        for i, line in enumerate(fh):
            if i >= n:
                break
            w.write(line)
    return out


def ingest(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-kb-"))
    corpus = subset_corpus(args.n, tmp / "corpus.jsonl")
    ours, theirs = [], []
    texts_file = tmp / "texts.json"
    st_dir = args.st_model
    runtime = ""
    for rnd in range(args.rounds):
        db = tmp / f"r{rnd}.db"
        e = Embedder(args.model, n_threads=args.threads)
        store = KnowledgeStore(db)
        t0 = time.perf_counter()
        Ingestor(store, e).add([corpus])
        dt = time.perf_counter() - t0
        ours.append({"tokens": e.tokens_embedded, "seconds": dt, "tokens_per_s": e.tokens_embedded / dt})
        runtime = e.runtime_path.name  # the model file, or its BF16 working copy (knowledge/bf16.py)
        if rnd == 0:
            texts = []
            for doc_title, text, heading in store.execute(
                "SELECT d.title, c.text, c.heading FROM chunks c JOIN documents d ON d.id = c.document_id"
            ):
                from assistant.knowledge.ingest import make_index_text

                texts.append(make_index_text(doc_title, heading, text))
            texts_file.write_text(json.dumps(texts))
        store.close()
        e.close()
        print(f"# ours  round {rnd}: {ours[-1]['tokens_per_s']:.0f} tokens/s", file=sys.stderr, flush=True)
        r = subprocess.run(
            [args.st_python, "-c", ST_SCRIPT, str(texts_file), str(st_dir), str(args.threads or 2)],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )
        if r.returncode != 0:
            sys.exit(f"sentence-transformers failed: {r.stderr[-2000:]}")
        theirs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(f"# st    round {rnd}: {theirs[-1]['tokens_per_s']:.0f} tokens/s", file=sys.stderr, flush=True)
    best_o = max(ours, key=lambda x: x["tokens_per_s"])
    best_t = max(theirs, key=lambda x: x["tokens_per_s"])
    print(
        json.dumps(
            {
                "bench": "ingest",
                **machine(),
                "documents": args.n,
                "ours_tokens_per_s": round(best_o["tokens_per_s"], 1),
                "ours_rounds": [round(x["tokens_per_s"], 1) for x in ours],
                "sentence_transformers_tokens_per_s": round(best_t["tokens_per_s"], 1),
                "st_rounds": [round(x["tokens_per_s"], 1) for x in theirs],
                "torch": best_t.get("torch"),
                "ratio": round(best_o["tokens_per_s"] / best_t["tokens_per_s"], 2),
                "model": Path(args.model).name,
                "runs_from": runtime,
            }
        )
    )
    shutil.rmtree(tmp, ignore_errors=True)


def batching(args: argparse.Namespace) -> None:
    """Tokens/s of the embedder for several batch shapes (one sequence per decode vs several)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    corpus = subset_corpus(args.n, tmp / "c.jsonl")
    texts = []
    for line in corpus.read_text().splitlines():
        d = json.loads(line)
        texts.append(f"{d['title']}\n\n{d['text']}")
    out = {}
    for max_seqs, batch_tokens in ((1, 512), (4, 512), (8, 1024), (16, 2048), (64, 8192)):
        e = Embedder(args.model, max_seqs=max_seqs, batch_tokens=batch_tokens, n_threads=args.threads)
        inputs = [e.encode_input(t)[0][:256] for t in texts]
        e.embed_tokens(inputs[:10])
        t0 = time.perf_counter()
        e.embed_tokens(inputs)
        dt = time.perf_counter() - t0
        out[f"{max_seqs}x{batch_tokens}"] = round(sum(map(len, inputs)) / dt, 1)
        e.close()
        print(
            f"# {max_seqs} seqs / {batch_tokens} tokens: {out[f'{max_seqs}x{batch_tokens}']} tokens/s",
            file=sys.stderr,
        )
    print(json.dumps({"bench": "batching", **machine(), "tokens_per_s": out}))
    shutil.rmtree(tmp, ignore_errors=True)


_WORDS = [
    "pump", "valve", "oil", "filter", "pressure", "boiler", "seal", "gasket", "motor", "bearing", "belt",
    "sensor", "alarm", "panel", "fuse", "relay", "cable", "hose", "clamp", "nozzle", "tank", "drain", "vent",
    "coil", "fan", "heater", "thermostat", "meter", "gauge", "switch", "lever"
]  # fmt: skip


def _pdf_pages(n: int, lines: int, seed: int = 5) -> list[str]:
    """Pages of short maintenance sentences (Helvetica-safe ASCII), different on every page."""
    rng = np.random.default_rng(seed)
    pages = []
    for i in range(1, n + 1):
        rows = []
        for j in range(lines):
            a, b, c = (str(w) for w in rng.choice(_WORDS, 3))
            rows.append(
                f"{i}.{j + 1} Check the {a} near the {b} every {int(rng.integers(2, 30))} days; replace the {c}."
            )
        pages.append("\n".join(rows))
    return pages


def pdf(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "knowledge"))
    from pdfgen import make_pdf  # the tests' minimal PDF writer: one text line per PDF line

    tmp = Path(tempfile.mkdtemp(prefix="bench-pdf-"))
    pages = _pdf_pages(args.pages, args.lines)
    inputs = {"text": tmp / "handbook.txt", "pdf": tmp / "handbook.pdf"}
    inputs["text"].write_text("\n\n".join(pages) + "\n")
    inputs["pdf"].write_bytes(make_pdf(pages))
    runs: dict[str, list[dict[str, object]]] = {"text": [], "pdf": []}
    threads = ["--threads", str(args.threads)] if args.threads else []
    for rnd in range(args.rounds):
        for what, path in inputs.items():
            load = os.getloadavg()[0]
            kb = tmp / f"{what}{rnd}.db"
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "assistant",
                    "index",
                    "add",
                    str(path),
                    "--kb",
                    str(kb),
                    "--json",
                    *threads,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            dt = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime  # less bent by other load
            if r.returncode != 0:
                sys.exit(f"index add {path.name} failed: {r.stderr[-2000:]}")
            rep = json.loads(r.stdout)
            runs[what].append({"seconds": round(dt, 1), "cpu_seconds": round(cpu, 1), "chunks": rep["chunks"],
                               "tokens": rep["tokens"], "load_before": round(load, 1)})  # fmt: skip
            print(
                f"# round {rnd} {what}: {dt:.1f} s ({cpu:.1f} s CPU), {rep['chunks']} chunks, load {load:.1f}",
                file=sys.stderr,
                flush=True,
            )
    best = {w: min(float(str(x["seconds"])) for x in v) for w, v in runs.items()}
    best_cpu = {w: min(float(str(x["cpu_seconds"])) for x in v) for w, v in runs.items()}
    print(
        json.dumps(
            {
                "bench": "pdf",
                **machine(),
                "pages": args.pages,
                "lines_per_page": args.lines,
                "pdf_bytes": inputs["pdf"].stat().st_size,
                "text_bytes": inputs["text"].stat().st_size,
                "best_seconds": best,
                "pdf_pages_per_s": round(args.pages / best["pdf"], 1),
                "pdf_vs_text_time": round(best["pdf"] / best["text"], 2),
                "best_cpu_seconds": best_cpu,
                "pdf_vs_text_cpu": round(best_cpu["pdf"] / best_cpu["text"], 2),
                "rounds": runs,
                "load_after": round(os.getloadavg()[0], 1),
            }
        )
    )
    shutil.rmtree(tmp, ignore_errors=True)


def _latencies(s: Searcher, queries: list[str], k: int = 10) -> tuple[float, float]:
    for q in queries[:5]:
        s.search(q, k)  # warm up (codes loaded, caches hot)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        s.search(q, k, mode="hybrid")
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[round(0.95 * (len(times) - 1))]


def _recall(store: KnowledgeStore, e: Embedder, queries: list[str], settings: SearchSettings) -> float:
    exact = Searcher(store, e, SearchSettings(exact_limit=10**12))
    approx = Searcher(store, e, settings)
    rec = []
    for q in queries:
        qv = e.embed_query(q)
        a = {c for c, _ in exact.vector(qv, 10, exact=True)}
        b = {c for c, _ in approx.vector(qv, 10)}
        rec.append(len(a & b) / 10)
    return float(np.mean(rec))


def _size(path: Path, store: KnowledgeStore) -> dict[str, float]:
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n = store.chunk_count()
    size = path.stat().st_size
    return {"chunks": n, "file_bytes": size, "bytes_per_chunk": round(size / n, 1)}


def grow(src: Path, dst: Path, target: int, e: Embedder, seed: int = 7) -> KnowledgeStore:
    shutil.copy(src, dst)
    store = KnowledgeStore(dst)
    store.rebuild_codes()  # codes around the mean of the real vectors, as a fresh index has
    rows = store.execute(
        "SELECT c.id, c.text, c.n_tokens, v.embedding FROM chunks c JOIN chunks_vec v ON v.rowid = c.id"
    ).fetchall()
    vecs = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    rng = np.random.default_rng(seed)
    need = target - len(rows)
    batch = 5000
    made = 0
    while made < need:
        n = min(batch, need - made)
        a = rng.integers(0, len(rows), n)
        b = rng.integers(0, len(rows), n)
        w = rng.uniform(0.3, 0.7, (n, 1)).astype(np.float32)
        v = w * vecs[a] + (1 - w) * vecs[b]
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        with store.transaction() as c:
            doc = store.start_document(
                c,
                uri=f"synthetic://{made}",
                doc_key=f"synthetic-{made}",
                source="synthetic",
                title="synthetic",
                kind="jsonl",
                collection="",
                sha256="-",
                mtime=None,
                size=None,
            )
            recs = [
                ChunkRecord(
                    i,
                    rows[int(a[i])][1],
                    "",
                    0,
                    0,
                    None,
                    None,
                    None,
                    None,
                    rows[int(a[i])][2],
                    rows[int(a[i])][1],
                )
                for i in range(n)
            ]
            store.add_chunks(c, doc, recs, v)
            store.finish_section(c, doc, 1, complete=True)
        made += n
        print(f"# grown by {made}/{need}", file=sys.stderr, flush=True)
    return store


def latency(args: argparse.Namespace) -> None:
    e = Embedder(args.model, n_threads=args.threads)
    queries = [q.text for q in load_queries(EVAL / "scifact" / "queries.jsonl")][: args.queries]
    src = Path(args.kb)
    store = KnowledgeStore(src, readonly=True)
    out: dict[str, object] = {"bench": "latency", **machine(), "queries": len(queries)}
    s = Searcher(store, e)
    p50, p95 = _latencies(s, queries)
    out["base"] = {
        **_size(src, store),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "path": "exact (vec0)",
    }
    # the binary-code path on the same data, for comparison
    s2 = Searcher(store, e, SearchSettings(exact_limit=0))
    p50b, p95b = _latencies(s2, queries)
    out["base_binary"] = {"p50_ms": round(p50b, 1), "p95_ms": round(p95b, 1),
                          "recall@10_vs_exact": round(_recall(store, e, queries, SearchSettings(exact_limit=0)), 4)}  # fmt: skip
    store.close()
    tmp = Path(tempfile.mkdtemp(prefix="bench-lat-"))
    big_path = Path(args.big) if args.big else tmp / "big.db"
    big = KnowledgeStore(big_path) if big_path.exists() else grow(src, big_path, args.target, e)
    s = Searcher(big, e)
    p50, p95 = _latencies(s, queries)
    t0 = time.perf_counter()
    ex = Searcher(big, e, SearchSettings(exact_limit=10**12))
    p50x, p95x = _latencies(ex, queries[:60])
    out["grown"] = {
        **_size(big_path, big),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "path": "binary codes + int8 re-scoring",
        "recall@10_vs_exact": round(_recall(big, e, queries, s.settings), 4),
        "exact_vec0_p50_ms": round(p50x, 1),
        "exact_vec0_p95_ms": round(p95x, 1),
    }
    _ = t0
    big.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ingest", "latency", "batching", "pdf"])
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("-n", type=int, default=400, help="documents for ingest / batching")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--st-python", default="/tmp/stvenv/bin/python")
    ap.add_argument("--st-model", default=str(ROOT / "models" / "sources" / "all-MiniLM-L6-v2"),
                    help="sentence-transformers copy of the model (the HF dir setup unpacked)")  # fmt: skip
    ap.add_argument("--kb", default="/tmp/kb-eval/scifact.db")
    ap.add_argument("--target", type=int, default=100_000)
    ap.add_argument("--big", help="where to keep the grown knowledge base (reused when it exists)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--pages", type=int, default=2000, help="pdf: pages of the generated PDF")
    ap.add_argument("--lines", type=int, default=2, help="pdf: text lines a page")
    args = ap.parse_args()
    {"ingest": ingest, "latency": latency, "batching": batching, "pdf": pdf}[args.what](args)


if __name__ == "__main__":
    main()
