"""Sentence embeddings on llama.cpp (mean pooling, L2 normalisation).

``Embedder`` loads a GGUF embedding model (all-MiniLM-L6-v2 by default) through
``engine.backend`` and turns texts into unit-length float32 vectors. llama.cpp
aborts the whole process when a BERT sequence exceeds its trained positions,
so every text is tokenised and cut to ``max_tokens`` here, before it gets
anywhere near llama.cpp.

Batching: llama.cpp batches embeddings as several sequences (separate
seq_ids) in one decode, but attention is computed across the whole batch, so
its cost grows with the square of the batch's tokens. Measured on the 2-core
dev machine (MiniLM F32, 200 SciFact abstracts cut to 256 tokens, warm):
one sequence per decode 4,500 tokens/s; up to 64 sequences in 512 tokens
1,970; in 2,048 tokens 1,670; in 8,192 tokens 470. So the default is one
sequence per decode (``max_seqs=1``); ``max_seqs``/``batch_tokens`` allow
batching for models or machines where it pays (scripts/bench_knowledge.py).

On CPUs with native BF16 an F16/F32 model runs from a BF16 copy (bf16.py:
1.37x the tokens/s here); the model's identity stays the file the user chose.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AssistantError, ModelError, ModelNotFoundError, UsageError

log = logging.getLogger(__name__)

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2.gguf"
DEFAULT_BATCH_TOKENS = 512
DEFAULT_MAX_SEQS = 1
MAX_SEQS_PER_BATCH = 64
LLAMA_POOLING_TYPE_MEAN = 1


@dataclass(frozen=True)
class EmbeddingModelInfo:
    """What an index records about the model that made its vectors."""

    name: str  # file name, e.g. all-MiniLM-L6-v2.gguf
    sha256: str
    dim: int
    max_tokens: int  # positions per sequence, special tokens included

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "dim": self.dim, "max_tokens": self.max_tokens}


def file_sha256(path: Path) -> str:
    """sha256 of a model file, cached (by size and mtime) with the model home's other checksums."""
    from ..home import Home
    from ..models.catalog import cached_sha256

    return cached_sha256(path, Home(path.parent))


