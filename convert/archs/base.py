"""What one architecture needs: a tensor-name table (data) plus a few small hooks.

A module under ``convert/archs/`` builds one :class:`Arch`: the Hugging Face
class names it accepts, the HF -> GGUF tensor rules, the tensors to drop, and
hooks for the GGUF hyper-parameters, per-tensor layout changes (e.g. the llama
Q/K row permutation) and generated tensors. Adding an architecture is adding
one such module and listing it in ``convert/archs/__init__.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.errors import ConversionError

if TYPE_CHECKING:
    from gguf import GGUFWriter


@dataclass(frozen=True)
class Rule:
    """One HF module (without .weight/.bias) and its GGUF tensor name; ``{bid}`` is the block."""

    hf: str
    gguf: str


def _compile(template: str) -> re.Pattern[str]:
    body = re.escape(template).replace(r"\{bid\}", r"(?P<bid>\d+)")
    return re.compile(rf"^{body}\.(?P<suffix>weight|bias)$")


Hparams = dict[str, Any]
MetadataHook = Callable[["GGUFWriter", dict[str, Any], Path, Hparams], None]
TransformHook = Callable[[str, np.ndarray, Hparams], np.ndarray]
ExtraHook = Callable[[dict[str, Any], Hparams], list[tuple[str, np.ndarray]]]


def _identity(name: str, arr: np.ndarray, hp: Hparams) -> np.ndarray:
    return arr


def _no_extra(config: dict[str, Any], hp: Hparams) -> list[tuple[str, np.ndarray]]:
    return []


@dataclass(frozen=True)
class Arch:
    """Per-architecture knowledge: data plus hooks."""

    name: str  # general.architecture in GGUF
    hf_architectures: tuple[str, ...]
    rules: tuple[Rule, ...]
    hparams: Callable[[dict[str, Any]], Hparams]
    metadata: MetadataHook
    hparams_from_gguf: Callable[[dict[str, Any]], Hparams]
    ignore: tuple[str, ...] = ()  # regexes of HF tensors that are not needed
    strip_prefixes: tuple[str, ...] = ()
    transform: TransformHook = _identity  # HF layout -> GGUF layout, rows only (linear)
    extra_tensors: ExtraHook = _no_extra
    keep_f32: tuple[str, ...] = ()  # GGUF tensor names (prefixes) llama.cpp needs in F32
    embed_module: str | None = None  # HF module of the token embeddings
    output_module: str | None = None  # HF module of the output head (None: no head)
    _compiled: list[tuple[re.Pattern[str], Rule]] = field(default_factory=list, compare=False, repr=False)
    _reverse: list[tuple[re.Pattern[str], Rule]] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._compiled.extend((_compile(r.hf), r) for r in self.rules)
        self._reverse.extend((_compile(r.gguf), r) for r in self.rules)
        object.__setattr__(self, "_ignore_re", [re.compile(p) for p in self.ignore])

    def normalise(self, hf_name: str) -> str:
        for prefix in self.strip_prefixes:
            if hf_name.startswith(prefix):
                return hf_name[len(prefix) :]
        return hf_name

    def is_ignored(self, hf_name: str) -> bool:
        return any(p.search(hf_name) for p in self._ignore_re)  # type: ignore[attr-defined]

    def gguf_name(self, hf_name: str) -> str | None:
        """GGUF name of an HF tensor name (``...weight``/``...bias``), None if unknown."""
        name = self.normalise(hf_name)
        for pattern, rule in self._compiled:
            m = pattern.match(name)
            if m:
                bid = m.group("bid") if "bid" in pattern.groupindex else None
                base = rule.gguf.format(bid=bid) if bid is not None else rule.gguf
                return f"{base}.{m.group('suffix')}"
        return None

    def hf_name(self, gguf_name: str) -> str | None:
        """HF tensor name of a GGUF tensor name (inverse of :meth:`gguf_name`)."""
        for pattern, rule in self._reverse:
            m = pattern.match(gguf_name)
            if m:
                bid = m.group("bid") if "bid" in pattern.groupindex else None
                base = rule.hf.format(bid=bid) if bid is not None else rule.hf
                return f"{base}.{m.group('suffix')}"
        return None

    def require(self, config: dict[str, Any], key: str, *alternatives: str) -> Any:
        for k in (key, *alternatives):
            if config.get(k) is not None:
                return config[k]
        raise ConversionError(
            f"config.json has no {key!r}, which a {self.name} model needs; is the file complete?"
        )
