"""Output types: the float ones are written directly, the others with llama.cpp's own code.

gguf-py only quantizes the legacy types in numpy. For every type here llama.cpp decides the
per-tensor mix (e.g. Q6_K for the output and some attn_v / ffn_down in Q4_K_M) exactly as
``llama-quantize`` does, and its ggml code quantizes the rows. By default that happens in
process while the tensors stream by (:func:`plan_types` + :func:`quantize_rows`: no float
copy of the model on disk, memory near one tensor). If this llama.cpp build lacks the two
helper symbols, :func:`llama_quantize` runs ``llama_model_quantize`` on a lossless
intermediate file instead; a test checks both give byte-identical tensors.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant import interrupt
from assistant.errors import ConversionError

from .quant_types import NEEDS_IMATRIX, QUANT_TYPES, QuantType

log = logging.getLogger(__name__)


QUANT_BUF_BYTES = 32 << 20


def parse_quant(name: str) -> QuantType:
    key = name.strip().upper()
    if key in QUANT_TYPES:
        return QUANT_TYPES[key]
    if key in NEEDS_IMATRIX:
        raise ConversionError(
            f"--quant {name}: this type needs an importance matrix (imatrix) computed on calibration text, "
            f"which this converter does not do; choose one of {', '.join(QUANT_TYPES)}"
        )
    raise ConversionError(f"unknown --quant {name!r} (supported: {', '.join(QUANT_TYPES)})")


def default_threads() -> int:
    """--threads auto: the physical cores free now (assistant.engine.threads), at most 8; a
    core taken by another process would hold up every tensor's last chunk."""
    from assistant.engine.threads import auto_threads

    return min(auto_threads(), 8)


def llama_quantize(src: Path, dst: Path, quant: QuantType, threads: int) -> None:
    """Quantize the GGUF ``src`` into ``dst`` with llama.cpp (keeps every metadata key)."""
    import llama_cpp as L

    from assistant.engine.backend import init_backend

    init_backend(log.isEnabledFor(logging.DEBUG))
    params = L.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = quant.ftype
    params.allow_requantize = False
    # Rows are processed in slabs of at most this many bytes (default 8 GiB, i.e. whole tensors):
    # keeps the quantizer's buffers small whatever the tensor size.
    params.max_buf_size = QUANT_BUF_BYTES
    rc = L.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    interrupt.check()  # Ctrl+C while it ran landed in the log callback (it has no abort hook)
    if rc != 0:
        raise ConversionError(
            f"llama.cpp could not quantize to {quant.name} (error {rc}); run with --verbose to see its log"
        )


# ---------------------------------------------------------------------------------------------
# In-process quantization with llama.cpp's own code (no intermediate file).
#
# llama.cpp decides the per-tensor types (llama_quant_compute_types: the same function
# llama_model_quantize uses for its Q4_K_M / Q5_K_M ... mixes) and quantizes the rows
# (ggml_quantize_chunk: the same function llama_model_quantize calls). We only stream: each
# merged float32 tensor is quantized in memory and written, so the exact float32 model never
# goes to disk. The two llama.cpp entry points are C++ symbols of llama-ext.h; if a build does
# not have them, the caller falls back to llama_model_quantize on an intermediate file.

_EXT = {
    "model_from_metadata": "_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc",
    "init": "_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params",
    "compute_types": "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem",
    "free": "_Z16llama_quant_freeP19quantize_state_impl",
}


class _QuantModelDesc(ctypes.Structure):
    _fields_ = [
        ("architecture", ctypes.c_char_p),
        ("n_embd", ctypes.c_uint32),
        ("n_ff", ctypes.c_uint32),
        ("n_layer", ctypes.c_uint32),
        ("n_head", ctypes.c_uint32),
        ("n_head_kv", ctypes.c_uint32),
        ("n_expert", ctypes.c_uint32),
        ("n_embd_head_k", ctypes.c_uint32),
        ("n_embd_head_v", ctypes.c_uint32),
    ]


class _GGMLInitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class _Libs:
    def __init__(self) -> None:
        from pathlib import Path as _P

        import llama_cpp

        libdir = _P(llama_cpp.__file__).parent / "lib"
        self.llama = ctypes.CDLL(str(libdir / "libllama.so"))
        from assistant.engine.backend import loaded_library

        self.ggml = loaded_library("libggml-base")  # the ggml libllama uses, not a second copy
        g = self.ggml
        g.ggml_init.argtypes = [_GGMLInitParams]
        g.ggml_init.restype = ctypes.c_void_p
        g.ggml_free.argtypes = [ctypes.c_void_p]
        g.ggml_new_tensor.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int64),
        ]
        g.ggml_new_tensor.restype = ctypes.c_void_p
        g.ggml_set_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        g.ggml_set_name.restype = ctypes.c_void_p
        g.ggml_tensor_overhead.restype = ctypes.c_size_t
        g.ggml_quantize_chunk.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
        ]
        g.ggml_quantize_chunk.restype = ctypes.c_size_t
        ext = {k: getattr(self.llama, v) for k, v in _EXT.items()}  # AttributeError if missing
        ext["model_from_metadata"].argtypes = [ctypes.POINTER(_QuantModelDesc)]
        ext["model_from_metadata"].restype = ctypes.c_void_p
        ext["init"].argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        ext["init"].restype = ctypes.c_void_p
        ext["compute_types"].argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_size_t,
        ]
        ext["compute_types"].restype = None
        ext["free"].argtypes = [ctypes.c_void_p]
        ext["free"].restype = None
        self.ext = ext


