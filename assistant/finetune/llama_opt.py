"""llama.cpp's training API through ctypes: llama_opt_init / llama_opt_epoch, ggml_opt datasets and results.

The structs are declared from the vendored ``include/llama.h`` and ``include/ggml-opt.h``
(llama-cpp-python's ``llama_opt_params`` lacks the trailing ``optimizer_type``). llama.cpp
aborts the process on bad input (GGML_ASSERT), so everything is checked here before calling in:
the model is loaded without mmap (the optimizer writes the weights), the context's ``n_ctx`` is
what llama.cpp rounded it to and every window is exactly that long, ``n_ubatch == n_ctx`` (else
K and V get no gradients), the K/V cache is F32 (no F16 OUT_PROD), flash attention is off (no
backward), and every token id is inside the vocabulary.

One ``llama_opt_epoch`` call trains one window (one optimizer step): the learning rate changes
between steps through ``ggml_opt_get_constant_optimizer_params`` reading a struct we update
(ctypes cannot return a struct from a Python callback), and a Ctrl+C lands between two steps,
never inside one (an abort callback would stop a graph half way through the weight update).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import llama_cpp as L
import numpy as np

from .. import interrupt
from ..engine.backend import LlamaModel, loaded_library
from ..errors import ModelError, UsageError

log = logging.getLogger(__name__)

GGML_TYPE_I32 = 26
GGML_OPT_OPTIMIZER_TYPE_ADAMW = 0
GGML_TYPE_F32 = 0


class AdamWParams(ctypes.Structure):
    _fields_ = [
        ("alpha", ctypes.c_float),
        ("beta1", ctypes.c_float),
        ("beta2", ctypes.c_float),
        ("eps", ctypes.c_float),
        ("wd", ctypes.c_float),
    ]


class SGDParams(ctypes.Structure):
    _fields_ = [("alpha", ctypes.c_float), ("wd", ctypes.c_float)]


class OptimizerParams(ctypes.Structure):
    """struct ggml_opt_optimizer_params (ggml-opt.h)."""

    _fields_ = [("adamw", AdamWParams), ("sgd", SGDParams)]


ParamFilter = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)


class OptParams(ctypes.Structure):
    """struct llama_opt_params (llama.h), with the trailing optimizer_type the Python binding lacks."""

    _fields_ = [
        ("n_ctx_train", ctypes.c_uint32),
        ("param_filter", ParamFilter),
        ("param_filter_ud", ctypes.c_void_p),
        ("get_opt_pars", ctypes.c_void_p),  # ggml_opt_get_optimizer_params (a C function)
        ("get_opt_pars_ud", ctypes.c_void_p),
        ("optimizer_type", ctypes.c_int),
    ]


def _libs() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """libllama (already loaded by llama_cpp) and libggml-base (where ggml_opt_* live)."""
    llama = L.llama_cpp._lib
    base = loaded_library("libggml-base")
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    for name, args, res in (
        ("ggml_opt_dataset_init", [ctypes.c_int, ctypes.c_int, i64, i64, i64, i64], vp),
        ("ggml_opt_dataset_free", [vp], None),
        ("ggml_opt_dataset_data", [vp], vp),
        ("ggml_opt_dataset_labels", [vp], vp),
        ("ggml_get_data", [vp], vp),
        ("ggml_get_name", [vp], ctypes.c_char_p),
        ("ggml_opt_result_init", [], vp),
        ("ggml_opt_result_free", [vp], None),
        ("ggml_opt_result_reset", [vp], None),
        ("ggml_opt_result_ndata", [vp, ctypes.POINTER(i64)], None),
        (
            "ggml_opt_result_loss",
            [vp, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double)],
            None,
        ),
        ("ggml_opt_get_default_optimizer_params", [vp], OptimizerParams),
    ):
        fn = getattr(base, name)
        fn.argtypes, fn.restype = args, res
    llama.llama_opt_init.argtypes = [vp, vp, OptParams]
    llama.llama_opt_init.restype = None
    llama.llama_opt_epoch.argtypes = [vp, vp, vp, vp, i64, vp, vp]
    llama.llama_opt_epoch.restype = None
    return llama, base


_LIBS: tuple[ctypes.CDLL, ctypes.CDLL] | None = None


def libs() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    global _LIBS
    if _LIBS is None:
        _LIBS = _libs()
    return _LIBS


def default_adamw() -> AdamWParams:
    """llama.cpp's own AdamW defaults (alpha 1e-3, betas 0.9/0.999, eps 1e-8, no weight decay)."""
    return libs()[1].ggml_opt_get_default_optimizer_params(None).adamw


