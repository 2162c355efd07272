"""The knowledge base as one object, a facade over store, embedder and searcher: the entry point
for commands, the TUI and the retriever.

    kb = KnowledgeBase.open(home, kb=None)          # the default knowledge base in the model home
    hits = kb.searcher.search("question", k=5)
    kb.close()

The embedding model is the one the index was built with (recorded name,
looked up in the model home, sha256 checked), unless ``embed_model`` names
another, which is then refused if it differs. When the model file is
missing, search falls back to BM25 with ``vector_unavailable`` set.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KnowledgeBaseError, ModelNotFoundError
from ..home import Home
from .embed import Embedder, resolve_embed_model
from .search import Searcher
from .store import KnowledgeStore, resolve_kb_path

log = logging.getLogger(__name__)


@dataclass
class KnowledgeBase:
    path: Path
    store: KnowledgeStore
    embedder: Embedder | None
    searcher: Searcher
    vector_unavailable: str | None = None  # why vector search is off, if it is
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def path_for(home: Home, kb: str | os.PathLike[str] | None) -> Path:
        return resolve_kb_path(kb, home.knowledge_dir)

    @staticmethod
    def exists(home: Home, kb: str | os.PathLike[str] | None = None) -> bool:
        return KnowledgeBase.path_for(home, kb).is_file()

    @classmethod
    def open(
        cls,
        home: Home,
        kb: str | os.PathLike[str] | None = None,
        *,
        embed_model: str | os.PathLike[str] | None = None,
        create: bool = False,
        readonly: bool = True,
        need_vectors: bool = False,
        threads: int | None = None,
        verbose: bool = False,
    ) -> KnowledgeBase:
        """Open (or with create=True, create) a knowledge base and load its embedding model."""
        path = cls.path_for(home, kb)
        if not path.exists() and not create:
            raise KnowledgeBaseError(
                f"no knowledge base at {path}; create it with `assistant index add PATH...`"
                + (f" --kb {kb}" if kb else "")
            )
        store = KnowledgeStore(path, create=create, readonly=readonly and path.exists())
        embedder: Embedder | None = None
        unavailable: str | None = None
        try:
            recorded = store.model_info()
            if embed_model is not None:
                model_path = resolve_embed_model(home.root, embed_model)
            elif recorded is not None:
                candidate = home.root / recorded.name
                model_path = candidate if candidate.is_file() else resolve_embed_model(home.root, None)
            else:
                model_path = resolve_embed_model(home.root, None)
            embedder = Embedder(model_path, n_threads=threads, verbose=verbose)
            store.check_model(embedder.info)
        except ModelNotFoundError as exc:
            if need_vectors:
                store.close()
                raise
            unavailable = str(exc)
            embedder = None
        except BaseException:
            if embedder is not None:
                embedder.close()
            store.close()
            raise
        searcher = Searcher(store, embedder)
        return cls(path, store, embedder, searcher, unavailable)

    def default_mode(self, mode: str = "hybrid") -> str:
        """The search mode to use: bm25 when the embedding model is missing."""
        return "bm25" if self.embedder is None and mode != "bm25" else mode

    def close(self) -> None:
        self.searcher.close()
        if self.embedder is not None:
            self.embedder.close()
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
