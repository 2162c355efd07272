#!/usr/bin/env python
"""What `PRAGMA quick_check` costs when a knowledge base is opened, against the open itself.

    .venv/bin/python scripts/bench_kb_check.py [--chunks 3000 10000 30000] [--rounds 5]

Builds knowledge bases of N chunks through KnowledgeStore (real SQLite, FTS5, sqlite-vec;
texts from the SciFact corpus in ../shared/eval when present, else generated; random unit
vectors, 384 dims: quick_check reads pages, not meanings), then times, with a cold page cache
where the OS lets us drop it (else warm, said in the output; --warm keeps it): opening for reading (the anchor),
quick_check alone, and opening for writing (migrate + quick_check). Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "eval" / "scifact" / "corpus.jsonl"

from assistant.db import quick_check  # noqa: E402
from assistant.knowledge.embed import EmbeddingModelInfo  # noqa: E402
from assistant.knowledge.store import ChunkRecord, KnowledgeStore  # noqa: E402

DIM = 384


def texts(n: int) -> list[str]:
    out: list[str] = []
    if CORPUS.is_file():
        with open(CORPUS, encoding="utf-8") as fh:
            for line in fh:
                out.append(json.loads(line)["text"][:1200])
                if len(out) >= n:
                    break
    rng = np.random.default_rng(3)
    words = [f"word{i}" for i in range(5000)]
    while len(out) < n:
        out.append(" ".join(rng.choice(words, 180)))
    return out


def build(path: Path, n: int) -> None:
    store = KnowledgeStore(path)
    store.bind_model(EmbeddingModelInfo("bench.gguf", "0" * 64, DIM, 256), {"max_tokens": 256, "overlap": 32})
    rng = np.random.default_rng(5)
    body = texts(n)
    per_doc = 10
    for start in range(0, n, 500):
        with store.transaction() as c:
            for d in range(start, min(n, start + 500), per_doc):
                doc = store.start_document(c, uri=f"/bench/{d}.txt", doc_key=f"/bench/{d}.txt",
                                           source=f"/bench/{d}.txt", title=f"doc {d}", kind="txt",
                                           collection="", sha256="0" * 64, mtime=0.0, size=0)  # fmt: skip
                recs = [ChunkRecord(i, body[d + i], "", 0, len(body[d + i]), None, None, None, None, 200,
                                    body[d + i]) for i in range(min(per_doc, n - d))]  # fmt: skip
                vecs = rng.standard_normal((len(recs), DIM)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                store.add_chunks(c, doc, recs, vecs)
                store.finish_section(c, doc, 1, complete=True)
    store.close()


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def timed(fn: object, rounds: int, warm: bool) -> tuple[float, bool]:
    times, cold = [], not warm
    for _ in range(rounds):
        cold = cold and drop_caches()
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), cold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, nargs="+", default=[3000, 10000, 30000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warm", action="store_true", help="keep the page cache (default: drop it, if root)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.chunks:
            path = Path(tmp) / f"kb{n}.db"
            build(path, n)

            def open_read(p: Path = path) -> None:
                KnowledgeStore(p, readonly=True).close()

            def check_only(p: Path = path) -> None:
                s = KnowledgeStore(p, readonly=True)
                assert quick_check(s.conn) is None
                s.close()

            def open_write(p: Path = path) -> None:
                KnowledgeStore(p).close()

            read_ms, cold = timed(open_read, args.rounds, args.warm)
            check_ms, _ = timed(check_only, args.rounds, args.warm)
            write_ms, _ = timed(open_write, args.rounds, args.warm)
            print(json.dumps({
                "chunks": n, "file_mb": round(path.stat().st_size / 1e6, 1), "cache": "cold" if cold else "warm",
                "open_read_ms": round(read_ms, 1), "open_read_plus_quick_check_ms": round(check_ms, 1),
                "open_write_ms": round(write_ms, 1),
                "quick_check_ms_per_mb": round((check_ms - read_ms) / (path.stat().st_size / 1e6), 2),
            }))  # fmt: skip


if __name__ == "__main__":
    main()
