"""Thin, explicit wrapper over llama.cpp's C API (through llama-cpp-python's ctypes).

We drive llama.cpp directly instead of through ``llama_cpp.Llama``: its
``create_chat_completion`` spends a quarter of decode time in per-token Python
work, silently falls back to another chat template, and cannot swap LoRA
adapters on a loaded model. Everything here is one C call away from llama.h.

This module imports ``llama_cpp`` at import time; the rest of the package only
imports it lazily (CLI start-up stays fast).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import llama_cpp as L

from .. import interrupt
from ..errors import ModelError
from . import compute

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("assistant.llama")

_GGML_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_init_lock = threading.Lock()
_initialised = False
_verbose = False
_last_level = logging.DEBUG


@L.llama_log_callback
@interrupt.c_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """Route llama.cpp's log to Python logging; silent unless verbose."""
    global _last_level
    lvl = _last_level if level == 5 else _GGML_LEVELS.get(level, logging.DEBUG)
    _last_level = lvl
    if _verbose:
        msg = text.decode("utf-8", errors="replace").rstrip("\n")
        if msg:
            log.log(max(lvl, logging.INFO), "%s", msg)


def init_backend(verbose: bool = False) -> None:
    """Initialise llama.cpp once per process and route its log output."""
    global _initialised, _verbose
    _verbose = verbose
    with _init_lock:
        if _initialised:
            return
        L.llama_log_set(_log_callback, ctypes.c_void_p(0))
        L.llama_backend_init()
        _load_cpu_variants()
        _initialised = True


def cpu_variant_dir() -> Path | None:
    """Where a portable build keeps its CPU code, one library per x86-64 level, or None.

    A build with GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS (scripts/build_portable_llama.sh) has no
    CPU backend linked in: llama.cpp loads none until asked, and then picks the best variant for
    the CPU it runs on. The libraries land next to libllama or in the wheel's bin/.
    """
    pkg = Path(L.__file__).resolve().parent
    for d in (pkg / "lib", pkg.parent / "bin"):
        if any(d.glob("libggml-cpu-*.so")):
            return d
    return None


