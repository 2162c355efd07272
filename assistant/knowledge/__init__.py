"""The local knowledge base: one SQLite file (FTS5 + sqlite-vec) per knowledge base.

Modules (import them directly; importing this package is cheap):

- ``kb``: ``KnowledgeBase.open(home, kb=None)``, the entry point: store + embedder + searcher.
- ``grounding``: ``ground(question, kb, count_tokens=..., budget_tokens=...)`` -> messages with
  numbered sources, ``Source`` (the one source type: shown, printed, saved with an answer), ``format_sources``.
- ``retriever``: ``Retriever``/``NoRetriever``/``open_retriever``, the seam assistant/turn.py grounds through.
- ``store``: schema, migrations, documents and chunks (``KnowledgeStore``).
- ``ingest``: walk, extract, chunk, embed, write (``Ingestor``), resumable.
- ``extract``: text out of txt/md/rst/html/pdf/code/JSONL, large files in sections.
- ``chunk``: chunks by embedding-model tokens, respecting headings and paragraphs.
- ``embed``: the GGUF embedding model on llama.cpp (``Embedder``), mean pooling, L2 norm.
- ``search``: BM25, vector (exact vec0, or binary codes + int8 re-scoring), hybrid RRF.
- ``eval``: BEIR queries/qrels -> nDCG@10, Recall@10/100, MRR@10.
"""
