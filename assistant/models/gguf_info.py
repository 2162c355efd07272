"""Read a GGUF file's metadata and tensor table without loading its weights.

gguf-py's ``GGUFReader`` parses every element of every array (49k vocabulary
strings take seconds), so listing models with it is slow. This reader walks the
header once, keeps scalars and short arrays, records only the length of long
arrays, and checks that the tensor data the header promises is really in the
file (a truncated download is caught here, before llama.cpp sees it). Type
sizes and names come from gguf-py's constants.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError, ModelNotFoundError

GGUF_MAGIC = b"GGUF"
SHORT_ARRAY = 64  # arrays longer than this are summarised by their length

_SCALAR_FORMATS = {
    0: "<B",  # UINT8
    1: "<b",  # INT8
    2: "<H",  # UINT16
    3: "<h",  # INT16
    4: "<I",  # UINT32
    5: "<i",  # INT32
    6: "<f",  # FLOAT32
    7: "<?",  # BOOL
    10: "<Q",  # UINT64
    11: "<q",  # INT64
    12: "<d",  # FLOAT64
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class LongArray:
    """Placeholder for an array too long to keep (vocabularies, merges)."""

    item_type: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_name: str
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFInfo:
    """What `assistant models` shows, all taken from the file header."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def kind(self) -> str:
        """``model`` or ``adapter`` (general.type; old files have none)."""
        return str(self.metadata.get("general.type", "model"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or self.path.stem)

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def quant_type(self) -> str:
        """The file type llama.cpp recorded, else the dominant weight type."""
        from gguf import LlamaFileType

        file_type = self.metadata.get("general.file_type")
        if file_type is not None:
            try:
                name = LlamaFileType(int(file_type)).name
                return name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                pass
        weights = Counter(t.type_name for t in self.tensors if len(t.shape) >= 2)
        return weights.most_common(1)[0][0] if weights else "unknown"

    @property
    def data_end(self) -> int:
        return max((self.data_offset + t.offset + t.n_bytes for t in self.tensors), default=self.data_offset)


_U64 = struct.Struct("<Q")


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path
        self.size = len(buf)
        self.short_array = SHORT_ARRAY

    def need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise ModelError(
                f"{self.path} is truncated: its GGUF header ends early "
                f"(needed byte {self.pos + n:,} of a {self.size:,}-byte file); download it again"
            )

    def scalar(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        length = self.scalar("<Q")
        self.need(length)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.scalar("<Q")
        self.need(length)
        self.pos += length

    def value(self, vtype: int) -> Any:
        if vtype in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.scalar("<I")
            length = self.scalar("<Q")
            if length > self.short_array:
                self.skip_array(item_type, length)
                return LongArray(item_type, length)
            return [self.value(item_type) for _ in range(length)]
        raise ModelError(
            f"{self.path}: unknown GGUF value type {vtype}; the file is corrupt or from a newer GGUF version"
        )

    def skip_array(self, item_type: int, length: int) -> None:
        if item_type in _SCALAR_FORMATS:
            n = struct.calcsize(_SCALAR_FORMATS[item_type]) * length
            self.need(n)
            self.pos += n
        elif item_type == _STRING:
            # the hot path of every load (the vocabulary: ~100k strings): one tight loop
            buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
            for _ in range(length):
                if pos + 8 > size:
                    self.pos = pos
                    self.need(8)  # raises: truncated
                pos += 8 + unpack(buf, pos)[0]
            if pos > size:
                self.pos = size
                self.need(pos - size)  # raises: truncated
            self.pos = pos
        else:
            for _ in range(length):
                self.value(item_type)


def _type_size(type_id: int) -> tuple[str, int, int]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        qtype = GGMLQuantizationType(type_id)
    except ValueError:
        return f"type{type_id}", 1, 1
    block, size = GGML_QUANT_SIZES.get(qtype, (1, 1))
    return qtype.name, block, size


def read_gguf_info(path: str | os.PathLike[str], *, full_arrays: bool = False) -> GGUFInfo:
    """Parse the header of a GGUF file; raise ModelError on anything wrong.

    Long arrays (vocabularies) are summarised as LongArray unless full_arrays.
    """
    p = Path(path)
    if not p.exists():
        raise ModelNotFoundError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelError(f"{p} is a directory, not a GGUF file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
            if head != GGUF_MAGIC:
                raise ModelError(
                    f"{p} is not a GGUF file (starts with {head!r}, expected b'GGUF'); "
                    "convert it with `assistant convert` or download a .gguf"
                )
            file_size = os.fstat(fh.fileno()).st_size
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, p, file_size, full_arrays)
    except PermissionError as exc:
        raise ModelError(f"cannot read {p}: permission denied") from exc


def _parse(buf: mmap.mmap, path: Path, file_size: int, full_arrays: bool = False) -> GGUFInfo:
    cur = _Cursor(buf, path)
    if full_arrays:
        cur.short_array = 1 << 62
    cur.pos = 4
    version = cur.scalar("<I")
    if version not in (2, 3):
        raise ModelError(f"{path}: unsupported GGUF version {version} (expected 2 or 3)")
    n_tensors = cur.scalar("<Q")
    n_kv = cur.scalar("<Q")
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise ModelError(f"{path}: corrupt GGUF header ({n_tensors} tensors, {n_kv} keys)")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.scalar("<I")
        metadata[key] = cur.value(vtype)
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.scalar("<I")
        if n_dims > 8:
            raise ModelError(f"{path}: corrupt tensor entry {name!r} ({n_dims} dimensions)")
        shape = tuple(cur.scalar("<Q") for _ in range(n_dims))
        type_id = cur.scalar("<I")
        offset = cur.scalar("<Q")
        type_name, block, size = _type_size(type_id)
        n = 1
        for d in shape:
            n *= d
        tensors.append(TensorInfo(name, shape, type_name, offset, n // block * size))
    alignment = int(metadata.get("general.alignment", 32) or 32)
    data_offset = (cur.pos + alignment - 1) // alignment * alignment
    info = GGUFInfo(path, version, metadata, tensors, data_offset, file_size)
    if info.data_end > file_size:
        missing = info.data_end - file_size
        raise ModelError(
            f"{path} is truncated: {file_size:,} bytes but its tensors need {info.data_end:,} "
            f"({missing:,} missing); download or convert it again"
        )
    return info


def check_hparams(info: GGUFInfo) -> None:
    """Refuse hyper-parameters that make llama.cpp abort the process (GGML_ASSERT) instead of
    failing to load. Each check is an assert of the vendored llama.cpp: load_hparams in
    src/llama-model.cpp, the graphs of src/models/*.cpp, ggml's mul_mat and rope."""
    from .archs import (
        HEAD_K_IS_V_ARCHITECTURES,
        LLAMA_MAX_LAYERS,
        ROPE_IS_HEAD_ARCHITECTURES,
        ROPE_SCALING_TYPES,
    )

    h = _HParams(info)
    n_layer = h.uint("block_count")
    if n_layer is None:
        return  # no graph hyper-parameters (llama.cpp fails cleanly on a missing key)
    if not 1 <= n_layer <= LLAMA_MAX_LAYERS:
        raise h.bad("block_count", f"1 to {LLAMA_MAX_LAYERS}", n_layer)
    nextn = h.uint("nextn_predict_layers", 0) or 0
    if nextn > n_layer:
        raise h.bad("nextn_predict_layers", f"at most block_count ({n_layer})", nextn)
    h.check_experts()
    scaling = h.get("rope.scaling.type")
    if scaling is not None and scaling not in ROPE_SCALING_TYPES:
        raise h.bad("rope.scaling.type", " or ".join(ROPE_SCALING_TYPES), repr(scaling))

    heads = h.per_layer("attention.head_count", n_layer, h.get("attention.head_count", 0))
    heads_kv = h.per_layer("attention.head_count_kv", n_layer, h.get("attention.head_count", 0))
    if heads is None or heads_kv is None:
        return  # an array of the wrong length: llama.cpp refuses it cleanly
    plain = h.arch in ROPE_IS_HEAD_ARCHITECTURES  # attention in every layer, rope on the whole head
    for il, (n_head, n_kv) in enumerate(zip(heads, heads_kv, strict=True)):
        if plain and not (n_head and n_kv):
            k = "attention.head_count" if not n_head else "attention.head_count_kv"
            raise h.bad(k, f"at least 1 in every layer of a {h.arch} model", f"0 in layer {il}")
        if n_head and n_kv and n_head % n_kv:
            raise h.bad("attention.head_count_kv", f"a divisor of head_count ({n_head})", n_kv)
    n_embd = h.uint("embedding_length")
    if not heads[0] or not n_embd:
        return
    head_k = h.uint("attention.key_length", n_embd // heads[0])
    head_v = h.uint("attention.value_length", n_embd // heads[0])
    if (plain or h.arch in HEAD_K_IS_V_ARCHITECTURES) and head_k != head_v:
        raise h.bad("attention.value_length", f"the key length ({head_k}) in a {h.arch} model", head_v)
    n_rot = h.uint("rope.dimension_count")
    if plain and (n_rot if n_rot is not None else head_k) != head_k:
        raise h.bad("rope.dimension_count", f"the head size ({head_k}) in a {h.arch} model", n_rot)
    if n_rot is not None and head_k is not None and (n_rot > head_k or n_rot % 2):
        raise h.bad("rope.dimension_count", f"an even number up to the head size ({head_k})", n_rot)


class _HParams:
    """Typed access to ``ARCH.*`` keys for check_hparams, and its one-line errors."""

    def __init__(self, info: GGUFInfo) -> None:
        self.info = info
        self.arch = info.architecture

    def get(self, k: str, default: Any = None) -> Any:
        return self.info.get(f"{self.arch}.{k}", default)

    def bad(self, k: str, expected: str, got: Any) -> ModelError:
        return ModelError(
            f"{self.info.path.name}: {self.arch}.{k} is wrong: expected {expected}, got {got}; "
            "the file is damaged or was made wrongly"
        )

    def uint(self, k: str, default: int | None = None) -> int | None:
        """A whole number >= 0, the default if absent; None for an array (judged elsewhere)."""
        value = self.get(k, default)
        if value is None or isinstance(value, list | LongArray):
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.bad(k, "a whole number >= 0", repr(value))
        return int(value)

    def per_layer(self, k: str, n_layer: int, default: Any) -> list[int] | None:
        """A scalar or per-layer array as one value per layer; None when it cannot be judged."""
        value = self.get(k, default)
        if isinstance(value, list) and len(value) == n_layer and all(isinstance(v, int) for v in value):
            return [int(v) for v in value]
        n = self.uint(k, default) if not isinstance(value, list | LongArray) else None
        return None if n is None else [n] * n_layer

    def check_experts(self) -> None:
        from .archs import LLAMA_MAX_EXPERTS

        n_expert = self.uint("expert_count", 0) or 0
        used_all = self.get("expert_used_count", 0)
        used = (
            max(used_all)
            if isinstance(used_all, list) and used_all
            else self.uint("expert_used_count", 0) or 0
        )
        groups = self.uint("expert_group_count", 0) or 0
        group_used = self.uint("expert_group_used_count", 0) or 0
        if n_expert > LLAMA_MAX_EXPERTS:
            raise self.bad("expert_count", f"at most {LLAMA_MAX_EXPERTS}", n_expert)
        if used > n_expert:
            raise self.bad("expert_used_count", f"at most expert_count ({n_expert})", used)
        if n_expert == 0:
            if groups:
                raise self.bad("expert_group_count", "0 in a model without experts", groups)
            return
        if used == 0:
            raise self.bad("expert_used_count", f"at least 1 with {n_expert} experts", 0)
        if groups >= n_expert:
            raise self.bad("expert_group_count", f"fewer than expert_count ({n_expert})", groups)
        if groups > 1 and n_expert % groups:
            raise self.bad("expert_group_count", f"a divisor of expert_count ({n_expert})", groups)
        if groups > 1 and not 0 < group_used < groups:
            raise self.bad("expert_group_used_count", f"1 to {groups - 1}", group_used)
