"""Reading Hugging Face model directories: config, (sharded) memory-mapped safetensors.

The safetensors header is parsed and checked here (dtype, shape, offsets inside
the file, no overlaps) before any tensor is touched, so a truncated or lying
file is one clear error instead of garbage weights. Tensors are numpy views on
one read-only ``mmap`` per file; :meth:`SafetensorsFile.release` drops a
tensor's pages from the process again, which keeps the resident set at about
one tensor whatever the model size. BF16 has no numpy dtype: its bits are
widened to float32 (exact).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import mmap
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import ConversionError

log = logging.getLogger(__name__)

# safetensors dtype -> (numpy dtype of the stored bits, item size)
_DTYPES: dict[str, tuple[Any, int]] = {
    "F64": (np.float64, 8),
    "F32": (np.float32, 4),
    "F16": (np.float16, 2),
    "BF16": (np.uint16, 2),
    "I64": (np.int64, 8),
    "I32": (np.int32, 4),
    "I16": (np.int16, 2),
    "I8": (np.int8, 1),
    "U8": (np.uint8, 1),
    "BOOL": (np.bool_, 1),
}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
MAX_HEADER = 100 * 1024 * 1024
_PAGE = mmap.PAGESIZE


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """BF16 stored as uint16 -> float32 (exact: bf16 is the top half of an f32)."""
    if sys.byteorder != "little":  # pragma: no cover - the fast path below assumes little-endian
        return (bits.astype(np.uint32) << 16).view(np.float32)
    out = np.zeros((*bits.shape, 2), dtype=np.uint16)  # one pass: write the high halves in place
    out[..., 1] = bits
    return out.view(np.float32).reshape(bits.shape)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> BF16 bits (uint16), round to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute offsets in the file
    end: int

    @property
    def n_bytes(self) -> int:
        return self.end - self.begin


class SafetensorsFile:
    """One .safetensors file: validated header, lazily memory-mapped data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - kept open for the mmap
        except OSError as exc:
            raise ConversionError(f"cannot read {path}: {exc.strerror}") from exc
        self.size = os.fstat(self._fh.fileno()).st_size
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, TensorEntry] = self._read_header()
        self._map: mmap.mmap | None = None

    def _corrupt(self, what: str) -> ConversionError:
        return ConversionError(
            f"{self.path} is not a valid safetensors file ({what}); download or save it again"
        )

    def _read_header(self) -> dict[str, TensorEntry]:
        head = self._fh.read(8)
        if len(head) < 8:
            raise self._corrupt(f"{self.size} bytes, too short for a header")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > self.size:
            raise self._corrupt(f"header length {n:,} does not fit in a {self.size:,}-byte file: truncated?")
        try:
            header = json.loads(self._fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._corrupt(f"header is not JSON: {exc}") from exc
        if not isinstance(header, dict):
            raise self._corrupt("header is not a JSON object")
        data_start = 8 + n
        data_len = self.size - data_start
        entries: dict[str, TensorEntry] = {}
        for name, spec in header.items():
            if name == "__metadata__":
                self.metadata = spec if isinstance(spec, dict) else {}
                continue
            try:
                dtype = spec["dtype"]
                shape = tuple(int(d) for d in spec["shape"])
                begin, end = (int(o) for o in spec["data_offsets"])
            except (KeyError, TypeError, ValueError) as exc:
                raise self._corrupt(f"bad entry for tensor {name!r}") from exc
            if dtype not in _DTYPES:
                raise ConversionError(
                    f"{self.path}: tensor {name!r} has dtype {dtype}, which this converter does not read "
                    f"(supported: {', '.join(_DTYPES)})"
                )
            n_items = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if any(d < 0 for d in shape) or not 0 <= begin <= end:
                raise self._corrupt(f"tensor {name!r} has a negative shape or offset")
            if end - begin != n_items * _DTYPES[dtype][1]:
                raise self._corrupt(
                    f"tensor {name!r}: offsets {begin}..{end} hold {end - begin} bytes, "
                    f"but {dtype}{list(shape)} needs {n_items * _DTYPES[dtype][1]}"
                )
            if end > data_len:
                raise self._corrupt(
                    f"tensor {name!r} ends at byte {data_start + end:,} of a {self.size:,}-byte file: truncated?"
                )
            entries[name] = TensorEntry(name, dtype, shape, data_start + begin, data_start + end)
        spans = sorted((e.begin, e.end, e.name) for e in entries.values() if e.end > e.begin)
        for (_, end_a, name_a), (begin_b, _, name_b) in itertools.pairwise(spans):
            if begin_b < end_a:
                raise self._corrupt(f"tensors {name_a!r} and {name_b!r} overlap")
        return entries

    def _mmap(self) -> mmap.mmap:
        if self._map is None:
            try:
                self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise ConversionError(f"cannot memory-map {self.path}: {exc}") from exc
        return self._map

    def raw(self, name: str) -> np.ndarray:
        """The stored bits as a read-only numpy view (BF16 as uint16)."""
        e = self.tensors[name]
        np_dtype, _ = _DTYPES[e.dtype]
        if e.n_bytes == 0:
            return np.zeros(e.shape, dtype=np_dtype)
        buf = self._mmap()
        arr = np.frombuffer(
            buf, dtype=np_dtype, count=e.n_bytes // np.dtype(np_dtype).itemsize, offset=e.begin
        )
        return arr.reshape(e.shape)

    def get_f32(self, name: str) -> np.ndarray:
        """The tensor as float32 (a fresh array; the mapped pages are released)."""
        e = self.tensors[name]
        raw = self.raw(name)
        out = bf16_to_f32(raw) if e.dtype == "BF16" else raw.astype(np.float32, copy=True)
        self.release(name)
        return out

    def release(self, name: str, start: int = 0, end: int | None = None) -> None:
        """Drop the pages of a tensor (or of bytes start..end of it) from this process.

        They stay in the page cache; only this process's resident set shrinks.
        """
        if self._map is None:
            return
        e = self.tensors[name]
        lo = (e.begin + start) // _PAGE * _PAGE
        hi = e.end if end is None else min(e.end, e.begin + end)
        if hi > lo and hasattr(self._map, "madvise"):
            with contextlib.suppress(OSError, ValueError):
                self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a numpy view is still alive; the map goes with it
                self._map.close()
            self._map = None
        self._fh.close()


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise ConversionError(f"missing {path.name} in {path.parent}: expected {what}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path} is not valid JSON ({exc}); fix or replace the file") from exc
    if not isinstance(data, dict):
        raise ConversionError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


# Files that, when present next to the weights, are inputs of the conversion.
AUX_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "modules.json",
    "1_Pooling/config.json",
)


