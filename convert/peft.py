"""PEFT LoRA adapters (adapter_config.json + adapter_model.safetensors), read without peft or torch.

Per target module the delta is ``scale * B @ A`` with ``scale = alpha / r`` (rsLoRA:
``alpha / sqrt(r)``), ``r`` and ``alpha`` taken from rank_pattern / alpha_pattern when a
pattern matches the module (PEFT's rule: the pattern matches the end of the module name,
on a dot boundary). Embedding LoRA (``lora_embedding_A/B``) gives ``(B @ A).T``. Keys that
are not LoRA factors (modules_to_save, trained biases) replace the base tensor, except PEFT's
copies of the base weight under a LoRA-wrapped embedding or head (``save_embedding_layers``:
``...embed_tokens.base_layer.weight``), which are checked against the base instead. DoRA is
merged as PEFT does for linear layers: ``m / ||W + dW||_row * (W + dW)``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import ConversionError

from .hf import SafetensorsFile, read_json
from .writer import check_finite

log = logging.getLogger(__name__)

_PREFIX = "base_model.model."
_LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
    r"(?:\.default)?(?:\.weight)?$"
)


@dataclass
class LoraModule:
    module: str  # HF module name, e.g. model.layers.0.self_attn.q_proj
    a_key: str
    b_key: str
    rank: int
    alpha: float
    scale: float  # alpha/r or alpha/sqrt(r)
    embedding: bool = False
    magnitude_key: str | None = None


@dataclass
class Adapter:
    path: Path
    user_scale: float
    config: dict[str, Any]
    file: SafetensorsFile
    modules: dict[str, LoraModule] = field(default_factory=dict)
    replacements: dict[str, str] = field(default_factory=dict)  # HF tensor name -> key in file
    # save_embedding_layers: PEFT's copy of a LoRA-wrapped embedding/head ("...base_layer.weight");
    # HF tensor name of the base weight -> key in file. Must equal the base's tensor.
    base_copies: dict[str, str] = field(default_factory=dict)
    fan_in_fan_out: bool = False

    @property
    def use_dora(self) -> bool:
        return any(m.magnitude_key for m in self.modules.values())

    @property
    def tokenizer_dir(self) -> Path | None:
        return self.path if (self.path / "tokenizer.json").is_file() else None

    def input_files(self) -> list[Path]:
        files = [self.path / "adapter_config.json", self.file.path]
        for name in (
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "chat_template.jinja",
        ):
            if (self.path / name).is_file():
                files.append(self.path / name)
        return files

    def factors(self, m: LoraModule) -> tuple[np.ndarray, np.ndarray]:
        """(A, B) in float32, oriented as for a linear layer: delta = B @ A with shape of the weight.

        Checked for NaN/Inf here (the factors are small): a bad value is the adapter's, not the base's.
        """
        return self.tensor(m.a_key), self.tensor(m.b_key)

    def tensor(self, key: str) -> np.ndarray:
        """One tensor of the adapter in float32, refused with the adapter file's name if not finite."""
        arr = self.file.get_f32(key)
        check_finite(arr, key, f"adapter {self.file.path}")
        return arr

    def delta(self, m: LoraModule, extra_scale: float = 1.0) -> np.ndarray:
        """extra_scale * scale * B @ A (embedding: its transpose), float32, in HF layout.

        The scales are folded into B (out x r) before the product: no pass over the full matrix.
        """
        a, b = self.factors(m)
        b *= np.float32(m.scale * extra_scale)
        d = b @ a
        return np.ascontiguousarray(d.T) if m.embedding else d

    def magnitude(self, m: LoraModule) -> np.ndarray | None:
        return None if m.magnitude_key is None else self.tensor(m.magnitude_key).reshape(-1)

    def close(self) -> None:
        self.file.close()


def _pattern_value(patterns: dict[str, Any], module: str) -> Any:
    for pattern, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return None


def parse_adapter_arg(arg: str) -> tuple[str, float]:
    """``PATH[@SCALE]`` -> (path, scale); a trailing ``@`` part that is not a number belongs to the path.

    ``nan`` and ``inf`` parse as floats but would poison every merged weight: refused here, before
    anything is read, unless the whole argument names an existing path.
    """
    path, sep, scale = arg.rpartition("@")
    if not (sep and path):
        return arg, 1.0
    try:
        value = float(scale)
    except ValueError:
        return arg, 1.0
    if math.isfinite(value):
        return path, value
    if Path(arg).exists():
        return arg, 1.0
    raise ConversionError(
        f"--adapter {arg}: the scale {scale!r} is not a finite number; give e.g. {path}@0.5"
    )