def loaded_library(stem: str) -> ctypes.CDLL:
    """The copy of ``stem`` (e.g. "libggml-base") that libllama itself loaded.

    A wheel holds libggml-base.so, .so.0 and .so.0.x as three copies, not links, and libllama
    loads the .so.0 one: opening another copy by path would give a second ggml in the process,
    with its own backend registry and tables. So the path is taken from the process's own map.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if Path(path).name.startswith(f"{stem}.so"):
                    return ctypes.CDLL(path)
    except OSError:
        pass  # not Linux: the library next to libllama
    return ctypes.CDLL(str(Path(L.__file__).resolve().parent / "lib" / f"{stem}.so"))


def _load_cpu_variants() -> None:
    where = cpu_variant_dir()
    if where is None:
        return  # the usual build: the CPU backend is linked into libggml
    ggml = loaded_library("libggml")
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load_all_from_path.restype = None
    ggml.ggml_backend_load_all_from_path(str(where).encode())
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_dev_count() == 0:
        raise ModelError(
            f"llama.cpp found no CPU backend it can run in {where} (a portable build whose "
            "libggml-cpu-*.so files are missing or all need a newer CPU); reinstall llama-cpp-python"
        )


def system_info() -> str:
    return L.llama_print_system_info().decode("utf-8", errors="replace").strip()


@dataclass(frozen=True)
class ContextConfig:
    n_ctx: int
    n_threads: int
    n_batch: int = 512
    embeddings: bool = False
    pooling: int | None = None  # LLAMA_POOLING_TYPE_*; None = the model's own
    n_seq_max: int = 1  # sequences one embedding batch may hold (LlamaContext.embed)


class SpecialToken(NamedTuple):
    text: str
    lstrip: bool  # llama.cpp strips the whitespace before it
    rstrip: bool  # ... and after it


class LlamaModel:
    """A loaded GGUF model (weights memory-mapped)."""

    def __init__(self, path: Path, *, n_gpu_layers: int = 0, use_mmap: bool = True) -> None:
        init_backend(_verbose)
        params = L.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        if not use_mmap:  # llama.h has no use_mmap field (ctypes would take the name silently): load_mode
            params.load_mode = L.LLAMA_LOAD_MODE_NONE  # weights in writable memory (training writes them)
        self.path = path
        self._ptr = L.llama_model_load_from_file(str(path).encode(), params)
        if not self._ptr:
            raise ModelError(f"llama.cpp could not load {path}; run with --verbose to see its log")
        self.vocab = L.llama_model_get_vocab(self._ptr)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = L.llama_model_n_ctx_train(self._ptr)
        self.n_embd = L.llama_model_n_embd(self._ptr)
        self.bos = L.llama_vocab_bos(self.vocab)
        self.eos = L.llama_vocab_eos(self.vocab)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}  # token (or -token-1 with special) -> piece
        self._eog: dict[int, bool] = {}
        self._special: dict[int, SpecialToken | None] = {}
        self._adapters: dict[str, ctypes.c_void_p] = {}

    @property
    def ptr(self) -> ctypes.c_void_p:
        if not self._ptr:
            raise ModelError(f"{self.path} was already closed")
        return self._ptr

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = L.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            L.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 16
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """Bytes of one token (may be a partial UTF-8 sequence).

        Memoised, as is is_eog(): each ctypes call releases and retakes the GIL, and in the
        TUI every retake can wait for the UI thread (bounded by the vocabulary size).
        """
        key = -token - 1 if special else token
        cached = self._pieces.get(key)
        if cached is None:
            cached = self._pieces[key] = self._piece(token, special)
        return cached

    def _piece(self, token: int, special: bool) -> bytes:
        buf = self._piece_buf
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return b"".join(self.piece(t, special=special) for t in tokens).decode("utf-8", errors="replace")

    def special(self, token: int) -> SpecialToken | None:
        """A control token's literal text (what parse_special matches) and strip flags; else None."""
        if token not in self._special:
            attr = int(L.llama_vocab_get_attr(self.vocab, token))
            text = L.llama_vocab_get_text(self.vocab, token).decode("utf-8", errors="replace")
            control = attr & (L.LLAMA_TOKEN_ATTR_CONTROL | L.LLAMA_TOKEN_ATTR_UNKNOWN)
            self._special[token] = (
                SpecialToken(
                    text, bool(attr & L.LLAMA_TOKEN_ATTR_LSTRIP), bool(attr & L.LLAMA_TOKEN_ATTR_RSTRIP)
                )
                if control
                else None
            )
        return self._special[token]

    def is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = bool(L.llama_vocab_is_eog(self.vocab, token))
        return eog

    def load_adapter(self, path: Path) -> ctypes.c_void_p:
        key = str(path)
        if key not in self._adapters:
            ptr = L.llama_adapter_lora_init(self.ptr, key.encode())
            if not ptr:
                raise ModelError(
                    f"llama.cpp could not load the LoRA adapter {path} on {self.path.name}; "
                    "is it a GGUF LoRA made for this base model? (--verbose shows llama.cpp's log)"
                )
            self._adapters[key] = ptr
        return self._adapters[key]

    def close(self) -> None:
        if self._ptr:
            for ptr in self._adapters.values():
                L.llama_adapter_lora_free(ptr)
            self._adapters.clear()
            L.llama_model_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        with contextlib.suppress(Exception):
            self.close()


