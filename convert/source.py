"""Where a base model or adapter comes from: a local directory, a Hub repo id, or a GGUF file.

A repo id goes through huggingface-hub; with HF_HUB_OFFLINE set it is served from the
local cache only, and a miss is one clear error. A GGUF base is dequantized tensor by
tensor with gguf-py's quants, so users who only have the GGUF of their base can still merge.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import ConversionError, NetworkError

from . import archs
from .archs.base import Arch, Hparams
from .hf import HFModel
from .quantize import ModelDesc

log = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "1_Pooling/*"]
ADAPTER_PATTERNS = [
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer*",
    "special_tokens_map.json",
    "*.jinja",
]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(spec: str | os.PathLike[str], what: str, patterns: list[str]) -> Path:
    """A local path as is; ``owner/name`` that is not a local path: a Hub snapshot."""
    path = Path(spec).expanduser()
    if path.exists():
        return path.resolve()
    text = str(spec)
    if not _REPO_ID.match(text) or text.endswith(".gguf"):
        raise ConversionError(f"{what} {text}: no such file or directory")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ConversionError(
            f"{what} {text} looks like a Hub repo id, but huggingface-hub is not installed"
        ) from exc
    offline = _offline()
    try:
        local = snapshot_download(text, allow_patterns=patterns, local_files_only=offline)
    except Exception as exc:
        if offline:
            raise NetworkError(
                f"{what} {text} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                "download it on a connected machine (or unset HF_HUB_OFFLINE), or pass a local directory"
            ) from exc
        raise NetworkError(
            f"could not download {what} {text} from the Hugging Face Hub: {type(exc).__name__}: {exc}"
        ) from exc
    return Path(local)


@dataclass
class SourceTensor:
    gguf_name: str
    hf_name: str | None  # None for generated tensors
    shape: tuple[int, ...]  # numpy order, GGUF layout
    dtype: str
    load: Callable[[], np.ndarray]  # float32 in GGUF layout
    load_raw: Callable[[], np.ndarray] | None = None  # stored bits (F32/F16/BF16 as uint16), GGUF layout
    release: Callable[[], None] = lambda: None  # drop the tensor's pages after use
    origin: str = ""  # file it comes from, for messages
    release_range: Callable[[int, int], None] | None = None  # drop bytes start..end of the stored tensor


@dataclass
class BaseModel:
    """A base model, whatever its origin, as GGUF-named float32 tensors plus metadata."""

    path: Path
    arch: Arch
    hp: Hparams
    config: dict[str, Any]
    tensors: list[SourceTensor]
    files: list[Path]
    kind: str  # "hf" or "gguf"
    hf: HFModel | None = None
    gguf_fields: list[tuple[str, Any, Any, Any]] = field(default_factory=list)  # (key, value, type, subtype)
    desc: ModelDesc | None = None  # sizes llama.cpp's quantization mix depends on
    close: Callable[[], None] = lambda: None

    @property
    def name(self) -> str:
        return self.path.stem if self.kind == "gguf" else self.path.name

    def find(self, gguf_name: str) -> SourceTensor | None:
        for t in self.tensors:
            if t.gguf_name == gguf_name:
                return t
        return None


def open_base(spec: str | os.PathLike[str]) -> BaseModel:
    path = resolve(spec, "base model", MODEL_PATTERNS)
    if path.is_file():
        if path.suffix.lower() == ".gguf" or _is_gguf(path):
            return _open_gguf(path)
        raise ConversionError(f"{path} is neither a Hugging Face model directory nor a GGUF file")
    return _open_hf(path)


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"GGUF"


def _open_hf(path: Path) -> BaseModel:
    hf = HFModel.open(path)
    try:
        arch = archs.for_config(hf.config, str(path / "config.json"))
        hp = arch.hparams(hf.config)
        tensors: list[SourceTensor] = []
        unknown: list[str] = []
        for name in hf.names:
            if arch.is_ignored(arch.normalise(name)):
                continue
            gname = arch.gguf_name(name)
            if gname is None:
                unknown.append(name)
                continue
            entry = hf.entry(name)
            if entry.dtype not in ("F32", "F16", "BF16", "F64"):
                raise ConversionError(
                    f"{entry_path(hf, name)}: tensor {name} has dtype {entry.dtype}; expected float weights"
                )
            f = hf.where[name]
            tensors.append(
                SourceTensor(
                    gname,
                    name,
                    entry.shape,
                    entry.dtype,
                    _hf_loader(hf, name, gname, arch, hp),
                    load_raw=_hf_raw_loader(hf, name, gname, arch, hp) if entry.dtype != "F64" else None,
                    release=functools.partial(f.release, name),
                    origin=str(f.path),
                    release_range=functools.partial(f.release, name),
                )
            )
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise ConversionError(
                f"{path}: tensors {', '.join(unknown[:3])}{more} are unknown for architecture {arch.name}; "
                "is config.json right for these weights?"
            )
        order = {r.gguf.split(".")[-1]: i for i, r in enumerate(arch.rules)}
        tensors.sort(key=lambda t: _tensor_order(t.gguf_name, order))
        for gname, arr in arch.extra_tensors(hf.config, hp):
            tensors.append(SourceTensor(gname, None, arr.shape, "F32", functools.partial(np.asarray, arr)))
    except BaseException:
        hf.close()
        raise
    cfg = hf.config
    n_embd = int(cfg.get("hidden_size", 0))
    n_head = int(cfg.get("num_attention_heads", 1))
    desc = ModelDesc(
        arch.name,
        n_embd,
        int(cfg.get("intermediate_size", 0)),
        int(cfg.get("num_hidden_layers", 1)),
        n_head,
        int(cfg.get("num_key_value_heads") or n_head),
        int(cfg.get("head_dim") or n_embd // max(n_head, 1)),
    )
    return BaseModel(path, arch, hp, cfg, tensors, hf.input_files(), "hf", hf=hf, close=hf.close, desc=desc)


def entry_path(hf: HFModel, name: str) -> Path:
    return hf.where[name].path


def _tensor_order(gguf_name: str, order: dict[str, int]) -> tuple[int, int, int]:
    parts = gguf_name.split(".")
    if parts[0] == "blk":
        return (1, int(parts[1]), order.get(parts[2], 99) * 2 + (parts[-1] == "bias"))
    return (
        0 if gguf_name.startswith(("token_embd", "position_embd", "token_types")) else 2,
        0,
        order.get(parts[0], 99),
    )


def _hf_loader(hf: HFModel, name: str, gname: str, arch: Arch, hp: Hparams) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return arch.transform(gname, hf.get_f32(name), hp)

    return load


def _hf_raw_loader(hf: HFModel, name: str, gname: str, arch: Arch, hp: Hparams) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return arch.transform(gname, hf.where[name].raw(name), hp)

    return load


_SKIP_KEYS_PREFIX = ("GGUF.",)
_SKIP_KEYS = {"general.architecture", "general.file_type", "general.quantization_version"}


def _open_gguf(path: Path) -> BaseModel:
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(path)
    except Exception as exc:
        raise ConversionError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc})") from exc
    fields = {}
    for key, f in reader.fields.items():
        fields[key] = f
    arch_field = fields.get("general.architecture")
    if arch_field is None:
        raise ConversionError(f"{path} has no general.architecture; is it a model GGUF?")
    arch_name = str(arch_field.contents())
    if "general.type" in fields and str(fields["general.type"].contents()) == "adapter":
        raise ConversionError(f"{path} is a GGUF LoRA adapter, not a base model")
    arch = archs.for_gguf(arch_name, str(path))
    meta = {k: f.contents() for k, f in fields.items() if not f.types or f.types[0] != GGUFValueType.ARRAY}
    try:
        hp = arch.hparams_from_gguf(meta)
    except KeyError as exc:
        raise ConversionError(f"{path}: missing metadata {exc}; the GGUF is incomplete") from exc
    copied = []
    from .provenance import KEY as PROV_KEY

    for key, f in fields.items():
        if key.startswith(_SKIP_KEYS_PREFIX) or key in _SKIP_KEYS or key == PROV_KEY:
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == GGUFValueType.ARRAY and len(f.types) > 1 else None
        copied.append((key, f.contents(), vtype, sub))
    tensors = []
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        qtype = GGMLQuantizationType(t.tensor_type)

        def load(
            t: Any = t, shape: tuple[int, ...] = shape, qtype: GGMLQuantizationType = qtype
        ) -> np.ndarray:
            if qtype == GGMLQuantizationType.F32:
                return np.array(t.data, dtype=np.float32).reshape(shape)
            if qtype == GGMLQuantizationType.F16:
                return t.data.astype(np.float32).reshape(shape)
            return dequantize(t.data, qtype).astype(np.float32, copy=False).reshape(shape)

        dtype = qtype.name if qtype not in (GGMLQuantizationType.F32,) else "F32"
        hf_name = arch.hf_name(t.name)
        tensors.append(SourceTensor(t.name, hf_name, shape, dtype, load, origin=str(path)))
    cfg = {"vocab_size": meta.get(f"{arch_name}.vocab_size")}
    n_embd = int(meta.get(f"{arch_name}.embedding_length", 0))
    n_ff = meta.get(f"{arch_name}.feed_forward_length", 0)
    desc = ModelDesc(
        arch_name,
        n_embd,
        int(n_ff if isinstance(n_ff, int) else 0),
        int(meta.get(f"{arch_name}.block_count", 1)),
        int(hp["n_head"]),
        int(hp["n_head_kv"]),
        int(meta.get(f"{arch_name}.attention.key_length") or n_embd // max(int(hp["n_head"]), 1)),
    )
    return BaseModel(path, arch, hp, cfg, tensors, [path], "gguf", gguf_fields=copied, desc=desc)
