"""Fixtures for the knowledge base: the real embedding model, scratch knowledge bases, SciFact data.

The embedding model is all-MiniLM-L6-v2 converted by our convert/ package
(``./setup.sh`` puts it in models/). ASSISTANT_TEST_EMBED_MODEL may point at
another GGUF embedding model (e.g. while the converter is being worked on).
The SciFact subset comes from ../shared/eval (read in place, never copied
into the project): the relevant documents of the first test queries plus a
fixed sample of others, so the retrieval-quality tests take seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
EMBED_MODEL_NAME = "all-MiniLM-L6-v2.gguf"
EVAL = ROOT.parent / "shared" / "eval"
SCIFACT = EVAL / "scifact"

SUBSET_QUERIES = 60  # test queries whose relevant documents are in the subset
SUBSET_OTHERS = 120  # other documents (distractors), a fixed random sample


@pytest.fixture(scope="session")
def embed_model_path() -> Path:
    override = os.environ.get("ASSISTANT_TEST_EMBED_MODEL")
    path = Path(override) if override else MODELS / EMBED_MODEL_NAME
    if not path.is_file():
        pytest.fail(f"{path} is missing: run ./setup.sh (it converts all-MiniLM-L6-v2 with convert/)")
    return path


@pytest.fixture(scope="session")
def embedder(embed_model_path: Path) -> Iterator[object]:
    from assistant.knowledge.embed import Embedder

    e = Embedder(embed_model_path)
    yield e
    e.close()


@pytest.fixture
def kb_home(tmp_path: Path, embed_model_path: Path, default_model_path: Path) -> Path:
    """A model home with the default chat model and the embedding model (symlinks)."""
    h = tmp_path / "home"
    h.mkdir()
    (h / EMBED_MODEL_NAME).symlink_to(embed_model_path)
    (h / default_model_path.name).symlink_to(default_model_path)
    return h


@pytest.fixture
def store(tmp_path: Path) -> Iterator[object]:
    from assistant.knowledge.store import KnowledgeStore

    s = KnowledgeStore(tmp_path / "kb.db")
    yield s
    s.close()


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    """A few small real-looking documents."""
    d = tmp_path / "docs"
    d.mkdir()
    (d / "guide.md").write_text(
        "# Widget guide\n\n## Installing\n\nTo install the widget, run `widget install --fast`. "
        "The installer needs 2 GB of free disk space.\n\n## Rotating logs\n\nLogs are rotated every "
        "Sunday at 03:00. The retention period is 14 days; older logs are compressed with zstd.\n"
    )
    (d / "facts.txt").write_text("The capital of Freedonia is Fredville.\nIt has 42,000 inhabitants.\n")
    (d / "page.html").write_text(
        "<html><head><title>Tea notes</title><style>body{color:red}</style>"
        "<script>var hidden = 'do not index me';</script></head><body><h1>Green tea</h1>"
        "<p>Green tea is brewed at 80 degrees for two minutes.</p><nav>Home | About</nav></body></html>"
    )
    (d / "tool.py").write_text(
        'def rotate(path):\n    """Rotate the log file at path."""\n    return path + ".1"\n'
    )
    return d


def kb_consistency(store: object) -> dict[str, int]:
    """Row counts that must agree in a consistent knowledge base."""
    c = store.conn  # type: ignore[attr-defined]
    counts = {
        "chunks": c.execute("SELECT count(*) FROM chunks").fetchone()[0],
        "codes": c.execute("SELECT count(*) FROM chunk_codes").fetchone()[0],
        "fts": c.execute("SELECT count(*) FROM chunks_fts_docsize").fetchone()[0],
        "vec": c.execute("SELECT count(*) FROM chunks_vec").fetchone()[0]
        if c.execute("SELECT 1 FROM sqlite_master WHERE name='chunks_vec'").fetchone()
        else 0,
        "doc_chunks": c.execute("SELECT coalesce(sum(n_chunks), 0) FROM documents").fetchone()[0],
        "orphans": c.execute(
            "SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)"
        ).fetchone()[0],
    }
    return counts


def assert_consistent(store: object) -> dict[str, int]:
    n = kb_consistency(store)
    assert n["orphans"] == 0, n
    assert n["chunks"] == n["codes"] == n["fts"] == n["vec"] == n["doc_chunks"], n
    return n


@dataclass
class SciFactSubset:
    corpus: Path  # JSONL in tmp (a subset of the shared corpus, made at test time)
    queries: Path
    qrels: Path
    n_docs: int
    n_queries: int


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="session")
def scifact_subset(tmp_path_factory: pytest.TempPathFactory) -> SciFactSubset:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact evaluation data not found at {SCIFACT}")
    out = tmp_path_factory.mktemp("scifact")
    qrels: dict[str, dict[str, int]] = {}
    with open(SCIFACT / "qrels" / "test.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            q, d, s = line.rstrip("\n").split("\t")
            qrels.setdefault(q, {})[d] = int(s)
    qids = list(qrels)[:SUBSET_QUERIES]
    relevant = {d for q in qids for d in qrels[q]}
    corpus = _read_jsonl(SCIFACT / "corpus.jsonl")
    others = [d for d in corpus if d["_id"] not in relevant]
    rng = random.Random(1234)
    chosen = {d["_id"] for d in rng.sample(others, SUBSET_OTHERS)} | relevant
    docs = [d for d in corpus if d["_id"] in chosen]
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps(d) + "\n")
    queries = {q["_id"]: q for q in _read_jsonl(SCIFACT / "queries.jsonl")}
    with open(out / "queries.jsonl", "w", encoding="utf-8") as fh:
        for q in qids:
            fh.write(json.dumps({"_id": q, "text": queries[q]["text"]}) + "\n")
    with open(out / "qrels.tsv", "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            for d, s in qrels[q].items():
                fh.write(f"{q}\t{d}\t{s}\n")
    return SciFactSubset(out / "corpus.jsonl", out / "queries.jsonl", out / "qrels.tsv", len(docs), len(qids))


@pytest.fixture(scope="session")
def scifact_kb(
    scifact_subset: SciFactSubset, embedder: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """The SciFact subset indexed once for the session (real embeddings)."""
    from assistant.knowledge.ingest import Ingestor
    from assistant.knowledge.store import KnowledgeStore

    path = tmp_path_factory.mktemp("scifact-kb") / "scifact.db"
    store = KnowledgeStore(path)
    report = Ingestor(store, embedder).add([scifact_subset.corpus])  # type: ignore[arg-type]
    assert report.failed == 0 and report.skipped == 0, report.problems
    yield store
    store.close()
