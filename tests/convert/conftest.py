"""Fixtures for the converter tests: tiny generated models, and llama.cpp run on the results."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import cvt_models  # noqa: E402

ROOT = HERE.parent.parent
MINILM_SRC = ROOT / "models" / "sources" / "all-MiniLM-L6-v2"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the network: the Hub is offline and its cache is a scratch dir."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))


class Runner:
    """A GGUF loaded by llama.cpp (C API through llama-cpp-python), F32 KV cache for exact comparisons."""

    def __init__(
        self,
        path: Path,
        *,
        lora: Path | None = None,
        lora_scale: float = 1.0,
        embeddings: bool = False,
        n_ctx: int = 128,
    ) -> None:
        import llama_cpp as L

        from assistant.engine.backend import LlamaModel

        self.L = L
        self.model = LlamaModel(Path(path))
        p = L.llama_context_default_params()
        p.n_ctx = p.n_batch = p.n_ubatch = n_ctx
        p.n_threads = p.n_threads_batch = 1  # tiny models: threads only add sync cost on a busy 2-core box
        p.type_k = p.type_v = 0  # GGML_TYPE_F32: the default F16 cache adds its own rounding
        p.flash_attn_type = 0  # disabled
        p.no_perf = True
        if embeddings:
            p.embeddings = True
            p.pooling_type = 1  # mean
        self.ptr = L.llama_init_from_model(self.model.ptr, p)
        assert self.ptr, f"llama.cpp could not create a context for {path}"
        self._lora = None
        if lora is not None:
            self._lora = self.model.load_adapter(Path(lora))
            arr = (L.llama_adapter_lora_p_ctypes * 1)(self._lora)
            scales = (ctypes.c_float * 1)(lora_scale)
            assert L.llama_set_adapters_lora(self.ptr, arr, 1, scales) == 0

    def _clear(self) -> None:
        mem = self.L.llama_get_memory(self.ptr)
        if mem:
            self.L.llama_memory_clear(mem, True)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits after each prefix (one decode per token, the simplest exact way)."""
        L = self.L
        self._clear()
        rows = []
        one = (L.llama_token * 1)()
        for t in ids:
            one[0] = int(t)
            assert L.llama_decode(self.ptr, L.llama_batch_get_one(one, 1)) == 0
            ptr = L.llama_get_logits_ith(self.ptr, -1)
            rows.append(np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,)).astype(np.float64))
        return np.stack(rows)

    def embedding(self, ids: Sequence[int]) -> np.ndarray:
        L = self.L
        assert len(ids) <= 512, "llama.cpp aborts on BERT inputs longer than 512 positions"
        self._clear()
        arr = (L.llama_token * len(ids))(*ids)
        assert L.llama_decode(self.ptr, L.llama_batch_get_one(arr, len(ids))) == 0
        ptr = L.llama_get_embeddings_seq(self.ptr, 0)
        v = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.model.n_embd,)
        )
        v = v.astype(np.float64)
        return v / np.linalg.norm(v)

    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        return self.model.tokenize(text, add_special=add_special, parse_special=True)

    def meta(self, key: str) -> str | None:
        return self.model.meta(key)

    def close(self) -> None:
        if self.ptr:
            self.L.llama_free(self.ptr)
            self.ptr = None
        self.model.close()


@pytest.fixture
def llama_run() -> Iterator[Callable[..., Runner]]:
    opened: list[Runner] = []

    def open_(path: Path, **kw: object) -> Runner:
        r = Runner(path, **kw)  # type: ignore[arg-type]
        opened.append(r)
        return r

    yield open_
    for r in opened:
        r.close()


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run ``python -m convert`` (or the assistant CLI with assistant=True) in a subprocess."""

    def run(
        *args: str,
        assistant: bool = False,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        preexec: Callable[[], None] | None = None,
    ) -> CliResult:
        full = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
        full["HF_HUB_OFFLINE"] = "1"
        full.update(env or {})
        cmd = [sys.executable, "-m", "assistant" if assistant else "convert", *args]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> cvt_models.TinyModel:
    """A tiny llama with attention biases (exercises the Q/K permutation of biases too)."""
    return cvt_models.make_decoder(tmp_path_factory.mktemp("tiny-llama") / "model", attention_bias=True)


@pytest.fixture(scope="session")
def tiny_adapter(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama: cvt_models.TinyModel
) -> cvt_models.TinyAdapter:
    """LoRA on every attention and MLP projection."""
    return cvt_models.make_adapter(tmp_path_factory.mktemp("tiny-adapter") / "adapter", tiny_llama)


@pytest.fixture(scope="session")
def minilm_src() -> Path:
    if not (MINILM_SRC / "model.safetensors").is_file():
        pytest.fail(f"{MINILM_SRC} is missing: run ./setup.sh (it extracts and converts MiniLM) first")
    return MINILM_SRC


def ids_battery(tok: object) -> list[list[int]]:
    texts = [
        "The quick brown fox",
        "def add(a, b): return a + b",
        "Numbers 12345 and café 🙂",
        "Hello world, again and again",
    ]
    return [tok.encode(t).ids for t in texts]  # type: ignore[attr-defined]