_libs: _Libs | None = None
_libs_error: str | None = None


def _load_libs() -> _Libs | None:
    global _libs, _libs_error
    if _libs is None and _libs_error is None:
        try:
            _libs = _Libs()
        except (OSError, AttributeError) as exc:
            _libs_error = str(exc)
            log.info(
                "llama.cpp's in-process quantization API is not available (%s); using llama_model_quantize",
                exc,
            )
    return _libs


@dataclass(frozen=True)
class ModelDesc:
    """What llama.cpp's type choice looks at: the architecture and a few sizes."""

    arch: str
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int


def plan_types(
    desc: ModelDesc, tensors: list[tuple[str, tuple[int, ...], str]], quant: QuantType
) -> list[str] | None:
    """GGML type of every tensor for ``quant``, as llama_model_quantize would choose; None if unavailable.

    ``tensors`` are (GGUF name, numpy shape, input GGML type name), in file order.
    """
    libs = _load_libs()
    if libs is None:
        return None
    import llama_cpp as L
    from gguf import GGMLQuantizationType

    from assistant.engine.backend import init_backend

    init_backend(log.isEnabledFor(logging.DEBUG))  # llama.cpp's log (type fallbacks...) goes to logging
    g, ext = libs.ggml, libs.ext
    d = _QuantModelDesc(
        desc.arch.encode(),
        desc.n_embd,
        desc.n_ff,
        desc.n_layer,
        desc.n_head,
        desc.n_head_kv,
        0,
        desc.head_dim,
        desc.head_dim,
    )
    model = ext["model_from_metadata"](ctypes.byref(d))
    if not model:
        return None
    params = L.llama_model_quantize_default_params()
    params.ftype = quant.ftype
    qs = ext["init"](model, ctypes.cast(ctypes.byref(params), ctypes.c_void_p))
    ctx = g.ggml_init(_GGMLInitParams(g.ggml_tensor_overhead() * (len(tensors) + 8) + 4096, None, True))
    try:
        ptrs = (ctypes.c_void_p * len(tensors))()
        for i, (name, shape, in_type) in enumerate(tensors):
            ne = (ctypes.c_int64 * 4)(*reversed(shape), *([1] * (4 - len(shape))))
            t = g.ggml_new_tensor(ctx, int(GGMLQuantizationType[in_type]), len(shape), ne)
            g.ggml_set_name(t, name.encode())
            ptrs[i] = t
        out = (ctypes.c_int * len(tensors))()
        ext["compute_types"](qs, quant.ftype, ptrs, out, len(tensors))
        return [GGMLQuantizationType(v).name for v in out]
    finally:
        g.ggml_free(ctx)
        ext["free"](qs)
        L.llama_model_free(ctypes.c_void_p(model))


def quantize_rows(
    arr: np.ndarray, gtype: str, threads: int, out: np.ndarray | None = None, row0: int = 0
) -> np.ndarray:
    """Quantize a float32 matrix (rows x n_per_row) with ggml_quantize_chunk, rows split over threads.

    With ``out`` given, rows land at ``row0`` of that (whole-tensor) buffer. ctypes releases the
    GIL during the call, so the threads really run in parallel.
    """
    from concurrent.futures import ThreadPoolExecutor

    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    libs = _load_libs()
    assert libs is not None
    qt = GGMLQuantizationType[gtype]
    block, size = GGML_QUANT_SIZES[qt]
    src = np.ascontiguousarray(arr, dtype=np.float32)
    n_rows, n_per_row = src.shape[0], int(np.prod(src.shape[1:]))
    row_bytes = n_per_row // block * size
    if out is None:
        out = np.empty(n_rows * row_bytes, dtype=np.uint8)
        row0 = 0
    dst = out[row0 * row_bytes : (row0 + n_rows) * row_bytes]
    src_p, dst_p = src.ctypes.data, dst.ctypes.data
    parts = max(1, min(threads, n_rows // 16 or 1))
    bounds = [n_rows * i // parts for i in range(parts + 1)]

    def work(i: int) -> int:
        r0, r1 = bounds[i], bounds[i + 1]
        if r1 <= r0:
            return 0
        # start is an element index; ggml offsets dst by start / n_per_row rows itself
        return int(
            libs.ggml.ggml_quantize_chunk(int(qt), src_p, dst_p, r0 * n_per_row, r1 - r0, n_per_row, None)
        )

    if parts == 1:
        written = work(0)
    else:
        with ThreadPoolExecutor(max_workers=parts) as pool:
            written = sum(pool.map(work, range(parts)))
    if written != dst.nbytes:
        raise ConversionError(f"internal: ggml wrote {written} bytes for a {dst.nbytes}-byte {gtype} block")
    return out