class LlamaContext:
    """An inference context: KV cache plus the tokens it currently holds."""

    def __init__(self, model: LlamaModel, config: ContextConfig) -> None:
        self.model = model
        self.config = config
        params = L.llama_context_default_params()
        params.n_ctx = config.n_ctx
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch
        params.n_threads = config.n_threads
        params.n_threads_batch = config.n_threads
        params.no_perf = True
        if config.embeddings:
            params.embeddings = True
            params.n_ubatch = config.n_ctx
            params.n_batch = config.n_ctx
            if config.pooling is not None:
                params.pooling_type = config.pooling
            params.n_seq_max = max(1, min(config.n_seq_max, 256))  # LLAMA_MAX_SEQ
        self._ptr = L.llama_init_from_model(model.ptr, params)
        if not self._ptr:
            raise ModelError(
                f"llama.cpp could not create a {config.n_ctx}-token context for {model.path.name} "
                "(out of memory?); try a smaller --ctx"
            )
        self.n_ctx = L.llama_n_ctx(self._ptr)
        self._threads = config.n_threads
        self.cached: list[int] = []  # tokens whose keys/values are in the cache, in order
        self._one = (L.llama_token * 1)()
        self._cancel: threading.Event | None = None  # set: decode() stops (the TUI's Esc)
        self._abort_cb = L.ggml_abort_callback(self._should_abort)
        self._abortable = False
        self._set_abortable(True)

    def _set_abortable(self, on: bool) -> None:
        """The abort callback for long computations only: llama.cpp calls it after every graph
        node (515 Python calls a token for SmolLM2-135M), which a one-token step() does not need:
        it ends within milliseconds, and Python handles a Ctrl+C as soon as it returns."""
        if on != self._abortable:
            cb = self._abort_cb if on else L.ggml_abort_callback()  # NULL: no callback
            L.llama_set_abort_callback(self._ptr, cb, None)
            self._abortable = on

    @interrupt.c_callback
    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        """Asked by llama.cpp after each graph node: stop on Ctrl+C, on the caller giving up
        (compute.run), or on the cancel event given to decode(). Never raises (ctypes would
        print and drop the exception)."""
        cancel = self._cancel
        return interrupt.pending() or compute.abandoned() or (cancel is not None and cancel.is_set())

    @property
    def ptr(self) -> ctypes.c_void_p:
        return self._ptr

    @property
    def n_threads(self) -> int:
        return self._threads

    def set_threads(self, n: int) -> None:
        """Threads for the next decodes (one-token steps and prompt batches alike). Cheap
        between two decodes: OpenMP's team takes the new size at its next parallel region
        (2-core VM at load ~3, 2026-11-30: switching 2/1 at every token decoded 74-82 tok/s,
        at or above the harmonic mean of fixed 2 and fixed 1, 73; scripts/bench_threads.py
        --switch). The count is remembered here: no ctypes call (and GIL retake) when it is
        unchanged."""
        if n < 1:
            raise ModelError(f"thread count must be >= 1, got {n}")
        if n != self._threads:
            L.llama_set_n_threads(self._ptr, n, n)
            self._threads = n

    def set_adapters(self, adapters: Sequence[tuple[ctypes.c_void_p, float]]) -> None:
        n = len(adapters)
        ptr_type = L.llama_adapter_lora_p_ctypes
        arr = (ptr_type * max(n, 1))(*[ctypes.cast(a, ptr_type) for a, _ in adapters])
        scales = (ctypes.c_float * max(n, 1))(*[s for _, s in adapters])
        rc = L.llama_set_adapters_lora(self._ptr, arr, n, scales)
        if rc != 0:
            raise ModelError(f"llama.cpp refused the LoRA adapters (error {rc})")
        self.clear()  # cached keys/values were computed with the old weights

    def clear(self) -> None:
        L.llama_memory_clear(L.llama_get_memory(self._ptr), True)
        self.cached = []

    def keep_prefix(self, n: int) -> None:
        """Drop cached tokens from position n on (reuse the prefix)."""
        if n >= len(self.cached):
            return
        if n <= 0 or not L.llama_memory_seq_rm(L.llama_get_memory(self._ptr), -1, n, -1):
            self.clear()
            return
        del self.cached[n:]

    def decode(self, tokens: Sequence[int], *, cancel: threading.Event | None = None) -> bool:
        """Evaluate tokens after the cached ones, in n_batch slices; True when all were.

        Setting ``cancel`` stops a long prompt within a graph node, not a whole slice later:
        False is returned, the slices evaluated before stay cached (llama.cpp drops the
        stopped one from its cache, and it never joined ``cached``).
        """
        if not tokens:  # no logits to sample from afterwards: llama.cpp would abort
            raise ModelError("nothing to decode: the prompt has no tokens")
        step = self.config.n_batch
        self._set_abortable(True)
        self._cancel = cancel
        try:
            for i in range(0, len(tokens), step):
                if cancel is not None and cancel.is_set():
                    return False
                part = tokens[i : i + step]
                arr = (L.llama_token * len(part))(*part)
                rc = compute.run(L.llama_decode, self._ptr, L.llama_batch_get_one(arr, len(part)))
                if rc == 2 and cancel is not None and cancel.is_set() and not interrupt.pending():
                    return False
                self._check(rc)
                self.cached.extend(part)
        finally:
            self._cancel = None
        return True

    def step(self, token: int, sampler: Sampler) -> int:
        """Decode one token, then sample the next: one trip to the compute thread per
        generated token (sampling there too keeps the caller off the cores while llama.cpp's
        threads are still spinning down from the decode)."""
        self._one[0] = token
        batch = L.llama_batch_get_one(self._one, 1)
        self._set_abortable(False)

        def work() -> tuple[int, int]:
            rc = L.llama_decode(self._ptr, batch)
            return (rc, -1) if rc != 0 else (0, int(L.llama_sampler_sample(sampler.ptr, self._ptr, -1)))

        rc, nxt = compute.run(work)
        self._check(rc)
        self.cached.append(token)
        return nxt

    def _check(self, rc: int) -> None:
        if rc == 0:
            return
        if rc == 1:
            raise ModelError(f"the {self.n_ctx}-token context is full; start a new chat or raise --ctx")
        if rc == 2:
            interrupt.check()  # Ctrl+C arrived while llama.cpp computed: raise it here
            raise ModelError("decoding was aborted")
        raise ModelError(f"llama.cpp failed to decode (error {rc}); --verbose shows its log")

    def embed(self, seqs: Sequence[Sequence[int]]) -> list[bytes]:
        """Pooled embeddings (float32 bytes, n_embd each) of token sequences in one batch.

        Embedding contexts only. Each sequence gets its own seq_id; the caller keeps
        every sequence within the model's positions and the total within n_ctx and
        n_seq_max (llama.cpp aborts the process on some overflows).
        """
        total = sum(len(s) for s in seqs)
        if not self.config.embeddings:
            raise ModelError("embed() needs a context created with embeddings=True")
        if not seqs or any(len(s) == 0 for s in seqs):
            raise ModelError("embed() needs non-empty token sequences")
        if total > self.n_ctx or len(seqs) > L.llama_n_seq_max(self._ptr):
            raise ModelError(
                f"embedding batch of {len(seqs)} sequences / {total} tokens exceeds the context "
                f"({L.llama_n_seq_max(self._ptr)} sequences / {self.n_ctx} tokens)"
            )
        batch = L.llama_batch_init(total, 0, 1)
        try:
            i = 0
            for sid, seq in enumerate(seqs):
                for pos, tok in enumerate(seq):
                    batch.token[i] = tok
                    batch.pos[i] = pos
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = sid
                    batch.logits[i] = 1
                    i += 1
            batch.n_tokens = total
            self._set_abortable(True)
            mem = L.llama_get_memory(self._ptr)
            if mem:
                L.llama_memory_clear(mem, True)
            self._check(compute.run(L.llama_decode, self._ptr, batch))
            nbytes = self.model.n_embd * 4
            out = []
            for sid in range(len(seqs)):
                ptr = L.llama_get_embeddings_seq(self._ptr, sid)
                if not ptr:
                    raise ModelError(
                        f"{self.model.path.name} returned no pooled embedding; "
                        "is it an embedding model with a pooling type?"
                    )
                out.append(ctypes.string_at(ptr, nbytes))
            return out
        finally:
            L.llama_batch_free(batch)

    def logits(self) -> ctypes.Array[ctypes.c_float]:
        ptr = L.llama_get_logits_ith(self._ptr, -1)
        return (ctypes.c_float * self.model.n_vocab).from_address(ctypes.addressof(ptr.contents))

    def eval_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Evaluate ``tokens`` from position 0 (the cache is cleared first) and return the logits
        after every one of them: a float32 numpy array of shape (len(tokens), n_vocab).

        For measurements (quantization quality); chat uses decode() + logits(). The tokens must
        fit the context and the vocabulary (checked here: llama.cpp aborts on some bad input).
        """
        import numpy as np

        n, n_vocab = len(tokens), self.model.n_vocab
        if self.config.embeddings:
            raise ModelError("eval_logits() needs a context created with embeddings=False")
        if n == 0 or n > self.n_ctx:
            raise ModelError(f"eval_logits() takes 1 to {self.n_ctx} tokens (the context), got {n}")
        if any(not 0 <= t < n_vocab for t in tokens):
            raise ModelError(f"eval_logits(): a token id is outside the vocabulary (0..{n_vocab - 1})")
        self.clear()
        self._set_abortable(True)
        out = np.empty((n, n_vocab), dtype=np.float32)
        step = self.config.n_batch
        for start in range(0, n, step):
            part = tokens[start : start + step]
            batch = L.llama_batch_init(len(part), 0, 1)
            try:
                for i, tok in enumerate(part):
                    batch.token[i] = int(tok)
                    batch.pos[i] = start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = 1
                batch.n_tokens = len(part)
                self._check(compute.run(L.llama_decode, self._ptr, batch))
            finally:
                L.llama_batch_free(batch)
            self.cached.extend(int(t) for t in part)
            ptr = L.llama_get_logits(self._ptr)
            out[start : start + len(part)] = np.ctypeslib.as_array(ptr, shape=(len(part), n_vocab))
        return out

    def close(self) -> None:
        if self._ptr:
            L.llama_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:  # pragma: no cover
        with contextlib.suppress(Exception):
            self.close()


class Sampler:
    """A llama.cpp sampler chain built from SamplingParams."""

    def __init__(
        self,
        model: LlamaModel,
        *,
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float,
        repeat_penalty: float,
        repeat_last_n: int,
        seed: int,
    ) -> None:
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        self._ptr = chain
        add = lambda s: L.llama_sampler_chain_add(chain, s)  # noqa: E731
        if top_k > 0:
            add(L.llama_sampler_init_top_k(top_k))
        if repeat_penalty != 1.0 and repeat_last_n != 0:
            add(L.llama_sampler_init_penalties(model.n_vocab, repeat_last_n, repeat_penalty, 0.0, 0.0))
        if temperature <= 0:
            add(L.llama_sampler_init_greedy())
            return
        if top_p < 1.0:
            add(L.llama_sampler_init_top_p(top_p, 1))
        if min_p > 0.0:
            add(L.llama_sampler_init_min_p(min_p, 1))
        add(L.llama_sampler_init_temp(temperature))
        add(L.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    @property
    def ptr(self) -> ctypes.c_void_p:
        return self._ptr

    def sample(self, ctx: LlamaContext) -> int:
        """Sample the next token from the last logits (and accept it)."""
        return int(L.llama_sampler_sample(self._ptr, ctx.ptr, -1))

    def accept(self, token: int) -> None:
        L.llama_sampler_accept(self._ptr, token)

    def close(self) -> None:
        if self._ptr:
            L.llama_sampler_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:  # pragma: no cover
        with contextlib.suppress(Exception):
            self.close()