def resolve_embed_model(home_root: Path, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The embedding model file: an explicit path or name in the home, else the default."""
    if explicit:
        p = Path(explicit).expanduser()
        candidates = [p] if p.is_absolute() or p.parent != Path(".") else [p, home_root / p]
        if not str(p).endswith(".gguf"):
            candidates.append(home_root / f"{p}.gguf")
        for c in candidates:
            if c.is_file():
                return c.resolve()
        raise ModelNotFoundError(
            f"embedding model {explicit!s} not found (looked for {', '.join(str(c) for c in candidates)}); "
            "give a .gguf path or a file name in the model home"
        )
    default = home_root / DEFAULT_EMBED_MODEL
    if default.is_file():
        return default
    raise ModelNotFoundError(
        f"the embedding model {default} is missing; run `assistant setup` to convert all-MiniLM-L6-v2, "
        "or pass --embed-model FILE.gguf"
    )


def _check_embedding_gguf(path: Path) -> None:
    from ..models.archs import EMBEDDING_ARCHITECTURES
    from ..models.gguf_info import read_gguf_info

    info = read_gguf_info(path)
    if info.kind == "adapter":
        raise ModelError(f"{path.name} is a LoRA adapter, not an embedding model")
    if info.architecture not in EMBEDDING_ARCHITECTURES:
        log.warning(
            "%s has architecture %r, not a known embedding architecture; using mean pooling anyway",
            path.name,
            info.architecture,
        )


class Embedder:
    """A GGUF embedding model loaded in llama.cpp; thread-safe (one call at a time)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_threads: int | None = None,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        max_seqs: int = DEFAULT_MAX_SEQS,
        bf16: str | None = None,
        verbose: bool = False,
    ) -> None:
        from ..engine import backend
        from ..engine.threads import BatchThreads, max_threads
        from .bf16 import working_copy

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"embedding model not found: {self.path}")
        _check_embedding_gguf(self.path)
        backend.init_backend(verbose)
        self._info: EmbeddingModelInfo | None = None
        self._sha256 = file_sha256(self.path)
        # what llama.cpp loads: the file itself, or its BF16 working copy (bf16.py)
        self.runtime_path = working_copy(self.path, self._sha256, mode=bf16)
        try:
            self._model = backend.LlamaModel(self.runtime_path)
        except AssistantError as exc:
            if self.runtime_path == self.path:
                raise
            # a damaged copy must not stop the knowledge base: drop it (the next run remakes it)
            log.warning(
                "the BF16 copy %s does not load (%s); removed, using %s", self.runtime_path, exc, self.path
            )
            self.runtime_path.unlink(missing_ok=True)
            self.runtime_path = self.path
            self._model = backend.LlamaModel(self.path)
        self.max_tokens = int(self._model.n_ctx_train) if self._model.n_ctx_train > 0 else 512
        self.max_tokens = min(self.max_tokens, 8192)
        self.batch_tokens = max(batch_tokens, self.max_tokens)
        self.max_seqs = max(1, min(max_seqs, MAX_SEQS_PER_BATCH))
        # None (auto): each batch runs on the CPU free then (re-checked at most 4 times a second)
        self._auto = None if n_threads else BatchThreads()
        self.n_threads = n_threads or max_threads()
        self._ctx = backend.LlamaContext(
            self._model,
            backend.ContextConfig(
                n_ctx=self.batch_tokens,
                n_threads=self.n_threads,
                embeddings=True,
                pooling=LLAMA_POOLING_TYPE_MEAN,
                n_seq_max=self.max_seqs,
            ),
        )
        import llama_cpp as L

        self._add_eos = bool(L.llama_vocab_get_add_eos(self._model.vocab))
        self.dim = int(self._model.n_embd)
        self._lock = threading.Lock()
        self.tokens_embedded = 0

    @property
    def info(self) -> EmbeddingModelInfo:
        """The model's identity, always of the file the user chose (never of a working copy)."""
        if self._info is None:
            self._info = EmbeddingModelInfo(
                name=self.path.name, sha256=self._sha256, dim=self.dim, max_tokens=self.max_tokens
            )
        return self._info

    # -- tokens ---------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of plain text, no special tokens."""
        return self._model.tokenize(text, add_special=False, parse_special=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._model.detokenize(tokens)

    def encode_input(self, text: str) -> tuple[list[int], bool]:
        """Model input for a text (special tokens added), cut to max_tokens; (tokens, truncated)."""
        toks = self._model.tokenize(text, add_special=True, parse_special=False)
        if len(toks) <= self.max_tokens:
            return toks, False
        if self._add_eos:
            return toks[: self.max_tokens - 1] + toks[-1:], True
        return toks[: self.max_tokens], True

    # -- vectors --------------------------------------------------------------

    def embed(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit vectors, one row per text (float32, shape (len(texts), dim))."""
        inputs = []
        for t in texts:
            toks, cut = self.encode_input(t if t.strip() else " ")
            if cut:
                log.info("an input of more than %d tokens was truncated for embedding", self.max_tokens)
            inputs.append(toks)
        return self.embed_tokens(inputs, progress=progress)

    def embed_tokens(
        self, inputs: Sequence[Sequence[int]], *, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Unit vectors for already tokenised inputs (each within max_tokens)."""
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        for seq in inputs:
            if not seq:
                raise UsageError("cannot embed an empty token sequence")
            if len(seq) > self.max_tokens:
                raise UsageError(
                    f"a {len(seq)}-token input exceeds the embedding model's {self.max_tokens} positions"
                )
        # similar lengths together keep batches full; results go back in input order
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        batch: list[int] = []
        n_tok = 0
        with self._lock:
            for i in order:
                n = len(inputs[i])
                if batch and (n_tok + n > self.batch_tokens or len(batch) >= self.max_seqs):
                    self._run(inputs, batch, out, progress)
                    batch, n_tok = [], 0
                batch.append(i)
                n_tok += n
            if batch:
                self._run(inputs, batch, out, progress)
        return out

    def _run(
        self,
        inputs: Sequence[Sequence[int]],
        batch: list[int],
        out: np.ndarray,
        progress: Callable[[int], None] | None,
    ) -> None:
        if self._auto is not None:
            self.n_threads = self._auto()
            self._ctx.set_threads(self.n_threads)
        raw = self._ctx.embed([inputs[i] for i in batch])
        for i, blob in zip(batch, raw, strict=True):
            v = np.frombuffer(blob, dtype=np.float32)
            norm = float(np.linalg.norm(v))
            out[i] = v / norm if norm > 0 else v
        n = sum(len(inputs[i]) for i in batch)
        self.tokens_embedded += n
        if progress is not None:
            progress(n)

    def embed_query(self, text: str) -> np.ndarray:
        """One unit vector for a query; longer than the model's context is cut, never an abort."""
        if not text.strip():
            raise UsageError("empty query")
        return self.embed([text])[0]

    def close(self) -> None:
        self._ctx.close()
        self._model.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