def round_ctx(n: int) -> int:
    """The n_ctx llama.cpp will give for a request of n (it pads to a multiple of 256)."""
    return max(256, -(-n // 256) * 256)


class Trainer:
    """A model loaded for training (no mmap) and one training context over it.

    ``trainable`` is the set of tensor names the optimizer updates; every other tensor is
    frozen. The token embedding can never be trained (llama.cpp skips it: a FIXME upstream).
    """

    def __init__(self, path: Path, *, window: int, threads: int, trainable: set[str], lr: float) -> None:
        if window != round_ctx(window):
            raise UsageError(f"the training window must be a multiple of 256 tokens, got {window}")
        if threads < 1:
            raise UsageError(f"thread count must be >= 1, got {threads}")
        if not trainable:
            raise UsageError("no tensor to train: --train selected nothing")
        self.llama, self.ggml = libs()
        self.model = LlamaModel(path, use_mmap=False)
        params = L.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = window
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.type_k = params.type_v = GGML_TYPE_F32
        params.no_perf = True
        self._ctx = L.llama_init_from_model(self.model.ptr, params)
        if not self._ctx:
            self.model.close()
            raise ModelError(f"llama.cpp could not create a {window}-token training context for {path.name}")
        self.window = int(L.llama_n_ctx(self._ctx))
        # the dataset's window must be llama_n_ctx() (else llama.cpp reads past the token buffer)
        if self.window != window:
            self.close()
            raise ModelError(f"llama.cpp gave a {self.window}-token context for {window}; cannot train")
        self.n_vocab = self.model.n_vocab
        self.threads = threads
        self.trainable = trainable
        self.opt = OptimizerParams()
        self.opt.adamw = default_adamw()
        self.opt.adamw.alpha = lr
        self._filter = ParamFilter(self._is_trainable)  # kept alive as long as the context
        self.seen: set[str] = set()  # tensors the filter was asked about
        lp = OptParams()
        lp.n_ctx_train = 0
        lp.param_filter = self._filter
        lp.param_filter_ud = None
        lp.get_opt_pars = ctypes.cast(self.ggml.ggml_opt_get_constant_optimizer_params, ctypes.c_void_p)
        lp.get_opt_pars_ud = ctypes.cast(ctypes.pointer(self.opt), ctypes.c_void_p)
        lp.optimizer_type = GGML_OPT_OPTIMIZER_TYPE_ADAMW
        self.llama.llama_opt_init(self._ctx, self.model.ptr, lp)
        self._result = self.ggml.ggml_opt_result_init()

    @interrupt.c_callback
    def _is_trainable(self, tensor: int | None, _ud: int | None) -> bool:
        """Asked by llama_opt_init for each tensor; never raises (ctypes would drop it)."""
        try:
            name = (self.ggml.ggml_get_name(tensor) or b"").decode("utf-8", "replace")
        except Exception:
            return False
        self.seen.add(name)
        return name in self.trainable

    def set_lr(self, lr: float) -> None:
        self.opt.adamw.alpha = lr

    def _dataset(self, windows: np.ndarray, labels: np.ndarray | None) -> int:
        """A ggml_opt dataset of the windows (rows of window+1 tokens) and their labels (rows of
        window tokens; None: each next token)."""
        n, width = windows.shape
        if width != self.window + 1:
            raise ModelError(f"a training window must hold {self.window + 1} tokens, got {width}")
        w = np.ascontiguousarray(windows, dtype=np.int32)
        lab = w[:, 1:] if labels is None else np.ascontiguousarray(labels, dtype=np.int32).reshape(n, -1)
        if lab.shape != (n, self.window):
            raise ModelError(f"labels must be {n} rows of {self.window} tokens, got {lab.shape}")
        for part in (w, lab):
            if part.size and (part.min() < 0 or part.max() >= self.n_vocab):
                raise ModelError(f"a token id is outside the vocabulary (0..{self.n_vocab - 1})")
        ds = self.ggml.ggml_opt_dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, self.window, self.window, n, 1)
        if not ds:
            raise ModelError("llama.cpp could not allocate the training dataset")
        for getter, part in (
            (self.ggml.ggml_opt_dataset_data, w[:, :-1]),
            (self.ggml.ggml_opt_dataset_labels, lab),
        ):
            buf = np.ascontiguousarray(part)
            ctypes.memmove(self.ggml.ggml_get_data(getter(ds)), buf.ctypes.data, buf.nbytes)
        return int(ds)

    def _run(self, windows: np.ndarray, labels: np.ndarray | None, train: bool) -> float:
        """Mean loss over the windows; trains on them (one step each) if ``train``."""
        ds = self._dataset(windows, labels)
        res = self._result
        try:
            self.ggml.ggml_opt_result_reset(res)
            split = len(windows) if train else 0
            self.llama.llama_opt_epoch(
                self._ctx, ds, res if train else None, None if train else res, split, None, None
            )
            loss, unc = ctypes.c_double(), ctypes.c_double()
            self.ggml.ggml_opt_result_loss(res, ctypes.byref(loss), ctypes.byref(unc))
            return float(loss.value)
        finally:
            self.ggml.ggml_opt_dataset_free(ds)

    def train_step(self, window: np.ndarray, labels: np.ndarray | None = None) -> float:
        """One optimizer step on one window (window+1 tokens; labels: window tokens, None for each
        next token); its loss before the step."""
        return self._run(window[None, :], None if labels is None else labels[None, :], train=True)

    def evaluate(self, windows: np.ndarray, labels: np.ndarray | None = None) -> float:
        """Mean loss over windows, no update (one call per window, so Ctrl+C stops between them)."""
        if not len(windows):
            return float("nan")
        total = 0.0
        for i, w in enumerate(windows):
            total += self._run(w[None, :], None if labels is None else labels[i : i + 1], train=False)
            interrupt.check()
        return total / len(windows)

    def target_loss(self, windows: np.ndarray, mask: np.ndarray) -> float:
        """Mean next-token loss on the target tokens only (``mask`` as the windows: which tokens are
        targets), by an inference pass over the weights as they are now; NaN without targets."""
        from convert.quality import log_softmax

        from ..engine.backend import ContextConfig, LlamaContext

        if not len(windows) or not mask[:, 1:].any():
            return float("nan")
        ctx = LlamaContext(
            self.model, ContextConfig(n_ctx=self.window, n_threads=self.threads, n_batch=self.window)
        )
        total, count = 0.0, 0
        try:
            for w, m in zip(windows, mask, strict=True):
                rows = np.flatnonzero(m[1:])
                if not len(rows):
                    continue
                lp = log_softmax(ctx.eval_logits(w[:-1].tolist())[rows])
                total -= float(lp[np.arange(len(rows)), w[1:][rows]].sum())
                count += len(rows)
                interrupt.check()
        finally:
            ctx.close()
        return total / count

    def save(self, path: Path) -> None:
        """The weights as they are now, as a GGUF (llama.cpp drops the chat template here)."""
        L.llama_model_save_to_file(self.model.ptr, str(path).encode())

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        return self.model.tokenize(text, add_special=add_special, parse_special=True)

    def close(self) -> None:
        if getattr(self, "_result", None):
            self.ggml.ggml_opt_result_free(self._result)
            self._result = None
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
        self.model.close()


def base_labels(model_path: Path, windows: np.ndarray, *, threads: int, seed: int) -> np.ndarray:
    """A token drawn from what the model at ``model_path`` predicts after each token of each window:
    (n, window) ids.

    llama.cpp's optimizer labels every position and has no loss mask. A context position labelled
    with a token drawn from the frozen base model's own distribution has a gradient of zero on
    average while the model is the base, and as it drifts, the average pulls it back (it is the
    gradient of the KL divergence from the base): the loss goes to the answers, and the context
    keeps the base's behaviour instead of being learned as text to reproduce. (Labelling with the
    base's most likely token instead was measured: it sharpens every prediction, and the reference
    text's perplexity grew 4.6x in one epoch; docs/BENCHMARKS.md.)
    """
    from ..engine.backend import ContextConfig, LlamaContext

    n, width = windows.shape
    rng = np.random.default_rng(seed)
    model = LlamaModel(model_path)
    ctx = LlamaContext(model, ContextConfig(n_ctx=width - 1, n_threads=threads, n_batch=width - 1))
    out = np.empty((n, width - 1), dtype=np.int32)
    try:
        for i, w in enumerate(windows):
            out[i] = sample_rows(ctx.eval_logits(w[:-1].tolist()), rng)
            interrupt.check()
    finally:
        ctx.close()
        model.close()
    return out


def sample_rows(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token a row, drawn from the softmax of that row's logits (temperature 1)."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(z))[:, None] * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), z.shape[1] - 1).astype(np.int32)
