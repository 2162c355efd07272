"""The embedding model through llama.cpp: unit vectors, sane similarities, no abort on long input."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.errors import KnowledgeBaseError, ModelNotFoundError


def test_vectors_are_unit_length_and_meaningful(embedder) -> None:
    texts = [
        "The cat sat on the mat.",
        "A kitten was sitting on the rug.",
        "Quarterly revenue grew by eight percent.",
    ]
    v = embedder.embed(texts)
    assert v.shape == (3, embedder.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > 0.5 > sims[0, 2]


def test_batching_gives_the_same_vectors_as_one_by_one(embed_model_path, embedder) -> None:
    from assistant.knowledge.embed import Embedder

    texts = [f"document {i} is about {'cats' if i % 2 else 'finance'} and more" for i in range(9)]
    single = embedder.embed(texts)
    with Embedder(embed_model_path, max_seqs=4, batch_tokens=1024) as batched:
        many = batched.embed(texts)
    assert np.allclose(single, many, atol=1e-4)


def test_input_longer_than_the_model_is_truncated_not_fatal(embedder) -> None:
    long_text = "word " * 5000  # ~5000 tokens, the model has 512 positions
    toks, cut = embedder.encode_input(long_text)
    assert cut and len(toks) == embedder.max_tokens
    v = embedder.embed_query(long_text)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


def test_model_info_is_recorded_and_a_different_model_is_refused(embedder, store, tmp_path) -> None:
    from assistant.knowledge.embed import EmbeddingModelInfo

    info = embedder.info
    assert info.dim == 384 and len(info.sha256) == 64 and info.max_tokens == 512
    store.bind_model(info, {"max_tokens": 256, "overlap": 32})
    other = EmbeddingModelInfo("other.gguf", "0" * 64, 768, 512)
    with pytest.raises(KnowledgeBaseError, match="built with the embedding model"):
        store.check_model(other)


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    from assistant.knowledge.embed import resolve_embed_model

    with pytest.raises(ModelNotFoundError, match="assistant setup"):
        resolve_embed_model(tmp_path, None)
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_embed_model(tmp_path, "nope.gguf")


def test_auto_threads_follow_the_machine_per_batch(embed_model_path, tmp_path, monkeypatch) -> None:
    """#17: each batch runs on the CPU free then (a fake 2-core machine), same vectors."""
    import llama_cpp as L

    from assistant.engine import threads as T
    from assistant.knowledge.embed import Embedder

    proc = tmp_path / "proc"
    (proc / "self" / "task" / "1").mkdir(parents=True)
    (proc / "self" / "task" / "1" / "stat").write_text("1 (python) R 1\n")
    (proc / "cpuinfo").write_text("processor : 0\ncore id : 0\n\nprocessor : 1\ncore id : 1\n\n")
    for name, value in [
        ("proc", proc),
        ("cgroup", tmp_path),
        ("affinity", lambda pid: {0, 1}),
        ("online", 2),
    ]:
        monkeypatch.setattr(T.SYSTEM, name, value)
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by eight percent."]
    vectors, ran = [], []
    for others in (0, 1):
        (proc / "loadavg").write_text(f"1.0 1.0 1.0 {others + 1}/90 1234\n")
        with Embedder(embed_model_path) as e:
            vectors.append(e.embed(texts))
            ran.append((e.n_threads, L.llama_n_threads(e._ctx.ptr)))
    assert ran == [(2, 2), (1, 1)]
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)
