"""Streamed, atomic GGUF writing with gguf-py.

Tensor infos are declared first (shapes and types are known without loading anything),
then each tensor is loaded, encoded and written in turn and dropped. Everything goes to a
temporary file in the destination directory which is fsynced and renamed over OUT only on
success: a killed or failed conversion never leaves a partial OUT. The same inputs give
the same bytes (no timestamps, fixed order).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant import interrupt
from assistant.errors import ConversionError
from assistant.io import PARTIAL_SUFFIX, partial_prefix

from .hf import f32_to_bf16

log = logging.getLogger(__name__)

F16_MAX = 65504.0


@dataclass
class Progress:
    stage: str  # "write", "quantize"
    done_tensors: int
    total_tensors: int
    done_bytes: int
    total_bytes: int
    started: float


ProgressFn = Callable[[Progress], None]


@dataclass
class PlannedTensor:
    """One output tensor: its GGUF name, numpy shape, and how to compute its float32 values."""

    name: str
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]
    source_dtype: str = "F32"  # F32 / F16 / BF16 / a GGML type name for a GGUF base
    modified: bool = False  # merged with or replaced by an adapter
    load_raw: Callable[[], np.ndarray] | None = None  # stored bits, when unmodified
    release: Callable[[], None] = lambda: None
    origin: str = ""
    force_f32: bool = False
    release_range: Callable[[int, int], None] | None = None

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _write_error(dest: Path, exc: OSError) -> ConversionError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = "disk full" if exc.errno != errno.EFBIG else "file size limit reached"
        return ConversionError(f"cannot write {dest}: {what} ({exc.strerror}); free some space and run again")
    if exc.errno is None and "requested and" in str(exc):
        # numpy's tofile() reports a short fwrite() without errno: on a regular file, a full disk
        return ConversionError(
            f"cannot write {dest}: disk full (short write: {exc}); free some space and run again"
        )
    return ConversionError(
        f"cannot write {dest}: {exc.strerror or exc}; check the directory exists and is writable"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dest: Path, tag: str = "") -> Iterator[Path]:
    """A temporary path next to ``dest``; fsynced and renamed onto ``dest`` if the block succeeds."""
    dest = Path(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=partial_prefix(dest, tag), suffix=PARTIAL_SUFFIX, dir=dest.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a model file is as readable as any other
        os.close(fd)
    except OSError as exc:
        raise _write_error(dest, exc) from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            fd = os.open(tmp_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_path, dest)
            with contextlib.suppress(OSError):
                dfd = os.open(dest.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            raise _write_error(dest, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


@contextlib.contextmanager
def temp_path(dest: Path, tag: str) -> Iterator[Path]:
    """A scratch file next to ``dest`` that is always removed."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=partial_prefix(dest, tag), suffix=PARTIAL_SUFFIX, dir=dest.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(dest, exc) from exc
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def storage_type(t: PlannedTensor, outtype: str) -> str:
    """GGML type to store a tensor in. ``exact`` keeps every value exactly (input of the quantizer)."""
    if len(t.shape) < 2 or t.force_f32:
        return "F32"  # norms, biases, rope factors: always F32, as llama.cpp expects
    if outtype == "exact":
        if t.modified or t.source_dtype not in ("F16", "BF16"):
            return "F32"
        return t.source_dtype
    gtype = outtype.upper()
    if gtype == "Q8_0" and t.shape[-1] % 32:
        return "F16"  # Q8_0 blocks are 32 values along a row
    return gtype


def encode(arr: np.ndarray, gtype: str, name: str) -> np.ndarray:
    if gtype == "F32":
        return np.ascontiguousarray(arr, dtype=np.float32)
    if gtype == "F16":
        peak = float(np.max(np.abs(arr))) if arr.size else 0.0
        if peak > F16_MAX:
            raise ConversionError(
                f"tensor {name} has values up to {peak:.4g}, beyond the F16 range (±65504); "
                "use --quant BF16 or F32 (or a k-quant) instead of F16"
            )
        return arr.astype(np.float16)
    if gtype == "BF16":
        return f32_to_bf16(arr)
    if gtype == "Q8_0":
        from gguf import GGMLQuantizationType
        from gguf.quants import quantize

        return quantize(np.ascontiguousarray(arr, dtype=np.float32), GGMLQuantizationType.Q8_0)
    raise ConversionError(f"internal: cannot encode {name} as {gtype}")


def _nbytes(shape: Sequence[int], gtype: str) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[gtype]]
    n = int(np.prod(shape, dtype=np.int64))
    return n // block * size


_CHUNK = 1 << 22  # elements per slice for the checks: small temporaries whatever the tensor size


def _not_finite(name: str, origin: str, bad: int) -> ConversionError:
    return ConversionError(
        f"tensor {name} has {bad} NaN/Inf values ({origin}); the weights are corrupt or the training diverged"
    )


def check_finite(arr: np.ndarray, name: str, origin: str) -> None:
    flat = arr.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(flat, dtype=np.float64)):  # one cheap pass; NaN/Inf propagate
            return
    bad = 0
    for s in range(0, flat.size, _CHUNK):
        part = flat[s : s + _CHUNK]
        bad += int(part.size - np.count_nonzero(np.isfinite(part)))
    if bad:
        raise _not_finite(name, origin, bad)