@dataclass
class HFModel:
    """A Hugging Face model directory with safetensors weights."""

    path: Path
    config: dict[str, Any]
    files: list[SafetensorsFile] = field(default_factory=list)
    where: dict[str, SafetensorsFile] = field(default_factory=dict)
    index_path: Path | None = None

    @classmethod
    def open(cls, path: Path) -> HFModel:
        path = Path(path)
        if not path.is_dir():
            raise ConversionError(f"{path} is not a directory; expected a Hugging Face model directory")
        config = read_json(path / "config.json", "a Hugging Face model directory with config.json")
        model = cls(path, config)
        index = path / "model.safetensors.index.json"
        single = path / "model.safetensors"
        if index.is_file():
            model.index_path = index
            weight_map = read_json(index, "a safetensors index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ConversionError(f"{index} has no weight_map; save the model again")
            shards: dict[str, SafetensorsFile] = {}
            for shard_name in sorted(set(weight_map.values())):
                shard = path / shard_name
                if not shard.is_file():
                    raise ConversionError(f"{index} lists {shard_name}, which is missing from {path}")
                shards[shard_name] = SafetensorsFile(shard)
            model.files = list(shards.values())
            for name, shard_name in weight_map.items():
                f = shards[shard_name]
                if name not in f.tensors:
                    raise ConversionError(f"{index} says {name} is in {shard_name}, but that shard lacks it")
                model.where[name] = f
        elif single.is_file():
            f = SafetensorsFile(single)
            model.files = [f]
            model.where = dict.fromkeys(f.tensors, f)
        else:
            found = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
            hint = (
                f" (found {', '.join(found)}: pickled PyTorch weights are not read, for safety; "
                "re-save with save_pretrained(..., safe_serialization=True))"
                if found
                else ""
            )
            raise ConversionError(f"no model.safetensors or model.safetensors.index.json in {path}{hint}")
        return model

    @property
    def names(self) -> list[str]:
        return list(self.where)

    def entry(self, name: str) -> TensorEntry:
        return self.where[name].tensors[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entry(name).shape

    def get_f32(self, name: str) -> np.ndarray:
        return self.where[name].get_f32(name)

    def input_files(self) -> list[Path]:
        files = [self.path / aux for aux in AUX_FILES if (self.path / aux).is_file()]
        if self.index_path is not None:
            files.append(self.index_path)
        files.extend(f.path for f in self.files)
        return files

    def close(self) -> None:
        for f in self.files:
            f.close()