def load_adapter(path: Path, user_scale: float = 1.0) -> Adapter:
    path = Path(path)
    if not math.isfinite(user_scale):
        raise ConversionError(f"adapter {path}: scale {user_scale} is not a finite number")
    if not path.is_dir():
        raise ConversionError(
            f"adapter {path} is not a directory; expected a PEFT adapter (adapter_config.json)"
        )
    cfg = read_json(path / "adapter_config.json", "a PEFT adapter directory with adapter_config.json")
    where = path / "adapter_config.json"
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ConversionError(
            f"{where}: peft_type {peft_type} is not supported (only LORA adapters can be merged)"
        )
    for key in ("layers_to_transform", "layer_replication"):
        if cfg.get(key):
            raise ConversionError(f"{where}: {key} is not supported; merge with PEFT instead")
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        hint = (
            " (found adapter_model.bin: pickled weights are not read, for safety; re-save with safe_serialization=True)"
            if (path / "adapter_model.bin").is_file()
            else ""
        )
        raise ConversionError(f"missing adapter_model.safetensors in {path}{hint}")
    f = SafetensorsFile(weights)
    adapter = Adapter(path, float(user_scale), cfg, f, fan_in_fan_out=bool(cfg.get("fan_in_fan_out")))
    try:
        _index(adapter, where)
    except BaseException:
        f.close()
        raise
    return adapter


def _index(adapter: Adapter, where: Path) -> None:
    cfg = adapter.config
    default_r = int(cfg.get("r", 8))
    default_alpha = float(cfg.get("lora_alpha", default_r))
    rslora = bool(cfg.get("use_rslora"))
    parts: dict[str, dict[str, str]] = {}
    for key in adapter.file.tensors:
        name = key[len(_PREFIX) :] if key.startswith(_PREFIX) else key
        m = _LORA_KEY.match(name)
        if m:
            parts.setdefault(m.group("module"), {})[m.group("kind")] = key
            continue
        if name.endswith(".base_layer.weight"):
            adapter.base_copies[name.replace(".base_layer.", ".")] = key
            continue
        # modules_to_save (full replacement) or a trained bias (of a LoRA-wrapped layer: base_layer.bias)
        name = name.replace(".modules_to_save.default.", ".").replace(".original_module.", ".")
        name = name.replace(".base_layer.", ".")
        if not name.endswith((".weight", ".bias")):
            raise ConversionError(
                f"{adapter.file.path}: unrecognised tensor {key!r}; is this a PEFT LoRA adapter?"
            )
        adapter.replacements[name] = key
    for module, kinds in sorted(parts.items()):
        embedding = "lora_embedding_A" in kinds or "lora_embedding_B" in kinds
        a_key = kinds.get("lora_embedding_A" if embedding else "lora_A")
        b_key = kinds.get("lora_embedding_B" if embedding else "lora_B")
        if a_key is None or b_key is None:
            raise ConversionError(
                f"{adapter.file.path}: module {module} has only one of lora_A / lora_B; the file is incomplete"
            )
        a_shape = adapter.file.tensors[a_key].shape
        b_shape = adapter.file.tensors[b_key].shape
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
            raise ConversionError(
                f"{adapter.file.path}: module {module}: lora_A {list(a_shape)} and lora_B {list(b_shape)} do not "
                "multiply (expected A [r, in], B [out, r])"
            )
        rank = int(a_shape[0])
        r_cfg = _pattern_value(cfg.get("rank_pattern") or {}, module)
        r = int(r_cfg) if r_cfg is not None else default_r
        if r != rank:
            raise ConversionError(
                f"{where}: module {module} has rank {rank} in the weights but r={r} in the config "
                "(rank_pattern missing or wrong?)"
            )
        alpha_cfg = _pattern_value(cfg.get("alpha_pattern") or {}, module)
        alpha = float(alpha_cfg) if alpha_cfg is not None else default_alpha
        scale = alpha / math.sqrt(r) if rslora else alpha / r
        magnitude = kinds.get("lora_magnitude_vector")
        if magnitude is not None and embedding:
            raise ConversionError(
                f"{where}: DoRA on the embedding {module} cannot be merged; only linear layers are supported"
            )
        adapter.modules[module] = LoraModule(module, a_key, b_key, rank, alpha, scale, embedding, magnitude)
    if cfg.get("use_dora") and not adapter.use_dora:
        raise ConversionError(f"{where}: use_dora is true but the weights have no lora_magnitude_vector")
    if adapter.fan_in_fan_out:
        log.warning(
            "%s: fan_in_fan_out=true, but the targets are linear layers; ignored, as PEFT itself does", where
        )