def check_finite_raw(data: np.ndarray, gtype: str, name: str, origin: str) -> None:
    if gtype != "BF16":
        check_finite(data, name, origin)
        return
    flat = data.reshape(-1)
    bad = 0
    for s in range(0, flat.size, _CHUNK):
        part = flat[s : s + _CHUNK]
        bad += int(np.count_nonzero((part & 0x7F80) == 0x7F80))
    if bad:
        raise _not_finite(name, origin, bad)


FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})


def _ggml_quantizer() -> bool:
    from .quantize import _load_libs

    return _load_libs() is not None


_SLAB = 1 << 22  # elements quantized at a time from a stored tensor


def _prepare(t: PlannedTensor, gtype: str, threads: int = 1) -> np.ndarray:
    """The bytes to write for one tensor (checked for NaN/Inf)."""
    raw_ok = not t.modified and t.load_raw is not None
    if raw_ok and gtype == t.source_dtype and t.load_raw is not None:
        data = t.load_raw()  # the stored bits as they are: no float32 round trip
        check_finite_raw(data, gtype, t.name, t.origin)
        return data
    if gtype not in FLOAT_TYPES and _ggml_quantizer():
        from .quantize import quantize_rows

        if raw_ok and t.source_dtype in FLOAT_TYPES and len(t.shape) >= 2:
            return _quantize_stored(t, gtype, threads)
        arr = t.load()
        check_finite(arr, t.name, t.origin)
        return quantize_rows(arr.reshape(t.shape[0], -1), gtype, threads)
    arr = t.load()
    check_finite(arr, t.name, t.origin)
    return encode(arr, gtype, t.name)


def _quantize_stored(t: PlannedTensor, gtype: str, threads: int) -> np.ndarray:
    """An unmodified stored tensor, widened and quantized slab by slab (its pages released as we go)."""
    from .hf import bf16_to_f32
    from .quantize import quantize_rows

    assert t.load_raw is not None
    raw = t.load_raw()
    rows = raw.shape[0]
    raw2 = raw.reshape(rows, -1)
    per_row = raw2.shape[1]
    step = max(1, _SLAB // max(per_row, 1))
    out: np.ndarray | None = None
    for r0 in range(0, rows, step):
        part = raw2[r0 : r0 + step]
        f32 = bf16_to_f32(part) if t.source_dtype == "BF16" else part.astype(np.float32)
        check_finite(f32, t.name, t.origin)
        if out is None:
            from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

            block, size = GGML_QUANT_SIZES[GGMLQuantizationType[gtype]]
            out = np.empty(rows * (per_row // block * size), dtype=np.uint8)
        quantize_rows(f32, gtype, threads, out, r0)
        if t.release_range is not None:
            t.release_range(r0 * per_row * raw.itemsize, (r0 + len(part)) * per_row * raw.itemsize)
    assert out is not None
    return out


def write_gguf(
    path: Path,
    dest: Path,
    arch: str,
    metadata: Callable[[object], None],
    tensors: list[PlannedTensor],
    outtype: str,
    progress: ProgressFn | None = None,
    types: list[str] | None = None,
    threads: int = 1,
) -> int:
    """Write a GGUF at ``path`` (a temp file; ``dest`` is for messages). Returns bytes of tensor data.

    ``types``, when given, is the GGML type of each tensor (llama.cpp's quantization plan);
    otherwise every tensor is stored as ``outtype`` (``exact``: lossless, for llama_model_quantize).
    """
    from gguf import GGMLQuantizationType, GGUFWriter

    writer = GGUFWriter(path, arch)
    metadata(writer)
    chosen: list[str] = []
    for i, t in enumerate(tensors):
        gtype = types[i] if types is not None else storage_type(t, outtype)
        chosen.append(gtype)
        raw = GGMLQuantizationType[gtype]
        nbytes = _nbytes(t.shape, gtype)
        # the numpy dtype only matters to gguf-py for uint8 (byte shapes); the real type is raw_dtype
        writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), nbytes, raw_dtype=raw)
    total = sum(_nbytes(t.shape, g) for t, g in zip(tensors, chosen, strict=True))
    started = time.monotonic()
    done = 0
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        # one worker prepares the next tensor (read, merge, check, encode) while this thread writes
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_prepare, tensors[0], chosen[0], threads) if tensors else None
            for i, t in enumerate(tensors):
                interrupt.check()  # a Ctrl+C that came inside llama.cpp's log callback
                assert pending is not None
                data = pending.result()
                pending = (
                    pool.submit(_prepare, tensors[i + 1], chosen[i + 1], threads)
                    if i + 1 < len(tensors)
                    else None
                )
                writer.write_tensor_data(np.ascontiguousarray(data))
                t.release()
                done += data.nbytes
                del data
                if progress is not None:
                    progress(Progress("write", i + 1, len(tensors), done, total, started))
        assert writer.fout is not None
        for fh in writer.fout:
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise _write_error(dest, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            writer.close()
    return total
